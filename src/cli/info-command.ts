/**
 * `xva2img info <input...> [--chunks] [--json]`: what an XVA holds, from ova.xml only (and,
 * with --chunks, from the chunk headers). Thin: parses flags, calls inspectXva, prints.
 */
import type { Command } from 'commander';
import { worstExitCode } from '../errors';
import { ExitCode, UsageError } from '../errors';
import { assertStdinNamedOnce } from '../input/open';
import { batchItemError, type BatchItemError } from '../ops/batch';
import { inspectXva, type XvaInfo } from '../ops/inspect';
import { commonInputOptions, httpOptionsFrom, type CommonInputFlags } from './common-options';
import { formatBytes } from './format';
import { createProgress } from './progress';
import { interruptSignal, reportError, runVerb } from './run';

interface InfoFlags extends CommonInputFlags {
  chunks?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/** Left-aligned columns separated by two spaces; `right` lists right-aligned column indexes. */
export function formatTable(rows: string[][], right: number[] = [], indent = '  '): string[] {
  if (rows.length === 0) return [];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => indent + r.map((cell, c) => (right.includes(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd());
}

function yesNo(b: boolean): string {
  return b ? 'yes' : 'no';
}

export function formatInfo(info: XvaInfo): string {
  const vm = info.vm;
  const p = info.producer;
  const lines: string[] = [];
  const compression = info.compression === 'none' ? 'none' : `${info.compression} (${info.codec})`;
  const raw = info.rawSize !== null ? `, ${formatBytes(info.rawSize)}` : '';
  lines.push(`Input:        ${info.input}`);
  lines.push(`Compression:  ${compression}${raw}`);
  const producer = [p.brand, p.version].filter(Boolean).join(' ') || 'unknown';
  const build = p.build ? `, build ${p.build}` : '';
  lines.push(`Producer:     ${producer}${build} (xapi ${p.xapiMajor}.${p.xapiMinor}${p.hostname ? `, host ${p.hostname}` : ''}${p.date ? `, ${p.date}` : ''})`);
  lines.push(`Export:       version ${info.exportVersion}`);
  lines.push(`Checksums:    ${info.checksum === 'xxh64' ? 'XXH64 (.xxhash)' : info.checksum === 'sha1' ? 'SHA-1 (.checksum)' : 'unknown'}`);
  lines.push('');
  lines.push(`VM:           ${JSON.stringify(vm.name)}${vm.isTemplate ? ' (template)' : ''}${vm.isSnapshot ? ' (snapshot)' : ''}`);
  if (vm.description) lines.push(`Description:  ${vm.description}`);
  lines.push(`UUID:         ${vm.uuid || '-'}`);
  lines.push(`vCPUs:        ${vm.vcpus}${vm.vcpusAtStartup && vm.vcpusAtStartup !== vm.vcpus ? ` (${vm.vcpusAtStartup} at startup)` : ''}`);
  lines.push(`Memory:       ${formatBytes(vm.memoryBytes)}`);
  const boot = vm.hvm ? `HVM, ${vm.firmware === 'uefi' ? 'UEFI' : 'BIOS'}${vm.bootOrder ? `, boot order ${vm.bootOrder}` : ''}` : `PV${vm.domainType && vm.domainType !== 'pv' ? ` (${vm.domainType})` : ''}`;
  lines.push(`Boot:         ${boot}`);
  lines.push(`Template:     ${yesNo(vm.isTemplate)}`);
  if (vm.powerState) lines.push(`Power state:  ${vm.powerState}`);

  lines.push('');
  lines.push(`Disks (${info.disks.length}):`);
  if (info.disks.length) {
    const withChunks = info.chunkScan !== null;
    const head = ['DEV', 'NAME', 'SIZE', 'BOOT', 'TYPE', 'REF'];
    if (withChunks) head.push('ALLOCATED', 'CHUNKS', 'KEEP-ALIVES');
    const rows = [head];
    for (const d of info.disks) {
      const row = [d.userdevice, JSON.stringify(d.name), formatBytes(d.virtualSize), yesNo(d.bootable), d.type + (d.vdiType && d.vdiType !== 'user' && d.type !== 'suspend' ? `/${d.vdiType}` : ''), d.ref];
      if (withChunks) {
        const c = d.chunkStats;
        row.push(c ? formatBytes(c.allocatedBytes) : '-', c ? String(c.chunks) : '-', c ? String(c.keepAlives) : '-');
      }
      rows.push(row);
    }
    lines.push(...formatTable(rows, withChunks ? [2, 6, 7, 8] : [2]));
  }
  if (info.cdroms.length) {
    lines.push('');
    lines.push(`CD drives (${info.cdroms.length}):`);
    lines.push(...formatTable([['DEV', 'MEDIA'], ...info.cdroms.map((c) => [c.userdevice, c.empty ? '(empty)' : JSON.stringify(c.isoName ?? '')])]));
  }
  lines.push('');
  lines.push(`NICs (${info.vifs.length}):`);
  if (info.vifs.length) {
    const rows = [['DEV', 'MAC', 'MTU', 'NETWORK']];
    for (const v of info.vifs) rows.push([v.device, v.mac || '-', v.mtu ? String(v.mtu) : '-', `${v.networkName ? JSON.stringify(v.networkName) : '-'}${v.bridge ? ` (${v.bridge})` : ''}`]);
    lines.push(...formatTable(rows, [2]));
  }
  if (info.chunkScan !== null && info.tarBytes !== null) {
    const total = info.disks.reduce((a, d) => a + (d.chunkStats?.allocatedBytes ?? 0), 0);
    lines.push('');
    lines.push(`Chunks counted from the tar headers (${info.chunkScan === 'seek' ? 'seeking over the data' : 'streamed, not hashed'}): ${formatBytes(total)} allocated, ${formatBytes(info.tarBytes)} of tar, ${info.seconds.toFixed(2)} s`);
  }
  for (const w of info.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

async function runInfo(inputs: string[], flags: InfoFlags): Promise<number> {
  if (inputs.length === 0) throw new UsageError('no input given; see xva2img info --help');
  assertStdinNamedOnce(inputs);
  const http = httpOptionsFrom(flags);
  /** The --json entries: each input's info, or what stopped it (as a conversion batch gives it). */
  const entries: Array<XvaInfo | { input: string; error: BatchItemError }> = [];
  let shown = 0;
  let exit: number = ExitCode.OK;
  for (const input of inputs) {
    const progress = createProgress(input, !!flags.chunks && !flags.quiet && !flags.json && !!process.stderr.isTTY);
    try {
      const info = await inspectXva(input, {
        chunks: flags.chunks,
        http,
        headers: flags.header,
        gzipCodec: flags.gzipCodec,
        zstdCodec: flags.zstdCodec,
        signal: interruptSignal,
        onProgress: (p) => progress.update(p),
      });
      progress.done();
      entries.push(info);
      if (!flags.json) process.stdout.write((shown++ > 0 ? '\n' : '') + formatInfo(info) + '\n');
    } catch (err) {
      progress.stop();
      exit = worstExitCode([exit, reportError(err)]);
      entries.push({ input, error: batchItemError(err, input) });
    }
  }
  if (flags.json) process.stdout.write(JSON.stringify(inputs.length === 1 ? entries[0] : entries, null, 2) + '\n');
  return exit;
}

export function registerInfo(program: Command): Command {
  const cmd = program
    .command('info')
    .description('show what an XVA holds: VM, disks, CD drives, NICs, producer, compression, checksum kind (reads only ova.xml)')
    .argument('<inputs...>', 'XVA files (plain, .gz or .zst), - for stdin, or http(s) URLs')
    .option('--chunks', 'also walk the chunk headers: per-disk allocated bytes, chunk and keep-alive counts (seeks over the data of a plain file)')
    .option('--json', 'print JSON on stdout (an object, or an array for several inputs)')
    .option('-q, --quiet', 'no progress bar');
  commonInputOptions(cmd)
    .addHelpText(
      'after',
      `
Examples:
  xva2img info vm.xva.gz                  VM, disks, NICs, producer, compression
  xva2img info vm.xva --chunks            plus allocated bytes per disk (fast on a plain file)
  xva2img info vm.xva --chunks --json     everything as JSON
  xva2img info 'https://xenhost/export?uuid=…' -H 'Cookie: session_id=…'

Exit codes: 0 ok, 1 usage, 2 invalid/truncated/unreadable input, 130 interrupted.`,
    )
    .action(async (inputs: string[], flags: InfoFlags) => {
      await runVerb(() => runInfo(inputs, flags));
    });
  return cmd;
}
