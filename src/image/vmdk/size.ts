/**
 * The size of a streamOptimized VMDK before it is written (docs/output-formats.md §2.4): exact
 * with stored grains, an upper bound with deflate. Used by `measure`, by the OVA writer (member
 * sizes before the first byte) and by the VMDK writer to check what it produced.
 */
import type { AllocationMap } from '../allocation-map';
import { VMDK_GRAIN_SECTORS, VMDK_GT_SECTORS, VMDK_GTES_PER_GT, VMDK_OVERHEAD_SECTORS, VMDK_SECTOR_SIZE, VMDK_TABLE_ENTRY_BYTES, vmdkCapacitySectors } from './format';
import { VMDK_MAX_GRAIN_SECTORS } from './stored-zlib';

/** A metadata marker (GT, GD, footer, EOS) is one sector (§2.2). */
export const VMDK_MARKER_SECTORS = 1;
/** The footer is one sector: a copy of the header (§2.2). */
export const VMDK_FOOTER_SECTORS = 1;

function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

export function vmdkGrainCount(virtualSize: number): number {
  return ceilDiv(vmdkCapacitySectors(virtualSize), VMDK_GRAIN_SECTORS);
}

/** Grain tables (= GD entries) covering the capacity. */
export function vmdkGrainTableCount(virtualSize: number): number {
  return ceilDiv(vmdkGrainCount(virtualSize), VMDK_GTES_PER_GT);
}

/** Sectors of the grain directory. */
export function vmdkGdSectors(virtualSize: number): number {
  return ceilDiv(vmdkGrainTableCount(virtualSize) * VMDK_TABLE_ENTRY_BYTES, VMDK_SECTOR_SIZE);
}

/** Everything but the grains and GTs: overhead, GD marker + GD, footer marker + footer, EOS marker. */
function fixedSectors(virtualSize: number): number {
  return VMDK_OVERHEAD_SECTORS + VMDK_MARKER_SECTORS + vmdkGdSectors(virtualSize) + VMDK_MARKER_SECTORS + VMDK_FOOTER_SECTORS + VMDK_MARKER_SECTORS;
}

/** The size bound for `grains` stored grains and `grainTables` written GTs (exact for stored grains). */
export function vmdkSizeBound(virtualSize: number, grains: number, grainTables: number): number {
  return (fixedSectors(virtualSize) + grains * VMDK_MAX_GRAIN_SECTORS + grainTables * (VMDK_MARKER_SECTORS + VMDK_GT_SECTORS)) * VMDK_SECTOR_SIZE;
}

/**
 * Upper bound of the file size when `allocatedGrains` grains are stored: each grain takes at most
 * 129 sectors (its payload never exceeds the 65552-byte stored encoding, see extent-emitter.ts),
 * and at most min(grains, grain tables) GTs are written.
 */
export function vmdkUpperBoundSize(virtualSize: number, allocatedGrains: number): number {
  const grains = vmdkGrainCount(virtualSize);
  if (!Number.isSafeInteger(allocatedGrains) || allocatedGrains < 0 || allocatedGrains > grains) {
    throw new RangeError(`allocated grains ${allocatedGrains} out of range 0..${grains}`);
  }
  return vmdkSizeBound(virtualSize, allocatedGrains, Math.min(allocatedGrains, vmdkGrainTableCount(virtualSize)));
}

/** Upper bound for a disk whose every grain holds data (what "fully allocated" means for VMDK). */
export function vmdkFullyAllocatedSize(virtualSize: number): number {
  return vmdkUpperBoundSize(virtualSize, vmdkGrainCount(virtualSize));
}

/** Exact size with `level: 0` (stored deflate, §2.4) for the grains of `map`. */
export function vmdkExactStoredSize(virtualSize: number, map: AllocationMap): number {
  if (map.virtualSize !== virtualSize) throw new RangeError(`allocation map is for ${map.virtualSize} bytes, not ${virtualSize}`);
  return vmdkSizeBound(virtualSize, map.count, map.countUsedGroups(VMDK_GTES_PER_GT));
}
