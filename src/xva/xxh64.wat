;; XXH64 of bytes that lie in an imported memory, hashed where they lie (src/xva/xxh64-in-place.ts
;; says why; docs/design/xxh64-in-place.md has the numbers).
;;
;; Written from the XXH64 specification (Collet, "xxHash fast digest algorithm", XXH64): 32-byte
;; stripes into four lanes, then the 8-, 4- and 1-byte tails, then the avalanche. Loads are
;; little-endian, as XXH64 reads its input, and unaligned (align=1): a chunk may start anywhere.
;;
;; Compiled by `npm run build` (scripts/build-wasm.js, with wabt) twice: as written, and with the
;; memory import below made `(memory 1 65536 shared)` for shared memories (the decoder thread's
;; ring, the hash thread's slots). Keep that import on one line: the build rewrites it.

(module
  (import "m" "mem" (memory 1))

  (func (export "xxh64") (param $p i32) (param $len i32) (param $seed i64) (result i64)
    (local $end i32) (local $limit i32)
    (local $v1 i64) (local $v2 i64) (local $v3 i64) (local $v4 i64) (local $h i64) (local $k i64)
    ;; The primes: P1 0x9E3779B185EBCA87, P2 0xC2B2AE3D27D4EB4F, P3 0x165667B19E3779F9,
    ;; P4 0x85EBCA77C2B2AE63, P5 0x27D4EB2F165667C5.

    (local.set $end (i32.add (local.get $p) (local.get $len)))

    (if (i32.ge_u (local.get $len) (i32.const 32))
      (then
        ;; Four lanes over 32-byte stripes while a whole stripe is left.
        (local.set $limit (i32.sub (local.get $end) (i32.const 32)))
        (local.set $v1 (i64.add (i64.add (local.get $seed) (i64.const 0x9E3779B185EBCA87)) (i64.const 0xC2B2AE3D27D4EB4F)))
        (local.set $v2 (i64.add (local.get $seed) (i64.const 0xC2B2AE3D27D4EB4F)))
        (local.set $v3 (local.get $seed))
        (local.set $v4 (i64.sub (local.get $seed) (i64.const 0x9E3779B185EBCA87)))
        (loop $stripes
          ;; round: v = rotl(v + input * P2, 31) * P1
          (local.set $v1 (i64.mul (i64.rotl (i64.add (local.get $v1)
            (i64.mul (i64.load align=1 (local.get $p)) (i64.const 0xC2B2AE3D27D4EB4F))) (i64.const 31)) (i64.const 0x9E3779B185EBCA87)))
          (local.set $v2 (i64.mul (i64.rotl (i64.add (local.get $v2)
            (i64.mul (i64.load offset=8 align=1 (local.get $p)) (i64.const 0xC2B2AE3D27D4EB4F))) (i64.const 31)) (i64.const 0x9E3779B185EBCA87)))
          (local.set $v3 (i64.mul (i64.rotl (i64.add (local.get $v3)
            (i64.mul (i64.load offset=16 align=1 (local.get $p)) (i64.const 0xC2B2AE3D27D4EB4F))) (i64.const 31)) (i64.const 0x9E3779B185EBCA87)))
          (local.set $v4 (i64.mul (i64.rotl (i64.add (local.get $v4)
            (i64.mul (i64.load offset=24 align=1 (local.get $p)) (i64.const 0xC2B2AE3D27D4EB4F))) (i64.const 31)) (i64.const 0x9E3779B185EBCA87)))
          (local.set $p (i32.add (local.get $p) (i32.const 32)))
          (br_if $stripes (i32.le_u (local.get $p) (local.get $limit))))

        ;; h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
        (local.set $h (i64.add (i64.add (i64.add
          (i64.rotl (local.get $v1) (i64.const 1))
          (i64.rotl (local.get $v2) (i64.const 7)))
          (i64.rotl (local.get $v3) (i64.const 12)))
          (i64.rotl (local.get $v4) (i64.const 18))))

        ;; merge each lane: h = (h ^ round(0, v)) * P1 + P4, where round(0, v) = rotl(v * P2, 31) * P1
        (local.set $h (i64.add (i64.mul (i64.xor (local.get $h)
          (i64.mul (i64.rotl (i64.mul (local.get $v1) (i64.const 0xC2B2AE3D27D4EB4F)) (i64.const 31)) (i64.const 0x9E3779B185EBCA87)))
          (i64.const 0x9E3779B185EBCA87)) (i64.const 0x85EBCA77C2B2AE63)))
        (local.set $h (i64.add (i64.mul (i64.xor (local.get $h)
          (i64.mul (i64.rotl (i64.mul (local.get $v2) (i64.const 0xC2B2AE3D27D4EB4F)) (i64.const 31)) (i64.const 0x9E3779B185EBCA87)))
          (i64.const 0x9E3779B185EBCA87)) (i64.const 0x85EBCA77C2B2AE63)))
        (local.set $h (i64.add (i64.mul (i64.xor (local.get $h)
          (i64.mul (i64.rotl (i64.mul (local.get $v3) (i64.const 0xC2B2AE3D27D4EB4F)) (i64.const 31)) (i64.const 0x9E3779B185EBCA87)))
          (i64.const 0x9E3779B185EBCA87)) (i64.const 0x85EBCA77C2B2AE63)))
        (local.set $h (i64.add (i64.mul (i64.xor (local.get $h)
          (i64.mul (i64.rotl (i64.mul (local.get $v4) (i64.const 0xC2B2AE3D27D4EB4F)) (i64.const 31)) (i64.const 0x9E3779B185EBCA87)))
          (i64.const 0x9E3779B185EBCA87)) (i64.const 0x85EBCA77C2B2AE63))))
      (else
        ;; Under 32 bytes: h = seed + P5
        (local.set $h (i64.add (local.get $seed) (i64.const 0x27D4EB2F165667C5)))))

    (local.set $h (i64.add (local.get $h) (i64.extend_i32_u (local.get $len))))

    ;; 8-byte tail: while (p + 8 <= end) { h = rotl(h ^ round(0, load64), 27) * P1 + P4; p += 8 }
    (block $done8
      (loop $eights
        (br_if $done8 (i32.gt_u (i32.add (local.get $p) (i32.const 8)) (local.get $end)))
        (local.set $k (i64.mul (i64.rotl (i64.mul (i64.load align=1 (local.get $p)) (i64.const 0xC2B2AE3D27D4EB4F)) (i64.const 31)) (i64.const 0x9E3779B185EBCA87)))
        (local.set $h (i64.add (i64.mul (i64.rotl (i64.xor (local.get $h) (local.get $k)) (i64.const 27)) (i64.const 0x9E3779B185EBCA87)) (i64.const 0x85EBCA77C2B2AE63)))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br $eights)))

    ;; 4-byte tail: if (p + 4 <= end) { h = rotl(h ^ (load32 * P1), 23) * P2 + P3; p += 4 }
    (if (i32.le_u (i32.add (local.get $p) (i32.const 4)) (local.get $end))
      (then
        (local.set $h (i64.add (i64.mul (i64.rotl (i64.xor (local.get $h)
          (i64.mul (i64.load32_u align=1 (local.get $p)) (i64.const 0x9E3779B185EBCA87))) (i64.const 23)) (i64.const 0xC2B2AE3D27D4EB4F)) (i64.const 0x165667B19E3779F9)))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))))

    ;; 1-byte tail: while (p < end) { h = rotl(h ^ (byte * P5), 11) * P1; p++ }
    (block $done1
      (loop $ones
        (br_if $done1 (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $h (i64.mul (i64.rotl (i64.xor (local.get $h)
          (i64.mul (i64.load8_u (local.get $p)) (i64.const 0x27D4EB2F165667C5))) (i64.const 11)) (i64.const 0x9E3779B185EBCA87)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $ones)))

    ;; avalanche: h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32
    (local.set $h (i64.mul (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 33))) (i64.const 0xC2B2AE3D27D4EB4F)))
    (local.set $h (i64.mul (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 29))) (i64.const 0x165667B19E3779F9)))
    (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 32)))))
