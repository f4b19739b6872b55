/**
 * Helpers around DiskReader (io/disk.ts; here: raw, qcow2 with its backing chain, VMDK): the
 * pump that feeds a reader's data into a DiskImageWriter, opening and probing image files.
 *
 * Writers still decide what is a hole: `streamDiskImage` additionally skips all-zero blocks it
 * reads, so a fully allocated raw file or a qcow2 cluster full of zeros costs no output space.
 */
import { ImageFormatError } from '../errors';
import type { DiskExtent, DiskReader } from '../io/disk';
import { openFileHandle, unreadable } from '../io/open-file';
import type { DiskImageWriter, ImageWriteResult } from '../io/disk';
import { CLUSTER_SIZE } from './types';
import { QCOW2_MAGIC } from './qcow2/format';
import { isVmdkMagic } from './vmdk/format';
import { forEachNonZeroRun } from '../io/zero';

/** Merges touching extents of an ascending extent stream. */
export async function* mergeExtents(source: AsyncIterable<DiskExtent>): AsyncGenerator<DiskExtent> {
  let cur: DiskExtent | undefined;
  for await (const e of source) {
    if (e.length <= 0) continue;
    if (cur && cur.offset + cur.length === e.offset) {
      cur.length += e.length;
      continue;
    }
    if (cur) yield cur;
    cur = { offset: e.offset, length: e.length };
  }
  if (cur) yield cur;
}

export interface StreamDiskImageOptions {
  /** Bytes per read (default 4 MiB; rounded to a multiple of 64 KiB). */
  chunkSize?: number;
  /** Granularity of zero detection (default 64 KiB, the qcow2 cluster / VMDK grain size). */
  zeroBlockSize?: number;
  /** Called after every chunk with the guest bytes processed so far (extents only). */
  onProgress?(bytesDone: number): void;
  signal?: AbortSignal;
}

/**
 * Feeds the reader's allocated data to `writer` in ascending order, skipping all-zero blocks,
 * then finishes the writer and returns its result. Read chunks are aligned to `chunkSize`
 * boundaries of the guest address space, so zero detection lines up with 64 KiB clusters.
 */
export async function streamDiskImage(reader: DiskReader, writer: DiskImageWriter, options: StreamDiskImageOptions = {}): Promise<ImageWriteResult> {
  const zeroBlock = options.zeroBlockSize ?? CLUSTER_SIZE;
  const chunk = Math.max(zeroBlock, Math.floor((options.chunkSize ?? 4 * 1024 * 1024) / zeroBlock) * zeroBlock);
  const buf = Buffer.allocUnsafe(chunk);
  let done = 0;
  for await (const ext of reader.allocatedExtents()) {
    const end = ext.offset + ext.length;
    let pos = ext.offset;
    while (pos < end) {
      if (options.signal?.aborted) throw options.signal.reason;
      // Stop at the next chunk boundary so zero blocks stay aligned to the guest grid.
      const next = Math.min(end, (Math.floor(pos / chunk) + 1) * chunk);
      const data = buf.subarray(0, next - pos);
      await reader.readInto(data, pos);
      const runs: Array<[number, number]> = [];
      // Blocks are measured from `pos`; align the first one to the zero-block grid.
      const lead = pos % zeroBlock === 0 ? 0 : Math.min(data.length, zeroBlock - (pos % zeroBlock));
      if (lead > 0) forEachNonZeroRun(data.subarray(0, lead), lead, (s, e) => runs.push([s, e]));
      forEachNonZeroRun(data.subarray(lead), zeroBlock, (s, e) => runs.push([s + lead, e + lead]));
      for (const [s, e] of mergeRuns(runs)) await writer.write(pos + s, data.subarray(s, e));
      done += data.length;
      options.onProgress?.(done);
      pos = next;
    }
  }
  return writer.finish();
}

function mergeRuns(runs: Array<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const r of runs) {
    const last = out[out.length - 1];
    if (last && last[1] === r[0]) last[1] = r[1];
    else out.push([r[0], r[1]]);
  }
  return out;
}

/**
 * Opens a disk image file (raw, qcow2, VMDK, or an OVA holding one) read-only, as every reader
 * does: a missing, unreadable or directory path is one INPUT_UNREADABLE line naming it (exit 2),
 * as for an XVA. `label` names the image in messages (default the path).
 */
export function openImageFile(path: string, label = path): ReturnType<typeof openFileHandle> {
  return openFileHandle(path, 'disk image', label);
}

/** Detects the format of an image file from its magic ('qcow2' or 'raw'); refuses other known formats. */
export async function probeImageFormat(path: string): Promise<'raw' | 'qcow2'> {
  const { handle: fh } = await openImageFile(path);
  try {
    const head = Buffer.alloc(512);
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(head, 0, head.length, 0));
    } catch (err) {
      throw unreadable(path, 'read error at byte 0', err);
    }
    if (bytesRead >= 4 && head.readUInt32BE(0) === QCOW2_MAGIC) return 'qcow2';
    if (bytesRead >= 4 && isVmdkMagic(head)) {
      throw new ImageFormatError('VMDK input is not supported (convert it with `qemu-img convert -O qcow2` first)', { input: path });
    }
    if (bytesRead >= 8 && head.toString('latin1', 0, 8) === 'conectix') {
      throw new ImageFormatError('VHD input is not supported (convert it with `qemu-img convert -O qcow2` first)', { input: path });
    }
    return 'raw';
  } finally {
    await fh.close();
  }
}
