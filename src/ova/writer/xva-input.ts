/**
 * The OVA input made of an XVA: its ova.xml gives the VM (ovf/from-xva.ts), its disks stream
 * through the XVA reader. Re-readable when the source can be opened again (file, URL).
 */
import { UsageError } from '../../errors';
import { readXva } from '../../xva/reader';
import { ovaVmFromXvaMetadata, xvaDiskOrder } from '../ovf/from-xva';
import type { OvaProfile } from '../settings';
import type { OvaFromXvaOptions } from './options';
import type { OvaInput } from './passes';

/** Each pass opens the XVA again and reads it through; the model comes from its ova.xml. */
export function xvaInput(profile: OvaProfile, o: OvaFromXvaOptions): OvaInput {
  let opened = 0;
  return {
    reopenable: o.xva.reopenable,
    readOnceReason: `${o.xva.name} can be read only once (stdin or a one-shot stream)`,
    async run(consumer, phase) {
      if (opened > 0 && !o.xva.reopenable) throw new UsageError(`${o.xva.name} cannot be read a second time`);
      opened++;
      const source = await o.xva.open();
      let order: string[] = [];
      let total = 0;
      try {
        await readXva(
          source,
          {
            onMetadata: async (meta) => {
              o.onMetadata?.(meta);
              const vm = ovaVmFromXvaMetadata(meta, { profile, name: o.name, controller: o.controller, nicModel: o.nicModel });
              order = xvaDiskOrder(meta);
              total = order.length;
              await consumer.begin(vm);
            },
            openDisk: async (disk) => {
              const i = order.indexOf(disk.ref);
              if (i < 0) return undefined; // suspend image
              o.onProgress?.({ phase, kind: 'disk-start', disk: i, disks: total, name: disk.vdi.name });
              return consumer.openDisk(i);
            },
            onDiskDone: (disk, stats) => {
              const i = order.indexOf(disk.ref);
              if (i >= 0) o.onProgress?.({ phase, kind: 'disk-done', disk: i, disks: total, name: disk.vdi.name, bytes: stats.bytesPlaced });
            },
            onWarning: o.onWarning,
          },
          { ...o.readOptions, signal: o.signal ?? o.readOptions?.signal },
        );
      } finally {
        await source.close();
      }
    },
    async close() {},
  };
}
