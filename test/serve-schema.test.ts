// refgpt serve's building blocks: the request schemas (OpenAI completions and chat, llama.cpp tokenize and
// detokenize), the HTTP helpers (a bounded JSON body reader on a real node:http server, OpenAI's error body,
// server-sent events byte for byte) and the Prometheus text rendering.
import { request as httpRequest, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { suite } from 'uvu'
import { show } from '@refgpt/core'
import * as assert from 'uvu/assert'
import { HttpError, errorBody, readJson, sendError, sendJson, sseDone, sseSend, sseStart } from '../packages/cli/src/serve/http.js'
import { Metrics, PROMETHEUS_CONTENT_TYPE, formatValue } from '../packages/cli/src/serve/metrics.js'
import { parseChat, parseCompletion, parseDetokenize, parseTokenize, type Limits } from '../packages/cli/src/serve/schema.js'

const test = suite('serve-schema')
const LIMITS: Limits = { maxN: 8, maxPrompts: 4, maxTokens: 2048 }
const MB = 1 << 20

/** `f` throws an HttpError with this status and param (and message, when given: a string is all of it, a RegExp is matched). */
function fails(f: () => unknown, status: number, param: string | null, message?: string | RegExp): HttpError {
  let err: unknown
  try {
    f()
  } catch (e) {
    err = e
  }
  assert.ok(err instanceof HttpError, `expected an HttpError, got ${err === undefined ? 'no error' : String(err)}`)
  const e = err as HttpError
  assert.is(e.status, status, e.message)
  assert.is(e.param, param, e.message)
  assert.not.match(e.message, /\n/)
  if (typeof message === 'string') assert.is(e.message, message)
  else if (message) assert.match(e.message, message)
  return e
}

const completion = (extra: Record<string, unknown>) => () => parseCompletion({ prompt: 'Hi', ...extra }, LIMITS)
const chat = (extra: Record<string, unknown>) => () => parseChat({ messages: [{ role: 'user', content: 'Hi' }], ...extra }, LIMITS)

// --- schema: completions ---------------------------------------------------------------------------

test('completions: a minimal body parses with every default filled in', () => {
  assert.equal(parseCompletion({ prompt: 'Hello' }, LIMITS), {
    model: null, prompts: [{ text: 'Hello' }], maxTokens: 16, temperature: 1, topP: 1, topK: 0, n: 1, stop: [], seed: null, stream: false,
    includeUsage: false, minP: 0, repetitionPenalty: 1, logprobs: null, echo: false,
  })
  // null reads as absent for every optional field
  const nulls = {
    model: null, max_tokens: null, temperature: null, top_p: null, top_k: null, min_p: null, repetition_penalty: null, n: null, best_of: null,
    stop: null, seed: null, stream: null, stream_options: null, user: null, presence_penalty: null, frequency_penalty: null, logit_bias: null,
    logprobs: null, echo: null, suffix: null,
  }
  assert.equal(parseCompletion({ prompt: 'Hello', ...nulls }, LIMITS), parseCompletion({ prompt: 'Hello' }, LIMITS))
  // the default 16 stays under a smaller ceiling
  assert.is(parseCompletion({ prompt: 'x' }, { ...LIMITS, maxTokens: 10 }).maxTokens, 10)
})

test('completions: every field given', () => {
  const body = {
    model: 'gpt2', prompt: ['a', 'b'], max_tokens: 0, temperature: 0, top_p: 0.5, top_k: 40, min_p: 0.05, repetition_penalty: 1.3, n: 3,
    best_of: 3, stop: ['\n', 'END'], seed: 42, stream: true, stream_options: { include_usage: true }, user: 'u1', presence_penalty: 0,
    frequency_penalty: 0, logit_bias: {}, logprobs: 5, echo: true,
  }
  assert.equal(parseCompletion(body, LIMITS), {
    model: 'gpt2', prompts: [{ text: 'a' }, { text: 'b' }], maxTokens: 0, temperature: 0, topP: 0.5, topK: 40, n: 3, stop: ['\n', 'END'],
    seed: 42, stream: true, includeUsage: true, minP: 0.05, repetitionPenalty: 1.3, logprobs: 5, echo: true,
  })
  assert.equal(parseCompletion({ prompt: 'x', stop: 'END', temperature: 2, top_p: 1, stream: true, stream_options: {} }, LIMITS).stop, ['END'])
  assert.is(parseCompletion({ prompt: 'x', stream: true, stream_options: {} }, LIMITS).includeUsage, false)
  assert.is(parseCompletion({ prompt: 'x', top_k: -1 }, LIMITS).topK, 0) // vLLM's "off"
  assert.is(parseCompletion({ prompt: 'x', max_tokens: 2048 }, LIMITS).maxTokens, 2048)
  assert.is(parseCompletion({ prompt: 'x', n: 8 }, LIMITS).n, 8)
})

test('completions: the four prompt forms', () => {
  assert.equal(parseCompletion({ prompt: '' }, LIMITS).prompts, [{ text: '' }])
  assert.equal(parseCompletion({ prompt: ['a', ''] }, LIMITS).prompts, [{ text: 'a' }, { text: '' }])
  assert.equal(parseCompletion({ prompt: [15496, 0, 11] }, LIMITS).prompts, [{ ids: [15496, 0, 11] }])
  assert.equal(parseCompletion({ prompt: [[1, 2], [3]] }, LIMITS).prompts, [{ ids: [1, 2] }, { ids: [3] }])
  // one prompt of ids is one prompt, however long
  assert.is(parseCompletion({ prompt: Array.from({ length: 100 }, (_, i) => i) }, LIMITS).prompts.length, 1)
})

test('completions: a bad prompt is a 400 naming prompt', () => {
  fails(() => parseCompletion({}, LIMITS), 400, 'prompt', /^prompt is required/)
  fails(() => parseCompletion({ prompt: null }, LIMITS), 400, 'prompt', /^prompt is required/)
  fails(() => parseCompletion({ prompt: [] }, LIMITS), 400, 'prompt', 'prompt must not be an empty array (found [])')
  fails(() => parseCompletion({ prompt: 5 }, LIMITS), 400, 'prompt',
    'prompt must be a string, an array of strings, an array of token ids or an array of arrays of token ids (found 5)')
  fails(() => parseCompletion({ prompt: [{}] }, LIMITS), 400, 'prompt', /found \[\{\}\]\)$/)
  fails(() => parseCompletion({ prompt: ['a', 1] }, LIMITS), 400, 'prompt', 'prompt[1] must be a string like the first prompt (found 1)')
  fails(() => parseCompletion({ prompt: [1, 'a'] }, LIMITS), 400, 'prompt', 'prompt[1] must be a token id (an integer >= 0) (found "a")')
  fails(() => parseCompletion({ prompt: [1, -1] }, LIMITS), 400, 'prompt', 'prompt[1] must be a token id (an integer >= 0) (found -1)')
  fails(() => parseCompletion({ prompt: [1.5] }, LIMITS), 400, 'prompt', 'prompt[0] must be a token id (an integer >= 0) (found 1.5)')
  fails(() => parseCompletion({ prompt: [2 ** 53] }, LIMITS), 400, 'prompt', /^prompt\[0\] must be a token id/)
  fails(() => parseCompletion({ prompt: [[1], [2, 'x']] }, LIMITS), 400, 'prompt', 'prompt[1][1] must be a token id (an integer >= 0) (found "x")')
  fails(() => parseCompletion({ prompt: [[1], 2] }, LIMITS), 400, 'prompt', 'prompt[1] must be an array of token ids like the first prompt (found 2)')
  fails(() => parseCompletion({ prompt: [[1], []] }, LIMITS), 400, 'prompt', 'prompt[1] must not be an empty array of token ids (found [])')
  fails(() => parseCompletion({ prompt: ['a', 'b', 'c', 'd', 'e'] }, LIMITS), 400, 'prompt', 'prompt must hold at most 4 prompts (found 5)')
  // a huge user value is quoted shortened, on one line
  const e = fails(() => parseCompletion({ prompt: { a: 'x'.repeat(10_000) + '\n' } }, LIMITS), 400, 'prompt')
  assert.ok(e.message.length < 250, e.message)
})

test('completions: each field is type- and range-checked, and the error names it', () => {
  const cases: [Record<string, unknown>, string, string | RegExp][] = [
    [{ temperature: 'hot' }, 'temperature', 'temperature must be a number in [0, 2] (found "hot")'],
    [{ temperature: 2.5 }, 'temperature', 'temperature must be a number in [0, 2] (found 2.5)'],
    [{ temperature: -0.1 }, 'temperature', 'temperature must be a number in [0, 2] (found -0.1)'],
    [{ top_p: 0 }, 'top_p', 'top_p must be a number in (0, 1] (found 0)'],
    [{ top_p: 1.01 }, 'top_p', 'top_p must be a number in (0, 1] (found 1.01)'],
    [{ top_k: 2.5 }, 'top_k', 'top_k must be an integer >= 0 (0: off) (found 2.5)'],
    [{ top_k: -2 }, 'top_k', 'top_k must be an integer >= 0 (0: off) (found -2)'],
    [{ min_p: 1.5 }, 'min_p', 'min_p must be a number in [0, 1] (found 1.5)'],
    [{ repetition_penalty: 0 }, 'repetition_penalty', 'repetition_penalty must be a number > 0 (1: off) (found 0)'],
    [{ n: 0 }, 'n', 'n must be an integer in [1, 8] (found 0)'],
    [{ n: 9 }, 'n', 'n must be an integer in [1, 8] (found 9)'],
    [{ n: '2' }, 'n', 'n must be an integer in [1, 8] (found "2")'],
    [{ max_tokens: -1 }, 'max_tokens', 'max_tokens must be an integer in [0, 2048] or null (found -1)'],
    [{ max_tokens: 2049 }, 'max_tokens', 'max_tokens must be an integer in [0, 2048] or null (found 2049)'],
    [{ max_tokens: 1.5 }, 'max_tokens', 'max_tokens must be an integer in [0, 2048] or null (found 1.5)'],
    [{ seed: -1 }, 'seed', 'seed must be an integer >= 0 (found -1)'],
    [{ seed: 2 ** 60 }, 'seed', /^seed must be an integer >= 0 \(found 1152921504606847000\)$/],
    [{ seed: '1' }, 'seed', 'seed must be an integer >= 0 (found "1")'],
    [{ stream: 'yes' }, 'stream', 'stream must be a boolean (found "yes")'],
    [{ echo: 1 }, 'echo', 'echo must be a boolean (found 1)'],
    [{ model: 5 }, 'model', 'model must be a string (found 5)'],
    [{ user: {} }, 'user', 'user must be a string (found {})'],
    [{ logprobs: 6 }, 'logprobs', 'logprobs must be an integer in [0, 5] or null (found 6)'],
    [{ logprobs: true }, 'logprobs', 'logprobs must be an integer in [0, 5] or null (found true)'],
    [{ best_of: 2 }, 'best_of', 'best_of is not supported (expected null or n (1), found 2); hint: ask for n choices and pick among them'],
    [{ best_of: 'x' }, 'best_of', 'best_of must be an integer >= 1 (found "x")'],
    [{ stop: '' }, 'stop', 'stop must be a non-empty string or an array of at most 16 non-empty strings (found "")'],
    [{ stop: ['a', ''] }, 'stop', 'stop must be a non-empty string or an array of at most 16 non-empty strings (found ["a",""])'],
    [{ stop: 'abcdefghijklmnopq'.split('') }, 'stop', /^stop must be .* \(found \["a","b","c","d","e",/],
    [{ stop: [1] }, 'stop', /^stop must be/],
    [{ stop: 3 }, 'stop', /^stop must be/],
    [{ stream_options: { include_usage: true } }, 'stream_options', 'stream_options is only allowed when stream is true'],
    [{ stream: true, stream_options: 'x' }, 'stream_options', 'stream_options must be an object (found "x")'],
    [{ stream: true, stream_options: { include_usage: 1 } }, 'stream_options.include_usage', 'stream_options.include_usage must be a boolean (found 1)'],
    [{ stream: true, stream_options: { other: true } }, 'stream_options.other', 'Unrecognized request argument supplied: stream_options.other'],
    [{ presence_penalty: 0.5 }, 'presence_penalty',
      'presence_penalty is not supported (expected 0 or null, found 0.5); hint: use repetition_penalty (> 1 penalizes repeats)'],
    [{ frequency_penalty: -1 }, 'frequency_penalty', /^frequency_penalty is not supported/],
    [{ frequency_penalty: 'x' }, 'frequency_penalty', 'frequency_penalty must be a number in [-2, 2] (found "x")'],
    [{ logit_bias: { 50256: -100 } }, 'logit_bias', 'logit_bias is not supported (expected null or {}, found {"50256":-100})'],
    [{ logit_bias: [] }, 'logit_bias', 'logit_bias must be an object mapping token ids to biases (found [])'],
    [{ suffix: '' }, 'suffix', 'suffix is not supported (expected null, found "")'],
  ]
  for (const [extra, param, message] of cases) fails(completion(extra), 400, param, message)
})

test('completions: an unknown field is refused as OpenAI does, prototype keys included', () => {
  fails(completion({ foo: 1 }), 400, 'foo', 'Unrecognized request argument supplied: foo')
  fails(completion({ top_logprobs: 1 }), 400, 'top_logprobs', 'Unrecognized request argument supplied: top_logprobs')
  fails(() => parseCompletion(JSON.parse('{"prompt":"x","__proto__":{"temperature":9}}'), LIMITS), 400, '__proto__',
    'Unrecognized request argument supplied: __proto__')
  fails(() => parseCompletion(JSON.parse('{"prompt":"x","constructor":1}'), LIMITS), 400, 'constructor')
  // a long or odd key is quoted, shortened, on one line
  const odd = 'k\n'.repeat(500)
  const e = fails(completion({ [odd]: 1 }), 400, show(odd, 64), /^Unrecognized request argument supplied: "k\\nk\\n/)
  assert.ok(e.message.length < 120, e.message)
  // inherited properties are not fields: an object whose prototype has `prompt` has no prompt
  fails(() => parseCompletion(Object.create({ prompt: 'x' }), LIMITS), 400, 'prompt', /^prompt is required/)
  for (const body of [null, [], 'x', 5])
    fails(() => parseCompletion(body, LIMITS), 400, null, `request body must be a JSON object (found ${JSON.stringify(body)})`)
})

// --- schema: chat ----------------------------------------------------------------------------------

test('chat: a minimal body parses with every default filled in (max_tokens: null)', () => {
  assert.equal(parseChat({ messages: [{ role: 'user', content: 'Hi' }] }, LIMITS), {
    model: null, messages: [{ role: 'user', content: 'Hi' }], maxTokens: null, temperature: 1, topP: 1, topK: 0, n: 1, stop: [], seed: null,
    stream: false, includeUsage: false, minP: 0, repetitionPenalty: 1, logprobs: false, topLogprobs: null,
  })
})

test('chat: every field given; content parts; developer is system; the spellings of "no tools"', () => {
  const body = {
    model: 'm', messages: [
      { role: 'developer', content: 'Be brief.' },
      { role: 'system', content: [{ type: 'text', text: 'A' }, { type: 'text', text: 'B' }], name: 'sys' },
      { role: 'user', content: [] },
      { role: 'assistant', content: 'ok', tool_calls: null, refusal: null, function_call: null },
    ],
    max_completion_tokens: 100, max_tokens: 100, temperature: 0.7, top_p: 0.9, top_k: 5, min_p: 0.1, repetition_penalty: 1.1, n: 2,
    stop: 'x', seed: 0, stream: true, stream_options: { include_usage: false }, user: 'u', presence_penalty: 0, frequency_penalty: null,
    logit_bias: null, logprobs: true, top_logprobs: 20, tools: [], tool_choice: 'none', functions: null, function_call: 'none',
    response_format: { type: 'text' },
  }
  assert.equal(parseChat(body, LIMITS), {
    model: 'm', messages: [
      { role: 'system', content: 'Be brief.' }, { role: 'system', content: 'AB' }, { role: 'user', content: '' }, { role: 'assistant', content: 'ok' },
    ],
    maxTokens: 100, temperature: 0.7, topP: 0.9, topK: 5, n: 2, stop: ['x'], seed: 0, stream: true, includeUsage: false, minP: 0.1,
    repetitionPenalty: 1.1, logprobs: true, topLogprobs: 20,
  })
  assert.is(parseChat({ messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 7 }, LIMITS).maxTokens, 7)
  assert.is(parseChat({ messages: [{ role: 'user', content: 'x' }], max_tokens: 8 }, LIMITS).maxTokens, 8)
  assert.is(parseChat({ messages: [{ role: 'user', content: 'x' }], logprobs: true }, LIMITS).topLogprobs, null)
})

test('chat: bad messages are a 400 naming the message and field', () => {
  fails(() => parseChat({}, LIMITS), 400, 'messages', /^messages is required/)
  fails(() => parseChat({ messages: [] }, LIMITS), 400, 'messages', 'messages must be a non-empty array of {role, content} (found [])')
  fails(() => parseChat({ messages: 'hi' }, LIMITS), 400, 'messages', /found "hi"\)$/)
  fails(() => parseChat({ messages: ['hi'] }, LIMITS), 400, 'messages[0]', 'messages[0] must be a JSON object (found "hi")')
  const m = (msg: Record<string, unknown>) => () => parseChat({ messages: [{ role: 'user', content: 'a' }, msg] }, LIMITS)
  fails(m({ content: 'x' }), 400, 'messages[1].role', 'messages[1].role must be "system", "user", "assistant" or "developer" (found undefined)')
  fails(m({ role: 'robot', content: 'x' }), 400, 'messages[1].role', /\(found "robot"\)$/)
  fails(m({ role: 'tool', content: 'x' }), 400, 'messages[1].role',
    'messages[1].role is not supported (expected "system", "user" or "assistant", found "tool")')
  fails(m({ role: 'function', content: 'x' }), 400, 'messages[1].role', /^messages\[1\]\.role is not supported/)
  fails(m({ role: 'user' }), 400, 'messages[1].content', /^messages\[1\]\.content must be a string or an array .* \(found undefined\)$/)
  fails(m({ role: 'assistant', content: null }), 400, 'messages[1].content', /\(found undefined\)$/)
  fails(m({ role: 'user', content: 5 }), 400, 'messages[1].content', /\(found 5\)$/)
  fails(m({ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:' } }] }), 400, 'messages[1].content[0].type',
    'messages[1].content[0].type is not supported (expected "text" (this server reads text only), found "image_url")')
  fails(m({ role: 'user', content: [{ text: 'a' }] }), 400, 'messages[1].content[0].type', 'messages[1].content[0].type must be "text" (found undefined)')
  fails(m({ role: 'user', content: [{ type: 'text', text: 1 }] }), 400, 'messages[1].content[0].text', 'messages[1].content[0].text must be a string (found 1)')
  fails(m({ role: 'user', content: [{ type: 'text', text: 'a', extra: 1 }] }), 400, 'messages[1].content[0].extra',
    'Unrecognized request argument supplied: messages[1].content[0].extra')
  fails(m({ role: 'user', content: ['a'] }), 400, 'messages[1].content[0]', 'messages[1].content[0] must be a JSON object (found "a")')
  fails(m({ role: 'user', content: 'x', name: 3 }), 400, 'messages[1].name', 'messages[1].name must be a string (found 3)')
  fails(m({ role: 'user', content: 'x', foo: 1 }), 400, 'messages[1].foo', 'Unrecognized request argument supplied: messages[1].foo')
  fails(m({ role: 'assistant', content: 'x', tool_calls: [{ id: 'c' }] }), 400, 'messages[1].tool_calls', /^messages\[1\]\.tool_calls is not supported/)
})

test('chat: each chat field is checked', () => {
  const cases: [Record<string, unknown>, string, string | RegExp][] = [
    [{ max_tokens: 5, max_completion_tokens: 6 }, 'max_completion_tokens',
      'max_tokens and max_completion_tokens differ (expected one of them, or the same value, found 5 and 6)'],
    [{ max_completion_tokens: 4096 }, 'max_completion_tokens', 'max_completion_tokens must be an integer in [0, 2048] or null (found 4096)'],
    [{ logprobs: 1 }, 'logprobs', 'logprobs must be a boolean (found 1)'],
    [{ top_logprobs: 2 }, 'top_logprobs', 'top_logprobs is only allowed when logprobs is true'],
    [{ logprobs: false, top_logprobs: 2 }, 'top_logprobs', 'top_logprobs is only allowed when logprobs is true'],
    [{ logprobs: true, top_logprobs: 21 }, 'top_logprobs', 'top_logprobs must be an integer in [0, 20] or null (found 21)'],
    [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools', /^tools is not supported \(expected null or \[\], found \[/],
    [{ functions: [{ name: 'f' }] }, 'functions', /^functions is not supported/],
    [{ tool_choice: 'auto' }, 'tool_choice', 'tool_choice is not supported (expected null or "none", found "auto")'],
    [{ function_call: 'auto' }, 'function_call', /^function_call is not supported/],
    [{ response_format: { type: 'json_object' } }, 'response_format',
      'response_format is not supported (expected {"type":"text"} or null, found {"type":"json_object"})'],
    [{ response_format: { type: 'text', extra: 1 } }, 'response_format', /^response_format is not supported/],
    [{ temperature: 'hot' }, 'temperature', 'temperature must be a number in [0, 2] (found "hot")'],
    [{ presence_penalty: 1 }, 'presence_penalty', /^presence_penalty is not supported/],
    [{ best_of: 2 }, 'best_of', /^best_of is not supported/],
    [{ echo: true }, 'echo', 'Unrecognized request argument supplied: echo'],
    [{ prompt: 'x' }, 'prompt', 'Unrecognized request argument supplied: prompt'],
    [{ suffix: null }, 'suffix', 'Unrecognized request argument supplied: suffix'],
  ]
  for (const [extra, param, message] of cases) fails(chat(extra), 400, param, message)
})

// --- schema: tokenize, detokenize ------------------------------------------------------------------

test('tokenize and detokenize bodies (llama.cpp)', () => {
  assert.equal(parseTokenize({ content: 'Hello world' }), { content: 'Hello world', addSpecial: false, withPieces: false })
  assert.equal(parseTokenize({ content: '', add_special: true, with_pieces: true, model: 'x' }), { content: '', addSpecial: true, withPieces: true })
  fails(() => parseTokenize({}), 400, 'content', 'content must be a string (found undefined)')
  fails(() => parseTokenize({ content: 1 }), 400, 'content', 'content must be a string (found 1)')
  fails(() => parseTokenize({ content: 'x', add_special: 'yes' }), 400, 'add_special', 'add_special must be a boolean (found "yes")')
  fails(() => parseTokenize({ content: 'x', prompt: 'y' }), 400, 'prompt', 'Unrecognized request argument supplied: prompt')
  fails(() => parseTokenize([]), 400, null, 'request body must be a JSON object (found [])')
  // vLLM's shape (lm-eval's remote tokenizer): {prompt, add_special_tokens}
  assert.equal(parseTokenize({ prompt: '<|endoftext|>x', add_special_tokens: false }), { content: '<|endoftext|>x', addSpecial: false, withPieces: false, vllm: true })
  fails(() => parseTokenize({ prompt: 'x', with_pieces: true }), 400, 'with_pieces', 'Unrecognized request argument supplied: with_pieces')
  fails(() => parseTokenize({ prompt: 3 }), 400, 'prompt', 'prompt must be a string (found 3)')
  assert.equal(parseDetokenize({ tokens: [15496, 995] }), { tokens: [15496, 995] })
  assert.equal(parseDetokenize({ tokens: [], model: null }), { tokens: [] })
  fails(() => parseDetokenize({}), 400, 'tokens', 'tokens must be an array of token ids (found undefined)')
  fails(() => parseDetokenize({ tokens: [1, -2] }), 400, 'tokens', 'tokens[1] must be a token id (an integer >= 0) (found -2)')
  fails(() => parseDetokenize({ tokens: ['1'] }), 400, 'tokens', 'tokens[0] must be a token id (an integer >= 0) (found "1")')
  fails(() => parseDetokenize({ tokens: [1], extra: 1 }), 400, 'extra', 'Unrecognized request argument supplied: extra')
})

// --- http ------------------------------------------------------------------------------------------

test('HttpError: types by status, one line, OpenAI\'s error body', () => {
  const e = new HttpError(400, 'temperature must be\n a number', { param: 'temperature' })
  assert.is(e.message, 'temperature must be a number')
  assert.is(e.name, 'HttpError')
  assert.ok(e instanceof Error)
  assert.equal(errorBody(e), { error: { message: 'temperature must be a number', type: 'invalid_request_error', param: 'temperature', code: null } })
  assert.equal(errorBody(new HttpError(503, 'busy', { code: 'overloaded' })),
    { error: { message: 'busy', type: 'server_error', param: null, code: 'overloaded' } })
  assert.is(new HttpError(404, 'no such model', { type: 'not_found_error' }).type, 'not_found_error')
})

interface Seen {
  result?: unknown
  error?: HttpError
  /** bytes the server's socket had read from the client when readJson settled */
  bytesRead?: number
}

/** A real server on 127.0.0.1 whose handler is `handler`; `fn` gets its URL; the server is closed afterwards. */
async function withServer(handler: (req: IncomingMessage, res: ServerResponse) => void, fn: (url: string) => Promise<void>): Promise<void> {
  const server: Server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`)
  } finally {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

/** A server whose handler reads the body with readJson(req, 1 MB) and answers with it, or with the error. */
function jsonServer(fn: (url: string, seen: Seen[]) => Promise<void>): Promise<void> {
  const seen: Seen[] = []
  return withServer((req, res) => {
    readJson(req, MB).then(
      (result) => {
        seen.push({ result, bytesRead: req.socket.bytesRead })
        sendJson(res, 200, { got: result }, { 'x-test': 'yes' })
      },
      (error: unknown) => {
        assert.ok(error instanceof HttpError)
        seen.push({ error, bytesRead: req.socket.bytesRead })
        sendError(res, error)
      },
    )
  }, (url) => fn(url, seen))
}

async function post(url: string, body: BodyInit, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const r = await fetch(url, { method: 'POST', body, headers, duplex: 'half' } as RequestInit)
  return { status: r.status, headers: r.headers, json: await r.json() as Record<string, unknown> }
}

test('readJson: reads a valid body; sendJson answers with JSON and its length', async () => {
  await jsonServer(async (url, seen) => {
    const body = JSON.stringify({ prompt: 'héllo', n: 2 })
    const r = await post(url, body)
    assert.is(r.status, 200)
    assert.equal(r.json, { got: { prompt: 'héllo', n: 2 } })
    assert.is(r.headers.get('content-type'), 'application/json; charset=utf-8')
    assert.is(r.headers.get('content-length'), String(Buffer.byteLength(JSON.stringify({ got: { prompt: 'héllo', n: 2 } }))))
    assert.is(r.headers.get('x-test'), 'yes')
    // no Content-Type at all is accepted (fetch sends none with bytes), and so is a charset parameter
    assert.is((await post(url, new TextEncoder().encode(body), {})).status, 200)
    assert.is((await post(url, body, { 'content-type': 'Application/JSON; charset=utf-8' })).status, 200)
    // chunked (no Content-Length): read to the end
    const chunked = new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('{"a":')); c.enqueue(new TextEncoder().encode('[1,2]}')); c.close() } })
    assert.equal((await post(url, chunked)).json, { got: { a: [1, 2] } })
    // exactly the limit is fine
    const exact = '{"a":"' + 'x'.repeat(MB - 8) + '"}'
    assert.is(Buffer.byteLength(exact), MB)
    assert.is((await post(url, exact)).status, 200)
    assert.is(seen.length, 5)
  })
})

test('readJson: a body over the limit is refused by its Content-Length before any of it is read', async () => {
  await jsonServer(async (url, seen) => {
    const r = await post(url, Buffer.alloc(5 * MB, 0x20))
    assert.is(r.status, 413)
    assert.is(r.headers.get('connection'), 'close')
    assert.equal(r.json, {
      error: { message: `request body too large (expected at most ${MB} bytes, found Content-Length ${5 * MB})`,
        type: 'invalid_request_error', param: null, code: 'request_too_large' },
    })
    // the socket read little more than the headers and what the kernel had ready: not the 5 MB, not even 1 MB
    assert.ok(seen[0].bytesRead! < MB / 2, `read ${seen[0].bytesRead} bytes`)
    // one byte over, the same
    const over = await post(url, Buffer.alloc(MB + 1, 0x20))
    assert.is(over.status, 413)
    assert.is((over.json.error as { code: string }).code, 'request_too_large')
  })
})

test('readJson: a chunked body over the limit is refused as soon as it passes the limit', async () => {
  await jsonServer(async (url, seen) => {
    const chunk = new Uint8Array(64 << 10).fill(0x20)
    let sent = 0
    const body = new ReadableStream({
      pull(c) {
        if (sent >= 32 * MB) c.close()
        else {
          c.enqueue(chunk)
          sent += chunk.length
        }
      },
    })
    const r = await post(url, body)
    assert.is(r.status, 413)
    assert.equal(r.json, {
      error: { message: `request body too large (expected at most ${MB} bytes, found more than ${MB} bytes)`,
        type: 'invalid_request_error', param: null, code: 'request_too_large' },
    })
    // stopped at the limit plus about a chunk (one read of the socket), far short of the 32 MB offered
    assert.ok(seen[0].bytesRead! > MB && seen[0].bytesRead! < MB + (256 << 10), `read ${seen[0].bytesRead} bytes`)
  })
})

test('readJson: empty, malformed, not UTF-8, not an object, wrong Content-Type', async () => {
  await jsonServer(async (url) => {
    const err = async (body: BodyInit, headers?: Record<string, string>) => {
      const r = await post(url, body, headers)
      return { status: r.status, ...(r.json.error as { message: string; type: string; param: string | null; code: string | null }) }
    }
    assert.equal(await err(''), { status: 400, message: 'empty request body (expected a JSON object)', type: 'invalid_request_error', param: null, code: null })
    let parseMessage = ''
    try {
      JSON.parse('{"a": 1,}')
    } catch (e) {
      parseMessage = (e as Error).message
    }
    assert.match(parseMessage, /position 8/)
    assert.equal(await err('{"a": 1,}'),
      { status: 400, message: `request body is not valid JSON: ${parseMessage}`, type: 'invalid_request_error', param: null, code: null })
    assert.equal(await err(new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])),
      { status: 400, message: 'request body is not valid UTF-8 (expected a JSON object in UTF-8)', type: 'invalid_request_error', param: null, code: null })
    for (const [body, found] of [['[1,2]', '[1,2]'], ['"x"', '"x"'], ['null', 'null'], ['42', '42']])
      assert.equal(await err(body),
        { status: 400, message: `request body must be a JSON object (found ${found})`, type: 'invalid_request_error', param: null, code: null })
    assert.equal(await err('{}', { 'content-type': 'text/plain' }), {
      status: 415, message: 'unsupported Content-Type (expected application/json, found "text/plain")', type: 'invalid_request_error', param: null,
      code: 'unsupported_media_type',
    })
    // a malformed body spread over lines still gives a one-line message (V8 quotes a bounded bit of the body)
    const multi = await err('{\n"a":\n\n}' + ' '.repeat(10_000))
    assert.is(multi.status, 400)
    assert.match(multi.message, /^request body is not valid JSON: Unexpected token '}', [^\n]*$/)
    assert.ok(multi.message.length < 250, multi.message)
  })
})

test('readJson: a client that goes away mid-body rejects with a 400 HttpError, not an unhandled error', async () => {
  let settled: (v: unknown) => void
  const outcome = new Promise((resolve) => { settled = resolve })
  await withServer((req) => { readJson(req, MB).then((v) => settled({ value: v }), (e: unknown) => settled(e)) }, async (url) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': '1000' } })
    req.on('error', () => {})
    req.write('{"prompt": "a')
    await new Promise((resolve) => setTimeout(resolve, 50))
    req.destroy()
    const e = await outcome
    assert.ok(e instanceof HttpError, String(e))
    assert.is((e as HttpError).status, 400)
    assert.is((e as HttpError).code, 'request_aborted')
  })
})

test('SSE: exact framing, headers, and sseSend false once the client is gone', async () => {
  await withServer((req, res) => {
    sseStart(res)
    assert.is(sseSend(res, { id: 'cmpl-1', choices: [{ text: 'a\nb "q"' }] }), true)
    assert.is(sseSend(res, { usage: null }), true)
    sseDone(res)
    assert.is(sseSend(res, { late: true }), false)
    sseDone(res) // twice is harmless
  }, async (url) => {
    const r = await fetch(url)
    assert.is(r.status, 200)
    assert.is(r.headers.get('content-type'), 'text/event-stream; charset=utf-8')
    assert.is(r.headers.get('cache-control'), 'no-cache')
    assert.is(r.headers.get('connection'), 'keep-alive')
    assert.is(r.headers.get('x-accel-buffering'), 'no')
    assert.is(await r.text(), 'data: {"id":"cmpl-1","choices":[{"text":"a\\nb \\"q\\""}]}\n\ndata: {"usage":null}\n\ndata: [DONE]\n\n')
  })
  // the headers go out before any event: a client sees the 200 at once; after it hangs up, sseSend says so
  let gone: (ok: boolean) => void
  const sendAfterClose = new Promise<boolean>((resolve) => { gone = resolve })
  await withServer((req, res) => {
    sseStart(res)
    res.on('close', () => gone(sseSend(res, { after: 'close' })))
  }, async (url) => {
    const ac = new AbortController()
    const r = await fetch(url, { signal: ac.signal })
    assert.is(r.status, 200)
    ac.abort()
    assert.is(await sendAfterClose, false)
  })
})

test('sendError: once a stream is under way, the error is the last event', async () => {
  await withServer((req, res) => {
    sseStart(res)
    sseSend(res, { n: 1 })
    sendError(res, new HttpError(500, 'the model failed'))
  }, async (url) => {
    const r = await fetch(url)
    assert.is(r.status, 200)
    assert.is(await r.text(), 'data: {"n":1}\n\ndata: {"error":{"message":"the model failed","type":"server_error","param":null,"code":null}}\n\n')
  })
})

// --- metrics ---------------------------------------------------------------------------------------

test('metrics: the exact text exposition of a small registry', () => {
  const m = new Metrics()
  const req = m.counter('refgpt_requests_total', 'Requests by route and status.')
  const gen = m.counter('refgpt_generated_tokens_total', 'Tokens generated.')
  const running = m.gauge('refgpt_requests_running', 'Requests being generated\\decoded now.\nSecond line.')
  const lat = m.histogram('refgpt_request_seconds', 'Request latency.', [0.1, 1, 10])
  m.gauge('refgpt_unused', 'Never set.')
  req.inc({ route: '/v1/completions', status: '200' })
  req.inc({ status: '200', route: '/v1/completions' }, 2) // the same series, whatever the key order
  req.inc({ route: '/v1/chat/completions', status: '400' })
  req.inc({ route: 'a"b\\c\nd', status: '500' }, 0)
  gen.inc(1e21)
  running.set(3)
  running.inc()
  running.dec(undefined, 2)
  lat.observe({ route: '/v1/completions' }, 0.05)
  lat.observe({ route: '/v1/completions' }, 1)
  lat.observe({ route: '/v1/completions' }, 42)
  lat.observe(0.5)
  assert.is(req.get({ route: '/v1/completions', status: '200' }), 3)
  assert.is(running.get(), 2)
  assert.is(m.render(), [
    '# HELP refgpt_requests_total Requests by route and status.',
    '# TYPE refgpt_requests_total counter',
    'refgpt_requests_total{route="/v1/completions",status="200"} 3',
    'refgpt_requests_total{route="/v1/chat/completions",status="400"} 1',
    'refgpt_requests_total{route="a\\"b\\\\c\\nd",status="500"} 0',
    '# HELP refgpt_generated_tokens_total Tokens generated.',
    '# TYPE refgpt_generated_tokens_total counter',
    'refgpt_generated_tokens_total 1000000000000000000000',
    '# HELP refgpt_requests_running Requests being generated\\\\decoded now.\\nSecond line.',
    '# TYPE refgpt_requests_running gauge',
    'refgpt_requests_running 2',
    '# HELP refgpt_request_seconds Request latency.',
    '# TYPE refgpt_request_seconds histogram',
    'refgpt_request_seconds_bucket{route="/v1/completions",le="0.1"} 1',
    'refgpt_request_seconds_bucket{route="/v1/completions",le="1"} 2',
    'refgpt_request_seconds_bucket{route="/v1/completions",le="10"} 2',
    'refgpt_request_seconds_bucket{route="/v1/completions",le="+Inf"} 3',
    'refgpt_request_seconds_sum{route="/v1/completions"} 43.05',
    'refgpt_request_seconds_count{route="/v1/completions"} 3',
    'refgpt_request_seconds_bucket{le="0.1"} 0',
    'refgpt_request_seconds_bucket{le="1"} 1',
    'refgpt_request_seconds_bucket{le="10"} 1',
    'refgpt_request_seconds_bucket{le="+Inf"} 1',
    'refgpt_request_seconds_sum 0.5',
    'refgpt_request_seconds_count 1',
    '# HELP refgpt_unused Never set.',
    '# TYPE refgpt_unused gauge',
    '',
  ].join('\n'))
  assert.is(PROMETHEUS_CONTENT_TYPE, 'text/plain; version=0.0.4; charset=utf-8')
})

test('metrics: number formatting and misuse', () => {
  assert.equal([1, 0, -0, -3, 2 ** 70, 0.25, 1e-7, Infinity, -Infinity, NaN].map(formatValue),
    ['1', '0', '0', '-3', '1180591620717411303424', '0.25', '1e-7', '+Inf', '-Inf', 'NaN'])
  const m = new Metrics()
  const g = m.gauge('g', 'h')
  g.set(-Infinity)
  assert.is(m.render(), '# HELP g h\n# TYPE g gauge\ng -Inf\n')
  assert.throws(() => m.counter('g', 'again'), /already registered/)
  assert.throws(() => m.counter('bad-name', 'h'), /invalid metric name/)
  assert.throws(() => m.counter('c', 'h').inc(-1), /only goes up/)
  assert.throws(() => g.set({ 'bad-label': 'x' }, 1), /invalid label name/)
  assert.throws(() => m.histogram('h', 'h', [1, 0.5]), /increasing/)
  assert.throws(() => m.histogram('h2', 'h', [1]).observe({ le: '1' }, 1), /reserved/)
  assert.is(new Metrics().render(), '')
  // +Inf among the buckets is the implicit one, not a second
  const m2 = new Metrics()
  m2.histogram('h', 'x', [1, Infinity]).observe(2)
  assert.is(m2.render(), '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 0\nh_bucket{le="+Inf"} 1\nh_sum 2\nh_count 1\n')
})

test.run()
