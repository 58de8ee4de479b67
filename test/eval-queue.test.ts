// Evaluation on a queue (issue 11, item 7): `refgpt eval --queue redis://...` puts chunks on BullMQ, 3
// `refgpt worker` processes score them, and the numbers are bit for bit one process's; a worker killed
// mid-chunk (SIGKILL) loses its chunk to another worker, and every item is still counted once. Needs a
// local redis-server (Debian package redis-server), started here on a free port and always stopped.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { bitwiseEqual, evalFiles, MODEL, numbers } from './eval-files.js'
import { modelDir, refgpt } from './helpers.js'

const hasRedis = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
if (!hasRedis) console.log('  SKIP eval --queue: skipped: redis-server not installed (apt-get install redis-server)')

const BIN = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url))
// ioredis is a dependency of the CLI (BullMQ's driver); the test reads Redis with it too
const { Redis } = createRequire(fileURLToPath(new URL('../packages/cli/package.json', import.meta.url)))('ioredis')

const { at, lambadaFile, TASKS } = evalFiles('refgpt-eval-queue-')
// short locks so that a killed worker's chunk comes back within seconds
const STALL = ['--lock-duration', '2000', '--stalled-interval', '1000', '--threads', '1']

// --- processes: every one started here is killed at the end, whatever happens ----------------------------

interface Proc { child: ChildProcess; stdout: string; stderr: string; exit: Promise<number | null> }
const procs: Proc[] = []

function start(args: string[], cmd = process.execPath): Proc {
  const child = spawn(cmd, cmd === process.execPath ? [BIN, ...args] : args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const p: Proc = { child, stdout: '', stderr: '', exit: new Promise((resolve) => child.on('exit', (code) => resolve(code))) }
  child.stdout!.on('data', (d) => (p.stdout += d))
  child.stderr!.on('data', (d) => (p.stderr += d))
  procs.push(p)
  return p
}
const killAll = () => procs.forEach((p) => p.child.exitCode === null && p.child.signalCode === null && p.child.kill('SIGKILL'))
process.on('exit', killAll)

async function waitFor(p: Proc, re: RegExp, what: string, ms = 20000): Promise<RegExpMatchArray> {
  const t0 = Date.now()
  for (;;) {
    const m = re.exec(p.stderr)
    if (m) return m
    if (p.child.exitCode !== null) throw new Error(`${what}: the process exited (${p.child.exitCode}): ${p.stderr}`)
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms; stderr: ${p.stderr}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))
  try {
    return await Promise.race([p, t])
  } finally {
    clearTimeout(timer)
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

let url = ''
let redis: any = null

const worker = (queueName: string, ...extra: string[]) => start(['worker', '--queue', url, '--queue-name', queueName, ...STALL, ...extra])
const ready = (w: Proc) => waitFor(w, /waiting for chunks on /, 'worker start')

async function stop(workers: Proc[]) {
  workers.forEach((w) => w.child.kill('SIGTERM'))
  const codes = await within(Promise.all(workers.map((w) => w.exit)), 15000, 'workers stopping on SIGTERM')
  assert.equal(codes, workers.map(() => 0), 'workers exit 0 on SIGTERM')
  workers.forEach((w) => assert.match(w.stderr, /SIGTERM: stopping after the chunk in progress[^]*stopped\n$/))
}

const samples = (f: string) => readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l))

/** Keys the run left in Redis besides the queue's own bookkeeping (id counter, meta, event stream, stall check, marker). */
async function leftovers(queueName: string): Promise<string[]> {
  const keys: string[] = await redis.keys(`bull:${queueName}:*`)
  return keys.filter((k) => !/:(id|meta|events|stalled-check|marker)$/.test(k)).sort()
}

const q = suite('eval --queue: BullMQ on a local redis-server, refgpt worker processes')

q.before(async () => {
  if (!hasRedis) return
  const port = await freePort()
  const server = start(['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], 'redis-server')
  redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null })
  redis.on('error', () => {})
  const t0 = Date.now()
  for (;;) {
    try {
      await redis.connect()
      break
    } catch (e) {
      if (server.child.exitCode !== null || Date.now() - t0 > 10000) throw new Error(`redis-server did not start: ${server.stdout}${server.stderr} (${(e as Error).message})`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  url = `redis://127.0.0.1:${port}`
})

q.after(async () => {
  await redis?.quit().catch(() => {})
  killAll()
})

;(hasRedis ? q : q.skip)('3 workers score lambada, choice and perplexity chunks: the numbers of one process, bit for bit; workers stop on SIGTERM', async () => {
  const single = JSON.parse(refgpt([...TASKS, '--json', '--log-samples', at('single.jsonl')]).stdout)
  const workers = [worker('three'), worker('three'), worker('three')]
  await Promise.all(workers.map(ready))
  const e = start([...TASKS, '--json', '--queue', url, '--queue-name', 'three', '--chunk-size', '3', '--log-samples', at('queue.jsonl')])
  assert.is(await within(e.exit, 30000, 'refgpt eval --queue'), 0, e.stderr)
  const out = JSON.parse(e.stdout)
  bitwiseEqual(numbers(out), numbers(single), 'queue')
  assert.is(out.speed.input_tokens, single.speed.input_tokens, 'every token scored once')
  // 20 + 15 + 7 items in chunks of 3: 7 + 5 + 3 chunks
  assert.equal([out.queue.chunks, out.queue.retried_chunks, out.queue.name, out.queue.url, out.threads], [15, 0, 'three', `${url}/0`, null])
  assert.ok(out.queue.workers >= 1 && out.queue.workers <= 3, `workers ${out.queue.workers}`)
  // the per-item results: every item once, the same as one process's
  assert.equal(samples(at('queue.jsonl')), samples(at('single.jsonl')))
  // each chunk was scored by a worker, once
  const done = workers.flatMap((w) => [...w.stderr.matchAll(/\(chunk (\S+), attempt 1\): \d+ items in/g)].map((m) => m[1]))
  assert.is(done.length, 15)
  assert.is(new Set(done).size, 15)
  // the run's jobs are gone from Redis
  assert.equal(await leftovers('three'), [])
  await stop(workers)
})

;(hasRedis ? q : q.skip)('a worker killed mid-chunk: its chunk is scored again by another worker, every item counted once, the numbers of one process', async () => {
  const lambada = ['eval', 'lambada', '--model', MODEL, '--data', lambadaFile, '--no-progress']
  const single = JSON.parse(refgpt([...lambada, '--json']).stdout)
  // the only worker at first, and slow: it takes the first chunk and sits in it
  const slow = worker('kill', '--chunk-delay-ms', '3000')
  await ready(slow)
  const e = start([...lambada, '--json', '--queue', url, '--queue-name', 'kill', '--chunk-size', '2', '--log-samples', at('killed.jsonl')])
  const [, chunk] = await waitFor(slow, /\(chunk (\S+), attempt 1\): started/, 'the slow worker starting a chunk')
  await new Promise((r) => setTimeout(r, 500)) // its first item scored, waiting before the second
  slow.child.kill('SIGKILL')
  assert.is(await slow.exit, null, 'killed')
  assert.not.match(slow.stderr, /items in/, 'the killed worker finished no chunk')
  const workers = [worker('kill'), worker('kill')]
  assert.is(await within(e.exit, 40000, 'refgpt eval --queue after a kill'), 0, e.stderr)
  const out = JSON.parse(e.stdout)
  bitwiseEqual(numbers(out), numbers(single), 'after a kill')
  assert.equal([out.queue.chunks, out.queue.retried_chunks], [10, 1])
  // the killed worker's chunk: started again (attempt 2) and finished by one of the others
  const retried = workers.map((w) => new RegExp(`\\(chunk ${chunk}, attempt 2\\): 2 items in`).test(w.stderr))
  assert.equal(retried.filter(Boolean).length, 1, `chunk ${chunk} finished once on attempt 2: ${workers.map((w) => w.stderr).join('\n')}`)
  // every item exactly once
  const rows = samples(at('killed.jsonl'))
  assert.equal(rows.map((r) => r.index), Array.from({ length: 20 }, (_, i) => i))
  assert.equal(await leftovers('kill'), [])
  await stop(workers)
})

;(hasRedis ? q : q.skip)('errors: a bad URL, an unreachable Redis, a worker with another model (the chunk fails for good, no retries)', async () => {
  const lambada = ['eval', 'lambada', '--model', MODEL, '--data', lambadaFile, '--no-progress']
  const closed = await freePort()
  const cases: [string[], RegExp][] = [
    [[...lambada, '--queue', 'http://127.0.0.1:6379'], /refgpt eval: bad --queue URL scheme \(expected redis:\/\/HOST\[:PORT\]\[\/DB\]/],
    [[...lambada, '--queue', 'redis://127.0.0.1:6379/x'], /bad database number in --queue URL/],
    [[...lambada, '--queue', `redis://127.0.0.1:${closed}`], new RegExp(`refgpt eval: cannot reach Redis at redis://127.0.0.1:${closed}/0 \\(found "connect ECONNREFUSED`)],
    [['worker', '--queue', `redis://127.0.0.1:${closed}`], /refgpt worker: cannot reach Redis at/],
    [['worker', '--queue', 'redis//x'], /refgpt worker: bad --queue URL/],
    [['worker'], /refgpt worker: missing --queue/],
    [[...lambada, '--queue', url, '--threads', '2'], /--threads does not go with --queue/],
    [[...lambada, '--chunk-size', '2'], /--chunk-size goes with --queue/],
    [[...lambada, '--queue', url, '--chunk-size', '0'], /bad --chunk-size \(expected an integer >= 1/],
    [[...lambada, '--queue', url, '--queue-name', 'a:b'], /bad --queue-name/],
    [[...lambada, '--queue', url, '--shard', '0/2', '--out', at('x.json')], /--shard and --queue together/],
  ]
  for (const [args, re] of cases) {
    const t0 = Date.now()
    const r = refgpt(args)
    assert.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    assert.is(r.stdout, '')
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.match(r.stderr, re)
    assert.ok(Date.now() - t0 < 10000, `${args.join(' ')}: took ${Date.now() - t0} ms`)
  }
  // a worker whose --model is another folder: refused by fingerprint, and the eval says so
  const w = worker('other', '--model', modelDir('gpt2-tiny'))
  await ready(w)
  const e = start([...lambada, '--queue', url, '--queue-name', 'other', '--chunk-size', '20'])
  assert.is(await within(e.exit, 30000, 'refgpt eval --queue with a wrong worker'), 1)
  assert.is(e.stdout, '')
  assert.match(e.stderr, /refgpt: error: refgpt eval --queue: chunk \S+ \(task lambada, items \d+-\d+\) failed on the workers \(found ".*gpt2-tiny: not the model of this eval run/)
  assert.is([...w.stderr.matchAll(/: started\n/g)].length, 1, 'not retried')
  assert.equal(await leftovers('other'), [])
  await stop([w])
})

q.run()
