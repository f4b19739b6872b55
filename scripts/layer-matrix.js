#!/usr/bin/env node
'use strict';
/**
 * The folder-import matrix of src/: which layer imports which, counted in file-to-file imports
 * (type-only imports and lazy require() count like any other). Rows import columns. A cell
 * marked `!` imports a layer that comes later in LAYERS, against the direction that
 * .dependency-cruiser.js enforces; `npm run lint:deps` is the check, this is the picture.
 *
 *   node scripts/layer-matrix.js           the matrix and the import cycles
 *   node scripts/layer-matrix.js --edges   also every file-level import behind a `!` cell
 */
const path = require('node:path');

/** The layers in import order (docs/architecture.md); the first two may be imported from anywhere. */
const LAYERS = ['errors.ts', 'option-checks.ts', 'io', 'output', 'input', 'tar', 'xva/metadata', 'xva', 'image', 'ova', 'nbd', 'ops', 'cli', 'index.ts'];
const ANYWHERE = new Set(['errors.ts', 'option-checks.ts']);

/** The layer of a module under src/: its folder (image/qcow2 counts as image), or the root file's name. */
function layerOf(file) {
  const rel = path.posix.relative('src', file);
  const parts = rel.split('/');
  if (parts.length === 1) return LAYERS.includes(rel) ? rel : '(root)';
  if (parts[0] === 'xva' && parts[1] === 'metadata' && parts.length > 2) return 'xva/metadata';
  return parts[0];
}

function rank(layer) {
  const i = LAYERS.indexOf(layer);
  // Files at the root of src/ other than those listed held the verbs before ops/ existed.
  return i >= 0 ? i : layer === '(root)' ? LAYERS.indexOf('ops') : LAYERS.length;
}

async function main() {
  const root = path.join(__dirname, '..');
  process.chdir(root);
  const { cruise } = await import('dependency-cruiser');
  const { output } = await cruise(['src'], { tsPreCompilationDeps: true, includeOnly: '^src/' });
  const counts = new Map(); // "from\tto" -> file pairs
  const wrong = [];
  const cycles = new Set();
  for (const m of output.modules) {
    const seen = new Set();
    for (const d of m.dependencies) {
      if (!d.resolved.startsWith('src/') || seen.has(d.resolved)) continue;
      seen.add(d.resolved);
      const from = layerOf(m.source);
      const to = layerOf(d.resolved);
      const key = `${from}\t${to}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      if (from !== to && !ANYWHERE.has(to) && rank(to) > rank(from)) wrong.push(`${m.source} -> ${d.resolved}`);
      if (d.circular) cycles.add([m.source, d.resolved].sort().join(' <-> '));
    }
  }
  const present = new Set([...counts.keys()].flatMap((k) => k.split('\t')));
  const layers = [...present].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const width = Math.max(...layers.map((l) => l.length));
  const cell = (from, to) => {
    const n = counts.get(`${from}\t${to}`);
    if (!n) return '.';
    const against = from !== to && !ANYWHERE.has(to) && rank(to) > rank(from);
    return `${n}${against ? '!' : ''}`;
  };
  const colWidth = Math.max(4, ...layers.map((l) => Math.min(l.length, 6))) + 1;
  const head = (l) => l.replace(/\.ts$/, '').replace('xva/metadata', 'xva/md').slice(0, colWidth - 1).padStart(colWidth);
  console.log(`${'imports ->'.padEnd(width)} ${layers.map(head).join('')}`);
  for (const from of layers) {
    console.log(`${from.padEnd(width)} ${layers.map((to) => cell(from, to).padStart(colWidth)).join('')}`);
  }
  console.log(`\nimports against the layer order: ${wrong.length}; import cycles: ${cycles.size}`);
  for (const c of cycles) console.log(`  cycle: ${c}`);
  if (process.argv.includes('--edges')) for (const w of wrong) console.log(`  ${w}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
