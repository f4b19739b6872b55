/** ChunkBufferPool: a buffer is reused only once its taker and every holder let go. */
import { ChunkBufferPool, idlePoolBytes, MAX_IDLE_BYTES } from '../../src/io/buffer-pool';

test('reused after release; holds delay the reuse; releases are idempotent', () => {
  const pool = new ChunkBufferPool(4096);
  const a = pool.take();
  expect(a.buf.length).toBe(4096);
  expect(a.buf.byteOffset % 4096).toBe(0);
  const h1 = a.lease.hold();
  const h2 = a.lease.hold();
  a.release();
  a.release(); // once only
  expect(pool.take().buf).not.toBe(a.buf);
  h1();
  h1();
  expect(pool.size).toBe(2);
  h2();
  expect(pool.take().buf).toBe(a.buf);
  expect(pool.size).toBe(2);
});

test('hold() after the buffer went back to the pool is a bug, and says so', () => {
  const pool = new ChunkBufferPool(1024);
  const a = pool.take();
  a.release();
  expect(() => a.lease.hold()).toThrow(/already returned/);
});

test('a buffer one pool gave back is what the next pool of that size takes', () => {
  // One pool per conversion: the next conversion in the same process (a batch, a library
  // caller) reuses the memory instead of waiting for the garbage collector to free it.
  const first = new ChunkBufferPool(12288);
  const a = first.take();
  const held = a.lease.hold();
  a.release();
  const second = new ChunkBufferPool(12288);
  expect(second.take().buf).not.toBe(a.buf); // still held by a writer
  held();
  expect(second.take().buf).toBe(a.buf);
  expect(second.size).toBe(1);
});

test(`at most ${MAX_IDLE_BYTES / 2 ** 20} MiB of buffers stay idle; the rest are left to the collector`, () => {
  const size = 8 * 2 ** 20;
  const room = MAX_IDLE_BYTES - idlePoolBytes(); // the earlier tests left small buffers idle
  const pool = new ChunkBufferPool(size);
  const taken = Array.from({ length: MAX_IDLE_BYTES / size + 2 }, () => pool.take());
  for (const t of taken) t.release();
  expect(idlePoolBytes()).toBeLessThanOrEqual(MAX_IDLE_BYTES);
  const again = new ChunkBufferPool(size);
  const reused = new Set(taken.map((t) => t.buf));
  const next = Array.from({ length: taken.length }, () => again.take().buf);
  const kept = Math.floor(room / size);
  expect(next.filter((b) => reused.has(b)).length).toBe(kept);
  expect(again.size).toBe(taken.length - kept);
});
