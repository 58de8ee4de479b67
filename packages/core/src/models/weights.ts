// Moves named checkpoint tensors onto a device, one at a time, with ggml's three checks:
// the name exists, the shape is what config.json implies, and (at the end) nothing was silently mixed up.

import type { Buf, Device } from '../device/types.js'
import { CheckpointError } from '../errors.js'
import type { LoadedCheckpoint } from '../io/index.js'
import type { DType } from '../io/types.js'
import type { Arch, Linear, Norm } from './arch.js'

export interface PlaceOptions {
  /** GPT-2's Conv1D stores [in, out]; transpose to the [out, in] layout every device expects. */
  conv1d?: boolean
}

export class WeightReader {
  /** Tensor names that were placed, for the "unused tensors" report. */
  readonly used = new Set<string>()
  /** Elements placed, per storage dtype. */
  readonly counts: Partial<Record<DType, number>> = {}
  bytes = 0

  constructor(
    readonly ckpt: LoadedCheckpoint,
    readonly dev: Device,
    /** Name prefix of this checkpoint: 'transformer.' for *LMHeadModel saves, '' for bare GPT2Model saves. */
    readonly prefix: string,
    /** Storage dtype requested by the user; undefined keeps each tensor's own dtype. */
    readonly storage?: DType,
    /** Check names and shapes and count sizes, but read and place nothing (for `inspect`). */
    readonly dryRun = false,
  ) {}

  has(name: string): boolean {
    return this.ckpt.tensors.has(name)
  }

  /** Reads `name` as f32, checking its shape against `shape` (as stored in the file). */
  read(name: string, shape: number[], opts: PlaceOptions = {}): { data: Float32Array; dtype: DType; size: number } {
    const info = this.ckpt.tensors.get(name)
    if (!info && this.ckpt.unsupported.has(name)) this.ckpt.readF32(name) // throws: names the file, tensor and dtype
    if (!info)
      throw new CheckpointError({
        where: this.ckpt.dir,
        what: `tensor "${name}" is missing from the checkpoint`,
        expected: `shape [${shape}]`,
        found: `${this.ckpt.tensors.size} tensors, none with that name`,
        hint: `is this a ${this.prefix ? 'transformers' : 'bare-model'} checkpoint of the model_type in config.json? \`refgpt inspect\` lists the tensor names`,
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
    if (this.dryRun) return { data: new Float32Array(0), dtype: info.dtype, size: info.size }
    let data = this.ckpt.readF32(name)
    if (opts.conv1d) data = transpose(data, shape[0], shape[1])
    return { data, dtype: info.dtype, size: info.size }
  }

  /** Places f32 data on the device in the requested (or the tensor's own) storage dtype. */
  place(data: Float32Array, dtype: DType, size = data.length): Buf {
    const storage = this.storage ?? dtype
    this.counts[storage] = (this.counts[storage] ?? 0) + size
    this.bytes += this.dev.weightBytes(size, storage)
    return this.dryRun ? DRY : this.dev.weight(data, storage)
  }

  /** Places the tensor `prefix + name`. */
  tensor(name: string, shape: number[], opts: PlaceOptions = {}): Buf {
    const { data, dtype, size } = this.read(this.prefix + name, shape, opts)
    return this.place(data, dtype, size)
  }

  /** An untied LM head: `lm_head.weight` [nVocab, C] (+ `lm_head.bias`), outside the 'transformer.' prefix. */
  lmHead(a: Arch): Linear {
    const place = (name: string, shape: number[]) => {
      const { data, dtype, size } = this.read(name, shape)
      return this.place(data, dtype, size)
    }
    return { w: place('lm_head.weight', [a.nVocab, a.nEmbd]), b: a.lmHeadBias ? place('lm_head.bias', [a.nVocab]) : null }
  }

  /** nn.Linear(inF, outF) stored [outF, inF] (or Conv1D stored [inF, outF]) under `name`.weight/.bias. */
  linear(name: string, inF: number, outF: number, bias: boolean, opts: PlaceOptions = {}): Linear {
    const w = this.tensor(`${name}.weight`, opts.conv1d ? [inF, outF] : [outF, inF], opts)
    return { w, b: bias ? this.tensor(`${name}.bias`, [outF]) : null }
  }

  norm(name: string, C: number): Norm {
    return { g: this.tensor(`${name}.weight`, [C]), b: this.tensor(`${name}.bias`, [C]) }
  }

  /**
   * GPT-2's fused c_attn: Conv1D [C, 3C] packs q, k, v along the output dimension.
   * Split once, at load time, into three [C, C] Linear weights (and three biases).
   */
  fusedQkv(name: string, C: number): [Linear, Linear, Linear] {
    const { data: w, dtype } = this.read(`${this.prefix}${name}.weight`, [C, 3 * C], { conv1d: true }) // now [3C, C]
    const { data: b, dtype: bdtype } = this.read(`${this.prefix}${name}.bias`, [3 * C])
    const part = (i: number): Linear => ({
      w: this.place(w.slice(i * C * C, (i + 1) * C * C), dtype, C * C),
      b: this.place(b.slice(i * C, (i + 1) * C), bdtype, C),
    })
    return [part(0), part(1), part(2)]
  }
}

/** The handle a dry run returns: never handed to a device. */
const DRY = Object.freeze({}) as Buf

/** [rows, cols] -> [cols, rows] */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length)
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]
  return out
}
