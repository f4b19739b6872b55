/**
 * Flat memory: packing a 1.5 GiB sparse disk, repacking the result, and packing to stdout
 * keep the CLI's peak RSS (GNU time %M) far below the disk size. Needs the built CLI and
 * /usr/bin/time.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from '../helpers/xva-fixtures';
import { BIN } from './_cli';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const SIZE = 1536 * MiB;
/** Peak RSS bound: Node itself needs ~50-70 MiB; the disk is 1.5 GiB. */
const RSS_LIMIT_KIB = 220 * 1024;

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pack-mem-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs `cmd` under GNU time; returns peak RSS in KiB (last stderr line). */
async function peakRss(cmd: string): Promise<number> {
  const { stderr } = await run('bash', ['-o', 'pipefail', '-c', `/usr/bin/time -f '%M' ${cmd}`], { maxBuffer: 1 << 20 });
  const last = stderr.trim().split('\n').pop()!;
  expect(last).toMatch(/^\d+$/);
  return Number(last);
}

/** Data at a few places (incl. the very end), holes elsewhere. */
const REGIONS = [0, 7 * MiB + 4096, 700 * MiB, SIZE - 3 * MiB];

test('1.5 GiB sparse disk: pack, repack and stdout stay within a flat memory bound', async () => {
  const disk = path.join(dir, 'big.raw');
  const fd = fs.openSync(disk, 'w');
  REGIONS.forEach((off, i) => fs.writeSync(fd, randomBytes(3 * MiB - (off % MiB), 100 + i), 0, 3 * MiB - (off % MiB), off));
  fs.ftruncateSync(fd, SIZE);
  fs.closeSync(fd);

  const packed = path.join(dir, 'big.xva.zst');
  const rss1 = await peakRss(`node ${BIN} pack --disk ${disk} --name big -q -o ${packed}`);
  expect(rss1).toBeLessThan(RSS_LIMIT_KIB);

  const repacked = path.join(dir, 'big2.xva.gz');
  const rss2 = await peakRss(`node ${BIN} pack --from ${packed} --checksum sha1 -q -o ${repacked}`);
  expect(rss2).toBeLessThan(RSS_LIMIT_KIB);

  const rss3 = await peakRss(`node ${BIN} pack --disk ${disk} -q -o - > /dev/null`);
  expect(rss3).toBeLessThan(RSS_LIMIT_KIB);

  // The repacked archive converts back to the original bytes.
  const back = path.join(dir, 'back');
  await run('node', [BIN, repacked, '-o', back, '-q']);
  const out = path.join(back, 'big-0.raw');
  expect(fs.statSync(out).size).toBe(SIZE);
  await run('cmp', [disk, out]);
}, 600_000);
