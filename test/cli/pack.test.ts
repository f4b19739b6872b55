/**
 * `xva2img pack` through the built CLI (bin/xva2img → dist; build first:
 * npx tsc -p tsconfig.build.json), plus the --disk / --nic argument parsers.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { parseDiskArg, parseNicArg } from '../../src/cli/pack-command';
import { openInput } from '../../src/input/open';
import { readXva } from '../../src/xva/reader';
import { MiB, KiB, sparseDisk, makeXvaFile } from '../helpers/xva-fixtures';
import { BIN, runCli } from './_cli';

const run = promisify(execFile);
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pack-cli-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function raw(name: string, size: number, seed: number): { path: string; data: Buffer } {
  const data = sparseDisk({ size, seed, fill: [{ offset: 0, length: 4 * KiB }, { offset: size - 8 * KiB, length: 8 * KiB }] });
  const p = path.join(dir, name);
  fs.writeFileSync(p, data);
  return { path: p, data };
}

describe('argument parsers', () => {
  test('--disk path[,key=value…]', () => {
    expect(parseDiskArg('root.qcow2')).toEqual({ path: 'root.qcow2' });
    expect(parseDiskArg('a,b.raw,name=data disk,userdevice=2,format=raw,bootable=no,ro=yes')).toEqual({
      path: 'a,b.raw',
      name: 'data disk',
      userdevice: '2',
      format: 'raw',
      bootable: false,
      readOnly: true,
    });
    expect(parseDiskArg('weird,name')).toEqual({ path: 'weird,name' });
    // An unknown key=value where no such file exists is a misspelt option, not part of a path.
    expect(() => parseDiskArg('no-such.raw,name=x,userdevic=2')).toThrow('--disk: unknown option "userdevic" in "no-such.raw,name=x,userdevic=2" (options: name, userdevice, format, description, bootable, ro)');
    expect(() => parseDiskArg('x.raw,format=vmdk')).toThrow(/format must be one of raw, qcow2, not "vmdk"/);
    expect(() => parseDiskArg('x.raw,userdevice=a')).toThrow(/userdevice/);
  });
  test('--nic network[,key=value…]', () => {
    expect(parseNicArg('lan')).toEqual({ network: 'lan' });
    expect(parseNicArg('Pool-wide network associated with eth1,mac=02:00:00:00:00:01,mtu=9000,bridge=xenbr1')).toEqual({
      network: 'Pool-wide network associated with eth1',
      mac: '02:00:00:00:00:01',
      mtu: 9000,
      bridge: 'xenbr1',
    });
    expect(parseNicArg('mac=02:00:00:00:00:02')).toEqual({ mac: '02:00:00:00:00:02' });
  });
});

test('pack two disks with VM settings, then info and convert read it back', async () => {
  const a = raw('root.raw', 3 * MiB, 1);
  const b = raw('data.raw', 2 * MiB + 512, 2);
  const out = path.join(dir, 'web01.xva.zst');
  const r = await runCli(['pack', '--disk', a.path, '--disk', `${b.path},name=scratch`, '--name', 'web01', '--cpus', '2', '--memory', '4G', '--nic', 'xenbr0,mac=02:00:00:00:00:07', '-o', out, '--json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const summary = JSON.parse(r.stdout);
  expect(summary).toMatchObject({ output: out, compression: 'zstd', checksum: 'xxh64', tarFormat: 'ustar', vm: { name: 'web01', vcpus: 2, memoryBytes: 4 * 1024 ** 3 } });
  expect(summary.disks.map((d: { name: string }) => d.name)).toEqual(['root', 'scratch']);
  const info = await runCli(['info', out, '--json']);
  expect(info.code).toBe(0);
  const i = JSON.parse(info.stdout);
  expect(i.vm).toMatchObject({ name: 'web01', vcpus: 2, memoryBytes: 4 * 1024 ** 3 });
  expect(i.checksum ?? 'xxh64').toBe('xxh64');
  const conv = await runCli([out, '-o', path.join(dir, 'back'), '-q']);
  expect(conv.code).toBe(0);
  expect(fs.readFileSync(path.join(dir, 'back', 'web01-0.raw')).equals(a.data)).toBe(true);
  expect(fs.readFileSync(path.join(dir, 'back', 'web01-1.raw')).equals(b.data)).toBe(true);
});

test('-o - piped into xva2img - (stdout streaming)', async () => {
  const a = raw('root.raw', 5 * MiB, 3);
  const back = path.join(dir, 'back');
  const { stderr } = await run('bash', ['-o', 'pipefail', '-c', `node ${BIN} pack --disk ${a.path} --name piped --compress gzip -q -o - | node ${BIN} - -o ${back} -q`]);
  expect(stderr).toBe('');
  expect(fs.readFileSync(path.join(back, 'piped-0.raw')).equals(a.data)).toBe(true);
});

test('--from repack: gz + SHA-1 -> zst + XXH64, summary on stderr', async () => {
  const d0 = sparseDisk({ size: 3 * MiB, seed: 5, fill: [{ offset: 0, length: 64 * KiB }, { offset: 2 * MiB, length: 4 * KiB }] });
  await makeXvaFile(dir, { fileName: 'old.xva.gz', vmName: 'legacy', compression: 'gzip', checksum: 'sha1', disks: [{ ref: 'Ref:5', content: d0 }] });
  const out = path.join(dir, 'new.xva.zst');
  const r = await runCli(['pack', '--from', path.join(dir, 'old.xva.gz'), '--checksum', 'xxh64', '-o', out]);
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(/new\.xva\.zst \(zstd, XXH64, ustar tar\) from .*old\.xva\.gz \(gzip, SHA1, metadata kept\): VM "legacy"/);
  const conv = await runCli([out, '-o', path.join(dir, 'back'), '-q']);
  expect(conv.code).toBe(0);
  expect(fs.readFileSync(path.join(dir, 'back', 'legacy-0.raw')).equals(d0)).toBe(true);
});

test('usage and input errors map to exit codes', async () => {
  const a = raw('a.raw', MiB, 4);
  const cases: Array<[string[], number, RegExp]> = [
    [['pack', '--disk', a.path], 1, /no output given/],
    [['pack', '--disk', a.path, '--from', 'x.xva', '-o', 'x.xva'], 1, /either --disk or --from/],
    [['pack', '--disk', a.path, '--checksum', 'md5', '-o', path.join(dir, 'x.xva')], 1, /^xva2img: option '--checksum <kind>' argument 'md5' is invalid\. Allowed choices are xxh64, sha1\.\n$/],
    [['pack', '--disk', a.path, '--memory', 'lots', '-o', path.join(dir, 'x.xva')], 1, /^xva2img: option '--memory <size>' argument 'lots' is invalid\. Expected a size such as 4G or 512M\.\n$/],
    [['pack', '--from', 'https://example.org/vm.ova', '-o', path.join(dir, 'x.xva')], 1, /OVA/],
    [['pack', '--disk', a.path, '--on-bad-chunk', 'zero', '-o', path.join(dir, 'x.xva')], 1, /--from only/],
    [['pack', '--disk', path.join(dir, 'missing.raw'), '-o', path.join(dir, 'x.xva')], 2, /^xva2img: .*missing\.raw: cannot open disk image: ENOENT: no such file or directory\n$/],
    [['pack', '--from', path.join(dir, 'missing.xva'), '-o', path.join(dir, 'x.xva')], 2, /missing\.xva/],
  ];
  for (const [args, code, msg] of cases) {
    const r = await runCli(args);
    expect({ args, code: r.code }).toEqual({ args, code });
    expect(r.stderr).toMatch(msg);
  }
  expect(fs.readdirSync(dir).filter((f) => f.startsWith('x.xva'))).toEqual([]);
});

test('an existing output needs --force', async () => {
  const a = raw('a.raw', MiB, 6);
  const out = path.join(dir, 'a.xva');
  fs.writeFileSync(out, 'x');
  const r = await runCli(['pack', '--disk', a.path, '-o', out]);
  expect(r.code).toBe(4);
  expect(r.stderr).toMatch(/already exists/);
  const f = await runCli(['pack', '--disk', a.path, '-o', out, '--force', '-q']);
  expect(f.code).toBe(0);
  expect(fs.statSync(out).size).toBeGreaterThan(MiB);
});

test('--secure-boot with --firmware uefi turns UEFI secure boot on; without UEFI it is a usage error', async () => {
  const a = raw('sb.raw', MiB, 6);
  const out = path.join(dir, 'sb.xva');
  const r = await runCli(['pack', '--disk', a.path, '--firmware', 'uefi', '--secure-boot', '-o', out, '-q']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const src = await openInput(out);
  let platform: Record<string, string> = {};
  try {
    await readXva(src, { onMetadata: (m) => void (platform = m.vm.platform) }, { metadataOnly: true });
  } finally {
    await src.close();
  }
  expect(platform['secureboot']).toBe('true');
  const bad = await runCli(['pack', '--disk', a.path, '--secure-boot', '-o', path.join(dir, 'bios.xva')]);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toMatch(/secure boot needs UEFI firmware \(--firmware uefi\)/);
  expect(fs.existsSync(path.join(dir, 'bios.xva'))).toBe(false);
});
