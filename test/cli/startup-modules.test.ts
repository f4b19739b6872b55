/**
 * Start-up cost: Node loads and compiles every module a run requires before the first byte is
 * read, and for a 1 GB XVA that is a tenth of the conversion. What only some runs need is
 * therefore required where it is used (cli/main.ts). This pins that down for the common case, a
 * plain XXH64 XVA converted to qcow2 without a progress bar: no node:crypto (SHA-1 only), no
 * zlib (compressed input or VMDK only), no TLS (HTTPS input only), no VMDK writer, no progress
 * bar, no hash-wasm (XXH64 is computed in place). node:worker_threads is loaded: the image data
 * is written by the writer thread (output/writer-thread.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT, runCli } from './_cli';

const PROBE = `
process.on('exit', () => {
  const builtins = process.moduleLoadList
    .filter((m) => m.startsWith('NativeModule ') && !m.startsWith('NativeModule internal/'))
    .map((m) => m.slice('NativeModule '.length));
  const files = Object.keys(require.cache);
  process.stderr.write('\\nMODULES ' + JSON.stringify({ builtins, files }) + '\\n');
});
`;

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xva2img-startup-'));
  fs.writeFileSync(path.join(dir, 'probe.js'), PROBE);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('a plain XXH64 XVA -> qcow2 loads no crypto, zlib, TLS, VMDK, progress-bar or hash-wasm code', async () => {
  const out = path.join(dir, 'disk.qcow2');
  const r = await runCli([path.join(ROOT, 'samples', 'demo-ext4.xva'), '-q', '-O', 'qcow2', '-o', out], {
    env: { NODE_OPTIONS: `--require ${path.join(dir, 'probe.js')}` },
  });
  expect(r.stderr).toMatch(/MODULES /);
  expect(r.code).toBe(0);
  const line = r.stderr.split('\n').find((l) => l.startsWith('MODULES '))!;
  const { builtins, files } = JSON.parse(line.slice('MODULES '.length)) as { builtins: string[]; files: string[] };
  // The probe sees what it should: the converter did run.
  expect(builtins).toContain('fs');
  expect(files.some((f) => f.endsWith(path.join('dist', 'image', 'qcow2', 'writer.js')))).toBe(true);
  for (const name of ['crypto', 'zlib', 'https', 'tls']) expect(builtins).not.toContain(name);
  for (const tail of [path.join('dist', 'image', 'vmdk', 'writer.js'), path.join('node_modules', 'cli-progress'), path.join('node_modules', 'hash-wasm')]) {
    expect(files.filter((f) => f.includes(tail))).toEqual([]);
  }
});
