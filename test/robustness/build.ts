/** Small hand-built XVAs for the robustness tests (independent of src/xva/writer.ts). */
import { xxhash64 } from 'hash-wasm';
import { compactOvaXml } from './fuzz-harness';
import { serializeTar, type SerialEntry } from './tar-model';

export const MiB = 1024 * 1024;

export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export interface BuiltDisk {
  ref: string;
  userdevice: string | number;
  /** Disk content; its length is the virtual size (chunks of 1 MiB, all written). */
  image: Buffer;
}

/** An XVA (plain tar) with a VM called `vmName` and `disks`; entry names may be overridden. */
export async function buildXva(vmName: string, disks: BuiltDisk[], opts: { extraEntries?: SerialEntry[]; xml?: string } = {}): Promise<Buffer> {
  let xml = opts.xml ?? compactOvaXml('__VM__', disks.map((d) => ({ ref: d.ref, size: d.image.length, userdevice: 0 })));
  xml = xml.replace('__VM__', xmlEscape(vmName));
  // compactOvaXml numbers userdevices itself; set ours.
  let i = 0;
  xml = xml.replace(/<name>userdevice<\/name><value>0<\/value>/g, () => `<name>userdevice</name><value>${xmlEscape(String(disks[i++]!.userdevice))}</value>`);
  const entries: SerialEntry[] = [{ name: 'ova.xml', data: Buffer.from(xml, 'utf8') }];
  entries.push(...(opts.extraEntries ?? []));
  for (const d of [...disks].sort((a, b) => (a.ref < b.ref ? -1 : 1))) {
    for (let off = 0, n = 0; off < d.image.length; off += MiB, n++) {
      const chunk = d.image.subarray(off, Math.min(off + MiB, d.image.length));
      const name = `${d.ref}/${String(n).padStart(8, '0')}`;
      entries.push({ name, data: chunk });
      entries.push({ name: `${name}.xxhash`, data: Buffer.from((await xxhash64(chunk)).toUpperCase()) });
    }
  }
  return serializeTar(entries, { ustar: true });
}

/** Deterministic non-zero content. */
export function content(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
