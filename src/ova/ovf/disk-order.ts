/**
 * The order of an OVF's disks as devices (docs/output-formats.md §4.9): which disk becomes
 * userdevice 0, 1, 2… when an OVA is packed into an XVA. DiskSection order says nothing about
 * devices (VMware lists disks by device key; xva2img's writer used to list them in the order the
 * XVA streams them), so the disks are placed by the VirtualHardwareSection, where each disk item
 * names its controller (`rasd:Parent`) and its unit on it (`rasd:AddressOnParent`):
 *
 *   1. bus, in the order PC firmware enumerates disks and so picks the default boot disk
 *      (SeaBIOS, VirtualBox's BIOS, VMware's default hard-disk order): IDE, then SATA/AHCI
 *      (and other ResourceType 20 storage), then SCSI, then NVMe and anything else;
 *   2. the controller's number on that bus (`rasd:Address`: IDE 0 before IDE 1, whatever order
 *      the items come in — VMware lists IDE 1 first), then its position in the section;
 *   3. the disk's `AddressOnParent` (missing: after the addressed disks of its controller), then
 *      the disk item's position.
 *
 * Disks the section does not place (no disk item, or a Parent that is no item of the section,
 * as in oVirt's dialect) follow, in DiskSection order. virt-v2v takes the disk items in document
 * order; for the OVAs VMware, VirtualBox and xva2img write that is the same order unless the
 * items are listed out of address order, where the addresses are what the source VM booted by.
 */
import { ResourceType } from './model';

/** What the hardware section says about one item, as far as disk placement needs it. */
export interface OvfHardwareItem {
  /** rasd:InstanceID ('' when absent). */
  instanceId: string;
  resourceType: number;
  /** rasd:ResourceSubType ('' when absent): tells NVMe from SATA among ResourceType 20. */
  subType: string;
  /** rasd:Parent: the InstanceID of a disk's controller. */
  parent?: string;
  /** rasd:Address: a controller's number on its bus. */
  address?: number;
  /** rasd:AddressOnParent: a disk's unit on its controller. */
  addressOnParent?: number;
  /** The DiskSection diskId a disk item's HostResource (`ovf:/disk/<id>`) names. */
  diskId?: string;
}

/** Firmware enumeration rank of a controller (see the file comment, rule 1). */
function busRank(controller: OvfHardwareItem): number {
  if (controller.resourceType === ResourceType.IDE) return 0;
  if (controller.resourceType === ResourceType.SATA && !/nvme/i.test(controller.subType)) return 1;
  if (controller.resourceType === ResourceType.SCSI) return 2;
  return 3;
}

/** The sort key of a placed disk: rules 1 to 3, compared element by element. */
function placementKey(disk: OvfHardwareItem, diskPos: number, items: readonly OvfHardwareItem[]): number[] | undefined {
  if (disk.parent === undefined) return undefined;
  const ctlPos = items.findIndex((c) => c !== disk && c.instanceId !== '' && c.instanceId === disk.parent);
  if (ctlPos < 0) return undefined;
  const ctl = items[ctlPos]!;
  return [busRank(ctl), ctl.address ?? 0, ctlPos, disk.addressOnParent ?? Number.MAX_SAFE_INTEGER, diskPos];
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/**
 * `disks` (in DiskSection order) in device order: those the hardware section places sorted by
 * bus, controller and unit, then the others in DiskSection order (see the file comment).
 */
export function disksInDeviceOrder<T extends { diskId: string }>(disks: readonly T[], items: readonly OvfHardwareItem[]): T[] {
  const keys = new Map<T, number[]>();
  items.forEach((it, pos) => {
    if (it.resourceType !== ResourceType.DISK || it.diskId === undefined) return;
    const disk = disks.find((d) => d.diskId === it.diskId);
    if (!disk || keys.has(disk)) return; // the first item that places a disk wins
    const key = placementKey(it, pos, items);
    if (key) keys.set(disk, key);
  });
  const placed = disks.filter((d) => keys.has(d)).sort((a, b) => compareKeys(keys.get(a)!, keys.get(b)!));
  return [...placed, ...disks.filter((d) => !keys.has(d))];
}
