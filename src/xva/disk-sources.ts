/**
 * Where the XVA writer gets a disk's bytes (writer.ts): a `DiskByteSource` is read with
 * ascending, non-overlapping offsets, so a buffer, a file read by offset, a byte stream or the
 * repack pipe (repack.ts) can back it.
 */
import { promises as fsp } from 'node:fs';

/**
 * A disk's bytes. The writer calls `read` with strictly ascending, non-overlapping offsets
 * (so a sequential stream can back it). Reads past `virtualSize` must not happen; a source
 * shorter than its virtual size returns zeros for the missing part. The returned Buffer
 * belongs to the caller (it may be queued in a stream after read returns: do not reuse it).
 */
export interface DiskByteSource {
  readonly virtualSize: number;
  read(offset: number, length: number): Promise<Buffer>;
  close?(): Promise<void>;
}

function checkRead(offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new RangeError(`disk source: read(${offset}, ${length}) outside 0..${size}`);
  }
}

/** A disk held in memory. `virtualSize` may exceed the buffer (the rest reads as zeros). */
export function bufferSource(data: Uint8Array, virtualSize = data.length): DiskByteSource {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return {
    virtualSize,
    async read(offset, length) {
      checkRead(offset, length, virtualSize);
      if (offset + length <= buf.length) return buf.subarray(offset, offset + length);
      const out = Buffer.alloc(length);
      if (offset < buf.length) buf.copy(out, 0, offset, buf.length);
      return out;
    },
  };
}

/** A raw image file read by offset; `virtualSize` defaults to the file size. */
export async function rawFileSource(path: string, virtualSize?: number): Promise<DiskByteSource & { close(): Promise<void> }> {
  const fh = await fsp.open(path, 'r');
  const fileSize = (await fh.stat()).size;
  const size = virtualSize ?? fileSize;
  return {
    virtualSize: size,
    async read(offset, length) {
      checkRead(offset, length, size);
      const out = Buffer.alloc(length);
      let done = 0;
      while (done < length && offset + done < fileSize) {
        const { bytesRead } = await fh.read(out, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return out; // bytes past the end of the file stay zero
    },
    close: () => fh.close(),
  };
}

/**
 * A disk arriving as a byte stream (stdin, a decompressor, another reader). Reads must be
 * ascending; skipped ranges are consumed and discarded; a stream that ends early reads as zeros.
 */
export function streamSource(stream: AsyncIterable<Uint8Array>, virtualSize: number): DiskByteSource {
  const it = stream[Symbol.asyncIterator]();
  let pending: Buffer = Buffer.alloc(0);
  let position = 0; // stream offset of pending[0]
  let ended = false;

  async function take(n: number, into?: Buffer, at = 0): Promise<number> {
    let got = 0;
    while (got < n) {
      if (pending.length === 0) {
        if (ended) break;
        const r = await it.next();
        if (r.done) {
          ended = true;
          break;
        }
        pending = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
        continue;
      }
      const k = Math.min(n - got, pending.length);
      if (into) pending.copy(into, at + got, 0, k);
      pending = pending.subarray(k);
      position += k;
      got += k;
    }
    return got;
  }

  return {
    virtualSize,
    async read(offset, length) {
      checkRead(offset, length, virtualSize);
      if (offset < position) throw new RangeError(`stream source: cannot read backwards (offset ${offset}, already at ${position})`);
      await take(offset - position);
      const out = Buffer.alloc(length);
      await take(length, out);
      return out;
    },
    async close() {
      await it.return?.();
    },
  };
}

/** Zero-extends (never truncates) a source to `size` bytes. */
export function extendSource(source: DiskByteSource, size: number): DiskByteSource {
  if (size <= source.virtualSize) return source;
  return {
    virtualSize: size,
    async read(offset, length) {
      checkRead(offset, length, size);
      const inside = Math.max(0, Math.min(offset + length, source.virtualSize) - offset);
      if (inside === length) return source.read(offset, length);
      const out = Buffer.alloc(length);
      if (inside > 0) (await source.read(offset, inside)).copy(out);
      return out;
    },
  };
}
