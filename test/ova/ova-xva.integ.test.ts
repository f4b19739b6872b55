/**
 * OVA export from an XVA: the VM comes from ova.xml, the disks from the converter's single
 * streaming pass. Checked with qemu-img / tar / sha256sum like the disk-image path.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { UsageError } from '../../src/errors';
import { openInput } from '../../src/input/open';
import { measureOva, writeOva, type OvaWriteResult, type WriteOvaOptions, type XvaOvaSource } from '../../src/ova/ova-writer';
import { parseManifest } from '../../src/ova/manifest';
import { makeXvaFile, MiB, type XvaFixture } from '../helpers/xva-fixtures';
import { itWithTools } from '../helpers/system-tools';
import { gnuTarList, makeTmp, memoryPipe, openFileTarget, run, runStatus } from './_helpers';

const withOracles = itWithTools('qemu-img', 'tar', 'sha256sum');

const MTIME = 1_700_000_000;

function source(file: string, reopenable = true): XvaOvaSource {
  return { name: file, reopenable, open: () => openInput(file) };
}

describe('OVA export from an XVA', () => {
  let tmp: ReturnType<typeof makeTmp>;
  let fx: XvaFixture & { path: string };
  const rawOf = new Map<string, string>();

  beforeAll(async () => {
    tmp = makeTmp('ova-xva-');
    fx = await makeXvaFile(tmp.dir, {
      vmName: 'db server',
      vm: { vcpus: 4, memoryBytes: 2048 * MiB, firmware: 'uefi', bootOrder: 'cdn', description: 'from XenServer' },
      // "Ref:10" streams before "Ref:9": the archive order differs from userdevice order.
      disks: [
        { ref: 'Ref:9', name: 'system', description: 'root file system & <boot>', userdevice: 0, bootable: true, size: 5 * MiB, fill: [{ offset: 0, length: 300 * 1024 }, { offset: 4 * MiB, length: 65536 }] },
        { ref: 'Ref:10', name: 'data', userdevice: 1, bootable: false, size: 3 * MiB + 4096, fill: [{ offset: MiB, length: MiB }] },
      ],
      vifs: [{ device: 0, mac: 'b2:1f:00:11:22:33', networkName: 'Pool-wide network associated with eth0', bridge: 'xenbr0' }],
      compression: 'gzip',
    });
    for (const disk of fx.disks) {
      const file = path.join(tmp.dir, `${disk.name}.raw`);
      writeFileSync(file, disk.expected);
      rawOf.set(disk.name, file);
    }
  });
  afterAll(() => tmp.cleanup());

  function options(extra: Partial<WriteOvaOptions> = {}, reopenable = true): WriteOvaOptions {
    return { xva: source(fx.path, reopenable), mtime: MTIME, vmdkWorkers: 0, ...extra } as WriteOvaOptions;
  }

  async function toFile(name: string, o: WriteOvaOptions): Promise<{ file: string; result: OvaWriteResult }> {
    const file = path.join(tmp.dir, name);
    const { target, close } = openFileTarget(file);
    try {
      return { file, result: await writeOva(target, o) };
    } finally {
      close();
    }
  }

  function verify(file: string, result: OvaWriteResult, sourcesInMemberOrder: string[]): string {
    const listed = gnuTarList(file);
    expect(listed.map((r) => r.name)).toEqual([result.ovf.name, ...result.disks.map((x) => x.name), result.manifest!.name]);
    expect(statSync(file).size).toBe(result.size);
    const out = path.join(tmp.dir, `x-${path.basename(file)}`);
    run('mkdir', ['-p', out]);
    run('tar', ['-xf', file, '-C', out]);
    const mf = parseManifest(readFileSync(path.join(out, result.manifest!.name), 'utf8'));
    writeFileSync(path.join(out, 'SUMS'), mf.map((m) => `${m.digest}  ${m.name}\n`).join(''));
    expect(runStatus('sha256sum', ['-c', 'SUMS'], out).status).toBe(0);
    result.disks.forEach((disk, i) => {
      const f = path.join(out, disk.name);
      expect(runStatus('qemu-img', ['check', '-f', disk.format, f]).status).toBe(0);
      const cmp = runStatus('qemu-img', ['compare', '-f', disk.format, '-F', 'raw', f, sourcesInMemberOrder[i]!]);
      expect(cmp.stdout).toMatch(/Images are identical/);
    });
    return readFileSync(path.join(out, result.ovf.name), 'utf8');
  }

  withOracles('vmware profile, one pass into a file: VM from ova.xml, members in stream order, disks numbered and listed by userdevice', async () => {
    const { file, result } = await toFile('xva.ova', options());
    expect(result.passes).toBe(1);
    // Members follow the XVA's stream order (Ref:10 = "data" first): one pass cannot reorder.
    expect(result.vm.disks.map((x) => x.name)).toEqual(['data', 'system']);
    // …but disk N is userdevice N-1: "system" (userdevice 0) is disk1 wherever its member lies.
    expect(result.disks.map((x) => x.name)).toEqual(['db_server-disk2.vmdk', 'db_server-disk1.vmdk']);
    const ovf = verify(file, result, [rawOf.get('data')!, rawOf.get('system')!]);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the parsed OVF, walked by element path
    const env = (new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', isArray: (n) => n === 'File' || n === 'Disk' }).parse(ovf) as Record<string, any>)['Envelope'];
    expect(env.VirtualSystem.Name).toBe('db server');
    // References in member order (DSP0243: the archive follows it); DiskSection in device order.
    expect((env.References.File as Array<Record<string, string>>).map((f) => [f['@ovf:id'], f['@ovf:href']])).toEqual([
      ['file2', 'db_server-disk2.vmdk'],
      ['file1', 'db_server-disk1.vmdk'],
    ]);
    expect((env.DiskSection.Disk as Array<Record<string, string>>).map((dk) => [dk['@ovf:diskId'], dk['@ovf:fileRef']])).toEqual([
      ['vmdisk1', 'file1'],
      ['vmdisk2', 'file2'],
    ]);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the parsed OVF, walked by element path
    const items = env.VirtualSystem.VirtualHardwareSection.Item as Array<Record<string, any>>;
    expect(items.find((i) => i['rasd:ResourceType'] === 3)!['rasd:VirtualQuantity']).toBe(4);
    expect(items.find((i) => i['rasd:ResourceType'] === 4)!['rasd:VirtualQuantity']).toBe(2048);
    const diskItems = items.filter((i) => i['rasd:ResourceType'] === 17);
    // Controller addressing follows userdevice: "system" (vmdisk1) is unit 0.
    expect(diskItems.map((i) => [i['rasd:HostResource'], i['rasd:AddressOnParent']])).toEqual([
      ['ovf:/disk/vmdisk1', 0],
      ['ovf:/disk/vmdisk2', 1],
    ]);
    // Each disk item is named and described after its VDI (what Xen Orchestra's import shows).
    expect(diskItems.map((i) => [i['rasd:ElementName'], i['rasd:Description']])).toEqual([
      ['system', 'root file system & <boot>'],
      ['data', undefined],
    ]);
    const nic = items.find((i) => i['rasd:ResourceType'] === 10)!;
    expect(nic['rasd:Address']).toBe('b2:1f:00:11:22:33');
    expect(nic['rasd:Connection']).toBe('Pool-wide network associated with eth0');
    expect(env.VirtualSystem.VirtualHardwareSection['vmw:Config']['@vmw:value']).toBe('efi');
    expect((await measureOva(options())).size).toBe(result.size);
  });

  withOracles('to a pipe from a re-readable XVA: measured first, identical to the file output (deflate streams on the thread pool)', async () => {
    const { file } = await toFile('xva-file.ova', options({ vmdkWorkers: 2 }));
    const pipe = memoryPipe();
    const result = await writeOva(pipe.target, options({ vmdkWorkers: 2 }));
    expect(result.passes).toBe(2);
    expect((await pipe.finish()).equals(readFileSync(file))).toBe(true);
  });

  withOracles('ovirt profile: measured first from a file XVA; one pass (read back digest) from a read-once XVA; same size', async () => {
    const two = await toFile('xva-ovirt.ova', options({ profile: 'ovirt' }));
    expect(two.result.passes).toBe(2);
    verify(two.file, two.result, [rawOf.get('data')!, rawOf.get('system')!]);
    const one = await toFile('xva-ovirt1.ova', options({ profile: 'ovirt' }, false));
    expect(one.result.passes).toBe(1);
    verify(one.file, one.result, [rawOf.get('data')!, rawOf.get('system')!]);
    expect(one.result.size).toBe(two.result.size);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the parsed OVF, walked by element path
    const ovirtDisks = (new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' }).parse(readFileSync(two.file).subarray(two.result.ovf.offset, two.result.ovf.offset + two.result.ovf.size).toString('utf8')) as Record<string, any>)['ovf:Envelope'].DiskSection.Disk as Array<Record<string, string>>;
    // DiskSection in userdevice order (oVirt's dialect places disks by nothing else), the boot
    // flag on userdevice 0.
    expect(ovirtDisks.map((dk) => [dk['@ovf:disk-alias'], dk['@ovf:disk-description'], dk['@ovf:boot']])).toEqual([
      ['system', 'root file system & <boot>', 'true'],
      ['data', '', 'false'],
    ]);
    // Disk ids are the VDI uuids from ova.xml, the same in both modes.
    expect(one.result.vm.disks.map((x) => x.id)).toEqual(two.result.vm.disks.map((x) => x.id));
    expect(one.result.vm.disks.every((x) => /^[0-9a-f-]{36}$/.test(x.id))).toBe(true);
    expect((await measureOva(options({ profile: 'ovirt' }))).size).toBe(one.result.size);
  });

  withOracles('a read-once XVA to a pipe is refused with an explanation (both profiles)', async () => {
    for (const profile of ['vmware', 'ovirt'] as const) {
      const pipe = memoryPipe();
      const err = await writeOva(pipe.target, options({ profile }, false)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toMatch(/exact size before the first byte/);
      expect((err as Error).message).toMatch(/read twice/);
      expect(pipe.target.position).toBe(0);
    }
  });
});
