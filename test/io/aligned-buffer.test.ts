import { allocAligned } from '../../src/io/aligned-buffer';

describe('allocAligned: page-aligned buffers for the kernel to read into', () => {
  test('a buffer has the requested length and starts on a 4 KiB boundary of its memory', () => {
    for (const size of [1, 512, 4096, 65_536, 1 << 20, (1 << 20) + 7]) {
      const buf = allocAligned(size);
      expect(buf.length).toBe(size);
      expect(buf.byteOffset % 4096).toBe(0);
      // WebAssembly memories are allocated page-aligned and sized in 64 KiB pages.
      expect(buf.buffer.byteLength % 65_536).toBe(0);
    }
  });

  test('buffers cut from one slab never overlap', () => {
    const bufs = Array.from({ length: 20 }, () => allocAligned(1 << 20));
    bufs.forEach((b, i) => b.fill(i));
    bufs.forEach((b, i) => {
      expect(b[0]).toBe(i);
      expect(b[b.length - 1]).toBe(i);
    });
  });

  test('a buffer larger than half a slab gets its own memory', () => {
    const big = allocAligned(12 << 20);
    expect(big.length).toBe(12 << 20);
    expect(big.byteOffset).toBe(0);
  });

  test('size 0 is an empty buffer', () => {
    expect(allocAligned(0).length).toBe(0);
  });
});
