/**
 * The decoder thread's own code (decoder-thread.ts starts it and reads what it posts): fills the
 * shared ring block after block, from a pipe as it comes ('copy'), by inflating a file with
 * node:zlib ('inflate'), or from a child codec's output ('child'). Each block goes to the main
 * thread with a message; a block is filled again only once the main thread has given it back
 * (its state word is 0 again).
 *
 * This module is the worker's entry: loaded there, it runs the thread (last line). The main
 * thread imports only its types, so it never loads it.
 */
import fs from 'node:fs';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { WasmMemory } from '../io/aligned-buffer';

/** What the thread is given (structured-cloned; the memory and control array are shared). */
export interface ThreadData {
  fd: number;
  readSize: number;
  memory: WasmMemory;
  control: Int32Array;
  /** [0]: raw bytes read so far (copy, inflate; a child's are read from its file offset). */
  progress: Float64Array;
  blockBytes: number;
  blocks: number;
  waitMs: number;
  /** Copy from a pipe: hand over a partly filled block after this long without input. */
  idleMs: number;
  mode: 'copy' | 'inflate' | 'child';
  /** The program to run (mode 'child'). */
  child?: {
    path: string;
    args: string[];
    stderrLimit: number;
    transport: ChildTransport;
    /**
     * Transport 'fifo': perl, its arguments to make a FIFO (the path is appended) and to run the
     * decoder with a raised stdout (src/io/pipe-size.ts makes them; this module imports none).
     */
    fifo?: { perl: string; mkfifoArgs: string[]; runArgs: string[] };
  };
}

/** How a child's output reaches the thread (see the thread's code). */
export type ChildTransport = 'fifo' | 'socket-pair' | 'stdout-pipe';

/** Messages from the thread. */
export type ThreadMessage =
  | { type: 'block'; slot: number; length: number }
  | { type: 'end' }
  /** The child has exited and all its output is in the ring. */
  | { type: 'exit'; code: number | null; signal: NodeJS.Signals | null; stderr: string }
  | { type: 'error'; kind: 'read' | 'gzip' | 'child' | 'spawn'; detail: string; offset: number; code?: string };

/**
 * The thread's code. The modules only one mode needs (net, zlib, child_process, crypto) are
 * required where that mode starts, so a thread loads only what it uses.
 */
function decoderThreadMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const data = workerData as ThreadData;
  const port = parentPort!;
  const { control, blockBytes, blocks } = data;
  const stopIndex = blocks;
  const post = (m: ThreadMessage): void => port.postMessage(m);

  let slot = 0;
  let fill = 0;
  let out = new Uint8Array(data.memory.buffer, 0, blockBytes);
  const stopping = (): boolean => Atomics.load(control, stopIndex) !== 0;

  /** Hands the filled block to the main thread. */
  const hand = (): void => {
    if (fill === 0) return;
    Atomics.store(control, slot, 1);
    post({ type: 'block', slot, length: fill });
    slot = (slot + 1) % blocks;
    fill = 0;
    out = new Uint8Array(data.memory.buffer, slot * blockBytes, blockBytes);
  };
  /** The last block, then the end. */
  const finish = (): void => {
    hand();
    post({ type: 'end' });
  };
  /** Hands the filled block over and waits until the next one is free; false when stopping. */
  const ship = (): boolean => {
    hand();
    while (Atomics.load(control, slot) !== 0) {
      if (stopping()) return false;
      Atomics.wait(control, slot, 1, data.waitMs);
    }
    return !stopping();
  };

  if (data.mode === 'copy' && fs.fstatSync(data.fd).isFile()) {
    // A regular file (`xva2img - < vm.xva`): read straight into the ring, block after block.
    let bytesRead = 0;
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(data.fd, out, fill, blockBytes - fill, null);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        post({ type: 'error', kind: 'read', detail: e.message, code: e.code, offset: bytesRead });
        return;
      }
      if (n === 0) break;
      bytesRead += n;
      data.progress[0] = bytesRead;
      fill += n;
      if (fill === blockBytes && !ship()) return;
      if (stopping()) return;
    }
    finish();
    return;
  }

  if (data.mode === 'copy') {
    // A pipe or socket: read as it comes (each read lands in the ring, no buffer per read). A
    // block is handed over when full, or when the writer has paused for IDLE_MS with some bytes
    // in it: a producer that stalls must not leave those bytes waiting here.
    const net = require('node:net') as typeof import('node:net');
    let bytesRead = 0;
    let lastRead = 0;
    let idle: NodeJS.Timeout | undefined;
    // done() may run before the socket exists: a const would be in its temporal dead zone then.
    // eslint-disable-next-line prefer-const
    let socket: import('node:net').Socket | undefined;
    const done = (): void => {
      clearTimeout(idle);
      socket?.destroy();
      port.close();
    };
    const onIdle = (): void => {
      idle = undefined;
      const quiet = Date.now() - lastRead;
      if (fill === 0) return;
      if (quiet < data.idleMs) idle = setTimeout(onIdle, data.idleMs - quiet);
      else if (!ship()) done();
    };
    port.on('message', (m: { type: string }) => {
      if (m.type === 'stop') done();
    });
    // `onread` is taken by the Socket constructor (net.connect passes it the same way), though
    // @types/node declares it only for connect().
    socket = new net.Socket({
      fd: data.fd,
      readable: true,
      writable: false,
      onread: {
        buffer: () => out.subarray(fill),
        callback: (n: number, buf: Uint8Array) => {
          // After onIdle handed a block over, the read already set up lands past its end; its
          // bytes move to where the ring goes on (the main thread only reads what was handed).
          if (buf.byteOffset !== out.byteOffset + fill) out.set(buf.subarray(0, n), fill);
          fill += n;
          bytesRead += n;
          data.progress[0] = bytesRead;
          lastRead = Date.now();
          if (fill === blockBytes) {
            if (!ship()) {
              done();
              return false;
            }
          } else {
            idle ??= setTimeout(onIdle, data.idleMs);
          }
          return true;
        },
      },
    } as import('node:net').SocketConstructorOpts);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      post({ type: 'error', kind: 'read', detail: err.message, code: err.code, offset: bytesRead });
      done();
    });
    socket.on('end', () => {
      finish();
      done();
    });
    return;
  }

  if (data.mode === 'inflate') {
    const zlib = require('node:zlib') as typeof import('node:zlib');
    // The native handle of a Gunzip, driven synchronously as zlib's own *Sync functions do:
    // writeSync(flush, in, inOff, inLen, out, outOff, outLen) leaves [availOut, availIn] in
    // _writeState and reports errors through onerror.
    const gunzip = zlib.createGunzip() as unknown as {
      _handle: {
        writeSync(flush: number, i: Uint8Array, io: number, il: number, o: Uint8Array, oo: number, ol: number): void;
        onerror: (message: string, errno: number) => void;
      };
      _writeState: Uint32Array;
    };
    const handle = gunzip._handle;
    const state = gunzip._writeState;
    let zlibError: string | undefined;
    handle.onerror = (message) => {
      zlibError = message;
    };
    const input = Buffer.allocUnsafe(data.readSize);
    let bytesRead = 0;
    let inflated = 0; // compressed bytes consumed by inflate
    let eof = false;
    for (;;) {
      let n = 0;
      if (!eof) {
        try {
          n = fs.readSync(data.fd, input, 0, input.length, null);
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          post({ type: 'error', kind: 'read', detail: e.message, code: e.code, offset: bytesRead });
          return;
        }
        bytesRead += n;
        data.progress[0] = bytesRead;
        if (n === 0) eof = true;
      }
      const flush = eof ? zlib.constants.Z_FINISH : zlib.constants.Z_NO_FLUSH;
      let inOff = 0;
      let inLen = n;
      for (;;) {
        handle.writeSync(flush, input, inOff, inLen, out, fill, blockBytes - fill);
        const availOut = state[0]!;
        const availIn = state[1]!;
        inflated += inLen - availIn;
        if (zlibError !== undefined) {
          post({ type: 'error', kind: 'gzip', detail: zlibError, offset: inflated });
          return;
        }
        inOff += inLen - availIn;
        inLen = availIn;
        fill = blockBytes - availOut;
        // A full block: ship it and go on with the same input. Otherwise inflate took all it
        // could (the input, or the stream ended and the rest is padding zlib ignores).
        if (availOut !== 0) break;
        if (!ship()) return;
      }
      if (eof) break;
      if (stopping()) return;
    }
    finish();
    return;
  }

  // A child reads the file from its stdin and writes to a socket that this thread reads.
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  const net = require('node:net') as typeof import('node:net');
  type Socket = import('node:net').Socket;
  const z = data.child!;
  let stderr = '';
  let failed = false;
  let child: import('node:child_process').ChildProcess | undefined;
  /** What stop() ends: the stream or descriptor the child's output is read from. */
  let reader: { destroy(): void } | undefined;
  let listener: import('node:net').Server | undefined;
  let outputEnded = false;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  const stop = (): void => {
    failed = true;
    child?.kill('SIGTERM');
    reader?.destroy();
    listener?.close();
    port.close();
  };
  port.on('message', (m: { type: string }) => {
    if (m.type === 'stop') stop();
  });
  /**
   * The end: all output read and the child gone. The last block and the exit status go to the
   * main thread, which judges the status as the main-thread decoder does (zstdExitProblem).
   */
  const settle = (): void => {
    if (failed || !outputEnded || !exit) return;
    hand();
    post({ type: 'exit', code: exit.code, signal: exit.signal, stderr });
    port.close();
  };
  const run = (stdout: 'pipe' | Socket | number, program = z.path, args = z.args): void => {
    const c = spawn(program, args, { stdio: [data.fd, stdout, 'pipe'] });
    child = c;
    c.stderr!.setEncoding('utf8');
    c.stderr!.on('data', (text: string) => {
      if (stderr.length < z.stderrLimit) stderr += text;
    });
    c.on('error', (err) => {
      failed = true;
      reader?.destroy();
      post({ type: 'error', kind: 'spawn', detail: err.message, offset: 0 });
      port.close();
    });
    c.on('close', (code, signal) => {
      exit = { code, signal };
      settle();
    });
  };
  const onOutputEnd = (): void => {
    outputEnded = true;
    settle();
  };

  /**
   * Fallback transport: the child's stdout pipe, each 64 KiB read a new buffer, copied into the
   * ring.
   */
  const viaStdoutPipe = (): void => {
    run('pipe');
    const stdout = child!.stdout!;
    reader = stdout;
    stdout.on('data', (chunk: Buffer) => {
      let off = 0;
      while (off < chunk.length && !failed) {
        const n = Math.min(chunk.length - off, blockBytes - fill);
        out.set(chunk.subarray(off, off + n), fill);
        off += n;
        fill += n;
        if (fill === blockBytes && !ship()) stop();
      }
    });
    stdout.on('error', () => {}); // the exit status explains
    stdout.on('end', onOutputEnd);
  };

  /**
   * Preferred transport (Linux): a connected socket pair made through a listening socket in the
   * abstract namespace (no file is created), the child writing into one end, this thread
   * reading the other with `onread` straight into the ring: no buffer per read, no copy, and
   * reads of whatever the socket holds (~128 KiB) instead of 64 KiB. Anyone on the machine can
   * connect to an abstract socket, so the connection is only accepted once it has sent a
   * 128-bit secret: nobody else's connection is given to the child.
   */
  const viaSocketPair = (): void => {
    const crypto = require('node:crypto') as typeof import('node:crypto');
    const name = `\0xva2img-${process.pid}-${crypto.randomBytes(12).toString('hex')}`;
    const secret = crypto.randomBytes(16);
    const server = net.createServer({ pauseOnConnect: true });
    listener = server;
    let settled = false;
    const fallBack = (): void => {
      if (settled) return;
      settled = true;
      server.close();
      reader?.destroy();
      reader = undefined;
      viaStdoutPipe();
    };
    server.on('error', fallBack);
    server.on('connection', (peer: Socket) => {
      let got = Buffer.alloc(0);
      peer.on('error', () => {});
      peer.on('data', (b: Buffer) => {
        got = Buffer.concat([got, b]);
        if (got.length < secret.length) return;
        if (settled || !got.subarray(0, secret.length).equals(secret) || got.length !== secret.length) return void peer.destroy();
        settled = true;
        server.close();
        peer.pause();
        run(peer); // the child gets its own copy of the descriptor ...
        peer.destroy(); // ... and ours goes, so that the child's exit ends the stream
      });
      peer.resume();
    });
    server.listen(name, () => {
      const socket = net.connect({
        path: name,
        onread: {
          buffer: () => out.subarray(fill),
          callback: (n: number) => {
            fill += n;
            if (fill === blockBytes && !ship()) {
              stop();
              return false;
            }
            return true;
          },
        },
      });
      reader = socket;
      socket.on('error', (err) => {
        if (!settled) return fallBack();
        if (failed) return;
        failed = true;
        child?.kill('SIGTERM');
        post({ type: 'error', kind: 'child', detail: `reading the decoder's output: ${err.message}`, offset: 0 });
        port.close();
      });
      socket.on('end', onOutputEnd);
      socket.write(secret);
    });
  };

  /**
   * Deepest transport (Linux with perl): a FIFO raised to 1 MiB (docs/design/pipe-depth.md). Node
   * cannot make a pipe to hand to a child, so one is made in a private directory, opened at both
   * ends and removed at once; perl raises the pipe on its stdout and then becomes the decoder
   * (exec: same process, same descriptors). If any step fails, the socket pair.
   *
   * This thread reads the FIFO with blocking reads straight into the ring, returning to its event
   * loop after each block (for 'stop', the child's stderr and exit). Not through net.Socket: a
   * socket made on this descriptor closed it a second time when the thread ended, by then the
   * number of the next image file (found by strace in a batch).
   */
  const viaFifo = (fifoPlan: { perl: string; mkfifoArgs: string[]; runArgs: string[] }): void => {
    const os = require('node:os') as typeof import('node:os');
    const path = require('node:path') as typeof import('node:path');
    const { execFileSync } = require('node:child_process') as typeof import('node:child_process');
    const opened: number[] = [];
    let readFd: number;
    let writeFd: number;
    try {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xva2img-'));
      try {
        const fifo = path.join(dir, 'decoded');
        execFileSync(fifoPlan.perl, [...fifoPlan.mkfifoArgs, fifo], { stdio: 'ignore' });
        // Opening one end of a FIFO waits for the other, except a non-blocking read end; once
        // the write end is open, a blocking read end opens at once, and the first one goes.
        opened.push(fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK));
        writeFd = fs.openSync(fifo, fs.constants.O_WRONLY);
        opened.push(writeFd);
        readFd = fs.openSync(fifo, fs.constants.O_RDONLY);
        fs.closeSync(opened.shift()!);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    } catch {
      for (const fd of opened) fs.closeSync(fd);
      return viaSocketPair();
    }
    let open = true;
    const closeRead = (): void => {
      if (open) fs.closeSync(readFd);
      open = false;
    };
    reader = { destroy: closeRead };
    run(writeFd, fifoPlan.perl, fifoPlan.runArgs);
    fs.closeSync(writeFd); // the child's copy is the only writer: its exit ends the stream
    const pump = (): void => {
      while (!failed) {
        let n: number;
        try {
          n = fs.readSync(readFd, out, fill, blockBytes - fill, null);
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          if (e.code === 'EINTR' || e.code === 'EAGAIN') continue;
          failed = true;
          closeRead();
          child?.kill('SIGTERM');
          post({ type: 'error', kind: 'child', detail: `reading the decoder's output: ${e.message}`, offset: 0 });
          port.close();
          return;
        }
        if (n === 0) {
          closeRead();
          onOutputEnd();
          return;
        }
        fill += n;
        if (fill === blockBytes) {
          if (!ship()) return stop();
          setImmediate(pump);
          return;
        }
      }
    };
    pump();
  };

  if (z.transport === 'fifo' && z.fifo) viaFifo(z.fifo);
  else if (z.transport === 'socket-pair') viaSocketPair();
  else viaStdoutPipe();
}

if (!isMainThread) decoderThreadMain();
