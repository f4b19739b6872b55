/**
 * A server that stops sending: the HTTP timeout (HttpOptions.timeoutMs, --http-timeout) fails
 * the input with exit 2, the URL and the byte offset reached, instead of hanging forever —
 * for every verb that reads URLs, and in the second pass of the two-pass paths. A body that
 * waits because we are slow (backpressure) is not stalled. The tests wait on the error or the
 * process exit, never on a sleep.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { InputError } from '../../src/errors';
import { openInput } from '../../src/input/open';
import { esc, listFiles, runCli } from '../cli/_cli';
import { makeXvaFile, MiB, type XvaFixture } from '../helpers/xva-fixtures';
import { makeTempDir, readAll, readError, removeDir, sampleBytes } from './helpers';

const DATA = sampleBytes(1 << 20, 3);
const BIG = sampleBytes(32 << 20, 5);

let dir: string;
let xva: XvaFixture & { path: string };
let server: http.Server;
let base: string;
const hits = new Map<string, number>();

/** Sends `bytes` up to `stallAt` (all if undefined) and then nothing, keeping the connection open. */
function send(res: http.ServerResponse, bytes: Buffer, stallAt?: number): void {
  res.writeHead(200, { 'content-length': bytes.length, 'content-type': 'application/octet-stream' });
  if (stallAt === undefined) res.end(bytes);
  else res.write(bytes.subarray(0, stallAt));
}

beforeAll(async () => {
  dir = makeTempDir();
  xva = await makeXvaFile(dir, { vmName: 'web', disks: [{ size: 4 * MiB, fill: [{ offset: 0, length: 3 * MiB }] }] });
  const file = fs.readFileSync(xva.path);
  server = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const hit = (hits.get(url.pathname) ?? 0) + 1;
    hits.set(url.pathname, hit);
    const [, kind, arg] = url.pathname.split('/');
    switch (kind) {
      case 'data':
        return send(res, DATA, arg === 'stall' ? 100_000 : undefined);
      case 'big':
        return send(res, BIG);
      case 'no-head':
        return; // accepts the request, never answers
      case 'xva':
        // /xva/<at>/<n>/<id>: the n-th request of <id> stalls after <at> bytes, others get everything
        return send(res, file, hit === Number(url.pathname.split('/')[3]) ? Number(arg) : undefined);
      default:
        res.writeHead(404);
        return res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  removeDir(dir);
});

describe('openInput', () => {
  it('a body that stops: INPUT_HTTP naming the URL and the bytes received', async () => {
    const src = await openInput(`${base}/data/stall`, { http: { timeoutMs: 300 } });
    const err = await readError(src);
    expect(err).toBeInstanceOf(InputError);
    expect(err.code).toBe('INPUT_HTTP');
    expect(err.exitCode).toBe(2);
    expect(err.message).toBe(`no data from ${base}/data/stall for 0.3 s after 100000 of ${DATA.length} bytes (stalled download; see --http-timeout)`);
    await src.close();
  });

  it('a response head that never comes', async () => {
    const err = await openInput(`${base}/no-head/x`, { http: { timeoutMs: 300 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toBe(`no response from ${base}/no-head/x within 0.3 s (see --http-timeout)`);
  });

  it('a body paused by its reader for longer than the timeout is not stalled', async () => {
    const src = await openInput(`${base}/big/x`, { http: { timeoutMs: 200 } });
    // Nobody reads for 3 timeouts: the pipeline fills and the body is paused.
    await new Promise((r) => setTimeout(r, 600));
    expect(src.rawBytesRead()).toBeLessThan(BIG.length);
    expect((await readAll(src)).equals(BIG)).toBe(true);
    await src.close();
  });

  it('timeoutMs 0 means no limit; a negative one is refused', async () => {
    const src = await openInput(`${base}/data/x`, { http: { timeoutMs: 0 } });
    expect((await readAll(src)).equals(DATA)).toBe(true);
    await src.close();
    await expect(openInput(`${base}/data/x`, { http: { timeoutMs: -1 } })).rejects.toThrow(/HTTP timeout must be a number of milliseconds from 0 \(no limit\) to 2147483647/);
  });
});

describe('every verb that reads URLs', () => {
  let n = 0;
  const stalled = (at: number, nth = 1): string => `${base}/xva/${at}/${nth}/${n++}`;
  const expectStall = (r: { code: number | null; stderr: string }, url: string): void => {
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`^xva2img: no data from ${esc(url)} for 0\\.5 s after \\d+ of ${fs.statSync(xva.path).size} bytes \\(stalled download; see --http-timeout\\)$`, 'm'));
  };

  // [name, args before the URL, args after it; the stall offset: ova.xml for info, mid-disk for the rest]
  const verbs: Array<[string, string[], (out: string) => string[], number]> = [
    ['convert', [], (out) => ['-o', out], 2 * MiB],
    ['info', ['info'], () => [], 600],
    ['verify', ['verify'], () => [], 2 * MiB],
    ['measure', ['measure'], () => [], 2 * MiB],
    ['pack --from', ['pack', '--from'], (out) => ['-o', path.join(out, 'vm.xva')], 2 * MiB],
    ['ova', ['ova'], (out) => ['-o', path.join(out, 'vm.ova')], 2 * MiB],
  ];
  it.each(verbs)('%s: exit 2, the URL and the offset reached, no partial output', async (_name, before, after, at) => {
    const out = path.join(dir, `out-${n}`);
    fs.mkdirSync(out);
    const url = stalled(at);
    const r = await runCli([...before, url, ...after(out), '--http-timeout', '0.5']);
    expectStall(r, url);
    expect(listFiles(out)).toEqual([]);
  });

  it.each([
    ['qcow2 to a pipe', ['-O', 'qcow2', '-o', '-']],
    ['ova to a pipe', ['ova', '-o', '-']],
  ])('%s reads the URL twice: a stall in the second pass fails the same way', async (_name, args) => {
    const url = stalled(2 * MiB, 2);
    const r = await runCli(args[0] === 'ova' ? ['ova', url, ...args.slice(1), '--http-timeout', '0.5'] : [url, ...args, '--http-timeout', '0.5']);
    expectStall(r, url);
    expect(hits.get(new URL(url).pathname)).toBe(2);
  });

  it('--http-timeout takes seconds; anything else is a usage error', async () => {
    const r = await runCli(['info', `${base}/data/x`, '--http-timeout', '5m']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('xva2img: --http-timeout must be a number of seconds from 0 (wait forever) to 2147483, not "5m"\n');
  });
});
