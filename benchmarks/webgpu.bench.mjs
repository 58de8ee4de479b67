#!/usr/bin/env node
// Kernel benchmark of the webgpu device: mat-vec (T = 1, a decoded token) in GB/s of weights read, and
// matmul (T = 64, a prefill chunk) in GFLOP/s, per storage type, at real model shapes. Each figure is
// the median of --runs timed batches of --reps dispatches (one submit and one readback per batch, as a
// forward does), after one untimed batch (shader compilation).
//
//   node benchmarks/webgpu.bench.mjs [--shapes 768x768,768x3072,...] [--storages F32,F16,BF16,Q8,Q4]
//        [--t 64] [--reps 10] [--runs 3] [--json]
//
// Needs a build (node scripts/build.mjs) and a WebGPU adapter (the `webgpu` package; SwiftShader where
// there is no GPU). The adapter is printed first: figures on SwiftShader (a CPU driver) measure the
// CPU emulation, nothing about GPUs.
import { createDevice, storageBytes } from '@refgpt/core'

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? def : process.argv[i + 1]
}
const json = process.argv.includes('--json')
const shapes = arg('shapes', '768x768,768x3072,3072x768').split(',').map((s) => s.split('x').map(Number)) // K x N
const storages = arg('storages', 'F32,F16,BF16,Q8,Q4').split(',')
const Tm = Number(arg('t', 64)), reps = Number(arg('reps', 10)), runs = Number(arg('runs', 3))

const dev = await createDevice('webgpu')
const out = { adapter: dev.adapter, description: dev.description, cpu_driver: dev.adapter.cpu, reps, runs, results: [] }
if (!json) console.log(`${dev.description}${dev.adapter.cpu ? '\n(a CPU driver: these figures say nothing about GPUs)' : ''}`)

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]
const sink = new Float32Array(1)

async function time(T, K, N, w) {
  const x = dev.alloc(T * K), y = dev.alloc(T * N)
  dev.write(x, Float32Array.from({ length: T * K }, (_, i) => Math.sin(i)))
  const batch = async () => {
    for (let r = 0; r < reps; r++) dev.matmul(y, x, w, null, T, K, N)
    await dev.read(y, sink)
  }
  await batch() // compiles the shader
  const times = []
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    await batch()
    times.push((performance.now() - t0) / 1000 / reps)
  }
  dev.free(x)
  dev.free(y)
  return median(times)
}

for (const storage of storages) {
  for (const [K, N] of shapes) {
    const data = Float32Array.from({ length: N * K }, (_, i) => Math.cos(i * 0.37) * 0.05)
    const w = dev.weight(data, [N, K], storage)
    const bytes = storageBytes([N, K], storage)
    const sv = await time(1, K, N, w)
    const sm = await time(Tm, K, N, w)
    const r = { storage, K, N, matvec_s: sv, matvec_gb_per_s: +(bytes / sv / 1e9).toFixed(3), matmul_T: Tm, matmul_s: sm, matmul_gflop_per_s: +((2 * Tm * K * N) / sm / 1e9).toFixed(3) }
    out.results.push(r)
    dev.free(w)
    if (!json) console.log(`${storage.padEnd(4)} ${`${K}x${N}`.padEnd(10)} mat-vec ${r.matvec_gb_per_s.toFixed(2).padStart(8)} GB/s   matmul T=${Tm} ${r.matmul_gflop_per_s.toFixed(2).padStart(8)} GFLOP/s`)
  }
}
if (json) console.log(JSON.stringify(out))
await dev.dispose()
