// refgpt generate: text in, text out, with transformers' generate() options, streamed token by token.

import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, StreamDecoder, UsageError, generate, modelscopeGenerate, type GenerateResult, type Tokenizer } from '@refgpt/core'
import { idList, intOption, parse } from '../args.js'
import { checkModelscopeModel, isModelscopeDir, modelscopeOptions, wordpieceTokenizer } from './chat.js'
import { CONTEXT_HELP, CONTEXT_OPTIONS, MODEL_HELP, MODEL_OPTIONS, load, maybeTokenizer, modelOptions, requireTokenizer } from './common.js'

export const summary = 'generate text (greedy, sampling or beam search), streaming it as it is made'

export const help = `Usage: refgpt generate [--model DIR] [PROMPT] [options]

Continues PROMPT with transformers' generate() semantics and prints the prompt and the new text as the
tokens are made (one sequence), or every sequence at the end (batches, beams, several samples).
Several prompts (--prompt / --prompt-ids repeated, or --prompts-file) run as one left-padded batch.
Defaults come from the folder's generation_config.json / config.json, as transformers reads them.

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
Search and sampling:
      --do-sample               sample instead of greedy search (top-k 50 unless set, as transformers)
      --seed N                  PRNG seed (default: random; --json reports it)
      --temperature T  --top-k K  --top-p P  --typical-p P  --min-p P  --epsilon-cutoff E  --eta-cutoff E
      --repetition-penalty R  --no-repeat-ngram-size N  --bad-words IDS (';'-separated id lists: 1,2;7)
      --num-beams N  --length-penalty L  --early-stopping (true|false|never)
      --num-return-sequences N
 ModelScope folders (configuration.json + vocab.txt, e.g. Chinese GPT-3 / kuakua):
      --generation MODE         hf | modelscope (default: modelscope for ModelScope folders, else hf).
                                modelscope = ModelScope's text-generation pipeline: [CLS] prompt [SEP]
                                padded to sequence_length, top_k/top_p from config.json (default nucleus
                                0.9; greedy is --top-k 1 --top-p 0), --max-length caps the total incl. the
                                padded prompt (default + 100; -n N caps at prompt + N), stop at eod_id,
                                prints the whole text (prompt included) without spaces between Chinese chars
Output:
      --json                    print one JSON object {"sequences":[{"ids","text"(,"score")}],"seed","timings"}
${CONTEXT_HELP}${MODEL_HELP}
Examples:
  refgpt generate "Hello, I'm a language model,"
  refgpt generate --model ./gpt-neo-125M --do-sample --top-p 0.9 --seed 42 -n 40 "EleutherAI has"
  refgpt generate --num-beams 4 --num-return-sequences 2 --json "The quick brown fox"
`

const FLOATS = ['temperature', 'top-p', 'typical-p', 'min-p', 'epsilon-cutoff', 'eta-cutoff', 'repetition-penalty', 'length-penalty']
const INTS = ['top-k', 'no-repeat-ngram-size', 'num-beams', 'num-return-sequences', 'min-length', 'min-new-tokens', 'max-length', 'seed']

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
  if (mode === 'modelscope') return runModelscope(v, positionals, dir, json, mo)
  const tok = maybeTokenizer(dir, mo)

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
  if (stops?.length) cfg.stop_strings = stops

  // --- prompts ---------------------------------------------------------------------------------
  const texts: string[] = [...((v.prompt as string[] | undefined) ?? [])]
  if (positionals.length) texts.push(positionals.join(' '))
  if (v['prompts-file'] !== undefined) for (const t of readPromptsFile(v['prompts-file'] as string)) texts.push(t)
  const idPrompts = ((v['prompt-ids'] as string[] | undefined) ?? []).map((s) => idList('generate', 'prompt-ids', s))
  if ((texts.length > 0 || stops?.length) && !tok) requireTokenizer(dir, 'generate', mo) // throws the clear error

  const t0 = performance.now()
  const model = await load('generate', v)
  const loadMs = performance.now() - t0
  try {
    const prompts = [...texts.map((t) => tok!.encode(t)), ...idPrompts]
    if (prompts.length === 0) prompts.push(model.arch.bosTokenId === null ? [] : [model.arch.bosTokenId]) // as generate() without input_ids
    const decode = (ids: number[]) => (tok ? tok.decode(ids) : null)

    // stream when there is one sequence to show
    const single = prompts.length === 1 && (cfg.num_beams ?? 1) === 1 && (cfg.num_return_sequences ?? 1) === 1
    const out = process.stdout
    let onToken: ((id: number) => void) | undefined
    let stream: StreamDecoder | null = null
    if (!json && single) {
      if (tok) {
        stream = new StreamDecoder(tok)
        if (texts.length || idPrompts.length) out.write(tok.decode(prompts[0]))
        onToken = (id) => out.write(stream!.push(id))
      } else {
        out.write(prompts[0].join(' '))
        onToken = (id) => out.write(` ${id}`)
      }
    }
    const r: GenerateResult = await generate(model, prompts, { ...cfg, onToken, tokenizer: tok ?? undefined })
    if (json) out.write(JSON.stringify(report(r, decode, loadMs)) + '\n')
    else if (single) out.write((stream ? stream.flush() : '') + '\n')
    else printAll(r, tok)
  } finally {
    await model.dispose()
  }
}

function report(r: GenerateResult, decode: (ids: number[]) => string | null, loadMs: number) {
  const t = r.timings
  return {
    sequences: r.sequences.map((s) => ({
      prompt: s.prompt,
      ids: s.ids,
      text: decode(s.ids.slice(s.start)),
      finish_reason: s.finishReason,
      ...(s.score !== undefined ? { score: s.score } : {}),
    })),
    seed: r.seed,
    timings: {
      load_ms: round(loadMs),
      prefill_ms: round(t.prefillMs),
      decode_ms: round(t.decodeMs),
      prompt_tokens: t.promptTokens,
      new_tokens: t.newTokens,
      decode_tokens_per_s: t.newTokens > 1 && t.decodeMs > 0 ? round((1000 * t.newTokens) / t.decodeMs) : null,
    },
  }
}

function printAll(r: GenerateResult, tok: Tokenizer | null) {
  r.sequences.forEach((s, i) => {
    const head = `--- ${i} (prompt ${s.prompt}${s.score !== undefined ? `, score ${s.score.toFixed(4)}` : ''})`
    const body = tok ? tok.decode(s.ids.slice(s.start)) : s.ids.slice(s.start).join(' ')
    process.stdout.write(`${head}\n${body}\n`)
  })
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

/** Options that only transformers-style generation has. */
const HF_ONLY = ['prompt-ids', 'prompts-file', 'eos-token-id', 'stop', 'do-sample', 'bad-words', 'early-stopping', 'typical-p', 'min-p',
  'epsilon-cutoff', 'eta-cutoff', 'repetition-penalty', 'length-penalty', 'no-repeat-ngram-size', 'num-beams', 'num-return-sequences',
  'min-length', 'min-new-tokens']

/** ModelScope's pipeline(text, top_k=, top_p=, temperature=, max_length=) on one prompt. */
async function runModelscope(v: Record<string, unknown>, positionals: string[], dir: string, json: boolean, mo: { followSymlinks?: boolean }): Promise<void> {
  for (const k of HF_ONLY)
    if (v[k] !== undefined)
      throw new UsageError({ where: 'refgpt generate', what: `--${k} is not available with --generation modelscope`, hint: 'use --generation hf for transformers-style generation' })
  const texts: string[] = [...((v.prompt as string[] | undefined) ?? [])]
  if (positionals.length) texts.push(positionals.join(' '))
  if (texts.length !== 1)
    throw new UsageError({ where: 'refgpt generate', what: 'ModelScope generation takes exactly one prompt', found: `${texts.length}` })
  const opts = modelscopeOptions('generate', v)
  const tok = wordpieceTokenizer(dir, 'generate', mo)
  const t0 = performance.now()
  const model = await load('generate', v)
  const loadMs = performance.now() - t0
  try {
    checkModelscopeModel(model, dir)
    if (v['max-new-tokens'] !== undefined) {
      const n = intOption('generate', 'max-new-tokens', v['max-new-tokens'] as string, 0)
      const promptLength = Math.min(tok.encode(texts[0]).length + 1, 0x7fffffff)
      opts.maxLength = Math.min(opts.maxLength ?? Infinity, promptLength + n)
    }
    const t1 = performance.now()
    const r = await modelscopeGenerate(model, tok, texts[0], opts)
    const ms = performance.now() - t1
    if (json)
      process.stdout.write(
        JSON.stringify({
          text: r.text,
          decoded: r.decoded,
          ids: r.ids,
          prompt_length: r.promptLength,
          new_tokens: r.newTokens,
          finish_reason: r.finishReason,
          seed: r.seed,
          timings: { load_ms: round(loadMs), generate_ms: round(ms) },
        }) + '\n',
      )
    else process.stdout.write(r.text + '\n')
  } finally {
    await model.dispose()
  }
}
