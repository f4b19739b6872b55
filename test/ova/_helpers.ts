/** Shared helpers for the OVA and qcow2-reader tests (not a test file itself). */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { DiskImageWriter, ImageWriteResult } from '../../src/io/disk';
import * as fs from 'node:fs';
import { FileTarget, StreamTarget } from '../../src/output/targets';
import { collectingSink } from '../helpers/xva-fixtures';

export function run(cmd: string, args: string[], cwd?: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
}

export function runStatus(cmd: string, args: string[], cwd?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function makeTmp(prefix: string): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** qemu-io commands against an image, e.g. `write -P 0xab 1M 64k`. */
export function qemuIo(image: string, format: string, ...commands: string[]): void {
  const args = ['-f', format];
  for (const c of commands) args.push('-c', c);
  args.push(image);
  run('qemu-io', args);
}

/** A DiskImageWriter that assembles the disk in memory (small test disks only). */
export class MemoryDiskWriter implements DiskImageWriter {
  readonly buf: Buffer;
  readonly writes: Array<[number, number]> = [];
  private last = -1;
  constructor(readonly size: number) {
    this.buf = Buffer.alloc(size);
  }
  async write(offset: number, data: Buffer): Promise<void> {
    if (offset < this.last) throw new Error(`write at ${offset} goes backwards (last end ${this.last})`);
    this.last = offset + data.length;
    this.writes.push([offset, data.length]);
    data.copy(this.buf, offset);
  }
  async finish(): Promise<ImageWriteResult> {
    const bytes = this.writes.reduce((a, [, n]) => a + n, 0);
    return { bytesWritten: bytes, zeroBytesSkipped: 0, imageSize: this.size };
  }
}


/** A FileTarget on a new file (read-write, so qcow2 members can be read back). */
export function openFileTarget(file: string): { target: FileTarget; close(): void } {
  const fd = fs.openSync(file, 'w+');
  return { target: new FileTarget(fd, file), close: () => fs.closeSync(fd) };
}

/** A StreamTarget into memory, standing in for a pipe. */
export function memoryPipe(): { target: StreamTarget; finish(): Promise<Buffer> } {
  const { sink, result } = collectingSink();
  const target = new StreamTarget(sink, 'pipe');
  return {
    target,
    finish: async () => {
      await target.end();
      return result();
    },
  };
}

/** Members listed by GNU tar -tvR: name, size and the data offset virt-v2v would compute. */
export function gnuTarList(ova: string): Array<{ name: string; size: number; dataOffset: number }> {
  const out = run('tar', ['-tvR', '-f', ova]);
  const rows: Array<{ name: string; size: number; dataOffset: number }> = [];
  for (const line of out.split('\n')) {
    const m = /^block (\d+): \S+ \S+\s+(\d+) \S+ \S+ (.+)$/.exec(line.trim());
    if (m) rows.push({ name: m[3]!, size: Number(m[2]), dataOffset: (Number(m[1]) + 1) * 512 });
  }
  return rows;
}

export function bsdtarNames(ova: string): string[] {
  return run('bsdtar', ['-tf', ova]).split('\n').filter(Boolean);
}
