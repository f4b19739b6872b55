/**
 * NameAllocator: unique names within a run, case-insensitively; a name given back (its
 * conversion failed and left nothing) is handed out again, and no other name moves.
 */
import { NameAllocator } from '../../src/output/naming';

test('a released name is handed out again; the names still taken keep theirs', () => {
  const a = new NameAllocator();
  expect(a.allocate('vm-0', 'raw')).toBe('vm-0.raw');
  expect(a.allocate('vm-0', 'raw')).toBe('vm-0-2.raw');
  a.release('vm-0.raw');
  expect(a.allocate('vm-0', 'raw')).toBe('vm-0.raw');
  expect(a.allocate('vm-0', 'raw')).toBe('vm-0-3.raw');
  a.release('vm-0-2.raw');
  expect(a.allocate('vm-0', 'raw')).toBe('vm-0-2.raw');
  expect(a.allocate('vm-0', 'raw')).toBe('vm-0-4.raw');
});

test('release is case-insensitive like allocation, and per extension', () => {
  const a = new NameAllocator();
  expect(a.allocate('Web-0', 'raw')).toBe('Web-0.raw');
  expect(a.allocate('Web-0', 'qcow2')).toBe('Web-0.qcow2');
  expect(a.allocate('WEB-0', 'raw')).toBe('WEB-0-2.raw');
  a.release('Web-0.raw');
  expect(a.allocate('web-0', 'raw')).toBe('web-0.raw');
  expect(a.allocate('web-0', 'qcow2')).toBe('web-0-2.qcow2');
});

test('releasing a name never handed out changes nothing', () => {
  const a = new NameAllocator();
  expect(a.allocate('vm-0', 'raw')).toBe('vm-0.raw');
  a.release('other.raw');
  expect(a.allocate('vm-0', 'raw')).toBe('vm-0-2.raw');
});
