// Scoring loglikelihood requests on a session, as lm-eval's HFLM._loglikelihood_tokens defines them
// (lm_eval/models/huggingface.py @ 3e093bc), with the work shared where the answer cannot change:
//
//   whole = context + continuation
//   inp   = whole[-(max_length + 1):][:-1]          left-truncated to at most max_length tokens
//   the last len(continuation) rows of inp predict the continuation (teacher forcing):
//   loglikelihood = Σ log_softmax(logits[row])[target]      (f32 log-probs, summed in float64)
//   is_greedy     = every row's argmax (first index on ties) equals its target
//
// How it runs: the rows before the first scored row only need their keys and values, so they go through
// session.forward (no [T, V] LM head); the scored rows go through ONE session.logProbs call with their
// targets (LM head, log-softmax, gather and the argmax test on the device; chunks of maxBatchTokens rows
// inside). The session's slot remembers which tokens its KV cache holds: a request whose input starts
// with the same tokens (the choices of one multiple-choice question, a winogrande sentence's shared
// start) runs only what differs. Requests are scored one after another (the engine runs one sequence per
// pass); nothing depends on their order.

import { UsageError, show } from '../errors.js'
import type { Session } from '../models/decoder.js'
import type { Model } from '../models/model.js'
import type { TokenRequest } from './windows.js'

export interface ScoreResult {
  /** Σ log p(continuation[i] | ...) in float64 over the f32 token log-probabilities. */
  loglikelihood: number
  /** lm-eval's is_greedy: greedy decoding reproduces the continuation. */
  isGreedy: boolean
  /** Per continuation token: log-probability and whether it was the row's argmax. */
  logprobs: Float32Array
  greedy: Uint8Array
  /** Tokens the model saw (len(inp)) and tokens cut from the left of context + continuation. */
  inputLength: number
  truncated: number
}

export interface ScorerOptions {
  /** lm-eval's max_length: the most tokens one request shows the model (default: the loaded context). */
  maxLength?: number
  /**
   * Rows per forward chunk of the scorer's session (default min(maxLength, 512)). Load the model with the
   * same maxBatchTokens so that its memory plan has room for these activations.
   */
  maxBatchTokens?: number
  /** Score on a slot of this session (acquired here, released by dispose()) instead of a session of its own. */
  session?: Session
}

/** What a scorer has run, for speed reports. */
export interface ScorerStats {
  requests: number
  /** Σ len(inp): tokens a plain implementation would run. */
  inputTokens: number
  /** Tokens actually run through the blocks (input less the shared prefixes). */
  computedTokens: number
  /** Continuation tokens scored (rows through the LM head). */
  scoredTokens: number
}

export class Scorer {
  readonly maxLength: number
  readonly stats: ScorerStats = { requests: 0, inputTokens: 0, computedTokens: 0, scoredTokens: 0 }
  private readonly session: Session
  private readonly ownSession: boolean
  private readonly slot: number
  /** The tokens whose keys and values the slot holds, from position 0. */
  private held: number[] = []

  constructor(model: Model, opts: ScorerOptions = {}) {
    const nCtx = model.weights.nCtx
    const L = opts.maxLength ?? nCtx
    if (!Number.isInteger(L) || L < 1 || L > nCtx)
      throw new UsageError({ where: 'Scorer', what: 'max length out of range', expected: `1 .. ${nCtx} (the context the model was loaded with)`, found: show(opts.maxLength) })
    this.maxLength = L
    this.ownSession = opts.session === undefined
    this.session = opts.session ?? model.createSession({ maxBatchTokens: opts.maxBatchTokens ?? Math.min(L, 512) })
    this.slot = this.ownSession ? 0 : this.session.acquire()
  }

  /** Scores one request (token ids). An empty continuation scores 0 without running anything. */
  async score(req: TokenRequest): Promise<ScoreResult> {
    const { context, continuation: cont } = req
    const L = this.maxLength
    if (cont.length === 0) return { loglikelihood: 0, isGreedy: true, logprobs: new Float32Array(0), greedy: new Uint8Array(0), inputLength: 0, truncated: 0 }
    if (context.length === 0) throw new UsageError({ where: 'Scorer.score', what: 'empty context', expected: 'at least one context token (lm-eval conditions on the prefix token)' })
    if (cont.length > L) throw new UsageError({ where: 'Scorer.score', what: 'continuation longer than the max length', expected: `at most ${L} tokens`, found: String(cont.length) })
    const wholeLen = context.length + cont.length
    const truncated = Math.max(0, wholeLen - 1 - L)
    const at = (i: number) => (i < context.length ? context[i] : cont[i - context.length]) // whole[i]
    const inpLen = wholeLen - 1 - truncated
    const inp: number[] = new Array(inpLen)
    for (let i = 0; i < inpLen; i++) inp[i] = at(truncated + i)
    const s = inpLen - cont.length // first scored row

    // the rows before s: only their keys and values, reusing what the slot already holds
    let common = 0
    const held = this.held
    while (common < s && common < held.length && held[common] === inp[common]) common++
    this.held = [] // invalid until the calls below succeed
    if (common < s) await this.session.forward(inp.slice(common, s), common, { slot: this.slot })
    const { logprobs, greedy } = await this.session.logProbs(inp.slice(s), { slot: this.slot, pos: s, targets: cont, greedy: true })
    this.held = inp

    let ll = 0, all = true
    for (let i = 0; i < logprobs.length; i++) {
      ll += logprobs[i]
      if (greedy[i] !== 1) all = false
    }
    const st = this.stats
    st.requests++
    st.inputTokens += inpLen
    st.computedTokens += inpLen - common
    st.scoredTokens += cont.length
    return { loglikelihood: ll, isGreedy: all, logprobs, greedy, inputLength: inpLen, truncated }
  }

  /** Frees the scorer's session (or its slot of the caller's session). */
  dispose(): void {
    if (this.ownSession) this.session.dispose()
    else this.session.release(this.slot)
  }
}
