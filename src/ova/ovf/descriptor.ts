/**
 * The OVF descriptor of an OVA: the model rendered in the profile's dialect (vmware.ts,
 * ovirt.ts). Pure: model in, XML out. Both dialects state capacities exactly, as `byte * 2^N`
 * (`ovfCapacity`, docs/output-formats.md §4.6).
 *
 * Sizes in References/DiskSection (`ovf:size`, `ovf:populatedSize`) may be unknown when the OVF
 * has to be written (one-pass file output). `ovfReservedBytes` renders the descriptor with the
 * widest possible numbers, and `buildPaddedOvf` renders the real one and pads it with spaces
 * (element-content whitespace before `</Envelope>`) to exactly that length, so the OVF member's
 * size never depends on the disk sizes.
 */
import type { OvaProfile } from '../settings';
import type { OvaVm } from './model';
import { buildOvirtOvf } from './ovirt';
import { buildVmwareOvf } from './vmware';

/**
 * Renders the descriptor. Every disk's `fileSize` and `populatedSize` must be set unless
 * `placeholders` is true (then they render as the widest possible number).
 */
export function buildOvf(vm: OvaVm, profile: OvaProfile, options: { placeholders?: boolean } = {}): string {
  validateVm(vm);
  const placeholders = options.placeholders ?? false;
  return profile === 'ovirt' ? buildOvirtOvf(vm, placeholders) : buildVmwareOvf(vm, placeholders);
}

/** Bytes the OVF member occupies whatever the disk sizes turn out to be. */
export function ovfReservedBytes(vm: OvaVm, profile: OvaProfile): number {
  return Buffer.byteLength(buildOvf(vm, profile, { placeholders: true }), 'utf8');
}

/** The real descriptor padded with spaces to exactly `reserved` bytes (see the file comment). */
export function buildPaddedOvf(vm: OvaVm, profile: OvaProfile, reserved: number): Buffer {
  const xml = buildOvf(vm, profile);
  const len = Buffer.byteLength(xml, 'utf8');
  if (len > reserved) throw new RangeError(`OVF is ${len} bytes, more than the ${reserved} reserved`);
  const closing = profile === 'ovirt' ? '</ovf:Envelope>' : '</Envelope>';
  const at = xml.lastIndexOf(closing);
  return Buffer.from(`${xml.slice(0, at)}${' '.repeat(reserved - len)}${xml.slice(at)}`, 'utf8');
}

function validateVm(vm: OvaVm): void {
  if (!Number.isInteger(vm.vcpus) || vm.vcpus < 1) throw new RangeError(`OVF: vcpus must be a positive integer, got ${vm.vcpus}`);
  if (!Number.isSafeInteger(vm.memoryBytes) || vm.memoryBytes <= 0) throw new RangeError(`OVF: memory must be positive, got ${vm.memoryBytes}`);
  const names = new Set<string>();
  for (const d of vm.disks) {
    if (names.has(d.fileName)) throw new RangeError(`OVF: duplicate disk file name ${d.fileName}`);
    names.add(d.fileName);
    if (!Number.isSafeInteger(d.capacity) || d.capacity < 0) throw new RangeError(`OVF: bad capacity for ${d.fileName}`);
  }
}
