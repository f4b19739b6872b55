/** Minimal InputSources for unit tests of the tar and XVA stages (no sniffing, no codecs). */
import { Readable } from 'node:stream';
import type { InputSource, StreamInputSource } from '../../src/input/types';

export function bufferSource(bytes: Buffer, name = 'test.xva', pieceSize = 64 * 1024): InputSource {
  let read = 0;
  async function* pieces(): AsyncGenerator<Buffer> {
    for (let off = 0; off < bytes.length; off += pieceSize) {
      const p = bytes.subarray(off, Math.min(off + pieceSize, bytes.length));
      read += p.length;
      yield p;
    }
  }
  const stream = Readable.from(pieces(), { objectMode: false });
  return {
    kind: 'stream',
    name,
    compression: 'none',
    codec: 'none',
    rawSize: bytes.length,
    stream,
    rawBytesRead: () => read,
    close: async () => {
      stream.destroy();
    },
  };
}

/**
 * `source` read as a stream only, as a pipe or a URL would be: the readers take their streaming
 * path even for a plain file, which they would otherwise read by seeking.
 */
export function asStreamSource(source: InputSource): StreamInputSource {
  return {
    kind: 'stream',
    name: source.name,
    compression: source.compression,
    codec: source.codec,
    rawSize: source.rawSize,
    get stream() {
      return source.stream;
    },
    rawBytesRead: () => source.rawBytesRead(),
    close: () => source.close(),
  };
}
