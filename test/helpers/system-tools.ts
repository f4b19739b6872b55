/**
 * One policy for tests that need a system program (qemu-img, zstd, igzip, nbdinfo, losetup…):
 * - the program is on the PATH: the test runs;
 * - it is missing and `CI` is set (`.ci/run` sets it): the test runs and fails, naming the program,
 *   because CI installs every tool the suite uses and a missing one is a broken CI, not a pass;
 * - it is missing locally: the test is skipped and the reason is printed once per file and
 *   carried in the test's name (jest has no skip-with-reason).
 * Never a silent `return` that passes.
 */
import { spawnSync } from 'node:child_process';

const found = new Map<string, boolean>();
const reported = new Set<string>();

/** True when `name` runs from the PATH (`command -v`), cached per process. */
export function hasTool(name: string): boolean {
  let ok = found.get(name);
  if (ok === undefined) {
    ok = spawnSync('sh', ['-c', 'command -v "$0" >/dev/null 2>&1', name]).status === 0;
    found.set(name, ok);
  }
  return ok;
}

/** The tools of `tools` that are not on the PATH. */
export function missingTools(tools: readonly string[]): string[] {
  return tools.filter((t) => !hasTool(t));
}

/** `it`, or what stands for it when a tool is missing (see the policy above). */
export function itWithTools(...tools: string[]): jest.It {
  const missing = missingTools(tools);
  return itUnless(missing.length === 0 ? null : `needs ${missing.join(', ')} on the PATH`);
}

/**
 * `it` when `reason` is null; otherwise the policy above for a missing facility (a tool, loop
 * devices): fails in CI, skipped locally with `reason` printed once and in the test's name.
 */
export function itUnless(reason: string | null): jest.It {
  if (reason === null) return it;
  if (process.env.CI) {
    const failing = (name: string): void => {
      it(name, () => {
        throw new Error(`${reason}: CI must provide it (.ci/run)`);
      });
    };
    return Object.assign(failing, { each: it.each, only: it.only, skip: it.skip, todo: it.todo, concurrent: it.concurrent, failing: it.failing }) as unknown as jest.It;
  }
  if (!reported.has(reason)) {
    reported.add(reason);
    process.stderr.write(`skipping tests that ${reason} (${expect.getState().testPath ?? ''})\n`);
  }
  const skipped = (name: string, fn?: jest.ProvidesCallback, timeout?: number): void => it.skip(`${name} (skipped: ${reason})`, fn, timeout);
  return Object.assign(skipped, { each: it.skip.each, only: it.only, skip: it.skip, todo: it.todo, concurrent: it.concurrent, failing: it.failing }) as unknown as jest.It;
}
