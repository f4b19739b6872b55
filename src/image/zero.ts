/**
 * All-zero detection without copying: compares against a shared zero buffer with
 * Buffer.equals (a native memcmp), which is far faster than a JS loop.
 */
const ZERO_BYTES = Buffer.alloc(4 * 1024 * 1024);

/** A read-only view of `length` zero bytes (length <= 4 MiB; larger lengths allocate). */
export function zeros(length: number): Buffer {
  return length <= ZERO_BYTES.length ? ZERO_BYTES.subarray(0, length) : Buffer.alloc(length);
}

export function isAllZero(data: Uint8Array): boolean {
  let off = 0;
  while (off < data.length) {
    const n = Math.min(ZERO_BYTES.length, data.length - off);
    const part = data.subarray(off, off + n);
    if (!ZERO_BYTES.subarray(0, n).equals(part)) return false;
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
  if (isAllZero(data)) return;
  let runStart = -1;
  for (let off = 0; off < data.length; off += blockSize) {
    const end = Math.min(off + blockSize, data.length);
    const zero = isAllZero(data.subarray(off, end));
    if (!zero && runStart < 0) runStart = off;
    if (zero && runStart >= 0) {
      onData(runStart, off);
      runStart = -1;
    }
  }
  if (runStart >= 0) onData(runStart, data.length);
}
