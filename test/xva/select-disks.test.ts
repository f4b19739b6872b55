/**
 * `--disk` selectors (userdevice, VDI ref or VDI uuid), as convert, measure, map and serve take them.
 */
import type { DiskInfo, XvaMetadata } from '../../src/xva/metadata/model';
import { selectDisks } from '../../src/xva/select-disks';

function diskOf(ref: string, userdevice: string, uuid: string, isSuspendImage = false): DiskInfo {
  return { ref, userdevice, vdi: { uuid } as DiskInfo['vdi'], bootable: userdevice === '0', virtualSize: 1 << 20, isSuspendImage };
}

const system = diskOf('Ref:998', '0', 'aaaa-0');
const data = diskOf('Ref:1003', '1', 'bbbb-1');
const suspend = diskOf('Ref:7', '', 'cccc-s', true);
const meta = { disks: [system, data, suspend] } as unknown as XvaMetadata;

describe('selectDisks', () => {
  test('no selector: every disk but the suspend image (unless asked for)', () => {
    expect(selectDisks(meta, undefined)).toEqual([system, data]);
    expect(selectDisks(meta, [], true)).toEqual([system, data, suspend]);
  });

  test('by userdevice, VDI ref or VDI uuid, in the order given', () => {
    expect(selectDisks(meta, ['1', 'Ref:998'])).toEqual([data, system]);
    expect(selectDisks(meta, ['aaaa-0'])).toEqual([system]);
  });

  test('a selection is a set: a disk named twice, by any of its names, counts once', () => {
    expect(selectDisks(meta, ['0', '0'])).toEqual([system]);
    expect(selectDisks(meta, ['0', 'Ref:998', 'aaaa-0', '1'])).toEqual([system, data]);
    // unless the caller pairs each selector with something of its own (convert's --target)
    expect(selectDisks(meta, ['0', 'Ref:998'], false, true)).toEqual([system, system]);
  });

  test('an unknown selector names the disks there are', () => {
    expect(() => selectDisks(meta, ['7'])).toThrow('no disk "7" in this VM; disks: 0 (Ref:998), 1 (Ref:1003)');
  });
});
