import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { InputError } from '../../src/errors';
import { openInput } from '../../src/input/open';
import {
  chunkedStream,
  makeTempDir,
  readAll,
  readError,
  removeDir,
  sampleBytes,
  sha256,
  tool,
  writeFile,
} from './helpers';

const DATA = sampleBytes(3 << 20, 7);

let dir: string;
let plainPath: string;
let gzPath: string;
let zstPath: string;

beforeAll(() => {
  dir = makeTempDir();
  plainPath = writeFile(dir, 'plain.tar', DATA);
  gzPath = writeFile(dir, 'x.xva', tool('gzip', ['-6', '-c'], DATA));
  zstPath = writeFile(dir, 'y.xva', tool('zstd', ['-3', '-q', '-c'], DATA));
});

afterAll(() => removeDir(dir));

describe('openInput: files', () => {
  it('reads a plain file as is, with rawSize, its path to seek in and a byte counter', async () => {
    const src = await openInput(plainPath);
    expect(src.name).toBe(plainPath);
    expect(src.compression).toBe('none');
    expect(src.codec).toBe('none');
    expect(src.rawSize).toBe(DATA.length);
    expect(src).toMatchObject({ kind: 'file', path: plainPath });
    const out = await readAll(src);
    expect(sha256(out)).toBe(sha256(DATA));
    expect(src.rawBytesRead()).toBe(DATA.length);
    await src.close();
    await src.close(); // idempotent
  });

  it('reads nothing of a plain file until its stream is asked for (seeking readers open it by path)', async () => {
    const src = await openInput(plainPath);
    await new Promise((r) => setTimeout(r, 50)); // time for a stream to have read ahead, were there one
    expect(src.rawBytesRead()).toBe(0);
    expect((await readAll(src)).equals(DATA)).toBe(true);
    expect(src.rawBytesRead()).toBe(DATA.length);
    await src.close();
  });

  it('closes a plain file whose stream was never made', async () => {
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    const src = await openInput(plainPath);
    expect(fs.readdirSync('/proc/self/fd').length).toBe(fdsBefore + 1);
    await src.close();
    await src.close();
    expect(fs.readdirSync('/proc/self/fd').length).toBe(fdsBefore);
    expect(() => src.stream).toThrow(/already closed/);
  });

  it('honours readSize (small reads still give the same bytes)', async () => {
    const src = await openInput(plainPath, { readSize: 1000 });
    const out = await readAll(src);
    expect(out.equals(DATA)).toBe(true);
    await src.close();
  });

  it('detects compression by content, not by name', async () => {
    const gz = await openInput(gzPath);
    expect(gz.compression).toBe('gzip');
    expect(gz.kind).not.toBe('file');
    expect(gz.rawSize).toBe(fs.statSync(gzPath).size);
    expect((await readAll(gz)).equals(DATA)).toBe(true);
    expect(gz.rawBytesRead()).toBe(fs.statSync(gzPath).size);
    await gz.close();

    const zst = await openInput(zstPath);
    expect(zst.compression).toBe('zstd');
    expect((await readAll(zst)).equals(DATA)).toBe(true);
    await zst.close();

    const tarNamedGz = writeFile(dir, 'plain.tar.gz', DATA.subarray(0, 5000));
    const plain = await openInput(tarNamedGz);
    expect(plain.compression).toBe('none');
    expect((await readAll(plain)).equals(DATA.subarray(0, 5000))).toBe(true);
    await plain.close();
  });

  it('passes garbage through as plain (the tar layer rejects it)', async () => {
    const garbage = Buffer.from('this is not a tar file at all\n'.repeat(50));
    const file = writeFile(dir, 'garbage.bin', garbage);
    const src = await openInput(file);
    expect(src.compression).toBe('none');
    expect((await readAll(src)).equals(garbage)).toBe(true);
    await src.close();
  });

  it('reads inputs shorter than the magic', async () => {
    const file = writeFile(dir, 'tiny.bin', Buffer.from([0x1f]));
    const src = await openInput(file);
    expect(src.compression).toBe('none');
    expect((await readAll(src)).equals(Buffer.from([0x1f]))).toBe(true);
    await src.close();
  });

  it('rejects an empty file', async () => {
    const file = writeFile(dir, 'empty.xva', Buffer.alloc(0));
    const err = await openInput(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).code).toBe('INPUT_UNREADABLE');
    expect((err as InputError).describe()).toBe(`${file}: input is empty (0 bytes)`);
  });

  it('reports a missing file as INPUT_UNREADABLE with the path and errno text on one line', async () => {
    const missing = path.join(dir, 'nope.xva');
    const err = await openInput(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    const e = err as InputError;
    expect(e.code).toBe('INPUT_UNREADABLE');
    expect(e.exitCode).toBe(2);
    expect(e.location.input).toBe(missing);
    expect(e.describe()).toBe(`${missing}: cannot open input: ENOENT: no such file or directory`);
  });

  it('reports a directory as INPUT_UNREADABLE', async () => {
    const err = await openInput(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).code).toBe('INPUT_UNREADABLE');
    expect((err as InputError).describe()).toContain(`${dir}: cannot read input: EISDIR`);
  });

  it('reports an unreadable file (no permission) when not root', async () => {
    if (process.getuid?.() === 0) return; // root reads anything; covered by the ENOENT case
    const file = writeFile(dir, 'secret.xva', DATA.subarray(0, 100));
    fs.chmodSync(file, 0o000);
    const err = await openInput(file).catch((e: unknown) => e);
    expect((err as InputError).code).toBe('INPUT_UNREADABLE');
    expect((err as InputError).describe()).toContain('EACCES');
  });

  it('opens a read-only file O_RDONLY and leaves it untouched', async () => {
    const file = writeFile(dir, 'readonly.xva', tool('gzip', ['-c'], DATA));
    fs.chmodSync(file, 0o444);
    const past = new Date('2020-01-02T03:04:05Z');
    fs.utimesSync(file, past, past);
    const before = fs.statSync(file);
    const hashBefore = sha256(fs.readFileSync(file));

    const src = await openInput(file);
    // While open: find our descriptor for the file and check its access mode.
    const fds = fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) === file;
      } catch {
        return false;
      }
    });
    expect(fds.length).toBeGreaterThanOrEqual(1);
    for (const fd of fds) {
      const flags = /^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
      expect(parseInt(flags, 8) & 0o3).toBe(fs.constants.O_RDONLY);
    }
    expect((await readAll(src)).equals(DATA)).toBe(true);
    await src.close();

    const after = fs.statSync(file);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.size).toBe(before.size);
    expect(after.mode & 0o777).toBe(0o444);
    expect(sha256(fs.readFileSync(file))).toBe(hashBefore);
  });

  it('releases the descriptor on close() before the end and when the stream is destroyed', async () => {
    const countFds = (): number =>
      fs.readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${fd}`) === plainPath;
        } catch {
          return false;
        }
      }).length;
    const base = countFds();
    const a = await openInput(plainPath, { readSize: 64 << 10 });
    expect(countFds()).toBe(base + 1);
    await a.close();
    expect(countFds()).toBe(base);

    const b = await openInput(plainPath, { readSize: 64 << 10 });
    for await (const chunk of b.stream) {
      expect(chunk.length).toBeGreaterThan(0);
      break; // destroys the stream
    }
    await b.close();
    expect(countFds()).toBe(base);
  });
});

describe('openInput: stdin', () => {
  it('reads "-" from options.stdin, plain', async () => {
    const src = await openInput('-', { stdin: chunkedStream([DATA.subarray(0, 1), DATA.subarray(1, 3), DATA.subarray(3)]) });
    expect(src.name).toBe('-');
    expect(src.compression).toBe('none');
    expect(src.rawSize).toBeUndefined();
    expect(src.kind).toBe('stream');
    expect((await readAll(src)).equals(DATA)).toBe(true);
    expect(src.rawBytesRead()).toBe(DATA.length);
    await src.close();
  });

  it('reads gzip and zstd from stdin, magic split over tiny chunks', async () => {
    const gz = fs.readFileSync(gzPath);
    const src = await openInput('-', { stdin: chunkedStream([gz.subarray(0, 1), gz.subarray(1, 2), gz.subarray(2)]) });
    expect(src.compression).toBe('gzip');
    expect((await readAll(src)).equals(DATA)).toBe(true);
    await src.close();

    const zst = fs.readFileSync(zstPath);
    const src2 = await openInput('-', { stdin: chunkedStream([zst.subarray(0, 3), zst.subarray(3)]) });
    expect(src2.compression).toBe('zstd');
    expect((await readAll(src2)).equals(DATA)).toBe(true);
    await src2.close();
  });

  it('rejects empty stdin', async () => {
    const err = await openInput('-', { stdin: Readable.from([], { objectMode: false }) }).catch((e: unknown) => e);
    expect((err as InputError).code).toBe('INPUT_UNREADABLE');
    expect((err as InputError).describe()).toBe('-: input is empty (0 bytes)');
  });

  it('turns a stdin error into INPUT_UNREADABLE on the stream', async () => {
    const stdin = new Readable({ read() {} });
    const opening = openInput('-', { stdin });
    stdin.push(DATA.subarray(0, 1000));
    const src = await opening;
    setImmediate(() => stdin.destroy(new Error('boom')));
    const err = await readError(src);
    expect(err).toBeInstanceOf(InputError);
    expect(err.code).toBe('INPUT_UNREADABLE');
    expect(err.describe()).toBe('-: read error on stdin at byte 1000: boom');
    await src.close();
  });
});
