/**
 * The byte path of a written XVA: tar bytes → [gzip | zstd] → byte counter → sink. Every write
 * waits for backpressure; the first failure anywhere in the chain fails every later call as an
 * OutputError naming the destination.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { PassThrough, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { OutputError, outputErrorFrom, XvaError } from '../errors';
import type { Compression } from '../input/types';

/** What openTarOutput needs to know (the writer's options of the same names). */
export interface TarOutputOptions {
  compression?: Compression;
  /** gzip 1-9 (default 6), zstd 1-19 (default 3). */
  compressionLevel?: number;
  /** zstd program used when node:zlib has no zstd encoder (Node < 22.15). Default `zstd` on PATH. */
  zstdPath?: string;
  /** End the sink when done (default true). */
  end?: boolean;
  /** Name of the destination for error messages. */
  label?: string;
}

export interface TarOutput {
  write(data: Buffer): Promise<void>;
  finish(): Promise<void>;
  abort(): void;
  readonly tarBytes: number;
  readonly bytesWritten: number;
}

function zstdUnavailable(cause?: unknown): OutputError {
  return new OutputError(
    'OUTPUT_UNSUPPORTED',
    'zstd compression needs the `zstd` program on PATH (Node 20 has no built-in zstd encoder); install zstd or use gzip',
    { cause },
  );
}

async function spawnZstd(binary: string, level: number): Promise<ChildProcessWithoutNullStreams> {
  const child = spawn(binary, ['-c', '-q', `-${level}`], { stdio: ['pipe', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject((err as NodeJS.ErrnoException).code === 'ENOENT' ? zstdUnavailable(err) : outputErrorFrom(err, 'zstd')));
  });
  return child;
}

export async function openTarOutput(sink: Writable, opts: TarOutputOptions): Promise<TarOutput> {
  const label = opts.label ?? 'XVA output';
  const compression = opts.compression ?? 'none';
  const end = opts.end ?? true;
  let tarBytes = 0;
  let bytesWritten = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytesWritten += chunk.length;
      cb(null, chunk);
    },
  });

  let head: Writable;
  let child: ChildProcessWithoutNullStreams | undefined;
  const finished: Promise<unknown>[] = [];
  // Node >= 22.15 has a zstd encoder in zlib; Node 20 does not, so we fall back to the binary.
  const zlibZstd = (zlib as unknown as { createZstdCompress?: (o?: object) => Transform }).createZstdCompress;
  const zstdLevelParam = (zlib.constants as unknown as Record<string, number | undefined>).ZSTD_c_compressionLevel;

  if (compression === 'none') {
    head = new PassThrough();
    finished.push(pipeline(head as PassThrough, counter, sink, { end }));
  } else if (compression === 'gzip') {
    const gz = zlib.createGzip({ level: opts.compressionLevel ?? zlib.constants.Z_DEFAULT_COMPRESSION });
    head = gz;
    finished.push(pipeline(gz, counter, sink, { end }));
  } else if (compression === 'zstd' && typeof zlibZstd === 'function' && zstdLevelParam !== undefined) {
    const z = zlibZstd({ params: { [zstdLevelParam]: opts.compressionLevel ?? 3 } });
    head = z;
    finished.push(pipeline(z, counter, sink, { end }));
  } else if (compression === 'zstd') {
    child = await spawnZstd(opts.zstdPath ?? 'zstd', opts.compressionLevel ?? 3);
    head = child.stdin;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    const proc = child;
    finished.push(pipeline(child.stdout, counter, sink, { end }));
    finished.push(
      new Promise<void>((resolve, reject) => {
        proc.once('close', (code, signal) => {
          if (code === 0) resolve();
          else reject(new OutputError('OUTPUT_IO', `zstd exited with ${code ?? signal}${stderr ? `: ${stderr.trim()}` : ''}`));
        });
      }),
    );
  } else {
    throw new RangeError(`unknown compression: ${String(compression)}`);
  }

  // First failure anywhere in the chain; every waiter races against it.
  let failure: XvaError | undefined;
  let rejectFailed!: (e: XvaError) => void;
  const failed = new Promise<never>((_, reject) => {
    rejectFailed = reject;
  });
  failed.catch(() => undefined);
  const fail = (err: unknown): void => {
    if (failure) return;
    failure = outputErrorFrom(err, label);
    rejectFailed(failure);
  };
  head.on('error', fail);
  const all = Promise.all(finished);
  all.catch(fail);

  return {
    get tarBytes() {
      return tarBytes;
    },
    get bytesWritten() {
      return bytesWritten;
    },
    async write(data) {
      if (failure) throw failure;
      if (data.length === 0) return;
      tarBytes += data.length;
      if (!head.write(data)) {
        await Promise.race([new Promise<void>((resolve) => head.once('drain', resolve)), failed]);
      }
    },
    async finish() {
      if (failure) throw failure;
      head.end();
      await Promise.race([all, failed]);
    },
    abort() {
      head.destroy();
      child?.kill();
    },
  };
}
