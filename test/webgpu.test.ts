// The webgpu device op by op against the js device (the reference), on random data of odd shapes:
// K not a multiple of 4 or 32, T = 1 and T > 1, odd N, aliased operands (out = x), split weights.
// Each op has a declared tolerance per storage type (max |webgpu - js| / max(1, |js|)); Q8 / Q4 matmuls,
// copies, adds and gathers are bitwise. Where no WebGPU adapter exists every test here is a SKIP line,
// which CI fails on (scripts/test.mjs).
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { ResourceError, createDevice, createJsDevice, createWebGpuDevice, loadModel, type Activation, type Buf, type Device, type Storage } from '@refgpt/core'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WEBGPU_ERROR, maxDiff, modelDir, refgpt, rng } from './helpers.js'

/** Declared tolerances (relative to max(1, |js|)); 0 = bit for bit. Measured on SwiftShader: see /notes. */
const TOL = {
  matmul: { F32: 2e-5, F16: 2e-5, BF16: 2e-5, Q8: 0, Q4: 0 } as Record<Storage, number>,
  embed: 0,
  copy: 0,
  add: 0,
  layerNorm: 2e-6,
  activation: 2e-6,
  rotary: 1e-6,
  attention: 2e-6,
  probs: 1e-6,
  logProbs: 2e-6,
}

const test = suite('webgpu device: every op against the js device')
const run = WEBGPU_ERROR === null ? test : (() => {
  console.log(`  SKIP webgpu op tests: ${WEBGPU_ERROR}`)
  return test.skip
})() as typeof test

let gpu: Device
const js = createJsDevice()
test.before(async () => {
  if (WEBGPU_ERROR === null) gpu = await createDevice('webgpu')
})
/** The largest error seen per op and storage (printed at the end: the figures the tolerances are set from). */
const seen = new Map<string, number>()
test.after(async () => {
  await gpu?.dispose?.()
  if (seen.size) console.log(`\n  webgpu vs js, max error: ${[...seen].map(([k, v]) => `${k} ${v === 0 ? '0 (bitwise)' : v.toExponential(1)}`).join(', ')}`)
})

const rand = (n: number, seed: number, scale = 1) => {
  const r = rng(seed), a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = (2 * r() - 1) * scale
  return a
}

/** Runs `op` on both devices with the same inputs; returns the named outputs of each. */
async function both(inputs: Record<string, Float32Array>, outs: Record<string, number>, op: (d: Device, b: Record<string, Buf>) => void) {
  const result: Record<string, Float32Array>[] = []
  for (const d of [js, gpu]) {
    const b: Record<string, Buf> = {}
    for (const [k, v] of Object.entries(inputs)) {
      b[k] = d.alloc(v.length)
      d.write(b[k], v)
    }
    for (const [k, n] of Object.entries(outs)) b[k] ??= d.alloc(n)
    op(d, b)
    const r: Record<string, Float32Array> = {}
    for (const k of Object.keys(outs)) r[k] = await d.snapshot(b[k], 0, outs[k])
    for (const k of Object.keys(b)) d.free(b[k])
    result.push(r)
  }
  return { js: result[0], gpu: result[1] }
}

/** Asserts webgpu's values within tol of js's (0: the same bits; NaN equals NaN). Returns the error. */
function close(actual: Float32Array, expected: Float32Array, tol: number, label: string): number {
  const key = label.split(' ').slice(0, /^(attention|matmul) /.test(label) ? 2 : 1).join(' ')
  seen.set(key, Math.max(seen.get(key) ?? 0, maxDiff(actual.map((v) => (Number.isNaN(v) ? 0 : v)), expected.map((v) => (Number.isNaN(v) ? 0 : v))).rel))
  if (tol === 0) {
    for (let i = 0; i < expected.length; i++)
      if (!Object.is(actual[i], expected[i]) && !(Number.isNaN(actual[i]) && Number.isNaN(expected[i])))
        assert.unreachable(`${label}: element ${i} is ${actual[i]}, js ${expected[i]} (bitwise expected)`)
    return 0
  }
  const { rel } = maxDiff(actual, expected)
  assert.ok(rel <= tol, `${label}: max error ${rel.toExponential(2)} > tol ${tol}`)
  return rel
}

const SHAPES = [[1, 37, 5], [1, 64, 33], [3, 70, 9], [9, 100, 13], [5, 33, 64], [2, 1, 3]] as const
const STORAGES: Storage[] = ['F32', 'F16', 'BF16', 'Q8', 'Q4']

run('matmul: F32 / F16 / BF16 within tolerance, Q8 / Q4 bit for bit (the numerics contract), with and without bias', async () => {
  let seed = 1
  for (const storage of STORAGES)
    for (const [T, K, N] of SHAPES)
      for (const bias of [false, true]) {
        const x = rand(T * K, seed++, 3), w = rand(N * K, seed++), b = rand(N, seed++)
        const r = await both({ x }, { out: T * N }, (d, bb) => {
          const wb = d.weight(w.slice(), [N, K], storage), bi = bias ? d.weight(b.slice(), [N]) : null
          d.matmul(bb.out, bb.x, wb, bi, T, K, N)
        })
        close(r.gpu.out, r.js.out, TOL.matmul[storage], `matmul ${storage} T=${T} K=${K} N=${N} bias=${bias}`)
      }
})

run('Q8 / Q4 matmul: activation quantization edge cases are bitwise too (zeros, ties, tiny and huge values, inf, NaN)', async () => {
  const K = 70, T = 4, N = 7
  const x = rand(T * K, 99, 2)
  x.fill(0, 0, 32) // an all-zero block
  for (let k = 32; k < 64; k++) x[k] = (k - 48) * 0.5 // quotients on .5 ties
  for (let k = 64; k < 70; k++) x[k] = 1e-40 * (k - 66) // subnormal block (scale subnormal)
  x[K + 3] = 3e38 // huge
  x[2 * K + 5] = Infinity
  x[3 * K + 40] = NaN
  for (const storage of ['Q8', 'Q4'] as const) {
    const w = rand(N * K, 7)
    w[3] = 0.5; w[4] = -0.5
    const r = await both({ x }, { out: T * N }, (d, b) => d.matmul(b.out, b.x, d.weight(w.slice(), [N, K], storage), null, T, K, N))
    close(r.gpu.out, r.js.out, 0, `matmul ${storage} edge cases`)
  }
})

run('embed: every storage, accumulate, negative ids (zero rows); bitwise', async () => {
  const rows = 11, C = 45, ids = Int32Array.from([3, -1, 10, 0, 3])
  const table = rand(rows * C, 5)
  for (const storage of STORAGES)
    for (const acc of [false, true]) {
      const r = await both({ out: rand(ids.length * C, 6) }, { out: ids.length * C }, (d, b) =>
        d.embed(b.out, d.weight(table.slice(), [rows, C], storage), ids, ids.length, C, acc))
      close(r.gpu.out, r.js.out, TOL.embed, `embed ${storage} accumulate=${acc}`)
    }
})

run('copy (offsets, one buffer, overlapping ranges), add (out = a, out = b, a = b), zero, write', async () => {
  const a = rand(101, 8), c = rand(101, 9)
  let r = await both({ a, c }, { a: 101, c: 101 }, (d, b) => {
    d.copy(b.c, 7, b.a, 50, 33)
    d.copy(b.a, 0, b.a, 60, 20) // one buffer, apart
    d.copy(b.a, 2, b.a, 12, 30) // overlapping (the js device's forward loop is a memmove when dst < src)
  })
  close(r.gpu.a, r.js.a, 0, 'copy a')
  close(r.gpu.c, r.js.c, 0, 'copy c')
  r = await both({ a, c }, { o: 101, a: 101, c: 101 }, (d, b) => {
    d.add(b.o, b.a, b.c, 101)
    d.add(b.a, b.a, b.c, 101) // out = a
    d.add(b.c, b.o, b.c, 99) // out = b
    d.add(b.o, b.a, b.a, 50) // a = b
  })
  for (const k of ['o', 'a', 'c']) close(r.gpu[k], r.js[k], TOL.add, `add ${k}`)
  r = await both({ a }, { a: 101 }, (d, b) => {
    d.zero(b.a, 40)
    d.write(b.a, Float32Array.of(1, 2, 3), 50)
  })
  close(r.gpu.a, r.js.a, 0, 'zero + write')
})

run('layerNorm (T = 1 and 5, odd C, out = x) and every activation (out = x too)', async () => {
  for (const [T, C] of [[1, 33], [5, 70], [2, 1]]) {
    const x = rand(T * C, T * C, 4), g = rand(C, 2), bias = rand(C, 3)
    const r = await both({ x }, { out: T * C, x: T * C }, (d, b) => {
      const gw = d.weight(g.slice(), [C]), bw = d.weight(bias.slice(), [C])
      d.layerNorm(b.out, b.x, gw, bw, T, C, 1e-5)
      d.layerNorm(b.x, b.x, gw, bw, T, C, 1e-5)
    })
    close(r.gpu.out, r.js.out, TOL.layerNorm, `layerNorm T=${T} C=${C}`)
    close(r.gpu.x, r.js.x, TOL.layerNorm, `layerNorm in place T=${T} C=${C}`)
  }
  const x = rand(1001, 12, 12)
  x[0] = 0; x[1] = 100; x[2] = -100; x[3] = 1e-6
  for (const act of ['gelu_tanh', 'gelu_erf', 'relu', 'silu', 'quick_gelu'] as Activation[]) {
    const r = await both({ x }, { out: 1001, x: 1001 }, (d, b) => {
      d.activation(b.out, b.x, 1001, act)
      d.activation(b.x, b.x, 1000, act)
    })
    close(r.gpu.out, r.js.out, TOL.activation, act)
    close(r.gpu.x, r.js.x, TOL.activation, `${act} in place`)
  }
})

run('rotary: T = 1 and 3, rotaryDim < headDim, positions out of order', async () => {
  const H = 3, D = 10, R = 6, nPos = 20
  const table = new Float32Array(nPos * (R / 2) * 2)
  for (let p = 0; p < nPos; p++) for (let i = 0; i < R / 2; i++) {
    table[(p * (R / 2) + i) * 2] = Math.cos(p / 3 ** i)
    table[(p * (R / 2) + i) * 2 + 1] = Math.sin(p / 3 ** i)
  }
  for (const pos of [[7], [19, 0, 4]]) {
    const T = pos.length
    const r = await both({ x: rand(T * H * D, 4) }, { x: T * H * D }, (d, b) =>
      d.rotary(b.x, d.weight(table.slice(), [nPos, R]), Int32Array.from(pos), T, H, D, R))
    close(r.gpu.x, r.js.x, TOL.rotary, `rotary T=${T}`)
  }
})

run('attention: T = 1 after a prefix, T > 1 (causal), a local window, scale, probabilities', async () => {
  const H = 3, D = 9, C = H * D, nCtx = 40
  for (const [T, pos0, window, scale] of [[1, 0, 0, 1], [1, 17, 0, 1 / 3], [6, 0, 0, 1 / 3], [5, 11, 0, 1], [7, 9, 4, 1], [1, 30, 8, 1 / 3]]) {
    const n = pos0 + T
    const r = await both({ q: rand(T * C, T + pos0, 2), k: rand(nCtx * C, 3, 2), v: rand(nCtx * C, 4) }, { out: T * C, probs: H * T * n }, (d, b) =>
      d.attention(b.out, b.q, b.k, b.v, { T, pos0, nHead: H, headDim: D, scale, window, probs: b.probs }))
    close(r.gpu.out, r.js.out, TOL.attention, `attention out T=${T} pos0=${pos0} window=${window}`)
    close(r.gpu.probs, r.js.probs, TOL.probs, `attention probs T=${T} pos0=${pos0} window=${window}`)
    const plain = await both({ q: rand(T * C, T + pos0, 2), k: rand(nCtx * C, 3, 2), v: rand(nCtx * C, 4) }, { out: T * C }, (d, b) =>
      d.attention(b.out, b.q, b.k, b.v, { T, pos0, nHead: H, headDim: D, scale, window }))
    close(plain.gpu.out, plain.js.out, TOL.attention, `attention without probs T=${T}`)
  }
})

run('logProbs: log-softmax at the targets, negative targets, greedy flags with ties (first argmax)', async () => {
  const T = 5, V = 301
  const x = rand(T * V, 21, 8)
  x[1 * V + 10] = 50; x[1 * V + 20] = 50 // a tie: only the first is greedy
  x[2 * V + 20] = 50; x[2 * V + 10] = 50
  x[3 * V + 7] = 60
  const targets = Int32Array.from([3, 20, 10, 7, -1])
  const r = await both({ x }, { out: T, greedy: T }, (d, b) => d.logProbs(b.out, b.x, targets, T, V, b.greedy))
  close(r.gpu.out, r.js.out, TOL.logProbs, 'logProbs')
  close(r.gpu.greedy, r.js.greedy, 0, 'greedy flags')
  assert.equal([...r.gpu.greedy], [0, 0, 1, 1, 0])
})

run('weights bigger than maxBufferBytes are split into row ranges and give the same logits bit for bit', async () => {
  const dev = await createWebGpuDevice()
  assert.ok(dev.limits.maxBufferBytes >= 128 * 2 ** 20 - 256, `the default limit is the adapter's binding size (${dev.limits.maxBufferBytes})`)
  assert.match(dev.description, /^webgpu on /)
  await dev.dispose()
  const whole = await loadModel(modelDir('gpt2-tiny'), { device: 'webgpu' })
  const split = await loadModel(modelDir('gpt2-tiny'), { device: 'webgpu', maxBufferBytes: 4096 })
  try {
    assert.is(split.device.limits.maxBufferBytes, 4096)
    assert.ok(split.info.weightBuffers > whole.info.weightBuffers, `split: ${split.info.weightBuffers} buffers, whole: ${whole.info.weightBuffers}`)
    const ids = [5, 9, 200, 3, 77]
    const a = await whole.createSession().logits(ids, 0), b = await split.createSession().logits(ids, 0)
    close(b, a, 0, 'split logits')
  } finally {
    await whole.dispose()
    await split.dispose()
  }
})

// runs where the device is missing too: the errors are what is checked
test('unavailable: a missing `webgpu` package or no adapter is one clear ResourceError line', async () => {
  const cases = [
    [{ dawn: async () => null }, /webgpu device: the `webgpu` package \(Dawn for Node\) is not installed \(expected a WebGPU adapter.*\); hint: npm install webgpu/],
    [{ dawn: async () => ({ create: () => ({ requestAdapter: async () => null }), globals: {} }), findIcd: () => null }, /webgpu device: no WebGPU adapter \(expected .*found .*\); hint: install a Vulkan GPU driver, or Debian's chromium and libvulkan1/],
  ] as const
  for (const [opts, re] of cases) {
    try {
      await createWebGpuDevice(opts)
      assert.unreachable('expected an error')
    } catch (e) {
      assert.instance(e, ResourceError)
      assert.match((e as Error).message, re)
      assert.not.match((e as Error).message, /\n/)
    }
  }
})

test.run()

// --- the CLI with --device webgpu (the built binary, as a user runs it) --------------------------

const cli = suite('webgpu in the CLI: generate, golden verify, step')
const cliRun = WEBGPU_ERROR === null ? cli : (() => {
  console.log(`  SKIP webgpu CLI tests: ${WEBGPU_ERROR}`)
  return cli.skip
})() as typeof cli
const tiny = modelDir('gpt2-tiny')

cliRun('generate --device webgpu: the greedy ids of the wasm device', () => {
  const ids = (device: string) => {
    const r = refgpt(['generate', '-m', tiny, '--prompt', 'Hello there', '-n', '8', '--json', '--device', device])
    assert.is(r.code, 0, r.stderr)
    return JSON.parse(r.stdout).sequences[0].ids
  }
  const wasm = ids('wasm')
  assert.equal(ids('webgpu'), wasm)
  // transformers' spelling promises a GPU: the same ids on one, one line and exit 1 on a CPU driver (SwiftShader)
  const gpu = refgpt(['generate', '-m', tiny, '--prompt', 'Hello there', '-n', '8', '--json', '--device', 'gpu'])
  if (gpu.code === 0) assert.equal(JSON.parse(gpu.stdout).sequences[0].ids, wasm)
  else {
    assert.is(gpu.code, 1)
    assert.is(gpu.stdout, '')
    assert.match(gpu.stderr.trim(), /^refgpt generate: .*a GPU was asked for, but the only WebGPU adapter here is .*\(a CPU driver\).*hint: use device "cpu"[^\n]*$/)
  }
})

cliRun('bench --device webgpu names the adapter (and says when it is a CPU driver)', () => {
  const r = refgpt(['bench', '--shape', 'gpt2', '--layers', '1', '--device', 'webgpu', '--prompt-tokens', '2', '--new-tokens', '1', '--no-rows', '--json'])
  assert.is(r.code, 0, r.stderr)
  const b = JSON.parse(r.stdout)
  assert.is(b.device, 'webgpu')
  assert.type(b.adapter, 'string')
  assert.ok(b.adapter.length > 0)
  assert.is(b.probe, null, 'no wasm probes on webgpu')
  if (/swiftshader/i.test(b.adapter)) assert.match(b.adapter, /, a CPU driver$/)
})

cliRun('golden verify --device webgpu passes on a golden file made on wasm; step --device webgpu prints every stage', () => {
  const dir = mkdtempSync(join(tmpdir(), 'refgpt-webgpu-'))
  try {
    const file = join(dir, 'g.msgpack')
    let r = refgpt(['golden', 'export', '-m', tiny, 'Hello there', '-o', file, '--device', 'wasm'])
    assert.is(r.code, 0, r.stderr)
    r = refgpt(['golden', 'verify', file, '-m', tiny, '--device', 'webgpu'])
    assert.is(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /on webgpu/)
    assert.match(r.stdout, /PASS: all \d+ tensors within tolerance/)
    r = refgpt(['step', '-m', tiny, 'Hello there', '--device', 'webgpu', '--all'])
    assert.is(r.code, 0, r.stderr)
    assert.match(r.stdout, /top-5 next tokens:\n\s+1\. "otech"/) // the wasm device's top token (golden verify above)
    assert.not.match(r.stdout + r.stderr, /Warning|vkCreateInstance/) // Dawn stays quiet
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

cli.run()
