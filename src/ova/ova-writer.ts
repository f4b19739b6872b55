/**
 * OVA archive writer: XVA or disk images → one uncompressed ustar stream (formats.md §4.1, §4.5)
 *
 *   [hdr <vm>.ovf]  OVF, space-padded to a size fixed by the model alone   [pad 512]
 *   [hdr disk 1]    streamOptimized VMDK or qcow2                          [pad 512]
 *   …               (disks in References order = the order the input delivers them)
 *   [hdr <vm>.mf]   SHA256 lines for the OVF and every disk               [pad 512]
 *   2 × 512 zero bytes
 * One 512-byte header per member (no pax records: virt-v2v computes data offsets as
 * (block + 1) × 512); sizes ≥ 8 GiB use GNU base-256 in the ustar size field.
 *
 * The OVF comes first and must state every disk's member size. How each size is known:
 *
 *  - The OVF member's own size never depends on the disks: it is the length of the descriptor
 *    rendered with the widest possible numbers (`ovfReservedBytes`); the real descriptor is
 *    padded with spaces to that length. So the OVF can be reserved before anything is known and
 *    rewritten in place at the end, and every mode produces the same layout.
 *  - File output ("one pass", seekable): the OVF is written with placeholders; each disk gets
 *    a header with size 0, its image is streamed right behind it, then the header is patched
 *    with the real size and checksum, and at the end the real OVF is written over the
 *    placeholder. Digests are computed while streaming (the manifest comes last).
 *  - Pipe output ("two passes"): a first pass over the input measures every member exactly —
 *    qcow2 from the allocation map (`qcow2ExactFileSize`); VMDK by running the real deflating
 *    writer into a byte counter (or, with `vmdkCompression: 'stored'`, from the allocation map,
 *    `vmdkExactStoredSize`). The second pass writes the same bytes with the real sizes in place.
 *    Writers are deterministic (fixed CID, fixed mtime), so pipe and file output are identical.
 *  - qcow2 (profile 'ovirt'): with a re-readable input the two-pass "front" layout is used for
 *    files too (oVirt's measure-then-write, digest while streaming). With a read-once input
 *    (XVA on stdin) to a file, the seekable data-first writer is used, and its digest is taken
 *    by reading the finished member back (the header cluster is written last).
 *  - Read-once input to a pipe cannot work (sizes unknown before the first byte; VMDK cannot be
 *    padded to a bound because its footer must end the file): refused with an explanation.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { OutputError, outputErrorFrom, UsageError } from '../errors';
import { AllocationMapBuilder, type AllocationMap } from '../image/allocation-map';
import { streamDiskImage } from '../image/disk-reader';
import type { DiskReader } from '../io/disk';
import { QCOW2_COMPATS, qcow2ExactFileSize, type Qcow2Compat } from '../image/qcow2/layout';
import { openDiskImage } from '../image/qcow2/reader';
import { Qcow2StreamWriter } from '../image/qcow2/stream-writer';
import { Qcow2Writer } from '../image/qcow2/writer';
import { INPUT_IMAGE_FORMATS, type InputImageFormat } from '../image/types';
import { isRandomAccess, type RandomAccessTarget, type SequentialTarget } from '../output/target';
import type { BufferLease, DiskImageWriter, ImageWriteResult } from '../io/disk';
import { VmdkWriter, vmdkExactStoredSize } from '../image/vmdk/writer';
import { zeros } from '../io/zero';
import { pread } from '../io/pread';
import type { InputSource } from '../input/types';
import { encodeTarHeader, TAR_BLOCK, tarEndBlocks, tarPadding } from '../tar/header';
import { checkChoice, checkInteger } from '../option-checks';
import { FIRMWARES, type XvaMetadata } from '../xva/metadata/model';
import { BAD_CHUNK_POLICIES, readXva, type ReadXvaOptions } from '../xva/reader';
import { buildManifest, manifestBytes, MemberDigest } from './manifest';
import { buildOvf, buildPaddedOvf, ovfReservedBytes } from './ovf/descriptor';
import { ovaVmFromXvaMetadata, xvaDiskOrder } from './ovf/from-xva';
import { ovaBaseName, ovaDisks, ovaMemberNames } from './ovf/members';
import {
  deterministicUuid,
  ovaDiskFormat,
  parseBootOrder,
  type OvaBootDevice,
  type OvaController,
  type OvaDisk,
  type OvaFirmware,
  type OvaGuestOs,
  type OvaNic,
  type OvaVm,
} from './ovf/model';
import type { OvaProfile } from './settings';
import { OVA_PROFILES, VMDK_COMPRESSIONS } from './settings';

// ---------------------------------------------------------------------------------------------
// Options and results

import type { VmdkCompression } from './settings';
export type { VmdkCompression };

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

// ---------------------------------------------------------------------------------------------
// Pure size math

/** Bytes of one member: its header plus its data padded to the block size. */
export function tarMemberBytes(size: number): number {
  return TAR_BLOCK + size + tarPadding(size);
}

/** Exact OVA size from the member sizes (OVF, disks, manifest or undefined), end blocks included. */
export function ovaArchiveSize(ovfBytes: number, diskBytes: number[], manifestSize?: number): number {
  let n = tarMemberBytes(ovfBytes);
  for (const d of diskBytes) n += tarMemberBytes(d);
  if (manifestSize !== undefined) n += tarMemberBytes(manifestSize);
  return n + 2 * TAR_BLOCK;
}

/**
 * The single 512-byte ustar header of an OVA member: mode 0644, owner 0/0, no pax records;
 * sizes of 8 GiB and more in GNU base-256 (read by GNU tar, bsdtar, Python's tarfile).
 */
export function ovaMemberHeader(name: string, size: number, mtime: number): Buffer {
  return encodeTarHeader({ name, size, mode: 0o644, mtime, dialect: 'ustar' });
}

// ---------------------------------------------------------------------------------------------
// Targets

/** Forwards to a parent target, hashing and counting what passes through. */
class HashingTarget implements SequentialTarget {
  readonly digest = new MemberDigest();
  constructor(private readonly parent: SequentialTarget) {}
  get position(): number {
    return this.parent.position;
  }
  async write(data: Uint8Array): Promise<void> {
    this.digest.update(data);
    await this.parent.write(data);
  }
}

/** Discards bytes, counting them (the measuring pass of the VMDK writer). */
export class CountingTarget implements SequentialTarget {
  position = 0;
  async write(data: Uint8Array): Promise<void> {
    this.position += data.length;
  }
}

// ---------------------------------------------------------------------------------------------
// Per-disk plans (what the measuring pass learns)

export interface OvaDiskPlan {
  /** Exact member size. */
  fileSize: number;
  /** Guest bytes stored (OVF populatedSize). */
  populatedSize: number;
  /** Non-zero clusters (qcow2 front layout / stored VMDK). */
  map?: AllocationMap;
}

interface EncoderSettings {
  vmdkCompression: VmdkCompression;
  vmdkLevel: number;
  vmdkWorkers?: number;
  qcow2Compat: Qcow2Compat;
}

/** The guest size the image writers get: the capacity (whole sectors for VMDK). */
function writerSize(disk: OvaDisk): number {
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

function newVmdkWriter(target: SequentialTarget, vm: OvaVm, disk: OvaDisk, s: EncoderSettings): VmdkWriter {
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
function measuringWriter(vm: OvaVm, disk: OvaDisk, s: EncoderSettings, done: (plan: OvaDiskPlan) => void): DiskImageWriter {
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

// ---------------------------------------------------------------------------------------------
// The archive writer (push API: begin → openDisk(0..n-1) → finish)

export interface OvaArchiveOptions extends Partial<EncoderSettings> {
  profile: OvaProfile;
  mtime: number;
  manifest?: boolean;
  /** Exact per-disk plans from a measuring pass: required for a non-seekable target. */
  plans?: OvaDiskPlan[];
  outputPath?: string;
}

interface DiskState {
  headerPos: number;
  dataPos: number;
  size: number;
  sha256: string;
  populatedSize: number;
}

/**
 * Writes one OVA onto `target`. `vm.disks` lists the disks in member order; the caller opens
 * them in that order and feeds each writer completely (the writer's `finish()` closes the
 * member). See the file comment for the file/pipe strategies.
 */
export class OvaArchiveWriter {
  private readonly vm: OvaVm;
  private readonly names: { ovf: string; manifest: string };
  private readonly settings: EncoderSettings;
  private readonly start: number;
  private reservedOvf = 0;
  private ovfDataPos = -1;
  private ovfSha: string | undefined;
  private readonly done: DiskState[] = [];
  private active = false;
  private finished = false;

  constructor(private readonly target: SequentialTarget, vm: OvaVm, private readonly options: OvaArchiveOptions) {
    // Own copy: sizes are filled in as they become known.
    this.vm = { ...vm, disks: vm.disks.map((d) => ({ ...d })), nics: vm.nics.map((n) => ({ ...n })) };
    this.names = ovaMemberNames(vm.name);
    this.settings = {
      vmdkCompression: options.vmdkCompression ?? 'deflate',
      vmdkLevel: options.vmdkLevel ?? 6,
      vmdkWorkers: options.vmdkWorkers,
      qcow2Compat: options.qcow2Compat ?? '1.1',
    };
    this.start = target.position;
    const plans = options.plans;
    if (plans) {
      if (plans.length !== vm.disks.length) throw new RangeError(`OVA: ${plans.length} disk plans for ${vm.disks.length} disks`);
      plans.forEach((p, i) => {
        this.vm.disks[i]!.fileSize = p.fileSize;
        this.vm.disks[i]!.populatedSize = p.populatedSize;
      });
    } else if (!isRandomAccess(target)) {
      throw new OutputError('OUTPUT_UNSUPPORTED', 'OVA to a non-seekable output needs every disk measured first (internal: no plans given)');
    }
    for (const d of this.vm.disks) {
      if (Buffer.byteLength(d.fileName) > 100) throw new RangeError(`OVA member name too long for one ustar header: ${d.fileName}`);
    }
  }

  private header(name: string, size: number): Buffer {
    return ovaMemberHeader(name, size, this.options.mtime);
  }

  private async pad(size: number): Promise<void> {
    const n = tarPadding(size);
    if (n > 0) await this.target.write(zeros(n));
  }

  /** Writes the OVF member (final when sizes are planned, a placeholder otherwise). */
  async begin(): Promise<void> {
    this.reservedOvf = ovfReservedBytes(this.vm, this.options.profile);
    await this.target.write(this.header(this.names.ovf, this.reservedOvf));
    this.ovfDataPos = this.target.position;
    let body: Buffer;
    if (this.options.plans) {
      body = buildPaddedOvf(this.vm, this.options.profile, this.reservedOvf);
      this.ovfSha = createHash('sha256').update(body).digest('hex');
    } else {
      body = Buffer.from(buildOvf(this.vm, this.options.profile, { placeholders: true }), 'utf8');
    }
    if (body.length !== this.reservedOvf) throw new Error(`OVF body is ${body.length} bytes, reserved ${this.reservedOvf}`);
    await this.target.write(body);
    await this.pad(body.length);
  }

  /** Starts member `index`; the returned writer takes the disk's guest data (ascending). */
  openDisk(index: number): DiskImageWriter {
    if (this.ovfDataPos < 0) throw new Error('OvaArchiveWriter: begin() first');
    if (this.finished) throw new Error('OvaArchiveWriter: already finished');
    if (this.active) throw new Error('OvaArchiveWriter: the previous disk is not finished');
    if (index !== this.done.length) throw new OutputError('OUTPUT_IO', `OVA disks must be written in order: expected disk ${this.done.length + 1}, got ${index + 1}`);
    const disk = this.vm.disks[index];
    if (!disk) throw new RangeError(`OVA has no disk ${index + 1}`);
    this.active = true;
    const plan = this.options.plans?.[index];
    const target = this.target;
    const headerPos = target.position;
    let dataPos = -1;
    let inner: DiskImageWriter | undefined;
    let hashing: HashingTarget | undefined;
    let readBack = false;
    let started: Promise<void> | undefined;

    const start = (): Promise<void> =>
      (started ??= (async () => {
        await target.write(this.header(disk.fileName, plan?.fileSize ?? 0));
        dataPos = target.position;
        if (disk.format === 'vmdk') {
          hashing = new HashingTarget(target);
          inner = newVmdkWriter(hashing, this.vm, disk, this.settings);
        } else if (plan?.map) {
          hashing = new HashingTarget(target);
          inner = new Qcow2StreamWriter(hashing, { virtualSize: writerSize(disk), map: plan.map, compat: this.settings.qcow2Compat });
        } else {
          // Read-once input into a file: data-first qcow2, header cluster written last.
          inner = new Qcow2Writer(target as RandomAccessTarget, { virtualSize: writerSize(disk), compat: this.settings.qcow2Compat });
          readBack = true;
        }
      })());

    return {
      write: async (offset: number, data: Buffer, lease?: BufferLease): Promise<void> => {
        await start();
        await inner!.write(offset, data, lease);
      },
      finish: async (): Promise<ImageWriteResult> => {
        await start();
        const r = await inner!.finish();
        const size = target.position - dataPos;
        if (plan && size !== plan.fileSize) {
          throw new OutputError('OUTPUT_IO', `OVA disk ${disk.fileName}: wrote ${size} bytes but ${plan.fileSize} were announced in the OVF and tar header (did the input change between the two passes?)`);
        }
        if (plan && r.bytesWritten !== plan.populatedSize) {
          throw new OutputError('OUTPUT_IO', `OVA disk ${disk.fileName}: ${r.bytesWritten} bytes of data, but the measuring pass found ${plan.populatedSize} (did the input change between the two passes?)`);
        }
        await this.pad(size);
        if (!plan) await (target as RandomAccessTarget).pwrite(this.header(disk.fileName, size), headerPos);
        const sha256 = readBack ? await this.hashRegion(dataPos, size) : hashing!.digest.hex();
        disk.fileSize = size;
        disk.populatedSize = r.bytesWritten;
        this.done.push({ headerPos, dataPos, size, sha256, populatedSize: r.bytesWritten });
        this.active = false;
        return r;
      },
    };
  }

  /** SHA-256 of bytes already in the output file (read back through the fd, or the path). */
  private async hashRegion(position: number, length: number): Promise<string> {
    const fd = (this.target as { fd?: unknown }).fd;
    if (typeof fd === 'number') {
      try {
        return await hashFd(fd, position, length);
      } catch (err) {
        // A write-only descriptor (the usual `.part` file): fall back to the path.
        if ((err as NodeJS.ErrnoException).code !== 'EBADF' || !this.options.outputPath) throw outputErrorFrom(err, 'OVA (reading a qcow2 member back)');
      }
    }
    if (!this.options.outputPath) {
      throw new OutputError('OUTPUT_UNSUPPORTED', 'OVA: cannot read the qcow2 member back to hash it (give outputPath, or open the output read-write)');
    }
    const fh = await fs.promises.open(this.options.outputPath, 'r');
    try {
      return await hashFd(fh.fd, position, length);
    } finally {
      await fh.close();
    }
  }

  /** Manifest, end blocks, and (one-pass mode) the real OVF over its placeholder. */
  async finish(passes: 1 | 2 = this.options.plans ? 2 : 1): Promise<OvaWriteResult> {
    if (this.active) throw new Error('OvaArchiveWriter: a disk is still open');
    if (this.done.length !== this.vm.disks.length) {
      throw new OutputError('OUTPUT_IO', `OVA: only ${this.done.length} of ${this.vm.disks.length} disks were written`);
    }
    this.finished = true;
    let ovfBody: Buffer | undefined;
    if (!this.options.plans) {
      ovfBody = buildPaddedOvf(this.vm, this.options.profile, this.reservedOvf);
      this.ovfSha = createHash('sha256').update(ovfBody).digest('hex');
    }
    const ovf: OvaMemberInfo = { name: this.names.ovf, offset: this.ovfDataPos - this.start, size: this.reservedOvf, sha256: this.ovfSha! };
    const disks: OvaDiskResult[] = this.vm.disks.map((d, i) => ({
      name: d.fileName,
      offset: this.done[i]!.dataPos - this.start,
      size: this.done[i]!.size,
      sha256: this.done[i]!.sha256,
      capacity: d.capacity,
      populatedSize: this.done[i]!.populatedSize,
      format: d.format,
    }));
    let manifest: OvaMemberInfo | undefined;
    if (this.options.manifest !== false) {
      const body = buildManifest([{ name: ovf.name, sha256: ovf.sha256 }, ...disks.map((d) => ({ name: d.name, sha256: d.sha256 }))]);
      await this.target.write(this.header(this.names.manifest, body.length));
      const offset = this.target.position - this.start;
      await this.target.write(body);
      await this.pad(body.length);
      manifest = { name: this.names.manifest, offset, size: body.length, sha256: createHash('sha256').update(body).digest('hex') };
    }
    await this.target.write(tarEndBlocks());
    if (ovfBody) await (this.target as RandomAccessTarget).pwrite(ovfBody, this.ovfDataPos);
    const size = this.target.position - this.start;
    const expected = ovaArchiveSize(ovf.size, disks.map((d) => d.size), manifest?.size);
    if (size !== expected) throw new OutputError('OUTPUT_IO', `OVA: wrote ${size} bytes, layout says ${expected}`);
    return { size, passes, profile: this.options.profile, ovf, disks, manifest, vm: this.vm };
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs: one pass over the source, delivering the VM model and then each disk in order.

interface OvaPassConsumer {
  begin(vm: OvaVm): Promise<void>;
  openDisk(index: number): DiskImageWriter | Promise<DiskImageWriter>;
}

interface OvaInput {
  reopenable: boolean;
  /** Why a second pass is impossible (for messages). */
  readOnceReason: string;
  run(consumer: OvaPassConsumer, phase: 'measure' | 'write'): Promise<void>;
  close(): Promise<void>;
}

function vmFromSettings(profile: OvaProfile, s: OvaVmSettings, readers: DiskReader[], disks: OvaDiskInput[]): OvaVm {
  const vmId = profile === 'ovirt' ? s.uuid ?? deterministicUuid(`vm:${s.name}`) : ovaBaseName(s.name);
  const anyBootable = disks.some((d) => d.bootable);
  const specs = readers.map((r, i) => ({
    name: disks[i]!.name ?? baseName(disks[i]!.path),
    description: disks[i]!.description,
    virtualSize: r.virtualSize,
    bootable: anyBootable ? disks[i]!.bootable === true : i === 0,
    controller: disks[i]!.controller,
  }));
  const bootOrder = typeof s.bootOrder === 'string' ? parseBootOrder(s.bootOrder) : s.bootOrder ?? ['disk'];
  return {
    id: vmId,
    name: s.name,
    description: s.description ?? '',
    vcpus: s.vcpus ?? 1,
    memoryBytes: s.memoryBytes ?? 1024 * 1024 * 1024,
    firmware: s.firmware ?? 'bios',
    guestOs: s.guestOs ?? 'other',
    disks: ovaDisks(profile, vmId, s.name, specs),
    nics: s.nics ?? [],
    bootOrder: bootOrder.length > 0 ? bootOrder : ['disk'],
  };
}

function baseName(p: string): string {
  const parts = p.split(/[\\/]/);
  return parts[parts.length - 1] || p;
}

async function disksInput(profile: OvaProfile, o: OvaFromDisksOptions): Promise<OvaInput> {
  if (o.disks.length === 0) throw new UsageError('OVA export needs at least one disk');
  const readers: DiskReader[] = [];
  try {
    for (const d of o.disks) readers.push(await openDiskImage(d.path, d.format));
  } catch (err) {
    await Promise.all(readers.map((r) => r.close()));
    throw err;
  }
  const vm = vmFromSettings(profile, o.vm, readers, o.disks);
  return {
    reopenable: true,
    readOnceReason: '',
    async run(consumer, phase) {
      await consumer.begin(vm);
      for (let i = 0; i < readers.length; i++) {
        const name = vm.disks[i]!.fileName;
        o.onProgress?.({ phase, kind: 'disk-start', disk: i, disks: readers.length, name });
        const w = await consumer.openDisk(i);
        await streamDiskImage(readers[i]!, w, { signal: o.signal });
        o.onProgress?.({ phase, kind: 'disk-done', disk: i, disks: readers.length, name, bytes: readers[i]!.virtualSize });
      }
    },
    async close() {
      await Promise.all(readers.map((r) => r.close()));
    },
  };
}

function xvaInput(profile: OvaProfile, o: OvaFromXvaOptions): OvaInput {
  let opened = 0;
  return {
    reopenable: o.xva.reopenable,
    readOnceReason: `${o.xva.name} can be read only once (stdin or a one-shot stream)`,
    async run(consumer, phase) {
      if (opened > 0 && !o.xva.reopenable) throw new UsageError(`${o.xva.name} cannot be read a second time`);
      opened++;
      const source = await o.xva.open();
      let order: string[] = [];
      let total = 0;
      try {
        await readXva(
          source,
          {
            onMetadata: async (meta) => {
              o.onMetadata?.(meta);
              const vm = ovaVmFromXvaMetadata(meta, { profile, name: o.name, controller: o.controller, nicModel: o.nicModel });
              order = xvaDiskOrder(meta);
              total = order.length;
              await consumer.begin(vm);
            },
            openDisk: async (disk) => {
              const i = order.indexOf(disk.ref);
              if (i < 0) return undefined; // suspend image
              o.onProgress?.({ phase, kind: 'disk-start', disk: i, disks: total, name: disk.vdi.name });
              return consumer.openDisk(i);
            },
            onDiskDone: (disk, stats) => {
              const i = order.indexOf(disk.ref);
              if (i >= 0) o.onProgress?.({ phase, kind: 'disk-done', disk: i, disks: total, name: disk.vdi.name, bytes: stats.bytesPlaced });
            },
            onWarning: o.onWarning,
          },
          { ...o.readOptions, signal: o.signal ?? o.readOptions?.signal },
        );
      } finally {
        await source.close();
      }
    },
    async close() {},
  };
}

// ---------------------------------------------------------------------------------------------
// Strategy and entry points

function encoderSettings(o: OvaWriteOptions): EncoderSettings {
  return { vmdkCompression: o.vmdkCompression ?? 'deflate', vmdkLevel: o.vmdkLevel ?? 6, vmdkWorkers: o.vmdkWorkers, qcow2Compat: o.qcow2Compat ?? '1.1' };
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

async function writeWith(input: OvaInput, profile: OvaProfile, target: SequentialTarget, o: OvaWriteOptions): Promise<OvaWriteResult> {
  const s = encoderSettings(o);
  const mtime = o.mtime ?? Math.floor(Date.now() / 1000);
  const passes = choosePasses(input, profile, target, o.passes);
  try {
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

async function measureWith(input: OvaInput, profile: OvaProfile, o: OvaWriteOptions): Promise<OvaMeasureResult> {
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

export type WriteOvaOptions = (OvaFromDisksOptions & { xva?: undefined }) | (OvaFromXvaOptions & { disks?: undefined });

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

async function hashFd(fd: number, position: number, length: number): Promise<string> {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(4 * 1024 * 1024, Math.max(1, length)));
  let done = 0;
  while (done < length) {
    const n = await pread(fd, buf, 0, Math.min(buf.length, length - done), position + done);
    if (n <= 0) throw new OutputError('OUTPUT_IO', 'OVA: short read while hashing a member');
    h.update(buf.subarray(0, n));
    done += n;
  }
  return h.digest('hex');
}
