// MessagePack for golden files: a small decoder (maps -> objects, bin -> Uint8Array) and an encoder
// that also writes what a valid file never holds: Raw bytes (deep nesting, headers claiming 2^32 - 1
// elements, extension types msgpackr interprets), duplicate map keys (obj[DUPS]), 64-bit integers.

import { concat, mutateBytes } from './bytes.mjs'
import { DUPS, Raw, cached, mutateTree } from './json.mjs'

const enc = new TextEncoder()
const dec = new TextDecoder()

export class RawBytes {
  constructor(bytes) {
    this.bytes = bytes
  }
}

export function decode(d) {
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength)
  let p = 0
  const str = (n) => dec.decode(d.subarray(p, (p += n)))
  const bin = (n) => d.slice(p, (p += n))
  const arr = (n) => Array.from({ length: n }, () => value())
  const map = (n) => {
    const o = {}
    for (let i = 0; i < n; i++) {
      const k = value()
      o[String(k)] = value()
    }
    return o
  }
  const value = () => {
    const b = d[p++]
    if (b <= 0x7f) return b
    if (b >= 0xe0) return b - 256
    if ((b & 0xf0) === 0x80) return map(b & 0x0f)
    if ((b & 0xf0) === 0x90) return arr(b & 0x0f)
    if ((b & 0xe0) === 0xa0) return str(b & 0x1f)
    const u8 = () => d[p++], u16 = () => ((p += 2), dv.getUint16(p - 2)), u32 = () => ((p += 4), dv.getUint32(p - 4))
    switch (b) {
      case 0xc0: return null
      case 0xc2: return false
      case 0xc3: return true
      case 0xc4: return bin(u8())
      case 0xc5: return bin(u16())
      case 0xc6: return bin(u32())
      case 0xca: return (p += 4), dv.getFloat32(p - 4)
      case 0xcb: return (p += 8), dv.getFloat64(p - 8)
      case 0xcc: return u8()
      case 0xcd: return u16()
      case 0xce: return u32()
      case 0xcf: return (p += 8), Number(dv.getBigUint64(p - 8))
      case 0xd0: return (p += 1), dv.getInt8(p - 1)
      case 0xd1: return (p += 2), dv.getInt16(p - 2)
      case 0xd2: return (p += 4), dv.getInt32(p - 4)
      case 0xd3: return (p += 8), Number(dv.getBigInt64(p - 8))
      case 0xd9: return str(u8())
      case 0xda: return str(u16())
      case 0xdb: return str(u32())
      case 0xdc: return arr(u16())
      case 0xdd: return arr(u32())
      case 0xde: return map(u16())
      case 0xdf: return map(u32())
      default: throw new Error(`msgpack byte 0x${b.toString(16)} not handled`)
    }
  }
  return value()
}

/**
 * A JSON Raw node (from the shared tree mutations) as a MessagePack value: flat texts (a 300,000-element
 * array, 100,000 keys, a 1 MB string, 1e400 -> Infinity) are parsed; deep nesting stays a string (the
 * `nasty` op writes deep MessagePack nesting itself).
 */
function fromJsonRaw(text) {
  if (/^(\[\[|\{"a":\{|\[\{"a":)/.test(text)) return text
  let v
  try {
    v = JSON.parse(text)
  } catch {
    return Number(text)
  }
  // big values are encoded once per process
  return text.length > 4096 ? new RawBytes(cached(`msgpack of ${text}`, () => encode(v).data)) : v
}

/** Encodes a value; returns { data, fields } where fields are the length/count headers written. */
export function encode(v) {
  // one growing buffer: a 300,000-element array must not cost 300,000 small allocations
  let buf = new Uint8Array(4096)
  let dv = new DataView(buf.buffer)
  let pos = 0
  const fields = []
  const room = (n) => {
    if (pos + n <= buf.length) return
    let size = buf.length * 2
    while (size < pos + n) size *= 2
    const next = new Uint8Array(size)
    next.set(buf.subarray(0, pos))
    buf = next
    dv = new DataView(buf.buffer)
  }
  const byte = (b) => {
    room(1)
    buf[pos++] = b
  }
  const push = (b) => {
    room(b.length)
    buf.set(b, pos)
    pos += b.length
  }
  const head = (kind, n, codes) => {
    // codes: [fixBase|null, fixMax, c8|null, c16, c32]
    const [fix, fixMax, c8, c16, c32] = codes
    if (fix !== null && n <= fixMax) return byte(fix | n)
    fields.push({ kind, off: pos + 1, size: c8 !== null && n < 256 ? 1 : n < 65536 ? 2 : 4 })
    room(5)
    if (c8 !== null && n < 256) return (buf[pos] = c8), (buf[pos + 1] = n), (pos += 2)
    if (n < 65536) return (buf[pos] = c16), dv.setUint16(pos + 1, n), (pos += 3)
    buf[pos] = c32
    dv.setUint32(pos + 1, n)
    pos += 5
  }
  const num = (x) => {
    room(9)
    if (typeof x === 'bigint') {
      if (x >= 0n) (buf[pos] = 0xcf), dv.setBigUint64(pos + 1, BigInt.asUintN(64, x))
      else (buf[pos] = 0xd3), dv.setBigInt64(pos + 1, BigInt.asIntN(64, x))
      return (pos += 9)
    }
    if (Number.isInteger(x) && !Object.is(x, -0)) {
      if (x >= 0 && x < 128) return (buf[pos++] = x)
      if (x < 0 && x >= -32) return (buf[pos++] = x & 0xff)
      if (x >= 0 && x < 2 ** 32) return (buf[pos] = 0xce), dv.setUint32(pos + 1, x), (pos += 5)
      if (x >= -(2 ** 31) && x < 0) return (buf[pos] = 0xd2), dv.setInt32(pos + 1, x), (pos += 5)
      if (Number.isSafeInteger(x)) {
        buf[pos] = x >= 0 ? 0xcf : 0xd3
        if (x >= 0) dv.setBigUint64(pos + 1, BigInt(x))
        else dv.setBigInt64(pos + 1, BigInt(x))
        return (pos += 9)
      }
    }
    buf[pos] = 0xcb
    dv.setFloat64(pos + 1, x)
    pos += 9
  }
  const value = (x) => {
    if (x instanceof RawBytes) return push(x.bytes)
    if (x === null || x === undefined) return byte(0xc0)
    if (x === true || x === false) return byte(x ? 0xc3 : 0xc2)
    if (typeof x === 'number' || typeof x === 'bigint') return num(x)
    if (typeof x === 'string') {
      const b = enc.encode(x)
      head('str', b.length, [0xa0, 31, 0xd9, 0xda, 0xdb])
      return push(b)
    }
    if (x instanceof Uint8Array) {
      head('bin', x.length, [null, 0, 0xc4, 0xc5, 0xc6])
      return push(x)
    }
    if (Array.isArray(x)) {
      head('array', x.length, [0x90, 15, null, 0xdc, 0xdd])
      for (const y of x) value(y)
      return
    }
    if (x instanceof Raw) return value(fromJsonRaw(x.text))
    const entries = Object.entries(x)
    if (x[DUPS]) entries.push(...x[DUPS])
    head('map', entries.length, [0x80, 15, null, 0xde, 0xdf])
    for (const [k, y] of entries) {
      value(k)
      value(y)
    }
  }
  value(v)
  return { data: buf.slice(0, pos), fields }
}

// ---------------------------------------------------------------------------------------------------
// Golden-file mutations

const u32be = (n) => {
  const b = new Uint8Array(4)
  new DataView(b.buffer).setUint32(0, n >>> 0)
  return b
}
/** Raw MessagePack that stresses a decoder. */
function nastyRaw(r) {
  const w = r.int(7)
  if (w === 0) return new RawBytes(concat(new Uint8Array(r.pick([3500, 100000])).fill(0x91), new Uint8Array([0xc0]))) // nested arrays
  if (w === 1) {
    const n = r.pick([3500, 100000])
    const unit = new Uint8Array([0x81, 0xa1, 0x61])
    const out = new Uint8Array(n * 3 + 1)
    for (let i = 0; i < n; i++) out.set(unit, i * 3)
    out[n * 3] = 0xc0
    return new RawBytes(out) // nested maps
  }
  if (w === 2) return new RawBytes(concat(new Uint8Array([r.pick([0xdd, 0xdf, 0xc6, 0xdb])]), u32be(r.pick([0xffffffff, 0x7fffffff, 0x10000000])))) // huge count, no body
  if (w === 3) {
    // an extension: msgpackr gives meaning to several types (records, bundled strings, typed arrays, errors...)
    const type = r.pick([-1, 0, 0x42, 0x62, 0x65, 0x69, 0x70, 0x72, 0x73, 0x74, 0x75, 0x78, 0x7f, r.int(128), 0xff & r.int(256)])
    const body = r.chance(0.5) ? r.bytes(r.pick([0, 1, 2, 4, 8, 12, 16, 100])) : concat(new Uint8Array([0x92, 0xa1, 0x61, 0x01]), r.bytes(4))
    const n = body.length
    const fixed = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[n]
    return new RawBytes(fixed ? concat(new Uint8Array([fixed, type & 0xff]), body) : concat(new Uint8Array([0xc7, n, type & 0xff]), body))
  }
  if (w === 4) return new RawBytes(new Uint8Array([r.pick([0xc1, 0xc7, 0xc8, 0xc9, 0xd4, 0xd9, 0xdc])])) // reserved byte or a cut header
  if (w === 5) return new RawBytes(concat(new Uint8Array([0xdb]), u32be(8), enc.encode('\u00e9\u00e9\u00e9').subarray(0, 5), new Uint8Array([0xff, 0xfe, 0xfd]))) // invalid UTF-8 string
  return new RawBytes(new Uint8Array([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])) // uint64 max
}

/** Plain objects only (not RawBytes, byte arrays or arrays). */
const isPlain = (v) => v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype
const tensorEntries = (g) => (isPlain(g) && isPlain(g.tensors) ? Object.values(g.tensors).filter(isPlain) : [])

export const GOLDEN_OPS = {
  tree: (r, g) => {
    const m = mutateTree(r, g, {
      place: (rr, root) => {
        const ts = tensorEntries(root)
        if (ts.length && rr.chance(0.5)) {
          const t = rr.pick(ts)
          return { parent: t, key: rr.pick(['dtype', 'shape', 'data']) }
        }
        if (isPlain(root) && isPlain(root.prompt) && rr.chance(0.4)) return { parent: root.prompt, key: rr.pick(['ids', 'text']) }
        return null
      },
    })
    return { value: m.value, tags: m.tags }
  },
  tensor: (r, g) => {
    const ts = tensorEntries(g)
    if (!ts.length) return { value: g, tags: [] }
    const t = r.pick(ts)
    const w = r.int(4)
    if (w === 0) t.shape = r.pick([[2 ** 31, 2 ** 31], [0], [], Array(9).fill(1), [-1], [1.5], [2 ** 53], [2 ** 30, 4], [2 ** 26, 2 ** 26, 2 ** 26], [1e20]])
    else if (w === 1) t.data = t.data instanceof Uint8Array ? t.data.slice(0, r.int(t.data.length)) : new Uint8Array(3)
    else if (w === 2) t.data = r.pick(['abc', [1, 2, 3], null, 0, new Uint8Array(0), { length: 4 }])
    else t.dtype = r.pick(['f16', 'F32', 'f64', '', null, 1])
    return { value: g, tags: ['golden.tensor'] }
  },
  nasty: (r, g) => {
    // a nasty raw value in place of a random field (or the whole file)
    if (!isPlain(g) || r.chance(0.1)) return { value: nastyRaw(r), tags: ['golden.nastyRoot'] }
    const targets = [g, g.prompt, g.config, g.tensors, ...tensorEntries(g)].filter(isPlain)
    const obj = r.pick(targets)
    const keys = Object.keys(obj)
    Object.defineProperty(obj, keys.length && r.chance(0.7) ? r.pick(keys) : 'extra', { value: nastyRaw(r), enumerable: true, writable: true, configurable: true })
    return { value: g, tags: ['golden.nasty'] }
  },
  numbers: (r, g) => {
    // values JSON cannot carry: NaN, Infinity, -0, 64-bit integers, floats for ids
    if (!isPlain(g)) return { value: g, tags: [] }
    const v = r.pick([NaN, Infinity, -Infinity, -0, 2n ** 64n - 1n, -(2n ** 63n), 2 ** 53 + 2, 1.5, 2n ** 63n])
    const where = r.pick(['version', 'ids', 'shape', 'config'])
    if (where === 'version') g.version = v
    else if (where === 'ids' && isPlain(g.prompt) && Array.isArray(g.prompt.ids)) g.prompt.ids[r.int(g.prompt.ids.length)] = v
    else if (where === 'shape') {
      const ts = tensorEntries(g).filter((t) => Array.isArray(t.shape) && t.shape.length)
      if (ts.length) r.pick(ts).shape[0] = v
    } else if (isPlain(g.config)) g.config.n_embd = v
    return { value: g, tags: ['golden.numbers'] }
  },
  duplicateKey: (r, g) => {
    if (!isPlain(g)) return { value: g, tags: [] }
    const k = r.pick(Object.keys(g).length ? Object.keys(g) : ['format'])
    ;(g[DUPS] ??= []).push([k, r.pick([null, 'x', 1, {}, g[k]])])
    return { value: g, tags: ['golden.duplicateKey'] }
  },
  manyTensors: (r, g) => {
    if (!isPlain(g)) return { value: g, tags: [] }
    const n = r.weighted([[3, 1000], [1, 50000]])
    g.tensors = new RawBytes(cached(`golden tensors ${n}`, () => {
      const t = { dtype: 'f32', shape: [1], data: new Uint8Array(4) }
      const ts = {}
      for (let i = 0; i < n; i++) ts[`t${i}`] = t
      return encode(ts).data
    }))
    return { value: g, tags: ['golden.manyTensors'] }
  },
}
export const GOLDEN_OP_NAMES = [...Object.keys(GOLDEN_OPS), 'header', 'bytes']
const GOLDEN_WEIGHTS = [[8, 'tree'], [6, 'tensor'], [3, 'nasty'], [3, 'numbers'], [1, 'duplicateKey'], [0.15, 'manyTensors'], [3, 'header'], [4, 'bytes']]

/** Mutates a golden file given as its decoded value. Returns { data, tags }. */
export function mutateGolden(r, seedValue, seedBytes, { force, count = r.small(2) } = {}) {
  let g = cloneGolden(seedValue)
  let tags = []
  const ops = Array.from({ length: count }, () => force ?? r.weighted(GOLDEN_WEIGHTS))
  for (const op of ops.filter((o) => GOLDEN_OPS[o])) {
    const m = GOLDEN_OPS[op](r, g)
    g = m.value
    tags.push(...m.tags)
  }
  const { data: bytes, fields } = encode(g)
  let data = bytes
  if (ops.includes('header') && fields.length) {
    // a length or count header set to a boundary value
    const f = r.pick(fields)
    data = data.slice()
    const dv = new DataView(data.buffer)
    const v = r.pick([0, 1, 0xff, 0xffff, 0xffffffff, 0x7fffffff])
    if (f.size === 1) data[f.off] = v & 0xff
    else if (f.size === 2) dv.setUint16(f.off, v & 0xffff)
    else dv.setUint32(f.off, v >>> 0)
    tags.push(`msgpack.header.${f.kind}`)
  }
  if (ops.includes('bytes')) {
    const m = mutateBytes(r, data, seedBytes, r.small(2))
    data = m.data
    tags.push(...m.tags)
  }
  return { data, tags }
}

/** A deep copy that keeps Uint8Array values (structuredClone does too, but keeps shared buffers apart). */
function cloneGolden(v) {
  return structuredClone(v)
}
