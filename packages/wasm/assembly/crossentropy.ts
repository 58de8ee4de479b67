// crossentropy.ts — softmax cross-entropy of rows and its gradient (the training loss head).
//
// crossentropy(r0, r1, dlogits, losses, logits, targets, T, V, scale), rows t in [r0, r1) (clamped to T):
//   logits, dlogits: f32 [T, V] (dlogits may alias logits: each element is read before it is written);
//   targets: i32 [T]; losses: f32 [T]. Stores (no accumulation):
//     m = max_j x[t, j];  e_j = exp(x_j - m) (expf4 / expf1, softmax.ts);  s = sum_j e_j in f64
//         (as logprobs.ts: four f64 lane sums, (l0 + l1) + (l2 + l3), then the tail; _naive: plain order)
//     losses[t]  = f32(ln(s) - (x_target - m))                                   (ln: f64 Math.log)
//     dlogits[t, j] = f32(e_j * (scale / s))                      j != target   (one rounding from f64)
//     dlogits[t, target] = f32(e_target * (scale / s) - scale)                  (in f64: no cancellation
//                                                                                 when p_target is near 1)
//   targets[t] < 0 (ignore_index): losses[t] = 0 and a zero row, logits not read.
//   targets[t] >= V (out of range): losses[t] = NaN and a NaN row.
// The e_j are parked in dlogits between the passes (one exp per element). Every row is computed by the
// same instruction sequence whatever the split, so results do not depend on it.
import { expf1, expf4, rowmax } from './softmax'

// @ts-ignore: decorator
@inline function rowp(x: usize, t: i32, V: i32): usize {
  return x + ((<usize>t * <usize>V) << 2)
}

/** Row prologue: handles target < 0 / >= V; returns false when the row is done. */
// @ts-ignore: decorator
@inline function special_row(dp: usize, lp: usize, target: i32, V: i32): bool {
  if (target < 0) { store<f32>(lp, 0); memory.fill(dp, 0, <usize>V << 2); return true }
  if (target >= V) {
    store<f32>(lp, NaN)
    for (let j = 0; j < V; j++) store<f32>(dp + (<usize>j << 2), NaN)
    return true
  }
  return false
}

/** dp[j] = f32(f64(dp[j]) * c) for j < V (f64x2 lanes; the scalar tail the same operation). */
// @ts-ignore: decorator
@inline function scale_row(dp: usize, V: i32, c: f64): void {
  const cv = f64x2.splat(c)
  let j = 0
  for (; j + 4 <= V; j += 4) {
    const p = dp + (<usize>j << 2)
    const e = v128.load(p)
    const lo = f32x4.demote_f64x2_zero(f64x2.mul(f64x2.promote_low_f32x4(e), cv))
    const hi = f32x4.demote_f64x2_zero(f64x2.mul(f64x2.promote_low_f32x4(i32x4.shuffle(e, e, 2, 3, 2, 3)), cv))
    v128.store(p, i32x4.shuffle(lo, hi, 0, 1, 4, 5))
  }
  for (; j < V; j++) {
    const p = dp + (<usize>j << 2)
    store<f32>(p, <f32>(<f64>load<f32>(p) * c))
  }
}

/** Loss and the target element, once s is known; x_t: the target logit read before the row was overwritten. */
// @ts-ignore: decorator
@inline function finish_row(dp: usize, lp: usize, target: i32, xt: f32, m: f32, s: f64, scale: f32): void {
  store<f32>(lp, <f32>(Math.log(s) - (<f64>xt - <f64>m)))
  const c = <f64>scale / s
  store<f32>(dp + (<usize>target << 2), <f32>(<f64>expf1(xt - m) * c - <f64>scale))
}

export function crossentropy(r0: i32, r1: i32, dlogits: usize, losses: usize, logits: usize, targets: usize, T: i32, V: i32, scale: f32): void {
  if (r1 > T) r1 = T
  for (let t = r0; t < r1; t++) {
    const target = load<i32>(targets + (<usize>t << 2))
    const x = rowp(logits, t, V), dp = rowp(dlogits, t, V), lp = losses + (<usize>t << 2)
    if (special_row(dp, lp, target, V)) continue
    const xt = load<f32>(x + (<usize>target << 2))
    const m = rowmax(x, V)
    const mv = f32x4.splat(m)
    let lo = f64x2.splat(0), hi = lo // f64 sums of lanes (0, 1) and (2, 3)
    let j = 0
    for (; j + 4 <= V; j += 4) {
      const o = <usize>j << 2
      const e = expf4(f32x4.sub(v128.load(x + o), mv))
      v128.store(dp + o, e)
      lo = f64x2.add(lo, f64x2.promote_low_f32x4(e))
      hi = f64x2.add(hi, f64x2.promote_low_f32x4(i32x4.shuffle(e, e, 2, 3, 2, 3)))
    }
    let s = (f64x2.extract_lane(lo, 0) + f64x2.extract_lane(lo, 1)) + (f64x2.extract_lane(hi, 0) + f64x2.extract_lane(hi, 1))
    for (; j < V; j++) {
      const o = <usize>j << 2
      const e = expf1(load<f32>(x + o) - m)
      store<f32>(dp + o, e)
      s += <f64>e
    }
    scale_row(dp, V, <f64>scale / s)
    finish_row(dp, lp, target, xt, m, s, scale)
  }
}

/** crossentropy with scalar loops (the same exp; the f64 sum in plain order, so it may differ in the last bit). */
export function crossentropy_naive(r0: i32, r1: i32, dlogits: usize, losses: usize, logits: usize, targets: usize, T: i32, V: i32, scale: f32): void {
  if (r1 > T) r1 = T
  for (let t = r0; t < r1; t++) {
    const target = load<i32>(targets + (<usize>t << 2))
    const x = rowp(logits, t, V), dp = rowp(dlogits, t, V), lp = losses + (<usize>t << 2)
    if (special_row(dp, lp, target, V)) continue
    const xt = load<f32>(x + (<usize>target << 2))
    let m = <f32>-Infinity
    for (let j = 0; j < V; j++) m = max(m, load<f32>(x + (<usize>j << 2)))
    let s: f64 = 0
    for (let j = 0; j < V; j++) {
      const o = <usize>j << 2
      const e = expf1(load<f32>(x + o) - m)
      store<f32>(dp + o, e)
      s += <f64>e
    }
    const c = <f64>scale / s
    for (let j = 0; j < V; j++) {
      const p = dp + (<usize>j << 2)
      store<f32>(p, <f32>(<f64>load<f32>(p) * c))
    }
    finish_row(dp, lp, target, xt, m, s, scale)
  }
}
