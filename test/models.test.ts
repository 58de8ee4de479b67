// The three Hugging Face families against transformers' own outputs (../shared/golden, copied to
// test/fixtures): logits, hidden states, attention probabilities, cached decoding, greedy ids.
// One test body per device.
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { generate, loadModel, type Model, type Session, type TraceEvent } from '@refgpt/core'
import { MODELS, TEST_DEVICES, TOL, assertClose, loadGolden, modelDir, pickRows, linkTest } from './helpers.js'

const PROMPTS = ['p0', 'p1', 'p2', 'p3']


for (const device of TEST_DEVICES) {
  for (const name of MODELS) {
    const test = suite(`${name} on ${device}`)
    const golden = loadGolden(name)
    const g = golden.json
    let model: Model
    let session: Session
    test.before(async () => {
      model = await loadModel(modelDir(name), { device })
      session = model.createSession()
    })
    test.after(async () => {
      session.dispose()
      await model.dispose()
    })

    test('logits of every prompt match transformers (plain forward)', async () => {
      const V = model.arch.nVocab
      assert.is(V, g.vocab_size)
      for (const p of PROMPTS) {
        const ids: number[] = g.prompts[p].ids
        const logits = await session.logits(ids, 0)
        const rows: number[] = g.tensors[`logits.${p}`].rows
        assertClose(pickRows(logits, V, rows), golden.tensor(`logits.${p}`), TOL.logits, `${name} logits.${p}`)
        // argmax at every position, where the golden top-1/top-2 gap is clear of the tolerance
        for (let t = 0; t < ids.length; t++) {
          if (g.argmax_margin[p][t] < 2e-4) continue
          let best = 0
          for (let v = 1; v < V; v++) if (logits[t * V + v] > logits[t * V + best]) best = v
          assert.is(best, g.argmax[p][t], `${name} argmax ${p}[${t}]`)
        }
      }
    })

    test('hidden states and attention probabilities of p2 match transformers', async () => {
      const pending = new Map<string, Promise<Float32Array>>()
      const ids: number[] = g.prompts.p2.ids
      // read() snapshots inside the callback; the data arrives after the forward
      await session.forward(ids, 0, { tracer: (e: TraceEvent) => pending.set(e.name, e.read()) })
      const events = new Map<string, Float32Array>()
      for (const [k, v] of pending) events.set(k, await v)
      const L = model.arch.nLayer
      for (let l = 0; l <= L; l++) {
        const stage = l === 0 ? 'embed' : l === L ? 'ln_f' : `h.${l - 1}.out`
        assertClose(events.get(stage)!, golden.tensor(`hidden.p2.${l}`), TOL.hidden, `${name} hidden.p2.${l} (${stage})`)
      }
      for (let l = 0; l < L; l++) {
        assert.equal(golden.shape(`attn.p2.${l}`), [model.arch.nHead, ids.length, ids.length])
        assertClose(events.get(`h.${l}.attn.probs`)!, golden.tensor(`attn.p2.${l}`), TOL.probs, `${name} attn.p2.${l}`)
      }
    })

    test('chunked prefill and token-by-token decoding equal the full forward (KV cache)', async () => {
      const ids: number[] = g.prompts.p3.ids
      const V = model.arch.nVocab
      const full = await session.logits(ids, 0)
      // final hidden state of all 100 positions, computed in chunks of 16 rows
      const chunked = await loadModel(modelDir(name), { device, maxBatchTokens: 16 })
      const cs = chunked.createSession()
      assert.is(cs.maxBatchTokens, 16)
      const lnF = new Float32Array(ids.length * model.arch.nEmbd)
      const rows: { pos0: number; data: Promise<Float32Array> }[] = []
      await cs.forward(ids, 0, { tracer: (e) => e.name === 'ln_f' && rows.push({ pos0: e.pos0, data: e.read() }) })
      for (const r of rows) lnF.set(await r.data, r.pos0 * model.arch.nEmbd)
      assertClose(lnF, golden.tensor(`hidden.p3.${model.arch.nLayer}`), TOL.hidden, `${name} hidden.p3 (chunks of 16)`)
      // prefill 37 tokens, then one token per step, each step's logits against the full forward's row
      let worst = 0
      let logits = await cs.forward(ids.slice(0, 37), 0)
      for (let t = 37; ; t++) {
        const d = assertClose(logits, full.subarray((t - 1) * V, t * V), { atol: 2e-5, rtol: 2e-5 }, `${name} cached step ${t}`)
        worst = Math.max(worst, d.abs)
        if (t === ids.length) break
        logits = await cs.forward([ids[t]], t)
      }
      assert.ok(worst < 2e-5, `cached vs full max |Δ| ${worst}`)
      cs.dispose()
      await chunked.dispose()
    })

    test('greedy generation equals transformers generate() exactly', async () => {
      for (const p of ['p0', 'p1', 'p2']) {
        const want = g.greedy[p]
        const out = await generate(model, g.prompts[p].ids, { maxNewTokens: 20 })
        assert.equal(out.ids, want.sequence, `${name} greedy.${p}`)
      }
      const e = g.greedy_eos.p1
      const out = await generate(model, g.prompts.p1.ids, { maxNewTokens: 20, eosTokenId: e.eos_token_id })
      assert.equal(out.ids, e.sequence, `${name} greedy_eos.p1`)
      assert.is(out.finishReason, 'eos')
    })

    test.run()
  }

  // gpt-neo-tiny's other checkpoint forms: every one must give the same model
  const variants = suite(`gpt-neo-tiny checkpoint forms on ${device}`)
  const golden = loadGolden('gpt-neo-tiny')
  const g = golden.json
  const p2 = async (m: Model) => {
    const s = m.createSession()
    try {
      return pickRows(await s.logits(g.prompts.p2.ids, 0), m.arch.nVocab, g.tensors['logits.p2'].rows)
    } finally {
      s.dispose()
    }
  }

  for (const variant of ['bf16', 'f16']) {
    variants(`model.${variant}.safetensors matches logits.p2.${variant} (weights widened to f32)`, async () => {
      const m = await loadModel(modelDir('gpt-neo-tiny'), { device, variant })
      assert.equal(Object.keys(m.info.checkpointDtypes), [variant === 'bf16' ? 'BF16' : 'F16'])
      assertClose(await p2(m), golden.tensor(`logits.p2.${variant}`), TOL.logits, `logits.p2.${variant}`)
      await m.dispose()
    })
  }

  variants('sharded safetensors (4 shards + index) matches logits.p2', async () => {
    const m = await loadModel(modelDir('gpt-neo-tiny/sharded'), { device })
    assert.is(m.info.format, 'safetensors-sharded')
    assert.is(m.info.files.length, 4)
    assertClose(await p2(m), golden.tensor('logits.p2'), TOL.logits, 'sharded logits.p2')
    await m.dispose()
  })

  linkTest(variants, `gpt-neo-tiny pytorch_model.bin through symlinks on ${device}`)('pytorch_model.bin (torch zip, tied lm_head alias) matches logits.p2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'refgpt-bin-'))
    try {
      for (const f of ['config.json', 'generation_config.json', 'pytorch_model.bin'])
        symlinkSync(join(modelDir('gpt-neo-tiny'), f), join(dir, f))
      const m = await loadModel(dir, { device, followSymlinks: true }) // links out of the folder: allowed when asked
      assert.is(m.info.format, 'pytorch-bin')
      assert.equal(m.info.unusedTensors, [])
      assertClose(await p2(m), golden.tensor('logits.p2'), TOL.logits, 'pytorch_model.bin logits.p2')
      await m.dispose()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
  variants.run()
}
