// The `js` device: every op as a plain loop. This is the textbook version of refgpt's numerics —
// slow, obvious, and the reference every other device is tested against. Keep it readable.
//
// Buffers are Float32Arrays; sums accumulate in JS numbers (f64) and are rounded to f32 on store.
// Q8 / Q4 weights are QuantizedWeights (their integers and block scales): embed reads their values, a
// matmul with one is the integer product that defines quantized storage (matmulQuantized below).

import { ResourceError } from '../errors.js'
import { Q8_BLOCK, q8Cols, quantizeQ4, quantizeQ8, storedValues } from './storage.js'
import type { Activation, AttentionOptions, Buf, Device, Storage, TrainOps } from './types.js'

/**
 * A [rows, cols] weight kept as Q8 or Q4 (device/storage.ts): one integer per value, rows padded with
 * zeros to colsPadded = q8Cols(cols), and one f32 scale per block of 32 of a row. The value is q * scale,
 * with q the int8 of Q8, or level - 8 for Q4 (so q is in [-8, 7]).
 */
export class QuantizedWeight {
  readonly colsPadded: number
  constructor(
    readonly storage: 'Q8' | 'Q4',
    readonly q: Int8Array,
    readonly scales: Float32Array,
    readonly rows: number,
    readonly cols: number,
  ) {
    this.colsPadded = q8Cols(cols)
  }

  static quantize(data: Float32Array, rows: number, cols: number, storage: 'Q8' | 'Q4'): QuantizedWeight {
    if (storage === 'Q8') {
      const { q, scales } = quantizeQ8(data, rows, cols)
      return new QuantizedWeight('Q8', q, scales, rows, cols)
    }
    const { levels, scales } = quantizeQ4(data, rows, cols)
    return new QuantizedWeight('Q4', Int8Array.from(levels, (l) => l - 8), scales, rows, cols)
  }

  /** The value of element (r, c): q * scale, rounded to f32. */
  value(r: number, c: number): number {
    return Math.fround(this.q[r * this.colsPadded + c] * this.scales[r * (this.colsPadded / Q8_BLOCK) + Math.floor(c / Q8_BLOCK)])
  }
}

const f32 = (b: Buf) => {
  if (b instanceof QuantizedWeight) throw new RangeError(`js device: a ${b.storage} weight can only be used by embed and matmul (training needs F32 weights)`)
  return b as unknown as Float32Array
}
const buf = (a: Float32Array | QuantizedWeight) => a as unknown as Buf

/**
 * out[T, N] = x[T, K] · W[N, K]^T (+ b) with a quantized W, in integers (ggml's q8_0 x q8_0 / q4_0 x q8_0):
 * the rows of x are quantized like a Q8 weight (quantizeQ8: per block of 32, d = max|x| / 127,
 * q = round-half-away(x / d)); then for each output
 *   isum_b = sum over the 32 k of block b of w.q[n, k] * xq[t, k]      (an exact integer)
 *   s = 0;  for each block b in order:  s = s + f32(isum_b) * (w.scale[n, b] * xd[t, b])
 *   out[t, n] = s (+ b[n])
 * with every f32 operation rounded to f32 where it happens (Math.fround). The wasm kernels compute
 * exactly this (packages/wasm/assembly/gemm_q8.ts), so js and wasm agree bit for bit.
 */
export function matmulQuantized(o: Float32Array, xs: Float32Array, w: QuantizedWeight, bs: Float32Array | null, T: number, K: number, N: number): void {
  const cp = q8Cols(K), nb = cp / Q8_BLOCK
  const x = quantizeQ8(xs.subarray(0, T * K), T, K)
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let s = 0
      for (let b = 0; b < nb; b++) {
        let isum = 0
        for (let k = b * Q8_BLOCK; k < (b + 1) * Q8_BLOCK; k++) isum += w.q[n * cp + k] * x.q[t * cp + k]
        s = Math.fround(s + Math.fround(isum * Math.fround(w.scales[n * nb + b] * x.scales[t * nb + b])))
      }
      o[t * N + n] = bs ? Math.fround(s + bs[n]) : s
    }
  }
}

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

/** d act(x) / dx: the derivative of each activation at x (float64). */
export function activateGrad(x: number, act: Activation): number {
  switch (act) {
    case 'gelu_tanh': {
      // y = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
      const th = Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
      return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
    }
    case 'gelu_erf': // 0.5 (1 + erf(x / sqrt 2)) + x N(x), N the standard normal density
      return 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI)
    case 'relu':
      return x > 0 ? 1 : 0
    case 'silu': {
      const sg = 1 / (1 + Math.exp(-x))
      return sg * (1 + x * (1 - sg))
    }
    case 'quick_gelu': {
      const sg = 1 / (1 + Math.exp(-1.702 * x))
      return sg * (1 + 1.702 * x * (1 - sg))
    }
  }
}

/**
 * o[t] = (x[t] - mean) / sqrt(var + eps) * g + b over rows of C (biased variance, eps inside the root);
 * also stores mean[t] and rstd[t] = 1 / sqrt(var + eps) when asked (training).
 */
function layerNormRows(o: Float32Array, xs: Float32Array, gs: Float32Array, bs: Float32Array, T: number, C: number, eps: number,
  ms: Float32Array | null, rs: Float32Array | null): void {
  for (let t = 0; t < T; t++) {
    let mean = 0
    for (let c = 0; c < C; c++) mean += xs[t * C + c]
    mean /= C
    let variance = 0
    for (let c = 0; c < C; c++) variance += (xs[t * C + c] - mean) ** 2
    variance /= C
    const inv = 1 / Math.sqrt(variance + eps)
    for (let c = 0; c < C; c++) o[t * C + c] = (xs[t * C + c] - mean) * inv * gs[c] + bs[c]
    if (ms && rs) {
      ms[t] = mean
      rs[t] = inv
    }
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
    train: jsTrainOps,
    name: 'js',
    limits: { maxBufferBytes: opts.maxBufferBytes ?? Infinity },

    alloc: (n) => {
      try {
        return buf(new Float32Array(n))
      } catch (e) {
        throw new ResourceError(
          { where: 'js device', what: 'out of memory', found: `${n} f32 elements (${4 * n} bytes) requested`, hint: 'pass a smaller --max-context (maxContext) or fewer sequences' },
          { cause: e },
        )
      }
    },
    free: () => {}, // the garbage collector frees a Float32Array nobody references
    // keeps the values the storage type represents (rounded) as f32; Q8 / Q4 matrices as their integers and scales
    weight: (data, shape, storage?: Storage) =>
      shape.length === 2 && (storage === 'Q8' || storage === 'Q4')
        ? buf(QuantizedWeight.quantize(data, shape[0], shape[1], storage))
        : buf(storedValues(data, shape, storage)),
    zero: (b, n) => f32(b).fill(0, 0, n),
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
      const o = f32(out)
      const qw = table instanceof QuantizedWeight ? table : null, tab = qw ? null : f32(table)
      const value = (r: number, c: number) => (qw ? qw.value(r, c) : tab![r * C + c])
      for (let t = 0; t < T; t++) {
        if (ids[t] < 0) { // a zero row: stored as zeros, nothing added
          if (!accumulate) o.fill(0, t * C, (t + 1) * C)
          continue
        }
        for (let c = 0; c < C; c++) o[t * C + c] = accumulate ? o[t * C + c] + value(ids[t], c) : value(ids[t], c)
      }
    },

    // out[T, N] = x[T, K] · W[N, K]^T + b[N]  (a Q8 / Q4 W: the integer product, matmulQuantized)
    matmul(out, x, w, b, T, K, N) {
      if (w instanceof QuantizedWeight) return matmulQuantized(f32(out), f32(x), w, b ? f32(b) : null, T, K, N)
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
      layerNormRows(f32(out), f32(x), f32(g), f32(b), T, C, eps, null, null)
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

    // out[t] = logits[t, target] - log(sum_j exp(logits[t, j])), shifted by the row max for range;
    // greedy[t] = 1 when the target is the row's first argmax (every earlier logit smaller, no later one larger)
    logProbs(out, logits, targets, T, V, greedy) {
      const o = f32(out), x = f32(logits), g = greedy ? f32(greedy) : null
      for (let t = 0; t < T; t++) {
        if (g) g[t] = targets[t] >= 0 && targets[t] < V ? firstArgmax(x, t * V, V, targets[t]) : 0
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

/** 1 when x[row + target] is the first maximum of x[row .. row + V) (NaN anywhere: 0), else 0. */
function firstArgmax(x: Float32Array, row: number, V: number, target: number): number {
  const xt = x[row + target]
  for (let j = 0; j < V; j++) {
    const v = x[row + j]
    if (j < target ? !(v < xt) : !(v <= xt)) return 0
  }
  return xt === xt ? 1 : 0
}

/**
 * The backward ops, as plain loops (llm.c's *_backward): the textbook every other device's training
 * kernels are tested against. Sums in float64, stored as f32; gradients accumulate (+=) unless noted.
 */
export const jsTrainOps: TrainOps = {
  // the forward's arithmetic (see layerNorm above), keeping mean and rstd = 1 / sqrt(var + eps)
  layerNormForward(out, mean, rstd, x, g, b, T, C, eps) {
    layerNormRows(f32(out), f32(x), f32(g), f32(b), T, C, eps, f32(mean), f32(rstd))
  },

  // y = norm * g + b, norm = (x - mean) * rstd:
  //   db += dy;  dg += dy * norm;  dx += rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = dy * g
  layerNormBackward(dx, dg, db, dout, x, g, mean, rstd, T, C) {
    const dxs = f32(dx), dgs = f32(dg), dbs = f32(db), dy = f32(dout), xs = f32(x), gs = f32(g), ms = f32(mean), rs = f32(rstd)
    for (let t = 0; t < T; t++) {
      const m = ms[t], r = rs[t]
      let dnormMean = 0, dnormNormMean = 0
      for (let c = 0; c < C; c++) {
        const norm = (xs[t * C + c] - m) * r
        const dnorm = gs[c] * dy[t * C + c]
        dnormMean += dnorm
        dnormNormMean += dnorm * norm
      }
      dnormMean /= C
      dnormNormMean /= C
      for (let c = 0; c < C; c++) {
        const norm = (xs[t * C + c] - m) * r
        const dnorm = gs[c] * dy[t * C + c]
        dbs[c] += dy[t * C + c]
        dgs[c] += norm * dy[t * C + c]
        dxs[t * C + c] += (dnorm - dnormMean - norm * dnormNormMean) * r
      }
    }
  },

  // out = x W^T + b:  dx += dout W;  dW += dout^T x;  db += column sums of dout
  matmulBackward(dx, dw, db, dout, x, w, T, K, N) {
    const dy = f32(dout), xs = f32(x), ws = f32(w)
    if (dx) {
      const d = f32(dx)
      for (let t = 0; t < T; t++) {
        for (let k = 0; k < K; k++) {
          let sum = 0
          for (let n = 0; n < N; n++) sum += dy[t * N + n] * ws[n * K + k]
          d[t * K + k] += sum
        }
      }
    }
    if (dw) {
      const d = f32(dw)
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < K; k++) {
          let sum = 0
          for (let t = 0; t < T; t++) sum += dy[t * N + n] * xs[t * K + k]
          d[n * K + k] += sum
        }
      }
    }
    if (db) {
      const d = f32(db)
      for (let n = 0; n < N; n++) {
        let sum = 0
        for (let t = 0; t < T; t++) sum += dy[t * N + n]
        d[n] += sum
      }
    }
  },

  activationBackward(dx, x, dout, n, act) {
    const d = f32(dx), xs = f32(x), dy = f32(dout)
    for (let i = 0; i < n; i++) d[i] = dy[i] * activateGrad(xs[i], act)
  },

  embedBackward(dtable, dout, ids, T, C) {
    const d = f32(dtable), dy = f32(dout)
    for (let t = 0; t < T; t++) {
      if (ids[t] < 0) continue
      for (let c = 0; c < C; c++) d[ids[t] * C + c] += dy[t * C + c]
    }
  },

  // per head and query row i, over its keys j (p = probs, 0 where masked):
  //   dv[j] += p_j dout_i;  dp_j = dout_i · v_j;  ds_j = p_j (dp_j - Σ_j' p_j' dp_j')
  //   dq_i += scale Σ_j ds_j k_j;  dk_j += scale ds_j q_i
  attentionBackward(dq, dk, dv, dout, q, k, v, probs, o) {
    const { T, nHead: H, headDim: D, scale, window } = o
    const dqs = f32(dq), dks = f32(dk), dvs = f32(dv), dy = f32(dout), qs = f32(q), ks = f32(k), vs = f32(v), ps = f32(probs)
    const C = H * D
    const dp = new Float64Array(T)
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const first = window > 0 ? Math.max(0, i - window + 1) : 0
        const row = (h * T + i) * T, qi = i * C + h * D
        let sum = 0
        for (let j = first; j <= i; j++) {
          let dot = 0
          for (let d = 0; d < D; d++) dot += dy[qi + d] * vs[j * C + h * D + d]
          dp[j] = dot
          sum += ps[row + j] * dot
        }
        for (let j = first; j <= i; j++) {
          const p = ps[row + j], ds = p * (dp[j] - sum) * scale
          for (let d = 0; d < D; d++) {
            dvs[j * C + h * D + d] += p * dy[qi + d]
            dqs[qi + d] += ds * ks[j * C + h * D + d]
            dks[j * C + h * D + d] += ds * qs[qi + d]
          }
        }
      }
    }
  },

  // the rotation by -angle: x0' = x0 cos + x1 sin,  x1' = x1 cos - x0 sin
  rotaryBackward(dx, table, positions, T, nHead, headDim, rotaryDim) {
    const xs = f32(dx), tab = f32(table)
    const C = nHead * headDim, half = rotaryDim / 2
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < half; i++) {
        const cos = tab[(positions[t] * half + i) * 2], sin = tab[(positions[t] * half + i) * 2 + 1]
        for (let h = 0; h < nHead; h++) {
          const p = t * C + h * headDim + 2 * i
          const x0 = xs[p], x1 = xs[p + 1]
          xs[p] = x0 * cos + x1 * sin
          xs[p + 1] = x1 * cos - x0 * sin
        }
      }
    }
  },

  // loss = logsumexp(x) - x[target];  dx = (softmax(x) - onehot(target)) * scale
  crossEntropy(dlogits, losses, logits, targets, T, V, scale) {
    const d = f32(dlogits), ls = f32(losses), x = f32(logits)
    for (let t = 0; t < T; t++) {
      const target = targets[t]
      if (target < 0) {
        ls[t] = 0
        for (let j = 0; j < V; j++) d[t * V + j] = 0
        continue
      }
      let max = -Infinity
      for (let j = 0; j < V; j++) max = Math.max(max, x[t * V + j])
      let sum = 0
      for (let j = 0; j < V; j++) sum += Math.exp(x[t * V + j] - max)
      const lse = max + Math.log(sum)
      ls[t] = lse - x[t * V + target]
      for (let j = 0; j < V; j++) d[t * V + j] = (Math.exp(x[t * V + j] - lse) - (j === target ? 1 : 0)) * scale
    }
  },
}
