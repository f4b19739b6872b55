/**
 * The one XVA writer: `pack`, test fixtures, samples and the bench corpus all use it
 * (docs/xva-format.md §1, §2, §4, §5).
 *
 * Stream layout it produces:
 *   ova.xml
 *   for each disk, in STRING order of its `Ref:` id (as XAPI sorts them):
 *     Ref:N/00000000, Ref:N/00000000.xxhash, …, Ref:N/<last>, Ref:N/<last>.xxhash
 *   1024 zero bytes
 * optionally compressed as a whole (gzip / zstd).
 *
 * Chunk rules (XAPI's): 1 MiB chunks; chunk 0 and the last chunk are always written; other
 * all-zero chunks are skipped (leaving a counter gap); the last chunk is short when the size
 * is not a multiple of 1 MiB. The counter of a chunk is its index plus the number of
 * zero-length keep-alive entries written before it (§4.3) — it is NOT an offset.
 *
 * Each disk is a DiskReader (io/disk.ts: an image reader, disk-sources.ts, the repack pipe), read
 * once front to back; what it does not allocate is never read (write-plan.ts, chunkReader).
 *
 * Around it: disk-sources.ts (disks in memory or in a stream), write-plan.ts (sizes, keep-alives),
 * write-output.ts (compression and the sink), producer-quirks.ts (other producers' habits,
 * for fixtures: padded last chunk, dropped tail, missing checksums, misordered disks, …).
 *
 * Memory stays flat: one chunk is read, hashed and written at a time, and every write waits
 * for the destination's backpressure.
 */
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { outputErrorFrom } from '../errors';
import { isAllZero } from '../io/zero';
import type { Compression } from '../input/types';
import { encodeTarHeader, tarEndBlocks, tarPadding, type TarDialect } from '../tar/header';
import { createChunkHasher } from './checksum';
import { checksumFileSuffix, chunkEntryName, compareRefs, OVA_XML_ENTRY, XVA_CHUNK_SIZE, type ChecksumKind } from './format';
import { buildOvaXml } from './metadata/build';
import type { OvaXmlSpec } from './metadata/spec';
import type { XvaProducerQuirks } from './producer-quirks';
import { openTarOutput, type TarOutputOptions } from './write-output';
import { keepAliveCounter, omitChecksumPredicate, planDisk, type KeepAlives, type XvaDiskInput } from './write-plan';

export interface XvaWriteSpec extends Omit<OvaXmlSpec, 'disks'> {
  disks: XvaDiskInput[];
}

export type XvaCompression = Compression;

export interface WriteXvaOptions extends TarOutputOptions {
  compression?: XvaCompression;
  /** Default 'xxh64' (`.xxhash`); 'sha1' writes `.checksum` like XAPI <= 8.0 and xva-img. */
  checksum?: ChecksumKind;
  /** Default 'xapi' (V7 as XAPI writes it); 'ustar' is what §2.2 recommends for import. */
  tarDialect?: TarDialect;
  /** Zero-length keep-alive chunks (XAPI, §4.3). */
  keepAlives?: KeepAlives;
  /** Use this ova.xml content instead of generating it. */
  ovaXml?: string | Buffer;
  signal?: AbortSignal;
  /** Called after each chunk position is processed. */
  onProgress?: (p: { disk: string; bytesDone: number; bytesTotal: number }) => void;
  /** Called when a chunk read from a disk holds data (not all zeros), before it is written. */
  onData?: (disk: string) => void;
}

export interface DiskWriteSummary {
  ref: string;
  /** virtual_size written into ova.xml. */
  virtualSize: number;
  /** Data entries written (including all-zero chunks that were forced, excluding keep-alives). */
  chunksWritten: number;
  /** Chunk positions skipped because they were all zeros. */
  zeroChunksSkipped: number;
  keepAlives: number;
  /** Disk bytes stored in data entries. */
  dataBytes: number;
  /** Counter of the last entry written for this disk, -1 when none. */
  lastCounter: number;
}

export interface XvaWriteSummary {
  /** Uncompressed tar stream length. */
  tarBytes: number;
  /** Bytes delivered to the sink (after compression). */
  bytesWritten: number;
  compression: XvaCompression;
  checksum: ChecksumKind;
  ovaXml: string;
  /** In archive order. */
  disks: DiskWriteSummary[];
  /** Every tar entry name, with XvaProducerQuirks.recordEntries. */
  entries?: string[];
}

/**
 * Writes a complete XVA to `sink`. Resolves once everything is flushed (and the sink ended,
 * unless `end: false`). Rejects with an OutputError on a destination failure. `pack` passes
 * WriteXvaOptions only; fixtures add XvaProducerQuirks.
 */
export async function writeXva(spec: XvaWriteSpec, sink: Writable, options: WriteXvaOptions & XvaProducerQuirks = {}): Promise<XvaWriteSummary> {
  const opts = options;
  const dialect: TarDialect = opts.tarDialect ?? 'xapi';
  const kind: ChecksumKind = opts.checksum ?? 'xxh64';
  const suffix = checksumFileSuffix(kind);
  const chunkMtime = opts.mtime ?? 0;

  const plans = spec.disks.map((d, i) => planDisk(d, i, opts));
  const ordered = opts.diskOrder === 'spec' ? plans : [...plans].sort((a, b) => compareRefs(a.input.ref, b.input.ref));
  const ovaXml =
    opts.ovaXml !== undefined
      ? Buffer.from(opts.ovaXml).toString('utf8')
      : buildOvaXml(
          {
            ...spec,
            disks: plans.map((p) => {
              const { source: _source, virtualSize: _size, ...rest } = p.input;
              return { ...rest, virtualSize: p.declaredSize };
            }),
          },
          { uuidGen: opts.uuidGen },
        );
  const keepAlivesAt = keepAliveCounter(opts.keepAlives, plans);
  const omitChecksum = omitChecksumPredicate(opts.omitChecksumFor, plans);

  const hasher = await createChunkHasher(kind);
  const out = await openTarOutput(sink, opts);
  const entries: string[] | undefined = opts.recordEntries ? [] : undefined;

  const header = (name: string, size: number, mtime: number): Buffer =>
    encodeTarHeader({ name, size, mtime, mode: opts.mode, dialect });
  const writeEntry = async (name: string, data: Buffer, mtime: number): Promise<void> => {
    entries?.push(name);
    await out.write(header(name, data.length, mtime));
    await out.write(data);
    const pad = tarPadding(data.length);
    if (pad > 0) await out.write(Buffer.alloc(pad));
  };
  const writeChecksum = async (dataName: string, data: Buffer): Promise<void> => {
    hasher.update(data);
    const digest = Buffer.from(hasher.digestHex(), 'latin1');
    await writeEntry(`${dataName}${suffix}`, digest, chunkMtime);
  };

  const summaries: DiskWriteSummary[] = [];
  try {
    await writeEntry(OVA_XML_ENTRY, Buffer.from(ovaXml, 'utf8'), opts.ovaXmlMtime ?? Math.floor(Date.now() / 1000));

    for (const plan of ordered) {
      const ref = plan.input.ref;
      const summary: DiskWriteSummary = { ref, virtualSize: plan.declaredSize, chunksWritten: 0, zeroChunksSkipped: 0, keepAlives: 0, dataBytes: 0, lastCounter: -1 };
      summaries.push(summary);
      const chunkCount = plan.chunkCount;
      let counter = 0;
      for (let i = 0; i < chunkCount; i++) {
        opts.signal?.throwIfAborted();
        for (let k = keepAlivesAt(plan, i); k > 0; k--) {
          // An empty chunk consumes a counter value but no disk bytes (§4.3).
          const name = chunkEntryName(ref, counter++);
          const empty = Buffer.alloc(0);
          await writeEntry(name, empty, chunkMtime);
          if (!omitChecksum(plan, counter - 1)) await writeChecksum(name, empty);
          summary.keepAlives++;
          summary.lastCounter = counter - 1;
        }
        const offset = i * XVA_CHUNK_SIZE;
        const length = Math.min(XVA_CHUNK_SIZE, plan.coveredSize - offset);
        const data = await plan.readChunk(offset, length);
        if (data.length !== length) throw new RangeError(`disk ${ref}: source returned ${data.length} bytes for read(${offset}, ${length})`);
        const forced = i === 0 || i === chunkCount - 1 || opts.writeAllChunks === true;
        const zero = (!forced || opts.onData !== undefined) && isAllZero(data);
        if (!zero) opts.onData?.(ref);
        if (forced || !zero) {
          const name = chunkEntryName(ref, counter);
          await writeEntry(name, data, chunkMtime);
          if (!omitChecksum(plan, counter)) await writeChecksum(name, data);
          summary.chunksWritten++;
          summary.dataBytes += data.length;
          summary.lastCounter = counter;
        } else {
          summary.zeroChunksSkipped++;
        }
        counter++;
        opts.onProgress?.({ disk: ref, bytesDone: offset + length, bytesTotal: plan.coveredSize });
      }
    }
    await out.write(tarEndBlocks());
    await out.finish();
  } catch (err) {
    out.abort();
    throw err;
  }
  return { tarBytes: out.tarBytes, bytesWritten: out.bytesWritten, compression: opts.compression ?? 'none', checksum: kind, ovaXml, disks: summaries, entries };
}

/** Writes an XVA file at `path` (created or truncated). */
export async function writeXvaFile(spec: XvaWriteSpec, path: string, options: WriteXvaOptions & XvaProducerQuirks = {}): Promise<XvaWriteSummary> {
  const stream = createWriteStream(path);
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', (e) => reject(outputErrorFrom(e, path)));
  });
  return writeXva(spec, stream, { label: path, ...options, end: true });
}
