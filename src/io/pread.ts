/**
 * One positional read: `len` bytes at file position `pos` into buf[off…], resolving with the
 * byte count (fewer at end of file). The callback form of fs.read, without the object that
 * fs.promises and util.promisify(fs.read) allocate per call (this runs once per block or header).
 */
import * as fs from 'node:fs';

export function pread(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}
