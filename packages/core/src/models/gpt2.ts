// GPT-2, as Hugging Face transformers implements it (models/gpt2/modeling_gpt2.py, GPT2LMHeadModel).
//   x = wte[ids] + wpe[positions]
//   per block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))      (sequential residual)
//   attention: scores = q·k / sqrt(head_dim) [/ (layer + 1)], causal; q/k/v/c_proj with biases
//   logits = ln_f(x) · wte^T                                     (tied lm_head)
// Weights are Conv1D ([in, out], applied as x @ W + b): transposed once at load; c_attn is split into q, k, v.

import { type Arch, ConfigReader, type Linear, type Norm, type SharedWeights, type Traits } from './arch.js'
import type { Buf } from '../device/types.js'
import { add, type Bwd, type Fwd, type GradOf, layerNorm, layerNormBackward, mlp, mlpBackward, selfAttention, selfAttentionBackward } from './layers.js'
import type { WeightReader } from './weights.js'

export const traits: Traits = { residual: 'sequential', positions: 'learned', lmHeadBias: false, block: 'GPT2Block' }

/** GPT2Block's weights, named as in modeling_gpt2.py (c_attn is split into q, k, v at load). */
export interface Gpt2Layer {
  ln1: Norm
  attn: { q: Linear; k: Linear; v: Linear; cProj: Linear }
  ln2: Norm
  mlp: { cFc: Linear; cProj: Linear }
}

/** GPT2Block.forward (pre-LayerNorm, sequential residual). */
export function block(f: Fwd, L: Gpt2Layer, l: number): void {
  const { x, xn, attnOut, mlpOut } = f.s
  // residual = hidden_states; hidden_states = self.ln_1(hidden_states)
  layerNorm(f, xn, x, L.ln1, l, 'ln_1')
  // attn_output = self.attn(hidden_states)   (GPT2Attention: c_attn -> q, k, v; scores / sqrt(head_dim); c_proj)
  selfAttention(f, attnOut, xn, L.attn.q, L.attn.k, L.attn.v, L.attn.cProj, l)
  // hidden_states = attn_output + residual
  add(f, x, attnOut, x)
  // residual = hidden_states; hidden_states = self.ln_2(hidden_states)
  layerNorm(f, xn, x, L.ln2, l, 'ln_2')
  // feed_forward_hidden_states = self.mlp(hidden_states)   (GPT2MLP: c_proj(act(c_fc(x))))
  mlp(f, mlpOut, xn, L.mlp.cFc, L.mlp.cProj, l)
  // hidden_states = residual + feed_forward_hidden_states
  add(f, x, x, mlpOut)
}

/** GPT-2's Conv1D layers store [in, out]. */
const conv1d = { conv1d: true }

/** The backward of block(): its lines in reverse. dx, the gradient of the block's output, becomes that of its input. */
export function blockBackward(b: Bwd, L: Gpt2Layer, G: GradOf<Gpt2Layer>, l: number, dx: Buf): void {
  const n = b.T * b.a.nEmbd
  // hidden_states = residual + feed_forward_hidden_states   (dx flows to both)
  b.dev.zero(b.dxn, n)
  mlpBackward(b, b.dxn, dx, L.mlp.cFc, L.mlp.cProj, G.mlp.cFc, G.mlp.cProj, l)
  // hidden_states = self.ln_2(residual)
  layerNormBackward(b, dx, b.dxn, L.ln2, G.ln2, l, 'ln_2')
  // hidden_states = attn_output + residual
  b.dev.zero(b.dxn, n)
  selfAttentionBackward(b, b.dxn, dx, L.attn.q, L.attn.k, L.attn.v, L.attn.cProj, G.attn.q, G.attn.k, G.attn.v, G.attn.cProj, l)
  // hidden_states = self.ln_1(residual)
  layerNormBackward(b, dx, b.dxn, L.ln1, G.ln1, l, 'ln_1')
}

/** config.json -> Arch, with GPT2Config's defaults. */
export function parseConfig(json: Record<string, unknown>, file: string): Arch {
  const c = new ConfigReader(json, file)
  const nEmbd = c.int('n_embd', 768)
  const nHead = c.int('n_head', 12)
  const headDim = c.divisible('n_embd', nEmbd, 'n_head', nHead)
  const nLayer = c.layerCount('n_layer', 12)
  const scaleWeights = c.bool('scale_attn_weights', true)
  const byLayer = c.bool('scale_attn_by_inverse_layer_idx', false)
  return {
    family: 'gpt2',
    nLayer,
    nEmbd,
    nHead,
    headDim,
    nInner: c.optionalInt('n_inner') ?? 4 * nEmbd,
    nVocab: c.int('vocab_size', 50257),
    nPositions: c.int('n_positions', 1024),
    eps: c.epsilon('layer_norm_epsilon', 1e-5),
    act: c.activation('activation_function', 'gelu_new'),
    rotaryDim: 0,
    layers: Array.from({ length: nLayer }, (_, l) => ({
      attention: 'global' as const,
      window: 0,
      scale: (scaleWeights ? 1 / Math.sqrt(headDim) : 1) / (byLayer ? l + 1 : 1),
    })),
    tiedLmHead: c.bool('tie_word_embeddings', true),
    bosTokenId: c.tokenIds('bos_token_id', 50256) as number | null,
    eosTokenId: c.tokenIds('eos_token_id', 50256),
    padTokenId: c.tokenIds('pad_token_id', null) as number | null,
  }
}

/** Embeddings, final norm and LM head (HF names after the 'transformer.' prefix). */
export function loadShared(r: WeightReader, a: Arch): SharedWeights {
  const C = a.nEmbd
  const wte = r.tensor('wte.weight', [a.nVocab, C])
  return {
    wte,
    wpe: r.tensor('wpe.weight', [a.nPositions, C]),
    lnF: r.norm('ln_f', C),
    lmHead: a.tiedLmHead ? { w: wte, b: null } : r.lmHead(a.nVocab, C, false),
  }
}

/** Block l. */
export function loadLayer(r: WeightReader, a: Arch, l: number): Gpt2Layer {
  const { nEmbd: C, nInner: F } = a
  const p = `h.${l}.`
  const ln1 = r.norm(p + 'ln_1', C)
  const [q, k, v] = r.fusedQkv(p + 'attn.c_attn', C)
  return {
    ln1,
    attn: { q, k, v, cProj: r.linear(p + 'attn.c_proj', C, C, true, conv1d) },
    ln2: r.norm(p + 'ln_2', C),
    mlp: { cFc: r.linear(p + 'mlp.c_fc', C, F, true, conv1d), cProj: r.linear(p + 'mlp.c_proj', F, C, true, conv1d) },
  }
}
