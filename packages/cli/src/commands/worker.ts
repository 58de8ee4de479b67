// refgpt worker: scores the chunks that `refgpt eval --queue` puts on a Redis queue (BullMQ), on any
// number of machines. Each chunk names its model (checked by fingerprint) and scoring options; the loaded
// model is kept for the next chunk of the same run.

import { existsSync, statSync } from 'node:fs'
import { hostname } from 'node:os'
import { UnrecoverableError, Worker, type Job } from 'bullmq'
import {
  RefgptError, UsageError, encodeItems, loadTokenizer, modelFingerprint,
  type Model, type Scorer, type Tokenizer,
} from '@refgpt/core'
import { intOption, parse } from '../args.js'
import { DEFAULT_QUEUE, JOB_VERSION, bullConnection, parseQueueName, parseRedisUrl, probeRedis, type ChunkJob, type ChunkResult } from '../eval/queue.js'
import { evalScorer, loadForEval, scoreDocs } from '../eval/score.js'

export const summary = 'score the chunks of `refgpt eval --queue` from Redis (on any number of machines)'

export const help = `Usage: refgpt worker --queue redis://HOST[:PORT][/DB] [options]

Takes chunks of items from the queue that \`refgpt eval --queue\` fills, scores them and answers with the
per-item results, until Ctrl-C or SIGTERM (it finishes the chunk in progress first; a second signal stops
at once and the chunk goes back to the queue). Each chunk brings the run's model path, device, dtype and
scoring options, so every chunk of a run is scored alike; this machine needs the model folder (the same
files: checked by their fingerprint), not the data. Start as many workers as you like, anywhere.

Options:
      --queue URL             the Redis to take chunks from (required)
      --queue-name NAME       the queue (default ${DEFAULT_QUEUE}; as \`refgpt eval --queue-name\`)
      --concurrency N         chunks scored at once, each on its own session of one loaded model (default 1)
  -m, --model DIR             where the run's model folder is on this machine (default: the path refgpt eval was given)
  -t, --threads N             threads for the wasm device (default: the number of cores)
      --lock-duration MS      how long a chunk stays with a worker that stops answering (it died): then it goes
                              back to the queue and another worker scores it (default 30000)
      --stalled-interval MS   how often this worker looks for such chunks (default 30000)
      --max-stalled N         times a chunk may be lost that way before it fails for good (default 1)
      --chunk-delay-ms MS     for tests only: wait MS after each item (a worker slow enough to be killed mid-chunk)
      --verbose               show stack traces on errors
  -h, --help                  this help
  -V, --version               print refgpt's version

Example:
  refgpt worker --queue redis://10.0.0.5:6379 --threads 16      (on each machine)
  refgpt eval lambada --model ./gpt-j-6B --data lambada_openai.jsonl --queue redis://10.0.0.5:6379
`

const WHERE = 'refgpt worker'

interface Entry {
  ready: Promise<{ model: Model; tokenizer: Tokenizer }>
  free: Scorer[]
  busy: number
}

/** Loaded models by how they were loaded; one no chunk uses is let go when another run's model is needed. */
class Models {
  private readonly entries = new Map<string, Entry>()
  private readonly fingerprints = new Map<string, string>()

  constructor(private readonly dir: string | undefined, private readonly threads: number | undefined) {}

  async take(job: ChunkJob): Promise<{ tokenizer: Tokenizer; scorer: Scorer; release: () => void }> {
    const dir = this.dir ?? job.model.path
    const fpKey = `${dir}\0${job.model.variant ?? ''}`
    let fp = this.fingerprints.get(fpKey)
    if (fp === undefined) this.fingerprints.set(fpKey, (fp = modelFingerprint(dir, { variant: job.model.variant ?? undefined })))
    if (fp !== job.model.fingerprint)
      throw new UsageError({ where: dir, what: 'not the model of this eval run', expected: `fingerprint ${job.model.fingerprint} (of ${job.model.path} where refgpt eval ran)`, found: fp, hint: 'give the worker --model DIR with the same files' })
    const key = JSON.stringify([dir, job.model.device, job.model.dtype, job.model.variant, job.maxLength, job.batchTokens])
    let e = this.entries.get(key)
    if (!e) {
      for (const [k, old] of this.entries) if (old.busy === 0) {
        this.entries.delete(k)
        void close(old)
      }
      const ready = loadForEval(dir, job.model, this.threads, job.maxLength, job.batchTokens).then((model) => ({ model, tokenizer: loadTokenizer(dir) }))
      e = { ready, free: [], busy: 0 }
      this.entries.set(key, e)
    }
    const entry = e
    entry.busy++
    try {
      const { model, tokenizer } = await entry.ready
      const scorer = entry.free.pop() ?? evalScorer(model, job.maxLength, job.batchTokens)
      return { tokenizer, scorer, release: () => void (entry.free.push(scorer), entry.busy--) }
    } catch (err) {
      entry.busy--
      if (this.entries.get(key) === entry) this.entries.delete(key)
      throw err
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.entries.values()].map(close))
    this.entries.clear()
  }
}

async function close(e: Entry): Promise<void> {
  const { model } = await e.ready
  for (const s of e.free) s.dispose()
  await model.dispose()
}

/** The fields a chunk must have (jobs of another refgpt version are refused by their version). */
function checkJob(d: ChunkJob): void {
  if (typeof d !== 'object' || d === null || d.v !== JOB_VERSION)
    throw new UsageError({ where: WHERE, what: 'a chunk of another refgpt version', expected: `job version ${JOB_VERSION}`, found: String((d as ChunkJob | null)?.v), hint: 'run the same refgpt for eval and workers' })
  const ok = typeof d.model?.path === 'string' && typeof d.model.fingerprint === 'string' && typeof d.task?.kind === 'string' && Array.isArray(d.docs) && d.docs.length > 0 &&
    [d.maxLength, d.prefixToken, d.batchTokens, d.items].every(Number.isSafeInteger)
  if (!ok) throw new UsageError({ where: WHERE, what: 'a malformed chunk', expected: 'a job made by `refgpt eval --queue`' })
}

export async function run(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse('worker', argv, {
    queue: { type: 'string' },
    'queue-name': { type: 'string' },
    concurrency: { type: 'string' },
    model: { type: 'string', short: 'm' },
    threads: { type: 'string', short: 't' },
    'lock-duration': { type: 'string' },
    'stalled-interval': { type: 'string' },
    'max-stalled': { type: 'string' },
    'chunk-delay-ms': { type: 'string' },
  })
  if (positionals.length > 0) throw new UsageError({ where: WHERE, what: 'unexpected arguments', found: JSON.stringify(positionals.join(' ')), hint: 'see `refgpt worker --help`' })
  if (v.queue === undefined) throw new UsageError({ where: WHERE, what: 'missing --queue', expected: 'the Redis of `refgpt eval --queue`, e.g. redis://127.0.0.1:6379', hint: 'see `refgpt worker --help`' })
  const target = parseRedisUrl(v.queue as string, WHERE)
  const name = parseQueueName(v['queue-name'] as string | undefined, WHERE)
  const concurrency = intOption('worker', 'concurrency', v.concurrency as string | undefined, 1, 1)
  const threads = v.threads === undefined ? undefined : intOption('worker', 'threads', v.threads as string, 1, 1)
  const lockDuration = intOption('worker', 'lock-duration', v['lock-duration'] as string | undefined, 30000, 100)
  const stalledInterval = intOption('worker', 'stalled-interval', v['stalled-interval'] as string | undefined, 30000, 100)
  const maxStalledCount = intOption('worker', 'max-stalled', v['max-stalled'] as string | undefined, 1, 0)
  const delayMs = intOption('worker', 'chunk-delay-ms', v['chunk-delay-ms'] as string | undefined, 0, 0)
  const dir = v.model as string | undefined
  if (dir !== undefined && !(existsSync(dir) && statSync(dir).isDirectory())) throw new UsageError({ where: WHERE, what: '--model: no such folder', expected: 'the folder of the eval run\'s model on this machine', found: JSON.stringify(dir) })
  const models = new Models(dir, threads)
  await probeRedis(target, WHERE)

  const me = `${hostname()}:${process.pid}`
  const log = (s: string) => process.stderr.write(`refgpt worker ${me}: ${s}\n`)
  const worker = new Worker<ChunkJob, ChunkResult>(name, async (job: Job<ChunkJob, ChunkResult>) => {
    const d = job.data
    let what = `chunk ${job.id}, attempt ${job.attemptsStarted}`
    try {
      checkJob(d)
      what = `${d.task.name} items ${d.docs[0].index}-${d.docs[d.docs.length - 1].index} (${what})`
      log(`${what}: started`)
      const m = await models.take(d)
      try {
        const part = await scoreDocs(m.scorer, d.task, d.docs, { tokenizer: m.tokenizer, prefixToken: d.prefixToken, delayMs })
        log(`${what}: ${part.items.length} items in ${part.seconds.toFixed(2)} s`)
        return { items: encodeItems(part.items), seconds: part.seconds, stats: part.stats, worker: me, attempt: job.attemptsStarted }
      } finally {
        m.release()
      }
    } catch (e) {
      log(`${what}: failed: ${(e as Error).message}`)
      // an error of the input (model, data, options) fails the same way on every worker: no retries
      throw e instanceof RefgptError ? new UnrecoverableError(e.message) : e
    }
  }, { connection: bullConnection(target), concurrency, lockDuration, stalledInterval, maxStalledCount, name: me, autorun: false })
  let lastError = ''
  worker.on('error', (e) => {
    if (e.message !== lastError) log(`queue error: ${(lastError = e.message)}`)
  })

  const stopped = new Promise<void>((resolve) => {
    let stopping = false
    const onSignal = (signal: string) => {
      if (stopping) {
        log(`${signal} again: stopping now (the chunk in progress goes back to the queue)`)
        process.exit(130)
      }
      stopping = true
      log(`${signal}: stopping after the chunk in progress (${signal} again to stop now)`)
      worker.close().then(resolve, resolve)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
  worker.run().catch((e: Error) => log(`queue error: ${e.message}`))
  await worker.waitUntilReady()
  log(`waiting for chunks on ${target.display} queue ${name} (concurrency ${concurrency})`)
  await stopped
  await models.close()
  log('stopped')
}
