/**
 * xva2img as a library: the verbs with their options and results, the streaming reader with the
 * writer seam it feeds, the input opener, the model of an XVA's VM, and the typed errors. The CLI
 * is a thin layer over these functions. Nothing else is public: package.json "exports" lets a
 * caller import this module only.
 *
 *   import { convertXva } from 'xva2img';
 *   const summary = await convertXva('vm.xva.gz', { outDir: 'images', format: 'qcow2' });
 */

// The verbs
export { convertXva } from './ops/convert';
export type { ConvertOptions, ConvertSummary, ConvertedDisk, InPlaceResult } from './ops/convert';
export type { InPlaceTargetSpec } from './ops/in-place-plan';
export { convertBatch, batchItemCause } from './ops/batch';
export type { BatchOptions, BatchResult, BatchItemResult, BatchItemError, BatchStatus } from './ops/batch';
export { inspectXva } from './ops/inspect';
export type { InspectOptions, XvaInfo, InfoDisk, DiskChunkStats } from './ops/inspect';
export { verifyXva } from './ops/verify';
export type { VerifyOptions, VerifyResult, VerifyProblem } from './ops/verify';
export { measureXva } from './ops/measure';
export type { MeasureOptions, MeasureResult, DiskMeasure } from './ops/measure';
export { mapXva } from './ops/map';
export type { MapOptions, MapResult, DiskMap, MapExtent } from './ops/map';
export { serveXva } from './ops/serve';
export type { ServeOptions, XvaServer, ServedExport } from './ops/serve';
export { packXva, DEFAULT_TAR_FORMAT } from './ops/pack';
export type { PackOptions, PackSummary, PackDisk, PackNic, PackVm, PackedDisk } from './ops/pack';
export { writeOva, measureOva } from './ova/ova-writer';
export type {
  WriteOvaOptions,
  OvaWriteOptions,
  OvaFromDisksOptions,
  OvaFromXvaOptions,
  OvaVmSettings,
  OvaDiskInput,
  XvaOvaSource,
  OvaProgressEvent,
  OvaWriteResult,
  OvaMeasureResult,
  OvaMemberInfo,
  OvaDiskResult,
} from './ova/ova-writer';
export type { OvaVm, OvaDisk, OvaDiskFormat, OvaNic, OvaFirmware, OvaGuestOs, OvaBootDevice, OvaController } from './ova/ovf/model';
export { OVA_PROFILES, VMDK_COMPRESSIONS } from './ova/settings';
export type { OvaProfile, VmdkCompression } from './ova/settings';

// The streaming reader and the writers it feeds (ConvertOptions.createWriter, XvaConsumer.openDisk)
export { readXva } from './xva/reader';
export type { XvaConsumer, ReadXvaOptions, XvaReadResult, BadChunk, BadChunkPolicy, DiskReadStats, XvaProgress, StoredChunk } from './xva/reader';
export type { DiskImageWriter, ImageWriteResult, BufferLease } from './io/disk';
export { createImageWriter } from './image/create-writer';
export type { ImageFormat } from './image/types';
export { FileTarget, StreamTarget } from './output/targets';
export type { SequentialTarget, RandomAccessTarget } from './output/target';

// Input
export { openInput } from './input/open';
export { GZIP_CODECS } from './input/types';
export type { InputSource, OpenInputOptions, HttpOptions, Compression, GzipCodec } from './input/types';
export { HTTP_DEFAULT_TIMEOUT_MS } from './input/http';

// The VM model (ova.xml)
export type * from './xva/metadata/model';

// Errors: stable codes and exit codes
export { ExitCode, XvaError, UsageError, InputError, XvaFormatError, ChecksumError, ImageFormatError, OutputError, InterruptedError } from './errors';
export type { XvaErrorCode, ErrorLocation } from './errors';
export { UntrustedCertificateError } from './input/tls-trust';
