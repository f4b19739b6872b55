/**
 * The open, run, close shape the streaming verbs share (convert, measure, inspect and the
 * first pass of qcow2 to a pipe): open the XVA input unless the caller already did, run one
 * pass over it, tag an XvaError with the input's name (describe() then starts with it, as
 * the CLI prints every error), and close the input on every path.
 *
 * An input the caller opened is closed too: a verb given an InputSource owns it from then on.
 * A failure to open is not tagged here: openInput names the input in its own errors.
 * verify (which turns errors into problems instead of throwing), pack --from (which maps
 * writer errors itself) and the random-access verbs (map, serve) open their inputs their own way.
 */
import { XvaError } from '../errors';
import { openInput } from '../input/open';
import type { InputSource, OpenInputOptions } from '../input/types';

export async function withXvaInput<R>(input: string | InputSource, options: OpenInputOptions, run: (source: InputSource) => Promise<R>): Promise<R> {
  const source = typeof input === 'string' ? await openInput(input, options) : input;
  try {
    return await run(source);
  } catch (err) {
    if (err instanceof XvaError) err.at({ input: source.name });
    throw err;
  } finally {
    await source.close();
  }
}
