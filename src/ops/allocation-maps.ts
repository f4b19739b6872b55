/**
 * The allocation pass: one read of an XVA that builds an AllocationMap (image/allocation-map.ts)
 * for each selected disk. `measure` reports sizes from the maps; qcow2 to a pipe and qcow2 onto
 * a device smaller than the fully allocated image (qcow2-to-pipe.ts) read the input again and
 * write from them (docs/architecture.md, "Two passes").
 *
 * By default every chunk is verified and zero-detected per 64 KiB cluster, as the converter does,
 * so a map made here is the map the image writers make. With `fast` a present chunk counts as
 * allocated without its bytes being read (chunk bodies skipped, nothing hashed).
 *
 * The OVA writer's measuring pass (ova/writer/passes.ts) is a pass of another kind and does
 * not use this one: it runs over any OVA input (disk images as well as an XVA) through its
 * OvaInput seam, numbers disks in OVF order rather than selecting them by ref, and for
 * deflated VMDK members it measures by compressing, with no allocation map at all. What the
 * two share, the XVA reader and AllocationMapBuilder, already lives in xva/ and image/.
 */
import { AllocationMap, AllocationMapBuilder } from '../image/allocation-map';
import type { InputSource } from '../input/types';
import type { DiskInfo } from '../xva/metadata/model';
import { readXva, type BadChunkPolicy } from '../xva/reader';
import { selectDisks } from '../xva/select-disks';

export interface AllocationPassOptions {
  /** Disks to map (userdevice, ref or VDI uuid); default every data disk. */
  disks?: string[];
  includeSuspendImage?: boolean;
  onBadChunk?: BadChunkPolicy;
  /** Count present chunks as allocated instead of zero-detecting them (skips hashing too). */
  fast?: boolean;
  signal?: AbortSignal;
}

export interface AllocationPassResult {
  /** The selected disks, in ova.xml order. */
  selected: DiskInfo[];
  /** One map per selected disk, by VDI ref. */
  maps: Map<string, AllocationMap>;
  warnings: string[];
}

/**
 * Reads `source` through (the caller opens and closes it) and maps its selected disks.
 * `onSelected` may refuse the selection before any chunk is read.
 */
export async function readAllocationMaps(
  source: InputSource,
  options: AllocationPassOptions,
  onSelected?: (selected: DiskInfo[]) => void,
): Promise<AllocationPassResult> {
  const fast = !!options.fast;
  const maps = new Map<string, AllocationMap>();
  let selected: DiskInfo[] = [];
  const read = await readXva(
    source,
    {
      onMetadata: (meta) => {
        selected = selectDisks(meta, options.disks, options.includeSuspendImage);
        onSelected?.(selected);
        // With `fast` no disk is opened: onChunk marks these. Otherwise openDisk replaces them.
        for (const d of selected) maps.set(d.ref, new AllocationMap(d.virtualSize));
      },
      openDisk: (disk) => {
        if (fast || !selected.includes(disk)) return undefined;
        const builder = new AllocationMapBuilder(disk.virtualSize);
        maps.set(disk.ref, builder.map);
        return builder;
      },
      onChunk: fast
        ? (disk, _entry, offset, length) => {
            const map = maps.get(disk.ref);
            if (!map || length === 0) return;
            const last = Math.floor((offset + length - 1) / map.clusterSize);
            for (let c = Math.floor(offset / map.clusterSize); c <= last; c++) map.add(c);
          }
        : undefined,
    },
    { skipData: fast, onBadChunk: options.onBadChunk, signal: options.signal },
  );
  return { selected, maps, warnings: read.warnings };
}
