// The default models (issue 12): the two models refgpt trained on Debian's fortunes load, beat a count-based
// bigram model on a committed held-out sample, keep their greedy output, and are what the CLI and
// pipeline() use when no model is named.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { DEFAULT_MODEL_NAMES, defaultModelDir, loadModel, loadTokenizer, pipeline } from '@refgpt/core'
import { fixture, refgpt } from './helpers.js'

interface HeldOut {
  model: string
  framing: string
  records: string[]
  unigram_ppl: number
  bigram_ppl: number
  targets: number
  greedy: { prompt: string; max_new_tokens: number; args: string[]; ids: number[]; text: string }
}
const heldOut = (name: string): HeldOut => JSON.parse(readFileSync(fixture(`default-models/${name}.heldout.json`), 'utf8'))

const test = suite('default models')

test('both ship as BF16 folders under the size budget (each file < 20 MB, all weights < 40 MB)', () => {
  let total = 0
  for (const lang of ['en', 'zh'] as const) {
    const dir = defaultModelDir(lang)
    assert.ok(dir.endsWith(DEFAULT_MODEL_NAMES[lang]), dir)
    for (const f of readdirSync(dir)) {
      const size = statSync(join(dir, f)).size
      assert.ok(size < 20e6, `${lang}/${f}: ${size} bytes`)
      if (/\.(safetensors|bin)$/.test(f)) total += size
    }
  }
  assert.ok(total < 40e6, `weights: ${total} bytes`)
  assert.throws(() => defaultModelDir('fr'), /unknown default model language/)
})

for (const [lang, family] of [['en', 'gpt_neo'], ['zh', 'gpt3']] as const) {
  const name = DEFAULT_MODEL_NAMES[lang]
  test(`${name}: loads as ${family}; held-out perplexity below the bigram baseline's on the committed sample`, async () => {
    const h = heldOut(name)
    const model = await loadModel(defaultModelDir(lang), { device: 'wasm', threads: 1 })
    try {
      assert.is(model.arch.family, family)
      const tok = loadTokenizer(defaultModelDir(lang))
      // the framing the training used: en EOS text EOS, zh [CLS] text [SEP]; the first token is the condition
      const [first, last] = lang === 'en' ? [model.arch.eosTokenId as number, model.arch.eosTokenId as number] : [tok.encode('[CLS]')[0], tok.encode('[SEP]')[0]]
      const session = model.createSession({ maxBatchTokens: model.arch.nPositions })
      let nll = 0, n = 0
      for (const text of h.records) {
        const ids = [first, ...tok.encode(text), last].slice(0, model.arch.nPositions)
        const lp = await session.logProbs(ids.slice(0, -1), { targets: ids.slice(1) })
        for (const x of lp) nll -= x
        n += lp.length
      }
      session.dispose()
      assert.is(n, h.targets, 'the same targets the baselines were scored on')
      const ppl = Math.exp(nll / n)
      assert.ok(ppl < h.bigram_ppl, `${name}: perplexity ${ppl.toFixed(2)} vs bigram ${h.bigram_ppl.toFixed(2)}`)
      assert.ok(h.bigram_ppl < h.unigram_ppl, 'the bigram baseline beats the unigram one')
    } finally {
      await model.dispose()
    }
  })

  test(`${name}: greedy output of the CLI is stable (ids pinned), with and without --lang`, () => {
    const g = heldOut(name).greedy
    const args = ['generate', g.prompt, ...g.args, '--max-new-tokens', String(g.max_new_tokens), '--json']
    for (const pick of lang === 'en' ? [[], ['--lang', 'en']] : [['--lang', 'zh']]) {
      const r = refgpt([...args, ...pick])
      assert.is(r.code, 0, r.stderr)
      const j = JSON.parse(r.stdout)
      assert.equal(j.ids ?? j.sequences[0].ids, g.ids, `${name} ${pick.join(' ')}`)
    }
  })
}

test("pipeline('text-generation') without a model uses the English default", async () => {
  const g = heldOut(DEFAULT_MODEL_NAMES.en).greedy
  const gen = await pipeline('text-generation', undefined, { device: 'wasm', threads: 1 })
  try {
    assert.ok(gen.model.info.dir.endsWith(DEFAULT_MODEL_NAMES.en))
    const [ids] = await gen(g.prompt, { max_new_tokens: g.max_new_tokens, return_tensors: true })
    assert.equal(ids.generated_token_ids, g.ids, 'prompt + new ids, as the CLI printed them')
    const [text] = await gen(g.prompt, { max_new_tokens: g.max_new_tokens })
    assert.is(text.generated_text, g.text)
  } finally {
    await gen.dispose()
  }
})

test('refgpt chat defaults to the Chinese model; --lang is checked', () => {
  const r = refgpt(['chat', '--seed', '1', '--max-length', '60'], '春眠不觉晓\n')
  assert.is(r.code, 0, r.stderr)
  assert.ok(r.stdout.trim().length > 0, 'a reply line')
  for (const [args, msg] of [
    [['generate', '--lang', 'fr', 'x'], /unknown --lang/],
    [['generate', '--lang', 'en', '--model', '/nonexistent', 'x'], /--lang picks a default model and --model names one/],
  ] as const) {
    const e = refgpt([...args])
    assert.is(e.code, 2, args.join(' '))
    assert.match(e.stderr, msg)
    assert.is(e.stdout, '')
  }
})

test.run()
