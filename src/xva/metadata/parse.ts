/**
 * ova.xml → XvaMetadata (docs/xva-format.md §3). Decides which VM the archive is about, which of its
 * VDIs carry data in the tar (non-CD VBDs whose SR is not an ISO SR, plus a suspend image), and
 * in which order their directories appear (plain string order of the `Ref:` ids, docs/xva-format.md §1.2).
 * Unknown classes and fields are ignored; references to objects that are not exported
 * (`OpaqueRef:NULL`) are treated as absent.
 */
import { XvaFormatError } from '../../errors';
import type { CdromInfo, DiskInfo, ExportVersion, VbdInfo, VdiInfo, VifInfo, VmInfo, XvaMetadata } from './model';
import { parseXmlRpc, type PlainRpcStruct, type PlainRpcValue } from './xmlrpc';

/**
 * Refuse ova.xml larger than this: real ones are KBs (a few MB with big NVRAM/VTPM blobs or
 * many snapshots in a metadata export). Parsing costs ~25-45x the text size in memory
 * (measured: 8 MiB of text -> ~360 MiB RSS, 32 MiB -> ~720 MiB), so this bounds the memory a
 * hostile ova.xml can take to well under 1 GiB. Stated in the XVA_TOO_LARGE message.
 */
export const MAX_OVA_XML_BYTES = 16 * 1024 * 1024;
/** Largest virtual size we accept: 2^53 - 1 bytes (exact in a JS number; XAPI's limit is far lower). */
export const MAX_VIRTUAL_SIZE = Number.MAX_SAFE_INTEGER;

function bad(message: string): XvaFormatError {
  return new XvaFormatError('XVA_BAD_OVA_XML', message, { entry: 'ova.xml' });
}

function isStruct(v: PlainRpcValue | undefined): v is PlainRpcStruct {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(s: PlainRpcStruct, key: string): string {
  const v = s[key];
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return '';
}

function bool(s: PlainRpcStruct, key: string): boolean {
  const v = s[key];
  if (typeof v === 'boolean') return v;
  return v === 'true' || v === '1';
}

function map(s: PlainRpcStruct, key: string): Record<string, string> {
  const v = s[key];
  const out: Record<string, string> = {};
  if (isStruct(v)) for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

function refs(s: PlainRpcStruct, key: string): string[] {
  const v = s[key];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** Parses an untyped integer field; `what` names it in errors. */
function int(s: PlainRpcStruct, key: string, what: string, opts: { required?: boolean; max?: number; fallback?: number } = {}): number {
  const raw = s[key];
  if (raw === undefined || raw === '') {
    if (opts.required) throw bad(`${what}: field ${key} missing`);
    return opts.fallback ?? 0;
  }
  if (typeof raw !== 'string' || !/^\s*-?\d{1,30}(\.0+)?\s*$/.test(raw)) {
    throw bad(`${what}: ${key} is not an integer (${JSON.stringify(String(raw).slice(0, 40))})`);
  }
  const n = Number(raw.trim());
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  if (n < 0) throw bad(`${what}: ${key} is negative (${raw.trim()})`);
  if (!Number.isSafeInteger(n) || n > max) throw bad(`${what}: ${key} ${raw.trim()} is too large (limit ${max})`);
  return n;
}

function isRef(r: string | undefined): r is string {
  return !!r && r !== 'OpaqueRef:NULL' && r !== '';
}

interface ObjectRecord {
  cls: string;
  id: string;
  snap: PlainRpcStruct;
}

function parseVersion(v: PlainRpcValue | undefined): ExportVersion {
  const s: PlainRpcStruct = isStruct(v) ? v : {};
  const n = (k: string): number => {
    const x = s[k];
    const num = typeof x === 'string' && /^\d{1,9}$/.test(x.trim()) ? Number(x.trim()) : 0;
    return num;
  };
  return {
    hostname: str(s, 'hostname'),
    date: str(s, 'date'),
    productVersion: str(s, 'product_version'),
    productBrand: str(s, 'product_brand'),
    buildNumber: str(s, 'build_number'),
    xapiMajor: n('xapi_major'),
    xapiMinor: n('xapi_minor'),
    exportVsn: n('export_vsn'),
  };
}

function collectObjects(top: PlainRpcStruct): Map<string, ObjectRecord> {
  const objects = top['objects'];
  if (!Array.isArray(objects)) throw bad('no "objects" array (is this an XVA ova.xml?)');
  const byId = new Map<string, ObjectRecord>();
  for (const o of objects) {
    if (!isStruct(o)) throw bad('an entry of "objects" is not a struct');
    const cls = str(o, 'class');
    const id = str(o, 'id');
    const snap = o['snapshot'];
    if (!cls || !id || !isStruct(snap)) throw bad(`object without class, id or snapshot (${JSON.stringify({ class: cls.slice(0, 20), id: id.slice(0, 40) })})`);
    if (byId.has(id)) throw bad(`duplicate object id ${id.slice(0, 60)}`);
    byId.set(id, { cls, id, snap });
  }
  return byId;
}

function ofClass(objs: Map<string, ObjectRecord>, cls: string): ObjectRecord[] {
  return [...objs.values()].filter((o) => o.cls === cls);
}

function vbdOf(o: ObjectRecord): VbdInfo {
  const s = o.snap;
  const vdi = str(s, 'VDI');
  return {
    ref: o.id,
    userdevice: str(s, 'userdevice'),
    bootable: bool(s, 'bootable'),
    type: str(s, 'type') || 'Disk',
    mode: str(s, 'mode'),
    empty: bool(s, 'empty'),
    device: str(s, 'device'),
    vdiRef: isRef(vdi) ? vdi : undefined,
  };
}

function vdiOf(o: ObjectRecord, objs: Map<string, ObjectRecord>): VdiInfo {
  const s = o.snap;
  const srRef = str(s, 'SR');
  const sr = isRef(srRef) ? objs.get(srRef) : undefined;
  return {
    ref: o.id,
    uuid: str(s, 'uuid'),
    name: str(s, 'name_label'),
    description: str(s, 'name_description'),
    virtualSize: int(s, 'virtual_size', `VDI ${o.id}`, { required: true, max: MAX_VIRTUAL_SIZE }),
    type: str(s, 'type'),
    srRef: isRef(srRef) ? srRef : undefined,
    srContentType: sr ? str(sr.snap, 'content_type') : '',
    srName: sr ? str(sr.snap, 'name_label') : '',
    readOnly: bool(s, 'read_only'),
  };
}

function isCdLike(vbd: VbdInfo): boolean {
  const t = vbd.type.toLowerCase();
  return t === 'cd' || t === 'floppy';
}

/** The VM the export is about: the one owning streamed VBDs, preferring non-snapshots (docs/xva-format.md §3.2). */
function pickVm(objs: Map<string, ObjectRecord>): ObjectRecord {
  const vms = ofClass(objs, 'VM').filter((v) => !bool(v.snap, 'is_control_domain'));
  const first = vms[0];
  if (first === undefined) throw bad('no VM object');
  if (vms.length === 1) return first;
  const score = (vm: ObjectRecord): number => {
    const vbds = ofClass(objs, 'VBD').filter((b) => str(b.snap, 'VM') === vm.id || refs(vm.snap, 'VBDs').includes(b.id));
    const withData = vbds.filter((b) => isRef(str(b.snap, 'VDI')) && objs.has(str(b.snap, 'VDI'))).length;
    return withData * 4 + (bool(vm.snap, 'is_a_snapshot') ? 0 : 2) + (bool(vm.snap, 'is_a_template') ? 0 : 1);
  };
  return [...vms].sort((a, b) => score(b) - score(a))[0]!;
}

function vmOf(o: ObjectRecord): VmInfo {
  const s = o.snap;
  const bootParams = map(s, 'HVM_boot_params');
  const policy = str(s, 'HVM_boot_policy');
  const domainType = str(s, 'domain_type');
  const hvm = domainType ? domainType === 'hvm' : policy !== '';
  const fw = (bootParams['firmware'] ?? '').toLowerCase();
  const what = `VM ${o.id}`;
  return {
    ref: o.id,
    uuid: str(s, 'uuid'),
    name: str(s, 'name_label'),
    description: str(s, 'name_description'),
    vcpus: int(s, 'VCPUs_max', what, { max: 65536 }),
    vcpusAtStartup: int(s, 'VCPUs_at_startup', what, { max: 65536 }),
    memoryBytes: int(s, 'memory_static_max', what),
    isTemplate: bool(s, 'is_a_template'),
    isSnapshot: bool(s, 'is_a_snapshot'),
    hvm,
    firmware: fw === 'uefi' ? 'uefi' : fw === 'bios' ? 'bios' : hvm ? 'bios' : undefined,
    domainType,
    bootOrder: bootParams['order'] ?? '',
    powerState: str(s, 'power_state'),
    platform: map(s, 'platform'),
    otherConfig: map(s, 'other_config'),
  };
}

function userdeviceKey(u: string): number {
  return /^\d+$/.test(u) ? Number(u) : Number.MAX_SAFE_INTEGER;
}

/** Parses ova.xml text into the metadata model. Throws XvaFormatError('XVA_BAD_OVA_XML'). */
export function parseOvaXml(xml: string): XvaMetadata {
  const top = parseXmlRpc(xml);
  if (!isStruct(top)) throw bad('top-level value is not a struct');
  const version = parseVersion(top['version']);
  const objs = collectObjects(top);
  const vmRec = pickVm(objs);
  const vm = vmOf(vmRec);

  const vmVbdRefs = new Set(refs(vmRec.snap, 'VBDs'));
  const vbds = ofClass(objs, 'VBD')
    .filter((b) => vmVbdRefs.has(b.id) || str(b.snap, 'VM') === vmRec.id)
    .map(vbdOf);

  const disks: DiskInfo[] = [];
  const cdroms: CdromInfo[] = [];
  const seenVdi = new Set<string>();
  for (const vbd of vbds) {
    const vdiRec = vbd.vdiRef ? objs.get(vbd.vdiRef) : undefined;
    if (vdiRec && vdiRec.cls !== 'VDI') throw bad(`VBD ${vbd.ref} refers to ${vbd.vdiRef}, which is a ${vdiRec.cls}, not a VDI`);
    const vdi = vdiRec ? vdiOf(vdiRec, objs) : undefined;
    if (isCdLike(vbd) || vdi?.srContentType.toLowerCase() === 'iso') {
      cdroms.push({ userdevice: vbd.userdevice, empty: !vdi, isoName: vdi?.name || undefined });
      continue;
    }
    if (!vdi) continue; // a Disk VBD without an exported VDI is dropped, as XAPI import does
    if (seenVdi.has(vdi.ref)) throw bad(`VDI ${vdi.ref} is attached twice`);
    seenVdi.add(vdi.ref);
    disks.push({ ref: vdi.ref, vdi, vbd, userdevice: vbd.userdevice, bootable: vbd.bootable, virtualSize: vdi.virtualSize, isSuspendImage: false });
  }
  const suspendRef = str(vmRec.snap, 'suspend_VDI');
  const suspendRec = isRef(suspendRef) ? objs.get(suspendRef) : undefined;
  if (suspendRec && suspendRec.cls === 'VDI' && !seenVdi.has(suspendRec.id)) {
    const vdi = vdiOf(suspendRec, objs);
    disks.push({ ref: vdi.ref, vdi, userdevice: 'suspend', bootable: false, virtualSize: vdi.virtualSize, isSuspendImage: true });
  }
  disks.sort((a, b) => userdeviceKey(a.userdevice) - userdeviceKey(b.userdevice) || (a.ref < b.ref ? -1 : 1));
  cdroms.sort((a, b) => userdeviceKey(a.userdevice) - userdeviceKey(b.userdevice));

  const vmVifRefs = new Set(refs(vmRec.snap, 'VIFs'));
  const vifs: VifInfo[] = ofClass(objs, 'VIF')
    .filter((v) => vmVifRefs.has(v.id) || str(v.snap, 'VM') === vmRec.id)
    .map((v) => {
      const netRef = str(v.snap, 'network');
      const net = isRef(netRef) ? objs.get(netRef) : undefined;
      return {
        ref: v.id,
        device: str(v.snap, 'device'),
        mac: str(v.snap, 'MAC'),
        macAutogenerated: bool(v.snap, 'MAC_autogenerated'),
        mtu: int(v.snap, 'MTU', `VIF ${v.id}`, { max: 1 << 20 }),
        networkName: net ? str(net.snap, 'name_label') : '',
        bridge: net ? str(net.snap, 'bridge') : '',
      };
    })
    .sort((a, b) => userdeviceKey(a.device) - userdeviceKey(b.device));

  // Directories in the tar follow a plain string compare of the ids (Ref:1003 < Ref:998).
  const streamedRefs = disks.map((d) => d.ref).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const vdiRefs = ofClass(objs, 'VDI').map((o) => o.id);
  return { version, vm, disks, cdroms, vifs, streamedRefs, vdiRefs };
}
