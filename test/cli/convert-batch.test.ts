/**
 * The default verb with several inputs (batch), salvage with --on-bad-chunk, exit codes,
 * --help / --version — through the built binary.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeXvaFile, MiB, type XvaFixture } from '../helpers/xva-fixtures';
import { corruptEntries, esc, listFiles, runCli } from './_cli';

let dir: string;
let a: XvaFixture & { path: string };
let b: XvaFixture & { path: string };
let c: XvaFixture & { path: string };
let n = 0;
const out = (): string => path.join(dir, `out-${n++}`);

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-batch-'));
  a = await makeXvaFile(dir, { vmName: 'alpha', disks: [{ size: 2 * MiB }, { size: 3 * MiB, fill: [{ offset: MiB, length: MiB }] }] });
  b = await makeXvaFile(dir, { vmName: 'beta', compression: 'gzip' });
  c = await makeXvaFile(dir, { vmName: 'alpha', compression: 'zstd', fileName: 'alpha-again.xva.zst' });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test.each(['--direct-io', '--no-direct-io'])('%s writes the same images (O_DIRECT, or the page cache as by default)', async (flag) => {
  const o = out();
  const r = await runCli([a.path, '-o', o, flag, '-q']);
  expect(r.code).toBe(0);
  expect(fs.readFileSync(path.join(o, 'alpha-1.raw')).equals(a.disks[1]!.expected)).toBe(true);
});

describe('batch', () => {
  test('several inputs -> one directory; name clashes get -2; table on stderr; exit 0', async () => {
    const o = out();
    const r = await runCli([a.path, b.path, c.path, '-o', o]);
    expect(r.code).toBe(0);
    expect(listFiles(o)).toEqual(['alpha-0-2.raw', 'alpha-0.raw', 'alpha-1.raw', 'beta-0.raw']);
    expect(fs.readFileSync(path.join(o, 'alpha-1.raw')).equals(a.disks[1]!.expected)).toBe(true);
    expect(fs.readFileSync(path.join(o, 'alpha-0-2.raw')).equals(c.disks[0]!.expected)).toBe(true);
    expect(r.stderr).toMatch(/^INPUT\s+VM\s+DISKS\s+RESULT\s+TIME\s+THROUGHPUT$/m);
    expect(r.stderr).toMatch(new RegExp(`^${esc(b.path)}\\s+beta\\s+1\\s+ok\\s+\\d+\\.\\d s\\s+\\S+ \\S+/s$`, 'm'));
    expect(r.stdout).toBe('');
  });

  test('--per-vm-dir, --jobs 2, -O qcow2, --json array', async () => {
    const o = out();
    const r = await runCli([a.path, b.path, '-o', o, '--per-vm-dir', '--jobs', '2', '-O', 'qcow2', '--json', '-q']);
    expect(r.code).toBe(0);
    expect(listFiles(o)).toEqual(['alpha/alpha-0.qcow2', 'alpha/alpha-1.qcow2', 'beta/beta-0.qcow2']);
    const arr = JSON.parse(r.stdout);
    expect(Array.isArray(arr)).toBe(true);
    expect(arr.map((x: { input: string; status: string; vm: string; disks: number }) => [x.input, x.status, x.vm, x.disks])).toEqual([
      [a.path, 'ok', 'alpha', 2],
      [b.path, 'ok', 'beta', 1],
    ]);
    expect(arr[0].summary.disks[0].path).toBe(path.join(o, 'alpha', 'alpha-0.qcow2'));
    expect(typeof arr[0].throughput).toBe('number');
    expect(r.stderr).toBe(''); // -q: no table, no summaries
  });

  test('one failing input does not stop the others; exit code says so', async () => {
    const o = out();
    const cut = path.join(dir, 'cut.xva');
    fs.writeFileSync(cut, fs.readFileSync(a.path).subarray(0, MiB + 5000));
    const r = await runCli([cut, b.path, path.join(dir, 'none.xva'), '-o', o, '--json']);
    expect(r.code).toBe(2);
    expect(listFiles(o)).toEqual(['beta-0.raw']);
    const arr = JSON.parse(r.stdout);
    expect(arr.map((x: { status: string }) => x.status)).toEqual(['failed', 'ok', 'failed']);
    expect(arr[0].error).toMatchObject({ code: 'TAR_TRUNCATED', exitCode: 2 });
    expect(r.stderr).toMatch(new RegExp(`^xva2img: ${esc(cut)}: archive truncated`, 'm'));
    expect(r.stderr).toMatch(/FAILED \(exit 2\)/);
  });

  describe('a failed input gives its output names back', () => {
    let cut: string;
    beforeAll(() => {
      // alpha, cut inside its first disk: fails after its names were allocated and its .part opened.
      cut = path.join(dir, 'alpha-cut.xva');
      fs.writeFileSync(cut, fs.readFileSync(a.path).subarray(0, MiB + 5000));
    });

    test.each([[[]], [['--per-vm-dir']]])('a later input of the same VM gets the plain name (%j)', async (flags) => {
      const o = out();
      const r = await runCli([cut, c.path, '-o', o, '--json', '-q', ...flags]);
      expect(r.code).toBe(2);
      const file = flags.length ? 'alpha/alpha-0.raw' : 'alpha-0.raw';
      expect(listFiles(o)).toEqual([file]);
      expect(fs.readFileSync(path.join(o, file)).equals(c.disks[0]!.expected)).toBe(true);
      expect(JSON.parse(r.stdout).map((x: { status: string }) => x.status)).toEqual(['failed', 'ok']);
    });

    test('a disk committed before the failure keeps its name; the next input of that VM gets -2 for it only', async () => {
      const o = out();
      const bad = path.join(dir, 'alpha-bad-disk1.xva');
      await corruptEntries(a.path, ['Ref:14/00000001'], bad); // disk 0 is written, disk 1 fails its checksum
      const r = await runCli([bad, a.path, '-o', o, '-q']);
      expect(r.code).toBe(3);
      expect(listFiles(o)).toEqual(['alpha-0-2.raw', 'alpha-0.raw', 'alpha-1.raw']);
      expect(fs.readFileSync(path.join(o, 'alpha-1.raw')).equals(a.disks[1]!.expected)).toBe(true);
      expect(fs.readFileSync(path.join(o, 'alpha-0-2.raw')).equals(a.disks[0]!.expected)).toBe(true);
    });
  });

  test.each([
    ['--disk 0 --disk 0', ['--disk', '0', '--disk', '0']],
    ['--disk 0 --disk Ref:11 (its VDI ref)', ['--disk', '0', '--disk', 'Ref:11']],
  ])('a disk named twice (%s) is converted once, under its normal name', async (_name, sel) => {
    const o = out();
    const r = await runCli([a.path, ...sel, '-o', o, '--json']);
    expect(r.code).toBe(0);
    expect(listFiles(o)).toEqual(['alpha-0.raw']);
    expect(fs.readFileSync(path.join(o, 'alpha-0.raw')).equals(a.disks[0]!.expected)).toBe(true);
    const s = JSON.parse(r.stdout);
    expect(s.disks.map((d: { userdevice: string; path: string }) => [d.userdevice, d.path])).toEqual([['0', path.join(o, 'alpha-0.raw')]]);
    expect(s.unselectedDisks).toEqual(['1']);
    // a single output file takes it too: still one disk
    const file = path.join(dir, `only-${n++}.raw`);
    const one = await runCli([a.path, ...sel, '-o', file, '-q']);
    expect(one.code).toBe(0);
    expect(fs.readFileSync(file).equals(a.disks[0]!.expected)).toBe(true);
  });

  test('a single input keeps the single JSON object', async () => {
    const o = out();
    const r = await runCli([b.path, '-o', o, '--json']);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(Array.isArray(s)).toBe(false);
    expect(s).toMatchObject({ input: b.path, vm: { name: 'beta' }, compression: 'gzip' });
  });

  test('usage errors exit 1: bad --jobs, -o FILE with several inputs, stdin twice, --json with -o -', async () => {
    for (const args of [[a.path, b.path, '--jobs', '0'], [a.path, b.path, '-o', path.join(dir, 'x.qcow2')], ['-', '-'], [a.path, '--disk', '0', '-o', '-', '--json'], [a.path, '-o', ''], [a.path, '-o', '/dev/null']]) {
      const r = await runCli(args);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^xva2img: /);
      expect(r.stdout).toBe(''); // nothing written: -o - --json would put the summary after the image
    }
  });
});

describe('salvage: --on-bad-chunk', () => {
  let bad: string;
  beforeAll(async () => {
    bad = path.join(dir, 'damaged.xva');
    await corruptEntries(a.path, ['Ref:14/00000001'], bad); // disk 1, MiB 1
  });

  test('fail (default): exit 3, no output for the bad disk, no .part left', async () => {
    const o = out();
    const r = await runCli([bad, '-o', o]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(new RegExp(`^xva2img: ${esc(bad)}: Ref:14/00000001: XXH64 mismatch \\(expected [0-9A-F]{16}, got [0-9A-F]{16}\\)`, 'm'));
    // disk 0 (Ref:11) was complete and verified before Ref:14 started: convertXva commits disks one by one
    expect(listFiles(o)).toEqual(['alpha-0.raw']);
  });

  test('zero: zeros written instead, chunk listed with its disk offset, exit 3, output kept', async () => {
    const o = out();
    const r = await runCli([bad, '-o', o, '--on-bad-chunk', 'zero']);
    expect(r.code).toBe(3);
    expect(listFiles(o)).toEqual(['alpha-0.raw', 'alpha-1.raw']);
    const img = fs.readFileSync(path.join(o, 'alpha-1.raw'));
    expect(img.subarray(MiB, 2 * MiB).equals(Buffer.alloc(MiB))).toBe(true);
    expect(img.subarray(0, MiB).equals(a.disks[1]!.expected.subarray(0, MiB))).toBe(true);
    expect(r.stderr).toContain('1 chunk(s) failed their checksum:');
    expect(r.stderr).toContain('Ref:14/00000001: disk 1 (Ref:14) offset 1048576 (1048576 bytes): written as zeros');
  });

  test('warn: data kept as is, listed, exit 3; JSON carries the bad chunks', async () => {
    const o = out();
    const r = await runCli([bad, '-o', o, '--on-bad-chunk', 'warn', '--json']);
    expect(r.code).toBe(3);
    const img = fs.readFileSync(path.join(o, 'alpha-1.raw'));
    const corrupted = Buffer.from(a.disks[1]!.expected);
    corrupted[MiB + 100]! ^= 0xff;
    expect(img.equals(corrupted)).toBe(true);
    expect(r.stderr).toContain('offset 1048576 (1048576 bytes): kept as is');
    expect(JSON.parse(r.stdout).badChunks).toEqual([expect.objectContaining({ entry: 'Ref:14/00000001', offset: MiB, action: 'kept' })]);
  });

  test('-q drops the summary, not the salvaged chunks: one stderr line each, naming the input', async () => {
    const o = out();
    const r = await runCli([bad, '-o', o, '--on-bad-chunk', 'zero', '-q']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`xva2img: ${bad}: 1 chunk(s) failed their checksum:`);
    expect(r.stderr).toContain(`xva2img: ${bad}: Ref:14/00000001: disk 1 (Ref:14) offset 1048576 (1048576 bytes): written as zeros`);
    expect(r.stderr).not.toContain('done in');
  });

  test('an unknown policy is a usage error', async () => {
    const r = await runCli([bad, '-o', out(), '--on-bad-chunk', 'ignore']);
    expect(r.code).toBe(1);
  });
});

describe('exit codes, help, version', () => {
  test('output error: exit 4', async () => {
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, 'x');
    const r = await runCli([b.path, '-o', path.join(file, 'sub')]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^xva2img: .*cannot create output directory/m);
  });

  test('existing output without --force: exit 4, nothing overwritten', async () => {
    const o = out();
    expect((await runCli([b.path, '-o', o])).code).toBe(0);
    const r = await runCli([b.path, '-o', o]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('already exists');
  });

  test('--version', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
    const r = await runCli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  test.each([[['--help']], [['info', '--help']], [['verify', '--help']]])('%j shows examples and exits 0', async (args) => {
    const r = await runCli(args);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Examples:');
    expect(r.stdout).toContain('Exit codes:');
  });

  test('main help lists the info and verify verbs and the batch options', async () => {
    const r = await runCli(['--help']);
    expect(r.stdout).toMatch(/^\s+info \[options\] <inputs\.\.\.>/m);
    expect(r.stdout).toMatch(/^\s+verify \[options\] <inputs\.\.\.>/m);
    expect(r.stdout).toContain('--jobs <n>');
    expect(r.stdout).toContain('--on-bad-chunk <policy>');
  });

  test('-O that contradicts the output name: -O decides (as in qemu-img), with a warning', async () => {
    const file = path.join(dir, `x-${n++}.qcow2`);
    const r = await runCli([a.path, '--disk', '0', '-O', 'raw', '-o', file]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^xva2img: warning: writing raw \\(-O\\) into ${esc(file)}, whose name says qcow2$`, 'm'));
    expect(fs.statSync(file).size).toBe(a.disks[0]!.expected.length);
  });

  test('a misspelt verb is a usage error, before any input is read', async () => {
    const o = out();
    const r = await runCli(['inof', a.path, '-o', o]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("xva2img: unknown command 'inof' (did you mean info?); an input of that name does not exist\n");
    expect(fs.existsSync(o)).toBe(false);
  });

  test('an unknown option: exit 1', async () => {
    const r = await runCli(['verify', a.path, '--bogus']);
    expect(r.code).toBe(1);
  });
});
