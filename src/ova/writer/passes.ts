/**
 * One or two passes over the input (docs/output-formats.md §4.5). Every OVA has the same layout;
 * what differs is when the disk sizes become known:
 *
 *  - File output ("one pass", seekable): sizes are patched in at the end (archive-writer.ts).
 *  - Pipe output ("two passes"): a first pass over the input measures every member exactly
 *    (disk-encoders.ts); the second pass writes the same bytes with the real sizes in place.
 *    Writers are deterministic, so pipe and file output are identical.
 *  - qcow2 (profile 'ovirt'): with a re-readable input the two-pass "front" layout is used for
 *    files too (oVirt's measure-then-write, digest while streaming). With a read-once input
 *    (XVA on stdin) to a file, one pass with the seekable data-first writer.
 *  - Read-once input to a pipe cannot work (sizes unknown before the first byte; VMDK cannot be
 *    padded to a bound because its footer must end the file): refused with an explanation.
 *
 * An input (disk-images-input.ts, xva-input.ts) runs one pass over its source, delivering the
 * VM model and then each disk in order, to the measuring pass or to the archive writer.
 */
import { OutputError, UsageError } from '../../errors';
import type { DiskImageWriter } from '../../io/disk';
import { isRandomAccess, type SequentialTarget } from '../../output/target';
import { manifestBytes } from '../manifest';
import { ovfReservedBytes } from '../ovf/descriptor';
import { ovaMemberNames } from '../ovf/members';
import { ovaDiskFormat, type OvaVm } from '../ovf/model';
import type { OvaProfile } from '../settings';
import { OvaArchiveWriter } from './archive-writer';
import { encoderSettings, measuringWriter, type EncoderSettings, type OvaDiskPlan } from './disk-encoders';
import { ovaArchiveSize } from './layout';
import type { OvaMeasureResult, OvaWriteOptions, OvaWriteResult } from './options';

/** What one pass delivers to: the VM model first, then a writer for each disk in order. */
export interface OvaPassConsumer {
  begin(vm: OvaVm): Promise<void>;
  openDisk(index: number): DiskImageWriter | Promise<DiskImageWriter>;
}

/** A source of the VM and its disks that can run a pass (and, when reopenable, a second one). */
export interface OvaInput {
  reopenable: boolean;
  /** Why a second pass is impossible (for messages). */
  readOnceReason: string;
  run(consumer: OvaPassConsumer, phase: 'measure' | 'write'): Promise<void>;
  close(): Promise<void>;
}

/** Same VM in both passes (a re-read input must not change). */
function sameModel(a: OvaVm, b: OvaVm): boolean {
  const strip = (v: OvaVm): string => JSON.stringify({ ...v, disks: v.disks.map((d) => ({ ...d, fileSize: undefined, populatedSize: undefined })) });
  return strip(a) === strip(b);
}

async function measurePass(input: OvaInput, s: EncoderSettings): Promise<{ vm: OvaVm; plans: OvaDiskPlan[] }> {
  let vm: OvaVm | undefined;
  const plans: OvaDiskPlan[] = [];
  await input.run(
    {
      begin: async (v) => {
        vm = v;
      },
      openDisk: (i) => measuringWriter(vm!, vm!.disks[i]!, s, (p) => (plans[i] = p)),
    },
    'measure',
  );
  if (!vm) throw new OutputError('OUTPUT_IO', 'OVA: the input delivered no VM');
  for (let i = 0; i < vm.disks.length; i++) {
    if (!plans[i]) throw new OutputError('OUTPUT_IO', `OVA: disk ${i + 1} (${vm.disks[i]!.name}) was not found in the input`);
  }
  return { vm, plans };
}

function choosePasses(input: OvaInput, profile: OvaProfile, target: SequentialTarget, requested: OvaWriteOptions['passes']): 1 | 2 {
  const seekable = isRandomAccess(target);
  if (requested === 1) {
    if (!seekable) throw new UsageError('one-pass OVA output needs a seekable file (tar headers and the OVF are patched at the end)');
    return 1;
  }
  if (requested === 2 || !seekable || (profile === 'ovirt' && input.reopenable)) {
    if (!input.reopenable) {
      const why = ovaDiskFormat(profile) === 'vmdk'
        ? 'a streamOptimized VMDK\'s size depends on how its data compresses, and it cannot be padded (its footer must end the member)'
        : 'a qcow2 image\'s size depends on which clusters hold data';
      throw new UsageError(
        `cannot stream this OVA to a pipe: the OVF and every tar header need each disk's exact size before the first byte, ` +
          `${why}, so the input must be read twice (measure, then write) — but ${input.readOnceReason}. ` +
          'Write the OVA to a file instead (-o vm.ova), or give the XVA as a file path.',
      );
    }
    return 2;
  }
  return 1;
}

/** Writes the OVA in one or two passes over `input` (see the file comment), then closes it. */
export async function writeWith(input: OvaInput, profile: OvaProfile, target: SequentialTarget, o: OvaWriteOptions): Promise<OvaWriteResult> {
  const s = encoderSettings(o);
  const mtime = o.mtime ?? Math.floor(Date.now() / 1000);
  try {
    // Inside the try: a refused choice (one pass asked for on a pipe) still closes the inputs.
    const passes = choosePasses(input, profile, target, o.passes);
    let measured: { vm: OvaVm; plans: OvaDiskPlan[] } | undefined;
    if (passes === 2) measured = await measurePass(input, s);
    let archive: OvaArchiveWriter | undefined;
    await input.run(
      {
        begin: async (vm) => {
          if (measured && !sameModel(measured.vm, vm)) throw new OutputError('OUTPUT_IO', 'OVA: the input changed between the measuring pass and the writing pass');
          archive = new OvaArchiveWriter(target, vm, { ...s, profile, mtime, manifest: o.manifest, plans: measured?.plans, outputPath: o.outputPath });
          await archive.begin();
        },
        openDisk: (i) => archive!.openDisk(i),
      },
      'write',
    );
    if (!archive) throw new OutputError('OUTPUT_IO', 'OVA: the input delivered no VM');
    return await archive.finish(passes);
  } finally {
    await input.close();
  }
}

/** Sizes of every member and of the whole OVA from the measuring pass alone, then closes `input`. */
export async function measureWith(input: OvaInput, profile: OvaProfile, o: OvaWriteOptions): Promise<OvaMeasureResult> {
  try {
    const { vm, plans } = await measurePass(input, encoderSettings(o));
    const sized: OvaVm = { ...vm, disks: vm.disks.map((d, i) => ({ ...d, fileSize: plans[i]!.fileSize, populatedSize: plans[i]!.populatedSize })) };
    const names = ovaMemberNames(vm.name);
    const ovfSize = ovfReservedBytes(vm, profile);
    const mf = o.manifest === false ? undefined : manifestBytes([names.ovf, ...vm.disks.map((d) => d.fileName)]);
    return {
      size: ovaArchiveSize(ovfSize, plans.map((p) => p.fileSize), mf),
      profile,
      ovf: { name: names.ovf, size: ovfSize },
      disks: sized.disks.map((d) => ({ name: d.fileName, size: d.fileSize!, capacity: d.capacity, populatedSize: d.populatedSize!, format: d.format })),
      manifest: mf === undefined ? undefined : { name: names.manifest, size: mf },
      vm: sized,
    };
  } finally {
    await input.close();
  }
}
