/**
 * Seek-based tar walker for plain (uncompressed) regular files: reads only the 512-byte header
 * blocks with positional reads and jumps over entry data by arithmetic, never reading it.
 * A 6 GiB XVA has ~12 000 headers, so walking it costs a few thousand small reads instead of
 * 6 GiB of I/O. Headers are decoded (and their checksums verified) by `decodeTarHeader`.
 *
 * Understands what `readTar` (src/tar/entries.ts) accepts: V7, ustar and old-GNU headers, PAX
 * `x` headers (path/size overrides; `g` ignored), GNU `L` long names, directory entries, a
 * leading `./`. It stops at the first all-zero header block.
 *
 * Each read fetches a header plus READAHEAD bytes after it: a checksum entry's header, its
 * 16-40 bytes of data and the next chunk's header share one read, so a 1 MiB chunk with its
 * checksum costs one 1.5 KiB read (~10 MiB read for a 6 GiB archive). Because XVA headers sit
 * at a regular stride, the next few header reads are issued in parallel ahead of time.
 */
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { XvaError, XvaFormatError } from '../errors';
import { allocAligned } from '../input/aligned-buffer';
import { plausibleName, type TarEntry, type TarReader } from './entries';
import { decodeTarHeader, isRegularFileType, tarPadding, TAR_BLOCK, TYPE_DIRECTORY, TYPE_GNU_LONGNAME, TYPE_PAX_GLOBAL, TYPE_PAX_HEADER } from './header';

/** Bytes read at a header: the header, a small entry's data block and the next header. */
const READAHEAD = 3 * 512;
/** Largest read served through the window buffer. */
const WINDOW = 64 * 1024;
/** Header blocks read ahead in parallel once the stride between headers is stable. */
const PREFETCH = 16;
/** Largest PAX / GNU long-name body we read (they are tiny in practice). */
const MAX_META_ENTRY = 1024 * 1024;

export interface WalkedEntry {
  /** Entry name with a leading `./` removed (PAX path / GNU long name applied). */
  name: string;
  size: number;
  type: 'file' | 'directory' | 'other';
  /** Byte offset of the entry's own header (after any PAX/GNU extension headers). */
  headerOffset: number;
  dataOffset: number;
}

export interface TarHeaderWalker {
  /** Entries in archive order; data is never read. */
  entries(): AsyncGenerator<WalkedEntry>;
  /** Reads an entry's data (only for small entries such as ova.xml or a checksum file). */
  readData(entry: WalkedEntry): Promise<Buffer>;
  /** Reads an entry's data into `into` (length >= entry.size) with positional reads; returns the view. */
  readDataInto(entry: WalkedEntry, into: Buffer): Promise<Buffer>;
  /** After iteration: whether the archive ended with (at least) the 1024 zero bytes of its end marker. */
  endBlocksSeen(): boolean;
  /** Bytes of the file accounted for so far (headers and skipped data). */
  bytesConsumed(): number;
  /** Number of positional reads issued (for tests and benchmarks). */
  readCount(): number;
  /** Bytes actually read from the file (headers, small entries, read-ahead). */
  bytesRead(): number;
  readonly fileSize: number;
  close(): Promise<void>;
}

const fsOpen = promisify(fs.open);
const fsFstat = promisify(fs.fstat);
const fsClose = promisify(fs.close);
const fsRead = (fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> =>
  new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));

function padded(size: number): number {
  return size + tarPadding(size);
}

function typeOf(flag: string): WalkedEntry['type'] {
  if (isRegularFileType(flag)) return 'file';
  if (flag === TYPE_DIRECTORY) return 'directory';
  return 'other';
}

/** Parses PAX records (`<len> <key>=<value>\n`), returning path and size when present. */
function parsePax(body: Buffer): { path?: string; size?: number } {
  const out: { path?: string; size?: number } = {};
  let at = 0;
  while (at < body.length) {
    const space = body.indexOf(0x20, at);
    if (space < 0) break;
    const len = Number(body.toString('latin1', at, space));
    if (!Number.isInteger(len) || len <= 0 || at + len > body.length) break;
    const record = body.toString('utf8', space + 1, at + len - 1); // drop the trailing newline
    const eq = record.indexOf('=');
    if (eq > 0) {
      const key = record.slice(0, eq);
      const value = record.slice(eq + 1);
      if (key === 'path') out.path = value;
      else if (key === 'size' && /^\d+$/.test(value)) out.size = Number(value);
    }
    at += len;
  }
  return out;
}

/** Opens `path` for header walking. `input` names it in error messages. */
export async function openTarHeaderWalker(path: string, options: { input?: string; signal?: AbortSignal } = {}): Promise<TarHeaderWalker> {
  const input = options.input ?? path;
  const fd = await fsOpen(path, 'r');
  let fileSize: number;
  try {
    fileSize = (await fsFstat(fd)).size;
  } catch (err) {
    await fsClose(fd).catch(() => {});
    throw err;
  }
  let win: Buffer = Buffer.alloc(0);
  let winStart = 0;
  let reads = 0;
  let bytesRead = 0;
  let consumed = 0;
  let endSeen = false;
  let closed = false;
  // Speculative reads: headers of an XVA sit at a fixed stride (1 MiB chunk + its checksum
  // entry), so once two misses in a row are the same distance apart, the next PREFETCH header
  // blocks are read in parallel. This only hides I/O latency; a wrong guess costs one small read.
  const inflight = new Map<number, Promise<Buffer>>();
  let lastMiss = -1;
  let stride = 0;

  /** Up to `length` bytes at `offset` into a new buffer (fewer only at end of file). */
  const readBlock = async (offset: number, length: number): Promise<Buffer> => {
    const out = Buffer.allocUnsafe(Math.max(0, Math.min(length, fileSize - offset)));
    let got = 0;
    while (got < out.length) {
      reads++;
      const n = await fsRead(fd, out, got, out.length - got, offset + got);
      if (n === 0) break;
      got += n;
      bytesRead += n;
    }
    return out.subarray(0, got);
  };

  const speculate = (offset: number): void => {
    const s = lastMiss >= 0 ? offset - lastMiss : 0;
    const stable = s > 0 && s === stride;
    stride = s;
    lastMiss = offset;
    for (const o of inflight.keys()) if (o < offset) inflight.delete(o); // guesses that missed
    if (!stable) return;
    for (let k = 1; k <= PREFETCH; k++) {
      const o = offset + k * s;
      if (o + TAR_BLOCK > fileSize) break;
      if (inflight.has(o)) continue;
      const p = readBlock(o, READAHEAD);
      p.catch(() => {}); // an unused guess must not become an unhandled rejection
      inflight.set(o, p);
    }
  };

  /** `length` bytes at `offset` (fewer only at end of file). The view stays valid. */
  const readAt = async (offset: number, length: number): Promise<Buffer> => {
    if (offset >= winStart && offset + length <= winStart + win.length) {
      return win.subarray(offset - winStart, offset - winStart + length);
    }
    if (length > WINDOW) return readBlock(offset, length);
    const want = Math.max(length, READAHEAD);
    const guessed = inflight.get(offset);
    inflight.delete(offset);
    speculate(offset);
    let buf = guessed ? await guessed : undefined;
    if (!buf || buf.length < Math.min(want, fileSize - offset)) buf = await readBlock(offset, want);
    win = buf;
    winStart = offset;
    return buf.subarray(0, Math.min(length, buf.length));
  };

  const truncated = (what: string, at: number): XvaFormatError =>
    new XvaFormatError('TAR_TRUNCATED', `archive truncated: ${what} (file ends at byte ${fileSize})`, { input, offset: at });

  async function* entries(): AsyncGenerator<WalkedEntry> {
    let offset = 0;
    let paxPath: string | undefined;
    let paxSize: number | undefined;
    let longName: string | undefined;
    for (;;) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (offset >= fileSize) {
        // The file stops right after an entry: no end-of-archive marker.
        consumed = offset;
        return;
      }
      const block = await readAt(offset, TAR_BLOCK);
      if (block.length < TAR_BLOCK) throw truncated(`partial header block at byte ${offset}`, offset);
      let header;
      try {
        header = decodeTarHeader(block);
      } catch (err) {
        const detail = err instanceof XvaError ? err.message : String(err);
        throw new XvaFormatError('TAR_BAD_HEADER', `invalid tar header at byte ${offset} (${detail})`, { input, offset });
      }
      if (header === null) {
        consumed = Math.min(fileSize, offset + 2 * TAR_BLOCK);
        endSeen = fileSize >= offset + 2 * TAR_BLOCK;
        return;
      }
      const size = paxSize ?? header.size;
      const dataOffset = offset + TAR_BLOCK;
      if (header.typeflag !== TYPE_DIRECTORY && dataOffset + size > fileSize) {
        throw truncated(`entry "${(paxPath ?? longName ?? header.name).slice(0, 100)}" needs ${size} bytes of data from byte ${dataOffset}`, offset);
      }
      const flag = header.typeflag;
      if (flag === TYPE_PAX_HEADER || flag === TYPE_PAX_GLOBAL || flag === TYPE_GNU_LONGNAME) {
        if (header.size > MAX_META_ENTRY) {
          throw new XvaFormatError('TAR_BAD_HEADER', `tar extension header of ${header.size} bytes at byte ${offset} is too large`, { input, offset });
        }
        const body = Buffer.from(await readAt(dataOffset, header.size));
        if (flag === TYPE_PAX_HEADER) {
          const pax = parsePax(body);
          if (pax.path !== undefined) paxPath = pax.path;
          if (pax.size !== undefined) paxSize = pax.size;
        } else if (flag === TYPE_GNU_LONGNAME) {
          const nul = body.indexOf(0);
          longName = body.toString('utf8', 0, nul < 0 ? body.length : nul);
        }
        offset = dataOffset + padded(header.size);
        consumed = offset;
        continue;
      }
      const rawName = paxPath ?? longName ?? header.name;
      // Same rules as the streaming reader (entries.ts), so both paths read an archive alike:
      // implausible names are refused, and a directory is bodyless whatever its size field says.
      if (!plausibleName(rawName)) {
        throw new XvaFormatError('TAR_BAD_HEADER', `implausible tar entry name at byte ${offset}`, { input, offset });
      }
      const name = rawName.replace(/^(\.\/)+/, '');
      paxPath = undefined;
      paxSize = undefined;
      longName = undefined;
      const bodySize = flag === TYPE_DIRECTORY ? 0 : size;
      const entry: WalkedEntry = { name, size: bodySize, type: typeOf(flag), headerOffset: offset, dataOffset };
      offset = dataOffset + padded(bodySize);
      consumed = Math.min(offset, fileSize);
      yield entry;
    }
  }

  return {
    entries,
    async readDataInto(entry, into) {
      let got = 0;
      while (got < entry.size) {
        reads++;
        const n = await fsRead(fd, into, got, entry.size - got, entry.dataOffset + got);
        if (n === 0) throw truncated(`entry "${entry.name.slice(0, 100)}" is cut short`, entry.headerOffset);
        got += n;
        bytesRead += n;
      }
      return into.subarray(0, entry.size);
    },
    async readData(entry) {
      const data = await readAt(entry.dataOffset, entry.size);
      if (data.length < entry.size) throw truncated(`entry "${entry.name.slice(0, 100)}" is cut short`, entry.headerOffset);
      return Buffer.from(data); // a copy: the window is reused
    },
    endBlocksSeen: () => endSeen,
    bytesConsumed: () => consumed,
    readCount: () => reads,
    bytesRead: () => bytesRead,
    fileSize,
    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled([...inflight.values()]);
      inflight.clear();
      await fsClose(fd);
    },
  };
}

/** Entries at least this large are read ahead (chunk data); smaller ones come from the header window. */
const PREFETCH_MIN_BYTES = 64 * 1024;
/** Larger entries are not prefetched (XAPI chunks are 1 MiB; foreign writers stay close). */
const PREFETCH_MAX_BYTES = 16 * 1024 * 1024;
/** Entries queued ahead of the consumer (data + checksum pairs: about 4 chunks in flight). */
const PREFETCH_DEPTH = 8;
/** A buffer handed out by readAll stays valid until the consumer has pulled this many more entries. */
const LEND_PULLS = 3;
/** Pool buffer size: one XVA chunk. */
const POOL_BUFFER_BYTES = 1024 * 1024;

interface Queued {
  entry: WalkedEntry;
  /** Prefetched data (large entries when `readData`). */
  data?: Promise<Buffer>;
  buf?: Buffer;
}

/**
 * The walker as a TarReader (the interface readXva consumes).
 *
 * Without `readData` (structure-only passes such as `info --chunks`, `measure --fast`) data is
 * never read: `skip()` costs nothing and only the headers are touched.
 *
 * With `readData` (a full conversion of a plain file) chunk data is read with positional reads
 * straight into pooled buffers, PREFETCH_DEPTH entries ahead of the consumer, so the kernel
 * copies the next chunks while the main thread hashes and writes this one — no stream layers,
 * no tar-stream, no copy in user space. `readAll()` returns the pooled buffer itself (not
 * `into`); it stays valid until the consumer has pulled LEND_PULLS more entries, which covers
 * the reader's use (data entry, its checksum entry, then the write).
 */
export function walkerTarReader(walker: TarHeaderWalker, options: { readData?: boolean } = {}): TarReader {
  const gen = walker.entries();
  const queue: Queued[] = [];
  const pool: Buffer[] = [];
  const lent: Array<{ release: () => void; atPull: number }> = [];
  let pulls = 0;
  let ended = false;
  let failure: { err: unknown } | undefined;

  const recycle = (q: Queued): void => {
    const buf = q.buf;
    if (!buf || buf.length !== POOL_BUFFER_BYTES) return;
    // Only once the read into it has settled may the buffer be reused.
    void q.data!.then(
      () => pool.push(buf),
      () => pool.push(buf),
    );
  };

  const enqueue = (entry: WalkedEntry): void => {
    const q: Queued = { entry };
    if (options.readData && entry.type === 'file' && entry.size >= PREFETCH_MIN_BYTES && entry.size <= PREFETCH_MAX_BYTES) {
      // Page-aligned: the kernel copies into an aligned buffer ~4x faster (see aligned-buffer.ts).
      q.buf = entry.size <= POOL_BUFFER_BYTES ? (pool.pop() ?? allocAligned(POOL_BUFFER_BYTES)) : allocAligned(entry.size);
      q.data = walker.readDataInto(entry, q.buf);
      q.data.catch(() => {}); // reported when (if) the consumer asks for it
    }
    queue.push(q);
  };

  async function* entries(): AsyncGenerator<TarEntry> {
    for (;;) {
      while (!ended && queue.length < (options.readData ? PREFETCH_DEPTH : 1)) {
        try {
          const r = await gen.next();
          if (r.done) ended = true;
          else enqueue(r.value);
        } catch (err) {
          // A bad header ahead must not pre-empt the entries before it: hand those out first,
          // as a sequential reader would, then fail.
          ended = true;
          failure = { err };
        }
      }
      const q = queue.shift();
      if (!q) {
        if (failure) throw failure.err;
        return;
      }
      pulls++;
      while (lent.length > 0 && lent[0].atPull <= pulls - LEND_PULLS) lent.shift()!.release();
      let used = false;
      yield {
        ...q.entry,
        readAll: async (into?: Buffer) => {
          used = true;
          if (q.data) {
            const data = await q.data;
            lent.push({ release: () => recycle(q), atPull: pulls });
            return data;
          }
          const data = await walker.readData(q.entry);
          if (!into || into.length < data.length) return data;
          data.copy(into);
          return into.subarray(0, data.length);
        },
        skip: async () => {
          if (!used && q.data) {
            used = true;
            recycle(q);
          }
        },
      };
      if (!used && q.data) recycle(q);
    }
  }
  const it = entries();
  return {
    [Symbol.asyncIterator]: () => it,
    bytesConsumed: () => walker.bytesConsumed(),
    endBlocksSeen: () => walker.endBlocksSeen(),
    destroy: () => {
      void walker.close().catch(() => {});
    },
  };
}
