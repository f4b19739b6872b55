/**
 * Every way the library opens a disk image (probeImageFormat, openDiskImage, RawReader,
 * Qcow2Reader, VmdkStreamReader) reports a path it cannot open as an XVA path is reported:
 * InputError INPUT_UNREADABLE (exit code 2), located at the path, with one message giving the
 * system's cause once and naming no command-line flag.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ExitCode, InputError } from '../../src/errors';
import { probeImageFormat } from '../../src/image/disk-reader';
import { openDiskImage, Qcow2Reader } from '../../src/image/qcow2/reader';
import { RawReader } from '../../src/image/raw/reader';
import { VmdkStreamReader } from '../../src/image/vmdk/stream-reader';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'open-image-'));
  fs.mkdirSync(path.join(dir, 'a-directory'));
  fs.writeFileSync(path.join(dir, 'file'), 'x');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const OPENERS: Array<[string, (p: string) => Promise<unknown>]> = [
  ['probeImageFormat', (p) => probeImageFormat(p)],
  ['openDiskImage', (p) => openDiskImage(p)],
  ['openDiskImage raw', (p) => openDiskImage(p, 'raw')],
  ['openDiskImage qcow2', (p) => openDiskImage(p, 'qcow2')],
  ['RawReader.open', (p) => RawReader.open(p)],
  ['Qcow2Reader.open', (p) => Qcow2Reader.open(p)],
  ['VmdkStreamReader.open', (p) => VmdkStreamReader.open(p)],
];
const CAUSES: Array<[string, string, string]> = [
  ['missing', 'missing.raw', 'cannot open disk image: ENOENT: no such file or directory'],
  ['a directory', 'a-directory', 'cannot read disk image: EISDIR: is a directory'],
  ['under a file', 'file/disk.raw', 'cannot open disk image: ENOTDIR: not a directory'],
];

test.each(OPENERS.flatMap(([name, open]) => CAUSES.map(([cause, rel, message]) => [name, cause, open, rel, message] as const)))(
  '%s, %s',
  async (_name, _cause, open, rel, message) => {
    const p = path.join(dir, rel);
    const err = await open(p).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect(err).toMatchObject({ code: 'INPUT_UNREADABLE', exitCode: ExitCode.BAD_INPUT, message, location: { input: p } });
    expect((err as InputError).describe()).toBe(`${p}: ${message}`);
  },
);

test('an image inside an OVA is named by the OVA and its member', async () => {
  const ova = path.join(dir, 'gone.ova');
  const err = await VmdkStreamReader.open(ova, { label: `${ova}: disk1.vmdk`, offset: 1536, length: 512 }).catch((e: unknown) => e);
  expect((err as InputError).describe()).toBe(`${ova}: disk1.vmdk: cannot open disk image: ENOENT: no such file or directory`);
});
