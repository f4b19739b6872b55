/**
 * The public boundary: what `import … from 'xva2img'` offers, and that nothing else can be
 * imported (package.json "exports"). Types are checked by the compiler; this pins the values.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import * as api from '../src/index';
import { builtDist } from './cli/_cli';

const ROOT = path.resolve(__dirname, '..');

describe('the library API (src/index.ts)', () => {
  it('exports the verbs, the streaming reader with its writers, the input opener, option values and the errors', () => {
    expect(Object.keys(api).sort()).toEqual(
      [
        // verbs
        'convertXva',
        'convertBatch',
        'batchItemCause',
        'inspectXva',
        'verifyXva',
        'measureXva',
        'mapXva',
        'serveXva',
        'packXva',
        'writeOva',
        'measureOva',
        // the streaming reader and the writers it feeds
        'readXva',
        'createImageWriter',
        'FileTarget',
        'StreamTarget',
        // input
        'openInput',
        // option values and defaults
        'GZIP_CODECS',
        'HTTP_DEFAULT_TIMEOUT_MS',
        'DEFAULT_TAR_FORMAT',
        'OVA_PROFILES',
        'VMDK_COMPRESSIONS',
        // errors
        'ExitCode',
        'XvaError',
        'UsageError',
        'InputError',
        'XvaFormatError',
        'ChecksumError',
        'ImageFormatError',
        'OutputError',
        'InterruptedError',
        'UntrustedCertificateError',
      ].sort(),
    );
  });
});

describe('the public option types', () => {
  it('carry no test-only knobs: fixed uuids, dates and mtimes are internal (PackDeterminism)', () => {
    // The compiler checks this (npm run typecheck): each line fails to compile if the field is back.
    // @ts-expect-error uuidGen is packXva's internal second argument
    const uuids: api.PackOptions = { uuidGen: () => '' };
    // @ts-expect-error date is packXva's internal second argument
    const date: api.PackOptions = { date: '2026-01-01' };
    // @ts-expect-error ovaXmlMtime is packXva's internal second argument
    const mtime: api.PackOptions = { ovaXmlMtime: 0 };
    expect([uuids, date, mtime]).toHaveLength(3);
  });

  it('carry no seek switch: a plain file is read as a stream by passing a stream-kind InputSource', () => {
    // @ts-expect-error noSeek is gone from InspectOptions (tests pass asStreamSource(source) instead)
    const noSeek: api.InspectOptions = { noSeek: true };
    expect(noSeek).toBeDefined();
  });

  it('keep the disk-reader seam internal: the verbs read disks, callers pass paths', () => {
    // DiskReader (src/io/disk.ts) is the one shape of every disk source; the adapters it replaced
    // are gone. None is part of the public API, so the seam can change without breaking callers.
    // @ts-expect-error DiskReader is internal
    const reader: api.DiskReader | undefined = undefined;
    // @ts-expect-error DiskByteSource is gone (the XVA writer reads DiskReaders)
    const byteSource: api.DiskByteSource | undefined = undefined;
    // @ts-expect-error OvaDiskReader is gone (an OVA disk is a DiskReader with format 'vmdk')
    const ovaDisk: api.OvaDiskReader | undefined = undefined;
    expect([reader, byteSource, ovaDisk]).toEqual([undefined, undefined, undefined]);
    expect(['diskReaderSource', 'rawFileSource', 'bufferSource', 'streamSource'].filter((k) => k in api)).toEqual([]);
  });

  it('InputSource is a union by kind, not optional fields to probe', () => {
    const facts = { name: 'x', compression: 'none' as const, codec: 'none', stream: Readable.from([]), rawBytesRead: () => 0, close: async () => {} };
    const where = (s: api.InputSource): string => {
      // @ts-expect-error seekablePath is gone: a plain file is kind 'file' with a path
      void s.seekablePath;
      // @ts-expect-error blocks exist on kind 'blocks' only
      void s.blocks;
      return s.kind === 'file' ? s.path : s.kind;
    };
    // @ts-expect-error a source says which kind it is
    const kindless: api.InputSource = facts;
    // @ts-expect-error kind 'blocks' comes with its blocks
    const blockless: api.InputSource = { ...facts, kind: 'blocks' };
    expect(where({ ...facts, kind: 'file', path: '/vm.xva' })).toBe('/vm.xva');
    expect(where({ ...facts, kind: 'stream' })).toBe('stream');
    expect([kindless, blockless]).toHaveLength(2);
  });
});

describe('package.json "exports"', () => {
  /** What `require(specifier)` resolves to from inside the package, as a user's code would. */
  async function resolveFromPackage(specifier: string): Promise<string> {
    const script = `try { console.log(require.resolve(${JSON.stringify(specifier)})) } catch (e) { console.log(e.code) }`;
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { cwd: ROOT });
    return stdout.trim();
  }

  it('resolves the package name to the built library and lets package.json be read', async () => {
    const dist = builtDist();
    expect(await resolveFromPackage('xva2img')).toBe(path.join(dist, 'index.js'));
    expect(await resolveFromPackage('xva2img/package.json')).toBe(path.join(ROOT, 'package.json'));
  });

  it('refuses the internal modules', async () => {
    builtDist();
    expect(await resolveFromPackage('xva2img/dist/xva/writer.js')).toBe('ERR_PACKAGE_PATH_NOT_EXPORTED');
    expect(await resolveFromPackage('xva2img/dist/ova/ovf')).toBe('ERR_PACKAGE_PATH_NOT_EXPORTED');
  });
});
