// Checkpoints from any model folder (ModelFolder: on disk, picked files, a URL): format detection in
// Hugging Face's order, sharded indexes, and the Checkpoint object that reads tensors from the open
// sources on demand. index.ts holds the file-system entry points (openCheckpoint(dir), ...).
//
//   openCheckpointIn(folder, { variant })   ModelFolder -> Checkpoint
//   readFolderJson(folder, name, what)       a JSON file of the folder, with one-line errors naming it
//
// Every file is read through the folder, which on disk resolves it with insideFolder: one whose real
// location is outside the model folder (a symlink out, `..` in an index) is refused unless followSymlinks.

import { CheckpointError, ResourceError, UsageError, show } from '../errors.js'
import type { RandomAccess } from './access.js'
import { bf16ToF32Array, f16ToF32Array } from './dtype.js'
import { FILE_CAPS, type ErrorClass, type ModelFolder } from './folder.js'
import {
  DTYPE_HINT,
  MAX_TENSORS_PER_FILE,
  SUPPORTED_DTYPES,
  isPlainObject,
  messageName,
  parseSafetensors,
  tensorWhere,
  type TensorEntry,
  type TensorFile,
  type UnsupportedTensor,
} from './safetensors.js'
import { checkModelFolder } from './platform.js'
import { parseTorchFile } from './torch.js'
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
  /**
   * Makes the named tensors readable without waiting, on sources that fetch (a page's files or URL). What
   * the last two calls asked for stays readable (a call drops the one before the previous), so a loader
   * can ask for the next layer's tensors, then place this layer's while they arrive. Absent on
   * checkpoints that read at once (files on disk, random weights).
   */
  prefetch?(names: Iterable<string>): Promise<void>
}

export interface OpenCheckpointOptions {
  /** Hugging Face weight variant: "bf16" reads model.bf16.safetensors, pytorch_model.bf16.bin, ... */
  variant?: string
  /**
   * Open weights files that are symlinks to places outside the model folder (default false: refused).
   * Links inside the folder, and a Hugging Face hub cache snapshot's links into its blobs, are always followed.
   */
  followSymlinks?: boolean
}

/**
 * Most distinct shard files a sharded index may name. Real sharded checkpoints have at most a few hundred
 * (BLOOM 176B: 72); each shard is an open file descriptor until close().
 */
export const MAX_SHARDS = 1 << 14

/**
 * Most values (array elements, object members, containers) a JSON file readJsonFile reads may hold,
 * counted by a cheap scan before JSON.parse. A sharded index of MAX_TENSORS_PER_FILE tensors has about
 * that many, a config a few hundred; 256 MB of `[0,0,0,...` would otherwise parse into a 1 GB array.
 */
export const MAX_JSON_VALUES = 1 << 21

/** Elements per chunk when widening F16/BF16 (bounds the temporary buffer to 8 MiB). */
const WIDEN_CHUNK = 4 << 20

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
    // only sources that fetch need it (loadModel skips the per-layer step on files on disk)
    if (opened.some((f) => f.handle.prefetch)) this.prefetch = (names) => this.fetchTensors(names)
    const tensors = new Map<string, TensorInfo>()
    for (const [name, e] of entries) tensors.set(name, e.info)
    this.tensors = tensors
  }

  prefetch?: (names: Iterable<string>) => Promise<void>

  get metadata(): Readonly<Record<string, string>> {
    return this.opened[0]?.metadata ?? {}
  }

  readBytes(name: string): Uint8Array {
    const e = this.entry(name)
    const out = allocate(() => new Uint8Array(e.byteLength), e.byteLength, e.info)
    e.read(out, 0)
    return out
  }

  readF32(name: string, out?: Float32Array): Float32Array {
    const e = this.entry(name)
    const n = e.info.size
    if (out && out.length !== n) {
      throw new UsageError({
        what: 'readF32 output has the wrong length',
        where: tensorWhere(e.info.file, name),
        expected: `${n} elements`,
        found: `${out.length}`,
      })
    }
    const dst = out ?? allocate(() => new Float32Array(n), n * 4, e.info)
    if (e.info.dtype === 'F32') {
      // One read straight into the output's bytes (the file and the machine are little-endian).
      e.read(new Uint8Array(dst.buffer, dst.byteOffset, n * 4), 0)
      return dst
    }
    const widen = e.info.dtype === 'F16' ? f16ToF32Array : bf16ToF32Array
    const chunk = e.ranged ? Math.min(WIDEN_CHUNK, n) : n
    const tmp = allocate(() => new Uint16Array(chunk), chunk * 2, e.info)
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

  /** Each fetching source's ranges of the named tensors, asked for in one synchronous pass (see prefetch). */
  private async fetchTensors(names: Iterable<string>): Promise<void> {
    const wanted = new Set<string>(names)
    const fetches: Promise<void>[] = []
    for (const f of this.opened) {
      if (!f.handle.prefetch) continue
      const ranges: (readonly [number, number])[] = []
      for (const name of wanted) {
        const e = f.tensors.get(name)
        if (e && this.entries.get(name) === e && e.byteLength > 0) ranges.push(e.fileRange)
      }
      fetches.push(f.handle.prefetch(ranges))
    }
    await Promise.all(fetches)
  }

  private entry(name: string): TensorEntry {
    if (this.closed) throw new CheckpointError({ what: `tensor ${messageName(name)} read after close()`, where: this.dir })
    const e = this.entries.get(name)
    if (e) return e
    const u = this.unsupported.get(name)
    if (u) {
      throw new CheckpointError({
        what: 'unsupported dtype',
        where: tensorWhere(u.file, name),
        expected: SUPPORTED_DTYPES,
        found: messageName(u.dtype),
        hint: DTYPE_HINT,
      })
    }
    const first: string[] = []
    for (const k of this.entries.keys()) if (first.push(messageName(k)) >= 3) break
    const some = first.join(', ')
    throw new CheckpointError({
      what: `no tensor named ${show(name)}`,
      where: this.files.length === 1 ? this.files[0] : this.dir,
      found: `${this.entries.size} tensors, e.g. ${some}`,
    })
  }
}

/** The Checkpoint of one weights file of folder `dir`. */
export function single(format: CheckpointFormat, f: TensorFile, dir: string): LoadedCheckpoint {
  return new TensorTable(dir, format, [f], f.tensors, f.unsupported)
}

/** A new array for a tensor; one too large for this machine is a ResourceError, not a RangeError. */
function allocate<T>(make: () => T, bytes: number, info: TensorInfo): T {
  try {
    return make()
  } catch (e) {
    if (!(e instanceof RangeError)) throw e
    throw new ResourceError({
      what: 'not enough memory to read the tensor',
      where: tensorWhere(info.file, info.name),
      expected: `${bytes} bytes`,
      found: e.message,
    }, { cause: e })
  }
}

// ---------------------------------------------------------------------------------------------------
// Model folders

/** Hugging Face's `_add_variant`: "model.safetensors" + "bf16" -> "model.bf16.safetensors". */
export function addVariant(fileName: string, variant?: string): string {
  if (variant === undefined) return fileName
  const parts = fileName.split('.')
  return [...parts.slice(0, -1), variant, parts[parts.length - 1]].join('.')
}

export const WEIGHT_FILES: ReadonlyArray<[string, CheckpointFormat]> = [
  ['model.safetensors', 'safetensors'],
  ['model.safetensors.index.json', 'safetensors-sharded'],
  ['pytorch_model.bin', 'pytorch-bin'],
  ['pytorch_model.bin.index.json', 'pytorch-bin-sharded'],
]

/** Refuses a variant that is not a plain name (it becomes part of file names). */
export function checkVariant(variant: unknown): asserts variant is string | undefined {
  if (variant !== undefined && (typeof variant !== 'string' || !/^[A-Za-z0-9_-]+$/.test(variant))) {
    throw new UsageError({ what: 'invalid weight variant', expected: 'letters, digits, "_" or "-" (e.g. bf16, fp16)', found: show(variant) })
  }
}

/**
 * Opens the weights of a model folder, looking (like from_pretrained) for model.safetensors, then
 * model.safetensors.index.json, then pytorch_model.bin, then pytorch_model.bin.index.json, with the
 * variant inserted before the extension when given.
 */
export function openCheckpointIn(folder: ModelFolder, opts: { variant?: string } = {}): LoadedCheckpoint {
  const variant = opts?.variant
  checkVariant(variant)
  // on disk: the folder made absolute, a missing folder or a file refused (platform.ts)
  folder = checkModelFolder(folder, WEIGHT_FILES.map(([f]) => addVariant(f, variant)).join(', '))
  for (const [base, format] of WEIGHT_FILES) {
    const name = addVariant(base, variant)
    if (!folder.isFile(name)) continue
    const real = folder.locate(name, CheckpointError)
    switch (format) {
      case 'safetensors':
        return single(format, parseSafetensors(folder.open(name, real)), folder.dir)
      case 'pytorch-bin':
        return single(format, parseTorchFile(folder.open(name, real)), folder.dir)
      case 'safetensors-sharded':
        return openSharded(folder, name, format, parseSafetensors)
      case 'pytorch-bin-sharded':
        return openSharded(folder, name, format, parseTorchFile)
    }
  }
  throw noWeightsError(folder, variant)
}

/** The error for a folder without weights: what was looked for, what is there, and what to do. */
function noWeightsError(folder: ModelFolder, variant: string | undefined): CheckpointError {
  const dir = folder.dir
  const looked = WEIGHT_FILES.map(([f]) => addVariant(f, variant))
  // an unreadable folder is reported as empty
  const present = (folder.names() ?? []).sort()
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
  folder: ModelFolder,
  indexName: string,
  format: CheckpointFormat,
  parse: (handle: RandomAccess) => TensorFile,
): LoadedCheckpoint {
  const dir = folder.dir
  const indexFile = folder.where(indexName)
  const weightMap = readWeightMap(folder, indexName, indexFile)
  const names = new Set<string>()
  for (const shard of weightMap.values()) {
    if (!names.has(shard) && names.add(shard).size > MAX_SHARDS) {
      throw new CheckpointError({ what: 'weight_map names too many shard files', where: indexFile, expected: `at most ${MAX_SHARDS}`, hint: 'the index is corrupt' })
    }
  }
  // shard name -> [name in the folder, real path], in file name order
  const shardPaths = new Map<string, [string, string]>()
  for (const shard of [...names].sort()) {
    const file = resolveShard(folder, shard, indexFile)
    if (!folder.isFile(file)) {
      throw new CheckpointError({
        what: `shard ${show(shard)} listed in weight_map does not exist`,
        where: indexFile,
        hint: 'download every shard of the checkpoint into the folder',
      })
    }
    shardPaths.set(shard, [file, folder.locate(file, CheckpointError)])
  }
  const opened: TensorFile[] = []
  try {
    // Two names of one file ("a.safetensors", "./a.safetensors") open it once.
    const byReal = new Map<string, TensorFile>()
    const byShard = new Map<string, TensorFile>()
    let count = 0
    for (const [shard, [file, real]] of shardPaths) {
      let f = byReal.get(real)
      if (!f) {
        f = parse(folder.open(file, real))
        opened.push(f)
        byReal.set(real, f)
        count += f.tensors.size + f.unsupported.size
        if (count > MAX_TENSORS_PER_FILE) {
          throw new CheckpointError({ what: 'the shards hold too many tensors', where: indexFile, expected: `at most ${MAX_TENSORS_PER_FILE}`, found: `${count} so far` })
        }
      }
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
          what: `tensor is listed in ${indexName} but missing from its shard`,
          where: tensorWhere(f.file, name),
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
    for (const name of chain(f.tensors.keys(), f.unsupported.keys())) {
      if (weightMap.has(name)) continue
      const other = seenIn.get(name)
      if (other !== undefined) {
        throw new CheckpointError({
          what: `tensor is in two shards and not in the weight_map`,
          where: tensorWhere(f.file, name),
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

function* chain<T>(a: Iterable<T>, b: Iterable<T>): Generator<T> {
  yield* a
  yield* b
}

/** Reads an index file's weight_map as name -> shard file name. */
function readWeightMap(folder: ModelFolder, indexName: string, indexFile: string): Map<string, string> {
  const { text } = folder.readText(indexName, 'sharded checkpoint index', FILE_CAPS.json, CheckpointError, true)
  const index = parseJson(text, indexFile, 'sharded checkpoint index', CheckpointError)
  const weightMap = isPlainObject(index) ? index.weight_map : undefined
  if (!isPlainObject(weightMap)) {
    throw new CheckpointError({ what: 'index has no "weight_map" object', where: indexFile, found: show(weightMap) })
  }
  const out = new Map<string, string>()
  for (const name in weightMap) {
    if (!Object.hasOwn(weightMap, name)) continue
    const shard = weightMap[name]
    if (typeof shard !== 'string') {
      throw new CheckpointError({ what: 'weight_map value is not a file name', where: tensorWhere(indexFile, name), found: show(shard) })
    }
    if (out.size >= MAX_TENSORS_PER_FILE) {
      throw new CheckpointError({ what: 'weight_map lists too many tensors', where: indexFile, expected: `at most ${MAX_TENSORS_PER_FILE}`, hint: 'the index is corrupt' })
    }
    out.set(name, shard)
  }
  if (out.size === 0) throw new CheckpointError({ what: 'weight_map is empty', where: indexFile })
  return out
}

/** The name in the folder of a shard, which must stay inside the model folder. */
function resolveShard(folder: ModelFolder, shard: string, indexFile: string): string {
  const file = folder.child(shard)
  if (file === null) {
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

/**
 * A JSON file of a model folder. A missing, unreadable, oversized (FILE_CAPS.json), non-UTF-8 or malformed
 * file is a one-line error of class `ErrorClass` naming the file; `what` says what the file is.
 */
export function readFolderJson(folder: ModelFolder, name: string, what: string, ErrorClass: ErrorClass = CheckpointError): unknown {
  const { text, where } = folder.readText(name, what, FILE_CAPS.json, ErrorClass, true)
  return parseJson(text, where, what, ErrorClass)
}

/** Parses JSON text read from `where`, refusing one with more than MAX_JSON_VALUES values. */
export function parseJson(text: string, where: string, what: string, ErrorClass: ErrorClass): unknown {
  if (countJsonValues(text, MAX_JSON_VALUES) > MAX_JSON_VALUES) {
    throw new ErrorClass({ what: `${what} holds too many JSON values`, where, expected: `at most ${MAX_JSON_VALUES}`, hint: 'the file is corrupt or not what it is named' })
  }
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new ErrorClass({ what: `${what} is not valid JSON`, where, found: e instanceof Error ? e.message.slice(0, 200) : undefined })
  }
}

/**
 * An upper bound on the number of values in JSON `text` (commas and opening brackets outside strings,
 * plus one), counted without parsing and stopping once past `stop`.
 */
export function countJsonValues(text: string, stop: number): number {
  let n = 1
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++
    } else if ((c === 0x2c || c === 0x5b || c === 0x7b) && ++n > stop) {
      return n
    }
  }
  return n
}
