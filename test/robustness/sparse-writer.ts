import type { DiskImageWriter, ImageWriteResult } from '../../src/io/disk';

/**
 * A DiskImageWriter for hostile inputs: keeps only the bytes written (a mutated ova.xml can
 * declare a 2^52-byte disk, so no up-front allocation), bounds the total, and checks the
 * writer contract (ascending non-overlapping writes inside the virtual size, finish once).
 */
export class SparseWriter implements DiskImageWriter {
  readonly pieces: Array<{ offset: number; data: Buffer }> = [];
  private end = 0;
  private total = 0;
  finished = 0;
  contractErrors: string[] = [];

  constructor(readonly virtualSize: number, private readonly maxBytes = 64 * 1024 * 1024) {}

  async write(offset: number, data: Buffer): Promise<void> {
    if (this.finished) this.contractErrors.push('write after finish');
    if (!Number.isSafeInteger(offset) || offset < this.end) this.contractErrors.push(`write at ${offset} before ${this.end}`);
    if (offset + data.length > this.virtualSize) this.contractErrors.push(`write past the end: ${offset}+${data.length} > ${this.virtualSize}`);
    this.total += data.length;
    if (this.total > this.maxBytes) throw new Error(`SparseWriter: more than ${this.maxBytes} bytes written`);
    this.pieces.push({ offset, data: Buffer.from(data) });
    this.end = offset + data.length;
  }

  async finish(): Promise<ImageWriteResult> {
    this.finished++;
    return { bytesWritten: this.total, zeroBytesSkipped: 0, imageSize: this.virtualSize };
  }

  /** The image as a buffer (only for sizes a test can afford). */
  image(): Buffer {
    const out = Buffer.alloc(this.virtualSize);
    for (const p of this.pieces) p.data.copy(out, p.offset);
    return out;
  }

  /** Compares with `expected` without materializing huge sizes: equal iff same size and bytes. */
  equals(expected: Buffer): boolean {
    if (this.virtualSize !== expected.length) return false;
    return this.image().equals(expected);
  }
}
