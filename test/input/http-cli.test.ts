/**
 * URL inputs end to end: the built CLI against a local http.createServer on 127.0.0.1 —
 * plain and chunked downloads, --header, basic auth from user:password@, redirects, HTTP
 * errors, and a server that closes the connection halfway (exit 2, no output, no .part).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { corruptEntries, esc, listFiles, runCli } from '../cli/_cli';
import { makeXvaFile, MiB, type XvaFixture } from '../helpers/xva-fixtures';

let dir: string;
let server: http.Server;
let base: string;
/** A second server, another origin: a pool member that a master redirects the export to. */
let member: http.Server;
let memberBase: string;
let plain: XvaFixture & { path: string };
let gz: XvaFixture & { path: string };
let big: XvaFixture & { path: string };
let bad: string;
const seen: Array<{ url: string; headers: http.IncomingHttpHeaders }> = [];
let n = 0;
/** What `root:pa%20ss@` in a URL sends. */
const BASIC_ROOT = 'Basic ' + Buffer.from('root:pa ss').toString('base64');
const out = (): string => path.join(dir, `out-${n++}`);

function sendFile(res: http.ServerResponse, file: string, opts: { chunked?: boolean; cutAt?: number } = {}): void {
  const bytes = fs.readFileSync(file);
  res.statusCode = 200;
  res.setHeader('content-type', 'application/octet-stream');
  if (!opts.chunked) res.setHeader('content-length', String(bytes.length));
  if (opts.cutAt !== undefined) {
    // Promise the whole file, send part of it, then close the connection: a FIN after the data,
    // which the client reads in full before it sees the end (a reset could discard it unread).
    res.write(bytes.subarray(0, opts.cutAt), () => res.socket?.end());
    return;
  }
  res.end(bytes);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'http-cli-'));
  plain = await makeXvaFile(dir, { vmName: 'web', disks: [{ size: 3 * MiB, fill: [{ offset: 0, length: 2 * MiB }] }] });
  gz = await makeXvaFile(dir, { vmName: 'zipped', compression: 'gzip', checksum: 'sha1' });
  big = await makeXvaFile(dir, { vmName: 'big', disks: [{ size: 8 * MiB, fill: [{ offset: 0, length: 8 * MiB }] }] });
  bad = path.join(dir, 'bad.xva');
  await corruptEntries(plain.path, ['Ref:11/00000001'], bad);
  server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://x');
    switch (url.pathname) {
      case '/vm.xva':
        return sendFile(res, plain.path);
      case '/export':
        // XAPI-like: the export is chosen by query string, streamed without a length
        if (url.searchParams.get('uuid') !== 'abc') {
          res.statusCode = 404;
          return res.end();
        }
        return sendFile(res, gz.path, { chunked: true });
      case '/secure.xva':
        if (req.headers.cookie !== 'session_id=s3cr3t') {
          res.statusCode = 403;
          res.statusMessage = 'Forbidden';
          return res.end('no session');
        }
        return sendFile(res, plain.path);
      case '/auth.xva': {
        if (req.headers.authorization !== BASIC_ROOT) {
          res.statusCode = 401;
          res.setHeader('www-authenticate', 'Basic realm="xapi"');
          return res.end();
        }
        return sendFile(res, plain.path);
      }
      case '/pool-export':
        res.statusCode = 302;
        res.setHeader('location', `${memberBase}/export`);
        return res.end();
      case '/old-place':
        res.statusCode = 302;
        res.setHeader('location', '/vm.xva');
        return res.end();
      case '/half.xva':
        return sendFile(res, big.path, { cutAt: Math.floor(fs.statSync(big.path).size / 2) });
      case '/bad.xva':
        return sendFile(res, bad);
      default:
        res.statusCode = 404;
        res.statusMessage = 'Not Found';
        return res.end('nothing here');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  member = http.createServer((req, res) => {
    seen.push({ url: `member${req.url ?? ''}`, headers: req.headers });
    if (req.headers.authorization !== BASIC_ROOT) {
      res.statusCode = 401;
      res.statusMessage = 'Unauthorized';
      return res.end();
    }
    return sendFile(res, plain.path);
  });
  await new Promise<void>((resolve) => member.listen(0, '127.0.0.1', resolve));
  memberBase = `http://127.0.0.1:${(member.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections?.();
  await new Promise<void>((resolve) => member.close(() => resolve()));
  member.closeAllConnections?.();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a URL converts like a file; the content length is known', async () => {
  const o = out();
  const r = await runCli([`${base}/vm.xva`, '-o', o, '--json']);
  expect(r.stderr).toContain('VM "web"');
  expect(r.code).toBe(0);
  expect(fs.readFileSync(path.join(o, 'web-0.raw')).equals(plain.disks[0]!.expected)).toBe(true);
  expect(JSON.parse(r.stdout).input).toBe(`${base}/vm.xva`);
  const info = await runCli(['info', `${base}/vm.xva`, '--json']);
  expect(info.code).toBe(0);
  expect(JSON.parse(info.stdout).rawSize).toBe(fs.statSync(plain.path).size);
});

test('chunked gzip download with a query string, -O qcow2', async () => {
  const o = out();
  const r = await runCli([`${base}/export?uuid=abc`, '-o', o, '-O', 'qcow2']);
  expect(r.code).toBe(0);
  expect(listFiles(o)).toEqual(['zipped-0.qcow2']);
});

test('--header is sent (repeatable); without it the server says 403: exit 2, clear message', async () => {
  const o = out();
  const denied = await runCli([`${base}/secure.xva`, '-o', o]);
  expect(denied.code).toBe(2);
  // The message names the URL itself, so it is not repeated as a prefix.
  expect(denied.stderr).toMatch(new RegExp(`^xva2img: HTTP 403 Forbidden from ${esc(base)}/secure\\.xva$`, 'm'));
  expect(listFiles(o)).toEqual([]);
  const ok = await runCli([`${base}/secure.xva`, '-o', o, '--header', 'Cookie: session_id=s3cr3t', '-H', 'X-Trace: 42']);
  expect(ok.code).toBe(0);
  expect(listFiles(o)).toEqual(['web-0.raw']);
  const last = seen.filter((s) => s.url === '/secure.xva').pop()!;
  expect(last.headers['x-trace']).toBe('42');
});

test('basic auth from user:password in the URL; the password never shows', async () => {
  const o = out();
  const r = await runCli([`http://root:pa%20ss@127.0.0.1:${new URL(base).port}/auth.xva`, '-o', o, '--json']);
  expect(r.code).toBe(0);
  expect(listFiles(o)).toEqual(['web-0.raw']);
  expect(r.stdout + r.stderr).not.toContain('pa%20ss');
  const wrong = await runCli([`http://root:nope@127.0.0.1:${new URL(base).port}/auth.xva`, '-o', out()]);
  expect(wrong.code).toBe(2);
  expect(wrong.stderr).toContain('HTTP 401');
  expect(wrong.stderr).not.toContain('nope');
});

test('redirects are followed', async () => {
  const o = out();
  const r = await runCli([`${base}/old-place`, '-o', o]);
  expect(r.code).toBe(0);
  expect(listFiles(o)).toEqual(['web-0.raw']);
});

test('credentials stay with their host across a redirect unless --location-trusted', async () => {
  const url = `${base.replace('//', '//root:pa%20ss@')}/pool-export`;
  const refused = await runCli([url, '-o', out()]);
  expect(refused.code).toBe(2);
  expect(refused.stderr).toBe(
    `xva2img: ${base}/pool-export: HTTP 401 Unauthorized from ${memberBase}/export (credentials are not sent to another host after a redirect; --location-trusted sends them)\n`,
  );
  expect(refused.stderr).not.toContain('pa ss');
  const o = out();
  const trusted = await runCli([url, '--location-trusted', '-o', o]);
  expect(trusted.code).toBe(0);
  expect(trusted.stderr).not.toContain('pa ss');
  expect(listFiles(o)).toEqual(['web-0.raw']);
});

test('404: exit 2, one line', async () => {
  const o = out();
  const r = await runCli([`${base}/nothing.xva`, '-o', o]);
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(new RegExp(`^xva2img: HTTP 404 Not Found from ${esc(base)}/nothing\\.xva$`, 'm'));
  expect(listFiles(o)).toEqual([]);
});

test('the server closes the connection halfway: exit 2, no output file, no .part', async () => {
  const o = out();
  const r = await runCli([`${base}/half.xva`, '-o', o, '-O', 'qcow2']);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/^xva2img: connection closed after \d+ of \d+ bytes from .*half\.xva \(truncated download\)$/m);
  expect(listFiles(o)).toEqual([]);
});

test('info and verify take URLs too; a corrupted download verifies with exit 3', async () => {
  const v = await runCli(['verify', `${base}/vm.xva`, `${base}/bad.xva`]);
  expect(v.code).toBe(3);
  expect(v.stdout).toContain(`${base}/vm.xva: OK`);
  expect(v.stdout).toMatch(/bad chunk Ref:11\/00000001: disk 0 \(Ref:11\) offset 1048576/);
});

test('a batch mixing URLs and files; one URL failing', async () => {
  const o = out();
  const r = await runCli([`${base}/vm.xva`, `${base}/nothing.xva`, gz.path, '-o', o, '--jobs', '2', '--per-vm-dir', '--json']);
  expect(r.code).toBe(2);
  expect(listFiles(o)).toEqual(['web/web-0.raw', 'zipped/zipped-0.raw']);
  expect(JSON.parse(r.stdout).map((x: { status: string }) => x.status)).toEqual(['ok', 'failed', 'ok']);
});
