/**
 * Progress on stderr, only when stderr is a TTY and not --quiet (callers pass `enabled`).
 * Measures bytes read against the input size when known (file, Content-Length), else bytes
 * placed against the summed virtual sizes.
 *
 *  - createProgress: one bar (verify, info --chunks, pack, a conversion);
 *  - createBatchProgress: one bar per running input plus, with several inputs, a total bar;
 *    text logged meanwhile goes above the bars.
 *
 * A bar that ends is printed once more, for good, above the bars still running: full (100 %)
 * when its work finished (`done()`), as far as it got when it failed (`stop()`). So the screen
 * ends with every input's last bar followed by what was printed about it. The drawing itself is
 * StatusArea's (status-area.ts).
 */
import * as path from 'node:path';
import type { XvaProgress } from '../xva/reader';
import { formatBytes } from './format';
import type { StatusArea } from './status-area';

export interface ProgressReporter {
  update(p: XvaProgress): void;
  /** The work finished: the bar is drawn full and left on the screen. */
  done(): void;
  /** The work ended early (failed, interrupted): the bar is left as it is. No-op after done(). */
  stop(): void;
}

const NOOP: ProgressReporter = { update: () => {}, done: () => {}, stop: () => {} };

const LABEL_WIDTH = 24;
const BAR_WIDTH = 40;
const MIN_BAR_WIDTH = 10;
const BAR_FULL = '\u2588';
const BAR_EMPTY = '\u2591';
/** No ETA before this much time has passed: the first rates say little. */
const ETA_AFTER_MS = 1000;

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

function rate(bytes: number, ms: number): string {
  return ms > 0 ? `${formatBytes((bytes * 1000) / ms)}/s` : '-';
}

/** 42s, 3m05s, 1h02m. */
function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * `label ████░░░░  42% | info` in at most `columns - 1` characters: the bar is narrowed (down
 * to MIN_BAR_WIDTH) before anything is cut. The percentage is floored: 100 % means all of it.
 */
function barRow(label: string, fraction: number, info: string, columns: number): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const pct = String(Math.floor(f * 100)).padStart(3);
  const rest = `${label}  ${pct}% | ${info}`.length;
  const width = Math.max(MIN_BAR_WIDTH, Math.min(BAR_WIDTH, columns - 1 - rest));
  const full = Math.round(f * width);
  return `${label} ${BAR_FULL.repeat(full)}${BAR_EMPTY.repeat(width - full)} ${pct}% | ${info}`;
}

type MeterState = 'running' | 'done' | 'stopped';

/** One input's bar: the last values reported and how it ended. */
class Meter {
  readonly label: string;
  readonly #started = Date.now();
  #ended: number | undefined;
  value = 0;
  total = 0;
  tarBytes = 0;
  state: MeterState = 'running';

  constructor(input: string) {
    this.label = progressLabel(input);
  }

  update(p: XvaProgress): void {
    const m = measure(p);
    this.value = m.value;
    this.total = m.total;
    this.tarBytes = p.tarBytes;
  }

  end(state: Exclude<MeterState, 'running'>): void {
    this.state = state;
    this.#ended = Date.now();
    if (state === 'done') this.value = Math.max(this.value, this.total);
  }

  fraction(): number {
    if (this.state === 'done') return 1;
    return this.total > 0 ? Math.min(1, this.value / this.total) : 0;
  }

  row(columns: number, now = Date.now()): string {
    const ms = (this.#ended ?? now) - this.#started;
    const amounts = `${formatBytes(this.value)} / ${formatBytes(this.total)}`;
    if (this.state === 'done') return barRow(this.label, 1, `${amounts} | ${rate(this.value, ms)} | ${duration(ms)}`, columns);
    if (this.state === 'stopped') return barRow(this.label, this.fraction(), `${amounts} | stopped after ${duration(ms)}`, columns);
    const left = this.total - this.value;
    const eta = ms >= ETA_AFTER_MS && this.value > 0 && left >= 0 ? duration((left * ms) / this.value) : '-';
    return barRow(this.label, this.fraction(), `${amounts} | ${rate(this.value, ms)} | ETA ${eta}`, columns);
  }
}

/**
 * The bars of running inputs (and an optional total row) on a StatusArea. An ended meter
 * leaves the live rows and its final row is printed above them (unless it never showed
 * anything and did not finish: an input that fails at once gets its error line only).
 */
class ProgressBoard {
  readonly #area: StatusArea;
  readonly #live = new Map<number, Meter>();
  readonly #totalRow: ((columns: number) => string) | undefined;
  readonly #onEnded: ((meter: Meter) => void) | undefined;

  constructor(stream: NodeJS.WriteStream, totalRow?: (columns: number) => string, onEnded?: (meter: Meter) => void) {
    this.#totalRow = totalRow;
    this.#onEnded = onEnded;
    // Loaded once a bar is shown (see the lazy-require note in main.ts).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { StatusArea: Area } = require('./status-area') as typeof import('./status-area');
    this.#area = new Area(stream, (columns) => this.#rows(columns));
  }

  #rows(columns: number): string[] {
    const now = Date.now();
    const rows = [...this.#live.values()].map((m) => m.row(columns, now));
    if (this.#totalRow) rows.push(this.#totalRow(columns));
    return rows;
  }

  /** A bar for `key`, drawn from its first update on. */
  add(key: number, input: string): ProgressReporter {
    const meter = new Meter(input);
    this.#live.set(key, meter);
    let updated = false;
    return {
      update: (p) => {
        if (meter.state !== 'running') return;
        meter.update(p);
        // Later values are drawn by the area's timer; the first at once, so short runs show a bar.
        if (!updated) this.#area.redraw();
        updated = true;
      },
      done: () => this.#end(key, meter, 'done', true),
      stop: () => this.#end(key, meter, 'stopped', updated),
    };
  }

  #end(key: number, meter: Meter, state: Exclude<MeterState, 'running'>, show: boolean): void {
    if (meter.state !== 'running') return;
    meter.end(state);
    this.#live.delete(key);
    this.#onEnded?.(meter);
    if (show) this.#area.printRow(meter.row(this.#area.columns()));
    else this.#area.redraw();
  }

  print(text: string): void {
    this.#area.print(text);
  }

  close(): void {
    this.#area.close();
  }

  /** The live meters (for the total row). */
  meters(): IterableIterator<Meter> {
    return this.#live.values();
  }
}

/** One bar, for a verb that works on one thing at a time. */
export function createProgress(label: string, enabled: boolean): ProgressReporter {
  if (!enabled) return NOOP;
  const board = new ProgressBoard(process.stderr);
  const bar = board.add(0, label);
  return {
    update: (p) => bar.update(p),
    done: () => {
      bar.done();
      board.close();
    },
    stop: () => {
      bar.stop();
      board.close();
    },
  };
}

export interface BatchProgress {
  /** A bar for input `index`, shown until its reporter's done() or stop(). */
  start(index: number, input: string): ProgressReporter;
  /** Prints a line above the bars (or straight to stderr when there are none). */
  log(text: string): void;
  /** Ends the display: the total bar (several inputs) stays as last drawn. */
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
  const started = Date.now();
  let finished = 0;
  let endedBytes = 0;
  const totalRow = (columns: number): string => {
    let fraction = finished;
    let bytes = endedBytes;
    for (const m of board.meters()) {
      fraction += m.fraction();
      bytes += m.tarBytes;
    }
    return barRow('total'.padEnd(LABEL_WIDTH), fraction / count, `${finished}/${count} inputs | ${formatBytes(bytes)} | ${rate(bytes, Date.now() - started)}`, columns);
  };
  const board = new ProgressBoard(process.stderr, count > 1 ? totalRow : undefined, (meter) => {
    finished++;
    endedBytes += meter.tarBytes;
  });
  return {
    enabled: true,
    start: (index, input) => board.add(index, input),
    log: (text) => board.print(text),
    stop: () => board.close(),
  };
}
