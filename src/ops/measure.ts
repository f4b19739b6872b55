/**
 * measureXva: the size of each output image before converting, like `qemu-img measure`.
 *
 * The allocation of every disk is found the way the converter finds it: by reading the XVA and
 * zero-detecting each 64 KiB cluster (checksums verified too). With `fast`, present chunks count
 * as allocated without looking at their bytes: chunk bodies are skipped, not hashed (on a
 * plain file this only walks the tar headers). qcow2 sizes come from the same layout function
 * the writer uses (`qcow2ExactFileSize`), so without `fast` the required size equals the size
 * of the file `convertXva` then writes, to the byte.
 */
import { allocatedGuestBytes, type AllocationMap } from '../image/allocation-map';
import { qcow2ExactFileSize, qcow2FullyAllocatedSize } from '../image/qcow2/layout';
import { IMAGE_FORMATS, type ImageFormat } from '../image/types';
import { vmdkFullyAllocatedSize, vmdkUpperBoundSize } from '../image/vmdk/size';
import { checkChoice } from '../option-checks';
import type { InputSource, OpenInputOptions } from '../input/types';
import { readAllocationMaps } from './allocation-maps';
import { withXvaInput } from './with-xva-input';

export interface MeasureOptions extends OpenInputOptions {
  format?: ImageFormat;
  /** Count present chunks as allocated instead of zero-detecting them (skips hashing too). */
  fast?: boolean;
  disks?: string[];
  includeSuspendImage?: boolean;
  signal?: AbortSignal;
}

export interface DiskMeasure {
  ref: string;
  userdevice: string;
  name: string;
  virtualSize: number;
  /** Guest bytes in allocated 64 KiB clusters. */
  allocatedBytes: number;
  /** Size of the output file: exact for raw and qcow2, an upper bound for vmdk. */
  requiredSize: number;
  /** Size if every cluster were allocated (qemu-img measure's "fully allocated size"). */
  fullyAllocatedSize: number;
  /** False for vmdk (compression is data-dependent) and for `fast` qcow2 estimates. */
  exact: boolean;
}

export interface MeasureResult {
  input: string;
  format: ImageFormat;
  fast: boolean;
  disks: DiskMeasure[];
  warnings: string[];
}

export function sizesFor(format: ImageFormat, map: AllocationMap): Pick<DiskMeasure, 'requiredSize' | 'fullyAllocatedSize'> {
  const { virtualSize, allocatedClusters, usedL2Tables } = map.stats;
  switch (format) {
    case 'raw':
      return { requiredSize: virtualSize, fullyAllocatedSize: virtualSize };
    case 'qcow2':
      return { requiredSize: qcow2ExactFileSize(virtualSize, allocatedClusters, usedL2Tables), fullyAllocatedSize: qcow2FullyAllocatedSize(virtualSize) };
    case 'vmdk':
      return { requiredSize: vmdkUpperBoundSize(virtualSize, allocatedClusters), fullyAllocatedSize: vmdkFullyAllocatedSize(virtualSize) };
  }
}

export async function measureXva(input: string | InputSource, options: MeasureOptions = {}): Promise<MeasureResult> {
  const format = checkChoice(options.format, IMAGE_FORMATS, 'format') ?? 'qcow2';
  const fast = !!options.fast;
  return withXvaInput(input, options, async (source) => {
    const { selected, maps, warnings } = await readAllocationMaps(source, { disks: options.disks, includeSuspendImage: options.includeSuspendImage, fast, signal: options.signal });
    const disks = selected.map((d): DiskMeasure => {
      const map = maps.get(d.ref)!;
      return {
        ref: d.ref,
        userdevice: d.userdevice,
        name: d.vdi.name,
        virtualSize: d.virtualSize,
        allocatedBytes: allocatedGuestBytes(map),
        ...sizesFor(format, map),
        exact: format === 'raw' || (format === 'qcow2' && !fast),
      };
    });
    return { input: source.name, format, fast, disks, warnings };
  });
}
