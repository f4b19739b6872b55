/**
 * gzip input by every decoder (`--gzip-codec igzip|zlib|pako`): the same bytes, multi-member
 * streams, and truncation and corruption reported with the compressed byte offset; which decoder
 * 'auto' picks, and what happens when igzip is not installed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { InputError, UsageError } from '../../src/errors';
import { resolveGzipCodec } from '../../src/input/gzip';
import { openInput } from '../../src/input/open';
import { GZIP_CODECS, type GzipCodec } from '../../src/input/types';
import { itWithTools } from '../helpers/system-tools';
import {
  chunkedStream,
  makeTempDir,
  readAll,
  readError,
  removeDir,
  sampleBytes,
  splitAt,
  tool,
  writeFile,
} from './helpers';

const A = sampleBytes(2 << 20, 11);
const B = sampleBytes(700 << 10, 12);
const C = sampleBytes(5000, 13);

let dir: string;
let gzA: Buffer;
let gzB: Buffer;
let gzC: Buffer;

beforeAll(() => {
  dir = makeTempDir();
  gzA = tool('gzip', ['-6', '-c'], A);
  gzB = tool('gzip', ['-1', '-c'], B);
  gzC = tool('gzip', ['-9', '-c'], C);
});

afterAll(() => removeDir(dir));

/**
 * `exitNote`: what igzip adds to its messages (its exit status); `tools`: what the codec needs.
 */
const CODECS: { codec: GzipCodec; name: string; exitNote: string; tools: string[] }[] = [
  { codec: 'igzip', name: 'igzip', exitNote: ' (igzip exit 1)', tools: ['igzip'] },
  { codec: 'zlib', name: 'node:zlib', exitNote: '', tools: [] },
  { codec: 'pako', name: 'pako', exitNote: '', tools: [] },
];

describe.each(CODECS)('gzip via $codec', ({ codec, name, exitNote, tools }) => {
  const it = itWithTools(...tools);

  it('decodes a gzip file made by gzip', async () => {
    const file = writeFile(dir, `a-${codec}.gz`, gzA);
    const src = await openInput(file, { gzipCodec: codec });
    expect(src.compression).toBe('gzip');
    expect(src.codec).toBe(name);
    expect((await readAll(src)).equals(A)).toBe(true);
    expect(src.rawBytesRead()).toBe(gzA.length);
    await src.close();
  });

  it('decodes multi-member gzip (cat a.gz b.gz c.gz)', async () => {
    const file = writeFile(dir, `abc-${codec}.gz`, Buffer.concat([gzA, gzB, gzC]));
    const src = await openInput(file, { gzipCodec: codec, readSize: 100_000 });
    expect((await readAll(src)).equals(Buffer.concat([A, B, C]))).toBe(true);
    await src.close();
  });

  it('decodes members whose boundaries fall exactly on chunk boundaries', async () => {
    const whole = Buffer.concat([gzA, gzB, gzC]);
    const chunks = splitAt(whole, [gzA.length, gzA.length + gzB.length]);
    expect(chunks).toHaveLength(3);
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream(chunks) });
    expect((await readAll(src)).equals(Buffer.concat([A, B, C]))).toBe(true);
    await src.close();
  });

  it('decodes with tiny raw chunks (1000 bytes)', async () => {
    const whole = Buffer.concat([gzC, gzB]);
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream(splitAt(whole, [], 1000)) });
    expect((await readAll(src)).equals(Buffer.concat([C, B]))).toBe(true);
    await src.close();
  });

  itWithTools(...tools, 'pigz')('decodes pigz output', async () => {
    const pigz = tool('pigz', ['-c', '-b', '128', '-p', '2'], A);
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream(splitAt(pigz, [], 65536)) });
    expect((await readAll(src)).equals(A)).toBe(true);
    await src.close();
  });

  it('accepts zero padding after the last member', async () => {
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream([gzC, Buffer.alloc(1024)]) });
    expect((await readAll(src)).equals(C)).toBe(true);
    await src.close();
  });

  it('reports a truncated stream as BAD_COMPRESSION with the compressed byte count, on one line', async () => {
    const cut = gzA.length - 1000;
    const file = writeFile(dir, `trunc-${codec}.gz`, gzA.subarray(0, cut));
    const src = await openInput(file, { gzipCodec: codec });
    const err = await readError(src);
    expect(err).toBeInstanceOf(InputError);
    expect(err.code).toBe('BAD_COMPRESSION');
    expect(err.exitCode).toBe(2);
    expect(err.message).toBe(`gzip stream truncated/corrupt at compressed byte ${cut}: unexpected end of file${exitNote}`);
    expect(err.describe()).toBe(`${file}: ${err.message}`);
    expect(err.describe()).not.toMatch(/\n/);
    await src.close();
  });

  it('reports a stream cut inside the header', async () => {
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream([gzA.subarray(0, 5)]) });
    const err = await readError(src);
    expect(err.code).toBe('BAD_COMPRESSION');
    expect(err.message).toMatch(/^gzip stream truncated\/corrupt at compressed byte 5: /);
  });

  it('reports a stream missing only its trailer', async () => {
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream([gzC.subarray(0, gzC.length - 4)]) });
    const err = await readError(src);
    expect(err.code).toBe('BAD_COMPRESSION');
  });

  it('reports corrupt data as BAD_COMPRESSION with an offset inside the stream', async () => {
    const bad = Buffer.from(gzA);
    for (let i = 0; i < 64; i++) bad[40_000 + i]! ^= 0x5a;
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream(splitAt(bad, [], 16384)) });
    const err = await readError(src);
    expect(err.code).toBe('BAD_COMPRESSION');
    const m = /^gzip stream truncated\/corrupt at compressed byte (\d+): \S/.exec(err.message);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(Number(m![1])).toBeLessThanOrEqual(bad.length);
  });

  it('reports a truncated stream on stdin with the compressed byte count', async () => {
    const cut = gzA.length - 1000;
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream(splitAt(gzA.subarray(0, cut), [], 65536)) });
    const err = await readError(src);
    expect(err.code).toBe('BAD_COMPRESSION');
    expect(err.message).toBe(`gzip stream truncated/corrupt at compressed byte ${cut}: unexpected end of file${exitNote}`);
  });

  it('reports a corrupt second member of a multi-member file', async () => {
    const bad = Buffer.concat([gzB, gzA]);
    for (let i = 0; i < 64; i++) bad[gzB.length + 40_000 + i]! ^= 0x5a;
    const file = writeFile(dir, `corrupt-member-${codec}.gz`, bad);
    const err = await readError(await openInput(file, { gzipCodec: codec }));
    expect(err.code).toBe('BAD_COMPRESSION');
    const at = Number(/at compressed byte (\d+): \S/.exec(err.message)?.[1]);
    expect(at).toBeGreaterThan(gzB.length);
    expect(at).toBeLessThanOrEqual(bad.length);
  });

  it('does not decode far ahead of the reader (bounded memory on zeros)', async () => {
    const zeros = tool('gzip', ['-c'], Buffer.alloc(64 << 20));
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream([zeros]) });
    // First the decoder fills the stream up to its high-water mark (so the bound below is checked
    // after real decoding, however slow the machine); then it has 300 ms to run further, which it must not.
    while (src.stream.readableLength < src.stream.readableHighWaterMark) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 300));
    expect(src.stream.readableLength).toBeLessThanOrEqual(24 << 20);
    let total = 0;
    for await (const chunk of src.stream) total += (chunk as Buffer).length;
    expect(total).toBe(64 << 20);
    await src.close();
  });
});

describe('non-gzip bytes after the last member', () => {
  it.each(['zlib', 'pako'] as const)('are reported by %s', async (codec) => {
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream([gzC, Buffer.from('garbage!')]) });
    const err = await readError(src);
    expect(err.code).toBe('BAD_COMPRESSION');
  });

  // igzip stops at the first bytes after a member that do not start another one, as gzip does
  // (gzip warns and exits 2); the tar end-of-archive marker and the chunk checksums still guard
  // what was decoded (docs/design/gzip-codecs.md).
  itWithTools('igzip')('are ignored by igzip', async () => {
    const src = await openInput('-', { gzipCodec: 'igzip', stdin: chunkedStream([gzC, Buffer.from('garbage!')]) });
    expect((await readAll(src)).equals(C)).toBe(true);
    await src.close();
  });
});

describe('choosing the gzip decoder', () => {
  const pathBefore = process.env.PATH;
  afterEach(() => {
    process.env.PATH = pathBefore;
  });
  /** A PATH with every directory but the ones holding igzip. */
  function pathWithoutIgzip(): string {
    return (pathBefore ?? '')
      .split(path.delimiter)
      .filter((d) => d && !fs.existsSync(path.join(d, 'igzip')))
      .join(path.delimiter);
  }

  it('lists the codecs the CLI offers', () => {
    expect(GZIP_CODECS).toEqual(['auto', 'igzip', 'zlib', 'pako']);
  });

  itWithTools('igzip')('auto is igzip when it is on the PATH, for files and for stdin', async () => {
    expect(resolveGzipCodec()).toBe('igzip');
    const file = writeFile(dir, 'auto.gz', gzA);
    const fromFile = await openInput(file);
    const fromStdin = await openInput('-', { stdin: chunkedStream([gzA]) });
    expect([fromFile.codec, fromStdin.codec]).toEqual(['igzip', 'igzip']);
    expect((await readAll(fromFile)).equals(A)).toBe(true);
    expect((await readAll(fromStdin)).equals(A)).toBe(true);
    await Promise.all([fromFile.close(), fromStdin.close()]);
  });

  it('auto falls back to node:zlib when igzip is not on the PATH', async () => {
    process.env.PATH = pathWithoutIgzip();
    expect(resolveGzipCodec('auto')).toBe('zlib');
    const src = await openInput(writeFile(dir, 'fallback.gz', gzA));
    expect(src.codec).toBe('node:zlib');
    expect((await readAll(src)).equals(A)).toBe(true);
    await src.close();
  });

  it('asking for igzip where it is not installed is a usage error that says what to install', async () => {
    process.env.PATH = pathWithoutIgzip();
    const file = writeFile(dir, 'no-igzip.gz', gzA);
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    const err = await openInput(file, { gzipCodec: 'igzip' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toMatch(/needs the 'igzip' program on PATH \(Debian\/Ubuntu package isal\)/);
    expect(fs.readdirSync('/proc/self/fd').length).toBe(fdsBefore); // the input is closed again
  });

  it('an unknown codec name is a usage error listing the choices', () => {
    expect(() => resolveGzipCodec('fast' as GzipCodec)).toThrow(/unknown gzip codec "fast" \(use auto, igzip, zlib, pako\)/);
  });
});

describe('gzip codecs agree', () => {
  itWithTools('igzip')('produce identical bytes for the same multi-member input', async () => {
    const file = writeFile(dir, 'agree.gz', Buffer.concat([gzB, gzA]));
    const outputs: Buffer[] = [];
    for (const { codec } of CODECS) {
      const src = await openInput(file, { gzipCodec: codec });
      outputs.push(await readAll(src));
      await src.close();
    }
    for (const out of outputs) expect(out.equals(Buffer.concat([B, A]))).toBe(true);
    expect(fs.statSync(file).size).toBe(gzA.length + gzB.length);
  });
});
