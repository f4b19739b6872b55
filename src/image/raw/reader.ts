/**
 * Raw image files (or a slice of one: a raw member of an OVA) as DiskReaders, read by offset.
 *
 * Holes: Node exposes no lseek(SEEK_DATA/SEEK_HOLE) binding, so a sparse raw file cannot be
 * asked where its data is. The whole file is reported as one allocated extent and holes are
 * found by zero detection while streaming (`streamDiskImage` skips all-zero 64 KiB blocks).
 * Reading a sparse file's holes is cheap for the kernel, but it is still a full read.
 */
import type { FileHandle } from 'node:fs/promises';
import { ImageFormatError } from '../../errors';
import { openImageFile } from '../disk-reader';
import { wholeDisk, type DiskExtent, type DiskReader } from '../../io/disk';

export class RawReader implements DiskReader {
  readonly format = 'raw' as const;
  private closed = false;

  private constructor(
    /** The path, or the slice's label. */
    readonly name: string,
    private readonly fh: FileHandle,
    readonly virtualSize: number,
    /** Byte offset of the image inside the file (an OVA member); 0 for a plain image file. */
    private readonly base: number,
  ) {}

  /**
   * With `offset`/`length` the image is a slice of the file (e.g. a raw member inside an OVA);
   * a `length` past the end of the file reads as zeros there (a disk larger than its file).
   */
  static async open(path: string, slice?: { offset: number; length: number; label?: string }): Promise<RawReader> {
    const { handle: fh, stat: st } = await openImageFile(path);
    if (!st.isFile()) {
      await fh.close();
      // Block devices report size 0 through stat and Node has no BLKGETSIZE64 ioctl.
      throw new ImageFormatError('raw input must be a regular file (block devices and pipes are not supported)', { input: path });
    }
    if (slice) return new RawReader(slice.label ?? path, fh, slice.length, slice.offset);
    return new RawReader(path, fh, st.size, 0);
  }

  async readInto(buf: Buffer, offset: number): Promise<void> {
    let done = 0;
    const avail = Math.max(0, Math.min(buf.length, this.virtualSize - offset));
    while (done < avail) {
      const { bytesRead } = await this.fh.read(buf, done, avail - done, this.base + offset + done);
      if (bytesRead === 0) break; // file shrank underneath us: the rest reads as zeros
      done += bytesRead;
    }
    if (done < buf.length) buf.fill(0, done);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(buf, offset);
    return buf;
  }

  allocatedExtents(start = 0, end = this.virtualSize): AsyncGenerator<DiskExtent> {
    return wholeDisk(this.virtualSize, start, end);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}
