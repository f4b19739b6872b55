/**
 * All-zero detection without copying: compares against a shared zero buffer with
 * Buffer.compare (a native memcmp), which is far faster than a JS loop.
 */
const ZERO_BYTES = Buffer.alloc(4 * 1024 * 1024);

/** A read-only view of `length` zero bytes (length <= 4 MiB; larger lengths allocate). */
export function zeros(length: number): Buffer {
  return length <= ZERO_BYTES.length ? ZERO_BYTES.subarray(0, length) : Buffer.alloc(length);
}

let sharedZeroBytes: Buffer | undefined;

/**
 * A read-only view of `length` zero bytes (at most 4 MiB) in shared memory, so the writer
 * thread can write it (output/writer-thread.ts) like chunk data: zeros written over holes on a
 * block device go out in the same large batches as the data around them.
 */
export function sharedZeros(length: number): Buffer {
  if (length > ZERO_BYTES.length) throw new RangeError(`sharedZeros: ${length} bytes is more than ${ZERO_BYTES.length}`);
  sharedZeroBytes ??= typeof SharedArrayBuffer === 'function' ? Buffer.from(new SharedArrayBuffer(ZERO_BYTES.length)) : ZERO_BYTES;
  return sharedZeroBytes.subarray(0, length);
}

export function isAllZero(data: Uint8Array): boolean {
  return isZeroRange(data, 0, data.length);
}

/**
 * Whether data[start, end) is all zeros, without allocating a view. The first and last bytes
 * are looked at first: a block of real data almost never begins and ends with zeros, so most
 * non-zero blocks are told apart in JS without a native call; the rest are compared with
 * Buffer.compare against the shared zero buffer (a memcmp).
 */
export function isZeroRange(data: Uint8Array, start: number, end: number): boolean {
  if (start >= end) return true;
  if (data[start] !== 0 || data[end - 1] !== 0) return false;
  for (let off = start; off < end; ) {
    const n = Math.min(ZERO_BYTES.length, end - off);
    if (ZERO_BYTES.compare(data, off, off + n, 0, n) !== 0) return false;
    off += n;
  }
  return true;
}

/**
 * Calls `onData(start, end)` for each maximal run of non-zero blocks of `blockSize` bytes in
 * `data` (the last block may be short). Zero blocks are skipped; adjacent non-zero blocks are
 * merged so that callers can issue one write per run.
 */
export function forEachNonZeroRun(data: Uint8Array, blockSize: number, onData: (start: number, end: number) => void): void {
  let runStart = -1;
  for (let off = 0; off < data.length; off += blockSize) {
    const end = Math.min(off + blockSize, data.length);
    const zero = isZeroRange(data, off, end);
    if (!zero && runStart < 0) runStart = off;
    if (zero && runStart >= 0) {
      onData(runStart, off);
      runStart = -1;
    }
  }
  if (runStart >= 0) onData(runStart, data.length);
}
