// What every Session implementation shares (DecoderSession in decoder.ts, OrtSession in offload/ort.ts):
// the table of KV-cache slots a session hands out, and the checks of step()'s and logProbs()' arguments,
// so that both refuse the same input with the same one-line error.

import { UsageError, show } from '../errors.js'

/** Slots by index: acquire takes the first free index, release frees it. */
export class SlotTable<T> {
  private readonly items: (T | null)[] = []

  /** Stores `item` at the first free index and returns that index. */
  add(item: T): number {
    let i = this.items.indexOf(null)
    if (i < 0) i = this.items.push(null) - 1
    this.items[i] = item
    return i
  }

  /** The slot at index i, or a UsageError naming the acquired ones. */
  get(i: number, where: string): T {
    const sl = Number.isInteger(i) ? this.items[i] : undefined
    if (!sl) throw new UsageError({ where, what: 'no such slot in this session', expected: `an acquired slot (${this.indices().join(', ') || 'none'})`, found: show(i) })
    return sl
  }

  remove(i: number): void {
    this.items[i] = null
  }

  /** Indices of the acquired slots. */
  indices(): number[] {
    const out: number[] = []
    for (let i = 0; i < this.items.length; i++) if (this.items[i] !== null) out.push(i)
    return out
  }

  get inUse(): number {
    return this.indices().length
  }
}

/**
 * step()'s checks before anything runs: n rows in each array, each slot (looked up by `slot`) at most once,
 * ids in the vocabulary, positions inside the context. Returns the rows' slots.
 */
export function checkStep<T>(slots: ArrayLike<number>, ids: ArrayLike<number>, positions: ArrayLike<number>, n: number,
  slot: (i: number) => T, nVocab: number, nCtx: number, into: T[] = []): T[] {
  if (!Number.isInteger(n) || n < 0 || n > slots.length || n > ids.length || n > positions.length)
    fail('step', 'slots, ids and positions hold fewer than n rows', `n <= ${Math.min(slots.length, ids.length, positions.length)}`, show(n))
  into.length = 0
  for (let b = 0; b < n; b++) {
    const sl = slot(slots[b])
    if (into.includes(sl)) fail('step', `slot ${slots[b]} appears twice`, 'each slot at most once per step', `rows ${into.indexOf(sl)} and ${b}`)
    into.push(sl)
  }
  for (let b = 0; b < n; b++) {
    const id = ids[b]
    if (!Number.isInteger(id) || id < 0 || id >= nVocab) fail('step', `token id at index ${b} out of range`, `0 .. ${nVocab - 1}`, show(id))
    const p = positions[b]
    if (!Number.isInteger(p) || p < 0 || p >= nCtx) fail('step', `position of row ${b} out of range`, `0 .. ${nCtx - 1} (the context)`, show(p))
  }
  return into
}

/**
 * logProbs()' rows and targets: with no targets given, the rows are ids[0 .. n-1) and the targets ids[1 ..]
 * (null when there are fewer than two ids: nothing to score). Targets are checked against the vocabulary.
 */
export function scoredRows(ids: ArrayLike<number>, targets: ArrayLike<number> | undefined, nVocab: number): { run: ArrayLike<number>; targets: ArrayLike<number> } | null {
  let run = ids
  if (targets === undefined) {
    if (ids.length < 2) return null
    run = Array.prototype.slice.call(ids, 0, ids.length - 1) as number[]
    targets = Array.prototype.slice.call(ids, 1) as number[]
  } else if (targets.length !== ids.length) {
    throw new UsageError({ where: 'logProbs', what: 'targets and ids differ in length', expected: String(ids.length), found: String(targets.length) })
  }
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i]
    if (!Number.isInteger(t) || t >= nVocab) fail('logProbs', `target at index ${i} out of range`, `an integer < ${nVocab} (negative: none)`, show(t))
  }
  return { run, targets }
}

function fail(where: string, what: string, expected: string, found: string): never {
  throw new UsageError({ where, what, expected, found })
}
