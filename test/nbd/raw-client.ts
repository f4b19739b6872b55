/**
 * A minimal NBD client for tests, written from the protocol document with its own byte
 * handling (it does not use src/nbd/protocol.ts), so that it checks the server rather than
 * agreeing with it. It can also send arbitrary bytes, to misbehave on purpose.
 */
import * as net from 'node:net';

export class RawClient {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiter: (() => void) | undefined;
  readonly closed: Promise<void>;
  private isClosed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.have += d.length;
      this.waiter?.();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.isClosed = true;
        this.waiter?.();
        resolve();
      }),
    );
  }

  /** A Unix socket path, or a TCP port and host. */
  static connect(where: string | { port: number; host: string }): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = typeof where === 'string' ? net.connect(where, () => resolve(new RawClient(s))) : net.connect(where.port, where.host, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  send(...parts: Buffer[]): void {
    this.socket.write(Buffer.concat(parts));
  }

  /** Exactly n bytes; rejects if the server closes first. */
  async read(n: number): Promise<Buffer> {
    while (this.have < n) {
      if (this.isClosed) throw new Error(`connection closed with ${this.have} of ${n} bytes`);
      await new Promise<void>((r) => (this.waiter = r));
    }
    // Joins only the chunks the n bytes span (replies of many MiB come in many chunks).
    let take = 0;
    let bytes = 0;
    while (bytes < n) bytes += this.chunks[take++]!.length;
    const all = take === 1 ? this.chunks[0]! : Buffer.concat(this.chunks.slice(0, take), bytes);
    this.chunks.splice(0, take, ...(bytes > n ? [all.subarray(n)] : []));
    this.have -= n;
    return all.subarray(0, n);
  }

  close(): void {
    this.socket.destroy();
  }

  // -- handshake -------------------------------------------------------------------------------

  async greeting(): Promise<number> {
    const g = await this.read(18);
    if (g.toString('latin1', 0, 16) !== 'NBDMAGICIHAVEOPT') throw new Error('bad greeting');
    return g.readUInt16BE(16);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.write('IHAVEOPT', 0, 'latin1');
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(data.length, 12);
    this.send(h, data);
  }

  async optionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const h = await this.read(20);
    if (h.readBigUInt64BE(0) !== 0x3e889045565a9n) throw new Error('bad option reply magic');
    const len = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: len ? await this.read(len) : Buffer.alloc(0) };
  }

  /** Replies to one option up to its final one (ACK or an error). */
  async optionReplies(): Promise<Array<{ option: number; type: number; data: Buffer }>> {
    const out = [];
    for (;;) {
      const r = await this.optionReply();
      out.push(r);
      if (r.type === 1 || r.type >= 0x80000000) return out;
    }
  }

  /** Greeting, flags, [structured replies + base:allocation], NBD_OPT_GO. Returns size and flags. */
  async open(exportName: string, opts: { structured?: boolean } = {}): Promise<{ size: number; flags: number }> {
    await this.greeting();
    this.send(u32(3));
    if (opts.structured !== false) {
      this.sendOption(8);
      await this.optionReplies();
      this.sendOption(10, Buffer.concat([str(exportName), u32(1), str('base:allocation')]));
      await this.optionReplies();
    }
    this.sendOption(7, Buffer.concat([str(exportName), Buffer.from([0, 0])]));
    const replies = await this.optionReplies();
    const last = replies[replies.length - 1]!;
    if (last.type !== 1) throw new Error(`NBD_OPT_GO failed: ${last.type.toString(16)} ${last.data.toString()}`);
    const info = replies.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 0)!.data;
    return { size: Number(info.readBigUInt64BE(2)), flags: info.readUInt16BE(10) };
  }

  // -- transmission ----------------------------------------------------------------------------

  request(type: number, offset: number, length: number, handle: bigint, flags = 0): void {
    const r = Buffer.alloc(28);
    r.writeUInt32BE(0x25609513, 0);
    r.writeUInt16BE(flags, 4);
    r.writeUInt16BE(type, 6);
    r.writeBigUInt64BE(handle, 8);
    r.writeBigUInt64BE(BigInt(offset), 16);
    r.writeUInt32BE(length, 24);
    this.send(r);
  }

  /**
   * One reply (simple, or structured chunks up to DONE), whatever request it answers: data of
   * a read reassembled from OFFSET_DATA / OFFSET_HOLE chunks, extents of block status, error.
   * `readLength(handle)` tells how many bytes a simple read reply carries.
   */
  async reply(readLength: (handle: bigint) => number): Promise<Reply> {
    const magic = (await this.read(4)).readUInt32BE(0);
    if (magic === 0x67446698) return this.simpleReply(readLength);
    if (magic !== 0x668e33ef) throw new Error(`bad reply magic ${magic.toString(16)}`);
    const out: Reply = { handle: 0n, error: 0, chunks: [] };
    for (;;) {
      const h = await this.read(16);
      const flags = h.readUInt16BE(0);
      const type = h.readUInt16BE(2);
      out.handle = h.readBigUInt64BE(4);
      const len = h.readUInt32BE(12);
      const payload = len ? await this.read(len) : Buffer.alloc(0);
      out.chunks.push({ type, payload });
      if (type === 0x8001) {
        out.error = payload.readUInt32BE(0);
        out.message = payload.toString('utf8', 6, 6 + payload.readUInt16BE(4));
      }
      if (flags & 1) return out;
      const next = (await this.read(4)).readUInt32BE(0);
      if (next !== 0x668e33ef) throw new Error('structured reply interrupted');
    }
  }

  /** The rest of a simple reply, its magic read: error, handle, and the data of a read. */
  private async simpleReply(readLength: (handle: bigint) => number): Promise<Reply> {
    const h = await this.read(12);
    const error = h.readUInt32BE(0);
    const handle = h.readBigUInt64BE(4);
    const n = error === 0 ? readLength(handle) : 0;
    return { handle, error, data: n ? await this.read(n) : Buffer.alloc(0), chunks: [] };
  }

  /**
   * `count` replies, whatever requests they answer, in the order they finish. Unlike reply(),
   * the chunks of structured replies to different requests may come interleaved (the protocol
   * allows it; the server does it when it sends a large read in pieces).
   */
  async replies(count: number, readLength: (handle: bigint) => number): Promise<Reply[]> {
    const open = new Map<bigint, Reply>();
    const done: Reply[] = [];
    while (done.length < count) {
      const magic = (await this.read(4)).readUInt32BE(0);
      if (magic === 0x67446698) {
        done.push(await this.simpleReply(readLength));
        continue;
      }
      if (magic !== 0x668e33ef) throw new Error(`bad reply magic ${magic.toString(16)}`);
      const h = await this.read(16);
      const flags = h.readUInt16BE(0);
      const type = h.readUInt16BE(2);
      const handle = h.readBigUInt64BE(4);
      const len = h.readUInt32BE(12);
      const payload = len ? await this.read(len) : Buffer.alloc(0);
      let r = open.get(handle);
      if (!r) open.set(handle, (r = { handle, error: 0, chunks: [] }));
      r.chunks.push({ type, payload });
      if (type === 0x8001) {
        r.error = payload.readUInt32BE(0);
        r.message = payload.toString('utf8', 6, 6 + payload.readUInt16BE(4));
      }
      if (flags & 1) {
        open.delete(handle);
        done.push(r);
      }
    }
    return done;
  }

  /** A read request and its reply, as bytes (holes as zeros). */
  async readAt(offset: number, length: number, handle = 1n, flags = 0): Promise<{ data: Buffer; reply: Reply }> {
    this.request(0, offset, length, handle, flags);
    const reply = await this.reply(() => length);
    return { data: assemble(reply, offset, length), reply };
  }
}

export interface Reply {
  handle: bigint;
  error: number;
  message?: string;
  /** Simple replies: the data. */
  data?: Buffer;
  chunks: Array<{ type: number; payload: Buffer }>;
}

/** The bytes of a read reply (structured chunks placed by their offsets, holes as zeros). */
export function assemble(r: Reply, offset: number, length: number): Buffer {
  if (r.data) return r.data;
  const out = Buffer.alloc(length);
  for (const c of r.chunks) {
    if (c.type === 1) {
      const at = Number(c.payload.readBigUInt64BE(0)) - offset;
      c.payload.copy(out, at, 8);
    }
  }
  return out;
}

/** Block status descriptors of a reply. */
export function extentsOf(r: Reply): Array<{ length: number; flags: number }> {
  const c = r.chunks.find((x) => x.type === 5)!;
  const out = [];
  for (let at = 4; at < c.payload.length; at += 8) out.push({ length: c.payload.readUInt32BE(at), flags: c.payload.readUInt32BE(at + 4) });
  return out;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

export function str(s: string): Buffer {
  return Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
}
