/**
 * Where pack writes: a file as `<name>.part`, renamed when complete (PartFile), or a Writable
 * (stdout) with backpressure; the writer options and progress reporting every mode shares.
 */
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { PartFile } from '../../output/part-file';
import type { FileTarget } from '../../output/targets';
import type { XvaProducerQuirks } from '../../xva/producer-quirks';
import type { WriteXvaOptions, XvaCompression, XvaWriteSummary } from '../../xva/writer';
import { DEFAULT_TAR_FORMAT } from './options';
import type { PackedDisk, PackOptions, PackRun } from './types';

/** A Writable over a file target (the PartFile's descriptor). */
function fileWritable(target: FileTarget): Writable {
  return new Writable({
    highWaterMark: 4 * 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      target.write(chunk).then(() => cb(), cb);
    },
  });
}

export interface Output {
  sink: Writable;
  label: string;
  /** Called after a successful write. */
  commit(): Promise<void>;
  abort(): void;
  end: boolean;
}

export async function openOutput(options: PackOptions): Promise<Output> {
  if (options.output === undefined || options.output === '-') {
    return { sink: options.stdout!, label: 'standard output', commit: async () => {}, abort: () => {}, end: false };
  }
  const part = await PartFile.create(path.resolve(options.output), !!options.force);
  return {
    sink: fileWritable(part.target),
    label: options.output,
    commit: () => part.commit(),
    abort: () => part.abortSync(),
    end: true,
  };
}

export function writerOptions(options: PackRun, out: Output, compression: XvaCompression, totalBytes: number): WriteXvaOptions & XvaProducerQuirks {
  let lastProgress = 0;
  const perDisk = new Map<string, number>();
  const report = options.onProgress;
  return {
    compression,
    compressionLevel: options.compressionLevel,
    checksum: options.checksum ?? 'xxh64',
    tarDialect: options.tarFormat ?? DEFAULT_TAR_FORMAT,
    ovaXmlMtime: options.ovaXmlMtime,
    uuidGen: options.uuidGen,
    end: out.end,
    label: out.label,
    signal: options.signal,
    onProgress: report
      ? (p) => {
          perDisk.set(p.disk, p.bytesDone);
          const now = Date.now();
          if (now - lastProgress < 100 && p.bytesDone < p.bytesTotal) return;
          lastProgress = now;
          let done = 0;
          for (const v of perDisk.values()) done += v;
          report({ bytesDone: done, bytesTotal: totalBytes });
        }
      : undefined,
  };
}

export function diskSummary(summary: XvaWriteSummary, ref: string, name: string, userdevice: string, bootable: boolean, source: string, format: PackedDisk['format']): PackedDisk {
  const s = summary.disks.find((x) => x.ref === ref);
  return {
    ref,
    name,
    userdevice,
    bootable,
    virtualSize: s?.virtualSize ?? 0,
    source,
    format,
    chunksWritten: s?.chunksWritten ?? 0,
    zeroChunksSkipped: s?.zeroChunksSkipped ?? 0,
    dataBytes: s?.dataBytes ?? 0,
  };
}
