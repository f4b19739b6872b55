/**
 * OVA export checked with real tools as oracles: GNU tar and bsdtar list it (OVF first, one
 * 512-byte header per member), qemu-img checks and compares every extracted disk with its
 * source, sha256sum verifies the manifest, the OVF parses and carries what importers read,
 * the pipe path equals the file path byte for byte, and measure equals the written size.
 */
import { closeSync, ftruncateSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { OutputError } from '../../src/errors';
import { FileTarget } from '../../src/output/targets';
import { measureOva, writeOva, type OvaWriteResult, type WriteOvaOptions } from '../../src/ova/ova-writer';
import { ovaMemberHeader } from '../../src/ova/writer/layout';
import { parseManifest } from '../../src/ova/manifest';
import { itWithTools } from '../helpers/system-tools';
import { bsdtarNames, gnuTarList, makeTmp, memoryPipe, openFileTarget, qemuIo, run, runStatus } from './_helpers';

const withOracles = itWithTools('qemu-img', 'qemu-io', 'tar', 'bsdtar', 'sha256sum');

const MiB = 1024 * 1024;
const MTIME = 1_700_000_000;

let tmp: ReturnType<typeof makeTmp>;
let top: string;
let rawDisk: string;

/** A three-layer qcow2 chain (made with qemu-img create -b) and a raw disk with holes. */
function makeSources(dir: string): void {
  run('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '96M'], dir);
  qemuIo(path.join(dir, 'base.qcow2'), 'qcow2', 'write -P 0x11 0 4M', 'write -P 0x12 50M 1M', 'write -P 0x13 95M 1M');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'mid.qcow2'], dir);
  qemuIo(path.join(dir, 'mid.qcow2'), 'qcow2', 'write -P 0x21 1M 256k', 'write -z 50M 512k', 'write -P 0x22 70M 3M');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2'], dir);
  qemuIo(path.join(dir, 'top.qcow2'), 'qcow2', 'write -P 0x31 2M 64k', 'write -z 0 64k', 'write -P 0x32 71M 100k');
  top = path.join(dir, 'top.qcow2');

  const raw = Buffer.alloc(10 * MiB + 4096 + 512);
  for (let i = 0; i < raw.length; i++) if ((i >> 16) % 3 === 0) raw[i] = (i * 31 + (i >> 9)) & 0xff;
  raw.fill(0, 3 * MiB, 6 * MiB);
  raw.fill(0x7e, raw.length - 700);
  rawDisk = path.join(dir, 'data.raw');
  writeFileSync(rawDisk, raw);
}

function diskOptions(profile: 'vmware' | 'ovirt', extra: Partial<WriteOvaOptions> = {}): WriteOvaOptions {
  return {
    profile,
    mtime: MTIME,
    vmdkWorkers: 0,
    disks: [
      { path: top, name: 'root', description: 'system disk' },
      { path: rawDisk, name: 'data', controller: 'sata' },
    ],
    vm: {
      name: 'web01 <test> & "co"',
      description: 'Web server: é & <b>',
      vcpus: 2,
      memoryBytes: 4 * 1024 * MiB,
      firmware: 'uefi',
      guestOs: 'linux',
      nics: [
        { name: 'eth0', network: 'VM Network', mac: '00:16:3E:AA:BB:01' },
        { name: 'eth1', network: 'backend', mac: '00:16:3e:aa:bb:02' },
      ],
      bootOrder: 'cn',
    },
    ...extra,
  } as WriteOvaOptions;
}

async function writeToFile(file: string, options: WriteOvaOptions): Promise<OvaWriteResult> {
  const { target, close } = openFileTarget(file);
  try {
    return await writeOva(target, options);
  } finally {
    close();
  }
}

async function writeToPipe(options: WriteOvaOptions): Promise<{ bytes: Buffer; result: OvaWriteResult }> {
  const pipe = memoryPipe();
  const result = await writeOva(pipe.target, options);
  return { bytes: await pipe.finish(), result };
}

/** Extracts with GNU tar and runs the oracles common to both profiles. */
function checkArchive(ova: string, result: OvaWriteResult, sources: string[], dir: string): void {
  const listed = gnuTarList(ova);
  const expectedNames = [result.ovf.name, ...result.disks.map((x) => x.name), result.manifest!.name];
  expect(listed.map((r) => r.name)).toEqual(expectedNames);
  expect(bsdtarNames(ova)).toEqual(expectedNames);
  expect(listed[0]!.name.endsWith('.ovf')).toBe(true);
  // One header per member: the data offset virt-v2v computes is where we put the data.
  const members = [result.ovf, ...result.disks, result.manifest!];
  listed.forEach((row, i) => {
    expect(row.size).toBe(members[i]!.size);
    expect(row.dataOffset).toBe(members[i]!.offset);
  });
  expect(statSync(ova).size).toBe(result.size);

  const out = path.join(dir, `x-${path.basename(ova)}`);
  run('mkdir', ['-p', out]);
  run('tar', ['-xf', ova, '-C', out]);

  // sha256sum -c over the manifest (converted to coreutils' format).
  const mf = parseManifest(readFileSync(path.join(out, result.manifest!.name), 'utf8'));
  expect(mf.map((m) => m.name)).toEqual([result.ovf.name, ...result.disks.map((x) => x.name)]);
  expect(mf.every((m) => m.algorithm === 'SHA256')).toBe(true);
  writeFileSync(path.join(out, 'SHA256SUMS'), mf.map((m) => `${m.digest}  ${m.name}\n`).join(''));
  expect(runStatus('sha256sum', ['-c', 'SHA256SUMS'], out).status).toBe(0);

  result.disks.forEach((disk, i) => {
    const file = path.join(out, disk.name);
    const fmt = disk.format;
    const check = runStatus('qemu-img', ['check', '-f', fmt, file]);
    expect(check.stderr + check.stdout).not.toMatch(/ERROR|corrupt|Leaked/);
    expect(check.status).toBe(0);
    const cmp = runStatus('qemu-img', ['compare', '-f', fmt, file, sources[i]!]);
    expect(cmp.stdout).toMatch(/Images are identical/);
    expect(cmp.status).toBe(0);
    const info = JSON.parse(run('qemu-img', ['info', '--output=json', '-f', fmt, file])) as { 'virtual-size': number; 'format-specific'?: { data?: { 'create-type'?: string } } };
    expect(info['virtual-size']).toBe(disk.capacity);
    if (fmt === 'vmdk') expect(info['format-specific']?.data?.['create-type']).toBe('streamOptimized');
  });
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', parseTagValue: false, isArray: (name) => ['File', 'Disk', 'Item', 'Network'].includes(name) });

type Node = Record<string, unknown>;
const arr = (v: unknown): Node[] => (Array.isArray(v) ? (v as Node[]) : v === undefined ? [] : [v as Node]);

/** A Disk's capacity in bytes; the units must be `byte * 2^N` (Proxmox reads no other form). */
function capacityBytes(dk: Node): number {
  const m = /^byte \* 2\^(\d+)$/.exec(String(dk['@ovf:capacityAllocationUnits']));
  expect(m).not.toBeNull();
  return Number(dk['@ovf:capacity']) * 2 ** Number(m![1]);
}

/** Every section and field the importers read (docs/output-formats.md §4.3), for the VMware-style OVF. */
function checkVmwareOvf(xml: string, result: OvaWriteResult): void {
  expect(XMLValidator.validate(xml)).toBe(true);
  const env = (parser.parse(xml) as Node)['Envelope'] as Node;
  expect(env['@xmlns']).toBe('http://schemas.dmtf.org/ovf/envelope/1');
  expect(env['@xmlns:ovf']).toBe('http://schemas.dmtf.org/ovf/envelope/1');
  expect(env['@xmlns:rasd']).toMatch(/CIM_ResourceAllocationSettingData$/);
  expect(env['@xmlns:vssd']).toMatch(/CIM_VirtualSystemSettingData$/);
  expect(env['@xmlns:vmw']).toBe('http://www.vmware.com/schema/ovf');
  // Sections in envelope order: References, DiskSection, NetworkSection, VirtualSystem.
  expect(Object.keys(env).filter((k) => !k.startsWith('@'))).toEqual(['References', 'DiskSection', 'NetworkSection', 'VirtualSystem']);

  const files = arr((env['References'] as Node)['File']);
  expect(files.map((f) => f['@ovf:href'])).toEqual(result.disks.map((x) => x.name));
  files.forEach((f, i) => expect(Number(f['@ovf:size'])).toBe(result.disks[i]!.size));

  const disks = arr((env['DiskSection'] as Node)['Disk']);
  expect((env['DiskSection'] as Node)['Info']).toBeDefined();
  disks.forEach((dk, i) => {
    expect(dk['@ovf:fileRef']).toBe(files[i]!['@ovf:id']);
    expect(dk['@ovf:format']).toBe('http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized');
    expect(capacityBytes(dk)).toBe(result.disks[i]!.capacity);
    expect(Number(dk['@ovf:populatedSize'])).toBe(result.disks[i]!.populatedSize);
  });

  const nets = arr((env['NetworkSection'] as Node)['Network']).map((n) => n['@ovf:name']);
  expect(nets).toEqual(['VM Network', 'backend']);

  const vs = env['VirtualSystem'] as Node;
  expect(vs['@ovf:id']).toBeDefined();
  expect(vs['Name']).toBe('web01 <test> & "co"');
  expect(((vs['AnnotationSection'] as Node)['Annotation'] as string)).toBe('Web server: é & <b>');
  const os = vs['OperatingSystemSection'] as Node;
  expect(os['@ovf:id']).toBe('101');
  expect(os['@vmw:osType']).toBe('otherLinux64Guest');

  const hw = vs['VirtualHardwareSection'] as Node;
  expect(((hw['System'] as Node)['vssd:VirtualSystemType'] as string)).toMatch(/^vmx-\d+$/);
  const items = arr(hw['Item']);
  const ids = items.map((it) => Number(it['rasd:InstanceID']));
  expect(ids.every((n) => Number.isInteger(n))).toBe(true);
  expect(new Set(ids).size).toBe(ids.length);
  const byType = (t: number): Node[] => items.filter((it) => Number(it['rasd:ResourceType']) === t);
  expect(byType(3)[0]!['rasd:VirtualQuantity']).toBe('2');
  expect(byType(4)[0]!['rasd:VirtualQuantity']).toBe('4096');
  expect(byType(4)[0]!['rasd:AllocationUnits']).toBe('byte * 2^20');
  const diskItems = byType(17);
  expect(diskItems).toHaveLength(2);
  for (const it of diskItems) {
    const parent = items.find((c) => c['rasd:InstanceID'] === it['rasd:Parent']);
    expect(parent).toBeDefined();
    expect([5, 6, 20]).toContain(Number(parent!['rasd:ResourceType']));
    const m = /^ovf:\/disk\/(.+)$/.exec(it['rasd:HostResource'] as string);
    expect(disks.map((dk) => dk['@ovf:diskId'])).toContain(m![1]);
  }
  // The disks' names and descriptions (what Xen Orchestra's import shows), ordered by unit.
  expect(diskItems.map((it) => [it['rasd:ElementName'], it['rasd:Description']])).toEqual([
    ['root', 'system disk'],
    ['data', undefined],
  ]);
  // root on SCSI (lsilogic), data on SATA as asked
  const ctlOf = (i: number): Node => items.find((c) => c['rasd:InstanceID'] === diskItems[i]!['rasd:Parent'])!;
  expect(ctlOf(0)['rasd:ResourceSubType']).toBe('lsilogic');
  expect(Number(ctlOf(1)['rasd:ResourceType'])).toBe(20);
  const nics = byType(10);
  expect(nics.map((n) => n['rasd:Connection'])).toEqual(['VM Network', 'backend']);
  expect(nics.map((n) => n['rasd:Address'])).toEqual(['00:16:3e:aa:bb:01', '00:16:3e:aa:bb:02']);
  const configs = arr(hw['vmw:Config']);
  expect(configs.find((c) => c['@vmw:key'] === 'firmware')!['@vmw:value']).toBe('efi');
  expect(arr(hw['vmw:ExtraConfig']).find((c) => c['@vmw:key'] === 'bios.bootOrder')!['@vmw:value']).toBe('hdd,ethernet');
}

/** The oVirt dialect (docs/output-formats.md §4.4, OvfOvaWriter). */
function checkOvirtOvf(xml: string, result: OvaWriteResult): void {
  expect(XMLValidator.validate(xml)).toBe(true);
  const env = (parser.parse(xml) as Node)['ovf:Envelope'] as Node;
  expect(env['@xmlns:ovirt']).toBe('http://www.ovirt.org/ovf');
  expect(env['@xmlns']).toBe('http://schemas.dmtf.org/ovf/envelope/1');
  const files = arr((env['References'] as Node)['File']);
  files.forEach((f, i) => {
    expect(f['@ovf:href']).toBe(result.disks[i]!.name);
    expect(f['@ovf:id']).toBe(f['@ovf:href']);
    expect(f['@ovf:href']).toMatch(/^[0-9a-f-]{36}$/);
    expect(Number(f['@ovf:size'])).toBe(result.disks[i]!.size);
  });
  const disks = arr((env['DiskSection'] as Node)['Disk']);
  disks.forEach((dk, i) => {
    expect(dk['@ovf:format']).toBe('http://www.gnome.org/~markmc/qcow-image-format.html');
    expect(capacityBytes(dk)).toBe(result.disks[i]!.capacity);
    expect(dk['@ovf:volume-format']).toBe('COW');
    expect(dk['@ovf:volume-type']).toBe('Sparse');
    expect(dk['@ovf:fileRef']).toBe(files[i]!['@ovf:id']);
    expect(dk['@ovf:disk-alias']).toBe(['root', 'data'][i]);
    expect(dk['@ovf:disk-description']).toBe(['system disk', ''][i]);
  });
  expect(disks.map((dk) => dk['@ovf:boot'])).toEqual(['true', 'false']);
  expect(disks.map((dk) => dk['@ovf:disk-interface'])).toEqual(['VirtIO_SCSI', 'SATA']);
  const vs = env['VirtualSystem'] as Node;
  expect(vs['@ovf:id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(vs['BiosType']).toBe('3');
  expect(vs['default_boot_sequence']).toBe('4'); // "CN" is not an oVirt sequence: CND
  const os = vs['OperatingSystemSection'] as Node;
  expect(os['@ovirt:id']).toBe('5');
  const items = arr((vs['VirtualHardwareSection'] as Node)['Item']);
  const diskItems = items.filter((it) => it['rasd:ResourceType'] === '17');
  expect(diskItems.map((it) => (it['rasd:HostResource'] as string).replace('ovf:/disk/', ''))).toEqual(disks.map((dk) => dk['@ovf:diskId']));
  expect(diskItems.map((it) => it['BootOrder'])).toEqual(['1', '0']);
  const nics = items.filter((it) => it['rasd:ResourceType'] === '10');
  expect(nics.map((n) => n['rasd:MACAddress'])).toEqual(['00:16:3e:aa:bb:01', '00:16:3e:aa:bb:02']);
  expect(nics.map((n) => n['BootOrder'])).toEqual(['2', '0']);
}

describe('OVA export from disk images (qemu-img, tar, bsdtar, sha256sum as oracles)', () => {
  beforeAll(() => {
    tmp = makeTmp('ova-');
    makeSources(tmp.dir);
  });
  afterAll(() => tmp.cleanup());

  withOracles('vmware profile to a file: listing, disks, manifest, OVF sections, measure', async () => {
    const ova = path.join(tmp.dir, 'vm.ova');
    const options = diskOptions('vmware');
    const result = await writeToFile(ova, options);
    expect(result.passes).toBe(1);
    expect(result.disks.map((x) => x.format)).toEqual(['vmdk', 'vmdk']);
    checkArchive(ova, result, [top, rawDisk], tmp.dir);
    const ovfText = readFileSync(path.join(tmp.dir, 'x-vm.ova', result.ovf.name), 'utf8');
    checkVmwareOvf(ovfText, result);
    expect((await measureOva(options)).size).toBe(statSync(ova).size);
  });

  withOracles('vmware profile: the pipe path (measure, then stream) equals the file path byte for byte', async () => {
    const fileOva = path.join(tmp.dir, 'file.ova');
    await writeToFile(fileOva, diskOptions('vmware'));
    const { bytes, result } = await writeToPipe(diskOptions('vmware'));
    expect(result.passes).toBe(2);
    expect(bytes.equals(readFileSync(fileOva))).toBe(true);
  });

  withOracles('vmware profile with stored (level 0) grains: exact size from the allocation map, pipe = file', async () => {
    const fileOva = path.join(tmp.dir, 'stored.ova');
    const options = diskOptions('vmware', { vmdkCompression: 'stored' });
    const r = await writeToFile(fileOva, options);
    const { bytes } = await writeToPipe(options);
    expect(bytes.equals(readFileSync(fileOva))).toBe(true);
    expect((await measureOva(options)).size).toBe(r.size);
    checkArchive(fileOva, r, [top, rawDisk], tmp.dir);
  });

  withOracles('ovirt profile: qcow2 members pass qemu-img check/compare, oVirt OVF dialect, pipe = file = measure', async () => {
    const ova = path.join(tmp.dir, 'ovirt.ova');
    const options = diskOptions('ovirt');
    const result = await writeToFile(ova, options);
    expect(result.passes).toBe(2); // re-readable inputs: measure first, front layout
    expect(result.disks.map((x) => x.format)).toEqual(['qcow2', 'qcow2']);
    checkArchive(ova, result, [top, rawDisk], tmp.dir);
    checkOvirtOvf(readFileSync(path.join(tmp.dir, 'x-ovirt.ova', result.ovf.name), 'utf8'), result);
    const { bytes } = await writeToPipe(options);
    expect(bytes.equals(readFileSync(ova))).toBe(true);
    expect((await measureOva(options)).size).toBe(result.size);
  });

  withOracles('ovirt profile in one pass (data-first qcow2, header patched, digest read back) has the measured size', async () => {
    const ova = path.join(tmp.dir, 'ovirt1.ova');
    const options = diskOptions('ovirt', { passes: 1 });
    const result = await writeToFile(ova, options);
    expect(result.passes).toBe(1);
    checkArchive(ova, result, [top, rawDisk], tmp.dir);
    expect((await measureOva(options)).size).toBe(result.size);
  });

  withOracles('the collapsed three-layer chain inside the OVA equals qemu-img convert of the top layer', async () => {
    const ova = path.join(tmp.dir, 'chain.ova');
    const result = await writeToFile(ova, { ...diskOptions('ovirt'), disks: [{ path: top }] } as WriteOvaOptions);
    const out = path.join(tmp.dir, 'chain-x');
    run('mkdir', ['-p', out]);
    run('tar', ['-xf', ova, '-C', out]);
    run('qemu-img', ['convert', '-O', 'raw', path.join(out, result.disks[0]!.name), path.join(out, 'ours.raw')]);
    run('qemu-img', ['convert', '-O', 'raw', top, path.join(out, 'ref.raw')]);
    expect(readFileSync(path.join(out, 'ours.raw')).equals(readFileSync(path.join(out, 'ref.raw')))).toBe(true);
  });

  withOracles('a write-only output fd: the one-pass qcow2 digest is read back through outputPath', async () => {
    const ova = path.join(tmp.dir, 'wo.ova');
    const fd = openSync(ova, 'w');
    try {
      const options = { ...diskOptions('ovirt', { passes: 1 }), outputPath: ova } as WriteOvaOptions;
      const result = await writeOva(new FileTarget(fd, ova), options);
      checkArchive(ova, result, [top, rawDisk], tmp.dir);
    } finally {
      closeSync(fd);
    }
    const fd2 = openSync(path.join(tmp.dir, 'wo2.ova'), 'w');
    try {
      await expect(writeOva(new FileTarget(fd2, 'wo2.ova'), diskOptions('ovirt', { passes: 1 }))).rejects.toThrow(OutputError);
    } finally {
      closeSync(fd2);
    }
  });

  withOracles('members of 8 GiB and more: one header with a GNU base-256 size that GNU tar and bsdtar read', () => {
    const size = 10 * 1024 ** 3 + 123;
    const file = path.join(tmp.dir, 'big.tar');
    const fd = openSync(file, 'w');
    try {
      writeSync(fd, ovaMemberHeader('big-disk1.vmdk', size, MTIME), 0, 512, 0);
      const end = 512 + size + ((512 - (size % 512)) % 512);
      ftruncateSync(fd, end + 1024); // sparse: the data and the two end blocks read as zeros
    } finally {
      closeSync(fd);
    }
    expect(gnuTarList(file)).toEqual([{ name: 'big-disk1.vmdk', size, dataOffset: 512 }]);
    expect(run('bsdtar', ['-tvf', file])).toContain(String(size));
  });
});
