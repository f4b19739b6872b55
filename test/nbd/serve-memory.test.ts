/**
 * The bound on the server's read buffers (docs/design/nbd-server.md, "Limits"): whatever the
 * size and number of a client's reads, whether it reads its replies, reads them slowly or hangs
 * up in the middle, one connection holds at most maxInflightBytes of read buffers, and every
 * buffer is released once its connection has ended. Asserted on the server's own accounting
 * (XvaServer.readBuffers), not on RSS.
 *
 * Before the bound, every 32 MiB read took a 32 MiB buffer of its own (a WebAssembly memory
 * that the garbage collector does not count, so it was seldom collected): RSS grew by ~1.3 GB
 * per five `nbdcopy --request-size=32M` runs of a 256 MiB disk and was never given back.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { serveXva, type XvaServer } from '../../src/ops/serve';
import { DEFAULT_MAX_INFLIGHT_BYTES } from '../../src/nbd/server';
import { makeXvaFile, MiB, type XvaFixture } from '../helpers/xva-fixtures';
import { assemble, RawClient } from './raw-client';

const SIZE = 40 * MiB;
const BIG = 32 * MiB;

let dir: string;
let fx: XvaFixture & { path: string };
let server: XvaServer;
let socket: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbd-mem-'));
  // Data everywhere but one 3 MiB hole, so reads are mostly data.
  fx = await makeXvaFile(dir, { disks: [{ size: SIZE, fill: [{ offset: 0, length: 20 * MiB }, { offset: 23 * MiB, length: SIZE - 23 * MiB }] }] });
  socket = path.join(dir, 's.sock');
  server = await serveXva(fx.path, { socketPath: socket });
}, 60_000);

afterAll(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const disk = (): Buffer => fx.disks[0]!.expected;

async function opened(structured = true): Promise<RawClient> {
  const c = await RawClient.connect(socket);
  await c.open('0', { structured });
  return c;
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Offsets of `n` reads of BIG bytes, unaligned, spread over the disk. */
const offsets = (n: number, seed: number): number[] => Array.from({ length: n }, (_, k) => ((k * 7 + seed) * 331 * 1024) % (SIZE - BIG));

test('many concurrent 32 MiB reads on several connections, every reply style: buffers stay within the bound', async () => {
  const styles: Array<{ structured: boolean; flags: number }> = [
    { structured: true, flags: 0 },
    { structured: true, flags: 0 },
    { structured: true, flags: 4 }, // DF: one data chunk, written piece by piece
    { structured: false, flags: 0 }, // simple replies, likewise
  ];
  await Promise.all(
    styles.map(async ({ structured, flags }, s) => {
      const c = await opened(structured);
      const os_ = offsets(3, s);
      os_.forEach((o, k) => c.request(0, o, BIG, BigInt(k + 1), flags));
      // A 4 KiB read in the middle of them: its reply may come between the pieces of others'.
      c.request(0, 20 * MiB - 100, 4096, 99n);
      const replies = await c.replies(os_.length + 1, (h) => (h === 99n ? 4096 : BIG));
      for (const r of replies) {
        expect(r.error).toBe(0);
        const o = r.handle === 99n ? 20 * MiB - 100 : os_[Number(r.handle) - 1]!;
        const n = r.handle === 99n ? 4096 : BIG;
        expect(assemble(r, o, n).equals(disk().subarray(o, o + n))).toBe(true);
      }
      c.close();
    }),
  );
  const b = server.readBuffers();
  expect(b.connectionPeak).toBeGreaterThan(0);
  expect(b.connectionPeak).toBeLessThanOrEqual(DEFAULT_MAX_INFLIGHT_BYTES);
  expect(b.peak).toBeLessThanOrEqual(styles.length * DEFAULT_MAX_INFLIGHT_BYTES);
  await until('buffers released', () => server.readBuffers().held === 0);
}, 60_000);

test('a client that does not read its replies holds no more than the bound; hanging up releases it all', async () => {
  const c = await opened();
  for (let k = 0; k < 20; k++) c.request(0, (k * MiB) % (SIZE - BIG), BIG, BigInt(k + 1));
  // The server fills the socket, then waits for the client; give it time to pile up what it can.
  await new Promise((r) => setTimeout(r, 500));
  expect(server.readBuffers().held).toBeGreaterThan(0);
  expect(server.readBuffers().held).toBeLessThanOrEqual(DEFAULT_MAX_INFLIGHT_BYTES);
  c.close();
  await until('buffers released', () => server.readBuffers().held === 0);
  expect(server.readBuffers().connectionPeak).toBeLessThanOrEqual(DEFAULT_MAX_INFLIGHT_BYTES);
}, 30_000);

test('clients that send 20 large reads and hang up at once leave nothing held', async () => {
  for (let round = 0; round < 3; round++) {
    const clients = await Promise.all([true, true, false].map((s) => opened(s)));
    clients.forEach((c, n) => {
      for (let k = 0; k < 20; k++) c.request(0, offsets(20, n)[k]!, BIG, BigInt(k + 1), n === 1 ? 4 : 0);
    });
    await new Promise((r) => setTimeout(r, 20 * round));
    clients.forEach((c) => c.close());
    await until('buffers released', () => server.readBuffers().held === 0);
  }
  await until('connections gone', () => server.connections() === 0);
  const b = server.readBuffers();
  expect(b.connectionPeak).toBeLessThanOrEqual(DEFAULT_MAX_INFLIGHT_BYTES);
  // Still serves, with every reply style.
  for (const structured of [true, false]) {
    const c = await opened(structured);
    const { data } = await c.readAt(MiB - 10, 3 * MiB);
    expect(data.equals(disk().subarray(MiB - 10, 4 * MiB - 10))).toBe(true);
    c.close();
  }
}, 60_000);
