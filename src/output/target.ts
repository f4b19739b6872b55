/**
 * The two shapes of a byte destination that image and archive writers write to: sequential (a
 * pipe, a tar member) or seekable (a regular file). targets.ts implements them for files and
 * streams.
 */

/** Sequential byte destination: a file written front to back, a pipe, a tar member. */
export interface SequentialTarget {
  /** Bytes written so far (the next write lands at this position). */
  readonly position: number;
  /** Appends. The caller may reuse `data` after the promise resolves. */
  write(data: Uint8Array): Promise<void>;
  /**
   * Appends `chunks` back to back, where the target can do it in one system call (pwritev). The
   * range is reserved when called, so calls may overlap (their order is the call order).
   */
  writev?(chunks: Uint8Array[]): Promise<void>;
}

/** A seekable destination (a regular file). Sequential writes append at `position`. */
export interface RandomAccessTarget extends SequentialTarget {
  pwrite(data: Uint8Array, position: number): Promise<void>;
  /** Writes `chunks` back to back from `position` (one pwritev where the target can). */
  pwritev?(chunks: Uint8Array[], position: number): Promise<void>;
  /** Sets the length (extends with a hole or cuts); a target written in place only checks it fits. */
  truncate(length: number): Promise<void>;
  /**
   * False when bytes never written are not known to read as zeros (a block device or a file
   * written in place, output/in-place.ts): a writer must then write zeros over its holes.
   * Absent means true (a new file: holes read as zeros).
   */
  readonly holesReadAsZero?: boolean;
}

export function isRandomAccess(t: SequentialTarget): t is RandomAccessTarget {
  return typeof (t as RandomAccessTarget).pwrite === 'function';
}
