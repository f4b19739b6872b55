/**
 * The NBD codec (src/nbd/protocol.ts) against byte layouts written out by hand from the protocol
 * document, and its decoders against arbitrary bytes: they never throw and never read past
 * their input.
 */
import fc from 'fast-check';
import {
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  decodeRequest,
  encodeBlockStatus,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeMetaContextPayload,
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeOptionError,
  encodeOptionReply,
  encodeServerPayload,
  encodeSimpleReply,
  encodeStructuredError,
  encodeStructuredNone,
  MAX_STRING_BYTES,
  readU64,
} from '../../src/nbd/protocol';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const u32 = (n: number): string => n.toString(16).padStart(8, '0');

describe('handshake messages', () => {
  test('greeting: NBDMAGIC, IHAVEOPT, handshake flags', () => {
    expect(encodeGreeting(3)).toEqual(hex('4e42444d41474943 49484156454f5054 0003'));
  });

  test('option header: IHAVEOPT, option, length', () => {
    expect(decodeOptionHeader(hex('49484156454f5054 00000007 0000000a'))).toEqual({ magicOk: true, option: 7, length: 10 });
    expect(decodeOptionHeader(hex('4948415645000000 00000007 0000000a'))!.magicOk).toBe(false);
    expect(decodeOptionHeader(hex('49484156454f5054 0000'))).toBeUndefined();
  });

  test('option reply: magic 0x3e889045565a9, option, type, length, data', () => {
    expect(encodeOptionReply(3, 1)).toEqual(hex('0003e889045565a9 00000003 00000001 00000000'));
    expect(encodeOptionReply(3, 2, encodeServerPayload('0', 'root'))).toEqual(hex('0003e889045565a9 00000003 00000002 00000009 00000001 30 726f6f74'));
    expect(encodeOptionError(7, 0x80000006, 'no')).toEqual(hex('0003e889045565a9 00000007 80000006 00000002 6e6f'));
  });

  test('NBD_INFO_EXPORT, NBD_INFO_BLOCK_SIZE, meta context', () => {
    expect(encodeInfoExport(2 ** 40 + 5, 0x0503)).toEqual(hex('0000 0000010000000005 0503'));
    expect(encodeInfoBlockSize(1, 4096, 32 * 2 ** 20)).toEqual(hex('0003 00000001 00001000 02000000'));
    expect(encodeMetaContextPayload(1, 'base:allocation')).toEqual(Buffer.concat([hex('00000001'), Buffer.from('base:allocation')]));
  });

  test('reply to NBD_OPT_EXPORT_NAME: size, flags, 124 zeros unless NO_ZEROES', () => {
    expect(encodeExportNameReply(4096, 3, false)).toEqual(Buffer.concat([hex('0000000000001000 0003'), Buffer.alloc(124)]));
    expect(encodeExportNameReply(4096, 3, true)).toEqual(hex('0000000000001000 0003'));
  });

  test('strings are cut at the protocol limit without splitting a character', () => {
    const long = 'é'.repeat(3000); // 6000 bytes
    const payload = encodeServerPayload(long, '');
    const n = payload.readUInt32BE(0);
    expect(n).toBeLessThanOrEqual(MAX_STRING_BYTES);
    expect(payload.toString('utf8', 4)).toBe('é'.repeat(n / 2));
  });
});

describe('option data', () => {
  test('NBD_OPT_GO: name, count, info types', () => {
    expect(decodeInfoRequest(hex('00000001 31 0002 0003 0001'))).toEqual({ name: '1', requests: [3, 1] });
    expect(decodeInfoRequest(hex('00000000 0000'))).toEqual({ name: '', requests: [] });
  });

  test.each([
    ['too short', '00000000 00'],
    ['name longer than the data', '00000005 31 0000'],
    ['count beyond the data', '00000000 0002 0003'],
    ['bytes left over', '00000000 0000 ff'],
  ])('NBD_OPT_GO malformed: %s', (_name, bytes) => {
    expect(decodeInfoRequest(hex(bytes))).toBeUndefined();
  });

  test('meta context: name, count, queries', () => {
    const q = Buffer.from('base:allocation');
    const data = Buffer.concat([hex('00000001 30 00000002'), hex(u32(q.length)), q, hex('00000005'), Buffer.from('qemu:')]);
    expect(decodeMetaContextRequest(data)).toEqual({ name: '0', queries: ['base:allocation', 'qemu:'] });
    expect(decodeMetaContextRequest(data.subarray(0, data.length - 1))).toBeUndefined();
    expect(decodeMetaContextRequest(Buffer.concat([data, hex('00')]))).toBeUndefined();
    expect(decodeMetaContextRequest(hex('00000000 ffffffff'))).toBeUndefined();
  });

  test('decoders take any bytes without throwing', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const b = Buffer.from(bytes);
        const info = decodeInfoRequest(b);
        if (info) expect(info.requests.length).toBeLessThanOrEqual((b.length - 6) / 2);
        decodeMetaContextRequest(b);
        decodeOptionHeader(b);
        decodeRequest(b);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('transmission messages', () => {
  test('request: magic, flags, type, handle, offset, length', () => {
    expect(decodeRequest(hex('25609513 0004 0000 0102030405060708 0000000000100000 00001000'))).toEqual({
      magicOk: true,
      flags: 4,
      type: 0,
      handle: 0x0102030405060708n,
      offset: 1 << 20,
      length: 4096,
    });
  });

  test('offsets past 2^53 decode as Infinity (refused by every bound)', () => {
    expect(readU64(hex('0020000000000001'), 0)).toBe(Infinity);
    expect(readU64(hex('001fffffffffffff'), 0)).toBe(Number.MAX_SAFE_INTEGER);
    expect(decodeRequest(hex('25609513 0000 0000 0000000000000000 ffffffffffffffff 00000001'))!.offset).toBe(Infinity);
  });

  test('simple reply: magic, error, handle', () => {
    expect(encodeSimpleReply(5, 0xffn)).toEqual(hex('67446698 00000005 00000000000000ff'));
  });

  test('structured chunks: NONE, OFFSET_DATA header, OFFSET_HOLE, BLOCK_STATUS, ERROR', () => {
    const h = 0x1122334455667788n;
    expect(encodeStructuredNone(h)).toEqual(hex('668e33ef 0001 0000 1122334455667788 00000000'));
    expect(encodeOffsetDataHeader(0, h, 512, 4096)).toEqual(hex('668e33ef 0000 0001 1122334455667788 00001008 0000000000000200'));
    expect(encodeOffsetHole(1, h, 8192, 65536)).toEqual(hex('668e33ef 0001 0002 1122334455667788 0000000c 0000000000002000 00010000'));
    expect(encodeBlockStatus(1, h, 1, [{ length: 1 << 20, flags: 0 }, { length: 4096, flags: 3 }])).toEqual(
      hex('668e33ef 0001 0005 1122334455667788 00000014 00000001 00100000 00000000 00001000 00000003'),
    );
    expect(encodeStructuredError(h, 5, 'bad')).toEqual(hex('668e33ef 0001 8001 1122334455667788 00000009 00000005 0003 626164'));
  });
});
