/** pack's OVA mode: `from` an OVA file, its disks read in place (src/ova/ova-reader.ts). */
import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { UsageError } from '../../errors';
import { checkInteger } from '../../option-checks';
import type { DiskReader } from '../../io/disk';
import { looksLikeOva, openOvaDisk, readOvaFile, type OvaFileInfo } from '../../ova/ova-reader';
import { MAX_VCPUS, MIN_MEMORY } from '../../xva/metadata/model';
import { DEFAULT_MEMORY, DEFAULT_VCPUS, nicSpecs, OVA_NEEDS_FILE } from './options';
import { packReaders, type ReaderDisk } from './readers';
import type { PackCommon, PackNic, PackOptions, PackRun, PackSummary } from './types';

/**
 * The path of an OVA given as `from`, or undefined for an XVA. An OVA on stdin or at a URL is
 * refused: its VMDK/qcow2 disks are read by offset (grain directories, L2 tables).
 */
export async function ovaFromPath(from: PackOptions['from']): Promise<string | undefined> {
  if (typeof from !== 'string') return undefined;
  const named = /\.ova$/i.test(from.replace(/[?#].*$/, ''));
  if (from === '-' || /^[a-z][a-z0-9+.-]*:\/\//i.test(from)) {
    if (named) throw new UsageError(`${from}: packing from an OVA ${OVA_NEEDS_FILE}`);
    return undefined;
  }
  if (!named && !(await looksLikeOva(from))) return undefined;
  let st;
  try {
    st = await stat(from);
  } catch {
    return undefined; // openInput reports the missing file as for any other input
  }
  if (st.isDirectory()) return undefined; // refused by openInput, as any directory given as input
  if (!st.isFile()) throw new UsageError(`${from} is not a regular file; packing from an OVA ${OVA_NEEDS_FILE}`);
  return from;
}

/**
 * `from` an OVA file: the VM record from its OVF (options override name, description, vCPUs,
 * memory, firmware; `nics` replace the OVF's NICs), the disks read in place from their tar
 * members, then the same writer path as `disks`. The disks become userdevice 0, 1, … in the
 * device order parseOvf gives them (controller and unit in the hardware section, else
 * DiskSection order; src/ova/ovf/disk-order.ts); the first is bootable unless oVirt's `ovf:boot`
 * names another.
 */
export async function packFromOva(options: PackRun, ovaPath: string, common: PackCommon, warn: (m: string) => void): Promise<PackSummary> {
  const info: OvaFileInfo = await readOvaFile(ovaPath);
  const ovf = info.vm;
  const readers: DiskReader[] = [];
  try {
    for (let i = 0; i < ovf.disks.length; i++) readers.push(await openOvaDisk(info, i));
    const anyBoot = ovf.disks.some((d) => d.boot === true);
    const disks: ReaderDisk[] = ovf.disks.map((d, i) => {
      const reader = readers[i]!;
      if (reader.virtualSize > d.capacity) warn(`disk ${i} ${JSON.stringify(d.name)}: the image (${reader.virtualSize} bytes) is larger than the OVF capacity (${d.capacity} bytes); the image size is used`);
      return {
        reader,
        source: `${path.basename(ovaPath)}:${info.diskMembers[i]!.name}`,
        name: d.name,
        description: d.description,
        userdevice: i,
        bootable: anyBoot ? d.boot === true : i === 0,
      };
    });
    const vm = options.vm ?? {};
    const vcpus = vm.vcpus ?? ovf.vcpus ?? DEFAULT_VCPUS;
    const memoryBytes = vm.memoryBytes ?? ovf.memoryBytes ?? DEFAULT_MEMORY;
    if (vm.vcpus === undefined && ovf.vcpus === undefined) warn(`the OVF gives no vCPU count; using ${DEFAULT_VCPUS}`);
    if (vm.memoryBytes === undefined && ovf.memoryBytes === undefined) warn(`the OVF gives no memory size; using ${DEFAULT_MEMORY / 1024 ** 2} MiB`);
    checkInteger(vcpus, 'vcpus (the OVF\'s, unless given)', 1, MAX_VCPUS);
    if (memoryBytes < MIN_MEMORY) throw new UsageError(`the OVF's memory (${memoryBytes} bytes) is below 16 MiB; give the VM's memory (memoryBytes) instead`);
    const nics: PackNic[] = options.nics?.length ? options.nics : ovf.nics.map((n) => ({ network: n.network || undefined, mac: n.mac }));
    const summary = await packReaders(options, common, warn, disks, {
      name: vm.name ?? ovf.name,
      description: vm.description ?? ovf.description,
      vcpus,
      memoryBytes,
      firmware: vm.firmware ?? ovf.firmware ?? 'bios',
      secureBoot: vm.secureBoot,
      isTemplate: vm.isTemplate,
    }, nicSpecs(nics));
    summary.source = { input: ovaPath, compression: 'none', checksum: null, metadata: 'rebuilt', changes: [] };
    return summary;
  } finally {
    await Promise.all(readers.map((r) => r.close().catch(() => undefined)));
  }
}
