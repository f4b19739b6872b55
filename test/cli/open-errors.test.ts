/**
 * A disk image that cannot be opened (pack --disk, ova --disk, measure --ova --disk, pack --from
 * an OVA) is reported like an XVA that cannot be opened: one line naming the path and the
 * system's cause, exit 2, no output file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { listFiles, runCli } from './_cli';

let dir: string;
let missing: string;
let directory: string;
let notDir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-open-'));
  missing = path.join(dir, 'missing.raw');
  directory = path.join(dir, 'images.ova');
  fs.mkdirSync(directory);
  const file = path.join(dir, 'file.raw');
  fs.writeFileSync(file, Buffer.alloc(4096));
  notDir = path.join(file, 'disk.qcow2');
  fs.mkdirSync(path.join(dir, 'out'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const out = (name: string): string => path.join(dir, 'out', name);

describe('disk images', () => {
  const verbs: Array<[string, (image: string) => string[]]> = [
    ['pack --disk', (image) => ['pack', '--disk', image, '-o', out('vm.xva')]],
    ['pack --disk …,format=qcow2', (image) => ['pack', '--disk', `${image},format=qcow2`, '-o', out('vm.xva')]],
    ['pack --disk …,format=raw', (image) => ['pack', '--disk', `${image},format=raw`, '-o', out('vm.xva')]],
    ['ova --disk', (image) => ['ova', '--disk', image, '--name', 'vm', '-o', out('vm.ova')]],
    ['measure --ova --disk', (image) => ['measure', '--ova', '--disk', image, '--name', 'vm']],
  ];
  const causes: Array<[string, () => string, string]> = [
    ['missing', () => missing, 'cannot open disk image: ENOENT: no such file or directory'],
    ['a directory', () => directory, 'cannot read disk image: EISDIR: is a directory'],
    ['under a file', () => notDir, 'cannot open disk image: ENOTDIR: not a directory'],
  ];
  // Every verb with a missing image; the other causes once each (their text is the library's,
  // test/image/open-image.test.ts).
  const cases = [
    ...verbs.map(([verb, args]) => [verb, ...causes[0]!, args] as const),
    ['pack --disk', ...causes[1]!, verbs[0]![1]] as const,
    ['ova --disk', ...causes[2]!, verbs[3]![1]] as const,
  ].map(([verb, cause, image, text, args]) => [verb, cause, args, image, text] as const);
  test.each(cases)('%s, %s: exit 2, one line', async (_verb, _cause, args, image, text) => {
    const r = await runCli(args(image()));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`xva2img: ${image()}: ${text}\n`);
    expect(listFiles(path.join(dir, 'out'))).toEqual([]);
  });
});

describe('archives, for comparison: the same line', () => {
  test('pack --from a missing OVA', async () => {
    const ova = path.join(dir, 'gone.ova');
    const r = await runCli(['pack', '--from', ova, '-o', out('vm.xva')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`xva2img: ${ova}: cannot open input: ENOENT: no such file or directory\n`);
  });

  test('pack --from a directory named .ova', async () => {
    const r = await runCli(['pack', '--from', directory, '-o', out('vm.xva')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`xva2img: ${directory}: cannot read input: EISDIR: is a directory\n`);
  });

  test('convert a missing XVA', async () => {
    const xva = path.join(dir, 'gone.xva');
    const r = await runCli([xva, '-o', path.join(dir, 'out')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`xva2img: ${xva}: cannot open input: ENOENT: no such file or directory\n`);
  });
});

describe('an output that cannot be created: one line naming the cause, exit 4', () => {
  test('convert into a directory that does not exist: the directory is named, not the .part', async () => {
    const target = path.join(dir, 'no-such-dir', 'disk.raw');
    const r = await runCli(['samples/demo-ext4.xva', '-q', '-o', target]);
    expect(r.code).toBe(4);
    expect(r.stderr).toBe(`xva2img: samples/demo-ext4.xva: ${target}: cannot create: directory ${path.dirname(target)} does not exist\n`);
  });

  test('convert under a regular file: the system cause once', async () => {
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, 'x');
    const target = path.join(file, 'disk.raw');
    const r = await runCli(['samples/demo-ext4.xva', '-q', '-o', target]);
    expect(r.code).toBe(4);
    expect(r.stderr).toBe(`xva2img: samples/demo-ext4.xva: ${target}.part: ENOTDIR: not a directory\n`);
  });
});
