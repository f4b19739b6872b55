/**
 * `xva2img measure <input> [-O raw|qcow2|vmdk] [--fast] [--json]`: output sizes before converting.
 */
import type { Command } from 'commander';
import { ExitCode, UsageError } from '../errors';
import type { ImageFormat } from '../image/types';
import { measureXva, type MeasureResult } from '../measure';
import { commonInputOptions, type CommonInputFlags } from './common-options';
import { formatBytes } from './format';
import { interruptSignal, runVerb } from './run';

interface MeasureFlags extends CommonInputFlags {
  format?: string;
  fast?: boolean;
  json?: boolean;
  disk?: string[];
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function printMeasure(r: MeasureResult): void {
  const lines = [`${r.input}: ${r.format}${r.fast ? ' (fast: present chunks counted as allocated)' : ''}`];
  for (const d of r.disks) {
    lines.push(`disk ${d.userdevice} (${d.ref}, ${JSON.stringify(d.name)}, virtual size ${d.virtualSize}, ${formatBytes(d.allocatedBytes)} allocated)`);
    const note = r.format === 'vmdk' ? ' (upper bound: compression is data-dependent)' : d.exact ? '' : ' (upper bound: zero clusters inside chunks not detected)';
    lines.push(`  required size: ${d.requiredSize}${note}`);
    lines.push(`  fully allocated size: ${d.fullyAllocatedSize}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

export function registerMeasure(program: Command): void {
  const cmd = program
    .command('measure')
    .description('print the size of each output image before converting (like qemu-img measure)')
    .argument('<input>', 'XVA file, - for stdin, or URL')
    .option('-O, --format <format>', 'raw, qcow2 (default) or vmdk')
    .option('--fast', 'count present chunks as allocated instead of reading them (plain files: headers only)')
    .option('--disk <userdevice|ref>', 'only this disk (repeatable)', collect)
    .option('--json', 'JSON on stdout')
    .addHelpText(
      'after',
      `
Examples:
  xva2img measure vm.xva.gz -O qcow2
  xva2img measure vm.xva --fast --json`,
    );
  commonInputOptions(cmd).action(async (input: string, flags: MeasureFlags) => {
    await runVerb(async () => {
      const format = (flags.format ?? 'qcow2').toLowerCase();
      if (format !== 'raw' && format !== 'qcow2' && format !== 'vmdk') throw new UsageError(`unknown format "${flags.format}" (raw, qcow2 or vmdk)`);
      const result = await measureXva(input, {
        format: format as ImageFormat,
        fast: flags.fast,
        disks: flags.disk,
        headers: flags.header,
        gzipCodec: flags.gzipCodec as 'zlib' | 'pako' | undefined,
        zstdCodec: flags.zstdCodec as 'auto' | undefined,
        signal: interruptSignal,
      });
      if (flags.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      else printMeasure(result);
      return ExitCode.OK;
    });
  });
}
