/**
 * The single streaming pass over an XVA: tar entries → ova.xml → per-disk chunk placement →
 * checksum verification → DiskImageWriters.
 *
 * State machine, per entry (docs/xva-format.md §1, §4, §5):
 *   1. the first entry must be `ova.xml`; it is parsed and the consumer is told the metadata;
 *   2. every following entry is `Ref:N/<counter>` (data) immediately followed by
 *      `Ref:N/<counter>.xxhash|.checksum`; disks come one after another, never interleaved;
 *      another name directly in the directory of a VDI of ova.xml is refused (it may be a chunk
 *      whose name got damaged), anything else is skipped with a warning (§2.3);
 *   3. a data entry is read whole into a reused buffer, hashed, compared with its checksum
 *      entry, and only then handed to the disk's writer at the offset the ChunkPlacer gives;
 *   4. when the next disk starts (or the archive ends) the finished disk is checked for size
 *      and its writer completed.
 * Only verified data reaches a writer (unless the caller chose salvage with `onBadChunk`).
 * Buffers are reused, so memory stays flat whatever the disk size.
 */
import { ChecksumError, XvaError, XvaFormatError } from '../errors';
import type { BufferLease, DiskImageWriter, ImageWriteResult } from '../io/disk';
import { isAllZero } from '../io/zero';
import { checkChoice } from '../option-checks';
import type { InputSource } from '../input/types';
import type { TarEntry, TarReader } from '../tar/entries';
import { blockTarReader, inputBlocks, openFileBlockSource } from '../tar/block-reader';
import { openTarHeaderWalker, walkerTarReader } from '../tar/header-walker';
import { checksumsEqual, createChunkHasher, shownChecksum, type ChunkHasher } from './checksum';
import { entryDirectory, kindFromSuffix, OVA_XML_ENTRY, parseChunkName, type ChecksumKind } from './format';
import type { DiskInfo, XvaMetadata } from './metadata/model';
import { MAX_OVA_XML_BYTES, parseOvaXml } from './metadata/parse';
import { ChunkPlacer } from './placement';

/** Largest data entry accepted: XAPI writes 1 MiB; padded/foreign writers stay close to it. */
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;
/** Largest checksum entry accepted (a SHA-1 hex digest is 40 bytes). */
const MAX_CHECKSUM_ENTRY_BYTES = 1024;

/** What to do with a chunk whose checksum does not match; the first is the default. */
export const BAD_CHUNK_POLICIES = ['fail', 'warn', 'zero'] as const;
export type BadChunkPolicy = (typeof BAD_CHUNK_POLICIES)[number];

export interface BadChunk {
  disk: string;
  entry: string;
  /** Guest byte offset of the chunk in its disk. */
  offset: number;
  length: number;
  expected: string;
  actual: string;
  /** What was done with the data: kept as is, or replaced by zeros. */
  action: 'kept' | 'zeroed';
}

/**
 * Where a data entry and its checksum entry lie in the tar stream (byte offsets of their data;
 * in a plain XVA file these are file offsets, which random access reads from: chunk-index.ts).
 */
export interface StoredChunk {
  /** Bytes in the data entry (the guest length may be clipped at the disk's end). */
  size: number;
  dataOffset: number;
  checksum: { kind: ChecksumKind; dataOffset: number; size: number };
}

export interface DiskReadStats {
  ref: string;
  /** Data entries read (including keep-alives). */
  chunks: number;
  keepAlives: number;
  /** Bytes in the data entries. */
  dataBytes: number;
  checksum?: ChecksumKind;
  /** Bytes placed inside the virtual size (data, gaps excluded). */
  bytesPlaced: number;
}

export interface XvaProgress {
  /** Raw (possibly compressed) bytes consumed from the source, when the source tells. */
  rawBytesRead?: number;
  rawSize?: number;
  /** Bytes of tar stream consumed. */
  tarBytes: number;
  /** Guest bytes accounted for so far (placed data and gaps), over all disks. */
  diskBytesDone: number;
  diskBytesTotal: number;
}

export interface XvaConsumer {
  /** Called once ova.xml is parsed, before any disk data; `ovaXml` is the entry's text as stored. */
  onMetadata?(meta: XvaMetadata, ovaXml: string): void | Promise<void>;
  /** The writer for a disk, or undefined to read and verify its data without writing it. */
  openDisk?(disk: DiskInfo): DiskImageWriter | undefined | Promise<DiskImageWriter | undefined>;
  /** Called after a disk's data is complete and its writer finished. */
  onDiskDone?(disk: DiskInfo, stats: DiskReadStats, result: ImageWriteResult | undefined): void | Promise<void>;
  /** A checksum mismatch that the policy lets through ('warn'/'zero'); also listed in `badChunks`, not in warnings. */
  onBadChunk?(bad: BadChunk, message: string): void;
  /**
   * Called for every placed data entry (also with `skipData`): guest offset and length, clipped
   * to the disk, and where the entry and its checksum entry are stored in the tar stream.
   */
  onChunk?(disk: DiskInfo, entry: string, offset: number, length: number, stored: StoredChunk): void;
  onProgress?(progress: XvaProgress): void;
  onWarning?(message: string): void;
}

export interface ReadXvaOptions {
  /** Verify checksums (default true). False reads structure only (e.g. `info --chunks`). */
  verifyChecksums?: boolean;
  /** What to do with a chunk whose checksum does not match (default 'fail'). */
  onBadChunk?: BadChunkPolicy;
  /** Stop after ova.xml (the rest of the input is not read). */
  metadataOnly?: boolean;
  /** Skip chunk bodies instead of reading them (structure only; implies no checksums, no writers). */
  skipData?: boolean;
  /** Checked between entries; when aborted, reading stops with the signal's reason. */
  signal?: AbortSignal;
}

export interface XvaReadResult {
  metadata: XvaMetadata;
  disks: DiskReadStats[];
  badChunks: BadChunk[];
  warnings: string[];
  checksum?: ChecksumKind;
  /** Bytes of tar stream read. */
  tarBytes: number;
}

interface ActiveDisk {
  info: DiskInfo;
  placer: ChunkPlacer;
  writer?: DiskImageWriter;
  stats: DiskReadStats;
  droppedZeroTail: number;
}

function fmtBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(2)} MiB`;
  return `${n} bytes`;
}

/** `s` with every character outside printable ASCII, `"` and `\\` escaped: a trailing space or an NBSP shows. */
function visible(s: string): string {
  return s.replace(/[^\x20-\x7e]|["\\]/g, (c) => (c === '"' || c === '\\' ? `\\${c}` : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

/**
 * An entry directly in the directory of a VDI that ova.xml knows whose name is not a chunk or
 * checksum name (docs/xva-format.md §2.3): refused, since skipping it could drop a chunk (or a
 * keep-alive, which shifts every later chunk) without any checksum noticing.
 */
function notAChunkName(entry: TarEntry, dir: string): XvaFormatError {
  const name = entry.name.length > 100 ? `${entry.name.slice(0, 100)}…` : entry.name;
  const base = entry.name.slice(dir.length + 1);
  const shown = visible(base.length > 40 ? base.slice(0, 40) : base) + (base.length > 40 ? '…' : '');
  return new XvaFormatError(
    'XVA_BAD_ENTRY',
    `${name}: "${shown}" in the directory of VDI ${dir} is not a chunk name (1 to 15 digits 0-9, plus .xxhash or .checksum for its checksum); refused, since skipping it could lose a chunk`,
    { entry: name, offset: entry.headerOffset },
  );
}

/** Reads an XVA from an opened input. Errors carry the input name, entry and byte offset. */
export async function readXva(source: InputSource, consumer: XvaConsumer = {}, options: ReadXvaOptions = {}): Promise<XvaReadResult> {
  // A plain regular file is read front to back in large aligned blocks (block-reader.ts), or,
  // for structure-only passes, only where its headers sit (header-walker.ts). Anything else
  // (compressed, stdin, HTTP) is parsed from the decoded stream's chunks as they come. All three
  // decode headers with the same walkTarEntries.
  const tar = source.kind !== 'file'
    ? blockTarReader(inputBlocks(source), { input: source.name, signal: options.signal })
    : options.skipData
      ? walkerTarReader(await openTarHeaderWalker(source.path, { input: source.name, signal: options.signal }))
      : blockTarReader(await openFileBlockSource(source.path, source.name), { input: source.name, signal: options.signal });
  try {
    return await readEntries(source, tar, consumer, options);
  } catch (err) {
    if (err instanceof XvaError) err.at({ input: source.name });
    throw err;
  } finally {
    tar.destroy();
  }
}

async function readEntries(source: InputSource, tar: TarReader, consumer: XvaConsumer, options: ReadXvaOptions): Promise<XvaReadResult> {
  const verify = options.verifyChecksums !== false && !options.skipData;
  const policy = checkChoice(options.onBadChunk, BAD_CHUNK_POLICIES, 'onBadChunk') ?? 'fail';
  const warnings: string[] = [];
  const warn = (msg: string): void => {
    warnings.push(msg);
    consumer.onWarning?.(msg);
  };
  const it = tar[Symbol.asyncIterator]();
  const next = async (): Promise<TarEntry | undefined> => {
    if (options.signal?.aborted) throw options.signal.reason;
    const r = await it.next();
    return r.done ? undefined : r.value;
  };

  // 1. ova.xml first.
  const first = await next();
  if (!first) throw new XvaFormatError('XVA_NO_OVA_XML', 'empty archive: no ova.xml', { offset: 0 });
  if (first.name !== OVA_XML_ENTRY) {
    throw new XvaFormatError(
      'XVA_NO_OVA_XML',
      `first entry is "${first.name.slice(0, 100)}", not ova.xml (not an XVA, or an archive repacked in another order)`,
      { offset: first.headerOffset, entry: first.name.slice(0, 100) },
    );
  }
  if (first.type !== 'file') {
    throw new XvaFormatError('XVA_NO_OVA_XML', `the first entry "ova.xml" is a ${first.type === 'directory' ? 'directory' : 'special file'}, not a file`, {
      offset: first.headerOffset,
      entry: 'ova.xml',
    });
  }
  if (first.size > MAX_OVA_XML_BYTES) {
    throw new XvaFormatError('XVA_TOO_LARGE', `ova.xml is ${fmtBytes(first.size)}, over the ${fmtBytes(MAX_OVA_XML_BYTES)} limit`, {
      entry: 'ova.xml',
      offset: first.headerOffset,
    });
  }
  const xmlBytes = await first.readAll();
  const xmlText = xmlBytes.toString('utf8');
  const metadata = parseOvaXml(xmlText);
  await consumer.onMetadata?.(metadata, xmlText);
  const result: XvaReadResult = { metadata, disks: [], badChunks: [], warnings, tarBytes: 0 };
  if (options.metadataOnly) return result;

  const disksByRef = new Map(metadata.disks.map((d) => [d.ref, d]));
  const otherVdiRefs = new Set(metadata.vdiRefs); // VDIs in ova.xml, e.g. not attached to the VM
  const vdiDirs = new Set([...metadata.vdiRefs, ...disksByRef.keys()]); // where only chunk names may be (§2.3)
  const finished = new Set<string>();
  const diskBytesTotal = metadata.disks.reduce((s, d) => s + d.virtualSize, 0);
  let diskBytesDone = 0;
  const hashers = new Map<ChecksumKind, ChunkHasher>();
  let active: ActiveDisk | undefined;
  let skippedDir: string | undefined;
  let lastProgress = 0;

  const progress = (force = false): void => {
    if (!consumer.onProgress) return;
    const now = Date.now();
    if (!force && now - lastProgress < 100) return;
    lastProgress = now;
    consumer.onProgress({
      rawBytesRead: source.kind === 'file' ? tar.bytesConsumed() : source.rawBytesRead(),
      rawSize: source.rawSize,
      tarBytes: tar.bytesConsumed(),
      diskBytesDone: diskBytesDone + (active ? Math.min(active.placer.position, active.info.virtualSize) : 0),
      diskBytesTotal,
    });
  };

  const finishDisk = async (d: ActiveDisk, archiveEnded: boolean): Promise<void> => {
    const size = d.info.virtualSize;
    const reached = d.placer.position;
    if (reached < size) {
      if (archiveEnded && !tar.endBlocksSeen()) {
        throw new XvaFormatError(
          'TAR_TRUNCATED',
          `archive truncated: it ends after ${fmtBytes(reached)} of disk ${d.info.ref} (${fmtBytes(size)}) without an end-of-archive marker`,
          { disk: d.info.ref, offset: tar.bytesConsumed() },
        );
      }
      warn(`disk ${d.info.ref} (userdevice ${d.info.userdevice}): data ends at ${fmtBytes(reached)} of ${fmtBytes(size)}; the rest is zero-filled`);
    }
    if (d.droppedZeroTail > 0) {
      warn(`disk ${d.info.ref} (userdevice ${d.info.userdevice}): dropped ${d.droppedZeroTail} zero bytes past its virtual size (padded last chunk)`);
    }
    const res = d.writer ? await d.writer.finish() : undefined;
    finished.add(d.info.ref);
    diskBytesDone += size;
    result.disks.push(d.stats);
    await consumer.onDiskDone?.(d.info, d.stats, res);
  };

  const startDisk = async (ref: string, entry: TarEntry): Promise<ActiveDisk | undefined> => {
    const info = disksByRef.get(ref);
    if (!info) {
      if (otherVdiRefs.has(ref)) {
        warn(`${ref}: data of a VDI that no disk of the VM uses; skipped`);
        return undefined;
      }
      throw new XvaFormatError('XVA_UNKNOWN_DISK', `${entry.name}: chunk of disk ${ref}, which ova.xml does not describe`, {
        entry: entry.name,
        offset: entry.headerOffset,
      });
    }
    if (finished.has(ref)) {
      throw new XvaFormatError('XVA_CHUNK_ORDER', `${entry.name}: disk ${ref} continues after another disk started (disks must not interleave)`, {
        entry: entry.name,
        offset: entry.headerOffset,
        disk: ref,
      });
    }
    const writer = options.skipData ? undefined : await consumer.openDisk?.(info);
    return {
      info,
      placer: new ChunkPlacer(ref, info.virtualSize, warn),
      writer,
      stats: { ref, chunks: 0, keepAlives: 0, dataBytes: 0, bytesPlaced: 0 },
      droppedZeroTail: 0,
    };
  };

  for (;;) {
    const entry = await next();
    if (!entry) break;
    if (entry.type === 'directory') continue;
    const loc = { entry: entry.name, offset: entry.headerOffset };
    const parsed = parseChunkName(entry.name);
    if (!parsed) {
      const dir = entryDirectory(entry.name);
      if (dir !== undefined && vdiDirs.has(dir)) throw notAChunkName(entry, dir);
      warn(`unexpected entry "${entry.name.slice(0, 100)}" at byte ${entry.headerOffset}; skipped`);
      await entry.skip();
      continue;
    }
    if (parsed.suffix !== '') {
      throw new XvaFormatError('XVA_MISSING_CHECKSUM', `${entry.name}: checksum file without its data entry before it`, loc);
    }
    if (entry.size > MAX_CHUNK_BYTES) {
      throw new XvaFormatError('XVA_TOO_LARGE', `${entry.name}: chunk of ${fmtBytes(entry.size)} exceeds the ${fmtBytes(MAX_CHUNK_BYTES)} limit`, loc);
    }

    // Disk boundaries.
    if (!active || active.info.ref !== parsed.dir) {
      if (skippedDir !== parsed.dir) {
        if (active) {
          await finishDisk(active, false);
          active = undefined;
        }
        skippedDir = undefined;
        const started = await startDisk(parsed.dir, entry);
        if (started) active = started;
        else skippedDir = parsed.dir;
      }
    }

    // Read (or skip) the data entry. The block reader's buffers come with a lease so that the
    // writer can keep writing from them while the next chunks are read and verified (no copy,
    // see WriteQueue); a reader without leases hands out buffers the writer must finish with.
    let data: Buffer | undefined;
    let lease: BufferLease | undefined;
    if (options.skipData || !active) {
      await entry.skip();
    } else if (entry.readLeased) {
      ({ data, lease } = await entry.readLeased());
    } else {
      data = await entry.readAll();
    }

    // Its checksum entry must come next.
    const sumEntry = await next();
    const sumName = sumEntry ? parseChunkName(sumEntry.name) : undefined;
    if (!sumEntry || !sumName || sumName.dir !== parsed.dir || sumName.counter !== parsed.counter || sumName.suffix === '' || entry.name + sumName.suffix !== sumEntry.name) {
      const found = sumEntry ? `next entry is "${sumEntry.name.slice(0, 100)}"` : 'the archive ends';
      throw new XvaFormatError('XVA_MISSING_CHECKSUM', `${entry.name}: no checksum file after the chunk (${found})`, {
        ...loc,
        offset: sumEntry?.headerOffset ?? tar.bytesConsumed(),
      });
    }
    const kind = kindFromSuffix(sumName.suffix);
    if (!kind) {
      throw new XvaFormatError('XVA_BAD_ENTRY', `${sumEntry.name}: unsupported checksum file (expected .xxhash or .checksum)`, {
        entry: sumEntry.name,
        offset: sumEntry.headerOffset,
      });
    }
    if (sumEntry.size > MAX_CHECKSUM_ENTRY_BYTES) {
      throw new XvaFormatError('XVA_BAD_ENTRY', `${sumEntry.name}: checksum file of ${sumEntry.size} bytes is too large`, {
        entry: sumEntry.name,
        offset: sumEntry.headerOffset,
      });
    }
    result.checksum ??= kind;
    const expected = (await sumEntry.readAll()).toString('latin1');
    if (!active) continue;

    const placement = active.placer.place(parsed.counter, entry.size, entry.name);
    active.stats.chunks++;
    active.stats.dataBytes += entry.size;
    active.stats.checksum ??= kind;
    if (entry.size === 0) active.stats.keepAlives++;
    const clipped = Math.max(0, Math.min(entry.size, active.info.virtualSize - placement.offset));
    if (clipped > 0 && consumer.onChunk) {
      const checksum = { kind, dataOffset: sumEntry.dataOffset, size: sumEntry.size };
      consumer.onChunk(active.info, entry.name, placement.offset, clipped, { size: entry.size, dataOffset: entry.dataOffset, checksum });
    }
    if (!data) {
      progress();
      continue;
    }

    let zeroed = false;
    if (verify) {
      let hasher = hashers.get(kind);
      if (!hasher) {
        hasher = await createChunkHasher(kind);
        hashers.set(kind, hasher);
      }
      hasher.update(data);
      const actual = hasher.digestHex();
      if (!checksumsEqual(expected, actual)) {
        const label = kind === 'xxh64' ? 'XXH64' : 'SHA-1';
        const shown = shownChecksum(expected);
        const msg = `${entry.name}: ${label} mismatch (expected ${shown}, got ${actual})`;
        if (policy === 'fail') throw new ChecksumError(msg, { ...loc, disk: active.info.ref });
        zeroed = policy === 'zero';
        const bad: BadChunk = {
          disk: active.info.ref,
          entry: entry.name,
          offset: placement.offset,
          length: entry.size,
          expected: shown,
          actual,
          action: zeroed ? 'zeroed' : 'kept',
        };
        result.badChunks.push(bad);
        consumer.onBadChunk?.(bad, `${msg}; ${zeroed ? 'replaced by zeros' : 'kept as is'}`);
      }
    }

    // Clip to the virtual size: zeros past the end are padding, data past the end is an error.
    const size = active.info.virtualSize;
    let body = data;
    if (placement.offset + body.length > size) {
      const keep = Math.max(0, size - placement.offset);
      const tail = body.subarray(keep);
      if (!zeroed && !isAllZero(tail)) {
        throw new XvaFormatError(
          'XVA_DATA_PAST_END',
          `${entry.name}: ${tail.length} bytes of data past the end of disk ${active.info.ref} (virtual_size ${size})`,
          { ...loc, disk: active.info.ref },
        );
      }
      active.droppedZeroTail += tail.length;
      body = body.subarray(0, keep);
    }
    active.stats.bytesPlaced += body.length;
    if (!zeroed && body.length > 0 && active.writer) await active.writer.write(placement.offset, body, lease);
    progress();
  }

  if (active) await finishDisk(active, true);
  for (const d of metadata.disks) {
    if (finished.has(d.ref)) continue;
    if (d.virtualSize > 0) {
      if (!tar.endBlocksSeen()) {
        throw new XvaFormatError('TAR_TRUNCATED', `archive truncated: disk ${d.ref} (userdevice ${d.userdevice}) never starts and there is no end-of-archive marker`, {
          disk: d.ref,
          offset: tar.bytesConsumed(),
        });
      }
      throw new XvaFormatError(
        'XVA_MISSING_DISK',
        `disk ${d.ref} (userdevice ${d.userdevice}, ${fmtBytes(d.virtualSize)}) has no data in the archive, but ova.xml says it carries some`,
        { disk: d.ref },
      );
    }
    // A zero-size disk has no chunks at all (§4.4): complete it empty.
    const writer = options.skipData ? undefined : await consumer.openDisk?.(d);
    const res = writer ? await writer.finish() : undefined;
    const stats: DiskReadStats = { ref: d.ref, chunks: 0, keepAlives: 0, dataBytes: 0, bytesPlaced: 0 };
    finished.add(d.ref);
    result.disks.push(stats);
    await consumer.onDiskDone?.(d, stats, res);
  }
  result.tarBytes = tar.bytesConsumed();
  progress(true);
  return result;
}
