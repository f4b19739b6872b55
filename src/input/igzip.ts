/**
 * `igzip`, the gzip decoder of Intel's ISA-L (Debian/Ubuntu package `isal`), run as
 * `igzip -dc`: compressed bytes on stdin, decoded bytes on stdout. It inflates about twice as
 * fast as node:zlib (docs/design/gzip-codecs.md has the numbers and how it behaves on
 * multi-member, truncated and corrupt input). gzip.ts makes it a child codec (child-codec.ts).
 */

export const IGZIP_BINARY = 'igzip';
export const IGZIP_ARGS: readonly string[] = ['-d', '-c'];

/**
 * Why an igzip child that has exited failed, as one line; undefined for a clean end (exit 0 and
 * nothing on stderr). igzip names the problem in a few fixed sentences, which are given the
 * words node:zlib uses for the same thing, so that a truncated .gz reads alike whichever
 * decoder ran; anything else is passed on as igzip wrote it.
 */
export function igzipExitProblem(stderr: string, code: number | null, signal: NodeJS.Signals | null): string | undefined {
  const text = stderr.replace(/\s*[\r\n]+\s*/g, '; ').replace(/^[;\s]+|[;\s]+$/g, '');
  if (code === 0 && !text) return undefined;
  let detail = text.replace(/igzip: (Error )?/g, '').replace(/ \(null\)/g, ''); // (null): igzip's name for stdin
  if (/does not contain a complete gzip file/.test(text)) detail = 'unexpected end of file';
  else if (/invalid gzip header/.test(text)) detail = 'incorrect header check';
  else if (/while decompressing/.test(text)) detail = 'invalid compressed data';
  return `${detail || 'no message'} (igzip exit ${code ?? signal})`;
}
