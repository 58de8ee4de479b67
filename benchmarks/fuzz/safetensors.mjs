// Safetensors-aware mutations: [u64 header length][JSON header][data]. The header is edited as JSON
// (steered into tensor entries: dtype, shape, data_offsets; __metadata__; names), the length field is
// set to boundary values, the padding and the data are changed.

import { concat, mutateBytes } from './bytes.mjs'
import { BOUNDARY_NUMBERS, DUPS, RAW_ENTRIES, Raw, cached, mutateTree, stringify } from './json.mjs'

const enc = new TextEncoder()
const dec = new TextDecoder()

/** { header (object, key order kept), data } or null when the bytes are no longer a parsable file. */
export function parseSafetensors(d) {
  if (d.length < 8) return null
  const n = Number(new DataView(d.buffer, d.byteOffset, 8).getBigUint64(0, true))
  if (n > d.length - 8) return null
  try {
    const header = JSON.parse(dec.decode(d.subarray(8, 8 + n)))
    if (header === null || typeof header !== 'object' || Array.isArray(header)) return null
    return { header, data: d.subarray(8 + n) }
  } catch {
    return null
  }
}

/** The file bytes; `length` overrides the length field, `pad` the padding byte (undefined: none). */
export function buildSafetensors(header, data, { length, pad = 0x20 } = {}) {
  let text = enc.encode(stringify(header))
  if (pad !== undefined && text.length % 8) text = concat(text, new Uint8Array(8 - (text.length % 8)).fill(pad))
  const prefix = new Uint8Array(8)
  new DataView(prefix.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(length ?? text.length)), true)
  return concat(prefix, text, data)
}

const tensorNames = (h) => Object.keys(h).filter((k) => k !== '__metadata__' && h[k] && typeof h[k] === 'object')

/** Steers a JSON edit into one tensor entry (or its fields). */
function tensorPlace(r, h) {
  const names = tensorNames(h)
  if (!names.length) return null
  const t = h[r.pick(names)]
  if (!t || typeof t !== 'object') return null
  const field = r.pick(['dtype', 'shape', 'data_offsets', 'shape', 'data_offsets'])
  const v = t[field]
  if (Array.isArray(v) && v.length && r.chance(0.6)) return { parent: v, key: r.int(v.length) }
  return { parent: t, key: field }
}

const DTYPES = ['F64', 'I64', 'I32', 'I16', 'I8', 'U8', 'U16', 'U32', 'U64', 'BOOL', 'F8_E4M3', 'F8_E5M2', 'C64', 'f32', '', 'F32 ', 'F32', 'F16', 'BF16', null, 4, ['F32']]

export const ST_OPS = {
  header: (r, s) => {
    const m = mutateTree(r, s.header, { place: (rr, h) => tensorPlace(rr, h) })
    s.header = m.value
    return m.tags
  },
  offsets: (r, s) => {
    const names = tensorNames(s.header)
    if (!names.length) return []
    const t = s.header[r.pick(names)]
    const [b, e] = Array.isArray(t.data_offsets) ? t.data_offsets : [0, 0]
    const other = s.header[r.pick(names)].data_offsets ?? [0, 0]
    const n = s.data.length
    t.data_offsets = r.pick([[0, 0], [e, b], [b, n + 1], [b, 2 ** 53], [-1, e], [b, e - 1], [b + 1, e + 1], [1.5, e], other, [b, e + 1], ['0', e], [b], [b, e, 3], null,
      [n, n], [0, n], [2 ** 32, 2 ** 32 + (e - b)], [b, 2 ** 64], new Raw(`[${b}, 1e400]`), [b + 2, e + 2]])
    return ['st.offsets']
  },
  shape: (r, s) => {
    const names = tensorNames(s.header)
    if (!names.length) return []
    const t = s.header[r.pick(names)]
    const shape = Array.isArray(t.shape) ? t.shape : []
    const size = shape.reduce((a, x) => a * (typeof x === 'number' ? x : 1), 1)
    t.shape = r.pick([[], [0], [-1], [2 ** 31], [2 ** 53], [2 ** 32, 2 ** 32], [1e8, 1e8], [1.5], ['4'], [null], [...shape, 1], [...shape, 2], Array(64).fill(1), Array(1000).fill(1),
      [size], [size + 1], [size, 0], shape.slice(1), [2 ** 20, 2 ** 20, 2 ** 20], [-size], [2 ** 26, 2 ** 26], [size * 2 ** 32]])
    return ['st.shape']
  },
  dtype: (r, s) => {
    const names = tensorNames(s.header)
    if (!names.length) return []
    s.header[r.pick(names)].dtype = r.pick(DTYPES)
    return ['st.dtype']
  },
  lengthField: (r, s) => {
    const text = enc.encode(stringify(s.header))
    const n = Math.ceil(text.length / 8) * 8
    const file = 8 + n + s.data.length
    s.length = r.pick([0, 1, 2, 7, n - 1, n + 1, n - 8, file - 8, file - 7, file, 2 ** 31, 2 ** 32, 2 ** 53, 2n ** 63n, 2n ** 64n - 1n, 1e8, 100000001])
    return ['st.lengthField']
  },
  padding: (r, s) => {
    const w = r.int(4)
    if (w === 0) s.pad = 0
    else if (w === 1) s.pad = undefined
    else if (w === 2) s.pad = r.pick([0x09, 0x0a, 0x78, 0xff])
    else s.trailer = enc.encode(r.pick(['x', '}', '{}', '\u0000\u0000\u0000', ' '.repeat(4096)]))
    return ['st.padding']
  },
  metadata: (r, s) => {
    s.header.__metadata__ = r.pick([{ format: 1 }, [], 'pt', { a: { b: 1 } }, null, { format: 'x'.repeat(1 << 16) }, Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, 'v'])),
      { format: 'pt', total_size: 1 }, { '': '' }, { format: '\ud800' }, new Raw(`{"a":${'['.repeat(3500)}${']'.repeat(3500)}}`), 1])
    return ['st.metadata']
  },
  names: (r, s) => {
    const names = tensorNames(s.header)
    const src = names.length ? s.header[r.pick(names)] : { dtype: 'F32', shape: [0], data_offsets: [0, 0] }
    const name = r.pick(['', '../x', 'x'.repeat(100000), '__metadata__', '\u0000', '\ud800', 'transformer.h.0.attn.bias', ...names])
    if (r.chance(0.5) && names.includes(name)) (s.header[DUPS] ??= []).push([name, structuredClone(src)])
    else s.header[name] = structuredClone(src)
    return ['st.names']
  },
  data: (r, s) => {
    const w = r.int(4)
    if (w === 0) s.data = s.data.slice(0, r.int(s.data.length))
    else if (w === 1) s.data = concat(s.data, new Uint8Array(r.pick([1, 3, 8, 4096])))
    else if (w === 2) s.data = new Uint8Array(0)
    else {
      // NaN / Inf / subnormal patterns in the values
      const d = s.data.slice()
      const dv = new DataView(d.buffer)
      for (let i = 0; i + 4 <= d.length && i < 64; i += 4) dv.setUint32(i, r.pick([0x7fc00000, 0x7f800000, 0xff800000, 0x00000001, 0xffffffff]), true)
      s.data = d
    }
    return ['st.data']
  },
  manyTensors: (r, s) => {
    // n tensors that all alias the first 4 bytes, or n empty ones
    const n = r.pick([1000, 10000])
    const same = r.chance(0.5)
    s.header[RAW_ENTRIES] = cached(`st ${n} ${same}`, () =>
      Array.from({ length: n }, (_, i) => `"t${i}":{"dtype":"F32","shape":[${same ? 1 : 0}],"data_offsets":[0,${same ? 4 : 0}]}`).join(','),
    )
    return ['st.manyTensors']
  },
}
export const ST_OP_NAMES = [...Object.keys(ST_OPS), 'bytes']
const ST_WEIGHTS = [[8, 'header'], [5, 'offsets'], [5, 'shape'], [3, 'dtype'], [4, 'lengthField'], [2, 'padding'], [2, 'metadata'], [2, 'names'], [3, 'data'], [0.4, 'manyTensors'], [5, 'bytes']]

/** Mutates safetensors bytes; `other` is another seed for byte splices. Returns { data, tags }. */
export function mutateSafetensors(r, d, { other, force, count = r.small(2) } = {}) {
  const tags = []
  for (let i = 0; i < count; i++) {
    const name = force ?? r.weighted(ST_WEIGHTS)
    const s = name === 'bytes' ? null : parseSafetensors(d)
    if (!s) {
      const m = mutateBytes(r, d, other, 1)
      d = m.data
      tags.push(...m.tags)
      continue
    }
    try {
      const opTags = ST_OPS[name](r, s)
      if (s.trailer) {
        // text after the JSON, inside the span the length field covers
        const text = concat(enc.encode(stringify(s.header)), s.trailer)
        const prefix = new Uint8Array(8)
        new DataView(prefix.buffer).setBigUint64(0, BigInt(text.length), true)
        d = concat(prefix, text, s.data)
      } else d = buildSafetensors(s.header, s.data, { length: s.length, pad: 'pad' in s ? s.pad : 0x20 })
      tags.push(...opTags)
    } catch (e) {
      // a header an earlier edit made 3,500 levels deep is too deep to edit as a tree: edit its bytes
      if (!(e instanceof RangeError)) throw e
      const m = mutateBytes(r, d, other, 1)
      d = m.data
      tags.push(...m.tags)
    }
  }
  return { data: d, tags }
}

export { BOUNDARY_NUMBERS }
