// Request validation for `refgpt serve`: OpenAI's legacy completions and chat completions bodies (with the
// llama.cpp / vLLM sampling extensions top_k, min_p, repetition_penalty) and llama.cpp's /tokenize and
// /detokenize. Pure functions: a parsed JSON body in, a typed request with every default filled in out, or an
// HttpError 400 naming the field at fault (`param`). As OpenAI, a field we do not know is refused
// ("Unrecognized request argument supplied: X"), and one we know but do not implement is refused as not
// supported rather than silently ignored. `null` means "absent" for every optional field, as in OpenAI's API.
// Fields are read only as own properties (Object.keys / Object.hasOwn), so "__proto__" or "constructor" in a
// body is just an unrecognized argument.

import { show } from '@refgpt/core'
import { HttpError } from './http.js'

export type PromptInput = { text: string } | { ids: number[] }

export interface SamplingFields {
  /** null: until the model stops (or its context is full). */
  maxTokens: number | null
  temperature: number
  topP: number
  /** 0: off. */
  topK: number
  n: number
  stop: string[]
  seed: number | null
  stream: boolean
  /** stream_options.include_usage: a last chunk with the usage. */
  includeUsage: boolean
  minP: number
  repetitionPenalty: number
}

export interface CompletionRequest extends SamplingFields {
  model: string | null
  prompts: PromptInput[]
  /** How many top alternatives to report per token (0..5), or null: no logprobs. */
  logprobs: number | null
  echo: boolean
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant'
  content: string
}

export interface ChatRequest extends SamplingFields {
  model: string | null
  messages: ChatMessage[]
  logprobs: boolean
  topLogprobs: number | null
}

export interface Limits {
  /** The largest n (choices per prompt). */
  maxN: number
  /** The most prompts one completions request may batch. */
  maxPrompts: number
  /** A ceiling for max_tokens, e.g. the model's context. */
  maxTokens: number
}

type Body = Record<string, unknown>

/** OpenAI's default max_tokens for legacy completions. */
const COMPLETION_MAX_TOKENS = 16
// OpenAI allows 4 stop strings; lm-eval sends a task's `until` list plus the end-of-text token (gsm8k-cot: 6), so more are taken
const MAX_STOP = 16
const MAX_COMPLETION_LOGPROBS = 5
const MAX_TOP_LOGPROBS = 20

/** A 400 naming `param`; with a value, `what (found <value>)`. */
function bad(param: string, what: string, ...found: unknown[]): HttpError {
  return new HttpError(400, found.length > 0 ? `${what} (found ${show(found[0])})` : what, { param })
}

/** A field name fit to print as is; anything else (long, odd characters) is quoted and shortened. */
function fieldName(k: string): string {
  return /^[A-Za-z0-9_.-]{1,64}$/.test(k) ? k : show(k, 64)
}

function object(v: unknown, what: string, param: string | null): Body {
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new HttpError(400, `${what} must be a JSON object (found ${show(v)})`, { param })
  return v as Body
}

/** Refuses any key not in `allowed`; `prefix` names the enclosing field ('messages[0].'). */
function onlyKnown(b: Body, allowed: ReadonlySet<string>, prefix = ''): void {
  for (const k of Object.keys(b))
    if (!allowed.has(k)) throw new HttpError(400, `Unrecognized request argument supplied: ${prefix}${fieldName(k)}`, { param: prefix + fieldName(k) })
}

/** An own property; null and absent both read as undefined. */
function get(b: Body, k: string): unknown {
  const v = Object.hasOwn(b, k) ? b[k] : undefined
  return v === null ? undefined : v
}

function isObject(v: unknown): v is Body {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function num(b: Body, k: string, def: number, ok: (x: number) => boolean, expected: string): number {
  const v = get(b, k)
  if (v === undefined) return def
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw bad(k, `${k} must be ${expected}`, v)
  return v
}

function int(b: Body, k: string, def: number, min: number, max: number, expected?: string): number
function int(b: Body, k: string, def: null, min: number, max: number, expected?: string): number | null
function int(b: Body, k: string, def: number | null, min: number, max: number, expected?: string): number | null {
  const v = get(b, k)
  if (v === undefined) return def
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    throw bad(k, `${k} must be ${expected ?? (max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`)}`, v)
  return v
}

function bool(b: Body, k: string, def: boolean): boolean {
  const v = get(b, k)
  if (v === undefined) return def
  if (typeof v !== 'boolean') throw bad(k, `${k} must be a boolean`, v)
  return v
}

function optString(b: Body, k: string): string | null {
  const v = get(b, k)
  if (v === undefined) return null
  if (typeof v !== 'string') throw bad(k, `${k} must be a string`, v)
  return v
}

function notSupported(param: string, expected: string, v: unknown, hint?: string): HttpError {
  return new HttpError(400, `${param} is not supported (expected ${expected}, found ${show(v)})${hint ? `; hint: ${hint}` : ''}`, { param })
}

/** presence_penalty / frequency_penalty: only their neutral value 0. */
function zeroPenalty(b: Body, k: string): void {
  const v = get(b, k)
  if (v === undefined) return
  if (typeof v !== 'number' || !Number.isFinite(v) || v < -2 || v > 2) throw bad(k, `${k} must be a number in [-2, 2]`, v)
  if (v !== 0) throw notSupported(k, '0 or null', v, 'use repetition_penalty (> 1 penalizes repeats)')
}

function noLogitBias(b: Body): void {
  const v = get(b, 'logit_bias')
  if (v === undefined) return
  if (!isObject(v)) throw bad('logit_bias', 'logit_bias must be an object mapping token ids to biases', v)
  if (Object.keys(v).length > 0) throw notSupported('logit_bias', 'null or {}', v)
}

const SAMPLING_KEYS = [
  'model', 'max_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'repetition_penalty', 'n', 'best_of', 'stop', 'seed', 'stream',
  'stream_options', 'user', 'presence_penalty', 'frequency_penalty', 'logit_bias',
]

/** Everything but max_tokens, which completions and chat default differently. */
function sampling(b: Body, limits: Limits): Omit<SamplingFields, 'maxTokens'> {
  const temperature = num(b, 'temperature', 1, (x) => x >= 0 && x <= 2, 'a number in [0, 2]')
  const topP = num(b, 'top_p', 1, (x) => x > 0 && x <= 1, 'a number in (0, 1]')
  // top_k: 0 is off (llama.cpp); vLLM's spelling of off, -1, is taken too
  const topK = Math.max(0, int(b, 'top_k', 0, -1, Number.MAX_SAFE_INTEGER, 'an integer >= 0 (0: off)'))
  const minP = num(b, 'min_p', 0, (x) => x >= 0 && x <= 1, 'a number in [0, 1]')
  const repetitionPenalty = num(b, 'repetition_penalty', 1, (x) => x > 0, 'a number > 0 (1: off)')
  const n = int(b, 'n', 1, 1, limits.maxN)
  const bestOf = get(b, 'best_of')
  if (bestOf !== undefined) {
    if (typeof bestOf !== 'number' || !Number.isSafeInteger(bestOf) || bestOf < 1) throw bad('best_of', 'best_of must be an integer >= 1', bestOf)
    if (bestOf !== n) throw notSupported('best_of', `null or n (${n})`, bestOf, 'ask for n choices and pick among them')
  }
  const stop = stopList(get(b, 'stop'))
  const seed = int(b, 'seed', null, 0, Number.MAX_SAFE_INTEGER)
  const stream = bool(b, 'stream', false)
  let includeUsage = false
  const so = get(b, 'stream_options')
  if (so !== undefined) {
    if (!isObject(so)) throw bad('stream_options', 'stream_options must be an object', so)
    if (!stream) throw new HttpError(400, 'stream_options is only allowed when stream is true', { param: 'stream_options' })
    onlyKnown(so, new Set(['include_usage']), 'stream_options.')
    const iu = get(so, 'include_usage')
    if (iu !== undefined && typeof iu !== 'boolean') throw bad('stream_options.include_usage', 'stream_options.include_usage must be a boolean', iu)
    includeUsage = iu === true
  }
  optString(b, 'user') // accepted, unused
  zeroPenalty(b, 'presence_penalty')
  zeroPenalty(b, 'frequency_penalty')
  noLogitBias(b)
  return { temperature, topP, topK, n, stop, seed, stream, includeUsage, minP, repetitionPenalty }
}

function stopList(v: unknown): string[] {
  if (v === undefined) return []
  const expected = `stop must be a non-empty string or an array of at most ${MAX_STOP} non-empty strings`
  if (typeof v === 'string') {
    if (v === '') throw bad('stop', expected, v)
    return [v]
  }
  if (!Array.isArray(v) || v.length > MAX_STOP || !v.every((s) => typeof s === 'string' && s !== '')) throw bad('stop', expected, v)
  return v.slice() as string[]
}

function maxTokensField(b: Body, k: string, limits: Limits): number | null {
  return int(b, k, null, 0, limits.maxTokens, `an integer in [0, ${limits.maxTokens}] or null`)
}

function model(b: Body): string | null {
  return optString(b, 'model')
}

const COMPLETION_KEYS = new Set([...SAMPLING_KEYS, 'prompt', 'logprobs', 'echo', 'suffix'])

/** POST /v1/completions. */
export function parseCompletion(body: unknown, limits: Limits): CompletionRequest {
  const b = object(body, 'request body', null)
  onlyKnown(b, COMPLETION_KEYS)
  const m = model(b)
  const prompts = promptList(get(b, 'prompt'), limits)
  // OpenAI's default, 16, kept under the ceiling (a tiny model's context) so that leaving it out is never an error
  const maxTokens = maxTokensField(b, 'max_tokens', limits) ?? Math.min(COMPLETION_MAX_TOKENS, limits.maxTokens)
  const s = sampling(b, limits)
  const logprobs = int(b, 'logprobs', null, 0, MAX_COMPLETION_LOGPROBS, `an integer in [0, ${MAX_COMPLETION_LOGPROBS}] or null`)
  const echo = bool(b, 'echo', false)
  const suffix = get(b, 'suffix')
  if (suffix !== undefined) throw notSupported('suffix', 'null', suffix)
  return { model: m, prompts, maxTokens, ...s, logprobs, echo }
}

const PROMPT_EXPECTED = 'prompt must be a string, an array of strings, an array of token ids or an array of arrays of token ids'

function isTokenId(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
}

function promptList(v: unknown, limits: Limits): PromptInput[] {
  if (v === undefined) throw new HttpError(400, `prompt is required (expected ${PROMPT_EXPECTED.slice('prompt must be '.length)})`, { param: 'prompt' })
  if (typeof v === 'string') return [{ text: v }]
  if (!Array.isArray(v)) throw bad('prompt', PROMPT_EXPECTED, v)
  if (v.length === 0) throw bad('prompt', 'prompt must not be an empty array', v)
  const first = v[0]
  if (typeof first === 'number') {
    // one prompt of token ids
    for (let i = 0; i < v.length; i++) if (!isTokenId(v[i])) throw bad('prompt', `prompt[${i}] must be a token id (an integer >= 0)`, v[i])
    return [{ ids: (v as number[]).slice() }]
  }
  if (v.length > limits.maxPrompts) throw bad('prompt', `prompt must hold at most ${limits.maxPrompts} prompts (found ${v.length})`)
  const out: PromptInput[] = []
  if (typeof first === 'string') {
    for (let i = 0; i < v.length; i++) {
      if (typeof v[i] !== 'string') throw bad('prompt', `prompt[${i}] must be a string like the first prompt`, v[i])
      out.push({ text: v[i] as string })
    }
    return out
  }
  if (Array.isArray(first)) {
    for (let i = 0; i < v.length; i++) {
      const p = v[i]
      if (!Array.isArray(p)) throw bad('prompt', `prompt[${i}] must be an array of token ids like the first prompt`, p)
      if (p.length === 0) throw bad('prompt', `prompt[${i}] must not be an empty array of token ids`, p)
      for (let j = 0; j < p.length; j++) if (!isTokenId(p[j])) throw bad('prompt', `prompt[${i}][${j}] must be a token id (an integer >= 0)`, p[j])
      out.push({ ids: (p as number[]).slice() })
    }
    return out
  }
  throw bad('prompt', PROMPT_EXPECTED, v)
}

const CHAT_KEYS = new Set([
  ...SAMPLING_KEYS, 'max_completion_tokens', 'messages', 'logprobs', 'top_logprobs', 'tools', 'tool_choice', 'functions', 'function_call',
  'response_format',
])

/** POST /v1/chat/completions. */
export function parseChat(body: unknown, limits: Limits): ChatRequest {
  const b = object(body, 'request body', null)
  onlyKnown(b, CHAT_KEYS)
  const m = model(b)
  const messages = messageList(get(b, 'messages'))
  const mt = maxTokensField(b, 'max_tokens', limits)
  const mct = maxTokensField(b, 'max_completion_tokens', limits)
  if (mt !== null && mct !== null && mt !== mct)
    throw new HttpError(400, `max_tokens and max_completion_tokens differ (expected one of them, or the same value, found ${mt} and ${mct})`, {
      param: 'max_completion_tokens',
    })
  const s = sampling(b, limits)
  const logprobs = bool(b, 'logprobs', false)
  const topLogprobs = int(b, 'top_logprobs', null, 0, MAX_TOP_LOGPROBS, `an integer in [0, ${MAX_TOP_LOGPROBS}] or null`)
  if (topLogprobs !== null && !logprobs)
    throw new HttpError(400, 'top_logprobs is only allowed when logprobs is true', { param: 'top_logprobs' })
  // tools and functions: refused, except the spellings of "none" (an empty list, tool_choice "none")
  for (const k of ['tools', 'functions']) {
    const v = get(b, k)
    if (v !== undefined && !(Array.isArray(v) && v.length === 0)) throw notSupported(k, 'null or []', v)
  }
  for (const k of ['tool_choice', 'function_call']) {
    const v = get(b, k)
    if (v !== undefined && v !== 'none') throw notSupported(k, 'null or "none"', v)
  }
  const rf = get(b, 'response_format')
  if (rf !== undefined && !(isObject(rf) && Object.keys(rf).length === 1 && get(rf, 'type') === 'text'))
    throw notSupported('response_format', '{"type":"text"} or null', rf)
  return { model: m, messages, maxTokens: mt ?? mct, ...s, logprobs, topLogprobs }
}

const MESSAGE_KEYS = new Set(['role', 'content', 'name', 'tool_calls', 'function_call', 'refusal'])
const PART_KEYS = new Set(['type', 'text'])

function messageList(v: unknown): ChatMessage[] {
  if (v === undefined) throw new HttpError(400, 'messages is required (expected a non-empty array of {role, content})', { param: 'messages' })
  if (!Array.isArray(v) || v.length === 0) throw bad('messages', 'messages must be a non-empty array of {role, content}', v)
  const out: ChatMessage[] = []
  for (let i = 0; i < v.length; i++) {
    const at = `messages[${i}]`
    const msg = object(v[i], at, at)
    onlyKnown(msg, MESSAGE_KEYS, `${at}.`)
    const role = get(msg, 'role')
    let r: ChatMessage['role']
    if (role === 'system' || role === 'user' || role === 'assistant') r = role
    // 'developer' is OpenAI's newer name for the system message (o1 and later): the same instructions, so a system message here
    else if (role === 'developer') r = 'system'
    else if (role === 'tool' || role === 'function') throw notSupported(`${at}.role`, '"system", "user" or "assistant"', role)
    else throw bad(`${at}.role`, `${at}.role must be "system", "user", "assistant" or "developer"`, role)
    const name = get(msg, 'name')
    if (name !== undefined && typeof name !== 'string') throw bad(`${at}.name`, `${at}.name must be a string`, name)
    // assistant messages echoed back by clients carry tool_calls / function_call / refusal as null (or [])
    for (const k of ['tool_calls', 'function_call', 'refusal']) {
      const x = get(msg, k)
      if (x !== undefined && !(k === 'tool_calls' && Array.isArray(x) && x.length === 0)) throw notSupported(`${at}.${k}`, 'null', x)
    }
    out.push({ role: r, content: content(get(msg, 'content'), `${at}.content`) })
  }
  return out
}

/** A string, or an array of text parts {type: 'text', text} joined with ''. */
function content(v: unknown, at: string): string {
  if (typeof v === 'string') return v
  if (!Array.isArray(v)) throw bad(at, `${at} must be a string or an array of {"type":"text","text":...} parts`, v)
  let s = ''
  for (let j = 0; j < v.length; j++) {
    const pat = `${at}[${j}]`
    const part = object(v[j], pat, pat)
    const type = get(part, 'type')
    if (type !== 'text') {
      if (typeof type === 'string') throw notSupported(`${pat}.type`, '"text" (this server reads text only)', type)
      throw bad(`${pat}.type`, `${pat}.type must be "text"`, type)
    }
    onlyKnown(part, PART_KEYS, `${pat}.`)
    const text = get(part, 'text')
    if (typeof text !== 'string') throw bad(`${pat}.text`, `${pat}.text must be a string`, text)
    s += text
  }
  return s
}

const TOKENIZE_KEYS = new Set(['content', 'add_special', 'with_pieces', 'model'])
const VLLM_TOKENIZE_KEYS = new Set(['prompt', 'add_special_tokens', 'model'])

/**
 * POST /tokenize: llama.cpp's {content, add_special = false, with_pieces = false}, or vLLM's {prompt,
 * add_special_tokens = false} (what lm-eval's remote tokenizer sends; `vllm: true` then, for vLLM's answer
 * shape). `model` is accepted and ignored.
 */
export function parseTokenize(body: unknown): { content: string; addSpecial: boolean; withPieces: boolean; vllm?: true } {
  const b = object(body, 'request body', null)
  if (Object.hasOwn(b, 'prompt') && !Object.hasOwn(b, 'content')) {
    onlyKnown(b, VLLM_TOKENIZE_KEYS)
    optString(b, 'model')
    const p = get(b, 'prompt')
    if (typeof p !== 'string') throw bad('prompt', 'prompt must be a string', p)
    return { content: p, addSpecial: bool(b, 'add_special_tokens', false), withPieces: false, vllm: true }
  }
  onlyKnown(b, TOKENIZE_KEYS)
  optString(b, 'model')
  const c = get(b, 'content')
  if (typeof c !== 'string') throw bad('content', 'content must be a string', c)
  return { content: c, addSpecial: bool(b, 'add_special', false), withPieces: bool(b, 'with_pieces', false) }
}

const DETOKENIZE_KEYS = new Set(['tokens', 'model'])

/** POST /detokenize (llama.cpp): {tokens: [ids]} (an empty list is fine: ""); `model` is accepted and ignored. */
export function parseDetokenize(body: unknown): { tokens: number[] } {
  const b = object(body, 'request body', null)
  onlyKnown(b, DETOKENIZE_KEYS)
  optString(b, 'model')
  const t = get(b, 'tokens')
  if (!Array.isArray(t)) throw bad('tokens', 'tokens must be an array of token ids', t)
  for (let i = 0; i < t.length; i++) if (!isTokenId(t[i])) throw bad('tokens', `tokens[${i}] must be a token id (an integer >= 0)`, t[i])
  return { tokens: (t as number[]).slice() }
}
