/**
 * packXva end to end: disk images -> pack -> convertXva -> identical bytes for every option;
 * ova.xml completeness; `from` repacks (bytes + metadata); stdout piped into the reader; the
 * DiskPipe bridge (backpressure, holes, failures); output discipline.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { convertXva } from '../../src/ops/convert';
import { openInput } from '../../src/input/open';
import { packXva, type PackOptions } from '../../src/ops/pack';
import { parseOvaXml } from '../../src/xva/metadata/parse';
import { parseXmlRpc, type RpcStruct } from '../../src/xva/metadata/xmlrpc';
import { REQUIRED_FIELDS } from '../../src/xva/metadata/fields';
import { readXva } from '../../src/xva/reader';
import { DiskPipe } from '../../src/xva/repack';
import { bufferSource } from '../../src/xva/disk-sources';
import { writeXvaFile } from '../../src/xva/writer';
import { type FixtureWriteOptions, KiB, makeXvaFile, MiB, sparseDisk, seededUuidGen } from '../helpers/xva-fixtures';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pack-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A disk with data at the start, an all-zero MiB, data across a chunk boundary and a short tail. */
function craftDisk(size: number, seed: number): Buffer {
  return sparseDisk({
    size,
    seed,
    fill: [
      { offset: 0, length: 8 * KiB },
      ...(size >= MiB + 2000 ? [{ offset: MiB - 1000, length: 3000 }] : []),
      ...(size > 3 * MiB ? [{ offset: 3 * MiB + 512, length: Math.min(64 * KiB, size - 3 * MiB - 512) }] : []),
    ],
  });
}

function writeRaw(name: string, data: Buffer): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, data);
  return p;
}

/** Converts every disk of an XVA back to raw; returns the images by userdevice. */
async function unpack(xva: string): Promise<{ images: Map<string, Buffer>; summary: Awaited<ReturnType<typeof convertXva>> }> {
  const out = fs.mkdtempSync(path.join(dir, 'out-'));
  const summary = await convertXva(xva, { outDir: out, format: 'raw' });
  const images = new Map<string, Buffer>();
  for (const d of summary.disks) images.set(d.userdevice, fs.readFileSync(d.path!));
  return { images, summary };
}

/** The ova.xml text of an XVA file (the reader hands it to onMetadata). */
async function readOvaXmlText(file: string): Promise<string> {
  const src = await openInput(file);
  let text: string | undefined;
  try {
    await readXva(src, { onMetadata: (_m, xml) => void (text = xml) }, { metadataOnly: true });
  } finally {
    await src.close();
  }
  if (text === undefined) throw new Error('no ova.xml seen');
  return text;
}

function objectsOf(xml: string): Array<{ class: string; id: string; snapshot: RpcStruct }> {
  const top = parseXmlRpc(xml) as RpcStruct;
  return (top['objects'] as RpcStruct[]).map((o) => ({ class: o['class'] as string, id: o['id'] as string, snapshot: o['snapshot'] as RpcStruct }));
}

function expectAllRequiredFields(xml: string): void {
  const objs = objectsOf(xml);
  const seen = new Set<string>();
  for (const o of objs) {
    const required = (REQUIRED_FIELDS as Record<string, readonly string[]>)[o.class];
    if (!required) continue;
    seen.add(o.class);
    const missing = required.filter((f) => !(f in o.snapshot));
    expect({ object: `${o.class} ${o.id}`, missing }).toEqual({ object: `${o.class} ${o.id}`, missing: [] });
  }
  expect([...seen].sort()).toEqual(expect.arrayContaining(['SR', 'VBD', 'VDI', 'VM']));
}

// ---------------------------------------------------------------------------------------------

describe('round trips: raw -> pack -> convertXva', () => {
  const combos: Array<[PackOptions['checksum'], PackOptions['compression'], PackOptions['tarFormat']]> = [];
  for (const checksum of ['xxh64', 'sha1'] as const) {
    for (const compression of ['none', 'gzip', 'zstd'] as const) {
      for (const tarFormat of ['ustar', 'xapi'] as const) combos.push([checksum, compression, tarFormat]);
    }
  }

  test.each(combos)('%s / %s / %s', async (checksum, compression, tarFormat) => {
    const d0 = craftDisk(4 * MiB + 512 * KiB, 1);
    const d1 = craftDisk(2 * MiB, 2);
    const out = path.join(dir, 'vm.xva');
    const summary = await packXva({
      disks: [writeRaw('root.raw', d0), writeRaw('data.img', d1)],
      vm: { name: 'web01', vcpus: 2, memoryBytes: 4 * 1024 * MiB },
      output: out,
      compression,
      checksum,
      tarFormat,
    });
    expect(summary.compression).toBe(compression);
    expect(summary.disks.map((d) => d.virtualSize)).toEqual([d0.length, d1.length]);
    // The all-zero MiB (chunk 2 of disk 0) is skipped; first and last chunks always written.
    expect(summary.disks[0]!.zeroChunksSkipped).toBe(1);
    const { images, summary: conv } = await unpack(out);
    expect(conv.compression).toBe(compression);
    expect(conv.checksum).toBe(checksum);
    expect(images.get('0')!.equals(d0)).toBe(true);
    expect(images.get('1')!.equals(d1)).toBe(true);
    expect(conv.vm).toMatchObject({ name: 'web01', vcpus: 2, memoryBytes: 4 * 1024 * MiB });
    expect(conv.disks.map((d) => d.name)).toEqual(['root', 'data']);
  });
});

test('compression follows the output extension', async () => {
  const d = craftDisk(2 * MiB, 3);
  const raw = writeRaw('a.raw', d);
  const gz = await packXva({ disks: [raw], output: path.join(dir, 'a.xva.gz') });
  const zst = await packXva({ disks: [raw], output: path.join(dir, 'a.xva.zst') });
  const plain = await packXva({ disks: [raw], output: path.join(dir, 'a.xva') });
  expect([gz.compression, zst.compression, plain.compression]).toEqual(['gzip', 'zstd', 'none']);
  expect(fs.readFileSync(path.join(dir, 'a.xva.gz')).subarray(0, 2).toString('hex')).toBe('1f8b');
  expect(fs.readFileSync(path.join(dir, 'a.xva.zst')).subarray(0, 4).toString('hex')).toBe('28b52ffd');
  for (const f of ['a.xva.gz', 'a.xva.zst', 'a.xva']) expect((await unpack(path.join(dir, f))).images.get('0')!.equals(d)).toBe(true);
  // --compress wins over the extension, with a warning.
  const odd = await packXva({ disks: [raw], output: path.join(dir, 'b.xva.gz'), compression: 'none' });
  expect(odd.compression).toBe('none');
  expect(odd.warnings.join('\n')).toMatch(/suggests gzip/);
});

test('keep-alive chunks during long zero runs (stream output) keep the bytes in place', async () => {
  const d = sparseDisk({ size: 48 * MiB, seed: 61, fill: [{ offset: 0, length: 4096 }, { offset: 40 * MiB + 10, length: 5000 }] });
  const raw = writeRaw('ka.raw', d);
  const pipe = new PassThrough();
  const packing = packXva({ disks: [raw], output: '-', stdout: pipe, keepAliveSeconds: 0.001 }).then((s) => {
    pipe.end();
    return s;
  });
  packing.catch(() => pipe.destroy());
  const conv = await convertXva(await openInput('-', { stdin: pipe }), { outDir: path.join(dir, 'ka') });
  const s = await packing;
  expect(s.warnings.join('\n')).toMatch(/keep-alive/);
  expect(conv.disks[0]!.keepAlives).toBeGreaterThan(0);
  expect(fs.readFileSync(conv.disks[0]!.path!).equals(d)).toBe(true);
  // Files get none by default.
  const f = await packXva({ disks: [raw], output: path.join(dir, 'ka.xva') });
  expect(f.warnings).toEqual([]);
});

test('a size that is not a multiple of 512 is rounded up, with a warning naming the disk', async () => {
  const d = craftDisk(MiB + 700, 4);
  const warnings: string[] = [];
  const out = path.join(dir, 'odd.xva');
  const s = await packXva({ disks: [{ path: writeRaw('odd.raw', d), name: 'oddity' }], output: out, onWarning: (w) => warnings.push(w) });
  expect(s.disks[0]!.virtualSize).toBe(MiB + 1024);
  expect(warnings.join('\n')).toMatch(/"oddity".*not a multiple of 512.*1049600/);
  const img = (await unpack(out)).images.get('0')!;
  expect(img.length).toBe(MiB + 1024);
  expect(img.subarray(0, d.length).equals(d)).toBe(true);
  expect(img.subarray(d.length).every((b) => b === 0)).toBe(true);
});

test('ova.xml: every REQUIRED_FIELDS field on every object; VM settings, NICs and disks as given', async () => {
  const out = path.join(dir, 'full.xva');
  await packXva({
    disks: [writeRaw('root.raw', craftDisk(2 * MiB, 5)), { path: writeRaw('d.raw', craftDisk(MiB, 6)), name: 'scratch', userdevice: 2, readOnly: true }],
    vm: { name: 'web & <db>', description: 'two "disks"', vcpus: 4, memoryBytes: 2048 * MiB, firmware: 'uefi' },
    nics: [{ network: 'Pool-wide network associated with eth0' }, { network: 'xenbr1', mac: '02:11:22:33:44:55', mtu: 9000 }],
    output: out,
  });
  const xml = await readOvaXmlText(out);
  expect(xml.startsWith('<value><struct>')).toBe(true);
  expectAllRequiredFields(xml);
  const classes = objectsOf(xml).map((o) => o.class);
  for (const c of ['VM', 'VBD', 'VDI', 'VIF', 'SR', 'network']) expect(classes).toContain(c);
  const top = parseXmlRpc(xml) as RpcStruct;
  expect((top['version'] as RpcStruct)['export_vsn']).toBe('2');
  const meta = parseOvaXml(xml);
  expect(meta.vm).toMatchObject({ name: 'web & <db>', description: 'two "disks"', vcpus: 4, memoryBytes: 2048 * MiB, firmware: 'uefi', hvm: true });
  expect(meta.disks.map((d) => [d.userdevice, d.vdi.name, d.bootable, d.vdi.readOnly])).toEqual([
    ['0', 'root', true, false],
    ['2', 'scratch', false, true],
  ]);
  expect(meta.vifs.map((v) => [v.device, v.networkName, v.bridge, v.mtu])).toEqual([
    ['0', 'Pool-wide network associated with eth0', 'xenbr0', 1500],
    ['1', 'xenbr1', 'xenbr1', 9000],
  ]);
  expect(meta.vifs[0]!.mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  expect(parseInt(meta.vifs[0]!.mac.slice(0, 2), 16) & 3).toBe(2); // local, unicast
  expect(meta.vifs[1]!.mac).toBe('02:11:22:33:44:55');
  // Disks are in argument order in the archive (string order of refs).
  expect(meta.streamedRefs).toEqual(meta.disks.map((d) => d.ref));
});

test('a new VM record has what XAPI and Xen Orchestra give a new VM; generated MACs are marked autogenerated', async () => {
  const out = path.join(dir, 'new.xva');
  await packXva({
    disks: [writeRaw('root.raw', craftDisk(MiB, 7))],
    nics: [{ network: 'lan' }, { network: 'dmz', mac: '02:aa:bb:cc:dd:ee' }],
    output: out,
  });
  const objs = objectsOf(await readOvaXmlText(out));
  const vm = objs.find((o) => o.class === 'VM')!.snapshot;
  const other = vm['other_config'] as RpcStruct;
  // mac_seed: XAPI derives the MACs of VIFs created later from it; one per VM.
  expect(other['mac_seed']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  expect(other['base_template_name']).toBe('Other install media');
  expect(other['install-methods']).toBe('cdrom');
  expect((vm['platform'] as RpcStruct)['secureboot']).toBe('false');
  const vifs = objs.filter((o) => o.class === 'VIF').map((o) => [o.snapshot['MAC'], o.snapshot['MAC_autogenerated']]);
  expect(vifs[0]![1]).toBe(true); // generated here
  expect(vifs[1]).toEqual(['02:aa:bb:cc:dd:ee', false]); // given

  // A second VM gets its own seed.
  const again = path.join(dir, 'again.xva');
  await packXva({ disks: [writeRaw('r2.raw', craftDisk(MiB, 8))], output: again });
  const other2 = objectsOf(await readOvaXmlText(again)).find((o) => o.class === 'VM')!.snapshot['other_config'] as RpcStruct;
  expect(other2['mac_seed']).not.toBe(other['mac_seed']);
});

test('secure boot: on only when asked for, and only with UEFI firmware', async () => {
  const platformOf = async (name: string, vm: PackOptions['vm']): Promise<RpcStruct> => {
    const out = path.join(dir, name);
    await packXva({ disks: [writeRaw(`${name}.raw`, craftDisk(MiB, 9))], vm, output: out });
    return objectsOf(await readOvaXmlText(out)).find((o) => o.class === 'VM')!.snapshot['platform'] as RpcStruct;
  };
  expect((await platformOf('uefi.xva', { firmware: 'uefi' }))['secureboot']).toBe('false');
  expect((await platformOf('sb.xva', { firmware: 'uefi', secureBoot: true }))['secureboot']).toBe('true');
  await expect(packXva({ disks: [writeRaw('bios.raw', craftDisk(MiB, 9))], vm: { secureBoot: true }, output: path.join(dir, 'bios.xva') })).rejects.toMatchObject({ code: 'USAGE', message: expect.stringMatching(/secure boot needs UEFI firmware/) });
});

test('many disks keep argument order (refs zero-padded)', async () => {
  const disks = Array.from({ length: 12 }, (_, i) => writeRaw(`d${i}.raw`, sparseDisk({ size: 512 * KiB, seed: 100 + i, fill: [{ offset: 0, length: 512 }] })));
  const out = path.join(dir, 'many.xva');
  const s = await packXva({ disks, output: out });
  const refs = s.disks.map((d) => d.ref);
  expect([...refs].sort()).toEqual(refs);
  const { images } = await unpack(out);
  disks.forEach((p, i) => expect(images.get(String(i))!.equals(fs.readFileSync(p))).toBe(true));
});

// ---------------------------------------------------------------------------------------------
// --from

const SOURCE_VIFS = [
  { device: 0, mac: '02:aa:bb:cc:dd:01', networkName: 'Pool-wide network associated with eth0', bridge: 'xenbr0' },
  { device: 1, mac: '02:aa:bb:cc:dd:02', mtu: 9000, networkName: 'storage', bridge: 'xapi3' },
];

async function makeSource(name: string, options: FixtureWriteOptions = {}, extra: { size0?: number } = {}): Promise<{ path: string; disks: Buffer[] }> {
  const d0 = craftDisk(extra.size0 ?? 5 * MiB + 512 * KiB, 11);
  const d1 = craftDisk(3 * MiB, 12);
  const p = path.join(dir, name);
  await makeXvaFile(dir, {
    fileName: name,
    vmName: 'legacy-vm',
    vm: { vcpus: 3, memoryBytes: 3 * 1024 * MiB, description: 'from XenServer 7', firmware: 'uefi' },
    // String order (Ref:1003 < Ref:998) differs from numeric order: the repack must keep it.
    disks: [
      { ref: 'Ref:998', name: 'system', userdevice: 0, content: d0 },
      { ref: 'Ref:1003', name: 'data', userdevice: 1, content: d1 },
    ],
    vifs: SOURCE_VIFS,
    cdroms: [{ userdevice: 3 }],
    ...options,
  });
  return { path: p, disks: [d0, d1] };
}

function comparableMeta(xml: string): unknown {
  const m = parseOvaXml(xml);
  return {
    vm: { ...m.vm },
    disks: m.disks.map((d) => ({ ref: d.ref, userdevice: d.userdevice, bootable: d.bootable, name: d.vdi.name, uuid: d.vdi.uuid, size: d.virtualSize })),
    cdroms: m.cdroms,
    vifs: m.vifs,
    streamedRefs: m.streamedRefs,
  };
}

test('--from: gzip + SHA-1 + V7 -> zstd + XXH64 + ustar keeps every disk byte and the metadata', async () => {
  const src = await makeSource('old.xva.gz', { compression: 'gzip', checksum: 'sha1', tarDialect: 'xapi', keepAlives: [{ disk: 'Ref:998', beforeChunk: 2 }] });
  const out = path.join(dir, 'new.xva.zst');
  const s = await packXva({ from: src.path, output: out, checksum: 'xxh64' });
  expect(s.source).toMatchObject({ compression: 'gzip', checksum: 'sha1', metadata: 'kept', changes: [] });
  expect(s.compression).toBe('zstd');
  expect(s.disks.map((d) => d.ref)).toEqual(['Ref:998', 'Ref:1003']);
  const { images, summary } = await unpack(out);
  expect(summary.checksum).toBe('xxh64');
  expect(summary.compression).toBe('zstd');
  expect(images.get('0')!.equals(src.disks[0]!)).toBe(true);
  expect(images.get('1')!.equals(src.disks[1]!)).toBe(true);
  const before = await readOvaXmlText(src.path);
  const after = await readOvaXmlText(out);
  expect(after).toBe(before); // nothing needed changing: the source ova.xml byte for byte
  expect(comparableMeta(after)).toEqual(comparableMeta(before));
  const meta = parseOvaXml(after);
  expect(meta.vm).toMatchObject({ name: 'legacy-vm', vcpus: 3, memoryBytes: 3 * 1024 * MiB, firmware: 'uefi' });
  expect(meta.vifs.map((v) => [v.mac, v.networkName, v.bridge, v.mtu])).toEqual([
    ['02:aa:bb:cc:dd:01', 'Pool-wide network associated with eth0', 'xenbr0', 1500],
    ['02:aa:bb:cc:dd:02', 'storage', 'xapi3', 9000],
  ]);
});

test('--from: each compression / checksum / tar format combination preserves the disks', async () => {
  const src = await makeSource('src.xva', { checksum: 'xxh64' });
  for (const [compression, checksum, tarFormat] of [
    ['gzip', 'sha1', 'xapi'],
    ['none', 'sha1', 'ustar'],
    ['zstd', 'xxh64', 'xapi'],
  ] as const) {
    const out = path.join(dir, `r-${compression}-${checksum}-${tarFormat}.xva`);
    await packXva({ from: src.path, output: out, compression, checksum, tarFormat });
    const { images, summary } = await unpack(out);
    expect(summary.checksum).toBe(checksum);
    expect(images.get('0')!.equals(src.disks[0]!)).toBe(true);
    expect(images.get('1')!.equals(src.disks[1]!)).toBe(true);
  }
});

test('--from: odd sizes, missing fields and old export_vsn are patched; overrides apply', async () => {
  const d0 = craftDisk(2 * MiB + 100, 21);
  const p = path.join(dir, 'handmade.xva');
  // A minimal hand-made ova.xml: export_vsn 1, few fields, odd virtual_size.
  const xml =
    '<value><struct><member><name>version</name><value><struct><member><name>export_vsn</name><value>1</value></member></struct></value></member>' +
    '<member><name>objects</name><value><array><data>' +
    '<value><struct><member><name>class</name><value>VM</value></member><member><name>id</name><value>Ref:1</value></member><member><name>snapshot</name><value><struct>' +
    '<member><name>name_label</name><value>tiny</value></member><member><name>VCPUs_max</name><value>1</value></member><member><name>memory_static_max</name><value>536870912</value></member>' +
    '<member><name>HVM_shadow_multiplier</name><value><double>1.5</double></value></member>' +
    '<member><name>VBDs</name><value><array><data><value>Ref:2</value></data></array></value></member></struct></value></member></struct></value>' +
    '<value><struct><member><name>class</name><value>VBD</value></member><member><name>id</name><value>Ref:2</value></member><member><name>snapshot</name><value><struct>' +
    '<member><name>VM</name><value>Ref:1</value></member><member><name>VDI</name><value>Ref:3</value></member><member><name>userdevice</name><value>0</value></member><member><name>type</name><value>Disk</value></member></struct></value></member></struct></value>' +
    '<value><struct><member><name>class</name><value>VDI</value></member><member><name>id</name><value>Ref:3</value></member><member><name>snapshot</name><value><struct>' +
    `<member><name>name_label</name><value>root</value></member><member><name>virtual_size</name><value>${d0.length}</value></member><member><name>SR</name><value>Ref:4</value></member></struct></value></member></struct></value>` +
    '<value><struct><member><name>class</name><value>SR</value></member><member><name>id</name><value>Ref:4</value></member><member><name>snapshot</name><value><struct><member><name>content_type</name><value>user</value></member></struct></value></member></struct></value>' +
    '</data></array></value></member></struct></value>';
  await writeXvaFile(
    { vm: { name: 'x', vcpus: 1, memoryBytes: MiB }, disks: [{ ref: 'Ref:3', name: 'root', userdevice: 0, source: bufferSource(d0) }] },
    p,
    { ovaXml: xml, allowUnalignedSize: true },
  );
  const out = path.join(dir, 'patched.xva');
  const warnings: string[] = [];
  const s = await packXva({ from: p, output: out, vm: { name: 'renamed', vcpus: 2, memoryBytes: 1024 * MiB }, onWarning: (w) => warnings.push(w) });
  expect(s.source!.metadata).toBe('patched');
  expect(s.source!.changes.join('\n')).toMatch(/export_vsn/);
  expect(s.source!.changes.join('\n')).toMatch(/virtual_size 2097252 -> 2097664/);
  expect(warnings.join('\n')).toMatch(/Ref:3.*not a multiple of 512/);
  const after = await readOvaXmlText(out);
  expectAllRequiredFields(after);
  expect(after).toContain('<member><name>HVM_shadow_multiplier</name><value><double>1.5</double></value></member>');
  const meta = parseOvaXml(after);
  expect(meta.version.exportVsn).toBe(2);
  expect(meta.vm).toMatchObject({ name: 'renamed', vcpus: 2, vcpusAtStartup: 2, memoryBytes: 1024 * MiB });
  const img = (await unpack(out)).images.get('0')!;
  expect(img.length).toBe(2 * MiB + 512);
  expect(img.subarray(0, d0.length).equals(d0)).toBe(true);
});

test('--from --rebuild-metadata: new ova.xml from the parsed model, NICs replaced', async () => {
  const src = await makeSource('src.xva');
  const out = path.join(dir, 'rebuilt.xva');
  const s = await packXva({ from: src.path, output: out, rebuildMetadata: true, nics: [{ network: 'lan', mac: '02:00:00:00:00:09' }], vm: { firmware: 'bios' } }, { uuidGen: seededUuidGen(7) });
  expect(s.source!.metadata).toBe('rebuilt');
  const xml = await readOvaXmlText(out);
  expectAllRequiredFields(xml);
  const meta = parseOvaXml(xml);
  expect(meta.vm).toMatchObject({ name: 'legacy-vm', vcpus: 3, firmware: 'bios' });
  expect(meta.disks.map((d) => [d.ref, d.userdevice, d.vdi.name])).toEqual([
    ['Ref:998', '0', 'system'],
    ['Ref:1003', '1', 'data'],
  ]);
  expect(meta.vifs.map((v) => [v.mac, v.networkName])).toEqual([['02:00:00:00:00:09', 'lan']]);
  // The source VM's other_config is kept, its mac_seed included (the VM keeps its identity).
  const sourceSeed = parseOvaXml(await readOvaXmlText(src.path)).vm.otherConfig['mac_seed'];
  expect(sourceSeed).toBeDefined();
  expect(meta.vm.otherConfig['mac_seed']).toBe(sourceSeed);
  const { images } = await unpack(out);
  expect(images.get('0')!.equals(src.disks[0]!)).toBe(true);
  expect(images.get('1')!.equals(src.disks[1]!)).toBe(true);
});

test('--from: a bad source chunk fails (no output left); --on-bad-chunk zero repacks and reports it', async () => {
  const src = await makeSource('src.xva');
  // Flip a byte inside Ref:998/00000000's data (first data entry after ova.xml).
  const bytes = fs.readFileSync(src.path);
  const at = bytes.indexOf(Buffer.from('Ref:998/00000000\0'));
  const dataStart = at + 512;
  bytes[dataStart + 10]! ^= 0xff;
  const bad = path.join(dir, 'bad.xva');
  fs.writeFileSync(bad, bytes);
  const out = path.join(dir, 'out.xva');
  await expect(packXva({ from: bad, output: out })).rejects.toMatchObject({ code: 'XVA_BAD_CHECKSUM' });
  expect(fs.existsSync(out)).toBe(false);
  expect(fs.existsSync(`${out}.part`)).toBe(false);
  const s = await packXva({ from: bad, output: out, onBadChunk: 'zero' });
  expect(s.badChunks).toHaveLength(1);
  expect(s.badChunks[0]).toMatchObject({ entry: 'Ref:998/00000000', action: 'zeroed' });
  const img = (await unpack(out)).images.get('0')!;
  expect(img.subarray(0, MiB).every((b) => b === 0)).toBe(true);
  expect(img.subarray(MiB).equals(src.disks[0]!.subarray(MiB))).toBe(true);
});

test('--from: a source whose disks are not in string order is refused, not deadlocked', async () => {
  const src = await makeSource('misordered.xva', { diskOrder: 'spec' }); // Ref:998 before Ref:1003
  const out = path.join(dir, 'out.xva');
  await expect(packXva({ from: src.path, output: out })).rejects.toMatchObject({ code: 'XVA_CHUNK_ORDER' });
  expect(fs.existsSync(`${out}.part`)).toBe(false);
  expect(fs.existsSync(out)).toBe(false);
});

test('--from: zero-size disks travel with the kept metadata', async () => {
  const d0 = craftDisk(2 * MiB, 31);
  const p = path.join(dir, 'zero.xva');
  await makeXvaFile(dir, { fileName: 'zero.xva', disks: [{ ref: 'Ref:20', content: d0 }, { ref: 'Ref:21', size: 0, content: Buffer.alloc(0) }] });
  const out = path.join(dir, 'zero-out.xva');
  await packXva({ from: p, output: out });
  const { images } = await unpack(out);
  expect(images.get('0')!.equals(d0)).toBe(true);
  expect(images.get('1')!.length).toBe(0);
});

test('--from an OVA needs random access: a URL is refused with a usage error, a missing file is unreadable input', async () => {
  await expect(packXva({ from: 'https://example.org/vm.ova', output: path.join(dir, 'x.xva') })).rejects.toMatchObject({ code: 'USAGE' });
  await expect(packXva({ from: path.join(dir, 'vm.ova'), output: path.join(dir, 'x.xva') })).rejects.toMatchObject({ code: 'INPUT_UNREADABLE' });
});

// ---------------------------------------------------------------------------------------------
// Streams and output discipline

test('stdout: the packed stream piped straight into the reader', async () => {
  const d = craftDisk(3 * MiB + 4096, 41);
  const pipe = new PassThrough();
  const packing = packXva({ disks: [writeRaw('s.raw', d)], vm: { name: 'piped' }, output: '-', stdout: pipe, compression: 'zstd' }).then((s) => {
    pipe.end();
    return s;
  });
  packing.catch(() => pipe.destroy());
  // openInput sniffs the first bytes, so it resolves only once the packer has started writing.
  const conv = await convertXva(await openInput('-', { stdin: pipe }), { outDir: path.join(dir, 'conv') });
  const packed = await packing;
  expect(packed.output).toBe('-');
  expect(conv.compression).toBe('zstd');
  expect(fs.readFileSync(conv.disks[0]!.path!).equals(d)).toBe(true);
});

test('--from stdin to a stream (repack as a filter)', async () => {
  const src = await makeSource('src.xva.gz', { compression: 'gzip' });
  const input = new PassThrough();
  fs.createReadStream(src.path).pipe(input);
  const output = new PassThrough();
  const packing = (async () => {
    const s = await packXva({ from: await openInput('-', { stdin: input }), output: '-', stdout: output, compression: 'gzip', checksum: 'sha1' });
    output.end();
    return s;
  })();
  packing.catch(() => output.destroy());
  const conv = await convertXva(await openInput('-', { stdin: output }), { outDir: path.join(dir, 'c') });
  const s = await packing;
  expect(s.source!.compression).toBe('gzip');
  expect(conv.checksum).toBe('sha1');
  expect(fs.readFileSync(conv.disks.find((x) => x.userdevice === '0')!.path!).equals(src.disks[0]!)).toBe(true);
  expect(fs.readFileSync(conv.disks.find((x) => x.userdevice === '1')!.path!).equals(src.disks[1]!)).toBe(true);
});

test('an existing output is refused before reading; --force replaces it; failures leave no .part', async () => {
  const raw = writeRaw('a.raw', craftDisk(MiB, 51));
  const out = path.join(dir, 'a.xva');
  fs.writeFileSync(out, 'keep me');
  await expect(packXva({ disks: [raw], output: out })).rejects.toMatchObject({ code: 'OUTPUT_EXISTS' });
  expect(fs.readFileSync(out, 'utf8')).toBe('keep me');
  await packXva({ disks: [raw], output: out, force: true });
  expect(fs.readFileSync(out).subarray(0, 7).toString()).toBe('ova.xml');
  await expect(packXva({ disks: [path.join(dir, 'missing.raw')], output: path.join(dir, 'b.xva') })).rejects.toMatchObject({ code: 'INPUT_UNREADABLE' });
  expect(fs.readdirSync(dir).filter((f) => f.endsWith('.part'))).toEqual([]);
});

test('a failing destination stops both sides of a repack with the destination error', async () => {
  const src = await makeSource('src.xva.gz', { compression: 'gzip' });
  for (const from of [true, false]) {
    let written = 0;
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        written += chunk.length;
        if (written > 2 * MiB) cb(Object.assign(new Error('disk full'), { code: 'ENOSPC' }));
        else cb();
      },
    });
    const opts: PackOptions = from ? { from: src.path } : { disks: [writeRaw('f.raw', src.disks[0]!)] };
    await expect(packXva({ ...opts, output: '-', stdout: sink })).rejects.toMatchObject({ code: 'OUTPUT_NO_SPACE' });
  }
});

test('usage errors', async () => {
  const raw = writeRaw('a.raw', craftDisk(MiB, 52));
  await expect(packXva({ output: path.join(dir, 'x.xva') })).rejects.toMatchObject({ code: 'USAGE' });
  await expect(packXva({ disks: [raw] })).rejects.toMatchObject({ code: 'USAGE' });
  await expect(packXva({ disks: [raw], from: 'x.xva', output: path.join(dir, 'x.xva') })).rejects.toMatchObject({ code: 'USAGE' });
  await expect(packXva({ disks: [raw], vm: { vcpus: 0 }, output: path.join(dir, 'x.xva') })).rejects.toMatchObject({ code: 'USAGE' });
  await expect(packXva({ disks: [raw, { path: raw, userdevice: 0 }], output: path.join(dir, 'x.xva') })).rejects.toMatchObject({ code: 'USAGE' });
  await expect(packXva({ from: 'x.xva', nics: [{}], output: path.join(dir, 'x.xva') })).rejects.toMatchObject({ code: 'USAGE' });
  await expect(packXva({ disks: [raw], nics: [{ mac: 'zz' }], output: path.join(dir, 'x.xva') })).rejects.toMatchObject({ code: 'USAGE' });
  expect(fs.readdirSync(dir).filter((f) => f.startsWith('x.xva'))).toEqual([]);
});

// ---------------------------------------------------------------------------------------------
// DiskPipe

describe('DiskPipe', () => {
  test('holes read as zeros; partial segments carry over; finish fills the rest', async () => {
    const pipe = new DiskPipe('Ref:1', 10 * KiB, 4 * KiB);
    const a = Buffer.alloc(3 * KiB, 1);
    const b = Buffer.alloc(KiB, 2);
    const writes = (async () => {
      await pipe.write(KiB, a);
      a.fill(9); // the reader reuses its buffer: the pipe must have copied
      await pipe.write(6 * KiB, b);
      await pipe.finish();
    })();
    const r1 = await pipe.read(0, 2 * KiB);
    const r2 = await pipe.read(2 * KiB, 6 * KiB);
    const r3 = await pipe.read(8 * KiB, 2 * KiB);
    await writes;
    const all = Buffer.concat([r1, r2, r3]);
    const expected = Buffer.alloc(10 * KiB);
    expected.fill(1, KiB, 4 * KiB);
    expected.fill(2, 6 * KiB, 7 * KiB);
    expect(all.equals(expected)).toBe(true);
  });

  test('backpressure: the reader waits while highWater bytes are queued', async () => {
    const pipe = new DiskPipe('Ref:1', 64 * KiB, 8 * KiB);
    let written = 0;
    const writes = (async () => {
      for (let o = 0; o < 64 * KiB; o += 4 * KiB) {
        await pipe.write(o, Buffer.alloc(4 * KiB, 7));
        written = o + 4 * KiB;
      }
      await pipe.finish();
    })();
    // The pipe is promises only: after one macrotask the writer has gone as far as it can.
    await new Promise((r) => setImmediate(r));
    expect(written).toBeLessThanOrEqual(12 * KiB); // stuck: nobody reads
    for (let o = 0; o < 64 * KiB; o += 16 * KiB) expect((await pipe.read(o, 16 * KiB)).every((x) => x === 7)).toBe(true);
    await writes;
    expect(pipe.peakQueued).toBeLessThanOrEqual(16 * KiB);
  });

  test('a read wider than highWater does not deadlock', async () => {
    const pipe = new DiskPipe('Ref:1', 32 * KiB, 4 * KiB);
    const writes = (async () => {
      for (let o = 0; o < 32 * KiB; o += 2 * KiB) await pipe.write(o, Buffer.alloc(2 * KiB, 3));
      await pipe.finish();
    })();
    expect((await pipe.read(0, 32 * KiB)).every((x) => x === 3)).toBe(true);
    await writes;
  });

  test('fail() rejects both sides', async () => {
    const pipe = new DiskPipe('Ref:1', 16 * KiB, 4 * KiB);
    const reading = pipe.read(0, 8 * KiB);
    const boom = new Error('boom');
    pipe.fail(boom);
    await expect(reading).rejects.toBe(boom);
    await expect(pipe.write(0, Buffer.alloc(10))).rejects.toBe(boom);
  });
});
