/**
 * The xva2img command line: parses flags with commander and calls the library. Each verb lives
 * in its own module; this file only wires them together.
 *
 * Lazy requires: Node loads and compiles every module a command line imports before it does
 * anything (~0.1 s for all of xva2img on the machines we measure, a tenth of converting a
 * 1.3 GB XVA). What only some runs need — the other verbs' implementations, the VMDK writer,
 * HTTP, the progress bar — is therefore required where it is used, not at the top.
 */
import * as fs from 'node:fs';
import { Command } from 'commander';
import { UsageError } from '../errors';
import { addConvertOptions, runConvert } from './convert-command';
import { registerInfo } from './info-command';
import { registerVerify } from './verify-command';
import { registerMeasure } from './measure-command';
import { registerPack } from './pack-command';
import { registerOva } from './ova-command';
import { registerMap } from './map-command';
import { registerServe } from './serve-command';
import { installProcessHandlers, PROGRAM, runVerb } from './run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = require('../../package.json').version;

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('xva2img')
    .description('Convert XenServer / XCP-ng XVA exports to raw, qcow2 or VMDK disk images in one streaming pass.')
    .version(VERSION, '-V, --version')
    .argument('[inputs...]', 'XVA files (plain, .gz or .zst, detected from the bytes), - for stdin, or http(s) URLs')
    // commander's own errors (unknown option, a value outside an option's choices…) as one line
    // like every other error, without the help text after it (subcommands inherit this).
    .configureOutput({ outputError: (text, write) => write(`${PROGRAM}: ${text.replace(/^error: /, '')}`) })
    // Options after a verb belong to the verb (`info --json` must not be taken by the default command).
    .enablePositionalOptions()
    .addHelpText(
      'after',
      `
Examples:
  xva2img vm.xva                          every disk -> ./<vm>-<userdevice>.raw
  xva2img vm.xva.gz -o /srv/images        gzip detected from the bytes
  gunzip -c vm.xva.gz | xva2img - -o out/
  xva2img vm.xva.zst -O qcow2
  xva2img vm.xva --disk 0 -o root.vmdk
  xva2img vm.xva --json                   JSON summary on stdout
  xva2img backups/*.xva.gz -O qcow2 -o images/ --jobs 2 --per-vm-dir
  xva2img 'https://xenhost/export?uuid=…' -H 'Cookie: session_id=…' -O qcow2
  xva2img damaged.xva --on-bad-chunk zero salvage: bad chunks become zeros, listed at the end

Exit codes: 0 ok, 1 usage, 2 invalid/truncated/unreadable input, 3 checksum failures,
            4 output or I/O error, 130 interrupted.`,
    );
  addConvertOptions(program).action(async (inputs: string[], flags) => {
    await runVerb(async () => {
      refuseMistypedVerb(inputs[0], program);
      return runConvert(inputs, flags);
    });
  });
  registerInfo(program);
  registerVerify(program);
  registerMeasure(program);
  registerPack(program);
  registerOva(program);
  registerMap(program);
  registerServe(program);
  return program;
}

/**
 * The default verb takes any word as an input, so `xva2img inof vm.xva` would convert vm.xva and
 * then fail on "inof". A first input that is no file, a bare word, and one or two edits from a
 * verb's name is taken for a misspelt verb: a usage error before anything is read.
 */
function refuseMistypedVerb(first: string | undefined, program: Command): void {
  if (first === undefined || !/^[a-z]{2,12}$/.test(first) || fs.existsSync(first)) return;
  const verb = program.commands.map((c) => c.name()).find((name) => editDistance(first, name) <= (name.length >= 4 ? 2 : 1));
  if (verb) throw new UsageError(`unknown command '${first}' (did you mean ${verb}?); an input of that name does not exist`);
}

/** Levenshtein distance (small words only). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  installProcessHandlers();
  const program = buildProgram();
  program.exitOverride((err) => {
    // commander's own messages (usage errors) exit 1; --help/--version exit 0.
    process.exit(err.exitCode === 0 ? 0 : 1);
  });
  await program.parseAsync(argv);
}
