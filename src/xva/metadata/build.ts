/**
 * Builds ova.xml exactly as XAPI encodes it (xva-format.md §3): one XML-RPC value, no XML
 * declaration, no whitespace, ints untyped (`<value>123</value>`), booleans as `<boolean>`,
 * datetimes as `<dateTime.iso8601>`, strings escaped for `& < > "` with control characters
 * other than TAB/LF/CR dropped (ocaml-rpc `Xmlrpc.encode`).
 *
 * Objects are emitted in XAPI's export order (VM, VBDs, VIFs, networks, VDIs, SRs) and each
 * snapshot carries the complete field set of §3.4 (REQUIRED_FIELDS), because XAPI's
 * generated deserialisers fail on a missing field that has no datamodel default.
 *
 * Output is deterministic for a given spec when `uuidGen` and `version.date` are fixed.
 */
import { randomUUID } from 'node:crypto';
import type { ExportVersion, XvaMetadata } from './model';
import { RpcDateTime, RpcDouble } from './xmlrpc';

// ---------------------------------------------------------------------------------------------
// XML-RPC value model and encoder

// The typed leaves are defined with the parser (xmlrpc.ts), which builds them when reading.
export { RpcDateTime, RpcDouble };

/**
 * string → untyped `<value>`; integer number → untyped decimal (XAPI's int64 encoding);
 * boolean → `<boolean>`; array → `<array>`; plain object → `<struct>` in key insertion order.
 */
export type RpcValue = string | number | boolean | RpcDouble | RpcDateTime | RpcValue[] | RpcStruct;
export interface RpcStruct {
  [key: string]: RpcValue;
}

/** XAPI's reference for "nothing" (EX `lookup`). */
export const NULL_REF = 'OpaqueRef:NULL';
/** The datetime XAPI writes for an unset time. */
export const EPOCH_DATETIME = '19700101T00:00:00Z';

// Drop C0 controls except TAB, LF, CR (they are invalid in XML 1.0); escape & < > ".
// eslint-disable-next-line no-control-regex
const DROPPED_CONTROLS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g;

export function escapeXmlRpcString(text: string): string {
  return text.replace(DROPPED_CONTROLS, '').replace(/[&<>"]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&quot;'));
}

/** %.16g for the values we emit (finite doubles). */
function formatDouble(d: number): string {
  if (!Number.isFinite(d)) throw new RangeError(`ova.xml: double must be finite, got ${d}`);
  if (Number.isInteger(d) && Math.abs(d) < 1e16) return String(d);
  let s = d.toPrecision(16);
  if (s.includes('e')) {
    const [mant, exp] = s.split('e') as [string, string];
    const m = mant.includes('.') ? mant.replace(/0+$/, '').replace(/\.$/, '') : mant;
    const e = Number(exp);
    s = `${m}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  } else if (s.includes('.')) {
    s = s.replace(/0+$/, '').replace(/\.$/, '');
  }
  return s;
}

/** Encodes one value the way ocaml-rpc `Xmlrpc.to_string` does (non-strict mode). */
export function encodeRpcValue(value: RpcValue, out: string[] = []): string[] {
  if (typeof value === 'string') {
    out.push('<value>', escapeXmlRpcString(value), '</value>');
  } else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`ova.xml: integer fields must be safe integers, got ${value}`);
    out.push('<value>', String(value), '</value>');
  } else if (typeof value === 'boolean') {
    out.push('<value><boolean>', value ? '1' : '0', '</boolean></value>');
  } else if (value instanceof RpcDouble) {
    out.push('<value><double>', formatDouble(value.value), '</double></value>');
  } else if (value instanceof RpcDateTime) {
    out.push('<value><dateTime.iso8601>', escapeXmlRpcString(value.value), '</dateTime.iso8601></value>');
  } else if (Array.isArray(value)) {
    out.push('<value><array><data>');
    for (const v of value) encodeRpcValue(v, out);
    out.push('</data></array></value>');
  } else {
    out.push('<value><struct>');
    for (const [k, v] of Object.entries(value)) {
      // XAPI writes member names raw; ours are escaped too so odd map keys stay valid XML.
      out.push('<member><name>', escapeXmlRpcString(k), '</name>');
      encodeRpcValue(v, out);
      out.push('</member>');
    }
    out.push('</struct></value>');
  }
  return out;
}

export function rpcToXml(value: RpcValue): string {
  return encodeRpcValue(value).join('');
}

// ---------------------------------------------------------------------------------------------
// Field sets (xva-format.md §3.4)

/**
 * Every field each exported class must carry. VM/VBD/VDI/VIF are the field names of Xen
 * Orchestra's templates (the set known to import on XCP-ng 8.2/8.3 and XenServer) plus a few
 * fields converters read (name_description, is_a_snapshot); SR and network are our own
 * complete-enough records (the spec marks their required set UNCONFIRMED).
 */
export const REQUIRED_FIELDS = {
  VM: [
    'actions_after_crash', 'actions_after_reboot', 'actions_after_shutdown', 'affinity', 'allowed_operations',
    'attached_PCIs', 'blobs', 'blocked_operations', 'children', 'consoles', 'crash_dumps', 'current_operations',
    'domain_type', 'domarch', 'domid', 'generation_id', 'guest_metrics', 'ha_always_run', 'ha_restart_priority',
    'hardware_platform_version', 'has_vendor_device', 'HVM_boot_params', 'HVM_boot_policy', 'HVM_shadow_multiplier',
    'is_a_snapshot', 'is_a_template', 'is_control_domain', 'is_default_template', 'is_snapshot_from_vmpp',
    'is_vmss_snapshot', 'last_booted_record', 'last_boot_CPU_flags', 'memory_dynamic_max', 'memory_dynamic_min',
    'memory_overhead', 'memory_static_max', 'memory_static_min', 'memory_target', 'metrics', 'name_label',
    'name_description', 'NVRAM', 'order', 'other_config', 'parent', 'PCI_bus', 'platform', 'power_state', 'PV_args',
    'PV_bootloader', 'PV_bootloader_args', 'PV_kernel', 'PV_legacy_args', 'PV_ramdisk', 'recommendations',
    'reference_label', 'requires_reboot', 'resident_on', 'shutdown_delay', 'snapshot_info', 'snapshot_metadata',
    'snapshot_of', 'snapshot_time', 'snapshots', 'start_delay', 'suspend_SR', 'suspend_VDI', 'tags',
    'transportable_snapshot_id', 'user_version', 'uuid', 'VBDs', 'VCPUs_at_startup', 'VCPUs_max', 'VCPUs_params',
    'version', 'VGPUs', 'VIFs', 'VTPMs', 'VUSBs', 'xenstore_data',
  ],
  VBD: [
    'allowed_operations', 'bootable', 'current_operations', 'currently_attached', 'device', 'empty', 'metrics', 'mode',
    'other_config', 'qos_algorithm_params', 'qos_algorithm_type', 'qos_supported_algorithms', 'runtime_properties',
    'status_code', 'status_detail', 'storage_lock', 'type', 'unpluggable', 'userdevice', 'uuid', 'VM', 'VDI',
  ],
  VDI: [
    'allow_caching', 'cbt_enabled', 'is_a_snapshot', 'managed', 'metrics', 'missing', 'name_label', 'name_description',
    'on_boot', 'other_config', 'parent', 'physical_utilisation', 'read_only', 'sharable', 'sm_config', 'snapshot_of',
    'snapshots', 'SR', 'storage_lock', 'tags', 'type', 'uuid', 'VBDs', 'virtual_size', 'xenstore_data',
  ],
  SR: [
    'allowed_operations', 'blobs', 'content_type', 'current_operations', 'name_description', 'name_label',
    'other_config', 'PBDs', 'physical_size', 'physical_utilisation', 'shared', 'sm_config', 'tags', 'type', 'uuid',
    'VDIs', 'virtual_allocation',
  ],
  VIF: [
    'allowed_operations', 'current_operations', 'currently_attached', 'device', 'ipv4_addresses', 'ipv4_allowed',
    'ipv4_configuration_mode', 'ipv4_gateway', 'ipv6_addresses', 'ipv6_allowed', 'ipv6_configuration_mode',
    'ipv6_gateway', 'locking_mode', 'MAC', 'MAC_autogenerated', 'metrics', 'MTU', 'network', 'other_config',
    'qos_algorithm_params', 'qos_algorithm_type', 'qos_supported_algorithms', 'runtime_properties', 'status_code',
    'status_detail', 'uuid', 'VM',
  ],
  network: [
    'allowed_operations', 'blobs', 'bridge', 'current_operations', 'default_locking_mode', 'managed', 'MTU',
    'name_description', 'name_label', 'other_config', 'PIFs', 'purpose', 'tags', 'uuid', 'VIFs',
  ],
} as const satisfies Record<string, readonly string[]>;

export type OvaClass = keyof typeof REQUIRED_FIELDS;

// ---------------------------------------------------------------------------------------------
// Writer spec

export interface OvaVmSpec {
  name: string;
  description?: string;
  vcpus: number;
  /** Defaults to vcpus. */
  vcpusAtStartup?: number;
  memoryBytes: number;
  /** Default 'bios'. Ignored for PV guests. */
  firmware?: 'bios' | 'uefi';
  /** UEFI secure boot (`platform:secureboot`); only with firmware 'uefi'. Default false. */
  secureBoot?: boolean;
  /** Default true. */
  hvm?: boolean;
  /** HVM_boot_params.order, default 'cd'. */
  bootOrder?: string;
  isTemplate?: boolean;
  /** Merged over the default HVM platform map. */
  platform?: Record<string, string>;
  otherConfig?: Record<string, string>;
  uuid?: string;
}

export interface OvaDiskSpec {
  /** VDI ref `Ref:N`: also the tar directory of the disk's chunks. */
  ref: string;
  name: string;
  description?: string;
  /** virtual_size written to ova.xml (the writer may have rounded it, see xva/writer.ts). */
  virtualSize: number;
  userdevice: string | number;
  bootable?: boolean;
  readOnly?: boolean;
  uuid?: string;
  vbdUuid?: string;
}

export interface OvaCdromSpec {
  userdevice: string | number;
  /** Name of an inserted ISO (a VDI in an `iso` SR, no data in the tar); empty drive if absent. */
  isoName?: string;
}

export interface OvaVifSpec {
  device: string | number;
  mac: string;
  /** VIF.MAC_autogenerated: true when the MAC was generated, not given (default false). */
  macAutogenerated?: boolean;
  /** Default 1500. */
  mtu?: number;
  networkName: string;
  bridge: string;
}

/**
 * The `version` record written into ova.xml: the same fields the reader parses. Unset fields take
 * DEFAULT_VERSION; `date` (as XAPI writes it in `version.date`) defaults to today (UTC), YYYY-MM-DD.
 */
export type OvaVersionSpec = ExportVersion;

export interface OvaXmlSpec {
  vm: OvaVmSpec;
  disks: OvaDiskSpec[];
  cdroms?: OvaCdromSpec[];
  vifs?: OvaVifSpec[];
  version?: Partial<OvaVersionSpec>;
  /** UUID source for every object without an explicit uuid (default crypto.randomUUID). */
  uuidGen?: () => string;
}

/**
 * What we claim to be. XAPI refuses files from a newer xapi than itself (§3.1); 1.20 is what
 * Xen Orchestra writes and every XCP-ng >= 8.2 / XenServer >= 8 accepts.
 */
export const DEFAULT_VERSION: Omit<OvaVersionSpec, 'date'> = {
  hostname: 'xva2img',
  productVersion: '8.2.1',
  productBrand: 'XCP-ng',
  buildNumber: 'release/yangtze/master/58',
  xapiMajor: 1,
  xapiMinor: 20,
  exportVsn: 2,
};

/** Default platform keys of an HVM guest created from a stock XCP-ng template. */
const DEFAULT_HVM_PLATFORM: Record<string, string> = {
  timeoffset: '0',
  secureboot: 'false',
  'device-model': 'qemu-upstream-compat',
  viridian: 'false',
  nx: 'true',
  acpi: '1',
  apic: 'true',
  pae: 'true',
  hpet: 'true',
};

// ---------------------------------------------------------------------------------------------
// Building

export interface OvaObject {
  class: OvaClass;
  id: string;
  snapshot: RpcStruct;
}

/** Allocates `Ref:N` ids for objects that carry no data, avoiding the caller's disk refs. */
class RefAllocator {
  private next: number;
  constructor(private readonly used: Set<string>) {
    let max = 0;
    for (const ref of used) {
      const m = /^Ref:(\d+)$/.exec(ref);
      if (m) max = Math.max(max, Number(m[1]));
    }
    this.next = max + 1;
  }
  take(): string {
    for (;;) {
      const ref = `Ref:${this.next++}`;
      if (!this.used.has(ref)) {
        this.used.add(ref);
        return ref;
      }
    }
  }
}

function todayUtc(): string {
  return new Date().toISOString().slice(0, 10);
}

function assertSafeSize(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`ova.xml: ${what} must be a non-negative integer, got ${n}`);
}

/**
 * other_config of a new VM, as XAPI gives one made from its "Other install media" template and as
 * Xen Orchestra's XVA writer sets it: `mac_seed` (XAPI derives the MACs of new VIFs from it) and,
 * for HVM guests, the template's `base_template_name` and `install-methods`. The spec's own
 * other_config wins (a source VM's record keeps its values). See docs/xva-format.md.
 */
function vmOtherConfig(vm: OvaVmSpec, hvm: boolean, macSeed: string): Record<string, string> {
  const template: Record<string, string> = hvm ? { base_template_name: 'Other install media', 'install-methods': 'cdrom' } : {};
  return { ...template, mac_seed: macSeed, ...(vm.otherConfig ?? {}) };
}

function vmSnapshot(vm: OvaVmSpec, uuid: string, macSeed: string, vbds: string[], vifs: string[]): RpcStruct {
  const hvm = vm.hvm ?? true;
  const firmware = vm.firmware ?? 'bios';
  const vcpusAtStartup = vm.vcpusAtStartup ?? vm.vcpus;
  const mem = vm.memoryBytes;
  const platform: Record<string, string> = hvm ? { ...DEFAULT_HVM_PLATFORM } : {};
  if (vm.secureBoot && !(hvm && firmware === 'uefi')) throw new RangeError('ova.xml: secure boot needs an HVM guest with UEFI firmware');
  // XCP-ng selects the UEFI-capable qemu through this key (UNCONFIRMED for XenServer).
  if (hvm && firmware === 'uefi') {
    platform['device-model'] = 'qemu-upstream-uefi';
    if (vm.secureBoot) platform.secureboot = 'true';
  }
  Object.assign(platform, vm.platform ?? {});
  return {
    uuid,
    name_label: vm.name,
    name_description: vm.description ?? '',
    power_state: 'Halted',
    allowed_operations: [],
    current_operations: {},
    blocked_operations: {},
    user_version: 1,
    is_a_template: vm.isTemplate ?? false,
    is_default_template: false,
    is_a_snapshot: false,
    is_control_domain: false,
    is_snapshot_from_vmpp: false,
    is_vmss_snapshot: false,
    snapshot_of: NULL_REF,
    snapshots: [],
    snapshot_time: new RpcDateTime(EPOCH_DATETIME),
    snapshot_info: {},
    snapshot_metadata: '',
    transportable_snapshot_id: '',
    parent: NULL_REF,
    children: [],
    suspend_VDI: NULL_REF,
    suspend_SR: NULL_REF,
    resident_on: NULL_REF,
    affinity: NULL_REF,
    memory_overhead: 0,
    memory_target: mem,
    memory_static_max: mem,
    memory_dynamic_max: mem,
    memory_dynamic_min: mem,
    memory_static_min: mem,
    VCPUs_params: {},
    VCPUs_max: vm.vcpus,
    VCPUs_at_startup: vcpusAtStartup,
    actions_after_shutdown: 'destroy',
    actions_after_reboot: 'restart',
    actions_after_crash: 'restart',
    consoles: [],
    VIFs: vifs,
    VBDs: vbds,
    VUSBs: [],
    crash_dumps: [],
    VTPMs: [],
    VGPUs: [],
    attached_PCIs: [],
    PV_bootloader: '',
    PV_kernel: '',
    PV_ramdisk: '',
    PV_args: '',
    PV_bootloader_args: '',
    PV_legacy_args: '',
    HVM_boot_policy: hvm ? 'BIOS order' : '',
    HVM_boot_params: hvm ? { order: vm.bootOrder ?? 'cd', firmware } : {},
    HVM_shadow_multiplier: new RpcDouble(1),
    platform,
    PCI_bus: '',
    other_config: vmOtherConfig(vm, hvm, macSeed),
    domid: -1,
    domarch: '',
    last_boot_CPU_flags: {},
    metrics: NULL_REF,
    guest_metrics: NULL_REF,
    last_booted_record: '',
    recommendations: '',
    xenstore_data: {},
    ha_always_run: false,
    ha_restart_priority: '',
    tags: [],
    order: 0,
    start_delay: 0,
    shutdown_delay: 0,
    version: 0,
    generation_id: '',
    hardware_platform_version: 0,
    has_vendor_device: false,
    reference_label: '',
    requires_reboot: false,
    domain_type: hvm ? 'hvm' : 'pv',
    NVRAM: {},
    blobs: {},
  };
}

interface VbdFields {
  uuid: string;
  vm: string;
  vdi: string;
  userdevice: string;
  bootable: boolean;
  type: 'Disk' | 'CD';
  mode: 'RW' | 'RO';
  empty: boolean;
}

function vbdSnapshot(f: VbdFields): RpcStruct {
  return {
    uuid: f.uuid,
    allowed_operations: [],
    current_operations: {},
    VM: f.vm,
    VDI: f.vdi,
    // Assigned by XAPI when the VBD is plugged; exports of halted VMs often carry ''.
    device: '',
    userdevice: f.userdevice,
    bootable: f.bootable,
    mode: f.mode,
    type: f.type,
    unpluggable: true,
    storage_lock: false,
    empty: f.empty,
    other_config: {},
    currently_attached: false,
    status_code: 0,
    status_detail: '',
    runtime_properties: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    qos_supported_algorithms: [],
    metrics: NULL_REF,
  };
}

interface VdiFields {
  uuid: string;
  name: string;
  description: string;
  sr: string;
  vbds: string[];
  virtualSize: number;
  readOnly: boolean;
}

function vdiSnapshot(f: VdiFields): RpcStruct {
  return {
    uuid: f.uuid,
    name_label: f.name,
    name_description: f.description,
    allowed_operations: [],
    current_operations: {},
    SR: f.sr,
    VBDs: f.vbds,
    crash_dumps: [],
    virtual_size: f.virtualSize,
    physical_utilisation: f.virtualSize,
    // An ISO VDI is type "user" in an SR whose content_type is "iso".
    type: 'user',
    sharable: false,
    read_only: f.readOnly,
    other_config: {},
    storage_lock: false,
    location: '',
    managed: true,
    missing: false,
    parent: NULL_REF,
    xenstore_data: {},
    sm_config: {},
    is_a_snapshot: false,
    snapshot_of: NULL_REF,
    snapshots: [],
    snapshot_time: new RpcDateTime(EPOCH_DATETIME),
    tags: [],
    allow_caching: false,
    on_boot: 'persist',
    metrics: NULL_REF,
    cbt_enabled: false,
  };
}

function srSnapshot(uuid: string, name: string, contentType: string, type: string, vdis: string[], size: number): RpcStruct {
  return {
    uuid,
    name_label: name,
    name_description: '',
    allowed_operations: [],
    current_operations: {},
    VDIs: vdis,
    PBDs: [],
    virtual_allocation: size,
    physical_utilisation: size,
    physical_size: size,
    type,
    content_type: contentType,
    shared: false,
    other_config: {},
    tags: [],
    sm_config: {},
    blobs: {},
  };
}

function vifSnapshot(uuid: string, vif: OvaVifSpec, vm: string, network: string): RpcStruct {
  return {
    uuid,
    allowed_operations: [],
    current_operations: {},
    device: String(vif.device),
    network,
    VM: vm,
    MAC: vif.mac,
    MTU: vif.mtu ?? 1500,
    other_config: {},
    currently_attached: false,
    status_code: 0,
    status_detail: '',
    runtime_properties: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    qos_supported_algorithms: [],
    metrics: NULL_REF,
    MAC_autogenerated: vif.macAutogenerated ?? false,
    locking_mode: 'network_default',
    ipv4_allowed: [],
    ipv6_allowed: [],
    ipv4_configuration_mode: 'None',
    ipv4_addresses: [],
    ipv4_gateway: '',
    ipv6_configuration_mode: 'None',
    ipv6_addresses: [],
    ipv6_gateway: '',
  };
}

function networkSnapshot(uuid: string, name: string, bridge: string, mtu: number, vifs: string[]): RpcStruct {
  return {
    uuid,
    name_label: name,
    name_description: '',
    allowed_operations: [],
    current_operations: {},
    VIFs: vifs,
    PIFs: [],
    MTU: mtu,
    other_config: {},
    bridge,
    managed: true,
    blobs: {},
    tags: [],
    default_locking_mode: 'unlocked',
    purpose: [],
  };
}

/** The version struct with every default filled in. */
export function resolveVersion(version: Partial<OvaVersionSpec> = {}): OvaVersionSpec {
  return { ...DEFAULT_VERSION, date: todayUtc(), ...version };
}

/**
 * Builds the object list (VM, VBDs, VIFs, networks, VDIs, SRs — XAPI's export order).
 * Disk refs are taken from the spec; every other object gets a fresh `Ref:N` above them.
 */
export function buildOvaObjects(spec: OvaXmlSpec): OvaObject[] {
  const uuid = spec.uuidGen ?? randomUUID;
  const cdroms = spec.cdroms ?? [];
  const vifs = spec.vifs ?? [];

  const diskRefs = new Set<string>();
  for (const d of spec.disks) {
    if (!/^Ref:[^/\s]+$/.test(d.ref)) throw new RangeError(`ova.xml: disk ref must look like "Ref:N", got ${JSON.stringify(d.ref)}`);
    if (diskRefs.has(d.ref)) throw new RangeError(`ova.xml: duplicate disk ref ${d.ref}`);
    diskRefs.add(d.ref);
    assertSafeSize(d.virtualSize, `virtual size of ${d.ref}`);
  }
  const userdevices = [...spec.disks.map((d) => String(d.userdevice)), ...cdroms.map((c) => String(c.userdevice))];
  const dup = userdevices.find((u, i) => userdevices.indexOf(u) !== i);
  if (dup !== undefined) throw new RangeError(`ova.xml: userdevice ${dup} is used twice`);
  assertSafeSize(spec.vm.memoryBytes, 'memory');

  const refs = new RefAllocator(new Set(diskRefs));
  const vmRef = refs.take();
  const diskVbdRefs = spec.disks.map(() => refs.take());
  const cdVbdRefs = cdroms.map(() => refs.take());
  const vifRefs = vifs.map(() => refs.take());
  // One network object per distinct (name, bridge).
  const networkKeys = [...new Set(vifs.map((v) => JSON.stringify([v.networkName, v.bridge])))];
  const networkRefs = new Map(networkKeys.map((k) => [k, refs.take()]));
  const isoVdiRefs = cdroms.map((c) => (c.isoName !== undefined ? refs.take() : undefined));
  const diskSrRef = spec.disks.length > 0 ? refs.take() : undefined;
  const isoSrRef = isoVdiRefs.some((r) => r !== undefined) ? refs.take() : undefined;

  const vmUuid = spec.vm.uuid ?? uuid();
  const macSeed = spec.vm.otherConfig?.mac_seed ?? uuid();
  const objects: OvaObject[] = [];
  objects.push({ class: 'VM', id: vmRef, snapshot: vmSnapshot(spec.vm, vmUuid, macSeed, [...diskVbdRefs, ...cdVbdRefs], vifRefs) });

  spec.disks.forEach((d, i) => {
    objects.push({
      class: 'VBD',
      id: diskVbdRefs[i]!,
      snapshot: vbdSnapshot({
        uuid: d.vbdUuid ?? uuid(),
        vm: vmRef,
        vdi: d.ref,
        userdevice: String(d.userdevice),
        bootable: d.bootable ?? false,
        type: 'Disk',
        mode: d.readOnly ? 'RO' : 'RW',
        empty: false,
      }),
    });
  });
  cdroms.forEach((c, i) => {
    const vdi = isoVdiRefs[i];
    objects.push({
      class: 'VBD',
      id: cdVbdRefs[i]!,
      snapshot: vbdSnapshot({ uuid: uuid(), vm: vmRef, vdi: vdi ?? NULL_REF, userdevice: String(c.userdevice), bootable: false, type: 'CD', mode: 'RO', empty: vdi === undefined }),
    });
  });

  vifs.forEach((v, i) => {
    const net = networkRefs.get(JSON.stringify([v.networkName, v.bridge]))!;
    objects.push({ class: 'VIF', id: vifRefs[i]!, snapshot: vifSnapshot(uuid(), v, vmRef, net) });
  });
  for (const [key, ref] of networkRefs) {
    const [name, bridge] = JSON.parse(key) as [string, string];
    const members = vifs.map((v, i) => (JSON.stringify([v.networkName, v.bridge]) === key ? vifRefs[i]! : undefined)).filter((r): r is string => r !== undefined);
    const mtu = vifs.find((v) => JSON.stringify([v.networkName, v.bridge]) === key)?.mtu ?? 1500;
    objects.push({ class: 'network', id: ref, snapshot: networkSnapshot(uuid(), name, bridge, mtu, members) });
  }

  spec.disks.forEach((d, i) => {
    objects.push({
      class: 'VDI',
      id: d.ref,
      snapshot: vdiSnapshot({
        uuid: d.uuid ?? uuid(),
        name: d.name,
        description: d.description ?? '',
        sr: diskSrRef!,
        vbds: [diskVbdRefs[i]!],
        virtualSize: d.virtualSize,
        readOnly: d.readOnly ?? false,
      }),
    });
  });
  cdroms.forEach((c, i) => {
    const ref = isoVdiRefs[i];
    if (ref === undefined) return;
    objects.push({
      class: 'VDI',
      id: ref,
      snapshot: vdiSnapshot({ uuid: uuid(), name: c.isoName!, description: '', sr: isoSrRef!, vbds: [cdVbdRefs[i]!], virtualSize: 0, readOnly: true }),
    });
  });

  if (diskSrRef) {
    const total = spec.disks.reduce((s, d) => s + d.virtualSize, 0);
    objects.push({ class: 'SR', id: diskSrRef, snapshot: srSnapshot(uuid(), 'Local storage', 'user', 'ext', spec.disks.map((d) => d.ref), total) });
  }
  if (isoSrRef) {
    objects.push({ class: 'SR', id: isoSrRef, snapshot: srSnapshot(uuid(), 'ISO library', 'iso', 'iso', isoVdiRefs.filter((r): r is string => r !== undefined), 0) });
  }
  return objects;
}

/** The top-level struct: { version, objects }. */
export function buildOvaXmlValue(spec: OvaXmlSpec): RpcStruct {
  const v = resolveVersion(spec.version);
  return {
    version: {
      hostname: v.hostname,
      date: v.date,
      product_version: v.productVersion,
      product_brand: v.productBrand,
      build_number: v.buildNumber,
      xapi_major: v.xapiMajor,
      xapi_minor: v.xapiMinor,
      export_vsn: v.exportVsn,
    },
    objects: buildOvaObjects(spec).map((o) => ({ class: o.class, id: o.id, snapshot: o.snapshot })),
  };
}

/** ova.xml text, byte-for-byte in XAPI's encoding. */
export function buildOvaXml(spec: OvaXmlSpec): string {
  return rpcToXml(buildOvaXmlValue(spec));
}

/**
 * Converts a parsed XVA's metadata back into a writer spec (used by `pack`/re-export).
 * Disk refs, names, sizes, userdevices and the VM's settings are kept; uuids are kept so a
 * round trip does not invent new identities.
 */
export function ovaXmlSpecFromMetadata(meta: XvaMetadata): OvaXmlSpec {
  return {
    vm: {
      name: meta.vm.name,
      description: meta.vm.description,
      vcpus: meta.vm.vcpus,
      vcpusAtStartup: meta.vm.vcpusAtStartup,
      memoryBytes: meta.vm.memoryBytes,
      firmware: meta.vm.firmware,
      hvm: meta.vm.hvm,
      bootOrder: meta.vm.bootOrder || undefined,
      isTemplate: meta.vm.isTemplate,
      platform: { ...meta.vm.platform },
      otherConfig: { ...meta.vm.otherConfig },
      uuid: meta.vm.uuid || undefined,
    },
    disks: meta.disks
      .filter((d) => !d.isSuspendImage)
      .map((d) => ({
        ref: d.ref,
        name: d.vdi.name,
        description: d.vdi.description,
        virtualSize: d.virtualSize,
        userdevice: d.userdevice,
        bootable: d.bootable,
        readOnly: d.vdi.readOnly,
        uuid: d.vdi.uuid || undefined,
      })),
    cdroms: meta.cdroms.map((c) => ({ userdevice: c.userdevice, isoName: c.empty ? undefined : c.isoName })),
    vifs: meta.vifs.map((v) => ({ device: v.device, mac: v.mac, macAutogenerated: v.macAutogenerated, mtu: v.mtu, networkName: v.networkName, bridge: v.bridge })),
  };
}
