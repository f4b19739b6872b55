'use strict';
/**
 * xva2img benchmark: `npm run bench -- [options]` (builds dist/ first) or `node bench/run.js`.
 *
 *   --size <6G>        virtual size of the main corpus disk (1G for the second column; larger works)
 *   --small-size <1G>  the second corpus for the RSS-vs-size check; 0 to skip
 *   --runs <5>         measured rounds (every case once per round) after one warm-up run per case
 *   --quick            development: 512M corpus, 1 round, no second corpus, no slow cases
 *   --only <a,b>       only these cases (names or groups: xva2img, mode, baseline, floor, nbd, device); see --list
 *                      (the block-device group `device` runs only when named: it needs root)
 *   --source <dir>     where the corpus files come from (default /usr/lib)
 *   --json <file>      results file (default bench/results/latest.json)
 *   --keep-corpus      do not delete cached corpora of older corpus versions
 *   --no-verify        skip the (untimed) correctness checks of the outputs
 *   --no-touch         do not touch memory before runs that write images (see touch-memory.js)
 *   --keep-env         run the timed commands with NODE_EXTRA_CA_CERTS as set (see bench/README.md)
 *   --list             list the cases and exit
 *
 * See bench/README.md for what each number means.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { ensureCorpus, pruneStaleCorpora, parseSize, sizeLabel, CORPUS_ROOT } = require('./corpus');
const { BIN, buildCases, RATIOS, RSS_LIMIT_MB, RSS_SPREAD, q } = require('./cases');
const nbdBench = require('./nbd-cases');
const deviceBench = require('./device-cases');

const WORK = path.join(CORPUS_ROOT, '.work'); // outputs: same file system as the corpus

// ---------------------------------------------------------------------------------------------
// Options

function parseArgs(argv) {
  const o = { size: '6G', smallSize: '1G', runs: 5, quick: false, only: null, source: '/usr/lib', json: path.join(__dirname, 'results', 'latest.json'), keepCorpus: false, verify: true, touch: true, keepEnv: false, list: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const name = a.split('=')[0];
    if (name === '--size') o.size = val();
    else if (name === '--small-size') o.smallSize = val();
    else if (name === '--runs') o.runs = Number(val());
    else if (name === '--quick') Object.assign(o, { quick: true, size: '512M', smallSize: '0', runs: 1 });
    else if (name === '--only') o.only = val().split(',').map((s) => s.trim()).filter(Boolean);
    else if (name === '--source') o.source = val();
    else if (name === '--json') o.json = path.resolve(val());
    else if (name === '--keep-corpus') o.keepCorpus = true;
    else if (name === '--no-verify') o.verify = false;
    else if (name === '--no-touch') o.touch = false;
    else if (name === '--keep-env') o.keepEnv = true;
    else if (name === '--list') o.list = true;
    else if (name === '--help' || name === '-h') {
      console.log(fs.readFileSync(__filename, 'utf8').split('*/')[0].replace(/^'use strict';\n\/\*\*?\n?/, '').replace(/^ \* ?/gm, '').trim());
      process.exit(0);
    } else throw new Error(`unknown option ${a} (see --help)`);
  }
  if (!Number.isInteger(o.runs) || o.runs < 1) throw new Error('--runs must be a positive integer');
  return o;
}

// ---------------------------------------------------------------------------------------------
// Machine description

function sh(cmd) {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '';
}

/** The commit of the tree holding the CLI under test (results say which build they measured). */
function gitCommit(dir) {
  return sh(`git -C ${q(dir)} rev-parse --short HEAD`) || undefined;
}

function machine() {
  const cpus = os.cpus();
  const mhz = cpus[0]?.speed;
  fs.mkdirSync(CORPUS_ROOT, { recursive: true });
  const df = sh(`df -PT ${q(CORPUS_ROOT)} | tail -1`).split(/\s+/);
  const device = df[0] ?? '';
  let disk = '';
  if (device.startsWith('/dev/')) {
    const parent = sh(`lsblk -no PKNAME ${q(device)} | head -1`) || path.basename(device);
    const [model, rota] = [sh(`lsblk -dno MODEL /dev/${parent}`), sh(`lsblk -dno ROTA /dev/${parent}`)];
    disk = `${parent}${model ? ` ${model}` : ' (no model reported)'}${rota === '0' ? ', non-rotational' : rota === '1' ? ', reported rotational' : ''}`;
  }
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuMHz: mhz || undefined,
    virtualization: sh('systemd-detect-virt 2>/dev/null') || undefined,
    ramGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    corpusFs: { device, type: df[1] ?? '', disk },
    tools: {
      qemuImg: sh('qemu-img --version | head -1'),
      zstd: sh('zstd --version'),
      igzip: sh('igzip --version 2>/dev/null | head -1') || 'not installed',
      gzip: sh('gzip --version | head -1'),
      tar: sh('tar --version | head -1'),
      coreutils: sh('cp --version | head -1'),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Running one step / one case

/**
 * Environment variables removed before the timed steps (unless --keep-env). NODE_EXTRA_CA_CERTS
 * makes every Node process read and parse that certificate bundle at start-up, before any
 * JavaScript runs: ~80 ms per start on the machine of the README's table (`node -e 0` 0.03 s
 * without it, 0.10 s with it), a cost of that machine's set-up that no case needs (none uses
 * TLS) and that would otherwise be charged to every Node process the bench starts (xva2img, the
 * Node floors, the manual workflow's merge script) and to none of qemu-img, tar or zstd.
 */
const REMOVED_ENV = ['NODE_EXTRA_CA_CERTS'];
let STEP_ENV = process.env;

function stepEnv(keepEnv) {
  if (keepEnv) return { env: process.env, removed: [] };
  const removed = REMOVED_ENV.filter((k) => process.env[k] !== undefined);
  const env = { ...process.env };
  for (const k of removed) delete env[k];
  return { env, removed };
}

function runStep(step, out, rssFile) {
  return new Promise((resolve) => {
    if (step.mkdir) fs.mkdirSync(step.mkdir, { recursive: true });
    const time = ['/usr/bin/time', '-f', '%M', '-o', rssFile];
    const stdoutFd = step.stdout === 'null' ? fs.openSync('/dev/null', 'w') : 'pipe';
    const argv = step.shell ? ['sh', '-c', step.shell(time.map(q).join(' '))] : [...time, ...step.argv];
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', stdoutFd, 'pipe'], cwd: out, env: STEP_ENV });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => {
      if (stdout.length < 1e5) stdout += d;
    });
    child.stderr.on('data', (d) => {
      if (stderr.length < 1e5) stderr += d;
    });
    child.on('close', (code, signal) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (typeof stdoutFd === 'number') fs.closeSync(stdoutFd);
      let rssKB = NaN;
      try {
        rssKB = Number(fs.readFileSync(rssFile, 'utf8').trim().split('\n').pop());
      } catch {
        /* no RSS: the step failed before /usr/bin/time wrote it */
      }
      resolve({ ok: code === 0, code: code ?? signal, seconds, rssKB, stdout, stderr });
    });
  });
}

/**
 * MiB of memory to touch before a run of `kase` (0: none): cases that write an image need about
 * twice its allocated bytes of new page cache at most (the manual workflow: chunk files, then the
 * image). Capped at half the free memory, so that the corpus stays in the page cache.
 */
function touchMiB(kase) {
  if (!kase.output && !kase.writes) return 0;
  const want = (2 * kase.corpus.meta.rawAllocatedBytes) / 2 ** 20 + 256;
  return Math.floor(Math.min(want, os.freemem() / 2 / 2 ** 20));
}

/** One run of a case in a fresh directory: total time of the steps, max RSS of the steps. */
async function runCase(kase, out, touch) {
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  const mib = touch ? touchMiB(kase) : 0;
  if (mib > 0) {
    const r = spawnSync(process.execPath, [path.join(__dirname, 'touch-memory.js'), String(mib)], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`${kase.name}: touch-memory.js failed`);
  }
  const rssFile = path.join(WORK, 'rss.txt');
  let seconds = 0;
  let rssKB = 0;
  let stdout = '';
  for (const step of kase.steps(out)) {
    fs.rmSync(rssFile, { force: true });
    spawnSync('sync'); // nothing dirty left from before is written back during the timed command
    const r = await runStep(step, out, rssFile);
    if (!r.ok) throw new Error(`${kase.name}: step exited with ${r.code}\n${r.stderr.trim().slice(-2000)}`);
    seconds += r.seconds;
    rssKB = Math.max(rssKB, r.rssKB);
    stdout = r.stdout;
  }
  return { seconds, rssKB, stdout };
}

function verifyOutput(kase, out) {
  const file = path.join(out, kase.output);
  const source = kase.corpus.raw;
  let argv;
  if (kase.verify === 'cmp') argv = ['cmp', source, file];
  else argv = ['qemu-img', 'compare', '-q', '-f', 'raw', '-F', path.extname(file).slice(1), source, file];
  const t0 = Date.now();
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  const ok = r.status === 0;
  return { check: argv[0] === 'cmp' ? 'cmp' : 'qemu-img compare', ok, seconds: (Date.now() - t0) / 1000, detail: ok ? undefined : `${r.stdout}${r.stderr}`.trim().slice(0, 500) };
}

function cleanup(out) {
  fs.rmSync(out, { recursive: true, force: true });
  spawnSync('sync'); // no dirty pages of this run left to slow down the next one
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---------------------------------------------------------------------------------------------
// Output

function fmt(n, digits = 2) {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

function table(rows, headers, align) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (align[i] === 'r' ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/**
 * The ratios of RATIOS, per round: in round r, the numerator's time over the slowest of the
 * denominators' times in the same round (a list inside the denominators: the first of them that
 * ran). Rounds run every case back to back, so a slow phase of the machine hits both sides of a
 * ratio alike; the median of the per-round ratios is the value, min and max its range.
 */
function computeRatios(results, smallKey) {
  const byName = Object.fromEntries(results.filter((r) => r.runs?.length).map((r) => [r.name, r]));
  const pick = (d) => (Array.isArray(d) ? d.find((n) => byName[n]) : byName[d] ? d : undefined);
  const ratios = RATIOS.map(([id, label, num, dens, target]) => {
    const den = dens.map(pick);
    const base = { id, label, numerator: num, denominators: den, target };
    if (!byName[num] || den.some((d) => d === undefined)) return { ...base, value: undefined, pass: undefined };
    const rounds = Math.min(byName[num].runs.length, ...den.map((d) => byName[d].runs.length));
    const perRound = [];
    for (let r = 0; r < rounds; r++) perRound.push(byName[num].runs[r] / Math.max(...den.map((d) => byName[d].runs[r])));
    const value = median(perRound);
    return { ...base, value, min: Math.min(...perRound), max: Math.max(...perRound), perRound, pass: target === null ? undefined : value <= target };
  });
  // Peak RSS: every xva2img run <= RSS_LIMIT_MB, and raw vs raw-small within RSS_SPREAD.
  const xr = results.filter((r) => (r.group === 'xva2img' || r.group === 'mode') && Number.isFinite(r.peakRssMB));
  const worst = xr.reduce((w, r) => (!w || r.peakRssMB > w.peakRssMB ? r : w), undefined);
  ratios.push({
    id: 'rss',
    label: 'peak RSS of xva2img, worst case (MB)',
    value: worst?.peakRssMB,
    worstCase: worst?.name,
    target: RSS_LIMIT_MB,
    pass: worst ? worst.peakRssMB <= RSS_LIMIT_MB : undefined,
  });
  const big = byName.raw;
  const small = byName['raw-small'];
  const spread = big && small ? Math.abs(big.peakRssMB - small.peakRssMB) / Math.min(big.peakRssMB, small.peakRssMB) : undefined;
  ratios.push({
    id: 'rss-size',
    label: `peak RSS raw (main) vs raw-small (${smallKey ?? 'n/a'}), relative difference`,
    value: spread,
    target: RSS_SPREAD,
    pass: spread === undefined ? undefined : spread <= RSS_SPREAD,
  });
  return ratios;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const env = stepEnv(opts.keepEnv);
  STEP_ENV = env.env;
  const sizeBytes = parseSize(opts.size);
  const smallBytes = opts.smallSize === '0' ? 0 : parseSize(opts.smallSize);
  const wantSmall = smallBytes > 0 && smallBytes !== sizeBytes;

  const selected = (names) => (kase) => !names || names.includes(kase.name) || names.includes(kase.group);
  // The NBD serving cases run their own servers and clients (bench/nbd-cases.js), after the others.
  const nbdOnly = opts.only && opts.only.filter(nbdBench.isNbdCase);
  const wantNbd = !opts.only || nbdOnly.length > 0;
  // The block-device cases (bench/device-cases.js) need root: only when named.
  const deviceOnly = opts.only ? opts.only.filter(deviceBench.isDeviceCase) : [];
  if (opts.only) opts.only = opts.only.filter((n) => !nbdBench.isNbdCase(n) && !deviceBench.isDeviceCase(n));
  if (opts.list) {
    const fake = { xva: 'x.xva', sha1: 's.xva', gz: 'x.xva.gz', zst: 'x.xva.zst', raw: 'disk.raw', diskRef: 'Ref:10', meta: { key: 'small' } };
    const listed = [
      ...buildCases(fake, fake).map((k) => [k.name, k.group, `${k.slow ? 'slow ' : '     '}${k.desc}`]),
      ...nbdBench.NBD_CASES.map((k) => [k.name, 'nbd', `     ${k.client} via ${k.server} (bench/nbd-cases.js)`]),
      ...deviceBench.DEVICE_CASES.map((k) => [k.name, 'device', '     (bench/device-cases.js, root, only when named)']),
    ];
    const width = Math.max(...listed.map(([name]) => name.length));
    for (const [name, group, text] of listed) console.log(`${name.padEnd(width)}  ${group.padEnd(9)} ${text}`);
    return;
  }
  if (!fs.existsSync(path.join(__dirname, '..', 'dist', 'xva', 'writer.js'))) throw new Error('dist/ is missing: run `npm run build` (npm run bench does)');
  if (!opts.keepCorpus) for (const name of pruneStaleCorpora()) console.error(`[corpus] removed stale ${name}`);

  const started = new Date();
  const load0 = os.loadavg();
  const corpus = await ensureCorpus(sizeBytes, { source: opts.source });
  const needSmall = wantSmall && (!opts.only || opts.only.includes('raw-small') || opts.only.includes('xva2img'));
  const small = needSmall ? await ensureCorpus(smallBytes, { source: opts.source }) : undefined;

  const all = buildCases(corpus, small);
  if (opts.only) {
    const unknown = opts.only.filter((n) => !all.some((k) => k.name === n || k.group === n));
    if (unknown.length) throw new Error(`unknown case(s) ${unknown.join(', ')}; known: ${all.map((k) => k.name).join(', ')}`);
  }
  const cases = all.filter(selected(opts.only)).filter((k) => !(opts.quick && k.slow && !opts.only));
  const mach = machine();
  console.error(`[bench] ${cases.length} cases x (1 warm-up + ${opts.runs} runs) on ${corpus.key}; load ${load0.map((l) => l.toFixed(2)).join(' ')}`);

  // Warm-up and check each case once, then measure in rounds: round r runs every case once, in
  // order. A slow phase of the machine (this VM's host is noisy for tens of seconds at a time)
  // then lands on all cases alike instead of on whichever case was running.
  const results = [];
  const live = [];
  for (const kase of cases) {
    const out = path.join(WORK, kase.name);
    const res = { name: kase.name, group: kase.group, desc: kase.desc, corpus: kase.corpus.key };
    results.push(res);
    try {
      process.stderr.write(`[bench] ${kase.name}: warm-up`);
      await runCase(kase, out, opts.touch);
      if (opts.verify && kase.verify) {
        res.verify = verifyOutput(kase, out);
        process.stderr.write(`, ${res.verify.check} ${res.verify.ok ? 'ok' : 'FAILED'}`);
      }
      process.stderr.write('\n');
      cleanup(out);
      live.push({ kase, out, res, runs: [], inner: [] });
    } catch (err) {
      process.stderr.write('\n');
      console.error(`[bench] ${kase.name} FAILED: ${err.message}`);
      res.error = err.message.slice(0, 1000);
      cleanup(out);
    }
  }
  for (let round = 1; round <= opts.runs; round++) {
    process.stderr.write(`[bench] round ${round}/${opts.runs}:`);
    for (const c of live) {
      if (c.res.error) continue;
      try {
        const r = await runCase(c.kase, c.out, opts.touch);
        cleanup(c.out);
        c.runs.push(r);
        process.stderr.write(` ${c.kase.name} ${r.seconds.toFixed(2)}`);
        if (c.kase.group === 'floor' && r.stdout.trim().startsWith('{')) c.inner.push(JSON.parse(r.stdout.trim()));
      } catch (err) {
        console.error(`\n[bench] ${c.kase.name} FAILED: ${err.message}`);
        c.res.error = err.message.slice(0, 1000);
        cleanup(c.out);
      }
    }
    process.stderr.write('\n');
  }
  for (const { kase, res, runs, inner } of live) {
    if (res.error) continue;
    const secs = runs.map((r) => r.seconds);
    res.median = median(secs);
    res.min = Math.min(...secs);
    res.max = Math.max(...secs);
    res.runs = secs.map((x) => Number(x.toFixed(3)));
    res.peakRssMB = Math.max(...runs.map((r) => r.rssKB)) / 1024;
    res.mbPerSec = kase.corpus.meta.xva.bytes / 1e6 / res.median;
    if (inner.some((x) => x.hashSeconds !== undefined)) res.hashOnlySeconds = median(inner.map((x) => x.hashSeconds));
  }
  const nbd = wantNbd ? await nbdBench.runNbd(corpus, { runs: opts.runs, only: nbdOnly || null, workDir: WORK, env: STEP_ENV }) : undefined;
  const device = deviceOnly.length ? await deviceBench.runDevice(corpus, { runs: opts.runs, only: deviceOnly, workDir: WORK, env: STEP_ENV }) : undefined;
  fs.rmSync(WORK, { recursive: true, force: true });

  const ratios = computeRatios(results, small?.key);
  const load1 = os.loadavg();

  // ---- print
  const m = corpus.meta;
  console.log(`\nxva2img bench  ${started.toISOString()}  (${opts.runs} rounds of every case after 1 warm-up each, warm page cache)`);
  console.log(`machine: ${mach.cpus} x ${mach.cpuModel}, ${mach.ramGiB} GiB RAM, Node ${mach.node}, ${mach.os}`);
  console.log(`corpus fs: ${mach.corpusFs.type} on ${mach.corpusFs.device} (${mach.corpusFs.disk || 'disk model unknown'})`);
  if (env.removed.length) console.log(`environment: ${env.removed.join(', ')} removed for the timed commands (Node start-up cost of this machine's set-up; --keep-env keeps it)`);
  console.log(`load average: start ${load0.map((l) => l.toFixed(2)).join(' ')}, end ${load1.map((l) => l.toFixed(2)).join(' ')}`);
  console.log(
    `corpus ${m.key}: ext4, ${sizeLabel(m.virtualSize)} virtual, ${(m.filesBytes / 1e9).toFixed(2)} GB of files (${m.files} files sampled from ${m.source}: ${(m.sourceBytes / 1e9).toFixed(2)} GB), ` +
      `${(m.rawAllocatedBytes / 1e9).toFixed(2)} GB allocated; XVA ${(m.xva.bytes / 1e9).toFixed(2)} GB (${m.xva.chunksWritten} chunks), gz ${(m.gz.bytes / 1e9).toFixed(2)} GB, zst ${(m.zst.bytes / 1e9).toFixed(2)} GB`,
  );
  if (small) console.log(`small corpus ${small.key}: ${(small.meta.filesBytes / 1e9).toFixed(2)} GB of files, XVA ${(small.meta.xva.bytes / 1e9).toFixed(2)} GB`);
  console.log(`MB/s = uncompressed XVA bytes / median time (like for like across cases)\n`);
  // Headline (default flags) first, then the other modes, the baselines and the floors.
  const GROUP_TITLE = { xva2img: 'xva2img, default flags', mode: 'xva2img, other modes', baseline: 'baselines (same job, other tools, flushed)', floor: 'floors (decoders alone)' };
  const rows = [];
  for (const group of Object.keys(GROUP_TITLE)) {
    const inGroup = results.filter((r) => r.group === group);
    if (inGroup.length === 0) continue;
    rows.push([`-- ${GROUP_TITLE[group]}`, '', '', '', '', '', '']);
    for (const r of inGroup) {
      rows.push(
        r.error
          ? [r.name, 'FAILED', '', '', '', '', '']
          : [r.name, fmt(r.median), fmt(r.min), fmt(r.max), fmt(r.mbPerSec, 0), fmt(r.peakRssMB, 1), r.verify ? (r.verify.ok ? 'ok' : 'FAIL') : ''],
      );
    }
  }
  console.log(table(rows, ['case', 'median s', 'min', 'max', 'MB/s', 'peak RSS MB', 'output'], ['l', 'r', 'r', 'r', 'r', 'r', 'l']));
  const hashRows = results.filter((r) => r.hashOnlySeconds !== undefined);
  if (hashRows.length) console.log(`\nhash function alone (inside the floor runs): ${hashRows.map((r) => `${r.name} ${fmt(r.hashOnlySeconds)} s`).join(', ')}`);
  console.log('');
  const ratioRows = ratios.map((r) => [
    r.id,
    r.label + (r.worstCase ? ` [${r.worstCase}]` : '') + (r.denominators?.length > 1 ? ` [${r.denominators.join(', ')}]` : ''),
    r.value === undefined ? 'n/a' : r.id === 'rss' ? fmt(r.value, 1) : fmt(r.value, 3),
    r.min === undefined ? '' : `${fmt(r.min, 3)}-${fmt(r.max, 3)}`,
    r.target === null ? '-' : `<= ${r.target}`,
    r.target === null ? 'info' : r.pass === undefined ? 'n/a' : r.pass ? 'PASS' : 'FAIL',
  ]);
  console.log('ratios: median of the per-round ratios (range over the rounds)');
  console.log(table(ratioRows, ['', 'ratio', 'median', 'min-max', 'target', ''], ['l', 'l', 'r', 'r', 'l', 'l']));
  if (nbd) console.log(`\n${nbdBench.formatNbd(nbd, { fmt, table })}`);
  if (device) console.log(`\n${deviceBench.formatDevice(device, { fmt, table })}`);

  // ---- JSON (small, commit-able)
  const json = {
    startedAt: started.toISOString(),
    xva2img: { bin: BIN, commit: gitCommit(path.dirname(path.dirname(BIN))) },
    options: { size: sizeLabel(sizeBytes), smallSize: small ? sizeLabel(smallBytes) : null, runs: opts.runs, quick: opts.quick, only: opts.only, warmup: 1, order: 'rounds', pageCache: 'warm', syncBeforeEachStep: true, touchMemory: opts.touch, envRemoved: env.removed },
    machine: { ...mach, loadavgStart: load0.map((l) => Number(l.toFixed(2))), loadavgEnd: load1.map((l) => Number(l.toFixed(2))) },
    corpus: { ...m, builtAt: undefined, host: undefined },
    smallCorpus: small ? { key: small.key, virtualSize: small.meta.virtualSize, filesBytes: small.meta.filesBytes, rawAllocatedBytes: small.meta.rawAllocatedBytes, xvaBytes: small.meta.xva.bytes } : null,
    results: results.map((r) => ({
      ...r,
      median: r.median === undefined ? undefined : Number(r.median.toFixed(3)),
      min: r.min === undefined ? undefined : Number(r.min.toFixed(3)),
      max: r.max === undefined ? undefined : Number(r.max.toFixed(3)),
      mbPerSec: r.mbPerSec === undefined ? undefined : Math.round(r.mbPerSec),
      peakRssMB: r.peakRssMB === undefined ? undefined : Number(r.peakRssMB.toFixed(1)),
      hashOnlySeconds: r.hashOnlySeconds === undefined ? undefined : Number(r.hashOnlySeconds.toFixed(3)),
    })),
    ratios: ratios.map((r) => ({
      ...r,
      value: r.value === undefined ? null : Number(r.value.toFixed(4)),
      min: r.min === undefined ? undefined : Number(r.min.toFixed(4)),
      max: r.max === undefined ? undefined : Number(r.max.toFixed(4)),
      perRound: r.perRound?.map((x) => Number(x.toFixed(4))),
    })),
    nbd: nbd ?? null,
    device: device ?? null,
  };
  fs.mkdirSync(path.dirname(opts.json), { recursive: true });
  fs.writeFileSync(`${opts.json}.tmp`, `${JSON.stringify(json, null, 2)}\n`);
  fs.renameSync(`${opts.json}.tmp`, opts.json);
  console.log(`\nresults: ${path.relative(process.cwd(), opts.json)}`);

  const failed = results.some((r) => r.error || (r.verify && !r.verify.ok)) || (nbd?.check && !nbd.check.ok) || (device?.check && !device.check.ok);
  process.exitCode = failed ? 1 : 0;
}

main().catch((err) => {
  console.error(err.stack || err);
  process.exit(2);
});
