/**
 * The fuzz harness: fixture XVAs, mutations as plain (printable, replayable) case objects,
 * running the library on one case in memory, and the oracle that judges the outcome.
 * See the header of fuzz.test.ts for the property and the oracle.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import * as fc from 'fast-check';
import { XvaError } from '../../src/errors';
import { openInput } from '../../src/input/open';
import type { InputSource } from '../../src/input/types';
import { readXva, type XvaReadResult } from '../../src/xva/reader';
import { bufferSource } from '../helpers/sources';
import { makeXvaBuffer, MiB, KiB, type MakeXvaOptions } from '../helpers/xva-fixtures';
import { BLOCK, fixHeaderChecksum, parseTarModel, referenceRead, serializeTar, type ModelDisk, type ModelEntry, type SerialEntry } from './tar-model';
import { SparseWriter } from './sparse-writer';

// ---------------------------------------------------------------------------------------------
// Fixtures

export interface Fixture {
  id: string;
  tar: Buffer;
  entries: ModelEntry[];
  end: number;
  /** ref -> original image (exactly virtual_size bytes). */
  images: Map<string, Buffer>;
  sizes: Map<string, ModelDisk>;
  xml: string;
  /** Absolute tar offsets [start, end) of each disk's virtual_size digits. */
  sizeRanges: Map<string, [number, number]>;
  compressed: { gz: Buffer; gzMulti: Buffer; zst: Buffer; zstMulti: Buffer };
}

const FIXTURE_SPECS: Array<{ id: string; opts: MakeXvaOptions }> = [
  {
    // XAPI style: V7 headers, XXH64, a counter gap (zero chunk 1), a keep-alive, two disks.
    id: 'xapi-2disks',
    opts: {
      vmName: 'fuzz-a',
      disks: [
        { ref: 'Ref:11', size: 2 * MiB + 4 * KiB, fill: [{ offset: 0, length: 8 * KiB }, { offset: MiB - 4 * KiB, length: 4 * KiB }, { offset: 2 * MiB, length: 4 * KiB }] },
        { ref: 'Ref:14', size: 64 * KiB, fill: [{ offset: 512, length: 1024 }] },
      ],
      keepAlives: [{ disk: 'Ref:11', beforeChunk: 2 }],
      ovaXml: compactOvaXml('fuzz-a', [{ ref: 'Ref:11', size: 2 * MiB + 4 * KiB, userdevice: 0 }, { ref: 'Ref:14', size: 64 * KiB, userdevice: 1 }]),
    },
  },
  {
    // ustar headers, SHA-1, a single short chunk, and a zero-size disk (no chunks at all).
    id: 'ustar-sha1',
    opts: {
      vmName: 'fuzz-b',
      checksum: 'sha1',
      tarDialect: 'ustar',
      writeAllChunks: true,
      disks: [
        { ref: 'Ref:998', size: 192 * KiB, fill: [{ offset: 0, length: 4 * KiB }, { offset: 128 * KiB, length: 4 * KiB }] },
        { ref: 'Ref:1000', size: 0, content: Buffer.alloc(0) },
      ],
      ovaXml: compactOvaXml('fuzz-b', [{ ref: 'Ref:998', size: 192 * KiB, userdevice: 0 }, { ref: 'Ref:1000', size: 0, userdevice: 1 }], true),
    },
  },
  {
    // Xen Orchestra style: the only chunk padded to 1 MiB, virtual_size rounded up; plus a CD;
    // the writer's full ova.xml (every field XAPI needs), unlike the compact one above.
    id: 'xo-padded',
    opts: {
      vmName: 'fuzz-c',
      padLastChunk: true,
      disks: [{ ref: 'Ref:1003', size: 100 * KiB, fill: [{ offset: 4096, length: 4096 }, { offset: 96 * KiB, length: 512 }] }],
      cdroms: [{ userdevice: 3 }] as MakeXvaOptions['cdroms'],
    },
  },
];

/** A compact ova.xml (the fields the reader needs) so that most cases stay cheap to parse. */
export function compactOvaXml(vmName: string, disks: Array<{ ref: string; size: number; userdevice: number }>, cd = false): string {
  const v = (x: string): string => `<value>${x}</value>`;
  const m = (k: string, x: string): string => `<member><name>${k}</name>${x}</member>`;
  const st = (...ms: string[]): string => `<value><struct>${ms.join('')}</struct></value>`;
  const arr = (xs: string[]): string => `<value><array><data>${xs.join('')}</data></array></value>`;
  const obj = (cls: string, id: string, ...fields: string[]): string => st(m('class', v(cls)), m('id', v(id)), m('snapshot', st(...fields)));
  const vbdRef = (i: number): string => `Ref:${900 + i}`;
  const objects = [
    obj('VM', 'Ref:1', m('name_label', v(vmName)), m('memory_static_max', v('1073741824')), m('VCPUs_max', v('1')), m('HVM_boot_policy', v('BIOS order')), m('VBDs', arr(disks.map((_, i) => v(vbdRef(i)))))),
    ...disks.map((d, i) =>
      obj('VBD', vbdRef(i), m('VM', v('Ref:1')), m('VDI', v(d.ref)), m('userdevice', v(String(d.userdevice))), m('bootable', '<value><boolean>' + (i === 0 ? 1 : 0) + '</boolean></value>'), m('type', v('Disk'))),
    ),
    ...(cd ? [obj('VBD', 'Ref:950', m('VM', v('Ref:1')), m('VDI', v('OpaqueRef:NULL')), m('userdevice', v('3')), m('type', v('CD')), m('empty', '<value><boolean>1</boolean></value>'))] : []),
    ...disks.map((d, i) => obj('VDI', d.ref, m('name_label', v(`disk ${i}`)), m('virtual_size', v(String(d.size))), m('SR', v('Ref:2')), m('type', v('user')))),
    obj('SR', 'Ref:2', m('name_label', v('Local storage')), m('content_type', v('user'))),
  ];
  const version = st(m('hostname', v('fuzz')), m('xapi_major', v('1')), m('xapi_minor', v('20')), m('export_vsn', v('2')));
  return st(m('version', version), m('objects', arr(objects)));
}

function zstdCompress(data: Buffer): Buffer {
  return execFileSync('zstd', ['-q', '-1', '-c'], { input: data, maxBuffer: 256 * MiB });
}

export async function buildFixtures(): Promise<Fixture[]> {
  const out: Fixture[] = [];
  for (const { id, opts } of FIXTURE_SPECS) {
    const fx = await makeXvaBuffer({ ...opts, compression: 'none' });
    const tar = fx.xva;
    const model = parseTarModel(tar);
    const images = new Map(fx.disks.map((d) => [d.ref, d.expected]));
    const sizes = new Map(fx.disks.map((d) => [d.ref, { size: d.virtualSize }]));
    const xmlEntry = model.entries[0]!;
    const xml = xmlEntry.data.toString('utf8');
    const sizeRanges = new Map<string, [number, number]>();
    for (const d of fx.disks) {
      const at = findVirtualSize(xml, d.ref);
      if (!at) throw new Error(`fixture ${id}: no virtual_size for ${d.ref}`);
      // ova.xml is ASCII here, so string offsets are byte offsets.
      sizeRanges.set(d.ref, [xmlEntry.dataOffset + at[0], xmlEntry.dataOffset + at[1]]);
    }
    const half = Math.floor(tar.length / 2);
    out.push({
      id,
      tar,
      entries: model.entries,
      end: model.end,
      images,
      sizes,
      xml,
      sizeRanges,
      compressed: {
        gz: zlib.gzipSync(tar, { level: 1 }),
        gzMulti: Buffer.concat([zlib.gzipSync(tar.subarray(0, half), { level: 1 }), zlib.gzipSync(tar.subarray(half), { level: 1 })]),
        zst: zstdCompress(tar),
        zstMulti: Buffer.concat([zstdCompress(tar.subarray(0, half)), zstdCompress(tar.subarray(half))]),
      },
    });
  }
  return out;
}

/** [start, end) of the virtual_size value text of the VDI object with id `ref`. */
export function findVirtualSize(xml: string, ref: string): [number, number] | undefined {
  const idAt = xml.indexOf(`<member><name>id</name><value>${ref}</value></member>`);
  if (idAt < 0) return undefined;
  // The VDI's snapshot follows its id; class VDI is checked by requiring the field name.
  const key = '<name>virtual_size</name><value>';
  const k = xml.indexOf(key, idAt);
  if (k < 0) return undefined;
  const start = k + key.length;
  const end = xml.indexOf('</value>', start);
  return [start, end];
}

// ---------------------------------------------------------------------------------------------
// Cases

export type Region = 'any' | 'hdr' | 'xml' | 'chunk' | 'sum' | 'pad' | 'tail' | 'size';
export type Wrap = 'none' | 'open' | 'gzip';

export type FuzzCase =
  | { k: 'flip'; fx: number; wrap: Wrap; flips: Array<{ r: Region; i: number; j: number; x: number }> }
  | { k: 'hdr'; fx: number; wrap: Wrap; e: number; field: HeaderField; v: number; s: string }
  | { k: 'trunc'; fx: number; wrap: Wrap; at: TruncAt; e: number; d: number }
  | { k: 'ops'; fx: number; wrap: Wrap; ustar: boolean; end: boolean; ops: EntryOp[] }
  | { k: 'sum'; fx: number; wrap: Wrap; e: number; how: SumHow; o: number }
  | { k: 'xml'; fx: number; wrap: Wrap; how: XmlHow; d: number; v: string; p: number }
  | { k: 'z'; fx: number; codec: ZCodec; op: 'flip' | 'trunc' | 'append' | 'dup' | 'zero'; p: number; x: number; zc: 'binary' | 'fzstd'; gc: 'zlib' | 'pako' };

export type HeaderField = 'name' | 'size' | 'type' | 'mode' | 'mtime' | 'magic' | 'link' | 'prefix';
export type TruncAt = 'any' | 'hdrStart' | 'hdrMid' | 'dataStart' | 'dataMid' | 'dataEnd' | 'padEnd' | 'endMid' | 'endFull' | 'oneEndBlock';
export type EntryOp = { op: 'drop' | 'dup' | 'swap' | 'move' | 'dropPair' | 'dupPair' | 'swapPairs' | 'insert' | 'zeroBlock'; a: number; b: number; name: string };
export type SumHow = 'lower' | 'newline' | 'space' | 'inner-space' | 'empty' | 'other' | 'short' | 'long' | 'garbage';
export type XmlHow = 'size' | 'doctype' | 'external' | 'deep' | 'dupId' | 'dropSr' | 'truncate' | 'bom' | 'comment' | 'numericEntity' | 'cdata' | 'refMissing' | 'garbageTail' | 'pi';
export type ZCodec = 'gz' | 'gzMulti' | 'zst' | 'zstMulti';

const SIZE_VALUES = ['0', '-1', '-0', 'abc', '1e3', '0x10', '2097152.0', ' 2097152 ', '9223372036854775808', '18446744073709551615', '9007199254740991', '9007199254740992', '9'.repeat(200), '', '１２', '+1048576', 'NaN', 'Infinity', '1048576', '1049088', '3145728', '1048575'];
const INSERT_NAMES = ['../../etc/passwd', '/etc/shadow', 'README', 'Ref:11/', 'Ref:999/00000000', 'Ref:11/00000000.sha256', './ova.xml', 'ova.xml', '.', 'a\u0000b', 'Ref:11/../../x', 'Ref:14/000000001'];
const HDR_NAMES = ['Ref:11/00000001', 'Ref:11/00000005', 'Ref:14/00000000', 'Ref:11/00000000.checksum', 'Ref:11/00000000.xxhash', '../Ref:11/00000000', '/Ref:11/00000000', './Ref:11/00000000', 'ova.xml', 'Ref:11/99999999999', 'Ref:11/-1', 'Ref:11', '', 'x/'];

const nat = fc.nat({ max: 1 << 30 });
// The compact-ova.xml fixtures are cheaper (fixture 1 is only ~200 KiB): pick them more often.
const fxArb = fc.constantFrom(0, 0, 1, 1, 1, 2);
const wrapArb = fc.constantFrom<Wrap>('none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'open', 'gzip');

export const caseArb: fc.Arbitrary<FuzzCase> = fc.oneof(
  {
    weight: 30,
    arbitrary: fc.record({
      k: fc.constant('flip' as const),
      fx: fxArb,
      wrap: wrapArb,
      flips: fc.array(
        fc.record({ r: fc.constantFrom<Region>('any', 'any', 'hdr', 'xml', 'chunk', 'sum', 'pad', 'tail', 'size'), i: nat, j: nat, x: fc.integer({ min: 1, max: 255 }) }),
        { minLength: 1, maxLength: 3 },
      ),
    }),
  },
  {
    weight: 15,
    arbitrary: fc.record({
      k: fc.constant('hdr' as const),
      fx: fxArb,
      wrap: wrapArb,
      e: nat,
      field: fc.constantFrom<HeaderField>('name', 'size', 'size', 'type', 'mode', 'mtime', 'magic', 'link', 'prefix'),
      v: nat,
      s: fc.oneof(fc.constantFrom(...HDR_NAMES), fc.string({ maxLength: 30 })),
    }),
  },
  {
    weight: 15,
    arbitrary: fc.record({
      k: fc.constant('trunc' as const),
      fx: fxArb,
      wrap: wrapArb,
      at: fc.constantFrom<TruncAt>('any', 'hdrStart', 'hdrMid', 'dataStart', 'dataMid', 'dataEnd', 'padEnd', 'endMid', 'endFull', 'oneEndBlock'),
      e: nat,
      d: nat,
    }),
  },
  {
    weight: 15,
    arbitrary: fc.record({
      k: fc.constant('ops' as const),
      fx: fxArb,
      wrap: wrapArb,
      ustar: fc.boolean(),
      end: fc.boolean(),
      ops: fc.array(
        fc.record({
          op: fc.constantFrom<EntryOp['op']>('drop', 'dup', 'swap', 'move', 'dropPair', 'dupPair', 'swapPairs', 'insert', 'zeroBlock'),
          a: nat,
          b: nat,
          name: fc.constantFrom(...INSERT_NAMES),
        }),
        { minLength: 1, maxLength: 2 },
      ),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant('sum' as const),
      fx: fxArb,
      wrap: wrapArb,
      e: nat,
      how: fc.constantFrom<SumHow>('lower', 'newline', 'space', 'inner-space', 'empty', 'other', 'short', 'long', 'garbage'),
      o: nat,
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({
      k: fc.constant('xml' as const),
      fx: fxArb,
      wrap: wrapArb,
      how: fc.constantFrom<XmlHow>('size', 'size', 'size', 'doctype', 'external', 'deep', 'dupId', 'dropSr', 'truncate', 'bom', 'comment', 'numericEntity', 'cdata', 'refMissing', 'garbageTail', 'pi'),
      d: nat,
      v: fc.constantFrom(...SIZE_VALUES),
      p: nat,
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({
      k: fc.constant('z' as const),
      fx: fxArb,
      codec: fc.constantFrom<ZCodec>('gz', 'gzMulti', 'zst', 'zstMulti'),
      op: fc.constantFrom('flip' as const, 'flip' as const, 'trunc' as const, 'append' as const, 'dup' as const, 'zero' as const),
      p: nat,
      x: fc.integer({ min: 1, max: 255 }),
      // the zstd program costs a process spawn per case: keep it to about 1 case in 100
      zc: fc.constantFrom('binary' as const, ...Array<'fzstd'>(9).fill('fzstd')),
      gc: fc.constantFrom('zlib' as const, 'zlib' as const, 'pako' as const),
    }),
  },
);

// ---------------------------------------------------------------------------------------------
// Applying a case

/**
 * What must hold if the library ACCEPTS the case (a typed rejection is always allowed):
 *  - reject:    nothing may be accepted (chunk data changed, checksum not fixed);
 *  - original:  images equal the fixture's images (the change cannot alter disk content);
 *  - reference: images equal what the reference interpreter derives from `tar` with `sizes`;
 *               if the reference rejects, the library's leniency must reproduce the originals;
 *  - sizes:     ova.xml changed: every disk reported must be an original disk with the size
 *               given here ('reject' = that size text is invalid, so acceptance is wrong), and its
 *               image is the original image zero-extended or cut (cut only over zeros).
 */
export type Oracle =
  | { type: 'reject' }
  | { type: 'original' }
  | { type: 'reference'; tar: Buffer; sizes: Map<string, ModelDisk> }
  | { type: 'sizes'; sizes: Map<string, number | 'reject'>; corrupt?: Set<string> };

export interface Prepared {
  /** Bytes given to the library. */
  bytes: Buffer;
  /** Open through openInput (sniffing + decoders) instead of a plain buffer source. */
  viaOpen: boolean;
  /**
   * Write the bytes to this file and open it by path: a plain archive then takes the reader's
   * positional-read path (header walker + prefetched chunk data) instead of the stream path.
   */
  viaFile?: string;
  zstdCodec?: 'binary' | 'fzstd';
  gzipCodec?: 'zlib' | 'pako';
  oracle: Oracle;
}

function regionOf(fx: Fixture, pos: number): Exclude<Region, 'any' | 'size'> {
  for (const e of fx.entries) {
    if (pos >= e.headerOffset && pos < e.dataOffset) return 'hdr';
    if (pos >= e.dataOffset && pos < e.dataOffset + e.size) {
      if (e.name === 'ova.xml') return 'xml';
      return /\.(xxhash|checksum)$/.test(e.name) ? 'sum' : 'chunk';
    }
    const padEnd = e.dataOffset + Math.ceil(e.size / BLOCK) * BLOCK;
    if (pos >= e.dataOffset + e.size && pos < padEnd) return 'pad';
  }
  return 'tail';
}

function chunkRefAt(fx: Fixture, pos: number): string {
  const e = fx.entries.find((x) => pos >= x.dataOffset && pos < x.dataOffset + x.size)!;
  return e.name.slice(0, e.name.lastIndexOf('/'));
}

function pick<T>(arr: T[], i: number): T | undefined {
  return arr.length === 0 ? undefined : arr[i % arr.length];
}

function flipPosition(fx: Fixture, r: Region, i: number, j: number): number {
  const es = fx.entries;
  const len = fx.tar.length;
  const inEntry = (e: ModelEntry | undefined): number => (e && e.size > 0 ? e.dataOffset + (j % e.size) : j % len);
  switch (r) {
    case 'hdr': {
      const e = pick(es, i)!;
      return e.headerOffset + (j % BLOCK);
    }
    case 'xml':
      return inEntry(es[0]);
    case 'chunk':
      return inEntry(pick(es.filter((e) => e.name !== 'ova.xml' && !/\.(xxhash|checksum)$/.test(e.name) && e.size > 0), i));
    case 'sum':
      return inEntry(pick(es.filter((e) => /\.(xxhash|checksum)$/.test(e.name)), i));
    case 'pad': {
      const padded = es.filter((e) => e.size % BLOCK !== 0);
      const e = pick(padded, i);
      if (!e) return fx.end + (j % (len - fx.end));
      const padLen = BLOCK - (e.size % BLOCK);
      return e.dataOffset + e.size + (j % padLen);
    }
    case 'tail':
      return fx.end + (j % (len - fx.end));
    case 'size': {
      const ranges = [...fx.sizeRanges.values()];
      const [s, t] = pick(ranges, i)!;
      return s + (j % (t - s));
    }
    default:
      return j % len;
  }
}

/** Expected size of each original disk after the ova.xml bytes changed in place. */
function sizesAfterXmlFlip(fx: Fixture, mutated: Buffer): Map<string, number | 'reject'> {
  const out = new Map<string, number | 'reject'>();
  for (const [ref, [s, t]] of fx.sizeRanges) out.set(ref, parseSizeText(mutated.subarray(s, t).toString('latin1')));
  return out;
}

/**
 * The documented rule for virtual_size: decimal digits, optional `.0`, surrounding whitespace;
 * "-0" is 0 (as XAPI's Int64.of_string reads it); any other sign, exponent, hex or a value past
 * 2^53-1 is refused.
 */
export function parseSizeText(t: string): number | 'reject' {
  if (!/^[\t\n\r ]*-?\d{1,30}(\.0+)?[\t\n\r ]*$/.test(t)) return 'reject';
  const n = Number(t.trim());
  if (n < 0) return 'reject';
  return Number.isSafeInteger(n) ? Math.abs(n) : 'reject';
}

function serialEntries(fx: Fixture): SerialEntry[] {
  return fx.entries.map((e) => ({ name: e.name, data: e.data, typeflag: e.typeflag }));
}

function refSizes(fx: Fixture): Map<string, ModelDisk> {
  return fx.sizes;
}

function withXml(fx: Fixture, xml: string | Buffer): Buffer {
  const es = serialEntries(fx);
  es[0] = { name: 'ova.xml', data: Buffer.isBuffer(xml) ? xml : Buffer.from(xml, 'utf8') };
  return serializeTar(es, { ustar: true });
}

function wrapped(tar: Buffer, wrap: Wrap, oracle: Oracle): Prepared {
  if (wrap === 'gzip') return { bytes: zlib.gzipSync(tar, { level: 1 }), viaOpen: true, oracle };
  return { bytes: tar, viaOpen: wrap === 'open', oracle };
}

export function prepare(fxs: Fixture[], c: FuzzCase): Prepared {
  const fx = fxs[c.fx % fxs.length]!;
  switch (c.k) {
    case 'flip': {
      const bytes = Buffer.from(fx.tar);
      const positions = new Set<number>();
      for (const f of c.flips) {
        const pos = flipPosition(fx, f.r, f.i, f.j);
        if (positions.has(pos)) continue; // two flips of one byte could cancel out
        positions.add(pos);
        bytes[pos]! ^= f.x;
      }
      const regions = [...positions].map((p) => regionOf(fx, p));
      // Disks whose chunk data was hit: never acceptable as output.
      const corrupt = new Set([...positions].filter((p) => regionOf(fx, p) === 'chunk').map((p) => chunkRefAt(fx, p)));
      let oracle: Oracle;
      // A flip in ova.xml can detach a VDI from the VM (e.g. its VBD's VDI ref changes): its data
      // is then skipped unread, as XAPI would, so a corrupt chunk there need not be rejected,
      // but that disk must not be output.
      if (regions.includes('xml')) oracle = { type: 'sizes', sizes: sizesAfterXmlFlip(fx, bytes), corrupt };
      else if (corrupt.size > 0) oracle = { type: 'reject' };
      else oracle = { type: 'original' };
      return wrapped(bytes, c.wrap, oracle);
    }
    case 'hdr': {
      const bytes = Buffer.from(fx.tar);
      const e = pick(fx.entries, c.e)!;
      const h = bytes.subarray(e.headerOffset, e.headerOffset + BLOCK);
      const putStr = (s: string, at: number, len: number): void => {
        h.fill(0, at, at + len);
        Buffer.from(s, 'utf8').copy(h, at, 0, len);
      };
      switch (c.field) {
        case 'name':
          putStr(c.s, 0, 100);
          break;
        case 'size': {
          const variants = [e.size + 1, e.size - 1, e.size + BLOCK, e.size - BLOCK, 0, e.size * 2, 0o77777777777, e.size + MiB, 16, (c.v % (4 * MiB))];
          const n = Math.max(0, variants[c.v % variants.length]!);
          if (c.v % 11 === 10) putStr('7'.repeat(11) + 'x', 124, 12); // not octal
          else if (c.v % 13 === 12) { h.fill(0, 124, 136); h[124] = 0x80; h[135] = 1; } // base-256
          else putStr(n.toString(8).padStart(11, '0'), 124, 12);
          break;
        }
        case 'type':
          h[156] = '0\u000012345679xgLKVSAZD '.charCodeAt(c.v % 22);
          break;
        case 'mode':
          putStr((c.v % 0o10000).toString(8).padStart(7, '0'), 100, 8);
          break;
        case 'mtime':
          putStr((c.v % 0o77777777777).toString(8).padStart(11, '0'), 136, 12);
          break;
        case 'magic':
          putStr(['ustar\u0000', 'ustar ', 'xxxxxx', ''][c.v % 4]!, 257, 6);
          putStr(['00', ' \u0000', 'zz', ''][c.v % 4]!, 263, 2);
          break;
        case 'link':
          putStr(c.s, 157, 100);
          break;
        case 'prefix':
          putStr('ustar\u0000', 257, 6);
          putStr('00', 263, 2);
          putStr(c.s || '..', 345, 155);
          break;
      }
      fixHeaderChecksum(h);
      return wrapped(bytes, c.wrap, { type: 'reference', tar: bytes, sizes: refSizes(fx) });
    }
    case 'trunc': {
      const es = fx.entries;
      const e = pick(es, c.e)!;
      const len = fx.tar.length;
      let at: number;
      switch (c.at) {
        case 'hdrStart': at = e.headerOffset; break;
        case 'hdrMid': at = e.headerOffset + 1 + (c.d % (BLOCK - 1)); break;
        case 'dataStart': at = e.dataOffset; break;
        case 'dataMid': at = e.dataOffset + (e.size > 1 ? 1 + (c.d % (e.size - 1)) : 0); break;
        case 'dataEnd': at = e.dataOffset + e.size; break;
        case 'padEnd': at = e.dataOffset + Math.ceil(e.size / BLOCK) * BLOCK; break;
        case 'endMid': at = fx.end + 1 + (c.d % (2 * BLOCK - 1)); break;
        case 'endFull': at = fx.end + 2 * BLOCK; break;
        case 'oneEndBlock': at = fx.end + BLOCK; break;
        default: at = c.d % (len + 1);
      }
      const bytes = Buffer.from(fx.tar.subarray(0, Math.min(at, len)));
      return wrapped(bytes, c.wrap, { type: 'reference', tar: bytes, sizes: refSizes(fx) });
    }
    case 'ops': {
      let es: Array<SerialEntry | 'zero'> = serialEntries(fx);
      for (const op of c.ops) es = applyOp(es, op);
      const parts: Buffer[] = [];
      for (const e of es) {
        if (e === 'zero') parts.push(Buffer.alloc(BLOCK));
        else parts.push(serializeTar([e], { ustar: c.ustar, endBlocks: false }));
      }
      if (c.end) parts.push(Buffer.alloc(2 * BLOCK));
      const bytes = Buffer.concat(parts);
      return wrapped(bytes, c.wrap, { type: 'reference', tar: bytes, sizes: refSizes(fx) });
    }
    case 'sum': {
      const es = serialEntries(fx);
      const sums = es.map((e, i) => [e, i] as const).filter(([e]) => /\.(xxhash|checksum)$/.test(e.name));
      const [target, idx] = pick(sums, c.e)!;
      const text = target.data.toString('latin1');
      const other = pick(sums.filter(([, i]) => i !== idx), c.o)?.[0].data.toString('latin1') ?? text;
      const variants: Record<SumHow, string> = {
        lower: text.toLowerCase() === text ? text.toUpperCase() : text.toLowerCase(),
        newline: `${text}\n`,
        space: ` ${text} `,
        'inner-space': `${text.slice(0, 8)} ${text.slice(8)}`,
        empty: '',
        other,
        short: text.slice(0, text.length - 1),
        long: text.repeat(100),
        garbage: 'Z'.repeat(text.length),
      };
      es[idx] = { ...target, data: Buffer.from(variants[c.how], 'latin1') };
      const bytes = serializeTar(es, { ustar: true });
      return wrapped(bytes, c.wrap, { type: 'reference', tar: bytes, sizes: refSizes(fx) });
    }
    case 'xml':
      return prepareXml(fx, c);
    case 'z': {
      const src = fx.compressed[c.codec];
      let bytes: Buffer;
      const p = c.p % src.length;
      switch (c.op) {
        case 'flip':
          bytes = Buffer.from(src);
          bytes[p]! ^= c.x;
          break;
        case 'zero':
          bytes = Buffer.from(src);
          bytes.fill(0, p, Math.min(src.length, p + 1 + (c.x % 64)));
          break;
        case 'trunc':
          bytes = Buffer.from(src.subarray(0, p));
          break;
        case 'append':
          bytes = Buffer.concat([src, Buffer.alloc(1 + (c.x % 600), c.x)]);
          break;
        case 'dup':
          bytes = Buffer.concat([src, src]);
          break;
      }
      return { bytes, viaOpen: true, zstdCodec: c.zc, gzipCodec: c.gc, oracle: { type: 'original' } };
    }
  }
}

function applyOp(es: Array<SerialEntry | 'zero'>, op: EntryOp): Array<SerialEntry | 'zero'> {
  const out = [...es];
  const n = out.length;
  if (n === 0) return out;
  const a = op.a % n;
  const b = op.b % n;
  // Pairs start at odd indexes (index 0 is ova.xml).
  const pairStart = (x: number): number => (n < 3 ? 1 : 1 + 2 * (x % Math.floor((n - 1) / 2)));
  switch (op.op) {
    case 'drop':
      out.splice(a, 1);
      break;
    case 'dup':
      out.splice(a, 0, out[a]!);
      break;
    case 'swap':
      [out[a], out[b]] = [out[b]!, out[a]!];
      break;
    case 'move': {
      const [e] = out.splice(a, 1);
      out.splice(b, 0, e!);
      break;
    }
    case 'dropPair':
      out.splice(pairStart(op.a), 2);
      break;
    case 'dupPair': {
      const s = pairStart(op.a);
      out.splice(s, 0, ...out.slice(s, s + 2));
      break;
    }
    case 'swapPairs': {
      const s = pairStart(op.a);
      const t = pairStart(op.b);
      const ps = out.slice(s, s + 2);
      const pt = out.slice(t, t + 2);
      if (s !== t && ps.length === 2 && pt.length === 2) {
        out.splice(s, 2, ...pt);
        out.splice(t, 2, ...ps);
      }
      break;
    }
    case 'insert': {
      const isDir = op.name.endsWith('/') || op.name === '.';
      out.splice(b, 0, { name: op.name, data: isDir ? Buffer.alloc(0) : Buffer.from('hello\n'), typeflag: isDir ? 0x35 : 0x30 });
      break;
    }
    case 'zeroBlock':
      out.splice(Math.max(1, b), 0, 'zero');
      break;
  }
  return out;
}

function prepareXml(fx: Fixture, c: Extract<FuzzCase, { k: 'xml' }>): Prepared {
  const refs = [...fx.sizes.keys()];
  const ref = pick(refs, c.d)!;
  const xml = fx.xml;
  const same = (): Map<string, number | 'reject'> => new Map(refs.map((r) => [r, fx.sizes.get(r)!.size]));
  const [s, t] = findVirtualSize(xml, ref)!;
  let out: string | Buffer = xml;
  let oracle: Oracle = { type: 'sizes', sizes: same() };
  switch (c.how) {
    case 'size': {
      out = xml.slice(0, s) + c.v + xml.slice(t);
      const sizes = same();
      sizes.set(ref, parseSizeText(c.v));
      oracle = { type: 'sizes', sizes };
      break;
    }
    case 'doctype':
      out = `<!DOCTYPE v [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>` + xml.replace('fuzz-', '&c;');
      oracle = { type: 'reject' };
      break;
    case 'external':
      out = `<?xml version="1.0"?><!DOCTYPE v SYSTEM "file:///etc/passwd">` + xml;
      oracle = { type: 'reject' };
      break;
    case 'deep': {
      const depth = 20 + (c.p % 3000);
      const open = '<value><array><data>'.repeat(depth);
      const close = '</data></array></value>'.repeat(depth);
      out = xml.replace('<member><name>version</name>', `<member><name>junk</name>${open}${close}</member><member><name>version</name>`);
      oracle = depth > 40 ? { type: 'reject' } : oracle; // the limit is 32 levels
      break;
    }
    case 'dupId': {
      const objStart = xml.lastIndexOf('<value><struct><member><name>class</name>', s);
      const objEnd = xml.indexOf('</struct></value>', t) + '</struct></value>'.length;
      // The VDI's object ends after its snapshot struct: find the object's closing tag.
      const obj = xml.slice(objStart, closingOf(xml, objStart));
      void objEnd;
      out = xml.replace('<array><data>', `<array><data>${obj}`);
      oracle = { type: 'reject' };
      break;
    }
    case 'dropSr': {
      const at = xml.indexOf('<member><name>class</name><value>SR</value></member>');
      if (at >= 0) {
        const objStart = xml.lastIndexOf('<value><struct>', at);
        out = xml.slice(0, objStart) + xml.slice(closingOf(xml, objStart));
      }
      break;
    }
    case 'truncate':
      out = xml.slice(0, c.p % xml.length);
      break;
    case 'bom':
      out = `\uFEFF${xml}`;
      break;
    case 'comment':
      out = xml.replace('<member><name>objects</name>', '<!-- <member><name>objects</name> --><member><name>objects</name>');
      break;
    case 'pi':
      out = `<?xml version="1.0" encoding="UTF-8"?>\n${xml}`;
      break;
    case 'numericEntity':
      out = xml.slice(0, s) + `&#${xml.charCodeAt(s)};` + xml.slice(s + 1);
      break;
    case 'cdata':
      out = xml.slice(0, s) + `<![CDATA[${xml.slice(s, t)}]]>` + xml.slice(t);
      break;
    case 'refMissing':
      out = xml.split(`<value>${ref}</value>`).join('<value>Ref:424242</value>');
      // The VDI is renamed everywhere in ova.xml while its data stays under the old name in
      // the tar: rejected, unless the disk is empty (no data: a consistent rename).
      if (fx.sizes.get(ref)!.size > 0) oracle = { type: 'reject' };
      break;
    case 'garbageTail':
      out = Buffer.concat([Buffer.from(xml), Buffer.from([0xff, 0xfe, 0x00, 0x3c])]);
      break;
  }
  return wrapped(withXml(fx, out), c.wrap, oracle);
}

/** Index just past the element that starts at `start` (`<value>`…`</value>`), by tag counting. */
function closingOf(xml: string, start: number): number {
  let depth = 0;
  const re = /<(\/?)value>/g;
  re.lastIndex = start;
  for (let m = re.exec(xml); m; m = re.exec(xml)) {
    depth += m[1] ? -1 : 1;
    if (depth === 0) return m.index + m[0].length;
  }
  return xml.length;
}

// ---------------------------------------------------------------------------------------------
// Running and judging

export type Outcome =
  | { kind: 'accepted'; result: XvaReadResult; writers: Map<string, SparseWriter> }
  | { kind: 'rejected'; error: XvaError }
  | { kind: 'bad-error'; error: unknown }
  | { kind: 'hang' };

export const CASE_TIMEOUT_MS = 2000;

export async function runLibrary(p: Prepared, timeoutMs = CASE_TIMEOUT_MS): Promise<Outcome> {
  const writers = new Map<string, SparseWriter>();
  let source: InputSource | undefined;
  const work = (async (): Promise<Outcome> => {
    try {
      if (p.viaFile) {
        fs.writeFileSync(p.viaFile, p.bytes);
        source = await openInput(p.viaFile, { zstdCodec: p.zstdCodec, gzipCodec: p.gzipCodec });
      } else {
        source = p.viaOpen
          ? await openInput('-', { stdin: Readable.from([p.bytes]), zstdCodec: p.zstdCodec, gzipCodec: p.gzipCodec })
          : bufferSource(p.bytes);
      }
      const result = await readXva(source, {
        openDisk: (d) => {
          if (writers.has(d.ref)) throw new Error(`openDisk called twice for ${d.ref}`);
          const w = new SparseWriter(d.virtualSize);
          writers.set(d.ref, w);
          return w;
        },
      });
      return { kind: 'accepted', result, writers };
    } catch (error) {
      if (error instanceof XvaError && typeof error.code === 'string' && typeof error.exitCode === 'number') return { kind: 'rejected', error };
      return { kind: 'bad-error', error };
    } finally {
      await source?.close();
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'hang' }), timeoutMs);
  });
  try {
    const out = await Promise.race([work, hang]);
    if (out.kind === 'hang') void source?.close();
    return out;
  } finally {
    clearTimeout(timer);
  }
}

/** Compares an accepted disk with `expected` zero-extended/cut to `size`; '' when equal. */
function compareDisk(w: SparseWriter, expected: Buffer, size: number): string {
  if (w.virtualSize !== size) return `size ${w.virtualSize}, expected ${size}`;
  const keep = Math.min(size, expected.length);
  if (expected.subarray(keep).some((b) => b !== 0)) return `accepted although non-zero data lies past virtual_size ${size}`;
  const img = Buffer.alloc(keep);
  for (const piece of w.pieces) {
    const inside = Math.max(0, Math.min(piece.data.length, keep - piece.offset));
    if (inside > 0) piece.data.copy(img, piece.offset, 0, inside);
    if (piece.data.subarray(inside).some((b) => b !== 0)) return `non-zero bytes written past ${keep}`;
  }
  if (!img.equals(expected.subarray(0, keep))) {
    let i = 0;
    while (img[i] === expected[i]) i++;
    return `image differs at byte ${i}`;
  }
  return '';
}

/** '' when the outcome satisfies the property for this case, else why not. */
export function judge(fxs: Fixture[], c: FuzzCase, p: Prepared, out: Outcome): string {
  if (out.kind === 'hang') return `no result within ${CASE_TIMEOUT_MS} ms`;
  if (out.kind === 'bad-error') {
    const e = out.error as Error;
    return `untyped error: ${e?.stack ?? String(out.error)}`;
  }
  if (out.kind === 'rejected') {
    if (!out.error.message || /[\r\n]/.test(out.error.describe())) return `error without a one-line message: ${JSON.stringify(out.error.describe())}`;
    return '';
  }
  const fx = fxs[c.fx % fxs.length]!;
  const { result, writers } = out;
  // Writer contract, whatever the oracle.
  for (const [ref, w] of writers) {
    if (w.contractErrors.length) return `writer contract broken for ${ref}: ${w.contractErrors[0]}`;
    if (w.finished !== 1) return `writer of ${ref} finished ${w.finished} times`;
  }
  const reported = result.metadata.disks;
  if (writers.size !== reported.length) return `${reported.length} disks reported, ${writers.size} written`;
  const o = p.oracle;
  const expectExact = (images: Map<string, Buffer>): string => {
    if (reported.length !== images.size) return `accepted with ${reported.length} disks, expected ${images.size}`;
    for (const d of reported) {
      const exp = images.get(d.ref);
      if (!exp) return `unexpected disk ${d.ref}`;
      const why = compareDisk(writers.get(d.ref)!, exp, exp.length);
      if (why) return `disk ${d.ref}: ${why}`;
    }
    return '';
  };
  switch (o.type) {
    case 'reject':
      return `accepted, but the case must be rejected (warnings: ${result.warnings.join(' | ').slice(0, 300)})`;
    case 'original':
      return expectExact(fx.images);
    case 'reference': {
      const ref = referenceRead(o.tar, o.sizes);
      const why = expectExact(ref.ok ? ref.images : fx.images);
      return why ? `${why} (reference: ${ref.ok ? 'accepts' : `rejects: ${ref.why}`})` : '';
    }
    case 'sizes': {
      for (const d of reported) {
        if (o.corrupt?.has(d.ref)) return `accepted disk ${d.ref} although one of its chunks was corrupted`;
        const orig = fx.images.get(d.ref);
        if (!orig) {
          if (d.virtualSize !== 0) return `accepted a disk ${d.ref} that has no data`;
          continue;
        }
        const size = o.sizes.get(d.ref);
        if (size === 'reject') return `accepted disk ${d.ref} although its virtual_size text is invalid (got ${d.virtualSize})`;
        if (size === undefined) return `unexpected disk ${d.ref}`;
        const why = compareDisk(writers.get(d.ref)!, orig, size);
        if (why) return `disk ${d.ref}: ${why}`;
      }
      return '';
    }
  }
}
