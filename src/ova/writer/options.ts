/**
 * The options and results of the OVA writer (`writeOva`, `measureOva` in ova-writer.ts): what
 * the library's callers pass and get back.
 */
import type { Qcow2Compat } from '../../image/qcow2/layout';
import type { InputImageFormat } from '../../image/types';
import type { InputSource } from '../../input/types';
import type { XvaMetadata } from '../../xva/metadata/model';
import type { ReadXvaOptions } from '../../xva/reader';
import type { OvaBootDevice, OvaController, OvaFirmware, OvaGuestOs, OvaNic, OvaVm } from '../ovf/model';
import type { OvaProfile, VmdkCompression } from '../settings';

export interface OvaWriteOptions {
  /** 'vmware' (default: streamOptimized VMDK) or 'ovirt' (qcow2 + oVirt's OVF dialect). */
  profile?: OvaProfile;
  /** mtime of every member (seconds); default now. Fix it for reproducible output. */
  mtime?: number;
  /** Write the `.mf` manifest (default true). */
  manifest?: boolean;
  /**
   * VMDK grains: 'deflate' (default, zlib level `vmdkLevel`) or 'stored' (deflate level 0: bigger,
   * but its size is known from the allocation map alone, so the pipe path's first pass does not
   * compress).
   */
  vmdkCompression?: VmdkCompression;
  /** zlib level for 'deflate' (default 6). */
  vmdkLevel?: number;
  /** Concurrent deflate streams on the thread pool (VmdkWriter default when undefined; 0 = inline). */
  vmdkWorkers?: number;
  /** qcow2 compat for the 'ovirt' profile (default '1.1' = v3). */
  qcow2Compat?: Qcow2Compat;
  /**
   * 'auto' (default): files in one pass where the format allows, exact sizes first otherwise.
   * 2 forces measuring first (needs a re-readable input), 1 forces one pass (needs a file).
   */
  passes?: 'auto' | 1 | 2;
  /** Path of the output file, used only to read a qcow2 member back when the fd is write-only. */
  outputPath?: string;
  onProgress?(event: OvaProgressEvent): void;
  signal?: AbortSignal;
}

export type OvaProgressEvent =
  | { phase: 'measure' | 'write'; kind: 'disk-start'; disk: number; disks: number; name: string }
  | { phase: 'measure' | 'write'; kind: 'disk-done'; disk: number; disks: number; name: string; bytes: number };

/** The VM described by options when the input is a list of disk images. */
export interface OvaVmSettings {
  name: string;
  description?: string;
  /** Default 1. */
  vcpus?: number;
  /** Default 1 GiB. */
  memoryBytes?: number;
  /** Default 'bios'. */
  firmware?: OvaFirmware;
  /** Default 'other'. */
  guestOs?: OvaGuestOs;
  nics?: OvaNic[];
  /** Default ['disk']. Strings like "cdn" or "disk,network" are accepted. */
  bootOrder?: OvaBootDevice[] | string;
  /** ovirt: VM UUID (default derived from the name). */
  uuid?: string;
}

export interface OvaDiskInput {
  path: string;
  /** Probed from the magic when absent. */
  format?: InputImageFormat;
  /** Label (the disk item's ElementName); default the file name. */
  name?: string;
  /** The disk item's Description in the OVF. */
  description?: string;
  /** Default: the first disk. */
  bootable?: boolean;
  controller?: OvaController;
}

/** An XVA that the writer can open, and (for files and re-fetchable URLs) open again. */
export interface XvaOvaSource {
  open(): Promise<InputSource>;
  /** True when `open()` may be called a second time (regular file, re-fetchable URL). */
  reopenable: boolean;
  /** For messages. */
  name: string;
}

export interface OvaFromDisksOptions extends OvaWriteOptions {
  disks: OvaDiskInput[];
  vm: OvaVmSettings;
}

export interface OvaFromXvaOptions extends OvaWriteOptions {
  xva: XvaOvaSource;
  /** Overrides the VM name from ova.xml. */
  name?: string;
  controller?: OvaController;
  nicModel?: string;
  /** Passed to readXva (checksum policy, …). */
  readOptions?: Omit<ReadXvaOptions, 'metadataOnly' | 'skipData'>;
  /** Told about the XVA metadata as soon as it is parsed (each pass). */
  onMetadata?(meta: XvaMetadata): void;
  onWarning?(message: string): void;
}

export interface OvaMemberInfo {
  name: string;
  /** Byte offset of the member's data in the archive. */
  offset: number;
  size: number;
  sha256: string;
}

export interface OvaDiskResult extends OvaMemberInfo {
  capacity: number;
  populatedSize: number;
  format: 'vmdk' | 'qcow2';
}

export interface OvaWriteResult {
  /** Total bytes of the archive. */
  size: number;
  passes: 1 | 2;
  profile: OvaProfile;
  ovf: OvaMemberInfo;
  disks: OvaDiskResult[];
  manifest?: OvaMemberInfo;
  vm: OvaVm;
}

export interface OvaMeasureResult {
  /** Exact size of the OVA `writeOva` writes for the same input and options. */
  size: number;
  profile: OvaProfile;
  ovf: { name: string; size: number };
  disks: Array<{ name: string; size: number; capacity: number; populatedSize: number; format: 'vmdk' | 'qcow2' }>;
  manifest?: { name: string; size: number };
  vm: OvaVm;
}

export type WriteOvaOptions = (OvaFromDisksOptions & { xva?: undefined }) | (OvaFromXvaOptions & { disks?: undefined });
