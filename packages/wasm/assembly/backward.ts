// backward.ts — training kernels (llm.c's *_forward / *_backward), f32 storage only.
//
// Gradients named d<x>. Every gradient output ACCUMULATES (+=) unless a kernel says it stores, so a
// tensor read by several ops collects all its contributions (packages/core/src/device/types.ts, TrainOps).
// Activation backward and the cross-entropy are in act_backward.ts and crossentropy.ts.
//
// layernorm_forward(out, mean, rstd, x, g, b, T, C, eps)
//   norm.ts's layernorm (the same instructions: out is bitwise layernorm's) that also stores
//   mean[t] and rstd[t] = 1 / sqrt(var + eps), f32 [T].
// layernorm_backward(dx, dg, db, dout, x, g, mean, rstd, T, C)            (serial over rows: dg, db are shared)
//   norm = (x - mean) rstd;  dnorm = g dout;  db += dout;  dg += norm dout;
//   dx += (dnorm - mean_c(dnorm) - norm mean_c(dnorm norm)) rstd
//   dx may alias dout (each element is read before it is written, so dx ends as dout + the gradient).
// matmul_backward_dx(r0, r1, dx, dout, w, T, K, N)                         split over rows t of dx
//   dx[t, k] += sum_n dout[t, n] w[n, k]           (w: f32 [N, K], the forward's nn.Linear layout)
// matmul_backward_dw(n0, n1, dw, db, dout, x, T, K, N)                     split over rows n of dw
//   dw[n, k] += sum_t dout[t, n] x[t, k];  db[n] += sum_t dout[t, n]  (db = 0: no bias)
//   Both matmul kernels compute every output element by ONE sequence, whatever tile, split, thread
//   count or token block it falls in (and the _naive twins run the same sequence, so they agree bitwise):
//     dW: acc = 0;  for t ascending: acc = acc + dout * x  (mul, add; no FMA);  out = out + acc
//     dx: for each block of DX_NB = 128 terms (n in [0, 128), [128, 256), ...), ascending:
//           acc = 0;  for n in the block, ascending: acc = acc + dout * w;  out = out + acc
//   (dx adds a partial sum per block of W rows so that a block of W stays in L1 while the tokens pass.)
// embed_backward(dtable, dout, ids, T, C)                                   serial (ids may repeat)
//   dtable[ids[t], :] += dout[t, :] for t < T, in t order; negative ids are skipped.
// rotary_backward(x, table, positions, T, H, D, R)                          in place, as rope.ts's rotary
//   the inverse rotation of each pair: x0' = x0 cos + x1 sin,  x1' = x1 cos - x0 sin (SIMD == _naive bitwise)
// attention_backward(h0, h1, dq, dk, dv, dout, q, k, v, probs, T, H, D, scale, window)   split over heads
//   One sequence, pos0 = 0: q, k, v, dout, dq, dk, dv: f32 [T, H*D]; probs: f32 [H, T, T] as attention
//   wrote them (0 where masked). Query i sees keys j in (i - window, i] (window 0: all j <= i). Per head, query i:
//     dP_j = dout_i . v_j;  r = sum_j P_j dP_j (f64);  g_j = f32(P_j (dP_j - r) scale) (f64, rounded once)
//     dv_j += P_j dout_i;  dq_i += g_j k_j;  dk_j += g_j q_i      (j ascending; queries i ascending)
//   dP is computed twice (once for r, once for g) by the same instructions, so no scratch is needed.
//   A head touches only its own D columns of dq, dk, dv: a split over heads is race-free, and the
//   per-head work does not depend on the split.
import { layernorm_stats, layernorm_stats_naive } from './norm'

// @ts-ignore: decorator
@inline function mac(acc: v128, a: v128, b: v128): v128 {
  return f32x4.add(acc, f32x4.mul(a, b))
}

// @ts-ignore: decorator
@inline function hsum4(a: v128, b: v128, c: v128, d: v128): f32 {
  const s = f32x4.add(f32x4.add(a, b), f32x4.add(c, d))
  return (f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1)) + (f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3))
}

// @ts-ignore: decorator
@inline function hsum(a: v128): f32 {
  return (f32x4.extract_lane(a, 0) + f32x4.extract_lane(a, 1)) + (f32x4.extract_lane(a, 2) + f32x4.extract_lane(a, 3))
}

// @ts-ignore: decorator
@inline function addstore(p: usize, v: v128): void {
  v128.store(p, f32x4.add(v128.load(p), v))
}

// @ts-ignore: decorator
@inline function addstore1(p: usize, v: f32): void {
  store<f32>(p, load<f32>(p) + v)
}

// --- layernorm -----------------------------------------------------------------------------------

/** layernorm (bitwise), storing mean[t] and rstd[t]. */
export function layernorm_forward(out: usize, mean: usize, rstd: usize, x: usize, g: usize, b: usize, T: i32, C: i32, eps: f32): void {
  layernorm_stats(out, mean, rstd, x, g, b, T, C, eps)
}

/** layernorm_naive (bitwise), storing mean[t] and rstd[t]. */
export function layernorm_forward_naive(out: usize, mean: usize, rstd: usize, x: usize, g: usize, b: usize, T: i32, C: i32, eps: f32): void {
  layernorm_stats_naive(out, mean, rstd, x, g, b, T, C, eps)
}

/** The second pass of one element c (scalar): the same operations as the f32x4 body. */
// @ts-ignore: decorator
@inline function ln_bwd1(dxp: usize, dg: usize, db: usize, dyp: usize, xp: usize, g: usize, c: i32, m: f32, r: f32, dmean: f32, dnmean: f32): void {
  const o = <usize>c << 2
  const dy = load<f32>(dyp + o)
  const norm = (load<f32>(xp + o) - m) * r
  const dnorm = load<f32>(g + o) * dy
  addstore1(db + o, dy)
  addstore1(dg + o, norm * dy)
  addstore1(dxp + o, ((dnorm - dmean) - norm * dnmean) * r)
}

export function layernorm_backward(dx: usize, dg: usize, db: usize, dout: usize, x: usize, g: usize, mean: usize, rstd: usize, T: i32, C: i32): void {
  const C16 = C & ~15, C4 = C & ~3
  const fc = <f32>C
  for (let t = 0; t < T; t++) {
    const ro = (<usize>t * <usize>C) << 2
    const xp = x + ro, dyp = dout + ro, dxp = dx + ro
    const m = load<f32>(mean + (<usize>t << 2)), r = load<f32>(rstd + (<usize>t << 2))
    const mv = f32x4.splat(m), rv = f32x4.splat(r)
    // sums of dnorm and dnorm * norm: 16 lanes, then 4, then the scalar tail
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0
    let b0 = a0, b1 = a0, b2 = a0, b3 = a0
    let c = 0
    for (; c < C16; c += 16) {
      const o = <usize>c << 2
      const n0 = f32x4.mul(f32x4.sub(v128.load(xp + o), mv), rv), n1 = f32x4.mul(f32x4.sub(v128.load(xp + o, 16), mv), rv)
      const n2 = f32x4.mul(f32x4.sub(v128.load(xp + o, 32), mv), rv), n3 = f32x4.mul(f32x4.sub(v128.load(xp + o, 48), mv), rv)
      const d0 = f32x4.mul(v128.load(g + o), v128.load(dyp + o)), d1 = f32x4.mul(v128.load(g + o, 16), v128.load(dyp + o, 16))
      const d2 = f32x4.mul(v128.load(g + o, 32), v128.load(dyp + o, 32)), d3 = f32x4.mul(v128.load(g + o, 48), v128.load(dyp + o, 48))
      a0 = f32x4.add(a0, d0); a1 = f32x4.add(a1, d1); a2 = f32x4.add(a2, d2); a3 = f32x4.add(a3, d3)
      b0 = mac(b0, d0, n0); b1 = mac(b1, d1, n1); b2 = mac(b2, d2, n2); b3 = mac(b3, d3, n3)
    }
    for (; c < C4; c += 4) {
      const o = <usize>c << 2
      const n0 = f32x4.mul(f32x4.sub(v128.load(xp + o), mv), rv)
      const d0 = f32x4.mul(v128.load(g + o), v128.load(dyp + o))
      a0 = f32x4.add(a0, d0)
      b0 = mac(b0, d0, n0)
    }
    let sd = hsum4(a0, a1, a2, a3), sdn = hsum4(b0, b1, b2, b3)
    for (; c < C; c++) {
      const o = <usize>c << 2
      const norm = (load<f32>(xp + o) - m) * r
      const dnorm = load<f32>(g + o) * load<f32>(dyp + o)
      sd += dnorm
      sdn += dnorm * norm
    }
    const dmean = sd / fc, dnmean = sdn / fc
    const dmv = f32x4.splat(dmean), dnmv = f32x4.splat(dnmean)
    // accumulate
    for (c = 0; c < C4; c += 4) {
      const o = <usize>c << 2
      const dy = v128.load(dyp + o)
      const norm = f32x4.mul(f32x4.sub(v128.load(xp + o), mv), rv)
      const dnorm = f32x4.mul(v128.load(g + o), dy)
      addstore(db + o, dy)
      addstore(dg + o, f32x4.mul(norm, dy))
      addstore(dxp + o, f32x4.mul(f32x4.sub(f32x4.sub(dnorm, dmv), f32x4.mul(norm, dnmv)), rv))
    }
    for (; c < C; c++) ln_bwd1(dxp, dg, db, dyp, xp, g, c, m, r, dmean, dnmean)
  }
}

/** layernorm_backward with scalar loops (sequential f32 sums). */
export function layernorm_backward_naive(dx: usize, dg: usize, db: usize, dout: usize, x: usize, g: usize, mean: usize, rstd: usize, T: i32, C: i32): void {
  for (let t = 0; t < T; t++) {
    const ro = (<usize>t * <usize>C) << 2
    const xp = x + ro, dyp = dout + ro, dxp = dx + ro
    const m = load<f32>(mean + (<usize>t << 2)), r = load<f32>(rstd + (<usize>t << 2))
    let sd: f32 = 0, sdn: f32 = 0
    for (let c = 0; c < C; c++) {
      const o = <usize>c << 2
      const norm = (load<f32>(xp + o) - m) * r
      const dnorm = load<f32>(g + o) * load<f32>(dyp + o)
      sd += dnorm
      sdn += dnorm * norm
    }
    const dmean = sd / <f32>C, dnmean = sdn / <f32>C
    for (let c = 0; c < C; c++) ln_bwd1(dxp, dg, db, dyp, xp, g, c, m, r, dmean, dnmean)
  }
}

// --- matmul backward -----------------------------------------------------------------------------

/** Tokens per block of matmul_backward_dx (the block's dout and dx rows stay in L2). */
const DX_TB: i32 = 64
/**
 * Rows of W per block of matmul_backward_dx: a 16-column strip of DX_NB rows (DX_NB cache lines, 8 KiB)
 * stays in L1 while every token of the block passes over it. Without it, each token pair streamed the
 * whole N-row strip (3.2 MB and ~38,000 pages for a 50257-row LM head) out of L3.
 */
const DX_NB: i32 = 128
/** Rows of W per block of matmul_backward_dw (dout columns of the block stay in cache while x streams). */
const DW_NB: i32 = 32

/**
 * Rows t in [r0, r1) of dx[T, K] += dout[T, N] · w[N, K].
 * Blocks of DX_TB tokens; in a block, blocks of DX_NB rows of w (each adds its partial sum to dx); in
 * those, k chunks of 16 (then 4, then 1); in a chunk, token pairs (then one token); the n loop innermost,
 * accumulating in registers.
 */
export function matmul_backward_dx(r0: i32, r1: i32, dx: usize, dout: usize, w: usize, T: i32, K: i32, N: i32): void {
  if (r1 > T) r1 = T
  const ws = <usize>K << 2, ds = <usize>N << 2
  for (let tb = r0; tb < r1; tb += DX_TB) {
    const te = min(tb + DX_TB, r1)
    for (let nb = 0; nb < N; nb += DX_NB) {
      const nn = min(DX_NB, N - nb)
      const wb = w + <usize>nb * ws, db = dout + (<usize>nb << 2)
      let k = 0
      for (; k + 16 <= K; k += 16) {
        const wk = wb + (<usize>k << 2)
        let t = tb
        for (; t + 2 <= te; t += 2) {
          let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0
          const d0p = db + <usize>t * ds, d1p = d0p + ds
          let wp = wk
          for (let n = 0; n < nn; n++) {
            const o = <usize>n << 2
            const d0 = v128.load32_splat(d0p + o), d1 = v128.load32_splat(d1p + o)
            const w0 = v128.load(wp), w1 = v128.load(wp, 16), w2 = v128.load(wp, 32), w3 = v128.load(wp, 48)
            a0 = mac(a0, d0, w0); a1 = mac(a1, d0, w1); a2 = mac(a2, d0, w2); a3 = mac(a3, d0, w3)
            b0 = mac(b0, d1, w0); b1 = mac(b1, d1, w1); b2 = mac(b2, d1, w2); b3 = mac(b3, d1, w3)
            wp += ws
          }
          const x0 = dx + <usize>t * ws + (<usize>k << 2), x1 = x0 + ws
          addstore(x0, a0); addstore(x0 + 16, a1); addstore(x0 + 32, a2); addstore(x0 + 48, a3)
          addstore(x1, b0); addstore(x1 + 16, b1); addstore(x1 + 32, b2); addstore(x1 + 48, b3)
        }
        for (; t < te; t++) {
          let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0
          const d0p = db + <usize>t * ds
          let wp = wk
          for (let n = 0; n < nn; n++) {
            const d0 = v128.load32_splat(d0p + (<usize>n << 2))
            a0 = mac(a0, d0, v128.load(wp)); a1 = mac(a1, d0, v128.load(wp, 16))
            a2 = mac(a2, d0, v128.load(wp, 32)); a3 = mac(a3, d0, v128.load(wp, 48))
            wp += ws
          }
          const x0 = dx + <usize>t * ws + (<usize>k << 2)
          addstore(x0, a0); addstore(x0 + 16, a1); addstore(x0 + 32, a2); addstore(x0 + 48, a3)
        }
      }
      for (; k + 4 <= K; k += 4) {
        for (let t = tb; t < te; t++) {
          let a0 = f32x4.splat(0)
          const d0p = db + <usize>t * ds
          let wp = wb + (<usize>k << 2)
          for (let n = 0; n < nn; n++) {
            a0 = mac(a0, v128.load32_splat(d0p + (<usize>n << 2)), v128.load(wp))
            wp += ws
          }
          addstore(dx + <usize>t * ws + (<usize>k << 2), a0)
        }
      }
      for (; k < K; k++) {
        for (let t = tb; t < te; t++) {
          let s: f32 = 0
          const d0p = db + <usize>t * ds
          let wp = wb + (<usize>k << 2)
          for (let n = 0; n < nn; n++) {
            s += load<f32>(d0p + (<usize>n << 2)) * load<f32>(wp)
            wp += ws
          }
          addstore1(dx + <usize>t * ws + (<usize>k << 2), s)
        }
      }
    }
  }
}

/** matmul_backward_dx as a plain scalar loop (the same per-element sequence: bitwise equal). */
export function matmul_backward_dx_naive(r0: i32, r1: i32, dx: usize, dout: usize, w: usize, T: i32, K: i32, N: i32): void {
  if (r1 > T) r1 = T
  for (let t = r0; t < r1; t++) {
    for (let k = 0; k < K; k++) {
      for (let nb = 0; nb < N; nb += DX_NB) {
        const ne = min(nb + DX_NB, N)
        let s: f32 = 0
        for (let n = nb; n < ne; n++) s += load<f32>(dout + ((<usize>t * <usize>N + <usize>n) << 2)) * load<f32>(w + ((<usize>n * <usize>K + <usize>k) << 2))
        addstore1(dx + ((<usize>t * <usize>K + <usize>k) << 2), s)
      }
    }
  }
}

/**
 * Rows n in [n0, n1) of dw[N, K] += dout[T, N]^T · x[T, K], and db[n] += sum_t dout[t, n] (db = 0: none).
 * Blocks of DW_NB rows; in a block, k chunks of 16 (then 4, then 1); in a chunk, row pairs (then
 * one row); the t loop innermost, accumulating in registers.
 */
export function matmul_backward_dw(n0: i32, n1: i32, dw: usize, db: usize, dout: usize, x: usize, T: i32, K: i32, N: i32): void {
  if (n1 > N) n1 = N
  const xs = <usize>K << 2, ds = <usize>N << 2
  for (let nb = n0; nb < n1; nb += DW_NB) {
    const ne = min(nb + DW_NB, n1)
    let k = 0
    for (; k + 16 <= K; k += 16) {
      const xk = x + (<usize>k << 2)
      let n = nb
      for (; n + 2 <= ne; n += 2) {
        let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0
        let dp = dout + (<usize>n << 2), xp = xk
        for (let t = 0; t < T; t++) {
          const d0 = v128.load32_splat(dp), d1 = v128.load32_splat(dp, 4)
          const x0 = v128.load(xp), x1 = v128.load(xp, 16), x2 = v128.load(xp, 32), x3 = v128.load(xp, 48)
          a0 = mac(a0, d0, x0); a1 = mac(a1, d0, x1); a2 = mac(a2, d0, x2); a3 = mac(a3, d0, x3)
          b0 = mac(b0, d1, x0); b1 = mac(b1, d1, x1); b2 = mac(b2, d1, x2); b3 = mac(b3, d1, x3)
          dp += ds; xp += xs
        }
        const w0 = dw + <usize>n * xs + (<usize>k << 2), w1 = w0 + xs
        addstore(w0, a0); addstore(w0 + 16, a1); addstore(w0 + 32, a2); addstore(w0 + 48, a3)
        addstore(w1, b0); addstore(w1 + 16, b1); addstore(w1 + 32, b2); addstore(w1 + 48, b3)
      }
      for (; n < ne; n++) {
        let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0
        let dp = dout + (<usize>n << 2), xp = xk
        for (let t = 0; t < T; t++) {
          const d0 = v128.load32_splat(dp)
          a0 = mac(a0, d0, v128.load(xp)); a1 = mac(a1, d0, v128.load(xp, 16))
          a2 = mac(a2, d0, v128.load(xp, 32)); a3 = mac(a3, d0, v128.load(xp, 48))
          dp += ds; xp += xs
        }
        const w0 = dw + <usize>n * xs + (<usize>k << 2)
        addstore(w0, a0); addstore(w0 + 16, a1); addstore(w0 + 32, a2); addstore(w0 + 48, a3)
      }
    }
    for (; k + 4 <= K; k += 4) {
      for (let n = nb; n < ne; n++) {
        let a0 = f32x4.splat(0)
        let dp = dout + (<usize>n << 2), xp = x + (<usize>k << 2)
        for (let t = 0; t < T; t++) {
          a0 = mac(a0, v128.load32_splat(dp), v128.load(xp))
          dp += ds; xp += xs
        }
        addstore(dw + <usize>n * xs + (<usize>k << 2), a0)
      }
    }
    for (; k < K; k++) {
      for (let n = nb; n < ne; n++) {
        let s: f32 = 0
        let dp = dout + (<usize>n << 2), xp = x + (<usize>k << 2)
        for (let t = 0; t < T; t++) {
          s += load<f32>(dp) * load<f32>(xp)
          dp += ds; xp += xs
        }
        addstore1(dw + <usize>n * xs + (<usize>k << 2), s)
      }
    }
  }
  if (db) dbias(n0, n1, db, dout, T, N)
}

/** db[n] += sum_t dout[t, n] for n in [n0, n1) (sequential in t). */
// @ts-ignore: decorator
@inline function dbias(n0: i32, n1: i32, db: usize, dout: usize, T: i32, N: i32): void {
  const ds = <usize>N << 2
  for (let n = n0; n < n1; n++) {
    let s: f32 = 0
    let dp = dout + (<usize>n << 2)
    for (let t = 0; t < T; t++) { s += load<f32>(dp); dp += ds }
    addstore1(db + (<usize>n << 2), s)
  }
}

/** matmul_backward_dw as a plain scalar loop (the same per-element sequence: bitwise equal). */
export function matmul_backward_dw_naive(n0: i32, n1: i32, dw: usize, db: usize, dout: usize, x: usize, T: i32, K: i32, N: i32): void {
  if (n1 > N) n1 = N
  for (let n = n0; n < n1; n++) {
    for (let k = 0; k < K; k++) {
      let s: f32 = 0
      for (let t = 0; t < T; t++) s += load<f32>(dout + ((<usize>t * <usize>N + <usize>n) << 2)) * load<f32>(x + ((<usize>t * <usize>K + <usize>k) << 2))
      addstore1(dw + ((<usize>n * <usize>K + <usize>k) << 2), s)
    }
  }
  if (db) dbias(n0, n1, db, dout, T, N)
}

// --- embedding -----------------------------------------------------------------------------------

export function embed_backward(dtable: usize, dout: usize, ids: usize, T: i32, C: i32): void {
  for (let t = 0; t < T; t++) {
    const id = load<i32>(ids + (<usize>t << 2))
    if (id < 0) continue
    const dp = dtable + ((<usize>id * <usize>C) << 2), sp = dout + ((<usize>t * <usize>C) << 2)
    let c = 0
    for (; c + 4 <= C; c += 4) { const o = <usize>c << 2; addstore(dp + o, v128.load(sp + o)) }
    for (; c < C; c++) { const o = <usize>c << 2; addstore1(dp + o, load<f32>(sp + o)) }
  }
}

export function embed_backward_naive(dtable: usize, dout: usize, ids: usize, T: i32, C: i32): void {
  for (let t = 0; t < T; t++) {
    const id = load<i32>(ids + (<usize>t << 2))
    if (id < 0) continue
    for (let c = 0; c < C; c++) addstore1(dtable + ((<usize>id * <usize>C + <usize>c) << 2), load<f32>(dout + ((<usize>t * <usize>C + <usize>c) << 2)))
  }
}

// --- attention -----------------------------------------------------------------------------------

/** a . b over D f32 (f32x4 lanes, (l0 + l1) + (l2 + l3), then the scalar tail). */
// @ts-ignore: decorator
@inline function dot(a: usize, b: usize, D: i32): f32 {
  let acc = f32x4.splat(0)
  let d = 0
  for (; d + 4 <= D; d += 4) { const o = <usize>d << 2; acc = mac(acc, v128.load(a + o), v128.load(b + o)) }
  let s = hsum(acc)
  for (; d < D; d++) { const o = <usize>d << 2; s += load<f32>(a + o) * load<f32>(b + o) }
  return s
}

/** y[d] = y[d] + a * x[d] for d < D (the same operations in the f32x4 body and the tail). */
// @ts-ignore: decorator
@inline function axpy(y: usize, a: f32, x: usize, D: i32): void {
  const av = f32x4.splat(a)
  let d = 0
  for (; d + 4 <= D; d += 4) { const o = <usize>d << 2; addstore(y + o, f32x4.mul(av, v128.load(x + o))) }
  for (; d < D; d++) { const o = <usize>d << 2; addstore1(y + o, a * load<f32>(x + o)) }
}

export function attention_backward(
  h0: i32, h1: i32, dq: usize, dk: usize, dv: usize, dout: usize, q: usize, k: usize, v: usize, probs: usize,
  T: i32, H: i32, D: i32, scale: f32, window: i32,
): void {
  const cs = (<usize>H * <usize>D) << 2
  for (let h = h0; h < h1; h++) {
    const ho = (<usize>h * <usize>D) << 2
    for (let i = 0; i < T; i++) {
      const first = window > 0 ? max(0, i - window + 1) : 0
      const ro = <usize>i * cs + ho
      const qp = q + ro, dop = dout + ro, dqp = dq + ro
      const pr = probs + ((<usize>(h * T + i) * <usize>T) << 2)
      let r: f64 = 0
      for (let j = first; j <= i; j++) {
        r += <f64>load<f32>(pr + (<usize>j << 2)) * <f64>dot(dop, v + <usize>j * cs + ho, D)
      }
      for (let j = first; j <= i; j++) {
        const jo = <usize>j * cs + ho
        const p = load<f32>(pr + (<usize>j << 2))
        const dp = dot(dop, v + jo, D)
        const gj = <f32>(<f64>p * (<f64>dp - r) * <f64>scale)
        axpy(dv + jo, p, dop, D)
        axpy(dqp, gj, k + jo, D)
        axpy(dk + jo, gj, qp, D)
      }
    }
  }
}

/** attention_backward with plain scalar loops. */
export function attention_backward_naive(
  h0: i32, h1: i32, dq: usize, dk: usize, dv: usize, dout: usize, q: usize, k: usize, v: usize, probs: usize,
  T: i32, H: i32, D: i32, scale: f32, window: i32,
): void {
  const C = H * D
  for (let h = h0; h < h1; h++) {
    for (let i = 0; i < T; i++) {
      const first = window > 0 ? max(0, i - window + 1) : 0
      const pr = probs + ((<usize>(h * T + i) * <usize>T) << 2)
      const io = <usize>i * <usize>C + <usize>(h * D)
      let r: f64 = 0
      for (let j = first; j <= i; j++) {
        const jo = <usize>j * <usize>C + <usize>(h * D)
        let dp: f32 = 0
        for (let d = 0; d < D; d++) dp += load<f32>(dout + ((io + <usize>d) << 2)) * load<f32>(v + ((jo + <usize>d) << 2))
        r += <f64>load<f32>(pr + (<usize>j << 2)) * <f64>dp
      }
      for (let j = first; j <= i; j++) {
        const jo = <usize>j * <usize>C + <usize>(h * D)
        const p = load<f32>(pr + (<usize>j << 2))
        let dp: f32 = 0
        for (let d = 0; d < D; d++) dp += load<f32>(dout + ((io + <usize>d) << 2)) * load<f32>(v + ((jo + <usize>d) << 2))
        const gj = <f32>(<f64>p * (<f64>dp - r) * <f64>scale)
        for (let d = 0; d < D; d++) {
          const io4 = (io + <usize>d) << 2, jo4 = (jo + <usize>d) << 2
          addstore1(dv + jo4, p * load<f32>(dout + io4))
          addstore1(dq + io4, gj * load<f32>(k + jo4))
          addstore1(dk + jo4, gj * load<f32>(q + io4))
        }
      }
    }
  }
}
