'use strict';
/**
 * The measured commands. Each case is one or more steps, each step one process (or one shell
 * pipeline); the runner wraps every step in `/usr/bin/time -f %M` for its peak RSS, runs `sync`
 * (untimed) before it, times the steps with a monotonic clock and adds them up. `out` is a fresh,
 * empty directory on the same file system as the corpus; it is deleted after every run (not timed).
 *
 * step: { argv: [...], stdout?: 'null' }              run argv (wrapped in /usr/bin/time)
 *     | { shell: (time) => 'a | <time> b' }           a pipeline; `time` is the wrapper to put
 *                                                      in front of the process whose RSS counts
 * verify: 'cmp' (byte-identical to the source raw image) | 'qemu-compare' (qemu-img compare)
 *
 * Groups: 'xva2img' (default flags: the headline rows), 'mode' (xva2img with other flags),
 * 'baseline' (other tools doing the same job, durably), 'floor' (the least work: decoders alone).
 * Every baseline that writes an image ends with `sync -f` on it, as xva2img fsyncs its images
 * before renaming them: like for like.
 */
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..');
/** The CLI under test: this tree's, or another build's (XVA2IMG_BIN: before/after comparisons). */
const BIN = process.env.XVA2IMG_BIN ? path.resolve(process.env.XVA2IMG_BIN) : path.join(ROOT, 'bin', 'xva2img');
const NODE = process.execPath;

/** POSIX shell single-quoting. */
function q(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

/** Whether `name` runs from the PATH. */
function have(name) {
  return spawnSync('sh', ['-c', 'command -v "$0" >/dev/null 2>&1', name]).status === 0;
}

function xva2img(input, output, format, ...extra) {
  return { argv: [NODE, BIN, input, '-q', '-O', format, '-o', output, ...extra] };
}

/** A shell step timed as a whole (`time` in front of `sh -c`). */
function timedShell(script) {
  return { shell: (time) => `${time} sh -c ${q(script)}` };
}

/**
 * @param c      the main corpus (bench/corpus.js ensureCorpus result)
 * @param small  the second corpus for the RSS-vs-size check, or undefined
 */
function buildCases(c, small) {
  const raw = (name, desc, input, ...extra) => ({ name, desc, steps: (out) => [xva2img(input, `${out}/disk.raw`, 'raw', ...extra)], output: 'disk.raw', verify: 'cmp' });
  /** `producer | [env] xva2img - -> raw`, the RSS of xva2img; `env`: assignments for xva2img ('A=b '). */
  const piped = (name, desc, producer, env = '') => ({
    name,
    desc,
    steps: (out) => [{ shell: (time) => `${producer} | ${env}${time} ${q(NODE)} ${q(BIN)} - -q -O raw -o ${q(`${out}/disk.raw`)}` }],
    output: 'disk.raw',
    verify: 'cmp',
  });
  const igzip = have('igzip');
  const cases = [
    // --- xva2img, default flags (headline) -------------------------------------------------
    { group: 'xva2img', ...raw('raw', 'plain XVA (XXH64) -> raw', c.xva) },
    { group: 'xva2img', name: 'qcow2', desc: 'plain XVA -> qcow2', steps: (out) => [xva2img(c.xva, `${out}/disk.qcow2`, 'qcow2')], output: 'disk.qcow2', verify: 'qemu-compare' },
    { group: 'xva2img', name: 'vmdk', desc: 'plain XVA -> vmdk (streamOptimized)', steps: (out) => [xva2img(c.xva, `${out}/disk.vmdk`, 'vmdk')], output: 'disk.vmdk', verify: 'qemu-compare', slow: true },
    { group: 'xva2img', ...raw('gz-raw', `.xva.gz -> raw (default codec: ${igzip ? 'igzip' : 'node:zlib'})`, c.gz) },
    { group: 'xva2img', ...raw('zst-raw', '.xva.zst -> raw', c.zst) },
    { group: 'xva2img', ...raw('sha1-raw', 'plain XVA (SHA-1) -> raw', c.sha1) },
    { group: 'xva2img', ...piped('gunzip-pipe', 'gunzip -c x.xva.gz | xva2img - -> raw (RSS of xva2img)', `gunzip -c ${q(c.gz)}`), slow: true },
    { group: 'xva2img', ...piped('zstd-pipe', 'zstd -dc x.xva.zst | xva2img - -> raw (RSS of xva2img)', `zstd -dc ${q(c.zst)}`) },
    // --- xva2img, other modes ----------------------------------------------------------------
    { group: 'mode', ...raw('raw-nosync', 'plain XVA -> raw, --no-sync (nothing waits for the disk)', c.xva, '--no-sync') },
    { group: 'mode', ...raw('raw-direct', 'plain XVA -> raw, --direct-io (O_DIRECT, the former default)', c.xva, '--direct-io') },
    {
      group: 'mode',
      name: 'gz-raw-shallow',
      desc: '.xva.gz -> raw, igzip\'s output over a socket pair instead of a 1 MiB FIFO (XVA2IMG_PIPE_SIZE=0)',
      steps: (out) => [{ shell: (time) => `XVA2IMG_PIPE_SIZE=0 ${time} ${q(NODE)} ${q(BIN)} ${q(c.gz)} -q -O raw -o ${q(`${out}/disk.raw`)}` }],
      output: 'disk.raw',
      verify: 'cmp',
    },
    { group: 'mode', ...raw('gz-raw-zlib', '.xva.gz -> raw, --gzip-codec zlib (node:zlib on the decoder thread)', c.gz, '--gzip-codec', 'zlib') },
    // The two pipes at the kernel's default size (XVA2IMG_PIPE_SIZE=0: our stdin pipe is not
    // raised to 1 MiB; docs/design/pipe-depth.md).
    { group: 'mode', ...piped('gunzip-pipe-shallow', 'gunzip -c | xva2img -, stdin pipe not deepened (XVA2IMG_PIPE_SIZE=0)', `gunzip -c ${q(c.gz)}`, 'XVA2IMG_PIPE_SIZE=0 '), slow: true },
    { group: 'mode', ...piped('zstd-pipe-shallow', 'zstd -dc | xva2img -, stdin pipe not deepened (XVA2IMG_PIPE_SIZE=0)', `zstd -dc ${q(c.zst)}`, 'XVA2IMG_PIPE_SIZE=0 ') },
    { group: 'mode', ...piped('cat-pipe', 'cat x.xva | xva2img - -> raw (RSS of xva2img)', `cat ${q(c.xva)}`) },
    // --- baselines: the same job by other tools, flushed like ours -----------------------------
    {
      group: 'baseline',
      name: 'write-floor',
      desc: 'cp --sparse=always disk.raw + sync -f: writing the image durably, nothing else',
      steps: (out) => [timedShell(`cp --sparse=always ${q(c.raw)} ${q(`${out}/disk.raw`)} && sync -f ${q(`${out}/disk.raw`)}`)],
      output: 'disk.raw',
      verify: 'cmp',
    },
    {
      group: 'baseline',
      name: 'tar',
      desc: 'tar -xf x.xva + sync -f: unpacking the chunks durably (no image)',
      writes: true,
      steps: (out) => [{ mkdir: `${out}/x`, ...timedShell(`tar -xf ${q(c.xva)} -C ${q(`${out}/x`)} && sync -f ${q(`${out}/x`)}`) }],
    },
    {
      group: 'baseline',
      name: 'qemu-img-qcow2',
      desc: 'qemu-img convert -f raw -O qcow2 disk.raw + sync -f',
      steps: (out) => [timedShell(`qemu-img convert -f raw -O qcow2 ${q(c.raw)} ${q(`${out}/disk.qcow2`)} && sync -f ${q(`${out}/disk.qcow2`)}`)],
      output: 'disk.qcow2',
      verify: 'qemu-compare',
    },
    {
      group: 'baseline',
      name: 'qemu-img-vmdk',
      desc: 'qemu-img convert -f raw -O vmdk -o subformat=streamOptimized disk.raw + sync -f',
      steps: (out) => [timedShell(`qemu-img convert -f raw -O vmdk -o subformat=streamOptimized ${q(c.raw)} ${q(`${out}/disk.vmdk`)} && sync -f ${q(`${out}/disk.vmdk`)}`)],
      output: 'disk.vmdk',
      verify: 'qemu-compare',
      slow: true,
    },
    {
      group: 'baseline',
      name: 'manual',
      desc: 'tar -xf x.xva, then merge chunks at counter x 1 MiB (bench/merge-chunks.js), no sync',
      steps: (out) => [
        { argv: ['tar', '-xf', c.xva, '-C', `${out}/x`], mkdir: `${out}/x` },
        { argv: [NODE, path.join(__dirname, 'merge-chunks.js'), `${out}/x`, c.diskRef, `${out}/disk.raw`] },
      ],
      output: 'disk.raw',
      verify: 'cmp',
      slow: true,
    },
    // --- floors: decoders alone, output discarded --------------------------------------------
    ...(igzip ? [{ group: 'floor', name: 'floor-igzip', desc: 'igzip -dc x.xva.gz > /dev/null (ISA-L)', steps: () => [{ argv: ['igzip', '-dc', c.gz], stdout: 'null' }] }] : []),
    { group: 'floor', name: 'floor-inflate', desc: 'node:zlib gunzip of the .gz to nowhere', steps: () => [{ argv: [NODE, path.join(__dirname, 'floors.js'), 'inflate', c.gz] }] },
    { group: 'floor', name: 'floor-zstd', desc: 'zstd -dc x.xva.zst > /dev/null', steps: () => [{ argv: ['zstd', '-dc', c.zst], stdout: 'null' }] },
    { group: 'floor', name: 'floor-gunzip', desc: 'gunzip -c x.xva.gz > /dev/null (the pipe producer alone)', steps: () => [{ argv: ['gunzip', '-c', c.gz], stdout: 'null' }], slow: true },
    // The same decoders writing into a pipe that `cat` empties: what any reader of their output
    // pays (the copy into the pipe, the sleeps when it is full), us included.
    ...(igzip ? [{ group: 'floor', name: 'floor-igzip-pipe', desc: 'igzip -dc x.xva.gz | cat > /dev/null', steps: () => [timedShell(`igzip -dc ${q(c.gz)} | cat > /dev/null`)] }] : []),
    { group: 'floor', name: 'floor-zstd-pipe', desc: 'zstd -dc x.xva.zst | cat > /dev/null', steps: () => [timedShell(`zstd -dc ${q(c.zst)} | cat > /dev/null`)] },
    { group: 'floor', name: 'floor-gunzip-pipe', desc: 'gunzip -c x.xva.gz | cat > /dev/null', steps: () => [timedShell(`gunzip -c ${q(c.gz)} | cat > /dev/null`)], slow: true },
    { group: 'floor', name: 'floor-read', desc: 'Node fs read loop of x.xva (1 MiB)', steps: () => [{ argv: [NODE, path.join(__dirname, 'floors.js'), 'read', c.xva] }] },
    { group: 'floor', name: 'floor-xxh64', desc: 'read + XXH64 (hash-wasm) of every chunk', steps: () => [{ argv: [NODE, path.join(__dirname, 'floors.js'), 'xxh64', c.xva] }] },
    { group: 'floor', name: 'floor-xxh64-in-place', desc: 'read + XXH64 (ours, in place) of every chunk', steps: () => [{ argv: [NODE, path.join(__dirname, 'floors.js'), 'xxh64-in-place', c.xva] }] },
  ];
  if (small) {
    cases.push({
      group: 'mode',
      ...raw('raw-small', `plain XVA -> raw on the ${small.meta.key} corpus (RSS vs size)`, small.xva),
      corpus: small,
    });
  }
  for (const k of cases) k.corpus ??= c;
  return cases;
}

/** The gzip floor: the fastest decoder on the machine (igzip when installed, else node:zlib). */
const GZIP_FLOOR = ['floor-igzip', 'floor-inflate'];

/**
 * The targets of issue #19: [id, label, numerator case, denominator cases, target]. With several
 * denominators the ratio is taken against the slowest of them in the same round (max(decoder,
 * write floor): a conversion cannot beat either); an array inside the list means "the first of
 * these that ran". A null target is informational.
 */
const RATIOS = [
  ['raw', 'plain -> raw / write floor', 'raw', ['write-floor'], 1.2],
  ['gz', 'gz -> raw / max(gzip floor, write floor)', 'gz-raw', [GZIP_FLOOR, 'write-floor'], 1.1],
  ['zst', 'zstd -> raw / max(zstd -dc, write floor)', 'zst-raw', ['floor-zstd', 'write-floor'], 1.15],
  ['qcow2', '-> qcow2 / qemu-img convert -O qcow2 + sync', 'qcow2', ['qemu-img-qcow2'], 1.2],
  ['vmdk', '-> vmdk / qemu-img convert -O vmdk (streamOptimized) + sync', 'vmdk', ['qemu-img-vmdk'], 0.5],
  ['gunzip-pipe', 'gunzip -c | xva2img - / gunzip -c > /dev/null', 'gunzip-pipe', ['floor-gunzip'], 1.1],
  ['zstd-pipe', 'zstd -dc | xva2img - / max(zstd -dc, write floor)', 'zstd-pipe', ['floor-zstd', 'write-floor'], 1.15],
  // Informational: the same against the decoder writing into a pipe (`| cat`), which no reader of
  // a pipe can beat.
  ['gz-pipe-floor', 'gz -> raw / max(igzip -dc | cat, write floor)', 'gz-raw', ['floor-igzip-pipe', 'write-floor'], null],
  ['gunzip-pipe-floor', 'gunzip -c | xva2img - / gunzip -c | cat', 'gunzip-pipe', ['floor-gunzip-pipe'], null],
  ['zstd-pipe-floor', 'zstd -dc | xva2img - / max(zstd -dc | cat, write floor)', 'zstd-pipe', ['floor-zstd-pipe', 'write-floor'], null],
  ['tar', 'plain -> raw / tar -xf + sync', 'raw', ['tar'], null],
  ['manual', 'plain -> raw / manual workflow (tar + merge)', 'raw', ['manual'], null],
  ['direct', '--direct-io / default (plain -> raw)', 'raw-direct', ['raw'], null],
];
/** Peak RSS of every xva2img case <= this, and raw vs raw-small within RSS_SPREAD. */
const RSS_LIMIT_MB = 150;
const RSS_SPREAD = 0.1;

module.exports = { buildCases, RATIOS, RSS_LIMIT_MB, RSS_SPREAD, q, BIN, NODE };
