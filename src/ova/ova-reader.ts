/**
 * Reading OVAs (docs/output-formats.md §4.9): a plain tar FILE holding one `.ovf` descriptor, the
 * disk files it references and optionally a `.mf` manifest / `.cert`. The tar is walked header by
 * header (no data read); the OVF is parsed into VM settings (ovf/parse.ts); each disk is opened in
 * place as a reader over its member's byte range (random access, so the OVA must be a regular
 * file):
 *
 *   streamOptimized / monolithicSparse VMDK → VmdkStreamReader (src/image/vmdk/stream-reader.ts)
 *   qcow2 (oVirt)                           → Qcow2Reader on the member's slice (no backing file)
 *   raw                                     → a slice reader
 *
 * The format is taken from the member's magic first ("KDMV", "QFI\xfb"), then from the OVF
 * `ovf:format` URI. Refused: disks whose file is not in the archive, VHD/other formats.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import { ImageFormatError } from '../errors';
import { openImageFile } from '../image/disk-reader';
import { QCOW2_MAGIC } from '../image/qcow2/format';
import type { DiskReader, DiskReaderFormat } from '../io/disk';
import { RawReader } from '../image/raw/reader';
import { Qcow2Reader } from '../image/qcow2/reader';
import { isVmdkMagic } from '../image/vmdk/format';
import { VmdkStreamReader } from '../image/vmdk/stream-reader';
import { decodeTarHeader } from '../tar/header';
import { openTarHeaderWalker, type WalkedEntry } from '../tar/header-walker';
import { parseOvf, type OvfVmInfo } from './ovf/parse';

/** Largest OVF descriptor we read. */
const MAX_OVF_BYTES = 16 * 1024 * 1024;

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

function bad(path: string, message: string): ImageFormatError {
  return new ImageFormatError(message, { input: path });
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
async function memberFormat(ova: string, member: OvaMember, uri: string): Promise<DiskReaderFormat> {
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
export async function openOvaDisk(info: OvaFileInfo, index: number): Promise<DiskReader> {
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
