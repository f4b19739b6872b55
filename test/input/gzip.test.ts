import fs from 'node:fs';
import { InputError } from '../../src/errors';
import { openInput } from '../../src/input/open';
import type { GzipCodec } from '../../src/input/types';
import {
  chunkedStream,
  hasTool,
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

const CODECS: { codec: GzipCodec; name: string }[] = [
  { codec: 'zlib', name: 'node:zlib' },
  { codec: 'pako', name: 'pako' },
];

describe.each(CODECS)('gzip via $codec', ({ codec, name }) => {
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

  it('decodes pigz output', async () => {
    if (!hasTool('pigz')) return;
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
    expect(err.message).toBe(`gzip stream truncated/corrupt at compressed byte ${cut}: unexpected end of file`);
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
    for (let i = 0; i < 64; i++) bad[40_000 + i] ^= 0x5a;
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream(splitAt(bad, [], 16384)) });
    const err = await readError(src);
    expect(err.code).toBe('BAD_COMPRESSION');
    const m = /^gzip stream truncated\/corrupt at compressed byte (\d+): \S/.exec(err.message);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(Number(m![1])).toBeLessThanOrEqual(bad.length);
  });

  it('reports non-gzip bytes after a member', async () => {
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream([gzC, Buffer.from('garbage!')]) });
    const err = await readError(src);
    expect(err.code).toBe('BAD_COMPRESSION');
  });

  it('does not decode far ahead of the reader (bounded memory on zeros)', async () => {
    const zeros = tool('gzip', ['-c'], Buffer.alloc(64 << 20));
    const src = await openInput('-', { gzipCodec: codec, stdin: chunkedStream([zeros]) });
    await new Promise((r) => setTimeout(r, 300));
    expect(src.stream.readableLength).toBeLessThanOrEqual(24 << 20);
    let total = 0;
    for await (const chunk of src.stream) total += (chunk as Buffer).length;
    expect(total).toBe(64 << 20);
    await src.close();
  });
});

describe('gzip codecs agree', () => {
  it('produce identical bytes for the same multi-member input', async () => {
    const file = writeFile(dir, 'agree.gz', Buffer.concat([gzB, gzA]));
    const outputs: Buffer[] = [];
    for (const { codec } of CODECS) {
      const src = await openInput(file, { gzipCodec: codec });
      outputs.push(await readAll(src));
      await src.close();
    }
    expect(outputs[0].equals(outputs[1])).toBe(true);
    expect(outputs[0].equals(Buffer.concat([B, A]))).toBe(true);
    expect(fs.statSync(file).size).toBe(gzA.length + gzB.length);
  });
});
