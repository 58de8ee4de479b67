#!/usr/bin/env node
// Load test of `refgpt serve`: starts the built server (packages/cli/dist/main.js) as a child process on a
// free port and drives POST /v1/completions with streaming requests (server-sent events) in three phases:
//   alone       ONE client, back-to-back requests for min(--duration, 15) s: the single-stream figures
//               (tokens/s, time to first token, latency)
//   concurrent  --clients clients (our own node:http loop), each back-to-back, for --duration s: latency and
//               TTFT percentiles, aggregate tokens/s, failed requests, the mean batch of the server's
//               decode steps, and the batching gain (aggregate tokens/s / alone tokens/s)
//   autocannon  autocannon (v8) with --clients connections for --duration s, the same streaming POST: its
//               latency percentiles (the full stream), requests/s, non-2xx, errors, timeouts
// and the server's resident memory (VmRSS of /proc/<pid>/status) after the warm-up, after the autocannon
// phase and 5 s after the server went idle again. "RSS flat": the RSS after idling is within 10 % (or 20 MB)
// of the RSS after the one-client phase, the steady state (its few hundred requests warm the JIT and the
// allocators' pools; the growth from the warm-up is reported beside it).
//
//   node benchmarks/serve-load.mjs (--model DIR | --shape NAME) [--clients 64] [--duration 60] [--parallel 16]
//        [--max-tokens 32] [--max-context N] [--max-queue M] [--threads N] [--json]
//
// e.g. node benchmarks/serve-load.mjs --model test/fixtures/models/gpt2-tiny --duration 5 --clients 16
//      node benchmarks/serve-load.mjs --shape gpt-neo-125M --duration 5 --clients 8 --parallel 8 --max-tokens 16
//
// Needs a build (node scripts/build.mjs). Every request: prompt "The quick brown fox", temperature 0.8, its own
// seed, max_tokens = --max-tokens, stream: true; so each generates max_tokens tokens unless an end-of-text
// token comes (what comes is counted). Tokens are counted twice: by the server's refgpt_generated_tokens_total
// (the delta over the phase's window) and by the SSE chunks with non-empty text received in the same window.
// The concurrent window ends at --duration: clients then start no new request, the ones in flight finish
// (their latencies count; the drain time is reported). TTFT = request sent -> first chunk with non-empty text
// (the first data chunk when none has text); latency = request sent -> "data: [DONE]". Percentiles are
// nearest-rank on the sorted samples (ms). A failed request is a non-200 status, a stream that does not end
// in [DONE] (or carries an error object or bad JSON) or a network error; any failure (autocannon's non-2xx,
// errors, timeouts and bodies not ending in [DONE] included) makes the exit code 1, as does a server exit
// code other than 0. The server is always stopped with SIGTERM (its exit code is reported), Ctrl-C included.
// The load generator runs on the same machine as the server: its CPU time is reported next to the server's.
// Output: human lines, then ONE JSON line {"bench":"serve-load", ...}; with --json, stdout has only the JSON
// line (the human lines go to stderr).
import { parseArgs } from 'node:util'
import { spawn } from 'node:child_process'
import { setMaxListeners } from 'node:events'
import { existsSync, readFileSync, statSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const MAIN = join(ROOT, 'packages/cli/dist/main.js')
const PROMPT = 'The quick brown fox'
const ALONE_MAX_S = 15
const IDLE_S = 5

const HELP = `Usage: node benchmarks/serve-load.mjs (--model DIR | --shape NAME) [options]

Starts \`refgpt serve\` on a free port and load-tests POST /v1/completions (streaming): one client alone,
then --clients concurrent clients, then autocannon; reports latency / TTFT percentiles, tokens/s, the
batching gain, failed requests and the server's RSS.

  --model DIR          a model folder (passed to the server)
  --shape NAME         random weights of a real shape instead (e.g. gpt-neo-125M; passed to the server)
  --clients N          concurrent clients / autocannon connections (default 64)
  --duration S         seconds per phase (default 60; the "alone" phase runs min(S, ${ALONE_MAX_S}))
  --parallel N         the server's --parallel (default 16)
  --max-tokens N       max_tokens of every request (default 32)
  --max-context N      the server's --max-context (default 128 with --model, 256 with --shape)
  --max-queue M        the server's --max-queue (default max(64, clients): no 429 by design)
  --threads N          the server's --threads (default: the server's, the number of cores)
  --json               stdout: only the final JSON line (human lines go to stderr)
  -h, --help           this help`

const fail = (msg) => {
  process.stderr.write(`serve-load: error: ${msg} (see --help)\n`)
  process.exit(2)
}

function parseOptions(argv) {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(HELP + '\n')
    process.exit(0)
  }
  const str = { type: 'string' }
  let values
  try {
    ;({ values } = parseArgs({
      args: argv,
      options: { model: str, shape: str, clients: str, duration: str, parallel: str, 'max-tokens': str, 'max-context': str, 'max-queue': str, threads: str, json: { type: 'boolean' } },
      strict: true,
      allowPositionals: false,
    }))
  } catch (e) {
    fail(e.message)
  }
  const o = { ...values }
  const int = (name, def, min, max = Infinity) => {
    if (o[name] === undefined) return def
    const s = o[name]
    const n = Number(s)
    if (!/^\d+$/.test(s) || !Number.isSafeInteger(n) || n < min || n > max)
      fail(`bad --${name}: expected an integer in [${min}, ${max === Infinity ? '∞' : max}], found ${JSON.stringify(s)}`)
    return n
  }
  if ((o.model === undefined) === (o.shape === undefined)) fail('give exactly one of --model DIR and --shape NAME')
  let model = null
  if (o.model !== undefined) {
    model = resolve(o.model)
    if (!existsSync(model) || !statSync(model).isDirectory()) fail(`--model ${JSON.stringify(o.model)} is not a folder`)
    if (!existsSync(join(model, 'config.json'))) fail(`--model ${JSON.stringify(o.model)} has no config.json (not a model folder)`)
  }
  if (o.shape !== undefined && !/^[A-Za-z0-9._-]+$/.test(o.shape)) fail(`bad --shape ${JSON.stringify(o.shape)}`)
  const clients = int('clients', 64, 1, 10000)
  const duration = int('duration', 60, 1, 86400)
  const parallel = int('parallel', 16, 1, 256)
  const maxTokens = int('max-tokens', 32, 1, 100000)
  const maxContext = int('max-context', model ? 128 : 256, 2)
  const maxQueue = int('max-queue', Math.max(64, clients), 0)
  const threads = int('threads', undefined, 1, 1024)
  if (maxTokens >= maxContext) fail(`--max-tokens ${maxTokens} leaves no room for the prompt in --max-context ${maxContext}`)
  if (!existsSync(MAIN)) fail(`${MAIN} is missing: build first (node scripts/build.mjs)`)
  return { model, shape: o.shape ?? null, clients, duration, parallel, maxTokens, maxContext, maxQueue, threads, json: o.json === true }
}

// --- small helpers --------------------------------------------------------------------------------------

/** Nearest-rank percentile of an ascending array (null when empty). */
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] : null)
const sortNum = (xs) => Float64Array.from(xs).sort()
const round = (x, d = 1) => (x == null || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d)
const fmt = (x, d = 1) => (x == null || !Number.isFinite(x) ? 'n/a' : x.toFixed(d))
/** Resolves after ms, or at once when `signal` aborts. */
const sleep = (ms, signal) => new Promise((r) => {
  const t = setTimeout(r, ms)
  signal?.addEventListener('abort', () => (clearTimeout(t), r()), { once: true })
})
const now = () => performance.now()

/** VmRSS of a process in MB (Linux /proc), else null. */
function rssMB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : null
  } catch {
    return null
  }
}
/** CPU seconds (user + system) of a process from /proc/<pid>/stat (USER_HZ 100), else null. */
function procCpuS(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ') // fields from 3 (state) on
    return (Number(f[11]) + Number(f[12])) / 100 // utime (14), stime (15)
  } catch {
    return null
  }
}
const selfCpuS = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

/** One plain GET (no keep-alive): {status, body}. */
function get(base, path, timeoutMs = 30000) {
  return new Promise((resolveGet, reject) => {
    const req = http.get(new URL(path, base), { agent: false, timeout: timeoutMs }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (body += d))
      res.on('end', () => resolveGet({ status: res.statusCode, body }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timed out`)))
    req.on('error', reject)
  })
}

/** /metrics: the sums (over label sets) of the counters we use, requests by status, and when it was read. */
async function metrics(base) {
  const t0 = now()
  const { status, body } = await get(base, '/metrics')
  const t = (t0 + now()) / 2
  if (status !== 200) throw new Error(`GET /metrics: HTTP ${status}`)
  const v = { t, tokens: 0, steps: 0, rows: 0, byStatus: {} }
  for (const line of body.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (!m) continue
    const x = Number(m[3])
    if (m[1] === 'refgpt_generated_tokens_total') v.tokens += x
    else if (m[1] === 'refgpt_batch_steps_total') v.steps += x
    else if (m[1] === 'refgpt_batch_rows_total') v.rows += x
    else if (m[1] === 'refgpt_requests_total') {
      const s = /status="([^"]*)"/.exec(m[2] ?? '')?.[1] ?? '?'
      const e = /endpoint="([^"]*)"/.exec(m[2] ?? '')?.[1] ?? '?'
      if (e === '/v1/completions') v.byStatus[s] = (v.byStatus[s] ?? 0) + x
    }
  }
  return v
}
function metricsDelta(a, b) {
  const dt = (b.t - a.t) / 1000
  const byStatus = {}
  for (const k of new Set([...Object.keys(a.byStatus), ...Object.keys(b.byStatus)])) {
    const d = (b.byStatus[k] ?? 0) - (a.byStatus[k] ?? 0)
    if (d) byStatus[k] = d
  }
  const steps = b.steps - a.steps
  return { s: dt, tokens: b.tokens - a.tokens, tokensPerS: (b.tokens - a.tokens) / dt, steps, rows: b.rows - a.rows, meanBatch: steps > 0 ? (b.rows - a.rows) / steps : null, byStatus }
}

// --- the server -------------------------------------------------------------------------------------------

function startServer(o) {
  const args = [MAIN, 'serve', ...(o.model ? ['--model', o.model] : ['--shape', o.shape]), '--port', '0', '--parallel', String(o.parallel),
    '--max-queue', String(o.maxQueue), '--max-context', String(o.maxContext), ...(o.threads ? ['--threads', String(o.threads)] : [])]
  // its own process group: a Ctrl-C in the terminal reaches this script only, which then stops the server with SIGTERM
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const srv = { child, pid: child.pid, args, stderrTail: [], stderrLines: 0, errorLines: [], exit: null, line: null }
  srv.exited = new Promise((r) => child.once('exit', (code, signal) => r((srv.exit = { code, signal }))))
  let errBuf = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (d) => {
    errBuf += d
    let i
    while ((i = errBuf.indexOf('\n')) >= 0) {
      const line = errBuf.slice(0, i)
      errBuf = errBuf.slice(i + 1)
      srv.stderrLines++
      srv.stderrTail.push(line)
      if (srv.stderrTail.length > 20) srv.stderrTail.shift()
      if (/error|exception|warn/i.test(line) && srv.errorLines.length < 20) srv.errorLines.push(line)
    }
  })
  srv.ready = new Promise((resolveReady, reject) => {
    let out = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (d) => {
      if (srv.line) return
      out += d
      const m = /^refgpt serve: (.+) on (http:\/\/\S+) \((.*)\)\s*$/m.exec(out)
      if (m) {
        srv.line = m[0].trim()
        srv.name = m[1]
        srv.url = m[2]
        resolveReady(srv)
      }
    })
    child.once('error', reject)
    srv.exited.then((e) => reject(new Error(`the server exited (code ${e.code}, signal ${e.signal}) before it listened:\n  ${srv.stderrTail.join('\n  ')}`)))
  })
  return srv
}

/** SIGTERM, wait for the exit (SIGKILL after graceS + 30 s); {code, signal, stop_s, killed}. */
async function stopServer(srv, graceS = 30) {
  if (srv.exit) return { ...srv.exit, stop_s: 0, killed: false, already: true }
  const t0 = now()
  try {
    process.kill(srv.pid, 'SIGTERM')
  } catch {}
  let killed = false
  const timer = setTimeout(() => {
    killed = true
    try {
      process.kill(srv.pid, 'SIGKILL')
    } catch {}
  }, (graceS + 30) * 1000)
  const e = await srv.exited
  clearTimeout(timer)
  return { code: e.code, signal: e.signal, stop_s: round((now() - t0) / 1000, 2), killed }
}

/** Waits until /health says no slot is busy and nothing is queued; seconds waited, or null on timeout. */
async function waitIdle(base, timeoutS = 120) {
  const t0 = now()
  while (now() - t0 < timeoutS * 1000) {
    try {
      const { status, body } = await get(base, '/health', 10000)
      if (status === 200) {
        const h = JSON.parse(body)
        if (!h.slots_busy && !h.queued) return (now() - t0) / 1000
      }
    } catch {}
    await sleep(100)
  }
  return null
}

// --- one streaming request --------------------------------------------------------------------------------

let nextSeed = 1
const bodyFor = (maxTokens) => JSON.stringify({ prompt: PROMPT, max_tokens: maxTokens, temperature: 0.8, seed: nextSeed++, stream: true })

/**
 * POST /v1/completions with stream: true, read to the end. Resolves (never rejects) with
 * {ok, kind (failure kind), status, ttft, latency (ms), chunks (data chunks), textChunks, finish}.
 * onText(t) is called with the time of each chunk with non-empty text.
 */
function streamRequest(base, agent, maxTokens, signal, onText) {
  return new Promise((done) => {
    const body = bodyFor(maxTokens)
    const r = { ok: false, kind: null, detail: null, status: 0, t0: 0, ttft: null, latency: null, chunks: 0, textChunks: 0, finish: null, sawDone: false }
    let settled = false
    const finish = (kind, detail) => {
      if (settled) return
      settled = true
      r.kind = kind
      r.detail = detail ?? null
      r.ok = kind === null
      done(r)
    }
    let firstAny = null
    const req = http.request(new URL('/v1/completions', base), {
      method: 'POST', agent, signal,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), accept: 'text/event-stream' },
    }, (res) => {
      r.status = res.statusCode
      res.setEncoding('utf8')
      let buf = ''
      let bad = null
      res.on('data', (d) => {
        const t = now()
        buf += d
        let i
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i)
          buf = buf.slice(i + 2)
          for (const line of ev.split('\n')) {
            if (!line.startsWith('data:')) continue
            const data = line.slice(5).trimStart()
            if (data === '[DONE]') {
              r.sawDone = true
              r.latency = t - r.t0
              continue
            }
            if (r.status !== 200) continue
            r.chunks++
            if (firstAny === null) firstAny = t
            let j
            try {
              j = JSON.parse(data)
            } catch {
              bad ??= `bad JSON in a chunk: ${data.slice(0, 80)}`
              continue
            }
            if (j.error) bad ??= `error event: ${JSON.stringify(j.error).slice(0, 120)}`
            const c = j.choices?.[0]
            if (c?.finish_reason) r.finish = c.finish_reason
            if (typeof c?.text === 'string' && c.text.length > 0) {
              r.textChunks++
              if (r.ttft === null) r.ttft = t - r.t0
              onText?.(t)
            }
          }
        }
        if (r.status !== 200 && buf.length < 2000) r.detail = buf
      })
      res.on('end', () => {
        if (r.ttft === null && firstAny !== null) r.ttft = firstAny - r.t0
        if (r.status !== 200) return finish(`http-${r.status}`, (r.detail ?? buf).slice(0, 200))
        if (bad) return finish('bad-stream', bad)
        if (!r.sawDone) return finish('no-done', `the stream ended after ${r.chunks} chunks without [DONE]`)
        finish(null)
      })
      res.on('error', (e) => finish('network', e.message))
      res.on('aborted', () => finish('network', 'response aborted'))
    })
    req.on('error', (e) => finish(signal?.aborted ? 'aborted' : 'network', `${e.code ?? ''} ${e.message}`.trim()))
    r.t0 = now()
    req.end(body)
  })
}

/**
 * `n` clients, each doing back-to-back requests until `deadline` (ms, performance.now(); null: one request each). Resolves when every
 * request in flight has finished: {results, perClient (requests each), textTimes (times of text chunks)}.
 */
async function runClients(base, n, deadline, maxTokens, signal) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity })
  const results = []
  const textTimes = []
  const perClient = new Array(n).fill(0)
  const onText = (t) => textTimes.push(t)
  const client = async (i) => {
    do {
      if (signal.aborted) break
      const r = await streamRequest(base, agent, maxTokens, signal, onText)
      if (r.kind === 'aborted') break
      r.client = i
      results.push(r)
      perClient[i]++
    } while (deadline !== null && now() < deadline)
  }
  try {
    await Promise.all(Array.from({ length: n }, (_, i) => client(i)))
  } finally {
    agent.destroy()
  }
  return { results, perClient, textTimes }
}

function summarize(results) {
  const ok = results.filter((r) => r.ok)
  const failed = results.filter((r) => !r.ok)
  const kinds = {}
  for (const r of failed) kinds[r.kind] = (kinds[r.kind] ?? 0) + 1
  const lat = sortNum(ok.map((r) => r.latency))
  const ttft = sortNum(ok.filter((r) => r.ttft !== null).map((r) => r.ttft))
  const finishes = {}
  for (const r of ok) finishes[r.finish ?? 'none'] = (finishes[r.finish ?? 'none'] ?? 0) + 1
  const tokensPerReq = sortNum(ok.map((r) => r.textChunks))
  return {
    requests: results.length, ok: ok.length, failed: failed.length, failures: kinds,
    failure_examples: [...new Set(failed.map((r) => `${r.kind}: ${r.detail ?? ''}`.trim()))].slice(0, 5),
    latency_ms: { p50: round(pct(lat, 50)), p95: round(pct(lat, 95)), max: round(pct(lat, 100)) },
    ttft_ms: { p50: round(pct(ttft, 50)), p95: round(pct(ttft, 95)), max: round(pct(ttft, 100)) },
    text_chunks_per_request: { min: pct(tokensPerReq, 0), p50: pct(tokensPerReq, 50), max: pct(tokensPerReq, 100) },
    finish_reasons: finishes,
  }
}

// --- main -------------------------------------------------------------------------------------------------

async function main() {
  const o = parseOptions(process.argv.slice(2))
  const say = (line) => (o.json ? process.stderr : process.stdout).write(line + '\n')
  const out = {
    bench: 'serve-load', model: o.model ? o.model.startsWith(ROOT + '/') ? o.model.slice(ROOT.length + 1) : o.model : null, shape: o.shape,
    clients: o.clients, duration_s: o.duration, parallel: o.parallel, max_tokens: o.maxTokens, max_context: o.maxContext, max_queue: o.maxQueue,
    threads: o.threads ?? null, cpus: os.availableParallelism?.() ?? os.cpus().length, node: process.version, prompt: PROMPT, temperature: 0.8,
  }
  const ac = new AbortController()
  setMaxListeners(0, ac.signal) // every request in flight listens to it
  let cannon = null
  let interrupted = null
  let srv = null
  const onSignal = (sig) => {
    if (interrupted) {
      // a second one: do not wait any more
      if (srv && !srv.exit) try { process.kill(srv.pid, 'SIGKILL') } catch {}
      process.exit(130)
    }
    interrupted = sig
    process.stderr.write(`serve-load: ${sig}: stopping the clients and the server (again to kill)\n`)
    ac.abort()
    cannon?.stop()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('SIGHUP', onSignal)
  process.on('exit', () => {
    if (srv && !srv.exit) try { process.kill(srv.pid, 'SIGKILL') } catch {}
  })
  const check = () => {
    if (interrupted) throw Object.assign(new Error(`interrupted (${interrupted})`), { interrupted: true })
  }

  let failedTotal = 0
  let error = null
  let rssPeak = 0
  let rssTimer = null
  try {
    const tLoad = now()
    srv = startServer(o)
    await Promise.race([srv.ready, new Promise((_, rej) => ac.signal.addEventListener('abort', () => rej(new Error('interrupted')), { once: true }))])
    check()
    const base = srv.url
    out.server = srv.line
    out.server_pid = srv.pid
    out.load_s = round((now() - tLoad) / 1000, 2)
    say(`server: ${srv.line} (pid ${srv.pid}, up in ${fmt(out.load_s, 1)} s)`)
    say(`load: ${o.clients} clients, ${o.duration} s per phase, max_tokens ${o.maxTokens}, temperature 0.8, prompt ${JSON.stringify(PROMPT)}; ${out.cpus} cores here (load generator and server share them)`)
    rssTimer = setInterval(() => { const r = rssMB(srv.pid); if (r !== null && r > rssPeak) rssPeak = r }, 250)

    // warm-up: one request alone, then `parallel` at once (every sequence slot's buffers touched)
    const tw = now()
    const w1 = await runClients(base, 1, null, o.maxTokens, ac.signal) // null: exactly one request each
    const w2 = await runClients(base, Math.min(o.parallel, o.clients), null, o.maxTokens, ac.signal)
    check()
    const warm = summarize([...w1.results, ...w2.results])
    out.warmup = { requests: warm.requests, failed: warm.failed, s: round((now() - tw) / 1000, 2) }
    failedTotal += warm.failed
    if (warm.failed) throw new Error(`the warm-up failed (${warm.failed}/${warm.requests}): ${warm.failure_examples.join('; ')}`)
    await waitIdle(base, 30)
    const rss0 = rssMB(srv.pid)
    say(`warm-up: ${warm.requests} requests in ${fmt(out.warmup.s, 1)} s; server RSS ${fmt(rss0, 1)} MB`)

    // phase 1: alone
    {
      const dur = Math.min(o.duration, ALONE_MAX_S)
      const m0 = await metrics(base), c0 = procCpuS(srv.pid), s0 = selfCpuS()
      const { results, textTimes } = await runClients(base, 1, now() + dur * 1000, o.maxTokens, ac.signal)
      const m1 = await metrics(base)
      check()
      const d = metricsDelta(m0, m1)
      const s = summarize(results)
      failedTotal += s.failed
      const chunksPerS = textTimes.length / d.s
      out.alone = {
        s: round(d.s, 2), ...s, tokens_server: d.tokens, tokens_chunks: textTimes.length,
        tokens_per_s: round(d.tokensPerS, 2), tokens_per_s_chunks: round(chunksPerS, 2), mean_batch: round(d.meanBatch, 2),
        server_status: d.byStatus, server_cpu_s: round(procCpuS(srv.pid) - c0, 2), client_cpu_s: round(selfCpuS() - s0, 2), rss_mb_after: round(rssMB(srv.pid)),
      }
      say(`alone (1 client, ${fmt(d.s, 1)} s): ${s.ok} requests, ${s.failed} failed; ${fmt(d.tokensPerS, 1)} tokens/s (server), ${fmt(chunksPerS, 1)} (chunks); ` +
        `TTFT p50 ${fmt(s.ttft_ms.p50)} p95 ${fmt(s.ttft_ms.p95)} ms; latency p50 ${fmt(s.latency_ms.p50)} p95 ${fmt(s.latency_ms.p95)} ms; mean batch ${fmt(d.meanBatch, 2)}; RSS ${fmt(out.alone.rss_mb_after)} MB`)
    }

    // phase 2: concurrent
    {
      const m0 = await metrics(base), c0 = procCpuS(srv.pid), s0 = selfCpuS()
      const t0 = now()
      const deadline = t0 + o.duration * 1000
      let mEnd = null, cEnd = null, sEnd = null
      const snap = (async () => {
        await sleep(Math.max(0, deadline - now()), ac.signal)
        if (ac.signal.aborted) return
        cEnd = procCpuS(srv.pid)
        sEnd = selfCpuS()
        mEnd = await metrics(base)
      })()
      const { results, perClient, textTimes } = await runClients(base, o.clients, deadline, o.maxTokens, ac.signal)
      const tDrained = now()
      await snap
      check()
      const m1 = await metrics(base)
      const d = metricsDelta(m0, mEnd) // the window: start -> deadline (all clients busy)
      const dAll = metricsDelta(m0, m1) // the whole phase, drain included
      const chunksIn = textTimes.filter((t) => t >= m0.t && t <= mEnd.t).length
      const chunksPerS = chunksIn / d.s
      const s = summarize(results)
      failedTotal += s.failed
      const pc = sortNum(perClient)
      const gain = out.alone.tokens_per_s > 0 ? d.tokensPerS / out.alone.tokens_per_s : null
      out.concurrent = {
        window_s: round(d.s, 2), drain_s: round((tDrained - deadline) / 1000, 2), ...s,
        requests_per_s: round(s.ok / ((tDrained - t0) / 1000), 2),
        tokens_server: d.tokens, tokens_chunks: chunksIn, tokens_per_s: round(d.tokensPerS, 2), tokens_per_s_chunks: round(chunksPerS, 2),
        tokens_per_s_with_drain: round(dAll.tokensPerS, 2), mean_batch: round(d.meanBatch, 2), batching_gain: round(gain, 2),
        requests_per_client: { min: pct(pc, 0), p50: pct(pc, 50), max: pct(pc, 100) },
        server_status: dAll.byStatus, server_cpu_s: round(cEnd - c0, 2), client_cpu_s: round(sEnd - s0, 2), rss_mb_after: round(rssMB(srv.pid)),
      }
      say(`concurrent (${o.clients} clients, ${fmt(d.s, 1)} s + ${fmt(out.concurrent.drain_s, 1)} s drain): ${s.ok} requests, ${s.failed} failed` +
        (s.failed ? ` ${JSON.stringify(s.failures)} e.g. ${s.failure_examples[0]}` : '') +
        `; ${fmt(d.tokensPerS, 1)} tokens/s (server), ${fmt(chunksPerS, 1)} (chunks); mean batch ${fmt(d.meanBatch, 2)} of ${o.parallel}; batching gain x${fmt(gain, 2)}`)
      say(`  latency p50 ${fmt(s.latency_ms.p50)} p95 ${fmt(s.latency_ms.p95)} max ${fmt(s.latency_ms.max)} ms; TTFT p50 ${fmt(s.ttft_ms.p50)} p95 ${fmt(s.ttft_ms.p95)} max ${fmt(s.ttft_ms.max)} ms; ` +
        `requests per client ${pct(pc, 0)}..${pct(pc, 100)}; CPU s in the window: server ${fmt(out.concurrent.server_cpu_s, 1)}, load generator ${fmt(out.concurrent.client_cpu_s, 1)}; RSS ${fmt(out.concurrent.rss_mb_after)} MB`)
    }

    // phase 3: autocannon
    {
      const { default: autocannon } = await import('autocannon')
      const m0 = await metrics(base), c0 = procCpuS(srv.pid)
      const headers = { 'content-type': 'application/json', accept: 'text/event-stream' }
      const timeoutS = Math.max(120, 2 * o.duration)
      const opts = {
        url: base, connections: o.clients, duration: o.duration, timeout: timeoutS, method: 'POST', headers,
        requests: [{ method: 'POST', path: '/v1/completions', headers, setupRequest: (req) => ({ ...req, body: bodyFor(o.maxTokens) }) }],
        verifyBody: (b) => typeof b === 'string' && b.endsWith('data: [DONE]\n\n'),
      }
      const res = await new Promise((resolveAc, reject) => {
        cannon = autocannon(opts, (err, r) => (err ? reject(err) : resolveAc(r)))
      })
      cannon = null
      const m1 = await metrics(base)
      const rssAfter = rssMB(srv.pid)
      check()
      const d = metricsDelta(m0, m1)
      const idleS = await waitIdle(base, 120)
      out.autocannon = {
        connections: o.clients, s: round(d.s, 2), timeout_s: timeoutS, requests: res.latency.totalCount, sent: res.requests.sent,
        requests_per_s: round(res.requests.average, 2), requests_per_s_total: round(res.latency.totalCount / o.duration, 2),
        latency_ms: { p50: res.latency.p50, p97_5: res.latency.p97_5, p99: res.latency.p99, mean: round(res.latency.mean), max: res.latency.max },
        non2xx: res.non2xx, errors: res.errors, timeouts: res.timeouts, not_done: res.mismatches, status_codes: Object.fromEntries(Object.entries(res.statusCodeStats).map(([k, v]) => [k, v.count])),
        tokens_per_s_server: round(d.tokensPerS, 2), mean_batch: round(d.meanBatch, 2), server_status: d.byStatus, server_cpu_s: round(procCpuS(srv.pid) - c0, 2),
        idle_after_s: round(idleS, 2),
      }
      failedTotal += res.non2xx + res.errors + res.mismatches // autocannon counts timeouts among its errors
      const a = out.autocannon
      say(`autocannon (${o.clients} connections, ${o.duration} s): ${a.requests} responses (${a.sent} sent), ${fmt(a.requests_per_s, 2)} requests/s (mean of 1 s samples), ` +
        `latency p50 ${a.latency_ms.p50} p97.5 ${a.latency_ms.p97_5} p99 ${a.latency_ms.p99} ms; non-2xx ${a.non2xx}, errors ${a.errors}, timeouts ${a.timeouts}, not ending in [DONE] ${a.not_done}`)
      say(`  server: ${fmt(d.tokensPerS, 1)} tokens/s, mean batch ${fmt(d.meanBatch, 2)}, requests by status ${JSON.stringify(d.byStatus)}; idle ${idleS === null ? 'NOT within 120 s' : `${fmt(idleS, 2)} s`} after autocannon stopped`)

      // RSS after idling
      await sleep(IDLE_S * 1000, ac.signal)
      check()
      const rssIdle = rssMB(srv.pid)
      const steady = out.alone.rss_mb_after ?? null
      const flat = steady === null || rssIdle === null ? null : rssIdle - steady <= Math.max(0.1 * steady, 20)
      out.rss_mb = { post_warmup: round(rss0), after_alone: steady, after_concurrent: out.concurrent.rss_mb_after, after_autocannon: round(rssAfter), after_idle: round(rssIdle), peak: rssPeak ? round(rssPeak) : null,
        growth: rss0 === null || rssIdle === null ? null : round(rssIdle - rss0), growth_after_alone: steady === null || rssIdle === null ? null : round(rssIdle - steady), flat }
      say(`server RSS: ${fmt(rss0)} MB after warm-up, ${fmt(steady)} MB after the one-client phase, ${fmt(rssAfter)} MB after autocannon, ${fmt(rssIdle)} MB after ${IDLE_S} s idle (peak ${rssPeak ? fmt(rssPeak) : 'n/a'} MB): ` +
        (flat === null ? 'RSS n/a (no /proc)' : flat ? 'RSS flat' : 'RSS NOT flat'))
    }
  } catch (e) {
    error = e
  } finally {
    if (rssTimer) clearInterval(rssTimer)
    if (srv) {
      cannon?.stop()
      ac.abort()
      const stop = await stopServer(srv)
      out.server_exit = stop
      if (srv.errorLines.length) out.server_errors = srv.errorLines
      out.server_stderr_lines = srv.stderrLines
      say(`server stopped: exit code ${stop.code}${stop.signal ? ` (signal ${stop.signal})` : ''} after ${fmt(stop.stop_s, 2)} s${stop.killed ? ' (KILLED: no exit after SIGTERM)' : ''}` +
        (srv.errorLines.length ? `; its stderr had ${srv.errorLines.length} error/warning lines, e.g. ${srv.errorLines[0]}` : ''))
    }
  }
  out.failed_total = failedTotal
  if (error) out.error = error.message
  if (interrupted) out.interrupted = interrupted
  out.ok = !error && failedTotal === 0 && out.server_exit?.code === 0
  if (error && !error.interrupted) process.stderr.write(`serve-load: error: ${error.message}\n`)
  process.stdout.write(JSON.stringify(out) + '\n')
  process.exitCode = interrupted ? 130 : out.ok ? 0 : 1
}

await main()
