// Checkpoint WRITERS, the counterparts of safetensors.ts and torch.ts: files that refgpt's readers,
// Hugging Face's safetensors and torch.load all read.
//
//   writeSafetensors(file, tensors, metadata)   model.safetensors, laid out as HF's safetensors writes it
//   writeTorchZip(file, tensors, opts)          pytorch_model.bin as torch.save(state_dict) writes it (torch >= 1.6)
//   writeFileAtomic(file, content)              any file (config.json, ...): temp file + fsync + rename
//
// Every write is atomic: the bytes go to `<file>.tmp-<pid>-<random>` in the same folder, which is fsynced,
// closed and renamed over `file` (then the folder is fsynced). A write that fails for any reason (bad input
// found midway, a full disk, a throwing lazy tensor) removes its temp file and leaves `file` as it was.
// A process killed mid-write leaves `file` untouched and, at worst, a stale `*.tmp-*` file beside it.
//
// Tensors are row-major, little-endian. `data` is float32 values, stored as `dtype` (F32 by default; F16
// and BF16 round to nearest, ties to even); `bytes` is the stored bytes as they are. Either may be a function,
// called once, when that tensor is written, so that a caller can hand over one tensor at a time.
//
// safetensors layout (https://github.com/huggingface/safetensors, tensor.rs `prepare`/`serialize`):
//   u64 LE n | n bytes of JSON, padded with spaces to a multiple of 8 | tensor data, contiguous
//   JSON: {"__metadata__":{...},"<name>":{"dtype":"F32","shape":[..],"data_offsets":[begin,end]},...}
//   Tensors sorted by dtype alignment, largest first (F32, BF16, F16: the order of HF's Dtype enum), then by
//   name (byte order); data in the same order with no gaps. serde_json's compact output, which
//   JSON.stringify reproduces for well-formed strings. Metadata keys are written in byte order.
//
// torch zip layout (torch/serialization.py `_save`, caffe2/serialize/inline_container.cc):
//   <archive>/data.pkl     pickle protocol 2 of OrderedDict{name: _rebuild_tensor_v2(persistent_load(
//                          ('storage', torch.FloatStorage, '<key>', 'cpu', numel)), 0, shape, stride, False,
//                          OrderedDict())}, keys '0', '1', ... in tensor order
//   <archive>/byteorder    "little" (torch >= 2.0 writes it; older torch ignores it)
//   <archive>/data/<key>   raw storage bytes, records in sorted key order as torch writes them
//   <archive>/version      "3\n"
//   Every record is stored (no compression), and its data starts on a 64-byte boundary: like
//   PyTorchStreamWriter, the local header carries an extra field "FB" of 'Z' padding. ZIP64 records are
//   written when an entry, an offset or the archive passes 4 GiB (or always, with forceZip64).

import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as zlib from 'node:zlib'
import { CheckpointError, RefgptError, UsageError, show } from '../errors.js'
import { f32ToBf16Array, f32ToF16Array } from './dtype.js'
import { crc32Table } from './crc32.js'
import { crc32 } from './platform.js'
import { MAX_SAFETENSORS_HEADER } from './safetensors.js'

export { crc32, crc32Table }

/** The dtypes the writers store (those refgpt reads). */
export type WriteDType = 'F32' | 'F16' | 'BF16'

/** One tensor to write: float32 `data` (stored as `dtype`, default F32) or raw little-endian `bytes` of `dtype`. */
export type TensorToWrite =
  | {
      name: string
      shape: readonly number[]
      /** Row-major float32 values, or a function returning them (called once, when this tensor is written). */
      data: Float32Array | (() => Float32Array)
      /** Stored dtype; F16/BF16 round each value to nearest, ties to even. Default F32. */
      dtype?: WriteDType
    }
  | {
      name: string
      shape: readonly number[]
      /** The stored bytes (e.g. the Uint16Array bit patterns of F16 values), or a function returning them. */
      bytes: ArrayBufferView | (() => ArrayBufferView)
      dtype: WriteDType
    }

/** What a writer wrote. */
export interface WrittenFile {
  /** Absolute path of the file. */
  file: string
  /** File size in bytes. */
  bytes: number
  tensors: number
}

export interface TorchZipOptions {
  /** The folder name inside the zip (torch >= 2.1 writes "archive"; older torch the file's base name). */
  archiveName?: string
  /** Write the ZIP64 records even when nothing needs them (for testing readers). */
  forceZip64?: boolean
}

/** Where a write goes: sequential writes to the temp file. */
export interface FileSink {
  /** Appends `bytes` (any size). */
  write(bytes: ArrayBufferView): void
  /** Bytes written so far. */
  readonly position: number
}

const ITEM_SIZE: Record<WriteDType, number> = { F32: 4, F16: 2, BF16: 2 }
/** Position in the safetensors Dtype enum (declared in increasing alignment); the writer sorts descending. */
const SAFETENSORS_DTYPE_ORDER: Record<WriteDType, number> = { F16: 7, BF16: 8, F32: 11 }
const TORCH_STORAGE: Record<WriteDType, string> = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage' }

/** Largest single writeSync (Node refuses lengths of 2 GiB and more). */
const MAX_WRITE_CHUNK = 1 << 30

// ---------------------------------------------------------------------------------------------------
// Atomic file writes

/**
 * Writes `file` atomically: `content` (a string is UTF-8), or what the function writes to the sink, goes to
 * a temp file in the same folder, which is fsynced and renamed over `file`. On any error the temp file is
 * removed, `file` is left as it was, and the error is rethrown (a file-system error as a CheckpointError).
 */
export function writeFileAtomic(file: string, content: string | ArrayBufferView | ((sink: FileSink) => void)): WrittenFile {
  const abs = path.resolve(file)
  let st: fs.Stats | undefined
  try {
    st = fs.statSync(abs)
  } catch {
    // does not exist yet: fine
  }
  if (st?.isDirectory()) {
    throw new UsageError({ what: 'cannot write a file over a folder', where: abs, hint: 'pass a file path inside the folder' })
  }
  const tmp = `${abs}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`
  let fd: number
  try {
    fd = fs.openSync(tmp, 'wx', 0o666)
  } catch (e) {
    throw ioError('cannot create the file', abs, e) // name the user's path, not the temp file beside it
  }
  let open = true
  const sink = new Sink(fd, abs)
  try {
    if (typeof content === 'function') content(sink)
    else sink.write(typeof content === 'string' ? new TextEncoder().encode(content) : content)
    const size = sink.position
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    open = false
    fs.renameSync(tmp, abs)
    syncFolder(path.dirname(abs))
    return { file: abs, bytes: size, tensors: 0 }
  } catch (e) {
    if (open) {
      try {
        fs.closeSync(fd)
      } catch {
        // already failing: keep the first error
      }
    }
    try {
      fs.unlinkSync(tmp)
    } catch {
      // nothing to remove
    }
    throw e instanceof RefgptError || !isSystemError(e) ? e : ioError('cannot write the file', abs, e)
  }
}

class Sink implements FileSink {
  position = 0
  constructor(private readonly fd: number, private readonly file: string) {}

  write(data: ArrayBufferView): void {
    // In chunks of views: a Uint8Array cannot span more than 4 GiB, a Float32Array can.
    let done = 0
    while (done < data.byteLength) {
      const chunk = new Uint8Array(data.buffer, data.byteOffset + done, Math.min(data.byteLength - done, MAX_WRITE_CHUNK))
      try {
        done += fs.writeSync(this.fd, chunk)
      } catch (e) {
        throw ioError('cannot write the file', this.file, e)
      }
    }
    this.position += data.byteLength
  }
}

/** fsync of the folder, so that the rename itself survives a crash (not possible everywhere: best effort). */
function syncFolder(dir: string): void {
  let fd: number | undefined
  try {
    fd = fs.openSync(dir, 'r')
    fs.fsyncSync(fd)
  } catch {
    // e.g. Windows cannot open folders
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

function isSystemError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string'
}

/** A failed write as a CheckpointError naming the file, with a hint for the usual causes. */
export function ioError(what: string, file: string, e: unknown): CheckpointError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code
  const hint =
    code === 'ENOSPC' ? 'the disk is full; free some space or write elsewhere'
    : code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? 'the folder is not writable'
    : code === 'ENOENT' ? 'create the folder first'
    : undefined
  return new CheckpointError({ what: `${what} (${code ?? String(e)})`, where: file, hint }, { cause: e })
}

// ---------------------------------------------------------------------------------------------------
// Input checks

/** A validated tensor: its stored dtype and size, and how to get its bytes (once). */
interface Prepared {
  name: string
  shape: number[]
  dtype: WriteDType
  size: number
  byteLength: number
  /** The stored bytes (any typed array: its bytes are what is written). */
  bytes(): ArrayBufferView
}

function prepare(tensors: readonly TensorToWrite[], file: string, what: string): Prepared[] {
  if (!Array.isArray(tensors)) throw new UsageError({ what: `${what}: tensors is not an array`, where: file, found: show(tensors) })
  if (os.endianness() !== 'LE') {
    throw new UsageError({ what: `${what} needs a little-endian machine`, where: file })
  }
  const seen = new Set<string>()
  return tensors.map((t, i) => {
    const name = (t as { name?: unknown } | null)?.name
    if (typeof name !== 'string' || name === '' || !isWellFormed(name)) {
      throw new UsageError({ what: `tensor ${i} has no valid name`, where: file, expected: 'a non-empty, well-formed string', found: show(name) })
    }
    const where = `${file}: tensor ${name}`
    if (seen.has(name)) throw new UsageError({ what: 'two tensors have this name', where })
    seen.add(name)
    const shapeIn: unknown = t.shape
    if (!Array.isArray(shapeIn) || !shapeIn.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new UsageError({ what: 'shape is not a list of non-negative integers', where, found: show(shapeIn) })
    }
    const shape = shapeIn as number[]
    const hasData = 'data' in t && t.data !== undefined
    const hasBytes = 'bytes' in t && t.bytes !== undefined
    if (hasData === hasBytes) {
      throw new UsageError({ what: 'a tensor needs exactly one of data (float32 values) and bytes', where })
    }
    const dtype = (t.dtype ?? (hasData ? 'F32' : undefined)) as WriteDType | undefined
    if (typeof dtype !== 'string' || !Object.hasOwn(ITEM_SIZE, dtype)) {
      throw new UsageError({ what: 'unsupported dtype', where, expected: 'F32, F16 or BF16', found: show(dtype) })
    }
    let size = 1
    for (const d of shape) size *= d
    const byteLength = size * ITEM_SIZE[dtype]
    if (!Number.isSafeInteger(byteLength)) throw new UsageError({ what: 'shape has too many elements', where, found: show(shape) })
    const source = hasData ? (t as { data: unknown }).data : (t as { bytes: unknown }).bytes
    // Check eagerly what can be checked (before any file is created); a lazy source is checked when called.
    if (typeof source !== 'function') {
      if (hasData) checkF32(source, size, where)
      else rawBytes(source, byteLength, where)
    }
    let used = false
    const bytes = (): ArrayBufferView => {
      if (used) throw new Error(`internal: tensor ${name} read twice`)
      used = true
      const v: unknown = typeof source === 'function' ? source() : source
      return hasData ? storedBytes(checkF32(v, size, where), dtype) : rawBytes(v, byteLength, where)
    }
    return { name, shape: [...shape], dtype, size, byteLength, bytes }
  })
}

function checkF32(v: unknown, size: number, where: string): Float32Array {
  if (!(v instanceof Float32Array)) {
    throw new UsageError({ what: 'tensor data is not a Float32Array', where, found: describeValue(v), hint: 'pass raw stored bytes as `bytes` with a dtype' })
  }
  if (v.length !== size) throw new UsageError({ what: 'tensor data does not match its shape', where, expected: `${size} values`, found: `${v.length}` })
  return v
}

/** The stored values of float32 `v` as `dtype`. */
function storedBytes(v: Float32Array, dtype: WriteDType): ArrayBufferView {
  return dtype === 'F32' ? v : dtype === 'F16' ? f32ToF16Array(v) : f32ToBf16Array(v)
}

function rawBytes(v: unknown, byteLength: number, where: string): ArrayBufferView {
  if (!ArrayBuffer.isView(v)) throw new UsageError({ what: 'tensor bytes are not a typed array or Buffer', where, found: describeValue(v) })
  if (v.byteLength !== byteLength) {
    throw new UsageError({ what: 'tensor bytes do not match its shape and dtype', where, expected: `${byteLength} bytes`, found: `${v.byteLength}` })
  }
  return v
}

function describeValue(v: unknown): string {
  if (v === null || typeof v !== 'object') return show(v)
  return (v as object).constructor?.name ?? 'an object'
}

/** No lone surrogates (they cannot be encoded as UTF-8, which both formats use for names). */
function isWellFormed(s: string): boolean {
  return !/\p{Surrogate}/u.test(s)
}

const utf8 = new TextEncoder()

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return a.length - b.length
}

// ---------------------------------------------------------------------------------------------------
// safetensors

/**
 * Writes a .safetensors file as HF's safetensors library does (see the top of this file). `metadata` is
 * the `__metadata__` map (string values; `null` leaves it out); transformers writes {"format":"pt"}.
 */
export function writeSafetensors(
  file: string,
  tensors: readonly TensorToWrite[],
  metadata: Readonly<Record<string, string>> | null = { format: 'pt' },
): WrittenFile {
  const abs = path.resolve(file)
  const list = prepare(tensors, abs, 'writeSafetensors')
  const header = safetensorsHeader(list, metadata, abs)
  const order = header.order
  const written = writeFileAtomic(abs, (sink) => {
    const prefix = new Uint8Array(8)
    new DataView(prefix.buffer).setBigUint64(0, BigInt(header.json.length), true)
    sink.write(prefix)
    sink.write(header.json)
    for (const t of order) sink.write(t.bytes())
  })
  return { ...written, tensors: list.length }
}

/** The padded JSON header and the tensors in data order. */
function safetensorsHeader(
  list: Prepared[],
  metadata: Readonly<Record<string, string>> | null,
  file: string,
): { json: Uint8Array; order: Prepared[] } {
  const parts: string[] = []
  if (metadata !== null) {
    if (typeof metadata !== 'object' || Array.isArray(metadata)) {
      throw new UsageError({ what: 'safetensors metadata is not a map of strings', where: file, found: show(metadata) })
    }
    const entries = Object.entries(metadata).map(([k, v]) => {
      if (typeof v !== 'string' || !isWellFormed(v) || !isWellFormed(k)) {
        throw new UsageError({ what: 'safetensors metadata values must be well-formed strings', where: `${file}: __metadata__.${k}`, found: show(v) })
      }
      return { k, v, key: utf8.encode(k) }
    })
    entries.sort((a, b) => compareBytes(a.key, b.key))
    parts.push(`"__metadata__":{${entries.map((e) => `${JSON.stringify(e.k)}:${JSON.stringify(e.v)}`).join(',')}}`)
  }
  for (const t of list) {
    if (t.name === '__metadata__') throw new UsageError({ what: 'a tensor cannot be named __metadata__ in safetensors', where: file })
  }
  const keyed = list.map((t) => ({ t, key: utf8.encode(t.name) }))
  keyed.sort((a, b) => SAFETENSORS_DTYPE_ORDER[b.t.dtype] - SAFETENSORS_DTYPE_ORDER[a.t.dtype] || compareBytes(a.key, b.key))
  let offset = 0
  for (const { t } of keyed) {
    const end = offset + t.byteLength
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`)
    offset = end
  }
  const text = utf8.encode(`{${parts.join(',')}}`)
  const padded = Math.ceil(text.length / 8) * 8
  if (padded > MAX_SAFETENSORS_HEADER) {
    throw new UsageError({
      what: 'safetensors header would be too large',
      where: file,
      expected: `at most ${MAX_SAFETENSORS_HEADER} bytes (the safetensors readers' limit)`,
      found: `${padded}`,
      hint: 'split the tensors over several files (a sharded checkpoint)',
    })
  }
  const json = new Uint8Array(padded).fill(0x20)
  json.set(text)
  return { json, order: keyed.map((k) => k.t) }
}

// ---------------------------------------------------------------------------------------------------
// torch zip

/**
 * Writes a torch.save(state_dict) zip checkpoint (pytorch_model.bin) that torch.load (>= 1.6, weights_only
 * included) and refgpt's restricted reader both read. Tensors keep their order as the dict's keys.
 */
export function writeTorchZip(file: string, tensors: readonly TensorToWrite[], opts: TorchZipOptions = {}): WrittenFile {
  const abs = path.resolve(file)
  const archive = opts.archiveName ?? 'archive'
  if (typeof archive !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(archive) || archive === '.' || archive === '..') {
    throw new UsageError({ what: 'invalid zip archive name', where: abs, expected: 'letters, digits, "_", "-" or "."', found: show(archive) })
  }
  const list = prepare(tensors, abs, 'writeTorchZip')
  const keys = list.map((_, i) => String(i))
  const pickle = stateDictPickle(list, keys)
  // torch writes storages in sorted key order: "0", "1", "10", "11", ..., "2".
  const storages = list.map((t, i) => ({ key: keys[i], t })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  const records: Array<{ name: string; data: () => ArrayBufferView }> = [
    { name: 'data.pkl', data: () => pickle },
    { name: 'byteorder', data: () => utf8.encode('little') },
    ...storages.map(({ key, t }) => ({ name: `data/${key}`, data: () => t.bytes() })),
    { name: 'version', data: () => utf8.encode('3\n') },
  ]
  const written = writeFileAtomic(abs, (sink) => {
    const zip = new ZipWriter(sink, opts.forceZip64 === true)
    for (const r of records) zip.add(`${archive}/${r.name}`, r.data())
    zip.finish()
  })
  return { ...written, tensors: list.length }
}

/** pickle protocol 2 of OrderedDict{name: tensor}, as torch.save's pickler emits it (memoizing globals). */
function stateDictPickle(list: Prepared[], keys: string[]): Uint8Array {
  const p = new PickleWriter()
  p.op(0x80, 2) // PROTO 2
  p.global('collections', 'OrderedDict')
  p.op(0x29) // EMPTY_TUPLE
  p.op(0x52) // REDUCE
  // Python's pickler batches dict items by 1000: MARK k v ... SETITEMS, or k v SETITEM for a batch of one.
  for (let start = 0; start < list.length; start += 1000) {
    const batch = list.slice(start, start + 1000)
    if (batch.length > 1) p.op(0x28) // MARK
    batch.forEach((t, j) => {
      p.str(t.name)
      tensorReduce(p, t, keys[start + j])
    })
    p.op(batch.length > 1 ? 0x75 : 0x73) // SETITEMS / SETITEM
  }
  p.op(0x2e) // STOP
  return p.bytes()
}

/** torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict()). */
function tensorReduce(p: PickleWriter, t: Prepared, key: string): void {
  p.global('torch._utils', '_rebuild_tensor_v2')
  p.op(0x28) // MARK: the 6 arguments
  // persistent id ('storage', torch.<Type>Storage, key, 'cpu', numel) -> BINPERSID
  p.op(0x28)
  p.str('storage', true)
  p.global('torch', TORCH_STORAGE[t.dtype])
  p.str(key)
  p.str('cpu', true)
  p.int(t.size)
  p.op(0x74) // TUPLE
  p.op(0x51) // BINPERSID
  p.int(0) // storage offset
  p.tuple(t.shape)
  p.tuple(contiguousStride(t.shape))
  p.op(0x89) // NEWFALSE: requires_grad
  p.global('collections', 'OrderedDict') // backward hooks: OrderedDict()
  p.op(0x29)
  p.op(0x52)
  p.op(0x74) // TUPLE
  p.op(0x52) // REDUCE
}

/** torch's contiguous strides: stride[i] = stride[i+1] * max(shape[i+1], 1). */
export function contiguousStride(shape: readonly number[]): number[] {
  const stride = new Array<number>(shape.length)
  let s = 1
  for (let d = shape.length - 1; d >= 0; d--) {
    stride[d] = s
    s *= Math.max(shape[d], 1)
  }
  return stride
}

class PickleWriter {
  private buf = new Uint8Array(1024)
  private len = 0
  private readonly memo = new Map<string, number>()

  op(...codes: number[]): void {
    this.ensure(codes.length)
    for (const c of codes) this.buf[this.len++] = c
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.len)
  }

  /** GLOBAL 'module\nname\n', memoized (BINGET on reuse, as Python's pickler does). */
  global(module: string, name: string): void {
    if (this.recall(`g:${module}.${name}`)) return
    this.op(0x63) // GLOBAL
    this.raw(utf8.encode(`${module}\n${name}\n`))
    this.remember(`g:${module}.${name}`)
  }

  /** BINUNICODE (protocol 2 has no shorter string opcode); `memo` reuses repeated constants. */
  str(s: string, memo = false): void {
    if (memo && this.recall(`s:${s}`)) return
    const b = utf8.encode(s)
    this.op(0x58) // BINUNICODE
    this.u32(b.length)
    this.raw(b)
    if (memo) this.remember(`s:${s}`)
  }

  /** A non-negative integer: BININT1, BININT2, BININT, or LONG1 beyond 2^31 - 1. */
  int(n: number): void {
    if (n < 0x100) return this.op(0x4b, n)
    if (n < 0x10000) return this.op(0x4d, n & 0xff, n >>> 8)
    if (n < 0x80000000) {
      this.op(0x4a)
      return this.u32(n)
    }
    // LONG1: little-endian two's complement, with a zero byte on top when the high bit is set.
    const bytes: number[] = []
    let x = BigInt(n)
    while (x > 0n) {
      bytes.push(Number(x & 0xffn))
      x >>= 8n
    }
    if (bytes[bytes.length - 1] & 0x80) bytes.push(0)
    this.op(0x8a, bytes.length, ...bytes)
  }

  /** A tuple of integers: EMPTY_TUPLE, TUPLE1-3, or MARK ... TUPLE. */
  tuple(items: readonly number[]): void {
    if (items.length === 0) return this.op(0x29)
    if (items.length > 3) this.op(0x28)
    for (const x of items) this.int(x)
    this.op(items.length === 1 ? 0x85 : items.length === 2 ? 0x86 : items.length === 3 ? 0x87 : 0x74)
  }

  private recall(key: string): boolean {
    const i = this.memo.get(key)
    if (i === undefined) return false
    if (i < 0x100) this.op(0x68, i) // BINGET
    else {
      this.op(0x6a) // LONG_BINGET
      this.u32(i)
    }
    return true
  }

  private remember(key: string): void {
    const i = this.memo.size
    this.memo.set(key, i)
    if (i < 0x100) this.op(0x71, i) // BINPUT
    else {
      this.op(0x72) // LONG_BINPUT
      this.u32(i)
    }
  }

  private u32(n: number): void {
    this.op(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24)
  }

  private raw(b: Uint8Array): void {
    this.ensure(b.length)
    this.buf.set(b, this.len)
    this.len += b.length
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n))
    next.set(this.buf.subarray(0, this.len))
    this.buf = next
  }
}

// ---------------------------------------------------------------------------------------------------
// A stored-only zip writer with 64-byte data alignment and ZIP64

const U32_MAX = 0xffffffff
/** Data alignment of PyTorchStreamWriter (kFieldAlignment). */
const ZIP_ALIGNMENT = 64
/** DOS date 1980-01-01, time 00:00: fixed, so that equal inputs give equal files. */
const DOS_DATE = (0 << 9) | (1 << 5) | 1
const DOS_TIME = 0

interface ZipRecord {
  name: Uint8Array
  crc: number
  size: number
  offset: number
}

class ZipWriter {
  private readonly records: ZipRecord[] = []

  constructor(private readonly sink: FileSink, private readonly force64: boolean) {}

  /** Appends a stored entry whose data starts at a multiple of 64 bytes. */
  add(name: string, data: ArrayBufferView): void {
    const nameBytes = utf8.encode(name)
    const offset = this.sink.position
    const size = data.byteLength
    const crc = crc32(data)
    const zip64 = this.force64 || size >= U32_MAX
    const zip64Len = zip64 ? 4 + 16 : 0
    const unpadded = offset + 30 + nameBytes.length + zip64Len + 4
    const pad = (ZIP_ALIGNMENT - (unpadded % ZIP_ALIGNMENT)) % ZIP_ALIGNMENT
    const header = new Uint8Array(30 + nameBytes.length + zip64Len + 4 + pad)
    const v = new DataView(header.buffer)
    v.setUint32(0, 0x04034b50, true)
    v.setUint16(4, zip64 ? 45 : 20, true) // version needed to extract
    v.setUint16(6, 0, true) // flags
    v.setUint16(8, 0, true) // stored
    v.setUint16(10, DOS_TIME, true)
    v.setUint16(12, DOS_DATE, true)
    v.setUint32(14, crc, true)
    v.setUint32(18, zip64 ? U32_MAX : size, true)
    v.setUint32(22, zip64 ? U32_MAX : size, true)
    v.setUint16(26, nameBytes.length, true)
    v.setUint16(28, zip64Len + 4 + pad, true)
    header.set(nameBytes, 30)
    let p = 30 + nameBytes.length
    if (zip64) {
      v.setUint16(p, 0x0001, true)
      v.setUint16(p + 2, 16, true)
      v.setBigUint64(p + 4, BigInt(size), true)
      v.setBigUint64(p + 12, BigInt(size), true)
      p += 20
    }
    header[p] = 0x46 // 'F'
    header[p + 1] = 0x42 // 'B'
    v.setUint16(p + 2, pad, true)
    header.fill(0x5a, p + 4) // 'Z'
    this.sink.write(header)
    this.sink.write(data)
    this.records.push({ name: nameBytes, crc, size, offset })
  }

  /** Writes the central directory and the end records. */
  finish(): void {
    const cdOffset = this.sink.position
    let cdSize = 0
    for (const r of this.records) {
      const bigSize = this.force64 || r.size >= U32_MAX
      const bigOffset = this.force64 || r.offset >= U32_MAX
      const fields = (bigSize ? 2 : 0) + (bigOffset ? 1 : 0)
      const extraLen = fields ? 4 + 8 * fields : 0
      const h = new Uint8Array(46 + r.name.length + extraLen)
      const v = new DataView(h.buffer)
      const version = fields ? 45 : 20
      v.setUint32(0, 0x02014b50, true)
      v.setUint16(4, version, true) // made by (MS-DOS attributes)
      v.setUint16(6, version, true) // needed to extract
      v.setUint16(8, 0, true)
      v.setUint16(10, 0, true)
      v.setUint16(12, DOS_TIME, true)
      v.setUint16(14, DOS_DATE, true)
      v.setUint32(16, r.crc, true)
      v.setUint32(20, bigSize ? U32_MAX : r.size, true)
      v.setUint32(24, bigSize ? U32_MAX : r.size, true)
      v.setUint16(28, r.name.length, true)
      v.setUint16(30, extraLen, true)
      // comment length, disk number, internal and external attributes: 0
      v.setUint32(42, bigOffset ? U32_MAX : r.offset, true)
      h.set(r.name, 46)
      if (fields) {
        let p = 46 + r.name.length
        v.setUint16(p, 0x0001, true)
        v.setUint16(p + 2, 8 * fields, true)
        p += 4
        // The ZIP64 extra lists only the overflowed fields, in this order.
        if (bigSize) {
          v.setBigUint64(p, BigInt(r.size), true)
          v.setBigUint64(p + 8, BigInt(r.size), true)
          p += 16
        }
        if (bigOffset) v.setBigUint64(p, BigInt(r.offset), true)
      }
      this.sink.write(h)
      cdSize += h.length
    }
    const count = this.records.length
    const zip64 = this.force64 || count >= 0xffff || cdSize >= U32_MAX || cdOffset >= U32_MAX
    if (zip64) {
      const z64Offset = this.sink.position
      const z = new Uint8Array(56 + 20)
      const v = new DataView(z.buffer)
      v.setUint32(0, 0x06064b50, true)
      v.setBigUint64(4, 44n, true) // size of the rest of the record
      v.setUint16(12, 45, true)
      v.setUint16(14, 45, true)
      // disk numbers: 0
      v.setBigUint64(24, BigInt(count), true)
      v.setBigUint64(32, BigInt(count), true)
      v.setBigUint64(40, BigInt(cdSize), true)
      v.setBigUint64(48, BigInt(cdOffset), true)
      v.setUint32(56, 0x07064b50, true) // locator
      v.setUint32(60, 0, true)
      v.setBigUint64(64, BigInt(z64Offset), true)
      v.setUint32(72, 1, true) // total disks
      this.sink.write(z)
    }
    const e = new Uint8Array(22)
    const v = new DataView(e.buffer)
    v.setUint32(0, 0x06054b50, true)
    v.setUint16(8, zip64 ? 0xffff : count, true)
    v.setUint16(10, zip64 ? 0xffff : count, true)
    v.setUint32(12, zip64 ? U32_MAX : cdSize, true)
    v.setUint32(16, zip64 ? U32_MAX : cdOffset, true)
    this.sink.write(e)
  }
}

// ---------------------------------------------------------------------------------------------------
// CRC-32 (zlib.crc32 where this Node has it, 20.15 and later; else a table)


