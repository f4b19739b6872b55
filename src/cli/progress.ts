/**
 * Progress on stderr with cli-progress, only when stderr is a TTY and not --quiet (callers pass
 * `enabled`). Measures bytes read against the input size when known (file, Content-Length),
 * else bytes placed against the summed virtual sizes.
 *
 *  - createProgress: one bar (verify, info --chunks, a single conversion);
 *  - createBatchProgress: a MultiBar with one bar per running input plus a total bar
 *    (several inputs); text logged meanwhile goes above the bars.
 */
import * as path from 'node:path';
import type * as CliProgress from 'cli-progress';

/** cli-progress, loaded once a bar is shown (see the lazy-require note in main.ts). */
function cliProgressModule(): typeof CliProgress {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('cli-progress') as typeof CliProgress;
}
import type { XvaProgress } from '../xva/reader';
import { formatBytes } from './format';

export interface ProgressReporter {
  update(p: XvaProgress): void;
  stop(): void;
}

const NOOP: ProgressReporter = { update: () => {}, stop: () => {} };

const LABEL_WIDTH = 24;

/** A short fixed-width label for an input (file name, or the URL's last path part). */
export function progressLabel(input: string, width = LABEL_WIDTH): string {
  let base = input;
  if (/^https?:\/\//i.test(input)) {
    try {
      const u = new URL(input);
      base = path.posix.basename(u.pathname) || u.host;
    } catch {
      /* keep as is */
    }
  } else if (input !== '-') {
    base = path.basename(input);
  } else {
    base = 'stdin';
  }
  if (base.length > width) base = '…' + base.slice(base.length - width + 1);
  return base.padEnd(width);
}

function measure(p: XvaProgress): { value: number; total: number } {
  const byInput = p.rawSize !== undefined && p.rawBytesRead !== undefined && p.rawSize > 0;
  return byInput ? { value: p.rawBytesRead!, total: p.rawSize! } : { value: p.diskBytesDone, total: p.diskBytesTotal };
}

function rate(bytes: number, since: number): string {
  const secs = (Date.now() - since) / 1000;
  return secs > 0 ? `${formatBytes(bytes / secs)}/s` : '-';
}

export function createProgress(label: string, enabled: boolean): ProgressReporter {
  if (!enabled) return NOOP;
  const cliProgress = cliProgressModule();
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${progressLabel(label)} {bar} {percentage}% | {done} / {all} | {rate} | ETA {eta_formatted}`,
      hideCursor: true,
      etaBuffer: 50,
      fps: 5,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const start = Date.now();
  let begun = false;
  return {
    update(p) {
      const { value, total } = measure(p);
      const payload = { done: formatBytes(value), all: formatBytes(total), rate: rate(value, start) };
      if (!begun) {
        bar.start(Math.max(total, 1), value, payload);
        begun = true;
      } else {
        bar.setTotal(Math.max(total, 1));
        bar.update(value, payload);
      }
    },
    stop() {
      if (begun) bar.stop();
      begun = false;
    },
  };
}

export interface BatchProgress {
  /** A bar for input `index` (shown until its reporter is stopped). */
  start(index: number, input: string): ProgressReporter;
  /** Prints a line above the bars (or straight to stderr when there are none). */
  log(text: string): void;
  /** Removes every bar. */
  stop(): void;
  readonly enabled: boolean;
}

/** One bar per running input and, with several inputs, a total bar. */
export function createBatchProgress(count: number, enabled: boolean): BatchProgress {
  if (!enabled) {
    return {
      start: () => NOOP,
      log: (text) => void process.stderr.write(text.endsWith('\n') ? text : text + '\n'),
      stop: () => {},
      enabled: false,
    };
  }
  const cliProgress = cliProgressModule();
  const multi = new cliProgress.MultiBar(
    {
      stream: process.stderr,
      format: '{label} {bar} {percentage}% | {info}',
      hideCursor: true,
      etaBuffer: 50,
      fps: 5,
      clearOnComplete: true,
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  const fractions = new Map<number, number>(); // running inputs: 0..1
  const bytes = new Map<number, number>();
  let finished = 0;
  const SCALE = 1000;
  const total =
    count > 1 ? multi.create(count * SCALE, 0, { label: 'total'.padEnd(LABEL_WIDTH), info: `0/${count} inputs` }) : undefined;
  const refreshTotal = (): void => {
    if (!total) return;
    let value = finished * SCALE;
    for (const f of fractions.values()) value += f * SCALE;
    let sum = 0;
    for (const b of bytes.values()) sum += b;
    total.update(Math.min(value, count * SCALE), { info: `${finished}/${count} inputs | ${formatBytes(sum)} | ${rate(sum, started)}` });
  };
  return {
    enabled: true,
    start(index, input) {
      const t0 = Date.now();
      const bar = multi.create(1, 0, { label: progressLabel(input), info: 'starting' });
      fractions.set(index, 0);
      let stopped = false;
      return {
        update(p) {
          if (stopped) return;
          const { value, total: all } = measure(p);
          bar.setTotal(Math.max(all, 1));
          bar.update(value, { info: `${formatBytes(value)} / ${formatBytes(all)} | ${rate(value, t0)}` });
          fractions.set(index, all > 0 ? Math.min(1, value / all) : 0);
          bytes.set(index, p.tarBytes);
          refreshTotal();
        },
        stop() {
          if (stopped) return;
          stopped = true;
          multi.remove(bar);
          fractions.delete(index);
          finished++;
          refreshTotal();
        },
      };
    },
    log(text) {
      multi.log(text.endsWith('\n') ? text : text + '\n');
    },
    stop() {
      multi.stop();
    },
  };
}
