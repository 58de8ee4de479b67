// Machine-limit probes, measured the same way as the kernels (benchmark.js, WASM SIMD from
// @refgpt/wasm, the same pool), so that kernel / probe ratios are meaningful:
//   stream_read  probe_stream_read: f32x4 loads summed into 4 accumulators over a 1 GiB buffer in
//                wasm memory (DRAM bandwidth; one i32 read 8 KiB ahead every 4 KiB, as the decode tiles); also over
//                16 MiB (fits the L3: cache bandwidth)
//   madd         probe_madd: 12 independent f32x4 mul + add chains (no memory traffic);
//                flops per call = units * iters * 96
//   dispatch     one pool round trip with no work (probe_madd, iters = 0): the fixed cost every
//                split-kernel call pays on the pool
// Each with 1 thread (the main-thread instance) and with the pool (core.run, --threads N, default 2).
//
//   node benchmarks/probes.bench.mjs [--quick] [--threads N] [--json]
//
// --json: one JSON line per measurement on stdout ({suite, variant, shape, threads, hz, ms_median,
// gbps, gflops, rme}); the human table goes to stderr. Figures are medians of benchmark.js samples.
import Benchmark from 'benchmark'
import { readFileSync, statSync } from 'node:fs'
import os from 'node:os'
import { createHash } from 'node:crypto'
import { createWasmCore } from '@refgpt/wasm'
import { busyLine, cpuMark, fmtShare, median, moduleLine, othersShare } from './machine.mjs'

function parseArgs(argv) {
  const o = { quick: false, threads: 2, json: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--quick') o.quick = true
    else if (a === '--json') o.json = true
    else if (a === '--threads') o.threads = Number(argv[++i])
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node benchmarks/probes.bench.mjs [--quick] [--threads N] [--json]\n')
      process.exit(0)
    } else {
      process.stderr.write(`probes.bench: unknown argument ${a}\nusage: node benchmarks/probes.bench.mjs [--quick] [--threads N] [--json]\n`)
      process.exit(2)
    }
  }
  if (!Number.isInteger(o.threads) || o.threads < 1 || o.threads > 256) {
    process.stderr.write('probes.bench: --threads must be an integer in [1, 256]\n')
    process.exit(2)
  }
  return o
}
const opt = parseArgs(process.argv.slice(2))
// at least 5 samples everywhere (10 in the full run); minTime: shortest timed cycle
const PROFILE = opt.quick ? { maxTime: 0.5, minSamples: 5, minTime: 0.05 } : { maxTime: 3, minSamples: 10, minTime: 0.1 }
const out = opt.json ? process.stderr : process.stdout
const say = (s = '') => out.write(s + '\n')


const fmt = (v, d) => (v == null || !Number.isFinite(v) ? '-' : v.toFixed(d))
const fmtMs = (ms) => (ms >= 100 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(3) : ms.toFixed(4))
const threadSettings = opt.threads > 1 ? [1, opt.threads] : [1]

const cpus = os.cpus()
say('# refgpt machine probes (@refgpt/wasm)')
say(`machine: ${cpus[0]?.model ?? 'unknown'}, ${cpus.length} cores (availableParallelism ${os.availableParallelism()}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.platform()} ${os.release()} ${os.arch()}`)
say(`node ${process.version}, date ${new Date().toISOString()}`)
say(moduleLine())
say(`mode: ${opt.quick ? 'quick' : 'full'} (maxTime ${PROFILE.maxTime} s, minSamples ${PROFILE.minSamples}, minTime ${PROFILE.minTime} s per benchmark), pool threads ${opt.threads}`)
say('GB/s = 1e9 bytes/s read; GFLOP/s = 1e9 flop/s; figures are medians')
say(busyLine('before'))

const core = await createWasmCore({ threads: opt.threads })
const mem = core.memories[0]
const k = core.kernels(0)
const cases = []
let sink = 0 // keeps the probe results alive

// stream read: the buffer is written first (a never-written grown memory may be backed by the
// kernel's shared zero page, which would read from cache)
const BIG = 2 ** 30, SMALL = 16 * 2 ** 20
const buf = mem.alloc(BIG)
new Uint32Array(mem.buffer, buf, BIG / 4).fill(0x3f800000) // 1.0f
for (const [bytes, label] of [[BIG, '1 GiB (DRAM)'], [SMALL, '16 MiB (L3-resident)']]) {
  const chunks = bytes / 16
  for (const threads of threadSettings) {
    cases.push({
      suite: 'stream_read', variant: 'probe_stream_read', shape: label, threads, bytes,
      fn: threads === 1
        ? () => { sink += k.probe_stream_read(0, chunks, buf, bytes) }
        : () => { core.args[0] = buf; core.args[1] = bytes; core.run(0, 'probe_stream_read', 2, chunks) },
    })
  }
}
// madd peak: 64 units of `iters` iterations (split 32 / 32 on two threads)
const UNITS = 64, ITERS = 100000
for (const threads of threadSettings) {
  cases.push({
    suite: 'madd', variant: 'probe_madd', shape: `units=${UNITS} iters=${ITERS}`, threads, flops: UNITS * ITERS * 96,
    fn: threads === 1
      ? () => { sink += k.probe_madd(0, UNITS, ITERS) }
      : () => { core.args[0] = ITERS; core.run(0, 'probe_madd', 1, UNITS) },
  })
}
// pool dispatch round trip: every thread gets one unit of 0 iterations
if (opt.threads > 1) {
  cases.push({
    suite: 'dispatch', variant: 'pool run (empty)', shape: `rows=${opt.threads}`, threads: opt.threads,
    fn: () => { core.args[0] = 0; core.run(0, 'probe_madd', 1, opt.threads) },
  })
}

const rows = []
try {
  const suite = new Benchmark.Suite('probes')
  for (const c of cases) suite.add(`${c.suite} ${c.shape} t${c.threads}`, c.fn, PROFILE)
  let mark = cpuMark()
  suite.on('cycle', (ev) => {
    const b = ev.target
    const c = cases[rows.length]
    const others = othersShare(mark)
    mark = cpuMark()
    if (b.error) {
      process.stderr.write(`probes.bench: ${c.suite} t${c.threads}: ERROR ${b.error?.stack ?? b.error}\n`)
      rows.push({ c, error: true })
      process.exitCode = 1
      return
    }
    const med = median(b.stats.sample)
    const r = {
      suite: c.suite, variant: c.variant, shape: c.shape, threads: c.threads, hz: b.hz, ms_median: med * 1e3,
      gbps: c.bytes ? c.bytes / med / 1e9 : null, gflops: c.flops ? c.flops / med / 1e9 : null, rme: b.stats.rme,
    }
    rows.push({ c, r, n: b.stats.sample.length, others })
    if (opt.json) process.stdout.write(JSON.stringify(r) + '\n')
  })
  suite.run({ async: false })
} finally {
  mem.release(buf)
  await core.close()
}

const head = ['probe', 'shape', 'thr', 'median ms', '±rme%', 'GB/s', 'GFLOP/s', 'x 1 thr', 'n', 'other%']
const body = rows.map(({ c, r, n, error, others }) => {
  if (error) return [c.suite, c.shape, String(c.threads), 'ERROR', '', '', '', '', '', '']
  const single = rows.find((o) => o.r && o.c.suite === c.suite && o.c.shape === c.shape && o.c.threads === 1)
  return [c.suite, c.shape, String(c.threads), fmtMs(r.ms_median), fmt(r.rme, 1), fmt(r.gbps, 2), fmt(r.gflops, 2),
    c.threads > 1 && single ? fmt(single.r.ms_median / r.ms_median, 2) : '', String(n), fmtShare(others)]
})
const w = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)))
const line = (cells) => cells.map((s, i) => (i < 2 ? s.padEnd(w[i]) : s.padStart(w[i]))).join('  ')
say()
say(line(head))
say(w.map((n) => '-'.repeat(n)).join('  '))
for (const row of body) say(line(row))
say(busyLine('after'))
if (!Number.isFinite(sink) && !Number.isNaN(sink)) say(`(sink ${sink})`)
