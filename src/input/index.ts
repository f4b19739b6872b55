export { openInput, DEFAULT_READ_SIZE } from './open';
export { detectCompression, GZIP_MAGIC, ZSTD_MAGIC } from './sniff';
export { resolveZstdCodec, findZstdBinary, loadZstdZlib } from './zstd';
export { resolveGzipCodec } from './gzip';
export { isUrl, redactUrl, parseHeaders, MAX_REDIRECTS } from './http';
export { GZIP_CODECS } from './types';
export type { Compression, GzipCodec, ZstdCodec, InputSource, OpenInputOptions } from './types';
