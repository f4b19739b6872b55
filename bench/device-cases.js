'use strict';
/**
 * Block-device cases of the bench (run by bench/run.js only when asked: `--only device`, or
 * single cases by name, see DEVICE_CASES). Root only: a loop device over a preallocated file of
 * the disk's size, next to the corpus.
 *
 *   device-raw-xva        xva2img corpus.xva -o /dev/loopN        (holes written as zeros, fdatasync)
 *   device-raw-qemu       qemu-img convert -n -f raw -O raw disk.raw /dev/loopN
 *   device-raw-xva-zero   the same with --target-is-zero: holes not written (information)
 *   device-raw-qemu-zero  the same with --target-is-zero (information)
 *
 * Every timed command is followed by `sync` inside the timing, so both sides pay for the data
 * reaching the backing file (equal durability: qemu-img flushes on close, xva2img fdatasyncs the
 * device). The device is filled with a non-zero byte once, untimed, and every output is checked
 * once (untimed) with `qemu-img compare` against disk.raw. Rounds as in run.js: every case once
 * per round, back to back; ratios are medians of the per-round ratios, with their range.
 */
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { hasTool, median } = require('./nbd-cases');

const ROOT = path.join(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'xva2img');
const TOOLS = ['losetup', 'qemu-img', 'sync'];

const DEVICE_CASES = [
  { name: 'device-raw-xva', argv: (c, dev) => [process.execPath, BIN, c.xva, '-o', dev, '-q'] },
  { name: 'device-raw-qemu', argv: (c, dev) => ['qemu-img', 'convert', '-n', '-f', 'raw', '-O', 'raw', c.raw, dev] },
  { name: 'device-raw-xva-zero', argv: (c, dev) => [process.execPath, BIN, c.xva, '-o', dev, '-q', '--target-is-zero'], zero: true },
  { name: 'device-raw-qemu-zero', argv: (c, dev) => ['qemu-img', 'convert', '-n', '--target-is-zero', '-f', 'raw', '-O', 'raw', c.raw, dev], zero: true },
];

/** [id, label, numerator, denominator, target or null for information]. */
const DEVICE_RATIOS = [
  ['d1', 'raw onto a block device: xva2img XVA / qemu-img convert -n of the extracted disk.raw', 'device-raw-xva', 'device-raw-qemu', null],
  ['d2', 'the same with --target-is-zero on both sides', 'device-raw-xva-zero', 'device-raw-qemu-zero', null],
];

function isDeviceCase(name) {
  return name === 'device' || DEVICE_CASES.some((c) => c.name === name);
}

function sh(argv, env) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${(r.stderr || '').trim().slice(-500)}`);
  return r.stdout;
}

/** A command then `sync`, timed together (wall-clock seconds); throws when it fails. */
function timedWithSync(argv, env) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${argv.join(' ')} exited ${code}: ${err.trim().slice(-500)}`));
      spawnSync('sync');
      resolve(Number(process.hrtime.bigint() - t0) / 1e9);
    });
  });
}

/**
 * Fills the device with `byte` (untimed): 0xa5 before the first round, so that a hole left
 * unwritten shows in the check; zeros before each --target-is-zero case, which promises them.
 */
function fill(device, size, byte) {
  const buf = Buffer.alloc(16 * 2 ** 20, byte);
  const fd = fs.openSync(device, 'w');
  try {
    for (let at = 0; at < size; at += buf.length) fs.writeSync(fd, buf, 0, Math.min(buf.length, size - at), at);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Runs the device cases named in `only` (null or 'device': all) on `corpus`: one warm-up and
 * `runs` rounds. Returns { results, ratios, check } or { skipped } when a tool or root is missing.
 */
async function runDevice(corpus, { runs, only, workDir, env, log = (s) => process.stderr.write(s) }) {
  const missing = TOOLS.filter((t) => !hasTool(t));
  if (missing.length) return { skipped: `needs ${missing.join(', ')} on the PATH` };
  if (process.getuid && process.getuid() !== 0) return { skipped: 'needs root (losetup)' };
  const cases = DEVICE_CASES.filter((c) => !only || only.includes('device') || only.includes(c.name));
  const size = corpus.meta.virtualSize;
  const dir = path.join(workDir, 'device');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'device.img');
  sh(['fallocate', '-l', String(size), file], env);
  const device = sh(['losetup', '-f', '--show', file], env).trim();
  try {
    const check = { check: 'qemu-img compare of the device with disk.raw after each case (once)', ok: true, detail: undefined };
    const times = new Map(cases.map((c) => [c.name, []]));
    for (let round = 0; round <= runs; round++) {
      log(round === 0 ? '[bench] device warm-up:' : `[bench] device round ${round}/${runs}:`);
      for (const kase of cases) {
        // --target-is-zero promises zeros where nothing is written: give it a zeroed device (untimed).
        if (kase.zero) fill(device, size, 0);
        else if (round === 0) fill(device, size, 0xa5);
        const s = await timedWithSync(kase.argv(corpus, device), env);
        if (round === 0) {
          const r = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', device, corpus.raw], { encoding: 'utf8', env });
          if (r.status !== 0) {
            check.ok = false;
            check.detail = `${kase.name}: ${`${r.stdout}${r.stderr}`.trim().slice(0, 300)}`;
          }
        } else times.get(kase.name).push(s);
        log(` ${kase.name} ${s.toFixed(2)}`);
      }
      log('\n');
    }
    const results = cases.map((c) => {
      const secs = times.get(c.name);
      return { name: c.name, median: median(secs), min: Math.min(...secs), max: Math.max(...secs), runs: secs.map((x) => Number(x.toFixed(3))) };
    });
    const ratios = DEVICE_RATIOS.filter(([, , num, den]) => times.has(num) && times.has(den)).map(([id, label, num, den, target]) => {
      const perRound = times.get(num).map((t, i) => t / times.get(den)[i]);
      return { id, label, numerator: num, denominator: den, value: median(perRound), min: Math.min(...perRound), max: Math.max(...perRound), perRound, target };
    });
    return { results, ratios, check, device: { size } };
  } finally {
    spawnSync('losetup', ['-d', device]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Text for run.js's report. */
function formatDevice(dev, { fmt, table }) {
  if (dev.skipped) return `device cases skipped: ${dev.skipped}`;
  const rows = dev.results.map((r) => [r.name, fmt(r.median), fmt(r.min), fmt(r.max)]);
  const ratioRows = dev.ratios.map((r) => [`(${r.id})`, r.label, fmt(r.value, 3), `${fmt(r.min, 3)}-${fmt(r.max, 3)}`]);
  return [
    `Block device (loop device of ${(dev.device.size / 2 ** 30).toFixed(1)} GiB, each command + sync; ${dev.check.check}: ${dev.check.ok ? 'ok' : `FAILED ${dev.check.detail}`})`,
    table(rows, ['case', 'median s', 'min', 'max'], ['l', 'r', 'r', 'r']),
    '',
    table(ratioRows, ['', 'ratio', 'median', 'min-max'], ['l', 'l', 'r', 'r']),
  ].join('\n');
}

module.exports = { DEVICE_CASES, isDeviceCase, runDevice, formatDevice };
