/**
 * The deflate engines of the VMDK writer: batches of whole grains compressed, zlib-wrapped
 * (RFC 1950, docs/output-formats.md §2.2), on the calling thread or on libuv's thread pool.
 * Results keep the order of the input grains.
 */
import * as os from 'node:os';
import * as zlib from 'node:zlib';
import { OutputError } from '../../errors';
import { VMDK_GRAIN_SIZE } from './format';

/** Compresses batches of whole grains; results keep the order of the input grains. */
export interface GrainDeflater {
  /** `grains` holds `count` whole grains; it is owned by the deflater from now on. */
  deflate(grains: Buffer, count: number): Promise<DeflatedBatch>;
  close(): Promise<void>;
}

export interface DeflatedBatch {
  /** Concatenated zlib streams. */
  out: Buffer;
  lengths: Uint32Array;
  /** The input buffer, handed back for the stored fallback and for reuse. */
  input: Buffer;
}

/** deflateSync on the calling thread. */
export class InlineDeflater implements GrainDeflater {
  constructor(private readonly level: number) {}

  async deflate(grains: Buffer, count: number): Promise<DeflatedBatch> {
    const parts: Buffer[] = [];
    const lengths = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const part = zlib.deflateSync(grains.subarray(i * VMDK_GRAIN_SIZE, (i + 1) * VMDK_GRAIN_SIZE), { level: this.level });
      parts.push(part);
      lengths[i] = part.length;
    }
    return { out: count === 1 ? parts[0]! : Buffer.concat(parts), lengths, input: grains };
  }

  async close(): Promise<void> {}
}

/** Output buffer per deflate call: a whole grain's zlib stream fits (one call, one chunk). */
const DEFLATE_CHUNK_BYTES = 80 * 1024;

/**
 * Async node:zlib on libuv's thread pool: grains are compressed on all cores at once without a
 * worker isolate per core (each isolate costs ~50 MB of RSS).
 *
 * A small, fixed set of deflate streams is reused (`reset()` after each grain's Z_FINISH) rather
 * than one `zlib.deflate()` call per grain: a one-shot call allocates a fresh deflate state
 * (~270 KiB of native memory) that is only freed when V8 next collects garbage, and V8 lets such
 * external memory grow by ~64 MB before it does — that, not the data, was most of a VMDK
 * conversion's 230 MB peak RSS.
 */
export class ThreadPoolDeflater implements GrainDeflater {
  private readonly idle: zlib.Deflate[] = [];
  private readonly waiting: Array<(d: zlib.Deflate) => void> = [];
  private readonly all: zlib.Deflate[] = [];

  constructor(level: number, streams: number) {
    for (let i = 0; i < streams; i++) {
      const d = zlib.createDeflate({ level, flush: zlib.constants.Z_FINISH, chunkSize: DEFLATE_CHUNK_BYTES });
      // Errors reach the grain being compressed (deflateGrain); this keeps a late one from
      // becoming an unhandled 'error' event.
      d.on('error', () => {});
      this.all.push(d);
      this.idle.push(d);
    }
  }

  async deflate(grains: Buffer, count: number): Promise<DeflatedBatch> {
    const parts = await Promise.all(Array.from({ length: count }, (_, i) => this.deflateGrain(grains.subarray(i * VMDK_GRAIN_SIZE, (i + 1) * VMDK_GRAIN_SIZE))));
    const lengths = new Uint32Array(count);
    for (let i = 0; i < count; i++) lengths[i] = parts[i]!.length;
    return { out: count === 1 ? parts[0]! : Buffer.concat(parts), lengths, input: grains };
  }

  async close(): Promise<void> {
    for (const d of this.all.splice(0)) d.destroy();
  }

  private async deflateGrain(grain: Buffer): Promise<Buffer> {
    const d = this.idle.pop() ?? (await new Promise<zlib.Deflate>((resolve) => this.waiting.push(resolve)));
    try {
      return await new Promise<Buffer>((resolve, reject) => {
        const parts: Buffer[] = [];
        const onData = (chunk: Buffer): void => void parts.push(chunk);
        const onError = (err: unknown): void => {
          d.off('data', onData);
          reject(new OutputError('OUTPUT_IO', `VMDK deflate failed: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
        };
        d.on('data', onData);
        d.once('error', onError);
        // Written with Z_FINISH (the stream's flush mode): one thread-pool job compresses the
        // whole grain, and its callback runs after the output has been pushed.
        d.write(grain, (err) => {
          if (err) return onError(err);
          d.off('data', onData);
          d.off('error', onError);
          // close() ran while this grain was in the pool (the write failed, e.g. ENOSPC, and the
          // writer was torn down): the stream's native handle is gone, and reset() on it is an
          // internal assertion of Node's, not an error. The grain's result has no reader left.
          if (d.destroyed) return reject(new OutputError('OUTPUT_IO', 'VMDK deflate stopped: the writer was closed'));
          d.reset(); // deflateReset: the next grain starts a new zlib stream
          resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
        });
      });
    } finally {
      if (!d.destroyed) {
        const next = this.waiting.shift();
        if (next) next(d);
        else this.idle.push(d);
      }
    }
  }
}

const DEFAULT_DEFLATE_STREAMS = 4;

/** Deflate streams when the writer's `workers` is not given: 4 on a multi-core machine, else 0 (inline). */
export function defaultDeflateStreams(): number {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  // Four streams even on two cores: while one stream's result waits for the main thread, the
  // others keep the pool's threads busy (4 streams: 9.3 s, 2 streams: 12.7 s for 1 GiB).
  return cores > 1 ? DEFAULT_DEFLATE_STREAMS : 0;
}
