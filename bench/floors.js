'use strict';
/**
 * Floors: the least work a converter has to do, in the same runtime (Node) as xva2img.
 *
 *   node bench/floors.js inflate <file.gz>       node:zlib gunzip to a sink that discards
 *   node bench/floors.js read <file>             fs read loop, 1 MiB page-aligned buffer, nothing else
 *   node bench/floors.js xxh64 <file.xva>        XXH64 of every data entry (hash-wasm)
 *   node bench/floors.js xxh64-in-place <file.xva>   the same by our in-place XXH64, as the reader
 *   node bench/floors.js sha1 <file.xva>         SHA-1 of every data entry (node:crypto, as the reader)
 *
 * The hash floors read the XVA from the page cache with positioned reads of each entry into a
 * 1 MiB buffer and hash it (one digest per chunk, like the reader): read + hash, no tar logic
 * beyond skipping headers. They print {"bytes", "hashSeconds"} on stdout so the time spent in
 * the hash function alone can be told apart from the reads.
 */
const fs = require('node:fs');
const zlib = require('node:zlib');
const crypto = require('node:crypto');
const { Writable } = require('node:stream');
const { pipeline } = require('node:stream/promises');

const MiB = 1024 * 1024;
// Page-aligned read buffers, as xva2img uses: the kernel copies into a misaligned buffer ~4x
// slower on some CPUs (see src/io/aligned-buffer.ts), which would make the floors too high.
const { allocAligned } = require('../dist/io/aligned-buffer.js');

async function inflate(file) {
  let bytes = 0;
  const sink = new Writable({
    highWaterMark: MiB,
    write(chunk, _enc, cb) {
      bytes += chunk.length;
      cb();
    },
  });
  // Same sizes as xva2img's gzip input (1 MiB zlib output chunks, 1 MiB file reads).
  await pipeline(fs.createReadStream(file, { highWaterMark: MiB }), zlib.createGunzip({ chunkSize: MiB }), sink);
  return { bytes };
}

function read(file) {
  const fd = fs.openSync(file, 'r');
  const buf = allocAligned(MiB);
  let bytes = 0;
  for (;;) {
    const n = fs.readSync(fd, buf, 0, MiB, null);
    if (n === 0) break;
    bytes += n;
  }
  fs.closeSync(fd);
  return { bytes };
}

/** Size field of a tar header (octal, or base-256 when the top bit is set). */
function tarSize(h) {
  if (h[124] & 0x80) {
    let v = 0;
    for (let i = 125; i < 136; i++) v = v * 256 + h[i];
    return v;
  }
  return parseInt(h.toString('latin1', 124, 136).replace(/\0.*$/, '').trim() || '0', 8);
}

async function hashEntries(kind, file) {
  let hasher;
  if (kind === 'xxh64-in-place') {
    const chunkHasher = await require('../dist/xva/checksum.js').createChunkHasher('xxh64');
    hasher = (data) => {
      chunkHasher.update(data);
      return chunkHasher.digestHex();
    };
  } else if (kind === 'xxh64') {
    const { createXXHash64 } = require('hash-wasm');
    const wasm = await createXXHash64(0, 0);
    hasher = (data) => {
      wasm.init();
      wasm.update(data);
      return wasm.digest('hex');
    };
  } else {
    hasher = (data) => crypto.createHash('sha1').update(data).digest('hex');
  }
  const fd = fs.openSync(file, 'r');
  const header = Buffer.alloc(512);
  let buf = allocAligned(MiB);
  let pos = 0;
  let bytes = 0;
  let hashNs = 0n;
  for (;;) {
    if (fs.readSync(fd, header, 0, 512, pos) < 512 || header.every((b) => b === 0)) break;
    const name = header.toString('latin1', 0, 100).replace(/\0.*$/, '');
    const size = tarSize(header);
    pos += 512;
    if (/^Ref:\d+\/\d+$/.test(name) && size > 0) {
      if (size > buf.length) buf = allocAligned(size);
      const view = buf.subarray(0, size);
      let got = 0;
      while (got < size) got += fs.readSync(fd, view, got, size - got, pos + got);
      const t0 = process.hrtime.bigint();
      hasher(view);
      hashNs += process.hrtime.bigint() - t0;
      bytes += size;
    }
    pos += Math.ceil(size / 512) * 512;
  }
  fs.closeSync(fd);
  return { bytes, hashSeconds: Number(hashNs) / 1e9 };
}

async function main([mode, file]) {
  let result;
  if (mode === 'inflate') result = await inflate(file);
  else if (mode === 'read') result = read(file);
  else if (mode === 'xxh64' || mode === 'xxh64-in-place' || mode === 'sha1') result = await hashEntries(mode, file);
  else {
    console.error('usage: floors.js inflate|read|xxh64|xxh64-in-place|sha1 <file>');
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main(process.argv.slice(2)).catch((err) => {
  console.error(err);
  process.exit(1);
});
