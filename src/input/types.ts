import type { Readable } from 'node:stream';
import type { PooledBuffer } from '../io/buffer-pool';

/** Compressions of a whole XVA stream, detected from the bytes when reading, chosen when writing. */
export const COMPRESSIONS = ['none', 'gzip', 'zstd'] as const;
export type Compression = (typeof COMPRESSIONS)[number];
/**
 * gzip decoders (`--gzip-codec`): 'igzip' the ISA-L program on PATH, 'zlib' node:zlib, 'pako'
 * pure JavaScript; 'auto' (the default) takes the first of them that this machine has.
 */
export const GZIP_CODECS = ['auto', 'igzip', 'zlib', 'pako'] as const;
export type GzipCodec = (typeof GZIP_CODECS)[number];
/** zstd decoders (zstd.ts); the first is the default. */
export const ZSTD_CODECS = ['auto', 'zlib', 'binary', 'fzstd'] as const;
export type ZstdCodec = (typeof ZSTD_CODECS)[number];

/**
 * How URL inputs are fetched and which servers are trusted (docs/design/http-input.md).
 * `ca`, `pin` and `insecure` decide the trust of every TLS connection of a download,
 * redirects included.
 */
export interface HttpOptions {
  /**
   * Longest silence from the server, in milliseconds: connecting, waiting for the response head,
   * and between two reads of the body (a body paused because we are busy is not silent).
   * Default HTTP_DEFAULT_TIMEOUT_MS (10 minutes); 0 waits forever.
   */
  timeoutMs?: number;
  /**
   * Certificates to trust as well as Node's default CAs: PEM text (one or several certificates)
   * or one DER certificate. A self-signed server certificate can be given as its own CA.
   */
  ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  /**
   * SHA-256 fingerprints of the only server certificates accepted, whoever signed them and
   * whatever names they carry: hex, colons optional, any case, optional `sha256:` prefix
   * (as `openssl x509 -noout -fingerprint -sha256` prints it). Not with `ca` or `insecure`.
   */
  pin?: string | readonly string[];
  /** Accept any server certificate (curl's -k): the download can be read and changed by anyone on the path. */
  insecure?: boolean;
  /**
   * Send the credentials (`user:password@` of the URL, `Authorization`, `Cookie` and
   * `Proxy-Authorization` headers) to every server of the download, not only to the origin they
   * were given for (curl's --location-trusted). For a pool master that redirects an export to
   * the member holding the disks: that member asks for the same credentials.
   */
  locationTrusted?: boolean;
}

export interface OpenInputOptions {
  /** Extra HTTP headers for URL inputs ("Name: value"). */
  headers?: string[];
  /** Timeout and TLS trust for URL inputs. */
  http?: HttpOptions;
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
 * An opened input: the decompressed tar byte stream plus facts about the raw source, in one of
 * three kinds that say how it can be read (switch on `kind`):
 * - 'file': a plain (uncompressed) regular file at `path`, which readers may seek in;
 * - 'blocks': blocks that can be lent without a copy (a decoder thread's ring);
 * - 'stream': only the byte stream.
 * Every kind has `stream`, which yields Buffers; `rawBytesRead()` counts bytes consumed from the
 * source before decompression (for progress against `rawSize`).
 */
export type InputSource = FileInputSource | BlocksInputSource | StreamInputSource;

/** What every kind of InputSource has. */
export interface InputSourceFacts {
  /** As the user named it: a path, "-" or a URL (credentials removed). */
  name: string;
  compression: Compression;
  /** Which decoder runs, e.g. "node:zlib", "pako", "zstd binary", "fzstd", "none". */
  codec: string;
  /** Size of the raw (possibly compressed) source when known (file size, Content-Length). */
  rawSize?: number;
  stream: Readable;
  rawBytesRead(): number;
  /** Releases resources (file descriptors, child processes, sockets). Safe to call twice. */
  close(): Promise<void>;
}

/** A plain (uncompressed) regular file, for fast paths that seek. */
export interface FileInputSource extends InputSourceFacts {
  kind: 'file';
  compression: 'none';
  /** Path of the file, to open it again for positional reads. */
  path: string;
}

/** An input whose bytes come as lendable blocks (a decoder thread's ring). */
export interface BlocksInputSource extends InputSourceFacts {
  kind: 'blocks';
  /** The same bytes as `stream`, as blocks that can be lent to writers without a copy. Read either this or `stream`, never both. */
  blocks: BlockSource;
}

/** An input read only as a byte stream (URLs, pipes, decoders on the main thread). */
export interface StreamInputSource extends InputSourceFacts {
  kind: 'stream';
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

/**
 * The longest HTTP timeout: Node's timers hold at most 2^31 - 1 ms (24.8 days) and treat a
 * longer one as 1 ms, with a warning each time one is armed.
 */
export const HTTP_MAX_TIMEOUT_MS = 2 ** 31 - 1;
