// loadModel(dir): a Hugging Face model folder -> the model's weights on a device.
//   a folder, or a model id found in the Hugging Face / ModelScope caches (io/hub.ts), or a ModelFolder
//   (io/folder.ts: a page's picked files or a URL, io/browser.ts; files are read through it)
//   config.json -> model_type -> family file -> Arch (a ModelScope GPT-3 folder: configuration.json, see folderKind)
//   checkpoint (safetensors / sharded / pytorch_model.bin) -> family.loadShared / loadLayer -> device buffers
// A Model holds only immutable weights; model.createSession() makes the state that runs it
// (activations, KV-cache slots: decoder.ts). Devices come by name from the device registry.

import { createDevice, deviceNames, getOffload, isOffloadDevice, resolveDeviceName, type DeviceOptions } from '../device/registry.js'
import { rotaryTable, storageBytes } from '../device/storage.js'
import type { Buf, Device, Storage } from '../device/types.js'
import { CheckpointError, ConfigError, RefgptError, UsageError, show } from '../errors.js'
import { settle } from '../io/access.js'
import { openCheckpointIn, readFolderJson as readJson, type LoadedCheckpoint } from '../io/checkpoint.js'
import { FILE_CAPS, isModelFolder, type ModelFolder } from '../io/folder.js'
import { locateFolder, modelFolder } from '../io/platform.js'
import type { CheckpointFormat, DType } from '../io/types.js'
import type { Arch, Family, Traits, Weight } from './arch.js'
import { DecoderSession, runtimeBytes, type Session, type SessionOptions, type Weights } from './decoder.js'
import { checkMaxMemory, checkMemory, estimateMemory, planWeights, BUFFER_SLACK_BYTES, type MemoryEstimate, type WeightPlan } from './memory.js'
import { FAMILIES, PREFIXES, type FamilyModule } from './registry.js'
import { shapeConfig, randomCheckpoint } from './random.js'
import { WeightReader } from './weights.js'

/** A registered device name ('wasm', 'js', ...). */
export type DeviceName = string

/** The built-in device names, the default first; deviceNames() also lists devices registered later. */
export const DEVICES: readonly string[] = deviceNames()

export interface LoadOptions extends DeviceOptions {
  /** A registered device name ('wasm', the default: the WASM-SIMD kernels; 'js': the readable reference) or a Device object. */
  device?: string | Device
  /** Weight storage; default: each tensor's dtype in the checkpoint. */
  dtype?: Storage
  /** HF variant: reads model.<variant>.safetensors (e.g. 'bf16', 'f16'). */
  variant?: string
  /** The longest sequence a session may run, in positions. Default: the model's maximum (n_positions). */
  maxContext?: number
  /**
   * Full-context sequences to plan memory for (default 1): devices made of several address spaces
   * (wasm32 memories) keep this much KV-cache room beside each layer. Sessions may hold more slots.
   */
  sequences?: number
  /** Token rows per forward step of a session that does not choose (longer prompts run in chunks). Default 64. */
  maxBatchTokens?: number
  /**
   * Bytes the model may use (weights, KV cache, activations: see estimateMemory). Default: the memory
   * available (free memory bounded by the cgroup limit). loadModel refuses with a ResourceError, before
   * allocating anything, a model that needs more.
   */
  maxMemory?: number
  /** Follow symlinks that lead out of the model folder (default false: refused with an error). */
  followSymlinks?: boolean
  /**
   * For a model given by id: the revision to take from the cache (a branch, tag or full commit hash;
   * default "main" in the Hugging Face cache, "master" in ModelScope's). See resolveModelDir.
   */
  revision?: string
  /**
   * Called while the weights are placed: after each tensor (and once with 0 before the first), with the
   * bytes placed so far and the total, both as the device stores them (the plan's weight bytes, which
   * ModelInfo.weightBytes reports). The last call has loadedBytes === totalBytes. Synchronous, between
   * tensors, on the thread that loads; an error it throws aborts the load (the device is released) and
   * rejects loadModel with that error.
   */
  onProgress?: (loadedBytes: number, totalBytes: number) => void
  /**
   * ONNX Runtime devices (ort:EP, npu) only: run static graphs — batch 1, a prefill graph of `tokens` rows
   * and a decode graph of 1, a KV cache of `capacity` positions (the model's maxContext becomes it) — as
   * NPUs and WebNN need. true: tokens min(64, capacity), capacity the loaded context. Default: true for
   * 'npu', false (one dynamic graph) for ort:EP.
   */
  ortStatic?: boolean | StaticGraphOptions
}

/** Static ONNX graphs (LoadOptions.ortStatic): `tokens` rows per prefill call, a cache of `capacity` positions. */
export interface StaticGraphOptions {
  /** Prefill rows per call (default min(64, capacity)); a prompt runs in pieces of this many, the last padded (1: the decode graph does the prompt too). */
  tokens?: number
  /** KV-cache positions (default: the model's loaded context); the model's maxContext becomes this. */
  capacity?: number
}

export interface ModelInfo {
  dir: string
  family: Family
  modelType: string
  format: CheckpointFormat
  files: string[]
  /** Tensor name prefix found in the checkpoint ('transformer.' or ''). */
  prefix: string
  /** Elements per dtype as stored in the checkpoint (the tensors the model uses). */
  checkpointDtypes: Partial<Record<DType, number>>
  /** Elements per storage type as placed on the device. */
  storageDtypes: Partial<Record<Storage, number>>
  parameters: number
  /** Bytes of the weights as their storage types keep them. */
  weightBytes: number
  /** Bytes of the KV cache of one sequence at the full context. */
  kvCacheBytes: number
  /** Bytes of one session's activations (per placement group). */
  activationBytes: number
  maxContext: number
  /** Device buffers the weights occupy (more than the tensors when big weights are split). */
  weightBuffers: number
  /** Tensors in the checkpoint the model does not use (HF's non-persistent attn.bias buffers are not listed). */
  unusedTensors: string[]
  /** Placement groups (wasm32 memories) the layers were spread over. */
  groups: number
  /** Weight bytes one decoded token reads: every block, the final norm and the LM head (one embedding row aside). */
  decodeBytesPerToken: number
  /** The memory estimate loadModel checks: weights, KV cache at maxContext, activations, total, available. */
  memory: MemoryEstimate
}

export interface Model {
  readonly family: Family
  readonly arch: Arch
  /** The family in words (residual kind, positions, LM-head bias, block class). */
  readonly traits: Traits
  /** config.json as read. */
  readonly config: Record<string, unknown>
  /** generation_config.json as read, or null when the folder has none. */
  readonly generationConfig: Record<string, unknown> | null
  /** ModelScope's configuration.json for a ModelScope folder (GPT-3), else null/absent. */
  readonly modelscopeConfig?: Record<string, unknown> | null
  readonly device: Device
  readonly info: ModelInfo
  /**
   * A new session on this model: its own activations and KV-cache slots (slot 0 acquired). Any
   * number of sessions share the weights; dispose() a session to free its memory.
   */
  createSession(opts?: SessionOptions): Session
  /** The placed weights (for training and checkpoint writers; read-only for everything else). */
  readonly weights: Weights
  /** Releases the device's threads (when loadModel created the device). */
  dispose(): Promise<void>
}

interface Opened {
  family: FamilyModule
  modelType: string
  arch: Arch
  config: Record<string, unknown>
  ckpt: LoadedCheckpoint
  prefix: string
  /** ModelScope's configuration.json, for ModelScope folders. */
  modelscopeConfig: Record<string, unknown> | null
}

/** config.json -> family and Arch. */
function parseModelConfig(config: unknown, configFile: string, modelTypeOverride?: string): Omit<Opened, 'ckpt' | 'prefix' | 'modelscopeConfig'> {
  if (typeof config !== 'object' || config === null || Array.isArray(config))
    throw new ConfigError({ where: configFile, what: 'config.json is not a JSON object', found: show(config) })
  const json = config as Record<string, unknown>
  const modelType = modelTypeOverride ?? json.model_type
  const family = typeof modelType === 'string' && Object.hasOwn(FAMILIES, modelType) ? FAMILIES[modelType] : undefined
  if (!family)
    throw new ConfigError({
      where: `${configFile}: field "model_type"`,
      what: 'unsupported model_type',
      expected: `one of ${Object.keys(FAMILIES).join(', ')}`,
      found: show(modelType),
      hint: 'refgpt runs GPT-2, GPT-Neo and GPT-J checkpoints and ModelScope GPT-3 folders (configuration.json)',
    })
  return { family, modelType: modelType as string, arch: family.parseConfig(json, configFile), config: json }
}

interface FolderOptions {
  variant?: string
  followSymlinks?: boolean
}

/** A JSON file of the model folder (on disk: a link out of the folder is refused unless followed). */
function readFolderJson(folder: ModelFolder, name: string, what: string): unknown {
  return readJson(folder, name, what, ConfigError)
}

/** config.json + checkpoint headers: everything but the tensor data. */
function open(folder: ModelFolder, opts: FolderOptions = {}): Opened {
  const configFile = folder.where('config.json')
  const config = readFolderJson(folder, 'config.json', 'model config')
  const ms = modelscopeFolder(folder, config)
  const parsed = parseModelConfig(config, configFile, ms?.modelType)
  if (ms) checkVocabTxt(folder, parsed.arch)
  const ckpt = openCheckpointIn(folder, { variant: opts.variant })
  try {
    checkLayerCount(parsed.arch, parsed.config, configFile, ckpt)
    const prefixes = parsed.family.prefixes ?? PREFIXES
    const probe = parsed.family.probeTensor ?? 'wte.weight'
    const prefix = prefixes.find((p) => ckpt.tensors.has(`${p}${probe}`)) ?? prefixes[0]
    if (parsed.family.strict) checkKeysStrict(parsed, ckpt, prefix)
    return { ...parsed, ckpt, prefix, modelscopeConfig: ms?.configuration ?? null }
  } catch (e) {
    ckpt.close()
    throw e
  }
}

/**
 * Every layer has tensors of its own: a config.json with more layers than the checkpoint has tensors is
 * refused before anything is walked per layer (the dry run, the strict key check).
 */
function checkLayerCount(a: Arch, config: Record<string, unknown>, configFile: string, ckpt: LoadedCheckpoint): void {
  const tensors = ckpt.tensors.size + ckpt.unsupported.size
  if (a.nLayer <= tensors) return
  const field = ['n_layer', 'num_layers', 'num_hidden_layers'].find((k) => config[k] !== undefined && config[k] !== null) ?? 'n_layer'
  throw new ConfigError({
    where: `${configFile}: field "${field}"`,
    what: 'more layers than the checkpoint has tensors',
    expected: `at most ${tensors} (the tensors in ${ckpt.files[0] ?? ckpt.dir})`,
    found: String(a.nLayer),
    hint: 'the weights and config.json come from different models',
  })
}

/**
 * A ModelScope folder (configuration.json beside config.json, which has no model_type): the family
 * comes from configuration.json's model.type. A folder with vocab.txt and a config.json without
 * model_type but no configuration.json is reported as such (it looks like a ModelScope download).
 */
function modelscopeFolder(folder: ModelFolder, config: unknown): { modelType: string; configuration: Record<string, unknown> } | null {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) return null
  if ((config as Record<string, unknown>).model_type !== undefined) return null
  const file = folder.where('configuration.json')
  if (!folder.has('configuration.json')) {
    if (folder.has('vocab.txt'))
      throw new ConfigError({
        where: file,
        what: 'configuration.json is missing',
        expected: 'the ModelScope task config ({"model": {"type": "gpt3"}, ...}) beside config.json, which has no model_type',
        hint: 'download the whole ModelScope model folder',
      })
    return null
  }
  const json = readFolderJson(folder, 'configuration.json', 'ModelScope configuration')
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new ConfigError({ where: file, what: 'configuration.json is not a JSON object', found: show(json) })
  const configuration = json as Record<string, unknown>
  if (configuration.megatron !== undefined)
    throw new ConfigError({
      where: `${file}: field "megatron"`,
      what: 'distributed (Megatron) ModelScope GPT-3 models are not supported',
      hint: 'refgpt runs the base/large GPT-3 models (GPT3Model + vocab.txt), not the 1.3B+ tensor-parallel ones',
    })
  const model = configuration.model
  const type = typeof model === 'object' && model !== null ? (model as Record<string, unknown>).type : undefined
  if (type !== 'gpt3')
    throw new ConfigError({ where: `${file}: field "model.type"`, what: 'unsupported ModelScope model type', expected: '"gpt3"', found: show(type) })
  return { modelType: type, configuration }
}

/** How a folder generates: with transformers' semantics ('hf') or ModelScope GPT-3's pipeline. */
export type FolderKind = 'hf' | 'modelscope-gpt3'

/**
 * The kind of a model folder (or id, resolved as loadModel does). A config.json with a model_type decides
 * the family, whatever a ModelScope configuration.json beside it says: every Hugging Face model hosted on
 * ModelScope has one ({"framework": "pytorch", "task": "text-generation", ...}), and such a folder is 'hf'.
 * 'modelscope-gpt3' only for a config.json WITHOUT model_type beside a configuration.json whose model.type
 * is "gpt3" (damo/nlp_gpt3_*), which ModelScope's own text-generation pipeline runs (modelscopeGenerate).
 * Reads the two JSON files only; a folder whose files cannot be read is 'hf' (loadModel then says why).
 */
export function folderKind(idOrDir: string | ModelFolder, opts: { revision?: string; followSymlinks?: boolean } = {}): FolderKind {
  const folder = isModelFolder(idOrDir) ? idOrDir : locateFolder(idOrDir, opts)
  try {
    const config = readFolderJson(folder, 'config.json', 'model config')
    if (typeof config !== 'object' || config === null || Array.isArray(config) || (config as Record<string, unknown>).model_type !== undefined) return 'hf'
    if (!folder.has('configuration.json')) return 'hf'
    const ms = readFolderJson(folder, 'configuration.json', 'ModelScope configuration')
    const model = typeof ms === 'object' && ms !== null ? (ms as Record<string, unknown>).model : undefined
    return typeof model === 'object' && model !== null && (model as Record<string, unknown>).type === 'gpt3' ? 'modelscope-gpt3' : 'hf'
  } catch (e) {
    if (e instanceof RefgptError) return 'hf'
    throw e
  }
}

/** folderKind(idOrDir, opts) === 'modelscope-gpt3'. */
export function isModelscopeGpt3Folder(idOrDir: string | ModelFolder, opts: { revision?: string; followSymlinks?: boolean } = {}): boolean {
  return folderKind(idOrDir, opts) === 'modelscope-gpt3'
}

/** vocab.txt may have fewer lines than vocab_size (padded embedding rows) but never more. */
function checkVocabTxt(folder: ModelFolder, a: Arch): void {
  const file = folder.where('vocab.txt')
  if (!folder.has('vocab.txt')) return // the tokenizer reports a missing vocab when it is needed
  const lines = countVocabLines(folder.readText('vocab.txt', 'vocab.txt', FILE_CAPS.vocab, ConfigError).text)
  if (lines > a.nVocab)
    throw new ConfigError({
      where: file,
      what: 'vocab.txt does not match vocab_size in config.json',
      expected: `at most ${a.nVocab} tokens (the rows of word_embeddings)`,
      found: `${lines} lines`,
      hint: 'vocab.txt and config.json come from different models',
    })
}

/** Lines of a vocab.txt as BertTokenizer's load_vocab counts them (readlines: a final newline ends the last line). */
export function countVocabLines(text: string): number {
  if (text.includes('\r')) text = text.replace(/\r\n?/g, '\n') // text mode: universal newlines, as parseVocabTxt
  if (text.length === 0) return 0
  let n = 1
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++
  return text.endsWith('\n') ? n - 1 : n
}

/**
 * load_state_dict(strict=True): the checkpoint's keys (after the prefix) must be exactly the model's.
 * Linear in the tensors: the model's names are walked layer by layer (nLayer is bounded by the
 * checkpoint's tensor count), and the walk stops once a few missing names are known.
 */
function checkKeysStrict(o: Omit<Opened, 'ckpt' | 'prefix' | 'modelscopeConfig'>, ckpt: LoadedCheckpoint, prefix: string): void {
  const SHOW = 3
  const r = new WeightReader(null as unknown as LoadedCheckpoint, null, prefix, undefined, true)
  const names = (r.recorder = new Map())
  const has = (k: string) => ckpt.tensors.has(k) || ckpt.unsupported.has(k)
  const missing: string[] = []
  let walkedAll = true
  const collect = () => {
    for (const k of names.keys()) if (!has(k) && missing.push(k) > SHOW) break
  }
  const expectedNames = new Set<string>()
  o.family.loadShared(r, o.arch)
  for (const k of names.keys()) expectedNames.add(k)
  collect()
  for (let l = 0; l < o.arch.nLayer && missing.length <= SHOW; l++) {
    names.clear()
    o.family.loadLayer(r, o.arch, l)
    for (const k of names.keys()) expectedNames.add(k)
    collect()
    if (missing.length > SHOW && l < o.arch.nLayer - 1) walkedAll = false
  }
  const unexpected: string[] = []
  let nUnexpected = 0
  if (walkedAll)
    for (const k of [ckpt.tensors.keys(), ckpt.unsupported.keys()])
      for (const name of k) if (!expectedNames.has(name) && ++nUnexpected <= SHOW) unexpected.push(name)
  if (missing.length === 0 && nUnexpected === 0) return
  const more = (n: number) => (n > SHOW ? ` (+${n - SHOW} more)` : '')
  const found = [
    missing.length ? `missing ${missing.slice(0, SHOW).join(', ')}${missing.length > SHOW ? ' (and more)' : ''}` : '',
    nUnexpected ? `unexpected ${unexpected.join(', ')}${more(nUnexpected)}` : '',
  ].filter(Boolean).join('; ')
  throw new CheckpointError({
    where: ckpt.files[0] ?? ckpt.dir,
    what: 'checkpoint keys do not match the model (strict load)',
    expected: walkedAll ? `the ${expectedNames.size} tensors ${prefix}* of config.json's model` : `the tensors ${prefix}* of config.json's model`,
    found,
    hint: 'the weights and config.json come from different models',
  })
}

/**
 * The tensors of a model of a named shape (or config.json object) with seeded random weights, as a
 * checkpoint whose data is drawn on each read — e.g. to write a test checkpoint of a real size.
 */
export function randomWeights(shape: string | Record<string, unknown>, opts: { seed?: number; layers?: number } = {}): { config: Record<string, unknown>; checkpoint: LoadedCheckpoint } {
  const config = typeof shape === 'string' ? shapeConfig(shape, opts.layers) : shape
  return { config, checkpoint: openRandom(config, opts.seed ?? 1234).ckpt }
}

/** A model of `config`'s shape with seeded random weights (no file), opened like a checkpoint. */
function openRandom(config: Record<string, unknown>, seed: number): Opened {
  const parsed = parseModelConfig(config, '(config)')
  const r = new WeightReader(null as unknown as LoadedCheckpoint, null, PREFIXES[0], undefined, true)
  r.recorder = new Map()
  parsed.family.loadShared(r, parsed.arch)
  for (let l = 0; l < parsed.arch.nLayer; l++) parsed.family.loadLayer(r, parsed.arch, l)
  return { ...parsed, ckpt: randomCheckpoint(r.recorder, seed), prefix: PREFIXES[0], modelscopeConfig: null }
}

function describe(o: Opened, r: WeightReader, maxContext: number, maxT: number, memory: MemoryEstimate): ModelInfo {
  const checkpointDtypes: Partial<Record<DType, number>> = {}
  for (const name of r.used) {
    const t = o.ckpt.tensors.get(name)!
    checkpointDtypes[t.dtype] = (checkpointDtypes[t.dtype] ?? 0) + t.size
  }
  const rt = runtimeBytes(o.arch, maxT, maxContext)
  const ignorable = /(^|\.)attn\.(bias|masked_bias)$|^lm_head\.weight$/ // HF buffers; a tied head's alias
  return {
    dir: o.ckpt.dir,
    family: o.arch.family,
    modelType: o.modelType,
    format: o.ckpt.format,
    files: o.ckpt.files,
    prefix: o.prefix,
    checkpointDtypes,
    storageDtypes: { ...r.counts },
    parameters: Object.values(r.counts).reduce((s, n) => s + n, 0),
    weightBytes: r.bytes,
    kvCacheBytes: rt.kvPerLayer * o.arch.nLayer,
    activationBytes: rt.activations,
    maxContext,
    weightBuffers: r.buffers,
    unusedTensors: [...o.ckpt.tensors.keys()].filter((n) => !r.used.has(n) && !ignorable.test(n)),
    groups: memory.groups,
    decodeBytesPerToken: 0,
    memory,
  }
}

interface Sizes {
  maxContext: number
  sequences: number
  maxT: number
}

function sizes(arch: Arch, opts: LoadOptions): Sizes {
  const maxContext = opts.maxContext ?? arch.nPositions
  const sequences = opts.sequences ?? 1
  const bad = (what: string, expected: string, found: unknown): never => {
    throw new UsageError({ where: 'loadModel', what, expected, found: show(found) })
  }
  checkMaxMemory(opts.maxMemory)
  if (!Number.isInteger(maxContext) || maxContext < 1 || maxContext > arch.nPositions)
    bad('maxContext out of range', `1 .. ${arch.nPositions} (the model's positions)`, maxContext)
  if (!Number.isInteger(sequences) || sequences < 1 || sequences > 4096) bad('sequences out of range', '1 .. 4096', sequences)
  const maxT = Math.min(opts.maxBatchTokens ?? 64, maxContext)
  if (!Number.isInteger(maxT) || maxT < 1 || maxT > 4096) bad('maxBatchTokens out of range', '1 .. 4096', opts.maxBatchTokens)
  if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') bad('onProgress is not a function', 'a function (loadedBytes, totalBytes) => void', opts.onProgress)
  return { maxContext, sequences, maxT }
}

/**
 * The dry run: every tensor name and shape the model needs checked against the checkpoint, and the
 * bytes of the shared weights and of each layer counted, before anything is allocated on a device.
 */
function planModel(o: Opened, opts: LoadOptions): { reader: WeightReader; plan: WeightPlan } {
  const r = new WeightReader(o.ckpt, null, o.prefix, opts.dtype, true)
  r.vocabRows = o.arch.nVocab
  r.tiedHead = o.arch.tiedLmHead
  if (typeof opts.device === 'object' && opts.device !== null) r.bufferLimit = opts.device.limits.maxBufferBytes
  else if (opts.maxBufferBytes !== undefined) r.bufferLimit = opts.maxBufferBytes
  const plan = planWeights(r, (rr) => o.family.loadShared(rr, o.arch), (rr, l) => o.family.loadLayer(rr, o.arch, l), o.arch.nLayer)
  return { reader: r, plan }
}

/** The memory estimate of a planned model on the device loadModel would use. */
function estimate(o: Opened, plan: WeightPlan, opts: LoadOptions, sz: Sizes): MemoryEstimate {
  const device = typeof opts.device === 'object' && opts.device !== null ? opts.device.name : resolveDeviceName(opts.device)
  return estimateMemory(o.arch, {
    device, plan, maxContext: sz.maxContext, maxBatchTokens: sz.maxT, sequences: sz.sequences,
    memoryBytes: opts.memoryBytes, maxMemory: opts.maxMemory, dtype: opts.dtype,
    threads: typeof opts.device === 'object' && opts.device !== null ? (opts.device as { threads?: number }).threads : opts.threads,
  })
}

/**
 * Places the weights: the shared weights first, then each layer, in the placement group the device
 * reserves for it (devices with one address space have one group). Each group keeps room for one
 * session's activations and `sequences` full-context KV caches of its layers. `plan` is the dry run
 * that already checked every tensor and counted its bytes.
 */
async function place(o: Opened, dev: Device, opts: LoadOptions, sz: Sizes, plan: WeightPlan): Promise<{ weights: Weights; reader: WeightReader; decodeBytes: number }> {
  const { arch: a, family } = o
  // a source that fetches (a page's files or URL) fetches each part's tensors before the part is placed,
  // the next part's while this one is placed (fetched(part) waits for part's, and asks for part + 1's)
  const prefetch = o.ckpt.prefetch?.bind(o.ckpt)
  const ask = (names: string[]) => {
    const p = prefetch?.(names)
    p?.catch(() => {}) // awaited by fetched(); a load that fails first must not leave it unhandled
    return p
  }
  let ahead = ask(tensorNames(o, -1))
  const fetched = async (part: number) => {
    await ahead
    ahead = ask(part + 1 < a.nLayer ? tensorNames(o, part + 1) : [])
  }
  const r = new WeightReader(o.ckpt, dev, o.prefix, opts.dtype)
  r.vocabRows = a.nVocab
  r.tiedHead = a.tiedLmHead
  const progress = opts.onProgress
  const total = plan.shared.bytes + plan.layers.reduce((s, p) => s + p.bytes, 0)
  let reported = 0
  if (progress) {
    progress(0, total)
    r.onPlaced = (bytes) => progress((reported = Math.min(bytes, total)), total)
  }
  const rt = runtimeBytes(a, sz.maxT, sz.maxContext, sz.sequences)
  // the rotary table covers the positions a session may use (Session.check bounds them by nCtx)
  const ctx = sz.maxContext
  const rotaryBytes = 4 * ctx * a.rotaryDim
  const slack = (buffers: number) => BUFFER_SLACK_BYTES * buffers // alignment of each buffer
  const rotary: (Buf | null)[] = []
  // placed 1-D: a [ctx, rotaryDim] weight would be a matmul / embed operand, which a device may keep in its own row order
  const newGroup = () => rotary.push(a.rotaryDim > 0 ? dev.weight(rotaryTable(ctx, a.rotaryDim), [ctx * a.rotaryDim]) : null)
  // bytes promised to the current group but allocated later, by sessions: one session's
  // activations, and `sequences` full-context KV caches of every layer placed there so far
  let promised = rt.activations
  dev.placement?.reserve(plan.shared.bytes + slack(plan.shared.buffers) + promised + rotaryBytes)
  if (prefetch) await fetched(-1)
  const shared = family.loadShared(r, a)
  newGroup()
  const layers: unknown[] = [], layerGroup: number[] = []
  // weight bytes a decoded token reads: the LM head and final norm now, the blocks below
  const headDtype = o.ckpt.tensors.get(a.tiedLmHead ? o.prefix + (o.family.probeTensor ?? 'wte.weight') : 'lm_head.weight')?.dtype ?? 'F32'
  let decodeBytes = storageBytes([a.nVocab, a.nEmbd], opts.dtype ?? headDtype) + 2 * 4 * a.nEmbd + (family.traits.lmHeadBias ? 4 * a.nVocab : 0)
  for (let l = 0; l < a.nLayer; l++) {
    const part = plan.layers[l]
    const need = part.bytes + slack(part.buffers) + rt.kvPerLayer
    const g = dev.placement?.reserve(need + promised + rotaryBytes) ?? 0
    if (g === rotary.length) {
      newGroup()
      promised = rt.activations
    }
    promised += rt.kvPerLayer
    decodeBytes += part.bytes
    if (prefetch) await fetched(l)
    layers.push(family.loadLayer(r, a, l))
    layerGroup.push(g)
  }
  if (prefetch) {
    await ahead
    await prefetch([]) // drops what the last parts fetched
  }
  dev.placement?.use(0)
  r.done()
  if (progress && reported !== total) progress(total, total) // a safety net: the dry run counted the same bytes, so the last tensor reported the total
  let maxPartRows = 0
  for (const w of allWeights(shared, layers))
    if (w.parts.length > 1) for (let i = 1; i < w.rowStart.length; i++) maxPartRows = Math.max(maxPartRows, w.rowStart[i] - w.rowStart[i - 1])
  const weights: Weights = {
    dev, a, family, shared, layers, layerGroup, nGroups: rotary.length, rotary,
    nCtx: sz.maxContext, maxPartRows, maxT: sz.maxT, placements: r.placements,
  }
  return { weights, reader: r, decodeBytes }
}

/** The checkpoint tensors the shared weights (layer -1) or layer `layer` read: a dry run that records names. */
function tensorNames(o: Opened, layer: number): string[] {
  const r = new WeightReader(null as unknown as LoadedCheckpoint, null, o.prefix, undefined, true)
  r.recorder = new Map()
  if (layer < 0) o.family.loadShared(r, o.arch)
  else o.family.loadLayer(r, o.arch, layer)
  return [...r.recorder.keys()]
}

/** Every Weight in the shared weights and the layers (found by shape: objects with parts). */
function allWeights(shared: object, layers: unknown[]): Weight[] {
  const out: Weight[] = []
  const walk = (v: unknown) => {
    if (typeof v !== 'object' || v === null) return
    if (Array.isArray((v as Weight).parts) && Array.isArray((v as Weight).rowStart)) out.push(v as Weight)
    else for (const x of Object.values(v)) walk(x)
  }
  walk(shared)
  layers.forEach(walk)
  return out
}

/** Spellings of LoadOptions.dtype: the Storage names and the CLI's / torch's lower-case ones. */
const STORAGE_NAMES: Record<string, Storage> = {
  f32: 'F32', float32: 'F32', f16: 'F16', float16: 'F16', fp16: 'F16', half: 'F16', bf16: 'BF16', bfloat16: 'BF16', q8: 'Q8', q4: 'Q4',
}

/** opts with dtype as a Storage name ('q8' -> 'Q8'); any other value is a UsageError before anything is read. */
function withStorage<T extends LoadOptions>(opts: T): T {
  const d = opts.dtype as unknown
  if (d === undefined || d === null) return opts
  const s = typeof d === 'string' ? STORAGE_NAMES[d.toLowerCase()] : undefined
  if (!s || (typeof d === 'string' && !Object.hasOwn(STORAGE_NAMES, d.toLowerCase())))
    throw new UsageError({ where: 'loadModel', what: 'unknown dtype', expected: 'F32, F16, BF16, Q8 or Q4 (or f32, f16, bf16, q8, q4, float16, bfloat16)', found: show(d) })
  return { ...opts, dtype: s }
}

/**
 * Loads a model onto a device: a Hugging Face model folder (GPT-2, GPT-Neo, GPT-J) or a ModelScope GPT-3
 * folder, given by its path or by its id in the Hugging Face / ModelScope caches (resolveModelDir), or as a
 * ModelFolder (a page's files or URL: io/browser.ts; fetched as the load goes, a layer at a time).
 */
export async function loadModel(idOrDir: string | ModelFolder, opts: LoadOptions = {}): Promise<Model> {
  opts = withStorage(opts)
  const offloaded = offloadProvider(opts)
  if (offloaded) return offload(() => loadModel(idOrDir, { ...opts, device: 'js', ortStatic: undefined }), offloaded, opts)
  const folder = isModelFolder(idOrDir) ? idOrDir : modelFolder(idOrDir, opts)
  // configs and checkpoint headers; a source that fetches runs this again after each fetch (settle)
  const { o, generationConfig } = await settle(() => {
    const o = open(folder, opts)
    try {
      return { o, generationConfig: readGenerationConfig(folder) }
    } catch (e) {
      o.ckpt.close()
      throw e
    }
  })
  return build(o, opts, generationConfig)
}

/** The ONNX Runtime execution provider a device name asks for ('ort:cuda' -> 'cuda', 'npu' -> 'npu'), or null for a Device. */
function offloadProvider(opts: LoadOptions): string | null {
  const name = typeof opts.device === 'string' ? resolveDeviceName(opts.device) : null
  const provider = name !== null && isOffloadDevice(name) ? (name === 'npu' ? 'npu' : name.slice('ort:'.length)) : null
  if (provider === null && opts.ortStatic !== undefined && opts.ortStatic !== false)
    throw new UsageError({ where: 'loadModel', what: 'ortStatic applies to ONNX Runtime devices only', found: `device ${show(typeof opts.device === 'string' ? opts.device : opts.device?.name)}`, hint: 'use device "ort:EP" or "npu", or drop ortStatic' })
  return provider
}

/**
 * A model on ONNX Runtime (offload/ort.ts): the weights load on the js device (f32 arithmetic on the
 * storage dtype's values), are exported as an ONNX graph and run by the execution provider.
 */
async function offload(loadJs: () => Promise<Model>, provider: string, opts: LoadOptions): Promise<Model> {
  const o = getOffload()!
  const js = await loadJs()
  try {
    return await o.load(js, provider, { threads: opts.threads, static: opts.ortStatic })
  } catch (e) {
    await js.dispose()
    throw e
  }
}

/** generation_config.json (a JSON object), or null when the folder has none. */
function readGenerationConfig(folder: ModelFolder): Record<string, unknown> | null {
  const file = folder.where('generation_config.json')
  if (!folder.has('generation_config.json')) return null
  const json = readFolderJson(folder, 'generation_config.json', 'generation config')
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new ConfigError({ where: file, what: 'generation_config.json is not a JSON object', found: show(json) })
  return json as Record<string, unknown>
}

/**
 * A model of a real shape with seeded random weights and no file: `shape` is a name from SHAPES
 * (gpt-neo-1.3B, gptj-6b, ...) or a config.json object. For benchmarks.
 */
export async function loadRandomModel(shape: string | Record<string, unknown>, opts: LoadOptions & { seed?: number; layers?: number } = {}): Promise<Model> {
  opts = withStorage(opts)
  const offloaded = offloadProvider(opts)
  if (offloaded) return offload(() => loadRandomModel(shape, { ...opts, device: 'js', ortStatic: undefined }), offloaded, opts)
  const config = typeof shape === 'string' ? shapeConfig(shape, opts.layers) : shape
  return build(openRandom(config, opts.seed ?? 1234), opts, null)
}

async function build(o: Opened, opts: LoadOptions, generationConfig: Record<string, unknown> | null): Promise<Model> {
  const owned = typeof opts.device !== 'object'
  let dev: Device | undefined
  try {
    const sz = sizes(o.arch, opts)
    // every tensor checked and the memory counted before the device allocates anything
    const { plan } = planModel(o, opts)
    const memory = estimate(o, plan, opts, sz)
    checkMemory(memory, o.ckpt.dir, { dtype: opts.dtype })
    dev = await createDevice(opts.device, opts)
    const { weights, reader, decodeBytes } = await place(o, dev, opts, sz, plan)
    const info = { ...describe(o, reader, sz.maxContext, sz.maxT, memory), groups: weights.nGroups, decodeBytesPerToken: decodeBytes }
    const device = dev
    return {
      family: o.arch.family,
      arch: o.arch,
      traits: o.family.traits,
      config: o.config,
      generationConfig,
      modelscopeConfig: o.modelscopeConfig,
      device,
      info,
      createSession: (sopts) => new DecoderSession(weights, sopts),
      weights,
      dispose: async () => {
        if (owned) await device.dispose?.()
      },
    }
  } catch (e) {
    if (owned) await dev?.dispose?.()
    throw e
  } finally {
    o.ckpt.close()
  }
}

/** Reads config.json and the checkpoint headers, checks every tensor name and shape, reads no data. A folder or an id, as loadModel. */
export function inspectModel(idOrDir: string | ModelFolder, opts: LoadOptions = {}): ModelInfo & { arch: Arch; traits: Traits; config: Record<string, unknown> } {
  opts = withStorage(opts)
  const o = open(isModelFolder(idOrDir) ? idOrDir : modelFolder(idOrDir, opts), opts)
  try {
    const sz = sizes(o.arch, opts)
    const { reader, plan } = planModel(o, opts)
    const memory = estimate(o, plan, opts, sz)
    return { ...describe(o, reader, sz.maxContext, sz.maxT, memory), arch: o.arch, traits: o.family.traits, config: o.config }
  } finally {
    o.ckpt.close()
  }
}
