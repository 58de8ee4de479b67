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

import { type Arch, ConfigReader, type Linear, type Norm, type SharedWeights, type Traits } from './arch.js'
import type { Buf } from '../device/types.js'
import { add, type Bwd, type Fwd, type GradOf, layerNorm, layerNormBackward, mlp, mlpBackward, selfAttention, selfAttentionBackward } from './layers.js'
import type { WeightReader } from './weights.js'

export const traits: Traits = { residual: 'sequential', positions: 'learned', lmHeadBias: false, block: 'GPT3TransformerLayer' }

/** GPT3TransformerLayer's weights, named as in backbone.py (query_key_value is split into q, k, v at load). */
export interface Gpt3Layer {
  inputLayernorm: Norm
  attention: { query: Linear; key: Linear; value: Linear; dense: Linear }
  postAttentionLayernorm: Norm
  mlp: { denseHTo4h: Linear; dense4hToH: Linear }
}

/** GPT3TransformerLayer.forward (pre-LayerNorm, sequential residual; GELU erf; eps = layernorm_epsilon). */
export function block(f: Fwd, L: Gpt3Layer, l: number): void {
  const { x, xn, attnOut, mlpOut } = f.s
  // layernorm_output = self.input_layernorm(hidden_states)
  layerNorm(f, xn, x, L.inputLayernorm, l, 'ln_1')
  // attention_output = self.attention(layernorm_output)   (GPT3SelfAttention: blocked query_key_value, / sqrt(d), dense)
  selfAttention(f, attnOut, xn, L.attention.query, L.attention.key, L.attention.value, L.attention.dense, l)
  // layernorm_input = hidden_states + attention_output
  add(f, x, x, attnOut)
  // layernorm_output = self.post_attention_layernorm(layernorm_input)
  layerNorm(f, xn, x, L.postAttentionLayernorm, l, 'ln_2')
  // mlp_output = self.mlp(layernorm_output)   (GPT3MLP: dense_4h_to_h(gelu(dense_h_to_4h(x))))
  mlp(f, mlpOut, xn, L.mlp.denseHTo4h, L.mlp.dense4hToH, l)
  // output = layernorm_input + mlp_output
  add(f, x, x, mlpOut)
}

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

/** The backward of block(): its lines in reverse. dx, the gradient of the layer's output, becomes that of its input. */
export function blockBackward(b: Bwd, L: Gpt3Layer, G: GradOf<Gpt3Layer>, l: number, dx: Buf): void {
  const n = b.T * b.a.nEmbd
  // output = layernorm_input + mlp_output   (dx flows to both)
  b.dev.zero(b.dxn, n)
  mlpBackward(b, b.dxn, dx, L.mlp.denseHTo4h, L.mlp.dense4hToH, G.mlp.denseHTo4h, G.mlp.dense4hToH, l)
  // layernorm_output = self.post_attention_layernorm(layernorm_input)
  layerNormBackward(b, dx, b.dxn, L.postAttentionLayernorm, G.postAttentionLayernorm, l, 'ln_2')
  // layernorm_input = hidden_states + attention_output
  b.dev.zero(b.dxn, n)
  selfAttentionBackward(b, b.dxn, dx, L.attention.query, L.attention.key, L.attention.value, L.attention.dense,
    G.attention.query, G.attention.key, G.attention.value, G.attention.dense, l)
  // layernorm_output = self.input_layernorm(hidden_states)
  layerNormBackward(b, dx, b.dxn, L.inputLayernorm, G.inputLayernorm, l, 'ln_1')
}

/** config.json -> Arch, with GPT3Config's defaults (configuration.py). */
export function parseConfig(json: Record<string, unknown>, file: string): Arch {
  const c = new ConfigReader(json, file)
  const nEmbd = c.int('hidden_size', 768)
  const nHead = c.int('num_attention_heads', 12)
  const headDim = c.divisible('hidden_size', nEmbd, 'num_attention_heads', nHead)
  const nLayer = c.layerCount('num_hidden_layers', 12)
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
    eps: c.epsilon('layernorm_epsilon', 1e-12),
    act: 'gelu_erf', // F.gelu whatever hidden_act says
    rotaryDim: 0,
    layers: Array.from({ length: nLayer }, () => ({ attention: 'global' as const, window: 0, scale: 1 / Math.fround(Math.sqrt(headDim)) })),
    tiedLmHead: true,
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
export function loadLayer(r: WeightReader, a: Arch, l: number): Gpt3Layer {
  const { nEmbd: C, nInner: F } = a
  const p = `transformer.layers.${l}.`
  const inputLayernorm = r.norm(p + 'input_layernorm', C)
  const [query, key, value] = blockedQkv(r, p + 'attention.query_key_value', C)
  return {
    inputLayernorm,
    attention: { query, key, value, dense: r.linear(p + 'attention.dense', C, C, true) },
    postAttentionLayernorm: r.norm(p + 'post_attention_layernorm', C),
    mlp: { denseHTo4h: r.linear(p + 'mlp.dense_h_to_4h', C, F, true), dense4hToH: r.linear(p + 'mlp.dense_4h_to_h', F, C, true) },
  }
}

/** nn.Linear(H, 3H) [3H, H] whose output rows are Q | K | V (blocked): split into three [H, H] Linears. */
function blockedQkv(r: WeightReader, name: string, C: number): [Linear, Linear, Linear] {
  const w = r.read(`${r.prefix}${name}.weight`, [3 * C, C])
  const b = r.read(`${r.prefix}${name}.bias`, [3 * C])
  const live = !(r.dryRun || r.recorder)
  const wData = live ? r.ckpt.readF32(w.name) : undefined
  const bData = live ? r.ckpt.readF32(b.name) : undefined
  const part = (i: number): Linear => {
    const wi = r.place({ name: w.name, data: wData?.slice(i * C * C, (i + 1) * C * C), shape: [C, C], dtype: w.dtype, row0: i * C, stored: [3 * C, C] })
    return { w: wi, b: r.placeLike({ name: b.name, data: bData?.slice(i * C, (i + 1) * C), shape: [C], dtype: b.dtype, row0: i * C, stored: [3 * C] }, wi) }
  }
  return [part(0), part(1), part(2)]
}
