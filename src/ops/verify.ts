/**
 * verifyXva: one full pass over an XVA that checks the tar structure, chunk placement and every
 * checksum, and writes nothing (`xva2img verify`).
 *
 * Bad chunks do not stop the pass: every one is listed with its disk offset. A structural
 * problem (truncation, bad header, misplaced chunk, unreadable input) ends the pass and is
 * reported as a problem. The result's `exitCode` follows the CLI's codes: 0 clean, 3 checksum
 * failures only, 2 invalid/truncated/unreadable input (wins over 3).
 */
import { ExitCode, XvaError, type XvaErrorCode } from '../errors';
import { worstExitCode } from '../errors';
import { checkInputOptions, openInput } from '../input/open';
import type { InputSource, OpenInputOptions } from '../input/types';
import type { ChecksumKind } from '../xva/format';
import { readXva, type BadChunk, type DiskReadStats, type XvaProgress } from '../xva/reader';

export interface VerifyOptions extends OpenInputOptions {
  signal?: AbortSignal;
  onProgress?(progress: XvaProgress): void;
  onWarning?(message: string): void;
}

/** A problem that makes the archive invalid (not a bad chunk). */
export interface VerifyProblem {
  code: XvaErrorCode;
  exitCode: number;
  /** One line, as the CLI prints it (input, entry, message, byte offset). */
  message: string;
  entry?: string;
  offset?: number;
  disk?: string;
  /** The original error (not serialised). */
  error?: XvaError;
}

export interface VerifyResult {
  input: string;
  /** True only when the structure is valid and every checksum matched. */
  ok: boolean;
  exitCode: number;
  compression: string | null;
  vm: { name: string; uuid: string } | null;
  checksum: ChecksumKind | null;
  disks: Array<Pick<DiskReadStats, 'ref' | 'chunks' | 'keepAlives' | 'dataBytes' | 'bytesPlaced'> & { userdevice: string | null; virtualSize: number | null }>;
  badChunks: BadChunk[];
  problems: VerifyProblem[];
  /** Non-fatal remarks (e.g. a short last chunk zero-filled, an unexpected entry skipped). */
  warnings: string[];
  tarBytes: number;
  seconds: number;
}


function problemOf(err: XvaError): VerifyProblem {
  const p: VerifyProblem = {
    code: err.code,
    exitCode: err.exitCode,
    message: err.describe(),
    entry: err.location.entry,
    offset: err.location.offset,
    disk: err.location.disk,
  };
  // Kept for callers, left out of JSON.
  Object.defineProperty(p, 'error', { value: err, enumerable: false });
  return p;
}

/**
 * Verifies one input. Never throws for a bad or unreadable archive (those become `problems`);
 * rethrows interruption (the signal's reason) and programming errors.
 */
export async function verifyXva(input: string | InputSource, options: VerifyOptions = {}): Promise<VerifyResult> {
  const started = Date.now();
  checkInputOptions(options); // a bad option is the caller's error, not a problem of the archive
  const name = typeof input === 'string' ? input : input.name;
  const result: VerifyResult = {
    input: name,
    ok: false,
    exitCode: ExitCode.OK,
    compression: null,
    vm: null,
    checksum: null,
    disks: [],
    badChunks: [],
    problems: [],
    warnings: [],
    tarBytes: 0,
    seconds: 0,
  };
  const seen: string[] = [];
  const mismatches: string[] = [];
  let source: InputSource | undefined;
  try {
    source = typeof input === 'string' ? await openInput(input, options) : input;
    result.input = source.name;
    result.compression = source.compression;
    const src = source;
    const read = await readXva(
      src,
      {
        onMetadata: (meta) => {
          result.vm = { name: meta.vm.name, uuid: meta.vm.uuid };
        },
        onWarning: (m) => {
          seen.push(m);
          options.onWarning?.(m);
        },
        onBadChunk: (_bad, m) => mismatches.push(m),
        onProgress: options.onProgress,
      },
      // 'warn' keeps going past a bad chunk so that every one is listed; nothing is written.
      { onBadChunk: 'warn', verifyChecksums: true, signal: options.signal },
    );
    const meta = read.metadata;
    result.checksum = read.checksum ?? null;
    result.badChunks = read.badChunks;
    result.tarBytes = read.tarBytes;
    result.disks = read.disks.map((s) => {
      const d = meta.disks.find((x) => x.ref === s.ref);
      return {
        ref: s.ref,
        userdevice: d?.userdevice ?? null,
        virtualSize: d?.virtualSize ?? null,
        chunks: s.chunks,
        keepAlives: s.keepAlives,
        dataBytes: s.dataBytes,
        bytesPlaced: s.bytesPlaced,
      };
    });
  } catch (err) {
    if (options.signal?.aborted && err === options.signal.reason) throw err;
    if (!(err instanceof XvaError)) throw err;
    if (err.code === 'INTERRUPTED') throw err;
    err.at({ input: result.input });
    result.problems.push(problemOf(err));
  } finally {
    await source?.close();
  }
  // Mismatches seen before a fatal problem are not in a read result: keep them as problems.
  if (result.problems.length > 0) {
    const earlier: VerifyProblem[] = mismatches.map((m) => ({ code: 'XVA_BAD_CHECKSUM', exitCode: ExitCode.CHECKSUM, message: `${result.input}: ${m.replace(/; kept as is$/, '')}` }));
    result.problems.unshift(...earlier);
  }
  result.warnings = seen;
  result.exitCode = worstExitCode([result.badChunks.length ? ExitCode.CHECKSUM : ExitCode.OK, ...result.problems.map((p) => p.exitCode)]);
  result.ok = result.exitCode === ExitCode.OK;
  result.seconds = (Date.now() - started) / 1000;
  return result;
}
