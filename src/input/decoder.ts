/**
 * Decoder plumbing shared by the gzip, zstd and pass-through paths.
 *
 *   RawPump --write()--> Decoder.sink  ...decode...  --push()--> DecodedStream (what the caller reads)
 *
 * `DecodedStream` is a plain Readable that we own, so every error the caller sees is a typed
 * InputError, end-of-stream can wait for facts that arrive late (the zstd child's exit status),
 * and destroying it (caller finished or failed) tears down the decoder, child process and source.
 * Chunks are passed by reference at every step: no Transform layers, no copies.
 *
 * Two decoder shapes:
 *  - `streamDecoder`: a native engine with a Writable input and a Readable output (node:zlib
 *    gunzip/zstd, the zstd child's stdin/stdout). Backpressure comes from the engine's own buffers.
 *  - `SliceDecoder`: a synchronous decoder (pako, fzstd, pass-through). Input is fed in slices
 *    and feeding stops while the DecodedStream is full, which bounds memory on highly
 *    compressible data; the remainder waits in a queue until the consumer reads again.
 */
import { Readable, type Writable } from 'node:stream';
import { errorText, InputError } from '../errors';
import type { ChunkSink } from './raw-pump';

/** Readable high-water mark of the decoded stream. */
export const DECODED_HIGH_WATER_MARK = 4 << 20;

export class DecodedStream extends Readable {
  #onPull: () => void = () => {};
  #teardown: () => void = () => {};

  constructor() {
    super({ highWaterMark: DECODED_HIGH_WATER_MARK });
  }

  /** Wires the stream to its producer; called once by openInput. */
  bind(onPull: () => void, teardown: () => void): void {
    this.#onPull = onPull;
    this.#teardown = teardown;
  }

  override _read(): void {
    this.#onPull();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    try {
      this.#teardown();
    } finally {
      callback(err);
    }
  }
}

/** What a decoder factory gets. */
export interface DecodeContext {
  /** Input name for error locations. */
  input: string;
  out: DecodedStream;
  /** Raw bytes consumed from the source so far. */
  rawBytesRead(): number;
  /** The decoder wants more raw bytes (after a write returned false). */
  resumeRaw(): void;
  /** Ends the decoded stream with `err` (first error wins). */
  fail(err: InputError): void;
}

export interface Decoder {
  /** e.g. "node:zlib", "pako", "zstd binary", "fzstd", "none". */
  readonly codec: string;
  /** Receives the raw bytes. */
  readonly sink: ChunkSink;
  /** The consumer wants more decoded bytes. */
  pull(): void;
  /** Stops decoding and frees resources; resolves once child processes are gone. Idempotent. */
  destroy(): Promise<void>;
}

export interface StreamDecoderOptions {
  codec: string;
  /** Absent when the engine reads the source itself (zstd child with the file as stdin). */
  input?: Writable;
  output: Readable;
  /** Maps an engine error (from input or output side) to a typed error. */
  mapError(err: unknown): InputError;
  /** Called when the output ends; default: end the decoded stream. */
  onOutputEnd?: () => void;
  /** Input-side errors to ignore (e.g. EPIPE when a child dies; its exit status tells why). */
  ignoreInputError?: (err: NodeJS.ErrnoException) => boolean;
  /** Extra cleanup (kill a child); its promise is returned by destroy(). */
  onDestroy?: () => Promise<void>;
}

/** A native engine between a Writable (raw in) and a Readable (decoded out). */
export function streamDecoder(ctx: DecodeContext, o: StreamDecoderOptions): Decoder {
  const { out } = ctx;
  const { input, output } = o;
  let destroyed: Promise<void> | undefined;

  input?.on('drain', () => ctx.resumeRaw());
  input?.on('error', (err: NodeJS.ErrnoException) => {
    if (destroyed || o.ignoreInputError?.(err)) return;
    ctx.fail(o.mapError(err));
  });
  if (output !== (input as unknown)) {
    output.on('error', (err) => {
      if (!destroyed) ctx.fail(o.mapError(err));
    });
  }
  output.on('data', (chunk: Buffer) => {
    if (destroyed || out.destroyed) return;
    if (!out.push(chunk)) output.pause();
  });
  output.on('end', () => {
    if (destroyed || out.destroyed) return;
    if (o.onOutputEnd) o.onOutputEnd();
    else out.push(null);
  });

  return {
    codec: o.codec,
    sink: {
      write: (chunk) => (destroyed || !input ? false : input.write(chunk)),
      end: () => {
        if (!destroyed) input?.end();
      },
    },
    pull: () => {
      if (!destroyed) output.resume();
    },
    destroy: () => {
      if (!destroyed) {
        const extra = o.onDestroy?.() ?? Promise.resolve();
        input?.destroy();
        if (output !== (input as unknown)) output.destroy();
        destroyed = extra;
      }
      return destroyed;
    },
  };
}

/**
 * A synchronous decoder fed in slices. Subclasses implement `decode(slice)` (calling `emit()` for
 * output) and `finish()` (checks at end of input; throw for truncation).
 */
export abstract class SliceDecoder implements Decoder, ChunkSink {
  abstract readonly codec: string;
  protected readonly ctx: DecodeContext;
  readonly #sliceSize: number;
  #queue: Buffer[] = [];
  #wantMore = true;
  #ending = false;
  #finished = false;
  #busy = false;
  #destroyed = false;
  /** Raw bytes handed to decode() so far (for error offsets). */
  protected fedBytes = 0;

  constructor(ctx: DecodeContext, sliceSize: number) {
    this.ctx = ctx;
    this.#sliceSize = sliceSize;
  }

  get sink(): ChunkSink {
    return this;
  }

  protected abstract decode(slice: Buffer): void;
  protected abstract finish(): void;
  /** Maps a decode()/finish() exception to a typed error. */
  protected abstract mapError(err: unknown): InputError;

  protected emit(chunk: Buffer): void {
    if (chunk.length === 0 || this.#destroyed || this.ctx.out.destroyed) return;
    if (!this.ctx.out.push(chunk)) this.#wantMore = false;
  }

  write(chunk: Buffer): boolean {
    if (this.#destroyed) return false;
    this.#queue.push(chunk);
    return this.#run();
  }

  end(): void {
    this.#ending = true;
    this.#run();
  }

  pull(): void {
    this.#wantMore = true;
    if (this.#run()) this.ctx.resumeRaw();
  }

  destroy(): Promise<void> {
    this.#destroyed = true;
    this.#queue = [];
    return Promise.resolve();
  }

  /** Feeds queued input while the consumer wants more; true when ready for more raw input. */
  #run(): boolean {
    if (this.#busy) return false;
    this.#busy = true;
    try {
      while (this.#queue.length > 0 && this.#wantMore && !this.#destroyed) {
        const chunk = this.#queue[0]!;
        let slice = chunk;
        if (chunk.length > this.#sliceSize) {
          slice = chunk.subarray(0, this.#sliceSize);
          this.#queue[0] = chunk.subarray(this.#sliceSize);
        } else {
          this.#queue.shift();
        }
        this.decode(slice);
        this.fedBytes += slice.length;
      }
      if (this.#destroyed) return false;
      if (this.#queue.length === 0 && this.#ending && !this.#finished) {
        this.#finished = true;
        this.finish();
        if (!this.#destroyed && !this.ctx.out.destroyed) this.ctx.out.push(null);
        return false;
      }
      return this.#queue.length === 0 && this.#wantMore;
    } catch (err) {
      this.#destroyed = true;
      this.#queue = [];
      this.ctx.fail(this.mapError(err));
      return false;
    } finally {
      this.#busy = false;
    }
  }
}

/** Uncompressed input: raw chunks become decoded chunks as they are. */
export class PassThroughDecoder extends SliceDecoder {
  readonly codec = 'none';

  constructor(ctx: DecodeContext) {
    super(ctx, Number.POSITIVE_INFINITY);
  }

  protected decode(slice: Buffer): void {
    this.emit(slice);
  }

  protected finish(): void {}

  protected mapError(err: unknown): InputError {
    return new InputError('INPUT_UNREADABLE', errorText(err), { input: this.ctx.input }, { cause: err });
  }
}

/** Buffer view over a Uint8Array (no copy). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
