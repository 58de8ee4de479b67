// What generate() and beam search return (shared by both, so neither imports the other's module).

import type { GenerationConfig } from './config.js'

/**
 * Why a sequence ended:
 *   'eos'         it produced an eos id (with beam search: also a hypothesis closed before the limit);
 *   'stop_string' a stop string was completed;
 *   'length'      the requested length was reached (max_new_tokens, else max_length: HF's meaning);
 *   'context'     the model's context (model.info.maxContext, positions) ran out before the requested length.
 */
export type FinishReason = 'eos' | 'length' | 'stop_string' | 'context'

export interface GeneratedSequence {
  /** HF layout: left padding + prompt + new tokens (+ pad after an early finish in a batch). */
  ids: number[]
  /** This row's new tokens (no padding). */
  newTokens: number[]
  /** Index of the first real token in `ids` (the left padding before it). */
  start: number
  finishReason: FinishReason
  /** Beam search: the length-normalised score (HF sequences_scores). */
  score?: number
  /** Which prompt this row continues. */
  prompt: number
}

export interface GenerateResult {
  sequences: GeneratedSequence[]
  config: GenerationConfig
  /** The sampling seed used (given or drawn), null without sampling. */
  seed: number | null
  timings: { prefillMs: number; decodeMs: number; promptTokens: number; newTokens: number }
  // single-prompt convenience (the first sequence)
  ids: number[]
  newTokens: number[]
  finishReason: FinishReason
}

/**
 * A generation a scheduler can advance together with others in one shared Session (continuous
 * batching): each step, wants() names the rows that need a forward (slot, last token, its position),
 * the scheduler runs them all in one Session.step(), then choose() picks every unfinished row's next
 * token from its slot's logits. Generation (transformers' semantics) and ModelscopeGeneration implement it.
 */
export interface Stepper {
  /** Every row has finished. */
  readonly done: boolean
  /** Calls need(slot, id, pos) for each row whose next token needs a forward of id at pos first. */
  wants(need: (slot: number, id: number, pos: number) => void): void
  /** Chooses the next token of every unfinished row (after the forwards wants() asked for). */
  choose(): void
  /** Releases the rows' slots. Idempotent. */
  close(): void
}
