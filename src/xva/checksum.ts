/**
 * Per-chunk checksums of an XVA (docs/xva-format.md §5).
 *
 * Each data chunk `X` is followed by `X.xxhash` (XXH64, seed 0, 16 UPPERCASE hex digits) or
 * `X.checksum` (SHA-1, 40 lowercase hex digits); neither has a trailing newline (the suffixes
 * and lengths: format.ts). We write exactly those bytes and compare leniently when reading
 * (case-insensitive, whitespace-trimmed).
 *
 * A ChunkHasher is created once and reused for every chunk: `digestHex()` returns the digest
 * and resets the state, so the per-chunk cost is one init, not a WASM instantiation.
 */
import type { Hash } from 'node:crypto';
import type { IHasher } from 'hash-wasm';
import { escapeControls } from '../errors';
import { allocAligned } from '../io/aligned-buffer';
import type { ChecksumKind } from './format';
import { xxh64BigInt } from './xxh64-bigint';
import { xxh64InPlace } from './xxh64-in-place';

export interface ChunkHasher {
  readonly kind: ChecksumKind;
  /** Adds bytes. `data` must stay unchanged until the next update() or digestHex(). */
  update(data: Uint8Array): void;
  /** The digest in the exact on-disk format; the hasher is reset and ready for the next chunk. */
  digestHex(): string;
  /** Discards any data hashed so far. */
  reset(): void;
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

/** First scratch size of an Xxh64Hasher; it grows to the largest input gathered. */
const SCRATCH_START = 64 * 1024;

/** An XXH64 function and the buffers it accepts. */
interface Xxh64Engine {
  /** XXH64 (seed 0) of `data`; undefined where `data` does not lie where it can hash it. */
  hash(data: Uint8Array): bigint | undefined;
  /** A scratch buffer that `hash` accepts (or, where it cannot be had, one it declines). */
  alloc(size: number): Buffer;
}

/** Our own WebAssembly function over our own memories (xxh64-in-place.ts). */
const IN_PLACE: Xxh64Engine = { hash: xxh64InPlace, alloc: allocAligned };
/** Plain JavaScript, where the runtime has no WebAssembly at all (xxh64-bigint.ts). */
const BIGINT: Xxh64Engine = { hash: xxh64BigInt, alloc: (size) => Buffer.allocUnsafe(size) };

/**
 * XXH64 computed in place by our own WebAssembly function (xxh64-in-place.ts). A chunk given in
 * one piece in one of our buffers (every chunk the reader gives) is hashed where it lies. Input
 * given in several pieces, or in ordinary buffers (the XVA writer's), is first gathered into a
 * scratch buffer cut from our own WebAssembly memory: one copy, as hash-wasm makes into its own
 * memory. This keeps hash-wasm (and its ~0.3 MB of code to load) off the common path. Without
 * WebAssembly, the same with the BigInt engine (any buffer will do).
 */
class Xxh64Hasher implements ChunkHasher {
  readonly kind = 'xxh64' as const;
  /** The first piece given since the last digest, not hashed or copied yet (see update()). */
  private pending: Uint8Array | undefined;
  /** Bytes gathered into `scratch` since the last digest. */
  private gathered = 0;

  /** `scratch` must be a buffer `engine.hash` accepts (see createChunkHasher). */
  constructor(
    private readonly engine: Xxh64Engine,
    private scratch: Buffer,
  ) {}

  update(data: Uint8Array): void {
    if (data.length === 0) return;
    if (this.pending === undefined && this.gathered === 0) {
      this.pending = data;
      return;
    }
    this.gatherPending();
    this.gather(data);
  }
  digestHex(): string {
    let value = this.pending !== undefined ? this.engine.hash(this.pending) : undefined;
    if (value === undefined) {
      this.gatherPending();
      value = this.engine.hash(this.scratch.subarray(0, this.gathered));
    }
    this.reset();
    if (value === undefined) throw new Error('XXH64: scratch buffer outside WebAssembly memory'); // see gather()
    // Canonical (big-endian) value; XAPI prints "%016LX".
    return value.toString(16).padStart(16, '0').toUpperCase();
  }
  reset(): void {
    this.pending = undefined;
    this.gathered = 0;
  }
  private gatherPending(): void {
    const p = this.pending;
    this.pending = undefined;
    if (p) this.gather(p);
  }
  private gather(data: Uint8Array): void {
    const need = this.gathered + data.length;
    if (need > this.scratch.length) {
      let size = this.scratch.length * 2;
      while (size < need) size *= 2;
      const bigger = this.engine.alloc(size);
      // allocAligned hands out an ordinary buffer only when the runtime refuses a memory; a hash
      // could not be computed in place there, so that is reported, not hashed wrongly.
      if (this.engine.hash(bigger.subarray(0, 0)) === undefined) throw new Error(`XXH64: cannot allocate ${size} bytes of WebAssembly memory`);
      this.scratch.copy(bigger, 0, 0, this.gathered);
      this.scratch = bigger;
    }
    this.scratch.set(data, this.gathered);
    this.gathered = need;
  }
}

/** XXH64 by hash-wasm, where WebAssembly memories of our own cannot be had. */
class HashWasmXxh64Hasher implements ChunkHasher {
  readonly kind = 'xxh64' as const;
  constructor(private readonly wasm: IHasher) {
    wasm.init();
  }
  update(data: Uint8Array): void {
    this.wasm.update(data);
  }
  digestHex(): string {
    const hex = this.wasm.digest('hex');
    this.wasm.init();
    return hex.toUpperCase();
  }
  reset(): void {
    this.wasm.init();
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

/**
 * Creates a reusable hasher. Async because hash-wasm, where needed, is instantiated on demand.
 * XXH64 by the first that can run: our in-place WebAssembly, hash-wasm (WebAssembly works but
 * no memory of our own can be had), plain JavaScript (no WebAssembly at all).
 */
export async function createChunkHasher(kind: ChecksumKind): Promise<ChunkHasher> {
  switch (kind) {
    case 'xxh64': {
      const scratch = IN_PLACE.alloc(SCRATCH_START);
      if (IN_PLACE.hash(scratch.subarray(0, 0)) !== undefined) return new Xxh64Hasher(IN_PLACE, scratch);
      try {
        // hash-wasm is required only here.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { createXXHash64 } = require('hash-wasm') as typeof import('hash-wasm');
        return new HashWasmXxh64Hasher(await createXXHash64(0, 0));
      } catch {
        return new Xxh64Hasher(BIGINT, BIGINT.alloc(SCRATCH_START));
      }
    }
    case 'sha1':
      return new Sha1Hasher();
    default:
      throw new TypeError(`unknown checksum kind: ${String(kind)}`);
  }
}

/**
 * Compiles the XXH64 WebAssembly function ahead of time so that the first
 * `createChunkHasher('xxh64')` on a hot path is quick. Optional: createChunkHasher works without it.
 */
export async function initChecksums(): Promise<void> {
  await createChunkHasher('xxh64');
}

/** One-off digest of one chunk in the on-disk format. */
export async function hashChunk(kind: ChecksumKind, data: Uint8Array): Promise<string> {
  const hasher = await createChunkHasher(kind);
  hasher.update(data);
  return hasher.digestHex();
}

/**
 * A checksum file's content as messages show it: trimmed, at most 64 characters, control
 * characters escaped (the file comes from the input and may hold anything).
 */
export function shownChecksum(expectedFileContent: string): string {
  return escapeControls(expectedFileContent.trim().slice(0, 64));
}
