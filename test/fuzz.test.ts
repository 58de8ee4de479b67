// The input fuzzer itself (benchmarks/fuzz): the same seed gives the same bytes, every mutator of every
// target makes an input, the classifier and the watchdogs catch planted crashes, rejections, hangs,
// memory blow-ups and aborts (and save them), and a short run of the real targets ends with its JSON
// summary. Whether the library survives the fuzzer is not asserted here: that is the budgeted CI run.

import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as core from '@refgpt/core'
// plain ESM modules of the fuzzer
import { caseToJson } from '../benchmarks/fuzz/case.mjs'
import { buildSeeds } from '../benchmarks/fuzz/seeds.mjs'
import { DEFAULT_TARGETS, PLANTED_MODES, TARGETS, makeCase } from '../benchmarks/fuzz/targets.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const RUN = join(ROOT, 'benchmarks/fuzz/run.mjs')
// the planted target exercises no library code but RefgptError: its workers start faster from the built
// package when there is one
const coreFlag = existsSync(join(ROOT, 'packages/core/dist/index.js')) ? 'dist' : 'source'

interface Run {
  code: number | null
  stdout: string
  stderr: string
  summary: any
}

/** Runs the fuzzer's CLI; resolves with its exit code, output and the JSON summary (its last stdout line). */
function fuzz(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const ch = spawn(process.execPath, [RUN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = '', stderr = ''
    ch.stdout.on('data', (d) => (stdout += d))
    ch.stderr.on('data', (d) => (stderr += d))
    ch.on('close', (code) => {
      const last = stdout.trim().split('\n').pop() ?? ''
      let summary: any = null
      try {
        summary = JSON.parse(last)
      } catch {
        // asserted by the tests
      }
      resolve({ code, stdout, stderr, summary })
    })
  })
}

const test = suite('fuzzer')
let out: string
let S: any
// the two CLI runs start at once and run while the in-process tests do
let planted: Promise<Run>
let alloc: Promise<Run>
let real: Promise<Run>

test.before(async () => {
  out = mkdtempSync(join(tmpdir(), 'refgpt-fuzz-test-'))
  const modes = ['ok', 'refgpt', 'typeerror', 'reject', 'hang', 'abort']
  planted = fuzz(['--targets', modes.map((m) => `planted:${m}`).join(','), '--inputs', String(modes.length), '--workers', '1',
    '--hang-ms', '1500', '--core', coreFlag, '--out', join(out, 'planted'), '--progress-s', '0'])
  // apart, with a long time limit: page faults can be slow enough on a loaded VM that 250 MB take seconds
  alloc = fuzz(['--targets', 'planted:alloc', '--inputs', '1', '--workers', '1', '--hang-ms', '30000', '--rss-mb', '250',
    '--core', coreFlag, '--out', join(out, 'alloc'), '--progress-s', '0'])
  real = fuzz(['--inputs', '300', '--workers', '1', '--seed', '7', '--out', join(out, 'real'), '--progress-s', '0'])
  S = await buildSeeds(core)
})
test.after(() => rmSync(out, { recursive: true, force: true }))

const bytesOf = (c: any) => JSON.stringify(caseToJson(c))

test('the same seed gives the same input bytes; another seed other bytes', async () => {
  const S2 = await buildSeeds(core) // the seeds are deterministic too
  for (const t of DEFAULT_TARGETS) {
    let differs = 0
    for (const k of [0, 1, 2, 7, 50, 123, 999]) {
      const a = bytesOf(makeCase(t, 5, k, S))
      assert.is(bytesOf(makeCase(t, 5, k, S2)), a, `${t} k=${k}`)
      if (bytesOf(makeCase(t, 6, k, S)) !== a) differs++
    }
    assert.ok(differs >= 5, `${t}: seed 6 should give other inputs (${differs} of 7 differ)`)
  }
})

/** True when the case holds exactly the files of one of the target's seeds. */
function isSeed(target: string, c: any): boolean {
  const same = (a: Record<string, unknown>, b: Record<string, unknown>) =>
    Object.keys(a).length === Object.keys(b).length &&
    Object.entries(a).every(([k, v]) => b[k] instanceof Uint8Array && v instanceof Uint8Array && Buffer.compare(Buffer.from(v), Buffer.from(b[k] as Uint8Array)) === 0)
  const seeds: Record<string, unknown>[] =
    target === 'safetensors' ? S.safetensors.map((s: any) => ({ [c.main]: s.bytes }))
      : target === 'torch' || target === 'golden' ? S[target].map((s: any) => ({ [c.main]: s.bytes }))
        : S[target].map((s: any) => s.entries)
  return seeds.some((s) => same(c.entries, s))
}

test('every mutator of every target produces an input of that target', () => {
  for (const t of DEFAULT_TARGETS) {
    const mutators: string[] = TARGETS[t].mutators
    assert.ok(mutators.length >= 8, `${t} has its mutators listed`)
    for (const m of mutators) {
      let changed = 0
      for (let k = 0; k < 4; k++) {
        const c = makeCase(t, 1, k, S, m)
        assert.is(c.target, t)
        assert.type(c.main, 'string')
        assert.ok(c.tags.length > 0 && !c.tags.includes('valid'), `${t} ${m}: tagged ${c.tags}`)
        if (!isSeed(t, c)) changed++
      }
      assert.ok(changed > 0, `${t} ${m}: changed nothing in 4 inputs`)
    }
  }
  // the test-only target has one mutator per failure mode
  assert.equal(TARGETS.planted.mutators, PLANTED_MODES)
})

test('a sweep run gives input k of a target its mutator k mod N', () => {
  const n = TARGETS.torch.mutators.length
  const c = makeCase('torch', 3, n + 2, S, undefined, true)
  const forced = makeCase('torch', 3, n + 2, S, TARGETS.torch.mutators[2])
  assert.equal(c.tags, forced.tags)
  assert.ok(c.sweep)
})

test('planted crashes, rejections, hangs, RSS blow-ups and aborts are classified and saved', async () => {
  const [r, a] = await Promise.all([planted, alloc])
  assert.is(r.code, 1, `exit 1 when there are findings\n${r.stderr}`)
  const s = r.summary
  assert.ok(s, `a JSON summary line\n${r.stdout}\n${r.stderr}`)
  const seen = s.classes.map((c: any) => `${c.class} ${c.target} x${c.count}`).join(', ')
  assert.is(s.inputs, 6)
  assert.is(s.ok, 1, 'planted:ok')
  assert.is(s.refgpt_error, 1, 'planted:refgpt is clean')
  assert.is(s.clean, 2)
  assert.is(s.crashes, 2, `TypeError and unhandled rejection: ${seen}`)
  assert.is(s.hangs, 1, seen)
  assert.is(s.aborts, 1, `process.abort(): ${seen}`)
  assert.is(s.rss_over, 0, seen)
  assert.is(a.code, 1, a.stderr)
  assert.ok(a.summary, `a JSON summary line\n${a.stdout}\n${a.stderr}`)
  assert.is(a.summary.rss_over, 1, `the RSS watchdog: ${a.stdout}`)
  assert.ok(a.summary.max_rss_mb >= 250, `the RSS poller saw the blow-up (${a.summary.max_rss_mb} MB)`)
  const classes = [...s.classes, ...a.summary.classes]
  const byTarget = (t: string) => classes.find((c: any) => c.target === t)
  assert.is(byTarget('planted:typeerror').class, 'crash')
  assert.match(byTarget('planted:typeerror').signature, /TypeError/)
  assert.match(byTarget('planted:reject').signature, /\|late$/)
  assert.is(byTarget('planted:hang').class, 'hang')
  assert.is(byTarget('planted:alloc').class, 'rss')
  assert.is(byTarget('planted:abort').class, 'abort')
  for (const t of ['typeerror', 'reject', 'hang', 'alloc', 'abort']) {
    const saved = byTarget(`planted:${t}`).saved
    assert.is(saved.length, 1, `planted:${t} saved once`)
    const info = JSON.parse(readFileSync(join(saved[0], 'case.json'), 'utf8'))
    assert.is(info.target, `planted:${t}`)
    assert.is(info.seed, 1)
    assert.is(info.k, 0)
    assert.ok(existsSync(join(saved[0], 'input', 'input.txt')))
  }
  // a saved crash re-runs in one process and prints its stack
  const repro = await fuzz(['--repro', byTarget('planted:typeerror').saved[0], '--core', coreFlag])
  assert.is(repro.code, 1)
  assert.match(repro.stdout, /CRASH/)
  assert.match(repro.stdout, /TypeError: Cannot read properties of null/)
  assert.match(repro.stdout, /at .*targets\.mjs/)
})

test('a short run of the real targets ends with one JSON summary line', async () => {
  const r = await real
  const s = r.summary
  assert.ok(s, `a JSON summary line\n${r.stdout}\n${r.stderr}`)
  assert.ok(r.code === 0 || r.code === 1, `exit ${r.code}\n${r.stderr}`)
  assert.is(r.code, s.crashes + s.aborts + s.hangs + s.rss_over > 0 ? 1 : 0)
  assert.is(s.inputs + s.skipped, 300)
  assert.is(s.seed, 7)
  assert.is(s.generator_errors, 0, 'the fuzzer generated every input')
  assert.is(s.clean + s.crashes + s.aborts + s.hangs + s.rss_over, s.inputs)
  assert.is(s.clean, s.ok + s.refgpt_error)
  assert.equal(Object.keys(s.targets).sort(), [...DEFAULT_TARGETS].sort())
  for (const t of DEFAULT_TARGETS) assert.is(s.targets[t].inputs + s.targets[t].skipped, 50, t)
  for (const k of ['inputs_per_s', 'duration_s', 'max_rss_mb', 'max_heap_growth_mb', 'workers', 'budget_s', 'classes'] as const) assert.ok(k in s, k)
  assert.ok(s.ok > 0, 'some inputs load')
  assert.ok(s.refgpt_error > 0, 'some inputs are refused with a RefgptError')
  assert.ok(existsSync(join(out, 'real', 'summary.json')))
})

test.run()
