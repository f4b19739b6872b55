/**
 * zstd decoding strategies (docs/packages.md §3):
 *  - 'zlib':   node:zlib `createZstdDecompress` (Node >= 22.15; feature-detected, absent on 20).
 *  - 'binary': the `zstd` program, `zstd -dc --long=31 -q`, raw bytes on its stdin, decoded bytes
 *              from its stdout. `--long=31` admits frames with windows up to 2 GiB (archives made
 *              with `zstd --long=29` fail with plain `zstd -dc`). The decoded stream ends only
 *              after the child has exited 0 with nothing on stderr, so a decoder failure can never
 *              look like a clean (short) end of input.
 *  - 'fzstd':  pure JS streaming `Decompress` (multiple frames, any window), the last resort: it
 *              is several times slower and slides its window by copying it for every block.
 *  - 'auto':   zlib if present, else binary if `zstd` is on PATH (looked up once), else fzstd.
 */
import { InputError, UsageError } from '../errors';
import type { ZstdCodec } from './types';
import { type ChildCodec, childDecoder } from './child-codec';
import { type DecodeContext, type Decoder, SliceDecoder, asBuffer, errorText, streamDecoder } from './decoder';
import { findProgram } from './find-program';
import { ZLIB_CHUNK_SIZE, loadZlib } from './gzip';

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
  if (loadZstdZlib()) return 'zlib';
  if (findZstdBinary()) return 'binary';
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

function zlibZstdDecoder(ctx: DecodeContext): Decoder {
  const zlib = loadZstdZlib();
  if (!zlib) {
    throw new UsageError(`zstd codec 'zlib' needs node:zlib zstd support (Node >= 22.15; this is ${process.version}); use 'binary' or 'fzstd'`);
  }
  const params: Record<number, number> = {};
  const windowLogMax = zlib.constants.ZSTD_d_windowLogMax;
  if (windowLogMax !== undefined) params[windowLogMax] = ZSTD_WINDOW_LOG_MAX;
  const engine = zlib.createZstdDecompress({ chunkSize: ZLIB_CHUNK_SIZE, params });
  return streamDecoder(ctx, {
    codec: 'node:zlib',
    input: engine,
    output: engine,
    mapError: (err) => zstdError(ctx.input, engine.bytesWritten, errorText(err), err),
  });
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
    return zstdError(this.ctx.input, this.#consumed, errorText(err), err);
  }
}
