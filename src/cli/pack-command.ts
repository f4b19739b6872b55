/**
 * `xva2img pack`: disk images, or an existing XVA (`--from`), to an XVA that XenServer / XCP-ng
 * import. Thin: parses flags into PackOptions, calls packXva, prints a summary.
 */
import type { Command } from 'commander';
import { ExitCode, UsageError } from '../errors';
import { INPUT_IMAGE_FORMATS, type InputImageFormat } from '../image/types';
import { COMPRESSIONS, type Compression } from '../input/types';
import type { PackDisk, PackNic, PackSummary } from '../ops/pack';
import { XVA_TAR_DIALECTS, type XvaTarDialect } from '../tar/header';
import { CHECKSUM_KINDS, type ChecksumKind } from '../xva/format';
import { FIRMWARES, MAX_VCPUS, MIN_MEMORY, type Firmware } from '../xva/metadata/model';
import { BAD_CHUNK_POLICIES, type BadChunkPolicy } from '../xva/reader';
import { choiceOption, collect, commonInputOptions, httpOptionsFrom, integerOption, sizeOption, splitOptions, type CommonInputFlags } from './common-options';
import { formatBytes, formatRate } from './format';
import { createProgress } from './progress';
import { interruptSignal, PROGRAM, runVerb } from './run';

interface PackFlags extends CommonInputFlags {
  disk?: string[];
  from?: string;
  name?: string;
  description?: string;
  cpus?: number;
  memory?: number;
  firmware?: Firmware;
  secureBoot?: boolean;
  nic?: string[];
  template?: boolean;
  output?: string;
  compress?: Compression;
  level?: number;
  checksum?: ChecksumKind;
  tarFormat?: XvaTarDialect;
  onBadChunk?: BadChunkPolicy;
  rebuildMetadata?: boolean;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
}

const DISK_KEYS = ['name', 'userdevice', 'format', 'description', 'bootable', 'ro'] as const;
const NIC_KEYS = ['mac', 'mtu', 'bridge', 'device'] as const;

function yes(v: string, what: string): boolean {
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  throw new UsageError(`${what}: expected yes or no, not "${v}"`);
}

export function parseDiskArg(text: string): PackDisk {
  const { head, opts } = splitOptions(text, DISK_KEYS, '--disk');
  const d: PackDisk = { path: head };
  if (opts.name !== undefined) d.name = opts.name;
  if (opts.description !== undefined) d.description = opts.description;
  if (opts.userdevice !== undefined) {
    if (!/^\d{1,3}$/.test(opts.userdevice)) throw new UsageError(`--disk: userdevice must be a small number, not "${opts.userdevice}"`);
    d.userdevice = opts.userdevice;
  }
  if (opts.format !== undefined) {
    const f = opts.format.toLowerCase() as InputImageFormat;
    if (!INPUT_IMAGE_FORMATS.includes(f)) throw new UsageError(`--disk: format must be one of ${INPUT_IMAGE_FORMATS.join(', ')}, not "${opts.format}"`);
    d.format = f;
  }
  if (opts.bootable !== undefined) d.bootable = yes(opts.bootable, '--disk bootable');
  if (opts.ro !== undefined) d.readOnly = yes(opts.ro, '--disk ro');
  return d;
}

export function parseNicArg(text: string): PackNic {
  // A bare option list ("mac=…") means the default network.
  const { head, opts } = /^[a-z]+=/i.test(text) && NIC_KEYS.some((k) => text.toLowerCase().startsWith(`${k}=`)) ? splitOptions(`default,${text}`, NIC_KEYS, '--nic') : splitOptions(text, NIC_KEYS, '--nic');
  const n: PackNic = {};
  if (head !== 'default') n.network = head;
  if (opts.mac !== undefined) n.mac = opts.mac;
  if (opts.bridge !== undefined) n.bridge = opts.bridge;
  if (opts.device !== undefined) n.device = opts.device;
  if (opts.mtu !== undefined) {
    if (!/^\d+$/.test(opts.mtu)) throw new UsageError(`--nic: invalid mtu "${opts.mtu}"`);
    n.mtu = Number(opts.mtu);
  }
  return n;
}

export function formatPackSummary(s: PackSummary): string {
  const lines: string[] = [];
  const comp = s.compression === 'none' ? 'uncompressed' : s.compression;
  const from = s.source ? ` from ${s.source.input} (${s.source.compression === 'none' ? 'plain' : s.source.compression}${s.source.checksum ? `, ${s.source.checksum.toUpperCase()}` : ''}, metadata ${s.source.metadata})` : '';
  lines.push(`${PROGRAM}: ${s.output} (${comp}, ${s.checksum.toUpperCase()}, ${s.tarFormat} tar)${from}: VM "${s.vm.name}", ${s.vm.vcpus} vCPU, ${formatBytes(s.vm.memoryBytes)}${s.vm.firmware ? `, HVM ${s.vm.firmware.toUpperCase()}` : ''}`);
  for (const d of s.disks) {
    lines.push(`  disk ${d.userdevice}${d.bootable ? '*' : ' '} ${JSON.stringify(d.name)} ${formatBytes(d.virtualSize)} <- ${d.source}${d.format !== 'xva' ? ` (${d.format})` : ''}: ${d.chunksWritten} chunks, ${formatBytes(d.dataBytes)} stored, ${d.zeroChunksSkipped} zero chunks skipped (${d.ref})`);
  }
  for (const n of s.nics) lines.push(`  nic  ${n.device}  ${n.mac}  ${JSON.stringify(n.network)}${n.bridge ? ` (${n.bridge})` : ''}`);
  for (const c of s.source?.changes ?? []) lines.push(`  metadata: ${c}`);
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  if (s.badChunks.length) {
    lines.push(`  ${s.badChunks.length} source chunk(s) failed their checksum:`);
    for (const b of s.badChunks) lines.push(`    ${b.entry}: offset ${b.offset} (${b.length} bytes): ${b.action === 'zeroed' ? 'written as zeros' : 'kept as is'}`);
  }
  lines.push(`  done in ${s.seconds.toFixed(1)} s (${formatBytes(s.bytesWritten)} written, ${formatRate(s.tarBytes, s.seconds)} of tar)`);
  return lines.join('\n');
}

export async function runPack(flags: PackFlags): Promise<number> {
  if (!flags.output) throw new UsageError('no output given: -o FILE (.xva, .xva.gz, .xva.zst) or -o - for stdout');
  if (flags.output === '-' && process.stdout.isTTY) throw new UsageError('refusing to write an XVA to a terminal; redirect stdout or use -o FILE');
  if (flags.from !== undefined && flags.disk?.length) throw new UsageError('give either --disk or --from, not both');
  if (flags.onBadChunk !== undefined && flags.from === undefined) throw new UsageError('--on-bad-chunk applies to --from only');
  if (flags.rebuildMetadata && flags.from === undefined) throw new UsageError('--rebuild-metadata applies to --from only');
  if (flags.json && flags.output === '-') throw new UsageError('--json prints on stdout, which -o - already uses');
  if (flags.secureBoot && flags.firmware !== 'uefi') throw new UsageError('--secure-boot: secure boot needs UEFI firmware (--firmware uefi)');
  const progress = createProgress(flags.output === '-' ? 'pack' : flags.output, !flags.quiet && !flags.json && !!process.stderr.isTTY);
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { packXva } = require('../ops/pack') as typeof import('../ops/pack'); // see the lazy-require note in main.ts
    const summary = await packXva({
      disks: flags.disk?.map(parseDiskArg),
      from: flags.from,
      vm: {
        name: flags.name,
        description: flags.description,
        vcpus: flags.cpus,
        memoryBytes: flags.memory,
        firmware: flags.firmware,
        secureBoot: flags.secureBoot,
        isTemplate: flags.template ? true : undefined,
      },
      nics: flags.nic?.map(parseNicArg),
      output: flags.output,
      stdout: flags.output === '-' ? process.stdout : undefined,
      force: flags.force,
      compression: flags.compress,
      compressionLevel: flags.level,
      checksum: flags.checksum,
      tarFormat: flags.tarFormat,
      onBadChunk: flags.onBadChunk,
      rebuildMetadata: flags.rebuildMetadata,
      http: httpOptionsFrom(flags),
      headers: flags.header,
      gzipCodec: flags.gzipCodec,
      zstdCodec: flags.zstdCodec,
      signal: interruptSignal,
      onProgress: (p) => progress.update({ tarBytes: 0, diskBytesDone: p.bytesDone, diskBytesTotal: p.bytesTotal }),
    });
    progress.done();
    if (flags.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    else if (!flags.quiet) process.stderr.write(formatPackSummary(summary) + '\n');
    else for (const w of summary.warnings) process.stderr.write(`${PROGRAM}: warning: ${w}\n`);
    return summary.badChunks.length > 0 ? ExitCode.CHECKSUM : ExitCode.OK;
  } finally {
    progress.stop();
  }
}

export function registerPack(program: Command): Command {
  const cmd = program
    .command('pack')
    .description('pack disk images (raw, qcow2 with backing chains) or an existing XVA into an XVA that XenServer / XCP-ng import')
    .option('--disk <path[,opt=value…]>', 'disk image, raw or qcow2 (repeatable, in slot order); options: name=, userdevice=, format=raw|qcow2, description=, bootable=yes|no, ro=yes|no', collect)
    .option('--from <xva|ova>', 'repack an existing XVA (file, .gz/.zst, - for stdin, or URL): recompress / re-checksum in one pass, metadata kept; or convert an OVA file (VMDK/qcow2/raw disks, VM settings from its OVF)')
    .option('-n, --name <name>', 'VM name (default: the first disk\'s file name)')
    .option('--description <text>', 'VM description')
    .addOption(integerOption('--cpus <n>', 'vCPUs (default 1)', 1, MAX_VCPUS))
    .addOption(sizeOption('--memory <size>', 'memory, e.g. 4G, 512M (default 1G)', MIN_MEMORY))
    .addOption(choiceOption('--firmware <firmware>', 'boot firmware (default bios)', FIRMWARES))
    .option('--secure-boot', 'with --firmware uefi: turn UEFI secure boot on (platform:secureboot; off by default)')
    .option('--nic <network[,opt=value…]>', 'NIC on this network name (repeatable); options: mac=, mtu=, bridge=, device=; "--nic mac=…" uses the default network', collect)
    .option('--template', 'mark the VM as a template')
    .option('-o, --output <file|->', 'output XVA file (.xva, .xva.gz, .xva.zst) or - for stdout')
    .addOption(choiceOption('--compress <compression>', 'compress the whole archive (default: from the -o extension, else none)', COMPRESSIONS))
    .addOption(integerOption('--level <n>', 'compression level (gzip 1-9, zstd 1-19)', 1, 19))
    .addOption(choiceOption('--checksum <kind>', 'chunk checksums: xxh64 (.xxhash, default, XCP-ng / XenServer >= 8.1) or sha1 (.checksum, older hosts)', CHECKSUM_KINDS))
    .addOption(choiceOption('--tar-format <format>', 'tar headers: ustar (default, recommended for import) or xapi (V7 headers exactly as XAPI writes them)', XVA_TAR_DIALECTS))
    .addOption(choiceOption('--on-bad-chunk <policy>', 'with --from: fail (default), warn (keep the data) or zero (write zeros); warn/zero exit 3', BAD_CHUNK_POLICIES))
    .option('--rebuild-metadata', 'with --from: write a new ova.xml from the parsed VM, disks and NICs (allows --nic and --firmware) instead of keeping the source\'s')
    .option('-f, --force', 'overwrite an existing output file')
    .option('--json', 'print a JSON summary on stdout')
    .option('-q, --quiet', 'no progress bar and no summary (warnings still shown)');
  commonInputOptions(cmd)
    .addHelpText(
      'after',
      `
Examples:
  xva2img pack --disk root.qcow2 --disk data.raw --name web01 --cpus 2 --memory 4G -o web01.xva.zst
  xva2img pack --disk root.raw,name=root --nic "Pool-wide network associated with eth0" -o vm.xva
  xva2img pack --disk root.raw --firmware uefi --nic xenbr0,mac=02:00:00:aa:bb:cc -o vm.xva.gz
  xva2img pack --from old.xva.gz --checksum xxh64 -o new.xva.zst     repack: recompress, re-checksum, stream
  xva2img pack --from old.xva --checksum sha1 -o for-xenserver-7.xva   for hosts older than 8.1
  xva2img pack --from vm.ova --memory 8G -o vm.xva.zst                 OVA (VMware / oVirt) to XVA
  xva2img pack --disk root.raw --name web01 -o - | xe vm-import filename=/dev/stdin

Disks become userdevice 0, 1, 2… in the order given; the first is bootable. Sizes that are
not a multiple of 512 are rounded up (with a warning). qcow2 backing chains are followed.
--from an XVA keeps the source's ova.xml (VM, disks, NICs, uuids), changing only what the new
archive needs. --from an OVA (a regular file, not stdin/URL: its disks are read in place) takes
name, description, vCPUs, memory, firmware and NICs from the OVF (--name/--cpus/--memory/
--description/--firmware/--nic override) and packs its disks in the order the OVF's hardware
section attaches them (IDE, SATA, SCSI; controller, then unit), DiskSection order for the rest.

Exit codes: 0 ok, 1 usage, 2 invalid/unreadable input, 3 checksum failures (--from),
            4 output or I/O error, 130 interrupted.`,
    )
    .action(async (flags: PackFlags) => {
      await runVerb(() => runPack(flags));
    });
  return cmd;
}
