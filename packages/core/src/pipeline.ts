// pipeline('text-generation', model, options): the calling convention people know from transformers.
//
//   const generator = await pipeline('text-generation', 'path/to/gpt2')   // no model: the default English one
//   await generator("Hello, I'm a language model,", { max_length: 30, num_return_sequences: 5, do_sample: true })
//   // -> [{ generated_text: "Hello, I'm a language model, ..." }, ...]
//   await generator(['a', 'b'])  // -> [[{ generated_text }], [{ generated_text }]]
//
// As transformers' TextGenerationPipeline: prompts run one at a time (no padding), generated_text is
// the prompt followed by the decoded new text (return_full_text, default true), decoded with
// skip_special_tokens and clean_up_tokenization_spaces; return_tensors gives the ids instead.

import { UsageError, show } from './errors.js'
import { generate } from './generation/generate.js'
import { defaultModelDir } from './models/defaults.js'
import { loadModel, type LoadOptions, type Model } from './models/model.js'
import { loadTokenizer } from './tokenizers/index.js'
import type { Tokenizer } from './tokenizers/types.js'

export interface TextGenerationOutput {
  generated_text?: string
  generated_token_ids?: number[]
}

export interface TextGenerationPipeline {
  (input: string, kwargs?: Record<string, unknown>): Promise<TextGenerationOutput[]>
  (input: string[], kwargs?: Record<string, unknown>): Promise<TextGenerationOutput[][]>
  readonly model: Model
  readonly tokenizer: Tokenizer
  dispose(): Promise<void>
}

/** Pipeline-only keys (the rest goes to generate()). */
const PIPELINE_KEYS = ['return_full_text', 'return_text', 'return_tensors', 'clean_up_tokenization_spaces', 'prefix', 'handle_long_generation']

/** `model`: a folder, a loaded Model, or left out for the default English model (defaultModelDir('en')). */
export async function pipeline(
  task: 'text-generation',
  model: string | Model = defaultModelDir('en'),
  options: LoadOptions & { tokenizer?: Tokenizer | string } = {},
): Promise<TextGenerationPipeline> {
  if (task !== 'text-generation')
    throw new UsageError({ where: 'pipeline', what: 'unsupported task', expected: '"text-generation"', found: show(task) })
  const { tokenizer: tokOpt, ...load } = options
  const m = typeof model === 'string' ? await loadModel(model, load) : model
  const dir = typeof model === 'string' ? model : m.info.dir
  const tok = typeof tokOpt === 'object' && tokOpt !== null ? tokOpt : loadTokenizer(tokOpt ?? dir, { followSymlinks: load.followSymlinks })

  async function run(input: string | string[], kwargs: Record<string, unknown> = {}): Promise<TextGenerationOutput[] | TextGenerationOutput[][]> {
    const { return_full_text = true, return_tensors = false, clean_up_tokenization_spaces = true, prefix = '', ...gen } = kwargs as Record<string, any>
    for (const k of PIPELINE_KEYS) delete gen[k]
    const one = async (text: string): Promise<TextGenerationOutput[]> => {
      if (typeof text !== 'string') throw new UsageError({ where: 'pipeline', what: 'input must be a string or a list of strings', found: show(text) })
      const prompt = tok.encode(prefix + text)
      const ids = prompt.length > 0 ? prompt : [m.arch.bosTokenId ?? 0]
      const r = await generate(m, ids, { ...gen, tokenizer: tok })
      return r.sequences.map((s) => {
        const seq = s.ids.slice(s.start)
        if (return_tensors) return { generated_token_ids: seq }
        const opts = { skipSpecialTokens: true, cleanUpTokenizationSpaces: clean_up_tokenization_spaces as boolean }
        const all = tok.decode(seq, opts)
        const promptText = tok.decode(prompt, opts)
        const newText = all.slice(promptText.length)
        return { generated_text: return_full_text ? text + newText : newText }
      })
    }
    if (!Array.isArray(input)) return one(input)
    const out: TextGenerationOutput[][] = []
    for (const text of input) out.push(await one(text)) // one at a time, as transformers' pipeline
    return out
  }
  return Object.assign(run, { model: m, tokenizer: tok, dispose: () => m.dispose() }) as unknown as TextGenerationPipeline
}
