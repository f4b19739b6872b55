'use strict';
/**
 * Where the CPU time of a command goes, thread by thread (child processes included), from
 * `perf record -e cpu-clock -g` (a software event: it works inside VMs without hardware counters).
 *
 *   node bench/thread-profile.js [--top N] [--hz 1000] -- node bin/xva2img x.xva.gz -q -o out.raw
 *
 * For each thread: CPU seconds (samples / frequency) and its most frequent stacks, each shown as
 * "leaf function | system call | first user-space frame". Node names every thread `node`; the
 * role shows in the stacks: the main thread is the process's first thread (V8 builtins, JIT
 * code, epoll_pwait), the writer thread pwrite64s, the libuv pool preads / fdatasyncs, the
 * decoder thread reads a socket or pipe, `igzip`/`zstd` are their own processes.
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function parseArgs(argv) {
  const o = { top: 8, hz: 1000, command: [] };
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  o.command = dash < 0 ? [] : argv.slice(dash + 1);
  for (let i = 0; i < own.length; i++) {
    if (own[i] === '--top') o.top = Number(own[++i]);
    else if (own[i] === '--hz') o.hz = Number(own[++i]);
    else throw new Error(`unknown option ${own[i]}`);
  }
  if (o.command.length === 0) throw new Error('usage: thread-profile.js [--top N] [--hz F] -- <command...>');
  return o;
}

/** Samples of `perf script -F comm,pid,tid,ip,sym`: one { comm, pid, tid, frames } per sample. */
function readSamples(data) {
  const r = spawnSync('perf', ['script', '-i', data, '-F', 'comm,pid,tid,ip,sym'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`perf script failed: ${r.stderr}`);
  const samples = [];
  let cur;
  for (const line of r.stdout.split('\n')) {
    if (!line.trim()) {
      if (cur) samples.push(cur);
      cur = undefined;
      continue;
    }
    const head = /^\s*(\S+)\s+(\d+)\/(\d+)/.exec(line);
    if (head && !/^\s+[0-9a-f]+ /.test(line)) {
      cur = { comm: head[1], pid: head[2], tid: head[3], frames: [] };
    } else if (cur) {
      const m = /^\s*[0-9a-f]+\s+(.*)$/.exec(line);
      if (m) cur.frames.push(m[1].replace(/\+0x[0-9a-f]+$/, ''));
    }
  }
  if (cur) samples.push(cur);
  return samples;
}

/** "leaf | syscall | first user-space frame" of a stack (kernel frames come first in perf). */
function stackKey(frames) {
  const leaf = frames[0] ?? '?';
  const sys = frames.find((f) => /__x64_sys_|ksys_|__do_sys_/.test(f)) ?? '';
  // Below the kernel's entry point, the user-space caller of the system call.
  const entry = frames.findIndex((f) => /entry_SYSCALL/.test(f));
  const user = entry >= 0 ? (frames[entry + 1] ?? '') : '';
  return `${leaf.slice(0, 44)} | ${sys.slice(0, 26)} | ${user.slice(0, 40)}`;
}

function main() {
  const o = parseArgs(process.argv.slice(2));
  const data = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tprof-')), 'perf.data');
  const started = process.hrtime.bigint();
  const rec = spawnSync('perf', ['record', '-q', '-e', 'cpu-clock', '-F', String(o.hz), '-g', '-o', data, '--', ...o.command], { stdio: ['inherit', 'inherit', 'inherit'] });
  if (rec.status !== 0) throw new Error(`perf record exited with ${rec.status ?? rec.signal} (is perf installed and allowed here?)`);
  // Wall time of the profiled command, perf's own start and its writing of samples included.
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  const samples = readSamples(data);
  fs.rmSync(path.dirname(data), { recursive: true, force: true });
  const byThread = new Map();
  for (const s of samples) {
    const key = `${s.comm} ${s.pid}/${s.tid}`;
    if (!byThread.has(key)) byThread.set(key, { pid: s.pid, tid: s.tid, comm: s.comm, samples: [] });
    byThread.get(key).samples.push(s);
  }
  const threads = [...byThread.values()].sort((a, b) => b.samples.length - a.samples.length);
  const total = samples.length / o.hz;
  console.log(`${samples.length} samples at ${o.hz} Hz: ${total.toFixed(2)} CPU-s over ${threads.length} threads, ${wall.toFixed(2)} s wall`);
  for (const t of threads) {
    const secs = t.samples.length / o.hz;
    if (secs < 0.02) continue;
    const role = t.pid === t.tid ? 'first thread' : 'thread';
    console.log(`\n${t.comm} ${t.pid}/${t.tid} (${role}): ${secs.toFixed(2)} s (${((100 * t.samples.length) / samples.length).toFixed(1)} %)`);
    const counts = new Map();
    for (const s of t.samples) counts.set(stackKey(s.frames), (counts.get(stackKey(s.frames)) ?? 0) + 1);
    for (const [k, n] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, o.top)) console.log(`  ${(n / o.hz).toFixed(2).padStart(6)} s  ${k}`);
  }
}

try {
  main();
} catch (err) {
  console.error(err.message);
  process.exit(1);
}
