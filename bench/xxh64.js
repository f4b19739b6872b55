'use strict';
/**
 * Does our own XXH64 WebAssembly (src/xva/xxh64-in-place.ts) pay against hash-wasm?
 * (docs/design/xxh64-in-place.md keeps the numbers and the decision.)
 *
 *   npm run build && node bench/xxh64.js [--gib 2] [--rounds 7]
 *
 * Hashes `--gib` GiB as 1 MiB chunks (the XVA chunk size, docs/xva-format.md §5), one digest per
 * chunk as the reader makes them, from the same page-aligned 64 MiB buffer of random data (cut
 * from one of our WebAssembly memories, as the reader's chunk buffers are):
 *
 *   in-place     createChunkHasher('xxh64'): each chunk hashed where it lies, no copy
 *   hash-wasm    createXXHash64: init, update (copies the chunk into hash-wasm's memory), digest
 *   gathered     createChunkHasher('xxh64') fed from an ordinary Buffer (the XVA writer's case):
 *                one copy into its scratch memory, then the hash
 *   copy         Buffer.copy of every chunk into one 1 MiB buffer, no hash (the copy's share)
 *
 * Rounds run every case once, in an order that rotates per round (a noisy host then slows every
 * case alike); one warm-up round first. The digests of every chunk are checked equal once.
 * Prints min / median / max seconds and MB/s (10^6 bytes per second) per case, and the median of
 * the per-round ratios hash-wasm / in-place.
 */
const crypto = require('node:crypto');
const { allocAligned } = require('../dist/io/aligned-buffer.js');
const { createChunkHasher } = require('../dist/xva/checksum.js');
const { createXXHash64 } = require('hash-wasm');

const MiB = 1024 * 1024;
const BUFFER_CHUNKS = 64;

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const gib = option('gib', 2);
  const rounds = option('rounds', 7);
  const chunks = Math.round(gib * 1024);

  const aligned = allocAligned(BUFFER_CHUNKS * MiB);
  crypto.randomFillSync(aligned);
  const ordinary = Buffer.from(aligned); // same bytes, in an ordinary (non-WebAssembly) buffer
  const chunkOf = (buf, i) => buf.subarray((i % BUFFER_CHUNKS) * MiB, ((i % BUFFER_CHUNKS) + 1) * MiB);

  const inPlace = await createChunkHasher('xxh64');
  const hashWasm = await createXXHash64(0, 0);
  const sink = Buffer.allocUnsafe(MiB);
  let keep = 0; // a digest character per chunk, so that no work can be optimised away

  const cases = {
    'in-place': () => {
      for (let i = 0; i < chunks; i++) {
        inPlace.update(chunkOf(aligned, i));
        keep += inPlace.digestHex().charCodeAt(0);
      }
    },
    'hash-wasm': () => {
      for (let i = 0; i < chunks; i++) {
        hashWasm.init();
        hashWasm.update(chunkOf(aligned, i));
        keep += hashWasm.digest('hex').charCodeAt(0);
      }
    },
    gathered: () => {
      for (let i = 0; i < chunks; i++) {
        inPlace.update(chunkOf(ordinary, i));
        keep += inPlace.digestHex().charCodeAt(0);
      }
    },
    copy: () => {
      for (let i = 0; i < chunks; i++) keep += chunkOf(aligned, i).copy(sink);
    },
  };
  const names = Object.keys(cases);

  // Same digests, chunk for chunk, before anything is timed.
  for (let i = 0; i < BUFFER_CHUNKS; i++) {
    inPlace.update(chunkOf(aligned, i));
    const ours = inPlace.digestHex();
    hashWasm.init();
    hashWasm.update(chunkOf(aligned, i));
    const theirs = hashWasm.digest('hex').toUpperCase();
    inPlace.update(chunkOf(ordinary, i));
    const gathered = inPlace.digestHex();
    if (ours !== theirs || gathered !== theirs) throw new Error(`chunk ${i}: in place ${ours}, gathered ${gathered}, hash-wasm ${theirs}`);
  }

  const times = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = -1; r < rounds; r++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(k + Math.max(r, 0)) % names.length];
      const t0 = process.hrtime.bigint();
      cases[name]();
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      if (r >= 0) times[name].push(s);
    }
  }

  const bytes = chunks * MiB;
  const mbs = (s) => (bytes / s / 1e6).toFixed(0);
  console.log(`XXH64 of ${chunks} chunks of 1 MiB (${(bytes / 1e9).toFixed(2)} GB), ${rounds} rounds, Node ${process.version}`);
  console.log(`${'case'.padEnd(10)} ${'min s'.padStart(7)} ${'median s'.padStart(9)} ${'max s'.padStart(7)} ${'MB/s (median)'.padStart(14)} ${'MB/s range'.padStart(13)}`);
  for (const n of names) {
    const t = times[n];
    const lo = Math.min(...t);
    const hi = Math.max(...t);
    console.log(`${n.padEnd(10)} ${lo.toFixed(3).padStart(7)} ${median(t).toFixed(3).padStart(9)} ${hi.toFixed(3).padStart(7)} ${mbs(median(t)).padStart(14)} ${`${mbs(hi)}-${mbs(lo)}`.padStart(13)}`);
  }
  const ratios = times['in-place'].map((t, i) => times['hash-wasm'][i] / t);
  console.log(`hash-wasm / in-place, per round: median ${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`);
  if (keep === 0) console.log('');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
