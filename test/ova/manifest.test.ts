import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { buildManifest, manifestBytes, manifestLine, MemberDigest, parseManifest } from '../../src/ova/manifest';
import { ovaArchiveSize, ovaMemberHeader, tarMemberBytes } from '../../src/ova/writer/layout';
import { decodeTarHeader } from '../../src/tar/header';

const hex = (s: string): string => createHash('sha256').update(s).digest('hex');

describe('manifest', () => {
  test('line format is exactly what virt-v2v parses', () => {
    const line = manifestLine({ name: 'vm-disk1.vmdk', sha256: hex('a') });
    expect(line).toBe(`SHA256(vm-disk1.vmdk)= ${hex('a')}\n`);
    expect(/^(SHA1|SHA256)\((.*)\)= ([0-9a-fA-F]+)\r?$/.test(line.trimEnd())).toBe(true);
    expect(() => manifestLine({ name: 'x', sha256: 'ABC' })).toThrow();
  });

  test('manifestBytes predicts the manifest length; parse round-trips (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ minLength: 1, maxLength: 60 }).filter((s) => !/[\n\r()]/.test(s)), { minLength: 1, maxLength: 6 }), (names) => {
        const entries = names.map((name) => ({ name, sha256: hex(name) }));
        const body = buildManifest(entries);
        expect(body.length).toBe(manifestBytes(names));
        expect(parseManifest(body.toString('utf8')).map((e) => e.name)).toEqual(names);
      }),
    );
  });

  test('MemberDigest hashes incrementally', () => {
    const d = new MemberDigest();
    d.update(Buffer.from('ab'));
    d.update(Buffer.from('c'));
    expect(d.bytes).toBe(3);
    expect(d.hex()).toBe(hex('abc'));
  });
});

describe('archive layout math', () => {
  test('member and archive sizes', () => {
    expect(tarMemberBytes(0)).toBe(512);
    expect(tarMemberBytes(1)).toBe(1024);
    expect(tarMemberBytes(512)).toBe(1024);
    expect(ovaArchiveSize(1000, [512, 513], 100)).toBe(512 + 1024 + 1024 + 1536 + 1024 + 1024);
    expect(ovaArchiveSize(1000, [], undefined)).toBe(1536 + 1024);
  });

  test('member headers: one ustar block, octal below 8 GiB, GNU base-256 from 8 GiB', () => {
    const small = ovaMemberHeader('a.vmdk', 8 * 1024 ** 3 - 1, 1_700_000_000);
    expect(small.length).toBe(512);
    expect(small.toString('latin1', 257, 263)).toBe('ustar\u0000');
    expect(decodeTarHeader(small)!.size).toBe(8 * 1024 ** 3 - 1);
    const big = ovaMemberHeader('a.vmdk', 10 * 1024 ** 3, 1_700_000_000);
    expect(big[124]).toBe(0x80);
    expect(decodeTarHeader(big)!.size).toBe(10 * 1024 ** 3);
    expect(decodeTarHeader(big)!.typeflag).toBe('0');
  });
});
