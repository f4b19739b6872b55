/**
 * A shell pipe into `xva2img -` is raised to 1 MiB (src/io/pipe-size.ts), as the producer sees
 * it: the producer is a perl script that writes part of the XVA, asks its stdout pipe for its
 * size (F_GETPIPE_SZ) until it changes or time runs out, reports it on stderr, and writes the rest.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, builtDist, collectOutput, ROOT, runCli } from './_cli';
import { itWithTools } from '../helpers/system-tools';
import { makeTempDir, removeDir } from '../input/helpers';

const it = itWithTools('perl');
const SAMPLE = path.join(ROOT, 'samples', 'demo-ext4.xva');

/** Writes 32 KiB, waits up to $ARGV[1] s for the pipe's size to leave 64 KiB, prints it, writes the rest. */
const PRODUCER = `
open(my $in, '<:raw', $ARGV[0]) or die; binmode STDOUT; $| = 1;
read($in, my $head, 32768); print $head;
my $size; my $until = time + $ARGV[1];
do { select(undef, undef, undef, 0.05); $size = fcntl(STDOUT, 1032, 0) } while ($size == 65536 && time < $until);
print STDERR "pipe size $size\\n";
local $/; my $rest = <$in>; print $rest;
`;

let dir: string;
beforeAll(() => {
  builtDist();
  dir = makeTempDir();
});
afterAll(() => removeDir(dir));

/** `perl PRODUCER sample wait | xva2img - -o <out>`, in a shell, with `env` added. */
function pipeInto(out: string, waitS: number, env: NodeJS.ProcessEnv = {}) {
  const script = `perl -e "$0" "$1" "$2" | "$3" "$4" - -q -o "$5"`;
  const child = spawn('sh', ['-c', script, PRODUCER, SAMPLE, String(waitS), process.execPath, BIN, out], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return collectOutput(child);
}

it('the producer writing into `xva2img -` sees its pipe raised to 1 MiB (or the ceiling); the image is the same', async () => {
  const ceiling = Number(fs.readFileSync('/proc/sys/fs/pipe-max-size', 'utf8'));
  const out = path.join(dir, 'deep.raw');
  const r = await pipeInto(out, 10);
  expect(r.stderr).toBe(`pipe size ${Math.min(1 << 20, ceiling)}\n`);
  expect(r.code).toBe(0);
  const direct = path.join(dir, 'direct.raw');
  const d = await runCli([SAMPLE, '-q', '-o', direct]);
  expect(d.code).toBe(0);
  expect(fs.readFileSync(out).equals(fs.readFileSync(direct))).toBe(true);
});

it('XVA2IMG_PIPE_SIZE=0: the pipe keeps the kernel\'s 64 KiB', async () => {
  const r = await pipeInto(path.join(dir, 'shallow.raw'), 1, { XVA2IMG_PIPE_SIZE: '0' });
  expect(r.stderr).toBe('pipe size 65536\n');
  expect(r.code).toBe(0);
});

it('a named pipe given by path (mkfifo, <(...)) is read as stdin is: same image', async () => {
  const fifo = path.join(dir, 'in.fifo');
  execFileSync('mkfifo', [fifo]);
  const writer = spawn('sh', ['-c', 'sleep 0.3; cat "$1" > "$2"', 'sh', SAMPLE, fifo], { stdio: 'ignore' });
  const out = path.join(dir, 'fifo.raw');
  const r = await runCli([fifo, '-q', '-o', out]);
  writer.kill();
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const direct = path.join(dir, 'direct-fifo.raw');
  expect((await runCli([SAMPLE, '-q', '-o', direct])).code).toBe(0);
  expect(fs.readFileSync(out).equals(fs.readFileSync(direct))).toBe(true);
});
