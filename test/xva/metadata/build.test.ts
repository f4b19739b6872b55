import { XMLParser } from 'fast-xml-parser';
import type { XvaMetadata } from '../../../src/xva/metadata/model';
import { buildOvaXml, buildOvaXmlObjects, ovaXmlSpecFromMetadata, type OvaXmlIdentities } from '../../../src/xva/metadata/build';
import { NULL_REF, REQUIRED_FIELDS, type OvaXmlClass } from '../../../src/xva/metadata/fields';
import type { OvaXmlSpec } from '../../../src/xva/metadata/spec';
import { escapeXml } from '../../../src/xva/metadata/xml';
import { encodeRpcValue, RpcDateTime, RpcDouble, rpcToXml } from '../../../src/xva/metadata/xmlrpc';
import { seededUuidGen } from '../../helpers/xva-fixtures';

const GiB = 1024 ** 3;

/** Decoded XML-RPC: untyped values and <string> become strings, booleans booleans. */
type Decoded = string | boolean | number | Decoded[] | { [k: string]: Decoded };
type Node = Record<string, unknown>;

function text(nodes: Node[]): string {
  return nodes.map((n) => String(n['#text'] ?? '')).join('');
}

function decodeValue(valueChildren: Node[]): Decoded {
  const typed = valueChildren.find((n) => !('#text' in n));
  if (!typed) return text(valueChildren);
  const [tag, inner] = Object.entries(typed)[0] as [string, Node[]];
  switch (tag) {
    case 'struct': {
      const out: Record<string, Decoded> = {};
      for (const m of inner) {
        const parts = m.member as Node[];
        const name = text(parts.find((p) => 'name' in p)!.name as Node[]);
        out[name] = decodeValue(parts.find((p) => 'value' in p)!.value as Node[]);
      }
      return out;
    }
    case 'array':
      return ((inner[0]?.data as Node[]) ?? []).map((v) => decodeValue(v.value as Node[]));
    case 'boolean':
      return text(inner) === '1';
    case 'double':
      return Number(text(inner));
    default:
      return text(inner);
  }
}

function parseOvaXml(xml: string): Record<string, Decoded> {
  const parser = new XMLParser({ preserveOrder: true, trimValues: false, parseTagValue: false, processEntities: true });
  const doc = parser.parse(xml) as Node[];
  expect(doc).toHaveLength(1);
  return decodeValue(doc[0]!.value as Node[]) as Record<string, Decoded>;
}

interface Obj {
  class: string;
  id: string;
  snapshot: Record<string, Decoded>;
}

/** The example of docs/xva-format.md §3.5: web01, disks Ref:14 (10 GiB) and Ref:17 (1 GiB + 512 KiB), empty CD, one VIF. */
function web01(): OvaXmlSpec {
  return {
    vm: { name: 'web01', vcpus: 2, memoryBytes: 2 * GiB, firmware: 'bios' },
    disks: [
      { ref: 'Ref:14', name: 'web01 root', virtualSize: 10 * GiB, userdevice: 0, bootable: true },
      { ref: 'Ref:17', name: 'web01 data', virtualSize: GiB + 512 * 1024, userdevice: 1 },
    ],
    cdroms: [{ userdevice: 3 }],
    vifs: [{ device: 0, mac: 'b2:1f:00:11:22:33', mtu: 1500, networkName: 'Pool-wide network associated with eth0', bridge: 'xenbr0' }],
    version: { hostname: 'conv', date: '2026-01-01' },
  };
}

/** web01's uuids: seed 1. */
function web01Ids(): OvaXmlIdentities {
  return { uuidGen: seededUuidGen(1) };
}

describe('XML-RPC encoding as ocaml-rpc writes it (§3.1)', () => {
  test('scalars', () => {
    expect(rpcToXml('abc')).toBe('<value>abc</value>');
    expect(rpcToXml('')).toBe('<value></value>');
    expect(rpcToXml(10737418240)).toBe('<value>10737418240</value>');
    expect(rpcToXml(-1)).toBe('<value>-1</value>');
    expect(rpcToXml(true)).toBe('<value><boolean>1</boolean></value>');
    expect(rpcToXml(false)).toBe('<value><boolean>0</boolean></value>');
    expect(rpcToXml(new RpcDouble(1))).toBe('<value><double>1</double></value>');
    expect(rpcToXml(new RpcDouble(0.1))).toBe('<value><double>0.1</double></value>');
    expect(rpcToXml(new RpcDateTime('19700101T00:00:00Z'))).toBe('<value><dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601></value>');
    expect(() => rpcToXml(1.5)).toThrow(RangeError);
  });

  test('struct and array', () => {
    expect(rpcToXml({ a: [], b: {}, c: ['x', 'y'] })).toBe(
      '<value><struct><member><name>a</name><value><array><data></data></array></value></member>' +
        '<member><name>b</name><value><struct></struct></value></member>' +
        '<member><name>c</name><value><array><data><value>x</value><value>y</value></data></array></value></member></struct></value>',
    );
    expect(encodeRpcValue('x', ['pre'])).toEqual(['pre', '<value>', 'x', '</value>']);
  });

  test('escapes & < > " and drops control characters other than TAB/LF/CR', () => {
    expect(escapeXml('a&b<c>d"e\'f', 'xapi')).toBe('a&amp;b&lt;c&gt;d&quot;e\'f');
    expect(escapeXml('x\u0001\u0000y\tz\n\r\u001f\u007f', 'xapi')).toBe('xy\tz\n\r\u007f');
    expect(escapeXml('ünï ✓', 'xapi')).toBe('ünï ✓');
  });
});

describe('buildOvaXml', () => {
  const xml = buildOvaXml(web01(), web01Ids());
  const doc = parseOvaXml(xml);
  const objects = doc.objects as unknown as Obj[];
  const byId = new Map(objects.map((o) => [o.id, o]));

  test('no declaration, no whitespace between tags, one top-level value', () => {
    expect(xml.startsWith('<value><struct><member><name>version</name><value><struct><member><name>hostname</name><value>conv</value></member>')).toBe(true);
    expect(xml).not.toMatch(/<\?xml/);
    expect(xml).not.toMatch(/>\s+</);
    expect(xml.endsWith('</data></array></value></member></struct></value>')).toBe(true);
  });

  test('version struct: xapi 1/20, export_vsn 2 as untyped ints', () => {
    expect(doc.version).toEqual({
      hostname: 'conv',
      date: '2026-01-01',
      product_version: '8.2.1',
      product_brand: 'XCP-ng',
      build_number: 'release/yangtze/master/58',
      xapi_major: '1',
      xapi_minor: '20',
      export_vsn: '2',
    });
    expect(xml).toContain('<member><name>export_vsn</name><value>2</value></member>');
  });

  test('objects in XAPI export order: VM, VBDs, VIFs, networks, VDIs, SRs', () => {
    expect(objects.map((o) => o.class)).toEqual(['VM', 'VBD', 'VBD', 'VBD', 'VIF', 'network', 'VDI', 'VDI', 'SR']);
  });

  test('every snapshot carries every required field of its class', () => {
    for (const o of objects) {
      const required = REQUIRED_FIELDS[o.class as OvaXmlClass];
      expect(required).toBeDefined();
      const missing = required.filter((f) => !(f in o.snapshot));
      expect({ class: o.class, missing }).toEqual({ class: o.class, missing: [] });
    }
  });

  test('REQUIRED_FIELDS contains the fields XAPI is known to demand (§3.4)', () => {
    expect(REQUIRED_FIELDS.VM).toEqual(expect.arrayContaining(['last_boot_CPU_flags', 'suspend_VDI', 'suspend_SR', 'HVM_boot_params', 'VCPUs_max', 'NVRAM', 'domain_type']));
    expect(REQUIRED_FIELDS.VDI).toEqual(expect.arrayContaining(['virtual_size', 'SR', 'VBDs', 'cbt_enabled']));
    expect(REQUIRED_FIELDS.SR).toEqual(expect.arrayContaining(['uuid', 'name_label', 'content_type', 'VDIs']));
    expect(REQUIRED_FIELDS.network).toEqual(expect.arrayContaining(['name_label', 'bridge', 'uuid']));
  });

  test('VM record', () => {
    const vm = objects[0]!.snapshot;
    expect(vm).toMatchObject({
      name_label: 'web01',
      name_description: '',
      memory_static_max: String(2 * GiB),
      memory_dynamic_max: String(2 * GiB),
      memory_dynamic_min: String(2 * GiB),
      memory_static_min: String(2 * GiB),
      VCPUs_max: '2',
      VCPUs_at_startup: '2',
      HVM_boot_policy: 'BIOS order',
      HVM_boot_params: { order: 'cd', firmware: 'bios' },
      domain_type: 'hvm',
      is_a_template: false,
      is_a_snapshot: false,
      power_state: 'Halted',
      suspend_VDI: NULL_REF,
      snapshot_time: '19700101T00:00:00Z',
      HVM_shadow_multiplier: 1,
    });
    expect((vm.VBDs as string[]).map((r) => byId.get(r)!.class)).toEqual(['VBD', 'VBD', 'VBD']);
    expect((vm.VIFs as string[]).map((r) => byId.get(r)!.class)).toEqual(['VIF']);
  });

  test('VBDs link VM and VDIs; the CD is empty with OpaqueRef:NULL', () => {
    const vbds = objects.filter((o) => o.class === 'VBD').map((o) => o.snapshot);
    expect(vbds.map((v) => [v.VDI, v.userdevice, v.bootable, v.type, v.mode, v.empty])).toEqual([
      ['Ref:14', '0', true, 'Disk', 'RW', false],
      ['Ref:17', '1', false, 'Disk', 'RW', false],
      [NULL_REF, '3', false, 'CD', 'RO', true],
    ]);
    for (const v of vbds) expect(v.VM).toBe(objects[0]!.id);
  });

  test('VDIs keep the caller refs (= tar directories) and sizes; SR resolves inside the file', () => {
    const d14 = byId.get('Ref:14')!;
    const d17 = byId.get('Ref:17')!;
    expect(d14.class).toBe('VDI');
    expect(d14.snapshot).toMatchObject({ name_label: 'web01 root', virtual_size: String(10 * GiB), type: 'user' });
    expect(d17.snapshot.virtual_size).toBe('1074266112');
    const sr = byId.get(d14.snapshot.SR as string)!;
    expect(sr.class).toBe('SR');
    expect(sr.snapshot.content_type).not.toBe('iso');
    expect(sr.snapshot.VDIs).toEqual(['Ref:14', 'Ref:17']);
    expect((d14.snapshot.VBDs as string[]).map((r) => byId.get(r)!.snapshot.VDI)).toEqual(['Ref:14']);
  });

  test('VIF and network', () => {
    const vif = objects.find((o) => o.class === 'VIF')!.snapshot;
    expect(vif).toMatchObject({ device: '0', MAC: 'b2:1f:00:11:22:33', MTU: '1500', VM: objects[0]!.id });
    const net = byId.get(vif.network as string)!;
    expect(net.class).toBe('network');
    expect(net.snapshot).toMatchObject({ name_label: 'Pool-wide network associated with eth0', bridge: 'xenbr0', VIFs: [objects.find((o) => o.class === 'VIF')!.id] });
  });

  test('ids are unique Ref:N and never collide with the disk refs', () => {
    const ids = objects.map((o) => o.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^Ref:\d+$/);
  });

  test('uuids are distinct and well-formed', () => {
    const uuids = objects.map((o) => o.snapshot.uuid as string);
    expect(new Set(uuids).size).toBe(uuids.length);
    for (const u of uuids) expect(u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  test('deterministic: same spec and uuid seed give the same bytes', () => {
    expect(buildOvaXml(web01(), web01Ids())).toBe(xml);
    expect(buildOvaXml(web01(), { uuidGen: seededUuidGen(2) })).not.toBe(xml);
  });
});

describe('variants', () => {
  test('UEFI, PV, template, platform/other_config overrides, escaping in names and map keys', () => {
    const xml = buildOvaXml(
      {
        vm: { name: 'a&b <"c">\u0001', vcpus: 4, vcpusAtStartup: 2, memoryBytes: 1 * GiB, firmware: 'uefi', isTemplate: true, platform: { viridian: 'true', 'k&y': 'v<' }, otherConfig: { owner: 'me' } },
        disks: [{ ref: 'Ref:1', name: 'd', virtualSize: 512, userdevice: '0' }],
      },
      { uuidGen: seededUuidGen(3) },
    );
    const vm = (parseOvaXml(xml).objects as unknown as Obj[])[0]!.snapshot;
    expect(vm.name_label).toBe('a&b <"c">');
    expect(vm.HVM_boot_params).toEqual({ order: 'cd', firmware: 'uefi' });
    expect(vm).toMatchObject({ is_a_template: true, VCPUs_max: '4', VCPUs_at_startup: '2', other_config: { owner: 'me' } });
    expect(vm.platform).toMatchObject({ viridian: 'true', 'k&y': 'v<', 'device-model': 'qemu-upstream-uefi' });

    const pv = buildOvaXmlObjects({ vm: { name: 'pv', vcpus: 1, memoryBytes: GiB, hvm: false }, disks: [] }, { uuidGen: seededUuidGen(4) });
    expect(pv[0]!.snapshot).toMatchObject({ HVM_boot_policy: '', HVM_boot_params: {}, domain_type: 'pv', platform: {} });
    expect(pv.map((o) => o.class)).toEqual(['VM']);
  });

  test('an inserted ISO becomes a VDI in an iso SR (no data in the tar)', () => {
    const objs = buildOvaXmlObjects({ vm: { name: 'v', vcpus: 1, memoryBytes: GiB }, disks: [{ ref: 'Ref:5', name: 'd', virtualSize: 1024, userdevice: 0 }], cdroms: [{ userdevice: 3, isoName: 'debian.iso' }] }, { uuidGen: seededUuidGen(5) });
    const byId = new Map(objs.map((o) => [o.id, o]));
    const cd = objs.find((o) => o.class === 'VBD' && o.snapshot.type === 'CD')!;
    expect(cd.snapshot.empty).toBe(false);
    const iso = byId.get(cd.snapshot.VDI as string)!;
    expect(iso.snapshot.name_label).toBe('debian.iso');
    expect(byId.get(iso.snapshot.SR as string)!.snapshot.content_type).toBe('iso');
    expect(byId.get(byId.get('Ref:5')!.snapshot.SR as string)!.snapshot.content_type).toBe('user');
  });

  test('allocated refs start above the largest disk ref', () => {
    const objs = buildOvaXmlObjects({ vm: { name: 'v', vcpus: 1, memoryBytes: GiB }, disks: [{ ref: 'Ref:1003', name: 'a', virtualSize: 0, userdevice: 0 }, { ref: 'Ref:998', name: 'b', virtualSize: 0, userdevice: 1 }] }, { uuidGen: seededUuidGen(6) });
    expect(objs[0]!.id).toBe('Ref:1004');
  });

  test('invalid specs are refused', () => {
    const base = { vm: { name: 'v', vcpus: 1, memoryBytes: GiB } };
    const ids = { uuidGen: seededUuidGen(7) };
    expect(() => buildOvaXml({ ...base, disks: [{ ref: 'disk0', name: 'a', virtualSize: 0, userdevice: 0 }] }, ids)).toThrow(/Ref:N/);
    expect(() => buildOvaXml({ ...base, disks: [{ ref: 'Ref:1', name: 'a', virtualSize: 0, userdevice: 0 }, { ref: 'Ref:1', name: 'b', virtualSize: 0, userdevice: 1 }] }, ids)).toThrow(/duplicate/);
    expect(() => buildOvaXml({ ...base, disks: [{ ref: 'Ref:1', name: 'a', virtualSize: 0, userdevice: 0 }], cdroms: [{ userdevice: 0 }] }, ids)).toThrow(/userdevice 0/);
    expect(() => buildOvaXml({ ...base, disks: [{ ref: 'Ref:1', name: 'a', virtualSize: -1, userdevice: 0 }] }, ids)).toThrow(RangeError);
  });
});

test('ovaXmlSpecFromMetadata converts the reader model back into a writer spec', () => {
  // Cast: the reader model may grow fields this conversion does not need.
  const meta = {
    version: { hostname: 'h', date: 'd', productVersion: '8.2.1', productBrand: 'XCP-ng', buildNumber: 'b', xapiMajor: 1, xapiMinor: 20, exportVsn: 2 },
    vm: { ref: 'Ref:1', uuid: 'u-vm', name: 'vm1', description: 'desc', vcpus: 2, vcpusAtStartup: 1, memoryBytes: GiB, isTemplate: false, isSnapshot: false, hvm: true, firmware: 'uefi', domainType: 'hvm', bootOrder: 'dc', powerState: 'Halted', platform: { a: '1' }, otherConfig: { b: '2' } },
    disks: [
      { ref: 'Ref:9', vdi: { ref: 'Ref:9', uuid: 'u-d', name: 'root', description: '', virtualSize: 4096, type: 'user', srContentType: 'user', srName: 'sr', readOnly: false }, userdevice: '0', bootable: true, virtualSize: 4096, isSuspendImage: false },
      { ref: 'Ref:10', vdi: { ref: 'Ref:10', uuid: 'u-s', name: 'suspend', description: '', virtualSize: 1024, type: 'suspend', srContentType: 'user', srName: 'sr', readOnly: false }, userdevice: '', bootable: false, virtualSize: 1024, isSuspendImage: true },
    ],
    cdroms: [{ userdevice: '3', empty: true }],
    vifs: [{ ref: 'Ref:4', device: '0', mac: 'aa:bb:cc:dd:ee:ff', macAutogenerated: true, mtu: 9000, networkName: 'n', bridge: 'xenbr1' }],
    streamedRefs: ['Ref:10', 'Ref:9'],
    vdiRefs: ['Ref:10', 'Ref:9'],
  } as XvaMetadata;
  const spec = ovaXmlSpecFromMetadata(meta);
  expect(spec.vm).toMatchObject({ name: 'vm1', description: 'desc', vcpus: 2, vcpusAtStartup: 1, firmware: 'uefi', bootOrder: 'dc', uuid: 'u-vm', platform: { a: '1' } });
  expect(spec.disks).toEqual([{ ref: 'Ref:9', name: 'root', description: '', virtualSize: 4096, userdevice: '0', bootable: true, readOnly: false, uuid: 'u-d' }]);
  expect(spec.cdroms).toEqual([{ userdevice: '3', isoName: undefined }]);
  expect(spec.vifs).toEqual([{ device: '0', mac: 'aa:bb:cc:dd:ee:ff', macAutogenerated: true, mtu: 9000, networkName: 'n', bridge: 'xenbr1' }]);
  const doc = parseOvaXml(buildOvaXml(spec, { uuidGen: seededUuidGen(8) }));
  const vm = (doc.objects as unknown as Obj[])[0]!.snapshot;
  expect(vm.uuid).toBe('u-vm');
  expect(vm.HVM_boot_params).toEqual({ order: 'dc', firmware: 'uefi' });
});
