// Tracing from the outside: the hook's types (defined beside the forward, models/tracing.ts) and a
// tracer that collects what a forward pass shows.

import type { TraceEvent, Tracer } from '../models/tracing.js'

export type { TraceEvent, Tracer } from '../models/tracing.js'

export interface CollectedTrace {
  tracer: Tracer
  /** Filled by settle(): each event's data, keyed by name (rows of several forward calls are not merged). */
  tensors: Map<string, TraceEvent & { data: Float32Array }>
  /** Waits for every snapshot taken so far to reach the host and fills `tensors`. */
  settle(): Promise<Map<string, TraceEvent & { data: Float32Array }>>
}

/** A tracer that snapshots every event (or those `filter` keeps); await settle() after the forward. */
export function collectTrace(filter?: (name: string) => boolean): CollectedTrace {
  const tensors = new Map<string, TraceEvent & { data: Float32Array }>()
  const pending: { e: TraceEvent; data: Promise<Float32Array> }[] = []
  const tracer: Tracer = (e) => {
    if (!filter || filter(e.name)) pending.push({ e, data: e.read() })
  }
  const settle = async () => {
    for (const { e, data } of pending.splice(0)) tensors.set(e.name, { ...e, data: await data })
    return tensors
  }
  return { tracer, tensors, settle }
}
