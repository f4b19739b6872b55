/**
 * Editing an existing ova.xml for `pack --from` (docs/xva-format.md §3.6): the source's metadata is
 * kept object for object and field for field, and only what the repacked archive needs is
 * changed:
 *   - `version.export_vsn` becomes 2 (we write inline checksums, docs/xva-format.md §3.1, §3.6);
 *   - `virtual_size` of a streamed VDI is rounded up to 512 like the writer rounds it (docs/xva-format.md §4.4);
 *   - fields of REQUIRED_FIELDS that the source lacks (hand-made or foreign XVAs) are added
 *     with the values our own writer uses, because XAPI's deserialisers fail on some missing
 *     fields (§3.4); references in those defaults are `OpaqueRef:NULL` / `[]`;
 *   - optional VM overrides (name, description, vCPUs, memory).
 *
 * It parses with `parseXmlRpcTyped` (the reader's parser, keeping `<double>` and
 * `<dateTime.iso8601>` typed), so the tree re-encodes through `rpcToXml` in XAPI's encoding.
 * When nothing needs changing the source text is returned unchanged (byte for byte).
 */
import { XvaFormatError } from '../../errors';
import { buildOvaXmlObjects } from './build';
import { NULL_REF, REQUIRED_FIELDS, type OvaXmlClass } from './fields';
import { parseXmlRpcTyped, RpcDateTime, RpcDouble, rpcToXml, type RpcStruct, type RpcValue } from './xmlrpc';

function bad(message: string): XvaFormatError {
  return new XvaFormatError('XVA_BAD_OVA_XML', message, { entry: 'ova.xml' });
}

function isStruct(v: RpcValue | undefined): v is RpcStruct {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof RpcDouble) && !(v instanceof RpcDateTime);
}

/** Replaces references to objects of the template (`Ref:…`) by OpaqueRef:NULL / drops them from sets. */
function withoutRefs(v: RpcValue): RpcValue {
  if (typeof v === 'string') return /^Ref:/.test(v) ? NULL_REF : v;
  if (Array.isArray(v)) return v.filter((x) => !(typeof x === 'string' && /^Ref:/.test(x))).map(withoutRefs);
  if (isStruct(v)) {
    const out: RpcStruct = {};
    for (const [k, x] of Object.entries(v)) out[k] = withoutRefs(x);
    return out;
  }
  return v;
}

let templateCache: Map<string, RpcStruct> | undefined;

/** One snapshot per class as our writer fills it: the defaults for missing fields. */
function templates(): Map<string, RpcStruct> {
  if (templateCache) return templateCache;
  const objs = buildOvaXmlObjects(
    {
      vm: { name: '', vcpus: 1, memoryBytes: 0 },
      disks: [{ ref: 'Ref:1', name: '', virtualSize: 0, userdevice: 0 }],
      vifs: [{ device: 0, mac: '', networkName: '', bridge: '' }],
    },
    { uuidGen: () => '' },
  );
  templateCache = new Map();
  for (const o of objs) if (!templateCache.has(o.class)) templateCache.set(o.class, withoutRefs(o.snapshot) as RpcStruct);
  return templateCache;
}

export interface OvaXmlPatch {
  /** Declared virtual size per VDI ref (streamed disks: rounded up to 512 by the writer). */
  virtualSizes?: Map<string, number>;
  /** Ref of the VM to override (the one the reader picked). */
  vmRef?: string;
  name?: string;
  description?: string;
  vcpus?: number;
  memoryBytes?: number;
}

export interface PatchedOvaXml {
  xml: string;
  /** True when the text differs from the source. */
  changed: boolean;
  /** Human-readable list of what was changed. */
  changes: string[];
}

function setField(snap: RpcStruct, key: string, value: RpcValue, note: string[], what: string): void {
  const cur = snap[key];
  const same = typeof cur === typeof value && (typeof value !== 'object' ? cur === value : false);
  if (same) return;
  snap[key] = value;
  note.push(what);
}

/** Applies `patch` to the source ova.xml text (see the module comment). */
export function patchOvaXml(sourceXml: string, patch: OvaXmlPatch): PatchedOvaXml {
  const top: RpcValue = parseXmlRpcTyped(sourceXml);
  if (!isStruct(top)) throw bad('top-level value is not a struct');
  const changes: string[] = [];

  let version = top['version'];
  if (!isStruct(version)) {
    version = {};
    top['version'] = version;
  }
  if (String(version['export_vsn'] ?? '') !== '2') {
    changes.push(`export_vsn ${JSON.stringify(String(version['export_vsn'] ?? '(absent)'))} -> 2`);
    version['export_vsn'] = 2;
  }

  const objects = top['objects'];
  if (!Array.isArray(objects)) throw bad('no "objects" array (is this an XVA ova.xml?)');
  const tpl = templates();
  const added = new Map<string, number>();
  for (const o of objects) {
    if (!isStruct(o)) continue;
    const cls = o['class'];
    const id = o['id'];
    const snap = o['snapshot'];
    if (typeof cls !== 'string' || typeof id !== 'string' || !isStruct(snap)) continue;

    if (cls === 'VDI') {
      const size = patch.virtualSizes?.get(id);
      if (size !== undefined && String(snap['virtual_size']).trim() !== String(size)) {
        changes.push(`VDI ${id} virtual_size ${String(snap['virtual_size'])} -> ${size}`);
        snap['virtual_size'] = size;
      }
    }
    if (cls === 'VM' && patch.vmRef === id) {
      if (patch.name !== undefined) setField(snap, 'name_label', patch.name, changes, `VM name_label -> ${JSON.stringify(patch.name)}`);
      if (patch.description !== undefined) setField(snap, 'name_description', patch.description, changes, 'VM name_description');
      if (patch.vcpus !== undefined) {
        const n = String(patch.vcpus);
        if (snap['VCPUs_max'] !== n || snap['VCPUs_at_startup'] !== n) {
          snap['VCPUs_max'] = n;
          snap['VCPUs_at_startup'] = n;
          changes.push(`VM VCPUs -> ${n}`);
        }
      }
      if (patch.memoryBytes !== undefined) {
        const m = String(patch.memoryBytes);
        for (const k of ['memory_static_max', 'memory_dynamic_max', 'memory_dynamic_min', 'memory_target']) snap[k] = m;
        // Keep static_min <= dynamic_min (XAPI's memory constraint).
        const smin = Number(typeof snap['memory_static_min'] === 'string' ? snap['memory_static_min'] : NaN);
        if (!Number.isFinite(smin) || smin > patch.memoryBytes) snap['memory_static_min'] = m;
        changes.push(`VM memory -> ${m}`);
      }
    }

    const required = (REQUIRED_FIELDS as Record<string, readonly string[]>)[cls];
    const defaults = tpl.get(cls as OvaXmlClass);
    if (!required || !defaults) continue;
    for (const field of required) {
      if (Object.prototype.hasOwnProperty.call(snap, field)) continue;
      const dflt = defaults[field];
      snap[field] = dflt === undefined ? '' : (withoutRefs(dflt) as RpcValue);
      added.set(cls, (added.get(cls) ?? 0) + 1);
    }
  }
  for (const [cls, n] of added) changes.push(`${cls}: added ${n} missing field(s)`);
  if (changes.length === 0) return { xml: sourceXml, changed: false, changes };
  return { xml: rpcToXml(top), changed: true, changes };
}
