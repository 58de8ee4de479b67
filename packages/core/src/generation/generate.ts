// generate() with Hugging Face semantics: greedy search, sampling (processors, warpers and refgpt's
// seeded PRNG), beam search; several prompts as one left-padded batch; stopping on eos ids,
// max_length / max_new_tokens and stop strings; streaming through a callback or an async iterator.
//
// The context: a sequence may use model.info.maxContext positions (the KV cache). A prompt must leave
// room for at least one new token: the longest prompt of a batch has at most maxContext - 1 tokens,
// else generate() refuses it (UsageError) before anything runs. Generation stops at
// min(requested length, maxContext); a sequence stopped by the context before the requested length
// (max_new_tokens, else max_length) ends with finishReason 'context', not 'length'.
//
// generate() runs on a Session: its own (made for the call and disposed after) or the caller's
// (opts.session), in which it acquires a slot per row and releases them when done, so several
// generations can share one loaded model, interleaved, each getting exactly the tokens it gets alone.
//
// Rows (prompt x num_return_sequences) each own a KV-cache slot and run unpadded: a row's real
// tokens get positions 0, 1, 2, ... exactly as generate()'s position_ids = cumsum(mask) - 1 give
// them, and the padding is masked out anyway, so the logits equal HF's batched ones. The returned
// sequences have HF's layout: left padding, then prompt and new tokens, finished rows filled with
// pad_token_id up to the longest row.
//
// The token loop allocates nothing but the growth of each row's id list (and the Promise of each
// awaited forward): forward() resolves to the slot's reused logits array, the processor chain and the
// sampler keep their scratch, one Int32Array feeds tokens.

import { UsageError, show } from '../errors.js'
import type { Session } from '../models/decoder.js'
import type { Model } from '../models/model.js'
import type { Tokenizer } from '../tokenizers/types.js'
import { beamSearch } from './beam.js'
import { eosList, maxLength, resolveGenerationConfig, type CamelGenerationOptions, type GenerationConfig, type GenerationOptions } from './config.js'
import { argmax } from './logits.js'
import { buildLogitsProcessor, type LogitsChain } from './processors.js'
import { createSampler, randomSeed, type Sampler } from './sampler.js'
import type { FinishReason, GenerateResult, GeneratedSequence, Stepper } from './types.js'

export type { FinishReason, GenerateResult, GeneratedSequence, Stepper } from './types.js'

/**
 * generate()'s options: every GenerationConfig key, in snake_case (max_new_tokens) or camelCase
 * (maxNewTokens), and the JavaScript-side options below. Nothing else: a misspelt key is a type error,
 * and at run time (JavaScript callers, options built at run time) a UsageError naming it.
 */
export interface GenerateOptions extends GenerationOptions, CamelGenerationOptions {
  /**
   * Called with each new token as soon as it is chosen (row = index into the returned sequences), and
   * the model's logits it was chosen from, before any processor or warper (valid during the call only;
   * beam search gives none).
   */
  onToken?: (id: number, row: number, logits?: Float32Array) => void
  /** Needed for stop_strings (the text is checked after each token). */
  tokenizer?: Tokenizer
  /** Run in this session (acquiring and releasing slots) instead of one made for the call. */
  session?: Session
}

/** What Generation.check needs of a model: its configs, vocabulary size and context (a loaded Model, or inspectModel's answer). */
export interface ModelShape {
  config: Model['config']
  generationConfig: Model['generationConfig']
  arch: Pick<Model['arch'], 'nVocab'>
  info: Pick<Model['info'], 'maxContext'>
}

/** What a generation will do, from Generation.check: the resolved config and the lengths. */
export interface GenerationPlan {
  config: GenerationConfig
  /** The prompts as given (one list per prompt). */
  prompts: ArrayLike<number>[]
  /** The longest prompt: the left-padded length of the batch. */
  padded: number
  /** The total length asked for (max_new_tokens + padded, else max_length): HF's max_length. */
  requested: number
  /** The context: positions a sequence may use (model.info.maxContext). */
  context: number
  /** Where generation stops: min(requested, context). */
  limit: number
  eos: number[]
}

/** The eos ids generate() would use: explicit option, else generation_config.json, else config.json. */
export function defaultEos(model: Model, explicit?: number | number[] | null): number[] {
  return eosList(resolveGenerationConfig(model, explicit === undefined ? {} : { eos_token_id: explicit }))
}

type Prompts = ArrayLike<number> | ArrayLike<number>[]
const isBatch = (p: Prompts): p is ArrayLike<number>[] => p.length > 0 && typeof (p as ArrayLike<unknown>)[0] === 'object'

/** Splits caller options into GenerationConfig keys and JS-side options. */
function splitOptions(opts: GenerateOptions) {
  const { onToken, tokenizer, session, ...config } = opts ?? {}
  return { onToken, tokenizer, session, config }
}

/** The longest prompt a model can continue: maxContext - 1 tokens (one position is left for a new token). */
function checkPrompts(model: ModelShape, list: ArrayLike<number>[]): number {
  const V = model.arch.nVocab, context = model.info.maxContext
  let padded = 0, longest = 0
  for (let p = 0; p < list.length; p++) {
    const ids = list[p]
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new UsageError({
          where: 'generate', what: `token id out of range in prompt ${p} at index ${i}`, expected: `an integer in 0 .. ${V - 1}`, found: show(id),
        })
    }
    if (ids.length > padded) (padded = ids.length), (longest = p)
  }
  if (padded >= context)
    throw new UsageError({
      where: 'generate',
      what: `the prompt does not fit the context${list.length > 1 ? ` (prompt ${longest})` : ''}`,
      expected: `at most ${context - 1} tokens: the context has ${context} positions and one is needed for a new token`,
      found: `${padded} tokens`,
      hint: 'keep the last tokens of the prompt (ids.slice(-n)), or load the model with a larger maxContext (at most its n_positions)',
    })
  return padded
}

/**
 * One generation in progress (greedy or sampling): step() advances every unfinished row by one token.
 * generate() runs it to the end; generateStream() yields between steps. Make it with
 * Generation.start(), which runs the prefill; close() releases its slots (and its own session).
 * A scheduler sharing one session among several generations drives wants() and choose() instead of
 * step() (the Stepper interface), batching every generation's rows into one Session.step().
 */
export class Generation implements Stepper {
  readonly config: GenerationConfig
  readonly seed: number | null
  readonly rows: { ids: number[]; start: number; prompt: number; done: FinishReason | null; newText: string }[] = []
  private readonly chain: LogitsChain
  private readonly sampler: Sampler | null
  private readonly eos: number[]
  private readonly step1 = new Int32Array(1)
  private readonly scores: Float32Array
  private readonly limit: number
  /** The total length asked for; when the context stops a row before it, the row ends with 'context'. */
  private readonly requested: number
  readonly padded: number
  /** The prefill's logits of each row, until its first token is chosen. */
  private pending: (Float32Array | undefined)[] = []
  /** forward() options per row, made once (no object per token) */
  private readonly slot: { slot: number }[] = []
  private readonly session: Session
  private readonly ownSession: boolean
  prefillMs = 0
  decodeMs = 0

  private constructor(
    readonly model: Model,
    private readonly prompts: ArrayLike<number>[],
    opts: GenerateOptions,
  ) {
    const { onToken, tokenizer, session } = splitOptions(opts)
    this.onToken = onToken
    this.tokenizer = tokenizer ?? null
    const plan = plan_(model, prompts, opts)
    const c = (this.config = plan.config)
    this.eos = plan.eos
    this.padded = plan.padded
    this.requested = plan.requested
    this.limit = plan.limit // never past the KV cache
    const V = model.arch.nVocab
    this.chain = plan.chain
    this.seed = c.do_sample ? (c.seed ?? randomSeed()) : null
    this.sampler = this.seed !== null ? createSampler(this.seed) : null
    this.scores = new Float32Array(V)

    this.ownSession = !session
    this.session = session ?? model.createSession()
  }

  /**
   * Everything generate() checks before it runs anything, without running anything: the options
   * (resolved as generate() resolves them, processors and warpers validated), the prompts (non-empty,
   * token ids below the vocabulary size, the longest at most maxContext - 1 tokens), stop_strings with a
   * tokenizer. Throws the UsageError generate() would throw; returns the plan. `model` may be a loaded
   * Model or a description of one (inspectModel's config, arch and maxContext, plus generation_config.json),
   * so that a program can refuse bad options before it loads the weights.
   */
  static check(model: ModelShape, prompts: Prompts, opts: GenerateOptions = {}): GenerationPlan {
    const { chain: _, ...plan } = plan_(model, normalizePrompts(prompts), opts)
    return plan
  }

  /** Validates the options, takes a slot per row and runs the prefill. */
  static async start(model: Model, prompts: ArrayLike<number>[], opts: GenerateOptions): Promise<Generation> {
    const g = new Generation(model, prompts, opts)
    try {
      await g.prefill()
    } catch (e) {
      g.close()
      throw e
    }
    return g
  }

  private async prefill(): Promise<void> {
    const c = this.config, session = this.session
    const pad = c.pad_token_id ?? this.eos[0] ?? 0
    const nRet = c.num_return_sequences
    const t0 = performance.now()
    let first = this.ownSession // an own session starts with slot 0 acquired
    for (let pi = 0; pi < this.prompts.length; pi++) {
      const p = this.prompts[pi]
      const padding = this.padded - p.length
      for (let r = 0; r < nRet; r++) {
        const row = this.rows.length
        const ids = new Array<number>(padding).fill(pad)
        for (let i = 0; i < p.length; i++) ids.push(p[i])
        this.rows.push({ ids, start: padding, prompt: pi, done: null, newText: '' })
        const slot = first ? 0 : session.acquire()
        first = false
        this.slot.push({ slot })
        // prefill: the first row of each prompt computes it, the others copy its cache and logits
        if (r === 0) this.pending[row] = (await session.forward(p, 0, this.slot[row])).slice()
        else {
          session.copySlot(this.slot[row - r].slot, slot, p.length)
          this.pending[row] = this.pending[row - r]
        }
      }
    }
    this.prefillMs = performance.now() - t0
    // the requested length is already reached (max_length <= the prompt; max_new_tokens 0): nothing to add
    if (this.padded >= this.limit) for (const r of this.rows) r.done = this.limit < this.requested ? 'context' : 'length'
  }

  /** Releases the rows' slots (and disposes the session when the generation made it). Idempotent. */
  close(): void {
    if (this.ownSession) this.session.dispose()
    else for (const s of this.slot.splice(0)) this.session.release(s.slot)
  }

  private readonly onToken?: (id: number, row: number, logits?: Float32Array) => void
  private readonly tokenizer: Tokenizer | null

  get done(): boolean {
    return this.rows.every((r) => r.done !== null)
  }

  /** Chooses the next token of every unfinished row (prefill logits first, then one forward each). */
  async step(): Promise<void> {
    const t0 = performance.now()
    for (let b = 0; b < this.rows.length; b++) {
      const row = this.rows[b]
      if (row.done || this.pending[b]) continue
      this.step1[0] = row.ids[row.ids.length - 1]
      await this.session.forward(this.step1, row.ids.length - 1 - row.start, this.slot[b])
    }
    this.decodeMs += performance.now() - t0
    this.choose()
  }

  /** Stepper: the unfinished rows past their prefill need their last token run (at its position in the row's slot). */
  wants(need: (slot: number, id: number, pos: number) => void): void {
    for (let b = 0; b < this.rows.length; b++) {
      const row = this.rows[b]
      if (!row.done && !this.pending[b]) need(this.slot[b].slot, row.ids[row.ids.length - 1], row.ids.length - 1 - row.start)
    }
  }

  /** Stepper: each unfinished row's next token, from its prefill logits or its slot's latest (session.logitsOf). */
  choose(): void {
    const t0 = performance.now()
    const V = this.scores.length
    for (let b = 0; b < this.rows.length; b++) {
      const row = this.rows[b]
      if (row.done) continue
      let logits = this.pending[b]
      if (logits) this.pending[b] = undefined
      else logits = this.session.logitsOf(this.slot[b].slot)
      const scores = this.scores
      scores.set(logits) // logits are [nVocab]
      this.chain.apply(scores, row.ids)
      const next = this.sampler ? this.sampler.sample(scores, V) : argmax(scores, V)
      row.ids.push(next)
      this.onToken?.(next, b, logits)
      if (this.eos.includes(next)) row.done = 'eos'
      else if (this.config.stop_strings && this.hitStopString(row, next)) row.done = 'stop_string'
      else if (row.ids.length >= this.limit) row.done = this.limit < this.requested ? 'context' : 'length'
    }
    this.decodeMs += performance.now() - t0
  }

  private hitStopString(row: Generation['rows'][number], id: number): boolean {
    const before = row.newText.length
    row.newText += this.tokenizer!.decode([id])
    // a stop string that ends inside the text this token added (HF StopStringCriteria)
    return this.config.stop_strings!.some((s) => {
      const at = row.newText.lastIndexOf(s)
      return at >= 0 && at + s.length > before
    })
  }

  result(): GenerateResult {
    const c = this.config
    const pad = c.pad_token_id ?? this.eos[0] ?? 0
    const longest = this.rows.reduce((m, r) => Math.max(m, r.ids.length), 0)
    const sequences: GeneratedSequence[] = this.rows.map((r) => ({
      ids: r.ids.concat(new Array(longest - r.ids.length).fill(pad)),
      newTokens: r.ids.slice(this.padded),
      start: r.start,
      finishReason: r.done ?? (r.ids.length >= this.limit && this.limit < this.requested ? 'context' : 'length'),
      prompt: r.prompt,
    }))
    const newTokens = sequences.reduce((s, q) => s + q.newTokens.length, 0)
    return {
      sequences,
      config: c,
      seed: this.seed,
      timings: { prefillMs: this.prefillMs, decodeMs: this.decodeMs, promptTokens: this.rows.reduce((s, r) => s + r.ids.length - r.start, 0) - newTokens, newTokens },
      ids: sequences[0].ids,
      newTokens: sequences[0].newTokens,
      finishReason: sequences[0].finishReason,
    }
  }
}

function normalizePrompts(prompts: Prompts): ArrayLike<number>[] {
  if (typeof prompts !== 'object' || prompts === null || typeof (prompts as { length?: unknown }).length !== 'number')
    throw new UsageError({ where: 'generate', what: 'bad prompts', expected: 'a list of token ids, or a list of such lists', found: show(prompts) })
  const list = isBatch(prompts) ? prompts : [prompts as ArrayLike<number>]
  if (list.length === 0 || list.some((p) => typeof p !== 'object' || p === null || !(p.length > 0)))
    throw new UsageError({ where: 'generate', what: 'empty prompt', expected: 'at least one token id per prompt', found: show(list.map((p) => p?.length)), hint: 'start from the bos id' })
  return list
}

/** Resolves and validates everything (see Generation.check), including the chain greedy search and sampling use. */
function plan_(model: ModelShape, list: ArrayLike<number>[], opts: GenerateOptions): GenerationPlan & { chain: LogitsChain } {
  const { tokenizer, config } = splitOptions(opts)
  const c = resolveGenerationConfig(model, config)
  if (c.stop_strings && !tokenizer)
    throw new UsageError({ where: 'generate', what: 'stop_strings need a tokenizer', hint: 'pass { tokenizer } (the pipeline does)' })
  const padded = checkPrompts(model, list)
  const eos = eosList(c)
  // beam search runs the processors without the warpers (beam sampling is refused by resolveGenerationConfig)
  const chain = buildLogitsProcessor(c.num_beams > 1 ? { ...c, do_sample: false } : c, { promptLength: padded, eosTokenId: eos.length ? eos : null, vocabSize: model.arch.nVocab })
  const requested = maxLength(c, padded), context = model.info.maxContext
  return { config: c, prompts: list, padded, requested, context, limit: Math.min(requested, context), eos, chain }
}

/**
 * Generates from one prompt (token ids) or a batch of prompts (left-padded as HF does).
 * Options are GenerationConfig keys (max_new_tokens, do_sample, top_p, num_beams, ...) in snake_case
 * or camelCase, plus onToken and tokenizer.
 */
export async function generate(model: Model, prompts: Prompts, opts: GenerateOptions = {}): Promise<GenerateResult> {
  const list = normalizePrompts(prompts)
  const { session, onToken, config } = splitOptions(opts)
  if (resolveGenerationConfig(model, config).num_beams > 1) {
    const { config: c } = Generation.check(model, list, opts) // every check before the search starts
    return beamSearch(model, list, c, { onToken, session })
  }
  const g = await Generation.start(model, list, opts)
  try {
    while (!g.done) await g.step()
    return g.result()
  } finally {
    g.close()
  }
}

/** The same as generate(), as an async iterator of {id, row} that yields to the event loop between steps. */
export async function* generateStream(model: Model, prompts: Prompts, opts: GenerateOptions = {}): AsyncGenerator<{ id: number; row: number }, GenerateResult> {
  const queue: { id: number; row: number }[] = []
  const list = normalizePrompts(prompts)
  if (resolveGenerationConfig(model, splitOptions(opts).config).num_beams > 1)
    throw new UsageError({ where: 'generateStream', what: 'beam search cannot stream', hint: 'use generate()' })
  const g = await Generation.start(model, list, { ...opts, onToken: (id, row, logits) => { queue.push({ id, row }); opts?.onToken?.(id, row, logits) } })
  try {
    while (!g.done) {
      await g.step()
      while (queue.length) yield queue.shift()!
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
    return g.result()
  } finally {
    g.close()
  }
}
