/**
 * Deeper pipes (src/io/pipe-size.ts): a Linux pipe of 64 KiB raised to 1 MiB (or the machine's
 * ceiling) through perl, since Node has no fcntl; left as it is when that cannot be done.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { deepenPipe, pipeSizeToAsk, WANTED_PIPE_BYTES } from '../../src/io/pipe-size';
import { itWithTools } from '../helpers/system-tools';
import { makeTempDir, removeDir } from '../input/helpers';

const it = itWithTools('perl', 'mkfifo'); // mkfifo: the tests' own pipes
let dir: string;
beforeAll(() => {
  dir = makeTempDir();
});
afterAll(() => removeDir(dir));

const ceiling = (): number => Number(fs.readFileSync('/proc/sys/fs/pipe-max-size', 'utf8'));

/** F_GETPIPE_SZ of the pipe open on `fd` here, read by a perl that gets it as its stdin. */
const sizeOf = (fd: number): number => Number(execFileSync('perl', ['-e', 'print fcntl(STDIN, 1032, 0)'], { stdio: [fd, 'pipe', 'inherit'], encoding: 'utf8' }));

/** A FIFO opened for reading and writing (both ends in one descriptor: opening does not wait). */
function openFifo(name: string): number {
  const fifo = path.join(dir, name);
  execFileSync('mkfifo', [fifo]);
  return fs.openSync(fifo, fs.constants.O_RDWR);
}

/** Runs `fn` with the environment variable set (or removed, for undefined), then restores it. */
async function withEnv<T>(name: string, value: string | undefined, fn: () => Promise<T> | T): Promise<T> {
  const saved = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

it('a new pipe holds 64 KiB; deepenPipe raises it to 1 MiB, or to the ceiling below that', async () => {
  const fd = openFifo('a');
  try {
    expect(sizeOf(fd)).toBe(64 << 10);
    expect(await deepenPipe(fd)).toBe(true);
    expect(sizeOf(fd)).toBe(Math.min(WANTED_PIPE_BYTES, ceiling()));
  } finally {
    fs.closeSync(fd);
  }
});

it('XVA2IMG_PIPE_SIZE=0 leaves pipes alone (the benchmark\'s comparison rows)', async () => {
  await withEnv('XVA2IMG_PIPE_SIZE', '0', async () => {
    expect(pipeSizeToAsk()).toBe(0);
    const fd = openFifo('b');
    try {
      expect(await deepenPipe(fd)).toBe(false);
      expect(sizeOf(fd)).toBe(64 << 10);
    } finally {
      fs.closeSync(fd);
    }
  });
});

it('without perl on the PATH nothing is tried and nothing fails', async () => {
  const fd = openFifo('c');
  try {
    await withEnv('PATH', path.join(dir, 'empty'), async () => {
      expect(await deepenPipe(fd)).toBe(false);
    });
    expect(sizeOf(fd)).toBe(64 << 10);
  } finally {
    fs.closeSync(fd);
  }
});

it('a descriptor that is no pipe: the kernel refuses, deepenPipe resolves false and never rejects', async () => {
  const fd = fs.openSync(path.join(dir, 'plain'), 'w');
  try {
    expect(await deepenPipe(fd)).toBe(false);
  } finally {
    fs.closeSync(fd);
  }
});

it('XVA2IMG_PIPE_SIZE values the kernel would misread (below a page, 2 GiB and up, not a number) are ignored', async () => {
  for (const value of ['1', '4095', String(2 ** 31), String(2 ** 40), 'big', '-1', '']) {
    await withEnv('XVA2IMG_PIPE_SIZE', value, () => expect(pipeSizeToAsk()).toBe(Math.min(WANTED_PIPE_BYTES, ceiling())));
  }
  await withEnv('XVA2IMG_PIPE_SIZE', '65536', () => expect(pipeSizeToAsk()).toBe(65536));
});
