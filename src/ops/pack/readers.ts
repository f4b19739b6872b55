/**
 * Writes an XVA from opened DiskReaders: the shared back half of the disks mode
 * (./from-disks.ts) and the OVA mode (./from-ova.ts). Refs, keep-alive chunks while streaming
 * long runs of zeros (docs/xva-format.md §4.3), and the summary.
 */
import { UsageError } from '../../errors';
import type { DiskReader } from '../../io/disk';
import { imageVirtualSize } from '../../image/types';
import type { OvaXmlSpec, OvaXmlVifSpec } from '../../xva/metadata/spec';
import type { XvaDiskInput } from '../../xva/write-plan';
import { writeXva } from '../../xva/writer';
import { KEEP_ALIVE_SECONDS } from './options';
import { diskSummary, openOutput, writerOptions, type Output } from './output';
import type { PackCommon, PackRun, PackSummary } from './types';

/** Export-local refs of packed disks: zero-padded so string order = argument order (as XO does). */
function diskRefs(count: number): string[] {
  const width = Math.max(3, String(Math.max(0, count - 1)).length);
  return Array.from({ length: count }, (_, i) => `Ref:${String(i).padStart(width, '0')}`);
}

/** One disk to write from a reader (disks mode and OVA mode). */
export interface ReaderDisk {
  reader: DiskReader;
  /** For messages and the summary. */
  source: string;
  name: string;
  description?: string;
  userdevice: number | string;
  bootable: boolean;
  readOnly?: boolean;
}

/** Writes the XVA from opened readers (the caller closes them). */
export async function packReaders(options: PackRun, common: PackCommon, warn: (m: string) => void, inputs: ReaderDisk[], vmSpec: OvaXmlSpec['vm'], vifs: OvaXmlVifSpec[]): Promise<PackSummary> {
  const refs = diskRefs(inputs.length);
  const toStream = options.output === undefined || options.output === '-';
  const keepAliveMs = 1000 * (options.keepAliveSeconds ?? (toStream && common.compression === 'none' ? KEEP_ALIVE_SECONDS : 0));
  let lastData = Date.now();
  let keepAlivesWritten = 0;
  const keepAlives = (_ref: string, chunk: number): number => {
    const now = Date.now();
    if (chunk === 0) lastData = now; // a new disk starts with its (always written) chunk 0
    if (keepAliveMs <= 0 || now - lastData < keepAliveMs) return 0;
    lastData = now;
    keepAlivesWritten++;
    return 1;
  };
  // The writer read a chunk that holds data: the clock of the keep-alives starts again.
  const onData = (): void => {
    lastData = Date.now();
  };
  let out: Output | undefined;
  try {
    const disks: XvaDiskInput[] = inputs.map((d, i) => {
      const size = d.reader.virtualSize;
      if (imageVirtualSize(size) !== size) {
        warn(`disk ${i} ${JSON.stringify(d.name)} (${d.source}): size ${size} is not a multiple of 512; virtual_size rounded up to ${imageVirtualSize(size)} (zeros added)`);
      }
      if (size === 0) warn(`disk ${i} ${JSON.stringify(d.name)} (${d.source}) is empty (0 bytes)`);
      return {
        ref: refs[i]!,
        name: d.name,
        description: d.description,
        userdevice: d.userdevice,
        bootable: d.bootable,
        readOnly: d.readOnly,
        source: d.reader,
      };
    });
    const userdevices = disks.map((d) => String(d.userdevice));
    const dup = userdevices.find((u, i) => userdevices.indexOf(u) !== i);
    if (dup !== undefined) throw new UsageError(`userdevice ${dup} is used by two disks`);
    const spec: OvaXmlSpec & { disks: XvaDiskInput[] } = {
      vm: vmSpec,
      disks,
      vifs,
      version: options.date ? { date: options.date } : undefined,
    } as OvaXmlSpec & { disks: XvaDiskInput[] };
    const totalBytes = disks.reduce((a, d) => a + imageVirtualSize(d.source.virtualSize), 0);

    out = await openOutput(options);
    const summary = await writeXva(spec, out.sink, { ...writerOptions(options, out, common.compression, totalBytes), keepAlives, onData });
    await out.commit();
    if (keepAlivesWritten > 0) warn(`${keepAlivesWritten} zero-length keep-alive chunk(s) written during long runs of zeros`);
    return {
      output: options.output ?? '-',
      compression: common.compression,
      checksum: common.checksum,
      tarFormat: common.tarFormat,
      vm: { name: spec.vm.name, vcpus: spec.vm.vcpus, memoryBytes: spec.vm.memoryBytes, firmware: spec.vm.firmware ?? 'bios' },
      disks: disks.map((d, i) => diskSummary(summary, d.ref, d.name, String(d.userdevice), d.bootable ?? false, inputs[i]!.source, inputs[i]!.reader.format)),
      nics: vifs.map((v) => ({ device: String(v.device), mac: v.mac, network: v.networkName, bridge: v.bridge })),
      badChunks: [],
      warnings: common.warnings,
      tarBytes: summary.tarBytes,
      bytesWritten: summary.bytesWritten,
      seconds: (Date.now() - common.started) / 1000,
    };
  } catch (err) {
    out?.abort();
    throw err;
  }
}
