// refgpt serve (issue 17): the official `openai` client against a server on 127.0.0.1 (completions and
// chat, streaming and not: the same text the library gives with the same seed), lm-eval's
// local-completions requests replayed from test/fixtures/serve/lm-eval-requests.json and checked against
// transformers' log-likelihoods (golden.json) and refgpt's own scoring, bad requests (4xx, OpenAI's error
// object, the server still serving), 429 past the queue, a disconnect freeing its slot, timeouts, metrics,
// and SIGTERM on the CLI: the request in flight finishes and the process exits 0.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import OpenAI from 'openai'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { generate, loadModel, loadTokenizer, modelscopeGenerate, WordPieceTokenizer, type Model, type Tokenizer } from '@refgpt/core'
import { replyOf } from '../packages/cli/src/commands/chat.js'
import { createServe, type RefgptServer, type ServeOptions } from '../packages/cli/src/serve/server.js'
import { fixture, modelDir, refgpt } from './helpers.js'

interface Running {
  srv: RefgptServer
  url: string
  client: OpenAI
  model: Model
  tok: Tokenizer
}

/** A server on 127.0.0.1 (any free port) over a fixture model, and an openai client for it. */
async function start(name: string, opts: Partial<ServeOptions> = {}): Promise<Running> {
  const model = await loadModel(modelDir(name), { sequences: opts.parallel ?? 4 })
  const tok = loadTokenizer(modelDir(name))
  const srv = createServe({ model, tokenizer: tok, modelId: name, parallel: 4, maxQueue: 16, apiKey: null, timeoutMs: 60_000, ...opts })
  const addr: AddressInfo = await srv.listen(0, '127.0.0.1')
  const url = `http://127.0.0.1:${addr.port}`
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: opts.apiKey ?? 'none', maxRetries: 0 })
  return { srv, url, client, model, tok }
}

async function stop(r: Running): Promise<void> {
  await r.srv.shutdown(1000)
  await r.model.dispose()
}

/** POST a body (a string is sent as is) and read the answer: status, headers, parsed JSON (or text). */
async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; json: any; text: string }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) })
  const text = await res.text()
  let json: any = null
  try {
    json = JSON.parse(text)
  } catch {}
  return { status: res.status, headers: res.headers, json, text }
}

/** The metric's value in /metrics (no labels). */
async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)
  return m ? Number(m[1]) : NaN
}

// --- the openai client, Hugging Face model ----------------------------------------------------------

{
  const test = suite('serve: openai client, gpt2-tiny')
  let r: Running
  test.before(async () => {
    r = await start('gpt2-tiny')
  })
  test.after(() => stop(r))

  test('completions: greedy and seeded sampling give the text generate() gives; usage counts tokens', async () => {
    const prompt = 'Hello, I am a language model,'
    const ids = r.tok.encode(prompt)
    const greedy = await r.client.completions.create({ model: 'gpt2-tiny', prompt, max_tokens: 12, temperature: 0 })
    const want = await generate(r.model, ids, { max_new_tokens: 12, do_sample: false })
    assert.is(greedy.choices[0].text, r.tok.decode(want.newTokens))
    assert.is(greedy.choices[0].finish_reason, 'length')
    assert.equal(greedy.usage, { prompt_tokens: ids.length, completion_tokens: 12, total_tokens: ids.length + 12 })
    assert.is(greedy.object, 'text_completion')
    assert.ok(greedy.id.startsWith('cmpl-'))
    // sampling: temperature and top_p as given, seed 42, two choices (one generation, two rows, as --num-return-sequences 2)
    const sampled = await r.client.completions.create({ model: 'x', prompt, max_tokens: 10, temperature: 0.8, top_p: 0.9, seed: 42, n: 2 })
    const lib = await generate(r.model, ids, { max_new_tokens: 10, do_sample: true, temperature: 0.8, top_p: 0.9, seed: 42, num_return_sequences: 2 })
    assert.equal(sampled.choices.map((c) => c.text), lib.sequences.map((q) => r.tok.decode(q.newTokens)))
    assert.equal(sampled.choices.map((c) => c.index), [0, 1])
    // and the command line with the same options and seed
    const cli = refgpt(['generate', '--model', modelDir('gpt2-tiny'), prompt, '--max-new-tokens', '10', '--do-sample', '--temperature', '0.8', '--top-p', '0.9', '--seed', '42', '--num-return-sequences', '2', '--json'])
    assert.is(cli.code, 0, cli.stderr)
    assert.equal(JSON.parse(cli.stdout).sequences.map((q: { new_ids: number[] }) => r.tok.decode(q.new_ids)), sampled.choices.map((c) => c.text))
  })

  test('completions: streaming (SSE) deltas join to the non-streamed text; include_usage adds a last chunk', async () => {
    const body = { model: 'gpt2-tiny', prompt: 'The sky is', max_tokens: 16, temperature: 1, seed: 7 }
    const whole = await r.client.completions.create(body)
    const stream = await r.client.completions.create({ ...body, stream: true, stream_options: { include_usage: true } })
    let text = '', chunks = 0, finish: string | null = null, usage = null
    for await (const c of stream) {
      chunks++
      if (c.usage) usage = c.usage
      for (const ch of c.choices) {
        text += ch.text
        if (ch.finish_reason) finish = ch.finish_reason
      }
    }
    assert.is(text, whole.choices[0].text)
    assert.is(finish, whole.choices[0].finish_reason)
    assert.ok(chunks >= 8, `${chunks} chunks: the text came token by token`)
    assert.equal(usage, whole.usage)
  })

  test('completions: stop strings end the text before the stop (finish_reason stop), streaming too', async () => {
    const base = { model: 'm', prompt: 'one two three', max_tokens: 30, temperature: 0 }
    const free = (await r.client.completions.create(base)).choices[0].text
    // a stop string taken from the middle of the free text
    const stopStr = free.slice(Math.floor(free.length / 2), Math.floor(free.length / 2) + 3)
    const cut = free.slice(0, free.indexOf(stopStr))
    const c = await r.client.completions.create({ ...base, stop: [stopStr] })
    assert.is(c.choices[0].text, cut)
    assert.is(c.choices[0].finish_reason, 'stop')
    let streamed = ''
    for await (const ch of await r.client.completions.create({ ...base, stop: stopStr, stream: true })) streamed += ch.choices.map((x) => x.text).join('')
    assert.is(streamed, cut)
  })

  test('completions: token-id prompts and lists of prompts (choice i*n + j), echo', async () => {
    const ids = r.tok.encode('A list of')
    const byIds = await r.client.completions.create({ model: 'm', prompt: [ids, r.tok.encode('Another one')], max_tokens: 4, temperature: 0, echo: true, n: 2 })
    const res = await r.client.completions.create({ model: 'm', prompt: ['A list of', 'Another one'], max_tokens: 4, temperature: 0, echo: true, n: 2 })
    assert.equal(byIds.choices, res.choices)
    assert.equal(res.choices.map((c) => c.index), [0, 1, 2, 3])
    const a = await generate(r.model, ids, { max_new_tokens: 4 }), b = await generate(r.model, r.tok.encode('Another one'), { max_new_tokens: 4 })
    assert.is(res.choices[0].text, 'A list of' + r.tok.decode(a.newTokens))
    assert.is(res.choices[1].text, res.choices[0].text, 'greedy choices are the same')
    assert.is(res.choices[2].text, 'Another one' + r.tok.decode(b.newTokens))
  })

  test('chat on a Hugging Face model: 400 that says there is no chat template', async () => {
    try {
      await r.client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })
      assert.unreachable()
    } catch (e: any) {
      assert.is(e.status, 400)
      assert.match(e.error.message, /has no chat template.*use \/v1\/completions/)
      assert.is(e.error.code, 'no_chat_template')
    }
  })

  test('models, tokenize / detokenize (llama.cpp and vLLM shapes), tokenizer_info, health', async () => {
    const models = await r.client.models.list()
    assert.equal(models.data.map((m) => m.id), ['gpt2-tiny'])
    const t = await post(`${r.url}/tokenize`, { content: 'Hello world' })
    assert.equal(t.json, { tokens: r.tok.encode('Hello world') })
    const v = await post(`${r.url}/tokenize`, { prompt: '<|endoftext|>Hi', add_special_tokens: false })
    assert.equal(v.json, { tokens: [50256, ...r.tok.encode('Hi')], count: 1 + r.tok.encode('Hi').length, max_model_len: 128 })
    const p = await post(`${r.url}/tokenize`, { content: 'Hi there', with_pieces: true })
    assert.equal(p.json.tokens.map((x: any) => x.piece).join(''), 'Hi there')
    const d = await post(`${r.url}/detokenize`, { tokens: r.tok.encode('round trip') })
    assert.is(d.json.content, 'round trip')
    const info = await (await fetch(`${r.url}/tokenizer_info`)).json()
    assert.is(info.eos_token, '<|endoftext|>')
    const h = await fetch(`${r.url}/health`)
    assert.is(h.status, 200)
    assert.is((await h.json()).status, 'ok')
  })

  test.run()
}

// --- chat: the ModelScope GPT-3 (kuakua) template ---------------------------------------------------

{
  const test = suite('serve: openai client, chat with a ModelScope GPT-3 (gpt3-ms-tiny)')
  let r: Running
  test.before(async () => {
    r = await start('gpt3-ms-tiny')
  })
  test.after(() => stop(r))

  test('the reply is `refgpt chat`\'s: the last user message + "|", ModelScope generation, same seed', async () => {
    const tok = r.tok as WordPieceTokenizer
    const line = '今天天气很好'
    const want = replyOf(tok, await modelscopeGenerate(r.model, tok, line + '|', { topK: 5, topP: 0, seed: 9, temperature: 0.9 }))
    const msg = await r.client.chat.completions.create({
      model: 'kuakua', seed: 9, temperature: 0.9, top_k: 5,
      messages: [{ role: 'system', content: 'ignored' }, { role: 'user', content: '早' }, { role: 'assistant', content: '早上好' }, { role: 'user', content: line }],
    } as any)
    assert.is(msg.choices[0].message.content, want)
    assert.is(msg.choices[0].message.role, 'assistant')
    assert.is(msg.object, 'chat.completion')
    // greedy, streamed: the deltas join to the reply
    const greedy = replyOf(tok, await modelscopeGenerate(r.model, tok, line + '|', { topK: 1, topP: 0 }))
    let text = '', role = '', finish = ''
    for await (const c of await r.client.chat.completions.create({ model: 'k', temperature: 0, messages: [{ role: 'user', content: line }], stream: true })) {
      const d = c.choices[0]
      if (!d) continue
      role ||= d.delta.role ?? ''
      text += d.delta.content ?? ''
      finish ||= d.finish_reason ?? ''
    }
    assert.is(text, greedy)
    assert.is(role, 'assistant')
    assert.ok(finish === 'stop' || finish === 'length', finish)
  })

  test('chat logprobs: per token, with top_logprobs best first', async () => {
    const res = await r.client.chat.completions.create({ model: 'k', temperature: 0, max_tokens: 5, logprobs: true, top_logprobs: 3, messages: [{ role: 'user', content: '你好' }] })
    const lp = res.choices[0].logprobs!.content!
    assert.ok(lp.length >= 1 && lp.length <= 5)
    for (const t of lp) {
      assert.is(t.top_logprobs.length, 3)
      assert.is(t.top_logprobs[0].logprob, t.logprob, 'greedy: the chosen token is the best')
      assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob && t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob)
    }
  })

  test('a chat without a user message, or a prompt over the context: 400', async () => {
    const a = await post(`${r.url}/v1/chat/completions`, { messages: [{ role: 'system', content: 'x' }] })
    assert.is(a.status, 400)
    assert.match(a.json.error.message, /no user message/)
    const b = await post(`${r.url}/v1/chat/completions`, { messages: [{ role: 'user', content: '好'.repeat(80) }], max_tokens: 10 })
    assert.is(b.status, 400)
    assert.is(b.json.error.code, 'context_length_exceeded')
  })

  test.run()
}

// --- lm-eval's local-completions --------------------------------------------------------------------

{
  const test = suite('serve: lm-eval local-completions requests (recorded), gpt-neo-tiny')
  const rec = JSON.parse(readFileSync(fixture('serve/lm-eval-requests.json'), 'utf8'))
  let r: Running
  test.before(async () => {
    r = await start('gpt-neo-tiny')
  })
  test.after(() => stop(r))

  /** What lm-eval does with a loglikelihood answer: sum(token_logprobs[ctxlen:-1]) and is_greedy by float equality. */
  const lmEvalParse = (choice: any, ctxlen: number) => {
    const lp = choice.logprobs
    const conts = lp.token_logprobs.slice(ctxlen, -1)
    const isGreedy = conts.every((v: number, i: number) => v === Math.max(...(Object.values(lp.top_logprobs[ctxlen + i]) as number[])))
    return { sum: conts.reduce((s: number, v: number) => s + v, 0), isGreedy, n: lp.token_logprobs.length }
  }

  test('loglikelihood requests (echo, logprobs 1, max_tokens 1; ids and text, batched) give transformers\' log-likelihoods and is_greedy', async () => {
    const session = r.model.createSession()
    let checked = 0
    for (const item of rec.loglikelihood) {
      const res = await post(`${r.url}/v1/completions`, item.body)
      assert.is(res.status, 200, `${item.name}: ${res.text}`)
      const exp = item.expected ? [{ choice_index: 0, ...item.expected }] : item.expected_by_choice_index
      const ctxlens: number[] = item.ctxlens ?? [item.ctxlen]
      const conts: number[][] = item.continuation_ids.every((x: unknown) => Array.isArray(x)) ? item.continuation_ids : [item.continuation_ids]
      for (let k = 0; k < exp.length; k++) {
        const choice = res.json.choices.find((c: any) => c.index === exp[k].choice_index)
        const got = lmEvalParse(choice, ctxlens[k])
        assert.is(got.n, exp[k].response_token_logprobs_length, `${item.name}: echoed prompt + one generated token`)
        assert.ok(Math.abs(got.sum - exp[k].sum_logprob) < 1e-4, `${item.name} choice ${k}: ${got.sum} vs transformers ${exp[k].sum_logprob}`)
        assert.is(got.isGreedy, exp[k].is_greedy, `${item.name} choice ${k}: is_greedy`)
        // refgpt's own scoring (the device's log-softmax, as refgpt eval runs it) agrees
        const prompt = choice.logprobs.tokens.length - 1
        const ids = typeof item.body.prompt[0] === 'object' ? item.body.prompt[k] : r.tok.encode(Array.isArray(item.body.prompt) ? item.body.prompt[k] : item.body.prompt)
        assert.is(prompt, ids.length)
        const device = await session.logProbs(ids)
        const own = Array.from(device.subarray(ctxlens[k] - 1)).reduce((s, v) => s + v, 0)
        assert.ok(Math.abs(got.sum - own) < 1e-4, `${item.name}: ${got.sum} vs refgpt logProbs ${own}`)
        assert.equal(conts[k], ids.slice(ctxlens[k]))
        checked++
      }
    }
    assert.is(checked, 12)
    session.dispose()
  })

  test('max_tokens 0 with echo: the prompt\'s log-probabilities only (the older harness shape)', async () => {
    const item = rec.loglikelihood[0]
    const res = await post(`${r.url}/v1/completions`, { ...item.body, max_tokens: 0, logprobs: 5 })
    const lp = res.json.choices[0].logprobs
    assert.is(lp.token_logprobs.length, item.context_ids.length + item.continuation_ids.length)
    assert.is(lp.token_logprobs[0], null)
    assert.ok(Math.abs(lp.token_logprobs.at(-1) - item.expected.sum_logprob) < 1e-4)
    assert.is(Object.keys(lp.top_logprobs[1]).length, 5)
    assert.equal(lp.text_offset.slice(0, 3), [0, r.tok.decode(item.context_ids.slice(0, 1)).length, r.tok.decode(item.context_ids.slice(0, 2)).length])
    assert.is(res.json.choices[0].text, r.tok.decode([...item.context_ids, ...item.continuation_ids]))
  })

  test('generate_until requests (stop lists past 4 strings, top_p passed through) answer with the library\'s greedy / sampled text', async () => {
    for (const item of rec.generate_until) {
      // the recorded max_tokens (lm-eval's 256 default) does not fit this 128-position fixture: refused as OpenAI does
      const body = { ...item.body }
      const ids: number[] = Array.isArray(body.prompt) ? body.prompt[0] : r.tok.encode(body.prompt)
      if (ids.length + body.max_tokens > 128) {
        const res = await post(`${r.url}/v1/completions`, body)
        assert.is(res.status, 400)
        assert.ok(res.json.error.code === 'context_length_exceeded' || res.json.error.param === 'max_tokens', res.text)
        body.max_tokens = 24
      }
      const res = await post(`${r.url}/v1/completions`, body)
      assert.is(res.status, 200, `${item.name}: ${res.text}`)
      const prompts: number[][] = Array.isArray(body.prompt) ? body.prompt : [r.tok.encode(body.prompt)]
      for (let k = 0; k < prompts.length; k++) {
        const opts: Record<string, unknown> = { max_new_tokens: body.max_tokens, do_sample: body.temperature > 0, stop_strings: body.stop, tokenizer: r.tok }
        if (body.temperature > 0) Object.assign(opts, { temperature: body.temperature, top_p: body.top_p, seed: body.seed })
        const lib = await generate(r.model, prompts[k], opts)
        let want = r.tok.decode(lib.newTokens.filter((t) => t !== 50256))
        for (const s of body.stop) if (want.includes(s)) want = want.slice(0, want.indexOf(s))
        assert.is(res.json.choices.find((c: any) => c.index === k).text, want, item.name)
      }
    }
  })

  test.run()
}

// --- bad input, limits, cancellation ----------------------------------------------------------------

{
  const test = suite('serve: bad requests, 429, disconnects, timeouts, metrics (gpt2-tiny)')
  let r: Running
  test.before(async () => {
    r = await start('gpt2-tiny', { parallel: 1, maxQueue: 1, apiKey: 'sekret' })
  })
  test.after(() => stop(r))
  const auth = { authorization: 'Bearer sekret' }
  const url = () => `${r.url}/v1/completions`

  test('malformed JSON, wrong types, unknown fields, huge bodies, prompts over the context, bad ids: 4xx with an OpenAI error; still serving', async () => {
    const cases: [unknown, number, RegExp, string | null][] = [
      ['{"prompt": "x",', 400, /not valid JSON/, null],
      [{ prompt: 5 }, 400, /prompt must be/, 'prompt'],
      [{ prompt: 'x', temperature: 'hot' }, 400, /temperature must be a number/, 'temperature'],
      [{ prompt: 'x', max_tokens: -1 }, 400, /max_tokens must be/, 'max_tokens'],
      [{ prompt: 'x', bogus: true }, 400, /Unrecognized request argument supplied: bogus/, 'bogus'],
      [{ prompt: ' word'.repeat(200), max_tokens: 1 }, 400, /maximum context length is 128 tokens, however you requested 201 tokens \(200 in your prompt; 1 for the completion\)/, 'prompt'],
      [{ prompt: [[1, 2, 99999]] }, 400, /token id 99999 at index 2 is out of range/, 'prompt'],
      [{ prompt: 'x', n: 2 }, 400, /n must be/, 'n'],
      [{ prompt: 'x'.repeat(1_100_000) }, 413, /1048576 bytes/, null],
      [[1, 2], 400, /must be a JSON object/, null],
    ]
    for (const [body, status, message, param] of cases) {
      const res = await post(url(), body, auth)
      assert.is(res.status, status, `${JSON.stringify(body).slice(0, 60)} -> ${res.text.slice(0, 200)}`)
      assert.match(res.json.error.message, message)
      assert.is(res.json.error.param, param)
      assert.type(res.json.error.type, 'string')
    }
    const noKey = await post(url(), { prompt: 'x' })
    assert.is(noKey.status, 401)
    assert.is(noKey.json.error.type, 'authentication_error')
    assert.is((await fetch(`${r.url}/nope`)).status, 404)
    assert.is((await fetch(url())).status, 405)
    const ok = await post(url(), { prompt: 'still here', max_tokens: 2, temperature: 0 }, auth)
    assert.is(ok.status, 200)
    assert.is((await fetch(`${r.url}/health`)).status, 200, '/health needs no key')
  })

  test('past the queue: 429 with Retry-After; a client that disconnects frees its slot at once', async () => {
    const ac = new AbortController()
    const long = fetch(url(), { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'a', max_tokens: 120, stream: true }), signal: ac.signal })
    const res = await long
    const reader = res.body!.getReader()
    await reader.read() // streaming: it holds the one slot
    const queued = post(url(), { prompt: 'b', max_tokens: 2, temperature: 0 }, auth) // waits in the one queue place
    await new Promise((resolve) => setTimeout(resolve, 20))
    const refused = await post(url(), { prompt: 'c', max_tokens: 2 }, auth)
    assert.is(refused.status, 429)
    assert.is(refused.headers.get('retry-after'), '1')
    assert.is(refused.json.error.code, 'queue_full')
    assert.is(await metric(r.url, 'refgpt_slots_busy'), 1)
    ac.abort()
    await reader.cancel().catch(() => {})
    const t0 = performance.now()
    assert.is((await queued).status, 200, 'the queued request ran in the freed slot')
    assert.ok(performance.now() - t0 < 2000)
    assert.is(await metric(r.url, 'refgpt_slots_busy'), 0)
    assert.is(await metric(r.url, 'refgpt_queue_depth'), 0)
  })

  test('/metrics: Prometheus text with requests, tokens, tokens/s, queue and slots', async () => {
    const text = await (await fetch(`${r.url}/metrics`)).text()
    for (const name of ['refgpt_requests_total', 'refgpt_prompt_tokens_total', 'refgpt_generated_tokens_total', 'refgpt_tokens_per_second', 'refgpt_queue_depth', 'refgpt_slots_busy', 'refgpt_slots_total', 'refgpt_time_to_first_token_seconds_bucket'])
      assert.ok(text.includes(`# TYPE ${name.replace(/_bucket$/, '')} `), name)
    assert.match(text, /refgpt_requests_total\{endpoint="\/v1\/completions",status="429"\} 1/)
    assert.match(text, /refgpt_slots_total 1/)
    assert.ok((await metric(r.url, 'refgpt_generated_tokens_total')) >= 3)
  })

  test.run()
}

{
  const test = suite('serve: continuous batching across requests, timeouts (gpt-j-tiny)')
  test('concurrent seeded requests each get their own text; steps batch rows of several requests', async () => {
    const r = await start('gpt-j-tiny', { parallel: 4 })
    try {
      const bodies = [1, 2, 3, 4].map((seed) => ({ model: 'm', prompt: `Request number ${seed}`, max_tokens: 20, temperature: 0.9, seed }))
      const alone = []
      for (const b of bodies) alone.push((await r.client.completions.create(b)).choices[0].text)
      const steps0 = await metric(r.url, 'refgpt_batch_steps_total'), rows0 = await metric(r.url, 'refgpt_batch_rows_total')
      const together = await Promise.all(bodies.map((b) => r.client.completions.create(b)))
      assert.equal(together.map((c) => c.choices[0].text), alone)
      const steps = (await metric(r.url, 'refgpt_batch_steps_total')) - steps0, rows = (await metric(r.url, 'refgpt_batch_rows_total')) - rows0
      assert.is(rows, 4 * 19)
      assert.ok(rows / steps > 2, `mean batch ${rows} / ${steps}`)
    } finally {
      await stop(r)
    }
  })

  test('a request past --timeout is cancelled with 504 and its slot freed', async () => {
    const r = await start('gpt-j-tiny', { parallel: 1, timeoutMs: 3 })
    try {
      // 125 tokens take far longer than 3 ms
      const res = await post(`${r.url}/v1/completions`, { prompt: 'x', max_tokens: 125, temperature: 1, seed: 1 })
      assert.is(res.status, 504, res.text)
      assert.is(res.json.error.code, 'timeout')
      assert.is(await metric(r.url, 'refgpt_slots_busy'), 0)
    } finally {
      await stop(r)
    }
  })
  test.run()
}

// --- the CLI: SIGTERM finishes in-flight requests and exits 0 ----------------------------------------

{
  const test = suite('serve: refgpt serve on the command line')
  test('bad options exit 2 before loading; SIGTERM lets the streaming request finish, /health turns 503, exit 0', async () => {
    const cli = fileURLToPathCompat(new URL('../packages/cli/src/main.ts', import.meta.url))
    const run = (args: string[]) => spawn(process.execPath, ['--conditions=source', '--import', 'tsx', cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    const bad = run(['serve', '--model', modelDir('gpt2-tiny'), '--port', '70000'])
    let badErr = ''
    bad.stderr.on('data', (d) => (badErr += d))
    const badCode = await new Promise((resolve) => bad.on('close', resolve))
    assert.ok(badCode !== 0)
    assert.match(badErr, /bad --port \(expected 0 \.\. 65535, found 70000\)/)

    const child = run(['serve', '--model', modelDir('gpt2-tiny'), '--port', '0', '--parallel', '2', '--shutdown-grace', '20'])
    let out = '', err = ''
    child.stderr.on('data', (d) => (err += d))
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d
        const m = /on (http:\/\/\S+) \(/.exec(out)
        if (m) resolve(m[1])
      })
      child.on('close', () => reject(new Error(`exited early: ${err}`)))
    })
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    // a streaming request in flight when SIGTERM arrives
    const chunks: string[] = []
    const done = new Promise<void>((resolve, reject) => {
      const req = request(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.setEncoding('utf8')
        res.on('data', (d: string) => {
          chunks.push(d)
          if (chunks.length === 1) child.kill('SIGTERM')
        })
        res.on('end', () => resolve())
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end(JSON.stringify({ prompt: 'Once upon a time', max_tokens: 100, stream: true, temperature: 0.7, seed: 3 }))
    })
    await done
    const body = chunks.join('')
    assert.ok(body.endsWith('data: [DONE]\n\n'), 'the stream ended normally')
    assert.match(body, /"finish_reason":"(length|stop)"/)
    const code = await exited
    assert.is(code, 0, err)
    assert.match(err, /SIGTERM: finishing the requests in flight/)
    assert.match(err, /refgpt serve: stopped/)
  })
  test.run()
}

function fileURLToPathCompat(u: URL): string {
  return decodeURIComponent(u.pathname)
}

// --- the load-test script, on a short budget (BENCHMARKS.md has the 60 s runs) ----------------------------

{
  const test = suite('serve: benchmarks/serve-load.mjs on a short budget')
  test('8 streaming clients for 2 s against the tiny model: no failed request, batched steps, the server stops with 0', async () => {
    const script = fileURLToPathCompat(new URL('../benchmarks/serve-load.mjs', import.meta.url))
    const child = spawn(process.execPath, [script, '--model', modelDir('gpt2-tiny'), '--clients', '8', '--duration', '2', '--parallel', '4', '--max-tokens', '8', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = '', err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const code = await new Promise((resolve) => child.on('close', resolve))
    assert.is(code, 0, err.slice(-2000))
    const r = JSON.parse(out.trim().split('\n').at(-1)!)
    assert.is(r.bench, 'serve-load')
    assert.is(r.failed_total, 0)
    assert.ok(r.concurrent.requests > 0 && r.concurrent.failed === 0 && r.autocannon.non2xx === 0 && r.autocannon.errors === 0)
    assert.ok(r.concurrent.mean_batch > 1.5, `mean batch ${r.concurrent.mean_batch}`)
    assert.is(r.server_exit.code, 0)
    assert.ok(r.alone.tokens_per_s > 0 && r.concurrent.ttft_ms.p50 !== null)
  })
  test.run()
}
