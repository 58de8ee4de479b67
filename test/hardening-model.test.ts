// Hostile config.json (and friends) through loadModel / inspectModel / the CLI (issue 13): every
// reproducer of the fuzz run fails fast with a one-line refgpt error, before the device allocates
// anything; the memory budget refuses what cannot fit; model-folder files are read through insideFolder.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import {
  CheckpointError, ConfigError, RefgptError, ResourceError, UsageError, createJsDevice, createWasmDevice, inspectModel, loadModel,
  loadRandomModel, wasmMemoryBuffers, type Device,
} from '@refgpt/core'
import { modelDir, readSafetensors, refgpt, writeSafetensors, linkTest } from './helpers.js'

const test = suite('hardening: model configs')
const root = mkdtempSync(join(tmpdir(), 'refgpt-harden-model-'))
let n = 0

/** A copy of a fixture model folder with config.json patched (a null value deletes the key). */
function variant(name: string, patch: Record<string, unknown> = {}, edit?: (dir: string) => void): string {
  const dir = join(root, `m${n++}`)
  cpSync(modelDir(name), dir, { recursive: true })
  rmSync(join(dir, 'golden.safetensors'), { force: true })
  const file = join(dir, 'config.json')
  const cfg = JSON.parse(readFileSync(file, 'utf8'))
  for (const [k, v] of Object.entries(patch)) if (v === null) delete cfg[k]; else cfg[k] = v
  writeFileSync(file, JSON.stringify(cfg))
  edit?.(dir)
  return dir
}

/** A js device that counts every allocation (buffers and weights). */
function countingDevice(): { dev: Device; count: () => number } {
  const dev = createJsDevice()
  let allocs = 0
  const counted = new Proxy(dev, {
    get(t, k) {
      const v = (t as unknown as Record<string | symbol, unknown>)[k]
      if ((k === 'alloc' || k === 'weight' || k === 'weightF32') && typeof v === 'function')
        return (...args: unknown[]) => {
          allocs++
          return (v as (...a: unknown[]) => unknown).apply(t, args)
        }
      return v
    },
  })
  return { dev: counted, count: () => allocs }
}

/** `fn` rejects with an error of class `cls` whose one-line message matches `re`, within `ms`. */
async function failsFast(fn: () => unknown, cls: new (...a: any[]) => RefgptError, re: RegExp, ms = 3000): Promise<string> {
  const t0 = performance.now()
  let err: unknown
  try {
    await fn()
  } catch (e) {
    err = e
  }
  const took = performance.now() - t0
  assert.ok(err !== undefined, `expected a ${cls.name}`)
  assert.ok(err instanceof cls, `expected a ${cls.name}, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`)
  const msg = (err as Error).message
  assert.not.match(msg, /\n/, 'one line')
  assert.match(msg, re)
  assert.ok(took < ms, `took ${took.toFixed(0)} ms`)
  return msg
}

// --- 1: counts bounded before anything per layer is built --------------------------------------

test('n_layer 2^31-1 is a ConfigError at once (no per-layer table)', async () => {
  const dir = variant('gpt2-tiny', { n_layer: 2 ** 31 - 1 })
  await failsFast(() => loadModel(dir, { device: 'js' }), ConfigError, /n_layer.*4096/)
  await failsFast(() => inspectModel(dir), ConfigError, /n_layer/)
})

test('n_layer above the checkpoint\'s tensor count is refused before the dry run', async () => {
  const dir = variant('gpt2-tiny', { n_layer: 4000 })
  await failsFast(() => loadModel(dir, { device: 'js' }), ConfigError, /config\.json: field "n_layer": more layers than the checkpoint has tensors/)
})

test('gpt3 with 1e6 layers, and with more layers than tensors: ConfigError fast (strict key check never walks them)', async () => {
  await failsFast(() => loadModel(variant('gpt3-ms-tiny', { num_hidden_layers: 1_000_000 }), { device: 'js' }), ConfigError, /num_hidden_layers/)
  await failsFast(() => loadModel(variant('gpt3-ms-tiny', { num_hidden_layers: 4096 }), { device: 'js' }), ConfigError, /num_hidden_layers.*more layers than the checkpoint has tensors/)
  // one layer too many is still the strict check's missing-key report
  await failsFast(() => loadModel(variant('gpt3-ms-tiny', { num_hidden_layers: 4 }), { device: 'js' }), CheckpointError, /strict load.*missing language_model\.transformer\.layers\.3\./)
})

test('200,000 attention_types kinds: a ConfigError, no spread overflow', async () => {
  const kinds = Array.from({ length: 200_000 }, (_, i) => (i % 2 ? 'local' : 'global'))
  await failsFast(() => loadModel(variant('gpt-neo-tiny', { attention_types: [[kinds, 1]] }), { device: 'js' }), ConfigError, /attention_types.*more layers than num_layers/)
  await failsFast(() => loadModel(variant('gpt-neo-tiny', { attention_types: [[kinds.slice(0, 1000), 10000]] }), { device: 'js' }), ConfigError, /attention_types/)
})

test('n_inner 2^31-1 is a CheckpointError from the dry run: the device allocates nothing', async () => {
  for (const [name, key] of [['gpt2-tiny', 'n_inner'], ['gpt-j-tiny', 'n_inner'], ['gpt-neo-tiny', 'intermediate_size']] as const) {
    const { dev, count } = countingDevice()
    await failsFast(() => loadModel(variant(name, { [key]: 2 ** 31 - 1 }), { device: dev }), CheckpointError, /shape disagrees with config\.json/)
    assert.is(count(), 0, `${name}: allocations`)
  }
})

test('a bad shape in the LAST layer is found before the first weight is placed (full dry run first)', async () => {
  const dir = variant('gpt2-tiny', {}, (d) => {
    const file = join(d, 'model.safetensors')
    const { header, data } = readSafetensors(file)
    const t = header['h.1.mlp.c_fc.weight'] ?? header['transformer.h.1.mlp.c_fc.weight']
    t.shape = [t.shape[1], t.shape[0]] // same bytes, transposed shape
    writeSafetensors(file, header, data)
  })
  const { dev, count } = countingDevice()
  await failsFast(() => loadModel(dir, { device: dev }), CheckpointError, /h\.1\.mlp\.c_fc\.weight: shape disagrees/)
  assert.is(count(), 0, 'nothing allocated')
})

test('n_embd / n_head huge but divisible, vocab_size 2^31-1: CheckpointError, nothing allocated', async () => {
  for (const patch of [{ n_embd: 2 ** 30, n_head: 2 ** 30 }, { n_embd: 2 ** 30, n_head: 4 }, { vocab_size: 2 ** 31 - 1 }]) {
    const { dev, count } = countingDevice()
    await failsFast(() => loadModel(variant('gpt2-tiny', patch), { device: dev }), CheckpointError, /shape disagrees/)
    assert.is(count(), 0)
  }
})

// --- 2: the memory budget ------------------------------------------------------------------------

test('GPT-J n_positions 1e8 (no tensor bounds it): ResourceError at once, nothing allocated', async () => {
  const dir = variant('gpt-j-tiny', { n_positions: 1e8 })
  // wasm: one layer's KV cache cannot fit in a 4 GiB wasm32 memory
  const w = await failsFast(() => loadModel(dir, { device: 'wasm' }), ResourceError, /wasm32 memory/)
  assert.match(w, /--max-context/)
  // js: more than the memory given
  const { dev, count } = countingDevice()
  const j = await failsFast(() => loadModel(dir, { device: dev, maxMemory: 8 * 2 ** 30 }), ResourceError, /not enough memory/)
  assert.match(j, /8589934592 bytes/)
  assert.match(j, /KV cache .*100000000 positions/)
  assert.is(count(), 0)
  // the hint's context is the longest that fits
  const fit = Number(/--max-context (\d+) or less/.exec(j)?.[1])
  assert.ok(fit > 1000 && fit < 1e8, `suggested ${fit}`)
  assert.is(inspectModel(dir, { device: 'js', maxMemory: 8 * 2 ** 30, maxContext: fit }).memory.fits, true)
  assert.is(inspectModel(dir, { device: 'js', maxMemory: 8 * 2 ** 30, maxContext: fit + 1 }).memory.fits, false)
  // and with the memory this machine has (1.6 TB of KV cache at 2^31-1 positions)
  await failsFast(() => loadModel(variant('gpt-j-tiny', { n_positions: 2 ** 31 - 1 }), { device: 'js' }), ResourceError, /not enough memory/)
  // a context that fits loads
  const m = await loadModel(dir, { device: 'js', maxContext: 64 })
  assert.is(m.info.maxContext, 64)
  await m.dispose()
})

test('maxMemory too small: ResourceError naming bytes needed (with the breakdown) and available', async () => {
  const msg = await failsFast(() => loadModel(modelDir('gpt2-tiny'), { device: 'js', maxMemory: 1000 }), ResourceError, /not enough memory/)
  assert.match(msg, /expected at most .*\(1000 bytes\)/)
  assert.match(msg, /found [\d.]+ MiB \(\d+ bytes\) needed = weights .* \+ KV cache .* \+ activations /)
  assert.match(msg, /hint: .*--max-context.*--max-memory/)
})

test('maxMemory large enough: loads, and info.memory is the estimate checked (total = weights + kvCache + activations)', async () => {
  const m = await loadModel(modelDir('gpt2-tiny'), { device: 'js', maxMemory: 2 ** 40 })
  const e = m.info.memory
  assert.is(e.available, 2 ** 40)
  assert.is(e.availableFrom, 'maxMemory')
  assert.ok(e.fits)
  assert.is(e.total, e.weights + e.kvCache + e.activations)
  assert.ok(e.weights >= m.info.weightBytes)
  assert.is(e.kvCache, m.info.kvCacheBytes)
  const s = m.createSession()
  const logits = await s.forward([1, 2, 3], 0)
  assert.ok(Number.isFinite(logits[0]))
  s.dispose()
  await m.dispose()
  // inspectModel gives the same estimate
  const info = inspectModel(modelDir('gpt2-tiny'), { device: 'js', maxMemory: 2 ** 40 })
  assert.equal(info.memory, e)
})

test('wasm: the estimate covers what the memories hold after a forward, in f32, q8 and q4; it counts the scratch a fresh memory holds', async () => {
  for (const dtype of ['F32', 'Q8', 'Q4'] as const) {
    const m = await loadModel(modelDir('gpt-neo-tiny'), { device: 'wasm', threads: 2, dtype, maxMemory: 2 ** 40, maxContext: 64 })
    const s = m.createSession()
    await s.forward(Array.from({ length: 40 }, (_, i) => (i * 7) % 50), 0)
    await s.forward([3], 40)
    const used = wasmBytesUsed(m.device)
    assert.ok(used <= m.info.memory.total, `${dtype}: the memories hold ${used} bytes, the estimate is ${m.info.memory.total}`)
    s.dispose()
    await m.dispose()
  }
  // what the device allocates in a memory before any weight (row staging, one matmul scratch slot per thread)
  const arch = inspectModel(modelDir('gpt-neo-tiny')).arch
  for (const threads of [1, 2, 3]) {
    const dev = await createWasmDevice({ threads })
    const fresh = wasmBytesUsed(dev), counted = wasmMemoryBuffers(arch, threads, 'F32')
    assert.ok(fresh <= counted && counted - fresh < 4096, `${threads} threads: a fresh memory holds ${fresh} bytes, the planner counts ${counted}`)
    await (dev as unknown as { dispose(): Promise<void> }).dispose()
  }
})

function wasmBytesUsed(dev: Device): number {
  const core = (dev as unknown as { core: { memories: { bytesUsed: number; base: number }[] } }).core
  return core.memories.reduce((sum, mem) => sum + mem.bytesUsed - mem.base, 0)
}

test('maxMemory must be a whole number of bytes >= 1', async () => {
  for (const bad of [0, -1, 1.5, NaN, '1G' as unknown as number]) await failsFast(() => loadModel(modelDir('gpt2-tiny'), { device: 'js', maxMemory: bad }), UsageError, /maxMemory/)
})

test('GPT-J rotary table is sized by maxContext, with the same logits', async () => {
  const ids = [464, 2068, 7586, 21831, 18045]
  const full = await loadModel(modelDir('gpt-j-tiny'), { device: 'js' })
  const short = await loadModel(modelDir('gpt-j-tiny'), { device: 'js', maxContext: 8 })
  assert.is((short.weights.rotary[0] as unknown as Float32Array).length, 8 * short.arch.rotaryDim)
  const a = await full.createSession().logits(ids, 0), b = await short.createSession().logits(ids, 0)
  assert.equal(Array.from(b), Array.from(a))
  await full.dispose()
  await short.dispose()
})

test('random-weight models go through the same budget; a huge split table is refused', async () => {
  await failsFast(() => loadRandomModel({ model_type: 'gptj', n_embd: 32, n_head: 4, n_layer: 2, rotary_dim: 4, n_positions: 1e8, vocab_size: 64 }, { device: 'js', maxMemory: 2 ** 30 }), ResourceError, /not enough memory/)
  await failsFast(() => loadRandomModel({ model_type: 'gpt2', n_embd: 32, n_head: 4, n_layer: 1, n_positions: 16, vocab_size: 2 ** 31 - 1 }, { device: 'js', maxBufferBytes: 1024 }), ResourceError, /too many device buffers/)
  await failsFast(() => loadRandomModel({ model_type: 'gpt2', n_embd: 32, n_head: 4, n_layer: 1, n_positions: 16, vocab_size: 2 ** 31 - 1 }, { device: 'js' }), ResourceError, /not enough memory/)
  await failsFast(() => loadRandomModel('gpt-neo-125M', { device: 'js', layers: 1e9 }), UsageError, /layer count/)
})

test('devices: an allocation past 4 GiB (wasm) or the host (js) is a ResourceError', async () => {
  const wasm = await createWasmDevice({ threads: 1 })
  try {
    await failsFast(() => wasm.alloc(2 ** 31), ResourceError, /wasm device: out of memory .*8192\.0 MiB/)
  } finally {
    await wasm.dispose()
  }
  await failsFast(() => createJsDevice().alloc(2 ** 40), ResourceError, /js device: out of memory/)
  await failsFast(() => loadModel(modelDir('gpt2-tiny'), { device: 'wasm', memoryBytes: 2 ** 33 }), UsageError, /memoryBytes/)
})

// --- 3: config files read through insideFolder ------------------------------------------------------


linkTest(test, 'config files linking out of the folder')('config.json / generation_config.json / configuration.json linking out of the folder are refused (followSymlinks allows)', async () => {
  const outside = join(root, `outside${n++}`)
  mkdirSync(outside)
  const linkOut = (file: string) => (d: string) => {
    cpSync(join(d, file), join(outside, `${n}-${file}`))
    rmSync(join(d, file))
    symlinkSync(join(outside, `${n++}-${file}`), join(d, file))
  }
  for (const [name, file] of [['gpt2-tiny', 'config.json'], ['gpt-j-tiny', 'generation_config.json'], ['gpt3-ms-tiny', 'configuration.json'], ['gpt3-ms-tiny', 'vocab.txt']] as const) {
    const dir = variant(name, {}, linkOut(file))
    await failsFast(() => loadModel(dir, { device: 'js' }), ConfigError, new RegExp(`${file.replace('.', '\\.')}: file is a link to a place outside the model folder`))
    const m = await loadModel(dir, { device: 'js', followSymlinks: true })
    await m.dispose()
  }
})

test('vocab.txt that is a directory, generation_config.json that is not an object: ConfigError', async () => {
  const d1 = variant('gpt3-ms-tiny', {}, (d) => {
    rmSync(join(d, 'vocab.txt'))
    mkdirSync(join(d, 'vocab.txt'))
  })
  await failsFast(() => loadModel(d1, { device: 'js' }), ConfigError, /vocab\.txt.*not a regular file/)
  const d2 = variant('gpt2-tiny', {}, (d) => writeFileSync(join(d, 'generation_config.json'), '[1, 2]'))
  await failsFast(() => loadModel(d2, { device: 'js' }), ConfigError, /generation_config\.json is not a JSON object/)
})

// --- 4: other config values ------------------------------------------------------------------------

test('layer_norm_epsilon, token id lists, rotary_dim: ConfigError naming the field', async () => {
  for (const [name, patch, re] of [
    ['gpt2-tiny', { layer_norm_epsilon: 1e300 }, /layer_norm_epsilon/],
    ['gpt2-tiny', { layer_norm_epsilon: -1 }, /layer_norm_epsilon/],
    ['gpt2-tiny', { layer_norm_epsilon: 'x' }, /layer_norm_epsilon/],
    ['gpt3-ms-tiny', { layernorm_epsilon: 2 }, /layernorm_epsilon/],
    ['gpt2-tiny', { eos_token_id: Array.from({ length: 5000 }, (_, i) => i) }, /eos_token_id.*at most 1024/],
    ['gpt2-tiny', { bos_token_id: 1e300 }, /bos_token_id/],
    ['gpt-j-tiny', { rotary_dim: 64 }, /rotary_dim/],
    ['gpt-neo-tiny', { num_layers: 0 }, /num_layers/],
  ] as const) await failsFast(() => loadModel(variant(name, patch as Record<string, unknown>), { device: 'js' }), ConfigError, re)
})

test('window_size 2^31-1 loads and runs as global attention (no overflow)', async () => {
  const m = await loadModel(variant('gpt-neo-tiny', { window_size: 2 ** 31 - 1 }), { device: 'wasm', threads: 1 })
  const g = await loadModel(variant('gpt-neo-tiny', { attention_types: [[['global'], 4]] }), { device: 'wasm', threads: 1 })
  const ids = Array.from({ length: 20 }, (_, i) => i * 11)
  assert.equal(Array.from(await m.createSession().logits(ids, 0)), Array.from(await g.createSession().logits(ids, 0)))
  await m.dispose()
  await g.dispose()
})

test.run()

// --- the CLI (the built dist: node scripts/build.mjs) ------------------------------------------------

const cli = suite('hardening: CLI memory options')

cli('inspect --json prints the estimate: total = weights + kvCache + activations, available = --max-memory', () => {
  const r = refgpt(['inspect', modelDir('gpt2-tiny'), '--json', '--max-memory', '1.5GiB', '--device', 'js'])
  assert.is(r.code, 0, r.stderr)
  const m = JSON.parse(r.stdout).memory
  assert.is(m.total, m.weights + m.kvCache + m.activations)
  assert.is(m.available, 1.5 * 2 ** 30)
  assert.is(m.fits, true)
  const text = refgpt(['inspect', modelDir('gpt2-tiny'), '--max-memory', '512M']).stdout
  assert.match(text, /memory\s+weights .* \+ KV cache .* \+ activations .* = /)
  assert.match(text, /available\s+512\.0 MiB \(--max-memory\)/)
})

cli('--max-memory: a bad size is a usage error (exit 2, one line, nothing printed)', () => {
  for (const cmd of ['generate', 'inspect']) {
    for (const bad of ['lots', '0', '-1G', '1.5X', '']) {
      const r = refgpt([cmd, '--model', modelDir('gpt2-tiny'), '--max-memory', bad, ...(cmd === 'generate' ? ['Hello', '-n', '1'] : [])])
      assert.is(r.code, 2, `${cmd} --max-memory ${JSON.stringify(bad)}: ${r.stderr}`)
      assert.is(r.stdout, '')
      assert.is(r.stderr.trim().split('\n').length, 1)
      assert.match(r.stderr, /^refgpt: error: refgpt \w+: (bad --max-memory|Option '--max-memory')/) // "-1G" looks like an option to parseArgs
    }
  }
})

cli('--max-context sizes the estimate; a bad one is a usage error', () => {
  const r = refgpt(['inspect', modelDir('gpt2-tiny'), '--json', '--max-context', '16'])
  assert.is(r.code, 0, r.stderr)
  const m = JSON.parse(r.stdout).memory
  assert.is(m.maxContext, 16)
  assert.is(m.kvCache, 2 * 2 * 16 * 32 * 4) // K and V, 2 layers, 16 positions, C = 32, f32
  const bad = refgpt(['generate', '--model', modelDir('gpt2-tiny'), 'Hello', '--max-context', '0'])
  assert.is(bad.code, 2)
  assert.match(bad.stderr, /^refgpt: error: refgpt generate: bad --max-context/)
  const big = refgpt(['generate', '--model', modelDir('gpt2-tiny'), 'Hello', '--max-context', '129'])
  assert.is(big.code, 2)
  assert.match(big.stderr, /maxContext out of range/)
})

cli('generate --max-memory too small: one-line ResourceError, exit 1, nothing printed', () => {
  const r = refgpt(['generate', '--model', modelDir('gpt2-tiny'), 'Hello', '-n', '2', '--max-memory', '1K'])
  assert.is(r.code, 1, r.stderr)
  assert.is(r.stdout, '')
  assert.is(r.stderr.trim().split('\n').length, 1)
  assert.match(r.stderr, /not enough memory .*\(1024 bytes\).*needed/)
})

linkTest(cli, 'CLI --follow-symlinks')('--follow-symlinks: a config.json linking out is refused without it and read with it', () => {
  const dir = variant('gpt2-tiny', {}, (d) => {
    const out = join(root, `cfg${n++}.json`)
    cpSync(join(d, 'config.json'), out)
    rmSync(join(d, 'config.json'))
    symlinkSync(out, join(d, 'config.json'))
  })
  const no = refgpt(['inspect', dir])
  assert.is(no.code, 1)
  assert.match(no.stderr, /config\.json: file is a link to a place outside the model folder/)
  const yes = refgpt(['generate', '--model', dir, '--follow-symlinks', 'Hello', '-n', '2'])
  assert.is(yes.code, 0, yes.stderr)
})

cli.after(() => rmSync(root, { recursive: true, force: true }))
cli.run()
