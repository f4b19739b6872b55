/**
 * Hostile ova.xml (issue "Robustness and security", item 2): entity bombs, external entities,
 * DOCTYPE declarations, enormous strings and numbers, deep nesting, absurd virtual sizes,
 * negative / non-numeric sizes, duplicate ids and dangling references. Each must be refused
 * quickly with a typed, one-line XVA_BAD_OVA_XML / XVA_TOO_LARGE error (or, where XAPI itself
 * tolerates it, accepted with a sensible model), with bounded time and memory.
 */
import { XvaError } from '../../src/errors';
import { MAX_OVA_XML_BYTES, parseOvaXml } from '../../src/xva/metadata/parse';
import { readXva } from '../../src/xva/reader';
import { bufferSource } from '../helpers/sources';
import { compactOvaXml } from './fuzz-harness';
import { BLOCK, serializeTar, tarHeader } from './tar-model';
import { SparseWriter } from './sparse-writer';

const MiB = 1024 * 1024;
const BASE = compactOvaXml('hostile', [{ ref: 'Ref:11', size: MiB, userdevice: 0 }]);

/** Runs readXva on a metadata-only archive with `xml` as ova.xml; returns the error or result. */
async function readXml(xml: string | Buffer, opts: { metadataOnly?: boolean } = { metadataOnly: true }): Promise<{ err?: XvaError; ms: number; meta?: Awaited<ReturnType<typeof readXva>>['metadata'] }> {
  const tar = serializeTar([{ name: 'ova.xml', data: Buffer.isBuffer(xml) ? xml : Buffer.from(xml, 'utf8') }]);
  const t = Date.now();
  try {
    const r = await readXva(bufferSource(tar), { openDisk: (d) => new SparseWriter(d.virtualSize) }, { metadataOnly: opts.metadataOnly });
    return { ms: Date.now() - t, meta: r.metadata };
  } catch (err) {
    if (!(err instanceof XvaError)) throw err; // an untyped error fails the test
    return { err, ms: Date.now() - t };
  }
}

function expectRefused(r: { err?: XvaError; ms: number }, code: string, message: RegExp, maxMs = 2000): void {
  expect(r.err).toBeDefined();
  expect(r.err!.code).toBe(code);
  expect(r.err!.describe()).toMatch(message);
  expect(r.err!.describe()).not.toMatch(/[\r\n]/);
  expect(r.err!.describe().length).toBeLessThan(400);
  expect(r.ms).toBeLessThan(maxMs);
}

function withSize(v: string): string {
  return BASE.replace('<name>virtual_size</name><value>1048576</value>', `<name>virtual_size</name><value>${v}</value>`);
}

describe('entities and DOCTYPE', () => {
  test('billion laughs is refused before any expansion', async () => {
    const lol = ['<!ENTITY l0 "lol">', ...Array.from({ length: 9 }, (_, i) => `<!ENTITY l${i + 1} "${`&l${i};`.repeat(10)}">`)].join('');
    const r = await readXml(`<?xml version="1.0"?><!DOCTYPE lolz [${lol}]>${BASE.replace('hostile', '&l9;')}`);
    expectRefused(r, 'XVA_BAD_OVA_XML', /DOCTYPE\/ENTITY declarations are not allowed/, 500);
  });

  test.each([
    ['external SYSTEM entity', `<!DOCTYPE v [<!ENTITY x SYSTEM "file:///etc/passwd">]>${BASE.replace('hostile', '&x;')}`],
    ['external PUBLIC DTD', `<!DOCTYPE value PUBLIC "-//x//y" "http://127.0.0.1:1/evil.dtd">${BASE}`],
    ['parameter entity', `<!DOCTYPE v [<!ENTITY % p SYSTEM "http://127.0.0.1:1/p">%p;]>${BASE}`],
    ['lower-case doctype after a comment', `<!-- hi --><!doctype value>${BASE}`],
    ['bare ENTITY inside text', BASE.replace('hostile', '<!ENTITY a "b">')],
  ])('%s is refused', async (_n, xml) => {
    expectRefused(await readXml(xml), 'XVA_BAD_OVA_XML', /DOCTYPE\/ENTITY/, 500);
  });

  test('an undeclared entity reference is not expanded (stays literal text or is refused)', async () => {
    const r = await readXml(BASE.replace('hostile', '&xxe;'));
    if (r.err) expect(r.err.code).toBe('XVA_BAD_OVA_XML');
    else expect(r.meta!.vm.name).toBe('&xxe;');
  });

  test('standard and numeric character references still work', async () => {
    const r = await readXml(BASE.replace('hostile', 'a&amp;b&lt;c&#x41;&#66;&amp;#67;'));
    expect(r.err).toBeUndefined();
    expect(r.meta!.vm.name).toBe('a&b<cAB&#67;'); // decoded once, never twice
  });
});

describe('size limits', () => {
  test(`an ova.xml entry over the limit (${MAX_OVA_XML_BYTES / MiB} MiB) is refused from its header, without reading it`, async () => {
    // The header claims 100 GiB; the stream holds only the header: nothing may be buffered.
    const tar = Buffer.concat([tarHeader('ova.xml', 100 * 1024 * MiB), Buffer.alloc(4 * BLOCK)]);
    const t = Date.now();
    const err = await readXva(bufferSource(tar), {}, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XvaError);
    expect((err as XvaError).code).toBe('XVA_TOO_LARGE');
    expect((err as XvaError).describe()).toMatch(new RegExp(`over the ${MAX_OVA_XML_BYTES / MiB}\\.00 MiB limit`));
    expect(Date.now() - t).toBeLessThan(500);
  });

  test('one byte over the limit is refused, the limit itself is the documented 16 MiB', async () => {
    expect(MAX_OVA_XML_BYTES).toBe(16 * MiB);
    const tar = Buffer.concat([tarHeader('ova.xml', MAX_OVA_XML_BYTES + 1), Buffer.alloc(4 * BLOCK)]);
    const err = (await readXva(bufferSource(tar)).catch((e: unknown) => e)) as XvaError;
    expect(err.code).toBe('XVA_TOO_LARGE');
  });

  test('an enormous string (4 MiB VM name) is read in bounded time and memory', async () => {
    const before = process.memoryUsage().rss;
    const r = await readXml(BASE.replace('hostile', 'N'.repeat(4 * MiB)));
    expect(r.err).toBeUndefined();
    expect(r.meta!.vm.name.length).toBe(4 * MiB);
    expect(r.ms).toBeLessThan(30000);
    expect(process.memoryUsage().rss - before).toBeLessThan(1024 * MiB);
  });

  test('an enormous number (100 000 digits) is refused with a short message', async () => {
    expectRefused(await readXml(withSize('9'.repeat(100000))), 'XVA_BAD_OVA_XML', /virtual_size is not an integer/);
  });

  test('nesting 100 000 levels deep is refused without a stack overflow', async () => {
    const depth = 100000;
    const xml = BASE.replace('<member><name>version</name>', `<member><name>junk</name>${'<value><array><data>'.repeat(depth)}${'</data></array></value>'.repeat(depth)}</member><member><name>version</name>`);
    expectRefused(await readXml(xml), 'XVA_BAD_OVA_XML', /nest/i, 10000);
  });

  test('nesting just past the XML-RPC depth limit is refused', async () => {
    const depth = 40;
    const xml = BASE.replace('<member><name>version</name>', `<member><name>junk</name>${'<value><array><data>'.repeat(depth)}${'</data></array></value>'.repeat(depth)}</member><member><name>version</name>`);
    // fast-xml-parser's own tag-nesting limit or our 32-level XML-RPC limit, whichever hits first
    expectRefused(await readXml(xml), 'XVA_BAD_OVA_XML', /nested/i);
  });
});

describe('virtual_size values', () => {
  test.each([
    ['2^63', '9223372036854775808', /too large/],
    ['2^64-1', '18446744073709551615', /too large/],
    ['2^53', '9007199254740992', /too large/],
    ['negative', '-1048576', /negative/],
    ['non-numeric', 'lots', /not an integer/],
    ['exponent', '1e9', /not an integer/],
    ['hex', '0x100000', /not an integer/],
    ['fraction', '1048576.5', /not an integer/],
    ['empty', '', /virtual_size missing/],
    ['plus sign', '+1048576', /not an integer/],
    ['inner space', '1048 576', /not an integer/],
    ['full-width digits', '１０２４', /not an integer/],
  ])('%s (%s) is refused', async (_n, v, msg) => {
    expectRefused(await readXml(withSize(v)), 'XVA_BAD_OVA_XML', msg);
  });

  test('2^53-1 is the largest size accepted (metadata only)', async () => {
    const r = await readXml(withSize('9007199254740991'));
    expect(r.err).toBeUndefined();
    expect(r.meta!.disks[0]!.virtualSize).toBe(Number.MAX_SAFE_INTEGER);
  });

  test('a huge declared size with little data: no allocation by size; the writer sees the declared size', async () => {
    // 1 PiB declared, no chunks, end blocks present: the disk is "all zeros" but it has no
    // data at all although it is non-empty -> refused as a missing disk.
    const xml = withSize(String(2 ** 50));
    const tar = serializeTar([{ name: 'ova.xml', data: Buffer.from(xml) }]);
    const err = (await readXva(bufferSource(tar), { openDisk: (d) => new SparseWriter(d.virtualSize) }).catch((e: unknown) => e)) as XvaError;
    expect(err).toBeInstanceOf(XvaError);
    expect(err.code).toBe('XVA_MISSING_DISK');
  });
});

describe('object graph', () => {
  test('duplicate object ids are refused', async () => {
    const sr = '<value><struct><member><name>class</name><value>SR</value></member><member><name>id</name><value>Ref:2</value></member><member><name>snapshot</name><value><struct></struct></value></member></struct></value>';
    expectRefused(await readXml(BASE.replace('<array><data>', `<array><data>${sr}`)), 'XVA_BAD_OVA_XML', /duplicate object id Ref:2/);
  });

  test('a VBD pointing at a missing VDI drops the disk, as XAPI import does', async () => {
    const r = await readXml(BASE.replace('<name>VDI</name><value>Ref:11</value>', '<name>VDI</name><value>Ref:404</value>'));
    expect(r.err).toBeUndefined();
    expect(r.meta!.disks).toEqual([]);
  });

  test('...and the data of that VDI in the tar is then skipped with a warning, never written', async () => {
    // Known VDI object (Ref:11 still exists) not attached to the VM: its chunks are skipped.
    const xml = BASE.replace('<name>VDI</name><value>Ref:11</value>', '<name>VDI</name><value>Ref:404</value>');
    const tar = serializeTar([{ name: 'ova.xml', data: Buffer.from(xml) }]);
    const r = await readXva(bufferSource(tar), { openDisk: () => { throw new Error('no disk may be opened'); } });
    expect(r.disks).toEqual([]);
  });

  test('a missing SR is tolerated (only content_type=iso matters)', async () => {
    const r = await readXml(BASE.replace('<name>SR</name><value>Ref:2</value>', '<name>SR</name><value>Ref:77</value>'));
    expect(r.err).toBeUndefined();
    expect(r.meta!.disks.map((d) => d.ref)).toEqual(['Ref:11']);
  });

  test('a VBD whose VDI reference names an object of another class is refused', async () => {
    expectRefused(await readXml(BASE.replace('<name>VDI</name><value>Ref:11</value>', '<name>VDI</name><value>Ref:2</value>')), 'XVA_BAD_OVA_XML', /which is a SR, not a VDI/);
  });

  test('no VM object is refused', async () => {
    expectRefused(await readXml(BASE.replace('<value>VM</value>', '<value>host</value>')), 'XVA_BAD_OVA_XML', /no VM object/);
  });

  test.each([
    ['not XML at all', 'this is not xml'],
    ['binary garbage', Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x80, 0x3c, 0x3e])],
    ['unclosed tags', BASE.slice(0, BASE.length - 20)],
    ['unknown XML-RPC type', BASE.replace('<value>fuzz</value>', '<value><script>x</script></value>').replace('<value>hostile</value>', '<value><script>x</script></value>')],
    ['empty document', ''],
    ['array instead of struct at the top', '<value><array><data></data></array></value>'],
    ['objects is not an array', '<value><struct><member><name>objects</name><value>x</value></member></struct></value>'],
  ])('%s is refused with XVA_BAD_OVA_XML', async (_n, xml) => {
    expectRefused(await readXml(xml), 'XVA_BAD_OVA_XML', /ova\.xml|XML|objects|struct|XML-RPC/);
  });

  test('parseOvaXml never throws anything but XvaError on short random inputs', () => {
    let seed = 12345;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const alphabet = ['<value>', '</value>', '<struct>', '</struct>', '<member>', '</member>', '<name>', '</name>', '<array>', '</array>', '<data>', '</data>', 'objects', 'class', 'VM', 'id', 'snapshot', '&amp;', '&', '<', '>', '<boolean>1</boolean>', '<!--', '-->', '<![CDATA[', ']]>', 'x'];
    for (let i = 0; i < 3000; i++) {
      const n = Math.floor(rnd() * 30);
      let s = '';
      for (let k = 0; k < n; k++) s += alphabet[Math.floor(rnd() * alphabet.length)];
      try {
        parseOvaXml(s);
      } catch (err) {
        if (!(err instanceof XvaError)) throw new Error(`untyped error for ${JSON.stringify(s)}: ${String(err)}`);
      }
    }
  });
});
