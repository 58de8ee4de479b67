// Checkpoint readers: safetensors (single, sharded, f16/bf16 variants), torch.save zip archives, the
// restricted unpickler, f16/bf16 conversions, and refusal of broken or hostile files (each generated in a
// fresh temp folder from the fixture bytes).

import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as zlib from 'node:zlib'
import { fileURLToPath } from 'node:url'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { CheckpointError, ConfigError, UsageError } from '../packages/core/src/errors.js'
import {
  addVariant,
  openCheckpoint,
  openSafetensors,
  openTorchBin,
  readJsonFile,
  type LoadedCheckpoint,
} from '../packages/core/src/io/index.js'
import { Pickle, statePickle, type TensorSpec } from './pickle-writer.js'
import { writeZip, type ZipInput } from './zip-writer.js'
import {
  bf16BitsToF32,
  bf16ToF32Array,
  bitsToF32,
  f16BitsToF32,
  f16ToF32Array,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
  f32ToBf16Array,
  f32ToBf16Bits,
  f32ToF16Array,
  f32ToF16Bits,
} from '../packages/core/src/io/dtype.js'

// ---------------------------------------------------------------------------------------------------
// Fixtures and helpers

const fixture = (rel: string): string => fileURLToPath(new URL(`./fixtures/models/${rel}`, import.meta.url))
const NEO = fixture('gpt-neo-tiny')
const SMALL_SHARD = fixture('gpt-neo-tiny/sharded/model-00004-of-00004.safetensors')

/** Runs `fn` with a fresh temp folder that is removed afterwards. */
function withTmp<T>(fn: (dir: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'refgpt-io-'))
  try {
    return fn(dir)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** Asserts that `fn` throws a one-line `cls` error that names `file` and matches `re`; returns the message. */
function throwsError(fn: () => unknown, file: string, re: RegExp, cls: Function = CheckpointError): string {
  let caught: unknown
  try {
    fn()
  } catch (e) {
    caught = e
  }
  assert.ok(caught !== undefined, `expected an error matching ${re}`)
  assert.instance(caught, cls)
  const msg = (caught as Error).message
  assert.not.match(msg, /\n/, 'message is one line')
  assert.ok(msg.includes(file), `message names ${file}: ${msg}`)
  assert.match(msg, re)
  if (process.env.SHOW_ERRORS) console.log(`  ${(caught as Error).constructor.name}: ${msg}`)
  return msg
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

function u16(bytes: Uint8Array): Uint16Array {
  const copy = bytes.slice()
  return new Uint16Array(copy.buffer, 0, copy.length / 2)
}

/** Reference f16/bf16 decoders written from the formats' definitions (arithmetic, no bit tricks). */
function refF16(h: number): number {
  const s = h & 0x8000 ? -1 : 1
  const e = (h >> 10) & 31
  const m = h & 1023
  if (e === 31) return m ? NaN : s * Infinity
  if (e === 0) return s * m * 2 ** -24
  return s * (1 + m / 1024) * 2 ** (e - 15)
}
function refBf16(b: number): number {
  const s = b & 0x8000 ? -1 : 1
  const e = (b >> 7) & 255
  const m = b & 127
  if (e === 255) return m ? NaN : s * Infinity
  if (e === 0) return s * m * 2 ** -133
  return s * (1 + m / 128) * 2 ** (e - 127)
}
function sameNumber(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b))
}

// --- safetensors files

interface StEntry { dtype: string; shape: number[]; data_offsets: [number, number] }
interface StFile { header: Record<string, StEntry | Record<string, string>>; data: Buffer }

function readSt(file: string): StFile {
  const buf = fs.readFileSync(file)
  const n = Number(buf.readBigUInt64LE(0))
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), data: buf.subarray(8 + n) }
}
function stBytes(st: StFile): Buffer {
  const h = Buffer.from(JSON.stringify(st.header))
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(h.length))
  return Buffer.concat([len, h, st.data])
}
/** Tensor entries of a parsed safetensors header, sorted by offset. */
function stEntries(st: StFile): Array<[string, StEntry]> {
  return (Object.entries(st.header).filter(([k]) => k !== '__metadata__') as Array<[string, StEntry]>)
    .sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0])
}

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer)
}

/** The tensors of the hand-made torch checkpoints below. */
const HAND_TENSORS: TensorSpec[] = [
  // a transposed [3, 2] view of the storage [0 .. 5]: rows (0, 3), (1, 4), (2, 5)
  { name: 'w.t', storage: 'FloatStorage', key: '0', numel: 6, offset: 0, shape: [3, 2], stride: [1, 3] },
  // a contiguous view at an offset, wrapped as a Parameter
  { name: 'w.tail', storage: 'FloatStorage', key: '0', numel: 6, offset: 2, shape: [2, 2], stride: [2, 1], parameter: true },
  { name: 'h', storage: 'HalfStorage', key: '1', numel: 4, offset: 1, shape: [3], stride: [1] },
  { name: 'mask', storage: 'BoolStorage', key: '2', numel: 4, offset: 0, shape: [2, 2], stride: [2, 1] },
]
const HALF_STORAGE = new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff]) // 1, -2, 2^-24, 65504

function handZipInputs(opts: { wrap?: string; deflateStorage?: boolean; at?: number } = {}): ZipInput[] {
  return [
    { name: 'archive/data.pkl', data: statePickle(HAND_TENSORS, opts.wrap), deflate: true },
    { name: 'archive/byteorder', data: Buffer.from('little') },
    { name: 'archive/data/0', data: f32Bytes([0, 1, 2, 3, 4, 5]), at: opts.at },
    { name: 'archive/data/1', data: new Uint8Array(HALF_STORAGE.buffer), deflate: opts.deflateStorage },
    { name: 'archive/data/2', data: new Uint8Array([1, 0, 1, 1]) },
    { name: 'archive/version', data: Buffer.from('3\n') },
  ]
}

function checkHandCheckpoint(ckpt: LoadedCheckpoint): void {
  assert.equal([...ckpt.tensors.keys()].sort(), ['h', 'w.t', 'w.tail'])
  assert.equal([...ckpt.readF32('w.t')], [0, 3, 1, 4, 2, 5])
  assert.equal([...ckpt.readF32('w.tail')], [2, 3, 4, 5])
  assert.equal(ckpt.tensors.get('h')?.dtype, 'F16')
  assert.equal([...ckpt.readF32('h')], [-2, 2 ** -24, 65504])
  assert.equal([...ckpt.readBytes('h')], [0x00, 0xc0, 0x01, 0x00, 0xff, 0x7b])
  assert.ok(ckpt.unsupported.has('mask'))
  throwsError(() => ckpt.readF32('mask'), ckpt.unsupported.get('mask')!.file, /tensor mask: unsupported dtype .*BOOL.*BoolStorage/)
}

// ---------------------------------------------------------------------------------------------------
// Good checkpoints

test('model.safetensors: names, dtypes, shapes, metadata', () => {
  const ckpt = openCheckpoint(NEO)
  try {
    assert.is(ckpt.format, 'safetensors')
    assert.is(ckpt.dir, NEO)
    assert.equal(ckpt.files, [path.join(NEO, 'model.safetensors')])
    assert.is(ckpt.tensors.size, 56) // 4 blocks x 13 + wte, wpe, ln_f.{weight,bias}; lm_head is tied and absent
    assert.not.ok(ckpt.tensors.has('lm_head.weight'))
    const shapes: Record<string, number[]> = {
      'transformer.wte.weight': [50257, 32],
      'transformer.wpe.weight': [128, 32],
      'transformer.h.0.attn.attention.q_proj.weight': [32, 32],
      'transformer.h.0.attn.attention.out_proj.bias': [32],
      'transformer.h.3.mlp.c_fc.weight': [128, 32],
      'transformer.h.3.mlp.c_proj.weight': [32, 128],
      'transformer.ln_f.bias': [32],
    }
    for (const [name, shape] of Object.entries(shapes)) {
      const info = ckpt.tensors.get(name)
      assert.ok(info, name)
      assert.equal(info?.shape, shape, name)
      assert.is(info?.size, shape.reduce((a, b) => a * b, 1))
      assert.is(info?.file, path.join(NEO, 'model.safetensors'))
    }
    for (const info of ckpt.tensors.values()) assert.is(info.dtype, 'F32')
    assert.equal(ckpt.metadata, { format: 'pt' })
    assert.is(ckpt.readBytes('transformer.ln_f.bias').length, 128)
  } finally {
    ckpt.close()
  }
})

test('every tensor is bitwise identical in model.safetensors, pytorch_model.bin and sharded/', () => {
  const st = openCheckpoint(NEO)
  const bin = openTorchBin(path.join(NEO, 'pytorch_model.bin'))
  const sharded = openCheckpoint(path.join(NEO, 'sharded'))
  try {
    assert.is(bin.format, 'pytorch-bin')
    const wte = st.readF32('transformer.wte.weight')
    assert.is(wte.length, 50257 * 32)
    assert.ok(sameBits(wte, bin.readF32('transformer.wte.weight')))
    assert.ok(sameBits(wte, sharded.readF32('transformer.wte.weight')))
    for (const name of st.tensors.keys()) {
      const a = st.readF32(name)
      assert.ok(sameBits(a, bin.readF32(name)), `bin ${name}`)
      assert.ok(sameBits(a, sharded.readF32(name)), `sharded ${name}`)
      assert.equal(bin.tensors.get(name)?.shape, st.tensors.get(name)?.shape)
    }
  } finally {
    st.close()
    bin.close()
    sharded.close()
  }
})

test('model.f16 / model.bf16 hold the f32 weights rounded to nearest even; widening is exact', () => {
  const st = openCheckpoint(NEO)
  const f16 = openCheckpoint(NEO, { variant: 'f16' })
  const bf16 = openCheckpoint(NEO, { variant: 'bf16' })
  try {
    for (const name of st.tensors.keys()) {
      const f32 = st.readF32(name)
      for (const [ckpt, dtype, round, ref] of [
        [f16, 'F16', f32ToF16Array, refF16],
        [bf16, 'BF16', f32ToBf16Array, refBf16],
      ] as const) {
        assert.is(ckpt.tensors.get(name)?.dtype, dtype)
        // narrowing: our rounding reproduces torch's stored bits exactly
        const stored = u16(ckpt.readBytes(name))
        assert.ok(Buffer.from(round(f32).buffer).equals(Buffer.from(stored.buffer)), `${dtype} bits of ${name}`)
        // widening: readF32 equals an arithmetic decoding of the stored bits, element by element
        const wide = ckpt.readF32(name)
        for (let i = 0; i < stored.length; i++) {
          if (!sameNumber(wide[i], ref(stored[i]))) assert.unreachable(`${dtype} ${name}[${i}]: ${wide[i]} vs ${ref(stored[i])}`)
        }
      }
    }
  } finally {
    st.close()
    f16.close()
    bf16.close()
  }
})

test('pytorch_model.bin: lm_head.weight aliases transformer.wte.weight', () => {
  const ckpt = openTorchBin(path.join(NEO, 'pytorch_model.bin'))
  try {
    assert.is(ckpt.tensors.size, 57)
    assert.equal(ckpt.tensors.get('lm_head.weight')?.shape, [50257, 32])
    assert.ok(sameBits(ckpt.readF32('lm_head.weight'), ckpt.readF32('transformer.wte.weight')))
  } finally {
    ckpt.close()
  }
})

test('sharded/: openCheckpoint picks the index and finds tensors of all 4 shards', () => {
  const dir = path.join(NEO, 'sharded')
  const ckpt = openCheckpoint(dir)
  try {
    assert.is(ckpt.format, 'safetensors-sharded')
    const shards = [1, 2, 3, 4].map((k) => path.join(dir, `model-0000${k}-of-00004.safetensors`))
    assert.equal(ckpt.files, shards)
    assert.is(ckpt.tensors.size, 56)
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'))
    for (const [name, shard] of Object.entries(index.weight_map)) {
      assert.is(ckpt.tensors.get(name)?.file, path.join(dir, shard as string), name)
    }
    for (const shard of shards) assert.ok([...ckpt.tensors.values()].some((t) => t.file === shard), shard)
    assert.is(ckpt.tensors.get('transformer.wte.weight')?.file, shards[0])
  } finally {
    ckpt.close()
  }
})

test('variant: bf16 reads model.bf16.safetensors; a missing variant is an error', () => {
  assert.is(addVariant('model.safetensors.index.json', 'bf16'), 'model.safetensors.index.bf16.json')
  assert.is(addVariant('pytorch_model.bin', 'fp16'), 'pytorch_model.fp16.bin')
  const ckpt = openCheckpoint(NEO, { variant: 'bf16' })
  try {
    assert.equal(ckpt.files, [path.join(NEO, 'model.bf16.safetensors')])
    assert.is(ckpt.tensors.get('transformer.wte.weight')?.dtype, 'BF16')
  } finally {
    ckpt.close()
  }
  throwsError(() => openCheckpoint(NEO, { variant: 'fp8' }), NEO, /no model weights found.*model\.fp8\.safetensors.*pytorch_model\.fp8\.bin.*leave the variant out/)
  throwsError(() => openCheckpoint(NEO, { variant: '../x' }), '../x', /invalid weight variant/, UsageError)
})

test('readF32 into a caller buffer; wrong length and reads after close are errors', () => {
  const file = path.join(NEO, 'model.safetensors')
  const ckpt = openSafetensors(file)
  const out = new Float32Array(32)
  assert.is(ckpt.readF32('transformer.ln_f.bias', out), out)
  assert.ok(sameBits(out, ckpt.readF32('transformer.ln_f.bias')))
  throwsError(() => ckpt.readF32('transformer.ln_f.bias', new Float32Array(31)), file, /wrong length/, UsageError)
  throwsError(() => ckpt.readF32('nope'), file, /no tensor named "nope"/)
  ckpt.close()
  ckpt.close() // idempotent
  throwsError(() => ckpt.readBytes('transformer.ln_f.bias'), NEO, /after close/)
})

test('torch zip: transposed view, offset Parameter, f16 storage, bool buffer, deflated data.pkl, state_dict wrapper', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'pytorch_model.bin')
    writeZip(file, handZipInputs({ wrap: 'state_dict', deflateStorage: true }))
    const ckpt = openCheckpoint(dir)
    try {
      assert.is(ckpt.format, 'pytorch-bin')
      checkHandCheckpoint(ckpt)
    } finally {
      ckpt.close()
    }
  })
})

test('torch zip: ZIP64 records, and a storage beyond 4 GiB (sparse file)', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'small64.bin')
    writeZip(file, handZipInputs(), { zip64: true })
    const small = openTorchBin(file)
    checkHandCheckpoint(small)
    small.close()

    const big = path.join(dir, 'big64.bin')
    writeZip(big, handZipInputs({ at: 2 ** 32 + 4096 }), { zip64: true })
    assert.ok(fs.statSync(big).size > 2 ** 32)
    const ckpt = openTorchBin(big)
    try {
      checkHandCheckpoint(ckpt)
    } finally {
      ckpt.close()
    }
  })
})

test('sharded pytorch_model.bin.index.json', () => {
  withTmp((dir) => {
    const [wt, wtail, h, mask] = HAND_TENSORS
    const storages = handZipInputs().filter((e) => e.name.startsWith('archive/data/'))
    writeZip(path.join(dir, 'pytorch_model-00001-of-00002.bin'), [
      { name: 'archive/data.pkl', data: statePickle([wt, wtail]) },
      storages[0],
    ])
    writeZip(path.join(dir, 'pytorch_model-00002-of-00002.bin'), [
      { name: 'shard2/data.pkl', data: statePickle([h, mask]) },
      ...storages.slice(1).map((e) => ({ ...e, name: e.name.replace('archive/', 'shard2/') })),
    ])
    const weightMap = { 'w.t': 'pytorch_model-00001-of-00002.bin', 'w.tail': 'pytorch_model-00001-of-00002.bin', h: 'pytorch_model-00002-of-00002.bin', mask: 'pytorch_model-00002-of-00002.bin' }
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }))
    const ckpt = openCheckpoint(dir)
    try {
      assert.is(ckpt.format, 'pytorch-bin-sharded')
      assert.is(ckpt.files.length, 2)
      checkHandCheckpoint(ckpt)
    } finally {
      ckpt.close()
    }
  })
})

test('every fixture model.safetensors opens and reads', () => {
  for (const name of ['gpt2-tiny', 'gpt-j-tiny', 'gpt-neo-odd', 'gpt-neo-tiny']) {
    const ckpt = openCheckpoint(fixture(name))
    try {
      assert.ok(ckpt.tensors.size > 0)
      assert.is(ckpt.unsupported.size, 0)
      for (const [tensor, info] of ckpt.tensors) assert.is(ckpt.readF32(tensor).length, info.size)
    } finally {
      ckpt.close()
    }
  }
})

test('dtype: f32 -> f16 special values and ties to even', () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800],
    [65504, 0x7bff], // max f16
    [65519, 0x7bff], [65520, 0x7c00], // halfway to 65536 rounds to even = Infinity
    [1e6, 0x7c00], [-1e6, 0xfc00], [Infinity, 0x7c00], [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // min normal
    [2 ** -24, 0x0001], // min subnormal
    [1023 * 2 ** -24, 0x03ff], // max subnormal
    [2 ** -25, 0x0000], // tie between 0 and 2^-24: even = 0
    [3 * 2 ** -26, 0x0001], // above the tie
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 units: even = 2
    [-(2 ** -24), 0x8001],
    [2 ** -30, 0x0000], [-(2 ** -30), 0x8000],
    [1 + 2 ** -11, 0x3c00], // tie: even (1.0)
    [1 + 3 * 2 ** -11, 0x3c02], // tie: even (1 + 2^-9)
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
    [1 / 3, 0x3555],
  ]
  for (const [x, bits] of cases) assert.is(f32ToF16Bits(x), bits, `f16(${x})`)
  const nan = f32ToF16Bits(NaN)
  assert.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0, 'NaN stays NaN')
  assert.ok((f32BitsToF16Bits(0x7f800001) & 0x3ff) !== 0, 'signalling NaN with a low payload stays NaN')
  assert.is(f32BitsToF16Bits(0xffc00000) & 0x8000, 0x8000, 'NaN keeps its sign')
})

test('dtype: f16 -> f32 special values, and every f16 value against an arithmetic decoder', () => {
  const cases: Array<[number, number]> = [
    [0x0000, 0], [0x8000, -0], [0x3c00, 1], [0xc000, -2], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24],
    [0x0400, 2 ** -14], [0x7bff, 65504], [0x7c00, Infinity], [0xfc00, -Infinity], [0x3555, 0.333251953125],
  ]
  for (const [bits, x] of cases) assert.ok(Object.is(f16BitsToF32(bits), x), `f16 0x${bits.toString(16)}`)
  assert.ok(Number.isNaN(f16BitsToF32(0x7e00)) && Number.isNaN(f16BitsToF32(0xfc01)))
  const all = new Uint16Array(65536).map((_, i) => i)
  const wide = new Float32Array(65536)
  f16ToF32Array(all, wide)
  for (let h = 0; h < 65536; h++) {
    if (!sameNumber(wide[h], refF16(h))) assert.unreachable(`f16 0x${h.toString(16)}: ${wide[h]} vs ${refF16(h)}`)
    // every non-NaN value survives a round trip
    if (!Number.isNaN(wide[h]) && f32ToF16Bits(wide[h]) !== h) assert.unreachable(`f16 round trip 0x${h.toString(16)}`)
  }
  // NaN payloads survive widening bit for bit
  assert.is(new Uint32Array(wide.buffer)[0x7e01], 0x7fc02000)
})

test('dtype: f32 <-> bf16 special values, ties to even, and every bf16 value', () => {
  const bits: Array<[number, number]> = [
    [0x00000000, 0x0000], [0x80000000, 0x8000], [0x3f800000, 0x3f80], // ±0, 1
    [0x3f808000, 0x3f80], // tie: even
    [0x3f818000, 0x3f82], // tie: even (up)
    [0x3f808001, 0x3f81], // above the tie
    [0x3f807fff, 0x3f80], // below the tie
    [0x7f7fffff, 0x7f80], // f32 max rounds to Infinity
    [0x7f7f0000, 0x7f7f], // bf16 max
    [0x7f800000, 0x7f80], [0xff800000, 0xff80], // ±Infinity
    [0x00010000, 0x0001], // smallest bf16 subnormal
    [0x00008000, 0x0000], // tie between 0 and it: even
    [0x00018000, 0x0002], // tie: even (up)
    [0x807fffff, 0x8080], // largest f32 subnormal rounds up to the smallest normal
  ]
  for (const [f, b] of bits) assert.is(f32BitsToBf16Bits(f), b, `bf16(0x${f.toString(16)})`)
  assert.is(f32BitsToBf16Bits(0x7fc00000), 0x7fc0)
  assert.is(f32BitsToBf16Bits(0x7f800001) & 0x7fc0, 0x7fc0, 'a NaN with a low payload stays a (quiet) NaN')
  assert.is(f32BitsToBf16Bits(0xffc00000), 0xffc0, 'NaN keeps its sign')
  assert.is(f32ToBf16Bits(1 / 3), 0x3eab)
  assert.is(f32ToBf16Bits(-0), 0x8000)
  assert.ok(Object.is(bf16BitsToF32(0x8000), -0))
  assert.is(bf16BitsToF32(0x0001), 2 ** -133)
  assert.is(bf16BitsToF32(0x7f7f), bitsToF32(0x7f7f0000))
  const all = new Uint16Array(65536).map((_, i) => i)
  const wide = new Float32Array(65536)
  bf16ToF32Array(all, wide)
  for (let b = 0; b < 65536; b++) {
    if (!sameNumber(wide[b], refBf16(b))) assert.unreachable(`bf16 0x${b.toString(16)}`)
    if (!Number.isNaN(wide[b]) && f32ToBf16Bits(wide[b]) !== b) assert.unreachable(`bf16 round trip 0x${b.toString(16)}`)
  }
})

// ---------------------------------------------------------------------------------------------------
// Bad input: each case builds its broken file in a fresh temp folder

test('missing folder', () => {
  withTmp((dir) => {
    const missing = path.join(dir, 'no-such-model')
    throwsError(() => openCheckpoint(missing), missing, /model folder not found/)
  })
})

test('folder without any weights file', () => {
  withTmp((dir) => {
    fs.copyFileSync(path.join(NEO, 'config.json'), path.join(dir, 'config.json'))
    const msg = throwsError(() => openCheckpoint(dir), dir, /no model weights found/)
    assert.match(msg, /model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin, pytorch_model\.bin\.index\.json/)
    assert.match(msg, /found config\.json/)
    assert.match(msg, /hint: /)
    fs.copyFileSync(SMALL_SHARD, path.join(dir, 'model.fp16.safetensors'))
    throwsError(() => openCheckpoint(dir), dir, /pass variant "fp16"/)
  })
})

test('safetensors truncated in the data region', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    const bytes = fs.readFileSync(SMALL_SHARD)
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 100))
    throwsError(() => openCheckpoint(dir), file, /tensor .*: tensor data lies past the end of the file.*truncated/)
  })
})

test('safetensors truncated inside the header', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    fs.writeFileSync(file, fs.readFileSync(SMALL_SHARD).subarray(0, 40))
    throwsError(() => openSafetensors(file), file, /header length exceeds the file/)
    fs.writeFileSync(file, fs.readFileSync(SMALL_SHARD).subarray(0, 5))
    throwsError(() => openSafetensors(file), file, /too small/)
  })
})

test('safetensors header length 2^50 fails fast without allocating it', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    const bytes = Buffer.from(fs.readFileSync(SMALL_SHARD))
    bytes.writeBigUInt64LE(2n ** 50n, 0)
    fs.writeFileSync(file, bytes)
    const t0 = performance.now()
    throwsError(() => openSafetensors(file), file, /header length exceeds the file.*found 1125899906842624/)
    assert.ok(performance.now() - t0 < 1000)
    bytes.writeBigUInt64LE(2n ** 64n - 1n, 0)
    fs.writeFileSync(file, bytes)
    throwsError(() => openSafetensors(file), file, /header length exceeds the file/)
  })
})

test('safetensors data offsets past the end of the file', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    const st = readSt(SMALL_SHARD)
    const [name, e] = stEntries(st)[0]
    e.data_offsets = [st.data.length - 4, st.data.length + 4 * (e.shape.reduce((a, b) => a * b, 1) - 1)]
    fs.writeFileSync(file, stBytes(st))
    throwsError(() => openSafetensors(file), `${file}: tensor ${name}`, /past the end of the file/)
  })
})

test('safetensors tensors with overlapping offsets', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    const st = readSt(SMALL_SHARD)
    const entries = stEntries(st)
    // two tensors of the same byte size: point the later one at the earlier one's bytes
    const [first, second] = entries.filter(([, e]) => e.data_offsets[1] - e.data_offsets[0] === 128)
    second[1].data_offsets = [...first[1].data_offsets]
    fs.writeFileSync(file, stBytes(st))
    throwsError(() => openSafetensors(file), file, /tensor data overlaps tensor/)
    // overlap is reported even when the moved tensor also leaves a hole before the one it overlaps
    const st3 = readSt(SMALL_SHARD)
    const byName = Object.fromEntries(stEntries(st3))
    byName['transformer.ln_f.bias'].data_offsets = [...byName['transformer.ln_f.weight'].data_offsets]
    fs.writeFileSync(file, stBytes(st3))
    throwsError(() => openSafetensors(file), file, /tensor data overlaps tensor/)
    // and a hole: shift a tensor forward inside the region
    const st2 = readSt(SMALL_SHARD)
    const last = stEntries(st2).at(-1)![1]
    st2.data = Buffer.concat([st2.data, Buffer.alloc(4)])
    last.data_offsets = [last.data_offsets[0] + 4, last.data_offsets[1] + 4]
    fs.writeFileSync(file, stBytes(st2))
    throwsError(() => openSafetensors(file), file, /hole in the data region/)
  })
})

test('safetensors dtypes F64 and I8: listed as unsupported, reading them is an error', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    const st = readSt(SMALL_SHARD)
    const entries = stEntries(st)
    const [name, e] = entries.find(([, x]) => x.shape.length === 1 && x.shape[0] === 32)!
    e.dtype = 'F64'
    e.shape = [16] // same 128 bytes
    fs.writeFileSync(file, stBytes(st))
    const ckpt = openSafetensors(file)
    try {
      assert.not.ok(ckpt.tensors.has(name))
      assert.equal(ckpt.unsupported.get(name)?.dtype, 'F64')
      throwsError(() => ckpt.readF32(name), `${file}: tensor ${name}`, /unsupported dtype \(expected F32, F16, BF16, found F64\); hint: /)
    } finally {
      ckpt.close()
    }
    // a file whose only tensor is I8 cannot be used at all: an error at open
    const i8 = { header: { x: { dtype: 'I8', shape: [4], data_offsets: [0, 4] as [number, number] } }, data: Buffer.alloc(4) }
    fs.writeFileSync(file, stBytes(i8))
    throwsError(() => openSafetensors(file), `${file}: tensor x`, /no tensor has a supported dtype.*found I8/)
    // a dtype safetensors does not define
    i8.header.x.dtype = 'Q4'
    fs.writeFileSync(file, stBytes(i8))
    throwsError(() => openSafetensors(file), `${file}: tensor x`, /unknown dtype \(expected F32, F16, BF16, found "Q4"\)/)
  })
})

test('safetensors shape whose element count disagrees with the byte range', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    const st = readSt(SMALL_SHARD)
    const [name, e] = stEntries(st).find(([, x]) => x.shape.length === 1)!
    e.shape = [e.shape[0] + 1]
    fs.writeFileSync(file, stBytes(st))
    throwsError(() => openSafetensors(file), `${file}: tensor ${name}`, /byte range does not match the shape/)
    e.shape = [-1]
    fs.writeFileSync(file, stBytes(st))
    throwsError(() => openSafetensors(file), `${file}: tensor ${name}`, /shape is not a list of non-negative integers/)
    e.shape = [2 ** 40, 2 ** 40]
    fs.writeFileSync(file, stBytes(st))
    throwsError(() => openSafetensors(file), `${file}: tensor ${name}`, /too many elements/)
  })
})

test('safetensors header that is not JSON, and a Git LFS pointer', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    const h = Buffer.from('{"a": ')
    const len = Buffer.alloc(8)
    len.writeBigUInt64LE(BigInt(h.length))
    fs.writeFileSync(file, Buffer.concat([len, h]))
    throwsError(() => openSafetensors(file), file, /header is not valid JSON/)
    fs.writeFileSync(file, 'version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 6656760\n')
    throwsError(() => openSafetensors(file), file, /Git LFS pointer.*git lfs pull/)
  })
})

test('pytorch_model.bin whose data.pkl calls os.system (GLOBAL) is refused', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'pytorch_model.bin')
    const pkl = new Pickle().proto(2).global('os', 'system').mark().str('echo pwned').tuple().reduce().stop().bytes()
    writeZip(file, [{ name: 'archive/data.pkl', data: pkl }, { name: 'archive/version', data: Buffer.from('3\n') }])
    throwsError(() => openCheckpoint(dir), file, /refuses to load global 'os\.system' \(archive\/data\.pkl, byte 2\)/)
  })
})

test('pytorch_model.bin whose data.pkl names builtins.eval (STACK_GLOBAL) is refused', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'pytorch_model.bin')
    const pkl = new Pickle().proto(4).shortStr('builtins').shortStr('eval').op(0x93).shortStr('1+1').op(0x85).reduce().stop().bytes()
    writeZip(file, [{ name: 'model/data.pkl', data: pkl }])
    throwsError(() => openTorchBin(file), file, /refuses to load global 'builtins\.eval'/)
  })
})

test('pytorch_model.bin: other unpickler refusals (opcode, truncation, bad storage)', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'pytorch_model.bin')
    const zipWith = (pkl: Uint8Array, extra: ZipInput[] = []): void =>
      writeZip(file, [{ name: 'archive/data.pkl', data: pkl }, ...extra])
    // INST (text-mode object creation) is not in the opcode list
    zipWith(Buffer.from('\x80\x02(ios\nsystem\n.', 'latin1'))
    throwsError(() => openTorchBin(file), file, /unsupported pickle opcode 0x69 \(INST\)/)
    // a BINUNICODE length past the end of the pickle
    zipWith(Buffer.from([0x80, 0x02, 0x58, 0xff, 0xff, 0xff, 0x7f, 0x41, 0x2e]))
    throwsError(() => openTorchBin(file), file, /runs past the end of the pickle/)
    // storage entry smaller than the persistent id says
    const t: TensorSpec = { name: 'w', storage: 'FloatStorage', key: '0', numel: 8, offset: 0, shape: [8], stride: [1] }
    zipWith(statePickle([t]), [{ name: 'archive/data/0', data: f32Bytes([1, 2]) }])
    throwsError(() => openTorchBin(file), `${file}: tensor w`, /storage "0" has the wrong size/)
    // a view past the end of its storage
    zipWith(statePickle([{ ...t, numel: 2, shape: [3] }]), [{ name: 'archive/data/0', data: f32Bytes([1, 2]) }])
    throwsError(() => openTorchBin(file), `${file}: tensor w`, /extends past the end of its storage/)
    // a missing storage entry
    zipWith(statePickle([t]))
    throwsError(() => openTorchBin(file), `${file}: tensor w`, /storage "0" is missing/)
  })
})

test('legacy (non-zip) torch format is refused with a hint', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'pytorch_model.bin')
    fs.writeFileSync(file, Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]))
    throwsError(() => openCheckpoint(dir), file, /legacy .*_use_new_zipfile_serialization=True.*safetensors/)
    fs.writeFileSync(file, Buffer.alloc(100))
    throwsError(() => openTorchBin(file), file, /not a torch\.save zip archive/)
  })
})

test('sharded index referencing a missing shard', () => {
  withTmp((dir) => {
    const src = path.join(NEO, 'sharded')
    for (const f of ['model.safetensors.index.json', 'model-00001-of-00004.safetensors', 'model-00002-of-00004.safetensors', 'model-00004-of-00004.safetensors']) {
      fs.copyFileSync(path.join(src, f), path.join(dir, f))
    }
    const index = path.join(dir, 'model.safetensors.index.json')
    throwsError(() => openCheckpoint(dir), index, /shard "model-00003-of-00004\.safetensors" listed in weight_map does not exist/)
  })
})

test('sharded index with a shard path that escapes the folder', () => {
  withTmp((dir) => {
    const index = path.join(dir, 'model.safetensors.index.json')
    fs.writeFileSync(index, JSON.stringify({ weight_map: { 'transformer.wte.weight': '../../etc/passwd' } }))
    throwsError(() => openCheckpoint(dir), index, /shard path escapes the model folder.*etc\/passwd/)
    fs.writeFileSync(index, JSON.stringify({ weight_map: { 'transformer.wte.weight': '/etc/passwd' } }))
    throwsError(() => openCheckpoint(dir), index, /escapes the model folder/)
  })
})

test('sharded index: a tensor mapped to a shard that lacks it, and a malformed index', () => {
  withTmp((dir) => {
    fs.copyFileSync(SMALL_SHARD, path.join(dir, 'a.safetensors'))
    const index = path.join(dir, 'model.safetensors.index.json')
    fs.writeFileSync(index, JSON.stringify({ weight_map: { 'not.in.shard': 'a.safetensors' } }))
    throwsError(() => openCheckpoint(dir), path.join(dir, 'a.safetensors'), /tensor not\.in\.shard: tensor is listed in model\.safetensors\.index\.json but missing/)
    fs.writeFileSync(index, '{"weight_map": ')
    throwsError(() => openCheckpoint(dir), index, /sharded checkpoint index is not valid JSON/)
    fs.writeFileSync(index, '{"metadata": {}}')
    throwsError(() => openCheckpoint(dir), index, /no "weight_map" object/)
  })
})

test('readJsonFile: missing file and bad JSON, as CheckpointError or ConfigError', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'config.json')
    throwsError(() => readJsonFile(file, 'config'), file, /config does not exist/)
    fs.writeFileSync(file, '{"n_layer": 2,}')
    throwsError(() => readJsonFile(file, 'config', ConfigError), file, /config is not valid JSON/, ConfigError)
    fs.writeFileSync(file, '\ufeff{"n_layer": 2}')
    assert.equal(readJsonFile(file, 'config'), { n_layer: 2 })
  })
})

test.run()
