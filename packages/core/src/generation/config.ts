// GenerationConfig as Hugging Face resolves it: library defaults, then the folder's
// generation_config.json (or, without one, the generation fields of config.json), then the caller's
// options. Keys are HF's snake_case; camelCase spellings (maxNewTokens) are accepted too.

import { UsageError, show } from '../errors.js'
import type { Model } from '../models/model.js'

export interface GenerationConfig {
  max_length: number
  max_new_tokens: number | null
  min_length: number
  min_new_tokens: number | null
  do_sample: boolean
  num_beams: number
  num_return_sequences: number
  temperature: number
  top_k: number
  top_p: number
  typical_p: number
  epsilon_cutoff: number
  eta_cutoff: number
  min_p: number | null
  repetition_penalty: number
  no_repeat_ngram_size: number
  bad_words_ids: number[][] | null
  length_penalty: number
  early_stopping: boolean | 'never'
  bos_token_id: number | null
  eos_token_id: number | number[] | null
  pad_token_id: number | null
  stop_strings: string[] | null
  /** refgpt: PRNG seed for sampling (null: a random one, reported in the result). */
  seed: number | null
}

/** transformers' GenerationConfig() defaults. */
export const HF_DEFAULTS: GenerationConfig = {
  max_length: 20,
  max_new_tokens: null,
  min_length: 0,
  min_new_tokens: null,
  do_sample: false,
  num_beams: 1,
  num_return_sequences: 1,
  temperature: 1,
  top_k: 50,
  top_p: 1,
  typical_p: 1,
  epsilon_cutoff: 0,
  eta_cutoff: 0,
  min_p: null,
  repetition_penalty: 1,
  no_repeat_ngram_size: 0,
  bad_words_ids: null,
  length_penalty: 1,
  early_stopping: false,
  bos_token_id: null,
  eos_token_id: null,
  pad_token_id: null,
  stop_strings: null,
  seed: null,
}

/**
 * What a caller may pass for each GenerationConfig key (generate(), pipeline()): the config's own types,
 * plus null where HF takes None for "not set" and a single string for stop_strings. Values are checked at
 * run time too (resolveGenerationConfig, the logits processors): JavaScript callers get a UsageError.
 */
export interface GenerationOptions {
  /** Prompt + new tokens at most (HF default 20); max_new_tokens wins when both are set. */
  max_length?: number
  /** New tokens at most (null: use max_length). */
  max_new_tokens?: number | null
  /** Eos ids are banned while prompt + new tokens are shorter than this. */
  min_length?: number
  /** Eos ids are banned while fewer new tokens than this were made. */
  min_new_tokens?: number | null
  /** Sample (with the warpers below) instead of greedy or beam search. */
  do_sample?: boolean
  /** Beam search with this many beams (1: no beam search). */
  num_beams?: number
  /** Sequences per prompt (samples, or the best beams). */
  num_return_sequences?: number
  /** Sampling: logits / temperature (> 0). */
  temperature?: number | null
  /** Sampling: keep the k most probable tokens (0 or null: off; 50 when sampling and not given). */
  top_k?: number | null
  /** Sampling: nucleus mass in [0, 1] (1: off). */
  top_p?: number | null
  /** Sampling: typical mass in (0, 1] (1: off). */
  typical_p?: number | null
  /** Sampling: drop tokens with probability below this, in [0, 1) (0: off). */
  epsilon_cutoff?: number | null
  /** Sampling: eta sampling cutoff in [0, 1) (0: off). */
  eta_cutoff?: number | null
  /** Sampling: drop tokens with probability below min_p times the largest, in [0, 1]. */
  min_p?: number | null
  /** Above 1 discourages tokens already in the context, below 1 encourages them. */
  repetition_penalty?: number | null
  /** No n-gram of this size occurs twice (0: off). */
  no_repeat_ngram_size?: number | null
  /** Token sequences never to produce, e.g. [[3], [7, 8]]. */
  bad_words_ids?: number[][] | null
  /** Beam search: score = sum log p / length ** length_penalty. */
  length_penalty?: number
  /** Beam search: stop once num_beams hypotheses are done (true), by the heuristic (false), or never early. */
  early_stopping?: boolean | 'never'
  bos_token_id?: number | null
  /** Stop ids (default: the model's). */
  eos_token_id?: number | number[] | null
  /** Fills finished rows of a batch and the left padding (default: the first eos id). */
  pad_token_id?: number | null
  /** Stop after the token that completes one of these texts (needs a tokenizer). */
  stop_strings?: string | string[] | null
  /** refgpt: PRNG seed for sampling (null: a random one, reported in the result). */
  seed?: number | null
}

type CamelCase<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S

/** The same options spelled in camelCase (maxNewTokens, eosTokenId, topP, ...), as generate() accepts them too. */
export type CamelGenerationOptions = { [K in keyof GenerationOptions as CamelCase<K>]: GenerationOptions[K] }

// GenerationOptions must name exactly the GenerationConfig keys
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : never) : never
const sameKeys: SameKeys<Required<GenerationOptions>, GenerationConfig> = true
void sameKeys

const KEYS = new Set(Object.keys(HF_DEFAULTS))
/** Fields GenerationConfig.from_model_config copies from config.json when there is no generation_config.json. */
const FROM_MODEL_CONFIG = ['bos_token_id', 'eos_token_id', 'pad_token_id', 'max_length', 'min_length', 'do_sample', 'num_beams',
  'temperature', 'top_k', 'top_p', 'repetition_penalty', 'length_penalty', 'no_repeat_ngram_size', 'bad_words_ids', 'num_return_sequences']

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase())
const camel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())

/** The option key closest to an unknown one, spelled as the caller spells keys (camelCase or snake_case), or undefined. */
export function closestOption(key: string): string | undefined {
  const asCamel = /[A-Z]/.test(key)
  let best: string | undefined, bestD = Infinity
  for (const k of KEYS) {
    const d = Math.min(editDistance(key, k), editDistance(key, camel(k)), editDistance(snake(key), k))
    if (d < bestD) (best = k), (bestD = d)
  }
  const limit = key.length <= 4 ? 1 : key.length <= 8 ? 2 : 3
  return best !== undefined && bestD <= limit ? (asCamel ? camel(best) : best) : undefined
}

/** Optimal string alignment distance (insertions, deletions, substitutions, swaps of neighbours), case-insensitive. */
function editDistance(a: string, b: string): number {
  a = a.toLowerCase()
  b = b.toLowerCase()
  if (Math.abs(a.length - b.length) > 3) return Infinity
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  return d[a.length][b.length]
}

/**
 * The config generate() runs with. `options` are the caller's GenerationConfig keys (snake_case or
 * camelCase); an unknown key is a UsageError naming it (with the closest known key when one is near):
 * a typo must not be silently ignored. Keys of the folder's generation_config.json / config.json that
 * refgpt does not use (use_cache, transformers_version, ...) are ignored there, as transformers reads them.
 */
export function resolveGenerationConfig(
  model: Pick<Model, 'config' | 'generationConfig'>,
  options: GenerationOptions | CamelGenerationOptions | Record<string, unknown> = {},
): GenerationConfig {
  const cfg: Record<string, unknown> = { ...HF_DEFAULTS }
  const base = model.generationConfig ?? Object.fromEntries(FROM_MODEL_CONFIG.filter((k) => model.config[k] !== undefined).map((k) => [k, model.config[k]]))
  for (const [k, v] of Object.entries(base)) if (KEYS.has(k) && v !== undefined) cfg[k] = v
  for (const [key, v] of Object.entries(options)) {
    if (v === undefined) continue
    const k = snake(key)
    if (!KEYS.has(k)) {
      const guess = closestOption(key)
      throw new UsageError({
        where: 'generate',
        what: `unknown generation option ${JSON.stringify(key)}`,
        hint: guess ? `did you mean ${JSON.stringify(guess)}?` : `known (snake_case or camelCase): ${[...KEYS].join(', ')}`,
      })
    }
    cfg[k] = v
  }
  const c = cfg as unknown as GenerationConfig
  const int = (k: keyof GenerationConfig, min: number, nullable = false) => {
    const v = c[k]
    if (nullable && v === null) return
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
      throw new UsageError({ where: 'generate', what: `bad ${k}`, expected: `an integer >= ${min}`, found: show(v) })
  }
  int('max_length', 1)
  int('max_new_tokens', 0, true)
  int('min_length', 0)
  int('min_new_tokens', 0, true)
  int('num_beams', 1)
  int('num_return_sequences', 1)
  if (c.num_return_sequences > 1 && !c.do_sample && c.num_return_sequences > c.num_beams)
    throw new UsageError({
      where: 'generate', what: 'num_return_sequences is larger than num_beams with greedy search',
      expected: `num_return_sequences <= num_beams (${c.num_beams})`, found: String(c.num_return_sequences),
      hint: 'set do_sample or raise num_beams',
    })
  if (c.num_beams > 1 && c.do_sample)
    throw new UsageError({ where: 'generate', what: 'beam sampling (num_beams > 1 with do_sample) is not supported', hint: 'use one of them' })
  if (typeof c.length_penalty !== 'number' || !Number.isFinite(c.length_penalty))
    throw new UsageError({ where: 'generate', what: 'bad length_penalty', expected: 'a finite number', found: show(c.length_penalty) })
  if (c.early_stopping !== true && c.early_stopping !== false && c.early_stopping !== 'never')
    throw new UsageError({ where: 'generate', what: 'bad early_stopping', expected: 'true, false or "never"', found: show(c.early_stopping) })
  if (typeof (c.stop_strings as unknown) === 'string') c.stop_strings = [c.stop_strings as unknown as string]
  if (c.stop_strings !== null && (!Array.isArray(c.stop_strings) || c.stop_strings.some((s) => typeof s !== 'string' || s === '')))
    throw new UsageError({ where: 'generate', what: 'bad stop_strings', expected: 'a list of non-empty strings', found: show(c.stop_strings) })
  if (c.seed !== null && !Number.isSafeInteger(c.seed)) throw new UsageError({ where: 'generate', what: 'bad seed', expected: 'an integer', found: show(c.seed) })
  return c
}

/** The eos ids as a list (empty: none). */
export function eosList(c: Pick<GenerationConfig, 'eos_token_id'>): number[] {
  const v = c.eos_token_id
  return v === null || v === undefined ? [] : Array.isArray(v) ? v : [v]
}

/** Total length (prompt + new) generation stops at: max_new_tokens wins over max_length, as in HF. */
export function maxLength(c: GenerationConfig, promptLength: number): number {
  return c.max_new_tokens !== null ? promptLength + c.max_new_tokens : c.max_length
}
