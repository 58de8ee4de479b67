// Greedy generation with Hugging Face generate() semantics for do_sample=False, num_beams=1:
// argmax of the raw logits (first index on ties), stop after emitting an eos id (it is included),
// or at max_new_tokens / max_length (which counts the prompt; HF's default is 20 when nothing sets it).
// The token loop allocates nothing: forward() returns a reused logits buffer and ids go into a
// preallocated Int32Array.

import { UsageError, show } from '../errors.js'
import type { Model } from '../models/model.js'

export interface GenerateOptions {
  /** New tokens to generate at most (overrides maxLength). */
  maxNewTokens?: number
  /** Total length (prompt + new) at most; HF's default 20 applies when neither is given. */
  maxLength?: number
  /** Stop ids; default: the model's generation_config.json / config.json eos_token_id. null disables. */
  eosTokenId?: number | number[] | null
  /** Called with each new token id as soon as it is chosen. */
  onToken?: (id: number) => void
}

export interface GenerateResult {
  /** Prompt + new tokens. */
  ids: number[]
  newTokens: number[]
  finishReason: 'eos' | 'length' | 'context'
  timings: { prefillMs: number; decodeMs: number; promptTokens: number; newTokens: number }
}

/** Index of the largest value (the first one on ties), like torch.argmax. */
export function argmax(x: Float32Array, n = x.length): number {
  let best = 0
  for (let i = 1; i < n; i++) if (x[i] > x[best]) best = i
  return best
}

/** The eos ids generate() would use: explicit option, else generation_config.json, else config.json. */
export function defaultEos(model: Model, explicit?: number | number[] | null): number[] {
  const v = explicit !== undefined ? explicit : (model.generationConfig?.eos_token_id as number | number[] | null | undefined) ?? model.arch.eosTokenId
  if (v === null || v === undefined) return []
  return Array.isArray(v) ? v : [v]
}

export function generate(model: Model, prompt: ArrayLike<number>, opts: GenerateOptions = {}): GenerateResult {
  const nPrompt = prompt.length
  if (nPrompt === 0) throw new UsageError({ where: 'generate', what: 'empty prompt', expected: 'at least one token id', found: '0 ids', hint: 'pass a prompt, or --prompt-ids with the bos id' })
  const maxNew = newTokenBudget(nPrompt, opts)
  const eos = defaultEos(model, opts.eosTokenId)
  const room = Math.max(0, model.info.maxContext - nPrompt)
  const budget = Math.min(maxNew, room)
  const ids = new Int32Array(nPrompt + budget)
  for (let i = 0; i < nPrompt; i++) ids[i] = prompt[i]
  const step = new Int32Array(1) // the one token fed back each step

  const t0 = performance.now()
  let logits = model.forward(prompt, 0)
  const t1 = performance.now()
  let n = nPrompt
  let finishReason: GenerateResult['finishReason'] = budget < maxNew ? 'context' : 'length'
  while (n - nPrompt < budget) {
    const next = argmax(logits, model.arch.nVocab)
    ids[n++] = next
    opts.onToken?.(next)
    if (eos.includes(next)) {
      finishReason = 'eos'
      break
    }
    if (n - nPrompt === budget) break
    step[0] = next
    logits = model.forward(step, n - 1)
  }
  const t2 = performance.now()
  const all = Array.from(ids.subarray(0, n))
  return {
    ids: all,
    newTokens: all.slice(nPrompt),
    finishReason,
    timings: { prefillMs: t1 - t0, decodeMs: t2 - t1, promptTokens: nPrompt, newTokens: n - nPrompt },
  }
}

function newTokenBudget(nPrompt: number, o: GenerateOptions): number {
  const check = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new UsageError({ where: 'generate', what: `bad ${name}`, expected: `an integer >= ${min}`, found: show(v) })
  }
  if (o.maxNewTokens !== undefined) {
    check('maxNewTokens', o.maxNewTokens, 0)
    return o.maxNewTokens
  }
  const maxLength = o.maxLength ?? 20
  check('maxLength', maxLength, 1)
  return Math.max(0, maxLength - nPrompt)
}
