/**
 * Faults (issue "Robustness and security", items 4 and 5), mostly through the built CLI
 * (bin/xva2img -> dist/; `npm test` builds first): disk full on a real 8 MiB tmpfs, injected
 * write errors, SIGINT/SIGTERM mid-conversion, EPIPE on stdout, an input that stalls then
 * closes, unreadable/missing input, an output directory that cannot be written, an existing
 * output. In every case: one clear error line, the documented exit code, no `.part` left, no
 * output under its final name, and files that existed before untouched.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tmpfsMountsUnusable } from '../helpers/devices';
import { itUnless } from '../helpers/system-tools';
import { buildXva, content, MiB } from './build';

// Injected write errors: FileTarget writes with fs.write (headers, tables) and fs.writev (image
// data, batched); make the N-th write of either kind fail.
/** Injected write failures: after N more writes, or to files whose path matches `path`. */
const failing: { after: number; code: string; path?: RegExp } = { after: Infinity, code: 'ENOSPC' };
jest.mock('node:fs', () => {
  const actual = jest.requireActual<typeof import('node:fs')>('node:fs');
  const failable =
    (real: (...a: unknown[]) => void) =>
    (...args: unknown[]) => {
      const target = failing.path ? actual.readlinkSync(`/proc/self/fd/${args[0] as number}`) : '';
      if (failing.after-- <= 0 || (failing.path && failing.path.test(target))) {
        const cb = args[args.length - 1] as (e: NodeJS.ErrnoException) => void;
        const err = Object.assign(new Error(`${failing.code}: injected write failure`), { code: failing.code });
        process.nextTick(() => cb(err));
        return;
      }
      return real(...args);
    };
  return {
    ...actual,
    write: failable(actual.write as (...a: unknown[]) => void),
    writev: failable(actual.writev as (...a: unknown[]) => void),
  };
});
// The failures are injected into this thread's fs.write/fs.writev, so image data must not go to
// the writer thread, which writes with its own fs (its failures: test/output/page-cache-writes.test.ts;
// the real-ENOSPC case above runs the CLI, writer thread included).
jest.mock('../../src/output/writer-thread', () => ({ ...jest.requireActual('../../src/output/writer-thread'), writerThread: () => undefined }));
import { convertXva } from '../../src/ops/convert';
import { XvaError } from '../../src/errors';

const BIN = path.resolve(__dirname, '../../bin/xva2img');
const DIST = path.resolve(__dirname, '../../dist/cli/main.js');

let work: string;
let bigXva: string; // one 12 MiB disk of incompressible data
let smallXva: string; // two small disks
/** Tests that mount a tmpfs (root only): the system-tools policy, like loop devices. */
const mountIt = itUnless(tmpfsMountsUnusable());

function run(args: string[], opts: { input?: Buffer; timeoutMs?: number } = {}): { code: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: Buffer } {
  const r = spawnSync(process.execPath, [BIN, ...args], { input: opts.input, timeout: opts.timeoutMs ?? 60000, maxBuffer: 64 * MiB });
  return { code: r.status, signal: r.signal, stderr: r.stderr.toString(), stdout: r.stdout };
}

/** Every path under dir (relative). */
function listing(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    out.push(e.name);
    if (e.isDirectory()) out.push(...listing(path.join(dir, e.name)).map((x) => path.join(e.name, x)));
  }
  return out.sort();
}

function expectOneErrorLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^xva2img: /);
  expect(lines[0]).toMatch(pattern);
}

function tryMount(dir: string, opts: string): boolean {
  return spawnSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir]).status === 0;
}

const mounted: string[] = [];

beforeAll(async () => {
  if (!fs.existsSync(DIST)) throw new Error(`${DIST} missing: run "npm run build" first`);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'xva-faults-'));
  bigXva = path.join(work, 'big.xva');
  fs.writeFileSync(bigXva, await buildXva('big', [{ ref: 'Ref:11', userdevice: 0, image: content(12 * MiB, 11) }]));
  smallXva = path.join(work, 'small.xva');
  fs.writeFileSync(
    smallXva,
    await buildXva('small', [
      { ref: 'Ref:11', userdevice: 0, image: content(2 * MiB, 12) },
      { ref: 'Ref:14', userdevice: 1, image: content(MiB, 13) },
    ]),
  );
}, 120000);

afterAll(() => {
  for (const m of mounted.reverse()) spawnSync('umount', ['-l', m]);
  fs.rmSync(work, { recursive: true, force: true });
});

function outDirWithBystander(name: string): { dir: string; keep: string } {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  const keep = path.join(dir, 'keep.txt');
  fs.writeFileSync(keep, 'do not touch\n');
  return { dir, keep };
}

describe('disk full', () => {
  mountIt('ENOSPC on a real 8 MiB tmpfs: exit 4, one line, no .part, no output, bystander intact', () => {
    const dir = path.join(work, 'tmpfs-full');
    fs.mkdirSync(dir);
    expect(tryMount(dir, 'size=8m')).toBe(true);
    mounted.push(dir);
    const keep = path.join(dir, 'keep.txt');
    fs.writeFileSync(keep, 'do not touch\n');
    const r = run([bigXva, '-o', dir, '-q']);
    expect(r.code).toBe(4);
    expectOneErrorLine(r.stderr, /no space left on device/);
    expect(listing(dir)).toEqual(['keep.txt']);
    expect(fs.readFileSync(keep, 'utf8')).toBe('do not touch\n');
    // Space is given back: the same FS can take a conversion that fits.
    const ok = run([smallXva, '-o', dir, '-q']);
    expect(ok.code).toBe(0);
    expect(listing(dir)).toEqual(['keep.txt', 'small-0.raw', 'small-1.raw']);
  });

  // The VMDK writer deflates grains on the thread pool; a write failing while grains are in
  // flight tears the deflate streams down under them (once an internal assertion of Node's).
  mountIt.each([
    ['-O vmdk', (dir: string) => [bigXva, '-O', 'vmdk', '-o', dir, '-q']],
    ['ova', (dir: string) => ['ova', bigXva, '-o', path.join(dir, 'big.ova'), '-q']],
  ])('ENOSPC with %s (grains in flight): exit 4, one line, nothing left', (_what, args) => {
    const dir = path.join(work, `tmpfs-full-${_what.replace(/\W/g, '')}`);
    fs.mkdirSync(dir);
    expect(tryMount(dir, 'size=2m')).toBe(true);
    mounted.push(dir);
    const r = run(args(dir));
    expect(r.code).toBe(4);
    expectOneErrorLine(r.stderr, /no space left on device/);
    expect(listing(dir)).toEqual([]);
  });

  test.each([
    ['ENOSPC', 'OUTPUT_NO_SPACE', /no space left on device/],
    ['EIO', 'OUTPUT_IO', /EIO/],
    ['EDQUOT', 'OUTPUT_IO', /EDQUOT/],
  ])('injected %s on the first write: typed error, .part removed, nothing committed', async (code, xcode, msg) => {
    const { dir, keep } = outDirWithBystander(`inject-${code}`);
    failing.after = 0;
    failing.code = code;
    try {
      const err = await convertXva(smallXva, { outDir: dir }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(XvaError);
      expect((err as XvaError).code).toBe(xcode);
      expect((err as XvaError).exitCode).toBe(4);
      expect((err as XvaError).describe()).toMatch(msg);
    } finally {
      failing.after = Infinity;
    }
    expect(listing(dir)).toEqual(['keep.txt']);
    expect(fs.readFileSync(keep, 'utf8')).toBe('do not touch\n');
  });

  test('a failure on the second disk removes its .part; the first disk, complete and verified, is kept', async () => {
    const { dir } = outDirWithBystander('inject-second');
    // Every write to disk 1's file fails; disk 0 is written normally first.
    failing.path = /small-1\.raw\.part$/;
    failing.code = 'ENOSPC';
    try {
      const err = await convertXva(smallXva, { outDir: dir }).catch((e: unknown) => e);
      expect((err as XvaError).code).toBe('OUTPUT_NO_SPACE');
    } finally {
      failing.path = undefined;
    }
    const files = listing(dir);
    expect(files.filter((f) => f.endsWith('.part'))).toEqual([]);
    expect(files).toEqual(['keep.txt', 'small-0.raw']);
    // Per-disk commit: disk 0 was complete and verified before the failure, so it is kept.
    expect(fs.readFileSync(path.join(dir, 'small-0.raw')).equals(content(2 * MiB, 12))).toBe(true);
  });
});

/** Starts the CLI reading the XVA from a pipe we control. */
function startPiped(args: string[]): { child: ChildProcess; stderr: () => string; done: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  child.stdin!.on('error', () => {});
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return { child, stderr: () => err, done };
}

/**
 * Resolves when a `.part` appears in `dir` (the CLI writes one as soon as a disk's conversion is
 * under way): an fs.watch event, and one look once the watcher is up, for a file already there.
 */
function partAppears(dir: string, ms = 20000): Promise<void> {
  return new Promise((resolve, reject) => {
    const watcher = fs.watch(dir);
    const timer = setTimeout(() => end(new Error(`no .part in ${dir} within ${ms} ms`)), ms);
    const end = (err?: Error): void => {
      clearTimeout(timer);
      watcher.close();
      if (err) reject(err);
      else resolve();
    };
    const look = (): void => {
      if (fs.readdirSync(dir).some((f) => f.endsWith('.part'))) end();
    };
    watcher.on('change', look);
    watcher.on('error', end);
    look();
  });
}

describe('interruption', () => {
  test.each(['SIGINT', 'SIGTERM'] as const)('%s mid-conversion: exit 130, .part removed, nothing committed', async (sig) => {
    const { dir, keep } = outDirWithBystander(`sig-${sig}`);
    const bytes = fs.readFileSync(bigXva);
    const p = startPiped(['-', '-o', dir, '-q']);
    // Half the archive, then wait until the .part exists (conversion under way).
    p.child.stdin!.write(bytes.subarray(0, 6 * MiB));
    await partAppears(dir);
    p.child.kill(sig);
    const r = await p.done;
    expect(r.code).toBe(130);
    expect(p.stderr()).toBe(`xva2img: interrupted by ${sig}; partial outputs removed\n`); // one line, no blank one (stderr is not a terminal)
    expect(listing(dir)).toEqual(['keep.txt']);
    expect(fs.readFileSync(keep, 'utf8')).toBe('do not touch\n');
  });

  // A named pipe given by path (`mkfifo`, `<(...)`) that nothing writes into, or that has no
  // writer yet: a blocking open or read on a pool thread would keep the exit waiting forever.
  test.each([
    ['a writer that stalls', true],
    ['no writer yet', false],
  ])('SIGINT while a named pipe has %s: exit 130 at once', async (_what, withWriter) => {
    const { dir } = outDirWithBystander(`fifo-${withWriter ? 'writer' : 'none'}`);
    const fifo = path.join(dir, 'in.fifo');
    execFileSync('mkfifo', [fifo]);
    const writer = withWriter ? spawn('sh', ['-c', 'exec 3>"$1"; sleep 30', 'sh', fifo], { stdio: 'ignore' }) : undefined;
    try {
      const child = spawn(process.execPath, [BIN, fifo, '-o', path.join(dir, 'out'), '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
      const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      await new Promise((r) => setTimeout(r, 1000)); // opened, waiting for bytes
      child.kill('SIGINT');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10000);
      const code = await done;
      clearTimeout(killer);
      expect(code).toBe(130);
    } finally {
      writer?.kill('SIGKILL');
    }
  });
});

describe('pipes and stalls', () => {
  test('output to a closed pipe (EPIPE): exit 4, one line', async () => {
    const child = spawn(process.execPath, [BIN, bigXva, '-o', '-', '-q'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.once('data', () => child.stdout!.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(code).toBe(4);
    expectOneErrorLine(err, /EPIPE|closed/);
  });

  test('input that stalls, then closes early: exit 2 (truncated), no .part, nothing committed', async () => {
    const { dir, keep } = outDirWithBystander('stall');
    const bytes = fs.readFileSync(smallXva);
    const p = startPiped(['-', '-o', dir, '-q']);
    p.child.stdin!.write(bytes.subarray(0, MiB + 4096));
    await partAppears(dir);
    await new Promise((r) => setTimeout(r, 1000)); // the stall under test: no data for a second
    expect(p.child.exitCode).toBeNull(); // still waiting, not crashed
    p.child.stdin!.end();
    const r = await p.done;
    expect(r.code).toBe(2);
    expectOneErrorLine(p.stderr(), /truncated/);
    expect(listing(dir)).toEqual(['keep.txt']);
    expect(fs.readFileSync(keep, 'utf8')).toBe('do not touch\n');
  });

  test('input that is cut at a tar block boundary mid-disk is not mistaken for the end', async () => {
    const { dir } = outDirWithBystander('cut');
    const bytes = fs.readFileSync(smallXva);
    const r = run(['-', '-o', dir, '-q'], { input: bytes.subarray(0, 512 * Math.floor(bytes.length / 2 / 512)) });
    expect(r.code).toBe(2);
    expectOneErrorLine(r.stderr, /truncated|no checksum file/);
    expect(listing(dir)).toEqual(['keep.txt']);
  });
});

describe('unusable input or output', () => {
  test('missing input: exit 2, one line naming it', () => {
    const { dir } = outDirWithBystander('missing-in');
    const r = run([path.join(work, 'nope.xva'), '-o', dir, '-q']);
    expect(r.code).toBe(2);
    expectOneErrorLine(r.stderr, /nope\.xva/);
    expect(listing(dir)).toEqual(['keep.txt']);
  });

  test('a directory as input: exit 2, one line', () => {
    const { dir } = outDirWithBystander('dir-in');
    const r = run([work, '-o', dir, '-q']);
    expect(r.code).toBe(2);
    expectOneErrorLine(r.stderr, new RegExp(path.basename(work)));
  });

  test('output directory below a regular file (cannot be created): exit 4, one line', () => {
    const file = path.join(work, 'plainfile');
    fs.writeFileSync(file, 'x');
    const r = run([smallXva, '-o', path.join(file, 'sub'), '-q']);
    expect(r.code).toBe(4);
    expectOneErrorLine(r.stderr, /cannot create output directory/);
    expect(fs.readFileSync(file, 'utf8')).toBe('x');
  });

  mountIt('read-only output directory (ro tmpfs; root ignores mode bits): exit 4, one line, nothing written', () => {
    const dir = path.join(work, 'ro-out');
    fs.mkdirSync(dir);
    expect(tryMount(dir, 'size=1m')).toBe(true);
    mounted.push(dir);
    fs.writeFileSync(path.join(dir, 'keep.txt'), 'do not touch\n');
    expect(spawnSync('mount', ['-o', 'remount,ro', dir]).status).toBe(0);
    const r = run([smallXva, '-o', dir, '-q']);
    expect(r.code).toBe(4);
    expectOneErrorLine(r.stderr, /EROFS|read-only/);
    expect(listing(dir)).toEqual(['keep.txt']);
  });

  test('an existing output is refused before reading data and left untouched (no --force)', () => {
    const { dir } = outDirWithBystander('exists');
    const existing = path.join(dir, 'small-1.raw');
    fs.writeFileSync(existing, 'old image');
    const r = run([smallXva, '-o', dir, '-q']);
    expect(r.code).toBe(4);
    expectOneErrorLine(r.stderr, /already exists \(use --force to overwrite\)/);
    expect(fs.readFileSync(existing, 'utf8')).toBe('old image');
    expect(listing(dir)).toEqual(['keep.txt', 'small-1.raw']);
  });

  test('a checksum failure: exit 3, no output under its final name, .part removed', () => {
    const { dir } = outDirWithBystander('badsum');
    const bytes = Buffer.from(fs.readFileSync(smallXva));
    // Flip a byte inside the first chunk's data (after ova.xml's header+data).
    const xmlSize = parseInt(bytes.subarray(124, 136).toString('latin1').replace(/[\0 ]/g, ''), 8);
    const firstData = 512 + Math.ceil(xmlSize / 512) * 512 + 512;
    bytes[firstData + 1000]! ^= 0x55;
    const bad = path.join(work, 'badsum.xva');
    fs.writeFileSync(bad, bytes);
    const r = run([bad, '-o', dir, '-q']);
    expect(r.code).toBe(3);
    expectOneErrorLine(r.stderr, /XXH64 mismatch/);
    expect(listing(dir)).toEqual(['keep.txt']);
  });
});

describe('integrity of what is kept', () => {
  test('outputs appear under their final name only complete, and identical to the disk', () => {
    const { dir } = outDirWithBystander('complete');
    const r = run([smallXva, '-o', dir, '-q']);
    expect(r.code).toBe(0);
    expect(fs.readFileSync(path.join(dir, 'small-0.raw')).equals(content(2 * MiB, 12))).toBe(true);
    expect(fs.readFileSync(path.join(dir, 'small-1.raw')).equals(content(MiB, 13))).toBe(true);
  });

  test('data is fsynced before the rename (commit order: fsync, close, link/rename, dir fsync)', () => {
    // Static check of the commit sequence, since a crash cannot be simulated portably.
    const src = fs.readFileSync(path.resolve(__dirname, '../../src/output/part-file.ts'), 'utf8');
    const commit = src.slice(src.indexOf('async commit('), src.indexOf('abortSync(): void'));
    const order = ['this.target.sync()', 'fs.closeSync', 'fs.linkSync', 'syncDir('].map((s) => commit.indexOf(s));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  });
});
