/**
 * A read-only NBD server: listens on a Unix socket or a TCP port and serves each client with
 * serveConnection (connection.ts). Any number of clients at once; they share the exports (and
 * so the exports' state, such as which chunks are verified).
 *
 * The Unix socket is ours: a stale one left by a server that died is replaced, a live one (or
 * a file that is not a socket) is refused; close() removes it.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { OutputError, UsageError } from '../errors';
import { newBufferAccount, serveConnection, type BufferAccount, type NbdExport } from './connection';
import type { BlockSizes } from './negotiation';

/** Sizes advertised with NBD_INFO_BLOCK_SIZE: any alignment, 4 KiB preferred, 32 MiB reads at most (the protocol's default maximum). */
export const DEFAULT_BLOCK_SIZES: BlockSizes = { minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 };
/** Time a client has to finish the handshake (qemu-nbd's default handshake limit is the same). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Requests in progress per connection, and the read buffers they may hold, before reading more requests waits. */
export const DEFAULT_MAX_INFLIGHT = 16;
export const DEFAULT_MAX_INFLIGHT_BYTES = 16 * 1024 * 1024;
/**
 * Reads are served in pieces of at most this (split at its multiples: a piece lies inside one
 * XVA chunk), so no read allocates more than a chunk's worth of buffer, whatever its length.
 */
export const DEFAULT_READ_PIECE = 1024 * 1024;
/** Pieces of one request read ahead of the socket. */
export const DEFAULT_PIECES_AHEAD = 2;
/** sun_path holds 108 bytes on Linux, the terminating NUL included. */
const MAX_SOCKET_PATH_BYTES = 107;

export interface NbdServerOptions {
  exports: readonly NbdExport[];
  blockSizes?: BlockSizes;
  handshakeTimeoutMs?: number;
  maxInflight?: number;
  maxInflightBytes?: number;
  readPiece?: number;
  piecesAhead?: number;
  log?(message: string): void;
}

export type ListenTarget = { socketPath: string } | { port: number; host: string };

export class NbdServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private socketPath: string | undefined;
  private closing: Promise<void> | undefined;
  private readonly account: BufferAccount = newBufferAccount();

  constructor(private readonly options: NbdServerOptions) {
    const readPiece = options.readPiece ?? DEFAULT_READ_PIECE;
    const piecesAhead = options.piecesAhead ?? DEFAULT_PIECES_AHEAD;
    const maxInflightBytes = options.maxInflightBytes ?? DEFAULT_MAX_INFLIGHT_BYTES;
    if (!(readPiece > 0 && piecesAhead > 0 && maxInflightBytes >= readPiece * piecesAhead)) {
      throw new RangeError(`NbdServer: need readPiece > 0, piecesAhead > 0 and maxInflightBytes >= readPiece * piecesAhead (${readPiece}, ${piecesAhead}, ${maxInflightBytes})`);
    }
    const o = {
      exports: options.exports,
      blockSizes: options.blockSizes ?? DEFAULT_BLOCK_SIZES,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      maxInflight: options.maxInflight ?? DEFAULT_MAX_INFLIGHT,
      maxInflightBytes,
      readPiece,
      piecesAhead,
      buffers: this.account,
      log: options.log,
    };
    this.server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      void serveConnection(socket, o);
    });
  }

  /** Clients connected now. */
  get connections(): number {
    return this.sockets.size;
  }

  /**
   * Read buffers held by the connections (now, the most at once, the most by one connection):
   * each connection holds at most maxInflightBytes (docs/design/nbd-server.md, "Limits").
   */
  get readBuffers(): Readonly<BufferAccount> {
    return { ...this.account };
  }

  /** Starts listening; resolves with where (the port chosen when 0 was asked). */
  async listen(target: ListenTarget): Promise<ListenTarget> {
    if ('socketPath' in target) {
      await claimSocketPath(target.socketPath);
      await this.listenOn(target.socketPath, () => target.socketPath);
      this.socketPath = target.socketPath;
      return target;
    }
    await this.listenOn({ port: target.port, host: target.host }, () => `${target.host}:${target.port}`);
    const addr = this.server.address() as net.AddressInfo;
    return { port: addr.port, host: target.host };
  }

  private listenOn(where: string | net.ListenOptions, label: () => string): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const why = err.code === 'EADDRINUSE' ? 'address already in use' : err.code === 'EACCES' ? 'permission denied' : `${err.code ?? ''} ${err.message}`.trim();
        reject(new OutputError('OUTPUT_IO', `cannot listen on ${label()}: ${why}`, { cause: err }));
      };
      this.server.once('error', onError);
      this.server.listen(where, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
  }

  /** Removes the Unix socket now (for exit paths that cannot wait for close()). */
  removeSocketSync(): void {
    if (this.socketPath !== undefined) fs.rmSync(this.socketPath, { force: true });
  }

  /** Stops listening, disconnects every client and removes the Unix socket. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.removeSocketSync();
      for (const s of this.sockets) s.destroy();
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
    return this.closing;
  }
}

/**
 * Makes `path` free for our socket: nothing there, or a socket nobody listens on (left by a
 * server that died), which is removed. Anything else is refused.
 */
async function claimSocketPath(path: string): Promise<void> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new UsageError(`socket path ${path} is ${Buffer.byteLength(path)} bytes long; Unix sockets allow ${MAX_SOCKET_PATH_BYTES}`);
  }
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new OutputError('OUTPUT_IO', `cannot use socket path ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isSocket()) throw new OutputError('OUTPUT_EXISTS', `${path} exists and is not a socket; choose another --socket path`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'ECONNREFUSED'));
  });
  if (live) throw new OutputError('OUTPUT_EXISTS', `${path}: another server is listening on this socket`);
  fs.rmSync(path, { force: true });
}
