/**
 * verifyXva: a full pass with no writers; every bad chunk is listed with its disk offset,
 * structure problems end the pass; exit codes 0 / 3 / 2.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openTarHeaderWalker, type WalkedEntry } from '../../src/tar/header-walker';
import { verifyXva } from '../../src/ops/verify';
import { independentXva, pseudoRandom } from '../helpers/independent';
import { makeXvaFile, MiB, type MakeXvaOptions } from '../helpers/xva-fixtures';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verify-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
const TWO_DISKS: MakeXvaOptions = {
  disks: [
    { size: 4 * MiB, fill: [{ offset: 0, length: 4 * MiB }] },
    { size: 2 * MiB, fill: [{ offset: 0, length: 2 * MiB }] },
  ],
};

async function entriesOf(file: string): Promise<WalkedEntry[]> {
  const w = await openTarHeaderWalker(file);
  const out: WalkedEntry[] = [];
  for await (const e of w.entries()) out.push(e);
  await w.close();
  return out;
}

/** Flips one byte inside the data of each named entry; returns the new file. */
async function corrupt(file: string, names: string[]): Promise<string> {
  const bytes = fs.readFileSync(file);
  const entries = await entriesOf(file);
  for (const name of names) {
    const e = entries.find((x) => x.name === name);
    if (!e) throw new Error(`no entry ${name}`);
    bytes[e.dataOffset + 77]! ^= 0xff;
  }
  const out = path.join(dir, `corrupt-${n++}.xva`);
  fs.writeFileSync(out, bytes);
  return out;
}

test('a clean archive: ok, exit 0, per-disk stats', async () => {
  const fx = await makeXvaFile(dir, { ...TWO_DISKS, fileName: 'clean.xva' });
  const r = await verifyXva(fx.path);
  expect(r).toMatchObject({ ok: true, exitCode: 0, badChunks: [], problems: [], checksum: 'xxh64', vm: { name: 'fixture-vm' } });
  expect(r.disks.map((d) => [d.ref, d.chunks, d.bytesPlaced])).toEqual([
    ['Ref:11', 4, 4 * MiB],
    ['Ref:14', 2, 2 * MiB],
  ]);
});

test.each(['gzip', 'zstd'] as const)('%s input is verified through the decompressor', async (compression) => {
  const fx = await makeXvaFile(dir, { ...TWO_DISKS, compression, checksum: 'sha1', fileName: `clean-${compression}.xva` });
  const r = await verifyXva(fx.path);
  expect(r).toMatchObject({ ok: true, exitCode: 0, compression, checksum: 'sha1' });
});

test('every bad chunk is listed with its disk offset, the pass goes on, exit 3', async () => {
  const fx = await makeXvaFile(dir, { ...TWO_DISKS, fileName: 'two.xva' });
  const bad = await corrupt(fx.path, ['Ref:11/00000001', 'Ref:11/00000003', 'Ref:14/00000000']);
  const r = await verifyXva(bad);
  expect(r.ok).toBe(false);
  expect(r.exitCode).toBe(3);
  expect(r.problems).toEqual([]);
  expect(r.badChunks.map((b) => [b.disk, b.entry, b.offset, b.length])).toEqual([
    ['Ref:11', 'Ref:11/00000001', MiB, MiB],
    ['Ref:11', 'Ref:11/00000003', 3 * MiB, MiB],
    ['Ref:14', 'Ref:14/00000000', 0, MiB],
  ]);
  for (const b of r.badChunks) {
    expect(b.expected).toMatch(/^[0-9A-F]{16}$/);
    expect(b.actual).toMatch(/^[0-9A-F]{16}$/);
    expect(b.expected).not.toBe(b.actual);
  }
  // mismatches are listed once, not repeated as warnings
  expect(r.warnings).toEqual([]);
});

test('offsets follow keep-alive counters, not chunk numbers', async () => {
  const img = pseudoRandom(4 * MiB, 3);
  const xva = independentXva({ style: 'xapi', disks: [{ ref: 'Ref:998', userdevice: '0', image: img, keepaliveBefore: [2] }] });
  const file = path.join(dir, 'ka.xva');
  fs.writeFileSync(file, xva);
  // Ref:998/00000003 holds the data of MiB 2 (counter 2 is the keep-alive)
  const r = await verifyXva(await corrupt(file, ['Ref:998/00000003']));
  expect(r.problems).toEqual([]);
  expect(r.badChunks).toEqual([expect.objectContaining({ entry: 'Ref:998/00000003', offset: 2 * MiB })]);
});

test('a truncated archive is a problem (exit 2); earlier bad chunks are still reported', async () => {
  const fx = await makeXvaFile(dir, { ...TWO_DISKS, fileName: 'trunc-src.xva' });
  const bad = await corrupt(fx.path, ['Ref:11/00000000']);
  const entries = await entriesOf(bad);
  const cutAt = entries.find((e) => e.name === 'Ref:11/00000002')!.dataOffset + 5000;
  const cut = path.join(dir, 'trunc.xva');
  fs.writeFileSync(cut, fs.readFileSync(bad).subarray(0, cutAt));
  const r = await verifyXva(cut);
  expect(r.ok).toBe(false);
  expect(r.exitCode).toBe(2);
  expect(r.problems.map((p) => p.code)).toEqual(['XVA_BAD_CHECKSUM', 'TAR_TRUNCATED']);
  expect(r.problems[0]!.message).toContain('Ref:11/00000000');
  expect(r.problems[1]!.message).toMatch(new RegExp(`^${cut.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: .*truncated`));
  expect(r.problems[1]!.offset).toBeGreaterThan(0);
  // JSON-safe: the original error is not serialised
  expect(JSON.parse(JSON.stringify(r)).problems[1].error).toBeUndefined();
});

test('a missing file: problem with exit 2, no throw', async () => {
  const r = await verifyXva(path.join(dir, 'nope.xva'));
  expect(r).toMatchObject({ ok: false, exitCode: 2, problems: [expect.objectContaining({ code: 'INPUT_UNREADABLE' })] });
});

test('an interruption is not a verification result: it is thrown', async () => {
  const fx = await makeXvaFile(dir, { ...TWO_DISKS, fileName: 'abort.xva' });
  const ac = new AbortController();
  const reason = new Error('stop');
  ac.abort(reason);
  await expect(verifyXva(fx.path, { signal: ac.signal })).rejects.toBe(reason);
});
