/**
 * The NBD server on a real socket (serveXva over a fixture XVA), driven by a raw client that
 * can misbehave: reads in both reply styles, holes, block status, refused writes, several
 * clients at once, clients that vanish mid-request or send garbage, a handshake that never
 * ends, and fuzzed handshakes — after each of which the server still serves everyone else.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { serveXva, type XvaServer } from '../../src/ops/serve';
import { corruptEntries } from '../cli/_cli';
import { makeXvaFile, MiB, type XvaFixture } from '../helpers/xva-fixtures';
import { assemble, extentsOf, RawClient, str, u32 } from './raw-client';

let dir: string;
let fx: XvaFixture & { path: string };
let server: XvaServer;
let socket: string;
const reports: string[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbd-srv-'));
  fx = await makeXvaFile(dir, {
    keepAlives: (_ref, chunk) => (chunk === 3 ? 2 : 0),
    disks: [
      { size: 8 * MiB, fill: [{ offset: 0, length: MiB + 4096 }, { offset: 5 * MiB, length: MiB }] },
      { size: 3 * MiB + MiB / 2, fill: [{ offset: 3 * MiB, length: 4096 }] },
    ],
  });
  socket = path.join(dir, 's.sock');
  server = await serveXva(fx.path, { socketPath: socket, handshakeTimeoutMs: 300, onReport: (m) => reports.push(m) });
});

afterAll(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const disk0 = (): Buffer => fx.disks[0]!.expected;

async function opened(name = '0', opts: { structured?: boolean } = {}): Promise<RawClient> {
  const c = await RawClient.connect(socket);
  await c.open(name, opts);
  return c;
}

/** A client that works: proof the server survived what came before. */
async function stillServes(): Promise<void> {
  const c = await opened('1');
  const { data } = await c.readAt(3 * MiB, 8192);
  expect(data.equals(fx.disks[1]!.expected.subarray(3 * MiB, 3 * MiB + 8192))).toBe(true);
  c.close();
}

describe('reads', () => {
  test('structured replies: data as OFFSET_DATA, holes as OFFSET_HOLE, merged runs', async () => {
    const c = await opened('0');
    const { data, reply } = await c.readAt(MiB - 4096, 3 * MiB);
    expect(data.equals(disk0().subarray(MiB - 4096, 4 * MiB - 4096))).toBe(true);
    // Data goes out in pieces of at most 1 MiB, split at MiB boundaries (the bound on read
    // buffers); adjacent holes are merged across pieces.
    expect(reply.chunks.map((x) => x.type)).toEqual([1, 1, 2]);
    c.close();
  });

  test('simple replies (no structured replies negotiated): every byte, zeros included', async () => {
    const c = await opened('0', { structured: false });
    const { data, reply } = await c.readAt(4 * MiB, 2 * MiB);
    expect(reply.chunks).toEqual([]);
    expect(data.equals(disk0().subarray(4 * MiB, 6 * MiB))).toBe(true);
    c.close();
  });

  test('don\'t-fragment: one data chunk, zeros included', async () => {
    const c = await opened('0');
    const { data, reply } = await c.readAt(4 * MiB, 2 * MiB, 1n, 4);
    expect(reply.chunks.map((x) => x.type)).toEqual([1]);
    expect(data.equals(disk0().subarray(4 * MiB, 6 * MiB))).toBe(true);
    c.close();
  });

  test('the empty export name is disk 0; the last bytes of a short last chunk', async () => {
    const c = await opened('');
    const { data } = await c.readAt(8 * MiB - 100, 100);
    expect(data.equals(disk0().subarray(8 * MiB - 100))).toBe(true);
    c.close();
    const d = await opened('1');
    const tail = await d.readAt(3 * MiB + MiB / 2 - 10, 10);
    expect(tail.data.equals(fx.disks[1]!.expected.subarray(-10))).toBe(true);
    d.close();
  });

  test('requests in flight are all answered, matched by handle', async () => {
    const c = await opened('0');
    const offsets = Array.from({ length: 20 }, (_, k) => (k * 397 * 1024) % (7 * MiB));
    offsets.forEach((o, k) => c.request(0, o, 65536, BigInt(k + 100)));
    const seen = new Map<bigint, Buffer>();
    for (const r of await c.replies(offsets.length, () => 65536)) {
      const o = offsets[Number(r.handle) - 100]!;
      seen.set(r.handle, assemble(r, o, 65536));
    }
    offsets.forEach((o, k) => expect(seen.get(BigInt(k + 100))!.equals(disk0().subarray(o, o + 65536))).toBe(true));
    c.close();
  });
});

describe('block status and refusals', () => {
  test('base:allocation: data where chunks are stored, holes (3) elsewhere', async () => {
    const c = await opened('0');
    c.request(7, 0, 8 * MiB, 9n);
    expect(extentsOf(await c.reply(() => 0))).toEqual([
      { length: 2 * MiB, flags: 0 },
      { length: 3 * MiB, flags: 3 },
      { length: MiB, flags: 0 },
      { length: MiB, flags: 3 },
      { length: MiB, flags: 0 }, // the last chunk is always stored
    ]);
    c.request(7, MiB, 8 * MiB - MiB, 10n, 8); // REQ_ONE
    expect(extentsOf(await c.reply(() => 0))).toEqual([{ length: MiB, flags: 0 }]);
    c.close();
  });

  test('writes get EPERM, their payload is skipped, and the stream stays in step', async () => {
    const c = await opened('0');
    c.request(1, 0, 4096, 5n);
    c.send(Buffer.alloc(4096, 0xaa));
    const w = await c.reply(() => 0);
    expect([w.handle, w.error]).toEqual([5n, 1]);
    expect(w.message).toBe('read-only export');
    for (const type of [4, 6]) {
      c.request(type, 0, 4096, 6n);
      expect((await c.reply(() => 0)).error).toBe(1);
    }
    const { data } = await c.readAt(0, 4096, 7n);
    expect(data.equals(disk0().subarray(0, 4096))).toBe(true);
    c.close();
  });

  test('out-of-range, oversized and unknown requests: EINVAL, connection kept', async () => {
    const c = await opened('0');
    c.request(0, 8 * MiB - 10, 11, 1n);
    expect((await c.reply(() => 0)).error).toBe(22);
    c.request(0, 0, 33 * MiB, 2n);
    expect((await c.reply(() => 0)).error).toBe(22);
    c.request(77, 0, 0, 3n);
    expect((await c.reply(() => 0)).error).toBe(22);
    await expect(c.readAt(0, 10, 4n)).resolves.toMatchObject({ reply: { error: 0 } });
    c.close();
  });

  test('a bad chunk: EIO naming the chunk, reported once on the server', async () => {
    const badFile = path.join(dir, 'bad.xva');
    await corruptEntries(fx.path, ['Ref:11/00000007'], badFile); // the chunk at 5 MiB: two keep-alives came before it
    const badSocket = path.join(dir, 'bad.sock');
    const got: string[] = [];
    const bad = await serveXva(badFile, { socketPath: badSocket, onReport: (m) => got.push(m) });
    try {
      const c = await RawClient.connect(badSocket);
      await c.open('0');
      for (const h of [1n, 2n]) {
        const { reply } = await c.readAt(5 * MiB + 512, 512, h);
        expect(reply.error).toBe(5);
        expect(reply.message).toMatch(/^Ref:11\/00000007: XXH64 mismatch/);
      }
      expect((await c.readAt(0, 512, 3n)).reply.error).toBe(0);
      expect(got).toHaveLength(1);
      c.close();
    } finally {
      await bad.close();
    }
  });
});

describe('clients that misbehave cost only their connection', () => {
  test('several clients at once', async () => {
    const clients = await Promise.all([0, 1, 2, 3, 4, 5].map((k) => opened(String(k % 2))));
    await Promise.all(
      clients.map(async (c, k) => {
        const want = fx.disks[k % 2]!.expected;
        for (let o = 0; o < want.length; o += MiB / 2) {
          const { data } = await c.readAt(o, MiB / 2, BigInt(o + 1));
          expect(data.equals(want.subarray(o, o + MiB / 2))).toBe(true);
        }
      }),
    );
    expect(server.connections()).toBeGreaterThanOrEqual(6);
    clients.forEach((c) => c.close());
  });

  test('a client that disconnects mid-request', async () => {
    for (let k = 0; k < 5; k++) {
      const c = await opened('0');
      for (let h = 0; h < 8; h++) c.request(0, h * MiB, MiB, BigInt(h));
      c.close();
    }
    await stillServes();
  });

  test('NBD_OPT_ABORT: an ACK, then the server closes', async () => {
    const c = await RawClient.connect(socket);
    await c.greeting();
    c.send(u32(3));
    c.sendOption(2);
    expect(await c.optionReply()).toMatchObject({ option: 2, type: 1 });
    await c.closed;
  });

  test('garbage after the handshake: a bad magic closes the connection', async () => {
    const c = await opened('0');
    c.send(Buffer.from('GET / HTTP/1.1\r\nHost: example\r\n\r\n'));
    await c.closed;
    await stillServes();
  });

  test('a write whose payload is too large to skip closes the connection', async () => {
    const c = await opened('0');
    c.request(1, 0, 0xffffffff, 1n);
    await c.closed;
    await stillServes();
  });

  test('a handshake that never finishes is closed after the time limit', async () => {
    const c = await RawClient.connect(socket);
    await c.greeting();
    await c.closed; // 300 ms in this test's server
    expect(reports.some((m) => /did not finish the NBD handshake/.test(m))).toBe(true);
  });

  test('an option too long to be real closes the connection; an unknown client flag too', async () => {
    const c = await RawClient.connect(socket);
    await c.greeting();
    c.send(u32(1));
    c.sendOption(7, Buffer.alloc(0)); // header only: claims no data
    expect((await c.optionReply()).type).toBe(0x80000003); // malformed GO data: NBD_REP_ERR_INVALID
    const h = Buffer.alloc(16);
    h.write('IHAVEOPT', 0, 'latin1');
    h.writeUInt32BE(7, 8);
    h.writeUInt32BE(0x7fffffff, 12);
    c.send(h);
    await c.closed;
    const d = await RawClient.connect(socket);
    await d.greeting();
    d.send(u32(0x10));
    await d.closed;
    await stillServes();
  });

  test('fuzz: arbitrary bytes in the handshake and after it never take the server down', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(fc.oneof(fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)), fc.constantFrom(str('0'), u32(3), Buffer.from('IHAVEOPT'), Buffer.from([0x25, 0x60, 0x95, 0x13]))), { maxLength: 8 }),
        async (afterHandshake, pieces) => {
          const c = afterHandshake ? await opened('1') : await RawClient.connect(socket);
          if (!afterHandshake) await c.greeting();
          for (const p of pieces) c.send(p);
          await new Promise((r) => setTimeout(r, 5));
          c.close();
        },
      ),
      { numRuns: 60 },
    );
    await stillServes();
  });
});
