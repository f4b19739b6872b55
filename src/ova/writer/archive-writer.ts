/**
 * The OVA archive writer (push API: begin → openDisk(0..n-1) → finish), laying members out as
 * layout.ts describes. The OVF comes first and must state every disk's member size; the OVF
 * member's own size never depends on the disks (ovf/descriptor.ts reserves it), so both modes
 * produce the same layout:
 *
 *  - With plans (the sizes a measuring pass found, passes.ts): every header and the OVF are
 *    written final; each disk is checked against its plan as it ends. Works on a pipe.
 *  - Without plans ("one pass", seekable file only): the OVF is written with placeholders;
 *    each disk gets a header with size 0, its image is streamed right behind it, then the
 *    header is patched with the real size, and at the end the real OVF is written over the
 *    placeholder. Digests are computed while streaming (the manifest comes last). A qcow2
 *    member without a map (read-once input) uses the seekable data-first writer, and its
 *    digest is taken by reading the finished member back (the header cluster is written last).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { OutputError, outputErrorFrom } from '../../errors';
import { Qcow2StreamWriter } from '../../image/qcow2/stream-writer';
import { Qcow2Writer } from '../../image/qcow2/writer';
import type { BufferLease, DiskImageWriter, ImageWriteResult } from '../../io/disk';
import { pread } from '../../io/pread';
import { zeros } from '../../io/zero';
import { isRandomAccess, type RandomAccessTarget, type SequentialTarget } from '../../output/target';
import { tarEndBlocks, tarPadding } from '../../tar/header';
import { buildManifest, MemberDigest } from '../manifest';
import { buildOvf, buildPaddedOvf, ovfReservedBytes } from '../ovf/descriptor';
import { ovaMemberNames } from '../ovf/members';
import type { OvaVm } from '../ovf/model';
import type { OvaProfile } from '../settings';
import { encoderSettings, newVmdkWriter, writerSize, type EncoderSettings, type OvaDiskPlan } from './disk-encoders';
import { ovaArchiveSize, ovaMemberHeader } from './layout';
import type { OvaDiskResult, OvaMemberInfo, OvaWriteResult } from './options';

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

/** What the archive writer needs beyond the VM: encoders, member mtime, and the plans if measured. */
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
 * member). See the file comment for the two modes.
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
    this.settings = encoderSettings(options);
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
