/**
 * StatusArea on a model terminal (test/helpers/terminal.ts renderTerminal): rows redrawn in
 * place, text printed above them for good, nothing lost, the last rows left on close.
 */
import { StatusArea } from '../../src/cli/status-area';
import { renderTerminal } from '../helpers/terminal';

const COLUMNS = 40;
const ROWS = 10;

/** A TTY-like stream that records what it is given. */
function fakeTty(): { stream: NodeJS.WriteStream; screen(): string[]; raw(): string } {
  let raw = '';
  const stream = { isTTY: true, columns: COLUMNS, write: (s: string) => ((raw += s), true) } as unknown as NodeJS.WriteStream;
  return { stream, raw: () => raw, screen: () => renderTerminal(raw, COLUMNS, ROWS) };
}

test('rows are redrawn in place; printed text stays above them; close leaves the last rows', () => {
  const tty = fakeTty();
  let rows = ['a 10%', 'b 20%'];
  const area = new StatusArea(tty.stream, () => rows);
  area.redraw();
  expect(tty.screen()).toEqual(['a 10%', 'b 20%']);
  rows = ['a 50%', 'b 60%'];
  area.redraw();
  expect(tty.screen()).toEqual(['a 50%', 'b 60%']);
  area.print('a done');
  rows = ['b 90%'];
  area.print('summary line 1\nsummary line 2');
  expect(tty.screen()).toEqual(['a done', 'summary line 1', 'summary line 2', 'b 90%']);
  rows = ['b 100%'];
  area.close();
  expect(tty.screen()).toEqual(['a done', 'summary line 1', 'summary line 2', 'b 100%']);
  expect(tty.raw().endsWith('\x1b[?7h\x1b[?25h')).toBe(true); // wrapping and cursor back on
  area.print('after close');
  expect(tty.screen().at(-1)).toBe('after close');
});

test('a printed line longer than the terminal wraps; a row longer than it is cut to one line', () => {
  const tty = fakeTty();
  let rows = ['r'.repeat(100)];
  const area = new StatusArea(tty.stream, () => rows);
  area.redraw();
  expect(tty.screen()).toEqual(['r'.repeat(COLUMNS - 1)]);
  area.print('x'.repeat(50));
  rows = ['short'];
  area.redraw();
  expect(tty.screen()).toEqual(['x'.repeat(COLUMNS), 'x'.repeat(10), 'short']);
  area.close();
});

test("a finished row printed to stay (a bar's last frame) is cut to the width as the live rows are", () => {
  const tty = fakeTty();
  let rows = ['live'];
  const area = new StatusArea(tty.stream, () => rows);
  area.redraw();
  area.printRow('b'.repeat(77));
  rows = ['next'];
  area.redraw();
  expect(tty.screen()).toEqual(['b'.repeat(COLUMNS - 1), 'next']);
  area.close();
});

test('text printed before any row is drawn goes straight out', () => {
  const tty = fakeTty();
  const area = new StatusArea(tty.stream, () => []);
  area.print('hello');
  area.close();
  expect(tty.raw()).toBe('hello\n');
});
