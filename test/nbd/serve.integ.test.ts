/**
 * `xva2img serve` with real NBD clients: qemu-img, qemu-io, nbdinfo and nbdcopy (libnbd).
 * What they read through the server must be what the converter writes: a `qemu-img convert`
 * of each export compares identical to `xva2img -O qcow2`, for the samples and for multi-disk,
 * keep-alive, SHA-1 and XXH64 archives; holes are reported (nbdinfo --map, sparse nbdcopy).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { convertXva } from '../../src/ops/convert';
import { mapXva } from '../../src/ops/map';
import { ROOT } from '../cli/_cli';
import { itWithTools } from '../helpers/system-tools';
import { makeXvaFile, MiB, type MakeXvaOptions } from '../helpers/xva-fixtures';
import { startServe } from './serve-process';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbd-integ-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(cmd: string, args: string[]): string {
  const r = run(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/**
 * Every export through `qemu-img convert` vs the converter's output (qcow2 by default):
 * `qemu-img compare` identical.
 */
async function convertsLikeTheConverter(xva: string, tag: string, format: 'qcow2' | 'raw' = 'qcow2'): Promise<void> {
  const serve = await startServe([xva, '--socket', path.join(dir, `${tag}.sock`), '--json']);
  try {
    const served = serve.json();
    expect(served.exports.length).toBeGreaterThan(0);
    for (const e of served.exports) {
      const viaNbd = path.join(dir, `${tag}-${e.name}-nbd.${format}`);
      const direct = path.join(dir, `${tag}-${e.name}.${format}`);
      ok('qemu-img', ['convert', '-f', 'raw', '-O', format, e.uri, viaNbd]);
      await convertXva(xva, { outFile: direct, format, disks: [e.name], sync: false });
      expect(run('qemu-img', ['compare', '-f', format, '-F', format, viaNbd, direct])).toMatchObject({ status: 0, stdout: expect.stringMatching(/identical/) });
      const info = JSON.parse(ok('qemu-img', ['info', '--output=json', '-f', 'raw', e.uri])) as { 'virtual-size': number };
      expect(info['virtual-size']).toBe(Math.ceil(e.size / 512) * 512); // qemu's view: sizes in whole sectors
    }
  } finally {
    const end = await serve.stop();
    expect(end.code).toBe(0);
  }
  expect(fs.existsSync(path.join(dir, `${tag}.sock`))).toBe(false);
}

describe('qemu-img convert through the server = the converter', () => {
  itWithTools('qemu-img')('samples: demo-ext4 (plain) and demo-two-disks (gunzipped)', async () => {
    await convertsLikeTheConverter(path.join(ROOT, 'samples', 'demo-ext4.xva'), 'ext4');
    const two = path.join(dir, 'two.xva');
    fs.writeFileSync(two, zlib.gunzipSync(fs.readFileSync(path.join(ROOT, 'samples', 'demo-two-disks.xva.gz'))));
    await convertsLikeTheConverter(two, 'two');
  });

  itWithTools('qemu-img', 'zstd')('sample demo-keepalive (zstd -d)', async () => {
    const ka = path.join(dir, 'keepalive.xva');
    ok('zstd', ['-d', '-q', '-o', ka, path.join(ROOT, 'samples', 'demo-keepalive.xva.zst')]);
    await convertsLikeTheConverter(ka, 'ka');
  });

  const archives: Array<[string, MakeXvaOptions]> = [
    ['multi-disk, keep-alives, XXH64', { keepAlives: (_r, c) => (c % 4 === 2 ? 1 : 0), disks: [{ size: 9 * MiB, fill: [{ offset: 0, length: 2 * MiB }, { offset: 7 * MiB + 5, length: 70000 }] }, { size: 2 * MiB + 512, fill: [{ offset: MiB, length: MiB + 512 }] }] }],
    ['SHA-1, short last chunk', { checksum: 'sha1', disks: [{ size: 3 * MiB + 1024, fill: [{ offset: 3 * MiB, length: 1024 }] }] }],
    ['Xen Orchestra padding', { padLastChunk: true, disks: [{ size: 2 * MiB + 8192, fill: [{ offset: 2 * MiB, length: 8192 }] }] }],
  ];
  itWithTools('qemu-img').each(archives)('%s', async (name, opts) => {
    const fx = await makeXvaFile(dir, { ...opts, fileName: `${name.replace(/\W+/g, '-')}.xva` });
    await convertsLikeTheConverter(fx.path, name.replace(/\W+/g, '-'));
  });

  // A size that is not a multiple of 512 is compared as raw: qemu rounds an NBD export's size
  // up to 512 (the extra bytes read as zeros) and opens a qcow2 whose size field is unaligned
  // rounded down, so a qcow2 of such a disk differs from qemu's view either way.
  itWithTools('qemu-img')('odd size (not a multiple of 512), as raw', async () => {
    const fx = await makeXvaFile(dir, { fileName: 'odd.xva', allowUnalignedSize: true, disks: [{ size: 3 * MiB + 1001, fill: [{ offset: 3 * MiB, length: 1001 }] }] });
    await convertsLikeTheConverter(fx.path, 'odd', 'raw');
  });
});

describe('reading and mapping with qemu-io, nbdinfo, nbdcopy', () => {
  let xva: string;
  beforeAll(async () => {
    xva = (
      await makeXvaFile(dir, {
        fileName: 'patterns.xva',
        vmName: 'patterns',
        keepAlives: (_r, c) => (c === 3 ? 2 : 0),
        disks: [
          { name: 'system', size: 12 * MiB, fill: [{ offset: 0, length: MiB, byte: 0x11 }, { offset: 5 * MiB + 4096, length: 8192, byte: 0x22 }, { offset: 11 * MiB, length: MiB, byte: 0x33 }] },
          { name: 'data', size: 4 * MiB, fill: [{ offset: 2 * MiB, length: 4096, byte: 0x44 }] },
        ],
      })
    ).path;
  });

  itWithTools('qemu-io')('qemu-io -r reads the right bytes at offsets across chunks and holes', async () => {
    const serve = await startServe([xva, '--socket', path.join(dir, 'io.sock'), '--json']);
    try {
      const uri = serve.json().exports[0]!.uri;
      const checks: Array<[number, number, number]> = [
        [0x11, 0, 4096],
        [0x11, MiB - 512, 512],
        [0, MiB, 4 * MiB], // a hole of four chunks
        [0, 5 * MiB, 4096], // zeros inside a stored chunk
        [0x22, 5 * MiB + 4096, 8192],
        [0, 6 * MiB, 5 * MiB],
        [0x33, 11 * MiB, MiB],
      ];
      const args = ['-r', '-f', 'raw', ...checks.flatMap(([p, o, l]) => ['-c', `read -P ${p} ${o} ${l}`]), uri];
      const out = ok('qemu-io', args);
      expect(out).not.toMatch(/Pattern verification failed|error/i);
      expect(out.match(/^read \d+\/\d+ bytes/gm)).toHaveLength(checks.length);
      const wrong = run('qemu-io', ['-r', '-f', 'raw', '-c', `read -P 0x11 ${MiB} 512`, uri]);
      expect(wrong.stdout + wrong.stderr).toMatch(/Pattern verification failed/);
    } finally {
      expect((await serve.stop()).code).toBe(0);
    }
  });

  itWithTools('nbdinfo', 'nbdcopy')('nbdinfo --list and --map; nbdcopy to a sparse file, several at once', async () => {
    const sock = path.join(dir, 'nbd.sock');
    const serve = await startServe([xva, '--socket', sock, '--json']);
    try {
      const list = ok('nbdinfo', ['--list', `nbd+unix:///?socket=${sock}`]);
      expect(list).toMatch(/export="0":\s+description: system/);
      expect(list).toMatch(/export="1":\s+description: data/);
      expect(list).toMatch(/is_read_only: true/);
      expect(list).toMatch(/can_multi_conn: true/);

      // The map nbdinfo shows is the archive's: data where chunks are stored, holes elsewhere.
      const map = ok('nbdinfo', ['--map', '--json', `nbd+unix:///0?socket=${sock}`]);
      const got = (JSON.parse(map) as Array<{ offset: number; length: number; type: number }>).map((e) => ({ start: e.offset, length: e.length, hole: (e.type & 1) === 1 }));
      const ours = (await mapXva(xva, { disks: ['0'] })).disks[0]!.extents;
      const merged: Array<{ start: number; length: number; hole: boolean }> = [];
      for (const e of ours) {
        const last = merged[merged.length - 1];
        if (last && last.hole === !e.data) last.length += e.length;
        else merged.push({ start: e.start, length: e.length, hole: !e.data });
      }
      expect(got).toEqual(merged);
      expect(got.filter((e) => e.hole).length).toBeGreaterThan(0);

      // Three copies at once, each to a file that stays sparse where the archive has holes.
      const outs = [0, 1, 2].map((k) => path.join(dir, `copy${k}.raw`));
      await Promise.all(
        outs.map(
          (out) =>
            new Promise<void>((resolve, reject) => {
              const p = spawn('nbdcopy', [`nbd+unix:///0?socket=${sock}`, out]);
              p.on('error', reject);
              p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`nbdcopy exited ${code}`))));
            }),
        ),
      );
      const stored = ours.filter((e) => e.data).reduce((a, e) => a + e.length, 0);
      const direct = path.join(dir, 'patterns-0.raw');
      await convertXva(xva, { outFile: direct, disks: ['0'], sync: false });
      for (const out of outs) {
        expect(fs.readFileSync(out).equals(fs.readFileSync(direct))).toBe(true);
        expect(fs.statSync(out).blocks * 512).toBeLessThanOrEqual(stored);
      }
    } finally {
      expect((await serve.stop()).code).toBe(0);
    }
    expect(fs.existsSync(sock)).toBe(false);
  });
});
