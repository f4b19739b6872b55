/**
 * ova.xml is one XML-RPC value as XAPI's non-strict encoder writes it (xva-format.md §3.1):
 * strings and int64s are untyped `<value>text</value>`, booleans are `<boolean>0|1</boolean>`,
 * structs and arrays nest. This module turns the XML text into JS values, in two flavours that
 * share one parser:
 *  - `parseXmlRpc` (the reader): every scalar is a string or a boolean;
 *  - `parseXmlRpcTyped` (`pack --from`, which re-encodes the tree): `<double>` and
 *    `<dateTime.iso8601>` stay typed (RpcDouble, RpcDateTime) so they are written back as such.
 *
 * Hostile input is refused before parsing: DOCTYPE/ENTITY declarations (entity-expansion
 * bombs, external entities) never appear in XAPI's output. Nesting depth is bounded.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { XvaFormatError } from '../../errors';

/** A `<double>` value (XAPI prints it with %.16g). */
export class RpcDouble {
  constructor(readonly value: number) {}
}

/** A `<dateTime.iso8601>` value, e.g. `19700101T00:00:00Z`. */
export class RpcDateTime {
  constructor(readonly value: string) {}
}

/** What the typed parse yields: plain values plus the typed leaves. */
export type TypedRpcValue = string | boolean | RpcDouble | RpcDateTime | TypedRpcValue[] | TypedRpcStruct;
export interface TypedRpcStruct {
  [key: string]: TypedRpcValue;
}

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

function parseValue(valueChildren: Node[], depth: number, typed: boolean): TypedRpcValue {
  if (depth > MAX_RPC_DEPTH) throw bad(`XML-RPC values nested deeper than ${MAX_RPC_DEPTH} levels`);
  const els = elements(valueChildren);
  if (els.length === 0) return textOf(valueChildren);
  const el = els[0];
  const tag = tagOf(el)!;
  const kids = children(el);
  switch (tag) {
    case 'struct': {
      // The reader's structs have no prototype; the typed tree is re-encoded by code that expects
      // ordinary objects. Either way defineProperty keeps a member called "__proto__" a plain key.
      const out = (typed ? {} : Object.create(null)) as TypedRpcStruct;
      for (const member of elements(kids)) {
        if (tagOf(member) !== 'member') throw bad(`unexpected <${tagOf(member)}> in <struct>`);
        const parts = elements(children(member));
        const nameNode = parts.find((p) => tagOf(p) === 'name');
        const valueNode = parts.find((p) => tagOf(p) === 'value');
        if (!nameNode || !valueNode) throw bad('struct member without <name> or <value>');
        Object.defineProperty(out, textOf(children(nameNode)), {
          value: parseValue(children(valueNode), depth + 1, typed),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
    case 'array': {
      const data = elements(kids).find((k) => tagOf(k) === 'data');
      if (!data) return [];
      return elements(children(data)).map((v) => {
        if (tagOf(v) !== 'value') throw bad(`unexpected <${tagOf(v)}> in <array>`);
        return parseValue(children(v), depth + 1, typed);
      });
    }
    case 'boolean': {
      const t = textOf(kids).trim();
      if (t !== '0' && t !== '1' && t !== 'true' && t !== 'false') throw bad(`invalid boolean "${t.slice(0, 20)}"`);
      return t === '1' || t === 'true';
    }
    case 'double': {
      if (!typed) return textOf(kids);
      const d = Number(textOf(kids).trim());
      if (!Number.isFinite(d)) throw bad(`invalid double "${textOf(kids).slice(0, 20)}"`);
      return new RpcDouble(d);
    }
    case 'dateTime.iso8601':
      return typed ? new RpcDateTime(textOf(kids)) : textOf(kids);
    case 'int':
    case 'i4':
    case 'i8':
      // Typed ints are re-encoded untyped (XAPI's int64 encoding), so the typed tree trims them.
      return typed ? textOf(kids).trim() : textOf(kids);
    case 'string':
    case 'base64':
      return textOf(kids);
    case 'nil':
      return '';
    default:
      throw bad(`unknown XML-RPC type <${tag}>`);
  }
}

function parseDocument(xml: string, typed: boolean): TypedRpcValue {
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
  return parseValue(children(top[0]), 0, typed);
}

/** ova.xml as plain values: every scalar is a string or a boolean. */
export function parseXmlRpc(xml: string): RpcValue {
  // Untyped mode never builds RpcDouble / RpcDateTime, so the tree is an RpcValue.
  return parseDocument(xml, false) as RpcValue;
}

/** ova.xml with `<double>` and `<dateTime.iso8601>` kept typed, for re-encoding. */
export function parseXmlRpcTyped(xml: string): TypedRpcValue {
  return parseDocument(xml, true);
}
