/**
 * SyncReadGate (src/io/sync-read-gate.ts): small reads synchronously while they are as fast as
 * the page cache; one slow read sends them to the thread pool for a while; same bytes either way.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SyncReadGate } from '../../src/io/sync-read-gate';

describe('SyncReadGate', () => {
  test('small reads go synchronous; a slow one sends them to the thread pool for the back-off time', () => {
    let now = 1000;
    const gate = new SyncReadGate(65536, 0.2, 1000, () => now);
    expect(gate.allows(4096)).toBe(true);
    expect(gate.allows(65537)).toBe(false); // large copies: a worker thread
    gate.record(0.05); // a page-cache copy
    expect(gate.allows(4096)).toBe(true);
    gate.record(3); // the disk
    expect(gate.allows(4096)).toBe(false);
    now += 999;
    expect(gate.allows(4096)).toBe(false);
    now += 1;
    expect(gate.allows(4096)).toBe(true);
  });

  test('reads the same bytes either way', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gate-'));
    const file = path.join(dir, 'f');
    const data = Buffer.from(Array.from({ length: 200000 }, (_, i) => (i * 7) & 0xff));
    fs.writeFileSync(file, data);
    const fd = fs.openSync(file, 'r');
    try {
      for (const [len, pos] of [[4096, 1000], [100000, 5000], [10, 199995]] as const) {
        const buf = Buffer.alloc(len);
        const n = await new SyncReadGate().read(fd, buf, 0, len, pos);
        expect(buf.subarray(0, n).equals(data.subarray(pos, pos + len))).toBe(true);
      }
    } finally {
      fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
