/**
 * Deeper pipes. A Linux pipe holds 64 KiB unless `fcntl(F_SETPIPE_SZ)` raises it, up to
 * /proc/sys/fs/pipe-max-size (1 MiB by default) for an unprivileged process. With 64 KiB, a
 * producer beside us (`gunzip -c vm.xva.gz | xva2img -`) blocks every
 * 64 KiB until our reading thread has been scheduled to drain it; with 1 MiB it blocks 16x less
 * often (docs/design/pipe-depth.md has the measurements). Used for a pipe on our stdin and for
 * the FIFO our own decoder child (igzip, zstd) writes into.
 *
 * Node has no fcntl, so the call is made by `perl` when it is on PATH (on Debian and Ubuntu
 * perl-base is Essential, so always there). Without perl, or where the kernel refuses, the pipe
 * keeps its size: slower, never wrong — nothing depends on the size.
 */
import { readFileSync } from 'node:fs';
import { findProgram } from './find-program';

/** Linux's fcntl command number (include/uapi/linux/fcntl.h: F_LINUX_SPECIFIC_BASE + 7). */
const F_SETPIPE_SZ = 1031;
/** What we ask for: the default ceiling for unprivileged processes. */
export const WANTED_PIPE_BYTES = 1 << 20;

/**
 * The size to ask for: WANTED_PIPE_BYTES, lowered to the machine's ceiling; 0 for "leave pipes
 * alone" (not Linux, or XVA2IMG_PIPE_SIZE=0, which the benchmark uses for its comparison rows).
 */
export function pipeSizeToAsk(): number {
  if (process.platform !== 'linux') return 0;
  // Only 0 or a size the kernel reads as given (it takes an unsigned int and rounds up to pages).
  const override = Number(process.env.XVA2IMG_PIPE_SIZE || NaN);
  if (override === 0 || (Number.isInteger(override) && override >= 4096 && override < 2 ** 31)) return override;
  try {
    const ceiling = Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8').trim());
    return Number.isSafeInteger(ceiling) && ceiling > 0 ? Math.min(WANTED_PIPE_BYTES, ceiling) : WANTED_PIPE_BYTES;
  } catch {
    return WANTED_PIPE_BYTES;
  }
}

/** perl's code for "set the pipe on descriptor 0 to N bytes": `perl -e CODE N`. */
const SET_SIZE_CODE = `fcntl(STDIN, ${F_SETPIPE_SZ}, 0 + $ARGV[0]) or die "F_SETPIPE_SZ: $!\\n"`;

/**
 * Raises the pipe on descriptor `fd` of this process to pipeSizeToAsk() bytes, in the background
 * (a perl child gets the descriptor as its stdin; the pipe is shared, so its size is ours and the
 * producer's). Resolves with whether it took; never rejects.
 */
export function deepenPipe(fd: number): Promise<boolean> {
  const bytes = pipeSizeToAsk();
  const perl = bytes > 0 ? findProgram('perl') : null;
  if (!perl) return Promise.resolve(false);
  // node:child_process is required only here: most runs read no pipe (start-up time).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  return new Promise((resolve) => {
    const child = spawn(perl, ['-e', SET_SIZE_CODE, String(bytes)], { stdio: [fd, 'ignore', 'ignore'] });
    child.on('error', () => resolve(false));
    child.on('close', (code) => resolve(code === 0));
    child.unref();
  });
}

/** perl's arguments that make a FIFO readable and writable by us only (its path appended). */
export const MKFIFO_PERL_ARGS: readonly string[] = ['-MPOSIX', '-e', 'POSIX::mkfifo($ARGV[0], 0600) or die "mkfifo: $!\\n"'];

/**
 * perl's arguments that raise the pipe on its stdout to `bytes` and then become `program args`
 * (exec: same process, same descriptors, no shell). A refusal is ignored: the decoder runs on
 * the pipe as it is.
 */
export function deepStdoutPerlArgs(bytes: number, program: string, args: readonly string[]): string[] {
  const code = `fcntl(STDOUT, ${F_SETPIPE_SZ}, 0 + shift); exec { $ARGV[0] } @ARGV or die "$ARGV[0]: $!\\n"`;
  return ['-e', code, String(bytes), program, ...args];
}
