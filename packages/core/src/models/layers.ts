// The pieces every family's block is written with: LayerNorm, Linear, causal self-attention with its
// KV cache, the MLP, residual adds — each a few Device ops on the session's activation buffers, and
// each emitting its trace stage. Family files (gpt2.ts, gpt_neo.ts, gptj.ts, gpt3_modelscope.ts)
// compose them in their reference's order; decoder.ts runs the blocks.
//
// Notation (llm.c): T = token rows in flight, C = hidden size, F = MLP inner size, H = heads,
// D = head size. Nothing here allocates: buffers belong to the session, the Fwd object is reused.

import type { AttentionOptions, Buf, Device } from '../device/types.js'
import type { Arch, Linear, Norm, Weight } from './arch.js'
import type { Tracer } from './tracing.js'

/** The activation buffers of one placement group, owned by a session (llama2.c's RunState). */
export interface RunState {
  /** Token rows one forward step holds. */
  maxT: number
  x: Buf // (maxT, C) residual stream
  xn: Buf // (maxT, C) LayerNorm output
  q: Buf // (maxT, C)
  k: Buf // (maxT, C)
  v: Buf // (maxT, C)
  att: Buf // (maxT, C) attention output before the output projection
  attnOut: Buf // (maxT, C)
  h: Buf // (maxT, F) MLP inner activation
  mlpOut: Buf // (maxT, C)
  scores: Buf // (H, nCtx) attention scratch
  attn: AttentionOptions // the attention op's options, refilled per layer (no object per call)
  /** (H, maxT, nCtx) attention probabilities; allocated on the first traced forward. */
  probs: Buf | null
  /** (maxT, rows of the largest weight part) output of one part of a split weight, or null. */
  partOut: Buf | null
}

/** One layer's cached keys and values of one sequence: (capacity, C) each, written in place. */
export interface LayerKV {
  k: Buf
  v: Buf
}

/** What a block's forward runs with; the decoder fills it once per layer (one object per session). */
export interface Fwd {
  dev: Device
  a: Arch
  /** The buffers of the group the current layer lives in. */
  s: RunState
  /** Rows in flight and the position of the first. */
  T: number
  pos0: number
  /** (maxT) position ids of the rows: pos0, pos0 + 1, ... */
  positions: Int32Array
  /** (maxT) scratch ids for gathering a split embedding table. */
  partIds: Int32Array
  /** The current layer's cache for the sequence in flight. */
  kv: LayerKV
  /** The group's rotary sin/cos table (GPT-J), or null. */
  rotary: Buf | null
  trace: Tracer | undefined
}

/** Emits a trace event for buf[0 .. rows * cols) (builds nothing when no tracer is attached). */
export function trace(f: Fwd, layer: number | null, stage: string, buf: Buf, rows: number, cols: number): void {
  const tracer = f.trace
  if (!tracer) return
  const dev = f.dev, n = rows * cols
  tracer({
    name: layer === null ? stage : `h.${layer}.${stage}`,
    layer,
    shape: [rows, cols],
    pos0: f.pos0,
    read: () => dev.snapshot(buf, 0, n),
  })
}

/** out = LayerNorm(x) over the T rows (nn.LayerNorm: biased variance, eps inside the root). */
export function layerNorm(f: Fwd, out: Buf, x: Buf, n: Norm, layer: number | null, stage: string): void {
  f.dev.layerNorm(out, x, n.g, n.b, f.T, f.a.nEmbd, f.a.eps)
  trace(f, layer, stage, out, f.T, f.a.nEmbd)
}

/** out = a + b over the T rows of C (the residual connection). */
export function add(f: Fwd, out: Buf, a: Buf, b: Buf): void {
  f.dev.add(out, a, b, f.T * f.a.nEmbd)
}

/**
 * out[T, N] = x[T, K] · W^T (+ b): nn.Linear. A weight split into row ranges is multiplied part by
 * part into s.partOut and its columns copied into place.
 */
export function linear(f: Fwd, out: Buf, x: Buf, lin: Linear, T: number, K: number): void {
  const { dev } = f
  const w = lin.w, N = w.shape[0]
  if (w.parts.length === 1) return dev.matmul(out, x, w.parts[0], lin.b ? lin.b.parts[0] : null, T, K, N)
  const tmp = f.s.partOut!
  for (let p = 0; p < w.parts.length; p++) {
    const r0 = w.rowStart[p], rows = w.rowStart[p + 1] - r0
    dev.matmul(tmp, x, w.parts[p], lin.b ? lin.b.parts[p] : null, T, K, rows)
    for (let t = 0; t < T; t++) dev.copy(out, t * N + r0, tmp, t * rows, rows)
  }
}

/** out[t, :] (+)= table[ids[t], :] (nn.Embedding); a split table is gathered part by part. */
export function embedding(f: Fwd, out: Buf, table: Weight, ids: Int32Array, accumulate: boolean): void {
  const { dev, T } = f, C = table.shape[1]
  if (table.parts.length === 1) return dev.embed(out, table.parts[0], ids, T, C, accumulate)
  const local = f.partIds
  for (let p = 0; p < table.parts.length; p++) {
    const r0 = table.rowStart[p], r1 = table.rowStart[p + 1]
    for (let t = 0; t < T; t++) local[t] = ids[t] >= r0 && ids[t] < r1 ? ids[t] - r0 : -1
    dev.embed(out, table.parts[p], local, T, C, accumulate || p > 0)
  }
}

/**
 * Causal self-attention of the T rows of xn over this sequence's cache, into out:
 *   q, k, v = xn·Wq, xn·Wk, xn·Wv  (rotary on q and k when rotaryDim > 0: GPT-J)
 *   the rows' keys and values are stored at positions pos0 .. pos0+T-1 of the cache
 *   att = softmax(scale · q·kᵀ, causal [and local window]) · v      per head
 *   out = att·Wo
 * with the layer's scale and window from config.json (a.layers[l]).
 */
export function selfAttention(f: Fwd, out: Buf, xn: Buf, q: Linear, k: Linear, v: Linear, o: Linear, layer: number, rotaryDim = 0): void {
  const { dev, a, s, T, pos0 } = f
  const C = a.nEmbd
  linear(f, s.q, xn, q, T, C)
  linear(f, s.k, xn, k, T, C)
  linear(f, s.v, xn, v, T, C)
  if (rotaryDim > 0) {
    dev.rotary(s.q, f.rotary!, f.positions, T, a.nHead, a.headDim, rotaryDim)
    dev.rotary(s.k, f.rotary!, f.positions, T, a.nHead, a.headDim, rotaryDim)
  }
  trace(f, layer, 'attn.q', s.q, T, C)
  trace(f, layer, 'attn.k', s.k, T, C)
  trace(f, layer, 'attn.v', s.v, T, C)
  // the KV cache: this chunk's keys and values at positions pos0 .. pos0+T-1
  dev.copy(f.kv.k, pos0 * C, s.k, 0, T * C)
  dev.copy(f.kv.v, pos0 * C, s.v, 0, T * C)
  const kind = a.layers[layer]
  const opts = s.attn
  opts.T = T
  opts.pos0 = pos0
  opts.scale = kind.scale
  opts.window = kind.window
  opts.probs = f.trace ? s.probs : null
  dev.attention(s.att, s.q, f.kv.k, f.kv.v, opts)
  if (f.trace && s.probs) {
    const probs = s.probs, n = a.nHead * T * (pos0 + T)
    f.trace({ name: `h.${layer}.attn.probs`, layer, shape: [a.nHead, T, pos0 + T], pos0, read: () => dev.snapshot(probs, 0, n) })
  }
  linear(f, out, s.att, o, T, C)
  trace(f, layer, 'attn.out', out, T, C)
}

/** The MLP of the T rows of xn into out: fcOut(act(fcIn(xn))). */
export function mlp(f: Fwd, out: Buf, xn: Buf, fcIn: Linear, fcOut: Linear, layer: number): void {
  const { dev, a, s, T } = f
  const C = a.nEmbd, F = a.nInner
  linear(f, s.h, xn, fcIn, T, C)
  dev.activation(s.h, s.h, T * F, a.act)
  trace(f, layer, 'mlp.hidden', s.h, T, F)
  linear(f, out, s.h, fcOut, T, F)
  trace(f, layer, 'mlp.out', out, T, C)
}
