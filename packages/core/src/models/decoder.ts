// What every family shares: the token (+ position) embedding, the layer loop that calls the family's
// block, the final LayerNorm, the LM head (last row, every row, or the log-probabilities of given
// targets on the device), and the KV cache. All of it lives in a Session: a loaded model (Weights)
// is immutable and shared, a session owns the activations and the KV caches of its sequences (slots).
//
// Notation (llm.c): T = token rows in flight (<= maxT), C = hidden size, V = LM-head rows,
// nCtx = the longest sequence a session may run.

import type { Buf, Device } from '../device/types.js'
import { UsageError, show } from '../errors.js'
import type { Arch, SharedWeights } from './arch.js'
import { embedding, layerNorm, linear, trace, type Fwd, type LayerKV, type RunState } from './layers.js'
import type { FamilyModule } from './registry.js'
import type { Tracer } from './tracing.js'
import { SlotTable, checkStep, scoredRows } from './slots.js'
import type { Placement } from './weights.js'

/** A loaded model's weights and their layout on the device: immutable, shared by every session. */
export interface Weights {
  dev: Device
  a: Arch
  family: FamilyModule
  shared: SharedWeights
  /** Block l's weights, of the family's layer type. */
  layers: unknown[]
  /** The placement group (wasm32 memory) of each layer; group 0 holds the embeddings and the head. */
  layerGroup: number[]
  nGroups: number
  /**
   * Per group: GPT-J's sin/cos table [nCtx, rotaryDim/2, 2] (the positions a session may use: check()
   * bounds them by nCtx; a caller running other positions must bound them by nCtx too), or null.
   */
  rotary: (Buf | null)[]
  /** The longest sequence a session may run (LoadOptions.maxContext). */
  nCtx: number
  /** Rows of the largest part of a split weight (0 when no weight is split). */
  maxPartRows: number
  /** Rows per forward step of a session that does not choose (LoadOptions.maxBatchTokens). */
  maxT: number
  /** Where each checkpoint tensor went (training reads gradients and writes checkpoints through these). */
  placements: Placement[]
}

export interface SessionOptions {
  /** Token rows per forward step; longer inputs run in chunks (default: the model's maxBatchTokens, 64). */
  maxBatchTokens?: number
  /**
   * KV positions a slot gets when acquired (default 0: allocated on first use). A slot's cache grows
   * on demand, doubling (at least 64 positions), up to the model's context.
   */
  kvCapacity?: number
}

export interface ForwardOptions {
  /** The sequence (KV-cache slot) to read and extend; default 0, the slot every session starts with. */
  slot?: number
  tracer?: Tracer
  /** With a tracer: also emit h.L.lens, the final norm and LM head applied after every layer. */
  logitLens?: boolean
}

export interface LogProbsOptions {
  slot?: number
  /** Position of ids[0] (default 0); positions before it must be in the slot's cache. */
  pos?: number
  /**
   * The token whose log-probability each row gives (same length as ids; a negative entry gives 0).
   * Default: the next id, ids[t + 1] — the result then has ids.length - 1 entries.
   */
  targets?: ArrayLike<number>
  /**
   * Also tell, per row, whether the target is the row's first argmax (lm-eval's is_greedy; computed on
   * the device beside the log-softmax): logProbs then resolves to `{ logprobs, greedy }`.
   */
  greedy?: boolean
  tracer?: Tracer
}

/** session.logProbs(ids, { greedy: true }): the log-probabilities and, per row, 1 if the target is the row's first argmax (else 0). */
export interface ScoredTokens {
  logprobs: Float32Array
  greedy: Uint8Array
}

/** Bytes of one placement group's activations (createRunState) and of one layer's KV cache for `sequences` full-context slots. */
export function runtimeBytes(a: Arch, maxT: number, nCtx: number, sequences = 1): { activations: number; kvPerLayer: number } {
  const C = a.nEmbd
  return {
    activations: 4 * (maxT * (8 * C + a.nInner) + 4 * C + a.nVocab + maxT + a.nHead * nCtx),
    kvPerLayer: 4 * 2 * sequences * nCtx * C,
  }
}

interface Slot {
  /** Per layer, [cap, C] keys and values. */
  kv: LayerKV[]
  /** Positions the cache holds room for. */
  cap: number
  /** The slot's next-token logits [V] (reused by its next forward). */
  logits: Float32Array
}

const LAST = 0, ALL = 1, LOGPROBS = 2, ROWS = 3
/** What a pass ends with: the last row's logits, every row's, the targets' log-probabilities, or each row's into its own slot (step). */
type Head = typeof LAST | typeof ALL | typeof LOGPROBS | typeof ROWS

/**
 * The state of one user of a model: KV-cache slots (sequences) acquired and released, and the runs over
 * them. Calls run in order; several may be in flight (awaiting their readback) at once, on different
 * slots. Everything above the model (generate, beam search, the scheduler, evaluation) is written against
 * this interface: DecoderSession runs refgpt's own forward on a Device, OrtSession (offload/ort.ts) an
 * exported ONNX graph in ONNX Runtime.
 */
export interface Session {
  /** Token rows per forward step (longer inputs run in chunks). */
  readonly maxBatchTokens: number
  /** Whether forward / logits / logProbs take a tracer (every stage observed); an ONNX graph shows its outputs only. */
  readonly canTrace: boolean
  /** A free KV-cache slot (sequence); slot 0 is acquired when the session is made. */
  acquire(): number
  /** Returns a slot and frees its KV cache. */
  release(slot: number): void
  /** Copies the first nPos cached positions of slot `from` into slot `to`. */
  copySlot(from: number, to: number, nPos: number): void
  /** Positions slot `slot`'s cache has room for now. */
  kvCapacityOf(slot: number): number
  /** Slots acquired and not released. */
  readonly slotsInUse: number
  /** Runs ids at positions pos, pos+1, ... of a slot; resolves to the last row's next-token logits (the slot's own array). */
  forward(ids: ArrayLike<number>, pos: number, opts?: ForwardOptions): Promise<Float32Array>
  /** Like forward, every row's logits, [ids.length, nVocab] (a new array). */
  logits(ids: ArrayLike<number>, pos: number, opts?: ForwardOptions): Promise<Float32Array>
  /** log p(target_t | ids[0 .. t]) for every row (see DecoderSession.logProbs). */
  logProbs(ids: ArrayLike<number>, opts?: LogProbsOptions & { greedy?: false }): Promise<Float32Array>
  logProbs(ids: ArrayLike<number>, opts: LogProbsOptions & { greedy: true }): Promise<ScoredTokens>
  logProbs(ids: ArrayLike<number>, opts?: LogProbsOptions): Promise<Float32Array | ScoredTokens>
  /** One decode step of several sequences together (continuous batching); then logitsOf(slot) holds each row's logits. */
  step(slots: ArrayLike<number>, ids: ArrayLike<number>, positions: ArrayLike<number>, n?: number): Promise<void>
  /** The next-token logits the last forward() or step() of a slot left. */
  logitsOf(slot: number): Float32Array
  /** Frees the session's buffers and slots. */
  dispose(): void
}

/**
 * A Session on refgpt's own forward: activation buffers on the model's Device, and KV-cache slots
 * acquired and released.
 */
export class DecoderSession implements Session {
  readonly maxBatchTokens: number
  readonly canTrace = true
  private readonly groups: RunState[] = []
  private readonly slots = new SlotTable<Slot>()
  private readonly f: Fwd
  private readonly ids: Int32Array
  private readonly targets: Int32Array
  private readonly owned: Buf[] = []
  // group 0: the head's buffers
  private readonly xLast: Buf
  private readonly logits1: Buf
  private logitsT: Buf | null = null
  private lp: Buf | null = null
  private greedyBuf: Buf | null = null
  private lensBufs: { x: Buf; logits: Buf } | null = null
  /** step(): the slot of each row and, per layer, the rows' caches (made on the first step). */
  private stepSlots: Slot[] = []
  private stepKV: LayerKV[] | null = null
  private readonly kvCapacity: number
  private disposed = false

  constructor(
    private readonly w: Weights,
    opts: SessionOptions = {},
  ) {
    const { dev, a } = w
    const maxT = opts.maxBatchTokens ?? w.maxT
    if (!Number.isInteger(maxT) || maxT < 1 || maxT > 4096)
      throw new UsageError({ where: 'createSession', what: 'maxBatchTokens out of range', expected: '1 .. 4096', found: show(opts.maxBatchTokens) })
    const cap = opts.kvCapacity ?? 0
    if (!Number.isInteger(cap) || cap < 0 || cap > w.nCtx)
      throw new UsageError({ where: 'createSession', what: 'kvCapacity out of range', expected: `0 .. ${w.nCtx}`, found: show(opts.kvCapacity) })
    this.maxBatchTokens = maxT
    this.kvCapacity = cap
    for (let g = 0; g < w.nGroups; g++) {
      dev.placement?.use(g)
      this.groups.push(this.createRunState(maxT))
    }
    dev.placement?.use(0)
    this.xLast = this.alloc(a.nEmbd)
    this.logits1 = this.alloc(a.nVocab)
    this.ids = new Int32Array(maxT)
    this.targets = new Int32Array(maxT)
    this.f = {
      dev, a, s: this.groups[0], T: 0, pos0: 0,
      positions: new Int32Array(maxT), partIds: new Int32Array(maxT),
      kv: { k: this.xLast, v: this.xLast }, rotary: null, trace: undefined,
    }
    this.acquire()
  }

  private alloc(n: number): Buf {
    const b = this.w.dev.alloc(n)
    this.owned.push(b)
    return b
  }

  private createRunState(maxT: number): RunState {
    const { a, nCtx, maxPartRows } = this.w
    const C = a.nEmbd
    const scores = this.alloc(a.nHead * nCtx)
    return {
      maxT,
      x: this.alloc(maxT * C),
      xn: this.alloc(maxT * C),
      q: this.alloc(maxT * C),
      k: this.alloc(maxT * C),
      v: this.alloc(maxT * C),
      att: this.alloc(maxT * C),
      attnOut: this.alloc(maxT * C),
      h: this.alloc(maxT * a.nInner),
      mlpOut: this.alloc(maxT * C),
      scores,
      attn: { T: 0, pos0: 0, nHead: a.nHead, headDim: a.headDim, scale: 1, window: 0, scratch: scores, probs: null },
      probs: null,
      partOut: maxPartRows > 0 ? this.alloc(maxT * maxPartRows) : null,
    }
  }

  // --- slots -------------------------------------------------------------------------------------

  /** A free KV-cache slot (sequence) for forward(); slot 0 is acquired when the session is made. */
  acquire(): number {
    this.alive()
    const sl: Slot = { kv: [], cap: 0, logits: new Float32Array(this.w.a.nVocab) }
    const i = this.slots.add(sl)
    if (this.kvCapacity > 0) this.reserve(sl, this.kvCapacity)
    return i
  }

  /** Returns a slot and frees its KV cache. */
  release(slot: number): void {
    const sl = this.slot(slot, 'release')
    for (const kv of sl.kv) {
      this.w.dev.free(kv.k)
      this.w.dev.free(kv.v)
    }
    this.slots.remove(slot)
  }

  /** Copies the first nPos cached positions of slot `from` into slot `to` (beam search, shared prompts). */
  copySlot(from: number, to: number, nPos: number): void {
    const src = this.slot(from, 'copySlot'), dst = this.slot(to, 'copySlot')
    if (!Number.isInteger(nPos) || nPos < 0 || nPos > src.cap)
      throw new UsageError({ where: 'copySlot', what: 'positions out of range', expected: `0 .. ${src.cap} (the cached positions of slot ${from})`, found: show(nPos) })
    if (nPos === 0 || from === to) return
    this.reserve(dst, nPos)
    const n = nPos * this.w.a.nEmbd
    for (let l = 0; l < src.kv.length; l++) {
      this.w.dev.copy(dst.kv[l].k, 0, src.kv[l].k, 0, n)
      this.w.dev.copy(dst.kv[l].v, 0, src.kv[l].v, 0, n)
    }
  }

  /** Positions slot `slot`'s cache has room for now (it grows on demand). */
  kvCapacityOf(slot: number): number {
    return this.slot(slot, 'kvCapacityOf').cap
  }

  /** Slots acquired and not released. */
  get slotsInUse(): number {
    return this.slots.inUse
  }

  private slot(i: number, where: string): Slot {
    this.alive()
    return this.slots.get(i, where)
  }

  /** Grows a slot's cache to hold `need` positions (a new buffer per layer, the old rows copied). */
  private reserve(sl: Slot, need: number): void {
    if (need <= sl.cap) return
    const { dev, a, nCtx, layerGroup } = this.w
    const cap = Math.min(nCtx, Math.max(need, 64, 2 * sl.cap))
    const C = a.nEmbd
    for (let l = 0; l < a.nLayer; l++) {
      dev.placement?.use(layerGroup[l])
      const k = dev.alloc(cap * C), v = dev.alloc(cap * C)
      const old = sl.kv[l]
      if (old) {
        dev.copy(k, 0, old.k, 0, sl.cap * C)
        dev.copy(v, 0, old.v, 0, sl.cap * C)
        dev.free(old.k)
        dev.free(old.v)
      }
      sl.kv[l] = { k, v }
    }
    dev.placement?.use(0)
    sl.cap = cap
  }

  // --- running ------------------------------------------------------------------------------------

  /**
   * Runs ids at positions pos, pos+1, ... of a slot (storing their keys and values) and resolves to
   * the next-token logits of the last row, [nVocab]: the slot's own array, overwritten by its next
   * forward. Positions before pos must already be in the slot's cache.
   */
  async forward(ids: ArrayLike<number>, pos: number, opts: ForwardOptions = {}): Promise<Float32Array> {
    const sl = this.slot(opts.slot ?? 0, 'forward')
    this.check(ids, pos, 'forward')
    this.reserve(sl, pos + ids.length)
    this.pass(ids, pos, sl, LAST, opts.tracer, opts.logitLens === true, null, null)
    await this.w.dev.read(this.logits1, sl.logits)
    return sl.logits
  }

  /** Like forward, but resolves to the logits of every row, [ids.length, nVocab] (a new array): one [T, V] matmul per chunk. */
  async logits(ids: ArrayLike<number>, pos: number, opts: ForwardOptions = {}): Promise<Float32Array> {
    const sl = this.slot(opts.slot ?? 0, 'logits')
    this.check(ids, pos, 'logits')
    this.reserve(sl, pos + ids.length)
    const out = new Float32Array(ids.length * this.w.a.nVocab)
    await this.pass(ids, pos, sl, ALL, opts.tracer, opts.logitLens === true, out, null)
    return out
  }

  /**
   * log p(target_t | ids[0 .. t]) for every row: log-softmax and the gather run on the device, only
   * these floats come back. With the default targets (the next id) the result has ids.length - 1
   * entries: the log-likelihood of ids[1 ..] given ids[0] and what came before in the slot.
   * With `greedy: true` it resolves to `{ logprobs, greedy }`: greedy[t] = 1 when the target is row t's
   * first argmax (lm-eval's is_greedy, decided on the device from the same logits), else 0.
   */
  logProbs(ids: ArrayLike<number>, opts?: LogProbsOptions & { greedy?: false }): Promise<Float32Array>
  logProbs(ids: ArrayLike<number>, opts: LogProbsOptions & { greedy: true }): Promise<ScoredTokens>
  logProbs(ids: ArrayLike<number>, opts?: LogProbsOptions): Promise<Float32Array | ScoredTokens>
  async logProbs(ids: ArrayLike<number>, opts: LogProbsOptions = {}): Promise<Float32Array | ScoredTokens> {
    const sl = this.slot(opts.slot ?? 0, 'logProbs')
    const pos = opts.pos ?? 0
    const greedy = opts.greedy === true
    const rows = scoredRows(ids, opts.targets, this.w.a.nVocab)
    if (!rows) return greedy ? { logprobs: new Float32Array(0), greedy: new Uint8Array(0) } : new Float32Array(0)
    const { run, targets } = rows
    this.check(run, pos, 'logProbs')
    this.reserve(sl, pos + run.length)
    const out = new Float32Array(run.length)
    const g = greedy ? new Float32Array(run.length) : null
    await this.pass(run, pos, sl, LOGPROBS, opts.tracer, false, out, targets, g)
    return g ? { logprobs: out, greedy: Uint8Array.from(g) } : out
  }

  /**
   * One decode step of several sequences together (continuous batching): row b runs token ids[b] at
   * position positions[b] of slot slots[b] (a slot at most once per step; positions before it must be in
   * its cache). The matmuls take all rows at once, so the weights are read once per step instead of once
   * per sequence; attention runs row by row over each slot's own cache. Resolves when every slot's
   * logitsOf(slot) holds its row's next-token logits: the same numbers forward([id], pos, { slot }) gives.
   * More rows than maxBatchTokens run in chunks. `n` (default slots.length): the rows to run, the first n
   * entries of each array (a scheduler passes preallocated arrays: no array per step).
   */
  async step(slots: ArrayLike<number>, ids: ArrayLike<number>, positions: ArrayLike<number>, n = slots.length): Promise<void> {
    const rows = checkStep(slots, ids, positions, n, (i) => this.slot(i, 'step'), this.w.a.nVocab, this.w.nCtx, this.stepSlots)
    if (n === 0) return
    for (let b = 0; b < n; b++) this.reserve(rows[b], positions[b] + 1)
    this.prepareStep()
    await this.pass(ids, 0, null, ROWS, undefined, false, null, null, null, positions, n)
  }

  /** The next-token logits the last forward() or step() of a slot left: the slot's own array, overwritten by its next run. */
  logitsOf(slot: number): Float32Array {
    return this.slot(slot, 'logitsOf').logits
  }

  /** Frees the session's buffers and slots. */
  dispose(): void {
    if (this.disposed) return
    for (const i of this.slots.indices()) this.release(i)
    for (const b of this.owned) this.w.dev.free(b)
    this.owned.length = 0
    this.disposed = true
  }

  private alive(): void {
    if (this.disposed) throw new UsageError({ where: 'session', what: 'the session was disposed' })
  }

  /**
   * One pass over ids in chunks of maxT rows: embeddings, the blocks, the final norm and the head.
   * Every op is issued before this returns; the readbacks of ALL / LOGPROBS are returned to await.
   */
  private pass(ids: ArrayLike<number>, pos: number, sl: Slot | null, head: Head, tracer: Tracer | undefined, lens: boolean,
    out: Float32Array | null, targets: ArrayLike<number> | null, greedy: Float32Array | null = null,
    positions: ArrayLike<number> | null = null, rows = ids.length): Promise<unknown> | null {
    const w = this.w, { dev, a, shared, family, layers, layerGroup } = w
    const f = this.f, groups = this.groups, g0 = groups[0]
    const C = a.nEmbd, V = a.nVocab, n = rows
    if (tracer) this.prepareTrace(lens)
    if (head !== LAST) this.prepareRows()
    f.trace = tracer
    f.rows = sl ? null : this.stepKV
    let reads: Promise<unknown>[] | null = null
    for (let done = 0; done < n; ) {
      const T = Math.min(this.maxBatchTokens, n - done)
      const pos0 = pos + done
      for (let t = 0; t < T; t++) {
        this.ids[t] = ids[done + t]
        f.positions[t] = positions ? positions[done + t] : pos0 + t
      }
      f.T = T
      f.pos0 = pos0
      f.s = g0

      // x = wte[ids] (+ wpe[positions])
      embedding(f, g0.x, shared.wte, this.ids, false)
      if (shared.wpe) embedding(f, g0.x, shared.wpe, f.positions, true)
      trace(f, null, 'embed', g0.x, T, C)

      let g = 0 // the group whose x holds the residual stream
      for (let l = 0; l < a.nLayer; l++) {
        const gl = layerGroup[l]
        if (gl !== g) dev.copy(groups[gl].x, 0, groups[g].x, 0, T * C)
        g = gl
        f.s = groups[g]
        if (sl) f.kv = sl.kv[l]
        else for (let t = 0; t < T; t++) this.stepKV![t] = this.stepSlots[done + t].kv[l]
        f.rotary = w.rotary[g]
        family.block(f, layers[l], l)
        trace(f, l, 'out', f.s.x, T, C)
        if (lens && tracer) this.lens(l)
      }
      if (g !== 0) dev.copy(g0.x, 0, groups[g].x, 0, T * C)
      f.s = g0

      this.finalNorm(g0.x, T)
      trace(f, null, 'ln_f', g0.x, T, C)
      if (head === LAST) {
        if (done + T === n) {
          dev.copy(this.xLast, 0, g0.x, (T - 1) * C, C)
          this.lmHead(this.logits1, this.xLast, 1)
          if (tracer) {
            const b = this.logits1
            tracer({ name: 'logits', layer: null, shape: [1, V], pos0: pos0 + T - 1, read: () => dev.snapshot(b, 0, V) })
          }
        }
      } else {
        const logitsT = this.logitsT!
        this.lmHead(logitsT, g0.x, T)
        trace(f, null, 'logits', logitsT, T, V)
        reads ??= []
        if (head === ALL) reads.push(dev.read(logitsT, out!.subarray(done * V, (done + T) * V)))
        else if (head === ROWS) for (let t = 0; t < T; t++) reads.push(dev.read(logitsT, this.stepSlots[done + t].logits, t * V))
        else {
          for (let t = 0; t < T; t++) this.targets[t] = targets![done + t]
          dev.logProbs(this.lp!, logitsT, this.targets, T, V, greedy ? this.greedyBuf : null)
          reads.push(dev.read(this.lp!, out!.subarray(done, done + T)))
          if (greedy) reads.push(dev.read(this.greedyBuf!, greedy.subarray(done, done + T)))
        }
      }
      done += T
    }
    f.trace = undefined
    f.rows = null
    return reads ? Promise.all(reads) : null
  }

  /** ln_f on T rows of x, in place. */
  private finalNorm(x: Buf, T: number): void {
    const { dev, a, shared } = this.w
    dev.layerNorm(x, x, shared.lnF.g, shared.lnF.b, T, a.nEmbd, a.eps)
  }

  /** out[T, V] = x[T, C] · lm_head^T (+ bias): logits. (f.s must be group 0, where the head lives.) */
  private lmHead(out: Buf, x: Buf, T: number): void {
    linear(this.f, out, x, this.w.shared.lmHead, T, this.w.a.nEmbd)
  }

  /** The logit lens after layer l: the model's own final norm and LM head on the last row of the residual stream. */
  private lens(l: number): void {
    const { dev, a } = this.w
    const f = this.f, s = f.s, C = a.nEmbd, V = a.nVocab
    const { x, logits } = this.lensBufs!
    dev.copy(x, 0, s.x, (f.T - 1) * C, C)
    f.s = this.groups[0]
    this.finalNorm(x, 1)
    this.lmHead(logits, x, 1)
    f.s = s
    f.trace!({ name: `h.${l}.lens`, layer: l, shape: [1, V], pos0: f.pos0 + f.T - 1, read: () => dev.snapshot(logits, 0, V) })
  }

  /** Buffers only a traced forward uses: attention probabilities per group, the logit lens's rows. */
  private prepareTrace(lens: boolean): void {
    const { dev, a, nCtx } = this.w
    for (let g = 0; g < this.groups.length; g++) {
      const s = this.groups[g]
      if (s.probs) continue
      dev.placement?.use(g)
      s.probs = this.alloc(a.nHead * s.maxT * nCtx)
    }
    dev.placement?.use(0)
    if (lens && !this.lensBufs) this.lensBufs = { x: this.alloc(a.nEmbd), logits: this.alloc(a.nVocab) }
  }

  /** Buffers of the every-row heads: [maxT, V] logits, [maxT] log-probabilities and greedy flags (first use only). */
  private prepareRows(): void {
    if (this.logitsT) return
    this.logitsT = this.alloc(this.maxBatchTokens * this.w.a.nVocab)
    this.lp = this.alloc(this.maxBatchTokens)
    this.greedyBuf = this.alloc(this.maxBatchTokens)
  }

  /** Buffers only step() uses: one query / attention row per group, the rows' caches per layer (first use only). */
  private prepareStep(): void {
    if (this.stepKV) return
    const { dev, a } = this.w
    for (let g = 0; g < this.groups.length; g++) {
      dev.placement?.use(g)
      this.groups[g].row = { q: this.alloc(a.nEmbd), att: this.alloc(a.nEmbd) }
    }
    dev.placement?.use(0)
    this.stepKV = new Array<LayerKV>(this.maxBatchTokens)
  }

  /** Validates a call before touching any buffer: ids in range, positions inside the context. */
  private check(ids: ArrayLike<number>, pos: number, where: string): void {
    const { a, nCtx } = this.w
    if (ids.length === 0) fail(where, 'no input tokens', 'at least one token id', '0')
    if (!Number.isInteger(pos) || pos < 0) fail(where, 'bad start position', 'an integer >= 0', show(pos))
    if (pos + ids.length > nCtx)
      fail(where, 'sequence longer than the context', `at most ${nCtx} positions`, `${pos + ids.length}`,
        `this model was loaded with a context of ${nCtx} (the model's limit is ${a.nPositions})`)
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]
      if (!Number.isInteger(id) || id < 0 || id >= a.nVocab) fail(where, `token id at index ${i} out of range`, `0 .. ${a.nVocab - 1}`, show(id))
    }
  }
}

function fail(where: string, what: string, expected: string, found: string, hint?: string): never {
  throw new UsageError({ where, what, expected, found, hint })
}
