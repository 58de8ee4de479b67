// The backward matmul kernels alone, on one thread, on the GPT-Neo-125M training shapes (T tokens of one
// example): GFLOP/s of matmul_backward_dx and matmul_backward_dw beside the forward matmul_f32 and the
// multiply-add probe of the same run. For tuning the kernels; `refgpt bench --train` is the figure that counts.
//
//   node benchmarks/mm-backward.mjs [--T 128] [--reps 5] [--naive] [--json]
import { createWasmCore } from '@refgpt/wasm'

const arg = (name, def) => {
  const i = process.argv.indexOf(name)
  return i < 0 ? def : Number(process.argv[i + 1])
}
const T = arg('--T', 128), reps = arg('--reps', 5), json = process.argv.includes('--json')
const sfx = process.argv.includes('--naive') ? '_naive' : ''
const core = await createWasmCore({ threads: 1 })
const mem = core.memories[0], k = core.kernels(0)
const fill = (n) => {
  const p = mem.alloc(n * 4, 16)
  const a = mem.f32(p, n)
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.37) * 0.1
  return p
}
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1]
const time = (f) => {
  f()
  const ts = []
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now()
    f()
    ts.push(performance.now() - t0)
  }
  return median(ts)
}
const C = 768
const shapes = [['C x C', C, C], ['C x 4C (c_fc)', C, 4 * C], ['4C x C (c_proj)', 4 * C, C], ['C x 8192 (lm_head slice)', C, 8192]]
const maddIters = 1 << 20
const madd = (maddIters * 96) / time(() => k.probe_madd(0, 1, maddIters)) / 1e6 // GFLOP/s, as probes.bench.mjs
const rows = []
for (const [name, K, N] of shapes) {
  const mark = mem.mark()
  const x = fill(T * K), w = fill(N * K), dout = fill(T * N), out = fill(T * N), dx = fill(T * K), dw = fill(N * K), db = fill(N)
  const flops = 2 * T * K * N
  const fwd = time(() => k.matmul_f32(0, N, out, x, w, 0, T, K, N))
  const bdx = time(() => k[`matmul_backward_dx${sfx}`](0, T, dx, dout, w, T, K, N))
  const bdw = time(() => k[`matmul_backward_dw${sfx}`](0, N, dw, db, dout, x, T, K, N))
  rows.push({ shape: name, T, K, N, fwd: flops / fwd / 1e6, dx: flops / bdx / 1e6, dw: flops / bdw / 1e6 })
  mem.release(mark)
}
if (json) console.log(JSON.stringify({ T, madd, rows }))
else {
  console.log(`madd peak (1 thread) ${madd.toFixed(1)} GFLOP/s`)
  for (const r of rows) console.log(`${r.shape.padEnd(26)} fwd ${r.fwd.toFixed(1).padStart(5)}  dx ${r.dx.toFixed(1).padStart(5)}  dW ${r.dw.toFixed(1).padStart(5)} GFLOP/s  (${(100 * r.fwd / madd).toFixed(0)} / ${(100 * r.dx / madd).toFixed(0)} / ${(100 * r.dw / madd).toFixed(0)} % of peak)`)
}
await core.close?.()
