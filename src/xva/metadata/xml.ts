/**
 * XML as the two metadata documents we read and write need it, ova.xml (an XVA's VM record)
 * and an OVA's OVF descriptor: one hardened way to parse XML taken from an archive, and one
 * escaper for the text we write.
 *
 * Parsing refuses DOCTYPE/ENTITY declarations before the parser sees the text: neither XAPI nor
 * an OVF writer needs them, and they are how entity-expansion bombs and external entities come
 * in. The text must then be well-formed; tag and attribute values stay strings.
 */
import { XMLParser, XMLValidator, type X2jOptions } from 'fast-xml-parser';

/** Why a document was refused: it declares a DOCTYPE/ENTITY, or it is not well-formed XML. */
export type XmlRefusal = 'declarations' | 'malformed';

/**
 * How the parsed tree is shaped, the caller's choice: document order kept or not, attributes,
 * namespace prefixes, whitespace, HTML entity names. Everything that makes parsing safe is fixed.
 */
export type XmlTreeShape = Pick<X2jOptions, 'preserveOrder' | 'ignoreAttributes' | 'attributeNamePrefix' | 'removeNSPrefix' | 'trimValues' | 'htmlEntities'>;

const DECLARATIONS = /<!DOCTYPE|<!ENTITY/i;

/**
 * Parses XML we do not trust into fast-xml-parser's tree (see the module comment). `refuse`
 * builds the caller's typed error: `detail` is the parser's message for a malformed document,
 * '' for declarations.
 */
export function parseUntrustedXml(xml: string, shape: XmlTreeShape, refuse: (why: XmlRefusal, detail: string) => Error): unknown {
  if (DECLARATIONS.test(xml)) throw refuse('declarations', '');
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw refuse('malformed', `${valid.err.msg} (line ${valid.err.line})`);
  const parser = new XMLParser({
    ...shape,
    parseTagValue: false,
    parseAttributeValue: false,
    processEntities: true,
    ignoreDeclaration: true,
    ignorePiTags: true,
  });
  try {
    return parser.parse(xml) as unknown;
  } catch (err) {
    throw refuse('malformed', (err as Error).message);
  }
}

/**
 * - 'xml': the characters XML 1.0 cannot carry are dropped (C0 controls but TAB, LF, CR;
 *   U+FFFE, U+FFFF; unpaired surrogates) and `& < > " '` are escaped. For OVF.
 * - 'xapi': XAPI's own encoding (ocaml-rpc `Xmlrpc.encode`), for ova.xml byte for byte:
 *   only the C0 controls are dropped and `'` stays as it is.
 */
export type XmlEscaping = 'xml' | 'xapi';

// eslint-disable-next-line no-control-regex
const NOT_XML_CHARACTERS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
// eslint-disable-next-line no-control-regex
const C0_CONTROLS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g;
const ENTITY: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** Escapes text or attribute content (see XmlEscaping). */
export function escapeXml(text: string, escaping: XmlEscaping = 'xml'): string {
  if (escaping === 'xapi') return text.replace(C0_CONTROLS, '').replace(/[&<>"]/g, (c) => ENTITY[c]!);
  return text.replace(NOT_XML_CHARACTERS, '').replace(/[&<>"']/g, (c) => ENTITY[c]!);
}
