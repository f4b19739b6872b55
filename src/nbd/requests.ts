/**
 * The transmission-phase rules of a read-only export: what a request asks for, or why it is
 * refused. Pure, like the handshake (negotiation.ts), so the connection only does the I/O and
 * the fuzzer can throw any 28 bytes at it.
 *
 * Refusals (docs/design/nbd-server.md, "The NBD server"): writes, trims, write-zeroes and resizes get
 * EPERM (read-only export; a write's payload is read and dropped first, so the stream stays in
 * step), anything beyond the export's end, a read longer than the advertised maximum payload,
 * block status without a negotiated context, unknown flags and unknown commands get EINVAL.
 * A bad magic, or a write payload too large to skip, ends the connection: the stream can no
 * longer be trusted.
 */
import type { Session } from './negotiation';
import { CMD, CMD_FLAG, NBD_ERR, type Request } from './protocol';

export type RequestVerdict =
  | { action: 'read'; offset: number; length: number; df: boolean }
  | { action: 'block-status'; offset: number; length: number; reqOne: boolean; contextId: number }
  | { action: 'cache'; offset: number; length: number }
  | { action: 'flush' }
  | { action: 'disconnect' }
  /** Reply with an error; first read and drop `skipPayload` bytes (a write's data). */
  | { action: 'error'; error: number; message: string; skipPayload: number }
  /** Close the connection without a reply. */
  | { action: 'hang-up'; reason: string };

/** Flags each command may carry. FUA is accepted everywhere (and ignored: nothing is written). */
const ALLOWED_FLAGS: Record<number, number> = {
  [CMD.READ]: CMD_FLAG.FUA | CMD_FLAG.DF,
  [CMD.FLUSH]: CMD_FLAG.FUA,
  [CMD.CACHE]: CMD_FLAG.FUA,
  [CMD.BLOCK_STATUS]: CMD_FLAG.FUA | CMD_FLAG.REQ_ONE,
};

function refuse(error: number, message: string, skipPayload = 0): RequestVerdict {
  return { action: 'error', error, message, skipPayload };
}

function outOfBounds(req: Request, size: number): RequestVerdict | undefined {
  if (req.offset + req.length <= size) return undefined;
  const offset = Number.isFinite(req.offset) ? String(req.offset) : 'beyond 2^53';
  return refuse(NBD_ERR.EINVAL, `request at offset ${offset} for ${req.length} bytes goes past the end of the export (${size} bytes)`);
}

/** Decides what to do with a decoded request on `session`; `maxPayload` caps reads and writes. */
export function judgeRequest(req: Request, session: Session, maxPayload: number): RequestVerdict {
  if (!req.magicOk) return { action: 'hang-up', reason: 'bad request magic' };
  const size = session.export.size;
  switch (req.type) {
    case CMD.WRITE:
      // The payload follows the header whatever we answer; too big to drop safely: hang up.
      if (req.length > maxPayload) return { action: 'hang-up', reason: `write of ${req.length} bytes exceeds the ${maxPayload}-byte maximum payload` };
      return refuse(NBD_ERR.EPERM, 'read-only export', req.length);
    case CMD.TRIM:
    case CMD.WRITE_ZEROES:
    case CMD.RESIZE:
      return refuse(NBD_ERR.EPERM, 'read-only export');
    case CMD.DISC:
      return { action: 'disconnect' };
  }
  const allowed = ALLOWED_FLAGS[req.type];
  if (allowed === undefined) return refuse(NBD_ERR.EINVAL, `unknown command ${req.type}`);
  if ((req.flags & ~allowed) !== 0) return refuse(NBD_ERR.EINVAL, `flags 0x${req.flags.toString(16)} not valid for command ${req.type}`);
  switch (req.type) {
    case CMD.READ: {
      const df = (req.flags & CMD_FLAG.DF) !== 0;
      if (df && !session.structured) return refuse(NBD_ERR.EINVAL, 'NBD_CMD_FLAG_DF without structured replies');
      if (req.length > maxPayload) return refuse(NBD_ERR.EINVAL, `read of ${req.length} bytes exceeds the ${maxPayload}-byte maximum payload`);
      return outOfBounds(req, size) ?? { action: 'read', offset: req.offset, length: req.length, df };
    }
    case CMD.BLOCK_STATUS:
      if (session.blockStatusContext === undefined) return refuse(NBD_ERR.EINVAL, 'block status without a negotiated metadata context');
      if (req.length === 0) return refuse(NBD_ERR.EINVAL, 'block status of 0 bytes');
      return (
        outOfBounds(req, size) ?? {
          action: 'block-status',
          offset: req.offset,
          length: req.length,
          reqOne: (req.flags & CMD_FLAG.REQ_ONE) !== 0,
          contextId: session.blockStatusContext,
        }
      );
    case CMD.CACHE:
      return outOfBounds(req, size) ?? { action: 'cache', offset: req.offset, length: req.length };
    default:
      return { action: 'flush' };
  }
}
