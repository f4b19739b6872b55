/**
 * Reading OVAs (formats.md §4): a plain tar FILE holding one `.ovf` descriptor, the disk
 * files it references and optionally a `.mf` manifest / `.cert`. The tar is walked header by
 * header (no data read); the OVF is parsed into VM settings; each disk is opened in place as
 * a reader over its member's byte range (random access, so the OVA must be a regular file):
 *
 *   streamOptimized / monolithicSparse VMDK → VmdkStreamReader (src/image/vmdk/stream-reader.ts)
 *   qcow2 (oVirt)                           → Qcow2Reader on the member's slice (no backing file)
 *   raw                                     → a slice reader
 *
 * The format is taken from the member's magic first ("KDMV", "QFI\xfb"), then from the OVF
 * `ovf:format` URI. Refused: several VirtualSystems, compressed (`ovf:compression`) or chunked
 * (`ovf:chunkSize`) files, disks whose file is missing, VHD/other formats, DOCTYPE/ENTITY.
 * Namespace prefixes are ignored (element and attribute local names only), so both VMware's
 * default-namespace style and oVirt's `ovf:` prefixed style parse alike.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { ImageFormatError } from '../errors';
import { openImageFile, QCOW2_MAGIC } from '../image/disk-reader';
import type { DiskReader } from '../io/disk';
import { RawReader } from '../image/raw/reader';
import { Qcow2Reader } from '../image/qcow2/reader';
import { isVmdkMagic, VmdkStreamReader } from '../image/vmdk/stream-reader';
import { decodeTarHeader } from '../tar/header';
import { openTarHeaderWalker, type WalkedEntry } from '../tar/header-walker';
import { ResourceType } from './ovf';

/** Largest OVF descriptor we read. */
const MAX_OVF_BYTES = 16 * 1024 * 1024;
const MiB = 1024 * 1024;

export type OvaInputDiskFormat = 'vmdk' | 'qcow2' | 'raw';

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
   * reads it, docs/output-formats.md), else the file name without extension.
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
  /** In DiskSection order. */
  disks: OvfDiskInfo[];
}

export interface OvaMember {
  name: string;
  size: number;
  dataOffset: number;
}

export interface OvaFileInfo {
  path: string;
  ovfName: string;
  vm: OvfVmInfo;
  members: OvaMember[];
  /** Member of each disk, in `vm.disks` order. */
  diskMembers: OvaMember[];
}

/** A reader of one OVA disk (DiskReader with 'vmdk' as a possible format). */
export type OvaDiskReader = Omit<DiskReader, 'format'> & { readonly format: OvaInputDiskFormat };

function bad(path: string, message: string): ImageFormatError {
  return new ImageFormatError(message, { input: path });
}

// ---------------------------------------------------------------------------------------------
// OVF parsing

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

/** Names a disk after its hardware item when the DiskSection has no oVirt alias for it. */
function nameFromDiskItem(item: XNode, disks: OvfDiskInfo[]): void {
  const id = /^(?:ovf:)?\/disk\/(.+)$/.exec(text(child(item, 'HostResource')))?.[1];
  const disk = disks.find((d) => d.diskId === id);
  if (!disk) return;
  const label = text(child(item, 'Caption')) || text(child(item, 'ElementName'));
  if (label) disk.name = label;
  disk.description ??= text(child(item, 'Description')) || undefined;
}

function positiveInt(s: string): number | undefined {
  if (!/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

const MAC_RE = /^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$/i;

/** Parses an OVF descriptor into VM settings (see the module comment). `path` names it in errors. */
export function parseOvf(xml: string, path = 'OVF'): OvfVmInfo {
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw bad(path, 'OVF: DOCTYPE/ENTITY declarations are not allowed (refusing possible entity expansion)');
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw bad(path, `OVF is not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`);
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@_',
    removeNSPrefix: true,
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: true,
    ignoreDeclaration: true,
    ignorePiTags: true,
    processEntities: true,
  });
  let doc: XNode;
  try {
    doc = parser.parse(xml) as XNode;
  } catch (err) {
    throw bad(path, `OVF is not well-formed XML: ${(err as Error).message}`);
  }
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
  const items = children(hw, 'Item');
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
    disks,
  };
}

// ---------------------------------------------------------------------------------------------
// The archive

/** Walks the OVA's tar headers and parses its OVF. `path` must be a regular file. */
export async function readOvaFile(path: string): Promise<OvaFileInfo> {
  const walker = await openTarHeaderWalker(path, { input: path });
  try {
    const members: OvaMember[] = [];
    let ovfEntry: WalkedEntry | undefined;
    for await (const e of walker.entries()) {
      if (e.type !== 'file') continue;
      if (/\.ovf$/i.test(e.name)) {
        if (ovfEntry) throw bad(path, `OVA holds more than one .ovf descriptor (${ovfEntry.name}, ${e.name})`);
        ovfEntry = e;
      }
      members.push({ name: e.name, size: e.size, dataOffset: e.dataOffset });
    }
    if (!ovfEntry) throw bad(path, 'not an OVA: the tar archive holds no .ovf descriptor');
    if (ovfEntry.size > MAX_OVF_BYTES) throw bad(path, `OVF descriptor ${ovfEntry.name} is too large (${ovfEntry.size} bytes)`);
    const xml = (await walker.readData(ovfEntry)).toString('utf8').replace(/^\uFEFF/, '');
    const vm = parseOvf(xml, `${path}: ${ovfEntry.name}`);
    if (vm.disks.length === 0) throw bad(path, 'the OVF describes no disks');
    const diskMembers = vm.disks.map((d) => {
      const m = members.find((x) => x.name === d.href) ?? members.find((x) => x.name.replace(/^.*\//, '') === d.href);
      if (!m) throw bad(path, `OVF disk ${d.diskId}: file ${d.href} is not in the OVA`);
      return m;
    });
    return { path, ovfName: ovfEntry.name, vm, members, diskMembers };
  } finally {
    await walker.close();
  }
}

/** The disk format of a member: magic first, then the OVF format URI. */
async function memberFormat(ova: string, member: OvaMember, uri: string): Promise<OvaInputDiskFormat> {
  const head = Buffer.alloc(8);
  const { handle: fh } = await openImageFile(ova, `${ova}: ${member.name}`);
  try {
    if (member.size >= 4) await fh.read(head, 0, Math.min(8, member.size), member.dataOffset);
  } finally {
    await fh.close();
  }
  if (member.size >= 4 && isVmdkMagic(head)) return 'vmdk';
  if (member.size >= 4 && head.readUInt32BE(0) === QCOW2_MAGIC) return 'qcow2';
  const u = uri.toLowerCase();
  if (head.toString('latin1', 0, 8) === 'conectix' || u.includes('vhd')) throw bad(ova, `${member.name}: VHD disks in OVAs are not supported`);
  if (u.includes('vmdk') || u.includes('qcow')) throw bad(ova, `${member.name}: the OVF says ${uri}, but the file does not start with that format's magic (a descriptor-only or flat VMDK, or a damaged file)`);
  if (u === '' || u.includes('raw')) return 'raw';
  throw bad(ova, `${member.name}: unsupported disk format ${uri} (streamOptimized VMDK, qcow2 and raw are supported)`);
}

/** Opens disk `index` of an OVA read by readOvaFile. */
export async function openOvaDisk(info: OvaFileInfo, index: number): Promise<OvaDiskReader> {
  const disk = info.vm.disks[index]!;
  const member = info.diskMembers[index]!;
  const label = `${info.path}: ${member.name}`;
  const format = await memberFormat(info.path, member, disk.formatUri);
  if (format === 'vmdk') return VmdkStreamReader.open(info.path, { offset: member.dataOffset, length: member.size, label });
  if (format === 'qcow2') return Qcow2Reader.open(info.path, { offset: member.dataOffset, length: member.size });
  return RawReader.open(info.path, { offset: member.dataOffset, length: member.size, label });
}

/**
 * True when `path` is a regular file whose first tar member is an `.ovf` (OVF 1.0 requires the
 * descriptor first). Never throws for unreadable or non-tar files.
 */
export async function looksLikeOva(path: string): Promise<boolean> {
  let fh: FileHandle | undefined;
  try {
    // stat before open: opening a FIFO would block or disturb its writer.
    if (!(await stat(path)).isFile()) return false;
    fh = await open(path, 'r');
    const block = Buffer.alloc(512);
    const { bytesRead } = await fh.read(block, 0, 512, 0);
    if (bytesRead < 512) return false;
    const h = decodeTarHeader(block);
    return !!h && /\.ovf$/i.test(h.name);
  } catch {
    return false;
  } finally {
    await fh?.close().catch(() => undefined);
  }
}
