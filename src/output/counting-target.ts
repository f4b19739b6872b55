/**
 * A target that keeps nothing: it counts the bytes written to it. Measuring passes run the real
 * writer into it to learn an output's exact size without storing the output.
 */
import type { SequentialTarget } from './target';

/** Discards bytes, counting them. */
export class CountingTarget implements SequentialTarget {
  position = 0;
  async write(data: Uint8Array): Promise<void> {
    this.position += data.length;
  }
}
