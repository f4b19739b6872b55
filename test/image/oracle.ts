/**
 * Test support for the image writers: temp dirs, in-memory disk sources, targets, and the real
 * oracle (`qemu-img check/compare/info/measure`, `qemu-io`).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FileTarget, StreamTarget } from '../../src/output/targets';
import type { DiskImageWriter } from '../../src/io/disk';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** One `write(offset, data)` call of a reader. */
export interface SourceWrite {
  offset: number;
  data: Buffer;
}

/** An in-memory disk: what a reader would deliver, in delivery order. */
export interface DiskSource {
  virtualSize: number;
  writes: SourceWrite[];
}

export function makeTmpDir(prefix = 'xva2img-image-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * A temp dir in memory (/dev/shm) when it has `minFree` bytes available, else in os.tmpdir():
 * for the few tests that must write gigabytes of real data.
 */
export function makeFastTmpDir(minFree: number, prefix = 'xva2img-image-big-'): string {
  const shm = '/dev/shm';
  try {
    const st = fs.statfsSync(shm);
    if (st.bavail * st.bsize >= minFree) return fs.mkdtempSync(path.join(shm, prefix));
  } catch {
    /* no /dev/shm: fall through */
  }
  return makeTmpDir(prefix);
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** A buffer of `length` bytes filled with a deterministic non-zero pattern seeded by `seed`. */
export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let x = (seed * 2654435761 + 1) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Writes the expected raw image of `src` (sparse file of exactly virtualSize bytes). */
export function writeRaw(file: string, src: DiskSource): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, src.virtualSize);
    for (const w of src.writes) {
      const inside = Math.max(0, Math.min(w.data.length, src.virtualSize - w.offset));
      if (inside > 0) fs.writeSync(fd, w.data, 0, inside, w.offset);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Delivers `src` to `writer` and finishes it. */
export async function feed<W extends DiskImageWriter>(writer: W, src: DiskSource): Promise<Awaited<ReturnType<W['finish']>>> {
  for (const w of src.writes) await writer.write(w.offset, w.data);
  return (await writer.finish()) as Awaited<ReturnType<W['finish']>>;
}

/** Opens `file` for writing and returns a FileTarget plus a close function. */
export function openFileTarget(file: string): { target: FileTarget; close(): void } {
  const fd = fs.openSync(file, 'w+');
  return { target: new FileTarget(fd, file), close: () => fs.closeSync(fd) };
}

/**
 * A StreamTarget over a PassThrough (a pipe: no seeking possible) whose output is collected into
 * `file`. `done()` ends the stream and waits until the file is complete.
 */
export function openPipeTarget(file: string): { target: StreamTarget; done(): Promise<void>; abort(): Promise<void> } {
  const pipe = new PassThrough({ highWaterMark: 256 * KiB });
  const target = new StreamTarget(pipe, 'pipe');
  const copied = pipeline(pipe, fs.createWriteStream(file));
  return {
    target,
    async done() {
      await target.end();
      await copied;
    },
    /** Tears the pipe down after a failed write (the copy then ends with "premature close"). */
    async abort() {
      pipe.destroy();
      await copied.catch(() => undefined);
    },
  };
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[]): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface QemuCheck {
  status: number | null;
  corruptions: number;
  leaks: number;
  checkErrors: number;
  raw: string;
}

/** `qemu-img check`: exit 0 and no corruptions/leaks/errors means the image is consistent. */
export function qemuCheck(file: string, format: 'qcow2' | 'vmdk' = 'qcow2'): QemuCheck {
  const r = run('qemu-img', ['check', '-f', format, '--output=json', file]);
  let parsed: Record<string, number> = {};
  try {
    parsed = JSON.parse(r.stdout) as Record<string, number>;
  } catch {
    /* leave empty: the assertions below will show raw output */
  }
  return {
    status: r.status,
    corruptions: parsed['corruptions'] ?? 0,
    leaks: parsed['leaks'] ?? 0,
    checkErrors: parsed['check-errors'] ?? 0,
    raw: r.stdout + r.stderr,
  };
}

/** `qemu-img compare` of an image against the expected raw file; exit 0 = identical content. */
export function qemuCompare(raw: string, image: string, format: 'qcow2' | 'vmdk'): RunResult {
  return run('qemu-img', ['compare', '-f', 'raw', '-F', format, raw, image]);
}

export interface QemuInfo {
  format: string;
  'virtual-size': number;
  'format-specific'?: { type: string; data: Record<string, unknown> };
  [k: string]: unknown;
}

export function qemuInfo(file: string, format?: 'qcow2' | 'vmdk'): QemuInfo {
  const args = ['info', '--output=json'];
  if (format) args.push('-f', format);
  const r = run('qemu-img', [...args, file]);
  if (r.status !== 0) throw new Error(`qemu-img info failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as QemuInfo;
}

export function qemuMeasure(size: number, compat: '1.1' | '0.10'): { required: number; 'fully-allocated': number } {
  const r = run('qemu-img', ['measure', '--output=json', '-O', 'qcow2', '-o', `compat=${compat}`, '--size', String(size)]);
  if (r.status !== 0) throw new Error(`qemu-img measure failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { required: number; 'fully-allocated': number };
}

/** `qemu-io -c "read -P <byte> <off> <len>"`: verifies the guest bytes equal `byte`. */
export function qemuReadPattern(file: string, format: 'qcow2' | 'vmdk', byte: number, offset: number, length: number): RunResult {
  return run('qemu-io', ['-f', format, '-r', '-c', `read -P ${byte} ${offset} ${length}`, file]);
}

export function fileSize(file: string): number {
  return fs.statSync(file).size;
}

