/**
 * xva2img as a library. The CLI is a thin layer over these functions.
 *
 *   import { convertXva } from 'xva2img';
 *   const summary = await convertXva('vm.xva.gz', { outDir: 'images', format: 'qcow2' });
 */
export { convertXva, selectDisks, formatFromPath } from './convert';
export type { ConvertOptions, ConvertSummary, ConvertedDisk } from './convert';
export { readXva } from './xva/reader';
export type { XvaConsumer, ReadXvaOptions, XvaReadResult, BadChunk, BadChunkPolicy, DiskReadStats, XvaProgress } from './xva/reader';
export { parseOvaXml } from './xva/ova-xml';
export type * from './xva/model';
export { openInput } from './input/open';
export { GZIP_CODECS } from './input/types';
export type { InputSource, OpenInputOptions, HttpOptions, Compression, GzipCodec } from './input/types';
export { HTTP_DEFAULT_TIMEOUT_MS } from './input/http';
export { UntrustedCertificateError } from './input/tls-trust';
export type { DiskImageWriter, ImageWriteResult, ImageFormat, SequentialTarget, RandomAccessTarget } from './image/types';
export { RawWriter } from './image/raw-writer';
export { createImageWriter } from './image/create-writer';
export { FileTarget, StreamTarget } from './output/targets';
export * from './errors';
export { inspectXva } from './inspect';
export type { InspectOptions, XvaInfo, InfoDisk, DiskChunkStats } from './inspect';
export { verifyXva } from './verify';
export type { VerifyOptions, VerifyResult, VerifyProblem } from './verify';
export { convertBatch, batchItemCause, worstExitCode } from './batch';
export type { BatchOptions, BatchResult, BatchItemResult, BatchItemError, BatchStatus } from './batch';
export { openTarHeaderWalker } from './tar/header-walker';
export type { TarHeaderWalker, WalkedEntry } from './tar/header-walker';
export { packXva, diskReaderSource, compressionFromPath, DEFAULT_TAR_FORMAT } from './pack';
export type { PackOptions, PackSummary, PackDisk, PackNic, PackVm, PackedDisk } from './pack';
export * from './ova';
export { measureXva } from './measure';
export type { MeasureOptions, MeasureResult, DiskMeasure } from './measure';
export { openDiskImage, Qcow2Reader } from './image/qcow2-reader';
export { RawReader } from './image/raw-reader';
export { streamDiskImage } from './image/disk-reader';
export { mapXva } from './map';
export type { MapOptions, MapResult, DiskMap, MapExtent } from './map';
export { serveXva, nbdUri } from './serve';
export type { ServeOptions, XvaServer, ServedExport } from './serve';
export type { StoredChunk } from './xva/reader';
