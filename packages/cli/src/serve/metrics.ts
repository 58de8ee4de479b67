// A small Prometheus registry for `refgpt serve`'s /metrics: counters, gauges and histograms with label sets,
// rendered in the text exposition format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
// Families render in the order they were registered, series in the order they were first touched, label
// names sorted. A labelled family shows no series until one is touched (inc(labels, 0) makes it show 0).

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

export type Labels = Record<string, string>

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/

/** A sample value: integers in full without an exponent, +Inf, -Inf, NaN; other numbers as JavaScript prints them (Go's ParseFloat reads those). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Infinity) return '+Inf'
  if (v === -Infinity) return '-Inf'
  if (Number.isInteger(v)) return BigInt(v).toString()
  return String(v)
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

/** The canonical form of a label set, `{a="x",b="y"}` (names sorted), or '' for none; also the series key. */
function labelText(labels: Labels | undefined, metric: string): string {
  if (labels === undefined) return ''
  const names = Object.keys(labels).sort()
  if (names.length === 0) return ''
  const parts: string[] = []
  for (const k of names) {
    if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new Error(`metric ${metric}: invalid label name ${JSON.stringify(k)}`)
    const v = labels[k]
    if (typeof v !== 'string') throw new Error(`metric ${metric}: label ${k} must be a string (found ${typeof v})`)
    parts.push(`${k}="${escapeLabel(v)}"`)
  }
  return `{${parts.join(',')}}`
}

/** Adds `le="…"` to a rendered label set. */
function withLe(labels: string, le: string): string {
  const l = `le="${le}"`
  return labels === '' ? `{${l}}` : `${labels.slice(0, -1)},${l}}`
}

interface Family {
  name: string
  help: string
  type: 'counter' | 'gauge' | 'histogram'
  render(): string[]
}

/** inc(v) / inc(labels, v): the overloads' arguments, sorted out. */
function args(a: Labels | number | undefined, b: number | undefined, def: number | undefined): [Labels | undefined, number] {
  if (typeof a === 'number') return [undefined, a]
  const v = b ?? def
  if (v === undefined) throw new Error('a metric value is required')
  return [a, v]
}

class Values {
  readonly series = new Map<string, number>()
  constructor(readonly name: string) {}
  add(labels: Labels | undefined, v: number): void {
    const k = labelText(labels, this.name)
    this.series.set(k, (this.series.get(k) ?? 0) + v)
  }
  set(labels: Labels | undefined, v: number): void {
    this.series.set(labelText(labels, this.name), v)
  }
  get(labels?: Labels): number {
    return this.series.get(labelText(labels, this.name)) ?? 0
  }
  render(): string[] {
    return [...this.series].map(([k, v]) => `${this.name}${k} ${formatValue(v)}`)
  }
}

export class Counter {
  /** @internal */
  readonly values: Values
  constructor(name: string) {
    this.values = new Values(name)
  }
  /** Adds v (default 1; never negative: a counter only goes up). */
  inc(v?: number): void
  inc(labels: Labels | undefined, v?: number): void
  inc(a?: Labels | number, b?: number): void {
    const [labels, v] = args(a, b, 1)
    if (!(v >= 0)) throw new Error(`counter ${this.values.name}: cannot add ${v} (a counter only goes up)`)
    this.values.add(labels, v)
  }
  get(labels?: Labels): number {
    return this.values.get(labels)
  }
}

export class Gauge {
  /** @internal */
  readonly values: Values
  constructor(name: string) {
    this.values = new Values(name)
  }
  set(v: number): void
  set(labels: Labels | undefined, v: number): void
  set(a: Labels | number | undefined, b?: number): void {
    const [labels, v] = args(a, b, undefined)
    this.values.set(labels, v)
  }
  inc(v?: number): void
  inc(labels: Labels | undefined, v?: number): void
  inc(a?: Labels | number, b?: number): void {
    const [labels, v] = args(a, b, 1)
    this.values.add(labels, v)
  }
  dec(v?: number): void
  dec(labels: Labels | undefined, v?: number): void
  dec(a?: Labels | number, b?: number): void {
    const [labels, v] = args(a, b, 1)
    this.values.add(labels, -v)
  }
  get(labels?: Labels): number {
    return this.values.get(labels)
  }
}

interface HistogramSeries {
  /** Per bucket (not cumulative), the last one +Inf. */
  counts: number[]
  sum: number
  count: number
}

export class Histogram {
  readonly buckets: readonly number[]
  private readonly series = new Map<string, HistogramSeries>()
  constructor(readonly name: string, buckets: readonly number[]) {
    const b = buckets.filter((x) => x !== Infinity)
    for (let i = 0; i < b.length; i++)
      if (!Number.isFinite(b[i]) || (i > 0 && !(b[i] > b[i - 1])))
        throw new Error(`histogram ${name}: buckets must be finite and increasing (found ${b.join(', ')})`)
    this.buckets = b
  }
  observe(v: number): void
  observe(labels: Labels | undefined, v: number): void
  observe(a: Labels | number | undefined, b?: number): void {
    const [labels, v] = args(a, b, undefined)
    if (labels !== undefined && Object.hasOwn(labels, 'le')) throw new Error(`histogram ${this.name}: the label name le is reserved`)
    const k = labelText(labels, this.name)
    let s = this.series.get(k)
    if (s === undefined) this.series.set(k, (s = { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 }))
    let i = 0
    while (i < this.buckets.length && !(v <= this.buckets[i])) i++
    s.counts[i]++
    s.sum += v
    s.count++
  }
  /** @internal */
  render(): string[] {
    const out: string[] = []
    for (const [k, s] of this.series) {
      let cum = 0
      for (let i = 0; i <= this.buckets.length; i++) {
        cum += s.counts[i]
        out.push(`${this.name}_bucket${withLe(k, i < this.buckets.length ? formatValue(this.buckets[i]) : '+Inf')} ${cum}`)
      }
      out.push(`${this.name}_sum${k} ${formatValue(s.sum)}`, `${this.name}_count${k} ${s.count}`)
    }
    return out
  }
}

export class Metrics {
  private readonly families: Family[] = []

  private add<T>(name: string, help: string, type: Family['type'], metric: T, render: () => string[]): T {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`)
    if (this.families.some((f) => f.name === name)) throw new Error(`metric ${name} is already registered`)
    this.families.push({ name, help, type, render })
    return metric
  }

  counter(name: string, help: string): Counter {
    const c = new Counter(name)
    return this.add(name, help, 'counter', c, () => c.values.render())
  }

  gauge(name: string, help: string): Gauge {
    const g = new Gauge(name)
    return this.add(name, help, 'gauge', g, () => g.values.render())
  }

  /** `buckets`: the upper bounds, increasing; +Inf is added. */
  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    const h = new Histogram(name, buckets)
    return this.add(name, help, 'histogram', h, () => h.render())
  }

  /** The whole registry in the text format (serve it with PROMETHEUS_CONTENT_TYPE); ends with a newline. */
  render(): string {
    const lines: string[] = []
    for (const f of this.families) lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`, ...f.render())
    return lines.length === 0 ? '' : lines.join('\n') + '\n'
  }
}
