/**
 * DiskReaders that are not image files, for the XVA writer (writer.ts) and its callers: a disk
 * held in memory (fixtures, samples) and a disk arriving as a byte stream. Image files are read
 * by the image readers (src/image/: raw, qcow2, VMDK), an XVA being repacked by the repack pipe
 * (repack.ts). Both sources here report the whole disk as allocated (io/disk.ts, wholeDisk); the
 * writer finds the all-zero chunks by looking at them.
 */
import { wholeDisk, type DiskExtent, type DiskReader } from '../io/disk';

function checkRead(name: string, offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new RangeError(`${name}: read(${offset}, ${length}) outside 0..${size}`);
  }
}

/**
 * A disk held in memory. `virtualSize` may exceed the buffer (the rest reads as zeros). `read`
 * returns views of `data` where it can: the caller must not write into them.
 */
export function bufferSource(data: Uint8Array, virtualSize = data.length, name = 'disk source'): DiskReader {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const readInto = async (out: Buffer, offset: number): Promise<void> => {
    checkRead(name, offset, out.length, virtualSize);
    const n = Math.max(0, Math.min(out.length, buf.length - offset));
    if (n > 0) buf.copy(out, 0, offset, offset + n);
    out.fill(0, n);
  };
  return {
    name,
    format: 'raw',
    virtualSize,
    readInto,
    async read(offset, length) {
      checkRead(name, offset, length, virtualSize);
      if (offset + length <= buf.length) return buf.subarray(offset, offset + length);
      const out = Buffer.alloc(length);
      await readInto(out, offset);
      return out;
    },
    allocatedExtents: (start?: number, end?: number): AsyncGenerator<DiskExtent> => wholeDisk(virtualSize, start, end),
    async close() {},
  };
}

/**
 * A disk arriving as a byte stream (stdin, a decompressor, another reader): a sequential
 * DiskReader. Reads must ascend; skipped ranges are consumed and discarded; a stream that ends
 * early reads as zeros. `close` ends the stream's iteration.
 */
export function streamSource(stream: AsyncIterable<Uint8Array>, virtualSize: number, name = 'stream source'): DiskReader {
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

  const readInto = async (out: Buffer, offset: number): Promise<void> => {
    checkRead(name, offset, out.length, virtualSize);
    if (offset < position) throw new RangeError(`${name}: cannot read backwards (offset ${offset}, already at ${position})`);
    await take(offset - position);
    const got = await take(out.length, out);
    out.fill(0, got);
  };
  return {
    name,
    format: 'raw',
    virtualSize,
    sequential: true,
    readInto,
    async read(offset, length) {
      const out = Buffer.alloc(length);
      await readInto(out, offset);
      return out;
    },
    allocatedExtents: (start?: number, end?: number): AsyncGenerator<DiskExtent> => wholeDisk(virtualSize, start, end),
    async close() {
      await it.return?.();
    },
  };
}
