// quant.ts — weight storage dtypes: widening f16 / bf16 / q8 to f32 (in-register), and the q8 quantizer.
//
// Kernels that read weights are generic over a MARKER type W that selects the storage dtype at
// compile time (nothing of W's own arithmetic is used):
//   f32 — f32 weights
//   u16 — IEEE binary16 bits (f16)
//   i16 — bfloat16 bits (bf16; the bits are read unsigned, i16 is only the tag)
//   i8  — q8: int8 [rows, Kp] with Kp = ceil(K/32)*32 (zero padding) and one f32 scale per block
//         of 32 ([rows, Kp/32]); the weight is f32(q) * scale, rounded to f32 (the dequantized value).
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

/** Byte address of weight row n. */
// @ts-ignore: decorator
@inline export function wrow<W>(w: usize, n: i32, K: i32): usize {
  return w + <usize>n * <usize>wstride<W>(K) * sizeof<W>()
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
@inline export function wload4<W>(wp: usize, k: i32, sc: v128): v128 {
  if (sizeof<W>() == 4) return v128.load(wp + (<usize>k << 2))
  if (sizeof<W>() == 2) {
    const h = v128.load16x4_u(wp + (<usize>k << 1))
    if (isSigned<W>()) return i32x4.shl(h, 16) // bf16: the high half of an f32
    return f16x4_to_f32x4(h)
  }
  const q = i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(v128.load32_zero(wp + <usize>k)))
  return f32x4.mul(f32x4.convert_i32x4_s(q), sc)
}

/** w[k] of the row at wp (sp: the row's q8 scales), widened to f32. Same value as wload4's lane. */
// @ts-ignore: decorator
@inline export function wload1<W>(wp: usize, k: i32, sp: usize): f32 {
  if (sizeof<W>() == 4) return load<f32>(wp + (<usize>k << 2))
  if (sizeof<W>() == 2) {
    const h = <u32>load<u16>(wp + (<usize>k << 1))
    if (isSigned<W>()) return reinterpret<f32>(h << 16)
    return f16_to_f32(h)
  }
  return <f32>load<i8>(wp + <usize>k) * load<f32>(sp + ((<usize>k >> 5) << 2))
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
@inline export function wq4<W>(wp: usize, k: i32): v128 {
  if (sizeof<W>() == 1) return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(v128.load32_zero(wp + <usize>k))))
  return wload4<W>(wp, k, f32x4.splat(0))
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
 * quantize_q8: src f32 [N, K] -> wq i8 [N, Kp] (Kp = ceil(K/32)*32, padding zeros) and
 * scales f32 [N, Kp/32]. Per block of 32: scale = max|w| / 127 (f32), q = round_half_away(w / scale)
 * clamped to [-127, 127]; a block with scale 0 stores q = 0.
 */
export function quantize_q8(wq: usize, scales: usize, src: usize, N: i32, K: i32): void {
  const Kp = (K + 31) & ~31
  const nb = Kp >> 5
  const half = f32x4.splat(0.5), mhalf = f32x4.splat(-0.5), one = f32x4.splat(1)
  const lo = f32x4.splat(-127), hi = f32x4.splat(127)
  for (let n = 0; n < N; n++) {
    const row = src + ((<usize>n * <usize>K) << 2)
    const qrow = wq + <usize>n * <usize>Kp
    for (let bi = 0; bi < nb; bi++) {
      const k0 = bi << 5
      const k1 = min(k0 + 32, K)
      const sp = scales + ((<usize>n * <usize>nb + <usize>bi) << 2)
      if (k1 - k0 == 32) {
        // full block, SIMD: the same f32 operations as the scalar path, lane by lane (max is
        // order-independent on the non-NaN |w|; w / scale is the IEEE division; the rounding below
        // is round_half_away written with masks), so the results are identical.
        const p = row + (<usize>k0 << 2)
        const w0 = v128.load(p), w1 = v128.load(p, 16), w2 = v128.load(p, 32), w3 = v128.load(p, 48)
        const w4 = v128.load(p, 64), w5 = v128.load(p, 80), w6 = v128.load(p, 96), w7 = v128.load(p, 112)
        let m = f32x4.max(f32x4.max(f32x4.max(f32x4.abs(w0), f32x4.abs(w1)), f32x4.max(f32x4.abs(w2), f32x4.abs(w3))),
          f32x4.max(f32x4.max(f32x4.abs(w4), f32x4.abs(w5)), f32x4.max(f32x4.abs(w6), f32x4.abs(w7))))
        const amax: f32 = max(max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3))), 0)
        const scale: f32 = amax / 127
        store<f32>(sp, scale)
        const qp = qrow + <usize>k0
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
        store<i8>(qrow + <usize>k, <i8>(<i32>q))
      }
    }
  }
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
