/**
 * Compression detection by magic bytes, never by file name (stdin and URLs have none).
 * See docs/xva-format.md §6: XAPI writes gzip (`1F 8B`) or zstd (`28 B5 2F FD`) over the whole
 * tar stream; anything else is treated as plain tar and left for the tar layer to judge.
 */
import { InputError } from '../errors';
import type { Compression } from './types';
import type { RawPump } from './raw-pump';

/** gzip member header: ID1 ID2 (RFC 1952 §2.3.1). */
export const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
/** zstd frame magic 0xFD2FB528, little-endian (RFC 8878 §3.1.1). */
export const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
/** Bytes needed to decide. */
export const SNIFF_BYTES = 4;

/** Decides the compression from the first bytes of the raw stream. */
export function detectCompression(head: Uint8Array): Compression {
  if (startsWith(head, ZSTD_MAGIC)) return 'zstd';
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

function startsWith(bytes: Uint8Array, magic: Uint8Array): boolean {
  if (bytes.length < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (bytes[i] !== magic[i]) return false;
  return true;
}
