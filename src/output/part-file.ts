/**
 * The `.part` → final-name discipline. An output is written as `<name>.part`; `commit()` flushes
 * it to stable storage (fsync) and only then gives it its final name, so a crash or an error
 * never leaves an incomplete image under the final name. Without `force` an existing final
 * file is never replaced: the rename is done with link()+unlink(), which fails atomically with
 * EEXIST if the name appeared meanwhile.
 *
 * Every open PartFile is registered so that a SIGINT/SIGTERM handler can remove them
 * synchronously (`removeAllPartFilesSync`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OutputError, outputErrorFrom } from '../errors';
import { FileTarget, openDirect } from './targets';
import { FLUSH_BEHIND_BYTES, type ImageWritePolicy } from './write-policy';

const open = new Set<PartFile>();

export class PartFile {
  readonly partPath: string;
  private fd: number | undefined;
  private done = false;
  readonly target: FileTarget;

  private directFd: number | undefined;

  private constructor(readonly finalPath: string, readonly force: boolean, fd: number, flushBehindBytes: number, directFd: number | undefined) {
    this.partPath = `${finalPath}.part`;
    this.fd = fd;
    this.directFd = directFd;
    this.target = new FileTarget(fd, finalPath, flushBehindBytes, directFd);
    open.add(this);
  }

  /**
   * Fails early (before any data is read) when the final name exists and `force` is off.
   * `policy` (write-policy.ts; default: the page cache, writeback started every
   * FLUSH_BEHIND_BYTES so that the fsync in commit() has little left to do) says how the file is
   * written; pass `flushBehindBytes: 0` when commit will not sync.
   */
  static async create(finalPath: string, force: boolean, policy: Partial<ImageWritePolicy> = {}): Promise<PartFile> {
    if (!force && fs.existsSync(finalPath)) {
      throw new OutputError('OUTPUT_EXISTS', `${finalPath} already exists (use --force to overwrite)`);
    }
    let fd: number;
    try {
      fd = fs.openSync(`${finalPath}.part`, 'w', 0o644);
    } catch (err) {
      // The user named the final path: say which directory is missing rather than ENOENT on `.part`.
      const dir = path.dirname(finalPath);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !fs.existsSync(dir)) {
        throw new OutputError('OUTPUT_IO', `${finalPath}: cannot create: directory ${dir} does not exist`, { cause: err });
      }
      throw outputErrorFrom(err, `${finalPath}.part`);
    }
    const directFd = policy.directIo ? openDirect(`${finalPath}.part`) : undefined;
    return new PartFile(finalPath, force, fd, policy.flushBehindBytes ?? FLUSH_BEHIND_BYTES, directFd);
  }

  /** Closes the O_DIRECT descriptor (its writes have all completed when this is called). Never throws. */
  private closeDirect(): void {
    if (this.directFd === undefined) return;
    try {
      fs.closeSync(this.directFd);
    } catch {
      /* already closed */
    }
    this.directFd = undefined;
  }

  /**
   * Flushes (unless `sync` is false), closes and renames into place. Skipping the flush is the
   * caller's explicit choice (`--no-sync`, like `qemu-img convert -t unsafe`): faster, but after a
   * crash the final name may hold an image whose data never reached the disk.
   */
  async commit(sync = true): Promise<void> {
    if (this.done) return;
    try {
      if (sync) await this.target.sync();
      this.closeDirect();
      fs.closeSync(this.fd!);
      this.fd = undefined;
      if (this.force) {
        fs.renameSync(this.partPath, this.finalPath);
      } else {
        fs.linkSync(this.partPath, this.finalPath);
        fs.unlinkSync(this.partPath);
      }
      this.done = true;
      open.delete(this);
      syncDir(this.finalPath);
    } catch (err) {
      this.abortSync();
      throw outputErrorFrom(err, this.finalPath);
    }
  }

  /** Removes the partial file once no write to it is in flight any more. Never throws. */
  async abort(): Promise<void> {
    await this.target.settled();
    this.abortSync();
  }

  /** Removes the partial file now (signal handlers: the process exits next). Never throws. */
  abortSync(): void {
    if (this.done) return;
    this.done = true;
    open.delete(this);
    this.closeDirect();
    try {
      if (this.fd !== undefined) fs.closeSync(this.fd);
    } catch {
      /* already closed */
    }
    this.fd = undefined;
    try {
      fs.unlinkSync(this.partPath);
    } catch {
      /* already gone */
    }
  }
}

/** fsync the directory so the rename itself is durable (best effort: not every FS allows it). */
function syncDir(file: string): void {
  try {
    const dfd = fs.openSync(path.dirname(file), 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    /* not supported here */
  }
}

/** Removes every `.part` file still open in this process (for signal handlers). */
export function removeAllPartFilesSync(): void {
  for (const p of [...open]) p.abortSync();
}
