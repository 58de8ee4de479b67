#!/usr/bin/env node
// refgpt's input fuzzer. See README.md in this folder.
//
//   node benchmarks/fuzz/run.mjs --budget 2m [--seed N] [--workers K] [--out DIR] [--targets a,b] [--inputs N]
//   node benchmarks/fuzz/run.mjs --repro fuzz-out/crash-torch-s1-k42      re-run one saved input, with stacks
//   node benchmarks/fuzz/run.mjs --repro-case torch:42 --seed 1            regenerate and run input k=42 of torch
//   node benchmarks/fuzz/run.mjs --list                                     targets and their mutators
//
// This process only schedules: it hands index ranges to worker processes (child.mjs), watches each one
// (a per-input time limit and an RSS limit, read from /proc), records the input a worker was on when it
// hung, blew its memory or died, and restarts it after that input. Progress goes to stderr; the last
// line on stdout is one JSON summary. Exit status 1 when anything but clean inputs was found.

import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULT_TARGETS, TARGETS, parseTargetSpec } from './targets.mjs'

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
const CHILD = join(ROOT, 'benchmarks/fuzz/child.mjs')

const USAGE = `usage: node benchmarks/fuzz/run.mjs [options]
  --budget D        time budget: 90s, 2m, 30m, 1h (default 2m unless --inputs is given)
  --inputs N        stop after N inputs (with --budget: whichever comes first)
  --seed N          run seed (default 1): the same seed gives the same inputs
  --workers K       worker processes (default: the CPU count)
  --targets a,b     targets (default ${DEFAULT_TARGETS.join(',')})
  --out DIR         where findings are saved (default fuzz-out/)
  --hang-ms MS      per-input time limit (default 5000)
  --rss-mb MB       per-worker RSS limit (default 2048)
  --batch N         inputs per worker process (default 2000)
  --max-saves N     saved inputs per distinct finding (default 3)
  --max-repeat N    after N hangs/aborts/RSS kills of one kind, skip inputs of that kind (default 5)
  --core source|dist  run @refgpt/core from TypeScript source through tsx (default) or the built dist/
  --sweep           input k of a target uses its mutator k mod N (every mutator in a short run)
  --repro PATH      re-run a saved input (its folder or case.json) in one process and print the error
  --repro-case T:K  regenerate input K of target T (with --seed, optionally --force MUTATOR) and run it
  --keep            with --repro*: keep the materialized input folder
  --list            print the targets and their mutators`

function parseArgs(argv) {
  const o = {
    budgetMs: undefined, inputs: undefined, seed: 1, workers: Math.max(1, availableParallelism()), out: join(ROOT, 'fuzz-out'),
    targets: DEFAULT_TARGETS, hangMs: 5000, rssMb: 2048, batch: 2000, maxSaves: 3, maxRepeat: 5, core: 'source', pollMs: 100, progressS: 10,
  }
  const need = (i) => {
    if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`)
    return argv[i + 1]
  }
  const int = (s, name) => {
    const n = Number(s)
    if (!Number.isSafeInteger(n) || n < 0) usage(`${name} must be a non-negative integer, got ${JSON.stringify(s)}`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    switch (a) {
      case '--budget': o.budgetMs = parseDuration(need(i)); i++; break
      case '--inputs': o.inputs = int(need(i), a); i++; break
      case '--seed': o.seed = int(need(i), a); i++; break
      case '--workers': o.workers = Math.max(1, int(need(i), a)); i++; break
      case '--targets': o.targets = need(i).split(',').filter(Boolean); i++; break
      case '--out': o.out = resolve(need(i)); i++; break
      case '--hang-ms': o.hangMs = int(need(i), a); i++; break
      case '--rss-mb': o.rssMb = int(need(i), a); i++; break
      case '--batch': o.batch = Math.max(1, int(need(i), a)); i++; break
      case '--max-saves': o.maxSaves = int(need(i), a); i++; break
      case '--max-repeat': o.maxRepeat = Math.max(1, int(need(i), a)); i++; break
      case '--core': o.core = need(i); i++; break
      case '--poll-ms': o.pollMs = Math.max(10, int(need(i), a)); i++; break
      case '--progress-s': o.progressS = int(need(i), a); i++; break
      case '--repro': o.repro = resolve(need(i)); i++; break
      case '--repro-case': o.reproCase = need(i); i++; break
      case '--force': o.force = need(i); i++; break
      case '--keep': o.keep = true; break
      case '--sweep': o.sweep = true; break
      case '--list': o.list = true; break
      case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0)
      default: usage(`unknown option ${a}`)
    }
  }
  if (o.budgetMs === undefined && o.inputs === undefined) o.budgetMs = 120_000
  if (o.core !== 'source' && o.core !== 'dist') usage('--core is source or dist')
  for (const t of o.targets) {
    try {
      parseTargetSpec(t)
    } catch (e) {
      usage(e.message)
    }
  }
  return o
}

function usage(msg) {
  process.stderr.write(`fuzz: ${msg}\n${USAGE}\n`)
  process.exit(2)
}

function parseDuration(s) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s)
  if (!m) usage(`bad duration ${JSON.stringify(s)} (e.g. 90s, 2m, 30m, 1h)`)
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's']
}

const opts = parseArgs(process.argv.slice(2))
const nodeFlags = () => [...(opts.core === 'source' ? ['--conditions=source', '--import', 'tsx'] : []), `--max-old-space-size=${opts.rssMb + 1024}`, '--expose-gc']

if (opts.list) {
  for (const [name, t] of Object.entries(TARGETS)) process.stdout.write(`${name}${DEFAULT_TARGETS.includes(name) ? '' : name === 'planted' ? ' (tests only)' : ` (not in the default run: --targets ${name})`}: ${t.mutators.join(' ')}\n`)
  process.exit(0)
}
if (opts.repro || opts.reproCase) {
  let job
  if (opts.repro) job = { mode: 'repro', path: opts.repro, keep: opts.keep }
  else {
    const at = opts.reproCase.lastIndexOf(':')
    const target = opts.reproCase.slice(0, at), k = Number(opts.reproCase.slice(at + 1))
    if (at < 0 || !Number.isSafeInteger(k)) usage('--repro-case takes TARGET:K, e.g. torch:42')
    job = { mode: 'repro', target, k, seed: opts.seed, force: opts.force, sweep: opts.sweep, keep: opts.keep }
  }
  job.workDir = join(tmpdir(), `refgpt-fuzz-repro-${process.pid}`)
  const r = spawnSync(process.execPath, [...nodeFlags(), CHILD, JSON.stringify(job)], { cwd: ROOT, stdio: ['inherit', 'inherit', 'inherit', 'pipe'] })
  if (r.signal) process.stdout.write(`the input killed the process: ${r.signal} (an ABORT)\n`)
  process.exit(r.status ?? 1)
}

// ---------------------------------------------------------------------------------------------------
// The run

const start = Date.now()
let deadline = opts.budgetMs === undefined ? 8.64e15 : start + opts.budgetMs
// Ctrl-C: the workers (same process group) get the SIGINT too; stop, and report what was done
let interrupted = false
process.on('SIGINT', () => {
  if (interrupted) process.exit(130)
  interrupted = true
  deadline = Date.now()
  progress('interrupted: stopping (Ctrl-C again to quit at once)')
})
const end = opts.inputs ?? Number.MAX_SAFE_INTEGER
let next = 0
mkdirSync(opts.out, { recursive: true })

const zero = () => ({ inputs: 0, ok: 0, refgpt_error: 0, crash: 0, abort: 0, hang: 0, rss: 0, skipped: 0, ms: 0 })
const perTarget = Object.fromEntries(opts.targets.map((t) => [t, zero()]))
const total = zero()
const classes = new Map() // signature -> { class, target, count, ... }
const savedBySig = {} // crash signature -> saves (handed to new workers)
const repeats = new Map() // expensive signature -> hangs/aborts/RSS kills
const skip = new Set()
const slowest = []
let maxRssKb = 0, maxHeapGrowth = 0, children = 0, startupFailures = 0, generatorErrors = 0
const saves = []

function count(target, cls, ms = 0) {
  for (const c of [perTarget[target], total]) {
    if (!c) continue
    if (cls === 'skipped') c.skipped++
    else {
      c.inputs++
      c[cls]++
      c.ms += ms
    }
  }
}

function addClass(cls, target, sig, info) {
  let e = classes.get(sig)
  if (!e) classes.set(sig, (e = { class: cls, target, count: 0, signature: sig, ...info, saved: [] }))
  e.count++
  return e
}

/** Saves an input a worker could not report itself (hang, abort, RSS): a fresh process regenerates it. */
function saveLater(cls, cur, info) {
  const name = `${cls}-${cur.target.replace(':', '_')}-s${opts.seed}-k${cur.k}`
  const job = { mode: 'save', target: cur.target, seed: opts.seed, k: cur.k, sweep: opts.sweep, outDir: opts.out, name, info: { class: cls, index: cur.i, ...info } }
  const p = new Promise((res) => {
    const ch = spawn(process.execPath, [...nodeFlags(), CHILD, JSON.stringify(job)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe', 'ignore'] })
    let out = ''
    ch.stdout.on('data', (d) => (out += d))
    ch.on('close', () => res(out.trim() || null))
  })
  saves.push(p)
  return p
}

function readRssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
}

/** Runs one worker process over inputs [from, hi); resolves with where the next one should start. */
function runChild(w, from, hi) {
  return new Promise((resolvePromise) => {
    const workDir = join(tmpdir(), `refgpt-fuzz-${process.pid}-w${w}-${children}`)
    const job = {
      mode: 'batch', seed: opts.seed, targets: opts.targets, lo: from, hi, deadline, workDir, outDir: opts.out,
      skip: [...skip], saved: savedBySig, maxSaves: opts.maxSaves, sweep: opts.sweep,
    }
    children++
    const ch = spawn(process.execPath, [...nodeFlags(), CHILD, JSON.stringify(job)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] })
    let cur = null // the input in progress
    let last = null // the last input started
    let ready = false, done = false, killedFor = null
    let tail = ''
    const keepTail = (d) => (tail = (tail + d).slice(-4000))
    ch.stdout.on('data', keepTail)
    ch.stderr.on('data', keepTail)
    let buf = ''
    ch.stdio[3].on('data', (d) => {
      buf += d
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        onMessage(JSON.parse(line))
      }
    })
    const onMessage = (m) => {
      if (m.t === 'ready') {
        ready = true
      } else if (m.t === 's') {
        startupFailures = 0
        cur = last = { ...m, t0: Date.now() }
      } else if (m.t === 'e') {
        const target = opts.targets[m.i % opts.targets.length]
        if (m.c === 'skip') count(target, 'skipped')
        else if (m.c === 'generror') {
          generatorErrors++
          if (generatorErrors <= 3) progress(`fuzzer bug: generating ${target} input ${m.i}: ${m.error.name}: ${m.error.message} @ ${m.error.top}`)
        } else {
          const cls = { ok: 'ok', err: 'refgpt_error', crash: 'crash' }[m.c]
          count(target, cls, m.ms)
          if (m.ms > 50 && (slowest.length < 5 || m.ms > slowest[4].ms)) {
            slowest.push({ target, k: Math.floor(m.i / opts.targets.length), ms: m.ms, tags: cur?.tags })
            slowest.sort((a, b) => b.ms - a.ms).splice(5)
          }
          if (m.c === 'crash') {
            const e = addClass('crash', target, m.error.signature, { message: m.error.message.split('\n')[0].slice(0, 300), top: m.error.top, first: { index: m.i, k: Math.floor(m.i / opts.targets.length) } })
            if (m.saved) {
              e.saved.push(m.saved)
              savedBySig[m.error.signature] = (savedBySig[m.error.signature] ?? 0) + 1
            }
            if (e.count === 1) progress(`new crash class (${target}): ${m.error.name}: ${m.error.message.split('\n')[0].slice(0, 160)} @ ${m.error.top}`)
          }
        }
        cur = null
      } else if (m.t === 'done') {
        done = true
        maxHeapGrowth = Math.max(maxHeapGrowth, m.heapEnd - m.heapStart)
      }
    }
    const spawnedAt = Date.now()
    const timer = setInterval(() => {
      const rss = readRssKb(ch.pid)
      maxRssKb = Math.max(maxRssKb, rss)
      if (killedFor) return
      if (rss > opts.rssMb * 1024) killedFor = 'rss'
      else if (cur && Date.now() - cur.t0 > opts.hangMs) killedFor = 'hang'
      else if (!ready && Date.now() > spawnedAt + 180_000) killedFor = 'startup'
      if (killedFor) ch.kill('SIGKILL')
    }, opts.pollMs)
    ch.on('close', (code, signal) => {
      clearInterval(timer)
      rmSync(workDir, { recursive: true, force: true })
      if (!ready) {
        if (++startupFailures >= 3 || killedFor === 'startup') {
          process.stderr.write(`fuzz: a worker failed to start (exit ${code ?? signal}):\n${tail}\n`)
          process.exit(2)
        }
        return resolvePromise(from)
      }
      if (done && !killedFor) return resolvePromise(hi)
      if (interrupted && !killedFor) return resolvePromise(hi) // Ctrl-C, not the input
      // hung, over its RSS limit, or died: blame the input in progress (or, between inputs, the last one)
      const victim = cur ?? last
      if (!victim) {
        // died after starting but before its first input: the worker itself is broken
        if (++startupFailures >= 3) {
          process.stderr.write(`fuzz: workers keep dying before their first input (exit ${code ?? signal}):\n${tail}\n`)
          process.exit(2)
        }
        return resolvePromise(from)
      }
      const cls = killedFor ?? 'abort'
      const target = victim.target
      const sig = `${cls}|${victim.sig}`
      const detail = cls === 'abort' ? { exit: code, signal, between_inputs: !cur, output_tail: tail.slice(-1500) } : cls === 'rss' ? { rss_mb_limit: opts.rssMb } : { hang_ms: opts.hangMs }
      count(target, cls)
      const e = addClass(cls, target, sig, { message: cls === 'abort' ? `exit ${code ?? ''} signal ${signal ?? ''}: ${lastLine(tail)}` : cls, top: '', tags: victim.tags, first: { index: victim.i, k: victim.k } })
      if (e.count === 1) progress(`new ${cls} (${target} k=${victim.k}): ${victim.tags.join(' ')}`)
      if (e.saved.length < opts.maxSaves) {
        e.saved.push(`(saving ${cls}-${target}-s${opts.seed}-k${victim.k})`)
        const slot = e.saved.length - 1
        saveLater(cls, victim, { signature: sig, tags: victim.tags, ...detail }).then((dir) => (e.saved[slot] = dir))
      }
      const n = (repeats.get(victim.sig) ?? 0) + 1
      repeats.set(victim.sig, n)
      if (n >= opts.maxRepeat) skip.add(victim.sig)
      resolvePromise(victim.i + 1)
    })
  })
}

function lastLine(s) {
  const lines = s.trim().split('\n').filter((l) => l.trim())
  return (lines.find((l) => /fatal|error|abort/i.test(l)) ?? lines[lines.length - 1] ?? '').slice(0, 300)
}

// with --inputs, split the inputs over the workers even when there are fewer than a batch per worker
const batch = opts.inputs === undefined ? opts.batch : Math.min(opts.batch, Math.max(50, Math.ceil(opts.inputs / opts.workers)))

async function worker(w) {
  while (Date.now() < deadline && next < end) {
    const lo = next
    const hi = Math.min(end, lo + batch)
    next = hi
    let from = lo
    while (from < hi && Date.now() < deadline) from = await runChild(w, from, hi)
  }
}

function progress(msg) {
  process.stderr.write(`[fuzz ${elapsed()}] ${msg}\n`)
}
function elapsed() {
  const s = Math.floor((Date.now() - start) / 1000)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}
function statusLine() {
  const rate = total.inputs / Math.max(0.001, (Date.now() - start) / 1000)
  return `inputs ${total.inputs} (${rate.toFixed(1)}/s) ok ${total.ok} refgpt-error ${total.refgpt_error} crash ${total.crash} abort ${total.abort} hang ${total.hang} rss ${total.rss}` +
    `${total.skipped ? ` skipped ${total.skipped}` : ''} | classes ${classes.size} | max rss ${Math.round(maxRssKb / 1024)} MB`
}

progress(`seed ${opts.seed}, ${opts.workers} worker(s), targets ${opts.targets.join(',')}, ${opts.budgetMs !== undefined ? `budget ${opts.budgetMs / 1000}s` : ''}${opts.inputs !== undefined ? ` inputs ${opts.inputs}` : ''}, out ${opts.out}`)
const ticker = opts.progressS > 0 ? setInterval(() => progress(statusLine()), opts.progressS * 1000) : null
await Promise.all(Array.from({ length: opts.workers }, (_, w) => worker(w)))
if (ticker) clearInterval(ticker)
await Promise.all(saves)
const duration = (Date.now() - start) / 1000
progress(statusLine())

const findings = total.crash + total.abort + total.hang + total.rss
const summary = {
  fuzz: 'refgpt',
  seed: opts.seed,
  sweep: opts.sweep === true,
  interrupted,
  budget_s: opts.budgetMs === undefined ? null : opts.budgetMs / 1000,
  inputs_cap: opts.inputs ?? null,
  duration_s: Math.round(duration * 10) / 10,
  workers: opts.workers,
  core: opts.core,
  inputs: total.inputs,
  inputs_per_s: Math.round((total.inputs / duration) * 10) / 10,
  clean: total.ok + total.refgpt_error,
  ok: total.ok,
  refgpt_error: total.refgpt_error,
  crashes: total.crash,
  aborts: total.abort,
  hangs: total.hang,
  rss_over: total.rss,
  skipped: total.skipped,
  generator_errors: generatorErrors,
  max_rss_mb: Math.round(maxRssKb / 1024),
  max_heap_growth_mb: Math.round((maxHeapGrowth / 2 ** 20) * 10) / 10,
  children,
  targets: Object.fromEntries(Object.entries(perTarget).map(([t, c]) => [t, { ...c, ms: undefined, mean_ms: c.inputs ? Math.round((c.ms / c.inputs) * 100) / 100 : 0 }])),
  slowest,
  classes: [...classes.values()].sort((a, b) => b.count - a.count),
  out: opts.out,
}
writeFileSync(join(opts.out, 'summary.json'), JSON.stringify(summary, null, 1) + '\n')
process.stdout.write(JSON.stringify(summary) + '\n')
process.exit(findings > 0 ? 1 : 0)
