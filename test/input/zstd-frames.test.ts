/**
 * The zstd frame walker: where frames end in a stream cut into arbitrary chunks, whether the input
 * stopped inside one, and bytes that start no frame. Frames come from the zstd program and from a
 * hand-made builder covering every header field size (RFC 8878 §3.1); the builder's frames are
 * checked against `zstd -dc` so that they are real frames, not this test's own idea of one.
 */
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { ZstdFrameError, ZstdFrameWalker } from '../../src/input/zstd-frames';
import { itWithTools } from '../helpers/system-tools';
import { sampleBytes, splitAt, tool } from './helpers';

type Block = { type: 'raw'; data: Buffer } | { type: 'rle'; byte: number; size: number };

interface FrameSpec {
  blocks: Block[];
  /** Frame_Content_Size_flag (0-3); the field holds the decoded size. */
  contentSizeFlag?: 0 | 1 | 2 | 3;
  singleSegment?: boolean;
  /** Dictionary_ID_flag (0-3); frames with a dictionary ID cannot be decoded without it. */
  dictionaryIdFlag?: 0 | 1 | 2 | 3;
  /** Sets Content_Checksum_flag and appends 4 bytes (not a valid checksum: the walker only skips them). */
  checksum?: boolean;
}

function blockSize(b: Block): number {
  return b.type === 'raw' ? b.data.length : b.size;
}

/** A zstd frame made by hand from raw and RLE blocks. */
function frame(spec: FrameSpec): Buffer {
  const fcsFlag = spec.contentSizeFlag ?? 0;
  const single = spec.singleSegment ?? false;
  const dictFlag = spec.dictionaryIdFlag ?? 0;
  const decoded = spec.blocks.reduce((n, b) => n + blockSize(b), 0);
  const descriptor = (fcsFlag << 6) | (single ? 0x20 : 0) | (spec.checksum ? 0x04 : 0) | dictFlag;
  const parts: Buffer[] = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, descriptor])];
  // Window_Descriptor 0x10: 2^(10+2) = 4 KiB, larger than any block here.
  if (!single) parts.push(Buffer.from([0x10]));
  parts.push(Buffer.alloc([0, 1, 2, 4][dictFlag]!, 0x07));
  const fcsSize = fcsFlag === 0 ? (single ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
  const fcs = Buffer.alloc(fcsSize);
  if (fcsSize === 1) fcs.writeUInt8(decoded);
  else if (fcsSize === 2) fcs.writeUInt16LE(decoded - 256);
  else if (fcsSize === 4) fcs.writeUInt32LE(decoded);
  else if (fcsSize === 8) fcs.writeBigUInt64LE(BigInt(decoded));
  parts.push(fcs);
  spec.blocks.forEach((b, i) => {
    const last = i === spec.blocks.length - 1 ? 1 : 0;
    const header = last | ((b.type === 'raw' ? 0 : 1) << 1) | (blockSize(b) << 3);
    parts.push(Buffer.from([header & 0xff, (header >>> 8) & 0xff, header >>> 16]));
    parts.push(b.type === 'raw' ? b.data : Buffer.from([b.byte]));
  });
  if (spec.checksum) parts.push(Buffer.from([1, 2, 3, 4]));
  return Buffer.concat(parts);
}

function skippable(content: Buffer, nibble = 0xa): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32LE(0x184d2a50 + nibble, 0);
  header.writeUInt32LE(content.length, 4);
  return Buffer.concat([header, content]);
}

const raw = (text: string): Block => ({ type: 'raw', data: Buffer.from(text) });

/** Hand-made frames that zstd itself decodes (no dictionary, no checksum). */
const DECODABLE: { name: string; bytes: Buffer; decoded: string }[] = [
  { name: 'one raw block, no content size', bytes: frame({ blocks: [raw('hello ')] }), decoded: 'hello ' },
  {
    name: 'raw + RLE blocks, 1-byte content size (single segment)',
    bytes: frame({ blocks: [raw('ab'), { type: 'rle', byte: 0x78, size: 40 }], singleSegment: true }),
    decoded: `ab${'x'.repeat(40)}`,
  },
  {
    name: '2-byte content size',
    bytes: frame({ blocks: [{ type: 'rle', byte: 0x79, size: 300 }], contentSizeFlag: 1 }),
    decoded: 'y'.repeat(300),
  },
  { name: '4-byte content size', bytes: frame({ blocks: [raw('four'), raw('byte')], contentSizeFlag: 2 }), decoded: 'fourbyte' },
  {
    name: '8-byte content size, single segment',
    bytes: frame({ blocks: [raw('eight')], contentSizeFlag: 3, singleSegment: true }),
    decoded: 'eight',
  },
  { name: 'an empty last block', bytes: frame({ blocks: [raw('')] }), decoded: '' },
];

/** Frame ends of `stream` (frames back to back) found by walking it in `pieces`. */
function walkPieces(pieces: Buffer[]): { ends: number[]; walker: ZstdFrameWalker } {
  const walker = new ZstdFrameWalker();
  const ends: number[] = [];
  for (const piece of pieces) {
    const start = walker.offset;
    for (const end of walker.walk(piece)) ends.push(start + end);
    if (walker.atFrameEnd) ends.push(walker.offset);
  }
  return { ends: [...new Set(ends)], walker };
}

/** Offsets where each frame of `frames` ends in their concatenation. */
function boundaries(frames: Buffer[]): number[] {
  let at = 0;
  return frames.map((f) => (at += f.length));
}

describe('hand-made frames', () => {
  itWithTools('zstd')('are frames zstd decodes', () => {
    for (const { bytes, decoded } of DECODABLE) {
      expect(execFileSync('zstd', ['-dc', '-q'], { input: bytes }).toString()).toBe(decoded);
    }
    const all = Buffer.concat([skippable(Buffer.from('skip me')), ...DECODABLE.map((d) => d.bytes), skippable(Buffer.alloc(0), 0xf)]);
    expect(execFileSync('zstd', ['-dc', '-q'], { input: all }).toString()).toBe(DECODABLE.map((d) => d.decoded).join(''));
  });
});

describe('ZstdFrameWalker', () => {
  const dictionaryFrames = ([1, 2, 3] as const).map((dictionaryIdFlag) =>
    frame({ blocks: [raw('dictionary id')], dictionaryIdFlag, contentSizeFlag: 2, checksum: true }),
  );
  const handMade = [
    skippable(Buffer.from('leading skippable frame')),
    ...DECODABLE.map((d) => d.bytes),
    skippable(Buffer.alloc(0), 0xf),
    ...dictionaryFrames,
    frame({ blocks: [raw('checksum')], checksum: true }),
  ];

  it('finds the end of every frame when the stream is one chunk', () => {
    const walker = new ZstdFrameWalker();
    const whole = Buffer.concat(handMade);
    const ends = walker.walk(whole);
    // Interior ends only: the last frame ends at the chunk's end.
    expect(ends).toEqual(boundaries(handMade).slice(0, -1));
    expect(walker.frames).toBe(handMade.length);
    expect(walker.offset).toBe(whole.length);
    expect(walker.atFrameEnd).toBe(true);
  });

  it('finds the same ends however the stream is cut into chunks', () => {
    const whole = Buffer.concat(handMade);
    const expected = boundaries(handMade);
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: whole.length - 1 }), { maxLength: 40 }), (cuts) => {
        expect(walkPieces(splitAt(whole, cuts)).ends).toEqual(expected);
      }),
    );
    // One byte at a time: every field straddles a chunk boundary.
    expect(walkPieces(splitAt(whole, [], 1)).ends).toEqual(expected);
  });

  itWithTools('zstd')('walks frames made by zstd (checksums, content sizes, long windows, 128 KiB blocks)', () => {
    const data = sampleBytes(700 << 10, 5);
    const frames = [
      tool('zstd', ['-3', '-q', '-c'], data),
      tool('zstd', ['-19', '-q', '-c', '--no-check'], data.subarray(0, 200_000)),
      tool('zstd', ['--long=29', '-q', '-c'], data),
      tool('zstd', ['-1', '-q', '-c', `--stream-size=${data.length}`], data),
      tool('zstd', ['--fast=5', '-q', '-c'], Buffer.alloc(300_000)),
    ];
    const whole = Buffer.concat(frames);
    expect(walkPieces(splitAt(whole, [], 65_536)).ends).toEqual(boundaries(frames));
    expect(walkPieces([whole]).ends).toEqual(boundaries(frames));
  });

  it('is inside a frame wherever a stream is cut short of a frame end, and knows where that frame starts', () => {
    const whole = Buffer.concat(handMade);
    const ends = boundaries(handMade);
    for (let cut = 0; cut <= whole.length; cut++) {
      const walker = new ZstdFrameWalker();
      walker.walk(whole.subarray(0, cut));
      const frameStart = Math.max(0, ...ends.filter((end) => end <= cut));
      expect({ cut, atFrameEnd: walker.atFrameEnd, frameStart: walker.frameStart }).toEqual({ cut, atFrameEnd: ends.includes(cut), frameStart });
    }
  });

  it('a stream may begin with a skippable frame larger than the chunks it arrives in', () => {
    const lead = skippable(Buffer.alloc(300_000, 0x5a), 0x0);
    const frames = [lead, DECODABLE[0]!.bytes, skippable(Buffer.from('between'), 0xf), DECODABLE[1]!.bytes];
    const whole = Buffer.concat(frames);
    for (const pieces of [[whole], splitAt(whole, [2, 6], 65_536)]) {
      const { ends, walker } = walkPieces(pieces);
      expect(ends).toEqual(boundaries(frames));
      expect(walker.frames).toBe(frames.length);
      expect(walker.atFrameEnd).toBe(true);
    }
    // Cut inside the leading skippable frame: inside a frame that starts at 0.
    const walker = new ZstdFrameWalker();
    walker.walk(lead.subarray(0, 100_000));
    expect({ atFrameEnd: walker.atFrameEnd, frameStart: walker.frameStart, frames: walker.frames }).toEqual({ atFrameEnd: false, frameStart: 0, frames: 0 });
  });

  it('rejects bytes that start no frame, naming their offset', () => {
    const first = DECODABLE[0]!.bytes;
    const walker = new ZstdFrameWalker();
    const err = (() => {
      try {
        walker.walk(Buffer.concat([first, Buffer.from('not zstd')]));
      } catch (e) {
        return e;
      }
      throw new Error('expected walk to throw');
    })() as ZstdFrameError;
    expect(err).toBeInstanceOf(ZstdFrameError);
    expect(err.offset).toBe(first.length);
    expect(err.message).toBe('no zstd frame starts here (bytes 6e 6f 74 20)');
  });

  it('rejects a bad magic split across chunks at its own offset', () => {
    const walker = new ZstdFrameWalker();
    walker.walk(Buffer.from([0x28, 0xb5]));
    expect(() => walker.walk(Buffer.from([0x2f, 0xfe]))).toThrow(expect.objectContaining({ offset: 0 }));
  });

  it('an empty stream has no frame end', () => {
    const walker = new ZstdFrameWalker();
    walker.walk(Buffer.alloc(0));
    expect(walker.atFrameEnd).toBe(false);
  });
});
