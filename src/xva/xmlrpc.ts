/**
 * ova.xml is one XML-RPC value as XAPI's non-strict encoder writes it (xva-format.md §3.1):
 * strings and int64s are untyped `<value>text</value>`, booleans are `<boolean>0|1</boolean>`,
 * structs and arrays nest. This module turns the XML text into plain JS values.
 *
 * Hostile input is refused before parsing: DOCTYPE/ENTITY declarations (entity-expansion
 * bombs, external entities) never appear in XAPI's output. Nesting depth is bounded.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { XvaFormatError } from '../errors';

export type RpcValue = string | boolean | RpcValue[] | RpcStruct;
export interface RpcStruct {
  [key: string]: RpcValue;
}

/** XAPI's structs nest a few levels (objects > snapshot > maps); anything deeper is hostile. */
export const MAX_RPC_DEPTH = 32;

type Node = Record<string, unknown>;

function bad(message: string): XvaFormatError {
  return new XvaFormatError('XVA_BAD_OVA_XML', message, { entry: 'ova.xml' });
}

function children(node: Node): Node[] {
  for (const key of Object.keys(node)) {
    if (key !== ':@' && key !== '#text') return node[key] as Node[];
  }
  return [];
}

function tagOf(node: Node): string | undefined {
  for (const key of Object.keys(node)) if (key !== ':@') return key;
  return undefined;
}

function textOf(nodes: Node[]): string {
  let s = '';
  for (const n of nodes) if ('#text' in n) s += String(n['#text']);
  return s;
}

function elements(nodes: Node[]): Node[] {
  return nodes.filter((n) => tagOf(n) !== '#text' && tagOf(n) !== undefined);
}

function parseValue(valueChildren: Node[], depth: number): RpcValue {
  if (depth > MAX_RPC_DEPTH) throw bad(`XML-RPC values nested deeper than ${MAX_RPC_DEPTH} levels`);
  const els = elements(valueChildren);
  if (els.length === 0) return textOf(valueChildren);
  const el = els[0];
  const tag = tagOf(el)!;
  const kids = children(el);
  switch (tag) {
    case 'struct': {
      const out: RpcStruct = Object.create(null) as RpcStruct;
      for (const member of elements(kids)) {
        if (tagOf(member) !== 'member') throw bad(`unexpected <${tagOf(member)}> in <struct>`);
        const parts = elements(children(member));
        const nameNode = parts.find((p) => tagOf(p) === 'name');
        const valueNode = parts.find((p) => tagOf(p) === 'value');
        if (!nameNode || !valueNode) throw bad('struct member without <name> or <value>');
        out[textOf(children(nameNode))] = parseValue(children(valueNode), depth + 1);
      }
      return out;
    }
    case 'array': {
      const data = elements(kids).find((k) => tagOf(k) === 'data');
      if (!data) return [];
      return elements(children(data)).map((v) => {
        if (tagOf(v) !== 'value') throw bad(`unexpected <${tagOf(v)}> in <array>`);
        return parseValue(children(v), depth + 1);
      });
    }
    case 'boolean': {
      const t = textOf(kids).trim();
      if (t !== '0' && t !== '1' && t !== 'true' && t !== 'false') throw bad(`invalid boolean "${t.slice(0, 20)}"`);
      return t === '1' || t === 'true';
    }
    case 'string':
    case 'int':
    case 'i4':
    case 'i8':
    case 'double':
    case 'dateTime.iso8601':
    case 'base64':
      return textOf(kids);
    case 'nil':
      return '';
    default:
      throw bad(`unknown XML-RPC type <${tag}>`);
  }
}

export function parseXmlRpc(xml: string): RpcValue {
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) {
    throw bad('DOCTYPE/ENTITY declarations are not allowed (XAPI never writes them; refusing possible entity expansion)');
  }
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw bad(`not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`);
  }
  const parser = new XMLParser({
    preserveOrder: true,
    ignoreAttributes: true,
    parseTagValue: false,
    trimValues: false,
    processEntities: true,
    // Also decodes numeric character references (&#65; &#x41;), which are plain XML; without it
    // they stayed literal in names. (It additionally maps HTML names such as &nbsp;, harmless.)
    htmlEntities: true,
    ignoreDeclaration: true,
    ignorePiTags: true,
  });
  let doc: Node[];
  try {
    doc = parser.parse(xml) as Node[];
  } catch (err) {
    throw bad(`not well-formed XML: ${(err as Error).message}`);
  }
  const top = elements(doc);
  if (top.length !== 1 || tagOf(top[0]) !== 'value') throw bad('the document is not one XML-RPC <value>');
  return parseValue(children(top[0]), 0);
}
