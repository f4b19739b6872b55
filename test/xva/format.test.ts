/**
 * The XVA format facts reader and writer share (src/xva/format.ts, docs/xva-format.md §1, §4.1,
 * §5): what the writer names, the reader parses back.
 */
import fc from 'fast-check';
import {
  CHECKSUM_HEX_LENGTH,
  CHECKSUM_KINDS,
  checksumFileSuffix,
  chunkEntryName,
  entryDirectory,
  kindFromSuffix,
  OVA_XML_ENTRY,
  parseChunkName,
  XVA_CHUNK_SIZE,
} from '../../src/xva/format';

describe('XVA format facts', () => {
  test('ova.xml comes first and chunks are 1 MiB, as XAPI writes them', () => {
    expect(OVA_XML_ENTRY).toBe('ova.xml');
    expect(XVA_CHUNK_SIZE).toBe(1048576);
  });

  test('chunk names are printed %08d: eight digits, more when the counter needs them', () => {
    expect(chunkEntryName('Ref:14', 0)).toBe('Ref:14/00000000');
    expect(chunkEntryName('Ref:14', 42)).toBe('Ref:14/00000042');
    expect(chunkEntryName('Ref:14', 99999999)).toBe('Ref:14/99999999');
    expect(chunkEntryName('Ref:14', 100000000)).toBe('Ref:14/100000000');
  });

  test('every name the writer makes parses back to its ref and counter (property)', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^Ref:[0-9A-Za-z]{1,6}$/), fc.integer({ min: 0, max: 10 ** 12 }), fc.constantFrom(...CHECKSUM_KINDS), (ref, counter, kind) => {
        const name = chunkEntryName(ref, counter);
        expect(parseChunkName(name)).toEqual({ dir: ref, counter, suffix: '' });
        expect(parseChunkName(name + checksumFileSuffix(kind))).toEqual({ dir: ref, counter, suffix: checksumFileSuffix(kind) });
      }),
    );
  });

  test('the reader takes any padding up to 15 digits, so every counter is a safe integer', () => {
    expect(parseChunkName('Ref:1/7')).toEqual({ dir: 'Ref:1', counter: 7, suffix: '' });
    expect(parseChunkName(`Ref:1/${'9'.repeat(15)}`)?.counter).toBe(999999999999999);
    expect(parseChunkName(`Ref:1/${'9'.repeat(16)}`)).toBeUndefined();
    expect(parseChunkName('Ref:1/0000004a')).toBeUndefined();
  });

  test("an entry's directory is what parseChunkName takes for one: everything before the last /", () => {
    for (const name of ['Ref:7/00000001', 'Ref:7/00000001.xxhash', 'Ref:7/1']) expect(entryDirectory(name)).toBe(parseChunkName(name)!.dir);
    expect(entryDirectory('Ref:7/00000001 ')).toBe('Ref:7');
    expect(entryDirectory('Ref:7/0000000000000001')).toBe('Ref:7');
    expect(entryDirectory('Ref:7/sub/00000001')).toBe('Ref:7/sub');
    expect(entryDirectory('ova.xml')).toBeUndefined();
    expect(entryDirectory('/00000001')).toBeUndefined();
  });

  test('checksum entries: .xxhash is XXH64 (16 hex digits), .checksum is SHA-1 (40)', () => {
    expect(checksumFileSuffix('xxh64')).toBe('.xxhash');
    expect(checksumFileSuffix('sha1')).toBe('.checksum');
    expect(CHECKSUM_HEX_LENGTH).toEqual({ xxh64: 16, sha1: 40 });
    for (const kind of CHECKSUM_KINDS) {
      expect(kindFromSuffix(checksumFileSuffix(kind))).toBe(kind);
      expect(kindFromSuffix(chunkEntryName('Ref:3', 0) + checksumFileSuffix(kind))).toBe(kind);
    }
    expect(kindFromSuffix('.md5')).toBeUndefined();
  });
});
