// refgpt generate: text in, text out, with transformers' generate() options, streamed token by token.
//
// Order of work: parse and check every option, read the folder's config and checkpoint headers
// (inspectModel: no weights are read), tokenize, apply --truncate, and check the whole generation as
// generate() will (Generation.check: the resolved config, the processors' values, the prompts against
// the context) -- all before the weights load and before the first byte on stdout. A bad option is
// then one line on stderr, exit 2, and nothing on stdout.

import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  CheckpointError,
  ConfigError,
  Generation,
  RefgptError,
  StreamDecoder,
  TextStream,
  UsageError,
  cleanUpWordPiece,
  describeChain,
  generate,
  insideFolder,
  resolveGenerationConfig,
  inspectModel,
  modelscopeEncode,
  modelscopeGenerate,
  modelscopeSequenceLength,
  readJsonFile,
  removeSpaceBetweenChineseChars,
  show,
  type GenerateOptions,
  type GenerateResult,
  type Tokenizer,
} from '@refgpt/core'
import { idList, intOption, parse } from '../args.js'
import { checkModelscopeModel, isModelscopeDir, modelscopeOptions, wordpieceTokenizer } from './chat.js'
import { CONTEXT_HELP, CONTEXT_OPTIONS, MODEL_OPTIONS, load, loadOptions, maybeTokenizer, modelHelp, modelOptions, requireTokenizer } from './common.js'

export const summary = 'generate text (greedy, sampling or beam search), streaming it as it is made'

export const help = `Usage: refgpt generate [--model DIR] [PROMPT] [options]

Continues PROMPT with transformers' generate() semantics and prints the prompt and the new text as the
tokens are made (one sequence), or every sequence at the end (batches, beams, several samples).
Several prompts (--prompt / --prompt-ids repeated, or --prompts-file) run as one left-padded batch.
Defaults come from the folder's generation_config.json / config.json, as transformers reads them.
Every option is checked before the model loads and before anything is printed.

Prompts:
      --prompt TEXT             a prompt (repeatable; the positional PROMPT is one more)
      --prompt-ids IDS          a prompt as comma-separated token ids (repeatable)
      --prompts-file FILE       one prompt per line
Length and stopping:
  -n, --max-new-tokens N        new tokens at most (default 50 here when no length option is given)
      --max-length N            prompt + new tokens at most (HF's max_length)
      --min-length N, --min-new-tokens N
      --eos-token-id IDS        stop ids (comma-separated); default: the model's eos
      --stop TEXT               stop string (repeatable): stop after the token that completes it
Context (the positions a sequence may use: n_positions, or --max-context):
      --truncate none|left      none (default): a prompt that leaves no room for a new token (as long as
                                the context or longer) is refused. left: keep the prompt's last tokens,
                                as many as let the N requested new tokens fit (context - N; N is
                                --max-new-tokens, or --max-length minus the prompt), at least 1 and at
                                most context - 1; a note on stderr says what was dropped. When the context
                                ends generation before the requested length, finish_reason is "context"
                                (not "length") and a warning goes to stderr.
Search and sampling:
      --do-sample               sample instead of greedy search (top-k 50 unless set, as transformers)
      --seed N                  PRNG seed (default: random; --json reports it)
      --temperature T  --top-k K  --top-p P  --typical-p P  --min-p P  --epsilon-cutoff E  --eta-cutoff E
      --repetition-penalty R  --no-repeat-ngram-size N  --bad-words IDS (';'-separated id lists: 1,2;7)
      --num-beams N  --length-penalty L  --early-stopping (true|false|never)
      --num-return-sequences N
                                values out of range are refused even without --do-sample (temperature 0
                                is accepted there: greedy search ignores it)
 ModelScope folders (configuration.json + vocab.txt, e.g. Chinese GPT-3 / kuakua):
      --generation MODE         hf | modelscope (default: modelscope for ModelScope folders, else hf).
                                modelscope = ModelScope's text-generation pipeline: [CLS] prompt [SEP]
                                padded to sequence_length, top_k/top_p from config.json (default nucleus
                                0.9; greedy is --top-k 1 --top-p 0), --max-length caps the total incl. the
                                padded prompt (default + 100; -n N caps at prompt + N), stop at eod_id,
                                prints the whole text (prompt included) without spaces between Chinese
                                chars, streamed: what later tokens can still change is held back
Output:
      --json                    print one JSON object (the same shape in both modes):
                                {"sequences":[{"prompt","ids","text","new_ids","finish_reason"(,"score")}],
                                 "seed","timings":{...},"mode","context"}; ids = prompt + new ids (no padding)
      --verbose                 also a summary line on stderr (load ms, prompt and generation tokens and
                                tok/s, finish reason); printed without --verbose when stderr is a terminal
${CONTEXT_HELP}${modelHelp('generate')}
Examples:
  refgpt generate "Hello, I'm a language model,"
  refgpt generate --model ./gpt-neo-125M --do-sample --top-p 0.9 --seed 42 -n 40 "EleutherAI has"
  refgpt generate --num-beams 4 --num-return-sequences 2 --json "The quick brown fox"
`

const FLOATS = ['temperature', 'top-p', 'typical-p', 'min-p', 'epsilon-cutoff', 'eta-cutoff', 'repetition-penalty', 'length-penalty']
const INTS = ['top-k', 'no-repeat-ngram-size', 'num-beams', 'num-return-sequences', 'min-length', 'min-new-tokens', 'max-length', 'seed']
/** Sampling options the CLI checks even without --do-sample (transformers ignores them then; a value out of range is still a mistake). */
const WARPERS = ['temperature', 'top_k', 'top_p', 'typical_p', 'min_p', 'epsilon_cutoff', 'eta_cutoff']

type Shape = Parameters<typeof Generation.check>[0]
type FinishReason = GenerateResult['finishReason']

export async function run(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse('generate', argv, {
    ...MODEL_OPTIONS,
    ...CONTEXT_OPTIONS,
    prompt: { type: 'string', multiple: true },
    'prompt-ids': { type: 'string', multiple: true },
    'prompts-file': { type: 'string' },
    'max-new-tokens': { type: 'string', short: 'n' },
    'eos-token-id': { type: 'string' },
    stop: { type: 'string', multiple: true },
    'do-sample': { type: 'boolean' },
    'bad-words': { type: 'string' },
    'early-stopping': { type: 'string' },
    truncate: { type: 'string' },
    json: { type: 'boolean' },
    generation: { type: 'string' },
    ...Object.fromEntries([...FLOATS, ...INTS].map((k) => [k, { type: 'string' as const }])),
  })
  const json = v.json === true
  const mo = modelOptions('generate', v)
  const { dir } = mo
  // the folder itself first: the tokenizer check below would only say "no tokenizer"
  if (!existsSync(dir)) throw new ConfigError({ where: dir, what: 'model folder not found', hint: 'pass a folder with config.json and model weights' })
  if (!existsSync(join(dir, 'config.json')))
    throw new ConfigError({ where: join(dir, 'config.json'), what: 'not found', expected: 'a model folder with config.json', hint: 'pass the folder of a Hugging Face or ModelScope model' })
  const mode = (v.generation as string | undefined) ?? (isModelscopeDir(dir) ? 'modelscope' : 'hf')
  if (mode !== 'hf' && mode !== 'modelscope')
    throw new UsageError({ where: 'refgpt generate', what: 'bad --generation', expected: 'hf or modelscope', found: JSON.stringify(mode) })
  const report = new Reporter(v.verbose === true)
  if (mode === 'modelscope') return runModelscope(v, positionals, dir, json, mo, report)

  // --- the generation config, in transformers' snake_case ----------------------------------------
  const cfg: Record<string, unknown> = {}
  for (const k of FLOATS) if (v[k] !== undefined) cfg[k.replace(/-/g, '_')] = float(k, v[k] as string)
  for (const k of INTS) if (v[k] !== undefined) cfg[k.replace(/-/g, '_')] = intOption('generate', k, v[k] as string, 0)
  if (v['do-sample']) cfg.do_sample = true
  if (v['max-new-tokens'] !== undefined) cfg.max_new_tokens = intOption('generate', 'max-new-tokens', v['max-new-tokens'] as string, 0)
  else if (cfg.max_length === undefined) cfg.max_new_tokens = 50
  if (v['eos-token-id'] !== undefined) cfg.eos_token_id = idList('generate', 'eos-token-id', v['eos-token-id'] as string)
  if (v['bad-words'] !== undefined) cfg.bad_words_ids = (v['bad-words'] as string).split(';').map((s) => idList('generate', 'bad-words', s))
  if (v['early-stopping'] !== undefined) cfg.early_stopping = choice('early-stopping', v['early-stopping'] as string, { true: true, false: false, never: 'never' })
  const stops = v.stop as string[] | undefined
  if (stops !== undefined) cfg.stop_strings = stops
  const truncate = v.truncate === undefined ? null : choice('truncate', v.truncate as string, { left: 'left' as const, none: null })
  checkWarpers(cfg)

  // --- prompts ---------------------------------------------------------------------------------
  const texts: string[] = [...((v.prompt as string[] | undefined) ?? [])]
  if (positionals.length) texts.push(positionals.join(' '))
  if (v['prompts-file'] !== undefined) for (const t of readPromptsFile(v['prompts-file'] as string)) texts.push(t)
  const idPrompts = ((v['prompt-ids'] as string[] | undefined) ?? []).map((s) => idList('generate', 'prompt-ids', s))

  // --- the folder: tokenizer, config.json and the checkpoint headers (no weights read yet) --------
  const tok = maybeTokenizer(dir, mo)
  const needTokenizer = texts.length > 0 || stops !== undefined
  const shape = inspectFolder(dir, mo, needTokenizer && !tok)
  if (needTokenizer && !tok) requireTokenizer(dir, 'generate', mo) // throws the clear error
  const context = shape.info.maxContext

  const prompts = [...texts.map((t) => tok!.encode(t)), ...idPrompts]
  if (prompts.length === 0) prompts.push(shape.bosTokenId === null ? [] : [shape.bosTokenId]) // as generate() without input_ids
  // --truncate left: what each prompt drops, computed on the resolved config (the folder's max_length counts)
  const dropped = prompts.map(() => 0)
  const notes: string[] = []
  if (truncate === 'left') {
    const c = resolveGenerationConfig(shape, cfg)
    prompts.forEach((p, i) => {
      const asked = c.max_new_tokens ?? Math.max(c.max_length - p.length, 0)
      const keep = Math.min(context - 1, Math.max(1, context - Math.max(asked, 1)))
      if (p.length <= keep) return
      dropped[i] = p.length - keep
      prompts[i] = p.slice(dropped[i])
      const fit = Math.min(asked, context - keep)
      notes.push(
        `--truncate left: ${prompts.length > 1 ? `prompt ${i}: ` : ''}dropped the first ${dropped[i]} of ${p.length} prompt tokens, keeping ${keep}, ` +
          `so that ${fit === asked ? `the ${asked} new tokens fit` : `${fit} of the ${asked} new tokens fit`} in the context of ${context}`,
      )
    })
  }
  const longest = prompts.reduce((m, p, i) => (p.length > prompts[m].length ? i : m), 0)
  if (prompts[longest].length >= context)
    throw new UsageError({
      where: 'refgpt generate',
      what: `the prompt does not fit the context${prompts.length > 1 ? ` (prompt ${longest})` : ''}`,
      expected: `at most ${context - 1} tokens: the context has ${context} positions${mo.maxContext !== undefined ? ' (--max-context)' : ''} and one is needed for a new token`,
      found: `${prompts[longest].length} tokens`,
      hint: 'pass --truncate left to keep the last tokens of the prompt, or shorten it',
    })
  // everything generate() checks, on the folder's description: options, processors, prompts, context
  const plan = Generation.check(shape, prompts, { ...(cfg as GenerateOptions), tokenizer: tok ?? undefined })
  for (const n of notes) report.note(n)

  const t0 = performance.now()
  const model = await load('generate', v)
  const loadMs = performance.now() - t0
  try {
    const c = plan.config
    const single = prompts.length === 1 && c.num_beams === 1 && c.num_return_sequences === 1
    const out = process.stdout
    const printer = !json && single ? streamPrinter(tok, prompts[0], texts.length + idPrompts.length > 0, (s) => out.write(s)) : null
    const r: GenerateResult = await generate(model, prompts, { ...(cfg as GenerateOptions), onToken: printer?.token, tokenizer: tok ?? undefined })
    const seqs = sequences(r, prompts, tok)
    if (json) out.write(JSON.stringify(jsonReport(r, seqs, dropped, loadMs, context)) + '\n')
    else if (printer) printer.end(seqs[0].text)
    else printAll(r, seqs)
    contextWarning(report, r.sequences.map((s) => ({ reason: s.finishReason, newTokens: s.newTokens.length })), {
      context, asked: plan.requested - plan.padded, canTruncate: truncate === null && plan.padded > 1,
    })
    report.summary(loadMs, r.timings, r.sequences.map((s) => s.finishReason))
  } finally {
    await model.dispose()
  }
}

// --- the folder, before loading -------------------------------------------------------------------

/**
 * What Generation.check needs, read from the folder without loading the weights: config.json, the
 * checkpoint headers (inspectModel: sizes, vocabulary, context as --max-context sets it) and
 * generation_config.json. A folder without a tokenizer (when the prompt is text) and without weights is
 * one error naming both.
 */
function inspectFolder(dir: string, mo: ReturnType<typeof modelOptions>, noTokenizer: boolean): Shape & { bosTokenId: number | null } {
  let info: ReturnType<typeof inspectModel>
  try {
    info = inspectModel(dir, loadOptions(mo))
  } catch (e) {
    if (!noTokenizer || !(e instanceof RefgptError)) throw e
    const d = e.details
    if (e instanceof CheckpointError && /no model weights/.test(d.what))
      throw new CheckpointError({
        where: dir,
        what: 'the model folder has no tokenizer and no model weights',
        expected: `tokenizer.json or vocab.json + merges.txt, and ${d.expected ?? 'model.safetensors or pytorch_model.bin'}`,
        found: d.found,
        hint: 'download the tokenizer and weight files of the model into this folder',
      })
    const Class = e.constructor as new (details: RefgptError['details'], o?: { cause?: unknown }) => RefgptError
    throw new Class({ ...d, what: `${d.what}; the folder has no tokenizer either (tokenizer.json or vocab.json + merges.txt)` }, { cause: e })
  }
  let generationConfig: Record<string, unknown> | null = null
  const file = join(info.dir, 'generation_config.json')
  if (existsSync(file)) {
    const j = readJsonFile(insideFolder(info.dir, 'generation_config.json', { followSymlinks: mo.followSymlinks }, ConfigError), 'generation config', ConfigError)
    if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new ConfigError({ where: file, what: 'generation_config.json is not a JSON object', found: show(j) })
    generationConfig = j as Record<string, unknown>
  }
  return { config: info.config, generationConfig, arch: info.arch, info: { maxContext: info.maxContext }, bosTokenId: info.arch.bosTokenId }
}

/** Sampling values the user typed must be in range even without --do-sample (temperature 0 aside: greedy search ignores it). */
function checkWarpers(cfg: Record<string, unknown>): void {
  const typed: Record<string, unknown> = {}
  for (const k of WARPERS) if (cfg[k] !== undefined) typed[k] = cfg[k]
  if (cfg.do_sample !== true && typed.temperature === 0) delete typed.temperature
  if (Object.keys(typed).length) describeChain({ ...typed, do_sample: true })
}

// --- output ---------------------------------------------------------------------------------------

interface SequenceOut {
  prompt: number
  /** prompt (as run, after --truncate) + new ids: no padding */
  ids: number[]
  newIds: number[]
  text: string | null
  finishReason: FinishReason
  score?: number
}

function sequences(r: GenerateResult, prompts: number[][], tok: Tokenizer | null): SequenceOut[] {
  return r.sequences.map((s) => {
    const ids = [...prompts[s.prompt], ...s.newTokens]
    return { prompt: s.prompt, ids, newIds: s.newTokens, text: tok ? tok.decode(ids) : null, finishReason: s.finishReason, score: s.score }
  })
}

function jsonReport(r: GenerateResult, seqs: SequenceOut[], dropped: number[], loadMs: number, context: number) {
  return {
    sequences: seqs.map((s) => ({
      prompt: s.prompt,
      ids: s.ids,
      text: s.text,
      new_ids: s.newIds,
      finish_reason: s.finishReason,
      ...(s.score !== undefined ? { score: s.score } : {}),
      ...(dropped[s.prompt] ? { prompt_tokens_dropped: dropped[s.prompt] } : {}),
    })),
    seed: r.seed,
    timings: timingsJson(loadMs, r.timings),
    mode: 'hf',
    context,
  }
}

function timingsJson(loadMs: number, t: GenerateResult['timings']) {
  return {
    load_ms: round(loadMs),
    prefill_ms: round(t.prefillMs),
    decode_ms: round(t.decodeMs),
    prompt_tokens: t.promptTokens,
    new_tokens: t.newTokens,
    prefill_tokens_per_s: t.promptTokens > 0 && t.prefillMs > 0 ? round((1000 * t.promptTokens) / t.prefillMs) : null,
    decode_tokens_per_s: t.newTokens > 1 && t.decodeMs > 0 ? round((1000 * t.newTokens) / t.decodeMs) : null,
  }
}

function printAll(r: GenerateResult, seqs: SequenceOut[]) {
  seqs.forEach((s, i) => {
    const head = `--- ${i} (prompt ${s.prompt}${s.score !== undefined ? `, score ${s.score.toFixed(4)}` : ''})`
    process.stdout.write(`${head}\n${s.text ?? s.ids.join(' ')}\n`)
  })
}

interface Printer {
  token: (id: number) => void
  /** Ends the stream: `text` is the sequence's whole text (what --json reports), null without a tokenizer. */
  end: (text: string | null) => void
}

/**
 * Streams one sequence: the prompt and each new token as it comes, so that the whole output equals the
 * text --json reports. Byte-level BPE streams exactly with StreamDecoder; other tokenizers (WordPiece
 * joins "##" pieces) re-decode the sequence and print what later tokens can no longer change (TextStream).
 * Nothing is written before the first token: every error generate() could still throw comes first.
 */
function streamPrinter(tok: Tokenizer | null, prompt: number[], showPrompt: boolean, write: (s: string) => void): Printer {
  let started = false
  if (!tok) {
    const start = () => started || ((started = true), write(prompt.join(' ')))
    return { token: (id) => (start(), write(` ${id}`)), end: () => (start(), write('\n')) }
  }
  if (tok.kind === 'gpt2-bpe') {
    const stream = new StreamDecoder(tok)
    const start = () => started || ((started = true), write(showPrompt ? prompt.map((id) => stream.push(id)).join('') : ''))
    return { token: (id) => (start(), write(stream.push(id))), end: () => (start(), write(stream.flush() + '\n')) }
  }
  const ids = [...prompt]
  const stream = new TextStream((x) => tok.decode(x))
  return { token: (id) => (ids.push(id), write(stream.push(ids))), end: (text) => write(stream.end(text ?? tok.decode(ids)) + '\n') }
}

/** stderr lines: notes, warnings and the summary (on a terminal, or with --verbose). */
class Reporter {
  constructor(private readonly verbose: boolean) {}

  note(msg: string): void {
    process.stderr.write(`refgpt: note: ${msg}\n`)
  }

  warn(msg: string): void {
    process.stderr.write(`refgpt: warning: ${msg}\n`)
  }

  /** llama.cpp-style one line: load, prompt tokens and tok/s, generated tokens and tok/s, finish reasons. */
  summary(loadMs: number, t: { prefillMs: number; decodeMs: number; promptTokens: number; newTokens: number }, reasons: string[]): void {
    if (!this.verbose && process.stderr.isTTY !== true) return
    const rate = (n: number, ms: number) => (n > 0 && ms > 0 ? `${((1000 * n) / ms).toFixed(1)} tok/s` : '- tok/s')
    const counts = new Map<string, number>()
    for (const r of reasons) counts.set(r, (counts.get(r) ?? 0) + 1)
    const finish = [...counts].map(([r, n]) => (reasons.length > 1 ? `${r} x${n}` : r)).join(', ')
    process.stderr.write(
      `refgpt: load ${loadMs.toFixed(0)} ms | prompt ${t.promptTokens} tokens in ${t.prefillMs.toFixed(1)} ms (${rate(t.promptTokens, t.prefillMs)})` +
        ` | generated ${t.newTokens} tokens in ${t.decodeMs.toFixed(1)} ms (${rate(t.newTokens, t.decodeMs)}) | finish ${finish}\n`,
    )
  }
}

/** One warning line when the context ended sequences before the requested length. */
function contextWarning(report: Reporter, rows: { reason: string; newTokens: number }[], o: { context: number; asked: number; canTruncate: boolean; what?: string }): void {
  const hit = rows.filter((r) => r.reason === 'context')
  if (!hit.length) return
  const lo = Math.min(...hit.map((r) => r.newTokens)), hi = Math.max(...hit.map((r) => r.newTokens))
  const which = rows.length === 1 ? 'generation' : `${hit.length} of ${rows.length} sequences`
  report.warn(
    `the context of ${o.context} positions${o.what ?? ''} ended ${which} after ${lo === hi ? lo : `${lo}-${hi}`} of the ${o.asked} new tokens asked for (finish_reason "context"); ` +
      `hint: ${o.canTruncate ? 'pass --truncate left to drop the first tokens of the prompt and make room, or ask for fewer new tokens' : 'ask for fewer new tokens or give a shorter prompt'}`,
  )
}

function float(name: string, s: string): number {
  const x = Number(s)
  if (s.trim() === '' || !Number.isFinite(x))
    throw new UsageError({ where: 'refgpt generate', what: `bad --${name}`, expected: 'a number', found: JSON.stringify(s) })
  return x
}

function choice<T>(name: string, s: string, options: Record<string, T>): T {
  if (!Object.hasOwn(options, s))
    throw new UsageError({ where: 'refgpt generate', what: `bad --${name}`, expected: `one of ${Object.keys(options).join(', ')}`, found: JSON.stringify(s) })
  return options[s]
}

function readPromptsFile(file: string): string[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    throw new UsageError({ where: file, what: 'cannot read the prompts file', found: (e as NodeJS.ErrnoException).code ?? String(e) })
  }
  const lines = text.split(/\r?\n/).filter((l) => l.length > 0)
  if (lines.length === 0) throw new UsageError({ where: file, what: 'the prompts file has no prompts', hint: 'one prompt per line' })
  return lines
}

const round = (x: number) => Math.round(x * 100) / 100

// --- ModelScope mode ------------------------------------------------------------------------------

/** Options that only transformers-style generation has. */
const HF_ONLY = ['prompt-ids', 'prompts-file', 'eos-token-id', 'stop', 'do-sample', 'bad-words', 'early-stopping', 'typical-p', 'min-p',
  'epsilon-cutoff', 'eta-cutoff', 'repetition-penalty', 'length-penalty', 'no-repeat-ngram-size', 'num-beams', 'num-return-sequences',
  'min-length', 'min-new-tokens', 'truncate']

/**
 * ModelScope's pipeline(text, top_k=, top_p=, temperature=, max_length=) on one prompt, streamed: the
 * text is ModelScope's post-processing of the whole sequence, re-rendered after each token (TextStream).
 * Options are checked by modelscopeGenerate before its first forward, before anything is printed.
 */
async function runModelscope(v: Record<string, unknown>, positionals: string[], dir: string, json: boolean, mo: { followSymlinks?: boolean }, report: Reporter): Promise<void> {
  for (const k of HF_ONLY)
    if (v[k] !== undefined)
      throw new UsageError({ where: 'refgpt generate', what: `--${k} is not available with --generation modelscope`, hint: 'use --generation hf for transformers-style generation' })
  const texts: string[] = [...((v.prompt as string[] | undefined) ?? [])]
  if (positionals.length) texts.push(positionals.join(' '))
  if (texts.length !== 1)
    throw new UsageError({ where: 'refgpt generate', what: 'ModelScope generation takes exactly one prompt', found: `${texts.length}` })
  const opts = modelscopeOptions('generate', v)
  const maxNew = v['max-new-tokens'] === undefined ? undefined : intOption('generate', 'max-new-tokens', v['max-new-tokens'] as string, 0)
  const tok = wordpieceTokenizer(dir, 'generate', mo)
  const t0 = performance.now()
  const model = await load('generate', v)
  const loadMs = performance.now() - t0
  try {
    checkModelscopeModel(model, dir)
    const S = opts.sequenceLength ?? modelscopeSequenceLength(model)
    const { ids: padded, promptLength } = modelscopeEncode(tok, texts[0], S)
    if (maxNew !== undefined) opts.maxLength = Math.min(opts.maxLength ?? Infinity, promptLength + maxNew)
    const maxLength = opts.maxLength ?? padded.length + 100
    const positions = Math.min(model.arch.nPositions, model.info.maxContext)
    const pieces = tok.encode(texts[0]).length
    if (pieces > S - 2) report.note(`the prompt has ${pieces} wordpieces; ModelScope's preprocessor keeps the first ${S - 2} (sequence_length ${S})`)
    const ids = padded.slice(0, promptLength)
    const stream = json ? null : new TextStream((x) => tok.decode(x, { skipSpecialTokens: true }), (d) => removeSpaceBetweenChineseChars(cleanUpWordPiece(d)))
    const out = process.stdout
    const r = await modelscopeGenerate(model, tok, texts[0], {
      ...opts,
      sequenceLength: S,
      onToken: stream ? (id) => (ids.push(id), out.write(stream.push(ids))) : undefined,
    })
    const finish = r.finishReason === 'eod' ? 'eos' : r.finishReason
    if (json)
      out.write(
        JSON.stringify({
          sequences: [{
            prompt: 0,
            ids: r.ids,
            text: r.text,
            new_ids: r.newTokens,
            finish_reason: finish,
            decoded: r.decoded,
            prompt_length: r.promptLength,
          }],
          seed: r.seed,
          timings: timingsJson(loadMs, { ...r.timings, promptTokens: r.promptLength, newTokens: r.newTokens.length }),
          mode: 'modelscope',
          context: positions,
        }) + '\n',
      )
    else out.write(stream!.end(r.text) + '\n')
    contextWarning(report, [{ reason: r.finishReason, newTokens: r.newTokens.length }], {
      context: positions, asked: maxLength - promptLength, canTruncate: false, what: ` (below max_length ${maxLength})`,
    })
    report.summary(loadMs, { ...r.timings, promptTokens: r.promptLength, newTokens: r.newTokens.length }, [finish])
  } finally {
    await model.dispose()
  }
}
