/**
 * Decoders that are programs: `zstd -dc` and `igzip -dc`, compressed bytes in on their standard
 * input, decoded bytes out on their standard output. Both are several times faster than the
 * decoders Node has, and run on a core of their own.
 *
 * A child that fails says so on stderr and with its exit status, not in its output, so the
 * decoded stream ends only after the child has exited and its codec judged the status
 * (`exitProblem`): a decoder failure can never look like a clean, short end of input.
 *
 * Regular files are given to the child as its standard input (it reads them itself; the bytes
 * never pass through this process): see the decoder thread (decoder-thread.ts) and
 * open.ts. `childDecoder` below is the main-thread form, for pipes and URLs, or a file when no
 * thread can be had.
 */
import type { ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { InputError } from '../errors';
import { type DecodeContext, type Decoder, streamDecoder } from './decoder';
import { errorText } from '../errors';

/** A decoding program and how to read its failures. */
export interface ChildCodec {
  /** As shown in summaries ("zstd binary", "igzip"). */
  readonly name: string;
  /** Absolute path of the program. */
  readonly path: string;
  readonly args: readonly string[];
  /** Why a child that exited failed, as one line; undefined for a clean end. */
  exitProblem(stderr: string, code: number | null, signal: NodeJS.Signals | null): string | undefined;
  /** The typed error for a failure found at compressed byte `consumed`. */
  error(input: string, consumed: number, detail: string): InputError;
}

/** stderr kept from the child for the error message. */
export const CHILD_STDERR_LIMIT = 4096;
/** After SIGTERM, SIGKILL follows if the child is still there. */
const KILL_GRACE_MS = 2000;

/** The error when the program cannot be started at all. */
export function cannotRun(input: string, path: string, err: unknown): InputError {
  return new InputError('BAD_COMPRESSION', `cannot run ${path}: ${errorText(err)}`, { input }, { cause: err });
}

/**
 * `codec`'s program between the raw bytes and the decoded stream.
 * @param stdinFd a regular file positioned at its start, which the child reads directly
 *   (the compressed bytes then never pass through this process); otherwise the raw bytes are
 *   written to the child's stdin.
 */
export function childDecoder(ctx: DecodeContext, codec: ChildCodec, stdinFd?: number): Decoder {
  // node:child_process is required when a child is spawned, not at the top: most runs never need one (start-up time).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  const child = spawn(codec.path, [...codec.args], {
    stdio: [stdinFd ?? 'pipe', 'pipe', 'pipe'],
  }) as ChildProcessByStdio<Writable | null, Readable, Readable>;
  let stderr = '';
  let spawnError: Error | undefined;
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    if (stderr.length < CHILD_STDERR_LIMIT) stderr += text;
  });
  child.stderr.on('error', () => {});
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  child.on('error', (err) => {
    spawnError = err;
    ctx.fail(cannotRun(ctx.input, codec.path, err));
  });

  // Bytes handed to the child (for the error offset): the raw bytes read so far.
  const failure = (detail: string): InputError => codec.error(ctx.input, ctx.rawBytesRead(), detail);

  return streamDecoder(ctx, {
    codec: codec.name,
    input: child.stdin ?? undefined,
    output: child.stdout,
    mapError: (err) => failure(errorText(err)),
    // The child may stop reading when it finds bad data; its exit status explains.
    ignoreInputError: (err) => err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED',
    onOutputEnd: () => {
      void exited.then(({ code, signal }) => {
        if (ctx.out.destroyed || spawnError) return;
        const problem = codec.exitProblem(stderr, code, signal);
        if (!problem) ctx.out.push(null);
        else ctx.fail(failure(problem));
      });
    },
    onDestroy: () => {
      if (child.exitCode === null && child.signalCode === null && !spawnError) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        }, KILL_GRACE_MS);
        timer.unref();
        return exited.then(() => clearTimeout(timer));
      }
      return spawnError ? Promise.resolve() : exited.then(() => undefined);
    },
  });
}
