'use strict';
/**
 * Touches <MiB> of anonymous memory, then exits (freeing it): run by bench/run.js, untimed,
 * right before every timed run of a case that writes an image.
 *
 * Why: on virtual machines with free page reporting (virtio-balloon; e.g. Firecracker), memory
 * the guest freed a few seconds ago is handed back to the host, and the next first touch of
 * each page faults in the host. Every case that writes 1+ GB of new page cache then pays
 * ~2 s/GB of extra kernel time — but only if it started more than ~2 s after the previous run
 * freed its output, which depends on how long the untimed checks before it took (cmp of a raw
 * image: seconds; qemu-img compare: a fraction of one). Touching the memory first puts every
 * case in the same state, the one a physical machine is always in.
 *
 *   node bench/touch-memory.js 3072
 */
const mib = Number(process.argv[2]);
if (!Number.isFinite(mib) || mib < 0) {
  console.error('usage: touch-memory.js <MiB>');
  process.exit(1);
}
const PIECE = 64;
const held = [];
for (let done = 0; done < mib; done += PIECE) {
  const b = Buffer.allocUnsafeSlow(Math.min(PIECE, mib - done) * 1024 * 1024);
  b.fill(1);
  held.push(b);
}
