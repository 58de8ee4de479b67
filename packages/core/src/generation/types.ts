// What generate() and beam search return (shared by both, so neither imports the other's module).

import type { GenerationConfig } from './config.js'

export interface GeneratedSequence {
  /** HF layout: left padding + prompt + new tokens (+ pad after an early finish in a batch). */
  ids: number[]
  /** This row's new tokens (no padding). */
  newTokens: number[]
  /** Index of the first real token in `ids` (the left padding before it). */
  start: number
  finishReason: 'eos' | 'length' | 'stop_string'
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
  finishReason: GeneratedSequence['finishReason']
}
