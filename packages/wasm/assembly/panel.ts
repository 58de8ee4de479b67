// panel.ts — the prefill path of matmul_f16 / matmul_bf16 / matmul_f32g (gemm.ts: with a matmul scratch and
// T >= 6 / 12 / 24): a panel of weight rows is widened to f32 ONCE into a per-thread scratch slot, then every
// token of the block runs over it with the f32 4 x 2 register tile (the tile4x2<f32> loop, reading the panel
// instead of the weight rows). The widening is paid once per panel and token block instead of once per token
// pair, so f16 / bf16 prefill runs at the f32 rate. f32 in row groups (matmul_f32g) has nothing to widen, but
// its tiles ran about 10 % slower over the row groups than over rows in order, and through the panel (a copy)
// they run at the rows-in-order rate. (matmul_f32, rows in order, keeps gemm.ts's tiles.)
//
// Bitwise contract (gemm.ts): unchanged. Each element (t, n) still runs
//   acc = f32x4(0); for k in [0, K4) step 4: acc = acc + w[n, k..k+4) * x[t, k..k+4); finish (gemm.ts)
// The widened values are exactly the ones the in-register paths use (wload4: f16/bf16 -> f32 is exact,
// subnormals, inf and NaN included, so no inf/NaN watch is needed here), the K chunks only store the
// accumulator to memory between two steps and load it back (exact), and padding rows / tokens only feed
// elements that are never stored. So a result does not depend on the path, the split, the thread count
// or T: prefill row t equals the decode (T = 1) result for the same token, bit for bit.
//
// Loop nest (per call, rows [n0, n1) of this thread):
//   widen the first panel
//   for token block (TB tokens: as many as the slot's accumulators hold, 128 with the default slot):
//     for row panel (RP = 4 rows):
//       zero the block's accumulators
//       for K chunk (KC = 4096 elements of [0, K4): one chunk up to K = 4096):
//         for token tile (TT = 2 tokens): the R x TT micro tile over the chunk (x read in place, the panel
//           as one f32x4 stream: [step][row]), its accumulators loaded before and stored after; then the
//           next slice of the NEXT panel is widened into the other buffer (software pipelining: reading
//           the weights from memory overlaps the arithmetic instead of stalling it)
//       finish every (token, row) of the panel from its accumulator (hsum, K tail, bias: gemm.ts)
// A panel (4 x 4096 f32 = 64 KiB at most; 32 KiB at K = 2048) stays in L1/L2 while every token of the block
// passes over it. The micro tile is inlined into the loop nest on purpose: V8 unrolls the (deeply nested)
// step loop, which it does not do for a small function's loop (measured: a separate 4 x 2 micro function
// ran about 15% slower; a 5 x 2 tile spills once inlined). Measured on K = 2048: chunks of 512 or 1024
// (more micro tile calls, each a load and store of 8 accumulators) ran 3-6% slower than one chunk.
//
// Scratch (the host lays it out, see packages/wasm/src/scratch.ts): a header
//   +0 i32 slots, +4 u32 bytes per slot, +8 i32 k per chunk, +12 i32 rows per panel (0: KC, RP),
//   +64 i32 flags[slots] (0 free, 1 taken), then the slots (64-byte aligned, at +64 + align64(4 * slots)).
// A call claims a free slot with an atomic compare-exchange and frees it at the end, so any number of
// threads (or callers) can share one scratch; a call that finds no free slot, or a slot too small,
// returns false and the caller runs the in-register tiles instead (same results, bit for bit). A call
// that traps (a bad pointer) leaves its slot taken: later calls fall back to the tiles.
import { det16, det16_hit, f16hi_fast, f16x4_to_f32x4, wat, wgroups, wrow, wstep } from './quant'
import { finish, xrow } from './gemm'

/** Weight rows per micro tile. */
const R: i32 = 4
/** Tokens per micro tile. */
const TT: i32 = 2
/** K elements per chunk (multiple of 4). */
const KC: i32 = 4096
/** Rows per panel (multiple of R). */
const RP: i32 = 4

// @ts-ignore: decorator
@inline function mac(acc: v128, w: v128, x: v128): v128 {
  return f32x4.add(acc, f32x4.mul(w, x))
}

// @ts-ignore: decorator
@inline function slotsBase(scratch: usize): usize {
  return scratch + 64 + ((<usize>load<i32>(scratch) * 4 + 63) & ~<usize>63)
}

/** Claims a free slot of the scratch; its index, or -1 when every slot is taken. */
function claim(scratch: usize): i32 {
  const n = load<i32>(scratch)
  for (let s = 0; s < n; s++) if (atomic.cmpxchg<i32>(scratch + 64 + (<usize>s << 2), 0, 1) == 0) return s
  return -1
}

/**
 * Widens units [u0, u1) of a panel: rows [p0, p0 + rows) x [k0, k0 + 4 * steps) of W, unit u = pair * RP' +
 * row — a pair of steps (8 halves; the last pair of an odd `steps` has one), step-major over the pairs
 * (RP' = rows rounded up to groups of R) so that a range walks the weights' row groups (quant.ts) in their
 * stored order; units(rows, steps) of them. The panel holds group g, step s, row r at ((g * steps + s) * R + r)
 * * 16; rows from `rows` to groups * R are zeros. f16 widens with the finite-only trick first and, when the
 * range held an inf / NaN half, again exactly (so the panel always holds the exact values).
 */
function widen<W>(panel: usize, w: usize, p0: i32, rows: i32, k0: i32, steps: i32, K: i32, N: i32, u0: i32, u1: i32): void {
  const m = widen8<W>(panel, w, p0, rows, k0, steps, K, N, u0, u1, false)
  if (sizeof<W>() == 2 && !isSigned<W>()) {
    if (det16_hit(m)) widen8<W>(panel, w, p0, rows, k0, steps, K, N, u0, u1, true)
  }
}

/** 8 halves h of a row, widened, as two panel steps: halves 0..3 at d, 4..7 at d + R * 16 (the next step, same row). */
// @ts-ignore: decorator
@inline function put8<W>(d: usize, h: v128, exact: bool): void {
  const z = f32x4.splat(0)
  v128.store(d, wide<W>(i16x8.shuffle(z, h, 0, 8, 1, 9, 2, 10, 3, 11), exact)) // each half << 16
  v128.store(d + (<usize>R << 4), wide<W>(i16x8.shuffle(z, h, 4, 12, 5, 13, 6, 14, 7, 15), exact))
}

/** 8 f32 of a row (grouped f32, tag u32: nothing to widen) as two panel steps: lo at d, hi at d + R * 16. */
// @ts-ignore: decorator
@inline function put8f(d: usize, lo: v128, hi: v128): void {
  v128.store(d, lo)
  v128.store(d + (<usize>R << 4), hi)
}

/** Units of a panel of `rows` rows and `steps` steps (widen). */
// @ts-ignore: decorator
@inline function units(rows: i32, steps: i32): i32 {
  return (rows + R - 1) / R * R * ((steps + 1) >> 1)
}

/** widen's loop; returns the f16 inf / NaN watch (det16). exact: f16 with the exact widening. */
// @ts-ignore: decorator
@inline function widen8<W>(panel: usize, w: usize, p0: i32, rows: i32, k0: i32, steps: i32, K: i32, N: i32, u0: i32, u1: i32, exact: bool): v128 {
  const z = f32x4.splat(0)
  const rowsP = (rows + R - 1) / R * R
  const gstep = <usize>(steps * R) << 4 // panel bytes from one group to the next
  const a8 = (k0 & 7) == 0
  let m = z
  if (wgroups<W>(K) && a8 && rows == R && (p0 & 3) == 0 && (steps & 1) == 0) {
    // one whole weight row group (R rows, a step of R * 16 bytes): unit u is the 16 bytes at u * 16 from the
    // chunk's start and goes to the panel at (u / R) * 2R * 16 + (u % R) * 16
    const ub = <usize>8 * sizeof<W>() // bytes of a unit: 8 halves, or 8 f32
    let src = wrow<W>(w, p0, K, N) + wat<W>(k0, <usize>R * ub) + <usize>u0 * ub
    for (let u = u0; u < u1; u++) {
      const d = panel + (<usize>(u / R) * (2 * R) << 4) + (<usize>(u % R) << 4)
      if (sizeof<W>() == 4) put8f(d, v128.load(src), v128.load(src, 16))
      else {
        const h = v128.load(src)
        m = det16<W>(m, h)
        put8<W>(d, h, exact)
      }
      src += ub
    }
    return m
  }
  let pr = u0 / rowsP, row = u0 - pr * rowsP
  for (let u = u0; u < u1; u++) {
    const g = row / R, s = pr << 1
    const d = panel + <usize>g * gstep + (<usize>(s * R + row - g * R) << 4)
    if (row < rows) {
      const n = p0 + row, k = k0 + (s << 2), rs = wstep<W>(n, K, N), wp = wrow<W>(w, n, K, N)
      const src = wp + wat<W>(k, rs)
      if (sizeof<W>() == 4) { // f32 in row groups: 4 values at k, and 4 at k + 4 (a row step on when k is not a multiple of 8)
        if (s + 1 < steps) put8f(d, v128.load(src), v128.load(wp + wat<W>(k + 4, rs)))
        else v128.store(d, v128.load(src))
      } else if (s + 1 < steps) { // 8 halves: one load from a multiple of 8 (else, in row groups, the second 4 lie a row step on)
        const h = a8 ? v128.load(src) : v128.load64_lane(wp + wat<W>(k + 4, rs), v128.load64_zero(src), 1)
        m = det16<W>(m, h)
        put8<W>(d, h, exact)
      } else { // the last, single step
        const h = v128.load64_zero(src)
        m = det16<W>(m, h)
        v128.store(d, wide<W>(i16x8.shuffle(z, h, 0, 8, 1, 9, 2, 10, 3, 11), exact))
      }
    } else {
      v128.store(d, z)
      if (s + 1 < steps) v128.store(d + (<usize>R << 4), z)
    }
    if (++row == rowsP) { row = 0; pr++ }
  }
  return m
}

/** Four halves in the high 16 bits of each lane (h << 16) -> f32x4: bf16 as they are; f16 finite-only, or exact. */
// @ts-ignore: decorator
@inline function wide<W>(v: v128, exact: bool): v128 {
  if (isSigned<W>()) return v
  if (exact) return f16x4_to_f32x4(i32x4.shr_u(v, 16))
  return f16hi_fast(v)
}

/** The R x TT micro tile over `steps` steps: accumulators at acc ((r * TT + j) * 16), panel at wp, token rows at x0, x1. */
// @ts-ignore: decorator
@inline function micro(acc: usize, wp: usize, x0: usize, x1: usize, steps: i32): void {
  let a00 = v128.load(acc, 0), a01 = v128.load(acc, 16)
  let a10 = v128.load(acc, 32), a11 = v128.load(acc, 48)
  let a20 = v128.load(acc, 64), a21 = v128.load(acc, 80)
  let a30 = v128.load(acc, 96), a31 = v128.load(acc, 112)
  const end = wp + <usize>(steps * R) * 16
  while (wp < end) {
    const v0 = v128.load(x0), v1 = v128.load(x1)
    let u = v128.load(wp)
    a00 = mac(a00, u, v0); a01 = mac(a01, u, v1)
    u = v128.load(wp, 16)
    a10 = mac(a10, u, v0); a11 = mac(a11, u, v1)
    u = v128.load(wp, 32)
    a20 = mac(a20, u, v0); a21 = mac(a21, u, v1)
    u = v128.load(wp, 48)
    a30 = mac(a30, u, v0); a31 = mac(a31, u, v1)
    wp += 64
    x0 += 16
    x1 += 16
  }
  v128.store(acc, a00, 0); v128.store(acc, a01, 16)
  v128.store(acc, a10, 32); v128.store(acc, a11, 48)
  v128.store(acc, a20, 64); v128.store(acc, a21, 80)
  v128.store(acc, a30, 96); v128.store(acc, a31, 112)
}

/**
 * out[t, n] for rows [n0, n1), every token, through widened panels in a scratch slot. Returns false
 * (having written nothing) when the scratch has no free slot or its slot is too small; K & ~3 must be > 0.
 *
 * Two panel buffers: while the token tiles run over one panel, the next panel (the next K chunk, else the
 * next row panel, else the first of the next token block) is widened into the other, a slice after each
 * tile, so that reading the weights from memory overlaps the arithmetic instead of stalling it.
 */
// @ts-ignore: decorator
@inline export function prefill<W>(n0: i32, n1: i32, out: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32, scratch: usize): bool {
  const K4 = K & ~3
  const slotBytes = <usize>load<u32>(scratch, 4)
  // panel shape: the header's (+8 k per chunk, +12 rows per panel) when set, else KC x RP
  const hk = load<i32>(scratch, 8), hr = load<i32>(scratch, 12)
  const kc = min(hk >= 4 ? hk & ~3 : KC, K4), rp = hr > 0 ? (hr + R - 1) / R * R : RP
  const panelBytes = <usize>(rp * kc) << 2
  if (slotBytes < 2 * panelBytes + <usize>(rp * TT * 16)) return false
  // token block: as many tokens as the slot's accumulators hold (a multiple of TT)
  const TB = min((T + TT - 1) / TT * TT, <i32>((slotBytes - 2 * panelBytes) / <usize>(rp * 16)) / TT * TT)
  const s = claim(scratch)
  if (s < 0) return false
  const base = slotsBase(scratch) + <usize>s * slotBytes, accs = base + 2 * panelBytes
  const GT = R * TT * 16 // accumulator bytes per micro tile
  let cur = base, nxt = base + panelBytes
  // the first panel, widened up front
  let rows = min(rp, n1 - n0), groups = (rows + R - 1) / R, steps = min(kc, K4) >> 2
  widen<W>(cur, w, n0, rows, 0, steps, K, N, 0, units(rows, steps))
  for (let t0 = 0; t0 < T; t0 += TB) {
    const tb = min(TB, T - t0)
    const tiles = (tb + TT - 1) / TT
    for (let p0 = n0; p0 < n1; p0 += rp) {
      memory.fill(accs, 0, <usize>(tiles * groups * GT))
      for (let k0 = 0; k0 < K4; k0 += kc) {
        // the panel after this one: (np0, nk0), or none at the very end
        let np0 = p0, nk0 = k0 + kc
        if (nk0 >= K4) { np0 = p0 + rp; nk0 = 0; if (np0 >= n1) np0 = t0 + TB < T ? n0 : n1 }
        const nrows = min(rp, n1 - np0), nsteps = (min(nk0 + kc, K4) - nk0) >> 2, nunits = units(nrows, nsteps)
        for (let j = 0; j < tiles; j++) {
          // a padding token (odd tb) reads the valid token's row again: its sums are never stored
          const t = t0 + j * TT
          const x0 = xrow(x, t, K) + (<usize>k0 << 2), x1 = t + 1 < t0 + tb ? x0 + (<usize>K << 2) : x0
          const a = accs + <usize>(j * groups * GT)
          for (let g = 0; g < groups; g++) micro(a + <usize>(g * GT), cur + <usize>(g * steps * R) * 16, x0, x1, steps)
          if (np0 < n1) widen<W>(nxt, w, np0, nrows, nk0, nsteps, K, N, <i32>(<i64>j * nunits / tiles), <i32>(<i64>(j + 1) * nunits / tiles))
        }
        const c = cur; cur = nxt; nxt = c
        if (k0 + kc < K4) steps = nsteps
      }
      for (let j = 0; j < tiles; j++) {
        for (let g = 0; g < groups; g++) {
          const a = accs + <usize>((j * groups + g) * GT)
          for (let r = 0; r < R; r++) {
            const n = p0 + g * R + r
            if (n >= p0 + rows) break
            const wp = wrow<W>(w, n, K, N)
            for (let i = 0; i < TT; i++) {
              const t = t0 + j * TT + i
              if (t >= t0 + tb) break
              finish<W>(v128.load(a + <usize>((r * TT + i) << 4)), xrow(x, t, K), wp, 0, K4, K, b, out, t, n, N)
            }
          }
        }
      }
      // the next row panel's shape (its first chunk is already widened)
      const np0 = p0 + rp < n1 ? p0 + rp : n0
      rows = min(rp, n1 - np0); groups = (rows + R - 1) / R; steps = min(kc, K4) >> 2
    }
  }
  atomic.store<i32>(scratch + 64 + (<usize>s << 2), 0)
  return true
}
