// GPT-J, as Hugging Face transformers implements it (models/gptj/modeling_gptj.py, GPTJForCausalLM).
//   x = wte[ids]                                   (no position embedding: rotary instead)
//   per block (parallel residual, ONE LayerNorm):  h = ln_1(x); x = x + attn(h) + mlp(h)
//   attention: rotary on the first rotary_dim dims of each head of q and k, in the INTERLEAVED
//     rotate_every_two layout (pairs 0-1, 2-3, ...); scores = q·k / sqrt(head_dim); no biases on q/k/v/out
//   logits = ln_f(x) · lm_head^T + lm_head.bias    (untied, vocab_size 50400 > the tokenizer's 50257)

import { ConfigError } from '../errors.js'
import { type Arch, ConfigReader, type Linear, type Norm, type SharedWeights, type Traits } from './arch.js'
import type { Buf } from '../device/types.js'
import { add, type Bwd, type Fwd, type GradOf, layerNorm, layerNormBackward, mlp, mlpBackward, selfAttention, selfAttentionBackward } from './layers.js'
import type { WeightReader } from './weights.js'

export const traits: Traits = { residual: 'parallel', positions: 'rotary', lmHeadBias: true, block: 'GPTJBlock' }

/** GPTJBlock's weights, named as in modeling_gptj.py (one LayerNorm). */
export interface GptjLayer {
  ln1: Norm
  attn: { qProj: Linear; kProj: Linear; vProj: Linear; outProj: Linear }
  mlp: { fcIn: Linear; fcOut: Linear }
}

/** GPTJBlock.forward: attention and MLP both read ln_1's output and are added to the residual together. */
export function block(f: Fwd, L: GptjLayer, l: number): void {
  const { x, xn, attnOut, mlpOut } = f.s
  // residual = hidden_states; hidden_states = self.ln_1(hidden_states)
  layerNorm(f, xn, x, L.ln1, l, 'ln_1')
  // attn_outputs = self.attn(hidden_states)   (GPTJAttention: rotary on the first rotary_dim dims of q and k)
  selfAttention(f, attnOut, xn, L.attn.qProj, L.attn.kProj, L.attn.vProj, L.attn.outProj, l, f.a.rotaryDim)
  // feed_forward_hidden_states = self.mlp(hidden_states)   (GPTJMLP: fc_out(act(fc_in(x))))
  mlp(f, mlpOut, xn, L.mlp.fcIn, L.mlp.fcOut, l)
  // hidden_states = attn_output + feed_forward_hidden_states + residual   (in this order)
  add(f, attnOut, attnOut, mlpOut)
  add(f, x, attnOut, x)
}

/** The backward of block(): dx, the gradient of the block's output, becomes that of its input. */
export function blockBackward(b: Bwd, L: GptjLayer, G: GradOf<GptjLayer>, l: number, dx: Buf): void {
  const n = b.T * b.a.nEmbd
  // hidden_states = attn_output + feed_forward_hidden_states + residual   (dx flows to all three)
  b.dev.zero(b.dxn, n)
  // feed_forward_hidden_states = self.mlp(hidden_states); attn_outputs = self.attn(hidden_states): both read ln_1's output
  mlpBackward(b, b.dxn, dx, L.mlp.fcIn, L.mlp.fcOut, G.mlp.fcIn, G.mlp.fcOut, l)
  selfAttentionBackward(b, b.dxn, dx, L.attn.qProj, L.attn.kProj, L.attn.vProj, L.attn.outProj, G.attn.qProj, G.attn.kProj, G.attn.vProj, G.attn.outProj, l, b.a.rotaryDim)
  // hidden_states = self.ln_1(residual)
  layerNormBackward(b, dx, b.dxn, L.ln1, G.ln1, l, 'ln_1')
}

/** config.json -> Arch, with GPTJConfig's defaults. */
export function parseConfig(json: Record<string, unknown>, file: string): Arch {
  const c = new ConfigReader(json, file)
  const nEmbd = c.int('n_embd', 4096)
  const nHead = c.int('n_head', 16)
  const headDim = c.divisible('n_embd', nEmbd, 'n_head', nHead)
  const nLayer = c.layerCount('n_layer', 28)
  // GPTJConfig: rotary_dim defaults to 64 when the field is missing; an explicit null means the whole head
  const rotaryDim = json.rotary_dim === undefined ? 64 : (c.optionalInt('rotary_dim') ?? headDim)
  if (rotaryDim > headDim || rotaryDim % 2 !== 0)
    throw new ConfigError({
      where: `${file}: field "rotary_dim"`,
      what: 'rotary_dim must be even and at most the head size',
      expected: `an even number <= ${headDim} (n_embd / n_head)`,
      found: String(rotaryDim),
      hint: json.rotary_dim === undefined ? 'config.json has no rotary_dim, and GPTJConfig\'s default is 64; set it (null rotates the whole head)' : undefined,
    })
  return {
    family: 'gptj',
    nLayer,
    nEmbd,
    nHead,
    headDim,
    nInner: c.optionalInt('n_inner') ?? 4 * nEmbd,
    nVocab: c.int('vocab_size', 50400),
    nPositions: c.int('n_positions', 2048),
    eps: c.epsilon('layer_norm_epsilon', 1e-5),
    act: c.activation('activation_function', 'gelu_new'),
    rotaryDim,
    layers: Array.from({ length: nLayer }, () => ({ attention: 'global' as const, window: 0, scale: 1 / Math.sqrt(headDim) })),
    tiedLmHead: c.bool('tie_word_embeddings', false),
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
    wpe: null,
    lnF: r.norm('ln_f', C),
    lmHead: a.tiedLmHead ? { w: wte, b: null } : r.lmHead(a.nVocab, C, true),
  }
}

/** Block l. */
export function loadLayer(r: WeightReader, a: Arch, l: number): GptjLayer {
  const { nEmbd: C, nInner: F } = a
  const p = `h.${l}.`
  return {
    ln1: r.norm(p + 'ln_1', C),
    attn: {
      qProj: r.linear(p + 'attn.q_proj', C, C, false),
      kProj: r.linear(p + 'attn.k_proj', C, C, false),
      vProj: r.linear(p + 'attn.v_proj', C, C, false),
      outProj: r.linear(p + 'attn.out_proj', C, C, false),
    },
    mlp: { fcIn: r.linear(p + 'mlp.fc_in', C, F, true), fcOut: r.linear(p + 'mlp.fc_out', F, C, true) },
  }
}
