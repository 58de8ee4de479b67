// A minimal, read-only zip reader for torch.save archives (pytorch_model.bin).
//
// It reads the central directory (ZIP64 included: a 24 GB GPT-J checkpoint has entries beyond 4 GiB) and
// each entry's local header, so that a stored (method 0) entry can be read lazily at any offset straight
// from the file. Deflated (method 8) entries are inflated whole, up to a caller-given size limit, and
// checked against their CRC-32 (zlib.crc32, or a table where this Node lacks it); readWholeCached keeps
// them (up to INFLATE_CACHE_BYTES, freed when the file is closed) so that each is inflated once.
// Not supported: multi-disk archives, encryption, other compression methods.
//
// Layout reminder (all integers little-endian):
//   [local header 30 B + name + extra][data] ...  central directory  [zip64 EOCD][zip64 locator] EOCD
// The central directory is authoritative for sizes and offsets; values 0xFFFFFFFF (0xFFFF) mean "see the
// ZIP64 extra field (id 0x0001)", which lists, in order, only the fields that overflowed.

import { CheckpointError } from '../errors.js'
import type { RandomAccess } from './access.js'
import { crc32 as defaultCrc32, inflateRaw } from './platform.js'
import { messageName } from './safetensors.js'

const SIG_LOCAL = 0x04034b50
const SIG_CENTRAL = 0x02014b50
const SIG_EOCD = 0x06054b50
const SIG_ZIP64_EOCD = 0x06064b50
const SIG_ZIP64_LOCATOR = 0x07064b50

const EOCD_SIZE = 22
const ZIP64_LOCATOR_SIZE = 20
const ZIP64_EOCD_SIZE = 56
const CENTRAL_SIZE = 46
const LOCAL_SIZE = 30
const MAX_COMMENT = 0xffff
/** Bound on the central directory we are willing to read (a 24 GB torch zip has ~100 kB of it). */
const MAX_CENTRAL_DIRECTORY = 64 << 20
/**
 * Most bytes of inflated entries one archive keeps for reuse (least recently used dropped first). Matches
 * the largest compressed storage torch.ts inflates, so that any one storage stays cached while it is read.
 */
export const INFLATE_CACHE_BYTES = 1 << 30

let inflates = 0
/** How many entries have been inflated since the process started (tests check that caching works). */
export function inflateCount(): number {
  return inflates
}

export interface ZipOptions {
  /** CRC-32 implementation (tests pass the table-driven fallback; default: zlib.crc32 where available). */
  crc32?: (data: Uint8Array) => number
}

export interface ZipEntry {
  name: string
  /** 0 = stored, 8 = deflate. */
  method: number
  flags: number
  crc32: number
  compressedSize: number
  /** Uncompressed size. */
  size: number
  localHeaderOffset: number
  /** Absolute file offset of the entry's (possibly compressed) data. */
  dataOffset: number
}

export class ZipArchive {
  readonly file: RandomAccess
  readonly entries: Map<string, ZipEntry>
  private readonly crc32: (data: Uint8Array) => number
  /** Inflated entries kept by readWholeCached, least recently used first. */
  private readonly cache = new Map<string, Uint8Array>()
  private cachedBytes = 0

  constructor(file: RandomAccess, opts: ZipOptions = {}) {
    this.file = file
    this.crc32 = opts.crc32 ?? ((d) => defaultCrc32(d))
    const dir = readEndOfCentralDirectory(file)
    this.entries = readCentralDirectory(file, dir)
    file.onClose(() => this.clearCache())
  }

  /**
   * readWhole, keeping the result (up to INFLATE_CACHE_BYTES in all) until the file is closed, so that
   * tensors viewing one compressed storage inflate and CRC-check it once. Callers must not modify it.
   */
  readWholeCached(entry: ZipEntry, maxBytes: number, what: string): Uint8Array {
    const hit = this.cache.get(entry.name)
    if (hit) {
      this.cache.delete(entry.name) // most recently used goes last
      this.cache.set(entry.name, hit)
      return hit
    }
    const data = this.readWhole(entry, maxBytes, what)
    if (this.file.closed || data.length > INFLATE_CACHE_BYTES) return data
    for (const [name, old] of this.cache) {
      if (this.cachedBytes + data.length <= INFLATE_CACHE_BYTES) break
      this.cache.delete(name)
      this.cachedBytes -= old.length
    }
    this.cache.set(entry.name, data)
    this.cachedBytes += data.length
    return data
  }

  /** Drops the inflated entries kept by readWholeCached. */
  clearCache(): void {
    this.cache.clear()
    this.cachedBytes = 0
  }

  /**
   * The whole (inflated) content of `entry`, refused when larger than `maxBytes`.
   * `what` names the entry's role in error messages ("data.pkl", "tensor storage").
   */
  readWhole(entry: ZipEntry, maxBytes: number, what: string): Uint8Array {
    const where = `${this.file.path}: ${messageName(entry.name)}`
    if (entry.size > maxBytes) {
      throw new CheckpointError({
        what: `${what} is too large to read into memory`,
        where,
        expected: `at most ${maxBytes} bytes`,
        found: `${entry.size}`,
        hint: 'convert the checkpoint to safetensors',
      })
    }
    let data: Uint8Array
    if (entry.method === 0) {
      if (entry.compressedSize !== entry.size) {
        throw new CheckpointError({ what: 'stored zip entry has two different sizes', where, expected: `${entry.size}`, found: `${entry.compressedSize}` })
      }
      data = this.file.read(entry.dataOffset, entry.size)
    } else if (entry.method === 8) {
      // Deflate never expands data by more than a few bytes per 16 kB block: bound the compressed read too.
      const maxCompressed = Math.ceil(entry.size * 1.01) + 1024
      if (entry.compressedSize > maxCompressed) {
        throw new CheckpointError({ what: 'compressed size is implausible', where, expected: `at most ${maxCompressed} bytes`, found: `${entry.compressedSize}` })
      }
      data = inflate(this.file.read(entry.dataOffset, entry.compressedSize), entry.size, where)
    } else {
      throw new CheckpointError({
        what: `unsupported zip compression method ${entry.method}`,
        where,
        expected: '0 (stored) or 8 (deflate)',
        hint: 're-save the checkpoint with torch.save or convert it to safetensors',
      })
    }
    verifyCrc32(data, entry.crc32, where, this.crc32)
    return data
  }

  /** Fills `dst` with the bytes of a stored entry starting at byte `start` of the entry. */
  readRange(entry: ZipEntry, dst: Uint8Array, start: number): void {
    if (entry.method !== 0 || entry.compressedSize !== entry.size) {
      throw new CheckpointError({ what: 'compressed zip entry cannot be read in parts', where: `${this.file.path}: ${messageName(entry.name)}` })
    }
    if (!Number.isSafeInteger(start) || start < 0 || start + dst.length > entry.size) {
      throw new CheckpointError({
        what: 'read past the end of a zip entry',
        where: `${this.file.path}: ${messageName(entry.name)}`,
        expected: `a range inside ${entry.size} bytes`,
        found: `${dst.length} bytes at ${start}`,
      })
    }
    this.file.readInto(dst, entry.dataOffset + start)
  }
}

// ---------------------------------------------------------------------------------------------------

interface CentralDirectoryLocation {
  offset: number
  size: number
  count: number
  /** Where the central directory must end (the start of the (zip64) end records). */
  limit: number
}

function zipError(file: RandomAccess, what: string, extra: { expected?: string; found?: string } = {}): CheckpointError {
  return new CheckpointError({
    what,
    where: file.path,
    ...extra,
    hint: 'the file is truncated or not a zip archive; download it again',
  })
}

/** Finds the end-of-central-directory record (and its ZIP64 counterpart) by scanning the file's tail. */
function readEndOfCentralDirectory(file: RandomAccess): CentralDirectoryLocation {
  if (file.size < EOCD_SIZE) throw zipError(file, 'file too small to be a zip archive')
  const tailLen = Math.min(file.size, EOCD_SIZE + MAX_COMMENT)
  const tailStart = file.size - tailLen
  const tail = file.read(tailStart, tailLen)
  const tv = view(tail)
  let at = -1
  for (let p = tailLen - EOCD_SIZE; p >= 0; p--) {
    if (tv.getUint32(p, true) === SIG_EOCD && p + EOCD_SIZE + tv.getUint16(p + 20, true) <= tailLen) {
      at = p
      break
    }
  }
  if (at < 0) throw zipError(file, 'end of central directory not found')
  const eocdPos = tailStart + at
  const disk = tv.getUint16(at + 4, true)
  const cdDisk = tv.getUint16(at + 6, true)
  let count = tv.getUint16(at + 10, true)
  let size = tv.getUint32(at + 12, true)
  let offset = tv.getUint32(at + 16, true)
  let limit = eocdPos

  // A ZIP64 locator sits right before the EOCD record.
  if (eocdPos >= ZIP64_LOCATOR_SIZE) {
    const loc = view(file.read(eocdPos - ZIP64_LOCATOR_SIZE, ZIP64_LOCATOR_SIZE))
    if (loc.getUint32(0, true) === SIG_ZIP64_LOCATOR) {
      const z64Pos = u64(loc, 8, file, 'ZIP64 end record offset')
      if (z64Pos + ZIP64_EOCD_SIZE > eocdPos - ZIP64_LOCATOR_SIZE) {
        throw zipError(file, 'ZIP64 end record lies outside the file', { found: `offset ${z64Pos}` })
      }
      const z = view(file.read(z64Pos, ZIP64_EOCD_SIZE))
      if (z.getUint32(0, true) !== SIG_ZIP64_EOCD) throw zipError(file, 'ZIP64 end record signature is wrong')
      if (z.getUint32(16, true) !== 0 || z.getUint32(20, true) !== 0 || loc.getUint32(16, true) > 1) {
        throw zipError(file, 'multi-disk zip archives are not supported')
      }
      count = u64(z, 32, file, 'entry count')
      size = u64(z, 40, file, 'central directory size')
      offset = u64(z, 48, file, 'central directory offset')
      limit = z64Pos
    }
  }
  if (limit === eocdPos && (disk !== 0 || cdDisk !== 0)) throw zipError(file, 'multi-disk zip archives are not supported')
  if (offset + size > limit || size > MAX_CENTRAL_DIRECTORY || count > size / CENTRAL_SIZE) {
    throw zipError(file, 'central directory does not fit the file', {
      expected: `${count} entries within ${limit} bytes`,
      found: `${size} bytes at offset ${offset}`,
    })
  }
  return { offset, size, count, limit }
}

/** Parses the central directory and each entry's local header. */
function readCentralDirectory(file: RandomAccess, loc: CentralDirectoryLocation): Map<string, ZipEntry> {
  const cd = file.read(loc.offset, loc.size)
  const v = view(cd)
  const names = new TextDecoder('utf-8')
  const entries = new Map<string, ZipEntry>()
  let p = 0
  for (let i = 0; i < loc.count; i++) {
    if (p + CENTRAL_SIZE > cd.length || v.getUint32(p, true) !== SIG_CENTRAL) {
      throw zipError(file, `central directory entry ${i} is malformed`)
    }
    const flags = v.getUint16(p + 8, true)
    const method = v.getUint16(p + 10, true)
    const crc32 = v.getUint32(p + 16, true)
    let compressedSize = v.getUint32(p + 20, true)
    let size = v.getUint32(p + 24, true)
    const nameLen = v.getUint16(p + 28, true)
    const extraLen = v.getUint16(p + 30, true)
    const commentLen = v.getUint16(p + 32, true)
    let localHeaderOffset = v.getUint32(p + 42, true)
    const end = p + CENTRAL_SIZE + nameLen + extraLen + commentLen
    if (end > cd.length) throw zipError(file, `central directory entry ${i} is malformed`)
    const name = names.decode(cd.subarray(p + CENTRAL_SIZE, p + CENTRAL_SIZE + nameLen))

    // ZIP64 extra field: replaces, in this order, the fields stored as 0xFFFFFFFF.
    if (size === 0xffffffff || compressedSize === 0xffffffff || localHeaderOffset === 0xffffffff) {
      const extra = findExtraField(v, p + CENTRAL_SIZE + nameLen, extraLen, 0x0001)
      if (!extra) throw zipError(file, `zip entry ${messageName(name)} lacks its ZIP64 extra field`)
      let q = extra.start
      const take = (what: string): number => {
        if (q + 8 > extra.end) throw zipError(file, `zip entry ${messageName(name)} has a short ZIP64 extra field`)
        const x = u64(v, q, file, what)
        q += 8
        return x
      }
      if (size === 0xffffffff) size = take('entry size')
      if (compressedSize === 0xffffffff) compressedSize = take('entry compressed size')
      if (localHeaderOffset === 0xffffffff) localHeaderOffset = take('local header offset')
    }
    if (flags & 1) throw zipError(file, `zip entry ${messageName(name)} is encrypted`)
    if (entries.has(name)) throw zipError(file, `zip entry ${messageName(name)} appears twice`)
    const dataOffset = readLocalHeader(file, name, localHeaderOffset, compressedSize, loc.offset)
    entries.set(name, { name, method, flags, crc32, compressedSize, size, localHeaderOffset, dataOffset })
    p = end
  }
  return entries
}

/** Checks an entry's local header and returns the offset of its data (which must end before `limit`). */
function readLocalHeader(file: RandomAccess, name: string, offset: number, compressedSize: number, limit: number): number {
  if (offset + LOCAL_SIZE > limit) throw zipError(file, `zip entry ${messageName(name)} has its local header outside the file`)
  const h = view(file.read(offset, LOCAL_SIZE))
  if (h.getUint32(0, true) !== SIG_LOCAL) throw zipError(file, `zip entry ${messageName(name)} has a bad local header signature`)
  const dataOffset = offset + LOCAL_SIZE + h.getUint16(26, true) + h.getUint16(28, true)
  if (dataOffset + compressedSize > limit) {
    throw zipError(file, `zip entry ${messageName(name)} extends past the central directory`, {
      expected: `data ending by offset ${limit}`,
      found: `${compressedSize} bytes at offset ${dataOffset}`,
    })
  }
  return dataOffset
}

/** Locates extra field `id` within the `len` bytes at `start`. */
function findExtraField(v: DataView, start: number, len: number, id: number): { start: number; end: number } | undefined {
  let p = start
  const end = start + len
  while (p + 4 <= end) {
    const fieldId = v.getUint16(p, true)
    const fieldLen = v.getUint16(p + 2, true)
    if (p + 4 + fieldLen > end) return undefined
    if (fieldId === id) return { start: p + 4, end: p + 4 + fieldLen }
    p += 4 + fieldLen
  }
  return undefined
}

/** Inflates raw deflate data that must expand to exactly `size` bytes. */
function inflate(compressed: Uint8Array, size: number, where: string): Uint8Array {
  inflates++
  let out: Uint8Array
  try {
    out = inflateRaw(compressed, Math.max(size, 1))
  } catch (e) {
    const found = e instanceof Error ? e.message.slice(0, 200) : undefined
    throw new CheckpointError({ what: 'zip entry does not inflate', where, expected: `${size} bytes`, found }, { cause: e })
  }
  if (out.length !== size) {
    throw new CheckpointError({ what: 'zip entry inflates to the wrong size', where, expected: `${size} bytes`, found: `${out.length}` })
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length)
}

/**
 * Verifies the CRC-32 of a fully read entry, with `impl` (default: write.ts's crc32, which is zlib.crc32
 * where this Node has it, 20.15 and later, else the table-driven crc32Table).
 */
export function verifyCrc32(data: Uint8Array, expected: number, where: string, impl: (data: Uint8Array) => number = (d) => defaultCrc32(d)): void {
  const found = impl(data) >>> 0
  if (found !== expected >>> 0) {
    throw new CheckpointError({
      what: 'zip entry CRC-32 mismatch',
      where,
      expected: hex(expected >>> 0),
      found: hex(found),
      hint: 'the file is corrupt; download it again',
    })
  }
}

function hex(x: number): string {
  return '0x' + x.toString(16).padStart(8, '0')
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength)
}

/** A little-endian u64 that must be a safe integer (2^53 bytes is beyond any real file). */
function u64(v: DataView, at: number, file: RandomAccess, what: string): number {
  const x = v.getBigUint64(at, true)
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw zipError(file, `zip ${what} is too large`, { found: `${x}` })
  return Number(x)
}
