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
import { allocSharedMemory, type WasmMemory } from './aligned-buffer';
import { lendBuffer, type PooledBuffer } from './buffer-pool';
import { errorText } from './decoder';
import { cannotRun, CHILD_STDERR_LIMIT, type ChildCodec } from './child-codec';
import { gzipError, loadZlib } from './gzip';
import { unreadable } from './open';
import type { BlockSource } from './types';

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

/** Rings waiting for reuse (for tests). */
export function idleRingCount(): number {
  return idleRings.length;
}

/** What the thread is given (structured-cloned; the memory and control array are shared). */
interface ThreadData {
  fd: number;
  readSize: number;
  memory: WasmMemory;
  control: Int32Array;
  /** [0]: raw bytes read so far (inflate). */
  progress: Float64Array;
  blockBytes: number;
  blocks: number;
  waitMs: number;
  /** Copy from a pipe: hand over a partly filled block after this long without input. */
  idleMs: number;
  mode: 'copy' | 'inflate' | 'child';
  /** The program to run (mode 'child'). */
  child?: { path: string; args: string[]; stderrLimit: number; transport: ChildTransport };
}

/** How a child's output reaches the thread (see the thread's code). */
export type ChildTransport = 'socket-pair' | 'stdout-pipe';

/** Messages from the thread. */
type ThreadMessage =
  | { type: 'block'; slot: number; length: number }
  | { type: 'end' }
  /** The child has exited and all its output is in the ring. */
  | { type: 'exit'; code: number | null; signal: NodeJS.Signals | null; stderr: string }
  | { type: 'error'; kind: 'read' | 'gzip' | 'child' | 'spawn'; detail: string; offset: number; code?: string };

/**
 * The thread's code. It runs from source text (`eval` worker), so that the same code serves the
 * compiled package and the TypeScript tests: it must not use anything from this module's scope.
 */
function decoderThreadMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { workerData, parentPort } = require('node:worker_threads') as typeof import('node:worker_threads');
  const fs = require('node:fs') as typeof import('node:fs');
  const data = workerData as ThreadData;
  const port = parentPort!;
  const { control, blockBytes, blocks } = data;
  const stopIndex = blocks;
  const post = (m: ThreadMessage): void => port.postMessage(m);

  let slot = 0;
  let fill = 0;
  let out = new Uint8Array(data.memory.buffer, 0, blockBytes);
  const stopping = (): boolean => Atomics.load(control, stopIndex) !== 0;

  /** Hands the filled block to the main thread. */
  const hand = (): void => {
    if (fill === 0) return;
    Atomics.store(control, slot, 1);
    post({ type: 'block', slot, length: fill });
    slot = (slot + 1) % blocks;
    fill = 0;
    out = new Uint8Array(data.memory.buffer, slot * blockBytes, blockBytes);
  };
  /** The last block, then the end. */
  const finish = (): void => {
    hand();
    post({ type: 'end' });
  };
  /** Hands the filled block over and waits until the next one is free; false when stopping. */
  const ship = (): boolean => {
    hand();
    while (Atomics.load(control, slot) !== 0) {
      if (stopping()) return false;
      Atomics.wait(control, slot, 1, data.waitMs);
    }
    return !stopping();
  };

  if (data.mode === 'copy' && fs.fstatSync(data.fd).isFile()) {
    // A regular file (`xva2img - < vm.xva`): read straight into the ring, block after block.
    let bytesRead = 0;
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(data.fd, out, fill, blockBytes - fill, null);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        post({ type: 'error', kind: 'read', detail: e.message, code: e.code, offset: bytesRead });
        return;
      }
      if (n === 0) break;
      bytesRead += n;
      data.progress[0] = bytesRead;
      fill += n;
      if (fill === blockBytes && !ship()) return;
      if (stopping()) return;
    }
    finish();
    return;
  }

  if (data.mode === 'copy') {
    // A pipe or socket: read as it comes (each read lands in the ring, no buffer per read). A
    // block is handed over when full, or when the writer has paused for IDLE_MS with some bytes
    // in it: a producer that stalls must not leave those bytes waiting here.
    const net = require('node:net') as typeof import('node:net');
    let bytesRead = 0;
    let lastRead = 0;
    let idle: NodeJS.Timeout | undefined;
    let socket: import('node:net').Socket | undefined;
    const done = (): void => {
      clearTimeout(idle);
      socket?.destroy();
      port.close();
    };
    const onIdle = (): void => {
      idle = undefined;
      const quiet = Date.now() - lastRead;
      if (fill === 0) return;
      if (quiet < data.idleMs) idle = setTimeout(onIdle, data.idleMs - quiet);
      else if (!ship()) done();
    };
    port.on('message', (m: { type: string }) => {
      if (m.type === 'stop') done();
    });
    // `onread` is taken by the Socket constructor (net.connect passes it the same way), though
    // @types/node declares it only for connect().
    socket = new net.Socket({
      fd: data.fd,
      readable: true,
      writable: false,
      onread: {
        buffer: () => out.subarray(fill),
        callback: (n: number, buf: Uint8Array) => {
          // After onIdle handed a block over, the read already set up lands past its end; its
          // bytes move to where the ring goes on (the main thread only reads what was handed).
          if (buf.byteOffset !== out.byteOffset + fill) out.set(buf.subarray(0, n), fill);
          fill += n;
          bytesRead += n;
          data.progress[0] = bytesRead;
          lastRead = Date.now();
          if (fill === blockBytes) {
            if (!ship()) {
              done();
              return false;
            }
          } else {
            idle ??= setTimeout(onIdle, data.idleMs);
          }
          return true;
        },
      },
    } as import('node:net').SocketConstructorOpts);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      post({ type: 'error', kind: 'read', detail: err.message, code: err.code, offset: bytesRead });
      done();
    });
    socket.on('end', () => {
      finish();
      done();
    });
    return;
  }

  if (data.mode === 'inflate') {
    const zlib = require('node:zlib') as typeof import('node:zlib');
    // The native handle of a Gunzip, driven synchronously as zlib's own *Sync functions do:
    // writeSync(flush, in, inOff, inLen, out, outOff, outLen) leaves [availOut, availIn] in
    // _writeState and reports errors through onerror.
    const gunzip = zlib.createGunzip() as unknown as {
      _handle: {
        writeSync(flush: number, i: Uint8Array, io: number, il: number, o: Uint8Array, oo: number, ol: number): void;
        onerror: (message: string, errno: number) => void;
      };
      _writeState: Uint32Array;
    };
    const handle = gunzip._handle;
    const state = gunzip._writeState;
    let zlibError: string | undefined;
    handle.onerror = (message) => {
      zlibError = message;
    };
    const input = Buffer.allocUnsafe(data.readSize);
    let bytesRead = 0;
    let inflated = 0; // compressed bytes consumed by inflate
    let eof = false;
    for (;;) {
      let n = 0;
      if (!eof) {
        try {
          n = fs.readSync(data.fd, input, 0, input.length, null);
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          post({ type: 'error', kind: 'read', detail: e.message, code: e.code, offset: bytesRead });
          return;
        }
        bytesRead += n;
        data.progress[0] = bytesRead;
        if (n === 0) eof = true;
      }
      const flush = eof ? zlib.constants.Z_FINISH : zlib.constants.Z_NO_FLUSH;
      let inOff = 0;
      let inLen = n;
      for (;;) {
        handle.writeSync(flush, input, inOff, inLen, out, fill, blockBytes - fill);
        const availOut = state[0];
        const availIn = state[1];
        inflated += inLen - availIn;
        if (zlibError !== undefined) {
          post({ type: 'error', kind: 'gzip', detail: zlibError, offset: inflated });
          return;
        }
        inOff += inLen - availIn;
        inLen = availIn;
        fill = blockBytes - availOut;
        // A full block: ship it and go on with the same input. Otherwise inflate took all it
        // could (the input, or the stream ended and the rest is padding zlib ignores).
        if (availOut !== 0) break;
        if (!ship()) return;
      }
      if (eof) break;
      if (stopping()) return;
    }
    finish();
    return;
  }

  // A child reads the file from its stdin and writes to a socket that this thread reads.
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  const net = require('node:net') as typeof import('node:net');
  type Socket = import('node:net').Socket;
  type Readable = import('node:stream').Readable;
  const z = data.child!;
  let stderr = '';
  let failed = false;
  let child: import('node:child_process').ChildProcess | undefined;
  let reader: Readable | undefined;
  let listener: import('node:net').Server | undefined;
  let outputEnded = false;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  const stop = (): void => {
    failed = true;
    child?.kill('SIGTERM');
    reader?.destroy();
    listener?.close();
    port.close();
  };
  port.on('message', (m: { type: string }) => {
    if (m.type === 'stop') stop();
  });
  /**
   * The end: all output read and the child gone. The last block and the exit status go to the
   * main thread, which judges the status as the main-thread decoder does (zstdExitProblem).
   */
  const settle = (): void => {
    if (failed || !outputEnded || !exit) return;
    hand();
    post({ type: 'exit', code: exit.code, signal: exit.signal, stderr });
    port.close();
  };
  const run = (stdout: 'pipe' | Socket): void => {
    const c = spawn(z.path, z.args, { stdio: [data.fd, stdout, 'pipe'] });
    child = c;
    c.stderr!.setEncoding('utf8');
    c.stderr!.on('data', (text: string) => {
      if (stderr.length < z.stderrLimit) stderr += text;
    });
    c.on('error', (err) => {
      failed = true;
      reader?.destroy();
      post({ type: 'error', kind: 'spawn', detail: err.message, offset: 0 });
      port.close();
    });
    c.on('close', (code, signal) => {
      exit = { code, signal };
      settle();
    });
  };
  const onOutputEnd = (): void => {
    outputEnded = true;
    settle();
  };

  /**
   * Fallback transport: the child's stdout pipe, each 64 KiB read a new buffer, copied into the
   * ring.
   */
  const viaStdoutPipe = (): void => {
    run('pipe');
    const stdout = child!.stdout!;
    reader = stdout;
    stdout.on('data', (chunk: Buffer) => {
      let off = 0;
      while (off < chunk.length && !failed) {
        const n = Math.min(chunk.length - off, blockBytes - fill);
        out.set(chunk.subarray(off, off + n), fill);
        off += n;
        fill += n;
        if (fill === blockBytes && !ship()) stop();
      }
    });
    stdout.on('error', () => {}); // the exit status explains
    stdout.on('end', onOutputEnd);
  };

  /**
   * Preferred transport (Linux): a connected socket pair made through a listening socket in the
   * abstract namespace (no file is created), the child writing into one end, this thread
   * reading the other with `onread` straight into the ring: no buffer per read, no copy, and
   * reads of whatever the socket holds (~128 KiB) instead of 64 KiB. Anyone on the machine can
   * connect to an abstract socket, so the connection is only accepted once it has sent a
   * 128-bit secret: nobody else's connection is given to the child.
   */
  const viaSocketPair = (): void => {
    const crypto = require('node:crypto') as typeof import('node:crypto');
    const name = `\0xva2img-${process.pid}-${crypto.randomBytes(12).toString('hex')}`;
    const secret = crypto.randomBytes(16);
    const server = net.createServer({ pauseOnConnect: true });
    listener = server;
    let settled = false;
    const fallBack = (): void => {
      if (settled) return;
      settled = true;
      server.close();
      reader?.destroy();
      reader = undefined;
      viaStdoutPipe();
    };
    server.on('error', fallBack);
    server.on('connection', (peer: Socket) => {
      let got = Buffer.alloc(0);
      peer.on('error', () => {});
      peer.on('data', (b: Buffer) => {
        got = Buffer.concat([got, b]);
        if (got.length < secret.length) return;
        if (settled || !got.subarray(0, secret.length).equals(secret) || got.length !== secret.length) return void peer.destroy();
        settled = true;
        server.close();
        peer.pause();
        run(peer); // the child gets its own copy of the descriptor ...
        peer.destroy(); // ... and ours goes, so that the child's exit ends the stream
      });
      peer.resume();
    });
    server.listen(name, () => {
      const socket = net.connect({
        path: name,
        onread: {
          buffer: () => out.subarray(fill),
          callback: (n: number) => {
            fill += n;
            if (fill === blockBytes && !ship()) {
              stop();
              return false;
            }
            return true;
          },
        },
      });
      reader = socket;
      socket.on('error', (err) => {
        if (!settled) return fallBack();
        if (failed) return;
        failed = true;
        child?.kill('SIGTERM');
        post({ type: 'error', kind: 'child', detail: `reading the decoder's output: ${err.message}`, offset: 0 });
        port.close();
      });
      socket.on('end', onOutputEnd);
      socket.write(secret);
    });
  };

  if (z.transport === 'socket-pair') viaSocketPair();
  else viaStdoutPipe();
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
        transport: o.transport ?? (process.platform === 'linux' ? 'socket-pair' : 'stdout-pipe'),
      },
    };
    // Required here, not at the top: plain-file conversions never start a thread (start-up time).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Worker: WorkerThread } = require('node:worker_threads') as typeof import('node:worker_threads');
    this.#worker = new WorkerThread(`(${decoderThreadMain.toString()})()`, { eval: true, workerData });
    this.#worker.on('message', (m: ThreadMessage) => this.#onMessage(m));
    this.#worker.on('error', (err) => this.#fail(new InputError('BAD_COMPRESSION', `decoder thread failed: ${errorText(err)}`, { input: o.input }, { cause: err })));
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()));
    this.#exited.then(() => {
      if (!this.#ended && !this.#failure && !this.#closed) this.#fail(new InputError('BAD_COMPRESSION', 'decoder thread stopped early', { input: o.input }));
    });
  }

  /** Raw (compressed) bytes consumed so far. */
  rawBytesRead(): number {
    return this.#o.rawBytesRead?.() ?? this.#progress[0];
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
