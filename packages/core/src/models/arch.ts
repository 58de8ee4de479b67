// What a family file produces from config.json: one flat description of the network (Arch) that the
// shared decoder (decoder.ts) runs, and the weights in the shape the decoder expects (Weights).
// Every Hugging Face quirk is a field here, never a hidden branch: GPT-Neo's unscaled local
// attention, GPT-J's partial interleaved rotary and parallel residual, GPT-J's 50400-row lm_head.

import type { Activation, Buf } from '../device/types.js'
import { ConfigError, show } from '../errors.js'

export type Family = 'gpt2' | 'gpt_neo' | 'gptj' | 'gpt3'

export interface LayerKind {
  attention: 'global' | 'local'
  /** Keys a local layer sees, including the query itself (0 for global layers). */
  window: number
  /** Multiplier on q·k: 1/sqrt(headDim) (GPT-2, GPT-J), 1 (GPT-Neo); GPT-2 may divide by layer+1 too. */
  scale: number
}

export interface Arch {
  family: Family
  nLayer: number
  /** Hidden size C. */
  nEmbd: number
  nHead: number
  /** C / nHead. */
  headDim: number
  /** MLP inner size F (4 C when the config says null). */
  nInner: number
  /** Rows of the LM head = logits per token (GPT-J: 50400, more than the tokenizer's 50257). */
  nVocab: number
  /** Longest sequence (position-embedding rows or the config's n_positions for rotary models). */
  nPositions: number
  eps: number
  act: Activation
  /** sequential: x += attn(ln_1 x); x += mlp(ln_2 x).  parallel (GPT-J): x += attn(ln_1 x) + mlp(ln_1 x). */
  residual: 'sequential' | 'parallel'
  /** learned: wpe table added to the embedding; rotary: applied to q and k in every layer. */
  positions: 'learned' | 'rotary'
  /** Dimensions of each head that rotary rotates (GPT-J rotary_dim), 0 without rotary. */
  rotaryDim: number
  layers: LayerKind[]
  /** Biases on the q/k/v projections (GPT-2 yes, GPT-Neo and GPT-J no). */
  qkvBias: boolean
  /** Bias on the attention output projection (GPT-2, GPT-Neo yes; GPT-J no). */
  outBias: boolean
  /** lm_head.weight is wte (GPT-2, GPT-Neo); GPT-J has its own lm_head with a bias. */
  tiedLmHead: boolean
  lmHeadBias: boolean
  bosTokenId: number | null
  eosTokenId: number | number[] | null
  padTokenId: number | null
}

export interface Linear {
  /** [out, in] */
  w: Buf
  /** [out] or null */
  b: Buf | null
}
export interface Norm {
  g: Buf
  b: Buf
}
export interface LayerWeights {
  ln1: Norm
  /** null for the parallel (GPT-J) block, which has one LayerNorm. */
  ln2: Norm | null
  q: Linear
  k: Linear
  v: Linear
  o: Linear
  fcIn: Linear
  fcOut: Linear
}
/** The weights outside the blocks: embeddings at the start, final norm and LM head at the end. */
export interface SharedWeights {
  /** [vocab, C] token embedding */
  wte: Buf
  /** [nPositions, C] position embedding, null for rotary models */
  wpe: Buf | null
  lnF: Norm
  /** [nVocab, C] (+ [nVocab]); the same Buf as wte when tied */
  lmHead: Linear
}

// --- reading config.json fields with Hugging Face's defaults ------------------------------------

/** Typed access to a config.json object; every error names the file and the field. */
export class ConfigReader {
  constructor(
    readonly json: Record<string, unknown>,
    readonly file: string,
  ) {}

  private fail(key: string, expected: string, value: unknown, hint?: string): never {
    throw new ConfigError({ where: `${this.file}: field "${key}"`, what: 'invalid value', expected, found: show(value), hint })
  }

  /** First of `keys` present (HF aliases such as n_embd / hidden_size), else the default. */
  private pick(keys: string[]): [string, unknown] {
    for (const k of keys) if (this.json[k] !== undefined && this.json[k] !== null) return [k, this.json[k]]
    return [keys[0], undefined]
  }

  int(keys: string | string[], def: number | undefined, min = 1, max = 2 ** 31 - 1): number {
    const [k, v] = this.pick(typeof keys === 'string' ? [keys] : keys)
    if (v === undefined) {
      if (def === undefined) this.fail(k, `an integer >= ${min}`, v, 'the field is required')
      return def
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(k, `an integer in [${min}, ${max}]`, v)
    return v
  }

  /** An integer or null (HF's `n_inner: null` means "use the default"). */
  optionalInt(key: string, min = 1): number | null {
    const v = this.json[key]
    if (v === undefined || v === null) return null
    return this.int(key, undefined, min)
  }

  num(key: string, def: number, min = 0): number {
    const v = this.json[key]
    if (v === undefined || v === null) return def
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) this.fail(key, `a number >= ${min}`, v)
    return v
  }

  bool(key: string, def: boolean): boolean {
    const v = this.json[key]
    if (v === undefined || v === null) return def
    if (typeof v !== 'boolean') this.fail(key, 'true or false', v)
    return v
  }

  str(key: string, def: string): string {
    const v = this.json[key]
    if (v === undefined || v === null) return def
    if (typeof v !== 'string') this.fail(key, 'a string', v)
    return v
  }

  /** bos/eos/pad ids: an int, a list of ints, or null. */
  tokenIds(key: string, def: number | null): number | number[] | null {
    const v = this.json[key]
    if (v === undefined) return def
    if (v === null) return null
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v
    if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) return v as number[]
    return this.fail(key, 'a token id, a list of token ids or null', v)
  }

  /** HF ACT2FN names -> the device's activation kinds. */
  activation(key: string, def: string): Activation {
    const name = this.str(key, def)
    const act = ACTIVATIONS[name]
    if (!act) this.fail(key, `one of ${Object.keys(ACTIVATIONS).join(', ')}`, name)
    return act
  }

  /** Rejects configs whose sizes cannot form a transformer (before anything is allocated). */
  divisible(sizeKey: string, size: number, headsKey: string, heads: number): number {
    if (size % heads !== 0)
      throw new ConfigError({
        where: `${this.file}: fields "${sizeKey}" and "${headsKey}"`,
        what: `${sizeKey} must be divisible by ${headsKey}`,
        found: `${size} and ${heads}`,
      })
    return size / heads
  }
}

const ACTIVATIONS: Record<string, Activation> = {
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_fast: 'gelu_tanh', // the same function as gelu_new, written differently
  gelu: 'gelu_erf',
  relu: 'relu',
  silu: 'silu',
  swish: 'silu',
  quick_gelu: 'quick_gelu',
}
