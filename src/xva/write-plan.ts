/**
 * What the writer writes of each disk (docs/xva-format.md §2.2, §4): the size declared in ova.xml,
 * the bytes its chunks cover and how they are read from the disk's DiskReader, where zero-length
 * keep-alive chunks go and which checksum entries a fixture leaves out.
 */
import type { DiskExtent, DiskReader } from '../io/disk';
import { zeros } from '../io/zero';
import { TAR_BLOCK } from '../tar/header';
import { XVA_CHUNK_SIZE } from './format';
import type { OvaXmlDiskSpec } from './metadata/spec';
import type { DiskSelector, XvaProducerQuirks } from './producer-quirks';

export interface XvaDiskInput extends Omit<OvaXmlDiskSpec, 'virtualSize'> {
  /** The disk's bytes, read once front to back (so a sequential reader will do). */
  source: DiskReader;
  /** Size to declare; default `source.virtualSize` (the source is zero-extended if larger). */
  virtualSize?: number;
}

export interface KeepAliveSpec {
  disk: DiskSelector;
  /** Chunk index (offset / 1 MiB) before which the empty chunk(s) are written. */
  beforeChunk: number;
  /** How many empty chunks; default 1. */
  count?: number;
}

/** Zero-length keep-alive chunks (XAPI, §4.3), as a list or `(diskRef, chunkIndex) => count`. */
export type KeepAlives = KeepAliveSpec[] | ((diskRef: string, chunkIndex: number) => number);

export interface DiskPlan {
  input: XvaDiskInput;
  index: number;
  /** virtual_size for ova.xml. */
  declaredSize: number;
  /** Bytes covered by chunks: [0, coveredSize). */
  coveredSize: number;
  /** Chunk positions in [0, coveredSize), 1 MiB each but the last. */
  chunkCount: number;
  /** Reads chunk positions in ascending order (chunkReader). */
  readChunk: ChunkReader;
}

/** Reads [offset, offset + length) of a disk; calls ascend and do not overlap. */
export type ChunkReader = (offset: number, length: number) => Promise<Buffer>;

/**
 * How the writer reads a disk's chunks, in ascending order: block status first, so a chunk
 * outside the reader's allocatedExtents() is zeros without a read (`pack` never reads what a
 * qcow2 or VMDK image does not allocate, docs/xva-format.md §4.2); bytes past the reader's
 * virtual size (a size rounded up to 512, a padded last chunk) are zeros. The extents are walked
 * once, alongside the reads.
 */
export function chunkReader(reader: DiskReader): ChunkReader {
  const size = reader.virtualSize;
  const extents = reader.allocatedExtents()[Symbol.asyncIterator]();
  let current: DiskExtent | undefined;
  let exhausted = false;
  const advance = async (offset: number): Promise<void> => {
    while (!exhausted && (!current || current.offset + current.length <= offset)) {
      const r = await extents.next();
      if (r.done) {
        exhausted = true;
        current = undefined;
      } else {
        current = r.value;
      }
    }
  };
  return async (offset, length) => {
    const inside = Math.max(0, Math.min(offset + length, size) - offset);
    if (inside === 0) return Buffer.alloc(length);
    await advance(offset);
    const hole = !current || current.offset >= offset + inside;
    if (inside === length) return hole ? zeros(length) : reader.read(offset, length);
    const out = Buffer.alloc(length);
    if (!hole) await reader.readInto(out.subarray(0, inside), offset);
    return out;
  };
}

function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

export function planDisk(input: XvaDiskInput, index: number, quirks: XvaProducerQuirks): DiskPlan {
  const requested = input.virtualSize ?? input.source.virtualSize;
  if (!Number.isSafeInteger(requested) || requested < 0) throw new RangeError(`disk ${input.ref}: invalid virtual size ${requested}`);
  if (quirks.padLastChunk && quirks.dropPartialTail) throw new RangeError('padLastChunk and dropPartialTail exclude each other');
  let declared = quirks.allowUnalignedSize ? requested : roundUp(requested, TAR_BLOCK);
  let covered = declared;
  if (quirks.padLastChunk) {
    declared = roundUp(requested, XVA_CHUNK_SIZE);
    covered = declared;
  } else if (quirks.dropPartialTail) {
    covered = Math.floor(declared / XVA_CHUNK_SIZE) * XVA_CHUNK_SIZE;
  }
  return {
    input,
    index,
    declaredSize: declared,
    coveredSize: covered,
    chunkCount: Math.ceil(covered / XVA_CHUNK_SIZE),
    readChunk: chunkReader(input.source),
  };
}

function selects(sel: DiskSelector, plan: DiskPlan): boolean {
  return typeof sel === 'number' ? sel === plan.index : sel === plan.input.ref;
}

/** How many keep-alive chunks go before chunk `chunk` of a disk; a list is checked against the plans first. */
export function keepAliveCounter(spec: KeepAlives | undefined, plans: DiskPlan[]): (plan: DiskPlan, chunk: number) => number {
  if (spec === undefined) return () => 0;
  if (typeof spec === 'function') return (plan, chunk) => spec(plan.input.ref, chunk);
  for (const k of spec) {
    const plan = plans.find((p) => selects(k.disk, p));
    if (!plan) throw new RangeError(`keepAlives: no disk ${String(k.disk)}`);
    if (!Number.isInteger(k.beforeChunk) || k.beforeChunk < 0 || k.beforeChunk >= plan.chunkCount) {
      throw new RangeError(`keepAlives: disk ${plan.input.ref} has chunks 0..${plan.chunkCount - 1}, cannot insert before ${k.beforeChunk}`);
    }
  }
  return (plan, chunk) => spec.reduce((n, k) => (k.beforeChunk === chunk && selects(k.disk, plan) ? n + (k.count ?? 1) : n), 0);
}

/** Whether the checksum entry of a data entry is left out (XvaProducerQuirks.omitChecksumFor). */
export function omitChecksumPredicate(spec: XvaProducerQuirks['omitChecksumFor'], plans: DiskPlan[]): (plan: DiskPlan, counter: number) => boolean {
  if (spec === undefined) return () => false;
  if (typeof spec === 'function') return (plan, counter) => spec(plan.input.ref, counter);
  for (const o of spec) if (!plans.some((p) => selects(o.disk, p))) throw new RangeError(`omitChecksumFor: no disk ${String(o.disk)}`);
  return (plan, counter) => spec.some((o) => o.counter === counter && selects(o.disk, plan));
}
