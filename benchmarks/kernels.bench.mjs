// Kernel benchmarks of @refgpt/wasm at real model shapes: every kernel family with its naive
// (scalar) and its SIMD variant side by side, single-threaded and, for the row-split kernels, on the
// pool. Plain ESM, no build step (it needs the built package: `node scripts/build.mjs`).
//
//   node benchmarks/kernels.bench.mjs [--quick] [--threads N] [--json] [--hot]
//                                     [--filter REGEX] [--max-time S] [--min-samples N]
//                                     [--shapes KxN,...] [--attention HxD@POS,...] [--cold-mib M]
//
//   --quick         short runs (the whole file in about 1.5 minutes on a 2-core machine)
//   --threads N     pool size for the pool rows (default 2; 1 drops the pool rows)
//   --json          one JSON line per measurement on stdout; the human table goes to stderr
//   --hot           matvec / attention-decode operands stay cache-resident (default: cold, see below)
//   --filter REGEX  only the suites whose name matches (e.g. 'matvec', 'prefill_f32|attention')
//   --shapes LIST   the matvec suites' shapes instead of the real ones, e.g. 2048x1024 (K x N); with --hot
//                   and one thread, a weight that fits in L2 gives a kernel's compute ceiling
//   --attention L   the attention suite's decode cases instead of 16x128@1024: heads x head size @ position
//                   (e.g. 12x64@930, GPT-2 at 931 keys); the prefill case keeps the default shape
//   --cold-mib M    the cold operands rotate over at least M MiB (default 128)
//
// Timing: benchmark.js (maxTime / minSamples / minTime per benchmark); we quote the MEDIAN of its
// per-sample seconds-per-call (stats.sample), with its relative margin of error (rme).
//
// Cold operands: in a real decode step every weight matrix (and every layer's KV cache) is read once
// and is not in cache the next time it is used. The matvec and attention-decode cases therefore
// rotate over identical copies of their weights / KV cache so that one round touches at least
// COLD_BYTES (128 MiB by default, 4x the L3 of the reference machine; --cold-mib); --hot uses one copy.
//
// After each suite the outputs are cross-checked: SIMD vs naive (relative tolerance), and pool vs
// single thread (bitwise: the kernels promise thread-count-independent results). A failure is
// printed as "CHECK FAILED" on stderr and makes the exit code 1; a kernel that throws is reported and
// the remaining suites still run.
import Benchmark from 'benchmark'
import { readFileSync, statSync } from 'node:fs'
import os from 'node:os'
import { createHash } from 'node:crypto'
import { allocGemmScratch, createWasmCore } from '@refgpt/wasm'
import { busyLine, cpuMark, fmtShare, median, moduleLine, othersShare } from './machine.mjs'

// --- options -------------------------------------------------------------------------------------

function parseArgs(argv) {
  const o = { quick: false, threads: 2, json: false, hot: false, filter: null, maxTime: null, minSamples: null, shapes: null, attention: null, coldMiB: 128 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      const v = argv[++i]
      if (v === undefined) usage(`${a} needs a value`)
      return v
    }
    if (a === '--quick') o.quick = true
    else if (a === '--json') o.json = true
    else if (a === '--hot') o.hot = true
    else if (a === '--threads') o.threads = Number(val())
    else if (a === '--filter') o.filter = new RegExp(val())
    else if (a === '--max-time') o.maxTime = Number(val())
    else if (a === '--min-samples') o.minSamples = Number(val())
    else if (a === '--shapes') {
      const v = val()
      o.shapes = v.split(',').map((kn) => {
        const m = /^(\d+)x(\d+)$/.exec(kn.trim())
        if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) usage(`--shapes: expected K x N pairs such as 2048x1024, found ${JSON.stringify(kn)}`)
        return [Number(m[1]), Number(m[2])]
      })
    } else if (a === '--attention') {
      const v = val()
      o.attention = v.split(',').map((s) => {
        const m = /^(\d+)x(\d+)@(\d+)$/.exec(s.trim())
        const [H, D, pos] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : []
        if (!m || H < 1 || D < 1 || H * D > 16384 || pos > 8192) usage(`--attention: expected heads x head size @ position such as 12x64@930 (H*D <= 16384, position <= 8192), found ${JSON.stringify(s)}`)
        return [H, D, pos]
      })
    } else if (a === '--cold-mib') {
      o.coldMiB = Number(val())
      if (!Number.isInteger(o.coldMiB) || o.coldMiB < 1 || o.coldMiB > 2048) usage('--cold-mib must be an integer in [1, 2048]')
    }
    else if (a === '--help' || a === '-h') usage()
    else usage(`unknown argument ${a}`)
  }
  if (!Number.isInteger(o.threads) || o.threads < 1 || o.threads > 256) usage(`--threads must be an integer in [1, 256]`)
  return o
}
function usage(err) {
  const text = 'usage: node benchmarks/kernels.bench.mjs [--quick] [--threads N] [--json] [--hot] [--filter REGEX] [--max-time S] [--min-samples N] [--shapes KxN,...] [--attention HxD@POS,...] [--cold-mib M]'
  if (err) {
    process.stderr.write(`kernels.bench: ${err}\n${text}\n`)
    process.exit(2)
  }
  process.stdout.write(text + '\n')
  process.exit(0)
}

const opt = parseArgs(process.argv.slice(2))
/** benchmark.js options per benchmark. minTime: the shortest timed cycle (calls are repeated to fill it). */
const PROFILE = opt.quick
  ? { maxTime: 0.08, minSamples: 3, minTime: 0.02 }
  : { maxTime: 1.5, minSamples: 8, minTime: 0.05 }
/** Cases whose one call takes seconds (naive prefill): fewer samples, to bound the run time. */
const SLOW = opt.quick ? { minSamples: 2 } : { minSamples: 5 }
if (opt.maxTime != null) PROFILE.maxTime = opt.maxTime
if (opt.minSamples != null) PROFILE.minSamples = SLOW.minSamples = opt.minSamples
const COLD_BYTES = opt.coldMiB * 2 ** 20
const out = opt.json ? process.stderr : process.stdout // the human-readable side
const say = (s = '') => out.write(s + '\n')


// --- data ----------------------------------------------------------------------------------------

/** xorshift32 state (deterministic data: every run times the same bits). */
let seed = 0x9e3779b9
const next = () => {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return seed >>> 0
}
/** f32 bits: random sign and mantissa, exponent 2^-8 .. 2^-1: values in +-[2^-8, 1), no subnormals. */
function fillF32(mem, ptr, n) {
  const u = new Uint32Array(mem.buffer, ptr, n)
  for (let i = 0; i < n; i++) {
    const s = next()
    u[i] = (s & 0x807fffff) | ((119 + ((s >>> 23) & 7)) << 23)
  }
}
/** IEEE half bits: exponents 2^-5 .. 2^-2, normal and finite (inf / NaN would take the kernels' slow path). */
function fillF16(mem, ptr, n) {
  const u = new Uint16Array(mem.buffer, ptr, n)
  for (let i = 0; i < n; i++) {
    const s = next()
    u[i] = (s & 0x83ff) | ((10 + ((s >>> 10) & 3)) << 10)
  }
}
/** bfloat16 bits: exponents 2^-8 .. 2^-1. */
function fillBf16(mem, ptr, n) {
  const u = new Uint16Array(mem.buffer, ptr, n)
  for (let i = 0; i < n; i++) {
    const s = next()
    u[i] = (s & 0x807f) | ((119 + ((s >>> 7) & 7)) << 7)
  }
}
/** q8: int8 in [-127, 127] and positive f32 scales around 1/127 (the values do not change the speed). */
function fillQ8(mem, qPtr, qBytes, sPtr, nScales) {
  const q = new Int8Array(mem.buffer, qPtr, qBytes)
  for (let i = 0; i < qBytes; i++) q[i] = (next() % 255) - 127
  const s = new Float32Array(mem.buffer, sPtr, nScales)
  for (let i = 0; i < nScales; i++) s[i] = (0.5 + (next() / 2 ** 32) * 0.5) / 127
}
/** q4: random bytes (two 4-bit levels each) and f32 scales around 1/8. */
function fillQ4(mem, qPtr, qBytes, sPtr, nScales) {
  const q = new Uint8Array(mem.buffer, qPtr, qBytes)
  for (let i = 0; i < qBytes; i++) q[i] = next() & 255
  const s = new Float32Array(mem.buffer, sPtr, nScales)
  for (let i = 0; i < nScales; i++) s[i] = (0.5 + (next() / 2 ** 32) * 0.5) / 8
}
/** q8 / q4: the weight takes quantized activations (quantize_act, part of every timed call). */
const QUANT = { q8: fillQ8, q4: fillQ4 }

const DTYPES = {
  f32: { bytes: 4, fill: fillF32 },
  f32g: { bytes: 4, fill: fillF32 }, // f32 in row groups (the wasm device's inference layout); random values: the order does not matter here
  f16: { bytes: 2, fill: fillF16 },
  bf16: { bytes: 2, fill: fillBf16 },
  q8: { bytes: 1, fill: null },
  q4: { bytes: 0.5, fill: null },
}
/** Bytes of quantize_act's output for x [T, K] (packages/wasm/src/core.ts actBytes). */
const actBytes = (T, K) => T * (2 * q8Cols(K) + 8 * (q8Cols(K) / 32))
const q8Cols = (K) => Math.ceil(K / 32) * 32

/**
 * Weight W [N, K] in `dtype`, in `copies` identical copies (cold rotation). Returns { w: [ptr...],
 * s: [scales ptr...] (q8; else zeros), bytes: bytes of one copy incl. q8 scales }.
 */
function allocWeight(mem, dtype, N, K, copies) {
  const w = [], s = []
  let wBytes, sBytes = 0
  if (QUANT[dtype]) {
    const Kp = q8Cols(K)
    wBytes = N * Kp * DTYPES[dtype].bytes
    sBytes = N * (Kp / 32) * 4
  } else wBytes = N * K * DTYPES[dtype].bytes
  for (let c = 0; c < copies; c++) {
    w.push(mem.alloc(wBytes))
    s.push(sBytes ? mem.alloc(sBytes) : 0)
  }
  if (QUANT[dtype]) QUANT[dtype](mem, w[0], wBytes, s[0], sBytes / 4)
  else DTYPES[dtype].fill(mem, w[0], N * K)
  const u8 = (p, n) => new Uint8Array(mem.buffer, p, n)
  for (let c = 1; c < copies; c++) {
    u8(w[c], wBytes).set(u8(w[0], wBytes))
    if (sBytes) u8(s[c], sBytes).set(u8(s[0], sBytes))
  }
  return { w, s, bytes: wBytes + sBytes }
}
const coldCopies = (bytes) => (opt.hot ? 1 : Math.max(1, Math.ceil(COLD_BYTES / bytes)))
const allocF32 = (mem, n) => {
  const p = mem.alloc(n * 4)
  fillF32(mem, p, n)
  return p
}

// --- harness ---------------------------------------------------------------------------------------

/**
 * A case: { suite, variant, kind: 'naive' | 'simd', shape, threads, fn, bytes?, flops?,
 *           check?: { group, out, n, tol } } — outputs of one group are compared after the suite.
 */
const results = []
let failures = 0

const fmt = (v, d) => (v == null || !Number.isFinite(v) ? '-' : v.toFixed(d))
const fmtMs = (ms) => (ms >= 100 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(3) : ms.toFixed(4))

/** Splits a row-split kernel call: single thread on the main instance, or the pool (core.run). */
function splitFn(core, name, rows, argSets, threads) {
  const f = core.kernels(0)[name]
  const n = argSets.length
  let i = 0
  if (threads === 1) {
    if (n === 1) {
      const A = argSets[0]
      return () => f(0, rows, ...A)
    }
    return () => {
      const A = argSets[i]
      i = i + 1 === n ? 0 : i + 1
      f(0, rows, ...A)
    }
  }
  const a = core.args
  return () => {
    const A = argSets[i]
    i = i + 1 === n ? 0 : i + 1
    for (let j = 0; j < A.length; j++) a[j] = A[j]
    core.run(0, name, A.length, rows)
  }
}

/** Thread settings of the row-split kernels: single thread, then the pool (unless --threads 1). */
const threadSettings = () => (opt.threads > 1 ? [1, opt.threads] : [1])

function runSuite(name, description, build, core) {
  if (opt.filter && !opt.filter.test(name)) return
  const mem = core.memories[0]
  const arenaMark = mem.mark()
  const t0 = Date.now()
  say(`\n## ${name} — ${description}`)
  let cases
  try {
    cases = build(mem, core)
  } catch (e) {
    failures++
    process.stderr.write(`kernels.bench: suite ${name}: setup failed: ${e.stack ?? e}\n`)
    mem.release(arenaMark)
    return
  }
  const setupS = (Date.now() - t0) / 1e3
  const suite = new Benchmark.Suite(name)
  for (const c of cases) {
    suite.add(`${c.variant} | ${c.shape} | t${c.threads}`, c.fn, { ...PROFILE, ...(c.profile ?? {}) })
  }
  const rows = []
  const suiteMark = cpuMark()
  let mark = suiteMark
  suite.on('cycle', (ev) => {
    const b = ev.target
    const c = cases[rows.length]
    const others = othersShare(mark)
    mark = cpuMark()
    if (b.error) {
      failures++
      process.stderr.write(`kernels.bench: ${name} / ${c.variant} / ${c.shape} / t${c.threads}: KERNEL ERROR: ${b.error?.stack ?? b.error}\n`)
      rows.push({ c, error: true })
      return
    }
    const med = median(b.stats.sample) // seconds per call
    const r = {
      suite: name,
      variant: c.variant,
      shape: c.shape,
      threads: c.threads,
      hz: b.hz,
      ms_median: med * 1e3,
      gbps: c.bytes ? c.bytes / med / 1e9 : null,
      gflops: c.flops ? c.flops / med / 1e9 : null,
      rme: b.stats.rme,
    }
    rows.push({ c, r, n: b.stats.sample.length, others })
    results.push(r)
    if (opt.json) process.stdout.write(JSON.stringify(r) + '\n')
  })
  suite.run({ async: false })
  const others = othersShare(suiteMark)
  printTable(rows)
  checkOutputs(name, mem, cases)
  mem.release(arenaMark)
  say(`(${name}: setup ${setupS.toFixed(1)} s, total ${((Date.now() - t0) / 1e3).toFixed(1)} s; other processes used ${fmtShare(others)}% of the CPU meanwhile${others > 0.1 ? ' — WARNING: not a quiet machine' : ''})`)
}

function printTable(rows) {
  const head = ['variant', 'shape', 'thr', 'median ms', '±rme%', 'GB/s', 'GFLOP/s', 'x naive', 'x 1 thr', 'n', 'other%']
  const body = []
  for (const { c, r, n, error, others } of rows) {
    if (error) {
      body.push([c.variant, c.shape, String(c.threads), 'ERROR', '', '', '', '', '', '', ''])
      continue
    }
    // ratios within this run: SIMD vs the naive variant (same shape and threads), pool vs 1 thread
    const naive = rows.find((o) => o.r && o.c.kind === 'naive' && o.c.shape === c.shape && o.c.threads === c.threads && o.c.family === c.family)
    const single = rows.find((o) => o.r && o.c.kind === c.kind && o.c.shape === c.shape && o.c.threads === 1 && o.c.family === c.family)
    body.push([
      c.variant, c.shape, String(c.threads), fmtMs(r.ms_median), fmt(r.rme, 1), fmt(r.gbps, 2), fmt(r.gflops, 2),
      c.kind !== 'naive' && naive ? fmt(naive.r.ms_median / r.ms_median, 2) : '',
      c.threads > 1 && single ? fmt(single.r.ms_median / r.ms_median, 2) : '',
      String(n), fmtShare(others),
    ])
  }
  const w = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)))
  const line = (cells) => cells.map((s, i) => (i < 2 ? s.padEnd(w[i]) : s.padStart(w[i]))).join('  ')
  say(line(head))
  say(w.map((n) => '-'.repeat(n)).join('  '))
  for (const row of body) say(line(row))
}

/** Compares the outputs left by the last call of each case (same group: same inputs). */
function checkOutputs(name, mem, cases) {
  const groups = new Map()
  for (const c of cases) if (c.check) {
    const g = groups.get(c.check.group) ?? []
    g.push(c)
    groups.set(c.check.group, g)
  }
  for (const [group, cs] of groups) {
    const ref = cs.find((c) => c.kind === 'naive' && c.threads === 1) ?? cs[0]
    const rv = mem.f32(ref.check.out, ref.check.n)
    let maxRef = 0, bad = false
    for (let i = 0; i < rv.length; i++) {
      if (!Number.isFinite(rv[i])) bad = true
      maxRef = Math.max(maxRef, Math.abs(rv[i]))
    }
    if (bad) report(`${group}: ${ref.variant} t${ref.threads} wrote non-finite values`)
    for (const c of cs) {
      if (c === ref) continue
      const v = mem.f32(c.check.out, c.check.n)
      const base = cs.find((o) => o.kind === c.kind && o.threads === 1)
      if (c.threads > 1 && base && base !== c) {
        // pool vs single thread of the same variant: bitwise
        const bv = mem.f32(base.check.out, base.check.n)
        let diff = 0
        for (let i = 0; i < v.length; i++) if (!Object.is(v[i], bv[i])) diff++
        if (diff) report(`${group}: ${c.variant} t${c.threads} differs from t1 in ${diff} of ${v.length} elements (expected bitwise equal)`)
      }
      const same = c.check.same && cs.find((o) => o.kind === c.check.same && o.threads === c.threads)
      if (same) {
        // another path that promises the same bits (prefill: v3_panel vs v2_simd)
        const sv = mem.f32(same.check.out, same.check.n)
        let diff = 0
        for (let i = 0; i < v.length; i++) if (!Object.is(v[i], sv[i])) diff++
        if (diff) report(`${group}: ${c.variant} t${c.threads} differs from ${same.variant} in ${diff} of ${v.length} elements (expected bitwise equal)`)
      }
      let maxErr = 0
      for (let i = 0; i < v.length; i++) {
        const e = Math.abs(v[i] - rv[i])
        if (!(e <= maxErr)) maxErr = Number.isNaN(e) ? Infinity : e
      }
      const rel = maxErr / (maxRef || 1)
      if (!(rel <= c.check.tol)) report(`${group}: ${c.variant} t${c.threads} vs ${ref.variant} t${ref.threads}: max |diff| ${maxErr.toExponential(2)} = ${rel.toExponential(2)} of max |ref| (tolerance ${c.check.tol})`)
    }
  }
  function report(msg) {
    failures++
    process.stderr.write(`kernels.bench: ${name}: CHECK FAILED: ${msg}\n`)
  }
}

/** For in-place kernels: runs naive and SIMD once on copies of the same input and compares. */
function precheck(name, mem, n, input, runNaive, runSimd, tol) {
  const a = mem.alloc(n * 4), b = mem.alloc(n * 4)
  mem.f32(a, n).set(mem.f32(input, n))
  mem.f32(b, n).set(mem.f32(input, n))
  runNaive(a)
  runSimd(b)
  const av = mem.f32(a, n), bv = mem.f32(b, n)
  let maxRef = 0, maxErr = 0
  for (let i = 0; i < n; i++) {
    maxRef = Math.max(maxRef, Math.abs(av[i]))
    const e = Math.abs(av[i] - bv[i])
    if (!(e <= maxErr)) maxErr = Number.isNaN(e) ? Infinity : e
  }
  if (!(maxErr / (maxRef || 1) <= tol)) {
    failures++
    process.stderr.write(`kernels.bench: ${name}: CHECK FAILED: SIMD vs naive max |diff| ${maxErr.toExponential(2)} (max |ref| ${maxRef.toExponential(2)}, tolerance ${tol})\n`)
  }
}

// --- suites --------------------------------------------------------------------------------------

const MATVEC_SHAPES = opt.shapes ?? [[768, 768], [2048, 2048], [2048, 8192], [8192, 2048], [4096, 16384], [16384, 4096]] // (K, N)
const PREFILL_SHAPES = [[768, 3072], [2048, 2048], [2048, 8192]]
const PREFILL_ONE_SHAPE = [[2048, 8192]] // bf16 / f16 / q8

/**
 * prefill cases of f32 / f16 / bf16 at T tokens: naive, SIMD (the in-register tiles: no scratch) and
 * v3_panel (the same kernel with a matmul scratch: weight panels widened once, panel.ts), on the same
 * inputs, 1 thread and the pool. The panel variant must equal the SIMD one bit for bit (checked after the suite).
 */
function prefillCases(mem, core, dtype, shapes, T) {
  const cases = []
  const family = `matmul_${dtype}`
  const scratch = allocGemmScratch(mem, Math.max(1, opt.threads))
  for (const [K, N] of shapes) {
    const W = allocWeight(mem, dtype, N, K, 1)
    const x = allocF32(mem, T * K)
    const b = allocF32(mem, N)
    const shape = `T=${T} K=${K} N=${N}`
    for (const kind of ['naive', 'simd', 'panel']) {
      for (const threads of threadSettings()) {
        const o = mem.alloc(T * N * 4)
        const args = [o, x, W.w[0], b, T, K, N, kind === 'panel' ? scratch : 0]
        cases.push({
          family, kind, shape, threads,
          variant: `${family} ${{ naive: 'v1_naive', simd: 'v2_simd', panel: 'v3_panel' }[kind]}`,
          fn: splitFn(core, kind === 'naive' ? `${family}_naive` : family, N, [args], threads),
          profile: kind === 'naive' && T * K * N > 1e8 ? SLOW : undefined,
          flops: 2 * T * K * N,
          check: { group: `${family} ${shape}`, out: o, n: T * N, tol: 1e-4, same: kind === 'panel' ? 'simd' : undefined },
        })
      }
    }
  }
  return cases
}
const PREFILL_T = 128

/** matmul cases: (K, N) shapes at T tokens, naive + SIMD, 1 thread + pool. */
function matmulCases(mem, core, dtype, shapes, T, cold) {
  const cases = []
  const family = `matmul_${dtype}`
  for (const [K, N] of shapes) {
    const one = QUANT[dtype] ? N * q8Cols(K) * DTYPES[dtype].bytes + N * (q8Cols(K) / 32) * 4 : N * K * DTYPES[dtype].bytes
    const copies = cold ? coldCopies(one) : 1
    const W = allocWeight(mem, dtype, N, K, copies)
    const x = allocF32(mem, T * K)
    const xa = QUANT[dtype] ? mem.alloc(actBytes(T, K)) : 0
    const b = allocF32(mem, N)
    const shape = `T=${T} K=${K} N=${N}`
    for (const kind of ['naive', 'simd']) {
      for (const threads of threadSettings()) {
        const o = mem.alloc(T * N * 4)
        const argSets = W.w.map((w, c) => (QUANT[dtype] ? [o, xa, w, W.s[c], b, T, K, N] : [o, x, w, b, T, K, N]))
        const name = kind === 'naive' ? `${family}_naive` : family
        let fn = splitFn(core, name, N, argSets, threads)
        if (QUANT[dtype]) {
          // the activations are quantized on the calling thread first, as the wasm device does
          const mm = fn, quantize = core.kernels(0)[kind === 'naive' ? 'quantize_act_naive' : 'quantize_act']
          const q4 = dtype === 'q4' ? 1 : 0
          fn = () => {
            quantize(xa, x, T, K, q4)
            mm()
          }
        }
        cases.push({
          family, kind, shape, threads,
          variant: `${family} ${kind === 'naive' ? 'v1_naive' : 'v2_simd'}`,
          fn,
          profile: kind === 'naive' && T * K * N > 1e8 ? SLOW : undefined,
          bytes: T === 1 ? W.bytes : null, // weight bytes streamed per call (matvec)
          flops: 2 * T * K * N,
          check: { group: `${family} ${shape}`, out: o, n: T * N, tol: QUANT[dtype] ? 0 : 1e-4 }, // q8 / q4: SIMD == naive bitwise
        })
      }
    }
  }
  return cases
}

function attentionCases(mem, core) {
  const cases = []
  const decode = (opt.attention ?? [[16, 128, 1024]]).map(([H, D, pos]) => [H, D, 1, pos, 'decode'])
  for (const [H, D, T, pos0, label] of [...decode, [16, 128, PREFILL_T, 0, 'prefill']]) {
    const C = H * D
    const nKeys = pos0 + T
    const kvBytes = 2 * nKeys * C * 4
    const copies = T === 1 ? coldCopies(kvBytes) : 1
    const kc = [], vc = []
    for (let c = 0; c < copies; c++) {
      kc.push(mem.alloc(nKeys * C * 4))
      vc.push(mem.alloc(nKeys * C * 4))
    }
    fillF32(mem, kc[0], nKeys * C)
    fillF32(mem, vc[0], nKeys * C)
    for (let c = 1; c < copies; c++) {
      mem.f32(kc[c], nKeys * C).set(mem.f32(kc[0], nKeys * C))
      mem.f32(vc[c], nKeys * C).set(mem.f32(vc[0], nKeys * C))
    }
    const q = allocF32(mem, T * C)
    const scale = 1 / Math.sqrt(D)
    // flops: per head and query i, (i - first + 1) keys x D x 2 (scores) + the same for the weighted sum
    let pairs = 0
    for (let t = 0; t < T; t++) pairs += pos0 + t + 1
    const flops = 4 * H * D * pairs
    const shape = `${label} T=${T} pos0=${pos0} H=${H} D=${D}`
    for (const kind of ['naive', 'simd']) {
      for (const threads of threadSettings()) {
        const o = mem.alloc(T * C * 4)
        const scratch = mem.alloc(H * nKeys * 4)
        const argSets = kc.map((k, c) => [o, q, k, vc[c], 0, scratch, T, pos0, H, D, scale, 0])
        const name = kind === 'naive' ? 'attention_naive' : 'attention'
        cases.push({
          family: 'attention', kind, shape, threads,
          variant: `attention ${kind === 'naive' ? 'v1_naive' : 'v2_simd'}`,
          fn: splitFn(core, name, H, argSets, threads),
          bytes: kvBytes + 2 * T * C * 4, // K and V cache read once, q read, out written
          flops,
          check: { group: `attention ${shape}`, out: o, n: T * C, tol: 1e-4 },
        })
      }
    }
  }
  return cases
}

function layernormCases(mem, core) {
  const k = core.kernels(0)
  const cases = []
  for (const C of [2048, 4096]) {
    for (const T of [1, PREFILL_T]) {
      const x = allocF32(mem, T * C), g = allocF32(mem, C), b = allocF32(mem, C)
      const shape = `T=${T} C=${C}`
      for (const kind of ['naive', 'simd']) {
        const o = mem.alloc(T * C * 4)
        const f = kind === 'naive' ? k.layernorm_naive : k.layernorm
        cases.push({
          family: 'layernorm', kind, shape, threads: 1,
          variant: `layernorm ${kind === 'naive' ? 'v1_naive' : 'v2_simd'}`,
          fn: () => f(o, x, g, b, T, C, 1e-5),
          bytes: (2 * T * C + 2 * C) * 4,
          check: { group: `layernorm ${shape}`, out: o, n: T * C, tol: 1e-5 },
        })
      }
    }
  }
  return cases
}

function geluCases(mem, core) {
  const k = core.kernels(0)
  const cases = []
  for (const [n, label] of [[8192, 'n=8192 (decode, 4C at C=2048)'], [16384 * PREFILL_T, 'n=16384*128 (GPT-J prefill)']]) {
    const x = allocF32(mem, n)
    for (const kind of ['naive', 'simd']) {
      const o = mem.alloc(n * 4)
      const f = kind === 'naive' ? k.gelu_tanh_naive : k.gelu_tanh
      cases.push({
        family: 'gelu_tanh', kind, shape: label, threads: 1,
        variant: `gelu_tanh ${kind === 'naive' ? 'v1_naive' : 'v2_simd'}`,
        fn: () => f(o, x, n),
        bytes: 2 * n * 4,
        check: { group: `gelu_tanh ${label}`, out: o, n, tol: 1e-6 },
      })
    }
  }
  return cases
}

function softmaxCases(mem, core) {
  const k = core.kernels(0)
  const n = 50257
  const x = allocF32(mem, n)
  const xv = mem.f32(x, n)
  for (let i = 0; i < n; i++) xv[i] *= 12 // logit-like spread
  // tolerance 1e-3: the naive variant sums 50257 terms sequentially in f32 (about 2e-4 relative
  // error against an f64 reference on this input; the SIMD variant about 2e-6)
  precheck('softmax', mem, n, x, (p) => k.softmax_naive(p, n), (p) => k.softmax(p, n), 1e-3)
  const cases = []
  for (const kind of ['naive', 'simd']) {
    // in place, as the model does; repeated calls keep a valid distribution (exp is branch-free)
    const buf = mem.alloc(n * 4)
    mem.f32(buf, n).set(xv)
    const f = kind === 'naive' ? k.softmax_naive : k.softmax
    cases.push({
      family: 'softmax', kind, shape: `n=${n} (GPT-2 vocab)`, threads: 1,
      variant: `softmax ${kind === 'naive' ? 'v1_naive' : 'v2_simd'}`,
      fn: () => f(buf, n),
      bytes: 2 * n * 4,
    })
  }
  return cases
}

function rotaryCases(mem, core) {
  const k = core.kernels(0)
  const H = 16, D = 256, R = 64, nPos = 2048
  const table = mem.alloc(nPos * R * 4)
  const tv = mem.f32(table, nPos * R)
  for (let p = 0; p < nPos; p++) {
    for (let i = 0; i < R / 2; i++) {
      const a = p * Math.pow(10000, (-2 * i) / R)
      tv[p * R + 2 * i] = Math.cos(a)
      tv[p * R + 2 * i + 1] = Math.sin(a)
    }
  }
  const cases = []
  for (const [T, pos0] of [[1, 1024], [PREFILL_T, 0]]) {
    const positions = mem.alloc(T * 4)
    const pv = mem.i32(positions, T)
    for (let t = 0; t < T; t++) pv[t] = pos0 + t
    const n = T * H * D
    const x = allocF32(mem, n)
    precheck(`rotary T=${T}`, mem, n, x, (p) => k.rotary_naive(p, table, positions, T, H, D, R), (p) => k.rotary(p, table, positions, T, H, D, R), 1e-6)
    for (const kind of ['naive', 'simd']) {
      const buf = mem.alloc(n * 4) // in place; a rotation keeps the norms, so repeated calls stay in range
      mem.f32(buf, n).set(mem.f32(x, n))
      const f = kind === 'naive' ? k.rotary_naive : k.rotary
      cases.push({
        family: 'rotary', kind, shape: `T=${T} H=${H} D=${D} R=${R} (GPT-J)`, threads: 1,
        variant: `rotary ${kind === 'naive' ? 'v1_naive' : 'v2_simd'}`,
        fn: () => f(buf, table, positions, T, H, D, R),
        bytes: (2 * T * H * R + T * R) * 4, // rotated dims read + written, table rows read
      })
    }
  }
  return cases
}

// --- main ----------------------------------------------------------------------------------------

const cpus = os.cpus()
say(`# refgpt kernel benchmarks (@refgpt/wasm)`)
say(`machine: ${cpus[0]?.model ?? 'unknown'}, ${cpus.length} cores (availableParallelism ${os.availableParallelism()}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.platform()} ${os.release()} ${os.arch()}`)
say(`node ${process.version}, date ${new Date().toISOString()}`)
say(moduleLine())
say(`mode: ${opt.quick ? 'quick' : 'full'} (maxTime ${PROFILE.maxTime} s, minSamples ${PROFILE.minSamples} (naive prefill ${SLOW.minSamples}), minTime ${PROFILE.minTime} s per benchmark), pool threads ${opt.threads}, operands ${opt.hot ? 'hot (one copy)' : `cold (matvec / attention decode rotate over >= ${COLD_BYTES / 2 ** 20} MiB)`}`)
say(`GB/s = 1e9 bytes/s of the bytes named per suite; GFLOP/s = 1e9 flop/s (multiply and add count 2); figures are medians`)
say(busyLine('before'))

const t0 = Date.now()
const core = await createWasmCore({ threads: opt.threads })
try {
  for (const dtype of ['f32', 'f32g', 'f16', 'bf16', 'q8', 'q4']) {
    const what = { q8: ' (int8 + scales; each call quantizes x first)', q4: ' (4-bit + scales; each call quantizes x first)' }[dtype] ?? ''
    runSuite(`matvec_${dtype}`, `matmul_${dtype} at T=1 (decode); GB/s = weight bytes streamed${what}`,
      (mem, c) => matmulCases(mem, c, dtype, MATVEC_SHAPES, 1, true), core)
  }
  runSuite('prefill_f32', `matmul_f32 at T=${PREFILL_T} (prefill; v3_panel: with the matmul scratch)`, (mem, c) => prefillCases(mem, c, 'f32', PREFILL_SHAPES, PREFILL_T), core)
  runSuite('prefill_f32g', `matmul_f32g at T=${PREFILL_T} (prefill; v3_panel: with the matmul scratch)`, (mem, c) => prefillCases(mem, c, 'f32g', PREFILL_ONE_SHAPE, PREFILL_T), core)
  runSuite('prefill_bf16', `matmul_bf16 at T=${PREFILL_T} (prefill; v3_panel: with the matmul scratch)`, (mem, c) => prefillCases(mem, c, 'bf16', PREFILL_ONE_SHAPE, PREFILL_T), core)
  runSuite('prefill_f16', `matmul_f16 at T=${PREFILL_T} (prefill; v3_panel: with the matmul scratch)`, (mem, c) => prefillCases(mem, c, 'f16', PREFILL_ONE_SHAPE, PREFILL_T), core)
  runSuite('prefill_q8', `matmul_q8 at T=${PREFILL_T} (prefill, quantize_act included)`, (mem, c) => matmulCases(mem, c, 'q8', PREFILL_ONE_SHAPE, PREFILL_T, false), core)
  runSuite('prefill_q4', `matmul_q4 at T=${PREFILL_T} (prefill, quantize_act included)`, (mem, c) => matmulCases(mem, c, 'q4', PREFILL_ONE_SHAPE, PREFILL_T, false), core)
  runSuite('attention', 'causal attention over an f32 KV cache, heads split across threads; GB/s = K + V cache + q + out bytes', attentionCases, core)
  runSuite('layernorm', 'single thread (not a split kernel); GB/s = x read + out written', layernormCases, core)
  runSuite('gelu_tanh', 'single thread; GB/s = x read + out written', geluCases, core)
  runSuite('softmax', 'in place, single thread; GB/s = n floats read + written once', softmaxCases, core)
  runSuite('rotary', 'in place, single thread; GB/s = rotated dims read + written', rotaryCases, core)
} finally {
  await core.close()
}
say(busyLine('after'))
say(`\n${results.length} measurements in ${((Date.now() - t0) / 1e3).toFixed(1)} s${failures ? `, ${failures} FAILURE(S) (see stderr)` : ', all output checks passed'}`)
if (failures) process.exitCode = 1
