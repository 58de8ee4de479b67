// Evaluation (issue 11): lm-evaluation-harness's definitions, checked against the golden numbers made with
// transformers (fixtures/eval: gpt-neo-tiny, max_length 128) on every device, against hand-derived windows
// and Python's own outputs (CPython's random, lm-eval's text functions), and through the CLI.
//
// Tolerances (fixtures/eval/README.md): log-prob sums and NLL sums relative 1e-5; perplexity and bits per
// byte relative 1e-4; is_greedy, greedy ids, predictions, accuracies and token ids exact.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import {
  PyRandom, Scorer, UsageError, aggregate, bootstrapStderrOfMean, choiceResult, countBytes, countWords, defaultPrefixToken,
  encodeRequest, getRollingTokenWindows, hellaswagPreprocess, lambadaSplit, loadModel, loadTokenizer, makeDisjointWindow, meanStderr,
  parseChoiceRow, parseEvalData, pyCapitalize, pyLen, rollingRequests, runTask, scoreItem, slidingRequest, slidingWindows, wikitextDetokenizer,
  type ChoiceDoc, type ChoiceItemResult, type EvalTask, type ItemResult, type LambadaItemResult, type Model, type PerplexityItemResult,
  type TokenRequest, type Tokenizer,
} from '@refgpt/core'
import { TEST_DEVICES, fixture, modelDir, refgpt, rng } from './helpers.js'

const G = JSON.parse(readFileSync(fixture('eval/golden.json'), 'utf8'))
const TEXT = readFileSync(fixture('eval/text.txt'), 'utf8')
const MODEL = modelDir('gpt-neo-tiny')
const L = G.max_length as number // 128

const SUM_RTOL = 1e-5, PPL_RTOL = 1e-4
const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300)
function closeRel(a: number, b: number, rtol: number, label: string) {
  assert.ok(rel(a, b) <= rtol, `${label}: ${a} vs ${b} (relative ${rel(a, b).toExponential(2)}, tolerance ${rtol})`)
}

// --- 1. windows: lm-eval's rolling windows and the HF sliding window --------------------------------------

const windows = suite('eval: rolling windows (lm-eval get_rolling_token_windows / make_disjoint_window) and sliding windows')

windows('a hand-made document, max_length 4, context_len 1: the windows lm-eval makes, worked out by hand', () => {
  // 7 tokens 10..16, prefix token 99, max_seq_len 4: pred_len = 4 - 1 + 1 = 4.
  // First window: [prefix] + tokens[:3] predicts tokens[:4]. Then predicted = 4, window_pred_len =
  // min(7 - 4, 4) = 3, window_end = 7: input tokens[7-4-1 : 6] = [12..15], predicts tokens[4:7] = [14, 15, 16].
  const toks = [10, 11, 12, 13, 14, 15, 16]
  assert.equal(getRollingTokenWindows(toks, 99, 4, 1), [
    [[99, 10, 11, 12], [10, 11, 12, 13]],
    [[12, 13, 14, 15], [14, 15, 16]],
  ])
  // disjoint: the context keeps len(a) - (len(b) - 1) tokens: [99] and [12, 13]
  assert.equal(getRollingTokenWindows(toks, 99, 4, 1).map(makeDisjointWindow), [
    [[99], [10, 11, 12, 13]],
    [[12, 13], [14, 15, 16]],
  ])
  // 9 tokens 0..8: a full middle window conditioned on one token, then a last window of one prediction
  // whose context fills the rest of max_length
  assert.equal(rollingRequests([0, 1, 2, 3, 4, 5, 6, 7, 8], 99, 4), [
    { context: [99], continuation: [0, 1, 2, 3] },
    { context: [3], continuation: [4, 5, 6, 7] },
    { context: [4, 5, 6, 7], continuation: [8] },
  ])
  // shorter than max_length: one window; one token; none
  assert.equal(rollingRequests([5, 6], 99, 4), [{ context: [99], continuation: [5, 6] }])
  assert.equal(rollingRequests([5], 99, 4), [{ context: [99], continuation: [5] }])
  assert.equal(rollingRequests([], 99, 4), [])
  // context_len 2 (not what loglikelihood_rolling uses, but the same function): pred_len 3
  assert.equal(getRollingTokenWindows([0, 1, 2, 3, 4, 5, 6], 99, 4, 2), [
    [[99, 0, 1, 2], [0, 1, 2, 3]],
    [[2, 3, 4, 5], [4, 5, 6]],
  ])
  assert.throws(() => getRollingTokenWindows([1], 99, 4, 0), /context_len/)
  assert.throws(() => getRollingTokenWindows([1], 99, 4, 5), /context_len/)
})

windows("lm-eval's own test case (tests/test_utils.py test_get_rolling_token_windows_v1: 34 tokens, max 10, context 1)", () => {
  const x = Array.from({ length: 34 }, (_, i) => i)
  const w = getRollingTokenWindows(x, -100, 10, 1)
  assert.equal(w, [
    [[-100, 0, 1, 2, 3, 4, 5, 6, 7, 8], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]],
    [[9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]],
    [[19, 20, 21, 22, 23, 24, 25, 26, 27, 28], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29]],
    [[23, 24, 25, 26, 27, 28, 29, 30, 31, 32], [30, 31, 32, 33]],
  ])
  // every token predicted exactly once, each window's input at most max_length, the context just before
  assert.equal(w.flatMap(([, b]) => b), x)
  for (const [a, b] of w.map(makeDisjointWindow)) {
    assert.ok(a.length + b.length - 1 <= 10)
    if (a[0] !== -100) assert.is(a[a.length - 1] + 1, b[0])
  }
})

windows('HF sliding windows: the golden windows (stride 64 and non-overlapping), every token but the first scored once', () => {
  const n = G.perplexity.n_tokens
  for (const [stride, gold] of [[64, G.perplexity.sliding], [128, G.perplexity.non_overlapping]] as const) {
    const w = slidingWindows(n, L, stride)
    assert.equal(w.map((x) => [x.begin, x.end, x.trgLen, x.first]), gold.windows.map((g: any) => [g.begin, g.end, g.trg_len, g.scored_positions[0]]), `stride ${stride}`)
    const ids = G.perplexity.ids as number[]
    const req = w.map((x) => slidingRequest(ids, x))
    assert.is(req.reduce((s, r) => s + r.continuation.length, 0), gold.n_scored)
    assert.equal(req.map((r) => r.continuation.length), gold.windows.map((g: any) => g.n_scored))
  }
  assert.equal(slidingWindows(1, 4, 2).map((x) => [x.begin, x.end, x.first]), [[0, 1, 1]]) // one token: nothing to score
  assert.throws(() => slidingWindows(10, 4, 5), /stride/)
})

windows.run()

// --- 2. text: lm-eval's functions, outputs made by the Python originals -----------------------------------

const text = suite("eval: lm-eval's text functions (outputs of the Python originals)")

text('wikitext_detokenizer, count_words (re.split on \\s+) and count_bytes on wikitext-like and edge-case text', () => {
  // [input, Python wikitext_detokenizer(input), len(re.split(r"\s+", input)), len(input.encode("utf-8"))]
  const cases: [string, string, number, number][] = [
    [' = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . He had a guest @-@ starring role on the television series The Bill in 2000 . \n',
      ' = Robert Boulter =\n\nRobert Boulter is an English film, television and theatre actor. He had a guest-starring role on the television series The Bill in 2000.\n', 34, 169],
    [' = = = Early life = = = \n The 1 @,@ 000 @.@ 5 km ( 621 mi ) road , built in the 1920s ; it was " very good " ! Was it ? Yes : 45 \u00b0 N \n',
      ' === Early life ===\nThe 1,000.5 km (621 mi) road, built in the 1920s; it was "very good"! Was it? Yes: 45\u00b0N\n', 43, 135],
    ["the players ' union said \" the team 's ( new ) coach \" [ 3 ] { x } ' quoted ' text /' 5/ and N items",
      "the players'union said \"the team's (new) coach\" [3] {x} 'quoted' text /'[0-9]/ and 1 items", 29, 100],
    ["a ( b\n c ) d \" e\n\" f ' g\u00a0' \u3000x\u001cy  z\u0085w\ufeffv ", "a (b\nc) d \"e\" f 'g' \u3000x\u001cy  z\u0085w\ufeffv ", 18, 45],
    ['', '', 1, 0],
    ['   leading and trailing   ', '   leading and trailing   ', 5, 26],
    ["( ) [ ] { } \" \" ' ' ( ( nested ) ) = = heading = =", "() [] {} \"\" '' (( nested) ) == heading ==", 20, 50],
  ]
  for (const [input, detok, words, bytes] of cases) {
    assert.is(wikitextDetokenizer(input), detok, JSON.stringify(input))
    assert.is(countWords(input), words, `words of ${JSON.stringify(input)}`)
    assert.is(countBytes(input), bytes, `bytes of ${JSON.stringify(input)}`)
  }
  assert.is(countBytes(TEXT), G.perplexity.n_utf8_bytes)
})

text('hellaswag preprocess and str.capitalize / len as Python computes them', () => {
  const pre: [string, string][] = [
    ['  Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. [title] Then, the man continues removing the snow on his car. [step] The [header] man [x]  ok  ',
      'Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.. Then, the man continues removing the snow on his car. The man  ok'],
    ['Home and Garden: [title] How to clean [step] Fill a bucket.\r\n [title] Rinse [sub] again]  ', 'Home and Garden:. How to clean Fill a bucket.\r\n. Rinse again]'],
    ['\u0085\u001f text \ufeff', 'text \ufeff'],
    ['a [b\nc] d [e\u2028f] g', 'a [b\nc] d g'],
  ]
  for (const [input, want] of pre) assert.is(hellaswagPreprocess(input), want, JSON.stringify(input))
  const cap: [string, string, number][] = [
    ['then, the man writes', 'Then, the man writes', 20], ['THE MAN. He Is', 'The man. he is', 14], ['\u00dftra\u00dfe', 'Sstra\u00dfe', 6],
    ['\u00e9COLE', '\u00c9cole', 5], ['', '', 0], ['1st Place', '1st place', 9], ['\u01c6a', '\u01c5a', 2], ['\u{1F600}x', '\u{1F600}x', 2],
  ]
  for (const [input, want, len] of cap) {
    assert.is(pyCapitalize(input), want, JSON.stringify(input))
    assert.is(pyLen(input), len, `len ${JSON.stringify(input)}`)
  }
})

text.run()

// --- 3. data formats: one example line each -------------------------------------------------------------

const formats = suite('eval: data formats (one example line per format) and bad lines')

const EXAMPLES: Record<string, string> = {
  hellaswag: '{"activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.", "ctx_b": "then", "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.", ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."], "label": "3"}',
  piqa: '{"goal": "When boiling butter, when it\'s ready, you can", "sol1": "Pour it onto a plate", "sol2": "Pour it into a jar", "label": 1}',
  winogrande: '{"sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.", "option1": "Sarah", "option2": "Maria", "answer": "1"}',
  arc: '{"id": "Mercury_SC_415702", "question": "George wants to warm his hands quickly by rubbing them. Which skin surface will produce the most heat?", "choices": {"text": ["dry palms", "wet palms", "palms covered with oil", "palms covered with lotion"], "label": ["A", "B", "C", "D"]}, "answerKey": "A"}',
  generic: '{"context": "The capital of France is", "choices": ["Paris", "Rome"], "gold": 0}',
}

formats('each multiple-choice format: the requests, the choices acc_norm divides by, and gold', () => {
  const parse = (f: keyof typeof EXAMPLES) => parseChoiceRow(JSON.parse(EXAMPLES[f]), f as any, 'x.jsonl:1')
  const hs = parse('hellaswag')
  const query = 'Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. Then'
  assert.equal(hs.requests.map((r) => r.context), [query, query, query, query])
  assert.is(hs.requests[3].continuation, ' , the man continues removing the snow on his car.')
  assert.is(hs.choices[0], ', the man adds wax to the windshield and cuts it.')
  assert.is(hs.gold, 3)
  // wikiHow artifacts: [title] -> ". ", [tags] dropped (lm-eval's preprocess, here on context and endings)
  const wh = parseChoiceRow({ activity_label: 'Home and Garden', ctx_a: '[header] How to clean a cast iron skillet [title] Rinse the skillet with hot water.', ctx_b: 'scrub it', endings: ['[substeps] Use a stiff brush. [title] Dry it.', ' Put it  in the oven.'], label: 0 }, 'hellaswag', 'x')
  assert.is(wh.requests[0].context, 'Home and Garden: How to clean a cast iron skillet. Rinse the skillet with hot water. Scrub it')
  assert.equal(wh.choices, [' Use a stiff brush.. Dry it.', 'Put it in the oven.'])

  const pq = parse('piqa')
  assert.equal(pq.requests, [
    { context: "Question: When boiling butter, when it's ready, you can\nAnswer:", continuation: ' Pour it onto a plate' },
    { context: "Question: When boiling butter, when it's ready, you can\nAnswer:", continuation: ' Pour it into a jar' },
  ])
  assert.is(pq.gold, 1)

  const wg = parse('winogrande') // partial scoring: two contexts, one continuation
  assert.equal(wg.requests, [
    { context: 'Sarah was a much better surgeon than Maria so Sarah', continuation: ' always got the harder cases.' },
    { context: 'Sarah was a much better surgeon than Maria so Maria', continuation: ' always got the harder cases.' },
  ])
  assert.equal(wg.choices, wg.requests.map((r) => r.context))
  assert.is(wg.gold, 0)

  const arc = parse('arc')
  assert.is(arc.requests[0].context, 'Question: George wants to warm his hands quickly by rubbing them. Which skin surface will produce the most heat?\nAnswer:')
  assert.equal(arc.requests.map((r) => r.continuation), [' dry palms', ' wet palms', ' palms covered with oil', ' palms covered with lotion'])
  assert.is(arc.gold, 0)

  const gen = parse('generic')
  assert.equal(gen.requests, [{ context: 'The capital of France is', continuation: ' Paris' }, { context: 'The capital of France is', continuation: ' Rome' }])
  assert.equal([gen.choices, gen.gold], [['Paris', 'Rome'], 0])
})

formats('lambada split, perplexity files, and one-line errors naming FILE:LINE', () => {
  assert.equal(lambadaSplit('the cat sat on the mat'), { context: 'the cat sat on the', target: ' mat' })
  assert.equal(lambadaSplit('word'), { context: '', target: ' word' })
  const lam: EvalTask = { kind: 'lambada', name: 'lambada' }
  const docs = parseEvalData('{"text": "a b c"}\n\n{"text": "d e"}\n', 'l.jsonl', lam)
  assert.equal(docs, [{ index: 0, line: 1, text: 'a b c' }, { index: 1, line: 3, text: 'd e' }])
  const ppl: EvalTask = { kind: 'perplexity', name: 'p', mode: 'rolling' }
  assert.equal(parseEvalData('one\n\ndocument', 'doc.txt', ppl), [{ index: 0, text: 'one\n\ndocument' }])
  assert.equal(parseEvalData('{"page": "x"}\n{"text": "y"}', 'w.jsonl', ppl).map((d: any) => d.text), ['x', 'y'])
  const bad = (content: string, task: EvalTask, re: RegExp) => {
    try {
      parseEvalData(content, 'data.jsonl', task)
    } catch (e) {
      assert.instance(e, UsageError)
      assert.match((e as Error).message, re)
      assert.not.match((e as Error).message, /\n/)
      return
    }
    assert.unreachable(`no error for ${JSON.stringify(content)}`)
  }
  bad('{"text": "a b"}\n{"text": "a b"\n', lam, /^data\.jsonl:2: invalid JSON/)
  bad('{"txt": "a"}', lam, /^data\.jsonl:1: missing field "text"/)
  bad('[1, 2]', lam, /data\.jsonl:1: the line is not a JSON object/)
  bad('\n\n', lam, /no items/)
  const ch = (format: any): EvalTask => ({ kind: 'choice', name: 'c', format })
  bad('{"context": "x", "choices": ["a"], "gold": 1}', ch('generic'), /data\.jsonl:1: bad "gold" \(expected an index 0 \.\. 0/)
  bad('{"context": "x", "choices": [], "gold": 0}', ch('generic'), /data\.jsonl:1: field "choices" is not a non-empty array/)
  bad('{"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}', ch('winogrande'), /data\.jsonl:1: the winogrande sentence has no "_"/)
  bad('{"goal": "g", "sol1": "a", "sol2": "b", "label": 2}', ch('piqa'), /data\.jsonl:1: bad "label"/)
  bad('{"question": "q", "choices": {"text": ["a"], "label": ["A"]}, "answerKey": "B"}', ch('arc'), /data\.jsonl:1: "answerKey" is not one of choices\.label/)
  bad('{"activity_label": "a", "ctx_a": "b", "endings": ["x"], "label": 0}', ch('hellaswag'), /data\.jsonl:1: missing field "ctx_b"/)
})

formats.run()

// --- 4. metrics: lm-eval's aggregations, stderrs and CPython's generator --------------------------------

const metrics = suite("eval: lm-eval's metrics, stderrs (CPython's random for the bootstrap) and aggregate()")

metrics('PyRandom is CPython random.Random: seed(int), random(), choices()', () => {
  // python3 -c "import random; r = random.Random(0); print(r.random(), r.random())" etc.
  const r = new PyRandom(0)
  assert.is(r.random(), 0.8444218515250481)
  assert.is(r.random(), 0.7579544029403025)
  assert.equal(new PyRandom(7).choices([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 10), [4, 2, 7, 1, 6, 4, 1, 6, 1, 5])
  assert.is(new PyRandom(2 ** 40 + 5).random(), 0.5043802970418443) // a two-word key
})

metrics('lambada stderrs equal lm-eval\'s: bootstrap of perplexity (100000 and 2500 iterations) and mean_stderr of acc', () => {
  // Expected values: lm-eval's bootstrap_stderr / sample_stddev / mean_stderr (lm_eval/api/metrics.py @ ad38dcd,
  // the single-process path: for i in range(iters // 1000): rnd = random.Random(i); 1000 x
  // perplexity(rnd.choices(xs, k=len(xs)))) run by CPython 3.11 on the golden sum_logprob values.
  const xs = G.lambada.items.map((i: any) => i.sum_logprob)
  const ppl = (m: number) => Math.exp(-m)
  assert.is(bootstrapStderrOfMean(ppl, xs, 100000), 160219841.1747518)
  assert.is(bootstrapStderrOfMean(ppl, xs, 2500), 104376473.68553072)
  assert.is(meanStderr(G.lambada.items.map((i: any) => (i.is_greedy ? 1 : 0))), 0.06882472016116853)
})

metrics('aggregate: order and splitting do not change a metric; duplicates and foreign items are refused', () => {
  const task: EvalTask = { kind: 'choice', name: 'c', format: 'generic' }
  const r = rng(5)
  const items = Array.from({ length: 40 }, (_, i) => choiceResult(i, i % 3, [r() * -10, r() * -10, r() * -10], [3, 5, 4]))
  const whole = aggregate(task, items)
  const shuffled = [...items].sort(() => r() - 0.5)
  const parts = [shuffled.slice(0, 13), shuffled.slice(13, 29), shuffled.slice(29)]
  assert.equal(aggregate(task, parts.flat()), whole)
  assert.is(whole.n, 40)
  assert.is(whole.metrics.acc.value, items.filter((x) => x.pred === x.gold).length / 40)
  assert.throws(() => aggregate(task, [...items, items[7]]), /item 7 appears twice/)
  assert.throws(() => aggregate({ kind: 'lambada', name: 'l' }, items), /another task kind/)
  assert.throws(() => aggregate(task, []), /no items/)
  // one item: no stderr (lm-eval: "N/A" when len(items) <= 1); winogrande reports acc only
  assert.is(aggregate(task, [items[0]]).metrics.acc.stderr, null)
  assert.equal(Object.keys(aggregate({ kind: 'choice', name: 'w', format: 'winogrande' }, items).metrics), ['acc'])
  // np.argmax: first index on ties
  assert.equal([choiceResult(0, 1, [-1, -1, -2], [1, 1, 1]).pred, choiceResult(0, 1, [-2, -4, -9], [2, 4, 9]).predNorm], [0, 0])
})

metrics.run()

// --- 5. the golden, on every device -------------------------------------------------------------------------

/** An independent score: a fresh session's every-row logits, float64 log-softmax and argmax on the host. */
async function referenceScore(model: Model, req: TokenRequest, maxLength: number) {
  const whole = [...req.context, ...req.continuation]
  const inp = whole.slice(-(maxLength + 1)).slice(0, -1)
  const s = model.createSession({ maxBatchTokens: 64 })
  const logits = await s.logits(inp, 0)
  s.dispose()
  const V = model.arch.nVocab
  let ll = 0
  const greedy: number[] = [], margins: number[] = []
  req.continuation.forEach((target, i) => {
    const row = inp.length - req.continuation.length + i
    let m = -Infinity, arg = 0, second = -Infinity
    for (let v = 0; v < V; v++) {
      const x = logits[row * V + v]
      if (x > m) {
        second = m
        m = x
        arg = v
      } else if (x > second) second = x
    }
    let sum = 0
    for (let v = 0; v < V; v++) sum += Math.exp(logits[row * V + v] - m)
    ll += logits[row * V + target] - m - Math.log(sum)
    greedy.push(arg)
    margins.push(m - second)
  })
  return { ll, greedy, margins, inp }
}

for (const device of TEST_DEVICES) {
  const gold = suite(`eval: golden (gpt-neo-tiny, max_length 128) on ${device}`)
  let model: Model, tok: Tokenizer, scorer: Scorer, prefixToken: number
  gold.before(async () => {
    model = await loadModel(MODEL, { device })
    tok = loadTokenizer(MODEL)
    scorer = new Scorer(model, { maxLength: L })
    prefixToken = defaultPrefixToken(model.arch, tok)
  })
  gold.after(async () => {
    scorer.dispose()
    await model.dispose()
  })

  gold('session.logProbs(…, { greedy: true }): the same log-probs, and 1 exactly where the target is the row\'s argmax', async () => {
    const ids = G.perplexity.ids.slice(0, 40) as number[]
    const s = model.createSession({ maxBatchTokens: 16 })
    const logits = await s.logits(ids, 0)
    const V = model.arch.nVocab
    const argmax = ids.map((_, t) => {
      let a = 0
      for (let v = 1; v < V; v++) if (logits[t * V + v] > logits[t * V + a]) a = v
      return a
    })
    const targets = ids.map((id, t) => (t % 3 === 0 ? argmax[t] : t % 7 === 0 ? -1 : id))
    const plain = await s.logProbs(ids, { targets })
    const both = await s.logProbs(ids, { targets, greedy: true })
    assert.equal(Array.from(both.logprobs), Array.from(plain))
    assert.equal(Array.from(both.greedy), targets.map((tg, t) => (tg >= 0 && tg === argmax[t] ? 1 : 0)))
    assert.ok(both.greedy.filter((g) => g === 1).length >= 14)
    const next = await s.logProbs(ids.slice(0, 5), { greedy: true }) // default targets: the next ids
    assert.equal([next.logprobs.length, next.greedy.length], [4, 4])
    s.dispose()
  })

  gold('perplexity: sliding (stride 64) and non-overlapping windows, per window and totals; bits per byte', async () => {
    const P = G.perplexity
    assert.equal(tok.encode(TEXT), P.ids)
    for (const [stride, g, bpb] of [[64, P.sliding, P.bits_per_byte], [128, P.non_overlapping, P.bits_per_byte_non_overlapping]] as const) {
      const task: EvalTask = { kind: 'perplexity', name: 'p', mode: 'sliding', stride }
      const r = (await scoreItem(scorer, task, { index: 0, text: TEXT }, { tokenizer: tok, prefixToken })) as PerplexityItemResult
      assert.is(r.windows.length, g.windows.length)
      r.windows.forEach((w, i) => {
        const gw = g.windows[i]
        assert.equal([w.begin, w.end, w.tokens], [gw.begin, gw.end, gw.n_scored], `stride ${stride} window ${i}`)
        closeRel(-w.loglikelihood, gw.nll_sum, SUM_RTOL, `stride ${stride} window ${i} nll_sum`)
        closeRel(-w.loglikelihood / w.tokens, gw.nll_mean_hf_loss, SUM_RTOL, `stride ${stride} window ${i} HF loss`)
      })
      assert.is(r.tokens, g.n_scored)
      closeRel(-r.loglikelihood, g.total_nll, SUM_RTOL, `stride ${stride} total_nll`)
      const agg = aggregate(task, [r])
      closeRel(agg.metrics.token_perplexity.value, g.ppl, PPL_RTOL, `stride ${stride} ppl`)
      closeRel(agg.metrics.bits_per_byte.value, bpb, PPL_RTOL, `stride ${stride} bits_per_byte`)
      assert.equal([agg.totals.bytes, agg.totals.words], [P.n_utf8_bytes, TEXT.split(/\s+/).length])
      closeRel(agg.metrics.byte_perplexity.value, 2 ** bpb, PPL_RTOL, `stride ${stride} byte_perplexity = 2^bpb`)
    }
  })

  gold('LAMBADA: all 20 items (token log-probs, sums, greedy ids, is_greedy, truncation), accuracy and perplexity', async () => {
    const task: EvalTask = { kind: 'lambada', name: 'lambada' }
    const items = G.lambada.items
    const docs = items.map((it: any, i: number) => ({ index: i, text: it.context + it.target }))
    const results = (await runTask(scorer, task, docs, { tokenizer: tok, prefixToken })) as LambadaItemResult[]
    for (let i = 0; i < items.length; i++) {
      const it = items[i], r = results[i]
      const req = encodeRequest(tok, it.context, it.target, prefixToken)
      assert.equal([req.context, req.continuation], [it.context_ids, it.target_ids], `item ${i} ids`)
      assert.equal(r.targetIds, it.target_ids)
      assert.is(r.truncated, it.truncated_tokens, `item ${i} truncated`)
      r.tokenLogprobs.forEach((lp, j) => assert.ok(Math.abs(lp - it.token_logprobs[j]) <= SUM_RTOL * Math.max(1, Math.abs(it.token_logprobs[j])), `item ${i} token ${j}: ${lp} vs ${it.token_logprobs[j]}`))
      closeRel(r.loglikelihood, it.sum_logprob, SUM_RTOL, `item ${i} sum_logprob`)
      assert.is(r.isGreedy, it.is_greedy, `item ${i} is_greedy`)
      assert.equal(r.greedy, it.greedy_ids.map((g: number, j: number) => g === it.target_ids[j]), `item ${i} greedy flags`)
      // the greedy ids themselves, from the every-row logits of the same input
      const ref = await referenceScore(model, req, L)
      assert.is(ref.inp.length, it.input_len)
      assert.equal(ref.greedy, it.greedy_ids, `item ${i} greedy_ids`)
    }
    const agg = aggregate(task, results)
    assert.is(agg.metrics.acc.value, G.lambada.accuracy)
    closeRel(agg.metrics.perplexity.value, G.lambada.perplexity_lmeval, PPL_RTOL, 'perplexity (lm-eval: per item)')
    closeRel(Math.exp(-agg.totals.loglikelihood / agg.totals.target_tokens), G.lambada.perplexity_per_token, PPL_RTOL, 'perplexity per token')
    assert.is(agg.totals.target_tokens, G.lambada.n_target_tokens)
    assert.is(agg.metrics.acc.stderr, 0.06882472016116853)
  })

  gold('multiple choice: all 15 items x 4 endings (sums, acc, acc_norm); the context runs once per question', async () => {
    const task: EvalTask = { kind: 'choice', name: 'mc', format: 'generic' }
    const items = G.multiple_choice.items
    const docs: ChoiceDoc[] = items.map((it: any, i: number) =>
      parseChoiceRow({ context: it.context, choices: it.choices.map((c: any) => c.ending), gold: it.gold }, 'generic', 'golden', i))
    const before = { ...scorer.stats }
    const results = (await runTask(scorer, task, docs, { tokenizer: tok, prefixToken })) as ChoiceItemResult[]
    for (let i = 0; i < items.length; i++) {
      const it = items[i], r = results[i]
      it.choices.forEach((c: any, j: number) => {
        assert.equal(encodeRequest(tok, it.context, c.continuation, prefixToken).continuation, c.continuation_ids)
        closeRel(r.loglikelihoods[j], c.sum_logprob, SUM_RTOL, `item ${i} choice ${j} sum_logprob`)
        assert.is(r.lengths[j], c.n_bytes)
        assert.is(r.truncated[j], c.truncated_tokens, `item ${i} choice ${j} truncated`)
      })
      assert.equal([r.pred, r.predNorm], [it.pred_acc, it.pred_acc_norm], `item ${i} predictions`)
    }
    const agg = aggregate(task, results)
    assert.equal([agg.metrics.acc.value, agg.metrics.acc_norm.value], [G.multiple_choice.acc, G.multiple_choice.acc_norm])
    // prefix sharing: every choice after the first of an untruncated question re-runs only its own tokens
    const ran = scorer.stats.computedTokens - before.computedTokens, seen = scorer.stats.inputTokens - before.inputTokens
    const shared = items.slice(0, -1).reduce((s: number, it: any) => s + 3 * (it.context_ids.length - 1), 0)
    assert.ok(seen - ran >= shared, `shared ${seen - ran} tokens, expected at least ${shared}`)
  })

  gold('rolling perplexity, winogrande partial scoring and truncated requests equal an independent every-row computation; wikitext counts; a scorer on a shared session', async () => {
    const small = new Scorer(model, { maxLength: 32 })
    const ids = G.perplexity.ids.slice(0, 150) as number[]
    const reqs = rollingRequests(ids, prefixToken, 32)
    assert.equal(reqs.map((r) => r.continuation.length), [32, 32, 32, 32, 22])
    const wg = parseChoiceRow(JSON.parse(EXAMPLES.winogrande), 'winogrande', 'x')
    const hs = parseChoiceRow(JSON.parse(EXAMPLES.hellaswag), 'hellaswag', 'x')
    const all = [...reqs, ...[...wg.requests, ...hs.requests].map((r) => encodeRequest(tok, r.context, r.continuation, prefixToken)),
      { context: ids.slice(0, 60), continuation: ids.slice(60, 63) }] // 30 tokens cut from the left
    for (const req of all) {
      const got = await small.score(req)
      const ref = await referenceScore(model, req, 32)
      closeRel(got.loglikelihood, ref.ll, SUM_RTOL, `request of ${req.context.length} + ${req.continuation.length} tokens`)
      ref.margins.forEach((m, i) => {
        if (m > 1e-3) assert.is(got.greedy[i] === 1, ref.greedy[i] === req.continuation[i])
      })
    }
    // the whole rolling document through the task runner: every token scored once
    const task: EvalTask = { kind: 'perplexity', name: 'r', mode: 'rolling' }
    const doc = tok.decode(ids)
    const r = (await scoreItem(small, task, { index: 0, text: doc }, { tokenizer: tok, prefixToken })) as PerplexityItemResult
    assert.is(r.tokens, tok.encode(doc).length)
    small.dispose()
    // wikitext: the detokenized text is scored, words and bytes are counted on the original page
    const page = ' = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . He had a guest @-@ starring role . \n'
    const wt: EvalTask = { kind: 'perplexity', name: 'wikitext', mode: 'rolling', detokenize: 'wikitext' }
    const w = (await scoreItem(scorer, wt, { index: 0, text: page }, { tokenizer: tok, prefixToken })) as PerplexityItemResult
    assert.equal([w.tokens, w.words, w.bytes], [tok.encode(wikitextDetokenizer(page)).length, countWords(page), countBytes(page)])
    // a scorer on a slot of the caller's session: the same numbers; dispose() returns the slot only
    const session = model.createSession({ maxBatchTokens: 32 })
    const shared = new Scorer(model, { maxLength: 32, session }), own = new Scorer(model, { maxLength: 32, maxBatchTokens: 32 })
    await session.forward(ids.slice(0, 20), 0) // the caller's slot 0 in use meanwhile
    for (const req of reqs.slice(0, 2)) assert.is((await shared.score(req)).loglikelihood, (await own.score(req)).loglikelihood)
    assert.is(session.slotsInUse, 2)
    shared.dispose()
    own.dispose()
    assert.is(session.slotsInUse, 1)
    session.dispose()
  })

  gold.run()
}

// --- 6. the CLI ------------------------------------------------------------------------------------------------

const cli = suite('eval: refgpt eval (table, --json, --limit, --log-samples, several tasks, bad input)')
const tmp = mkdtempSync(join(tmpdir(), 'refgpt-eval-'))
const lambadaFile = join(tmp, 'lambada.jsonl'), mcFile = join(tmp, 'mc.jsonl'), textFile = fixture('eval/text.txt')
writeFileSync(lambadaFile, G.lambada.items.map((it: any) => JSON.stringify({ text: it.context + it.target })).join('\n') + '\n')
writeFileSync(mcFile, G.multiple_choice.items.map((it: any) => JSON.stringify({ context: it.context, choices: it.choices.map((c: any) => c.ending), gold: it.gold })).join('\n') + '\n')

/** The library's results for the same runs (wasm; results do not depend on the thread count). */
async function libraryResults(task: EvalTask, file: string, limit?: number, maxLength = L) {
  const model = await loadModel(MODEL, { device: 'wasm', maxContext: maxLength })
  const tok = loadTokenizer(MODEL)
  const scorer = new Scorer(model, { maxLength })
  let docs = parseEvalData(readFileSync(file, 'utf8'), file, task)
  if (limit) docs = docs.slice(0, limit)
  const items: ItemResult[] = await runTask(scorer, task, docs, { tokenizer: tok, prefixToken: defaultPrefixToken(model.arch, tok) })
  scorer.dispose()
  await model.dispose()
  return { items, agg: aggregate(task, items) }
}

cli('lambada: the table, and --json values equal the library\'s', async () => {
  const t = refgpt(['eval', 'lambada', '--model', MODEL, '--data', lambadaFile, '--no-progress'])
  assert.is(t.code, 0, t.stderr)
  assert.is(t.stderr, '')
  const lines = t.stdout.split('\n')
  assert.match(lines[0], /^\|Task +\|Metric +\| +\| +Value\| +\| +Stderr\| *n\|$/)
  assert.match(t.stdout, /\|lambada\|perplexity\|↓\|1938361\.\d{4}\|±\|\d+\.\d{4}\|20\|/)
  assert.match(t.stdout, /\|lambada\|acc +\|↑\| +0\.1000\|±\| +0\.0688\|20\|/)
  assert.match(t.stdout, /20 items in .* scored at .* tok\/s/)
  const j = refgpt(['eval', 'lambada', '--model', MODEL, '--data', lambadaFile, '--json', '--no-progress'])
  assert.is(j.code, 0, j.stderr)
  const out = JSON.parse(j.stdout)
  const lib = await libraryResults({ kind: 'lambada', name: 'lambada' }, lambadaFile)
  assert.equal(out.tasks.lambada.metrics, Object.fromEntries(Object.entries(lib.agg.metrics).map(([k, m]) => [k, { value: m.value, stderr: m.stderr }])))
  assert.equal(out.tasks.lambada.totals, lib.agg.totals)
  assert.equal([out.max_length, out.prefix_token, out.tasks.lambada.n, out.bootstrap_iters], [128, 50256, 20, 100000])
  assert.ok(out.speed.scored_tokens === 26 && out.speed.input_tokens_per_s > 0)
})

cli('several tasks in one run with --limit and --log-samples; progress lines on stderr', async () => {
  const samples = join(tmp, 'samples.jsonl')
  const r = refgpt(['eval', '--model', MODEL, '--tasks', `lambada=${lambadaFile},choice=${mcFile},text=${textFile}`, '--limit', '5', '--max-length', '64', '--json', '--log-samples', samples])
  assert.is(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout)
  assert.equal(Object.keys(out.tasks), ['lambada', 'choice', 'text'])
  assert.equal([out.tasks.lambada.n, out.tasks.choice.n, out.tasks.text.n], [5, 5, 1])
  assert.match(r.stderr, /lambada: 5\/5 items, [\d.]+ items\/s, ETA 0:00\n/)
  assert.match(r.stderr, /text: 11\/11 windows, [\d.]+ windows\/s, ETA 0:00\n/) // a document's progress counts its windows
  const libChoice = await libraryResults({ kind: 'choice', name: 'choice', format: 'generic' }, mcFile, 5, 64)
  assert.is(out.tasks.choice.metrics.acc.value, libChoice.agg.metrics.acc.value)
  assert.is(out.tasks.choice.metrics.acc_norm.stderr, libChoice.agg.metrics.acc_norm.stderr)
  const libText = await libraryResults({ kind: 'perplexity', name: 'text', mode: 'rolling' }, textFile, undefined, 64)
  assert.is(out.tasks.text.metrics.bits_per_byte.value, libText.agg.metrics.bits_per_byte.value)
  assert.is(out.tasks.text.metrics.word_perplexity.stderr, null)
  assert.is(out.tasks.text.totals.tokens, G.perplexity.n_tokens) // rolling: every token, the first one given the prefix token
  const rows = readFileSync(samples, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  assert.equal(rows.map((x) => [x.task, x.index]), [['lambada', 0], ['lambada', 1], ['lambada', 2], ['lambada', 3], ['lambada', 4],
    ['choice', 0], ['choice', 1], ['choice', 2], ['choice', 3], ['choice', 4], ['text', 0]])
  assert.equal([rows[0].line, rows[0].target, rows[0].isGreedy, rows[0].targetIds], [1, G.lambada.items[0].target, false, G.lambada.items[0].target_ids])
  assert.equal(rows[5].loglikelihoods, libChoice.items[0].kind === 'choice' ? libChoice.items[0].loglikelihoods : null)
  assert.equal(rows[5].requests[0], { context: G.multiple_choice.items[0].context, continuation: G.multiple_choice.items[0].choices[0].continuation })
  assert.is(rows[10].windows.length, Math.ceil(G.perplexity.n_tokens / 64))
})

cli('perplexity --stride: the golden sliding numbers in the table; bad input exits non-zero with one line and no stdout', () => {
  const r = refgpt(['eval', 'perplexity', '--model', MODEL, '--data', textFile, '--stride', '64', '--max-length', '128', '--no-progress', '--device', 'js'])
  assert.is(r.code, 0, r.stderr)
  const bpb = Number(/\|perplexity\|bits_per_byte +\|↓\| *([\d.]+)\|±\| +N\/A\|1\|/.exec(r.stdout)?.[1])
  closeRel(bpb, G.perplexity.bits_per_byte, 1e-4, 'bits_per_byte in the table')
  const badLine = join(tmp, 'bad.jsonl')
  writeFileSync(badLine, '{"text": "a b"}\n{"text": 3}\n')
  const cases: [string[], RegExp][] = [
    [['eval', 'lambada', '--model', MODEL, '--data', badLine], /bad\.jsonl:2: field "text" is not a string/],
    [['eval', 'lambada', '--model', MODEL, '--data', join(tmp, 'missing.jsonl')], /missing\.jsonl: data file not found/],
    [['eval', 'lambada', '--model', MODEL], /missing --data/],
    [['eval', 'lambada', '--model', MODEL, '--data', lambadaFile, '--stride', '4'], /--stride applies to `refgpt eval perplexity` only/],
    [['eval', 'perplexity', '--model', MODEL, '--data', textFile, '--stride', '4', '--rolling'], /--rolling and --stride together/],
    [['eval', 'perplexity', '--model', MODEL, '--data', textFile, '--stride', '200', '--max-length', '128'], /--stride larger than --max-length/],
    [['eval', 'perplexity', '--model', MODEL, '--data', textFile, '--max-length', '4096'], /--max-length longer than the model context \(expected at most 128, found 4096\)/],
    [['eval', 'choice', '--model', MODEL, '--data', mcFile, '--format', 'mmlu'], /unknown --format/],
    [['eval', 'choice', '--model', MODEL, '--data', mcFile, '--limit', '0'], /bad --limit/],
    [['eval', '--model', MODEL, '--tasks', `squad=${mcFile}`], /unknown task "squad" in --tasks/],
    [['eval', '--model', MODEL, '--tasks', `lambada=${lambadaFile},lambada=${lambadaFile}`], /given twice/],
    [['eval', '--model', MODEL], /no task/],
    [['eval', 'lambada', '--model', MODEL, '--data', lambadaFile, '--log-samples', join(tmp, 'no', 'such', 'dir', 'x.jsonl')], /--log-samples: no such folder/],
    [['eval', 'choice', '--model', MODEL, '--data', lambadaFile], /lambada\.jsonl:1: missing field "choices" \(expected a generic row such as/],
    [['eval', 'summarize', '--model', MODEL, '--data', lambadaFile], /unknown task "summarize"/],
  ]
  for (const [args, re] of cases) {
    const b = refgpt(args)
    assert.ok(b.code !== 0, `${args.join(' ')}: exit code ${b.code}`)
    assert.is(b.stdout, '', `${args.join(' ')}: nothing on stdout`)
    const lines = b.stderr.trim().split('\n')
    assert.is(lines.length, 1, `${args.join(' ')}: one line, got ${JSON.stringify(b.stderr)}`)
    assert.match(lines[0], /^refgpt: error: /)
    assert.match(lines[0], re, args.join(' '))
  }
})

cli.run()
