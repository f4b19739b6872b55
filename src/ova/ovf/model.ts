/**
 * The OVA model both OVF dialects render (vmware.ts, ovirt.ts) and the facts they share: the
 * OVF/CIM namespaces, `ovf:format` URIs, CIM resource types, exact capacities, guest OS ids and
 * the deterministic UUIDs that make repeated exports identical (docs/output-formats.md §4.3,
 * §4.4).
 */
import { createHash } from 'node:crypto';
import type { OvaProfile } from '../settings';

export type OvaFirmware = 'bios' | 'uefi';
export type OvaController = 'scsi' | 'ide' | 'sata' | 'virtio';
export type OvaGuestOs = 'linux' | 'windows' | 'other';
export type OvaBootDevice = 'disk' | 'cdrom' | 'network';
export type OvaDiskFormat = 'vmdk' | 'qcow2';

export interface OvaDisk {
  /** DiskSection `ovf:diskId` (vmware: `vmdisk1`; ovirt: the disk UUID). */
  id: string;
  /** References `ovf:id` (vmware: `file1`; ovirt: the image UUID). */
  fileId: string;
  /** Member name in the OVA = `ovf:href`. At most 100 bytes (one ustar header). */
  fileName: string;
  /** Human-readable label: the disk item's ElementName (ovirt: disk alias). */
  name: string;
  /** The disk item's Description (ovirt: disk description), when there is one. */
  description?: string;
  /** Virtual size in bytes, in whole sectors (`imageVirtualSize`). */
  capacity: number;
  format: OvaDiskFormat;
  /** Bytes of the member in the OVA; undefined until known. */
  fileSize?: number;
  /** Bytes of guest data actually stored; undefined until known. */
  populatedSize?: number;
  bootable: boolean;
  controller: OvaController;
  /** Position among the VM's disks for controller addressing (default: array index). */
  unit?: number;
}

export interface OvaNic {
  /** Device name, e.g. `eth0` / `nic1`. */
  name: string;
  /** Logical network name. */
  network: string;
  /** `aa:bb:cc:dd:ee:ff`, when known. */
  mac?: string;
  /** Adapter model: vmware `E1000` (default) / `VmxNet3`; ovirt `virtio` (default) / `e1000`. */
  model?: string;
  /** ovirt: the interface UUID (derived from the VM id when absent). */
  id?: string;
}

export interface OvaVm {
  /** VirtualSystem `ovf:id` (vmware: a name-like id; ovirt: the VM UUID). */
  id: string;
  name: string;
  description: string;
  vcpus: number;
  memoryBytes: number;
  firmware: OvaFirmware;
  guestOs: OvaGuestOs;
  /**
   * In References / tar order (the order the input delivers the disks and the members are
   * written); DiskSection and the hardware items list them in `unit` order (disksInUnitOrder).
   */
  disks: OvaDisk[];
  nics: OvaNic[];
  bootOrder: OvaBootDevice[];
  /** Timestamps written by the ovirt profile (seconds since the epoch; default 0). */
  createdAt?: number;
  /** vmware: `vssd:VirtualSystemType` (default `vmx-13`, ESXi 6.5 and later). */
  hardwareVersion?: string;
}

export const OVF_NS = 'http://schemas.dmtf.org/ovf/envelope/1';
export const RASD_NS = 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData';
export const VSSD_NS = 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData';
export const VMW_NS = 'http://www.vmware.com/schema/ovf';
export const OVIRT_NS = 'http://www.ovirt.org/ovf';
export const XSI_NS = 'http://www.w3.org/2001/XMLSchema-instance';
export const CIM_NS = 'http://schemas.dmtf.org/wbem/wscim/1/common';

/** `ovf:format` URIs. */
export const VMDK_STREAM_OPTIMIZED_URI = 'http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized';
export const QCOW2_FORMAT_URI = 'http://www.gnome.org/~markmc/qcow-image-format.html';

/** CIM ResourceType codes (DSP0243 / CIM_ResourceAllocationSettingData). */
export const ResourceType = { CPU: 3, MEMORY: 4, IDE: 5, SCSI: 6, NIC: 10, CDROM: 15, DISK: 17, SATA: 20 } as const;

/** The widest number a size can render as (sizes are safe integers). */
export const OVF_SIZE_PLACEHOLDER = Number.MAX_SAFE_INTEGER;

/** `value`, or the placeholder when the descriptor is rendered before the sizes are known. */
export function statedSize(value: number | undefined, placeholders: boolean): number {
  if (placeholders) return OVF_SIZE_PLACEHOLDER;
  if (value === undefined) throw new RangeError('OVF: a disk size is not known yet');
  return value;
}

const MiB = 1024 * 1024;

/** A stable name-based UUID (SHA-1, version 5 layout) so that repeated exports are identical. */
export function deterministicUuid(seed: string): string {
  const h = createHash('sha1').update('xva2img:').update(seed).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/** Memory in whole MiB (at least 1): both dialects state it in MiB. */
export function memoryMiB(vm: OvaVm): number {
  return Math.max(1, Math.ceil(vm.memoryBytes / MiB));
}

/** The ids each dialect gives a guest OS family. */
export function guestOsIds(os: OvaGuestOs): { cim: number; vmware: string; ovirt: number; ovirtName: string; text: string } {
  // CIM_OperatingSystem OsType values; oVirt ids from its osinfo defaults (0 other, 5 other_linux).
  switch (os) {
    case 'linux':
      return { cim: 101, vmware: 'otherLinux64Guest', ovirt: 5, ovirtName: 'other_linux', text: 'Linux (64-bit)' };
    case 'windows':
      return { cim: 1, vmware: 'windows9Server64Guest', ovirt: 0, ovirtName: 'other', text: 'Microsoft Windows (64-bit)' };
    default:
      return { cim: 1, vmware: 'otherGuest64', ovirt: 0, ovirtName: 'other', text: 'Other (64-bit)' };
  }
}

/** Units an importer may know, largest first: GiB, MiB, KiB, byte (see `ovfCapacity`). */
const CAPACITY_UNIT_EXPONENTS = [30, 20, 10, 0] as const;

/**
 * `ovf:capacity` and `ovf:capacityAllocationUnits` stating `bytes` exactly, as `byte * 2^N` with
 * the largest N of 30, 20, 10, 0 that divides it: Proxmox only reads the `byte * B^E` form (a
 * plain "byte" loses the size) and CloudStack only knows 2^10, 2^20 and 2^30, reading any other
 * unit as bytes (docs/output-formats.md §4.6).
 */
export function ovfCapacity(bytes: number): { capacity: number; units: string } {
  const n = CAPACITY_UNIT_EXPONENTS.find((e) => bytes % 2 ** e === 0)!;
  return { capacity: bytes / 2 ** n, units: `byte * 2^${n}` };
}

/** The logical networks the NICs use, each once, in NIC order. */
export function networkNames(vm: OvaVm): string[] {
  return [...new Set(vm.nics.map((n) => n.network))];
}

/**
 * The disks in controller `unit` order (default: their index), as DiskSection and the hardware
 * items list them: the device order an importer reading either one sees (userdevice order for an
 * XVA), whatever order the members are written in.
 */
export function disksInUnitOrder(disks: OvaDisk[]): OvaDisk[] {
  return disks.map((d, i) => ({ d, unit: d.unit ?? i })).sort((a, b) => a.unit - b.unit).map(({ d }) => d);
}

/** The disk format a profile writes: streamOptimized VMDK (vmware) or qcow2 (ovirt). */
export function ovaDiskFormat(profile: OvaProfile): OvaDiskFormat {
  return profile === 'ovirt' ? 'qcow2' : 'vmdk';
}

/** Parses a boot order string such as XenServer's HVM_boot_params.order ("cdn") or "disk,network". */
export function parseBootOrder(order: string): OvaBootDevice[] {
  const out: OvaBootDevice[] = [];
  const words = order.includes(',') ? order.split(',') : [...order];
  for (const raw of words) {
    const w = raw.trim().toLowerCase();
    const dev: OvaBootDevice | undefined = w === 'c' || w === 'disk' || w === 'hdd' ? 'disk' : w === 'd' || w === 'cdrom' || w === 'cd' ? 'cdrom' : w === 'n' || w === 'network' || w === 'net' ? 'network' : undefined;
    if (dev && !out.includes(dev)) out.push(dev);
  }
  return out;
}
