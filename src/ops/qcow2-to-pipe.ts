/**
 * qcow2 to a pipe. A qcow2 stream must start with its header, L1, refcounts and L2 tables, so
 * the allocation map has to be known before the first byte (docs/output-formats.md §1.10). An XVA only
 * reveals it by reading the whole disk, so this reads the input twice: pass 1 reads, verifies
 * and zero-detects to build the map; pass 2 reads again and streams the "front" layout: it is
 * the caller's own conversion (`writePass`), handed a writer factory that builds on the map, so
 * this module does not depend on the conversion that calls it.
 * A source that cannot be read twice (standard input) is refused with an explanation.
 */
import { UsageError } from '../errors';
import type { AllocationMap } from '../image/allocation-map';
import type { Qcow2Compat } from '../image/qcow2/layout';
import { Qcow2StreamWriter } from '../image/qcow2/stream-writer';
import type { InputSource, OpenInputOptions } from '../input/types';
import type { DiskImageWriter } from '../io/disk';
import type { SequentialTarget } from '../output/target';
import type { DiskInfo } from '../xva/metadata/model';
import type { BadChunkPolicy } from '../xva/reader';
import { readAllocationMaps } from './allocation-maps';
import { withXvaInput } from './with-xva-input';

/** What the first pass needs of the conversion's options. */
export interface Qcow2PipeOptions extends OpenInputOptions {
  disks?: string[];
  includeSuspendImage?: boolean;
  onBadChunk?: BadChunkPolicy;
  qcow2Compat?: Qcow2Compat;
  signal?: AbortSignal;
}

/** Writes the image with the given writer factory: the conversion's second pass. */
export type WritePass<R> = (createWriter: (disk: DiskInfo, target: SequentialTarget) => DiskImageWriter) => Promise<R>;

export async function twoPassQcow2ToStream<R>(input: string | InputSource, options: Qcow2PipeOptions, writePass: WritePass<R>): Promise<R> {
  if (typeof input !== 'string' || input === '-') {
    throw new UsageError(
      'qcow2 to a pipe needs the allocation map before the first byte, so the input is read twice, and standard input cannot be read twice; ' +
        'write to a file instead (-o vm.qcow2), stream raw or vmdk (-O raw|vmdk -o -), or save the XVA to a file first',
    );
  }
  const maps = await allocationMapsFirstPass(input, options, (selected) => {
    if (selected.length !== 1) {
      const list = selected.map((d) => d.userdevice).join(', ');
      throw new UsageError(`this VM has ${selected.length} disks (${list}); choose one with --disk to write a single output`);
    }
  });
  return writePass((disk, target) => {
    const map = maps.get(disk.ref);
    if (!map) throw new UsageError(`disk ${disk.ref} was not seen in the first pass`);
    return new Qcow2StreamWriter(target, { virtualSize: disk.virtualSize, map, compat: options.qcow2Compat });
  });
}

/**
 * The first pass: reads, verifies and zero-detects the selected disks of `input` (a path or URL,
 * read again afterwards), returning each one's allocation map by VDI ref. `onSelected` may
 * refuse the selection before any chunk is read. Also used to size qcow2 images for devices
 * (ops/convert.ts).
 */
export async function allocationMapsFirstPass(
  input: string,
  options: Qcow2PipeOptions,
  onSelected?: (selected: DiskInfo[]) => void,
): Promise<Map<string, AllocationMap>> {
  const pass = { disks: options.disks, includeSuspendImage: options.includeSuspendImage, onBadChunk: options.onBadChunk, signal: options.signal };
  const { maps } = await withXvaInput(input, options, (first) => readAllocationMaps(first, pass, onSelected));
  return maps;
}
