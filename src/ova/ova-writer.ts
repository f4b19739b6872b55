/**
 * OVA export: XVA or disk images → one uncompressed ustar stream holding the OVF descriptor,
 * the disks and a manifest (docs/output-formats.md §4.1, §4.5). The parts, in data-flow order:
 *
 *   xva-input.ts / disk-images-input.ts   the VM model (ovf/from-xva.ts) and each disk's data
 *   passes.ts                             one pass (seekable file) or measure-then-write (pipe)
 *   disk-encoders.ts                      each disk as VMDK or qcow2, and its measured size
 *   archive-writer.ts                     headers, OVF (ovf/descriptor.ts), disks, manifest
 *   layout.ts                             member sizes and headers: the archive's exact size
 */
import { UsageError } from '../errors';
import { QCOW2_COMPATS } from '../image/qcow2/layout';
import { INPUT_IMAGE_FORMATS } from '../image/types';
import { checkChoice, checkInteger } from '../option-checks';
import type { SequentialTarget } from '../output/target';
import { FIRMWARES } from '../xva/metadata/model';
import { BAD_CHUNK_POLICIES } from '../xva/reader';
import { OVA_PROFILES, VMDK_COMPRESSIONS, type OvaProfile } from './settings';
import { disksInput } from './writer/disk-images-input';
import type { OvaFromDisksOptions, OvaFromXvaOptions, OvaMeasureResult, OvaWriteResult, WriteOvaOptions } from './writer/options';
import { measureWith, writeWith } from './writer/passes';
import { xvaInput } from './writer/xva-input';

export type {
  OvaDiskInput,
  OvaDiskResult,
  OvaFromDisksOptions,
  OvaFromXvaOptions,
  OvaMeasureResult,
  OvaMemberInfo,
  OvaProgressEvent,
  OvaVmSettings,
  OvaWriteOptions,
  OvaWriteResult,
  WriteOvaOptions,
  XvaOvaSource,
} from './writer/options';

/**
 * Checks the closed-set and numeric options (UsageError for a value outside its set or range)
 * and returns the profile.
 */
function checkedProfile(o: WriteOvaOptions): OvaProfile {
  checkChoice(o.vmdkCompression, VMDK_COMPRESSIONS, 'vmdkCompression');
  checkInteger(o.vmdkLevel, 'vmdkLevel', 0, 9);
  checkChoice(o.qcow2Compat, QCOW2_COMPATS, 'qcow2Compat');
  if (o.xva) {
    checkChoice(o.readOptions?.onBadChunk, BAD_CHUNK_POLICIES, 'readOptions.onBadChunk');
  } else if (o.vm) {
    checkInteger(o.vm.vcpus, 'vcpus', 1);
    checkInteger(o.vm.memoryBytes, 'memoryBytes', 1);
    checkChoice(o.vm.firmware, FIRMWARES, 'firmware');
    for (const d of o.disks ?? []) checkChoice(d.format, INPUT_IMAGE_FORMATS, `format of disk ${d.path}`);
  }
  return checkChoice(o.profile, OVA_PROFILES, 'profile') ?? 'vmware';
}

/** OVA from disk images, onto a FileTarget (one pass) or a StreamTarget (two passes). */
export async function writeOvaFromDisks(target: SequentialTarget, options: OvaFromDisksOptions): Promise<OvaWriteResult> {
  const profile = checkedProfile(options);
  return writeWith(await disksInput(profile, options), profile, target, options);
}

/** OVA from an XVA (its ova.xml gives the VM; its disks stream through the XVA reader). */
export async function writeOvaFromXva(target: SequentialTarget, options: OvaFromXvaOptions): Promise<OvaWriteResult> {
  const profile = checkedProfile(options);
  return writeWith(xvaInput(profile, options), profile, target, options);
}

/** Library entry: an OVA from an XVA (`xva`) or from disk images (`disks` + `vm`). */
export async function writeOva(target: SequentialTarget, options: WriteOvaOptions): Promise<OvaWriteResult> {
  if (options.xva) return writeOvaFromXva(target, options);
  if (options.disks) return writeOvaFromDisks(target, options);
  throw new UsageError('OVA export needs an XVA or at least one disk image');
}

/** Exact size of the OVA `writeOva` would write (reads the input once, writes nothing). */
export async function measureOva(options: WriteOvaOptions): Promise<OvaMeasureResult> {
  const profile = checkedProfile(options);
  if (options.xva) return measureWith(xvaInput(profile, options), profile, options);
  if (options.disks) return measureWith(await disksInput(profile, options), profile, options);
  throw new UsageError('OVA measure needs an XVA or at least one disk image');
}
