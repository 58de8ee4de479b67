// Moves named checkpoint tensors onto a device, one at a time, with ggml's three checks:
// the name exists, the shape is what config.json implies, and nothing the model needs is missing.

import type { Buf, Device, Storage } from '../device/types.js'
import { CheckpointError } from '../errors.js'
import type { LoadedCheckpoint } from '../io/index.js'
import type { DType } from '../io/types.js'
import type { Arch, Linear, Norm } from './arch.js'

export interface PlaceOptions {
  /** GPT-2's Conv1D stores [in, out]; transpose to the [out, in] layout every device expects. */
  conv1d?: boolean
}

/**
 * A checked tensor: its shape in the device layout and the dtype it was stored in, with its f32 data
 * when it had to be transformed (transposed, split); otherwise the data is read at placement, straight
 * into device memory where the device allows it.
 */
interface Read {
  name: string
  shape: number[]
  dtype: DType
  data?: Float32Array
}

/** The handle a dry run returns: never handed to a device. */
const DRY = Object.freeze({}) as Buf

export class WeightReader {
  /** Tensor names that were placed, for the "unused tensors" report. */
  readonly used = new Set<string>()
  /** Elements placed, per storage type. */
  readonly counts: Partial<Record<Storage, number>> = {}
  /** Device bytes of everything placed. */
  bytes = 0
  /** When set, read() only records each name and its shape (as stored) here: how random checkpoints get their table. */
  recorder: Map<string, number[]> | null = null

  constructor(
    readonly ckpt: LoadedCheckpoint,
    readonly dev: Device,
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
    if (this.dryRun || !opts.conv1d) return { name, shape: layout, dtype: info.dtype }
    return { name, shape: layout, dtype: info.dtype, data: transpose(this.ckpt.readF32(name), shape[0], shape[1]) }
  }

  /** Places a tensor on the device as the requested storage (or the dtype it had in the file). */
  place(t: Read): Buf {
    const storage: Storage = this.storage ?? t.dtype
    const n = t.shape.reduce((p, d) => p * d, 1)
    this.counts[storage] = (this.counts[storage] ?? 0) + n
    this.bytes += this.dev.weightBytes(t.shape, storage)
    if (this.dryRun) return DRY
    if (!t.data && storage === 'F32' && this.dev.weightF32) return this.dev.weightF32(t.shape, (dst) => this.ckpt.readF32(t.name, dst))
    return this.dev.weight(t.data ?? this.ckpt.readF32(t.name), t.shape, storage)
  }

  /** Places the tensor `prefix + name`. */
  tensor(name: string, shape: number[], opts: PlaceOptions = {}): Buf {
    return this.place(this.read(this.prefix + name, shape, opts))
  }

  /** nn.Linear(inF, outF) stored [outF, inF] (or Conv1D stored [inF, outF]) under `name`.weight/.bias. */
  linear(name: string, inF: number, outF: number, bias: boolean, opts: PlaceOptions = {}): Linear {
    const w = this.tensor(`${name}.weight`, opts.conv1d ? [inF, outF] : [outF, inF], opts)
    return { w, b: bias ? this.tensor(`${name}.bias`, [outF]) : null }
  }

  norm(name: string, C: number): Norm {
    return { g: this.tensor(`${name}.weight`, [C]), b: this.tensor(`${name}.bias`, [C]) }
  }

  /** An untied LM head: `lm_head.weight` [nVocab, C] (+ `lm_head.bias`), outside the 'transformer.' prefix. */
  lmHead(a: Arch): Linear {
    return {
      w: this.place(this.read('lm_head.weight', [a.nVocab, a.nEmbd])),
      b: a.lmHeadBias ? this.place(this.read('lm_head.bias', [a.nVocab])) : null,
    }
  }

  /**
   * GPT-2's fused c_attn: Conv1D [C, 3C] packs q, k, v along the output dimension.
   * Split once, at load time, into three [C, C] Linear weights (and three biases).
   */
  fusedQkv(name: string, C: number): [Linear, Linear, Linear] {
    const w = this.read(`${this.prefix}${name}.weight`, [C, 3 * C], { conv1d: true }) // now [3C, C]
    const b = this.read(`${this.prefix}${name}.bias`, [3 * C])
    const bias = this.dryRun || this.recorder ? undefined : this.ckpt.readF32(b.name)
    const part = (i: number): Linear => ({
      w: this.place({ name: w.name, data: w.data?.slice(i * C * C, (i + 1) * C * C), shape: [C, C], dtype: w.dtype }),
      b: this.place({ name: b.name, data: bias?.slice(i * C, (i + 1) * C), shape: [C], dtype: b.dtype }),
    })
    return [part(0), part(1), part(2)]
  }
}

/** [rows, cols] -> [cols, rows] */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length)
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]
  return out
}
