// ModelScope's Chinese GPT-3 base/large (and fine-tunes such as the kuakua praise robot), as
// modelscope/models/nlp/gpt3/backbone.py (GPT3Model) implements it. docs/modelscope-gpt3.md §2-§4.
//   x = word_embeddings[ids] + position_embeddings[positions]
//   per block (pre-LN): x += dense(attn(input_layernorm x)); x += dense_4h_to_h(gelu(dense_h_to_4h(post_attention_layernorm x)))
//   attention: fused query_key_value [3H, H] in BLOCKED order (Q | K | V, like GPT-2's c_attn),
//              scores / sqrt(D), causal (future scores set to -10000, which softmax maps to 0 as -inf does)
//   GELU is exact (erf); every LayerNorm uses layernorm_epsilon (default 1e-12)
//   logits = final_layernorm(x) · word_embeddings^T          (tied, no bias)
// Weights are nn.Linear ([out, in]). The folder is detected through configuration.json
// ({"model": {"type": "gpt3"}}): config.json has no model_type. Loading is strict (every checkpoint
// key must be used), after removing a `state_dict` wrapper and the `model.` of `model.language_model.*`.

import { type Arch, ConfigReader, type LayerWeights, type Linear, type SharedWeights } from './arch.js'
import type { WeightReader } from './weights.js'

/** The model_type refgpt files this family under (configuration.json's model.type). */
export const MODEL_TYPE = 'gpt3'

/** Checkpoint key prefixes: GPT3Model.state_dict(), and the GPT3ForTextGeneration wrapper's `model.` (§4.2). */
export const prefixes = ['language_model.', 'model.language_model.']
/** The tensor whose presence picks the prefix. */
export const probeTensor = 'word_embeddings.weight'
/** load_state_dict(strict=True): checkpoint keys the model does not use are an error. */
export const strict = true

/** GPT3Config fields that the generation mode reads (not part of the network). */
export interface Gpt3Generation {
  eodId: number
  topK: number
  topP: number
}

/** config.json -> Arch, with GPT3Config's defaults (configuration.py). */
export function parseConfig(json: Record<string, unknown>, file: string): Arch {
  const c = new ConfigReader(json, file)
  const nEmbd = c.int('hidden_size', 768)
  const nHead = c.int('num_attention_heads', 12)
  const headDim = c.divisible('hidden_size', nEmbd, 'num_attention_heads', nHead)
  const nLayer = c.int('num_hidden_layers', 12)
  const gen = generationConfig(json, file)
  return {
    family: 'gpt3',
    nLayer,
    nEmbd,
    nHead,
    headDim,
    nInner: 4 * nEmbd, // hard-wired in backbone.py; intermediate_size / ffn_hidden_size are ignored
    nVocab: c.int('vocab_size', 25600),
    nPositions: c.int('max_position_embeddings', 2048),
    eps: c.num('layernorm_epsilon', 1e-12),
    act: 'gelu_erf', // F.gelu whatever hidden_act says
    residual: 'sequential',
    positions: 'learned',
    rotaryDim: 0,
    layers: Array.from({ length: nLayer }, () => ({ attention: 'global' as const, window: 0, scale: 1 / Math.fround(Math.sqrt(headDim)) })),
    qkvBias: true,
    outBias: true,
    tiedLmHead: true,
    lmHeadBias: false,
    bosTokenId: null,
    eosTokenId: gen.eodId,
    padTokenId: null,
  }
}

/** eod_id / top_k / top_p of config.json with GPT3Config's defaults (1 / 0 / 0.9). */
export function generationConfig(json: Record<string, unknown>, file: string): Gpt3Generation {
  const c = new ConfigReader(json, file)
  return { eodId: c.int('eod_id', 1, 0), topK: c.int('top_k', 0, 0), topP: c.num('top_p', 0.9) }
}

/** Embeddings, final norm and the tied LM head (names after the 'language_model.' prefix). */
export function loadShared(r: WeightReader, a: Arch): SharedWeights {
  const C = a.nEmbd
  const wte = r.tensor('word_embeddings.weight', [a.nVocab, C])
  return {
    wte,
    wpe: r.tensor('position_embeddings.weight', [a.nPositions, C]),
    lnF: r.norm('transformer.final_layernorm', C),
    lmHead: { w: wte, b: null },
  }
}

/** Block l. */
export function loadLayer(r: WeightReader, a: Arch, l: number): LayerWeights {
  const { nEmbd: C, nInner: F } = a
  const p = `transformer.layers.${l}.`
  const [q, k, v] = blockedQkv(r, p + 'attention.query_key_value', C)
  return {
    ln1: r.norm(p + 'input_layernorm', C),
    ln2: r.norm(p + 'post_attention_layernorm', C),
    q, k, v,
    o: r.linear(p + 'attention.dense', C, C, true),
    fcIn: r.linear(p + 'mlp.dense_h_to_4h', C, F, true),
    fcOut: r.linear(p + 'mlp.dense_4h_to_h', F, C, true),
  }
}

/** nn.Linear(H, 3H) [3H, H] whose output rows are Q | K | V (blocked): split into three [H, H] Linears. */
function blockedQkv(r: WeightReader, name: string, C: number): [Linear, Linear, Linear] {
  const w = r.read(`${r.prefix}${name}.weight`, [3 * C, C])
  const b = r.read(`${r.prefix}${name}.bias`, [3 * C])
  const live = !(r.dryRun || r.recorder)
  const wData = live ? r.ckpt.readF32(w.name) : undefined
  const bData = live ? r.ckpt.readF32(b.name) : undefined
  const part = (i: number): Linear => ({
    w: r.place({ name: w.name, data: wData?.slice(i * C * C, (i + 1) * C * C), shape: [C, C], dtype: w.dtype }),
    b: r.place({ name: b.name, data: bData?.slice(i * C, (i + 1) * C), shape: [C], dtype: b.dtype }),
  })
  return [part(0), part(1), part(2)]
}
