#!/usr/bin/env node
// Compares the `refgpt bench` figures of two builds in ONE run: the runs of both sides are
// interleaved (ABBA: old new new old old new ...), each a fresh process, so that the noise of a
// shared machine falls on both alike; then one table per shape of medians, ratios and ranges.
//
//   node benchmarks/compare.mjs --old REF [--new DIR_OR_REF] --shape NAME [--shape NAME ...]
//        --dtype f32|f16|bf16|q8 [--runs 5] [--prompt-tokens 128] [--new-tokens 32] [--threads N]
//        [--extra '--layers 2'] [--json]
//
// REF is checked out as a detached git worktree at $TMPDIR/refgpt-compare-<sha> (kept and reused by
// later runs), installed offline-first from the shared pnpm store and built. --new defaults to this
// working tree, measured as built (its packages/cli/dist). Plain ESM with no imports from the
// workspace, so it works whatever state the packages are in. See benchmarks/README.md.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const HELP = `Usage: node benchmarks/compare.mjs --old REF [--new DIR_OR_REF] --shape NAME [--shape NAME ...] --dtype TYPE [options]

Runs \`refgpt bench --json\` of two builds interleaved (ABBA order, a fresh process per run) and
prints, per shape, the median of each figure on both sides, new/old and the min..max of each.

  --old REF            git commit / branch / tag of this repo: checked out as a detached worktree at
                       ${join(os.tmpdir(), 'refgpt-compare-<sha>')} (reused when already built), then
                       \`pnpm install --frozen-lockfile --prefer-offline\` and \`node scripts/build.mjs\`
  --new DIR_OR_REF     a built tree (folder with packages/cli/dist/main.js) or a git ref (worktree as
                       for --old); default: this working tree, as built
  --shape NAME         a shape of \`refgpt bench --shape\` (repeatable; shapes run one after another)
  --dtype TYPE         f32 | f16 | bf16 | q8 (or inside --extra)
  --runs N             runs per side and shape (default 5)
  --prompt-tokens N    (default 128)    --new-tokens N   (default 32)
  --threads N          wasm pool size (default: the CLI's, the number of cores)
  --extra 'ARGS'       more \`refgpt bench\` options for both sides, e.g. '--layers 2'; repeatable.
                       --prompt-tokens / --new-tokens / --threads / --dtype given here replace the
                       defaults above (giving one both ways is an error)
  --json               one JSON line per (shape, metric) on stdout; the tables then go to stderr
  -h, --help           this help

Exit status: 0 done; 2 bad options, unknown ref or shape, a tree without a build; 1 a bench run,
an install or a build failed (its output tail is printed).`

const fail = (code, msg) => {
  process.stderr.write(`compare: error: ${msg}\n`)
  process.exit(code)
}
const usage = (msg) => fail(2, `${msg} (see --help)`)

// ---------------------------------------------------------------- options

const SPEC = {
  old: 'string', new: 'string', shape: 'list', dtype: 'string', runs: 'string',
  'prompt-tokens': 'string', 'new-tokens': 'string', threads: 'string', extra: 'list',
  json: 'boolean', help: 'boolean',
}
function parseOptions(argv) {
  const o = { shape: [], extra: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '-h') { o.help = true; continue }
    const m = /^--([^=]+)(?:=(.*))?$/s.exec(a)
    if (!m) usage(`unexpected argument ${JSON.stringify(a)}`)
    const [, name, inline] = m
    const kind = SPEC[name]
    if (!kind) usage(`unknown option --${name}`)
    if (kind === 'boolean') {
      if (inline !== undefined) usage(`--${name} takes no value`)
      o[name] = true
      continue
    }
    // the value is the next argument verbatim, even when it starts with '-' (--extra '--layers 2')
    let value = inline
    if (value === undefined) {
      if (i + 1 >= argv.length) usage(`--${name} needs a value`)
      value = argv[++i]
    }
    if (kind === 'list') o[name].push(value)
    else if (o[name] !== undefined) usage(`--${name} given twice`)
    else o[name] = value
  }
  return o
}
function intArg(name, value, def, min = 1) {
  if (value === undefined) return def
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value)) || Number(value) < min)
    usage(`bad --${name} ${JSON.stringify(value)}: expected an integer >= ${min}`)
  return Number(value)
}
/** Shell-like split: whitespace separates, '...' and "..." quote, backslash escapes. */
function splitArgs(s) {
  const out = []
  let cur = null
  let q = null
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (q) {
      if (c === q) q = null
      else if (c === '\\' && q === '"' && i + 1 < s.length) cur += s[++i]
      else cur += c
    } else if (/\s/.test(c)) {
      if (cur !== null) out.push(cur), (cur = null)
    } else if (c === '"' || c === "'") {
      q = c
      cur ??= ''
    } else if (c === '\\' && i + 1 < s.length) cur = (cur ?? '') + s[++i]
    else cur = (cur ?? '') + c
  }
  if (q) usage(`unbalanced quote in --extra ${JSON.stringify(s)}`)
  if (cur !== null) out.push(cur)
  return out
}

const DTYPES = ['f32', 'f16', 'bf16', 'q8']
// bench options this script sets itself, and those --extra may not carry
const MANAGED = { '--dtype': 'dtype', '--threads': 'threads', '-t': 'threads', '--prompt-tokens': 'prompt-tokens', '--new-tokens': 'new-tokens' }
const FORBIDDEN = { '--shape': 'use compare\'s --shape', '--json': 'compare always passes it', '--model': 'compare measures --shape runs', '-m': 'compare measures --shape runs', '--help': '', '-h': '' }

const opt = parseOptions(process.argv.slice(2))
if (opt.help) {
  process.stdout.write(HELP + '\n')
  process.exit(0)
}
if (opt.old === undefined) usage('missing --old REF')
if (opt.shape.length === 0) usage('missing --shape NAME')
if (new Set(opt.shape).size !== opt.shape.length) usage('a --shape is given twice')
const runs = intArg('runs', opt.runs, 5)

// --extra: split, then pull out the options compare manages so each is passed exactly once
const extra = opt.extra.flatMap(splitArgs)
const fromExtra = {}
for (let i = 0; i < extra.length; i++) {
  const t = extra[i]
  if (!t.startsWith('-')) continue
  const [flag, inline] = t.startsWith('--') && t.includes('=') ? [t.slice(0, t.indexOf('=')), t.slice(t.indexOf('=') + 1)] : [t, undefined]
  if (flag in FORBIDDEN) usage(`--extra may not contain ${flag}${FORBIDDEN[flag] ? `: ${FORBIDDEN[flag]}` : ''}`)
  const name = MANAGED[flag]
  if (!name) continue
  const value = inline ?? extra[i + 1]
  if (value === undefined || (inline === undefined && value.startsWith('-'))) usage(`${flag} in --extra needs a value`)
  if (opt[name] !== undefined) usage(`--${name} given both as an option and in --extra`)
  if (fromExtra[name] !== undefined) usage(`${flag} given twice in --extra`)
  fromExtra[name] = value
  extra.splice(i, inline === undefined ? 2 : 1)
  i--
}
const dtype = opt.dtype ?? fromExtra.dtype
if (dtype === undefined) usage('missing --dtype (f32 | f16 | bf16 | q8)')
if (!DTYPES.includes(dtype)) usage(`bad --dtype ${JSON.stringify(dtype)}: expected one of ${DTYPES.join(', ')}`)
const promptTokens = intArg('prompt-tokens', opt['prompt-tokens'] ?? fromExtra['prompt-tokens'], 128)
const newTokens = intArg('new-tokens', opt['new-tokens'] ?? fromExtra['new-tokens'], 32)
const threadsValue = opt.threads ?? fromExtra.threads
const threads = threadsValue === undefined ? undefined : intArg('threads', threadsValue, undefined)
/** The bench options after --shape S, the same for both sides. */
const benchArgs = [
  '--dtype', dtype, '--prompt-tokens', String(promptTokens), '--new-tokens', String(newTokens),
  ...(threads === undefined ? [] : ['--threads', String(threads)]),
  ...extra,
]

// human output: stdout, or stderr when stdout carries the JSON lines
const say = (line = '') => (opt.json ? process.stderr : process.stdout).write(line + '\n')
const note = (line) => process.stderr.write(line + '\n')

// ---------------------------------------------------------------- git, trees

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
function git(args, cwd = root) {
  const r = spawnSync('git', args, { cwd, encoding: 'utf8' })
  return { ok: r.status === 0, out: (r.stdout ?? '').trim(), err: (r.stderr ?? '').trim() || String(r.error ?? '') }
}
const commonDir = (cwd) => {
  const r = git(['rev-parse', '--path-format=absolute', '--git-common-dir'], cwd)
  return r.ok ? realpathSync(r.out) : null
}
if (!git(['rev-parse', '--is-inside-work-tree']).ok) fail(2, `${root} is not a git working tree`)
const repoGit = commonDir(root)
const resolveRef = (ref) => {
  const r = git(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`])
  return r.ok && r.out ? r.out : null
}
const CLI = 'packages/cli/dist/main.js'
const MARKER = 'node_modules/.refgpt-compare-built' // ignored by git; written after a good build

/** A side: { label, ref, sha, dir, kind: 'worktree' | 'tree' }. Worktrees are prepared later. */
function side(label, spec) {
  if (spec === undefined || (existsSync(spec) && statSync(spec).isDirectory())) {
    const dir = realpathSync(spec ?? root)
    const head = git(['rev-parse', 'HEAD'], dir)
    const dirty = head.ok ? git(['status', '--porcelain', '--untracked-files=no'], dir).out.split('\n').filter(Boolean).length : 0
    return {
      label, dir, kind: 'tree', ref: spec ?? 'working tree',
      sha: head.ok ? head.out : null, dirty: dirty > 0,
      shaText: head.ok ? `${head.out.slice(0, 12)}${dirty ? ` + ${dirty} modified file${dirty > 1 ? 's' : ''}` : ''}` : '(not a git tree)',
    }
  }
  const sha = resolveRef(spec)
  if (!sha) usage(`--${label} ${JSON.stringify(spec)} is neither a folder nor a commit of ${root}`)
  const dir = join(os.tmpdir(), `refgpt-compare-${sha.slice(0, 12)}`)
  return { label, dir, kind: 'worktree', ref: spec, sha, shaText: sha.slice(0, 12) }
}
const sides = { old: side('old', opt.old), new: side('new', opt.new) }
for (const s of Object.values(sides))
  if (s.kind === 'tree' && !existsSync(join(s.dir, CLI)))
    fail(2, `${s.label} tree ${s.dir} has no ${CLI}: build it first (node scripts/build.mjs there)`)

/** Build outputs older than their sources (an unbuilt edit in the tree measured as built). */
function staleness(dir) {
  const newest = (p) => {
    if (!existsSync(p)) return [0, p]
    const st = statSync(p)
    if (!st.isDirectory()) return [st.mtimeMs, p]
    return readdirSync(p).reduce((best, f) => { const c = newest(join(p, f)); return c[0] > best[0] ? c : best }, [0, p])
  }
  const found = []
  const pkgs = join(dir, 'packages')
  for (const pkg of existsSync(pkgs) ? readdirSync(pkgs) : []) {
    const info = join(pkgs, pkg, 'tsconfig.tsbuildinfo')
    if (existsSync(info)) {
      const [t, f] = newest(join(pkgs, pkg, 'src'))
      if (t > statSync(info).mtimeMs) found.push(f.slice(dir.length + 1))
    }
  }
  const wasm = join(pkgs, 'wasm/build/refgpt.wasm')
  if (existsSync(wasm)) {
    const [t, f] = newest(join(pkgs, 'wasm/assembly'))
    if (t > statSync(wasm).mtimeMs) found.push(f.slice(dir.length + 1))
  }
  return found
}

/** What `refgpt bench --help` of a tree offers: its shapes and option names (null: unreadable). */
function benchHelp(s) {
  const r = spawnSync(process.execPath, [join(s.dir, CLI), 'bench', '--help'], { cwd: s.dir, encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) {
    note(tail(`${r.stdout ?? ''}${r.stderr ?? ''}`))
    fail(1, `the ${s.label} tree's CLI does not start: node ${join(s.dir, CLI)} bench --help exited with ${r.status ?? r.signal ?? r.error}`)
  }
  const shapes = /^\s+--shape NAME\s+(.+)$/m.exec(r.stdout)?.[1].split('|').map((x) => x.trim()).filter(Boolean) ?? null
  const flags = new Set([...r.stdout.matchAll(/^\s+(?:(-\w), )?(--[a-z0-9][a-z0-9-]*)/gm)].flatMap((m) => (m[1] ? [m[1], m[2]] : [m[2]])))
  return { shapes, flags: flags.size ? flags : null }
}
function checkAgainst(s) {
  const h = benchHelp(s)
  const missing = h.shapes ? opt.shape.filter((x) => !h.shapes.includes(x)) : []
  if (missing.length) fail(2, `the ${s.label} tree (${s.shaText}) has no shape ${missing.join(', ')}: it has ${h.shapes.join(', ')}`)
  if (h.flags) {
    const unknown = benchArgs.filter((a) => a.startsWith('-') && !/^-\d/.test(a)).map((a) => a.split('=')[0]).filter((f) => !h.flags.has(f))
    if (unknown.length) fail(2, `\`refgpt bench\` of the ${s.label} tree (${s.shaText}) has no option ${[...new Set(unknown)].join(', ')}`)
  }
}

const tail = (text, lines = 25) => text.trimEnd().split('\n').slice(-lines).map((l) => `  | ${l}`).join('\n')
function step(what, cmd, args, cwd) {
  note(`compare: ${what}: ${cmd} ${args.join(' ')}  (in ${cwd})`)
  const t0 = performance.now()
  // the tool's output goes to stderr, live, so that a --json stdout stays clean
  const r = spawnSync(cmd, args, { cwd, stdio: ['ignore', 2, 2] })
  if (r.status !== 0) fail(1, `${what} failed in ${cwd} (exit ${r.status ?? r.signal ?? r.error}); see above`)
  note(`compare: ${what}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
}
function prepareWorktree(s) {
  if (s.prepared) return
  s.prepared = true
  if (existsSync(s.dir)) {
    const head = git(['rev-parse', 'HEAD'], s.dir)
    if (!head.ok || head.out !== s.sha || commonDir(s.dir) !== repoGit || git(['rev-parse', '--show-toplevel'], s.dir).out !== realpathSync(s.dir))
      fail(2, `${s.dir} exists but is not a worktree of ${root} at ${s.sha.slice(0, 12)}: remove it (git worktree remove --force ${s.dir}, or rm -r) and rerun`)
    const dirty = git(['status', '--porcelain', '--untracked-files=no'], s.dir).out
    if (dirty) {
      note(`compare: WARNING: the worktree ${s.dir} has local changes; its figures are not those of ${s.sha.slice(0, 12)}:\n${tail(dirty, 10)}`)
      s.shaText += ' + local changes'
      s.dirty = true
    }
    const built = existsSync(join(s.dir, MARKER)) && readFileSync(join(s.dir, MARKER), 'utf8').trim() === s.sha && existsSync(join(s.dir, CLI))
    if (built) {
      s.how = 'worktree, reused'
      return
    }
    s.how = 'worktree, reused, built now'
  } else {
    let r = git(['worktree', 'add', '--detach', s.dir, s.sha])
    // a worktree deleted without `git worktree remove` stays registered: add -f reclaims its path
    if (!r.ok && /already registered/.test(r.err)) r = git(['worktree', 'add', '-f', '--detach', s.dir, s.sha])
    if (!r.ok) fail(1, `git worktree add --detach ${s.dir} ${s.sha.slice(0, 12)} failed:\n${tail(r.err)}`)
    s.how = 'worktree, created'
    note(`compare: created the worktree ${s.dir} at ${s.sha.slice(0, 12)} (${s.ref})`)
  }
  let pnpm = 'pnpm@10.34.8'
  try {
    const pm = JSON.parse(readFileSync(join(s.dir, 'package.json'), 'utf8')).packageManager
    if (typeof pm === 'string' && /^pnpm@[\w.+-]+$/.test(pm)) pnpm = pm.split('+')[0]
  } catch {}
  step('install', 'npx', ['-y', pnpm, 'install', '--frozen-lockfile', '--prefer-offline'], s.dir)
  step('build', process.execPath, ['scripts/build.mjs'], s.dir)
  if (!existsSync(join(s.dir, CLI))) fail(1, `the build of ${s.dir} made no ${CLI}`)
  writeFileSync(join(s.dir, MARKER), s.sha + '\n')
}

// validate against the trees that are built already before spending minutes on a worktree
for (const s of Object.values(sides)) if (s.kind === 'tree') checkAgainst(s)
for (const s of Object.values(sides))
  if (s.kind === 'worktree') {
    prepareWorktree(s)
    checkAgainst(s)
  }
for (const s of Object.values(sides)) s.how ??= s.dir === realpathSync(root) ? 'this working tree, as built' : 'as built'
const stale = sides.new.kind === 'tree' ? staleness(sides.new.dir) : []

// ---------------------------------------------------------------- machine, CPU accounting

/** Ticks (USER_HZ) of the whole machine, and of this process plus its waited-for children. */
function cpuMark() {
  let busy = null
  let total = null
  let own = null
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number)
    total = f.reduce((a, b) => a + b, 0)
    busy = total - f[3] - f[4]
    const p = readFileSync('/proc/self/stat', 'utf8')
    const g = p.slice(p.lastIndexOf(')') + 2).split(' ').map(Number) // g[0] = field 3 (state)
    own = g[11] + g[12] + g[13] + g[14] // utime stime cutime cstime
  } catch {}
  return { busy, total, own }
}
/** Share of all cores used by OTHER processes since the mark (null without /proc). */
function othersShare(m) {
  const n = cpuMark()
  if (m.total == null || n.total == null || n.total <= m.total) return null
  return Math.min(1, Math.max(0, (n.busy - m.busy - (n.own - m.own)) / (n.total - m.total)))
}
const pct = (x) => (x == null ? '?' : `${(x * 100).toFixed(0)}%`)
function quietLine(when) {
  const m = cpuMark()
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500)
  const share = othersShare(m)
  const load = os.loadavg().map((v) => v.toFixed(2)).join(' ')
  return `${when}: other processes use ${pct(share)} of the CPU (0.5 s idle), load average ${load}${share > 0.1 ? '  WARNING: the machine is not quiet' : ''}`
}

const cpus = os.cpus()
say(`refgpt compare: \`refgpt bench --json\`, ${runs} run${runs > 1 ? 's' : ''} per side and shape, old and new interleaved (ABBA), a fresh process each`)
for (const s of Object.values(sides)) say(`${s.label.padEnd(8)} ${s.shaText}${s.ref === s.sha ? '' : ` (${s.ref})`}  ${s.dir}  [${s.how}]`)
for (const f of stale) say(`WARNING: the new tree's build is older than its sources (${f}): run node scripts/build.mjs, or this measures the old build`)
say(`machine  ${cpus[0]?.model?.trim() ?? '?'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, ${os.type()} ${os.release()}`)
say(`bench    --shape ${opt.shape.join('|')} ${benchArgs.join(' ')} --json`)
say(quietLine('before'))

// ---------------------------------------------------------------- runs

/** One fresh `refgpt bench` process; its JSON object, or exit 1 with the stderr tail. */
function bench(s, shape) {
  const args = [join(s.dir, CLI), 'bench', '--shape', shape, ...benchArgs, '--json']
  const m = cpuMark()
  const t0 = performance.now()
  const r = spawnSync(process.execPath, args, { cwd: s.dir, encoding: 'utf8', maxBuffer: 64 << 20 })
  const wall = (performance.now() - t0) / 1000
  const other = othersShare(m)
  const line = (r.stdout ?? '').trim().split('\n').reverse().find((l) => l.startsWith('{'))
  let result = null
  try {
    result = line ? JSON.parse(line) : null
  } catch {}
  if (r.status !== 0 || !result || typeof result !== 'object') {
    note(`compare: the ${s.label} side's bench run failed (exit ${r.status ?? r.signal ?? r.error}):\n  node ${args.join(' ')}`)
    if (r.stderr?.trim()) note(`stderr (tail):\n${tail(r.stderr)}`)
    if (!result && r.stdout?.trim()) note(`stdout (tail):\n${tail(r.stdout, 10)}`)
    if (r.status === 0) note('(no JSON object on stdout)')
    process.exit(1)
  }
  return { result, wall, other }
}

const median = (xs) => {
  const a = [...xs].sort((p, q) => p - q)
  const m = a.length >> 1
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2
}
const isBytes = (k) => /_bytes$|^bytes_|_bytes_/.test(k)
const fmt = (k, x) => {
  if (isBytes(k)) return x >= 2 ** 30 ? `${(x / 2 ** 30).toFixed(2)} GiB` : `${(x / 2 ** 20).toFixed(1)} MiB`
  const a = Math.abs(x)
  return Number.isInteger(x) ? String(x) : a >= 1e6 ? x.toExponential(3) : a >= 1000 ? x.toFixed(0) : a >= 100 ? x.toFixed(1) : a >= 10 ? x.toFixed(2) : x.toFixed(3)
}
/** +1: higher is better, -1: lower is better, 0: unknown. */
const direction = (k) => (/per_s$|gflops|gb_per_s/.test(k) ? 1 : /_s$|_ms$|_bytes$/.test(k) ? -1 : 0)

const order = Array.from({ length: runs }, (_, i) => (i % 2 ? ['new', 'old'] : ['old', 'new'])).flat()
const total = order.length * opt.shape.length
let done = 0
const t0 = performance.now()
for (const shape of opt.shape) {
  const got = { old: [], new: [] }
  for (const label of order) {
    const r = bench(sides[label], shape)
    got[label].push(r)
    const x = r.result
    done++
    note(
      `[${String(done).padStart(String(total).length)}/${total}] ${shape} ${label.padEnd(3)}  load ${x.load_s ?? '?'} s  prefill ${x.prefill_tokens_per_s ?? '?'} tok/s  decode ${x.decode_tokens_per_s ?? '?'} tok/s  others ${pct(r.other)}  (${r.wall.toFixed(1)} s)`,
    )
  }
  report(shape, got)
}
say(quietLine('after '))
say(`total ${((performance.now() - t0) / 1000).toFixed(0)} s of runs.${Object.values(sides).some((s) => s.kind === 'worktree') ? ` Worktree${sides.old.kind === 'worktree' && sides.new.kind === 'worktree' && sides.old.dir !== sides.new.dir ? 's' : ''} kept for the next compare: ${[...new Set(Object.values(sides).filter((s) => s.kind === 'worktree').map((s) => s.dir))].join(', ')} (git worktree remove --force PATH to drop)` : ''}`)

function report(shape, got) {
  const first = { old: got.old[0].result, new: got.new[0].result }
  const numeric = (o) => Object.keys(o).filter((k) => typeof o[k] === 'number' && Number.isFinite(o[k]))
  const common = numeric(first.old).filter((k) => got.old.every((r) => typeof r.result[k] === 'number') && got.new.every((r) => typeof r.result[k] === 'number'))
  const onlyNew = numeric(first.new).filter((k) => !common.includes(k))
  const onlyOld = numeric(first.old).filter((k) => !common.includes(k))
  const head = first.new
  say('')
  say(`== ${head.model ?? shape}, ${head.dtype ?? dtype}, ${head.device ?? '?'} device, ${head.threads ?? '?'} threads: ${runs} runs per side`)
  // text fields (model, device, dtype ...) that differ between the sides
  for (const k of Object.keys(first.old))
    if (typeof first.old[k] !== 'number' && k in first.new && JSON.stringify(first.old[k]) !== JSON.stringify(first.new[k]))
      say(`   ${k} differs: old ${JSON.stringify(first.old[k])}, new ${JSON.stringify(first.new[k])}`)
  const rows = []
  const same = []
  for (const k of common) {
    const o = got.old.map((r) => r.result[k])
    const n = got.new.map((r) => r.result[k])
    const om = median(o)
    const nm = median(n)
    const ratio = om === 0 ? (nm === 0 ? 1 : null) : nm / om
    const rec = {
      shape, dtype, metric: k, runs,
      old_median: om, new_median: nm, ratio: ratio == null ? null : Math.round(ratio * 1e4) / 1e4,
      old_min: Math.min(...o), old_max: Math.max(...o), new_min: Math.min(...n), new_max: Math.max(...n),
      old_values: o, new_values: n,
      old_sha: sides.old.sha, new_sha: sides.new.sha, old_dirty: !!sides.old.dirty, new_dirty: !!sides.new.dirty,
      bench_args: benchArgs.join(' '),
      others_cpu_max: Math.round(1000 * Math.max(...[...got.old, ...got.new].map((r) => r.other ?? 0))) / 1000,
    }
    if (opt.json) process.stdout.write(JSON.stringify(rec) + '\n')
    if (o.every((x) => x === o[0]) && n.every((x) => x === o[0])) same.push(`${k} ${fmt(k, o[0])}`)
    else rows.push(rec)
  }
  const verdict = (r) => {
    if (runs < 5) return ''
    const up = r.new_min > r.old_max
    const down = r.new_max < r.old_min
    if (!up && !down) return 'overlap'
    const d = direction(r.metric)
    return `${up ? 'higher' : 'lower'}${d ? ((up ? d : -d) > 0 ? ', better' : ', worse') : ''}`
  }
  const table = [
    ['metric', 'old median', 'new median', 'new/old', 'old min..max', 'new min..max', 'ranges'],
    ...rows.map((r) => [
      r.metric, fmt(r.metric, r.old_median), fmt(r.metric, r.new_median), r.ratio == null ? '-' : r.ratio.toFixed(3),
      `${fmt(r.metric, r.old_min)}..${fmt(r.metric, r.old_max)}`, `${fmt(r.metric, r.new_min)}..${fmt(r.metric, r.new_max)}`, verdict(r),
    ]),
  ]
  // disjoint ranges of two exchangeable samples happen by chance 2 / C(2n, n) of the time: 10 % at
  // n = 3, 0.8 % at n = 5; below 5 runs the column would mostly report noise
  if (runs < 5) for (const row of table) row.pop()
  const w = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)))
  for (const row of table) say(`   ${row.map((cell, c) => (c === 0 || c === row.length - 1 ? cell.padEnd(w[c]) : cell.padStart(w[c]))).join('  ').trimEnd()}`)
  if (same.length) say(`   same in every run: ${same.join(', ')}`)
  if (onlyNew.length) say(`   only in new (not compared): ${onlyNew.join(', ')}`)
  if (onlyOld.length) say(`   only in old (not compared): ${onlyOld.join(', ')}`)
  const oth = (l) => got[l].map((r) => r.other).filter((x) => x != null)
  const worst = Math.max(0, ...oth('old'), ...oth('new'))
  say(`   other processes during the runs: old median ${pct(oth('old').length ? median(oth('old')) : null)}, new median ${pct(oth('new').length ? median(oth('new')) : null)}, max ${pct(worst)}${worst > 0.1 ? `  WARNING: ${[...oth('old'), ...oth('new')].filter((x) => x > 0.1).length} run(s) above 10%, contaminated: rerun on a quieter machine` : ''}`)
}
