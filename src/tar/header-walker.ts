/**
 * Seek-based tar walker for plain (uncompressed) regular files: reads only the 512-byte header
 * blocks with positional reads and jumps over entry data by arithmetic, never reading it.
 * A 6 GiB XVA has ~12 000 headers, so walking it costs a few thousand small reads instead of
 * 6 GiB of I/O. Headers are decoded (and their checksums verified) by `decodeTarHeader`.
 *
 * Used where data is not needed (`info --chunks`, `measure --fast`, OVA inspection);
 * conversions read the whole file front to back instead (block-reader.ts). Both decode headers
 * with `walkTarEntries` (below): V7, ustar and old-GNU headers, PAX `x` headers (path/size
 * overrides; `g` ignored), GNU `L` long names, directory entries, a leading `./`; the walk stops
 * at the first all-zero header block.
 *
 * Each read fetches a header plus READAHEAD bytes after it: a checksum entry's header, its
 * 16-40 bytes of data and the next chunk's header share one read, so a 1 MiB chunk with its
 * checksum costs one 1.5 KiB read (~10 MiB read for a 6 GiB archive). Because XVA headers sit
 * at a regular stride, the next few header reads are issued in parallel ahead of time.
 */
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { XvaError, XvaFormatError } from '../errors';
import { openFd } from '../io/open-file';
import { pread } from '../io/pread';
import { plausibleName, TarEntryBase, type TarEntry, type TarReader } from './entries';
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

const fsClose = promisify(fs.close);

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

/** What `walkTarEntries` reads through: positional reads of a file, or a forward-only block cursor. */
export interface TarWalkAccess {
  /** Input name for error locations. */
  input: string;
  /** Size of the input when known (a file): an entry running past it fails before it is yielded. */
  size?: number;
  signal?: AbortSignal;
  /**
   * `length` bytes at `offset` (fewer only at the end of the input). The view may be used until
   * the next call. Offsets are at or after the end of the previously yielded entry's header.
   */
  readAt(offset: number, length: number): Promise<Buffer>;
  /** Bytes accounted for (headers and data passed over); `endSeen` once the end marker is found. */
  onConsumed(consumed: number, endSeen: boolean): void;
  /** For a stream: its length once it has ended (tells a cut entry from a clean end). */
  endOffset?(): number | undefined;
}

/** A tar error for an input that ends early; `size` is where it ends when known. */
export function tarTruncated(input: string, what: string, at: number, size: number | undefined): XvaFormatError {
  const where = size !== undefined ? ` (file ends at byte ${size})` : '';
  return new XvaFormatError('TAR_TRUNCATED', `archive truncated: ${what}${where}`, { input, offset: at });
}

/**
 * The tar entries of an input, in order, without reading their data: headers are decoded (and
 * their checksums verified) by `decodeTarHeader`; PAX `x` path/size overrides and GNU `L` long
 * names are applied (`g` ignored), directories are bodyless, a leading `./` is dropped; the walk
 * stops at the first all-zero header block.
 */
export async function* walkTarEntries(a: TarWalkAccess): AsyncGenerator<WalkedEntry> {
  const { input, size: fileSize } = a;
  const truncated = (what: string, at: number): XvaFormatError => tarTruncated(input, what, at, fileSize);
  let offset = 0;
  let paxPath: string | undefined;
  let paxSize: number | undefined;
  let longName: string | undefined;
  let previous: WalkedEntry | undefined;
  for (;;) {
    if (a.signal?.aborted) throw a.signal.reason;
    const block = fileSize !== undefined && offset >= fileSize ? Buffer.alloc(0) : await a.readAt(offset, TAR_BLOCK);
    if (block.length === 0) {
      const end = a.endOffset?.();
      if (end !== undefined && end < offset && previous) {
        throw truncated(`entry "${previous.name.slice(0, 100)}" is cut short (the input ends at byte ${end})`, previous.headerOffset);
      }
      // The input stops right after an entry: no end-of-archive marker.
      a.onConsumed(offset, false);
      return;
    }
    if (block.length < TAR_BLOCK) throw truncated(`partial header block at byte ${offset}`, offset);
    let header;
    try {
      header = decodeTarHeader(block);
    } catch (err) {
      const detail = err instanceof XvaError ? err.message : String(err);
      throw new XvaFormatError('TAR_BAD_HEADER', `invalid tar header at byte ${offset} (${detail})`, { input, offset });
    }
    if (header === null) {
      const end = offset + 2 * TAR_BLOCK;
      if (fileSize !== undefined) a.onConsumed(Math.min(fileSize, end), fileSize >= end);
      else {
        // A stream: the second zero block must be there too.
        const second = await a.readAt(offset + TAR_BLOCK, TAR_BLOCK);
        a.onConsumed(offset + TAR_BLOCK + second.length, second.length === TAR_BLOCK);
      }
      return;
    }
    const size = paxSize ?? header.size;
    const dataOffset = offset + TAR_BLOCK;
    if (fileSize !== undefined && header.typeflag !== TYPE_DIRECTORY && dataOffset + size > fileSize) {
      throw truncated(`entry "${(paxPath ?? longName ?? header.name).slice(0, 100)}" needs ${size} bytes of data from byte ${dataOffset}`, offset);
    }
    const flag = header.typeflag;
    if (flag === TYPE_PAX_HEADER || flag === TYPE_PAX_GLOBAL || flag === TYPE_GNU_LONGNAME) {
      if (header.size > MAX_META_ENTRY) {
        throw new XvaFormatError('TAR_BAD_HEADER', `tar extension header of ${header.size} bytes at byte ${offset} is too large`, { input, offset });
      }
      const body = Buffer.from(await a.readAt(dataOffset, header.size));
      if (body.length < header.size) throw truncated(`tar extension header at byte ${offset} is cut short`, offset);
      if (flag === TYPE_PAX_HEADER) {
        const pax = parsePax(body);
        if (pax.path !== undefined) paxPath = pax.path;
        if (pax.size !== undefined) paxSize = pax.size;
      } else if (flag === TYPE_GNU_LONGNAME) {
        const nul = body.indexOf(0);
        longName = body.toString('utf8', 0, nul < 0 ? body.length : nul);
      }
      offset = dataOffset + padded(header.size);
      a.onConsumed(offset, false);
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
    a.onConsumed(fileSize !== undefined ? Math.min(offset, fileSize) : offset, false);
    previous = entry;
    yield entry;
  }
}

/** Opens `path` for header walking. `input` names it in error messages. */
export async function openTarHeaderWalker(path: string, options: { input?: string; signal?: AbortSignal } = {}): Promise<TarHeaderWalker> {
  const input = options.input ?? path;
  // Open errors are the input's (INPUT_UNREADABLE naming the path), as for every other reader.
  const { fd, stat } = await openFd(path);
  const fileSize = stat.size;
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
      const n = await pread(fd, out, got, out.length - got, offset + got);
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

  const truncated = (what: string, at: number): XvaFormatError => tarTruncated(input, what, at, fileSize);
  const entries = (): AsyncGenerator<WalkedEntry> =>
    walkTarEntries({
      input,
      size: fileSize,
      signal: options.signal,
      readAt,
      onConsumed: (c, e) => {
        consumed = c;
        endSeen = e;
      },
    });

  return {
    entries,
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

/** One entry of a walkerTarReader (prototype methods: see TarEntryBase). */
class WalkedTarEntry extends TarEntryBase {
  constructor(
    private readonly entry: WalkedEntry,
    private readonly walker: TarHeaderWalker,
  ) {
    super(entry);
  }

  readAll(): Promise<Buffer> {
    return this.walker.readData(this.entry);
  }
}

/**
 * The walker as a TarReader (the interface readXva and inspect consume) for structure-only
 * passes (`info --chunks`, `measure --fast`, `verify --fast`): entry data is never read unless
 * asked for, `skip()` costs nothing, and only the headers are touched. Conversions of a plain
 * file read it front to back instead (block-reader.ts).
 */
export function walkerTarReader(walker: TarHeaderWalker): TarReader {
  const gen = walker.entries();
  async function* entries(): AsyncGenerator<TarEntry> {
    for await (const entry of gen) yield new WalkedTarEntry(entry, walker);
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
