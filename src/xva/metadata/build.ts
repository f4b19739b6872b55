/**
 * Builds ova.xml exactly as XAPI would export the VM (docs/xva-format.md §3): the object list in
 * XAPI's export order (VM, VBDs, VIFs, networks, VDIs, SRs), each snapshot with the complete
 * field set of §3.4 (records.ts, fields.ts), under the `version` record (spec.ts), encoded by
 * the XML-RPC codec (xmlrpc.ts) in XAPI's bytes.
 *
 * Output is deterministic for a given spec when `uuidGen` (OvaXmlIdentities) and
 * `version.date` are fixed.
 */
import { randomUUID } from 'node:crypto';
import { NULL_REF, type OvaXmlClass } from './fields';
import type { XvaMetadata } from './model';
import { networkSnapshot, srSnapshot, vbdSnapshot, vdiSnapshot, vifSnapshot, vmSnapshot } from './records';
import { resolveVersion, type OvaXmlSpec } from './spec';
import { rpcToXml, type RpcStruct } from './xmlrpc';

/** Fixed identities for byte-stable output (fixtures, samples, pack's tests, edit.ts's templates). */
export interface OvaXmlIdentities {
  /** UUID source for every object without an explicit uuid (default crypto.randomUUID). */
  uuidGen?: () => string;
}

export interface OvaXmlObject {
  class: OvaXmlClass;
  id: string;
  snapshot: RpcStruct;
}

/** Allocates `Ref:N` ids for objects that carry no data, avoiding the caller's disk refs. */
class RefAllocator {
  private next: number;
  constructor(private readonly used: Set<string>) {
    let max = 0;
    for (const ref of used) {
      const m = /^Ref:(\d+)$/.exec(ref);
      if (m) max = Math.max(max, Number(m[1]));
    }
    this.next = max + 1;
  }
  take(): string {
    for (;;) {
      const ref = `Ref:${this.next++}`;
      if (!this.used.has(ref)) {
        this.used.add(ref);
        return ref;
      }
    }
  }
}

function assertSafeSize(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`ova.xml: ${what} must be a non-negative integer, got ${n}`);
}

/**
 * Builds the object list (VM, VBDs, VIFs, networks, VDIs, SRs — XAPI's export order).
 * Disk refs are taken from the spec; every other object gets a fresh `Ref:N` above them.
 */
export function buildOvaXmlObjects(spec: OvaXmlSpec, identities: OvaXmlIdentities = {}): OvaXmlObject[] {
  const uuid = identities.uuidGen ?? randomUUID;
  const cdroms = spec.cdroms ?? [];
  const vifs = spec.vifs ?? [];

  const diskRefs = new Set<string>();
  for (const d of spec.disks) {
    if (!/^Ref:[^/\s]+$/.test(d.ref)) throw new RangeError(`ova.xml: disk ref must look like "Ref:N", got ${JSON.stringify(d.ref)}`);
    if (diskRefs.has(d.ref)) throw new RangeError(`ova.xml: duplicate disk ref ${d.ref}`);
    diskRefs.add(d.ref);
    assertSafeSize(d.virtualSize, `virtual size of ${d.ref}`);
  }
  const userdevices = [...spec.disks.map((d) => String(d.userdevice)), ...cdroms.map((c) => String(c.userdevice))];
  const dup = userdevices.find((u, i) => userdevices.indexOf(u) !== i);
  if (dup !== undefined) throw new RangeError(`ova.xml: userdevice ${dup} is used twice`);
  assertSafeSize(spec.vm.memoryBytes, 'memory');

  const refs = new RefAllocator(new Set(diskRefs));
  const vmRef = refs.take();
  const diskVbdRefs = spec.disks.map(() => refs.take());
  const cdVbdRefs = cdroms.map(() => refs.take());
  const vifRefs = vifs.map(() => refs.take());
  // One network object per distinct (name, bridge).
  const networkKeys = [...new Set(vifs.map((v) => JSON.stringify([v.networkName, v.bridge])))];
  const networkRefs = new Map(networkKeys.map((k) => [k, refs.take()]));
  const isoVdiRefs = cdroms.map((c) => (c.isoName !== undefined ? refs.take() : undefined));
  const diskSrRef = spec.disks.length > 0 ? refs.take() : undefined;
  const isoSrRef = isoVdiRefs.some((r) => r !== undefined) ? refs.take() : undefined;

  const vmUuid = spec.vm.uuid ?? uuid();
  const macSeed = spec.vm.otherConfig?.mac_seed ?? uuid();
  const objects: OvaXmlObject[] = [];
  objects.push({ class: 'VM', id: vmRef, snapshot: vmSnapshot(spec.vm, vmUuid, macSeed, [...diskVbdRefs, ...cdVbdRefs], vifRefs) });

  spec.disks.forEach((d, i) => {
    objects.push({
      class: 'VBD',
      id: diskVbdRefs[i]!,
      snapshot: vbdSnapshot({
        uuid: d.vbdUuid ?? uuid(),
        vm: vmRef,
        vdi: d.ref,
        userdevice: String(d.userdevice),
        bootable: d.bootable ?? false,
        type: 'Disk',
        mode: d.readOnly ? 'RO' : 'RW',
        empty: false,
      }),
    });
  });
  cdroms.forEach((c, i) => {
    const vdi = isoVdiRefs[i];
    objects.push({
      class: 'VBD',
      id: cdVbdRefs[i]!,
      snapshot: vbdSnapshot({ uuid: uuid(), vm: vmRef, vdi: vdi ?? NULL_REF, userdevice: String(c.userdevice), bootable: false, type: 'CD', mode: 'RO', empty: vdi === undefined }),
    });
  });

  vifs.forEach((v, i) => {
    const net = networkRefs.get(JSON.stringify([v.networkName, v.bridge]))!;
    objects.push({ class: 'VIF', id: vifRefs[i]!, snapshot: vifSnapshot(uuid(), v, vmRef, net) });
  });
  for (const [key, ref] of networkRefs) {
    const [name, bridge] = JSON.parse(key) as [string, string];
    const members = vifs.map((v, i) => (JSON.stringify([v.networkName, v.bridge]) === key ? vifRefs[i]! : undefined)).filter((r): r is string => r !== undefined);
    const mtu = vifs.find((v) => JSON.stringify([v.networkName, v.bridge]) === key)?.mtu ?? 1500;
    objects.push({ class: 'network', id: ref, snapshot: networkSnapshot(uuid(), name, bridge, mtu, members) });
  }

  spec.disks.forEach((d, i) => {
    objects.push({
      class: 'VDI',
      id: d.ref,
      snapshot: vdiSnapshot({
        uuid: d.uuid ?? uuid(),
        name: d.name,
        description: d.description ?? '',
        sr: diskSrRef!,
        vbds: [diskVbdRefs[i]!],
        virtualSize: d.virtualSize,
        readOnly: d.readOnly ?? false,
      }),
    });
  });
  cdroms.forEach((c, i) => {
    const ref = isoVdiRefs[i];
    if (ref === undefined) return;
    objects.push({
      class: 'VDI',
      id: ref,
      snapshot: vdiSnapshot({ uuid: uuid(), name: c.isoName!, description: '', sr: isoSrRef!, vbds: [cdVbdRefs[i]!], virtualSize: 0, readOnly: true }),
    });
  });

  if (diskSrRef) {
    const total = spec.disks.reduce((s, d) => s + d.virtualSize, 0);
    objects.push({ class: 'SR', id: diskSrRef, snapshot: srSnapshot(uuid(), 'Local storage', 'user', 'ext', spec.disks.map((d) => d.ref), total) });
  }
  if (isoSrRef) {
    objects.push({ class: 'SR', id: isoSrRef, snapshot: srSnapshot(uuid(), 'ISO library', 'iso', 'iso', isoVdiRefs.filter((r): r is string => r !== undefined), 0) });
  }
  return objects;
}

/** The top-level struct: { version, objects }. */
export function buildOvaXmlValue(spec: OvaXmlSpec, identities: OvaXmlIdentities = {}): RpcStruct {
  const v = resolveVersion(spec.version);
  return {
    version: {
      hostname: v.hostname,
      date: v.date,
      product_version: v.productVersion,
      product_brand: v.productBrand,
      build_number: v.buildNumber,
      xapi_major: v.xapiMajor,
      xapi_minor: v.xapiMinor,
      export_vsn: v.exportVsn,
    },
    objects: buildOvaXmlObjects(spec, identities).map((o) => ({ class: o.class, id: o.id, snapshot: o.snapshot })),
  };
}

/** ova.xml text, byte-for-byte in XAPI's encoding. */
export function buildOvaXml(spec: OvaXmlSpec, identities: OvaXmlIdentities = {}): string {
  return rpcToXml(buildOvaXmlValue(spec, identities));
}

/**
 * Converts a parsed XVA's metadata back into a writer spec (used by `pack`/re-export).
 * Disk refs, names, sizes, userdevices and the VM's settings are kept; uuids are kept so a
 * round trip does not invent new identities.
 */
export function ovaXmlSpecFromMetadata(meta: XvaMetadata): OvaXmlSpec {
  return {
    vm: {
      name: meta.vm.name,
      description: meta.vm.description,
      vcpus: meta.vm.vcpus,
      vcpusAtStartup: meta.vm.vcpusAtStartup,
      memoryBytes: meta.vm.memoryBytes,
      firmware: meta.vm.firmware,
      hvm: meta.vm.hvm,
      bootOrder: meta.vm.bootOrder || undefined,
      isTemplate: meta.vm.isTemplate,
      platform: { ...meta.vm.platform },
      otherConfig: { ...meta.vm.otherConfig },
      uuid: meta.vm.uuid || undefined,
    },
    disks: meta.disks
      .filter((d) => !d.isSuspendImage)
      .map((d) => ({
        ref: d.ref,
        name: d.vdi.name,
        description: d.vdi.description,
        virtualSize: d.virtualSize,
        userdevice: d.userdevice,
        bootable: d.bootable,
        readOnly: d.vdi.readOnly,
        uuid: d.vdi.uuid || undefined,
      })),
    cdroms: meta.cdroms.map((c) => ({ userdevice: c.userdevice, isoName: c.empty ? undefined : c.isoName })),
    vifs: meta.vifs.map((v) => ({ device: v.device, mac: v.mac, macAutogenerated: v.macAutogenerated, mtu: v.mtu, networkName: v.networkName, bridge: v.bridge })),
  };
}