/** Zero detection: the hole finder of the raw and qcow2 writers. */
import fc from 'fast-check';
import { forEachNonZeroRun, isAllZero, isZeroRange } from '../../src/io/zero';

test('isZeroRange looks only inside [start, end)', () => {
  const b = Buffer.alloc(10000);
  b[5000] = 1;
  expect(isZeroRange(b, 0, 5000)).toBe(true);
  expect(isZeroRange(b, 5001, 10000)).toBe(true);
  expect(isZeroRange(b, 4999, 5001)).toBe(false);
  expect(isZeroRange(b, 5000, 5000)).toBe(true); // empty
  expect(isAllZero(b)).toBe(false);
  expect(isAllZero(Buffer.alloc(9 * 1024 * 1024))).toBe(true); // longer than the shared zero buffer
});

test('a single non-zero byte anywhere (not only at the ends) is found', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 20000 }), fc.nat(), (len, pos) => {
      const b = Buffer.alloc(len);
      b[pos % len] = 0x80;
      return !isAllZero(b) && isAllZero(b.subarray(0, pos % len));
    }),
  );
});

test('forEachNonZeroRun = the maximal runs of non-zero blocks (a simple model)', () => {
  fc.assert(
    fc.property(fc.array(fc.boolean(), { maxLength: 40 }), fc.integer({ min: 1, max: 700 }), fc.integer({ min: 1, max: 64 }), (blocks, tail, bs) => {
      const len = blocks.length * bs + (tail % bs);
      const b = Buffer.alloc(len);
      const nBlocks = Math.ceil(len / bs);
      const nonZero = Array.from({ length: nBlocks }, (_, i) => blocks[i] ?? true);
      nonZero.forEach((nz, i) => {
        if (nz) b[Math.min(len - 1, i * bs + ((i * 7) % bs))] = 1;
      });
      const expected: Array<[number, number]> = [];
      for (let i = 0; i < nBlocks; i++) {
        const nz = b.subarray(i * bs, Math.min(len, (i + 1) * bs)).some((x) => x !== 0);
        const last = expected[expected.length - 1];
        if (nz && last && last[1] === i * bs) last[1] = Math.min(len, (i + 1) * bs);
        else if (nz) expected.push([i * bs, Math.min(len, (i + 1) * bs)]);
      }
      const got: Array<[number, number]> = [];
      forEachNonZeroRun(b, bs, (s, e) => got.push([s, e]));
      expect(got).toEqual(expected);
    }),
  );
});
