// What a new user meets first (issue 14): the model cards' spellings of devices and dtypes, and vocab.txt
// files from a Windows checkout (CRLF).
import { mkdtempSync, readFileSync, rmSync, writeFileSync, cpSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ResourceError, UsageError, isNpuAvailable, loadModel, loadTokenizer, parseVocabTxt, pipeline, resolveDeviceName } from '@refgpt/core'
import { WEBGPU_ERROR, modelDir } from './helpers.js'

async function lastLogits(dir: string, opts: Parameters<typeof loadModel>[1]): Promise<{ device: string; logits: Float32Array }> {
  const m = await loadModel(dir, opts)
  try {
    const s = m.createSession()
    const l = await s.logits([1, 2, 3], 0)
    s.dispose()
    return { device: m.device.name, logits: Float32Array.from(l) }
  } finally {
    await m.dispose()
  }
}

test("device: transformers' spellings — 'cpu' is the default CPU device (wasm); GPU/NPU spellings without that device are clear errors", async () => {
  assert.is(resolveDeviceName('cpu'), 'wasm')
  assert.is(resolveDeviceName('cpu:0'), 'wasm')
  assert.is(resolveDeviceName(undefined), 'wasm')
  assert.is(resolveDeviceName('js'), 'js')
  assert.is(isNpuAvailable(), false) // no NPU device is registered, and this onnxruntime build has no NPU provider
  // transformers' GPU spellings mean the webgpu device
  for (const name of ['cuda:0', 'cuda', 'gpu', 'GPU:1', 'webgpu']) assert.is(resolveDeviceName(name), 'webgpu', name)
  for (const [name, re] of [['npu:0', /no NPU here .*no NPU execution provider/], ['tpu', /unknown device/]] as const)
    assert.throws(() => resolveDeviceName(name), (e: Error) => e instanceof UsageError && re.test(e.message) && !e.message.includes('\n'), name)
  const dir = modelDir('gpt2-tiny')
  const cpu = await lastLogits(dir, { device: 'cpu' })
  const wasm = await lastLogits(dir, { device: 'wasm' })
  assert.is(cpu.device, 'wasm')
  assert.equal(cpu.logits, wasm.logits) // the same device, bit for bit
  // 'cuda' promises a GPU: where the only WebGPU adapter is a CPU driver (SwiftShader here and in CI), or
  // there is none, it is one ResourceError line pointing at "cpu", never a silent run on the CPU driver
  let onGpu: Awaited<ReturnType<typeof loadModel>> | null = null
  try {
    onGpu = await loadModel(dir, { device: 'cuda' })
  } catch (e) {
    assert.instance(e, ResourceError)
    assert.not.match((e as Error).message, /\n/)
    assert.match((e as Error).message, WEBGPU_ERROR === null ? /a GPU was asked for, but the only WebGPU adapter here is .*\(a CPU driver\).*hint: use device "cpu"/ : /webgpu device/)
  }
  if (onGpu) {
    // a machine with a real GPU adapter: it runs there
    assert.is((onGpu.device as unknown as { adapter: { cpu: boolean } }).adapter.cpu, false)
    await onGpu.dispose()
  }
  // the GPT-Neo card's call, line by line: device = "npu:0" if is_torch_npu_available() else "cpu"
  const gen = await pipeline('text-generation', modelDir('gpt-neo-tiny'), { device: isNpuAvailable() ? 'npu:0' : 'cpu' })
  try {
    assert.is(gen.model.device.name, 'wasm')
    const out = await gen('Hello', { max_new_tokens: 3, do_sample: false })
    assert.ok(typeof out[0].generated_text === 'string' && out[0].generated_text.startsWith('Hello'))
  } finally {
    await gen.dispose()
  }
})

test("dtype: the CLI's lower-case spellings work in loadModel ('q8' was a TypeError), anything else is a UsageError", async () => {
  const dir = modelDir('gpt2-tiny')
  const lower = await lastLogits(dir, { device: 'js', dtype: 'q8' as never })
  const upper = await lastLogits(dir, { device: 'js', dtype: 'Q8' })
  const f32 = await lastLogits(dir, { device: 'js' })
  assert.equal(lower.logits, upper.logits)
  assert.ok(lower.logits.some((x, i) => x !== f32.logits[i]), 'q8 storage changes the logits (so it was applied)')
  const bf = await lastLogits(dir, { device: 'js', dtype: 'bfloat16' as never })
  assert.equal(bf.logits, (await lastLogits(dir, { device: 'js', dtype: 'BF16' })).logits)
  for (const bad of ['int4', '', 7])
    try {
      await loadModel(dir, { device: 'js', dtype: bad as never })
      assert.unreachable(`dtype ${String(bad)}`)
    } catch (e) {
      assert.instance(e, UsageError)
      assert.match((e as Error).message, /unknown dtype \(expected F32, F16, BF16, Q8 or Q4/)
    }
})

test('vocab.txt with CRLF (a Windows checkout) or lone CR line ends: the same tokens, as Python text mode reads them', () => {
  assert.equal(parseVocabTxt('[PAD]\r\n[UNK]\r\n你\r\n'), ['[PAD]', '[UNK]', '你'])
  assert.equal(parseVocabTxt('[PAD]\r[UNK]\r\n好'), ['[PAD]', '[UNK]', '好'])
  assert.equal(parseVocabTxt('a\nb\n'), ['a', 'b'])
  const src = modelDir('gpt3-ms-tiny')
  const tmp = mkdtempSync(join(tmpdir(), 'refgpt-crlf-'))
  try {
    cpSync(src, tmp, { recursive: true })
    const lf = readFileSync(join(src, 'vocab.txt'), 'utf8')
    assert.ok(!lf.includes('\r'))
    writeFileSync(join(tmp, 'vocab.txt'), lf.replace(/\n/g, '\r\n'))
    const text = '今天天气很好,hello world [SEP]'
    assert.equal(loadTokenizer(tmp).encode(text), loadTokenizer(src).encode(text))
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
})

test.run()
