/**
 * Opening a local file to read, whatever it holds (an XVA, a disk image, an OVA): every failure
 * is one InputError INPUT_UNREADABLE naming the file and the system's cause, e.g.
 * `/srv/vm.raw: cannot open disk image: ENOENT: no such file or directory` (exit code 2). The
 * file is opened read-only; a directory is refused here rather than failing at the first read.
 */
import fs from 'node:fs';
import { open as openHandle, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { InputError } from '../errors';
import { systemErrorText } from '../errors';

const fsOpen = promisify(fs.open);
const fsFstat = promisify(fs.fstat);
const fsStat = promisify(fs.stat);
const fsClose = promisify(fs.close);

/** INPUT_UNREADABLE naming the input, with the system error's code and text. */
export function unreadable(input: string, what: string, err?: unknown): InputError {
  return new InputError('INPUT_UNREADABLE', err === undefined ? what : `${what}: ${systemErrorText(err)}`, { input }, { cause: err });
}

/** Opens `path` read-only and stats it, as a descriptor; `what` names the file in messages ("input"). */
export async function openFd(path: string, what = 'input'): Promise<{ fd: number; stat: fs.Stats }> {
  let fd: number;
  try {
    // A FIFO is opened without waiting for a writer (O_NONBLOCK). A blocking open(2) holds a
    // libuv pool thread until one comes, and the process's exit waits for every pool thread:
    // `xva2img some.fifo` interrupted before anything wrote to it would never end. Whoever reads
    // a FIFO from here must take a non-blocking descriptor (open.ts reads it as a socket).
    const fifo = await fsStat(path).then((st) => st.isFIFO(), () => false);
    fd = await fsOpen(path, fifo ? fs.constants.O_RDONLY | fs.constants.O_NONBLOCK : fs.constants.O_RDONLY);
  } catch (err) {
    throw unreadable(path, `cannot open ${what}`, err);
  }
  try {
    return { fd, stat: await statOpened(fd, path, what) };
  } catch (err) {
    await fsClose(fd).catch(() => {});
    throw err;
  }
}

/** As openFd, as a FileHandle; `label` names it in messages (default the path). */
export async function openFileHandle(path: string, what: string, label = path): Promise<{ handle: FileHandle; stat: fs.Stats }> {
  let handle: FileHandle;
  try {
    handle = await openHandle(path, 'r');
  } catch (err) {
    throw unreadable(label, `cannot open ${what}`, err);
  }
  try {
    return { handle, stat: await statOpened(handle.fd, label, what) };
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
}

async function statOpened(fd: number, label: string, what: string): Promise<fs.Stats> {
  let stat: fs.Stats;
  try {
    stat = await fsFstat(fd);
  } catch (err) {
    throw unreadable(label, `cannot stat ${what}`, err);
  }
  if (stat.isDirectory()) throw unreadable(label, `cannot read ${what}: EISDIR: is a directory`);
  return stat;
}
