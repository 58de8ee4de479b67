// What scripts/train-fortunes.mjs and scripts/train-default-models.mjs share: the Debian fortune packages
// (installed with apt-get when missing), their records, count-based n-gram baselines, and running
// `refgpt train` with its log read back.

import { spawn, spawnSync } from 'node:child_process'
import { existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const CLI = join(ROOT, 'packages/cli/dist/main.js')
export const FORTUNE_DIR = '/usr/share/games/fortunes'

/** Prints `name: msg` on stderr and exits with `code`. */
export function fatal(name, msg, code = 1) {
  console.error(`${name}: ${msg}`)
  process.exit(code)
}

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0

/** Installed version of a Debian package, or null. */
export function dpkgVersion(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}\t${Version}', pkg], { encoding: 'utf8' })
  if (r.status !== 0) return null
  const [status, version] = r.stdout.split('\t')
  return status.endsWith(' installed') ? version : null
}

/** Installs the missing ones of `pkgs` with apt-get (apt-get update first); exits 2 when that cannot be done. */
export function ensurePackages(name, pkgs, { install = true, log = console.log } = {}) {
  if (!has('dpkg-query') || !has('apt-get')) {
    fatal(
      name,
      `this script installs the Debian packages ${pkgs.join(', ')} with apt-get, and apt-get / dpkg are not available here.\n` +
        '  Run it on a Debian or Ubuntu machine (as root), or install those packages by other means and rerun.',
      2,
    )
  }
  const missing = pkgs.filter((p) => dpkgVersion(p) === null)
  if (missing.length === 0) return
  if (!install) fatal(name, `missing Debian packages ${missing.join(', ')} (and --no-install was given)`, 2)
  const asRoot = typeof process.getuid !== 'function' || process.getuid() === 0
  const sudo = !asRoot && has('sudo') ? ['sudo'] : []
  if (!asRoot && sudo.length === 0) fatal(name, `installing ${missing.join(', ')} needs root (or sudo)`, 2)
  log(`installing ${missing.join(' ')} with apt-get`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const run = (args) => {
    const cmd = [...sudo, 'apt-get', ...args]
    const r = spawnSync(cmd[0], cmd.slice(1), { stdio: 'inherit', env })
    if (r.status !== 0) fatal(name, `\`${cmd.join(' ')}\` failed (exit ${r.status})`, 2)
  }
  run(['update'])
  run(['install', '-y', '--no-install-recommends', ...missing])
  const still = missing.filter((p) => dpkgVersion(p) === null)
  if (still.length) fatal(name, `apt-get did not install ${still.join(', ')}`, 2)
}

/** The fortune text files of a package (dpkg -L): regular files under /usr/share/games/fortunes, no .dat/.u8. */
export function fortuneFiles(name, pkg) {
  const r = spawnSync('dpkg', ['-L', pkg], { encoding: 'utf8' })
  if (r.status !== 0) fatal(name, `dpkg -L ${pkg} failed`)
  return r.stdout
    .split('\n')
    .filter((f) => f.startsWith(FORTUNE_DIR + '/') && !/\.(dat|u8)$/.test(f))
    .filter((f) => {
      try {
        return lstatSync(f).isFile()
      } catch {
        return false
      }
    })
    .sort()
}

/** The records of a fortune file: split at lines holding a single '%', terminal colour escapes removed. */
export function fortuneRecords(file) {
  return readFileSync(file, 'utf8')
    .split(/^%[ \t\r]*$/m)
    .map((s) => s.replace(/\x1b\[[0-9;]*m/g, ''))
}

/**
 * The distinct records of fortune files, in file order: `clean(raw)` makes each record's text ('' drops it),
 * records longer than `capChars` characters (code points) are skipped, duplicates too. Returns the records
 * and the counts of what was read, skipped and dropped.
 */
export function collectRecords(files, { clean, capChars, count = (t) => [...t].length }) {
  const seen = new Set()
  const records = []
  let total = 0, tooLong = 0, dup = 0
  for (const f of files) {
    for (const raw of fortuneRecords(f)) {
      const t = clean(raw)
      if (!t) continue
      total++
      if (count(t) > capChars) {
        tooLong++
        continue
      }
      if (seen.has(t)) {
        dup++
        continue
      }
      seen.add(t)
      records.push(t)
    }
  }
  return { records, total, tooLong, dup }
}

/** `n` evenly spaced items of `a` (all of them when n >= a.length), in order. */
export function evenly(a, n) {
  if (n >= a.length) return a.slice()
  const out = []
  for (let k = 0; k < n; k++) out.push(a[Math.floor((k * a.length) / n)])
  return out
}

/** The built @refgpt/core (building the workspace first when its dist is missing). */
export async function loadCore(log = console.log) {
  if (!existsSync(CLI) || !existsSync(join(ROOT, 'packages/core/dist/index.js'))) {
    log('building the workspace (node scripts/build.mjs)')
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs')], { stdio: 'inherit', cwd: ROOT })
    if (r.status !== 0) fatal('build', 'the build failed', 1)
  }
  return import('@refgpt/core')
}

/**
 * Count-based reference points on the same targets: a unigram model (add-one smoothing over the vocabulary
 * of V ids) and an interpolated Witten-Bell bigram model, counted on the training (prev, next) pairs and
 * scored on the eval pairs. `trainPairs` / `evalPairs` call their argument with every (previous id, target
 * id) pair. A network that beats the bigram perplexity has learned more than which token tends to follow
 * which. Losses are mean natural-log negative log-likelihoods per target.
 */
export function ngramBaselines(V, trainPairs, evalPairs) {
  const uni = new Float64Array(V)
  const big = new Map() // prev -> Map(next -> count)
  let N = 0
  trainPairs((prev, next) => {
    uni[next]++
    N++
    let m = big.get(prev)
    if (!m) big.set(prev, (m = new Map()))
    m.set(next, (m.get(next) ?? 0) + 1)
  })
  const pUni = (w) => (uni[w] + 1) / (N + V)
  const ctx = new Map([...big].map(([h, m]) => [h, { total: [...m.values()].reduce((a, b) => a + b, 0), types: m.size, m }]))
  let nllUni = 0, nllBi = 0, n = 0
  evalPairs((prev, next) => {
    const pu = pUni(next)
    const c = ctx.get(prev)
    const pb = c ? ((c.m.get(next) ?? 0) + c.types * pu) / (c.total + c.types) : pu
    nllUni -= Math.log(pu)
    nllBi -= Math.log(pb)
    n++
  })
  return { unigramLoss: nllUni / n, bigramLoss: nllBi / n, targets: n }
}

/** Runs refgpt train (args after `node`); the full output goes to logFile, eval lines and ~20 step lines to the console. */
export function runTrain(args, logFile, prefix = '  ') {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    const chunks = []
    let pending = ''
    const onData = (d) => {
      chunks.push(d)
      pending += d.toString()
      let nl
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl)
        pending = pending.slice(nl + 1)
        const m = /^step (\d+)\/(\d+)/.exec(line)
        if (m) {
          const s = Number(m[1]), n = Number(m[2])
          if (s === 1 || s === n || s % Math.max(1, Math.round(n / 20)) === 0) console.log(`${prefix}${line}`)
        } else if (line.trim()) console.log(`${prefix}${line}`)
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.on('error', reject)
    child.on('close', (code) => {
      writeFileSync(logFile, Buffer.concat(chunks))
      if (code !== 0) reject(new Error(`refgpt train exited with ${code} (log: ${logFile})`))
      else resolvePromise()
    })
  })
}

/** A train_log.jsonl read back: steps, tokens, rates, first / last loss, the per-epoch evals. */
export function readTrainLog(file) {
  const rows = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
  const steps = rows.filter((r) => r.eval_loss === undefined)
  const evals = rows.filter((r) => r.eval_loss !== undefined)
  // tokens seen so far = tokens_per_s * elapsed_s (the trainer logs the running average); the training-only
  // rate leaves out the steps whose interval holds an eval (the first step after each epoch's eval).
  const evalSteps = new Set(evals.map((e) => e.step))
  let tok = 0, sec = 0, prevTok = 0, prevT = 0, prevStep = 0
  for (const r of steps) {
    const seen = r.tokens_per_s * r.elapsed_s
    if (!evalSteps.has(prevStep)) (tok += seen - prevTok), (sec += r.elapsed_s - prevT)
    prevTok = seen
    prevT = r.elapsed_s
    prevStep = r.step
  }
  const last = steps[steps.length - 1]
  return {
    steps: last?.step ?? 0,
    tokens: last ? Math.round(last.tokens_per_s * last.elapsed_s) : 0,
    elapsed: last?.elapsed_s ?? 0,
    tokensPerS: last?.tokens_per_s ?? 0,
    trainTokensPerS: sec > 0 ? tok / sec : 0,
    firstLoss: steps[0]?.loss,
    lastLoss: last?.loss,
    evals: evals.map((e, i) => ({ epoch: e.epoch !== undefined ? e.epoch + 1 : i + 1, step: e.step, loss: e.eval_loss, ppl: e.eval_ppl })),
  }
}

export const f2 = (x, d = 2) => (x === undefined || x === null || !Number.isFinite(x) ? '—' : x.toFixed(d))
export const fppl = (x) => (x >= 1000 ? x.toFixed(0) : x >= 100 ? x.toFixed(1) : x.toFixed(2))
