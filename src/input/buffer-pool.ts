/**
 * ChunkBufferPool: reusable, page-aligned chunk buffers whose reuse waits for every holder.
 *
 * A chunk's bytes are read into a pooled buffer, hashed, then handed to an image writer that
 * may keep writing from it after its write() returned (see BufferLease in image/types.ts). The
 * buffer goes back to the pool only when the taker released it and every hold is released, so
 * nothing is copied to outlive the call and nothing is overwritten while the kernel still reads
 * it. The pool grows to what is in flight (read-ahead + queued writes), bounded by the writers'
 * queue limits, and never shrinks during a conversion.
 */
import type { BufferLease } from '../image/types';
import { allocAligned } from './aligned-buffer';

export interface PooledBuffer {
  readonly buf: Buffer;
  /** For writers: `hold()` keeps the buffer out of the pool until its release is called. */
  readonly lease: BufferLease;
  /** The taker is done with it (call once). */
  release(): void;
}

export class ChunkBufferPool {
  private readonly free: Buffer[] = [];
  private allocated = 0;

  constructor(readonly bufferSize: number) {}

  /** Buffers created so far (for tests and benchmarks). */
  get size(): number {
    return this.allocated;
  }

  take(): PooledBuffer {
    let buf = this.free.pop();
    if (!buf) {
      buf = allocAligned(this.bufferSize);
      this.allocated++;
    }
    const b = buf;
    return lendBuffer(b, () => this.free.push(b), 'ChunkBufferPool: hold() on a buffer already returned to the pool');
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
