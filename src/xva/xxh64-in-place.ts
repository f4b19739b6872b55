/**
 * XXH64 of a buffer that lives in one of our WebAssembly memories, hashed where it lies.
 *
 * Why: hash-wasm (the XXH64 library we use where this cannot run) hashes inside its own
 * WebAssembly memory, so every chunk is first copied there — 1.3 GB of memcpy on the main thread
 * for a 1.3 GB XVA, about as much time as the hash itself (docs/design/xxh64-in-place.md,
 * `node bench/xxh64.js`). Chunk data is read into page-aligned buffers cut from WebAssembly
 * memories anyway (io/aligned-buffer.ts); a module that imports such a memory can hash the bytes
 * in place. The module is one function, written in WebAssembly text (xxh64.wat) and compiled by
 * the build (scripts/build-wasm.js). Buffers from anywhere else, or a runtime without
 * WebAssembly, return undefined; the caller hashes some other way (checksum.ts).
 *
 *   xxh64(ptr: i32, len: i32, seed: i64) -> i64     (imports memory "m"."mem")
 */
import { wasmMemoryOf, type WasmMemory } from '../io/aligned-buffer';
import { XXH64_SHARED_WASM, XXH64_WASM } from './xxh64-wasm.generated';

/** The module's bytes; `shared` for the variant that imports a shared memory (decoder threads' rings). */
export function xxh64ModuleBytes(shared = false): Uint8Array {
  return Buffer.from(shared ? XXH64_SHARED_WASM : XXH64_WASM, 'base64');
}

// --- instances, one per memory ------------------------------------------------------------------

type Xxh64Fn = (ptr: number, len: number, seed: bigint) => bigint;
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: { xxh64: Xxh64Fn } };
}
/** Undefined where the runtime has no WebAssembly (`node --jitless`). */
const Wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

/** Compiled modules, [unshared, shared]; null where WebAssembly (or shared memory) is missing. */
const compiled: Array<object | null | undefined> = [undefined, undefined];
const instances = new WeakMap<WasmMemory, Xxh64Fn>();

/** The compiled module, or null where WebAssembly (or a shared memory import) is refused. */
function compile(shared: boolean): object | null {
  if (!Wasm) return null; // no memories of ours can exist then either (io/aligned-buffer.ts)
  try {
    return new Wasm.Module(xxh64ModuleBytes(shared));
  } catch {
    return null; // callers fall back
  }
}

function functionFor(memory: WasmMemory): Xxh64Fn | undefined {
  let fn = instances.get(memory);
  if (fn) return fn;
  // (Not instanceof: a test sandbox's SharedArrayBuffer is another realm's.)
  const shared = Object.prototype.toString.call(memory.buffer) === '[object SharedArrayBuffer]' ? 1 : 0;
  if (compiled[shared] === undefined) compiled[shared] = compile(shared === 1);
  const module = compiled[shared];
  if (!module || !Wasm) return undefined;
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
