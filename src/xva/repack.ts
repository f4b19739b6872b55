/**
 * The bridge between the XVA reader (push: `DiskImageWriter.write(offset, data)`, ascending,
 * gaps = zeros) and the XVA writer (pull: `DiskReader.read(offset, length)`, ascending,
 * contiguous; a sequential DiskReader, io/disk.ts): one `DiskPipe` per disk, a small bounded
 * queue.
 *
 *   reader ──write(o, d)──▶ [ queued copies, ≤ highWater bytes ] ──read(o, n)──▶ writer
 *
 * Backpressure both ways: `read` waits until the reader has passed the end of the requested
 * range (or finished the disk: the rest is holes); `write` waits while more than `highWater`
 * bytes are queued and the writer is not starved. The reader reuses its buffer, so `write`
 * copies. Memory per disk is bounded by `highWater` plus one reader entry (≤ 1 MiB for XAPI).
 * `fail(err)` wakes both sides with the error (the other side of a repack failed).
 */
import { wholeDisk, type DiskExtent, type DiskImageWriter, type DiskReader, type ImageWriteResult } from '../io/disk';
import { zeros } from '../io/zero';

/** Default bytes queued per disk before the reader waits. */
export const DEFAULT_PIPE_HIGH_WATER = 4 * 1024 * 1024;

interface Segment {
  offset: number;
  data: Buffer;
}

export class DiskPipe implements DiskReader, DiskImageWriter {
  /** The disk's bytes as they are; read front to back only. */
  readonly format = 'raw' as const;
  readonly sequential = true;
  private readonly segments: Segment[] = [];
  private queued = 0;
  /** Every byte below this is known: data queued (or consumed) or a hole. */
  private known = 0;
  private writeCursor = 0;
  private readCursor = 0;
  private finished = false;
  private failure: unknown;
  private readWanted = -1;
  private waiters: Array<() => void> = [];
  private dataBytes = 0;
  private peak = 0;

  constructor(
    readonly ref: string,
    readonly virtualSize: number,
    private readonly highWater = DEFAULT_PIPE_HIGH_WATER,
  ) {}

  get name(): string {
    return `disk ${this.ref}`;
  }

  /** Peak bytes queued (tests assert the bound); read-only to everyone else. */
  get peakQueued(): number {
    return this.peak;
  }

  get isFinished(): boolean {
    return this.finished;
  }

  /** Whether the reader has delivered anything (or finished) for this disk. */
  get started(): boolean {
    return this.finished || this.known > 0;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async waitUntil(cond: () => boolean): Promise<void> {
    while (!cond()) {
      if (this.failure !== undefined) throw this.failure;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.failure !== undefined) throw this.failure;
  }

  /** Stops both sides: pending and later calls reject with `err`. */
  fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = err ?? new Error('repack aborted');
    this.segments.length = 0;
    this.queued = 0;
    this.wake();
  }

  // --- reader side (DiskImageWriter) -------------------------------------------------------

  async write(offset: number, data: Buffer): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (this.finished) throw new Error(`disk ${this.ref}: write after finish`);
    if (offset < this.writeCursor) throw new RangeError(`disk ${this.ref}: write at ${offset} before ${this.writeCursor}`);
    const end = Math.min(offset + data.length, this.virtualSize);
    if (end <= offset) return;
    // The reader reuses `data` once we return: keep a copy.
    this.segments.push({ offset, data: Buffer.from(data.subarray(0, end - offset)) });
    this.queued += end - offset;
    this.peak = Math.max(this.peak, this.queued);
    this.dataBytes += end - offset;
    this.writeCursor = end;
    this.known = end;
    this.wake();
    await this.waitUntil(() => this.queued <= this.highWater || this.readWanted > this.known);
  }

  async finish(): Promise<ImageWriteResult> {
    if (this.failure !== undefined) throw this.failure;
    this.finished = true;
    this.known = this.virtualSize;
    this.wake();
    return { bytesWritten: this.dataBytes, zeroBytesSkipped: 0, imageSize: this.virtualSize };
  }

  // --- writer side (DiskReader) ------------------------------------------------------------

  /** Which bytes are data is known only as they arrive: the whole disk. */
  allocatedExtents(start?: number, end?: number): AsyncGenerator<DiskExtent> {
    return wholeDisk(this.virtualSize, start, end);
  }

  async readInto(buf: Buffer, offset: number): Promise<void> {
    (await this.read(offset, buf.length)).copy(buf);
  }

  /** Nothing to release: the reader side ends the pipe (finish, fail). */
  async close(): Promise<void> {}

  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new RangeError(`disk ${this.ref}: read(${offset}, ${length}) outside 0..${this.virtualSize}`);
    }
    if (offset < this.readCursor) throw new RangeError(`disk ${this.ref}: read at ${offset} before ${this.readCursor}`);
    const end = offset + length;
    this.readWanted = end;
    this.wake(); // a reader blocked on highWater may now proceed
    try {
      await this.waitUntil(() => this.known >= end);
    } finally {
      this.readWanted = -1;
    }
    this.readCursor = end;
    // Drop segments that end before this read (only possible if a read skipped ahead).
    let out: Buffer | undefined;
    while (this.segments.length > 0) {
      const s = this.segments[0]!;
      const sEnd = s.offset + s.data.length;
      if (s.offset >= end) break;
      const from = Math.max(s.offset, offset);
      const to = Math.min(sEnd, end);
      if (to > from) {
        if (from === offset && to === end && out === undefined && s.offset === offset && sEnd === end) {
          out = s.data; // exact match: hand over the copy itself
        } else {
          out ??= Buffer.alloc(length);
          s.data.copy(out, from - offset, from - s.offset, to - s.offset);
        }
      }
      if (sEnd <= end) {
        this.segments.shift();
        this.queued -= s.data.length;
      } else {
        // Keep the rest for the next read; account only for what is left.
        const consumed = end - s.offset;
        this.segments[0] = { offset: end, data: s.data.subarray(consumed) };
        this.queued -= consumed;
        break;
      }
    }
    this.wake();
    // No data in the range: a hole. zeros() is a shared read-only view, never written to.
    return out ?? zeros(length);
  }
}
