/**
 * Random access to the disks of a plain XVA file, without converting it: `xva2img map` and
 * `xva2img serve` (docs/design/nbd-server.md).
 *
 * `openRandomAccessXva` refuses what cannot be read out of order (stdin, URLs, gzip or zstd
 * files) with a line that says how to get a plain file, then indexes the archive
 * (chunk-index.ts). A `DiskRandomReader` serves any byte range of one disk by positional reads:
 * zeros where no chunk is stored, each chunk's bytes where the converter would write them.
 *
 * Verification: every chunk's checksum is checked the first time any byte of it is read (the
 * whole entry and its checksum text come in with one read), and the outcome is remembered in
 * one byte per chunk. Reads that arrive while a chunk is being checked wait for that check,
 * they do not start another. A mismatch is handled as the converter's `--on-bad-chunk` says:
 * `fail` (default) makes every read touching the chunk fail, `warn` serves the bytes as they
 * are, `zero` serves zeros; each is reported once. The file is assumed not to change while it
 * is served (the index holds offsets into it).
 */
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { ChecksumError, UsageError, XvaError, XvaFormatError } from '../errors';
import { isAllZero } from '../io/zero';
import { ChunkBufferPool, type PooledBuffer } from '../io/buffer-pool';
import { isUrl } from '../input/http';
import { openInput } from '../input/open';
import { openFd, unreadable } from '../io/open-file';
import { pread } from '../io/pread';
import { SyncReadGate } from '../io/sync-read-gate';
import { detectCompression, emptyInput, SNIFF_BYTES } from '../input/sniff';
import { decodeTarHeader, TAR_BLOCK } from '../tar/header';
import { checksumsEqual, createChunkHasher, shownChecksum, type ChunkHasher } from './checksum';
import type { ChecksumKind } from './format';
import { indexXva, type DiskChunkIndex, type XvaIndex } from './chunk-index';
import { HashThread } from './hash-thread';
import type { BadChunkPolicy } from './reader';

const fsClose = promisify(fs.close);

/** Chunks whose checked bytes are kept for the reads that follow (a sequential reader reads each in several requests). */
const RECENT_CHUNKS = 8;
/** Chunks checked ahead of a sequential reader, so that its next requests find them ready. */
const CHECK_AHEAD = 2;
/** A checksum entry further than this past its data is read with a read of its own. */
const MAX_JOINED_GAP = 64 * 1024;
/** Read buffers come in multiples of this (pools are per size). */
const BUFFER_GRANULE = 64 * 1024;

const UNVERIFIED = 0;
const GOOD = 1;
const BAD = 2;
const ZEROED = 3;

export interface RandomAccessXva {
  /** The input as the user named it. */
  name: string;
  index: XvaIndex;
  /** A reader for a disk of `index.disks`. */
  reader(disk: DiskChunkIndex, options?: DiskReaderOptions): DiskRandomReader;
  close(): Promise<void>;
}

export interface DiskReaderOptions {
  /** What a checksum mismatch does (default 'fail'). */
  onBadChunk?: BadChunkPolicy;
  /** Told once per bad chunk, with a line naming it. */
  onReport?(message: string): void;
}

/** The refusal for input that cannot be read out of order; `purpose` starts the sentence. */
function notRandomAccess(input: string, purpose: string, why: string, how: string): UsageError {
  return new UsageError(`${input}: ${purpose} needs random access into an uncompressed XVA file, and ${why}: ${how}`);
}

/**
 * Opens a plain XVA file for random access and indexes it. `purpose` names the verb in
 * refusals ("xva2img serve").
 */
export async function openRandomAccessXva(input: string, options: { purpose: string; signal?: AbortSignal; onWarning?(message: string): void }): Promise<RandomAccessXva> {
  const { purpose } = options;
  if (input === '-') throw notRandomAccess('-', purpose, 'standard input can only be read in order', 'save it to a file first (decompressed: gunzip -c or zstd -dc)');
  if (isUrl(input)) throw notRandomAccess(input, purpose, 'a URL is read as a stream', 'download it first (decompressed, if it is .gz or .zst)');
  const { fd, stat } = await openFd(input);
  try {
    if (!stat.isFile()) throw notRandomAccess(input, purpose, 'this is not a regular file', 'copy it to a file first');
    const head = Buffer.alloc(SNIFF_BYTES);
    const got = await pread(fd, head, 0, SNIFF_BYTES, 0).catch((err: unknown) => {
      throw unreadable(input, 'read error at byte 0', err);
    });
    if (got === 0) throw emptyInput(input);
    const compression = detectCompression(head.subarray(0, got));
    if (compression === 'gzip') throw notRandomAccess(input, purpose, 'it is gzip-compressed', `decompress it first: gunzip -k ${input} (or gzip -dc ${input} > vm.xva)`);
    if (compression === 'zstd') throw notRandomAccess(input, purpose, 'it is zstd-compressed', `decompress it first: zstd -d ${input} (or zstd -dc ${input} > vm.xva)`);
    const source = await openInput(input);
    let index: XvaIndex;
    try {
      index = await indexXva(source, options);
    } finally {
      await source.close();
    }
    let closed: Promise<void> | undefined;
    const gate = new SyncReadGate();
    // Started with the first check (map never needs it); null where no thread can be had.
    let thread: HashThread | null | undefined;
    const hashThread = (): HashThread | undefined => (thread === undefined ? (thread = HashThread.start() ?? null) : thread) ?? undefined;
    return {
      name: input,
      index,
      reader: (disk, o = {}) => new DiskRandomReader(fd, input, disk, o, gate, hashThread),
      close: () =>
        (closed ??= (async () => {
          await thread?.close();
          await fsClose(fd).catch(() => {});
        })()),
    };
  } catch (err) {
    await fsClose(fd).catch(() => {});
    if (err instanceof XvaError) err.at({ input });
    throw err;
  }
}

const pools = new Map<number, ChunkBufferPool>();

/** A pooled, page-aligned buffer of at least `size` bytes. */
function takeBuffer(size: number): PooledBuffer {
  const granted = Math.max(BUFFER_GRANULE, Math.ceil(size / BUFFER_GRANULE) * BUFFER_GRANULE);
  let pool = pools.get(granted);
  if (!pool) pools.set(granted, (pool = new ChunkBufferPool(granted)));
  return pool.take();
}

/** One piece of a read: `length` bytes from `offset` of the disk, zeros or data. */
export interface ReadRun {
  offset: number;
  length: number;
  zero: boolean;
}

export interface RandomRead {
  /** The range, in order, as runs of data and of zeros (holes, zeroed bad chunks). */
  runs: ReadRun[];
  /**
   * The range's bytes where runs are data, at their offset from the start of the range (the
   * bytes of zero runs are unspecified); undefined when every run is zeros.
   */
  data: Buffer | undefined;
  /** Gives `data`'s buffer back for reuse; call once, when it has been sent. */
  release(): void;
}

const NOTHING_TO_RELEASE = (): void => {};

/** Given a checked entry's bytes and their buffer (hold its lease to keep a view of it). */
type Taker = (entry: Buffer, pooled: PooledBuffer) => void;

/** A chunk's check in progress, and the readers to hand its bytes to. */
interface PendingCheck {
  takers: Taker[];
  done: Promise<void>;
}

export class DiskRandomReader {
  /** Per chunk: UNVERIFIED, GOOD, BAD or ZEROED (one byte each). */
  private readonly state: Uint8Array;
  /** Checks in progress, by chunk: later readers of the chunk join them. */
  private readonly checking = new Map<number, PendingCheck>();
  private readonly hashers = new Map<ChecksumKind, Promise<ChunkHasher>>();
  private readonly policy: BadChunkPolicy;
  /** The reason reads of a BAD chunk fail, by chunk. */
  private readonly failures = new Map<number, string>();
  /** The last RECENT_CHUNKS chunks checked, oldest first, with a hold on their buffers. */
  private readonly recent = new Map<number, { entry: Buffer; pooled: PooledBuffer; release: () => void }>();
  private preads = 0;

  constructor(
    private readonly fd: number,
    private readonly input: string,
    readonly index: DiskChunkIndex,
    private readonly options: DiskReaderOptions,
    /** Small reads from the page cache are done synchronously (shared by the file's readers). */
    private readonly gate = new SyncReadGate(),
    /** Where checksums are computed off the main thread, when it can be (hash-thread.ts). */
    private readonly hashThread: () => HashThread | undefined = () => undefined,
  ) {
    this.state = new Uint8Array(index.count);
    this.policy = options.onBadChunk ?? 'fail';
  }

  get size(): number {
    return this.index.size;
  }

  /** Positional reads issued so far (for tests and benchmarks). */
  get readCount(): number {
    return this.preads;
  }

  /** Reads [offset, offset + length) of the disk (clipped to it). */
  async read(offset: number, length: number): Promise<RandomRead> {
    const runs: Array<ReadRun & { chunk: number }> = [];
    this.index.forEachRun(offset, length, (start, len, chunk) => {
      runs.push({ offset: start, length: len, zero: chunk < 0, chunk });
    });
    if (runs.length === 1) {
      // The common case: a read inside one chunk (or one hole).
      const run = runs[0]!;
      const only = [{ offset: run.offset, length: run.length, zero: run.zero }];
      return run.zero ? { runs: only, data: undefined, release: NOTHING_TO_RELEASE } : this.readInChunk(run.chunk, offset, run.length, only);
    }
    let pooled: PooledBuffer | undefined;
    const target = (): Buffer => (pooled ??= takeBuffer(length)).buf;
    try {
      await Promise.all(
        runs.map(async (run) => {
          if (run.chunk < 0) return;
          const i = run.chunk;
          const within = run.offset - this.index.start(i);
          // Readers that start or join a chunk's check, or find it among the recent ones, copy
          // their bytes from the check's buffer.
          const copy = (entry: Buffer): void => void entry.copy(target(), run.offset - offset, within, within + run.length);
          const recent = this.state[i] === GOOD ? this.recent.get(i) : undefined;
          if (recent) copy(recent.entry);
          const copied = recent !== undefined || (this.state[i] === UNVERIFIED && (await this.check(i, copy)));
          if (this.servable(i) === 'zero') run.zero = true;
          else if (!copied) await this.readFully(target(), run.offset - offset, run.length, this.index.stored(i).dataOffset + within);
        }),
      );
    } catch (err) {
      pooled?.release();
      throw err;
    }
    const out: ReadRun[] = runs.map(({ offset: o, length: l, zero }) => ({ offset: o, length: l, zero }));
    if (runs.every((r) => r.zero)) {
      pooled?.release();
      return { runs: out, data: undefined, release: NOTHING_TO_RELEASE };
    }
    const p = pooled!;
    return { runs: out, data: p.buf.subarray(0, Math.min(length, this.index.size - offset)), release: () => p.release() };
  }

  /**
   * A read inside chunk `i`. A reader that starts or joins the chunk's check is given a view of
   * the check's buffer (held until its release), not a copy.
   */
  private async readInChunk(i: number, offset: number, length: number, runs: ReadRun[]): Promise<RandomRead> {
    const within = offset - this.index.start(i);
    this.checkAhead(i);
    const recent = this.state[i] === GOOD ? this.recent.get(i) : undefined;
    if (recent) return { runs, data: recent.entry.subarray(within, within + length), release: recent.pooled.lease.hold() };
    if (this.state[i] === UNVERIFIED) {
      let lent: RandomRead | undefined;
      await this.check(i, (entry, pooled) => {
        lent = { runs, data: entry.subarray(within, within + length), release: pooled.lease.hold() };
      });
      if (lent) return lent;
    }
    if (this.servable(i) === 'zero') {
      runs[0]!.zero = true;
      return { runs, data: undefined, release: NOTHING_TO_RELEASE };
    }
    const pooled = takeBuffer(length);
    try {
      await this.readFully(pooled.buf, 0, length, this.index.stored(i).dataOffset + within);
    } catch (err) {
      pooled.release();
      throw err;
    }
    return { runs, data: pooled.buf.subarray(0, length), release: () => pooled.release() };
  }

  /**
   * A reader in chunk `i` right after chunk i-1 reads sequentially: the next CHECK_AHEAD chunks
   * are checked now (their bytes kept among the recent ones), so that its coming requests find
   * them ready instead of each waiting for a check. Random readers never trigger this.
   */
  private checkAhead(i: number): void {
    if (!this.recent.has(i - 1) && !this.checking.has(i - 1)) return;
    for (let j = i + 1; j <= i + CHECK_AHEAD && j < this.index.count; j++) {
      // A failure here is met again, and reported, by the read that needs the chunk.
      if (this.state[j] === UNVERIFIED && !this.checking.has(j)) this.check(j).catch(() => {});
    }
  }

  /** Keeps the checked bytes of chunk `i` for the reads that follow, dropping the oldest. */
  private remember(i: number, entry: Buffer, pooled: PooledBuffer): void {
    if (this.recent.has(i)) return;
    this.recent.set(i, { entry, pooled, release: pooled.lease.hold() });
    if (this.recent.size > RECENT_CHUNKS) {
      const [oldest, kept] = this.recent.entries().next().value!;
      this.recent.delete(oldest);
      kept.release();
    }
  }

  /** After its check: whether chunk `i` is served as stored or as zeros; a failed chunk throws. */
  private servable(i: number): 'data' | 'zero' {
    const state = this.state[i];
    if (state === BAD) throw new ChecksumError(this.failures.get(i) ?? 'bad chunk', { input: this.input, disk: this.index.disk.ref });
    return state === ZEROED ? 'zero' : 'data';
  }

  /** Checks every chunk of [offset, offset + length) that was not checked yet (NBD_CMD_CACHE). */
  async verifyRange(offset: number, length: number): Promise<void> {
    const first = this.index.firstEndingAfter(offset);
    for (let i = first; i < this.index.count && this.index.start(i) < offset + length; i++) {
      if (this.state[i] === UNVERIFIED) await this.check(i);
      this.servable(i);
    }
  }

  /**
   * Checks chunk `i`, or joins the check in progress. `take` is given the entry's bytes, before
   * the check's buffer is reused, when they may be served: every reader of the chunk that
   * arrives during its check is served from the one read the check made. Resolves with whether
   * `take` was called.
   */
  private async check(i: number, take?: Taker): Promise<boolean> {
    let took = false;
    const taker =
      take &&
      ((entry: Buffer, pooled: PooledBuffer): void => {
        take(entry, pooled);
        took = true;
      });
    const pending = this.checking.get(i);
    if (pending) {
      if (taker) pending.takers.push(taker);
      await pending.done;
      return took;
    }
    const check: PendingCheck = { takers: taker ? [taker] : [], done: Promise.resolve() };
    check.done = this.runCheck(i, (entry, pooled) => {
      for (const t of check.takers) t(entry, pooled);
    });
    this.checking.set(i, check);
    try {
      await check.done;
    } finally {
      this.checking.delete(i);
    }
    return took;
  }

  /** The digest of `entry` computed on the main thread. */
  private async digest(kind: ChecksumKind, entry: Buffer): Promise<string> {
    let h = this.hashers.get(kind);
    if (!h) this.hashers.set(kind, (h = createChunkHasher(kind)));
    const hasher = await h;
    hasher.update(entry);
    return hasher.digestHex();
  }

  private async runCheck(i: number, take: Taker): Promise<void> {
    const stored = this.index.stored(i);
    const sum = stored.checksum;
    const joined = sum.dataOffset - (stored.dataOffset + stored.size) <= MAX_JOINED_GAP;
    const span = joined ? sum.dataOffset + sum.size - stored.dataOffset : stored.size;
    const thread = this.hashThread();
    const slot = thread?.takeSlot(span);
    const pooled = slot ?? takeBuffer(span);
    try {
      await this.readFully(pooled.buf, 0, span, stored.dataOffset);
      let expected: string;
      if (joined) {
        expected = pooled.buf.toString('latin1', span - sum.size, span);
      } else {
        const text = Buffer.alloc(sum.size);
        await this.readFully(text, 0, sum.size, sum.dataOffset);
        expected = text.toString('latin1');
      }
      const entry = pooled.buf.subarray(0, stored.size);
      const actual = slot ? await thread!.digest(sum.kind, entry).catch(() => this.digest(sum.kind, entry)) : await this.digest(sum.kind, entry);
      const disk = this.index.disk;
      const range = `disk ${disk.userdevice} bytes ${this.index.start(i)}-${this.index.end(i) - 1}`;
      // Bytes past the disk's end must be zero padding, as the converter requires.
      const keep = disk.virtualSize - this.index.start(i);
      if (keep < entry.length && !isAllZero(entry.subarray(keep))) {
        const what = `${await this.entryName(i)}: ${entry.length - keep} bytes of data past the end of disk ${disk.ref} (virtual_size ${disk.virtualSize})`;
        return this.fail(i, `${what}; reads of ${range} fail`, what);
      }
      if (!checksumsEqual(expected, actual)) {
        const label = sum.kind === 'xxh64' ? 'XXH64' : 'SHA-1';
        const what = `${await this.entryName(i)}: ${label} mismatch (expected ${shownChecksum(expected)}, got ${actual})`;
        if (this.policy === 'fail') return this.fail(i, `${what}; reads of ${range} fail`, what);
        this.options.onReport?.(`${this.input}: ${what}; ${range} ${this.policy === 'zero' ? 'read as zeros' : 'served as stored'} (--on-bad-chunk ${this.policy})`);
        if (this.policy === 'zero') {
          this.state[i] = ZEROED;
          return;
        }
      }
      this.state[i] = GOOD;
      this.remember(i, entry, pooled);
      take(entry, pooled);
    } finally {
      pooled.release();
    }
  }

  private fail(i: number, report: string, reason: string): void {
    this.state[i] = BAD;
    this.failures.set(i, reason);
    this.options.onReport?.(`${this.input}: ${report}`);
  }

  /** The chunk's tar entry name, from its header (read again: names are not kept in the index). */
  private async entryName(i: number): Promise<string> {
    const fallback = `${this.index.disk.ref} chunk at byte ${this.index.stored(i).dataOffset}`;
    try {
      const block = Buffer.alloc(TAR_BLOCK);
      await this.readFully(block, 0, TAR_BLOCK, this.index.stored(i).dataOffset - TAR_BLOCK);
      return decodeTarHeader(block)?.name.replace(/^(\.\/)+/, '') || fallback;
    } catch {
      return fallback;
    }
  }

  private async readFully(buf: Buffer, at: number, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      let n: number;
      this.preads++;
      try {
        n = await this.gate.read(this.fd, buf, at + done, length - done, position + done);
      } catch (err) {
        throw unreadable(this.input, `read error at byte ${position + done}`, err);
      }
      if (n === 0) {
        throw new XvaFormatError('TAR_TRUNCATED', `file ends before byte ${position + length} (shortened since it was indexed?)`, { input: this.input, offset: position + done });
      }
      done += n;
    }
  }
}
