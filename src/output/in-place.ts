/**
 * Writing into an existing disk: a block device (an LV, a zvol, a loop or krbd device) or an
 * existing regular file named with `-n` (a preallocated image). docs/design/block-devices.md has
 * the rules; in short:
 *
 *  - never created, never truncated, never renamed: there is no `.part`. A failure or a signal
 *    leaves whatever was written so far on the device, and the caller must say so;
 *  - a block device is opened O_WRONLY|O_EXCL without O_CREAT: Linux then refuses it with EBUSY
 *    when it is mounted or held (another O_EXCL opener, a device-mapper or md member), reported
 *    as "in use" (exit 4);
 *  - its size comes from the kernel, `/sys/dev/block/MAJ:MIN/size` × 512 (stat says 0 for a
 *    device and Node has no BLKGETSIZE64 ioctl); an in-place file's size is its length;
 *  - nothing is written past that size (InPlaceTarget checks each write), and the length is
 *    never changed: a writer's `truncate` only asserts the image fits;
 *  - unwritten bytes are not known to read as zeros (`holesReadAsZero` false), unless the user
 *    says the target is zeroed (`--target-is-zero`): writers then write zeros over holes.
 */
import * as fs from 'node:fs';
import { OutputError, outputErrorFrom } from '../errors';
import { FileTarget, openDirect } from './targets';
import { FLUSH_BEHIND_BYTES, type ImageWritePolicy } from './write-policy';

export type InPlaceKind = 'block-device' | 'file';

/** What a path names for in-place writing: a block device, a regular file, nothing, or something else. */
export function inPlaceKindOf(p: string): InPlaceKind | 'missing' | 'other' {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return 'missing';
  }
  if (st.isBlockDevice()) return 'block-device';
  if (st.isFile()) return 'file';
  return 'other';
}

/** Linux dev_t → major/minor (glibc's gnu_dev_major/minor for the 32-bit encodings Node reports). */
export function deviceNumbers(rdev: number): { major: number; minor: number } {
  return { major: ((rdev >> 8) & 0xfff) >>> 0, minor: ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) >>> 0 };
}

/** A block device's size in bytes, from sysfs (sectors of 512 bytes whatever the logical block size). */
export function blockDeviceSize(path: string, rdev: number): number {
  const { major, minor } = deviceNumbers(rdev);
  const sysfs = `/sys/dev/block/${major}:${minor}/size`;
  let text: string;
  try {
    text = fs.readFileSync(sysfs, 'utf8');
  } catch (err) {
    throw new OutputError('OUTPUT_IO', `${path}: cannot read the device size from ${sysfs}: ${(err as Error).message}`, { cause: err });
  }
  const sectors = Number(text.trim());
  if (!Number.isSafeInteger(sectors) || sectors < 0) throw new OutputError('OUTPUT_IO', `${path}: unreadable device size "${text.trim()}" in ${sysfs}`);
  return sectors * 512;
}

/**
 * A FileTarget that never writes past `capacity` and never changes the length. `truncate` is
 * what writers call to set the final length; here it only checks that length fits.
 */
export class InPlaceTarget extends FileTarget {
  constructor(
    fd: number,
    label: string,
    readonly capacity: number,
    readonly holesReadAsZero: boolean,
    flushBehindBytes: number,
    directFd?: number,
  ) {
    super(fd, label, flushBehindBytes, directFd);
  }

  override async pwritev(chunks: Uint8Array[], position: number): Promise<void> {
    const end = position + chunks.reduce((n, c) => n + c.length, 0);
    if (end > this.capacity) throw this.tooSmall(end);
    await super.pwritev(chunks, position);
  }

  override async truncate(length: number): Promise<void> {
    if (length > this.capacity) throw this.tooSmall(length);
  }

  /** fdatasync: the data and what is needed to read it back (the length never changes here). */
  override async sync(): Promise<void> {
    if (this.flushError !== undefined) throw outputErrorFrom(this.flushError, this.label);
    await new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (e) => (e ? reject(outputErrorFrom(e, this.label)) : resolve())));
  }

  private tooSmall(needed: number): OutputError {
    return new OutputError('OUTPUT_NO_SPACE', `${this.label}: the image needs ${needed} bytes, more than its ${this.capacity}`);
  }
}

const open = new Set<InPlaceOutput>();

export interface InPlaceOpenOptions {
  /** The user says unwritten bytes read as zeros (`--target-is-zero`): holes are skipped. */
  targetIsZero?: boolean;
  policy?: Partial<ImageWritePolicy>;
}

/** One disk being written into an existing device or file. */
export class InPlaceOutput {
  private fd: number | undefined;
  private directFd: number | undefined;
  private done = false;
  readonly target: InPlaceTarget;

  private constructor(
    readonly path: string,
    readonly kind: InPlaceKind,
    readonly capacity: number,
    fd: number,
    directFd: number | undefined,
    options: InPlaceOpenOptions,
  ) {
    this.fd = fd;
    this.directFd = directFd;
    this.target = new InPlaceTarget(fd, path, capacity, !!options.targetIsZero, options.policy?.flushBehindBytes ?? FLUSH_BEHIND_BYTES, directFd);
    open.add(this);
  }

  /**
   * Opens `path` for writing in place. A block device gets O_EXCL (EBUSY → "in use"); a regular
   * file is opened without O_TRUNC; anything else is refused. Nothing is written here.
   */
  static open(path: string, options: InPlaceOpenOptions = {}): InPlaceOutput {
    const kind = inPlaceKindOf(path);
    if (kind === 'missing') throw new OutputError('OUTPUT_IO', `${path}: no such device or file (writing in place needs an existing one: create the LV or file first)`);
    if (kind === 'other') throw new OutputError('OUTPUT_UNSUPPORTED', `${path}: not a block device or a regular file`);
    const { O_WRONLY, O_EXCL } = fs.constants;
    let fd: number;
    try {
      fd = fs.openSync(path, kind === 'block-device' ? O_WRONLY | O_EXCL : O_WRONLY);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EBUSY') {
        throw new OutputError('OUTPUT_IN_USE', `${path} is in use (mounted, or held by another program or a device mapper); nothing was written`, { cause: err });
      }
      throw outputErrorFrom(err, path);
    }
    try {
      const st = fs.fstatSync(fd);
      const capacity = kind === 'block-device' ? blockDeviceSize(path, st.rdev) : st.size;
      // The O_DIRECT descriptor has no O_EXCL: the first one already holds the device.
      const directFd = options.policy?.directIo ? openDirect(path) : undefined;
      return new InPlaceOutput(path, kind, capacity, fd, directFd, options);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** Flushes the written data to the device (unless `sync` is false) and closes it. */
  async commit(sync = true): Promise<void> {
    if (this.done) return;
    try {
      if (sync) await this.target.sync();
    } finally {
      this.closeSync();
    }
  }

  /** Closes once no write is in flight; what was written stays. Never throws. */
  async abort(): Promise<void> {
    await this.target.settled();
    this.closeSync();
  }

  /** Closes now (a signal handler: the process exits next). What was written stays. Never throws. */
  closeSync(): void {
    if (this.done) return;
    this.done = true;
    open.delete(this);
    for (const fd of [this.directFd, this.fd]) {
      try {
        if (fd !== undefined) fs.closeSync(fd);
      } catch {
        /* already closed */
      }
    }
    this.fd = this.directFd = undefined;
  }
}

/** Paths of the in-place outputs still open (a signal handler says they keep what was written). */
export function openInPlacePaths(): string[] {
  return [...open].map((o) => o.path);
}

/** "; /dev/x keeps what was written <when> …" for error and signal messages ('' for no path). */
export function keptInPlaceNote(paths: readonly string[], when: string): string {
  if (paths.length === 0) return '';
  return `; ${paths.join(', ')} keep${paths.length === 1 ? 's' : ''} what was written ${when} (written in place, there is no .part)`;
}

/** Closes every in-place output (signal handlers). */
export function closeAllInPlaceSync(): void {
  for (const o of [...open]) o.closeSync();
}
