// Scoring a task's items on a model: what `refgpt eval` (one process or a shard) and `refgpt worker`
// (a queue chunk) both run.

import { setTimeout as sleep } from 'node:timers/promises'
import { Scorer, loadModel, scoreItem, type EvalDoc, type EvalModelSpec, type EvalPart, type EvalTask, type ItemResult, type DeviceName, type Model, type RunOptions, type Storage } from '@refgpt/core'

/** Loads a model as a run's config says (device, dtype, variant, max length, batch tokens). */
export function loadForEval(dir: string, spec: Pick<EvalModelSpec, 'device' | 'dtype' | 'variant'>, threads: number | undefined, maxLength: number, batchTokens: number, access: { maxMemory?: number; followSymlinks?: boolean; onProgress?: (loadedBytes: number, totalBytes: number) => void } = {}): Promise<Model> {
  return loadModel(dir, {
    device: spec.device as DeviceName, threads, dtype: (spec.dtype ?? undefined) as Storage | undefined, variant: spec.variant ?? undefined,
    maxContext: maxLength, maxBatchTokens: batchTokens, maxMemory: access.maxMemory, followSymlinks: access.followSymlinks, onProgress: access.onProgress,
  })
}

export function evalScorer(model: Model, maxLength: number, batchTokens: number): Scorer {
  return new Scorer(model, { maxLength, maxBatchTokens: batchTokens })
}

/**
 * Scores `docs` in order; returns their results, the seconds taken and what the scorer ran for them.
 * `delayMs` waits after each item (testing: a worker that is slow enough to be killed mid-chunk).
 */
export async function scoreDocs(scorer: Scorer, task: EvalTask, docs: readonly EvalDoc[], opts: RunOptions & { delayMs?: number }): Promise<EvalPart> {
  const before = { ...scorer.stats }
  const t0 = performance.now()
  const items: ItemResult[] = []
  for (const doc of docs) {
    const r = await scoreItem(scorer, task, doc, opts)
    items.push(r)
    opts.onItem?.(r, items.length, docs.length)
    if (opts.delayMs) await sleep(opts.delayMs)
  }
  const s = scorer.stats
  return {
    items,
    seconds: (performance.now() - t0) / 1000,
    stats: { requests: s.requests - before.requests, inputTokens: s.inputTokens - before.inputTokens, computedTokens: s.computedTokens - before.computedTokens, scoredTokens: s.scoredTokens - before.scoredTokens },
  }
}
