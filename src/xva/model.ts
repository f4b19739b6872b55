/**
 * The typed model of an XVA's ova.xml, as far as converters, OVA export and pack need it.
 * Field meanings follow xva-format.md §3.3. Sizes are byte counts (safe integers).
 */

/** Boot firmware of an HVM guest (HVM_boot_params.firmware). */
export const FIRMWARES = ['bios', 'uefi'] as const;
export type Firmware = (typeof FIRMWARES)[number];

/** Bounds of a VM record that pack writes: vCPUs, and memory in bytes. */
export const MAX_VCPUS = 256;
export const MIN_MEMORY = 16 * 1024 * 1024;

export interface ExportVersion {
  hostname: string;
  date: string;
  productVersion: string;
  productBrand: string;
  buildNumber: string;
  xapiMajor: number;
  xapiMinor: number;
  /** 2 for every current export; 0 when absent (legacy). */
  exportVsn: number;
}

export interface VmInfo {
  ref: string;
  uuid: string;
  name: string;
  description: string;
  vcpus: number;
  vcpusAtStartup: number;
  memoryBytes: number;
  isTemplate: boolean;
  isSnapshot: boolean;
  /** True for HVM guests (HVM_boot_policy non-empty or domain_type hvm). */
  hvm: boolean;
  /** `bios` or `uefi` from HVM_boot_params.firmware; undefined for PV or unknown. */
  firmware?: Firmware;
  /** domain_type as written (hvm, pv, pvh, pv_in_pvh) or '' when absent. */
  domainType: string;
  /** HVM_boot_params.order (e.g. "cd"), '' when absent. */
  bootOrder: string;
  powerState: string;
  platform: Record<string, string>;
  otherConfig: Record<string, string>;
}

export interface VbdInfo {
  ref: string;
  userdevice: string;
  bootable: boolean;
  /** Disk, CD or Floppy as written. */
  type: string;
  mode: string;
  empty: boolean;
  device: string;
  /** VDI ref (`Ref:N`) or undefined for OpaqueRef:NULL / empty drives. */
  vdiRef?: string;
}

export interface VdiInfo {
  /** The export-local id, `Ref:N`: also the tar directory of the disk's chunks. */
  ref: string;
  uuid: string;
  name: string;
  description: string;
  virtualSize: number;
  type: string;
  srRef?: string;
  /** content_type of the SR; 'iso' means the VDI carries no data. */
  srContentType: string;
  srName: string;
  readOnly: boolean;
}

export interface VifInfo {
  ref: string;
  device: string;
  mac: string;
  mtu: number;
  networkName: string;
  bridge: string;
}

/** A disk whose data is streamed in the archive (a non-CD VBD of the VM, or a suspend image). */
export interface DiskInfo {
  /** VDI ref = tar directory (`Ref:998`). */
  ref: string;
  vdi: VdiInfo;
  /** VBD of the chosen VM that attaches the VDI; undefined for a suspend image. */
  vbd?: VbdInfo;
  userdevice: string;
  bootable: boolean;
  virtualSize: number;
  /** True for a suspend image (guest memory, not a disk). */
  isSuspendImage: boolean;
}

export interface CdromInfo {
  userdevice: string;
  empty: boolean;
  /** name of the inserted ISO VDI, if any */
  isoName?: string;
}

export interface XvaMetadata {
  version: ExportVersion;
  vm: VmInfo;
  /** Data disks ordered by numeric userdevice. */
  disks: DiskInfo[];
  cdroms: CdromInfo[];
  vifs: VifInfo[];
  /** Every VDI ref whose data the archive carries, in archive (string) order. */
  streamedRefs: string[];
  /** Every VDI object id in ova.xml (including ISOs and VDIs no disk of the VM uses). */
  vdiRefs: string[];
}
