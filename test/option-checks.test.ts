/**
 * The library's entry points check option values from JavaScript callers (or a command line
 * that let one through): a value outside its closed set, or a number outside its range, is a
 * UsageError (code USAGE, exit code 1) naming the option and the allowed values — thrown before
 * anything is read or written, never a TypeError further in, never silently another value.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { convertBatch } from '../src/ops/batch';
import { convertXva } from '../src/ops/convert';
import { ExitCode, UsageError } from '../src/errors';
import { openInput } from '../src/input/open';
import { inspectXva } from '../src/ops/inspect';
import { measureXva } from '../src/ops/measure';
import { measureOva, writeOva, type WriteOvaOptions } from '../src/ova/ova-writer';
import { StreamTarget } from '../src/output/targets';
import { packXva, type PackOptions } from '../src/ops/pack';
import { verifyXva } from '../src/ops/verify';
import { readXva } from '../src/xva/reader';
import { makeXvaFile, MiB } from './helpers/xva-fixtures';

let dir: string;
let xva: string;
let gz: string;
let zst: string;
let disk: string;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'option-checks-'));
  xva = (await makeXvaFile(dir, { vmName: 'plain' })).path;
  gz = (await makeXvaFile(dir, { vmName: 'gz', fileName: 'gz.xva.gz', compression: 'gzip' })).path;
  zst = (await makeXvaFile(dir, { vmName: 'zst', fileName: 'zst.xva.zst', compression: 'zstd' })).path;
  disk = path.join(dir, 'disk.raw');
  fs.writeFileSync(disk, Buffer.alloc(MiB, 1));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Expects a UsageError with exactly `message`. */
async function rejects(run: () => Promise<unknown>, message: string): Promise<void> {
  const err = await run().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UsageError);
  expect(err).toMatchObject({ code: 'USAGE', exitCode: ExitCode.USAGE, message });
}

/** A library caller's value the types would not allow. */
const bogus = 'bogus' as never;

describe('decoders (openInput, and every verb that reads an XVA)', () => {
  test('an unknown zstd codec on a zstd input: a usage error, not a TypeError', async () => {
    await rejects(() => openInput(zst, { zstdCodec: bogus }), 'zstdCodec must be one of auto, zlib, binary, fzstd, not "bogus"');
    await rejects(() => inspectXva(zst, { zstdCodec: bogus }), 'zstdCodec must be one of auto, zlib, binary, fzstd, not "bogus"');
  });

  test('an unknown gzip codec is refused, not taken as pako', async () => {
    await rejects(() => openInput(gz, { gzipCodec: bogus }), 'gzipCodec must be one of auto, igzip, zlib, pako, not "bogus"');
  });

  test('verifyXva throws it (the caller\'s error), instead of reporting it as a problem of the archive', async () => {
    await rejects(() => verifyXva(xva, { gzipCodec: bogus }), 'gzipCodec must be one of auto, igzip, zlib, pako, not "bogus"');
  });
});

describe('convertXva, convertBatch, measureXva, readXva', () => {
  const out = (): string => fs.mkdtempSync(path.join(dir, 'out-'));

  test.each([
    [{ format: bogus }, 'format must be one of raw, qcow2, vmdk, not "bogus"'],
    [{ qcow2Compat: '1.0' as never }, 'qcow2Compat must be one of 1.1, 0.10, not "1.0"'],
    [{ onBadChunk: 'skip' as never }, 'onBadChunk must be one of fail, warn, zero, not "skip"'],
  ])('convertXva %j', async (options, message) => {
    const outDir = out();
    await rejects(() => convertXva(xva, { outDir, ...options }), message);
    expect(fs.readdirSync(outDir)).toEqual([]);
  });

  test('convertBatch rejects before any input starts', async () => {
    const started: string[] = [];
    const onStart = (_: number, input: string): number => started.push(input);
    await rejects(() => convertBatch([xva, gz], { outDir: out(), format: bogus, onStart }), 'format must be one of raw, qcow2, vmdk, not "bogus"');
    await rejects(() => convertBatch([xva, gz], { outDir: out(), jobs: 0, onStart }), 'jobs must be a whole number from 1 to 64, not 0');
    await rejects(() => convertBatch([xva, gz], { outDir: out(), jobs: 1.5, onStart }), 'jobs must be a whole number from 1 to 64, not 1.5');
    expect(started).toEqual([]);
  });

  test('measureXva and readXva', async () => {
    await rejects(() => measureXva(xva, { format: 'vhd' as never }), 'format must be one of raw, qcow2, vmdk, not "vhd"');
    const source = await openInput(xva);
    try {
      await rejects(() => readXva(source, {}, { onBadChunk: bogus }), 'onBadChunk must be one of fail, warn, zero, not "bogus"');
    } finally {
      await source.close();
    }
  });
});

describe('packXva', () => {
  const base = (): PackOptions => ({ disks: [disk], output: path.join(dir, 'packed.xva'), force: true });
  test.each([
    [{ compression: 'xz' }, 'compression must be one of none, gzip, zstd, not "xz"'],
    [{ checksum: 'md5' }, 'checksum must be one of xxh64, sha1, not "md5"'],
    [{ tarFormat: 'v7' }, 'tarFormat must be one of ustar, xapi, not "v7"'],
    [{ onBadChunk: bogus }, 'onBadChunk must be one of fail, warn, zero, not "bogus"'],
    [{ zstdCodec: bogus }, 'zstdCodec must be one of auto, zlib, binary, fzstd, not "bogus"'],
    [{ vm: { firmware: 'efi' } }, 'firmware must be one of bios, uefi, not "efi"'],
    [{ vm: { vcpus: 0 } }, 'vcpus must be a whole number from 1 to 256, not 0'],
    [{ vm: { memoryBytes: 1024 } }, 'memoryBytes must be a whole number of at least 16777216, not 1024'],
    [{ disks: [{ path: 'x.vmdk', format: 'vmdk' }] }, 'format of disk x.vmdk must be one of raw, qcow2, not "vmdk"'],
    [{ compression: 'gzip', compressionLevel: 12 }, 'gzip compression level must be a whole number from 1 to 9, not 12'],
    [{ compression: 'zstd', compressionLevel: 0 }, 'zstd compression level must be a whole number from 1 to 19, not 0'],
    [{ compressionLevel: 3 }, 'a compression level needs a compressed archive (gzip or zstd)'],
  ])('%j', async (options, message) => {
    await rejects(() => packXva({ ...base(), ...(options as Partial<PackOptions>) }), message);
    expect(fs.existsSync(path.join(dir, 'packed.xva'))).toBe(false);
  });
});

describe('writeOva and measureOva', () => {
  // Built when the table is, before beforeAll: the options are refused before any file is opened.
  const fromDisks = (o: object): WriteOvaOptions => ({ disks: [{ path: 'root.raw' }], vm: { name: 'vm' }, ...o }) as WriteOvaOptions;
  const fromXva = (o: object): WriteOvaOptions => ({ xva: { name: 'vm.xva', reopenable: true, open: () => openInput(xva) }, ...o }) as WriteOvaOptions;
  const sink = (): StreamTarget => new StreamTarget(new Writable({ write: (_c, _e, cb) => cb() }), 'sink');
  test.each([
    ['profile must be one of vmware, ovirt, not "hyperv"', fromDisks({ profile: 'hyperv' })],
    ['vmdkCompression must be one of deflate, stored, not "lz4"', fromDisks({ vmdkCompression: 'lz4' })],
    ['vmdkLevel must be a whole number from 0 to 9, not 10', fromDisks({ vmdkLevel: 10 })],
    ['qcow2Compat must be one of 1.1, 0.10, not "2"', fromDisks({ qcow2Compat: '2' })],
    ['firmware must be one of bios, uefi, not "efi"', fromDisks({ vm: { name: 'vm', firmware: 'efi' } })],
    ['vcpus must be a whole number of at least 1, not -1', fromDisks({ vm: { name: 'vm', vcpus: -1 } })],
    ['format of disk root.raw must be one of raw, qcow2, not "vhd"', fromDisks({ disks: [{ path: 'root.raw', format: 'vhd' }] })],
    ['readOptions.onBadChunk must be one of fail, warn, zero, not "skip"', fromXva({ readOptions: { onBadChunk: 'skip' } })],
  ])('%s', async (message, options) => {
    await rejects(() => writeOva(sink(), options), message);
    await rejects(() => measureOva(options), message);
  });
});
