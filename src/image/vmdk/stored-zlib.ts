/**
 * The "stored" zlib encoding of a grain (deflate stored blocks, RFC 1950/1951), whose size does
 * not depend on the data: what makes a VMDK's size predictable (docs/output-formats.md §2.4).
 * Written byte by byte here: the layout, and so the size, is the one §2.4 fixes, not a zlib library's.
 */
import { VMDK_GRAIN_MARKER_BYTES, VMDK_GRAIN_SIZE, VMDK_SECTOR_SIZE } from './format';

/** zlib stream framing (RFC 1950/1951) used for the "stored" grain encoding (§2.4). */
const ZLIB_HEADER_BYTES = 2;
const ZLIB_ADLER_BYTES = 4;
const DEFLATE_STORED_BLOCK_HEADER_BYTES = 5;
const DEFLATE_STORED_BLOCK_MAX = 65535;
/** CMF 0x78 (deflate, 32 KiB window) + FLG 0x01 (level "fastest", FCHECK so that 0x7801 % 31 == 0). */
const ZLIB_HEADER_CMF = 0x78;
const ZLIB_HEADER_FLG_STORED = 0x01;
const ADLER_MOD = 65521;
/** Largest byte count whose Adler-32 sums cannot overflow 2^53 before reduction (zlib's NMAX is 5552 for u32). */
const ADLER_NMAX = 5552;
/** Adler-32 = (b << 16) | a. */
const ADLER_B_FACTOR = 0x10000;

/** zlib bytes of one grain in stored (level 0) encoding: 2 + 2×5 + 65536 + 4 = 65552 (§2.4). */
export const VMDK_STORED_GRAIN_ZLIB_BYTES =
  ZLIB_HEADER_BYTES + Math.ceil(VMDK_GRAIN_SIZE / DEFLATE_STORED_BLOCK_MAX) * DEFLATE_STORED_BLOCK_HEADER_BYTES + VMDK_GRAIN_SIZE + ZLIB_ADLER_BYTES;
/** Sectors of a grain marker + stored grain: ceil(65564 / 512) = 129. Also the per-grain bound. */
export const VMDK_MAX_GRAIN_SECTORS = Math.ceil((VMDK_GRAIN_MARKER_BYTES + VMDK_STORED_GRAIN_ZLIB_BYTES) / VMDK_SECTOR_SIZE);

export function adler32(data: Uint8Array): number {
  let a = 1;
  let b = 0;
  for (let i = 0; i < data.length; ) {
    const end = Math.min(i + ADLER_NMAX, data.length);
    for (; i < end; i++) {
      a += data[i]!;
      b += a;
    }
    a %= ADLER_MOD;
    b %= ADLER_MOD;
  }
  return (b * ADLER_B_FACTOR + a) >>> 0;
}

/**
 * Writes `grain` (one whole grain) as a zlib stream of stored deflate blocks into `out` at `at`;
 * returns the number of bytes written (always VMDK_STORED_GRAIN_ZLIB_BYTES).
 */
export function writeStoredZlib(grain: Uint8Array, out: Buffer, at: number): number {
  const start = at;
  out[at++] = ZLIB_HEADER_CMF;
  out[at++] = ZLIB_HEADER_FLG_STORED;
  for (let src = 0; src < grain.length; ) {
    const n = Math.min(DEFLATE_STORED_BLOCK_MAX, grain.length - src);
    const final = src + n === grain.length ? 1 : 0;
    out[at++] = final; // BFINAL + BTYPE 00 (stored)
    out.writeUInt16LE(n, at);
    out.writeUInt16LE(~n & 0xffff, at + 2);
    at += 4;
    out.set(grain.subarray(src, src + n), at);
    at += n;
    src += n;
  }
  out.writeUInt32BE(adler32(grain), at);
  at += ZLIB_ADLER_BYTES;
  return at - start;
}
