/**
 * `xva2img verify <input...> [--json]`: one full pass per input checking the tar structure,
 * chunk placement and every checksum; nothing is written. Exit 0 only if every input is clean.
 * Report lines go to stdout (one per input, then each bad chunk); structural problems are
 * printed as `xva2img: <input>: <entry>: <message> (at byte N)` on stderr.
 */
import type { Command } from 'commander';
import { worstExitCode } from '../errors';
import { UsageError } from '../errors';
import { assertStdinNamedOnce } from '../input/open';
import { verifyXva, type VerifyResult } from '../ops/verify';
import { commonInputOptions, httpOptionsFrom, type CommonInputFlags } from './common-options';
import { formatBytes, formatRate } from './format';
import { createProgress } from './progress';
import { interruptSignal, PROGRAM, runVerb } from './run';

interface VerifyFlags extends CommonInputFlags {
  json?: boolean;
  quiet?: boolean;
}

export function formatVerifyResult(r: VerifyResult): string {
  const chunks = r.disks.reduce((a, d) => a + d.chunks, 0);
  const kind = r.checksum === 'xxh64' ? 'XXH64' : r.checksum === 'sha1' ? 'SHA-1' : 'no checksums';
  const vm = r.vm ? `VM ${JSON.stringify(r.vm.name)}, ` : '';
  const facts = `${vm}${r.disks.length} disk(s), ${chunks} chunks, ${kind}, ${formatBytes(r.tarBytes)} in ${r.seconds.toFixed(1)} s (${formatRate(r.tarBytes, r.seconds)})`;
  const lines: string[] = [];
  if (r.ok) {
    lines.push(`${r.input}: OK (${facts})`);
  } else if (r.problems.length === 0) {
    lines.push(`${r.input}: ${r.badChunks.length} BAD CHUNK(S) (${facts})`);
  } else {
    lines.push(`${r.input}: INVALID (${r.problems.length} problem(s)${r.badChunks.length ? `, ${r.badChunks.length} bad chunk(s)` : ''})`);
  }
  for (const b of badChunkTexts(r)) lines.push(`  ${b}`);
  for (const w of r.warnings) lines.push(`  warning: ${w}`);
  return lines.join('\n');
}

/** One text per bad chunk: entry, disk, offset, expected and actual checksum. */
function badChunkTexts(r: VerifyResult): string[] {
  return r.badChunks.map((b) => {
    const d = r.disks.find((x) => x.ref === b.disk);
    const disk = d?.userdevice != null ? `disk ${d.userdevice} (${b.disk})` : b.disk;
    return `bad chunk ${b.entry}: ${disk} offset ${b.offset} (${b.length} bytes): expected ${b.expected}, got ${b.actual}`;
  });
}

async function runVerify(inputs: string[], flags: VerifyFlags): Promise<number> {
  if (inputs.length === 0) throw new UsageError('no input given; see xva2img verify --help');
  assertStdinNamedOnce(inputs);
  const http = httpOptionsFrom(flags);
  const results: VerifyResult[] = [];
  for (const input of inputs) {
    const progress = createProgress(input, !flags.quiet && !!process.stderr.isTTY);
    let r: VerifyResult;
    try {
      r = await verifyXva(input, {
        http,
        headers: flags.header,
        gzipCodec: flags.gzipCodec,
        zstdCodec: flags.zstdCodec,
        signal: interruptSignal,
        onProgress: (p) => progress.update(p),
      });
      // Bad chunks are found by a complete pass; a structural problem ends the pass early.
      if (r.problems.length === 0) progress.done();
    } finally {
      progress.stop();
    }
    results.push(r);
    for (const p of r.problems) process.stderr.write(`${PROGRAM}: ${p.message.replace(/[\r\n]+/g, ' ')}\n`);
    if (!flags.json && !flags.quiet) process.stdout.write(formatVerifyResult(r) + '\n');
    // -q drops the report, not the problems: each bad chunk is a line on stderr instead.
    else if (flags.quiet) for (const b of badChunkTexts(r)) process.stderr.write(`${PROGRAM}: ${r.input}: ${b}\n`);
  }
  const exit = worstExitCode(results.map((r) => r.exitCode));
  if (!flags.json && !flags.quiet && results.length > 1) {
    const ok = results.filter((r) => r.ok).length;
    process.stdout.write(`${results.length} inputs: ${ok} clean, ${results.length - ok} with problems\n`);
  }
  if (flags.json) process.stdout.write(JSON.stringify(inputs.length === 1 ? results[0] : results, null, 2) + '\n');
  return exit;
}

export function registerVerify(program: Command): Command {
  const cmd = program
    .command('verify')
    .description('check the tar structure, chunk placement and every checksum of XVAs, writing nothing; exit 0 only if all are clean')
    .argument('<inputs...>', 'XVA files (plain, .gz or .zst), - for stdin, or http(s) URLs')
    .option('--json', 'print the results as JSON on stdout (an object, or an array for several inputs)')
    .option('-q, --quiet', 'no progress bar and no report lines (problems are still printed on stderr)');
  commonInputOptions(cmd)
    .addHelpText(
      'after',
      `
Examples:
  xva2img verify vm.xva                   every checksum and the structure
  xva2img verify backups/*.xva.zst        several inputs; exit 0 only if all are clean
  xva2img verify vm.xva.gz --json         bad chunks with their disk offsets as JSON

Exit codes: 0 all clean, 1 usage, 2 invalid/truncated/unreadable input,
            3 checksum failures (and no worse problem), 130 interrupted.`,
    )
    .action(async (inputs: string[], flags: VerifyFlags) => {
      await runVerb(() => runVerify(inputs, flags));
    });
  return cmd;
}
