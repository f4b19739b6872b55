'use strict';
/**
 * The "manual workflow" merge step, as the usual how-tos do it after `tar -xf vm.xva`:
 * write every chunk file Ref:N/NNNNNNNN of one disk at offset NNNNNNNN × 1 MiB of the output,
 * leaving the gaps (skipped all-zero chunks) as holes, then set the length to virtual_size.
 *
 *   node bench/merge-chunks.js <extracted dir> <Ref:N> <output.raw>
 *
 * Correct for the bench corpus only: it has no zero-length keep-alive entries, so a chunk's
 * counter IS its offset in MiB (in general XAPI output the counter is not an offset). Checksum
 * files are ignored, as the how-tos do. virtual_size comes from ova.xml (a regex is enough here).
 */
const fs = require('node:fs');
const path = require('node:path');

const CHUNK = 1024 * 1024;

function main([dir, ref, out]) {
  if (!dir || !ref || !out) {
    console.error('usage: merge-chunks.js <extracted dir> <Ref:N> <output.raw>');
    process.exit(1);
  }
  const ovaXml = fs.readFileSync(path.join(dir, 'ova.xml'), 'utf8');
  // <member><name>virtual_size</name><value>N</value></member> of the VDI (one disk in the corpus)
  const m = /<name>virtual_size<\/name><value>(?:<string>)?(\d+)/.exec(ovaXml);
  if (!m) throw new Error('virtual_size not found in ova.xml');
  const virtualSize = Number(m[1]);

  const chunkDir = path.join(dir, ref);
  const chunks = fs.readdirSync(chunkDir).filter((n) => /^\d{8}$/.test(n)).sort();
  const fd = fs.openSync(out, 'w');
  const buf = Buffer.allocUnsafe(CHUNK);
  for (const name of chunks) {
    const cfd = fs.openSync(path.join(chunkDir, name), 'r');
    const n = fs.readSync(cfd, buf, 0, CHUNK, 0);
    fs.closeSync(cfd);
    let done = 0;
    while (done < n) done += fs.writeSync(fd, buf, done, n - done, Number(name) * CHUNK + done);
  }
  fs.ftruncateSync(fd, virtualSize);
  fs.closeSync(fd);
}

main(process.argv.slice(2));
