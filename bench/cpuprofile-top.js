'use strict';
/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function, and the share
 * of (idle) = the main thread waiting for I/O or the thread pool, (garbage collector), (program).
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof bin/xva2img bench/corpus/2G-c1/xxh64.xva -q -o /tmp/prof/d.raw
 *   node bench/cpuprofile-top.js /tmp/prof/CPU.*.cpuprofile [top=15]
 */
const fs = require('node:fs');
const path = require('node:path');

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: cpuprofile-top.js <file.cpuprofile> [top]');
  process.exit(1);
}
const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map(); // node id -> µs
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i + 1] ?? 0; // delta to the next sample is this sample's duration
  self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + dt);
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const byFn = new Map();
for (const [id, us] of self) {
  const f = byId.get(id).callFrame;
  const where = f.url ? `${path.relative(process.cwd(), f.url.replace(/^file:\/\//, ''))}:${f.lineNumber + 1}` : '';
  const key = `${f.functionName || '(anonymous)'}${where ? `  ${where}` : ''}`;
  byFn.set(key, (byFn.get(key) ?? 0) + us);
}
console.log(`${path.basename(file)}: ${(total / 1e6).toFixed(2)} s sampled`);
for (const [key, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 15))) {
  console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1e3).toFixed(0).padStart(6)} ms  ${key}`);
}
