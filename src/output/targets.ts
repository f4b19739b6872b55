/**
 * Byte destinations for image writers: a regular file (random access) or a stream (sequential).
 */
import * as fs from 'node:fs';
import type { Writable } from 'node:stream';
import type { RandomAccessTarget, SequentialTarget } from '../image/types';
import { outputErrorFrom } from '../errors';

function writeAll(fd: number, data: Uint8Array, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number): void => {
      if (done >= data.length) return resolve();
      fs.write(fd, data, done, data.length - done, position + done, (err, n) => {
        if (err) return reject(err);
        step(done + n);
      });
    };
    step(0);
  });
}

/** pwritev of all of `chunks` from `position` (continues after short writes). */
function writevAll(fd: number, chunks: Uint8Array[], position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (list: Uint8Array[], at: number): void => {
      if (list.length === 0) return resolve();
      fs.writev(fd, list, at, (err, n) => {
        if (err) return reject(err);
        // Drop the bytes written: whole chunks, then the front of a partly written one.
        let rest = n;
        let i = 0;
        while (i < list.length && rest >= list[i].length) rest -= list[i++].length;
        const left = list.slice(i);
        if (rest > 0) left[0] = left[0].subarray(rest);
        step(left, at + n);
      });
    };
    step(chunks.filter((c) => c.length > 0), position);
  });
}

/**
 * A regular file opened by the caller; errors become OutputErrors naming `label`.
 *
 * Flush-behind: with `flushBehindBytes`, an fdatasync is started (not awaited) each time that
 * many bytes have been written since the last one. The kernel then writes the image to disk
 * while the conversion goes on, instead of all at once in the final fsync before the rename —
 * the guarantee is the same (sync() still flushes everything), the wait at the end is shorter.
 */
export class FileTarget implements RandomAccessTarget {
  position = 0;
  private unflushed = 0;
  private flushing = false;
  private flushError: unknown;

  constructor(readonly fd: number, readonly label: string, private readonly flushBehindBytes = 0) {}

  private flushBehind(bytes: number): void {
    if (this.flushBehindBytes <= 0) return;
    this.unflushed += bytes;
    if (this.unflushed < this.flushBehindBytes || this.flushing) return;
    this.unflushed = 0;
    this.flushing = true;
    fs.fdatasync(this.fd, (err) => {
      this.flushing = false;
      if (err) this.flushError ??= err;
    });
  }

  async write(data: Uint8Array): Promise<void> {
    const at = this.position;
    this.position += data.length;
    await this.pwrite(data, at);
  }

  async pwrite(data: Uint8Array, position: number): Promise<void> {
    try {
      await writeAll(this.fd, data, position);
    } catch (err) {
      throw outputErrorFrom(err, this.label);
    }
    this.flushBehind(data.length);
  }

  async writev(chunks: Uint8Array[]): Promise<void> {
    const at = this.position;
    this.position += chunks.reduce((n, c) => n + c.length, 0);
    await this.pwritev(chunks, at);
  }

  async pwritev(chunks: Uint8Array[], position: number): Promise<void> {
    try {
      await writevAll(this.fd, chunks, position);
    } catch (err) {
      throw outputErrorFrom(err, this.label);
    }
    this.flushBehind(chunks.reduce((n, c) => n + c.length, 0));
  }

  async truncate(length: number): Promise<void> {
    await new Promise<void>((resolve, reject) => fs.ftruncate(this.fd, length, (e) => (e ? reject(outputErrorFrom(e, this.label)) : resolve())));
  }

  async sync(): Promise<void> {
    if (this.flushError !== undefined) throw outputErrorFrom(this.flushError, this.label);
    await new Promise<void>((resolve, reject) => fs.fsync(this.fd, (e) => (e ? reject(outputErrorFrom(e, this.label)) : resolve())));
  }
}

/** A Writable (stdout, a socket, a tar member) written front to back with backpressure. */
export class StreamTarget implements SequentialTarget {
  position = 0;
  private failure: unknown;
  constructor(readonly stream: Writable, readonly label: string) {
    stream.on('error', (err) => {
      this.failure ??= err;
    });
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.failure) throw outputErrorFrom(this.failure, this.label);
    if (data.length === 0) return;
    this.position += data.length;
    // Copy: the caller reuses its buffer once we resolve, but a Writable may still hold it queued.
    const ok = this.stream.write(Buffer.from(data));
    if (!ok) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => { cleanup(); resolve(); };
        const onError = (err: unknown): void => { cleanup(); reject(outputErrorFrom(err, this.label)); };
        const onClose = (): void => { cleanup(); reject(outputErrorFrom(Object.assign(new Error('closed'), { code: 'EPIPE' }), this.label)); };
        const cleanup = (): void => {
          this.stream.off('drain', onDrain);
          this.stream.off('error', onError);
          this.stream.off('close', onClose);
        };
        this.stream.on('drain', onDrain);
        this.stream.on('error', onError);
        this.stream.on('close', onClose);
      });
    }
  }

  /** Ends the stream and waits until everything is flushed. */
  async end(): Promise<void> {
    if (this.failure) throw outputErrorFrom(this.failure, this.label);
    await new Promise<void>((resolve, reject) => {
      this.stream.end(() => resolve());
      this.stream.once('error', (e) => reject(outputErrorFrom(e, this.label)));
    });
  }
}
