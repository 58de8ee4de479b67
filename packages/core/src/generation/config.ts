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

const KEYS = new Set(Object.keys(HF_DEFAULTS))
/** Fields GenerationConfig.from_model_config copies from config.json when there is no generation_config.json. */
const FROM_MODEL_CONFIG = ['bos_token_id', 'eos_token_id', 'pad_token_id', 'max_length', 'min_length', 'do_sample', 'num_beams',
  'temperature', 'top_k', 'top_p', 'repetition_penalty', 'length_penalty', 'no_repeat_ngram_size', 'bad_words_ids', 'num_return_sequences']

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase())

/**
 * The config generate() runs with. `options` are the caller's GenerationConfig keys (snake_case or
 * camelCase); unknown keys are an error (a typo must not be silently ignored).
 */
export function resolveGenerationConfig(model: Pick<Model, 'config' | 'generationConfig'>, options: Record<string, unknown> = {}): GenerationConfig {
  const cfg: Record<string, unknown> = { ...HF_DEFAULTS }
  const base = model.generationConfig ?? Object.fromEntries(FROM_MODEL_CONFIG.filter((k) => model.config[k] !== undefined).map((k) => [k, model.config[k]]))
  for (const [k, v] of Object.entries(base)) if (KEYS.has(k) && v !== undefined) cfg[k] = v
  for (const [key, v] of Object.entries(options)) {
    if (v === undefined) continue
    const k = snake(key)
    if (!KEYS.has(k))
      throw new UsageError({ where: 'generate', what: `unknown generation option ${JSON.stringify(key)}`, hint: `known: ${[...KEYS].join(', ')}` })
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
