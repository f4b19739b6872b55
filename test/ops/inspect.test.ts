/**
 * inspectXva (`xva2img info`): metadata from ova.xml only, checksum kind by peeking, and the
 * per-disk chunk counts of `--chunks` — by seeking over a plain file (header walker) and by
 * streaming (compressed input) — which must agree with each other and with a full read.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InputError, XvaFormatError } from '../../src/errors';
import { inspectXva, type InspectOptions, type XvaInfo } from '../../src/ops/inspect';
import { openInput } from '../../src/input/open';
import { openTarHeaderWalker, type WalkedEntry } from '../../src/tar/header-walker';
import { readTar } from '../helpers/tar-stream-oracle';
import { itWithTools } from '../helpers/system-tools';
import { readXva } from '../../src/xva/reader';
import { independentXva, pseudoRandom } from '../helpers/independent';
import { KiB, makeXvaFile, MiB, type MakeXvaOptions } from '../helpers/xva-fixtures';
import { asStreamSource } from '../helpers/sources';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inspect-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** inspectXva on `file` read as a stream: the path compressed or piped input takes, for a plain file. */
function inspectStreamed(file: string, options: InspectOptions): Promise<XvaInfo> {
  return openInput(file).then((source) => inspectXva(asStreamSource(source), options));
}

let n = 0;
function fresh(ext = '.xva'): string {
  return path.join(dir, `f${n++}${ext}`);
}

const RICH: MakeXvaOptions = {
  vmName: 'web01',
  vm: { description: 'front end', vcpus: 4, vcpusAtStartup: 2, memoryBytes: 2048 * MiB, firmware: 'uefi' },
  disks: [
    { name: 'root', size: 5 * MiB + 4096, fill: [{ offset: 0, length: 200 * KiB }, { offset: 3 * MiB, length: 10 * KiB }] },
    { name: 'data', size: 3 * MiB, userdevice: 2, fill: [{ offset: 2 * MiB + 512, length: 4096 }] },
  ],
  cdroms: [{ userdevice: 3 }],
  vifs: [{ device: 0, mac: 'b2:1f:00:11:22:33', networkName: 'Pool-wide network associated with eth0', bridge: 'xenbr0' }],
  keepAlives: [{ disk: 0, beforeChunk: 2, count: 2 }],
};

/** Stats of a full, verifying read — the reference for the chunk counts. */
async function fullRead(file: string) {
  const src = await openInput(file);
  try {
    const r = await readXva(src);
    return r.disks.map((d) => ({ ref: d.ref, chunks: d.chunks, keepAlives: d.keepAlives, allocatedBytes: d.dataBytes, checksum: d.checksum ?? null }));
  } finally {
    await src.close();
  }
}

function chunkStats(info: XvaInfo) {
  return info.disks.map((d) => ({ ref: d.ref, ...d.chunkStats! }));
}

function sortByRef<T extends { ref: string }>(a: T[]): T[] {
  return [...a].sort((x, y) => (x.ref < y.ref ? -1 : 1));
}

describe('info from ova.xml', () => {
  test('VM, disks, CDs, NICs, producer, compression and checksum kind', async () => {
    const fx = await makeXvaFile(dir, { ...RICH, fileName: 'rich.xva' });
    const info = await inspectXva(fx.path);
    expect(info.vm).toMatchObject({ name: 'web01', description: 'front end', vcpus: 4, vcpusAtStartup: 2, memoryBytes: 2048 * MiB, hvm: true, firmware: 'uefi', isTemplate: false });
    expect(info.disks.map((d) => [d.userdevice, d.name, d.virtualSize, d.bootable, d.type])).toEqual([
      ['0', 'root', 5 * MiB + 4096, true, 'Disk'],
      ['2', 'data', 3 * MiB, false, 'Disk'],
    ]);
    expect(info.cdroms).toEqual([expect.objectContaining({ userdevice: '3', empty: true })]);
    expect(info.vifs).toEqual([expect.objectContaining({ device: '0', mac: 'b2:1f:00:11:22:33', networkName: 'Pool-wide network associated with eth0', bridge: 'xenbr0' })]);
    expect(info.producer).toMatchObject({ brand: 'XCP-ng', version: '8.2.1' });
    expect(info.exportVersion).toBe(2);
    expect(info.compression).toBe('none');
    expect(info.checksum).toBe('xxh64');
    expect(info.chunkScan).toBeNull();
    expect(info.disks[0]!.chunkStats).toBeUndefined();
  });

  test.each([
    ['none', 'xxh64'],
    ['gzip', 'sha1'],
    ['zstd', 'xxh64'],
  ] as const)('%s input, %s: the checksum kind is peeked cheaply', async (compression, checksum) => {
    const fx = await makeXvaFile(dir, { vmName: `peek-${compression}`, compression, checksum });
    const info = await inspectXva(fx.path);
    expect(info.compression).toBe(compression);
    expect(info.checksum).toBe(checksum);
  });

  test('a template, a PV guest', async () => {
    const fx = await makeXvaFile(dir, { vmName: 'tpl', vm: { isTemplate: true, hvm: false } });
    const info = await inspectXva(fx.path);
    expect(info.vm.isTemplate).toBe(true);
    expect(info.vm.hvm).toBe(false);
  });

  test('info without --chunks never looks past the first chunk: a truncated archive still shows its metadata', async () => {
    const fx = await makeXvaFile(dir, { ...RICH, fileName: 'cut-meta.xva' });
    const cut = fresh();
    fs.writeFileSync(cut, fs.readFileSync(fx.path).subarray(0, 3 * MiB));
    await expect(inspectXva(cut)).resolves.toMatchObject({ vm: { name: 'web01' } });
    await expect(inspectXva(cut, { chunks: true })).rejects.toMatchObject({ code: 'TAR_TRUNCATED', exitCode: 2 });
    await expect(inspectStreamed(cut, { chunks: true })).rejects.toMatchObject({ code: 'TAR_TRUNCATED', exitCode: 2 });
  });

  test('not an XVA: clear errors with the input name', async () => {
    const notTar = fresh('.bin');
    fs.writeFileSync(notTar, Buffer.alloc(4096, 0x41));
    await expect(inspectXva(notTar)).rejects.toThrow(XvaFormatError);
    const err = await inspectXva(notTar).catch((e) => e);
    expect(err.describe()).toContain(notTar);
    expect(err.exitCode).toBe(2);
  });
});

describe('--chunks: seek path and stream path agree', () => {
  const cases: Array<[string, MakeXvaOptions]> = [
    ['multi-disk with keep-alives and gaps', RICH],
    ['SHA-1, ustar dialect', { checksum: 'sha1', tarDialect: 'ustar', disks: [{ size: 4 * MiB, fill: [{ offset: 3 * MiB, length: 1000 }] }] }],
    ['every chunk written (newer XAPI)', { writeAllChunks: true, disks: [{ size: 3 * MiB + 512 }] }],
    ['Xen Orchestra: padded last chunk', { padLastChunk: true, disks: [{ size: 2 * MiB + 4096 }] }],
    ['xva-img: partial tail dropped', { dropPartialTail: true, checksum: 'sha1', disks: [{ size: 2 * MiB + 4096, fill: [{ offset: 0, length: 2 * MiB + 4096 }] }] }],
    ['zero-size disk next to a real one', { disks: [{ size: 2 * MiB }, { size: 0, content: Buffer.alloc(0) }] }],
    ['disk order by string: Ref:1003 before Ref:998', { disks: [{ ref: 'Ref:998', size: 2 * MiB }, { ref: 'Ref:1003', size: 1 * MiB }] }],
  ];
  test.each(cases)('%s', async (_label, opts) => {
    const plain = await makeXvaFile(dir, { ...opts, fileName: `agree-${n++}.xva` });
    const gz = await makeXvaFile(dir, { ...opts, compression: 'gzip', fileName: `agree-${n++}.xva.gz` });
    const seek = await inspectXva(plain.path, { chunks: true });
    const streamed = await inspectStreamed(plain.path, { chunks: true });
    const fromGz = await inspectXva(gz.path, { chunks: true });
    expect(seek.chunkScan).toBe('seek');
    expect(streamed.chunkScan).toBe('stream');
    expect(fromGz.chunkScan).toBe('stream');
    expect(chunkStats(seek)).toEqual(chunkStats(streamed));
    expect(chunkStats(seek)).toEqual(chunkStats(fromGz));
    expect(seek.checksum).toBe(streamed.checksum);
    expect(seek.warnings).toEqual(streamed.warnings);
    expect(seek.tarBytes).toBe(streamed.tarBytes);
    // ... and agree with a full verifying read.
    expect(sortByRef(chunkStats(seek))).toEqual(sortByRef(await fullRead(plain.path)));
  });

  test('allocated bytes and counts are what the writer wrote', async () => {
    const fx = await makeXvaFile(dir, { ...RICH, fileName: 'counts.xva' });
    const info = await inspectXva(fx.path, { chunks: true });
    for (const w of fx.summary.disks) {
      const d = info.disks.find((x) => x.ref === w.ref)!;
      expect(d.chunkStats).toEqual({ chunks: w.chunksWritten + w.keepAlives, keepAlives: w.keepAlives, allocatedBytes: w.dataBytes, checksum: 'xxh64' });
    }
  });

  test.each(['xapi', 'xo', 'xvaimg'] as const)('independent producer, %s style', async (style) => {
    const img = pseudoRandom(4 * MiB + (style === 'xapi' ? 1536 : 0), 7);
    img.fill(0, MiB, 2 * MiB);
    const xva = independentXva({
      style,
      checksum: style === 'xvaimg' ? 'sha1' : 'xxh64',
      disks: [
        { ref: 'Ref:998', userdevice: '0', image: img, keepaliveBefore: style === 'xapi' ? [1, 3] : [] },
        { ref: 'Ref:1003', userdevice: '1', image: pseudoRandom(MiB, 9) },
      ],
    });
    const file = fresh();
    fs.writeFileSync(file, xva);
    const seek = await inspectXva(file, { chunks: true });
    const streamed = await inspectStreamed(file, { chunks: true });
    expect(chunkStats(seek)).toEqual(chunkStats(streamed));
    expect(sortByRef(chunkStats(seek))).toEqual(sortByRef(await fullRead(file)));
    if (style === 'xapi') expect(seek.disks.find((d) => d.ref === 'Ref:998')!.chunkStats!.keepAlives).toBe(2);
  });

  test('the seek path never reads chunk data: garbage in every data entry changes nothing', async () => {
    const fx = await makeXvaFile(dir, { ...RICH, fileName: 'garbage.xva' });
    const before = await inspectXva(fx.path, { chunks: true });
    const bytes = fs.readFileSync(fx.path);
    const walker = await openTarHeaderWalker(fx.path);
    const entries: WalkedEntry[] = [];
    for await (const e of walker.entries()) entries.push(e);
    await walker.close();
    for (const e of entries) if (/\/\d+$/.test(e.name)) bytes.fill(0xa5, e.dataOffset, e.dataOffset + e.size);
    const garbled = fresh();
    fs.writeFileSync(garbled, bytes);
    const after = await inspectXva(garbled, { chunks: true });
    expect(chunkStats(after)).toEqual(chunkStats(before));
    // whereas a full read notices
    await expect(fullRead(garbled)).rejects.toMatchObject({ code: 'XVA_BAD_CHECKSUM' });
  });

  test('the walker does far fewer reads than there are data bytes', async () => {
    const fx = await makeXvaFile(dir, { writeAllChunks: true, disks: [{ size: 32 * MiB }], fileName: 'reads.xva' });
    const walker = await openTarHeaderWalker(fx.path);
    let count = 0;
    for await (const _ of walker.entries()) count++;
    expect(walker.endBlocksSeen()).toBe(true);
    expect(count).toBe(1 + 2 * 32);
    // one small read per chunk (the checksum header, its data and the next chunk's header share
    // it) plus a few speculative ones: a tiny fraction of the file
    expect(walker.readCount()).toBeLessThanOrEqual(34 + 8);
    expect(walker.bytesRead()).toBeLessThan(fs.statSync(fx.path).size / 200);
    await walker.close();
  });

  test('truncation inside a chunk and at an entry boundary: both paths say TAR_TRUNCATED', async () => {
    const fx = await makeXvaFile(dir, { ...RICH, fileName: 'trunc.xva' });
    const bytes = fs.readFileSync(fx.path);
    const walker = await openTarHeaderWalker(fx.path);
    const entries: WalkedEntry[] = [];
    for await (const e of walker.entries()) entries.push(e);
    await walker.close();
    const third = entries[3]!; // a data entry of the first disk
    for (const cutAt of [third.dataOffset + 1000, third.headerOffset]) {
      const cut = fresh();
      fs.writeFileSync(cut, bytes.subarray(0, cutAt));
      const a = await inspectXva(cut, { chunks: true }).catch((e) => e);
      const b = await inspectStreamed(cut, { chunks: true }).catch((e) => e);
      expect(a).toMatchObject({ code: 'TAR_TRUNCATED', exitCode: 2 });
      expect(b).toMatchObject({ code: 'TAR_TRUNCATED', exitCode: 2 });
      expect(a.describe()).toContain(cut);
    }
  });

  test('a corrupted header is reported with its byte offset', async () => {
    const fx = await makeXvaFile(dir, { ...RICH, fileName: 'badhdr.xva' });
    const bytes = fs.readFileSync(fx.path);
    const walker = await openTarHeaderWalker(fx.path);
    const entries: WalkedEntry[] = [];
    for await (const e of walker.entries()) entries.push(e);
    await walker.close();
    const victim = entries[2]!;
    bytes[victim.headerOffset + 5]! ^= 0x20; // name byte changes, stored checksum no longer matches
    const file = fresh();
    fs.writeFileSync(file, bytes);
    const err = await inspectXva(file, { chunks: true }).catch((e) => e);
    expect(err).toMatchObject({ code: 'TAR_BAD_HEADER', exitCode: 2 });
    expect(err.describe()).toContain(`at byte ${victim.headerOffset}`);
  });

  test('a chunk without its checksum entry is a structure error on both paths', async () => {
    const file = (await makeXvaFile(dir, { omitChecksumFor: [{ disk: 0, counter: 1 }], disks: [{ size: 3 * MiB, fill: [{ offset: 0, length: 3 * MiB }] }], fileName: 'nosum.xva' })).path;
    await expect(inspectXva(file, { chunks: true })).rejects.toMatchObject({ code: 'XVA_MISSING_CHECKSUM' });
    await expect(inspectStreamed(file, { chunks: true })).rejects.toMatchObject({ code: 'XVA_MISSING_CHECKSUM' });
  });
});

describe('header walker', () => {
  itWithTools('tar')('PAX and GNU long names, ./ prefixes and directories: same entries as the streaming tar reader', async () => {
    const src = path.join(dir, 'tree');
    const long = 'd'.repeat(120);
    fs.mkdirSync(path.join(src, 'sub', long), { recursive: true });
    fs.writeFileSync(path.join(src, 'a.txt'), 'hello');
    fs.writeFileSync(path.join(src, 'sub', long, 'f.bin'), Buffer.alloc(3000, 1));
    for (const format of ['pax', 'gnu']) {
      const tarFile = path.join(dir, `tree-${format}.tar`);
      execFileSync('tar', ['--format', format, '-C', src, '-cf', tarFile, '.']);
      const walker = await openTarHeaderWalker(tarFile);
      const walked: Array<[string, number, string]> = [];
      for await (const e of walker.entries()) walked.push([e.name, e.size, e.type]);
      expect(walker.endBlocksSeen()).toBe(true);
      await walker.close();
      const tar = readTar(fs.createReadStream(tarFile));
      const streamed: Array<[string, number, string]> = [];
      for await (const e of tar) {
        streamed.push([e.name, e.size, e.type]);
        await e.skip();
      }
      expect(walked).toEqual(streamed);
      expect(walked.map((w) => w[0])).toContain(`sub/${long}/f.bin`);
    }
  });

  test('a missing file or a directory is INPUT_UNREADABLE naming the path, like every other reader', async () => {
    const missing = path.join(dir, 'no-such.xva');
    const missingErr = (await openTarHeaderWalker(missing).catch((e: unknown) => e)) as InputError;
    expect(missingErr).toBeInstanceOf(InputError);
    expect(missingErr.code).toBe('INPUT_UNREADABLE');
    expect(missingErr.describe()).toBe(`${missing}: cannot open input: ENOENT: no such file or directory`);
    const dirErr = (await openTarHeaderWalker(dir).catch((e: unknown) => e)) as InputError;
    expect(dirErr.code).toBe('INPUT_UNREADABLE');
    expect(dirErr.describe()).toContain(`${dir}: cannot read input: EISDIR`);
  });
});
