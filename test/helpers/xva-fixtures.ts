/**
 * XVA fixtures for tests: deterministic disk contents and XVAs written by the real writer
 * (src/xva/writer.ts), returned together with the raw bytes a correct reader must produce.
 *
 *   const fx = await makeXvaBuffer({ disks: [{ size: 3 * MiB + 4096, fill: [{ offset: 0, length: 8192 }] }] });
 *   // fx.xva: the archive; fx.disks[0].expected: the raw image (virtual_size bytes)
 *
 * Everything is deterministic by default (seeded contents and uuids, fixed date, ova.xml
 * mtime 0), so byte comparisons across runs are safe.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { bufferSource } from '../../src/xva/disk-sources';
import { XVA_CHUNK_SIZE } from '../../src/xva/format';
import type { OvaXmlCdromSpec, OvaXmlVifSpec, OvaXmlVmSpec } from '../../src/xva/metadata/spec';
import type { XvaProducerQuirks } from '../../src/xva/producer-quirks';
import { writeXva, writeXvaFile, type WriteXvaOptions, type XvaWriteSpec, type XvaWriteSummary } from '../../src/xva/writer';

/** What a fixture may pass to the writer: pack's options plus other producers' quirks. */
export type FixtureWriteOptions = WriteXvaOptions & XvaProducerQuirks;

export const KiB = 1024;
export const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Deterministic bytes

/** mulberry32: tiny seeded PRNG, good enough for test data. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** `length` pseudo-random bytes from `seed` (same bytes on every little-endian host). */
export function randomBytes(length: number, seed: number): Buffer {
  const next = prng(seed);
  const words = new Uint32Array(Math.ceil(length / 4));
  for (let i = 0; i < words.length; i++) words[i] = next();
  return Buffer.from(words.buffer, 0, length);
}

export interface FillRange {
  offset: number;
  length: number;
  /** Constant byte instead of random data (e.g. 0 to make an explicit zero range). */
  byte?: number;
  /** Text repeated over the range (compresses well; good for samples). */
  text?: string;
}

/**
 * A disk image of `size` bytes: zeros except the `fill` ranges, which get random bytes derived
 * from `seed` and the range's position (so changing one range does not change the others).
 */
export function sparseDisk(opts: { size: number; seed?: number; fill?: FillRange[] }): Buffer {
  const disk = Buffer.alloc(opts.size);
  const seed = opts.seed ?? 1;
  for (const r of opts.fill ?? []) {
    if (r.offset < 0 || r.length < 0 || r.offset + r.length > opts.size) throw new RangeError(`fill range ${r.offset}+${r.length} outside disk of ${opts.size}`);
    if (r.byte !== undefined) disk.fill(r.byte, r.offset, r.offset + r.length);
    else if (r.text !== undefined) disk.fill(r.text, r.offset, r.offset + r.length, 'utf8');
    else randomBytes(r.length, (seed * 0x9e3779b1 + r.offset / 512) >>> 0).copy(disk, r.offset);
  }
  return disk;
}

/** Deterministic RFC 4122-shaped (version 4) uuids from a seed. */
export function seededUuidGen(seed = 42): () => string {
  const next = prng(seed);
  return () => {
    const b = Buffer.alloc(16);
    for (let i = 0; i < 16; i += 4) b.writeUInt32LE(next(), i);
    b[6] = (b[6]! & 0x0f) | 0x40;
    b[8] = (b[8]! & 0x3f) | 0x80;
    const h = b.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };
}

/** A Writable that keeps everything written to it. */
export function collectingSink(): { sink: Writable; result(): Buffer } {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      cb();
    },
  });
  return { sink, result: () => Buffer.concat(parts) };
}

// ---------------------------------------------------------------------------------------------
// XVA fixtures

export interface FixtureDisk {
  /** Default `Ref:<11 + 3*i>`. */
  ref?: string;
  /** VDI name_label; default `disk<i>`. */
  name?: string;
  /** VDI name_description; default empty. */
  description?: string;
  /** Default i. */
  userdevice?: number | string;
  /** Default: true for the first disk. */
  bootable?: boolean;
  /** Virtual size; default content length, else 2 MiB. */
  size?: number;
  /** Exact contents (shorter than size: the rest is zeros). */
  content?: Buffer;
  /** Used when content is absent: sparseDisk({size, seed, fill}). Default one 64 KiB range at 0. */
  fill?: FillRange[];
  seed?: number;
}

export interface MakeXvaOptions extends FixtureWriteOptions {
  vmName?: string;
  /** Overrides of the VM record (name comes from vmName). */
  vm?: Partial<OvaXmlVmSpec>;
  disks?: FixtureDisk[];
  cdroms?: OvaXmlCdromSpec[];
  vifs?: OvaXmlVifSpec[];
  /** Seed of the uuid generator (default 42). */
  uuidSeed?: number;
  /** version.date (default 2026-01-01). */
  date?: string;
}

export interface ExpectedDisk {
  ref: string;
  name: string;
  userdevice: string;
  bootable: boolean;
  /** virtual_size as written to ova.xml. */
  virtualSize: number;
  /** The raw image a correct reader produces: exactly virtualSize bytes. */
  expected: Buffer;
  /** `<vm-name>-<userdevice>.raw` (unsanitized). */
  rawName: string;
}

export interface XvaFixture {
  vmName: string;
  ovaXml: string;
  summary: XvaWriteSummary;
  /** In spec order (not archive order). */
  disks: ExpectedDisk[];
  spec: XvaWriteSpec;
  options: FixtureWriteOptions;
}

interface Prepared {
  spec: XvaWriteSpec;
  options: FixtureWriteOptions;
  contents: Buffer[];
  vmName: string;
  disks: FixtureDisk[];
}

function prepare(opts: MakeXvaOptions): Prepared {
  const { vmName = 'fixture-vm', vm, disks: diskOpts, cdroms, vifs, uuidSeed, date, ...writeOptions } = opts;
  const disks = diskOpts ?? [{}];
  const contents = disks.map((d, i) => {
    if (d.content) return d.content;
    const size = d.size ?? 2 * MiB;
    return sparseDisk({ size, seed: d.seed ?? i + 1, fill: d.fill ?? [{ offset: 0, length: Math.min(64 * KiB, size) }] });
  });
  const spec: XvaWriteSpec = {
    vm: { name: vmName, vcpus: 1, memoryBytes: 1024 * MiB, ...vm },
    disks: disks.map((d, i) => ({
      ref: d.ref ?? `Ref:${11 + 3 * i}`,
      name: d.name ?? `disk${i}`,
      description: d.description,
      userdevice: d.userdevice ?? i,
      bootable: d.bootable ?? i === 0,
      source: bufferSource(contents[i]!, d.size ?? contents[i]!.length),
    })),
    cdroms,
    vifs,
    version: { date: date ?? '2026-01-01' },
  };
  const options: FixtureWriteOptions = { ovaXmlMtime: 0, uuidGen: seededUuidGen(uuidSeed ?? 42), ...writeOptions };
  return { spec, options, contents, vmName, disks };
}

function expectations(p: Prepared, summary: XvaWriteSummary): ExpectedDisk[] {
  return p.spec.disks.map((d, i) => {
    const declared = summary.disks.find((s) => s.ref === d.ref)!.virtualSize;
    // xva-img style archives never carry the trailing partial MiB: the reader zero-fills it.
    const carried = p.options.dropPartialTail ? Math.floor(declared / XVA_CHUNK_SIZE) * XVA_CHUNK_SIZE : declared;
    const expected = Buffer.alloc(declared);
    p.contents[i]!.copy(expected, 0, 0, Math.min(carried, p.contents[i]!.length, d.source.virtualSize));
    return {
      ref: d.ref,
      name: d.name,
      userdevice: String(d.userdevice),
      bootable: d.bootable ?? false,
      virtualSize: declared,
      expected,
      rawName: `${p.vmName}-${d.userdevice}.raw`,
    };
  });
}

/** Writes an XVA into memory. */
export async function makeXvaBuffer(opts: MakeXvaOptions = {}): Promise<XvaFixture & { xva: Buffer }> {
  const p = prepare(opts);
  const { sink, result } = collectingSink();
  const summary = await writeXva(p.spec, sink, p.options);
  return { xva: result(), vmName: p.vmName, ovaXml: summary.ovaXml, summary, disks: expectations(p, summary), spec: p.spec, options: p.options };
}

const COMPRESSION_EXT = { none: '', gzip: '.gz', zstd: '.zst' } as const;

/** Writes an XVA file into `dir` (default name `<vmName>.xva[.gz|.zst]`). */
export async function makeXvaFile(dir: string, opts: MakeXvaOptions & { fileName?: string } = {}): Promise<XvaFixture & { path: string }> {
  const { fileName, ...rest } = opts;
  const p = prepare(rest);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, fileName ?? `${p.vmName}.xva${COMPRESSION_EXT[p.options.compression ?? 'none']}`);
  const summary = await writeXvaFile(p.spec, file, p.options);
  return { path: file, vmName: p.vmName, ovaXml: summary.ovaXml, summary, disks: expectations(p, summary), spec: p.spec, options: p.options };
}
