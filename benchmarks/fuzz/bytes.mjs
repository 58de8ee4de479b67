// Format-blind mutations of a byte string: bit flips, interesting bytes and integers, inserts,
// deletes, splices (from the same file or another seed), truncation and extension. Every function
// returns a new Uint8Array and never changes its input.

export const INTERESTING_8 = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x0a, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x3a, 0x2c, 0x2e, 0x30, 0x39]
/** 32-bit values that break length and offset checks (written little-endian). */
export const INTERESTING_32 = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x40000000, 1e8]
/** 64-bit values (BigInt) for u64 length fields. */
export const INTERESTING_64 = [0n, 1n, 7n, 8n, 0xffffffffn, 0x100000000n, 0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn, 2n ** 53n, 2n ** 53n + 1n, 2n ** 31n, 100000000n]

/** Joins byte arrays (a list of any length: no argument spreading). */
export function concatList(parts) {

  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}
export const concat = (...parts) => concatList(parts)

/** A position in [0, len]: uniform, or near the start or the end (where headers and trailers live). */
function position(r, len) {
  const w = r.int(3)
  if (w === 0 || len < 64) return r.int(len + 1)
  if (w === 1) return r.int(Math.min(len, 64) + 1)
  return len - r.int(Math.min(len, 64) + 1)
}

export function flipBits(r, d) {
  const out = d.slice()
  if (out.length === 0) return out
  const n = r.small(8)
  for (let i = 0; i < n; i++) out[r.int(out.length)] ^= 1 << r.int(8)
  return out
}

export function setBytes(r, d) {
  const out = d.slice()
  if (out.length === 0) return out
  const n = r.small(4)
  for (let i = 0; i < n; i++) out[position(r, out.length - 1)] = r.chance(0.7) ? r.pick(INTERESTING_8) : r.u32() & 0xff
  return out
}

export function setInt(r, d) {
  const out = d.slice()
  if (out.length < 8) return out
  const at = Math.min(position(r, out.length - 8), out.length - 8)
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength)
  const size = r.pick([2, 4, 4, 8])
  if (size === 2) dv.setUint16(at, r.pick(INTERESTING_32) & 0xffff, true)
  else if (size === 4) dv.setUint32(at, r.pick(INTERESTING_32) >>> 0, true)
  else dv.setBigUint64(at, r.pick(INTERESTING_64), true)
  return out
}

export function insertBytes(r, d) {
  const at = position(r, d.length)
  const n = r.small(64)
  const ins = r.chance(0.5) ? r.bytes(n) : new Uint8Array(n).fill(r.pick(INTERESTING_8))
  return concat(d.subarray(0, at), ins, d.subarray(at))
}

export function deleteRange(r, d) {
  if (d.length === 0) return d.slice()
  const at = position(r, d.length - 1)
  const n = Math.min(r.small(256), d.length - at)
  return concat(d.subarray(0, at), d.subarray(at + n))
}

/** Copies a range of the input over (or into) another place of it. */
export function duplicateRange(r, d) {
  if (d.length < 2) return d.slice()
  const from = r.int(d.length)
  const n = Math.min(r.small(512), d.length - from)
  const chunk = d.slice(from, from + n)
  const at = position(r, d.length)
  if (r.chance(0.5)) return concat(d.subarray(0, at), chunk, d.subarray(at))
  const out = d.slice()
  out.set(chunk.subarray(0, Math.max(0, out.length - at)), at)
  return out
}

/** Splices a chunk of another (seed) file in. */
export function spliceOther(r, d, other) {
  if (!other || other.length === 0) return duplicateRange(r, d)
  const from = r.int(other.length)
  const chunk = other.subarray(from, from + r.small(1024))
  const at = position(r, d.length)
  const cut = r.chance(0.5) ? chunk.length : 0
  return concat(d.subarray(0, at), chunk, d.subarray(Math.min(d.length, at + cut)))
}

export function truncate(r, d) {
  const at = r.chance(0.3) ? r.int(Math.min(d.length, 16) + 1) : position(r, d.length)
  return d.slice(0, at)
}

export function extend(r, d) {
  const n = r.pick([1, 7, 8, 64, 4096, r.small(1 << 16)])
  const tail = r.chance(0.5) ? new Uint8Array(n) : r.bytes(n)
  return concat(d, tail)
}

export const BYTE_MUTATORS = { flipBits, setBytes, setInt, insertBytes, deleteRange, duplicateRange, spliceOther, truncate, extend }
const NAMES = Object.keys(BYTE_MUTATORS)

/** One or a few random byte mutations; returns { data, tags }. */
export function mutateBytes(r, d, other, count = r.small(3)) {
  const tags = []
  for (let i = 0; i < count; i++) {
    const name = r.pick(NAMES)
    d = BYTE_MUTATORS[name](r, d, other)
    tags.push(`bytes.${name}`)
  }
  return { data: d, tags }
}
