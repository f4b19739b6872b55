/**
 * `xva2img serve <vm.xva> [--socket PATH | --port N [--bind ADDR]] [--disk D] [--json]`: the
 * disks of a plain XVA as read-only NBD exports until SIGINT/SIGTERM. Thin: parses flags, calls
 * serveXva, prints where it listens, waits for the stop signal.
 */
import type { Command } from 'commander';
import { UsageError } from '../errors';
import { BAD_CHUNK_POLICIES, type BadChunkPolicy } from '../xva/reader';
import type { XvaServer } from '../ops/serve';
import { choiceOption, collect } from './common-options';
import { formatBytes } from './format';
import { formatTable } from './info-command';
import { interruptSignal, onStopSignal, PROGRAM, runVerb } from './run';

interface ServeFlags {
  socket?: string;
  port?: string;
  bind?: string;
  disk?: string[];
  json?: boolean;
  onBadChunk?: string;
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new UsageError(`--port must be a TCP port number (0-65535), not "${text}"`);
  return port;
}

/** What `serve` prints on start: where each export is, as URIs clients take. */
export function formatServing(s: XvaServer): string {
  const where = s.socketPath !== undefined ? `Unix socket ${s.socketPath}` : `${s.host}:${s.port}`;
  const rows = s.exports.map((e) => [e.name, e.uri, formatBytes(e.size), JSON.stringify(e.description)]);
  return [
    `Serving ${s.input} (VM ${JSON.stringify(s.vmName)}) read-only on ${where}; stop with Ctrl-C or SIGTERM`,
    ...formatTable([['EXPORT', 'URI', 'SIZE', 'NAME'], ...rows], [2]),
  ].join('\n');
}

/** The start-up line of `--json`: one line, so that a script can read it and go on. */
export function servingJson(s: XvaServer): string {
  return JSON.stringify({
    input: s.input,
    vm: s.vmName,
    socket: s.socketPath ?? null,
    host: s.host ?? null,
    port: s.port ?? null,
    exports: s.exports,
    indexBytes: s.indexBytes,
  });
}

async function runServe(input: string, flags: ServeFlags): Promise<number> {
  if (flags.socket !== undefined && flags.port !== undefined) throw new UsageError('choose either --socket or --port, not both');
  if (flags.bind !== undefined && flags.port === undefined) throw new UsageError('--bind needs --port (TCP)');
  const policy = flags.onBadChunk ?? 'fail';
  const line = (text: string): void => void process.stderr.write(`${PROGRAM}: ${text.replace(/[\r\n]+/g, ' ')}\n`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { serveXva } = require('../ops/serve') as typeof import('../ops/serve');
  const server = await serveXva(input, {
    disks: flags.disk,
    socketPath: flags.socket,
    port: flags.port !== undefined ? parsePort(flags.port) : undefined,
    host: flags.bind,
    onBadChunk: policy as BadChunkPolicy,
    signal: interruptSignal,
    onWarning: (w) => line(`warning: ${w}`),
    onReport: line,
  });
  // Whatever ends the process, the socket does not outlive it.
  const removeSocket = (): void => server.removeSocketSync();
  process.once('exit', removeSocket);
  const stopped = new Promise<NodeJS.Signals>((resolve) => onStopSignal(resolve));
  process.stdout.write((flags.json ? servingJson(server) : formatServing(server)) + '\n');
  const signal = await stopped;
  await server.close();
  process.off('exit', removeSocket);
  line(`stopped by ${signal}`);
  return 0;
}

export function registerServe(program: Command): Command {
  return program
    .command('serve')
    .description('serve the disks of a plain XVA file as read-only NBD exports (one per disk, named by userdevice), without extracting it')
    .argument('<input>', 'an uncompressed XVA file (decompress .gz/.zst first)')
    .option('--socket <path>', 'listen on this Unix socket (default: nbd.sock in a new directory under $TMPDIR, printed on start)')
    .option('--port <n>', 'listen on TCP port N instead (0: any free port; the NBD port is 10809)')
    .option('--bind <addr>', 'with --port: the address to listen on (default 127.0.0.1; 0.0.0.0 exposes the disks to the network)')
    .option('--disk <userdevice|ref>', 'serve only this disk (repeatable)', collect)
    .addOption(choiceOption('--on-bad-chunk <policy>', 'a chunk whose checksum does not match: fail its reads with EIO (default), warn (serve it as stored) or zero (serve zeros)', BAD_CHUNK_POLICIES))
    .option('--json', 'print the export URIs as one line of JSON on start')
    .addHelpText(
      'after',
      `
Every chunk's checksum is verified the first time it is read. Holes are reported to clients
(NBD block status), so copies stay sparse. Stops on SIGINT/SIGTERM (exit 0), removing its socket.

Examples:
  xva2img serve vm.xva                              prints nbd+unix:///0?socket=… per disk
  qemu-img convert -O qcow2 'nbd+unix:///0?socket=S' disk0.qcow2
  nbdinfo --map 'nbd+unix:///0?socket=S'            the archive's holes
  nbdfuse /mnt/x/disk0 'nbd+unix:///0?socket=S' &   then: mount -o ro,loop /mnt/x/disk0 /mnt/root
  xva2img serve vm.xva --port 10809                 nbd://127.0.0.1:10809/0

Exit codes: 0 stopped by SIGINT/SIGTERM, 1 usage (also: compressed input or stdin),
            2 invalid/truncated/unreadable input, 4 cannot listen (socket in use, port taken).`,
    )
    .action(async (input: string, flags: ServeFlags) => {
      await runVerb(() => runServe(input, flags));
    });
}
