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
 * payloads up to the advertised maximum. A read is served in pieces of at most `readPiece`
 * bytes (split at multiples of it, so a piece lies inside one 1 MiB XVA chunk), each read from
 * the export, sent, and its buffer released once the socket has taken it; a request has at
 * most `piecesAhead` pieces read and not yet sent. A request is admitted with that much of
 * the connection's `maxInflightBytes` budget (and one of its `maxInflight` slots), so the read
 * buffers a connection holds never exceed `maxInflightBytes`, whatever the size and number of
 * its requests; a client that sends faster than it reads stops being read (TCP backpressure).
 * The buffers held are counted in a BufferAccount shared by the server's connections.
 * A connection's failure (garbage, a reset, a hang-up mid-request) ends that connection only;
 * buffers of requests still in progress are released when their reads finish, and no further
 * pieces are read for them.
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
import { ConnectionClosed, SocketReader } from './socket-reader';

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

/** Read buffers held by a server's connections, in bytes (each piece counted from its read to its release). */
export interface BufferAccount {
  /** Held now, by every connection. */
  held: number;
  /** Most ever held at once, by every connection. */
  peak: number;
  /** Most ever held at once by one connection. */
  connectionPeak: number;
}

export function newBufferAccount(): BufferAccount {
  return { held: 0, peak: 0, connectionPeak: 0 };
}

export interface ConnectionOptions {
  exports: readonly NbdExport[];
  blockSizes: BlockSizes;
  handshakeTimeoutMs: number;
  maxInflight: number;
  /** Read buffers one connection may hold (pieces read and not yet sent). */
  maxInflightBytes: number;
  /** Largest piece a read is served in (also where pieces are split). */
  readPiece: number;
  /** Pieces of one request read ahead of the socket. */
  piecesAhead: number;
  buffers?: BufferAccount;
  /** Problems worth a line on the server's stderr (not every client mistake). */
  log?(message: string): void;
}

/** Zeros for the holes of simple and DF replies (never written to). */
let zeroBytes = Buffer.alloc(0);
function zeros(n: number): Buffer {
  if (zeroBytes.length < n) zeroBytes = Buffer.alloc(n);
  return zeroBytes.subarray(0, n);
}

/** A piece of a read: its result (or why it failed) and the release of its buffer and budget. */
interface Piece {
  offset: number;
  length: number;
  result?: ExportRead;
  error?: unknown;
  /** Releases its buffer and budget; false if that was done already. */
  free(): boolean;
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
  /** Read buffers this connection holds (see the module comment). */
  private held = 0;
  /** A simple or DF reply is being written piece by piece: other replies wait in `queued`. */
  private streaming = false;
  private readonly queued: Array<{ parts: Buffer[]; done?: () => void }> = [];
  private readonly streamWaiters: Array<() => void> = [];

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

  /** Takes the socket for a reply written in pieces; other replies queue until endStream. */
  private async beginStream(): Promise<void> {
    while (this.streaming) await new Promise<void>((resolve) => this.streamWaiters.push(resolve));
    this.streaming = true;
  }

  private endStream(): void {
    this.streaming = false;
    for (const q of this.queued.splice(0)) this.write(q.parts, q.done);
    this.streamWaiters.shift()?.();
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

  /** Sends a whole reply (or whole structured chunks); `done` once the socket has taken it. */
  private send(parts: Buffer[], done?: () => void): void {
    if (this.streaming && !this.gone) this.queued.push({ parts, done });
    else this.write(parts, done);
  }

  private write(parts: Buffer[], done?: () => void): void {
    if (this.gone || parts.length === 0) {
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
          const bytes = v.action === 'read' ? Math.min(v.length, this.o.piecesAhead * this.o.readPiece) : 0;
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

  /** Reads piece [offset, offset + length), counting its buffer from now until `free`. */
  private async readPiece(offset: number, length: number): Promise<Piece> {
    const account = this.o.buffers;
    this.held += length;
    if (account) {
      account.held += length;
      account.peak = Math.max(account.peak, account.held);
      account.connectionPeak = Math.max(account.connectionPeak, this.held);
    }
    let freed = false;
    const piece: Piece = {
      offset,
      length,
      free: () => {
        if (freed) return false;
        freed = true;
        piece.result?.release();
        this.held -= length;
        if (account) account.held -= length;
        return true;
      },
    };
    try {
      piece.result = await this.session!.export.read(offset, length);
    } catch (err) {
      piece.error = err;
    }
    return piece;
  }

  /**
   * Serves a read in pieces (see the module comment), at most `piecesAhead` of them read and
   * not yet taken by the socket. Resolves once every piece has been released.
   */
  private async read(handle: bigint, offset: number, length: number, df: boolean): Promise<void> {
    const whole = !this.session!.structured || df;
    if (length === 0) {
      this.send([this.session!.structured ? encodeStructuredNone(handle) : encodeSimpleReply(0, handle)]);
      return;
    }
    const P = this.o.readPiece;
    const bounds: Array<[number, number]> = [];
    for (let at = offset; at < offset + length; ) {
      const end = Math.min(offset + length, (Math.floor(at / P) + 1) * P);
      bounds.push([at, end - at]);
      at = end;
    }
    if (whole && bounds.length > 1) {
      // Once the header is out the bytes must follow: find bad chunks (EIO) before it.
      try {
        await this.session!.export.cache(offset, length);
      } catch (err) {
        this.sendError(handle, NBD_ERR.EIO, (err as Error)?.message ?? String(err));
        return;
      }
    }
    const pieces: Array<Promise<Piece>> = [];
    let unsent = 0;
    let wake: (() => void) | undefined;
    const release = (p: Piece): void => {
      if (!p.free()) return;
      unsent--;
      const w = wake;
      wake = undefined;
      w?.();
    };
    const readAhead = (): void => {
      while (pieces.length < bounds.length && unsent < this.o.piecesAhead && !this.gone) {
        const [o, l] = bounds[pieces.length]!;
        unsent++;
        pieces.push(this.readPiece(o, l));
      }
    };
    let streaming = false;
    let hole: { offset: number; length: number } | undefined;
    /** Pieces before `next` were sent (or released); the rest are released at the end. */
    let next = 0;
    try {
      while (next < bounds.length) {
        readAhead();
        if (next >= pieces.length) break; // the connection is gone
        const p = await pieces[next++]!;
        if (this.gone) {
          release(p);
          break;
        }
        if (p.error !== undefined) {
          release(p);
          const message = (p.error as Error)?.message ?? String(p.error);
          if (!streaming) {
            this.sendError(handle, NBD_ERR.EIO, message);
          } else {
            // Part of a simple or DF reply is out: the stream cannot be repaired.
            this.o.log?.(`read error in the middle of a reply (${message}); connection closed`);
            this.socket.destroy();
          }
          break;
        }
        const last = next === bounds.length;
        if (whole) {
          if (!streaming) {
            await this.beginStream();
            streaming = true;
            this.write([this.session!.structured ? encodeOffsetDataHeader(REPLY_FLAG_DONE, handle, offset, length) : encodeSimpleReply(0, handle)]);
          }
          this.write(this.wholePiece(p), () => release(p));
        } else {
          const parts: Buffer[] = [];
          hole = this.structuredPiece(handle, p, last, hole, parts);
          this.send(parts, () => release(p));
        }
        while (!last && unsent >= this.o.piecesAhead && !this.gone) await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      if (streaming) this.endStream();
      // Pieces read ahead of an error or of the connection's end.
      for (; next < pieces.length; next++) release(await pieces[next]!);
      while (unsent > 0 && !this.gone) await new Promise<void>((resolve) => (wake = resolve));
    }
  }

  /** A piece of a simple or DF reply: every byte, zeros included. */
  private wholePiece(p: Piece): Buffer[] {
    const r = p.result!;
    return r.runs.map((run) => (run.zero ? zeros(run.length) : r.data!.subarray(run.offset - p.offset, run.offset - p.offset + run.length)));
  }

  /**
   * A piece of a structured reply, appended to `parts`: OFFSET_DATA for data (adjacent runs as
   * one chunk), OFFSET_HOLE for zeros. A hole at the piece's end is returned, not sent, so that
   * it merges with holes of the next pieces; the last chunk of the last piece is flagged DONE.
   */
  private structuredPiece(handle: bigint, p: Piece, last: boolean, hole: { offset: number; length: number } | undefined, parts: Buffer[]): { offset: number; length: number } | undefined {
    const r = p.result!;
    const merged: ExportReadRun[] = [];
    for (const run of r.runs) {
      const prev = merged[merged.length - 1];
      if (prev && prev.zero === run.zero) prev.length += run.length;
      else merged.push({ ...run });
    }
    merged.forEach((run, k) => {
      if (run.zero) {
        if (hole && hole.offset + hole.length === run.offset) hole.length += run.length;
        else {
          if (hole) parts.push(encodeOffsetHole(0, handle, hole.offset, hole.length));
          hole = { offset: run.offset, length: run.length };
        }
        return;
      }
      if (hole) parts.push(encodeOffsetHole(0, handle, hole.offset, hole.length));
      hole = undefined;
      const flags = last && k === merged.length - 1 ? REPLY_FLAG_DONE : 0;
      parts.push(encodeOffsetDataHeader(flags, handle, run.offset, run.length));
      parts.push(r.data!.subarray(run.offset - p.offset, run.offset - p.offset + run.length));
    });
    if (last) {
      if (hole) parts.push(encodeOffsetHole(REPLY_FLAG_DONE, handle, hole.offset, hole.length));
      else if (merged.length === 0) parts.push(encodeStructuredNone(handle));
      return undefined;
    }
    return hole;
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
