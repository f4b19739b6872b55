/**
 * The library never changes the scheduling of the program that embeds it: yielding the CPU to a
 * producer (src/io/cpu-yield.ts) acts only after enableCpuYield(), which the command line calls.
 * What it does then is tested on the CLI (test/cli/cpu-yield.test.ts).
 */
import * as os from 'node:os';
import { hasYieldedCpu, yieldCpuToProducer } from '../../src/io/cpu-yield';

test('without enableCpuYield, a producer does not lower our priority', () => {
  const before = os.getPriority(0);
  yieldCpuToProducer();
  expect(hasYieldedCpu()).toBe(false);
  expect(os.getPriority(0)).toBe(before);
});
