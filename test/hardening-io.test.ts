// Issue 13, hardened inputs: the checkpoint readers against the reproducers of an attacker-style fuzz run.
// Each hostile file is built here, in a fresh temp folder, small and fast; every refusal is a one-line
// CheckpointError (never a RangeError, a raw fs error, a hang or an abort of the process).

import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as zlib from 'node:zlib'
import { fileURLToPath } from 'node:url'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { CheckpointError, ConfigError, UsageError } from '../packages/core/src/errors.js'
import { MAX_JSON_VALUES, MAX_SHARDS, countJsonValues, openCheckpoint, openSafetensors, openTorchBin, readJsonFile } from '../packages/core/src/io/index.js'
import {
  MAX_CONTAINER_ITEMS,
  MAX_PICKLE_ELEMENTS,
  MAX_PICKLE_MEMO,
  MAX_PICKLE_OBJECTS,
  unpickle,
} from '../packages/core/src/io/pickle.js'
import { MAX_TENSORS_PER_FILE, RandomAccessFile, countTopLevelMembers } from '../packages/core/src/io/safetensors.js'
import { crc32, crc32Table } from '../packages/core/src/io/write.js'
import { ZipArchive, inflateCount, verifyCrc32 } from '../packages/core/src/io/zip.js'
import { writeSafetensors, linkTest } from './helpers.js'
import { Pickle, statePickle, type TensorSpec } from './pickle-writer.js'
import { writeZip, type ZipInput } from './zip-writer.js'

// ---------------------------------------------------------------------------------------------------
// Helpers

const SMALL_SHARD = fileURLToPath(new URL('./fixtures/models/gpt-neo-tiny/sharded/model-00004-of-00004.safetensors', import.meta.url))

function withTmp<T>(fn: (dir: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'refgpt-hio-'))
  try {
    return fn(dir)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** `fn` must throw a one-line, short `cls` error matching `re` (and naming `where` when given). */
function throwsError(fn: () => unknown, re: RegExp, where?: string, cls: Function = CheckpointError): string {
  let caught: unknown
  try {
    fn()
  } catch (e) {
    caught = e
  }
  assert.ok(caught !== undefined, `expected an error matching ${re}`)
  if (!(caught instanceof cls)) throw caught // shows the unexpected error with its stack
  const msg = (caught as Error).message
  assert.not.match(msg, /\n/, 'message is one line')
  assert.ok(msg.length < 2000, `message is short (${msg.length} characters)`)
  if (where !== undefined) assert.ok(msg.includes(where), `message names ${where}: ${msg}`)
  assert.match(msg, re)
  if (process.env.SHOW_ERRORS) console.log(`  ${(caught as Error).constructor.name}: ${msg}`)
  return msg
}

/** A valid one-tensor safetensors file: w = [1, 2] (F32). */
function writeSmallSafetensors(file: string, name = 'w'): void {
  writeSafetensors(file, { [name]: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(new Float32Array([1, 2]).buffer))
}

function nested(depth: number, leaf = '0'): string {
  return '['.repeat(depth) + leaf + ']'.repeat(depth)
}

/** A safetensors file whose header is `json` (text) followed by `data`. */
function writeRawSafetensors(file: string, json: string, data: Uint8Array = new Uint8Array(0)): void {
  const h = Buffer.from(json)
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(h.length))
  fs.writeFileSync(file, Buffer.concat([len, h, data]))
}

// --- zip writer: stored or deflated entries, with an optional declared size or CRC (for hostile zips)

const unpickleOpts = { file: '/x/pytorch_model.bin', entry: 'archive/data.pkl' }

/** A pickle made of `head`, `body` repeated `n` times, and `tail` (built without an intermediate array). */
function repeated(head: number[], body: number[], n: number, tail: number[]): Buffer {
  const b = Buffer.alloc(head.length + body.length * n + tail.length)
  b.set(head, 0)
  let at = head.length
  if (body.length === 1) {
    b.fill(body[0], at, at + n)
    at += n
  } else {
    for (let i = 0; i < n; i++, at += body.length) for (let j = 0; j < body.length; j++) b[at + j] = body[j]
  }
  b.set(tail, at)
  return b
}

const PROTO = [0x80, 2]
const { EMPTY_LIST, EMPTY_DICT, DUP, APPEND, APPENDS, MARK, NONE, POP, STOP, SETITEMS, MEMOIZE } = {
  EMPTY_LIST: 0x5d, EMPTY_DICT: 0x7d, DUP: 0x32, APPEND: 0x61, APPENDS: 0x65, MARK: 0x28, NONE: 0x4e,
  POP: 0x30, STOP: 0x2e, SETITEMS: 0x75, MEMOIZE: 0x94,
}

// ---------------------------------------------------------------------------------------------------
// 1. readJsonFile

test('readJsonFile: BOM dropped, invalid UTF-8, a folder, a FIFO and an oversized file are one-line errors', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'config.json')
    fs.writeFileSync(file, '\ufeff{"n_layer": 2}')
    assert.equal(readJsonFile(file, 'config'), { n_layer: 2 })
    fs.writeFileSync(file, Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]))
    throwsError(() => readJsonFile(file, 'config', ConfigError), /config is not valid UTF-8/, file, ConfigError)
    throwsError(() => readJsonFile(dir, 'config'), /config is not a regular file/, dir)
    // a sparse file just over the cap: refused from its size, without reading it
    fs.writeFileSync(file, '{}')
    fs.truncateSync(file, (256 << 20) + 1)
    throwsError(() => readJsonFile(file, 'config', ConfigError), /config is too large/, file, ConfigError)
    if (process.platform !== 'win32' && spawnSync('mkfifo', [path.join(dir, 'fifo.json')]).status === 0) {
      throwsError(() => readJsonFile(path.join(dir, 'fifo.json'), 'config'), /not a regular file/)
    }
    throwsError(() => readJsonFile(path.join(dir, 'nope.json'), 'config'), /config does not exist/)
    // more values than MAX_JSON_VALUES (a 4 MB array of zeros): refused before JSON.parse
    fs.writeFileSync(file, '[' + '0,'.repeat(MAX_JSON_VALUES) + '0]')
    throwsError(() => readJsonFile(file, 'config', ConfigError), /config holds too many JSON values \(expected at most 2097152\)/, file, ConfigError)
    assert.is(countJsonValues('{"a,[{":[1,2,{"b":"\\"},["]}', 100), 6)
    assert.is(countJsonValues('{}', 100), 2)
  })
})

// ---------------------------------------------------------------------------------------------------
// 2. Symlinks


linkTest(test, 'symlinks: model.safetensors linking out')('symlinks: model.safetensors linking outside the folder is refused unless followSymlinks', () => {
  withTmp((root) => {
    const outside = path.join(root, 'outside')
    const model = path.join(root, 'model')
    fs.mkdirSync(outside)
    fs.mkdirSync(model)
    writeSmallSafetensors(path.join(outside, 'weights.safetensors'))
    fs.symlinkSync(path.join(outside, 'weights.safetensors'), path.join(model, 'model.safetensors'))
    throwsError(() => openCheckpoint(model), /link to a place outside the model folder/, path.join(model, 'model.safetensors'))
    const ckpt = openCheckpoint(model, { followSymlinks: true })
    try {
      assert.equal([...ckpt.readF32('w')], [1, 2])
      assert.equal(ckpt.files, [path.join(model, 'model.safetensors')]) // named as in the folder
    } finally {
      ckpt.close()
    }
    // the same for pytorch_model.bin and a variant
    fs.rmSync(path.join(model, 'model.safetensors'))
    writeZip(path.join(outside, 'w.bin'), [
      { name: 'archive/data.pkl', data: statePickle([{ name: 'w', key: '0', numel: 2, offset: 0, shape: [2], stride: [1] }]) },
      { name: 'archive/data/0', data: new Uint8Array(new Float32Array([3, 4]).buffer) },
    ])
    fs.symlinkSync(path.join(outside, 'w.bin'), path.join(model, 'pytorch_model.bin'))
    throwsError(() => openCheckpoint(model), /outside the model folder/, 'pytorch_model.bin')
    fs.symlinkSync(path.join(outside, 'weights.safetensors'), path.join(model, 'model.fp16.safetensors'))
    throwsError(() => openCheckpoint(model, { variant: 'fp16' }), /outside the model folder/, 'model.fp16.safetensors')
    const bin = openCheckpoint(model, { followSymlinks: true })
    assert.equal([...bin.readF32('w')], [3, 4])
    bin.close()
  })
})

linkTest(test, 'symlinks: shards and index linking out')('symlinks: shards and index linking outside are refused; links inside the folder work', () => {
  withTmp((root) => {
    const outside = path.join(root, 'outside')
    const model = path.join(root, 'model')
    fs.mkdirSync(outside)
    fs.mkdirSync(model)
    writeSmallSafetensors(path.join(outside, 'far.safetensors'), 'far')
    writeSmallSafetensors(path.join(model, 'real.safetensors'), 'near')
    fs.symlinkSync('./real.safetensors', path.join(model, 'shard-1.safetensors')) // a link inside: fine
    const index = path.join(model, 'model.safetensors.index.json')
    fs.writeFileSync(index, JSON.stringify({ weight_map: { near: 'shard-1.safetensors' } }))
    let ckpt = openCheckpoint(model)
    assert.equal([...ckpt.readF32('near')], [1, 2])
    ckpt.close()

    // a shard linking outside
    fs.symlinkSync(path.join(outside, 'far.safetensors'), path.join(model, 'shard-2.safetensors'))
    fs.writeFileSync(index, JSON.stringify({ weight_map: { near: 'shard-1.safetensors', far: 'shard-2.safetensors' } }))
    throwsError(() => openCheckpoint(model), /outside the model folder/, 'shard-2.safetensors')
    ckpt = openCheckpoint(model, { followSymlinks: true })
    assert.equal([...ckpt.readF32('far')], [1, 2])
    ckpt.close()

    // a shard in a linked folder that leads outside, and `..` / absolute names (the old lexical check)
    fs.symlinkSync(outside, path.join(model, 'sub'))
    fs.writeFileSync(index, JSON.stringify({ weight_map: { far: 'sub/far.safetensors' } }))
    throwsError(() => openCheckpoint(model), /outside the model folder/)
    fs.writeFileSync(index, JSON.stringify({ weight_map: { far: '../outside/far.safetensors' } }))
    throwsError(() => openCheckpoint(model, { followSymlinks: true }), /shard path escapes the model folder/)

    // the index itself linking outside
    fs.rmSync(index)
    fs.writeFileSync(path.join(outside, 'index.json'), JSON.stringify({ weight_map: { near: 'real.safetensors' } }))
    fs.symlinkSync(path.join(outside, 'index.json'), index)
    throwsError(() => openCheckpoint(model), /outside the model folder/, 'model.safetensors.index.json')
  })
})

test('sharded: two names of one shard open it once', () => {
  withTmp((dir) => {
    fs.writeFileSync(path.join(dir, 'a.safetensors'), fs.readFileSync(SMALL_SHARD))
    const names = [...openSafetensors(SMALL_SHARD).tensors.keys()]
    const weightMap: Record<string, string> = {}
    names.forEach((n, i) => (weightMap[n] = i % 2 ? 'a.safetensors' : './a.safetensors'))
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }))
    const ckpt = openCheckpoint(dir)
    try {
      assert.is(ckpt.files.length, 1)
      assert.is(ckpt.tensors.size, names.length)
    } finally {
      ckpt.close()
    }
    assert.ok(MAX_SHARDS >= 1024)
  })
})

// ---------------------------------------------------------------------------------------------------
// 3. Deeply nested JSON in headers and indexes

test('nested JSON 3,500 and 100,000 deep in a safetensors shape, data_offsets or __metadata__: a clean CheckpointError', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    for (const depth of [3_500, 100_000]) {
      writeRawSafetensors(file, `{"w":{"dtype":"F32","shape":${nested(depth)},"data_offsets":[0,0]}}`)
      throwsError(() => openCheckpoint(dir), /tensor w: shape is not a list of non-negative integers \(found \[\[\[/, file)
      writeRawSafetensors(file, `{"w":{"dtype":"F32","shape":[0],"data_offsets":${nested(depth)}}}`)
      throwsError(() => openCheckpoint(dir), /data_offsets is not a pair/, file)
      writeRawSafetensors(file, `{"__metadata__":{"a":${nested(depth)}},"w":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}`)
      throwsError(() => openCheckpoint(dir), /__metadata__ is not a map of strings/, file)
      writeRawSafetensors(file, `{"w":${nested(depth)}}`)
      throwsError(() => openCheckpoint(dir), /header entry is not an object/, file)
    }
  })
})

test('nested JSON 3,500 and 100,000 deep as a weight_map value: a clean CheckpointError', () => {
  withTmp((dir) => {
    const index = path.join(dir, 'model.safetensors.index.json')
    for (const depth of [3_500, 100_000]) {
      fs.writeFileSync(index, `{"weight_map":{"w":${nested(depth, '"a.safetensors"')}}}`)
      throwsError(() => openCheckpoint(dir), /weight_map value is not a file name \(found \[\[\[/, index)
      fs.writeFileSync(index, `{"weight_map":${nested(depth)}}`)
      throwsError(() => openCheckpoint(dir), /index has no "weight_map" object/, index)
    }
  })
})

// ---------------------------------------------------------------------------------------------------
// 4. Too many tensors in one header

test('safetensors header with MAX_TENSORS_PER_FILE + 1 empty tensors is refused before parsing', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    // {"__metadata__":{"format":"pt"},"t000000":{...},...}: n empty tensors, built by copying one template
    const n = MAX_TENSORS_PER_FILE + 1
    const entry = Buffer.from(',"t000000":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}')
    const head = Buffer.from('{"__metadata__":{"format":"pt"}')
    const json = Buffer.alloc(head.length + n * entry.length + 1)
    head.copy(json)
    for (let i = 0, at = head.length; i < n; i++, at += entry.length) {
      entry.copy(json, at)
      json.write(i.toString(36).padStart(6, '0'), at + 3, 'latin1')
    }
    json[json.length - 1] = 0x7d
    writeRawSafetensors(file, json.toString('latin1'))
    const t0 = performance.now()
    throwsError(() => openCheckpoint(dir), /safetensors header declares too many tensors \(expected at most 262144 tensors/, file)
    assert.ok(performance.now() - t0 < 1500, `refused in ${Math.round(performance.now() - t0)} ms`)
  })
})

test('countTopLevelMembers counts members of well-formed JSON, ignoring strings, nesting and __metadata__', () => {
  const count = (s: string, skip = '__metadata__'): number => countTopLevelMembers(Buffer.from(s), 1000, skip)
  assert.is(count('{}'), 0)
  assert.is(count(' { } '), 0)
  assert.is(count('{"a":1}'), 1)
  assert.is(count('{"a,b":[1,2,{"c":3,"d":4}],"d":"x\\\",\\\"y:","e":{}}'), 3)
  assert.is(count('{"\\\\":1,"b":2}'), 2)
  assert.is(count('{"__metadata__":{"a":"b","c":"d"},"w":{}}'), 1)
  assert.is(count('{"__metadata__":{},"w":{}}', ''), 2)
  assert.is(count('{"__metadata":{},"w":{}}'), 2)
  assert.is(countTopLevelMembers(Buffer.from('{"a":1,"b":2,"c":3,"d":4}'), 2), 3) // stops once past the limit
})

// ---------------------------------------------------------------------------------------------------
// 5. Pickle growth caps

test('pickle: a list of MAX_CONTAINER_ITEMS + 1 (DUP APPEND) is refused quickly', () => {
  const n = MAX_CONTAINER_ITEMS + 1
  const pkl = repeated([...PROTO, EMPTY_LIST], [DUP, APPEND], n, [STOP])
  throwsError(() => unpickle(pkl, unpickleOpts), /list has more than 4194304 items \(archive\/data\.pkl, byte \d+\)/, '/x/pytorch_model.bin')
})

test('pickle: caps on dict keys, tuple items, total items, objects and the memo (lowered for speed)', () => {
  assert.is(MAX_CONTAINER_ITEMS, 1 << 22)
  assert.is(MAX_PICKLE_ELEMENTS, 1 << 24)
  assert.is(MAX_PICKLE_OBJECTS, 1 << 22)
  assert.is(MAX_PICKLE_MEMO, 1 << 22)
  const limits = { containerItems: 1000, elements: 3000, objects: 2000, memo: 500 }
  const opts = { ...unpickleOpts, limits }
  // a dict of 1,001 keys (EMPTY_DICT, MARK, (BININT k, NONE) x 1001, SETITEMS): V8's Map throws at 2^24
  const keys = new Pickle().op(0x80, 2, EMPTY_DICT, MARK)
  for (let k = 0; k < 1001; k++) keys.int(k).op(NONE)
  throwsError(() => unpickle(keys.op(SETITEMS, STOP).bytes(), opts), /dict has more than 1000 items \(archive\/data\.pkl, byte \d+\)/)
  // a dict of 1,000 keys is fine
  const ok = new Pickle().op(0x80, 2, EMPTY_DICT, MARK)
  for (let k = 0; k < 1000; k++) ok.int(k).op(NONE)
  assert.is((unpickle(ok.op(SETITEMS, STOP).bytes(), opts) as { map: Map<unknown, unknown> }).map.size, 1000)
  // a tuple of 1,001 items
  throwsError(() => unpickle(repeated([...PROTO, MARK, NONE], [DUP], 1000, [0x74, STOP]), opts), /tuple has more than 1000 items/)
  // 4 lists of 900 items: 3,600 items in all
  const list = repeated([EMPTY_LIST], [DUP, APPEND], 900, [])
  const four = Buffer.concat([Buffer.from(PROTO), list, list, list, list, Buffer.from([STOP])])
  throwsError(() => unpickle(four, opts), /pickle adds more than 3000 items to containers \(at most one per byte, and 16777216\)/)
  // objects: 1,000 empty dicts (4 each) in a 2 kB pickle are more objects than bytes, whatever the limits
  const dicts = repeated([...PROTO, EMPTY_LIST], [EMPTY_DICT, APPEND], 1000, [STOP])
  throwsError(() => unpickle(dicts, unpickleOpts), /pickle creates more than 2004 objects \(at most one per byte, and 4194304\)/)
  // ... and with padding (NONE POP) past the limit in bytes, the absolute limit
  const padded = Buffer.concat([repeated([...PROTO], [NONE, POP], 2000, []), repeated([EMPTY_LIST], [EMPTY_DICT, APPEND], 501, [STOP])])
  throwsError(() => unpickle(padded, opts), /pickle creates more than 2000 objects/)
  // memo: NONE, then MEMOIZE x 501
  const memo = repeated([...PROTO, NONE], [MEMOIZE], 501, [STOP])
  throwsError(() => unpickle(memo, opts), /pickle memo has more than 500 entries/)
})

test('pickle: a deflated data.pkl of DUP APPEND in a torch zip is refused without growing past the cap', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'pytorch_model.bin')
    const pkl = repeated([...PROTO, EMPTY_LIST], [DUP, APPEND], 2 * MAX_CONTAINER_ITEMS, [STOP])
    writeZip(file, [{ name: 'archive/data.pkl', data: pkl, deflate: true }])
    assert.ok(fs.statSync(file).size < 100_000, 'a small file')
    const before = process.memoryUsage().rss
    throwsError(() => openTorchBin(file), /list has more than 4194304 items/, file)
    const grown = process.memoryUsage().rss - before
    assert.ok(grown < 400 << 20, `memory grew by ${grown >> 20} MB`)
  })
})

test('pickle: a GLOBAL or STACK_GLOBAL with a huge or control-character name gives a short quoted message', () => {
  const long = 'x'.repeat(1 << 20)
  const p = new Pickle().op(0x80, 4).str(long).str('\x1b[2Jsystem').op(0x93, 0x2e).bytes()
  const msg = throwsError(() => unpickle(p, unpickleOpts), /refuses to load global "x+…/)
  assert.not.match(msg, /\x1b/)
  const q = new Pickle().op(0x80, 2).global('os', 'sys\x1btem').op(0x2e).bytes()
  assert.not.match(throwsError(() => unpickle(q, unpickleOpts), /refuses to load global "os\.sys\\u001btem"/), /\x1b/)
})

// ---------------------------------------------------------------------------------------------------
// 6. Compressed storages

test('torch zip: 8 tiny tensors viewing a deflated storage declaring 1 GiB are refused before inflating', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'pytorch_model.bin')
    const numel = (1 << 30) / 4
    const tensors: TensorSpec[] = []
    for (let i = 0; i < 8; i++) tensors.push({ name: `t${i}`, key: '0', numel, offset: i * 4, shape: [4], stride: [1] })
    writeZip(file, [
      { name: 'archive/data.pkl', data: statePickle(tensors) },
      // a few bytes of "compressed" data that claim 1 GiB: never inflated
      { name: 'archive/data/0', data: new Uint8Array([0x03, 0x00]), deflate: true, raw: true, size: 1 << 30 },
    ])
    const before = inflateCount()
    const t0 = performance.now()
    throwsError(() => openTorchBin(file), /archive\/data\/0: compressed storage larger than the tensors that view it \(expected at most 128 bytes/, file)
    assert.is(inflateCount(), before, 'nothing inflated')
    assert.ok(performance.now() - t0 < 1000)
  })
})

test('torch zip: a deflated storage read by several tensors is inflated once, with the right values', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'pytorch_model.bin')
    const values = Array.from({ length: 12 }, (_, i) => i)
    writeZip(file, [
      {
        name: 'archive/data.pkl',
        data: statePickle([
          { name: 'all', key: '0', numel: 12, offset: 0, shape: [12], stride: [1] },
          { name: 'tail', key: '0', numel: 12, offset: 8, shape: [4], stride: [1] },
          { name: 't', key: '0', numel: 12, offset: 0, shape: [4, 3], stride: [1, 4] }, // transposed [3, 4]
          { name: 'tied', key: '0', numel: 12, offset: 0, shape: [3, 4], stride: [4, 1] },
        ]),
      },
      { name: 'archive/data/0', data: new Uint8Array(new Float32Array(values).buffer), deflate: true },
    ])
    const ckpt = openTorchBin(file)
    try {
      const before = inflateCount()
      assert.equal([...ckpt.readF32('all')], values)
      assert.equal([...ckpt.readF32('tail')], [8, 9, 10, 11])
      assert.equal([...ckpt.readF32('t')], [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
      assert.equal([...ckpt.readF32('tied')], values)
      assert.equal([...ckpt.readF32('all')], values)
      assert.is(inflateCount() - before, 1, 'inflated once')
    } finally {
      ckpt.close()
    }
    throwsError(() => ckpt.readF32('all'), /after close/)
  })
})

// ---------------------------------------------------------------------------------------------------
// 7. CRC-32 always checked

test('CRC-32: the table fallback matches zlib and is used to refuse a corrupt entry', () => {
  const check = Buffer.from('123456789')
  assert.is(crc32Table(check), 0xcbf43926)
  assert.is(crc32(check), 0xcbf43926)
  const random = new Uint8Array(100_003)
  for (let i = 0; i < random.length; i++) random[i] = (i * 2654435761) >>> 24
  // zlib's own CRC where this Node has it (20.15+); the known check value above covers older ones
  const zlibCrc32 = (zlib as { crc32?: (d: Uint8Array) => number }).crc32
  if (zlibCrc32) assert.is(crc32Table(random), zlibCrc32(random) >>> 0)
  assert.is(crc32Table(new Uint8Array(0)), 0)
  verifyCrc32(random, crc32(random), 'x', crc32Table)
  throwsError(() => verifyCrc32(random, crc32(random) ^ 1, 'where', crc32Table), /zip entry CRC-32 mismatch/, 'where')

  withTmp((dir) => {
    const file = path.join(dir, 'pytorch_model.bin')
    const pkl = statePickle([{ name: 'w', key: '0', numel: 2, offset: 0, shape: [2], stride: [1] }])
    const storage = new Uint8Array(new Float32Array([1, 2]).buffer)
    for (const deflate of [false, true]) {
      writeZip(file, [
        { name: 'archive/data.pkl', data: pkl, deflate, crc: (crc32(pkl) ^ 0x10) >>> 0 },
        { name: 'archive/data/0', data: storage },
      ])
      throwsError(() => openTorchBin(file), /archive\/data\.pkl: zip entry CRC-32 mismatch/, file)
      // the same archive read through the table-driven implementation, as on Node < 20.15
      const handle = RandomAccessFile.open(file)
      try {
        const zip = new ZipArchive(handle, { crc32: crc32Table })
        throwsError(() => zip.readWhole(zip.entries.get('archive/data.pkl')!, 1 << 20, 'data.pkl'), /CRC-32 mismatch/, file)
        writeZip(file + '.ok', [{ name: 'archive/data.pkl', data: pkl, deflate }])
      } finally {
        handle.close()
      }
      const ok = RandomAccessFile.open(file + '.ok')
      try {
        const zip = new ZipArchive(ok, { crc32: crc32Table })
        assert.equal(Buffer.from(zip.readWhole(zip.entries.get('archive/data.pkl')!, 1 << 20, 'data.pkl')), pkl)
      } finally {
        ok.close()
      }
    }
  })
})

// ---------------------------------------------------------------------------------------------------
// 8. No raw errors

test('FIFOs, folders and non-string paths are project errors, not hangs or TypeErrors', () => {
  withTmp((dir) => {
    throwsError(() => openSafetensors(dir), /not a regular file|is a folder/, dir)
    throwsError(() => openTorchBin(dir), /not a regular file|is a folder/, dir)
    if (process.platform !== 'win32' && spawnSync('mkfifo', [path.join(dir, 'fifo')]).status === 0) {
      throwsError(() => openSafetensors(path.join(dir, 'fifo')), /not a regular file \(found a device, pipe or socket\)/)
      throwsError(() => openTorchBin(path.join(dir, 'fifo')), /not a regular file/)
      // a FIFO named like the weights is not taken for them
      spawnSync('mkfifo', [path.join(dir, 'model.safetensors')])
      throwsError(() => openCheckpoint(dir), /no model weights found/)
    }
    throwsError(() => openSafetensors(42 as unknown as string), /safetensors file is not a path/, undefined, UsageError)
    throwsError(() => openCheckpoint(undefined as unknown as string), /model folder is not a path/, undefined, UsageError)
    throwsError(() => openCheckpoint(dir, { variant: 16 as unknown as string }), /invalid weight variant/, undefined, UsageError)
    throwsError(() => openSafetensors(path.join(dir, 'a\0b')), /cannot open file/)
    throwsError(() => readJsonFile(path.join(dir, 'a\0b'), 'config'), /cannot read config/)
  })
})

// root reads any file whatever its mode, so this check can only run as another user: skipped (and said so) as root
const canChmod = process.platform !== 'win32' && process.getuid?.() !== 0
if (!canChmod) console.log('  SKIP unreadable files (EACCES): skipped: running as root, which reads any file')
;(canChmod ? test : test.skip)('unreadable files (EACCES) are CheckpointErrors', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    writeSmallSafetensors(file)
    fs.chmodSync(file, 0)
    throwsError(() => openCheckpoint(dir), /no permission to read the file \(EACCES\)/, file)
    fs.writeFileSync(path.join(dir, 'config.json'), '{}')
    fs.chmodSync(path.join(dir, 'config.json'), 0)
    throwsError(() => readJsonFile(path.join(dir, 'config.json'), 'config', ConfigError), /cannot read config/, 'config.json', ConfigError)
  })
})

test('hostile tensor names (1 MB, control characters) give short, escaped messages', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'model.safetensors')
    const long = 'n'.repeat(1 << 20)
    writeSafetensors(file, { [long]: { dtype: 'X', shape: [0], data_offsets: [0, 0] } }, new Uint8Array(0))
    throwsError(() => openSafetensors(file), /tensor "n+…: unknown dtype/, file)
    writeSafetensors(file, { 'evil\x1b[2J\nname': { dtype: 'F32', shape: [1], data_offsets: [0, 0] } }, new Uint8Array(0))
    const msg = throwsError(() => openSafetensors(file), /tensor "evil\\u001b\[2J\\nname": byte range does not match the shape/, file)
    assert.not.match(msg, /\x1b/)
    // rank above 64
    writeSafetensors(file, { w: { dtype: 'F32', shape: Array(65).fill(1), data_offsets: [0, 4] } }, new Uint8Array(4))
    throwsError(() => openSafetensors(file), /tensor w: shape has too many dimensions \(expected at most 64, found 65\)/, file)
  })
})

test('torch zip: a huge storage key and a long shape are shown shortened', () => {
  withTmp((dir) => {
    const file = path.join(dir, 'pytorch_model.bin')
    const key = 'k'.repeat(1 << 20)
    writeZip(file, [{ name: 'archive/data.pkl', data: statePickle([{ name: 'w', key, numel: 2, offset: 0, shape: [2], stride: [1] }]) }])
    throwsError(() => openTorchBin(file), /storage "k+… is missing from the archive/, file)
    writeZip(file, [
      { name: 'archive/data.pkl', data: statePickle([{ name: 'w', key: '0', numel: 2, offset: 0, shape: Array(65).fill(1), stride: Array(65).fill(1) }]) },
      { name: 'archive/data/0', data: new Uint8Array(8) },
    ])
    throwsError(() => openTorchBin(file), /tensor size has 65 dimensions, more than 64/, file)
  })
})

test.run()
