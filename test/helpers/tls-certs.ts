/**
 * Throw-away TLS certificates for tests, made with the openssl program (tests that use them
 * declare it with itWithTools('openssl')): a self-signed server certificate like the one a
 * XenServer / XCP-ng host ships, or a small CA and a server certificate it signed.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface TestCert {
  key: Buffer;
  /** PEM. */
  cert: Buffer;
  certPath: string;
  /** SHA-256 of the DER, "AB:CD:…" (node:crypto's own computation, independent of the code under test). */
  fingerprint: string;
}

/** `openssl req` with a new P-256 key, unencrypted. */
const NEW_KEY = ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function load(keyPath: string, certPath: string): TestCert {
  const cert = fs.readFileSync(certPath);
  return { key: fs.readFileSync(keyPath), cert, certPath, fingerprint: new X509Certificate(cert).fingerprint256 };
}

/** A self-signed certificate (CA:FALSE, like a host's own) for `san`, e.g. "IP:127.0.0.1". */
export function selfSigned(dir: string, name: string, san = 'IP:127.0.0.1'): TestCert {
  const keyPath = path.join(dir, `${name}.key`);
  const certPath = path.join(dir, `${name}.pem`);
  openssl([...NEW_KEY, '-x509', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/CN=${name}`]
    .concat(['-addext', `subjectAltName=${san}`, '-addext', 'basicConstraints=critical,CA:FALSE']));
  return load(keyPath, certPath);
}

/** A CA and a server certificate signed by it for `san`. */
export function caAndServer(dir: string, name: string, san = 'IP:127.0.0.1'): { ca: TestCert; server: TestCert } {
  const caKey = path.join(dir, `${name}-ca.key`);
  const caCert = path.join(dir, `${name}-ca.pem`);
  openssl([...NEW_KEY, '-x509', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', `/CN=${name} test CA`]);
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.pem`);
  const ext = path.join(dir, `${name}.ext`);
  openssl([...NEW_KEY, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  fs.writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=critical,CA:FALSE\n`);
  openssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
  return { ca: load(caKey, caCert), server: load(key, cert) };
}
