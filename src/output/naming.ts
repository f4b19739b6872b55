/**
 * Output file names: `<vm-name>-<userdevice>.<ext>`. Names come from untrusted metadata, so
 * they are sanitized predictably (documented in the README):
 *  - path separators, NUL and other control characters, and characters Windows forbids
 *    (`<>:"/\|?*`) become `_`;
 *  - leading dots and spaces are removed (no hidden files, no `..`), trailing dots/spaces too;
 *  - the result is cut to 100 bytes of UTF-8; an empty result becomes `vm`;
 *  - for disk files the VM name is cut before the `-<userdevice>` suffix (`diskBaseName`), so
 *    the userdevice always survives; an empty/unusable userdevice leaves just the VM name.
 * Collisions (also names that differ only in case, for case-insensitive file systems) get
 * `-2`, `-3`, … before the extension.
 */
import * as path from 'node:path';

const MAX_NAME_BYTES = 100;

export function sanitizeName(raw: string, fallback = 'vm', maxBytes = MAX_NAME_BYTES): string {
  // eslint-disable-next-line no-control-regex
  let s = raw.normalize('NFC').replace(/[\u0000-\u001f\u007f-\u009f<>:"/\\|?*]/g, '_');
  s = s.replace(/^[.\s]+/, '').replace(/[.\s]+$/, '');
  let bytes = Buffer.from(s, 'utf8');
  if (bytes.length > maxBytes) {
    // Cut on a character boundary.
    let cut = maxBytes;
    while (cut > 0 && (bytes[cut]! & 0xc0) === 0x80) cut--;
    bytes = bytes.subarray(0, cut);
    s = bytes.toString('utf8').replace(/[.\s]+$/, '');
  }
  return s || fallback;
}

/** Most bytes of a userdevice kept in a file name (XAPI writes "0", "1", … or "xvda"). */
const MAX_DEVICE_BYTES = 32;

/**
 * `<vm-name>-<userdevice>`, sanitized: the VM name is cut first, so a long name never cuts
 * off the userdevice that tells the disks apart. The whole stays within 100 bytes.
 */
export function diskBaseName(vmName: string, userdevice: string): string {
  const dev = sanitizeName(userdevice, '', MAX_DEVICE_BYTES);
  if (!dev) return sanitizeName(vmName);
  const vm = sanitizeName(vmName, 'vm', MAX_NAME_BYTES - Buffer.byteLength(dev, 'utf8') - 1);
  return `${vm}-${dev}`;
}

/**
 * Hands out unique file names inside one directory for one run. A name stays taken while its
 * output is being written and once it exists; a conversion that fails and leaves nothing under
 * a name gives it back (`release`), so a later input is not pushed to `-2` by an output that
 * never came to be. Allocation is synchronous, so conversions running at the same time never
 * get the same name.
 */
export class NameAllocator {
  private readonly taken = new Set<string>();

  /** `base` is already sanitized; returns `base.ext`, or `base-2.ext`, … if taken (case-insensitively). */
  allocate(base: string, ext: string): string {
    for (let i = 1; ; i++) {
      const name = i === 1 ? `${base}.${ext}` : `${base}-${i}.${ext}`;
      const key = name.toLowerCase();
      if (!this.taken.has(key)) {
        this.taken.add(key);
        return name;
      }
    }
  }

  /**
   * Gives back a name `allocate` returned, for a conversion that failed and left no file under
   * it (nor its `.part`). The caller must not release a name whose output exists.
   */
  release(name: string): void {
    this.taken.delete(name.toLowerCase());
  }
}

/** Joins a sanitized file name to the output directory and checks it stays inside. */
export function insideDir(dir: string, name: string): string {
  const full = path.resolve(dir, name);
  const root = path.resolve(dir);
  if (path.dirname(full) !== root) throw new Error(`refusing output name outside ${root}: ${name}`);
  return full;
}
