import type { Readable } from 'node:stream';
import type { PooledBuffer } from './buffer-pool';

export type Compression = 'none' | 'gzip' | 'zstd';
/**
 * gzip decoders (`--gzip-codec`): 'igzip' the ISA-L program on PATH, 'zlib' node:zlib, 'pako'
 * pure JavaScript; 'auto' (the default) takes the first of them that this machine has.
 */
export const GZIP_CODECS = ['auto', 'igzip', 'zlib', 'pako'] as const;
export type GzipCodec = (typeof GZIP_CODECS)[number];
export type ZstdCodec = 'auto' | 'zlib' | 'binary' | 'fzstd';

export interface OpenInputOptions {
  /** Extra HTTP headers for URL inputs ("Name: value"). */
  headers?: string[];
  gzipCodec?: GzipCodec;
  zstdCodec?: ZstdCodec;
  /** stdin stream to use for "-" (tests pass their own). */
  stdin?: Readable;
  /** Bytes per read from files (default 2 MiB). */
  readSize?: number;
  /**
   * Decode gzip and zstd files on a worker thread (default true where this runtime allows it).
   * False keeps decoding on the main thread's streams (slower; the tests compare both).
   */
  decodeThread?: boolean;
}

/**
 * An opened input: the decompressed tar byte stream plus facts about the raw source.
 * `stream` yields Buffers; `rawBytesRead()` counts bytes consumed from the source before
 * decompression (for progress against `rawSize`).
 */
export interface InputSource {
  /** As the user named it: a path, "-" or a URL (credentials removed). */
  name: string;
  compression: Compression;
  /** Which decoder runs, e.g. "node:zlib", "pako", "zstd binary", "fzstd", "none". */
  codec: string;
  /** Size of the raw (possibly compressed) source when known (file size, Content-Length). */
  rawSize?: number;
  /** Path of a plain (uncompressed) regular file, for fast paths that seek. */
  seekablePath?: string;
  stream: Readable;
  /**
   * The same bytes as blocks that can be lent to writers without a copy, when the input has them
   * (a decoder thread's ring). Read either this or `stream`, never both.
   */
  blocks?: BlockSource;
  rawBytesRead(): number;
  /** Releases resources (file descriptors, child processes, sockets). Safe to call twice. */
  close(): Promise<void>;
}

/** A source of consecutive blocks of the input. */
export interface BlockSource {
  /** The next block (non-empty), or null at the end of the input. */
  next(): Promise<PooledBuffer | null>;
  /** Size of the input when known. */
  readonly size?: number;
  /**
   * Whether entry data may be handed out as views of the blocks. True for pooled blocks (file
   * reads). A stream's chunks are garbage-collected buffers of up to 4 MiB: a view held by a
   * queued write would pin the whole chunk, and V8 frees them late (it collects after ~64 MB
   * of external memory), so their entries are copied into pooled buffers instead: one copy,
   * and memory bounded by the pool.
   */
  readonly lendsBlocks: boolean;
  /**
   * A stream's error seen so far (e.g. a corrupt gzip member), even if blocks before it are
   * still queued. It explains a tar error found in those blocks better than the tar error does.
   */
  failure?(): unknown;
  /** Reads what is left without parsing it (a stream after the end-of-archive marker). */
  drain?(): Promise<void>;
  close(): Promise<void>;
}

