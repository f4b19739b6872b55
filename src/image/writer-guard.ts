/**
 * WriterGuard: the call discipline the qcow2, qcow2 stream and VMDK writers share. Their
 * images are written in one pass, so once a `write()` or `finish()` failed the output is
 * half-written: every later call rethrows that first error instead of appending to it. Nothing
 * is accepted after `finish()`, whatever its outcome. (The raw writer keeps no such state: its
 * WriteQueue reports a failed write to the next call itself.)
 */
export class WriterGuard {
  private finished = false;
  private failed: unknown;

  /**
   * @param writerName  named in the "already finished" error
   * @param onFailure   runs once per failed call, after the error is kept and before it is
   *                    rethrown: releases what the writer still holds
   */
  constructor(
    private readonly writerName: string,
    private readonly onFailure?: () => Promise<void>,
  ) {}

  /** Runs the body of `write()`. */
  async write(body: () => Promise<void>): Promise<void> {
    this.assertWritable();
    return this.run(body);
  }

  /** Runs the body of `finish()`; no call is accepted afterwards. */
  async finish<T>(body: () => Promise<T>): Promise<T> {
    this.assertWritable();
    this.finished = true;
    return this.run(body);
  }

  private async run<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (err) {
      this.failed ??= err;
      await this.onFailure?.();
      throw err;
    }
  }

  private assertWritable(): void {
    if (this.failed !== undefined) throw this.failed;
    if (this.finished) throw new Error(`${this.writerName}: already finished`);
  }
}
