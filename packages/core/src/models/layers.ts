// The pieces every family's block is written with: LayerNorm, Linear, causal self-attention with its
// KV cache, the MLP, residual adds — each a few Device ops on the session's activation buffers, and
// each emitting its trace stage. Family files (gpt2.ts, gpt_neo.ts, gptj.ts, gpt3_modelscope.ts)
// compose them in their reference's order; decoder.ts runs the blocks.
//
// Notation (llm.c): T = token rows in flight, C = hidden size, F = MLP inner size, H = heads,
// D = head size. Nothing here allocates: buffers belong to the session, the Fwd object is reused.

import type { AttentionOptions, Buf, Device, TrainOps } from '../device/types.js'
import type { Arch, Linear, Norm, Weight } from './arch.js'
import type { Tracer } from './tracing.js'

/**
 * What a training forward keeps for the backward (llm.c's activations): the same block functions run,
 * and when f.tape is set each piece stores its inputs and statistics here, by layer and name.
 */
export interface Tape {
  /** A buffer of n f32 for (layer, name), the same one at every step (allocated on first use). */
  buffer(layer: number, name: string, n: number): Buf
  /** Copies buf[0 .. n) into the (layer, name) buffer and returns it. */
  keep(layer: number, name: string, buf: Buf, n: number): Buf
  /** The (layer, name) buffer a previous keep/buffer made (the backward's read). */
  get(layer: number, name: string): Buf
}

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
  /** (C) each: one row's query and attention output, for a batched decode step (allocated on its first use). */
  row?: { q: Buf; att: Buf } | null
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
  /**
   * A batched decode step (Session.step): row t is one new token of its own sequence, at positions[t],
   * with this layer's cache rows[t] (kv is unused). null for a forward of one sequence.
   */
  rows?: LayerKV[] | null
  /** The group's rotary sin/cos table (GPT-J), or null. */
  rotary: Buf | null
  trace: Tracer | undefined
  /** Set by a training forward: the pieces keep what the backward needs. */
  tape?: Tape | null
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
  const { T, a, tape } = f
  if (tape && layer !== null) {
    const C = a.nEmbd
    const xs = tape.keep(layer, stage + '.x', x, T * C)
    f.dev.train!.layerNormForward(out, tape.buffer(layer, stage + '.mean', T), tape.buffer(layer, stage + '.rstd', T), xs, n.g, n.b, T, C, a.eps)
  } else f.dev.layerNorm(out, x, n.g, n.b, T, a.nEmbd, a.eps)
  trace(f, layer, stage, out, T, a.nEmbd)
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
  const { dev, a, s, T, pos0, tape } = f
  const C = a.nEmbd
  if (tape) tape.keep(layer, 'attn.xn', xn, T * C)
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
  const kind = a.layers[layer]
  const opts = s.attn
  opts.scale = kind.scale
  opts.window = kind.window
  if (f.rows) attendRows(f, f.rows)
  else {
    // the KV cache: this chunk's keys and values at positions pos0 .. pos0+T-1
    dev.copy(f.kv.k, pos0 * C, s.k, 0, T * C)
    dev.copy(f.kv.v, pos0 * C, s.v, 0, T * C)
    opts.T = T
    opts.pos0 = pos0
    opts.probs = tape ? tape.buffer(layer, 'attn.probs', a.nHead * T * T) : f.trace ? s.probs : null
    if (tape) {
      tape.keep(layer, 'attn.q', s.q, T * C)
      tape.keep(layer, 'attn.k', s.k, T * C)
      tape.keep(layer, 'attn.v', s.v, T * C)
    }
    dev.attention(s.att, s.q, f.kv.k, f.kv.v, opts)
    if (tape) tape.keep(layer, 'attn.att', s.att, T * C)
    if (f.trace && opts.probs) {
      const probs = opts.probs, n = a.nHead * T * (pos0 + T)
      f.trace({ name: `h.${layer}.attn.probs`, layer, shape: [a.nHead, T, pos0 + T], pos0, read: () => dev.snapshot(probs, 0, n) })
    }
  }
  linear(f, out, s.att, o, T, C)
  trace(f, layer, 'attn.out', out, T, C)
}

/**
 * Attention of a batched decode step: each row is the next token of a different sequence, so each row
 * stores its key and value in its own cache at its own position and attends over that cache alone
 * (the same op, with T = 1, that a forward of that sequence runs; the row is copied in and out of s.row).
 */
function attendRows(f: Fwd, rows: LayerKV[]): void {
  const { dev, s, T, positions } = f
  const C = f.a.nEmbd, opts = s.attn, row = s.row!
  opts.T = 1
  opts.probs = null
  for (let t = 0; t < T; t++) {
    const kv = rows[t], p = positions[t]
    dev.copy(kv.k, p * C, s.k, t * C, C)
    dev.copy(kv.v, p * C, s.v, t * C, C)
    dev.copy(row.q, 0, s.q, t * C, C)
    opts.pos0 = p
    dev.attention(row.att, row.q, kv.k, kv.v, opts)
    dev.copy(s.att, t * C, row.att, 0, C)
  }
}

/** The MLP of the T rows of xn into out: fcOut(act(fcIn(xn))). */
export function mlp(f: Fwd, out: Buf, xn: Buf, fcIn: Linear, fcOut: Linear, layer: number): void {
  const { dev, a, s, T, tape } = f
  const C = a.nEmbd, F = a.nInner
  if (tape) tape.keep(layer, 'mlp.xn', xn, T * C)
  linear(f, s.h, xn, fcIn, T, C)
  if (tape) tape.keep(layer, 'mlp.pre', s.h, T * F)
  dev.activation(s.h, s.h, T * F, a.act)
  if (tape) tape.keep(layer, 'mlp.h', s.h, T * F)
  trace(f, layer, 'mlp.hidden', s.h, T, F)
  linear(f, out, s.h, fcOut, T, F)
  trace(f, layer, 'mlp.out', out, T, C)
}

// --- backward (training) ----------------------------------------------------------------------------
// Each piece's backward mirrors its forward above, reading what the forward kept on the tape.
// Gradients accumulate (+=): a block's backward adds into the residual-stream gradient it is given.

/** A Linear's gradient: [out, in] (+ [out]). */
export interface LinearGrad {
  w: Buf
  b: Buf | null
}
/** A LayerNorm's gradient. */
export interface NormGrad {
  g: Buf
  b: Buf
}

/** The gradients of a family's layer weights: the same tree with every Linear and Norm replaced by its gradient. */
export type GradOf<T> = T extends Linear ? LinearGrad : T extends Norm ? NormGrad : { [K in keyof T]: GradOf<T[K]> }

/** What a block's backward runs with (one object per trainer, filled per layer). */
export interface Bwd {
  dev: Device
  train: TrainOps
  a: Arch
  tape: Tape
  T: number
  positions: Int32Array
  rotary: Buf | null
  /** Scratch gradients of the block's intermediates: (maxT, C) x4 and (maxT, F). */
  dxn: Buf
  dq: Buf
  dk: Buf
  dv: Buf
  datt: Buf
  dh: Buf
}

/** dx += LayerNorm backward of dout (the norm's input, mean and rstd from the tape). */
export function layerNormBackward(b: Bwd, dx: Buf, dout: Buf, n: Norm, g: NormGrad, layer: number, stage: string): void {
  const { tape, T, a } = b
  b.train.layerNormBackward(dx, g.g, g.b, dout, tape.get(layer, stage + '.x'), n.g, tape.get(layer, stage + '.mean'), tape.get(layer, stage + '.rstd'), T, a.nEmbd)
}

/** dx += dout · W; dW += doutᵀ · x; db += Σ dout (dx null: not wanted). Training weights are one buffer each. */
export function linearBackward(b: Bwd, dx: Buf | null, dout: Buf, x: Buf, lin: Linear, g: LinearGrad, K: number): void {
  b.train.matmulBackward(dx, g.w, g.b, dout, x, lin.w.parts[0], b.T, K, lin.w.shape[0])
}

/** Backward of selfAttention: dxn += the gradient of its input, given dout (the gradient of out). */
export function selfAttentionBackward(b: Bwd, dxn: Buf, dout: Buf, q: Linear, k: Linear, v: Linear, o: Linear,
  gq: LinearGrad, gk: LinearGrad, gv: LinearGrad, go: LinearGrad, layer: number, rotaryDim = 0): void {
  const { tape, T, a, train } = b
  const C = a.nEmbd, n = T * C
  // out = att · Wo
  b.dev.zero(b.datt, n)
  linearBackward(b, b.datt, dout, tape.get(layer, 'attn.att'), o, go, C)
  // att = softmax(scale q kᵀ) v
  b.dev.zero(b.dq, n)
  b.dev.zero(b.dk, n)
  b.dev.zero(b.dv, n)
  const kind = a.layers[layer]
  const opts: AttentionOptions = { T, pos0: 0, nHead: a.nHead, headDim: a.headDim, scale: kind.scale, window: kind.window }
  train.attentionBackward(b.dq, b.dk, b.dv, b.datt, tape.get(layer, 'attn.q'), tape.get(layer, 'attn.k'), tape.get(layer, 'attn.v'), tape.get(layer, 'attn.probs'), opts)
  if (rotaryDim > 0) {
    train.rotaryBackward(b.dq, b.rotary!, b.positions, T, a.nHead, a.headDim, rotaryDim)
    train.rotaryBackward(b.dk, b.rotary!, b.positions, T, a.nHead, a.headDim, rotaryDim)
  }
  // q, k, v = xn · Wq, xn · Wk, xn · Wv
  const xn = tape.get(layer, 'attn.xn')
  linearBackward(b, dxn, b.dq, xn, q, gq, C)
  linearBackward(b, dxn, b.dk, xn, k, gk, C)
  linearBackward(b, dxn, b.dv, xn, v, gv, C)
}

/** Backward of mlp: dxn += the gradient of its input, given dout. */
export function mlpBackward(b: Bwd, dxn: Buf, dout: Buf, fcIn: Linear, fcOut: Linear, gIn: LinearGrad, gOut: LinearGrad, layer: number): void {
  const { tape, T, a, train } = b
  const F = a.nInner
  b.dev.zero(b.dh, T * F)
  linearBackward(b, b.dh, dout, tape.get(layer, 'mlp.h'), fcOut, gOut, F)
  train.activationBackward(b.dh, tape.get(layer, 'mlp.pre'), b.dh, T * F, a.act)
  linearBackward(b, dxn, b.dh, tape.get(layer, 'mlp.xn'), fcIn, gIn, a.nEmbd)
}
