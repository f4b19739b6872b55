import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import * as zlib from 'node:zlib';
import fc from 'fast-check';
import { xxhash64 } from 'hash-wasm';
import { OutputError } from '../../src/errors';
import type { DiskExtent, DiskReader } from '../../src/io/disk';
import { RawReader } from '../../src/image/raw/reader';
import { decodeTarHeader, TAR_BLOCK, tarPadding, type TarHeader } from '../../src/tar/header';
import { hashChunk } from '../../src/xva/checksum';
import { bufferSource, streamSource } from '../../src/xva/disk-sources';
import { chunkEntryName, compareRefs, kindFromSuffix } from '../../src/xva/format';
import { DiskPipe } from '../../src/xva/repack';
import { writeXva } from '../../src/xva/writer';
import { itWithTools } from '../helpers/system-tools';
import { collectingSink, type FixtureWriteOptions, KiB, makeXvaBuffer, makeXvaFile, MiB, sparseDisk, type MakeXvaOptions } from '../helpers/xva-fixtures';

// ---------------------------------------------------------------------------------------------
// A small reference reader built on decodeTarHeader and the cursor rule of docs/xva-format.md §4.3.

interface Entry extends TarHeader {
  data: Buffer;
}

function walkTar(tar: Buffer): Entry[] {
  const out: Entry[] = [];
  let off = 0;
  for (;;) {
    const h = decodeTarHeader(tar.subarray(off, off + TAR_BLOCK));
    if (!h) break;
    off += TAR_BLOCK;
    out.push({ ...h, data: tar.subarray(off, off + h.size) });
    off += h.size + tarPadding(h.size);
  }
  // XAPI ends with exactly two zero blocks and nothing after them.
  expect(tar.length - off).toBe(2 * TAR_BLOCK);
  expect(tar.subarray(off).every((b) => b === 0)).toBe(true);
  return out;
}

async function reassemble(tar: Buffer, sizes: Record<string, number>): Promise<Map<string, Buffer>> {
  const entries = walkTar(tar);
  expect(entries[0]!.name).toBe('ova.xml');
  const disks = new Map<string, Buffer>();
  const state = new Map<string, { cursor: number; prev: number }>();
  for (let i = 1; i < entries.length; i++) {
    const e = entries[i]!;
    const m = /^(Ref:[^/]+)\/(\d{8,})$/.exec(e.name);
    if (!m) throw new Error(`unexpected entry ${e.name}`);
    const [, ref, counterText] = m as unknown as [string, string, string];
    const n = Number(counterText);
    const size = sizes[ref]!;
    if (!disks.has(ref)) {
      disks.set(ref, Buffer.alloc(size));
      state.set(ref, { cursor: 0, prev: -1 });
    }
    const s = state.get(ref)!;
    expect(n).toBeGreaterThan(s.prev);
    s.cursor += (n - s.prev - 1) * MiB;
    e.data.copy(disks.get(ref)!, s.cursor, 0, Math.max(0, Math.min(e.data.length, size - s.cursor)));
    s.cursor += e.data.length;
    s.prev = n;
    const sum = entries[i + 1];
    if (sum && sum.name.startsWith(`${e.name}.`)) {
      const kind = kindFromSuffix(sum.name)!;
      expect(sum.data.toString('latin1')).toBe(await hashChunk(kind, e.data));
      i++;
    }
  }
  return disks;
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'xva-writer-'));
}

/** Two disks whose refs sort differently as strings and as numbers (docs/xva-format.md §1.2): Ref:1003 before Ref:998. */
const TWO_DISKS: MakeXvaOptions = {
  vmName: 'two',
  disks: [
    { ref: 'Ref:998', userdevice: 0, size: 3 * MiB + 512 * KiB, fill: [{ offset: 0, length: 4 * KiB }, { offset: 2 * MiB + 100, length: 1000 }] },
    { ref: 'Ref:1003', userdevice: 1, size: 4 * MiB, fill: [{ offset: MiB, length: 64 * KiB }] },
  ],
  cdroms: [{ userdevice: 3 }],
};

const EXPECTED_TWO_DISK_NAMES = [
  'ova.xml',
  'Ref:1003/00000000', 'Ref:1003/00000000.xxhash',
  'Ref:1003/00000001', 'Ref:1003/00000001.xxhash',
  'Ref:1003/00000003', 'Ref:1003/00000003.xxhash',
  'Ref:998/00000000', 'Ref:998/00000000.xxhash',
  'Ref:998/00000002', 'Ref:998/00000002.xxhash',
  'Ref:998/00000003', 'Ref:998/00000003.xxhash',
];

describe('XAPI-order archive read by other tools', () => {
  let dir: string;
  let file: string;
  let fx: Awaited<ReturnType<typeof makeXvaFile>>;
  beforeAll(async () => {
    dir = tmpDir();
    fx = await makeXvaFile(dir, { ...TWO_DISKS, recordEntries: true });
    file = fx.path;
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('summary: chunk counts, string order of refs', () => {
    expect(fx.summary.entries).toEqual(EXPECTED_TWO_DISK_NAMES);
    expect(fx.summary.disks.map((d) => [d.ref, d.chunksWritten, d.zeroChunksSkipped, d.lastCounter])).toEqual([
      ['Ref:1003', 3, 1, 3],
      ['Ref:998', 3, 1, 3],
    ]);
    expect(fs.statSync(file).size).toBe(fx.summary.tarBytes);
    expect(fx.summary.tarBytes % TAR_BLOCK).toBe(0);
  });

  itWithTools('tar')('GNU tar -tvf lists it in XAPI order with mode 0400, mtime 0, short last chunk', () => {
    const lines = execFileSync('tar', ['-tvf', file]).toString().trim().split('\n');
    expect(lines.map((l) => l.split(/\s+/).pop())).toEqual(EXPECTED_TWO_DISK_NAMES);
    expect(lines.every((l) => l.startsWith('-r--------'))).toBe(true);
    expect(lines[1]).toMatch(/ 1048576 1970-01-01 /);
    const last998 = lines[lines.indexOf(lines.find((l) => l.endsWith('Ref:998/00000003'))!)]!;
    expect(last998).toMatch(/ 524288 /);
  });

  itWithTools('bsdtar')('bsdtar lists the same order', () => {
    expect(execFileSync('bsdtar', ['-tf', file]).toString().trim().split('\n')).toEqual(EXPECTED_TWO_DISK_NAMES);
  });

  itWithTools('python3')('Python tarfile reads every member', () => {
    const py = execFileSync('python3', ['-c', 'import sys,tarfile,json;t=tarfile.open(sys.argv[1]);print(json.dumps([[m.name,m.size,m.mode,m.mtime,m.isreg()] for m in t.getmembers()]))', file]).toString();
    const members = JSON.parse(py) as [string, number, number, number, boolean][];
    expect(members.map((m) => m[0])).toEqual(EXPECTED_TWO_DISK_NAMES);
    expect(members.every((m) => m[2] === 0o400 && m[3] === 0 && m[4])).toBe(true);
  });

  itWithTools('tar')('tar -xf reproduces the chunk bytes; checksum files verified independently', async () => {
    const out = path.join(dir, 'x');
    fs.mkdirSync(out);
    execFileSync('tar', ['-xf', file, '-C', out]);
    const d998 = fx.disks.find((d) => d.ref === 'Ref:998')!.expected;
    const d1003 = fx.disks.find((d) => d.ref === 'Ref:1003')!.expected;
    const read = (n: string): Buffer => {
      const p = path.join(out, n);
      fs.chmodSync(p, 0o600); // extracted with XAPI's mode 0400
      return fs.readFileSync(p);
    };
    expect(read('Ref:998/00000000').equals(d998.subarray(0, MiB))).toBe(true);
    expect(read('Ref:998/00000002').equals(d998.subarray(2 * MiB, 3 * MiB))).toBe(true);
    expect(read('Ref:998/00000003').equals(d998.subarray(3 * MiB))).toBe(true);
    expect(read('Ref:998/00000003').length).toBe(512 * KiB);
    expect(read('Ref:1003/00000001').equals(d1003.subarray(MiB, 2 * MiB))).toBe(true);
    expect(read('Ref:1003/00000003').every((b) => b === 0)).toBe(true); // last chunk written though zero
    for (const name of EXPECTED_TWO_DISK_NAMES.filter((n) => n.endsWith('.xxhash'))) {
      const content = read(name).toString('latin1');
      expect(content).toMatch(/^[0-9A-F]{16}$/);
      expect(content).toBe((await xxhash64(read(name.replace(/\.xxhash$/, '')))).toUpperCase());
    }
    expect(fs.existsSync(path.join(out, 'Ref:998/00000001'))).toBe(false);
  });

  itWithTools('tar')('ova.xml is the first entry and declares both VDIs', () => {
    const xml = execFileSync('tar', ['-xOf', file, 'ova.xml']).toString();
    expect(xml).toBe(fx.ovaXml);
    expect(xml).toContain('<member><name>virtual_size</name><value>3670016</value></member>');
    expect(xml).toContain('<member><name>id</name><value>Ref:1003</value></member>');
  });

  test('reference reader reproduces both disks', async () => {
    const disks = await reassemble(fs.readFileSync(file), { 'Ref:998': 3 * MiB + 512 * KiB, 'Ref:1003': 4 * MiB });
    for (const d of fx.disks) expect(disks.get(d.ref)!.equals(d.expected)).toBe(true);
  });
});

describe('SHA-1 and ustar (XAPI <= 8.0 / recommended import dialect)', () => {
  itWithTools('python3')('.checksum files: 40 lowercase hex, equal to Python hashlib; ustar headers', async () => {
    const dir = tmpDir();
    try {
      const fx = await makeXvaFile(dir, { disks: [{ size: 2 * MiB + 4096, fill: [{ offset: 4096, length: 100000 }] }], checksum: 'sha1', tarDialect: 'ustar', mtime: 1700000000, ovaXmlMtime: 1700000001 });
      const entries = walkTar(fs.readFileSync(fx.path));
      expect(entries.map((e) => e.name)).toEqual(['ova.xml', 'Ref:11/00000000', 'Ref:11/00000000.checksum', 'Ref:11/00000002', 'Ref:11/00000002.checksum']);
      for (const e of entries) expect(e).toMatchObject({ format: 'ustar', typeflag: '0', mode: 0o644 });
      expect(entries[0]!.mtime).toBe(1700000001);
      expect(entries[1]!.mtime).toBe(1700000000);
      const script = 'import sys,tarfile,hashlib\nt=tarfile.open(sys.argv[1])\nfor m in t.getmembers():\n  if m.name.endswith(".checksum"):\n    d=t.extractfile(m.name[:-9]).read()\n    s=t.extractfile(m).read().decode()\n    assert s==hashlib.sha1(d).hexdigest(), m.name\n    print(s)';
      const lines = execFileSync('python3', ['-c', script, fx.path]).toString().trim().split('\n');
      expect(lines).toHaveLength(2);
      for (const l of lines) expect(l).toMatch(/^[0-9a-f]{40}$/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('chunk rules (§4)', () => {
  test('an all-zero disk still has chunk 0 and the last chunk', async () => {
    const fx = await makeXvaBuffer({ disks: [{ content: Buffer.alloc(0), size: 5 * MiB }], recordEntries: true });
    expect(fx.summary.entries).toEqual(['ova.xml', 'Ref:11/00000000', 'Ref:11/00000000.xxhash', 'Ref:11/00000004', 'Ref:11/00000004.xxhash']);
    const sums = walkTar(fx.xva).filter((e) => e.name.endsWith('.xxhash')).map((e) => e.data.toString());
    expect(sums).toEqual(['87D2A1B6E1163EF1', '87D2A1B6E1163EF1']);
  });

  test('a disk smaller than one chunk is a single short chunk; a zero-size disk has none', async () => {
    const fx = await makeXvaBuffer({ disks: [{ size: 4096, fill: [{ offset: 0, length: 4096 }] }, { content: Buffer.alloc(0), size: 0 }], recordEntries: true });
    expect(fx.summary.entries).toEqual(['ova.xml', 'Ref:11/00000000', 'Ref:11/00000000.xxhash']);
    expect(fx.summary.disks.find((d) => d.ref === 'Ref:14')).toMatchObject({ chunksWritten: 0, lastCounter: -1, virtualSize: 0 });
    expect(walkTar(fx.xva)[1]!.size).toBe(4096);
  });

  itWithTools('tar')('sizes are rounded up to 512 by default; allowUnalignedSize writes odd sizes exactly', async () => {
    const rounded = await makeXvaBuffer({ disks: [{ size: MiB + 1000, fill: [{ offset: MiB, length: 1000 }] }] });
    expect(rounded.summary.disks[0]!.virtualSize).toBe(MiB + 1024);
    expect(rounded.ovaXml).toContain(`<value>${MiB + 1024}</value>`);
    expect(walkTar(rounded.xva)[3]!.size).toBe(1024);
    expect(rounded.disks[0]!.expected.length).toBe(MiB + 1024);

    const odd = await makeXvaBuffer({ disks: [{ size: MiB + 1000, fill: [{ offset: MiB, length: 1000 }] }], allowUnalignedSize: true });
    expect(odd.summary.disks[0]!.virtualSize).toBe(MiB + 1000);
    const entries = walkTar(odd.xva);
    expect(entries[3]!.size).toBe(1000);
    const disks = await reassemble(odd.xva, { 'Ref:11': MiB + 1000 });
    expect(disks.get('Ref:11')!.equals(odd.disks[0]!.expected)).toBe(true);
    const list = spawnSync('tar', ['-tvf', '-'], { input: odd.xva });
    expect(list.status).toBe(0);
  });

  test('writeAllChunks writes zero chunks too (newer XAPI)', async () => {
    const fx = await makeXvaBuffer({ disks: [{ size: 3 * MiB }], writeAllChunks: true, recordEntries: true });
    expect(fx.summary.entries!.filter((n) => !n.includes('.'))).toEqual(['Ref:11/00000000', 'Ref:11/00000001', 'Ref:11/00000002']);
    expect(fx.summary.disks[0]).toMatchObject({ chunksWritten: 3, zeroChunksSkipped: 0 });
  });

  test('padLastChunk (Xen Orchestra): every chunk 1 MiB, virtual_size rounded up to 1 MiB', async () => {
    const fx = await makeXvaBuffer({ disks: [{ size: 2 * MiB + 4096, fill: [{ offset: 2 * MiB, length: 4096 }] }], padLastChunk: true, tarDialect: 'ustar' });
    expect(fx.summary.disks[0]!.virtualSize).toBe(3 * MiB);
    const data = walkTar(fx.xva).filter((e) => /\/\d+$/.test(e.name));
    expect(data.map((e) => e.size)).toEqual([MiB, MiB]);
    const disks = await reassemble(fx.xva, { 'Ref:11': 3 * MiB });
    expect(disks.get('Ref:11')!.equals(fx.disks[0]!.expected)).toBe(true);
    expect(fx.disks[0]!.expected.length).toBe(3 * MiB);
  });

  test('dropPartialTail (xva-img disk-import): only whole MiBs, virtual_size unchanged, SHA-1, mode 0', async () => {
    const fx = await makeXvaBuffer({
      disks: [{ size: 2 * MiB + 8192, fill: [{ offset: 0, length: 512 }, { offset: 2 * MiB, length: 8192 }] }],
      dropPartialTail: true,
      checksum: 'sha1',
      mode: 0,
      recordEntries: true,
    });
    expect(fx.summary.entries).toEqual(['ova.xml', 'Ref:11/00000000', 'Ref:11/00000000.checksum', 'Ref:11/00000001', 'Ref:11/00000001.checksum']);
    expect(fx.summary.disks[0]!.virtualSize).toBe(2 * MiB + 8192);
    expect(walkTar(fx.xva).every((e) => e.mode === 0)).toBe(true);
    // The reader must zero-fill: the expected image has the tail dropped.
    expect(fx.disks[0]!.expected.subarray(2 * MiB).every((b) => b === 0)).toBe(true);
    const disks = await reassemble(fx.xva, { 'Ref:11': 2 * MiB + 8192 });
    expect(disks.get('Ref:11')!.equals(fx.disks[0]!.expected)).toBe(true);
  });

  test('padLastChunk and dropPartialTail exclude each other', async () => {
    await expect(makeXvaBuffer({ padLastChunk: true, dropPartialTail: true })).rejects.toThrow(RangeError);
  });
});

describe('keep-alive chunks (§4.3)', () => {
  const disk = { size: 6 * MiB, fill: [{ offset: 0, length: 1000 }, { offset: 4 * MiB, length: 5000 }] };

  test('zero-length entries with EF46DB3751D8E999 consume a counter; data keeps its offset', async () => {
    const fx = await makeXvaBuffer({ disks: [disk], keepAlives: [{ disk: 0, beforeChunk: 2 }, { disk: 'Ref:11', beforeChunk: 3, count: 2 }], recordEntries: true });
    expect(fx.summary.entries).toEqual([
      'ova.xml',
      'Ref:11/00000000', 'Ref:11/00000000.xxhash',
      'Ref:11/00000002', 'Ref:11/00000002.xxhash', // keep-alive before chunk 2
      'Ref:11/00000004', 'Ref:11/00000004.xxhash', // two before chunk 3
      'Ref:11/00000005', 'Ref:11/00000005.xxhash',
      'Ref:11/00000007', 'Ref:11/00000007.xxhash', // chunk 4 (offset 4 MiB), counter 4 + 3
      'Ref:11/00000008', 'Ref:11/00000008.xxhash', // last chunk (5): (size-1)/1MiB + k = 5 + 3
    ]);
    const entries = walkTar(fx.xva);
    for (const name of ['Ref:11/00000002', 'Ref:11/00000004', 'Ref:11/00000005']) {
      const i = entries.findIndex((e) => e.name === name);
      expect(entries[i]!.size).toBe(0);
      expect(entries[i + 1]!.data.toString()).toBe('EF46DB3751D8E999');
    }
    expect(fx.summary.disks[0]).toMatchObject({ keepAlives: 3, chunksWritten: 3, lastCounter: 8 });
    const disks = await reassemble(fx.xva, { 'Ref:11': 6 * MiB });
    expect(disks.get('Ref:11')!.equals(fx.disks[0]!.expected)).toBe(true);
  });

  test('callback form', async () => {
    const fx = await makeXvaBuffer({ disks: [disk], keepAlives: (_ref, chunk) => (chunk === 1 ? 1 : 0), recordEntries: true });
    expect(fx.summary.entries!.filter((n) => !n.includes('.'))).toEqual(['Ref:11/00000000', 'Ref:11/00000001', 'Ref:11/00000005', 'Ref:11/00000006']);
  });

  test('out-of-range keep-alive is refused', async () => {
    await expect(makeXvaBuffer({ disks: [disk], keepAlives: [{ disk: 0, beforeChunk: 6 }] })).rejects.toThrow(/cannot insert before 6/);
    await expect(makeXvaBuffer({ disks: [disk], keepAlives: [{ disk: 'Ref:999', beforeChunk: 1 }] })).rejects.toThrow(/no disk/);
  });
});

describe('other options', () => {
  test('omitChecksumFor leaves out a checksum entry', async () => {
    const fx = await makeXvaBuffer({ disks: [{ size: 2 * MiB }], omitChecksumFor: [{ disk: 0, counter: 1 }], recordEntries: true });
    expect(fx.summary.entries).toEqual(['ova.xml', 'Ref:11/00000000', 'Ref:11/00000000.xxhash', 'Ref:11/00000001']);
  });

  test("diskOrder 'spec' writes disks as given (a misordered archive for reader tests)", async () => {
    const fx = await makeXvaBuffer({ ...TWO_DISKS, diskOrder: 'spec', recordEntries: true });
    expect(fx.summary.entries![1]).toBe('Ref:998/00000000');
  });

  test('ovaXml override', async () => {
    const fx = await makeXvaBuffer({ ovaXml: '<value>custom</value>' });
    expect(walkTar(fx.xva)[0]!.data.toString()).toBe('<value>custom</value>');
  });

  test('deterministic bytes for the same options', async () => {
    const a = await makeXvaBuffer(TWO_DISKS);
    const b = await makeXvaBuffer(TWO_DISKS);
    expect(a.xva.equals(b.xva)).toBe(true);
  });

  test('compareRefs is byte order: Ref:1003 < Ref:998 < Ref:999', () => {
    expect(['Ref:999', 'Ref:998', 'Ref:1003'].sort(compareRefs)).toEqual(['Ref:1003', 'Ref:998', 'Ref:999']);
    expect(chunkEntryName('Ref:1', 123456789)).toBe('Ref:1/123456789');
  });

  test('abort signal stops the writer', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(makeXvaBuffer({ signal: ac.signal })).rejects.toThrow();
  });

  test('onProgress reports every chunk position', async () => {
    const seen: number[] = [];
    await makeXvaBuffer({ disks: [{ size: 3 * MiB + 512 }], onProgress: (p) => seen.push(p.bytesDone) });
    expect(seen).toEqual([MiB, 2 * MiB, 3 * MiB, 3 * MiB + 512]);
  });
});

describe('compression', () => {
  itWithTools('gzip')('gzip output is the same tar, readable by gzip -dc', async () => {
    const plain = await makeXvaBuffer(TWO_DISKS);
    const gz = await makeXvaBuffer({ ...TWO_DISKS, compression: 'gzip' });
    expect(gz.xva.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(execFileSync('gzip', ['-dc'], { input: gz.xva, maxBuffer: 64 * MiB }).equals(plain.xva)).toBe(true);
    expect(gz.summary.bytesWritten).toBe(gz.xva.length);
    expect(gz.summary.tarBytes).toBe(plain.xva.length);
  });

  itWithTools('zstd')('zstd output is the same tar, readable by zstd -dc', async () => {
    const plain = await makeXvaBuffer(TWO_DISKS);
    const zst = await makeXvaBuffer({ ...TWO_DISKS, compression: 'zstd' });
    expect(zst.xva.subarray(0, 4)).toEqual(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
    expect(execFileSync('zstd', ['-dc'], { input: zst.xva, maxBuffer: 64 * MiB }).equals(plain.xva)).toBe(true);
  });

  // Node >= 22.15 compresses zstd itself and never looks for the binary: a Node version, not a
  // missing tool, so a skip with the reason in the test name (jest has no skip-with-reason).
  const nodeHasZstd = typeof (zlib as unknown as { createZstdCompress?: unknown }).createZstdCompress === 'function';
  (nodeHasZstd ? test.skip : test)(`a missing zstd binary gives a clear OUTPUT_UNSUPPORTED error${nodeHasZstd ? ` (skipped: node:zlib of Node ${process.version} has zstd)` : ''}`, async () => {
    const err = await makeXvaBuffer({ compression: 'zstd', zstdPath: path.join(os.tmpdir(), 'no-such-dir', 'zstd') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutputError);
    expect((err as OutputError).code).toBe('OUTPUT_UNSUPPORTED');
    expect((err as OutputError).message).toMatch(/zstd/);
  });

  itWithTools('tar', 'gzip')('gzip file via makeXvaFile gets a .gz name', async () => {
    const dir = tmpDir();
    try {
      const fx = await makeXvaFile(dir, { vmName: 'gzvm', compression: 'gzip' });
      expect(path.basename(fx.path)).toBe('gzvm.xva.gz');
      const list = execFileSync('tar', ['-tzf', fx.path]).toString().trim().split('\n');
      expect(list[0]).toBe('ova.xml');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sources and sinks', () => {
  const content = sparseDisk({ size: 3 * MiB + 512, seed: 9, fill: [{ offset: 100, length: 3000 }, { offset: 3 * MiB, length: 512 }] });
  const spec = (source: ReturnType<typeof bufferSource>) => ({ vm: { name: 'src', vcpus: 1, memoryBytes: MiB }, disks: [{ ref: 'Ref:1', name: 'd', userdevice: 0, bootable: true, source }], version: { date: '2026-01-01' } });
  const opts: FixtureWriteOptions = { ovaXmlMtime: 0, uuidGen: () => '00000000-0000-4000-8000-000000000000' };

  async function write(source: ReturnType<typeof bufferSource>): Promise<Buffer> {
    const { sink, result } = collectingSink();
    await writeXva(spec(source), sink, opts);
    return result();
  }

  test('raw file source and stream source give the same archive as a buffer source', async () => {
    const dir = tmpDir();
    try {
      const fromBuffer = await write(bufferSource(content));
      const file = path.join(dir, 'disk.raw');
      fs.writeFileSync(file, content);
      const raw = await RawReader.open(file);
      expect(raw.virtualSize).toBe(content.length);
      expect((await write(raw)).equals(fromBuffer)).toBe(true);
      await raw.close();
      const parts = [content.subarray(0, 777), content.subarray(777, 2 * MiB + 5), content.subarray(2 * MiB + 5)];
      expect((await write(streamSource(Readable.from(parts), content.length))).equals(fromBuffer)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('sources shorter than the virtual size read as zeros', async () => {
    const dir = tmpDir();
    try {
      const file = path.join(dir, 'short.raw');
      fs.writeFileSync(file, content.subarray(0, 5000));
      const raw = await RawReader.open(file, { offset: 0, length: 2 * MiB }); // a disk larger than its file
      const chunk = await raw.read(0, MiB);
      expect(chunk.subarray(0, 5000).equals(content.subarray(0, 5000))).toBe(true);
      expect(chunk.subarray(5000).every((b) => b === 0)).toBe(true);
      await raw.close();
      const s = streamSource(Readable.from([Buffer.from('abc')]), 10);
      expect(await s.read(1, 4)).toEqual(Buffer.from([0x62, 0x63, 0, 0]));
      await expect(s.read(0, 1)).rejects.toThrow(/backwards/);
      await expect(bufferSource(Buffer.alloc(4)).read(2, 4)).rejects.toThrow(RangeError);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('backpressure: a slow sink never has more than a few MiB queued', async () => {
    let maxQueued = 0;
    const parts: Buffer[] = [];
    const sink = new Writable({
      highWaterMark: 64 * KiB,
      write(chunk: Buffer, _enc, cb) {
        parts.push(chunk);
        maxQueued = Math.max(maxQueued, sink.writableLength);
        setTimeout(cb, 0);
      },
    });
    const big = Buffer.alloc(24 * MiB, 0x5a); // non-zero: every chunk is written
    const summary = await writeXva(spec(bufferSource(big)), sink, opts);
    expect(Buffer.concat(parts).length).toBe(summary.tarBytes);
    expect(maxQueued).toBeLessThan(3 * MiB);
  });

  test('a failing sink rejects with an OutputError', async () => {
    const sink = new Writable({
      write(_chunk, _enc, cb) {
        cb(Object.assign(new Error('disk full'), { code: 'ENOSPC' }));
      },
    });
    const err = await writeXva(spec(bufferSource(content)), sink, opts).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutputError);
    expect((err as OutputError).code).toBe('OUTPUT_NO_SPACE');
  });

  test('end: false leaves the sink open', async () => {
    const { sink, result } = collectingSink();
    await writeXva(spec(bufferSource(content)), sink, { ...opts, end: false });
    expect(sink.writableEnded).toBe(false);
    sink.write('tail');
    expect(result().subarray(-4).toString()).toBe('tail');
  });

  test('block status: chunks outside a reader\'s allocated extents are never read, and read as zeros', async () => {
    // Allocated: MiB 0 (partly) and the tail; the data at 1 MiB + 5 lies outside every extent,
    // so the writer must not see it (the DiskReader contract: outside the extents reads as zeros).
    const data = Buffer.from(content);
    data[MiB + 5] = 0x77;
    const extents: DiskExtent[] = [{ offset: 0, length: 4096 }, { offset: 3 * MiB, length: 512 }];
    const reads: Array<[number, number]> = [];
    const inner = bufferSource(data);
    const reader: DiskReader = {
      ...inner,
      name: 'mapped',
      read: (offset, length) => (reads.push([offset, length]), inner.read(offset, length)),
      readInto: (buf, offset) => (reads.push([offset, buf.length]), inner.readInto(buf, offset)),
      async *allocatedExtents() {
        yield* extents;
      },
    };
    const expected = Buffer.from(content);
    expected.fill(0, 4096, 3 * MiB); // what the extents leave out
    expect((await write(reader)).equals(await write(bufferSource(expected)))).toBe(true);
    // chunk 0 and the last chunk (512 bytes at 3 MiB); chunks 1 and 2 are holes, never read
    expect(reads).toEqual([
      [0, MiB],
      [3 * MiB, 512],
    ]);
  });

  test('a stream source and the repack pipe are sequential readers; buffers and raw files are not', async () => {
    const dir = tmpDir();
    try {
      const file = path.join(dir, 'disk.raw');
      fs.writeFileSync(file, content);
      const raw: DiskReader = await RawReader.open(file);
      expect([streamSource(Readable.from([]), 1).sequential, new DiskPipe('Ref:1', 1).sequential]).toEqual([true, true]);
      expect([bufferSource(content).sequential ?? false, raw.sequential ?? false]).toEqual([false, false]);
      await raw.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('property: any sparse disk map and option mix round-trips through the reference reader', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 5 * MiB }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 3000 })), { maxLength: 4 }),
      fc.record({
        keepAlive: fc.option(fc.nat(), { nil: undefined }),
        writeAllChunks: fc.boolean(),
        checksum: fc.constantFrom('xxh64' as const, 'sha1' as const),
        tarDialect: fc.constantFrom('xapi' as const, 'ustar' as const),
        allowUnalignedSize: fc.boolean(),
      }),
      async (size, ranges, o) => {
        const fill = size === 0 ? [] : ranges.map(([at, len]) => ({ offset: at % size, length: Math.min(len, size - (at % size)) }));
        const chunkCount = Math.ceil((o.allowUnalignedSize ? size : Math.ceil(size / 512) * 512) / MiB);
        const keepAlives = o.keepAlive !== undefined && chunkCount > 0 ? [{ disk: 0, beforeChunk: o.keepAlive % chunkCount }] : undefined;
        const fx = await makeXvaBuffer({ disks: [{ size, fill }], writeAllChunks: o.writeAllChunks, checksum: o.checksum, tarDialect: o.tarDialect, allowUnalignedSize: o.allowUnalignedSize, keepAlives });
        const declared = fx.disks[0]!.virtualSize;
        const disks = await reassemble(fx.xva, { 'Ref:11': declared });
        const got = disks.get('Ref:11') ?? Buffer.alloc(0);
        expect(got.equals(fx.disks[0]!.expected)).toBe(true);
      },
    ),
    { numRuns: 40 },
  );
});
