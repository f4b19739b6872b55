#!/usr/bin/env python3
"""
An XVA writer that shares no code with xva2img, used by the tests as a second producer.
It follows docs/xva-format.md directly, in three producer styles:

  xapi    V7 tar headers as ocaml-tar writes them (no magic, mode 0400, typeflag NUL,
          checksum as 7 octal digits + NUL), mtime 0 for chunks, chunk 0 and the last chunk
          always present, all-zero chunks skipped, optional zero-length keep-alive chunks that
          consume a counter, XXH64 (.xxhash, uppercase) or SHA-1 (.checksum, lowercase).
  xo      Xen Orchestra style: ustar headers (Python tarfile), mode 0644, ids Ref:000, ...,
          every chunk padded to 1 MiB and virtual_size rounded up to 1 MiB, .xxhash only,
          a zero chunk kept every N chunks as keep-alive.
  xvaimg  xva-img `package` style: V7 headers with mode 0, 1 MiB chunks only (a trailing
          partial MiB of the source is dropped), SHA-1 .checksum, all chunks that are not
          zero plus first and last.

usage: independent_xva.py SPEC.json OUT.xva
SPEC: {"style": "xapi", "checksum": "xxh64"|"sha1", "vm_name": "...",
       "disks": [{"ref": "Ref:998", "userdevice": "0", "image": "path/to/raw", "keepalive_before": [3, 7]}]}
"""
import hashlib
import io
import json
import sys
import tarfile

MIB = 1024 * 1024
M64 = (1 << 64) - 1
P1, P2, P3, P4, P5 = 11400714785074694791, 14029467366897019727, 1609587929392839161, 9650029242287828579, 2870177450012600261


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def xxh64_round(acc, lane):
    acc = (acc + lane * P2) & M64
    return (rotl(acc, 31) * P1) & M64


def xxh64_merge(acc, val):
    acc ^= xxh64_round(0, val)
    return (acc * P1 + P4) & M64


def xxh64(data, seed=0):
    """Plain XXH64 from its specification (slow, fine for test fixtures)."""
    n = len(data)
    i = 0
    if n >= 32:
        v1 = (seed + P1 + P2) & M64
        v2 = (seed + P2) & M64
        v3 = seed
        v4 = (seed - P1) & M64
        lanes = memoryview(data)
        while i + 32 <= n:
            v1 = xxh64_round(v1, int.from_bytes(lanes[i:i + 8], 'little'))
            v2 = xxh64_round(v2, int.from_bytes(lanes[i + 8:i + 16], 'little'))
            v3 = xxh64_round(v3, int.from_bytes(lanes[i + 16:i + 24], 'little'))
            v4 = xxh64_round(v4, int.from_bytes(lanes[i + 24:i + 32], 'little'))
            i += 32
        h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) & M64
        for v in (v1, v2, v3, v4):
            h = xxh64_merge(h, v)
    else:
        h = (seed + P5) & M64
    h = (h + n) & M64
    while i + 8 <= n:
        h ^= xxh64_round(0, int.from_bytes(data[i:i + 8], 'little'))
        h = (rotl(h, 27) * P1 + P4) & M64
        i += 8
    if i + 4 <= n:
        h ^= (int.from_bytes(data[i:i + 4], 'little') * P1) & M64
        h = (rotl(h, 23) * P2 + P3) & M64
        i += 4
    while i < n:
        h ^= (data[i] * P5) & M64
        h = (rotl(h, 11) * P1) & M64
        i += 1
    h ^= h >> 33
    h = (h * P2) & M64
    h ^= h >> 29
    h = (h * P3) & M64
    h ^= h >> 32
    return h


assert '%016X' % xxh64(b'') == 'EF46DB3751D8E999'
assert '%016X' % xxh64(bytes(MIB)) == '87D2A1B6E1163EF1'


def v7_header(name, size, mode, mtime):
    """A V7 header exactly as ocaml-tar 2.x writes it in V7 mode."""
    h = bytearray(512)
    nb = name.encode()
    assert len(nb) < 100
    h[0:len(nb)] = nb
    h[100:108] = b'%07o\0' % mode
    h[108:116] = b'0000000\0'
    h[116:124] = b'0000000\0'
    h[124:136] = b'%011o\0' % size
    h[136:148] = b'%011o\0' % mtime
    h[148:156] = b' ' * 8
    h[156] = 0  # typeflag NUL
    csum = sum(h)  # unsigned
    h[148:156] = b'%07o\0' % csum
    return bytes(h)


class V7Writer:
    def __init__(self, out, mode):
        self.out = out
        self.mode = mode

    def add(self, name, data, mtime=0):
        self.out.write(v7_header(name, len(data), self.mode, mtime))
        self.out.write(data)
        pad = (-len(data)) % 512
        self.out.write(b'\0' * pad)

    def close(self):
        self.out.write(b'\0' * 1024)


class UstarWriter:
    def __init__(self, out):
        self.tar = tarfile.open(fileobj=out, mode='w', format=tarfile.USTAR_FORMAT)

    def add(self, name, data, mtime=1700000000):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = mtime
        self.tar.addfile(info, io.BytesIO(data))

    def close(self):
        self.tar.close()


def esc(s):
    return s.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;').replace('"', '&quot;')


def member(name, value):
    return '<member><name>%s</name>%s</member>' % (name, value)


def val(s):
    return '<value>%s</value>' % esc(str(s))


def boolean(b):
    return '<value><boolean>%d</boolean></value>' % (1 if b else 0)


def struct(members):
    return '<value><struct>%s</struct></value>' % ''.join(members)


def array(values):
    return '<value><array><data>%s</data></array></value>' % ''.join(values)


def obj(cls, ref, snap_members):
    return struct([member('class', val(cls)), member('id', val(ref)), member('snapshot', struct(snap_members))])


def ova_xml(spec, sizes):
    vm_ref, sr_ref = 'Ref:5', 'Ref:6'
    objs = []
    vbd_refs = ['Ref:%d' % (100 + i) for i in range(len(spec['disks']))]
    objs.append(obj('VM', vm_ref, [
        member('name_label', val(spec.get('vm_name', 'indep'))),
        member('name_description', val('made by independent_xva.py')),
        member('memory_static_max', val(1073741824)),
        member('VCPUs_max', val(2)),
        member('VCPUs_at_startup', val(2)),
        member('is_a_template', boolean(False)),
        member('HVM_boot_policy', val('BIOS order')),
        member('HVM_boot_params', struct([member('order', val('cd'))])),
        member('VBDs', array([val(r) for r in vbd_refs])),
        member('VIFs', array([])),
    ]))
    for i, d in enumerate(spec['disks']):
        objs.append(obj('VBD', vbd_refs[i], [
            member('VM', val(vm_ref)), member('VDI', val(d['ref'])), member('userdevice', val(d['userdevice'])),
            member('bootable', boolean(i == 0)), member('type', val('Disk')), member('mode', val('RW')), member('empty', boolean(False)),
        ]))
    for i, d in enumerate(spec['disks']):
        objs.append(obj('VDI', d['ref'], [
            member('name_label', val('disk %s' % d['userdevice'])), member('virtual_size', val(sizes[i])),
            member('type', val('user')), member('SR', val(sr_ref)),
        ]))
    objs.append(obj('SR', sr_ref, [member('name_label', val('Local storage')), member('content_type', val('user'))]))
    version = struct([member('hostname', val('indep')), member('date', val('2026-01-01')), member('product_version', val('8.2.1')),
                      member('product_brand', val('XCP-ng')), member('build_number', val('x')), member('xapi_major', val(1)),
                      member('xapi_minor', val(20)), member('export_vsn', val(2))])
    return struct([member('version', version), member('objects', array(objs))]).encode()


def digest(kind, data):
    if kind == 'sha1':
        return hashlib.sha1(data).hexdigest().encode(), '.checksum'
    return ('%016X' % xxh64(data)).encode(), '.xxhash'


def main():
    spec = json.load(open(sys.argv[1]))
    style = spec.get('style', 'xapi')
    kind = 'sha1' if style == 'xvaimg' else ('xxh64' if style == 'xo' else spec.get('checksum', 'xxh64'))
    images = [open(d['image'], 'rb').read() for d in spec['disks']]
    if style == 'xo':
        sizes = [(len(img) + MIB - 1) // MIB * MIB for img in images]
    else:
        sizes = [len(img) for img in images]
    with open(sys.argv[2], 'wb') as out:
        if style == 'xo':
            w = UstarWriter(out)
        else:
            w = V7Writer(out, 0 if style == 'xvaimg' else 0o400)
        w.add('ova.xml', ova_xml(spec, sizes), mtime=1700000000)
        order = sorted(range(len(spec['disks'])), key=lambda i: spec['disks'][i]['ref'])
        for i in order:
            d, img = spec['disks'][i], images[i]
            keep = set(d.get('keepalive_before', []))
            nchunks = (len(img) + MIB - 1) // MIB
            if style == 'xvaimg':
                nchunks = len(img) // MIB  # drops a trailing partial MiB
            counter = 0
            for c in range(nchunks):
                if style == 'xapi' and c in keep:
                    h, ext = digest(kind, b'')
                    w.add('%s/%08d' % (d['ref'], counter), b'')
                    w.add('%s/%08d%s' % (d['ref'], counter, ext), h)
                    counter += 1
                data = img[c * MIB:(c + 1) * MIB]
                if style == 'xo' and len(data) < MIB:
                    data = data + bytes(MIB - len(data))
                first, last = c == 0, c == nchunks - 1
                xo_keepalive = style == 'xo' and c % 5 == 0
                if first or last or xo_keepalive or any(data):
                    h, ext = digest(kind, data)
                    w.add('%s/%08d' % (d['ref'], counter), data)
                    w.add('%s/%08d%s' % (d['ref'], counter, ext), h)
                counter += 1
        w.close()


if __name__ == '__main__':
    main()
