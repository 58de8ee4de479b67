// lm-eval's aggregations and standard errors, as the harness computes them
// (EleutherAI/lm-evaluation-harness lm_eval/api/metrics.py @ ad38dcd, lm_eval/evaluator_utils.py @ 2a5c0f0):
//
//   mean(arr)                  = sum(arr) / len(arr)
//   perplexity(lls)            = exp(-mean(lls))                         (lambada: per item, not per token)
//   weighted_perplexity(pairs) = exp(-sum(ll) / sum(weight))             (word_ / byte_perplexity)
//   bits_per_byte(pairs)       = -sum(ll) / sum(bytes) / ln 2
//   sample_stddev(arr)         = sqrt(sum((x - mean)^2) / (n - 1));  mean_stderr = sample_stddev / sqrt(n)
//
// Standard errors (stderr_for_metric): `mean` aggregations (acc, acc_norm) get mean_stderr; `perplexity`
// is in the bootstrappable list and gets bootstrap_stderr with 100000 iterations (the harness default);
// weighted_perplexity and bits_per_byte have none ("N/A"). A metric over fewer than 2 items has none.
// bootstrap_stderr: chunks of min(1000, iters) replicates; chunk i draws with random.Random(i).choices(xs,
// k=len(xs)); floor(iters / chunk) chunks; the result is sample_stddev of all replicates. PyRandom is
// CPython's generator, so the value equals the harness's (up to the order of float sums: Python >= 3.12
// sums floats with compensation, we sum in order).

import { PyRandom } from './pyrandom.js'

export function mean(arr: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < arr.length; i++) s += arr[i]
  return s / arr.length
}

export function sampleStddev(arr: ArrayLike<number>): number {
  const mu = mean(arr)
  let s = 0
  for (let i = 0; i < arr.length; i++) s += (arr[i] - mu) ** 2
  return Math.sqrt(s / (arr.length - 1))
}

export function meanStderr(arr: ArrayLike<number>): number {
  return sampleStddev(arr) / Math.sqrt(arr.length)
}

/** lm-eval `perplexity`: exp(-mean(loglikelihoods)). */
export function perplexity(lls: ArrayLike<number>): number {
  return Math.exp(-mean(lls))
}

/** lm-eval `weighted_perplexity`: exp(-Σ ll / Σ weight) over (ll, weight) pairs. */
export function weightedPerplexity(pairs: readonly (readonly [number, number])[]): number {
  return Math.exp(-weightedMean(pairs))
}

/** lm-eval `bits_per_byte`: -Σ ll / Σ bytes / ln 2. */
export function bitsPerByte(pairs: readonly (readonly [number, number])[]): number {
  return -weightedMean(pairs) / Math.log(2)
}

export function weightedMean(pairs: readonly (readonly [number, number])[]): number {
  let a = 0, b = 0
  for (const [x, w] of pairs) {
    a += x
    b += w
  }
  return a / b
}

/** The harness's default bootstrap iterations (simple_evaluate's bootstrap_iters). */
export const BOOTSTRAP_ITERS = 100000

/**
 * lm-eval bootstrap_stderr(f, xs, iters) for a statistic of the sample mean, f(sample) = g(mean(sample))
 * (the only bootstrapped metric here is perplexity: g = exp(-m)). Same draws as the harness.
 */
export function bootstrapStderrOfMean(g: (mean: number) => number, xs: ArrayLike<number>, iters = BOOTSTRAP_ITERS): number {
  const chunk = Math.min(1000, iters), n = xs.length
  const res: number[] = []
  for (let i = 0; i < Math.floor(iters / chunk); i++) {
    const rnd = new PyRandom(i)
    for (let r = 0; r < chunk; r++) {
      let s = 0
      for (let k = 0; k < n; k++) s += xs[Math.floor(rnd.random() * n)]
      res.push(g(s / n))
    }
  }
  return sampleStddev(res)
}
