/**
 * Leaving a core to the producer (src/io/cpu-yield.ts, docs/design/cpu-yield.md): once a
 * decoding program has been started, every thread of xva2img runs 5 nice steps lower and the
 * program keeps the nice value it was started with. A stand-in `igzip` on the PATH records both
 * (from /proc) and then decodes with gzip, so the conversion itself is real.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { BIN, ROOT, builtDist, collectOutput, runCli } from './_cli';
import { itUnless, itWithTools } from '../helpers/system-tools';

// The stand-in decodes with gzip; off Linux, nice values are per process and nothing is done.
const testIt = process.platform === 'linux' ? itWithTools('gzip') : itUnless('thread nice values are per thread on Linux only');
const SAMPLE = path.join(ROOT, 'samples', 'demo-two-disks.xva.gz');

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cpu-yield-'));
  // Field 19 of /proc/<pid>/stat is the nice value (the command name in field 2 has no spaces here).
  fs.writeFileSync(
    path.join(dir, 'igzip'),
    `#!/bin/sh
own=$(cut -d' ' -f19 /proc/$$/stat)
i=0
while [ $i -lt 200 ] && [ "$(cut -d' ' -f19 /proc/$PPID/stat)" = "$own" ]; do sleep 0.05; i=$((i+1)); done
{ echo "child $own"; for t in /proc/$PPID/task/*; do echo "thread $(cut -d' ' -f19 $t/stat)"; done; } > "$YIELD_LOG"
exec gzip -dc
`,
    { mode: 0o755 },
  );
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The nice value of this test process, which the CLI and its child start from. */
const base = (): number => os.getPriority(0);

function readLog(log: string): { child: number; threads: number[] } {
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
  const child = Number(lines.find((l) => l.startsWith('child '))!.slice(6));
  const threads = lines.filter((l) => l.startsWith('thread ')).map((l) => Number(l.slice(7)));
  return { child, threads };
}

const env = (log: string): NodeJS.ProcessEnv => ({ PATH: `${dir}:${process.env.PATH ?? ''}`, YIELD_LOG: log });

describe('a decoding program keeps its nice value, our threads go 5 steps lower', () => {
  testIt('a .gz file: igzip started by the decoder thread', async () => {
    const log = path.join(dir, 'file.log');
    const r = await runCli([SAMPLE, '-q', '--gzip-codec', 'igzip', '-o', path.join(dir, 'out-file')], { env: env(log) });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const { child, threads } = readLog(log);
    expect(child).toBe(base());
    expect(threads.length).toBeGreaterThan(3);
    for (const n of threads) expect(n).toBe(Math.min(19, base() + 5));
  });

  testIt('a .gz piped to standard input: igzip started by the main thread', async () => {
    builtDist();
    const log = path.join(dir, 'stdin.log');
    const child = spawn(process.execPath, [BIN, '-', '-q', '--gzip-codec', 'igzip', '-o', path.join(dir, 'out-stdin')], {
      env: { ...process.env, ...env(log) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    fs.createReadStream(SAMPLE).pipe(child.stdin);
    const r = await collectOutput(child);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const { child: childNice, threads } = readLog(log);
    expect(childNice).toBe(base());
    for (const n of threads) expect(n).toBe(Math.min(19, base() + 5));
  });

  testIt('a plain XVA piped to standard input: the producer is the other end of the pipe', async () => {
    builtDist();
    const child = spawn(process.execPath, [BIN, '-', '-q', '-o', path.join(dir, 'out-pipe')], { stdio: ['pipe', 'pipe', 'pipe'] });
    const done = collectOutput(child);
    const xva = fs.readFileSync(path.join(ROOT, 'samples', 'demo-ext4.xva'));
    // The first MiB only: the reader has sniffed the input and is waiting for more.
    child.stdin.write(xva.subarray(0, 1 << 20));
    const niceOf = (tid: string): number => Number(fs.readFileSync(`/proc/${child.pid}/task/${tid}/stat`, 'utf8').split(' ')[18]);
    const deadline = Date.now() + 10_000;
    while (niceOf(String(child.pid)) === base() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const threads = fs.readdirSync(`/proc/${child.pid}/task`).map(niceOf);
    child.stdin.end(xva.subarray(1 << 20));
    const r = await done;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const n of threads) expect(n).toBe(Math.min(19, base() + 5));
  });
});
