/**
 * The XVA on-disk format facts the reader and the writer share (docs/xva-format.md §1, §4, §5):
 * the name of the metadata entry, the chunk size, how a chunk entry is named and how its
 * checksum entry is suffixed, and the order of the disks in the archive.
 *
 *   ova.xml                      the VM metadata, always first (§1)
 *   Ref:998/00000000             chunk 0 of the disk whose VDI ref is Ref:998 (§4.1)
 *   Ref:998/00000000.xxhash      its checksum: XXH64, or `.checksum` for SHA-1 (§5)
 */

/** The first entry of every XVA: the VM metadata, one XML-RPC value (§1, §3). */
export const OVA_XML_ENTRY = 'ova.xml';

/** XAPI's chunk size (xen-api stream_vdi.ml `chunk_size`): what the writer cuts disks into. */
export const XVA_CHUNK_SIZE = 1024 * 1024;

/** Counters are printed `%08d` (stream_vdi.ml `Printf "%s/%08d"`): 8 digits, more when needed. */
export const CHUNK_COUNTER_DIGITS = 8;

/**
 * What the reader takes for a chunk name: any directory, 1 to 15 decimal digits (any padding;
 * 15 digits keep the counter a safe integer), an optional `.suffix` (§4.1).
 */
const CHUNK_NAME = /^(.+)\/(\d{1,15})(\.[A-Za-z0-9]+)?$/;

/** `Ref:998` + 42 → `Ref:998/00000042`. */
export function chunkEntryName(ref: string, counter: number): string {
  return `${ref}/${String(counter).padStart(CHUNK_COUNTER_DIGITS, '0')}`;
}

/** Splits `Ref:N/00000042[.xxhash|.checksum]` into its parts; undefined if it is not a chunk name. */
export function parseChunkName(name: string): { dir: string; counter: number; suffix: '' | '.xxhash' | '.checksum' | string } | undefined {
  const m = CHUNK_NAME.exec(name);
  if (!m) return undefined;
  return { dir: m[1]!, counter: Number(m[2]), suffix: m[3] ?? '' };
}

/**
 * The directory of an entry name, what comes before its last `/` as `parseChunkName` splits it
 * (`Ref:7/00000001 ` → `Ref:7`); undefined for a name without one. The reader refuses an entry
 * directly in a VDI's directory whose name `parseChunkName` does not take (§2.3).
 */
export function entryDirectory(name: string): string | undefined {
  const slash = name.lastIndexOf('/');
  return slash > 0 ? name.slice(0, slash) : undefined;
}

/**
 * Disks follow each other in byte-wise order of their refs, OCaml's `compare` on strings
 * (`Ref:1003` before `Ref:998`, §1).
 */
export function compareRefs(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

// ---------------------------------------------------------------------------------------------
// Checksum entries (§5)

export type ChecksumKind = 'sha1' | 'xxh64';

export const CHECKSUM_KINDS: readonly ChecksumKind[] = ['xxh64', 'sha1'];

/** Length of the checksum entry's content: XXH64 16 UPPERCASE hex digits, SHA-1 40 lowercase. */
export const CHECKSUM_HEX_LENGTH: Record<ChecksumKind, number> = { xxh64: 16, sha1: 40 };

const CHECKSUM_SUFFIX: Record<ChecksumKind, string> = { xxh64: '.xxhash', sha1: '.checksum' };

/** `.xxhash` or `.checksum` (with the dot). */
export function checksumFileSuffix(kind: ChecksumKind): string {
  return CHECKSUM_SUFFIX[kind];
}

/**
 * The checksum kind of a suffix (`.xxhash`, `xxhash`) or of a whole entry name ending in one
 * (`Ref:3/00000000.checksum`); undefined if it is neither.
 */
export function kindFromSuffix(suffixOrName: string): ChecksumKind | undefined {
  const s = suffixOrName.startsWith('.') || suffixOrName.includes('/') ? suffixOrName : `.${suffixOrName}`;
  if (s.endsWith(CHECKSUM_SUFFIX.xxh64)) return 'xxh64';
  if (s.endsWith(CHECKSUM_SUFFIX.sha1)) return 'sha1';
  return undefined;
}
