// `refgpt eval --queue redis://...`: a run's items as chunks on a BullMQ queue in Redis, scored by any
// number of `refgpt worker` processes on any machines, and gathered back by item index.
//
// A job is one chunk: the run's model and scoring options, the task, and the chunk's items themselves
// (so a worker needs the model folder but not the data files). A worker answers with the chunk's per-item
// results. BullMQ moves the chunk of a worker that dies (its lock expires: --lock-duration) back to the
// queue, and another worker scores it again; a chunk completes once, so no item is counted twice (the
// producer also checks that each chunk answers exactly its items). Jobs are named by a run id and removed
// when the run ends; workers serve every run on their queue (--queue-name, default refgpt-eval).

import { randomBytes } from 'node:crypto'
import { Queue, QueueEvents, type RedisOptions as BullRedisOptions } from 'bullmq'
import { Redis, type RedisOptions } from 'ioredis'
import { RefgptError, UsageError, decodeItems, show, type EvalDoc, type EvalModelSpec, type EvalPart, type EvalRunConfig, type EvalTask, type ScorerStats } from '@refgpt/core'
import type { Progress } from './report.js'

export const DEFAULT_QUEUE = 'refgpt-eval'
export const JOB_VERSION = 1
/** Attempts of a chunk whose scoring throws (a stalled chunk is retried by BullMQ's stall check instead). */
export const ATTEMPTS = 3
const CONNECT_TIMEOUT_MS = 5000

export interface RedisTarget {
  /** The URL without its password, for messages. */
  display: string
  options: RedisOptions
}

/** redis://[USER:PASSWORD@]HOST[:PORT][/DB] or rediss:// (TLS) -> connection options. */
export function parseRedisUrl(value: string, where: string): RedisTarget {
  const bad = (what: string): never => {
    throw new UsageError({ where, what, expected: 'redis://HOST[:PORT][/DB] (or rediss:// for TLS)', found: show(value), hint: 'e.g. --queue redis://127.0.0.1:6379' })
  }
  let u: URL
  try {
    u = new URL(value)
  } catch {
    return bad('bad --queue URL')
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') bad('bad --queue URL scheme')
  if (u.hostname === '') bad('no host in --queue URL')
  const db = u.pathname === '' || u.pathname === '/' ? 0 : /^\/\d+$/.test(u.pathname) ? Number(u.pathname.slice(1)) : bad('bad database number in --queue URL')
  if (u.search || u.hash) bad('--queue URL with a query or fragment')
  const port = u.port === '' ? 6379 : Number(u.port)
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1')
  return {
    display: `${u.protocol}//${u.username ? `${decodeURIComponent(u.username)}@` : ''}${u.host}/${db}`,
    options: {
      host, port, db,
      ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
      ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
      ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
      connectTimeout: CONNECT_TIMEOUT_MS,
    },
  }
}

/** --queue-name: BullMQ keys are bull:NAME:..., so no ":" in it. */
export function parseQueueName(value: string | undefined, where: string): string {
  const name = value ?? DEFAULT_QUEUE
  if (name === '' || name.includes(':')) throw new UsageError({ where, what: 'bad --queue-name', expected: 'a name without ":"', found: JSON.stringify(name) })
  return name
}

/** Connects once (no retries, CONNECT_TIMEOUT_MS at most) so that an unreachable Redis is a clear error, not a hang. */
export async function probeRedis(t: RedisTarget, where: string): Promise<void> {
  const client = new Redis({ ...t.options, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false })
  let cause = ''
  client.on('error', (e: Error) => void (cause ||= e.message)) // the first error says why (ECONNREFUSED, ETIMEDOUT ...)
  try {
    await client.connect()
    await client.ping()
  } catch (e) {
    throw new UsageError({ where, what: `cannot reach Redis at ${t.display}`, found: show(cause || (e as Error).message, 80), hint: 'start redis-server there, or check --queue' })
  } finally {
    client.disconnect()
  }
}

/** BullMQ's connection options for a target (workers block on Redis: no per-request retry limit). */
export function bullConnection(t: RedisTarget): BullRedisOptions {
  return { ...(t.options as BullRedisOptions), maxRetriesPerRequest: null }
}

/** A chunk of a task: what a worker needs to score it. */
export interface ChunkJob {
  v: number
  run: string
  model: EvalModelSpec
  maxLength: number
  prefixToken: number
  batchTokens: number
  task: EvalTask
  /** Items of the whole task (indices are below this). */
  items: number
  docs: EvalDoc[]
}

/** A worker's answer: encodeItems() of the chunk's results, its speed, who scored it and at which attempt. */
export interface ChunkResult {
  items: unknown[]
  seconds: number
  stats: ScorerStats
  worker: string
  attempt: number
}

/** Default items per chunk: one document for perplexity (documents are long), 64 items otherwise. */
export function defaultChunkSize(task: EvalTask): number {
  return task.kind === 'perplexity' ? 1 : 64
}

export interface QueueRun {
  /** Per task (config.tasks order): every item's result and the workers' summed speed. */
  parts: EvalPart[]
  chunks: number
  workers: number
  /** Chunks that completed on a later attempt (a worker died or failed on them first). */
  retried: number
  wallSeconds: number
}

/**
 * Enqueues every task's items in chunks, waits until workers have scored all of them, and returns the
 * results by task. Throws when a chunk fails for good (its reason from the worker) or on Ctrl-C; the
 * run's jobs are removed from the queue in every case.
 */
export async function scoreOnQueue(
  t: RedisTarget, name: string, config: EvalRunConfig, planned: readonly { task: EvalTask; docs: readonly EvalDoc[] }[],
  chunkSize: number | undefined, progress: Progress | null,
): Promise<QueueRun> {
  const where = 'refgpt eval --queue'
  const run = Date.now().toString(36) + randomBytes(4).toString('hex')
  const jobs: { id: string; ti: number; data: ChunkJob }[] = []
  planned.forEach(({ task, docs }, ti) => {
    const k = chunkSize ?? defaultChunkSize(task)
    for (let c = 0; c * k < docs.length; c++) {
      jobs.push({
        id: `${run}-${ti}-${c}`, ti,
        data: {
          v: JOB_VERSION, run, model: config.model, maxLength: config.maxLength, prefixToken: config.prefixToken, batchTokens: config.batchTokens,
          task, items: config.tasks[ti].items, docs: docs.slice(c * k, (c + 1) * k),
        },
      })
    }
  })
  const pending = new Map(jobs.map((j) => [j.id, j]))
  const parts: EvalPart[] = planned.map(() => ({ items: [], seconds: 0, stats: { requests: 0, inputTokens: 0, computedTokens: 0, scoredTokens: 0 } }))
  const workers = new Set<string>()
  let retried = 0

  const connection = bullConnection(t)
  const queue = new Queue(name, { connection })
  // from the start of the event stream: no completion can slip by between listening and adding the jobs
  const events = new QueueEvents(name, { connection, lastEventId: '0-0' })
  queue.on('error', () => {})
  events.on('error', () => {})
  const t0 = performance.now()
  let stop: (e?: unknown) => void = () => {}
  const finished = new Promise<void>((resolve, reject) => (stop = (e) => (e ? reject(e) : resolve())))
  finished.catch(() => {}) // awaited below; a failure may come first
  const onSignal = () => stop(new RefgptError({ where, what: 'interrupted', hint: 'the run\'s chunks were removed from the queue' }))
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  events.on('completed', ({ jobId, returnvalue }) => {
    const job = pending.get(jobId)
    if (!job) return // another run's, or a completion already counted
    try {
      const r = checkResult(returnvalue as unknown, job, `${where}: chunk ${jobId}`)
      pending.delete(jobId)
      const part = parts[job.ti]
      for (const item of r.items) part.items.push(item)
      part.seconds += r.seconds
      for (const k of Object.keys(part.stats) as (keyof ScorerStats)[]) part.stats[k] += r.stats[k]
      workers.add(r.worker)
      if (r.attempt > 1) retried++
      progress?.update(jobs.length - pending.size)
      if (pending.size === 0) stop()
    } catch (e) {
      stop(e)
    }
  })
  events.on('failed', ({ jobId, failedReason }) => {
    const job = pending.get(jobId)
    if (!job) return
    const d = job.data.docs
    stop(new RefgptError({ where, what: `chunk ${jobId} (task ${job.data.task.name}, items ${d[0].index}-${d[d.length - 1].index}) failed on the workers`, found: show(failedReason, 200) }))
  })

  try {
    await events.waitUntilReady()
    if (progress) process.stderr.write(`refgpt eval: ${jobs.length} chunk${jobs.length === 1 ? '' : 's'} on queue ${name} at ${t.display}, for \`refgpt worker --queue ${t.display}${name === DEFAULT_QUEUE ? '' : ` --queue-name ${name}`}\`\n`)
    progress?.start('queue', jobs.length, 'chunks')
    await queue.addBulk(jobs.map((j) => ({
      name: j.data.task.name, data: j.data,
      opts: { jobId: j.id, attempts: ATTEMPTS, backoff: { type: 'fixed', delay: 1000 }, removeOnComplete: { age: 3600 }, removeOnFail: { age: 24 * 3600 } },
    })))
    await finished
    progress?.end()
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    // remove the run's jobs (a chunk still being scored is locked; it expires on its own: removeOnComplete)
    await Promise.allSettled(jobs.map((j) => queue.remove(j.id)))
    await Promise.allSettled([events.close(), queue.close()])
  }
  for (const p of parts) p.items.sort((a, b) => a.index - b.index)
  return { parts, chunks: jobs.length, workers: workers.size, retried, wallSeconds: (performance.now() - t0) / 1000 }
}

/** A worker's answer checked: well-formed results of exactly the chunk's items, each once. */
function checkResult(raw: unknown, job: { data: ChunkJob }, where: string): Omit<ChunkResult, 'items'> & { items: EvalPart['items'] } {
  const r = raw as ChunkResult
  const ok = typeof r === 'object' && r !== null && typeof r.seconds === 'number' && typeof r.worker === 'string' && Number.isSafeInteger(r.attempt) &&
    typeof r.stats === 'object' && r.stats !== null && ['requests', 'inputTokens', 'computedTokens', 'scoredTokens'].every((k) => Number.isSafeInteger((r.stats as any)[k]))
  if (!ok) throw new RefgptError({ where, what: 'a malformed answer from a worker', expected: '{items, seconds, stats, worker, attempt}', found: show(raw, 80) })
  const items = decodeItems(r.items, job.data.task, job.data.items, where)
  const want = job.data.docs.map((d) => d.index)
  const got = items.map((x) => x.index).sort((a, b) => a - b)
  if (got.length !== want.length || got.some((x, i) => x !== want[i]))
    throw new RefgptError({ where, what: `worker ${r.worker} answered other items than the chunk's`, expected: want.join(','), found: got.join(',') })
  return { ...r, items }
}
