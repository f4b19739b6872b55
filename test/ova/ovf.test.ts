import fc from 'fast-check';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { buildOvf, buildPaddedOvf, ovfReservedBytes } from '../../src/ova/ovf/descriptor';
import { ovaVmFromXvaMetadata, xvaDiskOrder } from '../../src/ova/ovf/from-xva';
import { ovaBaseName, ovaDisks } from '../../src/ova/ovf/members';
import { deterministicUuid, ovfCapacity, OVF_SIZE_PLACEHOLDER, parseBootOrder, type OvaVm } from '../../src/ova/ovf/model';
import type { OvaProfile } from '../../src/ova/settings';
import type { DiskInfo, XvaMetadata } from '../../src/xva/metadata/model';

const GiB = 1024 ** 3;

function vm(profile: OvaProfile, over: Partial<OvaVm> = {}, diskCount = 2): OvaVm {
  const id = profile === 'ovirt' ? deterministicUuid('vm:t') : 'test-vm';
  return {
    id,
    name: 'test vm',
    description: '',
    vcpus: 2,
    memoryBytes: 3 * GiB + 1,
    firmware: 'bios',
    guestOs: 'other',
    disks: ovaDisks(
      profile,
      id,
      'test vm',
      Array.from({ length: diskCount }, (_, i) => ({ name: `d${i}`, virtualSize: (i + 1) * GiB + 100, bootable: i === 0 })),
    ).map((d, i) => ({ ...d, fileSize: 1000 + i, populatedSize: 500 + i })),
    nics: [],
    bootOrder: ['disk'],
    ...over,
  };
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', isArray: (n) => n === 'Item' || n === 'Disk' || n === 'File' });

describe('ovf builder', () => {
  test('names from any metadata produce well-formed XML (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom<OvaProfile>('vmware', 'ovirt'), (name, desc, profile) => {
        const v = vm(profile, { name, description: desc, nics: [{ name: 'n', network: name, mac: '00:11:22:33:44:55' }] });
        expect(XMLValidator.validate(buildOvf(v, profile))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  test('the padded OVF always has exactly the reserved size, whatever the sizes (property)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<OvaProfile>('vmware', 'ovirt'),
        fc.array(fc.tuple(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })), { minLength: 1, maxLength: 4 }),
        (profile, sizes) => {
          const base = vm(profile, {}, sizes.length);
          const reserved = ovfReservedBytes(base, profile);
          const sized: OvaVm = { ...base, disks: base.disks.map((d, i) => ({ ...d, fileSize: sizes[i]![0], populatedSize: sizes[i]![1] })) };
          const body = buildPaddedOvf(sized, profile, reserved);
          expect(body.length).toBe(reserved);
          expect(XMLValidator.validate(body.toString('utf8'))).toBe(true);
        },
      ),
    );
  });

  test('the reservation does not depend on the sizes, and placeholders are the widest numbers', () => {
    const a = vm('vmware');
    const b: OvaVm = { ...a, disks: a.disks.map((d) => ({ ...d, fileSize: 7, populatedSize: undefined })) };
    expect(ovfReservedBytes(a, 'vmware')).toBe(ovfReservedBytes(b, 'vmware'));
    expect(buildOvf(b, 'vmware', { placeholders: true })).toContain(`ovf:size="${OVF_SIZE_PLACEHOLDER}"`);
    expect(() => buildOvf(b, 'vmware')).toThrow(/not known/);
  });

  test('vmware: memory in MiB rounded up, capacities in bytes, VMDK capacity in whole sectors', () => {
    const v = vm('vmware');
    const env = parser.parse(buildOvf(v, 'vmware')).Envelope;
    const items = env.VirtualSystem.VirtualHardwareSection.Item as Array<Record<string, unknown>>;
    expect(items.find((i) => i['rasd:ResourceType'] === 4)!['rasd:VirtualQuantity']).toBe(3073);
    expect(env.DiskSection.Disk.map((d: Record<string, unknown>) => Number(d['@ovf:capacity']))).toEqual([GiB + 512, 2 * GiB + 512]);
  });

  test.each([['vmware' as const], ['ovirt' as const]])('%s: disk capacities are whole 512-byte sectors, rounded up (qemu reads sizes in sectors)', (profile) => {
    const sizes = [1000, 20_983_865, 1024, 0];
    const disks = ovaDisks(profile, deterministicUuid('vm:sizes'), 'sizes', sizes.map((virtualSize, i) => ({ name: `d${i}`, virtualSize, bootable: i === 0 })));
    expect(disks.map((d) => d.capacity)).toEqual([1024, 20_984_320, 1024, 0]);
  });

  test.each([['vmware' as const], ['ovirt' as const]])('%s: a size that rounds up past 2^53 is refused as an output limit, not an internal error', (profile) => {
    const make = (virtualSize: number) => () => ovaDisks(profile, deterministicUuid('vm:huge'), 'huge', [{ name: 'd', virtualSize, bootable: true }]);
    expect(make(2 ** 53 - 1)).toThrow(expect.objectContaining({ code: 'OUTPUT_UNSUPPORTED', exitCode: 4 }));
    expect(make(2 ** 53 - 512)().map((d) => d.capacity)).toEqual([2 ** 53 - 512]);
  });

  test("vmware: each disk item carries its disk's name and description, which Xen Orchestra imports", () => {
    const v = vm('vmware', {}, 3);
    v.disks[0]!.name = 'root';
    v.disks[0]!.description = 'system disk: ext4 & <lvm>';
    v.disks[1]!.name = 'data';
    v.disks[2]!.name = '';
    const items = parser.parse(buildOvf(v, 'vmware')).Envelope.VirtualSystem.VirtualHardwareSection.Item as Array<Record<string, unknown>>;
    const disks = items.filter((i) => i['rasd:ResourceType'] === 17);
    // Xen Orchestra's ova-read.js: name_label = Caption, else ElementName; name_description =
    // Description, else "No description".
    const xo = disks.map((i) => [i['rasd:Caption'] ?? i['rasd:ElementName'], i['rasd:Description'] ?? 'No description']);
    expect(xo).toEqual([
      ['root', 'system disk: ext4 & <lvm>'],
      ['data', 'No description'],
      ['Hard Disk 3', 'No description'], // a disk without a name keeps the generic label
    ]);
    // rasd elements stay in schema (alphabetical) order, which ovftool validates.
    for (const i of disks) {
      const keys = Object.keys(i).filter((k) => k.startsWith('rasd:'));
      expect(keys).toEqual([...keys].sort());
    }
  });

  test('vmware: controllers fill up (SCSI skips unit 7, 15 per controller; IDE 2 per controller)', () => {
    const base = vm('vmware', {}, 17);
    const xml = buildOvf(base, 'vmware');
    const items = parser.parse(xml).Envelope.VirtualSystem.VirtualHardwareSection.Item as Array<Record<string, number>>;
    const scsi = items.filter((i) => i['rasd:ResourceType'] === 6);
    expect(scsi.map((c) => c['rasd:Address'])).toEqual([0, 1]);
    const disks = items.filter((i) => i['rasd:ResourceType'] === 17);
    const first = disks.filter((dk) => dk['rasd:Parent'] === scsi[0]!['rasd:InstanceID']).map((dk) => dk['rasd:AddressOnParent']);
    expect(first).toEqual([0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(disks.filter((dk) => dk['rasd:Parent'] === scsi[1]!['rasd:InstanceID'])).toHaveLength(2);

    const ide = vm('vmware', {}, 3);
    ide.disks.forEach((dk) => (dk.controller = 'ide'));
    const it2 = parser.parse(buildOvf(ide, 'vmware')).Envelope.VirtualSystem.VirtualHardwareSection.Item as Array<Record<string, number>>;
    expect(it2.filter((i) => i['rasd:ResourceType'] === 5).map((c) => c['rasd:Address'])).toEqual([0, 1]);
  });

  test('ovirt: exact capacities, boot flag on the bootable disk only, BiosType from firmware', () => {
    const v = vm('ovirt', { firmware: 'uefi' });
    const env = parser.parse(buildOvf(v, 'ovirt'))['ovf:Envelope'];
    // (i + 1) GiB + 100 bytes, in whole sectors: not a whole KiB, so in bytes (was: whole GiB, rounded up)
    expect(env.DiskSection.Disk.map((d: Record<string, unknown>) => [Number(d['@ovf:capacity']), d['@ovf:capacityAllocationUnits']])).toEqual([
      [GiB + 512, 'byte * 2^0'],
      [2 * GiB + 512, 'byte * 2^0'],
    ]);
    expect(env.DiskSection.Disk.map((d: Record<string, unknown>) => d['@ovf:boot'])).toEqual(['true', 'false']);
    expect(env.VirtualSystem.BiosType).toBe(3);
    expect(env.References.File[0]['@ovf:href']).toBe(v.disks[0]!.fileId);
  });

  test('ovfCapacity: byte * 2^N with the largest N of 30, 20, 10, 0 that divides the size', () => {
    expect(ovfCapacity(16 * GiB)).toEqual({ capacity: 16, units: 'byte * 2^30' });
    expect(ovfCapacity(2 * GiB)).toEqual({ capacity: 2, units: 'byte * 2^30' }); // never 2^31: CloudStack would read bytes
    expect(ovfCapacity(1024 * GiB)).toEqual({ capacity: 1024, units: 'byte * 2^30' });
    expect(ovfCapacity(20 * 1024 ** 2)).toEqual({ capacity: 20, units: 'byte * 2^20' });
    expect(ovfCapacity(21_495_808)).toEqual({ capacity: 20_992, units: 'byte * 2^10' }); // 20.5 MiB
    expect(ovfCapacity(20_984_320)).toEqual({ capacity: 20_984_320, units: 'byte * 2^0' }); // 40985 sectors
    expect(ovfCapacity(0)).toEqual({ capacity: 0, units: 'byte * 2^30' });
  });

  /**
   * The rules importers apply to `ovf:capacity` × `ovf:capacityAllocationUnits`, restated from
   * their public parsers (docs/output-formats.md, "OVF capacities"). Each returns the size in
   * bytes it would import, or undefined when it loses the size.
   */
  const importerRules: Record<string, (capacity: string, units: string) => number | undefined> = {
    // Proxmox PVE::GuestImport::OVF: only "byte * base^exponent" (spaces optional) has a factor.
    proxmox: (capacity, units) => {
      const m = /^\s*byte\s*\*\s*([0-9]+)\s*\^\s*([0-9]+)\s*$/.exec(units);
      return m ? Number(capacity) * Number(m[1]) ** Number(m[2]) : undefined;
    },
    // Apache CloudStack OVFHelper: 2^10, 2^20, 2^30 (or KB/MB/GB names); anything else is bytes.
    cloudstack: (capacity, units) => Number(capacity) * ({ 'byte * 2^10': 2 ** 10, 'byte * 2^20': 2 ** 20, 'byte * 2^30': 2 ** 30 }[units.toLowerCase()] ?? 1),
    // Xen Orchestra ova-read.js: a trailing "^N" is 2^N, otherwise a factor of 1.
    xenOrchestra: (capacity, units) => {
      const m = /\^([0-9]+)$/.exec(units);
      return Number(capacity) * (m ? 2 ** Number(m[1]) : 1);
    },
  };

  test.each(Object.keys(importerRules))('%s reads every capacity exactly, in both profiles (property)', (importer) => {
    const rule = importerRules[importer]!;
    fc.assert(
      fc.property(fc.constantFrom<OvaProfile>('vmware', 'ovirt'), fc.integer({ min: 0, max: 2 ** 41 }), fc.integer({ min: 0, max: 40 }), (profile, sectors, shift) => {
        // Sizes of every alignment: whole sectors times a power of two.
        const size = Math.min(sectors * 2 ** shift, 2 ** 41) * 512; // up to 1 PiB
        const v = vm(profile, {}, 1);
        v.disks[0]!.capacity = size;
        const doc = parser.parse(buildOvf(v, profile));
        const disk = (profile === 'ovirt' ? doc['ovf:Envelope'] : doc.Envelope).DiskSection.Disk[0] as Record<string, unknown>;
        expect(rule(String(disk['@ovf:capacity']), String(disk['@ovf:capacityAllocationUnits']))).toBe(size);
      }),
      { numRuns: 300 },
    );
  });

  test('helpers: uuids, base names, boot order strings', () => {
    expect(deterministicUuid('x')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(deterministicUuid('x')).toBe(deterministicUuid('x'));
    expect(deterministicUuid('x')).not.toBe(deterministicUuid('y'));
    expect(ovaBaseName('../../etc/passwd')).toBe('etc_passwd');
    expect(ovaBaseName('Ünïcode name')).toBe('Unicode_name');
    expect(ovaBaseName('...')).toBe('vm');
    expect(ovaBaseName('x'.repeat(300)).length).toBe(60);
    expect(parseBootOrder('cdn')).toEqual(['disk', 'cdrom', 'network']);
    expect(parseBootOrder('network, disk')).toEqual(['network', 'disk']);
    expect(parseBootOrder('')).toEqual([]);
  });
});

function disk(ref: string, userdevice: string, size: number, bootable: boolean, suspend = false): DiskInfo {
  return {
    ref,
    userdevice,
    bootable,
    virtualSize: size,
    isSuspendImage: suspend,
    vdi: { ref, uuid: `0000000${userdevice}-1111-2222-3333-444444444444`, name: `vdi${userdevice}`, description: '', virtualSize: size, type: 'user', srContentType: 'user', srName: 'sr', readOnly: false },
  };
}

function meta(over: Partial<XvaMetadata['vm']> = {}): XvaMetadata {
  return {
    version: { hostname: 'h', date: '2026-01-01', productVersion: '8.2', productBrand: 'XCP-ng', buildNumber: '1', xapiMajor: 1, xapiMinor: 1, exportVsn: 2 },
    vm: {
      ref: 'Ref:1', uuid: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', name: 'web', description: 'd', vcpus: 4, vcpusAtStartup: 2, memoryBytes: 2 * GiB,
      isTemplate: false, isSnapshot: false, hvm: true, firmware: 'uefi', domainType: 'hvm', bootOrder: 'dc', powerState: 'Halted', platform: { viridian: 'true' }, otherConfig: {},
      ...over,
    },
    disks: [disk('Ref:9', '0', GiB, false), disk('Ref:10', '1', 2 * GiB, false), disk('Ref:11', '2', 4096, false, true)],
    cdroms: [],
    vifs: [
      { ref: 'Ref:20', device: '1', mac: 'aa:00:00:00:00:02', macAutogenerated: false, mtu: 1500, networkName: '', bridge: 'xenbr1' },
      { ref: 'Ref:21', device: '0', mac: 'aa:00:00:00:00:01', macAutogenerated: false, mtu: 1500, networkName: 'LAN', bridge: 'xenbr0' },
    ],
    streamedRefs: ['Ref:10', 'Ref:11', 'Ref:9'],
    vdiRefs: ['Ref:9', 'Ref:10', 'Ref:11'],
  };
}

describe('ovaVmFromXvaMetadata', () => {
  test('disks in stream order, numbered by userdevice; suspend image dropped, first userdevice bootable when none is', () => {
    const m = meta();
    const v = ovaVmFromXvaMetadata(m, { profile: 'vmware' });
    expect(xvaDiskOrder(m)).toEqual(['Ref:10', 'Ref:9']);
    expect(v.disks.map((x) => x.name)).toEqual(['vdi1', 'vdi0']);
    expect(v.disks.map((x) => x.bootable)).toEqual([false, true]);
    expect(v.disks.map((x) => x.unit)).toEqual([1, 0]);
    // disk1 / vmdisk1 / file1 is userdevice 0, wherever the XVA streams it.
    expect(v.disks.map((x) => [x.fileName, x.id, x.fileId])).toEqual([
      ['web-disk2.vmdk', 'vmdisk2', 'file2'],
      ['web-disk1.vmdk', 'vmdisk1', 'file1'],
    ]);
    // DiskSection and the disk items list userdevice 0 first; References keep member order.
    const env = parser.parse(buildOvf({ ...v, disks: v.disks.map((d) => ({ ...d, fileSize: 1, populatedSize: 1 })) }, 'vmware')).Envelope;
    expect(env.References.File.map((f: Record<string, string>) => f['@ovf:id'])).toEqual(['file2', 'file1']);
    expect(env.DiskSection.Disk.map((d: Record<string, string>) => d['@ovf:diskId'])).toEqual(['vmdisk1', 'vmdisk2']);
    const items = env.VirtualSystem.VirtualHardwareSection.Item as Array<Record<string, unknown>>;
    expect(items.filter((i) => i['rasd:ResourceType'] === 17).map((i) => [i['rasd:HostResource'], i['rasd:AddressOnParent']])).toEqual([
      ['ovf:/disk/vmdisk1', 0],
      ['ovf:/disk/vmdisk2', 1],
    ]);
    expect(v.vcpus).toBe(2);
    expect(v.firmware).toBe('uefi');
    expect(v.guestOs).toBe('windows');
    expect(v.bootOrder).toEqual(['cdrom', 'disk']);
    expect(v.nics).toEqual([
      { name: 'eth0', network: 'LAN', mac: 'aa:00:00:00:00:01', model: undefined },
      { name: 'eth1', network: 'xenbr1', mac: 'aa:00:00:00:00:02', model: undefined },
    ]);
  });

  test('ovirt ids come from the XVA uuids; PV guests are Linux', () => {
    const v = ovaVmFromXvaMetadata(meta({ hvm: false, domainType: 'pv', platform: {} }), { profile: 'ovirt', name: 'renamed' });
    expect(v.id).toBe('aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee');
    expect(v.name).toBe('renamed');
    expect(v.disks[0]!.id).toBe('00000001-1111-2222-3333-444444444444');
    expect(v.disks[0]!.fileName).toBe(v.disks[0]!.fileId);
    expect(v.disks[0]!.format).toBe('qcow2');
    expect(v.guestOs).toBe('linux');
  });
});
