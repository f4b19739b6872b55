/**
 * Decoder threads under jest, which runs the TypeScript sources: a worker cannot load
 * src/input/decoder-thread-main.ts, so it runs that module compiled by swc (as @swc/jest
 * compiles everything else) from its text. The built package loads the compiled module itself.
 * Compiled when a test file first starts a thread, once per test file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { threadFromCode } from '../../src/input/decoder-thread';

let code: string | undefined;
threadFromCode(() => {
  if (code === undefined) {
    // Required here: most test files start no thread and need not load swc.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { transformSync } = require('@swc/core') as typeof import('@swc/core');
    const file = path.resolve(__dirname, '../../src/input/decoder-thread-main.ts');
    code = transformSync(fs.readFileSync(file, 'utf8'), {
      filename: file,
      jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
      module: { type: 'commonjs' },
    }).code;
  }
  return code;
});
