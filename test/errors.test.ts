/**
 * One line per error: `<input>: <entry>: <message> (at byte N)`, each part once.
 */
import { XvaFormatError } from '../src/errors';
import { shownChecksum } from '../src/xva/checksum';

describe('XvaError.describe()', () => {
  test('names the input first, even when the message happens to contain its name', () => {
    // Standard input is "-", which "SHA-1" and "end-of-archive" contain; a file may be named "a".
    const stdin = new XvaFormatError('TAR_TRUNCATED', 'SHA-1 mismatch', { input: '-', entry: 'Ref:7/00000002', offset: 2048 });
    expect(stdin.describe()).toBe('-: Ref:7/00000002: SHA-1 mismatch (at byte 2048)');
    const short = new XvaFormatError('TAR_TRUNCATED', 'archive ends early', { input: 'a' });
    expect(short.describe()).toBe('a: archive ends early');
  });

  test('a message that names the input as a word of its own (a URL in "no data from <url>") does not repeat it', () => {
    const url = 'http://host/x.xva';
    const e = new XvaFormatError('TAR_TRUNCATED', `no data from ${url} for 5 s`, { input: url });
    expect(e.describe()).toBe(`no data from ${url} for 5 s`);
  });

  test('a message that already starts with the input or the entry does not repeat it', () => {
    const e = new XvaFormatError('TAR_TRUNCATED', 'x.xva: cut short at byte 10', { input: 'x.xva', offset: 10 });
    expect(e.describe()).toBe('x.xva: cut short at byte 10');
    const c = new XvaFormatError('TAR_TRUNCATED', 'Ref:1/00000000: short', { input: 'x.xva', entry: 'Ref:1/00000000' });
    expect(c.describe()).toBe('x.xva: Ref:1/00000000: short');
  });
});

describe('what comes from the input is shown, never acted on by a terminal', () => {
  test('control characters in a message are escaped; line breaks become spaces', () => {
    const e = new XvaFormatError('TAR_BAD_HEADER', 'entry "a\u001b[2Jb\u0000c"\nnext', { input: 'x.xva' });
    expect(e.describe()).toBe('x.xva: entry "a\\x1b[2Jb\\x00c" next');
  });

  test('a checksum file is shown trimmed, at most 64 characters, control characters escaped', () => {
    expect(shownChecksum(' 0123abcd\n')).toBe('0123abcd');
    expect(shownChecksum('ab\u0000cd')).toBe('ab\\x00cd');
    expect(shownChecksum('f'.repeat(100))).toBe('f'.repeat(64));
  });
});
