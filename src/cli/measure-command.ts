/**
 * `xva2img measure <input> [-O raw|qcow2|vmdk] [--fast] [--json]`: output sizes before converting.
 */
import type { Command } from 'commander';
import { ExitCode, UsageError } from '../errors';
import { IMAGE_FORMATS, type ImageFormat } from '../image/types';
import type { MeasureResult } from '../ops/measure';
import { addOvaSourceOptions, ovaOptionsFrom, type OvaFlags } from './ova-command';
import { choiceOption, httpOptionsFrom, type CommonInputFlags } from './common-options';
import { formatBytes } from './format';
import { interruptSignal, runVerb } from './run';

interface MeasureFlags extends CommonInputFlags, OvaFlags {
  ova?: boolean;
  format?: ImageFormat;
  fast?: boolean;
  json?: boolean;
  disk?: string[];
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
    .argument('[input]', 'XVA file, - for stdin, or URL (omit with --ova --disk)')
    .option('--ova', 'the exact size of the OVA `xva2img ova` would write (takes the ova options)')
    .addOption(choiceOption('-O, --format <format>', 'image format to measure (default qcow2)', IMAGE_FORMATS))
    .option('--fast', 'count present chunks as allocated instead of reading them (plain files: headers only)')
    .option('--json', 'JSON on stdout')
    .addHelpText(
      'after',
      `
Examples:
  xva2img measure vm.xva.gz -O qcow2
  xva2img measure vm.xva --fast --json
  xva2img measure vm.xva --disk 0              only disk 0 (without --ova, --disk selects a disk of the XVA)
  xva2img measure --ova vm.xva                 exact OVA size (same options as xva2img ova)
  xva2img measure --ova --disk root.qcow2 --name web01 --profile ovirt`,
    );
  addOvaSourceOptions(cmd).action(async (input: string | undefined, flags: MeasureFlags) => {
    await runVerb(async () => {
      if (flags.ova) {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { measureOva } = require('../ova/ova-writer') as typeof import('../ova/ova-writer'); // loaded when used: see lazy-require note in main.ts
        const r = await measureOva(ovaOptionsFrom(input, flags));
        if (flags.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
        else {
          const lines = [`OVA (${r.profile}) of VM "${r.vm.name}": ${r.size} bytes`, `  ${r.ovf.name}: ${r.ovf.size}`];
          for (const d of r.disks) lines.push(`  ${d.name}: ${d.size} (${d.format}, capacity ${d.capacity})`);
          if (r.manifest) lines.push(`  ${r.manifest.name}: ${r.manifest.size}`);
          process.stdout.write(lines.join('\n') + '\n');
        }
        return ExitCode.OK;
      }
      if (input === undefined) throw new UsageError('measure needs an XVA input (or --ova with --disk images)');
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { measureXva } = require('../ops/measure') as typeof import('../ops/measure');
      const result = await measureXva(input, {
        format: flags.format ?? 'qcow2',
        fast: flags.fast,
        disks: flags.disk,
        http: httpOptionsFrom(flags),
        headers: flags.header,
        gzipCodec: flags.gzipCodec,
        zstdCodec: flags.zstdCodec,
        signal: interruptSignal,
      });
      if (flags.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      else printMeasure(result);
      return ExitCode.OK;
    });
  });
}
