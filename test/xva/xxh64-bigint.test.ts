/**
 * The plain-JavaScript XXH64 (the fallback without WebAssembly) against hash-wasm and the
 * specification's reference values, for every tail length and alignment and other seeds.
 */
import { createXXHash64 } from 'hash-wasm';
import fc from 'fast-check';
import { xxh64BigInt } from '../../src/xva/xxh64-bigint';

async function reference(data: Uint8Array, seed = 0n): Promise<bigint> {
  const h = await createXXHash64(Number(seed & 0xffffffffn), Number(seed >> 32n));
  h.update(data);
  return BigInt(`0x${h.digest('hex')}`);
}

test('reference values: "", "abc", and the XVA test vector of 1 MiB of zeros (docs/xva-format.md §5)', () => {
  expect(xxh64BigInt(Buffer.alloc(0))).toBe(0xef46db3751d8e999n);
  expect(xxh64BigInt(Buffer.from('abc'))).toBe(0x44bc2cf5ad770999n);
  expect(xxh64BigInt(Buffer.alloc(1024 * 1024))).toBe(0x87d2a1b6e1163ef1n);
});

test('every length 0..300 at every alignment 0..7 equals hash-wasm', async () => {
  const src = Buffer.from(Array.from({ length: 308 }, (_, i) => (i * 131 + 7) & 0xff));
  for (let len = 0; len <= 300; len++) {
    for (let mis = 0; mis < 8; mis++) {
      const data = src.subarray(mis, mis + len);
      expect(xxh64BigInt(data)).toBe(await reference(data));
    }
  }
});

test('random data and seeds equal hash-wasm', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), async (bytes, seed) => {
      expect(xxh64BigInt(bytes, seed)).toBe(await reference(bytes, seed));
    }),
    { numRuns: 200 },
  );
});
