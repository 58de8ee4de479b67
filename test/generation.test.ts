// generate() against transformers' generate(): beam search (sequences and scores), left-padded
// batches (greedy, greedy with an early eos), sampling reproducibility, stopping, streaming.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { generate, generateStream, loadModel, loadTokenizer, pipeline, type Model } from '@refgpt/core'
import { loadGolden, modelDir, rejects } from './helpers.js'

const FAMILIES = ['gpt2-tiny', 'gpt-neo-tiny', 'gpt-j-tiny', 'gpt-neo-odd']

for (const name of FAMILIES) {
  const test = suite(`generation: ${name}`)
  const g = loadGolden(name).json
  let model: Model
  test.before(async () => {
    model = await loadModel(modelDir(name))
  })
  test.after(() => model.dispose())

  test('beam search (num_beams 4, early_stopping) equals transformers: sequence and score', async () => {
    const want = g.beam['p1.num_beams4']
    const s = g.generation_settings['beam.p1.num_beams4']
    const r = await generate(model, g.prompts.p1.ids, { num_beams: s.num_beams, max_new_tokens: s.max_new_tokens, early_stopping: s.early_stopping, length_penalty: s.length_penalty, pad_token_id: s.pad_token_id })
    assert.equal(r.sequences.map((q) => q.ids), want.sequences)
    r.sequences.forEach((q, i) => assert.ok(Math.abs(q.score! - want.sequences_scores[i]) < 1e-4, `score ${q.score} vs ${want.sequences_scores[i]}`))
  })

  test('beam search with num_return_sequences 3 returns the 3 best, best first', async () => {
    const want = g.beam['p1.num_beams3.return3']
    const r = await generate(model, g.prompts.p1.ids, { num_beams: 3, num_return_sequences: 3, max_new_tokens: 12, early_stopping: true, pad_token_id: g.eos_token_id })
    assert.equal(r.sequences.map((q) => q.ids), want.sequences)
    r.sequences.forEach((q, i) => assert.ok(Math.abs(q.score! - want.sequences_scores[i]) < 1e-4, `score ${i}`))
  })

  test('a left-padded batch of three prompts equals transformers (greedy, and greedy with an early eos)', async () => {
    const b = g.batched
    const prompts = b.rows.map((p: string) => g.prompts[p].ids)
    const r = await generate(model, prompts, b.greedy.settings)
    assert.equal(r.sequences.map((q) => q.ids), b.greedy.sequences)
    const e = await generate(model, prompts, b.greedy_eos.settings)
    assert.equal(e.sequences.map((q) => q.ids), b.greedy_eos.sequences)
    assert.ok(e.sequences.some((q) => q.finishReason === 'eos'))
  })

  test.run()
}

const more = suite('generation: sampling, stopping, streaming')
let model: Model
more.before(async () => {
  model = await loadModel(modelDir('gpt2-tiny'))
})
more.after(() => model.dispose())
const prompt = [15496, 11, 314, 1101, 257, 3303, 2746]

more('sampling with a seed is reproducible; num_return_sequences gives independent rows', async () => {
  const opts = { do_sample: true, max_new_tokens: 15, seed: 7, num_return_sequences: 3, top_p: 0.9 }
  const a = await generate(model, prompt, opts), b = await generate(model, prompt, opts)
  assert.equal(a.sequences.map((s) => s.ids), b.sequences.map((s) => s.ids))
  assert.is(a.seed, 7)
  assert.is(a.sequences.length, 3)
  assert.ok(new Set(a.sequences.map((s) => s.ids.join())).size > 1, 'rows differ')
  const js = await loadModel(modelDir('gpt2-tiny'), { device: 'js' })
  assert.equal((await generate(js, prompt, opts)).sequences.map((s) => s.ids), a.sequences.map((s) => s.ids), 'same tokens on js and wasm')
  await js.dispose()
  const c = await generate(model, prompt, { ...opts, seed: 8 })
  assert.is.not(c.sequences.map((s) => s.ids).join('|'), a.sequences.map((s) => s.ids).join('|'))
  const d = await generate(model, prompt, { do_sample: true, max_new_tokens: 3 })
  assert.type(d.seed, 'number', 'a random seed is drawn and reported')
})

more('max_length counts the prompt (HF default 20); max_new_tokens wins; min_new_tokens blocks eos', async () => {
  assert.is((await generate(model, prompt)).ids.length, 20)
  assert.is((await generate(model, prompt, { max_length: 9 })).ids.length, 9)
  assert.is((await generate(model, prompt, { max_length: 9, max_new_tokens: 4 })).ids.length, 11)
  const greedy = (await generate(model, prompt, { max_new_tokens: 20 })).newTokens
  const k = greedy.findIndex((id, i) => i >= 1 && !greedy.slice(0, i).includes(id)) // a token new at step k
  const eos = greedy[k]
  const stopped = await generate(model, prompt, { max_new_tokens: 20, eos_token_id: [999999, eos] })
  assert.equal(stopped.newTokens, greedy.slice(0, k + 1))
  assert.is(stopped.finishReason, 'eos')
  const blocked = await generate(model, prompt, { max_new_tokens: 20, eos_token_id: eos, min_new_tokens: 5 })
  assert.ok(!blocked.newTokens.slice(0, 5).includes(eos))
})

more('stop strings end generation at the token that completes them', async () => {
  const tok = loadTokenizer(modelDir('gpt2-tiny'))
  const full = await generate(model, prompt, { max_new_tokens: 20 })
  const text = tok.decode(full.newTokens)
  const stop = text.slice(8, 12)
  const r = await generate(model, prompt, { max_new_tokens: 20, stop_strings: [stop], tokenizer: tok })
  assert.is(r.finishReason, 'stop_string')
  const got = tok.decode(r.newTokens)
  assert.ok(got.includes(stop) && !tok.decode(r.newTokens.slice(0, -1)).includes(stop), `${JSON.stringify(got)} / ${JSON.stringify(stop)}`)
})

more('streaming: the callback and the async iterator see every new token in order', async () => {
  const seen: number[] = []
  const r = await generate(model, prompt, { max_new_tokens: 12, onToken: (id) => seen.push(id) })
  assert.equal(seen, r.newTokens)
  const streamed: number[] = []
  const it = generateStream(model, prompt, { max_new_tokens: 12 })
  for await (const { id } of it) streamed.push(id)
  assert.equal(streamed, r.newTokens)
})

more('unknown or invalid options are clear errors', async () => {
  await rejects(() => generate(model, prompt, { max_new_tokenz: 3 }), /unknown generation option "max_new_tokenz"/)
  await rejects(() => generate(model, prompt, { num_beams: 0 }), /num_beams/)
  await rejects(() => generate(model, prompt, { do_sample: true, top_p: 1.5 }), /top_p/)
  await rejects(() => generate(model, []), /empty prompt/)
})

more.run()

const pipe = suite('pipeline("text-generation")')
pipe('returns [{generated_text}] like transformers, full text by default', async () => {
  const g = loadGolden('gpt2-tiny').json
  const tok = loadTokenizer(modelDir('gpt2-tiny'))
  const generator = await pipeline('text-generation', modelDir('gpt2-tiny'))
  const text = g.prompts.p1.decoded // "Hello, I'm a language model"
  const out = await generator(text, { max_new_tokens: 20 })
  const newText = tok.decode(g.greedy.p1.new_tokens, { skipSpecialTokens: true, cleanUpTokenizationSpaces: true })
  assert.equal(out, [{ generated_text: text + newText }])
  assert.equal(await generator(text, { max_new_tokens: 20, return_full_text: false }), [{ generated_text: newText }])
  assert.equal(await generator(text, { max_new_tokens: 20, return_tensors: true }), [{ generated_token_ids: g.greedy.p1.sequence }])
  const many = await generator(['Hello', 'EleutherAI has'], { do_sample: true, min_length: 10, max_length: 12, num_return_sequences: 3, seed: 1 })
  assert.is(many.length, 2)
  assert.is(many[0].length, 3)
  for (const row of many) for (const o of row) assert.type(o.generated_text, 'string')
  // max_length counts the prompt: HF's default of 20 tokens in all
  const dflt = await generator('Hello', { return_tensors: true })
  assert.is(dflt[0].generated_token_ids!.length, 20)
  await generator.dispose()
})
pipe.run()
