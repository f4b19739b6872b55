/**
 * RawPump: the one reader of a raw (possibly compressed) source stream.
 *
 * It listens to 'data' for the whole life of the source, so there is no mode switching and no
 * unshift(): until a sink is connected, chunks are held in `head` (that is how the sniffer peeks
 * at the magic bytes without losing them); once `connect(sink)` is called, the head goes to the
 * sink first and every later chunk follows, untouched (no copies). Each chunk is counted on the
 * way through, which is what `rawBytesRead()` reports.
 *
 * Backpressure: when `sink.write()` returns false the source is paused; the sink calls `resume()`
 * when it wants more. End: `sink.end()` once the source ends (after checking `expectedBytes`,
 * e.g. an HTTP Content-Length). Errors from the source go to `onError` (after connect) or reject
 * a pending `peek()` (before).
 */
import type { Readable } from 'node:stream';
import type { InputError } from '../errors';

/** Where raw bytes go: a decoder's input or the pass-through. */
export interface ChunkSink {
  /** Takes the chunk (always); returns false to ask the pump to pause until `resume()`. */
  write(chunk: Buffer): boolean;
  /** No more raw bytes. */
  end(): void;
}

/** An opened raw source (file, stdin, HTTP body) before sniffing and decoding. */
export interface RawSource {
  /** As the user named it, credentials removed. */
  name: string;
  stream: Readable;
  rawSize?: number;
  /** Bytes the source promised (Content-Length): ending short of it is a truncation error. */
  expectedBytes?: number;
  /** Turns a source stream error (or a short read) into a typed error. */
  mapError(err: unknown, bytesRead: number): InputError;
  /** Releases the descriptor/socket; resolves once it is closed. Idempotent. */
  release(): Promise<void>;
}

export class RawPump {
  readonly #source: RawSource;
  readonly #raw: Readable;
  #bytesRead = 0;
  #head: Buffer[] = [];
  #headLength = 0;
  #ended = false;
  #destroyed = false;
  #sink: ChunkSink | undefined;
  #pendingError: unknown;
  #waiter: { need: number; resolve: (head: Buffer) => void; reject: (err: unknown) => void } | undefined;
  #onError: (err: InputError) => void = () => {};

  constructor(source: RawSource) {
    this.#source = source;
    this.#raw = source.stream;
    this.#raw.on('data', this.#handleData);
    this.#raw.on('end', this.#handleEnd);
    // Stays attached after destroy(): a late error from a released source must not go unhandled.
    this.#raw.on('error', this.#handleError);
  }

  get bytesRead(): number {
    return this.#bytesRead;
  }

  /**
   * Resolves with the first `need` bytes (fewer only if the source is shorter; empty for an
   * empty source). The bytes stay queued for the sink.
   */
  peek(need: number): Promise<Buffer> {
    if (this.#pendingError !== undefined) return Promise.reject(this.#pendingError);
    if (this.#headLength >= need || this.#ended) {
      this.#raw.pause();
      return Promise.resolve(this.#headBytes(need));
    }
    return new Promise((resolve, reject) => {
      this.#waiter = { need, resolve, reject };
    });
  }

  /** Starts feeding `sink` (queued head first). `onError` receives later source errors. */
  connect(sink: ChunkSink, onError: (err: InputError) => void): void {
    if (this.#sink) throw new Error('RawPump: already connected');
    this.#sink = sink;
    this.#onError = onError;
    const head = this.#head;
    this.#head = [];
    this.#headLength = 0;
    let more = true;
    for (const chunk of head) more = sink.write(chunk) && more;
    if (this.#destroyed) return;
    if (this.#ended) this.#finish();
    else if (more) this.#raw.resume();
  }

  /** The sink drained: let the source flow again. */
  resume(): void {
    if (!this.#destroyed && !this.#ended && this.#sink) this.#raw.resume();
  }

  /** Stops forwarding; the source itself is released by its owner. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#raw.removeListener('data', this.#handleData);
    this.#raw.removeListener('end', this.#handleEnd);
    this.#raw.pause();
    this.#head = [];
    this.#waiter?.reject(new Error('input closed'));
    this.#waiter = undefined;
  }

  #headBytes(limit: number): Buffer {
    const first = this.#head[0];
    if (first === undefined) return Buffer.alloc(0);
    if (first.length >= limit || this.#head.length === 1) return first.subarray(0, limit);
    return Buffer.concat(this.#head).subarray(0, limit);
  }

  readonly #handleData = (chunk: Buffer): void => {
    if (this.#destroyed) return;
    this.#bytesRead += chunk.length;
    const sink = this.#sink;
    if (sink) {
      if (!sink.write(chunk)) this.#raw.pause();
      return;
    }
    this.#head.push(chunk);
    this.#headLength += chunk.length;
    const waiter = this.#waiter;
    if (waiter && this.#headLength >= waiter.need) {
      this.#waiter = undefined;
      this.#raw.pause();
      waiter.resolve(this.#headBytes(waiter.need));
    }
  };

  readonly #handleEnd = (): void => {
    if (this.#destroyed) return;
    this.#ended = true;
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      waiter.resolve(this.#headBytes(waiter.need));
    }
    if (this.#sink) this.#finish();
  };

  readonly #handleError = (err: unknown): void => {
    if (this.#destroyed) return;
    const mapped = this.#source.mapError(err, this.#bytesRead);
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      waiter.reject(mapped);
    } else if (this.#sink) {
      this.#onError(mapped);
    } else {
      this.#pendingError = mapped;
    }
  };

  #finish(): void {
    const expected = this.#source.expectedBytes;
    if (expected !== undefined && this.#bytesRead < expected) {
      this.#onError(this.#source.mapError(new ShortReadError(this.#bytesRead, expected), this.#bytesRead));
      return;
    }
    this.#sink!.end();
  }
}

/** The source ended before the promised number of bytes. */
export class ShortReadError extends Error {
  constructor(readonly got: number, readonly expected: number) {
    super(`source ended after ${got} of ${expected} bytes`);
    this.name = 'ShortReadError';
  }
}
