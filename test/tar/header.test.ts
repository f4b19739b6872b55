import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { XvaFormatError } from '../../src/errors';
import { itWithTools } from '../helpers/system-tools';
import {
  CHECKSUM_OFFSET,
  decodeTarHeader,
  decodeTarNumber,
  encodeTarHeader,
  GID_OFFSET,
  MAGIC_OFFSET,
  MODE_OFFSET,
  MTIME_OFFSET,
  NAME_OFFSET,
  PREFIX_OFFSET,
  SIZE_OFFSET,
  TAR_BLOCK,
  tarChecksum,
  tarEndBlocks,
  tarPadding,
  TYPEFLAG_OFFSET,
  UID_OFFSET,
  UNAME_OFFSET,
  type TarDialect,
} from '../../src/tar/header';

const field = (b: Buffer, off: number, len: number): string => b.toString('latin1', off, off + len);

describe('encodeTarHeader: xapi dialect (ocaml-tar V7, docs/xva-format.md §2.1)', () => {
  const h = encodeTarHeader({ name: 'Ref:998/00000007.xxhash', size: 16, mtime: 0, dialect: 'xapi' });

  test('is one 512-byte block with the name NUL-padded', () => {
    expect(h.length).toBe(TAR_BLOCK);
    expect(field(h, NAME_OFFSET, 100)).toBe('Ref:998/00000007.xxhash'.padEnd(100, '\0'));
  });

  test('mode 0000400, uid/gid 0000000, each + NUL', () => {
    expect(field(h, MODE_OFFSET, 8)).toBe('0000400\0');
    expect(field(h, UID_OFFSET, 8)).toBe('0000000\0');
    expect(field(h, GID_OFFSET, 8)).toBe('0000000\0');
  });

  test('size 11 octal digits + NUL, mtime likewise', () => {
    expect(field(h, SIZE_OFFSET, 12)).toBe('00000000020\0');
    expect(field(h, MTIME_OFFSET, 12)).toBe('00000000000\0');
  });

  test('checksum is 7 octal digits + NUL (%07o\\0) of the unsigned sum', () => {
    const text = field(h, CHECKSUM_OFFSET, 8);
    expect(text).toMatch(/^[0-7]{7}\0$/);
    expect(parseInt(text.slice(0, 7), 8)).toBe(tarChecksum(h));
  });

  test('typeflag NUL, no magic/version, no owner names, rest zero', () => {
    expect(h[TYPEFLAG_OFFSET]).toBe(0);
    expect(h.subarray(MAGIC_OFFSET, TAR_BLOCK).every((b) => b === 0)).toBe(true);
    expect(h.subarray(TYPEFLAG_OFFSET, MAGIC_OFFSET).every((b) => b === 0)).toBe(true);
  });

  test('ova.xml with an mtime (XAPI passes the export time)', () => {
    const x = encodeTarHeader({ name: 'ova.xml', size: 12345, mtime: 1767225600, dialect: 'xapi' });
    expect(field(x, MTIME_OFFSET, 12)).toBe(`${(1767225600).toString(8).padStart(11, '0')}\0`);
    expect(field(x, SIZE_OFFSET, 12)).toBe('00000030071\0');
  });

  test('mode override (xva-img writes mode 0)', () => {
    const x = encodeTarHeader({ name: 'a', size: 0, mode: 0, dialect: 'xapi' });
    expect(field(x, MODE_OFFSET, 8)).toBe('0000000\0');
  });
});

describe('encodeTarHeader: ustar and v7', () => {
  test('ustar: magic ustar\\0 00, typeflag 0, checksum 6 digits + NUL + space, mode 0644', () => {
    const h = encodeTarHeader({ name: 'ova.xml', size: 5, mtime: 1700000000, dialect: 'ustar' });
    expect(field(h, MAGIC_OFFSET, 8)).toBe('ustar\u000000');
    expect(String.fromCharCode(h[TYPEFLAG_OFFSET]!)).toBe('0');
    expect(field(h, MODE_OFFSET, 8)).toBe('0000644\0');
    expect(field(h, CHECKSUM_OFFSET, 8)).toMatch(/^[0-7]{6}\0 $/);
    expect(field(h, UNAME_OFFSET, 32)).toBe('\0'.repeat(32));
  });

  test('v7: no magic, typeflag 0, traditional checksum', () => {
    const h = encodeTarHeader({ name: 'x', size: 1, dialect: 'v7' });
    expect(h.subarray(MAGIC_OFFSET, MAGIC_OFFSET + 8).every((b) => b === 0)).toBe(true);
    expect(String.fromCharCode(h[TYPEFLAG_OFFSET]!)).toBe('0');
    expect(field(h, CHECKSUM_OFFSET, 8)).toMatch(/^[0-7]{6}\0 $/);
  });

  itWithTools('tar')('ustar header is byte-identical to GNU tar --format=ustar --numeric-owner', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hdr-'));
    try {
      fs.writeFileSync(path.join(dir, 'ova.xml'), 'hello');
      fs.chmodSync(path.join(dir, 'ova.xml'), 0o644);
      fs.utimesSync(path.join(dir, 'ova.xml'), 1700000000, 1700000000);
      const tarFile = path.join(dir, 'u.tar');
      execFileSync('tar', ['--format=ustar', '--owner=0', '--group=0', '--numeric-owner', '-C', dir, '-cf', tarFile, 'ova.xml']);
      const gnu = fs.readFileSync(tarFile).subarray(0, TAR_BLOCK);
      const ours = encodeTarHeader({ name: 'ova.xml', size: 5, mtime: 1700000000, mode: 0o644, dialect: 'ustar' });
      expect(ours.equals(gnu)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('long names: ustar splits into prefix, V7 dialects refuse', () => {
    const name = `${'d'.repeat(120)}/Ref:1/00000000`;
    const h = encodeTarHeader({ name, size: 0, dialect: 'ustar' });
    expect(field(h, PREFIX_OFFSET, 120)).toBe('d'.repeat(120));
    expect(decodeTarHeader(h)!.name).toBe(name);
    expect(() => encodeTarHeader({ name: 'x'.repeat(101), size: 0, dialect: 'xapi' })).toThrow(RangeError);
    expect(() => encodeTarHeader({ name: 'x'.repeat(101), size: 0, dialect: 'ustar' })).toThrow(RangeError);
  });

  test('rejects negative or fractional numbers', () => {
    expect(() => encodeTarHeader({ name: 'x', size: -1, dialect: 'xapi' })).toThrow(RangeError);
    expect(() => encodeTarHeader({ name: 'x', size: 1.5, dialect: 'ustar' })).toThrow(RangeError);
    expect(() => encodeTarHeader({ name: 'x', size: 1, mode: 0o100000000, dialect: 'ustar' })).toThrow(RangeError);
  });
});

describe('sizes >= 8 GiB use GNU base-256', () => {
  const big = 8 * 1024 ** 3; // 0o100000000000: one more than 11 octal digits hold
  test('largest octal size stays octal; the next is base-256', () => {
    const max = 8 ** 11 - 1;
    expect(field(encodeTarHeader({ name: 'a', size: max, dialect: 'ustar' }), SIZE_OFFSET, 12)).toBe('77777777777\0');
    const h = encodeTarHeader({ name: 'a', size: big, dialect: 'ustar' });
    expect(h[SIZE_OFFSET]).toBe(0x80);
    expect([...h.subarray(SIZE_OFFSET + 1, SIZE_OFFSET + 12)]).toEqual([0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
    expect(decodeTarHeader(h)!.size).toBe(big);
  });

  itWithTools('tar', 'python3')('GNU tar and Python read a base-256 size', () => {
    const size = 2 ** 40 + 12345;
    const h = encodeTarHeader({ name: 'disk.raw', size, dialect: 'ustar' });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hdr-'));
    try {
      const file = path.join(dir, 'big.tar');
      fs.writeFileSync(file, h); // header only: listing reads the size, then hits EOF
      const py = execFileSync('python3', ['-c', 'import sys,tarfile;h=open(sys.argv[1],"rb").read(512);print(tarfile.TarInfo.frombuf(h,"utf-8","strict").size)', file]).toString().trim();
      expect(Number(py)).toBe(size);
      // GNU tar lists the entry (with its size) before complaining about the missing data.
      const gnu = spawnSync('tar', ['-tvf', file]).stdout.toString();
      expect(gnu).toContain(` ${size} `);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('decodeTarHeader', () => {
  test('zero block is the end marker', () => {
    expect(decodeTarHeader(Buffer.alloc(TAR_BLOCK))).toBeNull();
  });

  test('a flipped byte fails the checksum with TAR_BAD_HEADER', () => {
    const h = encodeTarHeader({ name: 'ova.xml', size: 10, dialect: 'xapi' });
    h[5]! ^= 0x01;
    expect(() => decodeTarHeader(h)).toThrow(XvaFormatError);
    try {
      decodeTarHeader(h);
    } catch (e) {
      expect((e as XvaFormatError).code).toBe('TAR_BAD_HEADER');
    }
  });

  test('checksum uses unsigned bytes (high-bit name bytes)', () => {
    const h = encodeTarHeader({ name: 'dïsk-é', size: 1, dialect: 'xapi' });
    const d = decodeTarHeader(h)!;
    expect(d.name).toBe('dïsk-é');
    expect(d.checksum).toBe(tarChecksum(h));
  });

  itWithTools('tar')('formats detected: v7, ustar, gnu', () => {
    expect(decodeTarHeader(encodeTarHeader({ name: 'a', size: 0, dialect: 'xapi' }))!.format).toBe('v7');
    expect(decodeTarHeader(encodeTarHeader({ name: 'a', size: 0, dialect: 'ustar' }))!.format).toBe('ustar');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hdr-'));
    try {
      fs.writeFileSync(path.join(dir, 'f'), 'abc');
      execFileSync('tar', ['--format=gnu', '-C', dir, '-cf', path.join(dir, 'g.tar'), 'f']);
      const g = decodeTarHeader(fs.readFileSync(path.join(dir, 'g.tar')).subarray(0, TAR_BLOCK))!;
      expect(g).toMatchObject({ name: 'f', size: 3, format: 'gnu', typeflag: '0' });
      execFileSync('tar', ['--format=v7', '-C', dir, '-cf', path.join(dir, 'v.tar'), 'f']);
      expect(decodeTarHeader(fs.readFileSync(path.join(dir, 'v.tar')).subarray(0, TAR_BLOCK))).toMatchObject({ name: 'f', size: 3, format: 'v7' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('octal fields tolerate leading spaces and trailing NUL/space', () => {
    const b = Buffer.alloc(TAR_BLOCK);
    b.write('  1234 \0', 0, 'latin1');
    expect(decodeTarNumber(b, 0, 8)).toBe(0o1234);
    b.write('1234\0\0\0\0', 0, 'latin1');
    expect(decodeTarNumber(b, 0, 8)).toBe(0o1234);
    b.write('\0\0\0\0\0\0\0\0', 0, 'latin1');
    expect(decodeTarNumber(b, 0, 8)).toBe(0);
    b.write('12 9\0\0\0\0', 0, 'latin1');
    expect(() => decodeTarNumber(b, 0, 8)).toThrow(XvaFormatError);
    b.write('0000800\0', 0, 'latin1');
    expect(() => decodeTarNumber(b, 0, 8)).toThrow(XvaFormatError);
  });

  test('negative base-256 is rejected', () => {
    const b = Buffer.alloc(12, 0xff);
    expect(() => decodeTarNumber(b, 0, 12, 'size')).toThrow(/negative/);
  });

  test('round trip (property): any dialect, name, size, mtime, mode', () => {
    const nameArb = fc.stringMatching(/^[A-Za-z0-9:._/-]{1,100}$/);
    fc.assert(
      fc.property(
        fc.constantFrom<TarDialect>('xapi', 'v7', 'ustar'),
        nameArb,
        fc.oneof(fc.integer({ min: 0, max: 2 ** 33 }), fc.maxSafeNat()),
        fc.integer({ min: 0, max: 2 ** 33 - 1 }),
        fc.integer({ min: 0, max: 0o7777 }),
        (dialect, name, size, mtime, mode) => {
          const h = encodeTarHeader({ name, size, mtime, mode, dialect });
          const d = decodeTarHeader(h)!;
          expect(d).toMatchObject({ name, size, mtime, mode, uid: 0, gid: 0 });
          expect(d.typeflag).toBe(dialect === 'xapi' ? '\0' : '0');
        },
      ),
      { numRuns: 300 },
    );
  });
});

test('tarPadding and tarEndBlocks', () => {
  expect(tarPadding(0)).toBe(0);
  expect(tarPadding(1)).toBe(511);
  expect(tarPadding(512)).toBe(0);
  expect(tarPadding(1048576 + 100)).toBe(412);
  const end = tarEndBlocks();
  expect(end.length).toBe(1024);
  expect(end.every((b) => b === 0)).toBe(true);
});
