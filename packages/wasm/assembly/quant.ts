// quant.ts — weight storage dtypes: widening f16 / bf16 / q8 to f32 (in-register); the q8 and q4 weight
// formats (K chunks of row groups, quantize_q8 / quantize_q4, their row gathers embed_q8 / embed_q4); and
// the quantizer of a quantized matmul's activations (quantize_act).
//
// Kernels that read weights are generic over a MARKER type W that selects the storage dtype at
// compile time (nothing of W's own arithmetic is used):
//   f32 — f32 weights, rows in order (training reads and writes these)
//   u32 — f32 weights in row groups (below; inference); the bits are read as f32, u32 is only the tag
//   u16 — IEEE binary16 bits (f16)
//   i16 — bfloat16 bits (bf16; the bits are read unsigned, i16 is only the tag)
//   i8  — q8 in the ROW-MAJOR layout: int8 [rows, Kp] with Kp = ceil(K/32)*32 (zero padding) and one
//         f32 scale per block of 32 ([rows, Kp/32]); the weight is f32(q) * scale, rounded to f32.
//         (The i8 helpers below read that layout. The q8 weights the device stores, which quantize_q8
//         writes and matmul_q8 / embed_q8 read, are in another order: see "q8 / q4 layout".)
// Every widening is exact (f16/bf16 -> f32 loses nothing; q8 gives exactly fround(q * scale)).

// --- f16 -------------------------------------------------------------------------------------

/** 2^112: rebiases a half exponent (bias 15) placed in a float's exponent field (bias 127). */
const TWO_POW_112: f32 = 5.192296858534828e33

/** IEEE half bits (low 16 bits of h) -> f32. Exact, incl. subnormals, +-0, inf and NaN. */
// @ts-ignore: decorator
@inline export function f16_to_f32(h: u32): f32 {
  const m = (h & 0x7fff) << 13 // exponent + mantissa moved to float position (exponent still biased 15)
  let bits = reinterpret<u32>(reinterpret<f32>(m) * TWO_POW_112) // rebias; subnormal halves become normal floats
  if (m >= 0x0f800000) bits |= 0x7f800000 // half exponent 31: inf / NaN
  return reinterpret<f32>(bits | ((h & 0x8000) << 16))
}

/**
 * f16_nonfinite(p, n): 1 when one of the n halves at p is an inf or a NaN (exponent 31), else 0. The wasm device
 * checks each f16 weight once at load and passes matmul_f16 `finite` for the weights without any.
 */
export function f16_nonfinite(p: usize, n: i32): i32 {
  let i = 0, m = i16x8.splat(0)
  for (; i + 8 <= n; i += 8) m = det16<u16>(m, v128.load(p + (<usize>i << 1))) // the tiles' own inf / NaN watch
  if (det16_hit(m)) return 1
  for (; i < n; i++) if (((<u32>load<u16>(p + (<usize>i << 1)) << 1) & 0xffff) >= 0xf800) return 1
  return 0
}

/** Four half values (the low 16 bits of each i32 lane, zero-extended) -> f32x4, as f16_to_f32. */
// @ts-ignore: decorator
@inline export function f16x4_to_f32x4(h: v128): v128 {
  const m = i32x4.shr_u(i32x4.shl(h, 17), 4) // (h & 0x7fff) << 13
  let f = f32x4.mul(m, f32x4.splat(TWO_POW_112))
  f = v128.or(f, v128.and(i32x4.gt_s(m, i32x4.splat(0x0f7fffff)), i32x4.splat(0x7f800000)))
  return v128.or(f, i32x4.shl(i32x4.shr_u(h, 15), 31))
}

// --- generic weight access (W: the marker type above) ------------------------------------------

/** Elements per stored weight row: K, or Kp = ceil(K/32)*32 for q8. */
// @ts-ignore: decorator
@inline export function wstride<W>(K: i32): i32 {
  if (sizeof<W>() == 1) return (K + 31) & ~31
  return K
}

// 16-bit weights (f16, bf16) and grouped f32 weights (tag u32) [N, K] with K a multiple of 8 are stored in
// ROW GROUPS: rows 4g .. 4g+R-1 (R = 4, the last group min(4, N - 4g)) start at element 4g * K, and inside a
// group the rows take turns every 8 elements: elements k .. k+7 (k a multiple of 8) of the group's row r lie
// at element ((k / 8) * R + r) * 8 of the group. A 4-row decode tile therefore reads one sequential stream
// (single-thread cold bf16 mat-vec 16384 x 4096: 14.1-14.2 GB/s from 4 row streams, 19.7-19.9 GB/s in row
// groups, same run); 8 elements of a row stay one 16-byte load (f16 / bf16) or two (f32). The prefill panels
// (panel.ts) widen a group in its stored order. Other K, f32 (the training layout) and the row-major i8
// helpers keep rows in order. The host side writes this order (packages/wasm/src/core.ts groupRows);
// every reader goes through wrow / wstep / wat.

/** Whether weights of this dtype and row length are stored in row groups (above). */
// @ts-ignore: decorator
@inline export function wgroups<W>(K: i32): bool {
  return (sizeof<W>() == 2 || (sizeof<W>() == 4 && !isFloat<W>())) && (K & 7) == 0
}

/** Byte address of element 0 of weight row n (of N rows). */
// @ts-ignore: decorator
@inline export function wrow<W>(w: usize, n: i32, K: i32, N: i32): usize {
  if (wgroups<W>(K)) return w + <usize>(n & ~3) * <usize>K * sizeof<W>() + <usize>(n & 3) * (8 * sizeof<W>())
  return w + <usize>n * <usize>wstride<W>(K) * sizeof<W>()
}

/** Bytes from element k to element k + 8 of row n: its group's R * 8 elements in row groups, else 8 elements. */
// @ts-ignore: decorator
@inline export function wstep<W>(n: i32, K: i32, N: i32): usize {
  if (wgroups<W>(K)) return <usize>min(4, N - (n & ~3)) * (8 * sizeof<W>())
  return 8 * sizeof<W>()
}

/** Byte offset of element k from wrow, in a row whose wstep is rs (rows in order: rs = 8 elements, the same formula). */
// @ts-ignore: decorator
@inline export function wat<W>(k: i32, rs: usize): usize {
  if (sizeof<W>() == 1 || isFloat<W>()) return <usize>k * sizeof<W>()
  return <usize>(k >> 3) * rs + <usize>(k & 7) * sizeof<W>()
}

/** The end of the rows that 4-row tiles may take from [n0, n1): in row groups, not the last group when it is partial (its rows have another step). */
// @ts-ignore: decorator
@inline export function wtiles<W>(n1: i32, K: i32, N: i32): i32 {
  if (wgroups<W>(K)) return min(n1, N & ~3)
  return n1
}

// --- reading a weight stream a page ahead (decode tiles) ---------------------------------------------
//
// The decode tiles (gemm.ts tile_dec over row groups, gemm_q8.ts tile4x1) read their weights as one
// sequential stream. Every 4 KiB of that stream they also load one i32 two pages ahead (READ_AHEAD bytes),
// when it lies inside the weight. WASM has no prefetch instruction; this plain load stands in for one: the
// CPU's hardware prefetchers stop at 4 KiB page boundaries, and a load that reaches the next pages early
// starts their address translation (a two-level page walk in a virtual machine) and their first cache lines
// while the current page streams (decode x1.1-1.5 on the reference VM: docs/ARCHITECTURE.md, BENCHMARKS.md
// "Session 11"). Loading every cache line ahead instead (session 9) was slower: each such load holds the
// core's retirement up as long as a demand miss. The value loaded goes to a global that
// read_ahead_sink() returns, so no compiler can drop the load; results do not depend on it.

/** Bytes of weight stream between two reads ahead (one page), and how far ahead they read. */
export const READ_EVERY: i32 = 4096
export const READ_AHEAD: usize = 8192
let readAheadSink: i32 = 0

/** Loads the i32 at p + READ_AHEAD when it lies before end (the weight's end: never outside it). */
// @ts-ignore: decorator
@inline export function read_ahead(p: usize, end: usize): void {
  const a = p + READ_AHEAD
  if (a + 4 <= end) readAheadSink ^= load<i32>(a)
}

/** What the reads ahead loaded, XORed (exported only so that they stay in the code). */
export function read_ahead_sink(): i32 {
  return readAheadSink
}

/**
 * group_rows_f32(w, N, K, tmp, back): puts the f32 weight [N, K] at w, rows in order, into row groups in
 * place (back = 0), or row groups back into rows in order (back != 0; what training takes). tmp: 4 * K f32
 * of scratch. K not a multiple of 8: nothing to do (those rows stay in order).
 */
export function group_rows_f32(w: usize, N: i32, K: i32, tmp: usize, back: i32): void {
  if ((K & 7) != 0) return
  const steps = K >> 3
  for (let g = 0; g < N; g += 4) {
    const R = min(4, N - g), base = w + ((<usize>g * <usize>K) << 2), bytes = (<usize>R * <usize>K) << 2
    memory.copy(tmp, base, bytes)
    for (let r = 0; r < R; r++) {
      for (let s = 0; s < steps; s++) {
        const rowAt = (<usize>r * <usize>K + (<usize>s << 3)) << 2 // element s*8 of row r, rows in order
        const grpAt = (<usize>s * <usize>R + <usize>r) << 5 // the same 8 elements in the group
        const src = tmp + (back ? grpAt : rowAt), dst = base + (back ? rowAt : grpAt)
        v128.store(dst, v128.load(src))
        v128.store(dst, v128.load(src, 16), 16)
      }
    }
  }
}

/** Byte address of the q8 scales of row n (unused for other dtypes). */
// @ts-ignore: decorator
@inline export function srow<W>(scales: usize, n: i32, K: i32): usize {
  if (sizeof<W>() == 1) return scales + ((<usize>n * <usize>(wstride<W>(K) >> 5)) << 2)
  return 0
}

/** Elements per q8 block: 32 for q8; for the other dtypes the whole run [0, K4) is one block. */
// @ts-ignore: decorator
@inline export function wblock<W>(K4: i32): i32 {
  if (sizeof<W>() == 1) return 32
  return K4
}

/** The q8 scale of the block holding element k, splat (zero for other dtypes: unused). */
// @ts-ignore: decorator
@inline export function wscale4<W>(sp: usize, k: i32): v128 {
  if (sizeof<W>() == 1) return v128.load32_splat(sp + ((<usize>k >> 5) << 2))
  return f32x4.splat(0)
}

/** w[k .. k+4) of the row at wp, widened to f32x4 (sc: wscale4 of the block, for q8). */
// @ts-ignore: decorator
@inline export function wload4<W>(wp: usize, k: i32, rs: usize, sc: v128): v128 {
  if (sizeof<W>() == 4) return v128.load(wp + wat<W>(k, rs))
  if (sizeof<W>() == 2) {
    const h = v128.load16x4_u(wp + wat<W>(k, rs))
    if (isSigned<W>()) return i32x4.shl(h, 16) // bf16: the high half of an f32
    return f16x4_to_f32x4(h)
  }
  const q = i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(v128.load32_zero(wp + <usize>k)))
  return f32x4.mul(f32x4.convert_i32x4_s(q), sc)
}

/** w[k] of the row at wp (sp: the row's q8 scales), widened to f32. Same value as wload4's lane. */
// @ts-ignore: decorator
@inline export function wload1<W>(wp: usize, k: i32, rs: usize, sp: usize): f32 {
  if (sizeof<W>() == 4) return load<f32>(wp + wat<W>(k, rs))
  if (sizeof<W>() == 2) {
    const h = <u32>load<u16>(wp + wat<W>(k, rs))
    if (isSigned<W>()) return reinterpret<f32>(h << 16)
    return f16_to_f32(h)
  }
  return <f32>load<i8>(wp + <usize>k) * load<f32>(sp + ((<usize>k >> 5) << 2))
}

// --- f32 -> f16 / bf16 at load (store_half) ---------------------------------------------------------
//
// A weight given in f32 and stored as f16 / bf16 is rounded here, a few rows at a time, straight into the
// row groups above: the same bits as the host's f32ToF16Array / f32ToBf16Array (packages/core io/dtype.ts),
// which this replaces on the wasm device's load path (about 9 ns a value in JS; BENCHMARKS.md "Session 12").
// Both round to nearest, ties to even; a NaN stays a quiet NaN with its sign and top payload bits; f16: a
// value beyond its range becomes +-inf, below half its smallest subnormal +-0.

/** bf16 bits of the f32 with bits `b` (as f32BitsToBf16Bits). */
// @ts-ignore: decorator
@inline function f32_bf16(b: u32): u32 {
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16 // < 2^32 for every non-NaN b
}

/** value >> shift rounded to nearest, ties to even (1 <= shift <= 24). */
// @ts-ignore: decorator
@inline function round_shift(value: u32, shift: u32): u32 {
  const kept = value >>> shift, rest = value & ((<u32>1 << shift) - 1), half = <u32>1 << (shift - 1)
  return rest > half || (rest == half && (kept & 1) == 1) ? kept + 1 : kept
}

/** f16 bits of the f32 with bits `b` (as f32BitsToF16Bits). */
function f32_f16(b: u32): u32 {
  const sign = (b >>> 16) & 0x8000, exp = <i32>((b >>> 23) & 0xff), mant = b & 0x7fffff
  if (exp == 0xff) return mant == 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13)
  const he = exp - 112 // the exponent field as an f16 (bias 15)
  if (he >= 0x1f) return sign | 0x7c00
  if (he <= 0) { // subnormal or zero: the significand (with its leading 1) shifted to units of 2^-24
    if (he < -10) return sign
    return sign | round_shift(mant | 0x800000, <u32>(14 - he))
  }
  return sign | round_shift((<u32>he << 23) | mant, 13) // a carry out of the mantissa bumps the exponent
}

/** f32_bf16 on four lanes: i32 lanes holding the bf16 bits. */
// @ts-ignore: decorator
@inline function bf16x4(v: v128): v128 {
  const r = i32x4.shr_u(i32x4.add(i32x4.add(v, i32x4.splat(0x7fff)), v128.and(i32x4.shr_u(v, 16), i32x4.splat(1))), 16)
  const nan = i32x4.gt_s(v128.and(v, i32x4.splat(0x7fffffff)), i32x4.splat(0x7f800000))
  return v128.bitselect(v128.or(i32x4.shr_u(v, 16), i32x4.splat(0x40)), r, nan)
}

/**
 * f32_f16 on four lanes (i32 lanes holding the f16 bits), without branches: the normal range rounds as bf16x4
 * does (13 bits dropped, the exponent rebased by adding (15 - 127) << 23); below f16's smallest normal the f32
 * adder rounds: |x| + 0.5 keeps round-half-even(|x| * 2^24) in the low mantissa bits (0.5's ulp is 2^-24, the
 * f16 subnormals' unit); from 65536 up inf, NaN quiet with its top payload bits; then the sign.
 */
// @ts-ignore: decorator
@inline function f16x4(v: v128): v128 {
  const a = v128.and(v, i32x4.splat(0x7fffffff))
  const normal = i32x4.shr_u(i32x4.add(i32x4.add(a, i32x4.splat(0xc8000fff)), v128.and(i32x4.shr_u(a, 13), i32x4.splat(1))), 13)
  const sub = i32x4.sub(f32x4.add(a, f32x4.splat(0.5)), i32x4.splat(0x3f000000))
  let r = v128.bitselect(sub, normal, i32x4.lt_s(a, i32x4.splat(0x38800000)))
  r = v128.bitselect(i32x4.splat(0x7c00), r, i32x4.ge_s(a, i32x4.splat(0x47800000)))
  r = v128.bitselect(v128.or(i32x4.splat(0x7e00), i32x4.shr_u(v128.and(a, i32x4.splat(0x7fffff)), 13)), r, i32x4.gt_s(a, i32x4.splat(0x7f800000)))
  return v128.or(r, v128.and(i32x4.shr_u(v, 16), i32x4.splat(0x8000)))
}

/** Eight f32 at p as f16 (f16 != 0) or bf16 bits, i16x8 (every lane <= 0xffff: the narrowing is exact). */
// @ts-ignore: decorator
@inline function half8(p: usize, f16: i32): v128 {
  const a = v128.load(p), b = v128.load(p, 16)
  return f16 ? i16x8.narrow_i32x4_u(f16x4(a), f16x4(b)) : i16x8.narrow_i32x4_u(bf16x4(a), bf16x4(b))
}

/**
 * store_half: rows [r0, r1) of a weight f32 [N, K] (src: those rows, [r1 - r0, K]) -> their f16 (f16 != 0) or
 * bf16 bits in the weight at dst [N, K], in the kernels' row groups (wrow / wat), 8 values at a time in SIMD
 * (a row's last K % 8 one at a time).
 */
export function store_half(dst: usize, src: usize, N: i32, K: i32, r0: i32, r1: i32, f16: i32): void {
  for (let n = r0; n < r1; n++) {
    const row = src + ((<usize>(n - r0) * <usize>K) << 2), wr = wrow<u16>(dst, n, K, N), rs = wstep<u16>(n, K, N)
    let k = 0
    for (; k + 8 <= K; k += 8) v128.store(wr + wat<u16>(k, rs), half8(row + (<usize>k << 2), f16))
    for (; k < K; k++) {
      const b = load<u32>(row + (<usize>k << 2))
      store<u16>(wr + wat<u16>(k, rs), <u16>(f16 ? f32_f16(b) : f32_bf16(b)))
    }
  }
}

/** store_half one value at a time (the reference for the SIMD paths). */
export function store_half_naive(dst: usize, src: usize, N: i32, K: i32, r0: i32, r1: i32, f16: i32): void {
  for (let n = r0; n < r1; n++) {
    const row = src + ((<usize>(n - r0) * <usize>K) << 2), wr = wrow<u16>(dst, n, K, N), rs = wstep<u16>(n, K, N)
    for (let k = 0; k < K; k++) {
      const b = load<u32>(row + (<usize>k << 2))
      store<u16>(wr + wat<u16>(k, rs), <u16>(f16 ? f32_f16(b) : f32_bf16(b)))
    }
  }
}

// --- fast widening for the register-tiled matmul loops --------------------------------------------
// These give the same values as wload4 / f16x4_to_f32x4 for every finite input. The f16 variant
// ("fast") does not handle inf / NaN: loops that use it also track det16 over the raw halves and
// recompute their tile with the exact path when one was seen (so the results are always exact).

/** f16 -> f32 for four halves placed in the HIGH 16 bits of each i32 lane (h << 16), finite only. */
// @ts-ignore: decorator
@inline export function f16hi_fast(h: v128): v128 {
  // (h << 16) >>s 3 puts sign at bit 31 and exponent|mantissa at bits 27..13; clearing bits 30..28
  // leaves a float whose exponent is the half exponent (bias 127): * 2^112 rebiases it (exact,
  // subnormal halves included).
  return f32x4.mul(v128.and(i32x4.shr_s(h, 3), i32x4.splat(0x8fffffff)), f32x4.splat(TWO_POW_112))
}

/** Raw data of 4 weights at p: f32 x4; u16/i16: 4 halves zero-extended to i32 lanes; i8: 4 bytes (low lane bytes). */
// @ts-ignore: decorator
@inline export function raw4<W>(p: usize): v128 {
  if (sizeof<W>() == 4) return v128.load(p)
  if (sizeof<W>() == 2) return v128.load16x4_u(p)
  return v128.load32_zero(p)
}

/** raw4 -> f32x4 (q8: f32(q) unscaled; sc unused). f16: finite only (see det16). */
// @ts-ignore: decorator
@inline export function wid4<W>(r: v128, sc: v128): v128 {
  if (sizeof<W>() == 4) return r
  if (sizeof<W>() == 2) {
    if (isSigned<W>()) return i32x4.shl(r, 16)
    return f16hi_fast(i32x4.shl(r, 16))
  }
  return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(r))) // q8: f32(q), unscaled (see fold)
}

/** w[k .. k+4) of the row at wp as f32x4 for the matmul loops: wload4, except q8 gives f32(q) UNSCALED. */
// @ts-ignore: decorator
@inline export function wq4<W>(wp: usize, k: i32, rs: usize): v128 {
  if (sizeof<W>() == 1) return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(v128.load32_zero(wp + <usize>k))))
  return wload4<W>(wp, k, rs, f32x4.splat(0))
}

/**
 * End of a weight block in the matmul loops: p is the block's partial sum (from zero). q8: the
 * block scale is applied once, acc + p * scale; other dtypes have one block ([0, K4)), so acc is
 * still zero and the result is p itself.
 */
// @ts-ignore: decorator
@inline export function fold<W>(acc: v128, p: v128, sc: v128): v128 {
  if (sizeof<W>() == 1) return f32x4.add(acc, f32x4.mul(p, sc))
  return p
}

/** f16 only: m = max_u(m, raw << 1) over i16 lanes; a lane >= 0xf800 afterwards means an inf / NaN was seen. */
// @ts-ignore: decorator
@inline export function det16<W>(m: v128, r: v128): v128 {
  if (sizeof<W>() == 2 && !isSigned<W>()) return i16x8.max_u(m, i16x8.shl(r, 1))
  return m
}

/** True when det16's accumulator saw an inf / NaN half. */
// @ts-ignore: decorator
@inline export function det16_hit(m: v128): bool {
  return v128.any_true(i16x8.ge_u(m, i16x8.splat(<i16>0xf800)))
}

/** Raw data of 8 weights at p (decode step): f32: the first 4; u16/i16: 8 halves; i8: 8 bytes as i16x8. */
// @ts-ignore: decorator
@inline export function raw8a<W>(p: usize): v128 {
  if (sizeof<W>() == 4) return v128.load(p)
  if (sizeof<W>() == 2) return v128.load(p)
  return v128.load8x8_s(p)
}
/** f32 only: weights 4..7 of the step (other dtypes hold all 8 in raw8a). */
// @ts-ignore: decorator
@inline export function raw8b<W>(p: usize): v128 {
  if (sizeof<W>() == 4) return v128.load(p, 16)
  return f32x4.splat(0)
}
/** Weights 0..3 of a decode step as f32x4. */
// @ts-ignore: decorator
@inline export function lo8<W>(a: v128, sc: v128): v128 {
  if (sizeof<W>() == 4) return a
  if (sizeof<W>() == 2) {
    const h = i16x8.shuffle(f32x4.splat(0), a, 0, 8, 1, 9, 2, 10, 3, 11) // h << 16
    if (isSigned<W>()) return h
    return f16hi_fast(h)
  }
  return f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(a)), sc)
}
/** Weights 4..7 of a decode step as f32x4. */
// @ts-ignore: decorator
@inline export function hi8<W>(a: v128, b: v128, sc: v128): v128 {
  if (sizeof<W>() == 4) return b
  if (sizeof<W>() == 2) {
    const h = i16x8.shuffle(f32x4.splat(0), a, 4, 12, 5, 13, 6, 14, 7, 15)
    if (isSigned<W>()) return h
    return f16hi_fast(h)
  }
  return f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(a)), sc)
}

// --- q8 / q4 layout: K chunks of row groups ----------------------------------------------------------
//
// q8 and q4 weights [N, K] (nb = Kp / 32 blocks of 32 a row; BB = 32 bytes a block for q8, 16 for q4):
//   - K chunks: the blocks are cut into chunks of QCHUNK = 64 blocks (2048 weights; the last chunk has the
//     rest). Chunk c holds blocks [64c, 64c + cb) of EVERY row and starts at N * 64c * BB (the chunks
//     before it are full); a weight with K <= 2048 is one chunk.
//   - row groups: inside a chunk, rows 4g .. 4g+3 form group g (the last group holds the N mod 4 rows
//     left), starting at 4g * cb * BB; inside a group of R rows the blocks are interleaved: block b of the
//     chunk (0 .. cb-1) of the group's row r lies at (b * R + r) * BB.
// The scales (f32, one a block) follow the same order with 4 bytes a block. The sizes are those of the
// row-major [N, Kp] (q8) / [N, Kp/2] (q4) and [N, nb]; only the order differs. A thread's 4-row matmul
// tiles over its rows thus read ONE sequential stream per chunk (4 BB bytes a block and one 16-byte load
// of the 4 scales; the hardware prefetcher keeps a single stream ahead — 4 separate row streams decode at
// about 60 % of the speed), and a chunk of activations (64 blocks: 4 KB of i16) stays in L1 while every
// group of the chunk passes (with whole rows, K = 8192 or 16384 activations are evicted by the weight
// stream: a third slower).

/** Blocks of 32 weights a K chunk (see above). */
export const QCHUNK: i32 = 64

/** Byte address of block bi of row n in a q8 / q4 weight of N rows (BB bytes a block, nb blocks a row); BB = 4: its scale. */
// @ts-ignore: decorator
@inline export function gblock(w: usize, n: i32, N: i32, bi: i32, nb: i32, BB: i32): usize {
  const c0 = bi & ~(QCHUNK - 1), cb = min(QCHUNK, nb - c0) // the chunk's first block and its length
  const g0 = n & ~3
  return w + (<usize>N * <usize>c0 + <usize>g0 * <usize>cb + <usize>((bi - c0) * min(4, N - g0) + (n & 3))) * <usize>BB
}

/** Byte address of the scale of block bi of row n in a q8 / q4 weight of N rows. */
// @ts-ignore: decorator
@inline export function gscale(scales: usize, n: i32, N: i32, bi: i32, nb: i32): usize {
  return gblock(scales, n, N, bi, nb, 4)
}

// --- q8 quantizer --------------------------------------------------------------------------------

/** Round half away from zero (exact: v - trunc(v) is exact in f32). */
// @ts-ignore: decorator
@inline function round_half_away(v: f32): f32 {
  const t = trunc<f32>(v)
  const d = v - t
  if (d >= 0.5) return t + 1
  if (d <= -0.5) return t - 1
  return t
}

/**
 * quantize_q8: rows [r0, r1) of a weight f32 [N, K] (src: those rows, [r1 - r0, K]) -> wq i8 [N, Kp]
 * (Kp = ceil(K/32)*32, padding zeros) and scales f32 [N, Kp/32], in the layout above (so a weight can be
 * quantized a few rows at a time). Per block of 32: scale = max|w| / 127 (f32),
 * q = round_half_away(w / scale) clamped to [-127, 127]; a block whose scale is 0 or not finite stores q = 0.
 */
export function quantize_q8(wq: usize, scales: usize, src: usize, N: i32, K: i32, r0: i32, r1: i32): void {
  const Kp = (K + 31) & ~31
  const nb = Kp >> 5
  const half = f32x4.splat(0.5), mhalf = f32x4.splat(-0.5), one = f32x4.splat(1)
  const lo = f32x4.splat(-127), hi = f32x4.splat(127)
  for (let n = r0; n < r1; n++) {
    const row = src + ((<usize>(n - r0) * <usize>K) << 2)
    for (let bi = 0; bi < nb; bi++) {
      const k0 = bi << 5
      const k1 = min(k0 + 32, K)
      const sp = gscale(scales, n, N, bi, nb)
      const qp = gblock(wq, n, N, bi, nb, 32)
      if (k1 - k0 == 32) {
        // full block, SIMD: the same f32 operations as the scalar path, lane by lane (max is
        // order-independent on the non-NaN |w|; w / scale is the IEEE division; the rounding below
        // is round_half_away written with masks), so the results are identical.
        const p = row + (<usize>k0 << 2)
        const w0 = v128.load(p), w1 = v128.load(p, 16), w2 = v128.load(p, 32), w3 = v128.load(p, 48)
        const w4 = v128.load(p, 64), w5 = v128.load(p, 80), w6 = v128.load(p, 96), w7 = v128.load(p, 112)
        const amax = amax32(w0, w1, w2, w3, w4, w5, w6, w7)
        const scale: f32 = amax / 127
        store<f32>(sp, scale)
        if (scale == 0) { v128.store(qp, i32x4.splat(0)); v128.store(qp, i32x4.splat(0), 16); continue }
        const sc = f32x4.splat(scale)
        const a = i16x8.narrow_i32x4_s(q8r(w0, sc, half, mhalf, one, lo, hi), q8r(w1, sc, half, mhalf, one, lo, hi))
        const b = i16x8.narrow_i32x4_s(q8r(w2, sc, half, mhalf, one, lo, hi), q8r(w3, sc, half, mhalf, one, lo, hi))
        const c = i16x8.narrow_i32x4_s(q8r(w4, sc, half, mhalf, one, lo, hi), q8r(w5, sc, half, mhalf, one, lo, hi))
        const d = i16x8.narrow_i32x4_s(q8r(w6, sc, half, mhalf, one, lo, hi), q8r(w7, sc, half, mhalf, one, lo, hi))
        v128.store(qp, i8x16.narrow_i16x8_s(a, b))
        v128.store(qp, i8x16.narrow_i16x8_s(c, d), 16)
        continue
      }
      let amax: f32 = 0
      for (let k = k0; k < k1; k++) amax = max(amax, abs<f32>(load<f32>(row + (<usize>k << 2))))
      const scale: f32 = amax / 127
      store<f32>(sp, scale)
      for (let k = k0; k < k0 + 32; k++) {
        let q: f32 = 0
        if (k < k1 && scale != 0) {
          q = round_half_away(load<f32>(row + (<usize>k << 2)) / scale)
          q = min(max(q, -127), 127)
        }
        store<i8>(qp + <usize>(k - k0), <i8>(<i32>q))
      }
    }
  }
}

/** max |w| over a 32-value block held in 8 vectors (and 0): the block maximum both quantizers take. */
// @ts-ignore: decorator
@inline function amax32(w0: v128, w1: v128, w2: v128, w3: v128, w4: v128, w5: v128, w6: v128, w7: v128): f32 {
  const m = f32x4.max(f32x4.max(f32x4.max(f32x4.abs(w0), f32x4.abs(w1)), f32x4.max(f32x4.abs(w2), f32x4.abs(w3))),
    f32x4.max(f32x4.max(f32x4.abs(w4), f32x4.abs(w5)), f32x4.max(f32x4.abs(w6), f32x4.abs(w7))))
  return max(max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3))), <f32>0)
}

/** Four lanes of the quantizer: clamp(round_half_away(w / sc)) as i32x4. */
// @ts-ignore: decorator
@inline function q8r(w: v128, sc: v128, half: v128, mhalf: v128, one: v128, lo: v128, hi: v128): v128 {
  const v = f32x4.div(w, sc)
  const t = f32x4.trunc(v)
  const d = f32x4.sub(v, t)
  let r = f32x4.add(t, v128.and(f32x4.ge(d, half), one))
  r = f32x4.sub(r, v128.and(f32x4.le(d, mhalf), one))
  r = f32x4.min(f32x4.max(r, lo), hi)
  return i32x4.trunc_sat_f32x4_s(r)
}

// --- q8 activations (the other operand of matmul_q8 / matmul_q4) -----------------------------------
//
// quantize_act quantizes the f32 activations x [T, K] once per matmul call, before the call is split
// over threads (the caller runs it; every thread then reads the same block), into ONE buffer xa:
//   xq  i16 [T, Kp]  at xa                       the int8 values, kept widened to i16 (zero padding)
//   xd  f32 [T, nb]  at xa + 2 T Kp              the block scales
//   xs  i32 [T, nb]  at xa + 2 T Kp + 4 T nb     the block sums sum_k xq (q4's offset-8 correction)
// (Kp = ceil(K/32)*32, nb = Kp/32; act_bytes(T, K) = T * (2 Kp + 8 nb).) Per block of 32 of a row —
// the weight quantizer's definition, quantize_q8 above: amax = max |x| over the block's elements (NaN
// propagates), d = amax / 127 (f32), q = clamp(round_half_away(x / d), -127, 127) with the IEEE f32
// division; a block whose d is 0 or not finite (an inf or NaN in x) stores q = 0 (and its d, so the
// matmul's d_w * d_x makes those outputs NaN).
// q4 = 0 (for matmul_q8) keeps each block's values in the order matmul_q8 reads its weights: of each 16
// elements, the 8 even ones, then the 8 odd ones (act_pos8) — the even bytes of a 16-byte weight load, shifted
// into the high half of their i16 lanes (<< 8), and the odd bytes, masked in place (& 0xff00), meet them in
// i32x4.dot_i16x8_s without a sign-extending load (the sums come out * 256, divided back exactly).
// q4 != 0 (for matmul_q4) stores xq PRE-SCALED: q * 256, q * 16, q, q * 256 for the elements 0..7, 8..15,
// 16..23, 24..31 of each block (|q| * 256 <= 32512 fits i16), so that matmul_q4 can use the nibbles
// masked in place (level * 16 and level * 256 for the middle two) and get 256 * the block's sum; xs stays
// the plain sum of q.
//
//
// The relaxed-SIMD build (ASC_FEATURE_RELAXED_SIMD, build/refgpt-relaxed.wasm) keeps the same buffer and
// sizes, and the same bytes for q4 = 0; with q4 = 1 a block's 64 bytes of xq hold its values q as int8 —
// the first operand of matmul_q4's i16x8.relaxed_dot_i8x16_i7x16_s (gemm_q8.ts) — in the order of the
// weight block's nibbles: bytes 0..15 elements 0, 16, 1, 17, .., 7, 23 (the low nibbles of its 16 bytes),
// bytes 16..31 elements 8, 24, .., 15, 31 (the high nibbles), bytes 32..63 zero. xd and xs are unchanged.
// act_q reads an element back in either build (the _naive kernels use it).

/** Byte offset of xd in an activation buffer of T rows; xs follows at + 4 T nb. */
// @ts-ignore: decorator
@inline export function act_xd(xa: usize, T: i32, Kp: i32): usize {
  return xa + ((<usize>T * <usize>Kp) << 1)
}

/** The factor quantize_act(q4 = 1) scales element j (0..31) of a block by: 256, 16, 1, 256 for its four parts of 8. */
// @ts-ignore: decorator
@inline export function q4xscale(j: i32): i32 {
  return j < 8 || j >= 24 ? 256 : j < 16 ? 16 : 1
}

/** Byte offset, inside a block's 64 bytes of xq in the relaxed build with q4 = 1, of element j (0..31): the nibble order. */
// @ts-ignore: decorator
@inline function act_pos4(j: i32): i32 {
  return q4byte(j) + (q4shift(j) << 2) // the weight byte holding element j's level, + 16 for a high nibble
}

/** Stores q (in [-127, 127]) as element j of the block of xq at qp (the layout of this build; q4: see above). */
// @ts-ignore: decorator
@inline function act_put(qp: usize, j: i32, q: i32, q4: i32): void {
  if (ASC_FEATURE_RELAXED_SIMD && q4) store<i8>(qp + <usize>act_pos4(j), <i8>q)
  else if (q4) store<i16>(qp + (<usize>j << 1), <i16>(q * q4xscale(j)))
  else store<i16>(qp + (<usize>act_pos8(j) << 1), <i16>q)
}

/** Index (in i16 units), inside a block's 32 values of xq with q4 = 0, of element j (0..31): each half's 8 even elements, then its 8 odd ones. */
// @ts-ignore: decorator
@inline function act_pos8(j: i32): i32 {
  return (j & 16) + ((j & 1) << 3) + ((j & 15) >> 1)
}

/** The activation value q (in [-127, 127]) of element k of row t in a buffer quantize_act(xa, x, T, K, q4) wrote, in either build. */
// @ts-ignore: decorator
@inline export function act_q(xa: usize, t: i32, Kp: i32, k: i32, q4: i32): i32 {
  const qp = xa + ((<usize>t * <usize>Kp + <usize>(k & ~31)) << 1), j = k & 31 // the block's 64 bytes
  if (ASC_FEATURE_RELAXED_SIMD && q4) return <i32>load<i8>(qp + <usize>act_pos4(j))
  if (!q4) return <i32>load<i16>(qp + (<usize>act_pos8(j) << 1))
  return <i32>load<i16>(qp + (<usize>j << 1)) / q4xscale(j)
}

/** Scalar path of one block [k0, k0+32) of row `row` (k1 = min(k0+32, K)): stores q (and zeros past k1), d at sp, sum q at ssum. */
// @ts-ignore: decorator
@inline function act_block_scalar(row: usize, qp: usize, k0: i32, k1: i32, sp: usize, ssum: usize, q4: i32): void {
  let amax: f32 = 0
  for (let k = k0; k < k1; k++) amax = max(amax, abs<f32>(load<f32>(row + (<usize>k << 2))))
  const d: f32 = amax / 127
  store<f32>(sp, d)
  const ok = d > 0 && d < Infinity
  let sum = 0
  if (ASC_FEATURE_RELAXED_SIMD && q4) memory.fill(qp, 0, 64) // (bytes 32..63 stay zero)
  for (let k = k0; k < k0 + 32; k++) {
    let q: i32 = 0
    if (ok && k < k1) {
      let r = round_half_away(load<f32>(row + (<usize>k << 2)) / d)
      r = min(max(r, -127), 127)
      q = <i32>r
    }
    act_put(qp, k - k0, q, q4)
    sum += q
  }
  store<i32>(ssum, sum)
}

/** x f32 [T, K] -> the activation buffer xa (layout above; q4: pre-scaled for matmul_q4). SIMD over full blocks; same bytes as quantize_act_naive. */
export function quantize_act(xa: usize, x: usize, T: i32, K: i32, q4: i32): void {
  const Kp = (K + 31) & ~31, nb = Kp >> 5
  const xd = act_xd(xa, T, Kp), xs = xd + ((<usize>T * <usize>nb) << 2)
  const half = f32x4.splat(0.5), mhalf = f32x4.splat(-0.5), one = f32x4.splat(1)
  const lo = f32x4.splat(-127), hi = f32x4.splat(127), z = i32x4.splat(0)
  for (let t = 0; t < T; t++) {
    const row = x + ((<usize>t * <usize>K) << 2)
    const qrow = xa + ((<usize>t * <usize>Kp) << 1)
    for (let bi = 0; bi < nb; bi++) {
      const k0 = bi << 5, k1 = min(k0 + 32, K)
      const at = (<usize>t * <usize>nb + <usize>bi) << 2
      const qp = qrow + (<usize>k0 << 1)
      if (k1 - k0 < 32) { act_block_scalar(row, qp, k0, k1, xd + at, xs + at, q4); continue }
      const p = row + (<usize>k0 << 2)
      const w0 = v128.load(p), w1 = v128.load(p, 16), w2 = v128.load(p, 32), w3 = v128.load(p, 48)
      const w4 = v128.load(p, 64), w5 = v128.load(p, 80), w6 = v128.load(p, 96), w7 = v128.load(p, 112)
      const amax = amax32(w0, w1, w2, w3, w4, w5, w6, w7)
      const d: f32 = amax / 127
      store<f32>(xd + at, d)
      if (!(d > 0 && d < Infinity)) {
        v128.store(qp, z); v128.store(qp, z, 16); v128.store(qp, z, 32); v128.store(qp, z, 48)
        store<i32>(xs + at, 0)
        continue
      }
      const sc = f32x4.splat(d)
      const r0 = q8r(w0, sc, half, mhalf, one, lo, hi), r1 = q8r(w1, sc, half, mhalf, one, lo, hi)
      const r2 = q8r(w2, sc, half, mhalf, one, lo, hi), r3 = q8r(w3, sc, half, mhalf, one, lo, hi)
      const r4 = q8r(w4, sc, half, mhalf, one, lo, hi), r5 = q8r(w5, sc, half, mhalf, one, lo, hi)
      const r6 = q8r(w6, sc, half, mhalf, one, lo, hi), r7 = q8r(w7, sc, half, mhalf, one, lo, hi)
      const v0 = i16x8.narrow_i32x4_s(r0, r1), v1 = i16x8.narrow_i32x4_s(r2, r3)
      const v2 = i16x8.narrow_i32x4_s(r4, r5), v3 = i16x8.narrow_i32x4_s(r6, r7)
      if (ASC_FEATURE_RELAXED_SIMD && q4) act_store4_relaxed(qp, v0, v1, v2, v3)
      else if (q4) {
        v128.store(qp, i16x8.shl(v0, 8)); v128.store(qp, i16x8.shl(v1, 4), 16)
        v128.store(qp, v2, 32); v128.store(qp, i16x8.shl(v3, 8), 48)
      } else { // each half's even elements, then its odd ones (act_pos8)
        v128.store(qp, i16x8.shuffle(v0, v1, 0, 2, 4, 6, 8, 10, 12, 14)); v128.store(qp, i16x8.shuffle(v0, v1, 1, 3, 5, 7, 9, 11, 13, 15), 16)
        v128.store(qp, i16x8.shuffle(v2, v3, 0, 2, 4, 6, 8, 10, 12, 14), 32); v128.store(qp, i16x8.shuffle(v2, v3, 1, 3, 5, 7, 9, 11, 13, 15), 48)
      }
      const s = i32x4.add(i32x4.add(i32x4.add(r0, r1), i32x4.add(r2, r3)), i32x4.add(i32x4.add(r4, r5), i32x4.add(r6, r7)))
      store<i32>(xs + at, (i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1)) + (i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3)))
    }
  }
}

/** Relaxed build, q4 = 1: a block's values (v0..v3: elements 0..7, .., 24..31 as i16x8, in [-127, 127]) at qp, as act_put. */
// @ts-ignore: decorator
@inline function act_store4_relaxed(qp: usize, v0: v128, v1: v128, v2: v128, v3: v128): void {
  // elements 0..7 | 16..23 and 8..15 | 24..31 as int8, then interleaved: 0, 16, 1, 17, .. (the nibble order)
  const a = i8x16.narrow_i16x8_s(v0, v2), b = i8x16.narrow_i16x8_s(v1, v3), z = i32x4.splat(0)
  v128.store(qp, i8x16.shuffle(a, a, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15))
  v128.store(qp, i8x16.shuffle(b, b, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15), 16)
  v128.store(qp, z, 32); v128.store(qp, z, 48)
}

/** quantize_act, one element at a time (the definition above, written out). */
export function quantize_act_naive(xa: usize, x: usize, T: i32, K: i32, q4: i32): void {
  const Kp = (K + 31) & ~31, nb = Kp >> 5
  const xd = act_xd(xa, T, Kp), xs = xd + ((<usize>T * <usize>nb) << 2)
  for (let t = 0; t < T; t++) {
    const row = x + ((<usize>t * <usize>K) << 2)
    for (let bi = 0; bi < nb; bi++) {
      const k0 = bi << 5
      const at = (<usize>t * <usize>nb + <usize>bi) << 2
      act_block_scalar(row, xa + ((<usize>t * <usize>Kp + <usize>k0) << 1), k0, min(k0 + 32, K), xd + at, xs + at, q4)
    }
  }
}

// --- q4 weights ----------------------------------------------------------------------------------
//
// q4 (ggml's q4_0 block, with an f32 scale): w4 u8 [N, Kp/2] and scales f32 [N, Kp/32]. Per block of 32
// of a row: mx = the first element (in k order) of largest magnitude (0 for an all-zero block),
// d = mx / -8 (f32; 0 for an all-zero block), level = clamp(round_half_away(w / d) + 8, 0, 15) (8 when
// d is 0, and for the zero padding; a NaN quotient gives 0); the weight is (level - 8) * d.
// Nibble layout: a block is 16 bytes = eight 16-bit little-endian lanes; lane j (j = 0..7) holds the
// levels of elements j, 8 + j, 16 + j, 24 + j in its bits 0-3, 4-7, 8-11, 12-15 (byte 2j = element j |
// element 8+j << 4, byte 2j+1 = element 16+j | element 24+j << 4). So one 16-byte load and
// `& 15`, `>> 4 & 15`, `>> 8 & 15`, `>> 12` on i16 lanes give elements 0..7, 8..15, 16..23, 24..31 as
// i16x8 (q4lanes), in the activations' natural order.

/** Nibble p (0..3) of every 16-bit lane of a q4 block: elements 8p .. 8p+7 as i16x8 (levels 0..15). */
// @ts-ignore: decorator
@inline export function q4lanes(raw: v128, p: i32): v128 {
  if (p == 0) return v128.and(raw, i16x8.splat(15))
  if (p == 3) return i16x8.shr_u(raw, 12)
  return v128.and(i16x8.shr_u(raw, <i32>(p << 2)), i16x8.splat(15))
}

/** Byte offset, inside its 16-byte block, of element k's level (k in 0..31), and the nibble's shift (0 or 4). */
// @ts-ignore: decorator
@inline export function q4byte(k: i32): i32 {
  return ((k & 7) << 1) + (k >> 4)
}
// @ts-ignore: decorator
@inline export function q4shift(k: i32): i32 {
  return ((k >> 3) & 1) << 2
}

/** clamp(round_half_away(v) + 8, 0, 15) as an i32 (NaN -> 0). */
// @ts-ignore: decorator
@inline function q4level(v: f32): i32 {
  const r = round_half_away(v) + 8
  return r >= 15 ? 15 : r > 0 ? <i32>r : 0
}

/** quantize_q4: rows [r0, r1) of a weight f32 [N, K] (src: those rows) -> w4 u8 [N, Kp/2] and scales f32 [N, Kp/32] (see above), in the q8 / q4 layout. */
export function quantize_q4(w4: usize, scales: usize, src: usize, N: i32, K: i32, r0: i32, r1: i32): void {
  const Kp = (K + 31) & ~31, nb = Kp >> 5
  const half = f32x4.splat(0.5), mhalf = f32x4.splat(-0.5), one = f32x4.splat(1), eight = f32x4.splat(8)
  const lo = f32x4.splat(0), hi = f32x4.splat(15)
  for (let n = r0; n < r1; n++) {
    const row = src + ((<usize>(n - r0) * <usize>K) << 2)
    for (let bi = 0; bi < nb; bi++) {
      const k0 = bi << 5, k1 = min(k0 + 32, K)
      const sp = gscale(scales, n, N, bi, nb)
      const qp = gblock(w4, n, N, bi, nb, 16)
      // the largest magnitude (SIMD for full blocks: max is order-free on non-NaN values)
      let amax: f32 = 0
      if (k1 - k0 == 32) {
        const p = row + (<usize>k0 << 2)
        const m = f32x4.max(
          f32x4.max(f32x4.max(f32x4.abs(v128.load(p)), f32x4.abs(v128.load(p, 16))), f32x4.max(f32x4.abs(v128.load(p, 32)), f32x4.abs(v128.load(p, 48)))),
          f32x4.max(f32x4.max(f32x4.abs(v128.load(p, 64)), f32x4.abs(v128.load(p, 80))), f32x4.max(f32x4.abs(v128.load(p, 96)), f32x4.abs(v128.load(p, 112)))))
        amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)))
      } else amax = NaN
      let mx: f32 = 0
      if (amax == amax && amax < Infinity) {
        // finite: the first element of that magnitude
        if (amax > 0) for (let k = k0; k < k1; k++) {
          const v = load<f32>(row + (<usize>k << 2))
          if (abs<f32>(v) == amax) { mx = v; break }
        }
      } else {
        // partial block, inf or NaN: the definition itself (a NaN never compares larger)
        amax = 0
        for (let k = k0; k < k1; k++) {
          const v = load<f32>(row + (<usize>k << 2))
          if (amax < abs<f32>(v)) { amax = abs<f32>(v); mx = v }
        }
      }
      const d: f32 = mx == 0 ? 0 : mx / -8
      store<f32>(sp, d)
      if (d == 0) { v128.store(qp, i8x16.splat(<i8>0x88)); continue }
      if (k1 - k0 == 32) {
        const p = row + (<usize>k0 << 2)
        const sc = f32x4.splat(d)
        const a = i16x8.narrow_i32x4_s(
          q4r(v128.load(p), sc, half, mhalf, one, eight, lo, hi), q4r(v128.load(p, 16), sc, half, mhalf, one, eight, lo, hi))
        const b = i16x8.narrow_i32x4_s(
          q4r(v128.load(p, 32), sc, half, mhalf, one, eight, lo, hi), q4r(v128.load(p, 48), sc, half, mhalf, one, eight, lo, hi))
        const c = i16x8.narrow_i32x4_s(
          q4r(v128.load(p, 64), sc, half, mhalf, one, eight, lo, hi), q4r(v128.load(p, 80), sc, half, mhalf, one, eight, lo, hi))
        const e = i16x8.narrow_i32x4_s(
          q4r(v128.load(p, 96), sc, half, mhalf, one, eight, lo, hi), q4r(v128.load(p, 112), sc, half, mhalf, one, eight, lo, hi))
        // a, b, c, e: elements 0..7, 8..15, 16..23, 24..31 (levels < 16) -> the four nibbles of each lane
        v128.store(qp, v128.or(v128.or(a, i16x8.shl(b, 4)), v128.or(i16x8.shl(c, 8), i16x8.shl(e, 12))))
        continue
      }
      memory.fill(qp, 0, 16)
      for (let j = 0; j < 32; j++) {
        const k = k0 + j
        const level = k < k1 ? q4level(load<f32>(row + (<usize>k << 2)) / d) : 8
        const bp = qp + <usize>q4byte(j)
        store<u8>(bp, load<u8>(bp) | <u8>(level << q4shift(j)))
      }
    }
  }
}

/** Four lanes of the q4 quantizer: clamp(round_half_away(w / sc) + 8, 0, 15) as i32x4 (as q4level). */
// @ts-ignore: decorator
@inline function q4r(w: v128, sc: v128, half: v128, mhalf: v128, one: v128, eight: v128, lo: v128, hi: v128): v128 {
  const v = f32x4.div(w, sc)
  const t = f32x4.trunc(v)
  const d = f32x4.sub(v, t)
  let r = f32x4.add(t, v128.and(f32x4.ge(d, half), one))
  r = f32x4.sub(r, v128.and(f32x4.le(d, mhalf), one))
  r = f32x4.min(f32x4.max(f32x4.add(r, eight), lo), hi)
  return i32x4.trunc_sat_f32x4_s(r)
}

/** The q4 weight w[n, k] of a table of `rows` rows (the q8 / q4 layout): f32(level - 8) * d. */
// @ts-ignore: decorator
@inline function q4value(w4: usize, scales: usize, n: i32, rows: i32, nb: i32, k: i32): f32 {
  const byte = <i32>load<u8>(gblock(w4, n, rows, k >> 5, nb, 16) + <usize>q4byte(k & 31))
  const level = (byte >> q4shift(k & 31)) & 15
  return <f32>(level - 8) * load<f32>(gscale(scales, n, rows, k >> 5, nb))
}

/** The q8 weight w[n, k] of a table of `rows` rows (the q8 / q4 layout): f32(q) * d. */
// @ts-ignore: decorator
@inline function q8value(wq: usize, scales: usize, n: i32, rows: i32, nb: i32, k: i32): f32 {
  return <f32>load<i8>(gblock(wq, n, rows, k >> 5, nb, 32) + <usize>(k & 31)) * load<f32>(gscale(scales, n, rows, k >> 5, nb))
}

/** Four values f32(q) * sc stored at o + off, or added to what is there. */
// @ts-ignore: decorator
@inline function e4(o: usize, off: usize, q: v128, sc: v128, accumulate: i32): void {
  const v = f32x4.mul(f32x4.convert_i32x4_s(q), sc)
  const p = o + off
  v128.store(p, accumulate ? f32x4.add(v128.load(p), v) : v)
}

/** Eight i16 values (one i16x8) times sc, stored or added at o + off and o + off + 16. */
// @ts-ignore: decorator
@inline function e8(o: usize, off: usize, q: v128, sc: v128, accumulate: i32): void {
  e4(o, off, i32x4.extend_low_i16x8_s(q), sc, accumulate)
  e4(o, off + 16, i32x4.extend_high_i16x8_s(q), sc, accumulate)
}

/**
 * embed_q8 / embed_q4: out[t, :] (+)= row ids[t] of a table of `rows` rows in the q8 / q4 layout (q8: values f32(q) * d;
 * q4: f32(level - 8) * d); a negative id is a zero row (stored as zeros, nothing added), as embed_f32.
 */
// @ts-ignore: decorator
@inline function embed_rg<Q>(out: usize, table: usize, scales: usize, ids: usize, T: i32, C: i32, accumulate: i32, rows: i32): void {
  const Cp = (C + 31) & ~31, nb = Cp >> 5, BB = isSigned<Q>() ? 32 : 16
  const C32 = C & ~31
  const m8 = i16x8.splat(8)
  for (let t = 0; t < T; t++) {
    const id = load<i32>(ids + (<usize>t << 2))
    const op = out + ((<usize>t * <usize>C) << 2)
    if (id < 0) {
      if (!accumulate) memory.fill(op, 0, <usize>C << 2)
      continue
    }
    for (let c = 0; c < C32; c += 32) {
      const bp = gblock(table, id, rows, c >> 5, nb, BB)
      const sc = v128.load32_splat(gscale(scales, id, rows, c >> 5, nb))
      const o = op + (<usize>c << 2)
      if (isSigned<Q>()) {
        e8(o, 0, v128.load8x8_s(bp), sc, accumulate); e8(o, 32, v128.load8x8_s(bp, 8), sc, accumulate)
        e8(o, 64, v128.load8x8_s(bp, 16), sc, accumulate); e8(o, 96, v128.load8x8_s(bp, 24), sc, accumulate)
      } else {
        const raw = v128.load(bp) // elements 0..7, 8..15, 16..23, 24..31 as i16 values (level - 8)
        e8(o, 0, i16x8.sub(q4lanes(raw, 0), m8), sc, accumulate); e8(o, 32, i16x8.sub(q4lanes(raw, 1), m8), sc, accumulate)
        e8(o, 64, i16x8.sub(q4lanes(raw, 2), m8), sc, accumulate); e8(o, 96, i16x8.sub(q4lanes(raw, 3), m8), sc, accumulate)
      }
    }
    for (let c = C32; c < C; c++) {
      const o = op + (<usize>c << 2)
      const v = isSigned<Q>() ? q8value(table, scales, id, rows, nb, c) : q4value(table, scales, id, rows, nb, c)
      store<f32>(o, accumulate ? load<f32>(o) + v : v)
    }
  }
}

/** embed_q8 / embed_q4 one element at a time. */
// @ts-ignore: decorator
@inline function embed_rg_naive<Q>(out: usize, table: usize, scales: usize, ids: usize, T: i32, C: i32, accumulate: i32, rows: i32): void {
  const nb = ((C + 31) & ~31) >> 5
  for (let t = 0; t < T; t++) {
    const id = load<i32>(ids + (<usize>t << 2))
    const op = out + ((<usize>t * <usize>C) << 2)
    for (let c = 0; c < C; c++) {
      const o = op + (<usize>c << 2)
      if (id < 0) { // a zero row: stored as zeros, nothing added
        if (!accumulate) store<f32>(o, 0)
        continue
      }
      const v = isSigned<Q>() ? q8value(table, scales, id, rows, nb, c) : q4value(table, scales, id, rows, nb, c)
      store<f32>(o, accumulate ? load<f32>(o) + v : v)
    }
  }
}

/** table: q8 i8 [rows, Cp] + scales f32 [rows, Cp/32], in the q8 / q4 layout. */
export function embed_q8(out: usize, table: usize, scales: usize, ids: usize, T: i32, C: i32, accumulate: i32, rows: i32): void {
  embed_rg<i8>(out, table, scales, ids, T, C, accumulate, rows)
}
export function embed_q8_naive(out: usize, table: usize, scales: usize, ids: usize, T: i32, C: i32, accumulate: i32, rows: i32): void {
  embed_rg_naive<i8>(out, table, scales, ids, T, C, accumulate, rows)
}
/** table: q4 u8 [rows, Cp/2] + scales f32 [rows, Cp/32], in the q8 / q4 layout. */
export function embed_q4(out: usize, table: usize, scales: usize, ids: usize, T: i32, C: i32, accumulate: i32, rows: i32): void {
  embed_rg<u8>(out, table, scales, ids, T, C, accumulate, rows)
}
export function embed_q4_naive(out: usize, table: usize, scales: usize, ids: usize, T: i32, C: i32, accumulate: i32, rows: i32): void {
  embed_rg_naive<u8>(out, table, scales, ids, T, C, accumulate, rows)
}
