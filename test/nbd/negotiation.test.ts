/**
 * The handshake state machine (src/nbd/negotiation.ts) and the transmission rules
 * (src/nbd/requests.ts), without sockets: what each option and request gets, and fuzzing of
 * both with arbitrary options, data and request headers.
 */
import fc from 'fast-check';
import { acceptClientFlags, BASE_ALLOCATION_ID, Negotiation, type ExportDescriptor } from '../../src/nbd/negotiation';
import { CMD, CMD_FLAG, decodeRequest, INFO, NBD_ERR, OPT, REP, TFLAG } from '../../src/nbd/protocol';
import { judgeRequest } from '../../src/nbd/requests';

const exportsList: ExportDescriptor[] = [
  { name: '0', description: 'root', size: 16 << 20 },
  { name: '1', description: 'data', size: 3670016 },
];
const sizes = { minimum: 1, preferred: 4096, maximum: 32 << 20 };
const MAX = sizes.maximum;

interface Reply {
  option: number;
  type: number;
  data: Buffer;
}

/** Parses option replies as a client would, checking the framing of every one. */
function parse(replies: Buffer[]): Reply[] {
  return replies.map((b) => {
    expect(b.readBigUInt64BE(0)).toBe(0x3e889045565a9n);
    expect(b.readUInt32BE(16)).toBe(b.length - 20);
    return { option: b.readUInt32BE(8), type: b.readUInt32BE(12), data: b.subarray(20) };
  });
}

function str(s: string): Buffer {
  const b = Buffer.alloc(4 + Buffer.byteLength(s));
  b.writeUInt32BE(Buffer.byteLength(s), 0);
  b.write(s, 4);
  return b;
}

function goData(name: string, infos: number[] = []): Buffer {
  const tail = Buffer.alloc(2 + 2 * infos.length);
  tail.writeUInt16BE(infos.length, 0);
  infos.forEach((t, i) => tail.writeUInt16BE(t, 2 + 2 * i));
  return Buffer.concat([str(name), tail]);
}

function metaData(name: string, queries: string[]): Buffer {
  const count = Buffer.alloc(4);
  count.writeUInt32BE(queries.length, 0);
  return Buffer.concat([str(name), count, ...queries.map(str)]);
}

const fresh = (): Negotiation => new Negotiation(exportsList, sizes, true);

describe('client flags', () => {
  test('fixed newstyle and no-zeroes are accepted; any other bit ends the session', () => {
    expect(acceptClientFlags(3)).toEqual({ ok: true, noZeroes: true });
    expect(acceptClientFlags(1)).toEqual({ ok: true, noZeroes: false });
    expect(acceptClientFlags(4)).toEqual({ ok: false });
    expect(acceptClientFlags(0x80000001)).toEqual({ ok: false });
  });
});

describe('options', () => {
  test('NBD_OPT_LIST: one NBD_REP_SERVER per disk (userdevice, VDI name), then ACK', () => {
    const r = parse(fresh().handle(OPT.LIST, Buffer.alloc(0)).replies);
    expect(r.map((x) => x.type)).toEqual([REP.SERVER, REP.SERVER, REP.ACK]);
    expect(r[0]!.data).toEqual(Buffer.concat([str('0'), Buffer.from('root')]));
    expect(r[1]!.data).toEqual(Buffer.concat([str('1'), Buffer.from('data')]));
    expect(parse(fresh().handle(OPT.LIST, Buffer.from('x')).replies)[0]!.type).toBe(REP.ERR_INVALID);
  });

  test('NBD_OPT_GO: size, read-only and multi-conn flags, block sizes, description when asked; then transmission', () => {
    const n = fresh();
    const out = n.handle(OPT.GO, goData('1', [INFO.DESCRIPTION, INFO.BLOCK_SIZE]));
    const r = parse(out.replies);
    expect(r.map((x) => x.type)).toEqual([REP.INFO, REP.INFO, REP.INFO, REP.ACK]);
    const exp = r[0]!.data;
    expect(exp.readUInt16BE(0)).toBe(INFO.EXPORT);
    expect(Number(exp.readBigUInt64BE(2))).toBe(3670016);
    const flags = exp.readUInt16BE(10);
    expect(flags & (TFLAG.HAS_FLAGS | TFLAG.READ_ONLY | TFLAG.CAN_MULTI_CONN)).toBe(TFLAG.HAS_FLAGS | TFLAG.READ_ONLY | TFLAG.CAN_MULTI_CONN);
    expect(flags & (TFLAG.SEND_TRIM | TFLAG.SEND_WRITE_ZEROES | TFLAG.SEND_DF)).toBe(0);
    expect(r[1]!.data).toEqual(Buffer.concat([Buffer.from([0, INFO.DESCRIPTION]), Buffer.from('data')]));
    expect([...r[2]!.data]).toEqual([0, 3, 0, 0, 0, 1, 0, 0, 0x10, 0, 0x02, 0, 0, 0]);
    expect(out.next).toBe('transmit');
    if (out.next === 'transmit') expect(out.session.export.name).toBe('1');
  });

  test('the empty name is the first disk; NBD_OPT_INFO stays in negotiation', () => {
    const out = fresh().handle(OPT.INFO, goData(''));
    expect(out.next).toBe('continue');
    expect(Number(parse(out.replies)[0]!.data.readBigUInt64BE(2))).toBe(16 << 20);
  });

  test('an unknown export: NBD_REP_ERR_UNKNOWN naming the exports (GO), hang-up (EXPORT_NAME)', () => {
    const r = parse(fresh().handle(OPT.GO, goData('7')).replies);
    expect(r).toHaveLength(1);
    expect(r[0]!.type).toBe(REP.ERR_UNKNOWN);
    expect(r[0]!.data.toString()).toBe('no export "7" (exports: 0, 1)');
    expect(fresh().handle(OPT.EXPORT_NAME, Buffer.from('7'))).toEqual({ next: 'close', replies: [] });
  });

  test('NBD_OPT_EXPORT_NAME: size and flags, no zeros when both sides said so', () => {
    const out = new Negotiation(exportsList, sizes, false).handle(OPT.EXPORT_NAME, Buffer.from('0'));
    expect(out.next).toBe('transmit');
    expect(out.replies[0]!.length).toBe(10 + 124);
    expect(fresh().handle(OPT.EXPORT_NAME, Buffer.alloc(0)).replies[0]!.length).toBe(10);
  });

  test('structured replies, then base:allocation for the export that is then chosen', () => {
    const n = fresh();
    expect(parse(n.handle(OPT.SET_META_CONTEXT, metaData('0', ['base:allocation'])).replies)[0]!.type).toBe(REP.ERR_INVALID); // structured first
    expect(parse(n.handle(OPT.STRUCTURED_REPLY, Buffer.alloc(0)).replies)[0]!.type).toBe(REP.ACK);
    const list = parse(n.handle(OPT.LIST_META_CONTEXT, metaData('0', [])).replies);
    expect(list.map((x) => x.type)).toEqual([REP.META_CONTEXT, REP.ACK]);
    expect(list[0]!.data.toString('utf8', 4)).toBe('base:allocation');
    const set = parse(n.handle(OPT.SET_META_CONTEXT, metaData('0', ['qemu:dirty-bitmap:x', 'base:allocation'])).replies);
    expect(set.map((x) => x.type)).toEqual([REP.META_CONTEXT, REP.ACK]);
    expect(set[0]!.data.readUInt32BE(0)).toBe(BASE_ALLOCATION_ID);
    const go = n.handle(OPT.GO, goData('0'));
    expect(go.next === 'transmit' && go.session).toMatchObject({ structured: true, blockStatusContext: BASE_ALLOCATION_ID });
    expect(go.next === 'transmit' && go.session.transmissionFlags & TFLAG.SEND_DF).toBe(TFLAG.SEND_DF);
  });

  test('a context selected for another export gives no block status', () => {
    const n = fresh();
    n.handle(OPT.STRUCTURED_REPLY, Buffer.alloc(0));
    n.handle(OPT.SET_META_CONTEXT, metaData('1', ['base:allocation']));
    const go = n.handle(OPT.GO, goData('0'));
    expect(go.next === 'transmit' && go.session.blockStatusContext).toBeUndefined();
  });

  test('unknown options, STARTTLS and extended headers: NBD_REP_ERR_UNSUP; ABORT: ACK and close', () => {
    for (const o of [OPT.STARTTLS, OPT.EXTENDED_HEADERS, 4, 99, 0xffffffff]) {
      const out = fresh().handle(o, Buffer.alloc(0));
      expect(out.next).toBe('continue');
      expect(parse(out.replies)).toEqual([expect.objectContaining({ option: o, type: REP.ERR_UNSUP })]);
    }
    expect(fresh().handle(OPT.ABORT, Buffer.alloc(0)).next).toBe('close');
  });

  test('fuzz: any sequence of options gets well-framed replies, errors for malformed data, never a throw', () => {
    const option = fc.oneof(fc.constantFrom(...Object.values(OPT)), fc.integer({ min: 0, max: 0xffffffff }));
    const data = fc.oneof(
      fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
      fc.tuple(fc.constantFrom('', '0', '1', 'x'), fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 4 })).map(([n, i]) => goData(n, i)),
      fc.tuple(fc.constantFrom('', '0', '1'), fc.array(fc.constantFrom('base:allocation', 'base:', 'x:y', ''), { maxLength: 3 })).map(([n, q]) => metaData(n, q)),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(option, data), { minLength: 1, maxLength: 12 }), (steps) => {
        const n = fresh();
        for (const [o, d] of steps) {
          const out = n.handle(o, d);
          if (o === OPT.EXPORT_NAME) {
            expect(out.next === 'close' || out.next === 'transmit').toBe(true);
            return;
          }
          const replies = parse(out.replies);
          expect(replies.length).toBeGreaterThan(0);
          for (const r of replies) expect(r.option).toBe(o >>> 0);
          const last = replies[replies.length - 1]!;
          expect(last.type === REP.ACK || last.type >= 0x80000000).toBe(true);
          if (out.next !== 'continue') return;
        }
      }),
      { numRuns: 1500 },
    );
  });
});

describe('requests', () => {
  const session = { export: exportsList[1]!, structured: true, blockStatusContext: BASE_ALLOCATION_ID, transmissionFlags: 0 };
  const req = (type: number, offset: number, length: number, flags = 0) => ({ magicOk: true, flags, type, handle: 1n, offset, length });

  test('reads within the export, up to the maximum payload', () => {
    expect(judgeRequest(req(CMD.READ, 0, 4096), session, MAX)).toEqual({ action: 'read', offset: 0, length: 4096, df: false });
    expect(judgeRequest(req(CMD.READ, 3670016 - 1, 1, CMD_FLAG.DF | CMD_FLAG.FUA), session, MAX)).toEqual({ action: 'read', offset: 3670015, length: 1, df: true });
    expect(judgeRequest(req(CMD.READ, 3670016, 1), session, MAX)).toMatchObject({ action: 'error', error: NBD_ERR.EINVAL });
    expect(judgeRequest(req(CMD.READ, Infinity, 1), session, MAX)).toMatchObject({ action: 'error', error: NBD_ERR.EINVAL, message: expect.stringMatching(/beyond 2\^53/) });
    expect(judgeRequest(req(CMD.READ, 0, MAX + 1), { ...session, export: { ...session.export, size: 2 ** 40 } }, MAX)).toMatchObject({ error: NBD_ERR.EINVAL });
    expect(judgeRequest(req(CMD.READ, 0, 1, CMD_FLAG.DF), { ...session, structured: false }, MAX)).toMatchObject({ error: NBD_ERR.EINVAL });
    expect(judgeRequest(req(CMD.READ, 0, 1, CMD_FLAG.REQ_ONE), session, MAX)).toMatchObject({ error: NBD_ERR.EINVAL });
  });

  test('writes, trims, write-zeroes: EPERM (a write payload is dropped first; too large to drop: hang up)', () => {
    expect(judgeRequest(req(CMD.WRITE, 0, 512), session, MAX)).toEqual({ action: 'error', error: NBD_ERR.EPERM, message: 'read-only export', skipPayload: 512 });
    expect(judgeRequest(req(CMD.WRITE, 0, MAX + 1), session, MAX)).toMatchObject({ action: 'hang-up' });
    expect(judgeRequest(req(CMD.TRIM, 0, 512), session, MAX)).toMatchObject({ error: NBD_ERR.EPERM, skipPayload: 0 });
    expect(judgeRequest(req(CMD.WRITE_ZEROES, 0, 512), session, MAX)).toMatchObject({ error: NBD_ERR.EPERM, skipPayload: 0 });
  });

  test('block status needs a negotiated context; flush is a no-op; unknown commands EINVAL; bad magic hangs up', () => {
    expect(judgeRequest(req(CMD.BLOCK_STATUS, 0, 4096, CMD_FLAG.REQ_ONE), session, MAX)).toEqual({ action: 'block-status', offset: 0, length: 4096, reqOne: true, contextId: BASE_ALLOCATION_ID });
    expect(judgeRequest(req(CMD.BLOCK_STATUS, 0, 4096), { ...session, blockStatusContext: undefined }, MAX)).toMatchObject({ error: NBD_ERR.EINVAL });
    expect(judgeRequest(req(CMD.BLOCK_STATUS, 0, 0), session, MAX)).toMatchObject({ error: NBD_ERR.EINVAL });
    expect(judgeRequest(req(CMD.FLUSH, 0, 0), session, MAX)).toEqual({ action: 'flush' });
    expect(judgeRequest(req(CMD.DISC, 0, 0), session, MAX)).toEqual({ action: 'disconnect' });
    expect(judgeRequest(req(42, 0, 0), session, MAX)).toMatchObject({ error: NBD_ERR.EINVAL });
    expect(judgeRequest({ ...req(CMD.READ, 0, 1), magicOk: false }, session, MAX)).toMatchObject({ action: 'hang-up' });
  });

  test('fuzz: any 28 bytes get a verdict that keeps every access inside the export', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 28, maxLength: 28 }), fc.boolean(), (bytes, magic) => {
        const b = Buffer.from(bytes);
        if (magic) b.writeUInt32BE(0x25609513, 0);
        const v = judgeRequest(decodeRequest(b)!, session, MAX);
        if (v.action === 'read' || v.action === 'block-status' || v.action === 'cache') {
          expect(v.offset + v.length).toBeLessThanOrEqual(session.export.size);
          expect(Number.isSafeInteger(v.offset)).toBe(true);
        }
        if (v.action === 'read') expect(v.length).toBeLessThanOrEqual(MAX);
        if (v.action === 'error') expect(v.skipPayload).toBeLessThanOrEqual(MAX);
      }),
      { numRuns: 20000 },
    );
  });
});
