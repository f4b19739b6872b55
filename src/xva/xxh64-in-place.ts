/**
 * XXH64 of a buffer that lives in one of our WebAssembly memories, hashed where it lies.
 *
 * Why: hash-wasm (the XXH64 library we use where this cannot run) hashes inside its own
 * WebAssembly memory, so every chunk is first copied there — 1.3 GB of memcpy on the main thread
 * for a 1.3 GB XVA, about as much time as the hash itself. Chunk data is read into page-aligned
 * buffers cut from WebAssembly memories anyway (io/aligned-buffer.ts); a module that imports such a
 * memory can hash the bytes in place. The module is one function, assembled below from the
 * XXH64 specification (Collet, "xxHash fast digest algorithm", XXH64): 32-byte stripes into four
 * lanes, then the 8-, 4- and 1-byte tails, then the avalanche. Buffers from anywhere else
 * return undefined; the caller copies them into a buffer of its own memory first (checksum.ts).
 *
 *   xxh64(ptr: i32, len: i32, seed: i64) -> i64     (imports memory "m"."mem")
 */
import { wasmMemoryOf, type WasmMemory } from '../io/aligned-buffer';

const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;

// --- a minimal assembler: just what this one function needs ------------------------------------

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 of a 64-bit constant (given as an unsigned bigint). */
function sleb64(v: bigint): number[] {
  let n = BigInt.asIntN(64, v);
  const out: number[] = [];
  for (;;) {
    const b = Number(n & 0x7fn);
    n >>= 7n;
    const done = (n === 0n && (b & 0x40) === 0) || (n === -1n && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return out;
  }
}

const I32 = 0x7f;
const I64 = 0x7e;
const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  if: [0x04, 0x40],
  else: [0x05],
  end: [0x0b],
  br: (depth: number) => [0x0c, ...uleb(depth)],
  brIf: (depth: number) => [0x0d, ...uleb(depth)],
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  i32: (v: number) => [0x41, ...uleb(v)], // small non-negative constants only
  i64: (v: bigint) => [0x42, ...sleb64(v)],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32LtU: [0x49],
  i32GtU: [0x4b],
  i32LeU: [0x4d],
  i32GeU: [0x4f],
  i64Add: [0x7c],
  i64Sub: [0x7d],
  i64Mul: [0x7e],
  i64Xor: [0x85],
  i64ShrU: [0x88],
  i64Rotl: [0x89],
  i64ExtendI32U: [0xad],
  // memarg: alignment hint 0 (the data is not aligned to its width), then the offset
  i64Load: (offset: number) => [0x29, 0x00, ...uleb(offset)],
  i64Load32U: [0x35, 0x00, 0x00],
  i64Load8U: [0x31, 0x00, 0x00],
};

// Locals: parameters first, then declared locals.
const PTR = 0;
const LEN = 1;
const SEED = 2;
const END = 3; // i32
const LIMIT = 4; // i32
const V = [5, 6, 7, 8]; // i64 lanes
const H = 9; // i64
const K = 10; // i64

/** acc = rotl(acc + input * P2, 31) * P1, with `input` already pushed by `load`. */
function round(acc: number, load: number[]): number[] {
  return [...op.get(acc), ...load, ...op.i64(P2), ...op.i64Mul, ...op.i64Add, ...op.i64(31n), ...op.i64Rotl, ...op.i64(P1), ...op.i64Mul, ...op.set(acc)];
}

/** h = (h ^ round(0, lane)) * P1 + P4 */
function merge(lane: number): number[] {
  return [
    ...op.get(H),
    ...op.get(lane), ...op.i64(P2), ...op.i64Mul, ...op.i64(31n), ...op.i64Rotl, ...op.i64(P1), ...op.i64Mul,
    ...op.i64Xor, ...op.i64(P1), ...op.i64Mul, ...op.i64(P4), ...op.i64Add, ...op.set(H),
  ]; // prettier-ignore
}

function body(): number[] {
  const ptrPlus = (n: number): number[] => [...op.get(PTR), ...op.i32(n), ...op.i32Add];
  return [
    // end = ptr + len
    ...op.get(PTR), ...op.get(LEN), ...op.i32Add, ...op.set(END),
    // if (len >= 32) { four lanes over 32-byte stripes } else h = seed + P5
    ...op.get(LEN), ...op.i32(32), ...op.i32GeU,
    ...op.if,
      ...op.get(END), ...op.i32(32), ...op.i32Sub, ...op.set(LIMIT),
      ...op.get(SEED), ...op.i64(P1), ...op.i64Add, ...op.i64(P2), ...op.i64Add, ...op.set(V[0]),
      ...op.get(SEED), ...op.i64(P2), ...op.i64Add, ...op.set(V[1]),
      ...op.get(SEED), ...op.set(V[2]),
      ...op.get(SEED), ...op.i64(P1), ...op.i64Sub, ...op.set(V[3]),
      ...op.loop,
        ...round(V[0], [...op.get(PTR), ...op.i64Load(0)]),
        ...round(V[1], [...op.get(PTR), ...op.i64Load(8)]),
        ...round(V[2], [...op.get(PTR), ...op.i64Load(16)]),
        ...round(V[3], [...op.get(PTR), ...op.i64Load(24)]),
        ...ptrPlus(32), ...op.set(PTR),
        ...op.get(PTR), ...op.get(LIMIT), ...op.i32LeU, ...op.brIf(0),
      ...op.end,
      ...op.get(V[0]), ...op.i64(1n), ...op.i64Rotl,
      ...op.get(V[1]), ...op.i64(7n), ...op.i64Rotl, ...op.i64Add,
      ...op.get(V[2]), ...op.i64(12n), ...op.i64Rotl, ...op.i64Add,
      ...op.get(V[3]), ...op.i64(18n), ...op.i64Rotl, ...op.i64Add,
      ...op.set(H),
      ...merge(V[0]), ...merge(V[1]), ...merge(V[2]), ...merge(V[3]),
    ...op.else,
      ...op.get(SEED), ...op.i64(P5), ...op.i64Add, ...op.set(H),
    ...op.end,
    // h += len
    ...op.get(H), ...op.get(LEN), ...op.i64ExtendI32U, ...op.i64Add, ...op.set(H),
    // while (ptr + 8 <= end) { h = rotl(h ^ round(0, load64), 27) * P1 + P4; ptr += 8 }
    ...op.block, ...op.loop,
      ...ptrPlus(8), ...op.get(END), ...op.i32GtU, ...op.brIf(1),
      ...op.get(PTR), ...op.i64Load(0), ...op.i64(P2), ...op.i64Mul, ...op.i64(31n), ...op.i64Rotl, ...op.i64(P1), ...op.i64Mul, ...op.set(K),
      ...op.get(H), ...op.get(K), ...op.i64Xor, ...op.i64(27n), ...op.i64Rotl, ...op.i64(P1), ...op.i64Mul, ...op.i64(P4), ...op.i64Add, ...op.set(H),
      ...ptrPlus(8), ...op.set(PTR),
      ...op.br(0),
    ...op.end, ...op.end,
    // if (ptr + 4 <= end) { h = rotl(h ^ (load32 * P1), 23) * P2 + P3; ptr += 4 }
    ...ptrPlus(4), ...op.get(END), ...op.i32LeU,
    ...op.if,
      ...op.get(H), ...op.get(PTR), ...op.i64Load32U, ...op.i64(P1), ...op.i64Mul, ...op.i64Xor,
      ...op.i64(23n), ...op.i64Rotl, ...op.i64(P2), ...op.i64Mul, ...op.i64(P3), ...op.i64Add, ...op.set(H),
      ...ptrPlus(4), ...op.set(PTR),
    ...op.end,
    // while (ptr < end) { h = rotl(h ^ (byte * P5), 11) * P1; ptr++ }
    ...op.block, ...op.loop,
      ...op.get(PTR), ...op.get(END), ...op.i32GeU, ...op.brIf(1),
      ...op.get(H), ...op.get(PTR), ...op.i64Load8U, ...op.i64(P5), ...op.i64Mul, ...op.i64Xor,
      ...op.i64(11n), ...op.i64Rotl, ...op.i64(P1), ...op.i64Mul, ...op.set(H),
      ...ptrPlus(1), ...op.set(PTR),
      ...op.br(0),
    ...op.end, ...op.end,
    // avalanche
    ...op.get(H), ...op.get(H), ...op.i64(33n), ...op.i64ShrU, ...op.i64Xor, ...op.i64(P2), ...op.i64Mul, ...op.set(H),
    ...op.get(H), ...op.get(H), ...op.i64(29n), ...op.i64ShrU, ...op.i64Xor, ...op.i64(P3), ...op.i64Mul, ...op.set(H),
    ...op.get(H), ...op.get(H), ...op.i64(32n), ...op.i64ShrU, ...op.i64Xor,
    ...op.end,
  ]; // prettier-ignore
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function name(s: string): number[] {
  return [...uleb(s.length), ...Buffer.from(s, 'latin1')];
}

/** Memory import limits: any unshared memory of at least one page, or any shared one up to 4 GiB. */
const UNSHARED_MEMORY = [0x00, ...uleb(1)];
const SHARED_MEMORY = [0x03, ...uleb(1), ...uleb(65536)];

/** The module's bytes; `shared` for the variant that imports a shared memory (decoder threads' rings). */
export function xxh64ModuleBytes(shared = false): Uint8Array {
  const code = [...uleb(2), ...uleb(2), I32, ...uleb(6), I64, ...body()]; // locals: 2 x i32, 6 x i64
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [...uleb(1), 0x60, ...uleb(3), I32, I32, I64, ...uleb(1), I64]),
    ...section(2, [...uleb(1), ...name('m'), ...name('mem'), 0x02, ...(shared ? SHARED_MEMORY : UNSHARED_MEMORY)]),
    ...section(3, [...uleb(1), ...uleb(0)]),
    ...section(7, [...uleb(1), ...name('xxh64'), 0x00, ...uleb(0)]),
    ...section(10, [...uleb(1), ...uleb(code.length), ...code]),
  ]); // prettier-ignore
}

// --- instances, one per memory ------------------------------------------------------------------

type Xxh64Fn = (ptr: number, len: number, seed: bigint) => bigint;
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: { xxh64: Xxh64Fn } };
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Compiled modules, [unshared, shared]; null where WebAssembly (or shared memory) is missing. */
const compiled: Array<object | null | undefined> = [undefined, undefined];
const instances = new WeakMap<WasmMemory, Xxh64Fn>();

function functionFor(memory: WasmMemory): Xxh64Fn | undefined {
  let fn = instances.get(memory);
  if (fn) return fn;
  // (Not instanceof: a test sandbox's SharedArrayBuffer is another realm's.)
  const shared = Object.prototype.toString.call(memory.buffer) === '[object SharedArrayBuffer]' ? 1 : 0;
  if (compiled[shared] === undefined) {
    try {
      compiled[shared] = new Wasm.Module(xxh64ModuleBytes(shared === 1));
    } catch {
      compiled[shared] = null; // no WebAssembly here: callers fall back
    }
  }
  const module = compiled[shared];
  if (!module) return undefined;
  fn = new Wasm.Instance(module, { m: { mem: memory } }).exports.xxh64;
  instances.set(memory, fn);
  return fn;
}

/**
 * XXH64 (seed 0) of `data` as an unsigned 64-bit bigint, when `data` lies in one of our
 * WebAssembly memories; undefined otherwise (hash it some other way).
 */
export function xxh64InPlace(data: Uint8Array): bigint | undefined {
  const memory = wasmMemoryOf(data);
  if (!memory) return undefined;
  const fn = functionFor(memory);
  if (!fn) return undefined;
  return BigInt.asUintN(64, fn(data.byteOffset, data.length, 0n));
}
