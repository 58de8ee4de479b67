// The `js` device: every op as a plain loop. This is the textbook version of refgpt's numerics —
// slow, obvious, and the reference every other device is tested against. Keep it readable.
//
// Buffers are Float32Arrays; sums accumulate in JS numbers (f64) and are rounded to f32 on store.

import { storedValues } from './storage.js'
import type { Activation, AttentionOptions, Buf, Device } from './types.js'

const f32 = (b: Buf) => b as unknown as Float32Array
const buf = (a: Float32Array) => a as unknown as Buf

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI)

/** erf with |error| < 1.2e-7 (Numerical Recipes erfc, Chebyshev fit) — below f32 resolution for gelu. */
export function erf(x: number): number {
  const z = Math.abs(x)
  const t = 1 / (1 + 0.5 * z)
  const r =
    t *
    Math.exp(
      -z * z - 1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
        t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    )
  return x >= 0 ? 1 - r : r - 1
}

export function activate(x: number, act: Activation): number {
  switch (act) {
    case 'gelu_tanh': // HF "gelu_new": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
    case 'gelu_erf': // HF "gelu": 0.5 x (1 + erf(x / sqrt 2))
      return 0.5 * x * (1 + erf(x / Math.SQRT2))
    case 'relu':
      return x > 0 ? x : 0
    case 'silu':
      return x / (1 + Math.exp(-x))
    case 'quick_gelu':
      return x / (1 + Math.exp(-1.702 * x))
  }
}

/** scale * (q · k) for one head: q = qs[qOff .. qOff+D), k = ks[kOff .. kOff+D), rounded like f32 math. */
function score(qs: Float32Array, qOff: number, ks: Float32Array, kOff: number, D: number, scale: number): number {
  let dot = 0
  for (let d = 0; d < D; d++) dot += qs[qOff + d] * ks[kOff + d]
  return Math.fround(Math.fround(dot) * scale)
}

export interface JsDeviceOptions {
  /** Bytes one buffer may hold (default: no limit); tests set it small to split weights into parts. */
  maxBufferBytes?: number
}

export function createJsDevice(opts: JsDeviceOptions = {}): Device {
  return {
    name: 'js',
    limits: { maxBufferBytes: opts.maxBufferBytes ?? Infinity },

    alloc: (n) => buf(new Float32Array(n)),
    free: () => {}, // the garbage collector frees a Float32Array nobody references
    // keeps the values the storage type represents (rounded / quantized) as f32
    weight: (data, shape, storage) => buf(storedValues(data, shape, storage)),
    write: (b, src, offset = 0) => f32(b).set(src, offset),
    // ops run at once, so the data is there now; the Promise is the interface's contract
    read: (b, dst, offset = 0) => {
      dst.set(f32(b).subarray(offset, offset + dst.length))
      return Promise.resolve()
    },
    snapshot: (b, offset, n) => Promise.resolve(f32(b).slice(offset, offset + n)),

    copy(dst, dstOff, src, srcOff, n) {
      const d = f32(dst), s = f32(src)
      for (let i = 0; i < n; i++) d[dstOff + i] = s[srcOff + i]
    },

    // out[t, :] (+)= table[ids[t], :]; a negative id is a row of zeros
    embed(out, table, ids, T, C, accumulate) {
      const o = f32(out), tab = f32(table)
      for (let t = 0; t < T; t++) {
        const row = ids[t] * C
        for (let c = 0; c < C; c++) o[t * C + c] = (accumulate ? o[t * C + c] : 0) + (ids[t] < 0 ? 0 : tab[row + c])
      }
    },

    // out[T, N] = x[T, K] · W[N, K]^T + b[N]
    matmul(out, x, w, b, T, K, N) {
      const o = f32(out), xs = f32(x), ws = f32(w), bs = b ? f32(b) : null
      for (let t = 0; t < T; t++) {
        for (let n = 0; n < N; n++) {
          let sum = bs ? bs[n] : 0
          for (let k = 0; k < K; k++) sum += xs[t * K + k] * ws[n * K + k]
          o[t * N + n] = sum
        }
      }
    },

    // out[t] = (x[t] - mean) / sqrt(var + eps) * g + b   (biased variance, eps inside the root)
    layerNorm(out, x, g, b, T, C, eps) {
      const o = f32(out), xs = f32(x), gs = f32(g), bs = f32(b)
      for (let t = 0; t < T; t++) {
        let mean = 0
        for (let c = 0; c < C; c++) mean += xs[t * C + c]
        mean /= C
        let variance = 0
        for (let c = 0; c < C; c++) variance += (xs[t * C + c] - mean) ** 2
        variance /= C
        const inv = 1 / Math.sqrt(variance + eps)
        for (let c = 0; c < C; c++) o[t * C + c] = (xs[t * C + c] - mean) * inv * gs[c] + bs[c]
      }
    },

    activation(out, x, n, act) {
      const o = f32(out), xs = f32(x)
      for (let i = 0; i < n; i++) o[i] = activate(xs[i], act)
    },

    add(out, a, b, n) {
      const o = f32(out), as = f32(a), bs = f32(b)
      for (let i = 0; i < n; i++) o[i] = as[i] + bs[i]
    },

    // GPT-J rotate_every_two: pairs (2i, 2i+1) of the first rotaryDim dims of each head.
    rotary(x, table, positions, T, nHead, headDim, rotaryDim) {
      const xs = f32(x), tab = f32(table)
      const C = nHead * headDim, half = rotaryDim / 2
      for (let t = 0; t < T; t++) {
        for (let i = 0; i < half; i++) {
          const cos = tab[(positions[t] * half + i) * 2], sin = tab[(positions[t] * half + i) * 2 + 1]
          for (let h = 0; h < nHead; h++) {
            const p = t * C + h * headDim + 2 * i
            const x0 = xs[p], x1 = xs[p + 1]
            xs[p] = x0 * cos - x1 * sin
            xs[p + 1] = x1 * cos + x0 * sin
          }
        }
      }
    },

    // softmax(scale * q·k) · v over keys j in (i - window, i], for each head and query row.
    // Masked keys are simply skipped: HF's finfo.min mask gives them probability exactly 0.
    // Three passes over the keys (max, sum of exp, weighted sum of v) so that no scratch is needed.
    attention(out, q, kCache, vCache, o: AttentionOptions) {
      const { T, pos0, nHead: H, headDim: D, scale, window } = o
      const outs = f32(out), qs = f32(q), ks = f32(kCache), vs = f32(vCache)
      const probs = o.probs ? f32(o.probs) : null
      const C = H * D, nKeys = pos0 + T
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const i = pos0 + t
          const first = window > 0 ? Math.max(0, i - window + 1) : 0
          const qOff = t * C + h * D, outOff = t * C + h * D
          let max = -Infinity
          for (let j = first; j <= i; j++) max = Math.max(max, score(qs, qOff, ks, j * C + h * D, D, scale))
          let sum = 0
          for (let j = first; j <= i; j++) sum += Math.exp(score(qs, qOff, ks, j * C + h * D, D, scale) - max)
          for (let d = 0; d < D; d++) outs[outOff + d] = 0
          const row = (h * T + t) * nKeys
          if (probs) for (let j = 0; j < nKeys; j++) probs[row + j] = 0
          for (let j = first; j <= i; j++) {
            const p = Math.exp(score(qs, qOff, ks, j * C + h * D, D, scale) - max) / sum
            for (let d = 0; d < D; d++) outs[outOff + d] += p * vs[j * C + h * D + d]
            if (probs) probs[row + j] = p
          }
        }
      }
    },

    // out[t] = logits[t, target] - log(sum_j exp(logits[t, j])), shifted by the row max for range
    logProbs(out, logits, targets, T, V) {
      const o = f32(out), x = f32(logits)
      for (let t = 0; t < T; t++) {
        if (targets[t] < 0) {
          o[t] = 0
          continue
        }
        let max = -Infinity
        for (let j = 0; j < V; j++) max = Math.max(max, x[t * V + j])
        let sum = 0
        for (let j = 0; j < V; j++) sum += Math.exp(x[t * V + j] - max)
        o[t] = x[t * V + targets[t]] - max - Math.log(sum)
      }
    },
  }
}
