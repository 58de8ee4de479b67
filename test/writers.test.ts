// Checkpoint writers (packages/core/src/io/write.ts): safetensors and torch.save zip files, checked against
// the formats' rules, read back through refgpt's readers, rewritten from the fixtures, written atomically,
// and read by real Python tools (torch.load, zipfile, pickletools; test/python/check_writers.py).

import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as zlib from 'node:zlib'
import { fileURLToPath } from 'node:url'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { CheckpointError, UsageError } from '../packages/core/src/errors.js'
import { f32ToBf16Array, f32ToF16Array } from '../packages/core/src/io/dtype.js'
import { openCheckpoint, openSafetensors, openTorchBin, type LoadedCheckpoint } from '../packages/core/src/io/index.js'
import { RandomAccessFile } from '../packages/core/src/io/safetensors.js'
import {
  contiguousStride,
  crc32,
  crc32Table,
  writeFileAtomic,
  writeSafetensors,
  writeTorchZip,
  type TensorToWrite,
  type WriteDType,
} from '../packages/core/src/io/write.js'
import { ZipArchive } from '../packages/core/src/io/zip.js'
import { rng } from './helpers.js'

const fixture = (rel: string): string => fileURLToPath(new URL(`./fixtures/models/${rel}`, import.meta.url))
const CHECKER = fileURLToPath(new URL('./python/check_writers.py', import.meta.url))
const PYTHON = '/usr/bin/python3'

function withTmp<T>(fn: (dir: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'refgpt-write-'))
  try {
    return fn(dir)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** Random float32 values with a few special ones (signed zero, subnormal, huge, NaN payload, infinities). */
function values(n: number, seed: number): Float32Array {
  const r = rng(seed)
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = (r() - 0.5) * 8
  const special = [-0, 1e-40, 3e38, -Infinity, Infinity, 65520, 1 / 3]
  for (let i = 0; i < Math.min(n, special.length); i++) out[(i * 7919) % n] = special[i]
  if (n > 10) new Uint32Array(out.buffer)[10] = 0x7fc01234 // NaN with a payload
  return out
}

const bytesOf = (v: ArrayBufferView): Buffer => Buffer.from(v.buffer, v.byteOffset, v.byteLength)

/** What a tensor's stored bytes must be. */
function stored(t: TensorToWrite): Buffer {
  if ('bytes' in t) return bytesOf(t.bytes as ArrayBufferView)
  const d = t.data as Float32Array
  return bytesOf(t.dtype === 'F16' ? f32ToF16Array(d) : t.dtype === 'BF16' ? f32ToBf16Array(d) : d)
}

const dtypeOf = (t: TensorToWrite): WriteDType => t.dtype ?? 'F32'

/** A mix of dtypes, odd shapes, a 0-d tensor, empty tensors, raw bytes and awkward names. */
function mixedTensors(seed = 1): TensorToWrite[] {
  const f16bits = f32ToF16Array(values(15, seed + 9))
  return [
    { name: 'transformer.wte.weight', shape: [37, 5], data: values(185, seed) },
    { name: 'transformer.h.0.ln_1.bias', shape: [7], data: values(7, seed + 1), dtype: 'F16' },
    { name: 'transformer.h.0.attn.c_attn.weight', shape: [3, 1, 11], data: values(33, seed + 2), dtype: 'BF16' },
    { name: 'scalar', shape: [], data: new Float32Array([2.5]) },
    { name: 'empty', shape: [0], data: new Float32Array(0) },
    { name: 'empty.2d', shape: [4, 0], data: new Float32Array(0), dtype: 'BF16' },
    { name: 'raw.f16', shape: [3, 5], bytes: f16bits, dtype: 'F16' },
    { name: 'Zeta', shape: [2, 2, 2, 2, 3], data: values(48, seed + 3) },
    { name: 'ünïcode.w', shape: [2], data: new Float32Array([1, -1]) },
    { name: 'a"quote\\back\nline\u0001', shape: [1], data: new Float32Array([3]) },
    { name: 'u.\u{1F600}', shape: [1], data: new Float32Array([4]) },
    { name: 'u.\uFFFD', shape: [1], data: new Float32Array([5]) },
  ]
}

function manyTensors(n: number): TensorToWrite[] {
  return Array.from({ length: n }, (_, i) => ({ name: `layer.${i}.w`, shape: [1 + (i % 5), 3], data: values(3 * (1 + (i % 5)), i) }))
}

/** Every tensor of `tensors` reads back from `ck` with its name, dtype, shape and exact stored bytes. */
function assertRoundTrip(ck: LoadedCheckpoint, tensors: TensorToWrite[]): void {
  assert.equal([...ck.tensors.keys()].sort(), tensors.map((t) => t.name).sort())
  for (const t of tensors) {
    const info = ck.tensors.get(t.name)!
    assert.is(info.dtype, dtypeOf(t), t.name)
    assert.equal(info.shape, [...t.shape], t.name)
    assert.ok(bytesOf(ck.readBytes(t.name)).equals(stored(t)), `${t.name}: bytes`)
    if ('data' in t && dtypeOf(t) === 'F32') assert.ok(bytesOf(ck.readF32(t.name)).equals(stored(t)), `${t.name}: readF32`)
  }
}

/** The parsed safetensors header: length, raw text, entries in file order. */
function parseHeader(file: string): { n: number; text: string; keys: string[]; json: Record<string, any>; dataStart: number } {
  const raw = fs.readFileSync(file)
  const n = Number(raw.readBigUInt64LE(0))
  const text = raw.subarray(8, 8 + n).toString('utf8')
  const json = JSON.parse(text)
  return { n, text, keys: Object.keys(json), json, dataStart: 8 + n }
}

/** The local-header data offset of every entry, via refgpt's zip reader. */
function zipEntries(file: string): Map<string, { dataOffset: number; method: number; size: number }> {
  const h = RandomAccessFile.open(file)
  try {
    return new ZipArchive(h).entries
  } finally {
    h.close()
  }
}

function throwsUsage(fn: () => unknown, re: RegExp, cls: Function = UsageError): string {
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
  assert.match(msg, re)
  return msg
}

// ---------------------------------------------------------------------------------------------------
// safetensors: the format's rules

test("safetensors: the format's reference serializations, byte for byte", () => {
  withTmp((dir) => {
    // The examples the safetensors library's own tests pin down (tensor.rs): header length, compact JSON,
    // space padding to 8 bytes, metadata first.
    const f32 = new Float32Array([0, 1, 2, 3, 4, 5])
    const expect = (header: string, data: Uint8Array): Buffer => {
      const len = Buffer.alloc(8)
      len.writeBigUInt64LE(BigInt(header.length))
      return Buffer.concat([len, Buffer.from(header), data])
    }
    const file = path.join(dir, 'x.safetensors')
    writeSafetensors(file, [{ name: 'attn.0', shape: [1, 2, 3], data: f32 }], null)
    const h1 = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'
    assert.is(h1.length, 64)
    assert.ok(fs.readFileSync(file).equals(expect(h1, bytesOf(f32))))

    writeSafetensors(file, [{ name: 'attn0', shape: [1, 1, 2, 3], data: f32 }], null)
    const h2 = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}' + ' '.repeat(7)
    assert.ok(fs.readFileSync(file).equals(expect(h2, bytesOf(f32))))

    writeSafetensors(file, [], null)
    assert.ok(fs.readFileSync(file).equals(expect('{}      ', new Uint8Array(0))))
    writeSafetensors(file, [], { framework: 'pt' })
    assert.ok(fs.readFileSync(file).equals(expect('{"__metadata__":{"framework":"pt"}}     ', new Uint8Array(0))))
  })
})

test('safetensors: header rules (8-byte padding, metadata first, dtype then name-byte order, contiguous offsets)', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    const tensors = mixedTensors()
    const out = writeSafetensors(file, tensors, { format: 'pt', b: 'x"y', a: 'ü' })
    assert.is(out.file, file)
    assert.is(out.tensors, tensors.length)
    assert.is(out.bytes, fs.statSync(file).size)
    const { n, text, keys, json, dataStart } = parseHeader(file)
    assert.is(n % 8, 0, 'header length is a multiple of 8')
    assert.is(dataStart % 8, 0)
    assert.match(text, /^\{[^\n]*\} {0,7}$/)
    assert.not.match(text.trimEnd(), /": |, /, 'compact JSON')
    assert.is(keys[0], '__metadata__')
    assert.equal(Object.keys(json.__metadata__), ['a', 'b', 'format'], 'metadata keys in byte order')
    assert.equal(json.__metadata__, { format: 'pt', b: 'x"y', a: 'ü' })
    // dtype order: F32 first, then BF16, then F16; within a dtype, UTF-8 byte order of the names.
    const rank = { F32: 0, BF16: 1, F16: 2 }
    const want = [...tensors]
      .sort((a, b) => rank[dtypeOf(a)] - rank[dtypeOf(b)] || Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)))
      .map((t) => t.name)
    assert.equal(keys.slice(1), want)
    // U+FFFD sorts before U+1F600 in UTF-8 bytes (but after it in UTF-16 code units).
    assert.ok(want.indexOf('u.\uFFFD') < want.indexOf('u.\u{1F600}'))
    let pos = 0
    for (const name of want) {
      const e = json[name]
      assert.equal(Object.keys(e), ['dtype', 'shape', 'data_offsets'])
      assert.is(e.data_offsets[0], pos, `${name} starts where the previous one ends`)
      const t = tensors.find((x) => x.name === name)!
      assert.is(e.data_offsets[1] - e.data_offsets[0], stored(t).length)
      assert.is((dataStart + pos) % (dtypeOf(t) === 'F32' ? 4 : 2), 0, `${name} aligned`)
      pos = e.data_offsets[1]
    }
    assert.is(dataStart + pos, fs.statSync(file).size, 'no bytes after the last tensor')
  })
})

test('safetensors: round trips through openSafetensors and openCheckpoint (f32/f16/bf16, 0-d, empty, odd shapes)', () => {
  withTmp((dir) => {
    const tensors = mixedTensors(7)
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors)
    const ck = openSafetensors(path.join(dir, 'model.safetensors'))
    try {
      assertRoundTrip(ck, tensors)
      assert.equal(ck.metadata, { format: 'pt' })
      assert.equal([...ck.readF32('scalar')], [2.5])
      assert.is(ck.readF32('empty.2d').length, 0)
    } finally {
      ck.close()
    }
    const folder = openCheckpoint(dir)
    try {
      assert.is(folder.format, 'safetensors')
      assertRoundTrip(folder, tensors)
    } finally {
      folder.close()
    }
    // float32 data stored as F16/BF16 rounds to nearest, ties to even (overflow to infinity, underflow to 0).
    const x = new Float32Array([1, 65520, 1e-40, 0.1, 1 + 2 ** -11, -3])
    writeSafetensors(path.join(dir, 'r.safetensors'), [
      { name: 'h', shape: [6], data: x, dtype: 'F16' },
      { name: 'b', shape: [6], data: x, dtype: 'BF16' },
    ])
    const r = openSafetensors(path.join(dir, 'r.safetensors'))
    assert.equal([...r.readF32('h')], [1, Infinity, 0, 0.0999755859375, 1, -3])
    assert.equal([...r.readF32('b')], [1, 65536, 9.183549615799121e-41, 0.10009765625, 1, -3])
    r.close()
  })
})

test('safetensors: 1500 tensors, and the gpt-neo-tiny fixture rewritten with an identical data region', () => {
  withTmp((dir) => {
    const many = manyTensors(1500)
    writeSafetensors(path.join(dir, 'many.safetensors'), many)
    const ck = openSafetensors(path.join(dir, 'many.safetensors'))
    try {
      assertRoundTrip(ck, many)
    } finally {
      ck.close()
    }
    // Read every tensor of a real checkpoint and write it back: same tensors, same data bytes in the same order.
    const src = fixture('gpt-neo-tiny/model.safetensors')
    const orig = openSafetensors(src)
    const rewritten = path.join(dir, 'neo.safetensors')
    try {
      const list: TensorToWrite[] = [...orig.tensors.values()].map((i) => ({ name: i.name, shape: i.shape, dtype: i.dtype, bytes: orig.readBytes(i.name) }))
      writeSafetensors(rewritten, list, { ...orig.metadata })
      const again = openSafetensors(rewritten)
      try {
        assertRoundTrip(again, list)
        assert.equal(again.metadata, orig.metadata)
      } finally {
        again.close()
      }
    } finally {
      orig.close()
    }
    const a = fs.readFileSync(src)
    const b = fs.readFileSync(rewritten)
    const dataA = a.subarray(8 + Number(a.readBigUInt64LE(0)))
    const dataB = b.subarray(8 + Number(b.readBigUInt64LE(0)))
    assert.ok(dataA.equals(dataB), 'data region identical to the fixture (F32 tensors in name order)')
  })
})

// ---------------------------------------------------------------------------------------------------
// torch zip

test('torch zip: records, 64-byte alignment, version and byteorder as torch.save lays them out', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'pytorch_model.bin')
    const tensors = manyTensors(12)
    const out = writeTorchZip(file, tensors)
    assert.is(out.bytes, fs.statSync(file).size)
    const entries = zipEntries(file)
    // data/<key> in sorted string order, as torch writes them: 0, 1, 10, 11, 2, ...
    const keys = tensors.map((_, i) => String(i)).sort()
    assert.equal([...entries.keys()], ['archive/data.pkl', 'archive/byteorder', ...keys.map((k) => `archive/data/${k}`), 'archive/version'])
    for (const [name, e] of entries) {
      assert.is(e.method, 0, `${name} stored`)
      assert.is(e.dataOffset % 64, 0, `${name} data 64-byte aligned`)
    }
    const raw = fs.readFileSync(file)
    const at = (name: string) => raw.subarray(entries.get(name)!.dataOffset, entries.get(name)!.dataOffset + entries.get(name)!.size)
    assert.is(at('archive/version').toString(), '3\n')
    assert.is(at('archive/byteorder').toString(), 'little')
    assert.ok(at('archive/data/11').equals(stored(tensors[11])))
    // torch's padding: an extra field "FB" of 'Z' bytes in each local header.
    const first = raw.subarray(30 + 'archive/data.pkl'.length, 34 + 'archive/data.pkl'.length)
    assert.is(first.subarray(0, 2).toString(), 'FB')
    // The pickle: protocol 2, an OrderedDict of _rebuild_tensor_v2 calls on persistent storages.
    const pkl = at('archive/data.pkl')
    assert.equal([pkl[0], pkl[1]], [0x80, 2])
    assert.ok(pkl.includes('collections\nOrderedDict\n') && pkl.includes('torch._utils\n_rebuild_tensor_v2\n') && pkl.includes('torch\nFloatStorage\n'))
    assert.is(pkl[pkl.length - 1], 0x2e, 'ends with STOP')
  })
})

test('torch zip: round trips through openTorchBin and openCheckpoint (f32/f16/bf16, 0-d, empty, odd shapes, order kept)', () => {
  withTmp((dir) => {
    const tensors = mixedTensors(3)
    writeTorchZip(path.join(dir, 'pytorch_model.bin'), tensors, { archiveName: 'pytorch_model' })
    const ck = openTorchBin(path.join(dir, 'pytorch_model.bin'))
    try {
      assertRoundTrip(ck, tensors)
      assert.equal([...ck.tensors.keys()], tensors.map((t) => t.name), 'dict order kept')
    } finally {
      ck.close()
    }
    assert.ok(zipEntries(path.join(dir, 'pytorch_model.bin')).has('pytorch_model/data.pkl'))
    const folder = openCheckpoint(dir)
    try {
      assert.is(folder.format, 'pytorch-bin')
      assertRoundTrip(folder, tensors)
    } finally {
      folder.close()
    }
  })
})

test('torch zip: 1500 tensors (two SETITEMS batches), huge dims on an empty tensor (LONG1), forced ZIP64 records', () => {
  withTmp((dir) => {
    const tensors: TensorToWrite[] = [...manyTensors(1500), { name: 'huge.empty', shape: [0, 3_000_000_000], data: new Float32Array(0) }]
    assert.equal(contiguousStride([0, 3_000_000_000]), [3_000_000_000, 1])
    assert.equal(contiguousStride([2, 0, 3]), [3, 3, 1], "torch's strides skip zero sizes")
    assert.equal(contiguousStride([]), [])
    for (const forceZip64 of [false, true]) {
      const file = path.join(dir, `m${forceZip64}.bin`)
      writeTorchZip(file, tensors, { forceZip64 })
      const ck = openTorchBin(file)
      try {
        assertRoundTrip(ck, tensors)
        assert.equal(ck.tensors.get('huge.empty')!.shape, [0, 3_000_000_000])
      } finally {
        ck.close()
      }
      const raw = fs.readFileSync(file)
      const eocd = raw.subarray(raw.length - 22)
      assert.is(eocd.readUInt32LE(0), 0x06054b50)
      const locator = raw.subarray(raw.length - 42, raw.length - 22)
      assert.is(locator.readUInt32LE(0) === 0x07064b50, forceZip64, 'ZIP64 locator only when forced (or needed)')
      assert.is(eocd.readUInt16LE(10), forceZip64 ? 0xffff : 1500 + 4)
    }
  })
})

test('torch zip: the gpt3-ms-tiny fixture (written by torch 1.13) rewritten reads back identical', () => {
  withTmp((dir) => {
    const src = openCheckpoint(fixture('gpt3-ms-tiny'))
    try {
      const list: TensorToWrite[] = [...src.tensors.values()].map((i) => ({ name: i.name, shape: i.shape, dtype: i.dtype, bytes: src.readBytes(i.name) }))
      writeTorchZip(path.join(dir, 'pytorch_model.bin'), list, { archiveName: 'pytorch_model' })
      const again = openCheckpoint(dir)
      try {
        assert.equal([...again.tensors.keys()], [...src.tensors.keys()])
        assertRoundTrip(again, list)
      } finally {
        again.close()
      }
    } finally {
      src.close()
    }
  })
})

// ---------------------------------------------------------------------------------------------------
// Lazy tensors, atomicity, refusals

test('lazy tensors: each function called once, in the order the file is written', () => {
  withTmp((dir) => {
    const calls: string[] = []
    const lazy = (t: TensorToWrite): TensorToWrite =>
      'data' in t ? { ...t, data: () => (calls.push(t.name), t.data as Float32Array) } : { ...t, bytes: () => (calls.push(t.name), t.bytes as ArrayBufferView) }
    const tensors = mixedTensors(5)
    writeSafetensors(path.join(dir, 'a.safetensors'), tensors.map(lazy))
    assert.equal(calls, parseHeader(path.join(dir, 'a.safetensors')).keys.slice(1))
    const ck = openSafetensors(path.join(dir, 'a.safetensors'))
    assertRoundTrip(ck, tensors)
    ck.close()
    calls.length = 0
    const many = manyTensors(12)
    writeTorchZip(path.join(dir, 'a.bin'), many.map(lazy))
    assert.equal(calls, many.map((_, i) => String(i)).sort().map((k) => many[Number(k)].name))
    const ck2 = openTorchBin(path.join(dir, 'a.bin'))
    assertRoundTrip(ck2, many)
    ck2.close()
  })
})

test('atomic: a write that fails midway leaves no file and no temp file; an existing file is replaced only on success', () => {
  withTmp((dir) => {
    for (const [file, write] of [
      [path.join(dir, 'model.safetensors'), writeSafetensors],
      [path.join(dir, 'pytorch_model.bin'), writeTorchZip],
    ] as const) {
      const good = manyTensors(6)
      let calls = 0
      const failing = good.map((t, i) => ({ ...t, data: () => {
        if (++calls === 4) throw new Error('device lost')
        return (t as { data: Float32Array }).data
      } }))
      // 1. No file yet: the failed write leaves nothing behind.
      assert.throws(() => write(file, failing), /device lost/)
      assert.equal(fs.readdirSync(dir).filter((f) => f.startsWith(path.basename(file))), [])
      // A lazy tensor of the wrong size is refused midway, just as cleanly.
      const wrongSize = good.map((t, i) => (i === 3 ? { ...t, data: () => new Float32Array(1) } : t))
      throwsUsage(() => write(file, wrongSize), /tensor layer\.3\.w: tensor data does not match its shape \(expected 12 values, found 1\)/)
      assert.equal(fs.readdirSync(dir).filter((f) => f.startsWith(path.basename(file))), [])
      // 2. An existing file survives a failed write byte for byte, and is replaced by a good one.
      write(file, good.slice(0, 2))
      const before = fs.readFileSync(file)
      calls = 0
      assert.throws(() => write(file, failing), /device lost/)
      assert.ok(fs.readFileSync(file).equals(before), 'old file intact')
      assert.equal(fs.readdirSync(dir).filter((f) => f.startsWith(path.basename(file))), [path.basename(file)], 'no temp file left')
      write(file, good)
      const ck = file.endsWith('.bin') ? openTorchBin(file) : openSafetensors(file)
      assertRoundTrip(ck, good)
      ck.close()
    }
    assert.equal(fs.readdirSync(dir).sort(), ['model.safetensors', 'pytorch_model.bin'])
  })
})

test('atomic: writeFileAtomic; file-system errors are one-line CheckpointErrors that leave nothing behind', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'config.json')
    assert.is(writeFileAtomic(file, '{"a":1}\n').bytes, 8)
    assert.is(fs.readFileSync(file, 'utf8'), '{"a":1}\n')
    writeFileAtomic(file, (sink) => {
      sink.write(new Uint8Array([0x7b, 0x7d]))
      assert.is(sink.position, 2)
    })
    assert.is(fs.readFileSync(file, 'utf8'), '{}')
    assert.throws(() => writeFileAtomic(file, () => { throw new Error('serializer failed') }), /serializer failed/)
    assert.is(fs.readFileSync(file, 'utf8'), '{}')
    const missing = path.join(dir, 'no', 'such', 'model.safetensors')
    const msg = throwsUsage(() => writeSafetensors(missing, manyTensors(1)), /cannot create the file \(ENOENT\); hint: create the folder first/, CheckpointError)
    assert.ok(msg.includes(path.join(dir, 'no', 'such')))
    throwsUsage(() => writeTorchZip(dir, manyTensors(1)), /cannot write a file over a folder/)
    assert.equal(fs.readdirSync(dir), ['config.json'])
  })
})

test('bad input is refused with one-line UsageErrors before any file is created', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'm.safetensors')
    const t = (extra: object) => [{ name: 'w', shape: [2], data: new Float32Array(2), ...extra }] as unknown as TensorToWrite[]
    const cases: Array<[unknown, RegExp]> = [
      [[{ name: 'w', shape: [2], data: new Float32Array(2) }, { name: 'w', shape: [1], data: new Float32Array(1) }], /tensor w: two tensors have this name/],
      [t({ name: '' }), /tensor 0 has no valid name/],
      [t({ name: 'lone\uD800' }), /tensor 0 has no valid name/],
      [t({ shape: [2, -1] }), /shape is not a list of non-negative integers/],
      [t({ shape: [1.5] }), /shape is not a list of non-negative integers/],
      [t({ data: new Float32Array(3) }), /tensor data does not match its shape \(expected 2 values, found 3\)/],
      [t({ data: [1, 2] }), /tensor data is not a Float32Array \(found Array\)/],
      [t({ dtype: 'F64' }), /unsupported dtype \(expected F32, F16 or BF16, found "F64"\)/],
      [t({ bytes: new Uint8Array(8) }), /exactly one of data/],
      [[{ name: 'w', shape: [2], bytes: new Uint8Array(8) }], /unsupported dtype/],
      [[{ name: 'w', shape: [2], bytes: new Uint8Array(3), dtype: 'F16' }], /tensor bytes do not match its shape and dtype \(expected 4 bytes, found 3\)/],
      [[{ name: 'w', shape: [2 ** 40, 2 ** 20], data: () => new Float32Array(0) }], /shape has too many elements/],
      [t({ name: '__metadata__' }), /cannot be named __metadata__/],
    ]
    for (const [tensors, re] of cases) {
      const msg = throwsUsage(() => writeSafetensors(file, tensors as TensorToWrite[]), re)
      assert.ok(msg.includes(file), msg)
    }
    throwsUsage(() => writeSafetensors(file, t({}), { a: 1 } as unknown as Record<string, string>), /metadata values must be well-formed strings/)
    throwsUsage(() => writeTorchZip(path.join(dir, 'm.bin'), t({}), { archiveName: '../x' }), /invalid zip archive name/)
    assert.equal(fs.readdirSync(dir), [])
  })
})

test('crc32: the table version matches zlib on random data, in pieces and whole', () => {
  const r = rng(42)
  const data = new Uint8Array(100_003).map(() => Math.floor(r() * 256))
  const native = (zlib as { crc32?: (d: Uint8Array) => number }).crc32
  const want = native ? native(data) >>> 0 : crc32Table(data)
  assert.is(crc32Table(data), want)
  assert.is(crc32Table(data.subarray(5000), crc32Table(data.subarray(0, 5000))), want)
  assert.is(crc32(new Float32Array(data.buffer, 0, 25_000)), crc32Table(data.subarray(0, 100_000)))
  assert.is(crc32Table(new Uint8Array(0)), 0)
  assert.is(crc32Table(new TextEncoder().encode('123456789')), 0xcbf43926, 'the CRC-32 check value')
})

// ---------------------------------------------------------------------------------------------------
// Independent readers: torch.load, zipfile, pickletools, and a strict safetensors parse

const hasTorch = spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0
if (!hasTorch) console.log(`  SKIP writers vs torch.load: python3-torch is not installed (apt-get install python3-torch; ${PYTHON})`)

;(hasTorch ? test : test.skip)('Python: torch.load (weights_only too), zipfile, pickletools and a strict safetensors parse read what we wrote', () => {
  withTmp((dir) => {
    type Entry = { path: string; format: 'torch' | 'safetensors'; metadata?: Record<string, string> | null; archive?: string; tensors: TensorToWrite[] }
    const neo = openSafetensors(fixture('gpt-neo-tiny/model.safetensors'))
    const neoList: TensorToWrite[] = [...neo.tensors.values()].map((i) => ({ name: i.name, shape: i.shape, dtype: i.dtype, bytes: neo.readBytes(i.name) }))
    neo.close()
    const ms = openCheckpoint(fixture('gpt3-ms-tiny'))
    const msList: TensorToWrite[] = [...ms.tensors.values()].map((i) => ({ name: i.name, shape: i.shape, dtype: i.dtype, bytes: ms.readBytes(i.name) }))
    ms.close()
    const entries: Entry[] = [
      { path: path.join(dir, 'mixed.bin'), format: 'torch', tensors: mixedTensors(11) },
      { path: path.join(dir, 'mixed64.bin'), format: 'torch', tensors: mixedTensors(12) },
      { path: path.join(dir, 'many.bin'), format: 'torch', archive: 'pytorch_model', tensors: manyTensors(1200) },
      { path: path.join(dir, 'gpt3-ms-tiny.bin'), format: 'torch', archive: 'pytorch_model', tensors: msList },
      { path: path.join(dir, 'mixed.safetensors'), format: 'safetensors', metadata: { format: 'pt', note: 'ü "q"' }, tensors: mixedTensors(13) },
      { path: path.join(dir, 'nometa.safetensors'), format: 'safetensors', metadata: null, tensors: mixedTensors(14).slice(0, 5) },
      { path: path.join(dir, 'many.safetensors'), format: 'safetensors', metadata: { format: 'pt' }, tensors: manyTensors(1200) },
      { path: path.join(dir, 'gpt-neo-tiny.safetensors'), format: 'safetensors', metadata: { format: 'pt' }, tensors: neoList },
    ]
    for (const e of entries) {
      if (e.format === 'torch') writeTorchZip(e.path, e.tensors, { archiveName: e.archive, forceZip64: e.path.endsWith('64.bin') })
      else writeSafetensors(e.path, e.tensors, e.metadata ?? null)
    }
    const manifest = {
      files: entries.map((e) => ({
        path: e.path,
        format: e.format,
        metadata: e.metadata ?? null,
        archive: e.archive ?? 'archive',
        tensors: e.tensors.map((t) => ({ name: t.name, dtype: dtypeOf(t), shape: [...t.shape], hex: stored(t).toString('hex') })),
      })),
    }
    fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest))
    const r = spawnSync(PYTHON, [CHECKER, path.join(dir, 'manifest.json')], { encoding: 'utf8', maxBuffer: 64 << 20 })
    if (process.env.SHOW_PYTHON) console.log(r.stdout)
    assert.is(r.status, 0, `check_writers.py failed:\n${r.stdout}\n${r.stderr}`)
    assert.match(r.stdout, new RegExp(`checked ${entries.length} files, \\d+ tensors with torch 1\\.`))
  })
})

test.run()
