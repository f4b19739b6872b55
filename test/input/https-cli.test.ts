/**
 * The CLI against an XCP-ng-like export endpoint on https with a self-signed certificate:
 * refused by default with its fingerprint (exit 2, no output), accepted with --ca-cert, --pin or
 * -k (with a warning), basic auth from user:password@ in the URL; bad TLS options exit 1.
 */
import * as fs from 'node:fs';
import type * as Http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { esc, listFiles, runCli } from '../cli/_cli';
import { hasTool, itWithTools } from '../helpers/system-tools';
import { type TestCert, selfSigned } from '../helpers/tls-certs';
import { makeXvaFile, MiB, type XvaFixture } from '../helpers/xva-fixtures';
import { makeTempDir, removeDir } from './helpers';

const itTls = itWithTools('openssl');
let dir: string;
let cert: TestCert;
let other: TestCert;
let xva: XvaFixture & { path: string };
let server: https.Server;
let port: number;
let requests = 0;
let n = 0;
const out = (): string => path.join(dir, `out-${n++}`);
const exportUrl = (auth = 'root:s3cr3t'): string => `https://${auth}@127.0.0.1:${port}/export?uuid=2b6e&use_compression=zstd`;
const shown = (): string => `https://127.0.0.1:${port}/export?uuid=2b6e&use_compression=zstd`;

beforeAll(async () => {
  if (!hasTool('openssl')) return;
  dir = makeTempDir();
  cert = selfSigned(dir, 'xcp-host');
  other = selfSigned(dir, 'other');
  xva = await makeXvaFile(dir, { vmName: 'web', compression: 'zstd', disks: [{ size: 2 * MiB, fill: [{ offset: 0, length: MiB }] }] });
  server = https.createServer({ key: cert.key, cert: cert.cert }, (req: Http.IncomingMessage, res: Http.ServerResponse) => {
    requests++;
    if (req.headers.authorization !== 'Basic ' + Buffer.from('root:s3cr3t').toString('base64')) {
      res.writeHead(401, 'Unauthorized', { 'www-authenticate': 'Basic realm="xapi"' });
      return res.end();
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' }); // XAPI streams without a length
    res.end(fs.readFileSync(xva.path));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  if (!server) return;
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  removeDir(dir);
});

itTls('refused by default: exit 2, one line with the fingerprint and the options, no request sent, no output', async () => {
  const o = out();
  const before = requests;
  const r = await runCli([exportUrl(), '-o', o]);
  expect(r.code).toBe(2);
  expect(r.stderr).toBe(
    `xva2img: ${shown()}: TLS certificate of 127.0.0.1:${port} is not trusted (self-signed certificate): SHA-256 fingerprint ${cert.fingerprint}; ` +
      'to accept it, check that fingerprint and give it to --pin, or give its CA with --ca-cert FILE, or use -k/--insecure\n',
  );
  expect(requests).toBe(before);
  expect(listFiles(o)).toEqual([]);
});

itTls('--ca-cert FILE: the host certificate trusted as its own CA; basic auth from the URL', async () => {
  const o = out();
  const r = await runCli([exportUrl(), '--ca-cert', cert.certPath, '-o', o, '--json']);
  expect(r.code).toBe(0);
  expect(fs.readFileSync(path.join(o, 'web-0.raw')).equals(xva.disks[0]!.expected)).toBe(true);
  expect(JSON.parse(r.stdout).input).toBe(shown());
  expect(r.stdout + r.stderr).not.toContain('s3cr3t');
});

itTls('--pin: the right fingerprint converts, a wrong one is refused naming the real one', async () => {
  const o = out();
  const ok = await runCli([exportUrl(), '--pin', cert.fingerprint.replace(/:/g, '').toLowerCase(), '-o', o]);
  expect(ok.code).toBe(0);
  expect(listFiles(o)).toEqual(['web-0.raw']);
  const wrong = await runCli([exportUrl(), '--pin', other.fingerprint, '-o', out()]);
  expect(wrong.code).toBe(2);
  expect(wrong.stderr).toBe(`xva2img: ${shown()}: TLS certificate of 127.0.0.1:${port} does not match --pin: its SHA-256 fingerprint is ${cert.fingerprint}\n`);
});

itTls('-k/--insecure: accepted, with a warning line; info and verify take the options too', async () => {
  const r = await runCli(['info', exportUrl(), '-k']);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('web');
  expect(r.stderr).toBe('xva2img: warning: -k/--insecure: https server certificates are not checked; anyone on the path can read or change the download\n');
  const v = await runCli(['verify', exportUrl(), '--pin', cert.fingerprint]);
  expect(v.code).toBe(0);
  expect(v.stdout).toContain(`${shown()}: OK`);
});

itTls('basic auth over https: a wrong password is the server\'s 401, not printed', async () => {
  const r = await runCli([exportUrl('root:nope'), '--pin', cert.fingerprint, '-o', out()]);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(new RegExp(`^xva2img: HTTP 401 Unauthorized from ${esc(shown())}$`, 'm'));
  expect(r.stderr).not.toContain('nope');
});

itTls('bad TLS options are usage errors (exit 1), named', async () => {
  const cases: Array<[string[], string]> = [
    [['--ca-cert', path.join(dir, 'missing.pem')], `--ca-cert ${path.join(dir, 'missing.pem')}: cannot read: ENOENT`],
    [['--ca-cert', xva.path], `--ca-cert ${xva.path}: bad certificate: `],
    [['--pin', 'AB:CD'], '--pin "AB:CD": expected a SHA-256 certificate fingerprint, 64 hex digits (colons optional)'],
    [['--pin', cert.fingerprint, '-k'], '--pin accepts only the pinned certificates: it cannot be combined with --ca-cert or -k/--insecure'],
  ];
  for (const [args, message] of cases) {
    const r = await runCli([exportUrl(), ...args, '-o', out()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`xva2img: ${message}`);
  }
});
