/**
 * The TarReader seam: tar entries as an async iterator, whatever reads them — the block reader
 * (block-reader.ts: a plain file front to back, or a decoded stream's chunks) or the header
 * walker (header-walker.ts: structure-only passes over a plain file). Both decode headers with
 * `walkTarEntries`: V7 (what XAPI writes: no ustar magic), ustar, GNU long names and pax.
 *
 * Contract:
 *  - entries come in archive order; an entry's data is read (`readAll`) or skipped (`skip`)
 *    before the next entry is pulled;
 *  - errors are typed XvaFormatErrors that carry the byte offset of the header concerned;
 *  - `endBlocksSeen()` tells, after the last entry, whether the archive ended with its zero
 *    blocks (a stream that stops right after an entry without them was probably truncated).
 */
import type { BufferLease } from '../io/disk';

export interface TarEntry {
  /** Entry name with a leading `./` removed. */
  name: string;
  size: number;
  type: 'file' | 'directory' | 'other';
  /** Byte offset of the entry's header in the tar stream. */
  headerOffset: number;
  /** Byte offset of the entry's data. */
  dataOffset: number;
  /**
   * Reads the whole body. The buffer may be the reader's own: it stays valid until the consumer
   * has pulled a few more entries (the block reader's LEND_PULLS), enough to read the checksum
   * entry after a chunk and hand the chunk to a writer.
   */
  readAll(): Promise<Buffer>;
  /**
   * Present where the reader holds the body in a buffer of its own (the block reader): the body
   * as `readAll()` returns it, plus a lease that lets an image writer keep writing from it after
   * its write() returned (image/types.ts BufferLease).
   */
  readLeased?(): Promise<{ data: Buffer; lease: BufferLease }>;
  /** Discards the body. */
  skip(): Promise<void>;
}

/**
 * The header fields of an entry as a reader hands it out, with the body methods left to the
 * reader. Readers make their entries as instances of a subclass, with the methods on the
 * prototype, not as objects of closures made per entry: measured on a 6 GiB XVA, three closures
 * per entry were nearly all promoted by V8 (what survived one scavenge survived the next), so
 * old space and the young generation grew with the archive: ~10 MB more peak RSS than for a
 * 1 GiB XVA. Entries made like this die young (test/tar/block-reader.test.ts, "memory").
 */
export abstract class TarEntryBase implements TarEntry {
  readonly name: string;
  readonly size: number;
  readonly type: TarEntry['type'];
  readonly headerOffset: number;
  readonly dataOffset: number;

  constructor(e: Pick<TarEntry, 'name' | 'size' | 'type' | 'headerOffset' | 'dataOffset'>) {
    this.name = e.name;
    this.size = e.size;
    this.type = e.type;
    this.headerOffset = e.headerOffset;
    this.dataOffset = e.dataOffset;
  }

  abstract readAll(): Promise<Buffer>;

  async skip(): Promise<void> {}
}

export interface TarReader extends AsyncIterable<TarEntry> {
  /** Total bytes of tar stream consumed so far. */
  bytesConsumed(): number;
  /** After iteration: whether at least the 1024 zero bytes of an end-of-archive marker followed the last entry. */
  endBlocksSeen(): boolean;
  /** Stops reading and releases the source. */
  destroy(err?: Error): void;
}

/** Longest entry name accepted (PATH_MAX); XAPI's names are ~25 bytes. */
export const MAX_ENTRY_NAME_BYTES = 4096;

/** No C0/C1 control characters or DEL, valid UTF-8 (no U+FFFD from decoding), at most 4096 bytes. */
export function plausibleName(name: string): boolean {
  // eslint-disable-next-line no-control-regex
  return !/[\u0000-\u001f\u007f-\u009f\ufffd]/.test(name) && Buffer.byteLength(name, 'utf8') <= MAX_ENTRY_NAME_BYTES;
}
