/**
 * The input is never modified and never needs to be writable (issue "Robustness and security",
 * item 6): read-only files (mode 0444) and read-only media (a tmpfs remounted ro: opening
 * anything O_RDWR/O_WRONLY there fails with EROFS, even for root), plain, gzip and zstd inputs,
 * through the library and the CLI; the input's bytes, size, mode, mtime and ctime stay the same.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { convertXva } from '../../src/ops/convert';
import { tmpfsMountsUnusable } from '../helpers/devices';
import { itUnless } from '../helpers/system-tools';
import { buildXva, content, MiB } from './build';

const BIN = path.resolve(__dirname, '../../bin/xva2img');
let work: string;
let media: string;
let mounted = false;
let why = '';
const inputs: Record<string, string> = {};
const expected = [content(MiB + 4096, 21), content(64 * 1024, 22)];

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'xva-ro-'));
  media = path.join(work, 'media');
  fs.mkdirSync(media);
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', media]);
  mounted = r.status === 0;
  if (!mounted) why = `mount -t tmpfs not permitted: ${(r.stderr?.toString() || r.error?.message || '').trim()}`; // no stderr: no mount program
  const dir = mounted ? media : path.join(work, 'files');
  fs.mkdirSync(dir, { recursive: true });
  const tar = await buildXva('ro', [
    { ref: 'Ref:11', userdevice: 0, image: expected[0]! },
    { ref: 'Ref:14', userdevice: 1, image: expected[1]! },
  ]);
  const files: Record<string, Buffer> = {
    plain: tar,
    gzip: zlib.gzipSync(tar),
    zstd: spawnSync('zstd', ['-q', '-c'], { input: tar, maxBuffer: 64 * MiB }).stdout,
  };
  for (const [k, b] of Object.entries(files)) {
    const p = path.join(dir, `ro.${k}.xva`);
    fs.writeFileSync(p, b);
    fs.chmodSync(p, 0o444);
    inputs[k] = p;
  }
  if (mounted) expect(spawnSync('mount', ['-o', 'remount,ro', media]).status).toBe(0);
}, 60000);

afterAll(() => {
  if (mounted) spawnSync('umount', ['-l', media]);
  fs.rmSync(work, { recursive: true, force: true });
});

function fingerprint(p: string): { bytes: Buffer; size: number; mode: number; mtimeMs: number; ctimeMs: number; ino: number } {
  const st = fs.statSync(p);
  return { bytes: fs.readFileSync(p), size: st.size, mode: st.mode, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino };
}

// Without tmpfs mounts the inputs are only mode 0444 files; the system-tools policy says so.
itUnless(tmpfsMountsUnusable())('the inputs really are read-only media', () => {
  expect(why).toBe(''); // the media's mount in beforeAll worked (else: its error)
  expect(() => fs.openSync(inputs.plain!, 'r+')).toThrow(/EROFS/);
});

test.each(['plain', 'gzip', 'zstd'])('library: %s input on read-only media converts and stays untouched', async (kind) => {
  const before = fingerprint(inputs[kind]!);
  const out = path.join(work, `out-lib-${kind}`);
  const s = await convertXva(inputs[kind]!, { outDir: out });
  expect(s.disks.map((d) => fs.readFileSync(d.path!).equals(expected[Number(d.userdevice)]!))).toEqual([true, true]);
  const after = fingerprint(inputs[kind]!);
  expect(after.bytes.equals(before.bytes)).toBe(true);
  expect({ ...after, bytes: 0 }).toEqual({ ...before, bytes: 0 });
});

test.each(['plain', 'gzip', 'zstd'])('CLI: %s input, also with --force and -o next to nothing writable', (kind) => {
  const before = fingerprint(inputs[kind]!);
  const out = path.join(work, `out-cli-${kind}`);
  for (const extra of [[], ['--force']]) {
    const r = spawnSync(process.execPath, [BIN, inputs[kind]!, '-o', out, '-q', ...extra]);
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
  }
  expect(fs.readFileSync(path.join(out, 'ro-0.raw')).equals(expected[0]!)).toBe(true);
  const after = fingerprint(inputs[kind]!);
  expect(after.bytes.equals(before.bytes)).toBe(true);
  expect({ ...after, bytes: 0 }).toEqual({ ...before, bytes: 0 });
});

test('a failed conversion (output exists) leaves the input untouched too', () => {
  const before = fingerprint(inputs.plain!);
  const out = path.join(work, 'out-exists');
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, 'ro-0.raw'), 'x');
  const r = spawnSync(process.execPath, [BIN, inputs.plain!, '-o', out, '-q']);
  expect(r.status).toBe(4);
  const after = fingerprint(inputs.plain!);
  expect({ ...after, bytes: after.bytes.equals(before.bytes) }).toEqual({ ...before, bytes: true });
});

test('stdin from a read-only file works (no seeking or reopening of the input)', () => {
  const out = path.join(work, 'out-stdin');
  const fd = fs.openSync(inputs.gzip!, 'r');
  try {
    const r = spawnSync(process.execPath, [BIN, '-', '-o', out, '-q'], { stdio: [fd, 'pipe', 'pipe'] });
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
  } finally {
    fs.closeSync(fd);
  }
  expect(fs.readFileSync(path.join(out, 'ro-1.raw')).equals(expected[1]!)).toBe(true);
});
