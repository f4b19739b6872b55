/**
 * Where each chunk of a disk lands (docs/xva-format.md §4.3): chunk numbers are COUNTERS, not
 * offsets. A cursor starts at 0; a data entry numbered n, after the previous one numbered p,
 * first skips (n - p - 1) chunks of zeros, then its bytes land at the cursor, which advances by
 * the entry's length. A zero-length keep-alive entry consumes a number but no bytes, so after
 * k keep-alives every later chunk sits k numbers "ahead" of offset / 1 MiB.
 *
 * The skip unit ("gap") is 1 MiB. XAPI's importer uses the length of the first chunk instead;
 * they differ only for exotic writers, so when a disk's first chunk is neither 1 MiB nor its
 * last chunk we follow XAPI and warn.
 */
import { XvaFormatError } from '../errors';
import { XVA_CHUNK_SIZE } from './format';

export interface Placement {
  /** Guest byte offset where the entry's bytes start. */
  offset: number;
  /** Zero bytes skipped before this entry because of a counter gap. */
  gapBytes: number;
}

export class ChunkPlacer {
  private prev = -1;
  private cursor = 0;
  private gap = XVA_CHUNK_SIZE;
  private firstLength: number | undefined;
  private entries = 0;

  constructor(readonly ref: string, readonly virtualSize: number, private readonly warn: (msg: string) => void = () => {}) {}

  /** Places a data entry; `name` is only for messages. */
  place(counter: number, length: number, name: string): Placement {
    if (!Number.isSafeInteger(counter) || counter < 0) {
      throw new XvaFormatError('XVA_BAD_ENTRY', `${name}: invalid chunk number`, { entry: name, disk: this.ref });
    }
    if (counter <= this.prev) {
      const what = counter === this.prev ? 'repeats' : 'goes back after';
      throw new XvaFormatError('XVA_CHUNK_ORDER', `${name}: chunk number ${counter} ${what} ${this.prev}; chunk numbers of a disk must increase`, {
        entry: name,
        disk: this.ref,
      });
    }
    if (this.entries === 1 && this.firstLength !== undefined && this.firstLength > 0 && this.firstLength !== XVA_CHUNK_SIZE) {
      // The first chunk was not the last one, yet not 1 MiB long: follow XAPI's importer.
      this.gap = this.firstLength;
      this.warn(`${this.ref}: first chunk is ${this.firstLength} bytes, not 1 MiB; counter gaps are taken as ${this.firstLength}-byte chunks, as XAPI does`);
    }
    const gapBytes = (counter - this.prev - 1) * this.gap;
    this.cursor += gapBytes;
    const offset = this.cursor;
    this.cursor += length;
    this.prev = counter;
    if (this.entries === 0) this.firstLength = length;
    this.entries++;
    if (!Number.isSafeInteger(this.cursor)) {
      throw new XvaFormatError('XVA_BAD_ENTRY', `${name}: chunk number ${counter} places data beyond any possible disk size`, { entry: name, disk: this.ref });
    }
    return { offset, gapBytes };
  }

  /** Bytes of the disk covered so far (data and gaps). */
  get position(): number {
    return this.cursor;
  }

  get chunksSeen(): number {
    return this.entries;
  }
}
