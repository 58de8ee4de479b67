// refgpt step: walk through one real forward pass, stage by stage (terminal UI, --all, or --html).

import { ConfigError, UsageError } from '@refgpt/core'
import { existsSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { parse } from '../args.js'
import { renderHtml, writeHtml } from '../step/html.js'
import { MAX_TOKENS, pieceText, runStages, type StepRun } from '../step/model.js'
import { printAll, runTui } from '../step/tui.js'
import { CONTEXT_HELP, CONTEXT_OPTIONS, MODEL_OPTIONS, loadOptions, loadWithProgress, modelHelp, modelOptions, requireTokenizer } from './common.js'

export const summary = 'step through a real forward pass: tokens, embeddings, attention, MLP, logit lens, logits'

export const help = `Usage: refgpt step [--model DIR] PROMPT [--all] [--html FILE]

Runs PROMPT through the model once with a tracer on every stage and shows, one stage at a time,
what happens to it: tokenization, embeddings, then per layer ln_1, attention (each head's attention
of the last token over the earlier ones), the MLP and the residual stream with the logit lens (the
final norm and LM head applied after that layer), and last the final norm and the top-5 next tokens.

Keys: enter or n = next stage, b = back, l = jump to a layer (type the number, then enter),
      t = append the greedy next token and start again, q = quit (Ctrl-C too).
When stdout is not a terminal, or with --all, every stage is printed and refgpt exits.

Options:
      --all                     print every stage and exit
      --html FILE               write one self-contained HTML page and exit: attention heatmaps with
                                token labels on both axes and a legend, probabilities on one absolute
                                colour scale, a logit-lens grid (top token per layer and position),
                                probability bars
${CONTEXT_HELP}${modelHelp('step')}
Examples:
  refgpt step "Hello, I'm a language model"
  refgpt step --all --model ./gpt-neo-125M "EleutherAI has"
  refgpt step --html step.html "The quick brown fox"
`

export async function run(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse('step', argv, {
    ...MODEL_OPTIONS,
    ...CONTEXT_OPTIONS,
    all: { type: 'boolean' },
    html: { type: 'string' },
  })
  const o = modelOptions('step', v)
  const prompt = positionals.join(' ')
  if (prompt === '') throw new UsageError({ where: 'refgpt step', what: 'no PROMPT', expected: 'a prompt, e.g. refgpt step "Hello"', hint: 'see `refgpt step --help`' })
  if (typeof v.html === 'string') {
    // the page's folder before the model runs (writing checks it again)
    const folder = dirname(resolve(v.html))
    if (!existsSync(folder) || !statSync(folder).isDirectory())
      throw new UsageError({ where: v.html, what: 'cannot write the --html file: no such folder', found: JSON.stringify(dirname(v.html)), hint: 'create the folder first' })
  }
  if (!existsSync(o.dir)) throw new ConfigError({ where: o.dir, what: 'model folder not found', hint: 'pass a folder with config.json and model weights' })
  const tok = requireTokenizer(o.dir, 'step', o)
  const ids = tok.encode(prompt)
  const model = await loadWithProgress(o.dir, { ...loadOptions(o), maxBatchTokens: MAX_TOKENS })
  try {
    // the per-position logit-lens grid is drawn only by the HTML page: the terminal needs the last position's
    let current: StepRun = await runStages(model, tok, ids, { lensPositions: typeof v.html === 'string' ? undefined : 1 })
    if (typeof v.html === 'string') {
      writeHtml(v.html, renderHtml(current, model, current.ids.map((id) => pieceText(tok, id)), prompt))
      process.stderr.write(`wrote ${v.html}\n`)
      if (!v.all) return
    }
    if (v.all || !process.stdout.isTTY || !process.stdin.isTTY) {
      printAll(current, (s) => process.stdout.write(s))
      return
    }
    await runTui({
      current: () => current,
      nextToken: async () => (current = await runStages(model, tok, [...current.ids, current.next], { lensPositions: 1 })),
    })
  } finally {
    await model.dispose()
  }
}
