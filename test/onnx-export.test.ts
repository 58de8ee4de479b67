// ONNX export (core export/onnx.ts, `refgpt export onnx`): the exported graph run by ONNX Runtime's CPU
// execution provider (onnxruntime-node, a devDependency) against refgpt's js device and the golden
// outputs of the five fixtures — a full forward, a step with past key values, a left-padded batch through
// attention_mask, and greedy decoding with the KV cache. Without onnxruntime-node the parity tests are
// reported as skipped (never passed); the CLI and file-writing tests run everywhere.
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { argmax, decodeModelProto, exportOnnx, loadModel, readFileCapped, type Model } from '@refgpt/core'
import { MODELS, TOL, assertClose, loadGolden, modelDir, pickRows, refgpt, rejects } from './helpers.js'

type Ort = typeof import('onnxruntime-node')
let ort: Ort | null = null
let ortMissing = ''
try {
  const mod = (await import('onnxruntime-node')) as unknown as Ort & { default?: Ort }
  ort = mod.InferenceSession ? mod : mod.default ?? null
  if (!ort?.InferenceSession) throw new Error('no InferenceSession export')
} catch (e) {
  ortMissing = `onnxruntime-node cannot be loaded (${(e as Error).message.split('\n')[0]})`
}
const withOrt = (name: string) => {
  if (ort) return test
  console.log(`  SKIP ${name}: ${ortMissing}; install the devDependencies (pnpm install)`)
  return test.skip
}

const dir = mkdtempSync(join(tmpdir(), 'refgpt-onnx-'))
test.after(() => rmSync(dir, { recursive: true, force: true }))

/** The largest |Δlogit| seen per fixture, printed at the end (the parity table of the notes). */
const seen: Record<string, number> = {}
const note = (name: string, d: number) => {
  seen[name] = Math.max(seen[name] ?? 0, d)
}
test.after(() => {
  if (Object.keys(seen).length) console.log(`  onnx parity, max |Δlogit| (vs refgpt js and golden): ${Object.entries(seen).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(', ')}`)
})

/** An ORT session over an exported file, with feeds built from plain arrays. */
class Runner {
  constructor(
    readonly session: import('onnxruntime-node').InferenceSession,
    readonly model: Model,
  ) {}

  static async open(file: string, model: Model): Promise<Runner> {
    return new Runner(await ort!.InferenceSession.create(file, { executionProviders: ['cpu'], intraOpNumThreads: 1 }), model)
  }

  /**
   * One call: ids / positions [B][S], mask [B][past + S], past as returned by the previous call (or none).
   * Returns logits [B * S * V] and the present tensors to pass next.
   */
  async run(ids: number[][], mask: number[][], positions: number[][], past: Record<string, import('onnxruntime-node').Tensor> | null) {
    const a = this.model.arch, B = ids.length, S = ids[0].length
    const i64 = (rows: number[][]) => new ort!.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length])
    const feeds: Record<string, import('onnxruntime-node').Tensor> = { input_ids: i64(ids), attention_mask: i64(mask), position_ids: i64(positions) }
    for (let l = 0; l < a.nLayer; l++)
      for (const kv of ['key', 'value'])
        feeds[`past_key_values.${l}.${kv}`] = past?.[`present.${l}.${kv}`] ?? new ort!.Tensor('float32', new Float32Array(0), [B, a.nHead, 0, a.headDim])
    const out = await this.session.run(feeds)
    assert.equal(out.logits.dims, [B, S, a.nVocab])
    return { logits: out.logits.data as Float32Array, present: out }
  }

  /** Greedy decoding with the KV cache: prompt rows (left-padded with `pad`), n new ids per row. */
  async greedy(rows: number[][], n: number, pad = 0): Promise<number[][]> {
    const V = this.model.arch.nVocab, S = Math.max(...rows.map((r) => r.length))
    let ids: number[][] = rows.map((r) => [...Array(S - r.length).fill(pad), ...r])
    const mask = rows.map((r) => [...Array(S - r.length).fill(0), ...Array(r.length).fill(1)])
    // HF's position ids for a left-padded batch: cumsum(mask) - 1, with 1 on the padding
    let positions = mask.map((m) => { let p = -1; return m.map((x) => (x ? ++p : 1)) })
    const out = ids.map((r) => [...r])
    let past = null
    for (let step = 0; step < n; step++) {
      const T = ids[0].length
      const r = await this.run(ids, mask, positions, past)
      past = r.present
      const next = ids.map((_, b) => argmax(r.logits.subarray((b * T + T - 1) * V, (b * T + T) * V)))
      next.forEach((id, b) => out[b].push(id))
      // the new id's position: the real tokens before it (cumsum(mask) - 1 once its mask is 1)
      positions = mask.map((m) => [m.reduce((s, x) => s + x, 0)])
      mask.forEach((m) => m.push(1))
      ids = next.map((id) => [id])
    }
    return out
  }
}

const ones = (n: number) => Array(n).fill(1)
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i)

// --- the four Hugging Face fixtures -----------------------------------------------------------------------

for (const name of MODELS) {
  withOrt(`onnx ${name}`)(`onnx ${name}: logits within 1e-4 of refgpt js and golden (full, past key values, left-padded batch); greedy ids = golden`, async () => {
    const g = loadGolden(name)
    const model = await loadModel(modelDir(name), { device: 'js' })
    try {
      const V = model.arch.nVocab
      const file = join(dir, `${name}.onnx`)
      // gpt-neo-odd goes through the external-data path (FILE.data), the others inline
      const r = await exportOnnx(model, file, { externalData: name === 'gpt-neo-odd' })
      assert.is(r.dataFile !== null, name === 'gpt-neo-odd')
      const ort = await Runner.open(file, model)
      const s = model.createSession()

      // a full forward of p1: every row against refgpt's js device and the golden logits
      const ids: number[] = g.json.prompts.p1.ids
      const T = ids.length
      const full = (await ort.run([ids], [ones(T)], [range(T)], null)).logits
      const ref = await s.logits(ids, 0)
      note(name, assertClose(full, ref, TOL.logits, `${name} full vs refgpt js`).abs)
      note(name, assertClose(full, g.tensor('logits.p1'), TOL.logits, `${name} full vs golden`).abs)

      // prefill T-1 tokens, then the last one with past key values
      const pre = await ort.run([ids.slice(0, -1)], [ones(T - 1)], [range(T - 1)], null)
      const step = await ort.run([ids.slice(-1)], [ones(T)], [[T - 1]], pre.present)
      assert.equal(step.present['present.0.key'].dims, [1, model.arch.nHead, T, model.arch.headDim])
      note(name, assertClose(step.logits, ref.subarray((T - 1) * V), TOL.logits, `${name} step with past`).abs)

      // the golden left-padded batch (HF's attention_mask and position_ids): last-position logits
      const b = g.json.batched
      const S = b.input_ids[0].length
      const batch = (await ort.run(b.input_ids, b.attention_mask, b.position_ids, null)).logits
      const last = pickRows(batch, V, b.input_ids.map((_: unknown, i: number) => i * S + S - 1))
      note(name, assertClose(last, g.tensor(b.last_logits_tensor), TOL.logits, `${name} padded batch vs golden`).abs)

      // greedy decoding over ORT with the KV cache: the golden ids, alone and in the padded batch
      const p = g.json.greedy.p1
      const gen = await ort.greedy([ids], p.new_tokens.length)
      assert.equal(gen[0], p.sequence, `${name} greedy p1`)
      const rows = b.rows.map((k: string) => g.json.prompts[k].ids)
      const batched = await ort.greedy(rows, b.greedy.settings.max_new_tokens, b.pad_token_id)
      assert.equal(batched, b.greedy.sequences, `${name} batched greedy`)
    } finally {
      await model.dispose()
    }
  })
}

// --- ModelScope GPT-3 -------------------------------------------------------------------------------------

withOrt('onnx gpt3-ms-tiny')('onnx gpt3-ms-tiny: logits within 1e-4 of refgpt js and golden (full, past, left-padded batch of 2); greedy ids = golden', async () => {
  const name = 'gpt3-ms-tiny'
  const g = loadGolden(name)
  const model = await loadModel(modelDir(name), { device: 'js' })
  try {
    const V = model.arch.nVocab
    const file = join(dir, `${name}.onnx`)
    await exportOnnx(model, file)
    const ort = await Runner.open(file, model)
    const s = model.createSession()
    for (const [k, prompt] of (g.json.prompts as { ids: number[]; greedy_16_no_stop: number[] }[]).entries()) {
      const ids = prompt.ids, T = ids.length
      const full = (await ort.run([ids], [ones(T)], [range(T)], null)).logits
      const ref = await s.logits(ids, 0)
      note(name, assertClose(full, ref, TOL.logits, `${name} p${k} vs refgpt js`).abs)
      note(name, assertClose(full, g.tensor(`logits.p${k}`), TOL.logits, `${name} p${k} vs golden`).abs)
      if (T > 1) {
        const pre = await ort.run([ids.slice(0, -1)], [ones(T - 1)], [range(T - 1)], null)
        const step = await ort.run([ids.slice(-1)], [ones(T)], [[T - 1]], pre.present)
        note(name, assertClose(step.logits, ref.subarray((T - 1) * V), TOL.logits, `${name} p${k} step with past`).abs)
      }
      // ModelScope's greedy (top_k=1) without the eod stop: 16 ids
      const gen = await ort.greedy([ids], prompt.greedy_16_no_stop.length)
      assert.equal(gen[0].slice(T), prompt.greedy_16_no_stop, `${name} greedy p${k}`)
    }
    // a batch of 2, the short prompt left-padded: each row's last logits equal the unpadded forward's
    const [p0, p1] = [g.json.prompts[0].ids as number[], g.json.prompts[1].ids as number[]]
    const S = p1.length, pad = S - p0.length
    const batch = (await ort.run(
      [[...Array(pad).fill(0), ...p0], p1],
      [[...Array(pad).fill(0), ...ones(p0.length)], ones(S)],
      [[...Array(pad).fill(1), ...range(p0.length)], range(S)],
      null,
    )).logits
    const last0 = (await s.logits(p0, 0)).subarray((p0.length - 1) * V)
    const last1 = (await s.logits(p1, 0)).subarray((S - 1) * V)
    note(name, assertClose(batch.subarray((S - 1) * V, S * V), last0, TOL.logits, `${name} padded row`).abs)
    note(name, assertClose(batch.subarray((2 * S - 1) * V), last1, TOL.logits, `${name} full row`).abs)
  } finally {
    await model.dispose()
  }
})

// --- f16 weights, the file itself, errors ---------------------------------------------------------------

withOrt('onnx f16')('onnx --dtype f16: the graph of f16-stored weights equals refgpt with --dtype f16 (js) within 1e-4; lastLogitsOnly gives the last row', async () => {
  const name = 'gpt-neo-tiny'
  const model = await loadModel(modelDir(name), { device: 'js', dtype: 'F16' })
  try {
    const file = join(dir, `${name}.f16.onnx`)
    await exportOnnx(model, file, { dtype: 'f16' })
    const ids: number[] = loadGolden(name).json.prompts.p1.ids
    const full = (await (await Runner.open(file, model)).run([ids], [ones(ids.length)], [range(ids.length)], null)).logits
    const ref = await model.createSession().logits(ids, 0)
    assertClose(full, ref, TOL.logits, 'f16 graph vs refgpt f16')
    // lastLogitsOnly: logits [batch, 1, vocab], the last row's
    const lastFile = join(dir, `${name}.last.onnx`)
    await exportOnnx(model, lastFile, { dtype: 'f16', lastLogitsOnly: true })
    const V = model.arch.nVocab, T = ids.length
    const r = await (await Runner.open(lastFile, model)).session.run({
      input_ids: new ort!.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]),
      attention_mask: new ort!.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]),
      position_ids: new ort!.Tensor('int64', BigInt64Array.from(range(T).map(BigInt)), [1, T]),
      ...Object.fromEntries(Array.from({ length: model.arch.nLayer }, (_, l) => ['key', 'value'].map((kv) =>
        [`past_key_values.${l}.${kv}`, new ort!.Tensor('float32', new Float32Array(0), [1, model.arch.nHead, 0, model.arch.headDim])])).flat()),
    })
    assert.equal(r.logits.dims, [1, 1, V])
    assertClose(r.logits.data as Float32Array, ref.subarray((T - 1) * V), TOL.logits, 'last logits only')
  } finally {
    await model.dispose()
  }
})

test('onnx file: opset 17, the transformers.js / Optimum input and output names, metadata; --max-context cuts the position table', async () => {
  const model = await loadModel(modelDir('gpt2-tiny'), { device: 'js' })
  try {
    const file = join(dir, 'names.onnx')
    await exportOnnx(model, file, { maxContext: 16 })
    const m = decodeModelProto(readFileCapped(file, 'onnx', 2 ** 30))
    assert.equal(m.opsetImport, [{ domain: '', version: 17 }])
    const names = (v: { name: string }[]) => v.map((x) => x.name)
    assert.equal(names(m.graph.input), ['input_ids', 'attention_mask', 'position_ids', 'past_key_values.0.key', 'past_key_values.0.value', 'past_key_values.1.key', 'past_key_values.1.value'])
    assert.equal(names(m.graph.output), ['logits', 'present.0.key', 'present.0.value', 'present.1.key', 'present.1.value'])
    const wpe = m.graph.initializer.find((t) => t.name === 'wpe')!
    assert.equal(wpe.dims, [16, 32])
    // the LM head is the tied embedding: one initializer
    assert.is(m.graph.initializer.filter((t) => t.dims.length === 2 && t.dims[0] === 50257).length, 1)
    assert.ok(m.metadataProps!.some((p) => p.key === 'refgpt.family' && p.value === 'gpt2'))
  } finally {
    await model.dispose()
  }
})

test('onnx export that fails midway leaves neither FILE nor FILE.data nor a temp file; an earlier FILE is kept', async () => {
  const model = await loadModel(modelDir('gpt-neo-odd'), { device: 'js' })
  const sub = mkdtempSync(join(dir, 'fail-'))
  try {
    const file = join(sub, 'model.onnx')
    let calls = 0
    const failing = { externalData: true, onProgress: () => { if (++calls === 5) throw new Error('disk on fire') } }
    await rejects(() => exportOnnx(model, file, failing), /disk on fire/)
    assert.equal(readdirSync(sub), [])
    writeFileSync(file, 'old')
    await rejects(() => exportOnnx(model, file, { onProgress: () => { throw new Error('again') } }), /again/)
    assert.equal(readdirSync(sub), ['model.onnx'])
    assert.is(statSync(file).size, 3)
    await rejects(() => exportOnnx(model, join(sub, 'missing', 'model.onnx')), /output folder does not exist/)
    await rejects(() => exportOnnx(model, file, { maxContext: 10_000 }), /maxContext out of range/)
    await rejects(() => exportOnnx(model, file, { dtype: 'q8' as 'f32' }), /unknown dtype/)
  } finally {
    await model.dispose()
  }
})

test('refgpt export onnx: writes FILE; bad input is one line, exit 2, and nothing is written', () => {
  const sub = mkdtempSync(join(dir, 'cli-'))
  const model = modelDir('gpt2-tiny')
  const out = join(sub, 'm.onnx')
  const ok = refgpt(['export', 'onnx', '--model', model, '--out', out])
  assert.is(ok.code, 0, ok.stderr)
  assert.match(ok.stdout, /^wrote .*m\.onnx: .* gpt2 "gpt2", 2 layers, opset 17/)
  assert.ok(existsSync(out))
  rmSync(out)
  const cases: [string[], RegExp][] = [
    [['export', 'onnx', '--model', model], /missing --out FILE/],
    [['export', 'onnx', '--out', out], /missing --model/],
    [['export', 'onnx', '--model', model, '--out', out, '--dtype', 'q8'], /unknown --dtype \(expected one of f32, f16, found "q8"\)/],
    [['export', 'onnx', '--model', model, '--out', join(sub, 'nope', 'm.onnx')], /output folder does not exist/],
    [['export', 'onnx', '--model', model, '--out', sub], /cannot write a file over a folder/],
    [['export', 'onnx', '--model', model, '--out', out, '--max-context', 'x'], /bad --max-context/],
    [['export', 'onnx', '--model', model, '--out', out, '--max-context', '100000'], /maxContext out of range/],
    [['export', 'tflite', '--model', model, '--out', out], /unknown format "tflite" \(expected onnx\)/],
    [['export', 'onnx', '--model', join(sub, 'no-model'), '--out', out], /model folder not found/],
  ]
  for (const [args, expected] of cases) {
    const r = refgpt(args)
    assert.is(r.code, 2 - (/folder not found/.test(String(expected)) ? 1 : 0), `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, expected)
    assert.is(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`)
    assert.equal(readdirSync(sub), [], `nothing written by ${args.join(' ')}`)
  }
})

test.run()
