/**
 * The last few lines of a terminal, redrawn in place (progress bars), with text printed above
 * them that stays (summaries, errors, a finished input's last bar).
 *
 * State: `#drawn` is how many rows are on the screen now, and the cursor sits at the end of the
 * last of them. Every operation is synchronous and complete: `print` erases the rows, writes
 * the text and draws the rows again at once; `close` draws the rows one last time, leaves them
 * and moves below. Nothing is buffered for a later timer tick, so nothing printed can be lost
 * and the last values are always the last drawn. (cli-progress's MultiBar, which this replaces,
 * drew only on its timer: its log() waited for the next tick, which stop() never ran, so a
 * summary logged last was dropped; and remove()/stop() never drew a bar's final value.)
 *
 * Writes on a TTY are synchronous in Node, so the escape sequences of one operation reach the
 * terminal together and before anything the program writes after it. The model and the control
 * sequences: docs/design/terminal-progress.md.
 */

/** ECMA-48 control sequences used here. */
const CSI = '\x1b[';
const HIDE_CURSOR = `${CSI}?25l`;
const SHOW_CURSOR = `${CSI}?25h`;
/** DEC autowrap off: a row wider than the terminal is clipped, so it stays one row to erase. */
const WRAP_OFF = `${CSI}?7l`;
const WRAP_ON = `${CSI}?7h`;
const ERASE_DOWN = `${CSI}J`;

/** Width used when the terminal does not tell (as most tools do). */
const DEFAULT_COLUMNS = 80;

export interface StatusAreaOptions {
  /** Redraws per second while rows change (default 5). */
  fps?: number;
}

export class StatusArea {
  readonly #stream: NodeJS.WriteStream;
  readonly #rows: (columns: number) => string[];
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #drawn = 0;
  #last = '';
  #active = false;
  #closed = false;
  /** Restores the cursor if the process exits while rows are shown (e.g. on SIGINT). */
  readonly #onExit = (): void => this.#restoreTerminal();

  /**
   * `rows` gives the current rows (one line each, no newline) whenever the area draws; they
   * should fit in `columns - 1` characters (longer ones are cut).
   */
  constructor(stream: NodeJS.WriteStream, rows: (columns: number) => string[], options: StatusAreaOptions = {}) {
    this.#stream = stream;
    this.#rows = rows;
    this.#intervalMs = Math.round(1000 / (options.fps ?? 5));
  }

  /** The terminal's width in columns. */
  columns(): number {
    return this.#stream.columns || DEFAULT_COLUMNS;
  }

  /** Draws the rows if they changed since the last draw (called on a timer, and by callers). */
  redraw(): void {
    if (this.#closed) return;
    const rows = this.#currentRows();
    const text = rows.join('\n');
    if (this.#active && text === this.#last) return;
    this.#begin();
    this.#stream.write(this.#erase() + text);
    this.#drawn = rows.length;
    this.#last = text;
  }

  /** Writes `text` above the rows, where it stays; the rows are drawn again below it. */
  print(text: string): void {
    const line = text.endsWith('\n') ? text : text + '\n';
    if (this.#closed || !this.#active) {
      this.#stream.write(line);
      return;
    }
    // Wrapping on for the text (long lines must wrap, not be clipped), off again for the rows.
    const rows = this.#currentRows();
    const drawn = rows.join('\n');
    this.#stream.write(this.#erase() + WRAP_ON + line + WRAP_OFF + drawn);
    this.#drawn = rows.length;
    this.#last = drawn;
  }

  /** Draws the rows a last time and leaves them on the screen; later output goes below. */
  close(): void {
    if (this.#closed) return;
    if (this.#active) {
      this.redraw();
      this.#stream.write(this.#drawn > 0 ? '\n' : '');
    }
    this.#closed = true;
    this.#restoreTerminal();
  }

  #begin(): void {
    if (this.#active) return;
    this.#active = true;
    this.#stream.write(HIDE_CURSOR + WRAP_OFF);
    this.#timer = setInterval(() => this.redraw(), this.#intervalMs);
    this.#timer.unref(); // never what keeps the process alive
    process.once('exit', this.#onExit);
  }

  #restoreTerminal(): void {
    if (!this.#active) return;
    this.#active = false;
    clearInterval(this.#timer);
    process.removeListener('exit', this.#onExit);
    this.#stream.write(WRAP_ON + SHOW_CURSOR);
  }

  /** Moves to the start of the first row and erases from there down. */
  #erase(): string {
    if (this.#drawn === 0) return '\r';
    const up = this.#drawn - 1;
    this.#drawn = 0;
    return '\r' + (up > 0 ? `${CSI}${up}A` : '') + ERASE_DOWN;
  }

  /** The rows, one terminal row each: no newlines, at most columns - 1 characters. */
  #currentRows(): string[] {
    const columns = this.columns();
    return this.#rows(columns).map((r) => this.#fit(r, columns));
  }

  /** Writes one row above the rows to stay, cut to the width as the live rows are (a bar's last frame). */
  printRow(row: string): void {
    this.print(this.#fit(row, this.columns()));
  }

  #fit(row: string, columns: number): string {
    const width = Math.max(1, columns - 1);
    const flat = row.replace(/[\r\n]+/g, ' ');
    const chars = Array.from(flat);
    return chars.length > width ? chars.slice(0, width).join('') : flat;
  }
}
