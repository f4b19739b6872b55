/**
 * Per-chunk checksums of an XVA (xva-format.md §5).
 *
 * Each data chunk `X` is followed by `X.xxhash` (XXH64, seed 0, 16 UPPERCASE hex digits) or
 * `X.checksum` (SHA-1, 40 lowercase hex digits); neither has a trailing newline. We write
 * exactly those bytes and compare leniently when reading (case-insensitive, whitespace-trimmed).
 *
 * A ChunkHasher is created once and reused for every chunk: `digestHex()` returns the digest
 * and resets the state, so the per-chunk cost is one init, not a WASM instantiation.
 */
import type { Hash } from 'node:crypto';
import { createXXHash64, type IHasher } from 'hash-wasm';
import { xxh64InPlace } from './xxh64-in-place';

export type ChecksumKind = 'sha1' | 'xxh64';

export const CHECKSUM_KINDS: readonly ChecksumKind[] = ['xxh64', 'sha1'];

/** Length of the checksum file content for each kind. */
export const CHECKSUM_HEX_LENGTH: Record<ChecksumKind, number> = { xxh64: 16, sha1: 40 };

const SUFFIX: Record<ChecksumKind, string> = { xxh64: '.xxhash', sha1: '.checksum' };

export interface ChunkHasher {
  readonly kind: ChecksumKind;
  /** Adds bytes. `data` must stay unchanged until the next update() or digestHex(). */
  update(data: Uint8Array): void;
  /** The digest in the exact on-disk format; the hasher is reset and ready for the next chunk. */
  digestHex(): string;
  /** Discards any data hashed so far. */
  reset(): void;
}

/** `.xxhash` or `.checksum` (with the dot). */
export function checksumFileSuffix(kind: ChecksumKind): string {
  return SUFFIX[kind];
}

/**
 * The checksum kind of a suffix (`.xxhash`, `xxhash`) or of a whole entry name ending in one
 * (`Ref:3/00000000.checksum`); undefined if it is neither.
 */
export function kindFromSuffix(suffixOrName: string): ChecksumKind | undefined {
  const s = suffixOrName.startsWith('.') || suffixOrName.includes('/') ? suffixOrName : `.${suffixOrName}`;
  if (s.endsWith(SUFFIX.xxh64)) return 'xxh64';
  if (s.endsWith(SUFFIX.sha1)) return 'sha1';
  return undefined;
}

/** Characters trimmed from checksum file content: ASCII whitespace only. */
const ASCII_WHITESPACE = /^[\t\n\v\f\r ]+|[\t\n\v\f\r ]+$/g;

/**
 * Lenient comparison for reading: `expectedFileContent` is the checksum entry's content
 * (string or bytes); case-insensitive, surrounding ASCII whitespace ignored.
 */
export function checksumsEqual(expectedFileContent: string | Uint8Array, computed: string): boolean {
  const text = typeof expectedFileContent === 'string' ? expectedFileContent : Buffer.from(expectedFileContent).toString('latin1');
  return text.replace(ASCII_WHITESPACE, '').toLowerCase() === computed.replace(ASCII_WHITESPACE, '').toLowerCase();
}

class Xxh64Hasher implements ChunkHasher {
  readonly kind = 'xxh64' as const;
  /** The first piece given since the last digest, not hashed yet (see update()). */
  private pending: Uint8Array | undefined;
  /** Bytes given to hash-wasm since the last digest. */
  private streamed = false;

  constructor(private readonly wasm: IHasher) {
    wasm.init();
  }
  update(data: Uint8Array): void {
    if (data.length === 0) return;
    // A chunk given in one piece, in one of our buffers, is hashed where it lies at digest time
    // (xxh64-in-place.ts) instead of being copied into hash-wasm's memory. The reader gives
    // every chunk that way; anything else streams through hash-wasm.
    if (!this.streamed && this.pending === undefined) {
      this.pending = data;
      return;
    }
    this.stream();
    this.wasm.update(data);
  }
  digestHex(): string {
    let value: bigint | undefined;
    if (!this.streamed && this.pending !== undefined) value = xxh64InPlace(this.pending);
    let hex: string;
    if (value !== undefined) {
      hex = value.toString(16).padStart(16, '0');
    } else {
      this.stream();
      hex = this.wasm.digest('hex');
    }
    this.reset();
    // Canonical (big-endian) value; XAPI prints "%016LX".
    return hex.toUpperCase();
  }
  reset(): void {
    if (this.streamed) this.wasm.init();
    this.streamed = false;
    this.pending = undefined;
  }
  /** Switches to hash-wasm, feeding it the piece held back. */
  private stream(): void {
    if (!this.streamed) {
      this.wasm.init();
      this.streamed = true;
    }
    if (this.pending) this.wasm.update(this.pending);
    this.pending = undefined;
  }
}

/** node:crypto's createHash, required when first needed: XXH64 runs never load node:crypto (see cli/main.ts). */
function createHash(algorithm: string): Hash {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node:crypto') as typeof import('node:crypto')).createHash(algorithm);
}

class Sha1Hasher implements ChunkHasher {
  readonly kind = 'sha1' as const;
  // node:crypto hashes cannot be reset, but creating one is cheap (no WASM involved).
  private hash: Hash = createHash('sha1');
  update(data: Uint8Array): void {
    this.hash.update(data);
  }
  digestHex(): string {
    const hex = this.hash.digest('hex');
    this.hash = createHash('sha1');
    return hex;
  }
  reset(): void {
    this.hash = createHash('sha1');
  }
}

/** Creates a reusable hasher. Async because the XXH64 WASM module is instantiated on demand. */
export async function createChunkHasher(kind: ChecksumKind): Promise<ChunkHasher> {
  switch (kind) {
    case 'xxh64':
      return new Xxh64Hasher(await createXXHash64(0, 0));
    case 'sha1':
      return new Sha1Hasher();
    default:
      throw new TypeError(`unknown checksum kind: ${String(kind)}`);
  }
}

/**
 * Compiles the WASM module ahead of time so that the first `createChunkHasher('xxh64')` on a
 * hot path is quick. Optional: createChunkHasher works without it.
 */
export async function initChecksums(): Promise<void> {
  await createXXHash64(0, 0);
}

/** One-off digest of one chunk in the on-disk format. */
export async function hashChunk(kind: ChecksumKind, data: Uint8Array): Promise<string> {
  const hasher = await createChunkHasher(kind);
  hasher.update(data);
  return hasher.digestHex();
}
