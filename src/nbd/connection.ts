/**
 * One client connection of the NBD server: the socket I/O around the pure handshake
 * (negotiation.ts) and request rules (requests.ts).
 *
 * States: greeting sent -> client flags -> options (one at a time, each answered before the
 * next is read) -> transmission: requests are read one after another and served concurrently,
 * replies go out as they are ready (NBD lets replies come out of order; the client matches
 * them by handle) -> closed. The handshake must finish within `handshakeTimeoutMs`.
 *
 * Bounds (docs/design/nbd-server.md, "Limits"): option data up to MAX_OPTION_BYTES, read
 * payloads up to the advertised maximum; at most `maxInflight` requests and `maxInflightBytes`
 * of read payload per connection are in progress or waiting to be sent, so a client that
 * sends faster than it reads stops being read (TCP backpressure), and memory stays bounded.
 * A connection's failure (garbage, a reset, a hang-up mid-request) ends that connection only;
 * buffers of requests still in progress are released when their reads finish.
 */
import type { Socket } from 'node:net';
import { acceptClientFlags, Negotiation, SERVER_HANDSHAKE_FLAGS, type BlockSizes, type ExportDescriptor, type Session } from './negotiation';
import {
  CLIENT_FLAGS_BYTES,
  decodeOptionHeader,
  decodeRequest,
  encodeBlockStatus,
  encodeGreeting,
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeSimpleReply,
  encodeStructuredError,
  encodeStructuredNone,
  NBD_ERR,
  OPTION_HEADER_BYTES,
  REPLY_FLAG_DONE,
  REQUEST_BYTES,
  type Extent,
} from './protocol';
import { judgeRequest } from './requests';

/** Longest option payload read; anything longer ends the connection (no option needs 64 KiB). */
export const MAX_OPTION_BYTES = 64 * 1024;
/** Most extents in one block status reply (the client asks again from where it ends). */
const MAX_EXTENTS = 64 * 1024;

/** The run of a read: `length` bytes from `offset`, data or zeros. */
export interface ExportReadRun {
  offset: number;
  length: number;
  zero: boolean;
}

/** What a read of an export gives: see DiskRandomReader.read for the contract. */
export interface ExportRead {
  runs: ExportReadRun[];
  /** The range's bytes (where runs are data), from the start of the range; undefined if all zero. */
  data: Buffer | undefined;
  release(): void;
}

/** An export as the server serves it. Errors thrown by `read`/`cache` become EIO replies with their message. */
export interface NbdExport extends ExportDescriptor {
  read(offset: number, length: number): Promise<ExportRead>;
  /** Allocation of [offset, offset + length) as `base:allocation` extents (at most `max`). */
  extents(offset: number, length: number, max: number): Extent[];
  /** Prepares the range for fast reads (NBD_CMD_CACHE). */
  cache(offset: number, length: number): Promise<void>;
}

export interface ConnectionOptions {
  exports: readonly NbdExport[];
  blockSizes: BlockSizes;
  handshakeTimeoutMs: number;
  maxInflight: number;
  maxInflightBytes: number;
  /** Problems worth a line on the server's stderr (not every client mistake). */
  log?(message: string): void;
}

class ConnectionClosed extends Error {}

/** Exact-length reads from a socket, pausing it when unread bytes pile up. */
class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private closed = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly highWater: number,
  ) {
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.buffered += d.length;
      if (this.buffered >= this.highWater) socket.pause();
      this.notify();
    });
    const end = (): void => {
      this.closed = true;
      this.notify();
    };
    socket.on('end', end);
    socket.on('close', end);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async fill(n: number): Promise<void> {
    while (this.buffered < n) {
      if (this.closed) throw new ConnectionClosed();
      this.socket.resume();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Exactly `n` bytes (n > 0); rejects with ConnectionClosed when the client goes first. */
  async read(n: number): Promise<Buffer> {
    await this.fill(n);
    let out: Buffer;
    const first = this.chunks[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0]!;
        const take = Math.min(c.length, n - at);
        c.copy(out, at, 0, take);
        at += take;
        if (take === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(take);
      }
    }
    this.buffered -= n;
    if (this.buffered < this.highWater) this.socket.resume();
    return out;
  }

  /** Drops `n` bytes (a refused write's payload) without holding them all. */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const step = Math.min(left, this.highWater);
      await this.read(step);
      left -= step;
    }
  }
}

/** Serves one client until it disconnects or misbehaves; never rejects. */
export async function serveConnection(socket: Socket, options: ConnectionOptions): Promise<void> {
  const conn = new Connection(socket, options);
  try {
    await conn.run();
  } catch (err) {
    if (!(err instanceof ConnectionClosed)) options.log?.(`connection closed after an internal error: ${(err as Error)?.stack ?? String(err)}`);
  } finally {
    conn.close();
  }
}

class Connection {
  private readonly reader: SocketReader;
  private inflight = 0;
  private inflightBytes = 0;
  private readonly slotWaiters: Array<() => void> = [];
  private idle: (() => void) | undefined;
  private session: Session<NbdExport> | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly o: ConnectionOptions,
  ) {
    this.reader = new SocketReader(socket, Math.max(MAX_OPTION_BYTES, 256 * 1024));
    socket.on('error', () => {}); // a reset or EPIPE ends this connection only ('close' follows)
    socket.setNoDelay?.(true);
    socket.on('close', () => this.wakeAll());
  }

  /** Ends the connection, letting replies already written (an ABORT's ACK) go out first. */
  close(): void {
    this.wakeAll();
    if (this.socket.destroyed) return;
    if (this.socket.writableLength === 0) {
      this.socket.destroy();
      return;
    }
    this.socket.end();
    // A client that stopped reading cannot hold the connection open.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  private get gone(): boolean {
    return this.socket.destroyed || !this.socket.writable;
  }

  private wakeAll(): void {
    for (const w of this.slotWaiters.splice(0)) w();
    this.idle?.();
  }

  async run(): Promise<void> {
    const timer = setTimeout(() => {
      this.o.log?.('client did not finish the NBD handshake in time; connection closed');
      this.socket.destroy();
    }, this.o.handshakeTimeoutMs);
    try {
      this.session = await this.handshake();
    } finally {
      clearTimeout(timer);
    }
    if (this.session) await this.transmission(this.session);
  }

  private send(parts: Buffer[], done?: () => void): void {
    if (this.gone) {
      done?.();
      return;
    }
    this.socket.cork();
    for (let i = 0; i < parts.length - 1; i++) this.socket.write(parts[i]!);
    this.socket.write(parts[parts.length - 1]!, done && (() => done()));
    this.socket.uncork();
  }

  private async handshake(): Promise<Session<NbdExport> | undefined> {
    this.send([encodeGreeting(SERVER_HANDSHAKE_FLAGS)]);
    const flags = acceptClientFlags((await this.reader.read(CLIENT_FLAGS_BYTES)).readUInt32BE(0));
    if (!flags.ok) return undefined;
    const negotiation = new Negotiation<NbdExport>(this.o.exports, this.o.blockSizes, flags.noZeroes);
    for (;;) {
      const header = decodeOptionHeader(await this.reader.read(OPTION_HEADER_BYTES))!;
      if (!header.magicOk || header.length > MAX_OPTION_BYTES) return undefined;
      const data = header.length > 0 ? await this.reader.read(header.length) : Buffer.alloc(0);
      const outcome = negotiation.handle(header.option, data);
      if (outcome.replies.length) this.send(outcome.replies);
      if (outcome.next === 'close') {
        this.socket.end();
        return undefined;
      }
      if (outcome.next === 'transmit') return outcome.session;
    }
  }

  private async transmission(session: Session<NbdExport>): Promise<void> {
    const max = this.o.blockSizes.maximum;
    for (;;) {
      const req = decodeRequest(await this.reader.read(REQUEST_BYTES))!;
      const v = judgeRequest(req, session, max);
      switch (v.action) {
        case 'hang-up':
          this.o.log?.(`client sent ${v.reason}; connection closed`);
          return;
        case 'disconnect':
          await this.drained();
          this.socket.end();
          return;
        case 'error':
          if (v.skipPayload > 0) await this.reader.skip(v.skipPayload);
          this.sendError(req.handle, v.error, v.message);
          break;
        case 'flush':
          this.send([encodeSimpleReply(0, req.handle)]);
          break;
        case 'block-status': {
          const extents = session.export.extents(v.offset, v.length, v.reqOne ? 1 : MAX_EXTENTS);
          this.send([encodeBlockStatus(REPLY_FLAG_DONE, req.handle, v.contextId, extents)]);
          break;
        }
        case 'read':
        case 'cache': {
          const bytes = v.action === 'read' ? v.length : 0;
          await this.admit(bytes);
          if (this.gone) return;
          const handle = req.handle;
          const work = v.action === 'read' ? this.read(handle, v.offset, v.length, v.df) : this.cache(handle, v.offset, v.length);
          void work.finally(() => this.leave(bytes));
          break;
        }
      }
    }
  }

  /** Waits until a request of `bytes` payload may start (see the module comment). */
  private async admit(bytes: number): Promise<void> {
    while (!this.gone && (this.inflight >= this.o.maxInflight || (this.inflight > 0 && this.inflightBytes + bytes > this.o.maxInflightBytes))) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
    this.inflight++;
    this.inflightBytes += bytes;
  }

  private leave(bytes: number): void {
    this.inflight--;
    this.inflightBytes -= bytes;
    this.slotWaiters.shift()?.();
    if (this.inflight === 0) this.idle?.();
  }

  /** Resolves when no request is in progress (NBD_CMD_DISC: answer everything, then close). */
  private async drained(): Promise<void> {
    while (this.inflight > 0 && !this.gone) await new Promise<void>((resolve) => (this.idle = resolve));
  }

  private sendError(handle: bigint, error: number, message: string): void {
    this.send([this.session?.structured ? encodeStructuredError(handle, error, message) : encodeSimpleReply(error, handle)]);
  }

  /** Resolves once the reply has left (or the connection is gone), so its buffer can be reused. */
  private async read(handle: bigint, offset: number, length: number, df: boolean): Promise<void> {
    let result: ExportRead;
    try {
      result = await this.session!.export.read(offset, length);
    } catch (err) {
      this.sendError(handle, NBD_ERR.EIO, (err as Error)?.message ?? String(err));
      return;
    }
    await new Promise<void>((resolve) => {
      const done = (): void => {
        result.release();
        resolve();
      };
      if (!this.session!.structured || df) this.send([...this.wholeReply(handle, offset, length, result)], done);
      else this.send(this.structuredReply(handle, result, offset), done);
    });
  }

  /** A simple reply, or a single OFFSET_DATA chunk (DF): every byte sent, zeros included. */
  private wholeReply(handle: bigint, offset: number, length: number, r: ExportRead): Buffer[] {
    let data = r.data ?? Buffer.alloc(length);
    if (r.data) for (const run of r.runs) if (run.zero) data.fill(0, run.offset - offset, run.offset - offset + run.length);
    data = data.subarray(0, length);
    if (!this.session!.structured) return [encodeSimpleReply(0, handle), data];
    if (length === 0) return [encodeStructuredNone(handle)];
    return [encodeOffsetDataHeader(REPLY_FLAG_DONE, handle, offset, length), data];
  }

  /** OFFSET_DATA for data, OFFSET_HOLE for zeros; adjacent data runs go out as one chunk. */
  private structuredReply(handle: bigint, r: ExportRead, offset: number): Buffer[] {
    const merged: ExportReadRun[] = [];
    for (const run of r.runs) {
      const last = merged[merged.length - 1];
      if (last && last.zero === run.zero) last.length += run.length;
      else merged.push({ ...run });
    }
    if (merged.length === 0) return [encodeStructuredNone(handle)];
    const parts: Buffer[] = [];
    merged.forEach((run, k) => {
      const flags = k === merged.length - 1 ? REPLY_FLAG_DONE : 0;
      if (run.zero) {
        parts.push(encodeOffsetHole(flags, handle, run.offset, run.length));
      } else {
        parts.push(encodeOffsetDataHeader(flags, handle, run.offset, run.length));
        parts.push(r.data!.subarray(run.offset - offset, run.offset - offset + run.length));
      }
    });
    return parts;
  }

  private async cache(handle: bigint, offset: number, length: number): Promise<void> {
    try {
      await this.session!.export.cache(offset, length);
    } catch (err) {
      this.sendError(handle, NBD_ERR.EIO, (err as Error)?.message ?? String(err));
      return;
    }
    this.send([encodeSimpleReply(0, handle)]);
  }
}
