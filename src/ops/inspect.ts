/**
 * inspectXva: what an XVA holds, without converting it (`xva2img info`).
 *
 * Without `chunks` only ova.xml (the first entry) is read, plus — cheaply — the name of the
 * first chunk's checksum entry, which tells the checksum kind (`.xxhash` / `.checksum`).
 *
 * With `chunks` every chunk header is walked by `readXva` with `skipData` to count, per disk, the
 * data entries, keep-alives and allocated bytes (bytes stored in data entries). On a plain
 * regular file the reader walks the headers with positional reads and jumps over the data
 * (src/tar/header-walker.ts), so a multi-GiB archive takes milliseconds; compressed or streamed
 * input is decompressed but never hashed. It is the same reader code either way, so both give
 * the same numbers under the same structure rules.
 */
import { XvaFormatError } from '../errors';
import type { Compression, InputSource, OpenInputOptions } from '../input/types';
import { openTarHeaderWalker, walkerTarReader, type TarHeaderWalker } from '../tar/header-walker';
import { blockTarReader, inputBlocks } from '../tar/block-reader';
import type { TarReader } from '../tar/entries';
import { kindFromSuffix, OVA_XML_ENTRY, parseChunkName, type ChecksumKind } from '../xva/format';
import type { XvaMetadata } from '../xva/metadata/model';
import { MAX_OVA_XML_BYTES, parseOvaXml } from '../xva/metadata/parse';
import { MAX_CHUNK_BYTES, readXva, type DiskReadStats, type XvaProgress } from '../xva/reader';
import { withXvaInput } from './with-xva-input';

export interface InspectOptions extends OpenInputOptions {
  /** Walk every chunk header to count per-disk chunks and allocated bytes. */
  chunks?: boolean;
  signal?: AbortSignal;
  onProgress?(progress: XvaProgress): void;
  onWarning?(message: string): void;
}

/** Per-disk numbers counted from the chunk headers (`chunks` option). */
export interface DiskChunkStats {
  /** Data entries, keep-alives included. */
  chunks: number;
  /** Zero-length keep-alive entries (docs/xva-format.md §4.3). */
  keepAlives: number;
  /** Bytes stored in the disk's data entries (what the export actually carries). */
  allocatedBytes: number;
  checksum: ChecksumKind | null;
}

export interface InfoDisk {
  ref: string;
  userdevice: string;
  name: string;
  description: string;
  uuid: string;
  virtualSize: number;
  bootable: boolean;
  /** VBD type as written (Disk); 'suspend' for a suspend image. */
  type: string;
  /** VDI type (user, system, suspend, …). */
  vdiType: string;
  mode: string;
  device: string;
  readOnly: boolean;
  srName: string;
  isSuspendImage: boolean;
  /** Only with `chunks`. */
  chunkStats?: DiskChunkStats;
}

export interface XvaInfo {
  input: string;
  compression: Compression;
  codec: string;
  /** Size of the raw (possibly compressed) input when known. */
  rawSize: number | null;
  producer: {
    brand: string;
    version: string;
    build: string;
    hostname: string;
    date: string;
    xapiMajor: number;
    xapiMinor: number;
  };
  exportVersion: number;
  vm: {
    name: string;
    description: string;
    uuid: string;
    vcpus: number;
    vcpusAtStartup: number;
    memoryBytes: number;
    hvm: boolean;
    firmware: 'bios' | 'uefi' | null;
    domainType: string;
    bootOrder: string;
    isTemplate: boolean;
    isSnapshot: boolean;
    powerState: string;
  };
  disks: InfoDisk[];
  cdroms: XvaMetadata['cdroms'];
  vifs: XvaMetadata['vifs'];
  /** Checksum kind of the chunks; null when unknown (no chunks, or the peek found none). */
  checksum: ChecksumKind | null;
  /** How the chunk headers were counted: 'seek' (plain file), 'stream', or null without `chunks`. */
  chunkScan: 'seek' | 'stream' | null;
  /** Bytes of tar stream covered (only with `chunks`). */
  tarBytes: number | null;
  warnings: string[];
  seconds: number;
}

/** Builds the info object from parsed metadata (no chunk stats yet). */
function infoFrom(source: InputSource, meta: XvaMetadata): XvaInfo {
  const vm = meta.vm;
  const v = meta.version;
  return {
    input: source.name,
    compression: source.compression,
    codec: source.codec,
    rawSize: source.rawSize ?? null,
    producer: {
      brand: v.productBrand,
      version: v.productVersion,
      build: v.buildNumber,
      hostname: v.hostname,
      date: v.date,
      xapiMajor: v.xapiMajor,
      xapiMinor: v.xapiMinor,
    },
    exportVersion: v.exportVsn,
    vm: {
      name: vm.name,
      description: vm.description,
      uuid: vm.uuid,
      vcpus: vm.vcpus,
      vcpusAtStartup: vm.vcpusAtStartup,
      memoryBytes: vm.memoryBytes,
      hvm: vm.hvm,
      firmware: vm.firmware ?? null,
      domainType: vm.domainType,
      bootOrder: vm.bootOrder,
      isTemplate: vm.isTemplate,
      isSnapshot: vm.isSnapshot,
      powerState: vm.powerState,
    },
    disks: meta.disks.map((d) => ({
      ref: d.ref,
      userdevice: d.userdevice,
      name: d.vdi.name,
      description: d.vdi.description,
      uuid: d.vdi.uuid,
      virtualSize: d.virtualSize,
      bootable: d.bootable,
      type: d.isSuspendImage ? 'suspend' : (d.vbd?.type ?? 'Disk'),
      vdiType: d.vdi.type,
      mode: d.vbd?.mode ?? '',
      device: d.vbd?.device ?? '',
      readOnly: d.vdi.readOnly,
      srName: d.vdi.srName,
      isSuspendImage: d.isSuspendImage,
    })),
    cdroms: meta.cdroms,
    vifs: meta.vifs,
    checksum: null,
    chunkScan: null,
    tarBytes: null,
    warnings: [],
    seconds: 0,
  };
}

function fmtBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(2)} MiB`;
  return `${n} bytes`;
}

function checkOvaXmlEntry(e: { name: string; size: number; headerOffset: number } | undefined): void {
  if (!e) throw new XvaFormatError('XVA_NO_OVA_XML', 'empty archive: no ova.xml', { offset: 0 });
  if (e.name !== OVA_XML_ENTRY) {
    throw new XvaFormatError(
      'XVA_NO_OVA_XML',
      `first entry is "${e.name.slice(0, 100)}", not ova.xml (not an XVA, or an archive repacked in another order)`,
      { offset: e.headerOffset, entry: e.name.slice(0, 100) },
    );
  }
  if (e.size > MAX_OVA_XML_BYTES) {
    throw new XvaFormatError('XVA_TOO_LARGE', `ova.xml is ${fmtBytes(e.size)}, over the ${fmtBytes(MAX_OVA_XML_BYTES)} limit`, {
      entry: 'ova.xml',
      offset: e.headerOffset,
    });
  }
}

/** The checksum kind named by the entry after the first data entry, if the pair looks right. */
function peekKind(dataName: string | undefined, sumName: string | undefined): ChecksumKind | null {
  if (!dataName || !sumName || !sumName.startsWith(dataName)) return null;
  const parsed = parseChunkName(dataName);
  if (!parsed || parsed.suffix !== '') return null;
  return kindFromSuffix(sumName.slice(dataName.length)) ?? null;
}

export async function inspectXva(input: string | InputSource, options: InspectOptions = {}): Promise<XvaInfo> {
  const started = Date.now();
  return withXvaInput(input, options, async (source) => {
    let info: XvaInfo;
    if (options.chunks) {
      info = await inspectChunks(source, options);
    } else {
      // A plain regular file needs no byte stream at all: its headers are read where they sit.
      const tar =
        source.kind === 'file'
          ? walkerTarReader(await openTarHeaderWalker(source.path, { input: source.name, signal: options.signal }))
          : blockTarReader(inputBlocks(source), { input: source.name, signal: options.signal });
      info = await inspectHead(source, tar);
    }
    info.seconds = (Date.now() - started) / 1000;
    return info;
  });
}

/** ova.xml (+ a peek at the first checksum entry name). */
async function inspectHead(source: InputSource, tar: TarReader): Promise<XvaInfo> {
  try {
    const it = tar[Symbol.asyncIterator]();
    const first = (await it.next()).value;
    checkOvaXmlEntry(first);
    const meta = parseOvaXml((await first!.readAll()).toString('utf8'));
    const info = infoFrom(source, meta);
    if (meta.disks.some((d) => d.virtualSize > 0)) {
      // Costs at most one chunk of reading (1 MiB); any trouble here is left to verify.
      try {
        const data = (await it.next()).value;
        if (data && data.size <= MAX_CHUNK_BYTES) {
          await data.skip();
          const sum = (await it.next()).value;
          info.checksum = peekKind(data.name, sum?.name);
        }
      } catch {
        /* unknown */
      }
    }
    return info;
  } finally {
    tar.destroy();
  }
}

/**
 * Counts chunks with the reader in structure-only mode (no hashing, no data kept): on a plain
 * file it only walks the headers, seeking over the data.
 */
async function inspectChunks(source: InputSource, options: InspectOptions): Promise<XvaInfo> {
  let info: XvaInfo | undefined;
  const result = await readXva(
    source,
    {
      onMetadata: (meta) => {
        info = infoFrom(source, meta);
      },
      onProgress: options.onProgress,
      onWarning: options.onWarning,
    },
    { skipData: true, signal: options.signal },
  );
  info ??= infoFrom(source, result.metadata);
  applyStats(info, result.disks);
  info.checksum = result.checksum ?? null;
  info.chunkScan = source.kind === 'file' ? 'seek' : 'stream';
  info.tarBytes = result.tarBytes;
  info.warnings = result.warnings;
  return info;
}

function applyStats(info: XvaInfo, stats: DiskReadStats[]): void {
  for (const d of info.disks) {
    const s = stats.find((x) => x.ref === d.ref);
    d.chunkStats = {
      chunks: s?.chunks ?? 0,
      keepAlives: s?.keepAlives ?? 0,
      allocatedBytes: s?.dataBytes ?? 0,
      checksum: s?.checksum ?? null,
    };
  }
}

export type { TarHeaderWalker };
