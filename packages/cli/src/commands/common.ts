// Pieces several commands share: the default model, model/device options, loading with a tokenizer.

import { readdirSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { DEFAULT_MODEL_NAMES, DEVICES, TokenizerError, UsageError, defaultModelDir, loadModel, loadTokenizer, resolveDeviceName, type Storage, type Model, type Tokenizer } from '@refgpt/core'
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
  'max-memory': { type: 'string' },
  'follow-symlinks': { type: 'boolean' },
}

export const MODEL_HELP = `  -m, --model DIR        Hugging Face or ModelScope model folder (default: a model refgpt trained on
                         Debian's fortunes: English GPT-Neo ${DEFAULT_MODEL_NAMES.en}; chat: Chinese GPT-3 ${DEFAULT_MODEL_NAMES.zh})
      --lang en|zh       without --model: the English or the Chinese default model
      --device NAME      ${DEVICES.join(' | ')} (default: ${DEVICES[0]}: the WASM-SIMD kernels; js: plain loops;
                         cpu = wasm, as transformers spells it)
  -t, --threads N        threads for the wasm device (default: the number of cores)
      --dtype TYPE       weight storage: f32 | f16 | bf16 | q8 (default: as stored in the checkpoint)
      --variant NAME     read model.<NAME>.safetensors (Hugging Face variants, e.g. bf16)
      --max-memory SIZE  memory the model may use, e.g. 512M, 8G, 1.5GiB or bytes (default: the free
                         memory); a model that needs more is refused before anything is allocated
      --follow-symlinks  follow links that lead out of the model folder (default: refused)
      --verbose          show stack traces on errors
  -h, --help             this help
`

/** --max-context, for the commands whose context is not set by another option (generate, chat, step, inspect). */
export const CONTEXT_OPTIONS: Options = { 'max-context': { type: 'string' } }
export const CONTEXT_HELP = `      --max-context N    positions a sequence may use (default: the model's n_positions); the KV cache,
                         and the memory loading checks, are sized for it
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
  const asked = (v.device as string | undefined) ?? DEVICES[0]
  let device: string
  try {
    device = resolveDeviceName(asked) // also transformers' spellings: cpu, cuda:0, npu:0
  } catch (e) {
    const d = e instanceof UsageError ? e.details : { what: 'unknown device' }
    throw new UsageError({ ...d, where: `refgpt ${command}`, what: d.what === 'unknown device' ? 'unknown --device' : d.what, found: JSON.stringify(asked) })
  }
  const dtypeName = v.dtype as string | undefined
  if (dtypeName !== undefined && !DTYPES[dtypeName])
    throw new UsageError({ where: `refgpt ${command}`, what: 'unknown --dtype', expected: `one of ${Object.keys(DTYPES).join(', ')}`, found: JSON.stringify(dtypeName) })
  const threads = v.threads === undefined ? undefined : intOption(command, 'threads', v.threads as string, 1, 1)
  const maxMemory = v['max-memory'] === undefined ? undefined : sizeOption(command, 'max-memory', v['max-memory'] as string)
  const maxContext = v['max-context'] === undefined ? undefined : intOption(command, 'max-context', v['max-context'] as string, 1, 1)
  return {
    dir: (v.model as string | undefined) ?? defaultModelDir(lang ?? DEFAULT_LANG[command] ?? 'en'),
    device,
    threads,
    dtype: dtypeName ? DTYPES[dtypeName] : undefined,
    variant: v.variant as string | undefined,
    maxMemory,
    followSymlinks: v['follow-symlinks'] === true,
    /** --max-context (commands with CONTEXT_OPTIONS), else undefined: the model's positions. */
    maxContext,
  }
}

/** Model options as loadModel takes them (device, threads, dtype, variant, maxMemory, followSymlinks, maxContext). */
export function loadOptions(o: ReturnType<typeof modelOptions>) {
  return { device: o.device, threads: o.threads, dtype: o.dtype, variant: o.variant, maxMemory: o.maxMemory, followSymlinks: o.followSymlinks, maxContext: o.maxContext }
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }

/**
 * A byte count: a whole number of bytes, or a number with a unit K, M, G or T (powers of 1024, with
 * or without "i" and "B": 512M = 512MiB = 512MB = 536870912 bytes; 1.5GiB).
 */
export function sizeOption(command: string, name: string, value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*$/i.exec(value)
  const bytes = m ? Math.floor(Number(m[1]) * SIZE_UNITS[(m[2] ?? '').toLowerCase()]) : NaN
  if (!m || !Number.isSafeInteger(bytes) || bytes < 1)
    throw new UsageError({ where: `refgpt ${command}`, what: `bad --${name}`, expected: 'a size such as 512M, 8G, 1.5GiB or a number of bytes', found: JSON.stringify(value) })
  return bytes
}

/** The folder's tokenizer, or null when it has no tokenizer files (then ids are in and out). */
export function maybeTokenizer(dir: string, opts: { followSymlinks?: boolean } = {}): Tokenizer | null {
  let files: string[] = []
  try {
    if (statSync(dir).isDirectory()) files = readdirSync(dir)
  } catch {
    // a missing or unreadable folder: no tokenizer here (loading the model reports the folder)
  }
  const has = ['tokenizer.json', 'vocab.json', 'vocab.txt'].some((f) => files.includes(f))
  if (!has) return null
  return loadTokenizer(dir, { followSymlinks: opts.followSymlinks })
}

export function requireTokenizer(dir: string, command: string, opts: { followSymlinks?: boolean } = {}): Tokenizer {
  const tok = maybeTokenizer(dir, opts)
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
  return loadModel(o.dir, { ...loadOptions(o), ...extra })
}
