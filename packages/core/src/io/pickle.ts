// A RESTRICTED unpickler for the data.pkl of torch.save archives.
//
// A pickle is a program for a small stack machine whose GLOBAL + REDUCE opcodes can call any Python
// function (os.system included): loading an untrusted pytorch_model.bin with Python's pickle runs code.
// This reader executes nothing. It implements the opcodes that torch.save emits (protocols 2-5) and
// knows a fixed allow-list of globals, each mapped to a small JS implementation that only builds data:
//
//   collections.OrderedDict                          -> PickleDict
//   torch._utils._rebuild_tensor(_v2, _v3)           -> TorchTensor (a view on a storage)
//   torch._utils._rebuild_parameter(_with_state)     -> the TorchTensor it wraps
//   torch.<Type>Storage, torch.storage.UntypedStorage -> storage types in persistent ids
//   torch.<dtype> (float32, bfloat16, ...)           -> dtypes (arguments of _rebuild_tensor_v3)
//
// Any other global, and any opcode not listed below, is a CheckpointError that names the file. Every
// length is checked against the remaining bytes before slicing; stack, marks and memo are bounded, and so
// is what the pickle builds: items per list/tuple/dict, container items and objects over the whole pickle
// (each also at most one per byte of pickle), all checked BEFORE anything grows. A real state dict
// (GPT-J 6B: a 100 KB pickle, ~300 tensors) is far below every cap; a few hundred KB of deflated
// `DUP APPEND` (256 MB of pickle) used to grow an array past V8's limit and abort the process.

import { CheckpointError, show } from '../errors.js'
import { messageName } from './safetensors.js'

// ---------------------------------------------------------------------------------------------------
// Values

export type DictKey = string | number | bigint | boolean | null

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PickleTuple
  | PickleDict
  | PickleGlobal
  | TorchStorage
  | TorchTensor

export class PickleTuple {
  constructor(readonly items: PickleValue[]) {}
}

/** A Python dict or OrderedDict (keys are limited to str/int/bool/None). */
export class PickleDict {
  readonly map = new Map<DictKey, PickleValue>()
  /** What BUILD set on it (an OrderedDict's attributes, e.g. a state dict's `_metadata`); ignored. */
  state: PickleValue = null
}

/** Element type of a storage or tensor, named like safetensors dtypes ("F32", "I64", "BOOL", ...). */
export interface TorchDType {
  dtype: string
  itemSize: number
}

/** An allow-listed global and what it stands for. */
export type GlobalKind =
  | { kind: 'OrderedDict' }
  | { kind: 'rebuild_tensor' | 'rebuild_tensor_v2' | 'rebuild_tensor_v3' | 'rebuild_parameter' | 'rebuild_parameter_with_state' }
  | ({ kind: 'storage' } & TorchDType)
  | ({ kind: 'dtype' } & TorchDType)

export class PickleGlobal {
  constructor(readonly module: string, readonly name: string, readonly type: GlobalKind) {}
  get qualname(): string {
    return `${this.module}.${this.name}`
  }
}

/** A storage as named by a persistent id ('storage', torch.FloatStorage, key, location, numel). */
export class TorchStorage {
  constructor(
    /** e.g. "torch.FloatStorage" */
    readonly typeName: string,
    readonly dtype: TorchDType,
    /** Name of the archive entry `<archive>/data/<key>` that holds its bytes. */
    readonly key: string,
    readonly location: string,
    /** Number of elements of `dtype` (bytes for UntypedStorage). */
    readonly numel: number,
  ) {}
}

/** A tensor: a strided view (offset, shape, stride in elements of `dtype`) on a storage. */
export class TorchTensor {
  constructor(
    readonly storage: TorchStorage,
    readonly dtype: TorchDType,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

// ---------------------------------------------------------------------------------------------------
// The allow-list

const STORAGE_TYPES: Record<string, [string, number]> = {
  FloatStorage: ['F32', 4],
  HalfStorage: ['F16', 2],
  BFloat16Storage: ['BF16', 2],
  // Recognised only so that a tensor of these types gets a clear "unsupported dtype" error.
  DoubleStorage: ['F64', 8],
  LongStorage: ['I64', 8],
  IntStorage: ['I32', 4],
  ShortStorage: ['I16', 2],
  CharStorage: ['I8', 1],
  ByteStorage: ['U8', 1],
  BoolStorage: ['BOOL', 1],
  ComplexFloatStorage: ['C64', 8],
  ComplexDoubleStorage: ['C128', 16],
}

const DTYPES: Record<string, [string, number]> = {
  float32: ['F32', 4], float: ['F32', 4],
  float16: ['F16', 2], half: ['F16', 2],
  bfloat16: ['BF16', 2],
  float64: ['F64', 8], double: ['F64', 8],
  int64: ['I64', 8], long: ['I64', 8],
  int32: ['I32', 4], int: ['I32', 4],
  int16: ['I16', 2], short: ['I16', 2],
  int8: ['I8', 1], uint8: ['U8', 1], bool: ['BOOL', 1],
  uint16: ['U16', 2], uint32: ['U32', 4], uint64: ['U64', 8],
  float8_e4m3fn: ['F8_E4M3', 1], float8_e5m2: ['F8_E5M2', 1],
  complex64: ['C64', 8], complex128: ['C128', 16],
}

/** The allow-listed global `module.name`, or undefined. */
function lookupGlobal(module: string, name: string): GlobalKind | undefined {
  const q = `${module}.${name}`
  switch (q) {
    case 'collections.OrderedDict': return { kind: 'OrderedDict' }
    case 'torch._utils._rebuild_tensor': return { kind: 'rebuild_tensor' }
    case 'torch._utils._rebuild_tensor_v2': return { kind: 'rebuild_tensor_v2' }
    case 'torch._utils._rebuild_tensor_v3': return { kind: 'rebuild_tensor_v3' }
    case 'torch._utils._rebuild_parameter': return { kind: 'rebuild_parameter' }
    case 'torch._utils._rebuild_parameter_with_state': return { kind: 'rebuild_parameter_with_state' }
    case 'torch.storage.UntypedStorage': return { kind: 'storage', dtype: 'U8', itemSize: 1 }
  }
  if (module === 'torch' && Object.hasOwn(STORAGE_TYPES, name)) {
    const [dtype, itemSize] = STORAGE_TYPES[name]
    return { kind: 'storage', dtype, itemSize }
  }
  if (module === 'torch' && Object.hasOwn(DTYPES, name)) {
    const [dtype, itemSize] = DTYPES[name]
    return { kind: 'dtype', dtype, itemSize }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------
// Opcodes

const OP = {
  MARK: 0x28, STOP: 0x2e, POP: 0x30, POP_MARK: 0x31, DUP: 0x32,
  BINBYTES: 0x42, SHORT_BINBYTES: 0x43, BINFLOAT: 0x47, BININT: 0x4a, BININT1: 0x4b, BININT2: 0x4d,
  NONE: 0x4e, BINPERSID: 0x51, REDUCE: 0x52, BINUNICODE: 0x58, EMPTY_LIST: 0x5d,
  APPEND: 0x61, BUILD: 0x62, GLOBAL: 0x63, DICT: 0x64, APPENDS: 0x65, BINGET: 0x68, LONG_BINGET: 0x6a,
  LIST: 0x6c, BINPUT: 0x71, LONG_BINPUT: 0x72, SETITEM: 0x73, TUPLE: 0x74, SETITEMS: 0x75,
  EMPTY_DICT: 0x7d, EMPTY_TUPLE: 0x29,
  PROTO: 0x80, NEWOBJ: 0x81, TUPLE1: 0x85, TUPLE2: 0x86, TUPLE3: 0x87, NEWTRUE: 0x88, NEWFALSE: 0x89,
  LONG1: 0x8a, LONG4: 0x8b, SHORT_BINUNICODE: 0x8c, BINUNICODE8: 0x8d, BINBYTES8: 0x8e,
  STACK_GLOBAL: 0x93, MEMOIZE: 0x94, FRAME: 0x95,
} as const

/** Names of the opcodes we refuse, for error messages. */
const REFUSED_OPS: Record<number, string> = {
  0x46: 'FLOAT', 0x49: 'INT', 0x4c: 'LONG', 0x50: 'PERSID', 0x53: 'STRING', 0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING', 0x56: 'UNICODE', 0x67: 'GET', 0x69: 'INST', 0x6f: 'OBJ', 0x70: 'PUT',
  0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX', 0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
}

/** Values on the pickle stack at once (a state dict's SETITEMS holds 2 per tensor: 100,000 tensors fit). */
export const MAX_PICKLE_STACK = 1 << 20
/** Nested MARKs (torch.save nests a handful). */
export const MAX_PICKLE_MARKS = 1 << 16
/** Memo entries (also at most one per byte of pickle); a state dict memoizes a few per tensor. */
export const MAX_PICKLE_MEMO = 1 << 22
/**
 * Items in one list, tuple or dict. A state dict has one per tensor (< 100,000 in any real model); V8 aborts
 * the process (uncatchable) on an array of ~2^27 and throws on a Map of 2^24.
 */
export const MAX_CONTAINER_ITEMS = 1 << 22
/**
 * Items added to containers over the whole pickle (also at most one per byte of pickle): ~8 bytes of
 * memory each, so at most ~130 MB. A state dict adds ~20 per tensor.
 */
export const MAX_PICKLE_ELEMENTS = 1 << 24
/**
 * Objects the pickle creates (strings, bytes, floats, big integers, lists, tuples, tensors, ...; a dict counts
 * 4, its Map weighs ~230 bytes), also at most one per byte of pickle: ~75 bytes each, so at most ~300 MB.
 * A state dict creates ~15 per tensor.
 */
export const MAX_PICKLE_OBJECTS = 1 << 22
/** Bytes of a GLOBAL module or name line. */
const MAX_LINE = 1024
/** Bytes of a LONG1/LONG4 integer. */
const MAX_LONG_BYTES = 1024
/** Dimensions of a tensor (numpy's limit is 64; weights have at most 4 or 5). */
const MAX_RANK = 64
/** An empty tuple is immutable: one instance serves every EMPTY_TUPLE. */
const EMPTY_TUPLE = new PickleTuple(Object.freeze([]) as unknown as PickleValue[])

export interface UnpickleOptions {
  /** The checkpoint file, for error messages. */
  file: string
  /** The pickle's name inside the file ("archive/data.pkl"), for error messages. */
  entry: string
  /** Lower caps than the defaults (tests use small ones; a cap can only be lowered). */
  limits?: { containerItems?: number; elements?: number; objects?: number; memo?: number }
}

/** Runs the restricted unpickler over `data` and returns the pickled object. */
export function unpickle(data: Uint8Array, opts: UnpickleOptions): PickleValue {
  return new Unpickler(data, opts).run()
}

class Unpickler {
  private pos = 0
  /** Offset of the opcode being executed, for error messages. */
  private opPos = 0
  private readonly view: DataView
  private readonly stack: PickleValue[] = []
  /** Stack lengths at each MARK. */
  private readonly marks: number[] = []
  private readonly memo = new Map<number, PickleValue>()
  private readonly text = new TextDecoder('utf-8')
  /** What the pickle may still add to containers, and create, before it is refused. */
  private elementsLeft: number
  private objectsLeft: number
  private readonly maxElements: number
  private readonly maxObjects: number
  private readonly maxMemo: number
  private readonly maxItems: number

  constructor(private readonly data: Uint8Array, private readonly opts: UnpickleOptions) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength)
    const lim = opts.limits ?? {}
    const cap = (max: number, lower: number | undefined): number => Math.min(max, lower ?? max)
    this.maxElements = Math.min(data.length, cap(MAX_PICKLE_ELEMENTS, lim.elements))
    this.maxObjects = Math.min(data.length, cap(MAX_PICKLE_OBJECTS, lim.objects))
    this.maxMemo = Math.min(data.length, cap(MAX_PICKLE_MEMO, lim.memo))
    this.maxItems = cap(MAX_CONTAINER_ITEMS, lim.containerItems)
    this.elementsLeft = this.maxElements
    this.objectsLeft = this.maxObjects
  }

  run(): PickleValue {
    for (;;) {
      this.opPos = this.pos
      const op = this.u8()
      if (op === OP.STOP) {
        if (this.stack.length === 0) throw this.fail('STOP with an empty stack')
        return this.pop()
      }
      this.step(op)
    }
  }

  private step(op: number): void {
    switch (op) {
      // --- framing and protocol
      case OP.PROTO: {
        const v = this.u8()
        if (v < 2 || v > 5) throw this.fail(`unsupported pickle protocol ${v}`)
        return
      }
      case OP.FRAME: this.length(this.u64()); return // frames are only a read-ahead hint

      // --- constants
      case OP.NONE: return this.push(null)
      case OP.NEWTRUE: return this.push(true)
      case OP.NEWFALSE: return this.push(false)
      case OP.BININT: return this.push(this.view.getInt32(this.take(4), true))
      case OP.BININT1: return this.push(this.u8())
      case OP.BININT2: return this.push(this.view.getUint16(this.take(2), true))
      case OP.LONG1: return this.push(this.long(this.u8()))
      case OP.LONG4: return this.push(this.long(this.u32()))
      case OP.BINFLOAT: return this.push(this.created(this.view.getFloat64(this.take(8), false)))
      case OP.SHORT_BINUNICODE: return this.push(this.str(this.u8()))
      case OP.BINUNICODE: return this.push(this.str(this.u32()))
      case OP.BINUNICODE8: return this.push(this.str(this.u64()))
      case OP.SHORT_BINBYTES: return this.push(this.created(this.bytes(this.u8()).slice()))
      case OP.BINBYTES: return this.push(this.created(this.bytes(this.u32()).slice()))
      case OP.BINBYTES8: return this.push(this.created(this.bytes(this.u64()).slice()))

      // --- containers (every growth is counted and checked before it happens)
      case OP.EMPTY_DICT: return this.push(this.newDict())
      case OP.EMPTY_LIST: return this.push(this.created([]))
      case OP.EMPTY_TUPLE: return this.push(EMPTY_TUPLE)
      case OP.MARK:
        if (this.marks.length >= MAX_PICKLE_MARKS) throw this.fail('too many nested MARKs')
        this.marks.push(this.stack.length)
        return
      case OP.TUPLE: return this.push(this.newTuple(this.popMark()))
      case OP.TUPLE1: return this.push(this.newTuple(this.popN(1)))
      case OP.TUPLE2: return this.push(this.newTuple(this.popN(2)))
      case OP.TUPLE3: return this.push(this.newTuple(this.popN(3)))
      case OP.LIST: {
        const items = this.popMark()
        this.grow('list', 0, items.length)
        return this.push(this.created(items))
      }
      case OP.DICT: {
        const items = this.popMark()
        const d = this.newDict()
        this.setItems(d, items)
        return this.push(d)
      }
      case OP.APPEND: {
        const v = this.pop()
        const l = this.list(this.top())
        this.grow('list', l.length, 1)
        l.push(v)
        return
      }
      case OP.APPENDS: {
        const items = this.popMark()
        const l = this.list(this.top())
        this.grow('list', l.length, items.length)
        for (let i = 0; i < items.length; i++) l.push(items[i])
        return
      }
      case OP.SETITEM: {
        const [k, v] = this.popN(2)
        this.setItems(this.dict(this.top()), [k, v])
        return
      }
      case OP.SETITEMS: {
        const items = this.popMark()
        this.setItems(this.dict(this.top()), items)
        return
      }
      case OP.POP: this.pop(); return
      case OP.POP_MARK: this.popMark(); return
      case OP.DUP: return this.push(this.top())

      // --- memo
      case OP.BINPUT: return this.put(this.u8())
      case OP.LONG_BINPUT: return this.put(this.u32())
      case OP.MEMOIZE: return this.put(this.memo.size)
      case OP.BINGET: return this.get(this.u8())
      case OP.LONG_BINGET: return this.get(this.u32())

      // --- objects: only the allow-list
      case OP.GLOBAL: {
        const module = this.line()
        const name = this.line()
        return this.push(this.global(module, name))
      }
      case OP.STACK_GLOBAL: {
        const [module, name] = this.popN(2)
        if (typeof module !== 'string' || typeof name !== 'string') throw this.fail('STACK_GLOBAL needs two strings')
        return this.push(this.global(module, name))
      }
      case OP.REDUCE: {
        const [fn, args] = this.popN(2)
        return this.push(this.reduce(fn, args))
      }
      case OP.NEWOBJ: {
        const [cls, args] = this.popN(2)
        if (!(cls instanceof PickleGlobal) || cls.type.kind !== 'OrderedDict' || !(args instanceof PickleTuple) || args.items.length) {
          throw this.fail(`NEWOBJ is only supported for collections.OrderedDict()`)
        }
        return this.push(this.newDict())
      }
      case OP.BUILD: {
        const state = this.pop()
        const obj = this.top()
        if (!(obj instanceof PickleDict)) throw this.fail(`BUILD on ${describe(obj)} is not supported`)
        obj.state = state
        return
      }
      case OP.BINPERSID: return this.push(this.created(this.persistentLoad(this.pop())))
    }
    const name = REFUSED_OPS[op]
    throw this.fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}${name ? ` (${name})` : ''}`)
  }

  // --- globals and calls

  private global(module: string, name: string): PickleGlobal {
    const type = lookupGlobal(module, name)
    if (!type) {
      const q = `${module}.${name}`
      throw this.fail(
        `refuses to load global ${q.length <= 200 && /^[\x20-\x7e]*$/.test(q) ? `'${q}'` : show(q, 200)}`,
        'a weights file should only rebuild tensors; this one references other Python code and may be malicious, ' +
          'so use model.safetensors from a trusted source',
      )
    }
    return this.created(new PickleGlobal(module, name, type))
  }

  /** REDUCE: applies an allow-listed callable (implemented here) to its argument tuple. */
  private reduce(fn: PickleValue, args: PickleValue): PickleValue {
    if (!(fn instanceof PickleGlobal)) throw this.fail(`REDUCE on ${describe(fn)}, not a callable`)
    if (!(args instanceof PickleTuple)) throw this.fail(`REDUCE arguments are ${describe(args)}, not a tuple`)
    const a = args.items
    const arity = (min: number, max: number): void => {
      if (a.length < min || a.length > max) {
        throw this.fail(`${fn.qualname} takes ${min === max ? min : `${min}-${max}`} arguments, got ${a.length}`)
      }
    }
    switch (fn.type.kind) {
      case 'OrderedDict':
        if (a.length !== 0) throw this.fail('collections.OrderedDict with arguments is not supported')
        return this.newDict()
      case 'rebuild_tensor': // (storage, storage_offset, size, stride)
        arity(4, 4)
        return this.tensor(a[0], a[1], a[2], a[3])
      case 'rebuild_tensor_v2': // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        arity(6, 7)
        return this.tensor(a[0], a[1], a[2], a[3])
      case 'rebuild_tensor_v3': { // (..., backward_hooks, dtype[, metadata])
        arity(7, 8)
        const dtype = a[6]
        if (!(dtype instanceof PickleGlobal) || dtype.type.kind !== 'dtype') {
          throw this.fail(`_rebuild_tensor_v3 dtype is ${describe(dtype)}, not a torch dtype`)
        }
        return this.tensor(a[0], a[1], a[2], a[3], dtype.type)
      }
      case 'rebuild_parameter': // (data, requires_grad, backward_hooks)
        arity(3, 3)
        return this.parameterData(fn, a[0])
      case 'rebuild_parameter_with_state': // (data, requires_grad, backward_hooks, state)
        arity(4, 4)
        return this.parameterData(fn, a[0])
      case 'storage':
      case 'dtype':
        throw this.fail(`${fn.qualname} cannot be called`)
    }
  }

  /** A Parameter is its data tensor for our purposes. */
  private parameterData(fn: PickleGlobal, data: PickleValue): TorchTensor {
    if (!(data instanceof TorchTensor)) throw this.fail(`${fn.qualname} of ${describe(data)}, not a tensor`)
    return data
  }

  private tensor(storage: PickleValue, offset: PickleValue, size: PickleValue, stride: PickleValue, dtype?: TorchDType): TorchTensor {
    if (!(storage instanceof TorchStorage)) throw this.fail(`tensor storage is ${describe(storage)}, not a storage`)
    const shape = this.intTuple(size, 'tensor size')
    const strides = this.intTuple(stride, 'tensor stride')
    if (strides.length !== shape.length) {
      throw this.fail(`tensor stride ${show(strides)} does not match its size ${show(shape)}`)
    }
    if (shape.length > MAX_RANK) throw this.fail(`tensor has ${shape.length} dimensions, more than ${MAX_RANK}`)
    const t = dtype ?? storage.dtype
    return this.created(new TorchTensor(storage, { dtype: t.dtype, itemSize: t.itemSize }, this.int(offset, 'storage offset'), shape, strides))
  }

  /** BINPERSID: ('storage', storage type, key, location, numel) -> TorchStorage. */
  private persistentLoad(pid: PickleValue): TorchStorage {
    const items = pid instanceof PickleTuple ? pid.items : []
    const [tag, type, key, location, numel] = items
    if (items.length !== 5 || tag !== 'storage') throw this.fail(`unsupported persistent id ${describe(pid)}`)
    if (!(type instanceof PickleGlobal) || type.type.kind !== 'storage') {
      throw this.fail(`persistent id names ${describe(type)}, not a storage type`)
    }
    if (typeof key !== 'string' || typeof location !== 'string') throw this.fail('persistent id key/location are not strings')
    return new TorchStorage(type.qualname, { dtype: type.type.dtype, itemSize: type.type.itemSize }, key, location, this.int(numel, 'storage size'))
  }

  // --- value checks

  private int(v: PickleValue, what: string): number {
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v
    throw this.fail(`${what} is ${describe(v)}, not a non-negative integer`)
  }

  private intTuple(v: PickleValue, what: string): number[] {
    if (!(v instanceof PickleTuple)) throw this.fail(`${what} is ${describe(v)}, not a tuple`)
    if (v.items.length > MAX_RANK) throw this.fail(`${what} has ${v.items.length} dimensions, more than ${MAX_RANK}`)
    return v.items.map((x) => this.int(x, what))
  }

  private list(v: PickleValue): PickleValue[] {
    if (!Array.isArray(v)) throw this.fail(`APPEND to ${describe(v)}, not a list`)
    return v
  }

  private dict(v: PickleValue): PickleDict {
    if (!(v instanceof PickleDict)) throw this.fail(`SETITEM on ${describe(v)}, not a dict`)
    return v
  }

  private setItems(d: PickleDict, items: PickleValue[]): void {
    if (items.length % 2 !== 0) throw this.fail('odd number of items for a dict')
    this.grow('dict', d.map.size, items.length / 2)
    for (let i = 0; i < items.length; i += 2) {
      const k = items[i]
      if (k !== null && typeof k === 'object') throw this.fail(`unsupported dict key ${describe(k)}`)
      d.map.set(k, items[i + 1])
    }
  }

  // --- growth caps

  /**
   * Before `n` items are added to a `kind` holding `have`: refuses a container over MAX_CONTAINER_ITEMS
   * and a pickle over its element budget.
   */
  private grow(kind: string, have: number, n: number): void {
    if (have + n > this.maxItems) {
      throw this.fail(`${kind} has more than ${this.maxItems} items`, 'no state dict is that large; the pickle is corrupt or hostile')
    }
    this.elementsLeft -= n
    if (this.elementsLeft < 0) {
      throw this.fail(
        `pickle adds more than ${this.maxElements} items to containers (at most one per byte, and ${MAX_PICKLE_ELEMENTS})`,
        'no state dict is that large; the pickle is corrupt or hostile',
      )
    }
  }

  /** Counts `units` new objects against the pickle's object budget; returns `v`. */
  private created<T>(v: T, units = 1): T {
    this.objectsLeft -= units
    if (this.objectsLeft < 0) {
      throw this.fail(
        `pickle creates more than ${this.maxObjects} objects (at most one per byte, and ${MAX_PICKLE_OBJECTS})`,
        'no state dict is that large; the pickle is corrupt or hostile',
      )
    }
    return v
  }

  private newDict(): PickleDict {
    this.created(null, 4)
    return new PickleDict()
  }

  private newTuple(items: PickleValue[]): PickleTuple {
    this.grow('tuple', 0, items.length)
    return this.created(new PickleTuple(items))
  }

  // --- stack and memo

  private push(v: PickleValue): void {
    if (this.stack.length >= MAX_PICKLE_STACK) throw this.fail('pickle stack too deep')
    this.stack.push(v)
  }

  private pop(): PickleValue {
    const floor = this.marks.length ? this.marks[this.marks.length - 1] : 0
    if (this.stack.length <= floor) throw this.fail('pickle stack underflow')
    return this.stack.pop() as PickleValue
  }

  private top(): PickleValue {
    const floor = this.marks.length ? this.marks[this.marks.length - 1] : 0
    if (this.stack.length <= floor) throw this.fail('pickle stack underflow')
    return this.stack[this.stack.length - 1]
  }

  private popN(n: number): PickleValue[] {
    const floor = this.marks.length ? this.marks[this.marks.length - 1] : 0
    if (this.stack.length - n < floor) throw this.fail('pickle stack underflow')
    return this.stack.splice(this.stack.length - n, n)
  }

  private popMark(): PickleValue[] {
    const at = this.marks.pop()
    if (at === undefined) throw this.fail('no MARK on the stack')
    return this.stack.splice(at)
  }

  private put(index: number): void {
    if (this.memo.size >= this.maxMemo && !this.memo.has(index)) {
      throw this.fail(`pickle memo has more than ${this.maxMemo} entries (at most one per byte, and ${MAX_PICKLE_MEMO})`)
    }
    this.memo.set(index, this.top())
  }

  private get(index: number): void {
    if (!this.memo.has(index)) throw this.fail(`memo entry ${index} is not defined`)
    this.push(this.memo.get(index) as PickleValue)
  }

  // --- reading bytes (every length is checked against what is left)

  /** Advances over `n` bytes and returns where they start. */
  private take(n: number): number {
    if (n > this.data.length - this.pos) throw this.fail('pickle ends in the middle of an opcode')
    const at = this.pos
    this.pos += n
    return at
  }

  private u8(): number {
    return this.data[this.take(1)]
  }

  private u32(): number {
    return this.view.getUint32(this.take(4), true)
  }

  /** A u64 length, as a number when it could fit in what is left (larger values fail in `length`). */
  private u64(): number {
    const x = this.view.getBigUint64(this.take(8), true)
    return x > BigInt(this.data.length) ? Infinity : Number(x)
  }

  private length(n: number): number {
    if (n > this.data.length - this.pos) throw this.fail(`length ${n} runs past the end of the pickle`)
    return n
  }

  private bytes(n: number): Uint8Array {
    const at = this.take(this.length(n))
    return this.data.subarray(at, at + n)
  }

  private str(n: number): string {
    const s = this.text.decode(this.bytes(n))
    return s.length > 1 ? this.created(s) : s // V8 shares empty and one-character strings
  }

  /** A GLOBAL argument: text up to the next newline (bounded). */
  private line(): string {
    const nl = this.data.subarray(this.pos, this.pos + MAX_LINE + 1).indexOf(0x0a)
    if (nl < 0) throw this.fail('GLOBAL name is not terminated')
    const end = this.pos + nl
    const s = this.text.decode(this.data.subarray(this.pos, end))
    this.pos = end + 1
    return s
  }

  /** LONG1/LONG4: little-endian two's complement; a number when safe, else a bigint. */
  private long(n: number): number | bigint {
    if (n > MAX_LONG_BYTES) throw this.fail(`integer of ${n} bytes is too large`)
    const b = this.bytes(n)
    let x = 0n
    for (let i = n - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[i])
    if (n > 0 && b[n - 1] & 0x80) x -= 1n << BigInt(8 * n)
    return x >= BigInt(Number.MIN_SAFE_INTEGER) && x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : this.created(x)
  }

  private fail(what: string, hint?: string): CheckpointError {
    return new CheckpointError({
      what: `${what} (${messageName(this.opts.entry)}, byte ${this.opPos})`,
      where: this.opts.file,
      hint: hint ?? 'data.pkl is not a torch.save state dict that refgpt can read; convert the checkpoint to safetensors',
    })
  }
}

/** A short description of a value for error messages. */
export function describe(v: PickleValue): string {
  if (v === null) return 'None'
  if (v instanceof PickleGlobal) return v.qualname
  if (v instanceof PickleTuple) return `a tuple of ${v.items.length}`
  if (v instanceof PickleDict) return 'a dict'
  if (v instanceof TorchStorage) return `a ${v.typeName}`
  if (v instanceof TorchTensor) return 'a tensor'
  if (v instanceof Uint8Array) return `${v.length} bytes`
  if (Array.isArray(v)) return `a list of ${v.length}`
  if (typeof v === 'string') return show(v, 40)
  return String(v)
}
