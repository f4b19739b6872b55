/**
 * Exact-length reads from a client's socket for the NBD connection (connection.ts): requests,
 * option data and write payloads are read by length, and the socket is paused while unread
 * bytes pile up, so a client that sends faster than the server reads is held back by TCP.
 */
import type { Socket } from 'node:net';

/** The client went away before the bytes asked for arrived. */
export class ConnectionClosed extends Error {}

/** Exact-length reads from a socket, pausing it when unread bytes pile up. */
export class SocketReader {
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
