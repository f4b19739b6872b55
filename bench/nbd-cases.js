'use strict';
/**
 * NBD serving cases of `npm run bench` (run by bench/run.js; `--only nbd` runs only these, or
 * name single cases, see NBD_CASES): `xva2img serve` reading the XVA in place — each chunk's
 * checksum verified on its first read — against `qemu-nbd -r -f raw` serving the disk already
 * extracted (the corpus's disk.raw), read by the same clients:
 *
 *   seq        nbdcopy URI null:                           every byte, 4 connections (multi-conn)
 *   convert    qemu-img convert -f raw -O qcow2 URI out    the output written next to the corpus;
 *              also straight from disk.raw (`-file`), which shows what the NBD hop costs
 *   rand1      qemu-io, 4 KiB reads at random offsets in the disk's data, one at a time
 *   rand16     the same, 16 in flight (aio_read ... aio_flush)
 *
 * Servers are started untimed before each run: `xva2img serve` anew each time, so that every
 * timed run pays the checksum verification of the chunks it reads ("cold"); the random cases
 * are also timed against a server that already verified every chunk ("warm", after an untimed
 * nbdcopy), which is the steady state of a restore session. qemu-nbd gets `-t -e 16` (stay up,
 * several connections: it then offers multi-conn as we do). Rounds as in run.js: every case once
 * per round, xva2img and qemu-nbd back to back; medians of the rounds.
 */
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'xva2img');
const TOOLS = ['qemu-nbd', 'qemu-img', 'qemu-io', 'nbdcopy'];
/** Random reads per run (QD1, QD16) and their seed. */
const RANDOM_READS = { 1: 2000, 16: 8000 };
const SEED = 20261204;

/** [case, client, server state] in run order; names are `nbd-<client>-<server>`. */
const NBD_CASES = [
  ['seq', 'xva'],
  ['seq', 'qemu'],
  ['convert', 'xva'],
  ['convert', 'qemu'],
  ['convert', 'file'],
  ['rand1', 'xva'],
  ['rand1', 'xva-warm'],
  ['rand1', 'qemu'],
  ['rand16', 'xva'],
  ['rand16', 'xva-warm'],
  ['rand16', 'qemu'],
].map(([client, server]) => ({ name: `nbd-${client}-${server}`, client, server }));

/** [id, label, numerator, denominator, target or null for information]. */
const NBD_RATIOS = [
  ['n1', 'nbdcopy sequential read: serve (cold) / qemu-nbd', 'nbd-seq-xva', 'nbd-seq-qemu', 1.3],
  ['n2', 'qemu-img convert -O qcow2: serve (cold) / qemu-nbd', 'nbd-convert-xva', 'nbd-convert-qemu', 1.3],
  ['n2f', 'qemu-img convert -O qcow2: serve (cold) / straight from the extracted disk.raw', 'nbd-convert-xva', 'nbd-convert-file', null],
  ['n3', 'random 4 KiB reads, QD 1: serve (chunks verified) / qemu-nbd', 'nbd-rand1-xva-warm', 'nbd-rand1-qemu', 1.5],
  ['n4', 'random 4 KiB reads, QD 16: serve (chunks verified) / qemu-nbd', 'nbd-rand16-xva-warm', 'nbd-rand16-qemu', 1.5],
  ['n3c', 'random 4 KiB reads, QD 1: serve (first reads: each verifies its 1 MiB chunk) / qemu-nbd', 'nbd-rand1-xva', 'nbd-rand1-qemu', null],
  ['n4c', 'random 4 KiB reads, QD 16: serve (first reads) / qemu-nbd', 'nbd-rand16-xva', 'nbd-rand16-qemu', null],
];

function isNbdCase(name) {
  return name === 'nbd' || NBD_CASES.some((c) => c.name === name);
}

function hasTool(name) {
  return spawnSync('sh', ['-c', 'command -v "$0" >/dev/null 2>&1', name]).status === 0;
}

function waitForLine(child, what) {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    child.on('close', (code) => reject(new Error(`${what} exited ${code} before starting: ${err.trim().slice(-500)}`)));
  });
}

/** Resolves once something accepts connections on the Unix socket `sock`. */
async function waitForSocket(sock, child, what) {
  let exited = false;
  child.on('close', () => (exited = true));
  for (let i = 0; i < 300; i++) {
    if (exited) throw new Error(`${what} exited before listening`);
    if (fs.existsSync(sock) && spawnSync('nbdinfo', ['--size', `nbd+unix:///?socket=${sock}`]).status === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not listen on ${sock}`);
}

/** The peak resident set of a running process (VmHWM), in MB. */
function peakRssMB(pid) {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('close', () => resolve());
    child.kill('SIGTERM');
  });
}

/** A fresh server of kind `xva` or `qemu` on a socket in `dir`: { uri, stop() }. */
async function startServer(kind, corpus, dir, env) {
  const sock = path.join(dir, `${kind}.sock`);
  fs.rmSync(sock, { force: true });
  if (kind === 'qemu') {
    const child = spawn('qemu-nbd', ['-r', '-f', 'raw', '-t', '-e', '16', '-k', sock, corpus.raw], { stdio: ['ignore', 'pipe', 'pipe'], env });
    await waitForSocket(sock, child, 'qemu-nbd');
    return { uri: `nbd+unix:///?socket=${sock}`, stop: () => stop(child) };
  }
  const child = spawn(process.execPath, [BIN, 'serve', corpus.xva, '--socket', sock, '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const line = await waitForLine(child, 'xva2img serve');
  return { uri: JSON.parse(line).exports[0].uri, stop: () => stop(child), peakRssMB: () => peakRssMB(child.pid) };
}

/** A command's wall-clock seconds; throws when it fails. */
function timed(argv, { input, env, cwd } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { stdio: [input ? 'pipe' : 'ignore', 'ignore', 'pipe'], env, cwd });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    if (input) child.stdin.end(input);
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code !== 0) reject(new Error(`${argv.join(' ')} exited ${code}: ${err.trim().slice(-500)}`));
      else resolve(seconds);
    });
  });
}

/** qemu-io scripts of 4 KiB reads at seeded random offsets inside the disk's data extents. */
function randomScripts(corpus) {
  const r = spawnSync(process.execPath, [BIN, 'map', corpus.xva, '--json'], { encoding: 'utf8', maxBuffer: 256 * 2 ** 20 });
  if (r.status !== 0) throw new Error(`xva2img map failed: ${r.stderr}`);
  const extents = JSON.parse(r.stdout)[0].extents.filter((e) => e.data && e.length >= 4096);
  const total = extents.reduce((a, e) => a + Math.floor(e.length / 4096), 0);
  let x = SEED >>> 0;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const offset = () => {
    let k = next() % total;
    for (const e of extents) {
      const blocks = Math.floor(e.length / 4096);
      if (k < blocks) return e.start + k * 4096;
      k -= blocks;
    }
    throw new Error('unreachable');
  };
  const scripts = {};
  for (const qd of [1, 16]) {
    const lines = [];
    for (let i = 0; i < RANDOM_READS[qd]; i++) {
      if (qd === 1) lines.push(`read ${offset()} 4096`);
      else {
        lines.push(`aio_read -q ${offset()} 4096`);
        if ((i + 1) % qd === 0) lines.push('aio_flush');
      }
    }
    lines.push('aio_flush', '');
    scripts[qd] = lines.join('\n');
  }
  return scripts;
}

/** One timed run of a case with a server started for it: seconds, and the server's peak RSS (xva2img). */
async function runOnce(kase, corpus, dir, scripts, env) {
  if (kase.server === 'file') return { seconds: await runClient(kase, { uri: corpus.raw }, dir, scripts, env) };
  const kind = kase.server === 'qemu' ? 'qemu' : 'xva';
  const server = await startServer(kind, corpus, dir, env);
  try {
    const seconds = await runClient(kase, server, dir, scripts, env);
    return { seconds, rssMB: server.peakRssMB?.() };
  } finally {
    await server.stop();
  }
}

/** The timed client command of a case against `server`. */
async function runClient(kase, server, dir, scripts, env) {
  if (kase.server === 'xva-warm') await timed(['nbdcopy', server.uri, 'null:'], { env }); // verifies every chunk, untimed
  switch (kase.client) {
    case 'seq':
      return timed(['nbdcopy', server.uri, 'null:'], { env });
    case 'convert': {
      const out = path.join(dir, 'out.qcow2');
      fs.rmSync(out, { force: true });
      try {
        return await timed(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', server.uri, out], { env });
      } finally {
        fs.rmSync(out, { force: true });
        spawnSync('sync');
      }
    }
    default:
      return timed(['qemu-io', '-r', '-f', 'raw', server.uri], { input: scripts[kase.client === 'rand1' ? 1 : 16], env });
  }
}

/** Both servers give the same bytes (untimed, once): qemu-img compare of the two exports. */
async function compareServers(corpus, dir, env) {
  const a = await startServer('xva', corpus, dir, env);
  const b = await startServer('qemu', corpus, dir, env);
  try {
    const r = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', a.uri, b.uri], { encoding: 'utf8', env });
    return { check: 'qemu-img compare serve vs qemu-nbd', ok: r.status === 0, detail: r.status === 0 ? undefined : `${r.stdout}${r.stderr}`.trim().slice(0, 500) };
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Runs the NBD cases named in `only` (null: all) on `corpus`: one warm-up and `runs` rounds.
 * Returns { results, ratios, check } or { skipped } when a tool is missing.
 */
async function runNbd(corpus, { runs, only, workDir, env, log = (s) => process.stderr.write(s) }) {
  const missing = TOOLS.filter((t) => !hasTool(t));
  if (missing.length) return { skipped: `needs ${missing.join(', ')} on the PATH` };
  const cases = NBD_CASES.filter((c) => !only || only.includes('nbd') || only.includes(c.name));
  const dir = path.join(workDir, 'nbd');
  fs.mkdirSync(dir, { recursive: true });
  try {
    const scripts = randomScripts(corpus);
    const check = await compareServers(corpus, dir, env);
    log(`[bench] nbd: ${check.check} ${check.ok ? 'ok' : 'FAILED'}\n`);
    const times = new Map(cases.map((c) => [c.name, []]));
    const rss = new Map(cases.map((c) => [c.name, []]));
    for (let round = 0; round <= runs; round++) {
      log(round === 0 ? '[bench] nbd warm-up:' : `[bench] nbd round ${round}/${runs}:`);
      for (const kase of cases) {
        const { seconds: s, rssMB } = await runOnce(kase, corpus, dir, scripts, env);
        if (round > 0) times.get(kase.name).push(s);
        if (rssMB !== undefined) rss.get(kase.name).push(rssMB);
        log(` ${kase.name} ${s.toFixed(2)}`);
      }
      log('\n');
    }
    const results = cases.map((c) => {
      const secs = times.get(c.name);
      const mb = rss.get(c.name);
      return {
        name: c.name,
        median: median(secs),
        min: Math.min(...secs),
        max: Math.max(...secs),
        runs: secs.map((x) => Number(x.toFixed(3))),
        serverPeakRssMB: mb.length ? Number(Math.max(...mb).toFixed(1)) : undefined,
      };
    });
    const by = Object.fromEntries(results.map((r) => [r.name, r]));
    const ratios = NBD_RATIOS.map(([id, label, num, den, target]) => {
      const value = by[num] && by[den] ? by[num].median / by[den].median : undefined;
      return { id, label, numerator: num, denominator: den, value, target, pass: value === undefined || target === null ? undefined : value <= target };
    });
    return { results, ratios, check, randomReads: RANDOM_READS };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Text for run.js's report. */
function formatNbd(nbd, { fmt, table }) {
  if (nbd.skipped) return `NBD cases skipped: ${nbd.skipped}`;
  const rows = nbd.results.map((r) => [r.name, fmt(r.median), fmt(r.min), fmt(r.max), r.serverPeakRssMB === undefined ? '' : fmt(r.serverPeakRssMB, 1)]);
  const ratioRows = nbd.ratios.map((r) => [
    `(${r.id})`,
    r.label,
    r.value === undefined ? 'n/a' : fmt(r.value, 3),
    r.target === null ? '-' : `<= ${r.target}`,
    r.target === null ? 'info' : r.pass === undefined ? 'n/a' : r.pass ? 'PASS' : 'FAIL',
  ]);
  return [
    `NBD serving (${nbd.randomReads[1]} / ${nbd.randomReads[16]} random reads at QD 1 / 16; ${nbd.check.check}: ${nbd.check.ok ? 'ok' : 'FAILED'})`,
    table(rows, ['case', 'median s', 'min', 'max', 'serve peak RSS MB'], ['l', 'r', 'r', 'r', 'r']),
    '',
    table(ratioRows, ['', 'ratio', 'value', 'target', ''], ['l', 'l', 'r', 'l', 'l']),
  ].join('\n');
}

module.exports = { NBD_CASES, isNbdCase, runNbd, formatNbd, hasTool, median };

