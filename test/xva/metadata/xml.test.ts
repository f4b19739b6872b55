/**
 * The one hardened XML parse and the one escaper (src/xva/metadata/xml.ts), shared by ova.xml
 * and OVF (docs/xva-format.md §3.1).
 */
import fc from 'fast-check';
import { escapeXml, parseUntrustedXml, type XmlRefusal } from '../../../src/xva/metadata/xml';

class Refused extends Error {
  constructor(
    readonly why: XmlRefusal,
    readonly detail: string,
  ) {
    super(`${why}: ${detail}`);
  }
}
const refuse = (why: XmlRefusal, detail: string): Error => new Refused(why, detail);

function refusal(xml: string): Refused {
  try {
    parseUntrustedXml(xml, {}, refuse);
  } catch (err) {
    if (err instanceof Refused) return err;
    throw err;
  }
  throw new Error('not refused');
}

describe('parseUntrustedXml', () => {
  test('DOCTYPE and ENTITY declarations are refused before parsing', () => {
    expect(refusal('<!DOCTYPE v [<!ENTITY a "b">]><v>&a;</v>').why).toBe('declarations');
    expect(refusal('<v><!ENTITY a "b"></v>').why).toBe('declarations');
    expect(refusal('<!doctype v SYSTEM "file:///etc/passwd"><v/>').why).toBe('declarations');
  });

  test('XML that is not well-formed is refused with the parser\'s reason and line', () => {
    const r = refusal('<a>\n<b></a>');
    expect(r.why).toBe('malformed');
    expect(r.detail).toMatch(/\(line \d+\)$/);
  });

  test('values stay strings; entities and the declaration are handled, the shape is the caller\'s', () => {
    const xml = '<?xml version="1.0"?><r a="007"><n>0012</n><t> x &amp; &lt;y&gt; </t></r>';
    expect(parseUntrustedXml(xml, { ignoreAttributes: false, attributeNamePrefix: '@_', trimValues: true }, refuse)).toEqual({
      r: { n: '0012', t: 'x & <y>', '@_a': '007' },
    });
    expect(parseUntrustedXml('<n:r xmlns:n="u"><n:v>1</n:v></n:r>', { removeNSPrefix: true }, refuse)).toEqual({ r: { v: '1' } });
  });
});

describe('escapeXml', () => {
  test("'xapi' is ocaml-rpc's escaping: & < > \" escaped, C0 controls but TAB/LF/CR dropped, ' kept", () => {
    expect(escapeXml('a&b<c>d"e\'f', 'xapi')).toBe('a&amp;b&lt;c&gt;d&quot;e\'f');
    expect(escapeXml('x\u0001\u0000y\tz\n\r\u001f\u007f', 'xapi')).toBe('xy\tz\n\r\u007f');
    expect(escapeXml('a\uffffb\ud800', 'xapi')).toBe('a\uffffb\ud800');
  });

  test("'xml' (OVF, the default) also escapes ' and drops U+FFFE, U+FFFF and unpaired surrogates", () => {
    expect(escapeXml(`a<b>&"c'`)).toBe('a&lt;b&gt;&amp;&quot;c&apos;');
    expect(escapeXml('x\u0000\u0007y\tz\n\uffff\ud800')).toBe('xy\tz\n');
    expect(escapeXml('😀 é')).toBe('😀 é');
  });

  test('escaped text parses back to itself (property)', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 40 }), fc.constantFrom<'xml' | 'xapi'>('xml', 'xapi'), (text, escaping) => {
        const back = parseUntrustedXml(`<t>${escapeXml(text, escaping)}</t>`, { trimValues: false }, refuse) as { t: unknown };
        expect(back.t).toBe(text);
      }),
    );
  });
});
