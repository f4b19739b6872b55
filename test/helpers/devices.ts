/**
 * Stand-ins for disks written in place: files filled with PATTERN (any byte a conversion should
 * have written and did not shows up as 0xa5), and real block devices, loop devices over such
 * files (`losetup -f --show FILE`, root only). `itWithLoopDevices` follows the system-tools policy:
 * where losetup is missing or refused, the tests fail in CI and are skipped locally with the
 * reason printed; `tmpfsMountsUnusable` is the same probe for tmpfs mounts (pass it to itUnless). Every device attached is detached by `detachAll()` (call it in afterAll).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hasTool, itUnless } from './system-tools';

/** The byte devices and preallocated files are filled with before a conversion writes into them. */
export const PATTERN = 0xa5;

/** A file `dir/name` of `size` bytes of `byte`; returns its path. */
export function patternFile(dir: string, name: string, size: number, byte = PATTERN): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.alloc(size, byte));
  return file;
}

let probed: string | null | undefined;

/** Why loop devices cannot be used here, or null when they can (attaches and detaches one). */
export function loopDevicesUnusable(): string | null {
  if (probed !== undefined) return probed;
  if (!hasTool('losetup')) return (probed = 'needs losetup on the PATH');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loop-probe-'));
  try {
    const file = path.join(dir, 'probe.img');
    fs.writeFileSync(file, Buffer.alloc(1024 * 1024));
    const r = spawnSync('losetup', ['-f', '--show', file], { encoding: 'utf8' });
    if (r.status !== 0) return (probed = `needs loop devices (losetup -f refused: ${(r.stderr || r.error?.message || '').trim()}; run as root)`);
    spawnSync('losetup', ['-d', r.stdout.trim()]);
    return (probed = null);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

let tmpfsProbed: string | null | undefined;

/**
 * Why tmpfs cannot be mounted here (read-only media, a small full filesystem), or null when it
 * can (mounts and unmounts one). Like loop devices this needs root, and CI runs as root.
 */
export function tmpfsMountsUnusable(): string | null {
  if (tmpfsProbed !== undefined) return tmpfsProbed;
  const missing = ['mount', 'umount'].filter((t) => !hasTool(t));
  if (missing.length) return (tmpfsProbed = `needs ${missing.join(', ')} on the PATH`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tmpfs-probe-'));
  try {
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { encoding: 'utf8' });
    if (r.status !== 0) return (tmpfsProbed = `needs tmpfs mounts (mount -t tmpfs refused: ${(r.stderr || r.error?.message || '').trim()}; run as root)`);
    spawnSync('umount', [dir]);
    return (tmpfsProbed = null);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** `it` when loop devices work (and `tools` are on the PATH), else the system-tools policy. */
export function itWithLoopDevices(...tools: string[]): jest.It {
  const missing = tools.filter((t) => !hasTool(t));
  return itUnless(missing.length ? `needs ${missing.join(', ')} on the PATH` : loopDevicesUnusable());
}

export class LoopDevices {
  private readonly attached: string[] = [];

  /** A loop device of `size` bytes over a new file in `dir` filled with `byte`. */
  create(dir: string, name: string, size: number, byte = PATTERN): { device: string; file: string } {
    const file = patternFile(dir, name, size, byte);
    return { device: this.attach(file), file };
  }

  attach(file: string): string {
    const r = spawnSync('losetup', ['-f', '--show', file], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`losetup -f --show ${file}: ${r.stderr}`);
    const device = r.stdout.trim();
    this.attached.push(device);
    return device;
  }

  /** Detaches every device attached here; never throws (afterAll, also after failures). */
  detachAll(): void {
    for (const d of this.attached.splice(0)) spawnSync('losetup', ['-d', d]);
  }
}
