// act_backward.ts — activation backward: dx[i] = dout[i] * act'(x[i]) for i < n, x the activation's
// INPUT. Stores (no accumulation); dx may alias dout (or x).
//
// gelu_tanh, silu and quick_gelu are f(x) = x sigmoid(a(x)) with sign(a) = sign(x) (act.ts), so
//   f'(x) = sigmoid(a) + x a'(x) sigmoid(a) sigmoid(-a)
// evaluated with e = exp(-|a|) (expf4 / expf1 of softmax.ts), sp = 1 / (1 + e) = sigmoid(|a|),
// sn = e / (1 + e) = sigmoid(-|a|) (no cancellation, exp never overflows):
//   sigmoid(a) = x < 0 ? sn : sp;   f' = sigmoid(a) + ((x a') (sp sn))
//   gelu_tanh (HF gelu_new): a = x (A + B x^2), a' = A + 3 B x^2  (A = 2 sqrt(2/pi), B = A 0.044715)
//   silu:                    a = x,             a' = 1
//   quick_gelu:              a = 1.702 x,       a' = 1.702
// The second term is dropped where |a| >= 88 (below 1e-36 there): so +-inf and huge x give exactly
// sigmoid(a) (1 or 0) instead of inf * 0.
// gelu_erf (HF gelu): f = x Phi(x), f' = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi);
//   Phi from the forward's erfc (act.ts erfc1 / erfc4, r = erfc(|x| / sqrt 2)):
//   Phi = x < 0 ? r / 2 : 1 - r / 2; the x phi(x) term is dropped where |x| >= 13 (below 1e-36).
//   (Phi is the approximation's, phi the exact density: not the derivative of the approximation
//   itself, which differs from phi by about 1e-7.)
// relu: f' = x > 0 ? 1 : 0, dx = dout * f' (so a NaN / inf dout still gives NaN at x <= 0, as the js device).
// NaN x gives NaN (relu: 0). The scalar (_naive, and the SIMD tails) and f32x4 versions run the
// same operations, so they agree bitwise.
import { GT_A, GT_B, INV_SQRT2, QG_A, erfc1, erfc4 } from './act'
import { expf1, expf4 } from './softmax'

const GT_B3: f32 = 0.21406444881477459 // 3 * GT_B
const A_MAX: f32 = 88
const X_MAX_ERF: f32 = 13
const INV_SQRT_2PI: f32 = 0.3989422804014327

// --- scalar ------------------------------------------------------------------------------------

/** d/dx of x sigmoid(a): a, da = a'(x). */
// @ts-ignore: decorator
@inline function dxsig1(x: f32, a: f32, da: f32): f32 {
  const e = expf1(-abs<f32>(a))
  const one: f32 = 1 + e
  const sp: f32 = 1 / one, sn = e / one
  const s = x < 0 ? sn : sp
  const term = abs<f32>(a) < A_MAX ? (x * da) * (sp * sn) : <f32>0
  return s + term
}

// @ts-ignore: decorator
@inline function dgelu_tanh1(x: f32): f32 {
  const x2 = x * x
  return dxsig1(x, x * (GT_A + GT_B * x2), GT_A + GT_B3 * x2)
}
// @ts-ignore: decorator
@inline function dsilu1(x: f32): f32 { return dxsig1(x, x, 1) }
// @ts-ignore: decorator
@inline function dquick_gelu1(x: f32): f32 { return dxsig1(x, QG_A * x, QG_A) }
// @ts-ignore: decorator
@inline function dgelu_erf1(x: f32): f32 {
  const h: f32 = 0.5 * erfc1(abs<f32>(x) * INV_SQRT2) // the forward's erfc
  const phi = x < 0 ? h : 1 - h
  const term = abs<f32>(x) < X_MAX_ERF ? (x * INV_SQRT_2PI) * expf1(-0.5 * (x * x)) : <f32>0
  return phi + term
}
// @ts-ignore: decorator
@inline function drelu1(x: f32): f32 { return x > 0 ? <f32>1 : <f32>0 }

// --- f32x4 ---------------------------------------------------------------------------------------

// @ts-ignore: decorator
@inline function dxsig4(x: v128, a: v128, da: v128): v128 {
  const aa = f32x4.abs(a)
  const e = expf4(f32x4.neg(aa))
  const one = f32x4.add(f32x4.splat(1), e)
  const sp = f32x4.div(f32x4.splat(1), one), sn = f32x4.div(e, one)
  const s = v128.bitselect(sn, sp, f32x4.lt(x, f32x4.splat(0)))
  const term = v128.and(f32x4.mul(f32x4.mul(x, da), f32x4.mul(sp, sn)), f32x4.lt(aa, f32x4.splat(A_MAX)))
  return f32x4.add(s, term)
}

// @ts-ignore: decorator
@inline function dgelu_tanh4(x: v128): v128 {
  const x2 = f32x4.mul(x, x)
  const a = f32x4.mul(x, f32x4.add(f32x4.splat(GT_A), f32x4.mul(f32x4.splat(GT_B), x2)))
  return dxsig4(x, a, f32x4.add(f32x4.splat(GT_A), f32x4.mul(f32x4.splat(GT_B3), x2)))
}
// @ts-ignore: decorator
@inline function dsilu4(x: v128): v128 { return dxsig4(x, x, f32x4.splat(1)) }
// @ts-ignore: decorator
@inline function dquick_gelu4(x: v128): v128 { return dxsig4(x, f32x4.mul(f32x4.splat(QG_A), x), f32x4.splat(QG_A)) }
// @ts-ignore: decorator
@inline function dgelu_erf4(x: v128): v128 {
  const ax = f32x4.abs(x)
  const h = f32x4.mul(f32x4.splat(0.5), erfc4(f32x4.mul(ax, f32x4.splat(INV_SQRT2))))
  const phi = v128.bitselect(h, f32x4.sub(f32x4.splat(1), h), f32x4.lt(x, f32x4.splat(0)))
  const g = expf4(f32x4.mul(f32x4.splat(-0.5), f32x4.mul(x, x)))
  const term = v128.and(f32x4.mul(f32x4.mul(x, f32x4.splat(INV_SQRT_2PI)), g), f32x4.lt(ax, f32x4.splat(X_MAX_ERF)))
  return f32x4.add(phi, term)
}
// @ts-ignore: decorator
@inline function drelu4(x: v128): v128 { return v128.and(f32x4.splat(1), f32x4.gt(x, f32x4.splat(0))) }

// --- exports: dx[i] = dout[i] * f'(x[i]) for i < n; f32x4 body, scalar tail ---------------------------

export function gelu_tanh_backward(dx: usize, x: usize, dout: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(dx + o, f32x4.mul(v128.load(dout + o), dgelu_tanh4(v128.load(x + o)))) }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(dx + o, load<f32>(dout + o) * dgelu_tanh1(load<f32>(x + o))) }
}
export function gelu_erf_backward(dx: usize, x: usize, dout: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(dx + o, f32x4.mul(v128.load(dout + o), dgelu_erf4(v128.load(x + o)))) }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(dx + o, load<f32>(dout + o) * dgelu_erf1(load<f32>(x + o))) }
}
export function relu_backward(dx: usize, x: usize, dout: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(dx + o, f32x4.mul(v128.load(dout + o), drelu4(v128.load(x + o)))) }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(dx + o, load<f32>(dout + o) * drelu1(load<f32>(x + o))) }
}
export function silu_backward(dx: usize, x: usize, dout: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(dx + o, f32x4.mul(v128.load(dout + o), dsilu4(v128.load(x + o)))) }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(dx + o, load<f32>(dout + o) * dsilu1(load<f32>(x + o))) }
}
export function quick_gelu_backward(dx: usize, x: usize, dout: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(dx + o, f32x4.mul(v128.load(dout + o), dquick_gelu4(v128.load(x + o)))) }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(dx + o, load<f32>(dout + o) * dquick_gelu1(load<f32>(x + o))) }
}

export function gelu_tanh_backward_naive(dx: usize, x: usize, dout: usize, n: i32): void {
  for (let i = 0; i < n; i++) { const o = <usize>i << 2; store<f32>(dx + o, load<f32>(dout + o) * dgelu_tanh1(load<f32>(x + o))) }
}
export function gelu_erf_backward_naive(dx: usize, x: usize, dout: usize, n: i32): void {
  for (let i = 0; i < n; i++) { const o = <usize>i << 2; store<f32>(dx + o, load<f32>(dout + o) * dgelu_erf1(load<f32>(x + o))) }
}
export function relu_backward_naive(dx: usize, x: usize, dout: usize, n: i32): void {
  for (let i = 0; i < n; i++) { const o = <usize>i << 2; store<f32>(dx + o, load<f32>(dout + o) * drelu1(load<f32>(x + o))) }
}
export function silu_backward_naive(dx: usize, x: usize, dout: usize, n: i32): void {
  for (let i = 0; i < n; i++) { const o = <usize>i << 2; store<f32>(dx + o, load<f32>(dout + o) * dsilu1(load<f32>(x + o))) }
}
export function quick_gelu_backward_naive(dx: usize, x: usize, dout: usize, n: i32): void {
  for (let i = 0; i < n; i++) { const o = <usize>i << 2; store<f32>(dx + o, load<f32>(dout + o) * dquick_gelu1(load<f32>(x + o))) }
}
