// Seeded sampling from a distribution over token ids. refgpt's own generator (HF's torch.multinomial
// cannot be reproduced outside torch); specified here precisely enough to reimplement anywhere.
//
// PRNG: xoshiro128** (Blackman & Vigna), seeded with SplitMix64.
//   All arithmetic on unsigned integers, wrapping (mod 2^32 for xoshiro, mod 2^64 for SplitMix64).
//   1. Seed: a safe integer (|seed| <= 2^53 - 1), taken as the unsigned 64-bit value x = seed mod 2^64
//      (two's complement for negative seeds).
//   2. SplitMix64, state = x, called twice; each call:
//        state = state + 0x9E3779B97F4A7C15
//        z = state
//        z = (z XOR (z >> 30)) * 0xBF58476D1CE4E5B9
//        z = (z XOR (z >> 27)) * 0x94D049BB133111EB
//        return z XOR (z >> 31)
//      With the outputs a (first) and b (second): s0 = low32(a), s1 = high32(a), s2 = low32(b),
//      s3 = high32(b). (SplitMix64 is a bijection of its state, so two consecutive outputs are never
//      both 0 and the xoshiro state is never all-zero.)
//   3. xoshiro128** next() -> u32:
//        result = rotl(s1 * 5, 7) * 9
//        t = s1 << 9
//        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 11)
//        return result
//   4. uniform() -> float64 in [0, 1) from 53 bits: a = next() >> 5 (27 bits), b = next() >> 6
//      (26 bits); return (a * 2^26 + b) / 2^53   (the genrand_res53 construction).
//
// sample(scores): one uniform u, then inverse CDF over softmax(scores) in index order:
//   m = max score; w_i = exp(s_i - m) (0 for -Infinity; also 0 where exp underflows);
//   Z = sum of w_i in index order (float64); target = u * Z;
//   c = 0; for i = 0, 1, ...: c += w_i; if c > target return i.
// Since u < 1, target < Z and the loop always returns; a token with w_i = 0 is never returned.
// Math.exp in V8 is a software (fdlibm) implementation, so a JS engine gives the same ids on every
// platform; another language's exp may differ in the last bit, which can change a draw only when the
// target falls within that rounding of a CDF boundary.

import { webcrypto } from 'node:crypto'
import { RefgptError, UsageError, show } from '../errors.js'
import { expShifted, maxF32 } from './logits.js'

export interface Sampler {
  /** The seed the generator was created with. */
  readonly seed: number
  /** Next raw xoshiro128** output, an unsigned 32-bit integer. */
  nextUint32(): number
  /** Next float64 uniform in [0, 1) (53 random bits; consumes two nextUint32()). */
  uniform(): number
  /**
   * Draws a token id from softmax(scores[0 .. n)) (n defaults to scores.length; -Infinity entries have
   * probability 0) by inverse CDF in index order with float64 accumulation. Consumes one uniform().
   */
  sample(scores: Float32Array, n?: number): number
}

const M64 = (1n << 64n) - 1n

function splitmix64(state: bigint): [bigint, bigint] {
  const s = (state + 0x9e3779b97f4a7c15n) & M64
  let z = s
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64
  return [s, z ^ (z >> 31n)]
}

const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k))

/** A deterministic sampler; see the file header for the exact algorithm. */
export function createSampler(seed: number): Sampler {
  if (!Number.isSafeInteger(seed)) {
    throw new UsageError({ where: 'sampler', what: 'invalid seed', expected: 'an integer with |seed| <= 2^53 - 1', found: show(seed) })
  }
  // seeding (BigInt, once): two SplitMix64 outputs -> 128 bits of xoshiro128** state
  let st = BigInt.asUintN(64, BigInt(seed))
  const [st1, a] = splitmix64(st)
  st = st1
  const [, b] = splitmix64(st)
  let s0 = Number(a & 0xffffffffn) | 0
  let s1 = Number(a >> 32n) | 0
  let s2 = Number(b & 0xffffffffn) | 0
  let s3 = Number(b >> 32n) | 0

  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9)
    const t = s1 << 9
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = rotl(s3, 11)
    return result >>> 0
  }
  const uniform = (): number => {
    const hi = nextUint32() >>> 5
    const lo = nextUint32() >>> 6
    return (hi * 67108864 + lo) / 9007199254740992
  }

  let w: Float64Array | null = null // exp weights, allocated on first use and reused
  const sample = (scores: Float32Array, n = scores.length): number => {
    if (!(Number.isInteger(n) && n >= 1 && n <= scores.length)) {
      throw new UsageError({ where: 'sampler', what: 'invalid score count', expected: `an integer in [1, ${scores.length}]`, found: show(n) })
    }
    if (w === null || w.length < n) w = new Float64Array(n)
    const max = maxF32(scores, n)
    if (max === -Infinity) {
      throw new RefgptError({ where: 'sampler', what: 'every token is masked (all scores are -Infinity)', hint: 'the logits processors removed every token; relax bad_words_ids / min_length' })
    }
    const z = expShifted(scores, n, max, w)
    if (!(z < Infinity)) throw new RefgptError({ where: 'sampler', what: 'scores contain +Infinity or NaN' })
    return pick(w, n, uniform() * z)
  }

  return { seed, nextUint32, uniform, sample }
}

// The loops are small module-level functions that end in a plain `return` (see processors.ts: this
// keeps V8's on-stack-replaced code from deoptimising on every call).

// maxF32 skips NaN scores (they make the sum of weights NaN, which sample() rejects); expShifted
// returns the sum of the weights in index order.

/** The first i whose cumulative weight exceeds target. */
function pick(w: Float64Array, n: number, target: number): number {
  let c = 0
  for (let i = 0; i < n; i++) {
    c += w[i]
    if (c > target) return i
  }
  return lastPositive(w, n) // unreachable (target < sum); kept for safety
}

function lastPositive(w: Float64Array, n: number): number {
  for (let i = n - 1; i >= 0; i--) if (w[i] > 0) return i
  return 0
}

/** A fresh random seed (53 bits from crypto.getRandomValues) for when the user gives none. */
export function randomSeed(): number {
  const r = webcrypto.getRandomValues(new Uint32Array(2))
  return (r[0] >>> 11) * 4294967296 + r[1]
}
