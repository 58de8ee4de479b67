// Opening checkpoints: format detection in a model folder (in Hugging Face's order), sharded indexes,
// and the Checkpoint object that reads tensors from the open files on demand.
//
//   openCheckpoint(dir, { variant })   model folder -> Checkpoint
//   openSafetensors(file)              one .safetensors file
//   openTorchBin(file)                 one torch.save zip (pytorch_model.bin)
//   readJsonFile(file, what)           JSON with one-line errors naming the file

import * as fs from 'node:fs'
import * as path from 'node:path'
import { CheckpointError, RefgptError, UsageError, show, type ErrorDetails } from '../errors.js'
import { bf16ToF32Array, f16ToF32Array } from './dtype.js'
import {
  DTYPE_HINT,
  SUPPORTED_DTYPES,
  isPlainObject,
  loadSafetensorsFile,
  type TensorEntry,
  type TensorFile,
  type UnsupportedTensor,
} from './safetensors.js'
import { loadTorchFile } from './torch.js'
import type { Checkpoint, CheckpointFormat, TensorInfo } from './types.js'

export type { UnsupportedTensor } from './safetensors.js'

/** A Checkpoint plus what the reader saw besides the usable tensors. */
export interface LoadedCheckpoint extends Checkpoint {
  /**
   * Tensors whose dtype refgpt does not compute with (e.g. the boolean `attn.bias` buffers of old GPT-Neo and
   * GPT-J .bin files). They are not in `tensors`; readBytes/readF32 of one throws a CheckpointError naming
   * its dtype. A model that needs one of these names should report it instead of "missing tensor".
   */
  readonly unsupported: ReadonlyMap<string, UnsupportedTensor>
  /** The safetensors `__metadata__` of the first file (empty for .bin). */
  readonly metadata: Readonly<Record<string, string>>
}

export interface OpenCheckpointOptions {
  /** Hugging Face weight variant: "bf16" reads model.bf16.safetensors, pytorch_model.bf16.bin, ... */
  variant?: string
}

/** Elements per chunk when widening F16/BF16 (bounds the temporary buffer to 8 MiB). */
const WIDEN_CHUNK = 4 << 20
/** Largest JSON file readJsonFile reads (tokenizer.json files are a few MB). */
const MAX_JSON_BYTES = 256 << 20

// ---------------------------------------------------------------------------------------------------
// The Checkpoint implementation

class TensorTable implements LoadedCheckpoint {
  readonly tensors: ReadonlyMap<string, TensorInfo>
  readonly files: string[]
  private closed = false

  constructor(
    readonly dir: string,
    readonly format: CheckpointFormat,
    private readonly opened: TensorFile[],
    private readonly entries: ReadonlyMap<string, TensorEntry>,
    readonly unsupported: ReadonlyMap<string, UnsupportedTensor>,
  ) {
    this.files = opened.map((f) => f.file)
    this.tensors = new Map([...entries].map(([name, e]) => [name, e.info]))
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.opened[0]?.metadata ?? {}
  }

  readBytes(name: string): Uint8Array {
    const e = this.entry(name)
    const out = new Uint8Array(e.byteLength)
    e.read(out, 0)
    return out
  }

  readF32(name: string, out?: Float32Array): Float32Array {
    const e = this.entry(name)
    const n = e.info.size
    if (out && out.length !== n) {
      throw new UsageError({
        what: 'readF32 output has the wrong length',
        where: `${e.info.file}: tensor ${name}`,
        expected: `${n} elements`,
        found: `${out.length}`,
      })
    }
    const dst = out ?? new Float32Array(n)
    if (e.info.dtype === 'F32') {
      // One read straight into the output's bytes (the file and the machine are little-endian).
      e.read(new Uint8Array(dst.buffer, dst.byteOffset, n * 4), 0)
      return dst
    }
    const widen = e.info.dtype === 'F16' ? f16ToF32Array : bf16ToF32Array
    const chunk = e.ranged ? Math.min(WIDEN_CHUNK, n) : n
    const tmp = new Uint16Array(chunk)
    for (let i = 0; i < n; i += chunk) {
      const part = tmp.subarray(0, Math.min(chunk, n - i))
      e.read(new Uint8Array(part.buffer, 0, part.length * 2), i * 2)
      widen(part, dst, i)
    }
    return dst
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    for (const f of this.opened) f.handle.close()
  }

  private entry(name: string): TensorEntry {
    if (this.closed) throw new CheckpointError({ what: `tensor ${name} read after close()`, where: this.dir })
    const e = this.entries.get(name)
    if (e) return e
    const u = this.unsupported.get(name)
    if (u) {
      throw new CheckpointError({
        what: 'unsupported dtype',
        where: `${u.file}: tensor ${name}`,
        expected: SUPPORTED_DTYPES,
        found: u.dtype,
        hint: DTYPE_HINT,
      })
    }
    const some = [...this.entries.keys()].slice(0, 3).join(', ')
    throw new CheckpointError({
      what: `no tensor named ${show(name)}`,
      where: this.files.length === 1 ? this.files[0] : this.dir,
      found: `${this.entries.size} tensors, e.g. ${some}`,
    })
  }
}

function single(format: CheckpointFormat, f: TensorFile): TensorTable {
  return new TensorTable(path.dirname(f.file), format, [f], f.tensors, f.unsupported)
}

// ---------------------------------------------------------------------------------------------------
// Single files

/** Opens one .safetensors file. */
export function openSafetensors(file: string): LoadedCheckpoint {
  return single('safetensors', loadSafetensorsFile(file))
}

/** Opens one torch.save zip checkpoint (pytorch_model.bin). */
export function openTorchBin(file: string): LoadedCheckpoint {
  return single('pytorch-bin', loadTorchFile(file))
}

// ---------------------------------------------------------------------------------------------------
// Model folders

/** Hugging Face's `_add_variant`: "model.safetensors" + "bf16" -> "model.bf16.safetensors". */
export function addVariant(fileName: string, variant?: string): string {
  if (variant === undefined) return fileName
  const parts = fileName.split('.')
  return [...parts.slice(0, -1), variant, parts[parts.length - 1]].join('.')
}

const WEIGHT_FILES: ReadonlyArray<[string, CheckpointFormat]> = [
  ['model.safetensors', 'safetensors'],
  ['model.safetensors.index.json', 'safetensors-sharded'],
  ['pytorch_model.bin', 'pytorch-bin'],
  ['pytorch_model.bin.index.json', 'pytorch-bin-sharded'],
]

/**
 * Opens the weights of a Hugging Face model folder, looking (like from_pretrained) for model.safetensors,
 * then model.safetensors.index.json, then pytorch_model.bin, then pytorch_model.bin.index.json, with the
 * variant inserted before the extension when given.
 */
export function openCheckpoint(dir: string, opts: OpenCheckpointOptions = {}): LoadedCheckpoint {
  const abs = path.resolve(dir)
  const { variant } = opts
  if (variant !== undefined && !/^[A-Za-z0-9_-]+$/.test(variant)) {
    throw new UsageError({ what: 'invalid weight variant', expected: 'letters, digits, "_" or "-" (e.g. bf16, fp16)', found: show(variant) })
  }
  checkFolder(abs, variant)
  for (const [base, format] of WEIGHT_FILES) {
    const name = addVariant(base, variant)
    const file = path.join(abs, name)
    if (!isFile(file)) continue
    switch (format) {
      case 'safetensors':
        return single(format, loadSafetensorsFile(file))
      case 'pytorch-bin':
        return single(format, loadTorchFile(file))
      case 'safetensors-sharded':
        return openSharded(abs, file, format, loadSafetensorsFile)
      case 'pytorch-bin-sharded':
        return openSharded(abs, file, format, loadTorchFile)
    }
  }
  throw noWeightsError(abs, variant)
}

function checkFolder(dir: string, variant: string | undefined): void {
  let st: fs.Stats
  try {
    st = fs.statSync(dir)
  } catch {
    throw new CheckpointError({
      what: 'model folder not found',
      where: dir,
      expected: `a folder with one of ${WEIGHT_FILES.map(([f]) => addVariant(f, variant)).join(', ')}`,
      hint: 'pass the folder that holds config.json and the weights (model.safetensors or pytorch_model.bin)',
    })
  }
  if (!st.isDirectory()) {
    throw new CheckpointError({
      what: 'is not a folder',
      where: dir,
      hint: 'pass the model folder; a single weights file can be opened with openSafetensors/openTorchBin',
    })
  }
}

function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/** The error for a folder without weights: what was looked for, what is there, and what to do. */
function noWeightsError(dir: string, variant: string | undefined): CheckpointError {
  const looked = WEIGHT_FILES.map(([f]) => addVariant(f, variant))
  let present: string[] = []
  try {
    present = fs.readdirSync(dir).sort()
  } catch {
    // unreadable folder: report it as empty
  }
  let hint = 'download the weights (model.safetensors or pytorch_model.bin) from the model repository into this folder'
  const variants = present
    .map((f) => /^model\.([A-Za-z0-9_-]+)\.safetensors$/.exec(f) ?? /^pytorch_model\.([A-Za-z0-9_-]+)\.bin$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null && !/^\d+-of-\d+$/.test(m[1]))
  if (variant !== undefined && WEIGHT_FILES.some(([f]) => present.includes(f))) {
    hint = `the folder has weights without the "${variant}" variant: leave the variant out`
  } else if (variants.length > 0) {
    hint = `found ${variants[0][0]}: pass variant "${variants[0][1]}"`
  } else if (present.some((f) => f === 'tf_model.h5' || f === 'flax_model.msgpack')) {
    hint = 'only TensorFlow/Flax weights are here; convert them with transformers (from_pretrained(dir, from_tf=True or from_flax=True).save_pretrained(dir))'
  }
  const shown = present.slice(0, 8).join(', ') + (present.length > 8 ? `, … (${present.length} files)` : '')
  return new CheckpointError({
    what: 'no model weights found',
    where: dir,
    expected: `one of ${looked.join(', ')}`,
    found: present.length ? shown : 'an empty folder',
    hint,
  })
}

// ---------------------------------------------------------------------------------------------------
// Sharded checkpoints

/**
 * Opens a sharded checkpoint from its index ({ "weight_map": { name: shard file } }). Every shard must
 * exist inside the folder and hold the tensors mapped to it. Tensors a shard holds without being listed
 * are kept too (from_pretrained loads whole shards), unless two shards both hold one.
 */
function openSharded(
  dir: string,
  indexFile: string,
  format: CheckpointFormat,
  load: (file: string) => TensorFile,
): LoadedCheckpoint {
  const weightMap = readWeightMap(indexFile)
  const shardPaths = new Map<string, string>() // shard name -> absolute path, in file name order
  for (const shard of [...new Set(weightMap.values())].sort()) {
    shardPaths.set(shard, resolveShard(dir, shard, indexFile))
  }
  for (const [shard, file] of shardPaths) {
    if (!isFile(file)) {
      throw new CheckpointError({
        what: `shard ${show(shard)} listed in weight_map does not exist`,
        where: indexFile,
        hint: 'download every shard of the checkpoint into the folder',
      })
    }
  }
  const opened: TensorFile[] = []
  try {
    const byShard = new Map<string, TensorFile>()
    for (const [shard, file] of shardPaths) {
      const f = load(file)
      opened.push(f)
      byShard.set(shard, f)
    }
    const entries = new Map<string, TensorEntry>()
    const unsupported = new Map<string, UnsupportedTensor>()
    for (const [name, shard] of weightMap) {
      const f = byShard.get(shard) as TensorFile
      const e = f.tensors.get(name)
      const u = f.unsupported.get(name)
      if (e) entries.set(name, e)
      else if (u) unsupported.set(name, u)
      else {
        throw new CheckpointError({
          what: `tensor is listed in ${path.basename(indexFile)} but missing from its shard`,
          where: `${f.file}: tensor ${name}`,
          hint: 'the index and the shards do not match; download the checkpoint again',
        })
      }
    }
    addUnlistedTensors(opened, weightMap, entries, unsupported)
    if (entries.size === 0) {
      throw new CheckpointError({ what: 'no tensor has a supported dtype', where: indexFile, expected: SUPPORTED_DTYPES, hint: DTYPE_HINT })
    }
    return new TensorTable(dir, format, opened, entries, unsupported)
  } catch (e) {
    for (const f of opened) f.handle.close()
    throw e
  }
}

/** Tensors in shards that the weight_map does not list; one held by two shards is ambiguous. */
function addUnlistedTensors(
  opened: TensorFile[],
  weightMap: Map<string, string>,
  entries: Map<string, TensorEntry>,
  unsupported: Map<string, UnsupportedTensor>,
): void {
  const seenIn = new Map<string, string>()
  for (const f of opened) {
    const names = [...f.tensors.keys(), ...f.unsupported.keys()]
    for (const name of names) {
      if (weightMap.has(name)) continue
      const other = seenIn.get(name)
      if (other !== undefined) {
        throw new CheckpointError({
          what: `tensor is in two shards and not in the weight_map`,
          where: `${f.file}: tensor ${name}`,
          found: `also in ${other}`,
          hint: 'the index and the shards do not match; download the checkpoint again',
        })
      }
      seenIn.set(name, f.file)
      const e = f.tensors.get(name)
      if (e) entries.set(name, e)
      else unsupported.set(name, f.unsupported.get(name) as UnsupportedTensor)
    }
  }
}

/** Reads an index file's weight_map as name -> shard file name. */
function readWeightMap(indexFile: string): Map<string, string> {
  const index = readJsonFile(indexFile, 'sharded checkpoint index')
  const weightMap = isPlainObject(index) ? index.weight_map : undefined
  if (!isPlainObject(weightMap)) {
    throw new CheckpointError({ what: 'index has no "weight_map" object', where: indexFile, found: show(weightMap) })
  }
  const out = new Map<string, string>()
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string') {
      throw new CheckpointError({ what: 'weight_map value is not a file name', where: `${indexFile}: tensor ${name}`, found: show(shard) })
    }
    out.set(name, shard)
  }
  if (out.size === 0) throw new CheckpointError({ what: 'weight_map is empty', where: indexFile })
  return out
}

/** The absolute path of a shard, which must stay inside the model folder. */
function resolveShard(dir: string, shard: string, indexFile: string): string {
  const file = path.resolve(dir, shard)
  const rel = path.relative(dir, file)
  const escapes = rel === '' || rel === '..' || rel.startsWith('..' + path.sep) || path.isAbsolute(rel)
  if (shard === '' || shard.includes('\0') || path.isAbsolute(shard) || escapes) {
    throw new CheckpointError({
      what: 'shard path escapes the model folder',
      where: indexFile,
      found: show(shard),
      hint: 'shard file names in weight_map must name files inside the folder of the index',
    })
  }
  return file
}

// ---------------------------------------------------------------------------------------------------
// JSON

type ErrorClass = new (details: ErrorDetails) => RefgptError

/**
 * Reads and parses a JSON file. A missing, unreadable, oversized or malformed file is a one-line error
 * of class `ErrorClass` (CheckpointError unless told, e.g. ConfigError for config.json) naming the file;
 * `what` says what the file is ("config", "sharded checkpoint index").
 */
export function readJsonFile(file: string, what: string, ErrorClass: ErrorClass = CheckpointError): unknown {
  const abs = path.resolve(file)
  let text: string
  try {
    const st = fs.statSync(abs)
    if (!st.isFile()) throw new ErrorClass({ what: `${what} is not a file`, where: abs })
    if (st.size > MAX_JSON_BYTES) {
      throw new ErrorClass({ what: `${what} is too large`, where: abs, expected: `at most ${MAX_JSON_BYTES} bytes`, found: `${st.size}` })
    }
    text = new TextDecoder('utf-8', { fatal: true }).decode(fs.readFileSync(abs))
  } catch (e) {
    if (e instanceof RefgptError) throw e
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new ErrorClass({ what: `${what} does not exist`, where: abs })
    if (e instanceof TypeError) throw new ErrorClass({ what: `${what} is not valid UTF-8`, where: abs })
    throw new ErrorClass({ what: `cannot read ${what} (${code ?? String(e)})`, where: abs })
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1) // a UTF-8 byte order mark
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new ErrorClass({ what: `${what} is not valid JSON`, where: abs, found: (e as Error).message })
  }
}
