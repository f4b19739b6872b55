/**
 * gzip decoding (`--gzip-codec`, docs/design/gzip-codecs.md), fastest first:
 *  - 'igzip': the ISA-L `igzip` program on PATH, as a child codec (child-codec.ts, igzip.ts);
 *  - 'zlib':  node:zlib `createGunzip` (native, in the thread pool; it restarts after each
 *             member by itself, so `cat a.gz b.gz` works);
 *  - 'pako':  pako's pure-JS `Inflate`, restarted here after every member end, because one pako
 *             Inflate stops at a member boundary that falls on a chunk boundary;
 *  - 'auto':  the first of them this machine has.
 * A truncated or corrupt stream becomes BAD_COMPRESSION with the number of compressed bytes
 * consumed (for igzip: read by the child, see gzip-codecs.md).
 */
import { InputError, UsageError } from '../errors';
import { GZIP_CODECS, type GzipCodec } from './types';
import { type ChildCodec, childDecoder } from './child-codec';
import { type DecodeContext, type Decoder, SliceDecoder, asBuffer, streamDecoder } from './decoder';
import { errorText } from '../errors';
import { findProgram } from '../io/find-program';
import { IGZIP_ARGS, IGZIP_BINARY, igzipExitProblem } from './igzip';

type ZlibModule = typeof import('node:zlib');

/**
 * Output chunk size of node:zlib (default 16 KiB; larger chunks mean fewer thread-pool round
 * trips). 4 MiB was not measurably faster than 1 MiB and added ~20 MB of peak memory: zlib
 * allocates a fresh output buffer per chunk, and the dead ones wait for V8's next collection.
 */
export const ZLIB_CHUNK_SIZE = 1 << 20;
/** pako output buffer size. */
export const PAKO_CHUNK_SIZE = 1 << 20;
/** Compressed bytes per pako push: deflate expands at most ~1032:1, so this bounds the output
 * produced before backpressure is checked to ~16 MiB. */
export const PAKO_SLICE_SIZE = 16 << 10;
/** inflate windowBits: 15-bit window + 16 = gzip wrapper only. */
const GZIP_WINDOW_BITS = 15 + 16;

let zlibModule: ZlibModule | null | undefined;

/** node:zlib, or null when this runtime lacks it (then pako is used). */
export function loadZlib(): ZlibModule | null {
  if (zlibModule === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      zlibModule = require('node:zlib') as ZlibModule;
      if (typeof zlibModule.createGunzip !== 'function') zlibModule = null;
    } catch {
      zlibModule = null;
    }
  }
  return zlibModule;
}

/** The message every gzip failure carries. */
export function gzipError(input: string, consumed: number, detail: string, cause?: unknown): InputError {
  return new InputError(
    'BAD_COMPRESSION',
    `gzip stream truncated/corrupt at compressed byte ${consumed}: ${detail}`,
    { input },
    { cause },
  );
}

/** igzip as a child codec, or null when it is not on PATH. */
export function igzipChild(): ChildCodec | null {
  const path = findProgram(IGZIP_BINARY);
  return path ? { name: 'igzip', path, args: IGZIP_ARGS, exitProblem: igzipExitProblem, error: gzipError } : null;
}

/**
 * The decoder `codec` means on this machine: 'auto' becomes igzip, zlib or pako, whichever comes
 * first here; 'zlib' becomes pako where node:zlib is missing. An unknown name, or 'igzip' where
 * there is none, is a usage error.
 */
export function resolveGzipCodec(codec: GzipCodec = 'auto'): Exclude<GzipCodec, 'auto'> {
  if (!GZIP_CODECS.includes(codec)) throw new UsageError(`unknown gzip codec "${String(codec)}" (use ${GZIP_CODECS.join(', ')})`);
  if (codec === 'igzip') {
    if (!findProgram(IGZIP_BINARY)) throw new UsageError(`gzip codec 'igzip' needs the '${IGZIP_BINARY}' program on PATH (Debian/Ubuntu package isal); use 'zlib'`);
    return 'igzip';
  }
  if (codec === 'auto' && findProgram(IGZIP_BINARY)) return 'igzip';
  if (codec !== 'pako' && loadZlib()) return 'zlib';
  return 'pako';
}

export function createGzipDecoder(ctx: DecodeContext, codec: GzipCodec = 'auto'): Decoder {
  const resolved = resolveGzipCodec(codec);
  const child = resolved === 'igzip' ? igzipChild() : null;
  if (child) return childDecoder(ctx, child);
  const zlib = resolved !== 'pako' ? loadZlib() : null;
  if (!zlib) return new PakoGunzip(ctx);
  const gunzip = zlib.createGunzip({ chunkSize: ZLIB_CHUNK_SIZE });
  return streamDecoder(ctx, {
    codec: 'node:zlib',
    input: gunzip,
    output: gunzip,
    mapError: (err) => gzipError(ctx.input, gunzip.bytesWritten, errorText(err), err),
  });
}

interface PakoInflate {
  push(data: Uint8Array, mode?: boolean): boolean;
  onData(chunk: Uint8Array): void;
  onEnd(status: number): void;
  err: number;
  msg: string;
  ended: boolean;
  strm: { next_in: number; avail_in: number; msg?: string };
}

/** pako streaming gunzip with multi-member support. */
export class PakoGunzip extends SliceDecoder {
  readonly codec = 'pako';
  readonly #Inflate: new (options: object) => PakoInflate;
  #inflate: PakoInflate | undefined;
  #members = 0;

  constructor(ctx: DecodeContext) {
    super(ctx, PAKO_SLICE_SIZE);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    this.#Inflate = (require('pako') as { Inflate: new (options: object) => PakoInflate }).Inflate;
  }

  protected decode(slice: Buffer): void {
    let input: Buffer = slice;
    let offset = this.fedBytes;
    while (input.length > 0) {
      if (!this.#inflate) {
        if (this.#members > 0) {
          // Zero padding after a member is allowed (as gzip and node:zlib allow it).
          let i = 0;
          while (i < input.length && input[i] === 0) i++;
          input = input.subarray(i);
          offset += i;
          if (input.length === 0) return;
        }
        this.#inflate = this.#newInflate();
      }
      const inflate = this.#inflate;
      inflate.push(input, false);
      const used = inflate.strm.next_in;
      if (inflate.err) throw gzipError(this.ctx.input, offset + used, inflate.msg || `zlib error ${inflate.err}`);
      if (!inflate.ended) return;
      // Member complete at `used`; what follows is padding or the next member.
      this.#members++;
      this.#inflate = undefined;
      input = input.subarray(used);
      offset += used;
    }
  }

  protected finish(): void {
    if (this.#inflate) throw gzipError(this.ctx.input, this.fedBytes, 'unexpected end of file');
  }

  protected mapError(err: unknown): InputError {
    if (err instanceof InputError) return err;
    return gzipError(this.ctx.input, this.fedBytes, errorText(err), err);
  }

  #newInflate(): PakoInflate {
    const inflate = new this.#Inflate({ windowBits: GZIP_WINDOW_BITS, chunkSize: PAKO_CHUNK_SIZE });
    inflate.onData = (chunk) => this.emit(asBuffer(chunk));
    inflate.onEnd = (status) => {
      inflate.err = status;
      inflate.msg = inflate.strm.msg ?? '';
    };
    return inflate;
  }
}
