/**
 * XXH64 in plain JavaScript (BigInt arithmetic), for a runtime without WebAssembly (`node
 * --jitless`, or an embedder that leaves it out), where neither our module (xxh64.wat,
 * xxh64-in-place.ts) nor hash-wasm can run. Correct and much slower (docs/design/xxh64-in-place.md):
 * it only keeps checksum verification working there.
 *
 * The same steps as xxh64.wat, from the XXH64 specification (Collet, "xxHash fast digest
 * algorithm", XXH64). Every intermediate is reduced to 64 bits, as the machine's registers do.
 */
const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;
const MASK = 0xffffffffffffffffn;

/** Rotate left within 64 bits; `x` must already be below 2^64. */
function rotl(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & MASK;
}

/** acc = rotl(acc + input * P2, 31) * P1 */
function round(acc: bigint, input: bigint): bigint {
  return (rotl((acc + input * P2) & MASK, 31n) * P1) & MASK;
}

/** h = (h ^ round(0, lane)) * P1 + P4 */
function merge(h: bigint, lane: bigint): bigint {
  return (((h ^ round(0n, lane)) * P1) + P4) & MASK;
}

/** XXH64 of `data` with `seed`, as an unsigned 64-bit bigint. */
export function xxh64BigInt(data: Uint8Array, seed = 0n): bigint {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const len = data.length;
  let p = 0;
  let h: bigint;
  if (len >= 32) {
    let v1 = (seed + P1 + P2) & MASK;
    let v2 = (seed + P2) & MASK;
    let v3 = seed;
    let v4 = (seed - P1) & MASK;
    const limit = len - 32;
    do {
      v1 = round(v1, view.getBigUint64(p, true));
      v2 = round(v2, view.getBigUint64(p + 8, true));
      v3 = round(v3, view.getBigUint64(p + 16, true));
      v4 = round(v4, view.getBigUint64(p + 24, true));
      p += 32;
    } while (p <= limit);
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & MASK;
    h = merge(merge(merge(merge(h, v1), v2), v3), v4);
  } else {
    h = (seed + P5) & MASK;
  }
  h = (h + BigInt(len)) & MASK;
  for (; p + 8 <= len; p += 8) h = ((rotl(h ^ round(0n, view.getBigUint64(p, true)), 27n) * P1) + P4) & MASK;
  if (p + 4 <= len) {
    h = ((rotl(h ^ ((BigInt(view.getUint32(p, true)) * P1) & MASK), 23n) * P2) + P3) & MASK;
    p += 4;
  }
  for (; p < len; p++) h = (rotl(h ^ ((BigInt(data[p]!) * P5) & MASK), 11n) * P1) & MASK;
  h = ((h ^ (h >> 33n)) * P2) & MASK;
  h = ((h ^ (h >> 29n)) * P3) & MASK;
  return h ^ (h >> 32n);
}
