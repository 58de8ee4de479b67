// The memory a model needs, computed before anything is allocated: the weights (as the device keeps
// them), the KV cache of `sequences` sequences at the context, a session's activations, and GPT-J's
// rotary tables. loadModel refuses (ResourceError) a model that does not fit in the memory available,
// or whose layers a wasm32 memory (4 GiB) cannot hold; `refgpt inspect` prints the same estimate.
//
//   estimateMemory(arch, opts)   the estimate (weights from a dry run of the checkpoint, or from arch and dtype)
//   availableMemory()            free memory (Linux: MemAvailable) bounded by the cgroup limit
//   checkMemory(estimate)        throws the ResourceError

import { readFileSync } from 'node:fs'
import { availableParallelism, freemem } from 'node:os'
import { MAX_STAGED_ROWS, actBytes, gemmScratchBytes } from '@refgpt/wasm'
import type { Storage } from '../device/types.js'
import { ResourceError, UsageError, show } from '../errors.js'
import type { Arch } from './arch.js'
import { runtimeBytes } from './decoder.js'
import { FAMILIES } from './registry.js'
import { WeightReader } from './weights.js'
import type { LoadedCheckpoint } from '../io/index.js'

/**
 * Bytes one wasm32 linear memory can address (a placement group of the wasm device): a layer, with its
 * KV cache and the group's activations, must fit in one.
 */
export const WASM32_MEMORY_BYTES = 2 ** 32
/** The wasm device's default bytes per memory before layers spill into the next (device/wasm.ts). */
export const WASM32_DEFAULT_GROUP_BYTES = 2 ** 32 - (64 << 20)
/** Alignment slack counted per device buffer (the wasm arena aligns every block to 64 bytes). */
export const BUFFER_SLACK_BYTES = 128

/** Weight bytes, elements and device buffers of one part of a model (the shared weights, or one layer). */
export interface PlanPart {
  /** Bytes as the storage types keep them (a device that stores them natively). */
  bytes: number
  /** Elements (a device that keeps every weight as f32, like js, needs 4 bytes each). */
  elements: number
  buffers: number
}

/** What a dry run of the weights counted: the shared weights, each layer, and the largest tensor. */
export interface WeightPlan {
  shared: PlanPart
  layers: PlanPart[]
  /** Elements of the largest checkpoint tensor: its f32 copy (and a transposed one) is on the host while it is placed. */
  largestTensor: number
}

export interface MemoryOptions {
  /** The device name ('wasm', the default, 'js', ...). */
  device?: string
  /** Weight storage when no plan is given (default F32). */
  dtype?: Storage
  /** Positions of the KV cache (default: the model's n_positions). */
  maxContext?: number
  /** Token rows per forward step (default 64, at most the context). */
  maxBatchTokens?: number
  /** Full-context sequences (KV caches) to count (default 1). */
  sequences?: number
  /** wasm: bytes per memory before layers spill into the next (LoadOptions.memoryBytes). */
  memoryBytes?: number
  /** wasm: threads, which size the per-memory matmul scratch (default os.availableParallelism()). */
  threads?: number
  /** Bytes the model may use; overrides the memory available (LoadOptions.maxMemory, --max-memory). */
  maxMemory?: number
  /** The weights as a dry run of the checkpoint counted them (loadModel, inspectModel); else from arch and dtype. */
  plan?: WeightPlan
}

export interface MemoryEstimate {
  device: string
  /** Weights as the device keeps them, with per-buffer alignment slack and GPT-J's rotary tables (one per group). */
  weights: number
  /** KV cache of `sequences` sequences at `maxContext` positions, every layer. */
  kvCache: number
  /** One session's buffers in every placement group, the every-row LM head, and the host copy of the largest tensor while it is placed. */
  activations: number
  /** weights + kvCache + activations */
  total: number
  /** Bytes available: maxMemory when given, else free memory bounded by the cgroup limit. */
  available: number
  availableFrom: 'maxMemory' | 'free memory'
  /** total <= available and every placement group fits in a wasm32 memory. */
  fits: boolean
  maxContext: number
  sequences: number
  /** Placement groups (wasm32 memories) the layers would be spread over (1 on other devices). */
  groups: number
  /** wasm: the first part that one wasm32 memory cannot hold, with the bytes it needs there; else null. */
  tooBigForGroup: { part: string; bytes: number } | null
  /** When it does not fit: the longest context that would (null when none would, or when it fits). */
  fittingContext: number | null
}

/**
 * Free memory: MemAvailable on Linux (os.freemem() elsewhere), bounded by process.constrainedMemory()
 * (the cgroup / container limit) when that is known.
 */
export function availableMemory(): number {
  let free = freemem()
  if (process.platform === 'linux') {
    try {
      const m = /^MemAvailable:\s+(\d+)\s*kB/m.exec(readFileSync('/proc/meminfo', 'latin1'))
      if (m) free = Number(m[1]) * 1024
    } catch {
      // no /proc: os.freemem()
    }
  }
  const constrained = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.()
  if (typeof constrained === 'number' && constrained > 0) free = Math.min(free, constrained)
  return free
}

/** Checks a byte count given by a caller (maxMemory, --max-memory). */
export function checkMaxMemory(maxMemory: unknown, where = 'loadModel'): number | undefined {
  if (maxMemory === undefined) return undefined
  if (typeof maxMemory !== 'number' || !Number.isSafeInteger(maxMemory) || maxMemory < 1)
    throw new UsageError({ where, what: 'bad maxMemory', expected: 'a whole number of bytes >= 1', found: show(maxMemory) })
  return maxMemory
}

/** Counts the weights of `arch` by running its family's loaders on no checkpoint (every tensor as `dtype`). */
export function planFromArch(arch: Arch, dtype: Storage = 'F32'): WeightPlan {
  const family = FAMILIES[arch.family]
  const r = new WeightReader(null as unknown as LoadedCheckpoint, null, '', dtype, true)
  r.vocabRows = arch.nVocab
  r.tiedHead = arch.tiedLmHead
  r.recorder = new Map()
  return planWeights(r, (rr) => family.loadShared(rr, arch), (rr, l) => family.loadLayer(rr, arch, l), arch.nLayer)
}

/** Runs the loaders on a dry-run reader, recording what each part adds. */
export function planWeights(r: WeightReader, shared: (r: WeightReader) => unknown, layer: (r: WeightReader, l: number) => unknown, nLayer: number): WeightPlan {
  const mark = () => ({ bytes: r.bytes, elements: r.elements, buffers: r.buffers })
  const diff = (a: PlanPart, b: PlanPart): PlanPart => ({ bytes: b.bytes - a.bytes, elements: b.elements - a.elements, buffers: b.buffers - a.buffers })
  let before = mark()
  shared(r)
  const sharedPart = diff(before, mark())
  const layers: PlanPart[] = []
  for (let l = 0; l < nLayer; l++) {
    before = mark()
    layer(r, l)
    layers.push(diff(before, mark()))
  }
  return { shared: sharedPart, layers, largestTensor: r.largest }
}

/** The memory `arch` needs on a device (see MemoryEstimate). Allocates nothing. */
export function estimateMemory(arch: Arch, opts: MemoryOptions = {}): MemoryEstimate {
  const plan = opts.plan ?? planFromArch(arch, opts.dtype)
  const available = opts.maxMemory ?? availableMemory()
  const maxContext = opts.maxContext ?? arch.nPositions
  const e = compute(arch, plan, opts, maxContext, available)
  if (!e.fits) {
    // the longest context that fits: every term grows with the context, so a binary search
    let lo = 0, hi = maxContext
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2)
      if (compute(arch, plan, opts, mid, available).fits) lo = mid
      else hi = mid
    }
    e.fittingContext = lo >= 1 ? lo : null
  }
  return e
}

function compute(arch: Arch, plan: WeightPlan, opts: MemoryOptions, maxContext: number, available: number): MemoryEstimate {
  const device = opts.device ?? 'wasm'
  const sequences = opts.sequences ?? 1
  const maxT = Math.min(opts.maxBatchTokens ?? 64, maxContext)
  const C = arch.nEmbd, V = arch.nVocab
  // the js device keeps every weight as f32 values; the others keep the storage type's bytes
  const bytesOf = (p: PlanPart) => (device === 'js' ? 4 * p.elements : p.bytes) + BUFFER_SLACK_BYTES * p.buffers
  const rt = runtimeBytes(arch, maxT, maxContext, sequences)
  const rotary = 4 * maxContext * arch.rotaryDim // [maxContext, rotaryDim / 2, 2] f32, one per group
  const fixed = device === 'wasm' ? wasmMemoryBuffers(arch, opts.threads, opts.dtype) : 0 // per group

  // placement groups, as loadModel's place() and the wasm device's reserve() make them
  let groups = 1
  let tooBigForGroup: MemoryEstimate['tooBigForGroup'] = null
  const sharedBytes = bytesOf(plan.shared)
  let layerBytes = 0
  if (device === 'wasm') {
    const limit = opts.memoryBytes ?? WASM32_DEFAULT_GROUP_BYTES
    let used = sharedBytes + rotary + fixed, promised = rt.activations
    if (used + promised > WASM32_MEMORY_BYTES) tooBigForGroup = { part: 'the embeddings and the LM head, with the activations', bytes: used + promised }
    for (let l = 0; l < plan.layers.length; l++) {
      const w = bytesOf(plan.layers[l])
      layerBytes += w
      // a group always holds something when a layer is placed (the shared weights, or a layer): it spills when full
      if (used + w + rt.kvPerLayer + promised + rotary > limit) {
        groups++
        used = rotary + fixed
        promised = rt.activations
      }
      used += w
      promised += rt.kvPerLayer
      if (!tooBigForGroup && used + promised > WASM32_MEMORY_BYTES) tooBigForGroup = { part: `layer ${l}, with its KV cache`, bytes: used + promised }
    }
  } else {
    for (const p of plan.layers) layerBytes += bytesOf(p)
  }

  const weights = sharedBytes + layerBytes + rotary * groups
  const kvCache = rt.kvPerLayer * arch.nLayer
  const activations =
    (rt.activations + fixed) * groups +
    4 * (C + V) + // the last row and its logits (group 0)
    4 * maxT * (V + 2) + // the every-row head: [maxT, V] logits, log-probabilities, greedy flags
    4 * V * sequences + // each slot's logits on the host
    8 * plan.largestTensor // the host copy of the largest tensor (and its transpose) while it is placed
  const total = weights + kvCache + activations
  return {
    device, weights, kvCache, activations, total, available,
    availableFrom: opts.maxMemory !== undefined ? 'maxMemory' : 'free memory',
    fits: total <= available && tooBigForGroup === null,
    maxContext, sequences, groups, tooBigForGroup, fittingContext: null,
  }
}

/**
 * What the wasm device allocates in every memory before any weight (device/wasm.ts addGroup): the row
 * staging area (i32 ids / positions), the matmul scratch (one prefill panel slot per thread) and, for q8 /
 * q4 weights, the quantized-activation scratch for 64 rows of the widest input (the MLP's second matrix).
 */
export function wasmMemoryBuffers(arch: Arch, threads = availableParallelism(), dtype?: Storage): number {
  const quantized = dtype === 'Q8' || dtype === 'Q4'
  return 4 * MAX_STAGED_ROWS + gemmScratchBytes(threads) + (quantized ? actBytes(64, Math.max(arch.nInner, arch.nEmbd)) : 0) + 3 * BUFFER_SLACK_BYTES
}

/** "1.50 GiB" */
export function formatBytes(b: number): string {
  const KiB = 1024, MiB = KiB * 1024, GiB = MiB * 1024
  if (b >= GiB) return `${(b / GiB).toFixed(2)} GiB`
  if (b >= MiB) return `${(b / MiB).toFixed(1)} MiB`
  if (b >= KiB) return `${(b / KiB).toFixed(1)} KiB`
  return `${b} B`
}

const bytes = (b: number) => `${formatBytes(b)} (${Math.round(b)} bytes)`

/**
 * Throws a ResourceError when the estimate does not fit: the bytes needed with their breakdown, the
 * bytes available, and what to change (a context that would fit, when one would).
 */
export function checkMemory(e: MemoryEstimate, where: string, opts: { dtype?: Storage } = {}): void {
  if (e.fits) return
  const breakdown = `weights ${formatBytes(e.weights)} + KV cache ${formatBytes(e.kvCache)} (${e.maxContext} positions × ${e.sequences} sequence${e.sequences === 1 ? '' : 's'}) + activations ${formatBytes(e.activations)}`
  const context = e.fittingContext !== null ? `--max-context ${e.fittingContext} or less (maxContext)` : 'a smaller --max-context (maxContext)'
  const smaller = e.device === 'js' ? '--device wasm with --dtype bf16 (the js device keeps every weight as f32)'
    : opts.dtype !== 'BF16' && opts.dtype !== 'F16' && opts.dtype !== 'Q8' && opts.dtype !== 'Q4' ? '--dtype bf16 for smaller weights' : ''
  if (e.tooBigForGroup)
    throw new ResourceError({
      where,
      what: `${e.tooBigForGroup.part} does not fit in one wasm32 memory of the ${e.device} device`,
      expected: `at most ${bytes(WASM32_MEMORY_BYTES)} per memory`,
      found: `${bytes(e.tooBigForGroup.bytes)} needed there; the whole model: ${bytes(e.total)} = ${breakdown}`,
      hint: `pass ${[context, smaller].filter(Boolean).join(', or ')}`,
    })
  throw new ResourceError({
    where,
    what: `not enough memory for the model on the ${e.device} device`,
    expected: `at most ${bytes(e.available)} (${e.availableFrom === 'maxMemory' ? 'maxMemory / --max-memory' : 'available: free memory'})`,
    found: `${bytes(e.total)} needed = ${breakdown}`,
    hint: `pass ${[context + ' for a smaller KV cache', smaller, '--max-memory SIZE (maxMemory) if more memory is really free'].filter(Boolean).join(', or ')}`,
  })
}
