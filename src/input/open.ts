/**
 * openInput: path | "-" | URL  ->  sniff magic bytes  ->  gzip / zstd / plain  ->  InputSource.
 *
 * Files are opened O_RDONLY (the input is never modified; read-only files work) and read with
 * large reads. The returned `stream` is the decoded tar byte stream; destroying it (or calling
 * `close()`) stops the decoder, kills a zstd child and releases the descriptor or socket.
 *
 * Fast paths for regular files (sniffed with pread, so the offset is still 0): gzip and zstd are
 * decoded on a worker thread into shared blocks (decoder-thread.ts; by the igzip or zstd program
 * reading the file as its stdin, progress read from the shared file offset, or by node:zlib in
 * the thread). Every other input goes RawPump -> sniff -> decoder -> DecodedStream.
 */
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { InputError, UsageError } from '../errors';
import { checkChoice } from '../option-checks';
import { GZIP_CODECS, ZSTD_CODECS, type BlockSource, type BlocksInputSource, type Compression, type FileInputSource, type InputSource, type OpenInputOptions, type StreamInputSource } from './types';
import { type DecodeContext, type Decoder, DecodedStream, PassThroughDecoder } from './decoder';
import { openFd, unreadable } from '../io/open-file';
import { deepenPipe } from '../io/pipe-size';
import { type ChildCodec, childDecoder } from './child-codec';
import { createGzipDecoder, igzipChild, resolveGzipCodec } from './gzip';
import { isUrl, openHttp } from './http';
import { RawPump, type RawSource } from './raw-pump';
import { SNIFF_BYTES, detectCompression, emptyInput, sniff } from './sniff';
import { createZstdDecoder, resolveZstdCodec, zstdChild } from './zstd';
import { blocksAsStream, type DecoderThread, gzipThreadAvailable, RING_BLOCK_BYTES, startDecoderThread } from './decoder-thread';
import type { PooledBuffer } from '../io/buffer-pool';

/**
 * Default bytes per read from files (compressed ones: plain files are read by the reader's
 * block path, not here). Every read is a round trip through the thread pool, costly on small
 * VMs, so bigger reads are faster; but each read inflates into a backlog of decoded buffers
 * that V8 frees late. Measured on gz -> raw (1.3 GB XVA, 2 vCPUs): 1 MiB 4.2 s / 125 MB peak
 * RSS, 2 MiB 4.1 s / 130 MB, 4 MiB ~3.9 s / 160-170 MB. 2 MiB keeps memory well under budget.
 */
export const DEFAULT_READ_SIZE = 2 << 20;

const fsClose = promisify(fs.close);
const fsRead = promisify(fs.read);
const STDIN_FD = 0;

/** Several inputs may name standard input (`-`) only once: there is one stdin to read. */
export function assertStdinNamedOnce(inputs: readonly string[]): void {
  if (inputs.filter((i) => i === '-').length > 1) throw new UsageError('standard input (-) can be named only once');
}

/** Checks the decoder choices of `options` (UsageError for a value outside its set). */
export function checkInputOptions(options: OpenInputOptions): void {
  checkChoice(options.gzipCodec, GZIP_CODECS, 'gzipCodec');
  checkChoice(options.zstdCodec, ZSTD_CODECS, 'zstdCodec');
}

export async function openInput(spec: string, options: OpenInputOptions = {}): Promise<InputSource> {
  checkInputOptions(options);
  if (spec === '-') return (options.stdin ? undefined : await stdinOnThread(options)) ?? decodeSource(openStdin(options.stdin), options);
  if (isUrl(spec)) return decodeSource(await openHttp(spec, options.headers, options.http), options);
  return openFileInput(spec, options);
}

/** Generic path: RawPump over the source stream -> sniff -> decoder -> DecodedStream. */
async function decodeSource(source: RawSource, options: OpenInputOptions): Promise<InputSource> {
  const pump = new RawPump(source);
  let compression: Compression;
  try {
    compression = await sniff(pump, source.name);
  } catch (err) {
    pump.destroy();
    await source.release();
    throw err;
  }
  try {
    return wireDecoder(source, pump, compression, options);
  } catch (err) {
    await source.release(); // the descriptor is closed before the caller sees the error
    throw err;
  }
}

/**
 * The decoder for `compression` between the pump and a DecodedStream (the pump starts flowing).
 * If no decoder can be made, the pump is destroyed and the error thrown; releasing the source
 * is the caller's.
 */
function wireDecoder(source: RawSource, pump: RawPump, compression: Compression, options: OpenInputOptions): StreamInputSource {
  const out = new DecodedStream();
  const ctx = makeContext(source.name, out, () => pump.bytesRead, () => pump.resume());
  let decoder: Decoder;
  try {
    if (compression === 'gzip') decoder = createGzipDecoder(ctx, options.gzipCodec);
    else if (compression === 'zstd') decoder = createZstdDecoder(ctx, options.zstdCodec);
    else decoder = new PassThroughDecoder(ctx);
  } catch (err) {
    pump.destroy();
    throw err;
  }
  const { close } = finishSource(out, decoder, () => {
    pump.destroy();
    return source.release();
  });
  pump.connect(decoder.sink, ctx.fail);
  return {
    kind: 'stream',
    name: source.name,
    compression,
    codec: decoder.codec,
    rawSize: source.rawSize,
    stream: out,
    rawBytesRead: () => pump.bytesRead,
    close,
  };
}

function makeContext(input: string, out: DecodedStream, rawBytesRead: () => number, resumeRaw: () => void): DecodeContext {
  return {
    input,
    out,
    rawBytesRead,
    resumeRaw,
    fail: (err) => {
      if (!out.destroyed) out.destroy(err);
    },
  };
}

/** Binds the decoded stream to its decoder and returns an idempotent close(). */
function finishSource(out: DecodedStream, decoder: Decoder, releaseSource: () => Promise<void>): { close: () => Promise<void> } {
  let released: Promise<void> | undefined;
  const release = (): Promise<void> => {
    released ??= Promise.all([decoder.destroy(), releaseSource()]).then(() => undefined);
    return released;
  };
  out.bind(
    () => decoder.pull(),
    () => void release(),
  );
  return {
    close: () => {
      if (!out.destroyed) out.destroy();
      return release();
    },
  };
}

async function openFileInput(path: string, options: OpenInputOptions): Promise<InputSource> {
  const readSize = options.readSize ?? DEFAULT_READ_SIZE;
  if (!Number.isInteger(readSize) || readSize <= 0) throw new RangeError(`readSize must be a positive integer, got ${readSize}`);
  const { fd, stat } = await openFd(path);
  // A named pipe (`mkfifo`, `<(gunzip -c vm.xva.gz)`): read as standard input is, never by a
  // blocking read on a pool thread, which an interrupted exit would wait for forever.
  if (stat.isFIFO()) return (await pipeOnThread(fd, path, stat, options)) ?? decodeSource(pipeSocketSource(path, fd), options);
  if (stat.isFile()) {
    // Peek with pread (the file offset stays at 0) to see whether the zstd child can read the
    // file itself: then the compressed bytes never pass through this process.
    let head: Buffer;
    try {
      const buf = Buffer.alloc(SNIFF_BYTES);
      const { bytesRead } = await fsRead(fd, buf, 0, SNIFF_BYTES, 0);
      head = buf.subarray(0, bytesRead);
    } catch (err) {
      await fsClose(fd).catch(() => {});
      throw unreadable(path, 'read error at byte 0', err);
    }
    if (head.length === 0) {
      await fsClose(fd).catch(() => {});
      throw emptyInput(path);
    }
    const compression = detectCompression(head);
    if (compression === 'none') return plainFileInput(path, fd, stat, readSize, options);
    const threaded = options.decodeThread !== false;
    let child: ChildCodec | null = null;
    try {
      if (compression === 'gzip') {
        const codec = resolveGzipCodec(options.gzipCodec);
        if (codec === 'zlib' && threaded && gzipThreadAvailable()) {
          const input = threadedFileInput(path, fd, stat, compression, 'inflate', readSize);
          if (input) return input;
        }
        if (codec === 'igzip') child = igzipChild();
      } else if (resolveZstdCodec(options.zstdCodec) === 'binary') {
        child = zstdChild();
      }
    } catch (err) {
      await fsClose(fd).catch(() => {});
      throw err;
    }
    if (child) return (threaded ? threadedFileInput(path, fd, stat, compression, child, readSize) : undefined) ?? childOnFile(path, fd, stat, compression, child);
  }
  return decodeSource(fileSource(path, fd, stat, readSize), options);
}

/**
 * A plain (uncompressed) regular file. Its readers seek: readXva opens it by `path` and
 * reads it in aligned blocks, or only its headers. The stream is therefore made only when a
 * caller asks for it. Made up front, it read ahead three 2 MiB buffers that nobody used, per
 * conversion: 6 MB of reads and 6 MB of memory for the collector.
 */
function plainFileInput(path: string, fd: number, stat: fs.Stats, readSize: number, options: OpenInputOptions): FileInputSource {
  let wired: InputSource | undefined;
  let closed: Promise<void> | undefined;
  const wire = (): InputSource => {
    if (closed) throw new InputError('INPUT_UNREADABLE', 'input already closed', { input: path });
    const source = fileSource(path, fd, stat, readSize);
    // A pass-through decoder cannot fail to be made, so the source needs no release here.
    return (wired = wireDecoder(source, new RawPump(source), 'none', options));
  };
  return {
    kind: 'file',
    path,
    name: path,
    compression: 'none',
    codec: 'none',
    rawSize: stat.size,
    get stream() {
      return (wired ?? wire()).stream;
    },
    rawBytesRead: () => wired?.rawBytesRead() ?? 0,
    close: () => (closed ??= wired ? wired.close() : fsClose(fd).catch(() => {})),
  };
}

/** A regular gzip or zstd file given to its child codec as its stdin, decoded on the main thread. */
function childOnFile(path: string, fd: number, stat: fs.Stats, compression: Compression, child: ChildCodec): StreamInputSource {
  const out = new DecodedStream();
  const progress = childReadProgress(fd);
  const rawBytesRead = progress.read;
  const ctx = makeContext(path, out, rawBytesRead, () => {});
  const decoder = childDecoder(ctx, child, fd);
  const { close } = finishSource(out, decoder, async () => {
    progress.stop();
    await fsClose(fd).catch(() => {});
  });
  return {
    kind: 'stream',
    name: path,
    compression,
    codec: decoder.codec,
    rawSize: stat.size,
    stream: out,
    rawBytesRead,
    close,
  };
}

/**
 * A regular gzip or zstd file decoded on a worker thread (decoder-thread.ts), by node:zlib
 * ('inflate') or a child codec; undefined when no thread can be had here (the caller decodes on
 * the main thread instead).
 */
function threadedFileInput(path: string, fd: number, stat: fs.Stats, compression: Compression, decoder: 'inflate' | ChildCodec, readSize: number): InputSource | undefined {
  const progress = decoder === 'inflate' ? undefined : childReadProgress(fd);
  const thread = startDecoderThread({ decoder, fd, input: path, readSize, rawBytesRead: progress?.read });
  if (!thread) return undefined;
  const facts = { name: path, compression, codec: decoder === 'inflate' ? 'node:zlib' : decoder.name, rawSize: stat.size };
  return blockInput(facts, thread, async () => {
    progress?.stop();
    await thread.close();
    await fsClose(fd).catch(() => {});
  });
}

/**
 * An input read as `blocks` (a decoder thread's ring); its stream, for callers that want one,
 * is made from them on demand. `release` frees what is behind the blocks (once, after the stream).
 */
function blockInput(facts: Pick<InputSource, 'name' | 'compression' | 'codec' | 'rawSize'>, blocks: BlockSource & { rawBytesRead(): number }, release: () => Promise<void>): BlocksInputSource {
  let closed: Promise<void> | undefined;
  let stream: Readable | undefined;
  return {
    ...facts,
    kind: 'blocks',
    blocks,
    get stream() {
      return (stream ??= blocksAsStream(blocks));
    },
    rawBytesRead: () => blocks.rawBytesRead(),
    close: () =>
      (closed ??= (async () => {
        stream?.destroy();
        await release();
      })()),
  };
}

/**
 * Progress of a child that reads `fd` itself: it shares our open file description, so its
 * offset is the bytes it has consumed (Linux /proc). `stop()` (before `fd` is closed) keeps the
 * last value, since a closed descriptor number may soon name another file.
 */
function childReadProgress(fd: number): { read(): number; stop(): void } {
  let position = 0;
  let stopped = false;
  const read = (): number => {
    if (!stopped) position = fdPosition(fd) ?? position;
    return position;
  };
  return {
    read,
    stop: () => {
      read();
      stopped = true;
    },
  };
}

/** Current offset of `fd` from /proc/self/fdinfo, or undefined where that does not exist. */
function fdPosition(fd: number): number | undefined {
  try {
    const m = /^pos:\s+(\d+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function fileSource(path: string, fd: number, stat: fs.Stats, readSize: number): RawSource {
  const regular = stat.isFile();
  const stream = fs.createReadStream('', { fd, highWaterMark: readSize, autoClose: true, emitClose: true });
  return {
    name: path,
    stream,
    rawSize: regular ? stat.size : undefined,
    mapError: (err, bytesRead) => unreadable(path, `read error at byte ${bytesRead}`, err),
    release: () => closeReadStream(stream),
  };
}

/** Destroys a file stream and resolves once its descriptor is closed. */
function closeReadStream(stream: fs.ReadStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.closed) return resolve();
    stream.once('close', () => resolve());
    stream.destroy();
  });
}

/**
 * Standard input (a pipe, socket or file; not a terminal) read by a thread of its own into a
 * ring of shared blocks ('copy', decoder-thread.ts), so that the program writing into the pipe
 * never waits for the main thread. A plain tar is parsed straight from those blocks (lent, no
 * copy); a gzip or zstd stream goes from them to its decoder as a stream. Undefined where no
 * thread can be had (then stdin is read as a stream on the main thread), or for a terminal.
 *
 * process.stdin is never touched on this path: creating it would make the descriptor
 * non-blocking for a pipe, and two readers of one pipe would split its bytes.
 */
async function stdinOnThread(options: OpenInputOptions): Promise<InputSource | undefined> {
  let stat: fs.Stats;
  try {
    stat = fs.fstatSync(STDIN_FD);
  } catch {
    return undefined;
  }
  if (!stat.isFIFO() && !stat.isSocket() && !stat.isFile()) return undefined;
  return pipeOnThread(STDIN_FD, '-', stat, options);
}

/**
 * `fd` (standard input, or a named pipe opened by path: `name`) read on the decoder thread, as
 * stdinOnThread says. Undefined when no thread can be had. The thread's socket closes `fd` when
 * it ends (for a path; standard input the same way).
 */
async function pipeOnThread(fd: number, name: string, stat: fs.Stats, options: OpenInputOptions): Promise<InputSource | undefined> {
  const thread = startDecoderThread({ decoder: 'copy', fd, input: name, readSize: RING_BLOCK_BYTES });
  if (!thread) return undefined;
  // The producer writing into the pipe then waits for our reads 16x less often (pipe-size.ts).
  if (stat.isFIFO()) void deepenPipe(fd);
  const rawSize = stat.isFile() ? stat.size : undefined;
  let first: PooledBuffer | null;
  try {
    first = await thread.next();
  } catch (err) {
    await thread.close();
    throw err;
  }
  if (!first) {
    await thread.close();
    throw emptyInput(name);
  }
  const blocks = prependBlock(first, thread);
  const compression = detectCompression(first.buf.subarray(0, SNIFF_BYTES));
  if (compression === 'none') return blockInput({ name, compression, codec: 'none', rawSize }, blocks, () => blocks.close());
  const stream = blocksAsStream(blocks);
  return decodeSource(
    {
      name,
      stream,
      rawSize,
      mapError: (err, bytesRead) => unreadable(name, `read error${name === '-' ? ' on stdin' : ''} at byte ${bytesRead}`, err),
      release: async () => {
        stream.destroy();
        await blocks.close();
      },
    },
    options,
  );
}

/**
 * A named pipe read on the main thread as a socket (non-blocking, as openFd opened it), where no
 * decoder thread can be had.
 */
function pipeSocketSource(path: string, fd: number): RawSource {
  // node:net is required only here: most runs read no pipe (start-up time).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const net = require('node:net') as typeof import('node:net');
  const stream = new net.Socket({ fd, readable: true, writable: false });
  return {
    name: path,
    stream,
    rawSize: undefined,
    mapError: (err, bytesRead) => unreadable(path, `read error at byte ${bytesRead}`, err),
    release: () => Promise.resolve(void stream.destroy()),
  };
}

/** `first`, then the rest of `source`. */
function prependBlock(first: PooledBuffer, source: DecoderThread): BlockSource & { rawBytesRead(): number } {
  let head: PooledBuffer | null = first;
  return {
    lendsBlocks: source.lendsBlocks,
    rawBytesRead: () => source.rawBytesRead(),
    next() {
      const b = head;
      head = null;
      return b ? Promise.resolve(b) : source.next();
    },
    failure: () => source.failure(),
    async drain() {
      head?.release();
      head = null;
      await source.drain();
    },
    close() {
      head?.release();
      head = null;
      return source.close();
    },
  };
}

function openStdin(given: Readable | undefined): RawSource {
  const isProcessStdin = given === undefined;
  const stream = given ?? process.stdin;
  let rawSize: number | undefined;
  if (isProcessStdin) {
    try {
      const st = fs.fstatSync(0);
      if (st.isFile()) rawSize = st.size; // `xva2img - < file.xva`
    } catch {
      // unknown size
    }
  }
  let released: Promise<void> | undefined;
  return {
    name: '-',
    stream,
    rawSize,
    mapError: (err, bytesRead) => unreadable('-', `read error on stdin at byte ${bytesRead}`, err),
    release: () => {
      // process.stdin is left open (paused) for whoever owns the process; other streams are ours.
      released ??= isProcessStdin ? Promise.resolve(void stream.pause()) : Promise.resolve(void stream.destroy());
      return released;
    },
  };
}
