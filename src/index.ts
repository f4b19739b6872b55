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
export type { InputSource, OpenInputOptions, Compression } from './input/types';
export type { DiskImageWriter, ImageWriteResult, ImageFormat, SequentialTarget, RandomAccessTarget } from './image/types';
export { RawWriter } from './image/raw-writer';
export { createImageWriter } from './image/create-writer';
export { FileTarget, StreamTarget } from './output/targets';
export * from './errors';
