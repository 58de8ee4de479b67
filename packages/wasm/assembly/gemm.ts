// gemm.ts — out[T, N] = x[T, K] · W[N, K]^T (+ b[N]), W in f32, f16 or bf16 storage.
// q8 / q4 weights: gemm_q8.ts (integer block dot products on quantized activations; its own contract).
//
// Split: rows n of W (= columns of out) in [n0, n1); every thread writes its own columns.
// b == 0 means no bias. Pointers are byte offsets (usize: may exceed 2^31); sizes i32.
//
// Bitwise contract: every output element (t, n) is computed by the SAME instruction sequence
// whatever tile it falls in, so results do not depend on the row split, the thread count, T, or
// how rows and tokens are grouped:
//   acc = f32x4(0)
//   for k in [0, K4) step 4:  acc = acc + w[n, k..k+4) * x[t, k..k+4)     (mul, then add; no FMA)
//   s = (acc[0] + acc[1]) + (acc[2] + acc[3])
//   for k in [K4, K):         s = s + x[t, k] * w[n, k]                   (K4 = K & ~3)
//   out[t, n] = b ? s + b[n] : s
// Weights are widened to f32 in-register (quant.ts). f16 / bf16 weights, and f32 weights for inference
// (matmul_f32g; matmul_f32 takes rows in order, as training keeps them), with K a multiple of 8 are stored
// in row groups (quant.ts): 4 rows take turns every 8 values, so the 4-row decode tile reads one stream
// (wrow / wstep / wat give any element's address; 4-row tiles take rows of one step only: wtiles).
//
// Tiles (all share the per-element sequence above; V8 keeps about 15 v128 values in registers, so
// each tile is sized to fit: accumulators + the loads of one step + constants):
//   decode  (1 token)     4 rows, k step 8 (f32: 2 loads/row; f16/bf16: one 16-byte load of 8
//                         halves), ~14 registers, streams W once; over row groups it reads one i32 a page
//                         ahead every 4 KiB of that stream (quant.ts read_ahead)
//   prefill f32, bf16     4 rows x 2 tokens, k step 4 (8 accumulators)
//   prefill f16           1 row x 6 tokens, k step 4 (the widening is the expensive part: each
//                         widened vector serves 6 tokens)
//   leftovers             tokens that do not fill a prefill tile: the decode tile (1 token) or a
//                         1 x (2..5) tile; rows that do not fill a 4-row tile: 1 x 1 (exact widening)
// Rows are the outer loop: a row block of W stays in L1/L2 while every token passes over it.
// f16 tiles widen with a finite-only trick and watch for inf/NaN halves; a tile that saw one is
// recomputed element by element with the exact widening (same sequence, so the same result). A caller that
// knows a weight has no inf / NaN half (matmul_f16's `finite`; the wasm device checks each f16 weight once at
// load with f16_nonfinite) lets the decode tile skip the watch: 2 of its ~15 instructions per 8 halves a row.
//
// Prefill through a panel (panel.ts): matmul_f16 / matmul_bf16 called with a matmul scratch (the last
// argument; packages/wasm/src/scratch.ts) and T >= 6 (f16) / 12 (bf16) widen 4 weight rows x up to 4096 k
// to f32 ONCE into a per-thread panel and run the f32 4 x 2 tile over it for every token, so the widening
// is paid once per panel instead of once per token pair (f16: per 6 tokens) and f16 / bf16 prefill runs
// at the f32 rate. Same per-element sequence: the widening is exact (f16 inf / NaN included), the K
// chunks only park the accumulator in memory, so the result equals the tiles' bit for bit, for any T.
// matmul_f32 ignores the scratch: its tiles read f32 weights (rows in order) in place at the panel's rate (a
// panel would only add a copy). matmul_f32g (f32 in row groups) takes the panel from T >= 24: its tiles over
// the groups ran about 10 % slower than over rows in order at T = 16..128 (the panel's copy is paid once per
// 4 rows and token block). Without a scratch (0, or an old caller that passes 9 arguments) nothing changes.
import {
  READ_EVERY, det16, det16_hit, fold, hi8, lo8, raw4, raw8a, raw8b, read_ahead, srow, wat, wblock, wgroups, wid4, wload1, wq4, wrow, wscale4,
  wstep, wtiles,
} from './quant'
import { prefill } from './panel'

/** (a0 + a1) + (a2 + a3) — the fixed horizontal-sum order of the contract above. */
// @ts-ignore: decorator
@inline export function hsum(a: v128): f32 {
  return (f32x4.extract_lane(a, 0) + f32x4.extract_lane(a, 1)) + (f32x4.extract_lane(a, 2) + f32x4.extract_lane(a, 3))
}

// @ts-ignore: decorator
@inline function mac(acc: v128, w: v128, x: v128): v128 {
  return f32x4.add(acc, f32x4.mul(w, x))
}

/** Scalar K tail + bias of element (t, n), then the store. xp: token row; wp/sp: weight row / q8 scales row. */
// @ts-ignore: decorator
@inline export function finish<W>(acc: v128, xp: usize, wp: usize, sp: usize, K4: i32, K: i32, b: usize, out: usize, t: i32, n: i32, N: i32): void {
  let s = hsum(acc)
  const rs = wstep<W>(n, K, N)
  for (let k = K4; k < K; k++) s += load<f32>(xp + (<usize>k << 2)) * wload1<W>(wp, k, rs, sp)
  if (b) s += load<f32>(b + (<usize>n << 2))
  store<f32>(out + ((<usize>t * <usize>N + <usize>n) << 2), s)
}

// @ts-ignore: decorator
@inline export function xrow(x: usize, t: i32, K: i32): usize {
  return x + ((<usize>t * <usize>K) << 2)
}

/** One element with the exact widening, k step 4 (row tails, f16 inf/NaN fallback). */
function tile1x1<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32): void {
  const K4 = K & ~3, BK = wblock<W>(K4)
  const xp = xrow(x, t, K), wp = wrow<W>(w, n, K, N), sp = srow<W>(scales, n, K), rs = wstep<W>(n, K, N)
  let a = f32x4.splat(0)
  for (let kb = 0; kb < K4; kb += BK) {
    const ke = min(kb + BK, K4)
    const c = wscale4<W>(sp, kb)
    let p = f32x4.splat(0)
    for (let k = kb; k < ke; k += 4) p = mac(p, wq4<W>(wp, k, rs), v128.load(xp + (<usize>k << 2)))
    a = fold<W>(a, p, c)
  }
  finish<W>(a, xp, wp, sp, K4, K, b, out, t, n, N)
}

/** Recomputes rows [n, n + R) x tokens [t, t + TT) with tile1x1 (after an f16 inf/NaN hit). */
function redo<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32, R: i32, TT: i32): void {
  for (let r = 0; r < R; r++) for (let j = 0; j < TT; j++) tile1x1<W>(out, x, w, scales, b, n + r, t + j, K, N)
}

/** Decode tile: rows n..n+3, token t; k step 8 then 4. */
function tile_dec<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32): void {
  tile_dec_body<W>(out, x, w, scales, b, n, t, K, N, true)
}
/** The decode tile for an f16 weight known to hold no inf / NaN half (matmul_f16's `finite`): no watch. */
function tile_dec_finite<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32): void {
  tile_dec_body<W>(out, x, w, scales, b, n, t, K, N, false)
}
// @ts-ignore: decorator
@inline function tile_dec_body<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32, watch: bool): void {
  const K4 = K & ~3, BK = wblock<W>(K4)
  const xp = xrow(x, t, K)
  const w0 = wrow<W>(w, n, K, N), w1 = wrow<W>(w, n + 1, K, N), w2 = wrow<W>(w, n + 2, K, N), w3 = wrow<W>(w, n + 3, K, N)
  const rs = wstep<W>(n, K, N) // the same for the four rows (wtiles)
  const s0 = srow<W>(scales, n, K), s1 = srow<W>(scales, n + 1, K), s2 = srow<W>(scales, n + 2, K), s3 = srow<W>(scales, n + 3, K)
  const grouped = wgroups<W>(K), kPage = READ_EVERY / (4 * sizeof<W>()), wend = w + <usize>N * <usize>K * sizeof<W>()
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, m = a0
  for (let kb = 0; kb < K4; kb += BK) {
    const ke = min(kb + BK, K4)
    const c0 = wscale4<W>(s0, kb), c1 = wscale4<W>(s1, kb), c2 = wscale4<W>(s2, kb), c3 = wscale4<W>(s3, kb)
    let k = kb
    while (k + 8 <= ke) {
      // row groups: one stream (4 rows x kPage values = READ_EVERY bytes) between two reads ahead (quant.ts)
      let kc = ke
      if (grouped) { read_ahead(w0 + wat<W>(k, rs), wend); kc = min(ke, k + kPage) }
      for (; k + 8 <= kc; k += 8) {
        const xo = xp + (<usize>k << 2)
        const v0 = v128.load(xo), v1 = v128.load(xo, 16)
        const wo = wat<W>(k, rs)
        const r0 = raw8a<W>(w0 + wo), r1 = raw8a<W>(w1 + wo), r2 = raw8a<W>(w2 + wo), r3 = raw8a<W>(w3 + wo)
        const q0 = raw8b<W>(w0 + wo), q1 = raw8b<W>(w1 + wo), q2 = raw8b<W>(w2 + wo), q3 = raw8b<W>(w3 + wo)
        if (watch) { m = det16<W>(m, r0); m = det16<W>(m, r1); m = det16<W>(m, r2); m = det16<W>(m, r3) }
        a0 = mac(mac(a0, lo8<W>(r0, c0), v0), hi8<W>(r0, q0, c0), v1)
        a1 = mac(mac(a1, lo8<W>(r1, c1), v0), hi8<W>(r1, q1, c1), v1)
        a2 = mac(mac(a2, lo8<W>(r2, c2), v0), hi8<W>(r2, q2, c2), v1)
        a3 = mac(mac(a3, lo8<W>(r3, c3), v0), hi8<W>(r3, q3, c3), v1)
      }
    }
    if (k < ke) { // one step of 4 (exact widening)
      const v0 = v128.load(xp + (<usize>k << 2))
      a0 = mac(a0, wq4<W>(w0, k, rs), v0); a1 = mac(a1, wq4<W>(w1, k, rs), v0)
      a2 = mac(a2, wq4<W>(w2, k, rs), v0); a3 = mac(a3, wq4<W>(w3, k, rs), v0)
    }
  }
  if (sizeof<W>() == 2 && !isSigned<W>() && watch) {
    if (det16_hit(m)) { redo<W>(out, x, w, scales, b, n, t, K, N, 4, 1); return }
  }
  finish<W>(a0, xp, w0, s0, K4, K, b, out, t, n, N); finish<W>(a1, xp, w1, s1, K4, K, b, out, t, n + 1, N)
  finish<W>(a2, xp, w2, s2, K4, K, b, out, t, n + 2, N); finish<W>(a3, xp, w3, s3, K4, K, b, out, t, n + 3, N)
}

/** Prefill tile for f32 / bf16: rows n..n+3, tokens t, t+1; k step 4. */
function tile4x2<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32): void {
  const K4 = K & ~3, BK = wblock<W>(K4)
  const x0 = xrow(x, t, K), x1 = xrow(x, t + 1, K)
  const w0 = wrow<W>(w, n, K, N), w1 = wrow<W>(w, n + 1, K, N), w2 = wrow<W>(w, n + 2, K, N), w3 = wrow<W>(w, n + 3, K, N)
  const rs = wstep<W>(n, K, N) // the same for the four rows (wtiles)
  const s0 = srow<W>(scales, n, K), s1 = srow<W>(scales, n + 1, K), s2 = srow<W>(scales, n + 2, K), s3 = srow<W>(scales, n + 3, K)
  let a00 = f32x4.splat(0), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00
  let m = a00
  for (let kb = 0; kb < K4; kb += BK) {
    const ke = min(kb + BK, K4)
    const c0 = wscale4<W>(s0, kb), c1 = wscale4<W>(s1, kb), c2 = wscale4<W>(s2, kb), c3 = wscale4<W>(s3, kb)
    for (let k = kb; k < ke; k += 4) {
      const xo = <usize>k << 2, wo = wat<W>(k, rs)
      const v0 = v128.load(x0 + xo), v1 = v128.load(x1 + xo)
      const r0 = raw4<W>(w0 + wo), r1 = raw4<W>(w1 + wo), r2 = raw4<W>(w2 + wo), r3 = raw4<W>(w3 + wo)
      m = det16<W>(m, r0); m = det16<W>(m, r1); m = det16<W>(m, r2); m = det16<W>(m, r3)
      let u = wid4<W>(r0, c0)
      a00 = mac(a00, u, v0); a01 = mac(a01, u, v1)
      u = wid4<W>(r1, c1)
      a10 = mac(a10, u, v0); a11 = mac(a11, u, v1)
      u = wid4<W>(r2, c2)
      a20 = mac(a20, u, v0); a21 = mac(a21, u, v1)
      u = wid4<W>(r3, c3)
      a30 = mac(a30, u, v0); a31 = mac(a31, u, v1)
    }
  }
  if (sizeof<W>() == 2 && !isSigned<W>()) {
    if (det16_hit(m)) { redo<W>(out, x, w, scales, b, n, t, K, N, 4, 2); return }
  }
  finish<W>(a00, x0, w0, s0, K4, K, b, out, t, n, N); finish<W>(a01, x1, w0, s0, K4, K, b, out, t + 1, n, N)
  finish<W>(a10, x0, w1, s1, K4, K, b, out, t, n + 1, N); finish<W>(a11, x1, w1, s1, K4, K, b, out, t + 1, n + 1, N)
  finish<W>(a20, x0, w2, s2, K4, K, b, out, t, n + 2, N); finish<W>(a21, x1, w2, s2, K4, K, b, out, t + 1, n + 2, N)
  finish<W>(a30, x0, w3, s3, K4, K, b, out, t, n + 3, N); finish<W>(a31, x1, w3, s3, K4, K, b, out, t + 1, n + 3, N)
}

/** Prefill tile for f16: row n, tokens t .. t+TT-1 (TT in 1..6, a compile-time constant after inlining); k step 4. */
// @ts-ignore: decorator
@inline function tile1xT<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32, TT: i32): void {
  const K4 = K & ~3, BK = wblock<W>(K4)
  const x0 = xrow(x, t, K)
  const x1 = TT > 1 ? xrow(x, t + 1, K) : x0, x2 = TT > 2 ? xrow(x, t + 2, K) : x0
  const x3 = TT > 3 ? xrow(x, t + 3, K) : x0, x4 = TT > 4 ? xrow(x, t + 4, K) : x0, x5 = TT > 5 ? xrow(x, t + 5, K) : x0
  const w0 = wrow<W>(w, n, K, N), s0 = srow<W>(scales, n, K), rs = wstep<W>(n, K, N)
  const z = f32x4.splat(0)
  let a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, m = z
  for (let kb = 0; kb < K4; kb += BK) {
    const ke = min(kb + BK, K4)
    const c0 = wscale4<W>(s0, kb)
    let p0 = z, p1 = z, p2 = z, p3 = z, p4 = z, p5 = z
    for (let k = kb; k < ke; k += 4) {
      const xo = <usize>k << 2
      const v0 = v128.load(x0 + xo)
      const v1 = TT > 1 ? v128.load(x1 + xo) : z, v2 = TT > 2 ? v128.load(x2 + xo) : z
      const v3 = TT > 3 ? v128.load(x3 + xo) : z, v4 = TT > 4 ? v128.load(x4 + xo) : z, v5 = TT > 5 ? v128.load(x5 + xo) : z
      const r0 = raw4<W>(w0 + wat<W>(k, rs))
      m = det16<W>(m, r0)
      const u = wid4<W>(r0, c0)
      p0 = mac(p0, u, v0)
      if (TT > 1) p1 = mac(p1, u, v1)
      if (TT > 2) p2 = mac(p2, u, v2)
      if (TT > 3) p3 = mac(p3, u, v3)
      if (TT > 4) p4 = mac(p4, u, v4)
      if (TT > 5) p5 = mac(p5, u, v5)
    }
    a0 = fold<W>(a0, p0, c0)
    if (TT > 1) a1 = fold<W>(a1, p1, c0)
    if (TT > 2) a2 = fold<W>(a2, p2, c0)
    if (TT > 3) a3 = fold<W>(a3, p3, c0)
    if (TT > 4) a4 = fold<W>(a4, p4, c0)
    if (TT > 5) a5 = fold<W>(a5, p5, c0)
  }
  if (sizeof<W>() == 2 && !isSigned<W>()) {
    if (det16_hit(m)) { redo<W>(out, x, w, scales, b, n, t, K, N, 1, TT); return }
  }
  finish<W>(a0, x0, w0, s0, K4, K, b, out, t, n, N)
  if (TT > 1) finish<W>(a1, x1, w0, s0, K4, K, b, out, t + 1, n, N)
  if (TT > 2) finish<W>(a2, x2, w0, s0, K4, K, b, out, t + 2, n, N)
  if (TT > 3) finish<W>(a3, x3, w0, s0, K4, K, b, out, t + 3, n, N)
  if (TT > 4) finish<W>(a4, x4, w0, s0, K4, K, b, out, t + 4, n, N)
  if (TT > 5) finish<W>(a5, x5, w0, s0, K4, K, b, out, t + 5, n, N)
}

function tile1x6<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32): void { tile1xT<W>(out, x, w, scales, b, n, t, K, N, 6) }
function tile1x5<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32): void { tile1xT<W>(out, x, w, scales, b, n, t, K, N, 5) }
function tile1x4<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32): void { tile1xT<W>(out, x, w, scales, b, n, t, K, N, 4) }
function tile1x3<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32): void { tile1xT<W>(out, x, w, scales, b, n, t, K, N, 3) }
function tile1x2<W>(out: usize, x: usize, w: usize, scales: usize, b: usize, n: i32, t: i32, K: i32, N: i32): void { tile1xT<W>(out, x, w, scales, b, n, t, K, N, 2) }

/** Tokens [t0, t0 + 1): decode tiles over 4-row blocks, then 1 x 1 for the row tail. */
// @ts-ignore: decorator
@inline function one_token<W>(n0: i32, n1: i32, out: usize, x: usize, w: usize, scales: usize, b: usize, t: i32, K: i32, N: i32, finite: bool): void {
  const ne = wtiles<W>(n1, K, N)
  let n = n0
  if (sizeof<W>() == 2 && !isSigned<W>() && finite) for (; n + 4 <= ne; n += 4) tile_dec_finite<W>(out, x, w, scales, b, n, t, K, N)
  for (; n + 4 <= ne; n += 4) tile_dec<W>(out, x, w, scales, b, n, t, K, N)
  for (; n < n1; n++) tile1x1<W>(out, x, w, scales, b, n, t, K, N)
}

/**
 * Tokens from which a call with a scratch takes the panel path (panel.ts) for bf16 / f16 / grouped f32
 * weights; fewer run the in-register tiles below, whose widening per token pair is cheaper than a panel's
 * copy there. f32 with rows in order always runs the tiles: they read f32 weights in place at about the same
 * rate as a panel, which would add a copy (measured: 2-10% slower at T = 64..128, more below). Grouped f32
 * (matmul_f32g): tiles x0.87-0.90 of matmul_f32 at T = 16..128, the panel x0.87 at 16, x0.92 at 32, x0.96-1.03
 * at 64-128 (kernel, 1 thread, K = 2048).
 */
const PANEL_MIN_T_BF16: i32 = 12
const PANEL_MIN_T_F16: i32 = 6
const PANEL_MIN_T_F32G: i32 = 24

// @ts-ignore: decorator
@inline function matmul<W>(n0: i32, n1: i32, out: usize, x: usize, w: usize, scales: usize, b: usize, T: i32, K: i32, N: i32, scratch: usize, finite: bool): void {
  if (sizeof<W>() == 2 && scratch != 0 && K >= 4 && T >= (isSigned<W>() ? PANEL_MIN_T_BF16 : PANEL_MIN_T_F16)) {
    if (prefill<W>(n0, n1, out, x, w, b, T, K, N, scratch)) return
  }
  if (sizeof<W>() == 4 && !isFloat<W>() && scratch != 0 && K >= 4 && T >= PANEL_MIN_T_F32G) {
    if (prefill<W>(n0, n1, out, x, w, b, T, K, N, scratch)) return
  }
  if (sizeof<W>() == 4 || (sizeof<W>() == 2 && isSigned<W>())) {
    // f32, bf16: 4 x 2 tiles, the odd token with the decode tile
    const Tm = T & ~1
    if (Tm > 0) {
      const ne = wtiles<W>(n1, K, N)
      let n = n0
      for (; n + 4 <= ne; n += 4) for (let t = 0; t < Tm; t += 2) tile4x2<W>(out, x, w, scales, b, n, t, K, N)
      for (; n < n1; n++) for (let t = 0; t < Tm; t++) tile1x1<W>(out, x, w, scales, b, n, t, K, N)
    }
    if (T > Tm) one_token<W>(n0, n1, out, x, w, scales, b, Tm, K, N, false)
  } else {
    // f16: 1 x 6 tiles; 1 leftover token with the decode tile, 2..5 with a 1 x rem tile
    const Tm = T - T % 6
    for (let n = n0; n < n1; n++) for (let t = 0; t < Tm; t += 6) tile1x6<W>(out, x, w, scales, b, n, t, K, N)
    const rem = T - Tm
    if (rem == 1) one_token<W>(n0, n1, out, x, w, scales, b, Tm, K, N, finite)
    else if (rem == 2) for (let n = n0; n < n1; n++) tile1x2<W>(out, x, w, scales, b, n, Tm, K, N)
    else if (rem == 3) for (let n = n0; n < n1; n++) tile1x3<W>(out, x, w, scales, b, n, Tm, K, N)
    else if (rem == 4) for (let n = n0; n < n1; n++) tile1x4<W>(out, x, w, scales, b, n, Tm, K, N)
    else if (rem == 5) for (let n = n0; n < n1; n++) tile1x5<W>(out, x, w, scales, b, n, Tm, K, N)
  }
}

/** The naive scalar loop: s = sum_k x[t,k] * w[n,k] (in k order, f32), then + b[n]. */
// @ts-ignore: decorator
@inline function matmul_naive<W>(n0: i32, n1: i32, out: usize, x: usize, w: usize, scales: usize, b: usize, T: i32, K: i32, N: i32): void {
  for (let t = 0; t < T; t++) {
    const xp = xrow(x, t, K)
    for (let n = n0; n < n1; n++) {
      const wp = wrow<W>(w, n, K, N), sp = srow<W>(scales, n, K), rs = wstep<W>(n, K, N)
      let s: f32 = 0
      for (let k = 0; k < K; k++) s += load<f32>(xp + (<usize>k << 2)) * wload1<W>(wp, k, rs, sp)
      if (b) s += load<f32>(b + (<usize>n << 2))
      store<f32>(out + ((<usize>t * <usize>N + <usize>n) << 2), s)
    }
  }
}

// --- exports ---------------------------------------------------------------------------------
// out: f32 [T, N]; x: f32 [T, K]; w: [N, K] in the storage dtype; b: f32 [N] or 0. Rows n in [n0, n1).

// scratch: a matmul scratch (panel.ts) or 0; f16 / bf16 prefill uses it, f32 and decode (T = 1) do not.

/** w: f32 [N, K]. */
export function matmul_f32(n0: i32, n1: i32, out: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32, scratch: usize): void {
  matmul<f32>(n0, n1, out, x, w, 0, b, T, K, N, scratch, false)
}
/** w: f32 [N, K] in row groups (quant.ts; rows in order when K is not a multiple of 8). Same results as matmul_f32, bit for bit. */
export function matmul_f32g(n0: i32, n1: i32, out: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32, scratch: usize): void {
  matmul<u32>(n0, n1, out, x, w, 0, b, T, K, N, scratch, false)
}
/**
 * w: u16 IEEE half bits [N, K], widened in-register (prefill with a scratch: into a panel). finite != 0: the
 * caller knows that w holds no inf / NaN half (f16_nonfinite), and the decode tile skips its watch for them
 * (x1.11-1.13 on a cold 2-thread mat-vec); 0 (or left out): watched, exact for any half.
 */
export function matmul_f16(n0: i32, n1: i32, out: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32, scratch: usize, finite: i32): void {
  matmul<u16>(n0, n1, out, x, w, 0, b, T, K, N, scratch, finite != 0)
}
/** w: u16 bfloat16 bits [N, K], widened in-register (prefill with a scratch: into a panel). */
export function matmul_bf16(n0: i32, n1: i32, out: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32, scratch: usize): void {
  matmul<i16>(n0, n1, out, x, w, 0, b, T, K, N, scratch, false)
}

export function matmul_f32_naive(n0: i32, n1: i32, out: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32): void {
  matmul_naive<f32>(n0, n1, out, x, w, 0, b, T, K, N)
}
export function matmul_f32g_naive(n0: i32, n1: i32, out: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32): void {
  matmul_naive<u32>(n0, n1, out, x, w, 0, b, T, K, N)
}
export function matmul_f16_naive(n0: i32, n1: i32, out: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32): void {
  matmul_naive<u16>(n0, n1, out, x, w, 0, b, T, K, N)
}
export function matmul_bf16_naive(n0: i32, n1: i32, out: usize, x: usize, w: usize, b: usize, T: i32, K: i32, N: i32): void {
  matmul_naive<i16>(n0, n1, out, x, w, 0, b, T, K, N)
}
