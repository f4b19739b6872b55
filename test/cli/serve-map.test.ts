/**
 * `xva2img serve` and `xva2img map` as users run them: what they print, their exit codes, the
 * socket's life (default path, stale sockets, removal on SIGINT/SIGTERM), TCP, and refusals.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeXvaFile, MiB, type XvaFixture } from '../helpers/xva-fixtures';
import { RawClient } from '../nbd/raw-client';
import { startServe } from '../nbd/serve-process';
import { runCli } from './_cli';

let dir: string;
let fx: XvaFixture & { path: string };
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-serve-'));
  fx = await makeXvaFile(dir, {
    vmName: 'web01',
    disks: [
      { name: 'root disk', size: 4 * MiB, fill: [{ offset: 0, length: MiB }, { offset: 2 * MiB, length: 512 }] },
      { name: 'data', size: 2 * MiB },
    ],
  });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('serve', () => {
  test('--json: one line with the URIs; SIGTERM: exit 0, socket and its private directory removed', async () => {
    const s = await startServe([fx.path, '--json']);
    const j = s.json();
    expect(s.started.trim().split('\n')).toHaveLength(1);
    expect(j.socket).toMatch(new RegExp(`^${os.tmpdir()}/xva2img-[^/]+/nbd\\.sock$`));
    expect(j.exports.map((e) => [e.name, e.description, e.size, e.uri])).toEqual([
      ['0', 'root disk', 4 * MiB, `nbd+unix:///0?socket=${j.socket}`],
      ['1', 'data', 2 * MiB, `nbd+unix:///1?socket=${j.socket}`],
    ]);
    expect(j.indexBytes).toBe(28 * (3 + 2)); // 27 bytes of index + 1 of verification state per stored chunk
    const c = await RawClient.connect(j.socket!);
    expect((await c.open('1')).size).toBe(2 * MiB);
    c.close();
    const end = await s.stop('SIGTERM');
    expect(end.code).toBe(0);
    expect(end.stderr).toMatch(/xva2img: stopped by SIGTERM/);
    expect(fs.existsSync(j.socket!)).toBe(false);
    expect(fs.existsSync(path.dirname(j.socket!))).toBe(false);
  });

  test('SIGINT with a client connected: exit 0, the given socket removed', async () => {
    const sock = path.join(dir, 'int.sock');
    const s = await startServe([fx.path, '--socket', sock]);
    expect(s.started).toMatch(/^Serving .*web01\.xva \(VM "web01"\) read-only on Unix socket .*int\.sock; stop with Ctrl-C or SIGTERM\n/);
    expect(s.started).toMatch(/ 0 +nbd\+unix:\/\/\/0\?socket=\S+int\.sock +4\.00 MiB +"root disk"/);
    const c = await RawClient.connect(sock);
    await c.open('0');
    const end = await s.stop('SIGINT');
    expect(end.code).toBe(0);
    await c.closed;
    expect(fs.existsSync(sock)).toBe(false);
  });

  test('--port 0 --disk 1: TCP on 127.0.0.1, nbd:// URI, only that disk', async () => {
    const s = await startServe([fx.path, '--port', '0', '--disk', '1', '--json']);
    const j = s.json();
    expect(j.host).toBe('127.0.0.1');
    expect(j.exports.map((e) => e.uri)).toEqual([`nbd://127.0.0.1:${j.port}/1`]);
    const c = await RawClient.connect({ port: j.port!, host: '127.0.0.1' });
    expect((await c.open('')).size).toBe(2 * MiB); // the default export is the first one served
    c.close();
    expect((await s.stop()).code).toBe(0);
  });

  test('a socket left by a killed server is replaced; a live one (or a file) is refused, exit 4', async () => {
    const sock = path.join(dir, 'stale.sock');
    const holder = spawn(process.execPath, ['-e', 'require("net").createServer().listen(process.argv[1], () => console.log("up"))', sock]);
    await new Promise((r) => holder.stdout.once('data', r));
    const live = await runCli(['serve', fx.path, '--socket', sock]);
    expect(live.code).toBe(4);
    expect(live.stderr).toMatch(/stale\.sock: another server is listening on this socket/);
    holder.kill('SIGKILL'); // no chance to remove its socket
    await new Promise((r) => holder.once('close', r));
    expect(fs.statSync(sock).isSocket()).toBe(true);
    const s = await startServe([fx.path, '--socket', sock]);
    expect((await s.stop()).code).toBe(0);
    const notSocket = path.join(dir, 'file.sock');
    fs.writeFileSync(notSocket, 'x');
    const r = await runCli(['serve', fx.path, '--socket', notSocket]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/file\.sock exists and is not a socket/);
    expect(fs.readFileSync(notSocket, 'utf8')).toBe('x');
  });

  test.each([
    [['--socket', 's', '--port', '1'], /choose either --socket or --port/],
    [['--bind', '0.0.0.0'], /--bind needs --port/],
    [['--port', 'http'], /--port must be a TCP port number/],
    [['--on-bad-chunk', 'ignore'], /argument 'ignore' is invalid\. Allowed choices are fail, warn, zero\./],
    [['--disk', '7'], /no disk "7" in this VM; disks: 0 \(Ref:11\), 1 \(Ref:14\)/],
  ])('usage errors exit 1: %j', async (args, message) => {
    const r = await runCli(['serve', fx.path, ...args]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
  });

  test('a VM without disks: exit 1, nothing to serve', async () => {
    const empty = await makeXvaFile(dir, { fileName: 'empty.xva', disks: [] });
    const r = await runCli(['serve', empty.path]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/empty\.xva: the VM has no disks to serve/);
  });

  test('compressed input or stdin: exit 1 saying how to get a plain file; a missing file: exit 2', async () => {
    const gz = await makeXvaFile(dir, { compression: 'gzip', fileName: 'vm.xva.gz' });
    const r = await runCli(['serve', gz.path]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/vm\.xva\.gz: xva2img serve needs random access into an uncompressed XVA file, and it is gzip-compressed: decompress it first: gunzip -k /);
    expect((await runCli(['serve', '-'], { input: fs.readFileSync(fx.path) })).code).toBe(1);
    const missing = await runCli(['serve', path.join(dir, 'nope.xva')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('map', () => {
  test('a table per disk; OFFSET is where the bytes are in the file', async () => {
    const r = await runCli(['map', fx.path]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Disk 0 \(Ref:11, "root disk", 4\.00 MiB\): 3\.00 MiB stored in 3 chunks\n +START +LENGTH +KIND +OFFSET IN FILE\n/);
    expect(r.stdout).toMatch(/\n +1048576 +1048576 +zero +-\n/);
    expect(r.stdout).toMatch(/\nDisk 1 \(Ref:14, "data", 2\.00 MiB\)/);
  });

  test('--json --disk 0: extents as qemu-img map prints them, pointing at the stored bytes', async () => {
    const r = await runCli(['map', fx.path, '--disk', '0', '--json']);
    expect(r.code).toBe(0);
    const disks = JSON.parse(r.stdout) as Array<{ userdevice: string; extents: Array<{ start: number; length: number; data: boolean; zero: boolean; offset?: number }> }>;
    expect(disks.map((d) => d.userdevice)).toEqual(['0']);
    const ext = disks[0]!.extents;
    expect(ext.map((e) => [e.start, e.length, e.data, e.zero])).toEqual([
      [0, MiB, true, false],
      [MiB, MiB, false, true],
      [2 * MiB, MiB, true, false],
      [3 * MiB, MiB, true, false],
    ]);
    expect(ext[1]).not.toHaveProperty('offset');
    const file = fs.readFileSync(fx.path);
    for (const e of ext.filter((x) => x.data)) expect(file.subarray(e.offset!, e.offset! + e.length).equals(fx.disks[0]!.expected.subarray(e.start, e.start + e.length))).toBe(true);
  });

  test('zstd input: exit 1 saying how to decompress', async () => {
    const zst = await makeXvaFile(dir, { compression: 'zstd', fileName: 'vm.xva.zst' });
    const r = await runCli(['map', zst.path]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/xva2img map needs random access .* it is zstd-compressed: decompress it first: zstd -d /);
  });
});
