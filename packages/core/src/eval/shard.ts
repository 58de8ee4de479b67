// Evaluation beyond one process: which items a shard scores, the shard result file, and merging shard
// files into exactly the numbers of one run (per-item results carry their index and float64 sums, and
// aggregate() computes every metric from the items alone, in index order).
//
// Shard file (JSON, written by `refgpt eval --shard I/N --out FILE`, read by `refgpt eval merge`):
//
//   { "format": "refgpt-eval-shard", "version": 1,
//     "shard": { "index": I, "count": N },                         0-based: shards 0/N .. N-1/N
//     "config": EvalRunConfig,                                      everything that affects the numbers
//     "threads": T,                                                 the process's thread count (speed only)
//     "results": [ { "task": NAME, "items": [ItemResult ...], "seconds": S, "stats": ScorerStats } ... ] }
//
// `results` follows `config.tasks`; numbers that JSON cannot hold (NaN, ±Infinity) are written as the
// strings "NaN", "Infinity", "-Infinity". Shards of one run have equal configs except for the paths
// (`config.model.path`, `config.tasks[].file`): the model is identified by its fingerprint and each data
// file by the SHA-256 of its contents, so shards may run on machines that keep them in other folders.

import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { UsageError, show } from '../errors.js'
import { inspectModel } from '../models/model.js'
import type { ItemResult } from './evaluate.js'
import type { ScorerStats } from './scorer.js'
import { CHOICE_FORMATS, type ChoiceDoc, type EvalDoc, type EvalTask, type TextDoc } from './tasks.js'

export const SHARD_FORMAT = 'refgpt-eval-shard'
export const SHARD_VERSION = 1

/** The model a run scores with: where it is, what it is (fingerprint), and how it is run. */
export interface EvalModelSpec {
  path: string
  /** modelFingerprint(): config, tokenizer files, checkpoint file names and sizes. */
  fingerprint: string
  device: string
  dtype: string | null
  variant: string | null
}

export interface EvalRunTask {
  task: EvalTask
  file: string
  /** SHA-256 (hex) of the data file's contents. */
  dataSha256: string
  /** Items of the task in the run (after --limit). */
  items: number
}

/** Every option of a run that affects its numbers. */
export interface EvalRunConfig {
  model: EvalModelSpec
  maxLength: number
  prefixToken: number
  batchTokens: number
  bootstrapIters: number
  limit: number | null
  tasks: EvalRunTask[]
}

/** What one process (a shard, a queue chunk) scored of a task, with its speed. */
export interface EvalPart {
  items: ItemResult[]
  seconds: number
  stats: ScorerStats
}

export interface ShardFile {
  shard: { index: number; count: number }
  config: EvalRunConfig
  threads: number
  results: (EvalPart & { task: string })[]
}

const fail = (where: string, what: string, expected?: string, found?: string, hint?: string): never => {
  throw new UsageError({ where, what, ...(expected !== undefined ? { expected } : {}), ...(found !== undefined ? { found } : {}), ...(hint !== undefined ? { hint } : {}) })
}

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** "I/N" (0-based I) -> { index, count }. */
export function parseShardSpec(spec: string, where: string): { index: number; count: number } {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec)
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN
  if (!m || !Number.isSafeInteger(count) || count < 1 || index >= count)
    fail(where, 'bad --shard', 'I/N with N >= 1 and 0 <= I < N (0-based: 0/3, 1/3, 2/3)', JSON.stringify(spec))
  return { index, count }
}

/**
 * The work an item costs, roughly: the characters the model reads for it (a question's choices share its
 * context: the scorer runs it once).
 */
export function itemWeight(doc: EvalDoc): number {
  if ('text' in doc) return (doc as TextDoc).text.length
  const reqs = (doc as ChoiceDoc).requests
  return reqs.reduce((m, r) => Math.max(m, r.context.length), 0) + reqs.reduce((s, r) => s + r.continuation.length, 0)
}

/**
 * The items of shard `index` of `count`, in index order. Items are dealt longest first, each to the shard
 * with the least work so far (ties: the lower shard), so shards get about the same amount of text even
 * when documents differ in length (wikitext). Every shard computes the same split from the same items.
 */
export function shardItems<T extends EvalDoc>(docs: readonly T[], index: number, count: number): T[] {
  const order = docs.map((d, i) => ({ i, w: itemWeight(d) })).sort((a, b) => b.w - a.w || a.i - b.i)
  const load = new Array<number>(count).fill(0)
  const mine: number[] = []
  for (const { i, w } of order) {
    let best = 0
    for (let s = 1; s < count; s++) if (load[s] < load[best]) best = s
    load[best] += w
    if (best === index) mine.push(i)
  }
  return mine.sort((a, b) => a - b).map((i) => docs[i])
}

const IDENTITY_FILES = ['config.json', 'configuration.json', 'tokenizer.json', 'vocab.json', 'merges.txt', 'vocab.txt']

/**
 * What identifies a model folder's numbers without reading its weights: the contents of its config and
 * tokenizer files, and the names and sizes of the checkpoint files it loads (`variant` picks them).
 */
export function modelFingerprint(dir: string, opts: { variant?: string } = {}): string {
  const h = createHash('sha256')
  for (const f of IDENTITY_FILES) {
    const p = join(dir, f)
    if (existsSync(p)) h.update(`${f}\0`).update(readFileSync(p)).update('\0')
  }
  for (const f of inspectModel(dir, { variant: opts.variant }).files) h.update(`${basename(f)}\0${statSync(f).size}\0`)
  return h.digest('hex').slice(0, 32)
}

// --- per-item results as JSON ---------------------------------------------------------------------------

/** Per-item results as plain JSON (NaN and ±Infinity as strings, which JSON.stringify would turn into null). */
export function encodeItems(items: readonly ItemResult[]): unknown[] {
  return JSON.parse(JSON.stringify(items, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)))
}

type Field = 'int' | 'num' | 'bool' | 'int[]' | 'num[]' | 'bool[]' | 'windows'

/** The fields of each kind of ItemResult, in the order evaluate.ts makes them. */
const FIELDS: Record<EvalTask['kind'], Record<string, Field>> = {
  perplexity: { loglikelihood: 'num', tokens: 'int', words: 'int', bytes: 'int', windows: 'windows' },
  lambada: { loglikelihood: 'num', isGreedy: 'bool', contextTokens: 'int', targetIds: 'int[]', tokenLogprobs: 'num[]', greedy: 'bool[]', truncated: 'int' },
  choice: { gold: 'int', loglikelihoods: 'num[]', tokens: 'int[]', isGreedy: 'bool[]', lengths: 'int[]', truncated: 'int[]', pred: 'int', predNorm: 'int', acc: 'int', accNorm: 'int' },
}

const NON_FINITE: Record<string, number> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity }

function scalar(v: unknown, type: 'int' | 'num' | 'bool'): unknown {
  if (type === 'bool') return typeof v === 'boolean' ? v : undefined
  if (type === 'num') return typeof v === 'number' ? v : typeof v === 'string' && v in NON_FINITE ? NON_FINITE[v] : undefined
  return Number.isSafeInteger(v) ? v : undefined
}

function field(v: unknown, type: Field): unknown {
  if (type === 'windows') {
    if (!Array.isArray(v)) return undefined
    const out = []
    for (const w of v) {
      if (typeof w !== 'object' || w === null) return undefined
      const r = w as Record<string, unknown>
      const tokens = scalar(r.tokens, 'int'), loglikelihood = scalar(r.loglikelihood, 'num')
      const begin = r.begin === undefined ? undefined : scalar(r.begin, 'int'), end = r.end === undefined ? undefined : scalar(r.end, 'int')
      if (tokens === undefined || loglikelihood === undefined || (r.begin !== undefined && begin === undefined) || (r.end !== undefined && end === undefined)) return undefined
      out.push({ ...(begin !== undefined ? { begin, end } : {}), tokens, loglikelihood })
    }
    return out
  }
  if (type.endsWith('[]')) {
    if (!Array.isArray(v)) return undefined
    const out = v.map((x) => scalar(x, type.slice(0, -2) as 'int' | 'num' | 'bool'))
    return out.includes(undefined) ? undefined : out
  }
  return scalar(v, type as 'int' | 'num' | 'bool')
}

/**
 * Per-item results read back from JSON (a shard file, a queue worker's answer), checked: each an object of
 * the task's kind with every field of the right type and an index in 0 .. items - 1.
 */
export function decodeItems(raw: unknown, task: EvalTask, items: number, where: string): ItemResult[] {
  if (!Array.isArray(raw)) fail(where, `results of task ${task.name} are not a list`, 'a list of per-item results', show(raw, 40))
  const fields = FIELDS[task.kind]
  return (raw as unknown[]).map((x, i) => {
    const at = `${where}: task ${task.name}, result ${i}`
    if (typeof x !== 'object' || x === null || Array.isArray(x)) fail(at, 'not an object', 'a per-item result', show(x, 40))
    const r = x as Record<string, unknown>
    if (r.kind !== task.kind) fail(at, 'a result of another task kind', task.kind, show(r.kind))
    if (!Number.isSafeInteger(r.index) || (r.index as number) < 0 || (r.index as number) >= items) fail(at, 'bad item index', `an integer 0 .. ${items - 1}`, show(r.index))
    const out: Record<string, unknown> = { kind: task.kind, index: r.index }
    for (const [name, type] of Object.entries(fields)) {
      const v = field(r[name], type)
      if (v === undefined) fail(at, r[name] === undefined ? `missing field "${name}"` : `bad field "${name}"`, type === 'windows' ? 'a list of {tokens, loglikelihood}' : `a value of type ${type}`, show(r[name], 40))
      out[name] = v
    }
    return out as unknown as ItemResult
  })
}

// --- shard files ---------------------------------------------------------------------------------------

/** Writes `data` to `file` atomically: a temporary file in the same folder, then a rename. */
export function writeFileAtomic(file: string, data: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  try {
    writeFileSync(tmp, data)
    renameSync(tmp, file)
  } catch (e) {
    if (existsSync(tmp)) unlinkSync(tmp)
    throw e
  }
}

export function writeShardFile(file: string, shard: ShardFile): void {
  const out = {
    format: SHARD_FORMAT,
    version: SHARD_VERSION,
    shard: shard.shard,
    config: shard.config,
    threads: shard.threads,
    results: shard.results.map((r) => ({ task: r.task, items: encodeItems(r.items), seconds: r.seconds, stats: r.stats })),
  }
  writeFileAtomic(file, JSON.stringify(out) + '\n')
}

const isObject = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v)
const isInt = (v: unknown, min = 0): v is number => Number.isSafeInteger(v) && (v as number) >= min

/** A task definition from a shard file (its kind and the options of that kind). */
function checkTask(t: unknown, where: string): EvalTask {
  const bad = (what: string) => fail(where, what, 'a shard file written by `refgpt eval --shard`')
  if (!isObject(t) || typeof t.name !== 'string') return bad('bad task definition')
  if (t.kind === 'perplexity') {
    if (t.mode !== 'rolling' && t.mode !== 'sliding') bad(`task ${t.name}: bad perplexity mode ${show(t.mode)}`)
    if (t.stride !== undefined && !isInt(t.stride, 1)) bad(`task ${t.name}: bad stride ${show(t.stride)}`)
    if (t.detokenize !== undefined && t.detokenize !== null && t.detokenize !== 'wikitext') bad(`task ${t.name}: bad detokenize ${show(t.detokenize)}`)
  } else if (t.kind === 'choice') {
    if (!(CHOICE_FORMATS as readonly unknown[]).includes(t.format)) bad(`task ${t.name}: bad choice format ${show(t.format)}`)
  } else if (t.kind !== 'lambada') bad(`task ${t.name}: unknown kind ${show(t.kind)}`)
  return t as EvalTask
}

/** Reads and checks a shard file; every error names the file. */
export function readShardFile(file: string): ShardFile {
  if (!existsSync(file) || !statSync(file).isFile()) fail(file, 'shard file not found', undefined, undefined, 'the --out FILE of `refgpt eval --shard I/N`')
  let j: any
  try {
    j = JSON.parse(readFileSync(file, 'utf8'))
  } catch (e) {
    fail(file, 'not a shard file: invalid JSON', 'the --out FILE of `refgpt eval --shard I/N`', show(String((e as Error).message), 80))
  }
  if (!isObject(j) || j.format !== SHARD_FORMAT)
    fail(file, 'not a refgpt eval shard file', `"format": "${SHARD_FORMAT}"`, !isObject(j) ? 'no JSON object' : j.format === undefined ? 'no "format"' : show(j.format))
  if (j.version !== SHARD_VERSION) fail(file, 'unsupported shard file version', String(SHARD_VERSION), show(j.version), 'run every shard with the same refgpt')
  const bad = (what: string, found?: unknown): never => fail(file, what, 'a shard file written by `refgpt eval --shard`', found === undefined ? undefined : show(found, 60))
  if (!isObject(j.shard) || !isInt(j.shard.count, 1) || !isInt(j.shard.index) || j.shard.index >= j.shard.count) bad('bad "shard"', j.shard)
  const c = j.config
  if (!isObject(c) || !isObject(c.model) || typeof c.model.fingerprint !== 'string' || typeof c.model.path !== 'string' || typeof c.model.device !== 'string') bad('bad "config.model"', c?.model)
  for (const k of ['maxLength', 'prefixToken', 'batchTokens', 'bootstrapIters']) if (!isInt(c[k])) bad(`bad "config.${k}"`, c[k])
  if (c.limit !== null && !isInt(c.limit, 1)) bad('bad "config.limit"', c.limit)
  if (!Array.isArray(c.tasks) || c.tasks.length === 0) bad('bad "config.tasks"', c.tasks)
  const tasks: EvalRunTask[] = c.tasks.map((t: any, i: number) => {
    if (!isObject(t) || typeof t.file !== 'string' || typeof t.dataSha256 !== 'string' || !isInt(t.items, 1)) bad(`bad "config.tasks[${i}]"`, t)
    return { ...t, task: checkTask(t.task, `${file}: config.tasks[${i}]`) }
  })
  if (!Array.isArray(j.results) || j.results.length !== tasks.length) bad(`"results" do not follow "config.tasks" (${tasks.length} tasks)`)
  const results = tasks.map((t, i) => {
    const r = j.results[i]
    if (!isObject(r) || r.task !== t.task.name) bad(`results[${i}] is not task ${t.task.name}`, r?.task)
    if (typeof r.seconds !== 'number' || !isObject(r.stats)) bad(`results[${i}]: bad "seconds" or "stats"`)
    return { task: t.task.name, items: decodeItems(r.items, t.task, t.items, file), seconds: r.seconds, stats: r.stats as ScorerStats }
  })
  return { shard: { index: j.shard.index, count: j.shard.count }, config: { ...(c as EvalRunConfig), tasks }, threads: isInt(j.threads, 1) ? j.threads : 1, results }
}

/** The first place where two run configs differ (paths of the model and the data files aside), or null. */
export function configDifference(a: EvalRunConfig, b: EvalRunConfig): { field: string; a: unknown; b: unknown } | null {
  const strip = (c: EvalRunConfig) => ({ ...c, model: { ...c.model, path: '' }, tasks: c.tasks.map((t) => ({ ...t, file: '' })) })
  const diff = (x: unknown, y: unknown, path: string): { field: string; a: unknown; b: unknown } | null => {
    if (x === y) return null
    if (!isObject(x) && !Array.isArray(x)) return { field: path, a: x, b: y }
    if (Array.isArray(x) !== Array.isArray(y) || (!isObject(y) && !Array.isArray(y))) return { field: path, a: x, b: y }
    if (Array.isArray(x) && x.length !== (y as unknown[]).length) return { field: `${path}.length`, a: x.length, b: (y as unknown[]).length }
    for (const k of new Set([...Object.keys(x), ...Object.keys(y as object)])) {
      const d = diff((x as any)[k], (y as any)[k], Array.isArray(x) ? `${path}[${k}]` : path ? `${path}.${k}` : k)
      if (d) return d
    }
    return null
  }
  return diff(strip(a), strip(b), '')
}

/**
 * Shard files of one run -> the run's config and, per task, every item's result (index order), with the
 * speed summed over the shards. Refuses shards of different runs, a shard given twice or missing, and an
 * item scored twice or by no shard; errors name the files.
 */
export function mergeShards(shards: readonly { file: string; shard: ShardFile }[]): { config: EvalRunConfig; count: number; tasks: (EvalPart & { run: EvalRunTask })[] } {
  if (shards.length === 0) fail('refgpt eval merge', 'no shard files', 'the files of `refgpt eval --shard I/N --out FILE`, one per shard')
  const first = shards[0], count = first.shard.shard.count
  const byIndex = new Map<number, string>()
  for (const { file, shard } of shards) {
    const { index, count: n } = shard.shard
    if (n !== count) fail(file, `shard ${index}/${n} is not of the same split as ${first.file}`, `a shard I/${count}`, `${index}/${n}`)
    const other = byIndex.get(index)
    if (other !== undefined) fail(file, other === file ? 'given twice' : `shard ${index}/${count} given twice (also ${other})`, undefined, undefined, 'give each shard file once')
    byIndex.set(index, file)
    const d = configDifference(first.shard.config, shard.config)
    if (d) fail(file, `not a shard of the same run as ${first.file}: config.${d.field} differs`, show(d.a, 60), show(d.b, 60), 'merge the shards of one `refgpt eval --shard` command line')
  }
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !byIndex.has(i))
  if (missing.length) fail('refgpt eval merge', `${missing.length === 1 ? 'shard' : 'shards'} ${missing.map((i) => `${i}/${count}`).join(', ')} missing`, `all ${count} shards`,
    [...byIndex].sort((a, b) => a[0] - b[0]).map(([i, f]) => `${i}/${count} ${f}`).join(', '))
  const tasks = first.shard.config.tasks.map((run, ti) => {
    const from = new Map<number, string>()
    const items: ItemResult[] = []
    let seconds = 0
    const stats: ScorerStats = { requests: 0, inputTokens: 0, computedTokens: 0, scoredTokens: 0 }
    for (const { file, shard } of shards) {
      const r = shard.results[ti]
      for (const it of r.items) {
        const other = from.get(it.index)
        if (other !== undefined) fail(file, `item ${it.index} of task ${run.task.name} is also in ${other}`, 'each item in one shard')
        from.set(it.index, file)
        items.push(it)
      }
      seconds += r.seconds
      for (const k of Object.keys(stats) as (keyof ScorerStats)[]) stats[k] += Number(r.stats[k]) || 0
    }
    if (items.length !== run.items) {
      const lost = Array.from({ length: run.items }, (_, i) => i).filter((i) => !from.has(i))
      fail('refgpt eval merge', `task ${run.task.name}: ${lost.length} item(s) in no shard`, `all ${run.items} items`, `none for item ${lost.slice(0, 5).join(', ')}${lost.length > 5 ? ', ...' : ''}`)
    }
    return { run, items: items.sort((a, b) => a.index - b.index), seconds, stats }
  })
  return { config: first.shard.config, count, tasks }
}
