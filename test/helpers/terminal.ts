/**
 * Runs the built CLI on a real pseudo-terminal and shows what a person would see.
 *
 * runInTerminal: `script -qfec "<cmd>" /dev/null` (util-linux) gives the command a pty as its
 * stdin, stdout and stderr and copies everything the terminal receives to our stdout, whether or
 * not our own stdin is a terminal (jest's usually is not: we give script /dev/null). The size is
 * set with stty inside the pty, so bars are laid out for a known width.
 *
 * renderTerminal: a small VT100 model that replays that byte stream (printable text, CR, LF,
 * (as CR LF, like a tty's default onlcr), BS, TAB, cursor moves CSI A/B/C/D/G/H, erases CSI J/K, DECSC/DECRC, autowrap CSI ?7 h/l) on a
 * screen of `rows` x `columns` whose lines scroll into a scrollback above it, as a terminal
 * does; the cursor can never move up into the scrollback. The result is the scrollback plus
 * the screen, so a test reads the final frame like a user scrolling back.
 */
import { spawn } from 'node:child_process';
import { BIN, builtDist, collectOutput } from '../cli/_cli';

export interface TerminalRun {
  code: number | null;
  /** Every byte the terminal received. */
  raw: string;
  /** The final frame: scrollback and screen, trailing blanks trimmed. */
  lines: string[];
}

export interface TerminalOptions {
  columns?: number;
  rows?: number;
  cwd?: string;
  timeoutMs?: number;
}

/** Single-quotes a word for sh. */
function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export async function runInTerminal(args: string[], opts: TerminalOptions = {}): Promise<TerminalRun> {
  builtDist();
  const columns = opts.columns ?? 100;
  const rows = opts.rows ?? 40;
  const command = `stty cols ${columns} rows ${rows}; exec ${[process.execPath, BIN, ...args].map(shellQuote).join(' ')}`;
  const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  // script's own stdout is the terminal's byte stream; its stderr only its own complaints.
  const { code, stdout: raw, stderr } = await collectOutput(child, opts.timeoutMs);
  if (stderr) throw new Error(`script: ${stderr}`);
  return { code, raw, lines: renderTerminal(raw, columns, rows) };
}

/** Replays `raw` on a `columns` x `rows` terminal; returns scrollback + screen (see above). */
export function renderTerminal(raw: string, columns: number, rows: number): string[] {
  const lines: string[][] = [[]];
  let row = 0; // index into lines
  let col = 0;
  let autowrap = true;
  let pendingWrap = false;
  let saved = { row: 0, col: 0 };
  const top = (): number => Math.max(0, lines.length - rows);
  const lineAt = (r: number): string[] => {
    while (lines.length <= r) lines.push([]);
    return lines[r]!;
  };
  const down = (): void => {
    row++;
    lineAt(row);
  };
  const put = (ch: string): void => {
    if (pendingWrap && autowrap) {
      down();
      col = 0;
    }
    pendingWrap = false;
    const line = lineAt(row);
    while (line.length < col) line.push(' ');
    line[col] = ch;
    if (col === columns - 1) pendingWrap = true;
    else col++;
  };
  const chars = Array.from(raw);
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i]!;
    if (ch === '\x1b') {
      const next = chars[i + 1];
      if (next === '7' || next === '8') {
        if (next === '7') saved = { row, col };
        else ({ row, col } = { row: Math.max(top(), saved.row), col: saved.col });
        pendingWrap = false;
        i++;
        continue;
      }
      if (next !== '[') throw new Error(`unexpected escape ESC ${JSON.stringify(next)} at ${i}`);
      let j = i + 2;
      let params = '';
      while (j < chars.length && /[0-9;?]/.test(chars[j]!)) params += chars[j++];
      const final = chars[j];
      i = j;
      const n = Number(params.replace('?', '').split(';')[0] || '0');
      const count = Math.max(1, n);
      pendingWrap = false;
      switch (final) {
        case 'A':
          row = Math.max(top(), row - count);
          break;
        case 'B':
          for (let k = 0; k < count; k++) down();
          break;
        case 'C':
          col = Math.min(columns - 1, col + count);
          break;
        case 'D':
          col = Math.max(0, col - count);
          break;
        case 'G':
          col = Math.min(columns - 1, count - 1);
          break;
        case 'H': {
          const [r, c] = params.split(';').map((x) => Math.max(1, Number(x || '1')));
          row = top() + (r ?? 1) - 1;
          lineAt(row);
          col = (c ?? 1) - 1;
          break;
        }
        case 'K': {
          const line = lineAt(row);
          if (n === 0) line.length = Math.min(line.length, col);
          else if (n === 1) for (let k = 0; k <= col && k < line.length; k++) line[k] = ' ';
          else line.length = 0;
          break;
        }
        case 'J':
          if (n === 0) {
            lineAt(row).length = Math.min(lineAt(row).length, col);
            lines.length = row + 1;
          } else if (n === 2) {
            for (let r = top(); r < lines.length; r++) lines[r] = [];
          } else throw new Error(`unsupported CSI ${n}J`);
          break;
        case 'h':
        case 'l':
          if (params === '?7') autowrap = final === 'h';
          break;
        case 'm':
          break;
        default:
          throw new Error(`unsupported CSI ${params}${final}`);
      }
      continue;
    }
    if (ch === '\r') {
      col = 0;
      pendingWrap = false;
    } else if (ch === '\n') {
      down(); // and column 0: a tty's output mapping (onlcr, on by default) sends LF as CR LF
      col = 0;
      pendingWrap = false;
    } else if (ch === '\b') {
      col = Math.max(0, col - 1);
      pendingWrap = false;
    } else if (ch === '\t') {
      col = Math.min(columns - 1, (Math.floor(col / 8) + 1) * 8);
    } else if (ch === '\x07') {
      // bell
    } else {
      if (!autowrap && pendingWrap) pendingWrap = false; // at the last column, overwrite it
      put(ch);
    }
  }
  const text = lines.map((l) => l.join('').trimEnd());
  while (text.length && text[text.length - 1] === '') text.pop();
  return text;
}
