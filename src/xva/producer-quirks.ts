/**
 * The writer's knobs that `pack` never sets: other producers' habits, so the reader is tested
 * against each of their archives (docs/xva-format.md §4.4, §9), and fixed times and identities for
 * byte-stable output. Test fixtures (test/helpers/xva-fixtures.ts), the samples
 * (scripts/make-samples.js) and the bench corpus use them; the public API does not offer them.
 */
import type { OvaXmlIdentities } from './metadata/build';

/** Picks a disk by ref (`Ref:998`) or by its index in `spec.disks`. */
export type DiskSelector = string | number;

export interface XvaProducerQuirks extends OvaXmlIdentities {
  /** Mode of every entry (default per dialect: xapi 0400, ustar/v7 0644; xva-img writes 0). */
  mode?: number;
  /** mtime of chunk and checksum entries, seconds (default 0 as XAPI; Xen Orchestra: now). */
  mtime?: number;
  /** mtime of ova.xml, seconds (default: now, as XAPI). */
  ovaXmlMtime?: number;
  /** Write all-zero chunks too (newer XAPI writes every allocated chunk). */
  writeAllChunks?: boolean;
  /** Xen Orchestra: last chunk padded to 1 MiB and virtual_size rounded up to 1 MiB. */
  padLastChunk?: boolean;
  /** xva-img disk-import: only whole 1 MiB chunks; a trailing partial MiB is not written. */
  dropPartialTail?: boolean;
  /**
   * Write `virtualSize` exactly even when it is not a multiple of 512 (fixtures for the reader's
   * odd-size handling). By default sizes are rounded up to 512 so every chunk stays
   * block-aligned, which XAPI's reader needs (docs/xva-format.md §2.1, §4.4).
   */
  allowUnalignedSize?: boolean;
  /** Leave out the checksum entry of these data entries (by counter). */
  omitChecksumFor?: Array<{ disk: DiskSelector; counter: number }> | ((diskRef: string, counter: number) => boolean);
  /** 'string' (default, XAPI's order) or 'spec' (as given: may produce a misordered archive). */
  diskOrder?: 'string' | 'spec';
  /** Record every tar entry name in the summary. */
  recordEntries?: boolean;
}
