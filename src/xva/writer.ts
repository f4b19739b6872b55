/**
 * The one XVA writer: test fixtures and `pack` both use it (xva-format.md §1, §2, §4, §5).
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
 * Quirk options reproduce other producers so the reader can be tested against them:
 * keepAlives (XAPI empty chunks), writeAllChunks (newer XAPI), padLastChunk (Xen Orchestra),
 * dropPartialTail (xva-img disk-import), mode/mtime (xva-img mode 0, XO ustar 0644 + now),
 * omitChecksumFor, diskOrder 'spec' (a misordered archive), ovaXml (custom metadata).
 *
 * Memory stays flat: one chunk is read, hashed and written at a time, and every write waits
 * for the destination's backpressure.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createWriteStream, promises as fsp } from 'node:fs';
import { PassThrough, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { OutputError, outputErrorFrom, XvaError } from '../errors';
import { isAllZero } from '../io/zero';
import { encodeTarHeader, tarEndBlocks, tarPadding, TAR_BLOCK, type TarDialect } from '../tar/header';
import type { Compression } from '../input/types';
import { checksumFileSuffix, createChunkHasher, type ChecksumKind } from './checksum';
import { buildOvaXml, type OvaDiskSpec, type OvaXmlSpec } from './metadata/build';

/** XAPI's chunk size (SV `chunk_size`). */
export const XVA_CHUNK_SIZE = 1024 * 1024;
/** Counters are printed `%08d` (SV `Printf "%s/%08d"`). */
const COUNTER_DIGITS = 8;
export const OVA_XML_NAME = 'ova.xml';

// ---------------------------------------------------------------------------------------------
// Disk byte sources

/**
 * A disk's bytes. The writer calls `read` with strictly ascending, non-overlapping offsets
 * (so a sequential stream can back it). Reads past `virtualSize` must not happen; a source
 * shorter than its virtual size returns zeros for the missing part. The returned Buffer
 * belongs to the caller (it may be queued in a stream after read returns: do not reuse it).
 */
export interface DiskByteSource {
  readonly virtualSize: number;
  read(offset: number, length: number): Promise<Buffer>;
  close?(): Promise<void>;
}

function checkRead(offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new RangeError(`disk source: read(${offset}, ${length}) outside 0..${size}`);
  }
}

/** A disk held in memory. `virtualSize` may exceed the buffer (the rest reads as zeros). */
export function bufferSource(data: Uint8Array, virtualSize = data.length): DiskByteSource {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return {
    virtualSize,
    async read(offset, length) {
      checkRead(offset, length, virtualSize);
      if (offset + length <= buf.length) return buf.subarray(offset, offset + length);
      const out = Buffer.alloc(length);
      if (offset < buf.length) buf.copy(out, 0, offset, buf.length);
      return out;
    },
  };
}

/** A raw image file read by offset; `virtualSize` defaults to the file size. */
export async function rawFileSource(path: string, virtualSize?: number): Promise<DiskByteSource & { close(): Promise<void> }> {
  const fh = await fsp.open(path, 'r');
  const fileSize = (await fh.stat()).size;
  const size = virtualSize ?? fileSize;
  return {
    virtualSize: size,
    async read(offset, length) {
      checkRead(offset, length, size);
      const out = Buffer.alloc(length);
      let done = 0;
      while (done < length && offset + done < fileSize) {
        const { bytesRead } = await fh.read(out, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return out; // bytes past the end of the file stay zero
    },
    close: () => fh.close(),
  };
}

/**
 * A disk arriving as a byte stream (stdin, a decompressor, another reader). Reads must be
 * ascending; skipped ranges are consumed and discarded; a stream that ends early reads as zeros.
 */
export function streamSource(stream: AsyncIterable<Uint8Array>, virtualSize: number): DiskByteSource {
  const it = stream[Symbol.asyncIterator]();
  let pending: Buffer = Buffer.alloc(0);
  let position = 0; // stream offset of pending[0]
  let ended = false;

  async function take(n: number, into?: Buffer, at = 0): Promise<number> {
    let got = 0;
    while (got < n) {
      if (pending.length === 0) {
        if (ended) break;
        const r = await it.next();
        if (r.done) {
          ended = true;
          break;
        }
        pending = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
        continue;
      }
      const k = Math.min(n - got, pending.length);
      if (into) pending.copy(into, at + got, 0, k);
      pending = pending.subarray(k);
      position += k;
      got += k;
    }
    return got;
  }

  return {
    virtualSize,
    async read(offset, length) {
      checkRead(offset, length, virtualSize);
      if (offset < position) throw new RangeError(`stream source: cannot read backwards (offset ${offset}, already at ${position})`);
      await take(offset - position);
      const out = Buffer.alloc(length);
      await take(length, out);
      return out;
    },
    async close() {
      await it.return?.();
    },
  };
}

/** Zero-extends (never truncates) a source to `size` bytes. */
function extendSource(source: DiskByteSource, size: number): DiskByteSource {
  if (size <= source.virtualSize) return source;
  return {
    virtualSize: size,
    async read(offset, length) {
      checkRead(offset, length, size);
      const inside = Math.max(0, Math.min(offset + length, source.virtualSize) - offset);
      if (inside === length) return source.read(offset, length);
      const out = Buffer.alloc(length);
      if (inside > 0) (await source.read(offset, inside)).copy(out);
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Spec and options

export interface XvaDiskInput extends Omit<OvaDiskSpec, 'virtualSize'> {
  source: DiskByteSource;
  /** Size to declare; default `source.virtualSize` (the source is zero-extended if larger). */
  virtualSize?: number;
}

export interface XvaWriteSpec extends Omit<OvaXmlSpec, 'disks'> {
  disks: XvaDiskInput[];
}

export type XvaCompression = Compression;

/** Picks a disk by ref (`Ref:998`) or by its index in `spec.disks`. */
export type DiskSelector = string | number;

export interface KeepAliveSpec {
  disk: DiskSelector;
  /** Chunk index (offset / 1 MiB) before which the empty chunk(s) are written. */
  beforeChunk: number;
  /** How many empty chunks; default 1. */
  count?: number;
}

export interface WriteXvaOptions {
  compression?: XvaCompression;
  /** gzip 1-9 (default 6), zstd 1-19 (default 3). */
  compressionLevel?: number;
  /** zstd program used when node:zlib has no zstd encoder (Node < 22.15). Default `zstd` on PATH. */
  zstdPath?: string;
  /** Default 'xxh64' (`.xxhash`); 'sha1' writes `.checksum` like XAPI <= 8.0 and xva-img. */
  checksum?: ChecksumKind;
  /** Default 'xapi' (V7 as XAPI writes it); 'ustar' is what §2.2 recommends for import. */
  tarDialect?: TarDialect;
  /** Mode of every entry (default per dialect: xapi 0400, ustar/v7 0644). */
  mode?: number;
  /** mtime of chunk and checksum entries, seconds (default 0 as XAPI). */
  mtime?: number;
  /** mtime of ova.xml, seconds (default: now, as XAPI). */
  ovaXmlMtime?: number;
  /** Zero-length keep-alive chunks (XAPI, §4.3), as a list or `(diskRef, chunkIndex) => count`. */
  keepAlives?: KeepAliveSpec[] | ((diskRef: string, chunkIndex: number) => number);
  /** Write all-zero chunks too (newer XAPI writes every allocated chunk). */
  writeAllChunks?: boolean;
  /** Xen Orchestra: last chunk padded to 1 MiB and virtual_size rounded up to 1 MiB. */
  padLastChunk?: boolean;
  /** xva-img disk-import: only whole 1 MiB chunks; a trailing partial MiB is not written. */
  dropPartialTail?: boolean;
  /**
   * Write `virtualSize` exactly even when it is not a multiple of 512 (fixtures for the reader's
   * odd-size handling). By default sizes are rounded up to 512 so every chunk stays
   * block-aligned, which XAPI's reader needs (§2.2).
   */
  allowUnalignedSize?: boolean;
  /** Leave out the checksum entry of these data entries (by counter). */
  omitChecksumFor?: Array<{ disk: DiskSelector; counter: number }> | ((diskRef: string, counter: number) => boolean);
  /** 'string' (default, XAPI's order) or 'spec' (as given: may produce a misordered archive). */
  diskOrder?: 'string' | 'spec';
  /** Use this ova.xml content instead of generating it. */
  ovaXml?: string | Buffer;
  /** End the sink when done (default true). */
  end?: boolean;
  /** Name of the destination for error messages. */
  label?: string;
  signal?: AbortSignal;
  /** Called after each chunk position is processed. */
  onProgress?: (p: { disk: string; bytesDone: number; bytesTotal: number }) => void;
  /** Record every tar entry name in the summary (tests). */
  recordEntries?: boolean;
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
  entries?: string[];
}

/** Byte-wise comparison: what OCaml's `compare` on strings does for XAPI's disk order. */
export function compareRefs(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export function chunkEntryName(ref: string, counter: number): string {
  return `${ref}/${String(counter).padStart(COUNTER_DIGITS, '0')}`;
}

function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

interface DiskPlan {
  input: XvaDiskInput;
  index: number;
  /** virtual_size for ova.xml. */
  declaredSize: number;
  /** Bytes covered by chunks: [0, coveredSize). */
  coveredSize: number;
  source: DiskByteSource;
}

function planDisk(input: XvaDiskInput, index: number, opts: WriteXvaOptions): DiskPlan {
  const requested = input.virtualSize ?? input.source.virtualSize;
  if (!Number.isSafeInteger(requested) || requested < 0) throw new RangeError(`disk ${input.ref}: invalid virtual size ${requested}`);
  if (opts.padLastChunk && opts.dropPartialTail) throw new RangeError('padLastChunk and dropPartialTail exclude each other');
  let declared = opts.allowUnalignedSize ? requested : roundUp(requested, TAR_BLOCK);
  let covered = declared;
  if (opts.padLastChunk) {
    declared = roundUp(requested, XVA_CHUNK_SIZE);
    covered = declared;
  } else if (opts.dropPartialTail) {
    covered = Math.floor(declared / XVA_CHUNK_SIZE) * XVA_CHUNK_SIZE;
  }
  return { input, index, declaredSize: declared, coveredSize: covered, source: extendSource(input.source, Math.max(covered, input.source.virtualSize)) };
}

function selects(sel: DiskSelector, plan: DiskPlan): boolean {
  return typeof sel === 'number' ? sel === plan.index : sel === plan.input.ref;
}

// ---------------------------------------------------------------------------------------------
// Output plumbing: tar bytes -> [compressor] -> byte counter -> sink

interface TarOutput {
  write(data: Buffer): Promise<void>;
  finish(): Promise<void>;
  abort(): void;
  readonly tarBytes: number;
  readonly bytesWritten: number;
}

function zstdUnavailable(cause?: unknown): OutputError {
  return new OutputError(
    'OUTPUT_UNSUPPORTED',
    'zstd compression needs the `zstd` program on PATH (Node 20 has no built-in zstd encoder); install zstd or use gzip',
    { cause },
  );
}

async function spawnZstd(binary: string, level: number): Promise<ChildProcessWithoutNullStreams> {
  const child = spawn(binary, ['-c', '-q', `-${level}`], { stdio: ['pipe', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject((err as NodeJS.ErrnoException).code === 'ENOENT' ? zstdUnavailable(err) : outputErrorFrom(err, 'zstd')));
  });
  return child;
}

async function openTarOutput(sink: Writable, opts: WriteXvaOptions): Promise<TarOutput> {
  const label = opts.label ?? 'XVA output';
  const compression = opts.compression ?? 'none';
  const end = opts.end ?? true;
  let tarBytes = 0;
  let bytesWritten = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytesWritten += chunk.length;
      cb(null, chunk);
    },
  });

  let head: Writable;
  let child: ChildProcessWithoutNullStreams | undefined;
  const finished: Promise<unknown>[] = [];
  // Node >= 22.15 has a zstd encoder in zlib; Node 20 does not, so we fall back to the binary.
  const zlibZstd = (zlib as unknown as { createZstdCompress?: (o?: object) => Transform }).createZstdCompress;
  const zstdLevelParam = (zlib.constants as unknown as Record<string, number | undefined>).ZSTD_c_compressionLevel;

  if (compression === 'none') {
    head = new PassThrough();
    finished.push(pipeline(head as PassThrough, counter, sink, { end }));
  } else if (compression === 'gzip') {
    const gz = zlib.createGzip({ level: opts.compressionLevel ?? zlib.constants.Z_DEFAULT_COMPRESSION });
    head = gz;
    finished.push(pipeline(gz, counter, sink, { end }));
  } else if (compression === 'zstd' && typeof zlibZstd === 'function' && zstdLevelParam !== undefined) {
    const z = zlibZstd({ params: { [zstdLevelParam]: opts.compressionLevel ?? 3 } });
    head = z;
    finished.push(pipeline(z, counter, sink, { end }));
  } else if (compression === 'zstd') {
    child = await spawnZstd(opts.zstdPath ?? 'zstd', opts.compressionLevel ?? 3);
    head = child.stdin;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    const proc = child;
    finished.push(pipeline(child.stdout, counter, sink, { end }));
    finished.push(
      new Promise<void>((resolve, reject) => {
        proc.once('close', (code, signal) => {
          if (code === 0) resolve();
          else reject(new OutputError('OUTPUT_IO', `zstd exited with ${code ?? signal}${stderr ? `: ${stderr.trim()}` : ''}`));
        });
      }),
    );
  } else {
    throw new RangeError(`unknown compression: ${String(compression)}`);
  }

  // First failure anywhere in the chain; every waiter races against it.
  let failure: XvaError | undefined;
  let rejectFailed!: (e: XvaError) => void;
  const failed = new Promise<never>((_, reject) => {
    rejectFailed = reject;
  });
  failed.catch(() => undefined);
  const fail = (err: unknown): void => {
    if (failure) return;
    failure = outputErrorFrom(err, label);
    rejectFailed(failure);
  };
  head.on('error', fail);
  const all = Promise.all(finished);
  all.catch(fail);

  return {
    get tarBytes() {
      return tarBytes;
    },
    get bytesWritten() {
      return bytesWritten;
    },
    async write(data) {
      if (failure) throw failure;
      if (data.length === 0) return;
      tarBytes += data.length;
      if (!head.write(data)) {
        await Promise.race([new Promise<void>((resolve) => head.once('drain', resolve)), failed]);
      }
    },
    async finish() {
      if (failure) throw failure;
      head.end();
      await Promise.race([all, failed]);
    },
    abort() {
      head.destroy();
      child?.kill();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The writer

/**
 * Writes a complete XVA to `sink`. Resolves once everything is flushed (and the sink ended,
 * unless `end: false`). Rejects with an OutputError on a destination failure.
 */
export async function writeXva(spec: XvaWriteSpec, sink: Writable, options: WriteXvaOptions = {}): Promise<XvaWriteSummary> {
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
      : buildOvaXml({
          ...spec,
          disks: plans.map((p) => {
            const { source: _source, virtualSize: _size, ...rest } = p.input;
            return { ...rest, virtualSize: p.declaredSize };
          }),
        });
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
    await writeEntry(OVA_XML_NAME, Buffer.from(ovaXml, 'utf8'), opts.ovaXmlMtime ?? Math.floor(Date.now() / 1000));

    for (const plan of ordered) {
      const ref = plan.input.ref;
      const summary: DiskWriteSummary = { ref, virtualSize: plan.declaredSize, chunksWritten: 0, zeroChunksSkipped: 0, keepAlives: 0, dataBytes: 0, lastCounter: -1 };
      summaries.push(summary);
      const chunkCount = Math.ceil(plan.coveredSize / XVA_CHUNK_SIZE);
      let counter = 0;
      for (let i = 0; i < chunkCount; i++) {
        opts.signal?.throwIfAborted();
        for (let k = keepAlivesAt(plan, i, chunkCount); k > 0; k--) {
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
        const data = await plan.source.read(offset, length);
        if (data.length !== length) throw new RangeError(`disk ${ref}: source returned ${data.length} bytes for read(${offset}, ${length})`);
        const forced = i === 0 || i === chunkCount - 1 || opts.writeAllChunks === true;
        if (forced || !isAllZero(data)) {
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

function keepAliveCounter(spec: WriteXvaOptions['keepAlives'], plans: DiskPlan[]): (plan: DiskPlan, chunk: number, chunkCount: number) => number {
  if (spec === undefined) return () => 0;
  if (typeof spec === 'function') return (plan, chunk) => spec(plan.input.ref, chunk);
  for (const k of spec) {
    const plan = plans.find((p) => selects(k.disk, p));
    if (!plan) throw new RangeError(`keepAlives: no disk ${String(k.disk)}`);
    const chunkCount = Math.ceil(plan.coveredSize / XVA_CHUNK_SIZE);
    if (!Number.isInteger(k.beforeChunk) || k.beforeChunk < 0 || k.beforeChunk >= chunkCount) {
      throw new RangeError(`keepAlives: disk ${plan.input.ref} has chunks 0..${chunkCount - 1}, cannot insert before ${k.beforeChunk}`);
    }
  }
  return (plan, chunk) => spec.reduce((n, k) => (k.beforeChunk === chunk && selects(k.disk, plan) ? n + (k.count ?? 1) : n), 0);
}

function omitChecksumPredicate(spec: WriteXvaOptions['omitChecksumFor'], plans: DiskPlan[]): (plan: DiskPlan, counter: number) => boolean {
  if (spec === undefined) return () => false;
  if (typeof spec === 'function') return (plan, counter) => spec(plan.input.ref, counter);
  for (const o of spec) if (!plans.some((p) => selects(o.disk, p))) throw new RangeError(`omitChecksumFor: no disk ${String(o.disk)}`);
  return (plan, counter) => spec.some((o) => o.counter === counter && selects(o.disk, plan));
}

/** Writes an XVA file at `path` (created or truncated). */
export async function writeXvaFile(spec: XvaWriteSpec, path: string, options: WriteXvaOptions = {}): Promise<XvaWriteSummary> {
  const stream = createWriteStream(path);
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', (e) => reject(outputErrorFrom(e, path)));
  });
  return writeXva(spec, stream, { label: path, ...options, end: true });
}
