/**
 * HashThread (src/xva/hash-thread.ts): digests computed on the worker thread are the checksum
 * files' digests, for XXH64 and SHA-1; slots are lent and come back; a thread that is gone
 * makes digests fail (callers then hash on the main thread).
 */
import { hashChunk } from '../../src/xva/checksum';
import { HASH_SLOT_BYTES, HashThread } from '../../src/xva/hash-thread';
import { randomBytes } from '../helpers/xva-fixtures';

describe('HashThread', () => {
  let thread: HashThread;
  beforeAll(() => {
    thread = HashThread.start()!;
    expect(thread).toBeDefined();
  });
  afterAll(() => thread.close());

  test.each(['xxh64', 'sha1'] as const)('%s digests equal the main thread\'s, for any length', async (kind) => {
    for (const length of [0, 1, 31, 32, 33, 4096, 1024 * 1024, HASH_SLOT_BYTES]) {
      const slot = thread.takeSlot(length)!;
      const data = randomBytes(length, length + 1);
      data.copy(slot.buf);
      expect(await thread.digest(kind, slot.buf.subarray(0, length))).toBe(await hashChunk(kind, data));
      slot.release();
    }
  });

  test('slots run out, then come back once every holder released them; larger requests get none', () => {
    expect(thread.takeSlot(HASH_SLOT_BYTES + 1)).toBeUndefined();
    const taken = [];
    for (let s = thread.takeSlot(10); s; s = thread.takeSlot(10)) taken.push(s);
    expect(taken.length).toBe(32);
    const hold = taken[0]!.lease.hold();
    taken.forEach((s) => s.release());
    const again = [];
    for (let s = thread.takeSlot(10); s; s = thread.takeSlot(10)) again.push(s);
    expect(again.length).toBe(31); // the held one is still out
    hold();
    expect(thread.takeSlot(10)).toBeDefined();
  });

  test('after the thread is gone, digests fail and no slot is lent', async () => {
    const t = HashThread.start()!;
    const slot = t.takeSlot(16)!;
    await t.close();
    await expect(t.digest('xxh64', slot.buf.subarray(0, 16))).rejects.toThrow(/hash thread exited/);
    expect(t.takeSlot(16)).toBeUndefined();
  });
});
