// refgpt eval: the tables of the model cards (perplexity, bits per byte, LAMBADA, multiple choice),
// computed with lm-evaluation-harness's definitions (packages/core/src/eval). Every option and every data
// line is checked before anything is printed; then a progress bar on stderr, the table on stdout.
// Beyond one process: --shard I/N --out FILE + `refgpt eval merge FILE...` (packages/core/src/eval/shard.ts),
// and --queue redis://... with `refgpt worker` (../eval/queue.ts); both give exactly the numbers of one run.

import { existsSync, readFileSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import {
  BOOTSTRAP_ITERS, CHOICE_FORMATS, UsageError, defaultPrefixToken, inspectModel, mergeShards, modelFingerprint, parseEvalData, parseShardSpec,
  perplexityRequests, readShardFile, sha256, shardItems, writeShardFile,
  type ChoiceFormat, type EvalDoc, type EvalRunConfig, type EvalTask, type TextDoc,
} from '@refgpt/core'
import { intOption, parse } from '../args.js'
import { DEFAULT_QUEUE, parseQueueName, parseRedisUrl, probeRedis, scoreOnQueue } from '../eval/queue.js'
import { Progress, report, writeSamples, type TaskRun } from '../eval/report.js'
import { evalScorer, loadForEval, scoreDocs } from '../eval/score.js'
import { MODEL_OPTIONS, modelHelp, modelLabel, modelOptions, requireTokenizer, withLoadProgress } from './common.js'

export const summary = 'evaluate: perplexity / bits per byte, LAMBADA, multiple choice (lm-eval definitions)'

export const help = `Usage: refgpt eval perplexity --model DIR --data FILE [--rolling | --stride S] [options]
       refgpt eval lambada    --model DIR --data FILE.jsonl [options]
       refgpt eval choice     --model DIR --data FILE.jsonl [--format FORMAT] [options]
       refgpt eval --tasks NAME=FILE[,NAME=FILE ...] --model DIR [options]
       refgpt eval ... --shard I/N --out FILE        score shard I of N (0-based) and write its results
       refgpt eval merge FILE... [--json]            the table of all the shards: the numbers of one run
       refgpt eval ... --queue redis://HOST[:PORT]   chunks on a Redis queue, scored by \`refgpt worker\`s

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

Beyond one machine (every way gives exactly, bit for bit, the numbers of one process):
  --shard I/N --out FILE   score only shard I of N (0-based: 0/N .. N-1/N) of every task's items and write
                           them to FILE (JSON: the options, the model's fingerprint, the data's SHA-256, the
                           per-item results; written whole or not at all). Items are dealt longest first to
                           the shard with the least text so far, so shards take about the same time. Run all
                           N with the same options, on any machines.
  merge FILE...            check that the files are the N shards of one run (same options, model and data;
                           every shard and every item once), then print the table (or --json) of all items.
  --queue URL              put the items on a BullMQ queue in Redis (redis://HOST[:PORT][/DB], rediss:// for
                           TLS) in chunks, wait while \`refgpt worker --queue URL\` processes on any machines
                           score them, print the table. A worker that dies loses its chunk to another one
                           (after its --lock-duration); no item is counted twice. Jobs carry the items: the
                           workers need the model folder, not the data.
  --chunk-size K           items per queue chunk (default: 1 document for perplexity, 64 items otherwise)
  --queue-name NAME        the queue (default ${DEFAULT_QUEUE}; the workers' --queue-name)

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
${modelHelp('eval')}
Examples:
  refgpt eval lambada --model ./gpt-neo-1.3B --data lambada_openai.jsonl
  refgpt eval perplexity --model ./gpt2 --data wiki.test.raw.txt --stride 512 --max-length 1024
  refgpt eval --model ./gpt-neo-1.3B --tasks lambada=lambada.jsonl,wikitext=wikitext.jsonl,hellaswag=hellaswag.jsonl --json
  refgpt eval --model ./gpt-j-6B --tasks lambada=lambada.jsonl,wikitext=wikitext.jsonl --shard 0/3 --out s0.json   (and 1/3, 2/3)
  refgpt eval merge s0.json s1.json s2.json
  refgpt eval lambada --model ./gpt-j-6B --data lambada_openai.jsonl --queue redis://10.0.0.5:6379   (refgpt worker --queue ... on each machine)
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
  /** SHA-256 of the data file (shards and queue chunks of one run must read the same data). */
  dataSha256: string
}

/** An output file's folder must exist before anything runs. */
function checkFolder(option: string, file: string | undefined): void {
  if (file === undefined) return
  const dir = dirname(resolve(file))
  if (!existsSync(dir) || !statSync(dir).isDirectory()) fail(`--${option}: no such folder`, 'an existing folder for the file', JSON.stringify(dirname(file)))
}

export async function run(argv: string[]): Promise<void> {
  if (argv[0] === 'merge') return merge(argv.slice(1))
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
    shard: { type: 'string' },
    out: { type: 'string' },
    queue: { type: 'string' },
    'queue-name': { type: 'string' },
    'chunk-size': { type: 'string' },
  })

  // --- options (nothing is printed before all of them are checked) ---------------------------------
  if (positionals.length > 1) fail('too many arguments', 'one task: perplexity, lambada or choice', JSON.stringify(positionals.join(' ')))
  const kind = positionals[0]
  if (kind !== undefined && !['perplexity', 'lambada', 'choice'].includes(kind)) fail(`unknown task ${JSON.stringify(kind)}`, 'perplexity, lambada or choice (or --tasks NAME=FILE,..., or merge FILE...)')
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
  if (o.ortStatic !== undefined) throw new UsageError({ where: 'refgpt eval', what: '--ort-static is not taken by refgpt eval', hint: 'refgpt generate, serve and bench take it' })

  // --- beyond one process: a shard, or a queue ------------------------------------------------------
  const shard = v.shard === undefined ? undefined : parseShardSpec(v.shard as string, WHERE)
  const out = v.out as string | undefined
  only('out', shard !== undefined, 'goes with --shard I/N (the shard\'s result file)')
  if (shard && out === undefined) fail('--shard without --out', 'the shard\'s result file: --shard I/N --out FILE')
  if (shard && v.queue !== undefined) fail('--shard and --queue together', 'one of them')
  if (shard && v.json) fail('--json with --shard', undefined, undefined, 'a shard writes --out FILE; `refgpt eval merge FILE...` prints the metrics of all shards')
  only('queue-name', v.queue !== undefined, 'goes with --queue')
  only('chunk-size', v.queue !== undefined, 'goes with --queue')
  only('threads', v.queue === undefined, 'does not go with --queue (workers choose theirs: `refgpt worker --threads N`)')
  const queue = v.queue === undefined ? undefined : parseRedisUrl(v.queue as string, WHERE)
  const queueName = parseQueueName(v['queue-name'] as string | undefined, WHERE)
  const chunkSize = v['chunk-size'] === undefined ? undefined : intOption('eval', 'chunk-size', v['chunk-size'] as string, 0, 1)
  checkFolder('out', out)
  const logSamples = v['log-samples'] as string | undefined
  checkFolder('log-samples', logSamples)

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

  // --- data: every line parsed now (errors name FILE:LINE) -----------------------------------------
  const planned: Planned[] = tasks.map(({ task, file }) => {
    if (!existsSync(file) || !statSync(file).isFile()) throw new UsageError({ where: file, what: 'data file not found', hint: `the data of task ${task.name}` })
    const content = readFileSync(file, 'utf8')
    let docs = parseEvalData(content, file, task)
    if (limit !== undefined) docs = docs.slice(0, limit)
    return { task, file, docs, dataSha256: sha256(content) }
  })

  const tok = requireTokenizer(o.dir, 'eval', o)
  // lm-eval's max_length: the model's context unless --max-length; memory is planned for it and the chunk size
  const { arch } = inspectModel(o.dir, { variant: o.variant, followSymlinks: o.followSymlinks, maxMemory: o.maxMemory })
  const maxLength = maxLengthOpt ?? arch.nPositions
  if (maxLength > arch.nPositions) fail('--max-length longer than the model context', `at most ${arch.nPositions}`, String(maxLength))
  if (stride !== undefined && stride > maxLength) fail('--stride larger than the max length', `at most ${maxLength}`, String(stride))
  const prefixToken = prefixOpt ?? defaultPrefixToken(arch, tok)
  if (prefixToken >= arch.nVocab) fail('bad --prefix-token', `an id below ${arch.nVocab}`, String(prefixToken))
  const chunk = batchTokens ?? Math.min(maxLength, 512)
  // everything that affects the numbers: what shards compare and queue chunks carry
  const config = (): EvalRunConfig => ({
    model: { path: resolve(o.dir), fingerprint: modelFingerprint(o.dir, { variant: o.variant }), device: o.device, dtype: o.dtype ?? null, variant: o.variant ?? null },
    maxLength, prefixToken, batchTokens: chunk, bootstrapIters, limit: limit ?? null,
    tasks: planned.map((p) => ({ task: p.task, file: p.file, dataSha256: p.dataSha256, items: p.docs.length })),
  })
  const progress = v['no-progress'] ? null : new Progress(process.stderr.isTTY === true)
  const header = { model: o.dir, device: o.device, maxLength, prefixToken, bootstrapIters, limit: limit ?? null }

  // --- a queue: the workers score -------------------------------------------------------------------
  if (queue) {
    await probeRedis(queue, WHERE)
    const q = await scoreOnQueue(queue, queueName, config(), planned, chunkSize, progress)
    const runs: TaskRun[] = planned.map((p, i) => ({ task: p.task, file: p.file, ...q.parts[i] }))
    if (logSamples !== undefined) writeSamples(logSamples, planned.map((p, i) => ({ task: p.task, docs: p.docs, items: q.parts[i].items })))
    report({
      ...header, threads: null, how: `${q.chunks} chunk${q.chunks === 1 ? '' : 's'} on ${q.workers} worker${q.workers === 1 ? '' : 's'}`,
      extra: { queue: { url: queue.display, name: queueName, chunks: q.chunks, workers: q.workers, retried_chunks: q.retried, wall_seconds: Math.round(q.wallSeconds * 1000) / 1000 } },
    }, runs, v.json === true)
    return
  }

  // --- this process scores (all items, or its shard's) ----------------------------------------------
  const shardConfig = shard ? config() : null
  // the loading bar (--no-progress: none); loadForEval passes access.onProgress on to loadModel
  const model = await withLoadProgress(modelLabel(o.dir), (p) => loadForEval(o.dir, { device: o.device, dtype: o.dtype ?? null, variant: o.variant ?? null }, o.threads, maxLength, chunk, { ...o, ...(v['no-progress'] ? {} : p) }))
  try {
    const scorer = evalScorer(model, maxLength, chunk)
    const runs: (TaskRun & { docs: EvalDoc[]; total: number })[] = []
    try {
      for (const p of planned) {
        const docs = shard ? shardItems(p.docs, shard.index, shard.count) : p.docs
        // progress in items, or in windows for perplexity (one long document is one item)
        const pt = p.task
        const windows = pt.kind === 'perplexity' && progress
          ? docs.reduce((n, d) => n + perplexityRequests(pt, (d as TextDoc).text, tok, prefixToken, maxLength).length, 0) : 0
        progress?.start(shard ? `${p.task.name} (shard ${shard.index}/${shard.count})` : p.task.name, windows || docs.length, windows ? 'windows' : 'items')
        let scored = 0
        const part = await scoreDocs(scorer, p.task, docs, {
          tokenizer: tok, prefixToken,
          onItem: (_r, n) => void (windows ? 0 : progress?.update(n)),
          onRequest: () => void (windows ? progress?.update(++scored) : 0),
        })
        progress?.end()
        runs.push({ task: p.task, file: p.file, docs, total: p.docs.length, ...part })
      }
    } finally {
      scorer.dispose()
    }

    // --- output --------------------------------------------------------------------------------------
    if (logSamples !== undefined) writeSamples(logSamples, runs)
    const threads = (model.device as { threads?: number }).threads ?? 1
    if (shard && shardConfig) {
      writeShardFile(out!, { shard, config: shardConfig, threads, results: runs.map((r) => ({ task: r.task.name, items: r.items, seconds: r.seconds, stats: r.stats })) })
      const seconds = runs.reduce((s, r) => s + r.seconds, 0)
      process.stdout.write(`shard ${shard.index}/${shard.count}: ${runs.map((r) => `${r.task.name} ${r.items.length} of ${r.total} items`).join(', ')} in ${seconds.toFixed(3)} s -> ${out}\n`)
      return
    }
    report({ ...header, device: model.device.name, threads, how: `${threads} thread${threads === 1 ? '' : 's'}` }, runs, v.json === true)
  } finally {
    await model.dispose()
  }
}

/** refgpt eval merge FILE...: the shards of one run -> its table (or --json), exactly one process's numbers. */
async function merge(argv: string[]): Promise<void> {
  const { values: v, positionals: files } = parse('eval merge', argv, { json: { type: 'boolean' } })
  if (files.length === 0) throw new UsageError({ where: 'refgpt eval merge', what: 'no shard files', expected: 'refgpt eval merge FILE... (the --out files of `refgpt eval --shard I/N`)', hint: 'see `refgpt eval --help`' })
  const m = mergeShards(files.map((file) => ({ file, shard: readShardFile(file) })))
  const c = m.config
  report({
    model: c.model.path, device: c.model.device, threads: null, maxLength: c.maxLength, prefixToken: c.prefixToken, bootstrapIters: c.bootstrapIters, limit: c.limit,
    how: `${m.count} shard${m.count === 1 ? '' : 's'}`, extra: { shards: m.count },
  }, m.tasks.map((t) => ({ task: t.run.task, file: t.run.file, items: t.items, seconds: t.seconds, stats: t.stats })), v.json === true)
}
