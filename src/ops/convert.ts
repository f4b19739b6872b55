/**
 * convertXva: the library's main entry. One streaming pass over an XVA writes every selected
 * disk as an image file (`<vm>-<userdevice>.<ext>` in `outDir`), or one disk to a stream.
 *
 * Output discipline: each image is written as `<name>.part` and renamed into place only when
 * its disk is complete and verified; on any error every `.part` of this conversion is removed.
 * Existing outputs are refused before any disk data is read, unless `force`.
 *
 * In place (`targets`, a block device as `outFile`, `noCreate`): the disk goes straight into an
 * existing device or file (output/in-place.ts), opened and size-checked for every disk before
 * the first data byte; no `.part`, so a failure leaves what was written and says so.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Writable } from 'node:stream';
import { OutputError, UsageError, XvaError, XvaFormatError } from '../errors';
import { InPlaceOutput, keptInPlaceNote, type InPlaceKind } from '../output/in-place';
import { checkInPlaceCapacity, checkInPlaceOptions, outFileInPlace, Qcow2SizeUnknown, type InPlaceTargetSpec } from './in-place-plan';
import { createImageWriter, imageExtension } from '../image/create-writer';
import { QCOW2_COMPATS, qcow2ExactFileSize, type Qcow2Compat } from '../image/qcow2/layout';
import { IMAGE_FORMATS, type ImageFormat } from '../image/types';
import type { DiskImageWriter, ImageWriteResult } from '../io/disk';
import type { SequentialTarget } from '../output/target';
import { checkInputOptions } from '../input/open';
import { checkChoice } from '../option-checks';
import type { InputSource, OpenInputOptions } from '../input/types';
import { diskBaseName, insideDir, NameAllocator, sanitizeName } from '../output/naming';
import { PartFile } from '../output/part-file';
import { imageWritePolicy } from '../output/write-policy';
import { StreamTarget } from '../output/targets';
import type { ChecksumKind } from '../xva/format';
import type { DiskInfo, XvaMetadata } from '../xva/metadata/model';
import { BAD_CHUNK_POLICIES, readXva, type BadChunk, type BadChunkPolicy, type DiskReadStats, type XvaProgress } from '../xva/reader';
import { selectDisks } from '../xva/select-disks';
import { allocationMapsFirstPass, twoPassQcow2ToStream } from './qcow2-to-pipe';
import { withXvaInput } from './with-xva-input';

export interface ConvertOptions extends OpenInputOptions {
  /** Output directory (default: current directory). Created if missing. */
  outDir?: string;
  /** Write the single selected disk to this file path instead (format from `format` or the extension). */
  outFile?: string;
  /** Write the single selected disk to this stream (e.g. process.stdout). */
  stdout?: Writable;
  format?: ImageFormat;
  /** qcow2 version: '1.1' (v3, default) or '0.10' (v2). */
  qcow2Compat?: Qcow2Compat;
  /** Replace existing outputs. */
  force?: boolean;
  /** fsync each image before giving it its final name (default true; false = `--no-sync`). */
  sync?: boolean;
  /**
   * Write image data with O_DIRECT where the file system allows it (`--direct-io`, like
   * `qemu-img convert -t none`). Default false: the page cache, with writeback started behind
   * the writer (output/write-policy.ts; docs/design/write-policy.md says why).
   */
  directIo?: boolean;
  /** Disks to write, by userdevice ("0") or VDI ref ("Ref:998"); default every data disk. */
  disks?: string[];
  /**
   * Write each named disk into its existing block device or file, in place (`--target`); only
   * these disks are written. Regular files need `noCreate`.
   */
  targets?: InPlaceTargetSpec[];
  /** `outFile` (or a `targets` path) is an existing regular file to write into in place: never created or truncated (`-n`). */
  noCreate?: boolean;
  /** In-place targets read as zeros where never written (a fresh thin LV or zvol): holes are not written (`--target-is-zero`). */
  targetIsZero?: boolean;
  /** Also write a suspend image (guest memory) if the export carries one. */
  includeSuspendImage?: boolean;
  /** What to do with chunks whose checksum fails (default 'fail'). */
  onBadChunk?: BadChunkPolicy;
  /** Put outputs in `<outDir>/<vm-name>/` (batch conversions of several VMs). */
  perVmSubdir?: boolean;
  /** Shared name allocator (batch mode: avoids clashes between inputs). */
  names?: NameAllocator;
  onProgress?(progress: XvaProgress): void;
  onWarning?(message: string): void;
  onMetadata?(meta: XvaMetadata): void;
  signal?: AbortSignal;
  /** Overrides the image writer (the two-pass qcow2 stream path uses it). */
  createWriter?(disk: DiskInfo, target: SequentialTarget): DiskImageWriter;
}

export interface ConvertedDisk {
  ref: string;
  name: string;
  userdevice: string;
  bootable: boolean;
  virtualSize: number;
  /** Output path, or "-" for a stream, or null when the disk was not written. */
  path: string | null;
  format: ImageFormat;
  checksum: ChecksumKind | null;
  chunks: number;
  keepAlives: number;
  bytesWritten: number;
  zeroBytesSkipped: number;
  imageSize: number;
  /** Written in place into an existing device or file; null for a new file or a stream. */
  inPlace: InPlaceResult | null;
}

export interface InPlaceResult {
  kind: InPlaceKind;
  /** Bytes the device or file holds (the image is at its start; the rest is untouched). */
  size: number;
  /** Zeros written over holes (0 with `targetIsZero`, where holes are left alone). */
  zeroBytesWritten: number;
  /** Holes were left unwritten (`targetIsZero`). */
  holesSkipped: boolean;
}

export interface ConvertSummary {
  input: string;
  compression: string;
  codec: string;
  vm: {
    name: string;
    description: string;
    uuid: string;
    vcpus: number;
    memoryBytes: number;
    hvm: boolean;
    firmware: string | null;
    isTemplate: boolean;
  };
  disks: ConvertedDisk[];
  /** Userdevices of the VM's data disks that were not written (not selected). */
  unselectedDisks: string[];
  cdroms: XvaMetadata['cdroms'];
  vifs: XvaMetadata['vifs'];
  checksum: ChecksumKind | null;
  badChunks: BadChunk[];
  warnings: string[];
  tarBytes: number;
  seconds: number;
}

function summaryVm(meta: XvaMetadata): ConvertSummary['vm'] {
  const vm = meta.vm;
  return {
    name: vm.name,
    description: vm.description,
    uuid: vm.uuid,
    vcpus: vm.vcpus,
    memoryBytes: vm.memoryBytes,
    hvm: vm.hvm,
    firmware: vm.firmware ?? null,
    isTemplate: vm.isTemplate,
  };
}

function inPlaceResult(out: InPlaceOutput | undefined, res: ImageWriteResult | undefined, targetIsZero: boolean): InPlaceResult | null {
  if (!out) return null;
  return { kind: out.kind, size: out.capacity, zeroBytesWritten: res?.zeroBytesWritten ?? 0, holesSkipped: targetIsZero };
}

/** Infers the image format from a file name's extension (`.qcow2`, `.vmdk`, `.raw`/`.img`). */
export function formatFromPath(p: string): ImageFormat | undefined {
  const ext = path.extname(p).toLowerCase();
  if (ext === '.qcow2' || ext === '.qcow') return 'qcow2';
  if (ext === '.vmdk') return 'vmdk';
  if (ext === '.raw' || ext === '.img') return 'raw';
  return undefined;
}

/** Checks the closed-set options of a conversion (UsageError for a value outside its set). */
export function checkConvertOptions(options: Pick<ConvertOptions, 'format' | 'qcow2Compat' | 'onBadChunk'> & OpenInputOptions): void {
  checkChoice(options.format, IMAGE_FORMATS, 'format');
  checkChoice(options.qcow2Compat, QCOW2_COMPATS, 'qcow2Compat');
  checkChoice(options.onBadChunk, BAD_CHUNK_POLICIES, 'onBadChunk');
  checkInputOptions(options);
}

export async function convertXva(input: string | InputSource, options: ConvertOptions = {}): Promise<ConvertSummary> {
  checkConvertOptions(options);
  checkInPlaceOptions(options);
  try {
    return await convertPass(input, options, new Map());
  } catch (err) {
    if (!(err instanceof Qcow2SizeUnknown)) throw err;
    // Nothing was written: measure the qcow2 images exactly, then convert with those sizes.
    return convertPass(input, options, await measureForDevices(input, options, err));
  }
}

/** First pass for qcow2 onto devices smaller than the fully allocated image: the exact sizes. */
async function measureForDevices(input: string | InputSource, options: ConvertOptions, unknown: Qcow2SizeUnknown): Promise<Map<string, number>> {
  if (typeof input !== 'string' || input === '-') {
    throw new UsageError(
      `${unknown.path} holds ${unknown.capacity} bytes, less than a fully allocated qcow2 of this disk (${unknown.fullyAllocated}); ` +
        'the exact size needs a first pass over the input and standard input cannot be read twice: save the XVA to a file first, or use a larger device',
    );
  }
  const maps = await allocationMapsFirstPass(input, { ...options, disks: options.targets?.map((t) => t.disk) ?? options.disks });
  // The size `xva2img measure -O qcow2` reports, and the writer then produces (docs/output-formats.md §1.6).
  return new Map([...maps].map(([ref, map]) => [ref, qcow2ExactFileSize(map.stats.virtualSize, map.stats.allocatedClusters, map.stats.usedL2Tables)]));
}

async function convertPass(input: string | InputSource, options: ConvertOptions, measuredQcow2: Map<string, number>): Promise<ConvertSummary> {
  const started = Date.now();
  const format: ImageFormat = options.format ?? (options.outFile ? formatFromPath(options.outFile) : undefined) ?? 'raw';
  if (options.stdout && options.outFile) throw new UsageError('choose either a stream or an output file, not both');
  if (options.stdout && format === 'qcow2' && !options.createWriter) {
    // Pass 1 maps the disk, pass 2 is this conversion again with the streaming writer on that map.
    return twoPassQcow2ToStream(input, options, (createWriter) => convertXva(input, { ...options, format: 'qcow2', createWriter }));
  }
  const makeWriter = (disk: DiskInfo, target: SequentialTarget): DiskImageWriter =>
    options.createWriter ? options.createWriter(disk, target) : createImageWriter(format, target, disk.virtualSize, options);
  return withXvaInput(input, options, async (source) => {
    const parts: PartFile[] = [];
    const inPlace = new Map<string, InPlaceOutput>(); // ref -> opened device or file
    const inPlaceStarted = new Set<InPlaceOutput>();
    const results = new Map<string, { path: string | null; res?: ImageWriteResult; stats?: DiskReadStats }>();
    let selected: DiskInfo[] = [];
    let unselected: string[] = [];
    const planned = new Map<string, string>(); // ref -> final path
    // Names taken from the allocator (ref -> name), and the refs whose image got its final name:
    // if this conversion fails, every name that has no file under it is given back.
    let names: NameAllocator | undefined;
    const claimed = new Map<string, string>();
    const committed = new Set<string>();
    let streamTarget: StreamTarget | undefined;
    try {
      const read = await readXva(
        source,
        {
          onMetadata: (meta) => {
            options.onMetadata?.(meta);
            const selectors = options.targets?.map((t) => t.disk) ?? options.disks;
            // `--disk` names a set (selectDisks); each `--target` is one output, so a disk named
            // twice there is kept, and refused below.
            selected = selectDisks(meta, selectors, options.includeSuspendImage, !!options.targets);
            unselected = meta.disks.filter((d) => !d.isSuspendImage && !selected.includes(d)).map((d) => d.userdevice);
            if (selected.length === 0) {
              // A metadata-only export, or an ova.xml that attaches no disk to the VM: exiting 0
              // with no image would look like success.
              throw new XvaFormatError('XVA_MISSING_DISK', `VM "${meta.vm.name}" has no data disk in this archive (metadata-only export, or only CD drives): nothing to convert`);
            }
            if ((options.stdout || options.outFile) && selected.length !== 1) {
              const list = selected.map((d) => d.userdevice).join(', ');
              throw new UsageError(`this VM has ${selected.length} disks (${list}); choose one with --disk to write a single output`);
            }
            if (options.targets) {
              selected.forEach((d, i) => {
                if (selected.indexOf(d) !== i) throw new UsageError(`--target names disk ${d.userdevice} (${d.ref}) twice`);
              });
              options.targets.forEach((t, i) => planned.set(selected[i]!.ref, t.path));
            } else if (options.outFile) {
              planned.set(selected[0]!.ref, outFileInPlace(options.outFile, !!options.noCreate) ? options.outFile : path.resolve(options.outFile));
            } else if (!options.stdout) {
              let dir = options.outDir ?? '.';
              const vmName = sanitizeName(meta.vm.name);
              if (options.perVmSubdir) dir = path.join(dir, vmName);
              try {
                fs.mkdirSync(dir, { recursive: true });
              } catch (err) {
                throw new OutputError('OUTPUT_IO', `cannot create output directory ${dir}: ${(err as Error).message}`);
              }
              names = options.names ?? new NameAllocator();
              for (const d of selected) {
                const base = diskBaseName(meta.vm.name, d.userdevice);
                const name = names.allocate(base, imageExtension(format));
                claimed.set(d.ref, name);
                planned.set(d.ref, insideDir(dir, name));
              }
            }
            if (options.targets || (options.outFile && outFileInPlace(options.outFile, !!options.noCreate))) {
              // Open and size-check every device now: a busy or small one is refused before any byte.
              for (const d of selected) {
                const p = planned.get(d.ref)!;
                const out = InPlaceOutput.open(p, { targetIsZero: options.targetIsZero, policy: imageWritePolicy(options) });
                inPlace.set(d.ref, out);
                checkInPlaceCapacity(format, d, p, out.capacity, measuredQcow2.get(d.ref));
              }
              return;
            }
            // Refuse existing outputs now, before reading gigabytes.
            if (!options.force) {
              for (const p of planned.values()) {
                if (fs.existsSync(p)) throw new OutputError('OUTPUT_EXISTS', `${p} already exists (use --force to overwrite)`);
              }
            }
          },
          openDisk: async (disk): Promise<DiskImageWriter | undefined> => {
            if (!selected.includes(disk)) return undefined;
            if (options.stdout) {
              streamTarget = new StreamTarget(options.stdout, 'standard output');
              results.set(disk.ref, { path: '-' });
              return makeWriter(disk, streamTarget);
            }
            // The device or the .part file is committed right after its writer completes (the reader calls finish()).
            const device = inPlace.get(disk.ref);
            if (device) inPlaceStarted.add(device);
            const output = device ?? (await PartFile.create(planned.get(disk.ref)!, !!options.force, imageWritePolicy(options)));
            if (output instanceof PartFile) parts.push(output);
            results.set(disk.ref, { path: planned.get(disk.ref)! });
            const writer = makeWriter(disk, output.target);
            return {
              write: (o, d, lease) => writer.write(o, d, lease),
              finish: async () => {
                const res = await writer.finish();
                await output.commit(options.sync !== false);
                committed.add(disk.ref);
                return res;
              },
            };
          },
          onDiskDone: (disk, stats, res) => {
            const r = results.get(disk.ref) ?? { path: null };
            results.set(disk.ref, { ...r, res, stats });
          },
          onProgress: options.onProgress,
          onWarning: options.onWarning,
        },
        { onBadChunk: options.onBadChunk, signal: options.signal },
      );
      if (streamTarget) await streamTarget.end();
      const meta = read.metadata;
      const disks: ConvertedDisk[] = meta.disks
        .filter((d) => selected.includes(d))
        .map((d) => {
          const r = results.get(d.ref);
          return {
            ref: d.ref,
            name: d.vdi.name,
            userdevice: d.userdevice,
            bootable: d.bootable,
            virtualSize: d.virtualSize,
            path: r?.path ?? null,
            format,
            checksum: r?.stats?.checksum ?? null,
            chunks: r?.stats?.chunks ?? 0,
            keepAlives: r?.stats?.keepAlives ?? 0,
            bytesWritten: r?.res?.bytesWritten ?? 0,
            zeroBytesSkipped: r?.res?.zeroBytesSkipped ?? 0,
            imageSize: r?.res?.imageSize ?? 0,
            inPlace: inPlaceResult(inPlace.get(d.ref), r?.res, !!options.targetIsZero),
          };
        });
      return {
        input: source.name,
        compression: source.compression,
        codec: source.codec,
        vm: summaryVm(meta),
        disks,
        unselectedDisks: unselected,
        cdroms: meta.cdroms,
        vifs: meta.vifs,
        checksum: read.checksum ?? null,
        badChunks: read.badChunks,
        warnings: read.warnings,
        tarBytes: read.tarBytes,
        seconds: (Date.now() - started) / 1000,
      };
    } catch (err) {
      await Promise.all([...parts.map((p) => p.abort()), ...[...inPlace.values()].map((o) => o.abort())]);
      // Only now, with the .part files gone: a name this conversion leaves nothing under is free
      // for the next input again. A committed image (an earlier disk of this VM) keeps its name,
      // and so does a .part that could not be removed.
      for (const [ref, name] of claimed) {
        const part = parts.find((p) => p.finalPath === planned.get(ref));
        if (!committed.has(ref) && !(part && fs.existsSync(part.partPath))) names?.release(name);
      }
      // withXvaInput adds the input's name.
      if (err instanceof XvaError) err.message += keptInPlaceNote([...inPlaceStarted].map((o) => o.path), 'before the failure');
      throw err;
    } finally {
      for (const o of inPlace.values()) o.closeSync(); // committed or aborted already; never left open
    }
  });
}
