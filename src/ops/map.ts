/**
 * mapXva: where every byte of each disk of a plain XVA file lies (`xva2img map`), from one pass
 * over the tar headers. Extents have the shape of `qemu-img map --output=json`: `{start, length,
 * data, zero, offset}`, with `offset` the position of those bytes in the XVA file (each stored
 * chunk is its own extent: tar headers sit between chunks) and no `offset` for holes, which
 * read as zeros. Same placement as the converter (xva/chunk-index.ts), so
 * `dd if=vm.xva bs=1 skip=OFFSET count=LENGTH` gives what the converter writes at `start`.
 */
import { selectDisks } from '../xva/select-disks';
import { openRandomAccessXva } from '../xva/random-access';

export interface MapExtent {
  start: number;
  length: number;
  data: boolean;
  zero: boolean;
  /** Byte position of the extent's data in the XVA file; absent for holes. */
  offset?: number;
}

export interface DiskMap {
  userdevice: string;
  ref: string;
  name: string;
  size: number;
  /** Stored chunks of the disk (keep-alives excluded). */
  chunks: number;
  extents: MapExtent[];
}

export interface MapResult {
  input: string;
  vmName: string;
  disks: DiskMap[];
  warnings: string[];
}

export interface MapOptions {
  /** Disks to map (userdevice, ref or VDI uuid); default every disk. */
  disks?: string[];
  signal?: AbortSignal;
  onWarning?(message: string): void;
}

export async function mapXva(input: string, options: MapOptions = {}): Promise<MapResult> {
  const xva = await openRandomAccessXva(input, { purpose: 'xva2img map', signal: options.signal, onWarning: options.onWarning });
  try {
    const { metadata, disks: indexes, warnings } = xva.index;
    const disks = selectDisks(metadata, options.disks).map((d): DiskMap => {
      const index = indexes.find((x) => x.disk.ref === d.ref)!;
      const extents: MapExtent[] = [];
      index.forEachRun(0, d.virtualSize, (start, length, chunk) => {
        if (chunk < 0) extents.push({ start, length, data: false, zero: true });
        else extents.push({ start, length, data: true, zero: false, offset: index.stored(chunk).dataOffset + (start - index.start(chunk)) });
      });
      return { userdevice: d.userdevice, ref: d.ref, name: d.vdi.name, size: d.virtualSize, chunks: index.count, extents };
    });
    return { input, vmName: metadata.vm.name, disks, warnings };
  } finally {
    await xva.close();
  }
}
