/**
 * The frame structure of a zstd stream, walked without decoding it (docs/design/zstd-codecs.md).
 *
 * A zstd stream is one or more frames back to back (RFC 8878 §3.1): zstd frames (magic, header,
 * blocks each with a 3-byte header giving its size, an optional 4-byte checksum) and skippable
 * frames (magic, 4-byte size, that many bytes). Reading the frame and block headers and jumping
 * over everything else tells where each frame ends and whether the input stopped inside one, at
 * the cost of a few header bytes per block (blocks hold up to 128 KiB of decoded data).
 *
 * node:zlib's zstd decoder needs both facts from outside: it ends its output at the first frame
 * end that falls inside a write (dropping the rest), and it ends cleanly on a cut frame.
 */

/** zstd frame magic 0xFD2FB528 (RFC 8878 §3.1.1). */
const ZSTD_FRAME_MAGIC = 0xfd2fb528;
/** Skippable frames: magic 0x184D2A50 to 0x184D2A5F (RFC 8878 §3.1.2). */
const SKIPPABLE_MAGIC_BASE = 0x184d2a50;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
/** Dictionary_ID field size by Dictionary_ID_flag (RFC 8878 §3.1.1.1.1). */
const DICTIONARY_ID_SIZES = [0, 1, 2, 4];
/** Frame_Content_Size field size by Frame_Content_Size_flag; flag 0 means 1 byte if Single_Segment. */
const CONTENT_SIZE_SIZES = [0, 2, 4, 8];
/** Block_Type RLE: the block's content is one byte, whatever Block_Size says (RFC 8878 §3.1.1.2.2). */
const BLOCK_TYPE_RLE = 1;
/** Content_Checksum: the low 4 bytes of XXH64, after the last block. */
const CHECKSUM_SIZE = 4;

/** What the little-endian field being collected is. */
const enum Field {
  Magic,
  Descriptor,
  SkippableSize,
  BlockHeader,
}

/** What comes after the bytes being skipped. */
const enum Next {
  BlockHeader,
  FrameEnd,
}

/** Bytes that cannot start a frame. */
export class ZstdFrameError extends Error {
  constructor(
    /** Compressed offset of the bad bytes. */
    readonly offset: number,
    message: string,
  ) {
    super(message);
    this.name = 'ZstdFrameError';
  }
}

export class ZstdFrameWalker {
  /** Compressed bytes walked so far. */
  offset = 0;
  /** Frames walked to their end. */
  frames = 0;
  /** Where the current frame starts (or the next one will). */
  frameStart = 0;
  #field = Field.Magic;
  #fieldSize = 4;
  #fieldValue = 0;
  #fieldGot = 0;
  #skip = 0;
  #next = Next.BlockHeader;
  #checksum = false;

  /** True where the input may end: after a whole frame, not inside one (nor before the first). */
  get atFrameEnd(): boolean {
    return this.frames > 0 && this.#field === Field.Magic && this.#fieldGot === 0;
  }

  /**
   * Walks `chunk`, the next bytes of the stream. Returns the offsets in `chunk` where a frame
   * ends and more bytes follow in the same chunk (never its length). Throws ZstdFrameError on
   * bytes that are neither a zstd nor a skippable frame where a frame must start.
   */
  walk(chunk: Uint8Array): number[] {
    const start = this.offset;
    const ends: number[] = [];
    let i = 0;
    while (i < chunk.length) {
      const frames = this.frames;
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i);
        this.#skip -= n;
        i += n;
        this.offset = start + i;
        if (this.#skip === 0) this.#then(this.#next);
      } else {
        // `>>> 0` keeps 4-byte values unsigned.
        this.#fieldValue = (this.#fieldValue | (chunk[i]! << (8 * this.#fieldGot))) >>> 0;
        i++;
        this.offset = start + i;
        if (++this.#fieldGot === this.#fieldSize) this.#fieldDone();
      }
      if (this.frames !== frames && i < chunk.length) ends.push(i);
    }
    return ends;
  }

  /** Acts on a complete field (this.offset is just after it). */
  #fieldDone(): void {
    const value = this.#fieldValue;
    switch (this.#field) {
      case Field.Magic:
        if (value === ZSTD_FRAME_MAGIC) this.#collect(Field.Descriptor, 1);
        else if ((value & SKIPPABLE_MAGIC_MASK) >>> 0 === SKIPPABLE_MAGIC_BASE) this.#collect(Field.SkippableSize, 4);
        else throw notAFrame(this.offset - 4, value);
        return;
      case Field.Descriptor: {
        const singleSegment = (value & 0x20) !== 0;
        const contentSizeFlag = value >>> 6;
        this.#checksum = (value & 0x04) !== 0;
        this.#skipThen(
          (singleSegment ? 0 : 1) + // Window_Descriptor
            DICTIONARY_ID_SIZES[value & 0x03]! +
            (contentSizeFlag === 0 && singleSegment ? 1 : CONTENT_SIZE_SIZES[contentSizeFlag]!),
          Next.BlockHeader,
        );
        return;
      }
      case Field.SkippableSize:
        this.#skipThen(value, Next.FrameEnd);
        return;
      case Field.BlockHeader: {
        const last = (value & 1) !== 0;
        const size = ((value >>> 1) & 3) === BLOCK_TYPE_RLE ? 1 : value >>> 3;
        if (last) this.#skipThen(size + (this.#checksum ? CHECKSUM_SIZE : 0), Next.FrameEnd);
        else this.#skipThen(size, Next.BlockHeader);
        return;
      }
    }
  }

  /** Skips `n` bytes, then goes on with `next` (at once when `n` is 0). */
  #skipThen(n: number, next: Next): void {
    this.#skip = n;
    this.#next = next;
    if (n === 0) this.#then(next);
  }

  #then(next: Next): void {
    if (next === Next.BlockHeader) {
      this.#collect(Field.BlockHeader, 3);
    } else {
      this.frames++;
      this.frameStart = this.offset;
      this.#collect(Field.Magic, 4);
    }
  }

  #collect(field: Field, size: number): void {
    this.#field = field;
    this.#fieldSize = size;
    this.#fieldValue = 0;
    this.#fieldGot = 0;
  }
}

function notAFrame(offset: number, magic: number): ZstdFrameError {
  const bytes = [0, 8, 16, 24].map((shift) => ((magic >>> shift) & 0xff).toString(16).padStart(2, '0')).join(' ');
  return new ZstdFrameError(offset, `no zstd frame starts here (bytes ${bytes})`);
}
