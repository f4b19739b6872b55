/**
 * `xva2img map <vm.xva> [--disk D] [--json]`: where each disk's bytes lie in a plain XVA file,
 * from its tar headers only. Thin: parses flags, calls mapXva, prints.
 */
import type { Command } from 'commander';
import type { MapResult } from '../ops/map';
import { collect } from './common-options';
import { formatBytes } from './format';
import { formatTable } from './info-command';
import { interruptSignal, PROGRAM, runVerb } from './run';

interface MapFlags {
  disk?: string[];
  json?: boolean;
}

/** One table per disk, like `qemu-img map`'s human output, holes included. */
export function formatMap(m: MapResult): string {
  const lines: string[] = [];
  for (const d of m.disks) {
    if (lines.length) lines.push('');
    const data = d.extents.filter((e) => e.data).reduce((a, e) => a + e.length, 0);
    lines.push(`Disk ${d.userdevice} (${d.ref}, ${JSON.stringify(d.name)}, ${formatBytes(d.size)}): ${formatBytes(data)} stored in ${d.chunks} chunks`);
    const rows = d.extents.map((e) => [String(e.start), String(e.length), e.data ? 'data' : 'zero', e.offset !== undefined ? String(e.offset) : '-']);
    lines.push(...formatTable([['START', 'LENGTH', 'KIND', 'OFFSET IN FILE'], ...rows], [0, 1, 3]));
  }
  return lines.join('\n');
}

async function runMap(input: string, flags: MapFlags): Promise<number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { mapXva } = require('../ops/map') as typeof import('../ops/map');
  const result = await mapXva(input, {
    disks: flags.disk,
    signal: interruptSignal,
    onWarning: (w) => void process.stderr.write(`${PROGRAM}: warning: ${w}\n`),
  });
  process.stdout.write((flags.json ? JSON.stringify(result.disks, null, 2) : formatMap(result)) + '\n');
  return 0;
}

export function registerMap(program: Command): Command {
  return program
    .command('map')
    .description("where each disk's bytes lie in a plain XVA file, from its tar headers only (extents as qemu-img map prints them)")
    .argument('<input>', 'an uncompressed XVA file (decompress .gz/.zst first)')
    .option('--disk <userdevice|ref>', 'map only this disk (repeatable)', collect)
    .option('--json', 'print an array of disks, each with `extents`: [{start, length, data, zero, offset}] as qemu-img map --output=json')
    .addHelpText(
      'after',
      `
OFFSET is the byte position of the extent's data in the XVA file; holes (no offset) read as zeros.

Examples:
  xva2img map vm.xva                      a table per disk
  xva2img map vm.xva --disk 0 --json      qemu-img map style JSON

Exit codes: 0 ok, 1 usage (also: compressed input or stdin), 2 invalid/truncated/unreadable input.`,
    )
    .action(async (input: string, flags: MapFlags) => {
      await runVerb(() => runMap(input, flags));
    });
}
