'use strict';
/**
 * The measured commands. Each case is one or more steps, each step one process (or one shell
 * pipeline); the runner wraps every step in `/usr/bin/time -f %M` for its peak RSS, times the
 * steps with a monotonic clock and adds them up. `out` is a fresh, empty directory on the same
 * file system as the corpus; it is deleted after every run (not timed).
 *
 * step: { argv: [...], stdout?: 'null' }              run argv (wrapped in /usr/bin/time)
 *     | { shell: (time) => 'a | <time> b' }           a pipeline; `time` is the wrapper to put
 *                                                      in front of the process whose RSS counts
 * verify: 'cmp' (byte-identical to the source raw image) | 'qemu-compare' (qemu-img compare)
 */
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'xva2img');
const NODE = process.execPath;

/** POSIX shell single-quoting. */
function q(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

function xva2img(input, output, format, ...extra) {
  return { argv: [NODE, BIN, input, '-q', '-O', format, '-o', output, ...extra] };
}

/**
 * @param c      the main corpus (bench/corpus.js ensureCorpus result)
 * @param small  the 1 GiB corpus for the RSS comparison (f), or undefined
 */
function buildCases(c, small) {
  const cases = [
    // --- xva2img ---------------------------------------------------------------------------
    { name: 'raw', group: 'xva2img', desc: 'xva2img plain XVA (XXH64) -> raw', steps: (out) => [xva2img(c.xva, `${out}/disk.raw`, 'raw')], output: 'disk.raw', verify: 'cmp' },
    { name: 'qcow2', group: 'xva2img', desc: 'xva2img plain XVA -> qcow2', steps: (out) => [xva2img(c.xva, `${out}/disk.qcow2`, 'qcow2')], output: 'disk.qcow2', verify: 'qemu-compare' },
    { name: 'vmdk', group: 'xva2img', desc: 'xva2img plain XVA -> vmdk (streamOptimized)', steps: (out) => [xva2img(c.xva, `${out}/disk.vmdk`, 'vmdk')], output: 'disk.vmdk', verify: 'qemu-compare' },
    // Without the fsync before rename. The baselines do not flush either: tar and the merge
    // script never fsync, and qemu-img convert (7.2, default cache mode) issues its fdatasyncs
    // while creating the image and none after the last data write (strace -tt), so its time
    // does not include the data reaching the disk. qcow2-nosync is the like-for-like case for (e).
    { name: 'qcow2-nosync', group: 'xva2img', desc: 'xva2img plain XVA -> qcow2 with --no-sync (no fsync before rename)', steps: (out) => [xva2img(c.xva, `${out}/disk.qcow2`, 'qcow2', '--no-sync')], output: 'disk.qcow2', verify: 'qemu-compare' },
    { name: 'raw-nosync', group: 'xva2img', desc: 'xva2img plain XVA -> raw with --no-sync (no fsync before rename)', steps: (out) => [xva2img(c.xva, `${out}/disk.raw`, 'raw', '--no-sync')], output: 'disk.raw', verify: 'cmp' },
    { name: 'gz-raw-nosync', group: 'xva2img', desc: 'xva2img .xva.gz -> raw with --no-sync', steps: (out) => [xva2img(c.gz, `${out}/disk.raw`, 'raw', '--no-sync')], output: 'disk.raw', verify: 'cmp' },
    { name: 'sha1-raw', group: 'xva2img', desc: 'xva2img plain XVA (SHA-1) -> raw', steps: (out) => [xva2img(c.sha1, `${out}/disk.raw`, 'raw')], output: 'disk.raw', verify: 'cmp' },
    { name: 'gz-raw', group: 'xva2img', desc: 'xva2img .xva.gz -> raw', steps: (out) => [xva2img(c.gz, `${out}/disk.raw`, 'raw')], output: 'disk.raw', verify: 'cmp' },
    { name: 'zst-raw', group: 'xva2img', desc: 'xva2img .xva.zst -> raw', steps: (out) => [xva2img(c.zst, `${out}/disk.raw`, 'raw')], output: 'disk.raw', verify: 'cmp' },
    {
      name: 'stdin-raw',
      group: 'xva2img',
      desc: 'cat x.xva | xva2img - -> raw (RSS of xva2img)',
      steps: (out) => [{ shell: (time) => `cat ${q(c.xva)} | ${time} ${q(NODE)} ${q(BIN)} - -q -O raw -o ${q(`${out}/disk.raw`)}` }],
      output: 'disk.raw',
      verify: 'cmp',
    },
    // --- baselines -------------------------------------------------------------------------
    {
      name: 'manual',
      group: 'baseline',
      desc: 'tar -xf x.xva, then merge chunks at counter x 1 MiB (bench/merge-chunks.js)',
      steps: (out) => [
        { argv: ['tar', '-xf', c.xva, '-C', `${out}/x`], mkdir: `${out}/x` },
        { argv: [NODE, path.join(__dirname, 'merge-chunks.js'), `${out}/x`, c.diskRef, `${out}/disk.raw`] },
      ],
      output: 'disk.raw',
      verify: 'cmp',
    },
    {
      // Informational (not in a ratio): the how-to shell loop, one dd per chunk file.
      name: 'manual-dd',
      group: 'baseline',
      desc: 'tar -xf x.xva, then a shell loop of dd seek=N conv=notrunc,sparse per chunk',
      steps: (out) => [
        { argv: ['tar', '-xf', c.xva, '-C', `${out}/x`], mkdir: `${out}/x` },
        {
          shell: (time) =>
            `${time} bash -c ${q(
              `cd ${q(`${out}/x/${c.diskRef}`)} && for f in [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]; do ` +
                `dd if="$f" of=${q(`${out}/disk.raw`)} bs=1M seek=$((10#$f)) conv=notrunc,sparse status=none || exit 1; done && ` +
                `truncate -s ${c.meta.virtualSize} ${q(`${out}/disk.raw`)}`,
            )}`,
        },
      ],
      output: 'disk.raw',
      verify: 'cmp',
    },
    {
      name: 'qemu-img',
      group: 'baseline',
      desc: 'qemu-img convert -O qcow2 of the source raw image',
      steps: (out) => [{ argv: ['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', c.raw, `${out}/disk.qcow2`] }],
      output: 'disk.qcow2',
      verify: 'qemu-compare',
    },
    // --- floors ----------------------------------------------------------------------------
    { name: 'floor-inflate', group: 'floor', desc: 'node:zlib gunzip of the .gz to nowhere', steps: () => [{ argv: [NODE, path.join(__dirname, 'floors.js'), 'inflate', c.gz] }] },
    { name: 'floor-zstd', group: 'floor', desc: 'zstd -dc x.xva.zst > /dev/null', steps: () => [{ argv: ['zstd', '-dc', c.zst], stdout: 'null' }] },
    { name: 'floor-cat', group: 'floor', desc: 'cat x.xva > /dev/null', steps: () => [{ argv: ['cat', c.xva], stdout: 'null' }] },
    { name: 'floor-read', group: 'floor', desc: 'Node fs read loop of x.xva (1 MiB)', steps: () => [{ argv: [NODE, path.join(__dirname, 'floors.js'), 'read', c.xva] }] },
    { name: 'floor-xxh64', group: 'floor', desc: 'read + XXH64 (hash-wasm) of every chunk', steps: () => [{ argv: [NODE, path.join(__dirname, 'floors.js'), 'xxh64', c.xva] }] },
    { name: 'floor-sha1', group: 'floor', desc: 'read + SHA-1 (node:crypto) of every chunk', steps: () => [{ argv: [NODE, path.join(__dirname, 'floors.js'), 'sha1', c.sha1] }] },
  ];
  if (small) {
    cases.push({
      name: 'raw-small',
      group: 'xva2img',
      desc: `xva2img plain XVA -> raw on the ${small.meta.key} corpus (RSS vs size)`,
      corpus: small,
      steps: (out) => [xva2img(small.xva, `${out}/disk.raw`, 'raw')],
      output: 'disk.raw',
      verify: 'cmp',
    });
  }
  for (const k of cases) k.corpus ??= c;
  return cases;
}

/** Ratios the issue asks for: [id, label, numerator case, denominator case, target (null: informational)]. */
const RATIOS = [
  ['a', 'plain -> raw / manual workflow', 'raw', 'manual', 0.25],
  ['b', 'gz -> raw / node:zlib inflate floor', 'gz-raw', 'floor-inflate', 1.1],
  ['c', 'zstd -> raw / zstd -dc floor', 'zst-raw', 'floor-zstd', 1.5],
  ['d', '-> qcow2 / -> raw', 'qcow2', 'raw', 1.15],
  // Like for like: neither side waits for the data to reach the disk (see qcow2-nosync).
  ['e', '-> qcow2 --no-sync / qemu-img convert -O qcow2', 'qcow2-nosync', 'qemu-img', 1.5],
  // Informational (no target): our default, which fsyncs before the rename, against the same.
  ['e2', '-> qcow2 (fsync before rename) / qemu-img convert', 'qcow2', 'qemu-img', null],
];
/** (f): peak RSS of every xva2img case <= this, and raw vs raw-small within RSS_SPREAD. */
const RSS_LIMIT_MB = 150;
const RSS_SPREAD = 0.1;

module.exports = { buildCases, RATIOS, RSS_LIMIT_MB, RSS_SPREAD, q, BIN, NODE };
