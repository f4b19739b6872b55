/**
 * The default verb: `xva2img <input...> [-o DIR|FILE|-] [-O raw|qcow2|vmdk] [--jobs N] …`.
 *
 * One input: a human summary on stderr, `--json` prints one JSON object (ConvertSummary).
 * Several inputs: converted one after another (or `--jobs N` at once) by convertBatch; one
 * failing input does not stop the others; progress shows one bar per running input and a
 * total; at the end a table on stderr and, with `--json`, one JSON array on stdout.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { convertBatch, batchItemCause, MAX_JOBS, type BatchItemResult } from '../ops/batch';
import { formatFromPath, type ConvertedDisk, type ConvertSummary, type InPlaceResult } from '../ops/convert';
import { UsageError } from '../errors';
import { assertStdinNamedOnce } from '../input/open';
import { QCOW2_COMPATS, type Qcow2Compat } from '../image/qcow2/layout';
import { IMAGE_FORMATS, type ImageFormat } from '../image/types';
import { NameAllocator } from '../output/naming';
import { inPlaceKindOf } from '../output/in-place';
import { parseTargetSpecs } from '../ops/in-place-plan';
import { BAD_CHUNK_POLICIES, type BadChunkPolicy } from '../xva/reader';
import { formatBytes, formatRate } from './format';
import { createBatchProgress, type ProgressReporter } from './progress';
import { errorLine, interruptSignal, PROGRAM } from './run';
import { choiceOption, collect, commonInputOptions, httpOptionsFrom, integerOption, type CommonInputFlags } from './common-options';

interface ConvertFlags extends CommonInputFlags {
  output?: string;
  format?: ImageFormat;
  disk?: string[];
  force?: boolean;
  /** false with --no-sync */
  sync?: boolean;
  /** true with --direct-io (false with --no-direct-io, the default) */
  directIo?: boolean;
  json?: boolean;
  quiet?: boolean;
  ignoreChecksums?: boolean;
  onBadChunk?: BadChunkPolicy;
  qcow2Compat?: Qcow2Compat;
  includeSuspend?: boolean;
  perVmDir?: boolean;
  jobs?: number;
  target?: string[];
  /** false with -n / --no-create */
  create?: boolean;
  targetIsZero?: boolean;
}

export function addConvertOptions(cmd: Command): Command {
  return commonInputOptions(cmd)
    .option('-o, --output <dir|file|->', 'output directory (default "."), an image file path for a single disk, or - for stdout')
    .addOption(choiceOption('-O, --format <format>', 'output format (default raw, or from the -o file extension)', IMAGE_FORMATS))
    .option('--disk <userdevice|ref>', 'convert only this disk (repeatable); needed with -o FILE or -o - when the VM has several', collect)
    .option('-f, --force', 'overwrite existing output files')
    .option('--target <userdevice|ref>=<path>', 'write this disk into an existing block device (or, with -n, file), in place (repeatable); only the named disks are written', collect)
    .option('-n, --no-create', 'with -o FILE or --target: write into the existing regular file in place (not created, not truncated)')
    .option('--target-is-zero', 'the devices/files written in place read as zeros (fresh thin LV, zvol, sparse file): do not write zeros over holes')
    .option('--no-sync', 'do not fsync images before renaming them into place (faster; unsafe if the machine crashes, like qemu-img -t unsafe)')
    .option('--direct-io', 'write images with O_DIRECT, bypassing the page cache (like qemu-img -t none); usually slower, see Performance in the README')
    .option('--no-direct-io', 'write images through the page cache (the default)')
    .option('--json', 'print a JSON summary on stdout')
    .option('-q, --quiet', 'no progress bar and no human summary (warnings and bad chunks are still printed on stderr)')
    .option('--ignore-checksums', 'report checksum mismatches as warnings, keep the data, exit 3 at the end')
    .addOption(choiceOption('--on-bad-chunk <policy>', 'a chunk failing its checksum: fail (default), warn (keep data) or zero (write zeros instead); warn/zero exit 3', BAD_CHUNK_POLICIES))
    .addOption(choiceOption('--qcow2-compat <version>', 'qcow2 version: 1.1 (v3, default) or 0.10 (v2)', QCOW2_COMPATS))
    .option('--include-suspend', 'also write the suspend image (guest memory) of a suspended VM')
    .option('--per-vm-dir', 'write each VM\'s disks into <output>/<vm-name>/ (avoids name clashes between VMs in a batch)')
    .addOption(integerOption('-j, --jobs <n>', 'with several inputs: convert N at the same time (default 1, one after another)', 1, MAX_JOBS));
}

/**
 * Decides whether -o names a directory, a single image file or stdout. A block device, or with
 * -n an existing regular file, is a single image written in place.
 */
function outputTarget(output: string | undefined, noCreate: boolean): { outDir?: string; outFile?: string; stdout?: boolean } {
  if (output === undefined) return { outDir: '.' };
  if (output === '-') return { stdout: true };
  if (output === '') throw new UsageError('-o: empty value (give a directory, an image file or -)');
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(output);
  } catch {
    // missing, or under a file: creating it reports that
  }
  if (st && !st.isDirectory() && !st.isFile() && !st.isBlockDevice()) {
    throw new UsageError(`-o ${output}: not a directory, a file or a block device (for a pipe or /dev/null: -o - and redirect)`);
  }
  const kind = inPlaceKindOf(output);
  if (kind === 'block-device' || (noCreate && kind !== 'missing')) return { outFile: output };
  const isDir = st?.isDirectory() === true;
  if (output.endsWith('/') || output.endsWith(path.sep)) return { outDir: output };
  if (!isDir && formatFromPath(output)) return { outFile: output };
  return { outDir: output };
}

function vmLine(s: ConvertSummary): string {
  const vm = s.vm;
  const mode = vm.hvm ? `HVM ${vm.firmware === 'uefi' ? 'UEFI' : 'BIOS'}` : 'PV';
  return `${PROGRAM}: ${s.input} (${s.compression === 'none' ? 'plain' : s.compression}${s.checksum ? `, ${s.checksum.toUpperCase()}` : ''}): VM "${vm.name}", ${vm.vcpus} vCPU, ${formatBytes(vm.memoryBytes)}, ${mode}${vm.isTemplate ? ', template' : ''}`;
}

/** The bad chunks of a conversion (salvage), one line each with the disk offset. */
export function badChunkLines(s: ConvertSummary, indent = '  '): string[] {
  if (!s.badChunks.length) return [];
  const lines = [`${indent}${s.badChunks.length} chunk(s) failed their checksum:`];
  for (const b of s.badChunks) {
    const disk = s.disks.find((d) => d.ref === b.disk);
    const where = disk ? `disk ${disk.userdevice} (${b.disk})` : b.disk;
    lines.push(`${indent}  ${b.entry}: ${where} offset ${b.offset} (${b.length} bytes): ${b.action === 'zeroed' ? 'written as zeros' : 'kept as is'}`);
  }
  return lines;
}

/** The warnings of a conversion other than its bad chunks' (badChunkLines lists those). */
function ownWarnings(s: ConvertSummary): string[] {
  return s.warnings.filter((w) => !s.badChunks.some((b) => w.startsWith(`${b.entry}: `)));
}

/** What -q still prints of a conversion: its warnings and bad chunks, each naming the input. */
export function problemLines(s: ConvertSummary): string[] {
  const lines = ownWarnings(s).map((w) => `warning: ${w}`);
  lines.push(...badChunkLines(s, '').map((l) => l.trimStart()));
  return lines.map((l) => `${PROGRAM}: ${s.input}: ${l}`);
}

/** The human summary of one conversion (several lines, no trailing newline). */
export function formatHumanSummary(s: ConvertSummary): string {
  const lines = [vmLine(s)];
  for (const d of s.disks) {
    const where = d.path ?? '(not written)';
    lines.push(
      `  disk ${d.userdevice}${d.bootable ? '*' : ' '} ${JSON.stringify(d.name)} ${formatBytes(d.virtualSize)}, ${d.chunks} chunks${d.keepAlives ? ` (${d.keepAlives} keep-alive)` : ''} -> ${where} (${d.inPlace ? inPlaceText(d, d.inPlace) : `${formatBytes(d.bytesWritten)} data, ${formatBytes(d.virtualSize - d.bytesWritten)} holes`})`,
    );
  }
  if (s.unselectedDisks.length) lines.push(`  disk ${s.unselectedDisks.join(', ')}: not written (not selected)`);
  for (const c of s.cdroms) lines.push(`  cd   ${c.userdevice}  ${c.empty ? '(empty)' : JSON.stringify(c.isoName ?? '')} (not converted)`);
  for (const w of ownWarnings(s)) lines.push(`  warning: ${w}`);
  lines.push(...badChunkLines(s));
  const total = s.disks.reduce((a, d) => a + d.virtualSize, 0);
  lines.push(`  done in ${s.seconds.toFixed(1)} s (${formatRate(s.tarBytes, s.seconds)} of archive, ${formatBytes(total)} of disks)`);
  return lines.join('\n');
}

/** What a disk written into a device or existing file did there: data, holes, room left. */
function inPlaceText(d: ConvertedDisk, p: InPlaceResult): string {
  const what = p.kind === 'block-device' ? 'block device' : 'existing file';
  const image = d.format === 'raw' ? d.virtualSize : d.imageSize;
  const room = p.size > image ? `, ${formatBytes(p.size - image)} past the ${d.format === 'raw' ? 'disk' : 'image'} untouched` : '';
  const holes = d.format !== 'raw' ? `${formatBytes(image)} qcow2 image` : p.holesSkipped ? `${formatBytes(d.virtualSize - d.bytesWritten)} holes skipped (--target-is-zero)` : `${formatBytes(p.zeroBytesWritten)} holes written as zeros`;
  return `${what} of ${formatBytes(p.size)}${room}; ${formatBytes(d.bytesWritten)} data, ${holes}`;
}

export function printHumanSummary(s: ConvertSummary): void {
  process.stderr.write(formatHumanSummary(s) + '\n');
}

const RESULT_TEXT: Record<BatchItemResult['status'], string> = {
  ok: 'ok',
  'bad-chunks': 'BAD CHUNKS',
  failed: 'FAILED',
  skipped: 'skipped',
};

/** The end-of-batch table: input, VM, disks, result, time, throughput. */
export function formatBatchTable(items: BatchItemResult[]): string {
  const rows = items.map((it) => [
    it.input,
    it.vmName ?? '-',
    String(it.disks),
    it.status === 'failed' || it.status === 'skipped' ? `${RESULT_TEXT[it.status]} (exit ${it.exitCode})` : it.status === 'bad-chunks' ? `${RESULT_TEXT[it.status]} (${it.summary?.badChunks.length ?? 0})` : 'ok',
    `${it.seconds.toFixed(1)} s`,
    it.bytesRead > 0 && it.seconds > 0 ? formatRate(it.bytesRead, it.seconds) : '-',
  ]);
  const header = ['INPUT', 'VM', 'DISKS', 'RESULT', 'TIME', 'THROUGHPUT'];
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.min(60, Math.max(...all.map((r) => r[c]!.length))));
  const cell = (text: string, c: number): string => {
    const t = text.length > widths[c]! ? '…' + text.slice(text.length - widths[c]! + 1) : text;
    return c === 2 ? t.padStart(widths[c]!) : t.padEnd(widths[c]!);
  };
  return all.map((r) => r.map(cell).join('  ').trimEnd()).join('\n');
}

export async function runConvert(inputs: string[], flags: ConvertFlags): Promise<number> {
  if (inputs.length === 0) throw new UsageError('no input given (a path, - for stdin, or a URL); see --help');
  const policy = flags.onBadChunk ?? (flags.ignoreChecksums ? 'warn' : 'fail');
  const targets = flags.target ? parseTargetSpecs(flags.target) : undefined;
  const noCreate = flags.create === false;
  // With --target and no -o, nothing goes to a directory (an explicit -o is refused below).
  const out = targets && flags.output === undefined ? {} : outputTarget(flags.output, noCreate);
  if (out.stdout && flags.json) throw new UsageError('--json prints on stdout, which -o - already uses');
  if ((out.stdout || out.outFile) && inputs.length > 1) throw new UsageError('-o FILE and -o - take a single input; give a directory with several inputs');
  if (out.stdout && process.stdout.isTTY) throw new UsageError('refusing to write a disk image to a terminal; redirect stdout or use -o FILE');
  assertStdinNamedOnce(inputs);
  // As qemu-img, -O decides; but a name that says another format is most likely a slip.
  const named = out.outFile ? formatFromPath(out.outFile) : undefined;
  if (named && flags.format && named !== flags.format) process.stderr.write(`${PROGRAM}: warning: writing ${flags.format} (-O) into ${out.outFile}, whose name says ${named}\n`);
  const single = inputs.length === 1;
  const progress = createBatchProgress(inputs.length, !flags.quiet && !!process.stderr.isTTY);
  // While bars are shown, messages (summaries, errors) go above them.
  const say = (text: string): void => progress.log(text);

  const reporters = new Map<number, ProgressReporter>();
  const result = await convertBatch(inputs, {
    outDir: out.outDir,
    outFile: out.outFile,
    stdout: out.stdout ? process.stdout : undefined,
    format: flags.format,
    force: flags.force,
    sync: flags.sync,
    directIo: flags.directIo === true,
    disks: flags.disk,
    targets,
    noCreate,
    targetIsZero: flags.targetIsZero,
    onBadChunk: policy,
    qcow2Compat: flags.qcow2Compat,
    includeSuspendImage: flags.includeSuspend,
    perVmSubdir: flags.perVmDir,
    names: new NameAllocator(),
    http: httpOptionsFrom(flags),
    headers: flags.header,
    gzipCodec: flags.gzipCodec,
    zstdCodec: flags.zstdCodec,
    signal: interruptSignal,
    jobs: flags.jobs,
    onStart: (index, input) => reporters.set(index, progress.start(index, input)),
    onProgress: (index, p) => reporters.get(index)?.update(p),
    onDone: (item) => {
      const reporter = reporters.get(item.index);
      reporters.delete(item.index);
      if (item.status === 'failed' || item.status === 'skipped') {
        reporter?.stop();
        say(errorLine(batchItemCause(item) ?? new Error(item.error?.message ?? 'failed')));
        return;
      }
      reporter?.done();
      if (!flags.quiet && item.summary) say(formatHumanSummary(item.summary));
      // -q drops the summary, not the problems: warnings and salvaged chunks still get a line.
      else if (item.summary) for (const line of problemLines(item.summary)) say(line);
    },
  });
  progress.stop();

  if (single) {
    const item = result.items[0]!;
    if (flags.json && item.summary) process.stdout.write(JSON.stringify(item.summary, null, 2) + '\n');
    return item.exitCode;
  }
  if (!flags.quiet) process.stderr.write('\n' + formatBatchTable(result.items) + '\n');
  if (flags.json) process.stdout.write(JSON.stringify(result.items.map(batchJson), null, 2) + '\n');
  return result.exitCode;
}

/** One element of the `--json` array for several inputs. */
function batchJson(it: BatchItemResult): Record<string, unknown> {
  return {
    input: it.input,
    status: it.status,
    exitCode: it.exitCode,
    vm: it.vmName,
    disks: it.disks,
    seconds: it.seconds,
    bytesRead: it.bytesRead,
    throughput: Math.round(it.throughput),
    error: it.error ?? null,
    summary: it.summary ?? null,
  };
}
