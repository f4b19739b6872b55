import type { Command } from 'commander';
import { UsageError } from '../errors';

export interface CommonInputFlags {
  header?: string[];
  gzipCodec?: string;
  zstdCodec?: string;
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
  return { head, opts };
}

/** Options every verb that reads an XVA accepts. */
export function commonInputOptions(cmd: Command): Command {
  return cmd
    .option('-H, --header <"Name: value">', 'extra HTTP header for URL inputs (repeatable)', collect)
    .option('--gzip-codec <codec>', 'gzip decoder: zlib (default, native) or pako (pure JS)')
    .option('--zstd-codec <codec>', 'zstd decoder: auto (default), zlib (Node >= 22.15), binary (zstd on PATH) or fzstd (pure JS)');
}
