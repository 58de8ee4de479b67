// refgpt bench --profile: where a decoded token's time goes on the wasm device. While it is attached, every
// split-kernel call of the core (core.run: the matmuls, attention, logprobs ...) is timed on the main thread
// — from the dispatch to the last worker's done, so a call's time includes the wait for the slowest thread —
// and summed by kernel and shape. What is left of the decode time is "other": the host's work between
// calls, the single-thread kernels (layer norms, activations, residual adds, the activations' q8
// quantization, the embedding, the KV-cache writes) and split kernels too small for the pool, which the
// device runs on the calling thread without core.run (device/wasm.ts `split`: attention over a short context).
//
// A matmul's bandwidth is its weight bytes (storageBytes of [N, K] in its storage: the count the model's
// decodeBytesPerToken uses) over its time: the figure to hold beside the stream probe, kernel by kernel.
import { storageBytes, type Storage, type WasmDevice } from '@refgpt/core'

type Core = WasmDevice['core']

/** Per matmul kernel: the argument slot of K (after the split range), and the storage it reads. */
const MATMULS: Record<string, { k: number; storage: Storage }> = {
  matmul_f32: { k: 5, storage: 'F32' },
  matmul_f32g: { k: 5, storage: 'F32' },
  matmul_f16: { k: 5, storage: 'F16' },
  matmul_bf16: { k: 5, storage: 'BF16' },
  matmul_q8: { k: 6, storage: 'Q8' },
  matmul_q4: { k: 6, storage: 'Q4' },
}

interface Entry { kernel: string; k: number | null; rows: number; calls: number; ms: number }

export interface ProfileRow {
  kernel: string
  /** The matmul's K (its N is `rows`); null for other kernels. */
  k: number | null
  rows: number
  calls_per_token: number
  ms_per_token: number
  share: number
  /** Weight bytes streamed / time (matmuls only). */
  gb_per_s: number | null
}

export interface Profile {
  tokens: number
  ms_per_token: number
  rows: ProfileRow[]
  /** Decode time outside split-kernel calls, per token. */
  other_ms_per_token: number
  other_share: number
}

/**
 * Times every core.run call until detach(). The table is keyed by kernel and shape and filled in
 * place (a shape's first call adds its entry; later calls only add to it).
 */
export function attachProfiler(core: Core): { detach(): void; entries: Entry[] } {
  const run = core.run
  const entries: Entry[] = []
  const byKernel = new Map<string, Map<number, Entry>>() // kernel -> K * 2^32 + rows -> entry
  core.run = function (m, name, nArgs, rows) {
    const t0 = performance.now()
    run.call(core, m, name, nArgs, rows)
    const ms = performance.now() - t0
    const mm = MATMULS[name]
    const k = mm ? core.args[mm.k] : null
    let shapes = byKernel.get(name)
    if (!shapes) byKernel.set(name, (shapes = new Map()))
    const key = (k ?? 0) * 2 ** 32 + rows
    let e = shapes.get(key)
    if (!e) shapes.set(key, (e = { kernel: name, k, rows, calls: 0, ms: 0 })), entries.push(e)
    e.calls++
    e.ms += ms
  }
  return { entries, detach: () => void (core.run = run) }
}

const round = (x: number) => Math.round(x * 1000) / 1000

/** The entries as per-token rows (the slowest first) and the rest of the decode time. */
export function summarize(entries: Entry[], tokens: number, decodeMs: number): Profile {
  const rows = entries
    .map((e) => {
      const mm = MATMULS[e.kernel]
      const bytes = mm && e.k !== null ? storageBytes([e.rows, e.k], mm.storage) * e.calls : null
      return {
        kernel: e.kernel, k: e.k, rows: e.rows,
        calls_per_token: round(e.calls / tokens),
        ms_per_token: round(e.ms / tokens),
        share: round(e.ms / decodeMs),
        gb_per_s: bytes === null ? null : round(bytes / (e.ms * 1e6)),
      }
    })
    .sort((a, b) => b.ms_per_token - a.ms_per_token)
  const inCalls = entries.reduce((s, e) => s + e.ms, 0)
  return { tokens, ms_per_token: round(decodeMs / tokens), rows, other_ms_per_token: round((decodeMs - inCalls) / tokens), other_share: round((decodeMs - inCalls) / decodeMs) }
}

/** The profile as text lines under the bench's summary. */
export function profileLines(p: Profile): string[] {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`
  const lines = [`profile     ${p.tokens} more decoded tokens, timed call by call: ${p.ms_per_token} ms a token`]
  for (const r of p.rows) {
    const shape = r.k === null ? `rows=${r.rows}` : `K=${r.k} N=${r.rows}`
    lines.push(`            ${r.kernel.padEnd(12)} ${shape.padEnd(16)} x${String(r.calls_per_token).padEnd(4)} ${r.ms_per_token.toFixed(3).padStart(8)} ms ${pct(r.share).padStart(7)}${r.gb_per_s === null ? '' : `  ${r.gb_per_s.toFixed(1)} GB/s`}`)
  }
  lines.push(`            ${'other'.padEnd(12)} ${'(host, 1 thread)'.padEnd(16)} ${''.padEnd(5)} ${p.other_ms_per_token.toFixed(3).padStart(8)} ms ${pct(p.other_share).padStart(7)}`)
  return lines
}
