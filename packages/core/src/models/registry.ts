// model_type (config.json) -> the family file that knows it. A table, not an if-chain.

import type { Arch, LayerWeights, SharedWeights } from './arch.js'
import * as gpt2 from './gpt2.js'
import * as gptNeo from './gpt_neo.js'
import * as gptj from './gptj.js'
import type { WeightReader } from './weights.js'

export interface FamilyModule {
  parseConfig(json: Record<string, unknown>, file: string): Arch
  /** Embeddings, final norm, LM head. */
  loadShared(r: WeightReader, a: Arch): SharedWeights
  /** The weights of block l. */
  loadLayer(r: WeightReader, a: Arch, l: number): LayerWeights
}

export const FAMILIES: Record<string, FamilyModule> = {
  gpt2,
  gpt_neo: gptNeo,
  gptj,
}

/** Tensor-name prefixes a family's checkpoints use, tried in order ('' = saved from the bare model). */
export const PREFIXES = ['transformer.', '']
