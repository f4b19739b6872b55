/** Shared fixtures for the input tests: real streams made by the real tools, in a temp dir. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { InputSource } from '../../src/input/types';
import type { XvaError } from '../../src/errors';

export function makeTempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'xva2img-input-'));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * Deterministic, moderately compressible bytes (text-like runs, random runs, zero runs), so
 * that compressors produce many blocks and decoders many chunks.
 */
export function sampleBytes(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const words = ['xen', 'vdi', 'chunk', 'ova.xml', 'Ref:', '00000042', 'checksum', '\n', ' ', 'disk'];
  let i = 0;
  while (i < size) {
    const kind = next() % 4;
    const len = Math.min(size - i, 256 + (next() % 8192));
    if (kind === 0) {
      for (let j = 0; j < len; j++) out[i + j] = next() & 0xff;
    } else if (kind === 1) {
      out.fill(0, i, i + len);
    } else {
      let j = 0;
      while (j < len) {
        const w = words[next() % words.length]!;
        j += out.write(w, i + j, Math.min(w.length, len - j), 'latin1');
      }
    }
    i += len;
  }
  return out;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Runs a tool with `input` on stdin, returns its stdout. */
export function tool(cmd: string, args: string[], input: Buffer): Buffer {
  return execFileSync(cmd, args, { input, maxBuffer: 1 << 30 });
}

export function writeFile(dir: string, name: string, data: Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  return file;
}

/** Reads the whole decoded stream. */
export async function readAll(source: InputSource): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of source.stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Reads the decoded stream and resolves with the error it ends with. */
export async function readError(source: InputSource): Promise<XvaError> {
  try {
    await readAll(source);
  } catch (err) {
    return err as XvaError;
  }
  throw new Error('expected the stream to fail');
}

/** A stdin stand-in that yields exactly these chunks. */
export function chunkedStream(chunks: Buffer[]): Readable {
  return Readable.from(chunks, { objectMode: false });
}

/** Splits `data` into pieces at the given offsets (plus fixed-size pieces if `every` is set). */
export function splitAt(data: Buffer, offsets: number[], every?: number): Buffer[] {
  const cuts = new Set(offsets.filter((o) => o > 0 && o < data.length));
  if (every) for (let o = every; o < data.length; o += every) cuts.add(o);
  const sorted = [...cuts].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let start = 0;
  for (const cut of sorted) {
    parts.push(data.subarray(start, cut));
    start = cut;
  }
  parts.push(data.subarray(start));
  return parts;
}

/** PIDs of live `zstd` processes whose parent is this process (Linux /proc). */
export function childZstdPids(): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...
      const m = /^\d+ \((.*)\) (\S) (\d+)/.exec(stat);
      if (m && m[1] === 'zstd' && Number(m[3]) === process.pid && m[2] !== 'Z') pids.push(Number(entry));
    } catch {
      // process went away
    }
  }
  return pids;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // A zombie still answers kill(0); it is not running.
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}
