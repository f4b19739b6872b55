/**
 * Hostile names (issue "Robustness and security", item 3). VM and disk names come from
 * ova.xml, tar entry names from the archive; nothing may ever be written outside the output
 * directory, and names are sanitized predictably (rules in src/output/naming.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertXva } from '../../src/ops/convert';
import { XvaError } from '../../src/errors';
import { diskBaseName, insideDir, NameAllocator, sanitizeName } from '../../src/output/naming';
import { bufferSource } from '../helpers/sources';
import { buildXva, content } from './build';

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'xva-names-'));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

/** Every file under `dir`, relative, sorted. */
function walk(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p, base));
    else out.push(path.relative(base, p));
  }
  return out.sort();
}

describe('sanitizeName (documented rules)', () => {
  test.each([
    ['web01', 'web01'],
    ['../../etc/passwd', '_.._etc_passwd'],
    ['/etc/shadow', '_etc_shadow'],
    ['..', 'vm'],
    ['.', 'vm'],
    ['...hidden', 'hidden'],
    ['trailing dots...', 'trailing dots'],
    ['a\u0000b', 'a_b'],
    ['bell\u0007esc\u001b[31m', 'bell_esc_[31m'],
    ['tab\there\nnewline', 'tab_here_newline'],
    ['c1\u0085\u009b', 'c1__'],
    ['win<>:"\\|?*chars', 'win________chars'],
    ['  spaced  ', 'spaced'],
    ['', 'vm'],
    ['\u0301e', '\u0301e'], // combining mark kept, NFC-normalized
    ['e\u0301', '\u00e9'], // NFC
  ])('%j -> %j', (raw, want) => {
    expect(sanitizeName(raw)).toBe(want);
  });

  test('long names are cut to 100 bytes on a UTF-8 character boundary', () => {
    const s = sanitizeName('é'.repeat(300));
    expect(Buffer.byteLength(s)).toBeLessThanOrEqual(100);
    expect(s).toBe('é'.repeat(50));
    expect(sanitizeName('x'.repeat(99) + '€')).toBe('x'.repeat(99)); // 3-byte char not split
  });

  test('a sanitized name never contains a separator, NUL or control character, never starts with a dot', () => {
    let seed = 7;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const alphabet = ['/', '\\', '.', '..', '\u0000', '\n', '\u001f', '\u007f', 'a', 'Z', 'é', ' ', '€', '\u202e', '😀'];
    for (let i = 0; i < 5000; i++) {
      let raw = '';
      const n = Math.floor(rnd() * 150);
      for (let k = 0; k < n; k++) raw += alphabet[Math.floor(rnd() * alphabet.length)];
      const s = sanitizeName(raw);
      // eslint-disable-next-line no-control-regex -- control characters are what sanitizeName removes
      expect(s).not.toMatch(/[/\\\u0000-\u001f\u007f-\u009f]/);
      expect(s.startsWith('.')).toBe(false);
      expect(s.length).toBeGreaterThan(0);
      expect(Buffer.byteLength(s)).toBeLessThanOrEqual(100);
      expect(path.basename(s)).toBe(s);
      expect(() => insideDir(root, `${s}.raw`)).not.toThrow();
    }
  });

  test('diskBaseName keeps the userdevice when the VM name is very long', () => {
    const long = 'v'.repeat(300);
    expect(diskBaseName(long, '0')).toBe(`${'v'.repeat(98)}-0`);
    expect(diskBaseName(long, '1')).toBe(`${'v'.repeat(98)}-1`);
    expect(diskBaseName('vm', '../../x')).toBe('vm-_.._x');
    expect(diskBaseName('vm', '')).toBe('vm');
    expect(diskBaseName('', '0')).toBe('vm-0');
  });

  test('NameAllocator: names that differ only in case get distinct files', () => {
    const a = new NameAllocator();
    expect(a.allocate('Web', 'raw')).toBe('Web.raw');
    expect(a.allocate('WEB', 'raw')).toBe('WEB-2.raw');
    expect(a.allocate('web', 'raw')).toBe('web-3.raw');
  });

  test('insideDir refuses anything that would leave the directory', () => {
    expect(() => insideDir(root, '../x.raw')).toThrow();
    expect(() => insideDir(root, '/etc/x.raw')).toThrow();
    expect(() => insideDir(root, 'a/b.raw')).toThrow();
    expect(insideDir(root, 'ok.raw')).toBe(path.join(root, 'ok.raw'));
  });
});

describe('end to end: hostile VM names, userdevices and tar entry names', () => {
  const hostile = ['../../../../tmp/escape', '/etc/passwd', '..', 'a/b\\c', 'nul\u0001ctl\u001f', 'N'.repeat(400), '   ', 'CON', '.bashrc', '😀'.repeat(60)];

  test.each(hostile.map((n) => [n]))('VM named %j: outputs land inside -o DIR only', async (vmName) => {
    const out = path.join(root, 'out');
    const xva = await buildXva(vmName, [
      { ref: 'Ref:11', userdevice: 0, image: content(64 * 1024, 1) },
      { ref: 'Ref:14', userdevice: '../1', image: content(32 * 1024, 2) },
    ]);
    const summary = await convertXva(bufferSource(xva), { outDir: out });
    const files = walk(root);
    expect(files).toHaveLength(2);
    for (const f of files) {
      expect(f.startsWith(`out${path.sep}`)).toBe(true);
      expect(path.dirname(f)).toBe('out');
      expect(Buffer.byteLength(path.basename(f))).toBeLessThanOrEqual(100 + '.raw'.length);
    }
    for (const d of summary.disks) {
      expect(path.dirname(d.path!)).toBe(out);
      expect(fs.readFileSync(d.path!).equals(d.userdevice === '0' ? content(64 * 1024, 1) : content(32 * 1024, 2))).toBe(true);
    }
    // The userdevice survives sanitizing, so the two disks are told apart by it.
    expect(summary.disks.map((d) => path.basename(d.path!).endsWith('-0.raw'))).toContain(true);
    expect(summary.disks.map((d) => path.basename(d.path!).endsWith('-_1.raw'))).toContain(true);
  });

  test('per-VM subdirectories use the sanitized name too', async () => {
    const out = path.join(root, 'out');
    const xva = await buildXva('../../..', [{ ref: 'Ref:11', userdevice: 0, image: content(4096, 3) }]);
    await convertXva(bufferSource(xva), { outDir: out, perVmSubdir: true });
    expect(walk(root)).toEqual([path.join('out', '_.._', '_.._-0.raw')]);
  });

  test('two VMs whose names differ only in case do not overwrite each other (shared allocator)', async () => {
    const out = path.join(root, 'out');
    const names = new NameAllocator();
    await convertXva(bufferSource(await buildXva('Web', [{ ref: 'Ref:11', userdevice: 0, image: content(4096, 4) }])), { outDir: out, names });
    await convertXva(bufferSource(await buildXva('WEB', [{ ref: 'Ref:11', userdevice: 0, image: content(4096, 5) }])), { outDir: out, names });
    expect(walk(out)).toEqual(['WEB-0-2.raw', 'Web-0.raw']);
    expect(fs.readFileSync(path.join(out, 'Web-0.raw')).equals(content(4096, 4))).toBe(true);
    expect(fs.readFileSync(path.join(out, 'WEB-0-2.raw')).equals(content(4096, 5))).toBe(true);
  });

  test('tar entries named ../x, /abs/x or with NUL are never used as paths', async () => {
    const out = path.join(root, 'out');
    const extra = ['../../escape-rel', '/tmp/escape-abs', `${root}/escape-root`, 'Ref:11/../../escape-dots', '..', './../escape-dot'].map((name) => ({ name, data: Buffer.from('evil\n') }));
    const xva = await buildXva('vm', [{ ref: 'Ref:11', userdevice: 0, image: content(8192, 6) }], { extraEntries: extra });
    const warnings: string[] = [];
    await convertXva(bufferSource(xva), { outDir: out, onWarning: (w) => warnings.push(w) });
    expect(walk(root)).toEqual([path.join('out', 'vm-0.raw')]);
    expect(fs.existsSync('/tmp/escape-abs')).toBe(false);
    expect(warnings.join('\n')).toMatch(/unexpected entry/);
  });

  test('a name with a raw control character in ova.xml is either refused (typed) or sanitized', async () => {
    const out = path.join(root, 'out');
    const xva = await buildXva('bad\u0000name\u0008', [{ ref: 'Ref:11', userdevice: 0, image: content(4096, 7) }]);
    let error: unknown;
    await convertXva(bufferSource(xva), { outDir: out }).catch((e: unknown) => (error = e));
    if (error) {
      expect(error).toBeInstanceOf(XvaError);
      expect(walk(root)).toEqual([]);
    } else {
      // The XML parser may drop the NUL; the backspace becomes '_'.
      const files = walk(root);
      expect(files).toHaveLength(1);
      expect(files[0]).toMatch(/^out\/bad_?name_-0\.raw$/);
    }
  });
});
