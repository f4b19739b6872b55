/**
 * An independent tar reader for tests: tar-stream's extractor behind our TarReader interface.
 * xva2img itself parses tar with its own walkTarEntries (src/tar/); this is the oracle its
 * results are compared with (entries, sizes, types, bytes), as GNU tar is for writing.
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import * as tarStream from 'tar-stream';
import { XvaError, XvaFormatError } from '../../src/errors';
import { plausibleName, type TarEntry, type TarReader } from '../../src/tar/entries';

const TAR_BLOCK = 512;
/** Bytes buffered between the input and the parser. */
const READ_AHEAD_BYTES = 4 * 1024 * 1024;

/** An entry as tar-stream yields it: a readable body carrying its header. */
type RawEntry = AsyncIterable<Buffer> & { header: tarStream.Header };

function padded(size: number): number {
  return Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
}

function typeOf(t: string | null | undefined): TarEntry['type'] {
  if (t === 'file' || t === 'contiguous-file') return 'file';
  if (t === 'directory') return 'directory';
  return 'other';
}

/** Wraps tar-stream's error messages into one line that names the byte offset. */
function tarError(err: unknown, offset: number): XvaError {
  if (err instanceof XvaError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  if (/Unexpected end of data/i.test(msg)) {
    return new XvaFormatError('TAR_TRUNCATED', `archive truncated: it ends inside an entry or header (stream ends at byte ${offset})`, { offset });
  }
  if (/Invalid tar header|unknown format|Invalid header|Header exceeds/i.test(msg)) {
    return new XvaFormatError('TAR_BAD_HEADER', `invalid tar header at byte ${offset} (bad checksum or not a tar archive)`, { offset });
  }
  return new XvaFormatError('TAR_BAD_HEADER', `tar stream error at byte ${offset}: ${msg}`, { offset }, { cause: err });
}

function describeName(name: string): string {
  const bytes = Buffer.byteLength(name, 'utf8');
  return bytes > 60 ? `${bytes} bytes long` : JSON.stringify(name);
}


/** Reads `stream` as a tar archive. */
export function readTar(stream: Readable): TarReader {
  // XAPI writes V7 headers without the ustar magic; tar-stream needs this option to accept them.
  const extract = tarStream.extract({ allowUnknownFormat: true, highWaterMark: READ_AHEAD_BYTES } as Parameters<typeof tarStream.extract>[0]);
  let consumed = 0;
  let lastEntryEnd = 0;
  let sourceError: unknown;
  const counter = new Transform({
    // Read-ahead: the decoder and file reads keep running while the consumer hashes and writes.
    highWaterMark: READ_AHEAD_BYTES,
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      consumed += chunk.length;
      cb(null, chunk);
    },
  });
  stream.on('error', (err) => {
    sourceError ??= err;
    extract.destroy(err instanceof Error ? err : new Error(String(err)));
  });
  counter.on('error', (err) => extract.destroy(err));
  stream.pipe(counter).pipe(extract as unknown as NodeJS.WritableStream);

  const headerOffsetNow = (): number => {
    const o = (extract as unknown as { _offset?: number })._offset;
    return typeof o === 'number' ? o : lastEntryEnd;
  };

  async function* iterate(): AsyncGenerator<TarEntry> {
    const it = (extract as unknown as AsyncIterable<RawEntry>)[Symbol.asyncIterator]();
    for (;;) {
      let step: IteratorResult<RawEntry>;
      try {
        step = await it.next();
      } catch (err) {
        if (sourceError instanceof XvaError) throw sourceError;
        if (sourceError) throw sourceError;
        throw tarError(err, /Unexpected end/i.test(String((err as Error)?.message)) ? consumed : headerOffsetNow());
      }
      if (step.done) return;
      const raw = step.value;
      const h = raw.header as tarStream.Header & { byteOffset?: number };
      // tar-stream never delivers (nor skips) the body of a directory entry: its "data" is parsed
      // as the next header, and the body stream of a directory whose header claims a size never
      // ends. So a directory is bodyless here whatever its size field says (else: a hang).
      const bodyless = h.type === 'directory';
      const size = bodyless ? 0 : (h.size ?? 0);
      const dataOffset = typeof h.byteOffset === 'number' ? h.byteOffset : lastEntryEnd + TAR_BLOCK;
      if (!plausibleName(h.name)) {
        // Real XVA names are short ASCII. A name with control characters, invalid UTF-8 or
        // kilobytes long comes from a corrupt header or from a GNU long-name / pax record that
        // swallowed the next entry's data; skipping it as a "foreign entry" would silently drop
        // a chunk, so refuse the archive instead.
        throw new XvaFormatError('TAR_BAD_HEADER', `implausible tar entry name at byte ${dataOffset - TAR_BLOCK} (${describeName(h.name)})`, {
          offset: dataOffset - TAR_BLOCK,
        });
      }
      let drained = bodyless;
      const fail = (err: unknown): never => {
        if (sourceError) throw sourceError;
        // tar-stream destroys the entry when the input ends early: that is a truncation.
        if (consumed < dataOffset + size) throw tarError(new Error('Unexpected end of data'), consumed);
        throw tarError(err, consumed);
      };
      const entry: TarEntry = {
        name: h.name.replace(/^(\.\/)+/, ''),
        size,
        type: typeOf(h.type),
        headerOffset: dataOffset - TAR_BLOCK,
        dataOffset,
        async readAll(): Promise<Buffer> {
          if (bodyless) return Buffer.alloc(0);
          if (drained) throw new Error('tar entry already consumed');
          drained = true;
          const out = Buffer.allocUnsafe(size);
          let at = 0;
          try {
            for await (const piece of raw as AsyncIterable<Buffer>) {
              piece.copy(out, at);
              at += piece.length;
            }
          } catch (err) {
            fail(err);
          }
          if (at !== size) fail(new Error('Unexpected end of data'));
          return out;
        },
        async skip(): Promise<void> {
          if (drained) return;
          drained = true;
          try {
            for await (const _ of raw as AsyncIterable<Buffer>) void _;
          } catch (err) {
            fail(err);
          }
        },
      };
      yield entry;
      if (!drained) await entry.skip();
      lastEntryEnd = dataOffset + padded(size);
    }
  }

  const gen = iterate();
  return {
    [Symbol.asyncIterator]: () => gen,
    bytesConsumed: () => consumed,
    endBlocksSeen: () => consumed >= lastEntryEnd + 2 * TAR_BLOCK,
    destroy(err?: Error) {
      extract.destroy(err);
      stream.unpipe(counter);
      stream.destroy();
    },
  };
}
