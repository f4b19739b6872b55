/**
 * The default verb: `xva2img <input...> [-o DIR|FILE|-] [-O raw|qcow2|vmdk] …`.
 */
import * as fs from 'node:fs';
import type { Command } from 'commander';
import { convertXva, formatFromPath, type ConvertSummary } from '../convert';
import { ExitCode, UsageError } from '../errors';
import type { ImageFormat } from '../image/types';
import { NameAllocator } from '../output/naming';
import type { BadChunkPolicy } from '../xva/reader';
import { formatBytes, formatRate } from './format';
import { createProgress } from './progress';
import { interruptSignal, PROGRAM, reportError } from './run';
import { commonInputOptions, type CommonInputFlags } from './common-options';

interface ConvertFlags extends CommonInputFlags {
  output?: string;
  format?: string;
  disk?: string[];
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
  ignoreChecksums?: boolean;
  onBadChunk?: string;
  qcow2Compat?: string;
  includeSuspend?: boolean;
  perVmDir?: boolean;
}

const FORMATS: ImageFormat[] = ['raw', 'qcow2', 'vmdk'];

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function addConvertOptions(cmd: Command): Command {
  return commonInputOptions(cmd)
    .option('-o, --output <dir|file|->', 'output directory (default "."), an image file path for a single disk, or - for stdout')
    .option('-O, --format <format>', 'output format: raw, qcow2 or vmdk (default raw, or from the -o file extension)')
    .option('--disk <userdevice|ref>', 'convert only this disk (repeatable); needed with -o FILE or -o - when the VM has several', collect)
    .option('-f, --force', 'overwrite existing output files')
    .option('--json', 'print a JSON summary on stdout')
    .option('-q, --quiet', 'no progress bar and no human summary')
    .option('--ignore-checksums', 'report checksum mismatches as warnings, keep the data, exit 3 at the end')
    .option('--on-bad-chunk <policy>', 'fail (default), warn (keep data) or zero (write zeros instead); warn/zero exit 3')
    .option('--qcow2-compat <version>', 'qcow2 version: 1.1 (v3, default) or 0.10 (v2)')
    .option('--include-suspend', 'also write the suspend image (guest memory) of a suspended VM')
    .option('--per-vm-dir', 'write each VM\'s disks into <output>/<vm-name>/');
}

function parseFormat(f: string | undefined): ImageFormat | undefined {
  if (f === undefined) return undefined;
  const lower = f.toLowerCase() as ImageFormat;
  if (!FORMATS.includes(lower)) throw new UsageError(`unknown output format "${f}" (use raw, qcow2 or vmdk)`);
  return lower;
}

function parsePolicy(flags: ConvertFlags): BadChunkPolicy {
  const p = flags.onBadChunk ?? (flags.ignoreChecksums ? 'warn' : 'fail');
  if (p !== 'fail' && p !== 'warn' && p !== 'zero') throw new UsageError(`--on-bad-chunk must be fail, warn or zero, not "${p}"`);
  return p;
}

/** Decides whether -o names a directory, a single image file or stdout. */
function outputTarget(output: string | undefined): { outDir?: string; outFile?: string; stdout?: boolean } {
  if (output === undefined) return { outDir: '.' };
  if (output === '-') return { stdout: true };
  const isDir = fs.existsSync(output) && fs.statSync(output).isDirectory();
  if (!isDir && formatFromPath(output)) return { outFile: output };
  return { outDir: output };
}

export function printHumanSummary(s: ConvertSummary): void {
  const vm = s.vm;
  const mode = vm.hvm ? `HVM ${vm.firmware === 'uefi' ? 'UEFI' : 'BIOS'}` : 'PV';
  const lines = [
    `${PROGRAM}: ${s.input} (${s.compression === 'none' ? 'plain' : s.compression}${s.checksum ? `, ${s.checksum.toUpperCase()}` : ''}): VM "${vm.name}", ${vm.vcpus} vCPU, ${formatBytes(vm.memoryBytes)}, ${mode}${vm.isTemplate ? ', template' : ''}`,
  ];
  for (const d of s.disks) {
    const where = d.path ?? '(not written)';
    lines.push(
      `  disk ${d.userdevice}${d.bootable ? '*' : ' '} ${JSON.stringify(d.name)} ${formatBytes(d.virtualSize)}, ${d.chunks} chunks${d.keepAlives ? ` (${d.keepAlives} keep-alive)` : ''} -> ${where} (${formatBytes(d.bytesWritten)} data, ${formatBytes(d.virtualSize - d.bytesWritten)} holes)`,
    );
  }
  for (const c of s.cdroms) lines.push(`  cd   ${c.userdevice}  ${c.empty ? '(empty)' : JSON.stringify(c.isoName ?? '')} (not converted)`);
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  if (s.badChunks.length) {
    lines.push(`  ${s.badChunks.length} chunk(s) failed their checksum:`);
    for (const b of s.badChunks) lines.push(`    ${b.entry} at disk offset ${b.offset} (${b.length} bytes): ${b.action}`);
  }
  const total = s.disks.reduce((a, d) => a + d.virtualSize, 0);
  lines.push(`  done in ${s.seconds.toFixed(1)} s (${formatRate(s.tarBytes, s.seconds)} of archive, ${formatBytes(total)} of disks)`);
  process.stderr.write(lines.join('\n') + '\n');
}

export async function runConvert(inputs: string[], flags: ConvertFlags): Promise<number> {
  if (inputs.length === 0) throw new UsageError('no input given (a path, - for stdin, or a URL); see --help');
  const format = parseFormat(flags.format);
  const policy = parsePolicy(flags);
  const out = outputTarget(flags.output);
  if ((out.stdout || out.outFile) && inputs.length > 1) throw new UsageError('-o FILE and -o - take a single input');
  if (flags.qcow2Compat && flags.qcow2Compat !== '1.1' && flags.qcow2Compat !== '0.10') throw new UsageError('--qcow2-compat must be 1.1 or 0.10');
  if (out.stdout && process.stdout.isTTY) throw new UsageError('refusing to write a disk image to a terminal; redirect stdout or use -o FILE');
  const names = new NameAllocator();
  const summaries: ConvertSummary[] = [];
  let exit: number = ExitCode.OK;
  for (const input of inputs) {
    const progress = createProgress(input, !flags.quiet && !!process.stderr.isTTY);
    try {
      const summary = await convertXva(input, {
        ...out,
        stdout: out.stdout ? process.stdout : undefined,
        format,
        force: flags.force,
        disks: flags.disk,
        onBadChunk: policy,
        qcow2Compat: flags.qcow2Compat as '1.1' | '0.10' | undefined,
        includeSuspendImage: flags.includeSuspend,
        perVmSubdir: flags.perVmDir,
        names,
        headers: flags.header,
        gzipCodec: flags.gzipCodec as 'zlib' | 'pako' | undefined,
        zstdCodec: flags.zstdCodec as 'auto' | undefined,
        signal: interruptSignal,
        onProgress: (p) => progress.update(p),
      });
      progress.stop();
      summaries.push(summary);
      if (!flags.quiet) printHumanSummary(summary);
      if (summary.badChunks.length > 0) exit = Math.max(exit, ExitCode.CHECKSUM);
    } catch (err) {
      progress.stop();
      if (inputs.length === 1) throw err;
      exit = Math.max(exit, reportError(err));
    }
  }
  if (flags.json) process.stdout.write(JSON.stringify(inputs.length === 1 ? summaries[0] : summaries, null, 2) + '\n');
  return exit;
}
