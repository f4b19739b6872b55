/**
 * packXva: disk images (raw, qcow2 with backing chains) or an existing XVA → an XVA that
 * XenServer / XCP-ng import, in one streaming pass, through the one XVA writer
 * (src/xva/writer.ts; layout and rules in docs/xva-format.md §1-6).
 *
 *  - `disks`: each image is opened with openDiskImage and read chunk by chunk in ascending
 *    order; ranges the image does not allocate (qcow2) are never read. The VM record comes
 *    from the options (name, description, vCPUs, memory, firmware, NICs).
 *  - `from`: an XVA (path, "-", URL; plain/gzip/zstd) is read once by readXva while writeXva
 *    writes the new archive; a DiskPipe per disk bridges the two with a small bounded queue.
 *    Chunk checksums are verified on read (policy `onBadChunk`) and recomputed on write. The
 *    source's ova.xml is kept (patched only where needed, see xva/metadata/edit.ts) unless
 *    `rebuildMetadata`. Source refs are kept, so the output's disk order (string order of
 *    refs) is the source's archive order and both sides stream.
 *  - `from` an OVA file: the VM record from its OVF, the disks read in place from their tar
 *    members, then the same writer path as `disks`.
 *
 * One file per mode (from-disks.ts, from-xva.ts, from-ova.ts); the disks and OVA modes share
 * readers.ts; options.ts checks the options, output.ts opens the output, types.ts holds the
 * option and result types.
 *
 * Output: a file written as `<name>.part`, fsynced and renamed when complete (PartFile), or
 * any Writable (stdout) with backpressure. Compression from `compression`, else from the
 * file name (`.gz`, `.zst`).
 */
import type { XvaCompression } from '../../xva/writer';
import { packDisks } from './from-disks';
import { ovaFromPath, packFromOva } from './from-ova';
import { packFromXva } from './from-xva';
import { checkLevel, compressionFromPath, DEFAULT_TAR_FORMAT, validate } from './options';
import type { PackDeterminism, PackOptions, PackRun, PackSummary } from './types';

export { DEFAULT_MEMORY, DEFAULT_NETWORK, DEFAULT_TAR_FORMAT, DEFAULT_VCPUS, KEEP_ALIVE_SECONDS, compressionFromPath, randomMac } from './options';
export type { PackDeterminism, PackDisk, PackedDisk, PackNic, PackOptions, PackSummary, PackVm } from './types';

/** Packs disk images or repacks an XVA into a new XVA. See the module comment. */
export async function packXva(packOptions: PackOptions, determinism: PackDeterminism = {}): Promise<PackSummary> {
  const options: PackRun = { ...packOptions, ...determinism };
  const started = Date.now();
  const ovaPath = await ovaFromPath(options.from);
  validate(options, ovaPath !== undefined);
  const warnings: string[] = [];
  const warn = (m: string): void => {
    warnings.push(m);
    options.onWarning?.(m);
  };
  const fromExt = options.output && options.output !== '-' ? compressionFromPath(options.output) : undefined;
  const compression: XvaCompression = options.compression ?? fromExt ?? 'none';
  checkLevel(options.compressionLevel, compression);
  if (options.compression && fromExt && options.compression !== fromExt) {
    warn(`output name ${options.output} suggests ${fromExt}, but ${options.compression === 'none' ? 'no compression' : options.compression} was chosen`);
  } else if (options.compression && options.compression !== 'none' && !fromExt && options.output && options.output !== '-') {
    warn(`output name ${options.output} has no .${options.compression === 'gzip' ? 'gz' : 'zst'} extension, but the file is ${options.compression}-compressed`);
  }

  const common = { compression, checksum: options.checksum ?? 'xxh64', tarFormat: options.tarFormat ?? DEFAULT_TAR_FORMAT, warnings, started };
  if (ovaPath !== undefined) return packFromOva(options, ovaPath, common, warn);
  if (options.from !== undefined) return packFromXva(options, common, warn);
  return packDisks(options, common, warn);
}
