/**
 * Typed errors with stable codes. Every error the library raises on purpose is an XvaError;
 * the CLI maps `exitCode` to the process exit status and prints `describe()` as one line.
 */

/** Stable exit codes (documented in the README). */
export const ExitCode = {
  OK: 0,
  USAGE: 1,
  BAD_INPUT: 2,
  CHECKSUM: 3,
  OUTPUT: 4,
  INTERRUPTED: 130,
} as const;

/** Where in the input a problem sits; every field optional, filled as far as known. */
export interface ErrorLocation {
  /** Input as the user named it (path, "-" or URL). */
  input?: string;
  /** Tar entry name, e.g. `Ref:998/00000042`. */
  entry?: string;
  /** Byte offset in the (decompressed) tar stream. */
  offset?: number;
  /** Disk (VDI ref) concerned. */
  disk?: string;
}

export type XvaErrorCode =
  | 'USAGE'
  | 'INPUT_UNREADABLE'
  | 'INPUT_HTTP'
  | 'BAD_COMPRESSION'
  | 'TAR_BAD_HEADER'
  | 'TAR_TRUNCATED'
  | 'XVA_NO_OVA_XML'
  | 'XVA_BAD_OVA_XML'
  | 'XVA_TOO_LARGE'
  | 'XVA_BAD_ENTRY'
  | 'XVA_CHUNK_ORDER'
  | 'XVA_MISSING_CHECKSUM'
  | 'XVA_UNKNOWN_DISK'
  | 'XVA_MISSING_DISK'
  | 'XVA_DATA_PAST_END'
  | 'XVA_BAD_CHECKSUM'
  | 'IMAGE_BAD'
  | 'OUTPUT_EXISTS'
  | 'OUTPUT_IO'
  | 'OUTPUT_NO_SPACE'
  | 'OUTPUT_IN_USE'
  | 'OUTPUT_UNSUPPORTED'
  | 'INTERRUPTED';

/**
 * `text` with its control characters written as `\xNN`: what comes from the input (names,
 * checksum files) is shown, never acted on by a terminal.
 */
export function escapeControls(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * Whether `message` already names `input` as a word of its own ("no data from <url> for 5 s"),
 * not as a piece of another ("SHA-1" holds stdin's "-", "archive" a file named "a").
 */
function namesInput(message: string, input: string): boolean {
  const escaped = input.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[\\s'"(])${escaped}($|[\\s'"):,])`).test(message);
}

export class XvaError extends Error {
  readonly code: XvaErrorCode;
  readonly exitCode: number;
  location: ErrorLocation;

  constructor(code: XvaErrorCode, message: string, exitCode: number, location: ErrorLocation = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
    this.location = { ...location };
  }

  /** One line: `<input>: <entry>: <message> (byte <offset>)`. */
  describe(): string {
    const parts: string[] = [];
    if (this.location.input !== undefined && !namesInput(this.message, this.location.input)) parts.push(this.location.input);
    if (this.location.entry !== undefined && !this.message.startsWith(this.location.entry)) parts.push(this.location.entry);
    let line = [...parts, this.message].join(': ');
    if (this.location.offset !== undefined && !/\bbyte \d+/.test(this.message)) line += ` (at byte ${this.location.offset})`;
    return escapeControls(line.replace(/[\r\n]+/g, ' '));
  }

  /** Adds location facts that are not already set (callers further out know less). */
  at(location: ErrorLocation): this {
    for (const [k, v] of Object.entries(location) as [keyof ErrorLocation, never][]) {
      if (v !== undefined && this.location[k] === undefined) this.location[k] = v;
    }
    return this;
  }
}

/** Bad command-line usage or contradictory options. */
export class UsageError extends XvaError {
  constructor(message: string) {
    super('USAGE', message, ExitCode.USAGE);
  }
}

/** The input cannot be opened or read (missing file, HTTP error, decompressor failure). */
export class InputError extends XvaError {
  constructor(code: 'INPUT_UNREADABLE' | 'INPUT_HTTP' | 'BAD_COMPRESSION', message: string, location?: ErrorLocation, options?: { cause?: unknown }) {
    super(code, message, ExitCode.BAD_INPUT, location, options);
  }
}

/** The bytes are not a valid tar / XVA (structure, placement, metadata). */
export class XvaFormatError extends XvaError {
  constructor(code: XvaErrorCode, message: string, location?: ErrorLocation, options?: { cause?: unknown }) {
    super(code, message, ExitCode.BAD_INPUT, location, options);
  }
}

/** A chunk's data does not match its checksum file. */
export class ChecksumError extends XvaError {
  constructor(message: string, location?: ErrorLocation) {
    super('XVA_BAD_CHECKSUM', message, ExitCode.CHECKSUM, location);
  }
}

/** A disk image given as input (raw/qcow2) is unusable. */
export class ImageFormatError extends XvaError {
  constructor(message: string, location?: ErrorLocation) {
    super('IMAGE_BAD', message, ExitCode.BAD_INPUT, location);
  }
}

/** Writing the output failed (exists, no space, I/O error, unsupported destination). */
export class OutputError extends XvaError {
  constructor(code: 'OUTPUT_EXISTS' | 'OUTPUT_IO' | 'OUTPUT_NO_SPACE' | 'OUTPUT_IN_USE' | 'OUTPUT_UNSUPPORTED', message: string, options?: { cause?: unknown }) {
    super(code, message, ExitCode.OUTPUT, {}, options);
  }
}

export class InterruptedError extends XvaError {
  constructor(signal: string) {
    super('INTERRUPTED', `interrupted by ${signal}`, ExitCode.INTERRUPTED);
  }
}

/** Wraps a Node system error from writing into an OutputError with a readable message. */
export function outputErrorFrom(err: unknown, what: string): XvaError {
  if (err instanceof XvaError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOSPC') return new OutputError('OUTPUT_NO_SPACE', `${what}: no space left on device`, { cause: err });
  if (e?.code === 'EEXIST') return new OutputError('OUTPUT_EXISTS', `${what}: already exists (use --force to overwrite)`, { cause: err });
  if (e?.code === 'EPIPE') return new OutputError('OUTPUT_IO', `${what}: output pipe closed by the reader (EPIPE)`, { cause: err });
  return new OutputError('OUTPUT_IO', `${what}: ${systemErrorText(err)}`, { cause: err });
}

/**
 * "ENOENT: no such file or directory" from a Node system error: the code once (Node's message
 * already starts with it) and without Node's ", open '…'" tail (the caller names the file).
 */
export function systemErrorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const text = errorText(err)
    .replace(/^[A-Z0-9_]+: /, '')
    .replace(/, \w+ '.*'$/, '');
  return e?.code ? `${e.code}: ${text}` : text;
}

/** One-line text of an engine error ("unexpected end of file"). */
export function errorText(err: unknown): string {
  const e = err as { message?: unknown };
  const text = typeof e?.message === 'string' ? e.message : String(err);
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/** How bad an exit code is: interrupted > output error > invalid input > checksum > usage > ok. */
const SEVERITY: Record<number, number> = {
  [ExitCode.OK]: 0,
  [ExitCode.USAGE]: 1,
  [ExitCode.CHECKSUM]: 2,
  [ExitCode.BAD_INPUT]: 3,
  [ExitCode.OUTPUT]: 4,
  [ExitCode.INTERRUPTED]: 5,
};

/**
 * The exit code for several outcomes: the most severe one (interrupted 130 > output 4 >
 * invalid input 2 > checksum failures 3 > usage 1 > ok 0).
 */
export function worstExitCode(codes: Iterable<number>): number {
  let worst: number = ExitCode.OK;
  for (const c of codes) if ((SEVERITY[c] ?? 4) > (SEVERITY[worst] ?? 4)) worst = c;
  return worst;
}
