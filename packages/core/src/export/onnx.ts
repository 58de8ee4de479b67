// ONNX export of a loaded model: the decoder with a KV cache, as the graph transformers.js and Optimum
// run (inputs input_ids, attention_mask, position_ids, past_key_values.{i}.key/.value; outputs logits,
// present.{i}.key/.value), built from refgpt's Arch and the weights the model holds.
//
// The graph is each family file's block forward written in ONNX operators, piece by piece as
// models/layers.ts computes it (one Gemm per Linear with the weight in refgpt's [out, in] layout, so a
// tied LM head shares the token embedding):
//   x = wte[input_ids] (+ wpe[position_ids])                          decoder.ts
//   per layer l:
//     h = LayerNormalization(x, eps)                                 layers.ts layerNorm
//     q, k, v = Split(Gemm(h, [Wq; Wk; Wv]) (+ b))                     selfAttention: the three Linears
//     GPT-J: rotary on the first rotary_dim dims of q and k, interleaved pairs (2i, 2i+1), at position_ids
//     present = Concat(past, k / v) along the sequence             the KV cache
//     scores = q·kᵀ · scale (1/sqrt(D); 1 for GPT-Neo; GPT-2 may divide by l+1), Where(mask) -> Softmax
//       mask: key j is seen by query i (at sequence index past+i) when j <= past+i, past+i - j < window
//       for GPT-Neo's local layers, and attention_mask[b, j] = 1
//     a = Gemm(probs·v, Wo) (+ bo)
//     sequential (GPT-2, GPT-Neo, GPT-3): x = x + a; x = x + mlp(LayerNorm2(x))
//     parallel (GPT-J):                   x = (a + mlp(h)) + x
//   logits = Gemm(LayerNormalization(x), lm_head) (+ GPT-J's bias)
// Activations are written out as the reference defines them (gelu_new's tanh form, exact erf gelu), so
// the graph needs opset 17 (LayerNormalization) and nothing newer.
//
// Initializers are read from the device at export time (dequantized values for q8 / q4 on the js
// device). A model whose initializers pass ONNX's 2 GiB protobuf limit (or with externalData) keeps them
// in FILE.data beside FILE (external_data: location, offset, length; offsets aligned to 4096 for mmap).
// Both files are written to temp files and renamed into place only when complete.

import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { QuantizedWeight } from '../device/js.js'
import { rotaryTable } from '../device/storage.js'
import type { Activation, Buf, Device } from '../device/types.js'
import { f32ToF16Array } from '../io/dtype.js'
import { ioError } from '../io/write.js'
import { RefgptError, UsageError, show } from '../errors.js'
import type { Arch, Linear, Norm, Weight } from '../models/arch.js'
import type { Model } from '../models/model.js'
import type { Gpt2Layer } from '../models/gpt2.js'
import type { GptNeoLayer } from '../models/gpt_neo.js'
import type { GptjLayer } from '../models/gptj.js'
import type { Gpt3Layer } from '../models/gpt3_modelscope.js'
import {
  AttributeType, DataType, encodeModelProto,
  type AttributeProto, type ModelProto, type NodeProto, type TensorProto, type TensorShapeDimension, type ValueInfoProto,
} from './onnx-proto.js'

/** The ONNX operator set the graph is written against (LayerNormalization needs 17). */
export const ONNX_OPSET = 17
/** IR version that goes with opset 17. */
export const ONNX_IR_VERSION = 8
/** Initializer bytes above which the data goes to FILE.data (protobuf messages end at 2 GiB). */
export const ONNX_INLINE_LIMIT = 2 ** 31 - 64 * 2 ** 20
/** Alignment of each tensor in FILE.data (ONNX: offsets SHOULD be multiples of 4096, for mmap). */
const EXTERNAL_ALIGN = 4096
/**
 * Initializers smaller than this stay inside FILE even with external data (shapes, axes and scalars:
 * ONNX shape inference reads them from the model, as onnx's convert_model_to_external_data keeps them).
 */
const EXTERNAL_MIN_BYTES = 1024
/** What a masked attention score becomes before the softmax: f32's lowest (a fully masked row stays finite). */
const MASKED = -3.4028234663852886e38

export type OnnxDType = 'f32' | 'f16'

export interface OnnxExportOptions {
  /**
   * Positions the graph serves: the rows of the position table (wpe) or of GPT-J's rotary sin/cos table.
   * Default: the context the model was loaded with (LoadOptions.maxContext, else n_positions).
   */
  maxContext?: number
  /**
   * 'f32' (default): every initializer f32. 'f16': matrices and embeddings stored as f16 and widened by
   * a Cast in the graph (arithmetic stays f32, like refgpt's f16 storage); vectors stay f32.
   */
  dtype?: OnnxDType
  /**
   * Output the logits of the last position of each row only ([batch, 1, vocab]): the LM head runs on one
   * row per sequence, as refgpt's forward() does (benchmarks). Default false: every position.
   */
  lastLogitsOnly?: boolean
  /**
   * Batch-1 graphs for refgpt's own ort devices: an extra input `logits_rows` [K] int64 picks the rows the
   * LM head runs on (forward(): the last; logits(): all); logits is then [1, K, V]. Not Optimum's interface.
   */
  selectRows?: boolean
  /** Keep the initializers in FILE.data: true, false, or by size (default: only past ONNX_INLINE_LIMIT). */
  externalData?: boolean
  /**
   * A static graph (NPUs, WebNN: every shape fixed): batch 1, `tokens` new tokens per call (1: the decode
   * graph; e.g. 64: a prefill graph, the prompt padded at the end), a KV cache of `capacity` positions
   * (default maxContext). Inputs: input_ids / position_ids [1, tokens], attention_mask [1, capacity + tokens]
   * (1 for the cached positions before the first new token and for the real new rows, 0 elsewhere),
   * past_key_values.{i}.key/.value [1, H, capacity, D]; outputs: logits [1, tokens, V] and present.{i}.key/.value
   * [1, H, tokens, D] — the new rows' keys and values only, which the caller writes into its cache at their
   * positions (cache index = position). Attention masks by positions: a key at position p is seen by a query
   * at q when p <= q (and q - p < window for local layers) and its attention_mask entry is 1.
   */
  static?: { tokens: number; capacity?: number }
  /** Called after each initializer is read, with the bytes done and the total. */
  onProgress?: (doneBytes: number, totalBytes: number) => void
}

export interface OnnxExportResult {
  file: string
  /** FILE.data, or null when the initializers are inside FILE. */
  dataFile: string | null
  bytes: number
  dataBytes: number
  nodes: number
  initializers: number
  inputs: string[]
  outputs: string[]
  /** The static shape, or null for the dynamic graph. */
  static: { tokens: number; capacity: number } | null
}

// --- the graph under construction --------------------------------------------------------------------

/** An initializer whose bytes are produced when the file is written (weights are read one at a time). */
interface Initializer {
  name: string
  dims: number[]
  dataType: number
  bytes: number
  data: () => Promise<Uint8Array>
}

/** A graph being built: nodes in topological order, initializers, and fresh names. */
class Graph {
  readonly nodes: NodeProto[] = []
  readonly inits: Initializer[] = []
  private readonly names = new Set<string>()
  private counter = 0

  /** A value name not used before, from a readable stem. */
  fresh(stem: string): string {
    let name = stem
    while (this.names.has(name)) name = `${stem}_${++this.counter}`
    this.names.add(name)
    return name
  }

  /** Adds a node with one output (named `out`, or a fresh name from the op type) and returns that name. */
  op(opType: string, inputs: string[], attrs: AttributeProto[] = [], out?: string): string {
    return this.opN(opType, inputs, 1, attrs, out ? [out] : undefined)[0]
  }

  /** `outs`: names already taken with fresh(), or graph outputs. */
  opN(opType: string, inputs: string[], n: number, attrs: AttributeProto[] = [], outs?: string[]): string[] {
    const output = outs ?? Array.from({ length: n }, () => this.fresh(`${opType.toLowerCase()}`))
    this.nodes.push({ input: inputs, output, name: `${opType}_${this.nodes.length}`, opType, attribute: attrs })
    return output
  }

  init(name: string, dims: number[], dataType: number, bytes: number, data: () => Promise<Uint8Array>): string {
    const n = this.fresh(name)
    this.inits.push({ name: n, dims, dataType, bytes, data })
    return n
  }

  /** A small int64 constant (shapes, axes, indices). */
  i64(name: string, values: number[], dims: number[] = [values.length]): string {
    const data = new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer)
    return this.init(name, dims, DataType.INT64, data.byteLength, async () => data)
  }

  /** A small f32 constant; dims [] is a scalar. */
  f32(name: string, values: number[], dims: number[] = [values.length]): string {
    const data = new Uint8Array(Float32Array.from(values).buffer)
    return this.init(name, dims, DataType.FLOAT, data.byteLength, async () => data)
  }
}

const attrInt = (name: string, i: number): AttributeProto => ({ name, type: AttributeType.INT, i })
const attrInts = (name: string, ints: number[]): AttributeProto => ({ name, type: AttributeType.INTS, ints })
const attrFloat = (name: string, f: number): AttributeProto => ({ name, type: AttributeType.FLOAT, f })

const bytesOf = (a: Float32Array | Uint16Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)

// --- reading the weights the model holds ---------------------------------------------------------------

/** The f32 values of a placed Weight (all its row parts); Q8 / Q4 weights on the js device are dequantized. */
async function readWeight(dev: Device, w: Weight): Promise<Float32Array> {
  const cols = w.shape.length === 2 ? w.shape[1] : 1
  const out = new Float32Array(w.shape.reduce((p, d) => p * d, 1))
  for (let p = 0; p < w.parts.length; p++) {
    const r0 = w.rowStart[p], r1 = w.rowStart[p + 1]
    const part = w.parts[p] as unknown
    if (part instanceof QuantizedWeight) {
      for (let r = 0; r < r1 - r0; r++) for (let c = 0; c < cols; c++) out[(r0 + r) * cols + c] = part.value(r, c)
    } else await dev.read(w.parts[p], out.subarray(r0 * cols, r1 * cols))
  }
  return out
}

async function readVector(dev: Device, b: Buf, n: number): Promise<Float32Array> {
  const out = new Float32Array(n)
  await dev.read(b, out)
  return out
}

/**
 * The weights of one block in the shape every family's forward uses (the family files' field names
 * mapped onto selfAttention's and mlp's arguments, as each block() passes them).
 */
interface BlockWeights {
  ln1: Norm
  /** null for GPT-J (one LayerNorm, parallel residual). */
  ln2: Norm | null
  q: Linear
  k: Linear
  v: Linear
  o: Linear
  fcIn: Linear
  fcOut: Linear
}

function blockWeights(a: Arch, layer: unknown): BlockWeights {
  switch (a.family) {
    case 'gpt2': {
      const L = layer as Gpt2Layer
      return { ln1: L.ln1, ln2: L.ln2, q: L.attn.q, k: L.attn.k, v: L.attn.v, o: L.attn.cProj, fcIn: L.mlp.cFc, fcOut: L.mlp.cProj }
    }
    case 'gpt_neo': {
      const L = layer as GptNeoLayer
      return { ln1: L.ln1, ln2: L.ln2, q: L.attn.qProj, k: L.attn.kProj, v: L.attn.vProj, o: L.attn.outProj, fcIn: L.mlp.cFc, fcOut: L.mlp.cProj }
    }
    case 'gptj': {
      const L = layer as GptjLayer
      return { ln1: L.ln1, ln2: null, q: L.attn.qProj, k: L.attn.kProj, v: L.attn.vProj, o: L.attn.outProj, fcIn: L.mlp.fcIn, fcOut: L.mlp.fcOut }
    }
    case 'gpt3': {
      const L = layer as Gpt3Layer
      return {
        ln1: L.inputLayernorm, ln2: L.postAttentionLayernorm, q: L.attention.query, k: L.attention.key, v: L.attention.value,
        o: L.attention.dense, fcIn: L.mlp.denseHTo4h, fcOut: L.mlp.dense4hToH,
      }
    }
  }
}

// --- the graph ---------------------------------------------------------------------------------------

/** The graph of a model, its initializers still unread: what exportOnnx writes. */
export interface OnnxGraph {
  nodes: NodeProto[]
  initializers: { name: string; dims: number[]; dataType: number; bytes: number }[]
  inputs: ValueInfoProto[]
  outputs: ValueInfoProto[]
  /** Bytes of every initializer. */
  initializerBytes: number
  maxContext: number
  /** The static shape (new tokens per call, KV capacity), or null for the dynamic graph. */
  static: { tokens: number; capacity: number } | null
}

interface Built extends OnnxGraph {
  inits: Initializer[]
}

function checkOptions(model: Model, opts: OnnxExportOptions): { maxContext: number; dtype: OnnxDType; fixed: { tokens: number; capacity: number } | null } {
  const a = model.arch
  const maxContext = opts.maxContext ?? model.weights.nCtx
  if (!Number.isInteger(maxContext) || maxContext < 1 || maxContext > a.nPositions)
    throw new UsageError({ where: 'ONNX export', what: 'maxContext out of range', expected: `1 .. ${a.nPositions} (the model's positions)`, found: show(opts.maxContext) })
  let fixed: { tokens: number; capacity: number } | null = null
  if (opts.static !== undefined) {
    const { tokens, capacity = maxContext } = opts.static
    if (!Number.isInteger(tokens) || tokens < 1 || tokens > maxContext)
      throw new UsageError({ where: 'ONNX export', what: 'static tokens out of range', expected: `1 .. ${maxContext} (the context)`, found: show(tokens) })
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > maxContext)
      throw new UsageError({ where: 'ONNX export', what: 'static KV capacity out of range', expected: `1 .. ${maxContext} (the context)`, found: show(capacity) })
    fixed = { tokens, capacity }
  }
  const dtype = opts.dtype ?? 'f32'
  if (dtype !== 'f32' && dtype !== 'f16')
    throw new UsageError({ where: 'ONNX export', what: 'unknown dtype', expected: 'f32 or f16', found: show(opts.dtype) })
  const storage = Object.keys(model.info.storageDtypes)
  if (model.device.name !== 'js' && storage.some((s) => s !== 'F32'))
    throw new UsageError({
      where: 'ONNX export',
      what: `the weights are stored as ${storage.join('+')} on the ${model.device.name} device, which cannot read them back as f32`,
      hint: 'load the model on the js device (device: "js") or with dtype F32',
    })
  return { maxContext, dtype, fixed }
}

/** Builds the ONNX graph of a loaded model (nothing is read from the device until it is written). */
export function buildOnnxGraph(model: Model, opts: OnnxExportOptions = {}): OnnxGraph {
  return build(model, opts)
}

function build(model: Model, opts: OnnxExportOptions): Built {
  const { maxContext, dtype, fixed } = checkOptions(model, opts)
  const a = model.arch, dev = model.device, w = model.weights
  const { nEmbd: C, nHead: H, headDim: D, nVocab: V } = a
  const g = new Graph()

  // weights: each placed Weight becomes one initializer (a tied LM head reuses the embedding's)
  const byWeight = new Map<Weight | Buf, string>()
  /**
   * One initializer from placed Weights stacked along their rows (q, k, v as one [3C, C]), optionally
   * only the first `rows` rows (the position table cut to maxContext). f16: matrices are stored as f16
   * and widened by a Cast; vectors stay f32.
   */
  const matrix = (name: string, parts: Weight[], rows?: number): string => {
    const key = parts.length === 1 ? parts[0] : null
    const hit = key && byWeight.get(key)
    if (hit) return hit
    const cols = parts[0].shape.length === 2 ? parts[0].shape[1] : 0
    const n = rows ?? parts.reduce((s, p) => s + p.shape[0], 0)
    const dims = cols ? [n, cols] : [n]
    const count = n * (cols || 1)
    const read = async () => {
      if (parts.length === 1) return (await readWeight(dev, parts[0])).subarray(0, count)
      const out = new Float32Array(count)
      let at = 0
      for (const p of parts) {
        const data = await readWeight(dev, p)
        out.set(data, at)
        at += data.length
      }
      return out
    }
    let out: string
    if (dtype === 'f16' && cols) {
      const stored = g.init(name + '.f16', dims, DataType.FLOAT16, 2 * count, async () => bytesOf(f32ToF16Array(await read())))
      out = g.op('Cast', [stored], [attrInt('to', DataType.FLOAT)], g.fresh(name))
    } else out = g.init(name, dims, DataType.FLOAT, 4 * count, async () => bytesOf(await read()))
    if (key) byWeight.set(key, out)
    return out
  }
  const vector = (name: string, b: Buf, n: number): string => {
    const hit = byWeight.get(b)
    if (hit) return hit
    const out = g.init(name, [n], DataType.FLOAT, 4 * n, async () => bytesOf(await readVector(dev, b, n)))
    byWeight.set(b, out)
    return out
  }
  const biasOf = (name: string, lin: Linear) => (lin.b ? matrix(name, [lin.b]) : null)

  // graph inputs
  const dim = (d: number | string): TensorShapeDimension => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })
  const value = (name: string, elemType: number, dims: (number | string)[]): ValueInfoProto => ({
    name, type: { tensorType: { elemType, shape: { dim: dims.map(dim) } } },
  })
  // dynamic: Optimum's symbolic dims; static: batch 1, `tokens` new rows, a `capacity`-position cache
  const B = fixed ? 1 : 'batch_size', S = fixed ? fixed.tokens : 'sequence_length'
  const inputs: ValueInfoProto[] = [
    value('input_ids', DataType.INT64, [B, S]),
    value('attention_mask', DataType.INT64, [B, fixed ? fixed.capacity + fixed.tokens : 'total_sequence_length']),
    value('position_ids', DataType.INT64, [B, S]),
  ]
  const last = opts.lastLogitsOnly === true
  if (opts.selectRows) inputs.push(value('logits_rows', DataType.INT64, ['logits_rows']))
  const outputs: ValueInfoProto[] = [value('logits', DataType.FLOAT, [B, opts.selectRows ? 'logits_rows' : last ? 1 : S, V])]
  for (let l = 0; l < a.nLayer; l++)
    for (const kv of ['key', 'value']) {
      inputs.push(value(`past_key_values.${l}.${kv}`, DataType.FLOAT, [B, H, fixed ? fixed.capacity : 'past_sequence_length', D]))
      outputs.push(value(`present.${l}.${kv}`, DataType.FLOAT, [B, H, fixed ? fixed.tokens : 'total_sequence_length', D]))
    }

  for (const io of [...inputs, ...outputs]) g.fresh(io.name) // reserved: no other value takes these names

  // shapes from the inputs
  const shapeBS = g.op('Shape', ['input_ids'], [], g.fresh('shape_batch_seq')) // [B, S]
  const shapeWith = (stem: string, tail: number[]) => g.op('Concat', [shapeBS, g.i64(`dims_${stem}`, tail)], [attrInt('axis', 0)], g.fresh(`shape_${stem}`))
  const shapeHeads = shapeWith('heads', [H, D]) // [B, S, H, D]
  const rowsC = g.i64('rows_c', [-1, C]) // [N, C], N = B * S
  const flat = g.i64('flat', [-1])

  // the attention masks, shared by every layer: causal (+ window) over sequence indices, and padding
  const zero = g.i64('zero', [0], []), one = g.i64('one', [1], [])
  let queryIndex: string, keyIndex: string
  if (fixed) {
    // static: by positions. The cache holds position p at index p; the new rows sit at their position_ids
    const rowPositions = g.op('Reshape', ['position_ids', g.i64('flat_static', [-1])]) // [S]
    queryIndex = rowPositions
    keyIndex = g.op('Concat', [g.op('Range', [zero, g.i64('capacity', [fixed.capacity], []), one]), rowPositions], [attrInt('axis', 0)]) // [capacity + S]
  } else {
    const seqLen = g.op('Squeeze', [g.op('Shape', ['input_ids'], [attrInt('start', 1)])])
    const totalLen = g.op('Squeeze', [g.op('Shape', ['attention_mask'], [attrInt('start', 1)])])
    const pastLen = g.op('Sub', [totalLen, seqLen])
    queryIndex = g.op('Range', [pastLen, totalLen, one]) // [S]: past .. total-1
    keyIndex = g.op('Range', [zero, totalLen, one]) // [T]
  }
  const distance = g.op('Sub', [g.op('Unsqueeze', [queryIndex, g.i64('axis1', [1])]), g.op('Unsqueeze', [keyIndex, g.i64('axis0', [0])])]) // [S, T]: i - j
  const causal = g.op('GreaterOrEqual', [distance, zero])
  const padding = g.op('Unsqueeze', [g.op('Cast', ['attention_mask'], [attrInt('to', DataType.BOOL)]), g.i64('axes12', [1, 2])]) // [B, 1, 1, T]
  const globalMask = g.op('And', [causal, padding], [], g.fresh('mask_global')) // [B, 1, S, T]
  const masks = new Map<number, string>([[0, globalMask]])
  const maskFor = (window: number): string => {
    let m = masks.get(window)
    if (!m) {
      const near = g.op('Less', [distance, g.i64(`window_${window}`, [window], [])])
      m = g.op('And', [globalMask, near], [], g.fresh(`mask_local_${window}`))
      masks.set(window, m)
    }
    return m
  }
  const masked = g.f32('masked_score', [MASKED], [])

  // embeddings (decoder.ts): wte[ids] (+ wpe[positions])
  const ids = g.op('Reshape', ['input_ids', flat])
  const positions = g.op('Reshape', ['position_ids', flat])
  let x = g.op('Gather', [matrix('wte', [w.shared.wte]), ids])
  if (w.shared.wpe) x = g.op('Add', [x, g.op('Gather', [matrix('wpe', [w.shared.wpe], maxContext), positions])], [], g.fresh('embed'))

  // GPT-J's rotary tables at the positions in flight: cos, sin [B, S, 1, R/2, 1]
  let rotary: { cos: string; sin: string; shape: string; shapeR: string } | null = null
  const R = a.rotaryDim
  if (R > 0) {
    const table = rotaryTable(maxContext, R), half = R / 2
    const cos = new Float32Array(maxContext * half), sin = new Float32Array(maxContext * half)
    for (let i = 0; i < maxContext * half; i++) {
      cos[i] = table[2 * i]
      sin[i] = table[2 * i + 1]
    }
    const at = (name: string, t: Float32Array) => {
      const tab = g.init(`rotary.${name}`, [maxContext, half], DataType.FLOAT, t.byteLength, async () => bytesOf(t))
      return g.op('Unsqueeze', [g.op('Gather', [tab, 'position_ids']), g.i64(`axes24_${name}`, [2, 4])], [], g.fresh(`rotary_${name}`))
    }
    rotary = { cos: at('cos', cos), sin: at('sin', sin), shape: shapeWith('pairs', [H, half, 2]), shapeR: shapeWith('rotary', [H, R]) }
  }
  /** Layers.ts selfAttention's rotary on x [B, S, H, D]: pairs (2i, 2i+1) of the first R dims rotated. */
  const rotate = (x4: string, tag: string): string => {
    const r = rotary!
    let rot = x4, pass: string | null = null
    if (R < D) {
      rot = g.op('Slice', [x4, g.i64(`${tag}_rs`, [0]), g.i64(`${tag}_re`, [R]), g.i64(`${tag}_ax`, [3])])
      pass = g.op('Slice', [x4, g.i64(`${tag}_ps`, [R]), g.i64(`${tag}_pe`, [D]), g.i64(`${tag}_ax`, [3])])
    }
    const pairs = g.op('Reshape', [rot, r.shape]) // [B, S, H, R/2, 2]
    const [x0, x1] = g.opN('Split', [pairs, g.i64(`${tag}_split`, [1, 1])], 2, [attrInt('axis', 4)])
    // x[2i] = x[2i] cos - x[2i+1] sin;  x[2i+1] = x[2i+1] cos + x[2i] sin
    const y0 = g.op('Sub', [g.op('Mul', [x0, r.cos]), g.op('Mul', [x1, r.sin])])
    const y1 = g.op('Add', [g.op('Mul', [x1, r.cos]), g.op('Mul', [x0, r.sin])])
    const rotated = g.op('Reshape', [g.op('Concat', [y0, y1], [attrInt('axis', 4)]), r.shapeR])
    return pass ? g.op('Concat', [rotated, pass], [attrInt('axis', 3)]) : rotated
  }

  const layerNorm = (x2: string, n: Norm, name: string) =>
    g.op('LayerNormalization', [x2, vector(`${name}.weight`, n.g, C), vector(`${name}.bias`, n.b, C)], [attrInt('axis', -1), attrFloat('epsilon', a.eps)])
  /** nn.Linear on [N, in] rows: Gemm with the weight as placed ([out, in]). */
  const linear = (x2: string, lin: Linear, name: string) => {
    const b = biasOf(`${name}.bias`, lin)
    return g.op('Gemm', [x2, matrix(`${name}.weight`, [lin.w]), ...(b ? [b] : [])], [attrInt('transB', 1)])
  }
  const activation = (h: string, act: Activation): string => {
    const c = (name: string, v: number) => g.f32(name, [v], [])
    switch (act) {
      case 'gelu_tanh': { // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        const cube = g.op('Mul', [g.op('Mul', [h, h]), h])
        const inner = g.op('Mul', [c('sqrt_2_over_pi', Math.sqrt(2 / Math.PI)), g.op('Add', [h, g.op('Mul', [c('gelu_c', 0.044715), cube])])])
        return g.op('Mul', [g.op('Mul', [c('half', 0.5), h]), g.op('Add', [c('one_f', 1), g.op('Tanh', [inner])])])
      }
      case 'gelu_erf': // 0.5 x (1 + erf(x / sqrt 2))
        return g.op('Mul', [g.op('Mul', [c('half', 0.5), h]), g.op('Add', [c('one_f', 1), g.op('Erf', [g.op('Div', [h, c('sqrt_2', Math.SQRT2)])])])])
      case 'relu':
        return g.op('Relu', [h])
      case 'silu':
        return g.op('Mul', [h, g.op('Sigmoid', [h])])
      case 'quick_gelu':
        return g.op('Mul', [h, g.op('Sigmoid', [g.op('Mul', [c('quick_gelu_c', 1.702), h])])])
    }
  }
  const toHeads = [0, 2, 1, 3]

  for (let l = 0; l < a.nLayer; l++) {
    const p = `h.${l}`
    const L = blockWeights(a, w.layers[l])
    const kind = a.layers[l]
    const h = layerNorm(x, L.ln1, `${p}.ln_1`)
    // q, k, v = h·Wq, h·Wk, h·Wv: one Gemm over the three weights stacked, split after
    const [q, k, v] = g.opN('Split', [qkvGemm(g, h, L, p, matrix), g.i64(`${p}.qkv_split`, [C, C, C])], 3, [attrInt('axis', 1)])
    let q4 = g.op('Reshape', [q, shapeHeads]), k4 = g.op('Reshape', [k, shapeHeads])
    const v4 = g.op('Reshape', [v, shapeHeads])
    if (rotary) {
      q4 = rotate(q4, `${p}.q`)
      k4 = rotate(k4, `${p}.k`)
    }
    const qh = g.op('Transpose', [q4], [attrInts('perm', toHeads)]) // [B, H, S, D]
    // dynamic: present = past + the new rows; static: present = the new rows (the caller writes them into its cache)
    const kNew = g.op('Transpose', [k4], [attrInts('perm', toHeads)], fixed ? `present.${l}.key` : undefined)
    const vNew = g.op('Transpose', [v4], [attrInts('perm', toHeads)], fixed ? `present.${l}.value` : undefined)
    const keys = g.op('Concat', [`past_key_values.${l}.key`, kNew], [attrInt('axis', 2)], fixed ? undefined : `present.${l}.key`)
    const values = g.op('Concat', [`past_key_values.${l}.value`, vNew], [attrInt('axis', 2)], fixed ? undefined : `present.${l}.value`)
    let scores = g.op('MatMul', [qh, g.op('Transpose', [keys], [attrInts('perm', [0, 1, 3, 2])])]) // [B, H, S, T]
    if (kind.scale !== 1) scores = g.op('Mul', [scores, g.f32(`${p}.attn.scale`, [kind.scale], [])])
    const probs = g.op('Softmax', [g.op('Where', [maskFor(kind.window), scores, masked])], [attrInt('axis', -1)])
    const att = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, values])], [attrInts('perm', toHeads)]), rowsC]) // [N, C]
    const attnOut = linear(att, L.o, `${p}.attn.out`)
    const mlp = (hh: string) => linear(activation(linear(hh, L.fcIn, `${p}.mlp.fc_in`), a.act), L.fcOut, `${p}.mlp.fc_out`)
    if (L.ln2) {
      // x = x + attn(ln_1 x); x = x + mlp(ln_2 x)
      x = g.op('Add', [x, attnOut])
      x = g.op('Add', [x, mlp(layerNorm(x, L.ln2, `${p}.ln_2`))], [], g.fresh(`${p}.out`))
    } else {
      // GPT-J: x = (attn(ln_1 x) + mlp(ln_1 x)) + x
      x = g.op('Add', [g.op('Add', [attnOut, mlp(h)]), x], [], g.fresh(`${p}.out`))
    }
  }

  const pick = opts.selectRows === true
  if (pick) {
    // the rows asked for (batch 1): [S, C] -> [K, C]
    x = g.op('Gather', [x, 'logits_rows'], [attrInt('axis', 0)], g.fresh('picked_rows'))
  } else if (last) {
    // the last position of each row: [B, S, C] -> [B, C]
    const rows = g.op('Reshape', [x, shapeWith('hidden', [C])])
    x = g.op('Squeeze', [g.op('Gather', [rows, g.i64('last_index', [-1])], [attrInt('axis', 1)]), g.i64('axis1_sq', [1])])
  }
  const xf = layerNorm(x, w.shared.lnF, 'ln_f')
  const logits = linear(xf, w.shared.lmHead, 'lm_head')
  if (pick) g.op('Unsqueeze', [logits, g.i64('axis0_uq', [0])], [], 'logits')
  else if (last) g.op('Unsqueeze', [logits, g.i64('axis1_uq', [1])], [], 'logits')
  else g.op('Reshape', [logits, shapeWith('logits', [V])], [], 'logits')

  return {
    nodes: g.nodes,
    inits: g.inits,
    initializers: g.inits.map(({ name, dims, dataType, bytes }) => ({ name, dims, dataType, bytes })),
    inputs,
    outputs,
    initializerBytes: g.inits.reduce((s, i) => s + i.bytes, 0),
    maxContext,
    static: fixed,
  }
}

/** [N, 3C] = h · [Wq; Wk; Wv]ᵀ (+ [bq; bk; bv]): the three Linears of selfAttention as one Gemm, the weights stacked. */
function qkvGemm(g: Graph, h: string, L: BlockWeights, p: string, matrix: (name: string, parts: Weight[]) => string): string {
  const parts = [L.q, L.k, L.v]
  const inputs = [h, matrix(`${p}.attn.qkv.weight`, parts.map((lin) => lin.w))]
  if (parts.some((lin) => lin.b)) {
    if (!parts.every((lin) => lin.b)) throw new UsageError({ where: 'ONNX export', what: `layer ${p}: some of q, k, v have a bias and some do not` })
    inputs.push(matrix(`${p}.attn.qkv.bias`, parts.map((lin) => lin.b!)))
  }
  return g.op('Gemm', inputs, [attrInt('transB', 1)])
}

// --- writing -------------------------------------------------------------------------------------------

/** The ModelProto around a graph whose initializers are given. */
function modelProto(model: Model, built: Built, initializer: TensorProto[], dtype: OnnxDType): ModelProto {
  const a = model.arch
  const meta: Record<string, string> = {
    'refgpt.family': a.family,
    'refgpt.model_type': model.info.modelType,
    'refgpt.max_context': String(built.maxContext),
    ...(built.static ? { 'refgpt.static_tokens': String(built.static.tokens), 'refgpt.static_capacity': String(built.static.capacity) } : {}),
    'refgpt.dtype': dtype,
    'refgpt.source': model.info.dir,
    num_layers: String(a.nLayer),
    num_heads: String(a.nHead),
    head_dim: String(a.headDim),
    hidden_size: String(a.nEmbd),
    vocab_size: String(a.nVocab),
  }
  return {
    irVersion: ONNX_IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'refgpt',
    producerVersion: '0.1.0',
    docString: `${model.traits.block} decoder with KV cache (inputs input_ids, attention_mask, position_ids, past_key_values.{i}.key/.value; outputs logits, present.{i}.key/.value)`,
    graph: { name: `refgpt_${a.family}`, node: built.nodes, initializer, input: built.inputs, output: built.outputs },
    metadataProps: Object.entries(meta).map(([key, value]) => ({ key, value })),
  }
}

/** A file written next to its destination and renamed into place on commit (removed on abort). */
class PendingFile {
  readonly tmp: string
  private fd: number | null
  position = 0

  constructor(readonly file: string) {
    this.tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`
    try {
      this.fd = fs.openSync(this.tmp, 'wx', 0o666)
    } catch (e) {
      throw ioError('cannot create the file', file, e)
    }
  }

  write(bytes: Uint8Array): void {
    for (let done = 0; done < bytes.byteLength; ) {
      const chunk = bytes.subarray(done, Math.min(bytes.byteLength, done + (1 << 30)))
      try {
        done += fs.writeSync(this.fd!, chunk)
      } catch (e) {
        throw ioError('cannot write the file', this.file, e)
      }
    }
    this.position += bytes.byteLength
  }

  /** fsync and close (the data is complete; rename() puts it in place). */
  finish(): void {
    try {
      fs.fsyncSync(this.fd!)
      fs.closeSync(this.fd!)
      this.fd = null
    } catch (e) {
      throw ioError('cannot write the file', this.file, e)
    }
  }

  rename(): void {
    fs.renameSync(this.tmp, this.file)
  }

  abort(): void {
    if (this.fd !== null) {
      try {
        fs.closeSync(this.fd)
      } catch {
        // already failing
      }
      this.fd = null
    }
    try {
      fs.unlinkSync(this.tmp)
    } catch {
      // nothing to remove
    }
  }
}

/** Checks that `file` can be written (its folder exists, it is not a folder) before anything is read. */
export function checkOnnxOutput(file: string): string {
  const abs = path.resolve(file)
  const dir = path.dirname(abs)
  let st: fs.Stats | undefined
  try {
    st = fs.statSync(dir)
  } catch {
    // reported below
  }
  if (!st?.isDirectory()) throw new UsageError({ where: abs, what: 'the output folder does not exist', hint: `create ${dir} first` })
  try {
    if (fs.statSync(abs).isDirectory()) throw new UsageError({ where: abs, what: 'cannot write a file over a folder', hint: 'pass a file path such as model.onnx' })
  } catch (e) {
    if (e instanceof RefgptError) throw e
  }
  return abs
}

/**
 * The ONNX model of `model` as bytes in memory, initializers inline (for ONNX Runtime's
 * InferenceSession.create(bytes) where there is no file system: the browser). One protobuf holds at most
 * 2 GiB, so a bigger model is refused: write it with exportOnnx, whose external data has no such limit.
 */
export async function onnxBytes(model: Model, opts: Omit<OnnxExportOptions, 'externalData'> = {}): Promise<Uint8Array> {
  const built = build(model, opts)
  if (built.initializerBytes > ONNX_INLINE_LIMIT)
    throw new UsageError({
      where: 'ONNX export', what: `the weights (${built.initializerBytes} bytes) do not fit in one protobuf`, expected: `at most ${ONNX_INLINE_LIMIT} bytes inline`,
      hint: 'write a file with exportOnnx (its initializers go to FILE.data), or use a smaller model or dtype f16',
    })
  let done = 0
  const initializer: TensorProto[] = []
  for (const init of built.inits) {
    const t = await inlineTensor(init)
    opts.onProgress?.((done += init.bytes), built.initializerBytes)
    initializer.push(t)
  }
  return encodeModelProto(modelProto(model, built, initializer, opts.dtype ?? 'f32'))
}

/**
 * Writes `model` as an ONNX decoder graph to `file` (and, for big models or with externalData, its
 * initializers to `file`.data). Both files appear only when complete; on any error neither is left
 * behind (an earlier file of that name is kept).
 */
export async function exportOnnx(model: Model, file: string, opts: OnnxExportOptions = {}): Promise<OnnxExportResult> {
  const abs = checkOnnxOutput(file)
  const built = build(model, opts)
  const dtype = opts.dtype ?? 'f32'
  const external = opts.externalData ?? built.initializerBytes > ONNX_INLINE_LIMIT
  const dataFile = external ? `${abs}.data` : null
  const pending: PendingFile[] = []
  let done = 0
  const progress = (n: number) => {
    done += n
    opts.onProgress?.(done, built.initializerBytes)
  }
  const inline = async (init: Initializer): Promise<TensorProto> => {
    const t = await inlineTensor(init)
    progress(init.bytes)
    return t
  }
  try {
    const initializer: TensorProto[] = []
    if (dataFile) {
      const data = new PendingFile(dataFile)
      pending.push(data)
      for (const init of built.inits) {
        if (init.bytes < EXTERNAL_MIN_BYTES) {
          initializer.push(await inline(init))
          continue
        }
        const pad = (EXTERNAL_ALIGN - (data.position % EXTERNAL_ALIGN)) % EXTERNAL_ALIGN
        if (pad) data.write(new Uint8Array(pad))
        const offset = data.position
        const bytes = await init.data()
        checkSize(init, bytes)
        data.write(bytes)
        progress(bytes.byteLength)
        initializer.push({
          name: init.name, dims: init.dims, dataType: init.dataType, dataLocation: 1,
          externalData: [
            { key: 'location', value: path.basename(dataFile) },
            { key: 'offset', value: String(offset) },
            { key: 'length', value: String(bytes.byteLength) },
          ],
        })
      }
      data.finish()
    } else {
      for (const init of built.inits) initializer.push(await inline(init))
    }
    const encoded = encodeModelProto(modelProto(model, built, initializer, dtype))
    const onnx = new PendingFile(abs)
    pending.push(onnx)
    onnx.write(encoded)
    onnx.finish()
    for (const f of pending) f.rename() // the data first: the model never points at a missing file
    return {
      file: abs,
      dataFile,
      bytes: encoded.byteLength,
      dataBytes: dataFile ? pending[0].position : 0,
      nodes: built.nodes.length,
      initializers: built.inits.length,
      inputs: built.inputs.map((i) => i.name),
      outputs: built.outputs.map((o) => o.name),
      static: built.static,
    }
  } catch (e) {
    for (const f of pending) f.abort()
    if (e instanceof RangeError && /array buffer|allocation/i.test(e.message))
      throw new UsageError({ where: abs, what: `out of memory while encoding the ONNX model (${e.message})`, hint: 'pass externalData (--external-data) to keep the weights in FILE.data' })
    throw e
  }
}

/** An initializer with its bytes inside the model. */
async function inlineTensor(init: Initializer): Promise<TensorProto> {
  const bytes = await init.data()
  checkSize(init, bytes)
  return { name: init.name, dims: init.dims, dataType: init.dataType, rawData: bytes }
}

function checkSize(init: Initializer, bytes: Uint8Array): void {
  if (bytes.byteLength !== init.bytes)
    throw new RangeError(`ONNX export: initializer ${init.name} has ${bytes.byteLength} bytes, expected ${init.bytes}`)
}
