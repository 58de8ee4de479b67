// Where the time of a training step goes: the forward + backward of `refgpt bench --train`, with every
// device op timed by a wrapper around the device object (the wasm ops are synchronous: the time between
// entering and leaving a method is the kernel's, pool dispatch included).
//
//   node benchmarks/train-ops.mjs [--shape gpt-neo-125M] [--batch-size 8] [--max-length 128] [--threads 2]
//                                 [--layers N] [--steps 1] [--device wasm|js] [--json]
//
// One untimed warm-up forwardBackward, then --steps timed ones (zeroGrad before each; the optimizer is
// not run: `refgpt bench --train` times it). matmulBackward is timed as two calls, its dx part
// (matmul_backward_dx) and its dW + db part (matmul_backward_dw): the device runs them one after the other
// anyway, so splitting the call changes nothing but the timing. Matmuls are named by their (K, N) for the
// GPT-Neo / GPT-2 shapes (qkv/out: C x C, fc: C x 4C, proj: 4C x C, lm_head: C x V); GFLOP/s counts
// 2·T·K·N per call for each of forward, dx and dW, and 4·D per (query, visible key) pair for attention
// (forward: q·k and p·v; backward: twice that, the minimum — the kernel recomputes dout·v once more).
// The multiply-add peak of the same pool (probe_madd, as benchmarks/probes.bench.mjs) is measured before
// and after. Prints a table (stdout), or with --json one object per op and a summary line.
import { loadRandomModel, Trainer } from '@refgpt/core'
import { busyLine, cpuMark, fmtShare, median, othersShare } from './machine.mjs'

const usage = 'usage: node benchmarks/train-ops.mjs [--shape NAME] [--batch-size N] [--max-length N] [--threads N] [--layers N] [--steps N] [--device wasm|js] [--json]'
const o = { shape: 'gpt-neo-125M', batchSize: 8, maxLength: 128, threads: 2, layers: undefined, steps: 1, device: 'wasm', json: false }
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]
  const int = (min) => {
    const v = argv[++i]
    if (!/^\d+$/.test(v ?? '') || Number(v) < min) {
      process.stderr.write(`train-ops: ${a} needs an integer >= ${min}\n${usage}\n`)
      process.exit(2)
    }
    return Number(v)
  }
  if (a === '--shape') o.shape = argv[++i]
  else if (a === '--batch-size') o.batchSize = int(1)
  else if (a === '--max-length') o.maxLength = int(2)
  else if (a === '--threads') o.threads = int(1)
  else if (a === '--layers') o.layers = int(1)
  else if (a === '--steps') o.steps = int(1)
  else if (a === '--device') o.device = argv[++i]
  else if (a === '--json') o.json = true
  else if (a === '--help' || a === '-h') {
    process.stdout.write(usage + '\n')
    process.exit(0)
  } else {
    process.stderr.write(`train-ops: unknown argument ${a}\n${usage}\n`)
    process.exit(2)
  }
}
const say = (s = '') => (o.json ? process.stderr : process.stdout).write(s + '\n')

const model = await loadRandomModel(o.shape, { device: o.device, threads: o.threads, dtype: 'F32', layers: o.layers, maxContext: o.maxLength, maxBatchTokens: o.maxLength })
const a = model.arch, C = a.nEmbd, F = a.nInner, V = a.nVocab
const dev = model.weights.dev
const matName = (K, N) =>
  K === C && N === C ? 'C x C (q/k/v/out_proj)' : K === C && N === F ? 'C x 4C (c_fc)' : K === F && N === C ? '4C x C (c_proj)'
    : K === C && N === V ? 'C x V (lm_head)' : K === C && N === 3 * C ? 'C x 3C (c_attn)' : `${K} x ${N}`

// --- the wrapper: every op's time, by (op, shape) ---
const stats = new Map() // key -> { ms, calls, flops }
let on = false
const add = (key, ms, flops) => {
  if (!on) return
  let s = stats.get(key)
  if (!s) stats.set(key, (s = { ms: 0, calls: 0, flops: 0 }))
  s.ms += ms
  s.calls++
  s.flops += flops
}
const visiblePairs = (T, window) => {
  let n = 0
  for (let t = 0; t < T; t++) n += window > 0 ? Math.min(t + 1, window) : t + 1
  return n
}
function wrap(obj, name, key, flops = () => 0) {
  const f = obj[name].bind(obj)
  obj[name] = (...args) => {
    const t = performance.now()
    const r = f(...args)
    add(key(...args), performance.now() - t, flops(...args))
    return r
  }
  return f
}
wrap(dev, 'matmul', (_o, _x, _w, _b, T, K, N) => `fwd matmul ${matName(K, N)}`, (_o, _x, _w, _b, T, K, N) => 2 * T * K * N)
wrap(dev, 'attention', () => 'fwd attention', (_o, _q, _k, _v, op) => 4 * op.headDim * op.nHead * visiblePairs(op.T, op.window))
wrap(dev, 'layerNorm', () => 'fwd layernorm (inference)')
wrap(dev, 'activation', () => 'fwd gelu')
wrap(dev, 'add', () => 'fwd residual add')
wrap(dev, 'embed', () => 'fwd embedding')
wrap(dev, 'copy', () => 'tape copies (dev.copy)')
wrap(dev, 'zero', () => 'zeroing (dev.zero)')
wrap(dev, 'write', () => 'host writes (dev.write: parameters)')
const tr = dev.train
wrap(tr, 'layerNormForward', () => 'fwd layernorm')
wrap(tr, 'layerNormBackward', () => 'bwd layernorm')
wrap(tr, 'activationBackward', () => 'bwd gelu')
wrap(tr, 'embedBackward', () => 'bwd embedding')
wrap(tr, 'crossEntropy', () => 'cross-entropy (fwd + bwd)')
wrap(tr, 'attentionBackward', () => 'bwd attention', (_dq, _dk, _dv, _do, _q, _k, _v, _p, op) => 8 * op.headDim * op.nHead * visiblePairs(op.T, op.window))
const mb = tr.matmulBackward.bind(tr)
tr.matmulBackward = (dx, dw, db, dout, x, w, T, K, N) => {
  if (dx) {
    const t = performance.now()
    mb(dx, null, null, dout, x, w, T, K, N)
    add(`bwd matmul dx ${matName(K, N)}`, performance.now() - t, 2 * T * K * N)
  }
  if (dw || db) {
    const t = performance.now()
    mb(null, dw, db, dout, x, w, T, K, N)
    add(`bwd matmul dW ${matName(K, N)}`, performance.now() - t, 2 * T * K * N)
  }
}

// --- the madd peak of the same pool ---
function peak() {
  const core = dev.core
  if (!core) return null
  const run = () => {
    core.args[0] = 100000
    core.run(0, 'probe_madd', 1, 64)
  }
  for (let i = 0; i < 3; i++) run()
  const ms = []
  for (let i = 0; i < 60; i++) {
    const t = performance.now()
    run()
    ms.push(performance.now() - t)
  }
  return (64 * 100000 * 96) / (median(ms) * 1e6)
}

// --- the step ---
let s = 1234
const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % 50000) % V
const batch = Array.from({ length: o.batchSize }, () => {
  const ids = Int32Array.from({ length: o.maxLength }, next)
  return { inputIds: ids, targets: Int32Array.from(ids, (_, t) => (t + 1 < o.maxLength ? ids[t + 1] : -100)) }
})
const trainer = new Trainer(model, { maxLength: o.maxLength })
say(`# training-step ops: ${o.shape}${o.layers ? ` (${o.layers} layers)` : ''}, ${o.device} ${dev.threads ?? 1} threads, batch ${o.batchSize} x ${o.maxLength}, ${o.steps} timed step(s)`)
say(busyLine('before'))
const peakBefore = peak()
trainer.zeroGrad()
await trainer.forwardBackward(batch) // warm-up
const walls = []
const mark = cpuMark()
for (let i = 0; i < o.steps; i++) {
  on = true
  const t = performance.now()
  trainer.zeroGrad()
  await trainer.forwardBackward(batch)
  walls.push(performance.now() - t)
  on = false
}
const others = othersShare(mark)
const peakAfter = peak()
const pk = Math.max(peakBefore ?? 0, peakAfter ?? 0) || null
await model.dispose()

const wall = walls.reduce((x, y) => x + y, 0) / o.steps
const rows = [...stats].map(([op, st]) => ({
  op, calls: st.calls / o.steps, ms: st.ms / o.steps, share: st.ms / o.steps / wall,
  gflops: st.flops ? st.flops / (st.ms * 1e6) : null, of_peak: st.flops && pk ? st.flops / (st.ms * 1e6) / pk : null,
})).sort((x, y) => y.ms - x.ms)
const tracked = rows.reduce((x, r) => x + r.ms, 0)
rows.push({ op: '(host-side: between the ops)', calls: null, ms: wall - tracked, share: (wall - tracked) / wall, gflops: null, of_peak: null })
const group = (pred) => rows.filter((r) => pred(r.op)).reduce((x, r) => x + r.ms, 0)
const summary = {
  shape: o.shape, layers: o.layers ?? a.nLayer, device: o.device, threads: dev.threads ?? 1, batch_size: o.batchSize, max_length: o.maxLength,
  steps: o.steps, fwd_bwd_ms: wall, madd_peak_gflops: pk, madd_peak_before_gflops: peakBefore, madd_peak_after_gflops: peakAfter,
  other_cpu: others, fwd_matmul_ms: group((op) => op.startsWith('fwd matmul')), dx_ms: group((op) => op.startsWith('bwd matmul dx')),
  dw_ms: group((op) => op.startsWith('bwd matmul dW')), attention_ms: group((op) => op.endsWith('attention')),
}
if (o.json) {
  for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n')
  process.stdout.write(JSON.stringify({ summary }) + '\n')
}
const f = (x, d = 1) => (x == null ? '' : x.toFixed(d))
const table = [['op', 'calls/step', 'ms/step', 'share', 'GFLOP/s', 'of peak'],
  ...rows.map((r) => [r.op, f(r.calls, 0), f(r.ms, 0), `${f(100 * r.share)} %`, f(r.gflops), r.of_peak == null ? '' : `${f(100 * r.of_peak, 0)} %`])]
const w = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)))
say()
for (const [i, row] of table.entries()) {
  say(row.map((c, j) => (j === 0 ? c.padEnd(w[j]) : c.padStart(w[j]))).join('  '))
  if (i === 0) say(w.map((n) => '-'.repeat(n)).join('  '))
}
say()
say(`forward+backward ${f(wall / 1000, 2)} s per step; matmuls: forward ${f(summary.fwd_matmul_ms / 1000, 2)} s, dx ${f(summary.dx_ms / 1000, 2)} s, dW ${f(summary.dw_ms / 1000, 2)} s; attention ${f(summary.attention_ms / 1000, 2)} s`)
say(`madd peak ${f(pk)} GFLOP/s (before ${f(peakBefore)}, after ${f(peakAfter)}); other processes used ${fmtShare(others)} % of the CPU during the timed steps`)
say(busyLine('after'))
