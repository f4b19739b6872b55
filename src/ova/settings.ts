/**
 * The closed sets of OVA export settings. Kept apart from ovf/ and writer/, which own
 * their meaning, so the command line can offer them without loading the writer.
 */

/** OVF dialect and disk format: vmware (streamOptimized VMDK, the default) or ovirt (qcow2). */
export const OVA_PROFILES = ['vmware', 'ovirt'] as const;
export type OvaProfile = (typeof OVA_PROFILES)[number];

/** VMDK grains: deflate (the default) or stored (deflate level 0, sizes known without compressing). */
export const VMDK_COMPRESSIONS = ['deflate', 'stored'] as const;
export type VmdkCompression = (typeof VMDK_COMPRESSIONS)[number];
