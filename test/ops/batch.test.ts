/**
 * convertBatch: several inputs, sequential or N at a time; one failure never stops the others;
 * per-input results (status, error code + message, time, bytes, throughput); shared names.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { batchItemCause, convertBatch } from '../../src/ops/batch';
import { convertXva, type ConvertOptions, type ConvertSummary } from '../../src/ops/convert';
import { XvaError } from '../../src/errors';
import type { InputSource } from '../../src/input/types';
import { openTarHeaderWalker } from '../../src/tar/header-walker';
import { makeXvaFile, MiB } from '../helpers/xva-fixtures';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'batch-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
function outDir(): string {
  return path.join(dir, `out-${n++}`);
}

async function corruptFirstChunk(file: string, entry = /\/00000000$/): Promise<string> {
  const w = await openTarHeaderWalker(file);
  let at = -1;
  for await (const e of w.entries()) {
    if (entry.test(e.name)) {
      at = e.dataOffset + 10;
      break;
    }
  }
  await w.close();
  const bytes = fs.readFileSync(file);
  bytes[at]! ^= 0xff;
  const out = file.replace(/\.xva$/, '-bad.xva');
  fs.writeFileSync(out, bytes);
  return out;
}

test('sequential: every input converted, results in input order, shared name allocator', async () => {
  const a = await makeXvaFile(dir, { vmName: 'alpha', disks: [{ size: 2 * MiB }, { size: MiB }] });
  const b = await makeXvaFile(dir, { vmName: 'beta', compression: 'gzip' });
  const a2 = await makeXvaFile(dir, { vmName: 'alpha', fileName: 'alpha-copy.xva' });
  const out = outDir();
  const started: string[] = [];
  const r = await convertBatch([a.path, b.path, a2.path], { outDir: out, onStart: (_i, input) => started.push(input) });
  expect(r.ok).toBe(true);
  expect(r.exitCode).toBe(0);
  expect(started).toEqual([a.path, b.path, a2.path]);
  expect(r.items.map((i) => [i.input, i.status, i.vmName, i.disks])).toEqual([
    [a.path, 'ok', 'alpha', 2],
    [b.path, 'ok', 'beta', 1],
    [a2.path, 'ok', 'alpha', 1],
  ]);
  // same VM name twice: the second gets -2
  expect(fs.readdirSync(out).sort()).toEqual(['alpha-0-2.raw', 'alpha-0.raw', 'alpha-1.raw', 'beta-0.raw']);
  expect(fs.readFileSync(path.join(out, 'beta-0.raw')).equals(b.disks[0]!.expected)).toBe(true);
  for (const it of r.items) {
    expect(it.bytesRead).toBeGreaterThan(0);
    expect(it.seconds).toBeGreaterThanOrEqual(0);
    expect(it.summary).toBeDefined();
  }
});

test('one failing input does not stop the others; the exit code is the worst one', async () => {
  const good1 = await makeXvaFile(dir, { vmName: 'g1' });
  const good2 = await makeXvaFile(dir, { vmName: 'g2' });
  const cut = path.join(dir, 'cut.xva');
  fs.writeFileSync(cut, fs.readFileSync(good1.path).subarray(0, 1500 * 1024));
  const out = outDir();
  const r = await convertBatch([good1.path, path.join(dir, 'missing.xva'), cut, good2.path], { outDir: out });
  expect(r.ok).toBe(false);
  expect(r.exitCode).toBe(2);
  expect(r.items.map((i) => [i.status, i.exitCode, i.error?.code ?? null])).toEqual([
    ['ok', 0, null],
    ['failed', 2, 'INPUT_UNREADABLE'],
    ['failed', 2, 'TAR_TRUNCATED'],
    ['ok', 0, null],
  ]);
  expect(r.items[2]!.error!.message).toContain(cut);
  expect(r.items[2]!.vmName).toBe('g1'); // known from ova.xml before it failed
  expect(batchItemCause(r.items[2]!)).toBeInstanceOf(XvaError);
  // the failed conversion left nothing behind
  expect(fs.readdirSync(out).sort()).toEqual(['g1-0.raw', 'g2-0.raw']);
  // JSON-safe
  expect(JSON.parse(JSON.stringify(r.items[1])).cause).toBeUndefined();
});

test('salvage in a batch: bad chunks make the item "bad-chunks" (exit 3) and the output is kept', async () => {
  const fx = await makeXvaFile(dir, { vmName: 'salv', disks: [{ size: 2 * MiB, fill: [{ offset: 0, length: 2 * MiB }] }] });
  const bad = await corruptFirstChunk(fx.path);
  const ok = await makeXvaFile(dir, { vmName: 'fine' });
  const out = outDir();
  const r = await convertBatch([bad, ok.path], { outDir: out, onBadChunk: 'zero' });
  expect(r.exitCode).toBe(3);
  expect(r.items.map((i) => i.status)).toEqual(['bad-chunks', 'ok']);
  expect(r.items[0]!.summary!.badChunks).toEqual([expect.objectContaining({ offset: 0, action: 'zeroed' })]);
  const img = fs.readFileSync(path.join(out, 'salv-0.raw'));
  expect(img.subarray(0, MiB).equals(Buffer.alloc(MiB))).toBe(true);
  expect(img.subarray(MiB).equals(fx.disks[0]!.expected.subarray(MiB))).toBe(true);
  // default policy fails that input, and removes its output
  const out2 = outDir();
  const r2 = await convertBatch([bad, ok.path], { outDir: out2 });
  expect(r2.items.map((i) => [i.status, i.exitCode])).toEqual([
    ['failed', 3],
    ['ok', 0],
  ]);
  expect(fs.readdirSync(out2)).toEqual(['fine-0.raw']);
});

/** The first `cut` bytes of `bytes` as a stream that then waits for `gate` and ends there (a truncated archive). */
function stalledSource(bytes: Buffer, cut: number, gate: Promise<void>): InputSource {
  async function* pieces(): AsyncGenerator<Buffer> {
    for (let off = 0; off < cut; off += 64 * 1024) yield bytes.subarray(off, Math.min(off + 64 * 1024, cut));
    await gate;
  }
  const stream = Readable.from(pieces(), { objectMode: false });
  return { kind: 'stream', name: 'stalled.xva', compression: 'none', codec: 'none', rawSize: null, stream, rawBytesRead: () => 0, close: async () => void stream.destroy() } as unknown as InputSource;
}

describe('output names: a -2 suffix only for a clash with an output that exists or is being written', () => {
  test.each([[false], [true]])('a failed input gives its name back: the next input of the same VM gets the plain name (perVmSubdir %s)', async (perVmSubdir) => {
    const good = await makeXvaFile(dir, { vmName: 'again' });
    const cut = path.join(dir, 'again-cut.xva');
    fs.writeFileSync(cut, fs.readFileSync(good.path).subarray(0, 1500 * 1024));
    const out = outDir();
    const r = await convertBatch([cut, good.path], { outDir: out, perVmSubdir });
    expect(r.items.map((i) => [i.status, i.error?.code ?? null])).toEqual([
      ['failed', 'TAR_TRUNCATED'],
      ['ok', null],
    ]);
    const file = perVmSubdir ? path.join(out, 'again', 'again-0.raw') : path.join(out, 'again-0.raw');
    expect(r.items[1]!.summary!.disks[0]!.path).toBe(file);
    expect(fs.readFileSync(file).equals(good.disks[0]!.expected)).toBe(true);
    expect(fs.readdirSync(perVmSubdir ? path.join(out, 'again') : out)).toEqual(['again-0.raw']);
  });

  test('a failed input keeps the names of the disks it did write', async () => {
    const fx = await makeXvaFile(dir, { vmName: 'kept', disks: [{ size: 2 * MiB }, { size: 2 * MiB, fill: [{ offset: 0, length: 2 * MiB }] }] });
    const bad = await corruptFirstChunk(fx.path, /^Ref:14\/00000000$/); // disk 1: disk 0 is complete and renamed before
    const out = outDir();
    const r = await convertBatch([bad, fx.path], { outDir: out });
    expect(r.items.map((i) => [i.status, i.exitCode])).toEqual([
      ['failed', 3],
      ['ok', 0],
    ]);
    expect(r.items[1]!.summary!.disks.map((d) => path.basename(d.path!))).toEqual(['kept-0-2.raw', 'kept-1.raw']);
    expect(fs.readdirSync(out).sort()).toEqual(['kept-0-2.raw', 'kept-0.raw', 'kept-1.raw']);
    expect(fs.readFileSync(path.join(out, 'kept-1.raw')).equals(fx.disks[1]!.expected)).toBe(true);
  });

  test('jobs 2: a name being written is never handed out twice; it is free again once its conversion failed', async () => {
    const fx = await makeXvaFile(dir, { vmName: 'par', disks: [{ size: 3 * MiB, fill: [{ offset: 0, length: 3 * MiB }] }] });
    const bytes = fs.readFileSync(fx.path);
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    let claimed!: () => void;
    const stalledClaimed = new Promise<void>((resolve) => (claimed = resolve));
    let stalledDone!: () => void;
    const stalledFinished = new Promise<void>((resolve) => (stalledDone = resolve));
    const out = outDir();
    const partWhileStalled: string[] = [];
    // 'stalled' takes par-0.raw and writes its .part, then stops; 'second' converts meanwhile;
    // 'stalled' then fails (truncated); 'third' starts only after that.
    const convert = async (input: string, o: ConvertOptions): Promise<ConvertSummary> => {
      if (input === 'stalled') {
        try {
          return await convertXva(stalledSource(bytes, 2 * MiB, gate), {
            ...o,
            onMetadata: (m) => {
              o.onMetadata?.(m);
              claimed(); // its names are allocated right after this returns
            },
          });
        } finally {
          stalledDone();
        }
      }
      if (input === 'second') {
        await stalledClaimed;
        for (let i = 0; i < 1000 && !fs.existsSync(path.join(out, 'par-0.raw.part')); i++) await new Promise((res) => setTimeout(res, 5));
        partWhileStalled.push(...fs.readdirSync(out));
        try {
          return await convertXva(fx.path, o);
        } finally {
          openGate();
        }
      }
      await stalledFinished;
      return convertXva(fx.path, o);
    };
    const r = await convertBatch(['stalled', 'second', 'third'], { outDir: out, jobs: 2, convert });
    expect(partWhileStalled).toEqual(['par-0.raw.part']);
    expect(r.items.map((i) => [i.status, i.error?.code ?? null])).toEqual([
      ['failed', 'TAR_TRUNCATED'],
      ['ok', null],
      ['ok', null],
    ]);
    expect(r.items.map((i) => i.summary?.disks[0]!.path ?? null)).toEqual([null, path.join(out, 'par-0-2.raw'), path.join(out, 'par-0.raw')]);
    expect(fs.readdirSync(out).sort()).toEqual(['par-0-2.raw', 'par-0.raw']);
    for (const f of ['par-0-2.raw', 'par-0.raw']) expect(fs.readFileSync(path.join(out, f)).equals(fx.disks[0]!.expected)).toBe(true);
  });
});

test('--jobs 2 runs two at once (never more) and still reports in input order', async () => {
  let running = 0;
  let peak = 0;
  const convert = async (input: string, _o: ConvertOptions): Promise<ConvertSummary> => {
    running++;
    peak = Math.max(peak, running);
    // Work of a few event-loop turns ('bb' the most, so inputs after it finish first): the order is
    // the same on any machine, where timers of a few ms would depend on its load.
    for (let turn = 0; turn <= input.length % 3; turn++) await new Promise((r) => setImmediate(r));
    running--;
    if (input === 'boom') throw new Error('kaput');
    return { input, vm: { name: input }, disks: [], badChunks: [], tarBytes: 100 } as unknown as ConvertSummary;
  };
  const inputs = ['a', 'bb', 'boom', 'dddd', 'e'];
  const r = await convertBatch(inputs, { jobs: 2, convert });
  expect(peak).toBe(2);
  expect(r.items.map((i) => i.input)).toEqual(inputs);
  expect(r.items[2]).toMatchObject({ status: 'failed', exitCode: 4, error: { code: 'INTERNAL' } });
  expect(r.items.filter((i) => i.status === 'ok')).toHaveLength(4);
});

test('real conversions with jobs 2 give the same images as sequential ones', async () => {
  const fxs = await Promise.all(['p', 'q', 'r'].map((v, i) => makeXvaFile(dir, { vmName: `job-${v}`, compression: i === 1 ? 'zstd' : 'none', disks: [{ size: 3 * MiB, seed: i + 5, fill: [{ offset: MiB, length: MiB }] }] })));
  const out = outDir();
  const r = await convertBatch(fxs.map((f) => f.path), { outDir: out, jobs: 2, perVmSubdir: true, format: 'raw' });
  expect(r.ok).toBe(true);
  for (const f of fxs) {
    expect(fs.readFileSync(path.join(out, f.vmName, `${f.vmName}-0.raw`)).equals(f.disks[0]!.expected)).toBe(true);
  }
});

test('an aborted batch skips the inputs not yet started', async () => {
  const ac = new AbortController();
  const convert = async (input: string): Promise<ConvertSummary> => {
    ac.abort();
    return { input, vm: { name: input }, disks: [], badChunks: [], tarBytes: 1 } as unknown as ConvertSummary;
  };
  const r = await convertBatch(['x', 'y', 'z'], { convert, signal: ac.signal });
  expect(r.items.map((i) => i.status)).toEqual(['ok', 'skipped', 'skipped']);
  expect(r.exitCode).toBe(130);
});

test('usage errors: stdin twice, an output file with several inputs', async () => {
  await expect(convertBatch(['-', '-'])).rejects.toMatchObject({ code: 'USAGE' });
  await expect(convertBatch(['a', 'b'], { outFile: 'x.raw' })).rejects.toMatchObject({ code: 'USAGE' });
});
