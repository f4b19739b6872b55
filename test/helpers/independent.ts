/** Runs test/helpers/independent_xva.py: a second XVA producer that shares no code with ours. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface IndependentDisk {
  ref: string;
  userdevice: string;
  image: Buffer;
  keepaliveBefore?: number[];
}

export function independentXva(spec: { style: 'xapi' | 'xo' | 'xvaimg'; checksum?: 'sha1' | 'xxh64'; vmName?: string; disks: IndependentDisk[] }): Buffer {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'indep-'));
  try {
    const disks = spec.disks.map((d, i) => {
      const image = path.join(dir, `disk${i}.raw`);
      fs.writeFileSync(image, d.image);
      return { ref: d.ref, userdevice: d.userdevice, image, keepalive_before: d.keepaliveBefore ?? [] };
    });
    const specPath = path.join(dir, 'spec.json');
    fs.writeFileSync(specPath, JSON.stringify({ style: spec.style, checksum: spec.checksum ?? 'xxh64', vm_name: spec.vmName ?? 'indep', disks }));
    const out = path.join(dir, 'out.xva');
    execFileSync('python3', [path.join(__dirname, 'independent_xva.py'), specPath, out]);
    return fs.readFileSync(out);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Deterministic pseudo-random bytes (xorshift32), for disk contents. */
export function pseudoRandom(length: number, seed: number): Buffer {
  const out = Buffer.alloc(Math.ceil(length / 4) * 4);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < out.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  return out.subarray(0, length);
}
