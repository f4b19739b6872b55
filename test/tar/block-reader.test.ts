/**
 * The block reader (plain XVA files are converted by reading them front to back in 4 MiB
 * blocks): it must yield the same entries and bytes as the tar-stream reader, for archives
 * from other producers too, whatever the block boundaries; chunks inside one block are handed
 * out without a copy and stay valid while a writer holds them.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { XvaFormatError } from '../../src/errors';
import type { DiskInfo } from '../../src/xva/metadata/model';
import { openInput } from '../../src/input/open';
import { ChunkBufferPool, type PooledBuffer } from '../../src/io/buffer-pool';
import { BlockCursor, blockTarReader, openFileBlockSource, streamBlockSource, FILE_BLOCK_BYTES, type BlockSource } from '../../src/tar/block-reader';
import { readTar } from '../helpers/tar-stream-oracle';
import { itWithTools } from '../helpers/system-tools';
import { readXva } from '../../src/xva/reader';
import { independentXva, pseudoRandom } from '../helpers/independent';
import { MemoryWriter } from '../helpers/memory-writer';
import { asStreamSource } from '../helpers/sources';
import { builtDist, ROOT } from '../cli/_cli';

const MiB = 1024 * 1024;
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'block-reader-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/**
 * A BlockSource over a buffer cut into blocks of `size` bytes (any size, not only 4 MiB). Each
 * block is a copy of its own, unless `inPlace`: then the blocks are views of `bytes`, back to
 * back in one memory, as the decoder thread's ring blocks are.
 */
function memoryBlocks(bytes: Buffer, size: number, inPlace = false): BlockSource & { released: number } {
  let at = 0;
  const src = {
    released: 0,
    size: bytes.length,
    lendsBlocks: true,
    async next(): Promise<PooledBuffer | null> {
      if (at >= bytes.length) return null;
      const block = bytes.subarray(at, Math.min(at + size, bytes.length));
      const buf = inPlace ? block : Buffer.from(block);
      at += size;
      let refs = 1;
      const drop = (): void => {
        if (--refs === 0) src.released++;
      };
      return { buf, lease: { hold: () => (refs++, drop) }, release: drop };
    },
    async close() {},
  };
  return src;
}

async function entriesOf(reader: AsyncIterable<{ name: string; size: number; type: string; readAll(): Promise<Buffer> }>): Promise<Array<[string, number, string, string]>> {
  const out: Array<[string, number, string, string]> = [];
  for await (const e of reader) out.push([e.name, e.size, e.type, (await e.readAll()).toString('hex')]);
  return out;
}

function sampleDisk(size: number, seed: number): Buffer {
  const d = pseudoRandom(size, seed);
  if (size > 3 * MiB) d.fill(0, MiB, 2 * MiB);
  return d;
}

describe('same entries as the tar-stream reader', () => {
  const xva = independentXva({
    style: 'xapi',
    disks: [
      { ref: 'Ref:10', userdevice: '1', image: sampleDisk(5 * MiB + 512, 1), keepaliveBefore: [2] },
      { ref: 'Ref:9', userdevice: '0', image: sampleDisk(2 * MiB, 2) },
    ],
  });

  test.each([512, 700, 4096, 1536 * 1024, FILE_BLOCK_BYTES])('blocks of %i bytes (headers and chunks straddling blocks)', async (blockSize) => {
    const expected = await entriesOf(readTar(Readable.from([xva])));
    const got = await entriesOf(blockTarReader(memoryBlocks(xva, blockSize), { input: 'mem.xva' }));
    expect(got).toEqual(expected);
  });

  test('a file opened for conversion reads the same bytes as the stream, disk by disk', async () => {
    const file = path.join(dir, 'xapi.xva');
    fs.writeFileSync(file, xva);
    const read = async (seek: boolean): Promise<Map<string, Buffer>> => {
      const disks = new Map<string, Buffer>();
      const opened = await openInput(file);
      const source = seek ? opened : asStreamSource(opened);
      try {
        expect(opened).toMatchObject({ kind: 'file', path: file });
        await readXva(
          source,
          {
            openDisk: (d: DiskInfo) => {
              const w = new MemoryWriter(d.virtualSize);
              const finish = w.finish.bind(w);
              w.finish = async () => {
                disks.set(d.ref, w.bytes);
                return finish();
              };
              return w;
            },
          },
        );
      } finally {
        await source.close();
      }
      return disks;
    };
    const viaBlocks = await read(true);
    const viaStream = await read(false);
    expect([...viaBlocks.keys()].sort()).toEqual(['Ref:10', 'Ref:9']);
    for (const [ref, bytes] of viaStream) expect(viaBlocks.get(ref)!.equals(bytes)).toBe(true);
  });
});

describe('archives written by GNU tar (pax and GNU long names, ./ prefixes, directories)', () => {
  itWithTools('tar').each(['pax', 'gnu', 'ustar'])('--format %s: same entries and bytes as tar-stream, through a stream cut in odd pieces', async (format) => {
    const src = path.join(dir, `tree-${format}`);
    const long = format === 'ustar' ? 'd'.repeat(90) : 'd'.repeat(150);
    fs.mkdirSync(path.join(src, 'sub', long), { recursive: true });
    fs.writeFileSync(path.join(src, 'a.txt'), 'hello');
    fs.writeFileSync(path.join(src, 'sub', long, 'f.bin'), pseudoRandom(3000, 5));
    fs.writeFileSync(path.join(src, 'empty'), '');
    const tarFile = path.join(dir, `tree-${format}.tar`);
    execFileSync('tar', ['--format', format, '-C', src, '-cf', tarFile, '.']);
    const bytes = fs.readFileSync(tarFile);
    const expected = await entriesOf(readTar(Readable.from([bytes])));
    expect(expected.map((e) => e[0])).toContain(`sub/${long}/f.bin`);
    for (const pieces of [1, 333, 512, 4096]) {
      const reader = blockTarReader(memoryBlocks(bytes, pieces === 1 ? bytes.length : pieces), { input: tarFile });
      expect(await entriesOf(reader)).toEqual(expected);
      expect(reader.endBlocksSeen()).toBe(true);
    }
  });
});

describe('zero copy and leases', () => {
  test('a chunk inside one block is a view of it; the block is not reused while a writer holds it', async () => {
    const xva = independentXva({ style: 'xo', disks: [{ ref: 'Ref:1', userdevice: '0', image: pseudoRandom(3 * MiB, 7) }] });
    const blocks = memoryBlocks(xva, 8 * MiB); // the whole archive in one block
    const reader = blockTarReader(blocks, { input: 'mem.xva' });
    const releases: Array<() => void> = [];
    let chunks = 0;
    for await (const e of reader) {
      if (!/^Ref:1\/\d+$/.test(e.name)) continue;
      const { data, lease } = await e.readLeased!();
      expect(data.length).toBe(MiB);
      releases.push(lease.hold());
      chunks++;
    }
    expect(chunks).toBe(3);
    reader.destroy();
    expect(blocks.released).toBe(0); // three holds keep the block
    for (const r of releases) r();
    expect(blocks.released).toBe(1);
  });

  test('a chunk across two blocks is copied whole into a pooled buffer', async () => {
    const image = pseudoRandom(2 * MiB, 9);
    const xva = independentXva({ style: 'xapi', disks: [{ ref: 'Ref:1', userdevice: '0', image }] });
    const reader = blockTarReader(memoryBlocks(xva, 1000 * 1024), { input: 'mem.xva' });
    const got: Buffer[] = [];
    for await (const e of reader) if (/^Ref:1\/\d+$/.test(e.name)) got.push(Buffer.from((await e.readLeased!()).data));
    expect(Buffer.concat(got).equals(image)).toBe(true);
  });

  test('a chunk across two neighbouring blocks of one memory (the decoder ring) is one view of both, holding both', async () => {
    const image = pseudoRandom(2 * MiB, 11);
    const xva = independentXva({ style: 'xapi', disks: [{ ref: 'Ref:1', userdevice: '0', image }] });
    const memory = Buffer.from(xva); // its own memory, so views of it are recognisable
    const blocks = memoryBlocks(memory, 1000 * 1024, true);
    const reader = blockTarReader(blocks, { input: 'mem.xva' });
    const got: Buffer[] = [];
    const holds: Array<() => void> = [];
    for await (const e of reader) {
      if (!/^Ref:1\/\d+$/.test(e.name)) continue;
      const { data, lease } = await e.readLeased!();
      expect(data.buffer).toBe(memory.buffer); // no copy: a view of the blocks themselves
      got.push(data);
      holds.push(lease.hold());
    }
    reader.destroy();
    expect(Buffer.concat(got).equals(image)).toBe(true);
    // Every block a chunk lies in (both of a straddling one) stays out while the holds last.
    const returnedWhileHeld = blocks.released;
    for (const h of holds) h();
    expect(blocks.released).toBeGreaterThan(returnedWhileHeld);
    expect(blocks.released).toBe(Math.ceil(memory.length / (1000 * 1024)));
  });

  test('a view across two blocks keeps the first block from its source until released', async () => {
    const memory = Buffer.from(pseudoRandom(4096, 3));
    const blocks = memoryBlocks(memory, 1024, true);
    const cursor = new BlockCursor(blocks);
    const t = (await cursor.take(1000, 100, new ChunkBufferPool(4096)))!;
    expect(t.data.buffer).toBe(memory.buffer);
    expect(t.data.equals(memory.subarray(1000, 1100))).toBe(true);
    expect((await cursor.readAt(2048, 16)).equals(memory.subarray(2048, 2064))).toBe(true); // the cursor moves past both
    expect(blocks.released).toBe(0);
    t.release();
    expect(blocks.released).toBe(2);
    cursor.dispose();
  });

  test('the cursor only moves forward', async () => {
    const cursor = new BlockCursor(memoryBlocks(Buffer.alloc(4096, 1), 1024));
    expect((await cursor.readAt(2048, 512)).length).toBe(512);
    await expect(cursor.readAt(0, 512)).rejects.toThrow(/behind the cursor/);
  });

  test('take() past the end of the input is null (the caller reports the truncation)', async () => {
    const cursor = new BlockCursor(memoryBlocks(Buffer.alloc(3000, 1), 1024));
    expect(await cursor.take(2000, 2000, new ChunkBufferPool(4096))).toBeNull();
  });
});

describe('memory', () => {
  // The reader makes a few objects per tar entry, ~7 000 entries per 3.5 GB of XVA. They must die
  // young: objects that survive two scavenges are promoted to old space and stay there until a
  // mark-compact, so peak memory would grow with the size of the archive. Per-entry closures did
  // that (about 8 % of all allocation promoted); entry objects with prototype methods do not.
  test('entries die young: reading 40 000 entries promotes under 3 % of what the reader allocates', () => {
    const out = execFileSync(process.execPath, ['--trace-gc-nvp', path.join(ROOT, 'test', 'helpers', 'promotion-probe.js'), builtDist()], { encoding: 'utf8' });
    expect(out).toContain('entries 40000');
    let allocated = 0;
    let promoted = 0;
    let scavenges = 0;
    const lines = out.split('\n');
    for (const line of lines.slice(lines.indexOf('reading'))) {
      if (!/ gc=s /.test(line)) continue;
      const a = /\ballocated=(\d+)/.exec(line);
      const p = /\bpromoted=(\d+)/.exec(line);
      if (!a || !p) throw new Error(`unexpected --trace-gc-nvp line: ${line.slice(0, 200)}`);
      allocated += Number(a[1]);
      promoted += Number(p[1]);
      scavenges++;
    }
    expect(scavenges).toBeGreaterThanOrEqual(5); // enough scavenges for promotion to show
    expect(promoted / allocated).toBeLessThan(0.03);
  });
});

describe('streams', () => {
  const xva = independentXva({ style: 'xapi', disks: [{ ref: 'Ref:1', userdevice: '0', image: pseudoRandom(2 * MiB, 6) }] });

  test('the stream is read to its end after the end-of-archive marker (a pipe writer is not cut off)', async () => {
    const padded = Buffer.concat([xva, Buffer.alloc(20 * 1024)]);
    let read = 0;
    const stream = Readable.from(
      (function* () {
        for (let o = 0; o < padded.length; o += 64 * 1024) {
          const piece = padded.subarray(o, o + 64 * 1024);
          read += piece.length;
          yield piece;
        }
      })(),
    );
    const reader = blockTarReader(streamBlockSource(stream), { input: '-' });
    await entriesOf(reader);
    expect(reader.endBlocksSeen()).toBe(true);
    expect(read).toBe(padded.length);
  });

  test("a stream error wins over the tar error it causes (e.g. a corrupt gzip member)", async () => {
    const boom = new Error('gzip stream truncated/corrupt at compressed byte 1234');
    const stream = new Readable({ read() {} });
    stream.push(xva.subarray(0, MiB + 700)); // cut inside a header
    stream.destroy(boom);
    const reader = blockTarReader(streamBlockSource(stream), { input: '-' });
    await expect(entriesOf(reader)).rejects.toBe(boom);
  });

  test('a stream that ends inside an entry skipped without reading: TAR_TRUNCATED naming it', async () => {
    const reader = blockTarReader(streamBlockSource(Readable.from([xva.subarray(0, MiB)])), { input: '-' });
    const err = await (async () => {
      for await (const e of reader) await e.skip();
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XvaFormatError);
    expect((err as XvaFormatError).code).toBe('TAR_TRUNCATED');
    expect((err as Error).message).toMatch(/Ref:1\/00000000" is cut short \(the input ends at byte 1048576\)/);
  });
});

describe('files', () => {
  test('reads in FILE_BLOCK_BYTES blocks, the last one short', async () => {
    const file = path.join(dir, 'blocks.bin');
    const bytes = pseudoRandom(FILE_BLOCK_BYTES * 2 + 1234, 3);
    fs.writeFileSync(file, bytes);
    const src = await openFileBlockSource(file);
    const sizes: number[] = [];
    const parts: Buffer[] = [];
    for (let b = await src.next(); b; b = await src.next()) {
      sizes.push(b.buf.length);
      expect(b.buf.byteOffset % 4096).toBe(0); // page-aligned: fast copies from the page cache
      parts.push(Buffer.from(b.buf));
      b.release();
    }
    await src.close();
    expect(sizes).toEqual([FILE_BLOCK_BYTES, FILE_BLOCK_BYTES, 1234]);
    expect(Buffer.concat(parts).equals(bytes)).toBe(true);
  });

  test('an archive cut inside a chunk: TAR_TRUNCATED naming the entry and the file end', async () => {
    const xva = independentXva({ style: 'xapi', disks: [{ ref: 'Ref:1', userdevice: '0', image: pseudoRandom(2 * MiB, 4) }] });
    const file = path.join(dir, 'cut.xva');
    fs.writeFileSync(file, xva.subarray(0, xva.length - 1024 * 1024));
    const reader = blockTarReader(await openFileBlockSource(file), { input: file });
    const err = await entriesOf(reader).catch((e: unknown) => e);
    reader.destroy();
    expect(err).toBeInstanceOf(XvaFormatError);
    expect((err as XvaFormatError).code).toBe('TAR_TRUNCATED');
    expect((err as Error).message).toMatch(/Ref:1\/00000001.*file ends at byte/);
  });
});
