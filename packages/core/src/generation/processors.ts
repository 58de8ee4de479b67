// Logits processors and warpers with Hugging Face transformers 4.40 semantics
// (generation/logits_process.py, GenerationMixin._get_logits_processor / _get_logits_warper).
//
// Each processor is a small function that edits the scores of one step IN PLACE
// (transformers.js style): `(scores: Float32Array, inputIds: ArrayLike<number>) => void`, where
// inputIds is the whole context (prompt + tokens generated so far) and removed tokens become -Infinity.
// buildLogitsProcessor() composes them once per generate() call, in HF's order:
//
//   processors: RepetitionPenalty -> NoRepeatNGram -> NoBadWords -> MinLength -> MinNewTokensLength
//   warpers (only when do_sample): Temperature -> TopK -> TopP -> MinP -> Typical -> Epsilon -> Eta
//
// HF's generate() defaults apply: top_k is 50 when sampling unless set (0 or null disables it);
// min_new_tokens also sets min_length = prompt_length + min_new_tokens (so both MinLength and
// MinNewTokensLength run); a processor whose value is neutral is not built (temperature 1,
// top_p 1, typical_p 1, epsilon_cutoff 0, eta_cutoff 0, repetition_penalty 1, no_repeat_ngram_size 0,
// min_length 0); min_p is built whenever it is set (as HF does, even for 0). min_tokens_to_keep is 1
// (HF's value when num_beams = 1).
//
// Scores are float32 as in HF: temperature / repetition penalty compute in float32 exactly like
// torch (`a / float32(t)`, a Float32Array store rounds a double quotient of two floats correctly).
// The masking decisions (softmax, cumulative sums, entropy) are computed in float64; the golden
// README documents that a float64 evaluation reproduces every HF case.
//
// The chain allocates nothing per call: the builder preallocates its scratch (probabilities, sort
// keys, an index array sorted in place by a hand-written quicksort, a top-k heap, a seen-flag array)
// sized to the vocabulary. Sorting uses the total order (key ascending, then token id ascending), so
// the result never depends on the sort algorithm.

import { UsageError, show } from '../errors.js'
import { expShifted, maxF32 } from './logits.js'

/** Edits one step's scores in place; inputIds is the whole context (prompt + generated tokens). */
export type LogitsProcessorFn = (scores: Float32Array, inputIds: ArrayLike<number>) => void

/** HF class names, in the order generate() applies them. */
export type ProcessorName =
  | 'RepetitionPenaltyLogitsProcessor'
  | 'NoRepeatNGramLogitsProcessor'
  | 'NoBadWordsLogitsProcessor'
  | 'MinLengthLogitsProcessor'
  | 'MinNewTokensLengthLogitsProcessor'
  | 'TemperatureLogitsWarper'
  | 'TopKLogitsWarper'
  | 'TopPLogitsWarper'
  | 'MinPLogitsWarper'
  | 'TypicalLogitsWarper'
  | 'EpsilonLogitsWarper'
  | 'EtaLogitsWarper'

/** GenerationConfig's snake_case keys that shape the chain (other keys are ignored). */
export interface SamplingConfig {
  do_sample?: boolean | null
  temperature?: number | null
  top_k?: number | null
  top_p?: number | null
  min_p?: number | null
  typical_p?: number | null
  epsilon_cutoff?: number | null
  eta_cutoff?: number | null
  repetition_penalty?: number | null
  no_repeat_ngram_size?: number | null
  bad_words_ids?: number[][] | null
  min_length?: number | null
  min_new_tokens?: number | null
  eos_token_id?: number | number[] | null
  /** Prompt length (for min_new_tokens); processLogits defaults it to inputIds.length. */
  prompt_length?: number | null
}

export interface ChainContext {
  /** Prompt length in tokens (min_new_tokens counts from here). */
  promptLength: number
  /** Eos id(s); undefined: config.eos_token_id. MinLength / MinNewTokensLength need one. */
  eosTokenId?: number | number[] | null
  /** Scores per step: the chain reads and writes scores[0 .. vocabSize). */
  vocabSize: number
}

export interface LogitsChain {
  /** HF class names of the steps, in application order (empty: the chain does nothing). */
  readonly names: readonly ProcessorName[]
  readonly steps: readonly { readonly name: ProcessorName; readonly fn: LogitsProcessorFn }[]
  /** do_sample: whether the warpers were included (the caller then samples, else takes the argmax). */
  readonly doSample: boolean
  /** Runs every step in place on scores[0 .. vocabSize). */
  readonly apply: LogitsProcessorFn
}

// ---------------------------------------------------------------------------------------------
// Option resolution and validation (HF raises ValueError; refgpt throws UsageError)

interface Plan {
  doSample: boolean
  repetitionPenalty: number | null
  noRepeatNgramSize: number | null
  badWordsIds: number[][] | null
  minLength: number | null
  minNewTokens: number | null
  eos: number[] | null
  temperature: number | null
  topK: number | null
  topP: number | null
  minP: number | null
  typicalP: number | null
  epsilon: number | null
  eta: number | null
  names: ProcessorName[]
}

const WHERE = 'generation config'

function bad(key: string, expected: string, found: unknown, hint?: string): never {
  throw new UsageError({ where: WHERE, what: `invalid ${key}`, expected, found: show(found), hint })
}

/** A present, non-null option value, or undefined. */
function opt(cfg: Record<string, unknown>, key: string): unknown {
  const v = cfg[key]
  return v === null ? undefined : v
}

function numberOpt(cfg: Record<string, unknown>, key: string, expected: string, hint?: string): number | undefined {
  const v = opt(cfg, key)
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v)) bad(key, expected, v, hint)
  return v
}

function intOpt(cfg: Record<string, unknown>, key: string, min: number, hint?: string): number | undefined {
  const v = opt(cfg, key)
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) bad(key, `an integer >= ${min}`, v, hint)
  return v
}

function tokenId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0
}

function eosList(v: unknown): number[] | null {
  if (v === undefined || v === null) return null
  if (tokenId(v)) return [v]
  if (Array.isArray(v) && v.every(tokenId)) return v.slice()
  return bad('eos_token_id', 'a token id (integer >= 0), a list of them, or null', v)
}

function resolve(cfg: Record<string, unknown>, promptLength: number | undefined, eosOverride: number | number[] | null | undefined): Plan {
  const ds = opt(cfg, 'do_sample')
  if (ds !== undefined && typeof ds !== 'boolean') bad('do_sample', 'true or false', ds)
  const doSample = ds === true
  const eos = eosList(eosOverride !== undefined ? eosOverride : cfg.eos_token_id)
  const names: ProcessorName[] = []

  // --- processors (always) ---
  const rp = numberOpt(cfg, 'repetition_penalty', 'a number > 0 (1.0: no penalty)', 'above 1 discourages repeats, between 0 and 1 encourages them')
  let repetitionPenalty: number | null = null
  if (rp !== undefined && rp !== 1) {
    if (!(rp > 0)) bad('repetition_penalty', 'a number > 0 (1.0: no penalty)', rp, 'above 1 discourages repeats, between 0 and 1 encourages them')
    repetitionPenalty = rp
    names.push('RepetitionPenaltyLogitsProcessor')
  }

  const ng = intOpt(cfg, 'no_repeat_ngram_size', 0, '0 disables it')
  let noRepeatNgramSize: number | null = null
  if (ng !== undefined && ng > 0) {
    noRepeatNgramSize = ng
    names.push('NoRepeatNGramLogitsProcessor')
  }

  const bw = opt(cfg, 'bad_words_ids')
  let badWordsIds: number[][] | null = null
  if (bw !== undefined) {
    const expected = 'a non-empty list of non-empty lists of token ids, e.g. [[3], [7, 8]]'
    if (!Array.isArray(bw) || bw.length === 0) bad('bad_words_ids', expected, bw)
    for (const w of bw) if (!Array.isArray(w) || w.length === 0 || !w.every(tokenId)) bad('bad_words_ids', expected, bw)
    badWordsIds = (bw as number[][]).map((w) => w.slice())
    names.push('NoBadWordsLogitsProcessor')
  }

  let minLength = intOpt(cfg, 'min_length', 0) ?? null
  const minNewTokens = intOpt(cfg, 'min_new_tokens', 0) ?? null
  if (minNewTokens !== null) {
    // GenerationMixin._prepare_generated_length: min_new_tokens takes precedence over min_length
    if (promptLength === undefined) bad('prompt_length', 'the prompt length (an integer >= 0) when min_new_tokens is set', promptLength)
    minLength = promptLength + minNewTokens
  }
  if (minLength !== null && minLength > 0 && eos !== null) names.push('MinLengthLogitsProcessor')
  if (minNewTokens !== null && minNewTokens > 0 && eos !== null) names.push('MinNewTokensLengthLogitsProcessor')

  // --- warpers (only when sampling; HF does not build or validate them otherwise) ---
  let temperature: number | null = null, topK: number | null = null, topP: number | null = null
  let minP: number | null = null, typicalP: number | null = null, epsilon: number | null = null, eta: number | null = null
  if (doSample) {
    const tExp = 'a number > 0 (1.0: unchanged)'
    const t = numberOpt(cfg, 'temperature', tExp)
    if (t !== undefined && t !== 1) {
      if (!(t > 0)) bad('temperature', tExp, t, t === 0 ? 'for greedy decoding set do_sample to false' : 'lower values sharpen the distribution, higher flatten it')
      temperature = t
      names.push('TemperatureLogitsWarper')
    }

    // GenerationConfig's default top_k = 50 applies unless the caller sets it (0 or null disables it)
    const k = cfg.top_k === undefined ? 50 : intOpt(cfg, 'top_k', 0, '0 disables top-k; sampling uses 50 when top_k is not given')
    if (k !== undefined && k !== 0) {
      topK = k
      names.push('TopKLogitsWarper')
    }

    const pExp = 'a number in [0, 1] (1.0 disables it)'
    const p = numberOpt(cfg, 'top_p', pExp)
    if (p !== undefined) {
      if (!(p >= 0 && p <= 1)) bad('top_p', pExp, p, 'top_p keeps the most probable tokens whose probabilities add up to top_p')
      if (p < 1) {
        topP = p
        names.push('TopPLogitsWarper')
      }
    }

    const mExp = 'a number in [0, 1]'
    const m = numberOpt(cfg, 'min_p', mExp)
    if (m !== undefined) {
      if (!(m >= 0 && m <= 1)) bad('min_p', mExp, m, 'min_p keeps tokens with probability >= min_p times the largest probability')
      minP = m
      names.push('MinPLogitsWarper')
    }

    const tyExp = 'a number in (0, 1] (1.0 disables it)'
    const ty = numberOpt(cfg, 'typical_p', tyExp)
    if (ty !== undefined) {
      if (!(ty > 0 && ty <= 1)) bad('typical_p', tyExp, ty)
      if (ty < 1) {
        typicalP = ty
        names.push('TypicalLogitsWarper')
      }
    }

    const eExp = 'a number in [0, 1) (0 disables it)'
    const e = numberOpt(cfg, 'epsilon_cutoff', eExp)
    if (e !== undefined) {
      if (!(e >= 0 && e < 1)) bad('epsilon_cutoff', eExp, e, 'the paper suggests 3e-4 to 9e-4')
      if (e > 0) {
        epsilon = e
        names.push('EpsilonLogitsWarper')
      }
    }

    const h = numberOpt(cfg, 'eta_cutoff', eExp)
    if (h !== undefined) {
      if (!(h >= 0 && h < 1)) bad('eta_cutoff', eExp, h, 'the paper suggests 3e-4 to 4e-3')
      if (h > 0) {
        eta = h
        names.push('EtaLogitsWarper')
      }
    }
  }

  return {
    doSample, repetitionPenalty, noRepeatNgramSize, badWordsIds, minLength, minNewTokens, eos,
    temperature, topK, topP, minP, typicalP, epsilon, eta, names,
  }
}

function promptLengthOf(cfg: Record<string, unknown>, fallback: number | undefined): number | undefined {
  const v = opt(cfg, 'prompt_length')
  if (v === undefined) return fallback
  if (!tokenId(v)) bad('prompt_length', 'an integer >= 0', v)
  return v
}

/**
 * The HF class names of the chain generate() would build for `config` (snake_case GenerationConfig keys,
 * plus prompt_length, needed only with min_new_tokens), in application order. Validates like the builder.
 */
export function describeChain(config: SamplingConfig | Record<string, unknown>, ctx: Partial<ChainContext> = {}): ProcessorName[] {
  const cfg = config as Record<string, unknown>
  return resolve(cfg, ctx.promptLength ?? promptLengthOf(cfg, undefined), ctx.eosTokenId).names
}

// ---------------------------------------------------------------------------------------------
// Scratch shared by the steps of one chain (allocated once by the builder)
//
// V8 note: every long loop lives in a small module-level function whose code after the loop is a
// plain `return`, and loop bodies avoid rarely taken branches (they write back the unchanged value
// instead). Otherwise on-stack-replacement code compiled in the middle of the first long loop can
// lack type feedback for the code that follows, deoptimise on every call and box doubles (allocate).

class Scratch {
  readonly probs: Float64Array
  readonly keys: Float64Array
  readonly idx: Int32Array
  readonly seen: Uint8Array
  /** Results of the last softmax(): max score, log of the normaliser, entropy (if asked). */
  max = 0.5
  logZ = 0.5
  entropy = 0.5

  constructor(readonly V: number) {
    this.probs = new Float64Array(V)
    this.keys = new Float64Array(V)
    this.idx = new Int32Array(V)
    this.seen = new Uint8Array(V)
  }

  /**
   * probs = softmax(scores[0..V)) in float64 (-Infinity -> 0); sets max, logZ and, if asked, the
   * entropy -sum p log p over p > 0. Returns false when the largest score is not finite (nothing to do).
   */
  softmax(s: Float32Array, withEntropy: boolean): boolean {
    const V = this.V, p = this.probs
    const max = maxF32(s, V)
    if (!(max > -Infinity && max < Infinity)) return false
    const z = expShifted(s, V, max, p)
    scaleF64(p, V, 1 / z)
    this.max = max
    this.logZ = Math.log(z)
    if (withEntropy) this.entropy = entropy(s, p, V, max + this.logZ)
    return true
  }
}

function maxF64(p: Float64Array, n: number): number {
  let max = 0
  for (let i = 0; i < n; i++) {
    const v = p[i]
    max = v > max ? v : max
  }
  return max
}

function scaleF64(p: Float64Array, n: number, k: number): void {
  for (let i = 0; i < n; i++) p[i] *= k
}

/** -sum p log p over p > 0, with log p = s - shift (shift = max + log Z). */
function entropy(s: Float32Array, p: Float64Array, n: number, shift: number): number {
  let h = 0
  for (let i = 0; i < n; i++) {
    const pi = p[i]
    const t = pi * (s[i] - shift) // NaN for -Infinity scores (p = 0): skipped below
    h -= pi > 0 ? t : 0
  }
  return h
}

/** The ids with a score above -Infinity, in index order, into idx; returns their count. */
function finiteIds(s: Float32Array, n: number, idx: Int32Array): number {
  let m = 0
  for (let i = 0; i < n; i++) {
    idx[m] = i
    m += s[i] > -Infinity ? 1 : 0
  }
  return m
}

/** Sets s[i] = -Infinity where p[i] < cut and s[i] < max (max = Infinity: no exemption). */
function removeBelow(s: Float32Array, p: Float64Array, n: number, cut: number, max: number): void {
  for (let i = 0; i < n; i++) {
    const v = s[i]
    const low = p[i] < cut
    const below = v < max
    s[i] = low && below ? -Infinity : v
  }
}

/** Sets s[i] = -Infinity where s[i] < thr. */
function removeUnder(s: Float32Array, n: number, thr: number): void {
  for (let i = 0; i < n; i++) {
    const v = s[i]
    s[i] = v < thr ? -Infinity : v
  }
}

function divideAll(s: Float32Array, n: number, t: number): void {
  for (let i = 0; i < n; i++) s[i] = s[i] / t
}

/** Sorts idx[0..n) in place by (key[idx] ascending, idx ascending): a total order, so the result is unique. */
function sortIndices(idx: Int32Array, key: Float64Array, n: number): void {
  quicksort(idx, key, 0, n)
}

function less(key: Float64Array, a: number, b: number): boolean {
  const ka = key[a], kb = key[b]
  return ka < kb || (ka === kb && a < b)
}

function quicksort(idx: Int32Array, key: Float64Array, lo: number, hi: number): void {
  // [lo, hi); recursion on the smaller part keeps the stack O(log n)
  while (hi - lo > 16) {
    const mid = lo + ((hi - lo - 1) >> 1)
    // median of three at lo, mid, hi - 1
    if (less(key, idx[mid], idx[lo])) swap(idx, mid, lo)
    if (less(key, idx[hi - 1], idx[mid])) {
      swap(idx, hi - 1, mid)
      if (less(key, idx[mid], idx[lo])) swap(idx, mid, lo)
    }
    const pivot = idx[mid]
    // Hoare partition: elements are distinct under the total order, so the scans stop in range
    let i = lo - 1, j = hi
    for (;;) {
      do i++
      while (less(key, idx[i], pivot))
      do j--
      while (less(key, pivot, idx[j]))
      if (i >= j) break
      swap(idx, i, j)
    }
    // [lo, j] <= pivot <= [j + 1, hi)
    if (j + 1 - lo < hi - j - 1) {
      quicksort(idx, key, lo, j + 1)
      lo = j + 1
    } else {
      quicksort(idx, key, j + 1, hi)
      hi = j + 1
    }
  }
  insertionSort(idx, key, lo, hi)
}

function insertionSort(idx: Int32Array, key: Float64Array, lo: number, hi: number): void {
  for (let i = lo + 1; i < hi; i++) {
    const v = idx[i]
    let j = i - 1
    while (j >= lo && less(key, v, idx[j])) {
      idx[j + 1] = idx[j]
      j--
    }
    idx[j + 1] = v
  }
}

function swap(a: Int32Array, i: number, j: number): void {
  const t = a[i]
  a[i] = a[j]
  a[j] = t
}

// ---------------------------------------------------------------------------------------------
// The processors (each a factory returning the in-place step)

/** RepetitionPenaltyLogitsProcessor: once per distinct id of the context, score < 0 ? score * p : score / p. */
function repetitionPenalty(penalty: number, sc: Scratch): LogitsProcessorFn {
  const p = Math.fround(penalty), V = sc.V, seen = sc.seen
  return (s, ids) => {
    penalize(s, ids, V, p, seen)
    clearSeen(ids, V, seen)
  }
}

function penalize(s: Float32Array, ids: ArrayLike<number>, V: number, p: number, seen: Uint8Array): void {
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]
    const ok = id >= 0 && id < V
    const b = ok ? id : 0
    const first = ok && seen[b] === 0
    const v = s[b]
    const mul = v * p, div = v / p
    s[b] = first ? (v < 0 ? mul : div) : v
    seen[b] = first ? 1 : seen[b]
  }
}

function clearSeen(ids: ArrayLike<number>, V: number, seen: Uint8Array): void {
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]
    seen[id >= 0 && id < V ? id : 0] = 0
  }
}

/**
 * NoRepeatNGramLogitsProcessor: the next token may not complete an n-gram that already occurs in the
 * context. The last n-1 tokens are matched against every earlier window; each match bans the token that
 * followed it (n = 1 bans every id present).
 */
function noRepeatNGram(n: number, V: number): LogitsProcessorFn {
  return (s, ids) => {
    if (ids.length + 1 >= n) banRepeats(s, ids, n, V)
  }
}

function banRepeats(s: Float32Array, ids: ArrayLike<number>, n: number, V: number): void {
  const L = ids.length
  const prefixStart = L - n + 1 // the last n-1 tokens
  for (let j = 0; j + n <= L; j++) {
    let k = 0
    while (k < n - 1 && ids[j + k] === ids[prefixStart + k]) k++
    const banned = ids[j + n - 1]
    const ok = banned >= 0 && banned < V
    const b = ok ? banned : 0
    const hit = ok && k === n - 1
    const v = s[b]
    s[b] = hit ? -Infinity : v
  }
}

/**
 * NoBadWordsLogitsProcessor: single-token bad words are always banned (except those equal to an eos
 * id, which HF filters out); a longer one bans its last token when the context ends with the rest of
 * it; a bad word longer than the whole context is ignored.
 */
function noBadWords(badWordsIds: number[][], eos: number[] | null, V: number): LogitsProcessorFn {
  const eosSet = eos ?? []
  const kept = badWordsIds.filter((w) => !(w.length === 1 && eosSet.includes(w[0])))
  const outOfRange = kept.flat().filter((id) => id >= V)
  if (outOfRange.length) {
    throw new UsageError({ where: WHERE, what: 'invalid bad_words_ids', expected: `token ids below the vocabulary size ${V}`, found: show(outOfRange) })
  }
  const singles = Int32Array.from(kept.filter((w) => w.length === 1).map((w) => w[0]))
  const multi = kept.filter((w) => w.length > 1).map((w) => Int32Array.from(w))
  return (s, ids) => {
    for (let i = 0; i < singles.length; i++) s[singles[i]] = -Infinity
    const L = ids.length
    for (let m = 0; m < multi.length; m++) {
      const w = multi[m], len = w.length
      if (len > L) continue
      const start = L - (len - 1)
      let k = 0
      while (k < len - 1 && ids[start + k] === w[k]) k++
      if (k === len - 1) s[w[len - 1]] = -Infinity
    }
  }
}

function banEos(s: Float32Array, eos: Int32Array, V: number): void {
  for (let i = 0; i < eos.length; i++) {
    const e = eos[i]
    if (e < V) s[e] = -Infinity
  }
}

/** MinLengthLogitsProcessor: eos ids are banned while the context (prompt included) is shorter than minLength. */
function minLength(min: number, eos: number[], V: number): LogitsProcessorFn {
  const e = Int32Array.from(eos)
  return (s, ids) => {
    if (ids.length < min) banEos(s, e, V)
  }
}

/** MinNewTokensLengthLogitsProcessor: eos ids are banned while fewer than minNew tokens follow the prompt. */
function minNewTokensLength(promptLength: number, minNew: number, eos: number[], V: number): LogitsProcessorFn {
  const e = Int32Array.from(eos)
  return (s, ids) => {
    if (ids.length - promptLength < minNew) banEos(s, e, V)
  }
}

/** TemperatureLogitsWarper: scores / temperature (float32, as torch). */
function temperature(t: number, V: number): LogitsProcessorFn {
  const tf = Math.fround(t)
  return (s) => divideAll(s, V, tf)
}

/** TopKLogitsWarper: removes every score below the k-th largest (ties with it are kept). */
function topK(k: number, V: number): LogitsProcessorFn {
  const kk = Math.min(k, V)
  const heap = new Float32Array(kk) // min-heap of the kk largest scores
  return (s) => {
    if (kk >= V) return
    heapInit(s, heap, kk)
    heapScan(s, heap, kk, V)
    removeUnder(s, V, heap[0])
  }
}

/** heap = a min-heap of s[0..kk). */
function heapInit(s: Float32Array, heap: Float32Array, kk: number): void {
  for (let i = 0; i < kk; i++) heap[i] = s[i]
  for (let i = (kk >> 1) - 1; i >= 0; i--) siftDown(heap, kk, i, heap[i])
}

/** Pushes s[kk..V) through the heap: afterwards heap[0] is the kk-th largest score. */
function heapScan(s: Float32Array, heap: Float32Array, kk: number, V: number): void {
  for (let i = kk; i < V; i++) {
    const v = s[i], top = heap[0]
    siftDown(heap, kk, 0, v > top ? v : top) // no-op when v does not enter (keeps the loop branch-free)
  }
}

/** Places v at position c of the min-heap, moving smaller children up. */
function siftDown(heap: Float32Array, size: number, c: number, v: number): void {
  for (;;) {
    const l = 2 * c + 1
    if (l >= size) break
    const r = l + 1
    const m = r < size && heap[r] < heap[l] ? r : l
    if (!(heap[m] < v)) break
    heap[c] = heap[m]
    c = m
  }
  heap[c] = v
}

/**
 * TopPLogitsWarper: sorts ascending by score, removes the tokens whose cumulative probability is
 * <= 1 - top_p, and always keeps the best token.
 */
function topP(top: number, sc: Scratch): LogitsProcessorFn {
  const cut = 1 - top, V = sc.V
  return (s) => {
    if (!sc.softmax(s, false)) return
    const n = finiteIds(s, V, sc.idx)
    gatherScores(s, sc.idx, n, sc.keys)
    sortIndices(sc.idx, sc.keys, n)
    cutCumulative(s, sc.idx, n, sc.probs, cut)
  }
}

function gatherScores(s: Float32Array, idx: Int32Array, n: number, keys: Float64Array): void {
  for (let i = 0; i < n; i++) {
    const id = idx[i]
    keys[id] = s[id]
  }
}

/** Along idx (ascending), removes tokens while the cumulative probability is <= cut; never the last. */
function cutCumulative(s: Float32Array, idx: Int32Array, n: number, p: Float64Array, cut: number): void {
  let cum = 0
  for (let i = 0; i < n - 1; i++) {
    const id = idx[i]
    cum += p[id]
    if (!(cum <= cut)) return
    s[id] = -Infinity
  }
}

/** MinPLogitsWarper (4.39+): removes tokens with probability < min_p * (largest probability). */
function minP(m: number, sc: Scratch): LogitsProcessorFn {
  const V = sc.V
  return (s) => {
    if (!sc.softmax(s, false)) return
    removeBelow(s, sc.probs, V, m * maxF64(sc.probs, V), Infinity)
  }
}

/**
 * TypicalLogitsWarper: with H the entropy, sorts tokens by |-log p - H| ascending, finds the first
 * position where the cumulative probability reaches typical_p (the count of cumulative < typical_p,
 * capped at the last position) and removes every token farther from H than the token there; the
 * closest token is always kept.
 */
function typical(mass: number, sc: Scratch): LogitsProcessorFn {
  const V = sc.V
  return (s) => {
    if (!sc.softmax(s, true)) return
    const idx = sc.idx, keys = sc.keys
    const n = finiteIds(s, V, idx)
    typicalDistances(s, idx, n, keys, sc.max + sc.logZ, sc.entropy)
    sortIndices(idx, keys, n)
    const last = countBelow(idx, n, sc.probs, mass)
    // last === n: the cut falls on a -inf token (distance +inf) or past the final token: nothing is removed
    if (last < n) removeFarther(s, idx, n, keys, keys[idx[last]])
  }
}

/** keys[id] = |-log p - H| with log p = s - shift. */
function typicalDistances(s: Float32Array, idx: Int32Array, n: number, keys: Float64Array, shift: number, h: number): void {
  for (let i = 0; i < n; i++) {
    const id = idx[i]
    keys[id] = Math.abs(shift - s[id] - h)
  }
}

/** How many leading tokens of idx have a cumulative probability < mass. */
function countBelow(idx: Int32Array, n: number, p: Float64Array, mass: number): number {
  let cum = 0
  for (let i = 0; i < n; i++) {
    cum += p[idx[i]]
    if (!(cum < mass)) return i
  }
  return n
}

/** Removes tokens idx[1..n) whose key is above thr (idx[0], the closest, is always kept). */
function removeFarther(s: Float32Array, idx: Int32Array, n: number, keys: Float64Array, thr: number): void {
  for (let i = 1; i < n; i++) {
    const id = idx[i]
    const v = s[id]
    s[id] = keys[id] > thr ? -Infinity : v
  }
}

/** EpsilonLogitsWarper: removes p < epsilon, except tokens tied with the best score. */
function epsilonCutoff(eps: number, sc: Scratch): LogitsProcessorFn {
  const V = sc.V
  return (s) => {
    if (!sc.softmax(s, false)) return
    removeBelow(s, sc.probs, V, eps, sc.max)
  }
}

/** EtaLogitsWarper: removes p < min(eta, sqrt(eta) * exp(-H)), except tokens tied with the best score. */
function etaCutoff(eta: number, sc: Scratch): LogitsProcessorFn {
  const root = Math.sqrt(eta), V = sc.V
  return (s) => {
    if (!sc.softmax(s, true)) return
    removeBelow(s, sc.probs, V, Math.min(eta, root * Math.exp(-sc.entropy)), sc.max)
  }
}

// ---------------------------------------------------------------------------------------------
// The chain

/**
 * Builds the chain generate() applies to each step's scores: HF's processors, then (do_sample) its
 * warpers, validated (UsageError naming the option and its range) and with all scratch preallocated
 * for `vocabSize` scores, so that `apply` allocates nothing.
 */
export function buildLogitsProcessor(config: SamplingConfig | Record<string, unknown>, ctx: ChainContext): LogitsChain {
  const cfg = config as Record<string, unknown>
  const V = ctx.vocabSize
  if (!Number.isInteger(V) || V < 1) throw new UsageError({ where: 'buildLogitsProcessor', what: 'invalid vocabSize', expected: 'an integer >= 1', found: show(V) })
  if (!tokenId(ctx.promptLength)) throw new UsageError({ where: 'buildLogitsProcessor', what: 'invalid promptLength', expected: 'an integer >= 0', found: show(ctx.promptLength) })
  const plan = resolve(cfg, ctx.promptLength, ctx.eosTokenId)
  let scratch: Scratch | null = null
  const sc = () => (scratch ??= new Scratch(V))

  const steps: { name: ProcessorName; fn: LogitsProcessorFn }[] = []
  for (const name of plan.names) {
    let fn: LogitsProcessorFn
    switch (name) {
      case 'RepetitionPenaltyLogitsProcessor': fn = repetitionPenalty(plan.repetitionPenalty!, sc()); break
      case 'NoRepeatNGramLogitsProcessor': fn = noRepeatNGram(plan.noRepeatNgramSize!, V); break
      case 'NoBadWordsLogitsProcessor': fn = noBadWords(plan.badWordsIds!, plan.eos, V); break
      case 'MinLengthLogitsProcessor': fn = minLength(plan.minLength!, plan.eos!, V); break
      case 'MinNewTokensLengthLogitsProcessor': fn = minNewTokensLength(ctx.promptLength, plan.minNewTokens!, plan.eos!, V); break
      case 'TemperatureLogitsWarper': fn = temperature(plan.temperature!, V); break
      case 'TopKLogitsWarper': fn = topK(plan.topK!, V); break
      case 'TopPLogitsWarper': fn = topP(plan.topP!, sc()); break
      case 'MinPLogitsWarper': fn = minP(plan.minP!, sc()); break
      case 'TypicalLogitsWarper': fn = typical(plan.typicalP!, sc()); break
      case 'EpsilonLogitsWarper': fn = epsilonCutoff(plan.epsilon!, sc()); break
      case 'EtaLogitsWarper': fn = etaCutoff(plan.eta!, sc()); break
    }
    steps.push({ name, fn })
  }
  const fns = steps.map((x) => x.fn)
  const apply: LogitsProcessorFn = (scores, inputIds) => {
    if (scores.length < V) throw new UsageError({ where: 'logits processor', what: 'scores shorter than the vocabulary', expected: `>= ${V} scores`, found: `${scores.length}` })
    for (let i = 0; i < fns.length; i++) fns[i](scores, inputIds)
  }
  return { names: plan.names, steps, doSample: plan.doSample, apply }
}

/**
 * Applies exactly the chain generate() would build for `config` (snake_case GenerationConfig keys, plus
 * prompt_length, default inputIds.length; eos from config.eos_token_id) to one step's scores and returns
 * new scores (-Infinity where removed). Builds the chain on every call: generation loops should build it
 * once with buildLogitsProcessor().
 */
export function processLogits(scores: Float32Array, inputIds: ArrayLike<number>, config: SamplingConfig | Record<string, unknown>): Float32Array {
  const cfg = config as Record<string, unknown>
  const chain = buildLogitsProcessor(cfg, {
    promptLength: promptLengthOf(cfg, inputIds.length)!,
    vocabSize: scores.length,
  })
  const out = scores.slice()
  chain.apply(out, inputIds)
  return out
}
