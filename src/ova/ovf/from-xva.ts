/**
 * The OVA model of an XVA's VM, from its ova.xml (docs/xva-format.md): name, CPUs, memory,
 * firmware, NICs, and the data disks in the order the XVA streams them.
 */
import type { XvaMetadata } from '../../xva/metadata/model';
import type { OvaProfile } from '../settings';
import { ovaBaseName, ovaDisks, type OvaDiskSpec } from './members';
import { deterministicUuid, parseBootOrder, type OvaController, type OvaGuestOs, type OvaNic, type OvaVm } from './model';

const MiB = 1024 * 1024;

export interface OvaVmFromXvaOptions {
  profile: OvaProfile;
  /** Overrides the VM name from ova.xml. */
  name?: string;
  /** Disk controller for every disk (default scsi). */
  controller?: OvaController;
  /** NIC model (vmware default E1000, ovirt default virtio). */
  nicModel?: string;
  createdAt?: number;
}

/** A guess good enough for the OVF's OS section: Windows needs viridian, PV guests are Linux. */
function guessGuestOs(meta: XvaMetadata): OvaGuestOs {
  if (meta.vm.platform['viridian'] === 'true') return 'windows';
  if (!meta.vm.hvm || /^pv/.test(meta.vm.domainType)) return 'linux';
  return 'other';
}

/**
 * The OVA model of an XVA's VM: disks in the order the XVA streams them (which is the order the
 * OVA members are written in a single pass), numbered and addressed on their controller by
 * userdevice (`unit`), so `disk1` is userdevice 0. Suspend images and CD-ROMs are not exported.
 */
export function ovaVmFromXvaMetadata(meta: XvaMetadata, options: OvaVmFromXvaOptions): OvaVm {
  const name = options.name ?? (meta.vm.name || 'vm');
  const vmId = options.profile === 'ovirt' ? (isUuid(meta.vm.uuid) ? meta.vm.uuid : deterministicUuid(`vm:${name}`)) : ovaBaseName(name);
  const data = meta.disks.filter((d) => !d.isSuspendImage);
  const byDevice = [...data].sort((a, b) => Number(a.userdevice) - Number(b.userdevice));
  const anyBootable = data.some((d) => d.bootable);
  const ordered = dataDisksInStreamOrder(meta);
  const specs: OvaDiskSpec[] = ordered.map((d) => ({
    name: d.vdi.name || `disk${d.userdevice}`,
    description: d.vdi.description || undefined,
    virtualSize: d.virtualSize,
    bootable: anyBootable ? d.bootable : d === byDevice[0],
    controller: options.controller,
    uuid: isUuid(d.vdi.uuid) ? d.vdi.uuid : undefined,
    unit: byDevice.indexOf(d),
  }));
  const nics: OvaNic[] = [...meta.vifs]
    .sort((a, b) => Number(a.device) - Number(b.device))
    .map((v) => ({ name: `eth${v.device}`, network: v.networkName || v.bridge || 'VM Network', mac: v.mac || undefined, model: options.nicModel }));
  const bootOrder = parseBootOrder(meta.vm.bootOrder);
  return {
    id: vmId,
    name,
    description: meta.vm.description,
    vcpus: Math.max(1, meta.vm.vcpusAtStartup || meta.vm.vcpus || 1),
    memoryBytes: meta.vm.memoryBytes > 0 ? meta.vm.memoryBytes : 1024 * MiB,
    firmware: meta.vm.firmware ?? 'bios',
    guestOs: guessGuestOs(meta),
    disks: ovaDisks(options.profile, vmId, name, specs),
    nics,
    bootOrder: bootOrder.length > 0 ? bootOrder : ['disk'],
    createdAt: options.createdAt,
  };
}

/** Maps XVA disk refs to their index in `vm.disks` (same order as ovaVmFromXvaMetadata). */
export function xvaDiskOrder(meta: XvaMetadata): string[] {
  return dataDisksInStreamOrder(meta).map((d) => d.ref);
}

/** The disks the OVA exports (no suspend image), in the order the XVA streams their data. */
function dataDisksInStreamOrder(meta: XvaMetadata): XvaMetadata['disks'] {
  const streamIndex = (ref: string): number => {
    const i = meta.streamedRefs.indexOf(ref);
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  return meta.disks.filter((d) => !d.isSuspendImage).sort((a, b) => streamIndex(a.ref) - streamIndex(b.ref));
}

function isUuid(s: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);
}
