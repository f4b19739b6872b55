import type { Command } from 'commander';
import { UsageError } from '../errors';
import type { HttpOptions } from '../input/types';

export interface CommonInputFlags {
  header?: string[];
  httpTimeout?: string;
  gzipCodec?: string;
  zstdCodec?: string;
}

/** commander accumulator for repeatable options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Options every verb that reads an XVA accepts. */
export function commonInputOptions(cmd: Command): Command {
  return cmd
    .option('-H, --header <"Name: value">', 'extra HTTP header for URL inputs (repeatable)', collect)
    .option('--http-timeout <seconds>', 'fail a URL input when the server sends nothing for this long (default 600, 0: wait forever)')
    .option('--gzip-codec <codec>', 'gzip decoder: zlib (default, native) or pako (pure JS)')
    .option('--zstd-codec <codec>', 'zstd decoder: auto (default), zlib (Node >= 22.15), binary (zstd on PATH) or fzstd (pure JS)');
}

/** The library's HttpOptions from the flags. */
export function httpOptionsFrom(flags: CommonInputFlags): HttpOptions {
  const options: HttpOptions = {};
  if (flags.httpTimeout !== undefined) {
    const seconds = /^\d+(\.\d+)?$/.test(flags.httpTimeout.trim()) ? Number(flags.httpTimeout) : NaN;
    if (!Number.isFinite(seconds)) throw new UsageError(`--http-timeout must be a number of seconds (0: wait forever), not "${flags.httpTimeout}"`);
    options.timeoutMs = Math.round(seconds * 1000);
  }
  return options;
}
