#!/usr/bin/env node
// refgpt (wasm device) against ONNX Runtime (onnxruntime-node, CPU execution provider) on the SAME
// random weights: the model is made with loadRandomModel (as `refgpt bench --shape`), exported with
// core's exportOnnx to a temp folder, and both run a prefill of a prompt and a greedy decode with the
// KV cache, interleaved (refgpt, ORT, ORT, refgpt, ...) so that the noise of a shared machine falls on
// both alike. Medians of --runs, tokens/s, ORT/refgpt ratios and the weight bandwidth a decoded token
// implies (bytes of weights read per token / time, as `refgpt bench` reports it).
//
//   node benchmarks/compare-ort.mjs [--shape gpt-neo-125M] [--layers N] [--prompt-tokens 128]
//        [--new-tokens 32] [--runs 3] [--threads N] [--seed 1234] [--json]
//
// Needs a build (node scripts/build.mjs). Without onnxruntime-node it measures refgpt alone and says so.
// ORT runs with intraOpNumThreads = refgpt's threads, interOpNumThreads 1, all graph optimizations; the
// exported graph computes the logits of the last position only (exportOnnx lastLogitsOnly), as
// refgpt's forward() does. Both sides produce the same greedy ids (checked). The machine's limits
// (stream-read bandwidth, multiply-add peak: probesInChild, as `refgpt bench`) are measured before the
// model is made and after the runs; each side's figures are printed as a share of their mean.
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { argmax, exportOnnx, loadRandomModel, probesInChild, SHAPES } from '@refgpt/core'

const HELP = `Usage: node benchmarks/compare-ort.mjs [options]

  --shape NAME         random weights of a real shape (default gpt-neo-125M): ${Object.keys(SHAPES).join(', ')}
  --layers N           keep only the first N layers (quicker runs of a big shape)
  --prompt-tokens N    prefill length (default 128)
  --new-tokens N       greedy tokens decoded with the KV cache (default 32)
  --runs N             runs per side, interleaved; medians are reported (default 3)
  --threads N          refgpt's wasm threads and ORT's intraOpNumThreads (default: the number of cores)
  --seed N             weights and prompt seed (default 1234)
  --json               JSON lines only (one per metric, then one summary line)
  -h, --help           this help`

const fail = (msg) => {
  process.stderr.write(`compare-ort: error: ${msg} (see --help)\n`)
  process.exit(2)
}

function parseOptions(argv) {
  const o = { shape: 'gpt-neo-125M', 'prompt-tokens': '128', 'new-tokens': '32', runs: '3', seed: '1234' }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '-h' || a === '--help') {
      process.stdout.write(HELP + '\n')
      process.exit(0)
    }
    if (a === '--json') o.json = true
    else if (['--shape', '--layers', '--prompt-tokens', '--new-tokens', '--runs', '--threads', '--seed'].includes(a)) {
      if (argv[i + 1] === undefined) fail(`${a} needs a value`)
      o[a.slice(2)] = argv[++i]
    } else fail(`unknown option ${JSON.stringify(a)}`)
  }
  const int = (name, min) => {
    if (o[name] === undefined) return undefined
    const n = Number(o[name])
    if (!Number.isInteger(n) || n < min) fail(`bad --${name}: expected an integer >= ${min}, found ${JSON.stringify(o[name])}`)
    return n
  }
  if (!Object.hasOwn(SHAPES, o.shape)) fail(`unknown --shape ${JSON.stringify(o.shape)}: one of ${Object.keys(SHAPES).join(', ')}`)
  return {
    shape: o.shape, json: o.json === true, layers: int('layers', 1), promptTokens: int('prompt-tokens', 1),
    newTokens: int('new-tokens', 1), runs: int('runs', 1), threads: int('threads', 1) ?? os.availableParallelism?.() ?? os.cpus().length, seed: int('seed', 0),
  }
}

const median = (xs) => {
  const a = [...xs].sort((p, q) => p - q), m = a.length >> 1
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2
}
const round = (x, d = 3) => (x === null || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d)

async function loadOrt() {
  try {
    const mod = await import('onnxruntime-node')
    return mod.InferenceSession ? mod : mod.default
  } catch (e) {
    return { missing: String(e.message).split('\n')[0] }
  }
}

/** refgpt: prefill the prompt, then decode n greedy tokens; times in ms and the ids. */
async function runRefgpt(model, prompt, n) {
  const session = model.createSession({ kvCapacity: prompt.length + n })
  await session.forward(prompt.subarray(0, 1), 0) // warm-up
  const t0 = performance.now()
  let logits = await session.forward(prompt, 0)
  const prefill = performance.now() - t0
  const ids = [], step = new Int32Array(1)
  const t1 = performance.now()
  for (let i = 0; i < n; i++) {
    step[0] = argmax(logits)
    ids.push(step[0])
    logits = await session.forward(step, prompt.length + i)
  }
  const decode = performance.now() - t1
  session.dispose()
  return { prefill, decode, ids }
}

/** ORT: the same prefill and greedy decode over the exported graph, past key values fed back. */
async function runOrt(ort, session, arch, prompt, n) {
  const i64 = (values) => new ort.Tensor('int64', BigInt64Array.from(values, BigInt), [1, values.length])
  const empty = new ort.Tensor('float32', new Float32Array(0), [1, arch.nHead, 0, arch.headDim])
  const feedsFor = (ids, pos0, past) => {
    const feeds = {
      input_ids: i64(ids),
      attention_mask: i64(new Array(pos0 + ids.length).fill(1)),
      position_ids: i64(Array.from(ids, (_, i) => pos0 + i)),
    }
    for (let l = 0; l < arch.nLayer; l++)
      for (const kv of ['key', 'value']) feeds[`past_key_values.${l}.${kv}`] = past ? past[`present.${l}.${kv}`] : empty
    return feeds
  }
  await session.run(feedsFor([prompt[0]], 0, null)) // warm-up
  const t0 = performance.now()
  let out = await session.run(feedsFor(Array.from(prompt), 0, null))
  const prefill = performance.now() - t0
  const ids = []
  const t1 = performance.now()
  for (let i = 0; i < n; i++) {
    const id = argmax(out.logits.data)
    ids.push(id)
    out = await session.run(feedsFor([id], prompt.length + i, out))
  }
  const decode = performance.now() - t1
  return { prefill, decode, ids }
}

async function main() {
  const o = parseOptions(process.argv.slice(2))
  const ort = await loadOrt()
  const say = (line) => (o.json ? process.stderr : process.stdout).write(line + '\n')
  const ctx = o.promptTokens + o.newTokens
  const probeBefore = probesInChild({ threads: o.threads })
  const model = await loadRandomModel(o.shape, {
    device: 'wasm', threads: o.threads, dtype: 'F32', seed: o.seed, layers: o.layers, maxContext: ctx, maxBatchTokens: Math.min(o.promptTokens, 512),
  })
  const a = model.arch
  if (ctx > a.nPositions) fail(`prompt + new tokens exceed the model context ${a.nPositions}`)
  let s = o.seed >>> 0
  const prompt = Int32Array.from({ length: o.promptTokens }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % 50000) % a.nVocab)
  const label = `${o.shape}${o.layers ? ` (${o.layers} layers)` : ''}`
  say(`model       ${label}, random weights (seed ${o.seed}), F32, ${(model.info.parameters / 1e6).toFixed(1)} M parameters; refgpt wasm, ${model.device.threads ?? '?'} threads`)

  let session = null, tmp = null, exportS = null
  if (ort.missing) say(`onnxruntime-node not found (${ort.missing}): measuring refgpt only; pnpm install adds it (a root devDependency)`)
  else {
    tmp = mkdtempSync(join(os.tmpdir(), 'refgpt-ort-'))
    const t = performance.now()
    const r = await exportOnnx(model, join(tmp, 'model.onnx'), { lastLogitsOnly: true })
    exportS = (performance.now() - t) / 1000
    say(`export      ${r.file}${r.dataFile ? ' + .data' : ''}: ${((r.bytes + r.dataBytes) / 2 ** 20).toFixed(0)} MiB in ${exportS.toFixed(1)} s`)
    session = await ort.InferenceSession.create(r.file, {
      executionProviders: ['cpu'], intraOpNumThreads: o.threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
    })
    say(`ort         onnxruntime-node ${ort.env?.versions?.node ?? '?'}, CPU EP, intraOpNumThreads ${o.threads}`)
  }

  const sides = session ? ['refgpt', 'ort'] : ['refgpt']
  const times = { refgpt: { prefill: [], decode: [] }, ort: { prefill: [], decode: [] } }
  let refIds = null, ortIds = null
  for (let run = 0; run < o.runs; run++) {
    const order = run % 2 === 0 ? sides : [...sides].reverse() // refgpt ort | ort refgpt | ...
    for (const side of order) {
      const r = side === 'refgpt' ? await runRefgpt(model, prompt, o.newTokens) : await runOrt(ort, session, a, prompt, o.newTokens)
      times[side].prefill.push(r.prefill)
      times[side].decode.push(r.decode)
      if (side === 'refgpt') refIds = r.ids
      else ortIds = r.ids
    }
  }
  const sameIds = ortIds ? ortIds.every((id, i) => id === refIds[i]) : null
  const probeAfter = probesInChild({ threads: o.threads })
  const probes = [probeBefore, probeAfter].filter(Boolean)
  const mean = (f) => (probes.length ? probes.reduce((x, p) => x + f(p), 0) / probes.length : null)
  const stream = mean((p) => p.streamGBps), madd = mean((p) => p.maddGflops)
  const macsPerToken = a.nLayer * (4 * a.nEmbd * a.nEmbd + 2 * a.nEmbd * a.nInner) // the matmuls, as refgpt bench counts them

  const bytesPerToken = model.info.decodeBytesPerToken
  const rows = []
  const metric = (name, unit, f) => {
    const ref = f(times.refgpt), other = session ? f(times.ort) : null
    rows.push({ shape: label, metric: name, unit, refgpt: round(ref), ort: round(other), ort_over_refgpt: other === null ? null : round(other / ref) })
  }
  metric('prefill', 'tokens/s', (t) => (1000 * o.promptTokens) / median(t.prefill))
  metric('decode', 'tokens/s', (t) => (1000 * o.newTokens) / median(t.decode))
  metric('decode weight bandwidth', 'GB/s', (t) => (bytesPerToken * o.newTokens) / (median(t.decode) * 1e6))
  metric('prefill matmuls', 'GFLOP/s', (t) => (2 * macsPerToken * o.promptTokens) / (median(t.prefill) * 1e6))
  if (stream) metric('decode, share of the stream probe', 'ratio', (t) => (bytesPerToken * o.newTokens) / (median(t.decode) * 1e6) / stream)
  if (madd) metric('prefill, share of the madd peak', 'ratio', (t) => (2 * macsPerToken * o.promptTokens) / (median(t.prefill) * 1e6) / madd)
  for (const r of rows) process.stdout.write(o.json ? JSON.stringify(r) + '\n' : '')
  const summary = {
    shape: label, threads: o.threads, runs: o.runs, prompt_tokens: o.promptTokens, new_tokens: o.newTokens,
    ort: ort.missing ? null : ort.env?.versions?.node ?? 'unknown', export_s: round(exportS), same_greedy_ids: sameIds,
    decode_bytes_per_token: bytesPerToken,
    probe_stream_gb_per_s: probes.map((p) => round(p.streamGBps)), probe_madd_gflops: probes.map((p) => round(p.maddGflops)),
    refgpt_prefill_ms: times.refgpt.prefill.map((x) => round(x, 1)), refgpt_decode_ms: times.refgpt.decode.map((x) => round(x, 1)),
    ort_prefill_ms: session ? times.ort.prefill.map((x) => round(x, 1)) : null, ort_decode_ms: session ? times.ort.decode.map((x) => round(x, 1)) : null,
  }
  if (o.json) process.stdout.write(JSON.stringify(summary) + '\n')
  else {
    const w = [44, 12, 12, 12]
    const line = (cells) => cells.map((c, i) => String(c ?? '-').padEnd(w[i] ?? 10)).join('')
    say('')
    say(line(['metric', 'refgpt', 'ORT', 'ORT/refgpt']))
    for (const r of rows) say(line([`${r.metric} (${r.unit})`, r.refgpt, r.ort, r.ort_over_refgpt]))
    say('')
    say(`medians of ${o.runs} interleaved runs; prompt ${o.promptTokens} tokens, ${o.newTokens} decoded; ${(bytesPerToken / 2 ** 20).toFixed(0)} MiB of weights per decoded token`)
    say(probes.length
      ? `probes (before / after, ${o.threads ?? 'all'} threads): stream read ${probes.map((p) => p.streamGBps.toFixed(1)).join(' / ')} GB/s, multiply-add ${probes.map((p) => p.maddGflops.toFixed(1)).join(' / ')} GFLOP/s`
      : 'probes: failed (the child process did not report)')
    if (sameIds !== null) say(`greedy ids: ${sameIds ? 'the same on both sides' : 'DIFFER between refgpt and ORT'}`)
  }
  await model.dispose()
  if (tmp) rmSync(tmp, { recursive: true, force: true })
  if (sameIds === false) process.exit(1)
}

await main()
