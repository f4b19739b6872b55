/**
 * Which disks of an XVA an operation works on: `convert`, `measure`, `map` and `serve` take the
 * same `--disk` selectors (userdevice, VDI ref or VDI uuid) and skip the suspend image unless asked.
 */
import { UsageError } from '../errors';
import type { DiskInfo, XvaMetadata } from './metadata/model';

/** Which disks of `meta` a conversion writes. */
export function selectDisks(meta: XvaMetadata, selectors: string[] | undefined, includeSuspend = false, keepRepeats = false): DiskInfo[] {
  const candidates = meta.disks.filter((d) => includeSuspend || !d.isSuspendImage);
  if (!selectors || selectors.length === 0) return candidates;
  const chosen = selectors.map((sel) => {
    const d = candidates.find((c) => c.userdevice === sel || c.ref === sel || c.vdi.uuid === sel);
    if (!d) {
      const have = candidates.map((c) => `${c.userdevice} (${c.ref})`).join(', ') || 'none';
      throw new UsageError(`no disk "${sel}" in this VM; disks: ${have}`);
    }
    return d;
  });
  // A selection is a set: a disk named twice (by userdevice, ref or uuid) counts once. Callers
  // that pair each selector with something of its own (convert's --target) keep the repeats.
  return keepRepeats ? chosen : [...new Set(chosen)];
}
