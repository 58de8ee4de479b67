// The decoder-only transformer every family runs: embeddings, N blocks, final LayerNorm, LM head.
// Written only in Device ops; the family files (gpt2.ts, gpt_neo.ts, gptj.ts) supply the Arch and Weights.
//
// Notation (llm.c): T = token rows in flight (<= maxT), C = hidden size, F = MLP inner size,
// H = heads, D = head size, V = LM-head rows, nCtx = KV-cache length.

import type { AttentionOptions, Buf, Device } from '../device/types.js'
import { UsageError } from '../errors.js'
import type { Tracer } from '../trace/tracer.js'
import type { Arch, LayerWeights, SharedWeights } from './arch.js'

/** Every activation buffer, allocated once when the model is created (llama2.c's RunState). */
export interface RunState {
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
  scores: Buf // (nHead, nCtx) attention scratch
  attn: AttentionOptions // the attention op's options, refilled per layer (no object per call)
  xLast: Buf // (C) the row whose next-token logits are wanted
  logits: Buf // (V)
  logitsHost: Float32Array // (V) host copy returned by forward()
}

/** Keys and values of one layer's past positions, per sequence: (nCtx, C) each. Written in place, never concatenated. */
export interface LayerCache {
  k: Buf[]
  v: Buf[]
}

/**
 * Layers live in placement groups (one on most devices; one per 4 GiB wasm32 memory for big models).
 * Each group has its own activations; the residual stream is copied when the next layer is in
 * another group. Group 0 also holds the embeddings, the final norm and the LM head.
 */
export interface Group {
  s: RunState
  /** GPT-J's sin/cos table [nPositions, rotaryDim/2, 2], or null. */
  rotary: Buf | null
  /** [nHead, maxT, nCtx] attention probabilities for tracers; allocated on the first traced call. */
  probs: Buf | null
}

/** Everything forward() reads: the model's weights and buffers, placed once by loadModel. */
export interface Ctx {
  dev: Device
  a: Arch
  shared: SharedWeights
  layers: LayerWeights[]
  /** Group of each layer. */
  layerGroup: number[]
  groups: Group[]
  /** One LayerCache per layer. */
  kv: LayerCache[]
  nCtx: number
  nSeq: number
  ids: Int32Array // (maxT) token ids of the rows in flight
  positions: Int32Array // (maxT) their position ids
}

export interface ForwardOptions {
  /** KV-cache slot (sequence) to read and extend. Default 0. */
  seq?: number
  /** Return the logits of every row ([T, V]) instead of only the last row ([V]). */
  allLogits?: boolean
  tracer?: Tracer
}

export function createRunState(dev: Device, a: Arch, maxT: number, nCtx: number): RunState {
  const C = a.nEmbd
  const scores = dev.alloc(a.nHead * nCtx)
  return {
    maxT,
    scores,
    attn: { T: 0, pos0: 0, nHead: a.nHead, headDim: a.headDim, scale: 1, window: 0, scratch: scores, probs: null },
    x: dev.alloc(maxT * C),
    xn: dev.alloc(maxT * C),
    q: dev.alloc(maxT * C),
    k: dev.alloc(maxT * C),
    v: dev.alloc(maxT * C),
    att: dev.alloc(maxT * C),
    attnOut: dev.alloc(maxT * C),
    h: dev.alloc(maxT * a.nInner),
    mlpOut: dev.alloc(maxT * C),
    xLast: dev.alloc(C),
    logits: dev.alloc(a.nVocab),
    logitsHost: new Float32Array(a.nVocab),
  }
}

export function createLayerCache(dev: Device, a: Arch, nCtx: number, nSeq: number): LayerCache {
  const slots = () => Array.from({ length: nSeq }, () => dev.alloc(nCtx * a.nEmbd))
  return { k: slots(), v: slots() }
}

/** Bytes createRunState allocates, and the KV cache of one layer. */
export function runtimeBytes(a: Arch, maxT: number, nCtx: number, nSeq: number): { activations: number; kvPerLayer: number } {
  const C = a.nEmbd
  return {
    activations: 4 * (maxT * (8 * C + a.nInner) + C + 2 * a.nVocab + a.nHead * nCtx),
    kvPerLayer: 4 * 2 * nSeq * nCtx * C,
  }
}

/**
 * Runs `ids` at positions pos, pos+1, ... of sequence `seq`, storing their keys/values in the cache,
 * and returns next-token logits: the last row ([V], a buffer reused by the next call) or, with
 * allLogits, every row ([T, V], freshly allocated). Prompts longer than maxT run in chunks.
 */
export function forward(m: Ctx, ids: ArrayLike<number>, pos: number, opts: ForwardOptions = {}): Float32Array {
  const { dev, a, shared: w, groups } = m
  const s = groups[0].s
  const seq = opts.seq ?? 0
  const n = ids.length
  checkForward(m, ids, pos, seq)
  const all = opts.allLogits ? new Float32Array(n * a.nVocab) : null
  const C = a.nEmbd, V = a.nVocab
  const trace = opts.tracer

  for (let done = 0; done < n; ) {
    const T = Math.min(s.maxT, n - done)
    const pos0 = pos + done
    for (let t = 0; t < T; t++) {
      m.ids[t] = ids[done + t]
      m.positions[t] = pos0 + t
    }

    // x = wte[ids] (+ wpe[positions])
    dev.embed(s.x, w.wte, m.ids, T, C, false)
    if (w.wpe) dev.embed(s.x, w.wpe, m.positions, T, C, true)
    trace?.(event(dev, 'embed', null, s.x, [T, C], pos0))

    let g = 0 // the group whose s.x holds the residual stream
    for (let l = 0; l < a.nLayer; l++) {
      const gl = m.layerGroup[l]
      if (gl !== g) dev.copy(groups[gl].s.x, 0, groups[g].s.x, 0, T * C)
      g = gl
      if (a.residual === 'parallel') parallelBlock(m, groups[g], l, T, pos0, seq, trace)
      else sequentialBlock(m, groups[g], l, T, pos0, seq, trace)
      trace?.(event(dev, `h.${l}.out`, l, groups[g].s.x, [T, C], pos0))
    }
    if (g !== 0) dev.copy(s.x, 0, groups[g].s.x, 0, T * C)

    dev.layerNorm(s.x, s.x, w.lnF.g, w.lnF.b, T, C, a.eps)
    trace?.(event(dev, 'ln_f', null, s.x, [T, C], pos0))

    if (all) {
      // every row: reuse the MLP buffer when it is big enough, else one row at a time
      for (let t = 0; t < T; t++) {
        dev.copy(s.xLast, 0, s.x, t * C, C)
        dev.matmul(s.logits, s.xLast, w.lmHead.w, w.lmHead.b, 1, C, V)
        dev.read(s.logits, all.subarray((done + t) * V, (done + t + 1) * V))
      }
    } else if (done + T === n) {
      dev.copy(s.xLast, 0, s.x, (T - 1) * C, C)
      dev.matmul(s.logits, s.xLast, w.lmHead.w, w.lmHead.b, 1, C, V)
      dev.read(s.logits, s.logitsHost)
    }
    done += T
  }
  const result = all ?? s.logitsHost
  trace?.({ name: 'logits', layer: null, shape: all ? [n, V] : [1, V], pos0: all ? pos : pos + n - 1, read: () => result.slice() })
  return result
}

/** GPT-2 / GPT-Neo: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)). */
function sequentialBlock(m: Ctx, grp: Group, l: number, T: number, pos0: number, seq: number, trace?: Tracer): void {
  const { dev, a } = m
  const s = grp.s, L = m.layers[l]
  const C = a.nEmbd
  dev.layerNorm(s.xn, s.x, L.ln1.g, L.ln1.b, T, C, a.eps)
  trace?.(event(dev, `h.${l}.ln_1`, l, s.xn, [T, C], pos0))
  attention(m, grp, L, l, T, pos0, seq, trace)
  dev.add(s.x, s.x, s.attnOut, T * C)
  const ln2 = L.ln2!
  dev.layerNorm(s.xn, s.x, ln2.g, ln2.b, T, C, a.eps)
  trace?.(event(dev, `h.${l}.ln_2`, l, s.xn, [T, C], pos0))
  mlp(m, s, L, l, T, pos0, trace)
  dev.add(s.x, s.x, s.mlpOut, T * C)
}

/** GPT-J: h = ln_1(x); x = x + attn(h) + mlp(h) — both branches read the same normed input. */
function parallelBlock(m: Ctx, grp: Group, l: number, T: number, pos0: number, seq: number, trace?: Tracer): void {
  const { dev, a } = m
  const s = grp.s, L = m.layers[l]
  const C = a.nEmbd
  dev.layerNorm(s.xn, s.x, L.ln1.g, L.ln1.b, T, C, a.eps)
  trace?.(event(dev, `h.${l}.ln_1`, l, s.xn, [T, C], pos0))
  attention(m, grp, L, l, T, pos0, seq, trace)
  mlp(m, s, L, l, T, pos0, trace)
  // HF adds in this order: (attn_output + feed_forward_hidden_states) + residual
  dev.add(s.attnOut, s.attnOut, s.mlpOut, T * C)
  dev.add(s.x, s.attnOut, s.x, T * C)
}

/** Causal self-attention of the T rows in s.xn; leaves the projected output in s.attnOut. */
function attention(m: Ctx, grp: Group, L: LayerWeights, l: number, T: number, pos0: number, seq: number, trace?: Tracer): void {
  const { dev, a } = m
  const s = grp.s
  const C = a.nEmbd, kind = a.layers[l]
  dev.matmul(s.q, s.xn, L.q.w, L.q.b, T, C, C)
  dev.matmul(s.k, s.xn, L.k.w, L.k.b, T, C, C)
  dev.matmul(s.v, s.xn, L.v.w, L.v.b, T, C, C)
  if (grp.rotary) {
    dev.rotary(s.q, grp.rotary, m.positions, T, a.nHead, a.headDim, a.rotaryDim)
    dev.rotary(s.k, grp.rotary, m.positions, T, a.nHead, a.headDim, a.rotaryDim)
  }
  if (trace) {
    trace(event(dev, `h.${l}.attn.q`, l, s.q, [T, C], pos0))
    trace(event(dev, `h.${l}.attn.k`, l, s.k, [T, C], pos0))
    trace(event(dev, `h.${l}.attn.v`, l, s.v, [T, C], pos0))
  }
  // store this chunk's keys and values at positions pos0 .. pos0+T-1 of the cache
  const kCache = m.kv[l].k[seq], vCache = m.kv[l].v[seq]
  dev.copy(kCache, pos0 * C, s.k, 0, T * C)
  dev.copy(vCache, pos0 * C, s.v, 0, T * C)
  const nKeys = pos0 + T
  const probs = trace ? (grp.probs ??= dev.alloc(a.nHead * s.maxT * m.nCtx)) : null // tracing only
  const o = s.attn
  o.T = T
  o.pos0 = pos0
  o.scale = kind.scale
  o.window = kind.window
  o.probs = probs
  dev.attention(s.att, s.q, kCache, vCache, o)
  if (trace && probs) trace(event(dev, `h.${l}.attn.probs`, l, probs, [a.nHead, T, nKeys], pos0))
  dev.matmul(s.attnOut, s.att, L.o.w, L.o.b, T, C, C)
  trace?.(event(dev, `h.${l}.attn.out`, l, s.attnOut, [T, C], pos0))
}

/** MLP of the T rows in s.xn: fc_out(act(fc_in(x))) into s.mlpOut. */
function mlp(m: Ctx, s: RunState, L: LayerWeights, l: number, T: number, pos0: number, trace?: Tracer): void {
  const { dev, a } = m
  const C = a.nEmbd, F = a.nInner
  dev.matmul(s.h, s.xn, L.fcIn.w, L.fcIn.b, T, C, F)
  dev.activation(s.h, s.h, T * F, a.act)
  trace?.(event(dev, `h.${l}.mlp.hidden`, l, s.h, [T, F], pos0))
  dev.matmul(s.mlpOut, s.h, L.fcOut.w, L.fcOut.b, T, F, C)
  trace?.(event(dev, `h.${l}.mlp.out`, l, s.mlpOut, [T, C], pos0))
}

function event(dev: Device, name: string, layer: number | null, buf: Buf, shape: number[], pos0: number) {
  const size = shape.reduce((p, d) => p * d, 1)
  return { name, layer, shape, pos0, read: () => { const out = new Float32Array(size); dev.read(buf, out); return out } }
}

/** Validates a forward call before touching any buffer: ids in range, positions inside the cache. */
function checkForward(m: Ctx, ids: ArrayLike<number>, pos: number, seq: number): void {
  const { a } = m
  if (ids.length === 0) fail('no input tokens', 'at least one token id', '0')
  if (!Number.isInteger(seq) || seq < 0 || seq >= m.nSeq) fail('sequence slot out of range', `0 .. ${m.nSeq - 1}`, String(seq))
  if (!Number.isInteger(pos) || pos < 0) fail('bad start position', 'an integer >= 0', String(pos))
  if (pos + ids.length > m.nCtx)
    fail('sequence longer than the context', `at most ${m.nCtx} positions`, `${pos + ids.length}`,
      `this model was created with a context of ${m.nCtx} (the model's limit is ${a.nPositions})`)
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]
    if (!Number.isInteger(id) || id < 0 || id >= a.nVocab) fail(`token id at index ${i} out of range`, `0 .. ${a.nVocab - 1}`, String(id))
  }
}

function fail(what: string, expected: string, found: string, hint?: string): never {
  throw new UsageError({ where: 'forward', what, expected, found, hint })
}
