/**
 * Checks of option values at the library's entry points. TypeScript callers are held to the
 * option types at compile time, but JavaScript callers and command lines are not: a value
 * outside a closed set used to travel on until something crashed on it (an unknown zstd codec
 * made no decoder: "TypeError … reading 'sink'") or was silently taken as another (an unknown
 * gzip codec meant pako). Here it is a UsageError (exit 1) naming the option, as the library
 * calls it, and the allowed values.
 */
import { UsageError } from './errors';

/** `value` when it is one of `allowed` (or undefined: the option's default applies). */
export function checkChoice<T extends string>(value: unknown, allowed: readonly T[], name: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${name} must be one of ${allowed.join(', ')}, not ${describe(value)}`);
}

/** `value` when it is a whole number from `min` to `max` (default: no upper bound), or undefined. */
export function checkInteger(value: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max) return value;
  const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`;
  throw new UsageError(`${name} must be a whole number ${range}, not ${describe(value)}`);
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}
