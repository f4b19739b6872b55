/**
 * serveXva: the disks of a plain XVA file as read-only NBD exports (`xva2img serve`), one per
 * disk, named by userdevice, the first disk also the default export (docs/design/nbd-server.md).
 *
 * Nothing is extracted: the archive is indexed in one pass over its tar headers, then every
 * read is answered with positional reads from it, each chunk's checksum verified the first
 * time it is read (xva/random-access.ts). Block status reports the archive's holes, so
 * `qemu-img convert` and `nbdcopy` keep their outputs sparse.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { selectDisks } from '../xva/select-disks';
import { UsageError } from '../errors';
import type { NbdExport } from '../nbd/connection';
import type { Extent } from '../nbd/protocol';
import { STATE_HOLE, STATE_ZERO } from '../nbd/protocol';
import { NbdServer } from '../nbd/server';
import { openRandomAccessXva, type DiskRandomReader } from '../xva/random-access';
import type { BadChunkPolicy } from '../xva/reader';

export interface ServeOptions {
  /** Disks to serve (userdevice, ref or VDI uuid); default every disk. */
  disks?: string[];
  /** Unix socket to listen on (default: `nbd.sock` in a new private directory under the temp dir). */
  socketPath?: string;
  /** Listen on TCP instead: this port (0: any free one) … */
  port?: number;
  /** … on this address (default 127.0.0.1). */
  host?: string;
  /** What a checksum mismatch does to reads of that chunk (default 'fail'). */
  onBadChunk?: BadChunkPolicy;
  /** Client handshake time limit (default 10 s). */
  handshakeTimeoutMs?: number;
  signal?: AbortSignal;
  /** Warnings about the archive found while indexing it. */
  onWarning?(message: string): void;
  /** Bad chunks (once each) and client misbehaviour worth a line. */
  onReport?(message: string): void;
}

export interface ServedExport {
  /** Export name: the disk's userdevice. */
  name: string;
  ref: string;
  /** The VDI's name (the export's description). */
  description: string;
  size: number;
  /** Stored chunks (each costs 27 bytes of index, plus a byte of verification state). */
  chunks: number;
  uri: string;
}

export interface XvaServer {
  input: string;
  vmName: string;
  /** Where it listens: a Unix socket, or host and port. */
  socketPath?: string;
  host?: string;
  port?: number;
  exports: ServedExport[];
  /** Bytes of chunk index and verification state held for the served disks. */
  indexBytes: number;
  /** Clients connected now. */
  connections(): number;
  /** Read buffers held by the connections, in bytes: now, the most at once, the most by one connection. */
  readBuffers(): { held: number; peak: number; connectionPeak: number };
  /** Removes the Unix socket synchronously (for process exit handlers). */
  removeSocketSync(): void;
  /** Disconnects every client, stops listening, removes the socket (and its directory if ours). */
  close(): Promise<void>;
}

/** Characters left as they are in a URI's query value; everything else is percent-encoded. */
function uriEscape(s: string): string {
  return s.replace(/[^A-Za-z0-9/._~-]/g, (c) => encodeURIComponent(c));
}

/** `nbd+unix:///0?socket=/tmp/…` or `nbd://127.0.0.1:10809/0` (NBD URI format, doc/uri.md). */
export function nbdUri(exportName: string, where: { socketPath?: string; host?: string; port?: number }): string {
  const name = uriEscape(exportName);
  if (where.socketPath !== undefined) return `nbd+unix:///${name}?socket=${uriEscape(where.socketPath)}`;
  const host = where.host!.includes(':') ? `[${where.host}]` : where.host;
  return `nbd://${host}:${where.port}/${name}`;
}

/** `base:allocation` extents of a disk: stored chunks are data (0), the rest holes that read as zeros. */
function allocationExtents(reader: DiskRandomReader, offset: number, length: number, max: number): Extent[] {
  const out: Extent[] = [];
  reader.index.forEachRun(offset, length, (_start, len, chunk) => {
    const flags = chunk < 0 ? STATE_HOLE | STATE_ZERO : 0;
    const last = out[out.length - 1];
    if (last && last.flags === flags) last.length += len;
    else if (out.length === max) return false;
    else out.push({ length: len, flags });
  });
  return out;
}

export async function serveXva(input: string, options: ServeOptions = {}): Promise<XvaServer> {
  const xva = await openRandomAccessXva(input, { purpose: 'xva2img serve', signal: options.signal, onWarning: options.onWarning });
  let server: NbdServer | undefined;
  let tempDir: string | undefined;
  try {
    const disks = selectDisks(xva.index.metadata, options.disks);
    if (disks.length === 0) throw new UsageError(`${input}: the VM has no disks to serve`);
    const served = disks.map((d) => {
      const index = xva.index.disks.find((x) => x.disk.ref === d.ref)!;
      const reader = xva.reader(index, { onBadChunk: options.onBadChunk, onReport: options.onReport });
      const exp: NbdExport = {
        name: d.userdevice,
        description: d.vdi.name,
        size: d.virtualSize,
        read: (offset, length) => reader.read(offset, length),
        extents: (offset, length, max) => allocationExtents(reader, offset, length, max),
        cache: (offset, length) => reader.verifyRange(offset, length),
      };
      return { exp, disk: d, chunks: index.count, bytes: index.bytes + index.count };
    });
    server = new NbdServer({ exports: served.map((s) => s.exp), handshakeTimeoutMs: options.handshakeTimeoutMs, log: options.onReport });
    let where: { socketPath?: string; host?: string; port?: number };
    if (options.port !== undefined) {
      where = await server.listen({ port: options.port, host: options.host ?? '127.0.0.1' });
    } else {
      let socketPath = options.socketPath;
      if (socketPath === undefined) {
        tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xva2img-'));
        socketPath = path.join(tempDir, 'nbd.sock');
      }
      where = await server.listen({ socketPath });
    }
    const srv = server;
    const dir = tempDir;
    let closed: Promise<void> | undefined;
    const removeSocketSync = (): void => {
      srv.removeSocketSync();
      if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
    };
    return {
      input,
      vmName: xva.index.metadata.vm.name,
      ...where,
      exports: served.map((s) => ({ name: s.exp.name, ref: s.disk.ref, description: s.exp.description, size: s.exp.size, chunks: s.chunks, uri: nbdUri(s.exp.name, where) })),
      indexBytes: served.reduce((a, s) => a + s.bytes, 0),
      connections: () => srv.connections,
      readBuffers: () => srv.readBuffers,
      removeSocketSync,
      close: () =>
        (closed ??= (async () => {
          await srv.close();
          removeSocketSync();
          await xva.close();
        })()),
    };
  } catch (err) {
    await server?.close();
    if (tempDir !== undefined) fs.rmSync(tempDir, { recursive: true, force: true });
    await xva.close();
    throw err;
  }
}
