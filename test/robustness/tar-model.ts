/**
 * An independent model of the XVA container for the robustness tests: a small tar parser and
 * serializer plus a REFERENCE XVA interpreter. It shares no code with src/ (own tar parsing,
 * own placement, hashes straight from hash-wasm / node:crypto), so the fuzz oracle does not
 * inherit the library's mistakes.
 *
 * The reference follows docs/xva-format.md and the reader's documented policies:
 *  - tar: headers need a valid checksum (unsigned sum); typeflag NUL/'0'/'7' = file, '5' (or a
 *    name ending in '/') = directory, anything else is "other" and makes the reference reject;
 *    all-zero header blocks are skipped (like tar-stream / `tar -i`); the archive "has its end
 *    blocks" when at least 1024 bytes follow the last entry's padded data;
 *  - XVA: first entry `ova.xml`; then pairs `<dir>/<n>` + `<dir>/<n>.xxhash|.checksum`; names
 *    that are not chunk names are skipped between pairs; directory entries are skipped;
 *    cursor placement (counter gaps = zeros, gap unit = first chunk's length if that is not
 *    1 MiB and not the only chunk); disks never interleave; data past the virtual size must
 *    be zeros; a short disk is zero-filled only if the archive has its end blocks.
 */
import { createHash } from 'node:crypto';
import { createXXHash64, type IHasher } from 'hash-wasm';

export const BLOCK = 512;
export const MiB = 1024 * 1024;

export interface ModelEntry {
  name: string;
  /** 'file' | 'dir' | 'other' (with the raw typeflag byte) */
  type: 'file' | 'dir' | 'other';
  typeflag: number;
  size: number;
  headerOffset: number;
  dataOffset: number;
  data: Buffer;
}

export interface ModelTar {
  entries: ModelEntry[];
  /** Offset just past the last entry's padded data. */
  end: number;
  /** At least 1024 bytes follow `end`. */
  endBlocks: boolean;
}

export class ModelReject extends Error {}

function cstr(buf: Buffer, start: number, len: number): string {
  const field = buf.subarray(start, start + len);
  const nul = field.indexOf(0);
  return (nul === -1 ? field : field.subarray(0, nul)).toString('utf8');
}

function octal(buf: Buffer, start: number, len: number): number {
  const s = cstr(buf, start, len).replace(/[ \0]+$/, '').replace(/^ +/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return NaN;
  return parseInt(s, 8);
}

function headerSum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
  return sum;
}

export function isZeroBlock(h: Buffer): boolean {
  for (let i = 0; i < h.length; i++) if (h[i] !== 0) return false;
  return true;
}

/** Parses the tar strictly enough for the reference; throws ModelReject on anything doubtful. */
export function parseTarModel(buf: Buffer): ModelTar {
  const entries: ModelEntry[] = [];
  let pos = 0;
  let end = 0;
  while (pos < buf.length) {
    if (pos + BLOCK > buf.length) throw new ModelReject(`truncated header at ${pos}`);
    const h = buf.subarray(pos, pos + BLOCK);
    if (isZeroBlock(h) || headerSum(h) === 256) {
      pos += BLOCK;
      continue;
    }
    const stored = octal(h, 148, 8);
    if (stored !== headerSum(h)) throw new ModelReject(`bad header checksum at ${pos}`);
    let name = cstr(h, 0, 100);
    const magic = h.subarray(257, 263).toString('latin1');
    if (magic === 'ustar\0' && h[345] !== 0) name = `${cstr(h, 345, 155)}/${name}`;
    const size = octal(h, 124, 12);
    if (!Number.isSafeInteger(size) || size < 0) throw new ModelReject(`bad size at ${pos}`);
    const tf = h[156]!;
    let type: ModelEntry['type'] = tf === 0 || tf === 0x30 || tf === 0x37 ? 'file' : tf === 0x35 ? 'dir' : 'other';
    if (type === 'file' && name.endsWith('/')) type = 'dir';
    if (type === 'other') throw new ModelReject(`unsupported typeflag ${tf} at ${pos}`);
    const dataOffset = pos + BLOCK;
    // tar-stream does not skip a directory's data; treat a sized directory as hostile.
    if (type === 'dir' && size !== 0) throw new ModelReject(`directory with data at ${pos}`);
    if (dataOffset + size > buf.length) throw new ModelReject(`truncated data at ${pos}`);
    entries.push({ name: name.replace(/^(\.\/)+/, ''), type, typeflag: tf, size, headerOffset: pos, dataOffset, data: buf.subarray(dataOffset, dataOffset + size) });
    pos = dataOffset + Math.ceil(size / BLOCK) * BLOCK;
    if (pos > buf.length) throw new ModelReject(`truncated padding at ${pos}`);
    end = pos;
  }
  return { entries, end, endBlocks: buf.length - end >= 2 * BLOCK };
}

/** Writes a header the way ustar (or XAPI's V7) does; `name` must fit in 100 bytes. */
export function tarHeader(name: string, size: number, opts: { typeflag?: number; ustar?: boolean; mode?: number; mtime?: number } = {}): Buffer {
  const h = Buffer.alloc(BLOCK);
  const nb = Buffer.from(name, 'utf8');
  if (nb.length > 100) throw new Error(`name too long for the model writer: ${name.length}`);
  nb.copy(h, 0);
  const oct = (v: number, at: number, len: number): void => {
    h.write(v.toString(8).padStart(len - 1, '0') + '\0', at, 'latin1');
  };
  oct(opts.mode ?? 0o644, 100, 8);
  oct(0, 108, 8);
  oct(0, 116, 8);
  oct(size, 124, 12);
  oct(opts.mtime ?? 0, 136, 12);
  h[156] = opts.typeflag ?? 0x30;
  if (opts.ustar !== false) {
    h.write('ustar\0', 257, 'latin1');
    h.write('00', 263, 'latin1');
  }
  fixHeaderChecksum(h);
  return h;
}

export function fixHeaderChecksum(h: Buffer): void {
  h.fill(0x20, 148, 156);
  const sum = headerSum(h);
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
}

export interface SerialEntry {
  name: string;
  data: Buffer;
  typeflag?: number;
}

/** Serializes entries to a tar with end blocks. */
export function serializeTar(entries: SerialEntry[], opts: { ustar?: boolean; endBlocks?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(tarHeader(e.name, e.data.length, { typeflag: e.typeflag, ustar: opts.ustar }));
    parts.push(e.data);
    const pad = (BLOCK - (e.data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  if (opts.endBlocks !== false) parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// Reference XVA interpretation

let xxh: IHasher | undefined;

export async function initModel(): Promise<void> {
  xxh ??= await createXXHash64();
}

function digest(kind: 'xxhash' | 'checksum', data: Buffer): string {
  if (kind === 'checksum') return createHash('sha1').update(data).digest('hex');
  xxh!.init();
  xxh!.update(data);
  return xxh!.digest('hex');
}

export interface ModelDisk {
  size: number;
}

/** Result of the reference: images by ref (exactly virtual size bytes each). */
export type ModelResult = { ok: true; images: Map<string, Buffer> } | { ok: false; why: string };

const CHUNK_RE = /^(.+)\/(\d{1,15})$/;
const SUM_RE = /^(.+)\/(\d{1,15})\.([A-Za-z0-9]+)$/;

/**
 * Interprets `tar` as an XVA whose ova.xml describes `disks` (ref -> virtual size); VDIs in
 * `otherVdis` may carry data that is skipped. ova.xml's content itself is not interpreted here.
 */
export function referenceRead(tar: Buffer, disks: Map<string, ModelDisk>, otherVdis: Set<string> = new Set()): ModelResult {
  try {
    return { ok: true, images: referenceReadOrThrow(tar, disks, otherVdis) };
  } catch (err) {
    if (err instanceof ModelReject) return { ok: false, why: err.message };
    throw err;
  }
}

function referenceReadOrThrow(tar: Buffer, disks: Map<string, ModelDisk>, otherVdis: Set<string>): Map<string, Buffer> {
  const model = parseTarModel(tar);
  const es = model.entries;
  if (es.length === 0 || es[0]!.name !== 'ova.xml' || es[0]!.type !== 'file') throw new ModelReject('first entry is not ova.xml');
  const images = new Map<string, Buffer>();
  const done = new Set<string>();
  interface Cur { ref: string; size: number; cursor: number; prev: number; gap: number; count: number; firstLen: number; img: Buffer | undefined }
  let cur: Cur | undefined;
  let skipping: string | undefined;
  const finish = (c: Cur, atEnd: boolean): void => {
    if (c.cursor < c.size && atEnd && !model.endBlocks) throw new ModelReject(`disk ${c.ref} truncated`);
    done.add(c.ref);
    if (c.img) images.set(c.ref, c.img);
  };
  for (let i = 1; i < es.length; i++) {
    const e = es[i]!;
    if (e.type === 'dir') continue;
    const m = CHUNK_RE.exec(e.name);
    if (!m) {
      if (SUM_RE.test(e.name)) throw new ModelReject(`checksum ${e.name} without data`);
      continue; // foreign entry: skipped
    }
    const dir = m[1]!;
    const counter = Number(m[2]);
    if (e.size > 64 * MiB) throw new ModelReject('chunk too large');
    if (!cur || cur.ref !== dir) {
      if (skipping !== dir) {
        if (cur) finish(cur, false);
        cur = undefined;
        skipping = undefined;
        const d = disks.get(dir);
        if (!d) {
          if (!otherVdis.has(dir)) throw new ModelReject(`unknown disk ${dir}`);
          skipping = dir;
        } else {
          if (done.has(dir)) throw new ModelReject(`disk ${dir} interleaved`);
          cur = { ref: dir, size: d.size, cursor: 0, prev: -1, gap: MiB, count: 0, firstLen: 0, img: Buffer.alloc(d.size) };
        }
      }
    }
    const s = es[i + 1];
    if (!s || s.type !== 'file') throw new ModelReject(`no checksum after ${e.name}`);
    const sm = SUM_RE.exec(s.name);
    if (!sm || `${e.name}.${sm[3]}` !== s.name) throw new ModelReject(`no checksum after ${e.name}`);
    const kind = sm[3] === 'xxhash' ? 'xxhash' : sm[3] === 'checksum' ? 'checksum' : undefined;
    if (!kind) throw new ModelReject(`unsupported checksum ${s.name}`);
    if (s.size > 1024) throw new ModelReject('checksum entry too large');
    i++;
    if (!cur) continue;
    if (counter <= cur.prev) throw new ModelReject(`counter ${counter} not increasing`);
    if (cur.count === 1 && cur.firstLen > 0 && cur.firstLen !== MiB) cur.gap = cur.firstLen;
    cur.cursor += (counter - cur.prev - 1) * cur.gap;
    const offset = cur.cursor;
    cur.cursor += e.size;
    cur.prev = counter;
    if (cur.count === 0) cur.firstLen = e.size;
    cur.count++;
    const want = s.data.toString('latin1').trim().toLowerCase();
    if (want !== digest(kind, e.data)) throw new ModelReject(`checksum mismatch ${e.name}`);
    const keep = Math.max(0, Math.min(e.size, cur.size - offset));
    const tail = e.data.subarray(keep);
    if (!isZeroBlock(tail)) throw new ModelReject(`data past end in ${e.name}`);
    if (keep > 0) e.data.copy(cur.img!, offset, 0, keep);
  }
  if (cur) finish(cur, true);
  for (const [ref, d] of disks) {
    if (done.has(ref)) continue;
    if (d.size > 0) {
      throw new ModelReject(`disk ${ref} has no data`);
    }
    images.set(ref, Buffer.alloc(0));
  }
  return images;
}
