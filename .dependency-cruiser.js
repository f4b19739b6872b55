/**
 * The direction of imports in src/ (`npm run lint:deps`, part of `npm test`).
 *
 * The layers, in import order: a folder imports only the folders before it in LAYERS.
 * errors.ts and option-checks.ts (the typed errors and the UsageError checks of option values)
 * may be imported from anywhere and import nothing else. Type-only imports and lazy require()
 * count like any other import. `node scripts/layer-matrix.js` prints who imports whom.
 */
'use strict';

/** [name, path pattern under src/] in import order. */
const LAYERS = [
  ['io', 'io/'], // buffers and leases, pread/open with errno mapping, zero detection, the disk seams
  ['output', 'output/'], // byte destinations: .part files, file and stream targets, write policy
  ['input', 'input/'], // open (path, -, URL), sniff, decoders, HTTP
  ['tar', 'tar/'], // header codec, entries, block reader, header walker
  ['xva/metadata', 'xva/metadata/'], // ova.xml: XML-RPC, the VM model, parse, build, edit
  ['xva', 'xva/(?!metadata/)'], // the XVA format: placement, checksums, reader, writer, random access
  ['image', 'image/'], // raw, qcow2, VMDK readers and writers, layout maths
  ['ova', 'ova/'], // OVF, manifest, OVA archive reader and writer
  ['nbd', 'nbd/'], // the NBD protocol and server
  ['ops', 'ops/'], // the verbs
  ['cli', 'cli/'], // the command line
  ['index', 'index\\.ts$'], // the public API
];
const ANYWHERE = '^src/(errors|option-checks)\\.ts$';

/** The verbs in ops/: none imports another, except batch (many conversions) -> convert. */
const VERBS = '(convert|measure|inspect|verify|batch|pack|map|serve|ova-export)(\\.ts$|/)';

const layerRules = LAYERS.slice(0, -1).map(([name, dir], i) => {
  const later = LAYERS.slice(i + 1);
  return {
    name: `layer-${name.replace('/', '-')}`,
    severity: 'error',
    comment: `${name}/ imports only ${LAYERS.slice(0, i).map(([n]) => `${n}/`).join(', ') || 'nothing of src/'} (and errors.ts, option-checks.ts), not ${later.map(([n]) => n).join(', ')}`,
    from: { path: `^src/${dir}` },
    to: { path: `^src/(${later.map(([, d]) => d).join('|')})` },
  };
});

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'errors-import-nothing',
      severity: 'error',
      comment: 'errors.ts and option-checks.ts are imported from every layer, so they import no other module of src/',
      from: { path: ANYWHERE },
      to: { path: '^src/', pathNot: ANYWHERE },
    },
    {
      name: 'nbd-not-image-ova',
      severity: 'error',
      comment: 'nbd/ is the protocol: it imports nothing of image/ or ova/, which come before it in LAYERS (ops/serve joins them)',
      from: { path: '^src/nbd/' },
      to: { path: '^src/(image|ova)/' },
    },
    {
      name: 'ops-verbs-not-sideways',
      severity: 'error',
      comment: 'a verb does not import another verb: what two verbs share lives in a lower layer or a helper of ops/',
      from: { path: '^src/ops/([^/.]+)', pathNot: '^src/ops/batch\\.ts$' },
      to: { path: `^src/ops/${VERBS}`, pathNot: '^src/ops/$1(\\.ts$|/)' },
    },
    {
      name: 'ops-batch-only-convert',
      severity: 'error',
      comment: 'batch runs conversions: among the verbs it imports convert only',
      from: { path: '^src/ops/batch\\.ts$' },
      to: { path: `^src/ops/${VERBS}`, pathNot: '^src/ops/(convert|batch)\\.ts$' },
    },
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'no import cycles',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-orphans',
      severity: 'error',
      comment: 'every module is imported by another, or is an entry point (the public API, the CLI)',
      from: { orphan: true, pathNot: ['^src/index\\.ts$', '^src/cli/main\\.ts$', '\\.d\\.ts$'] },
      to: {},
    },
    {
      name: 'not-to-test',
      severity: 'error',
      comment: 'the shipped code never imports tests, benchmarks or scripts',
      from: { path: '^src/' },
      to: { path: '^(test|bench|scripts)/' },
    },
    {
      name: 'not-to-dev-dep',
      severity: 'error',
      comment: 'the shipped code imports only "dependencies": devDependencies are not installed for users',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'] },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'every import resolves',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a layer that names another's types depends on it.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
