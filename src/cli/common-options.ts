import { InvalidArgumentError, Option, type Command } from 'commander';
import { GZIP_CODECS, ZSTD_CODECS } from '../input/types';
import { formatBytes, parseSize } from './format';

export interface CommonInputFlags {
  header?: string[];
  gzipCodec?: (typeof GZIP_CODECS)[number];
  zstdCodec?: (typeof ZSTD_CODECS)[number];
}

/** commander accumulator for repeatable options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * An option whose value is one of `choices` (any case), taken from the library constant that owns
 * the set. Anything else is refused by commander: exit 1 and one line naming the allowed values.
 */
export function choiceOption<T extends string>(flags: string, description: string, choices: readonly T[]): Option {
  return new Option(flags, description).choices(choices).argParser((value: string): T => {
    const v = value.toLowerCase();
    if (!(choices as readonly string[]).includes(v)) throw new InvalidArgumentError(`Allowed choices are ${choices.join(', ')}.`);
    return v as T;
  });
}

/** An option whose value is a whole number from `min` to `max`, parsed to a number. */
export function integerOption(flags: string, description: string, min: number, max: number): Option {
  return new Option(flags, description).argParser((value: string): number => {
    if (!/^\s*\d+\s*$/.test(value) || Number(value) < min || Number(value) > max) throw new InvalidArgumentError(`Expected a whole number from ${min} to ${max}.`);
    return Number(value);
  });
}

/** An option whose value is a size (4G, 512M, 1.5GiB, 1048576) of at least `min` bytes, parsed to bytes. */
export function sizeOption(flags: string, description: string, min: number): Option {
  return new Option(flags, description).argParser((value: string): number => {
    let bytes: number;
    try {
      bytes = parseSize(value);
    } catch {
      throw new InvalidArgumentError('Expected a size such as 4G or 512M.');
    }
    if (bytes < min) throw new InvalidArgumentError(`Expected at least ${formatBytes(min)}.`);
    return bytes;
  });
}

/** Options every verb that reads an XVA accepts. */
export function commonInputOptions(cmd: Command): Command {
  return cmd
    .option('-H, --header <"Name: value">', 'extra HTTP header for URL inputs (repeatable)', collect)
    .addOption(choiceOption('--gzip-codec <codec>', `gzip decoder (default ${GZIP_CODECS[0]}: node:zlib, native; pako is pure JS)`, GZIP_CODECS))
    .addOption(choiceOption('--zstd-codec <codec>', 'zstd decoder: auto (default) takes zlib (Node >= 22.15), else binary (zstd on PATH), else fzstd (pure JS)', ZSTD_CODECS));
}
