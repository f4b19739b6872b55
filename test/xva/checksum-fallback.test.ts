/**
 * Where no WebAssembly memory of our own can be had (allocAligned then hands out ordinary
 * buffers), XXH64 falls back to hash-wasm: same digests, and hash-wasm is only loaded then.
 */
import { createXXHash64, xxhash64 } from 'hash-wasm';
import { randomBytes } from '../helpers/xva-fixtures';

jest.mock('hash-wasm', () => {
  const actual = jest.requireActual('hash-wasm');
  return { ...actual, createXXHash64: jest.fn(actual.createXXHash64) };
});

jest.mock('../../src/io/aligned-buffer', () => {
  const actual = jest.requireActual('../../src/io/aligned-buffer');
  return { ...actual, allocAligned: (size: number) => Buffer.alloc(size) };
});

// Imported after the mock is in place.
import { createChunkHasher, hashChunk } from '../../src/xva/checksum';

test('without memories of our own, XXH64 is hash-wasm: same digests, split or whole', async () => {
  const data = randomBytes(2 * 1024 * 1024 + 5, 3);
  const expected = (await xxhash64(data)).toUpperCase();
  const h = await createChunkHasher('xxh64');
  h.update(data);
  expect(h.digestHex()).toBe(expected);
  h.update(data.subarray(0, 1000));
  h.update(data.subarray(1000));
  expect(h.digestHex()).toBe(expected);
  h.update(data);
  h.reset();
  expect(h.digestHex()).toBe('EF46DB3751D8E999');
  expect(await hashChunk('xxh64', Buffer.alloc(1024 * 1024))).toBe('87D2A1B6E1163EF1');
  expect(createXXHash64).toHaveBeenCalled();
});
