/**
 * One ova.xml snapshot per class (docs/xva-format.md §3.4), with every field of REQUIRED_FIELDS and
 * the values XAPI gives a new halted VM, its VBDs, VDIs, VIFs, networks and SRs. References
 * between objects (`Ref:N`) are the caller's: build.ts allocates them.
 */
import { EPOCH_DATETIME, NULL_REF } from './fields';
import type { OvaXmlVifSpec, OvaXmlVmSpec } from './spec';
import { RpcDateTime, RpcDouble, type RpcStruct } from './xmlrpc';

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

/**
 * other_config of a new VM, as XAPI gives one made from its "Other install media" template and as
 * Xen Orchestra's XVA writer sets it: `mac_seed` (XAPI derives the MACs of new VIFs from it) and,
 * for HVM guests, the template's `base_template_name` and `install-methods`. The spec's own
 * other_config wins (a source VM's record keeps its values). See docs/xva-format.md.
 */
function vmOtherConfig(vm: OvaXmlVmSpec, hvm: boolean, macSeed: string): Record<string, string> {
  const template: Record<string, string> = hvm ? { base_template_name: 'Other install media', 'install-methods': 'cdrom' } : {};
  return { ...template, mac_seed: macSeed, ...(vm.otherConfig ?? {}) };
}

export function vmSnapshot(vm: OvaXmlVmSpec, uuid: string, macSeed: string, vbds: string[], vifs: string[]): RpcStruct {
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

export interface VbdFields {
  uuid: string;
  vm: string;
  vdi: string;
  userdevice: string;
  bootable: boolean;
  type: 'Disk' | 'CD';
  mode: 'RW' | 'RO';
  empty: boolean;
}

/**
 * The fields a VBD and a VIF share, in the place and order XAPI writes them in both: the state of
 * a device that is not plugged, with no QoS and no metrics.
 */
function unpluggedDeviceFields(): RpcStruct {
  return {
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

export function vbdSnapshot(f: VbdFields): RpcStruct {
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
    ...unpluggedDeviceFields(),
  };
}

export interface VdiFields {
  uuid: string;
  name: string;
  description: string;
  sr: string;
  vbds: string[];
  virtualSize: number;
  readOnly: boolean;
}

export function vdiSnapshot(f: VdiFields): RpcStruct {
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

export function srSnapshot(uuid: string, name: string, contentType: string, type: string, vdis: string[], size: number): RpcStruct {
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

export function vifSnapshot(uuid: string, vif: OvaXmlVifSpec, vm: string, network: string): RpcStruct {
  return {
    uuid,
    allowed_operations: [],
    current_operations: {},
    device: String(vif.device),
    network,
    VM: vm,
    MAC: vif.mac,
    MTU: vif.mtu ?? 1500,
    ...unpluggedDeviceFields(),
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

export function networkSnapshot(uuid: string, name: string, bridge: string, mtu: number, vifs: string[]): RpcStruct {
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
