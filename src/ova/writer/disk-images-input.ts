/**
 * The OVA input made of disk images (raw, qcow2, VMDK files): the VM is described by options
 * (OvaVmSettings), the disks are read through their image readers. Always re-readable.
 */
import { UsageError } from '../../errors';
import { streamDiskImage } from '../../image/disk-reader';
import { openDiskImage } from '../../image/qcow2/reader';
import type { DiskReader } from '../../io/disk';
import { ovaBaseName, ovaDisks } from '../ovf/members';
import { deterministicUuid, parseBootOrder, type OvaVm } from '../ovf/model';
import type { OvaProfile } from '../settings';
import type { OvaDiskInput, OvaFromDisksOptions, OvaVmSettings } from './options';
import type { OvaInput } from './passes';

/** The VM model of disk images: the settings describe the VM, the readers give the disk sizes. */
function vmFromSettings(profile: OvaProfile, s: OvaVmSettings, readers: DiskReader[], disks: OvaDiskInput[]): OvaVm {
  const vmId = profile === 'ovirt' ? s.uuid ?? deterministicUuid(`vm:${s.name}`) : ovaBaseName(s.name);
  const anyBootable = disks.some((d) => d.bootable);
  const specs = readers.map((r, i) => ({
    name: disks[i]!.name ?? baseName(disks[i]!.path),
    description: disks[i]!.description,
    virtualSize: r.virtualSize,
    bootable: anyBootable ? disks[i]!.bootable === true : i === 0,
    controller: disks[i]!.controller,
  }));
  const bootOrder = typeof s.bootOrder === 'string' ? parseBootOrder(s.bootOrder) : s.bootOrder ?? ['disk'];
  return {
    id: vmId,
    name: s.name,
    description: s.description ?? '',
    vcpus: s.vcpus ?? 1,
    memoryBytes: s.memoryBytes ?? 1024 * 1024 * 1024,
    firmware: s.firmware ?? 'bios',
    guestOs: s.guestOs ?? 'other',
    disks: ovaDisks(profile, vmId, s.name, specs),
    nics: s.nics ?? [],
    bootOrder: bootOrder.length > 0 ? bootOrder : ['disk'],
  };
}

function baseName(p: string): string {
  const parts = p.split(/[\\/]/);
  return parts[parts.length - 1] || p;
}

/** Opens every image (closing those opened when one fails) and builds the VM model. */
export async function disksInput(profile: OvaProfile, o: OvaFromDisksOptions): Promise<OvaInput> {
  if (o.disks.length === 0) throw new UsageError('OVA export needs at least one disk');
  const readers: DiskReader[] = [];
  try {
    for (const d of o.disks) readers.push(await openDiskImage(d.path, d.format));
  } catch (err) {
    await Promise.all(readers.map((r) => r.close()));
    throw err;
  }
  const vm = vmFromSettings(profile, o.vm, readers, o.disks);
  return {
    reopenable: true,
    readOnceReason: '',
    async run(consumer, phase) {
      await consumer.begin(vm);
      for (let i = 0; i < readers.length; i++) {
        const name = vm.disks[i]!.fileName;
        o.onProgress?.({ phase, kind: 'disk-start', disk: i, disks: readers.length, name });
        const w = await consumer.openDisk(i);
        await streamDiskImage(readers[i]!, w, { signal: o.signal });
        o.onProgress?.({ phase, kind: 'disk-done', disk: i, disks: readers.length, name, bytes: readers[i]!.virtualSize });
      }
    },
    async close() {
      await Promise.all(readers.map((r) => r.close()));
    },
  };
}
