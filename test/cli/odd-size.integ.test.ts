/**
 * A disk whose virtual_size is not a multiple of 512 bytes (issue #18, item 1).
 *
 * qemu counts disks in whole 512-byte sectors and reads a qcow2 header's size rounded down, so
 * an image must state the size rounded *up*, the tail filled with zeros, as qemu-img itself
 * does. The oracle is qemu-img: its `info` must show the padded size and `compare` must find
 * the image identical to the source padded to 512, for every image format and path that writes
 * a size (qcow2 v3 and v2 to a file and to a pipe, VMDK, the oVirt OVA's qcow2 member), and
 * `measure` must still equal the written size.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeXvaFile, MiB, type XvaFixture } from '../helpers/xva-fixtures';
import { itWithTools } from '../helpers/system-tools';
import { BIN, builtDist, runCli } from './_cli';
import { run, runStatus } from '../ova/_helpers';

/** The size from the bug report: 57 bytes past the last whole sector. */
const ODD_SIZE = 20_983_865;
const PADDED_SIZE = 20_984_320; // the next multiple of 512
const qemu = itWithTools('qemu-img');
const qemuAndTar = itWithTools('qemu-img', 'tar');

let dir: string;
let fx: XvaFixture & { path: string };
/** The source disk zero-padded to 512, the reference qemu-img compares against. */
let padded: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'odd-size-'));
  fx = await makeXvaFile(dir, {
    vmName: 'odd',
    allowUnalignedSize: true,
    // Data at the start and in the very last 57 bytes, the ones a rounded-down size loses.
    disks: [{ size: ODD_SIZE, fill: [{ offset: 0, length: MiB }, { offset: ODD_SIZE - 57, length: 57 }] }],
  });
  expect(fx.disks[0]!.virtualSize).toBe(ODD_SIZE);
  padded = path.join(dir, 'source-padded.raw');
  fs.writeFileSync(padded, Buffer.concat([fx.disks[0]!.expected, Buffer.alloc(PADDED_SIZE - ODD_SIZE)]));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs the CLI with its standard output going to `file` (binary-safe). */
function runCliToFile(args: string[], file: string): Promise<{ code: number | null; stderr: string }> {
  builtDist();
  const fd = fs.openSync(file, 'w');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', fd, 'pipe'] });
    const err: Buffer[] = [];
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      fs.closeSync(fd);
      resolve({ code, stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

function qemuVirtualSize(image: string, format: string): number {
  return (JSON.parse(run('qemu-img', ['info', '--output=json', '-f', format, image])) as { 'virtual-size': number })['virtual-size'];
}

function expectSameAsPaddedSource(image: string, format: string): void {
  expect(qemuVirtualSize(image, format)).toBe(PADDED_SIZE);
  const cmp = runStatus('qemu-img', ['compare', '-f', 'raw', '-F', format, padded, image]);
  expect(cmp.stdout + cmp.stderr).toContain('Images are identical');
  expect(cmp.status).toBe(0);
  if (format !== 'raw') expect(runStatus('qemu-img', ['check', '-f', format, image]).status).toBe(0);
}

describe.each([['1.1'], ['0.10']])('qcow2 compat %s', (compat) => {
  qemu('to a file: qemu-img shows the size rounded up to 512 and the image equals the padded source', async () => {
    const out = path.join(dir, `file-${compat}.qcow2`);
    const r = await runCli([fx.path, '--qcow2-compat', compat, '-o', out, '-q']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectSameAsPaddedSource(out, 'qcow2');
  });

  qemu('to a pipe (two passes): the same', async () => {
    const out = path.join(dir, `pipe-${compat}.qcow2`);
    const r = await runCliToFile([fx.path, '--qcow2-compat', compat, '-O', 'qcow2', '--disk', '0', '-o', '-', '-q'], out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectSameAsPaddedSource(out, 'qcow2');
  });
});

qemu('measure -O qcow2 still equals the size of the file written', async () => {
  const out = path.join(dir, 'measured.qcow2');
  expect((await runCli([fx.path, '-o', out, '-q'])).code).toBe(0);
  const m = await runCli(['measure', fx.path, '-O', 'qcow2', '--json']);
  expect(m.code).toBe(0);
  const disk = (JSON.parse(m.stdout) as { disks: Array<{ requiredSize: number; exact: boolean }> }).disks[0]!;
  expect(disk.exact).toBe(true);
  expect(disk.requiredSize).toBe(fs.statSync(out).size);
});

qemu('VMDK states the capacity in whole sectors, rounded up', async () => {
  const out = path.join(dir, 'odd.vmdk');
  expect((await runCli([fx.path, '-o', out, '-q'])).code).toBe(0);
  expectSameAsPaddedSource(out, 'vmdk');
});

qemu('raw stays exactly virtual_size bytes (qemu reads the missing tail as zeros)', async () => {
  const out = path.join(dir, 'odd.raw');
  expect((await runCli([fx.path, '-o', out, '-q'])).code).toBe(0);
  expect(fs.statSync(out).size).toBe(ODD_SIZE);
  expectSameAsPaddedSource(out, 'raw');
});

qemuAndTar.each([['vmware', 'vmdk'], ['ovirt', 'qcow2']])('OVA profile %s: the %s member and the OVF capacity are the padded size', async (profile, format) => {
  const ova = path.join(dir, `odd-${profile}.ova`);
  const r = await runCli(['ova', fx.path, '--profile', profile, '-o', ova, '-q']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const x = path.join(dir, `x-${profile}`);
  fs.mkdirSync(x);
  run('tar', ['-xf', ova, '-C', x]);
  const files = fs.readdirSync(x);
  const ovf = fs.readFileSync(path.join(x, files.find((f) => f.endsWith('.ovf'))!), 'utf8');
  const m = /ovf:capacity="(\d+)" ovf:capacityAllocationUnits="byte \* 2\^(\d+)"/.exec(ovf);
  expect(m).not.toBeNull();
  expect(Number(m![1]) * 2 ** Number(m![2])).toBe(PADDED_SIZE);
  const member = files.find((f) => !f.endsWith('.ovf') && !f.endsWith('.mf'))!;
  expectSameAsPaddedSource(path.join(x, member), format);
});
