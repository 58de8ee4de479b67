// Writes a Hugging Face folder (config.json + model.safetensors, F32) of a real model's shape with
// seeded random weights, for load-time benchmarks: node benchmarks/make-checkpoint.mjs gpt-neo-1.3B /tmp/neo13
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { randomWeights } from '@refgpt/core'

const [shape, out, layers] = process.argv.slice(2)
if (!shape || !out) {
  console.error('usage: node benchmarks/make-checkpoint.mjs SHAPE OUT_DIR [LAYERS]')
  process.exit(2)
}
const { config, checkpoint } = randomWeights(shape, { layers: layers ? Number(layers) : undefined })
mkdirSync(out, { recursive: true })
writeFileSync(join(out, 'config.json'), JSON.stringify(config, null, 2))

// safetensors: u64 header length, JSON header {name: {dtype, shape, data_offsets}}, then the data
const header = { __metadata__: { format: 'pt' } }
let offset = 0
for (const [name, t] of checkpoint.tensors) {
  header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + 4 * t.size] }
  offset += 4 * t.size
}
let json = JSON.stringify(header)
json += ' '.repeat((8 - (json.length % 8)) % 8) // keep the data 8-byte aligned, as safetensors does
const fd = openSync(join(out, 'model.safetensors'), 'w')
const len = Buffer.alloc(8)
len.writeBigUInt64LE(BigInt(json.length))
writeSync(fd, len)
writeSync(fd, Buffer.from(json, 'utf8'))
for (const name of checkpoint.tensors.keys()) {
  const data = checkpoint.readF32(name)
  writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
}
closeSync(fd)
console.log(`${out}: ${checkpoint.tensors.size} tensors, ${(offset / 2 ** 30).toFixed(2)} GiB`)
