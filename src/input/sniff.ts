/**
 * Compression detection by magic bytes, never by file name (stdin and URLs have none).
 * See docs/xva-format.md §6: XAPI writes gzip (`1F 8B`) or zstd (`28 B5 2F FD`) over the whole
 * tar stream; anything else is treated as plain tar and left for the tar layer to judge.
 * A zstd stream may also begin with a skippable frame (`5? 2A 4D 18`; pzstd and other tools put
 * one first): that magic alone decides, whatever follows it (docs/design/zstd-codecs.md).
 */
import { InputError } from '../errors';
import type { Compression } from './types';
import type { RawPump } from './raw-pump';

/** gzip member header: ID1 ID2 (RFC 1952 §2.3.1). */
export const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
/** zstd frame magic 0xFD2FB528, little-endian (RFC 8878 §3.1.1). */
export const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
/**
 * zstd skippable frame magic 0x184D2A50 to 0x184D2A5F, little-endian (RFC 8878 §3.1.2): the low
 * nibble of the first byte is free, the other bytes are fixed.
 */
export const ZSTD_SKIPPABLE_MAGIC = Buffer.from([0x50, 0x2a, 0x4d, 0x18]);
/** Bytes needed to decide. */
export const SNIFF_BYTES = 4;

/**
 * Decides the compression from the first bytes of the raw stream. A skippable frame's magic is
 * enough for zstd: the frame may be larger than any sniff window (its size field is 32 bits), so
 * the zstd frame after it is not looked for; the decoders pass over it and judge the rest.
 */
export function detectCompression(head: Uint8Array): Compression {
  if (startsWith(head, ZSTD_MAGIC) || isSkippableMagic(head)) return 'zstd';
  if (startsWith(head, GZIP_MAGIC)) return 'gzip';
  return 'none';
}

/**
 * Peeks at the first bytes of the source (they stay queued for the decoder) and detects the
 * compression. An empty source is an error.
 */
export async function sniff(pump: RawPump, input: string): Promise<Compression> {
  const head = await pump.peek(SNIFF_BYTES);
  if (head.length === 0) throw emptyInput(input);
  return detectCompression(head);
}

/** The error for an input with no bytes at all (a file opened by path peeks at it itself). */
export function emptyInput(input: string): InputError {
  return new InputError('INPUT_UNREADABLE', 'input is empty (0 bytes)', { input });
}

/** True if `bytes` starts with a zstd skippable frame magic (any of the 16). */
export function isSkippableMagic(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 4 &&
    (bytes[0]! & 0xf0) === ZSTD_SKIPPABLE_MAGIC[0] &&
    bytes[1] === ZSTD_SKIPPABLE_MAGIC[1] &&
    bytes[2] === ZSTD_SKIPPABLE_MAGIC[2] &&
    bytes[3] === ZSTD_SKIPPABLE_MAGIC[3]
  );
}

function startsWith(bytes: Uint8Array, magic: Uint8Array): boolean {
  if (bytes.length < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (bytes[i] !== magic[i]) return false;
  return true;
}
