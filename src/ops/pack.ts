/**
 * packXva: disk images (raw, qcow2 with backing chains) or an existing XVA → an XVA that
 * XenServer / XCP-ng import, in one streaming pass, through the one XVA writer
 * (src/xva/writer.ts; layout and rules in docs/xva-format.md §1-6).
 *
 *  - `disks`: each image is opened with openDiskImage and read chunk by chunk in ascending
 *    order; ranges the image does not allocate (qcow2) are never read. The VM record comes
 *    from the options (name, description, vCPUs, memory, firmware, NICs).
 *  - `from`: an XVA (path, "-", URL; plain/gzip/zstd) is read once by readXva while writeXva
 *    writes the new archive; a DiskPipe per disk bridges the two with a small bounded queue.
 *    Chunk checksums are verified on read (policy `onBadChunk`) and recomputed on write. The
 *    source's ova.xml is kept (patched only where needed, see xva/metadata/edit.ts) unless
 *    `rebuildMetadata`. Source refs are kept, so the output's disk order (string order of
 *    refs) is the source's archive order and both sides stream.
 *
 * Output: a file written as `<name>.part`, fsynced and renamed when complete (PartFile), or
 * any Writable (stdout) with backpressure. Compression from `compression`, else from the
 * file name (`.gz`, `.zst`).
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { OutputError, UsageError, XvaError, XvaFormatError } from '../errors';
import { checkChoice, checkInteger } from '../option-checks';
import type { DiskExtent, DiskReader } from '../io/disk';
import { INPUT_IMAGE_FORMATS, type InputImageFormat } from '../image/types';
import { openDiskImage } from '../image/qcow2/reader';
import { imageVirtualSize } from '../image/types';
import { isAllZero, zeros } from '../io/zero';
import { checkInputOptions, openInput } from '../input/open';
import { looksLikeOva, openOvaDisk, readOvaFile, type OvaDiskReader, type OvaFileInfo } from '../ova/ova-reader';
import { COMPRESSIONS, type InputSource, type OpenInputOptions } from '../input/types';
import { PartFile } from '../output/part-file';
import type { FileTarget } from '../output/targets';
import { XVA_TAR_DIALECTS, type XvaTarDialect } from '../tar/header';
import { CHECKSUM_KINDS, compareRefs, type ChecksumKind } from '../xva/format';
import { FIRMWARES, MAX_VCPUS, MIN_MEMORY, type DiskInfo, type Firmware, type XvaMetadata } from '../xva/metadata/model';
import { patchOvaXml } from '../xva/metadata/edit';
import { ovaXmlSpecFromMetadata } from '../xva/metadata/build';
import type { OvaXmlSpec, OvaXmlVifSpec } from '../xva/metadata/spec';
import { BAD_CHUNK_POLICIES, readXva, type BadChunk, type BadChunkPolicy } from '../xva/reader';
import { DiskPipe } from '../xva/repack';
import type { DiskByteSource } from '../xva/disk-sources';
import type { XvaProducerQuirks } from '../xva/producer-quirks';
import type { XvaDiskInput } from '../xva/write-plan';
import { writeXva, type WriteXvaOptions, type XvaCompression, type XvaWriteSummary } from '../xva/writer';

export interface PackDisk {
  /** Image path (raw or qcow2; format probed from the magic unless `format`). */
  path: string;
  format?: InputImageFormat;
  /** VDI name_label; default the file name without its extension. */
  name?: string;
  description?: string;
  /** Default: the disk's position (0, 1, 2, …). */
  userdevice?: number | string;
  /** Default: true for the first disk. */
  bootable?: boolean;
  readOnly?: boolean;
}

export interface PackNic {
  /** Network name_label the import matches first (default "Pool-wide network associated with eth0"). */
  network?: string;
  /** Bridge the import matches second (default: `network` when it looks like a bridge, e.g. xenbr0, else ''). */
  bridge?: string;
  /** Default: a random locally administered unicast MAC (XAPI regenerates MACs on import anyway). */
  mac?: string;
  mtu?: number;
  /** Default: the NIC's position. */
  device?: number | string;
}

export interface PackVm {
  name?: string;
  description?: string;
  vcpus?: number;
  memoryBytes?: number;
  firmware?: Firmware;
  /** UEFI secure boot (needs firmware 'uefi'); off by default. */
  secureBoot?: boolean;
  isTemplate?: boolean;
}

export interface PackOptions extends OpenInputOptions {
  /** Disk images to pack (mutually exclusive with `from`). */
  disks?: Array<string | PackDisk>;
  /**
   * An XVA to repack: path, "-" (stdin), URL, or an opened input; or an OVA (a regular file:
   * its disks are read in place, so stdin and URLs are refused). An OVA is recognised by its
   * `.ova` name or by a tar whose first member is an `.ovf`.
   */
  from?: string | InputSource;
  /** VM settings: for `disks`, the VM record; for `from`, overrides of the source's record (XVA or OVF). */
  vm?: PackVm;
  /** NICs (disks mode, `from` an OVA (replacing the OVF's), or `from` an XVA with rebuildMetadata). */
  nics?: PackNic[];
  /** Output file path, or "-" for `stdout`. */
  output?: string;
  /** Stream to write to when `output` is "-" or absent (e.g. process.stdout). Not ended. */
  stdout?: Writable;
  /** Replace an existing output file. */
  force?: boolean;
  /** Default: from the output name (.gz → gzip, .zst/.zstd → zstd), else none. */
  compression?: XvaCompression;
  compressionLevel?: number;
  /** Default xxh64 (`.xxhash`, XAPI >= 8.1); sha1 (`.checksum`) for older hosts. */
  checksum?: ChecksumKind;
  /** Default 'ustar' (see DEFAULT_TAR_FORMAT). */
  tarFormat?: XvaTarDialect;
  /** `from`: policy for chunks whose checksum fails (default 'fail'). */
  onBadChunk?: BadChunkPolicy;
  /** `from`: build ova.xml from the parsed metadata instead of keeping the source's. */
  rebuildMetadata?: boolean;
  /**
   * Disks mode: when nothing but zeros was read for this long, write a zero-length keep-alive
   * chunk as XAPI does (docs/xva-format.md §4.3) so a live import (`-o - | xe vm-import`) does not
   * time out on a long run of zeros. Default KEEP_ALIVE_SECONDS for an uncompressed stream,
   * off (0) otherwise: a compressor would swallow the few bytes anyway, and files need none.
   */
  keepAliveSeconds?: number;
  signal?: AbortSignal;
  onProgress?(p: { bytesDone: number; bytesTotal: number }): void;
  onWarning?(message: string): void;
}

/**
 * Fixed identities and times for byte-stable output, packXva's second argument in tests. Not
 * part of the public API: src/index.ts does not export it.
 */
export interface PackDeterminism {
  /** UUID generator for new objects. */
  uuidGen?: () => string;
  /** version.date of a new ova.xml. */
  date?: string;
  /** mtime of ova.xml (default now). */
  ovaXmlMtime?: number;
}

/** The options with the determinism knobs merged in, as the steps below see them. */
type PackRun = PackOptions & PackDeterminism;

export interface PackedDisk {
  ref: string;
  name: string;
  userdevice: string;
  bootable: boolean;
  /** virtual_size in ova.xml (rounded up to 512). */
  virtualSize: number;
  /** Source image path, or the source XVA's ref. */
  source: string;
  format: 'raw' | 'qcow2' | 'vmdk' | 'xva';
  chunksWritten: number;
  zeroChunksSkipped: number;
  dataBytes: number;
}

export interface PackSummary {
  /** Output path, or "-". */
  output: string;
  compression: XvaCompression;
  checksum: ChecksumKind;
  tarFormat: XvaTarDialect;
  vm: { name: string; vcpus: number; memoryBytes: number; firmware: string | null };
  disks: PackedDisk[];
  nics: Array<{ device: string; mac: string; network: string; bridge: string }>;
  /** `from` only (an OVA: compression 'none', checksum null, metadata 'rebuilt' from its OVF). */
  source?: { input: string; compression: string; checksum: ChecksumKind | null; metadata: 'kept' | 'patched' | 'rebuilt'; changes: string[] };
  badChunks: BadChunk[];
  warnings: string[];
  tarBytes: number;
  bytesWritten: number;
  seconds: number;
}

/**
 * Default tar dialect for `pack`: POSIX ustar. docs/xva-format.md §2.2 recommends it for files meant
 * for import: XAPI's reader (ocaml-tar HeaderReader) accepts V7 and ustar alike, ustar entries
 * (tar-stream defaults) are what Xen Orchestra streams into XAPI's /import every day, and every
 * other tool (GNU tar, bsdtar, Python tarfile) reads ustar without V7 guesswork. `xapi` writes
 * XAPI's own V7 headers byte for byte for those who want an export look-alike.
 */
export const DEFAULT_TAR_FORMAT: XvaTarDialect = 'ustar';

export const DEFAULT_VCPUS = 1;
export const DEFAULT_MEMORY = 1024 ** 3;
export const DEFAULT_NETWORK = 'Pool-wide network associated with eth0';
/** XAPI's keep-alive interval (5 s, CA-39291). */
export const KEEP_ALIVE_SECONDS = 5;

/** Compression implied by an output file name, or undefined. */
export function compressionFromPath(p: string): XvaCompression | undefined {
  const lower = p.toLowerCase();
  if (lower.endsWith('.gz') || lower.endsWith('.tgz')) return 'gzip';
  if (lower.endsWith('.zst') || lower.endsWith('.zstd')) return 'zstd';
  return undefined;
}

/** A random locally administered, unicast MAC (first octet x2/x6/xA/xE). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

function normalizeMac(mac: string): string {
  const m = mac.trim().toLowerCase().replace(/-/g, ':');
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m)) throw new UsageError(`invalid MAC address "${mac}" (use aa:bb:cc:dd:ee:ff)`);
  return m;
}

/** Export-local refs of packed disks: zero-padded so string order = argument order (as XO does). */
function diskRefs(count: number): string[] {
  const width = Math.max(3, String(Math.max(0, count - 1)).length);
  return Array.from({ length: count }, (_, i) => `Ref:${String(i).padStart(width, '0')}`);
}

/**
 * A DiskReader as the writer's DiskByteSource: reads ascend, so the allocation map is walked
 * once; a chunk the image does not allocate is answered with zeros without reading anything.
 */
export function diskReaderSource(reader: Omit<DiskReader, 'format'>, onData?: () => void): DiskByteSource {
  const extents = reader.allocatedExtents()[Symbol.asyncIterator]();
  let current: DiskExtent | undefined;
  let exhausted = false;
  const advance = async (offset: number): Promise<void> => {
    while (!exhausted && (!current || current.offset + current.length <= offset)) {
      const r = await extents.next();
      if (r.done) {
        exhausted = true;
        current = undefined;
      } else {
        current = r.value;
      }
    }
  };
  return {
    virtualSize: reader.virtualSize,
    async read(offset, length) {
      await advance(offset);
      if (!current || current.offset >= offset + length) return zeros(length);
      const data = await reader.read(offset, length);
      if (onData && !isAllZero(data)) onData();
      return data;
    },
    close: () => reader.close(),
  };
}

/** A Writable over a file target (the PartFile's descriptor). */
function fileWritable(target: FileTarget): Writable {
  return new Writable({
    highWaterMark: 4 * 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      target.write(chunk).then(() => cb(), cb);
    },
  });
}

function validate(options: PackOptions, fromOva = false): void {
  const hasDisks = (options.disks?.length ?? 0) > 0;
  if (hasDisks && options.from !== undefined) throw new UsageError('give either disk images or an archive to repack (from), not both');
  if (!hasDisks && options.from === undefined) throw new UsageError('nothing to pack: give at least one disk image or an archive to repack (from)');
  if (options.output === undefined && !options.stdout) throw new UsageError('no output given (a file, or "-" with a stream)');
  if (options.output === '-' && !options.stdout) throw new UsageError('output "-" needs a stream (options.stdout)');
  checkInteger(options.vm?.vcpus, 'vcpus', 1, MAX_VCPUS);
  checkInteger(options.vm?.memoryBytes, 'memoryBytes', MIN_MEMORY);
  checkChoice(options.vm?.firmware, FIRMWARES, 'firmware');
  checkChoice(options.compression, COMPRESSIONS, 'compression');
  checkChoice(options.checksum, CHECKSUM_KINDS, 'checksum');
  checkChoice(options.tarFormat, XVA_TAR_DIALECTS, 'tarFormat');
  checkChoice(options.onBadChunk, BAD_CHUNK_POLICIES, 'onBadChunk');
  for (const d of options.disks ?? []) if (typeof d !== 'string') checkChoice(d.format, INPUT_IMAGE_FORMATS, `format of disk ${d.path}`);
  checkInputOptions(options);
  if (options.from !== undefined && !options.rebuildMetadata && !fromOva) {
    if (options.nics?.length) throw new UsageError('NICs with an XVA to repack need rebuildMetadata (the source\'s NICs are kept otherwise)');
    if (options.vm?.firmware) throw new UsageError('firmware with an XVA to repack needs rebuildMetadata (the source\'s boot settings are kept otherwise)');
  }
  if (options.vm?.secureBoot && options.vm.firmware !== 'uefi') throw new UsageError('secure boot needs UEFI firmware');
}

/** compressionLevel's range for each compression (gzip as zlib, zstd as the zstd program). */
const LEVELS: Record<Exclude<XvaCompression, 'none'>, { min: number; max: number }> = { gzip: { min: 1, max: 9 }, zstd: { min: 1, max: 19 } };

function checkLevel(level: number | undefined, compression: XvaCompression): void {
  if (level === undefined) return;
  if (compression === 'none') throw new UsageError('a compression level needs a compressed archive (gzip or zstd)');
  checkInteger(level, `${compression} compression level`, LEVELS[compression].min, LEVELS[compression].max);
}

const OVA_NEEDS_FILE = 'reads its disks in place (random access): save the OVA to a file first and pack from its path';

/**
 * The path of an OVA given as `from`, or undefined for an XVA. An OVA on stdin or at a URL is
 * refused: its VMDK/qcow2 disks are read by offset (grain directories, L2 tables).
 */
async function ovaFromPath(from: PackOptions['from']): Promise<string | undefined> {
  if (typeof from !== 'string') return undefined;
  const named = /\.ova$/i.test(from.replace(/[?#].*$/, ''));
  if (from === '-' || /^[a-z][a-z0-9+.-]*:\/\//i.test(from)) {
    if (named) throw new UsageError(`${from}: packing from an OVA ${OVA_NEEDS_FILE}`);
    return undefined;
  }
  if (!named && !(await looksLikeOva(from))) return undefined;
  let st;
  try {
    st = await stat(from);
  } catch {
    return undefined; // openInput reports the missing file as for any other input
  }
  if (st.isDirectory()) return undefined; // refused by openInput, as any directory given as input
  if (!st.isFile()) throw new UsageError(`${from} is not a regular file; packing from an OVA ${OVA_NEEDS_FILE}`);
  return from;
}

function nicSpecs(nics: PackNic[] | undefined): OvaXmlVifSpec[] {
  return (nics ?? []).map((n, i) => {
    const network = n.network?.trim() || DEFAULT_NETWORK;
    const bridge = n.bridge ?? (/^(xenbr|xapi|xenapi)\d+$/.test(network) ? network : network === DEFAULT_NETWORK ? 'xenbr0' : '');
    if (n.mtu !== undefined && (!Number.isSafeInteger(n.mtu) || n.mtu < 68 || n.mtu > 65535)) throw new UsageError(`NIC ${i}: invalid MTU ${n.mtu}`);
    return { device: n.device ?? i, mac: n.mac ? normalizeMac(n.mac) : randomMac(), macAutogenerated: !n.mac, mtu: n.mtu, networkName: network, bridge };
  });
}

interface Output {
  sink: Writable;
  label: string;
  /** Called after a successful write. */
  commit(): Promise<void>;
  abort(): void;
  end: boolean;
}

async function openOutput(options: PackOptions): Promise<Output> {
  if (options.output === undefined || options.output === '-') {
    return { sink: options.stdout!, label: 'standard output', commit: async () => {}, abort: () => {}, end: false };
  }
  const part = await PartFile.create(path.resolve(options.output), !!options.force);
  return {
    sink: fileWritable(part.target),
    label: options.output,
    commit: () => part.commit(),
    abort: () => part.abortSync(),
    end: true,
  };
}

function writerOptions(options: PackRun, out: Output, compression: XvaCompression, totalBytes: number): WriteXvaOptions & XvaProducerQuirks {
  let lastProgress = 0;
  const perDisk = new Map<string, number>();
  const report = options.onProgress;
  return {
    compression,
    compressionLevel: options.compressionLevel,
    checksum: options.checksum ?? 'xxh64',
    tarDialect: options.tarFormat ?? DEFAULT_TAR_FORMAT,
    ovaXmlMtime: options.ovaXmlMtime,
    uuidGen: options.uuidGen,
    end: out.end,
    label: out.label,
    signal: options.signal,
    onProgress: report
      ? (p) => {
          perDisk.set(p.disk, p.bytesDone);
          const now = Date.now();
          if (now - lastProgress < 100 && p.bytesDone < p.bytesTotal) return;
          lastProgress = now;
          let done = 0;
          for (const v of perDisk.values()) done += v;
          report({ bytesDone: done, bytesTotal: totalBytes });
        }
      : undefined,
  };
}

/** Packs disk images or repacks an XVA into a new XVA. See the module comment. */
export async function packXva(packOptions: PackOptions, determinism: PackDeterminism = {}): Promise<PackSummary> {
  const options: PackRun = { ...packOptions, ...determinism };
  const started = Date.now();
  const ovaPath = await ovaFromPath(options.from);
  validate(options, ovaPath !== undefined);
  const warnings: string[] = [];
  const warn = (m: string): void => {
    warnings.push(m);
    options.onWarning?.(m);
  };
  const fromExt = options.output && options.output !== '-' ? compressionFromPath(options.output) : undefined;
  const compression: XvaCompression = options.compression ?? fromExt ?? 'none';
  checkLevel(options.compressionLevel, compression);
  if (options.compression && fromExt && options.compression !== fromExt) {
    warn(`output name ${options.output} suggests ${fromExt}, but ${options.compression === 'none' ? 'no compression' : options.compression} was chosen`);
  } else if (options.compression && options.compression !== 'none' && !fromExt && options.output && options.output !== '-') {
    warn(`output name ${options.output} has no .${options.compression === 'gzip' ? 'gz' : 'zst'} extension, but the file is ${options.compression}-compressed`);
  }

  const common = { compression, checksum: options.checksum ?? 'xxh64', tarFormat: options.tarFormat ?? DEFAULT_TAR_FORMAT, warnings, started };
  if (ovaPath !== undefined) return packFromOva(options, ovaPath, common, warn);
  if (options.from !== undefined) return packFromXva(options, common, warn);
  return packDisks(options, common, warn);
}

interface Common {
  compression: XvaCompression;
  checksum: ChecksumKind;
  tarFormat: XvaTarDialect;
  warnings: string[];
  started: number;
}

/** One disk to write from a reader (disks mode and OVA mode). */
interface ReaderDisk {
  reader: Omit<DiskReader, 'format'> & { readonly format: PackedDisk['format'] };
  /** For messages and the summary. */
  source: string;
  name: string;
  description?: string;
  userdevice: number | string;
  bootable: boolean;
  readOnly?: boolean;
}

async function packDisks(options: PackRun, common: Common, warn: (m: string) => void): Promise<PackSummary> {
  const inputs: PackDisk[] = options.disks!.map((d) => (typeof d === 'string' ? { path: d } : d));
  const readers: DiskReader[] = [];
  try {
    for (const d of inputs) readers.push(await openDiskImage(d.path, d.format));
    const disks: ReaderDisk[] = inputs.map((d, i) => ({
      reader: readers[i]!,
      source: d.path,
      name: d.name ?? path.basename(d.path).replace(/\.(raw|img|qcow2?|bin)$/i, ''),
      description: d.description,
      userdevice: d.userdevice ?? i,
      bootable: d.bootable ?? i === 0,
      readOnly: d.readOnly,
    }));
    const vm = options.vm ?? {};
    return await packReaders(options, common, warn, disks, {
      name: vm.name ?? (disks[0]?.name || 'vm'),
      description: vm.description ?? '',
      vcpus: vm.vcpus ?? DEFAULT_VCPUS,
      memoryBytes: vm.memoryBytes ?? DEFAULT_MEMORY,
      firmware: vm.firmware ?? 'bios',
      secureBoot: vm.secureBoot,
      isTemplate: vm.isTemplate,
    }, nicSpecs(options.nics));
  } finally {
    await Promise.all(readers.map((r) => r.close().catch(() => undefined)));
  }
}

/**
 * `from` an OVA file: the VM record from its OVF (options override name, description, vCPUs,
 * memory, firmware; `nics` replace the OVF's NICs), the disks read in place from their tar
 * members in DiskSection order, then the same writer path as `disks`.
 */
async function packFromOva(options: PackRun, ovaPath: string, common: Common, warn: (m: string) => void): Promise<PackSummary> {
  const info: OvaFileInfo = await readOvaFile(ovaPath);
  const ovf = info.vm;
  const readers: OvaDiskReader[] = [];
  try {
    for (let i = 0; i < ovf.disks.length; i++) readers.push(await openOvaDisk(info, i));
    const anyBoot = ovf.disks.some((d) => d.boot === true);
    const disks: ReaderDisk[] = ovf.disks.map((d, i) => {
      const reader = readers[i]!;
      if (reader.virtualSize > d.capacity) warn(`disk ${i} ${JSON.stringify(d.name)}: the image (${reader.virtualSize} bytes) is larger than the OVF capacity (${d.capacity} bytes); the image size is used`);
      return {
        reader,
        source: `${path.basename(ovaPath)}:${info.diskMembers[i]!.name}`,
        name: d.name,
        description: d.description,
        userdevice: i,
        bootable: anyBoot ? d.boot === true : i === 0,
      };
    });
    const vm = options.vm ?? {};
    const vcpus = vm.vcpus ?? ovf.vcpus ?? DEFAULT_VCPUS;
    const memoryBytes = vm.memoryBytes ?? ovf.memoryBytes ?? DEFAULT_MEMORY;
    if (vm.vcpus === undefined && ovf.vcpus === undefined) warn(`the OVF gives no vCPU count; using ${DEFAULT_VCPUS}`);
    if (vm.memoryBytes === undefined && ovf.memoryBytes === undefined) warn(`the OVF gives no memory size; using ${DEFAULT_MEMORY / 1024 ** 2} MiB`);
    checkInteger(vcpus, 'vcpus (the OVF\'s, unless given)', 1, MAX_VCPUS);
    if (memoryBytes < MIN_MEMORY) throw new UsageError(`the OVF's memory (${memoryBytes} bytes) is below 16 MiB; give the VM's memory (memoryBytes) instead`);
    const nics: PackNic[] = options.nics?.length ? options.nics : ovf.nics.map((n) => ({ network: n.network || undefined, mac: n.mac }));
    const summary = await packReaders(options, common, warn, disks, {
      name: vm.name ?? ovf.name,
      description: vm.description ?? ovf.description,
      vcpus,
      memoryBytes,
      firmware: vm.firmware ?? ovf.firmware ?? 'bios',
      secureBoot: vm.secureBoot,
      isTemplate: vm.isTemplate,
    }, nicSpecs(nics));
    summary.source = { input: ovaPath, compression: 'none', checksum: null, metadata: 'rebuilt', changes: [] };
    return summary;
  } finally {
    await Promise.all(readers.map((r) => r.close().catch(() => undefined)));
  }
}

/** Writes the XVA from opened readers (the caller closes them). */
async function packReaders(options: PackRun, common: Common, warn: (m: string) => void, inputs: ReaderDisk[], vmSpec: OvaXmlSpec['vm'], vifs: OvaXmlVifSpec[]): Promise<PackSummary> {
  const refs = diskRefs(inputs.length);
  const toStream = options.output === undefined || options.output === '-';
  const keepAliveMs = 1000 * (options.keepAliveSeconds ?? (toStream && common.compression === 'none' ? KEEP_ALIVE_SECONDS : 0));
  let lastData = Date.now();
  let keepAlivesWritten = 0;
  const keepAlives = (_ref: string, chunk: number): number => {
    const now = Date.now();
    if (chunk === 0) lastData = now; // a new disk starts with its (always written) chunk 0
    if (keepAliveMs <= 0 || now - lastData < keepAliveMs) return 0;
    lastData = now;
    keepAlivesWritten++;
    return 1;
  };
  let out: Output | undefined;
  try {
    const disks: XvaDiskInput[] = inputs.map((d, i) => {
      const size = d.reader.virtualSize;
      if (imageVirtualSize(size) !== size) {
        warn(`disk ${i} ${JSON.stringify(d.name)} (${d.source}): size ${size} is not a multiple of 512; virtual_size rounded up to ${imageVirtualSize(size)} (zeros added)`);
      }
      if (size === 0) warn(`disk ${i} ${JSON.stringify(d.name)} (${d.source}) is empty (0 bytes)`);
      return {
        ref: refs[i]!,
        name: d.name,
        description: d.description,
        userdevice: d.userdevice,
        bootable: d.bootable,
        readOnly: d.readOnly,
        source: diskReaderSource(d.reader, () => {
          lastData = Date.now();
        }),
      };
    });
    const userdevices = disks.map((d) => String(d.userdevice));
    const dup = userdevices.find((u, i) => userdevices.indexOf(u) !== i);
    if (dup !== undefined) throw new UsageError(`userdevice ${dup} is used by two disks`);
    const spec: OvaXmlSpec & { disks: XvaDiskInput[] } = {
      vm: vmSpec,
      disks,
      vifs,
      version: options.date ? { date: options.date } : undefined,
    } as OvaXmlSpec & { disks: XvaDiskInput[] };
    const totalBytes = disks.reduce((a, d) => a + imageVirtualSize(d.source.virtualSize), 0);

    out = await openOutput(options);
    const summary = await writeXva(spec, out.sink, { ...writerOptions(options, out, common.compression, totalBytes), keepAlives });
    await out.commit();
    if (keepAlivesWritten > 0) warn(`${keepAlivesWritten} zero-length keep-alive chunk(s) written during long runs of zeros`);
    return {
      output: options.output ?? '-',
      compression: common.compression,
      checksum: common.checksum,
      tarFormat: common.tarFormat,
      vm: { name: spec.vm.name, vcpus: spec.vm.vcpus, memoryBytes: spec.vm.memoryBytes, firmware: spec.vm.firmware ?? 'bios' },
      disks: disks.map((d, i) => diskSummary(summary, d.ref, d.name, String(d.userdevice), d.bootable ?? false, inputs[i]!.source, inputs[i]!.reader.format)),
      nics: vifs.map((v) => ({ device: String(v.device), mac: v.mac, network: v.networkName, bridge: v.bridge })),
      badChunks: [],
      warnings: common.warnings,
      tarBytes: summary.tarBytes,
      bytesWritten: summary.bytesWritten,
      seconds: (Date.now() - common.started) / 1000,
    };
  } catch (err) {
    out?.abort();
    throw err;
  }
}

function diskSummary(summary: XvaWriteSummary, ref: string, name: string, userdevice: string, bootable: boolean, source: string, format: PackedDisk['format']): PackedDisk {
  const s = summary.disks.find((x) => x.ref === ref);
  return {
    ref,
    name,
    userdevice,
    bootable,
    virtualSize: s?.virtualSize ?? 0,
    source,
    format,
    chunksWritten: s?.chunksWritten ?? 0,
    zeroChunksSkipped: s?.zeroChunksSkipped ?? 0,
    dataBytes: s?.dataBytes ?? 0,
  };
}

/** Sentinel the pipes fail with when the writer failed (its own error is rethrown). */
class WriterFailed extends Error {
  constructor() {
    super('the XVA writer stopped');
  }
}

async function packFromXva(options: PackRun, common: Common, warn: (m: string) => void): Promise<PackSummary> {
  const opened = typeof options.from === 'string' ? await openInput(options.from, options) : options.from!;
  const source = opened;
  const pipes = new Map<string, DiskPipe>();
  let ordered: DiskPipe[] = [];
  let out: Output | undefined;
  let writeP: Promise<XvaWriteSummary> | undefined;
  let writeError: unknown;
  let meta: XvaMetadata | undefined;
  let metadataMode: 'kept' | 'patched' | 'rebuilt' = 'kept';
  let changes: string[] = [];
  let packed: DiskInfo[] = [];
  const failAll = (err: unknown): void => {
    for (const p of pipes.values()) p.fail(err);
  };

  try {
    // Refuse an existing output before reading anything.
    out = await openOutput(options);
    const read = await readXva(
      source,
      {
        onMetadata: async (m, sourceOvaXml) => {
          meta = m;
          // Keep the suspend image with the kept ova.xml (its VM record points at it); a rebuilt
          // record describes a halted VM without one.
          packed = m.disks.filter((d) => !(options.rebuildMetadata && d.isSuspendImage));
          for (const d of packed) pipes.set(d.ref, new DiskPipe(d.ref, d.virtualSize));
          ordered = [...pipes.values()].sort((a, b) => compareRefs(a.ref, b.ref));
          for (const d of packed) {
            if (imageVirtualSize(d.virtualSize) !== d.virtualSize) warn(`disk ${d.userdevice} ${JSON.stringify(d.vdi.name)} (${d.ref}): virtual size ${d.virtualSize} is not a multiple of 512; rounded up to ${imageVirtualSize(d.virtualSize)}`);
          }
          const vm = options.vm ?? {};
          let ovaXml: string | undefined;
          let spec: OvaXmlSpec;
          const sourceXml = options.rebuildMetadata ? undefined : sourceOvaXml;
          if (sourceXml !== undefined) {
            const patched = patchOvaXml(sourceXml, {
              virtualSizes: new Map(packed.map((d) => [d.ref, imageVirtualSize(d.virtualSize)])),
              vmRef: m.vm.ref,
              name: vm.name,
              description: vm.description,
              vcpus: vm.vcpus,
              memoryBytes: vm.memoryBytes,
            });
            ovaXml = patched.xml;
            metadataMode = patched.changed ? 'patched' : 'kept';
            changes = patched.changes;
            spec = { vm: { name: '', vcpus: 1, memoryBytes: 0 }, disks: [] };
          } else {
            metadataMode = 'rebuilt';
            spec = ovaXmlSpecFromMetadata(m);
            spec.disks = spec.disks.filter((d) => pipes.has(d.ref));
            spec.vm = {
              ...spec.vm,
              ...(vm.name !== undefined ? { name: vm.name } : {}),
              ...(vm.description !== undefined ? { description: vm.description } : {}),
              ...(vm.vcpus !== undefined ? { vcpus: vm.vcpus, vcpusAtStartup: vm.vcpus } : {}),
              ...(vm.memoryBytes !== undefined ? { memoryBytes: vm.memoryBytes } : {}),
              ...(vm.firmware !== undefined ? { firmware: vm.firmware } : {}),
              ...(vm.secureBoot !== undefined ? { secureBoot: vm.secureBoot } : {}),
              ...(vm.isTemplate !== undefined ? { isTemplate: vm.isTemplate } : {}),
            };
            if (options.nics?.length) spec.vifs = nicSpecs(options.nics);
            if (options.date) spec.version = { date: options.date };
            if (m.disks.some((d) => d.isSuspendImage)) warn('the source VM is suspended; its suspend image is dropped and the VM is packed halted');
          }
          const byRef = new Map(spec.disks.map((d) => [d.ref, d]));
          const disks: XvaDiskInput[] = packed.map((d) => {
            const base = byRef.get(d.ref);
            return {
              ref: d.ref,
              name: base?.name ?? d.vdi.name,
              description: base?.description,
              userdevice: base?.userdevice ?? d.userdevice,
              bootable: base?.bootable ?? d.bootable,
              readOnly: base?.readOnly,
              uuid: base?.uuid,
              source: pipes.get(d.ref)!,
            };
          });
          const totalBytes = packed.reduce((a, d) => a + imageVirtualSize(d.virtualSize), 0);
          const wopts = writerOptions(options, out!, common.compression, totalBytes);
          if (ovaXml !== undefined) wopts.ovaXml = ovaXml;
          writeP = writeXva({ ...spec, disks }, out!.sink, wopts);
          writeP.catch((err: unknown) => {
            writeError = err;
            failAll(new WriterFailed());
          });
        },
        openDisk: (disk) => {
          const pipe = pipes.get(disk.ref);
          if (!pipe) return undefined;
          // The writer takes disks in string order of refs; a source stored in another order
          // would need the whole earlier disk buffered. Refuse instead of deadlocking.
          for (const p of ordered) {
            if (p === pipe) break;
            if (p.virtualSize > 0 && !p.isFinished) {
              throw new XvaFormatError(
                'XVA_CHUNK_ORDER',
                `the source stores disk ${disk.ref} before ${p.ref}, which is not XAPI's order (string order of refs); pack --from cannot reorder in one pass (convert the disks and pack them with --disk)`,
                { disk: disk.ref },
              );
            }
          }
          return pipe;
        },
        onWarning: warn,
      },
      { onBadChunk: options.onBadChunk, signal: options.signal },
    );
    if (!writeP) throw new XvaFormatError('XVA_NO_OVA_XML', 'the source has no ova.xml');
    for (const p of pipes.values()) {
      if (!p.isFinished) throw new XvaFormatError('XVA_MISSING_DISK', `disk ${p.ref} has no data in the source`, { disk: p.ref });
    }
    const summary = await writeP;
    await out!.commit();
    const m = meta!;
    return {
      output: options.output ?? '-',
      compression: common.compression,
      checksum: common.checksum,
      tarFormat: common.tarFormat,
      vm: {
        name: options.vm?.name ?? m.vm.name,
        vcpus: options.vm?.vcpus ?? m.vm.vcpus,
        memoryBytes: options.vm?.memoryBytes ?? m.vm.memoryBytes,
        firmware: (options.rebuildMetadata ? options.vm?.firmware : undefined) ?? m.vm.firmware ?? null,
      },
      disks: packed.map((d) => diskSummary(summary, d.ref, d.vdi.name, d.userdevice, d.bootable, d.ref, 'xva')),
      nics: m.vifs.map((v) => ({ device: v.device, mac: v.mac, network: v.networkName, bridge: v.bridge })),
      source: { input: source.name, compression: source.compression, checksum: read.checksum ?? null, metadata: metadataMode, changes },
      badChunks: read.badChunks,
      warnings: common.warnings,
      tarBytes: summary.tarBytes,
      bytesWritten: summary.bytesWritten,
      seconds: (Date.now() - common.started) / 1000,
    };
  } catch (err) {
    failAll(err);
    if (writeP) await writeP.catch(() => undefined);
    out?.abort();
    // The writer's own error explains a failure that surfaced in the reader as WriterFailed.
    const cause = writeError !== undefined && (err instanceof WriterFailed || !(err instanceof XvaError) || err instanceof OutputError) ? writeError : err;
    if (cause instanceof XvaFormatError && cause.code === 'XVA_NO_OVA_XML' && /\.ovf"/.test(cause.message)) {
      throw new UsageError(`${source.name} is an OVA; packing from an OVA ${OVA_NEEDS_FILE}`);
    }
    throw cause;
  } finally {
    await source.close();
  }
}
