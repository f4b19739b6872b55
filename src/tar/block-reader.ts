/**
 * Tar entries read front to back from large blocks: the conversion path for a plain XVA file.
 *
 * Why blocks: on the virtual machines we measure, each thread-pool request costs tens of
 * microseconds of wake-ups (futex, vCPU kicks), and concurrent requests contend in the kernel.
 * Reading an XVA as 1 MiB chunk reads plus separate 1.5 KiB header reads made ~3 requests per
 * chunk; reading the file in 4 MiB page-aligned blocks, the next one read while one is parsed, makes
 * one request per ~4 chunks, and the kernel copies into aligned memory (see io/aligned-buffer.ts).
 *
 * Zero copy: a chunk that lies within one block is handed out as a view of the block together
 * with the block's lease, so image writers write straight from it; the block returns to the pool
 * once the cursor has moved past it and every holder let go (ChunkBufferPool). Only a chunk that
 * straddles two blocks (about one in four) is copied, into a pooled chunk buffer.
 *
 * The decoder thread's ring (compressed input, stdin) lends its blocks too, and they lie back to
 * back in one memory: a chunk that straddles two neighbouring ring blocks is handed out as one
 * view across both, holding both leases — only a chunk that straddles the ring's wrap (from its
 * last block to its first) is copied. HTTP is read from the stream's chunks (streamBlockSource);
 * there every chunk is copied once into a pooled buffer.
 *
 * Headers are decoded by `walkTarEntries`, the same code that walks headers positionally for
 * structure-only passes, so both read an archive alike.
 */
import * as fs from 'node:fs';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { ChunkBufferPool, type PooledBuffer } from '../io/buffer-pool';
import type { BlockSource, InputSource } from '../input/types';
import { openFd, unreadable } from '../io/open-file';
import { pread } from '../io/pread';
import type { BufferLease } from '../io/disk';
import { TarEntryBase, type TarEntry, type TarReader } from './entries';
import { tarTruncated, walkTarEntries, type WalkedEntry } from './header-walker';

/** Bytes per block read (page-aligned buffers). */
export const FILE_BLOCK_BYTES = 4 * 1024 * 1024;
/**
 * Block reads in flight ahead of the block being parsed. One keeps up (a 4 MiB read from the
 * page cache takes ~1 ms, parsing and hashing the block ~4 ms); a second one cost ~4 MB of peak
 * memory and gained nothing measurable.
 */
export const FILE_READ_AHEAD = 1;
/** Copy buffers (chunks that straddle two blocks, or a stream's): one XVA chunk. */
const COPY_BUFFER_BYTES = 1024 * 1024;
/** A chunk handed out stays valid until the consumer has pulled this many more entries (data, checksum, write). */
const LEND_PULLS = 3;

export type { BlockSource };

const fsClose = promisify(fs.close);

/**
 * A regular file read in FILE_BLOCK_BYTES blocks, FILE_READ_AHEAD reads ahead of the block being
 * parsed. `input` names the file in errors (INPUT_UNREADABLE with the byte offset).
 */
export async function openFileBlockSource(path: string, input = path): Promise<BlockSource> {
  const { fd, stat } = await openFd(path);
  const size = stat.size;
  const pool = new ChunkBufferPool(FILE_BLOCK_BYTES);
  const ahead: Array<Promise<PooledBuffer | null>> = [];
  let nextOffset = 0;
  let closed = false;

  const readBlock = async (offset: number): Promise<PooledBuffer | null> => {
    const want = Math.min(FILE_BLOCK_BYTES, size - offset);
    if (want <= 0) return null;
    const p = pool.take();
    try {
      let got = 0;
      while (got < want) {
        const n = await pread(fd, p.buf, got, want - got, offset + got);
        if (n === 0) break; // the file shrank: the parser reports the truncation
        got += n;
      }
      if (got === 0) {
        p.release();
        return null;
      }
      return { buf: p.buf.subarray(0, got), lease: p.lease, release: p.release };
    } catch (err) {
      p.release();
      throw unreadable(input, `cannot read input at byte ${offset}`, err);
    }
  };
  const topUp = (): void => {
    while (!closed && ahead.length < FILE_READ_AHEAD && nextOffset < size) {
      const r = readBlock(nextOffset);
      r.catch(() => {}); // reported when the parser gets to it
      ahead.push(r);
      nextOffset += FILE_BLOCK_BYTES;
    }
  };

  return {
    size,
    lendsBlocks: true,
    next() {
      topUp();
      const r = ahead.shift();
      topUp(); // keep FILE_READ_AHEAD reads going while this block is parsed
      return r ?? Promise.resolve(null);
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled(ahead);
      await fsClose(fd);
    },
  };
}

/** Decoded bytes queued ahead of the parser (the decoder keeps working meanwhile). */
export const STREAM_QUEUE_BYTES = 4 * 1024 * 1024;

/**
 * The chunks of a byte stream (the decoded output of gzip/zstd, stdin, HTTP) as blocks, as they
 * come: no concatenation. Entries are copied out of them (lendsBlocks false), once, into pooled
 * buffers that writers then hold. Backpressure: the stream is paused while STREAM_QUEUE_BYTES
 * are queued.
 */
export function streamBlockSource(stream: Readable): BlockSource {
  const queue: Buffer[] = [];
  let queued = 0;
  let ended = false;
  let failure: { err: unknown } | undefined;
  let waiter: ((b: PooledBuffer | null | Error) => void) | undefined;
  let closed = false;

  const settle = (): void => {
    const w = waiter;
    if (!w) return;
    const b = queue.shift();
    if (b) {
      queued -= b.length;
      if (queued < STREAM_QUEUE_BYTES && !ended && !closed) stream.resume();
      waiter = undefined;
      w({ buf: b, lease: NO_LEASE, release: () => {} });
    } else if (failure) {
      waiter = undefined;
      w(failure.err instanceof Error ? failure.err : new Error(String(failure.err)));
    } else if (ended) {
      waiter = undefined;
      w(null);
    }
  };
  const onData = (chunk: Buffer): void => {
    if (chunk.length === 0) return;
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= STREAM_QUEUE_BYTES) stream.pause();
    settle();
  };
  const onEnd = (): void => {
    ended = true;
    settle();
  };
  const onError = (err: unknown): void => {
    failure ??= { err };
    settle();
  };
  stream.on('data', onData);
  stream.on('end', onEnd);
  stream.on('error', onError);

  const next = (): Promise<PooledBuffer | null> =>
    new Promise((resolve, reject) => {
      waiter = (b) => (b instanceof Error ? reject(b) : resolve(b));
      settle();
    });
  return {
    next,
    lendsBlocks: false,
    failure: () => failure?.err,
    async drain() {
      while (await next());
    },
    async close() {
      if (closed) return;
      closed = true;
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      // The error listener stays: a late error from a destroyed stream must not go unhandled.
      queue.length = 0;
      stream.destroy();
    },
  };
}

/** The decoded bytes of an opened input as blocks: its own when it has them, else its stream's chunks. */
export function inputBlocks(source: InputSource): BlockSource {
  return source.kind === 'blocks' ? source.blocks : streamBlockSource(source.stream);
}

/** Entry data handed out by the cursor: valid until `release()`; `lease` lets writers hold it longer. */
interface TakenData {
  data: Buffer;
  lease: BufferLease;
  release: () => void;
}

const NO_LEASE: BufferLease = { hold: () => () => {} };

/** Whether `b` starts in the same memory exactly where `a` ends (one view can cover both). */
function adjacent(a: Buffer, b: Buffer): boolean {
  return a.buffer === b.buffer && a.byteOffset + a.length === b.byteOffset;
}

/** A lease whose hold keeps both blocks (a view across two ring blocks). */
function bothLeases(a: BufferLease, b: BufferLease): BufferLease {
  return {
    hold: () => {
      const ra = a.hold();
      const rb = b.hold();
      return () => {
        ra();
        rb();
      };
    },
  };
}

/** A forward-only reader over a BlockSource: offsets asked for never go backwards. */
export class BlockCursor {
  private cur: PooledBuffer | null = null;
  /** The block after cur, once fetched to see whether a chunk can be viewed across both (null: the end). */
  private ahead: PooledBuffer | null | undefined;
  /** Input offset of cur.buf[0] (or of the next block while cur is null). */
  private curStart = 0;
  private ended = false;

  constructor(private readonly source: BlockSource) {}

  /** The next block: the one fetched ahead, if any. */
  private fetch(): Promise<PooledBuffer | null> {
    const b = this.ahead;
    if (b === undefined) return this.source.next();
    this.ahead = undefined;
    return Promise.resolve(b);
  }

  /** Makes the block holding `offset` current (releasing the ones passed); false past the end. */
  private async seek(offset: number): Promise<boolean> {
    if (offset < this.curStart) throw new Error(`BlockCursor: offset ${offset} is behind the cursor (${this.curStart})`);
    while (!this.cur || offset >= this.curStart + this.cur.buf.length) {
      if (this.cur) {
        this.curStart += this.cur.buf.length;
        this.cur.release();
        this.cur = null;
      }
      if (this.ended) return false;
      const b = await this.fetch();
      if (!b) {
        this.ended = true;
        return false;
      }
      this.cur = b;
    }
    return true;
  }

  /** Copies the input from `offset` into `out`; returns the bytes copied (fewer at the end). */
  private async copyInto(offset: number, out: Buffer): Promise<number> {
    let got = 0;
    while (got < out.length && (await this.seek(offset + got))) {
      const cur = this.cur!;
      const rel = offset + got - this.curStart;
      got += cur.buf.copy(out, got, rel, Math.min(cur.buf.length, rel + out.length - got));
    }
    return got;
  }

  /** `length` bytes at `offset` (fewer at the end), valid until the next call. */
  async readAt(offset: number, length: number): Promise<Buffer> {
    if (!(await this.seek(offset))) return Buffer.alloc(0);
    const rel = offset - this.curStart;
    if (rel + length <= this.cur!.buf.length) return this.cur!.buf.subarray(rel, rel + length);
    const out = Buffer.allocUnsafe(length);
    return out.subarray(0, await this.copyInto(offset, out));
  }

  /**
   * `length` bytes at `offset` that stay valid until released; null when the input ends first.
   * A view of the current block when the source lends its blocks and the bytes lie inside one;
   * otherwise a copy (into `copyPool` when they fit).
   */
  async take(offset: number, length: number, copyPool: ChunkBufferPool): Promise<TakenData | null> {
    if (length === 0) return { data: Buffer.alloc(0), lease: NO_LEASE, release: () => {} };
    if (!(await this.seek(offset))) return null;
    const cur = this.cur!;
    const rel = offset - this.curStart;
    if (this.source.lendsBlocks) {
      if (rel + length <= cur.buf.length) {
        return { data: cur.buf.subarray(rel, rel + length), lease: cur.lease, release: cur.lease.hold() };
      }
      if (this.ahead === undefined) this.ahead = await this.source.next();
      const ahead = this.ahead;
      if (ahead && adjacent(cur.buf, ahead.buf) && rel + length <= cur.buf.length + ahead.buf.length) {
        const lease = bothLeases(cur.lease, ahead.lease);
        return { data: Buffer.from(cur.buf.buffer, cur.buf.byteOffset + rel, length), lease, release: lease.hold() };
      }
    }
    if (length <= copyPool.bufferSize) {
      const p = copyPool.take();
      const data = p.buf.subarray(0, length);
      if ((await this.copyInto(offset, data)) < length) {
        p.release();
        return null;
      }
      return { data, lease: p.lease, release: p.release };
    }
    const data = Buffer.allocUnsafe(length);
    if ((await this.copyInto(offset, data)) < length) return null;
    return { data, lease: NO_LEASE, release: () => {} };
  }

  /** The input's length, once its end has been reached. */
  endOffset(): number | undefined {
    return this.ended ? this.curStart : undefined;
  }

  /** Lets go of the current block (end of reading). */
  dispose(): void {
    this.cur?.release();
    this.cur = null;
    this.ahead?.release();
    this.ahead = undefined;
  }
}

/** What the entries of one blockTarReader share: the cursor, the copy pool and the lent bodies. */
class BlockEntryBodies {
  /** Entries pulled so far. */
  private pulls = 0;
  /** Bodies handed out, released LEND_PULLS pulls later (oldest first). */
  private readonly lent: Array<{ release: () => void; atPull: number }> = [];
  private readonly copyPool = new ChunkBufferPool(COPY_BUFFER_BYTES);

  constructor(
    private readonly cursor: BlockCursor,
    private readonly source: BlockSource,
    private readonly input: string,
  ) {}

  /** A tar error found in bytes that came before a stream error is a consequence of it (a corrupt or cut compressed stream): the stream's error. */
  explain(err: unknown): unknown {
    return this.source.failure?.() ?? err;
  }

  /** Counts a pulled entry and lets go of the bodies handed out LEND_PULLS pulls ago. */
  pulled(): void {
    this.pulls++;
    while (this.lent.length > 0 && this.lent[0]!.atPull <= this.pulls - LEND_PULLS) this.lent.shift()!.release();
  }

  async take(e: WalkedEntry): Promise<TakenData> {
    const t = await this.cursor.take(e.dataOffset, e.size, this.copyPool);
    if (!t) throw tarTruncated(this.input, `entry "${e.name.slice(0, 100)}" is cut short`, e.headerOffset, this.source.size);
    this.lent.push({ release: t.release, atPull: this.pulls });
    return t;
  }

  releaseAll(): void {
    for (const l of this.lent.splice(0)) l.release();
  }
}

/** One entry of a blockTarReader (prototype methods: see TarEntryBase). */
class BlockTarEntry extends TarEntryBase {
  private taken: Promise<TakenData> | undefined;

  constructor(
    e: WalkedEntry,
    private readonly bodies: BlockEntryBodies,
  ) {
    super(e);
  }

  /** The body, taken from the cursor once however often it is asked for. */
  private async body(): Promise<TakenData> {
    try {
      return await (this.taken ??= this.bodies.take(this));
    } catch (err) {
      throw this.bodies.explain(err);
    }
  }

  async readLeased(): Promise<{ data: Buffer; lease: BufferLease }> {
    const t = await this.body();
    return { data: t.data, lease: t.lease };
  }

  async readAll(): Promise<Buffer> {
    return (await this.body()).data;
  }
}

/**
 * Tar entries over a BlockSource, as the TarReader that readXva consumes. `readAll()` and
 * `readLeased()` return the same bytes; they stay valid until the consumer has pulled
 * LEND_PULLS more entries (longer for writers that hold the lease).
 */
export function blockTarReader(source: BlockSource, options: { input: string; signal?: AbortSignal }): TarReader {
  const cursor = new BlockCursor(source);
  const bodies = new BlockEntryBodies(cursor, source, options.input);
  let consumed = 0;
  let endSeen = false;
  const walk = walkTarEntries({
    input: options.input,
    size: source.size,
    signal: options.signal,
    readAt: (offset, length) => cursor.readAt(offset, length),
    endOffset: () => cursor.endOffset(),
    onConsumed: (c, e) => {
      consumed = c;
      endSeen = e;
    },
  });

  async function* entries(): AsyncGenerator<TarEntry> {
    try {
      for await (const e of walk) {
        bodies.pulled();
        yield new BlockTarEntry(e, bodies);
      }
      await source.drain?.(); // let a pipe's writer finish (tar pads after the end marker)
    } catch (err) {
      throw bodies.explain(err);
    }
  }
  const it = entries();
  return {
    [Symbol.asyncIterator]: () => it,
    bytesConsumed: () => consumed,
    endBlocksSeen: () => endSeen,
    destroy: () => {
      bodies.releaseAll();
      cursor.dispose();
      void source.close().catch(() => {});
    },
  };
}
