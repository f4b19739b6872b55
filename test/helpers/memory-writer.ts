import type { DiskImageWriter, ImageWriteResult } from '../../src/io/disk';

/** Collects a disk in memory, checking the DiskImageWriter contract (ascending, in range). */
export class MemoryWriter implements DiskImageWriter {
  readonly bytes: Buffer;
  private end = 0;
  finished = false;
  constructor(readonly virtualSize: number) {
    this.bytes = Buffer.alloc(virtualSize);
  }
  async write(offset: number, data: Buffer): Promise<void> {
    if (offset < this.end) throw new Error(`write at ${offset} before ${this.end}`);
    if (offset + data.length > this.virtualSize) throw new Error(`write past the end: ${offset}+${data.length} > ${this.virtualSize}`);
    data.copy(this.bytes, offset);
    this.end = offset + data.length;
  }
  async finish(): Promise<ImageWriteResult> {
    this.finished = true;
    return { bytesWritten: this.end, zeroBytesSkipped: 0, imageSize: this.virtualSize };
  }
}
