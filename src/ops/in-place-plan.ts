/**
 * Which disks of a conversion go into existing devices or files (written in place, no `.part`),
 * and the checks made before a byte is written (docs/design/block-devices.md):
 *
 *  - option values (checkInPlaceOptions, before the input is opened): `targets` syntax, a path or
 *    a disk named twice, a regular file without `noCreate`, a missing path, contradictory options;
 *  - sizes (checkInPlaceCapacity, once the metadata is read): raw needs the virtual size; qcow2
 *    its exact size, which only a first pass over the disk data gives (allocationMapsFirstPass
 *    in ops/qcow2-to-pipe.ts: the allocation `measure` finds too), so a device at least as large
 *    as the fully allocated qcow2 needs no first pass, and a smaller one is measured first
 *    (Qcow2SizeUnknown); VMDK is refused.
 */
import * as fs from 'node:fs';
import { OutputError, UsageError } from '../errors';
import { qcow2FullyAllocatedSize } from '../image/qcow2/layout';
import type { ImageFormat } from '../image/types';
import { inPlaceKindOf } from '../output/in-place';

/** One `--target <disk>=<path>`: a disk selector (userdevice, VDI ref or uuid) and its device or file. */
export interface InPlaceTargetSpec {
  disk: string;
  path: string;
}

/** What checkInPlaceOptions needs of the conversion options. */
export interface InPlaceOptionFields {
  outFile?: string;
  outDir?: string;
  stdout?: unknown;
  disks?: string[];
  targets?: InPlaceTargetSpec[];
  noCreate?: boolean;
  targetIsZero?: boolean;
  format?: ImageFormat;
}

const NO_VMDK = 'VMDK (streamOptimized) cannot be written onto a device or into an existing file (its footer must end the file); use -O raw or -O qcow2';

/** Parses `--target` values of the form `<userdevice|ref>=<path>` (UsageError for anything else). */
export function parseTargetSpecs(values: readonly string[]): InPlaceTargetSpec[] {
  return values.map((v) => {
    const eq = v.indexOf('=');
    if (eq <= 0 || eq === v.length - 1) throw new UsageError(`--target ${JSON.stringify(v)}: expected <userdevice|ref>=<path>, e.g. --target 0=/dev/vg0/vm-disk0`);
    return { disk: v.slice(0, eq), path: v.slice(eq + 1) };
  });
}

/** Identity of an existing file or device: two names of one LV (/dev/vg/lv, /dev/dm-3) are the same target. */
function identity(p: string): string {
  const st = fs.statSync(p);
  return st.isBlockDevice() ? `b${st.rdev}` : `f${st.dev}:${st.ino}`;
}

/** Whether `outFile` is written in place: a block device always, an existing file with `noCreate`. */
export function outFileInPlace(outFile: string, noCreate: boolean): boolean {
  const kind = inPlaceKindOf(outFile);
  if (kind === 'block-device') return true;
  if (!noCreate) return false;
  if (kind === 'missing') throw new UsageError(`${outFile}: no such file (-n writes into an existing file; create it first, or drop -n)`);
  if (kind === 'other') throw new UsageError(`${outFile}: -n writes into a block device or a regular file`);
  return true;
}

/** Checks the in-place options before the input is opened; UsageError (exit 1) with one line. */
export function checkInPlaceOptions(o: InPlaceOptionFields): void {
  const targets = o.targets ?? [];
  const anyInPlace = targets.length > 0 || (o.outFile !== undefined && outFileInPlace(o.outFile, !!o.noCreate));
  if (o.noCreate && targets.length === 0 && o.outFile === undefined) throw new UsageError('-n (--no-create) writes into an existing file named with -o FILE or --target');
  if (o.targetIsZero && !anyInPlace) throw new UsageError('--target-is-zero applies to block devices and files written in place (-o /dev/…, -n, --target)');
  if (anyInPlace && o.format === 'vmdk') throw new UsageError(NO_VMDK);
  if (targets.length === 0) return;
  if (o.outFile !== undefined || o.stdout) throw new UsageError('--target names each disk\'s device or file; do not combine it with -o FILE or -o -');
  if (o.outDir !== undefined) throw new UsageError('--target writes only the named disks; do not combine it with -o DIR');
  if (o.disks?.length) throw new UsageError('--target already selects the disks to write; drop --disk');
  const disks = new Set<string>();
  const paths = new Map<string, string>();
  for (const t of targets) {
    if (disks.has(t.disk)) throw new UsageError(`--target names disk "${t.disk}" twice`);
    disks.add(t.disk);
    const kind = inPlaceKindOf(t.path);
    if (kind === 'missing') throw new UsageError(`--target ${t.disk}=${t.path}: no such device or file (create the LV, zvol or file first)`);
    if (kind === 'other') throw new UsageError(`--target ${t.disk}=${t.path}: not a block device or a regular file`);
    if (kind === 'file' && !o.noCreate) throw new UsageError(`--target ${t.disk}=${t.path} is a regular file: add -n to write into it in place`);
    const id = identity(t.path);
    const other = paths.get(id);
    if (other !== undefined) throw new UsageError(`--target: ${t.path} and ${other} are the same device or file; give each disk its own`);
    paths.set(id, t.path);
  }
}

/**
 * A qcow2 disk whose exact size is needed (its device is smaller than the fully allocated image)
 * but not known yet: the conversion measures it first and starts again (nothing was written).
 */
export class Qcow2SizeUnknown extends Error {
  constructor(readonly ref: string, readonly path: string, readonly capacity: number, readonly fullyAllocated: number) {
    super(`${path}: qcow2 size of disk ${ref} not measured`);
  }
}

/**
 * Refuses a target too small for the disk's image, before anything is written. `measured` is
 * the exact qcow2 size from a first pass, when there was one.
 */
export function checkInPlaceCapacity(
  format: ImageFormat,
  disk: { ref: string; userdevice: string; virtualSize: number },
  path: string,
  capacity: number,
  measured: number | undefined,
): void {
  if (format === 'vmdk') throw new UsageError(NO_VMDK);
  let needed: number;
  let what: string;
  if (format === 'raw') {
    needed = disk.virtualSize;
    what = 'the disk\'s virtual size';
  } else if (measured !== undefined) {
    needed = measured;
    what = 'the measured qcow2 image';
  } else {
    const full = qcow2FullyAllocatedSize(disk.virtualSize);
    if (capacity >= full) return;
    throw new Qcow2SizeUnknown(disk.ref, path, capacity, full);
  }
  if (capacity < needed) {
    throw new OutputError('OUTPUT_NO_SPACE', `${path} holds ${capacity} bytes, less than the ${needed} bytes of ${what} (disk ${disk.userdevice}); nothing was written`);
  }
}
