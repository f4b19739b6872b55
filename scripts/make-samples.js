#!/usr/bin/env node
/**
 * (Re)generates samples/: small demo XVAs written by the project's own XVA writer, plus
 * samples/README.md with the expected raw outputs and their sha256.
 *
 *   npm run build && node scripts/make-samples.js
 *
 * Needs mke2fs and debugfs (e2fsprogs) for the ext4 sample. Everything is deterministic:
 * fixed uuids, dates, hash seed and inode times, so re-running gives identical files (for the
 * zstd sample: with the same zstd version).
 */
'use strict';

const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');
if (!fs.existsSync(path.join(dist, 'xva', 'writer.js'))) {
  console.error('make-samples: dist/ is missing; run `npm run build` first');
  process.exit(1);
}
const { writeXvaFile } = require(path.join(dist, 'xva', 'writer.js'));
const { bufferSource } = require(path.join(dist, 'xva', 'disk-sources.js'));
const { RawReader } = require(path.join(dist, 'image', 'raw', 'reader.js'));

const MiB = 1024 * 1024;
const KiB = 1024;
/** 2026-01-01T00:00:00Z: every timestamp in the samples. */
const EPOCH = 1767225600;
const DATE = '2026-01-01';
const outDir = path.join(root, 'samples');

/** Deterministic uuids: sha256 of a label, shaped as version-4. */
function uuidFrom(label) {
  const b = crypto.createHash('sha256').update(label).digest().subarray(0, 16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function uuidGen(prefix) {
  let n = 0;
  return () => uuidFrom(`${prefix}/${n++}`);
}

/** Pseudo-random bytes from a seed (sha256 in counter mode: stable across platforms). */
function seededBytes(length, seed) {
  const out = Buffer.alloc(length);
  for (let off = 0, i = 0; off < length; off += 32, i++) {
    crypto.createHash('sha256').update(`${seed}:${i}`).digest().copy(out, off);
  }
  return out;
}

/** Repeats numbered text lines over `length` bytes (compresses well, easy to eyeball). */
function textBlock(length, label) {
  let s = '';
  for (let i = 0; s.length < length; i++) s += `${label} line ${String(i).padStart(6, '0')}: the quick brown fox jumps over the lazy dog\n`;
  return Buffer.from(s.slice(0, length), 'latin1');
}

function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

const common = { version: { date: DATE, hostname: 'xva2img-samples' } };
const fixedTimes = { ovaXmlMtime: EPOCH, mtime: 0 };

// ---------------------------------------------------------------------------------------------
// (a) demo-ext4.xva: a real ext4 filesystem, 16 MiB with holes, XXH64, uncompressed

function makeExt4Image(work) {
  const tree = path.join(work, 'rootfs');
  const files = {
    'README.txt': 'This disk was made by xva2img scripts/make-samples.js.\nConvert the XVA and mount the raw image read-only to look around.\n',
    'etc/hostname': 'demo-ext4\n',
    'etc/os-release': 'NAME="xva2img demo"\nID=demo\nVERSION_ID=1\n',
    'home/demo/hello.txt': 'Hello from inside an XVA.\n',
    'home/demo/numbers.txt': textBlock(300 * KiB, 'numbers').toString('latin1'),
  };
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(tree, name)), { recursive: true });
    fs.writeFileSync(path.join(tree, name), text);
  }
  const paths = ['/', ...listTree(tree)];
  for (const p of paths) fs.utimesSync(path.join(tree, p), EPOCH, EPOCH);

  const img = path.join(work, 'ext4.img');
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 16 * MiB);
  const env = { ...process.env, E2FSPROGS_FAKE_TIME: String(EPOCH) };
  // No journal keeps the sample at two chunks; 4 KiB blocks give one block group (no backups).
  execFileSync('mke2fs', [
    '-q', '-F', '-t', 'ext4', '-b', '4096', '-N', '64', '-O', '^has_journal', '-L', 'demo',
    '-U', uuidFrom('demo-ext4/fs'),
    '-E', `hash_seed=${uuidFrom('demo-ext4/hash')},root_owner=0:0`,
    '-d', tree, img,
  ], { env, stdio: ['ignore', 'ignore', 'inherit'] });

  // mke2fs -d copies ctime (and atime, owner) from the source files, which we cannot fix
  // beforehand; rewrite them so the image is byte-for-byte reproducible.
  const cmds = [];
  for (const p of paths) {
    for (const [field, value] of [['uid', '0'], ['gid', '0'], ['atime', '20260101000000'], ['ctime', '20260101000000'], ['mtime', '20260101000000'],
      ['crtime', '20260101000000'], ['atime_extra', '0'], ['ctime_extra', '0'], ['mtime_extra', '0'], ['crtime_extra', '0']]) {
      cmds.push(`sif ${p} ${field} ${value}`);
    }
  }
  const cmdFile = path.join(work, 'fix.debugfs');
  fs.writeFileSync(cmdFile, `${cmds.join('\n')}\n`);
  execFileSync('debugfs', ['-w', '-f', cmdFile, img], { env, stdio: ['ignore', 'ignore', 'ignore'] });
  try {
    execFileSync('e2fsck', ['-fn', img], { stdio: 'ignore' });
  } catch {
    throw new Error('make-samples: e2fsck reports problems in the generated ext4 image');
  }
  return img;
}

function listTree(dir, rel = '') {
  const out = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = `${rel}/${e.name}`;
    out.push(p);
    if (e.isDirectory()) out.push(...listTree(dir, p));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  fs.mkdirSync(outDir, { recursive: true });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'xva2img-samples-'));
  const samples = [];
  try {
    // (a)
    const img = makeExt4Image(work);
    const ext4 = fs.readFileSync(img);
    const source = await RawReader.open(img);
    const aSummary = await writeXvaFile(
      {
        ...common,
        vm: { name: 'demo-ext4', description: 'xva2img sample: one ext4 disk', vcpus: 1, memoryBytes: 512 * MiB, firmware: 'bios' },
        disks: [{ ref: 'Ref:7', name: 'demo-ext4 root', userdevice: 0, bootable: true, source, uuid: uuidFrom('demo-ext4/vdi') }],
        vifs: [{ device: 0, mac: 'b2:1f:00:00:00:01', networkName: 'Pool-wide network associated with eth0', bridge: 'xenbr0' }],
      },
      path.join(outDir, 'demo-ext4.xva'),
      { ...fixedTimes, uuidGen: uuidGen('demo-ext4'), checksum: 'xxh64', tarDialect: 'xapi' },
    );
    await source.close();
    samples.push({
      file: 'demo-ext4.xva',
      vm: 'demo-ext4',
      what: 'One bootable 16 MiB disk (`Ref:7`) holding a real ext4 filesystem (label `demo`, no journal) made with `mke2fs -d` from a few text files (`/README.txt`, `/etc/hostname`, `/etc/os-release`, `/home/demo/hello.txt`, `/home/demo/numbers.txt`). Uncompressed, XXH64 (`.xxhash`), XAPI tar dialect. Only chunk 0 and the (all-zero) last chunk 15 are present: chunks 1-14 are holes. One VIF.',
      summary: aSummary,
      outputs: [{ name: 'demo-ext4-0.raw', data: ext4 }],
    });

    // (b)
    const boot = Buffer.alloc(4 * MiB);
    textBlock(48 * KiB, 'disk0 boot').copy(boot, 0);
    boot.writeUInt16LE(0xaa55, 510); // looks like an MBR signature, for fun
    seededBytes(64 * KiB, 'two-disks/random').copy(boot, 2 * MiB);
    textBlock(8 * KiB, 'disk0 tail').copy(boot, 4 * MiB - 8 * KiB);
    const dataSize = 3 * MiB + 512 * KiB; // not a multiple of 1 MiB: the last chunk is 512 KiB
    const data = Buffer.alloc(dataSize);
    textBlock(16 * KiB, 'disk1 head').copy(data, 0);
    textBlock(4 * KiB, 'disk1 end').copy(data, dataSize - 4 * KiB);
    const bSummary = await writeXvaFile(
      {
        ...common,
        vm: { name: 'demo-two-disks', description: 'xva2img sample: two disks, SHA-1, gzip', vcpus: 2, memoryBytes: 1024 * MiB, firmware: 'uefi' },
        disks: [
          { ref: 'Ref:998', name: 'system', userdevice: 0, bootable: true, source: bufferSource(boot), uuid: uuidFrom('two/vdi0') },
          { ref: 'Ref:1003', name: 'data', userdevice: 1, bootable: false, source: bufferSource(data), uuid: uuidFrom('two/vdi1') },
        ],
        cdroms: [{ userdevice: 3 }],
      },
      path.join(outDir, 'demo-two-disks.xva.gz'),
      { ...fixedTimes, uuidGen: uuidGen('demo-two-disks'), checksum: 'sha1', tarDialect: 'xapi', compression: 'gzip', compressionLevel: 9 },
    );
    samples.push({
      file: 'demo-two-disks.xva.gz',
      vm: 'demo-two-disks',
      what: 'Two disks whose refs sort differently as strings and as numbers: `Ref:998` (userdevice 0, 4 MiB, bootable) and `Ref:1003` (userdevice 1, 3.5 MiB = 3670016 bytes, so its last chunk is 512 KiB). The archive holds `Ref:1003/…` **before** `Ref:998/…` (XAPI string order); outputs are still numbered by userdevice. Empty CD drive at userdevice 3 (no data, no output). SHA-1 (`.checksum`), gzip, UEFI.',
      summary: bSummary,
      outputs: [
        { name: 'demo-two-disks-0.raw', data: boot },
        { name: 'demo-two-disks-1.raw', data },
      ],
    });

    // (c)
    const ka = Buffer.alloc(8 * MiB);
    textBlock(32 * KiB, 'keepalive start').copy(ka, 0);
    textBlock(32 * KiB, 'keepalive chunk6').copy(ka, 6 * MiB);
    const cSummary = await writeXvaFile(
      {
        ...common,
        vm: { name: 'demo-keepalive', description: 'xva2img sample: XAPI keep-alive chunks, zstd', vcpus: 1, memoryBytes: 256 * MiB },
        disks: [{ ref: 'Ref:42', name: 'disk', userdevice: 0, bootable: true, source: bufferSource(ka), uuid: uuidFrom('ka/vdi') }],
      },
      path.join(outDir, 'demo-keepalive.xva.zst'),
      {
        ...fixedTimes,
        uuidGen: uuidGen('demo-keepalive'),
        checksum: 'xxh64',
        tarDialect: 'xapi',
        compression: 'zstd',
        compressionLevel: 19,
        keepAlives: [{ disk: 0, beforeChunk: 2 }, { disk: 0, beforeChunk: 4, count: 2 }],
        recordEntries: true,
      },
    );
    const dataEntries = cSummary.entries.filter((n) => /\/\d+$/.test(n)).map((n) => n.split('/')[1]);
    samples.push({
      file: 'demo-keepalive.xva.zst',
      vm: 'demo-keepalive',
      what: `One 8 MiB disk (\`Ref:42\`) with data at offsets 0 and 6 MiB, written the way XAPI does during long zero runs: three zero-length keep-alive chunks (one before chunk 2, two before chunk 4), each with checksum \`EF46DB3751D8E999\`. Entry counters are therefore not offsets: the chunk entries (data and keep-alive) are ${dataEntries.map((n) => `\`${n}\``).join(', ')} (the 6 MiB chunk is counter 9, the last chunk counter 10). A reader computing offset = counter × 1 MiB gets this wrong. XXH64, zstd.`,
      summary: cSummary,
      outputs: [{ name: 'demo-keepalive-0.raw', data: ka }],
    });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }

  fs.writeFileSync(path.join(outDir, 'README.md'), readme(samples));
  for (const s of samples) console.log(`${s.file}: ${fs.statSync(path.join(outDir, s.file)).size} bytes`);
}

function readme(samples) {
  const lines = [
    '# Sample XVAs',
    '',
    'Small demo archives written by xva2img\'s own XVA writer. Regenerate them with',
    '`npm run build && node scripts/make-samples.js` (needs e2fsprogs; output is deterministic).',
    'This file is generated by that script.',
    '',
    'Converting a sample to raw must produce exactly the files below, named',
    '`<vm-name>-<userdevice>.raw`, each `virtual_size` bytes long:',
    '',
    '```sh',
    'xva2img samples/demo-two-disks.xva.gz -o /tmp/out   # → /tmp/out/demo-two-disks-0.raw, …',
    'sha256sum /tmp/out/*.raw',
    '```',
    '',
  ];
  for (const s of samples) {
    const size = fs.statSync(path.join(outDir, s.file)).size;
    lines.push(`## \`${s.file}\` (${size} bytes, VM \`${s.vm}\`)`, '', s.what, '');
    const perDisk = s.summary.disks.map((d) => `\`${d.ref}\`: ${d.chunksWritten} data, ${d.keepAlives} keep-alive, ${d.zeroChunksSkipped} skipped as zero`);
    lines.push(`Uncompressed tar stream: ${s.summary.tarBytes} bytes. Chunks, in archive order: ${perDisk.join('; ')}.`, '');
    lines.push('| expected output | bytes | sha256 |', '| --- | --- | --- |');
    for (const o of s.outputs) lines.push(`| \`${o.name}\` | ${o.data.length} | \`${sha256(o.data)}\` |`);
    lines.push('');
  }
  return lines.join('\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
