/**
 * xva2img as a library. The CLI is a thin layer over these functions.
 *
 *   import { convertXva } from 'xva2img';
 *   const summary = await convertXva('vm.xva.gz', { outDir: 'images', format: 'qcow2' });
 */
export { convertXva, formatFromPath } from './ops/convert';
export { selectDisks } from './xva/select-disks';
export type { ConvertOptions, ConvertSummary, ConvertedDisk } from './ops/convert';
export { readXva } from './xva/reader';
export type { XvaConsumer, ReadXvaOptions, XvaReadResult, BadChunk, BadChunkPolicy, DiskReadStats, XvaProgress } from './xva/reader';
export { parseOvaXml } from './xva/metadata/parse';
export type * from './xva/metadata/model';
export { openInput } from './input/open';
export { GZIP_CODECS } from './input/types';
export type { InputSource, OpenInputOptions, HttpOptions, Compression, GzipCodec } from './input/types';
export { HTTP_DEFAULT_TIMEOUT_MS } from './input/http';
export { UntrustedCertificateError } from './input/tls-trust';
export type { DiskImageWriter, ImageWriteResult } from './io/disk';
export type { ImageFormat } from './image/types';
export type { SequentialTarget, RandomAccessTarget } from './output/target';
export { RawWriter } from './image/raw/writer';
export { createImageWriter } from './image/create-writer';
export { FileTarget, StreamTarget } from './output/targets';
export * from './errors';
export { inspectXva } from './ops/inspect';
export type { InspectOptions, XvaInfo, InfoDisk, DiskChunkStats } from './ops/inspect';
export { verifyXva } from './ops/verify';
export type { VerifyOptions, VerifyResult, VerifyProblem } from './ops/verify';
export { convertBatch, batchItemCause } from './ops/batch';
export { worstExitCode } from './errors';
export type { BatchOptions, BatchResult, BatchItemResult, BatchItemError, BatchStatus } from './ops/batch';
export { openTarHeaderWalker } from './tar/header-walker';
export type { TarHeaderWalker, WalkedEntry } from './tar/header-walker';
export { packXva, diskReaderSource, compressionFromPath, DEFAULT_TAR_FORMAT } from './ops/pack';
export type { PackOptions, PackSummary, PackDisk, PackNic, PackVm, PackedDisk } from './ops/pack';
export * from './ova';
export { measureXva } from './ops/measure';
export type { MeasureOptions, MeasureResult, DiskMeasure } from './ops/measure';
export { openDiskImage, Qcow2Reader } from './image/qcow2/reader';
export { RawReader } from './image/raw/reader';
export { streamDiskImage } from './image/disk-reader';
export { mapXva } from './ops/map';
export type { MapOptions, MapResult, DiskMap, MapExtent } from './ops/map';
export { serveXva, nbdUri } from './ops/serve';
export type { ServeOptions, XvaServer, ServedExport } from './ops/serve';
export type { StoredChunk } from './xva/reader';
