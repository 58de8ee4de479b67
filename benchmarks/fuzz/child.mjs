// A fuzz worker process, started by run.mjs (never by hand). Modes, from the JSON job in argv[2]:
//   batch   generate and run inputs lo..hi-1, reporting on fd 3 one JSON line per event:
//             {t:'ready'}  {t:'s', i, target, k, tags}  {t:'e', i, c: ok|err|crash|skip, ms, ...}  {t:'done'}
//           The 's' line is written (synchronously) before the input runs, so when this process hangs,
//           blows its memory or dies, the parent knows which input did it.
//   save     regenerate one input and save it under the out folder (for hangs/aborts the parent saw)
//   repro    run one saved (or regenerated) input in this process and print what happened, with stacks
//
// Classification: the call returned -> ok; threw a RefgptError (or what the target's isClean accepts: serve's
// HttpError 4xx) -> err (clean); threw anything else, or left an unhandled rejection / uncaught exception
// behind -> crash.

import { writeSync, mkdirSync, rmSync } from 'node:fs'
import { join, relative } from 'node:path'
import { loadSavedCase, materialize, prepareEnv, saveCase } from './case.mjs'
import { buildSeeds } from './seeds.mjs'
import { describeError, expensiveSignature, safeString } from './classify.mjs'
import { makeCase, parseTargetSpec } from './targets.mjs'

const job = JSON.parse(process.argv[2] ?? '{}')
// whole stacks: the library frame of a stack overflow in native code sits below thousands of others
Error.stackTraceLimit = Infinity

function send(msg) {
  const line = Buffer.from(JSON.stringify(msg) + '\n')
  let off = 0
  while (off < line.length) {
    try {
      off += writeSync(3, line, off)
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e
    }
  }
}

async function setup(targets = []) {
  const core = await import('@refgpt/core')
  // the planted (test) target needs no seeds: skip building them
  const S = targets.length && targets.every((t) => t.startsWith('planted')) ? { outside: {} } : await buildSeeds(core)
  const work = job.workDir ?? join(process.env.TMPDIR ?? '/tmp', `refgpt-fuzz-${process.pid}`)
  mkdirSync(work, { recursive: true })
  const env = prepareEnv(work, S.outside)
  // targets that import more than @refgpt/core (serve: the CLI's request parsers) do it now, so that a
  // failed import stops the worker at start-up rather than making every input a crash
  for (const t of targets) await parseTargetSpec(t).target.prepare?.()
  // the golden target verifies against the tiny GPT-2 (loaded once, on first use)
  let goldenModel
  const ctx = {
    goldenModel: () => {
      if (!goldenModel) {
        const dir = join(work, 'golden-model')
        materialize({ main: '', entries: S.config[0].entries }, dir, env)
        goldenModel = core.loadModel(dir, { device: 'js' })
      }
      return goldenModel
    },
  }
  return { core, S, work, env, ctx }
}

/** Runs one case; returns { c: 'ok'|'err'|'crash', error? }. */
async function runOne(core, ctx, c, path, lateErrors) {
  const { target } = parseTargetSpec(c.target)
  let result
  try {
    await target.run(path, core, ctx, c)
    result = { c: 'ok' }
  } catch (e) {
    // clean: a RefgptError, or what the target calls a clean refusal (serve: an HttpError 4xx)
    result = e instanceof core.RefgptError || target.isClean?.(e) ? { c: 'err', error: e } : { c: 'crash', error: e }
  }
  // let rejections nobody awaited surface before the input is over
  await new Promise((r) => setImmediate(r))
  if (lateErrors.length) result = { c: 'crash', error: lateErrors.shift(), late: true }
  lateErrors.length = 0
  return result
}

async function batch() {
  const t0 = Date.now()
  const { core, S, work, env, ctx } = await setup(job.targets)
  const caseDir = join(work, 'case')
  const lateErrors = []
  process.on('unhandledRejection', (e) => lateErrors.push(e))
  process.on('uncaughtException', (e) => lateErrors.push(e))
  const skip = new Set(job.skip ?? [])
  const saved = new Map(Object.entries(job.saved ?? {})) // signature -> saves so far (run-wide, at spawn)
  const heap0 = process.memoryUsage().heapUsed
  send({ t: 'ready', ms: Date.now() - t0 })
  const T = job.targets.length
  let heapAfterFirst
  for (let i = job.lo; i < job.hi; i++) {
    if (Date.now() > job.deadline) break
    const spec = job.targets[i % T]
    const k = Math.floor(i / T)
    let c
    try {
      c = makeCase(spec, job.seed, k, S, undefined, job.sweep)
    } catch (e) {
      // a bug of the fuzzer, not of the library: reported apart, never as a finding
      send({ t: 'e', i, c: 'generror', error: describeError(e, spec) })
      continue
    }
    const skipSig = expensiveSignature(spec, c.tags)
    if (skip.has(skipSig)) {
      send({ t: 'e', i, c: 'skip' })
      continue
    }
    const path = materialize(c, caseDir, env)
    send({ t: 's', i, target: spec, k, tags: c.tags, sig: skipSig })
    const start = performance.now()
    const res = await runOne(core, ctx, c, path, lateErrors)
    const ms = performance.now() - start
    const msg = { t: 'e', i, c: res.c, ms: Math.round(ms * 10) / 10 }
    if (res.c === 'crash') {
      const d = describeError(res.error, spec)
      if (res.late) d.signature += '|late'
      msg.error = d
      const n = saved.get(d.signature) ?? 0
      if (n < job.maxSaves) {
        saved.set(d.signature, n + 1)
        msg.saved = saveCase(job.outDir, `crash-${spec.replace(':', '_')}-s${job.seed}-k${k}`, c, {
          class: 'crash', index: i, error: d, signature: d.signature, ms: msg.ms,
        })
      }
    }
    send(msg)
    if (heapAfterFirst === undefined) heapAfterFirst = process.memoryUsage().heapUsed
  }
  globalThis.gc?.()
  const heapEnd = process.memoryUsage().heapUsed
  send({ t: 'done', heapStart: heapAfterFirst ?? heap0, heapEnd, rss: process.memoryUsage().rss })
  rmSync(caseDir, { recursive: true, force: true })
  process.exit(0)
}

async function save() {
  // (the planted target needs neither seeds nor the library to be regenerated)
  const planted = job.target.startsWith('planted')
  const { S, work } = planted ? { S: {}, work: undefined } : await setup([job.target])
  const c = makeCase(job.target, job.seed, job.k, S, undefined, job.sweep)
  const dir = saveCase(job.outDir, job.name, c, job.info)
  if (work) rmSync(work, { recursive: true, force: true })
  process.stdout.write(dir + '\n')
  process.exit(0)
}

async function repro() {
  const { core, S, work, env, ctx } = await setup(job.target ? [job.target] : [])
  let c, info = {}
  if (job.path) ({ c, info } = loadSavedCase(job.path))
  else c = makeCase(job.target, job.seed, job.k, S, job.force, job.sweep)
  const lateErrors = []
  process.on('unhandledRejection', (e) => lateErrors.push(e))
  process.on('uncaughtException', (e) => lateErrors.push(e))
  const dir = join(work, 'case')
  const path = materialize(c, dir, env)
  const out = (s) => process.stdout.write(s + '\n')
  out(`target ${c.target}, seed ${c.seed}, k ${c.k}${info.class ? `, saved as ${info.class}` : ''}`)
  out(`mutations: ${c.tags.join(' ') || '(none)'}`)
  out(`files in ${dir}: ${Object.entries(c.entries).map(([p, e]) => (e instanceof Uint8Array ? `${p} (${e.length} B)` : `${p} -> ${JSON.stringify(e)}`)).join(', ')}`)
  out(`running ${job.path ? 'the saved input' : 'the regenerated input'} (a hang hangs here: stop it with Ctrl-C)...`)
  const start = performance.now()
  const res = await runOne(core, ctx, c, path, lateErrors)
  const ms = performance.now() - start
  const verdict = res.c === 'ok' ? 'CLEAN (returned)' : res.c === 'err' ? `CLEAN (${res.error instanceof core.RefgptError ? 'RefgptError' : `refused: ${res.error?.name}`})` : `CRASH${res.late ? ' (unhandled rejection / uncaught exception)' : ''}`
  out(`${verdict} in ${ms.toFixed(1)} ms, rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB`)
  if (res.error) {
    let e = res.error, depth = 0
    while (e && depth++ < 4) {
      out(e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : safeString(e))
      e = e instanceof Error ? e.cause : undefined
      if (e) out('caused by:')
    }
  }
  if (!job.keep) rmSync(work, { recursive: true, force: true })
  else out(`kept ${relative(process.cwd(), dir) || dir}`)
  process.exit(res.c === 'crash' ? 1 : 0)
}

const modes = { batch, save, repro }
const run = modes[job.mode]
if (!run) {
  process.stderr.write('benchmarks/fuzz/child.mjs is started by benchmarks/fuzz/run.mjs\n')
  process.exit(2)
}
run().catch((e) => {
  process.stderr.write(`fuzz worker failed: ${e?.stack ?? e}\n`)
  process.exit(3)
})
