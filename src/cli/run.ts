/**
 * Process-level plumbing shared by every verb: error → one line on stderr + exit code,
 * SIGINT/SIGTERM → remove partial outputs (devices written in place keep what they got, and
 * the message says so) and exit 130, EPIPE on stdout → exit 4.
 */
import { ExitCode, InterruptedError, XvaError } from '../errors';
import { closeAllInPlaceSync, keptInPlaceNote, openInPlacePaths } from '../output/in-place';
import { removeAllPartFilesSync } from '../output/part-file';

export const PROGRAM = 'xva2img';

/** An error as printed: `xva2img: <where>: <what>` (an unexpected one with its stack). */
export function errorLine(err: unknown): string {
  if (err instanceof XvaError) return `${PROGRAM}: ${err.describe()}`;
  const e = err as Error;
  return `${PROGRAM}: internal error: ${e?.stack ?? String(err)}`;
}

/** Prints an error (errorLine) on stderr and returns the exit code to use (4 for an unexpected one). */
export function reportError(err: unknown): number {
  process.stderr.write(errorLine(err) + '\n');
  return err instanceof XvaError ? err.exitCode : ExitCode.OUTPUT;
}

let installed = false;
const abortController = new AbortController();

/** Aborted on SIGINT/SIGTERM; long operations pass it down. */
export const interruptSignal: AbortSignal = abortController.signal;

let stopHandler: ((signal: NodeJS.Signals) => void) | undefined;

/**
 * For verbs whose normal end is a signal (`serve`): the next SIGINT/SIGTERM calls `handler`
 * instead of interrupting (exit 130). Returns a function that removes the handler.
 */
export function onStopSignal(handler: (signal: NodeJS.Signals) => void): () => void {
  stopHandler = handler;
  return () => {
    if (stopHandler === handler) stopHandler = undefined;
  };
}

export function installProcessHandlers(): void {
  if (installed) return;
  installed = true;
  const onSignal = (sig: NodeJS.Signals): void => {
    const stop = stopHandler;
    if (stop) {
      // A server's normal end; a second signal takes the default path below.
      stopHandler = undefined;
      stop(sig);
      return;
    }
    removeAllPartFilesSync();
    const kept = openInPlacePaths();
    closeAllInPlaceSync();
    abortController.abort(new InterruptedError(sig));
    // On a terminal the line starts below whatever ^C left on the progress line; elsewhere no blank line.
    const lead = process.stderr.isTTY ? '\n' : '';
    process.stderr.write(`${lead}${PROGRAM}: interrupted by ${sig}; partial outputs removed${keptInPlaceNote(kept, 'so far')}\n`);
    process.exit(ExitCode.INTERRUPTED);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    removeAllPartFilesSync();
    if (err.code === 'EPIPE') {
      process.stderr.write(`${PROGRAM}: standard output closed by the reader (EPIPE)\n`);
      process.exit(ExitCode.OUTPUT);
    }
    process.stderr.write(`${PROGRAM}: standard output: ${err.message}\n`);
    process.exit(ExitCode.OUTPUT);
  });
}

/** Runs a verb: maps errors to exit codes and sets process.exitCode. */
export async function runVerb(fn: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await fn();
  } catch (err) {
    removeAllPartFilesSync();
    process.exitCode = reportError(err);
  }
}
