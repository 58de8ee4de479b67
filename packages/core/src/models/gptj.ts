// GPT-J, as Hugging Face transformers implements it (models/gptj/modeling_gptj.py, GPTJForCausalLM).
//   x = wte[ids]                                   (no position embedding: rotary instead)
//   per block (parallel residual, ONE LayerNorm):  h = ln_1(x); x = x + attn(h) + mlp(h)
//   attention: rotary on the first rotary_dim dims of each head of q and k, in the INTERLEAVED
//     rotate_every_two layout (pairs 0-1, 2-3, ...); scores = q·k / sqrt(head_dim); no biases on q/k/v/out
//   logits = ln_f(x) · lm_head^T + lm_head.bias    (untied, vocab_size 50400 > the tokenizer's 50257)

import { ConfigError } from '../errors.js'
import { type Arch, ConfigReader, type LayerWeights, type SharedWeights } from './arch.js'
import type { WeightReader } from './weights.js'

/** config.json -> Arch, with GPTJConfig's defaults. */
export function parseConfig(json: Record<string, unknown>, file: string): Arch {
  const c = new ConfigReader(json, file)
  const nEmbd = c.int('n_embd', 4096)
  const nHead = c.int('n_head', 16)
  const headDim = c.divisible('n_embd', nEmbd, 'n_head', nHead)
  const nLayer = c.int('n_layer', 28)
  const rotaryDim = c.optionalInt('rotary_dim') ?? headDim // HF: None means the whole head
  if (rotaryDim > headDim || rotaryDim % 2 !== 0)
    throw new ConfigError({
      where: `${file}: field "rotary_dim"`,
      what: 'rotary_dim must be even and at most the head size',
      expected: `an even number <= ${headDim} (n_embd / n_head)`,
      found: String(rotaryDim),
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
    eps: c.num('layer_norm_epsilon', 1e-5),
    act: c.activation('activation_function', 'gelu_new'),
    residual: 'parallel',
    positions: 'rotary',
    rotaryDim,
    layers: Array.from({ length: nLayer }, () => ({ attention: 'global' as const, window: 0, scale: 1 / Math.sqrt(headDim) })),
    qkvBias: false,
    outBias: false,
    tiedLmHead: c.bool('tie_word_embeddings', false),
    lmHeadBias: true,
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
    lmHead: a.tiedLmHead ? { w: wte, b: null } : r.lmHead(a),
  }
}

/** Block l. */
export function loadLayer(r: WeightReader, a: Arch, l: number): LayerWeights {
  const { nEmbd: C, nInner: F } = a
  const p = `h.${l}.`
  return {
    ln1: r.norm(p + 'ln_1', C),
    ln2: null,
    q: r.linear(p + 'attn.q_proj', C, C, false),
    k: r.linear(p + 'attn.k_proj', C, C, false),
    v: r.linear(p + 'attn.v_proj', C, C, false),
    o: r.linear(p + 'attn.out_proj', C, C, false),
    fcIn: r.linear(p + 'mlp.fc_in', C, F, true),
    fcOut: r.linear(p + 'mlp.fc_out', F, C, true),
  }
}
