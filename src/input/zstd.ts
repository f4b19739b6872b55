/**
 * zstd decoding strategies (why this order and what each one gets wrong on its own:
 * docs/design/zstd-codecs.md):
 *  - 'binary': the `zstd` program, `zstd -dc --long=31 -q`, raw bytes on its stdin, decoded bytes
 *              from its stdout (a file is its stdin, decoded on the decoder thread). `--long=31`
 *              admits frames with windows up to 2 GiB (archives made with `zstd --long=29` fail
 *              with plain `zstd -dc`). The decoded stream ends only after the child has exited 0
 *              with nothing on stderr, so a decoder failure can never look like a clean (short)
 *              end of input.
 *  - 'zlib':   node:zlib `createZstdDecompress` (Node >= 22.15; feature-detected, absent on 20),
 *              fed one frame at a time and checked at the end by a frame walker (zstd-frames.ts).
 *  - 'fzstd':  pure JS streaming `Decompress` (multiple frames, windows below 2 GiB), the last
 *              resort: several times slower, it slides its window by copying it for every block.
 *  - 'auto':   binary if `zstd` is on PATH (looked up once), else zlib if present, else fzstd.
 */
import { InputError, UsageError } from '../errors';
import type { ZstdCodec } from './types';
import { type ChildCodec, childDecoder } from './child-codec';
import { type DecodeContext, type Decoder, SliceDecoder, asBuffer, streamDecoder } from './decoder';
import { errorText } from '../errors';
import { findProgram } from '../io/find-program';
import { ZLIB_CHUNK_SIZE, loadZlib } from './gzip';
import { ZstdFrameError, ZstdFrameWalker } from './zstd-frames';

/** Largest window accepted (log2), as `zstd --long=31`. */
export const ZSTD_WINDOW_LOG_MAX = 31;
export const ZSTD_BINARY = 'zstd';
export const ZSTD_BINARY_ARGS = ['-dc', `--long=${ZSTD_WINDOW_LOG_MAX}`, '-q'];
/** Compressed bytes per fzstd push (bounds output produced before backpressure is checked). */
export const FZSTD_SLICE_SIZE = 128 << 10;

type ZstdZlib = {
  createZstdDecompress(options?: object): import('node:zlib').Zlib & import('node:stream').Transform;
  constants: Record<string, number>;
};

/** node:zlib with zstd support, or null (Node 20). */
export function loadZstdZlib(): ZstdZlib | null {
  const zlib = loadZlib() as unknown as Partial<ZstdZlib> | null;
  return zlib && typeof zlib.createZstdDecompress === 'function' ? (zlib as ZstdZlib) : null;
}

/** Absolute path of the `zstd` program on PATH, or null. */
export function findZstdBinary(): string | null {
  return findProgram(ZSTD_BINARY);
}

/** The strategy 'auto' resolves to on this machine. */
export function resolveZstdCodec(codec: ZstdCodec = 'auto'): Exclude<ZstdCodec, 'auto'> {
  if (codec !== 'auto') return codec;
  if (findZstdBinary()) return 'binary';
  if (loadZstdZlib()) return 'zlib';
  return 'fzstd';
}

export function zstdError(input: string, consumed: number, detail: string, cause?: unknown): InputError {
  return new InputError(
    'BAD_COMPRESSION',
    `zstd stream truncated/corrupt at compressed byte ${consumed}: ${detail}`,
    { input },
    { cause },
  );
}

/**
 * @param stdinFd for 'binary' only: a regular file positioned at its start, which the child reads
 *   directly (the compressed bytes then never pass through this process).
 */
export function createZstdDecoder(ctx: DecodeContext, codec: ZstdCodec = 'auto', stdinFd?: number): Decoder {
  switch (resolveZstdCodec(codec)) {
    case 'zlib':
      return zlibZstdDecoder(ctx);
    case 'binary':
      return binaryZstdDecoder(ctx, stdinFd);
    case 'fzstd':
      return new FzstdDecoder(ctx);
  }
}

/**
 * node:zlib's zstd decoder, fed whole frames at a time by a frame walker (zstd-frames.ts):
 * Node's stream ends its output at the first frame end inside a write and drops the rest, and
 * ends cleanly when the input stops inside a frame (docs/design/zstd-codecs.md). So every write
 * ends at or before a frame end, and the decoded stream ends only when the input ended after a
 * whole frame and the decoder consumed all of it.
 */
function zlibZstdDecoder(ctx: DecodeContext): Decoder {
  const zlib = loadZstdZlib();
  if (!zlib) {
    throw new UsageError(`zstd codec 'zlib' needs node:zlib zstd support (Node >= 22.15; this is ${process.version}); use 'binary' or 'fzstd'`);
  }
  const params: Record<number, number> = {};
  const windowLogMax = zlib.constants.ZSTD_d_windowLogMax;
  if (windowLogMax !== undefined) params[windowLogMax] = ZSTD_WINDOW_LOG_MAX;
  const engine = zlib.createZstdDecompress({ chunkSize: ZLIB_CHUNK_SIZE, params });
  const frames = new ZstdFrameWalker();
  let inputEnded = false;
  const decoder = streamDecoder(ctx, {
    codec: 'node:zlib',
    input: engine,
    output: engine,
    mapError: (err) => zstdError(ctx.input, engine.bytesWritten, errorText(err), err),
    onOutputEnd: () => {
      const problem = !inputEnded || engine.bytesWritten !== frames.offset
        ? `the decoder stopped at compressed byte ${engine.bytesWritten} of ${frames.offset} fed`
        : !frames.atFrameEnd
          ? `the input ends inside the frame that starts at compressed byte ${frames.frameStart}`
          : undefined;
      if (problem) ctx.fail(zstdError(ctx.input, frames.offset, problem));
      else ctx.out.push(null);
    },
  });
  const write = (chunk: Buffer): boolean => {
    let ends: number[];
    try {
      ends = frames.walk(chunk);
    } catch (err) {
      if (!(err instanceof ZstdFrameError)) throw err;
      ctx.fail(zstdError(ctx.input, err.offset, err.message, err));
      return false;
    }
    let from = 0;
    for (const end of ends) {
      decoder.sink.write(chunk.subarray(from, end));
      from = end;
    }
    return decoder.sink.write(from === 0 ? chunk : chunk.subarray(from));
  };
  return {
    ...decoder,
    sink: {
      write,
      end: () => {
        inputEnded = true;
        decoder.sink.end();
      },
    },
  };
}

function binaryZstdDecoder(ctx: DecodeContext, stdinFd?: number): Decoder {
  const codec = zstdChild();
  if (!codec) throw new UsageError(`zstd codec 'binary' needs the '${ZSTD_BINARY}' program on PATH; use 'fzstd'`);
  return childDecoder(ctx, codec, stdinFd);
}

/** The `zstd` program as a child codec (child-codec.ts), or null when it is not on PATH. */
export function zstdChild(): ChildCodec | null {
  const path = findZstdBinary();
  return path ? { name: 'zstd binary', path, args: ZSTD_BINARY_ARGS, exitProblem: zstdExitProblem, error: zstdError } : null;
}

/**
 * Why a zstd child that has exited failed: its stderr as one line and its exit status; undefined
 * for a clean end (exit 0 and nothing on stderr). Used by both the main-thread decoder and the
 * decoder thread.
 */
export function zstdExitProblem(stderr: string, code: number | null, signal: NodeJS.Signals | null): string | undefined {
  const message = cleanZstdMessage(stderr);
  if (code === 0 && !message) return undefined;
  return `${message || 'no message'} (zstd exit ${code ?? signal})`;
}

/** zstd's stderr as one line, without its `zstd: /*stdin*\:` prefixes. */
function cleanZstdMessage(text: string): string {
  return text
    .replace(/zstd: /g, '')
    .replace(/\/\*stdin\*\\ ?: ?/g, '')
    .replace(/\s*[\r\n]+\s*/g, '; ')
    .replace(/^[;\s]+|[;\s]+$/g, '');
}

interface FzstdDecompress {
  push(chunk: Uint8Array, final?: boolean): void;
  ondata: (data: Uint8Array, final?: boolean) => unknown;
}

/** Pure-JS streaming zstd (fzstd), multiple frames supported by fzstd itself. */
export class FzstdDecoder extends SliceDecoder {
  readonly codec = 'fzstd';
  readonly #decompress: FzstdDecompress;

  constructor(ctx: DecodeContext) {
    super(ctx, FZSTD_SLICE_SIZE);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Decompress } = require('fzstd') as { Decompress: new (ondata: (data: Uint8Array) => void) => FzstdDecompress };
    this.#decompress = new Decompress((data) => this.emit(asBuffer(data)));
  }

  /** End of the slice being decoded: fzstd buffers partial blocks, so errors surface late. */
  #consumed = 0;

  protected decode(slice: Buffer): void {
    this.#consumed = this.fedBytes + slice.length;
    this.#decompress.push(slice, false);
  }

  protected finish(): void {
    this.#consumed = this.fedBytes;
    this.#decompress.push(new Uint8Array(0), true);
  }

  protected mapError(err: unknown): InputError {
    if (err instanceof InputError) return err;
    let detail = errorText(err);
    // fzstd holds a frame's whole window in one typed array: it refuses windows over 2046 MB, and
    // a 2 GiB one (zstd --long=31) overflows its size arithmetic into a negative array length.
    if (/window size too large|Invalid typed array length/.test(detail)) {
      detail += `; fzstd decodes windows below 2 GiB (zstd --long=30), the zstd program up to --long=${ZSTD_WINDOW_LOG_MAX}`;
    }
    return zstdError(this.ctx.input, this.#consumed, detail, err);
  }
}
