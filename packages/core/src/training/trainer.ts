// A training step (llm.c's gpt2_forward + gpt2_backward): the model's own block functions run with a
// tape that keeps what the backward needs, then each family's blockBackward mirrors its block in
// reverse. Gradients accumulate in device buffers, one per parameter (a tied embedding has one:
// the lookup's and the LM head's contributions add up in it).
//
//   forward (per example, T tokens):  x = wte[ids] + wpe[pos];  x = block_l(x) for every layer;
//                                     xf = ln_f(x);  logits = xf · lm_headᵀ (+ b)
//   loss:     mean over every target != -100 of the whole batch of  logsumexp(logits_t) - logits_t[target_t]
//   backward: dlogits = (softmax - onehot) / count;  dxf = dlogits · lm_head, d lm_head += dlogitsᵀ xf
//             dx = ln_f'(dxf);  dx = blockBackward_l(dx) for l = L-1 .. 0;  d wte[ids] += dx, d wpe[pos] += dx
//
// Examples run one at a time (T rows each); the batch is the sum of their gradients. Training
// arithmetic is f32 on F32 weights.

import type { Buf, Device, TrainOps } from '../device/types.js'
import { UsageError, show } from '../errors.js'
import type { Linear, Norm } from '../models/arch.js'
import type { Weights } from '../models/decoder.js'
import { embedding, layerNorm, linear, type Bwd, type Fwd, type GradOf, type LinearGrad, type NormGrad, type RunState, type Tape } from '../models/layers.js'
import type { Model } from '../models/model.js'
import type { Placement } from '../models/weights.js'

/** One training example: targets[t] is the id position t should predict (usually ids[t + 1]), or -100. */
export interface Example {
  inputIds: ArrayLike<number>
  targets: ArrayLike<number>
}

/** A trainable tensor: one device buffer and its gradient, named after the checkpoint tensor it came from. */
export interface TrainParam {
  /** The checkpoint name; a part of a fused QKV tensor adds its rows: `...query_key_value.weight[32:64]`. */
  name: string
  /** Elements. */
  n: number
  weight: Buf
  grad: Buf
}

export interface TrainerOptions {
  /** The longest example in tokens (the activations kept per layer are sized by it). */
  maxLength: number
}

export const IGNORE_INDEX = -100

export class Trainer {
  readonly params: TrainParam[] = []
  readonly maxLength: number
  private readonly w: Weights
  private readonly dev: Device
  private readonly train: TrainOps
  private readonly byBuf = new Map<Buf, TrainParam>()
  private readonly layerGrads: unknown[]
  private readonly shared: { wte: Buf; wpe: Buf | null; lnF: NormGrad; lmHead: LinearGrad }
  private readonly f: Fwd
  private readonly b: Bwd
  private readonly tape: Tape
  private readonly ids: Int32Array
  private readonly targets: Int32Array
  private readonly logits: Buf
  private readonly losses: Buf
  private readonly lossHost: Float32Array
  private readonly dx: Buf
  private readonly dxf: Buf

  constructor(model: Model, opts: TrainerOptions) {
    const w = (this.w = model.weights)
    const { dev, a } = w
    const bad = (what: string, hint?: string, found?: string): never => {
      throw new UsageError({ where: 'training', what, found, hint })
    }
    if (!dev.train) bad(`the ${dev.name} device has no training ops`, 'use --device js or wasm')
    const storage = Object.keys(model.info.storageDtypes)
    if (storage.includes('Q8')) bad('q8 weights cannot be trained', 'load the model with dtype F32 (f16 / bf16 checkpoints are widened)')
    if (storage.some((s) => s !== 'F32')) bad('training needs F32 weights', 'load the model with dtype F32: f16 / bf16 weights are widened to f32', storage.join('+'))
    if (w.nGroups !== 1) bad('training a model spread over several wasm memories is not supported', 'the model needs less than 4 GiB for weights, gradients and optimizer state')
    if (w.maxPartRows > 0) bad('training weights split into several device buffers is not supported', 'load without maxBufferBytes')
    const T = opts.maxLength
    // the session's context (the rotary table and KV cache hold maxContext positions, at most n_positions)
    if (!Number.isInteger(T) || T < 2 || T > w.nCtx) bad('maxLength out of range', `2 .. ${w.nCtx} (the context the model was loaded with)`, show(T))
    this.maxLength = T
    this.dev = dev
    this.train = dev.train!

    // one gradient per distinct device buffer
    for (const p of w.placements) {
      const buf = p.weight.parts[0]
      if (this.byBuf.has(buf)) continue
      const n = p.weight.shape.reduce((x, d) => x * d, 1)
      // a part of a fused tensor (GPT-2's c_attn, GPT-3's query_key_value) is named with its rows
      const rows = p.weight.shape[0], storedRows = p.conv1d ? p.stored[1] : p.stored[0]
      const name = rows === storedRows ? p.name : `${p.name}[${p.row0}:${p.row0 + rows}]`
      this.train.trainable?.(buf) // rows in order, as the training ops take them (wasm keeps f32 in row groups for inference)
      const param: TrainParam = { name, n, weight: buf, grad: dev.alloc(n) }
      this.byBuf.set(buf, param)
      this.params.push(param)
    }
    const gradOf = (b: Buf) => this.byBuf.get(b)!.grad
    const mirror = (v: unknown): unknown => {
      if (isLinear(v)) return { w: gradOf(v.w.parts[0]), b: v.b ? gradOf(v.b.parts[0]) : null }
      if (isNorm(v)) return { g: gradOf(v.g), b: gradOf(v.b) }
      if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, mirror(x)]))
      return v
    }
    this.layerGrads = w.layers.map(mirror)
    const s = w.shared
    this.shared = {
      wte: gradOf(s.wte.parts[0]),
      wpe: s.wpe ? gradOf(s.wpe.parts[0]) : null,
      lnF: mirror(s.lnF) as NormGrad,
      lmHead: mirror(s.lmHead) as LinearGrad,
    }

    const C = a.nEmbd, F = a.nInner, V = a.nVocab
    const alloc = (n: number) => dev.alloc(n)
    const state: RunState = {
      maxT: T,
      x: alloc(T * C), xn: alloc(T * C), q: alloc(T * C), k: alloc(T * C), v: alloc(T * C), att: alloc(T * C),
      attnOut: alloc(T * C), h: alloc(T * F), mlpOut: alloc(T * C), scores: alloc(a.nHead * T),
      attn: { T: 0, pos0: 0, nHead: a.nHead, headDim: a.headDim, scale: 1, window: 0, scratch: null, probs: null },
      probs: null, partOut: null,
    }
    state.attn.scratch = state.scores
    this.tape = createTape(dev)
    this.f = {
      dev, a, s: state, T: 0, pos0: 0, positions: new Int32Array(T), partIds: new Int32Array(T),
      kv: { k: alloc(T * C), v: alloc(T * C) }, rotary: w.rotary[0], trace: undefined, tape: this.tape,
    }
    this.b = {
      dev, train: this.train, a, tape: this.tape, T: 0, positions: this.f.positions, rotary: w.rotary[0],
      dxn: alloc(T * C), dq: alloc(T * C), dk: alloc(T * C), dv: alloc(T * C), datt: alloc(T * C), dh: alloc(T * F),
    }
    this.ids = new Int32Array(T)
    this.targets = new Int32Array(T)
    this.logits = alloc(T * V)
    this.losses = alloc(T)
    this.lossHost = new Float32Array(T)
    this.dx = alloc(T * C)
    this.dxf = alloc(T * C)
  }

  /** Sets every gradient to 0 (optimizer.zero_grad()). */
  zeroGrad(): void {
    for (const p of this.params) this.dev.zero(p.grad, p.n)
  }

  /**
   * Forward and backward over a batch: adds d(loss)/d(param) to every gradient, where loss is the
   * mean cross-entropy over all targets != -100 of the batch (times lossScale). Resolves to that
   * loss (unscaled) and the number of targets.
   */
  async forwardBackward(batch: readonly Example[], opts: { lossScale?: number } = {}): Promise<{ loss: number; tokens: number }> {
    let count = 0
    batch.forEach((e, i) => {
      const n = e.inputIds.length
      if (n < 1 || n > this.maxLength) throw new UsageError({ where: 'training', what: `example ${i} has ${n} tokens`, expected: `1 .. ${this.maxLength} (maxLength)` })
      if (e.targets.length !== n) throw new UsageError({ where: 'training', what: `example ${i}: targets and inputIds differ in length`, expected: String(n), found: String(e.targets.length) })
      for (let t = 0; t < n; t++) {
        const id = e.inputIds[t], target = e.targets[t]
        if (!Number.isInteger(id) || id < 0 || id >= this.w.a.nVocab) throw new UsageError({ where: 'training', what: `example ${i}: token id at ${t} out of range`, expected: `0 .. ${this.w.a.nVocab - 1}`, found: show(id) })
        if (!Number.isInteger(target) || target >= this.w.a.nVocab || (target < 0 && target !== IGNORE_INDEX))
          throw new UsageError({ where: 'training', what: `example ${i}: target at ${t} out of range`, expected: `0 .. ${this.w.a.nVocab - 1} or -100`, found: show(target) })
        if (target >= 0) count++
      }
    })
    if (count === 0) throw new UsageError({ where: 'training', what: 'the batch has no targets (all -100)' })
    let sum = 0
    const lossScale = opts.lossScale ?? 1 // gradient accumulation: 1 / accumulation steps, as HF Trainer scales the loss
    for (const e of batch) sum += await this.example(e, lossScale / count)
    return { loss: sum / count, tokens: count }
  }

  /** One example: forward with the tape, loss, backward. Resolves to its summed loss. */
  private async example(e: Example, scale: number): Promise<number> {
    const { dev, train, f, b, w } = this
    const { a, shared, layers, family } = w
    const T = e.inputIds.length, C = a.nEmbd, V = a.nVocab
    for (let t = 0; t < T; t++) {
      this.ids[t] = e.inputIds[t]
      this.targets[t] = e.targets[t] < 0 ? -1 : e.targets[t]
      f.positions[t] = t
    }
    f.T = b.T = T
    f.pos0 = 0
    const x = f.s.x

    // forward
    embedding(f, x, shared.wte, this.ids, false)
    if (shared.wpe) embedding(f, x, shared.wpe, f.positions, true)
    for (let l = 0; l < a.nLayer; l++) family.block(f, layers[l], l)
    const xf = this.dxf // ln_f's output, kept until the LM head's backward
    layerNorm(f, xf, x, shared.lnF, a.nLayer, 'ln_f')
    linear(f, this.logits, xf, shared.lmHead, T, C)
    train.crossEntropy(this.logits, this.losses, this.logits, this.targets, T, V, scale)
    const lossRead = dev.read(this.losses, this.lossHost.subarray(0, T))

    // backward
    const dx = this.dx
    dev.zero(f.s.xn, T * C)
    train.matmulBackward(f.s.xn, this.shared.lmHead.w, this.shared.lmHead.b, this.logits, xf, shared.lmHead.w.parts[0], T, C, V)
    dev.zero(dx, T * C)
    b.train.layerNormBackward(dx, this.shared.lnF.g, this.shared.lnF.b, f.s.xn, this.tape.get(a.nLayer, 'ln_f.x'), shared.lnF.g,
      this.tape.get(a.nLayer, 'ln_f.mean'), this.tape.get(a.nLayer, 'ln_f.rstd'), T, C)
    for (let l = a.nLayer - 1; l >= 0; l--) family.blockBackward(b, layers[l], this.layerGrads[l] as GradOf<unknown>, l, dx)
    train.embedBackward(this.shared.wte, dx, this.ids, T, C)
    if (this.shared.wpe) train.embedBackward(this.shared.wpe, dx, f.positions, T, C)

    await lossRead
    let sum = 0
    for (let t = 0; t < T; t++) sum += this.lossHost[t]
    return sum
  }

  /** Every gradient, by checkpoint tensor name, in the checkpoint's layout (fused QKV re-fused, Conv1D transposed back). */
  gradients(): Promise<Map<string, Float32Array>> {
    return this.assemble((p) => this.byBuf.get(p.weight.parts[0])!.grad)
  }

  /** Where each checkpoint tensor went (names and shapes as stored). */
  get placements(): readonly Placement[] {
    return this.w.placements
  }

  /** Every parameter, by checkpoint tensor name, in the checkpoint's layout. */
  parameters(): Promise<Map<string, Float32Array>> {
    return this.assemble((p) => p.weight.parts[0])
  }

  /** Reads a device buffer per placement and puts it where it sits in its checkpoint tensor. */
  private async assemble(pick: (p: Placement) => Buf): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>()
    for (const p of this.w.placements) {
      const n = p.weight.shape.reduce((x, d) => x * d, 1)
      const host = new Float32Array(n)
      await this.dev.read(pick(p), host)
      const total = p.stored.reduce((x, d) => x * d, 1)
      let full = out.get(p.name)
      if (!full) out.set(p.name, (full = new Float32Array(total)))
      if (!p.conv1d) {
        const cols = p.stored.length === 2 ? p.stored[1] : 1
        full.set(host, p.row0 * cols)
      } else {
        // device layout [out, in] rows row0.. of the transposed [in, out] checkpoint tensor
        const [rowsIn, colsOut] = p.stored, rows = p.weight.shape[0], cols = p.weight.shape[1]
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) full[c * colsOut + p.row0 + r] = host[r * cols + c]
        void rowsIn
      }
    }
    return out
  }

  /**
   * Host copies of every parameter (device layout) with a gradient array each, for a host-side
   * optimizer (AdamW): read the parameters once, then per step readGradients() -> optimizer -> writeParameters().
   */
  async hostParams(): Promise<{ name: string; data: Float32Array; grad: Float32Array }[]> {
    const out = []
    for (const p of this.params) {
      const data = new Float32Array(p.n)
      await this.dev.read(p.weight, data)
      out.push({ name: p.name, data, grad: new Float32Array(p.n) })
    }
    return out
  }

  /** Fills host[i].grad with parameter i's gradient (host from hostParams()). */
  async readGradients(host: { grad: Float32Array }[]): Promise<void> {
    await Promise.all(this.params.map((p, i) => this.dev.read(p.grad, host[i].grad)))
  }

  /** Writes host[i].data into parameter i's device buffer. */
  writeParameters(host: { data: Float32Array }[]): void {
    this.params.forEach((p, i) => this.dev.write(p.weight, host[i].data))
  }

}

function isLinear(v: unknown): v is Linear {
  return typeof v === 'object' && v !== null && 'w' in v && typeof (v as Linear).w === 'object' && Array.isArray((v as Linear).w?.parts)
}
function isNorm(v: unknown): v is Norm {
  return typeof v === 'object' && v !== null && 'g' in v && 'b' in v && !('w' in v)
}

/** A tape of device buffers keyed by (layer, name), allocated on first use and reused every step. */
function createTape(dev: Device): Tape {
  const bufs = new Map<string, { buf: Buf; n: number }>()
  const get = (layer: number, name: string, n: number): Buf => {
    const key = `${layer}.${name}`
    let e = bufs.get(key)
    if (!e || e.n < n) {
      if (e) dev.free(e.buf)
      e = { buf: dev.alloc(n), n }
      bufs.set(key, e)
    }
    return e.buf
  }
  return {
    buffer: get,
    keep(layer, name, buf, n) {
      const b = get(layer, name, n)
      dev.copy(b, 0, buf, 0, n)
      return b
    },
    get(layer, name) {
      const e = bufs.get(`${layer}.${name}`)
      if (!e) throw new Error(`training tape: nothing kept for layer ${layer} ${name}`)
      return e.buf
    },
  }
}

