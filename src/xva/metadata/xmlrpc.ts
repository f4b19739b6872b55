/**
 * The XML-RPC codec of ova.xml (docs/xva-format.md §3.1). ova.xml is one XML-RPC value as XAPI's
 * non-strict encoder (ocaml-rpc `Xmlrpc.to_string`) writes it: strings and int64s are untyped
 * `<value>text</value>`, booleans are `<boolean>0|1</boolean>`, doubles `<double>`, datetimes
 * `<dateTime.iso8601>`, structs and arrays nest. No XML declaration, no whitespace.
 *
 * One value type (RpcValue) serves both directions. Decoding comes in two flavours that share
 * one parser:
 *  - `parseXmlRpc` (the reader): every scalar is a string or a boolean (PlainRpcValue);
 *  - `parseXmlRpcTyped` (`pack --from`, which re-encodes the tree): `<double>` and
 *    `<dateTime.iso8601>` stay typed (RpcDouble, RpcDateTime) so they are written back as such.
 * Encoding (`rpcToXml`) writes XAPI's bytes; integer numbers become untyped int64s.
 *
 * Hostile input is refused before parsing (xml.ts); nesting depth is bounded.
 */
import { XvaFormatError } from '../../errors';
import { escapeXml, parseUntrustedXml } from './xml';

/** A `<double>` value (XAPI prints it with %.16g). */
export class RpcDouble {
  constructor(readonly value: number) {}
}

/** A `<dateTime.iso8601>` value, e.g. `19700101T00:00:00Z`. */
export class RpcDateTime {
  constructor(readonly value: string) {}
}

/**
 * An XML-RPC value of ova.xml. string → untyped `<value>`; integer number → untyped decimal
 * (XAPI's int64 encoding; the decoders never produce numbers); boolean → `<boolean>`;
 * array → `<array>`; plain object → `<struct>` in key insertion order.
 */
export type RpcValue = string | number | boolean | RpcDouble | RpcDateTime | RpcValue[] | RpcStruct;
export interface RpcStruct {
  [key: string]: RpcValue;
}

/** What the reader's decode yields: every scalar is a string or a boolean. */
export type PlainRpcValue = string | boolean | PlainRpcValue[] | PlainRpcStruct;
export interface PlainRpcStruct {
  [key: string]: PlainRpcValue;
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

function parseValue(valueChildren: Node[], depth: number, typed: boolean): RpcValue {
  if (depth > MAX_RPC_DEPTH) throw bad(`XML-RPC values nested deeper than ${MAX_RPC_DEPTH} levels`);
  const els = elements(valueChildren);
  const el = els[0];
  if (el === undefined) return textOf(valueChildren);
  const tag = tagOf(el)!;
  const kids = children(el);
  switch (tag) {
    case 'struct': {
      // The reader's structs have no prototype; the typed tree is re-encoded by code that expects
      // ordinary objects. Either way defineProperty keeps a member called "__proto__" a plain key.
      const out = (typed ? {} : Object.create(null)) as RpcStruct;
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

function parseDocument(xml: string, typed: boolean): RpcValue {
  const doc = parseUntrustedXml(
    xml,
    {
      preserveOrder: true,
      ignoreAttributes: true,
      trimValues: false,
      // Also decodes numeric character references (&#65; &#x41;), which are plain XML; without it
      // they stayed literal in names. (It additionally maps HTML names such as &nbsp;, harmless.)
      htmlEntities: true,
    },
    (why, detail) =>
      bad(why === 'declarations' ? 'DOCTYPE/ENTITY declarations are not allowed (XAPI never writes them; refusing possible entity expansion)' : `not well-formed XML: ${detail}`),
  ) as Node[];
  const top = elements(doc);
  const value = top.length === 1 ? top[0] : undefined;
  if (value === undefined || tagOf(value) !== 'value') throw bad('the document is not one XML-RPC <value>');
  return parseValue(children(value), 0, typed);
}

/** ova.xml as plain values: every scalar is a string or a boolean. */
export function parseXmlRpc(xml: string): PlainRpcValue {
  // Untyped mode never builds numbers, RpcDouble or RpcDateTime, so the tree is a PlainRpcValue.
  return parseDocument(xml, false) as PlainRpcValue;
}

/** ova.xml with `<double>` and `<dateTime.iso8601>` kept typed, for re-encoding. */
export function parseXmlRpcTyped(xml: string): RpcValue {
  return parseDocument(xml, true);
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** %.16g for the values we emit (finite doubles). */
function formatDouble(d: number): string {
  if (!Number.isFinite(d)) throw new RangeError(`ova.xml: double must be finite, got ${d}`);
  if (Number.isInteger(d) && Math.abs(d) < 1e16) return String(d);
  let s = d.toPrecision(16);
  if (s.includes('e')) {
    const [mant, exp] = s.split('e') as [string, string];
    const m = mant.includes('.') ? mant.replace(/0+$/, '').replace(/\.$/, '') : mant;
    const e = Number(exp);
    s = `${m}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  } else if (s.includes('.')) {
    s = s.replace(/0+$/, '').replace(/\.$/, '');
  }
  return s;
}

/** Encodes one value the way ocaml-rpc `Xmlrpc.to_string` does (non-strict mode). */
export function encodeRpcValue(value: RpcValue, out: string[] = []): string[] {
  if (typeof value === 'string') {
    out.push('<value>', escapeXml(value, 'xapi'), '</value>');
  } else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`ova.xml: integer fields must be safe integers, got ${value}`);
    out.push('<value>', String(value), '</value>');
  } else if (typeof value === 'boolean') {
    out.push('<value><boolean>', value ? '1' : '0', '</boolean></value>');
  } else if (value instanceof RpcDouble) {
    out.push('<value><double>', formatDouble(value.value), '</double></value>');
  } else if (value instanceof RpcDateTime) {
    out.push('<value><dateTime.iso8601>', escapeXml(value.value, 'xapi'), '</dateTime.iso8601></value>');
  } else if (Array.isArray(value)) {
    out.push('<value><array><data>');
    for (const v of value) encodeRpcValue(v, out);
    out.push('</data></array></value>');
  } else {
    out.push('<value><struct>');
    for (const [k, v] of Object.entries(value)) {
      // XAPI writes member names raw; ours are escaped too so odd map keys stay valid XML.
      out.push('<member><name>', escapeXml(k, 'xapi'), '</name>');
      encodeRpcValue(v, out);
      out.push('</member>');
    }
    out.push('</struct></value>');
  }
  return out;
}

/** ova.xml text of a value, byte for byte in XAPI's encoding. */
export function rpcToXml(value: RpcValue): string {
  return encodeRpcValue(value).join('');
}
