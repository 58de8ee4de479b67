// softmax.ts — exp (scalar and f32x4, the same algorithm) and an in-place softmax.
//
// exp: Cody-Waite range reduction x = n ln2 + r (|r| <= ln2/2) and Cephes' degree-7 polynomial for
// e^r; 2^n is applied as 2^(n>>1) * 2^(n - (n>>1)) so that results down to the subnormal range and
// the overflow to +inf come out right. x is clamped to [-104, 89] first (pmax/pmin, which keep a
// NaN x): exp(-inf) = 0, exp(+inf) = inf, NaN stays NaN. n = round-to-nearest-even(x log2 e) comes
// from the 1.5 * 2^23 trick (the sum's low mantissa bits hold n), cheaper in SIMD than
// nearest + trunc_sat. Error about 1 ulp (checked against Math.exp in the tests). The scalar and
// the SIMD version run the same operations, so they agree bitwise.

const LOG2E: f32 = 1.44269504088896341
const LN2_HI: f32 = 0.693359375
const LN2_LO: f32 = -2.12194440e-4
const P0: f32 = 1.9875691500e-4
const P1: f32 = 1.3981999507e-3
const P2: f32 = 8.3334519073e-3
const P3: f32 = 4.1665795894e-2
const P4: f32 = 1.6666665459e-1
const P5: f32 = 5.0000001201e-1
const EXP_LO: f32 = -104
const EXP_HI: f32 = 89
const ROUND_MAGIC: f32 = 12582912 // 1.5 * 2^23
const ROUND_MAGIC_BITS: i32 = 0x4b400000

/** e^x, f32. */
// @ts-ignore: decorator
@inline export function expf1(x: f32): f32 {
  x = x < EXP_LO ? EXP_LO : x // as f32x4.pmax(x, LO): a NaN x stays
  x = EXP_HI < x ? EXP_HI : x
  const tm = x * LOG2E + ROUND_MAGIC
  const nf = tm - ROUND_MAGIC
  const r = (x - nf * LN2_HI) - nf * LN2_LO
  let p = P0 * r + P1
  p = p * r + P2
  p = p * r + P3
  p = p * r + P4
  p = p * r + P5
  const y = (p * (r * r) + r) + 1
  const n = reinterpret<i32>(tm) - ROUND_MAGIC_BITS
  const n1 = n >> 1
  return y * reinterpret<f32>((n1 + 127) << 23) * reinterpret<f32>((n - n1 + 127) << 23)
}

/** e^x lane-wise, the same operations as expf1. */
// @ts-ignore: decorator
@inline export function expf4(x: v128): v128 {
  x = f32x4.pmin(f32x4.pmax(x, f32x4.splat(EXP_LO)), f32x4.splat(EXP_HI))
  const tm = f32x4.add(f32x4.mul(x, f32x4.splat(LOG2E)), f32x4.splat(ROUND_MAGIC))
  const nf = f32x4.sub(tm, f32x4.splat(ROUND_MAGIC))
  const r = f32x4.sub(f32x4.sub(x, f32x4.mul(nf, f32x4.splat(LN2_HI))), f32x4.mul(nf, f32x4.splat(LN2_LO)))
  let p = f32x4.add(f32x4.mul(f32x4.splat(P0), r), f32x4.splat(P1))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P2))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P3))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P4))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P5))
  const y = f32x4.add(f32x4.add(f32x4.mul(p, f32x4.mul(r, r)), r), f32x4.splat(1))
  const n = i32x4.sub(tm, i32x4.splat(ROUND_MAGIC_BITS))
  const n1 = i32x4.shr_s(n, 1)
  const bias = i32x4.splat(127)
  const e1 = i32x4.shl(i32x4.add(n1, bias), 23)
  const e2 = i32x4.shl(i32x4.add(i32x4.sub(n, n1), bias), 23)
  return f32x4.mul(f32x4.mul(y, e1), e2)
}

/** max over x[0, n) (n >= 1), f32x4 lanes then scalar. */
// @ts-ignore: decorator
@inline export function rowmax(x: usize, n: i32): f32 {
  let m = <f32>-Infinity
  let i = 0
  if (n >= 4) {
    let mv = v128.load(x) // pmax (one instruction) drops NaNs here, but a NaN still poisons the sum
    for (i = 4; i + 4 <= n; i += 4) mv = f32x4.pmax(mv, v128.load(x + (<usize>i << 2)))
    m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)))
  }
  for (; i < n; i++) m = max(m, load<f32>(x + (<usize>i << 2)))
  return m
}

/** x[i] = exp(x[i] - m) for i < n; returns the sum (f32x4 lanes, then (l0+l1)+(l2+l3), then the tail). */
// @ts-ignore: decorator
@inline export function expsub_sum(x: usize, n: i32, m: f32): f32 {
  const mv = f32x4.splat(m)
  let sv = f32x4.splat(0)
  let i = 0
  for (; i + 4 <= n; i += 4) {
    const p = x + (<usize>i << 2)
    const e = expf4(f32x4.sub(v128.load(p), mv))
    v128.store(p, e)
    sv = f32x4.add(sv, e)
  }
  let s = (f32x4.extract_lane(sv, 0) + f32x4.extract_lane(sv, 1)) + (f32x4.extract_lane(sv, 2) + f32x4.extract_lane(sv, 3))
  for (; i < n; i++) {
    const p = x + (<usize>i << 2)
    const e = expf1(load<f32>(p) - m)
    store<f32>(p, e)
    s += e
  }
  return s
}

/** x[i] = x[i] / d for i < n. */
// @ts-ignore: decorator
@inline export function divide(x: usize, n: i32, d: f32): void {
  const dv = f32x4.splat(d)
  let i = 0
  for (; i + 4 <= n; i += 4) {
    const p = x + (<usize>i << 2)
    v128.store(p, f32x4.div(v128.load(p), dv))
  }
  for (; i < n; i++) {
    const p = x + (<usize>i << 2)
    store<f32>(p, load<f32>(p) / d)
  }
}

/** softmax in place over x: f32 [n]: x[i] = exp(x[i] - max) / sum. */
export function softmax(x: usize, n: i32): void {
  if (n <= 0) return
  const m = rowmax(x, n)
  const s = expsub_sum(x, n, m)
  divide(x, n, s)
}

/** softmax, scalar loops (same exp). */
export function softmax_naive(x: usize, n: i32): void {
  if (n <= 0) return
  let m = <f32>-Infinity
  for (let i = 0; i < n; i++) m = max(m, load<f32>(x + (<usize>i << 2)))
  let s: f32 = 0
  for (let i = 0; i < n; i++) {
    const p = x + (<usize>i << 2)
    const e = expf1(load<f32>(p) - m)
    store<f32>(p, e)
    s += e
  }
  for (let i = 0; i < n; i++) {
    const p = x + (<usize>i << 2)
    store<f32>(p, load<f32>(p) / s)
  }
}
