/**
 * pack's option checks and defaults: the checks run before anything is opened or read; the
 * NIC specs turn PackNic options into ova.xml VIF records for the disks and OVA modes and for
 * a rebuilt ova.xml.
 */
import { randomBytes } from 'node:crypto';
import { UsageError } from '../../errors';
import { checkChoice, checkInteger } from '../../option-checks';
import { INPUT_IMAGE_FORMATS } from '../../image/types';
import { checkInputOptions } from '../../input/open';
import { COMPRESSIONS } from '../../input/types';
import { XVA_TAR_DIALECTS, type XvaTarDialect } from '../../tar/header';
import { CHECKSUM_KINDS } from '../../xva/format';
import { FIRMWARES, MAX_VCPUS, MIN_MEMORY } from '../../xva/metadata/model';
import type { OvaXmlVifSpec } from '../../xva/metadata/spec';
import { BAD_CHUNK_POLICIES } from '../../xva/reader';
import type { XvaCompression } from '../../xva/writer';
import type { PackNic, PackOptions } from './types';

/**
 * Default tar dialect for `pack`: POSIX ustar. docs/xva-format.md §2.2 recommends it for files meant
 * for import: XAPI's reader (ocaml-tar HeaderReader) accepts V7 and ustar alike, ustar entries
 * (tar-stream defaults) are what Xen Orchestra streams into XAPI's /import every day, and every
 * other tool (GNU tar, bsdtar, Python tarfile) reads ustar without V7 guesswork. `xapi` writes
 * XAPI's own V7 headers byte for byte for those who want an export look-alike.
 */
export const DEFAULT_TAR_FORMAT: XvaTarDialect = 'ustar';

export const DEFAULT_VCPUS = 1;
export const DEFAULT_MEMORY = 1024 ** 3;
export const DEFAULT_NETWORK = 'Pool-wide network associated with eth0';
/** XAPI's keep-alive interval (5 s, CA-39291). */
export const KEEP_ALIVE_SECONDS = 5;

/** Compression implied by an output file name, or undefined. */
export function compressionFromPath(p: string): XvaCompression | undefined {
  const lower = p.toLowerCase();
  if (lower.endsWith('.gz') || lower.endsWith('.tgz')) return 'gzip';
  if (lower.endsWith('.zst') || lower.endsWith('.zstd')) return 'zstd';
  return undefined;
}

/** A random locally administered, unicast MAC (first octet x2/x6/xA/xE). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

function normalizeMac(mac: string): string {
  const m = mac.trim().toLowerCase().replace(/-/g, ':');
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m)) throw new UsageError(`invalid MAC address "${mac}" (use aa:bb:cc:dd:ee:ff)`);
  return m;
}

export function validate(options: PackOptions, fromOva = false): void {
  const hasDisks = (options.disks?.length ?? 0) > 0;
  if (hasDisks && options.from !== undefined) throw new UsageError('give either disk images or an archive to repack (from), not both');
  if (!hasDisks && options.from === undefined) throw new UsageError('nothing to pack: give at least one disk image or an archive to repack (from)');
  if (options.output === undefined && !options.stdout) throw new UsageError('no output given (a file, or "-" with a stream)');
  if (options.output === '-' && !options.stdout) throw new UsageError('output "-" needs a stream (options.stdout)');
  checkInteger(options.vm?.vcpus, 'vcpus', 1, MAX_VCPUS);
  checkInteger(options.vm?.memoryBytes, 'memoryBytes', MIN_MEMORY);
  checkChoice(options.vm?.firmware, FIRMWARES, 'firmware');
  checkChoice(options.compression, COMPRESSIONS, 'compression');
  checkChoice(options.checksum, CHECKSUM_KINDS, 'checksum');
  checkChoice(options.tarFormat, XVA_TAR_DIALECTS, 'tarFormat');
  checkChoice(options.onBadChunk, BAD_CHUNK_POLICIES, 'onBadChunk');
  for (const d of options.disks ?? []) if (typeof d !== 'string') checkChoice(d.format, INPUT_IMAGE_FORMATS, `format of disk ${d.path}`);
  checkInputOptions(options);
  if (options.from !== undefined && !options.rebuildMetadata && !fromOva) {
    if (options.nics?.length) throw new UsageError('NICs with an XVA to repack need rebuildMetadata (the source\'s NICs are kept otherwise)');
    if (options.vm?.firmware) throw new UsageError('firmware with an XVA to repack needs rebuildMetadata (the source\'s boot settings are kept otherwise)');
  }
  if (options.vm?.secureBoot && options.vm.firmware !== 'uefi') throw new UsageError('secure boot needs UEFI firmware');
}

/** compressionLevel's range for each compression (gzip as zlib, zstd as the zstd program). */
const LEVELS: Record<Exclude<XvaCompression, 'none'>, { min: number; max: number }> = { gzip: { min: 1, max: 9 }, zstd: { min: 1, max: 19 } };

export function checkLevel(level: number | undefined, compression: XvaCompression): void {
  if (level === undefined) return;
  if (compression === 'none') throw new UsageError('a compression level needs a compressed archive (gzip or zstd)');
  checkInteger(level, `${compression} compression level`, LEVELS[compression].min, LEVELS[compression].max);
}

export const OVA_NEEDS_FILE = 'reads its disks in place (random access): save the OVA to a file first and pack from its path';

export function nicSpecs(nics: PackNic[] | undefined): OvaXmlVifSpec[] {
  return (nics ?? []).map((n, i) => {
    const network = n.network?.trim() || DEFAULT_NETWORK;
    const bridge = n.bridge ?? (/^(xenbr|xapi|xenapi)\d+$/.test(network) ? network : network === DEFAULT_NETWORK ? 'xenbr0' : '');
    if (n.mtu !== undefined && (!Number.isSafeInteger(n.mtu) || n.mtu < 68 || n.mtu > 65535)) throw new UsageError(`NIC ${i}: invalid MTU ${n.mtu}`);
    return { device: n.device ?? i, mac: n.mac ? normalizeMac(n.mac) : randomMac(), macAutogenerated: !n.mac, mtu: n.mtu, networkName: network, bridge };
  });
}
