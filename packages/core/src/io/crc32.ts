// The table-driven CRC-32 (no Node built-in: a page's zip reader uses it; write.ts's crc32 prefers zlib's).

let crcTable: Int32Array | undefined

/** The table-driven CRC-32 (IEEE 802.3, as zip uses it), continuing from `crc`. */
export function crc32Table(data: Uint8Array, crc = 0): number {
  if (!crcTable) {
    crcTable = new Int32Array(256)
    for (let n = 0; n < 256; n++) {
      let c = n
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
      crcTable[n] = c
    }
  }
  let c = ~crc
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8)
  return (c ^ -1) >>> 0
}
