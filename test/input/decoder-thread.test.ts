/**
 * Decoding gzip and zstd files on a worker thread into a ring of shared blocks (node:zlib in the
 * thread, or the igzip / zstd program writing into it): the same bytes and the same errors as
 * decoding on the main thread, blocks lent without copies (and hashed in place), bounded
 * run-ahead, and nothing left running after close().
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InputError } from '../../src/errors';
import { gzipThreadAvailable, idleRingCount, RING_BLOCK_BYTES, RING_BLOCKS, startDecoderThread, type ChildTransport } from '../../src/input/decoder-thread';
import type { ChildCodec } from '../../src/input/child-codec';
import { openInput } from '../../src/input/open';
import { findProgram } from '../../src/io/find-program';
import type { BlockSource, InputSource, OpenInputOptions } from '../../src/input/types';
import { zstdChild } from '../../src/input/zstd';
import { xxh64InPlace } from '../../src/xva/xxh64-in-place';
import { itWithTools } from '../helpers/system-tools';
import { childZstdPids, isAlive, makeTempDir, readAll, readError, removeDir, sampleBytes, tool, waitFor, writeFile } from './helpers';

const A = sampleBytes(9 << 20, 41); // more than two ring blocks
const B = sampleBytes(300 << 10, 42);

let dir: string;
let gzA: Buffer;
let gzB: Buffer;

beforeAll(() => {
  dir = makeTempDir();
  gzA = tool('gzip', ['-6', '-c'], A);
  gzB = tool('gzip', ['-1', '-c'], B);
});
afterAll(() => removeDir(dir));

/** The blocks of a source read on a decoder thread. */
function blocksOf(src: InputSource): BlockSource {
  if (src.kind !== 'blocks') throw new Error(`expected a source of blocks, got kind ${src.kind}`);
  return src.blocks;
}

/** Every block of the source, copied, each released at once. */
async function readBlocks(src: InputSource): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let b = await blocksOf(src).next(); b; b = await blocksOf(src).next()) {
    parts.push(Buffer.from(b.buf));
    b.release();
  }
  return Buffer.concat(parts);
}

async function blocksError(src: InputSource): Promise<InputError> {
  try {
    await readBlocks(src);
  } catch (err) {
    return err as InputError;
  }
  throw new Error('expected the blocks to fail');
}

test('this runtime can decode gzip on a thread', () => {
  expect(gzipThreadAvailable()).toBe(true);
});

describe.each([
  { codec: 'gzip' as const, decoder: 'node:zlib', options: { gzipCodec: 'zlib' }, make: (data: Buffer) => tool('gzip', ['-c'], data), tools: [] },
  { codec: 'gzip' as const, decoder: 'igzip', options: { gzipCodec: 'igzip' }, make: (data: Buffer) => tool('gzip', ['-c'], data), tools: ['igzip'] },
  { codec: 'zstd' as const, decoder: 'zstd binary', options: { zstdCodec: 'binary' }, make: (data: Buffer) => tool('zstd', ['-3', '-q', '-c'], data), tools: ['zstd'] },
] satisfies Array<{ options: OpenInputOptions } & Record<string, unknown>>)('$codec file on a decoder thread ($decoder)', ({ codec, decoder, options, make, tools }) => {
  const run = itWithTools(...tools);

  run('gives the bytes as blocks of the ring, lent and hashable in place', async () => {
    const file = writeFile(dir, `a.${codec}`, make(A));
    const src = await openInput(file, options);
    expect(src.compression).toBe(codec);
    expect(src.codec).toBe(decoder);
    expect(blocksOf(src).lendsBlocks).toBe(true);
    const first = (await blocksOf(src).next())!;
    expect(first.buf.length).toBe(RING_BLOCK_BYTES);
    expect(first.buf.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(xxh64InPlace(first.buf)).not.toBeUndefined();
    const rest = await readBlocks(src);
    first.release();
    expect(Buffer.concat([Buffer.from(first.buf), rest]).equals(A)).toBe(true);
    expect(src.rawBytesRead()).toBe(fs.statSync(file).size);
    await src.close();
  });

  run('gives the same bytes as a stream, and as the main-thread decoder', async () => {
    const file = writeFile(dir, `ab.${codec}`, Buffer.concat([make(A), make(B)]));
    const threaded = await openInput(file, options);
    const main = await openInput(file, { ...options, decodeThread: false });
    expect(threaded.kind).toBe('blocks');
    expect(main.kind).toBe('stream');
    const [x, y] = await Promise.all([readAll(threaded), readAll(main)]);
    expect(x.equals(Buffer.concat([A, B]))).toBe(true);
    expect(y.equals(x)).toBe(true);
    await Promise.all([threaded.close(), main.close()]);
  });

  run('runs no further ahead than the ring while the reader holds its blocks', async () => {
    const big = sampleBytes(32 << 20, 43);
    const file = writeFile(dir, `big.${codec}`, make(big));
    const src = await openInput(file, options);
    const held = [];
    for (let i = 0; i < RING_BLOCKS; i++) held.push((await blocksOf(src).next())!);
    await new Promise((r) => setTimeout(r, 300));
    // The thread has nowhere to write: the held blocks still hold the first 24 MiB.
    for (let i = 0; i < RING_BLOCKS; i++) {
      expect(held[i]!.buf.equals(big.subarray(i * RING_BLOCK_BYTES, (i + 1) * RING_BLOCK_BYTES))).toBe(true);
    }
    expect(src.rawBytesRead()).toBeLessThan(fs.statSync(file).size);
    for (const b of held) b.release();
    expect((await blocksOf(src).next())!.buf.equals(big.subarray(RING_BLOCKS * RING_BLOCK_BYTES, (RING_BLOCKS + 1) * RING_BLOCK_BYTES))).toBe(true);
    await src.close();
  });

  run('the next thread reuses the ring once the last one stopped and every lent block is back', async () => {
    // A ring is 24 MiB that only the garbage collector would free: conversions in a row (a
    // batch, a library caller) take the same one instead of piling up new ones.
    const file = writeFile(dir, `reuse.${codec}`, make(A));
    const first = await openInput(file, options);
    const kept = await blocksOf(first).next();
    const ringsBefore = idleRingCount();
    await readBlocks(first);
    await first.close();
    expect(idleRingCount()).toBe(ringsBefore); // a block is still out: the ring is not free yet
    kept!.release();
    expect(idleRingCount()).toBe(ringsBefore + 1);
    const second = await openInput(file, options);
    expect(idleRingCount()).toBe(ringsBefore);
    const b = (await blocksOf(second).next())!;
    expect(b.buf.buffer).toBe(kept!.buf.buffer);
    b.release();
    expect((await readBlocks(second)).length).toBe(A.length - RING_BLOCK_BYTES);
    await second.close();
    expect(idleRingCount()).toBe(ringsBefore + 1);
  });

  run('a block held by a writer (lease) is not refilled until the hold is released', async () => {
    const file = writeFile(dir, `lease.${codec}`, make(A));
    const src = await openInput(file, options);
    const b = (await blocksOf(src).next())!;
    const letGo = b.lease.hold();
    b.release();
    const copy = Buffer.from(b.buf);
    const rest = await readBlocks(src); // cycles through the other blocks
    expect(b.buf.equals(copy)).toBe(true);
    letGo();
    expect(Buffer.concat([copy, rest]).equals(A)).toBe(true);
    await src.close();
  });
});

describe('node:zlib gzip errors on the decoder thread are the main thread\'s errors', () => {
  const cases: Array<[string, () => Buffer]> = [
    ['a truncated stream', () => gzA.subarray(0, gzA.length - 1000)],
    ['a stream missing only its trailer', () => gzB.subarray(0, gzB.length - 4)],
    ['corrupt data', () => {
      const bad = Buffer.from(gzA);
      for (let i = 0; i < 64; i++) bad[40_000 + i]! ^= 0x5a;
      return bad;
    }],
    ['non-gzip bytes after a member', () => Buffer.concat([gzB, Buffer.from('garbage!')])],
  ];
  it.each(cases)('%s', async (_what, bytes) => {
    const file = writeFile(dir, 'bad.gz', bytes());
    // Each read as soon as it is open: a stream that fails before anyone listens would report
    // its error as unhandled.
    const threaded = await openInput(file, { gzipCodec: 'zlib' });
    expect(threaded.kind).toBe('blocks');
    const e1 = await blocksError(threaded);
    const main = await openInput(file, { gzipCodec: 'zlib', decodeThread: false });
    const e2 = await readError(main);
    expect(e1).toBeInstanceOf(InputError);
    expect(e1.code).toBe('BAD_COMPRESSION');
    expect(e1.describe()).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: gzip stream truncated/corrupt at compressed byte \\d+: \\S`));
    expect(e1.message.replace(/byte \d+/, '')).toBe(e2.message.replace(/byte \d+/, ''));
    await Promise.all([threaded.close(), main.close()]);
  });

  it('the offset of a truncation is where the input ends', async () => {
    const cut = gzA.length - 1000;
    const file = writeFile(dir, 'cut.gz', gzA.subarray(0, cut));
    const err = await blocksError(await openInput(file, { gzipCodec: 'zlib' }));
    expect(err.message).toBe(`gzip stream truncated/corrupt at compressed byte ${cut}: unexpected end of file`);
  });

  it('zero padding after the last member is accepted', async () => {
    const file = writeFile(dir, 'pad.gz', Buffer.concat([gzB, Buffer.alloc(4096)]));
    const src = await openInput(file, { gzipCodec: 'zlib' });
    expect((await readBlocks(src)).equals(B)).toBe(true);
    await src.close();
  });
});

describe('zstd on a decoder thread: the child', () => {
  const it = itWithTools('zstd');
  it('reports corrupt data with zstd\'s own message and exit status', async () => {
    const zst = tool('zstd', ['-3', '-q', '-c'], A);
    const bad = Buffer.from(zst);
    for (let i = 0; i < 64; i++) bad[100_000 + i]! ^= 0x5a;
    const file = writeFile(dir, 'bad.zst', bad);
    const err = await blocksError(await openInput(file, { zstdCodec: 'binary' }));
    expect(err.code).toBe('BAD_COMPRESSION');
    expect(err.message).toMatch(/^zstd stream truncated\/corrupt at compressed byte \d+: .+ \(zstd exit 1\)$/);
  });

  it('close() before the end kills the child and ends the blocks', async () => {
    const before = new Set(childZstdPids());
    const file = writeFile(dir, 'kill.zst', tool('zstd', ['-1', '-q', '-c'], sampleBytes(32 << 20, 44)));
    const src = await openInput(file, { zstdCodec: 'binary' });
    const b = (await blocksOf(src).next())!;
    b.release();
    const pids = childZstdPids().filter((p) => !before.has(p));
    expect(pids).toHaveLength(1);
    await src.close();
    expect(await waitFor(() => !isAlive(pids[0]!))).toBe(true);
    expect(await blocksOf(src).next()).toBeNull();
    await src.close(); // idempotent
  });
});

describe.each(['fifo', 'socket-pair', 'stdout-pipe'] as ChildTransport[])('zstd output over the %s', (transport) => {
  const it = itWithTools('zstd');
  const open = (file: string) => {
    const fd = fs.openSync(file, 'r');
    const thread = startDecoderThread({ decoder: zstdChild()!, fd, input: file, readSize: 1 << 20, transport })!;
    return { thread, done: async () => {
      await thread.close();
      fs.closeSync(fd);
    } };
  };

  it('decodes a multi-frame file', async () => {
    const file = writeFile(dir, `t-${transport}.zst`, Buffer.concat([tool('zstd', ['-q', '-c'], A), tool('zstd', ['-q', '-c'], B)]));
    const { thread, done } = open(file);
    const parts: Buffer[] = [];
    for (let b = await thread.next(); b; b = await thread.next()) {
      parts.push(Buffer.from(b.buf));
      b.release();
    }
    expect(Buffer.concat(parts).equals(Buffer.concat([A, B]))).toBe(true);
    await done();
  });

  it('reports a truncated file with zstd\'s message', async () => {
    const zst = tool('zstd', ['-q', '-c'], A);
    const file = writeFile(dir, `cut-${transport}.zst`, zst.subarray(0, zst.length - 100));
    const { thread, done } = open(file);
    await expect((async () => {
      for (let b = await thread.next(); b; b = await thread.next()) b.release();
    })()).rejects.toThrow(/^zstd stream truncated\/corrupt at compressed byte \d+: .+ \(zstd exit 1\)$/);
    await done();
  });

  it('close() early kills the child', async () => {
    const before = new Set(childZstdPids());
    const file = writeFile(dir, `stop-${transport}.zst`, tool('zstd', ['-1', '-q', '-c'], sampleBytes(32 << 20, 46)));
    const { thread, done } = open(file);
    (await thread.next())!.release();
    const pids = childZstdPids().filter((p) => !before.has(p));
    expect(pids).toHaveLength(1);
    await done();
    expect(await waitFor(() => !isAlive(pids[0]!))).toBe(true);
  });
});

describe('the child writes into a FIFO raised to 1 MiB (the default where perl is)', () => {
  const it = itWithTools('perl');
  /** A "codec" that writes what its stdout is: the pipe's size, or "socket". */
  const reportStdout: ChildCodec = {
    name: 'probe',
    path: 'perl',
    // 1032: F_GETPIPE_SZ (include/uapi/linux/fcntl.h).
    args: ['-e', 'print -S STDOUT ? "socket" : fcntl(STDOUT, 1032, 0)'],
    exitProblem: (stderr, code) => (code === 0 ? undefined : `exit ${code}: ${stderr}`),
    error: (input, consumed, detail) => new InputError('BAD_COMPRESSION', detail, { input, offset: consumed }),
  };
  const stdoutOfChild = async (transport?: ChildTransport): Promise<string> => {
    const file = writeFile(dir, 'probe-in', Buffer.alloc(0));
    const fd = fs.openSync(file, 'r');
    const codec = { ...reportStdout, path: findProgram('perl')! };
    const thread = startDecoderThread({ decoder: codec, fd, input: file, readSize: 1 << 20, transport })!;
    const parts: Buffer[] = [];
    for (let b = await thread.next(); b; b = await thread.next()) {
      parts.push(Buffer.from(b.buf));
      b.release();
    }
    await thread.close();
    fs.closeSync(fd);
    return Buffer.concat(parts).toString();
  };
  const withPipeSize = async <T>(value: string, f: () => Promise<T>): Promise<T> => {
    process.env.XVA2IMG_PIPE_SIZE = value;
    try {
      return await f();
    } finally {
      delete process.env.XVA2IMG_PIPE_SIZE;
    }
  };

  it('by default the child\'s stdout is a pipe of 1 MiB (or the machine\'s ceiling)', async () => {
    const ceiling = Number(fs.readFileSync('/proc/sys/fs/pipe-max-size', 'utf8'));
    expect(await stdoutOfChild()).toBe(String(Math.min(1 << 20, ceiling)));
  });

  it('XVA2IMG_PIPE_SIZE sets the size; 0 falls back to the socket pair', async () => {
    expect(await withPipeSize('262144', () => stdoutOfChild())).toBe('262144');
    expect(await withPipeSize('0', () => stdoutOfChild())).toBe('socket');
  });

  it('leaves no descriptor and no directory behind, and descriptors opened after it alone', async () => {
    const tmpBefore = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('xva2img-'));
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    const file = writeFile(dir, 'once.zst', tool('zstd', ['-q', '-c'], A));
    for (let i = 0; i < 3; i++) {
      const fd = fs.openSync(file, 'r');
      const thread = startDecoderThread({ decoder: zstdChild()!, fd, input: file, readSize: 1 << 20, transport: 'fifo' })!;
      for (let b = await thread.next(); b; b = await thread.next()) b.release();
      // Descriptors opened now take the lowest free numbers, the FIFO's old ones among them:
      // they must survive the thread's end (a second close of such a number would take one).
      const later = Array.from({ length: 4 }, () => fs.openSync(file, 'r'));
      await thread.close();
      for (const d of later) expect(() => fs.fstatSync(d)).not.toThrow();
      for (const d of later) fs.closeSync(d);
      fs.closeSync(fd);
    }
    expect(fs.readdirSync('/proc/self/fd').length).toBe(fdsBefore);
    expect(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('xva2img-'))).toEqual(tmpBefore);
  });
});

it('close() in the middle of a gzip file stops the thread and closes the file', async () => {
  const file = writeFile(dir, 'stop.gz', tool('gzip', ['-1', '-c'], sampleBytes(32 << 20, 45)));
  const src = await openInput(file, { gzipCodec: 'zlib' });
  (await blocksOf(src).next())!.release();
  const fdsBefore = fs.readdirSync('/proc/self/fd').length;
  await src.close();
  expect(fs.readdirSync('/proc/self/fd').length).toBeLessThan(fdsBefore);
  expect(await blocksOf(src).next()).toBeNull();
});

describe('a pipe copied into the ring (standard input)', () => {
  /** A FIFO that `script` (a shell command) writes into; returns our read end. */
  function fifoFrom(name: string, script: string): { fd: number; writer: ReturnType<typeof spawn> } {
    const fifo = path.join(dir, name);
    execFileSync('mkfifo', [fifo]);
    const writer = spawn('sh', ['-c', `{ ${script}; } > '${fifo}'`], { stdio: 'ignore' });
    return { fd: fs.openSync(fifo, 'r'), writer };
  }

  it('hands over what arrived when the writer pauses, and every byte in order', async () => {
    const file = writeFile(dir, 'pipe.bin', A); // 9 MiB
    // 3 MB, a pause, the rest: the first block cannot fill before the pause.
    const { fd } = fifoFrom('pause.fifo', `head -c 3000000 '${file}'; sleep 0.5; tail -c +3000001 '${file}'`);
    const thread = startDecoderThread({ decoder: 'copy', fd, input: 'pipe', readSize: RING_BLOCK_BYTES })!;
    const lengths: number[] = [];
    const parts: Buffer[] = [];
    for (let b = await thread.next(); b; b = await thread.next()) {
      lengths.push(b.buf.length);
      parts.push(Buffer.from(b.buf));
      b.release();
    }
    expect(Buffer.concat(parts).equals(A)).toBe(true);
    expect(lengths[0]).toBeLessThan(RING_BLOCK_BYTES); // not held back until the block filled
    expect(thread.rawBytesRead()).toBe(A.length);
    await thread.close(); // the thread took the pipe over and has closed it
    expect(() => fs.fstatSync(fd)).toThrow(/EBADF/);
  });

  it('reads a pipe that stays quiet without spinning, and close() lets it go', async () => {
    const { fd, writer } = fifoFrom('quiet.fifo', 'printf abc; sleep 30');
    const thread = startDecoderThread({ decoder: 'copy', fd, input: 'pipe', readSize: RING_BLOCK_BYTES })!;
    const b = (await thread.next())!;
    expect(b.buf.toString()).toBe('abc');
    b.release();
    const started = Date.now();
    await thread.close();
    expect(Date.now() - started).toBeLessThan(5000);
    writer.kill();
  });
});
