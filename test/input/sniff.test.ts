import { detectCompression, GZIP_MAGIC, SNIFF_BYTES, ZSTD_MAGIC } from '../../src/input/sniff';

describe('detectCompression', () => {
  it('recognises gzip by 1F 8B', () => {
    expect(detectCompression(Buffer.from([0x1f, 0x8b, 0x08, 0x00]))).toBe('gzip');
    expect(detectCompression(GZIP_MAGIC)).toBe('gzip');
  });

  it('recognises zstd by 28 B5 2F FD', () => {
    expect(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04]))).toBe('zstd');
    expect(detectCompression(ZSTD_MAGIC)).toBe('zstd');
  });

  it('a stream may begin with a skippable frame (0x184D2A50 to 0x184D2A5F): its magic alone means zstd', () => {
    for (let nibble = 0; nibble < 16; nibble++) {
      const head = Buffer.alloc(8);
      head.writeUInt32LE(0x184d2a50 + nibble, 0);
      // A size far beyond any sniff window: the zstd frame after it is never seen.
      head.writeUInt32LE(0xffff_fff0, 4);
      expect(detectCompression(head)).toBe('zstd');
      expect(detectCompression(head.subarray(0, SNIFF_BYTES))).toBe('zstd');
    }
  });

  it('treats near misses of the skippable frame magic as plain', () => {
    for (const magic of [0x184d2a4f, 0x184d2a60, 0x184d2b50, 0x194d2a50, 0x184c2a50]) {
      const head = Buffer.alloc(4);
      head.writeUInt32LE(magic, 0);
      expect({ magic: magic.toString(16), got: detectCompression(head) }).toEqual({ magic: magic.toString(16), got: 'none' });
    }
    expect(detectCompression(Buffer.from([0x50, 0x2a, 0x4d]))).toBe('none');
  });

  it('treats everything else (tar, garbage, short input) as plain', () => {
    expect(detectCompression(Buffer.from('ova.xml\0\0\0'))).toBe('none');
    expect(detectCompression(Buffer.from([0x1f]))).toBe('none');
    expect(detectCompression(Buffer.from([0x28, 0xb5, 0x2f]))).toBe('none');
    expect(detectCompression(Buffer.from([0x1f, 0x8c]))).toBe('none');
    expect(detectCompression(Buffer.alloc(0))).toBe('none');
  });
});
