// refgpt eval: the tables of the model cards (perplexity, bits per byte, LAMBADA, multiple choice),
// computed with lm-evaluation-harness's definitions (packages/core/src/eval). Every option and every data
// line is checked before anything is printed; then a progress bar on stderr, the table on stdout.

import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import {
  BOOTSTRAP_ITERS, CHOICE_FORMATS, Scorer, UsageError, aggregate, defaultPrefixToken, inspectModel, lambadaSplit, loadModel, parseEvalData, perplexityRequests, runTask,
  type ChoiceDoc, type ChoiceFormat, type EvalDoc, type EvalTask, type ItemResult, type ScorerStats, type TaskResult, type TextDoc,
} from '@refgpt/core'
import { intOption, parse } from '../args.js'
import { MODEL_HELP, MODEL_OPTIONS, modelOptions, requireTokenizer } from './common.js'

export const summary = 'evaluate: perplexity / bits per byte, LAMBADA, multiple choice (lm-eval definitions)'

export const help = `Usage: refgpt eval perplexity --model DIR --data FILE [--rolling | --stride S] [options]
       refgpt eval lambada    --model DIR --data FILE.jsonl [options]
       refgpt eval choice     --model DIR --data FILE.jsonl [--format FORMAT] [options]
       refgpt eval --tasks NAME=FILE[,NAME=FILE ...] --model DIR [options]

Scores a model on a task's data with EleutherAI lm-evaluation-harness's definitions and prints a table
(task, metric, value, ± stderr where the harness reports one) and the speed.

Tasks:
  perplexity   FILE: .txt (one document) or .jsonl ({"text": ...} or {"page": ...} per line).
               word_perplexity, byte_perplexity, bits_per_byte (words = whitespace-split original text,
               bytes = its UTF-8 length) and token_perplexity.
               --rolling (default): lm-eval's loglikelihood_rolling: disjoint windows of --max-length
               tokens, the first conditioned on the prefix token (BOS, else EOS), every token scored once.
               --stride S: the Hugging Face docs' sliding window (windows of --max-length tokens every S
               tokens, each scoring the tokens the previous did not; S = --max-length: non-overlapping).
               --detokenize wikitext: score lm-eval's wikitext_detokenizer(text) (counts stay on the original).
  lambada      {"text": ...} per line (lambada_openai): context = text up to the last space, target =
               " " + the last word; acc (greedy decoding reproduces the target) and perplexity
               (exp of minus the mean per-item log-likelihood).
  choice       one question per line; acc (argmax log-likelihood) and acc_norm (divided by the choice's
               length in characters). --format (default generic):
                 generic     {"context": "...", "choices": ["...", "..."], "gold": 0}
                 hellaswag   {"activity_label": "...", "ctx_a": "...", "ctx_b": "...", "endings": [...], "label": "0"}
                 piqa        {"goal": "...", "sol1": "...", "sol2": "...", "label": 0}
                 winogrande  {"sentence": "... _ ...", "option1": "...", "option2": "...", "answer": "1"}  (acc only)
                 arc         {"question": "...", "choices": {"text": [...], "label": [...]}, "answerKey": "A"}
  --tasks      several tasks in one run: NAME=FILE pairs. Names: lambada (lambada_openai), wikitext
               (rolling perplexity, wikitext detokenizer), perplexity (pile, text: rolling perplexity),
               hellaswag, piqa, winogrande, arc (arc_easy, arc_challenge), choice (generic).

Options:
      --data FILE             the task's data
      --max-length N          tokens the model sees at once (default: the model's context, n_positions)
      --limit N               only the first N items of each task
      --json                  print one JSON object with every metric (no table)
      --log-samples FILE      write the per-item results as JSON lines
      --bootstrap-iters N     bootstrap iterations for the lambada perplexity stderr (default ${BOOTSTRAP_ITERS},
                              as lm-eval: about 15 s for the 5153 items of LAMBADA; 0: none)
      --prefix-token ID       the token the first rolling window (and an empty context) is conditioned on
      --batch-tokens N        rows per forward chunk (default min(max length, 512))
      --no-progress           no progress bar / progress lines on stderr
${MODEL_HELP}
Examples:
  refgpt eval lambada --model ./gpt-neo-1.3B --data lambada_openai.jsonl
  refgpt eval perplexity --model ./gpt2 --data wiki.test.raw.txt --stride 512 --max-length 1024
  refgpt eval --model ./gpt-neo-1.3B --tasks lambada=lambada.jsonl,wikitext=wikitext.jsonl,hellaswag=hellaswag.jsonl --json
`

const WHERE = 'refgpt eval'

const fail = (what: string, expected?: string, found?: string, hint?: string): never => {
  throw new UsageError({ where: WHERE, what, ...(expected !== undefined ? { expected } : {}), ...(found !== undefined ? { found } : {}), hint: hint ?? 'see `refgpt eval --help`' })
}

/** --tasks names -> task definitions. */
function namedTask(name: string): EvalTask | null {
  switch (name) {
    case 'lambada': case 'lambada_openai': return { kind: 'lambada', name }
    case 'wikitext': return { kind: 'perplexity', name, mode: 'rolling', detokenize: 'wikitext' }
    case 'perplexity': case 'pile': case 'text': return { kind: 'perplexity', name, mode: 'rolling' }
    case 'hellaswag': case 'piqa': case 'winogrande': return { kind: 'choice', name, format: name }
    case 'arc': case 'arc_easy': case 'arc_challenge': return { kind: 'choice', name, format: 'arc' }
    case 'choice': case 'generic': return { kind: 'choice', name, format: 'generic' }
  }
  return null
}
const TASK_NAMES = 'lambada, lambada_openai, wikitext, perplexity, pile, text, hellaswag, piqa, winogrande, arc, arc_easy, arc_challenge, choice, generic'

interface Planned {
  task: EvalTask
  file: string
  docs: EvalDoc[]
}

export async function run(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse('eval', argv, {
    ...MODEL_OPTIONS,
    data: { type: 'string' },
    tasks: { type: 'string' },
    format: { type: 'string' },
    rolling: { type: 'boolean' },
    stride: { type: 'string' },
    detokenize: { type: 'string' },
    'max-length': { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
    'log-samples': { type: 'string' },
    'bootstrap-iters': { type: 'string' },
    'prefix-token': { type: 'string' },
    'batch-tokens': { type: 'string' },
    'no-progress': { type: 'boolean' },
  })

  // --- options (nothing is printed before all of them are checked) ---------------------------------
  if (positionals.length > 1) fail('too many arguments', 'one task: perplexity, lambada or choice', JSON.stringify(positionals.join(' ')))
  const kind = positionals[0]
  if (kind !== undefined && !['perplexity', 'lambada', 'choice'].includes(kind)) fail(`unknown task ${JSON.stringify(kind)}`, 'perplexity, lambada or choice (or --tasks NAME=FILE,...)')
  if ((kind === undefined) === (v.tasks === undefined)) fail(kind === undefined ? 'no task' : 'a task and --tasks together', 'either `refgpt eval perplexity|lambada|choice --data FILE` or `refgpt eval --tasks NAME=FILE,...`')
  const only = (name: string, allowed: boolean, why: string) => {
    if (v[name] !== undefined && !allowed) fail(`--${name} ${why}`)
  }
  only('data', kind !== undefined, 'does not go with --tasks (give NAME=FILE pairs)')
  only('format', kind === 'choice', 'applies to `refgpt eval choice` only')
  only('rolling', kind === 'perplexity', 'applies to `refgpt eval perplexity` only')
  only('stride', kind === 'perplexity', 'applies to `refgpt eval perplexity` only')
  only('detokenize', kind === 'perplexity', 'applies to `refgpt eval perplexity` only (--tasks wikitext=FILE detokenizes)')
  if (v.rolling && v.stride !== undefined) fail('--rolling and --stride together', 'one of them (default: --rolling)')
  if (kind !== undefined && v.data === undefined) fail('missing --data', `the ${kind} data file`)
  const maxLengthOpt = v['max-length'] === undefined ? undefined : intOption('eval', 'max-length', v['max-length'] as string, 0, 1)
  const limit = v.limit === undefined ? undefined : intOption('eval', 'limit', v.limit as string, 0, 1)
  const stride = v.stride === undefined ? undefined : intOption('eval', 'stride', v.stride as string, 0, 1)
  const bootstrapIters = intOption('eval', 'bootstrap-iters', v['bootstrap-iters'] as string | undefined, BOOTSTRAP_ITERS, 0)
  const prefixOpt = v['prefix-token'] === undefined ? undefined : intOption('eval', 'prefix-token', v['prefix-token'] as string, 0, 0)
  const batchTokens = v['batch-tokens'] === undefined ? undefined : intOption('eval', 'batch-tokens', v['batch-tokens'] as string, 0, 1)
  if (batchTokens !== undefined && batchTokens > 4096) fail('bad --batch-tokens', 'an integer 1 .. 4096', String(batchTokens))
  if (stride !== undefined && maxLengthOpt !== undefined && stride > maxLengthOpt) fail('--stride larger than --max-length', `at most ${maxLengthOpt}`, String(stride))
  const detok = v.detokenize as string | undefined
  if (detok !== undefined && detok !== 'wikitext') fail('unknown --detokenize', 'wikitext', JSON.stringify(detok))
  const format = (v.format as string | undefined) ?? 'generic'
  if (!(CHOICE_FORMATS as readonly string[]).includes(format)) fail('unknown --format', CHOICE_FORMATS.join(', '), JSON.stringify(format))
  const o = modelOptions('eval', v)

  const tasks: { task: EvalTask; file: string }[] = []
  if (kind !== undefined) {
    const file = v.data as string
    const task: EvalTask = kind === 'perplexity'
      ? { kind, name: 'perplexity', mode: stride !== undefined ? 'sliding' : 'rolling', ...(stride !== undefined ? { stride } : {}), detokenize: detok === 'wikitext' ? 'wikitext' : null }
      : kind === 'lambada' ? { kind, name: 'lambada' } : { kind: 'choice', name: format === 'generic' ? 'choice' : format, format: format as ChoiceFormat }
    tasks.push({ task, file })
  } else {
    const specs = (v.tasks as string).split(',').map((s) => s.trim()).filter((s) => s.length > 0)
    if (specs.length === 0) fail('empty --tasks', 'NAME=FILE pairs separated by commas')
    for (const spec of specs) {
      const eq = spec.indexOf('=')
      if (eq <= 0 || eq === spec.length - 1) fail('bad --tasks entry', 'NAME=FILE', JSON.stringify(spec))
      const name = spec.slice(0, eq), file = spec.slice(eq + 1)
      const task = namedTask(name)
      if (!task) fail(`unknown task ${JSON.stringify(name)} in --tasks`, `one of ${TASK_NAMES}`)
      if (tasks.some((t) => t.task.name === name)) fail(`task ${JSON.stringify(name)} given twice in --tasks`)
      tasks.push({ task: task!, file })
    }
  }
  const logSamples = v['log-samples'] as string | undefined
  if (logSamples !== undefined) {
    const dir = dirname(resolve(logSamples))
    if (!existsSync(dir) || !statSync(dir).isDirectory()) fail('--log-samples: no such folder', 'an existing folder for the file', JSON.stringify(dirname(logSamples)))
  }

  // --- data: every line parsed now (errors name FILE:LINE) -----------------------------------------
  const planned: Planned[] = tasks.map(({ task, file }) => {
    if (!existsSync(file) || !statSync(file).isFile()) throw new UsageError({ where: file, what: 'data file not found', hint: `the data of task ${task.name}` })
    let docs = parseEvalData(readFileSync(file, 'utf8'), file, task)
    if (limit !== undefined) docs = docs.slice(0, limit)
    return { task, file, docs }
  })

  const tok = requireTokenizer(o.dir, 'eval')
  // lm-eval's max_length: the model's context unless --max-length; memory is planned for it and the chunk size
  const { arch } = inspectModel(o.dir, { variant: o.variant })
  const maxLength = maxLengthOpt ?? arch.nPositions
  if (maxLength > arch.nPositions) fail('--max-length longer than the model context', `at most ${arch.nPositions}`, String(maxLength))
  if (stride !== undefined && stride > maxLength) fail('--stride larger than the max length', `at most ${maxLength}`, String(stride))
  const prefixToken = prefixOpt ?? defaultPrefixToken(arch, tok)
  if (prefixToken >= arch.nVocab) fail('bad --prefix-token', `an id below ${arch.nVocab}`, String(prefixToken))
  const chunk = batchTokens ?? Math.min(maxLength, 512)
  const model = await loadModel(o.dir, { device: o.device, threads: o.threads, dtype: o.dtype, variant: o.variant, maxContext: maxLength, maxBatchTokens: chunk })
  try {
    const scorer = new Scorer(model, { maxLength, maxBatchTokens: chunk })
    const progress = v['no-progress'] ? null : new Progress(process.stderr.isTTY === true)

    // --- run ---------------------------------------------------------------------------------------
    const done: { p: Planned; items: ItemResult[]; agg: TaskResult; seconds: number; stats: ScorerStats }[] = []
    try {
      for (const p of planned) {
        // progress in items, or in windows for perplexity (one long document is one item)
        const pt = p.task
        const windows = pt.kind === 'perplexity' && progress
          ? p.docs.reduce((n, d) => n + perplexityRequests(pt, (d as TextDoc).text, tok, prefixToken, maxLength).length, 0) : 0
        const before = { ...scorer.stats }
        const t0 = performance.now()
        progress?.start(p.task.name, windows || p.docs.length, windows ? 'windows' : 'items')
        let scored = 0
        const items = await runTask(scorer, p.task, p.docs, {
          tokenizer: tok, prefixToken,
          onItem: (_r, n) => void (windows ? 0 : progress?.update(n)),
          onRequest: () => void (windows ? progress?.update(++scored) : 0),
        })
        const seconds = (performance.now() - t0) / 1000
        progress?.end()
        const s = scorer.stats
        const stats: ScorerStats = { requests: s.requests - before.requests, inputTokens: s.inputTokens - before.inputTokens, computedTokens: s.computedTokens - before.computedTokens, scoredTokens: s.scoredTokens - before.scoredTokens }
        done.push({ p, items, agg: aggregate(p.task, items, { bootstrapIters }), seconds, stats })
      }
    } finally {
      scorer.dispose()
    }

    // --- output --------------------------------------------------------------------------------------
    if (logSamples !== undefined) {
      const lines: string[] = []
      for (const d of done) {
        const byIndex = new Map(d.p.docs.map((doc) => [doc.index, doc]))
        for (const r of d.items) lines.push(JSON.stringify(sampleRow(d.p.task, byIndex.get(r.index)!, r)))
      }
      writeFileSync(logSamples, lines.join('\n') + (lines.length ? '\n' : ''))
    }
    const speed = (x: { seconds: number; stats: ScorerStats; n: number }) => ({
      items: x.n,
      seconds: round(x.seconds, 3),
      items_per_s: round(x.n / x.seconds, 3),
      requests: x.stats.requests,
      input_tokens: x.stats.inputTokens,
      computed_tokens: x.stats.computedTokens,
      scored_tokens: x.stats.scoredTokens,
      input_tokens_per_s: round(x.stats.inputTokens / x.seconds, 1),
      scored_tokens_per_s: round(x.stats.scoredTokens / x.seconds, 1),
    })
    const total = done.reduce((a, d) => ({
      seconds: a.seconds + d.seconds, n: a.n + d.agg.n,
      stats: { requests: a.stats.requests + d.stats.requests, inputTokens: a.stats.inputTokens + d.stats.inputTokens, computedTokens: a.stats.computedTokens + d.stats.computedTokens, scoredTokens: a.stats.scoredTokens + d.stats.scoredTokens },
    }), { seconds: 0, n: 0, stats: { requests: 0, inputTokens: 0, computedTokens: 0, scoredTokens: 0 } })
    const threads = (model.device as { threads?: number }).threads ?? 1
    if (v.json) {
      const out = {
        model: o.dir,
        device: model.device.name,
        threads,
        max_length: maxLength,
        prefix_token: prefixToken,
        bootstrap_iters: bootstrapIters,
        limit: limit ?? null,
        tasks: Object.fromEntries(done.map((d) => [d.agg.task, {
          kind: d.agg.kind,
          ...taskConfig(d.p.task),
          file: d.p.file,
          n: d.agg.n,
          metrics: Object.fromEntries(Object.entries(d.agg.metrics).map(([k, m]) => [k, { value: m.value, stderr: m.stderr }])),
          totals: d.agg.totals,
          speed: speed({ seconds: d.seconds, stats: d.stats, n: d.agg.n }),
        }])),
        speed: speed(total),
      }
      process.stdout.write(JSON.stringify(out) + '\n')
      return
    }
    const rows: string[][] = [['Task', 'Metric', '', 'Value', '', 'Stderr', 'n']]
    for (const d of done) {
      for (const [name, m] of Object.entries(d.agg.metrics)) {
        rows.push([d.agg.task, name, m.higherIsBetter ? '↑' : '↓', m.value.toFixed(4), '±', m.stderr === null ? 'N/A' : m.stderr.toFixed(4), String(d.agg.n)])
      }
    }
    process.stdout.write(table(rows, [false, false, false, true, false, true, true]))
    const t = speed(total)
    process.stdout.write(
      `\n${model.device.name}, ${threads} thread${threads === 1 ? '' : 's'}, max length ${maxLength}: ${t.items} item${t.items === 1 ? '' : 's'} in ${t.seconds} s (${t.items_per_s} items/s); ` +
      `${t.input_tokens} input tokens (${t.computed_tokens} run, the rest shared prefixes) at ${t.input_tokens_per_s} tok/s, ${t.scored_tokens} scored at ${t.scored_tokens_per_s} tok/s\n`,
    )
  } finally {
    await model.dispose()
  }
}

function taskConfig(task: EvalTask): Record<string, unknown> {
  if (task.kind === 'perplexity') return { mode: task.mode, ...(task.stride !== undefined ? { stride: task.stride } : {}), detokenize: task.detokenize ?? null }
  if (task.kind === 'choice') return { format: task.format }
  return {}
}

/** A --log-samples row: the task, the item's place in its file, what was asked, and the item's result. */
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

/** Items (perplexity: windows) done, per second, and ETA on stderr: a bar redrawn in place on a terminal, a line per 10 % otherwise. */
class Progress {
  private name = ''
  private unit = 'items'
  private total = 0
  private t0 = 0
  private last = 0
  private shown = 0

  constructor(private readonly tty: boolean) {}

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
      process.stderr.write(`${this.status(done)}\n`)
    }
  }

  end(): void {
    if (this.tty) process.stderr.write('\r\x1b[K')
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
    const width = 24, full = Math.round((width * done) / Math.max(1, this.total))
    process.stderr.write(`\r[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${this.status(done)}\x1b[K`)
  }
}

function clock(s: number): string {
  const t = Math.round(s), h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60
  return `${h > 0 ? `${h}:${String(m).padStart(2, '0')}` : m}:${String(sec).padStart(2, '0')}`
}
