// logprobs.ts — log-probabilities of target tokens: out[t] = logits[t, targets[t]] - logsumexp(logits[t, :]).
//
// logits: f32 [T, V] (read only: never modified); targets: i32 [T]; out: f32 [T]; greedy: f32 [T] or 0.
// Split: rows t in [r0, r1) (clamped to T); every thread writes its own rows, and each row is
// computed by the same instruction sequence whatever the split, so results do not depend on it.
//
//   m   = max_j logits[t, j]
//   s   = sum_j exp(logits[t, j] - m)      exp: expf4 / expf1 (softmax.ts), each term widened to f64
//                                          and summed in f64 (four lane sums, (l0 + l1) + (l2 + l3), then the tail)
//   out = f32((f64(logits[t, target]) - m) - ln(s))      ln: f64 Math.log
// Written as (x - m) - ln(s) rather than x - (m + ln(s)): no cancellation between large m and x.
// Error: the f32 exp terms (about 1 ulp each) give ln(s) an absolute error of about 1e-7, then the
// final f32 rounding.
//
// targets[t] < 0 means "no target" (padding, a prompt position nobody scores): out[t] = 0 and the
// row is not read. targets[t] >= V is out of range: out[t] = NaN. -inf logits (masked entries)
// contribute 0 to s; a masked target gives -inf. A row that is all -inf, or holds +inf or NaN, gives NaN.
//
// greedy (0: not written): greedy[t] = 1 when targets[t] is the row's FIRST argmax (torch.argmax, which
// lm-eval's is_greedy compares with the target), else 0: logits[t, j] < logits[t, target] for j < target
// and <= for j > target. Exact comparisons, so the SIMD and scalar versions agree bitwise. A row holding
// a NaN, a NaN target logit, no target (< 0) or an out-of-range target give 0.
import { expf1, expf4, rowmax } from './softmax'

// @ts-ignore: decorator
@inline function rowp(x: usize, t: i32, V: i32): usize {
  return x + ((<usize>t * <usize>V) << 2)
}

/** 1 when x[target] is the first maximum of x[0 .. V) (SIMD compares), else 0. */
function firstArgmax(x: usize, V: i32, target: i32): f32 {
  const xt = load<f32>(x + (<usize>target << 2))
  if (xt != xt) return 0
  const tv = f32x4.splat(xt)
  let ok = i32x4.splat(-1)
  let j = 0
  for (; j + 4 <= target; j += 4) ok = v128.and(ok, f32x4.lt(v128.load(x + (<usize>j << 2)), tv))
  for (; j < target; j++) if (!(load<f32>(x + (<usize>j << 2)) < xt)) return 0
  for (; j + 4 <= V; j += 4) ok = v128.and(ok, f32x4.le(v128.load(x + (<usize>j << 2)), tv))
  for (; j < V; j++) if (!(load<f32>(x + (<usize>j << 2)) <= xt)) return 0
  return i32x4.all_true(ok) ? 1 : 0
}

/** firstArgmax, one element at a time. */
function firstArgmaxNaive(x: usize, V: i32, target: i32): f32 {
  const xt = load<f32>(x + (<usize>target << 2))
  if (xt != xt) return 0
  for (let j = 0; j < V; j++) {
    const v = load<f32>(x + (<usize>j << 2))
    if (j < target ? !(v < xt) : !(v <= xt)) return 0
  }
  return 1
}

/** Rows t in [r0, r1) of out[T] = logits[t, targets[t]] - logsumexp(logits[t, :]) (SIMD), and greedy[t] when greedy != 0. */
export function logprobs(r0: i32, r1: i32, out: usize, greedy: usize, logits: usize, targets: usize, T: i32, V: i32): void {
  if (r1 > T) r1 = T
  for (let t = r0; t < r1; t++) {
    const op = out + (<usize>t << 2)
    const target = load<i32>(targets + (<usize>t << 2))
    if (greedy) store<f32>(greedy + (<usize>t << 2), target >= 0 && target < V ? firstArgmax(rowp(logits, t, V), V, target) : 0)
    if (target < 0) { store<f32>(op, 0); continue }
    if (target >= V) { store<f32>(op, NaN); continue }
    const x = rowp(logits, t, V)
    const m = rowmax(x, V)
    const mv = f32x4.splat(m)
    let lo = f64x2.splat(0), hi = lo // f64 sums of lanes (0, 1) and (2, 3)
    let i = 0
    for (; i + 4 <= V; i += 4) {
      const e = expf4(f32x4.sub(v128.load(x + (<usize>i << 2)), mv))
      lo = f64x2.add(lo, f64x2.promote_low_f32x4(e))
      hi = f64x2.add(hi, f64x2.promote_low_f32x4(i32x4.shuffle(e, e, 2, 3, 2, 3)))
    }
    let s = (f64x2.extract_lane(lo, 0) + f64x2.extract_lane(lo, 1)) + (f64x2.extract_lane(hi, 0) + f64x2.extract_lane(hi, 1))
    for (; i < V; i++) s += <f64>expf1(load<f32>(x + (<usize>i << 2)) - m)
    store<f32>(op, <f32>((<f64>load<f32>(x + (<usize>target << 2)) - <f64>m) - Math.log(s)))
  }
}

/** logprobs, scalar loops (the same exp; the f64 sum in plain order, so it may differ in the last bit). */
export function logprobs_naive(r0: i32, r1: i32, out: usize, greedy: usize, logits: usize, targets: usize, T: i32, V: i32): void {
  if (r1 > T) r1 = T
  for (let t = r0; t < r1; t++) {
    const op = out + (<usize>t << 2)
    const target = load<i32>(targets + (<usize>t << 2))
    if (greedy) store<f32>(greedy + (<usize>t << 2), target >= 0 && target < V ? firstArgmaxNaive(rowp(logits, t, V), V, target) : 0)
    if (target < 0) { store<f32>(op, 0); continue }
    if (target >= V) { store<f32>(op, NaN); continue }
    const x = rowp(logits, t, V)
    let m = <f32>-Infinity
    for (let i = 0; i < V; i++) m = max(m, load<f32>(x + (<usize>i << 2)))
    let s: f64 = 0
    for (let i = 0; i < V; i++) s += <f64>expf1(load<f32>(x + (<usize>i << 2)) - m)
    store<f32>(op, <f32>((<f64>load<f32>(x + (<usize>target << 2)) - <f64>m) - Math.log(s)))
  }
}
