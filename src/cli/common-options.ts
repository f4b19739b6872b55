import type { Command } from 'commander';

export interface CommonInputFlags {
  header?: string[];
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
    .option('--gzip-codec <codec>', 'gzip decoder: auto (default: igzip if on PATH, else zlib), igzip (ISA-L program), zlib (node:zlib) or pako (pure JS)')
    .option('--zstd-codec <codec>', 'zstd decoder: auto (default), zlib (Node >= 22.15), binary (zstd on PATH) or fzstd (pure JS)');
}
