/**
 * Small positional reads done synchronously while they come from the page cache.
 *
 * Why: an asynchronous fs.read goes through libuv's thread pool, a round trip of two thread
 * wake-ups. For a 4 KiB read that is most of the cost: measured on the 2-vCPU benchmark VM,
 * serving random 4 KiB reads one at a time took ~270-450 µs per read through the thread pool and
 * ~130-350 µs with readSync, against ~180-230 µs for qemu-nbd. A read served from the page cache
 * takes a few microseconds of copying, so doing it on the main thread is cheaper than handing it
 * off. A read that has to wait for the disk is another matter: it would stall every client, and
 * reads in flight could no longer overlap. So a synchronous read that takes longer than a
 * page-cache copy sends the small reads of the next second to the thread pool, after which
 * synchronous reads are tried again.
 */
import * as fs from 'node:fs';
import { pread } from './pread';

export class SyncReadGate {
  private asyncUntil = 0;

  constructor(
    /** Largest read done synchronously; larger copies are worth a worker thread. */
    readonly maxBytes = 64 * 1024,
    /** A synchronous read slower than this did not come from the page cache. */
    readonly slowMs = 0.2,
    /** How long small reads then go to the thread pool. */
    readonly backoffMs = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether a read of `length` bytes should be done synchronously now. */
  allows(length: number): boolean {
    return length <= this.maxBytes && this.now() >= this.asyncUntil;
  }

  /** Tells how long a synchronous read took. */
  record(ms: number): void {
    if (ms > this.slowMs) this.asyncUntil = this.now() + this.backoffMs;
  }

  /** pread(2) as pread() does, synchronously when the gate allows it. */
  async read(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
    if (!this.allows(len)) return pread(fd, buf, off, len, pos);
    const t0 = this.now();
    const n = fs.readSync(fd, buf, off, len, pos);
    this.record(this.now() - t0);
    return n;
  }
}
