/**
 * A runtime without WebAssembly (`node --jitless`, or an embedder that leaves it out): the
 * modules import without throwing, aligned buffers are ordinary ones, and XXH64 falls back to
 * plain JavaScript (neither our module nor hash-wasm can run): same digests.
 * (test/cli/no-webassembly.test.ts runs the built CLI under `--jitless`.)
 */
import { createXXHash64 } from 'hash-wasm';
import { randomBytes } from '../helpers/xva-fixtures';

type Checksum = typeof import('../../src/xva/checksum');
type AlignedBuffer = typeof import('../../src/io/aligned-buffer');

/** Fresh copies of the modules (hash-wasm's included), loaded as the global is now. */
function loadModules(): { checksum: Checksum; aligned: AlignedBuffer } {
  let loaded: { checksum: Checksum; aligned: AlignedBuffer } | undefined;
  jest.isolateModules(() => {
    /* eslint-disable @typescript-eslint/no-require-imports */
    loaded = { checksum: require('../../src/xva/checksum') as Checksum, aligned: require('../../src/io/aligned-buffer') as AlignedBuffer };
  });
  return loaded!;
}

test('without WebAssembly: imports work, buffers are ordinary, XXH64 digests are the same', async () => {
  const data = randomBytes(2 * 1024 * 1024 + 5, 7);
  const wasm = await createXXHash64(0, 0); // the reference, while WebAssembly is there
  wasm.update(data);
  const expected = wasm.digest('hex').toUpperCase();

  const saved = Object.getOwnPropertyDescriptor(globalThis, 'WebAssembly')!;
  Object.defineProperty(globalThis, 'WebAssembly', { value: undefined, configurable: true, writable: true });
  try {
    const { checksum, aligned } = loadModules(); // importing used to throw here
    const buf = aligned.allocAligned(1 << 20);
    expect(buf.length).toBe(1 << 20);
    expect(aligned.wasmMemoryOf(buf)).toBeUndefined();
    expect(aligned.allocSharedMemory(1 << 20)).toBeUndefined();

    const h = await checksum.createChunkHasher('xxh64');
    h.update(data);
    expect(h.digestHex()).toBe(expected);
    // In pieces: gathered into a scratch buffer that grows past its first 64 KiB.
    h.update(data.subarray(0, 1000));
    h.update(data.subarray(1000, 300_000));
    h.update(data.subarray(300_000));
    expect(h.digestHex()).toBe(expected);
    h.update(data);
    h.reset();
    expect(h.digestHex()).toBe('EF46DB3751D8E999');
    expect(await checksum.hashChunk('xxh64', Buffer.alloc(1024 * 1024))).toBe('87D2A1B6E1163EF1');
    expect(await checksum.hashChunk('sha1', Buffer.from('abc'))).toBe('a9993e364706816aba3e25717850c26c9cd0d89d');
  } finally {
    Object.defineProperty(globalThis, 'WebAssembly', saved);
  }
});
