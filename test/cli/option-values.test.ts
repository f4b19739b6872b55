/**
 * Every option with a closed set of values, on every verb, is checked by the command line: a
 * value outside the set exits 1 with one line naming the allowed values, which come from the
 * library constant that owns the set (so a value the library adds is offered at once). Numeric
 * options are checked the same way. Nothing is read or written first.
 *
 * The tables parse in this process (the program as main.ts builds it, commander's exit turned
 * into a throw); a few cases run the built binary end to end.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MAX_JOBS } from '../../src/ops/batch';
import { QCOW2_COMPATS } from '../../src/image/qcow2/layout';
import { IMAGE_FORMATS } from '../../src/image/types';
import { COMPRESSIONS, GZIP_CODECS, ZSTD_CODECS } from '../../src/input/types';
import { OVA_PROFILES, VMDK_COMPRESSIONS } from '../../src/ova/settings';
import { XVA_TAR_DIALECTS } from '../../src/tar/header';
import { CHECKSUM_KINDS } from '../../src/xva/format';
import { FIRMWARES, MAX_VCPUS } from '../../src/xva/metadata/model';
import { BAD_CHUNK_POLICIES } from '../../src/xva/reader';
import type { CommanderError } from 'commander';
import { buildProgram } from '../../src/cli/main';
import { esc, listFiles, ROOT, runCli } from './_cli';

const SAMPLE = path.join(ROOT, 'samples', 'demo-ext4.xva');
const ZST = path.join(ROOT, 'samples', 'demo-keepalive.xva.zst');
const GZ = path.join(ROOT, 'samples', 'demo-two-disks.xva.gz');

let dir: string;
let disk: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-opts-'));
  disk = path.join(dir, 'disk.raw');
  fs.writeFileSync(disk, Buffer.alloc(1 << 20));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Parses `args` as main() would; returns commander's exit code and what it wrote on stderr. */
async function parseRejected(args: string[]): Promise<{ code: number; stderr: string }> {
  const program = buildProgram();
  let stderr = '';
  for (const cmd of [program, ...program.commands]) cmd.exitOverride().configureOutput({ writeErr: (s) => void (stderr += s), writeOut: () => {} });
  try {
    await program.parseAsync(['node', 'xva2img', ...args]);
  } catch (err) {
    return { code: (err as CommanderError).exitCode, stderr };
  }
  throw new Error(`accepted: ${args.join(' ')}`);
}

/** Arguments that make each verb otherwise runnable. */
const VERB: Record<string, () => string[]> = {
  convert: () => [SAMPLE, '-o', path.join(dir, 'out')],
  info: () => ['info', SAMPLE],
  verify: () => ['verify', SAMPLE],
  measure: () => ['measure', SAMPLE],
  'measure --ova': () => ['measure', '--ova', SAMPLE],
  pack: () => ['pack', '--disk', disk, '-o', path.join(dir, 'out.xva')],
  ova: () => ['ova', SAMPLE, '-o', path.join(dir, 'out.ova')],
  serve: () => ['serve', SAMPLE, '--socket', path.join(dir, 'nbd.sock')],
};

const CODECS: Array<[string, readonly string[]]> = [
  ['--gzip-codec', GZIP_CODECS],
  ['--zstd-codec', ZSTD_CODECS],
];
const OVA_SETS: Array<[string, readonly string[]]> = [
  ['--profile', OVA_PROFILES],
  ['--vmdk-compression', VMDK_COMPRESSIONS],
  ['--on-bad-chunk', BAD_CHUNK_POLICIES],
  ['--qcow2-compat', QCOW2_COMPATS],
  ['--firmware', FIRMWARES],
  ...CODECS,
];
const CLOSED_SETS: Array<[string, string, readonly string[]]> = [
  ...([['-O', IMAGE_FORMATS], ['--format', IMAGE_FORMATS], ['--on-bad-chunk', BAD_CHUNK_POLICIES], ['--qcow2-compat', QCOW2_COMPATS], ...CODECS] as const).map(([o, v]) => ['convert', o, v] as [string, string, readonly string[]]),
  ...CODECS.map(([o, v]) => ['info', o, v] as [string, string, readonly string[]]),
  ...CODECS.map(([o, v]) => ['verify', o, v] as [string, string, readonly string[]]),
  ['measure', '-O', IMAGE_FORMATS],
  ...OVA_SETS.map(([o, v]) => ['measure --ova', o, v] as [string, string, readonly string[]]),
  ...([['--firmware', FIRMWARES], ['--compress', COMPRESSIONS], ['--checksum', CHECKSUM_KINDS], ['--tar-format', XVA_TAR_DIALECTS], ['--on-bad-chunk', BAD_CHUNK_POLICIES], ...CODECS] as const).map(
    ([o, v]) => ['pack', o, v] as [string, string, readonly string[]],
  ),
  ...OVA_SETS.map(([o, v]) => ['ova', o, v] as [string, string, readonly string[]]),
  ['serve', '--on-bad-chunk', BAD_CHUNK_POLICIES],
];

describe('a value outside a closed set: exit 1, one line naming the allowed values', () => {
  test.each(CLOSED_SETS)('%s %s', async (verb, option, allowed) => {
    const r = await parseRejected([...VERB[verb]!(), option, 'bogus']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^xva2img: option '[^']*${esc(option)}[ ,][^']*' argument 'bogus' is invalid\\. Allowed choices are ${esc(allowed.join(', '))}\\.\\n$`));
    expect(listFiles(dir)).toEqual(['disk.raw']);
  });

  test('the built binary: exit 1, the one line, nothing on stdout', async () => {
    const r = await runCli([...VERB.pack!(), '--tar-format', 'gnu']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`xva2img: option '--tar-format <format>' argument 'gnu' is invalid. Allowed choices are ${XVA_TAR_DIALECTS.join(', ')}.\n`);
    expect(r.stdout).toBe('');
  });
});

describe('numeric options', () => {
  const cases: Array<[string, string, string, RegExp]> = [
    ['convert', '--jobs', '0', new RegExp(`Expected a whole number from 1 to ${MAX_JOBS}\\.`)],
    ['convert', '-j', 'two', new RegExp(`Expected a whole number from 1 to ${MAX_JOBS}\\.`)],
    ['pack', '--cpus', String(MAX_VCPUS + 1), new RegExp(`Expected a whole number from 1 to ${MAX_VCPUS}\\.`)],
    ['pack', '--level', '20', /Expected a whole number from 1 to 19\./],
    ['pack', '--memory', '8M', /Expected at least 16\.0 MiB\./],
    ['pack', '--memory', 'lots', /Expected a size such as 4G or 512M\./],
    ['ova', '--cpus', '0', /Expected a whole number from 1 to \d+\./],
    ['ova', '--memory', '4X', /Expected a size such as 4G or 512M\./],
    ['measure --ova', '--cpus', '1.5', /Expected a whole number from 1 to \d+\./],
  ];
  test.each(cases)('%s %s %s', async (verb, option, value, message) => {
    const r = await parseRejected([...VERB[verb]!(), option, value]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^xva2img: option '[^']*${esc(option)}[ ,][^']*' argument '${esc(value)}' is invalid\\. ${message.source}\\n$`));
    expect(listFiles(dir)).toEqual(['disk.raw']);
  });

  test('the built binary: exit 1', async () => {
    const r = await runCli([...VERB.convert!(), '--jobs', '65']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`xva2img: option '-j, --jobs <n>' argument '65' is invalid. Expected a whole number from 1 to ${MAX_JOBS}.\n`);
  });

  test('--http-timeout: seconds from 0 to what a Node timer holds (2^31 - 1 ms); beyond, one line, exit 1', async () => {
    for (const value of ['3000000', '-1', 'soon']) {
      const r = await runCli(['http://127.0.0.1:9/vm.xva', '--http-timeout', value, '-o', dir]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`xva2img: --http-timeout must be a number of seconds from 0 (wait forever) to 2147483, not "${value}"\n`);
    }
  });

  test('a gzip level beyond gzip\'s range is refused by the library, in its own words', async () => {
    const r = await runCli(['pack', '--disk', disk, '--level', '12', '-o', path.join(dir, 'out.xva.gz')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('xva2img: gzip compression level must be a whole number from 1 to 9, not 12\n');
    expect(listFiles(dir)).toEqual(['disk.raw']);
  });
});

describe('the values of issue #18', () => {
  test('--zstd-codec bogus on a zstd input: a usage error, no internal error or stack', async () => {
    const r = await runCli([ZST, '--zstd-codec', 'bogus', '-o', path.join(dir, 'out')]);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/internal error|TypeError| {4}at /);
  });

  test('--gzip-codec bogus on a gzip input is refused, not taken as pako', async () => {
    const r = await runCli(['info', GZ, '--gzip-codec', 'bogus']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
  });

  test('choices are taken in any case', async () => {
    const r = await runCli(['info', GZ, '--gzip-codec', 'PAKO', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ compression: 'gzip', codec: 'pako' });
  });

  test("--help says what 'auto' picks for each decoder, in the order the library tries them", async () => {
    const r = await runCli(['--help']);
    const help = r.stdout.replace(/\s+/g, ' ');
    // src/input/zstd.ts resolveZstdCodec: the zstd program, then node:zlib, then fzstd.
    expect(help).toContain('auto (default: binary if zstd is on PATH, else zlib if Node >= 22.15, else fzstd)');
    // src/input/gzip.ts: igzip, then node:zlib (pako only when asked for).
    expect(help).toContain('auto (default: igzip if on PATH, else zlib)');
  });

  test('--help lists the allowed values', async () => {
    const r = await runCli(['pack', '--help']);
    expect(r.stdout.replace(/\s+/g, ' ')).toContain(`(choices: ${COMPRESSIONS.map((c) => `"${c}"`).join(', ')})`);
  });
});
