// What `refgpt eval` prints, whichever way the items were scored (one process, merged shards, a queue):
// the metrics table (or one JSON object), the speed line, --log-samples rows, and the progress bar.

import {
  aggregate, lambadaSplit,
  type ChoiceDoc, type EvalDoc, type EvalPart, type EvalTask, type ItemResult, type ScorerStats, type TaskResult, type TextDoc,
} from '@refgpt/core'
import { writeUserFile } from '../commands/common.js'
import { bar, clearLine, redraw, type Out } from '../progress.js'

/** A task's per-item results from one or more processes, with their speed (seconds, scorer stats) summed. */
export interface TaskRun extends EvalPart {
  task: EvalTask
  file: string
}

export interface RunHeader {
  /** The model folder as given. */
  model: string
  device: string
  /** null when several processes scored (shards, queue workers). */
  threads: number | null
  maxLength: number
  prefixToken: number
  bootstrapIters: number
  limit: number | null
  /** What ran the items, for the speed line: "2 threads", "3 shards", "10 chunks on 3 workers". */
  how: string
  /** Extra top-level JSON fields (shards, queue). */
  extra?: Record<string, unknown>
}

/** Aggregates each task's items (lm-eval's metrics) and prints the table and speed line, or one JSON object. */
export function report(h: RunHeader, runs: readonly TaskRun[], json: boolean): void {
  const done: { r: TaskRun; agg: TaskResult }[] = runs.map((r) => ({ r, agg: aggregate(r.task, r.items, { bootstrapIters: h.bootstrapIters }) }))
  const total = runs.reduce((a, r) => ({ seconds: a.seconds + r.seconds, n: a.n + r.items.length, stats: addStats(a.stats, r.stats) }),
    { seconds: 0, n: 0, stats: { requests: 0, inputTokens: 0, computedTokens: 0, scoredTokens: 0 } as ScorerStats })
  if (json) {
    const out = {
      model: h.model,
      device: h.device,
      threads: h.threads,
      max_length: h.maxLength,
      prefix_token: h.prefixToken,
      bootstrap_iters: h.bootstrapIters,
      limit: h.limit,
      ...h.extra,
      tasks: Object.fromEntries(done.map(({ r, agg }) => [agg.task, {
        kind: agg.kind,
        ...taskConfig(r.task),
        file: r.file,
        n: agg.n,
        metrics: Object.fromEntries(Object.entries(agg.metrics).map(([k, m]) => [k, { value: m.value, stderr: m.stderr }])),
        totals: agg.totals,
        speed: speed({ seconds: r.seconds, stats: r.stats, n: agg.n }),
      }])),
      speed: speed(total),
    }
    process.stdout.write(JSON.stringify(out) + '\n')
    return
  }
  const rows: string[][] = [['Task', 'Metric', '', 'Value', '', 'Stderr', 'n']]
  for (const { agg } of done) {
    for (const [name, m] of Object.entries(agg.metrics)) {
      rows.push([agg.task, name, m.higherIsBetter ? '↑' : '↓', m.value.toFixed(4), '±', m.stderr === null ? 'N/A' : m.stderr.toFixed(4), String(agg.n)])
    }
  }
  process.stdout.write(table(rows, [false, false, false, true, false, true, true]))
  const t = speed(total)
  process.stdout.write(
    `\n${h.device}, ${h.how}, max length ${h.maxLength}: ${t.items} item${t.items === 1 ? '' : 's'} in ${t.seconds} s (${t.items_per_s} items/s); ` +
    `${t.input_tokens} input tokens (${t.computed_tokens} run, the rest shared prefixes) at ${t.input_tokens_per_s} tok/s, ${t.scored_tokens} scored at ${t.scored_tokens_per_s} tok/s\n`,
  )
}

export function addStats(a: ScorerStats, b: ScorerStats): ScorerStats {
  return { requests: a.requests + b.requests, inputTokens: a.inputTokens + b.inputTokens, computedTokens: a.computedTokens + b.computedTokens, scoredTokens: a.scoredTokens + b.scoredTokens }
}

function speed(x: { seconds: number; stats: ScorerStats; n: number }) {
  return {
    items: x.n,
    seconds: round(x.seconds, 3),
    items_per_s: round(x.n / x.seconds, 3),
    requests: x.stats.requests,
    input_tokens: x.stats.inputTokens,
    computed_tokens: x.stats.computedTokens,
    scored_tokens: x.stats.scoredTokens,
    input_tokens_per_s: round(x.stats.inputTokens / x.seconds, 1),
    scored_tokens_per_s: round(x.stats.scoredTokens / x.seconds, 1),
  }
}

function taskConfig(task: EvalTask): Record<string, unknown> {
  if (task.kind === 'perplexity') return { mode: task.mode, ...(task.stride !== undefined ? { stride: task.stride } : {}), detokenize: task.detokenize ?? null }
  if (task.kind === 'choice') return { format: task.format }
  return {}
}

/** --log-samples: one JSON line per item (the task, the item's place in its file, what was asked, its result). */
export function writeSamples(file: string, runs: readonly { task: EvalTask; docs: readonly EvalDoc[]; items: readonly ItemResult[] }[]): void {
  const lines: string[] = []
  for (const r of runs) {
    const byIndex = new Map(r.docs.map((doc) => [doc.index, doc]))
    for (const it of r.items) lines.push(JSON.stringify(sampleRow(r.task, byIndex.get(it.index)!, it)))
  }
  writeUserFile(file, lines.join('\n') + (lines.length ? '\n' : ''))
}

function sampleRow(task: EvalTask, doc: EvalDoc, r: ItemResult): Record<string, unknown> {
  const head: Record<string, unknown> = { task: task.name, index: r.index, ...(doc.line !== undefined ? { line: doc.line } : {}) }
  if (task.kind === 'lambada') {
    Object.assign(head, lambadaSplit((doc as TextDoc).text))
  } else if (task.kind === 'choice') {
    Object.assign(head, { requests: (doc as ChoiceDoc).requests })
  }
  const { kind: _kind, index: _index, ...rest } = r
  return { ...head, ...rest }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits
  return Number.isFinite(x) ? Math.round(x * f) / f : x
}

/** A Markdown table, columns padded (what lm-eval and the model cards print). */
function table(rows: string[][], right: boolean[]): string {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => [...r[c]].length)))
  const cell = (s: string, c: number) => (right[c] ? s.padStart(w[c]) : s.padEnd(w[c]))
  const line = (r: string[]) => `|${r.map((s, c) => cell(s, c)).join('|')}|`
  const rule = `|${w.map((n, c) => (right[c] ? '-'.repeat(Math.max(1, n - 1)) + ':' : '-'.repeat(n))).join('|')}|`
  return [line(rows[0]), rule, ...rows.slice(1).map(line)].join('\n') + '\n'
}

/** Items (perplexity: windows; queue: chunks) done, per second, and ETA on stderr: a bar redrawn in place on a terminal, a line per 10 % otherwise. */
export class Progress {
  private name = ''
  private unit = 'items'
  private total = 0
  private t0 = 0
  private last = 0
  private shown = 0

  constructor(private readonly tty: boolean, private readonly out: Out = process.stderr) {}

  start(name: string, total: number, unit: string): void {
    this.name = name
    this.unit = unit
    this.total = total
    this.t0 = performance.now()
    this.last = this.t0
    this.shown = 0
    if (this.tty) this.draw(0)
  }

  update(done: number): void {
    const now = performance.now()
    if (this.tty) {
      if (now - this.last >= 100 || done === this.total) this.draw(done)
      return
    }
    // plain lines (a log file): at most one per 10 % and per 2 s, and the last one
    const decile = Math.floor((10 * done) / this.total)
    if ((decile > this.shown && now - this.last >= 2000) || done === this.total) {
      this.shown = decile
      this.last = now
      this.out.write(`${this.status(done)}\n`)
    }
  }

  end(): void {
    if (this.tty) clearLine(this.out)
  }

  private status(done: number): string {
    const s = (performance.now() - this.t0) / 1000
    const rate = done / Math.max(s, 1e-9)
    const eta = done > 0 ? (this.total - done) / rate : NaN
    const unit = this.total === 1 ? this.unit.replace(/s$/, '') : this.unit
    return `${this.name}: ${done}/${this.total} ${unit}, ${done > 0 ? rate.toFixed(rate < 10 ? 2 : 1) : '-'} ${this.unit}/s, ETA ${Number.isFinite(eta) ? clock(eta) : '-'}`
  }

  private draw(done: number): void {
    this.last = performance.now()
    redraw(this.out, `${bar(done / Math.max(1, this.total), 24)} ${this.status(done)}`)
  }
}

function clock(s: number): string {
  const t = Math.round(s), h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60
  return `${h > 0 ? `${h}:${String(m).padStart(2, '0')}` : m}:${String(sec).padStart(2, '0')}`
}
