import { execFileSync } from 'node:child_process';
import { xxhash64 } from 'hash-wasm';
import { checksumsEqual, createChunkHasher, hashChunk, initChecksums } from '../../src/xva/checksum';
import { checksumFileSuffix, CHECKSUM_HEX_LENGTH, kindFromSuffix } from '../../src/xva/format';
import { randomBytes } from '../helpers/xva-fixtures';
import { itWithTools } from '../helpers/system-tools';
import { allocAligned } from '../../src/io/aligned-buffer';
import fc from 'fast-check';

const MiB = 1024 * 1024;

/**
 * An independent XXH64 (seed 0) written from the algorithm description with BigInt, used as an
 * oracle for hash-wasm and for our formatting. Slow; use on small inputs only.
 */
function referenceXxh64(data: Uint8Array): string {
  const M = (1n << 64n) - 1n;
  const P1 = 11400714785074694791n;
  const P2 = 14029467366897019727n;
  const P3 = 1609587929392839161n;
  const P4 = 9650029242287828579n;
  const P5 = 2870177450012600261n;
  const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & M;
  const u64 = (i: number): bigint => Buffer.from(data.buffer, data.byteOffset, data.byteLength).readBigUInt64LE(i);
  const u32 = (i: number): bigint => BigInt(Buffer.from(data.buffer, data.byteOffset, data.byteLength).readUInt32LE(i));
  const round = (acc: bigint, input: bigint): bigint => (rotl((acc + input * P2) & M, 31n) * P1) & M;
  const merge = (acc: bigint, v: bigint): bigint => (((acc ^ round(0n, v)) * P1 + P4) & M);
  const len = data.length;
  let i = 0;
  let h: bigint;
  if (len >= 32) {
    let v1 = (P1 + P2) & M;
    let v2 = P2;
    let v3 = 0n;
    let v4 = (M + 1n - P1) & M;
    for (; i + 32 <= len; i += 32) {
      v1 = round(v1, u64(i));
      v2 = round(v2, u64(i + 8));
      v3 = round(v3, u64(i + 16));
      v4 = round(v4, u64(i + 24));
    }
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & M;
    h = merge(merge(merge(merge(h, v1), v2), v3), v4);
  } else {
    h = P5;
  }
  h = (h + BigInt(len)) & M;
  for (; i + 8 <= len; i += 8) h = (rotl(h ^ round(0n, u64(i)), 27n) * P1 + P4) & M;
  if (i + 4 <= len) {
    h = (rotl(h ^ ((u32(i) * P1) & M), 23n) * P2 + P3) & M;
    i += 4;
  }
  for (; i < len; i++) h = (rotl(h ^ ((BigInt(data[i]!) * P5) & M), 11n) * P1) & M;
  h ^= h >> 33n;
  h = (h * P2) & M;
  h ^= h >> 29n;
  h = (h * P3) & M;
  h ^= h >> 32n;
  return h.toString(16).padStart(16, '0').toUpperCase();
}

describe('test vectors of docs/xva-format.md §5.4', () => {
  beforeAll(() => initChecksums());

  test('XXH64("") = EF46DB3751D8E999', async () => {
    expect(await hashChunk('xxh64', Buffer.alloc(0))).toBe('EF46DB3751D8E999');
    expect(referenceXxh64(Buffer.alloc(0))).toBe('EF46DB3751D8E999');
  });

  test('XXH64(1 MiB zeros) = 87D2A1B6E1163EF1', async () => {
    expect(await hashChunk('xxh64', Buffer.alloc(MiB))).toBe('87D2A1B6E1163EF1');
  });

  test('SHA-1(1 MiB zeros) = 3b71f43f…', async () => {
    expect(await hashChunk('sha1', Buffer.alloc(MiB))).toBe('3b71f43ff30f4b15b5cd85dd9e95ebc7e84eb5a3');
  });

  test('SHA-1("") = da39a3ee…', async () => {
    expect(await hashChunk('sha1', Buffer.alloc(0))).toBe('da39a3ee5e6b4b0d3255bfef95601890afd80709');
  });
});

describe('on-disk format', () => {
  test('XXH64: 16 uppercase hex, equal to an independent implementation and to hash-wasm', async () => {
    const h = await createChunkHasher('xxh64');
    for (const len of [1, 3, 4, 7, 8, 31, 32, 33, 63, 64, 100, 1000, 4099]) {
      const data = randomBytes(len, len);
      h.update(data);
      const hex = h.digestHex();
      expect(hex).toMatch(/^[0-9A-F]{16}$/);
      expect(hex).toBe(referenceXxh64(data));
      expect(hex).toBe((await xxhash64(data)).toUpperCase());
    }
  });

  itWithTools('python3')('SHA-1: 40 lowercase hex, equal to Python hashlib', async () => {
    const data = randomBytes(MiB + 123, 7);
    const ours = await hashChunk('sha1', data);
    expect(ours).toMatch(/^[0-9a-f]{40}$/);
    const py = execFileSync('python3', ['-c', 'import sys,hashlib;print(hashlib.sha1(sys.stdin.buffer.read()).hexdigest(),end="")'], { input: data }).toString();
    expect(ours).toBe(py);
  });

  test('lengths match CHECKSUM_HEX_LENGTH', async () => {
    expect((await hashChunk('xxh64', Buffer.from('x'))).length).toBe(CHECKSUM_HEX_LENGTH.xxh64);
    expect((await hashChunk('sha1', Buffer.from('x'))).length).toBe(CHECKSUM_HEX_LENGTH.sha1);
  });
});

describe('ChunkHasher reuse', () => {
  test.each(['xxh64', 'sha1'] as const)('%s: digestHex resets; split updates equal one update', async (kind) => {
    const h = await createChunkHasher(kind);
    const a = randomBytes(MiB, 1);
    const b = randomBytes(5000, 2);
    h.update(a);
    const da = h.digestHex();
    h.update(b);
    const db = h.digestHex();
    expect(db).toBe(await hashChunk(kind, b));
    h.update(a.subarray(0, 1000));
    h.update(a.subarray(1000));
    expect(h.digestHex()).toBe(da);
    h.update(b);
    h.reset();
    expect(h.digestHex()).toBe(await hashChunk(kind, Buffer.alloc(0)));
  });
});

describe('XXH64 in place and gathered', () => {
  test('a chunk in one of our buffers is hashed where it lies; split or foreign input is gathered first', async () => {
    const data = randomBytes(3 * MiB + 17, 9); // bigger than the hasher's first scratch: it grows
    const expected = (await xxhash64(data)).toUpperCase();
    const ours = allocAligned(data.length);
    ours.set(data);
    const h = await createChunkHasher('xxh64');
    h.update(ours); // in place, no copy
    expect(h.digestHex()).toBe(expected);
    h.update(data); // an ordinary buffer: gathered
    expect(h.digestHex()).toBe(expected);
    h.update(ours.subarray(0, 5)); // our memory, then an ordinary buffer, then ours again
    h.update(data.subarray(5, MiB));
    h.update(ours.subarray(MiB));
    expect(h.digestHex()).toBe(expected);
  });

  test('any split of any input, from either kind of buffer, gives the one-shot digest', async () => {
    const h = await createChunkHasher('xxh64');
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300_000 }), fc.array(fc.nat(), { maxLength: 6 }), fc.array(fc.boolean(), { maxLength: 7 }), async (bytes, cuts, inOurs) => {
        const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % (bytes.length + 1))))].sort((a, b) => a - b);
        const bounds = [0, ...points, bytes.length];
        for (let i = 0; i + 1 < bounds.length; i++) {
          const piece = bytes.subarray(bounds[i], bounds[i + 1]);
          if (inOurs[i]) {
            const copy = allocAligned(piece.length);
            copy.set(piece);
            h.update(copy);
          } else {
            h.update(Buffer.from(piece));
          }
        }
        expect(h.digestHex()).toBe((await xxhash64(bytes)).toUpperCase());
      }),
      { numRuns: 60 },
    );
  });
});

describe('names and comparison', () => {
  test('suffixes', () => {
    expect(checksumFileSuffix('xxh64')).toBe('.xxhash');
    expect(checksumFileSuffix('sha1')).toBe('.checksum');
    expect(kindFromSuffix('.xxhash')).toBe('xxh64');
    expect(kindFromSuffix('xxhash')).toBe('xxh64');
    expect(kindFromSuffix('.checksum')).toBe('sha1');
    expect(kindFromSuffix('Ref:3/00000000.checksum')).toBe('sha1');
    expect(kindFromSuffix('Ref:3/00000000.xxhash')).toBe('xxh64');
    expect(kindFromSuffix('Ref:3/00000000')).toBeUndefined();
    expect(kindFromSuffix('.md5')).toBeUndefined();
    expect(kindFromSuffix('fooxxhash')).toBeUndefined();
  });

  test('checksumsEqual is case-insensitive and trims ASCII whitespace only', () => {
    expect(checksumsEqual('EF46DB3751D8E999', 'EF46DB3751D8E999')).toBe(true);
    expect(checksumsEqual('ef46db3751d8e999\n', 'EF46DB3751D8E999')).toBe(true);
    expect(checksumsEqual(Buffer.from(' \tEF46DB3751D8E999\r\n'), 'EF46DB3751D8E999')).toBe(true);
    expect(checksumsEqual('EF46DB3751D8E998', 'EF46DB3751D8E999')).toBe(false);
    expect(checksumsEqual('EF46DB3751D8E999\u00a0', 'EF46DB3751D8E999')).toBe(false);
    expect(checksumsEqual('', 'EF46DB3751D8E999')).toBe(false);
  });
});
