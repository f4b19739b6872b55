/**
 * Leaving a core to the process the run waits for (docs/design/cpu-yield.md).
 *
 * When the bytes come from a decoding program this process started (`igzip -dc`, `zstd -dc`)
 * or from a producer on the other end of a pipe (`gunzip -c vm.xva.gz | xva2img -`), that
 * process is the floor of the whole run: xva2img cannot finish before it does. On a machine with
 * few cores our own threads (parse and hash, the decoder thread reading the pipe, the writer
 * thread, V8's compiler and GC) compete with it for those cores, and the kernel shares a core
 * between runnable threads by weight: the producer gets its fair share, not the core it needs,
 * and the whole run is slowed by about half of what we spend. Raising our threads' nice value
 * a few steps makes the scheduler give the producer a core whenever it can run, and us the
 * rest; when cores are free (or the producer waits for its own input) nice changes nothing.
 *
 * Only where the process's owner asked for it (`enableCpuYield`: the command line does): a
 * library call must not change the scheduling of the program that embeds it.
 *
 * Linux only: there `setpriority` on a thread id changes that thread alone, and threads and
 * child processes inherit the nice value of the thread that creates them. So this runs after
 * the producer has been started (a child spawned later would inherit our nice value too) and
 * covers every thread that exists (listed in /proc/self/task); threads started later inherit
 * it from the main thread. Elsewhere the nice value is per process and would be inherited by
 * the decoder child we want to favour: nothing is done.
 */
import fs from 'node:fs';
import os from 'node:os';

/**
 * Nice steps added to our threads. Each step is a factor of ~1.25 in CFS weight: +5 gives a
 * nice-0 producer ~3x our weight per thread, which keeps it on a core of its own against our
 * 3-4 busy threads, while we still get the whole of any idle core (measured: docs/design/cpu-yield.md).
 */
export const YIELD_NICE_STEPS = 5;

let enabled = false;
let yielded = false;

/** Lets yieldCpuToProducer act in this process (the CLI calls it; the library leaves it off). */
export function enableCpuYield(): void {
  enabled = true;
}

/** Raises every thread's nice value by YIELD_NICE_STEPS (once per process; a no-op off Linux). */
export function yieldCpuToProducer(): void {
  if (!enabled || yielded || process.platform !== 'linux') return;
  yielded = true;
  const steps = yieldSteps();
  if (steps === 0) return;
  let tids: string[];
  try {
    tids = fs.readdirSync('/proc/self/task');
  } catch {
    return; // no /proc: nothing to renice
  }
  for (const name of tids) {
    const tid = Number(name);
    try {
      os.setPriority(tid, Math.min(19, os.getPriority(tid) + steps));
    } catch {
      // The thread ended meanwhile, or a security policy refuses: scheduling is only a hint.
    }
  }
}

/** XVA2IMG_YIELD_NICE overrides the step count (0 turns yielding off); for measurements. */
function yieldSteps(): number {
  const v = process.env.XVA2IMG_YIELD_NICE;
  if (v === undefined || v === '') return YIELD_NICE_STEPS;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 19 ? n : YIELD_NICE_STEPS;
}

/** Test hook: whether yieldCpuToProducer has run in this process. */
export function hasYieldedCpu(): boolean {
  return yielded;
}
