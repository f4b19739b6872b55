/**
 * .dependency-cruiser.js (npm run lint:deps) keeps imports pointing one way: src/ passing it
 * proves little unless the rules do catch what they name. Each case here is a small tree of
 * modules that breaks one rule, cruised with the project's own configuration; the clean tree
 * beside it shows that nothing else is reported.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const ROOT = path.resolve(__dirname, '..');
const DEPCRUISE = path.join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');

/** A tree that keeps every rule: one module per layer, each importing the layer below it. */
const CLEAN: Record<string, string> = {
  'src/errors.ts': 'export class XvaError extends Error {}\n',
  'src/option-checks.ts': "import { XvaError } from './errors';\nexport const check = (): XvaError => new XvaError();\n",
  'src/io/disk.ts': "import { XvaError } from '../errors';\nexport interface DiskImageWriter { e?: XvaError }\n",
  'src/output/target.ts': "import type { DiskImageWriter } from '../io/disk';\nexport type Target = DiskImageWriter;\n",
  'src/input/open.ts': "import type { Target } from '../output/target';\nexport type Input = Target;\n",
  'src/tar/entries.ts': "import type { Input } from '../input/open';\nexport type Entry = Input;\n",
  'src/xva/metadata/model.ts': 'export interface VmModel { name: string }\n',
  'src/xva/reader.ts': "import type { Entry } from '../tar/entries';\nimport type { VmModel } from './metadata/model';\nexport type Read = Entry | VmModel;\n",
  'src/image/types.ts': "import type { Read } from '../xva/reader';\nexport type Image = Read;\n",
  'src/ova/writer.ts': "import type { Image } from '../image/types';\nexport type Ova = Image;\n",
  'src/nbd/server.ts': "import { XvaError } from '../errors';\nexport const serve = (): XvaError => new XvaError();\n",
  'src/ops/convert.ts': "import type { Ova } from '../ova/writer';\nimport { serve } from '../nbd/server';\nexport const convert = (o?: Ova): unknown => o ?? serve();\n",
  'src/ops/batch.ts': "import { convert } from './convert';\nexport const batch = (): unknown => convert();\n",
  'src/cli/main.ts': "import { batch } from '../ops/batch';\nimport { check } from '../option-checks';\nexport const main = (): unknown => batch() ?? check();\n",
  'src/index.ts': "export { convert } from './ops/convert';\n",
};

/**
 * Rule name -> files that break it, added to the clean tree. Imports against the layers go to
 * modules that import nothing, so that each case breaks its one rule and makes no cycle.
 */
const BROKEN: Record<string, Record<string, string>> = {
  'layer-tar (a type-only import counts)': {
    'src/image/format.ts': 'export type Format = string;\n',
    'src/tar/entries.ts': "import type { Input } from '../input/open';\nimport type { Format } from '../image/format';\nexport type Entry = Input | Format;\n",
  },
  'layer-input (a lazy require counts)': {
    'src/xva/placement.ts': 'export const placement = 1;\n',
    'src/input/open.ts': "import type { Target } from '../output/target';\nexport type Input = Target;\nexport const lazy = (): unknown => require('../xva/placement');\n",
  },
  'layer-io': {
    'src/output/naming.ts': 'export const naming = 1;\n',
    'src/io/disk.ts': "import { XvaError } from '../errors';\nimport { naming } from '../output/naming';\nexport interface DiskImageWriter { e?: XvaError }\nexport const n = naming;\n",
  },
  'nbd-not-image-ova': {
    'src/nbd/server.ts': "import type { Ova } from '../ova/writer';\nexport const serve = (o?: Ova): unknown => o;\n",
  },
  'errors-import-nothing': {
    'src/option-checks.ts': "import type { DiskImageWriter } from './io/disk';\nexport const check = (w?: DiskImageWriter): unknown => w;\n",
  },
  'ops-verbs-not-sideways': {
    'src/ops/verify.ts': "import { batch } from './batch';\nexport const verify = (): unknown => batch();\n",
    'src/index.ts': "export { convert } from './ops/convert';\nexport { verify } from './ops/verify';\n",
  },
  'ops-batch-only-convert': {
    'src/ops/measure.ts': 'export const measure = 1;\n',
    'src/ops/batch.ts': "import { convert } from './convert';\nimport { measure } from './measure';\nexport const batch = (): unknown => convert() ?? measure;\n",
  },
  'no-circular': {
    'src/io/a.ts': "import { b } from './b';\nexport const a = (): unknown => b;\n",
    'src/io/b.ts': "import { a } from './a';\nexport const b = (): unknown => a;\n",
    'src/io/disk.ts': "import { XvaError } from '../errors';\nimport { a } from './a';\nexport interface DiskImageWriter { e?: XvaError }\nexport const x = a;\n",
  },
  'no-orphans': {
    'src/xva/unused.ts': 'export const unused = 1;\n',
  },
  'not-to-test': {
    'test/helpers/fixture.ts': 'export const fixture = 1;\n',
    'src/output/target.ts': "import type { DiskImageWriter } from '../io/disk';\nimport { fixture } from '../../test/helpers/fixture';\nexport type Target = DiskImageWriter;\nexport const f = fixture;\n",
  },
};

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xva2img-deps-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The names of the rules that `files` breaks, cruised as `npm run lint:deps` does. */
async function violatedRules(name: string, files: Record<string, string>): Promise<string[]> {
  const tree = path.join(dir, name.replace(/\W+/g, '-'));
  for (const [file, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(tree, file)), { recursive: true });
    fs.writeFileSync(path.join(tree, file), text);
  }
  fs.copyFileSync(path.join(ROOT, '.dependency-cruiser.js'), path.join(tree, '.dependency-cruiser.js'));
  fs.writeFileSync(path.join(tree, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'Node16', strict: true }, include: ['src', 'test'] }));
  fs.writeFileSync(path.join(tree, 'package.json'), JSON.stringify({ name: 'tree', private: true }));
  // depcruise exits non-zero when it finds violations; the JSON report is on stdout either way.
  const run = promisify(execFile)(process.execPath, [DEPCRUISE, 'src', '--config', '.dependency-cruiser.js', '--output-type', 'json'], { cwd: tree, maxBuffer: 64 << 20 });
  const { stdout } = await run.catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  const report = JSON.parse(stdout) as { summary: { violations: Array<{ rule: { name: string } }> } };
  return [...new Set(report.summary.violations.map((v) => v.rule.name))].sort();
}

describe('the import rules (.dependency-cruiser.js)', () => {
  it('report nothing for a tree whose imports follow the layers', async () => {
    expect(await violatedRules('clean', CLEAN)).toEqual([]);
  });

  for (const [title, files] of Object.entries(BROKEN)) {
    const rule = title.replace(/ \(.*$/, '');
    it(`report ${title}`, async () => {
      expect(await violatedRules(title, { ...CLEAN, ...files })).toEqual([rule]);
    });
  }
});
