// act.ts — element-wise activations and add. out may alias the input(s). n: element count.
//
// All gelu / silu flavours are written as  x * sigmoid(a)  (sign(a) = sign(x)), evaluated as
//   s = e / (1 + e) with e = exp(-|a|)   (so exp never overflows and s <= 1/2)
//   out = x < 0 ? x * s : x - x * s      (no cancellation: the small term is computed directly)
//   gelu_tanh  (HF gelu_new): 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
//   silu:                     x * sigmoid(x)
//   quick_gelu:               x * sigmoid(1.702 x)
//   gelu_erf   (HF gelu):     0.5 x (1 + erf(x / sqrt 2)); with r = erfc(|x| / sqrt 2) (Numerical
//                             Recipes' Chebyshev erfc, the same formula as the js device) s = r / 2.
// +inf maps to +inf (x - inf * 0 would be NaN). Scalar (_naive) and SIMD versions run the same operations.
import { expf1, expf4 } from './softmax'

export const GT_A: f32 = 1.5957691216057308 // 2 sqrt(2/pi)
export const GT_B: f32 = 0.07135481627159153 // 2 sqrt(2/pi) * 0.044715
export const QG_A: f32 = 1.702
export const INV_SQRT2: f32 = 0.7071067811865476
const E0: f32 = -1.26551223
const E1: f32 = 1.00002368
const E2: f32 = 0.37409196
const E3: f32 = 0.09678418
const E4: f32 = -0.18628806
const E5: f32 = 0.27886807
const E6: f32 = -1.13520398
const E7: f32 = 1.48851587
const E8: f32 = -0.82215223
const E9: f32 = 0.17087277

/** erfc(z) for z >= 0 (Numerical Recipes' Chebyshev fit; gelu_erf and its backward share it). */
// @ts-ignore: decorator
@inline export function erfc1(z: f32): f32 {
  const t: f32 = 1 / (1 + 0.5 * z)
  let p = E8 + t * E9
  p = E7 + t * p
  p = E6 + t * p
  p = E5 + t * p
  p = E4 + t * p
  p = E3 + t * p
  p = E2 + t * p
  p = E1 + t * p
  return t * expf1((-(z * z) + E0) + t * p)
}

/** erfc1 lane-wise, the same operations. */
// @ts-ignore: decorator
@inline export function erfc4(z: v128): v128 {
  const t = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), z)))
  let p = f32x4.add(f32x4.splat(E8), f32x4.mul(t, f32x4.splat(E9)))
  p = f32x4.add(f32x4.splat(E7), f32x4.mul(t, p))
  p = f32x4.add(f32x4.splat(E6), f32x4.mul(t, p))
  p = f32x4.add(f32x4.splat(E5), f32x4.mul(t, p))
  p = f32x4.add(f32x4.splat(E4), f32x4.mul(t, p))
  p = f32x4.add(f32x4.splat(E3), f32x4.mul(t, p))
  p = f32x4.add(f32x4.splat(E2), f32x4.mul(t, p))
  p = f32x4.add(f32x4.splat(E1), f32x4.mul(t, p))
  const arg = f32x4.add(f32x4.add(f32x4.neg(f32x4.mul(z, z)), f32x4.splat(E0)), f32x4.mul(t, p))
  return f32x4.mul(t, expf4(arg))
}

// --- scalar ------------------------------------------------------------------------------------

/** x < 0 ? x * s : x - x * s, with +inf kept. */
// @ts-ignore: decorator
@inline function xsel1(x: f32, s: f32): f32 {
  const xs = x * s
  if (x < 0) return xs
  if (x == Infinity) return x
  return x - xs
}

/** sigmoid(-|a|). */
// @ts-ignore: decorator
@inline function signeg1(a: f32): f32 {
  const e = expf1(-abs<f32>(a))
  return e / (1 + e)
}

// @ts-ignore: decorator
@inline function gelu_tanh1(x: f32): f32 { return xsel1(x, signeg1(x * (GT_A + GT_B * (x * x)))) }
// @ts-ignore: decorator
@inline function silu1(x: f32): f32 { return xsel1(x, signeg1(x)) }
// @ts-ignore: decorator
@inline function quick_gelu1(x: f32): f32 { return xsel1(x, signeg1(QG_A * x)) }
// @ts-ignore: decorator
@inline function gelu_erf1(x: f32): f32 {
  return xsel1(x, 0.5 * erfc1(abs<f32>(x) * INV_SQRT2))
}
// @ts-ignore: decorator
@inline function relu1(x: f32): f32 { return x > 0 ? x : 0 }

// --- f32x4 ---------------------------------------------------------------------------------------

// @ts-ignore: decorator
@inline function xsel4(x: v128, s: v128): v128 {
  const xs = f32x4.mul(x, s)
  const pos = v128.bitselect(x, f32x4.sub(x, xs), f32x4.eq(x, f32x4.splat(Infinity)))
  return v128.bitselect(xs, pos, f32x4.lt(x, f32x4.splat(0)))
}

// @ts-ignore: decorator
@inline function signeg4(a: v128): v128 {
  const e = expf4(f32x4.neg(f32x4.abs(a)))
  return f32x4.div(e, f32x4.add(f32x4.splat(1), e))
}

// @ts-ignore: decorator
@inline function gelu_tanh4(x: v128): v128 {
  const a = f32x4.mul(x, f32x4.add(f32x4.splat(GT_A), f32x4.mul(f32x4.splat(GT_B), f32x4.mul(x, x))))
  return xsel4(x, signeg4(a))
}
// @ts-ignore: decorator
@inline function silu4(x: v128): v128 { return xsel4(x, signeg4(x)) }
// @ts-ignore: decorator
@inline function quick_gelu4(x: v128): v128 { return xsel4(x, signeg4(f32x4.mul(f32x4.splat(QG_A), x))) }
// @ts-ignore: decorator
@inline function gelu_erf4(x: v128): v128 {
  return xsel4(x, f32x4.mul(f32x4.splat(0.5), erfc4(f32x4.mul(f32x4.abs(x), f32x4.splat(INV_SQRT2)))))
}
// @ts-ignore: decorator
@inline function relu4(x: v128): v128 { return f32x4.pmax(f32x4.splat(0), x) } // 0 < x ? x : 0 (NaN, -0 -> 0)

// --- exports: out[i] = f(x[i]) for i < n; f32x4 body, scalar tail ------------------------------------

export function gelu_tanh(out: usize, x: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(out + o, gelu_tanh4(v128.load(x + o))) }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, gelu_tanh1(load<f32>(x + o))) }
}
export function gelu_erf(out: usize, x: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(out + o, gelu_erf4(v128.load(x + o))) }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, gelu_erf1(load<f32>(x + o))) }
}
export function relu(out: usize, x: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(out + o, relu4(v128.load(x + o))) }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, relu1(load<f32>(x + o))) }
}
export function silu(out: usize, x: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(out + o, silu4(v128.load(x + o))) }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, silu1(load<f32>(x + o))) }
}
export function quick_gelu(out: usize, x: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(out + o, quick_gelu4(v128.load(x + o))) }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, quick_gelu1(load<f32>(x + o))) }
}
/** out[i] = a[i] + b[i]; out may alias a or b. */
export function add(out: usize, a: usize, b: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o))) }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o)) }
}

export function gelu_tanh_naive(out: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, gelu_tanh1(load<f32>(x + o))) }
}
export function gelu_erf_naive(out: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, gelu_erf1(load<f32>(x + o))) }
}
export function relu_naive(out: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, relu1(load<f32>(x + o))) }
}
export function silu_naive(out: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, silu1(load<f32>(x + o))) }
}
export function quick_gelu_naive(out: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, quick_gelu1(load<f32>(x + o))) }
}
export function add_naive(out: usize, a: usize, b: usize, n: i32): void {
  for (let i = 0; i < n; i++) { const o = <usize>i << 2; store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o)) }
}
