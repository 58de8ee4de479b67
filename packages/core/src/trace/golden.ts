// Golden-output files: one forward pass over a prompt, every traced tensor, in MessagePack.
//   exportGolden(model, ids)  -> bytes (format "refgpt-golden", version 1; see docs/golden-format.md)
//   readGolden(bytes, file)   -> Golden, fully validated (a corrupt file is a one-line CheckpointError)
//   verifyGolden(golden, model) -> one row per tensor: max |Δ|, max |Δ|/max(|ref|,1), pass/fail
// Tensors are stored as raw little-endian f32 bytes with their shape, named as the tracer's stages.

import { readFileSync } from 'node:fs'
import { Packr, Unpackr } from 'msgpackr'
import { CheckpointError, UsageError, show } from '../errors.js'
import type { Model } from '../models/model.js'
import type { Tokenizer } from '../tokenizers/index.js'
import type { TraceEvent } from '../models/tracing.js'

export const GOLDEN_FORMAT = 'refgpt-golden'
export const GOLDEN_VERSION = 1

export interface GoldenTensor {
  dtype: 'f32'
  shape: number[]
  /** Raw little-endian f32 bytes (product(shape) * 4 of them). */
  data: Uint8Array
}

export interface Golden {
  format: typeof GOLDEN_FORMAT
  version: typeof GOLDEN_VERSION
  /** "refgpt <version>". */
  created_by: string
  family: string
  model_type: string
  /** config.json as read. */
  config: Record<string, unknown>
  /** The model folder the file was made from (absolute path as given), or null. */
  model_dir: string | null
  /** The device the tensors were computed on ('js', 'wasm'). */
  device: string
  prompt: { text?: string; ids: number[] }
  /** The tokenizer's view of the prompt ids, when the model folder has a tokenizer. */
  tokenizer?: { kind: string; pieces: (string | null)[] }
  tensors: Record<string, GoldenTensor>
}

export interface ExportGoldenOptions {
  tokenizer?: Tokenizer | null
  /** The prompt text the ids came from (recorded only). */
  text?: string
  /** Keep only tensors whose name matches (see tensorFilter). */
  tensors?: string
  /** Recorded as model_dir (default: model.info.dir). */
  modelDir?: string | null
}

/**
 * A tensor-name filter from a pattern: a glob (`*` any run of characters, dots included; `?` one
 * character; `a,b` alternatives), matched against the whole name — `h.0.*`, `*.attn.probs`,
 * `embed,ln_f,logits` — or, written between slashes, a JavaScript regular expression (`/^h\.1[01]\./`)
 * searched in the name.
 */
export function tensorFilter(pattern: string | undefined): (name: string) => boolean {
  if (pattern === undefined || pattern === '') return () => true
  if (pattern.length >= 2 && pattern.startsWith('/') && pattern.endsWith('/')) {
    let re: RegExp
    try {
      re = new RegExp(pattern.slice(1, -1))
    } catch (e) {
      throw new UsageError({ what: 'bad --tensors regular expression', found: show(pattern), hint: String((e as Error).message).split('\n')[0] })
    }
    return (name) => re.test(name)
  }
  const alts = pattern.split(',').map((p) => p.trim()).filter((p) => p.length > 0)
  const res = alts.map((g) => new RegExp('^' + g.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$'))
  return (name) => res.some((re) => re.test(name))
}

let versionCache: string | undefined
function refgptVersion(): string {
  if (versionCache) return versionCache
  try {
    // src/trace/golden.ts and dist/trace/golden.js both sit two folders below package.json
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
    versionCache = typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    versionCache = 'unknown'
  }
  return versionCache!
}

const packr = new Packr({ useRecords: false, variableMapSize: true })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true })

/**
 * Runs the forward over `ids` in one step (a session whose step holds every row) and collects its
 * tensors, [T, ...] each; the logits of every row come from the one [T, V] LM-head matmul.
 */
async function traceForward(model: Model, ids: number[], keep: (name: string) => boolean): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  if (ids.length > 4096)
    throw new UsageError({ what: 'prompt too long for one traced forward step', expected: 'at most 4096 token ids', found: String(ids.length) })
  const pending: { name: string; shape: number[]; data: Promise<Float32Array> }[] = []
  const session = model.createSession({ maxBatchTokens: ids.length })
  try {
    if (!session.canTrace) {
      // an ONNX graph (ort devices): its one comparable output, the logits
      const data = await session.logits(ids, 0)
      return new Map(keep('logits') ? [['logits', { shape: [ids.length, model.arch.nVocab], data }]] : [])
    }
    await session.logits(ids, 0, {
      tracer: (e: TraceEvent) => {
        if (keep(e.name)) pending.push({ name: e.name, shape: [...e.shape], data: e.read() })
      },
    })
  } finally {
    session.dispose()
  }
  const out = new Map<string, { shape: number[]; data: Float32Array }>()
  for (const p of pending) out.set(p.name, { shape: p.shape, data: await p.data })
  return out
}

function checkIds(model: Model, ids: ArrayLike<number>, where: string): number[] {
  const V = model.arch.nVocab
  const out = Array.from(ids)
  if (out.length === 0) throw new UsageError({ where, what: 'the prompt is empty', expected: 'at least one token id' })
  out.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= V)
      throw new UsageError({ where, what: `token id at position ${i} out of range`, expected: `an integer in 0 .. ${V - 1}`, found: show(id) })
  })
  return out
}

function f32Bytes(a: Float32Array): Uint8Array {
  const copy = new Float32Array(a) // own buffer, exactly the tensor
  if (!littleEndian) throw new Error('refgpt golden files need a little-endian host')
  return new Uint8Array(copy.buffer, 0, copy.byteLength)
}
const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/** Golden file bytes (MessagePack) of one forward pass over `ids`. */
export async function exportGolden(model: Model, ids: ArrayLike<number>, opts: ExportGoldenOptions = {}): Promise<Uint8Array> {
  const prompt = checkIds(model, ids, 'golden export')
  const keep = tensorFilter(opts.tensors)
  const traced = await traceForward(model, prompt, keep)
  if (traced.size === 0)
    throw new UsageError({ where: 'golden export', what: 'no tensor matches --tensors', found: show(opts.tensors), hint: 'stage names: embed, h.L.ln_1, h.L.attn.q/k/v/probs/out, h.L.ln_2, h.L.mlp.hidden/out, h.L.out, ln_f, logits' })
  const tensors: Record<string, GoldenTensor> = {}
  for (const [name, t] of traced) tensors[name] = { dtype: 'f32', shape: t.shape, data: f32Bytes(t.data) }
  const golden: Golden = {
    format: GOLDEN_FORMAT,
    version: GOLDEN_VERSION,
    created_by: `refgpt ${refgptVersion()}`,
    family: model.family,
    model_type: model.info.modelType,
    config: model.config,
    model_dir: opts.modelDir === undefined ? model.info.dir : opts.modelDir,
    device: model.device.name,
    prompt: opts.text === undefined ? { ids: prompt } : { text: opts.text, ids: prompt },
    tensors,
  }
  if (opts.tokenizer) golden.tokenizer = { kind: opts.tokenizer.kind, pieces: prompt.map((id) => opts.tokenizer!.idToToken(id) ?? null) }
  return packGolden(golden)
}

/** A Golden object -> file bytes (plain MessagePack maps, no msgpackr records). */
export function packGolden(golden: Golden): Uint8Array {
  return packr.pack(golden)
}

/** Tensors a golden file may hold: a traced forward has about 12 per layer (a 1,000-layer model is 12,003). */
export const MAX_GOLDEN_TENSORS = 1 << 16
/** Largest golden file read (the logits of 4,096 tokens over GPT-J's 50,400 rows are 826 MB). */
export const MAX_GOLDEN_BYTES = 2 ** 31 - 1

/** Parses and validates golden file bytes; any problem is a one-line CheckpointError naming `file`. */
export function readGolden(bytes: Uint8Array, file: string): Golden {
  const bad = (what: string, expected?: string, found?: unknown): never => {
    throw new CheckpointError({
      where: file,
      what,
      expected,
      found: found === undefined ? undefined : show(found, 60),
      hint: 'the file is not a complete refgpt golden file; export it again with `refgpt golden export`',
    })
  }
  if (bytes.length === 0) bad('the golden file is empty')
  let v: unknown
  try {
    v = unpackr.unpack(bytes)
  } catch (e) {
    const msg = String((e as Error)?.message ?? e).split('\n')[0]
    bad(`not a readable MessagePack golden file (${msg.length > 80 ? msg.slice(0, 79) + '…' : msg})`)
  }
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array)
  if (!isObj(v)) return bad('not a refgpt golden file', 'a MessagePack map with format "refgpt-golden"', typeof v)
  if (v.format !== GOLDEN_FORMAT) bad('not a refgpt golden file: field "format"', `"${GOLDEN_FORMAT}"`, v.format)
  if (v.version !== GOLDEN_VERSION) bad('unsupported golden file version', String(GOLDEN_VERSION), v.version)
  for (const k of ['created_by', 'family', 'model_type', 'device'] as const)
    if (typeof v[k] !== 'string') bad(`field "${k}" missing or not a string`, 'a string', v[k])
  if (!isObj(v.config)) bad('field "config" missing or not a map', 'config.json as a map', v.config)
  if (v.model_dir !== undefined && v.model_dir !== null && typeof v.model_dir !== 'string') bad('field "model_dir" is not a string', 'a string or nil', v.model_dir)
  const p = v.prompt
  if (!isObj(p)) return bad('field "prompt" missing or not a map', '{ids, text?}', p)
  if (!Array.isArray(p.ids) || p.ids.length === 0 || !p.ids.every((id) => Number.isSafeInteger(id) && (id as number) >= 0))
    bad('field "prompt.ids" is not a non-empty list of token ids', 'non-negative integers', p.ids)
  if (p.text !== undefined && typeof p.text !== 'string') bad('field "prompt.text" is not a string', 'a string', p.text)
  if (v.tokenizer !== undefined) {
    const t = v.tokenizer
    if (!isObj(t) || typeof t.kind !== 'string' || !Array.isArray(t.pieces) || !t.pieces.every((s) => s === null || typeof s === 'string'))
      bad('field "tokenizer" is malformed', '{kind: string, pieces: [string | nil]}')
  }
  const tensors = v.tensors
  if (!isObj(tensors)) return bad('field "tensors" missing or not a map', 'a map of name -> {dtype, shape, data}', tensors)
  const names = Object.keys(tensors)
  if (names.length === 0) bad('field "tensors" is empty')
  if (names.length > MAX_GOLDEN_TENSORS) bad('field "tensors" has too many tensors', `at most ${MAX_GOLDEN_TENSORS}`, names.length)
  for (const name of names) {
    const t = tensors[name]
    const where = `tensor "${name}"`
    if (!isObj(t)) return bad(`${where} is not a map`, '{dtype, shape, data}', t)
    if (t.dtype !== 'f32') bad(`${where}: unsupported dtype`, '"f32"', t.dtype)
    const shape = t.shape
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0))
      return bad(`${where}: bad shape`, 'a list of at most 8 non-negative integers', shape)
    if (!(t.data instanceof Uint8Array)) return bad(`${where}: data is not a byte string`, 'bin (raw little-endian f32)', typeof t.data)
    let n = 1
    for (const d of shape as number[]) n *= d
    if (!Number.isSafeInteger(n * 4) || n * 4 !== t.data.byteLength)
      bad(`${where}: data length does not match its shape`, `${n * 4} bytes for shape [${(shape as number[]).join(', ')}]`, `${t.data.byteLength} bytes`)
  }
  return v as unknown as Golden
}

/** A tensor's values (copied into an aligned Float32Array). */
export function goldenTensor(t: GoldenTensor): Float32Array {
  const out = new Float32Array(t.data.byteLength / 4)
  new Uint8Array(out.buffer).set(t.data)
  return out
}

export interface VerifyOptions {
  /** Absolute tolerance for every tensor (default 1e-4; 1e-5 for attention probabilities). */
  atol?: number
  /** Relative tolerance |Δ|/max(|ref|,1) for every tensor (default 1e-4; none for attention probabilities). */
  rtol?: number
}

export interface VerifyRow {
  name: string
  shape: number[]
  /** Max |actual - ref| (NaN when a value is NaN; Infinity when the tensor is missing or its shape differs). */
  maxAbs: number
  /** Max |actual - ref| / max(|ref|, 1). */
  maxRel: number
  atol: number
  rtol: number
  pass: boolean
  /** Why a tensor failed without numbers (missing, shape), or why it was skipped. */
  note?: string
  /** Not compared: the model cannot show this stage (an ONNX graph on an ort device shows only the logits). */
  skipped?: boolean
}

/** The golden README's tolerances by stage. */
export function defaultTolerance(name: string): { atol: number; rtol: number } {
  return name.endsWith('.attn.probs') ? { atol: 1e-5, rtol: Infinity } : { atol: 1e-4, rtol: 1e-4 }
}

/** Recomputes the forward of the golden prompt on `model` and compares every tensor of the file. */
export async function verifyGolden(golden: Golden, model: Model, opts: VerifyOptions = {}): Promise<VerifyRow[]> {
  if (golden.family !== model.family)
    throw new UsageError({ where: 'golden verify', what: 'the model is not the family the golden file was made with', expected: golden.family, found: model.family })
  const ids = checkIds(model, golden.prompt.ids, 'golden verify')
  const names = Object.keys(golden.tensors)
  const wanted = new Set(names)
  const traced = await traceForward(model, ids, (n) => wanted.has(n))
  const probe = model.createSession({ maxBatchTokens: 1 })
  const graphOnly = !probe.canTrace
  probe.dispose()
  const rows: VerifyRow[] = []
  for (const name of names) {
    const ref = golden.tensors[name]
    const def = defaultTolerance(name)
    const atol = opts.atol ?? def.atol, rtol = opts.rtol ?? def.rtol
    const row: VerifyRow = { name, shape: ref.shape, maxAbs: Infinity, maxRel: Infinity, atol, rtol, pass: false }
    const got = traced.get(name)
    if (!got && graphOnly) {
      row.skipped = true
      row.note = `skipped: not an output of the ONNX graph ${model.device.name} runs (its logits are)`
    } else if (!got) row.note = 'not produced by this model'
    else if (got.shape.length !== ref.shape.length || got.shape.some((d, i) => d !== ref.shape[i])) row.note = `shape [${got.shape.join(', ')}] vs [${ref.shape.join(', ')}]`
    else {
      const expected = goldenTensor(ref), actual = got.data
      let abs = 0, rel = 0, nan = false
      for (let i = 0; i < expected.length; i++) {
        const d = Math.abs(actual[i] - expected[i])
        if (Number.isNaN(d)) nan = true
        else if (d > abs) abs = d
        const r = d / Math.max(Math.abs(expected[i]), 1)
        if (r > rel) rel = r
      }
      row.maxAbs = nan ? NaN : abs
      row.maxRel = nan ? NaN : rel
      if (nan) row.note = 'NaN'
      row.pass = abs <= atol && rel <= rtol
    }
    rows.push(row)
  }
  return rows
}
