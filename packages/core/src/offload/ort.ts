// Graph offload: a loaded model exported to ONNX (export/onnx.ts) and run by ONNX Runtime's execution
// providers — the CPU one, CUDA, WebGPU, and the NPU ones (QNN, CANN, CoreML, DirectML, OpenVINO) where
// the onnxruntime build has them. `loadModel(dir, { device: 'ort:cpu' })` loads the weights on the js
// device, exports the graph to a temporary file, opens an InferenceSession on it, and returns a Model
// whose sessions run that graph (OrtSession): the same generate(), beam search, scheduler and evaluation
// code drives it, through the Session interface.
//
// onnxruntime-node is an optional dependency: without it an ort device is a clear UsageError. In a page,
// ortModel takes onnxruntime-web's module instead (`ort` option) and the graph goes over as bytes.
// Sessions keep each slot's keys and values on the host and pass them back in on the next call;
// log-probabilities are computed on the host from the graph's logits (f64 log-softmax). A batched step
// runs its rows one by one. Two graph shapes (OrtGraph):
// - dynamic (DynamicGraph): Optimum's interface, any length; a slot's cache grows with each call;
// - static (StaticGraphs: NPUs and WebNN want every shape fixed): batch 1, a prefill graph of N tokens and
//   a decode graph of 1 token, a cache of C positions kept by the host, in which each call's new rows are
//   written at their positions (export/onnx.ts `static`).

import * as fs from 'node:fs'
import { createRequire } from 'node:module'
import * as os from 'node:os'
import * as path from 'node:path'
import { UsageError, show } from '../errors.js'
import type { ForwardOptions, LogProbsOptions, ScoredTokens, Session, SessionOptions } from '../models/decoder.js'
import type { Model, StaticGraphOptions } from '../models/model.js'
import { exportOnnx, onnxBytes, type OnnxExportOptions } from '../export/onnx.js'
import { SlotTable, checkStep, scoredRows } from '../models/slots.js'
import { argmax, logSumExp } from '../generation/logits.js'

// The part of onnxruntime-node's API used here (declared here, so that @refgpt/core's types do not need
// onnxruntime-node installed: it is an optional dependency).
export interface OrtTensorLike {
  readonly data: unknown
  readonly dims: readonly number[]
}
export interface OrtSessionLike {
  run(feeds: Record<string, OrtTensorLike>): Promise<Record<string, OrtTensorLike>>
  release(): Promise<void>
}
export interface OrtLike {
  InferenceSession: { create(model: string | Uint8Array, options?: Record<string, unknown>): Promise<OrtSessionLike> }
  Tensor: new (type: 'int64' | 'float32', data: BigInt64Array | Float32Array, dims: readonly number[]) => OrtTensorLike
  listSupportedBackends?: () => { name: string }[]
}
type Ort = OrtLike
type OrtSessionHandle = OrtSessionLike
type OrtTensor = OrtTensorLike

export interface OrtModelOptions {
  /** ONNX Runtime's intra-op threads. */
  threads?: number
  /**
   * Run static graphs (every shape fixed, as NPUs and WebNN need): true for the defaults, or their sizes.
   * Default: true for 'npu', false (the dynamic graph) otherwise.
   */
  static?: boolean | StaticGraphOptions
  /**
   * An ONNX Runtime module to run on instead of onnxruntime-node (onnxruntime-web in a page): the graph is
   * handed over as bytes (no file system) and the provider is not checked against a list.
   */
  ort?: OrtLike
  /** Options of the execution provider (e.g. WebNN's `{ deviceType: 'npu' }`), merged into its entry. */
  providerOptions?: Record<string, unknown>
}

/** Execution providers that drive an NPU (the first one this onnxruntime build has is what 'npu' picks). */
export const NPU_PROVIDERS = ['qnn', 'cann', 'openvino', 'coreml', 'dml', 'vitisai', 'nnapi'] as const

let ortModule: Ort | null | undefined
let ortError = ''

/** onnxruntime-node (loaded once, synchronously: isNpuAvailable() answers at once), or null when it cannot be loaded (ortError says why). */
function loadOrt(): Ort | null {
  if (ortModule !== undefined) return ortModule
  try {
    const mod = createRequire(import.meta.url)('onnxruntime-node') as Ort & { default?: Ort }
    ortModule = mod.InferenceSession ? mod : (mod.default ?? null)
    if (!ortModule?.InferenceSession) throw new Error('no InferenceSession export')
  } catch (e) {
    ortModule = null
    ortError = (e as Error).message.split('\n')[0]
  }
  return ortModule
}

/** The execution providers this onnxruntime-node build lists ([] without onnxruntime-node). */
export function ortProviders(): string[] {
  const ort = loadOrt()
  if (!ort) return []
  const list = ort.listSupportedBackends?.() ?? [{ name: 'cpu' }]
  return list.map((b) => b.name)
}

/** The NPU execution provider 'npu' runs on here (the first of NPU_PROVIDERS this build lists), or null. */
export function npuProvider(): string | null {
  const have = ortProviders()
  return NPU_PROVIDERS.find((p) => have.includes(p)) ?? null
}

/** What the device registry calls (index.ts registers it in Node): ort devices and the NPU probe. */
export const ortOffload = { providers: ortProviders, npuProvider, load: (js: Model, provider: string, opts: OrtModelOptions) => ortModel(js, provider, opts) }

/** The static sizes asked for, checked against the loaded context; null for the dynamic graph. */
function staticSizes(asked: boolean | StaticGraphOptions | undefined, provider: string, maxContext: number): { tokens: number; capacity: number } | null {
  const want = asked ?? provider === 'npu'
  if (want === false) return null
  if (typeof want !== 'object' && want !== true)
    throw new UsageError({ where: 'loadModel', what: 'bad static option', expected: 'true, false or { tokens, capacity }', found: show(want) })
  const o = want === true ? {} : want
  const capacity = o.capacity ?? maxContext
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > maxContext)
    throw new UsageError({ where: 'loadModel', what: 'static KV capacity out of range', expected: `1 .. ${maxContext} (the loaded context)`, found: show(o.capacity) })
  const tokens = o.tokens ?? Math.min(64, capacity)
  if (!Number.isInteger(tokens) || tokens < 1 || tokens > capacity)
    throw new UsageError({ where: 'loadModel', what: 'static prefill tokens out of range', expected: `1 .. ${capacity} (the KV capacity)`, found: show(o.tokens) })
  return { tokens, capacity }
}

/**
 * A Model on ONNX Runtime: `js` is the model loaded on the js device (its weights are exported, and its
 * arch, configs and info are this model's); `provider` the execution provider ('cpu', 'cuda', 'npu' ...;
 * with `opts.ort`, any name that module knows, e.g. 'webnn' or 'wasm').
 */
export async function ortModel(js: Model, provider: string, opts: OrtModelOptions = {}): Promise<Model> {
  const fixed = staticSizes(opts.static, provider, js.info.maxContext)
  const ort = opts.ort ?? loadOrt()
  if (!ort)
    throw new UsageError({
      where: 'loadModel', what: `device ort:${provider} needs onnxruntime-node`, found: ortError || 'not installed',
      hint: 'npm install onnxruntime-node (an optional dependency of @refgpt/core)',
    })
  let ep = provider
  if (!opts.ort) {
    const have = ortProviders()
    if (provider === 'npu') {
      const npu = npuProvider()
      if (!npu)
        throw new UsageError({
          where: 'loadModel', what: 'no NPU execution provider in this onnxruntime build', expected: `one of ${NPU_PROVIDERS.join(', ')}`, found: have.join(', ') || 'none',
          hint: 'use device "cpu" (isNpuAvailable() says whether an NPU is there), or an onnxruntime build with QNN, CANN, OpenVINO, CoreML or DirectML',
        })
      ep = npu
    } else if (!have.includes(provider))
      throw new UsageError({ where: 'loadModel', what: `execution provider ${JSON.stringify(provider)} is not in this onnxruntime build`, expected: `one of ${have.join(', ')}`, found: JSON.stringify(provider), hint: 'device "ort:cpu" runs everywhere' })
  }
  const so: Record<string, unknown> = { executionProviders: [opts.providerOptions ? { name: ep, ...opts.providerOptions } : ep], graphOptimizationLevel: 'all' }
  if (opts.threads) so.intraOpNumThreads = opts.threads
  const open = (exportOpts: OnnxExportOptions) => openGraph(ort, js, ep, so, exportOpts, !opts.ort)
  const handles: OrtSessionHandle[] = []
  let graph: OrtGraph
  try {
    if (fixed) {
      const prefill = await open({ static: fixed })
      handles.push(prefill)
      const decode = fixed.tokens === 1 ? prefill : await open({ static: { tokens: 1, capacity: fixed.capacity } })
      if (decode !== prefill) handles.push(decode)
      graph = new StaticGraphs(ort, js.arch, prefill, decode, fixed.tokens, fixed.capacity)
    } else {
      const handle = await open({ maxContext: js.info.maxContext, selectRows: true })
      handles.push(handle)
      graph = new DynamicGraph(ort, js.arch, handle)
    }
  } catch (e) {
    for (const h of handles) await h.release()
    throw e
  }
  const name = `ort:${ep}`
  const device = Object.create(js.device, { name: { value: name, enumerable: true } }) as Model['device']
  const info = fixed ? { ...js.info, maxContext: fixed.capacity } : js.info
  const model: Model = {
    family: js.family,
    arch: js.arch,
    traits: js.traits,
    config: js.config,
    generationConfig: js.generationConfig,
    modelscopeConfig: js.modelscopeConfig,
    info,
    weights: js.weights,
    device,
    createSession: (so?: SessionOptions) => new OrtSession(graph, model, so),
    async dispose() {
      for (const h of handles) await h.release()
      await js.dispose()
    },
  }
  return model
}

/**
 * An InferenceSession on `js`'s graph: through a temporary file in Node (big models keep their weights in
 * FILE.data; the file is removed once the session holds the graph), or from bytes (`useFile` false: a page).
 */
async function openGraph(ort: Ort, js: Model, ep: string, so: Record<string, unknown>, exportOpts: OnnxExportOptions, useFile: boolean): Promise<OrtSessionHandle> {
  const create = async (model: string | Uint8Array) => {
    try {
      return await ort.InferenceSession.create(model, so)
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e)
      throw new UsageError({ where: 'loadModel', what: `ONNX Runtime could not open the exported graph on ${ep}`, found: msg.split('\n')[0], hint: ep === 'cpu' ? undefined : 'this execution provider may need its runtime libraries installed; device "ort:cpu" runs everywhere' })
    }
  }
  if (!useFile) return create(await onnxBytes(js, exportOpts))
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'refgpt-ort-'))
  try {
    const file = path.join(dir, 'model.onnx')
    await exportOnnx(js, file, exportOpts)
    return await create(file)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true }) // the session holds the graph; the file is not needed
  }
}

interface OrtSlot {
  /** Positions cached. */
  len: number
  /** Per layer, keys and values, as the graph keeps them (OrtGraph.newCache). */
  past: { key: Float32Array; value: Float32Array }[]
  logits: Float32Array
}

/** One exported graph shape: how a slot's cache is kept and how one call runs. */
interface OrtGraph {
  /** The most rows one call takes (forward / logits run longer inputs in pieces of this many); null: any. */
  readonly maxRows: number | null
  /** A layer's empty keys (or values). */
  newCache(): Float32Array
  /** The first n positions of `src`'s cache (len positions) as a new cache. */
  prefix(x: Float32Array, len: number, n: number): Float32Array
  /**
   * Runs `ids` (T of them) at positions pos.. of a slot, pos <= sl.len, and makes the slot's cache hold
   * positions 0 .. pos + T; returns the logits of every row [T, V] (`all`), else of the last row [1, V].
   */
  run(sl: OrtSlot, ids: BigInt64Array, pos: number, all: boolean): Promise<Float32Array>
}

/** The dynamic graph (Optimum's interface): a slot's cache is [1, H, len, D] per layer and grows with each call. */
class DynamicGraph implements OrtGraph {
  readonly maxRows = null
  constructor(private readonly ort: Ort, private readonly arch: Model['arch'], private readonly handle: OrtSessionHandle) {}

  newCache(): Float32Array {
    return new Float32Array(0)
  }

  prefix(x: Float32Array, len: number, n: number): Float32Array {
    const { nHead: H, headDim: D } = this.arch
    if (n === len) return x.slice()
    const out = new Float32Array(H * n * D)
    for (let h = 0; h < H; h++) out.set(x.subarray(h * len * D, h * len * D + n * D), h * n * D)
    return out
  }

  async run(sl: OrtSlot, ids: BigInt64Array, pos: number, all: boolean): Promise<Float32Array> {
    const { nLayer, nHead: H, headDim: D } = this.arch, T = ids.length
    const { Tensor } = this.ort
    const feeds: Record<string, OrtTensor> = {
      input_ids: new Tensor('int64', ids, [1, T]),
      attention_mask: new Tensor('int64', new BigInt64Array(pos + T).fill(1n), [1, pos + T]),
      position_ids: new Tensor('int64', BigInt64Array.from({ length: T }, (_, t) => BigInt(pos + t)), [1, T]),
      logits_rows: all ? new Tensor('int64', BigInt64Array.from({ length: T }, (_, t) => BigInt(t)), [T]) : new Tensor('int64', BigInt64Array.of(BigInt(T - 1)), [1]),
    }
    for (let l = 0; l < nLayer; l++) {
      const kv = sl.past[l]
      feeds[`past_key_values.${l}.key`] = new Tensor('float32', pos === sl.len ? kv.key : this.prefix(kv.key, sl.len, pos), [1, H, pos, D])
      feeds[`past_key_values.${l}.value`] = new Tensor('float32', pos === sl.len ? kv.value : this.prefix(kv.value, sl.len, pos), [1, H, pos, D])
    }
    const out = await this.handle.run(feeds)
    for (let l = 0; l < nLayer; l++) sl.past[l] = { key: out[`present.${l}.key`].data as Float32Array, value: out[`present.${l}.value`].data as Float32Array }
    return out.logits.data as Float32Array
  }
}

/**
 * Static graphs: a prefill graph of `tokens` rows and a decode graph of 1 (the same one when tokens is 1),
 * both over a cache of `capacity` positions kept here, [1, H, capacity, D] per layer, position p at index p.
 * A call of T < tokens rows is padded at the end (the last id again, at the last real position: the padding
 * rows are masked out as keys and their logits dropped); the graph returns the new rows' keys and values,
 * which are written at their positions. Positions past the sequence hold stale rows: the mask hides them.
 */
class StaticGraphs implements OrtGraph {
  readonly maxRows: number
  constructor(
    private readonly ort: Ort,
    private readonly arch: Model['arch'],
    private readonly prefill: OrtSessionHandle,
    private readonly decode: OrtSessionHandle,
    private readonly tokens: number,
    private readonly capacity: number,
  ) {
    this.maxRows = tokens
  }

  newCache(): Float32Array {
    return new Float32Array(this.arch.nHead * this.capacity * this.arch.headDim)
  }

  prefix(x: Float32Array, _len: number, n: number): Float32Array {
    const { nHead: H, headDim: D } = this.arch, C = this.capacity
    const out = this.newCache()
    for (let h = 0; h < H; h++) out.set(x.subarray(h * C * D, h * C * D + n * D), h * C * D)
    return out
  }

  async run(sl: OrtSlot, ids: BigInt64Array, pos: number, all: boolean): Promise<Float32Array> {
    const { nLayer, nHead: H, headDim: D, nVocab: V } = this.arch, C = this.capacity, T = ids.length
    const N = T === 1 ? 1 : this.tokens
    const input = new BigInt64Array(N).fill(ids[T - 1]), position = new BigInt64Array(N).fill(BigInt(pos + T - 1))
    input.set(ids)
    for (let t = 0; t < T; t++) position[t] = BigInt(pos + t)
    const mask = new BigInt64Array(C + N)
    mask.fill(1n, 0, pos)
    mask.fill(1n, C, C + T)
    const { Tensor } = this.ort
    const feeds: Record<string, OrtTensor> = {
      input_ids: new Tensor('int64', input, [1, N]),
      attention_mask: new Tensor('int64', mask, [1, C + N]),
      position_ids: new Tensor('int64', position, [1, N]),
    }
    for (let l = 0; l < nLayer; l++) {
      feeds[`past_key_values.${l}.key`] = new Tensor('float32', sl.past[l].key, [1, H, C, D])
      feeds[`past_key_values.${l}.value`] = new Tensor('float32', sl.past[l].value, [1, H, C, D])
    }
    const out = await (N === 1 ? this.decode : this.prefill).run(feeds)
    for (let l = 0; l < nLayer; l++)
      for (const kv of ['key', 'value'] as const) {
        const rows = out[`present.${l}.${kv}`].data as Float32Array, cache = sl.past[l][kv]
        for (let h = 0; h < H; h++) cache.set(rows.subarray(h * N * D, (h * N + T) * D), (h * C + pos) * D)
      }
    const logits = out.logits.data as Float32Array
    return all ? logits.subarray(0, T * V) : logits.subarray((T - 1) * V, T * V)
  }
}

/** A Session on an ONNX Runtime graph (dynamic or static): the host keeps each slot's past keys and values. */
export class OrtSession implements Session {
  readonly maxBatchTokens: number
  readonly canTrace = false
  private readonly slots = new SlotTable<OrtSlot>()
  /** step()'s one-token input, reused */
  private readonly one = [0]
  private disposed = false

  constructor(
    private readonly graph: OrtGraph,
    private readonly model: Model,
    opts: SessionOptions = {},
  ) {
    this.maxBatchTokens = opts.maxBatchTokens ?? model.weights.maxT
    if (!Number.isInteger(this.maxBatchTokens) || this.maxBatchTokens < 1 || this.maxBatchTokens > 4096)
      throw new UsageError({ where: 'createSession', what: 'maxBatchTokens out of range', expected: '1 .. 4096', found: show(opts.maxBatchTokens) })
    if (graph.maxRows !== null) this.maxBatchTokens = Math.min(this.maxBatchTokens, graph.maxRows)
    this.acquire()
  }

  acquire(): number {
    this.alive()
    const a = this.model.arch
    return this.slots.add({ len: 0, past: Array.from({ length: a.nLayer }, () => ({ key: this.graph.newCache(), value: this.graph.newCache() })), logits: new Float32Array(a.nVocab) })
  }
  release(slot: number): void {
    this.slot(slot, 'release')
    this.slots.remove(slot)
  }

  copySlot(from: number, to: number, nPos: number): void {
    const src = this.slot(from, 'copySlot'), dst = this.slot(to, 'copySlot')
    if (!Number.isInteger(nPos) || nPos < 0 || nPos > src.len)
      throw new UsageError({ where: 'copySlot', what: 'positions out of range', expected: `0 .. ${src.len} (the cached positions of slot ${from})`, found: show(nPos) })
    if (from === to) return
    dst.past = src.past.map((kv) => ({ key: this.graph.prefix(kv.key, src.len, nPos), value: this.graph.prefix(kv.value, src.len, nPos) }))
    dst.len = nPos
  }

  kvCapacityOf(slot: number): number {
    return this.slot(slot, 'kvCapacityOf').len
  }

  get slotsInUse(): number {
    return this.slots.inUse
  }

  async forward(ids: ArrayLike<number>, pos: number, opts: ForwardOptions = {}): Promise<Float32Array> {
    const sl = this.slot(opts.slot ?? 0, 'forward')
    this.noTrace(opts, 'forward')
    const V = this.model.arch.nVocab
    let last: Float32Array | null = null
    for (let done = 0; done < ids.length; ) {
      const T = Math.min(this.maxBatchTokens, ids.length - done)
      const logits = await this.run(sl, ids, done, T, pos + done, 'forward', false)
      if (done + T === ids.length) last = logits.subarray(0, V)
      done += T
    }
    sl.logits.set(last!)
    return sl.logits
  }

  async logits(ids: ArrayLike<number>, pos: number, opts: ForwardOptions = {}): Promise<Float32Array> {
    const sl = this.slot(opts.slot ?? 0, 'logits')
    this.noTrace(opts, 'logits')
    const V = this.model.arch.nVocab
    const out = new Float32Array(ids.length * V)
    for (let done = 0; done < ids.length; ) {
      const T = Math.min(this.maxBatchTokens, ids.length - done)
      out.set(await this.run(sl, ids, done, T, pos + done, 'logits', true), done * V)
      done += T
    }
    return out
  }

  logProbs(ids: ArrayLike<number>, opts?: LogProbsOptions & { greedy?: false }): Promise<Float32Array>
  logProbs(ids: ArrayLike<number>, opts: LogProbsOptions & { greedy: true }): Promise<ScoredTokens>
  logProbs(ids: ArrayLike<number>, opts?: LogProbsOptions): Promise<Float32Array | ScoredTokens>
  async logProbs(ids: ArrayLike<number>, opts: LogProbsOptions = {}): Promise<Float32Array | ScoredTokens> {
    const V = this.model.arch.nVocab
    const greedy = opts.greedy === true
    this.noTrace(opts, 'logProbs')
    const rows = scoredRows(ids, opts.targets, V)
    if (!rows) return greedy ? { logprobs: new Float32Array(0), greedy: new Uint8Array(0) } : new Float32Array(0)
    const { run, targets } = rows
    const logits = await this.logits(run, opts.pos ?? 0, { slot: opts.slot })
    const out = new Float32Array(run.length), flags = new Uint8Array(run.length)
    for (let t = 0; t < run.length; t++) {
      const row = logits.subarray(t * V, (t + 1) * V), target = targets[t]
      if (target < 0) continue
      const lse = logSumExp(row)
      out[t] = row[target] - lse
      flags[t] = argmax(row) === target && Number.isFinite(lse) ? 1 : 0
    }
    return greedy ? { logprobs: out, greedy: flags } : out
  }

  async step(slots: ArrayLike<number>, ids: ArrayLike<number>, positions: ArrayLike<number>, n = slots.length): Promise<void> {
    checkStep(slots, ids, positions, n, (i) => this.slot(i, 'step'), this.model.arch.nVocab, this.model.info.maxContext)
    // one row at a time: the exported graph takes one past length per call
    for (let b = 0; b < n; b++) {
      this.one[0] = ids[b]
      await this.forward(this.one, positions[b], { slot: slots[b] })
    }
  }

  logitsOf(slot: number): Float32Array {
    return this.slot(slot, 'logitsOf').logits
  }

  dispose(): void {
    for (const i of this.slots.indices()) this.slots.remove(i)
    this.disposed = true
  }

  // --- the graph ---------------------------------------------------------------------------------------

  /**
   * Runs ids[from .. from + T) at positions pos.. of a slot and extends the slot's cache; returns the logits of
   * every row [T, V] (`all`), else of the last row [1, V].
   */
  private async run(sl: OrtSlot, ids: ArrayLike<number>, from: number, T: number, pos: number, where: string, all: boolean): Promise<Float32Array> {
    const V = this.model.arch.nVocab
    const ctx = this.model.info.maxContext
    if (T === 0) throw new UsageError({ where, what: 'no input tokens', expected: 'at least one token id', found: '0' })
    if (!Number.isInteger(pos) || pos < 0 || pos > sl.len)
      throw new UsageError({ where, what: 'bad start position', expected: `0 .. ${sl.len} (the slot's cached positions)`, found: show(pos) })
    if (pos + T > ctx)
      throw new UsageError({ where, what: 'sequence longer than the context', expected: `at most ${ctx} positions`, found: `${pos + T}`, hint: `this model was loaded with a context of ${ctx}` })
    const input = new BigInt64Array(T)
    for (let t = 0; t < T; t++) {
      const id = ids[from + t]
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new UsageError({ where, what: `token id at index ${from + t} out of range`, expected: `0 .. ${V - 1}`, found: show(id) })
      input[t] = BigInt(id)
    }
    const logits = await this.graph.run(sl, input, pos, all)
    sl.len = pos + T
    return logits
  }

  private slot(i: number, where: string): OrtSlot {
    this.alive()
    return this.slots.get(i, where)
  }

  private noTrace(opts: ForwardOptions, where: string): void {
    if (opts.tracer) throw new UsageError({ where, what: 'tracing needs refgpt\'s own forward', hint: 'use a js, wasm or webgpu device; an ONNX graph shows only its outputs' })
  }

  private alive(): void {
    if (this.disposed) throw new UsageError({ where: 'session', what: 'the session was disposed' })
  }
}
