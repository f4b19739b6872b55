/** OVA export: OVF descriptors (two profiles), manifests and the streaming archive writer. */
export * from './ovf';
export * from './manifest';
export * from './ova-writer';
export * from './ova-reader';
export { OVA_PROFILES, VMDK_COMPRESSIONS } from './settings';
