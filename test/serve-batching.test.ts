// Continuous batching (issue 17): Session.step() runs one token of several sequences in one pass and
// must give each the logits a forward of that sequence alone gives — bit for bit, on every device and
// family (rotary positions per row, local attention windows, several KV slots at different lengths).
// The Scheduler built on it must give every job the tokens it gets alone (greedy and seeded sampling,
// ModelScope's mode too), batch across jobs, free the slots of cancelled jobs and refuse past its queue.
import { getEventListeners } from 'node:events'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import {
  CancelledError,
  Generation,
  ModelscopeGeneration,
  QueueFullError,
  Scheduler,
  StepperGroup,
  generate,
  loadModel,
  modelscopeGenerateIds,
  type Model,
  type Session,
} from '@refgpt/core'
import { MODELS, TEST_DEVICES, modelDir, modelsOn, rejects, rng } from './helpers.js'

for (const device of TEST_DEVICES) {
  for (const name of [...modelsOn(device, MODELS), ...(device === 'webgpu' ? [] : ['gpt3-ms-tiny'])]) {
    const test = suite(`Session.step: ${name} on ${device}`)
    let model: Model
    test.before(async () => {
      model = await loadModel(modelDir(name), { device, threads: 2 } as never)
    })
    test.after(() => model.dispose())

    test('a batched step gives every slot the logits its own forward gives, bit for bit', async () => {
      const V = model.arch.nVocab
      const r = rng(17)
      const id = () => Math.floor(r() * Math.min(V, 1000))
      // three sequences of different lengths (0 .. 70 positions: past GPT-Neo's local window and a 64-row chunk)
      const lengths = [5, 1, device === 'webgpu' ? 20 : Math.min(70, model.info.maxContext - 3)]
      const prompts = lengths.map((n) => Array.from({ length: n }, id))
      const next = lengths.map(() => id())
      const batched = model.createSession({ maxBatchTokens: 8 })
      const alone = model.createSession()
      const slots = [0, batched.acquire(), batched.acquire()]
      for (let b = 0; b < 3; b++) await batched.forward(prompts[b], 0, { slot: slots[b] })
      // rows in an order unlike the slots' (a scheduler's rows are in job order)
      const order = [2, 0, 1]
      await batched.step(order.map((b) => slots[b]), order.map((b) => next[b]), order.map((b) => lengths[b]))
      for (let b = 0; b < 3; b++) {
        const want = (await alone.forward([...prompts[b], next[b]], 0)).slice()
        const got = batched.logitsOf(slots[b])
        let diff = 0
        for (let i = 0; i < V; i++) if (got[i] !== want[i]) diff++
        assert.is(diff, 0, `slot ${slots[b]}: ${diff} of ${V} logits differ from the sequence's own forward`)
      }
      // a second step: the KV rows the first step stored are read back
      const after = lengths.map((n) => n + 1), next2 = lengths.map(() => id())
      await batched.step(slots, next2, after)
      for (let b = 0; b < 3; b++) {
        const want = (await alone.forward([...prompts[b], next[b], next2[b]], 0)).slice()
        assert.equal(Array.from(batched.logitsOf(slots[b])), Array.from(want), `second step, slot ${slots[b]}`)
      }
      batched.dispose()
      alone.dispose()
    })

    test('step() refuses a slot twice, an unknown slot, a bad position or id, before running anything', async () => {
      const s = model.createSession()
      const t = s.acquire()
      await rejects(() => s.step([0, 0], [1, 2], [0, 0]), /step: slot 0 appears twice/)
      await rejects(() => s.step([0, 9], [1, 2], [0, 0]), /step: no such slot in this session \(expected an acquired slot \(0, 1\), found 9\)/)
      await rejects(() => s.step([0, t], [1, 2], [0, model.info.maxContext]), new RegExp(`position of row 1 out of range \\(expected 0 \\.\\. ${model.info.maxContext - 1}`))
      await rejects(() => s.step([0], [model.arch.nVocab], [0]), /token id at index 0 out of range/)
      await rejects(() => s.step([0, t], [1], [0, 0]), /slots, ids and positions hold fewer than n rows \(expected n <= 1, found 2\)/)
      s.dispose()
    })
    test.run()
  }
}

/** Runs a job of `g` alone through a scheduler (the server's shape of a job). */
function job(model: Model, prompts: number[][], opts: Record<string, unknown>, steps?: number[]) {
  return {
    rows: prompts.length * ((opts.num_return_sequences as number) ?? 1),
    start: (session: Session) => Generation.start(model, prompts, { ...opts, session }),
    onStep: steps ? () => void steps.push(1) : undefined,
  }
}

for (const name of ['gpt2-tiny', 'gpt-j-tiny']) {
  const test = suite(`Scheduler: ${name}`)
  let model: Model
  test.before(async () => {
    model = await loadModel(modelDir(name))
  })
  test.after(() => model.dispose())

  test('jobs run together give each the tokens generate() gives it alone (greedy, seeded sampling, n=2, two prompts)', async () => {
    const r = rng(5)
    const p = (n: number) => Array.from({ length: n }, () => Math.floor(r() * 1000))
    const cases: [number[][], Record<string, unknown>][] = [
      [[p(7)], { max_new_tokens: 12, do_sample: false }],
      [[p(3)], { max_new_tokens: 9, do_sample: true, temperature: 0.9, top_k: 0, seed: 11 }],
      [[p(12)], { max_new_tokens: 15, do_sample: true, top_p: 0.8, seed: 12, num_return_sequences: 2 }],
      [[p(4), p(9)], { max_new_tokens: 6, do_sample: true, seed: 13 }],
      [[p(2)], { max_new_tokens: 20, do_sample: false, repetition_penalty: 1.3 }],
    ]
    const alone = []
    for (const [prompts, o] of cases) alone.push((await generate(model, prompts, o)).sequences.map((q) => q.newTokens))
    const sched = new Scheduler(model, { parallel: 6 })
    const done = await Promise.all(cases.map(([prompts, o]) => sched.submit(job(model, prompts, o))))
    done.forEach((g, i) => assert.equal(g.result().sequences.map((q) => q.newTokens), alone[i], `job ${i}`))
    const st = sched.stats
    // 7 rows of 6..20 tokens on 6 slots: far fewer steps than rows x tokens, several rows per step
    const tokens = alone.flat().reduce((s, q) => s + q.length, 0)
    assert.ok(st.stepRows / st.steps > 2, `mean batch ${st.stepRows} / ${st.steps}`)
    assert.is(st.stepRows, tokens - 7, 'every token after the first of each row came from a batched step') // the first comes from the prefill
    assert.ok(st.busyRows === 0 && st.running === 0 && st.queued === 0 && st.jobsDone === 5, JSON.stringify(st))
    assert.is(sched.session.slotsInUse, 0, 'every slot was released')
    await sched.close()
  })

  test('a job that needs more rows than are free waits; new jobs join between steps', async () => {
    const sched = new Scheduler(model, { parallel: 2 })
    const running: number[] = []
    const a = sched.submit(job(model, [[1, 2, 3]], { max_new_tokens: 30 }, running))
    const b = sched.submit(job(model, [[4, 5]], { max_new_tokens: 5, num_return_sequences: 2, do_sample: true, seed: 1 }))
    await new Promise((resolve) => setTimeout(resolve, 0))
    assert.is(sched.stats.queued, 1, 'the 2-row job waits behind the 1-row one on 2 slots')
    const [ga, gb] = await Promise.all([a, b])
    assert.is(ga.result().newTokens.length, 30)
    assert.equal(gb.result().sequences.map((q) => q.newTokens.length), [5, 5])
    await sched.close()
  })

  test('a cancelled job frees its slots before the next step; a full queue refuses at once', async () => {
    const sched = new Scheduler(model, { parallel: 1, maxQueue: 1 })
    const ac = new AbortController()
    let steps = 0
    const long = sched.submit({ ...job(model, [[1, 2]], { max_new_tokens: 200 }), signal: ac.signal, onStep: () => void (++steps === 3 && ac.abort()) })
    const waiting = sched.submit(job(model, [[3]], { max_new_tokens: 2 }))
    await rejects(() => sched.submit(job(model, [[5]], { max_new_tokens: 2 })), /scheduler: the queue is full/)
    try {
      await long
      assert.unreachable('the cancelled job resolved')
    } catch (e) {
      assert.instance(e, CancelledError)
    }
    assert.is(steps, 3, 'no step ran after the cancel')
    assert.is((await waiting).result().newTokens.length, 2, 'the queued job ran in the freed slot')
    assert.is(sched.session.slotsInUse, 0)
    assert.instance(await sched.submit(job(model, [[7]], { max_new_tokens: 1 })).catch((e) => e), Generation, 'the queue has room again')
    // a finished job leaves no listener on its signal (one would keep the job, and its generation, alive as long as the signal)
    const kept = new AbortController()
    await sched.submit({ ...job(model, [[8]], { max_new_tokens: 2 }), signal: kept.signal })
    assert.is(getEventListeners(kept.signal, 'abort').length, 0)
    await sched.close()
    await rejects(() => sched.submit(job(model, [[7]], { max_new_tokens: 1 })), /the scheduler is closed/)
    assert.ok(QueueFullError.name === 'QueueFullError')
  })

  test('close(true) cancels running jobs; close() lets them finish', async () => {
    const s1 = new Scheduler(model, { parallel: 2 })
    const j1 = s1.submit(job(model, [[1]], { max_new_tokens: 10 }))
    await new Promise((resolve) => setImmediate(resolve))
    await s1.close()
    assert.is((await j1).result().newTokens.length, 10)
    const s2 = new Scheduler(model, { parallel: 2 })
    const j2 = s2.submit(job(model, [[1]], { max_new_tokens: 500 })).catch((e) => e)
    const queued = s2.submit(job(model, [[1]], { max_new_tokens: 500, num_return_sequences: 2, do_sample: true })).catch((e) => e)
    await new Promise((resolve) => setTimeout(resolve, 5))
    await s2.close(true)
    assert.instance(await j2, CancelledError)
    assert.instance(await queued, CancelledError)
  })
  test.run()
}

{
  const test = suite('Scheduler: ModelScope GPT-3 mode')
  let model: Model
  test.before(async () => {
    model = await loadModel(modelDir('gpt3-ms-tiny'))
  })
  test.after(() => model.dispose())

  test('ModelScope generations batched together equal modelscopeGenerateIds alone (greedy and seeded top-k / top-p)', async () => {
    const padded = (ids: number[]) => [...ids, 3, ...new Array(10).fill(0)]
    const cases = [
      { ids: padded([2, 100, 200, 300]), pl: 4, o: { topK: 1, topP: 0, maxLength: 30 } },
      { ids: padded([2, 50]), pl: 2, o: { topK: 5, topP: 0, seed: 3, maxLength: 25 } },
      { ids: padded([2, 7, 8, 9, 10, 11]), pl: 6, o: { topK: 0, topP: 0.9, seed: 4, temperature: 0.7, maxLength: 28 } },
    ]
    const alone = []
    for (const c of cases) alone.push(await modelscopeGenerateIds(model, c.ids, c.pl, c.o))
    const sched = new Scheduler(model, { parallel: 4 })
    const got = await Promise.all(cases.map((c) => sched.submit({ rows: 1, start: (session) => ModelscopeGeneration.start(model, c.ids, c.pl, { ...c.o, session }) })))
    got.forEach((g, i) => {
      assert.equal(g.result().ids, alone[i].ids, `case ${i}`)
      assert.is(g.result().finishReason, alone[i].finishReason)
    })
    // a group of two members is one job of two rows
    const grp = await sched.submit({
      rows: 2,
      start: async (session) => new StepperGroup([await ModelscopeGeneration.start(model, cases[0].ids, 4, { ...cases[0].o, session }), await ModelscopeGeneration.start(model, cases[1].ids, 2, { ...cases[1].o, session })]),
    })
    assert.equal(grp.members.map((m) => m.result().ids), [alone[0].ids, alone[1].ids])
    assert.ok(sched.stats.stepRows / sched.stats.steps > 1.5)
    await sched.close()
  })
  test.run()
}
