// Optimizer, gradient clipping and learning-rate schedules (issue 10) against torch 1.13 / HF transformers:
// test/fixtures/training (copied from ../shared/golden/training; its README gives formulas and tolerances).
// The golden gradients are inputs here, so these tests need no backward pass.
import { readFileSync } from 'node:fs'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { UsageError, openCheckpoint, openSafetensors } from '@refgpt/core'
import { AdamW, clipGradNorm, fmaF32, isNoDecayBiasNorm, normF32, type NamedParam } from '../packages/core/src/training/optim.js'
import { LRScheduler, createSchedule } from '../packages/core/src/training/schedule.js'
import { fixture, modelDir, rng } from './helpers.js'

const FIXTURES = ['gpt-neo-odd', 'gpt3-ms-tiny'] as const

interface TrainGolden {
  hyperparameters: { lr: number; betas: [number, number]; eps: number; weight_decay: number; warmup: number; clip_max_norm: number }
  adamw: { steps: { step: number; lr: number; lr_lambda: number }[] }
  clip: { max_norm: number; steps: { step: number; lr: number; total_grad_norm_before_clip: number }[] }
  noise_elements?: { H: number; tensors: string[] }
}

const goldenJson = (name: string): TrainGolden => JSON.parse(readFileSync(fixture(`training/${name}/golden.json`), 'utf8'))
const goldenTensors = (name: string, file: string) => openSafetensors(fixture(`training/${name}/${file}.safetensors`))

/** gpt3-ms-tiny's noise elements (README): the K block [H:2H] of every query_key_value.bias. */
function isNoise(g: TrainGolden, tensor: string): (i: number) => boolean {
  const ne = g.noise_elements
  if (!ne || !ne.tensors.includes(tensor)) return () => false
  return (i) => i >= ne.H && i < 2 * ne.H
}

function relClose(actual: number, expected: number, rtol: number, label: string) {
  const rel = expected === 0 ? Math.abs(actual) : Math.abs(actual - expected) / Math.abs(expected)
  assert.ok(rel <= rtol, `${label}: ${actual} vs ${expected} (rel ${rel.toExponential(2)} > ${rtol})`)
}

// ---------------------------------------------------------------------------------------------------------------
const schedules = suite('schedules (HF get_scheduler + noam)')

schedules('noam: lr of optimizer steps 1..3 equals the golden (rel 1e-12)', () => {
  for (const name of FIXTURES) {
    const g = goldenJson(name)
    const s = createSchedule({ name: 'noam', baseLr: g.hyperparameters.lr, warmupSteps: g.hyperparameters.warmup })
    for (const st of [...g.adamw.steps, ...g.clip.steps]) {
      // optimizer step k (1-based) runs with lr_lambda(k - 1)
      relClose(s.lrAt(st.step - 1), st.lr, 1e-12, `${name} step ${st.step} lr`)
    }
    for (const st of g.adamw.steps) relClose(s.lambda(st.step - 1), st.lr_lambda, 1e-12, `${name} step ${st.step} lambda`)
    // LambdaLR bookkeeping: lr, then step() after each optimizer step
    const sched = new LRScheduler(s)
    for (const st of g.adamw.steps) {
      relClose(sched.lr, st.lr, 1e-12, `${name} LRScheduler step ${st.step}`)
      sched.step()
    }
    assert.is(sched.state().lastStep, 3)
  }
})

schedules('noam: warm-up peak and decay (the seed recipe: 100 warm-up steps)', () => {
  const s = createSchedule({ name: 'noam', baseLr: 3e-4, warmupSteps: 100 })
  relClose(s.lambda(0), 1 * 100 ** -1.5, 1e-12, 'step 0') // 1e-3
  relClose(s.lambda(49), 50 * 1e-3, 1e-12, 'step 49 (warm-up branch)')
  relClose(s.lambda(99), 0.1, 1e-12, 'step 99 (peak: both branches 100^-0.5)')
  relClose(s.lambda(399), 0.05, 1e-12, 'step 399 (1/sqrt(400))')
  relClose(s.lrAt(99), 3e-4 * 0.1, 1e-12, 'lr at the peak')
})

// Values computed by hand from transformers' optimization.py (quoted in schedule.ts).
schedules('linear: warm-up then linear decay to 0 at totalSteps', () => {
  const s = createSchedule({ name: 'linear', baseLr: 2e-3, warmupSteps: 3, totalSteps: 10 })
  const cases: [number, number][] = [
    [0, 0], // 0/3
    [1, 1 / 3],
    [2, 2 / 3],
    [3, 1], // first step after warm-up: (10-3)/7
    [5, 5 / 7],
    [9, 1 / 7],
    [10, 0],
    [12, 0], // max(0, -2/7)
  ]
  for (const [k, lam] of cases) {
    relClose(s.lambda(k), lam, 1e-12, `lambda(${k})`)
    relClose(s.lrAt(k), 2e-3 * lam, 1e-12, `lrAt(${k})`)
  }
  const noWarm = createSchedule({ name: 'linear', baseLr: 1, totalSteps: 4 })
  assert.equal([0, 1, 2, 3, 4].map((k) => noWarm.lambda(k)), [1, 0.75, 0.5, 0.25, 0])
})

schedules('cosine: warm-up then a half cosine (num_cycles 0.5)', () => {
  const s = createSchedule({ name: 'cosine', baseLr: 1e-3, warmupSteps: 2, totalSteps: 10 })
  const cases: [number, number][] = [
    [0, 0],
    [1, 0.5],
    [2, 1], // progress 0
    [4, 0.5 + Math.SQRT2 / 4], // progress 0.25: 0.5 (1 + cos(pi/4))
    [6, 0.5], // progress 0.5: 0.5 (1 + cos(pi/2)) = 0.5 + 3e-17
    [8, 0.5 - Math.SQRT2 / 4], // progress 0.75
    [10, 0], // progress 1: 0.5 (1 + cos(pi)) = 0
    [14, 0.5], // progress 1.5: HF's formula rises again past totalSteps
  ]
  for (const [k, lam] of cases) {
    if (lam === 0) assert.ok(Math.abs(s.lambda(k)) < 1e-16, `lambda(${k}) = ${s.lambda(k)}`)
    else relClose(s.lambda(k), lam, 1e-12, `lambda(${k})`)
    if (lam !== 0) relClose(s.lrAt(k), 1e-3 * lam, 1e-12, `lrAt(${k})`)
  }
  const waves = createSchedule({ name: 'cosine', baseLr: 1, warmupSteps: 0, totalSteps: 4, numCycles: 1 })
  assert.ok(Math.abs(waves.lambda(2)) < 1e-16 && Math.abs(waves.lambda(4) - 1) < 1e-15, 'numCycles 1: down at the middle, back up at the end')
})

schedules('constant: with and without warm-up (constant_with_warmup)', () => {
  const s = createSchedule({ name: 'constant', baseLr: 5e-4, warmupSteps: 4 })
  const cases: [number, number][] = [[0, 0], [1, 0.25], [2, 0.5], [3, 0.75], [4, 1], [1000, 1]]
  for (const [k, lam] of cases) relClose(s.lrAt(k), 5e-4 * lam, 1e-12, `lrAt(${k})`)
  const alias = createSchedule({ name: 'constant_with_warmup', baseLr: 5e-4, warmupSteps: 4 })
  for (const [k] of cases) assert.is(alias.lrAt(k), s.lrAt(k))
  const flat = createSchedule({ name: 'constant', baseLr: 5e-4 })
  assert.equal([0, 1, 7].map((k) => flat.lrAt(k)), [5e-4, 5e-4, 5e-4])
})

schedules('invalid schedules are refused', () => {
  const bad = (o: any, re: RegExp) => assert.throws(() => createSchedule(o), (e: unknown) => e instanceof UsageError && re.test((e as Error).message))
  bad({ name: 'warmup_stable_decay', baseLr: 1 }, /unknown schedule/)
  bad({ name: 'linear', baseLr: 1, warmupSteps: 2 }, /linear needs the total number of optimizer steps/)
  bad({ name: 'cosine', baseLr: 1 }, /cosine needs the total/)
  bad({ name: 'noam', baseLr: 1, warmupSteps: 0 }, /noam needs warm-up steps/)
  bad({ name: 'constant', baseLr: -1 }, /invalid learning rate/)
  bad({ name: 'constant', baseLr: 1, warmupSteps: 1.5 }, /invalid warm-up steps/)
  assert.throws(() => createSchedule({ name: 'constant', baseLr: 1 }).lrAt(-1), /invalid step/)
  assert.throws(() => new LRScheduler({ name: 'constant', baseLr: 1 }).loadState({ lastStep: -2 }), /invalid lastStep/)
})

schedules.run()

// ---------------------------------------------------------------------------------------------------------------
const clip = suite('clipGradNorm (torch.nn.utils.clip_grad_norm_)')

for (const name of FIXTURES) {
  clip(`${name}: total norm and clipped gradients equal the golden`, () => {
    const g = goldenJson(name)
    const grads = goldenTensors(name, 'grads')
    const clipped = goldenTensors(name, 'clip_grads_step1')
    const names = [...grads.tensors.keys()]
    assert.equal(new Set(names), new Set(clipped.tensors.keys()))
    const gs = names.map((n) => grads.readF32(n))
    const expectedNorm = g.clip.steps[0].total_grad_norm_before_clip
    const norm = clipGradNorm(gs, g.clip.max_norm)
    relClose(norm, expectedNorm, 1e-5, 'total norm (README tolerance)')
    // torch's float32 reduction (8 FMA lanes per tensor, then the norm of the norms) reproduces it exactly
    assert.is(norm, Math.fround(expectedNorm), 'total norm bit-identical to torch')
    assert.ok(norm > g.clip.max_norm, 'the fixture clips')
    for (let t = 0; t < names.length; t++) {
      const ref = clipped.readF32(names[t])
      const noise = isNoise(g, names[t])
      let maxRef = 0
      for (const x of ref) maxRef = Math.max(maxRef, Math.abs(x))
      const tol = 2e-5 * maxRef + 1e-9
      let bad = 0, exact = 0, n = 0
      for (let i = 0; i < ref.length; i++) {
        if (noise(i)) continue
        n++
        const d = Math.abs(gs[t][i] - ref[i])
        if (!(d <= tol)) bad++
        if (d === 0) exact++
      }
      assert.is(bad, 0, `${names[t]}: ${bad} clipped gradients outside ${tol.toExponential(2)}`)
      assert.is(exact, n, `${names[t]}: clipped gradients bit-identical to torch`)
    }
  })
}

clip('below max norm nothing changes; the norm is returned', () => {
  const a = new Float32Array([3, 0, 0]), b = new Float32Array([4])
  const n = clipGradNorm([a, b], 10)
  assert.is(n, 5)
  assert.equal([...a, ...b], [3, 0, 0, 4])
  // coef = 1/(5 + 1e-6) * 1: scales to a norm just under 1
  const c = new Float32Array([3]), d = new Float32Array([4])
  clipGradNorm([c, d], 1)
  assert.ok(Math.abs(Math.hypot(c[0], d[0]) - 1) < 1e-6, `clipped norm ${Math.hypot(c[0], d[0])}`)
  assert.is(clipGradNorm([], 1), 0)
  assert.throws(() => clipGradNorm([a], 0), /invalid max norm/)
})

clip('normF32 is the float32 norm within rounding on odd sizes; fmaF32 rounds once', () => {
  const r = rng(7)
  for (const n of [0, 1, 7, 8, 9, 31, 1000, 4097]) {
    const x = new Float32Array(n).map(() => r() * 2 - 1)
    let s = 0
    for (const v of x) s += v * v
    const exact = Math.sqrt(s)
    assert.ok(Math.abs(normF32(x) - exact) <= 1e-6 * Math.max(exact, 1e-30), `n=${n}: ${normF32(x)} vs ${exact}`)
  }
  // a·b + c where the float64 sum lands exactly between two floats32 but the exact value is below it:
  // a = 2^-12 (1 + 2^-23), b = 2^-12 (1 - 2^-23), c = 1 + 2^-23 -> exact 1 + 2^-23 + 2^-24 - 2^-70
  const a = 2 ** -12 * (1 + 2 ** -23), b = 2 ** -12 * (1 - 2 ** -23), c = 1 + 2 ** -23
  assert.is(Math.fround(a * b + c), 1 + 2 ** -22, 'double rounding (float64 then float32) rounds up')
  assert.is(fmaF32(a, b, c), 1 + 2 ** -23, 'a single rounding stays below the midpoint')
  assert.is(fmaF32(-a, b, -c), -(1 + 2 ** -23))
  assert.is(fmaF32(3, 0.5, 0.25), 1.75)
  assert.is(fmaF32(2 ** -12, 2 ** -12, 1), Math.fround(1 + 2 ** -24)) // a true tie rounds to even
})

clip.run()

// ---------------------------------------------------------------------------------------------------------------
const adamw = suite('AdamW (torch.optim.AdamW, torch 1.13)')

/** The model's initial parameters with the given gradients, in checkpoint order (a tied embedding once). */
function paramsOf(name: string, gradFile: string): NamedParam[] {
  const ck = openCheckpoint(modelDir(name))
  const grads = goldenTensors(name, gradFile)
  try {
    return [...grads.tensors.keys()].map((n) => ({ name: n, data: ck.readF32(n), grad: grads.readF32(n) }))
  } finally {
    ck.close()
  }
}

for (const name of FIXTURES) {
  adamw(`${name}: one clipped step from the initial weights equals clip_params_step1`, () => {
    const g = goldenJson(name)
    const hp = g.hyperparameters
    const params = paramsOf(name, 'clip_grads_step1')
    assert.ok(params.some((p) => p.name.endsWith('word_embeddings.weight') || p.name === 'transformer.wte.weight'))
    assert.not.ok(params.some((p) => p.name.startsWith('lm_head')), 'the tied LM head is not a separate parameter')
    const opt = new AdamW(params, { lr: hp.lr, betas: hp.betas, eps: hp.eps, weightDecay: hp.weight_decay })
    const lr = createSchedule({ name: 'noam', baseLr: hp.lr, warmupSteps: hp.warmup }).lrAt(0)
    relClose(lr, g.clip.steps[0].lr, 1e-12, 'lr')
    opt.step(lr)
    assert.is(opt.stepCount, 1)
    const expected = goldenTensors(name, 'clip_params_step1')
    let total = 0, over = 0, exact = 0, maxAbs = 0
    for (const p of params) {
      const ref = expected.readF32(p.name)
      const noise = isNoise(g, p.name)
      for (let i = 0; i < ref.length; i++) {
        if (noise(i)) continue
        total++
        const d = Math.abs(p.data[i] - ref[i])
        if (!(d <= maxAbs)) maxAbs = d
        if (!(d <= 1e-5)) over++
        if (d === 0) exact++
      }
    }
    // README: abs 1e-5 for ≥ 99.99 % of the elements, 1e-3 max, noise elements excluded
    assert.ok(over <= total * 1e-4, `${over} of ${total} elements differ by more than 1e-5`)
    assert.ok(maxAbs <= 1e-3, `max abs ${maxAbs}`)
    // torch's float32 arithmetic, op by op: bit-identical
    assert.is(exact, total, `${total - exact} of ${total} elements not bit-identical (max abs ${maxAbs})`)
  })
}

adamw('the update rule by hand: decay first, bias corrections, eps after the corrected sqrt', () => {
  const data = new Float32Array([1, -2, 0.5, 0]), grad = new Float32Array([0.1, -0.3, 0, 1e-9])
  const opt = new AdamW([{ name: 'w', data, grad }], { lr: 0.1, betas: [0.8, 0.9], eps: 1e-3, weightDecay: 0.5 })
  const p0 = [1, -2, 0.5, 0], m = [0, 0, 0, 0], v = [0, 0, 0, 0]
  for (let t = 1; t <= 3; t++) {
    const lr = 0.1 / t
    opt.step(lr)
    for (let i = 0; i < 4; i++) {
      const gi = grad[i]
      p0[i] *= 1 - lr * 0.5
      m[i] = 0.8 * m[i] + 0.2 * gi
      v[i] = 0.9 * v[i] + 0.1 * gi * gi
      p0[i] -= (lr / (1 - 0.8 ** t)) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(1 - 0.9 ** t) + 1e-3)
      assert.ok(Math.abs(data[i] - p0[i]) < 1e-6, `t=${t} i=${i}: ${data[i]} vs ${p0[i]}`)
    }
  }
})

adamw('groups: all parameters decay by default; HF no-decay groups for biases and LayerNorms', () => {
  const neo = ['transformer.wte.weight', 'transformer.h.0.ln_1.weight', 'transformer.h.0.ln_1.bias', 'transformer.h.0.mlp.c_fc.bias', 'transformer.h.0.attn.attention.q_proj.weight', 'transformer.ln_f.weight']
  const ms = ['language_model.word_embeddings.weight', 'language_model.transformer.layers.0.input_layernorm.weight', 'language_model.transformer.layers.0.post_attention_layernorm.bias', 'language_model.transformer.final_layernorm.weight', 'language_model.transformer.layers.0.attention.query_key_value.weight', 'language_model.transformer.layers.0.mlp.dense_h_to_4h.bias']
  assert.equal(neo.map(isNoDecayBiasNorm), [false, true, true, true, false, true])
  assert.equal(ms.map(isNoDecayBiasNorm), [false, true, true, true, false, true])
  assert.ok(isNoDecayBiasNorm('bert.embeddings.LayerNorm.weight'))
  const mk = () => neo.map((n) => ({ name: n, data: new Float32Array([1, 2]), grad: new Float32Array(2) }))
  const all = new AdamW(mk(), { lr: 0.1 })
  assert.equal(all.decay, neo.map(() => 0.01))
  const hf = new AdamW(mk(), { lr: 0.1, groups: 'no-decay-bias-norm' })
  assert.equal(hf.decay, [0.01, 0, 0, 0, 0.01, 0])
  // zero gradients: only decay moves a parameter (Adam's update of a zero moment is 0)
  hf.step()
  assert.equal([...hf.params[0].data], [Math.fround(1 * Math.fround(1 - 0.1 * 0.01)), Math.fround(2 * Math.fround(1 - 0.1 * 0.01))])
  assert.equal([...hf.params[1].data], [1, 2])
  const custom = new AdamW(mk(), { lr: 0.1, isNoDecay: (n) => n.includes('wte') })
  assert.equal(custom.decay, [0, 0.01, 0.01, 0.01, 0.01, 0.01])
})

adamw('state() / loadState(): a resumed run is bit-identical; zeroGrad clears gradients', () => {
  const r = rng(3)
  const make = () => {
    const rr = rng(11)
    return ['a.weight', 'a.bias', 'ln_f.weight'].map((name, k) => ({ name, data: new Float32Array(5 + k).map(() => rr() - 0.5), grad: new Float32Array(5 + k) }))
  }
  const gradsAt = Array.from({ length: 4 }, () => [5, 6, 7].map((n) => new Float32Array(n).map(() => r() - 0.5)))
  const sched = createSchedule({ name: 'linear', baseLr: 0.05, warmupSteps: 1, totalSteps: 4 })
  const run = (opt: AdamW, from: number, to: number) => {
    for (let k = from; k < to; k++) {
      opt.zeroGrad()
      assert.ok(opt.params.every((p) => p.grad.every((x) => x === 0)))
      opt.params.forEach((p, i) => p.grad.set(gradsAt[k][i]))
      opt.step(sched.lrAt(k))
    }
  }
  const straight = new AdamW(make(), { lr: 0.05, groups: 'no-decay-bias-norm' })
  run(straight, 0, 4)

  const first = new AdamW(make(), { lr: 0.05, groups: 'no-decay-bias-norm' })
  run(first, 0, 2)
  const saved = first.state()
  const weights = first.params.map((p) => p.data.slice())
  assert.is(saved.step, 2)
  assert.equal(saved.names, ['a.weight', 'a.bias', 'ln_f.weight'])
  first.params[0].data.fill(9) // state() is a copy: later changes do not reach it
  const resumed = new AdamW(make().map((p, i) => ({ ...p, data: weights[i] })), { lr: 0.05, groups: 'no-decay-bias-norm' })
  resumed.loadState(saved)
  assert.is(resumed.stepCount, 2)
  run(resumed, 2, 4)
  for (let i = 0; i < 3; i++) assert.equal([...resumed.params[i].data], [...straight.params[i].data], `param ${i}`)
  const a = resumed.state(), b = straight.state()
  for (let i = 0; i < 3; i++) {
    assert.equal([...a.m[i]], [...b.m[i]])
    assert.equal([...a.v[i]], [...b.v[i]])
  }
  assert.throws(() => resumed.loadState({ ...saved, m: saved.m.slice(1) }), /different number of parameters/)
  assert.throws(() => resumed.loadState({ ...saved, names: ['x', 'a.bias', 'ln_f.weight'] }), /parameter 0 differs/)
  assert.throws(() => resumed.loadState({ ...saved, v: [saved.v[0], new Float32Array(1), saved.v[2]] }), /v has the wrong size/)
})

adamw('invalid arguments are refused', () => {
  const p = () => [{ name: 'w', data: new Float32Array(2), grad: new Float32Array(2) }]
  const bad = (fn: () => unknown, re: RegExp) => assert.throws(fn, (e: unknown) => e instanceof UsageError && re.test((e as Error).message))
  bad(() => new AdamW(p(), { lr: -1 }), /invalid learning rate/)
  bad(() => new AdamW(p(), { lr: 1, betas: [0.9, 1] }), /invalid betas/)
  bad(() => new AdamW(p(), { lr: 1, eps: -1 }), /invalid eps/)
  bad(() => new AdamW(p(), { lr: 1, weightDecay: -0.1 }), /invalid weight decay/)
  bad(() => new AdamW(p(), { lr: 1, groups: 'some' as any }), /invalid parameter groups/)
  bad(() => new AdamW([...p(), ...p()], { lr: 1 }), /parameter listed twice/)
  bad(() => new AdamW([{ name: 'w', data: new Float32Array(2), grad: new Float32Array(3) }], { lr: 1 }), /one length/)
  bad(() => new AdamW(p(), { lr: 1 }).step(NaN), /invalid learning rate/)
})

adamw.run()
