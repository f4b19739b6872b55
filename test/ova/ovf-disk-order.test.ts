/**
 * Which disk of an OVF becomes userdevice 0, 1, 2… (src/ova/ovf/disk-order.ts,
 * docs/output-formats.md §4.9): the hardware section places the disks — bus in firmware order
 * (IDE, SATA, SCSI, other), then the controller's number, then the unit — and DiskSection order
 * is only the fallback for disks it does not place.
 */
import { parseOvf } from '../../src/ova/ovf/parse';

interface TestDisk {
  id: string;
  /** Hardware placement: controller InstanceID and unit; no item at all when absent. */
  parent?: string;
  unit?: number;
}

/** Controllers as hardware items: [InstanceID, ResourceType, Address, ResourceSubType?]. */
type TestController = [id: string, type: number, address: number, subType?: string];

/** An OVF in VMware's style: DiskSection in `disks` order, the items in `items` order. */
function ovf(disks: TestDisk[], controllers: TestController[], itemOrder?: string[], extra = ''): string {
  const controllerItems = controllers.map(
    ([id, type, address, sub]) =>
      `<Item><rasd:Address>${address}</rasd:Address><rasd:InstanceID>${id}</rasd:InstanceID>${sub ? `<rasd:ResourceSubType>${sub}</rasd:ResourceSubType>` : ''}<rasd:ResourceType>${type}</rasd:ResourceType></Item>`,
  );
  const diskItems = (itemOrder ?? disks.map((d) => d.id))
    .map((id) => disks.find((d) => d.id === id)!)
    .filter((d) => d.parent !== undefined)
    .map(
      (d, i) =>
        `<Item>${d.unit === undefined ? '' : `<rasd:AddressOnParent>${d.unit}</rasd:AddressOnParent>`}<rasd:ElementName>${d.id}</rasd:ElementName>` +
        `<rasd:HostResource>ovf:/disk/${d.id}</rasd:HostResource><rasd:InstanceID>${100 + i}</rasd:InstanceID><rasd:Parent>${d.parent}</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>`,
    );
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References>${disks.map((d) => `<File ovf:href="${d.id}.vmdk" ovf:id="f-${d.id}"/>`).join('')}</References>
  <DiskSection><Info>disks</Info>${disks.map((d) => `<Disk ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="${d.id}" ovf:fileRef="f-${d.id}"/>`).join('')}</DiskSection>
  <VirtualSystem ovf:id="vm"><Info>A VM</Info>
    <VirtualHardwareSection><Info>hw</Info>${controllerItems.join('')}${diskItems.join('')}${extra}</VirtualHardwareSection>
  </VirtualSystem>
</Envelope>`;
}

const order = (xml: string): string[] => parseOvf(xml).disks.map((d) => d.diskId);

const SCSI = 6;
const IDE = 5;
const SATA = 20;

describe('OVF disk order: the hardware section places the disks, not DiskSection', () => {
  test('DiskSection lists "data" first, but "system" is unit 0 on the controller: "system" comes first', () => {
    const xml = ovf(
      [
        { id: 'data', parent: '3', unit: 1 },
        { id: 'system', parent: '3', unit: 0 },
      ],
      [['3', SCSI, 0]],
    );
    expect(order(xml)).toEqual(['system', 'data']);
    // Names and files travel with their disk.
    expect(parseOvf(xml).disks.map((d) => [d.name, d.href])).toEqual([
      ['system', 'system.vmdk'],
      ['data', 'data.vmdk'],
    ]);
  });

  test('units, not the order of the disk items (VMware lists items by device key)', () => {
    const disks = [
      { id: 'a', parent: '3', unit: 2 },
      { id: 'b', parent: '3', unit: 0 },
      { id: 'c', parent: '3', unit: 1 },
    ];
    expect(order(ovf(disks, [['3', SCSI, 0]], ['a', 'c', 'b']))).toEqual(['b', 'c', 'a']);
  });

  test('buses in firmware order: IDE, then SATA, then SCSI, then NVMe, whatever order the controllers are listed in', () => {
    const disks = [
      { id: 'nvme', parent: '7', unit: 0 },
      { id: 'scsi', parent: '3', unit: 0 },
      { id: 'sata', parent: '6', unit: 0 },
      { id: 'ide', parent: '4', unit: 0 },
    ];
    const controllers: TestController[] = [
      ['3', SCSI, 0, 'lsilogic'],
      ['4', IDE, 0],
      ['6', SATA, 0, 'vmware.sata.ahci'],
      ['7', SATA, 0, 'vmware.nvme.controller'],
    ];
    expect(order(ovf(disks, controllers))).toEqual(['ide', 'sata', 'scsi', 'nvme']);
  });

  test('controllers of one bus by their number (VMware lists IDE 1 before IDE 0), then their disks by unit', () => {
    const disks = [
      { id: 'ide1-master', parent: '4', unit: 0 },
      { id: 'ide0-slave', parent: '5', unit: 1 },
      { id: 'ide0-master', parent: '5', unit: 0 },
      { id: 'scsi1-0', parent: '6', unit: 0 },
      { id: 'scsi0-8', parent: '3', unit: 8 },
    ];
    const controllers: TestController[] = [
      ['3', SCSI, 0],
      ['4', IDE, 1],
      ['5', IDE, 0],
      ['6', SCSI, 1],
    ];
    expect(order(ovf(disks, controllers))).toEqual(['ide0-master', 'ide0-slave', 'ide1-master', 'scsi0-8', 'scsi1-0']);
  });

  test('a disk item without AddressOnParent comes after the addressed disks of its controller', () => {
    const disks = [
      { id: 'unaddressed', parent: '3' },
      { id: 'unit1', parent: '3', unit: 1 },
    ];
    expect(order(ovf(disks, [['3', SCSI, 0]]))).toEqual(['unit1', 'unaddressed']);
  });

  test('disks the hardware section does not place follow the placed ones, in DiskSection order', () => {
    const disks = [
      { id: 'no-item-1' },
      { id: 'orphan', parent: '99', unit: 0 }, // Parent names no item
      { id: 'placed', parent: '3', unit: 5 },
      { id: 'no-item-2' },
    ];
    expect(order(ovf(disks, [['3', SCSI, 0]]))).toEqual(['placed', 'no-item-1', 'orphan', 'no-item-2']);
  });

  test("oVirt's dialect (Parent is the zero UUID, no units): DiskSection order, ovf:boot kept", () => {
    const xml = `<?xml version="1.0" encoding="UTF-8"?>
<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:href="i1" ovf:id="i1"/><File ovf:href="i2" ovf:id="i2"/></References>
  <DiskSection>
    <Disk ovf:diskId="d1" ovf:fileRef="i1" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30" ovf:boot="false" ovf:disk-alias="first"/>
    <Disk ovf:diskId="d2" ovf:fileRef="i2" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30" ovf:boot="true" ovf:disk-alias="second"/>
  </DiskSection>
  <VirtualSystem ovf:id="v"><Name>v</Name><VirtualHardwareSection>
    <Item><rasd:InstanceId>i2</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>ovf:/disk/d2</rasd:HostResource><rasd:Parent>00000000-0000-0000-0000-000000000000</rasd:Parent><rasd:Address></rasd:Address></Item>
    <Item><rasd:InstanceId>i1</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:Parent>00000000-0000-0000-0000-000000000000</rasd:Parent><rasd:Address></rasd:Address></Item>
  </VirtualHardwareSection></VirtualSystem>
</ovf:Envelope>`;
    expect(parseOvf(xml).disks.map((d) => [d.name, d.boot])).toEqual([
      ['first', false],
      ['second', true],
    ]);
  });

  test('OVF 2.0 StorageItem disks are placed like Item disks', () => {
    const storageItem = (disk: string, unit: number): string =>
      `<StorageItem xmlns:sasd="urn:sasd"><sasd:AddressOnParent>${unit}</sasd:AddressOnParent><sasd:HostResource>ovf:/disk/${disk}</sasd:HostResource>` +
      '<sasd:Parent>3</sasd:Parent><sasd:ResourceType>17</sasd:ResourceType></StorageItem>';
    const xml = ovf([{ id: 'data' }, { id: 'system' }], [['3', SATA, 0, 'AHCI']], undefined, storageItem('data', 1) + storageItem('system', 0));
    expect(order(xml)).toEqual(['system', 'data']);
  });
});
