/**
 * WriteQueue: contiguous pieces become one vectored write, several writes are in flight, a
 * lent buffer is held until its write completed, an unlent one is copied, and a failure is
 * reported by the next call.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChunkBufferPool } from '../../src/io/buffer-pool';
import { BATCH_BYTES, MAX_IN_FLIGHT, WriteQueue } from '../../src/image/write-queue';
import type { BufferLease } from '../../src/io/disk';
import type { RandomAccessTarget } from '../../src/output/target';
import { FileTarget } from '../../src/output/targets';

const MiB = 1024 * 1024;

/** A target that records vectored writes and completes them when told to. */
class ManualTarget implements RandomAccessTarget {
  position = 0;
  readonly image = Buffer.alloc(64 * MiB);
  readonly calls: Array<{ at: number; sizes: number[] }> = [];
  private pending: Array<() => void> = [];
  failNext: Error | undefined;

  async write(data: Uint8Array): Promise<void> {
    const at = this.position;
    this.position += data.length;
    await this.pwrite(data, at);
  }
  async pwrite(data: Uint8Array, at: number): Promise<void> {
    await this.pwritev([data], at);
  }
  async writev(chunks: Uint8Array[]): Promise<void> {
    const at = this.position;
    this.position += chunks.reduce((n, c) => n + c.length, 0);
    await this.pwritev(chunks, at);
  }
  pwritev(chunks: Uint8Array[], at: number): Promise<void> {
    this.calls.push({ at, sizes: chunks.map((c) => c.length) });
    const fail = this.failNext;
    this.failNext = undefined;
    return new Promise((resolve, reject) => {
      this.pending.push(() => {
        // The bytes are read when the write "happens", not when it was queued.
        let p = at;
        for (const c of chunks) {
          this.image.set(c, p);
          p += c.length;
        }
        if (fail) reject(fail);
        else resolve();
      });
    });
  }
  async truncate(): Promise<void> {}
  get inFlight(): number {
    return this.pending.length;
  }
  completeAll(): void {
    const p = this.pending;
    this.pending = [];
    for (const f of p) f();
  }
}

/** A lease that counts holds. */
function countingLease(): BufferLease & { held: number } {
  const l = {
    held: 0,
    hold: () => {
      l.held++;
      let done = false;
      return () => {
        if (!done) l.held--;
        done = true;
      };
    },
  };
  return l;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('contiguous pieces go out as one vectored write; a gap starts a new one', async () => {
  const t = new ManualTarget();
  const q = new WriteQueue(t);
  const lease = countingLease();
  const a = Buffer.alloc(MiB, 1);
  await q.add(0, a, lease);
  await q.add(MiB, a, lease);
  await q.add(3 * MiB, a, lease); // gap: the first batch is sent
  expect(t.calls).toEqual([{ at: 0, sizes: [MiB, MiB] }]);
  const flushed = q.flush();
  await tick();
  t.completeAll();
  await flushed;
  expect(t.calls[1]).toEqual({ at: 3 * MiB, sizes: [MiB] });
  expect(lease.held).toBe(0);
});

test('a batch is sent when it reaches BATCH_BYTES', async () => {
  const t = new ManualTarget();
  const q = new WriteQueue(t);
  const piece = Buffer.alloc(BATCH_BYTES / 4, 2);
  for (let i = 0; i < 5; i++) await q.add(i * piece.length, piece, countingLease());
  expect(t.calls).toEqual([{ at: 0, sizes: [piece.length, piece.length, piece.length, piece.length] }]);
  const f = q.flush();
  await tick();
  t.completeAll();
  await f;
});

test('a lent buffer is held until its write completed, and written from the caller memory', async () => {
  const t = new ManualTarget();
  const q = new WriteQueue(t);
  const pool = new ChunkBufferPool(MiB);
  const p = pool.take();
  p.buf.fill(7);
  await q.add(0, p.buf, p.lease);
  p.release(); // the reader is done with it; the queue still holds it
  const again = pool.take();
  expect(again.buf).not.toBe(p.buf); // not reused yet
  const f = q.flush();
  await tick();
  t.completeAll();
  await f;
  expect(t.image.subarray(0, MiB).every((b) => b === 7)).toBe(true);
  expect(pool.take().buf).toBe(p.buf); // back in the pool after the write
});

test('an unlent buffer is copied: the caller may overwrite it once add() resolved', async () => {
  const t = new ManualTarget();
  const q = new WriteQueue(t);
  const data = Buffer.alloc(MiB, 3);
  await q.add(0, data);
  data.fill(9); // reused by the caller before the write happened
  const f = q.flush();
  await tick();
  t.completeAll();
  await f;
  expect(t.image.subarray(0, MiB).every((b) => b === 3)).toBe(true);
});

test(`at most MAX_IN_FLIGHT (${MAX_IN_FLIGHT}) writes at once; add() waits for a slot`, async () => {
  const t = new ManualTarget();
  const q = new WriteQueue(t);
  let added = 0;
  const adding = (async () => {
    for (let i = 0; i <= MAX_IN_FLIGHT + 1; i++) {
      await q.add(i * 2 * MiB, Buffer.alloc(MiB, 1), countingLease()); // never contiguous
      added++;
    }
  })();
  await tick();
  expect(t.inFlight).toBe(MAX_IN_FLIGHT);
  expect(added).toBe(MAX_IN_FLIGHT + 1); // the last add waits to send the one before
  t.completeAll();
  await adding;
  const f = q.flush();
  await tick();
  t.completeAll();
  await tick();
  t.completeAll();
  await f;
  expect(t.calls).toHaveLength(MAX_IN_FLIGHT + 2);
});

test("appends keep the queue's order and advance the target's position", async () => {
  const t = new ManualTarget();
  t.position = 65536;
  const q = new WriteQueue(t);
  await q.add('append', Buffer.alloc(100, 1));
  await q.add('append', Buffer.alloc(200, 2));
  const f = q.flush();
  await tick();
  t.completeAll();
  await f;
  expect(t.calls).toEqual([{ at: 65536, sizes: [100, 200] }]);
  expect(t.position).toBe(65536 + 300);
});

test('a failed write is reported by the next add() or by flush(), and leases are released', async () => {
  const t = new ManualTarget();
  const q = new WriteQueue(t);
  const lease = countingLease();
  t.failNext = new Error('EIO: injected');
  await q.add(0, Buffer.alloc(MiB), lease);
  await q.add(4 * MiB, Buffer.alloc(MiB), lease); // sends the first batch
  await tick();
  t.completeAll();
  await tick();
  await expect(q.add(8 * MiB, Buffer.alloc(MiB), lease)).rejects.toThrow(/injected/);
  await expect(q.flush()).rejects.toThrow(/injected/);
  expect(lease.held).toBe(0);
});

test('FileTarget.pwritev/writev put the pieces back to back in a real file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wq-'));
  const file = path.join(dir, 'out.bin');
  const fd = fs.openSync(file, 'w+');
  try {
    const t = new FileTarget(fd, file);
    await t.write(Buffer.from('head'));
    await Promise.all([t.writev([Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cd')]), t.writev([Buffer.from('ef')])]);
    await t.pwritev([Buffer.from('XY'), Buffer.from('Z')], 20);
    expect(t.position).toBe(10);
    expect(fs.readFileSync(file).toString('latin1')).toBe(`headabcdef${'\0'.repeat(10)}XYZ`);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
