// What only the wasm device has: threads, several memories, reduced-precision weight storage.
// (The golden model tests in models.test.ts already run on wasm as on js.)
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createWasmDevice, generate, loadModel, type LoadOptions, type Model, type Session, type WasmDevice } from '@refgpt/core'
import { TOL, assertClose, loadGolden, maxDiff, modelDir, pickRows, refgpt, rng, withModel } from './helpers.js'

const test = suite('wasm device')


const randn = (r: () => number, n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1)
const bitwiseEqual = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))

test('results are bitwise identical for 1, 2 and 3 threads', async () => {
  for (const name of ['gpt-j-tiny', 'gpt-neo-odd']) {
    const ids: number[] = loadGolden(name).json.prompts.p3.ids
    const runs: Float32Array[] = []
    for (const threads of [1, 2, 3]) {
      runs.push(await withModel(name, { device: 'wasm', threads }, async (m, s) => {
        assert.is((m.device as { threads?: number }).threads, threads)
        const all = await s.logits(ids, 0)
        const step = await s.forward([ids[5]], ids.length) // decode step (T = 1)
        return Float32Array.from([...all, ...step])
      }))
    }
    assert.ok(bitwiseEqual(runs[0], runs[1]), `${name}: 1 vs 2 threads`)
    assert.ok(bitwiseEqual(runs[0], runs[2]), `${name}: 1 vs 3 threads`)
  }
})

test('layers spread over several memories give the same logits as one memory', async () => {
  const g = loadGolden('gpt-neo-tiny').json
  const one = await withModel('gpt-neo-tiny', { device: 'wasm' }, async (m, s) => {
    assert.is(m.info.groups, 1)
    return (await s.logits(g.prompts.p2.ids, 0)).slice()
  })
  // 400 kB a memory: the embeddings fill the first, then about one layer (weights, and room for its KV
  // cache and one session's activations) goes in each of the others
  const many = await withModel('gpt-neo-tiny', { device: 'wasm', memoryBytes: 400_000 }, async (m, s) => {
    assert.ok(m.info.groups >= 3, `layers spread over ${m.info.groups} memories`)
    const logits = (await s.logits(g.prompts.p2.ids, 0)).slice()
    assert.equal((await generate(m, g.prompts.p1.ids, { maxNewTokens: 20 })).ids, g.greedy.p1.sequence)
    return logits
  })
  assert.ok(bitwiseEqual(one, many))
})

test('memory planning keeps room for the promised KV caches: full slots never overfill a memory', async () => {
  const limit = 400_000
  for (const sequences of [1, 4]) {
    await withModel('gpt-neo-tiny', { device: 'wasm', memoryBytes: limit, sequences }, async (m, s) => {
      const ctx = m.info.maxContext
      const slots = [0, ...Array.from({ length: sequences - 1 }, () => s.acquire())]
      for (const slot of slots) await s.forward(Array.from({ length: ctx }, (_, i) => (i * 7 + slot) % 100), 0, { slot })
      const core = (m.device as WasmDevice).core
      assert.ok(core.memories.length >= 3, `${core.memories.length} memories`)
      // memory 0 starts with the embedding table, bigger than the limit on its own; the others hold layers
      for (let g = 1; g < core.memories.length; g++)
        assert.ok(core.memories[g].bytesUsed <= limit, `sequences ${sequences}: memory ${g} holds ${core.memories[g].bytesUsed} bytes > ${limit}`)
    })
  }
})

test('f32 weights kept in row groups: read / write / snapshot see rows in order; matmul and embed equal the rows-in-order layout bit for bit', async () => {
  const dev = await createWasmDevice({ threads: 2 })
  try {
    for (const [N, K] of [[10, 16], [7, 40], [3, 8], [6, 12]] as const) { // 12: not a multiple of 8, rows stay in order
      const r = rng(N * K), data = randn(r, N * K)
      const viaFill = dev.weightF32!([N, K], (dst) => dst.set(data))
      const w = dev.weight(data.slice(), [N, K])
      for (const b of [w, viaFill]) {
        const back = new Float32Array(N * K)
        await dev.read(b, back)
        assert.equal(Array.from(back), Array.from(data), `read N=${N} K=${K}`)
        const part = new Float32Array(K + 3)
        await dev.read(b, part, K - 2)
        assert.equal(Array.from(part), Array.from(data.subarray(K - 2, 2 * K + 1)), `read at an offset N=${N} K=${K}`)
        assert.equal(Array.from(await dev.snapshot(b, 5, K)), Array.from(data.subarray(5, 5 + K)), `snapshot N=${N} K=${K}`)
      }
      const patch = randn(r, K + 1)
      dev.write(viaFill, patch, K - 1)
      const patched = data.slice(); patched.set(patch, K - 1)
      const got = new Float32Array(N * K)
      await dev.read(viaFill, got)
      assert.equal(Array.from(got), Array.from(patched), `write at an offset N=${N} K=${K}`)
      // matmul and embed on the grouped weight, then on the same weight back in rows (what training asks for)
      const T = 3, x = dev.alloc(T * K), out = dev.alloc(T * N), emb = dev.alloc(T * K)
      dev.write(x, randn(r, T * K))
      const ids = Int32Array.from([N - 1, 0, Math.min(5, N - 1)])
      const run = async () => {
        dev.matmul(out, x, w, null, T, K, N)
        dev.embed(emb, w, ids, T, K, false)
        const o = new Float32Array(T * N), e = new Float32Array(T * K)
        await dev.read(out, o); await dev.read(emb, e)
        return { o, e }
      }
      const grouped = await run()
      for (let t = 0; t < T; t++) assert.equal(Array.from(grouped.e.subarray(t * K, (t + 1) * K)), Array.from(data.subarray(ids[t] * K, (ids[t] + 1) * K)), `embed row ${ids[t]}`)
      dev.train!.trainable!(w)
      const rowsInOrder = await run()
      assert.ok(bitwiseEqual(grouped.o, rowsInOrder.o), `matmul N=${N} K=${K}: grouped vs rows in order`)
      assert.ok(bitwiseEqual(grouped.e, rowsInOrder.e), `embed N=${N} K=${K}`)
      const back = new Float32Array(N * K)
      await dev.read(w, back)
      assert.equal(Array.from(back), Array.from(data), `read after trainable N=${N} K=${K}`)
    }
  } finally {
    await dev.dispose()
  }
})

test('f16 weights: one holding an inf (an f32 above 65504) keeps the exact watched path; finite ones give the same bits', async () => {
  const dev = await createWasmDevice({ threads: 1 })
  try {
    const N = 8, K = 24, T = 1, r = rng(5)
    const data = randn(r, N * K)
    const withInf = data.slice(); withInf[2 * K + 9] = 70000 // rounds to +inf in f16
    const x = dev.alloc(T * K), out = dev.alloc(T * N)
    dev.write(x, Float32Array.from({ length: K }, () => 0.5 + r()))
    const run = async (w: ReturnType<typeof dev.weight>) => {
      dev.matmul(out, x, w, null, T, K, N)
      const o = new Float32Array(T * N)
      await dev.read(out, o)
      return o
    }
    const a = await run(dev.weight(withInf, [N, K], 'F16'))
    assert.is(a[2], Infinity, 'the row with the inf half')
    const b = await run(dev.weight(data, [N, K], 'F16'))
    for (const n of [0, 1, 3, 4, 5, 6, 7]) assert.is(a[n], b[n], `row ${n}: the same value on both weights`)
  } finally {
    await dev.dispose()
  }
})

test('f16 / bf16 storage of an f32 checkpoint matches logits.p2.f16 / .bf16', async () => {
  const golden = loadGolden('gpt-neo-tiny')
  const g = golden.json
  for (const [dtype, tensor] of [['F16', 'logits.p2.f16'], ['BF16', 'logits.p2.bf16']] as const) {
    for (const device of ['wasm', 'js'] as const) {
      await withModel('gpt-neo-tiny', { device, dtype }, async (m, s) => {
        assert.equal(Object.keys(m.info.storageDtypes), [dtype])
        if (device === 'wasm') assert.ok(m.info.weightBytes < 0.55 * m.info.parameters * 4, 'stored in 2 bytes')
        const logits = pickRows(await s.logits(g.prompts.p2.ids, 0), m.arch.nVocab, g.tensors['logits.p2'].rows)
        assertClose(logits, golden.tensor(tensor), TOL.logits, `${device} ${dtype}`)
      })
    }
  }
  // a bf16 checkpoint is kept in bf16 by default
  await withModel('gpt-neo-tiny', { device: 'wasm', variant: 'bf16' }, (m) => assert.equal(Object.keys(m.info.storageDtypes), ['BF16']))
})

// q8 (int8, one f32 scale per 32 weights of a row; a matmul quantizes its activations per block of 32 as
// well and sums the blocks' exact integer dot products in f32): the measured error on the fixtures, as a
// bound. See BENCHMARKS.md and test/q8.test.ts (bitwise js == wasm kernels, q4). The bound is the measured
// figure with a margin; greedy ids must agree where the f32 top-1/top-2 margin is larger than the q8 logit error.
const Q8_MAX_ABS_LOGIT_ERROR = 0.6 // measured: 0.26 (gpt2-tiny), 0.44 (gpt-neo-tiny), 0.13 (gpt-j-tiny), 0.41 (gpt-neo-odd)

test('q8 storage: logit error vs f32 within the documented bound; wasm q8 = js q8 (the same integer matmuls)', async () => {
  for (const name of ['gpt2-tiny', 'gpt-neo-tiny', 'gpt-j-tiny', 'gpt-neo-odd']) {
    const g = loadGolden(name).json
    const ids: number[] = g.prompts.p3.ids
    const f32 = await withModel(name, { device: 'wasm' }, async (_m, s) => (await s.logits(ids, 0)).slice())
    const q8 = await withModel(name, { device: 'wasm', dtype: 'Q8' }, async (m, s) => {
      const limit = m.arch.nEmbd % 32 === 0 ? 0.3 : 0.6 // rows padded to whole blocks of 32 (gpt-neo-odd: 36 -> 64)
      assert.ok(m.info.weightBytes < limit * m.info.parameters * 4, `q8 weights: ${m.info.weightBytes} bytes`)
      return (await s.logits(ids, 0)).slice()
    })
    const q8js = await withModel(name, { device: 'js', dtype: 'Q8' }, async (_m, s) => (await s.logits(ids, 0)).slice())
    // the q8 matmuls are bitwise equal on both devices; the other ops differ by rounding (js sums in f64)
    assertClose(q8, q8js, TOL.logits, `${name}: wasm q8 vs js q8`)
    const err = maxDiff(q8, f32)
    assert.ok(err.abs < Q8_MAX_ABS_LOGIT_ERROR, `${name}: q8 max |Δlogit| ${err.abs}`)
    const V = g.vocab_size
    for (let t = 0; t < ids.length; t++) {
      if (g.argmax_margin.p3[t] <= 2 * err.abs) continue
      let best = 0
      for (let v = 1; v < V; v++) if (q8[t * V + v] > q8[t * V + best]) best = v
      assert.is(best, g.argmax.p3[t], `${name}: q8 argmax at ${t} (margin ${g.argmax_margin.p3[t]})`)
    }
  }
})

test('refgpt bench runs a random-weight model of a real shape', () => {
  const r = refgpt(['bench', '--shape', 'gpt-neo-125M', '--layers', '2', '--prompt-tokens', '8', '--new-tokens', '4', '--json', '--threads', '2'])
  assert.is(r.code, 0, r.stderr)
  const b = JSON.parse(r.stdout)
  assert.is(b.device, 'wasm')
  assert.is(b.threads, 2)
  // 2 layers of gpt-neo-125M: wte + wpe + 2 x (ln_1 2C, q/k/v 3C², out C²+C, ln_2 2C, c_fc 4C²+4C, c_proj 4C²+C) + ln_f 2C
  const C = 768
  const expected = 50257 * C + 2048 * C + 2 * (12 * C * C + 10 * C) + 2 * C
  assert.is(b.parameters, expected)
  for (const k of ['load_s', 'prefill_tokens_per_s', 'decode_tokens_per_s', 'decode_gb_per_s', 'peak_rss_bytes']) assert.ok(b[k] > 0, k)
  // the machine's limits, measured in a child before and after: each figure as a share of their mean
  const p = b.probe
  for (const k of ['stream_gb_per_s_before', 'stream_gb_per_s_after', 'madd_gflops_before', 'madd_gflops_after']) assert.ok(p[k] > 0, k)
  const share = (x: number, a: number, c: number) => Math.round((1000 * x) / ((a + c) / 2)) / 1000
  assert.ok(Math.abs(p.decode_of_stream - share(b.decode_gb_per_s, p.stream_gb_per_s_before, p.stream_gb_per_s_after)) <= 0.002, 'decode_of_stream')
  assert.ok(Math.abs(p.prefill_of_madd - share(b.prefill_gflops, p.madd_gflops_before, p.madd_gflops_after)) <= 0.002, 'prefill_of_madd')
  const quiet = JSON.parse(refgpt(['bench', '--shape', 'gpt2', '--layers', '1', '--prompt-tokens', '4', '--new-tokens', '1', '--no-rows', '--no-probe', '--json']).stdout)
  assert.is(quiet.probe, null, '--no-probe')
})

test('refgpt bench --train: a training step of a real shape (1 layer), its FLOP count and its share of the madd peak', () => {
  const r = refgpt(['bench', '--train', '--shape', 'gpt-neo-125M', '--layers', '1', '--batch-size', '2', '--max-length', '8', '--steps', '2', '--json', '--threads', '2'])
  assert.is(r.code, 0, r.stderr)
  const b = JSON.parse(r.stdout)
  assert.is(b.mode, 'train')
  assert.is(b.device, 'wasm')
  assert.is(b.threads, 2)
  const C = 768
  assert.is(b.parameters, 50257 * C + 2048 * C + (12 * C * C + 10 * C) + 2 * C)
  assert.is(b.tokens_per_step, 16)
  assert.is(b.flops_per_step, 6 * b.parameters * 16)
  // one global layer at T = 8: 12 C x (1 + 2 + ... + 8) visible (query, key) pairs, per sequence
  assert.is(b.attention_flops_per_step, 12 * C * 36 * 2)
  assert.is(b.per_step.length, 2)
  // every printed figure is rounded to 3 decimals: a time t in seconds carries up to 5e-4 / t relative error
  const near = (x: number, y: number, what: string, seconds = Infinity) =>
    assert.ok(Math.abs(x - y) <= (2e-3 + 5e-4 / seconds) * Math.abs(y) + 2e-3, `${what}: ${x} vs ${y}`)
  near(b.fwd_bwd_gflops, b.flops_per_step / (b.fwd_bwd_s * 1e9), 'GFLOP/s = 6 N tokens / fwd+bwd seconds', b.fwd_bwd_s)
  near(b.train_tokens_per_s, 16 / b.step_s, 'tokens/s = tokens / step seconds', b.step_s)
  assert.ok(b.madd_peak_gflops > 0 && b.madd_peak_gflops >= b.madd_peak_before_gflops - 1e-3 && b.madd_peak_gflops >= b.madd_peak_after_gflops - 1e-3, 'peak = the higher probe')
  near(b.of_peak, b.fwd_bwd_gflops / b.madd_peak_gflops, 'of_peak = GFLOP/s / peak')
  // random weights (std 0.02): the loss starts near ln(V) = 10.8
  for (const s of b.per_step) assert.ok(Number.isFinite(s.loss) && Math.abs(s.loss - Math.log(50257)) < 1, `loss ${s.loss}`)
})

test('refgpt bench --train refuses inference-only options and dtypes that cannot be trained', () => {
  for (const [args, msg] of [
    [['--prompt-tokens', '8'], /--prompt-tokens does not apply to --train/],
    [['--dtype', 'q8'], /cannot be trained/],
    [['--max-length', '4096'], /--max-length exceeds the model context/],
  ] as const) {
    const r = refgpt(['bench', '--train', '--shape', 'gpt-neo-125M', '--layers', '1', ...args])
    assert.is(r.code, 2, `${args.join(' ')}: exit code`)
    assert.match(r.stderr, msg)
    assert.is(r.stdout, '')
  }
  const r = refgpt(['bench', '--shape', 'gpt-neo-125M', '--batch-size', '2'])
  assert.is(r.code, 2)
  assert.match(r.stderr, /--batch-size needs --train/)
})

test.run()
