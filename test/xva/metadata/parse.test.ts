import { parseOvaXml } from '../../../src/xva/metadata/parse';
import { parseXmlRpc } from '../../../src/xva/metadata/xmlrpc';
import { XvaFormatError } from '../../../src/errors';

const m = (name: string, value: string): string => `<member><name>${name}</name>${value}</member>`;
const v = (text: string | number): string => `<value>${text}</value>`;
const b = (x: boolean): string => `<value><boolean>${x ? 1 : 0}</boolean></value>`;
const st = (...members: string[]): string => `<value><struct>${members.join('')}</struct></value>`;
const arr = (...values: string[]): string => `<value><array><data>${values.join('')}</data></array></value>`;
const obj = (cls: string, id: string, ...snap: string[]): string => st(m('class', v(cls)), m('id', v(id)), m('snapshot', st(...snap)));

/** The composed example of docs/xva-format.md §3.5, in XAPI's whitespace-free encoding. */
function exampleXml(extraObjects: string[] = []): string {
  const objects = [
    obj(
      'VM',
      'Ref:11',
      m('uuid', v('5f0c')),
      m('name_label', v('web01')),
      m('name_description', v('front &amp; back')),
      m('memory_static_max', v(2147483648)),
      m('VCPUs_max', v(2)),
      m('VCPUs_at_startup', v(2)),
      m('HVM_boot_policy', v('BIOS order')),
      m('HVM_boot_params', st(m('order', v('cd')), m('firmware', v('bios')))),
      m('domain_type', v('hvm')),
      m('is_a_template', b(false)),
      m('power_state', v('Halted')),
      m('VBDs', arr(v('Ref:13'), v('Ref:16'), v('Ref:18'))),
      m('VIFs', arr(v('Ref:12'))),
    ),
    obj('VBD', 'Ref:13', m('VM', v('Ref:11')), m('VDI', v('Ref:14')), m('userdevice', v('0')), m('bootable', b(true)), m('type', v('Disk')), m('mode', v('RW')), m('empty', b(false))),
    obj('VBD', 'Ref:16', m('VM', v('Ref:11')), m('VDI', v('Ref:17')), m('userdevice', v('1')), m('bootable', b(false)), m('type', v('Disk')), m('mode', v('RW')), m('empty', b(false))),
    obj('VBD', 'Ref:18', m('VM', v('Ref:11')), m('VDI', v('OpaqueRef:NULL')), m('userdevice', v('3')), m('type', v('CD')), m('mode', v('RO')), m('empty', b(true))),
    obj('VDI', 'Ref:14', m('name_label', v('web01 root')), m('virtual_size', v(10737418240)), m('type', v('user')), m('SR', v('Ref:15'))),
    obj('VDI', 'Ref:17', m('name_label', v('data')), m('virtual_size', v(1074266112)), m('type', v('user')), m('SR', v('Ref:15'))),
    obj('SR', 'Ref:15', m('name_label', v('Local storage')), m('content_type', v('user'))),
    obj('VIF', 'Ref:12', m('device', v('0')), m('MAC', v('b2:1f:00:11:22:33')), m('MTU', v(1500)), m('network', v('Ref:20')), m('VM', v('Ref:11'))),
    obj('network', 'Ref:20', m('name_label', v('Pool-wide network associated with eth0')), m('bridge', v('xenbr0'))),
    obj('host', 'Ref:1', m('name_label', v('xen1'))),
    ...extraObjects,
  ];
  const version = st(m('hostname', v('conv')), m('product_brand', v('XCP-ng')), m('product_version', v('8.2.1')), m('xapi_major', v(1)), m('xapi_minor', v(20)), m('export_vsn', v(2)));
  return st(m('version', version), m('objects', arr(...objects)));
}

describe('ova.xml is one untyped XML-RPC value (§3.1)', () => {
  test('strings, untyped numbers, booleans, structs, arrays, empty values', () => {
    expect(parseXmlRpc('<value>abc</value>')).toBe('abc');
    expect(parseXmlRpc('<value>123</value>')).toBe('123');
    expect(parseXmlRpc('<value><i8>123</i8></value>')).toBe('123');
    expect(parseXmlRpc('<value/>')).toBe('');
    expect(parseXmlRpc('<value></value>')).toBe('');
    expect(parseXmlRpc('<value><boolean>1</boolean></value>')).toBe(true);
    expect(parseXmlRpc('<value>a &amp; b &lt;c&gt; &quot;d&quot;</value>')).toBe('a & b <c> "d"');
    expect(parseXmlRpc(st(m('k', arr(v('x'), b(false)))))).toEqual({ k: ['x', false] });
  });

  test('DOCTYPE and ENTITY declarations are refused before parsing (no entity expansion)', () => {
    const bomb = '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><value>&lol2;</value>';
    expect(() => parseXmlRpc(bomb)).toThrow(/DOCTYPE/);
    expect(() => parseXmlRpc('<!DOCTYPE x SYSTEM "file:///etc/passwd"><value>x</value>')).toThrow(XvaFormatError);
  });

  test('malformed XML and deep nesting are format errors', () => {
    expect(() => parseXmlRpc('<value><struct>')).toThrow(XvaFormatError);
    const deep = '<value><array><data>'.repeat(100) + '</data></array></value>'.repeat(100);
    expect(() => parseXmlRpc(deep)).toThrow(/nested/i);
  });
});

describe('metadata model (§3.2-3.3)', () => {
  test('the §3.5 example: VM, disks by userdevice, CD listed not streamed, NIC with network', () => {
    const meta = parseOvaXml(exampleXml());
    expect(meta.version).toMatchObject({ productBrand: 'XCP-ng', exportVsn: 2, xapiMajor: 1, xapiMinor: 20 });
    expect(meta.vm).toMatchObject({ name: 'web01', description: 'front & back', vcpus: 2, memoryBytes: 2147483648, hvm: true, firmware: 'bios', isTemplate: false });
    expect(meta.disks.map((d) => [d.userdevice, d.ref, d.virtualSize, d.bootable])).toEqual([
      ['0', 'Ref:14', 10737418240, true],
      ['1', 'Ref:17', 1074266112, false],
    ]);
    expect(meta.cdroms).toEqual([{ userdevice: '3', empty: true, isoName: undefined }]);
    expect(meta.vifs).toEqual([{ ref: 'Ref:12', device: '0', mac: 'b2:1f:00:11:22:33', macAutogenerated: false, mtu: 1500, networkName: 'Pool-wide network associated with eth0', bridge: 'xenbr0' }]);
  });

  test('tar directories follow string order of the ids: Ref:1003 before Ref:998', () => {
    const xml = exampleXml().replace(/Ref:14/g, 'Ref:998').replace(/Ref:17/g, 'Ref:1003');
    const meta = parseOvaXml(xml);
    expect(meta.streamedRefs).toEqual(['Ref:1003', 'Ref:998']);
    expect(meta.disks.map((d) => d.ref)).toEqual(['Ref:998', 'Ref:1003']); // by userdevice
  });

  test('a VDI in an ISO SR is a CD, not a data disk', () => {
    const iso = [obj('SR', 'Ref:30', m('content_type', v('iso'))), obj('VDI', 'Ref:31', m('name_label', v('debian.iso')), m('virtual_size', v(1000)), m('SR', v('Ref:30')))];
    const xml = exampleXml(iso).replace('<value>OpaqueRef:NULL</value>', '<value>Ref:31</value>');
    const meta = parseOvaXml(xml);
    expect(meta.cdroms).toEqual([{ userdevice: '3', empty: false, isoName: 'debian.iso' }]);
    expect(meta.streamedRefs).not.toContain('Ref:31');
  });

  test.each([
    ['a negative virtual_size', '<value>-5</value>', /negative/],
    ['a non-numeric virtual_size', '<value>ten</value>', /not an integer/],
    ['a virtual_size of 2^63', '<value>9223372036854775808</value>', /too large/],
  ])('%s is rejected', (_what, replacement, re) => {
    const xml = exampleXml().replace('<value>10737418240</value>', replacement);
    expect(() => parseOvaXml(xml)).toThrow(re);
  });

  test('duplicate object ids are rejected', () => {
    expect(() => parseOvaXml(exampleXml([obj('host', 'Ref:1', m('name_label', v('dup')))]))).toThrow(/duplicate object id/);
  });

  test('no VM, or not an XVA document', () => {
    expect(() => parseOvaXml(st(m('objects', arr())))).toThrow(/no VM/);
    expect(() => parseOvaXml('<value>hello</value>')).toThrow(XvaFormatError);
  });

  test('unknown classes and fields are ignored', () => {
    const meta = parseOvaXml(exampleXml([obj('VTPM', 'Ref:77', m('content', v('abc'))), obj('Frobnicator', 'Ref:78')]));
    expect(meta.disks).toHaveLength(2);
  });
});
