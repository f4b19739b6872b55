/**
 * ChunkBufferPool: reusable, page-aligned chunk buffers whose reuse waits for every holder.
 *
 * A chunk's bytes are read into a pooled buffer, hashed, then handed to an image writer that
 * may keep writing from it after its write() returned (see BufferLease in image/types.ts). The
 * buffer goes back to the pool only when the taker released it and every hold is released, so
 * nothing is copied to outlive the call and nothing is overwritten while the kernel still reads
 * it. The pool grows to what is in flight (read-ahead + queued writes), bounded by the writers'
 * queue limits, and never shrinks during a conversion.
 *
 * Returned buffers go to one idle list per buffer size that every pool of the process shares,
 * not to the pool that made them. A pool lives for one conversion, and its buffers are cut from
 * WebAssembly memories that only the garbage collector frees, which V8 does late for memory it
 * does not see growing its heap: six conversions in a row in one process (a batch, or a library
 * caller) peaked at 234 MB where one takes 96 MB. Shared, the next conversion (or a concurrent
 * one) takes the buffers the last one gave back. At most MAX_IDLE_BYTES stay idle; buffers
 * returned beyond that are dropped for the collector (only after `-j` conversions at once).
 */
import type { BufferLease } from './disk';
import { allocAligned } from './aligned-buffer';

export interface PooledBuffer {
  readonly buf: Buffer;
  /** For writers: `hold()` keeps the buffer out of the pool until its release is called. */
  readonly lease: BufferLease;
  /** The taker is done with it (call once). */
  release(): void;
}

/** Idle buffers kept for reuse across pools, in bytes (one conversion has ~30 MiB in flight). */
export const MAX_IDLE_BYTES = 64 * 1024 * 1024;

/** Idle buffers by size, shared by every ChunkBufferPool of the process. */
const idle = new Map<number, Buffer[]>();
let idleBytes = 0;

function takeIdle(size: number): Buffer | undefined {
  const buf = idle.get(size)?.pop();
  if (buf) idleBytes -= size;
  return buf;
}

function giveBack(buf: Buffer): void {
  if (idleBytes + buf.length > MAX_IDLE_BYTES) return; // left to the garbage collector
  let list = idle.get(buf.length);
  if (!list) idle.set(buf.length, (list = []));
  list.push(buf);
  idleBytes += buf.length;
}

/** Bytes of idle pooled buffers held for reuse (for tests). */
export function idlePoolBytes(): number {
  return idleBytes;
}

export class ChunkBufferPool {
  private allocated = 0;

  constructor(readonly bufferSize: number) {}

  /** Buffers this pool had to create, rather than reuse (for tests and benchmarks). */
  get size(): number {
    return this.allocated;
  }

  take(): PooledBuffer {
    let buf = takeIdle(this.bufferSize);
    if (!buf) {
      buf = allocAligned(this.bufferSize);
      this.allocated++;
    }
    const b = buf;
    return lendBuffer(b, () => giveBack(b), 'ChunkBufferPool: hold() on a buffer already returned to the pool');
  }
}

/**
 * `buf` handed to a taker, with a lease for writers: `onReturn` runs once the taker released it
 * and every hold was released (each release function works once). Shared by the pool above and
 * the decoder thread's ring (whose blocks go back to the thread).
 */
export function lendBuffer(buf: Buffer, onReturn: () => void, heldAfterReturn: string): PooledBuffer {
  let refs = 1;
  const drop = (): void => {
    if (--refs === 0) onReturn();
  };
  const once = (): (() => void) => {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      drop();
    };
  };
  return {
    buf,
    lease: {
      hold: () => {
        if (refs === 0) throw new Error(heldAfterReturn);
        refs++;
        return once();
      },
    },
    release: once(),
  };
}
