/**
 * The public option and result types of packXva, and the internal shapes its modes share
 * (the module comment of ./index.ts describes the modes).
 */
import type { Writable } from 'node:stream';
import type { InputImageFormat } from '../../image/types';
import type { InputSource, OpenInputOptions } from '../../input/types';
import type { XvaTarDialect } from '../../tar/header';
import type { ChecksumKind } from '../../xva/format';
import type { Firmware } from '../../xva/metadata/model';
import type { BadChunk, BadChunkPolicy } from '../../xva/reader';
import type { XvaCompression } from '../../xva/writer';

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
export type PackRun = PackOptions & PackDeterminism;

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

/** What every mode needs of the checked options (built by packXva). */
export interface PackCommon {
  compression: XvaCompression;
  checksum: ChecksumKind;
  tarFormat: XvaTarDialect;
  warnings: string[];
  started: number;
}
