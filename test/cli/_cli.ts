/** Runs the built CLI (bin/xva2img → dist/cli/main.js) as a child process. Build first: npx tsc -p tsconfig.build.json */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openTarHeaderWalker } from '../../src/tar/header-walker';

export const ROOT = path.resolve(__dirname, '..', '..');
export const BIN = path.join(ROOT, 'bin', 'xva2img');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The built code, `dist/`, for tests that run it as it ships; throws when it has not been built. */
export function builtDist(): string {
  const dist = path.join(ROOT, 'dist');
  if (!fs.existsSync(path.join(dist, 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npx tsc -p tsconfig.build.json` first');
  return dist;
}

/** Async (never spawnSync: tests may serve HTTP from this process). */
export function runCli(args: string[], opts: { cwd?: string; input?: Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  builtDist();
  const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const result = collectOutput(child, opts.timeoutMs);
  child.stdin.on('error', () => {});
  if (opts.input) child.stdin.end(opts.input);
  else child.stdin.end();
  return result;
}

/** A child's stdout and stderr until it closes (killed after `timeoutMs`), and how it ended. */
export function collectOutput(child: ChildProcessByStdio<Writable | null, Readable, Readable>, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** Regex-escapes a literal. */
export function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Every file under dir (relative paths, sorted). */
export function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name), path.join(rel, e.name));
      else out.push(path.join(rel, e.name));
    }
  };
  walk(dir, '');
  return out.sort();
}

/** Copies `file` to `out` with one byte flipped inside the data of each named tar entry. */
export async function corruptEntries(file: string, names: string[], out: string): Promise<Array<{ name: string; dataOffset: number }>> {
  const w = await openTarHeaderWalker(file);
  const found: Array<{ name: string; dataOffset: number; size: number }> = [];
  for await (const e of w.entries()) if (names.includes(e.name)) found.push(e);
  await w.close();
  if (found.length !== names.length) throw new Error(`entries not found: ${names.join(', ')}`);
  const bytes = fs.readFileSync(file);
  for (const e of found) bytes[e.dataOffset + Math.min(100, e.size - 1)]! ^= 0xff;
  fs.writeFileSync(out, bytes);
  return found;
}
