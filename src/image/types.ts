/**
 * What every image format shares: the format names (written and read), the cluster size of the
 * qcow2 and VMDK writers, and the one rule for an image's virtual size. The reader and writer
 * seams are in io/disk.ts, the byte destinations in output/target.ts.
 */
/** Output image formats (convert, measure). */
export const IMAGE_FORMATS = ['raw', 'qcow2', 'vmdk'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

/** Disk image formats read as input (pack, ova): probed from the magic unless given. */
export const INPUT_IMAGE_FORMATS = ['raw', 'qcow2'] as const;
export type InputImageFormat = (typeof INPUT_IMAGE_FORMATS)[number];

/** Guest cluster / grain size used by the qcow2 and VMDK writers. */
export const CLUSTER_SIZE = 64 * 1024;

/** The unit qemu sizes every disk in (docs/output-formats.md, "Virtual size"). */
export const SECTOR_SIZE = 512;

/**
 * The virtual size an image states for a disk of `guestBytes`: rounded up to whole 512-byte
 * sectors, the added tail reading as zeros. qemu reads a qcow2 header's size in whole sectors,
 * rounding *down*, so an odd size would hide the disk's last bytes; `qemu-img create/convert`
 * never write one. Every image header, VMDK capacity, OVF capacity and packed XVA
 * virtual_size goes through this one rule (docs/output-formats.md).
 */
export function imageVirtualSize(guestBytes: number): number {
  return Math.ceil(guestBytes / SECTOR_SIZE) * SECTOR_SIZE;
}
