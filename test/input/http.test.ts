import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { InputError } from '../../src/errors';
import { openInput } from '../../src/input/open';
import { parseHeaders, redactUrl } from '../../src/input/http';
import { readAll, readError, sampleBytes, tool } from './helpers';

const DATA = sampleBytes(1 << 20, 41);
const GZ = tool('gzip', ['-c'], DATA);
const ZST = tool('zstd', ['-q', '-c'], DATA);

interface Seen {
  url: string;
  headers: http.IncomingHttpHeaders;
}

let server: http.Server;
let other: http.Server;
let base: string;
let otherBase: string;
let seen: Seen[] = [];

function listen(s: http.Server): Promise<string> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)));
}

function send(res: http.ServerResponse, body: Buffer): void {
  res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
  res.end(body);
}

beforeAll(async () => {
  other = http.createServer((req, res) => {
    seen.push({ url: `other${req.url}`, headers: req.headers });
    send(res, DATA);
  });
  otherBase = await listen(other);

  server = http.createServer((req, res) => {
    seen.push({ url: req.url!, headers: req.headers });
    const url = new URL(req.url!, 'http://x');
    switch (url.pathname) {
      case '/plain.xva':
        return send(res, DATA);
      case '/export.xva':
        return send(res, GZ);
      case '/export.zst':
        return send(res, ZST);
      case '/chunked': {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.write(GZ.subarray(0, 1000));
        res.end(GZ.subarray(1000));
        return;
      }
      case '/redirect':
        res.writeHead(302, { location: '/export.xva' });
        return res.end();
      case '/redirect-other':
        res.writeHead(307, { location: `${otherBase}/elsewhere` });
        return res.end();
      case '/loop': {
        const n = Number(url.searchParams.get('n') ?? 0);
        res.writeHead(301, { location: `/loop?n=${n + 1}` });
        return res.end();
      }
      case '/needs-header':
        if (req.headers['x-api-token'] !== 'secret value') {
          res.writeHead(403, 'Forbidden');
          return res.end();
        }
        return send(res, DATA);
      case '/auth': {
        const expected = 'Basic ' + Buffer.from('root:p@ss:w').toString('base64');
        if (req.headers.authorization !== expected) {
          res.writeHead(401, { 'www-authenticate': 'Basic realm="xapi"' });
          return res.end();
        }
        return send(res, DATA);
      }
      case '/half': {
        // Half the body, then a FIN: the client reads that half before it sees the end (a reset
        // right after the write could discard it unread, and a delay only makes that unlikely).
        res.writeHead(200, { 'content-length': GZ.length });
        res.write(GZ.subarray(0, GZ.length >> 1), () => res.socket?.end());
        return;
      }
      case '/half-plain': {
        res.writeHead(200, { 'content-length': DATA.length });
        res.write(DATA.subarray(0, DATA.length >> 1), () => res.socket?.end());
        return;
      }
      default:
        res.writeHead(404, 'Not Found');
        return res.end('no such export');
    }
  });
  base = await listen(server);
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await new Promise((r) => other.close(r));
});

beforeEach(() => {
  seen = [];
});

describe('openInput: URLs', () => {
  it('reads a plain body with rawSize from Content-Length, as a stream (no seeking)', async () => {
    const src = await openInput(`${base}/plain.xva`);
    expect(src.name).toBe(`${base}/plain.xva`);
    expect(src.compression).toBe('none');
    expect(src.rawSize).toBe(DATA.length);
    expect(src.kind).toBe('stream');
    expect((await readAll(src)).equals(DATA)).toBe(true);
    expect(src.rawBytesRead()).toBe(DATA.length);
    await src.close();
  });

  it('decodes a gzip body and a zstd body', async () => {
    const gz = await openInput(`${base}/export.xva`);
    expect(gz.compression).toBe('gzip');
    expect(gz.rawSize).toBe(GZ.length);
    expect((await readAll(gz)).equals(DATA)).toBe(true);
    await gz.close();

    const zst = await openInput(`${base}/export.zst`);
    expect(zst.compression).toBe('zstd');
    expect((await readAll(zst)).equals(DATA)).toBe(true);
    await zst.close();
  });

  it('handles a chunked body without Content-Length', async () => {
    const src = await openInput(`${base}/chunked`);
    expect(src.rawSize).toBeUndefined();
    expect((await readAll(src)).equals(DATA)).toBe(true);
    await src.close();
  });

  it('follows redirects', async () => {
    const src = await openInput(`${base}/redirect`);
    expect(src.name).toBe(`${base}/redirect`);
    expect((await readAll(src)).equals(DATA)).toBe(true);
    expect(seen.map((s) => s.url)).toEqual(['/redirect', '/export.xva']);
    await src.close();
  });

  it('gives up after 5 redirects', async () => {
    const err = await openInput(`${base}/loop`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).code).toBe('INPUT_HTTP');
    expect((err as InputError).message).toBe(`too many redirects (more than 5) from ${base}/loop?n=5`);
    expect(seen).toHaveLength(6);
  });

  it('sends --header entries', async () => {
    const src = await openInput(`${base}/needs-header`, { headers: ['X-Api-Token: secret value', 'Accept: */*'] });
    expect((await readAll(src)).equals(DATA)).toBe(true);
    expect(seen[0]!.headers['x-api-token']).toBe('secret value');
    expect(seen[0]!.headers.accept).toBe('*/*');
    await src.close();
  });

  it('uses user:password@ as basic auth and keeps it out of the name', async () => {
    const url = `${base.replace('http://', 'http://root:p%40ss%3Aw@')}/auth`;
    const src = await openInput(url);
    expect(src.name).toBe(`${base}/auth`);
    expect(src.name).not.toContain('p%40ss');
    expect((await readAll(src)).equals(DATA)).toBe(true);
    await src.close();

    const err = await openInput(`${base}/auth`).catch((e: unknown) => e);
    expect((err as InputError).code).toBe('INPUT_HTTP');
    expect((err as InputError).message).toBe(`HTTP 401 Unauthorized from ${base}/auth`);
  });

  it('drops credentials on a redirect to another origin, keeps custom headers', async () => {
    const url = `${base.replace('http://', 'http://root:secret@')}/redirect-other`;
    const src = await openInput(url, { headers: ['X-Trace: 1'] });
    expect((await readAll(src)).equals(DATA)).toBe(true);
    await src.close();
    expect(seen.map((s) => s.url)).toEqual(['/redirect-other', 'other/elsewhere']);
    expect(seen[0]!.headers.authorization).toMatch(/^Basic /);
    expect(seen[1]!.headers.authorization).toBeUndefined();
    expect(seen[1]!.headers['x-trace']).toBe('1');
  });

  it('sends -H Authorization, Cookie and Proxy-Authorization only to their origin, as curl does', async () => {
    const headers = ['Authorization: Bearer t0ken', 'Cookie: session_id=OpaqueRef:1', 'Proxy-Authorization: Basic cHg=', 'X-Trace: 2'];
    const src = await openInput(`${base}/redirect-other`, { headers });
    expect((await readAll(src)).equals(DATA)).toBe(true);
    await src.close();
    expect(seen.map((s) => s.url)).toEqual(['/redirect-other', 'other/elsewhere']);
    expect(seen[0]!.headers).toMatchObject({ authorization: 'Bearer t0ken', cookie: 'session_id=OpaqueRef:1', 'proxy-authorization': 'Basic cHg=', 'x-trace': '2' });
    expect(seen[1]!.headers.authorization).toBeUndefined();
    expect(seen[1]!.headers.cookie).toBeUndefined();
    expect(seen[1]!.headers['proxy-authorization']).toBeUndefined();
    expect(seen[1]!.headers['x-trace']).toBe('2');
  });

  it('keeps every header on a redirect within the origin', async () => {
    const src = await openInput(`${base}/redirect`, { headers: ['Cookie: session_id=OpaqueRef:1'] });
    await readAll(src);
    await src.close();
    expect(seen.map((s) => [s.url, s.headers.cookie])).toEqual([
      ['/redirect', 'session_id=OpaqueRef:1'],
      ['/export.xva', 'session_id=OpaqueRef:1'],
    ]);
  });

  it('with locationTrusted, sends the credentials to the other origin too (a pool member)', async () => {
    const url = `${base.replace('http://', 'http://root:secret@')}/redirect-other`;
    const src = await openInput(url, { headers: ['Cookie: session_id=OpaqueRef:1'], http: { locationTrusted: true } });
    await readAll(src);
    await src.close();
    expect(seen[1]!.url).toBe('other/elsewhere');
    expect(seen[1]!.headers.authorization).toBe('Basic ' + Buffer.from('root:secret').toString('base64'));
    expect(seen[1]!.headers.cookie).toBe('session_id=OpaqueRef:1');
  });

  it('reports HTTP 404 as INPUT_HTTP', async () => {
    const err = await openInput(`${base}/missing.xva`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    const e = err as InputError;
    expect(e.code).toBe('INPUT_HTTP');
    expect(e.exitCode).toBe(2);
    expect(e.message).toBe(`HTTP 404 Not Found from ${base}/missing.xva`);
    expect(e.location.input).toBe(`${base}/missing.xva`);
  });

  it('reports a body cut short of Content-Length (gzip) as a truncated download', async () => {
    const src = await openInput(`${base}/half`);
    expect(src.rawSize).toBe(GZ.length);
    const err = await readError(src);
    expect(err).toBeInstanceOf(InputError);
    expect(err.code).toBe('INPUT_HTTP');
    // At most the half that was sent.
    const m = /^connection closed after (\d+) of (\d+) bytes from (\S+) \(truncated download\)$/.exec(err.message);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(Number(m![1])).toBeLessThanOrEqual(GZ.length >> 1);
    expect(Number(m![2])).toBe(GZ.length);
    expect(m![3]).toBe(`${base}/half`);
    await src.close();
  });

  it('reports a body cut short of Content-Length (plain) instead of a silent EOF', async () => {
    const src = await openInput(`${base}/half-plain`);
    const err = await readError(src);
    expect(err.code).toBe('INPUT_HTTP');
    expect(err.message).toMatch(/^connection closed after \d+ of 1048576 bytes from .*\(truncated download\)$/);
    await src.close();
  });

  it('reports a refused connection as INPUT_HTTP', async () => {
    const closed = http.createServer();
    const url = await listen(closed);
    await new Promise((r) => closed.close(r));
    const err = await openInput(`${url}/x.xva`).catch((e: unknown) => e);
    expect((err as InputError).code).toBe('INPUT_HTTP');
    expect((err as InputError).message).toContain('ECONNREFUSED');
  });

  it('close() before reading releases the socket', async () => {
    const src = await openInput(`${base}/plain.xva`);
    await src.close();
    expect(src.stream.destroyed).toBe(true);
  });
});

describe('http helpers', () => {
  it('parseHeaders splits at the first colon and rejects malformed entries', () => {
    expect(parseHeaders(['Cookie: a=b; c=d', 'X-Url: http://x:1/'])).toEqual({ Cookie: 'a=b; c=d', 'X-Url': 'http://x:1/' });
    expect(() => parseHeaders(['no colon'])).toThrow(/bad --header/);
    expect(() => parseHeaders([': value'])).toThrow(/bad --header/);
  });

  it('redactUrl removes credentials', () => {
    expect(redactUrl('https://u:p@host/a?b=1')).toBe('https://host/a?b=1');
    expect(redactUrl('https://host/a')).toBe('https://host/a');
  });
});
