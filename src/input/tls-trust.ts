/**
 * Which TLS servers a URL input trusts (docs/design/http-input.md).
 *
 * Every https connection is opened here rather than by an Agent: the handshake is finished and
 * the server's certificate judged before the socket is handed to node:https, so a request (and
 * the credentials or session cookie in it) is never written to a server that was not accepted.
 *
 * Trust, the same for every connection of a download (redirects included):
 *  - default: Node's CAs and host name check;
 *  - `ca`: the given certificates are trusted as well (added to the defaults, not replacing them);
 *  - `pin`: exactly the certificates with these SHA-256 fingerprints (of the DER), whoever signed
 *    them and whatever names they carry, and nothing else — not even a CA-valid certificate;
 *  - `insecure`: anything.
 * A refused certificate fails with its fingerprint, so that the user can check it and pin it.
 */
import type { Duplex } from 'node:stream';
import type * as Tls from 'node:tls';
import { InputError, UsageError } from '../errors';
import type { HttpOptions } from './types';

/** HttpOptions' trust settings, checked and normalised. */
export interface TlsTrust {
  /** Secure context with the default CAs plus `ca`; undefined: Node's defaults. */
  readonly context?: Tls.SecureContext;
  /** Accepted fingerprints ("AB:CD:…"); when set, nothing else is accepted. */
  readonly pins?: readonly string[];
  readonly insecure: boolean;
}

/** A server certificate we do not accept; `fingerprint` is what `pin` would take. */
export class UntrustedCertificateError extends InputError {
  constructor(
    message: string,
    /** `host:port` of the server. */
    readonly server: string,
    /** SHA-256 of the certificate (DER), as "AB:CD:…". */
    readonly fingerprint: string,
    input: string,
  ) {
    super('INPUT_HTTP', message, { input });
  }
}

/**
 * Secure contexts made for a `ca` value: loading Node's ~150 default CAs into one takes
 * 60-200 ms, and a batch passes the same options for every input and both passes.
 */
const contexts = new WeakMap<object, Tls.SecureContext>();

export function resolveTlsTrust(options: HttpOptions = {}): TlsTrust {
  const pins = checkedPins(options);
  const insecure = !!options.insecure;
  const ca = options.ca;
  if (ca === undefined) return { pins, insecure };
  let context = typeof ca === 'object' ? contexts.get(ca) : undefined;
  if (!context) {
    const tls = require('node:tls') as typeof Tls; // eslint-disable-line @typescript-eslint/no-require-imports
    const items = typeof ca === 'string' || Buffer.isBuffer(ca) ? [ca] : ca;
    const added = items.flatMap((item) => certificatesIn(item, 'the ca option'));
    context = tls.createSecureContext({ ca: [...defaultCertificates(), ...added] });
    if (typeof ca === 'object') contexts.set(ca, context);
  }
  return { context, insecure };
}

/** The pins of `options`, normalised; undefined if none. Throws UsageError for bad ones and contradictions. */
export function checkedPins(options: HttpOptions): string[] | undefined {
  const list = options.pin === undefined ? [] : typeof options.pin === 'string' ? [options.pin] : options.pin;
  if (list.length === 0) return undefined;
  if (options.insecure || options.ca !== undefined) {
    throw new UsageError('--pin accepts only the pinned certificates: it cannot be combined with --ca-cert or -k/--insecure');
  }
  return list.map(parsePin);
}

/**
 * The certificates in `bytes`, as PEM: every PEM certificate block, or one DER certificate.
 * `label` names the source in the error (e.g. "--ca-cert ca.pem").
 */
export function certificatesIn(bytes: string | Buffer, label: string): string[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { X509Certificate } = require('node:crypto') as typeof import('node:crypto');
  const text = typeof bytes === 'string' ? bytes : bytes.toString('latin1');
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  try {
    if (blocks) return blocks.map((pem) => new X509Certificate(pem).toString());
    if (Buffer.isBuffer(bytes) && bytes.length > 0) return [new X509Certificate(bytes).toString()];
  } catch (err) {
    throw new UsageError(`${label}: bad certificate: ${(err as Error).message}`);
  }
  throw new UsageError(`${label}: no certificate found (expected PEM "-----BEGIN CERTIFICATE-----" blocks or one DER certificate)`);
}

/** What Node trusts by default: its CA bundle plus NODE_EXTRA_CA_CERTS. */
function defaultCertificates(): string[] {
  const tls = require('node:tls') as typeof Tls & { getCACertificates?: (type: 'default') => string[] }; // eslint-disable-line @typescript-eslint/no-require-imports
  if (tls.getCACertificates) return tls.getCACertificates('default'); // Node >= 22.15
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  let extraPems: string[] = [];
  if (extra) {
    try {
      extraPems = certificatesIn(require('node:fs').readFileSync(extra), 'NODE_EXTRA_CA_CERTS'); // eslint-disable-line @typescript-eslint/no-require-imports
    } catch {
      // Node itself warned about the file at start-up and ignores it: so do we.
    }
  }
  return [...tls.rootCertificates, ...extraPems];
}

/**
 * A SHA-256 fingerprint as "AB:CD:…" (64 hex digits, upper case, colon-separated, like
 * `openssl x509 -fingerprint -sha256` and Node's fingerprint256). Accepted spellings: hex digits
 * with or without colons or spaces, any case, optionally after `sha256:`, `sha256=` or
 * `sha256 Fingerprint=` (openssl's output line). Not curl's `sha256//…`: that is the base64
 * hash of a public key, a different thing.
 */
export function parsePin(text: string): string {
  const spec = text.trim();
  if (/^sha256\//i.test(spec)) {
    throw new UsageError(
      `--pin ${JSON.stringify(text)}: public-key pins (curl's sha256//BASE64) are not supported; give the certificate's SHA-256 fingerprint in hex (openssl x509 -noout -fingerprint -sha256 -in cert.pem)`,
    );
  }
  const hex = spec.replace(/^sha-?256(?:\s+fingerprint)?\s*[:=]\s*/i, '').replace(/[:\s]/g, '');
  if (!/^[0-9a-f]{64}$/i.test(hex)) {
    throw new UsageError(`--pin ${JSON.stringify(text)}: expected a SHA-256 certificate fingerprint, 64 hex digits (colons optional)`);
  }
  return formatHex(hex);
}

/** SHA-256 of a DER certificate, as "AB:CD:…". */
export function certificateFingerprint(der: Buffer): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  return formatHex(createHash('sha256').update(der).digest('hex'));
}

function formatHex(hex: string): string {
  return hex.toUpperCase().match(/../g)!.join(':');
}

/** OpenSSL verification codes, in words (others are shown as the code). */
const VERIFY_REASONS: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in the chain',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'issuer unknown',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'issuer unknown',
  UNABLE_TO_GET_ISSUER_CERT: 'issuer unknown',
  CERT_HAS_EXPIRED: 'certificate expired',
  CERT_NOT_YET_VALID: 'certificate not yet valid',
};

type Connect = (options: unknown, done: (err: Error | null, socket?: Duplex) => void) => undefined;

/**
 * A `createConnection` for node:https: connects to `url`, finishes the handshake within
 * `timeoutMs` (0: no limit) and passes the socket on only if `trust` accepts the certificate.
 * Errors are INPUT_HTTP errors naming `input`.
 */
export function trustedConnection(url: URL, trust: TlsTrust, timeoutMs: number, input: string): Connect {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port || 443);
  const server = `${url.hostname}:${port}`;
  return (_options, done) => {
    const tls = require('node:tls') as typeof Tls; // eslint-disable-line @typescript-eslint/no-require-imports
    const net = require('node:net') as typeof import('node:net'); // eslint-disable-line @typescript-eslint/no-require-imports
    let identityError: Error | undefined;
    let finished = false;
    const finish = (err: Error | null, socket?: Duplex): void => {
      if (finished) return;
      finished = true;
      done(err, socket);
    };
    const socket = tls.connect({
      host,
      port,
      // SNI carries host names only (RFC 6066 §3).
      servername: net.isIP(host) ? undefined : host,
      secureContext: trust.context,
      ALPNProtocols: ['http/1.1'],
      // Judged below, once the handshake is over; nothing is written before.
      rejectUnauthorized: false,
      checkServerIdentity: (name, cert) => (identityError = tls.checkServerIdentity(name, cert)),
    });
    // The handshake is the server's first answer: under the same limit as the response head.
    const onTimeout = (): void => {
      socket.destroy(new InputError('INPUT_HTTP', `no TLS handshake from ${server} within ${timeoutMs / 1000} s (see --http-timeout)`, { input }));
    };
    if (timeoutMs > 0) socket.setTimeout(timeoutMs, onTimeout);
    socket.once('error', (err) => finish(err));
    socket.once('secureConnect', () => {
      // From here on the HTTP client times the socket (http.ts).
      socket.setTimeout(0);
      socket.removeListener('timeout', onTimeout);
      const refusal = judge(socket, trust, server, identityError, input);
      if (refusal) {
        socket.destroy();
        finish(refusal);
      } else {
        finish(null, socket);
      }
    });
    return undefined;
  };
}

function judge(socket: Tls.TLSSocket, trust: TlsTrust, server: string, identityError: Error | undefined, input: string): InputError | undefined {
  if (trust.insecure) return undefined;
  const raw = socket.getPeerCertificate().raw as Buffer | undefined;
  if (!raw) return new InputError('INPUT_HTTP', `TLS server ${server} sent no certificate`, { input });
  const fingerprint = certificateFingerprint(raw);
  if (trust.pins) {
    if (trust.pins.includes(fingerprint)) return undefined;
    return new UntrustedCertificateError(`TLS certificate of ${server} does not match --pin: its SHA-256 fingerprint is ${fingerprint}`, server, fingerprint, input);
  }
  if (socket.authorized) return undefined;
  const code = String(socket.authorizationError ?? 'unknown');
  const reason = identityError ? identityError.message.replace(/\.$/, '') : (VERIFY_REASONS[code] ?? code);
  return new UntrustedCertificateError(
    `TLS certificate of ${server} is not trusted (${reason}): SHA-256 fingerprint ${fingerprint}; ` +
      'to accept it, check that fingerprint and give it to --pin, or give its CA with --ca-cert FILE, or use -k/--insecure',
    server,
    fingerprint,
    input,
  );
}
