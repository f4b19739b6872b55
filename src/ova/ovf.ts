/**
 * OVF 1.0 descriptors for the two OVA profiles (formats.md §4.3, §4.4). Pure: model in, XML out.
 *
 * 'vmware' — generic OVF 1.0 as VMware's own templates write it: streamOptimized VMDK disks,
 *   CIM items with integer InstanceIDs in schema (alphabetical) element order, disk items named
 *   after the disks, `vmw:Config firmware`. Read by ESXi/vCenter/ovftool, VirtualBox, virt-v2v
 *   `-i ova`, Proxmox `qm importovf` and Xen Orchestra.
 * 'ovirt'  — the dialect oVirt's OvfOvaWriter produces: qcow2 disks named by image UUID, the
 *   `ovirt:` namespace, `ovf:disk-interface`/`ovf:boot` on each Disk, per-device `BootOrder`,
 *   `BiosType`.
 * Both state capacities exactly, as `byte * 2^N` (`ovfCapacity`, docs/output-formats.md).
 *
 * Sizes in References/DiskSection (`ovf:size`, `ovf:populatedSize`) may be unknown when the OVF
 * has to be written (one-pass file output). `ovfReservedBytes` renders the descriptor with the
 * widest possible numbers, and `buildPaddedOvf` renders the real one and pads it with spaces
 * (element-content whitespace before `</Envelope>`) to exactly that length, so the OVF member's
 * size never depends on the disk sizes.
 */
import { createHash } from 'node:crypto';
import { imageVirtualSize } from '../image/types';
import type { XvaMetadata } from '../xva/metadata/model';

import type { OvaProfile } from './settings';
export type { OvaProfile };
export type OvaFirmware = 'bios' | 'uefi';
export type OvaController = 'scsi' | 'ide' | 'sata' | 'virtio';
export type OvaGuestOs = 'linux' | 'windows' | 'other';
export type OvaBootDevice = 'disk' | 'cdrom' | 'network';
export type OvaDiskFormat = 'vmdk' | 'qcow2';

export interface OvaDisk {
  /** DiskSection `ovf:diskId` (vmware: `vmdisk1`; ovirt: the disk UUID). */
  id: string;
  /** References `ovf:id` (vmware: `file1`; ovirt: the image UUID). */
  fileId: string;
  /** Member name in the OVA = `ovf:href`. At most 100 bytes (one ustar header). */
  fileName: string;
  /** Human-readable label: the disk item's ElementName (ovirt: disk alias). */
  name: string;
  /** The disk item's Description (ovirt: disk description), when there is one. */
  description?: string;
  /** Virtual size in bytes, in whole sectors (`imageVirtualSize`). */
  capacity: number;
  format: OvaDiskFormat;
  /** Bytes of the member in the OVA; undefined until known. */
  fileSize?: number;
  /** Bytes of guest data actually stored; undefined until known. */
  populatedSize?: number;
  bootable: boolean;
  controller: OvaController;
  /** Position among the VM's disks for controller addressing (default: array index). */
  unit?: number;
}

export interface OvaNic {
  /** Device name, e.g. `eth0` / `nic1`. */
  name: string;
  /** Logical network name. */
  network: string;
  /** `aa:bb:cc:dd:ee:ff`, when known. */
  mac?: string;
  /** Adapter model: vmware `E1000` (default) / `VmxNet3`; ovirt `virtio` (default) / `e1000`. */
  model?: string;
  /** ovirt: the interface UUID (derived from the VM id when absent). */
  id?: string;
}

export interface OvaVm {
  /** VirtualSystem `ovf:id` (vmware: a name-like id; ovirt: the VM UUID). */
  id: string;
  name: string;
  description: string;
  vcpus: number;
  memoryBytes: number;
  firmware: OvaFirmware;
  guestOs: OvaGuestOs;
  /** In References / tar order (the order the disk members are written). */
  disks: OvaDisk[];
  nics: OvaNic[];
  bootOrder: OvaBootDevice[];
  /** Timestamps written by the ovirt profile (seconds since the epoch; default 0). */
  createdAt?: number;
  /** vmware: `vssd:VirtualSystemType` (default `vmx-13`, ESXi 6.5 and later). */
  hardwareVersion?: string;
}

export const OVF_NS = 'http://schemas.dmtf.org/ovf/envelope/1';
export const RASD_NS = 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData';
export const VSSD_NS = 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData';
export const VMW_NS = 'http://www.vmware.com/schema/ovf';
export const OVIRT_NS = 'http://www.ovirt.org/ovf';
export const XSI_NS = 'http://www.w3.org/2001/XMLSchema-instance';
export const CIM_NS = 'http://schemas.dmtf.org/wbem/wscim/1/common';

/** `ovf:format` URIs. */
export const VMDK_STREAM_OPTIMIZED_URI = 'http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized';
export const QCOW2_FORMAT_URI = 'http://www.gnome.org/~markmc/qcow-image-format.html';

/** CIM ResourceType codes (DSP0243 / CIM_ResourceAllocationSettingData). */
export const ResourceType = { CPU: 3, MEMORY: 4, IDE: 5, SCSI: 6, NIC: 10, CDROM: 15, DISK: 17, SATA: 20 } as const;

/** The widest number a size can render as (sizes are safe integers). */
export const OVF_SIZE_PLACEHOLDER = Number.MAX_SAFE_INTEGER;

const MiB = 1024 * 1024;
const ZERO_UUID = '00000000-0000-0000-0000-000000000000';

/** Escapes text/attribute content and drops characters XML 1.0 cannot carry. */
export function xmlEscape(value: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = value.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '');
  return clean.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** A stable name-based UUID (SHA-1, version 5 layout) so that repeated exports are identical. */
export function deterministicUuid(seed: string): string {
  const h = createHash('sha1').update('xva2img:').update(seed).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

function memoryMiB(vm: OvaVm): number {
  return Math.max(1, Math.ceil(vm.memoryBytes / MiB));
}

/** Small XML writer: indentation, escaping, self-closing empty elements. */
class Xml {
  private readonly lines: string[] = [];
  private depth = 0;
  open(tag: string, attrs: Record<string, string | number | undefined> = {}): this {
    this.lines.push(`${'  '.repeat(this.depth)}<${tag}${renderAttrs(attrs)}>`);
    this.depth++;
    return this;
  }
  close(tag: string): this {
    this.depth--;
    this.lines.push(`${'  '.repeat(this.depth)}</${tag}>`);
    return this;
  }
  empty(tag: string, attrs: Record<string, string | number | undefined> = {}): this {
    this.lines.push(`${'  '.repeat(this.depth)}<${tag}${renderAttrs(attrs)}/>`);
    return this;
  }
  text(tag: string, value: string | number, attrs: Record<string, string | number | undefined> = {}): this {
    const v = xmlEscape(String(value));
    this.lines.push(`${'  '.repeat(this.depth)}<${tag}${renderAttrs(attrs)}>${v}</${tag}>`);
    return this;
  }
  raw(line: string): this {
    this.lines.push(line);
    return this;
  }
  toString(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

function renderAttrs(attrs: Record<string, string | number | undefined>): string {
  let s = '';
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) s += ` ${k}="${xmlEscape(String(v))}"`;
  return s;
}

interface ControllerSlot {
  kind: 'scsi' | 'ide' | 'sata';
  /** Controller number of its kind (0, 1, …) = rasd:Address. */
  index: number;
  instanceId: number;
}

/** Disks per controller: SCSI 15 (unit 7 is the controller itself), IDE 2, SATA 30. */
const SLOTS: Record<ControllerSlot['kind'], number> = { scsi: 15, ide: 2, sata: 30 };

function vmwareControllerKind(c: OvaController): ControllerSlot['kind'] {
  // VMware and VirtualBox have no virtio disks; LSI Logic SCSI is the portable choice.
  return c === 'virtio' ? 'scsi' : c;
}

/** Assigns every disk a controller and an AddressOnParent, in `unit` order. */
function placeDisks(disks: OvaDisk[], firstInstanceId: number): { controllers: ControllerSlot[]; placement: Map<OvaDisk, { controller: ControllerSlot; address: number }> } {
  const controllers: ControllerSlot[] = [];
  const placement = new Map<OvaDisk, { controller: ControllerSlot; address: number }>();
  const used = new Map<ControllerSlot, number>();
  let nextId = firstInstanceId;
  const ordered = disks.map((d, i) => ({ d, unit: d.unit ?? i })).sort((a, b) => a.unit - b.unit);
  for (const { d } of ordered) {
    const kind = vmwareControllerKind(d.controller);
    let ctl = controllers.find((c) => c.kind === kind && (used.get(c) ?? 0) < SLOTS[kind]);
    if (!ctl) {
      ctl = { kind, index: controllers.filter((c) => c.kind === kind).length, instanceId: nextId++ };
      controllers.push(ctl);
    }
    const n = used.get(ctl) ?? 0;
    used.set(ctl, n + 1);
    // SCSI unit 7 is reserved for the controller.
    const address = kind === 'scsi' && n >= 7 ? n + 1 : n;
    placement.set(d, { controller: ctl, address });
  }
  return { controllers, placement };
}

function osInfo(os: OvaGuestOs): { cim: number; vmware: string; ovirt: number; ovirtName: string; text: string } {
  // CIM_OperatingSystem OsType values; oVirt ids from its osinfo defaults (0 other, 5 other_linux).
  switch (os) {
    case 'linux':
      return { cim: 101, vmware: 'otherLinux64Guest', ovirt: 5, ovirtName: 'other_linux', text: 'Linux (64-bit)' };
    case 'windows':
      return { cim: 1, vmware: 'windows9Server64Guest', ovirt: 0, ovirtName: 'other', text: 'Microsoft Windows (64-bit)' };
    default:
      return { cim: 1, vmware: 'otherGuest64', ovirt: 0, ovirtName: 'other', text: 'Other (64-bit)' };
  }
}

function sizeOf(value: number | undefined, placeholders: boolean): number {
  if (placeholders) return OVF_SIZE_PLACEHOLDER;
  if (value === undefined) throw new RangeError('OVF: a disk size is not known yet');
  return value;
}

/** Units an importer may know, largest first: GiB, MiB, KiB, byte (see `ovfCapacity`). */
const CAPACITY_UNIT_EXPONENTS = [30, 20, 10, 0] as const;

/**
 * `ovf:capacity` and `ovf:capacityAllocationUnits` stating `bytes` exactly, as `byte * 2^N` with
 * the largest N of 30, 20, 10, 0 that divides it: Proxmox only reads the `byte * B^E` form (a
 * plain "byte" loses the size) and CloudStack only knows 2^10, 2^20 and 2^30, reading any other
 * unit as bytes (docs/output-formats.md, "OVF capacities").
 */
export function ovfCapacity(bytes: number): { capacity: number; units: string } {
  const n = CAPACITY_UNIT_EXPONENTS.find((e) => bytes % 2 ** e === 0)!;
  return { capacity: bytes / 2 ** n, units: `byte * 2^${n}` };
}

function networks(vm: OvaVm): string[] {
  return [...new Set(vm.nics.map((n) => n.network))];
}

function buildVmware(vm: OvaVm, placeholders: boolean): string {
  const x = new Xml();
  x.raw('<?xml version="1.0" encoding="UTF-8"?>');
  x.raw('<!-- Generated by xva2img -->');
  x.open('Envelope', { xmlns: OVF_NS, 'xmlns:cim': CIM_NS, 'xmlns:ovf': OVF_NS, 'xmlns:rasd': RASD_NS, 'xmlns:vmw': VMW_NS, 'xmlns:vssd': VSSD_NS, 'xmlns:xsi': XSI_NS });

  x.open('References');
  for (const d of vm.disks) x.empty('File', { 'ovf:href': d.fileName, 'ovf:id': d.fileId, 'ovf:size': sizeOf(d.fileSize, placeholders) });
  x.close('References');

  x.open('DiskSection').text('Info', 'Virtual disk information');
  for (const d of vm.disks) {
    const { capacity, units } = ovfCapacity(d.capacity);
    x.empty('Disk', {
      'ovf:capacity': capacity,
      'ovf:capacityAllocationUnits': units,
      'ovf:diskId': d.id,
      'ovf:fileRef': d.fileId,
      'ovf:format': d.format === 'vmdk' ? VMDK_STREAM_OPTIMIZED_URI : QCOW2_FORMAT_URI,
      'ovf:populatedSize': sizeOf(d.populatedSize, placeholders),
    });
  }
  x.close('DiskSection');

  const nets = networks(vm);
  if (nets.length > 0) {
    x.open('NetworkSection').text('Info', 'The list of logical networks');
    for (const n of nets) x.open('Network', { 'ovf:name': n }).text('Description', `The ${n} network`).close('Network');
    x.close('NetworkSection');
  }

  x.open('VirtualSystem', { 'ovf:id': vm.id }).text('Info', 'A virtual machine').text('Name', vm.name);
  if (vm.description) x.open('AnnotationSection').text('Info', 'A human-readable annotation').text('Annotation', vm.description).close('AnnotationSection');
  const os = osInfo(vm.guestOs);
  x.open('OperatingSystemSection', { 'ovf:id': os.cim, 'vmw:osType': os.vmware }).text('Info', 'The kind of installed guest operating system').text('Description', os.text).close('OperatingSystemSection');

  x.open('VirtualHardwareSection').text('Info', 'Virtual hardware requirements');
  x.open('System')
    .text('vssd:ElementName', 'Virtual Hardware Family')
    .text('vssd:InstanceID', 0)
    .text('vssd:VirtualSystemIdentifier', vm.name)
    .text('vssd:VirtualSystemType', vm.hardwareVersion ?? 'vmx-13')
    .close('System');
  // rasd elements in schema (alphabetical) order: ovftool validates the sequence.
  x.open('Item')
    .text('rasd:AllocationUnits', 'hertz * 10^6')
    .text('rasd:Description', 'Number of Virtual CPUs')
    .text('rasd:ElementName', `${vm.vcpus} virtual CPU(s)`)
    .text('rasd:InstanceID', 1)
    .text('rasd:ResourceType', ResourceType.CPU)
    .text('rasd:VirtualQuantity', vm.vcpus)
    .close('Item');
  const mem = memoryMiB(vm);
  // virt-v2v reads VirtualQuantity as MiB whatever the units say: always use MiB.
  x.open('Item')
    .text('rasd:AllocationUnits', 'byte * 2^20')
    .text('rasd:Description', 'Memory Size')
    .text('rasd:ElementName', `${mem}MB of memory`)
    .text('rasd:InstanceID', 2)
    .text('rasd:ResourceType', ResourceType.MEMORY)
    .text('rasd:VirtualQuantity', mem)
    .close('Item');

  const { controllers, placement } = placeDisks(vm.disks, 3);
  for (const c of controllers) {
    x.open('Item').text('rasd:Address', c.index);
    if (c.kind === 'scsi') {
      x.text('rasd:Description', 'SCSI Controller').text('rasd:ElementName', `SCSI Controller ${c.index}`).text('rasd:InstanceID', c.instanceId).text('rasd:ResourceSubType', 'lsilogic').text('rasd:ResourceType', ResourceType.SCSI);
    } else if (c.kind === 'ide') {
      x.text('rasd:Description', 'IDE Controller').text('rasd:ElementName', `IDE Controller ${c.index}`).text('rasd:InstanceID', c.instanceId).text('rasd:ResourceType', ResourceType.IDE);
    } else {
      x.text('rasd:Description', 'SATA Controller').text('rasd:ElementName', `SATA Controller ${c.index}`).text('rasd:InstanceID', c.instanceId).text('rasd:ResourceSubType', 'vmware.sata.ahci').text('rasd:ResourceType', ResourceType.SATA);
    }
    x.close('Item');
  }
  let nextId = 3 + controllers.length;
  const byUnit = vm.disks.map((d, i) => ({ d, unit: d.unit ?? i })).sort((a, b) => a.unit - b.unit);
  byUnit.forEach(({ d }, i) => {
    const p = placement.get(d)!;
    // The disk's own name and description, as VMware and VirtualBox exports carry them: Xen
    // Orchestra names the imported VDI after ElementName (or Caption) and describes it with
    // Description.
    x.open('Item').text('rasd:AddressOnParent', p.address);
    if (d.description) x.text('rasd:Description', d.description);
    x.text('rasd:ElementName', d.name || `Hard Disk ${i + 1}`)
      .text('rasd:HostResource', `ovf:/disk/${d.id}`)
      .text('rasd:InstanceID', nextId++)
      .text('rasd:Parent', p.controller.instanceId)
      .text('rasd:ResourceType', ResourceType.DISK)
      .close('Item');
  });
  vm.nics.forEach((n, i) => {
    x.open('Item');
    if (n.mac) x.text('rasd:Address', n.mac.toLowerCase());
    x.text('rasd:AutomaticAllocation', 'true')
      .text('rasd:Connection', n.network)
      .text('rasd:Description', `${n.model ?? 'E1000'} ethernet adapter on "${n.network}"`)
      .text('rasd:ElementName', `Network adapter ${i + 1}`)
      .text('rasd:InstanceID', nextId++)
      .text('rasd:ResourceSubType', n.model ?? 'E1000')
      .text('rasd:ResourceType', ResourceType.NIC)
      .close('Item');
  });
  x.empty('vmw:Config', { 'ovf:required': 'false', 'vmw:key': 'firmware', 'vmw:value': vm.firmware === 'uefi' ? 'efi' : 'bios' });
  const bootOrder = vmwareBootOrder(vm.bootOrder);
  if (bootOrder) x.empty('vmw:ExtraConfig', { 'ovf:required': 'false', 'vmw:key': 'bios.bootOrder', 'vmw:value': bootOrder });
  x.close('VirtualHardwareSection');
  x.close('VirtualSystem');
  x.close('Envelope');
  return x.toString();
}

/** `bios.bootOrder` value (VMware vmx key; ignored by importers that do not know it). */
function vmwareBootOrder(order: OvaBootDevice[]): string | undefined {
  const map: Record<OvaBootDevice, string> = { disk: 'hdd', cdrom: 'cdrom', network: 'ethernet' };
  const v = [...new Set(order)].map((d) => map[d]);
  return v.length > 0 ? v.join(',') : undefined;
}

/** oVirt's BootSequence enum (C = disk, D = CD-ROM, N = network). */
const OVIRT_BOOT_SEQUENCE: Record<string, number> = { C: 0, DC: 1, N: 2, CDN: 3, CND: 4, DCN: 5, DNC: 6, NCD: 7, NDC: 8, CD: 9, D: 10, NC: 11 };

function ovirtBootSequence(order: OvaBootDevice[]): number {
  const letters = [...new Set(order)].map((d) => ({ disk: 'C', cdrom: 'D', network: 'N' })[d]).join('');
  if (letters in OVIRT_BOOT_SEQUENCE) return OVIRT_BOOT_SEQUENCE[letters]!;
  // Not an oVirt sequence (e.g. "CN"): the first one that starts the same way ("CND").
  const key = Object.keys(OVIRT_BOOT_SEQUENCE).find((k) => letters.length > 0 && k.startsWith(letters));
  return key ? OVIRT_BOOT_SEQUENCE[key]! : 0;
}

function ovirtDate(seconds: number): string {
  const d = new Date(seconds * 1000);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}/${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

/** oVirt DiskInterface names. */
function ovirtInterface(c: OvaController): string {
  return { scsi: 'VirtIO_SCSI', virtio: 'VirtIO', ide: 'IDE', sata: 'SATA' }[c];
}

/** oVirt VmInterfaceType values: rtl8139 1, e1000 2, pv (virtio) 3. */
function ovirtNicType(model: string | undefined): number {
  const m = (model ?? 'virtio').toLowerCase();
  if (m === 'e1000') return 2;
  if (m === 'rtl8139') return 1;
  return 3;
}

function buildOvirt(vm: OvaVm, placeholders: boolean): string {
  const x = new Xml();
  const date = ovirtDate(vm.createdAt ?? 0);
  const mem = memoryMiB(vm);
  x.raw('<?xml version="1.0" encoding="UTF-8"?>');
  x.open('ovf:Envelope', {
    'xmlns:ovf': OVF_NS,
    'xmlns:rasd': RASD_NS,
    'xmlns:vssd': VSSD_NS,
    'xmlns:xsi': XSI_NS,
    xmlns: OVF_NS,
    'xmlns:ovirt': OVIRT_NS,
    'ovf:version': '4.4.0.0',
  });

  x.open('References');
  for (const d of vm.disks) x.empty('File', { 'ovf:href': d.fileName, 'ovf:id': d.fileId, 'ovf:size': sizeOf(d.fileSize, placeholders) });
  x.close('References');

  x.open('NetworkSection').text('Info', 'List of networks');
  for (const n of networks(vm)) x.empty('Network', { 'ovf:name': n });
  x.close('NetworkSection');

  const bootDisk = vm.disks.find((d) => d.bootable);
  x.open('DiskSection').text('Info', 'List of Virtual Disks');
  for (const d of vm.disks) {
    // oVirt writes whole GiB; the exact capacity keeps that form for whole-GiB disks and is
    // read through the units otherwise (OvfOvaReader multiplies by them).
    const { capacity, units } = ovfCapacity(d.capacity);
    x.empty('Disk', {
      'ovf:diskId': d.id,
      'ovf:capacity': capacity,
      'ovf:capacityAllocationUnits': units,
      'ovf:populatedSize': sizeOf(d.populatedSize, placeholders),
      'ovf:parentRef': '',
      'ovf:fileRef': d.fileId,
      'ovf:format': d.format === 'qcow2' ? QCOW2_FORMAT_URI : VMDK_STREAM_OPTIMIZED_URI,
      'ovf:volume-format': 'COW',
      'ovf:volume-type': 'Sparse',
      'ovf:disk-interface': ovirtInterface(d.controller),
      'ovf:boot': String(d === bootDisk),
      'ovf:pass-discard': 'false',
      'ovf:disk-alias': d.name,
      'ovf:disk-description': d.description ?? '',
      'ovf:wipe-after-delete': 'false',
      'ovf:disk_storage_type': 'IMAGE',
      'ovf:cinder_volume_type': '',
    });
  }
  x.close('DiskSection');

  x.open('VirtualSystem', { 'ovf:id': vm.id });
  x.text('Name', vm.name).text('Description', vm.description);
  x.text('CreationDate', date).text('ExportDate', date);
  x.text('DeleteProtected', 'false').text('IsSmartcardEnabled', 'false');
  x.text('default_boot_sequence', ovirtBootSequence(vm.bootOrder));
  x.text('Generation', 1).text('VmType', 1);
  x.text('MinAllocatedMem', mem).text('IsStateless', 'false').text('IsRunAndPause', 'false').text('AutoStartup', 'false').text('Priority', 1);
  x.text('IsBootMenuEnabled', 'false');
  // BiosType: 1 = i440fx + SeaBIOS, 3 = q35 + OVMF (UEFI) in oVirt 4.4+.
  x.text('BiosType', vm.firmware === 'uefi' ? 3 : 1);
  x.text('MaxMemorySizeMb', mem);
  x.text('TemplateId', ZERO_UUID).text('IsInitilized', 'true');
  const os = osInfo(vm.guestOs);
  x.open('OperatingSystemSection', { 'ovf:id': os.cim, 'ovirt:id': os.ovirt, 'ovf:required': 'false' }).text('Info', 'Guest Operating System').text('Description', os.ovirtName).close('OperatingSystemSection');

  x.open('VirtualHardwareSection').text('Info', `${vm.vcpus} CPU, ${mem} Memory`);
  x.open('System').text('vssd:VirtualSystemType', 'ENGINE 4.4.0.0').close('System');
  x.open('Item')
    .text('rasd:Caption', `${vm.vcpus} virtual cpu`)
    .text('rasd:Description', 'Number of virtual CPU')
    .text('rasd:InstanceID', 1)
    .text('rasd:ResourceType', ResourceType.CPU)
    .text('rasd:num_of_sockets', vm.vcpus)
    .text('rasd:cpu_per_socket', 1)
    .text('rasd:threads_per_cpu', 1)
    .text('rasd:max_num_of_vcpus', vm.vcpus)
    .text('rasd:VirtualQuantity', vm.vcpus)
    .close('Item');
  x.open('Item')
    .text('rasd:Caption', `${mem} MB of memory`)
    .text('rasd:Description', 'Memory Size')
    .text('rasd:InstanceID', 2)
    .text('rasd:ResourceType', ResourceType.MEMORY)
    .text('rasd:AllocationUnits', 'MegaBytes')
    .text('rasd:VirtualQuantity', mem)
    .close('Item');
  // Per-device BootOrder as oVirt stores it (1, 2, …; 0 = not bootable): the boot disk and
  // the first NIC in the VM's boot order. There is no CD-ROM item, so 'cdrom' takes no number.
  const order = vm.bootOrder.length > 0 ? [...new Set(vm.bootOrder)] : (['disk'] as OvaBootDevice[]);
  let nextBoot = 1;
  let diskBoot = 0;
  let nicBoot = 0;
  for (const dev of order) {
    if (dev === 'disk' && bootDisk) diskBoot = nextBoot++;
    if (dev === 'network' && vm.nics.length > 0) nicBoot = nextBoot++;
  }
  const byUnit = vm.disks.map((d, i) => ({ d, unit: d.unit ?? i })).sort((a, b) => a.unit - b.unit);
  for (const { d } of byUnit) {
    x.open('Item')
      .text('rasd:Caption', d.name)
      .text('rasd:InstanceId', d.fileId)
      .text('rasd:ResourceType', ResourceType.DISK)
      .text('rasd:HostResource', `ovf:/disk/${d.id}`)
      .text('rasd:Parent', ZERO_UUID)
      .text('rasd:Template', ZERO_UUID)
      .text('rasd:ApplicationList', '')
      .text('rasd:CreationDate', date)
      .text('rasd:LastModified', date)
      .text('rasd:last_modified_date', date)
      .text('Type', 'disk')
      .text('Device', 'disk')
      .text('rasd:Address', '')
      .text('BootOrder', d === bootDisk ? diskBoot : 0)
      .text('IsPlugged', 'true')
      .text('IsReadOnly', 'false')
      .text('Alias', '')
      .close('Item');
  }
  vm.nics.forEach((n, i) => {
    x.open('Item')
      .text('rasd:Caption', `Ethernet adapter on ${n.network}`)
      .text('rasd:InstanceId', n.id ?? deterministicUuid(`${vm.id}:nic:${i}`))
      .text('rasd:ResourceType', ResourceType.NIC)
      .text('rasd:OtherResourceType', n.network)
      .text('rasd:ResourceSubType', ovirtNicType(n.model))
      .text('rasd:Connection', n.network)
      .text('rasd:Linked', 'true')
      .text('rasd:Name', n.name)
      .text('rasd:ElementName', n.name)
      .text('rasd:MACAddress', n.mac?.toLowerCase() ?? '')
      .text('rasd:speed', 1000)
      .text('Type', 'interface')
      .text('Device', 'bridge')
      .text('rasd:Address', '')
      .text('BootOrder', i === 0 ? nicBoot : 0)
      .text('IsPlugged', 'true')
      .text('IsReadOnly', 'false')
      .text('Alias', '')
      .close('Item');
  });
  x.close('VirtualHardwareSection');
  x.close('VirtualSystem');
  x.close('ovf:Envelope');
  return x.toString();
}

/**
 * Renders the descriptor. Every disk's `fileSize` and `populatedSize` must be set unless
 * `placeholders` is true (then they render as the widest possible number).
 */
export function buildOvf(vm: OvaVm, profile: OvaProfile, options: { placeholders?: boolean } = {}): string {
  validateVm(vm);
  const placeholders = options.placeholders ?? false;
  return profile === 'ovirt' ? buildOvirt(vm, placeholders) : buildVmware(vm, placeholders);
}

/** Bytes the OVF member occupies whatever the disk sizes turn out to be. */
export function ovfReservedBytes(vm: OvaVm, profile: OvaProfile): number {
  return Buffer.byteLength(buildOvf(vm, profile, { placeholders: true }), 'utf8');
}

/** The real descriptor padded with spaces to exactly `reserved` bytes (see the file comment). */
export function buildPaddedOvf(vm: OvaVm, profile: OvaProfile, reserved: number): Buffer {
  const xml = buildOvf(vm, profile);
  const len = Buffer.byteLength(xml, 'utf8');
  if (len > reserved) throw new RangeError(`OVF is ${len} bytes, more than the ${reserved} reserved`);
  const closing = profile === 'ovirt' ? '</ovf:Envelope>' : '</Envelope>';
  const at = xml.lastIndexOf(closing);
  return Buffer.from(`${xml.slice(0, at)}${' '.repeat(reserved - len)}${xml.slice(at)}`, 'utf8');
}

function validateVm(vm: OvaVm): void {
  if (!Number.isInteger(vm.vcpus) || vm.vcpus < 1) throw new RangeError(`OVF: vcpus must be a positive integer, got ${vm.vcpus}`);
  if (!Number.isSafeInteger(vm.memoryBytes) || vm.memoryBytes <= 0) throw new RangeError(`OVF: memory must be positive, got ${vm.memoryBytes}`);
  const names = new Set<string>();
  for (const d of vm.disks) {
    if (names.has(d.fileName)) throw new RangeError(`OVF: duplicate disk file name ${d.fileName}`);
    names.add(d.fileName);
    if (!Number.isSafeInteger(d.capacity) || d.capacity < 0) throw new RangeError(`OVF: bad capacity for ${d.fileName}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Building the model: member names, disks, and the VM from an XVA's ova.xml.

const MAX_BASE_BYTES = 60;

/** A member-name stem: `[A-Za-z0-9._-]` only (hrefs are URIs), at most 60 bytes, never empty. */
export function ovaBaseName(vmName: string): string {
  const s = vmName
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._-]+/, '')
    .replace(/_+$/, '')
    .slice(0, MAX_BASE_BYTES);
  return s || 'vm';
}

export interface OvaDiskSpec {
  /** Label (ovirt: disk alias). */
  name: string;
  description?: string;
  /** Virtual size in bytes of the source disk. */
  virtualSize: number;
  bootable: boolean;
  controller?: OvaController;
  /** ovirt: disk UUID (derived from the VM id and index when absent). */
  uuid?: string;
  /** Controller ordering (default: index). */
  unit?: number;
}

export function ovaDiskFormat(profile: OvaProfile): OvaDiskFormat {
  return profile === 'ovirt' ? 'qcow2' : 'vmdk';
}

/** OvaDisk entries (sizes unknown) for disks in member order. */
export function ovaDisks(profile: OvaProfile, vmId: string, vmName: string, specs: OvaDiskSpec[]): OvaDisk[] {
  const format = ovaDiskFormat(profile);
  const base = ovaBaseName(vmName);
  return specs.map((s, i) => {
    if (profile === 'ovirt') {
      const diskId = s.uuid ?? deterministicUuid(`${vmId}:disk:${i}`);
      const imageId = deterministicUuid(`${diskId}:image`);
      return { id: diskId, fileId: imageId, fileName: imageId, name: s.name, description: s.description, capacity: imageVirtualSize(s.virtualSize), format, bootable: s.bootable, controller: s.controller ?? 'scsi', unit: s.unit };
    }
    return {
      id: `vmdisk${i + 1}`,
      fileId: `file${i + 1}`,
      fileName: `${base}-disk${i + 1}.vmdk`,
      name: s.name,
      description: s.description,
      capacity: imageVirtualSize(s.virtualSize),
      format,
      bootable: s.bootable,
      controller: s.controller ?? 'scsi',
      unit: s.unit,
    };
  });
}

/** Names of the descriptor and manifest members. */
export function ovaMemberNames(vmName: string): { ovf: string; manifest: string } {
  const base = ovaBaseName(vmName);
  return { ovf: `${base}.ovf`, manifest: `${base}.mf` };
}

/** Parses a boot order string such as XenServer's HVM_boot_params.order ("cdn") or "disk,network". */
export function parseBootOrder(order: string): OvaBootDevice[] {
  const out: OvaBootDevice[] = [];
  const words = order.includes(',') ? order.split(',') : [...order];
  for (const raw of words) {
    const w = raw.trim().toLowerCase();
    const dev: OvaBootDevice | undefined = w === 'c' || w === 'disk' || w === 'hdd' ? 'disk' : w === 'd' || w === 'cdrom' || w === 'cd' ? 'cdrom' : w === 'n' || w === 'network' || w === 'net' ? 'network' : undefined;
    if (dev && !out.includes(dev)) out.push(dev);
  }
  return out;
}

export interface OvaVmFromXvaOptions {
  profile: OvaProfile;
  /** Overrides the VM name from ova.xml. */
  name?: string;
  /** Disk controller for every disk (default scsi). */
  controller?: OvaController;
  /** NIC model (vmware default E1000, ovirt default virtio). */
  nicModel?: string;
  createdAt?: number;
}

/** A guess good enough for the OVF's OS section: Windows needs viridian, PV guests are Linux. */
function guessGuestOs(meta: XvaMetadata): OvaGuestOs {
  if (meta.vm.platform['viridian'] === 'true') return 'windows';
  if (!meta.vm.hvm || /^pv/.test(meta.vm.domainType)) return 'linux';
  return 'other';
}

/**
 * The OVA model of an XVA's VM: disks in the order the XVA streams them (which is the order the
 * OVA members are written in a single pass), addressed on their controller by userdevice.
 * Suspend images and CD-ROMs are not exported.
 */
export function ovaVmFromXvaMetadata(meta: XvaMetadata, options: OvaVmFromXvaOptions): OvaVm {
  const name = options.name ?? (meta.vm.name || 'vm');
  const vmId = options.profile === 'ovirt' ? (isUuid(meta.vm.uuid) ? meta.vm.uuid : deterministicUuid(`vm:${name}`)) : ovaBaseName(name);
  const streamIndex = (ref: string): number => {
    const i = meta.streamedRefs.indexOf(ref);
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  const data = meta.disks.filter((d) => !d.isSuspendImage);
  const byDevice = [...data].sort((a, b) => Number(a.userdevice) - Number(b.userdevice));
  const anyBootable = data.some((d) => d.bootable);
  const ordered = [...data].sort((a, b) => streamIndex(a.ref) - streamIndex(b.ref));
  const specs: OvaDiskSpec[] = ordered.map((d) => ({
    name: d.vdi.name || `disk${d.userdevice}`,
    description: d.vdi.description || undefined,
    virtualSize: d.virtualSize,
    bootable: anyBootable ? d.bootable : d === byDevice[0],
    controller: options.controller,
    uuid: isUuid(d.vdi.uuid) ? d.vdi.uuid : undefined,
    unit: byDevice.indexOf(d),
  }));
  const nics: OvaNic[] = [...meta.vifs]
    .sort((a, b) => Number(a.device) - Number(b.device))
    .map((v) => ({ name: `eth${v.device}`, network: v.networkName || v.bridge || 'VM Network', mac: v.mac || undefined, model: options.nicModel }));
  const bootOrder = parseBootOrder(meta.vm.bootOrder);
  return {
    id: vmId,
    name,
    description: meta.vm.description,
    vcpus: Math.max(1, meta.vm.vcpusAtStartup || meta.vm.vcpus || 1),
    memoryBytes: meta.vm.memoryBytes > 0 ? meta.vm.memoryBytes : 1024 * MiB,
    firmware: meta.vm.firmware ?? 'bios',
    guestOs: guessGuestOs(meta),
    disks: ovaDisks(options.profile, vmId, name, specs),
    nics,
    bootOrder: bootOrder.length > 0 ? bootOrder : ['disk'],
    createdAt: options.createdAt,
  };
}

/** Maps XVA disk refs to their index in `vm.disks` (same order as ovaVmFromXvaMetadata). */
export function xvaDiskOrder(meta: XvaMetadata): string[] {
  const streamIndex = (ref: string): number => {
    const i = meta.streamedRefs.indexOf(ref);
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  return meta.disks
    .filter((d) => !d.isSuspendImage)
    .sort((a, b) => streamIndex(a.ref) - streamIndex(b.ref))
    .map((d) => d.ref);
}

function isUuid(s: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);
}
