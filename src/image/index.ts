/** Disk image writers and layout math: raw-free building blocks for qcow2 and VMDK output. */
export * from './types';
export * from '../io/zero';
export * from './cluster-aligner';
export * from './allocation-map';
export * from './qcow2/layout';
export * from './qcow2/writer';
export * from './qcow2/stream-writer';
export * from './vmdk/writer';
