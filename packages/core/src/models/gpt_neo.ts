// GPT-Neo, as Hugging Face transformers implements it (models/gpt_neo/modeling_gpt_neo.py, GPTNeoForCausalLM).
//   The GPT-2 block (x = wte + wpe; x += attn(ln_1 x); x += mlp(ln_2 x); tied lm_head), except:
//   - attention is NOT scaled: scores = q·k (no 1/sqrt(head_dim));
//   - layers alternate global and local attention (attention_types), a local layer seeing the last
//     window_size keys including itself;
//   - q/k/v projections have no bias; out_proj has one. Weights are nn.Linear ([out, in]).

import { ConfigError, show } from '../errors.js'
import { type Arch, ConfigReader, MAX_LAYERS, type LayerKind, type Linear, type Norm, type SharedWeights, type Traits } from './arch.js'
import type { Buf } from '../device/types.js'
import { add, type Bwd, type Fwd, type GradOf, layerNorm, layerNormBackward, mlp, mlpBackward, selfAttention, selfAttentionBackward } from './layers.js'
import type { WeightReader } from './weights.js'

export const traits: Traits = { residual: 'sequential', positions: 'learned', lmHeadBias: false, block: 'GPTNeoBlock' }

/** GPTNeoBlock's weights, named as in modeling_gpt_neo.py (attn.attention.* -> attn.*). */
export interface GptNeoLayer {
  ln1: Norm
  attn: { qProj: Linear; kProj: Linear; vProj: Linear; outProj: Linear }
  ln2: Norm
  mlp: { cFc: Linear; cProj: Linear }
}

/** GPTNeoBlock.forward: GPT-2's block with GPTNeoSelfAttention (unscaled scores, global or local layers). */
export function block(f: Fwd, L: GptNeoLayer, l: number): void {
  const { x, xn, attnOut, mlpOut } = f.s
  // residual = hidden_states; hidden_states = self.ln_1(hidden_states)
  layerNorm(f, xn, x, L.ln1, l, 'ln_1')
  // attn_output = self.attn(hidden_states)   (q·k NOT divided by sqrt(head_dim); a local layer sees window_size keys)
  selfAttention(f, attnOut, xn, L.attn.qProj, L.attn.kProj, L.attn.vProj, L.attn.outProj, l)
  // hidden_states = attn_output + residual
  add(f, x, attnOut, x)
  // residual = hidden_states; hidden_states = self.ln_2(hidden_states)
  layerNorm(f, xn, x, L.ln2, l, 'ln_2')
  // feed_forward_hidden_states = self.mlp(hidden_states)   (GPTNeoMLP: c_proj(act(c_fc(x))))
  mlp(f, mlpOut, xn, L.mlp.cFc, L.mlp.cProj, l)
  // hidden_states = residual + feed_forward_hidden_states
  add(f, x, x, mlpOut)
}

/** The backward of block(): its lines in reverse. dx, the gradient of the block's output, becomes that of its input. */
export function blockBackward(b: Bwd, L: GptNeoLayer, G: GradOf<GptNeoLayer>, l: number, dx: Buf): void {
  const n = b.T * b.a.nEmbd
  // hidden_states = residual + feed_forward_hidden_states   (dx flows to both)
  b.dev.zero(b.dxn, n)
  mlpBackward(b, b.dxn, dx, L.mlp.cFc, L.mlp.cProj, G.mlp.cFc, G.mlp.cProj, l)
  // hidden_states = self.ln_2(residual)
  layerNormBackward(b, dx, b.dxn, L.ln2, G.ln2, l, 'ln_2')
  // hidden_states = attn_output + residual
  b.dev.zero(b.dxn, n)
  selfAttentionBackward(b, b.dxn, dx, L.attn.qProj, L.attn.kProj, L.attn.vProj, L.attn.outProj, G.attn.qProj, G.attn.kProj, G.attn.vProj, G.attn.outProj, l)
  // hidden_states = self.ln_1(residual)
  layerNormBackward(b, dx, b.dxn, L.ln1, G.ln1, l, 'ln_1')
}

/** config.json -> Arch, with GPTNeoConfig's defaults. */
export function parseConfig(json: Record<string, unknown>, file: string): Arch {
  const c = new ConfigReader(json, file)
  const nEmbd = c.int('hidden_size', 2048)
  const nHead = c.int('num_heads', 16)
  const nLayer = c.layerCount('num_layers', 24)
  const window = c.int('window_size', 256)
  const kinds = expandAttentionTypes(json.attention_types ?? [[['global', 'local'], 12]], file, nLayer)
  if (kinds.length !== nLayer)
    throw new ConfigError({
      where: `${file}: field "attention_types"`,
      what: 'expands to a different number of layers than num_layers',
      expected: `${nLayer} layers`,
      found: `${kinds.length}`,
    })
  return {
    family: 'gpt_neo',
    nLayer,
    nEmbd,
    nHead,
    headDim: c.divisible('hidden_size', nEmbd, 'num_heads', nHead),
    nInner: c.optionalInt('intermediate_size') ?? 4 * nEmbd,
    nVocab: c.int('vocab_size', 50257),
    nPositions: c.int('max_position_embeddings', 2048),
    eps: c.epsilon('layer_norm_epsilon', 1e-5),
    act: c.activation('activation_function', 'gelu_new'),
    rotaryDim: 0,
    layers: kinds.map((k): LayerKind => ({ attention: k, window: k === 'local' ? window : 0, scale: 1 })),
    tiedLmHead: c.bool('tie_word_embeddings', true),
    bosTokenId: c.tokenIds('bos_token_id', 50256) as number | null,
    eosTokenId: c.tokenIds('eos_token_id', 50256),
    padTokenId: c.tokenIds('pad_token_id', null) as number | null,
  }
}

/**
 * HF's expand_attention_types_params: [[["global","local"], 12]] -> global, local, global, local, ...
 * The expansion is counted before it is built: more than `maxLayers` kinds is an error.
 */
export function expandAttentionTypes(types: unknown, file: string, maxLayers = MAX_LAYERS): ('global' | 'local')[] {
  const bad = (found: unknown): never => {
    throw new ConfigError({
      where: `${file}: field "attention_types"`,
      what: 'malformed attention_types',
      expected: 'a list of [[kinds...], repeat] with kinds "global" or "local"',
      found: show(found),
    })
  }
  if (!Array.isArray(types)) bad(types)
  let total = 0
  for (const item of types as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2 || !Array.isArray(item[0])) bad(item)
    const [kinds, repeat] = item as [unknown[], unknown]
    if (typeof repeat !== 'number' || !Number.isInteger(repeat) || repeat < 0 || repeat > 10000) bad(item)
    total += kinds.length * (repeat as number)
    if (total > maxLayers)
      throw new ConfigError({
        where: `${file}: field "attention_types"`,
        what: 'expands to more layers than num_layers',
        expected: `${maxLayers} layers`,
        found: `more than ${maxLayers}`,
      })
    for (const k of kinds) if (k !== 'global' && k !== 'local') bad(k)
  }
  const out: ('global' | 'local')[] = []
  for (const item of types as [('global' | 'local')[], number][])
    for (let i = 0; i < item[1]; i++) for (const k of item[0]) out.push(k)
  return out
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
export function loadLayer(r: WeightReader, a: Arch, l: number): GptNeoLayer {
  const { nEmbd: C, nInner: F } = a
  const p = `h.${l}.`
  return {
    ln1: r.norm(p + 'ln_1', C),
    attn: {
      qProj: r.linear(p + 'attn.attention.q_proj', C, C, false),
      kProj: r.linear(p + 'attn.attention.k_proj', C, C, false),
      vProj: r.linear(p + 'attn.attention.v_proj', C, C, false),
      outProj: r.linear(p + 'attn.attention.out_proj', C, C, true),
    },
    ln2: r.norm(p + 'ln_2', C),
    mlp: { cFc: r.linear(p + 'mlp.c_fc', C, F, true), cProj: r.linear(p + 'mlp.c_proj', F, C, true) },
  }
}
