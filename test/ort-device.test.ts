// ONNX Runtime devices (issue 18): loadModel(dir, { device: 'ort:cpu' }) exports the model to ONNX and runs
// it on ONNX Runtime's CPU execution provider through the Session interface, so the same generate(),
// beam search, scheduler and evaluation code drives it. Parity on the four Hugging Face fixtures and the
// ModelScope fixture: logits within 1e-4 of refgpt's js device and of transformers (golden), greedy and
// beam ids equal to the golden ones; the static graph (--static: batch 1, fixed sizes, a prefill graph and
// a decode graph) against the js device; `refgpt golden verify --device ort:cpu`; the NPU probe (false
// here: the model card's fallback to 'cpu' runs); the exported file in onnxruntime-web (wasm) in Node.
// Without onnxruntime-node the ORT tests are reported as skipped, never passed.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import {
  NPU_PROVIDERS, Scheduler, Generation, argmax, exportOnnx, generate, isNpuAvailable, loadModel, modelscopeGenerateIds, ortProviders, resolveDeviceName, type Model,
} from '@refgpt/core'
import { MODELS, TOL, assertClose, loadGolden, modelDir, pickRows, refgpt, rejects } from './helpers.js'

const HAVE_ORT = ortProviders().includes('cpu')
const ORT_MISSING = 'onnxruntime-node cannot be loaded; install the devDependencies (pnpm install)'
const test = suite('ort devices')
const ortTest = (name: string, fn: () => Promise<void>) => {
  if (HAVE_ORT) test(name, fn)
  else {
    console.log(`  SKIP ${name}: ${ORT_MISSING}`)
    test.skip(name, fn)
  }
}
const dir = mkdtempSync(join(tmpdir(), 'refgpt-ort-dev-'))
test.after(() => rmSync(dir, { recursive: true, force: true }))

/** Greedy ids of p0, p1, p2 and the 4-beam search of p1 on `m` against the golden ones. */
async function greedyAndBeam(m: Model, j: ReturnType<typeof loadGolden>['json'], label: string) {
  for (const p of ['p0', 'p1', 'p2']) {
    const { attention_mask: _, ...settings } = j.generation_settings.greedy
    const r = await generate(m, j.prompts[p].ids, settings)
    assert.equal(r.sequences[0].ids, j.greedy[p].sequence, `${label} greedy ${p}`)
  }
  const want = j.beam['p1.num_beams4'], st = j.generation_settings['beam.p1.num_beams4']
  const beam = await generate(m, j.prompts.p1.ids, { num_beams: st.num_beams, max_new_tokens: st.max_new_tokens, early_stopping: st.early_stopping, length_penalty: st.length_penalty, pad_token_id: st.pad_token_id })
  assert.equal(beam.sequences.map((q) => q.ids), want.sequences, `${label} beam`)
}

for (const name of MODELS) {
  ortTest(`${name} on ort:cpu: logits within 1e-4 of js and transformers; greedy and beam ids = golden`, async () => {
    const g = loadGolden(name), j = g.json
    const [m, js] = await Promise.all([loadModel(modelDir(name), { device: 'ort:cpu' }), loadModel(modelDir(name), { device: 'js' })])
    try {
      assert.is(m.device.name, 'ort:cpu')
      const V = m.arch.nVocab
      const s = m.createSession(), sj = js.createSession()
      for (const p of ['p1', 'p2']) {
        const ids: number[] = j.prompts[p].ids
        const logits = await s.logits(ids, 0)
        assertClose(logits, await sj.logits(ids, 0), TOL.logits, `${name} ${p} vs js`)
        assertClose(pickRows(logits, V, j.tensors[`logits.${p}`].rows), g.tensor(`logits.${p}`), TOL.logits, `${name} ${p} vs golden`)
      }
      // the KV cache: prefill then one token at a time, each step against the js device
      const ids: number[] = j.prompts.p1.ids
      let a = await s.forward(ids, 0), b = await sj.forward(ids, 0)
      for (let t = 0; t < 6; t++) {
        assertClose(a, b, TOL.logits, `${name} step ${t}`)
        const next = argmax(b)
        a = await s.forward([next], ids.length + t)
        b = await sj.forward([next], ids.length + t)
      }
      await greedyAndBeam(m, j, name)
      // log-probabilities (host log-softmax of the graph's logits) against the js device's on-device ones
      const lp = await s.logProbs(j.prompts.p2.ids, { greedy: true }), lj = await sj.logProbs(j.prompts.p2.ids, { greedy: true })
      assertClose(lp.logprobs, lj.logprobs, { atol: 1e-4, rtol: 1e-4 }, `${name} logProbs`)
      assert.equal(Array.from(lp.greedy), Array.from(lj.greedy))
      s.dispose()
      sj.dispose()
    } finally {
      await m.dispose()
      await js.dispose()
    }
  })
}

ortTest('gpt3-ms-tiny (ModelScope) on ort:cpu: the pipeline\'s greedy ids = golden; logits = js', async () => {
  const g = loadGolden('gpt3-ms-tiny').json
  const [m, js] = await Promise.all([loadModel(modelDir('gpt3-ms-tiny'), { device: 'ort:cpu' }), loadModel(modelDir('gpt3-ms-tiny'), { device: 'js' })])
  try {
    for (const p of g.prompts) {
      const r = await modelscopeGenerateIds(m, p.ids, p.ids.length, { topK: 1, topP: 0, maxLength: p.ids.length + 16 })
      assert.equal(r.newTokens, p.greedy_ms_generate, `greedy ${p.source_text}`)
    }
    const ids = g.prompts[2].ids
    assertClose(await m.createSession().logits(ids, 0), await js.createSession().logits(ids, 0), TOL.logits, 'logits vs js')
  } finally {
    await m.dispose()
    await js.dispose()
  }
})

ortTest('the scheduler (continuous batching) drives an ort model too: the same tokens as alone', async () => {
  const m = await loadModel(modelDir('gpt2-tiny'), { device: 'ort:cpu' })
  try {
    const alone = await generate(m, [1, 2, 3], { max_new_tokens: 8, do_sample: true, seed: 4 })
    const sched = new Scheduler(m, { parallel: 2 })
    const [a, b] = await Promise.all([
      sched.submit({ rows: 1, start: (session) => Generation.start(m, [[1, 2, 3]], { max_new_tokens: 8, do_sample: true, seed: 4, session }) }),
      sched.submit({ rows: 1, start: (session) => Generation.start(m, [[9, 8]], { max_new_tokens: 8, session }) }),
    ])
    assert.equal(a.result().newTokens, alone.newTokens)
    assert.equal(b.result().newTokens, (await generate(m, [9, 8], { max_new_tokens: 8 })).newTokens)
    await sched.close()
  } finally {
    await m.dispose()
  }
})

ortTest('static graphs (batch 1, fixed sizes): a padded 8-token prefill graph and a 1-token decode graph equal the js device', async () => {
  for (const name of [...MODELS, 'gpt3-ms-tiny']) {
    const js = await loadModel(modelDir(name), { device: 'js' })
    const ort = (await import('onnxruntime-node')) as unknown as typeof import('onnxruntime-node')
    try {
      const a = js.arch, cap = 40, P = 8, H = a.nHead, D = a.headDim, V = a.nVocab
      const pf = join(dir, `${name}.prefill.onnx`), df = join(dir, `${name}.decode.onnx`)
      const r = await exportOnnx(js, pf, { static: { tokens: P, capacity: cap } })
      assert.equal(r.static, { tokens: P, capacity: cap })
      await exportOnnx(js, df, { static: { tokens: 1, capacity: cap } })
      const [pre, dec] = await Promise.all([ort.InferenceSession.create(pf), ort.InferenceSession.create(df)])
      // every input and output shape is fixed (no symbolic dimension)
      const cache = Array.from({ length: a.nLayer }, () => ({ key: new Float32Array(H * cap * D), value: new Float32Array(H * cap * D) }))
      /** One call: ids at positions pos.. (the first `real` of them real, the rest padding); the real rows' keys and values written into the cache. */
      const run = async (sess: typeof pre, ids: number[], pos: number, real: number) => {
        const S = ids.length
        const mask = new BigInt64Array(cap + S)
        for (let i = 0; i < pos; i++) mask[i] = 1n
        for (let i = 0; i < real; i++) mask[cap + i] = 1n
        const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
          input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, S]),
          position_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map((_, i) => BigInt(pos + i))), [1, S]),
          attention_mask: new ort.Tensor('int64', mask, [1, cap + S]),
        }
        for (let l = 0; l < a.nLayer; l++) for (const kv of ['key', 'value'] as const) feeds[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', cache[l][kv], [1, H, cap, D])
        const out = await sess.run(feeds)
        for (let l = 0; l < a.nLayer; l++)
          for (const kv of ['key', 'value'] as const) {
            const p = out[`present.${l}.${kv}`]
            assert.equal(p.dims, [1, H, S, D])
            const data = p.data as Float32Array
            for (let h = 0; h < H; h++) for (let t = 0; t < real; t++) cache[l][kv].set(data.subarray((h * S + t) * D, (h * S + t + 1) * D), (h * cap + pos + t) * D)
          }
        assert.equal(out.logits.dims, [1, S, V])
        return out.logits.data as Float32Array
      }
      const prompt = [3, 14, 15, 9, 2]
      const s = js.createSession()
      const got = await run(pre, [...prompt, 0, 0, 0], 0, prompt.length)
      assertClose(got.subarray(0, prompt.length * V), await s.logits(prompt, 0), TOL.logits, `${name} static prefill`)
      // decode past GPT-Neo's local windows: 25 steps, each against the js device's KV-cached forward
      let pos = prompt.length
      for (let k = 0; k < 25; k++, pos++) {
        const id = (k * 7 + 3) % V
        assertClose(await run(dec, [id], pos, 1), await s.forward([id], pos), TOL.logits, `${name} static decode step ${k}`)
      }
      s.dispose()
    } finally {
      await js.dispose()
    }
  }
})

// The device on static graphs (ortStatic / --ort-static: what an NPU or WebNN runs): a 4-token prefill graph
// and a 1-token decode graph over a 64-position cache kept by the host; prompts longer than 4 run in padded
// pieces. The same generate() and beam search drive it.
for (const name of MODELS) {
  ortTest(`${name} on ort:cpu with static graphs (4-token prefill, 1-token decode, 64 positions): logits = js, greedy and beam ids = golden`, async () => {
    const j = loadGolden(name).json
    const [m, js] = await Promise.all([loadModel(modelDir(name), { device: 'ort:cpu', ortStatic: { tokens: 4, capacity: 64 } }), loadModel(modelDir(name), { device: 'js' })])
    try {
      assert.is(m.info.maxContext, 64, 'the static cache is the context')
      const s = m.createSession(), sj = js.createSession()
      assert.is(s.maxBatchTokens, 4, 'a call takes at most the prefill graph\'s rows')
      for (const p of ['p1', 'p2']) {
        const ids: number[] = j.prompts[p].ids
        assertClose(await s.logits(ids, 0), await sj.logits(ids, 0), TOL.logits, `${name} ${p} static logits vs js`)
      }
      // a rewind: positions past 3 are dropped (masked), then a different continuation
      const ids: number[] = j.prompts.p1.ids
      await s.forward(ids, 0)
      assertClose(await s.forward([7, 8], 3), await sj.logits([...ids.slice(0, 3), 7, 8], 0).then((l) => l.subarray(4 * m.arch.nVocab)), TOL.logits, `${name} rewind`)
      await greedyAndBeam(m, j, `${name} static`) // beams: copySlot on the host cache
      await rejects(() => s.forward(Array.from({ length: 65 }, () => 1), 0), /sequence longer than the context \(expected at most 64 positions/)
      s.dispose()
      sj.dispose()
    } finally {
      await m.dispose()
      await js.dispose()
    }
  })
}

ortTest('static graphs: gpt3-ms-tiny with one 1-token graph (tokens 1) gives ModelScope\'s golden greedy ids; bad sizes and ortStatic off ort are refused; refgpt generate --ort-static', async () => {
  const g = loadGolden('gpt3-ms-tiny').json
  const m = await loadModel(modelDir('gpt3-ms-tiny'), { device: 'ort:cpu', ortStatic: { tokens: 1 } })
  try {
    assert.is(m.info.maxContext, 64, 'capacity: the loaded context (the fixture\'s 64 positions)')
    for (const p of g.prompts) {
      const r = await modelscopeGenerateIds(m, p.ids, p.ids.length, { topK: 1, topP: 0, maxLength: p.ids.length + 16 })
      assert.equal(r.newTokens, p.greedy_ms_generate, `static greedy ${p.source_text}`)
    }
  } finally {
    await m.dispose()
  }
  const dirOf = modelDir('gpt2-tiny')
  await rejects(() => loadModel(dirOf, { device: 'ort:cpu', ortStatic: { capacity: 129 } }), /static KV capacity out of range \(expected 1 \.\. 128/)
  await rejects(() => loadModel(dirOf, { device: 'ort:cpu', ortStatic: { tokens: 9, capacity: 8 } }), /static prefill tokens out of range \(expected 1 \.\. 8/)
  await rejects(() => loadModel(dirOf, { device: 'wasm', ortStatic: true }), /ortStatic applies to ONNX Runtime devices only/)
  const args = ['generate', '--model', dirOf, '--prompt-ids', '15496,11,314,1101,257,3303', '--max-new-tokens', '8', '--json']
  const a = refgpt([...args, '--device', 'ort:cpu', '--ort-static', '4,32']), b = refgpt([...args, '--device', 'js'])
  assert.is(a.code, 0, a.stderr)
  assert.equal(JSON.parse(a.stdout).sequences[0].new_ids, JSON.parse(b.stdout).sequences[0].new_ids)
  for (const [extra, msg] of [[['--ort-static', '4'], /--ort-static applies to ONNX Runtime devices only/], [['--device', 'ort:cpu', '--ort-static', '4x'], /bad --ort-static \(expected N or N,C/]] as const) {
    const r = refgpt([...args, ...extra])
    assert.is(r.code, 2, r.stderr)
    assert.match(r.stderr, msg)
    assert.is(r.stdout, '')
  }
})

ortTest('refgpt golden verify --device ort:cpu: logits compared and within tolerance, the other stages reported as skipped', async () => {
  const file = join(dir, 'g.golden')
  const ex = refgpt(['golden', 'export', '--model', modelDir('gpt-neo-tiny'), '--prompt-ids', '1,2,3,4,5', '--out', file])
  assert.is(ex.code, 0, ex.stderr)
  const r = refgpt(['golden', 'verify', file, '--model', modelDir('gpt-neo-tiny'), '--device', 'ort:cpu'])
  assert.is(r.code, 0, r.stdout + r.stderr)
  assert.match(r.stdout, /model {3}\S+ on ort:cpu/)
  assert.match(r.stdout, /^logits +\[5, \d+\] .* PASS/m)
  assert.match(r.stdout, /h\.0\.ln_1 .* SKIP \(skipped: not an output of the ONNX graph ort:cpu runs/)
  assert.match(r.stdout, /PASS: all 1 compared tensors within tolerance; \d+ skipped/)
})

test('npu: isNpuAvailable() is false here (no NPU provider in this onnxruntime build); the card\'s fallback to cpu runs; "npu" is refused, never a silent CPU', async () => {
  const providers = ortProviders()
  assert.ok(!NPU_PROVIDERS.some((p) => providers.includes(p)), `this build lists ${providers.join(', ')}`)
  assert.is(isNpuAvailable(), false)
  // the GPT-Neo card: device = "npu:0" if is_torch_npu_available() else "cpu"
  const m = await loadModel(modelDir('gpt-neo-tiny'), { device: isNpuAvailable() ? 'npu:0' : 'cpu' })
  assert.is(m.device.name, 'wasm')
  await m.dispose()
  await rejects(() => loadModel(modelDir('gpt-neo-tiny'), { device: 'npu:0' }), /no NPU here .*this onnxruntime build has no NPU execution provider/)
  const cli = refgpt(['generate', '--model', modelDir('gpt-neo-tiny'), '--device', 'npu', '--prompt-ids', '1,2'])
  assert.is(cli.code, 2)
  assert.match(cli.stderr, /no NPU here/)
  if (HAVE_ORT) {
    assert.is(resolveDeviceName('ort'), 'ort:cpu')
    await rejects(() => loadModel(modelDir('gpt-neo-tiny'), { device: 'ort:qnn' }), /execution provider "qnn" is not in this onnxruntime build \(expected one of cpu/)
  }
})

ortTest('refgpt generate --device ort:cpu gives the js device\'s greedy text', async () => {
  const args = ['generate', '--model', modelDir('gpt2-tiny'), '--prompt-ids', '15496,11', '--max-new-tokens', '8', '--json']
  const a = refgpt([...args, '--device', 'ort:cpu']), b = refgpt([...args, '--device', 'js'])
  assert.is(a.code, 0, a.stderr)
  assert.equal(JSON.parse(a.stdout).sequences[0].new_ids, JSON.parse(b.stdout).sequences[0].new_ids)
})

// onnxruntime-web's wasm backend in Node: the exported file (dynamic and static) loads and gives the same logits
const web = await import('onnxruntime-web').catch((e: Error) => e)
const webTest = web instanceof Error ? (console.log(`  SKIP onnxruntime-web: ${web.message.split('\n')[0]}`), test.skip) : test
webTest('the exported files (dynamic and static) load in onnxruntime-web (wasm) in Node and give the logits of refgpt\'s js device', async () => {
  const ortWeb = web as typeof import('onnxruntime-web')
  ortWeb.env.wasm.numThreads = 1
  const js: Model = await loadModel(modelDir('gpt-j-tiny'), { device: 'js' })
  try {
    const a = js.arch
    const file = join(dir, 'web.onnx')
    await exportOnnx(js, file)
    const sess = await ortWeb.InferenceSession.create(file, { executionProviders: ['wasm'] })
    const ids = [5, 6, 7, 8]
    const i64 = (v: number[]) => new ortWeb.Tensor('int64', BigInt64Array.from(v.map(BigInt)), [1, v.length])
    const feeds: Record<string, InstanceType<typeof ortWeb.Tensor>> = { input_ids: i64(ids), attention_mask: i64([1, 1, 1, 1]), position_ids: i64([0, 1, 2, 3]) }
    for (let l = 0; l < a.nLayer; l++) for (const kv of ['key', 'value']) feeds[`past_key_values.${l}.${kv}`] = new ortWeb.Tensor('float32', new Float32Array(0), [1, a.nHead, 0, a.headDim])
    const out = await sess.run(feeds)
    assertClose(out.logits.data as Float32Array, await js.createSession().logits(ids, 0), TOL.logits, 'onnxruntime-web logits')
    await sess.release()
    // the static graph (what WebNN / NPU providers take): a 4-token call over an empty 16-position cache
    const sf = join(dir, 'web-static.onnx')
    await exportOnnx(js, sf, { static: { tokens: 4, capacity: 16 } })
    const st = await ortWeb.InferenceSession.create(sf, { executionProviders: ['wasm'] })
    const sfeeds: Record<string, InstanceType<typeof ortWeb.Tensor>> = {
      input_ids: i64(ids), position_ids: i64([0, 1, 2, 3]),
      attention_mask: new ortWeb.Tensor('int64', BigInt64Array.from([...Array(16).fill(0n), 1n, 1n, 1n, 1n]), [1, 20]),
    }
    for (let l = 0; l < a.nLayer; l++) for (const kv of ['key', 'value']) sfeeds[`past_key_values.${l}.${kv}`] = new ortWeb.Tensor('float32', new Float32Array(a.nHead * 16 * a.headDim), [1, a.nHead, 16, a.headDim])
    assertClose((await st.run(sfeeds)).logits.data as Float32Array, await js.createSession().logits(ids, 0), TOL.logits, 'onnxruntime-web static logits')
    await st.release()
  } finally {
    await js.dispose()
  }
})

test.run()
