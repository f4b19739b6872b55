/**
 * Random access into a plain XVA file (src/xva/random-access.ts, chunk-index.ts): every byte
 * read at any offset is the byte the converter writes there, whatever the archive's producer
 * and layout; checksums are verified on first read with the converter's policies; input that
 * cannot be read out of order is refused with a line saying how to get a plain file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { ChecksumError, UsageError, XvaFormatError } from '../../src/errors';
import { INDEX_BYTES_PER_CHUNK } from '../../src/xva/chunk-index';
import { DiskRandomReader, openRandomAccessXva, type RandomAccessXva } from '../../src/xva/random-access';
import { corruptEntries } from '../cli/_cli';
import { independentXva, pseudoRandom } from '../helpers/independent';
import { makeXvaFile, MiB, type MakeXvaOptions, type XvaFixture } from '../helpers/xva-fixtures';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xva-ra-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const open = (file: string): Promise<RandomAccessXva> => openRandomAccessXva(file, { purpose: 'test' });

/** Reads a whole disk through the random-access reader, in pieces of `step` bytes. */
async function readWhole(xva: RandomAccessXva, disk: number, step = 3 * MiB + 17): Promise<Buffer> {
  const r = xva.reader(xva.index.disks[disk]!);
  const out = Buffer.alloc(r.size);
  for (let at = 0; at < r.size; at += step) {
    const got = await r.read(at, Math.min(step, r.size - at));
    for (const run of got.runs) if (!run.zero) got.data!.copy(out, run.offset, run.offset - at, run.offset - at + run.length);
    got.release();
  }
  return out;
}

const layouts: Array<[string, MakeXvaOptions]> = [
  ['two disks in XAPI string order, XXH64', { disks: [{ ref: 'Ref:998', size: 4 * MiB, fill: [{ offset: 0, length: MiB }, { offset: 3 * MiB, length: 4096 }] }, { ref: 'Ref:1003', size: 3 * MiB + MiB / 2 }] }],
  ['SHA-1', { checksum: 'sha1', disks: [{ size: 5 * MiB, fill: [{ offset: MiB / 2, length: 2 * MiB }] }] }],
  ['keep-alives before data', { keepAlives: (_ref, chunk) => (chunk === 2 ? 3 : chunk === 4 ? 1 : 0), disks: [{ size: 8 * MiB, fill: [{ offset: 0, length: 4096 }, { offset: 6 * MiB, length: MiB }] }] }],
  ['odd size, short last chunk', { allowUnalignedSize: true, disks: [{ size: 2 * MiB + 777, fill: [{ offset: 2 * MiB, length: 777 }] }] }],
  ['Xen Orchestra padding (last chunk padded, size rounded up)', { padLastChunk: true, disks: [{ size: 2 * MiB + 4096, fill: [{ offset: 2 * MiB, length: 4096 }] }] }],
  ['xva-img (partial tail dropped)', { dropPartialTail: true, checksum: 'sha1', disks: [{ size: 3 * MiB + 4096, fill: [{ offset: 0, length: 3 * MiB + 4096 }] }] }],
  ['every chunk written, zeros too', { writeAllChunks: true, disks: [{ size: 3 * MiB }] }],
];

describe('reads give the bytes the converter writes', () => {
  test.each(layouts)('%s', async (_name, opts) => {
    const fx: XvaFixture & { path: string } = await makeXvaFile(dir, { ...opts, fileName: `${_name.replace(/\W+/g, '-')}.xva` });
    const xva = await open(fx.path);
    try {
      for (const expected of fx.disks) {
        const i = xva.index.disks.findIndex((d) => d.disk.ref === expected.ref);
        expect((await readWhole(xva, i)).equals(expected.expected)).toBe(true);
      }
    } finally {
      await xva.close();
    }
  });

  test.each(['xapi', 'xo', 'xvaimg'] as const)('an independent producer, %s style', async (style) => {
    const image = pseudoRandom(4 * MiB + 1536, 7);
    image.fill(0, MiB, 2 * MiB);
    const xva = independentXva({ style, checksum: style === 'xvaimg' ? 'sha1' : 'xxh64', disks: [{ ref: 'Ref:998', userdevice: '0', image, keepaliveBefore: style === 'xapi' ? [1, 2] : [] }] });
    const file = path.join(dir, `indep-${style}.xva`);
    fs.writeFileSync(file, xva);
    const ra = await open(file);
    try {
      const got = await readWhole(ra, 0, Math.floor(MiB / 3));
      // xva-img drops the trailing partial MiB: the converter zero-fills it, and so do we.
      const want = Buffer.alloc(got.length);
      image.copy(want, 0, 0, style === 'xvaimg' ? 4 * MiB : image.length);
      expect(got.equals(want)).toBe(true);
    } finally {
      await ra.close();
    }
  });

  test('any range of any disk (property)', async () => {
    const fx = await makeXvaFile(dir, {
      fileName: 'ranges.xva',
      keepAlives: (_ref, chunk) => (chunk % 3 === 1 ? 1 : 0),
      allowUnalignedSize: true,
      disks: [
        { size: 6 * MiB + 333, fill: [{ offset: 100, length: MiB }, { offset: 3 * MiB - 10, length: 20 }, { offset: 6 * MiB, length: 333 }] },
        { size: 2 * MiB, fill: [{ offset: MiB, length: MiB }] },
      ],
    });
    const xva = await open(fx.path);
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 1 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 3 * MiB }), async (d, where, len) => {
          const expected = fx.disks[d]!;
          const index = xva.index.disks.find((x) => x.disk.ref === expected.ref)!;
          const offset = Math.floor(where * expected.virtualSize);
          const length = Math.min(len, expected.virtualSize - offset);
          const r = await xva.reader(index).read(offset, length);
          const got = Buffer.alloc(length);
          let at = offset;
          for (const run of r.runs) {
            expect(run.offset).toBe(at); // runs cover the range in order, without gaps
            if (!run.zero) r.data!.copy(got, run.offset - offset, run.offset - offset, run.offset - offset + run.length);
            at += run.length;
          }
          expect(at).toBe(offset + length);
          r.release();
          expect(got.equals(expected.expected.subarray(offset, offset + length))).toBe(true);
        }),
        { numRuns: 200 },
      );
    } finally {
      await xva.close();
    }
  });
});

describe('the index', () => {
  test(`costs ${INDEX_BYTES_PER_CHUNK} bytes per stored chunk; holes and keep-alives cost nothing`, async () => {
    const fx = await makeXvaFile(dir, {
      fileName: 'index-size.xva',
      keepAlives: (_ref, chunk) => (chunk === 3 ? 5 : 0),
      disks: [{ size: 64 * MiB, fill: [{ offset: 0, length: 2 * MiB }, { offset: 40 * MiB, length: MiB }] }],
    });
    const xva = await open(fx.path);
    const index = xva.index.disks[0]!;
    expect(index.count).toBe(4); // chunks 0, 1, 40 and the last one
    expect(index.bytes).toBe(4 * INDEX_BYTES_PER_CHUNK);
    await xva.close();
  });

  test('a truncated archive is refused when indexing, as by the converter', async () => {
    const fx = await makeXvaFile(dir, { fileName: 'cut.xva', disks: [{ size: 3 * MiB, fill: [{ offset: 0, length: 3 * MiB }] }] });
    const cut = path.join(dir, 'cut-short.xva');
    fs.writeFileSync(cut, fs.readFileSync(fx.path).subarray(0, 2 * MiB));
    await expect(open(cut)).rejects.toThrow(XvaFormatError);
  });
});

describe('verification on first read', () => {
  let good: XvaFixture & { path: string };
  let bad: string;
  beforeAll(async () => {
    good = await makeXvaFile(dir, { fileName: 'verify.xva', disks: [{ ref: 'Ref:3', size: 4 * MiB, fill: [{ offset: 0, length: 4 * MiB }] }] });
    bad = path.join(dir, 'verify-bad.xva');
    await corruptEntries(good.path, ['Ref:3/00000002'], bad); // disk bytes 2-3 MiB
  });

  test("fail (default): reads touching the bad chunk fail with the chunk's name; others succeed; reported once", async () => {
    const reports: string[] = [];
    const xva = await open(bad);
    const r = xva.reader(xva.index.disks[0]!, { onReport: (m) => reports.push(m) });
    const ok = await r.read(0, 2 * MiB);
    expect(ok.data!.equals(good.disks[0]!.expected.subarray(0, 2 * MiB))).toBe(true);
    ok.release();
    await expect(r.read(2 * MiB + 10, 100)).rejects.toThrow(ChecksumError);
    await expect(r.read(MiB, 2 * MiB)).rejects.toThrow(/Ref:3\/00000002: XXH64 mismatch/);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatch(/verify-bad\.xva: Ref:3\/00000002: XXH64 mismatch \(expected [0-9A-F]{16}, got [0-9A-F]{16}\); reads of disk 0 bytes 2097152-3145727 fail/);
    await xva.close();
  });

  test('readers arriving during a chunk\'s check are served from its one read', async () => {
    const xva = await open(good.path);
    const r = xva.reader(xva.index.disks[0]!);
    const reads = await Promise.all(Array.from({ length: 8 }, (_, k) => r.read(MiB + k * 65536, 65536)));
    expect(r.readCount).toBe(1); // the check's read of the entry and its checksum
    reads.forEach((got, k) => expect(got.data!.equals(good.disks[0]!.expected.subarray(MiB + k * 65536, MiB + (k + 1) * 65536))).toBe(true));
    reads.forEach((got) => got.release());
    (await r.read(MiB + 4096, 4096)).release(); // its bytes are still among the recent ones
    expect(r.readCount).toBe(1);
    await xva.close();
  });

  test('random readers read only the chunks they touch', async () => {
    const xva = await open(good.path);
    const r = xva.reader(xva.index.disks[0]!);
    for (const at of [3 * MiB + 5, 1 * MiB + 7, 2 * MiB + 9]) (await r.read(at, 100)).release();
    expect(r.readCount).toBe(3);
    await xva.close();
  });

  test('a sequential reader finds the next chunks checked ahead; an old verified chunk is read for just its bytes', async () => {
    const fx = await makeXvaFile(dir, { fileName: 'sequential.xva', disks: [{ size: 12 * MiB, fill: [{ offset: 0, length: 12 * MiB }] }] });
    const xva = await open(fx.path);
    const r = xva.reader(xva.index.disks[0]!);
    const seen = Buffer.alloc(12 * MiB);
    for (let at = 0; at < 12 * MiB; at += MiB / 4) {
      const got = await r.read(at, MiB / 4);
      got.data!.copy(seen, at);
      got.release();
    }
    expect(seen.equals(fx.disks[0]!.expected)).toBe(true);
    expect(r.readCount).toBe(12); // one read per chunk: its check, done ahead of the reader
    const again = await r.read(0, 4096); // chunk 0 is verified but no longer recent
    expect(again.data!.equals(fx.disks[0]!.expected.subarray(0, 4096))).toBe(true);
    again.release();
    expect(r.readCount).toBe(13);
    await xva.close();
  });

  test('concurrent first reads of a bad chunk share one check', async () => {
    const reports: string[] = [];
    const xva = await open(bad);
    const r = xva.reader(xva.index.disks[0]!, { onReport: (m) => reports.push(m) });
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, k) => r.read(2 * MiB + k * 4096, 4096)));
    expect(results.every((x) => x.status === 'rejected')).toBe(true);
    expect(reports).toHaveLength(1);
    await xva.close();
  });

  test('warn: the bytes as stored; zero: zeros', async () => {
    const stored = fs.readFileSync(bad);
    for (const policy of ['warn', 'zero'] as const) {
      const reports: string[] = [];
      const xva = await open(bad);
      const index = xva.index.disks[0]!;
      const r = xva.reader(index, { onBadChunk: policy, onReport: (m) => reports.push(m) });
      const got = await r.read(2 * MiB, MiB);
      const chunk = index.stored(2);
      if (policy === 'warn') expect(got.data!.equals(stored.subarray(chunk.dataOffset, chunk.dataOffset + MiB))).toBe(true);
      else expect(got.runs).toEqual([{ offset: 2 * MiB, length: MiB, zero: true }]);
      got.release();
      expect(reports).toEqual([expect.stringMatching(policy === 'warn' ? /served as stored \(--on-bad-chunk warn\)/ : /read as zeros \(--on-bad-chunk zero\)/)]);
      await xva.close();
    }
  });

  test('the same without the hash thread (checksums on the main thread)', async () => {
    const xva = await open(bad);
    const fd = fs.openSync(bad, 'r');
    try {
      const r = new DiskRandomReader(fd, bad, xva.index.disks[0]!, {}, undefined, () => undefined);
      const ok = await r.read(0, 2 * MiB);
      expect(ok.data!.equals(good.disks[0]!.expected.subarray(0, 2 * MiB))).toBe(true);
      ok.release();
      await expect(r.read(2 * MiB, 10)).rejects.toThrow(/Ref:3\/00000002: XXH64 mismatch/);
    } finally {
      fs.closeSync(fd);
      await xva.close();
    }
  });

  test('verifyRange checks ahead of reads and reports the bad chunk', async () => {
    const xva = await open(bad);
    const r = xva.reader(xva.index.disks[0]!);
    await expect(r.verifyRange(0, 2 * MiB)).resolves.toBeUndefined();
    await expect(r.verifyRange(0, 4 * MiB)).rejects.toThrow(ChecksumError);
    await xva.close();
  });
});

describe('input that cannot be read out of order is refused (exit 1) with how to get a plain file', () => {
  let plain: string;
  beforeAll(async () => {
    plain = (await makeXvaFile(dir, { fileName: 'plain.xva' })).path;
  });

  test.each([
    ['gzip', 'gzip', /is gzip-compressed: decompress it first: gunzip -k /],
    ['zstd', 'zstd', /is zstd-compressed: decompress it first: zstd -d /],
  ] as const)('%s', async (_name, compression, message) => {
    const fx = await makeXvaFile(dir, { compression, fileName: `c.xva.${compression}` });
    const err = await openRandomAccessXva(fx.path, { purpose: 'xva2img serve' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(1);
    expect((err as Error).message).toMatch(/xva2img serve needs random access into an uncompressed XVA file, and it/);
    expect((err as Error).message).toMatch(message);
  });

  test.each([
    ['-', /standard input can only be read in order/],
    ['https://host/export?uuid=1', /a URL is read as a stream: download it first/],
  ])('%s', async (input, message) => {
    await expect(openRandomAccessXva(input, { purpose: 'xva2img map' })).rejects.toThrow(message);
  });

  test('a missing file is unreadable input (exit 2)', async () => {
    await expect(openRandomAccessXva(path.join(dir, 'nope.xva'), { purpose: 'x' })).rejects.toMatchObject({ code: 'INPUT_UNREADABLE', exitCode: 2 });
  });

  test('a plain file is accepted', async () => {
    const xva = await open(plain);
    expect(xva.index.disks).toHaveLength(1);
    await xva.close();
  });
});
