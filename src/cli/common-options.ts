import * as fs from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { UsageError } from '../errors';
import { certificatesIn, checkedPins } from '../input/tls-trust';
import { GZIP_CODECS, HTTP_MAX_TIMEOUT_MS, ZSTD_CODECS, type HttpOptions } from '../input/types';
import { formatBytes, parseSize } from './format';
import { PROGRAM } from './run';

export interface CommonInputFlags {
  header?: string[];
  httpTimeout?: string;
  caCert?: string;
  pin?: string[];
  insecure?: boolean;
  locationTrusted?: boolean;
  gzipCodec?: (typeof GZIP_CODECS)[number];
  zstdCodec?: (typeof ZSTD_CODECS)[number];
}

/** commander accumulator for repeatable options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `path[,key=value…]`: trailing `,key=value` parts with a known key are options, the rest is the path. */
export function splitOptions(text: string, keys: readonly string[], what: string): { head: string; opts: Record<string, string> } {
  const parts = text.split(',');
  const opts: Record<string, string> = {};
  while (parts.length > 1) {
    const last = parts[parts.length - 1]!;
    const m = /^([a-z-]+)=(.*)$/i.exec(last);
    if (!m || !keys.includes(m[1]!.toLowerCase())) break;
    opts[m[1]!.toLowerCase()] = m[2]!;
    parts.pop();
  }
  const head = parts.join(',');
  if (!head) throw new UsageError(`${what}: empty value in "${text}"`);
  // A path may hold commas, so an unknown key=value stays in it; but where no such file exists
  // it is far more likely a misspelt option ("userdevic=2") than a file name.
  const named = [...head.matchAll(/,([a-z-]+)=/gi)].map((m) => m[1]!);
  if (named.length && !fs.existsSync(head)) {
    const unknown = named.find((k) => !keys.includes(k.toLowerCase())) ?? named[0];
    throw new UsageError(`${what}: unknown option "${unknown}" in "${text}" (options: ${keys.join(', ')})`);
  }
  return { head, opts };
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
    .option('--http-timeout <seconds>', 'fail a URL input when the server sends nothing for this long (default 600, 0: wait forever)')
    .option('--ca-cert <file>', 'also trust the CA certificate(s) in this PEM or DER file for https URLs (a self-signed server certificate is its own CA)')
    .option('--pin <sha256>', 'accept only the https server certificate with this SHA-256 fingerprint, whoever signed it (repeatable)', collect)
    .option('-k, --insecure', 'accept any https server certificate (no protection against interception)')
    .option('--location-trusted', 'send URL credentials and -H Authorization/Cookie to redirect targets on other hosts too (a pool master redirecting to a member)')
    .addOption(choiceOption('--gzip-codec <codec>', 'gzip decoder: auto (default: igzip if on PATH, else zlib), igzip (ISA-L program), zlib (node:zlib) or pako (pure JS)', GZIP_CODECS))
    .addOption(choiceOption('--zstd-codec <codec>', 'zstd decoder: auto (default: binary if zstd is on PATH, else zlib if Node >= 22.15, else fzstd), binary (the zstd program), zlib (node:zlib) or fzstd (pure JS)', ZSTD_CODECS));
}

/** The library's HttpOptions from the flags; prints the -k warning. */
export function httpOptionsFrom(flags: CommonInputFlags): HttpOptions {
  const options: HttpOptions = {};
  if (flags.httpTimeout !== undefined) {
    const seconds = /^\d+(\.\d+)?$/.test(flags.httpTimeout.trim()) ? Number(flags.httpTimeout) : NaN;
    const most = Math.floor(HTTP_MAX_TIMEOUT_MS / 1000);
    if (!Number.isFinite(seconds) || seconds > most) throw new UsageError(`--http-timeout must be a number of seconds from 0 (wait forever) to ${most}, not "${flags.httpTimeout}"`);
    options.timeoutMs = Math.round(seconds * 1000);
  }
  if (flags.caCert !== undefined) options.ca = readCaCertificates(flags.caCert);
  if (flags.pin) options.pin = flags.pin;
  if (flags.insecure) options.insecure = true;
  if (flags.locationTrusted) options.locationTrusted = true;
  // Bad pins and contradictions are usage errors now, even if no input turns out to be a URL.
  checkedPins(options);
  if (options.insecure) {
    process.stderr.write(`${PROGRAM}: warning: -k/--insecure: https server certificates are not checked; anyone on the path can read or change the download\n`);
  }
  return options;
}

/** The certificates of --ca-cert FILE, checked now so that a bad file is named before any work. */
function readCaCertificates(file: string): string[] {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`--ca-cert ${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return certificatesIn(bytes, `--ca-cert ${file}`);
}
