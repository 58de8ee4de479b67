// probe.ts — micro-kernels for the machine probes of the benchmarks (split like the other kernels).
import { READ_EVERY, read_ahead } from './quant'

/**
 * probe_stream_read(r0, r1, ptr, bytes): f32 — sums the 16-byte chunks [r0, r1) of the buffer at ptr
 * (bytes / 16 chunks in all; r1 is clamped to that) as f32x4, 4 independent accumulators, 128
 * bytes per iteration, reading 2 pages ahead every 4 KiB as the decode tiles do (quant.ts read_ahead: without
 * it the probe reads 4-7 % slower on the reference VM, and the tiles would outrun their own wall). Bytes
 * read = (r1 - r0) * 16. The sum is returned so that the reads are not dead code (any bit pattern is fine:
 * NaNs just propagate).
 */
export function probe_stream_read(r0: i32, r1: i32, ptr: usize, bytes: i32): f32 {
  r1 = min(r1, <i32>(<u32>bytes >> 4))
  const end = ptr + (<usize>r1 << 4)
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0
  let c = r0
  while (c + 8 <= r1) {
    read_ahead(ptr + (<usize>c << 4), end)
    const ce = min(r1, c + (READ_EVERY >> 4))
    for (; c + 8 <= ce; c += 8) {
      const p = ptr + (<usize>c << 4)
      const v0 = v128.load(p), v1 = v128.load(p, 16), v2 = v128.load(p, 32), v3 = v128.load(p, 48)
      const v4 = v128.load(p, 64), v5 = v128.load(p, 80), v6 = v128.load(p, 96), v7 = v128.load(p, 112)
      a0 = f32x4.add(f32x4.add(a0, v0), v4); a1 = f32x4.add(f32x4.add(a1, v1), v5)
      a2 = f32x4.add(f32x4.add(a2, v2), v6); a3 = f32x4.add(f32x4.add(a3, v3), v7)
    }
  }
  for (; c < r1; c++) a0 = f32x4.add(a0, v128.load(ptr + (<usize>c << 4)))
  const s = f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3))
  return (f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1)) + (f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3))
}

/**
 * probe_madd(r0, r1, iters): f32 — the f32x4 multiply-add peak: for each of the (r1 - r0) units,
 * `iters` iterations of 12 independent chains a = a * m + c (an f32x4.mul then an f32x4.add each).
 * flops = (r1 - r0) * iters * 96   (12 chains x 4 lanes x 2 flops). No memory traffic.
 */
export function probe_madd(r0: i32, r1: i32, iters: i32): f32 {
  const m = f32x4.splat(0.999999)
  const c = f32x4.splat(1e-7)
  let s: f32 = 0
  for (let u = r0; u < r1; u++) {
    let a0 = f32x4.splat(<f32>u), a1 = f32x4.add(a0, c), a2 = f32x4.add(a1, c), a3 = f32x4.add(a2, c)
    let a4 = f32x4.add(a3, c), a5 = f32x4.add(a4, c), a6 = f32x4.add(a5, c), a7 = f32x4.add(a6, c)
    let a8 = f32x4.add(a7, c), a9 = f32x4.add(a8, c), a10 = f32x4.add(a9, c), a11 = f32x4.add(a10, c)
    for (let i = 0; i < iters; i++) {
      a0 = f32x4.add(f32x4.mul(a0, m), c); a1 = f32x4.add(f32x4.mul(a1, m), c)
      a2 = f32x4.add(f32x4.mul(a2, m), c); a3 = f32x4.add(f32x4.mul(a3, m), c)
      a4 = f32x4.add(f32x4.mul(a4, m), c); a5 = f32x4.add(f32x4.mul(a5, m), c)
      a6 = f32x4.add(f32x4.mul(a6, m), c); a7 = f32x4.add(f32x4.mul(a7, m), c)
      a8 = f32x4.add(f32x4.mul(a8, m), c); a9 = f32x4.add(f32x4.mul(a9, m), c)
      a10 = f32x4.add(f32x4.mul(a10, m), c); a11 = f32x4.add(f32x4.mul(a11, m), c)
    }
    const t = f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7)))
    const v = f32x4.add(t, f32x4.add(f32x4.add(a8, a9), f32x4.add(a10, a11)))
    s += f32x4.extract_lane(v, 0)
  }
  return s
}

/** heap_base(): the first byte after the module's static data; the host's arena starts above it. */
export function heap_base(): usize {
  return __heap_base
}

/**
 * touch_pages(r0, r1, ptr): stores a zero byte at ptr + p * 4096 for the pages p in [r0, r1) — run
 * split over the threads before a big weight is read into fresh memory, so that the operating
 * system's first-touch page faults happen on every core instead of inside the one reading thread.
 * Only for freshly allocated (zero) memory: the byte it writes is the byte that is already there.
 */
export function touch_pages(r0: i32, r1: i32, ptr: usize): void {
  for (let p = r0; p < r1; p++) store<u8>(ptr + (<usize>p << 12), 0)
}
