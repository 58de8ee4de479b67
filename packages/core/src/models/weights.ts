// Moves named checkpoint tensors onto a device, one at a time, with ggml's three checks:
// the name exists, the shape is what config.json implies, and nothing the model needs is missing.
// A weight bigger than one device buffer may hold (device.limits.maxBufferBytes) is placed as
// several buffers of whole rows (a Weight's parts). Sizes come from the storage types alone, so a
// dry run (inspect, memory planning) needs no device.

import { storageBytes } from '../device/storage.js'
import type { Buf, Device, Storage } from '../device/types.js'
import { CheckpointError, ResourceError } from '../errors.js'
import type { LoadedCheckpoint } from '../io/index.js'
import type { DType } from '../io/types.js'
import type { Linear, Norm, Weight } from './arch.js'

export interface PlaceOptions {
  /** GPT-2's Conv1D stores [in, out]; transpose to the [out, in] layout every device expects. */
  conv1d?: boolean
}

/**
 * A checked tensor: its shape in the device layout and the dtype it was stored in, with its f32 data
 * when it had to be transformed (transposed, split); otherwise the data is read at placement, straight
 * into device memory where the device allows it.
 */
export interface Read {
  name: string
  shape: number[]
  dtype: DType
  data?: Float32Array
  /** The tensor was stored transposed (GPT-2's Conv1D [in, out]). */
  conv1d?: boolean
  /** A row slice of the checkpoint tensor (a split fused QKV): its first row there, and the full shape as stored. */
  row0?: number
  stored?: number[]
}

/**
 * Where a checkpoint tensor went: its name, the device Weight holding it (or the rows of it from
 * row0), and whether it was transposed. Training reads gradients and writes checkpoints through these.
 */
export interface Placement {
  name: string
  weight: Weight
  /** The checkpoint tensor's shape as stored. */
  stored: number[]
  /** First row of the checkpoint tensor (in the device layout) this Weight holds (fused QKV parts). */
  row0: number
  conv1d: boolean
}

/**
 * Most device buffers one weight may be split into: a weight needing more means the device's buffer
 * limit (maxBufferBytes) is far too small for the model (WebGPU's default 128 MiB binding splits GPT-2's
 * 154 MB wte in two), and the split table itself would become the allocation.
 */
export const MAX_WEIGHT_PARTS = 1 << 16

/** The handle a dry run returns: never handed to a device. */
const DRY = Object.freeze({}) as Buf

export class WeightReader {
  /** Tensor names that were placed, for the "unused tensors" report. */
  readonly used = new Set<string>()
  /** Elements placed, per storage type. */
  readonly counts: Partial<Record<Storage, number>> = {}
  /** Bytes of everything placed, as its storage type keeps it. */
  bytes = 0
  /** Elements of everything placed. */
  elements = 0
  /** Device buffers placed (a split weight counts each part). */
  buffers = 0
  /** Elements of the largest tensor read (its f32 copy is on the host while it is placed). */
  largest = 0
  /** Every tensor placed, in order (not for dry runs). */
  readonly placements: Placement[] = []
  /** When set, read() only records each name and its shape (as stored) here: how random checkpoints get their table. */
  recorder: Map<string, number[]> | null = null
  /** A dry run's buffer limit (the device's maxBufferBytes), so it counts the buffers a split weight takes. */
  bufferLimit = Infinity
  /**
   * Under Q4 the LM head is kept as Q8, as llama.cpp keeps its output tensor above 4 bits: the table of
   * `vocabRows` rows named lm_head, or, when `tiedHead`, the token embedding that serves as the head
   * (0: every tensor as requested).
   */
  vocabRows = 0
  tiedHead = false
  /** The host array tensors are read into when the device copies weights (Device.weightCopies); dropped by done(). */
  private scratch: Float32Array | null = null
  /** Called after each tensor (or part of a fused one) is placed on the device, with `bytes` so far (not for dry runs). */
  onPlaced: ((bytes: number) => void) | null = null

  constructor(
    readonly ckpt: LoadedCheckpoint,
    /** null for dry runs and recorders. */
    readonly dev: Device | null,
    /** Name prefix of this checkpoint: 'transformer.' for *LMHeadModel saves, '' for bare GPT2Model saves. */
    readonly prefix: string,
    /** Storage requested by the user; undefined keeps each tensor's own dtype. */
    readonly storage?: Storage,
    /** Check names and shapes and count sizes, but read and place nothing (inspect, memory planning). */
    readonly dryRun = false,
  ) {}

  /** Reads `name` (full name) as f32, checking its shape against `shape` as stored in the file. */
  read(name: string, shape: number[], opts: PlaceOptions = {}): Read {
    const layout = opts.conv1d ? [shape[1], shape[0]] : shape
    if (this.recorder) {
      this.recorder.set(name, shape)
      this.largest = Math.max(this.largest, shape.reduce((p, d) => p * d, 1))
      return { name, shape: layout, dtype: 'F32' }
    }
    const info = this.ckpt.tensors.get(name)
    if (!info && this.ckpt.unsupported.has(name)) this.ckpt.readF32(name) // throws: names the file, tensor and dtype
    if (!info)
      throw new CheckpointError({
        where: this.ckpt.dir,
        what: `tensor "${name}" is missing from the checkpoint`,
        expected: `shape [${shape}]`,
        found: `${this.ckpt.tensors.size} tensors, none with that name`,
        hint: 'is this a checkpoint of the model_type in config.json? `refgpt inspect` checks every name',
      })
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))
      throw new CheckpointError({
        where: `${info.file}: tensor ${name}`,
        what: 'shape disagrees with config.json',
        expected: `[${shape}]`,
        found: `[${info.shape}]`,
        hint: 'the weights and config.json come from different models',
      })
    this.used.add(name)
    this.largest = Math.max(this.largest, info.size)
    if (this.dryRun || !opts.conv1d) return { name, shape: layout, dtype: info.dtype }
    return { name, shape: layout, dtype: info.dtype, data: transpose(this.readF32(name), shape[0], shape[1]), conv1d: true }
  }

  /**
   * Tensor `name` as f32: in the reused scratch array when the device copies what weight() is given (its
   * pages are touched once, not once per tensor), else in a new array the device may keep. The vocabulary
   * tables (the embedding, the LM head: vocabRows rows), read once each and the largest, come in arrays of
   * their own: a scratch of their size would stay on the host through the whole load.
   */
  private readF32(name: string): Float32Array {
    const info = this.ckpt.tensors.get(name)
    if (!info || !this.dev?.weightCopies || (this.vocabRows > 0 && info.shape[0] === this.vocabRows)) return this.ckpt.readF32(name)
    if (!this.scratch || this.scratch.length < info.size) this.scratch = new Float32Array(info.size)
    return this.ckpt.readF32(name, this.scratch.subarray(0, info.size))
  }

  /** The load is over: drops the scratch array (the largest tensor's size). */
  done(): void {
    this.scratch = null
  }

  /** Places a tensor on the device as the requested storage (or the dtype it had in the file). */
  place(t: Read): Weight {
    const storage = this.account(t)
    const rows = t.shape[0]
    const max = this.dev?.limits.maxBufferBytes ?? this.bufferLimit
    const rowBytes = storageBytes(t.shape.length === 2 ? [1, t.shape[1]] : [1], storage)
    const perPart = storageBytes(t.shape, storage) > max ? Math.max(1, Math.floor(max / rowBytes)) : rows
    if (Math.ceil(rows / perPart) > MAX_WEIGHT_PARTS)
      throw new ResourceError({
        where: `${this.ckpt?.dir ?? 'weights'}: tensor ${t.name}`,
        what: 'the tensor would be split into too many device buffers',
        expected: `at most ${MAX_WEIGHT_PARTS} buffers of ${max} bytes (the device's maxBufferBytes)`,
        found: `${Math.ceil(rows / perPart)} buffers for shape [${t.shape}]`,
        hint: 'raise maxBufferBytes',
      })
    const rowStart: number[] = []
    for (let r = 0; r < rows; r += perPart) rowStart.push(r)
    rowStart.push(rows)
    return this.placeParts(t, storage, rowStart)
  }

  /** Places a tensor split into the given row ranges (a bias split like its weight). */
  placeLike(t: Read, like: Weight): Weight {
    return this.placeParts(t, this.account(t), like.rowStart)
  }

  /** The storage a tensor is placed as; counts its elements and bytes. */
  private account(t: Read): Storage {
    const head = t.shape.length === 2 && t.shape[0] === this.vocabRows && (this.tiedHead || /(^|\.)lm_head\.weight$/.test(t.name))
    const storage: Storage = this.storage === 'Q4' && head ? 'Q8' : this.storage ?? t.dtype
    const n = t.shape.reduce((p, d) => p * d, 1)
    this.counts[storage] = (this.counts[storage] ?? 0) + n
    this.elements += n
    this.bytes += storageBytes(t.shape, storage)
    return storage
  }

  private placeParts(t: Read, storage: Storage, rowStart: number[]): Weight {
    const w = this.placeBuffers(t, storage, rowStart)
    if (!this.dryRun && this.dev) {
      this.placements.push({ name: t.name, weight: w, stored: t.stored ?? (t.conv1d ? [t.shape[1], t.shape[0]] : t.shape), row0: t.row0 ?? 0, conv1d: t.conv1d === true })
      this.onPlaced?.(this.bytes)
    }
    return w
  }

  private placeBuffers(t: Read, storage: Storage, rowStart: number[]): Weight {
    const nParts = rowStart.length - 1
    this.buffers += nParts
    const dev = this.dev
    if (this.dryRun || !dev) return { shape: t.shape, parts: new Array<Buf>(nParts).fill(DRY), rowStart }
    if (nParts === 1) {
      const buf = !t.data && storage === 'F32' && dev.weightF32
        ? dev.weightF32(t.shape, (dst) => this.ckpt.readF32(t.name, dst))
        : dev.weight(t.data ?? this.readF32(t.name), t.shape, storage)
      return { shape: t.shape, parts: [buf], rowStart }
    }
    const data = t.data ?? this.readF32(t.name)
    const cols = t.shape.length === 2 ? t.shape[1] : 1
    const parts = rowStart.slice(0, -1).map((r0, i) => {
      const r1 = rowStart[i + 1]
      const shape = t.shape.length === 2 ? [r1 - r0, cols] : [r1 - r0]
      const rows = dev.weightCopies ? data.subarray(r0 * cols, r1 * cols) : data.slice(r0 * cols, r1 * cols)
      return dev.weight(rows, shape, storage)
    })
    return { shape: t.shape, parts, rowStart }
  }

  /** Places the tensor `prefix + name`. */
  tensor(name: string, shape: number[], opts: PlaceOptions = {}): Weight {
    return this.place(this.read(this.prefix + name, shape, opts))
  }

  /** nn.Linear(inF, outF) stored [outF, inF] (or Conv1D stored [inF, outF]) under `name`.weight/.bias. */
  linear(name: string, inF: number, outF: number, bias: boolean, opts: PlaceOptions = {}): Linear {
    const w = this.tensor(`${name}.weight`, opts.conv1d ? [inF, outF] : [outF, inF], opts)
    return { w, b: bias ? this.placeLike(this.read(`${this.prefix}${name}.bias`, [outF]), w) : null }
  }

  /** A 1-D tensor kept in one buffer (LayerNorm weights). */
  vector(name: string, n: number): Buf {
    const t = this.read(this.prefix + name, [n])
    return this.placeParts(t, this.account(t), [0, n]).parts[0]
  }

  norm(name: string, C: number): Norm {
    return { g: this.vector(`${name}.weight`, C), b: this.vector(`${name}.bias`, C) }
  }

  /** An untied LM head: `lm_head.weight` [nVocab, C] (+ `lm_head.bias`), outside the 'transformer.' prefix. */
  lmHead(nVocab: number, C: number, bias: boolean): Linear {
    const w = this.place(this.read('lm_head.weight', [nVocab, C]))
    return { w, b: bias ? this.placeLike(this.read('lm_head.bias', [nVocab]), w) : null }
  }

  /**
   * GPT-2's fused c_attn: Conv1D [C, 3C] packs q, k, v along the output dimension.
   * Split once, at load time, into three [C, C] Linear weights (and three biases).
   */
  fusedQkv(name: string, C: number): [Linear, Linear, Linear] {
    const w = this.read(`${this.prefix}${name}.weight`, [C, 3 * C], { conv1d: true }) // now [3C, C]
    const b = this.read(`${this.prefix}${name}.bias`, [3 * C])
    const bias = this.dryRun || this.recorder ? undefined : this.ckpt.readF32(b.name)
    const part = (i: number): Linear => {
      const wi = this.place({ name: w.name, data: w.data?.slice(i * C * C, (i + 1) * C * C), shape: [C, C], dtype: w.dtype, conv1d: true, row0: i * C, stored: [C, 3 * C] })
      return { w: wi, b: this.placeLike({ name: b.name, data: bias?.slice(i * C, (i + 1) * C), shape: [C], dtype: b.dtype, row0: i * C, stored: [3 * C] }, wi) }
    }
    return [part(0), part(1), part(2)]
  }
}

/** [rows, cols] -> [cols, rows] */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length)
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]
  return out
}
