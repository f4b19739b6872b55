/**
 * OVA manifest (.mf): one `SHA256(<name>)= <lowercase hex>` line per member, for the OVF and
 * every disk, never for the manifest itself (docs/output-formats.md §4.2). virt-v2v parses exactly
 * `^(SHA1|SHA256)\((.*)\)= ([0-9a-fA-F]+)\r?$`; VirtualBox and VMware read SHA256 too.
 */
import { createHash, type Hash } from 'node:crypto';

export const SHA256_HEX_LENGTH = 64;

export interface ManifestEntry {
  name: string;
  /** Lowercase hex SHA-256 of the member's bytes. */
  sha256: string;
}

export function manifestLine(entry: ManifestEntry): string {
  if (!/^[0-9a-f]{64}$/.test(entry.sha256)) throw new RangeError(`manifest: bad SHA-256 for ${entry.name}`);
  return `SHA256(${entry.name})= ${entry.sha256}\n`;
}

export function buildManifest(entries: ManifestEntry[]): Buffer {
  return Buffer.from(entries.map(manifestLine).join(''), 'utf8');
}

/** Manifest length in bytes for these member names (digests have a fixed width). */
export function manifestBytes(names: string[]): number {
  let n = 0;
  for (const name of names) n += Buffer.byteLength(`SHA256(${name})= \n`, 'utf8') + SHA256_HEX_LENGTH;
  return n;
}

/** Parses manifest text into entries (SHA1/SHA256/SHA512 lines; others are ignored). */
export function parseManifest(text: string): Array<{ algorithm: string; name: string; digest: string }> {
  const out: Array<{ algorithm: string; name: string; digest: string }> = [];
  for (const line of text.split('\n')) {
    const m = /^(SHA1|SHA256|SHA512)\((.*)\)= ([0-9a-fA-F]+)\r?$/.exec(line);
    if (m) out.push({ algorithm: m[1]!, name: m[2]!, digest: m[3]!.toLowerCase() });
  }
  return out;
}

/** Incremental SHA-256 over a member's bytes as they are written. */
export class MemberDigest {
  private readonly hash: Hash = createHash('sha256');
  bytes = 0;
  update(data: Uint8Array): void {
    this.hash.update(data);
    this.bytes += data.length;
  }
  hex(): string {
    return this.hash.digest('hex');
  }
}
