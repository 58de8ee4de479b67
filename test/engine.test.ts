// The engine after issue 9: immutable models and sessions (slots, KV growth), concurrent generations
// on one model, device log-probabilities, split weights, asynchronous tracing and the logit lens,
// GPT-J's rotary_dim defaults, inspect sizes per storage type, and the module graph (no import
// cycles, no models -> trace / concrete device imports). Every numeric check is against the golden
// fixtures (transformers' outputs) or an independent float64 computation, on every device.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import {
  ConfigError,
  UsageError,
  collectTrace,
  createJsDevice,
  generate,
  generateStream,
  inspectModel,
  loadModel,
  openCheckpoint,
  randomWeights,
  type Model,
  type Storage,
} from '@refgpt/core'
import { MODELS, TEST_DEVICES, TOL, assertClose, loadGolden, maxDiff, modelDir, modelsOn, pickRows, writeSafetensors } from './helpers.js'

/** The cached-vs-full tolerance (KV cache, chunks): what models.test.ts allows between the two paths. */
const CACHED = { atol: 2e-5, rtol: 2e-5 }

/** Awaits fn() and checks that it rejects (or throws) with an error of class `cls` whose message matches `re`. */
async function rejects(fn: () => unknown, cls: new (...a: any[]) => Error, re: RegExp | undefined, label: string): Promise<Error> {
  let err: unknown = null
  try {
    await fn()
  } catch (e) {
    err = e
  }
  assert.ok(err !== null, `${label}: expected a ${cls.name}, nothing was thrown`)
  assert.ok(err instanceof cls, `${label}: expected a ${cls.name}, got ${(err as Error)?.name}: ${(err as Error)?.message}`)
  if (re) assert.match((err as Error).message, re, `${label}: message`)
  return err as Error
}

/** log_softmax of row t of a [T, V] array, in float64. */
function logSoftmax64(a: ArrayLike<number>, V: number, t: number): Float64Array {
  let m = -Infinity
  for (let v = 0; v < V; v++) m = Math.max(m, a[t * V + v])
  let s = 0
  for (let v = 0; v < V; v++) s += Math.exp(a[t * V + v] - m)
  const lse = m + Math.log(s)
  const out = new Float64Array(V)
  for (let v = 0; v < V; v++) out[v] = a[t * V + v] - lse
  return out
}

/** log p(targets[t] | row t) from [T, V] logits, float64; a negative target gives 0. */
function logProbs64(logits: ArrayLike<number>, V: number, targets: ArrayLike<number>): Float64Array {
  const out = new Float64Array(targets.length)
  for (let t = 0; t < targets.length; t++) out[t] = targets[t] < 0 ? 0 : logSoftmax64(logits, V, t)[targets[t]]
  return out
}

const ids = (g: any, p: string): number[] => g.prompts[p].ids

// --- 1. one model, several generations --------------------------------------------------------------

const SAMPLE = { do_sample: true, top_k: 20, seed: 7, max_new_tokens: 12 }
const BEAM = { num_beams: 3, max_new_tokens: 10 }

for (const device of TEST_DEVICES) {
  for (const name of modelsOn(device)) {
    const test = suite(`engine: generations sharing one ${name} model on ${device}`)
    const golden = loadGolden(name)
    const g = golden.json
    const p1 = ids(g, 'p1'), p2 = ids(g, 'p2'), p0 = ids(g, 'p0')
    let model: Model
    let alone: { sample: number[]; beam: number[][] }
    test.before(async () => {
      model = await loadModel(modelDir(name), { device })
      const s = await generate(model, p1, SAMPLE)
      const b = await generate(model, p2, BEAM)
      alone = { sample: s.ids, beam: b.sequences.map((q) => q.ids) }
    })
    test.after(() => model.dispose())

    test('each generation alone is reproducible (fresh calls give the same ids)', async () => {
      assert.is(alone.sample.length, p1.length + SAMPLE.max_new_tokens)
      assert.equal((await generate(model, p1, SAMPLE)).ids, alone.sample)
      assert.equal((await generate(model, p2, BEAM)).sequences.map((q) => q.ids), alone.beam)
    })

    test('sampling and beam search run concurrently on one model (own sessions): the same ids as alone', async () => {
      const [s, b] = await Promise.all([generate(model, p1, SAMPLE), generate(model, p2, BEAM)])
      assert.equal(s.ids, alone.sample, 'sampling interleaved with beam search')
      assert.equal(b.sequences.map((q) => q.ids), alone.beam, 'beam search interleaved with sampling')
    })

    test('sampling and beam search run concurrently inside ONE shared session (different slots): the same ids', async () => {
      const session = model.createSession()
      try {
        assert.is(session.slotsInUse, 1)
        const [s, b] = await Promise.all([generate(model, p1, { ...SAMPLE, session }), generate(model, p2, { ...BEAM, session })])
        assert.equal(s.ids, alone.sample, 'sampling in a shared session')
        assert.equal(b.sequences.map((q) => q.ids), alone.beam, 'beam search in a shared session')
        assert.is(session.slotsInUse, 1, 'every slot acquired by the generations is released')
        // the session's own slot 0 is still usable and its results are right
        const logits = await session.logits(p1, 0)
        assertClose(logits, golden.tensor('logits.p1'), TOL.logits, `${name} logits.p1 in the shared session`)
      } finally {
        session.dispose()
      }
    })

    test('golden beam searches (num_beams 4; num_beams 3 x 3 returned) interleaved with sampling equal transformers', async () => {
      for (const key of ['p1.num_beams4', 'p1.num_beams3.return3']) {
        const want = g.beam[key]
        const st = g.generation_settings[`beam.${key}`]
        const opts = { num_beams: st.num_beams, num_return_sequences: st.num_return_sequences ?? 1, max_new_tokens: st.max_new_tokens, early_stopping: st.early_stopping, length_penalty: st.length_penalty, pad_token_id: st.pad_token_id }
        const session = model.createSession()
        try {
          const [s, b, s2, b2] = await Promise.all([
            generate(model, p1, SAMPLE),
            generate(model, p1, opts),
            generate(model, p1, { ...SAMPLE, session }),
            generate(model, p1, { ...opts, session }),
          ])
          for (const [r, how] of [[b, 'own session'], [b2, 'shared session']] as const) {
            assert.equal(r.sequences.map((q) => q.ids), want.sequences, `${name} beam ${key} (${how})`)
            r.sequences.forEach((q, i) => assert.ok(Math.abs(q.score! - want.sequences_scores[i]) < 1e-4, `${key} score ${i}: ${q.score} vs ${want.sequences_scores[i]} (${how})`))
          }
          assert.equal(s.ids, alone.sample)
          assert.equal(s2.ids, alone.sample)
          assert.is(session.slotsInUse, 1)
        } finally {
          session.dispose()
        }
      }
    })

    test('generateStream stepped by hand, alternated with greedy generate(): both exact (own and shared sessions)', async () => {
      const greedyWant = g.greedy.p0.sequence.slice(0, p0.length + 3)
      for (const shared of [false, true]) {
        const session = shared ? model.createSession() : undefined
        try {
          const it = generateStream(model, p1, { ...SAMPLE, session })
          const streamed: number[] = []
          let steps = 0
          for (;;) {
            const r = await it.next()
            if (r.done) {
              assert.equal(r.value.ids, alone.sample, `stream result (shared session: ${shared})`)
              break
            }
            streamed.push(r.value.id)
            // a whole greedy generation between two steps of the stream
            const gr = await generate(model, p0, { max_new_tokens: 3, session })
            assert.equal(gr.ids, greedyWant, `greedy p0 between stream steps (step ${steps}, shared session: ${shared})`)
            steps++
          }
          assert.equal(streamed, alone.sample.slice(p1.length), `streamed tokens (shared session: ${shared})`)
          assert.is(steps, SAMPLE.max_new_tokens)
          if (session) assert.is(session.slotsInUse, 1, 'the stream and the greedy runs released their slots')
        } finally {
          session?.dispose()
        }
      }
    })

    test.run()
  }
}

// --- 2. sessions: slots, KV growth, copySlot ------------------------------------------------------------

for (const device of TEST_DEVICES) {
  const test = suite(`engine: session slots and KV growth on ${device}`)
  for (const name of modelsOn(device, ['gpt2-tiny', 'gpt-j-tiny', 'gpt-neo-odd'])) {
    const golden = loadGolden(name)
    const g = golden.json
    const p2 = ids(g, 'p2'), p3 = ids(g, 'p3')

    test(`${name}: slotsInUse, acquire / release reuse, released slots are UsageErrors`, async () => {
      const model = await loadModel(modelDir(name), { device })
      const s = model.createSession()
      try {
        assert.is(s.slotsInUse, 1, 'a new session has slot 0')
        assert.is(s.kvCapacityOf(0), 0, 'no KV room before the first forward (kvCapacity 0)')
        const a = s.acquire(), b = s.acquire()
        assert.ok(a !== 0 && b !== 0 && a !== b, `distinct slots ${a}, ${b}`)
        assert.is(s.slotsInUse, 3)
        s.release(a)
        assert.is(s.slotsInUse, 2)
        assert.is(s.acquire(), a, 'a released slot is reused')
        assert.is(s.slotsInUse, 3)
        s.release(a)
        s.release(b)
        assert.is(s.slotsInUse, 1)
        await rejects(() => s.forward([p2[0]], 0, { slot: b }), UsageError, /slot/, 'forward on a released slot')
        await rejects(() => s.logits([p2[0]], 0, { slot: b }), UsageError, /slot/, 'logits on a released slot')
        await rejects(() => s.logProbs(p2.slice(0, 3), { slot: b }), UsageError, /slot/, 'logProbs on a released slot')
        await rejects(() => s.kvCapacityOf(b), UsageError, /slot/, 'kvCapacityOf a released slot')
        await rejects(() => s.release(b), UsageError, /slot/, 'releasing twice')
        await rejects(() => s.copySlot(0, b, 0), UsageError, /slot/, 'copySlot into a released slot')
        await rejects(() => s.forward([p2[0]], 0, { slot: 99 }), UsageError, /slot/, 'a slot never acquired')
        // slot 0 still works after all that
        const logits = await s.logits(p2, 0)
        assertClose(pickRows(logits, model.arch.nVocab, g.tensors['logits.p2'].rows), golden.tensor('logits.p2'), TOL.logits, `${name} logits.p2 after slot errors`)
        const own = model.createSession({ kvCapacity: 100 })
        assert.is(own.kvCapacityOf(0), 100, 'kvCapacity option reserves room at acquire')
        own.dispose()
        s.dispose()
        await rejects(() => s.acquire(), UsageError, /disposed/, 'acquire after dispose')
      } finally {
        s.dispose()
        await model.dispose()
      }
    })

    test(`${name}: KV capacity grows on demand; results across growth equal a fresh full forward`, async () => {
      const model = await loadModel(modelDir(name), { device })
      const V = model.arch.nVocab, ctx = model.info.maxContext
      assert.ok(ctx > 64, `context ${ctx} > 64`)
      const fresh = model.createSession()
      const full = await fresh.logits(p3, 0) // 100 rows, chunks of 64
      fresh.dispose()
      assertClose(pickRows(full, V, g.tensors['logits.p3'].rows), golden.tensor('logits.p3'), TOL.logits, `${name} full logits.p3`)
      const s = model.createSession()
      try {
        let logits = await s.forward(p3.slice(0, 10), 0)
        const cap10 = s.kvCapacityOf(0)
        assert.ok(cap10 >= 10 && cap10 < ctx, `capacity after 10 tokens: ${cap10} (context ${ctx})`)
        assertClose(logits, full.subarray(9 * V, 10 * V), CACHED, `${name} prefill row 9`)
        const caps = new Set([cap10])
        for (let t = 10; t < p3.length; t++) {
          logits = await s.forward([p3[t]], t)
          caps.add(s.kvCapacityOf(0))
          assertClose(logits, full.subarray(t * V, (t + 1) * V), CACHED, `${name} cached step at position ${t} (capacity ${s.kvCapacityOf(0)})`)
        }
        const cap100 = s.kvCapacityOf(0)
        assert.ok(cap100 >= 100 && cap100 > cap10 && cap100 <= ctx, `capacity at position 100: ${cap100} (was ${cap10})`)
        assert.ok(caps.size >= 2, `the cache grew (${[...caps].join(' -> ')})`)
        // a second slot, filled in one logits() call past the growth point, equals too
        const b = s.acquire()
        const rows = await s.logits(p3.slice(0, 70), 0, { slot: b })
        assertClose(rows, full.subarray(0, 70 * V), CACHED, `${name} logits of 70 rows in a fresh slot`)
        assert.ok(s.kvCapacityOf(b) >= 70)
      } finally {
        s.dispose()
        await model.dispose()
      }
    })

    test(`${name}: copySlot: continuing from a copied slot equals continuing the original`, async () => {
      const model = await loadModel(modelDir(name), { device })
      const V = model.arch.nVocab
      const s = model.createSession()
      try {
        const full = await s.logits(p2, 0) // slot 0: every row of p2
        const a = s.acquire(), b = s.acquire()
        await s.forward(p2.slice(0, 12), 0, { slot: a })
        s.copySlot(a, b, 12)
        assert.ok(s.kvCapacityOf(b) >= 12, 'copySlot reserves room in the destination')
        const fromCopy = (await s.logits(p2.slice(12), 12, { slot: b }))
        const fromOrig = (await s.logits(p2.slice(12), 12, { slot: a }))
        const lastOrig = (await s.forward(p2.slice(12), 12, { slot: a })).slice()
        assert.equal(Array.from(fromCopy), Array.from(fromOrig), 'copied slot == original slot, exactly')
        assertClose(fromCopy, full.subarray(12 * V), CACHED, `${name} continued copy vs full`)
        assertClose(pickRows(fromCopy, V, [22 - 12]), golden.tensor('logits.p2').subarray((g.tensors['logits.p2'].rows.length - 1) * V), TOL.logits, `${name} last row vs golden`)
        // the copy is independent: overwriting the original's positions 5.. leaves the copy intact
        await s.forward([p2[0], p2[1], p2[2]], 5, { slot: a })
        const again = await s.forward(p2.slice(12), 12, { slot: b })
        assert.equal(Array.from(again), Array.from(lastOrig), 'copy after the original changed == the original before')
        await rejects(() => s.copySlot(a, b, 10_000), UsageError, /positions/, 'copySlot past the cache')
      } finally {
        s.dispose()
        await model.dispose()
      }
    })
  }
  test.run()
}

// --- 3. logProbs ------------------------------------------------------------------------------------------

for (const device of TEST_DEVICES) {
  const test = suite(`engine: session.logProbs on ${device}`)
  for (const name of modelsOn(device)) {
    const golden = loadGolden(name)
    const g = golden.json

    test(`${name}: logProbs == float64 log_softmax of session.logits (and of the golden every-row logits)`, async () => {
      const model = await loadModel(modelDir(name), { device })
      const V = model.arch.nVocab
      const s = model.createSession()
      try {
        for (const p of ['p1', 'p2', 'p3']) {
          const x = ids(g, p)
          const logits = await s.logits(x, 0)
          const lp = await s.logProbs(x)
          assert.is(lp.length, x.length - 1, 'default targets: one entry per next id')
          assertClose(lp, logProbs64(logits, V, x.slice(1)), { atol: 1e-5, rtol: Infinity }, `${name} logProbs.${p} vs log_softmax(logits)`)
        }
        // golden logits that cover every row of a prompt
        let checked = 0
        for (const p of ['p0', 'p1', 'p2', 'p3']) {
          const x = ids(g, p), rows: number[] = g.tensors[`logits.${p}`].rows
          if (rows.length !== x.length || x.length < 2) continue
          const lp = await s.logProbs(x)
          assertClose(lp, logProbs64(golden.tensor(`logits.${p}`), V, x.slice(1)), { atol: 1e-5, rtol: Infinity }, `${name} logProbs.${p} vs log_softmax(golden logits)`)
          checked++
        }
        assert.ok(checked >= 1, 'at least one golden prompt has every row')
      } finally {
        s.dispose()
        await model.dispose()
      }
    })

    test(`${name}: explicit targets (a negative one gives 0), pos > 0 from a cached prefix, chunks of 3`, async () => {
      const model = await loadModel(modelDir(name), { device })
      const V = model.arch.nVocab
      const s = model.createSession()
      const chunked = model.createSession({ maxBatchTokens: 3 })
      try {
        assert.is(chunked.maxBatchTokens, 3)
        const x = ids(g, 'p2'), n = x.length
        const logits = await s.logits(x, 0)
        const targets = x.map((_, t) => (t % 5 === 3 ? -1 : (t * 7919 + 13) % V))
        targets[n - 1] = V - 1
        const lp = await s.logProbs(x, { targets })
        assert.is(lp.length, n)
        const want = logProbs64(logits, V, targets)
        assertClose(lp, want, { atol: 1e-5, rtol: Infinity }, `${name} explicit targets`)
        targets.forEach((t, i) => t < 0 && assert.is(lp[i], 0, `negative target at ${i} gives 0`))

        // the full call, then the same entries from a cached prefix (pos > 0)
        const full = await s.logProbs(x)
        for (const k of [1, 9, 17]) {
          const slot = s.acquire()
          await s.forward(x.slice(0, k), 0, { slot })
          const tail = await s.logProbs(x.slice(k), { slot, pos: k })
          assert.is(tail.length, n - k - 1)
          assertClose(tail, full.subarray(k), CACHED, `${name} logProbs from position ${k} after a cached prefix`)
          // the prefix cached by logProbs itself: head + tail == full
          const head = await s.logProbs(x.slice(0, k + 1), { slot })
          const tail2 = await s.logProbs(x.slice(k), { slot, pos: k })
          assertClose([...head, ...tail2], full, CACHED, `${name} logProbs split at ${k}`)
          // explicit targets from a cached prefix
          const tt = await s.logProbs(x.slice(k), { slot, pos: k, targets: targets.slice(k) })
          assertClose(tt, want.subarray(k), CACHED, `${name} explicit targets from position ${k}`)
          s.release(slot)
        }

        // chunked (3 rows a step) equals unchunked, default and explicit targets
        assertClose(await chunked.logProbs(x), full, CACHED, `${name} logProbs in chunks of 3`)
        assertClose(await chunked.logProbs(x, { targets }), lp, CACHED, `${name} explicit targets in chunks of 3`)
        const x3 = ids(g, 'p3')
        assertClose(await chunked.logProbs(x3), await s.logProbs(x3), CACHED, `${name} p3 (100 tokens) in chunks of 3`)
      } finally {
        s.dispose()
        chunked.dispose()
        await model.dispose()
      }
    })

    test(`${name}: a bad target is a UsageError raised before anything runs`, async () => {
      const model = await loadModel(modelDir(name), { device })
      const V = model.arch.nVocab
      const s = model.createSession()
      try {
        const x = ids(g, 'p2'), k = 9
        const full = await s.logProbs(x)
        const slot = s.acquire()
        await s.forward(x.slice(0, k), 0, { slot })
        const capBefore = s.kvCapacityOf(slot)
        const other = x.slice().reverse() // different tokens: running them at position 0 would overwrite the prefix
        for (const [bad, what] of [[V, 'V'], [V + 5, 'V + 5'], [1.5, '1.5'], [NaN, 'NaN']] as const) {
          let events = 0
          const targets = other.map(() => 0)
          targets[other.length - 1] = bad as number
          await rejects(() => s.logProbs(other, { slot, pos: 0, targets, tracer: () => void events++ }), UsageError, /target/, `target ${what}`)
          assert.is(events, 0, `nothing ran for target ${what} (trace events)`)
        }
        await rejects(() => s.logProbs(other, { slot, targets: [1, 2] }), UsageError, /length/, 'targets of another length')
        const fresh = s.acquire()
        await rejects(() => s.logProbs(x, { slot: fresh, targets: x.map((_, i) => (i === 3 ? V : 0)) }), UsageError, /target/, 'bad target on a fresh slot')
        assert.is(s.kvCapacityOf(fresh), 0, 'a fresh slot got no KV room: nothing ran')
        assert.is(s.kvCapacityOf(slot), capBefore)
        // the cached prefix is intact
        const tail = await s.logProbs(x.slice(k), { slot, pos: k })
        assertClose(tail, full.subarray(k), CACHED, `${name} the prefix survived the rejected calls`)
      } finally {
        s.dispose()
        await model.dispose()
      }
    })
  }
  test.run()
}

// --- 4. weights split into several device buffers --------------------------------------------------------

const SPLIT_BYTES = 8 * 1024

for (const device of TEST_DEVICES) {
  const test = suite(`engine: weights split into ${SPLIT_BYTES}-byte buffers on ${device}`)
  for (const name of modelsOn(device)) {
    const golden = loadGolden(name)
    const g = golden.json
    test(`${name}: split weights give the golden logits, the golden greedy ids and the unsplit logProbs`, async () => {
      const whole = await loadModel(modelDir(name), { device })
      const split = await loadModel(modelDir(name), { device, maxBufferBytes: SPLIT_BYTES })
      const V = split.arch.nVocab, C = split.arch.nEmbd
      try {
        assert.is(split.device.limits.maxBufferBytes, SPLIT_BYTES)
        const minWteParts = Math.ceil(V / Math.floor(SPLIT_BYTES / (4 * C)))
        assert.ok(split.info.weightBuffers > whole.info.weightBuffers, `weightBuffers ${split.info.weightBuffers} > unsplit ${whole.info.weightBuffers}`)
        assert.ok(split.info.weightBuffers >= minWteParts + whole.info.weightBuffers - 1, `wte alone is ${minWteParts} parts (weightBuffers ${split.info.weightBuffers})`)
        assert.is(split.info.weightBytes, whole.info.weightBytes, 'same bytes, more buffers')
        const s = split.createSession(), w = whole.createSession()
        try {
          for (const p of ['p0', 'p1', 'p2']) {
            const logits = await s.logits(ids(g, p), 0)
            assertClose(pickRows(logits, V, g.tensors[`logits.${p}`].rows), golden.tensor(`logits.${p}`), TOL.logits, `${name} split logits.${p}`)
            const last = await s.forward(ids(g, p), 0)
            assertClose(last, golden.tensor(`logits.${p}`).subarray((g.tensors[`logits.${p}`].rows.length - 1) * V), TOL.logits, `${name} split forward() last row ${p}`)
          }
          for (const p of ['p0', 'p1', 'p2']) {
            const out = await generate(split, ids(g, p), { max_new_tokens: 20 })
            assert.equal(out.ids, g.greedy[p].sequence, `${name} split greedy.${p}`)
          }
          for (const p of ['p1', 'p2', 'p3']) {
            const a = await s.logProbs(ids(g, p)), b = await w.logProbs(ids(g, p))
            assertClose(a, b, { atol: 1e-6, rtol: Infinity }, `${name} split vs unsplit logProbs.${p}`)
          }
          const targets = ids(g, 'p2').map((_, t) => (t * 104729) % V)
          assertClose(await s.logProbs(ids(g, 'p2'), { targets }), await w.logProbs(ids(g, 'p2'), { targets }), { atol: 1e-6, rtol: Infinity }, `${name} split vs unsplit explicit targets (all of the vocabulary)`)
          // the logit lens reads the split head too
          const tr = collectTrace((n) => n.endsWith('.lens') || n === 'logits')
          const lastRow = (await s.forward(ids(g, 'p2'), 0, { tracer: tr.tracer, logitLens: true })).slice()
          const t = await tr.settle()
          assertClose(t.get(`h.${split.arch.nLayer - 1}.lens`)!.data, lastRow, { atol: 1e-5, rtol: Infinity }, `${name} split lens of the last layer`)
        } finally {
          s.dispose()
          w.dispose()
        }
      } finally {
        await split.dispose()
        await whole.dispose()
      }
    })
  }
  test.run()
}

// --- 5. asynchronous tracing and the logit lens ------------------------------------------------------------

/** Reads the final norm and LM head from the checkpoint, float64. */
function headWeights(name: string, tied: boolean) {
  const ck = openCheckpoint(modelDir(name))
  try {
    const prefix = [...ck.tensors.keys()].some((k) => k.startsWith('transformer.')) ? 'transformer.' : ''
    return {
      g: ck.readF32(`${prefix}ln_f.weight`),
      b: ck.readF32(`${prefix}ln_f.bias`),
      w: ck.readF32(tied ? `${prefix}wte.weight` : 'lm_head.weight'),
      bias: !tied && ck.tensors.has('lm_head.bias') ? ck.readF32('lm_head.bias') : null,
    }
  } finally {
    ck.close()
  }
}

/** ln_f + lm_head of one row, in float64. */
function lens64(x: ArrayLike<number>, h: ReturnType<typeof headWeights>, V: number, C: number, eps: number): Float64Array {
  let mean = 0
  for (let c = 0; c < C; c++) mean += x[c]
  mean /= C
  let vr = 0
  for (let c = 0; c < C; c++) vr += (x[c] - mean) ** 2
  vr /= C
  const r = 1 / Math.sqrt(vr + eps)
  const xn = new Float64Array(C)
  for (let c = 0; c < C; c++) xn[c] = (x[c] - mean) * r * h.g[c] + h.b[c]
  const out = new Float64Array(V)
  for (let v = 0; v < V; v++) {
    let s = h.bias ? h.bias[v] : 0
    for (let c = 0; c < C; c++) s += h.w[v * C + c] * xn[c]
    out[v] = s
  }
  return out
}

for (const device of TEST_DEVICES) {
  const test = suite(`engine: asynchronous tracing and the logit lens on ${device}`)
  for (const name of modelsOn(device)) {
    const golden = loadGolden(name)
    const g = golden.json
    test(`${name}: collectTrace + settle: hidden states, attention probabilities and logits equal transformers`, async () => {
      const model = await loadModel(modelDir(name), { device })
      const s = model.createSession()
      try {
        const x = ids(g, 'p2'), L = model.arch.nLayer, V = model.arch.nVocab
        const tr = collectTrace()
        const last = (await s.forward(x, 0, { tracer: tr.tracer })).slice()
        const t = await tr.settle()
        assert.ok(t === tr.tensors)
        for (let l = 0; l <= L; l++) {
          const stage = l === 0 ? 'embed' : l === L ? 'ln_f' : `h.${l - 1}.out`
          const e = t.get(stage)
          assert.ok(e, `event ${stage}`)
          assert.equal([...e!.shape], golden.shape(`hidden.p2.${l}`), `${stage} shape`)
          assert.is(e!.pos0, 0)
          assertClose(e!.data, golden.tensor(`hidden.p2.${l}`), TOL.hidden, `${name} hidden.p2.${l} (${stage})`)
        }
        for (let l = 0; l < L; l++) {
          const e = t.get(`h.${l}.attn.probs`)!
          assert.equal([...e.shape], [model.arch.nHead, x.length, x.length])
          assertClose(e.data, golden.tensor(`attn.p2.${l}`), TOL.probs, `${name} attn.p2.${l}`)
        }
        const lg = t.get('logits')!
        assert.equal([...lg.shape], [1, V])
        assert.is(lg.pos0, x.length - 1)
        assert.equal(Array.from(lg.data), Array.from(last), 'the logits event is what forward() returned')
        assertClose(last, golden.tensor('logits.p2').subarray((g.tensors['logits.p2'].rows.length - 1) * V), TOL.logits, `${name} last row`)
        assert.ok(![...t.keys()].some((k) => k.endsWith('.lens')), 'no lens without logitLens')
        // snapshots are taken at the event: a second forward does not change what the first collected
        const before = Float32Array.from(t.get('h.0.out')!.data)
        const tr2 = collectTrace((n) => n === 'logits')
        const rows = await s.logits(x, 0, { tracer: tr2.tracer })
        const t2 = await tr2.settle()
        assert.equal([...t2.get('logits')!.shape], [x.length, V], 'logits() traces [T, V]')
        assert.equal(Array.from(t2.get('logits')!.data), Array.from(rows))
        assert.equal(Array.from(t.get('h.0.out')!.data), Array.from(before))
        // snapshots taken inside the callback but resolved after later forwards still hold the traced values
        const pending: { name: string; data: Promise<Float32Array> }[] = []
        await s.forward(x, 0, { tracer: (e) => e.name === 'embed' && pending.push({ name: e.name, data: e.read() }) })
        await s.forward(x.slice().reverse(), 0)
        assertClose(await pending[0].data, golden.tensor('hidden.p2.0'), TOL.hidden, `${name} a snapshot read after another forward`)
      } finally {
        s.dispose()
        await model.dispose()
      }
    })

    test(`${name}: logitLens emits h.L.lens for every layer; the last equals the logits; float64 ln_f + lm_head of h.L.out agrees`, async () => {
      const model = await loadModel(modelDir(name), { device })
      const s = model.createSession()
      try {
        const { nLayer: L, nVocab: V, nEmbd: C, eps } = model.arch
        const head = headWeights(name, model.arch.tiedLmHead)
        assert.is(head.bias !== null, model.traits.lmHeadBias, 'LM-head bias as the traits say')
        for (const p of ['p1', 'p2']) {
          const x = ids(g, p), T = x.length
          const tr = collectTrace()
          const last = (await s.forward(x, 0, { tracer: tr.tracer, logitLens: true })).slice()
          const t = await tr.settle()
          const lensNames = [...t.keys()].filter((k) => k.endsWith('.lens'))
          assert.equal(lensNames.sort(), Array.from({ length: L }, (_, l) => `h.${l}.lens`).sort(), 'one lens per layer')
          for (let l = 0; l < L; l++) {
            const e = t.get(`h.${l}.lens`)!
            assert.equal([...e.shape], [1, V])
            assert.is(e.layer, l)
            assert.is(e.pos0, T - 1)
            const out = t.get(`h.${l}.out`)!
            const want = lens64(out.data.subarray((T - 1) * C, T * C), head, V, C, eps)
            assertClose(e.data, want, { atol: 1e-4, rtol: Infinity }, `${name} ${p} h.${l}.lens vs float64 ln_f + lm_head`)
          }
          assertClose(t.get(`h.${L - 1}.lens`)!.data, last, { atol: 1e-5, rtol: Infinity }, `${name} ${p} last lens vs logits`)
          const gl = golden.tensor(`logits.${p}`), rows: number[] = g.tensors[`logits.${p}`].rows
          assert.is(rows[rows.length - 1], T - 1)
          assertClose(t.get(`h.${L - 1}.lens`)!.data, gl.subarray((rows.length - 1) * V), TOL.logits, `${name} ${p} last lens vs golden logits`)
          // lens rows come from the last chunk's last row when the input runs in chunks
          const small = model.createSession({ maxBatchTokens: 4 })
          const tr2 = collectTrace((n) => n.endsWith('.lens'))
          await small.forward(x, 0, { tracer: tr2.tracer, logitLens: true })
          const t2 = await tr2.settle()
          assertClose(t2.get(`h.${L - 1}.lens`)!.data, last, CACHED, `${name} ${p} last lens in chunks of 4`)
          small.dispose()
        }
      } finally {
        s.dispose()
        await model.dispose()
      }
    })
  }
  test.run()
}

// --- 6. GPT-J rotary_dim -----------------------------------------------------------------------------------

const rot = suite('engine: GPT-J rotary_dim (missing -> 64, null -> the whole head)')
let tmp: string
rot.before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'refgpt-rotary-'))
})
rot.after(() => rmSync(tmp, { recursive: true, force: true }))

/** A copy of gpt-j-tiny whose config.json is `edit`ed. */
function gptjVariant(label: string, edit: (c: Record<string, unknown>) => void): string {
  const src = modelDir('gpt-j-tiny'), dir = join(tmp, label)
  cpSync(src, dir, { recursive: true })
  const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'))
  edit(config)
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2))
  return dir
}

/** A GPT-J folder of the given config with seeded random weights written as model.safetensors. */
function gptjRandom(label: string, config: Record<string, unknown>, weightsConfig: Record<string, unknown>): string {
  const dir = join(tmp, label)
  mkdirSync(dir)
  const { checkpoint } = randomWeights(weightsConfig, { seed: 11 })
  const header: Record<string, unknown> = {}
  const parts: Buffer[] = []
  let off = 0
  for (const [name, info] of checkpoint.tensors) {
    const d = checkpoint.readF32(name)
    const bytes = Buffer.from(d.buffer, d.byteOffset, d.byteLength)
    header[name] = { dtype: 'F32', shape: info.shape, data_offsets: [off, off + bytes.length] }
    parts.push(bytes)
    off += bytes.length
  }
  writeSafetensors(join(dir, 'model.safetensors'), header, Buffer.concat(parts))
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2))
  return dir
}

rot('gpt-j-tiny (head size 8): rotary_dim missing is a ConfigError naming rotary_dim and GPTJConfig\'s default 64', async () => {
  const dir = gptjVariant('missing', (c) => delete c.rotary_dim)
  const e = await rejects(() => inspectModel(dir), ConfigError, /rotary_dim/, 'inspectModel')
  assert.match(e.message, /64/)
  assert.match(e.message, /GPTJConfig/)
  assert.match(e.message, /config\.json/)
  await rejects(() => loadModel(dir, { device: 'js' }), ConfigError, /rotary_dim.*64|64.*rotary_dim/, 'loadModel on js')
})

rot('gpt-j-tiny: rotary_dim null rotates the whole head (== an explicit rotary_dim of headDim), unlike the golden 4', async () => {
  const nul = gptjVariant('null', (c) => (c.rotary_dim = null))
  const full = gptjVariant('explicit8', (c) => (c.rotary_dim = 8))
  const info = inspectModel(nul)
  assert.is(info.arch.headDim, 8)
  assert.is(info.arch.rotaryDim, 8)
  assert.is(inspectModel(modelDir('gpt-j-tiny')).arch.rotaryDim, 4)
  const golden = loadGolden('gpt-j-tiny'), g = golden.json
  const [a, b, orig] = await Promise.all([loadModel(nul, { device: 'js' }), loadModel(full, { device: 'js' }), loadModel(modelDir('gpt-j-tiny'), { device: 'js' })])
  try {
    assert.is(a.arch.rotaryDim, 8)
    const x = ids(g, 'p2')
    const la = await a.createSession().logits(x, 0), lb = await b.createSession().logits(x, 0), lo = await orig.createSession().logits(x, 0)
    assert.equal(Array.from(la), Array.from(lb), 'null == explicit head size')
    assert.ok(maxDiff(la, lo).abs > 1e-3, 'rotating 8 dims differs from rotating 4')
    assertClose(pickRows(lo, orig.arch.nVocab, g.tensors['logits.p2'].rows), golden.tensor('logits.p2'), TOL.logits, 'rotary_dim 4 matches the golden')
  } finally {
    await Promise.all([a.dispose(), b.dispose(), orig.dispose()])
  }
})

rot('a GPT-J with head size 128: rotary_dim missing -> 64 (== explicit 64), null -> 128', async () => {
  const base = { model_type: 'gptj', n_embd: 128, n_head: 1, n_layer: 1, n_positions: 16, vocab_size: 64, tie_word_embeddings: false, bos_token_id: 0, eos_token_id: 0 }
  const weightsConfig = { ...base, rotary_dim: 64 }
  const missing = gptjRandom('h128-missing', base, weightsConfig)
  const explicit = gptjRandom('h128-64', weightsConfig, weightsConfig)
  const nul = gptjRandom('h128-null', { ...base, rotary_dim: null }, weightsConfig)
  assert.is(inspectModel(missing).arch.headDim, 128)
  assert.is(inspectModel(missing).arch.rotaryDim, 64)
  assert.is(inspectModel(explicit).arch.rotaryDim, 64)
  assert.is(inspectModel(nul).arch.rotaryDim, 128)
  const ms = await Promise.all([missing, explicit, nul].map((d) => loadModel(d, { device: 'js' })))
  try {
    assert.is(ms[0].arch.rotaryDim, 64)
    const x = [1, 5, 9, 13, 2, 7, 3, 11, 4]
    const [lm, le, ln] = await Promise.all(ms.map((m) => m.createSession().logits(x, 0)))
    assert.equal(Array.from(lm), Array.from(le), 'missing == explicit 64')
    assert.ok(maxDiff(lm, ln).abs > 1e-4, `rotating 64 of 128 dims differs from rotating all 128 (max |Δ| ${maxDiff(lm, ln).abs})`)
  } finally {
    await Promise.all(ms.map((m) => m.dispose()))
  }
})
rot.run()

// --- 7. inspect: weight bytes per storage type ---------------------------------------------------------

/** Bytes of a weight of `shape` (device layout [out, in]) kept as `storage` — written here from the formats. */
function bytesOf(shape: number[], storage: Storage): number {
  const n = shape.reduce((p, d) => p * d, 1)
  if (storage === 'F32') return 4 * n
  if (storage === 'F16' || storage === 'BF16') return 2 * n
  if (shape.length !== 2) return 4 * n // Q8 keeps 1-D tensors (biases, norms) in f32
  const [rows, cols] = shape
  const blocks = Math.ceil(cols / 32) // 32 int8 values share one f32 scale; rows padded to whole blocks
  return rows * blocks * 32 + rows * blocks * 4
}

/** The tensors a model places, in device layout, from the checkpoint's own shapes. */
function placedShapes(name: string, family: string, tied: boolean): number[][] {
  const ck = openCheckpoint(modelDir(name))
  try {
    const out: number[][] = []
    for (const [n, t] of ck.tensors) {
      if (/(^|\.)attn\.(bias|masked_bias)$/.test(n)) continue // HF buffers, not weights
      if (tied && n === 'lm_head.weight') continue
      const s = t.shape
      if (family === 'gpt2' && /attn\.c_attn\.weight$/.test(n)) out.push([s[0], s[0]], [s[0], s[0]], [s[0], s[0]]) // [C, 3C] -> q, k, v [C, C]
      else if (family === 'gpt2' && /attn\.c_attn\.bias$/.test(n)) out.push([s[0] / 3], [s[0] / 3], [s[0] / 3])
      else if (family === 'gpt2' && s.length === 2 && /\.(c_proj|c_fc)\.weight$/.test(n)) out.push([s[1], s[0]]) // Conv1D [in, out] -> [out, in]
      else out.push(s)
    }
    return out
  } finally {
    ck.close()
  }
}

const sizes = suite('engine: inspectModel weightBytes per storage type')
for (const name of MODELS) {
  sizes(`${name}: weightBytes for Q8 / BF16 / F16 / F32 equal the sum over its tensors; q8 < bf16 < f32`, async () => {
    const plain = inspectModel(modelDir(name))
    const shapes = placedShapes(name, plain.family, plain.arch.tiedLmHead)
    assert.is(shapes.reduce((s, sh) => s + sh.reduce((p, d) => p * d, 1), 0), plain.parameters, 'parameters = elements of the placed tensors')
    assert.equal(plain.unusedTensors, [])
    const got: Record<string, number> = {}
    for (const dtype of ['Q8', 'BF16', 'F16', 'F32'] as const) {
      const info = inspectModel(modelDir(name), { dtype })
      const want = shapes.reduce((s, sh) => s + bytesOf(sh, dtype), 0)
      assert.is(info.weightBytes, want, `${name} ${dtype} weightBytes`)
      assert.equal(Object.keys(info.storageDtypes), [dtype])
      assert.is(info.storageDtypes[dtype], plain.parameters)
      got[dtype] = info.weightBytes
    }
    assert.is(plain.weightBytes, got.F32, 'F32 checkpoint: default storage is F32')
    assert.is(got.BF16 * 2, got.F32, 'bf16 = f32 / 2 exactly')
    assert.is(got.F16, got.BF16)
    assert.ok(got.Q8 < got.BF16 && got.BF16 < got.F32, `q8 ${got.Q8} < bf16 ${got.BF16} < f32 ${got.F32}`)
    // a loaded model reports the same bytes as inspect
    const m = await loadModel(modelDir(name), { device: 'js', dtype: 'Q8' })
    assert.is(m.info.weightBytes, got.Q8, 'loadModel(Q8).info.weightBytes')
    await m.dispose()
  })
}
sizes('gpt-neo-tiny bf16 checkpoint: default storage keeps bf16 bytes', () => {
  const info = inspectModel(modelDir('gpt-neo-tiny'), { variant: 'bf16' })
  assert.is(info.weightBytes, inspectModel(modelDir('gpt-neo-tiny'), { dtype: 'BF16' }).weightBytes)
})
sizes('a device that copies weights (weightCopies) gets every tensor in one reused host array, and the same model', async () => {
  for (const dtype of ['BF16', 'Q8', undefined] as (Storage | undefined)[]) {
    const logitsOf = async (copies: boolean) => {
      const js = createJsDevice()
      const seen: { buffer: ArrayBufferLike; n: number; rows: number }[] = []
      const dev = new Proxy(js, {
        get(t, k) {
          if (k === 'weightCopies') return copies
          const v = (t as unknown as Record<string | symbol, unknown>)[k]
          if (k === 'weight') return (data: Float32Array, shape: number[], storage?: Storage) => {
            seen.push({ buffer: data.buffer, n: data.length, rows: shape[0] })
            return js.weight(data.slice(), shape, storage) // the js device keeps what it is given: a copy
          }
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v
        },
      })
      const model = await loadModel(modelDir('gpt-neo-tiny'), { device: dev, dtype })
      const logits = await model.createSession().forward(Int32Array.from([5, 17, 2, 40]), 0)
      const nVocab = model.arch.nVocab
      await model.dispose()
      return { logits: Float32Array.from(logits), seen, nVocab }
    }
    const fresh = await logitsOf(false), reused = await logitsOf(true)
    assert.is(fresh.seen.length, reused.seen.length)
    assert.ok(fresh.seen.length > 10)
    // without weightCopies every tensor comes in its own array; with it, the vocabulary table (the embedding,
    // also the LM head here) in its own, every other tensor in one array, new only when a tensor is larger than any before
    assert.is(new Set(fresh.seen.map((x) => x.buffer)).size, fresh.seen.length, `${dtype}: fresh arrays`)
    const vocab = reused.seen.filter((x) => x.rows === reused.nVocab), rest = reused.seen.filter((x) => x.rows !== reused.nVocab)
    assert.is(vocab.length, 1)
    let grows = 0, largest = 0
    for (const { n } of rest) if (n > largest) grows++, largest = n
    assert.is(new Set(rest.map((x) => x.buffer)).size, grows, `${dtype}: one array, grown ${grows} times`)
    assert.ok(!rest.some((x) => x.buffer === vocab[0].buffer))
    assert.ok(grows < reused.seen.length / 4)
    assert.equal(reused.logits, fresh.logits, `${dtype}: the same logits`)
  }
})
sizes.run()

// --- 8. the module graph ------------------------------------------------------------------------------------

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SRC_DIRS = ['packages/core/src', 'packages/cli/src'].map((d) => join(ROOT, d))

interface ModuleImports {
  value: string[]
  type: string[]
  dynamic: string[]
}

function tsFiles(dir: string): string[] {
  const out: string[] = []
  for (const f of readdirSync(dir)) {
    const p = join(dir, f)
    if (statSync(p).isDirectory()) out.push(...tsFiles(p))
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p)
  }
  return out
}

/** Removes comments (block and line) but not string contents that merely contain slashes in import specifiers. */
function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1')
}

const CLAUSE = String.raw`(type\s+)?((?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?|[\w$]+))`
const STATIC = new RegExp(String.raw`(?:^|[;\n}])\s*(import|export)\s+${CLAUSE}\s*from\s*['"]([^'"]+)['"]`, 'g')
const BARE = /(?:^|[;\n}])\s*import\s*['"]([^'"]+)['"]/g
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g

function resolveSpec(from: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null // packages (@refgpt/core, node:fs)
  const base = resolve(dirname(from), spec)
  for (const c of [base.replace(/\.js$/, '.ts'), base + '.ts', join(base, 'index.ts')]) if (existsSync(c)) return c
  throw new Error(`${relative(ROOT, from)}: cannot resolve import '${spec}'`)
}

function parseImports(file: string): ModuleImports {
  const src = stripComments(readFileSync(file, 'utf8'))
  const r: ModuleImports = { value: [], type: [], dynamic: [] }
  const add = (list: string[], spec: string) => {
    const p = resolveSpec(file, spec)
    if (p && !list.includes(p)) list.push(p)
  }
  for (const m of src.matchAll(STATIC)) {
    const [, , typeKw, clause, spec] = m
    // `import { type A, type B }`: every specifier type-only -> erased like `import type`
    const braces = /^\{([^}]*)\}$/.exec(clause.trim())
    const allTypes = braces !== null && braces[1].split(',').map((s) => s.trim()).filter(Boolean).every((s) => /^type\s/.test(s))
    add(typeKw || allTypes ? r.type : r.value, spec)
  }
  for (const m of src.matchAll(BARE)) add(r.value, m[1])
  for (const m of src.matchAll(DYNAMIC)) add(r.dynamic, m[1])
  return r
}

const graph = suite('engine: the module graph of packages/core/src and packages/cli/src')
const files = SRC_DIRS.flatMap(tsFiles).sort()
const imports = new Map(files.map((f) => [f, parseImports(f)]))
const rel = (f: string) => relative(ROOT, f)

graph('the parser sees the imports it should (value and type imports apart)', () => {
  assert.ok(files.length > 30, `${files.length} files`)
  const of = (f: string) => imports.get(join(ROOT, f))!
  const dec = of('packages/core/src/models/decoder.ts')
  assert.ok(dec.value.includes(join(ROOT, 'packages/core/src/errors.ts')), 'decoder.ts imports errors.ts (value)')
  assert.ok(dec.value.includes(join(ROOT, 'packages/core/src/models/layers.ts')), 'decoder.ts imports layers.ts (value)')
  assert.ok(dec.type.includes(join(ROOT, 'packages/core/src/device/types.ts')), 'decoder.ts imports device/types.ts (type)')
  assert.ok(!dec.value.includes(join(ROOT, 'packages/core/src/device/types.ts')))
  const gen = of('packages/core/src/generation/generate.ts')
  assert.ok(gen.type.includes(join(ROOT, 'packages/core/src/models/decoder.ts')), 'generate.ts: import type { Session }')
  assert.ok(gen.value.includes(join(ROOT, 'packages/core/src/generation/beam.ts')), 'generate.ts imports beam.ts (value)')
  const idx = of('packages/core/src/index.ts')
  assert.ok(idx.value.includes(join(ROOT, 'packages/core/src/errors.ts')), 'index.ts: export * from errors')
  assert.ok(idx.type.includes(join(ROOT, 'packages/core/src/io/types.ts')), 'index.ts: export type from io/types')
  const reg = of('packages/core/src/device/registry.ts')
  assert.ok(reg.dynamic.includes(join(ROOT, 'packages/core/src/device/wasm.ts')), 'registry.ts: import(./wasm.js) is dynamic')
})

graph('no cycle among value imports (import type and dynamic import() aside)', () => {
  const state = new Map<string, 0 | 1 | 2>() // 0 unseen, 1 on the stack, 2 done
  const stack: string[] = []
  const cycles: string[] = []
  const visit = (f: string) => {
    state.set(f, 1)
    stack.push(f)
    for (const d of imports.get(f)?.value ?? []) {
      const st = state.get(d) ?? 0
      if (st === 1) cycles.push([...stack.slice(stack.indexOf(d)), d].map(rel).join(' -> '))
      else if (st === 0) visit(d)
    }
    stack.pop()
    state.set(f, 2)
  }
  for (const f of files) if (!state.get(f)) visit(f)
  assert.equal(cycles, [], `value-import cycles:\n  ${cycles.join('\n  ')}`)
})

graph('models/ imports nothing from trace/ or the concrete devices (device/js.ts, device/wasm.ts)', () => {
  const banned = (p: string) => p.startsWith(join(ROOT, 'packages/core/src/trace') + '/') || p === join(ROOT, 'packages/core/src/device/js.ts') || p === join(ROOT, 'packages/core/src/device/wasm.ts')
  const bad: string[] = []
  for (const f of files.filter((f) => f.startsWith(join(ROOT, 'packages/core/src/models') + '/'))) {
    const i = imports.get(f)!
    for (const [kind, list] of [['value', i.value], ['type', i.type], ['dynamic', i.dynamic]] as const)
      for (const p of list) if (banned(p)) bad.push(`${rel(f)} -> ${rel(p)} (${kind})`)
  }
  assert.equal(bad, [], `models/ must not import: ${bad.join('; ')}`)
})

graph('no two generation/ files value-import each other', () => {
  const gen = files.filter((f) => f.startsWith(join(ROOT, 'packages/core/src/generation') + '/'))
  const bad: string[] = []
  for (const a of gen) for (const b of imports.get(a)!.value) if (b > a && gen.includes(b) && imports.get(b)!.value.includes(a)) bad.push(`${rel(a)} <-> ${rel(b)}`)
  assert.equal(bad, [], bad.join('; '))
})
graph.run()
