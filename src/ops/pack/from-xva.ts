/**
 * pack's repack mode: `from` an XVA, read once by readXva while writeXva writes the new
 * archive, a DiskPipe per disk between the two (the module comment of ./index.ts).
 */
import { OutputError, UsageError, XvaError, XvaFormatError } from '../../errors';
import { openInput } from '../../input/open';
import { imageVirtualSize } from '../../image/types';
import { compareRefs } from '../../xva/format';
import type { DiskInfo, XvaMetadata } from '../../xva/metadata/model';
import { patchOvaXml } from '../../xva/metadata/edit';
import { ovaXmlSpecFromMetadata } from '../../xva/metadata/build';
import type { OvaXmlSpec } from '../../xva/metadata/spec';
import { readXva } from '../../xva/reader';
import { DiskPipe } from '../../xva/repack';
import type { XvaDiskInput } from '../../xva/write-plan';
import { writeXva, type XvaWriteSummary } from '../../xva/writer';
import { nicSpecs, OVA_NEEDS_FILE } from './options';
import { diskSummary, openOutput, writerOptions, type Output } from './output';
import type { PackCommon, PackRun, PackSummary } from './types';

/** Sentinel the pipes fail with when the writer failed (its own error is rethrown). */
class WriterFailed extends Error {
  constructor() {
    super('the XVA writer stopped');
  }
}

export async function packFromXva(options: PackRun, common: PackCommon, warn: (m: string) => void): Promise<PackSummary> {
  const opened = typeof options.from === 'string' ? await openInput(options.from, options) : options.from!;
  const source = opened;
  const pipes = new Map<string, DiskPipe>();
  let ordered: DiskPipe[] = [];
  let out: Output | undefined;
  let writeP: Promise<XvaWriteSummary> | undefined;
  let writeError: unknown;
  let meta: XvaMetadata | undefined;
  let metadataMode: 'kept' | 'patched' | 'rebuilt' = 'kept';
  let changes: string[] = [];
  let packed: DiskInfo[] = [];
  const failAll = (err: unknown): void => {
    for (const p of pipes.values()) p.fail(err);
  };

  try {
    // Refuse an existing output before reading anything.
    out = await openOutput(options);
    const read = await readXva(
      source,
      {
        onMetadata: async (m, sourceOvaXml) => {
          meta = m;
          // Keep the suspend image with the kept ova.xml (its VM record points at it); a rebuilt
          // record describes a halted VM without one.
          packed = m.disks.filter((d) => !(options.rebuildMetadata && d.isSuspendImage));
          for (const d of packed) pipes.set(d.ref, new DiskPipe(d.ref, d.virtualSize));
          ordered = [...pipes.values()].sort((a, b) => compareRefs(a.ref, b.ref));
          for (const d of packed) {
            if (imageVirtualSize(d.virtualSize) !== d.virtualSize) warn(`disk ${d.userdevice} ${JSON.stringify(d.vdi.name)} (${d.ref}): virtual size ${d.virtualSize} is not a multiple of 512; rounded up to ${imageVirtualSize(d.virtualSize)}`);
          }
          const vm = options.vm ?? {};
          let ovaXml: string | undefined;
          let spec: OvaXmlSpec;
          const sourceXml = options.rebuildMetadata ? undefined : sourceOvaXml;
          if (sourceXml !== undefined) {
            const patched = patchOvaXml(sourceXml, {
              virtualSizes: new Map(packed.map((d) => [d.ref, imageVirtualSize(d.virtualSize)])),
              vmRef: m.vm.ref,
              name: vm.name,
              description: vm.description,
              vcpus: vm.vcpus,
              memoryBytes: vm.memoryBytes,
            });
            ovaXml = patched.xml;
            metadataMode = patched.changed ? 'patched' : 'kept';
            changes = patched.changes;
            spec = { vm: { name: '', vcpus: 1, memoryBytes: 0 }, disks: [] };
          } else {
            metadataMode = 'rebuilt';
            spec = ovaXmlSpecFromMetadata(m);
            spec.disks = spec.disks.filter((d) => pipes.has(d.ref));
            spec.vm = {
              ...spec.vm,
              ...(vm.name !== undefined ? { name: vm.name } : {}),
              ...(vm.description !== undefined ? { description: vm.description } : {}),
              ...(vm.vcpus !== undefined ? { vcpus: vm.vcpus, vcpusAtStartup: vm.vcpus } : {}),
              ...(vm.memoryBytes !== undefined ? { memoryBytes: vm.memoryBytes } : {}),
              ...(vm.firmware !== undefined ? { firmware: vm.firmware } : {}),
              ...(vm.secureBoot !== undefined ? { secureBoot: vm.secureBoot } : {}),
              ...(vm.isTemplate !== undefined ? { isTemplate: vm.isTemplate } : {}),
            };
            if (options.nics?.length) spec.vifs = nicSpecs(options.nics);
            if (options.date) spec.version = { date: options.date };
            if (m.disks.some((d) => d.isSuspendImage)) warn('the source VM is suspended; its suspend image is dropped and the VM is packed halted');
          }
          const byRef = new Map(spec.disks.map((d) => [d.ref, d]));
          const disks: XvaDiskInput[] = packed.map((d) => {
            const base = byRef.get(d.ref);
            return {
              ref: d.ref,
              name: base?.name ?? d.vdi.name,
              description: base?.description,
              userdevice: base?.userdevice ?? d.userdevice,
              bootable: base?.bootable ?? d.bootable,
              readOnly: base?.readOnly,
              uuid: base?.uuid,
              source: pipes.get(d.ref)!,
            };
          });
          const totalBytes = packed.reduce((a, d) => a + imageVirtualSize(d.virtualSize), 0);
          const wopts = writerOptions(options, out!, common.compression, totalBytes);
          if (ovaXml !== undefined) wopts.ovaXml = ovaXml;
          writeP = writeXva({ ...spec, disks }, out!.sink, wopts);
          writeP.catch((err: unknown) => {
            writeError = err;
            failAll(new WriterFailed());
          });
        },
        openDisk: (disk) => {
          const pipe = pipes.get(disk.ref);
          if (!pipe) return undefined;
          // The writer takes disks in string order of refs; a source stored in another order
          // would need the whole earlier disk buffered. Refuse instead of deadlocking.
          for (const p of ordered) {
            if (p === pipe) break;
            if (p.virtualSize > 0 && !p.isFinished) {
              throw new XvaFormatError(
                'XVA_CHUNK_ORDER',
                `the source stores disk ${disk.ref} before ${p.ref}, which is not XAPI's order (string order of refs); pack --from cannot reorder in one pass (convert the disks and pack them with --disk)`,
                { disk: disk.ref },
              );
            }
          }
          return pipe;
        },
        onWarning: warn,
      },
      { onBadChunk: options.onBadChunk, signal: options.signal },
    );
    if (!writeP) throw new XvaFormatError('XVA_NO_OVA_XML', 'the source has no ova.xml');
    for (const p of pipes.values()) {
      if (!p.isFinished) throw new XvaFormatError('XVA_MISSING_DISK', `disk ${p.ref} has no data in the source`, { disk: p.ref });
    }
    const summary = await writeP;
    await out!.commit();
    const m = meta!;
    return {
      output: options.output ?? '-',
      compression: common.compression,
      checksum: common.checksum,
      tarFormat: common.tarFormat,
      vm: {
        name: options.vm?.name ?? m.vm.name,
        vcpus: options.vm?.vcpus ?? m.vm.vcpus,
        memoryBytes: options.vm?.memoryBytes ?? m.vm.memoryBytes,
        firmware: (options.rebuildMetadata ? options.vm?.firmware : undefined) ?? m.vm.firmware ?? null,
      },
      disks: packed.map((d) => diskSummary(summary, d.ref, d.vdi.name, d.userdevice, d.bootable, d.ref, 'xva')),
      nics: m.vifs.map((v) => ({ device: v.device, mac: v.mac, network: v.networkName, bridge: v.bridge })),
      source: { input: source.name, compression: source.compression, checksum: read.checksum ?? null, metadata: metadataMode, changes },
      badChunks: read.badChunks,
      warnings: common.warnings,
      tarBytes: summary.tarBytes,
      bytesWritten: summary.bytesWritten,
      seconds: (Date.now() - common.started) / 1000,
    };
  } catch (err) {
    failAll(err);
    if (writeP) await writeP.catch(() => undefined);
    out?.abort();
    // The writer's own error explains a failure that surfaced in the reader as WriterFailed.
    const cause = writeError !== undefined && (err instanceof WriterFailed || !(err instanceof XvaError) || err instanceof OutputError) ? writeError : err;
    if (cause instanceof XvaFormatError && cause.code === 'XVA_NO_OVA_XML' && /\.ovf"/.test(cause.message)) {
      throw new UsageError(`${source.name} is an OVA; packing from an OVA ${OVA_NEEDS_FILE}`);
    }
    throw cause;
  } finally {
    await source.close();
  }
}
