/**
 * `xva2img ova`: an XVA (file, stdin, URL) or disk images (`--disk`) to an OVA, streamed to a
 * file (one pass, headers patched in place) or to a pipe (sizes measured first).
 * Also builds the options `measure --ova` uses, so both agree to the byte.
 */
import type { Command } from 'commander';
import { ExitCode, UsageError } from '../errors';
import { openInput } from '../input/open';
import { PartFile } from '../output/part-file';
import { StreamTarget } from '../output/targets';
import type { OvaDiskInput, OvaWriteResult, WriteOvaOptions } from '../ova/ova-writer';
import { OVA_PROFILES, VMDK_COMPRESSIONS, type OvaProfile, type VmdkCompression } from '../ova/settings';
import { QCOW2_COMPATS, type Qcow2Compat } from '../image/qcow2/layout';
import { FIRMWARES, type Firmware } from '../xva/metadata/model';

/** The OVA writer, loaded when the verb runs (see the lazy-require note in main.ts). */
function writeOva(...args: Parameters<typeof import('../ova/ova-writer').writeOva>): ReturnType<typeof import('../ova/ova-writer').writeOva> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../ova/ova-writer') as typeof import('../ova/ova-writer')).writeOva(...args);
}
import type { OvaNic } from '../ova/ovf/model';
import { BAD_CHUNK_POLICIES, type BadChunkPolicy } from '../xva/reader';
import { choiceOption, collect, commonInputOptions, httpOptionsFrom, integerOption, sizeOption, splitOptions, type CommonInputFlags } from './common-options';
import { formatBytes } from './format';
import { interruptSignal, PROGRAM, runVerb } from './run';

export interface OvaFlags extends CommonInputFlags {
  output?: string;
  profile?: OvaProfile;
  disk?: string[];
  name?: string;
  description?: string;
  cpus?: number;
  memory?: number;
  firmware?: Firmware;
  nic?: string[];
  bootOrder?: string;
  vmdkCompression?: VmdkCompression;
  manifest?: boolean;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
  onBadChunk?: BadChunkPolicy;
  qcow2Compat?: Qcow2Compat;
}

/** The OVF carries no vCPU limit; this only keeps typos out. */
const MAX_OVA_VCPUS = 1024;


/** `--nic network[,mac]` → OvaNic. */
/** `--disk path[,name=…][,description=…]`: the disk's label and description in the OVF. */
function parseOvaDisk(text: string): OvaDiskInput {
  const { head, opts } = splitOptions(text, ['name', 'description'], '--disk');
  return { path: head, name: opts.name, description: opts.description };
}

function parseNic(spec: string, index: number): OvaNic {
  const [network, mac] = spec.split(',').map((s) => s.trim());
  if (!network) throw new UsageError(`--nic needs a network name: "${spec}"`);
  if (mac && !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) throw new UsageError(`--nic: invalid MAC address "${mac}"`);
  return { name: `eth${index}`, network, mac: mac || undefined };
}

/** The options for writeOva / measureOva from the command line (shared by `ova` and `measure --ova`). */
export function ovaOptionsFrom(input: string | undefined, flags: OvaFlags): WriteOvaOptions {
  const common = {
    profile: flags.profile,
    vmdkCompression: flags.vmdkCompression,
    manifest: flags.manifest !== false,
    qcow2Compat: flags.qcow2Compat,
    signal: interruptSignal,
  };
  const disks = flags.disk ?? [];
  if (input !== undefined && disks.length > 0) throw new UsageError('give either an XVA input or --disk images, not both');
  if (input !== undefined) {
    const inputOptions = { http: httpOptionsFrom(flags), headers: flags.header, gzipCodec: flags.gzipCodec, zstdCodec: flags.zstdCodec };
    return {
      ...common,
      xva: { name: input, reopenable: input !== '-', open: () => openInput(input, inputOptions) },
      name: flags.name,
      readOptions: { onBadChunk: flags.onBadChunk },
    };
  }
  if (disks.length === 0) throw new UsageError('nothing to export: give an XVA input or one or more --disk images');
  if (!flags.name) throw new UsageError('--name is required when exporting --disk images');
  return {
    ...common,
    disks: disks.map(parseOvaDisk),
    vm: {
      name: flags.name,
      description: flags.description,
      vcpus: flags.cpus,
      memoryBytes: flags.memory,
      firmware: flags.firmware,
      nics: (flags.nic ?? []).map(parseNic),
      bootOrder: flags.bootOrder,
    },
  };
}

export function addOvaSourceOptions(cmd: Command): Command {
  return commonInputOptions(cmd)
    .addOption(choiceOption('--profile <profile>', 'vmware (default: streamOptimized VMDK; VMware, VirtualBox, Proxmox, virt-v2v) or ovirt (qcow2, oVirt/RHV)', OVA_PROFILES))
    .option('--disk <image[,name=…,description=…]>', 'a raw or qcow2 disk image (backing chains followed) instead of an XVA, with its name and description in the OVF (repeatable)', collect)
    .option('--name <name>', 'VM name (required with --disk; overrides ova.xml)')
    .option('--description <text>', 'VM description (with --disk)')
    .addOption(integerOption('--cpus <n>', 'vCPUs (with --disk, default 1)', 1, MAX_OVA_VCPUS))
    .addOption(sizeOption('--memory <size>', 'memory, e.g. 4G (with --disk, default 1G)', 1))
    .addOption(choiceOption('--firmware <firmware>', 'firmware (with --disk, default bios)', FIRMWARES))
    .option('--nic <network[,mac]>', 'a NIC on this network (with --disk, repeatable)', collect)
    .option('--boot-order <order>', 'boot order, e.g. "disk,network" or "cdn" (with --disk)')
    .addOption(choiceOption('--vmdk-compression <mode>', 'deflate (default) or stored (bigger, but sizes known without compressing: faster to a pipe)', VMDK_COMPRESSIONS))
    .option('--no-manifest', 'do not write the SHA256 .mf manifest')
    .addOption(choiceOption('--on-bad-chunk <policy>', 'fail (default), warn or zero, for XVA inputs', BAD_CHUNK_POLICIES))
    .addOption(choiceOption('--qcow2-compat <version>', 'qcow2 version for the ovirt profile: 1.1 (default) or 0.10', QCOW2_COMPATS));
}

function printOvaSummary(r: OvaWriteResult, where: string): void {
  const lines = [`${PROGRAM}: ${where}: OVA (${r.profile}) of VM "${r.vm.name}", ${formatBytes(r.size)}, ${r.passes === 2 ? 'measured first' : 'one pass'}`];
  lines.push(`  ${r.ovf.name} (${r.ovf.size} bytes)`);
  for (const d of r.disks) lines.push(`  ${d.name}: ${d.format}, ${formatBytes(d.size)} for ${formatBytes(d.capacity)} capacity`);
  if (r.manifest) lines.push(`  ${r.manifest.name} (SHA256)`);
  process.stderr.write(lines.join('\n') + '\n');
}

export function registerOva(program: Command): void {
  const cmd = program
    .command('ova')
    .description('export an OVA appliance from an XVA or from disk images (no temporary copies)')
    .argument('[input]', 'XVA file, - for stdin, or URL (omit when using --disk)')
    .requiredOption('-o, --output <file|->', 'the .ova file to write, or - for stdout')
    .option('-f, --force', 'overwrite an existing output')
    .option('--json', 'JSON result on stdout (not with -o -)')
    .option('-q, --quiet', 'no summary on stderr')
    .addHelpText(
      'after',
      `
Examples:
  xva2img ova vm.xva.gz -o vm.ova                      OVF from ova.xml, VMDK disks, SHA256 manifest
  xva2img ova vm.xva --profile ovirt -o vm.ova         qcow2 disks, oVirt's OVF dialect
  xva2img ova --disk root.qcow2 --disk data.raw --name web01 --cpus 2 --memory 4G -o web01.ova
  xva2img ova --disk top.qcow2 --name web01 -o - | curl -T - https://repo/upload
  xva2img measure --ova vm.xva                         exact size before writing

To a pipe (-o -) every disk's size must be known before the first byte, so the input is read
twice (a file or URL); an XVA on stdin can only be exported to a file.`,
    );
  addOvaSourceOptions(cmd).action(async (input: string | undefined, flags: OvaFlags) => {
    await runVerb(async () => {
      const options = ovaOptionsFrom(input, flags);
      let result: OvaWriteResult;
      let where: string;
      if (flags.output === '-') {
        if (process.stdout.isTTY) throw new UsageError('refusing to write an OVA to a terminal; redirect stdout');
        if (flags.json) throw new UsageError('--json needs -o FILE (stdout carries the OVA)');
        const target = new StreamTarget(process.stdout, 'standard output');
        result = await writeOva(target, options);
        await target.end();
        where = 'stdout';
      } else {
        const part = await PartFile.create(flags.output!, !!flags.force);
        try {
          result = await writeOva(part.target, { ...options, outputPath: part.partPath });
          await part.target.truncate(result.size);
          await part.commit();
        } catch (err) {
          part.abortSync();
          throw err;
        }
        where = flags.output!;
      }
      if (!flags.quiet) printOvaSummary(result, where);
      if (flags.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      return ExitCode.OK;
    });
  });
}
