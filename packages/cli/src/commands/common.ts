// Pieces several commands share: the default model, model/device options, loading with a tokenizer and
// a progress bar, writing a user's file.

import { existsSync, readdirSync, statSync } from 'node:fs'
import { basename, resolve } from 'node:path'
import {
  DEFAULT_MODEL_NAMES, DEVICES, RefgptError, isModelId, resolveModelDir, TokenizerError, UsageError, defaultModelDir, loadModel, loadTokenizer, resolveDeviceName, writeFileAtomic,
  type LoadOptions, type Storage, type Model, type Tokenizer,
} from '@refgpt/core'
import { intOption, type Options } from '../args.js'
import { loadProgress, type Out } from '../progress.js'

/** The default model: the English one refgpt trained on Debian's fortunes (packages/core/assets/models). */
export const DEFAULT_MODEL = defaultModelDir('en')

export const MODEL_OPTIONS: Options = {
  model: { type: 'string', short: 'm' },
  lang: { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string', short: 't' },
  dtype: { type: 'string' },
  variant: { type: 'string' },
  'max-memory': { type: 'string' },
  'follow-symlinks': { type: 'boolean' },
  revision: { type: 'string' },
  'ort-static': { type: 'string' },
}

/** What --model means for a command, and what it does without one. */
const MODEL_LINE: Record<string, string> = {
  default: `  -m, --model DIR        Hugging Face or ModelScope model folder (default: the English GPT-Neo
                         ${DEFAULT_MODEL_NAMES.en}, a small model refgpt trained on Debian's fortunes)
      --lang en|zh       without --model: the English default model or the Chinese ModelScope GPT-3
                         ${DEFAULT_MODEL_NAMES.zh}
`,
  chat: `  -m, --model DIR        a ModelScope GPT-3 folder (configuration.json + vocab.txt) (default: the Chinese
                         GPT-3 ${DEFAULT_MODEL_NAMES.zh}, a small model refgpt trained on Debian's fortunes-zh);
                         for Hugging Face models use \`refgpt generate --model DIR\`
      --lang en|zh       without --model: zh, the Chinese default model (en, the English GPT-Neo, is not a
                         ModelScope model and is refused here)
`,
  bench: `  -m, --model DIR        Hugging Face or ModelScope model folder to measure (or --shape: one of the two is
                         required; there is no default model)
`,
  train: `  -m, --model DIR        the Hugging Face or ModelScope model folder to fine-tune (required, unless --resume)
`,
  'golden verify': `  -m, --model DIR        the model folder to verify (required)
`,
}

const COMMON_HELP = `      --device NAME      ${DEVICES.join(' | ')} | ort:EP | npu (default: ${DEVICES[0]}: the WASM-SIMD kernels; js: plain
                         loops; webgpu: WGSL shaders on a GPU, or on SwiftShader where there is none;
                         cpu = wasm, gpu / cuda = webgpu, as transformers spells them; ort:cpu, ort:cuda,
                         ort:webgpu ...: the model exported to ONNX and run by that ONNX Runtime execution
                         provider (onnxruntime-node); npu: ONNX Runtime's NPU provider (QNN, CANN,
                         OpenVINO, CoreML, DirectML) where the build has one, else an error)
      --ort-static N[,C] with an ort:EP device: static graphs, as NPUs and WebNN need (a prefill graph of N
                         tokens, a decode graph of 1, a KV cache of C positions; default C: the context).
                         --device npu runs static graphs by default (64 and the context); 0 there: dynamic
  -t, --threads N        threads for the wasm device (default: the number of cores)
      --dtype TYPE       weight storage: f32 | f16 | bf16 | q8 | q4 (default: as stored in the checkpoint)
      --variant NAME     read model.<NAME>.safetensors (Hugging Face variants, e.g. bf16)
      --max-memory SIZE  memory the model may use, e.g. 512M, 8G, 1.5GiB or bytes (default: the free
                         memory); a model that needs more is refused before anything is allocated
      --follow-symlinks  follow links that lead out of the model folder (default: refused)
      --revision REV     with a model id: the branch, tag or full commit hash to take from the cache
                         (default main; ModelScope: the folder's). --model also takes an id such as
                         EleutherAI/gpt-neo-1.3B, found in the Hugging Face or ModelScope cache
      --verbose          show stack traces on errors
  -h, --help             this help
  -V, --version          print refgpt's version
`

/** The model options' help for `command` (generate, chat, step, bench, train, golden export, ...): what --model does there. */
export function modelHelp(command: string): string {
  return (MODEL_LINE[command] ?? MODEL_LINE.default) + COMMON_HELP
}


/** Refuses --lang in a command that has no default model (bench, train, golden verify). */
export function noLang(command: string, v: Record<string, unknown>): void {
  if (v.lang !== undefined)
    throw new UsageError({ where: `refgpt ${command}`, what: '--lang does not apply here', found: `--lang ${String(v.lang)}`, hint: `refgpt ${command} has no default model: pass --model DIR` })
}

/** --max-context, for the commands whose context is not set by another option (generate, chat, step, inspect). */
export const CONTEXT_OPTIONS: Options = { 'max-context': { type: 'string' } }
export const CONTEXT_HELP = `      --max-context N    positions a sequence may use (default: the model's n_positions); the KV cache,
                         and the memory loading checks, are sized for it
`

const DTYPES: Record<string, Storage> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8: 'Q8', q4: 'Q4' }

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
    device = resolveDeviceName(asked) // also transformers' spellings: cpu, cuda:0 (webgpu), npu:0
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
  const ortStatic = staticOption(command, v['ort-static'] as string | undefined, device)
  const revision = v.revision as string | undefined
  const model = v.model as string | undefined
  if (revision !== undefined && model === undefined)
    throw new UsageError({ where: `refgpt ${command}`, what: '--revision needs --model ID', found: `--revision ${JSON.stringify(revision)}`, hint: 'a revision picks a snapshot of a model given by id, e.g. --model EleutherAI/gpt-neo-1.3B --revision main' })
  return {
    /** --model: a folder as given, or an id resolved in the Hugging Face / ModelScope cache (docs/model-caches.md). */
    dir: model === undefined ? defaultModelDir(lang ?? DEFAULT_LANG[command] ?? 'en') : !existsSync(model) && isModelId(model) ? resolveModelDir(model, { revision }) : model,
    device,
    threads,
    dtype: dtypeName ? DTYPES[dtypeName] : undefined,
    variant: v.variant as string | undefined,
    maxMemory,
    followSymlinks: v['follow-symlinks'] === true,
    /** --max-context (commands with CONTEXT_OPTIONS), else undefined: the model's positions. */
    maxContext,
    ortStatic,
  }
}

/** --ort-static N[,C]: static graphs on an ONNX Runtime device (0: the dynamic graph, for npu). */
function staticOption(command: string, s: string | undefined, device: string): LoadOptions['ortStatic'] {
  if (s === undefined) return undefined
  if (!device.startsWith('ort:') && device !== 'npu')
    throw new UsageError({ where: `refgpt ${command}`, what: '--ort-static applies to ONNX Runtime devices only', found: `--device ${device}`, hint: 'add --device ort:cpu (or another ort:EP, or npu)' })
  const m = /^(\d+)(?:,(\d+))?$/.exec(s.trim())
  if (!m) throw new UsageError({ where: `refgpt ${command}`, what: 'bad --ort-static', expected: 'N or N,C (prefill tokens, KV capacity), e.g. 64 or 64,512', found: JSON.stringify(s) })
  const tokens = Number(m[1]), capacity = m[2] === undefined ? undefined : Number(m[2])
  if (tokens === 0 && capacity === undefined) return false
  if (tokens < 1 || (capacity !== undefined && capacity < 1))
    throw new UsageError({ where: `refgpt ${command}`, what: 'bad --ort-static', expected: 'N >= 1 tokens and C >= 1 positions (or 0 alone: the dynamic graph)', found: JSON.stringify(s) })
  return { tokens, ...(capacity === undefined ? {} : { capacity }) }
}

/** Model options as loadModel takes them (device, threads, dtype, variant, maxMemory, followSymlinks, maxContext). */
export function loadOptions(o: ReturnType<typeof modelOptions>) {
  return { device: o.device, threads: o.threads, dtype: o.dtype, variant: o.variant, maxMemory: o.maxMemory, followSymlinks: o.followSymlinks, maxContext: o.maxContext, ortStatic: o.ortStatic }
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

/** Commands that take a prompt as token ids, which a folder without a tokenizer can still run. */
const PROMPT_IDS: ReadonlySet<string> = new Set(['generate', 'golden export'])

export function requireTokenizer(dir: string, command: string, opts: { followSymlinks?: boolean } = {}): Tokenizer {
  const tok = maybeTokenizer(dir, opts)
  if (!tok)
    throw new TokenizerError({
      where: dir,
      what: 'the model folder has no tokenizer',
      expected: 'tokenizer.json, vocab.json + merges.txt, or a ModelScope vocab.txt',
      hint: PROMPT_IDS.has(command)
        ? `give the prompt as token ids with \`refgpt ${command} --prompt-ids 1,2,3\`, or copy the tokenizer files of the model into the folder`
        : "copy the model's tokenizer files into the folder",
    })
  return tok
}

export async function load(command: string, v: Record<string, unknown>, extra: Omit<LoadOptions, 'device'> = {}): Promise<Model> {
  const o = modelOptions(command, v)
  return loadWithProgress(o.dir, { ...loadOptions(o), ...extra })
}

/** LoadOptions.onProgress (core calls it during loadModel and loadRandomModel). */
export interface ProgressOption {
  onProgress?: (loadedBytes: number, totalBytes: number) => void
}

/** loadModel with a progress bar on stderr while the weights load (only when stderr is a terminal). */
export function loadWithProgress(dir: string, opts: LoadOptions = {}): Promise<Model> {
  return withLoadProgress(modelLabel(dir), (p) => loadModel(dir, { ...opts, ...p }))
}

/** A model's name for the loading bar: its folder's name, or the model id as given. */
export function modelLabel(dir: string): string {
  const abs = resolve(dir)
  return existsSync(abs) ? basename(abs) : dir
}

/**
 * Runs a load (loadModel, loadRandomModel) with `{ onProgress }` for its options, drawing the bar
 * "loading LABEL [####....] 12.3 / 29.5 MB  42%" on stderr when it is a terminal; the bar is cleared after.
 */
export async function withLoadProgress<T>(label: string, run: (progress: ProgressOption) => Promise<T>, out: Out = process.stderr): Promise<T> {
  const bar = loadProgress(label, out)
  try {
    return await run({ onProgress: bar.onProgress })
  } finally {
    bar.done()
  }
}

/**
 * core's writeFileAtomic for a file the user named: an error names FILE, not the temp file beside it
 * (FILE.tmp-PID-RANDOM) that the write goes through.
 */
export function writeUserFile(file: string, content: Parameters<typeof writeFileAtomic>[1]): ReturnType<typeof writeFileAtomic> {
  try {
    return writeFileAtomic(file, content)
  } catch (e) {
    throw userPathError(e, file)
  }
}

/** An error whose `where` is the temp file of an atomic write of `file`, renamed to `file`; others as they are. */
export function userPathError(err: unknown, file: string): unknown {
  if (!(err instanceof RefgptError)) return err
  const e: RefgptError = err
  const abs = resolve(file)
  const where = e.details.where
  if (where === undefined || !(where === abs || where.startsWith(`${abs}.tmp-`))) return e
  const Class = e.constructor as new (d: RefgptError['details'], o?: { cause?: unknown }) => RefgptError
  return new Class({ ...e.details, where: file }, { cause: e.cause ?? e })
}
