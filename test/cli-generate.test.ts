// `refgpt generate` and generate() at the context limit, option checks before any output, one --json
// shape for the hf and modelscope modes, ModelScope streaming equal to its --json text, the summary line,
// a folder with config.json only, and GenerateOptions without an index signature (issue 14).
// Expected values come from the golden fixtures (transformers' / ModelScope's outputs) or from an
// independent greedy loop on Session.forward + argmax, never from generate() itself.
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import {
  UsageError,
  argmax,
  cleanUpWordPiece,
  generate,
  generateStream,
  loadModel,
  loadTokenizer,
  modelscopePostprocess,
  removeSpaceBetweenChineseChars,
  TextStream,
  type Model,
} from '@refgpt/core'
import { loadGolden, modelDir, refgpt } from './helpers.js'

const GPT2 = modelDir('gpt2-tiny')
const MS = modelDir('gpt3-ms-tiny')
const g = loadGolden('gpt2-tiny').json
const gm = JSON.parse(readFileSync(join(MS, 'golden.json'), 'utf8'))
const P1: number[] = g.prompts.p1.ids // "Hello, I'm a language model" (7 tokens)
const GREEDY_P1: number[] = g.greedy.p1.new_tokens // transformers' 20 greedy tokens after P1
const CONTEXT = 128 // gpt2-tiny n_positions

/** A prompt of n real tokens: the golden prompts, repeated. */
function longPrompt(n: number): number[] {
  const pool = [...g.prompts.p2.ids, ...g.prompts.p1.ids, ...g.prompts.p3.ids]
  return Array.from({ length: n }, (_, i) => pool[i % pool.length])
}

/** Greedy tokens by hand (Session.forward + argmax), stopping at `limit` total positions or after `n` new tokens. */
async function greedyByHand(model: Model, prompt: number[], n: number, limit = model.info.maxContext): Promise<number[]> {
  const s = model.createSession()
  try {
    const out: number[] = []
    let logits = await s.forward(prompt, 0)
    while (out.length < n && prompt.length + out.length < limit) {
      const t = argmax(logits)
      out.push(t)
      if (out.length < n && prompt.length + out.length < limit) logits = await s.forward([t], prompt.length + out.length - 1)
    }
    return out
  } finally {
    s.dispose()
  }
}

async function rejectsWith(fn: () => unknown, re: RegExp, label: string): Promise<UsageError> {
  let err: unknown = null
  try {
    await fn()
  } catch (e) {
    err = e
  }
  assert.ok(err instanceof UsageError, `${label}: expected a UsageError, got ${(err as Error)?.name}: ${(err as Error)?.message}`)
  assert.match((err as Error).message, re, label)
  return err as UsageError
}

/** Runs the CLI and parses its --json stdout (one line). */
function jsonRun(args: string[]) {
  const r = refgpt(args)
  assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  const lines = r.stdout.trim().split('\n')
  assert.is(lines.length, 1, 'one JSON object on stdout')
  return { out: JSON.parse(lines[0]), stderr: r.stderr }
}

const ids = (a: number[]) => a.join(',')

// --- 1. the library at the context ---------------------------------------------------------------

const lib = suite('generate() at the context limit')
let model: Model, short: Model
lib.before(async () => {
  model = await loadModel(GPT2)
  short = await loadModel(GPT2, { maxContext: 16 })
})
lib.after(async () => {
  await model.dispose()
  await short.dispose()
})

lib('the context ends generation before max_new_tokens: finishReason "context", the tokens transformers gives', async () => {
  const r = await generate(short, P1, { max_new_tokens: 20 })
  assert.is(r.finishReason, 'context')
  assert.equal(r.newTokens, GREEDY_P1.slice(0, 16 - P1.length))
  // max_length past the context is 'context' too; reaching the requested length exactly is 'length' (HF)
  assert.is((await generate(short, P1, { max_length: 30 })).finishReason, 'context')
  const exact = await generate(short, P1, { max_new_tokens: 16 - P1.length })
  assert.is(exact.finishReason, 'length')
  assert.equal(exact.newTokens, GREEDY_P1.slice(0, 9))
  assert.is((await generate(short, P1, { max_length: 12 })).finishReason, 'length')
  // the full context: a 120-token prompt gets 8 tokens of the 20 asked for
  const p = longPrompt(120)
  const full = await generate(model, p, { maxNewTokens: 20 })
  assert.is(full.finishReason, 'context')
  assert.equal(full.newTokens, await greedyByHand(model, p, 20))
  assert.is(full.newTokens.length, 8)
})

lib('generateStream and beam search report "context" too', async () => {
  const seen: number[] = []
  const it = generateStream(short, P1, { max_new_tokens: 20 })
  let step = await it.next()
  while (!step.done) {
    seen.push(step.value.id)
    step = await it.next()
  }
  assert.equal(seen, GREEDY_P1.slice(0, 9))
  assert.is(step.value.finishReason, 'context')
  const beam = await generate(short, P1, { num_beams: 3, num_return_sequences: 3, max_new_tokens: 20 })
  assert.ok(beam.sequences.some((s) => s.finishReason === 'context'), 'a beam reached the context')
  for (const s of beam.sequences) {
    const real = s.ids.length - s.start
    assert.ok(s.finishReason === 'eos' || (s.finishReason === 'context' && real === 16), `${s.finishReason} with ${real} positions`)
  }
  // within the context beam search keeps HF's 'length'
  const ok = await generate(model, P1, { num_beams: 3, num_return_sequences: 3, max_new_tokens: 12, early_stopping: true })
  assert.equal(ok.sequences.map((s) => s.ids), g.beam['p1.num_beams3.return3'].sequences)
  assert.ok(ok.sequences.every((s) => s.finishReason !== 'context'))
})

lib('a prompt that leaves no room for a new token is a UsageError before anything runs (greedy, sampling, beams, stream)', async () => {
  const full = longPrompt(CONTEXT)
  for (const opts of [{ max_new_tokens: 5 }, { do_sample: true, seed: 1 }, { num_beams: 2 }, { max_new_tokens: 0 }])
    await rejectsWith(() => generate(model, full, opts), /does not fit the context \(expected at most 127 tokens.*found 128 tokens\)/, JSON.stringify(opts))
  await rejectsWith(() => generate(model, [P1, longPrompt(200)], {}), /generate: the prompt does not fit the context \(prompt 1\)/, 'batch')
  await rejectsWith(() => generateStream(model, full, {}).next(), /does not fit the context/, 'stream')
  await rejectsWith(() => generate(short, longPrompt(16), {}), /at most 15 tokens: the context has 16 positions/, 'maxContext 16')
  // 127 tokens fit: one new token, ended by the context
  const last = await generate(model, full.slice(1), { max_new_tokens: 5 })
  assert.equal(last.newTokens, await greedyByHand(model, full.slice(1), 1))
  assert.is(last.finishReason, 'context')
  await rejectsWith(() => generate(model, [1, 2, 99999], {}), /token id out of range in prompt 0 at index 2/, 'bad id')
})

lib('unknown options: a UsageError naming the key, with the closest known spelling', async () => {
  const e1 = await rejectsWith(() => generate(model, P1, { max_new_tokenz: 3 } as never), /unknown generation option "max_new_tokenz"/, 'snake')
  assert.match(e1.message, /did you mean "max_new_tokens"\?/)
  const e2 = await rejectsWith(() => generate(model, P1, { maxNewTokenz: 3 } as never), /unknown generation option "maxNewTokenz"/, 'camel')
  assert.match(e2.message, /did you mean "maxNewTokens"\?/)
  const e3 = await rejectsWith(() => generate(model, P1, { tempreature: 0.7 } as never), /did you mean "temperature"/, 'swap')
  assert.ok(e3.message.split('\n').length === 1)
  const e4 = await rejectsWith(() => generate(model, P1, { frobnicate: 1 } as never), /unknown generation option "frobnicate"; hint: known/, 'far')
  assert.not.match(e4.message, /did you mean/)
  // both spellings of every key still work
  const a = await generate(model, P1, { maxNewTokens: 3, eosTokenId: 50256, noRepeatNgramSize: 0, topK: 5 })
  const b = await generate(model, P1, { max_new_tokens: 3, eos_token_id: 50256, no_repeat_ngram_size: 0, top_k: 5 })
  assert.equal(a.newTokens, GREEDY_P1.slice(0, 3))
  assert.equal(b.newTokens, a.newTokens)
})

lib('GenerateOptions has no index signature: a misspelt key is a type error, every spelling type-checks', () => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const file = join(root, 'test', '__generate_options_check__.ts')
  const source = `import { generate, pipeline, type GenerateOptions, type Model } from '@refgpt/core'
declare const model: Model
export async function ok() {
  await generate(model, [1, 2], { max_new_tokens: 5, maxNewTokens: 5, do_sample: true, doSample: true, top_p: 0.9, topP: 0.9,
    eos_token_id: [1, 2], eosTokenId: null, bad_words_ids: [[3]], badWordsIds: null, stop_strings: 'x', stopStrings: ['y'],
    early_stopping: 'never', earlyStopping: true, seed: 1, onToken: (id: number, row: number) => void (id + row) })
  const kwargs: Record<string, unknown> = {}
  await generate(model, [1], { ...kwargs }) // pipeline() passes its kwargs like this
  const o: GenerateOptions = { minNewTokens: 1, min_new_tokens: 1, typicalP: 1, epsilonCutoff: 0, etaCutoff: 0, minP: null, lengthPenalty: 1, numBeams: 1, numReturnSequences: 1, repetitionPenalty: 1, padTokenId: 0, bosTokenId: 0, maxLength: 9, minLength: 0, temperature: 1 }
  void o
  void pipeline
}
export async function bad() {
  await generate(model, [1, 2], { maxNewTokenz: 5 }) // L1
  await generate(model, [1, 2], { max_new_tokens: 'five' }) // L2
}
`
  const options: ts.CompilerOptions = { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, strict: true, noEmit: true, skipLibCheck: true, types: ['node'] }
  const host = ts.createCompilerHost(options)
  const read = host.readFile.bind(host), exists = host.fileExists.bind(host), get = host.getSourceFile.bind(host)
  host.readFile = (f) => (f === file ? source : read(f))
  host.fileExists = (f) => f === file || exists(f)
  host.getSourceFile = (f, lang, ...rest) => (f === file ? ts.createSourceFile(f, source, lang) : get(f, lang, ...rest))
  const program = ts.createProgram([file], options, host)
  const diags = ts.getPreEmitDiagnostics(program).filter((d) => d.file?.fileName === file)
  const lineOf = (d: ts.Diagnostic) => source.split('\n')[d.file!.getLineAndCharacterOfPosition(d.start!).line]
  const text = diags.map((d) => `${lineOf(d).trim()}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`)
  assert.is(diags.length, 2, text.join('\n'))
  assert.ok(lineOf(diags[0]).includes('// L1') && /maxNewTokenz/.test(text[0]), text[0])
  assert.ok(lineOf(diags[1]).includes('// L2'), text[1])
})

lib.run()

// --- 2. the CLI at the context -------------------------------------------------------------------

const ctx = suite('refgpt generate at the context limit')
let cliModel: Model
ctx.before(async () => {
  cliModel = await loadModel(GPT2)
})
ctx.after(() => cliModel.dispose())

ctx('-n 20 on a 120-token prompt: 8 new tokens, finish_reason "context", one warning line on stderr', async () => {
  const p = longPrompt(120)
  const { out, stderr } = jsonRun(['generate', '--model', GPT2, '--prompt-ids', ids(p), '-n', '20', '--json'])
  const s = out.sequences[0]
  assert.equal(s.new_ids, await greedyByHand(cliModel, p, 20))
  assert.is(s.new_ids.length, 8)
  assert.is(s.finish_reason, 'context')
  assert.equal(s.ids, [...p, ...s.new_ids])
  assert.is(out.context, CONTEXT)
  const lines = stderr.trimEnd().split('\n')
  assert.is(lines.length, 1, stderr)
  assert.match(lines[0], /^refgpt: warning: the context of 128 positions ended generation after 8 of the 20 new tokens asked for \(finish_reason "context"\)/)
  assert.match(lines[0], /--truncate left/)
  // the plain output warns the same way, after the text
  const plain = refgpt(['generate', '--model', GPT2, '--prompt-ids', ids(p), '-n', '20'])
  assert.is(plain.code, 0)
  assert.is(plain.stdout, loadTokenizer(GPT2).decode([...p, ...s.new_ids]) + '\n')
  assert.is(plain.stderr, stderr)
})

ctx('--max-length 200 is not silently 128: "context" and a warning; --max-context lowers the context', async () => {
  const { out, stderr } = jsonRun(['generate', '--model', GPT2, '--prompt-ids', ids(P1), '--max-length', '200', '--json'])
  const s = out.sequences[0]
  assert.is(s.ids.length, CONTEXT)
  assert.equal(s.new_ids.slice(0, 20), GREEDY_P1)
  assert.is(s.finish_reason, 'context')
  assert.match(stderr, /after 121 of the 193 new tokens asked for/)
  const lowered = jsonRun(['generate', '--model', GPT2, '--prompt-ids', ids(P1), '-n', '20', '--max-context', '16', '--json'])
  assert.equal(lowered.out.sequences[0].new_ids, GREEDY_P1.slice(0, 9))
  assert.is(lowered.out.sequences[0].finish_reason, 'context')
  assert.is(lowered.out.context, 16)
  assert.match(lowered.stderr, /context of 16 positions ended generation after 9 of the 20/)
  // beams stop there too
  const beams = jsonRun(['generate', '--model', GPT2, '--prompt-ids', ids(P1), '-n', '20', '--max-context', '16', '--num-beams', '3', '--json'])
  assert.is(beams.out.sequences[0].finish_reason, 'context')
  assert.is(beams.out.sequences[0].ids.length, 16)
  // asked within the context: no warning, "length"
  const fits = jsonRun(['generate', '--model', GPT2, '--prompt-ids', ids(P1), '-n', '9', '--max-context', '16', '--json'])
  assert.is(fits.out.sequences[0].finish_reason, 'length')
  assert.is(fits.stderr, '')
})

ctx('a prompt of the context length or longer is refused before anything is printed, unless --truncate left', async () => {
  for (const n of [CONTEXT, 130])
    for (const extra of [[], ['--json']]) {
      const r = refgpt(['generate', '--model', GPT2, '--prompt-ids', ids(longPrompt(n)), '-n', '5', ...extra])
      assert.is(r.code, 2, r.stderr)
      assert.is(r.stdout, '')
      assert.is(r.stderr.trimEnd().split('\n').length, 1, r.stderr)
      assert.match(r.stderr, new RegExp(`^refgpt: error: refgpt generate: the prompt does not fit the context \\(expected at most 127 tokens.*found ${n} tokens\\); hint: pass --truncate left`))
    }
  // a text prompt too (it used to be printed before the error)
  const tok = loadTokenizer(GPT2)
  const text = 'the quick brown fox jumps over the lazy dog. '.repeat(20)
  assert.ok(tok.encode(text).length >= CONTEXT)
  const r = refgpt(['generate', '--model', GPT2, text])
  assert.is(r.code, 2)
  assert.is(r.stdout, '')
})

ctx('--truncate left keeps the last context - N tokens so the N new tokens fit, with a note on stderr', async () => {
  const p = longPrompt(130)
  const { out, stderr } = jsonRun(['generate', '--model', GPT2, '--prompt-ids', ids(p), '-n', '20', '--truncate', 'left', '--json'])
  const s = out.sequences[0]
  const kept = p.slice(130 - 108)
  assert.equal(s.ids, [...kept, ...(await greedyByHand(cliModel, kept, 20))])
  assert.is(s.new_ids.length, 20)
  assert.is(s.finish_reason, 'length')
  assert.is(s.prompt_tokens_dropped, 22)
  assert.is(stderr, 'refgpt: note: --truncate left: dropped the first 22 of 130 prompt tokens, keeping 108, so that the 20 new tokens fit in the context of 128\n')
  // a prompt that fits but leaves too little room is cut too (120 tokens, 20 asked: 12 dropped)
  const q = longPrompt(120)
  const cut = jsonRun(['generate', '--model', GPT2, '--prompt-ids', ids(q), '-n', '20', '--truncate', 'left', '--json'])
  assert.equal(cut.out.sequences[0].ids.slice(0, 108), q.slice(12))
  assert.is(cut.out.sequences[0].finish_reason, 'length')
  // more new tokens than the context holds: one prompt token is kept, context - 1 new tokens, then "context"
  const many = jsonRun(['generate', '--model', GPT2, '--prompt-ids', ids(longPrompt(50)), '-n', '200', '--truncate', 'left', '--json'])
  assert.equal(many.out.sequences[0].ids.slice(0, 1), longPrompt(50).slice(49))
  assert.is(many.out.sequences[0].new_ids.length, 127)
  assert.is(many.out.sequences[0].finish_reason, 'context')
  assert.match(many.stderr, /^refgpt: note: --truncate left: dropped the first 49 of 50 prompt tokens, keeping 1, so that 127 of the 200 new tokens fit/)
  assert.match(many.stderr, /\nrefgpt: warning: the context of 128 positions ended generation after 127 of the 200/)
  // a short prompt is left alone, without a note
  const same = jsonRun(['generate', '--model', GPT2, '--prompt-ids', ids(P1), '-n', '20', '--truncate', 'left', '--json'])
  assert.equal(same.out.sequences[0].new_ids, GREEDY_P1)
  assert.is(same.stderr, '')
})

ctx.run()

// --- 3. every option checked before any output --------------------------------------------------

const early = suite('refgpt generate: options checked before any output')
early('bad sampling values, an empty stop string and an over-long prompt: exit 2, empty stdout, one stderr line', () => {
  const cases: [string[], RegExp][] = [
    [['--do-sample', '--temperature', '0'], /invalid temperature/],
    [['--top-p', '2'], /invalid top_p/],
    [['--do-sample', '--top-p', '2'], /invalid top_p/],
    [['--top-k', '5', '--typical-p', '0'], /invalid typical_p/],
    [['--stop', ''], /bad stop_strings/],
    [['--num-beams', '2', '--do-sample'], /beam sampling/],
    [['--bad-words', '99999999'], /bad_words_ids/],
    [['--prompt-ids', '1,2,60000'], /token id out of range/],
    [['--truncate', 'right'], /bad --truncate/],
  ]
  for (const [args, re] of cases) {
    for (const json of [[], ['--json']]) {
      const r = refgpt(['generate', '--model', GPT2, ...(args[0] === '--prompt-ids' ? [] : ['Hello, world']), ...args, '-n', '3', ...json])
      const label = args.join(' ')
      assert.is(r.code, 2, `${label}: ${r.stderr}`)
      assert.is(r.stdout, '', `${label}: stdout`)
      const lines = r.stderr.trimEnd().split('\n')
      assert.is(lines.length, 1, `${label}: ${r.stderr}`)
      assert.match(lines[0], /^refgpt: error: /)
      assert.match(lines[0], re, label)
    }
  }
  // temperature 0 without --do-sample is greedy search, as in transformers (the value is unused)
  const greedy = refgpt(['generate', '--model', GPT2, '--prompt-ids', ids(P1), '-n', '5', '--temperature', '0'])
  assert.is(greedy.code, 0, greedy.stderr)
  assert.is(greedy.stdout, loadTokenizer(GPT2).decode([...P1, ...GREEDY_P1.slice(0, 5)]) + '\n')
})
early.run()

// --- 4. one --json shape --------------------------------------------------------------------------

const shape = suite('refgpt generate --json: one shape for every mode')
const SEQ_KEYS = ['finish_reason', 'ids', 'new_ids', 'prompt', 'text']
const TIMING_KEYS = ['decode_ms', 'decode_tokens_per_s', 'load_ms', 'new_tokens', 'prefill_ms', 'prefill_tokens_per_s', 'prompt_tokens']

shape('batched hf: ids are prompt + new ids without left padding, new_ids without the pad after an early eos', () => {
  const b = g.batched
  const tok = loadTokenizer(GPT2)
  const prompts: number[][] = b.rows.map((p: string) => g.prompts[p].ids)
  const padded = Math.max(...prompts.map((p) => p.length))
  for (const [settings, want, eos] of [[b.greedy.settings, b.greedy.sequences, []], [b.greedy_eos.settings, b.greedy_eos.sequences, ['--eos-token-id', '38840']]] as const) {
    const { out } = jsonRun(['generate', '--model', GPT2, '-n', String(settings.max_new_tokens), '--json', ...eos, ...prompts.flatMap((p) => ['--prompt-ids', ids(p)])])
    assert.is(out.sequences.length, 3)
    out.sequences.forEach((s: any, i: number) => {
      // transformers' row: left padding, prompt, new tokens, then pad after an eos
      const row: number[] = want[i].slice(padded - prompts[i].length)
      const newPart = row.slice(prompts[i].length)
      const stop = eos.length ? newPart.indexOf(38840) : -1
      const expectedNew = stop >= 0 ? newPart.slice(0, stop + 1) : newPart
      assert.equal(s.new_ids, expectedNew, `row ${i} new_ids`)
      assert.equal(s.ids, [...prompts[i], ...expectedNew], `row ${i} ids`)
      assert.is(s.prompt, i)
      assert.is(s.text, tok.decode(s.ids))
      assert.is(s.finish_reason, stop >= 0 ? 'eos' : 'length')
      assert.equal(Object.keys(s).sort(), SEQ_KEYS)
    })
    assert.equal(Object.keys(out.timings).sort(), TIMING_KEYS)
    assert.is(out.mode, 'hf')
  }
})

shape('modelscope mode has the same shape (ModelScope fields inside the sequence), with its golden ids and text', () => {
  const hf = jsonRun(['generate', '--model', GPT2, '--prompt-ids', ids(P1), '-n', '3', '--json']).out
  for (const c of gm.pipeline_cases.slice(0, 8)) {
    const args = ['generate', '--model', MS, c.text, '--top-k', '1', '--top-p', '0', '--json', ...(c.call_kwargs.max_length ? ['--max-length', String(c.call_kwargs.max_length)] : [])]
    const { out } = jsonRun(args)
    assert.equal(Object.keys(out).sort(), Object.keys(hf).sort())
    assert.equal(Object.keys(out.timings).sort(), TIMING_KEYS)
    assert.is(out.mode, 'modelscope')
    assert.is(out.sequences.length, 1)
    const s = out.sequences[0]
    for (const k of SEQ_KEYS) assert.ok(k in s, `sequence has ${k}`)
    assert.equal(s.ids, c.output_sequence)
    assert.is(s.text, c.text_out)
    assert.is(s.decoded, c.decoded)
    assert.is(s.prompt_length, c.prompt_length)
    assert.equal(s.new_ids, c.output_sequence.slice(c.prompt_length))
    assert.is(out.timings.prompt_tokens, c.prompt_length)
    // eod (id 1) is the eos; without it the 64 positions or max_length ended the run
    const reason = c.output_sequence.at(-1) === 1 ? 'eos' : c.call_kwargs.max_length && c.output_sequence.length === c.call_kwargs.max_length ? 'length' : 'context'
    assert.is(s.finish_reason, reason, `${c.text} ${JSON.stringify(c.call_kwargs)}`)
    if (reason === 'context') assert.is(s.ids.length, 64)
  }
})
shape.run()

// --- 5. ModelScope streaming ------------------------------------------------------------------------

const stream = suite('refgpt generate (modelscope): the stream is the --json text')
stream('stdout equals the --json text for several seeds and prompts, "##" pieces included', () => {
  const vocab = readFileSync(join(MS, 'vocab.txt'), 'utf8').split('\n')
  let wordpieces = 0
  for (const prompt of ['今天终于拿到驾照了,求夸 | ', 'hello world', '《故乡》。深蓝的天空中', "don't stop, it's fine."])
    for (const seed of [1, 2, 3, 5, 8]) {
      const args = ['generate', '--model', MS, prompt, '--seed', String(seed)]
      const plain = refgpt(args)
      assert.is(plain.code, 0, plain.stderr)
      const s = jsonRun([...args, '--json']).out.sequences[0]
      assert.is(plain.stdout, s.text + '\n', `${prompt} seed ${seed}`)
      if (s.new_ids.some((id: number) => vocab[id]?.startsWith('##'))) {
        wordpieces++
        assert.not.match(plain.stdout, /##/)
      }
    }
  assert.ok(wordpieces >= 3, `runs with "##" pieces: ${wordpieces}`)
})

stream('TextStream prints as tokens come, never takes back what it printed, and ends with the whole text', () => {
  const tok = loadTokenizer(MS)
  const vocab = readFileSync(join(MS, 'vocab.txt'), 'utf8').split('\n')
  // pieces that post-processing joins or rewrites: "##x", apostrophes, punctuation, n / t / s
  const tricky = vocab.map((t, i) => [t, i] as const).filter(([t]) => /^##|^['.,!?ntsm]$/.test(t)).map(([, i]) => i)
  let a = 12345
  const rand = () => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0), a / 2 ** 32)
  let early = 0
  for (let trial = 0; trial < 400; trial++) {
    const seq = [101, ...tok.encode(['今天', 'hello', "don ' t", ''][trial % 4])]
    // the CLI's renderer: decode with special tokens skipped, then ModelScope's clean-up and Chinese space removal
    const st = new TextStream((x) => tok.decode(x, { skipSpecialTokens: true }), (d) => removeSpaceBetweenChineseChars(cleanUpWordPiece(d)))
    let shown = ''
    for (let k = 0; k < 25; k++) {
      seq.push(rand() < 0.5 ? tricky[Math.floor(rand() * tricky.length)] : Math.floor(rand() * vocab.length))
      shown += st.push(seq)
      const now = modelscopePostprocess(tok, seq).text
      assert.ok(now.startsWith(shown), `${JSON.stringify(shown)} is not a prefix of ${JSON.stringify(now)}`)
    }
    if (shown.length > 0) early++
    const final = modelscopePostprocess(tok, seq).text
    assert.is(shown + st.end(final), final)
  }
  assert.ok(early > 300, `text shown before the end in ${early} of 400 runs`)
})

stream.run()

// --- 6. the summary line ------------------------------------------------------------------------------

const sum = suite('refgpt generate: the summary line')
sum('--verbose prints one llama.cpp-style line on stderr; without it (not a terminal) stderr stays empty', () => {
  const { out, stderr } = jsonRun(['generate', '--model', GPT2, '--prompt-ids', ids(P1), '-n', '20', '--json', '--verbose'])
  const lines = stderr.trimEnd().split('\n')
  assert.is(lines.length, 1, stderr)
  const m = /^refgpt: load (\d+) ms \| prompt (\d+) tokens in ([\d.]+) ms \(([\d.]+) tok\/s\) \| generated (\d+) tokens in ([\d.]+) ms \(([\d.]+) tok\/s\) \| finish (\w+)$/.exec(lines[0])
  assert.ok(m, lines[0])
  assert.is(Number(m![2]), P1.length)
  assert.is(Number(m![5]), 20)
  assert.is(m![8], 'length')
  // the rates are the counts over the times the line shows
  assert.ok(Math.abs(Number(m![7]) - (20 * 1000) / Number(m![6])) <= 0.1 * Number(m![7]) + 0.2, lines[0])
  assert.is(out.timings.new_tokens, 20)
  const plain = refgpt(['generate', '--model', GPT2, '--prompt-ids', ids(P1), '-n', '20', '--verbose'])
  assert.match(plain.stderr, /^refgpt: load \d+ ms \| prompt 7 tokens .* \| finish length\n$/)
  for (const args of [['--json'], []]) {
    const quiet = refgpt(['generate', '--model', GPT2, '--prompt-ids', ids(P1), '-n', '20', ...args])
    assert.is(quiet.code, 0)
    assert.is(quiet.stderr, '')
  }
  const ms = refgpt(['generate', '--model', MS, '今天', '--top-k', '1', '--top-p', '0', '--max-length', '20', '--verbose'])
  assert.match(ms.stderr, /^refgpt: load \d+ ms \| prompt 3 tokens .* \| finish (eos|length)\n$/)
})
sum.run()

// --- 7. a folder with config.json only ------------------------------------------------------------------

const folder = suite('refgpt generate: a folder with config.json only')
folder('one line names the missing tokenizer and the missing weights; with --prompt-ids only the weights', () => {
  const dir = mkdtempSync(join(tmpdir(), 'refgpt-config-only-'))
  try {
    copyFileSync(join(GPT2, 'config.json'), join(dir, 'config.json'))
    const r = refgpt(['generate', '--model', dir, 'Hello'])
    assert.is(r.code, 1)
    assert.is(r.stdout, '')
    const lines = r.stderr.trimEnd().split('\n')
    assert.is(lines.length, 1, r.stderr)
    assert.match(lines[0], /^refgpt: error: .*: the model folder has no tokenizer and no model weights \(expected tokenizer\.json or vocab\.json \+ merges\.txt, and one of model\.safetensors/)
    const ids = refgpt(['generate', '--model', dir, '--prompt-ids', '1,2'])
    assert.is(ids.code, 1)
    assert.is(ids.stderr.trimEnd().split('\n').length, 1)
    assert.match(ids.stderr, /no model weights found/)
    assert.not.match(ids.stderr, /tokenizer/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
folder.run()
