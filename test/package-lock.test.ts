/**
 * package-lock.json is what `npm ci` installs (CI systems, Dockerfiles, packagers), and npm ci
 * refuses a lock that is out of step with package.json or that lacks an entry for any dependency
 * of a package it records, including the optional per-platform binaries that never install on
 * this machine (@swc/core-darwin-arm64 and the like). An npm that pruned those entries writes a
 * lock that `npm install` repairs silently and `npm ci` rejects on a fresh clone. These checks are
 * static (no npm run): the lock must be complete for every platform.
 */
import fs from 'node:fs';
import path from 'node:path';

interface LockEntry {
  name?: string;
  version?: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  engines?: Record<string, string>;
}
interface Lock {
  lockfileVersion: number;
  packages: Record<string, LockEntry>;
}

const ROOT = path.join(__dirname, '..');
const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(path.join(ROOT, file), 'utf8')) as T;

/**
 * Dependencies recorded in the lock that resolve to no entry, as "<package path> -> <name>".
 * Resolution as Node and npm do it: `<dir>/node_modules/<name>`, then each enclosing
 * node_modules up to the root. The root's devDependencies count (npm ci installs them).
 */
function unresolvedDependencies(lock: Lock): string[] {
  const missing: string[] = [];
  for (const [location, entry] of Object.entries(lock.packages)) {
    const names = {
      ...entry.dependencies,
      ...entry.optionalDependencies,
      ...(location === '' ? entry.devDependencies : undefined),
    };
    for (const name of Object.keys(names)) {
      if (!resolves(lock, location, name)) missing.push(`${location || '(root)'} -> ${name}`);
    }
  }
  return missing;
}

function resolves(lock: Lock, location: string, name: string): boolean {
  let dir = location;
  for (;;) {
    if (lock.packages[`${dir ? `${dir}/` : ''}node_modules/${name}`]) return true;
    if (!dir) return false;
    const up = dir.lastIndexOf('/node_modules/');
    dir = up < 0 ? '' : dir.slice(0, up);
  }
}

describe('package-lock.json', () => {
  const lock = readJson<Lock>('package-lock.json');
  const pkg = readJson<LockEntry>('package.json');

  it('is a version 3 lock whose root entry matches package.json', () => {
    expect(lock.lockfileVersion).toBe(3);
    const root = lock.packages['']!;
    expect({ name: root.name, version: root.version }).toEqual({ name: pkg.name, version: pkg.version });
    expect(root.dependencies ?? {}).toEqual(pkg.dependencies ?? {});
    expect(root.devDependencies ?? {}).toEqual(pkg.devDependencies ?? {});
    expect(root.optionalDependencies ?? {}).toEqual(pkg.optionalDependencies ?? {});
  });

  it('has an entry for every dependency of every package, optional platform binaries included', () => {
    expect(unresolvedDependencies(lock)).toEqual([]);
  });

  it('the check finds a pruned platform binary (what npm ci rejects as "Missing: ... from lock file")', () => {
    const pruned: Lock = { ...lock, packages: { ...lock.packages } };
    const binaries = Object.keys(pruned.packages).filter((p) => /\/@swc\/core-darwin-arm64$/.test(p));
    expect(binaries.length).toBeGreaterThan(0);
    for (const p of binaries) delete pruned.packages[p];
    expect(unresolvedDependencies(pruned)).toEqual(['node_modules/@swc/core -> @swc/core-darwin-arm64']);
  });

  it('a nested dependency resolves through the enclosing node_modules', () => {
    const nested: Lock = {
      lockfileVersion: 3,
      packages: {
        '': { dependencies: { a: '1' } },
        'node_modules/a': { dependencies: { b: '1', c: '1' } },
        'node_modules/a/node_modules/b': { dependencies: { c: '1' } },
        'node_modules/c': {},
      },
    };
    expect(unresolvedDependencies(nested)).toEqual([]);
    delete nested.packages['node_modules/c'];
    expect(unresolvedDependencies(nested)).toEqual(['node_modules/a -> c', 'node_modules/a/node_modules/b -> c']);
  });
});
