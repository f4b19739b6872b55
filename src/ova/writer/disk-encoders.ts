/**
 * How each disk member is encoded, and what the measuring pass learns about it (its plan). VMDK
 * members are streamOptimized (deflate, or level 0 'stored'); qcow2 members (profile 'ovirt')
 * use the "front" layout when the allocation map is known. Writers are deterministic (fixed CID,
 * fixed mtime), so a measured size is the size the writing pass produces.
 *
 * Measuring: qcow2 from the allocation map (`qcow2ExactFileSize`); VMDK by running the real
 * deflating writer into a byte counter (or, with `vmdkCompression: 'stored'`, from the
 * allocation map, `vmdkExactStoredSize`).
 */
import { createHash } from 'node:crypto';
import { AllocationMapBuilder, type AllocationMap } from '../../image/allocation-map';
import { qcow2ExactFileSize, type Qcow2Compat } from '../../image/qcow2/layout';
import { vmdkExactStoredSize } from '../../image/vmdk/size';
import { VmdkWriter } from '../../image/vmdk/writer';
import type { DiskImageWriter } from '../../io/disk';
import { CountingTarget } from '../../output/counting-target';
import type { SequentialTarget } from '../../output/target';
import type { OvaController, OvaDisk, OvaVm } from '../ovf/model';
import type { VmdkCompression } from '../settings';

/** What the measuring pass learns of one disk; the writing pass announces and checks it. */
export interface OvaDiskPlan {
  /** Exact member size. */
  fileSize: number;
  /** Guest bytes stored (OVF populatedSize). */
  populatedSize: number;
  /** Non-zero clusters (qcow2 front layout / stored VMDK). */
  map?: AllocationMap;
}

/** How disk members are encoded (the encoder fields of OvaWriteOptions). */
export interface EncoderSettings {
  vmdkCompression: VmdkCompression;
  vmdkLevel: number;
  vmdkWorkers?: number;
  qcow2Compat: Qcow2Compat;
}

/** The encoder settings with their defaults: deflate level 6, qcow2 v3 (compat 1.1). */
export function encoderSettings(o: Partial<EncoderSettings>): EncoderSettings {
  return { vmdkCompression: o.vmdkCompression ?? 'deflate', vmdkLevel: o.vmdkLevel ?? 6, vmdkWorkers: o.vmdkWorkers, qcow2Compat: o.qcow2Compat ?? '1.1' };
}

/** The guest size the image writers get: the capacity (whole sectors for VMDK). */
export function writerSize(disk: OvaDisk): number {
  return disk.capacity;
}

/** A reproducible VMDK CID per disk (bytes identical across runs and between passes). */
function vmdkCid(vm: OvaVm, disk: OvaDisk): number {
  const h = createHash('sha1').update(`${vm.id}\u0000${disk.fileName}`).digest();
  return h.readUInt32BE(0) % 0xfffffffe;
}

function vmdkAdapter(c: OvaController): 'ide' | 'lsilogic' {
  return c === 'ide' ? 'ide' : 'lsilogic';
}

/** The streamOptimized VMDK writer of one member. */
export function newVmdkWriter(target: SequentialTarget, vm: OvaVm, disk: OvaDisk, s: EncoderSettings): VmdkWriter {
  return new VmdkWriter(target, {
    virtualSize: writerSize(disk),
    level: s.vmdkCompression === 'stored' ? 0 : s.vmdkLevel,
    workers: s.vmdkWorkers,
    cid: vmdkCid(vm, disk),
    extentName: disk.fileName,
    adapterType: vmdkAdapter(disk.controller),
  });
}

/** A DiskImageWriter for the measuring pass; `finish()` resolves to the disk's plan. */
export function measuringWriter(vm: OvaVm, disk: OvaDisk, s: EncoderSettings, done: (plan: OvaDiskPlan) => void): DiskImageWriter {
  const size = writerSize(disk);
  if (disk.format === 'vmdk' && s.vmdkCompression === 'deflate') {
    const counter = new CountingTarget();
    const inner = newVmdkWriter(counter, vm, disk, s);
    return {
      write: (o, d) => inner.write(o, d),
      finish: async () => {
        const r = await inner.finish();
        done({ fileSize: r.imageSize, populatedSize: r.bytesWritten });
        return r;
      },
    };
  }
  const builder = new AllocationMapBuilder(size);
  return {
    write: (o, d) => builder.write(o, d),
    finish: async () => {
      const r = await builder.finish();
      const fileSize = disk.format === 'qcow2' ? qcow2ExactFileSize(size, r.map.count, r.map.usedRegions) : vmdkExactStoredSize(size, r.map);
      done({ fileSize, populatedSize: r.bytesWritten, map: r.map });
      return r;
    },
  };
}
