/**
 * The Network Block Device protocol as bytes: constants, and encoders/decoders for every message
 * a read-only server sends or receives (docs/design/nbd-server.md, after the protocol document
 * NetworkBlockDevice/nbd doc/proto.md). Pure: no sockets, no state; every decoder is
 * bounds-checked and reports malformed input as `undefined`, never by reading past its buffer.
 *
 * All integers are big-endian ("network byte order"). 64-bit offsets and sizes are JavaScript
 * numbers: a value past Number.MAX_SAFE_INTEGER decodes as `Infinity`, which no export bound
 * accepts, so it is refused like any other out-of-range request.
 */

// ---------------------------------------------------------------------------------------------
// Magic numbers

/** 'NBDMAGIC': first 8 bytes the server sends. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': second 8 bytes of the greeting, and the first 8 of every client option. */
export const IHAVEOPT = 0x49484156454f5054n;
/** Magic of every option reply of fixed newstyle negotiation. */
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// ---------------------------------------------------------------------------------------------
// Handshake

/** Handshake flags (server, 16 bits). */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
/** Client flags (32 bits); any other bit set means the client is not speaking our protocol. */
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;
export const KNOWN_CLIENT_FLAGS = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES;

/** Option codes. */
export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

/** Option reply types; errors have bit 31 set. */
export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;

/** Information types of NBD_OPT_INFO / NBD_OPT_GO. */
export const INFO = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags (16 bits, sent with the export size). */
export const TFLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

// ---------------------------------------------------------------------------------------------
// Transmission

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  RESIZE: 8,
} as const;

export const CMD_FLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
  PAYLOAD_LEN: 1 << 5,
} as const;

/** Structured reply chunk flags and types. */
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;

/** Error values of replies (the protocol fixes these numbers whatever the platform). */
export const NBD_ERR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** Flags of the `base:allocation` metadata context. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;
export const BASE_ALLOCATION = 'base:allocation';

// ---------------------------------------------------------------------------------------------
// Sizes

export const GREETING_BYTES = 18;
export const CLIENT_FLAGS_BYTES = 4;
export const OPTION_HEADER_BYTES = 16;
export const REQUEST_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const STRUCTURED_HEADER_BYTES = 20;
/** Longest string the protocol allows (export names, queries, messages). */
export const MAX_STRING_BYTES = 4096;
/** Zero padding after NBD_OPT_EXPORT_NAME's reply unless both sides said NO_ZEROES. */
const EXPORT_NAME_PADDING = 124;

const TWO_32 = 2 ** 32;

/** A 64-bit unsigned field as a number; Infinity when it exceeds Number.MAX_SAFE_INTEGER. */
export function readU64(buf: Buffer, at: number): number {
  const hi = buf.readUInt32BE(at);
  const lo = buf.readUInt32BE(at + 4);
  const v = hi * TWO_32 + lo;
  return Number.isSafeInteger(v) ? v : Infinity;
}

function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_32), at);
  buf.writeUInt32BE(value % TWO_32, at + 4);
}

// ---------------------------------------------------------------------------------------------
// Handshake messages

/** S: NBDMAGIC, IHAVEOPT, 16-bit handshake flags. */
export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.alloc(GREETING_BYTES);
  b.writeBigUInt64BE(NBD_MAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

export interface OptionHeader {
  /** False when the 8 magic bytes are not IHAVEOPT. */
  magicOk: boolean;
  option: number;
  /** Length of the option data that follows. */
  length: number;
}

/** C: IHAVEOPT, 32-bit option, 32-bit data length (16 bytes). */
export function decodeOptionHeader(buf: Buffer): OptionHeader | undefined {
  if (buf.length < OPTION_HEADER_BYTES) return undefined;
  return { magicOk: buf.readBigUInt64BE(0) === IHAVEOPT, option: buf.readUInt32BE(8), length: buf.readUInt32BE(12) };
}

/** S: option reply header (magic, option, type, length) followed by `payload`. */
export function encodeOptionReply(option: number, type: number, payload: Buffer = EMPTY): Buffer {
  const b = Buffer.alloc(20 + payload.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(payload.length, 16);
  payload.copy(b, 20);
  return b;
}

/** An option error reply carrying a message for humans (clients print it). */
export function encodeOptionError(option: number, type: number, message: string): Buffer {
  return encodeOptionReply(option, type, utf8Capped(message));
}

const EMPTY = Buffer.alloc(0);

/** UTF-8 bytes of `s`, cut to the protocol's string limit on a character boundary. */
function utf8Capped(s: string, max = MAX_STRING_BYTES): Buffer {
  let b = Buffer.from(s, 'utf8');
  if (b.length <= max) return b;
  let end = max;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--; // do not cut a character in two
  b = b.subarray(0, end);
  return b;
}

/** NBD_REP_SERVER payload: 32-bit name length, name, description. */
export function encodeServerPayload(name: string, description: string): Buffer {
  const n = utf8Capped(name);
  const d = utf8Capped(description);
  const b = Buffer.alloc(4 + n.length + d.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  d.copy(b, 4 + n.length);
  return b;
}

/** NBD_REP_INFO payload of NBD_INFO_EXPORT: size and transmission flags. */
export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(INFO.EXPORT, 0);
  writeU64(b, size, 2);
  b.writeUInt16BE(transmissionFlags, 10);
  return b;
}

/** A `head`-byte header written by `writeHead`, then `text` in UTF-8 (capped). */
function headedString(head: number, text: string, writeHead: (b: Buffer) => void): Buffer {
  const s = utf8Capped(text);
  const b = Buffer.alloc(head + s.length);
  writeHead(b);
  s.copy(b, head);
  return b;
}

/** NBD_REP_INFO payload of NBD_INFO_NAME or NBD_INFO_DESCRIPTION. */
export function encodeInfoString(type: typeof INFO.NAME | typeof INFO.DESCRIPTION, text: string): Buffer {
  return headedString(2, text, (b) => b.writeUInt16BE(type, 0));
}

/** NBD_REP_INFO payload of NBD_INFO_BLOCK_SIZE. */
export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(INFO.BLOCK_SIZE, 0);
  b.writeUInt32BE(minimum, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(maximum, 10);
  return b;
}

/** NBD_REP_META_CONTEXT payload: 32-bit context id, name. */
export function encodeMetaContextPayload(id: number, name: string): Buffer {
  return headedString(4, name, (b) => b.writeUInt32BE(id, 0));
}

/** S: the reply to NBD_OPT_EXPORT_NAME (no option reply header): size, flags, maybe 124 zeros. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(10 + (noZeroes ? 0 : EXPORT_NAME_PADDING));
  writeU64(b, size, 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}

/** Data of NBD_OPT_INFO / NBD_OPT_GO. */
export interface InfoRequest {
  name: string;
  /** Information types asked for, in order (duplicates kept; the server ignores unknown ones). */
  requests: number[];
}

/**
 * A protocol string at `at`: 32-bit length, then that many bytes, at most MAX_STRING_BYTES and
 * leaving at least `after` bytes of `data`; undefined when it does not fit.
 */
function readString(data: Buffer, at: number, after: number): { value: string; end: number } | undefined {
  if (data.length - at < 4 + after) return undefined;
  const length = data.readUInt32BE(at);
  const end = at + 4 + length;
  if (length > MAX_STRING_BYTES || end + after > data.length) return undefined;
  return { value: data.toString('utf8', at + 4, end), end };
}

/** 32-bit name length, name, 16-bit count, count × 16-bit info types; exact length required. */
export function decodeInfoRequest(data: Buffer): InfoRequest | undefined {
  const name = readString(data, 0, 2);
  if (!name) return undefined;
  const count = data.readUInt16BE(name.end);
  const at = name.end + 2;
  if (data.length !== at + 2 * count) return undefined;
  const requests: number[] = [];
  for (let i = 0; i < count; i++) requests.push(data.readUInt16BE(at + 2 * i));
  return { name: name.value, requests };
}

/** Data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. */
export interface MetaContextRequest {
  name: string;
  queries: string[];
}

/** Largest number of queries accepted in one meta-context option. */
export const MAX_META_QUERIES = 256;

/** 32-bit export name length, name, 32-bit query count, each query as 32-bit length + string. */
export function decodeMetaContextRequest(data: Buffer): MetaContextRequest | undefined {
  const name = readString(data, 0, 4);
  if (!name) return undefined;
  const count = data.readUInt32BE(name.end);
  if (count > MAX_META_QUERIES) return undefined;
  let at = name.end + 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    const q = readString(data, at, 0);
    if (!q) return undefined;
    queries.push(q.value);
    at = q.end;
  }
  return at === data.length ? { name: name.value, queries } : undefined;
}

// ---------------------------------------------------------------------------------------------
// Transmission messages

export interface Request {
  /** False when the first 4 bytes are not the request magic. */
  magicOk: boolean;
  flags: number;
  type: number;
  /** The client's 64-bit handle (cookie), echoed verbatim in every reply. */
  handle: bigint;
  /** Infinity when past Number.MAX_SAFE_INTEGER (see readU64). */
  offset: number;
  length: number;
}

/** C: magic, 16-bit flags, 16-bit type, 64-bit handle, 64-bit offset, 32-bit length (28 bytes). */
export function decodeRequest(buf: Buffer): Request | undefined {
  if (buf.length < REQUEST_BYTES) return undefined;
  return {
    magicOk: buf.readUInt32BE(0) === REQUEST_MAGIC,
    flags: buf.readUInt16BE(4),
    type: buf.readUInt16BE(6),
    handle: buf.readBigUInt64BE(8),
    offset: readU64(buf, 16),
    length: buf.readUInt32BE(24),
  };
}

/** S: simple reply header (data, if any, follows). */
export function encodeSimpleReply(error: number, handle: bigint): Buffer {
  const b = Buffer.alloc(SIMPLE_REPLY_BYTES);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  b.writeBigUInt64BE(handle, 8);
  return b;
}

/** The 20-byte header of a structured reply chunk, with room for `extra` bytes after it. */
function structuredHeader(flags: number, type: number, handle: bigint, payloadLength: number, extra: number): Buffer {
  const b = Buffer.alloc(STRUCTURED_HEADER_BYTES + extra);
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(handle, 8);
  b.writeUInt32BE(payloadLength, 16);
  return b;
}

/** NBD_REPLY_TYPE_NONE with the DONE flag: a successful end of a structured reply. */
export function encodeStructuredNone(handle: bigint): Buffer {
  return structuredHeader(REPLY_FLAG_DONE, REPLY_TYPE.NONE, handle, 0, 0);
}

/**
 * The header and offset of an NBD_REPLY_TYPE_OFFSET_DATA chunk: `dataLength` bytes of data
 * (sent separately, so that they need not be copied) follow it.
 */
export function encodeOffsetDataHeader(flags: number, handle: bigint, offset: number, dataLength: number): Buffer {
  const b = structuredHeader(flags, REPLY_TYPE.OFFSET_DATA, handle, 8 + dataLength, 8);
  writeU64(b, offset, STRUCTURED_HEADER_BYTES);
  return b;
}

/** NBD_REPLY_TYPE_OFFSET_HOLE: `length` bytes at `offset` read as zeros. */
export function encodeOffsetHole(flags: number, handle: bigint, offset: number, length: number): Buffer {
  const b = structuredHeader(flags, REPLY_TYPE.OFFSET_HOLE, handle, 12, 12);
  writeU64(b, offset, STRUCTURED_HEADER_BYTES);
  b.writeUInt32BE(length, STRUCTURED_HEADER_BYTES + 8);
  return b;
}

/** One block status descriptor: a run of `length` bytes with `flags` (STATE_HOLE | STATE_ZERO). */
export interface Extent {
  length: number;
  flags: number;
}

/** NBD_REPLY_TYPE_BLOCK_STATUS for one metadata context. */
export function encodeBlockStatus(flags: number, handle: bigint, contextId: number, extents: readonly Extent[]): Buffer {
  const payload = 4 + 8 * extents.length;
  const b = structuredHeader(flags, REPLY_TYPE.BLOCK_STATUS, handle, payload, payload);
  let at = STRUCTURED_HEADER_BYTES;
  b.writeUInt32BE(contextId, at);
  at += 4;
  for (const e of extents) {
    b.writeUInt32BE(e.length, at);
    b.writeUInt32BE(e.flags, at + 4);
    at += 8;
  }
  return b;
}

/** NBD_REPLY_TYPE_ERROR (with DONE): the request failed with `error`, `message` for humans. */
export function encodeStructuredError(handle: bigint, error: number, message: string): Buffer {
  const m = utf8Capped(message);
  const b = structuredHeader(REPLY_FLAG_DONE, REPLY_TYPE.ERROR, handle, 6 + m.length, 6 + m.length);
  b.writeUInt32BE(error, STRUCTURED_HEADER_BYTES);
  b.writeUInt16BE(m.length, STRUCTURED_HEADER_BYTES + 4);
  m.copy(b, STRUCTURED_HEADER_BYTES + 6);
  return b;
}
