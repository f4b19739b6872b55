import { detectCompression, GZIP_MAGIC, ZSTD_MAGIC } from '../../src/input/sniff';

describe('detectCompression', () => {
  it('recognises gzip by 1F 8B', () => {
    expect(detectCompression(Buffer.from([0x1f, 0x8b, 0x08, 0x00]))).toBe('gzip');
    expect(detectCompression(GZIP_MAGIC)).toBe('gzip');
  });

  it('recognises zstd by 28 B5 2F FD', () => {
    expect(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04]))).toBe('zstd');
    expect(detectCompression(ZSTD_MAGIC)).toBe('zstd');
  });

  it('treats everything else (tar, garbage, short input) as plain', () => {
    expect(detectCompression(Buffer.from('ova.xml\0\0\0'))).toBe('none');
    expect(detectCompression(Buffer.from([0x1f]))).toBe('none');
    expect(detectCompression(Buffer.from([0x28, 0xb5, 0x2f]))).toBe('none');
    expect(detectCompression(Buffer.from([0x1f, 0x8c]))).toBe('none');
    expect(detectCompression(Buffer.alloc(0))).toBe('none');
  });
});
