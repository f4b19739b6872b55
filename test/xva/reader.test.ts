/**
 * The reader against XVAs from a second, independent producer (test/helpers/independent_xva.py)
 * in the three styles seen in the wild: XAPI (V7 headers, keep-alives), Xen Orchestra (ustar,
 * padded chunks), xva-img (mode 0, SHA-1, partial tail dropped).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readXva } from '../../src/xva/reader';
import type { DiskInfo } from '../../src/xva/metadata/model';
import { ChecksumError, XvaError, XvaFormatError } from '../../src/errors';
import { convertXva } from '../../src/ops/convert';
import { inspectXva } from '../../src/ops/inspect';
import { verifyXva } from '../../src/ops/verify';
import { encodeTarHeader, tarPadding } from '../../src/tar/header';
import { bufferSource } from '../helpers/sources';
import { MemoryWriter } from '../helpers/memory-writer';
import { independentXva, pseudoRandom } from '../helpers/independent';

const MiB = 1024 * 1024;

/** A disk with data, a zero MiB inside (absent chunk), and a present-but-partly-zero chunk. */
function sampleDisk(size: number, seed: number): Buffer {
  const d = pseudoRandom(size, seed);
  if (size > 3 * MiB) d.fill(0, MiB, 2 * MiB); // a whole zero chunk: left out by the writer
  d.fill(0, 0, 4096); // zeros inside a present chunk
  return d;
}

async function readAll(xva: Buffer, opts: Parameters<typeof readXva>[2] = {}) {
  const writers = new Map<string, MemoryWriter>();
  const result = await readXva(
    bufferSource(xva),
    {
      openDisk: (d: DiskInfo) => {
        const w = new MemoryWriter(d.virtualSize);
        writers.set(d.userdevice, w);
        return w;
      },
    },
    opts,
  );
  return { result, writers };
}

describe('XAPI-style archives', () => {
  test.each(['xxh64', 'sha1'] as const)('%s: multi-disk in string order, keep-alives, odd size', async (checksum) => {
    const d0 = sampleDisk(5 * MiB + 3 * 512, 1);
    const d1 = sampleDisk(2 * MiB, 2);
    const xva = independentXva({
      style: 'xapi',
      checksum,
      disks: [
        { ref: 'Ref:998', userdevice: '0', image: d0, keepaliveBefore: [1, 3] },
        { ref: 'Ref:1003', userdevice: '1', image: d1 },
      ],
    });
    const { result, writers } = await readAll(xva);
    expect(result.checksum).toBe(checksum);
    expect(result.metadata.streamedRefs).toEqual(['Ref:1003', 'Ref:998']);
    expect(writers.get('0')!.bytes.equals(d0)).toBe(true);
    expect(writers.get('1')!.bytes.equals(d1)).toBe(true);
    const s0 = result.disks.find((d) => d.ref === 'Ref:998')!;
    expect(s0.keepAlives).toBe(2);
    expect(result.warnings).toEqual([]);
  });

  test('an all-zero disk is just its first and last chunk', async () => {
    const zero = Buffer.alloc(3 * MiB);
    const { result, writers } = await readAll(independentXva({ style: 'xapi', disks: [{ ref: 'Ref:1', userdevice: '0', image: zero }] }));
    expect(writers.get('0')!.bytes.equals(zero)).toBe(true);
    expect(result.disks[0]!.chunks).toBe(2);
  });

  test('a checksum mismatch names the chunk and both digests', async () => {
    const d0 = sampleDisk(2 * MiB, 3);
    const xva = independentXva({ style: 'xapi', disks: [{ ref: 'Ref:7', userdevice: '0', image: d0 }] });
    // Flip a byte inside the data of Ref:7/00000001: find its header by name.
    const at = xva.indexOf('Ref:7/00000001\0');
    xva[at + 512 + 100]! ^= 0xff;
    await expect(readAll(xva)).rejects.toThrow(ChecksumError);
    await expect(readAll(xva)).rejects.toThrow(/^Ref:7\/00000001: XXH64 mismatch \(expected [0-9A-F]{16}, got [0-9A-F]{16}\)$/);
    const warned = await readAll(xva, { onBadChunk: 'warn' });
    expect(warned.result.badChunks).toEqual([expect.objectContaining({ entry: 'Ref:7/00000001', offset: MiB, action: 'kept' })]);
    const zeroed = await readAll(xva, { onBadChunk: 'zero' });
    expect(zeroed.writers.get('0')!.bytes.subarray(MiB).equals(Buffer.alloc(MiB))).toBe(true);
  });
});

describe('other producers', () => {
  test('Xen Orchestra style: ustar headers, padded chunks, virtual_size rounded up', async () => {
    const d0 = sampleDisk(7 * MiB + 4096, 4);
    const { result, writers } = await readAll(independentXva({ style: 'xo', disks: [{ ref: 'Ref:000', userdevice: '0', image: d0 }] }));
    const w = writers.get('0')!;
    expect(w.virtualSize).toBe(8 * MiB);
    expect(w.bytes.subarray(0, d0.length).equals(d0)).toBe(true);
    expect(result.warnings).toEqual([]);
  });

  test('xva-img style: mode 0, SHA-1, trailing partial MiB dropped -> zero-filled with a warning', async () => {
    const d0 = sampleDisk(3 * MiB + 1024, 5);
    const { result, writers } = await readAll(independentXva({ style: 'xvaimg', disks: [{ ref: 'Ref:3', userdevice: '0', image: d0 }] }));
    const w = writers.get('0')!;
    expect(w.bytes.subarray(0, 3 * MiB).equals(d0.subarray(0, 3 * MiB))).toBe(true);
    expect(w.bytes.subarray(3 * MiB).equals(Buffer.alloc(1024))).toBe(true);
    expect(result.checksum).toBe('sha1');
    expect(result.warnings.join('\n')).toMatch(/zero-filled/);
  });
});

describe('structure errors name the place', () => {
  const good = (): Buffer => independentXva({ style: 'xapi', disks: [{ ref: 'Ref:9', userdevice: '0', image: sampleDisk(2 * MiB, 6) }] });

  test('truncated mid-chunk', async () => {
    const xva = good();
    const cut = xva.subarray(0, xva.indexOf('Ref:9/00000001\0') + 512 + 1000);
    await expect(readAll(cut)).rejects.toMatchObject({ code: 'TAR_TRUNCATED' });
  });

  test('truncated at an entry boundary before the disk is complete', async () => {
    const xva = good();
    const cut = xva.subarray(0, xva.indexOf('Ref:9/00000001\0'));
    await expect(readAll(cut)).rejects.toMatchObject({ code: 'TAR_TRUNCATED' });
  });

  test('a bad tar header checksum reports the header offset', async () => {
    const xva = good();
    const at = xva.indexOf('Ref:9/00000001\0');
    xva[at + 130]! ^= 1; // inside the size field
    await expect(readAll(xva)).rejects.toMatchObject({ code: 'TAR_BAD_HEADER', location: { offset: at } });
  });

  test('ova.xml not first', async () => {
    const xva = good();
    const bad = Buffer.concat([xva.subarray(xva.indexOf('Ref:9/00000000\0'))]);
    await expect(readAll(bad)).rejects.toMatchObject({ code: 'XVA_NO_OVA_XML' });
  });

  test('a chunk without its checksum file', async () => {
    const xva = good();
    const sum = xva.indexOf('Ref:9/00000000.xxhash\0');
    const withoutSum = Buffer.concat([xva.subarray(0, sum), xva.subarray(sum + 1024)]);
    await expect(readAll(withoutSum)).rejects.toMatchObject({ code: 'XVA_MISSING_CHECKSUM' });
  });

  test('garbage bytes are not a tar archive', async () => {
    await expect(readAll(Buffer.alloc(4096, 0x41))).rejects.toBeInstanceOf(XvaFormatError);
  });
});

/** Renames the entry whose header holds `from` (NUL-terminated), rewriting the header checksum. */
function renameEntry(xva: Buffer, from: string, to: string): Buffer {
  const at = xva.indexOf(`${from}\0`);
  if (at < 0 || at % 512 !== 0) throw new Error(`no header named ${from}`);
  const out = Buffer.from(xva);
  const header = out.subarray(at, at + 512);
  header.fill(0, 0, 100);
  if (Buffer.byteLength(to) > 100) throw new Error('name too long');
  header.write(to, 0, 'utf8');
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return out;
}

/** Inserts entries (headers and padded bodies) in front of the entry whose header holds `before`. */
function insertBefore(xva: Buffer, before: string, entries: Array<{ name: string; data?: Buffer; typeflag?: string }>): Buffer {
  const at = xva.indexOf(`${before}\0`);
  if (at < 0 || at % 512 !== 0) throw new Error(`no header named ${before}`);
  const blocks = entries.flatMap(({ name, data = Buffer.alloc(0), typeflag }) => [
    encodeTarHeader({ name, size: typeflag === '5' ? 0 : data.length, typeflag, dialect: 'ustar' }),
    ...(typeflag === '5' ? [] : [data, Buffer.alloc(tarPadding(data.length))]),
  ]);
  return Buffer.concat([xva.subarray(0, at), ...blocks, xva.subarray(at)]);
}

describe("entry names in a disk's directory (docs/xva-format.md §2.3)", () => {
  const image = sampleDisk(3 * MiB, 8);
  const good = independentXva({ style: 'xapi', disks: [{ ref: 'Ref:7', userdevice: '0', image }] });
  /** Chunk 1 and its checksum renamed to `name` and `name` + `.xxhash`. */
  const renamed = (name: string, xva = good): Buffer => renameEntry(renameEntry(xva, 'Ref:7/00000001', name), 'Ref:7/00000001.xxhash', `${name}.xxhash`);

  test.each([
    ['1 digit', 'Ref:7/1'],
    ['9 digits', 'Ref:7/000000001'],
    ['15 digits', `Ref:7/${'0'.repeat(14)}1`],
    ['a ./ prefix', './Ref:7/00000001'],
  ])('a chunk name with %s is a chunk, placed by its counter as XAPI would', async (_label, name) => {
    const { result, writers } = await readAll(renamed(name));
    expect(writers.get('0')!.bytes.equals(image)).toBe(true);
    expect(result.warnings).toEqual([]);
  });

  test.each([
    ['16 digits', 'Ref:7/0000000000000001', '0000000000000001'],
    ['a trailing space', 'Ref:7/00000001 ', '00000001 '],
    ['a leading space', 'Ref:7/ 0000001', ' 0000001'],
    ['a no-break space', 'Ref:7/00000001\u00a0', '00000001\\u00a0'],
    ['a sign', 'Ref:7/+0000001', '+0000001'],
    ['hex digits', 'Ref:7/0000000a', '0000000a'],
    ['a 0x prefix', 'Ref:7/0x000001', '0x000001'],
    ['a full-width digit', 'Ref:7/0000000\uff11', '0000000\\uff11'],
    ['a decimal point', 'Ref:7/00000001.0.xxhash', '00000001.0.xxhash'],
    ['no digits at all', 'Ref:7/notes.txt', 'notes.txt'],
  ])('an entry in a disk\'s directory that is not a chunk name is refused, not skipped: %s', async (_label, name, shown) => {
    const xva = renamed(name);
    const offset = xva.indexOf(Buffer.from(`${name}\0`));
    const err: unknown = await readAll(xva).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XvaFormatError);
    expect(err).toMatchObject({ code: 'XVA_BAD_ENTRY', exitCode: 2, location: { entry: name, offset } });
    const line = (err as XvaError).describe();
    expect(line).toContain(`"${shown}" in the directory of VDI Ref:7 is not a chunk name`);
    expect(line).toMatch(new RegExp(`\\(at byte ${offset}\\)$`));
    expect(line).not.toMatch(/[\n\r]/);
  });

  test('even an empty one: a keep-alive lost to a damaged name would shift every later chunk', async () => {
    const xva = independentXva({ style: 'xapi', disks: [{ ref: 'Ref:7', userdevice: '0', image, keepaliveBefore: [1] }] });
    const bad = renameEntry(renameEntry(xva, 'Ref:7/00000001', 'Ref:7/00000001 '), 'Ref:7/00000001.xxhash', 'Ref:7/00000001 .xxhash');
    await expect(readAll(bad)).rejects.toMatchObject({ code: 'XVA_BAD_ENTRY', location: { entry: 'Ref:7/00000001 ' } });
  });

  test('a damaged checksum name after its chunk is a missing checksum', async () => {
    const bad = renameEntry(good, 'Ref:7/00000001.xxhash', 'Ref:7/00000001.xxhash ');
    await expect(readAll(bad)).rejects.toMatchObject({ code: 'XVA_MISSING_CHECKSUM', location: { entry: 'Ref:7/00000001' } });
  });

  test('directory entries, and entries outside the directories of the VDIs of ova.xml, are skipped', async () => {
    const xva = insertBefore(good, 'Ref:7/00000000', [
      { name: 'Ref:7/', typeflag: '5' },
      { name: 'README.txt', data: Buffer.from('hello\n') },
      { name: 'Ref:99/00000001 ', data: Buffer.alloc(1000, 1) },
      { name: 'Ref:7/sub/notes', data: Buffer.from('x') },
    ]);
    const { result, writers } = await readAll(xva);
    expect(writers.get('0')!.bytes.equals(image)).toBe(true);
    expect(result.warnings).toHaveLength(3);
    for (const w of result.warnings) expect(w).toMatch(/^unexpected entry "(README\.txt|Ref:99\/00000001 |Ref:7\/sub\/notes)" at byte \d+; skipped$/);
  });

  describe('convert, verify and info --chunks refuse it alike', () => {
    let dir: string;
    let file: string;
    let offset: number;
    beforeAll(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xva-names-'));
      file = path.join(dir, 'bad.xva');
      const xva = renamed('Ref:7/0000000000000001');
      offset = xva.indexOf('Ref:7/0000000000000001\0');
      fs.writeFileSync(file, xva);
    });
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    test('convert', async () => {
      await expect(convertXva(file, { outDir: path.join(dir, 'out') })).rejects.toMatchObject({ code: 'XVA_BAD_ENTRY', exitCode: 2, location: { offset } });
    });

    test('verify', async () => {
      const r = await verifyXva(file);
      expect(r.ok).toBe(false);
      expect(r.exitCode).toBe(2);
      expect(r.problems).toEqual([expect.objectContaining({ code: 'XVA_BAD_ENTRY', entry: 'Ref:7/0000000000000001', offset })]);
      expect(r.problems[0]!.message).toMatch(/^.*bad\.xva: Ref:7\/0000000000000001: "0000000000000001" in the directory of VDI Ref:7 is not a chunk name .*\(at byte \d+\)$/);
    });

    test('info --chunks (header walk, no data read)', async () => {
      await expect(inspectXva(file, { chunks: true })).rejects.toMatchObject({ code: 'XVA_BAD_ENTRY', exitCode: 2, location: { offset } });
    });
  });
});
