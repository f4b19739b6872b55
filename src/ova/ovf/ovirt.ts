/**
 * The 'ovirt' OVF dialect (docs/output-formats.md §4.4): what oVirt's OvfOvaWriter produces —
 * qcow2 disks named by image UUID, the `ovirt:` namespace, `ovf:disk-interface`/`ovf:boot` on each
 * Disk, per-device `BootOrder`, `BiosType`.
 */
import {
  deterministicUuid,
  disksInUnitOrder,
  guestOsIds,
  memoryMiB,
  networkNames,
  ovfCapacity,
  OVF_NS,
  OVIRT_NS,
  QCOW2_FORMAT_URI,
  RASD_NS,
  ResourceType,
  statedSize,
  VMDK_STREAM_OPTIMIZED_URI,
  VSSD_NS,
  XSI_NS,
  type OvaBootDevice,
  type OvaController,
  type OvaVm,
} from './model';
import { Xml } from './xml-writer';

const ZERO_UUID = '00000000-0000-0000-0000-000000000000';

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

/** The descriptor in the ovirt dialect (sizes as placeholders when `placeholders`). */
export function buildOvirtOvf(vm: OvaVm, placeholders: boolean): string {
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

  // References in member order: an OVA's files must follow it (DSP0243; VirtualBox reads the
  // tar as a stream). DiskSection and the hardware items go in device order.
  x.open('References');
  for (const d of vm.disks) x.empty('File', { 'ovf:href': d.fileName, 'ovf:id': d.fileId, 'ovf:size': statedSize(d.fileSize, placeholders) });
  x.close('References');

  x.open('NetworkSection').text('Info', 'List of networks');
  for (const n of networkNames(vm)) x.empty('Network', { 'ovf:name': n });
  x.close('NetworkSection');

  const bootDisk = vm.disks.find((d) => d.bootable);
  x.open('DiskSection').text('Info', 'List of Virtual Disks');
  for (const d of disksInUnitOrder(vm.disks)) {
    // oVirt writes whole GiB; the exact capacity keeps that form for whole-GiB disks and is
    // read through the units otherwise (OvfOvaReader multiplies by them).
    const { capacity, units } = ovfCapacity(d.capacity);
    x.empty('Disk', {
      'ovf:diskId': d.id,
      'ovf:capacity': capacity,
      'ovf:capacityAllocationUnits': units,
      'ovf:populatedSize': statedSize(d.populatedSize, placeholders),
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
  const os = guestOsIds(vm.guestOs);
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
  for (const d of disksInUnitOrder(vm.disks)) {
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
