// Running a task over its items, and aggregating per-item results into lm-eval's metrics.
//
// Per-item results are self-contained and carry their item index and float64 sums, so results made in
// several runs (shards, workers) aggregate to exactly the numbers of one run: aggregate() sorts them by
// index, refuses duplicates, and computes every metric from the items alone.

import { UsageError } from '../errors.js'
import type { Tokenizer } from '../tokenizers/types.js'
import { BOOTSTRAP_ITERS, bitsPerByte, bootstrapStderrOfMean, mean, meanStderr, weightedPerplexity } from './metrics.js'
import type { Scorer } from './scorer.js'
import { taskMetrics, lambadaSplit, type ChoiceDoc, type EvalDoc, type EvalTask, type TextDoc } from './tasks.js'
import { countBytes, countWords, pyLen, wikitextDetokenizer } from './text.js'
import { rollingRequests, slidingRequest, slidingWindows, type TokenRequest } from './windows.js'

export interface PerplexityWindowResult {
  /** Sliding mode: the window ids[begin, end) of the document's tokens. */
  begin?: number
  end?: number
  /** Tokens scored in this window and the sum of their log-probabilities. */
  tokens: number
  loglikelihood: number
}

export interface PerplexityItemResult {
  kind: 'perplexity'
  index: number
  /** Σ log p over the document's scored tokens (float64). */
  loglikelihood: number
  /** Tokens scored (rolling: all of them; sliding: all but the first). */
  tokens: number
  /** Words (len(re.split(r"\s+", text))) and UTF-8 bytes of the original text. */
  words: number
  bytes: number
  windows: PerplexityWindowResult[]
}

export interface LambadaItemResult {
  kind: 'lambada'
  index: number
  loglikelihood: number
  isGreedy: boolean
  contextTokens: number
  targetIds: number[]
  tokenLogprobs: number[]
  /** Per target token: was it the argmax of its row. */
  greedy: boolean[]
  truncated: number
}

export interface ChoiceItemResult {
  kind: 'choice'
  index: number
  gold: number
  /** Per choice: Σ log p of its continuation, the continuation's tokens, is_greedy, len(choice) in code points. */
  loglikelihoods: number[]
  tokens: number[]
  isGreedy: boolean[]
  lengths: number[]
  truncated: number[]
  /** argmax of loglikelihoods and of loglikelihoods / lengths (first index on ties, as np.argmax). */
  pred: number
  predNorm: number
  acc: number
  accNorm: number
}

export type ItemResult = PerplexityItemResult | LambadaItemResult | ChoiceItemResult

export interface MetricValue {
  value: number
  /** lm-eval's stderr; null where the harness reports none ("N/A"). */
  stderr: number | null
  higherIsBetter: boolean
}

export interface TaskResult {
  task: string
  kind: EvalTask['kind']
  /** Items aggregated. */
  n: number
  metrics: Record<string, MetricValue>
  /** Sums the metrics were made from (tokens, words, bytes, loglikelihood ...). */
  totals: Record<string, number>
}

export interface AggregateOptions {
  /** Bootstrap iterations for lm-eval's bootstrapped stderrs (lambada perplexity); 0: none. Default 100000. */
  bootstrapIters?: number
}

/** lm-eval's prefix token for a model: BOS if the model has one, else EOS, else the tokenizer's <|endoftext|>. */
export function defaultPrefixToken(arch: { bosTokenId: number | null; eosTokenId: number | number[] | null }, tok?: Tokenizer): number {
  if (arch.bosTokenId !== null) return arch.bosTokenId
  const eos = Array.isArray(arch.eosTokenId) ? arch.eosTokenId[0] : arch.eosTokenId
  if (eos !== null && eos !== undefined) return eos
  const eot = tok?.specialTokens.get('<|endoftext|>')
  if (eot !== undefined) return eot
  throw new UsageError({ what: 'the model has no BOS / EOS token to condition the first window on', hint: 'pass prefixToken' })
}

/**
 * lm-eval's request encoding (lm_eval/api/model.py loglikelihood @ 9ffc779): an empty context becomes
 * [prefix token] (or, when the continuation starts with it, the continuation's first token). Otherwise the
 * context and the continuation are encoded separately (as lm-eval 0.3 did; 0.4 encodes context +
 * continuation and splits it, the same ids with GPT-2's BPE when the continuation starts with a space
 * after a non-space character, as every format here does).
 */
export function encodeRequest(tok: Tokenizer, context: string, continuation: string, prefixToken: number): TokenRequest {
  const cont = tok.encode(continuation)
  if (context === '') return prefixToken !== cont[0] ? { context: [prefixToken], continuation: cont } : { context: cont.slice(0, 1), continuation: cont.slice(1) }
  return { context: tok.encode(context), continuation: cont }
}

export interface RunOptions {
  tokenizer: Tokenizer
  /** Default: defaultPrefixToken of the scorer's model. */
  prefixToken: number
  /** Called after each item. */
  onItem?: (result: ItemResult, done: number, total: number) => void
  /** Called after each scored request (a perplexity window, a choice), e.g. for progress within a long document. */
  onRequest?: (req: TokenRequest) => void
}

/** A perplexity document's requests: its windows (rolling or sliding) over the (detokenized) text's tokens. */
export function perplexityRequests(task: Extract<EvalTask, { kind: 'perplexity' }>, text: string, tok: Tokenizer, prefixToken: number, maxLength: number):
  { request: TokenRequest; begin?: number; end?: number }[] {
  const ids = tok.encode(task.detokenize === 'wikitext' ? wikitextDetokenizer(text) : text)
  if (task.mode === 'rolling') return rollingRequests(ids, prefixToken, maxLength).map((request) => ({ request }))
  return slidingWindows(ids.length, maxLength, task.stride ?? maxLength).map((w) => ({ request: slidingRequest(ids, w), begin: w.begin, end: w.end }))
}

/** Scores one item of a task. */
export async function scoreItem(scorer: Scorer, task: EvalTask, doc: EvalDoc, opts: RunOptions): Promise<ItemResult> {
  const tok = opts.tokenizer
  if (task.kind === 'perplexity') {
    const original = (doc as TextDoc).text
    const windows: PerplexityWindowResult[] = []
    let ll = 0, tokens = 0
    for (const { request: req, begin, end } of perplexityRequests(task, original, tok, opts.prefixToken, scorer.maxLength)) {
      const r = await scorer.score(req)
      windows.push({ ...(begin !== undefined ? { begin, end } : {}), tokens: req.continuation.length, loglikelihood: r.loglikelihood })
      ll += r.loglikelihood
      tokens += req.continuation.length
      opts.onRequest?.(req)
    }
    return { kind: 'perplexity', index: doc.index, loglikelihood: ll, tokens, words: countWords(original), bytes: countBytes(original), windows }
  }
  if (task.kind === 'lambada') {
    const { context, target } = lambadaSplit((doc as TextDoc).text)
    const req = encodeRequest(tok, context, target, opts.prefixToken)
    const r = await scorer.score(req)
    opts.onRequest?.(req)
    return {
      kind: 'lambada', index: doc.index, loglikelihood: r.loglikelihood, isGreedy: r.isGreedy, contextTokens: req.context.length,
      targetIds: req.continuation, tokenLogprobs: Array.from(r.logprobs), greedy: Array.from(r.greedy, (g) => g === 1), truncated: r.truncated,
    }
  }
  const d = doc as ChoiceDoc
  const lls: number[] = [], tokens: number[] = [], greedy: boolean[] = [], truncated: number[] = []
  for (const { context, continuation } of d.requests) {
    const req = encodeRequest(tok, context, continuation, opts.prefixToken)
    const r = await scorer.score(req)
    opts.onRequest?.(req)
    lls.push(r.loglikelihood)
    tokens.push(req.continuation.length)
    greedy.push(r.isGreedy)
    truncated.push(r.truncated)
  }
  return choiceResult(d.index, d.gold, lls, d.choices.map(pyLen), { tokens, isGreedy: greedy, truncated })
}

/** lm-eval's multiple-choice process_results: pred = argmax(lls), pred_norm = argmax(lls / len(choice)). */
export function choiceResult(index: number, gold: number, loglikelihoods: number[], lengths: number[],
  extra: { tokens?: number[]; isGreedy?: boolean[]; truncated?: number[] } = {}): ChoiceItemResult {
  const pred = argmaxFirst(loglikelihoods)
  const predNorm = argmaxFirst(loglikelihoods.map((l, i) => l / lengths[i]))
  return {
    kind: 'choice', index, gold, loglikelihoods, tokens: extra.tokens ?? [], isGreedy: extra.isGreedy ?? [], lengths,
    truncated: extra.truncated ?? [], pred, predNorm, acc: pred === gold ? 1 : 0, accNorm: predNorm === gold ? 1 : 0,
  }
}

/** np.argmax: the first index of the maximum (NaN counts as the maximum, as numpy's). */
function argmaxFirst(xs: number[]): number {
  let best = 0
  for (let i = 0; i < xs.length; i++) {
    if (Number.isNaN(xs[i])) return i
    if (xs[i] > xs[best]) best = i
  }
  return best
}

/** Scores every item of a task in order. */
export async function runTask(scorer: Scorer, task: EvalTask, docs: readonly EvalDoc[], opts: RunOptions): Promise<ItemResult[]> {
  const out: ItemResult[] = []
  for (const doc of docs) {
    const r = await scoreItem(scorer, task, doc, opts)
    out.push(r)
    opts.onItem?.(r, out.length, docs.length)
  }
  return out
}

/**
 * The task's metrics from per-item results (any order, from any number of runs): lm-eval's aggregations
 * and stderrs (see metrics.ts). Throws when an index appears twice or an item is of another kind.
 */
export function aggregate(task: EvalTask, results: readonly ItemResult[], opts: AggregateOptions = {}): TaskResult {
  const items = [...results].sort((a, b) => a.index - b.index)
  for (let i = 0; i < items.length; i++) {
    if (items[i].kind !== task.kind) throw new UsageError({ where: `aggregate(${task.name})`, what: 'an item of another task kind', expected: task.kind, found: items[i].kind })
    if (i > 0 && items[i].index === items[i - 1].index)
      throw new UsageError({ where: `aggregate(${task.name})`, what: `item ${items[i].index} appears twice`, hint: 'merge each shard once' })
  }
  const n = items.length
  if (n === 0) throw new UsageError({ where: `aggregate(${task.name})`, what: 'no items to aggregate' })
  const iters = opts.bootstrapIters ?? BOOTSTRAP_ITERS
  const se = (f: () => number) => (n > 1 && iters > 0 ? f() : null)
  const metrics: Record<string, MetricValue> = {}
  const totals: Record<string, number> = {}
  if (task.kind === 'perplexity') {
    const it = items as PerplexityItemResult[]
    let ll = 0, tokens = 0, words = 0, bytes = 0
    for (const r of it) {
      ll += r.loglikelihood
      tokens += r.tokens
      words += r.words
      bytes += r.bytes
    }
    const pairs = (w: (r: PerplexityItemResult) => number) => it.map((r) => [r.loglikelihood, w(r)] as const)
    metrics.word_perplexity = { value: weightedPerplexity(pairs((r) => r.words)), stderr: null, higherIsBetter: false }
    metrics.byte_perplexity = { value: weightedPerplexity(pairs((r) => r.bytes)), stderr: null, higherIsBetter: false }
    metrics.bits_per_byte = { value: bitsPerByte(pairs((r) => r.bytes)), stderr: null, higherIsBetter: false }
    metrics.token_perplexity = { value: weightedPerplexity(pairs((r) => r.tokens)), stderr: null, higherIsBetter: false }
    Object.assign(totals, { loglikelihood: ll, tokens, words, bytes })
  } else if (task.kind === 'lambada') {
    const it = items as LambadaItemResult[]
    const lls = it.map((r) => r.loglikelihood), acc = it.map((r) => (r.isGreedy ? 1 : 0))
    const ppl = (m: number) => Math.exp(-m)
    metrics.perplexity = { value: ppl(mean(lls)), stderr: se(() => bootstrapStderrOfMean(ppl, lls, iters)), higherIsBetter: false }
    metrics.acc = { value: mean(acc), stderr: se(() => meanStderr(acc)), higherIsBetter: true }
    let ll = 0, tokens = 0
    for (const r of it) {
      ll += r.loglikelihood
      tokens += r.targetIds.length
    }
    Object.assign(totals, { loglikelihood: ll, target_tokens: tokens })
  } else {
    const it = items as ChoiceItemResult[]
    const acc = it.map((r) => r.acc), accNorm = it.map((r) => r.accNorm)
    metrics.acc = { value: mean(acc), stderr: se(() => meanStderr(acc)), higherIsBetter: true }
    if (taskMetrics(task).includes('acc_norm')) metrics.acc_norm = { value: mean(accNorm), stderr: se(() => meanStderr(accNorm)), higherIsBetter: true }
    Object.assign(totals, { requests: it.reduce((s, r) => s + r.loglikelihoods.length, 0) })
  }
  return { task: task.name, kind: task.kind, n, metrics, totals }
}
