/** pack's disks mode: raw and qcow2 images (with backing chains) opened with openDiskImage. */
import * as path from 'node:path';
import type { DiskReader } from '../../io/disk';
import { openDiskImage } from '../../image/qcow2/reader';
import { DEFAULT_MEMORY, DEFAULT_VCPUS, nicSpecs } from './options';
import { packReaders, type ReaderDisk } from './readers';
import type { PackCommon, PackDisk, PackRun, PackSummary } from './types';

export async function packDisks(options: PackRun, common: PackCommon, warn: (m: string) => void): Promise<PackSummary> {
  const inputs: PackDisk[] = options.disks!.map((d) => (typeof d === 'string' ? { path: d } : d));
  const readers: DiskReader[] = [];
  try {
    for (const d of inputs) readers.push(await openDiskImage(d.path, d.format));
    const disks: ReaderDisk[] = inputs.map((d, i) => ({
      reader: readers[i]!,
      source: d.path,
      name: d.name ?? path.basename(d.path).replace(/\.(raw|img|qcow2?|bin)$/i, ''),
      description: d.description,
      userdevice: d.userdevice ?? i,
      bootable: d.bootable ?? i === 0,
      readOnly: d.readOnly,
    }));
    const vm = options.vm ?? {};
    return await packReaders(options, common, warn, disks, {
      name: vm.name ?? (disks[0]?.name || 'vm'),
      description: vm.description ?? '',
      vcpus: vm.vcpus ?? DEFAULT_VCPUS,
      memoryBytes: vm.memoryBytes ?? DEFAULT_MEMORY,
      firmware: vm.firmware ?? 'bios',
      secureBoot: vm.secureBoot,
      isTemplate: vm.isTemplate,
    }, nicSpecs(options.nics));
  } finally {
    await Promise.all(readers.map((r) => r.close().catch(() => undefined)));
  }
}
