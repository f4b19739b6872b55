/**
 * Byte destinations for image writers: a regular file (random access) or a stream (sequential).
 */
import * as fs from 'node:fs';
import type { Writable } from 'node:stream';
import type { RandomAccessTarget, SequentialTarget } from './target';
import { outputErrorFrom } from '../errors';
import { wasmMemoryOf } from '../io/aligned-buffer';
import { pageCacheRoom } from './write-policy';
import { allShared, writerThread } from './writer-thread';

/**
 * Direct I/O eligibility. A write goes through the O_DIRECT descriptor only when the file
 * offset and every piece's length are multiples of DIRECT_ALIGN (the largest logical block
 * size of today's disks, 4Kn) and every piece lies in one of our WebAssembly memories (whose
 * base is page-aligned, so the byte offset tells the address's alignment) at a multiple of
 * DIRECT_MEMORY_ALIGN (sector alignment: chunk data sits at 512-byte tar offsets inside
 * page-aligned blocks). Anything else is written through the page cache.
 */
const DIRECT_ALIGN = 4096;
const DIRECT_MEMORY_ALIGN = 512;

function directEligible(chunks: Uint8Array[], position: number): boolean {
  if (position % DIRECT_ALIGN !== 0) return false;
  for (const c of chunks) {
    if (c.length % DIRECT_ALIGN !== 0 || c.byteOffset % DIRECT_MEMORY_ALIGN !== 0 || !wasmMemoryOf(c)) return false;
  }
  return true;
}

/**
 * pwritev of all of `chunks` from `position` (continues after short writes). With `split`
 * (page-cache writes), each call stops at the next piece boundary (see write-policy.ts).
 */
function writevAll(fd: number, chunks: Uint8Array[], position: number, split: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (list: Uint8Array[], at: number): void => {
      if (list.length === 0) return resolve();
      let batch = list;
      if (split) {
        // The longest front of `list` that ends at or before the next boundary.
        let room = pageCacheRoom(at);
        batch = [];
        for (const c of list) {
          if (room === 0) break;
          const piece = c.length <= room ? c : c.subarray(0, room);
          batch.push(piece);
          room -= piece.length;
        }
      }
      fs.writev(fd, batch, at, (err, n) => {
        if (err) return reject(err);
        // Drop the bytes written: whole chunks, then the front of a partly written one.
        let rest = n;
        let i = 0;
        while (i < list.length && rest >= list[i]!.length) rest -= list[i++]!.length;
        const left = list.slice(i);
        if (rest > 0) left[0] = left[0]!.subarray(rest);
        step(left, at + n);
      });
    };
    step(chunks.filter((c) => c.length > 0), position);
  });
}

/**
 * A regular file opened by the caller; errors become OutputErrors naming `label`. How it writes
 * is the write policy's (write-policy.ts, docs/design/write-policy.md):
 *
 * Page cache (the default): pieces of at most PAGE_CACHE_PIECE_BYTES per write(2). Data in
 * shared memory (chunk buffers, the decoder ring) is written by the writer thread
 * (writer-thread.ts), anything else (headers, tables, copies) through libuv's thread pool.
 * Both may be busy at once: writers never write the same bytes twice at once, so their ranges
 * never overlap.
 *
 * Flush-behind: with `flushBehindBytes`, an fdatasync is started (not awaited) each time that
 * many bytes have been written since the last one, one at a time. The kernel then writes the
 * image to disk while the conversion goes on, instead of all at once in the final fsync before
 * the rename — the guarantee is the same (sync() still flushes everything), the wait at the end
 * is shorter.
 *
 * Direct I/O (only when asked): with `directFd` (the same file opened O_DIRECT), aligned writes
 * from our aligned buffers bypass the page cache (see directEligible); the final fsync makes
 * them durable and commits their block allocations. Writes that are not eligible (headers,
 * tables, tails) go through the page cache: they never share a page with a direct write,
 * because a direct write covers whole pages. If the file system turns a direct write down
 * (EINVAL: no O_DIRECT here, or stricter alignment), that write and all later ones go through
 * the page cache.
 */
export class FileTarget implements RandomAccessTarget {
  position = 0;
  /** Writes not yet completed (see settled()). */
  private readonly inFlight = new Set<Promise<unknown>>();
  private unflushed = 0;
  private flushing = false;
  protected flushError: unknown;

  constructor(
    readonly fd: number,
    readonly label: string,
    private readonly flushBehindBytes = 0,
    private directFd?: number,
  ) {}

  /** Whether direct I/O is (still) in use. */
  get direct(): boolean {
    return this.directFd !== undefined;
  }

  /** pwritev through the O_DIRECT descriptor when eligible; true when it was written that way. */
  private async writeDirect(chunks: Uint8Array[], position: number): Promise<boolean> {
    const dfd = this.directFd;
    if (dfd === undefined || !directEligible(chunks, position)) return false;
    try {
      await writevAll(dfd, chunks, position, false);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      this.directFd = undefined; // refused here: the page cache from now on (fd closed by the owner)
      return false;
    }
  }

  /** Through the page cache: by the writer thread when it can take these pieces, else the thread pool. */
  private writePageCache(chunks: Uint8Array[], position: number): Promise<void> {
    const thread = allShared(chunks) ? writerThread() : undefined;
    return thread ? thread.write(this.fd, chunks, position) : writevAll(this.fd, chunks, position, true);
  }

  private flushBehind(bytes: number): void {
    if (this.flushBehindBytes <= 0) return;
    this.unflushed += bytes;
    if (this.unflushed < this.flushBehindBytes || this.flushing) return;
    this.unflushed = 0;
    this.flushing = true;
    fs.fdatasync(this.fd, (err) => {
      this.flushing = false;
      if (err) this.flushError ??= err;
    });
  }

  async write(data: Uint8Array): Promise<void> {
    const at = this.position;
    this.position += data.length;
    await this.pwrite(data, at);
  }

  async pwrite(data: Uint8Array, position: number): Promise<void> {
    await this.pwritev([data], position);
  }

  async writev(chunks: Uint8Array[]): Promise<void> {
    const at = this.position;
    this.position += chunks.reduce((n, c) => n + c.length, 0);
    await this.pwritev(chunks, at);
  }

  async pwritev(chunks: Uint8Array[], position: number): Promise<void> {
    const write = (async () => {
      if (!(await this.writeDirect(chunks, position))) await this.writePageCache(chunks, position);
    })();
    this.inFlight.add(write);
    try {
      await write;
    } catch (err) {
      throw outputErrorFrom(err, this.label);
    } finally {
      this.inFlight.delete(write);
    }
    this.flushBehind(chunks.reduce((n, c) => n + c.length, 0));
  }

  /**
   * Resolves once no write is in flight, whatever their outcome. The owner waits for this
   * before closing the descriptor after a failure elsewhere: a write still queued (on the writer
   * thread or the thread pool) must not find the descriptor's number reused by another file.
   */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  async truncate(length: number): Promise<void> {
    await new Promise<void>((resolve, reject) => fs.ftruncate(this.fd, length, (e) => (e ? reject(outputErrorFrom(e, this.label)) : resolve())));
  }

  async sync(): Promise<void> {
    if (this.flushError !== undefined) throw outputErrorFrom(this.flushError, this.label);
    await new Promise<void>((resolve, reject) => fs.fsync(this.fd, (e) => (e ? reject(outputErrorFrom(e, this.label)) : resolve())));
  }
}

/** A Writable (stdout, a socket, a tar member) written front to back with backpressure. */
export class StreamTarget implements SequentialTarget {
  position = 0;
  private failure: unknown;
  constructor(readonly stream: Writable, readonly label: string) {
    stream.on('error', (err) => {
      this.failure ??= err;
    });
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.failure) throw outputErrorFrom(this.failure, this.label);
    if (data.length === 0) return;
    this.position += data.length;
    // Copy: the caller reuses its buffer once we resolve, but a Writable may still hold it queued.
    const ok = this.stream.write(Buffer.from(data));
    if (!ok) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => { cleanup(); resolve(); };
        const onError = (err: unknown): void => { cleanup(); reject(outputErrorFrom(err, this.label)); };
        const onClose = (): void => { cleanup(); reject(outputErrorFrom(Object.assign(new Error('closed'), { code: 'EPIPE' }), this.label)); };
        const cleanup = (): void => {
          this.stream.off('drain', onDrain);
          this.stream.off('error', onError);
          this.stream.off('close', onClose);
        };
        this.stream.on('drain', onDrain);
        this.stream.on('error', onError);
        this.stream.on('close', onClose);
      });
    }
  }

  /** Ends the stream and waits until everything is flushed. */
  async end(): Promise<void> {
    if (this.failure) throw outputErrorFrom(this.failure, this.label);
    await new Promise<void>((resolve, reject) => {
      this.stream.end(() => resolve());
      this.stream.once('error', (e) => reject(outputErrorFrom(e, this.label)));
    });
  }
}

/**
 * A second descriptor of a file being written, with O_DIRECT (see FileTarget), or undefined where the
 * platform or file system has none (EINVAL on tmpfs, no O_DIRECT constant off Linux).
 */
export function openDirect(path: string): number | undefined {
  const { O_DIRECT, O_WRONLY } = fs.constants as { O_DIRECT?: number; O_WRONLY: number };
  if (!O_DIRECT) return undefined;
  try {
    return fs.openSync(path, O_WRONLY | O_DIRECT);
  } catch {
    return undefined;
  }
}
