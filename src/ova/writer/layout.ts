/**
 * The OVA's archive layout (docs/output-formats.md §4.1, §4.5): one uncompressed ustar stream
 *
 *   [hdr <vm>.ovf]  OVF, space-padded to a size fixed by the model alone   [pad 512]
 *   [hdr disk 1]    streamOptimized VMDK or qcow2                          [pad 512]
 *   …               (disks in References order = the order the input delivers them)
 *   [hdr <vm>.mf]   SHA256 lines for the OVF and every disk               [pad 512]
 *   2 × 512 zero bytes
 *
 * One 512-byte header per member (no pax records: virt-v2v computes data offsets as
 * (block + 1) × 512); sizes ≥ 8 GiB use GNU base-256 in the ustar size field. Pure size math
 * and the header bytes; the tar codec is src/tar/header.ts.
 */
import { encodeTarHeader, TAR_BLOCK, tarPadding } from '../../tar/header';

/** Bytes of one member: its header plus its data padded to the block size. */
export function tarMemberBytes(size: number): number {
  return TAR_BLOCK + size + tarPadding(size);
}

/** Exact OVA size from the member sizes (OVF, disks, manifest or undefined), end blocks included. */
export function ovaArchiveSize(ovfBytes: number, diskBytes: number[], manifestSize?: number): number {
  let n = tarMemberBytes(ovfBytes);
  for (const d of diskBytes) n += tarMemberBytes(d);
  if (manifestSize !== undefined) n += tarMemberBytes(manifestSize);
  return n + 2 * TAR_BLOCK;
}

/**
 * The single 512-byte ustar header of an OVA member: mode 0644, owner 0/0, no pax records;
 * sizes of 8 GiB and more in GNU base-256 (read by GNU tar, bsdtar, Python's tarfile).
 */
export function ovaMemberHeader(name: string, size: number, mtime: number): Buffer {
  return encodeTarHeader({ name, size, mode: 0o644, mtime, dialect: 'ustar' });
}
