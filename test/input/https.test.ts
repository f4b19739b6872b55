/**
 * https URL inputs and the trust in server certificates (HttpOptions ca / pin / insecure),
 * against local https servers with certificates made for the test: a self-signed one like a
 * XenServer / XCP-ng host's, a second self-signed one (another host), and one signed by a CA.
 */
import * as https from 'node:https';
import * as net from 'node:net';
import { InputError, UsageError } from '../../src/errors';
import { openInput } from '../../src/input/open';
import { UntrustedCertificateError, parsePin } from '../../src/input/tls-trust';
import type { OpenInputOptions } from '../../src/input/types';
import { hasTool, itWithTools } from '../helpers/system-tools';
import { type TestCert, caAndServer, selfSigned } from '../helpers/tls-certs';
import { makeTempDir, readAll, removeDir, sampleBytes } from './helpers';

const itTls = itWithTools('openssl');
const DATA = sampleBytes(256 << 10, 7);

let dir: string;
let host: TestCert; // the XenServer host: self-signed
let member: TestCert; // another host: self-signed too
let ca: TestCert;
let signed: TestCert; // signed by `ca`, for 127.0.0.1
const servers: https.Server[] = [];
let hostUrl: string;
let memberUrl: string;
let signedUrl: string;
let requests: Array<{ server: string; url: string; authorization?: string }> = [];

function serve(name: string, cert: TestCert, handler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void): Promise<string> {
  const server = https.createServer({ key: cert.key, cert: cert.cert }, (req, res) => {
    requests.push({ server: name, url: req.url!, authorization: req.headers.authorization });
    handler(req, res);
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`https://127.0.0.1:${(server.address() as net.AddressInfo).port}`)));
}

function send(res: import('node:http').ServerResponse): void {
  res.writeHead(200, { 'content-length': DATA.length });
  res.end(DATA);
}

beforeAll(async () => {
  if (!hasTool('openssl')) return;
  dir = makeTempDir();
  host = selfSigned(dir, 'xenhost');
  member = selfSigned(dir, 'member');
  ({ ca, server: signed } = caAndServer(dir, 'signed'));
  memberUrl = await serve('member', member, (_req, res) => send(res));
  hostUrl = await serve('host', host, (req, res) => {
    const url = new URL(req.url!, 'https://x');
    if (url.pathname === '/export') {
      // XAPI-like: basic auth, the VM chosen by query string
      const want = 'Basic ' + Buffer.from('root:s3cr3t').toString('base64');
      if (req.headers.authorization !== want) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="xapi"' });
        return res.end();
      }
      return send(res);
    }
    if (url.pathname === '/silent') return; // never answers
    if (url.pathname === '/to-member') {
      // a pool master sending the client to the host that has the disks
      res.writeHead(302, { location: `${memberUrl}/export` });
      return res.end();
    }
    return send(res);
  });
  signedUrl = await serve('signed', signed, (_req, res) => send(res));
});

afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  if (dir) removeDir(dir);
});

beforeEach(() => {
  requests = [];
});

async function read(url: string, options: OpenInputOptions = {}): Promise<Buffer> {
  const src = await openInput(url, options);
  try {
    return await readAll(src);
  } finally {
    await src.close();
  }
}

async function refusal(url: string, options: OpenInputOptions = {}): Promise<UntrustedCertificateError> {
  const err = await openInput(url, options).then(
    async (src) => {
      await src.close();
      throw new Error('expected a refusal');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UntrustedCertificateError);
  return err as UntrustedCertificateError;
}

describe('a self-signed server certificate', () => {
  itTls('is refused by default: exit 2, its fingerprint and the ways to accept it, and no request is sent', async () => {
    const err = await refusal(`${hostUrl.replace('https://', 'https://root:s3cr3t@')}/export`);
    const server = new URL(hostUrl).host;
    expect(err.code).toBe('INPUT_HTTP');
    expect(err.exitCode).toBe(2);
    expect(err.server).toBe(server);
    expect(err.fingerprint).toBe(host.fingerprint);
    expect(err.message).toBe(
      `TLS certificate of ${server} is not trusted (self-signed certificate): SHA-256 fingerprint ${host.fingerprint}; ` +
        'to accept it, check that fingerprint and give it to --pin, or give its CA with --ca-cert FILE, or use -k/--insecure',
    );
    expect(err.describe()).not.toContain('s3cr3t');
    // The credentials never left: the server saw no request at all.
    expect(requests).toEqual([]);
  });

  itTls('is accepted when given as a CA (ca), on top of the default CAs', async () => {
    expect((await read(`${hostUrl}/vm.xva`, { http: { ca: host.cert } })).equals(DATA)).toBe(true);
    expect((await read(`${hostUrl}/vm.xva`, { http: { ca: host.cert.toString('utf8') } })).equals(DATA)).toBe(true);
  });

  itTls('is accepted when pinned, in any usual spelling of its SHA-256 fingerprint', async () => {
    const hex = host.fingerprint.replace(/:/g, '');
    for (const pin of [host.fingerprint, host.fingerprint.toLowerCase(), hex, `sha256:${hex.toLowerCase()}`, `sha256 Fingerprint=${host.fingerprint}`]) {
      expect((await read(`${hostUrl}/vm.xva`, { http: { pin } })).equals(DATA)).toBe(true);
    }
  });

  itTls('is refused when another certificate is pinned, naming the one it has', async () => {
    const err = await refusal(`${hostUrl}/vm.xva`, { http: { pin: member.fingerprint } });
    expect(err.message).toBe(`TLS certificate of ${new URL(hostUrl).host} does not match --pin: its SHA-256 fingerprint is ${host.fingerprint}`);
    expect(requests).toEqual([]);
  });

  itTls('is accepted with insecure', async () => {
    expect((await read(`${hostUrl}/vm.xva`, { http: { insecure: true } })).equals(DATA)).toBe(true);
  });

  itTls('basic auth over https: sent once the certificate is accepted, never in the name', async () => {
    const src = await openInput(`${hostUrl.replace('https://', 'https://root:s3cr3t@')}/export?uuid=abc&use_compression=zstd`, { http: { pin: host.fingerprint } });
    expect(src.name).toBe(`${hostUrl}/export?uuid=abc&use_compression=zstd`);
    expect((await readAll(src)).equals(DATA)).toBe(true);
    await src.close();
    expect(requests).toEqual([{ server: 'host', url: '/export?uuid=abc&use_compression=zstd', authorization: 'Basic ' + Buffer.from('root:s3cr3t').toString('base64') }]);
  });
});

describe('a certificate signed by a CA', () => {
  itTls('is refused without its CA, accepted with it (PEM or DER)', async () => {
    const err = await refusal(`${signedUrl}/vm.xva`);
    expect(err.message).toContain('is not trusted (issuer unknown)');
    expect(err.fingerprint).toBe(signed.fingerprint);
    expect((await read(`${signedUrl}/vm.xva`, { http: { ca: ca.cert } })).equals(DATA)).toBe(true);
    const der = Buffer.from(ca.cert.toString().replace(/-----[^-]+-----|\s/g, ''), 'base64');
    expect((await read(`${signedUrl}/vm.xva`, { http: { ca: der } })).equals(DATA)).toBe(true);
  });

  itTls('still has to name the host: a valid chain for another name is refused', async () => {
    const err = await refusal(`${signedUrl.replace('127.0.0.1', 'localhost')}/vm.xva`, { http: { ca: ca.cert } });
    expect(err.message).toMatch(/is not trusted \(Hostname\/IP does not match certificate's altnames: Host: localhost\. [^)]*\): SHA-256 fingerprint /);
  });
});

describe('redirects to another https server', () => {
  itTls('the pins apply to every server of the download: each host must be pinned', async () => {
    const err = await refusal(`${hostUrl}/to-member`, { http: { pin: host.fingerprint } });
    expect(err.server).toBe(new URL(memberUrl).host);
    expect(err.fingerprint).toBe(member.fingerprint);
    expect(requests.map((r) => r.server)).toEqual(['host']);
    expect((await read(`${hostUrl}/to-member`, { http: { pin: [host.fingerprint, member.fingerprint] } })).equals(DATA)).toBe(true);
  });

  itTls('so does ca: a bundle of both hosts', async () => {
    await refusal(`${hostUrl}/to-member`, { http: { ca: host.cert } });
    expect((await read(`${hostUrl}/to-member`, { http: { ca: Buffer.concat([host.cert, member.cert]) } })).equals(DATA)).toBe(true);
  });
});

describe('TLS options', () => {
  it('parsePin: colon-separated or not, any case, with openssl\'s prefixes; not curl public-key pins', () => {
    const fp = 'AB:'.repeat(31) + 'CD';
    expect(parsePin(fp)).toBe(fp);
    expect(parsePin(` ${fp.toLowerCase().replace(/:/g, '')} `)).toBe(fp);
    expect(parsePin(`SHA256 Fingerprint=${fp}`)).toBe(fp);
    expect(parsePin(`sha256:${fp}`)).toBe(fp);
    expect(() => parsePin('AB:CD')).toThrow(/expected a SHA-256 certificate fingerprint, 64 hex digits/);
    expect(() => parsePin(fp.replace('AB', 'XY'))).toThrow(UsageError);
    expect(() => parsePin('sha256//YhKJKSzoTt2b5FP18fvpHo7fJYqQCjAa3HWY3tvRMwE=')).toThrow(/public-key pins \(curl's sha256\/\/BASE64\) are not supported/);
  });

  it('pin cannot be combined with ca or insecure; a bad ca is named', async () => {
    const pin = 'AB'.repeat(32);
    for (const http of [{ pin, insecure: true }, { pin, ca: '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----' }]) {
      const err = await openInput('https://127.0.0.1:1/x', { http }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect((err as UsageError).message).toBe('--pin accepts only the pinned certificates: it cannot be combined with --ca-cert or -k/--insecure');
    }
    const err = await openInput('https://127.0.0.1:1/x', { http: { ca: 'not a certificate' } }).catch((e: unknown) => e);
    expect((err as UsageError).message).toMatch(/^the ca option: no certificate found/);
  });

  itTls('a server that accepts the certificate check but never answers times out on the response head', async () => {
    const err = await openInput(`${hostUrl}/silent`, { http: { timeoutMs: 300, pin: host.fingerprint } }).catch((e: unknown) => e);
    expect((err as InputError).message).toBe(`no response from ${hostUrl}/silent within 0.3 s (see --http-timeout)`);
  });

  it('a server that never answers the TLS handshake times out', async () => {
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => void held.push(socket));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const url = `https://127.0.0.1:${(silent.address() as net.AddressInfo).port}/vm.xva`;
      const err = await openInput(url, { http: { timeoutMs: 200, insecure: true } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).message).toBe(`no TLS handshake from 127.0.0.1:${new URL(url).port} within 0.2 s (see --http-timeout)`);
      expect((err as InputError).describe()).toBe(`${url}: no TLS handshake from 127.0.0.1:${new URL(url).port} within 0.2 s (see --http-timeout)`);
    } finally {
      for (const socket of held) socket.destroy();
      silent.close();
    }
  });
});

