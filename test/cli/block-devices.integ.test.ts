/**
 * Writing straight into existing disks (issue #22), on real loop devices through the built CLI:
 * raw and qcow2 onto a device (qemu-img compare / check on the device), holes zeroed over a
 * device filled with a pattern, `--target-is-zero` leaving the pattern in the holes, a device
 * too small refused with nothing written, a mounted device refused as in use, `-n` into a
 * preallocated file, several disks to several devices in one pass, SIGINT mid-write.
 *
 * Every device is filled with PATTERN first, so any byte the conversion should have written and
 * did not shows up as 0xa5.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { qcow2FullyAllocatedSize } from '../../src/image/qcow2/layout';
import { itWithLoopDevices, LoopDevices, PATTERN, patternFile } from '../helpers/devices';
import { makeXvaFile, MiB, type XvaFixture } from '../helpers/xva-fixtures';
import { runStatus } from '../ova/_helpers';
import { BIN, builtDist, collectOutput, runCli } from './_cli';

const DISK = 4 * MiB;
/** Data at 0-1 MiB and 2.5-3 MiB; the rest (2.5 MiB) are holes. */
const FILL = [
  { offset: 0, length: MiB },
  { offset: 2 * MiB + 512 * 1024, length: 512 * 1024 },
];
const HOLE = { offset: MiB, length: 1536 * 1024 };

const loopIt = itWithLoopDevices('qemu-img');
const mountIt = itWithLoopDevices('mkfs.ext4', 'mount', 'umount');
const loops = new LoopDevices();
let dir: string;
let fx: XvaFixture & { path: string };
let twoDisks: XvaFixture & { path: string };
let sourceRaw: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'block-devices-'));
  fx = await makeXvaFile(dir, { vmName: 'dev', disks: [{ size: DISK, fill: FILL }] });
  twoDisks = await makeXvaFile(dir, {
    vmName: 'two',
    disks: [
      { size: DISK, fill: FILL, seed: 7 },
      { size: 2 * MiB, fill: [{ offset: MiB, length: 256 * 1024 }], seed: 8 },
    ],
  });
  sourceRaw = path.join(dir, 'source.raw');
  fs.writeFileSync(sourceRaw, fx.disks[0]!.expected);
});
afterAll(() => {
  loops.detachAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * Resolves once `child` holds `file` open (a link to it under /proc/PID/fd). Another process's
 * open() raises no event we can wait on, so this polls; it fails when the child ends first.
 */
async function untilHeldOpen(child: ChildProcess, file: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const fdDir = `/proc/${child.pid}/fd`;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the CLI ended before it opened ${file}`);
    const links = fs.readdirSync(fdDir).map((fd) => {
      try {
        return fs.readlinkSync(path.join(fdDir, fd));
      } catch {
        return ''; // closed meanwhile
      }
    });
    if (links.includes(file)) return;
    if (Date.now() > deadline) throw new Error(`the CLI did not open ${file} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** `length` bytes of a device or file from `offset`. */
function readAt(p: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(p, 'r');
  try {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, buf, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    fs.closeSync(fd);
  }
}

const allPattern = (b: Buffer): boolean => b.every((x) => x === PATTERN);

describe('raw onto a block device', () => {
  loopIt('holes are written as zeros over whatever the device held; qemu-img compare finds it identical', async () => {
    const { device } = loops.create(dir, 'raw-exact.img', DISK, PATTERN);
    const r = await runCli([fx.path, '-o', device, '--json']);
    expect(r.stderr).toMatch(new RegExp(`-> ${device} \\(block device of 4\\.00 MiB; 1\\.50 MiB data, 2\\.50 MiB holes written as zeros\\)`));
    expect(r.code).toBe(0);
    const disk = JSON.parse(r.stdout).disks[0];
    expect(disk).toMatchObject({ path: device, format: 'raw', bytesWritten: 1.5 * MiB, inPlace: { kind: 'block-device', size: DISK, zeroBytesWritten: 2.5 * MiB, holesSkipped: false } });
    expect(readAt(device, HOLE.offset, HOLE.length).every((x) => x === 0)).toBe(true);
    const cmp = runStatus('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', device, sourceRaw]);
    expect(cmp.stdout + cmp.stderr).toMatch(/Images are identical/);
    expect(cmp.status).toBe(0);
  });

  loopIt('--target-is-zero leaves the holes alone (the pattern is still there), the data is written', async () => {
    const { device } = loops.create(dir, 'raw-zero.img', 6 * MiB, PATTERN);
    const r = await runCli([fx.path, '-o', device, '--target-is-zero']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/block device of 6\.00 MiB, 2\.00 MiB past the disk untouched; 1\.50 MiB data, 2\.50 MiB holes skipped \(--target-is-zero\)/);
    const got = readAt(device, 0, 6 * MiB);
    const want = fx.disks[0]!.expected;
    for (const f of FILL) expect(got.subarray(f.offset, f.offset + f.length).equals(want.subarray(f.offset, f.offset + f.length))).toBe(true);
    expect(allPattern(got.subarray(HOLE.offset, HOLE.offset + HOLE.length))).toBe(true);
    expect(allPattern(got.subarray(3 * MiB))).toBe(true); // the tail hole and past the disk
  });

  loopIt('a device smaller than the disk is refused before anything is written, naming both sizes', async () => {
    const { device } = loops.create(dir, 'raw-small.img', DISK - MiB, PATTERN);
    const r = await runCli([fx.path, '-o', device]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`${device} holds ${DISK - MiB} bytes, less than the ${DISK} bytes of the disk's virtual size (disk 0); nothing was written`);
    expect(allPattern(readAt(device, 0, DISK - MiB))).toBe(true);
  });
});

describe('qcow2 onto a block device', () => {
  loopIt('the image sits at the start of a larger device: qemu-img check clean, compare identical', async () => {
    const { device } = loops.create(dir, 'qcow2.img', 8 * MiB, PATTERN);
    const r = await runCli([fx.path, '-O', 'qcow2', '-o', device, '--json']);
    expect(r.code).toBe(0);
    const disk = JSON.parse(r.stdout).disks[0];
    const measured = JSON.parse((await runCli(['measure', fx.path, '-O', 'qcow2', '--json'])).stdout).disks[0].requiredSize;
    expect(disk).toMatchObject({ path: device, format: 'qcow2', imageSize: measured, inPlace: { kind: 'block-device', size: 8 * MiB } });
    const check = runStatus('qemu-img', ['check', '-f', 'qcow2', device]);
    expect(check.stdout + check.stderr).toMatch(/No errors were found on the image/);
    expect(check.status).toBe(0);
    const cmp = runStatus('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', device, sourceRaw]);
    expect(cmp.stdout + cmp.stderr).toMatch(/Images are identical/);
    expect(allPattern(readAt(device, measured, 8 * MiB - measured))).toBe(true); // past the image: untouched
  });

  loopIt('a device smaller than a fully allocated qcow2 is measured first: exactly the measured size fits, one cluster less is refused', async () => {
    const measured = JSON.parse((await runCli(['measure', fx.path, '-O', 'qcow2', '--json'])).stdout).disks[0].requiredSize as number;
    expect(measured).toBeLessThan(qcow2FullyAllocatedSize(DISK));
    const exact = loops.create(dir, 'qcow2-exact.img', measured, PATTERN).device;
    const ok = await runCli([fx.path, '-O', 'qcow2', '-o', exact]);
    expect(ok.code).toBe(0);
    expect(runStatus('qemu-img', ['check', '-f', 'qcow2', exact]).status).toBe(0);
    expect(runStatus('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', exact, sourceRaw]).status).toBe(0);

    const small = loops.create(dir, 'qcow2-small.img', measured - 65536, PATTERN).device;
    const refused = await runCli([fx.path, '-O', 'qcow2', '-o', small]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain(`${small} holds ${measured - 65536} bytes, less than the ${measured} bytes of the measured qcow2 image (disk 0); nothing was written`);
    expect(allPattern(readAt(small, 0, measured - 65536))).toBe(true);
  });
});

describe('refusals', () => {
  mountIt('a mounted device is refused as in use (exit 4), nothing written', async () => {
    const { device } = loops.create(dir, 'mounted.img', 8 * MiB, 0);
    expect(runStatus('mkfs.ext4', ['-q', device]).status).toBe(0);
    const mnt = fs.mkdtempSync(path.join(dir, 'mnt-'));
    const mount = runStatus('mount', [device, mnt]);
    expect(mount.stderr).toBe('');
    try {
      // Nothing to compare bytes with: the mounted ext4 writes its own superblock and journal. The
      // refusal is the open itself (O_EXCL), so no descriptor that could write ever exists.
      const r = await runCli([fx.path, '-o', device]);
      expect(r.code).toBe(4);
      expect(r.stderr).toContain(`${device} is in use (mounted, or held by another program or a device mapper); nothing was written`);
    } finally {
      runStatus('umount', [mnt]);
    }
  });

  loopIt('option values are checked before reading (exit 1): syntax, a device named twice, unknown disk, VMDK', async () => {
    const { device } = loops.create(dir, 'opts.img', DISK, PATTERN);
    const bad = await runCli([fx.path, '--target', device]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('expected <userdevice|ref>=<path>');
    const twice = await runCli([twoDisks.path, '--target', `0=${device}`, '--target', `1=${device}`]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain(`--target: ${device} and ${device} are the same device or file`);
    const unknown = await runCli([fx.path, '--target', `7=${device}`]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no disk "7" in this VM');
    const vmdk = await runCli([fx.path, '-O', 'vmdk', '-o', device]);
    expect(vmdk.code).toBe(1);
    expect(vmdk.stderr).toContain('VMDK (streamOptimized) cannot be written onto a device');
    expect(allPattern(readAt(device, 0, DISK))).toBe(true);
  });
});

describe('several disks, existing files', () => {
  loopIt('--target sends each disk to its own device in one pass', async () => {
    const a = loops.create(dir, 'two-0.img', DISK, PATTERN).device;
    const b = loops.create(dir, 'two-1.img', 2 * MiB, PATTERN).device;
    const r = await runCli([twoDisks.path, '--target', `0=${a}`, '--target', `1=${b}`, '--json']);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.disks.map((d: { path: string }) => d.path)).toEqual([a, b]);
    expect(readAt(a, 0, DISK).equals(twoDisks.disks[0]!.expected)).toBe(true);
    expect(readAt(b, 0, 2 * MiB).equals(twoDisks.disks[1]!.expected)).toBe(true);
  });

  loopIt('--target writes only the named disks and says which were not written', async () => {
    const b = loops.create(dir, 'only-1.img', 2 * MiB, PATTERN).device;
    const r = await runCli([twoDisks.path, '--target', `1=${b}`]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('disk 0: not written (not selected)');
    expect(readAt(b, 0, 2 * MiB).equals(twoDisks.disks[1]!.expected)).toBe(true);
  });

  it('-n writes into a preallocated file in place: not truncated, the bytes after the disk untouched', async () => {
    const file = patternFile(dir, 'prealloc.img', DISK + MiB);
    const refused = await runCli([fx.path, '-o', file]);
    expect(refused.code).toBe(4); // without -n an existing file is not overwritten
    const r = await runCli([fx.path, '-n', '-o', file]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`-> ${file} (existing file of 5.00 MiB, 1.00 MiB past the disk untouched; 1.50 MiB data, 2.50 MiB holes written as zeros)`);
    const got = fs.readFileSync(file);
    expect(got.length).toBe(DISK + MiB);
    expect(got.subarray(0, DISK).equals(fx.disks[0]!.expected)).toBe(true);
    expect(allPattern(got.subarray(DISK))).toBe(true);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.part'))).toEqual([]);
  });

  it('-n into a file smaller than the disk is refused, nothing written', async () => {
    const file = patternFile(dir, 'prealloc-small.img', MiB);
    const r = await runCli([fx.path, '-n', '-o', file]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`less than the ${DISK} bytes of the disk's virtual size`);
    expect(allPattern(fs.readFileSync(file))).toBe(true);
  });
});

describe('interrupted', () => {
  loopIt('SIGINT mid-write: exit 130, and the message says the device keeps what was written', async () => {
    builtDist();
    const { device } = loops.create(dir, 'sigint.img', DISK, PATTERN);
    const xva = fs.readFileSync(fx.path);
    const child = spawn(process.execPath, [BIN, '-', '-o', device], { stdio: ['pipe', 'pipe', 'pipe'] });
    const done = collectOutput(child);
    // Half the archive (ova.xml and the first chunks), then the reader waits for more: interrupt it.
    child.stdin.write(xva.subarray(0, Math.floor(xva.length / 2)));
    // Once the device is open the signal handler knows it (InPlaceOutput registers it in the same tick).
    await untilHeldOpen(child, device);
    child.kill('SIGINT');
    const r = await done;
    expect(r.code).toBe(130);
    expect(r.stderr).toContain(`interrupted by SIGINT; partial outputs removed; ${device} keeps what was written so far (written in place, there is no .part)`);
  });
});
