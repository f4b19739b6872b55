/**
 * Parsing an OVF descriptor into VM settings (docs/output-formats.md §4.9): name, description,
 * CPUs, memory, firmware, NICs and the disks with their files, capacities and labels, in device
 * order (placed by the hardware section's controllers and units, disk-order.ts). Refused:
 * several VirtualSystems, compressed (`ovf:compression`) or chunked (`ovf:chunkSize`) files, disks
 * without a file or whose file References does not list, DOCTYPE/ENTITY declarations. Namespace
 * prefixes are ignored (element and attribute local names only), so both VMware's
 * default-namespace style and oVirt's `ovf:` prefixed style parse alike.
 */
import { parseUntrustedXml } from '../../xva/metadata/xml';
import { ImageFormatError } from '../../errors';
import { disksInDeviceOrder, type OvfHardwareItem } from './disk-order';
import { ResourceType } from './model';

const MiB = 1024 * 1024;

export interface OvfDiskInfo {
  diskId: string;
  fileRef: string;
  /** References/File href = member name. */
  href: string;
  /** Capacity in bytes as the OVF states it (oVirt rounds up to GiB). */
  capacity: number;
  /** `ovf:format` URI ('' when absent). */
  formatUri: string;
  /**
   * Label: oVirt's disk-alias, else the disk item's Caption or ElementName (as Xen Orchestra
   * reads it, docs/output-formats.md §4.7), else the file name without extension.
   */
  name: string;
  /** oVirt's disk-description, else the disk item's Description. */
  description?: string;
  /** oVirt `ovf:boot`, when present. */
  boot?: boolean;
}

export interface OvfNicInfo {
  network: string;
  mac?: string;
}

export interface OvfVmInfo {
  name: string;
  description: string;
  vcpus?: number;
  memoryBytes?: number;
  firmware?: 'bios' | 'uefi';
  nics: OvfNicInfo[];
  /**
   * In device order (userdevice 0 first): by controller and unit in the VirtualHardwareSection,
   * else in DiskSection order (disk-order.ts).
   */
  disks: OvfDiskInfo[];
}

function bad(path: string, message: string): ImageFormatError {
  return new ImageFormatError(message, { input: path });
}

type XNode = Record<string, unknown>;

function asArray(v: unknown): unknown[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

function child(node: unknown, name: string): XNode | undefined {
  const v = asArray((node as XNode | undefined)?.[name])[0];
  return v !== undefined && typeof v === 'object' ? (v as XNode) : v !== undefined ? { '#text': v } : undefined;
}

function children(node: unknown, name: string): XNode[] {
  return asArray((node as XNode | undefined)?.[name]).map((v) => (typeof v === 'object' && v !== null ? (v as XNode) : { '#text': v }));
}

function text(node: unknown): string {
  if (node === undefined || node === null) return '';
  if (typeof node !== 'object') return String(node).trim();
  const t = (node as XNode)['#text'];
  return t === undefined ? '' : String(t).trim();
}

function attr(node: XNode | undefined, name: string): string | undefined {
  const v = node?.[`@_${name}`];
  return v === undefined ? undefined : String(v);
}

/**
 * Multiplier of a CIM programmatic unit ("byte", "byte * 2^30", "byte * 1024^2", "KiloBytes",
 * "MegaBytes", "GigaBytes"); `fallback` when absent; undefined when not understood.
 */
export function unitMultiplier(units: string | undefined, fallback: number): number | undefined {
  const u = (units ?? '').trim();
  if (u === '') return fallback;
  const m = /^byte\s*(?:\*\s*(\d+)\s*\^\s*(\d+))?$/i.exec(u);
  if (m) return m[1] === undefined ? 1 : Number(m[1]) ** Number(m[2]);
  const named: Record<string, number> = { bytes: 1, kilobytes: 1024, megabytes: MiB, gigabytes: 1024 * MiB, terabytes: 1024 ** 4, kb: 1024, mb: MiB, gb: 1024 * MiB };
  return named[u.toLowerCase()];
}

/** The DiskSection diskId a disk item's HostResource names (`ovf:/disk/<id>`). */
function hostDiskId(item: XNode): string | undefined {
  return /^(?:ovf:)?\/disk\/(.+)$/.exec(text(child(item, 'HostResource')))?.[1];
}

/** Names a disk after its hardware item when the DiskSection has no oVirt alias for it. */
function nameFromDiskItem(item: XNode, disks: OvfDiskInfo[]): void {
  const id = hostDiskId(item);
  const disk = disks.find((d) => d.diskId === id);
  if (!disk) return;
  const label = text(child(item, 'Caption')) || text(child(item, 'ElementName'));
  if (label) disk.name = label;
  disk.description ??= text(child(item, 'Description')) || undefined;
}

function nonNegativeInt(s: string): number | undefined {
  return /^\d+$/.test(s) && Number.isSafeInteger(Number(s)) ? Number(s) : undefined;
}

/** What disk placement needs from an item (disk-order.ts). oVirt spells it InstanceId. */
function hardwareItem(item: XNode): OvfHardwareItem {
  return {
    instanceId: text(child(item, 'InstanceID')) || text(child(item, 'InstanceId')),
    resourceType: Number(text(child(item, 'ResourceType'))),
    subType: text(child(item, 'ResourceSubType')),
    parent: text(child(item, 'Parent')) || undefined,
    address: nonNegativeInt(text(child(item, 'Address'))),
    addressOnParent: nonNegativeInt(text(child(item, 'AddressOnParent'))),
    diskId: hostDiskId(item),
  };
}

function positiveInt(s: string): number | undefined {
  if (!/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

const MAC_RE = /^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$/i;

/** Parses an OVF descriptor into VM settings (see the file comment). `path` names it in errors. */
export function parseOvf(xml: string, path = 'OVF'): OvfVmInfo {
  const doc = parseUntrustedXml(xml, { ignoreAttributes: false, attributeNamePrefix: '@_', removeNSPrefix: true, trimValues: true }, (why, detail) =>
    bad(path, why === 'declarations' ? 'OVF: DOCTYPE/ENTITY declarations are not allowed (refusing possible entity expansion)' : `OVF is not well-formed XML: ${detail}`),
  ) as XNode;
  const env = child(doc, 'Envelope');
  if (!env) throw bad(path, 'OVF has no Envelope element');
  if (child(env, 'VirtualSystemCollection')) throw bad(path, 'OVF describes a VirtualSystemCollection (several VMs); only single-VM OVAs are supported');
  const systems = children(env, 'VirtualSystem');
  if (systems.length !== 1) throw bad(path, `OVF has ${systems.length} VirtualSystem elements; exactly one is supported`);
  const vs = systems[0]!;

  // References: file id -> href.
  const files = new Map<string, string>();
  for (const f of children(child(env, 'References'), 'File')) {
    const id = attr(f, 'id');
    const href = attr(f, 'href');
    if (!id || !href) continue;
    if (attr(f, 'compression') && attr(f, 'compression') !== 'identity') throw bad(path, `OVF file ${href} is ${attr(f, 'compression')}-compressed; compressed OVF files are not supported`);
    if (attr(f, 'chunkSize')) throw bad(path, `OVF file ${href} is split into chunks; chunked OVF files are not supported`);
    files.set(id, href);
  }

  const disks: OvfDiskInfo[] = [];
  /** Disks named by oVirt's disk-alias, which their hardware items do not rename. */
  const aliased = new Set<string>();
  for (const d of children(child(env, 'DiskSection') ?? child(env, 'VirtualDiskSection'), 'Disk')) {
    const diskId = attr(d, 'diskId') ?? `disk${disks.length + 1}`;
    const fileRef = attr(d, 'fileRef');
    if (!fileRef) throw bad(path, `OVF disk ${diskId} has no fileRef (empty disks without a file are not supported)`);
    const href = files.get(fileRef);
    if (!href) throw bad(path, `OVF disk ${diskId} refers to file "${fileRef}", which References does not list`);
    const capText = attr(d, 'capacity') ?? '';
    const mult = unitMultiplier(attr(d, 'capacityAllocationUnits'), 1);
    const cap = Number(capText);
    if (mult === undefined || !/^\d+$/.test(capText) || !Number.isSafeInteger(cap * mult)) {
      throw bad(path, `OVF disk ${diskId}: cannot read capacity "${capText}" ${attr(d, 'capacityAllocationUnits') ?? ''}`.trim());
    }
    const alias = attr(d, 'disk-alias');
    if (alias) aliased.add(diskId);
    const boot = attr(d, 'boot');
    disks.push({
      diskId,
      fileRef,
      href,
      capacity: cap * mult,
      formatUri: attr(d, 'format') ?? '',
      name: alias || href.replace(/^.*\//, '').replace(/\.(vmdk|qcow2?|raw|img)$/i, ''),
      description: attr(d, 'disk-description') || undefined,
      boot: boot === undefined ? undefined : boot === 'true',
    });
  }

  const hw = children(vs, 'VirtualHardwareSection')[0];
  // OVF 2.0 (VirtualBox's "OVF 2.0" export) puts disks in StorageItem elements.
  const items = [...children(hw, 'Item'), ...children(hw, 'StorageItem')];
  let vcpus: number | undefined;
  let memoryBytes: number | undefined;
  const nics: OvfNicInfo[] = [];
  for (const it of items) {
    const type = Number(text(child(it, 'ResourceType')));
    if (type === ResourceType.CPU) {
      vcpus = positiveInt(text(child(it, 'VirtualQuantity')));
    } else if (type === ResourceType.MEMORY) {
      const q = positiveInt(text(child(it, 'VirtualQuantity')));
      const mult = unitMultiplier(text(child(it, 'AllocationUnits')), MiB);
      if (q !== undefined && mult !== undefined && Number.isSafeInteger(q * mult)) memoryBytes = q * mult;
    } else if (type === ResourceType.DISK) {
      nameFromDiskItem(it, disks.filter((d) => !aliased.has(d.diskId)));
    } else if (type === ResourceType.NIC) {
      const network = text(child(it, 'Connection'));
      const macText = [text(child(it, 'MACAddress')), text(child(it, 'Address'))].find((m) => MAC_RE.test(m));
      nics.push({ network, mac: macText?.toLowerCase().replace(/-/g, ':') });
    }
  }

  let firmware: 'bios' | 'uefi' | undefined;
  for (const c of [...children(hw, 'Config'), ...children(hw, 'ExtraConfig')]) {
    if (attr(c, 'key') === 'firmware') firmware = /^efi$/i.test(attr(c, 'value') ?? '') ? 'uefi' : 'bios';
  }
  const biosType = text(child(vs, 'BiosType'));
  // oVirt BiosType: 1 i440fx+SeaBIOS, 2 q35+SeaBIOS, 3 q35+OVMF, 4 q35+OVMF secure boot.
  if (firmware === undefined && /^\d+$/.test(biosType)) firmware = biosType === '3' || biosType === '4' ? 'uefi' : 'bios';

  const annotation = text(child(child(vs, 'AnnotationSection'), 'Annotation'));
  const name = text(child(vs, 'Name')) || attr(vs, 'id') || 'vm';
  return {
    name,
    description: annotation || text(child(vs, 'Description')),
    vcpus,
    memoryBytes,
    firmware,
    nics,
    disks: disksInDeviceOrder(disks, items.map(hardwareItem)),
  };
}
