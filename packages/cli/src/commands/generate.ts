// refgpt generate: text in, text out, streamed token by token (greedy for now).

import { StreamDecoder, generate, type GenerateResult } from '@refgpt/core'
import { idList, intOption, parse } from '../args.js'
import { MODEL_HELP, MODEL_OPTIONS, load, maybeTokenizer, modelOptions, requireTokenizer } from './common.js'

export const summary = 'generate text from a prompt (greedy), streaming it as it is made'

export const help = `Usage: refgpt generate [--model DIR] [PROMPT] [options]

Generates a continuation of PROMPT with greedy decoding (argmax of the logits, as transformers'
generate() with do_sample=False) and prints the prompt and the new text as the tokens are made.

Options:
      --prompt-ids IDS      the prompt as token ids (comma-separated) instead of text
  -n, --max-new-tokens N    new tokens to generate at most (default 50; stops earlier at eos)
      --json                print one JSON object {"sequences":[{"ids","text"}],"timings"} and nothing else
${MODEL_HELP}
Examples:
  refgpt generate "Hello, I'm a language model,"
  refgpt generate --model ./gpt-neo-125M --max-new-tokens 40 "EleutherAI has"
  refgpt generate --prompt-ids 15496,11 --json
`

export async function run(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse('generate', argv, {
    ...MODEL_OPTIONS,
    'prompt-ids': { type: 'string' },
    'max-new-tokens': { type: 'string', short: 'n' },
    json: { type: 'boolean' },
  })
  const maxNewTokens = intOption('generate', 'max-new-tokens', v['max-new-tokens'] as string | undefined, 50)
  const json = v.json === true
  const { dir } = modelOptions('generate', v)
  const text = positionals.join(' ')
  const tok = maybeTokenizer(dir)
  const idsOpt = v['prompt-ids'] as string | undefined

  const t0 = performance.now()
  const model = await load('generate', v)
  const loadMs = performance.now() - t0
  let prompt: number[]
  if (idsOpt !== undefined) prompt = idList('generate', 'prompt-ids', idsOpt)
  else if (text.length > 0) prompt = requireTokenizer(dir, 'generate').encode(text)
  else {
    // no prompt: start from the bos token, as generate() does without input_ids
    const bos = model.arch.bosTokenId
    prompt = bos === null ? [] : [bos]
  }

  // stream: the prompt, then each new token as soon as its characters are complete
  const out = process.stdout
  const stream = tok ? new StreamDecoder(tok) : null
  let onToken: ((id: number) => void) | undefined
  if (!json) {
    if (stream) {
      if (idsOpt !== undefined || text.length > 0) out.write(tok!.decode(prompt))
      onToken = (id) => out.write(stream.push(id))
    } else {
      out.write(prompt.join(' '))
      onToken = (id) => out.write(` ${id}`)
    }
  }
  const r: GenerateResult = generate(model, prompt, { maxNewTokens, onToken })
  await model.dispose()
  if (json) {
    const timings = {
      load_ms: round(loadMs),
      prefill_ms: round(r.timings.prefillMs),
      decode_ms: round(r.timings.decodeMs),
      prompt_tokens: r.timings.promptTokens,
      new_tokens: r.timings.newTokens,
      decode_tokens_per_s: r.timings.newTokens > 1 ? round((1000 * (r.timings.newTokens - 1)) / r.timings.decodeMs) : null,
    }
    const sequences = [{ ids: r.ids, text: tok ? tok.decode(r.ids) : null, finish_reason: r.finishReason }]
    out.write(JSON.stringify({ sequences, timings }) + '\n')
  } else {
    out.write((stream ? stream.flush() : '') + '\n')
  }
}

const round = (x: number) => Math.round(x * 100) / 100
