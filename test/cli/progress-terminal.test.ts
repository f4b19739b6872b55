/**
 * Progress bars as a person sees them: the built CLI on a real pseudo-terminal (script(1)), the
 * terminal's byte stream replayed on a VT100 model, and the final frame read back (see
 * test/helpers/terminal.ts). On a terminal:
 *  - every bar left on the screen is a finished one at 100 % (or, for an input that failed, one
 *    marked "stopped"): none frozen part way;
 *  - every summary, report and error line the verb prints reaches the screen, after its bar.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { itWithTools } from '../helpers/system-tools';
import { runInTerminal, type TerminalRun } from '../helpers/terminal';
import { makeXvaFile, MiB } from '../helpers/xva-fixtures';
import { esc, ROOT } from './_cli';

const it = itWithTools('script');
const SAMPLE = path.join(ROOT, 'samples', 'demo-ext4.xva');

let dir: string;
/** Big enough that its bar is drawn several times on the way (48 MiB of random data, gzip). */
let big: string;
let bad: string;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-pty-'));
  big = (await makeXvaFile(dir, { vmName: 'big', fileName: 'big.xva.gz', compression: 'gzip', disks: [{ size: 48 * MiB, fill: [{ offset: 0, length: 48 * MiB }] }] })).path;
  bad = path.join(dir, 'bad.xva');
  fs.writeFileSync(bad, Buffer.alloc(4096, 0x41));
}, 60_000);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const BAR = /[\u2588\u2591]{10,}/;

/** The rows of the final frame that are progress bars. */
function bars(run: TerminalRun): string[] {
  return run.lines.filter((l) => BAR.test(l));
}

/** Index of the first line matching `re` at or after `from`; fails the test when there is none. */
function lineIndex(run: TerminalRun, re: RegExp, from = 0): number {
  const i = run.lines.findIndex((l, k) => k >= from && re.test(l));
  if (i < 0) throw new Error(`no line matches ${re} in the final frame:\n${run.lines.join('\n')}`);
  return i;
}

/** The finished bar of `file`, then `after` (its first summary line) further down. */
function expectFinishedBarThen(run: TerminalRun, file: string, after: RegExp): void {
  const bar = lineIndex(run, new RegExp(`^${esc(path.basename(file))}\\s+[\u2588]+ 100% \\|`));
  lineIndex(run, after, bar + 1);
}

function outDir(name: string): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

describe('convert on a terminal', () => {
  it('one input: the bar ends at 100 % and the whole summary follows it', async () => {
    const out = outDir('single');
    const run = await runInTerminal([big, '-o', out], { columns: 200 });
    expect(run.code).toBe(0);
    expectFinishedBarThen(run, big, new RegExp(`^xva2img: ${esc(big)} \\(gzip, XXH64\\): VM "big"`));
    const summary = lineIndex(run, /^xva2img: .*VM "big"/);
    lineIndex(run, new RegExp(`^  disk 0\\* .* -> ${esc(path.join(out, 'big-0.raw'))} \\(48\\.0 MiB data, 0 B holes\\)$`), summary);
    lineIndex(run, /^ {2}done in \d+\.\d s \(/, summary);
    expect(bars(run)).toHaveLength(1);
  });

  it('a batch with -j 2: each input\'s bar at 100 % then its summary, the total bar at 2/2, then the table', async () => {
    const out = outDir('batch');
    const run = await runInTerminal([big, SAMPLE, '-j', '2', '--per-vm-dir', '-o', out]);
    expect(run.code).toBe(0);
    expectFinishedBarThen(run, big, /^xva2img: .*big\.xva\.gz .*VM "big"/);
    expectFinishedBarThen(run, SAMPLE, /^xva2img: .*demo-ext4\.xva .*VM "/);
    expect(run.lines.filter((l) => /^ {2}done in /.test(l))).toHaveLength(2);
    const total = lineIndex(run, /^total\s+[\u2588]+ 100% \| 2\/2 inputs \|/);
    const table = lineIndex(run, /^INPUT\s+VM\s+DISKS\s+RESULT/, total + 1);
    expect(run.lines.slice(table + 1, table + 3).every((l) => / ok /.test(l))).toBe(true);
    expect(bars(run).every((l) => l.includes(' 100% |'))).toBe(true);
    expect(bars(run)).toHaveLength(3);
  });

  it('a failing input in a batch: its error line shows, the others finish at 100 % with their summaries', async () => {
    const out = outDir('batch-fail');
    const run = await runInTerminal([SAMPLE, bad, big, '-j', '2', '--per-vm-dir', '-o', out]);
    expect(run.code).toBe(2);
    expectFinishedBarThen(run, SAMPLE, /^xva2img: .*demo-ext4\.xva .*VM "/);
    expectFinishedBarThen(run, big, /^xva2img: .*big\.xva\.gz .*VM "big"/);
    lineIndex(run, new RegExp(`^xva2img: ${esc(bad)}: `));
    const total = lineIndex(run, /^total\s+[\u2588]+ 100% \| 3\/3 inputs \|/);
    lineIndex(run, new RegExp(`${esc(bad)}\\s+-\\s+0\\s+FAILED \\(exit 2\\)`), total + 1);
    // The failed input's bar, if it was drawn, says where it stopped; every other bar is full.
    expect(bars(run).every((l) => l.includes(' 100% |') || (l.startsWith('bad.xva ') && l.includes('stopped')))).toBe(true);
  });
});

describe('other verbs on a terminal', () => {
  it('info --chunks: the bar ends at 100 % and the report follows', async () => {
    const run = await runInTerminal(['info', '--chunks', big]);
    expect(run.code).toBe(0);
    expectFinishedBarThen(run, big, /^Input:\s+/);
    lineIndex(run, /^Chunks counted from the tar headers/);
    expect(bars(run)).toHaveLength(1);
  });

  it('verify of two inputs: a finished bar before each report line, then the tally', async () => {
    const run = await runInTerminal(['verify', big, SAMPLE]);
    expect(run.code).toBe(0);
    expectFinishedBarThen(run, big, new RegExp(`^${esc(big)}: OK \\(`));
    expectFinishedBarThen(run, SAMPLE, new RegExp(`^${esc(SAMPLE)}: OK \\(`));
    lineIndex(run, /^2 inputs: 2 clean, 0 with problems$/);
    expect(bars(run).every((l) => l.includes(' 100% |'))).toBe(true);
  });

  it('verify of an invalid input: no full bar, the problem and the INVALID line show', async () => {
    const run = await runInTerminal(['verify', bad]);
    expect(run.code).toBe(2);
    lineIndex(run, new RegExp(`^xva2img: ${esc(bad)}: `));
    lineIndex(run, new RegExp(`^${esc(bad)}: INVALID \\(`));
    expect(bars(run).filter((l) => l.includes(' 100% |'))).toEqual([]);
  });

  it('pack: the bar ends at 100 % and the summary follows', async () => {
    const disk = path.join(dir, 'pack-disk.raw');
    fs.writeFileSync(disk, Buffer.alloc(24 * MiB, 0x5a));
    const xva = path.join(dir, 'packed.xva');
    const run = await runInTerminal(['pack', '--disk', disk, '-o', xva, '-f']);
    expect(run.code).toBe(0);
    expectFinishedBarThen(run, xva, new RegExp(`^xva2img: ${esc(xva)} \\(uncompressed, XXH64, ustar tar\\): VM "pack-disk"`));
    lineIndex(run, /^ {2}done in \d+\.\d s/);
    expect(bars(run)).toHaveLength(1);
  });

  it('ova (no bar): its summary reaches the screen', async () => {
    const ova = path.join(dir, 'out.ova');
    const run = await runInTerminal(['ova', SAMPLE, '-o', ova, '-f']);
    expect(run.code).toBe(0);
    const head = lineIndex(run, new RegExp(`^xva2img: ${esc(ova)}: OVA \\(vmware\\) of VM "`));
    lineIndex(run, /^ {2}\S+\.ovf \(\d+ bytes\)$/, head + 1);
    lineIndex(run, /^ {2}\S+\.mf \(SHA256\)$/, head + 1);
    expect(bars(run)).toEqual([]);
  });
});
