// The safetensors reader, and the two building blocks that the torch reader shares with it:
//
//   RandomAccess      bounds-checked, positioned reads of one file (access.ts): RandomAccessFile, an open
//                     file descriptor (platform.ts, Node), or a picked file or a URL (browser.ts);
//   TensorFile        the tensors of one weights file: for each name, its dtype/shape and a function that
//                     reads its raw bytes from the source on demand (checkpoint.ts turns one or more of
//                     these into a Checkpoint).
//
// safetensors layout (https://github.com/huggingface/safetensors):
//   8 bytes    N, little-endian u64: length of the header
//   N bytes    UTF-8 JSON object: name -> { dtype, shape, data_offsets: [begin, end] }, plus an optional
//              "__metadata__": { string: string }; may be padded with trailing spaces
//   rest       the data region; offsets are relative to its start. Like the reference implementation we
//              require the tensors to cover it exactly: sorted by offset, no overlap, no hole.
//
// Nothing read from the file is trusted: every length and offset is checked against the file size before
// anything is allocated from it, the number of tensors is counted (a cheap scan of the header bytes)
// before the header is parsed, and every failure is a one-line CheckpointError.

import { CheckpointError, show } from '../errors.js'
import type { RandomAccess } from './access.js'
import { RandomAccessFile, fsError } from './platform.js'
import type { DType, TensorInfo } from './types.js'

export { RandomAccessFile, fsError }

/** The reference implementation's limit on the header length. */
export const MAX_SAFETENSORS_HEADER = 100_000_000

/**
 * Most tensors one weights file (or one sharded checkpoint) may hold. Real models have far fewer (GPT-J 6B:
 * 285; the largest mixture-of-experts checkpoints: < 100,000); a 100 MB header of empty tensors could
 * otherwise declare 1.6 million, which took 11 s and 1.7 GB to open.
 */
export const MAX_TENSORS_PER_FILE = 1 << 18

/** Most dimensions a tensor may have (numpy's limit is 64; weights have at most 4 or 5). */
export const MAX_TENSOR_RANK = 64

// ---------------------------------------------------------------------------------------------------
// TensorFile: what a format reader produces

/** One readable tensor of a weights file. */
export interface TensorEntry {
  info: TensorInfo
  /** size * bytes per element. */
  byteLength: number
  /** Fills `dst` with the tensor's raw little-endian bytes starting at byte `start` of its data. */
  read(dst: Uint8Array, start: number): void
  /** True when a partial read costs only its length; false when every read materialises the tensor. */
  ranged: boolean
  /** The bytes of the file a whole read() reads, [position, length] (for sources that fetch: Checkpoint.prefetch). */
  fileRange: readonly [number, number]
}

/** A tensor whose dtype refgpt does not compute with (e.g. GPT-J's boolean `attn.bias` buffers). */
export interface UnsupportedTensor {
  name: string
  /** The dtype as the file names it ("I64", "BOOL", "torch.LongStorage", ...). */
  dtype: string
  shape: number[]
  file: string
}

/** The tensors of one weights file, with its open source (closed by the Checkpoint that owns it). */
export interface TensorFile {
  file: string
  handle: RandomAccess
  tensors: Map<string, TensorEntry>
  unsupported: Map<string, UnsupportedTensor>
  /** safetensors `__metadata__` (empty for other formats). */
  metadata: Record<string, string>
}

/** The dtypes refgpt computes with, with their names in error messages. */
export const SUPPORTED_DTYPES = 'F32, F16, BF16'
export const DTYPE_HINT =
  'refgpt reads F32, F16 and BF16 weights; convert the checkpoint, e.g. model.to(torch.float32).save_pretrained(...)'

/**
 * `<file>: tensor <name>` for error messages. A name from a file is untrusted: one that is long or not
 * printable ASCII is quoted and shortened (show), so that a message stays one short line.
 */
export function tensorWhere(file: string, name: string): string {
  return `${file}: tensor ${messageName(name)}`
}

/** A name from a file as it may appear in a message: as is when short printable ASCII, else quoted by show. */
export function messageName(name: unknown): string {
  return typeof name === 'string' && name.length <= 200 && /^[\x20-\x7e]*$/.test(name) ? name : show(name, 200)
}

/** Element count of `shape`, or undefined when it is not a safe integer. */
export function shapeSize(shape: readonly number[]): number | undefined {
  for (const d of shape) if (d === 0) return 0
  let n = 1
  for (const d of shape) {
    if (n > Number.MAX_SAFE_INTEGER / d) return undefined
    n *= d
  }
  return n
}

// ---------------------------------------------------------------------------------------------------
// safetensors

/** Bytes per element of every dtype the safetensors format defines (refgpt reads only F32/F16/BF16). */
const SAFETENSORS_DTYPE_BYTES: Record<string, number> = {
  F32: 4, F16: 2, BF16: 2,
  F64: 8, I64: 8, U64: 8, I32: 4, U32: 4, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1, F8_E8M0: 1, C64: 8,
}
const SUPPORTED: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16'])

/** A tensor as the header describes it, after validation. */
interface HeaderEntry {
  name: string
  dtype: string
  shape: number[]
  size: number
  begin: number
  end: number
}

/** A tensor of a safetensors file: a byte range of the open file (a class, not closures: one small object each). */
class RangeEntry implements TensorEntry {
  readonly ranged = true
  constructor(
    readonly info: TensorInfo,
    readonly byteLength: number,
    private readonly handle: RandomAccess,
    private readonly position: number,
  ) {}

  get fileRange(): readonly [number, number] {
    return [this.position, this.byteLength]
  }

  read(dst: Uint8Array, start: number): void {
    if (start < 0 || start + dst.length > this.byteLength) {
      throw new CheckpointError({
        what: 'read past the end of a tensor',
        where: tensorWhere(this.info.file, this.info.name),
        expected: `a range inside ${this.byteLength} bytes`,
        found: `${dst.length} bytes at ${start}`,
      })
    }
    this.handle.readInto(dst, this.position + start)
  }
}

/**
 * Opens and validates a safetensors file. The descriptor stays open in the result's `handle`. `openPath`,
 * when given, is the file really opened (the resolved real path of `file`); messages name `file`.
 */
export function loadSafetensorsFile(file: string, openPath?: string): TensorFile {
  return parseSafetensors(RandomAccessFile.open(file, openPath))
}

/** Validates a safetensors file from any source; the result owns `handle` (closed here on an error). */
export function parseSafetensors(handle: RandomAccess): TensorFile {
  try {
    const { entries, metadata, dataStart } = readHeader(handle)
    const tensors = new Map<string, TensorEntry>()
    const unsupported = new Map<string, UnsupportedTensor>()
    for (const e of entries) {
      if (!SUPPORTED.has(e.dtype)) {
        unsupported.set(e.name, { name: e.name, dtype: e.dtype, shape: e.shape, file: handle.path })
        continue
      }
      const info: TensorInfo = { name: e.name, dtype: e.dtype as DType, shape: e.shape, size: e.size, file: handle.path }
      tensors.set(e.name, new RangeEntry(info, e.end - e.begin, handle, dataStart + e.begin))
    }
    if (tensors.size === 0 && unsupported.size > 0) {
      const first = unsupported.values().next().value as UnsupportedTensor
      throw new CheckpointError({
        what: `no tensor has a supported dtype`,
        where: tensorWhere(handle.path, first.name),
        expected: SUPPORTED_DTYPES,
        found: first.dtype,
        hint: DTYPE_HINT,
      })
    }
    return { file: handle.path, handle, tensors, unsupported, metadata }
  } catch (e) {
    handle.close()
    throw e
  }
}

/** Reads, parses and validates the header; returns the entries sorted by offset. */
function readHeader(handle: RandomAccess): { entries: HeaderEntry[]; metadata: Record<string, string>; dataStart: number } {
  const where = handle.path
  const hint = 'the file is truncated or not a safetensors file; download it again'
  if (handle.size < 8) {
    throw new CheckpointError({ what: 'file too small for a safetensors header', where, expected: 'at least 8 bytes', found: `${handle.size}`, hint })
  }
  const prefix = handle.read(0, 8)
  if (isLfsPointer(handle.read(0, Math.min(handle.size, 64)))) {
    throw new CheckpointError({ what: 'is a Git LFS pointer, not the weights', where, hint: 'run `git lfs pull` in the model folder, or download the file itself' })
  }
  const headerLen = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true)
  if (headerLen > BigInt(handle.size - 8) || headerLen > BigInt(MAX_SAFETENSORS_HEADER)) {
    throw new CheckpointError({
      what: 'safetensors header length exceeds the file',
      where,
      expected: `at most ${Math.min(handle.size - 8, MAX_SAFETENSORS_HEADER)} bytes`,
      found: `${headerLen}`,
      hint,
    })
  }
  const n = Number(headerLen)
  const bytes = handle.read(8, n)
  if (countTopLevelMembers(bytes, MAX_TENSORS_PER_FILE, '__metadata__') > MAX_TENSORS_PER_FILE) {
    throw new CheckpointError({
      what: 'safetensors header declares too many tensors',
      where,
      expected: `at most ${MAX_TENSORS_PER_FILE} tensors`,
      found: `more than ${MAX_TENSORS_PER_FILE}`,
      hint: 'no real model has that many; the file is corrupt or hostile',
    })
  }
  const text = decodeUtf8(bytes, where, 'safetensors header')
  let json: unknown
  try {
    if (!text.startsWith('{')) throw new SyntaxError('does not start with "{"')
    json = JSON.parse(text)
  } catch (e) {
    throw new CheckpointError({ what: 'safetensors header is not valid JSON', where, found: e instanceof Error ? e.message.slice(0, 200) : undefined, hint })
  }
  if (!isPlainObject(json)) {
    throw new CheckpointError({ what: 'safetensors header is not a JSON object', where, hint })
  }
  const dataStart = 8 + n
  const dataLen = handle.size - dataStart
  let metadata: Record<string, string> = {}
  const entries: HeaderEntry[] = []
  for (const name in json) {
    if (!Object.hasOwn(json, name)) continue
    const value = json[name]
    if (name === '__metadata__') metadata = parseMetadata(value, where)
    else {
      // the scan above counted members of well-formed JSON exactly; this keeps the bound whatever it saw
      if (entries.length >= MAX_TENSORS_PER_FILE) {
        throw new CheckpointError({ what: 'safetensors header declares too many tensors', where, expected: `at most ${MAX_TENSORS_PER_FILE} tensors` })
      }
      entries.push(parseEntry(name, value, dataLen, where))
    }
  }
  checkCoverage(entries, dataLen, where)
  return { entries, metadata, dataStart }
}

/**
 * The number of members of the top-level JSON object in `bytes`, counted without parsing (keys at depth 1,
 * strings skipped), leaving out a member whose key is literally `skipKey`, and stopping once the count
 * passes `stop`. Exact for well-formed JSON (an escaped `skipKey` is counted); for anything else JSON.parse
 * reports the error.
 */
export function countTopLevelMembers(bytes: Uint8Array, stop: number, skipKey = ''): number {
  const skip = new TextEncoder().encode(skipKey)
  let depth = 0
  let members = 0
  let expectKey = false
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]
    if (c === 0x22) {
      // a string: skip to its closing quote (a backslash escapes the next byte)
      const start = i + 1
      for (i++; i < bytes.length && bytes[i] !== 0x22; i++) if (bytes[i] === 0x5c) i++
      if (depth === 1 && expectKey) {
        expectKey = false
        if (!(skip.length > 0 && sameBytes(bytes, start, i, skip)) && ++members > stop) return members
      }
    } else if (c === 0x7b || c === 0x5b) {
      depth++
      if (depth === 1) expectKey = true
    } else if (c === 0x7d || c === 0x5d) {
      depth--
      if (depth === 0) break
    } else if (c === 0x2c && depth === 1) {
      expectKey = true
    }
  }
  return members
}

function sameBytes(bytes: Uint8Array, start: number, end: number, want: Uint8Array): boolean {
  if (end - start !== want.length) return false
  for (let j = 0; j < want.length; j++) if (bytes[start + j] !== want[j]) return false
  return true
}

function parseMetadata(value: unknown, where: string): Record<string, string> {
  let ok = isPlainObject(value)
  if (ok) {
    for (const k in value as object) {
      if (Object.hasOwn(value as object, k) && typeof (value as Record<string, unknown>)[k] !== 'string') {
        ok = false
        break
      }
    }
  }
  if (!ok) throw new CheckpointError({ what: '__metadata__ is not a map of strings', where, found: show(value) })
  return value as Record<string, string>
}

/** Validates one header entry: known dtype, sane shape, offsets inside the data region and matching the shape. */
function parseEntry(name: string, value: unknown, dataLen: number, file: string): HeaderEntry {
  const where = tensorWhere(file, name)
  if (!isPlainObject(value)) {
    throw new CheckpointError({ what: 'header entry is not an object', where, found: show(value) })
  }
  const { dtype, shape, data_offsets: offsets } = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
  if (typeof dtype !== 'string' || !Object.hasOwn(SAFETENSORS_DTYPE_BYTES, dtype)) {
    throw new CheckpointError({ what: 'unknown dtype', where, expected: SUPPORTED_DTYPES, found: show(dtype), hint: DTYPE_HINT })
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
    throw new CheckpointError({ what: 'shape is not a list of non-negative integers', where, found: show(shape) })
  }
  if (shape.length > MAX_TENSOR_RANK) {
    throw new CheckpointError({ what: 'shape has too many dimensions', where, expected: `at most ${MAX_TENSOR_RANK}`, found: `${shape.length}` })
  }
  const size = shapeSize(shape)
  if (size === undefined) {
    throw new CheckpointError({ what: 'shape has too many elements', where, found: show(shape) })
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt)) {
    throw new CheckpointError({ what: 'data_offsets is not a pair of non-negative integers', where, found: show(offsets) })
  }
  const [begin, end] = offsets as [number, number]
  if (begin > end) {
    throw new CheckpointError({ what: 'data_offsets begin after they end', where, found: show(offsets) })
  }
  if (end > dataLen) {
    throw new CheckpointError({
      what: 'tensor data lies past the end of the file',
      where,
      expected: `data_offsets within the ${dataLen}-byte data region`,
      found: show(offsets),
      hint: 'the file is truncated; download it again',
    })
  }
  const bytes = SAFETENSORS_DTYPE_BYTES[dtype]
  if (end - begin !== size * bytes) {
    throw new CheckpointError({
      what: 'byte range does not match the shape',
      where,
      expected: `${size} elements x ${bytes} bytes = ${size * bytes} bytes for shape ${show(shape)} ${dtype}`,
      found: `${end - begin} bytes ${show(offsets)}`,
    })
  }
  return { name, dtype, shape: shape as number[], size, begin, end }
}

/**
 * Sorts entries by offset and checks that they tile the data region: first that no two overlap (the
 * dangerous case), then that there is no hole and nothing after the last tensor.
 */
function checkCoverage(entries: HeaderEntry[], dataLen: number, file: string): void {
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end)
  for (let i = 1; i < entries.length; i++) {
    const prev = entries[i - 1]
    const e = entries[i]
    if (e.begin < prev.end) {
      throw new CheckpointError({
        what: `tensor data overlaps tensor ${messageName(prev.name)}`,
        where: tensorWhere(file, e.name),
        expected: `data_offsets starting at ${prev.end} or later`,
        found: `[${e.begin}, ${e.end}]`,
      })
    }
  }
  let pos = 0
  for (const e of entries) {
    if (e.begin !== pos) {
      throw new CheckpointError({
        what: 'hole in the data region before this tensor',
        where: tensorWhere(file, e.name),
        expected: `data_offsets starting at ${pos}`,
        found: `[${e.begin}, ${e.end}]`,
      })
    }
    pos = e.end
  }
  if (pos !== dataLen) {
    throw new CheckpointError({
      what: 'data region is longer than its tensors',
      where: file,
      expected: `${pos} bytes of tensor data`,
      found: `${dataLen}`,
      hint: 'the file was modified or is not a safetensors file',
    })
  }
}

// ---------------------------------------------------------------------------------------------------
// Small helpers

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isNonNegativeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/** Whether a file starts like a Git LFS pointer (a clone made without git-lfs has these instead of weights). */
export function isLfsPointer(head: Uint8Array): boolean {
  const sig = 'version https://git-lfs'
  if (head.length < sig.length) return false
  for (let i = 0; i < sig.length; i++) if (head[i] !== sig.charCodeAt(i)) return false
  return true
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Strict UTF-8 decoding with a CheckpointError naming `what` on invalid bytes. */
export function decodeUtf8(bytes: Uint8Array, where: string, what: string): string {
  try {
    return utf8.decode(bytes)
  } catch {
    throw new CheckpointError({ what: `${what} is not valid UTF-8`, where })
  }
}
