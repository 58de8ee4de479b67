// Zip-aware mutations for torch.save archives: a zip is read into its entries, edited (names with ../
// and absolute paths, methods, CRCs, dropped or doubled entries, deflate bombs, data descriptors,
// ZIP64 records) and written again by `buildZip`, which records where every header field lies so that
// one field (a size, an offset, a count) can then be set to a boundary value.

import * as zlib from 'node:zlib'
import { concat, concatList, INTERESTING_32 } from './bytes.mjs'

const enc = new TextEncoder()

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let x = n
    for (let k = 0; k < 8; k++) x = x & 1 ? 0xedb88320 ^ (x >>> 1) : x >>> 1
    t[n] = x >>> 0
  }
  return t
})()
const crcCache = new WeakMap()
/** CRC-32 (zlib's when this Node has it); remembered per byte array, as seeds are zipped again and again. */
export function crc32(d) {
  let v = crcCache.get(d)
  if (v === undefined) crcCache.set(d, (v = zlib.crc32 ? zlib.crc32(d) >>> 0 : crc32js(d)))
  return v
}
function crc32js(d) {
  let crc = 0xffffffff
  for (let i = 0; i < d.length; i++) crc = CRC_TABLE[(crc ^ d[i]) & 0xff] ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

/** The entries of a (valid) zip: [{ name, data (uncompressed), method }], in central directory order. */
export function parseZip(d) {
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength)
  let eocd = -1
  for (let i = d.length - 22; i >= Math.max(0, d.length - 22 - 0xffff); i--) {
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i
      break
    }
  }
  if (eocd < 0) throw new Error('not a zip')
  let count = dv.getUint16(eocd + 10, true)
  let cdOffset = dv.getUint32(eocd + 16, true)
  if (cdOffset === 0xffffffff || count === 0xffff) {
    const loc = eocd - 20
    const z64 = Number(dv.getBigUint64(loc + 8, true))
    count = Number(dv.getBigUint64(z64 + 32, true))
    cdOffset = Number(dv.getBigUint64(z64 + 48, true))
  }
  const entries = []
  let p = cdOffset
  for (let i = 0; i < count; i++) {
    const method = dv.getUint16(p + 10, true)
    let compSize = dv.getUint32(p + 20, true)
    let size = dv.getUint32(p + 24, true)
    const nameLen = dv.getUint16(p + 28, true), extraLen = dv.getUint16(p + 30, true), commentLen = dv.getUint16(p + 32, true)
    let local = dv.getUint32(p + 42, true)
    const name = new TextDecoder().decode(d.subarray(p + 46, p + 46 + nameLen))
    // ZIP64 extra: the overflowed fields in order size, compressed size, local header offset
    let e = p + 46 + nameLen
    const eEnd = e + extraLen
    while (e + 4 <= eEnd) {
      const id = dv.getUint16(e, true), len = dv.getUint16(e + 2, true)
      if (id === 1) {
        let q = e + 4
        if (size === 0xffffffff) (size = Number(dv.getBigUint64(q, true))), (q += 8)
        if (compSize === 0xffffffff) (compSize = Number(dv.getBigUint64(q, true))), (q += 8)
        if (local === 0xffffffff) local = Number(dv.getBigUint64(q, true))
      }
      e += 4 + len
    }
    const dataStart = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true)
    const raw = d.slice(dataStart, dataStart + compSize)
    entries.push({ name, method, data: method === 8 ? new Uint8Array(zlib.inflateRawSync(raw)) : raw })
    p += 46 + nameLen + extraLen + commentLen
  }
  return entries
}

/**
 * Writes a zip. entries: [{ name (string or bytes), data, method (0 stored / 8 deflate), compressed?, crc?, localName?,
 * flags?, size? (declared), extra? }]; opts: { zip64, comment, align (64-byte data alignment like torch) }.
 * Returns { data, fields: [{ name, off, size }] } where fields are every header integer.
 */
export function buildZip(entries, opts = {}) {
  const parts = []
  const fields = []
  let pos = 0
  const push = (b) => {
    parts.push(b)
    pos += b.length
  }
  const header = (specs, label) => {
    // specs: [[fieldName, bytes, value]]
    let n = 0
    for (const [, size] of specs) n += size
    const b = new Uint8Array(n)
    const dv = new DataView(b.buffer)
    let o = 0
    for (const [name, size, value] of specs) {
      if (name) fields.push({ name: `${label}.${name}`, off: pos + o, size })
      if (size === 2) dv.setUint16(o, value, true)
      else if (size === 4) dv.setUint32(o, value >>> 0, true)
      else dv.setBigUint64(o, BigInt(value), true)
      o += size
    }
    push(b)
  }
  const z64 = opts.zip64 === true
  const central = []
  entries.forEach((e, i) => {
    const name = typeof e.name === 'string' ? enc.encode(e.name) : e.name
    const localName = e.localName === undefined ? name : typeof e.localName === 'string' ? enc.encode(e.localName) : e.localName
    const method = e.method ?? 0
    const body = e.compressed ?? (method === 8 ? new Uint8Array(zlib.deflateRawSync(e.data)) : e.data)
    const crc = e.crc ?? crc32(e.data)
    const size = e.size ?? e.data.length
    const flags = e.flags ?? 0
    const offset = pos
    let extra = e.extra ?? new Uint8Array(0)
    if (z64) {
      const x = new Uint8Array(20)
      const dv = new DataView(x.buffer)
      dv.setUint16(0, 1, true)
      dv.setUint16(2, 16, true)
      dv.setBigUint64(4, BigInt(size), true)
      dv.setBigUint64(12, BigInt(body.length), true)
      fields.push({ name: `local[${i}].zip64.size`, off: pos + 30 + localName.length + 4, size: 8 }, { name: `local[${i}].zip64.csize`, off: pos + 30 + localName.length + 12, size: 8 })
      extra = concat(x, extra)
    }
    if (opts.align) {
      // torch pads the local extra field so that data starts at a multiple of 64
      const pad = (64 - ((pos + 30 + localName.length + extra.length + 4) % 64)) % 64
      const x = new Uint8Array(4 + pad)
      new DataView(x.buffer).setUint16(0, 0x4246, true) // 'FB'
      new DataView(x.buffer).setUint16(2, pad, true)
      extra = concat(extra, x)
    }
    header([['sig', 4, 0x04034b50], ['version', 2, z64 ? 45 : 20], ['flags', 2, flags], ['method', 2, method], ['time', 2, 0], ['date', 2, 0x21],
      ['crc', 4, crc], ['csize', 4, z64 ? 0xffffffff : body.length], ['size', 4, z64 ? 0xffffffff : size], ['nameLen', 2, localName.length], ['extraLen', 2, extra.length]], `local[${i}]`)
    push(localName)
    push(extra)
    push(body)
    central.push({ name, method, crc, csize: body.length, size, flags, offset })
  })
  const cdStart = pos
  central.forEach((e, i) => {
    let extra = new Uint8Array(0)
    if (z64) {
      extra = new Uint8Array(28)
      const dv = new DataView(extra.buffer)
      dv.setUint16(0, 1, true)
      dv.setUint16(2, 24, true)
      dv.setBigUint64(4, BigInt(e.size), true)
      dv.setBigUint64(12, BigInt(e.csize), true)
      dv.setBigUint64(20, BigInt(e.offset), true)
      const at = pos + 46 + e.name.length
      fields.push({ name: `central[${i}].zip64.size`, off: at + 4, size: 8 }, { name: `central[${i}].zip64.csize`, off: at + 12, size: 8 }, { name: `central[${i}].zip64.offset`, off: at + 20, size: 8 })
    }
    header([['sig', 4, 0x02014b50], ['made', 2, z64 ? 45 : 20], ['version', 2, z64 ? 45 : 20], ['flags', 2, e.flags], ['method', 2, e.method], ['time', 2, 0], ['date', 2, 0x21],
      ['crc', 4, e.crc], ['csize', 4, z64 ? 0xffffffff : e.csize], ['size', 4, z64 ? 0xffffffff : e.size], ['nameLen', 2, e.name.length], ['extraLen', 2, extra.length],
      ['commentLen', 2, 0], ['disk', 2, 0], ['internal', 2, 0], ['external', 4, 0], ['offset', 4, z64 ? 0xffffffff : e.offset]], `central[${i}]`)
    push(e.name)
    push(extra)
  })
  const cdSize = pos - cdStart
  if (z64) {
    const eocd64 = pos
    header([['sig', 4, 0x06064b50], ['recordSize', 8, 44], ['made', 2, 45], ['version', 2, 45], ['disk', 4, 0], ['cdDisk', 4, 0],
      ['entriesOnDisk', 8, central.length], ['entries', 8, central.length], ['cdSize', 8, cdSize], ['cdOffset', 8, cdStart]], 'zip64eocd')
    header([['sig', 4, 0x07064b50], ['disk', 4, 0], ['eocd64Offset', 8, eocd64], ['disks', 4, 1]], 'zip64locator')
  }
  const comment = opts.comment ?? new Uint8Array(0)
  header([['sig', 4, 0x06054b50], ['disk', 2, 0], ['cdDisk', 2, 0], ['entriesOnDisk', 2, z64 ? 0xffff : central.length], ['entries', 2, z64 ? 0xffff : central.length],
    ['cdSize', 4, z64 ? 0xffffffff : cdSize], ['cdOffset', 4, z64 ? 0xffffffff : cdStart], ['commentLen', 2, comment.length]], 'eocd')
  push(comment)
  return { data: concatList(parts), fields }
}

/** Sets one recorded header field to a boundary value (or one related to the file). */
export function editField(r, zip, filter) {
  const fields = filter ? zip.fields.filter((f) => filter.test(f.name)) : zip.fields
  if (!fields.length) return { data: zip.data, tag: 'zip.field(none)' }
  const f = r.pick(fields)
  const out = zip.data.slice()
  const dv = new DataView(out.buffer)
  const old = f.size === 2 ? dv.getUint16(f.off, true) : f.size === 4 ? dv.getUint32(f.off, true) : Number(dv.getBigUint64(f.off, true))
  const other = r.pick(zip.fields).off
  const values = [0, 1, old + 1, old - 1, old * 2, out.length, out.length + 1, other, r.pick(INTERESTING_32), 0xffff, 0xffffffff, 2 ** 53, 2 ** 63]
  const v = r.pick(values)
  const max = f.size === 2 ? 0xffff : f.size === 4 ? 0xffffffff : Number.MAX_SAFE_INTEGER
  if (f.size === 2) dv.setUint16(f.off, Math.max(0, Math.min(max, v)) & 0xffff, true)
  else if (f.size === 4) dv.setUint32(f.off, Math.max(0, Math.min(max, v)) >>> 0, true)
  else dv.setBigUint64(f.off, v >= 2 ** 63 ? 0xffffffffffffffffn : BigInt(Math.max(0, Math.floor(v))), true)
  return { data: out, tag: `zip.field.${f.name.replace(/\[\d+\]/, '[]')}` }
}

// ---------------------------------------------------------------------------------------------------
// Entry-level mutations: (r, entries, ctx) -> entries (mutated copies); ctx.opts are buildZip options

const EVIL_NAMES = (prefix) => ['../../evil', '/etc/passwd', `/${prefix}/data.pkl`, `${prefix}/../${prefix}/data.pkl`, `${prefix}\\data.pkl`, `${prefix}/data/0/../1`,
  'a'.repeat(65535), '', `${prefix}/data.pkl\u0000x`, 'data.pkl', `other/data/0`, `${prefix}/data/`, `${prefix}//data.pkl`, `${prefix}/./data.pkl`, 'C:\\evil', `${prefix}/data/00`]

let bombCache
/** 64 MiB of zeros, deflated (about 64 kB), made once per process. */
function bomb() {
  bombCache ??= new Uint8Array(zlib.deflateRawSync(new Uint8Array(64 << 20), { level: 9 }))
  return bombCache
}

export const ZIP_OPS = {
  name: (r, es, ctx) => {
    const e = r.pick(es)
    const n = r.pick([...EVIL_NAMES(ctx.prefix), ...es.map((x) => x.name)])
    const w = r.int(3)
    if (w === 0) e.name = n
    else if (w === 1) e.localName = n // local and central names differ
    else (e.name = n), (e.localName = n)
    return es
  },
  method: (r, es) => {
    const e = r.pick(es)
    const w = r.int(4)
    if (w === 0) e.method = 8 // really deflated
    else if (w === 1) (e.method = 8), (e.compressed = e.data) // says deflate, is stored
    else if (w === 2) (e.method = 0), (e.compressed = new Uint8Array(zlib.deflateRawSync(e.data))) // says stored, is deflated
    else e.method = r.pick([1, 6, 9, 12, 14, 93, 99, 0xffff])
    return es
  },
  crc: (r, es) => {
    const e = r.pick(es)
    e.crc = r.pick([0, 0xffffffff, (crc32(e.data) ^ 1) >>> 0])
    return es
  },
  drop: (r, es) => {
    es.splice(r.int(es.length), 1)
    return es
  },
  duplicate: (r, es) => {
    const e = r.pick(es)
    const copy = { ...e, data: r.chance(0.5) ? e.data : e.data.slice(0, e.data.length >> 1) }
    es.splice(r.int(es.length + 1), 0, copy)
    return es
  },
  content: (r, es, ctx) => {
    // the small text records torch writes
    const which = r.pick(['byteorder', 'version', '.data/version', '.format_version', '.storage_alignment'])
    const text = r.pick(['big', 'little', 'LITTLE', '', 'little\n', '1', '3\n', '99', '-1', 'abc', '18446744073709551617', 'x'.repeat(100000)])
    const name = `${ctx.prefix}/${which}`
    const e = es.find((x) => x.name === name)
    if (e) e.data = enc.encode(text)
    else es.push({ name, data: enc.encode(text), method: 0 })
    return es
  },
  storage: (r, es) => {
    // a storage shorter or longer than its tensor needs
    const st = es.filter((x) => /\/data\/[^/]+$/.test(x.name))
    if (!st.length) return es
    const e = r.pick(st)
    const w = r.int(3)
    e.data = w === 0 ? e.data.slice(0, r.int(e.data.length)) : w === 1 ? concat(e.data, new Uint8Array(r.pick([1, 4, 1024]))) : new Uint8Array(0)
    return es
  },
  bomb: (r, es, ctx) => {
    const st = es.filter((x) => /\/data\/[^/]+$|data\.pkl$/.test(x.name))
    const e = st.length ? r.pick(st) : r.pick(es)
    e.method = 8
    e.compressed = bomb()
    e.crc = 0
    e.size = r.pick([64 << 20, e.data.length, 100, 0xffffffff])
    ctx.tags.push(`zip.bomb.size=${e.size === 64 << 20 ? 'true' : 'lie'}`)
    return es
  },
  dataDescriptor: (r, es) => {
    const e = r.pick(es)
    e.flags = r.pick([0x08, 0x01, 0x41, 0x800, 0xffff])
    return es
  },
  order: (r, es) => {
    for (let i = es.length - 1; i > 0; i--) {
      const j = r.int(i + 1)
      ;[es[i], es[j]] = [es[j], es[i]]
    }
    return es
  },
  manyEntries: (r, es, ctx) => {
    const n = r.pick([1000, 5000])
    for (let i = 0; i < n; i++) es.push({ name: `${ctx.prefix}/junk/${i}`, data: new Uint8Array(0), method: 0 })
    return es
  },
}
export const ZIP_OP_NAMES = Object.keys(ZIP_OPS)
const ZIP_WEIGHTS = [[5, 'name'], [4, 'method'], [3, 'crc'], [3, 'drop'], [2, 'duplicate'], [3, 'content'], [4, 'storage'], [1, 'bomb'], [2, 'dataDescriptor'], [1, 'order'], [0.4, 'manyEntries']]

/** Layout-level edits applied to the written bytes. */
export const LAYOUT_OPS = {
  field: (r, zip) => editField(r, zip),
  eocdComment: (r, zip) => {
    // a comment that holds a second EOCD signature, or a maximal one
    const fake = new Uint8Array([0x50, 0x4b, 0x05, 0x06, ...new Uint8Array(18)])
    const body = r.chance(0.5) ? fake : new Uint8Array(0xffff - 22)
    const out = zip.data.slice(0, zip.data.length - 2)
    const n = new Uint8Array([body.length & 0xff, body.length >> 8])
    return { data: concat(out, n, body), tag: 'zip.eocdComment' }
  },
  prefixGarbage: (r, zip) => ({ data: concat(r.bytes(r.pick([1, 64, 4096])), zip.data), tag: 'zip.prefixGarbage' }),
  suffixGarbage: (r, zip) => ({ data: concat(zip.data, r.bytes(r.pick([1, 22, 4096]))), tag: 'zip.suffixGarbage' }),
}
export const LAYOUT_OP_NAMES = Object.keys(LAYOUT_OPS)

/**
 * Mutates a torch zip given as its entries: entry edits (and a pickle edit done by the caller), then
 * the write (sometimes ZIP64, deflated entries, 64-byte alignment), then sometimes a layout edit.
 * Returns { data, tags }.
 */
export function mutateZip(r, entries, { prefix, force, forceLayout, count = r.small(2) } = {}) {
  let es = entries.map((e) => ({ ...e }))
  const tags = []
  const ctx = { prefix, tags }
  const entryOps = forceLayout ? 0 : force ? 1 : r.chance(0.7) ? count : 0
  for (let i = 0; i < entryOps && es.length; i++) {
    const name = force ?? r.weighted(ZIP_WEIGHTS)
    es = ZIP_OPS[name](r, es, ctx)
    tags.push(`zip.${name}`)
  }
  const opts = { zip64: r.chance(0.25), align: r.chance(0.6) }
  if (r.chance(0.15)) for (const e of es) if (e.method === undefined || e.method === 0) if (!e.compressed && r.chance(0.5)) e.method = 8
  if (opts.zip64) tags.push('zip.zip64')
  const zip = buildZip(es, opts)
  let data = zip.data
  if (forceLayout || (!force && (entryOps === 0 || r.chance(0.2)))) {
    const name = forceLayout ?? r.weighted([[6, 'field'], [1, 'eocdComment'], [1, 'prefixGarbage'], [1, 'suffixGarbage']])
    const m = LAYOUT_OPS[name](r, zip)
    data = m.data
    tags.push(m.tag)
  }
  return { data, tags }
}
