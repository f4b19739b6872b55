/**
 * Picks the image writer for an output format and destination.
 *  - raw: sparse pwrites into a file, or zeros streamed for holes to a pipe;
 *  - qcow2: one pass into a seekable file (data first, tables appended, header last); a pipe
 *    needs the allocation map first (see ops/qcow2-to-pipe.ts), so it is refused here;
 *  - vmdk: streamOptimized, strictly sequential: works for files and pipes alike.
 */
import { OutputError } from '../errors';
import { Qcow2Writer } from './qcow2/writer';
import { RawWriter } from './raw/writer';
import { isRandomAccess, type SequentialTarget } from '../output/target';
import type { DiskImageWriter } from '../io/disk';
import type { ImageFormat } from './types';
import type { VmdkWriter as VmdkWriterClass } from './vmdk/writer';

export interface WriterOptions {
  qcow2Compat?: '1.1' | '0.10';
}

export function imageExtension(format: ImageFormat): string {
  return format;
}

export function createImageWriter(format: ImageFormat, target: SequentialTarget, virtualSize: number, options: WriterOptions = {}): DiskImageWriter {
  switch (format) {
    case 'raw':
      return new RawWriter(target, virtualSize);
    case 'qcow2':
      if (!isRandomAccess(target)) {
        throw new OutputError('OUTPUT_UNSUPPORTED', 'qcow2 to a stream needs the allocation map first (two passes over a re-readable input)');
      }
      return new Qcow2Writer(target, { virtualSize, compat: options.qcow2Compat });
    case 'vmdk': {
      // Loaded when needed (its deflate machinery is not small): see the lazy-require note in cli/main.ts.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { VmdkWriter } = require('./vmdk/writer') as { VmdkWriter: typeof VmdkWriterClass };
      return new VmdkWriter(target, { virtualSize });
    }
    default:
      throw new OutputError('OUTPUT_UNSUPPORTED', `unknown output format ${String(format)}`);
  }
}
