// ModelScope's text-generation pipeline for the Chinese GPT-3 base/large/kuakua models, as a mode of
// its own (not transformers' generate()). docs/modelscope-gpt3.md §5.2, §6, §7:
//   encode: [CLS] + wordpieces[:S-2] + [SEP] + [PAD]... to S = configuration.json
//           preprocessor.sequence_length (default 128); prompt_length = [CLS] + wordpieces (no [SEP])
//   loop:   c = prompt_length .. maxlen-1 with maxlen = min(max_length, max_position_embeddings),
//           max_length default S + 100; the sampled id overwrites tokens[c] ([SEP]/[PAD]); stop after
//           eod_id (config.json, default 1; kept in the output). refgpt also caps maxlen at the session's
//           context (model.info.maxContext); a run stopped below max_length by the positions or the
//           context ends with finishReason 'context' (MS stops there silently), at max_length 'length'
//   sample: top_k == 1 -> argmax; else logits / T, then top-k (> 1) or top-p (> 0, "shift by one"), then
//           a draw from softmax (refgpt's seeded sampler stands in for torch.multinomial)
//   output: decode(all ids incl. the prompt, skip specials, clean-up), then no spaces between Chinese
//           characters/punctuation (remove_space_between_chinese_chars)
// MS recomputes the whole prefix each step; refgpt runs the same positions through the KV cache.

import { UsageError, show } from '../errors.js'
import { generationConfig } from '../models/gpt3_modelscope.js'
import type { Session } from '../models/decoder.js'
import type { Model } from '../models/model.js'
import { WordPieceTokenizer, isChineseChar } from '../tokenizers/wordpiece.js'
import type { Tokenizer } from '../tokenizers/types.js'
import { argmax, rankDescending, softmax } from './logits.js'
import { createSampler, randomSeed, type Sampler } from './sampler.js'
import type { Stepper } from './types.js'

export interface ModelscopeGenerateOptions {
  /** Default: config.json top_k (0). */
  topK?: number
  /** Default: config.json top_p (0.9). */
  topP?: number
  /** Default 1.0 (config.json temperature is not read on this path). */
  temperature?: number
  /** Total length cap incl. the padded prompt (default: padded length + 100). */
  maxLength?: number
  /** Padded length S (default: configuration.json preprocessor.sequence_length, else 128). */
  sequenceLength?: number
  /** Sampling seed (default: random). Unused for greedy (top_k 1). */
  seed?: number
  /** Called with each new id and the logits it was drawn from (before MS's filtering; valid during the call only). */
  onToken?: (id: number, logits: Float32Array) => void
  /** Run in this session (one slot acquired and released) instead of one made for the call. */
  session?: Session
}

export interface ModelscopeResult {
  /** The pipeline's {"text"}: prompt + generation, post-processed. */
  text: string
  /** decode(ids, skip_special_tokens=True) before the Chinese space removal. */
  decoded: string
  /** [CLS] + prompt + new ids (the eod id included when it stopped on it). */
  ids: number[]
  /** The padded input row. */
  paddedIds: number[]
  promptLength: number
  newTokens: number[]
  /** 'eod': stopped on eod_id; 'length': max_length reached; 'context': the positions (max_position_embeddings, or a smaller maxContext) ran out before max_length. */
  finishReason: 'eod' | 'length' | 'context'
  seed: number | null
  /** The prompt's forward and the token loop, in milliseconds. */
  timings: { prefillMs: number; decodeMs: number }
}

/** The padded row and prompt length TextGenerationTransformersPreprocessor gives (§5.2). */
export function modelscopeEncode(tok: WordPieceTokenizer, text: string, sequenceLength = 128): { ids: number[]; promptLength: number } {
  const need = (name: '[CLS]' | '[SEP]' | '[PAD]') => {
    const id = tok.special(name)
    if (id === undefined) throw new UsageError({ where: 'vocab.txt', what: `the vocabulary has no ${name} token`, hint: 'ModelScope generation needs [CLS], [SEP] and [PAD]' })
    return id
  }
  const S = sequenceLength
  if (!Number.isInteger(S) || S < 2) throw new UsageError({ where: 'modelscope generation', what: 'bad sequence_length', expected: 'an integer >= 2', found: show(S) })
  const body = tok.encode(text).slice(0, S - 2)
  const ids = [need('[CLS]'), ...body, need('[SEP]')]
  while (ids.length < S) ids.push(need('[PAD]'))
  return { ids, promptLength: body.length + 1 }
}

/**
 * MS `sample()` filtering: the logits a draw is made from (-Infinity where removed), or null for
 * top_k == 1 (argmax). Throws MS's assertion errors as UsageErrors.
 */
export function modelscopeFilter(logits: Float32Array, topK: number, topP: number, temperature: number): Float32Array | null {
  const bad = (what: string, found: unknown): never => {
    throw new UsageError({ where: 'modelscope generation', what, found: show(found), hint: 'greedy is top_k 1 with top_p 0; top_k > 1 also needs top_p 0' })
  }
  if (!Number.isInteger(topK) || topK < 0) bad('top_k must be an integer >= 0', topK)
  if (!(topP >= 0 && topP <= 1)) bad('top_p must be in [0, 1]', topP)
  if (!(temperature > 0) || !Number.isFinite(temperature)) bad('temperature must be > 0', temperature)
  if (topK === 1) {
    if (topP !== 0) bad('cannot set both greedy (top_k 1) and top-p sampling', topP)
    return null
  }
  const x = new Float32Array(logits)
  if (temperature !== 1) for (let i = 0; i < x.length; i++) x[i] = x[i] / temperature
  if (topK > 1) {
    if (topP !== 0) bad('cannot set both top-k and top-p sampling', topP)
    if (topK > x.length) bad(`top_k must be at most the vocabulary size ${x.length}`, topK)
    const order = rankDescending(x)
    const kth = x[order[topK - 1]] // the k-th largest value (torch.topk(...)[0][..., -1])
    for (let i = 0; i < x.length; i++) if (x[i] < kth) x[i] = -Infinity
  } else if (topP > 0) {
    const order = rankDescending(x)
    const p = new Float64Array(x.length)
    softmax(x, p)
    let cum = 0
    const remove: number[] = []
    for (let j = 0; j < order.length; j++) {
      if (j > 0 && cum > topP) remove.push(order[j]) // cum = cumulative probability up to j-1
      cum += p[order[j]]
    }
    for (const i of remove) x[i] = -Infinity
  }
  return x
}

/** ModelScope's remove_space_between_chinese_chars (utils/chinese_utils.py). */
export function removeSpaceBetweenChineseChars(s: string): string {
  const pieces = s.split(' ')
  const out: string[] = []
  let run = ''
  let inRun = false
  for (const p of pieces) {
    if (isChinesePiece(p)) {
      run += p
      inRun = true
    } else {
      if (inRun) out.push(run)
      run = ''
      inRun = false
      out.push(p)
    }
  }
  if (inRun) out.push(run)
  return out.join(' ').trim()
}

const CHINESE_PUNCT = new Set(
  Array.from(
    '＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､\u3000、〃〈〉《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏﹑﹔·！？｡。' +
      '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~',
  ),
)

function isChinesePiece(p: string): boolean {
  for (const ch of p) if (!isChineseChar(ch.codePointAt(0)!) && !CHINESE_PUNCT.has(ch)) return false
  return true
}

/** The pipeline's output text for generated ids (§5.3 + §6). */
export function modelscopePostprocess(tok: Tokenizer, ids: ArrayLike<number>): { decoded: string; text: string } {
  const decoded = tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: true })
  return { decoded, text: removeSpaceBetweenChineseChars(decoded) }
}

/** configuration.json preprocessor.sequence_length, else 128. */
export function modelscopeSequenceLength(model: Pick<Model, 'modelscopeConfig'>): number {
  const pre = model.modelscopeConfig?.preprocessor
  const S = typeof pre === 'object' && pre !== null ? (pre as Record<string, unknown>).sequence_length : undefined
  return typeof S === 'number' && Number.isInteger(S) && S >= 2 ? S : 128
}

/** pipeline(Tasks.text_generation, model=dir)(text, top_k=, top_p=, temperature=, max_length=). */
export async function modelscopeGenerate(model: Model, tok: WordPieceTokenizer, text: string, opts: ModelscopeGenerateOptions = {}): Promise<ModelscopeResult> {
  const S = opts.sequenceLength ?? modelscopeSequenceLength(model)
  const { ids: padded, promptLength } = modelscopeEncode(tok, text, S)
  const r = await modelscopeGenerateIds(model, padded, promptLength, opts)
  return { ...r, ...modelscopePostprocess(tok, r.ids), paddedIds: padded }
}

/** GPT3Model.generate on one padded row (§7.3): the ids [0 .. c] and why it stopped. */
export async function modelscopeGenerateIds(
  model: Model,
  padded: number[],
  promptLength: number,
  opts: ModelscopeGenerateOptions = {},
): Promise<Omit<ModelscopeResult, 'text' | 'decoded' | 'paddedIds'>> {
  const g = await ModelscopeGeneration.start(model, padded, promptLength, opts)
  try {
    while (!g.done) await g.step()
    return g.result()
  } finally {
    g.close()
  }
}

/**
 * One ModelScope generation in progress (one row): start() checks the options and runs the prompt,
 * step() adds a token; or, in a session shared with other generations, a scheduler drives wants() and
 * choose() (the Stepper interface), batching the rows of every generation into one Session.step().
 */
export class ModelscopeGeneration implements Stepper {
  readonly ids: number[]
  readonly newTokens: number[] = []
  readonly seed: number | null
  finishReason: ModelscopeResult['finishReason'] | null = null
  private readonly sampler: Sampler | null
  private readonly session: Session
  private readonly at: { slot: number }
  private readonly step1 = new Int32Array(1)
  private pending: Float32Array | null = null
  private prefillMs = 0
  private decodeMs = 0
  private closed = false

  private constructor(
    private readonly model: Model,
    readonly promptLength: number,
    private readonly topK: number,
    private readonly topP: number,
    private readonly temperature: number,
    private readonly maxlen: number,
    private readonly stopReason: 'context' | 'length',
    private readonly eodId: number,
    padded: number[],
    private readonly opts: ModelscopeGenerateOptions,
  ) {
    this.seed = topK === 1 ? null : (opts.seed ?? randomSeed())
    this.sampler = this.seed === null ? null : createSampler(this.seed)
    this.ids = padded.slice(0, promptLength)
    this.session = opts.session ?? model.createSession()
    this.at = { slot: opts.session ? this.session.acquire() : 0 }
  }

  /** Checks the options (MS's assertions), takes a slot and runs the prompt. */
  static async start(model: Model, padded: number[], promptLength: number, opts: ModelscopeGenerateOptions = {}): Promise<ModelscopeGeneration> {
    const gen = generationConfig(model.config, 'config.json')
    const topK = opts.topK ?? gen.topK
    const topP = opts.topP ?? gen.topP
    const temperature = opts.temperature ?? 1
    const maxLength = opts.maxLength ?? padded.length + 100
    if (!Number.isInteger(maxLength) || maxLength < 1) throw new UsageError({ where: 'modelscope generation', what: 'bad max_length', expected: 'an integer >= 1', found: show(maxLength) })
    const maxlen = Math.min(maxLength, model.arch.nPositions, model.info.maxContext)
    if (promptLength >= maxlen)
      throw new UsageError({
        where: 'modelscope generation',
        what: 'context length too large',
        expected: `a prompt shorter than ${maxlen} tokens (${maxlen === maxLength ? 'max_length' : maxlen === model.arch.nPositions ? 'max_position_embeddings' : 'the context'}), [CLS] included`,
        found: `${promptLength} tokens`,
        hint: maxlen === maxLength ? 'raise max_length or shorten the prompt' : 'shorten the prompt',
      })
    modelscopeFilter(new Float32Array(model.arch.nVocab), topK, topP, temperature) // validates the options up front
    const g = new ModelscopeGeneration(model, promptLength, topK, topP, temperature, maxlen, maxlen < maxLength ? 'context' : 'length', gen.eodId, padded, opts)
    try {
      const t0 = performance.now()
      g.pending = (await g.session.forward(g.ids, 0, g.at)).slice()
      g.prefillMs = performance.now() - t0
    } catch (e) {
      g.close()
      throw e
    }
    return g
  }

  get done(): boolean {
    return this.finishReason !== null
  }

  /** Adds one token (a forward of the last one first, after the prompt's). */
  async step(): Promise<void> {
    if (this.done) return
    if (!this.pending) {
      const t0 = performance.now()
      this.step1[0] = this.ids[this.ids.length - 1]
      await this.session.forward(this.step1, this.ids.length - 1, this.at)
      this.decodeMs += performance.now() - t0
    }
    this.choose()
  }

  /** Stepper: after the first token, the last one runs at its position. */
  wants(need: (slot: number, id: number, pos: number) => void): void {
    if (!this.done && !this.pending) need(this.at.slot, this.ids[this.ids.length - 1], this.ids.length - 1)
  }

  /** Stepper: MS sample() on the prompt's logits or the slot's latest; stops after eod_id or at maxlen. */
  choose(): void {
    if (this.done) return
    const t0 = performance.now()
    const logits = this.pending ?? this.session.logitsOf(this.at.slot)
    this.pending = null
    const filtered = modelscopeFilter(logits, this.topK, this.topP, this.temperature)
    const next = filtered === null ? argmax(logits) : Math.min(Math.max(this.sampler!.sample(filtered), 0), this.model.arch.nVocab - 1)
    this.ids.push(next)
    this.newTokens.push(next)
    this.opts.onToken?.(next, logits)
    if (next === this.eodId) this.finishReason = 'eod'
    else if (this.ids.length >= this.maxlen) this.finishReason = this.stopReason
    this.decodeMs += performance.now() - t0
  }

  result(): Omit<ModelscopeResult, 'text' | 'decoded' | 'paddedIds'> {
    return {
      ids: this.ids,
      promptLength: this.promptLength,
      newTokens: this.newTokens,
      finishReason: this.finishReason ?? this.stopReason,
      seed: this.seed,
      timings: { prefillMs: this.prefillMs, decodeMs: this.decodeMs },
    }
  }

  /** Releases the slot (or the session made for the call). Idempotent. */
  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.opts.session) this.session.release(this.at.slot)
    else this.session.dispose()
  }
}

/** The id ModelScope generation stops after: config.json's eod_id (default 1). */
export function modelscopeEodId(model: Pick<Model, 'config'>): number {
  return generationConfig(model.config, 'config.json').eodId
}

/** True for a model loaded from a ModelScope folder (configuration.json), which this mode serves. */
export function isModelscopeModel(model: Model): boolean {
  return model.family === 'gpt3' && model.modelscopeConfig != null
}
