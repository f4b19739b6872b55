import type { Readable } from 'node:stream';

export type Compression = 'none' | 'gzip' | 'zstd';
export type GzipCodec = 'zlib' | 'pako';
export type ZstdCodec = 'auto' | 'zlib' | 'binary' | 'fzstd';

export interface OpenInputOptions {
  /** Extra HTTP headers for URL inputs ("Name: value"). */
  headers?: string[];
  gzipCodec?: GzipCodec;
  zstdCodec?: ZstdCodec;
  /** stdin stream to use for "-" (tests pass their own). */
  stdin?: Readable;
  /** Bytes per read from files (default 4 MiB). */
  readSize?: number;
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
  rawBytesRead(): number;
  /** Releases resources (file descriptors, child processes, sockets). Safe to call twice. */
  close(): Promise<void>;
}
