/**
 * The OVA's member names and disk entries: the name stem every member shares, and each disk's
 * ids and file name as the profile's dialect spells them (vmware: `vmdisk1`/`file1`/
 * `<vm>-disk1.vmdk`; ovirt: the disk and image UUIDs).
 */
import { OutputError } from '../../errors';
import { imageVirtualSize } from '../../image/types';
import type { OvaProfile } from '../settings';
import { deterministicUuid, ovaDiskFormat, type OvaController, type OvaDisk } from './model';

const MAX_BASE_BYTES = 60;

/** A member-name stem: `[A-Za-z0-9._-]` only (hrefs are URIs), at most 60 bytes, never empty. */
export function ovaBaseName(vmName: string): string {
  const s = vmName
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._-]+/, '')
    .replace(/_+$/, '')
    .slice(0, MAX_BASE_BYTES);
  return s || 'vm';
}

export interface OvaDiskSpec {
  /** Label (ovirt: disk alias). */
  name: string;
  description?: string;
  /** Virtual size in bytes of the source disk. */
  virtualSize: number;
  bootable: boolean;
  controller?: OvaController;
  /** ovirt: disk UUID (derived from the VM id and index when absent). */
  uuid?: string;
  /** Controller ordering (default: index). */
  unit?: number;
}

/**
 * Each spec's position in controller order (its `unit`, else its index): the number its ids and
 * file name carry, so that `disk1` is the first device (userdevice 0) whatever order the members
 * are written in.
 */
function unitRanks(specs: OvaDiskSpec[]): number[] {
  const ranks: number[] = [];
  specs
    .map((s, i) => ({ i, unit: s.unit ?? i }))
    .sort((a, b) => a.unit - b.unit || a.i - b.i)
    .forEach(({ i }, rank) => (ranks[i] = rank));
  return ranks;
}

/**
 * OvaDisk entries (sizes unknown) for disks in member order. The disks are numbered in `unit`
 * order, not member order (docs/output-formats.md §4.1).
 */
export function ovaDisks(profile: OvaProfile, vmId: string, vmName: string, specs: OvaDiskSpec[]): OvaDisk[] {
  const format = ovaDiskFormat(profile);
  const base = ovaBaseName(vmName);
  const ranks = unitRanks(specs);
  return specs.map((s, j) => {
    const i = ranks[j]!;
    // Rounded up to whole sectors, a size within 511 bytes of 2^53 is past what a number holds
    // exactly; no image format takes such a disk anyway (VMDK stops at 2 TiB).
    if (!Number.isSafeInteger(imageVirtualSize(s.virtualSize))) throw new OutputError('OUTPUT_UNSUPPORTED', `a ${s.virtualSize}-byte disk is too large for a ${format} image`);
    if (profile === 'ovirt') {
      const diskId = s.uuid ?? deterministicUuid(`${vmId}:disk:${i}`);
      const imageId = deterministicUuid(`${diskId}:image`);
      return { id: diskId, fileId: imageId, fileName: imageId, name: s.name, description: s.description, capacity: imageVirtualSize(s.virtualSize), format, bootable: s.bootable, controller: s.controller ?? 'scsi', unit: s.unit };
    }
    return {
      id: `vmdisk${i + 1}`,
      fileId: `file${i + 1}`,
      fileName: `${base}-disk${i + 1}.vmdk`,
      name: s.name,
      description: s.description,
      capacity: imageVirtualSize(s.virtualSize),
      format,
      bootable: s.bootable,
      controller: s.controller ?? 'scsi',
      unit: s.unit,
    };
  });
}

/** Names of the descriptor and manifest members. */
export function ovaMemberNames(vmName: string): { ovf: string; manifest: string } {
  const base = ovaBaseName(vmName);
  return { ovf: `${base}.ovf`, manifest: `${base}.mf` };
}
