// Training step (issue 10): loss and every parameter's gradient against PyTorch (test/fixtures/training,
// HF GPTNeoForCausalLM and ModelScope GPT3Model, torch 1.13 fp32), and a finite-difference check of the
// whole backward for GPT-2 and GPT-J (which have no training golden).
import { readFileSync } from 'node:fs'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { AdamW, Trainer, clipGradNorm, createSchedule, loadModel, openSafetensors, type Example, type Model } from '@refgpt/core'
import { fixture, modelDir, rejects, rng } from './helpers.js'

const TRAIN_DEVICES = ['js', 'wasm'] as const

interface TrainGolden {
  input_ids: number[][]
  loss: number
  hyperparameters: { lr: number; betas: [number, number]; eps: number; weight_decay: number; warmup: number; clip_max_norm: number }
  adamw: { steps: { lr: number; loss_before_step: number }[]; loss_after_step3: number }
  clip: { steps: { lr: number; loss_before_step: number; total_grad_norm_before_clip: number }[] }
}

const golden = (name: string) => JSON.parse(readFileSync(fixture(`training/${name}/golden.json`), 'utf8')) as TrainGolden

/** The golden batch as examples: HF (labels = input_ids) for GPT-Neo, ModelScope's ids[:-1] / ids[1:] for GPT-3. */
function batchOf(name: string, ids: number[][]): Example[] {
  if (name === 'gpt3-ms-tiny') return ids.map((r) => ({ inputIds: r.slice(0, -1), targets: r.slice(1) }))
  return ids.map((r) => ({ inputIds: r, targets: [...r.slice(1), -100] }))
}

/** gpt3-ms-tiny's noise elements: the K block [H:2H] of every query_key_value.bias (a zero gradient in exact math). */
function noise(name: string, tensor: string, H: number): (i: number) => boolean {
  if (name === 'gpt3-ms-tiny' && tensor.endsWith('attention.query_key_value.bias')) return (i) => i >= H && i < 2 * H
  return () => false
}

for (const device of TRAIN_DEVICES) {
  for (const name of ['gpt-neo-odd', 'gpt3-ms-tiny']) {
    const test = suite(`train: ${name} on ${device}`)
    let model: Model
    test.before(async () => {
      model = await loadModel(modelDir(name), { device, dtype: 'F32' })
    })
    test.after(async () => {
      await model.dispose()
    })

    test('loss and every gradient match PyTorch (README tolerances: loss 1e-5, grads 2e-5 x max|g|)', async () => {
      const g = golden(name)
      const trainer = new Trainer(model, { maxLength: 12 })
      trainer.zeroGrad()
      const { loss, tokens } = await trainer.forwardBackward(batchOf(name, g.input_ids))
      assert.is(tokens, 22)
      assert.ok(Math.abs(loss - g.loss) <= 1e-5, `loss ${loss} vs ${g.loss}`)
      const grads = await trainer.gradients()
      const ref = openSafetensors(fixture(`training/${name}/grads.safetensors`))
      const refNames = [...ref.tensors.keys()].sort()
      assert.equal([...grads.keys()].sort(), refNames, 'one gradient per checkpoint parameter')
      let worst = 0, worstName = ''
      for (const tensor of refNames) {
        const want = ref.readF32(tensor), got = grads.get(tensor)!
        const skip = noise(name, tensor, model.arch.nEmbd)
        let maxG = 0
        for (let i = 0; i < want.length; i++) if (!skip(i)) maxG = Math.max(maxG, Math.abs(want[i]))
        for (let i = 0; i < want.length; i++) {
          if (skip(i)) {
            assert.ok(Math.abs(got[i]) < 1e-6, `${tensor}[${i}] noise element ${got[i]}`)
            continue
          }
          const err = Math.abs(got[i] - want[i]) / (maxG + 1e-9)
          if (err > worst) [worst, worstName] = [err, tensor]
          if (!(Math.abs(got[i] - want[i]) <= 2e-5 * maxG + 1e-9)) assert.unreachable(`${tensor}[${i}]: ${got[i]} vs ${want[i]} (max |g| ${maxG})`)
        }
      }
      ref.close()
      console.log(`  ${name} ${device}: loss |Δ| ${Math.abs(loss - g.loss).toExponential(2)}, worst grad error ${worst.toExponential(2)} x max|g| (${worstName})`)
    })

    test('gradients accumulate: two calls give twice the gradient; zeroGrad clears', async () => {
      const g = golden(name)
      const trainer = new Trainer(model, { maxLength: 12 })
      const batch = batchOf(name, g.input_ids)
      trainer.zeroGrad()
      await trainer.forwardBackward(batch)
      const once = await trainer.gradients()
      await trainer.forwardBackward(batch)
      const twice = await trainer.gradients()
      for (const [tensor, a] of once) {
        const b = twice.get(tensor)!
        for (let i = 0; i < a.length; i++) if (Math.abs(b[i] - 2 * a[i]) > 1e-6 * Math.max(1, Math.abs(a[i]))) assert.unreachable(`${tensor}[${i}]`)
      }
      trainer.zeroGrad()
      for (const a of (await trainer.gradients()).values()) assert.ok(a.every((v) => v === 0))
    })

    for (const clip of [false, true]) {
      test(`3 AdamW steps with the noam schedule${clip ? ' and clip_grad_norm_(1.0)' : ''}: losses, lr, ${clip ? 'grad norms, ' : ''}parameters match PyTorch`, async () => {
        const g = golden(name), hp = g.hyperparameters
        const m = await loadModel(modelDir(name), { device, dtype: 'F32' }) // its own copy: the steps change the weights
        try {
          const trainer = new Trainer(m, { maxLength: 12 })
          const batch = batchOf(name, g.input_ids)
          const host = await trainer.hostParams()
          const opt = new AdamW(host, { lr: hp.lr, betas: hp.betas, eps: hp.eps, weightDecay: hp.weight_decay })
          const schedule = createSchedule({ name: 'noam', baseLr: hp.lr, warmupSteps: hp.warmup })
          const steps = clip ? g.clip.steps : g.adamw.steps
          for (let k = 0; k < 3; k++) {
            trainer.zeroGrad()
            const { loss } = await trainer.forwardBackward(batch)
            const tol = k === 0 ? 1e-5 : 1e-4
            assert.ok(Math.abs(loss - steps[k].loss_before_step) <= tol, `step ${k + 1} loss ${loss} vs ${steps[k].loss_before_step}`)
            await trainer.readGradients(host)
            if (clip) {
              const norm = clipGradNorm(host.map((h) => h.grad), hp.clip_max_norm)
              const want = g.clip.steps[k].total_grad_norm_before_clip
              assert.ok(Math.abs(norm - want) <= 1e-5 * want, `step ${k + 1} grad norm ${norm} vs ${want}`)
            }
            const lr = schedule.lrAt(k)
            assert.ok(Math.abs(lr - steps[k].lr) <= 1e-12 * steps[k].lr, `lr ${lr} vs ${steps[k].lr}`)
            opt.step(lr)
            trainer.writeParameters(host)
          }
          if (!clip) {
            const after = (await trainer.forwardBackward(batch)).loss
            assert.ok(Math.abs(after - g.adamw.loss_after_step3) <= 1e-4, `loss after 3 steps ${after} vs ${g.adamw.loss_after_step3}`)
          }
          const params = await trainer.parameters()
          const ref = openSafetensors(fixture(`training/${name}/${clip ? 'clip_params_step3' : 'params_step3'}.safetensors`))
          let total = 0, over = 0, worst = 0
          for (const tensor of ref.tensors.keys()) {
            const want = ref.readF32(tensor), got = params.get(tensor)!
            const skip = noise(name, tensor, m.arch.nEmbd)
            for (let i = 0; i < want.length; i++) {
              if (skip(i)) continue
              const d = Math.abs(got[i] - want[i])
              total++
              if (d > 1e-5) over++
              worst = Math.max(worst, d)
            }
          }
          ref.close()
          assert.ok(worst <= 1e-3, `max |Δparam| ${worst}`)
          assert.ok(over <= 1e-4 * total, `${over} of ${total} elements differ by more than 1e-5`)
          console.log(`  ${name} ${device}${clip ? ' clip' : ''}: params after 3 steps max |Δ| ${worst.toExponential(2)}, ${over}/${total} above 1e-5`)
        } finally {
          await m.dispose()
        }
      })
    }

    test('bad input: out-of-range ids and targets, wrong lengths, no targets, too long', async () => {
      const trainer = new Trainer(model, { maxLength: 12 })
      const V = model.arch.nVocab
      await rejects(() => trainer.forwardBackward([{ inputIds: [1, V], targets: [2, 3] }]), /token id at 1 out of range/)
      await rejects(() => trainer.forwardBackward([{ inputIds: [1, 2], targets: [2, V] }]), /target at 1 out of range/)
      await rejects(() => trainer.forwardBackward([{ inputIds: [1, 2], targets: [2, -5] }]), /target at 1 out of range/)
      await rejects(() => trainer.forwardBackward([{ inputIds: [1, 2], targets: [2] }]), /differ in length/)
      await rejects(() => trainer.forwardBackward([{ inputIds: [1, 2], targets: [-100, -100] }]), /no targets/)
      await rejects(() => trainer.forwardBackward([{ inputIds: Array(13).fill(1), targets: Array(13).fill(1) }]), /13 tokens/)
    })

    test.run()
  }
}

// --- GPT-2, GPT-J, GPT-Neo: the backward against central finite differences of the loss ---------
// The loss for the differences comes from the inference path (session.logProbs), an independent
// computation of the same function; parameters are perturbed in place (js buffers are Float32Arrays).

const fd = suite('train: finite differences (js)')

for (const name of ['gpt2-tiny', 'gpt-j-tiny', 'gpt-neo-tiny']) {
  fd(`${name}: d loss / d param, two sampled elements of every tensor`, async () => {
    const model = await loadModel(modelDir(name), { device: 'js', dtype: 'F32' })
    const session = model.createSession()
    try {
      const r = rng(7)
      const V = model.arch.nVocab
      const batch: Example[] = [0, 1].map(() => {
        const ids = Array.from({ length: 7 }, () => Math.floor(r() * V))
        return { inputIds: ids, targets: [...ids.slice(1), -100] }
      })
      const lossOf = async () => {
        let sum = 0, n = 0
        for (const e of batch) {
          const lp = await session.logProbs(e.inputIds, { targets: Array.from(e.targets, (t) => (t < 0 ? -1 : t)) })
          for (let t = 0; t < lp.length; t++) if (e.targets[t] >= 0) (sum -= lp[t]), n++
        }
        return sum / n
      }
      const trainer = new Trainer(model, { maxLength: 7 })
      trainer.zeroGrad()
      const { loss } = await trainer.forwardBackward(batch)
      assert.ok(Math.abs(loss - (await lossOf())) < 1e-5, 'training loss = inference loss')
      let worst = 0
      for (const p of trainer.params) {
        const data = p.weight as unknown as Float32Array, grad = p.grad as unknown as Float32Array
        for (let s = 0; s < 2; s++) {
          const i = Math.floor(r() * p.n)
          const old = data[i], h = 1e-2
          data[i] = old + h
          const up = await lossOf()
          data[i] = old - h
          const down = await lossOf()
          data[i] = old
          const num = (up - down) / (2 * h)
          const err = Math.abs(num - grad[i])
          worst = Math.max(worst, err)
          assert.ok(err <= 2e-3 * Math.max(1, Math.abs(num)) + 3e-4, `${p.name}[${i}]: analytic ${grad[i]} vs numeric ${num}`)
        }
      }
      console.log(`  ${name}: worst |analytic - numeric| ${worst.toExponential(2)} over ${2 * trainer.params.length} elements`)
    } finally {
      session.dispose()
      await model.dispose()
    }
  })
}

fd.run()

const refuse = suite('train: refused setups')
refuse('q8 and bf16 weights are refused with a clear error', async () => {
  for (const [dtype, re] of [['Q8', /q8 weights cannot be trained/], ['BF16', /training needs F32 weights/]] as const) {
    const model = await loadModel(modelDir('gpt-neo-odd'), { device: 'js', dtype })
    try {
      assert.throws(() => new Trainer(model, { maxLength: 8 }), re)
    } finally {
      await model.dispose()
    }
  }
})
refuse.run()
