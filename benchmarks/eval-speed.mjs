// Evaluation speed (issue 11) against prefill of the same model and length, on random weights of a real
// shape (no checkpoint needed). Imports the BUILT @refgpt/core: run `node scripts/build.mjs` first.
//
//   node benchmarks/eval-speed.mjs [--shape gpt2] [--window 1024] [--docs 2] [--runs 3] [--threads N] [--json]
//
// Per run, in one process and one model:
//   prefill      session.forward of W random ids (the LM head on the last row only), chunks of min(W, 512)
//   rolling      lm-eval loglikelihood_rolling over `docs` documents of 2·W tokens (two full windows each:
//                W input tokens, all W scored): the [T, V] LM head, log-softmax, gather and argmax test on
//                the device; scored tok/s
//   lambada      requests of ~W/8 context tokens + 2 target tokens: input tok/s (vs prefill of that length)
//   choice       questions of W/16 context tokens x 4 endings of W/64 tokens (the context runs once):
//                input tok/s counts every choice's full input, as a per-request implementation runs it
// Ratios are taken per pair: a prefill of the same length, then the scoring work, back to back.
import { Scorer, loadRandomModel, rollingRequests } from '@refgpt/core'

const argv = process.argv.slice(2)
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : def
}
const shape = opt('shape', 'gpt2')
const W = Number(opt('window', '1024'))
const docs = Number(opt('docs', '2'))
const runs = Number(opt('runs', '3'))
const threads = opt('threads') === undefined ? undefined : Number(opt('threads'))
const json = argv.includes('--json')

let seed = 12345
const rand = (n) => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) % 50000)
const ids = (n) => Array.from({ length: n }, () => rand())

const t0 = performance.now()
const model = await loadRandomModel(shape, { maxContext: W, threads, maxBatchTokens: Math.min(W, 512), sequences: 2 })
const loadS = (performance.now() - t0) / 1000
const say = (s) => (json ? process.stderr : process.stdout).write(s + '\n')
say(`${shape}: ${(model.info.parameters / 1e6).toFixed(1)} M parameters, window ${W}, ${model.device.name} ${model.device.threads ?? 1} threads, load ${loadS.toFixed(1)} s`)

/** tokens/s of session.forward over n ids from position 0: a warm session (its buffers touched), best of `reps`. */
async function prefill(session, n, reps = 2, warm = true) {
  if (warm) await session.forward(ids(n), 0) // warm-up at this length (pages of the cache and buffers touched)
  let best = 0
  for (let r = 0; r < reps; r++) { // best of reps (0: only the warm-up)
    const x = ids(n)
    const t = performance.now()
    await session.forward(x, 0)
    best = Math.max(best, n / ((performance.now() - t) / 1000))
  }
  return best
}

const lamLen = Math.round(W / 8) + 2 // lambada-like: context + 2 target tokens
const ctxLen = Math.round(W / 16), endLen = Math.round(W / 64) // choice: 4 endings per context
// one session: prefill on its slot 0, the scorer on a slot of its own (same buffers, same chunk size)
const session = model.createSession({ maxBatchTokens: Math.min(W, 512) })
const scorer = new Scorer(model, { maxLength: W, session })
await scorer.score({ context: ids(1), continuation: ids(W) }) // warm-up: the [W, V] head buffers, the caches
await prefill(session, W, 0)

/** Scores fn's requests; tokens/s of what it reports. */
async function scored(fn) {
  const before = { ...scorer.stats }
  const t = performance.now()
  await fn()
  const sec = (performance.now() - t) / 1000
  const d = (k) => scorer.stats[k] - before[k]
  return { sec, scored: d('scoredTokens'), input: d('inputTokens'), computed: d('computedTokens') }
}

// Each measurement is a pair run back to back (prefill, then the same amount of scoring work), so that
// the load of a shared machine moves both; the ratios are per pair, the summary takes their medians.
const rows = []
for (let run = 0; run < runs; run++) {
  const prefW = await prefill(session, W, 1, false) // warmed once above
  // rolling perplexity: documents of 2 W tokens = two full windows each, prefix token 50256
  const roll = await scored(async () => {
    for (let d = 0; d < docs; d++) for (const req of rollingRequests(ids(2 * W), 50256, W)) await scorer.score(req)
  })
  const prefLam = await prefill(session, lamLen - 1)
  const lam = await scored(async () => {
    for (let i = 0; i < 8; i++) await scorer.score({ context: ids(lamLen - 2), continuation: ids(2) })
  })
  const prefMc = await prefill(session, ctxLen + endLen - 1)
  const mc = await scored(async () => {
    for (let q = 0; q < 4; q++) {
      const ctx = ids(ctxLen)
      for (let c = 0; c < 4; c++) await scorer.score({ context: ctx, continuation: ids(endLen) })
    }
  })
  const row = {
    run,
    prefill_tok_s: prefW,
    rolling_scored_tok_s: roll.scored / roll.sec,
    rolling_vs_prefill: roll.scored / roll.sec / prefW,
    lambada_len: lamLen - 1,
    lambada_prefill_tok_s: prefLam,
    lambada_input_tok_s: lam.input / lam.sec,
    lambada_vs_prefill: lam.input / lam.sec / prefLam,
    choice_len: ctxLen + endLen - 1,
    choice_prefill_tok_s: prefMc,
    choice_input_tok_s: mc.input / mc.sec,
    choice_run_share: mc.computed / mc.input,
    choice_vs_prefill: mc.input / mc.sec / prefMc,
  }
  rows.push(row)
  say(`run ${run}: prefill ${prefW.toFixed(1)} tok/s | rolling ${row.rolling_scored_tok_s.toFixed(1)} scored tok/s = ${row.rolling_vs_prefill.toFixed(3)} x prefill | ` +
    `lambada (${row.lambada_len}) ${row.lambada_input_tok_s.toFixed(1)} vs prefill ${prefLam.toFixed(1)} tok/s = ${row.lambada_vs_prefill.toFixed(3)} | ` +
    `choice (${row.choice_len}, ${(100 * row.choice_run_share).toFixed(0)} % of the input run) ${row.choice_input_tok_s.toFixed(1)} vs ${prefMc.toFixed(1)} tok/s = ${row.choice_vs_prefill.toFixed(3)}`)
}
scorer.dispose()
session.dispose()
const med = (k) => {
  const v = rows.map((r) => r[k]).sort((a, b) => a - b)
  return v[Math.floor(v.length / 2)]
}
// the LM head's share: at equal GFLOP/s, scoring every row can reach at most (blocks + attention) / (blocks + attention + head)
const a = model.arch
const blocks = a.nLayer * (4 * a.nEmbd * a.nEmbd + 2 * a.nEmbd * a.nInner), attn = a.nLayer * 2 * a.nEmbd * (W / 2), head = a.nEmbd * a.nVocab
const bound = (blocks + attn) / (blocks + attn + head)
const summary = { shape, window: W, threads: model.device.threads ?? 1, runs, rolling_vs_prefill: med('rolling_vs_prefill'), lambada_vs_prefill: med('lambada_vs_prefill'), choice_vs_prefill: med('choice_vs_prefill'), rolling_bound: bound, rows }
if (json) process.stdout.write(JSON.stringify(summary) + '\n')
else say(`medians: rolling ${summary.rolling_vs_prefill.toFixed(3)} (bound at equal GFLOP/s ${bound.toFixed(3)}), lambada ${summary.lambada_vs_prefill.toFixed(3)}, choice ${summary.choice_vs_prefill.toFixed(3)}`)
await model.dispose()
