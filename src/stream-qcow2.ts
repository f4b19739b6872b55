import { OutputError } from './errors';
import type { ConvertOptions, ConvertSummary } from './convert';
import type { InputSource } from './input/types';

export async function twoPassQcow2ToStream(_input: string | InputSource, _options: ConvertOptions, _started: number): Promise<ConvertSummary> {
  throw new OutputError('OUTPUT_UNSUPPORTED', 'qcow2 to a stream: pending');
}
