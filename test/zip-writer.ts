// A zip writer for tests: stored or deflated entries laid out as torch.save does (data 64-byte aligned by
// an extra field), optional ZIP64, optional placement for sparse files, and lying sizes / CRCs / raw bodies.

import * as fs from 'node:fs'
import * as zlib from 'node:zlib'
import { crc32 } from '../packages/core/src/io/write.js'

export interface ZipInput {
  name: string
  data: Uint8Array
  deflate?: boolean
  /** Where the local header goes (a sparse file); default: after the previous entry. */
  at?: number
  /** The uncompressed size written in the headers (default: data.length): a lying size. */
  size?: number
  /** `data` is already the compressed body of a deflated entry. */
  raw?: boolean
  /** The CRC-32 written in the headers (default: that of data; 0 for raw bodies). */
  crc?: number
}

export function writeZip(file: string, inputs: ZipInput[], opts: { zip64?: boolean } = {}): void {
  const fd = fs.openSync(file, 'w')
  const write = (b: Uint8Array, pos: number): void => void fs.writeSync(fd, b, 0, b.length, pos)
  const central: Buffer[] = []
  let pos = 0
  for (const e of inputs) {
    const name = Buffer.from(e.name)
    const body = e.deflate && !e.raw ? zlib.deflateRawSync(e.data) : Buffer.from(e.data)
    const size = e.size ?? e.data.length
    const crc = e.crc ?? (e.raw ? 0 : crc32(e.data))
    if (e.at !== undefined) pos = e.at
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(opts.zip64 ? 45 : 20, 4)
    local.writeUInt16LE(e.deflate ? 8 : 0, 8)
    local.writeUInt32LE(crc, 14)
    local.writeUInt32LE(opts.zip64 ? 0xffffffff : body.length, 18)
    local.writeUInt32LE(opts.zip64 ? 0xffffffff : size, 22)
    local.writeUInt16LE(name.length, 26)
    // torch pads the local extra field so that data is 64-byte aligned; do the same to exercise it
    const extraLen = (64 - ((pos + 30 + name.length + 4) % 64)) % 64 + 4
    local.writeUInt16LE(extraLen, 28)
    const extra = Buffer.alloc(extraLen)
    extra.writeUInt16LE(0x4246, 0) // "FB" padding field, as torch writes
    extra.writeUInt16LE(extraLen - 4, 2)
    write(Buffer.concat([local, name, extra, body]), pos)
    const c = Buffer.alloc(46)
    c.writeUInt32LE(0x02014b50, 0)
    c.writeUInt16LE(opts.zip64 ? 45 : 20, 4)
    c.writeUInt16LE(opts.zip64 ? 45 : 20, 6)
    c.writeUInt16LE(e.deflate ? 8 : 0, 10)
    c.writeUInt32LE(crc, 16)
    let z64 = Buffer.alloc(0)
    if (opts.zip64) {
      c.writeUInt32LE(0xffffffff, 20)
      c.writeUInt32LE(0xffffffff, 24)
      c.writeUInt32LE(0xffffffff, 42)
      z64 = Buffer.alloc(28)
      z64.writeUInt16LE(0x0001, 0)
      z64.writeUInt16LE(24, 2)
      z64.writeBigUInt64LE(BigInt(size), 4)
      z64.writeBigUInt64LE(BigInt(body.length), 12)
      z64.writeBigUInt64LE(BigInt(pos), 20)
    } else {
      c.writeUInt32LE(body.length, 20)
      c.writeUInt32LE(size, 24)
      c.writeUInt32LE(pos, 42)
    }
    c.writeUInt16LE(name.length, 28)
    c.writeUInt16LE(z64.length, 30)
    central.push(Buffer.concat([c, name, z64]))
    pos += 30 + name.length + extraLen + body.length
  }
  const cd = Buffer.concat(central)
  const cdOffset = pos
  write(cd, cdOffset)
  pos += cd.length
  const eocd = Buffer.alloc(22)
  eocd.writeUInt32LE(0x06054b50, 0)
  if (opts.zip64) {
    const z = Buffer.alloc(56)
    z.writeUInt32LE(0x06064b50, 0)
    z.writeBigUInt64LE(44n, 4)
    z.writeUInt16LE(45, 12)
    z.writeUInt16LE(45, 14)
    z.writeBigUInt64LE(BigInt(inputs.length), 24)
    z.writeBigUInt64LE(BigInt(inputs.length), 32)
    z.writeBigUInt64LE(BigInt(cd.length), 40)
    z.writeBigUInt64LE(BigInt(cdOffset), 48)
    const loc = Buffer.alloc(20)
    loc.writeUInt32LE(0x07064b50, 0)
    loc.writeBigUInt64LE(BigInt(pos), 8)
    loc.writeUInt32LE(1, 16)
    write(Buffer.concat([z, loc]), pos)
    pos += 76
    eocd.writeUInt16LE(0xffff, 8)
    eocd.writeUInt16LE(0xffff, 10)
    eocd.writeUInt32LE(0xffffffff, 12)
    eocd.writeUInt32LE(0xffffffff, 16)
  } else {
    eocd.writeUInt16LE(inputs.length, 8)
    eocd.writeUInt16LE(inputs.length, 10)
    eocd.writeUInt32LE(cd.length, 12)
    eocd.writeUInt32LE(cdOffset, 16)
  }
  write(eocd, pos)
  fs.closeSync(fd)
}
