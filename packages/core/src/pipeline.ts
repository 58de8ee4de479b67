// pipeline('text-generation', model, options): the calling conventions people know from transformers and
// from ModelScope. `model` is a folder, a model id in the Hugging Face / ModelScope caches (resolveModelDir),
// a loaded Model, or left out for a default model.
//
// transformers (the default convention):
//   const generator = await pipeline('text-generation', 'EleutherAI/gpt-neo-1.3B')
//   await generator("Hello, I'm a language model,", { max_length: 30, num_return_sequences: 5, do_sample: true })
//   // -> [{ generated_text: "Hello, I'm a language model, ..." }, ...]
//   await generator(['a', 'b'])  // -> [[{ generated_text }], [{ generated_text }]]
// As transformers' TextGenerationPipeline: prompts run one at a time (no padding), generated_text is
// the prompt followed by the decoded new text (return_full_text, default true), decoded with
// skip_special_tokens and clean_up_tokenization_spaces; return_tensors gives the ids instead.
//
// ModelScope ({ convention: 'modelscope' }, or modelscope.pipeline):
//   const { pipeline, Tasks } = modelscope
//   const p = await pipeline(Tasks.text_generation, 'damo/nlp_gpt3_kuakua-robot_chinese-large')
//   (await p('今天终于拿到驾照了,求夸|')).text      // ModelScope: result['text']
// As ModelScope's TextGenerationPipeline, one {text} per input: the whole sequence (prompt and new ids)
// decoded with skip_special_tokens, then no spaces between Chinese characters (remove_space_between_chinese_chars).
//   - a ModelScope GPT-3 folder (folderKind 'modelscope-gpt3'): ModelScope's own GPT-3 generation
//     (modelscopeGenerate: padded [CLS] prompt [SEP], its sampler, max_length = padded + 100, eod stop), the
//     exact text ModelScope gives. kwargs: top_k, top_p, temperature, max_length (GPT3Model.generate's), and
//     refgpt's seed and sequence_length. Others are an error (ModelScope would ignore them silently).
//   - any other family (GPT-2, GPT-Neo, GPT-J, e.g. AI-ModelScope/gpt-j-6b): transformers' generate() with
//     the kwargs as given (max_length, do_sample, top_k, top_p, temperature, ...), the first sequence put
//     through TextGenerationPipeline.postprocess (prompt + new text). An approximation, because ModelScope
//     itself does not run such a folder through that class: its configuration.json names no pipeline, and
//     ModelScope 1.24+ then uses its LLMPipeline when ms-swift knows the model type ({text} of the new
//     tokens only, no space removal) or else transformers' own pipeline ([{generated_text}], refgpt's
//     default convention); before 1.24 the fallback was an error ("Attribute pipeline is missing from
//     configuration.json"). The prompt is tokenized as transformers does.

import { UsageError, show } from './errors.js'
import { generate } from './generation/generate.js'
import { isModelscopeModel, modelscopeGenerate, modelscopePostprocess, type ModelscopeGenerateOptions } from './generation/modelscope.js'
import { locateModel } from './io/hub.js'
import { defaultModelDir } from './models/defaults.js'
import { loadModel, type LoadOptions, type Model } from './models/model.js'
import { loadTokenizer } from './tokenizers/index.js'
import type { Tokenizer } from './tokenizers/types.js'
import { WordPieceTokenizer } from './tokenizers/wordpiece.js'

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

/** What ModelScope's text-generation pipeline returns for one input: result['text']. */
export interface ModelscopeTextGenerationOutput {
  text: string
}

export interface ModelscopeTextGenerationPipeline {
  (input: string, kwargs?: Record<string, unknown>): Promise<ModelscopeTextGenerationOutput>
  (input: string[], kwargs?: Record<string, unknown>): Promise<ModelscopeTextGenerationOutput[]>
  readonly model: Model
  readonly tokenizer: Tokenizer
  /** 'modelscope-gpt3': ModelScope's GPT-3 generation; 'hf': transformers' generate() with ModelScope's output. */
  readonly mode: 'modelscope-gpt3' | 'hf'
  dispose(): Promise<void>
}

export interface PipelineOptions extends LoadOptions {
  /** A Tokenizer, or the folder / model id to load it from (default: the model's). */
  tokenizer?: Tokenizer | string
  /** 'hf' (default): transformers' [{generated_text}]; 'modelscope': ModelScope's {text}. */
  convention?: 'hf' | 'modelscope'
}

/** Pipeline-only keys (the rest goes to generate()). */
const PIPELINE_KEYS = ['return_full_text', 'return_text', 'return_tensors', 'clean_up_tokenization_spaces', 'prefix', 'handle_long_generation']

/** ModelScope GPT-3 pipeline kwargs -> modelscopeGenerate options. */
const MS_GPT3_KWARGS: Record<string, keyof ModelscopeGenerateOptions> = {
  top_k: 'topK', topK: 'topK', top_p: 'topP', topP: 'topP', temperature: 'temperature',
  max_length: 'maxLength', maxLength: 'maxLength', seed: 'seed', sequence_length: 'sequenceLength', sequenceLength: 'sequenceLength',
}

/**
 * A text-generation pipeline. `model`: a folder, a model id in the Hugging Face / ModelScope caches, a
 * loaded Model, or left out for the default English model (the Chinese one with convention 'modelscope').
 */
export async function pipeline(task: 'text-generation', model?: string | Model, options?: PipelineOptions & { convention?: 'hf' }): Promise<TextGenerationPipeline>
export async function pipeline(task: 'text-generation', model: string | Model | undefined, options: PipelineOptions & { convention: 'modelscope' }): Promise<ModelscopeTextGenerationPipeline>
export async function pipeline(task: 'text-generation', model?: string | Model, options?: PipelineOptions): Promise<TextGenerationPipeline | ModelscopeTextGenerationPipeline>
export async function pipeline(
  task: 'text-generation',
  model?: string | Model,
  options: PipelineOptions = {},
): Promise<TextGenerationPipeline | ModelscopeTextGenerationPipeline> {
  if (task !== 'text-generation')
    throw new UsageError({ where: 'pipeline', what: 'unsupported task', expected: '"text-generation"', found: show(task) })
  const { tokenizer: tokOpt, convention = 'hf', ...load } = options ?? {}
  if (convention !== 'hf' && convention !== 'modelscope')
    throw new UsageError({ where: 'pipeline', what: 'unknown convention', expected: '"hf" or "modelscope"', found: show(convention) })
  const source = model ?? defaultModelDir(convention === 'modelscope' ? 'zh' : 'en')
  const dir = typeof source === 'string' ? locateModel(source, { revision: load.revision }).dir : source.info.dir
  const m = typeof source === 'string' ? await loadModel(dir, load) : source
  let tok: Tokenizer
  try {
    tok = typeof tokOpt === 'object' && tokOpt !== null ? tokOpt : loadTokenizer(tokOpt ?? dir, { followSymlinks: load.followSymlinks, revision: load.revision })
  } catch (e) {
    if (typeof source === 'string') await m.dispose()
    throw e
  }
  return convention === 'modelscope' ? modelscopePipeline(m, tok) : hfPipeline(m, tok)
}

function checkInput(text: unknown): string {
  if (typeof text !== 'string') throw new UsageError({ where: 'pipeline', what: 'input must be a string or a list of strings', found: show(text) })
  return text
}

/** The prompt ids (the bos id for an empty prompt, as transformers does). */
function promptIds(m: Model, tok: Tokenizer, text: string): { prompt: number[]; ids: number[] } {
  const prompt = tok.encode(text)
  return { prompt, ids: prompt.length > 0 ? prompt : [m.arch.bosTokenId ?? 0] }
}

function hfPipeline(m: Model, tok: Tokenizer): TextGenerationPipeline {
  async function run(input: string | string[], kwargs: Record<string, unknown> = {}): Promise<TextGenerationOutput[] | TextGenerationOutput[][]> {
    const { return_full_text = true, return_tensors = false, clean_up_tokenization_spaces = true, prefix = '', ...gen } = kwargs as Record<string, any>
    for (const k of PIPELINE_KEYS) delete gen[k]
    const one = async (text: string): Promise<TextGenerationOutput[]> => {
      checkInput(text)
      const { prompt, ids } = promptIds(m, tok, prefix + text)
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

function modelscopePipeline(m: Model, tok: Tokenizer): ModelscopeTextGenerationPipeline {
  const mode = isModelscopeModel(m) ? 'modelscope-gpt3' : 'hf'
  if (mode === 'modelscope-gpt3' && !(tok instanceof WordPieceTokenizer))
    throw new UsageError({ where: m.info.dir, what: 'ModelScope GPT-3 generation needs the WordPiece tokenizer (vocab.txt)', found: `a ${tok.kind} tokenizer` })
  const one = async (text: string, kwargs: Record<string, unknown>): Promise<ModelscopeTextGenerationOutput> => {
    checkInput(text)
    if (mode === 'modelscope-gpt3') {
      const opts: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(kwargs)) {
        if (v === undefined) continue
        if (!Object.hasOwn(MS_GPT3_KWARGS, k))
          throw new UsageError({
            where: 'pipeline (ModelScope GPT-3)', what: `unknown option ${show(k, 40)}`,
            expected: 'top_k, top_p, temperature, max_length (ModelScope GPT3Model.generate), seed or sequence_length',
          })
        opts[MS_GPT3_KWARGS[k]] = v
      }
      const r = await modelscopeGenerate(m, tok as WordPieceTokenizer, text, opts as ModelscopeGenerateOptions)
      return { text: r.text }
    }
    const { ids } = promptIds(m, tok, text)
    const r = await generate(m, ids, { ...kwargs, tokenizer: tok })
    const s = r.sequences[0] // ModelScope's postprocess keeps the first sequence
    return { text: modelscopePostprocess(tok, s.ids.slice(s.start)).text }
  }
  async function run(input: string | string[], kwargs: Record<string, unknown> = {}) {
    kwargs ??= {}
    if (!Array.isArray(input)) return one(input, kwargs)
    const out: ModelscopeTextGenerationOutput[] = []
    for (const text of input) out.push(await one(text, kwargs))
    return out
  }
  return Object.assign(run, { model: m, tokenizer: tok, mode, dispose: () => m.dispose() }) as unknown as ModelscopeTextGenerationPipeline
}

/** ModelScope's task names (modelscope.utils.constant.Tasks) that refgpt runs. */
export const Tasks = { text_generation: 'text-generation' } as const

/**
 * ModelScope's calling convention, line for line:
 *   from modelscope.pipelines import pipeline; from modelscope.utils.constant import Tasks
 *   p = pipeline(Tasks.text_generation, model='damo/nlp_gpt3_kuakua-robot_chinese-large'); p(text)['text']
 * becomes
 *   const { pipeline, Tasks } = modelscope
 *   const p = await pipeline(Tasks.text_generation, 'damo/nlp_gpt3_kuakua-robot_chinese-large'); (await p(text)).text
 * `model_revision` (ModelScope's spelling) is accepted for `revision`.
 */
export const modelscope = {
  Tasks,
  pipeline(
    task: 'text-generation',
    model?: string | Model,
    options: Omit<PipelineOptions, 'convention'> & { model_revision?: string } = {},
  ): Promise<ModelscopeTextGenerationPipeline> {
    const { model_revision, ...rest } = options ?? {}
    return pipeline(task, model, { ...rest, revision: rest.revision ?? model_revision, convention: 'modelscope' })
  },
}
