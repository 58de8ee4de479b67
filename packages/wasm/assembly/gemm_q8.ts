// gemm_q8.ts — out[T, N] = x[T, K] · W[N, K]^T (+ b[N]) for q8 and q4 weights, in integers: the
// activations are quantized to int8 per block of 32 as well (ggml's q8_0 x q8_0 / q4_0 x q8_0), and each
// block's dot product is an exact integer.
//
// Split: rows n of W in [n0, n1), as gemm.ts. xa is NOT x: it is x quantized by quantize_act (quant.ts)
// into one buffer — xq i16 [T, Kp], then xd f32 [T, nb] (block scales), then xs i32 [T, nb] (block sums)
// — which the caller makes once per call, before the split (so every thread reads the same block);
// quantize_act(..., q4 = 0) for matmul_q8, (..., q4 = 1: xq pre-scaled, see quant.ts) for matmul_q4.
// Kp = ceil(K/32)*32 (weights and activations are zero padded to whole blocks), nb = Kp/32.
//
// Weights (quant.ts), both in K chunks (64 blocks) of row groups (4 rows, their blocks interleaved):
//                q8: w i8 [N, Kp], value q, scale dw f32 [N, nb];
//                q4: w u8 [N, Kp/2] (4-bit levels, 16 bytes a block: quant.ts's nibble layout), value
//                    level - 8, scale dw f32 [N, nb].
//
// Bitwise contract (the same in matmul_*_naive and in the js device, whatever the tile, split or thread count):
//   for every block b of the row:  isum_b = sum over the block's 32 k of wv[n, k] * xq[t, k]     (exact i32:
//                                  |isum_b| <= 32 * 127 * 127 for q8, 32 * 8 * 127 for q4)
//   s = 0 (f32);  for b = 0, 1, ..., nb-1 in order:  s = s + f32(isum_b) * (dw[n, b] * xd[t, b])
//   out[t, n] = b ? s + b[n] : s
// every operation an f32 IEEE operation in the order written (no FMA). The integer sum may be formed in
// any order (it is exact): the SIMD tiles use i32x4.dot_i16x8_s on 8 weights at a time — q8 forms
// (sum_k (256 * q_w) * q_x) / 256 from one 16-byte load of weights: its even bytes << 8 and its odd bytes
// & 0xff00 are 256 * the values in i16 lanes, against quantize_act's even / odd order (2 bitwise operations
// where two sign-extending loads cost 2 shuffles: 1.10x decode, BENCHMARKS.md) — and q4 forms
// (sum_k (level * 2^s_k) * (q * 2^(8 - s_k))) / 256 - 8 * xs[t, b] instead of sum_k (level - 8) * q
// (the same integer; s_k = 0, 4, 8, 0 for the four parts of 8 of a block).
//
// Tiles: a row group (4 rows) x 1 token (decode, and a leftover token), a row group x 2 tokens (prefill),
// over one K chunk; 1 x 1 for rows outside whole groups of [n0, n1) (all blocks). Loop order: chunks, then
// groups, then tokens — a thread reads its rows' part of a chunk as one sequential stream, the chunk of
// activations (4 KB a token) stays in L1, a group's chunk (8 KB q8) stays in L1 while every token passes.
// The decode tile (tile4x1) reads that stream a page ahead: one i32 load every 4 KiB (quant.ts read_ahead).
// Between chunks a tile's f32 accumulators wait in its own outputs (stored, reloaded: exact). In a 4-row
// tile each row's block gives an i32x4 of partial sums; a 4 x 4 transpose-add turns the four into one
// i32x4 of the rows' isum_b, so the f32 part runs with one row per lane (each lane does exactly the scalar
// sequence above).
//
// Relaxed SIMD (build/refgpt-relaxed.wasm: ASC_FEATURE_RELAXED_SIMD is true; the same source): q4's block
// sums come from i16x8.relaxed_dot_i8x16_i7x16_s (pmaddubsw on x86: int8 x int8 pairwise sums in i16),
// widened by i32x4.extadd_pairwise_i16x8_s, on int8 activations (quantize_act's relaxed layout for q4,
// quant.ts). The instruction is the same on every CPU only when every lane of its SECOND operand is in
// [0, 127]: the levels (0..15) are that operand, the activations (|q| <= 127) the first, so no pairwise
// sum saturates (2 * 15 * 127, and the two halves' sum 7620, fit i16); fix() then subtracts 8 * xs. It is
// the same exact integer isum_b, so the plain and relaxed builds agree bit for bit. q8 keeps the plain
// kernel in both builds: its weights are signed, so the relaxed form needs two unsigned activation planes,
// dot(w, max(q, 0)) - dot(w, max(-q, 0)), as many instructions as dot_i16x8_s (it measured the same). Not
// i32x4.relaxed_dot_i8x16_i7x16_add_s: Node 20's baseline compiler (Liftoff) returns twice the dot product
// and drops the addend on an AVX-VNNI machine (TurboFan is right), so results would change on tier-up.
//
// Code shape: V8 (TurboFan) issues all the loads of a loop body before the arithmetic that uses them. Each
// row's partial sums are therefore stored (to the tile's own output, overwritten at the end): the store
// keeps the next row's weight loads after it, so one row's loads are in registers at a time, not four
// (16+ live vectors spilled to the stack otherwise).
import { QCHUNK, READ_EVERY, act_q, act_xd, gblock, gscale, q4byte, q4shift, read_ahead } from './quant'

// --- the weight formats --------------------------------------------------------------------------------
// Q is a marker type: i8 = q8, u8 = q4.

/** Bytes of one block of 32 weights: 32 (q8) or 16 (q4). */
// @ts-ignore: decorator
@inline function bbytes<Q>(): i32 {
  return isSigned<Q>() ? 32 : 16
}

/**
 * The block at p times x0..x3 (the token's block of xq, 4 x 16 bytes: elements 0..7, .., 24..31 as i16;
 * q4 in the relaxed build: bdot4_relaxed): i32x4 whose lanes add up to the block sum (q4,
 * plain: * 256, with the levels; fix() finishes it). m: i16x8.splat(15) (relaxed build: i8x16.splat(15)), passed
 * in (q4's masks are m, m << 4, m << 8: a constant would be rematerialized inside the loop on every use).
 */
// @ts-ignore: decorator
@inline function bdot<Q>(p: usize, x0: v128, x1: v128, x2: v128, x3: v128, m: v128): v128 {
  if (relaxed<Q>()) return bdot4_relaxed(p, x0, x1, m)
  if (isSigned<Q>()) { // q8: 256 * the even bytes (<< 8) and 256 * the odd ones (masked in place, m = 0xff00) of each 16-bit lane
    const r0 = v128.load(p), r1 = v128.load(p, 16)
    return i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(i16x8.shl(r0, 8), x0), i32x4.dot_i16x8_s(v128.and(r0, m), x1)),
      i32x4.add(i32x4.dot_i16x8_s(i16x8.shl(r1, 8), x2), i32x4.dot_i16x8_s(v128.and(r1, m), x3)))
  }
  // q4: the LEVELS (value + 8) masked in place — level * 1, * 16, * 256 for the nibbles of bits 0-3, 4-7,
  // 8-11 of each 16-bit lane, level for bits 12-15 (>> 12) — one 16-byte load a block; with quantize_act's
  // pre-scaled activations (q * 256, 16, 1, 256) every product is 256 * level * q (fix() divides by 256)
  const raw = v128.load(p)
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.and(raw, m), x0), i32x4.dot_i16x8_s(v128.and(raw, i16x8.shl(m, 4)), x1)),
    i32x4.add(i32x4.dot_i16x8_s(v128.and(raw, i16x8.shl(m, 8)), x2), i32x4.dot_i16x8_s(i16x8.shr_u(raw, 12), x3)))
}

/** Whether the kernel for Q uses relaxed SIMD: q4 in the relaxed build (see the top). */
// @ts-ignore: decorator
@inline function relaxed<Q>(): bool {
  return ASC_FEATURE_RELAXED_SIMD && !isSigned<Q>()
}

/**
 * bdot for q4 in the relaxed build: x0 = the token's q (int8) of the elements in the weight block's low
 * nibbles (0, 16, 1, 17, .., 7, 23), x1 = of its high nibbles (8, 24, .., 15, 31) — quant.ts's relaxed
 * layout; the levels (0..15, m = i8x16.splat(15)) are the second operand, in [0, 127] as the instruction asks.
 * The lanes add up to sum level * q (fix() subtracts 8 * xs).
 */
// @ts-ignore: decorator
@inline function bdot4_relaxed(p: usize, x0: v128, x1: v128, m: v128): v128 {
  const raw = v128.load(p)
  const lo = v128.and(raw, m), hi = v128.and(i16x8.shr_u(raw, 4), m) // the levels, one a byte
  // pairwise sums of level * q: each <= 2 * 15 * 127 in magnitude, the two halves' sum <= 7620: exact in i16
  return i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, lo), i16x8.relaxed_dot_i8x16_i7x16_s(x1, hi)))
}

/** The third and fourth 16 bytes of the token's block (x2, x3) at xp + off; the relaxed q4 kernel does not use them (x0 instead: no load). */
// @ts-ignore: decorator
@inline function xload<Q>(xp: usize, off: usize, x0: v128): v128 {
  if (relaxed<Q>()) return x0
  return v128.load(xp + off)
}

/** bdot with the token's block read from memory at xp (i16 [32]). */
// @ts-ignore: decorator
@inline function bdotm<Q>(p: usize, xp: usize, m: v128): v128 {
  const x0 = v128.load(xp)
  return bdot<Q>(p, x0, v128.load(xp, 16), xload<Q>(xp, 32, x0), xload<Q>(xp, 48, x0), m)
}

/** [sum a, sum b, sum c, sum d] of four i32x4 (exact). */
// @ts-ignore: decorator
@inline function reduce4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(v128.shuffle<i32>(a, b, 0, 4, 1, 5), v128.shuffle<i32>(a, b, 2, 6, 3, 7)) // a0+a2 b0+b2 a1+a3 b1+b3
  const cd = i32x4.add(v128.shuffle<i32>(c, d, 0, 4, 1, 5), v128.shuffle<i32>(c, d, 2, 6, 3, 7))
  return i32x4.add(v128.shuffle<i32>(ab, cd, 0, 1, 4, 5), v128.shuffle<i32>(ab, cd, 2, 3, 6, 7))
}

/** q4: isum / 256 - 8 * xs (the products carry * 256, the levels + 8; the division is exact; relaxed: no * 256); q8: isum. xsp: the token's block sum. */
// @ts-ignore: decorator
@inline function fix<Q>(isum: v128, xsp: usize): v128 {
  if (isSigned<Q>()) return i32x4.shr_s(isum, 8)
  if (relaxed<Q>()) return i32x4.sub(isum, i32x4.shl(v128.load32_splat(xsp), 3))
  return i32x4.sub(i32x4.shr_s(isum, 8), i32x4.shl(v128.load32_splat(xsp), 3))
}

/** acc + f32(isum) * (dw * dx), lane by lane. */
// @ts-ignore: decorator
@inline function fold(acc: v128, isum: v128, dw: v128, dx: v128): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(dw, dx)))
}

/** Rows n..n+3 of token t at op: the chunk's accumulators; after the last chunk (last) the result, + b[n..n+4). */
// @ts-ignore: decorator
@inline function store4(op: usize, b: usize, acc: v128, n: i32, last: bool): void {
  if (last && b) acc = f32x4.add(acc, v128.load(b + (<usize>n << 2)))
  v128.store(op, acc)
}

// --- tiles ----------------------------------------------------------------------------------------------

/**
 * The row group n..n+3 (n a multiple of 4, a full group), token t, blocks [c0, c1) (one K chunk): the
 * accumulators start at 0 for the first chunk, else at what the previous chunk left in out.
 */
function tile4x1<Q>(out: usize, xa: usize, w: usize, ws: usize, b: usize, n: i32, t: i32, T: i32, Kp: i32, N: i32, m: v128, c0: i32, c1: i32): void {
  const nb = Kp >> 5, BB = <usize>bbytes<Q>()
  let xdp = act_xd(xa, T, Kp) + ((<usize>t * <usize>nb + <usize>c0) << 2)
  let xsp = xdp + ((<usize>T * <usize>nb) << 2) // xs[t, b]
  let xp = xa + ((<usize>t * <usize>Kp + (<usize>c0 << 5)) << 1)
  let p = gblock(w, n, N, c0, nb, <i32>BB), sp = gscale(ws, n, N, c0, nb)
  const pend = p + (<usize>(c1 - c0) * BB << 2)
  const op = out + ((<usize>t * <usize>N + <usize>n) << 2)
  let acc = c0 == 0 ? f32x4.splat(0) : v128.load(op)
  const wend = w + <usize>N * <usize>nb * BB
  while (p < pend) {
    read_ahead(p, wend) // one read 2 pages ahead every READ_EVERY bytes of the stream (quant.ts)
    const pc = min(pend, p + READ_EVERY)
    for (; p < pc; p += BB << 2) {
      const x0 = v128.load(xp), x1 = v128.load(xp, 16), x2 = xload<Q>(xp, 32, x0), x3 = xload<Q>(xp, 48, x0)
      const d0 = bdot<Q>(p, x0, x1, x2, x3, m)
      v128.store(op, d0)
      const d1 = bdot<Q>(p + BB, x0, x1, x2, x3, m)
      v128.store(op, d1)
      const d2 = bdot<Q>(p + 2 * BB, x0, x1, x2, x3, m)
      v128.store(op, d2)
      const d3 = bdot<Q>(p + 3 * BB, x0, x1, x2, x3, m)
      const isum = fix<Q>(reduce4(d0, d1, d2, d3), xsp)
      acc = fold(acc, isum, v128.load(sp), v128.load32_splat(xdp))
      xp += 64; xdp += 4; xsp += 4; sp += 16
    }
  }
  store4(op, b, acc, n, c1 == nb)
}

/** The row group n..n+3 (a full group), tokens t and t+1, blocks [c0, c1) (the partial sums stored row by row, as in tile4x1). */
function tile4x2<Q>(out: usize, xa: usize, w: usize, ws: usize, b: usize, n: i32, t: i32, T: i32, Kp: i32, N: i32, m: v128, c0: i32, c1: i32): void {
  const nb = Kp >> 5, BB = <usize>bbytes<Q>()
  let xdp = act_xd(xa, T, Kp) + ((<usize>t * <usize>nb + <usize>c0) << 2)
  let xsp = xdp + ((<usize>T * <usize>nb) << 2) // xs[t, b]
  const rs = <usize>nb << 2 // the next token's xd / xs: + rs
  const ystep = <usize>Kp << 1
  let xp = xa + ((<usize>t * <usize>Kp + (<usize>c0 << 5)) << 1)
  let p = gblock(w, n, N, c0, nb, <i32>BB), sp = gscale(ws, n, N, c0, nb)
  const pend = p + (<usize>(c1 - c0) * BB << 2)
  const op = out + ((<usize>t * <usize>N + <usize>n) << 2), op1 = op + (<usize>N << 2) // the tile's outputs, tokens t and t+1
  let acc0 = f32x4.splat(0), acc1 = acc0
  if (c0 > 0) { acc0 = v128.load(op); acc1 = v128.load(op1) }
  for (; p < pend; p += BB << 2) {
    const yp = xp + ystep
    const x0 = v128.load(xp), x1 = v128.load(xp, 16), x2 = xload<Q>(xp, 32, x0), x3 = xload<Q>(xp, 48, x0)
    const y0 = v128.load(yp), y1 = v128.load(yp, 16), y2 = xload<Q>(yp, 32, y0), y3 = xload<Q>(yp, 48, y0)
    const a0 = bdot<Q>(p, x0, x1, x2, x3, m), e0 = bdot<Q>(p, y0, y1, y2, y3, m)
    v128.store(op, a0); v128.store(op1, e0)
    const a1 = bdot<Q>(p + BB, x0, x1, x2, x3, m), e1 = bdot<Q>(p + BB, y0, y1, y2, y3, m)
    v128.store(op, a1); v128.store(op1, e1)
    const a2 = bdot<Q>(p + 2 * BB, x0, x1, x2, x3, m), e2 = bdot<Q>(p + 2 * BB, y0, y1, y2, y3, m)
    v128.store(op, a2); v128.store(op1, e2)
    const a3 = bdot<Q>(p + 3 * BB, x0, x1, x2, x3, m), e3 = bdot<Q>(p + 3 * BB, y0, y1, y2, y3, m)
    const dw = v128.load(sp)
    acc0 = fold(acc0, fix<Q>(reduce4(a0, a1, a2, a3), xsp), dw, v128.load32_splat(xdp))
    acc1 = fold(acc1, fix<Q>(reduce4(e0, e1, e2, e3), xsp + rs), dw, v128.load32_splat(xdp + rs))
    xp += 64; xdp += 4; xsp += 4; sp += 16
  }
  store4(op, b, acc0, n, c1 == nb)
  store4(op1, b, acc1, n, c1 == nb)
}

/** Row n (any row), token t, every block: the scalar sequence with the SIMD block sums. */
function tile1x1<Q>(out: usize, xa: usize, w: usize, ws: usize, b: usize, n: i32, t: i32, T: i32, Kp: i32, N: i32, m: v128): void {
  const nb = Kp >> 5, BB = bbytes<Q>()
  let xdp = act_xd(xa, T, Kp) + ((<usize>t * <usize>nb) << 2)
  const xso = (<usize>T * <usize>nb) << 2
  let xp = xa + ((<usize>t * <usize>Kp) << 1)
  let s: f32 = 0
  for (let bi = 0; bi < nb; bi++) {
    const d = bdotm<Q>(gblock(w, n, N, bi, nb, BB), xp, m)
    let isum = (i32x4.extract_lane(d, 0) + i32x4.extract_lane(d, 1)) + (i32x4.extract_lane(d, 2) + i32x4.extract_lane(d, 3))
    if (isSigned<Q>()) isum >>= 8
    else isum = (relaxed<Q>() ? isum : isum >> 8) - (load<i32>(xdp + xso) << 3)
    s += <f32>isum * (load<f32>(gscale(ws, n, N, bi, nb)) * load<f32>(xdp))
    xp += 64; xdp += 4
  }
  if (b) s += load<f32>(b + (<usize>n << 2))
  store<f32>(out + ((<usize>t * <usize>N + <usize>n) << 2), s)
}

// @ts-ignore: decorator
@inline function matmul<Q>(n0: i32, n1: i32, out: usize, xa: usize, w: usize, ws: usize, b: usize, T: i32, K: i32, N: i32): void {
  const Kp = (K + 31) & ~31
  // the mask — q8: i16x8.splat(0xff00), q4: splat(15) — as a value the compiler does not know (Kp >= 32 when
  // there is any block): a constant argument is propagated into the tile (binaryen) and rematerialized
  // inside its loop (V8)
  const m = isSigned<Q>() ? i16x8.splat(<i16>((min(Kp, 32) * 8 - 1) << 8)) : ASC_FEATURE_RELAXED_SIMD ? i8x16.splat(<i8>min(Kp, 15)) : i16x8.splat(<i16>min(Kp, 15))
  const nb = Kp >> 5
  let n = n0
  for (; n < n1 && (n & 3) != 0; n++) for (let t = 0; t < T; t++) tile1x1<Q>(out, xa, w, ws, b, n, t, T, Kp, N, m) // rows before the first whole group
  const ne = n + ((n1 - n) & ~3) // the whole groups: [n, ne)
  for (let c0 = 0; c0 < nb; c0 += QCHUNK) {
    const c1 = min(nb, c0 + QCHUNK)
    for (let g = n; g < ne; g += 4) {
      let t = 0
      for (; t + 2 <= T; t += 2) tile4x2<Q>(out, xa, w, ws, b, g, t, T, Kp, N, m, c0, c1)
      if (t < T) tile4x1<Q>(out, xa, w, ws, b, g, t, T, Kp, N, m, c0, c1)
    }
  }
  for (n = ne; n < n1; n++) for (let t = 0; t < T; t++) tile1x1<Q>(out, xa, w, ws, b, n, t, T, Kp, N, m)
}

/** The contract written out one product at a time (q4: level - 8 per weight). */
// @ts-ignore: decorator
@inline function matmul_naive<Q>(n0: i32, n1: i32, out: usize, xa: usize, w: usize, ws: usize, b: usize, T: i32, K: i32, N: i32): void {
  const Kp = (K + 31) & ~31, nb = Kp >> 5
  const xd = act_xd(xa, T, Kp)
  for (let t = 0; t < T; t++) {
    for (let n = n0; n < n1; n++) {
      let s: f32 = 0
      for (let bi = 0; bi < nb; bi++) {
        const bp = gblock(w, n, N, bi, nb, bbytes<Q>())
        let isum: i32 = 0
        for (let j = 0; j < 32; j++) {
          const xv = act_q(xa, t, Kp, (bi << 5) + j, isSigned<Q>() ? 0 : 1) // q, in either build's layout
          const wv = isSigned<Q>() ? <i32>load<i8>(bp + <usize>j) : ((<i32>load<u8>(bp + <usize>q4byte(j)) >> q4shift(j)) & 15) - 8
          isum += wv * xv
        }
        s += <f32>isum * (load<f32>(gscale(ws, n, N, bi, nb)) * load<f32>(xd + ((<usize>t * <usize>nb + <usize>bi) << 2)))
      }
      if (b) s += load<f32>(b + (<usize>n << 2))
      store<f32>(out + ((<usize>t * <usize>N + <usize>n) << 2), s)
    }
  }
}

// --- exports ----------------------------------------------------------------------------------------
// out: f32 [T, N]; xa: quantize_act(x [T, K]); b: f32 [N] or 0. Rows n in [n0, n1).

/** w: i8 [N, Kp]; scales: f32 [N, Kp/32]. */
export function matmul_q8(n0: i32, n1: i32, out: usize, xa: usize, w: usize, scales: usize, b: usize, T: i32, K: i32, N: i32): void {
  matmul<i8>(n0, n1, out, xa, w, scales, b, T, K, N)
}
export function matmul_q8_naive(n0: i32, n1: i32, out: usize, xa: usize, w: usize, scales: usize, b: usize, T: i32, K: i32, N: i32): void {
  matmul_naive<i8>(n0, n1, out, xa, w, scales, b, T, K, N)
}
/** w: u8 [N, Kp/2] (levels, two per byte); scales: f32 [N, Kp/32]. */
export function matmul_q4(n0: i32, n1: i32, out: usize, xa: usize, w: usize, scales: usize, b: usize, T: i32, K: i32, N: i32): void {
  matmul<u8>(n0, n1, out, xa, w, scales, b, T, K, N)
}
export function matmul_q4_naive(n0: i32, n1: i32, out: usize, xa: usize, w: usize, scales: usize, b: usize, T: i32, K: i32, N: i32): void {
  matmul_naive<u8>(n0, n1, out, xa, w, scales, b, T, K, N)
}
