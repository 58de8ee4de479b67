// attention.ts — causal self-attention of T queries over a KV cache, heads split across threads.
//
// attention(h0, h1, out, q, kc, vc, probs, scratch, T, pos0, H, D, scale, window), heads h in [h0, h1):
//   q, out:  f32 [T, H*D]       query t sits at position i = pos0 + t
//   kc, vc:  f32 [nCtx, H*D]    rows 0 .. pos0+T-1 hold the keys / values of those positions
//   probs:   0, or f32 [H, T, pos0+T] — written with the softmax probabilities, 0 where masked
//   scratch: f32 [H, pos0+T]    head h uses row h only (threads splitting heads never share scratch)
// Query i sees keys j in (i - window, i] (window 0: all j <= i). For each head and query:
//   s_j = (q · k_j) * scale;  p_j = exp(s_j - max) / sum;  out = sum_j p_j v_j   (masked keys: p = 0)
// Every score / output element is computed by the same instruction sequence wherever it falls
// (4-key groups or single keys; 16-wide or 4-wide or scalar d chunks are per-element sequential
// in j), so results are independent of the head split.
//
// Decode (T = 1) over a cold cache reads it at 13-15 GB/s a thread, about half its rate in cache. Measured
// and dropped (BENCHMARKS.md "Session 13"): a cache-rows-outer decode loop (the pool's one-head chunks read
// the rows a head at a time anyway; end to end x0.90), a head-major cache (one head's contiguous keys read
// no faster than the strided ones), reads ahead (x1.0 a load a row, x0.65-0.8 every line of a row), and a
// weighted_sum with the value rows outer and the output in L1 (prefill attention x1.3-1.4 in the kernel
// benchmark, but no change end to end and GPT-2's decode attention 3.20 -> 3.49 ms a token).
import { hsum } from './gemm'
import { expf1, expsub_sum, divide, rowmax } from './softmax'

// @ts-ignore: decorator
@inline function mac(acc: v128, a: v128, b: v128): v128 {
  return f32x4.add(acc, f32x4.mul(a, b))
}

/** Scalar d-tail of a dot product, after the f32x4 part. */
// @ts-ignore: decorator
@inline function dot_tail(s: f32, a: usize, b: usize, D4: i32, D: i32): f32 {
  for (let d = D4; d < D; d++) s += load<f32>(a + (<usize>d << 2)) * load<f32>(b + (<usize>d << 2))
  return s
}

/**
 * Scores of one query against keys j in [first, i]: sc[j - first] = (q · k_j) * scale.
 * qp: the query's head slice; kp: key row 0's head slice; cs: the cache row stride in bytes.
 */
// @ts-ignore: decorator
@inline function scores(sc: usize, qp: usize, kp: usize, cs: usize, first: i32, i: i32, D: i32, scale: f32): void {
  const D4 = D & ~3
  let j = first
  for (; j + 4 <= i + 1; j += 4) {
    const k0 = kp + <usize>j * cs, k1 = k0 + cs, k2 = k1 + cs, k3 = k2 + cs
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0
    for (let d = 0; d < D4; d += 4) {
      const o = <usize>d << 2
      const qv = v128.load(qp + o)
      a0 = mac(a0, qv, v128.load(k0 + o)); a1 = mac(a1, qv, v128.load(k1 + o))
      a2 = mac(a2, qv, v128.load(k2 + o)); a3 = mac(a3, qv, v128.load(k3 + o))
    }
    const p = sc + (<usize>(j - first) << 2)
    store<f32>(p, dot_tail(hsum(a0), qp, k0, D4, D) * scale)
    store<f32>(p, dot_tail(hsum(a1), qp, k1, D4, D) * scale, 4)
    store<f32>(p, dot_tail(hsum(a2), qp, k2, D4, D) * scale, 8)
    store<f32>(p, dot_tail(hsum(a3), qp, k3, D4, D) * scale, 12)
  }
  for (; j <= i; j++) {
    const k0 = kp + <usize>j * cs
    let a0 = f32x4.splat(0)
    for (let d = 0; d < D4; d += 4) {
      const o = <usize>d << 2
      a0 = mac(a0, v128.load(qp + o), v128.load(k0 + o))
    }
    store<f32>(sc + (<usize>(j - first) << 2), dot_tail(hsum(a0), qp, k0, D4, D) * scale)
  }
}

/** op[d] = sum_{j in [first, i]} p[j - first] * v_j[d] for d < D, sequential in j per element. */
// @ts-ignore: decorator
@inline function weighted_sum(op: usize, sc: usize, vp: usize, cs: usize, first: i32, i: i32, D: i32): void {
  let d = 0
  for (; d + 16 <= D; d += 16) {
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0
    let v = vp + (<usize>first * cs) + (<usize>d << 2)
    for (let j = first; j <= i; j++) {
      const p = v128.load32_splat(sc + (<usize>(j - first) << 2))
      a0 = mac(a0, p, v128.load(v)); a1 = mac(a1, p, v128.load(v, 16))
      a2 = mac(a2, p, v128.load(v, 32)); a3 = mac(a3, p, v128.load(v, 48))
      v += cs
    }
    const o = op + (<usize>d << 2)
    v128.store(o, a0); v128.store(o, a1, 16); v128.store(o, a2, 32); v128.store(o, a3, 48)
  }
  for (; d + 4 <= D; d += 4) {
    let a0 = f32x4.splat(0)
    let v = vp + (<usize>first * cs) + (<usize>d << 2)
    for (let j = first; j <= i; j++) {
      a0 = mac(a0, v128.load32_splat(sc + (<usize>(j - first) << 2)), v128.load(v))
      v += cs
    }
    v128.store(op + (<usize>d << 2), a0)
  }
  for (; d < D; d++) {
    let s: f32 = 0
    let v = vp + (<usize>first * cs) + (<usize>d << 2)
    for (let j = first; j <= i; j++) {
      s += load<f32>(sc + (<usize>(j - first) << 2)) * load<f32>(v)
      v += cs
    }
    store<f32>(op + (<usize>d << 2), s)
  }
}

/** probs row of one (head, query): 0 for j < first and j > i, p[j - first] on [first, i]. */
// @ts-ignore: decorator
@inline function write_probs(pr: usize, sc: usize, first: i32, i: i32, nKeys: i32): void {
  for (let j = 0; j < first; j++) store<f32>(pr + (<usize>j << 2), 0)
  memory.copy(pr + (<usize>first << 2), sc, <usize>(i - first + 1) << 2)
  for (let j = i + 1; j < nKeys; j++) store<f32>(pr + (<usize>j << 2), 0)
}

export function attention(
  h0: i32, h1: i32, out: usize, q: usize, kc: usize, vc: usize, probs: usize, scratch: usize,
  T: i32, pos0: i32, H: i32, D: i32, scale: f32, window: i32,
): void {
  const nKeys = pos0 + T
  const cs = (<usize>H * <usize>D) << 2
  for (let h = h0; h < h1; h++) {
    const ho = (<usize>h * <usize>D) << 2
    const sc = scratch + ((<usize>h * <usize>nKeys) << 2)
    for (let t = 0; t < T; t++) {
      const i = pos0 + t
      const first = window > 0 ? max(0, i - window + 1) : 0
      const n = i - first + 1
      const qp = q + <usize>t * cs + ho
      scores(sc, qp, kc + ho, cs, first, i, D, scale)
      const m = rowmax(sc, n)
      divide(sc, n, expsub_sum(sc, n, m))
      weighted_sum(out + <usize>t * cs + ho, sc, vc + ho, cs, first, i, D)
      if (probs) write_probs(probs + ((<usize>(h * T + t) * <usize>nKeys) << 2), sc, first, i, nKeys)
    }
  }
}

/** attention with plain scalar loops (same exp). */
export function attention_naive(
  h0: i32, h1: i32, out: usize, q: usize, kc: usize, vc: usize, probs: usize, scratch: usize,
  T: i32, pos0: i32, H: i32, D: i32, scale: f32, window: i32,
): void {
  const nKeys = pos0 + T
  const C = H * D
  for (let h = h0; h < h1; h++) {
    const sc = scratch + ((<usize>h * <usize>nKeys) << 2)
    for (let t = 0; t < T; t++) {
      const i = pos0 + t
      const first = window > 0 ? max(0, i - window + 1) : 0
      const qo = t * C + h * D
      let m = <f32>-Infinity
      for (let j = first; j <= i; j++) {
        let s: f32 = 0
        for (let d = 0; d < D; d++) s += load<f32>(q + (<usize>(qo + d) << 2)) * load<f32>(kc + ((<usize>j * <usize>C + <usize>(h * D + d)) << 2))
        s *= scale
        store<f32>(sc + (<usize>j << 2), s)
        m = max(m, s)
      }
      let sum: f32 = 0
      for (let j = first; j <= i; j++) {
        const e = expf1(load<f32>(sc + (<usize>j << 2)) - m)
        store<f32>(sc + (<usize>j << 2), e)
        sum += e
      }
      for (let j = first; j <= i; j++) store<f32>(sc + (<usize>j << 2), load<f32>(sc + (<usize>j << 2)) / sum)
      for (let d = 0; d < D; d++) {
        let s: f32 = 0
        for (let j = first; j <= i; j++) s += load<f32>(sc + (<usize>j << 2)) * load<f32>(vc + ((<usize>j * <usize>C + <usize>(h * D + d)) << 2))
        store<f32>(out + (<usize>(qo + d) << 2), s)
      }
      if (probs) {
        const pr = probs + ((<usize>(h * T + t) * <usize>nKeys) << 2)
        for (let j = 0; j < nKeys; j++) store<f32>(pr + (<usize>j << 2), j >= first && j <= i ? load<f32>(sc + (<usize>j << 2)) : 0)
      }
    }
  }
}
