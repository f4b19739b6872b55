/**
 * Finding the helper programs that decode faster than Node can (`zstd`, `igzip`) on the PATH.
 */
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Lookups done, by PATH and name: a PATH changed at run time (tests do) is looked at anew. */
const found = new Map<string, string | null>();

/** Absolute path of the executable `name` on PATH, or null. Looked up once per PATH. */
export function findProgram(name: string): string | null {
  const pathVar = process.env.PATH ?? '';
  const key = `${name}\0${pathVar}`;
  let result = found.get(key);
  if (result === undefined) {
    result = searchPath(name, pathVar);
    found.set(key, result);
  }
  return result;
}

function searchPath(name: string, pathVar: string): string | null {
  for (const dir of pathVar.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}
