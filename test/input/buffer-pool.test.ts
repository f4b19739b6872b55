/** ChunkBufferPool: a buffer is reused only once its taker and every holder let go. */
import { ChunkBufferPool } from '../../src/input/buffer-pool';

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
