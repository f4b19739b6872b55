/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // Decoder threads run from the sources' text (test/setup/decoder-thread.ts).
  setupFiles: ['<rootDir>/test/setup/decoder-thread.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' } }] },
  testTimeout: 120000,
  // Compiles src/xva/xxh64.wat when it changed since the last build (the tests run from the sources).
  globalSetup: '<rootDir>/scripts/build-wasm.js',
};
