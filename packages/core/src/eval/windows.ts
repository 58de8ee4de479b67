// Which tokens a perplexity evaluation scores, and with what context.
//
// 1. lm-eval's loglikelihood_rolling (EleutherAI/lm-evaluation-harness lm_eval/utils.py @ bcdf34b:
//    get_rolling_token_windows, make_disjoint_window; lm_eval/models/huggingface.py @ 3e093bc:
//    loglikelihood_rolling calls them with prefix_token_id and context_len=1). Every token of the document
//    is predicted exactly once; the first window is conditioned on the prefix token (EOT / BOS), each later
//    window on the tokens before it, the model seeing at most max_length tokens at once.
// 2. The Hugging Face perplexity docs' sliding window ("Perplexity of fixed-length models"): windows of
//    max_length tokens starting every `stride` tokens; each scores only the tokens the previous window did
//    not, the first token of the document is never scored. stride = max_length gives non-overlapping windows.

/** A loglikelihood request in tokens: log p(continuation | context), the model seeing context + continuation. */
export interface TokenRequest {
  context: number[]
  continuation: number[]
}

/**
 * get_rolling_token_windows(token_list, prefix_token, max_seq_len, context_len), as the harness writes it:
 * [input_tokens, pred_tokens] pairs; score only the last len(pred_tokens) logits of the input.
 */
export function getRollingTokenWindows(tokens: readonly number[], prefixToken: number, maxSeqLen: number, contextLen: number): [number[], number[]][] {
  if (!(Number.isInteger(maxSeqLen) && Number.isInteger(contextLen) && 1 <= contextLen && contextLen <= maxSeqLen))
    throw new RangeError(`getRollingTokenWindows: need 1 <= context_len <= max_seq_len, found ${contextLen} and ${maxSeqLen}`)
  const out: [number[], number[]][] = []
  if (tokens.length === 0) return out
  // +1 offset, going from input->preds
  const predLen = maxSeqLen - contextLen + 1
  let predicted = 0
  // Special handling for first window: predict all tokens
  const firstSeqLen = Math.min(maxSeqLen, tokens.length)
  out.push([[prefixToken, ...tokens.slice(0, firstSeqLen - 1)], tokens.slice(0, firstSeqLen)])
  predicted += firstSeqLen
  while (predicted < tokens.length) {
    const windowPredLen = Math.min(tokens.length - predicted, predLen)
    const windowEnd = predicted + windowPredLen
    // windowEnd - maxSeqLen - 1 >= 0 here (predicted = maxSeqLen after the first window), so Python's slice is JS's
    out.push([tokens.slice(windowEnd - maxSeqLen - 1, windowEnd - 1), tokens.slice(windowEnd - windowPredLen, windowEnd)])
    predicted += windowPredLen
  }
  return out
}

/** make_disjoint_window: the context no longer overlaps the continuation. */
export function makeDisjointWindow([a, b]: [number[], number[]]): [number[], number[]] {
  return [a.slice(0, a.length - (b.length - 1)), b]
}

/** The requests loglikelihood_rolling scores for one document: disjoint rolling windows, context_len 1. */
export function rollingRequests(tokens: readonly number[], prefixToken: number, maxLength: number): TokenRequest[] {
  return getRollingTokenWindows(tokens, prefixToken, maxLength, 1).map(makeDisjointWindow).map(([context, continuation]) => ({ context, continuation }))
}

/** One window of the HF sliding-window loop. */
export interface SlidingWindow {
  /** The window is ids[begin, end); positions restart at 0 in every window. */
  begin: number
  end: number
  /** HF's trg_len = end - prev_end: the tokens this window is responsible for. */
  trgLen: number
  /** First scored position: max(begin + 1, end - trgLen) (window position 0 has no prediction). */
  first: number
}

/** The HF perplexity docs' loop: for begin in range(0, n, stride) ... break after the window that reaches n. */
export function slidingWindows(n: number, maxLength: number, stride: number): SlidingWindow[] {
  if (!(Number.isInteger(maxLength) && maxLength >= 1 && Number.isInteger(stride) && stride >= 1 && stride <= maxLength))
    throw new RangeError(`slidingWindows: need 1 <= stride <= max_length, found ${stride} and ${maxLength}`)
  const out: SlidingWindow[] = []
  let prevEnd = 0
  for (let begin = 0; begin < n; begin += stride) {
    const end = Math.min(begin + maxLength, n)
    const trgLen = end - prevEnd
    out.push({ begin, end, trgLen, first: Math.max(begin + 1, end - trgLen) })
    prevEnd = end
    if (end === n) break
  }
  return out
}

/** A sliding window as a request: the tokens before `first` are context, ids[first, end) are scored. */
export function slidingRequest(ids: readonly number[], w: SlidingWindow): TokenRequest {
  return { context: ids.slice(w.begin, w.first), continuation: ids.slice(w.first, w.end) }
}
