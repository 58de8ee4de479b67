// Pickle-opcode-aware mutations of a torch data.pkl: the stream is split into opcodes with their
// arguments, edited as a list (argument values, GLOBAL names, length fields, memo indices, deleted,
// repeated, swapped and inserted opcodes, deep nesting, huge counts) and joined again.

import { concat, concatList } from './bytes.mjs'
import { BOUNDARY_STRINGS, cached } from './json.mjs'

const enc = new TextEncoder()
const c = (ch) => ch.charCodeAt(0)

// Argument layout of every opcode of protocols 0..5 (pickletools): fixed bytes, a length prefix of
// 1/4/8 bytes followed by that many bytes, or one/two newline-terminated lines.
const ARG = new Map([
  [0x80, 'u1'], [c('K'), 'u1'], [c('h'), 'u1'], [c('q'), 'u1'], [0x82, 'u1'],
  [c('M'), 'u2'], [0x83, 'u2'],
  [c('J'), 'u4'], [c('j'), 'u4'], [c('r'), 'u4'], [0x84, 'u4'],
  [0x95, 'u8'], [c('G'), 'u8'],
  [0x8c, 'len1'], [c('C'), 'len1'], [c('U'), 'len1'], [0x8a, 'len1'],
  [c('X'), 'len4'], [c('B'), 'len4'], [c('T'), 'len4'], [0x8b, 'len4'],
  [0x8d, 'len8'], [0x8e, 'len8'], [0x96, 'len8'],
  [c('I'), 'line'], [c('L'), 'line'], [c('F'), 'line'], [c('S'), 'line'], [c('V'), 'line'], [c('P'), 'line'], [c('g'), 'line'], [c('p'), 'line'],
  [c('c'), 'line2'], [c('i'), 'line2'],
])
const NO_ARG = '(.012NQR]abdeltu})'.split('').map(c).concat([0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x93, 0x94, c('o'), 0x8f, 0x90, 0x91, 0x92, 0x97, 0x98])
export const OPCODES = [...ARG.keys(), ...NO_ARG]

export const OP = {
  MARK: c('('), STOP: c('.'), POP: c('0'), NONE: c('N'), BINPERSID: c('Q'), REDUCE: c('R'), EMPTY_LIST: c(']'), APPEND: c('a'), BUILD: c('b'),
  APPENDS: c('e'), TUPLE: c('t'), SETITEM: c('s'), SETITEMS: c('u'), EMPTY_DICT: c('}'), EMPTY_TUPLE: c(')'), TUPLE1: 0x85, GLOBAL: c('c'),
  BININT: c('J'), BININT1: c('K'), BININT2: c('M'), LONG1: 0x8a, BINUNICODE: c('X'), SHORT_BINUNICODE: 0x8c, BINUNICODE8: 0x8d, BINBYTES: c('B'),
  BINPUT: c('q'), LONG_BINPUT: c('r'), BINGET: c('h'), LONG_BINGET: c('j'), MEMOIZE: 0x94, PROTO: 0x80, FRAME: 0x95, LONG4: 0x8b, STACK_GLOBAL: 0x93,
}

/** Splits a pickle into [{ code, arg }]; what cannot be split (unknown opcode, cut argument) ends as one { code: -1, arg: rest }. */
export function tokenize(d) {
  const ops = []
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength)
  let i = 0
  while (i < d.length) {
    const code = d[i]
    const kind = ARG.get(code)
    let n = 0
    if (kind === undefined) {
      if (!NO_ARG.includes(code)) break
    } else if (kind === 'u1') n = 1
    else if (kind === 'u2') n = 2
    else if (kind === 'u4') n = 4
    else if (kind === 'u8') n = 8
    else if (kind === 'len1') n = i + 1 < d.length ? 1 + d[i + 1] : Infinity
    else if (kind === 'len4') n = i + 5 <= d.length ? 4 + dv.getUint32(i + 1, true) : Infinity
    else if (kind === 'len8') n = i + 9 <= d.length ? 8 + Number(dv.getBigUint64(i + 1, true)) : Infinity
    else {
      const lines = kind === 'line' ? 1 : 2
      let j = i + 1
      for (let k = 0; k < lines && j <= d.length; k++) {
        const nl = d.indexOf(0x0a, j)
        j = nl < 0 ? Infinity : nl + 1
      }
      n = j - i - 1
    }
    if (!(i + 1 + n <= d.length)) break
    ops.push({ code, arg: d.subarray(i + 1, i + 1 + n) })
    i += 1 + n
  }
  if (i < d.length) ops.push({ code: -1, arg: d.subarray(i) })
  return ops
}

export function serialize(ops) {
  const parts = []
  for (const o of ops) {
    if (o.code >= 0) parts.push(new Uint8Array([o.code]))
    parts.push(o.arg)
  }
  return concatList(parts)
}

// ---------------------------------------------------------------------------------------------------
// Encoders of single opcodes

const u = (n, bytes) => {
  const b = new Uint8Array(bytes)
  const dv = new DataView(b.buffer)
  if (bytes === 1) b[0] = n
  else if (bytes === 2) dv.setUint16(0, n, true)
  else if (bytes === 4) dv.setUint32(0, n >>> 0, true)
  else dv.setBigUint64(0, BigInt.asUintN(64, BigInt(n)), true)
  return b
}
const op = (code, arg = new Uint8Array(0)) => ({ code, arg })

/** An int in the opcode pickle would use (or LONG1 for anything outside int32). */
export function intOp(v) {
  if (typeof v === 'number' && Number.isInteger(v)) {
    if (v >= 0 && v < 256) return op(OP.BININT1, u(v, 1))
    if (v >= 0 && v < 65536) return op(OP.BININT2, u(v, 2))
    if (v >= -(2 ** 31) && v < 2 ** 31) return op(OP.BININT, u(v, 4))
  }
  // LONG1: little-endian two's complement, as short as possible
  let x = BigInt(v)
  const bytes = []
  for (;;) {
    bytes.push(Number(x & 0xffn))
    x >>= 8n
    const top = bytes[bytes.length - 1]
    if ((x === 0n && !(top & 0x80)) || (x === -1n && top & 0x80)) break
    if (bytes.length > 255) break
  }
  return op(OP.LONG1, concat(new Uint8Array([bytes.length]), new Uint8Array(bytes)))
}

export function strOp(s, short = false) {
  const b = enc.encode(s)
  if (short && b.length < 256) return op(OP.SHORT_BINUNICODE, concat(new Uint8Array([b.length]), b))
  return op(OP.BINUNICODE, concat(u(b.length, 4), b))
}

export const globalOp = (mod, name) => op(OP.GLOBAL, enc.encode(`${mod}\n${name}\n`))

// ---------------------------------------------------------------------------------------------------
// Mutations: (r, ops, ctx) -> ops (a new array)

const INT_VALUES = [0, 1, -1, 2, 8, 255, 256, 65535, 65536, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 32, 2 ** 32 + 1, 1e8, 2 ** 53, 2 ** 53 + 1, -(2 ** 53), 2n ** 63n - 1n, 2n ** 64n, -(2n ** 63n), 2n ** 200n]
const TORCH_STRINGS = ['storage', 'cpu', 'cuda:0', 'meta', 'mps', '0', '1', '99', '-1', 'data/0', '../0', '../../data.pkl', '/etc/passwd', '0/../0', 'transformer.wte.weight', 'lm_head.weight', 'version', 'byteorder', 'data.pkl']
const GLOBALS = [
  ['torch', 'FloatStorage'], ['torch', 'HalfStorage'], ['torch', 'BFloat16Storage'], ['torch', 'DoubleStorage'], ['torch', 'LongStorage'], ['torch', 'IntStorage'],
  ['torch', 'BoolStorage'], ['torch', 'ByteStorage'], ['torch', 'CharStorage'], ['torch', 'ComplexFloatStorage'], ['torch', 'QInt8Storage'], ['torch', 'float32'], ['torch', 'bfloat16'],
  ['torch.storage', 'UntypedStorage'], ['torch._utils', '_rebuild_tensor'], ['torch._utils', '_rebuild_tensor_v2'], ['torch._utils', '_rebuild_tensor_v3'],
  ['torch._utils', '_rebuild_parameter'], ['torch._utils', '_rebuild_parameter_with_state'], ['torch._utils', '_rebuild_qtensor'], ['torch._tensor', '_rebuild_from_type_v2'],
  ['collections', 'OrderedDict'], ['builtins', 'dict'], ['__builtin__', 'set'], ['builtins', 'eval'], ['os', 'system'], ['posix', 'system'], ['subprocess', 'Popen'],
  ['numpy.core.multiarray', '_reconstruct'], ['torch', 'Size'], ['', ''], ['torch', ''], ['collections\u0000', 'OrderedDict'],
]

const indicesOf = (ops, pred) => ops.map((o, i) => (pred(o) ? i : -1)).filter((i) => i >= 0)
const INT_CODES = new Set([OP.BININT, OP.BININT1, OP.BININT2, OP.LONG1, c('I'), c('L')])
const STR_CODES = new Set([OP.BINUNICODE, OP.SHORT_BINUNICODE, OP.BINUNICODE8, c('U'), c('T'), c('X'), c('V')])
const LEN_CODES = new Set([OP.BINUNICODE, OP.SHORT_BINUNICODE, OP.BINUNICODE8, c('U'), c('T'), OP.BINBYTES, c('C'), 0x8e, 0x96, OP.LONG1, OP.LONG4])
const MEMO_CODES = new Set([OP.BINPUT, OP.LONG_BINPUT, OP.BINGET, OP.LONG_BINGET, OP.MEMOIZE, c('g'), c('p')])

// (lists, not spread arguments: an insert may be 100,000 opcodes long)
function replaceAt(ops, i, ...with_) {
  return ops.slice(0, i).concat(with_, ops.slice(i + 1))
}
function insertAt(ops, i, ...with_) {
  return insertList(ops, i, with_)
}
function insertList(ops, i, list) {
  return ops.slice(0, i).concat(list, ops.slice(i))
}
/** A position just before the STOP (or anywhere). */
function spot(r, ops) {
  const stop = ops.findIndex((o) => o.code === OP.STOP)
  return r.chance(0.5) && stop >= 0 ? stop : r.int(ops.length + 1)
}

/** A random single opcode with a plausible argument. */
function randomOp(r) {
  const code = r.pick(OPCODES)
  const kind = ARG.get(code)
  if (kind === undefined) return op(code)
  if (kind === 'u1') return op(code, r.bytes(1))
  if (kind === 'u2') return op(code, r.bytes(2))
  if (kind === 'u4') return op(code, u(r.pick([0, 1, 2, 0xffffffff, 0x7fffffff]), 4))
  if (kind === 'u8') return op(code, r.bytes(8))
  const body = enc.encode(r.pick(['a', '', '0', 'storage', '\u00e9']))
  if (kind === 'len1') return op(code, concat(new Uint8Array([body.length]), body))
  if (kind === 'len4') return op(code, concat(u(body.length, 4), body))
  if (kind === 'len8') return op(code, concat(u(body.length, 8), body))
  if (kind === 'line') return op(code, enc.encode(r.pick(['0', '1', '-1', 'a', '99999999999999999999', "'x'", '']) + '\n'))
  return op(code, enc.encode(r.pick(['torch\nFloatStorage\n', 'os\nsystem\n', 'a\nb\n', '\n\n'])))
}

/** A long run of opcodes as one raw piece (made once per process: its bytes depend only on the arguments). */
const rawRun = (key, make) => ({ code: -1, arg: cached(`pickle ${key}`, () => serialize(make())) })

/** Deep nesting or long runs of opcodes, `n` of them, as one raw piece. */
function nestingOps(r, n) {
  const kind = r.pick(['lists', 'tuples', 'marks', 'dicts', 'tuple1'])
  return [rawRun(`nest ${kind} ${n}`, () => nestingList(kind, n))]
}
function nestingList(kind, n) {
  const run = (o, k) => Array(k).fill(o)
  if (kind === 'lists') return run(op(OP.EMPTY_LIST), n).concat(run(op(OP.APPEND), n - 1))
  if (kind === 'tuples') return run(op(OP.MARK), n).concat(run(op(OP.TUPLE), n))
  if (kind === 'marks') return run(op(OP.MARK), n)
  if (kind === 'dicts') return [op(OP.EMPTY_DICT)].concat(Array(n).fill(0).flatMap(() => [intOp(1), op(OP.EMPTY_DICT), op(OP.SETITEM)]))
  return [op(OP.EMPTY_TUPLE)].concat(run(op(OP.TUPLE1), n))
}

export const PICKLE_OPS = {
  intValue: (r, ops) => {
    const is = indicesOf(ops, (o) => INT_CODES.has(o.code))
    if (!is.length) return insertAt(ops, spot(r, ops), intOp(r.pick(INT_VALUES)))
    return replaceAt(ops, r.pick(is), intOp(r.pick(INT_VALUES)))
  },
  stringValue: (r, ops) => {
    const is = indicesOf(ops, (o) => STR_CODES.has(o.code))
    if (!is.length) return ops
    const s = r.chance(0.6) ? r.pick(TORCH_STRINGS) : r.pick(BOUNDARY_STRINGS)
    return replaceAt(ops, r.pick(is), strOp(s, r.chance(0.3)))
  },
  global: (r, ops) => {
    const is = indicesOf(ops, (o) => o.code === OP.GLOBAL)
    const [m, n] = r.pick(GLOBALS)
    if (r.chance(0.2) || !is.length) return insertAt(ops, spot(r, ops), globalOp(m, n))
    // sometimes as STACK_GLOBAL (protocol 4) with the two strings on the stack
    if (r.chance(0.2)) return replaceAt(ops, r.pick(is), strOp(m, true), strOp(n, true), op(OP.STACK_GLOBAL))
    return replaceAt(ops, r.pick(is), globalOp(m, n))
  },
  lengthField: (r, ops) => {
    const is = indicesOf(ops, (o) => LEN_CODES.has(o.code))
    if (!is.length) return ops
    const i = r.pick(is)
    const o = ops[i]
    const kind = ARG.get(o.code)
    const arg = o.arg.slice()
    const dv = new DataView(arg.buffer)
    const real = arg.length - (kind === 'len1' ? 1 : kind === 'len4' ? 4 : 8)
    const v = r.pick([0, real + 1, real - 1, 0xff, 0x7fffffff, 0xffffffff, 2 ** 40, 2 ** 62])
    if (kind === 'len1') arg[0] = v & 0xff
    else if (kind === 'len4') dv.setUint32(0, v >>> 0, true)
    else dv.setBigUint64(0, BigInt(v), true)
    return replaceAt(ops, i, { code: o.code, arg })
  },
  deleteOp: (r, ops) => (ops.length ? replaceAt(ops, r.int(ops.length)) : ops),
  duplicateOp: (r, ops) => {
    if (!ops.length) return ops
    const i = r.int(ops.length)
    return insertAt(ops, i, ...Array(r.small(4)).fill(ops[i]))
  },
  swapOps: (r, ops) => {
    if (ops.length < 2) return ops
    const out = ops.slice()
    const i = r.int(out.length), j = r.int(out.length)
    ;[out[i], out[j]] = [out[j], out[i]]
    return out
  },
  insertOp: (r, ops) => insertAt(ops, r.int(ops.length + 1), randomOp(r)),
  memo: (r, ops) => {
    const is = indicesOf(ops, (o) => MEMO_CODES.has(o.code))
    const idx = r.pick([0, 1, 255, 256, 0x7fffffff, 0xffffffff, 99999])
    const getOrPut = r.chance(0.5) ? (idx < 256 ? op(OP.BINGET, u(idx, 1)) : op(OP.LONG_BINGET, u(idx, 4))) : idx < 256 ? op(OP.BINPUT, u(idx, 1)) : op(OP.LONG_BINPUT, u(idx, 4))
    if (!is.length || r.chance(0.3)) return insertAt(ops, r.int(ops.length + 1), getOrPut)
    return replaceAt(ops, r.pick(is), getOrPut)
  },
  memoizeSpam: (r, ops) => {
    const n = r.pick([1000, 100000])
    return insertList(ops, spot(r, ops), [op(OP.NONE), rawRun(`memoize ${n}`, () => Array(n).fill(op(OP.MEMOIZE))), op(OP.POP)])
  },
  nesting: (r, ops) => insertList(ops, spot(r, ops), nestingOps(r, r.pick([3500, 3500, 100000]))),
  hugeCount: (r, ops) => {
    const big = r.pick([
      op(OP.BINUNICODE8, u(2 ** 40, 8)),
      op(OP.BINBYTES, u(0x7fffffff, 4)),
      op(OP.BINUNICODE, u(0xffffffff, 4)),
      op(OP.LONG4, u(0x7fffffff, 4)),
      op(OP.FRAME, u(2 ** 62, 8)),
      op(0x96, u(2 ** 33, 8)),
    ])
    // the huge length is followed by the rest of the stream (or a few bytes)
    return insertAt(ops, r.int(ops.length + 1), big)
  },
  manyItems: (r, ops) => {
    // after a SETITEM(S) the state dict is on top: add n more items to it
    const is = indicesOf(ops, (o) => o.code === OP.SETITEMS || o.code === OP.SETITEM)
    const at = is.length ? r.pick(is) + 1 : spot(r, ops)
    const n = r.pick([1000, 20000, 100000])
    const v = r.int(4)
    const run = rawRun(`items ${n} ${v}`, () => {
      const value = [[op(OP.NONE)], [intOp(1)], [op(OP.EMPTY_LIST)], [op(OP.BINGET, u(1, 1))]][v]
      const items = [op(OP.MARK)]
      for (let i = 0; i < n; i++) items.push(strOp(i % 3 ? `k${i}` : 'dup', true), ...value)
      items.push(op(OP.SETITEMS))
      return items
    })
    return insertList(ops, at, [run])
  },
  proto: (r, ops) => {
    const i = ops.findIndex((o) => o.code === OP.PROTO)
    const p = op(OP.PROTO, u(r.pick([0, 1, 3, 4, 5, 6, 255]), 1))
    if (i < 0) return insertAt(ops, 0, p)
    return r.chance(0.3) ? replaceAt(ops, i) : replaceAt(ops, i, p)
  },
  stop: (r, ops) => {
    const i = ops.findIndex((o) => o.code === OP.STOP)
    const w = r.int(3)
    if (w === 0 && i >= 0) return replaceAt(ops, i) // no STOP
    if (w === 1) return insertAt(ops, r.int(ops.length), op(OP.STOP)) // STOP early
    return [...ops, ...Array(r.small(8)).fill(0).map(() => randomOp(r))] // bytes after STOP
  },
  spliceOther: (r, ops, ctx) => {
    const other = ctx.other ?? ops
    if (!other.length) return ops
    const from = r.int(other.length)
    const chunk = other.slice(from, from + r.small(32))
    const at = r.int(ops.length + 1)
    return [...ops.slice(0, at), ...chunk, ...ops.slice(at + (r.chance(0.5) ? chunk.length : 0))]
  },
}
const PICKLE_WEIGHTS = [[8, 'intValue'], [6, 'stringValue'], [5, 'global'], [3, 'lengthField'], [5, 'deleteOp'], [3, 'duplicateOp'], [3, 'swapOps'], [4, 'insertOp'],
  [3, 'memo'], [0.4, 'memoizeSpam'], [1.2, 'nesting'], [1.5, 'hugeCount'], [0.6, 'manyItems'], [1.5, 'proto'], [2, 'stop'], [2, 'spliceOther']]
export const PICKLE_OP_NAMES = Object.keys(PICKLE_OPS)

/** Returns { data, tags }: `count` opcode-level mutations of a pickle. */
export function mutatePickle(r, pkl, { other, force, count = r.small(3) } = {}) {
  let ops = tokenize(pkl)
  const ctx = { other: other ? tokenize(other) : undefined }
  const tags = []
  for (let i = 0; i < count; i++) {
    const name = force ?? r.weighted(PICKLE_WEIGHTS)
    ops = PICKLE_OPS[name](r, ops, ctx)
    tags.push(`pickle.${name}`)
  }
  return { data: serialize(ops), tags }
}
