/**
 * pack --from an OVA: OVAs written by our own OVA writer (vmware: streamOptimized VMDK with the
 * GD at the end; ovirt: qcow2 members), and OVAs assembled with GNU tar around VMDKs made by
 * qemu-img (streamOptimized with the GD at the front, monolithicSparse uncompressed) plus a
 * raw member. Each XVA is converted back and compared byte for byte with the source images.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertXva } from '../src/convert';
import { UsageError, ImageFormatError } from '../src/errors';
import { openInput } from '../src/input/open';
import { writeOva, type WriteOvaOptions } from '../src/ova';
import { parseOvf } from '../src/ova/ova-reader';
import { packXva } from '../src/pack';
import type { XvaMetadata } from '../src/xva/model';
import { readXva } from '../src/xva/reader';
import { openFileTarget } from './ova/_helpers';
import { KiB, MiB, randomBytes, sparseDisk } from './helpers/xva-fixtures';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pack-ova-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function file(name: string, data?: Buffer): string {
  const p = path.join(dir, name);
  if (data) fs.writeFileSync(p, data);
  return p;
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function metadataOf(xva: string): Promise<{ meta: XvaMetadata; xml: string }> {
  const src = await openInput(xva);
  let got: { meta: XvaMetadata; xml: string } | undefined;
  try {
    await readXva(src, { onMetadata: (meta, xml) => void (got = { meta, xml }) }, { metadataOnly: true });
  } finally {
    await src.close();
  }
  return got!;
}

async function convertedDisks(xva: string, sub: string): Promise<Buffer[]> {
  const conv = await convertXva(xva, { outDir: file(sub) });
  return conv.disks.sort((a, b) => Number(a.userdevice) - Number(b.userdevice)).map((d) => fs.readFileSync(d.path!));
}

/** Two raw disks: one with holes and a size that is not a whole number of 64 KiB grains. */
function rawDisks(): { paths: string[]; data: Buffer[] } {
  const a = sparseDisk({ size: 5 * MiB + 4096 + 512, seed: 11, fill: [{ offset: 0, length: 70 * KiB }, { offset: 2 * MiB + 100, length: 300 * KiB }, { offset: 5 * MiB, length: 4608 }] });
  const b = randomBytes(MiB + 64 * KiB, 12);
  return { paths: [file('root.raw', a), file('data.raw', b)], data: [a, b] };
}

async function makeOva(name: string, options: WriteOvaOptions): Promise<string> {
  const ova = file(name);
  const { target, close } = openFileTarget(ova);
  try {
    await writeOva(target, { mtime: 1_700_000_000, ...options, outputPath: ova });
  } finally {
    close();
  }
  return ova;
}

const VM = {
  name: 'web-01',
  description: 'from an OVA',
  vcpus: 3,
  memoryBytes: 2048 * MiB,
  firmware: 'uefi' as const,
  nics: [{ name: 'eth0', network: 'VM Network', mac: '02:11:22:33:44:55' }],
};

for (const profile of ['vmware', 'ovirt'] as const) {
  test(`OVA written by our ${profile} profile packs to an XVA with the same disks and VM settings`, async () => {
    const { paths, data } = rawDisks();
    const ova = await makeOva(`${profile}.ova`, { profile, disks: paths.map((p) => ({ path: p })), vm: VM });
    const out = file(`${profile}.xva`);
    const s = await packXva({ from: ova, output: out });
    expect(s.disks.map((d) => [d.format, d.virtualSize, d.bootable])).toEqual([
      [profile === 'vmware' ? 'vmdk' : 'qcow2', data[0]!.length, true],
      [profile === 'vmware' ? 'vmdk' : 'qcow2', data[1]!.length, false],
    ]);
    expect(s.source?.metadata).toBe('rebuilt');
    const back = await convertedDisks(out, 'conv');
    expect(back[0]!.equals(data[0]!)).toBe(true);
    expect(back[1]!.equals(data[1]!)).toBe(true);

    const { meta } = await metadataOf(out);
    expect(meta.vm.name).toBe('web-01');
    expect(meta.vm.description).toBe('from an OVA');
    expect(meta.vm.vcpus).toBe(3);
    expect(meta.vm.memoryBytes).toBe(2048 * MiB);
    expect(meta.vm.firmware).toBe('uefi');
    expect(meta.vifs.map((v) => [v.mac, v.networkName])).toEqual([['02:11:22:33:44:55', 'VM Network']]);
    expect(meta.disks.map((d) => d.virtualSize)).toEqual(data.map((d) => d.length));
  });
}

test('options override the OVF; stored-deflate VMDK grains; OVA recognised by content, not name', async () => {
  const { paths, data } = rawDisks();
  const ova = await makeOva('vm.ova', { profile: 'vmware', vmdkCompression: 'stored', disks: [{ path: paths[0]! }], vm: VM });
  const renamed = file('vm-archive.tar');
  fs.renameSync(ova, renamed);
  const out = file('o.xva.zst');
  const s = await packXva({ from: renamed, output: out, vm: { name: 'renamed', vcpus: 1, memoryBytes: 512 * MiB, firmware: 'bios' }, nics: [{ network: 'xenbr1' }] });
  expect(s.vm).toEqual({ name: 'renamed', vcpus: 1, memoryBytes: 512 * MiB, firmware: 'bios' });
  const { meta } = await metadataOf(out);
  expect([meta.vm.name, meta.vm.vcpus, meta.vm.memoryBytes, meta.vm.firmware]).toEqual(['renamed', 1, 512 * MiB, 'bios']);
  expect(meta.vifs.map((v) => v.networkName)).toEqual(['xenbr1']);
  expect((await convertedDisks(out, 'c'))[0]!.equals(data[0]!)).toBe(true);
});

test('qemu-img VMDKs (streamOptimized, GD at the front; monolithicSparse) and a raw member in a GNU tar OVA', async () => {
  const a = sparseDisk({ size: 6 * MiB, seed: 21, fill: [{ offset: 0, length: 4 * KiB }, { offset: MiB + 7, length: 200 * KiB }, { offset: 6 * MiB - 64 * KiB, length: 64 * KiB }] });
  const b = sparseDisk({ size: 3 * MiB, seed: 22, fill: [{ offset: 100 * KiB, length: 50 * KiB }, { offset: 2 * MiB, length: 1 }] });
  const c = randomBytes(2 * MiB, 23);
  file('a.raw', a);
  file('b.raw', b);
  file('disk3.img', c);
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'a.raw', 'disk1.vmdk']);
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', 'b.raw', 'disk2.vmdk']);
  // qemu's streamOptimized output has its GD at the front (not GD_AT_END).
  const head = fs.readFileSync(file('disk1.vmdk')).subarray(0, 512);
  expect(head.readUInt32LE(56)).not.toBe(0xffffffff);
  const ovf = `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
    <File ovf:href="disk1.vmdk" ovf:id="f1"/>
    <File ovf:href="disk2.vmdk" ovf:id="f2"/>
    <File ovf:href="disk3.img" ovf:id="f3"/>
  </References>
  <DiskSection>
    <Info>disks</Info>
    <Disk ovf:capacity="6" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="d1" ovf:fileRef="f1"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
    <Disk ovf:capacity="3145728" ovf:diskId="d2" ovf:fileRef="f2"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#sparse"/>
    <Disk ovf:capacity="2097152" ovf:diskId="d3" ovf:fileRef="f3" ovf:format="http://example.org/raw"/>
  </DiskSection>
  <VirtualSystem ovf:id="hand-made">
    <Info>A VM</Info>
    <VirtualHardwareSection>
      <Info>hw</Info>
      <Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>768</rasd:VirtualQuantity></Item>
      <Item><rasd:Connection>LAN</rasd:Connection><rasd:ResourceType>10</rasd:ResourceType></Item>
      <vmw:Config vmw:key="firmware" vmw:value="bios"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`;
  file('hand.ovf', Buffer.from(ovf));
  sh('tar', ['--format=ustar', '-cf', 'hand.ova', 'hand.ovf', 'disk1.vmdk', 'disk2.vmdk', 'disk3.img']);
  const out = file('hand.xva');
  const s = await packXva({ from: file('hand.ova'), output: out });
  expect(s.disks.map((d) => [d.format, d.virtualSize])).toEqual([
    ['vmdk', 6 * MiB],
    ['vmdk', 3 * MiB],
    ['raw', 2 * MiB],
  ]);
  expect(s.vm).toEqual({ name: 'hand-made', vcpus: 2, memoryBytes: 768 * MiB, firmware: 'bios' });
  const back = await convertedDisks(out, 'conv');
  expect(back[0]!.equals(a)).toBe(true);
  expect(back[1]!.equals(b)).toBe(true);
  expect(back[2]!.equals(c)).toBe(true);
  const { meta } = await metadataOf(out);
  expect(meta.vifs.map((v) => v.networkName)).toEqual(['LAN']);
  expect(meta.vm.name).toBe('hand-made');
});

test('refusals: OVA on stdin / URL, compressed VMDK damage, DOCTYPE in the OVF', async () => {
  await expect(packXva({ from: 'https://example.org/vm.ova', output: file('x.xva') })).rejects.toThrow(UsageError);
  await expect(packXva({ from: 'https://example.org/vm.ova', output: file('x.xva') })).rejects.toThrow(/random access/);
  expect(() => parseOvf('<!DOCTYPE x [<!ENTITY a "b">]><Envelope/>')).toThrow(ImageFormatError);

  // A VMDK whose footer was cut off (GD_AT_END, truncated stream).
  const { paths } = rawDisks();
  const ova = await makeOva('t.ova', { profile: 'vmware', disks: [{ path: paths[1]! }], vm: VM });
  sh('tar', ['-xf', ova]);
  const vmdk = fs.readdirSync(dir).find((n) => n.endsWith('.vmdk'))!;
  const ovfName = fs.readdirSync(dir).find((n) => n.endsWith('.ovf'))!;
  const full = fs.readFileSync(file(vmdk));
  expect(full.readUInt32LE(56)).toBe(0xffffffff); // our writer: GD at the end
  fs.writeFileSync(file(vmdk), full.subarray(0, full.length - 1536));
  sh('tar', ['--format=ustar', '-cf', 'cut.ova', ovfName, vmdk]);
  await expect(packXva({ from: file('cut.ova'), output: file('cut.xva') })).rejects.toThrow(/footer/);
  expect(fs.existsSync(file('cut.xva'))).toBe(false);
});
