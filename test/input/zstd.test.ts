import { execFileSync } from 'node:child_process';
import { InputError } from '../../src/errors';
import { openInput } from '../../src/input/open';
import type { ZstdCodec } from '../../src/input/types';
import { findZstdBinary, loadZstdZlib, resolveZstdCodec } from '../../src/input/zstd';
import { ZstdFrameWalker } from '../../src/input/zstd-frames';
import { itWithTools, missingTools } from '../helpers/system-tools';
import {
  childZstdPids,
  chunkedStream,
  isAlive,
  makeTempDir,
  readAll,
  readError,
  removeDir,
  sampleBytes,
  splitAt,
  tool,
  waitFor,
  writeFile,
} from './helpers';

const A = sampleBytes(2 << 20, 21);
const B = sampleBytes(600 << 10, 22);
const LONG = sampleBytes(400 << 10, 23);

const HAS_ZLIB_ZSTD = loadZstdZlib() !== null;
const HAS_BINARY = findZstdBinary() !== null;

let dir: string;
let zstA: Buffer;
let zstB: Buffer;
let zstLong: Buffer;
let zstLong31: Buffer;

beforeAll(() => {
  dir = makeTempDir();
  zstA = tool('zstd', ['-3', '-q', '-c'], A);
  zstB = tool('zstd', ['-19', '-q', '-c', '--no-check'], B);
  // From stdin the size is unknown, so the frame header keeps the full 512 MiB window.
  zstLong = tool('zstd', ['--long=29', '-q', '-c'], LONG);
  zstLong31 = tool('zstd', ['--long=31', '-q', '-c'], LONG);
});

/** A skippable frame (RFC 8878 §3.1.2): zstd decoders pass over it. */
function skippableFrame(content: string): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32LE(0x184d2a53, 0);
  header.writeUInt32LE(Buffer.byteLength(content), 4);
  return Buffer.concat([header, Buffer.from(content)]);
}

afterAll(() => removeDir(dir));

/**
 * `available`/`why`: whether this Node has the codec (node:zlib zstd: a Node version, skipped with
 * the reason where it lacks it); `tools`: the programs it needs (the system-tools policy).
 */
const CODECS: { codec: Exclude<ZstdCodec, 'auto'>; name: string; available: boolean; why: string; tools: string[] }[] = [
  { codec: 'zlib', name: 'node:zlib', available: HAS_ZLIB_ZSTD, why: `node:zlib has no zstd in Node ${process.version} (needs >= 22.15)`, tools: [] },
  { codec: 'binary', name: 'zstd binary', available: true, why: '', tools: ['zstd'] },
  { codec: 'fzstd', name: 'fzstd', available: true, why: '', tools: [] },
];

describe('zstd fixture sanity', () => {
  itWithTools('zstd')('the --long fixtures really need a window above the default limit', () => {
    for (const input of [zstLong, zstLong31]) {
      expect(() => execFileSync('zstd', ['-dc', '-q'], { input, stdio: ['pipe', 'ignore', 'pipe'] })).toThrow();
    }
  });
});

describe.each(CODECS)('zstd via $codec', ({ codec, name, available, why, tools }) => {
  // jest has no skip-with-reason; the reason is in the test name.
  const test = available ? itWithTools(...tools) : it.skip;
  const label = (title: string): string => (available ? title : `${title} (skipped: ${why})`);

  test(label('decodes a zstd file made by zstd'), async () => {
    const file = writeFile(dir, `a-${codec}.zst`, zstA);
    const src = await openInput(file, { zstdCodec: codec });
    expect(src.compression).toBe('zstd');
    expect(src.codec).toBe(name);
    expect((await readAll(src)).equals(A)).toBe(true);
    expect(src.rawBytesRead()).toBe(zstA.length);
    await src.close();
  });

  test(label('decodes multiple frames (cat a.zst b.zst), boundary on a chunk boundary'), async () => {
    const whole = Buffer.concat([zstA, zstB, zstA]);
    const src = await openInput('-', {
      zstdCodec: codec,
      stdin: chunkedStream(splitAt(whole, [zstA.length, zstA.length + zstB.length], 50_000)),
    });
    expect((await readAll(src)).equals(Buffer.concat([A, B, A]))).toBe(true);
    await src.close();
  });

  test(label('decodes a --long=29 frame (512 MiB window)'), async () => {
    const src = await openInput('-', { zstdCodec: codec, stdin: chunkedStream([zstLong]) });
    expect((await readAll(src)).equals(LONG)).toBe(true);
    await src.close();
  });

  test(label(codec === 'fzstd' ? 'refuses a --long=31 frame (2 GiB window), saying what can decode it' : 'decodes a --long=31 frame (2 GiB window, the largest)'), async () => {
    const src = await openInput('-', { zstdCodec: codec, stdin: chunkedStream([zstLong31]) });
    if (codec === 'fzstd') {
      const err = await readError(src);
      expect(err.code).toBe('BAD_COMPRESSION');
      expect(err.message).toMatch(/fzstd decodes windows below 2 GiB \(zstd --long=30\), the zstd program up to --long=31$/);
    } else {
      expect((await readAll(src)).equals(LONG)).toBe(true);
    }
    await src.close();
  });

  test(label('decodes frames that end inside one write (the whole stream in one chunk, or chunks across frame ends)'), async () => {
    const whole = Buffer.concat([zstB, zstA, zstLong, zstB]);
    const expected = Buffer.concat([B, A, LONG, B]);
    for (const chunks of [[whole], splitAt(whole, [], 100_000)]) {
      const src = await openInput('-', { zstdCodec: codec, stdin: chunkedStream(chunks) });
      expect((await readAll(src)).equals(expected)).toBe(true);
      await src.close();
    }
  });

  test(label('passes over skippable frames between and after frames'), async () => {
    const whole = Buffer.concat([zstB, skippableFrame('between'), skippableFrame(''), zstA, skippableFrame('after')]);
    const src = await openInput('-', { zstdCodec: codec, stdin: chunkedStream([whole]) });
    expect((await readAll(src)).equals(Buffer.concat([B, A]))).toBe(true);
    await src.close();
  });

  test(label('a stream may begin with a skippable frame (pzstd), from a file and from stdin, however large'), async () => {
    // 3 MiB: larger than the sniff window and than the first read of a file or of stdin.
    const big = skippableFrame('x'.repeat(3 << 20));
    for (const [what, lead] of [['small', skippableFrame('pzstd')], ['empty', skippableFrame('')], ['3 MiB', big]] as const) {
      const whole = Buffer.concat([lead, zstB, skippableFrame('between'), zstA]);
      const expected = Buffer.concat([B, A]);
      const file = writeFile(dir, `lead-skippable-${codec}.zst`, whole);
      for (const open of [
        () => openInput(file, { zstdCodec: codec }),
        () => openInput('-', { zstdCodec: codec, stdin: chunkedStream([whole]) }),
        () => openInput('-', { zstdCodec: codec, stdin: chunkedStream(splitAt(whole, [3, lead.length], 65_536)) }),
      ]) {
        const src = await open();
        expect({ what, compression: src.compression, codec: src.codec }).toEqual({ what, compression: 'zstd', codec: name });
        expect((await readAll(src)).equals(expected)).toBe(true);
        expect(src.rawBytesRead()).toBe(whole.length);
        await src.close();
      }
    }
  });

  (available ? itWithTools(...tools, 'pzstd') : it.skip)(label('decodes what pzstd writes (a skippable frame before every frame)'), async () => {
    const whole = tool('pzstd', ['-q', '-c', '-p', '2'], A);
    expect(whole.readUInt32LE(0)).toBe(0x184d2a50);
    const file = writeFile(dir, `pzstd-${codec}.zst`, whole);
    for (const open of [() => openInput(file, { zstdCodec: codec }), () => openInput('-', { zstdCodec: codec, stdin: chunkedStream(splitAt(whole, [], 65_536)) })]) {
      const src = await open();
      expect(src.compression).toBe('zstd');
      expect((await readAll(src)).equals(A)).toBe(true);
      await src.close();
    }
  });

  test(label('reports a stream cut inside a leading skippable frame'), async () => {
    const lead = skippableFrame('y'.repeat(100_000));
    for (const cut of [6, 50_000, lead.length - 1]) {
      const file = writeFile(dir, `cut-skippable-${codec}.zst`, lead.subarray(0, cut));
      for (const open of [() => openInput(file, { zstdCodec: codec }), () => openInput('-', { zstdCodec: codec, stdin: chunkedStream([lead.subarray(0, cut)]) })]) {
        const src = await open();
        expect(src.compression).toBe('zstd');
        const err = await readError(src);
        expect({ cut, code: err.code }).toEqual({ cut, code: 'BAD_COMPRESSION' });
        await src.close();
      }
    }
  });

  test(label('reports a stream cut anywhere inside a frame, at the compressed byte where it ends'), async () => {
    const whole = Buffer.concat([zstA, zstB]);
    const cuts = {
      'in the first block header': 7,
      'in a block': 5000,
      'in the content checksum': zstA.length - 2,
      "in the second frame's magic": zstA.length + 2,
      'in the second frame': zstA.length + 9000,
      'in the last block': whole.length - 10,
    };
    for (const [where, cut] of Object.entries(cuts)) {
      const src = await openInput('-', { zstdCodec: codec, stdin: chunkedStream(splitAt(whole.subarray(0, cut), [], 65_536)) });
      const err = await readError(src);
      expect({ where, code: err.code }).toEqual({ where, code: 'BAD_COMPRESSION' });
      expect(err.message).toMatch(new RegExp(`^zstd stream truncated/corrupt at compressed byte ${cut}: \\S`));
      await src.close();
    }
  });

  test(label('reports a truncated stream as BAD_COMPRESSION on one line'), async () => {
    const cut = zstA.length - 777;
    const file = writeFile(dir, `trunc-${codec}.zst`, zstA.subarray(0, cut));
    const src = await openInput(file, { zstdCodec: codec });
    const err = await readError(src);
    expect(err).toBeInstanceOf(InputError);
    expect(err.code).toBe('BAD_COMPRESSION');
    expect(err.message).toMatch(/^zstd stream truncated\/corrupt at compressed byte \d+: \S/);
    expect(err.describe()).toBe(`${file}: ${err.message}`);
    expect(err.describe()).not.toMatch(/[\r\n]/);
    await src.close();
  });

  test(label('reports corrupt data (and never returns it as clean output)'), async () => {
    const bad = Buffer.from(zstA);
    for (let i = 0; i < 200; i++) bad[30_000 + i]! ^= 0xa5;
    const src = await openInput('-', { zstdCodec: codec, stdin: chunkedStream(splitAt(bad, [], 65536)) });
    if (codec === 'fzstd') {
      // fzstd does not check the frame's content checksum: corruption that keeps the block
      // structure valid decodes to wrong bytes (the XVA chunk checksums catch those).
      const out: Buffer | InputError = await readAll(src).catch((err: InputError) => err);
      if (out instanceof InputError) expect(out.code).toBe('BAD_COMPRESSION');
      else expect(out.equals(A)).toBe(false);
    } else {
      const err = await readError(src);
      expect(err.code).toBe('BAD_COMPRESSION');
      expect(err.message).toMatch(/^zstd stream truncated\/corrupt at compressed byte \d+: /);
    }
    await src.close();
  });

  test(label('reports bytes that are not a zstd frame after the first frame'), async () => {
    const src = await openInput('-', { zstdCodec: codec, stdin: chunkedStream([zstB, Buffer.from('not zstd at all')]) });
    const err = await readError(src);
    expect(err.code).toBe('BAD_COMPRESSION');
    await src.close();
  });

  test(label('reports a frame header alone'), async () => {
    const src = await openInput('-', { zstdCodec: codec, stdin: chunkedStream([zstA.subarray(0, 6)]) });
    const err = await readError(src);
    expect(err.code).toBe('BAD_COMPRESSION');
  });
});

describe('zstd codec selection', () => {
  it("'auto' prefers the zstd binary, then node:zlib, then fzstd", async () => {
    const expected = HAS_BINARY ? 'binary' : HAS_ZLIB_ZSTD ? 'zlib' : 'fzstd';
    expect(resolveZstdCodec('auto')).toBe(expected);
    expect(resolveZstdCodec()).toBe(expected);
    const src = await openInput('-', { stdin: chunkedStream([zstB]) });
    expect(src.codec).toBe({ zlib: 'node:zlib', binary: 'zstd binary', fzstd: 'fzstd' }[expected]);
    expect((await readAll(src)).equals(B)).toBe(true);
    await src.close();
  });

  it("'auto' without the zstd program on the PATH: node:zlib where this Node has it, else fzstd", () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      jest.isolateModules(() => {
        // A fresh module: the PATH lookup is cached per module instance.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const fresh = require('../../src/input/zstd') as typeof import('../../src/input/zstd');
        expect(fresh.findZstdBinary()).toBeNull();
        expect(fresh.resolveZstdCodec('auto')).toBe(HAS_ZLIB_ZSTD ? 'zlib' : 'fzstd');
      });
    } finally {
      process.env.PATH = path;
    }
  });

  (HAS_ZLIB_ZSTD ? it.skip : it)(`asking for 'zlib' where node:zlib lacks zstd is a usage error${HAS_ZLIB_ZSTD ? ' (skipped: this Node has it)' : ''}`, async () => {
    const err = await openInput('-', { zstdCodec: 'zlib', stdin: chunkedStream([zstB]) }).catch((e: unknown) => e);
    expect((err as InputError).code).toBe('USAGE');
    expect((err as InputError).message).toMatch(/Node >= 22\.15/);
  });

  it('all available codecs produce identical bytes', async () => {
    const input = Buffer.concat([zstB, zstLong]);
    const outputs: Buffer[] = [];
    for (const { codec } of CODECS.filter((c) => c.available && missingTools(c.tools).length === 0)) {
      const src = await openInput('-', { zstdCodec: codec, stdin: chunkedStream(splitAt(input, [], 100_000)) });
      outputs.push(await readAll(src));
      await src.close();
    }
    expect(outputs.length).toBeGreaterThanOrEqual(2);
    for (const out of outputs) expect(out.equals(Buffer.concat([B, LONG]))).toBe(true);
  });
});

(HAS_ZLIB_ZSTD ? describe : describe.skip)(`node:zlib zstd end of stream${HAS_ZLIB_ZSTD ? '' : ` (skipped: no zstd in node:zlib of Node ${process.version})`}`, () => {
  afterEach(() => jest.restoreAllMocks());

  it('a decoder that stops at a frame end with input left fails the stream instead of ending it short', async () => {
    // Without the walker's frame ends every write holds several frames, and node:zlib ends its
    // output after the first: that must be an error, never a clean short stream.
    const walk = ZstdFrameWalker.prototype.walk;
    jest.spyOn(ZstdFrameWalker.prototype, 'walk').mockImplementation(function (this: ZstdFrameWalker, chunk: Uint8Array) {
      walk.call(this, chunk);
      return [];
    });
    const src = await openInput('-', { zstdCodec: 'zlib', stdin: chunkedStream([Buffer.concat([zstB, zstA])]) });
    const err = await readError(src);
    expect(err.code).toBe('BAD_COMPRESSION');
    expect(err.message).toMatch(/^zstd stream truncated\/corrupt at compressed byte \d+: the decoder stopped at compressed byte \d+ of \d+/);
    await src.close();
  });
});

describe('zstd binary child process lifecycle', () => {
  const it = itWithTools('zstd');
  let big: Buffer;
  beforeAll(() => {
    // Large enough that the child blocks on a full stdout pipe when nobody reads.
    big = tool('zstd', ['-1', '-q', '-c'], sampleBytes(24 << 20, 31));
  });

  it('close() kills the zstd child', async () => {
    const before = new Set(childZstdPids());
    const file = writeFile(dir, 'big.zst', big);
    const src = await openInput(file, { zstdCodec: 'binary' });
    const first = await new Promise<Buffer>((resolve) => src.stream.once('data', resolve));
    expect(first.length).toBeGreaterThan(0);
    src.stream.pause();
    // The child reads the file itself; progress comes from the shared file offset.
    expect(src.rawBytesRead()).toBeGreaterThan(0);
    expect(src.rawBytesRead()).toBeLessThanOrEqual(big.length);
    const pids = childZstdPids().filter((p) => !before.has(p));
    expect(pids).toHaveLength(1);
    expect(isAlive(pids[0]!)).toBe(true);
    await src.close();
    expect(await waitFor(() => !isAlive(pids[0]!))).toBe(true);
    await src.close(); // idempotent
  });

  it('destroying the stream early kills the child without unhandled errors', async () => {
    const unhandled: unknown[] = [];
    const onUncaught = (err: unknown): void => void unhandled.push(err);
    process.on('uncaughtException', onUncaught);
    try {
      const before = new Set(childZstdPids());
      const src = await openInput('-', { zstdCodec: 'binary', stdin: chunkedStream(splitAt(big, [], 1 << 20)) });
      let pids: number[] = [];
      for await (const chunk of src.stream) {
        expect((chunk as Buffer).length).toBeGreaterThan(0);
        pids = childZstdPids().filter((p) => !before.has(p));
        break; // consumer gives up: the stream is destroyed
      }
      expect(pids).toHaveLength(1);
      expect(await waitFor(() => !isAlive(pids[0]!))).toBe(true);
      await src.close();
      await new Promise((r) => setTimeout(r, 100));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });

  it('a child that dies early (bad data, EPIPE on its stdin) gives BAD_COMPRESSION', async () => {
    const before = new Set(childZstdPids());
    const garbage = Buffer.concat([zstA.subarray(0, 8), sampleBytes(16 << 20, 99)]);
    const src = await openInput('-', { zstdCodec: 'binary', stdin: chunkedStream(splitAt(garbage, [], 1 << 20)) });
    const err = await readError(src);
    expect(err.code).toBe('BAD_COMPRESSION');
    expect(err.message).toMatch(/zstd exit 1\)$/);
    await src.close();
    expect(await waitFor(() => childZstdPids().filter((p) => !before.has(p)).length === 0)).toBe(true);
  });
});
