/**
 * Child process for the "entries die young" test (test/tar/block-reader.test.ts), run as
 * `node --trace-gc-nvp promotion-probe.js <dist dir>`: reads a tar of 40 000 small entries
 * through the built blockTarReader, reading every body, so that V8 prints what each scavenge
 * allocated and promoted. Plain JavaScript over dist/: the probe must see the code as it ships.
 */
'use strict';
const path = require('node:path');
const dist = path.resolve(process.argv[2]);
const { blockTarReader } = require(path.join(dist, 'tar', 'block-reader.js'));
const { encodeTarHeader, tarEndBlocks } = require(path.join(dist, 'tar', 'header.js'));

const ENTRIES = 40000;
const BODY = Buffer.alloc(512, 0x61); // 16 bytes of body, padded to a block
const parts = [];
for (let i = 0; i < ENTRIES; i++) {
  parts.push(encodeTarHeader({ name: `Ref:1/${String(i).padStart(8, '0')}`, size: 16, dialect: 'xapi' }), BODY);
}
parts.push(tarEndBlocks());
const tar = Buffer.concat(parts);

const BLOCK = 4 * 1024 * 1024;
let at = 0;
const source = {
  size: tar.length,
  lendsBlocks: true,
  async next() {
    if (at >= tar.length) return null;
    const buf = tar.subarray(at, at + BLOCK);
    at += BLOCK;
    return { buf, lease: { hold: () => () => {} }, release: () => {} };
  },
  async close() {},
};

(async () => {
  process.stdout.write('reading\n'); // the scavenges that count start here, after the tar is built
  let n = 0;
  for await (const e of blockTarReader(source, { input: 'probe.tar' })) {
    await e.readAll();
    n++;
  }
  process.stdout.write(`entries ${n}\n`);
})();
