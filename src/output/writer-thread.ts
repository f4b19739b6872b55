/**
 * Image writes on a thread of their own: synchronous page-cache writes in small pieces.
 *
 * Why: page-cache writes go out in pieces of at most PAGE_CACHE_PIECE_BYTES (write-policy.ts),
 * ~15 000 of them for a 3.8 GB image. Through libuv's thread pool every piece is a round trip:
 * a request queued and a pool thread woken, a completion posted back and the main thread woken
 * to start the next piece. On the VMs we measure each wake-up costs tens of microseconds of the
 * main thread, which also parses and hashes every chunk. Here one thread receives a batch
 * (typically 4 MiB, one message), writes it piece by piece with pwrite(2), and answers with one
 * message: two wake-ups per batch instead of two per piece, and the thread pool stays free for
 * reads and fdatasync.
 *
 * The thread writes straight from the caller's memory, which is therefore shared: the pieces
 * must lie in SharedArrayBuffers (the chunk buffer pool and the decoder thread's ring are cut
 * from shared WebAssembly memories, see io/aligned-buffer.ts). Other buffers are written by the
 * caller some other way (FileTarget uses the thread pool).
 *
 * One thread serves the whole process (every file being written), started on first use. It is
 * referenced only while writes are in flight, so it never keeps the process alive by itself.
 * The file descriptor is the caller's: it must stay open until the write has completed.
 */
import type { Worker } from 'node:worker_threads';
import { PAGE_CACHE_PIECE_BYTES } from './write-policy';

/** One piece of a write: a range of a SharedArrayBuffer (structured-cloned without a copy). */
interface SharedPiece {
  buffer: SharedArrayBuffer;
  offset: number;
  length: number;
}

interface WriteRequest {
  id: number;
  fd: number;
  position: number;
  pieces: SharedPiece[];
  pieceBytes: number;
}

interface WriteReply {
  id: number;
  error?: { message: string; code?: string; errno?: number; syscall?: string };
}

/**
 * The thread's code. It runs from source text (`eval` worker), so that the same code serves the
 * compiled package and the TypeScript tests: it must not use anything from this module's scope.
 */
function writerThreadMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { parentPort } = require('node:worker_threads') as typeof import('node:worker_threads');
  const fs = require('node:fs') as typeof import('node:fs');
  const port = parentPort!;
  port.on('message', (m: WriteRequest) => {
    let at = m.position;
    try {
      for (const p of m.pieces) {
        const view = new Uint8Array(p.buffer, p.offset, p.length);
        let off = 0;
        while (off < view.length) {
          // Each write(2) ends at the next piece boundary of the file (write-policy.ts).
          const room = m.pieceBytes - (at % m.pieceBytes);
          const n = fs.writeSync(m.fd, view, off, Math.min(room, view.length - off), at);
          if (n <= 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
          off += n;
          at += n;
        }
      }
      port.postMessage({ id: m.id } satisfies WriteReply);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      port.postMessage({ id: m.id, error: { message: e.message, code: e.code, errno: e.errno, syscall: e.syscall } } satisfies WriteReply);
    }
  });
}
/* eslint-enable @typescript-eslint/no-require-imports */

/** Whether every piece lies in a SharedArrayBuffer (the writer thread can write it as it is). */
export function allShared(pieces: readonly Uint8Array[]): boolean {
  for (const p of pieces) if (Object.prototype.toString.call(p.buffer) !== '[object SharedArrayBuffer]') return false;
  return true;
}

export class WriterThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: () => void; reject: (err: unknown) => void }>();
  #nextId = 1;
  #dead: Error | undefined;

  constructor() {
    // Required here, not at the top: runs that write no image file never start it (start-up time).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Worker: WorkerThread } = require('node:worker_threads') as typeof import('node:worker_threads');
    this.#worker = new WorkerThread(`(${writerThreadMain.toString()})()`, { eval: true });
    this.#worker.unref();
    this.#worker.on('message', (m: WriteReply) => this.#settle(m));
    this.#worker.on('error', (err) => this.#die(err));
    this.#worker.on('exit', () => this.#die(new Error('the writer thread stopped')));
  }

  /** False once the thread has failed (callers write some other way). */
  get alive(): boolean {
    return this.#dead === undefined;
  }

  /** Writes `pieces` (all in SharedArrayBuffers) back to back from `position` of `fd`. */
  write(fd: number, pieces: readonly Uint8Array[], position: number): Promise<void> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    const request: WriteRequest = {
      id,
      fd,
      position,
      pieces: pieces.map((p) => ({ buffer: p.buffer as SharedArrayBuffer, offset: p.byteOffset, length: p.length })),
      pieceBytes: PAGE_CACHE_PIECE_BYTES,
    };
    return new Promise((resolve, reject) => {
      if (this.#pending.size === 0) this.#worker.ref(); // in flight: keep the process alive
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage(request);
    });
  }

  #settle(m: WriteReply): void {
    const p = this.#pending.get(m.id);
    if (!p) return;
    this.#pending.delete(m.id);
    if (this.#pending.size === 0) this.#worker.unref();
    if (m.error) p.reject(Object.assign(new Error(m.error.message), m.error));
    else p.resolve();
  }

  #die(err: Error): void {
    this.#dead ??= err;
    for (const p of this.#pending.values()) p.reject(this.#dead);
    this.#pending.clear();
  }
}

let thread: WriterThread | null | undefined;

/** The process's writer thread, started on first use; undefined where no thread can be had. */
export function writerThread(): WriterThread | undefined {
  if (thread === undefined) {
    try {
      thread = typeof SharedArrayBuffer === 'function' ? new WriterThread() : null;
    } catch {
      thread = null; // no worker thread to be had (resource limits): the caller writes itself
    }
  }
  if (thread && !thread.alive) thread = null;
  return thread ?? undefined;
}
