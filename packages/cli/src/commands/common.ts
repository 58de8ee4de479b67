// Pieces several commands share: the default model, model/device options, loading with a tokenizer.

import { existsSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { DEFAULT_MODEL_NAMES, DEVICES, TokenizerError, UsageError, defaultModelDir, loadModel, loadTokenizer, type Storage, type Model, type Tokenizer } from '@refgpt/core'
import { intOption, type Options } from '../args.js'

/** The default model: the English one refgpt trained on Debian's fortunes (packages/core/assets/models). */
export const DEFAULT_MODEL = defaultModelDir('en')
/** The tiny GPT-2 shipped in packages/cli/assets (random weights, real tokenizer): fast, for tests. */
export const TINY_MODEL = fileURLToPath(new URL('../../assets/gpt2-tiny', import.meta.url))

export const MODEL_OPTIONS: Options = {
  model: { type: 'string', short: 'm' },
  lang: { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string', short: 't' },
  dtype: { type: 'string' },
  variant: { type: 'string' },
}

export const MODEL_HELP = `  -m, --model DIR        Hugging Face or ModelScope model folder (default: a model refgpt trained on
                         Debian's fortunes: English GPT-Neo ${DEFAULT_MODEL_NAMES.en}; chat: Chinese GPT-3 ${DEFAULT_MODEL_NAMES.zh})
      --lang en|zh       without --model: the English or the Chinese default model
      --device NAME      ${DEVICES.join(' | ')} (default: ${DEVICES[0]}: the WASM-SIMD kernels; js: plain loops)
  -t, --threads N        threads for the wasm device (default: the number of cores)
      --dtype TYPE       weight storage: f32 | f16 | bf16 | q8 (default: as stored in the checkpoint)
      --variant NAME     read model.<NAME>.safetensors (Hugging Face variants, e.g. bf16)
      --verbose          show stack traces on errors
  -h, --help             this help
`

const DTYPES: Record<string, Storage> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8: 'Q8' }

/** The default model's language per command (chat talks to the Chinese one). */
const DEFAULT_LANG: Record<string, string> = { chat: 'zh' }

export function modelOptions(command: string, v: Record<string, unknown>) {
  const lang = v.lang as string | undefined
  if (lang !== undefined && !Object.hasOwn(DEFAULT_MODEL_NAMES, lang))
    throw new UsageError({ where: `refgpt ${command}`, what: 'unknown --lang', expected: `one of ${Object.keys(DEFAULT_MODEL_NAMES).join(', ')}`, found: JSON.stringify(lang) })
  if (lang !== undefined && v.model !== undefined)
    throw new UsageError({ where: `refgpt ${command}`, what: '--lang picks a default model and --model names one', hint: 'pass one of them' })
  const device = (v.device as string | undefined) ?? DEVICES[0]
  if (!(DEVICES as readonly string[]).includes(device))
    throw new UsageError({ where: `refgpt ${command}`, what: 'unknown --device', expected: `one of ${DEVICES.join(', ')}`, found: JSON.stringify(device) })
  const dtypeName = v.dtype as string | undefined
  if (dtypeName !== undefined && !DTYPES[dtypeName])
    throw new UsageError({ where: `refgpt ${command}`, what: 'unknown --dtype', expected: `one of ${Object.keys(DTYPES).join(', ')}`, found: JSON.stringify(dtypeName) })
  const threads = v.threads === undefined ? undefined : intOption(command, 'threads', v.threads as string, 1, 1)
  return {
    dir: (v.model as string | undefined) ?? defaultModelDir(lang ?? DEFAULT_LANG[command] ?? 'en'),
    device,
    threads,
    dtype: dtypeName ? DTYPES[dtypeName] : undefined,
    variant: v.variant as string | undefined,
  }
}

/** The folder's tokenizer, or null when it has no tokenizer files (then ids are in and out). */
export function maybeTokenizer(dir: string): Tokenizer | null {
  const files = existsSync(dir) ? readdirSync(dir) : []
  const has = ['tokenizer.json', 'vocab.json', 'vocab.txt'].some((f) => files.includes(f))
  if (!has) return null
  return loadTokenizer(dir)
}

export function requireTokenizer(dir: string, command: string): Tokenizer {
  const tok = maybeTokenizer(dir)
  if (!tok)
    throw new TokenizerError({
      where: dir,
      what: 'the model folder has no tokenizer',
      expected: 'tokenizer.json or vocab.json + merges.txt',
      hint: `use --prompt-ids with \`refgpt ${command}\`, or copy the tokenizer files into the folder`,
    })
  return tok
}

export async function load(command: string, v: Record<string, unknown>, extra: { maxContext?: number } = {}): Promise<Model> {
  const o = modelOptions(command, v)
  return loadModel(o.dir, { device: o.device, threads: o.threads, dtype: o.dtype, variant: o.variant, ...extra })
}
