/**
 * The built CLI on a runtime without WebAssembly (`node --jitless`): a conversion and `verify`
 * still check every XXH64 chunk (plain-JavaScript XXH64, ordinary buffers) and give the same
 * results as with it. Before issue #20 importing io/aligned-buffer threw there.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeXvaFile, MiB } from '../helpers/xva-fixtures';
import { corruptEntries, runCli } from './_cli';

/** V8 leaves WebAssembly out under --jitless (and says so on stderr). */
const JITLESS = { NODE_OPTIONS: '--jitless' };
const stderrLines = (s: string): string[] => s.split('\n').filter((l) => l !== '' && !l.includes('--expose_wasm'));

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-nowasm-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('convert and verify an XXH64 XVA with no WebAssembly: same image, bad chunks still found', async () => {
  const fx = await makeXvaFile(dir, { vmName: 'nowasm', disks: [{ name: 'root', size: 4 * MiB, fill: [{ offset: 0, length: 4 * MiB }] }] });
  expect(fx.options.checksum ?? 'xxh64').toBe('xxh64');

  const out = path.join(dir, 'out.raw');
  const r = await runCli([fx.path, '-o', out, '-q'], { env: JITLESS });
  expect(stderrLines(r.stderr)).toEqual([]);
  expect(r.code).toBe(0);
  expect(fs.readFileSync(out).equals(fx.disks[0]!.expected)).toBe(true);

  const ok = await runCli(['verify', fx.path], { env: JITLESS });
  expect(ok.code).toBe(0);
  expect(ok.stdout).toMatch(/: OK .*XXH64/);

  const bad = path.join(dir, 'bad.xva');
  await corruptEntries(fx.path, ['Ref:11/00000002'], bad);
  const v = await runCli(['verify', bad], { env: JITLESS });
  expect(v.code).toBe(3);
  expect(v.stdout).toMatch(/bad chunk Ref:11\/00000002: .*expected [0-9A-F]{16}, got [0-9A-F]{16}/);
});
