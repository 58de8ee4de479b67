// model_type (config.json) -> the family file that knows it. A table, not an if-chain.

import type { Arch, SharedWeights, Traits } from './arch.js'
import * as gpt2 from './gpt2.js'
import * as gptNeo from './gpt_neo.js'
import * as gptj from './gptj.js'
import * as gpt3 from './gpt3_modelscope.js'
import type { Buf } from '../device/types.js'
import type { Bwd, Fwd, GradOf } from './layers.js'
import type { WeightReader } from './weights.js'

/** A family file: config parsing, weight names, and its block's forward. L is its layer-weights type. */
export interface FamilyModule<L = unknown> {
  parseConfig(json: Record<string, unknown>, file: string): Arch
  /** Embeddings, final norm, LM head. */
  loadShared(r: WeightReader, a: Arch): SharedWeights
  /** The weights of block l. */
  loadLayer(r: WeightReader, a: Arch, l: number): L
  /** Block l's forward on the rows in f.s.x (the residual stream, updated in place). */
  block(f: Fwd, weights: L, l: number): void
  /** Block l's backward (training): dx, the gradient of its output, becomes the gradient of its input. */
  blockBackward(b: Bwd, weights: L, grads: GradOf<L>, l: number, dx: Buf): void
  /** The family in words (inspect, step). */
  traits: Traits
  /** Tensor-name prefixes this family's checkpoints use, tried in order (default PREFIXES). */
  prefixes?: string[]
  /** The tensor (after the prefix) whose presence picks the prefix (default 'wte.weight'). */
  probeTensor?: string
  /** Checkpoint tensors the model does not use are an error (PyTorch's load_state_dict(strict=True)). */
  strict?: boolean
}

/** A family module with its layer type forgotten (the decoder only hands each block its own weights). */
const family = <L>(m: FamilyModule<L>) => m as unknown as FamilyModule

export const FAMILIES: Record<string, FamilyModule> = {
  gpt2: family(gpt2),
  gpt_neo: family(gptNeo),
  gptj: family(gptj),
  // ModelScope's Chinese GPT-3 (base/large/kuakua): config.json has no model_type, configuration.json
  // says {"model": {"type": "gpt3"}}; see model.ts.
  gpt3: family(gpt3),
}

/** Tensor-name prefixes a family's checkpoints use, tried in order ('' = saved from the bare model). */
export const PREFIXES = ['transformer.', '']
