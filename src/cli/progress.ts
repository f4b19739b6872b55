/**
 * Progress on stderr with cli-progress, only when stderr is a TTY and not --quiet.
 * Measures bytes read against the input size when known (file, Content-Length), else bytes
 * placed against the summed virtual sizes.
 */
import * as cliProgress from 'cli-progress';
import type { XvaProgress } from '../xva/reader';
import { formatBytes } from './format';

export interface ProgressReporter {
  update(p: XvaProgress): void;
  stop(): void;
}

const NOOP: ProgressReporter = { update: () => {}, stop: () => {} };

export function createProgress(label: string, enabled: boolean): ProgressReporter {
  if (!enabled) return NOOP;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} {bar} {percentage}% | {done} / {all} | {rate} | ETA {eta_formatted}`,
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
      const byInput = p.rawSize !== undefined && p.rawBytesRead !== undefined;
      const total = byInput ? p.rawSize! : p.diskBytesTotal;
      const value = byInput ? p.rawBytesRead! : p.diskBytesDone;
      const secs = (Date.now() - start) / 1000;
      const payload = { done: formatBytes(value), all: formatBytes(total), rate: secs > 0 ? `${formatBytes(value / secs)}/s` : '-' };
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
    },
  };
}
