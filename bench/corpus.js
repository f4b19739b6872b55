'use strict';
/**
 * Benchmark corpus: built once per (size, source, CORPUS_VERSION) and cached under
 * bench/corpus/<key>/ (gitignored).
 *
 *   disk.raw        sparse ext4 image, `size` bytes virtual, ~FILL_RATIO of it real files
 *   xxh64.xva       disk.raw packed by the project's XVA writer as XAPI would (XXH64 checksums)
 *   sha1.xva        the same with SHA-1 `.checksum` entries (XAPI <= 8.0)
 *   xxh64.xva.gz    gzip -6 of xxh64.xva (pigz -6 -n when available: same format, faster)
 *   xxh64.xva.zst   zstd -3 -T0 of xxh64.xva
 *   corpus.json     what was built and from what; written last, so its presence = complete
 *
 * File system: `mke2fs -t ext4 -d <stage>` with a fixed UUID, hash seed and fake time. The
 * journal is kept (default ext4 features, as on a real root disk); a fresh journal is zeros, so
 * it costs nothing in the XVA (all-zero chunks are skipped) nor in the raw output (holes).
 *
 * Fill: the stage directory holds FILL_RATIO × size bytes of files taken from `source`
 * (default /usr/lib): a proportional, deterministic sample across the whole tree when the
 * source is larger than that (so a 1 GiB disk has the same mix of small and large files as
 * the 6 GiB one), whole extra copies when it is smaller (a 20 GiB disk). The first copy is
 * hard links (no extra disk space; mke2fs -d stores each inode once), further copies are real
 * copies, because mke2fs -d would store hard links to the same inode only once.
 *
 * Deterministic: same source tree + same machine -> same image. /usr/lib differs between
 * machines, so the source, its byte count, the bytes taken and the image's allocated size are
 * recorded in corpus.json and in the results.
 */
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const { spawnSync } = require('node:child_process');

/** Bump when anything below changes what gets built. */
const CORPUS_VERSION = 'c1';
/** Bytes of real files per byte of virtual disk: /usr/lib (~3.9 GB) in 6 GiB. */
const FILL_RATIO = 0.6;
const DEFAULT_SOURCE = '/usr/lib';
const FS_UUID = '8f7c1f7e-5b1a-4c1e-9e55-7a2d1b0c6e01';
const HASH_SEED = '3c6b9d52-0f4e-4a8b-8d1a-2e9f7c5b4a10';
const FAKE_TIME = 1700000000; // 2023-11-14, used for every timestamp we control
const DISK_REF = 'Ref:10';
/** e2fsprogs takes "now" (mkfs time, last write time, …) from this variable. */
const FAKE_TIME_ENV = { ...process.env, E2FSPROGS_FAKE_TIME: String(FAKE_TIME), SOURCE_DATE_EPOCH: String(FAKE_TIME) };

const CORPUS_ROOT = path.join(__dirname, 'corpus');

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** '6G', '512M', '1.5G', '1073741824' -> bytes (binary units), rounded to 1 MiB. */
function parseSize(text) {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(String(text).trim());
  if (!m) throw new Error(`bad size: ${text} (use e.g. 512M, 1G, 6G)`);
  const mult = { '': 1, K: 1024, M: MiB, G: GiB, T: 1024 * GiB }[m[2].toUpperCase()];
  const bytes = Math.round((Number(m[1]) * mult) / MiB) * MiB;
  if (bytes < 64 * MiB) throw new Error(`size ${text} is too small (minimum 64M)`);
  return bytes;
}

function sizeLabel(bytes) {
  if (bytes % GiB === 0) return `${bytes / GiB}G`;
  return `${Math.round(bytes / MiB)}M`;
}

function corpusKey(sizeBytes, source) {
  const src = path.resolve(source) === DEFAULT_SOURCE ? '' : `-${path.resolve(source).replace(/[^A-Za-z0-9]+/g, '_').replace(/^_+/, '')}`;
  return `${sizeLabel(sizeBytes)}${src}-${CORPUS_VERSION}`;
}

function corpusPaths(dir) {
  return {
    dir,
    raw: path.join(dir, 'disk.raw'),
    xva: path.join(dir, 'xxh64.xva'),
    sha1: path.join(dir, 'sha1.xva'),
    gz: path.join(dir, 'xxh64.xva.gz'),
    zst: path.join(dir, 'xxh64.xva.zst'),
    meta: path.join(dir, 'corpus.json'),
    diskRef: DISK_REF,
  };
}

function log(msg) {
  process.stderr.write(`[corpus] ${msg}\n`);
}

function run(argv, opts = {}) {
  const r = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', opts.stdout ?? 'inherit', 'inherit'], env: opts.env ?? process.env });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited with ${r.status ?? r.signal}`);
  return r;
}

function have(program) {
  return spawnSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' }).status === 0;
}

function toolVersion(argv) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  return `${r.stdout || ''}${r.stderr || ''}`.split('\n').find((l) => l.trim()) ?? 'unknown';
}

// ---------------------------------------------------------------------------------------------
// Stage directory

/** Every entry under `root`, depth first, names in byte order (deterministic). */
function walk(root) {
  const entries = [];
  const visit = (rel) => {
    const names = fs.readdirSync(path.join(root, rel)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      let st;
      try {
        st = fs.lstatSync(path.join(root, r));
      } catch {
        continue;
      }
      if (st.isDirectory()) {
        entries.push({ rel: r, type: 'dir', st });
        visit(r);
      } else if (st.isFile()) {
        entries.push({ rel: r, type: 'file', size: st.size, st });
      } else if (st.isSymbolicLink()) {
        entries.push({ rel: r, type: 'link', st });
      } // sockets, fifos, devices: skipped
    }
  };
  visit('');
  return entries;
}

/**
 * Fills `stage` with ~budget bytes of files from `source`. Returns stats.
 * copy k (k = 0, 1, …) goes to stage/<k>/; all copies but the last are complete; the last one
 * takes a proportional sample: a file is taken when that keeps the bytes taken so far at or
 * below fraction × bytes seen (plus half the file), so big and small files are sampled alike.
 */
function buildStage(source, stage, budget) {
  const entries = walk(source);
  const total = entries.reduce((n, e) => n + (e.type === 'file' ? e.size : 0), 0);
  if (total === 0) throw new Error(`${source} holds no files`);
  const fullCopies = Math.floor(budget / total);
  const fraction = (budget - fullCopies * total) / total;
  const copies = fullCopies + (fraction > 0.001 ? 1 : 0);
  let bytes = 0;
  let files = 0;
  const inImage = ['/', '/lost+found']; // every path mke2fs will create, for fixTimes()
  for (let k = 0; k < copies; k++) {
    const share = k < fullCopies ? 1 : fraction;
    const base = path.join(stage, String(k));
    fs.mkdirSync(base, { recursive: true });
    let seen = 0;
    let taken = 0;
    const dirs = [];
    inImage.push(`/${k}`);
    for (const e of entries) {
      const dst = path.join(base, e.rel);
      if (e.type === 'dir') {
        fs.mkdirSync(dst);
        dirs.push(e);
      } else if (e.type === 'link') {
        fs.symlinkSync(fs.readlinkSync(path.join(source, e.rel)), dst);
        fs.lutimesSync(dst, e.st.atime, e.st.mtime);
      } else {
        seen += e.size;
        if (share < 1 && taken + e.size / 2 > share * seen) continue;
      }
      inImage.push(`/${k}/${e.rel}`);
      if (e.type === 'file') {
        try {
          if (k === 0) fs.linkSync(path.join(source, e.rel), dst);
          else {
            fs.copyFileSync(path.join(source, e.rel), dst);
            fs.utimesSync(dst, e.st.atime, e.st.mtime);
          }
        } catch (err) {
          if (err.code !== 'EXDEV' && err.code !== 'EPERM') throw err;
          fs.copyFileSync(path.join(source, e.rel), dst); // stage on another file system
          fs.utimesSync(dst, e.st.atime, e.st.mtime);
        }
        taken += e.size;
        files++;
      }
    }
    // Directory times last (creating entries changed them): children before parents.
    for (const d of dirs.reverse()) fs.utimesSync(path.join(base, d.rel), d.st.atime, d.st.mtime);
    fs.utimesSync(base, FAKE_TIME, FAKE_TIME);
    bytes += taken;
  }
  fs.utimesSync(stage, FAKE_TIME, FAKE_TIME);
  return { sourceBytes: total, sourceFiles: entries.filter((e) => e.type === 'file').length, copies, bytes, files, inImage };
}

/**
 * mke2fs -d copies atime and ctime from the stage; those change whenever the source is read or
 * hard-linked, so they are set to FAKE_TIME in the image (mtimes stay the source's). Names
 * debugfs cannot quote (a `"`, `\\` or newline: none in a stock /usr/lib) are left alone.
 */
function fixTimes(image, inImage, scriptPath) {
  const t = new Date(FAKE_TIME * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const lines = [];
  for (const p of inImage) {
    if (/["\\\n]/.test(p)) continue;
    lines.push(`sif "${p}" atime ${t}`, `sif "${p}" ctime ${t}`);
  }
  fs.writeFileSync(scriptPath, `${lines.join('\n')}\n`);
  const r = spawnSync('debugfs', ['-w', '-f', scriptPath, image], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', env: FAKE_TIME_ENV });
  fs.rmSync(scriptPath, { force: true });
  if (r.status !== 0) throw new Error(`debugfs exited with ${r.status}: ${r.stderr.slice(-500)}`);
  const failed = r.stderr.split('\n').filter((l) => /not found|error/i.test(l));
  if (failed.length > 0) log(`  debugfs: ${failed.length} time fixes failed, e.g. ${failed[0]}`);
}

// ---------------------------------------------------------------------------------------------
// Build steps (each writes <file>.tmp and renames, so an interrupted build resumes)

function step(target, label, fn) {
  if (fs.existsSync(target)) return undefined;
  const t0 = process.hrtime.bigint();
  log(`${label} -> ${path.relative(process.cwd(), target)}`);
  const tmp = `${target}.tmp`;
  fs.rmSync(tmp, { force: true, recursive: true });
  const ret = fn(tmp);
  const finish = (r) => {
    fs.renameSync(tmp, target);
    log(`  done in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s`);
    return r;
  };
  return ret && typeof ret.then === 'function' ? ret.then(finish) : finish(ret);
}

function checkSpace(dir, sizeBytes) {
  const need = Math.ceil(sizeBytes * FILL_RATIO * 4.5); // raw + 2 XVAs + gz + zst, and outputs later
  try {
    const st = fs.statfsSync(dir);
    const avail = st.bavail * st.bsize;
    if (avail < need) log(`warning: ${(avail / GiB).toFixed(1)} GiB free under ${dir}, the corpus and outputs need ~${(need / GiB).toFixed(1)} GiB`);
  } catch {
    /* statfs unsupported: just try */
  }
}

function deterministicUuids() {
  let n = 0;
  return () => {
    n++;
    const hex = n.toString(16).padStart(12, '0');
    return `00000000-0000-4000-8000-${hex}`;
  };
}

async function writeXva(paths, out, checksum) {
  const { writeXvaFile } = require('../dist/xva/writer.js');
  const { RawReader } = require('../dist/image/raw/reader.js');
  const source = await RawReader.open(paths.raw);
  try {
    const spec = {
      vm: { name: 'bench-ext4', vcpus: 2, memoryBytes: 2 * GiB },
      disks: [{ ref: DISK_REF, name: 'root', userdevice: '0', bootable: true, source }],
      version: { date: '2023-11-14' },
    };
    const summary = await writeXvaFile(spec, out, { checksum, ovaXmlMtime: FAKE_TIME, uuidGen: deterministicUuids() });
    const d = summary.disks[0];
    return { tarBytes: summary.tarBytes, chunksWritten: d.chunksWritten, zeroChunksSkipped: d.zeroChunksSkipped, dataBytes: d.dataBytes };
  } finally {
    await source.close();
  }
}

/**
 * Returns the corpus for `sizeBytes` (building what is missing). `source` defaults to /usr/lib.
 */
async function ensureCorpus(sizeBytes, { source = DEFAULT_SOURCE } = {}) {
  const key = corpusKey(sizeBytes, source);
  const dir = path.join(CORPUS_ROOT, key);
  const paths = corpusPaths(dir);
  if (fs.existsSync(paths.meta)) {
    return { ...paths, key, meta: JSON.parse(fs.readFileSync(paths.meta, 'utf8')) };
  }
  fs.mkdirSync(dir, { recursive: true });
  checkSpace(dir, sizeBytes);
  const partial = fs.existsSync(path.join(dir, 'build.json')) ? JSON.parse(fs.readFileSync(path.join(dir, 'build.json'), 'utf8')) : {};
  const saveBuild = () => fs.writeFileSync(path.join(dir, 'build.json'), JSON.stringify(partial, null, 2));

  step(paths.raw, `mke2fs -t ext4 -d <${FILL_RATIO * 100}% of ${sizeLabel(sizeBytes)} from ${source}>`, (tmp) => {
    const stage = path.join(dir, 'stage');
    fs.rmSync(stage, { recursive: true, force: true });
    fs.mkdirSync(stage);
    try {
      const { inImage, ...stats } = buildStage(path.resolve(source), stage, Math.floor(sizeBytes * FILL_RATIO));
      partial.stage = stats;
      log(`  stage: ${partial.stage.files} files, ${(partial.stage.bytes / 1e9).toFixed(2)} GB (source ${(partial.stage.sourceBytes / 1e9).toFixed(2)} GB, ${partial.stage.copies} cop${partial.stage.copies === 1 ? 'y' : 'ies'})`);
      run(
        ['mke2fs', '-q', '-F', '-t', 'ext4', '-b', '4096', '-L', 'bench-root', '-U', FS_UUID, '-E', `hash_seed=${HASH_SEED},root_owner=0:0`, '-d', stage, tmp, `${sizeBytes / 1024}k`],
        { env: FAKE_TIME_ENV },
      );
      fixTimes(tmp, inImage, path.join(dir, 'fix-times.debugfs'));
    } finally {
      fs.rmSync(stage, { recursive: true, force: true });
    }
    saveBuild();
  });
  await step(paths.xva, 'XVA (XXH64) with dist/xva/writer.js', async (tmp) => {
    partial.xva = await writeXva(paths, tmp, 'xxh64');
    saveBuild();
  });
  await step(paths.sha1, 'XVA (SHA-1) with dist/xva/writer.js', async (tmp) => {
    partial.sha1 = await writeXva(paths, tmp, 'sha1');
    saveBuild();
  });
  const gzipTool = have('pigz') ? 'pigz' : 'gzip';
  step(paths.gz, `${gzipTool} -6`, (tmp) => {
    const fd = fs.openSync(tmp, 'w');
    try {
      run([gzipTool, '-6', '-n', '-c', paths.xva], { stdout: fd });
    } finally {
      fs.closeSync(fd);
    }
  });
  step(paths.zst, 'zstd -3 -T0', (tmp) => run(['zstd', '-q', '-3', '-T0', '-f', paths.xva, '-o', tmp]));

  const st = fs.statSync(paths.raw);
  const size = (p) => fs.statSync(p).size;
  const meta = {
    key,
    version: CORPUS_VERSION,
    virtualSize: sizeBytes,
    source: path.resolve(source),
    sourceBytes: partial.stage?.sourceBytes,
    sourceFiles: partial.stage?.sourceFiles,
    filesBytes: partial.stage?.bytes,
    files: partial.stage?.files,
    copies: partial.stage?.copies,
    fillRatio: FILL_RATIO,
    rawAllocatedBytes: st.blocks * 512,
    xva: { bytes: size(paths.xva), ...partial.xva },
    sha1: { bytes: size(paths.sha1), ...partial.sha1 },
    gz: { bytes: size(paths.gz), tool: `${gzipTool} -6 -n` },
    zst: { bytes: size(paths.zst), tool: 'zstd -3 -T0' },
    tools: { mke2fs: toolVersion(['mke2fs', '-V']), gzip: toolVersion([gzipTool, '--version']), zstd: toolVersion(['zstd', '--version']) },
    host: os.hostname(),
    builtAt: new Date().toISOString(),
  };
  fs.writeFileSync(paths.meta, JSON.stringify(meta, null, 2));
  fs.rmSync(path.join(dir, 'build.json'), { force: true });
  return { ...paths, key, meta };
}

/** Removes cached corpora of older CORPUS_VERSIONs (they can never be reused). */
function pruneStaleCorpora() {
  if (!fs.existsSync(CORPUS_ROOT)) return [];
  const removed = [];
  for (const name of fs.readdirSync(CORPUS_ROOT)) {
    if (name.startsWith('.') || name.endsWith(`-${CORPUS_VERSION}`)) continue;
    fs.rmSync(path.join(CORPUS_ROOT, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

module.exports = { ensureCorpus, pruneStaleCorpora, parseSize, sizeLabel, CORPUS_ROOT, CORPUS_VERSION, FILL_RATIO, MiB, GiB };

const USAGE = `usage: node bench/corpus.js [size] [source]
  builds (or shows, when cached) the benchmark corpus without running the bench
  size    virtual size of the disk, e.g. 512M, 1G, 6G (default 6G)
  source  directory the files come from (default ${DEFAULT_SOURCE})`;

if (require.main === module) {
  const [sizeArg = '6G', source = DEFAULT_SOURCE] = process.argv.slice(2);
  if (sizeArg === '--help' || sizeArg === '-h') {
    console.log(USAGE);
    process.exit(0);
  }
  let size;
  try {
    size = parseSize(sizeArg);
  } catch (err) {
    console.error(`corpus.js: ${err.message}\n${USAGE}`);
    process.exit(1);
  }
  ensureCorpus(size, { source })
    .then((c) => console.log(JSON.stringify(c.meta, null, 2)))
    .catch((err) => {
      console.error(`corpus.js: ${err.message}`);
      process.exit(1);
    });
}
