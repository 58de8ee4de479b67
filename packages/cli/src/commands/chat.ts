// refgpt chat: the ModelScope kuakua robot loop — one line in, one reply out — and the ModelScope
// generation mode `refgpt generate` uses for ModelScope GPT-3 folders.

import { createInterface } from 'node:readline'
import {
  RefgptError,
  UsageError,
  WordPieceTokenizer,
  folderKind,
  modelscopeGenerate,
  modelscopePostprocess,
  type Model,
  type ModelscopeGenerateOptions,
  type ModelscopeResult,
  type Tokenizer,
} from '@refgpt/core'
import { intOption, parse } from '../args.js'
import { errorLine } from '../progress.js'
import { CONTEXT_HELP, CONTEXT_OPTIONS, MODEL_OPTIONS, load, modelHelp, modelOptions, requireTokenizer } from './common.js'

export const summary = 'chat with a ModelScope GPT-3 folder (e.g. the kuakua praise robot): a line in, a reply out'

export const help = `Usage: refgpt chat [--model DIR] [options]

Needs a ModelScope GPT-3 folder (configuration.json + vocab.txt); for Hugging Face models (GPT-2,
GPT-Neo, GPT-J) use \`refgpt generate --model DIR\`. Without --model: the Chinese default model (a small
ModelScope GPT-3 refgpt trained on Debian's fortunes-zh poems and proverbs; it continues text, it was
not trained to praise).

Reads one line at a time (typed, or from stdin when it is not a terminal) and prints one reply line,
as ModelScope's kuakua robot is used: the prompt is LINE + "|" (unless the line already ends with the
separator), run through ModelScope's text-generation pipeline (padded to sequence_length, sampling
with the config's top_k/top_p, length cap padded length + 100, stop at eod_id); the reply is the
pipeline's text after the prompt, without the eod token. Blank lines are skipped.

A line that fails (e.g. longer than the model's context) prints one error line on stderr,
"refgpt: error: line N: ...", and the session goes on with the next line. At the end of the input,
when any line failed, refgpt says how many and exits 1 (0 when every line was answered).

Options:
      --top-k K  --top-p P  --temperature T   sampling (default: config.json top_k 0, top_p 0.9, T 1);
                                greedy is --top-k 1 --top-p 0
      --max-length N            total length cap incl. the padded prompt (ModelScope's max_length)
      --seed N                  sampling seed (default: random), the same for every line
      --separator S             appended to each line (default "|")
${CONTEXT_HELP}${modelHelp('chat')}
Example:
  echo "今天终于拿到驾照了,求夸" | refgpt chat --model ./nlp_gpt3_kuakua-robot_chinese-large
`

/** Options of the ModelScope generation mode (chat and generate --generation modelscope). */
export const MS_OPTIONS = {
  'top-k': { type: 'string' as const },
  'top-p': { type: 'string' as const },
  temperature: { type: 'string' as const },
  'max-length': { type: 'string' as const },
  seed: { type: 'string' as const },
}

/**
 * A ModelScope GPT-3 folder (config.json without model_type + configuration.json with model.type gpt3),
 * which generates with ModelScope's pipeline. A Hugging Face folder hosted on ModelScope (configuration.json
 * beside a config.json with model_type) is not: its family and generation are transformers'. core's folderKind.
 */
export function isModelscopeDir(dir: string, opts: { followSymlinks?: boolean } = {}): boolean {
  return folderKind(dir, { followSymlinks: opts.followSymlinks }) === 'modelscope-gpt3'
}

function num(command: string, name: string, s: string): number {
  const x = Number(s)
  if (s.trim() === '' || !Number.isFinite(x))
    throw new UsageError({ where: `refgpt ${command}`, what: `bad --${name}`, expected: 'a number', found: JSON.stringify(s) })
  return x
}

/** --top-k / --top-p / --temperature / --max-length / --seed -> ModelscopeGenerateOptions. */
export function modelscopeOptions(command: string, v: Record<string, unknown>): ModelscopeGenerateOptions {
  const o: ModelscopeGenerateOptions = {}
  if (v['top-k'] !== undefined) o.topK = intOption(command, 'top-k', v['top-k'] as string, 0)
  if (v['top-p'] !== undefined) o.topP = num(command, 'top-p', v['top-p'] as string)
  if (v.temperature !== undefined) o.temperature = num(command, 'temperature', v.temperature as string)
  if (v['max-length'] !== undefined) o.maxLength = intOption(command, 'max-length', v['max-length'] as string, 0, 1)
  if (v.seed !== undefined) o.seed = intOption(command, 'seed', v.seed as string, 0)
  return o
}

/** The folder's tokenizer, which must be WordPiece (vocab.txt) for this mode. */
export function wordpieceTokenizer(dir: string, command: string, opts: { followSymlinks?: boolean } = {}): WordPieceTokenizer {
  const tok: Tokenizer = requireTokenizer(dir, command, opts)
  if (!(tok instanceof WordPieceTokenizer))
    throw new UsageError({
      where: dir,
      what: command === 'chat' ? 'refgpt chat needs a ModelScope GPT-3 folder' : 'ModelScope generation needs a ModelScope GPT-3 folder',
      expected: 'vocab.txt (BERT WordPiece) and configuration.json',
      found: `a ${tok.kind} tokenizer`,
      hint: notModelscopeHint(command),
    })
  return tok
}

/** What to do with a folder that is not a ModelScope GPT-3 one: chat cannot run it, generate can in its hf mode. */
function notModelscopeHint(command: string): string {
  return command === 'chat'
    ? 'for Hugging Face models (GPT-2, GPT-Neo, GPT-J) use `refgpt generate --model DIR`'
    : 'use --generation hf for Hugging Face models'
}

export function checkModelscopeModel(model: Model, dir: string, command = 'generate'): void {
  if (model.family !== 'gpt3')
    throw new UsageError({ where: dir, what: command === 'chat' ? 'refgpt chat runs ModelScope GPT-3 models only' : 'ModelScope generation runs ModelScope GPT-3 models only', found: `model family ${model.family}`, hint: notModelscopeHint(command) })
}

/** The reply of the kuakua robot: the pipeline text after the prompt, without the eod token. */
export function replyOf(tok: WordPieceTokenizer, r: Pick<ModelscopeResult, 'ids' | 'promptLength' | 'finishReason'>): string {
  const ids = r.finishReason === 'eod' ? r.ids.slice(0, -1) : r.ids
  const full = modelscopePostprocess(tok, ids).text
  const prompt = modelscopePostprocess(tok, r.ids.slice(0, r.promptLength)).text
  if (full.startsWith(prompt)) return full.slice(prompt.length).trim()
  const bar = full.indexOf('|')
  return bar >= 0 ? full.slice(bar + 1).trim() : full
}

export async function run(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse('chat', argv, { ...MODEL_OPTIONS, ...CONTEXT_OPTIONS, ...MS_OPTIONS, separator: { type: 'string' } })
  if (positionals.length) throw new UsageError({ where: 'refgpt chat', what: 'unexpected arguments', found: JSON.stringify(positionals.join(' ')), hint: 'type the lines after starting, or pipe them on stdin' })
  const mo = modelOptions('chat', v)
  const { dir } = mo
  const sep = (v.separator as string | undefined) ?? '|'
  const opts = modelscopeOptions('chat', v)
  const tok = wordpieceTokenizer(dir, 'chat', mo)
  const model = await load('chat', v)
  try {
    checkModelscopeModel(model, dir, 'chat')
    const tty = process.stdin.isTTY === true
    const rl = createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, terminal: tty })
    if (tty) {
      process.stdout.write('refgpt chat — type a line, Ctrl-D to quit\n')
      rl.setPrompt('> ')
      rl.prompt()
    }
    // one bad line (too long for the context, ...) is reported and skipped; the session goes on
    let lineNo = 0, answered = 0
    const failed: number[] = []
    for await (const raw of rl) {
      lineNo++
      const line = raw.trim()
      if (line) {
        const prompt = line.endsWith(sep) ? line : line + sep
        try {
          const r = await modelscopeGenerate(model, tok, prompt, opts)
          process.stdout.write(replyOf(tok, r) + '\n')
          answered++
        } catch (e) {
          if (!(e instanceof RefgptError)) throw e // a fault of refgpt, not of the line: the session ends
          failed.push(lineNo)
          process.stderr.write(errorLine(`line ${lineNo}: ${e.message}`))
        }
      }
      if (tty) rl.prompt()
    }
    if (failed.length)
      throw new RefgptError({
        where: 'refgpt chat',
        what: `${failed.length} of ${failed.length + answered} lines failed: line${failed.length === 1 ? '' : 's'} ${failed.slice(0, 10).join(', ')}${failed.length > 10 ? ', …' : ''}`,
        hint: 'each line\'s error is shown above; the other lines were answered',
      })
  } finally {
    await model.dispose()
  }
}
