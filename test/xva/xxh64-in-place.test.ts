/**
 * The in-place XXH64 (a WebAssembly function over our own buffer memories, compiled from
 * src/xva/xxh64.wat) against hash-wasm and the specification's reference values, for every tail
 * length and alignment; buffers from elsewhere are declined.
 */
import { createHash } from 'node:crypto';
import { createXXHash64 } from 'hash-wasm';
import fc from 'fast-check';
import { allocAligned, allocSharedMemory } from '../../src/io/aligned-buffer';
import { createChunkHasher } from '../../src/xva/checksum';
import { xxh64InPlace, xxh64ModuleBytes } from '../../src/xva/xxh64-in-place';

async function reference(data: Uint8Array): Promise<bigint> {
  const h = await createXXHash64(0, 0);
  h.update(data);
  return BigInt(`0x${h.digest('hex')}`);
}

function aligned(bytes: Uint8Array, misalign = 0): Buffer {
  const b = allocAligned(bytes.length + misalign + 1).subarray(misalign, misalign + bytes.length);
  b.set(bytes);
  return b;
}

test('the module compiled from xxh64.wat is byte for byte the one assembled by hand before it (issue #20)', () => {
  // sha256 of the bytes the hand-written assembler in xxh64-in-place.ts produced until the
  // module became WebAssembly text. A deliberate change to xxh64.wat changes these: then the
  // other tests here are what says it still hashes right.
  const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
  expect(sha256(xxh64ModuleBytes(false))).toBe('b2ca8b678b807ca5988660dda41a449e3189544fc535dc915aaad95d8dec6c73');
  expect(sha256(xxh64ModuleBytes(true))).toBe('1748470129a865924cb8e0959c664286ee372fc04d7c61cc20fb9fabe78459fc');
});

test('reference values: "" and "abc"', () => {
  expect(xxh64InPlace(aligned(Buffer.alloc(0)))).toBe(0xef46db3751d8e999n);
  expect(xxh64InPlace(aligned(Buffer.from('abc')))).toBe(0x44bc2cf5ad770999n);
});

test('every length 0..300 at every alignment 0..7 equals hash-wasm', async () => {
  const src = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff));
  for (let len = 0; len <= 300; len++) {
    for (let mis = 0; mis < 8; mis++) {
      const data = aligned(src.subarray(0, len), mis);
      expect(xxh64InPlace(data)).toBe(await reference(data));
    }
  }
});

test('random data and sizes up to 1 MiB + 5 (a chunk, a short last chunk)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 5000 }), fc.integer({ min: 0, max: 63 }), async (bytes, mis) => {
      const data = aligned(bytes, mis);
      expect(xxh64InPlace(data)).toBe(await reference(data));
    }),
    { numRuns: 200 },
  );
  const big = aligned(Buffer.from(Array.from({ length: 1024 * 1024 + 5 }, (_, i) => (i ^ (i >>> 9)) & 0xff)));
  expect(xxh64InPlace(big)).toBe(await reference(big));
});

test('buffers in a shared memory (a decoder thread\'s ring) are hashed in place too', async () => {
  const memory = allocSharedMemory(1 << 20)!;
  expect(memory.buffer).toBeInstanceOf(SharedArrayBuffer);
  const src = Buffer.from(Array.from({ length: 70001 }, (_, i) => (i * 97 + 3) & 0xff));
  for (const [offset, length] of [[0, 0], [0, 3], [4096, 70001], [12345, 70001], [(1 << 20) - 33, 33]]) {
    const view = Buffer.from(memory.buffer, offset, length);
    view.set(src.subarray(0, length));
    expect(xxh64InPlace(view)).toBe(await reference(view));
  }
});

test('a buffer that is not in one of our memories is declined', () => {
  expect(xxh64InPlace(Buffer.from('abc'))).toBeUndefined();
});

test('the chunk hasher gives the same digest in place, streamed, and in several pieces', async () => {
  const bytes = Buffer.from(Array.from({ length: 70000 }, (_, i) => (i * 31) & 0xff));
  const h = await createChunkHasher('xxh64');
  h.update(aligned(bytes));
  const inPlace = h.digestHex();
  h.update(Buffer.from(bytes));
  const streamed = h.digestHex();
  h.update(aligned(bytes.subarray(0, 1000)));
  h.update(bytes.subarray(1000));
  const pieces = h.digestHex();
  expect(inPlace).toMatch(/^[0-9A-F]{16}$/);
  expect(streamed).toBe(inPlace);
  expect(pieces).toBe(inPlace);
});
