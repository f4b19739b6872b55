/**
 * `xva2img ova --disk path[,name=…][,description=…]`: the disk's name and description reach the
 * OVF's disk items (what Xen Orchestra's OVA import names the VDIs after), through the built CLI.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { itWithTools } from '../helpers/system-tools';
import { runCli } from './_cli';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-ova-'));
  fs.writeFileSync(path.join(dir, 'root.raw'), Buffer.alloc(1024 * 1024, 1));
  fs.writeFileSync(path.join(dir, 'a,b.raw'), Buffer.alloc(512 * 1024, 2));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

itWithTools('tar')('--disk name= and description= become the disk items\' ElementName and Description', async () => {
  const ova = path.join(dir, 'web.ova');
  const r = await runCli(['ova', '--disk', `${path.join(dir, 'root.raw')},name=root fs,description=system disk (ext4)`, '--disk', path.join(dir, 'a,b.raw'), '--name', 'web', '-o', ova, '-q']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const xml = execFileSync('tar', ['-xOf', ova, 'web.ovf'], { encoding: 'utf8' });
  const items = new XMLParser({ ignoreAttributes: false, isArray: (n) => n === 'Item' }).parse(xml).Envelope.VirtualSystem.VirtualHardwareSection.Item as Array<Record<string, unknown>>;
  const disks = items.filter((i) => i['rasd:ResourceType'] === 17);
  // Only trailing ",key=value" parts with a known key are options: a path with a comma stays
  // whole, and without name= the file name is the label.
  expect(disks.map((i) => [i['rasd:ElementName'], i['rasd:Description']])).toEqual([
    ['root fs', 'system disk (ext4)'],
    ['a,b.raw', undefined],
  ]);
});

test('an output in a directory that does not exist: exit 4, one line naming the directory, nothing created', async () => {
  const missing = path.join(dir, 'no', 'such');
  const ova = path.join(missing, 'web.ova');
  const r = await runCli(['ova', '--disk', path.join(dir, 'root.raw'), '--name', 'web', '-o', ova, '-q']);
  expect(r.code).toBe(4);
  expect(r.stderr).toBe(`xva2img: ${ova}: cannot create: directory ${missing} does not exist\n`);
  expect(fs.existsSync(path.join(dir, 'no'))).toBe(false);
});
