/**
 * Picks the image writer for an output format and destination.
 */
import { OutputError } from '../errors';
import { RawWriter } from './raw-writer';
import { isRandomAccess, type DiskImageWriter, type ImageFormat, type SequentialTarget } from './types';

export interface WriterOptions {
  qcow2Compat?: '1.1' | '0.10';
}

export function imageExtension(format: ImageFormat): string {
  return format;
}

export function createImageWriter(format: ImageFormat, target: SequentialTarget, virtualSize: number, _options: WriterOptions = {}): DiskImageWriter {
  switch (format) {
    case 'raw':
      return new RawWriter(target, virtualSize);
    default:
      if (!isRandomAccess(target)) throw new OutputError('OUTPUT_UNSUPPORTED', `${format} output to a stream is not supported`);
      throw new OutputError('OUTPUT_UNSUPPORTED', `unknown output format ${String(format)}`);
  }
}
