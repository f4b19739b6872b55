/**
 * Decompression on a worker thread, into a ring of blocks in shared memory.
 *
 * Why: on the main thread, a decoder's output arrives one chunk per event: node:zlib inflates a
 * chunk in the thread pool, then waits for the main thread to take it before it inflates the
 * next, and a child's output arrives in 64 KiB pipe reads, each a new buffer for V8 to collect.
 * Whenever the main thread is busy parsing, hashing or submitting writes, the decoder stands
 * still, so a conversion took the decoder's time plus a good part of ours (gz -> raw 1.3-1.4x the
 * time of inflating alone, zstd -> raw ~2x `zstd -dc`). Here the decoder runs on its own thread
 * and never waits for the main thread unless the whole ring is full:
 *
 *  - 'copy' (no decoding: standard input as it comes): a synchronous loop of reads straight into
 *    the ring. A pipe's writer (`gunzip -c | xva2img -`) then never waits for the main thread:
 *    the pipe is drained as fast as it fills, while the main thread works on earlier blocks;
 *  - 'inflate' (gzip with node:zlib): a synchronous loop of file reads and inflate calls that
 *    write straight into the ring (node:zlib's native handle, the same engine as createGunzip,
 *    multi-member included);
 *  - a child codec (`zstd`, `igzip`: child-codec.ts): the program reads the file itself and
 *    writes into a socket that the thread reads straight into the ring.
 *
 * The ring is RING_BLOCKS blocks of RING_BLOCK_BYTES in one shared WebAssembly memory, so the
 * main thread reads the blocks as buffers without a copy, lends them to image writers (as it
 * lends a plain file's blocks) and hashes XXH64 chunks in place. One Int32 per block says who
 * owns it (0: the thread may fill it, 1: the main thread holds it); the thread posts a message
 * per filled block and sleeps on Atomics.wait when the next block is still held. A STOP flag
 * (plus a 'stop' message for the child thread's event loop) ends it early.
 */
import type { Worker } from 'node:worker_threads';
import { Readable } from 'node:stream';
import { InputError } from '../errors';
import { allocSharedMemory, type WasmMemory } from '../io/aligned-buffer';
import { lendBuffer, type PooledBuffer } from '../io/buffer-pool';
import { errorText } from '../errors';
import { cannotRun, CHILD_STDERR_LIMIT, type ChildCodec } from './child-codec';
import { gzipError, loadZlib } from './gzip';
import { unreadable } from '../io/open-file';
import type { BlockSource } from './types';
import { findProgram } from '../io/find-program';
import { deepStdoutPerlArgs, MKFIFO_PERL_ARGS, pipeSizeToAsk } from '../io/pipe-size';
import path from 'node:path';
import type { ChildTransport, ThreadData, ThreadMessage } from './decoder-thread-main';

export type { ChildTransport };

/** Bytes per ring block: several XVA chunks, so that few chunks straddle two blocks (those are copied). */
export const RING_BLOCK_BYTES = 4 * 1024 * 1024;
/**
 * Blocks in the ring. The main thread holds up to ~4 (the block being parsed, blocks lent to
 * the writers' two 4 MiB writes in flight); the rest let the decoder run ahead meanwhile.
 */
export const RING_BLOCKS = 6;
/** Index of the STOP flag in the control array (after one state word per block). */
const STOP = RING_BLOCKS;
/** How long the thread sleeps before it looks at STOP again (a notify normally wakes it sooner). */
const WAIT_MS = 200;
/**
 * Copying a pipe: a partly filled block is handed over once the pipe has been quiet this long
 * (a writer that pauses must not leave its last bytes waiting in the ring).
 */
const PIPE_IDLE_MS = 20;
/** How long close() waits for the thread to stop by itself before terminating it. */
const STOP_GRACE_MS = 2000;
/**
 * Rings kept for the next decoder thread once a thread has stopped and every block it lent
 * is back. A ring is 24 MiB of shared WebAssembly memory that only the garbage collector frees,
 * and late: four zstd conversions in a row in one process peaked at 196 MB where one takes
 * 102 MB. Two cover `-j 2`; with more at once, the rings beyond these are left to the collector.
 */
const MAX_IDLE_RINGS = 2;
const idleRings: WasmMemory[] = [];

/** The thread's code: the module decoder-thread-main.ts, compiled beside this one. */
const THREAD_MODULE = path.join(__dirname, 'decoder-thread-main.js');
/** Makes what the worker runs instead of THREAD_MODULE (threadFromCode). */
let threadCode: (() => string) | undefined;

/**
 * Runs the thread from the text `code()` returns (decoder-thread-main as JavaScript; asked for
 * when a thread starts) instead of the compiled module. For the tests, which run these sources
 * as TypeScript that a worker cannot load (test/setup/decoder-thread.ts); the package's API does
 * not reach it.
 */
export function threadFromCode(code: () => string): void {
  threadCode = code;
}

/** Rings waiting for reuse (for tests). */
export function idleRingCount(): number {
  return idleRings.length;
}

let gzipSupport: boolean | undefined;

/** Whether gzip can be decoded on a thread here (node:zlib's handle as expected, shared memory). */
export function gzipThreadAvailable(): boolean {
  if (gzipSupport === undefined) {
    const zlib = loadZlib();
    let ok = false;
    if (zlib && typeof SharedArrayBuffer === 'function') {
      try {
        const g = zlib.createGunzip() as unknown as { _handle?: { writeSync?: unknown }; _writeState?: unknown; close(): void };
        ok = typeof g._handle?.writeSync === 'function' && Object.prototype.toString.call(g._writeState) === '[object Uint32Array]';
        g.close();
      } catch {
        ok = false;
      }
    }
    gzipSupport = ok;
  }
  return gzipSupport;
}

export interface DecoderThreadOptions {
  /**
   * 'copy': the bytes as they are (a pipe read into the ring); 'inflate': gzip by node:zlib in
   * the thread; or a program to run (child-codec.ts).
   */
  decoder: 'copy' | 'inflate' | ChildCodec;
  /**
   * The open input (the thread or child reads it from its current offset). A pipe or socket
   * copied by the thread is taken over: the thread closes it when it ends.
   */
  fd: number;
  /** Names the input in errors. */
  input: string;
  readSize: number;
  /**
   * How a child's output comes back (default: a socket pair on Linux, where abstract-namespace
   * sockets exist; the child's stdout pipe elsewhere).
   */
  transport?: ChildTransport;
  /** Raw bytes consumed so far, for a child (its file offset); inflate counts its own. */
  rawBytesRead?: () => number;
}

/**
 * How a child's output comes back: the transport asked for, else the deepest the machine has — a
 * FIFO raised to 1 MiB where perl can raise it, a socket pair on Linux, the child's stdout pipe
 * elsewhere (docs/design/pipe-depth.md).
 */
function childTransport(asked: ChildTransport | undefined, child: ChildCodec): Pick<NonNullable<ThreadData['child']>, 'transport' | 'fifo'> {
  if (asked === 'stdout-pipe' || asked === 'socket-pair') return { transport: asked };
  const bytes = pipeSizeToAsk();
  const perl = bytes > 0 ? findProgram('perl') : null;
  if (perl) return { transport: 'fifo', fifo: { perl, mkfifoArgs: [...MKFIFO_PERL_ARGS], runArgs: deepStdoutPerlArgs(bytes, child.path, child.args) } };
  return { transport: process.platform === 'linux' ? 'socket-pair' : 'stdout-pipe' };
}

interface ReadyBlock {
  slot: number;
  length: number;
}

/**
 * The blocks a decoder thread fills, as a BlockSource (blocks are lent: `lendsBlocks`). Undefined
 * when no shared memory or worker thread can be had (then the caller decodes on the main thread).
 */
export function startDecoderThread(o: DecoderThreadOptions): DecoderThread | undefined {
  const memory = idleRings.pop() ?? allocSharedMemory(RING_BLOCK_BYTES * RING_BLOCKS);
  if (!memory) return undefined;
  try {
    return new DecoderThread(o, memory);
  } catch {
    idleRings.push(memory);
    return undefined; // no worker thread to be had (resource limits): decode on the main thread
  }
}

export class DecoderThread implements BlockSource {
  readonly lendsBlocks = true;
  readonly #o: DecoderThreadOptions;
  readonly #memory: WasmMemory;
  readonly #control: Int32Array;
  readonly #progress: Float64Array;
  readonly #worker: Worker;
  readonly #ready: ReadyBlock[] = [];
  #waiter: (() => void) | undefined;
  #ended = false;
  #failure: InputError | undefined;
  #exited: Promise<void>;
  #closed: Promise<void> | undefined;
  /** Blocks lent and not yet back; the ring is reused only when none is out and the thread has stopped. */
  #lent = 0;
  #stopped = false;
  #recycled = false;

  constructor(o: DecoderThreadOptions, memory: WasmMemory) {
    this.#o = o;
    this.#memory = memory;
    this.#control = new Int32Array(new SharedArrayBuffer(4 * (RING_BLOCKS + 1)));
    this.#progress = new Float64Array(new SharedArrayBuffer(8));
    const child = typeof o.decoder === 'string' ? undefined : o.decoder;
    const workerData: ThreadData = {
      mode: child ? 'child' : (o.decoder as 'copy' | 'inflate'),
      fd: o.fd,
      readSize: o.readSize,
      memory,
      control: this.#control,
      progress: this.#progress,
      blockBytes: RING_BLOCK_BYTES,
      blocks: RING_BLOCKS,
      waitMs: WAIT_MS,
      idleMs: PIPE_IDLE_MS,
      child: child && {
        path: child.path,
        args: [...child.args],
        stderrLimit: CHILD_STDERR_LIMIT,
        ...childTransport(o.transport, child),
      },
    };
    // Required here, not at the top: plain-file conversions never start a thread (start-up time).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Worker: WorkerThread } = require('node:worker_threads') as typeof import('node:worker_threads');
    this.#worker = new WorkerThread(threadCode?.() ?? THREAD_MODULE, { eval: threadCode !== undefined, workerData });
    this.#worker.on('message', (m: ThreadMessage) => this.#onMessage(m));
    this.#worker.on('error', (err) => this.#fail(new InputError('BAD_COMPRESSION', `decoder thread failed: ${errorText(err)}`, { input: o.input }, { cause: err })));
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()));
    void this.#exited.then(() => {
      if (!this.#ended && !this.#failure && !this.#closed) this.#fail(new InputError('BAD_COMPRESSION', 'decoder thread stopped early', { input: o.input }));
    });
  }

  /** Raw (compressed) bytes consumed so far. */
  rawBytesRead(): number {
    return this.#o.rawBytesRead?.() ?? this.#progress[0]!;
  }

  next(): Promise<PooledBuffer | null> {
    return new Promise((resolve, reject) => {
      const settle = (): boolean => {
        const b = this.#ready.shift();
        if (b) resolve(this.#lend(b));
        else if (this.#failure) reject(this.#failure);
        else if (this.#ended || this.#closed) resolve(null);
        else return false;
        return true;
      };
      if (!settle()) this.#waiter = () => void settle();
    });
  }

  failure(): unknown {
    return this.#failure;
  }

  async drain(): Promise<void> {
    for (let b = await this.next(); b; b = await this.next()) b.release();
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#ready.length = 0;
      Atomics.store(this.#control, STOP, 1);
      for (let i = 0; i < RING_BLOCKS; i++) Atomics.notify(this.#control, i);
      this.#worker.postMessage({ type: 'stop' });
      // A thread blocked reading a pipe whose writer has stopped writing cannot see STOP, and
      // not even terminate() ends it until the read returns: after the grace time it is
      // terminated and let go (unref: it cannot keep the process alive), and its ring is not
      // reused, since it may still write into it.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), STOP_GRACE_MS);
      });
      const stopped = await Promise.race([this.#exited.then(() => true), late]);
      clearTimeout(timer);
      if (stopped) {
        this.#stopped = true;
        this.#recycleRing();
      } else {
        this.#worker.unref();
        void this.#worker.terminate();
      }
      this.#wake();
    })();
    return this.#closed;
  }

  /** Offers the ring for the next thread once this one has stopped and every lent block is back. */
  #recycleRing(): void {
    if (!this.#stopped || this.#lent > 0 || this.#recycled) return;
    this.#recycled = true;
    if (idleRings.length < MAX_IDLE_RINGS) idleRings.push(this.#memory);
  }

  /** The block in `slot` as a pooled buffer: back to the thread once the taker and every holder let go. */
  #lend(b: ReadyBlock): PooledBuffer {
    const buf = Buffer.from(this.#memory.buffer, b.slot * RING_BLOCK_BYTES, b.length);
    this.#lent++;
    return lendBuffer(
      buf,
      () => {
        Atomics.store(this.#control, b.slot, 0);
        Atomics.notify(this.#control, b.slot);
        this.#lent--;
        this.#recycleRing();
      },
      'DecoderThread: hold() on a block already returned to the thread',
    );
  }

  #onMessage(m: ThreadMessage): void {
    if (this.#closed) return;
    if (m.type === 'block') this.#ready.push({ slot: m.slot, length: m.length });
    else if (m.type === 'end') this.#ended = true;
    else if (m.type === 'exit') this.#onChildExit(m);
    else this.#fail(this.#mapError(m));
    this.#wake();
  }

  #onChildExit(m: Extract<ThreadMessage, { type: 'exit' }>): void {
    const child = this.#o.decoder as ChildCodec;
    const problem = child.exitProblem(m.stderr, m.code, m.signal);
    if (problem) this.#fail(child.error(this.#o.input, this.rawBytesRead(), problem));
    else this.#ended = true;
  }

  #mapError(m: Extract<ThreadMessage, { type: 'error' }>): InputError {
    const { input } = this.#o;
    switch (m.kind) {
      case 'read':
        return unreadable(input, `read error at byte ${m.offset}`, Object.assign(new Error(m.detail), { code: m.code }));
      case 'gzip':
        return gzipError(input, m.offset, m.detail);
      case 'child':
        return (this.#o.decoder as ChildCodec).error(input, this.rawBytesRead(), m.detail);
      case 'spawn':
        return cannotRun(input, (this.#o.decoder as ChildCodec).path, new Error(m.detail));
    }
  }

  #fail(err: InputError): void {
    this.#failure ??= err;
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }
}

/**
 * The thread's blocks as a Readable, for consumers that want a stream (each block copied out,
 * since blocks go back to the thread). Conversions read the blocks themselves.
 */
export function blocksAsStream(source: BlockSource): Readable {
  let reading = false;
  return new Readable({
    highWaterMark: RING_BLOCK_BYTES,
    read() {
      if (reading) return;
      reading = true;
      source.next().then(
        (b) => {
          reading = false;
          if (!b) return void this.push(null);
          const copy = Buffer.from(b.buf);
          b.release();
          this.push(copy);
        },
        (err: unknown) => this.destroy(err as Error),
      );
    },
    destroy(err, callback) {
      source.close().then(
        () => callback(err),
        () => callback(err),
      );
    },
  });
}
