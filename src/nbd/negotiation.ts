/**
 * The handshake of a read-only NBD server as a pure state machine: options in, option replies
 * and the next step out. No I/O, so every path (and the fuzzer) runs it without a socket.
 *
 * Fixed newstyle negotiation (docs/design/nbd-server.md, "The NBD server"):
 *   greeting (NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE | NO_ZEROES) -> client flags -> options until
 *   NBD_OPT_GO / NBD_OPT_EXPORT_NAME enters transmission, NBD_OPT_ABORT ends the session.
 * State carried between options: whether structured replies were negotiated, and which export
 * the last NBD_OPT_SET_META_CONTEXT selected `base:allocation` for (block status is only
 * offered on that export). Every option is answered (fixed newstyle): unknown ones with
 * NBD_REP_ERR_UNSUP, malformed ones with NBD_REP_ERR_INVALID; only an NBD_OPT_EXPORT_NAME for an
 * export that does not exist closes the session, as the protocol requires.
 */
import {
  BASE_ALLOCATION,
  decodeInfoRequest,
  decodeMetaContextRequest,
  encodeExportNameReply,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContextPayload,
  encodeOptionError,
  encodeOptionReply,
  encodeServerPayload,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  INFO,
  KNOWN_CLIENT_FLAGS,
  MAX_STRING_BYTES,
  OPT,
  REP,
  TFLAG,
} from './protocol';

/** What the handshake needs to know of an export. */
export interface ExportDescriptor {
  /** Name clients ask for (`0`, `1`, … : the disk's userdevice). */
  name: string;
  /** Shown by `nbdinfo --list` (the VDI's name). */
  description: string;
  /** Size in bytes. */
  size: number;
}

/** Block size constraints advertised with NBD_INFO_BLOCK_SIZE. */
export interface BlockSizes {
  minimum: number;
  preferred: number;
  /** Largest read payload served; longer reads fail with EINVAL. */
  maximum: number;
}

/** The handshake flags this server sends in its greeting. */
export const SERVER_HANDSHAKE_FLAGS = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES;

/** Id of `base:allocation` in block status replies (any nonzero value would do). */
export const BASE_ALLOCATION_ID = 1;

/** What the transmission phase knows of a negotiated session. */
export interface Session<E extends ExportDescriptor = ExportDescriptor> {
  export: E;
  structured: boolean;
  /** Id of the `base:allocation` context when it was selected for this export. */
  blockStatusContext: number | undefined;
  transmissionFlags: number;
}

export type OptionOutcome<E extends ExportDescriptor = ExportDescriptor> =
  | { next: 'continue'; replies: Buffer[] }
  | { next: 'close'; replies: Buffer[] }
  | { next: 'transmit'; replies: Buffer[]; session: Session<E> };

/**
 * The client's 32-bit flags: unknown bits (or NO_ZEROES, which we offer, is fine) make the
 * session end, as the protocol requires; otherwise whether the 124 zero bytes are left out.
 */
export function acceptClientFlags(flags: number): { ok: false } | { ok: true; noZeroes: boolean } {
  if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) return { ok: false };
  return { ok: true, noZeroes: (flags & FLAG_C_NO_ZEROES) !== 0 };
}

export class Negotiation<E extends ExportDescriptor = ExportDescriptor> {
  private structured = false;
  /** The export the last NBD_OPT_SET_META_CONTEXT selected base:allocation for. */
  private metaExport: E | undefined;

  /** `exports[0]` is the default export (the empty name). */
  constructor(
    private readonly exports: readonly E[],
    private readonly blockSizes: BlockSizes,
    private readonly noZeroes: boolean,
  ) {}

  /** Answers one option; `data` is its whole payload (the caller bounds its length). */
  handle(option: number, data: Buffer): OptionOutcome<E> {
    switch (option) {
      case OPT.EXPORT_NAME:
        return this.exportName(data);
      case OPT.ABORT:
        return { next: 'close', replies: [encodeOptionReply(option, REP.ACK)] };
      case OPT.LIST:
        if (data.length !== 0) return this.error(option, REP.ERR_INVALID, 'NBD_OPT_LIST takes no data');
        return {
          next: 'continue',
          replies: [...this.exports.map((e) => encodeOptionReply(option, REP.SERVER, encodeServerPayload(e.name, e.description))), encodeOptionReply(option, REP.ACK)],
        };
      case OPT.STARTTLS:
        return this.error(option, REP.ERR_UNSUP, 'TLS is not supported by this server');
      case OPT.INFO:
      case OPT.GO:
        return this.infoOrGo(option, data);
      case OPT.STRUCTURED_REPLY:
        if (data.length !== 0) return this.error(option, REP.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        this.structured = true;
        return { next: 'continue', replies: [encodeOptionReply(option, REP.ACK)] };
      case OPT.LIST_META_CONTEXT:
      case OPT.SET_META_CONTEXT:
        return this.metaContext(option, data);
      default:
        return this.error(option, REP.ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  /** Transmission flags of an export: read-only, flush and cache accepted, several connections safe. */
  transmissionFlags(): number {
    const base = TFLAG.HAS_FLAGS | TFLAG.READ_ONLY | TFLAG.SEND_FLUSH | TFLAG.SEND_CACHE | TFLAG.CAN_MULTI_CONN;
    return this.structured ? base | TFLAG.SEND_DF : base;
  }

  private find(name: string): E | undefined {
    return name === '' ? this.exports[0] : this.exports.find((e) => e.name === name);
  }

  private unknownExport(option: number, name: string): OptionOutcome<E> {
    const names = this.exports.map((e) => e.name).join(', ') || 'none';
    return this.error(option, REP.ERR_UNKNOWN, `no export "${name.slice(0, 100)}" (exports: ${names})`);
  }

  private error(option: number, type: number, message: string): OptionOutcome<E> {
    return { next: 'continue', replies: [encodeOptionError(option, type, message)] };
  }

  private session(exp: E): Session<E> {
    return {
      export: exp,
      structured: this.structured,
      blockStatusContext: this.structured && this.metaExport === exp ? BASE_ALLOCATION_ID : undefined,
      transmissionFlags: this.transmissionFlags(),
    };
  }

  private exportName(data: Buffer): OptionOutcome<E> {
    // No error reply exists for this option: an unknown export ends the session.
    const exp = data.length <= MAX_STRING_BYTES ? this.find(data.toString('utf8')) : undefined;
    if (!exp) return { next: 'close', replies: [] };
    const session = this.session(exp);
    return { next: 'transmit', replies: [encodeExportNameReply(exp.size, session.transmissionFlags, this.noZeroes)], session };
  }

  private infoOrGo(option: number, data: Buffer): OptionOutcome<E> {
    const req = decodeInfoRequest(data);
    if (!req) return this.error(option, REP.ERR_INVALID, 'malformed NBD_OPT_INFO/NBD_OPT_GO data');
    const exp = this.find(req.name);
    if (!exp) return this.unknownExport(option, req.name);
    const { minimum, preferred, maximum } = this.blockSizes;
    const replies = [encodeOptionReply(option, REP.INFO, encodeInfoExport(exp.size, this.transmissionFlags()))];
    if (req.requests.includes(INFO.NAME)) replies.push(encodeOptionReply(option, REP.INFO, encodeInfoString(INFO.NAME, exp.name)));
    if (req.requests.includes(INFO.DESCRIPTION)) replies.push(encodeOptionReply(option, REP.INFO, encodeInfoString(INFO.DESCRIPTION, exp.description)));
    // Sent whether asked or not: clients that do not understand it ignore it.
    replies.push(encodeOptionReply(option, REP.INFO, encodeInfoBlockSize(minimum, preferred, maximum)));
    replies.push(encodeOptionReply(option, REP.ACK));
    if (option === OPT.INFO) return { next: 'continue', replies };
    return { next: 'transmit', replies, session: this.session(exp) };
  }

  private metaContext(option: number, data: Buffer): OptionOutcome<E> {
    const set = option === OPT.SET_META_CONTEXT;
    if (set) this.metaExport = undefined; // replaced even when this option fails
    if (set && !this.structured) return this.error(option, REP.ERR_INVALID, 'negotiate structured replies before metadata contexts');
    const req = decodeMetaContextRequest(data);
    if (!req) return this.error(option, REP.ERR_INVALID, 'malformed metadata context request');
    const exp = this.find(req.name);
    if (!exp) return this.unknownExport(option, req.name);
    // The only context: base:allocation. `base:` lists it; queries of other namespaces are ignored.
    const matches = set
      ? req.queries.includes(BASE_ALLOCATION)
      : req.queries.length === 0 || req.queries.some((q) => q === BASE_ALLOCATION || q === 'base:');
    const replies: Buffer[] = [];
    if (matches) {
      if (set) this.metaExport = exp;
      replies.push(encodeOptionReply(option, REP.META_CONTEXT, encodeMetaContextPayload(set ? BASE_ALLOCATION_ID : 0, BASE_ALLOCATION)));
    }
    replies.push(encodeOptionReply(option, REP.ACK));
    return { next: 'continue', replies };
  }
}
