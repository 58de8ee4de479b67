// What a family file produces from config.json (Arch: the sizes and per-layer attention kinds every
// part of the engine needs) and the weight types its loader places. The network itself is the
// family file's block forward (gpt2.ts, gpt_neo.ts, gptj.ts, gpt3_modelscope.ts), written with the
// shared pieces in layers.ts; decoder.ts runs what all families share.

import type { Activation, Buf } from '../device/types.js'
import { ConfigError, show } from '../errors.js'

export type Family = 'gpt2' | 'gpt_neo' | 'gptj' | 'gpt3'

export interface LayerKind {
  attention: 'global' | 'local'
  /** Keys a local layer sees, including the query itself (0 for global layers). */
  window: number
  /** Multiplier on q·k: 1/sqrt(headDim) (GPT-2, GPT-J, GPT-3), 1 (GPT-Neo); GPT-2 may divide by layer+1 too. */
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
  /** Dimensions of each head that rotary rotates (GPT-J rotary_dim), 0 without rotary. */
  rotaryDim: number
  layers: LayerKind[]
  /** The LM head is the token embedding (tie_word_embeddings). */
  tiedLmHead: boolean
  bosTokenId: number | null
  eosTokenId: number | number[] | null
  padTokenId: number | null
}

/**
 * What a family looks like, in words, for `inspect` and `step` (never read by the forward: the
 * block functions are the truth).
 */
export interface Traits {
  /** 'sequential': x += attn(ln_1 x); x += mlp(ln_2 x).  'parallel' (GPT-J): x += attn(ln_1 x) + mlp(ln_1 x). */
  residual: 'sequential' | 'parallel'
  /** 'learned': a position table added to the embedding; 'rotary': q and k rotated in every layer. */
  positions: 'learned' | 'rotary'
  /** The LM head has a bias (GPT-J). */
  lmHeadBias: boolean
  /** HF / ModelScope class names of the block and the whole model, for explanations. */
  block: string
}

/**
 * A weight on a device: one buffer, or, when a device buffer may not hold it (WebGPU: 128 MiB a
 * binding by default), several, each holding a range of rows. rowStart has parts.length + 1 entries:
 * part i holds rows rowStart[i] .. rowStart[i+1]-1. js and wasm use one part unless told otherwise.
 */
export interface Weight {
  /** [rows, cols] or [n] (the device layout: nn.Linear's [out, in]). */
  shape: readonly number[]
  parts: Buf[]
  rowStart: number[]
}

export interface Linear {
  /** [out, in] */
  w: Weight
  /** [out], split into the same row ranges as w; or null */
  b: Weight | null
}
export interface Norm {
  g: Buf
  b: Buf
}
/** The weights outside the blocks: embeddings at the start, final norm and LM head at the end. */
export interface SharedWeights {
  /** [vocab, C] token embedding */
  wte: Weight
  /** [nPositions, C] position embedding, null for rotary models */
  wpe: Weight | null
  lnF: Norm
  /** [nVocab, C] (+ [nVocab]); the same Weight as wte when tied */
  lmHead: Linear
}

// --- reading config.json fields with Hugging Face's defaults ------------------------------------

/**
 * Most layers a config.json may declare. The largest published GPT-style models have about a hundred
 * (GPT-3 175B: 96); per-layer tables (attention kinds, placement) are built from this count before
 * the checkpoint is walked, and loadModel also bounds it by the checkpoint's tensor count.
 */
export const MAX_LAYERS = 4096
/** Longest list of token ids config.json may give for bos/eos/pad (models use one or a few). */
export const MAX_TOKEN_IDS = 1024
/** Largest LayerNorm epsilon accepted (models use 1e-5 .. 1e-12; beyond 1 it is not a normalization). */
export const MAX_LAYER_NORM_EPSILON = 1

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

  /** The number of layers: an integer in [1, MAX_LAYERS]. */
  layerCount(key: string, def: number): number {
    const v = this.json[key]
    if (typeof v === 'number' && Number.isInteger(v) && v > MAX_LAYERS)
      this.fail(key, `an integer in [1, ${MAX_LAYERS}]`, v, 'no GPT-style model has that many layers; is config.json from this model?')
    return this.int(key, def, 1, MAX_LAYERS)
  }

  num(key: string, def: number, min = 0, max = Number.MAX_VALUE): number {
    const v = this.json[key]
    if (v === undefined || v === null) return def
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) this.fail(key, max === Number.MAX_VALUE ? `a number >= ${min}` : `a number in [${min}, ${max}]`, v)
    return v
  }

  /** LayerNorm epsilon: a number in [0, MAX_LAYER_NORM_EPSILON]. */
  epsilon(key: string, def: number): number {
    return this.num(key, def, 0, MAX_LAYER_NORM_EPSILON)
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
    const isId = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 2 ** 31 - 1
    if (isId(v)) return v as number
    if (Array.isArray(v) && v.length > 0 && v.length <= MAX_TOKEN_IDS && v.every(isId)) return v.slice() as number[]
    return this.fail(key, `a token id (0 .. 2^31-1), a list of at most ${MAX_TOKEN_IDS} token ids, or null`, v)
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
