// pytorch_model.bin reader: the zip format that torch.save writes since PyTorch 1.6.
//
//   <archive>/data.pkl       the pickled object (a state dict: name -> tensor), read by the restricted
//                            unpickler in pickle.ts; tensors reference storages by persistent id
//                            ('storage', torch.FloatStorage, key, location, numel)
//   <archive>/data/<key>     the raw little-endian bytes of each storage (stored, 64-byte aligned)
//   <archive>/version, <archive>/byteorder (newer torch), ...
//
// <archive> is any folder name ("archive", "pytorch_model", ...). Several tensors may share a storage
// (a tied lm_head.weight aliases transformer.wte.weight): each appears under its own name. Tensor bytes
// are read from the file when asked for, never at open.
//
// torch.save stores storages uncompressed; a zip re-packed with deflate still loads, but each compressed
// storage must be no larger than the tensors that view it need (else a few tiny tensors could make every
// read inflate a 1 GiB storage), and it is inflated once per open checkpoint (ZipArchive.readWholeCached).

import { CheckpointError, show } from '../errors.js'
import type { RandomAccess } from './access.js'
import { PickleDict, TorchTensor, describe, unpickle, type PickleValue } from './pickle.js'
import type { DType } from './types.js'
import {
  MAX_TENSORS_PER_FILE,
  RandomAccessFile,
  isLfsPointer,
  messageName,
  shapeSize,
  tensorWhere,
  type TensorEntry,
  type TensorFile,
  type UnsupportedTensor,
} from './safetensors.js'
import { ZipArchive, type ZipEntry } from './zip.js'

/** Largest data.pkl we read (a state dict of thousands of tensors is a few MB). */
const MAX_PICKLE_BYTES = 256 << 20
/** Largest compressed storage we inflate whole (torch.save never compresses storages). */
const MAX_INFLATED_STORAGE = 1 << 30

const SUPPORTED: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16'])

const LEGACY_HINT =
  "re-save with torch.save(state_dict, path, _use_new_zipfile_serialization=True) or convert to safetensors"

/**
 * Opens and validates a torch.save zip checkpoint. The descriptor stays open in the result's `handle`.
 * `openPath`, when given, is the file really opened (the resolved real path of `file`); messages name `file`.
 */
export function loadTorchFile(file: string, openPath?: string): TensorFile {
  return parseTorchFile(RandomAccessFile.open(file, openPath))
}

/** Validates a torch.save zip checkpoint from any source; the result owns `handle` (closed here on an error). */
export function parseTorchFile(handle: RandomAccess): TensorFile {
  try {
    checkMagic(handle)
    const zip = new ZipArchive(handle)
    const prefix = findArchivePrefix(zip, handle.path)
    checkByteOrder(zip, prefix, handle.path)
    const pkl = zip.entries.get(`${prefix}/data.pkl`) as ZipEntry
    const root = unpickle(zip.readWhole(pkl, MAX_PICKLE_BYTES, 'data.pkl'), { file: handle.path, entry: pkl.name })
    const stateDict = selectStateDict(root, handle.path)
    const tensors = new Map<string, TensorEntry>()
    const unsupported = new Map<string, UnsupportedTensor>()
    const storageTypes = new Map<string, string>()
    /** Compressed storages -> the most bytes any tensor viewing them needs. */
    const compressedExtent = new Map<ZipEntry, number>()
    let count = 0
    for (const [name, value] of stateDict.map) {
      if (typeof name !== 'string' || !(value instanceof TorchTensor)) continue // non-tensor state (ints, extra state)
      if (++count > MAX_TENSORS_PER_FILE) {
        throw new CheckpointError({ what: 'the state dict holds too many tensors', where: handle.path, expected: `at most ${MAX_TENSORS_PER_FILE}` })
      }
      const where = tensorWhere(handle.path, name)
      const storage = storageEntry(zip, prefix, value, where, storageTypes)
      const { size, endByte } = checkView(value, storage, where)
      if (!isStored(storage)) compressedExtent.set(storage, Math.max(compressedExtent.get(storage) ?? 0, endByte))
      if (!SUPPORTED.has(value.dtype.dtype)) {
        unsupported.set(name, { name, dtype: `${value.dtype.dtype} (${value.storage.typeName})`, shape: value.shape, file: handle.path })
        continue
      }
      tensors.set(name, tensorEntry(zip, storage, value, name, size))
    }
    for (const [storage, extent] of compressedExtent) {
      if (storage.size > extent) {
        throw new CheckpointError({
          what: 'compressed storage larger than the tensors that view it',
          where: `${handle.path}: ${messageName(storage.name)}`,
          expected: `at most ${extent} bytes (the largest tensor view of it)`,
          found: `${storage.size} bytes`,
          hint: 'torch.save does not compress storages; re-save the checkpoint with torch.save or convert it to safetensors',
        })
      }
    }
    if (tensors.size === 0) {
      const first = unsupported.values().next().value as UnsupportedTensor | undefined
      throw new CheckpointError({
        what: first ? 'no tensor has a supported dtype' : 'the state dict holds no tensors',
        where: first ? tensorWhere(handle.path, first.name) : handle.path,
        expected: first ? 'F32, F16, BF16' : undefined,
        found: first?.dtype,
        hint: 'refgpt reads float32/float16/bfloat16 weights saved with torch.save(model.state_dict())',
      })
    }
    return { file: handle.path, handle, tensors, unsupported, metadata: {} }
  } catch (e) {
    handle.close()
    throw e
  }
}

/** Refuses files that are not zip archives, recognising the legacy torch format and Git LFS pointers. */
function checkMagic(handle: RandomAccess): void {
  const head = handle.read(0, Math.min(handle.size, 64))
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return
  if (isLfsPointer(head)) {
    throw new CheckpointError({
      what: 'is a Git LFS pointer, not the weights',
      where: handle.path,
      hint: 'run `git lfs pull` in the model folder, or download the file itself',
    })
  }
  if (head.length >= 2 && head[0] === 0x80 && head[1] <= 5) {
    throw new CheckpointError({
      what: 'uses the legacy (pre-1.6, non-zip) torch serialization format, which refgpt does not read',
      where: handle.path,
      hint: LEGACY_HINT,
    })
  }
  throw new CheckpointError({
    what: 'is not a torch.save zip archive',
    where: handle.path,
    found: head.length === 0 ? 'an empty file' : `first bytes ${hexBytes(head.subarray(0, 4))}`,
    hint: LEGACY_HINT,
  })
}

/** The archive folder name: the one `<name>/data.pkl` at the top level of the zip. */
function findArchivePrefix(zip: ZipArchive, file: string): string {
  const prefixes: string[] = []
  for (const name of zip.entries.keys()) {
    const m = /^([^/]+)\/data\.pkl$/.exec(name)
    if (m) prefixes.push(m[1])
  }
  if (prefixes.length !== 1) {
    throw new CheckpointError({
      what: prefixes.length ? 'zip holds several data.pkl files' : 'zip has no <archive>/data.pkl: not a torch.save checkpoint',
      where: file,
      found: prefixes.length ? `${prefixes.slice(0, 3).map(messageName).join(', ')}${prefixes.length > 3 ? `, … (${prefixes.length})` : ''}` : undefined,
      hint: LEGACY_HINT,
    })
  }
  return prefixes[0]
}

/** Newer torch records the byte order of the storages; refgpt reads little-endian only. */
function checkByteOrder(zip: ZipArchive, prefix: string, file: string): void {
  const entry = zip.entries.get(`${prefix}/byteorder`)
  if (!entry) return // older torch: always little-endian in practice
  const order = new TextDecoder().decode(zip.readWhole(entry, 64, 'byteorder')).trim()
  if (order !== 'little') {
    throw new CheckpointError({ what: 'storages are not little-endian', where: file, expected: 'little', found: show(order), hint: 'convert the checkpoint to safetensors' })
  }
}

/** The state dict inside the unpickled object: the top-level dict, or a `state_dict`/`model`/`module` entry. */
function selectStateDict(root: PickleValue, file: string): PickleDict {
  if (!(root instanceof PickleDict)) {
    throw new CheckpointError({
      what: 'data.pkl does not hold a dict of tensors',
      where: file,
      found: describe(root),
      hint: 'save the weights with torch.save(model.state_dict(), path)',
    })
  }
  if (hasTensor(root)) return root
  // Training checkpoints and ModelScope wrap the weights: {"state_dict": {...}, "epoch": ...}.
  for (const key of ['state_dict', 'model', 'module']) {
    const inner = root.map.get(key)
    if (inner instanceof PickleDict && hasTensor(inner)) return inner
  }
  const keys: string[] = []
  for (const k of root.map.keys()) if (keys.push(typeof k === 'string' ? messageName(k) : String(k)) >= 5) break
  throw new CheckpointError({
    what: 'data.pkl holds no tensors at the top level nor under state_dict/model/module',
    where: file,
    found: keys.length ? `keys ${keys.join(', ')}` : 'an empty dict',
    hint: 'save the weights with torch.save(model.state_dict(), path)',
  })
}

function hasTensor(d: PickleDict): boolean {
  for (const v of d.map.values()) if (v instanceof TorchTensor) return true
  return false
}

/** The zip entry holding a tensor's storage, checked against the size the persistent id declares. */
function storageEntry(zip: ZipArchive, prefix: string, t: TorchTensor, where: string, types: Map<string, string>): ZipEntry {
  const s = t.storage
  const entry = zip.entries.get(`${prefix}/data/${s.key}`)
  if (!entry) {
    throw new CheckpointError({ what: `storage ${show(s.key)} is missing from the archive`, where, hint: 'the file is incomplete; download it again' })
  }
  const known = types.get(s.key)
  if (known !== undefined && known !== s.typeName) {
    throw new CheckpointError({ what: `storage ${show(s.key)} is used with two types`, where, expected: known, found: s.typeName })
  }
  types.set(s.key, s.typeName)
  const bytes = s.numel * s.dtype.itemSize
  if (entry.size !== bytes) {
    throw new CheckpointError({
      what: `storage ${show(s.key)} has the wrong size`,
      where,
      expected: `${s.numel} x ${s.dtype.itemSize} = ${bytes} bytes`,
      found: `${entry.size}`,
      hint: 'the file is corrupt; download it again',
    })
  }
  return entry
}

/**
 * Checks that the tensor's strided view lies inside its storage; returns its element count and the end of
 * the bytes of the storage it views.
 */
function checkView(t: TorchTensor, storage: ZipEntry, where: string): { size: number; endByte: number } {
  const size = shapeSize(t.shape)
  if (size === undefined) throw new CheckpointError({ what: 'tensor shape has too many elements', where, found: show(t.shape) })
  if (size === 0) return { size: 0, endByte: 0 }
  // Last element touched, in elements of the tensor's dtype. Huge values stay huge (doubles do not wrap).
  let last = t.offset
  for (let d = 0; d < t.shape.length; d++) last += (t.shape[d] - 1) * t.stride[d]
  const endByte = (last + 1) * t.dtype.itemSize
  if (!(endByte <= storage.size)) {
    throw new CheckpointError({
      what: 'tensor extends past the end of its storage',
      where,
      expected: `at most ${storage.size} bytes`,
      found: `offset ${t.offset}, shape ${show(t.shape)}, stride ${show(t.stride)} -> ${endByte} bytes`,
      hint: 'the file is corrupt; download it again',
    })
  }
  return { size, endByte }
}

/** A stored (uncompressed) entry, read by range; anything else is inflated whole. */
function isStored(entry: ZipEntry): boolean {
  return entry.method === 0 && entry.compressedSize === entry.size
}

/** torch's is_contiguous: row-major strides, ignoring dimensions of size 1. */
export function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] === 1) continue
    if (stride[d] !== expected) return false
    expected *= shape[d]
  }
  return true
}

/** How to read one tensor: a byte range of a stored entry when contiguous, else a gather. */
function tensorEntry(zip: ZipArchive, storage: ZipEntry, t: TorchTensor, name: string, size: number): TensorEntry {
  const itemSize = t.dtype.itemSize
  const byteLength = size * itemSize
  const start = t.offset * itemSize
  const info = { name, dtype: t.dtype.dtype as DType, shape: t.shape, size, file: zip.file.path }
  const stored = isStored(storage)
  // what a read reaches in the file: the tensor's bytes of a stored entry, or a whole compressed one
  const whole: readonly [number, number] = [storage.dataOffset, storage.compressedSize]
  if (isContiguous(t.shape, t.stride)) {
    if (stored) {
      return { info, byteLength, ranged: true, fileRange: [storage.dataOffset + start, byteLength], read: (dst, at) => zip.readRange(storage, dst, start + at) }
    }
    return {
      info,
      byteLength,
      ranged: false,
      fileRange: whole,
      read: (dst, at) => dst.set(readInflated(zip, storage).subarray(start + at, start + at + dst.length)),
    }
  }
  // Non-contiguous (a transposed or expanded view): read the storage span it covers, then gather.
  // An expanded (stride 0) view can be far larger than its storage; refuse one larger than the file.
  if (byteLength > zip.file.size) {
    throw new CheckpointError({
      what: 'strided tensor view is larger than the whole file',
      where: tensorWhere(zip.file.path, name),
      expected: `at most ${zip.file.size} bytes`,
      found: `${byteLength} (shape ${show(t.shape)}, stride ${show(t.stride)})`,
    })
  }
  let last = t.offset
  for (let d = 0; d < t.shape.length; d++) last += (t.shape[d] - 1) * t.stride[d]
  const spanBytes = size === 0 ? 0 : (last + 1 - t.offset) * itemSize
  const read = (dst: Uint8Array, at: number): void => {
    let span: Uint8Array
    if (stored) {
      span = new Uint8Array(spanBytes)
      zip.readRange(storage, span, start)
    } else {
      span = readInflated(zip, storage).subarray(start, start + spanBytes)
    }
    const all = new Uint8Array(byteLength)
    gather(span, t.shape, t.stride, itemSize, all)
    dst.set(all.subarray(at, at + dst.length))
  }
  return { info, byteLength, ranged: false, fileRange: stored ? [storage.dataOffset + start, spanBytes] : whole, read }
}

/** A compressed storage, inflated (and CRC-checked) on its first read and kept until close. */
function readInflated(zip: ZipArchive, storage: ZipEntry): Uint8Array {
  return zip.readWholeCached(storage, MAX_INFLATED_STORAGE, 'compressed tensor storage')
}

/** Copies the elements of a strided view (strides in elements, relative to `src`) into row-major `out`. */
export function gather(src: Uint8Array, shape: readonly number[], stride: readonly number[], itemSize: number, out: Uint8Array): void {
  const rank = shape.length
  const numel = out.length / itemSize
  const index = new Array<number>(rank).fill(0)
  let from = 0 // element offset in src
  for (let i = 0; i < numel; i++) {
    const s = from * itemSize
    const o = i * itemSize
    for (let b = 0; b < itemSize; b++) out[o + b] = src[s + b]
    // Advance the multi-index like an odometer.
    for (let d = rank - 1; d >= 0; d--) {
      index[d]++
      from += stride[d]
      if (index[d] < shape[d]) break
      from -= stride[d] * shape[d]
      index[d] = 0
    }
  }
}

function hexBytes(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ')
}
