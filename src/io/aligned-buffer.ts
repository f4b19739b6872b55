/**
 * Page-aligned buffers for the kernel to read into.
 *
 * Why: a read(2)/pread(2) copies from the page cache with `copy_to_user`, and on the AMD EPYC
 * machines we measure on that copy runs about 4x slower when the destination is not 32-byte
 * aligned (1.33 GB from the page cache: 0.57 s into a misaligned buffer, 0.14 s into an aligned
 * one; `dd` is fast because it page-aligns its buffer). Node gives no alignment guarantee: a
 * `Buffer.allocUnsafeSlow(1 MiB)` comes from glibc's mmap path and sits 16 bytes past a page
 * boundary, the slow case. Copies in user space (memcpy) and write(2) are not affected.
 *
 * A WebAssembly.Memory is always allocated page-aligned, so large read buffers are carved out of
 * one, at 4 KiB boundaries. Slabs are only ever appended to, never reused: a slab is freed by the
 * garbage collector once no buffer cut from it is referenced, so callers that want reuse keep
 * their own pool (as the tar walker does). If the engine refuses a slab (address-space limits),
 * or has no WebAssembly at all (`node --jitless`), an ordinary buffer is returned: correct, only
 * slower.
 *
 * Slabs are shared memories (SharedArrayBuffer) where the engine allows it, so that the image
 * writer thread (output/writer-thread.ts) can write chunk data straight from them; otherwise
 * ordinary ones, which the thread pool writes instead.
 */

const WASM_PAGE = 64 * 1024;
const ALIGN = 4096;
/** Slab size: a handful of 1 MiB chunk buffers per WebAssembly.Memory. */
const SLAB_BYTES = 16 * 1024 * 1024;

/** A WebAssembly.Memory (the TypeScript libs we compile with do not declare WebAssembly). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
/** Undefined where the runtime has no WebAssembly (`node --jitless`): ordinary buffers then. */
const WasmMemoryCtor = (globalThis as unknown as {
  WebAssembly?: { Memory: new (d: { initial: number; maximum: number; shared?: boolean }) => WasmMemory };
}).WebAssembly?.Memory;

/** The memory behind each slab, so that WebAssembly code can work on the buffers in place. */
const memories = new WeakMap<ArrayBuffer | SharedArrayBuffer, WasmMemory>();

let slab: ArrayBuffer | SharedArrayBuffer | undefined;
let slabUsed = 0;

function newSlab(bytes: number): ArrayBuffer | SharedArrayBuffer | undefined {
  const shared = allocSharedMemory(bytes);
  if (shared) return shared.buffer;
  const pages = Math.ceil(bytes / WASM_PAGE);
  if (!WasmMemoryCtor) return undefined;
  try {
    const memory = new WasmMemoryCtor({ initial: pages, maximum: pages });
    memories.set(memory.buffer, memory);
    return memory.buffer as ArrayBuffer;
  } catch {
    return undefined;
  }
}

/** The WebAssembly memory `data` was cut from (by allocAligned or allocSharedAligned), if any. */
export function wasmMemoryOf(data: Uint8Array): WasmMemory | undefined {
  return memories.get(data.buffer);
}

/**
 * A page-aligned WebAssembly memory of `bytes` (rounded up to 64 KiB pages) that worker threads
 * can share (its buffer is a SharedArrayBuffer, and the memory itself can be posted to a
 * worker), or undefined where the engine refuses one. Registered like the slabs, so that
 * buffers cut from it are hashed in place too.
 */
export function allocSharedMemory(bytes: number): WasmMemory | undefined {
  const pages = Math.ceil(bytes / WASM_PAGE);
  if (!WasmMemoryCtor) return undefined;
  try {
    const memory = new WasmMemoryCtor({ initial: pages, maximum: pages, shared: true });
    memories.set(memory.buffer, memory);
    return memory;
  } catch {
    return undefined;
  }
}

/** An uninitialised buffer of `size` bytes whose first byte is page-aligned. */
export function allocAligned(size: number): Buffer {
  if (size <= 0) return Buffer.alloc(0);
  if (size > SLAB_BYTES / 2) {
    // Big enough to deserve its own memory.
    const own = newSlab(size);
    return own ? Buffer.from(own, 0, size) : Buffer.allocUnsafeSlow(size);
  }
  const rounded = Math.ceil(size / ALIGN) * ALIGN;
  if (!slab || slabUsed + rounded > slab.byteLength) {
    slab = newSlab(SLAB_BYTES);
    slabUsed = 0;
    if (!slab) return Buffer.allocUnsafeSlow(size);
  }
  const buf = Buffer.from(slab, slabUsed, size);
  slabUsed += rounded;
  return buf;
}
