/**
 * `xva2img info` and `xva2img verify` through the built binary: output, JSON, exit codes.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeXvaFile, MiB, KiB } from '../helpers/xva-fixtures';
import { corruptEntries, esc, runCli } from './_cli';

let dir: string;
let plain: string;
let gz: string;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-iv-'));
  plain = (
    await makeXvaFile(dir, {
      vmName: 'web01',
      vm: { description: 'front end', vcpus: 2, memoryBytes: 2048 * MiB, firmware: 'uefi' },
      disks: [
        { name: 'root', size: 4 * MiB, fill: [{ offset: 0, length: 4 * MiB }] },
        { name: 'data', size: 2 * MiB, userdevice: 1, fill: [{ offset: 0, length: 64 * KiB }] },
      ],
      cdroms: [{ userdevice: 3 }],
      vifs: [{ device: 0, mac: 'b2:1f:00:11:22:33', networkName: 'LAN', bridge: 'xenbr0' }],
      keepAlives: [{ disk: 0, beforeChunk: 1 }],
    })
  ).path;
  gz = (await makeXvaFile(dir, { vmName: 'db', compression: 'gzip', checksum: 'sha1' })).path;
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('info', () => {
  test('a readable table: VM, disks, CDs, NICs, producer, compression, checksum', async () => {
    const r = await runCli(['info', plain]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const text of ['"web01"', 'front end', 'vCPUs:        2', '2.00 GiB', 'HVM, UEFI', 'Template:     no', '"root"', '"data"', '4.00 MiB', 'b2:1f:00:11:22:33', '"LAN" (xenbr0)', 'XCP-ng 8.2.1', 'version 2', 'XXH64', 'Compression:  none', '(empty)']) {
      expect(r.stdout).toContain(text);
    }
    expect(r.stdout).not.toContain('ALLOCATED');
  });

  test('--chunks --json: per-disk allocated bytes, chunks and keep-alives, by seeking', async () => {
    const r = await runCli(['info', plain, '--chunks', '--json']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.chunkScan).toBe('seek');
    expect(info.disks.map((d: { userdevice: string; chunkStats: unknown }) => [d.userdevice, d.chunkStats])).toEqual([
      ['0', { chunks: 5, keepAlives: 1, allocatedBytes: 4 * MiB, checksum: 'xxh64' }],
      ['1', { chunks: 2, keepAlives: 0, allocatedBytes: 2 * MiB, checksum: 'xxh64' }],
    ]);
    const human = await runCli(['info', plain, '--chunks']);
    expect(human.stdout).toMatch(/ALLOCATED\s+CHUNKS\s+KEEP-ALIVES/);
  });

  test('compressed input: streamed chunk count, compression and SHA-1 shown', async () => {
    const r = await runCli(['info', gz, '--chunks', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ compression: 'gzip', checksum: 'sha1', chunkScan: 'stream' });
  });

  test('several inputs: a JSON array, one entry per input in order; a bad one is an error entry, on stderr too, exit 2', async () => {
    const missing = path.join(dir, 'missing.xva');
    const r = await runCli(['info', plain, missing, gz, '--json']);
    expect(r.code).toBe(2);
    const arr = JSON.parse(r.stdout);
    expect(arr.map((i: { vm?: { name: string } }) => i.vm?.name ?? null)).toEqual(['web01', null, 'db']);
    expect(arr[1]).toEqual({ input: missing, error: { code: 'INPUT_UNREADABLE', exitCode: 2, message: expect.stringMatching(new RegExp(`^${esc(missing)}: cannot open input: ENOENT`)) } });
    expect(r.stderr).toMatch(new RegExp(`^xva2img: ${esc(missing)}: cannot open input: ENOENT`, 'm'));
    // One input that fails: its error entry, not null.
    const one = await runCli(['info', missing, '--json']);
    expect(one.code).toBe(2);
    expect(JSON.parse(one.stdout)).toMatchObject({ input: missing, error: { code: 'INPUT_UNREADABLE', exitCode: 2 } });
  });

  test('stdin works too', async () => {
    const r = await runCli(['info', '-', '--json'], { input: fs.readFileSync(gz) });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ input: '-', vm: { name: 'db' }, checksum: 'sha1' });
  });
});

describe('verify', () => {
  test('clean inputs: exit 0, one OK line each', async () => {
    const r = await runCli(['verify', plain, gz]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${esc(plain)}: OK \\(VM "web01", 2 disk\\(s\\), 7 chunks, XXH64`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^${esc(gz)}: OK .*SHA-1`, 'm'));
    expect(r.stdout).toContain('2 inputs: 2 clean, 0 with problems');
  });

  test('bad chunks: every one listed with its disk offset, exit 3, nothing written', async () => {
    const bad = path.join(dir, 'bad.xva');
    await corruptEntries(plain, ['Ref:11/00000002', 'Ref:11/00000004'], bad);
    const before = fs.readdirSync(dir).sort();
    const r = await runCli(['verify', bad]);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain(`${bad}: 2 BAD CHUNK(S)`);
    // counter 1 is a keep-alive: counter 2 holds MiB 1, counter 4 holds MiB 3
    expect(r.stdout).toMatch(/bad chunk Ref:11\/00000002: disk 0 \(Ref:11\) offset 1048576 \(1048576 bytes\): expected [0-9A-F]{16}, got [0-9A-F]{16}/);
    expect(r.stdout).toMatch(/bad chunk Ref:11\/00000004: disk 0 \(Ref:11\) offset 3145728 /);
    expect(fs.readdirSync(dir).sort()).toEqual(before);
    const j = await runCli(['verify', bad, '--json']);
    expect(j.code).toBe(3);
    expect(JSON.parse(j.stdout).badChunks.map((b: { offset: number }) => b.offset)).toEqual([MiB, 3 * MiB]);
    // -q drops the report, not the problems: one stderr line per bad chunk, naming the input.
    const q = await runCli(['verify', bad, '-q']);
    expect(q.code).toBe(3);
    expect(q.stdout).toBe('');
    expect(q.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^xva2img: ${esc(bad)}: bad chunk Ref:11/00000002: disk 0 \\(Ref:11\\) offset 1048576 `)),
      expect.stringMatching(new RegExp(`^xva2img: ${esc(bad)}: bad chunk Ref:11/00000004: disk 0 \\(Ref:11\\) offset 3145728 `)),
    ]);
  });

  test('truncated: exit 2, one error line with the byte offset', async () => {
    const cut = path.join(dir, 'cut.xva');
    fs.writeFileSync(cut, fs.readFileSync(plain).subarray(0, 2 * MiB + 1234));
    const r = await runCli(['verify', cut]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`^xva2img: ${esc(cut)}: archive truncated.*\\((stream|file) ends at byte \\d+\\)$`, 'm'));
    expect(r.stdout).toContain(`${cut}: INVALID`);
  });

  test('a mix: the worst outcome decides (invalid input 2 over checksum 3)', async () => {
    const bad = path.join(dir, 'bad2.xva');
    await corruptEntries(plain, ['Ref:14/00000000'], bad);
    const r = await runCli(['verify', plain, bad, path.join(dir, 'nope.xva'), '--json']);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).map((x: { exitCode: number }) => x.exitCode)).toEqual([0, 3, 2]);
  });
});
