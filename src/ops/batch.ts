/**
 * convertBatch: runs `convertXva` over several inputs (files, "-", URLs), one after another or
 * `jobs` at a time, and collects one result per input. A failing input never stops the others;
 * its error (code, exit code, one-line message) is kept in its result. All inputs share one
 * NameAllocator, so two VMs with the same name get `vm-0.raw` and `vm-0-2.raw` (or use
 * `perVmSubdir`). A suffix is only for a clash with an output that exists or is being written:
 * an input that fails gives back the names it left no file under (convertXva does), so the
 * outputs of the others are named as if it had not been given.
 *
 * The batch exit code is the most severe per-input code (`worstExitCode`): 0 all ok, 3 some
 * chunks failed their checksum (salvaged with onBadChunk warn/zero, or refused), 2 some input
 * invalid or unreadable, 4 output error, 130 interrupted.
 */
import { checkInPlaceOptions } from './in-place-plan';
import { checkConvertOptions, convertXva, type ConvertOptions, type ConvertSummary } from './convert';
import { ExitCode, UsageError, worstExitCode, XvaError } from '../errors';
import { assertStdinNamedOnce } from '../input/open';
import { checkInteger } from '../option-checks';
import { NameAllocator } from '../output/naming';
import type { XvaMetadata } from '../xva/metadata/model';
import type { XvaProgress } from '../xva/reader';

/** Most inputs converted at the same time. */
export const MAX_JOBS = 64;

export interface BatchOptions extends Omit<ConvertOptions, 'onProgress' | 'onWarning' | 'onMetadata'> {
  /** How many inputs convert at the same time (default 1: one after another). */
  jobs?: number;
  onStart?(index: number, input: string): void;
  onProgress?(index: number, progress: XvaProgress): void;
  onWarning?(index: number, message: string): void;
  onMetadata?(index: number, meta: XvaMetadata): void;
  /** Called as each input finishes (in completion order). */
  onDone?(item: BatchItemResult): void;
  /** The converter to run (default convertXva; tests substitute their own). */
  convert?: (input: string, options: ConvertOptions) => Promise<ConvertSummary>;
}

export type BatchStatus = 'ok' | 'bad-chunks' | 'failed' | 'skipped';

export interface BatchItemError {
  code: string;
  exitCode: number;
  /** One line: `<input>: <entry>: <message> (at byte N)`. */
  message: string;
}

export interface BatchItemResult {
  index: number;
  input: string;
  /** ok; bad-chunks (converted, but some chunks failed their checksum); failed; skipped (interrupted before it started). */
  status: BatchStatus;
  exitCode: number;
  vmName: string | null;
  /** Disks written (or, when it failed, disks the VM has). */
  disks: number;
  seconds: number;
  /** Bytes of (decompressed) tar stream processed. */
  bytesRead: number;
  /** bytesRead / seconds. */
  throughput: number;
  summary?: ConvertSummary;
  error?: BatchItemError;
}

export interface BatchResult {
  ok: boolean;
  exitCode: number;
  items: BatchItemResult[];
  seconds: number;
}

/** What stopped an input, as results and `--json` give it (code, exit code, one-line message). */
export function batchItemError(err: unknown, input: string): BatchItemError {
  if (err instanceof XvaError) {
    err.at({ input });
    return { code: err.code, exitCode: err.exitCode, message: err.describe() };
  }
  const e = err as Error;
  return { code: 'INTERNAL', exitCode: ExitCode.OUTPUT, message: `${input}: internal error: ${e?.message ?? String(err)}` };
}

/** The original error of a failed item (not serialised to JSON). */
export function batchItemCause(item: BatchItemResult): unknown {
  return (item as unknown as { cause?: unknown }).cause;
}

export async function convertBatch(inputs: readonly string[], options: BatchOptions = {}): Promise<BatchResult> {
  const started = Date.now();
  assertStdinNamedOnce(inputs);
  if ((options.outFile || options.stdout || options.targets?.length) && inputs.length > 1) throw new UsageError('an output file, stream or --target takes a single input; give an output directory for several');
  // Checked before any input starts: a bad option is the caller's error, not every input's.
  checkConvertOptions(options);
  checkInPlaceOptions(options);
  const jobs = Math.min(checkInteger(options.jobs, 'jobs', 1, MAX_JOBS) ?? 1, inputs.length || 1);
  const { jobs: _jobs, onStart, onProgress, onWarning, onMetadata, onDone, convert: convertFn, ...convertOptions } = options;
  const convert = convertFn ?? convertXva;
  const names = options.names ?? new NameAllocator();
  const items: BatchItemResult[] = new Array(inputs.length);
  let nextIndex = 0;

  const runOne = async (index: number): Promise<void> => {
    const input = inputs[index]!;
    const t0 = Date.now();
    const item: BatchItemResult = { index, input, status: 'ok', exitCode: ExitCode.OK, vmName: null, disks: 0, seconds: 0, bytesRead: 0, throughput: 0 };
    if (options.signal?.aborted) {
      item.status = 'skipped';
      item.exitCode = ExitCode.INTERRUPTED;
      const cause = new XvaError('INTERRUPTED', 'not started (interrupted)', ExitCode.INTERRUPTED, { input });
      item.error = batchItemError(cause, input);
      Object.defineProperty(item, 'cause', { value: cause, enumerable: false });
      items[index] = item;
      onDone?.(item);
      return;
    }
    onStart?.(index, input);
    let lastTar = 0;
    try {
      const summary = await convert(input, {
        ...convertOptions,
        names,
        onMetadata: (meta) => {
          item.vmName = meta.vm.name;
          item.disks = meta.disks.filter((d) => !d.isSuspendImage).length;
          onMetadata?.(index, meta);
        },
        onProgress: (p) => {
          lastTar = p.tarBytes;
          onProgress?.(index, p);
        },
        onWarning: (m) => onWarning?.(index, m),
      });
      item.summary = summary;
      item.input = summary.input;
      item.vmName = summary.vm.name;
      item.disks = summary.disks.length;
      item.bytesRead = summary.tarBytes;
      if (summary.badChunks.length > 0) {
        item.status = 'bad-chunks';
        item.exitCode = ExitCode.CHECKSUM;
      }
    } catch (err) {
      const error = batchItemError(err, input);
      item.status = 'failed';
      item.exitCode = error.exitCode;
      item.error = error;
      item.bytesRead = lastTar;
      Object.defineProperty(item, 'cause', { value: err, enumerable: false });
    }
    item.seconds = (Date.now() - t0) / 1000;
    item.throughput = item.seconds > 0 ? item.bytesRead / item.seconds : 0;
    items[index] = item;
    onDone?.(item);
  };

  const worker = async (): Promise<void> => {
    while (nextIndex < inputs.length) {
      const i = nextIndex++;
      await runOne(i);
    }
  };
  await Promise.all(Array.from({ length: jobs }, () => worker()));

  const exitCode = worstExitCode(items.map((it) => it.exitCode));
  return { ok: exitCode === ExitCode.OK, exitCode, items, seconds: (Date.now() - started) / 1000 };
}
