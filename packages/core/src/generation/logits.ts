// Host-side arithmetic on one row of logits: the ONE place refgpt computes max, softmax,
// log-softmax, top-k and argmax on the host (generation, beam search, ModelScope sampling, the CLI's
// step view). The log-probabilities that evaluation and training need run on the device instead
// (Session.logProbs).
//
// Float64 throughout (inputs are float32 logits), index order for every sum, and the total order
// "value descending, then index ascending" for every ranking, so results never depend on a sort
// algorithm. The loops are small module-level functions that end in a plain `return`: this keeps
// V8's on-stack-replaced code from deoptimising on every call (they run once per token).

/** The largest of s[0 .. n) (-Infinity for n = 0; NaN entries are skipped). */
export function maxF32(s: ArrayLike<number>, n = s.length): number {
  let max = -Infinity
  for (let i = 0; i < n; i++) {
    const v = s[i]
    max = v > max ? v : max
  }
  return max
}

/** Index of the largest value (the first one on ties), like torch.argmax. */
export function argmax(x: ArrayLike<number>, n = x.length): number {
  let best = 0
  for (let i = 1; i < n; i++) if (x[i] > x[best]) best = i
  return best
}

/** out[i] = exp(s[i] - max) (0 for -Infinity); returns their sum (index order, float64). */
export function expShifted(s: ArrayLike<number>, n: number, max: number, out: Float64Array): number {
  let z = 0
  for (let i = 0; i < n; i++) {
    const e = Math.exp(s[i] - max)
    out[i] = e
    z += e
  }
  return z
}

/** out = softmax(x[0 .. n)) in float64 (-Infinity -> 0); returns log of the normaliser plus the max (logsumexp). */
export function softmax(x: ArrayLike<number>, out: Float64Array, n = x.length): number {
  const max = maxF32(x, n)
  const z = expShifted(x, n, max, out)
  for (let i = 0; i < n; i++) out[i] /= z
  return max + Math.log(z)
}

/** out = log_softmax(x) computed in float64, stored as float32 like torch's float32 log_softmax. */
export function logSoftmax(x: ArrayLike<number>, out: Float32Array, n = x.length): void {
  const lse = logSumExp(x, n)
  for (let i = 0; i < n; i++) out[i] = x[i] - lse
}

/** log(sum_i exp(x_i)), shifted by the max (float64). */
export function logSumExp(x: ArrayLike<number>, n = x.length): number {
  const max = maxF32(x, n)
  let sum = 0
  for (let i = 0; i < n; i++) sum += Math.exp(x[i] - max)
  return max + Math.log(sum)
}

/** Indices of the k largest values, largest first (ties: lower index first). O(n k): for small k. */
export function topK(x: ArrayLike<number>, k: number, n = x.length): number[] {
  const best: number[] = []
  if (k <= 0) return best
  for (let i = 0; i < n; i++) {
    const v = x[i]
    if (best.length === k && !(v > x[best[k - 1]])) continue
    let j = best.length
    while (j > 0 && x[best[j - 1]] < v) j--
    best.splice(j, 0, i)
    if (best.length > k) best.pop()
  }
  return best
}

/** Indices 0 .. n-1 ordered by value descending, then index ascending (a full ranking). */
export function rankDescending(x: ArrayLike<number>, n = x.length): number[] {
  return Array.from({ length: n }, (_, i) => i).sort((a, b) => x[b] - x[a] || a - b)
}
