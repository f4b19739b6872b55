export { openInput, DEFAULT_READ_SIZE } from './open';
export { detectCompression, GZIP_MAGIC, ZSTD_MAGIC } from './sniff';
export { resolveZstdCodec, findZstdBinary, loadZstdZlib } from './zstd';
export { resolveGzipCodec } from './gzip';
export { isUrl, redactUrl, parseHeaders, MAX_REDIRECTS, HTTP_DEFAULT_TIMEOUT_MS } from './http';
export { UntrustedCertificateError, parsePin, certificateFingerprint } from './tls-trust';
export { GZIP_CODECS } from './types';
export type { Compression, GzipCodec, ZstdCodec, InputSource, OpenInputOptions, HttpOptions } from './types';
