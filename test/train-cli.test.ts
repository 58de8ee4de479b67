// `refgpt train` end to end (issue 10, items 4 and 5): the built CLI fine-tunes the tiny fixtures on tiny
// data sets and the tests read back what it wrote: the model folder (loaded again by refgpt, by torch.load
// for ModelScope), train_log.jsonl (noam lr per step, eval perplexity = exp(eval loss)), the loss curve,
// checkpoints that resume bit for bit, option and data errors that stop before anything is written, and the
// up-front memory check.
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { loadModel, loadTokenizer, openCheckpoint } from '@refgpt/core'
import { checkMemory } from '../packages/cli/src/commands/train.js'
import { modelDir, readSafetensors, refgpt } from './helpers.js'

const test = suite('train-cli')
const PYTHON = '/usr/bin/python3'
const DEVICE = ['--device', 'wasm', '--threads', '1']

let tmp = ''
const at = (...p: string[]) => path.join(tmp, ...p)
const write = (name: string, text: string) => (fs.writeFileSync(at(name), text), at(name))
const jsonl = (field: string, rows: unknown[]) => rows.map((r) => JSON.stringify(typeof r === 'string' ? { [field]: r } : r)).join('\n') + '\n'

const EN = [
  'The quick brown fox jumps over the lazy dog.',
  'A journey of a thousand miles begins with a single step.',
  'To be or not to be, that is the question.',
  'All that glitters is not gold.',
  'Hello world, this is a small test.',
  'Practice makes perfect.',
]
const ZH = ['今天终于拿到驾照了，求夸我！', '你真棒，真厉害！', '学习工作都很开心。', '大家早上好，晚安。', '程序员写代码。']

interface Row { step: number; epoch?: number; loss?: number; lr?: number; grad_norm?: number | null; eval_loss?: number; eval_ppl?: number }
const readLog = (dir: string): Row[] => fs.readFileSync(path.join(dir, 'train_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
const stepRows = (dir: string) => readLog(dir).filter((r) => r.loss !== undefined)
const evalRows = (dir: string) => readLog(dir).filter((r) => r.eval_loss !== undefined)
/** The noam schedule of the kuakua recipe: lr of optimizer step k (0-based). */
const noam = (base: number, w: number, k: number) => base * Math.min((k + 1) ** -0.5, (k + 1) * w ** -1.5)

function train(args: string[]) {
  return refgpt(['train', ...DEVICE, ...args])
}
function trainOk(args: string[]) {
  const r = train(args)
  assert.is(r.code, 0, `refgpt train ${args.join(' ')}: ${r.stderr}`)
  return r
}

const BIN = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url))

/** Runs `refgpt train` for each argument list, a few at a time (the CLI's startup dominates these short runs). */
async function trainAll(list: string[][], parallel = 4): Promise<{ code: number | null; stdout: string; stderr: string }[]> {
  const results: { code: number | null; stdout: string; stderr: string }[] = new Array(list.length)
  let next = 0
  const worker = async () => {
    while (next < list.length) {
      const i = next++
      results[i] = await new Promise((resolve) => {
        const c = spawn(process.execPath, [BIN, 'train', ...DEVICE, ...list[i]], { stdio: ['ignore', 'pipe', 'pipe'] })
        let stdout = '', stderr = ''
        c.stdout.on('data', (d) => (stdout += d))
        c.stderr.on('data', (d) => (stderr += d))
        c.on('close', (code) => resolve({ code, stdout, stderr }))
      })
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  return results
}

/** Tensor name -> { shape, bytes } of a safetensors file (the data bytes, whatever the header's metadata). */
function tensors(file: string): Map<string, { shape: number[]; dtype: string; bytes: Buffer }> {
  const { header, data } = readSafetensors(file)
  const out = new Map<string, { shape: number[]; dtype: string; bytes: Buffer }>()
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue
    const e = t as { dtype: string; shape: number[]; data_offsets: [number, number] }
    out.set(name, { shape: e.shape, dtype: e.dtype, bytes: data.subarray(e.data_offsets[0], e.data_offsets[1]) })
  }
  return out
}

/** Every tensor of a model folder (any checkpoint format) as f32, by name. */
function weights(dir: string): Map<string, { shape: number[]; data: Float32Array }> {
  const ck = openCheckpoint(dir)
  try {
    return new Map([...ck.tensors.keys()].map((n) => [n, { shape: ck.tensors.get(n)!.shape, data: ck.readF32(n) }]))
  } finally {
    ck.close()
  }
}

/** The output folder has the input's tensors (same names and shapes) with changed values. */
function assertTrainedCopy(input: string, output: string) {
  const a = weights(input), b = weights(output)
  assert.equal([...b.keys()].sort(), [...a.keys()].sort(), 'same tensor names as the input checkpoint')
  let changed = 0
  for (const [name, t] of a) {
    assert.equal(b.get(name)!.shape, t.shape, `${name}: shape`)
    const u = b.get(name)!.data
    assert.ok(u.every(Number.isFinite), `${name}: finite`)
    if (u.some((x, i) => x !== t.data[i])) changed++
  }
  assert.ok(changed > a.size / 2, `most tensors changed by training (${changed} of ${a.size})`)
}

/** A byte-level BPE with the 256 byte tokens and no merges (ids < 256): gives gpt-neo-odd (vocab 1003) a tokenizer. */
function byteTokenizer(dir: string) {
  const bs: number[] = []
  for (let b = 33; b <= 126; b++) bs.push(b)
  for (let b = 161; b <= 172; b++) bs.push(b)
  for (let b = 174; b <= 255; b++) bs.push(b)
  const cs = [...bs]
  let n = 0
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) (bs.push(b), cs.push(256 + n++))
  const vocab: Record<string, number> = {}
  bs.forEach((b, i) => (vocab[String.fromCodePoint(cs[i])] = b))
  fs.writeFileSync(path.join(dir, 'vocab.json'), JSON.stringify(vocab))
  fs.writeFileSync(path.join(dir, 'merges.txt'), '#version: 0.2\n')
}

let neo = '' // gpt-neo-odd + the byte tokenizer
test.before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'refgpt-train-cli-'))
  neo = at('gpt-neo-odd-bytes')
  fs.mkdirSync(neo)
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors']) fs.copyFileSync(path.join(modelDir('gpt-neo-odd'), f), path.join(neo, f))
  byteTokenizer(neo)
  write('en.jsonl', jsonl('src_txt', EN))
  write('en.txt', EN.join('\n') + '\n')
  write('corpus.txt', EN.slice(0, 3).join('\n') + '\n\n' + EN.slice(3).join('\n') + '\n\n' + EN.join(' ') + '\n')
  write('zh.jsonl', jsonl('src_txt', ZH))
  write('bad.jsonl', jsonl('src_txt', EN.slice(0, 2)) + '{"src_txt": "broken\n' + jsonl('src_txt', EN.slice(2)))
})
test.after(() => {
  fs.rmSync(tmp, { recursive: true, force: true })
})

test('gpt2-tiny, .jsonl src_txt + eval data: a loadable folder, a per-step log with the noam lr, eval rows per epoch, plain progress lines', () => {
  const out = at('gpt2-jsonl')
  const r = trainOk(['--model', modelDir('gpt2-tiny'), '--data', at('en.jsonl'), '--eval-data', at('en.jsonl'), '--out', out,
    '--batch-size', '2', '--epochs', '2', '--lr', '5e-3', '--warmup-steps', '3'])
  for (const f of ['model.safetensors', 'config.json', 'generation_config.json', 'vocab.json', 'merges.txt', 'train_log.jsonl', 'loss_curve.svg', 'trainer_state.json', 'optimizer.safetensors'])
    assert.ok(fs.existsSync(path.join(out, f)), `${f} in the output folder`)
  assert.equal(fs.readFileSync(path.join(out, 'config.json')), fs.readFileSync(path.join(modelDir('gpt2-tiny'), 'config.json')))
  assert.equal(readSafetensors(path.join(out, 'model.safetensors')).header.__metadata__, { format: 'pt' })
  assertTrainedCopy(modelDir('gpt2-tiny'), out)

  // 6 examples in batches of 2: 3 steps per epoch, 6 in all; lr_k = 5e-3 * min((k+1)^-0.5, (k+1) * 3^-1.5)
  const rows = stepRows(out)
  assert.equal(rows.map((x) => x.step), [1, 2, 3, 4, 5, 6])
  assert.equal(rows.map((x) => x.epoch), [0, 0, 0, 1, 1, 1])
  rows.forEach((x) => assert.is(x.lr, noam(5e-3, 3, x.step - 1), `lr of step ${x.step}`))
  assert.ok(rows.every((x) => Number.isFinite(x.loss) && x.loss! > 0 && typeof x.grad_norm === 'number' && x.grad_norm > 0))
  const ev = evalRows(out)
  assert.equal(ev.map((x) => [x.step, x.epoch]), [[3, 0], [6, 1]], 'one eval row at the end of each epoch')
  ev.forEach((x) => assert.is(x.eval_ppl, Math.exp(x.eval_loss!)))
  assert.ok(ev[1].eval_loss! < ev[0].eval_loss!, `eval loss on the training data falls: ${ev[0].eval_loss} -> ${ev[1].eval_loss}`)

  // stderr is not a TTY here: plain lines, no carriage returns or escape codes
  assert.not.match(r.stderr, /[\r\x1b]/)
  const lines = r.stderr.trim().split('\n')
  assert.match(lines[0], /^training gpt2-tiny: 6 examples, 6 steps of 2 examples, noam lr 0\.005, on wasm$/)
  assert.equal(lines.filter((l) => /^step \d+\/6  loss /.test(l)).map((l) => Number(l.split(/[ /]/)[1])), [1, 2, 3, 4, 5, 6])
  const evalLines = lines.filter((l) => l.startsWith('epoch '))
  assert.is(evalLines.length, 2)
  ev.forEach((x, i) => assert.is(evalLines[i], `epoch ${i + 1}: eval loss ${x.eval_loss!.toFixed(4)}, perplexity ${x.eval_ppl!.toFixed(3)}`))
  assert.match(r.stdout, /^saved .*gpt2-jsonl \(step 6\); log /)

  const svg = fs.readFileSync(path.join(out, 'loss_curve.svg'), 'utf8')
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"') && svg.trimEnd().endsWith('</svg>'))
  assert.is((svg.match(/<path d="M[^"]*"/)![0].match(/[ML]/g) ?? []).length, 6, 'one point per step')
  assert.is((svg.match(/<circle /g) ?? []).length, 2, 'one dot per eval')

  const g = refgpt(['generate', '--model', out, '--max-new-tokens', '3', '--device', 'js', 'Hi'])
  assert.is(g.code, 0, g.stderr)
  assert.ok(g.stdout.startsWith('Hi'))
})

test('the last eval loss is the saved model\'s: the folder reloaded by loadModel gives the same mean token loss', async () => {
  const out = at('gpt2-jsonl')
  const last = evalRows(out).at(-1)!
  const tok = loadTokenizer(out)
  const model = await loadModel(out, { device: 'wasm', threads: 1 })
  try {
    const s = model.createSession()
    let sum = 0, n = 0
    for (const text of EN) {
      const lp = await s.logProbs(tok.encode(text))
      for (const x of lp) (sum -= x), n++
    }
    s.dispose()
    assert.ok(Math.abs(sum / n - last.eval_loss!) < 1e-5, `reloaded ${sum / n} vs logged ${last.eval_loss}`)
  } finally {
    await model.dispose()
  }
})

test('gpt2-tiny, .txt one example per line and --pack blocks of --max-length (EOS between documents)', () => {
  const lines = trainOk(['--model', modelDir('gpt2-tiny'), '--data', at('en.txt'), '--out', at('gpt2-txt'), '--batch-size', '4', '--max-steps', '2'])
  assert.match(lines.stderr, /^training gpt2-tiny: 6 examples, 2 steps /)
  assert.is(stepRows(at('gpt2-txt')).length, 2)
  assertTrainedCopy(modelDir('gpt2-tiny'), at('gpt2-txt'))

  const tok = loadTokenizer(modelDir('gpt2-tiny'))
  const docs = fs.readFileSync(at('corpus.txt'), 'utf8').split('\n\n').map((p) => p.trim())
  const tokens = docs.reduce((s, d) => s + tok.encode(d).length + 1, 0)
  const blocks = Math.floor(tokens / 16)
  const p = trainOk(['--model', modelDir('gpt2-tiny'), '--data', at('corpus.txt'), '--out', at('gpt2-pack'), '--pack', '--max-length', '16', '--batch-size', '2'])
  assert.match(p.stderr, new RegExp(`^training gpt2-tiny: ${blocks} examples, ${Math.ceil(blocks / 2)} steps `))
  assert.is(stepRows(at('gpt2-pack')).length, Math.ceil(blocks / 2))
  const g = refgpt(['generate', '--model', at('gpt2-pack'), '--max-new-tokens', '3', 'Hi'])
  assert.is(g.code, 0, g.stderr)
})

test('gpt-neo-odd (local attention, odd sizes): .jsonl, .txt and --pack train; the loss falls on a repeated set with a high lr', () => {
  for (const [name, data, extra] of [['neo-jsonl', 'en.jsonl', []], ['neo-txt', 'en.txt', []], ['neo-pack', 'corpus.txt', ['--pack', '--max-length', '24']]] as const) {
    trainOk(['--model', neo, '--data', at(data), '--out', at(name), '--batch-size', '3', '--max-steps', '2', ...extra])
    assertTrainedCopy(neo, at(name))
    const g = refgpt(['generate', '--model', at(name), '--max-new-tokens', '3', 'Hi'])
    assert.is(g.code, 0, g.stderr)
  }
  // 6 sentences, all in one batch, 12 epochs at a constant lr of 1e-2: memorization
  const out = at('neo-fit')
  trainOk(['--model', neo, '--data', at('en.jsonl'), '--out', out, '--batch-size', '6', '--epochs', '12', '--lr', '1e-2',
    '--scheduler', 'constant', '--warmup-steps', '0', '--no-shuffle'])
  const loss = stepRows(out).map((r) => r.loss!)
  assert.is(loss.length, 12)
  stepRows(out).forEach((r) => assert.is(r.lr, 1e-2))
  assert.ok(loss[11] < 0.6 * loss[0], `loss ${loss[0].toFixed(3)} -> ${loss[11].toFixed(3)}`)
  assert.ok(loss.slice(1).filter((l, i) => l < loss[i]).length >= 9, `mostly decreasing: ${loss.map((l) => l.toFixed(3)).join(' ')}`)
})

test('gpt-neo-odd without tokenizer files trains on pre-tokenized input_ids rows and refuses text rows', () => {
  const ids = [[5, 17, 300, 2, 999, 1002], [40, 41, 42, 43], [7, 7, 7, 7, 7, 7, 7, 7], [1000, 1, 500]]
  write('ids.jsonl', jsonl('', ids.map((r) => ({ input_ids: r }))))
  const out = at('neo-ids')
  const r = trainOk(['--model', modelDir('gpt-neo-odd'), '--data', at('ids.jsonl'), '--out', out, '--batch-size', '2', '--epochs', '2'])
  assert.match(r.stderr, /^training gpt-neo-odd: 4 examples, 4 steps /)
  assertTrainedCopy(modelDir('gpt-neo-odd'), out)
  const g = refgpt(['generate', '--model', out, '--prompt-ids', '5,17,300', '-n', '3'])
  assert.is(g.code, 0, g.stderr)
  assert.is(g.stdout.trim().split(' ').length, 6)
  // packed ids: config.json's eos_token_id (1002) is the folder's end of text
  trainOk(['--model', modelDir('gpt-neo-odd'), '--data', at('ids.jsonl'), '--out', at('neo-ids-pack'), '--pack', '--max-length', '5', '--batch-size', '2'])

  const t = train(['--model', modelDir('gpt-neo-odd'), '--data', at('en.jsonl'), '--out', at('neo-no-tok')])
  assert.is.not(t.code, 0)
  assert.match(t.stderr, /^refgpt: error: .*gpt-neo-odd: the model folder has no tokenizer.*input_ids/)
  assert.is(t.stderr.trim().split('\n').length, 1)
  assert.not.ok(fs.existsSync(at('neo-no-tok')))
})

test('ModelScope gpt3-ms-tiny: pytorch_model.bin + configuration.json + config.json + vocab.txt that refgpt loads', async () => {
  const src = modelDir('gpt3-ms-tiny'), out = at('ms')
  const r = trainOk(['--model', src, '--data', at('zh.jsonl'), '--eval-data', at('zh.jsonl'), '--out', out, '--batch-size', '2', '--epochs', '3', '--lr', '1e-2', '--warmup-steps', '2'])
  // [CLS] text [SEP] padded to 64 positions (sequence_length 128 > the model's 64)
  assert.match(r.stderr, /^training gpt3-ms-tiny: 5 examples, 9 steps of 2 examples, noam lr 0\.01, on wasm\n/)
  for (const f of ['pytorch_model.bin', 'configuration.json', 'config.json', 'vocab.txt'])
    assert.equal(fs.readFileSync(path.join(out, f)).length > 0, true, f)
  for (const f of ['configuration.json', 'config.json', 'vocab.txt']) assert.equal(fs.readFileSync(path.join(out, f)), fs.readFileSync(path.join(src, f)), `${f} copied`)
  assert.not.ok(fs.existsSync(path.join(out, 'model.safetensors')))
  assertTrainedCopy(src, out)
  stepRows(out).forEach((x) => assert.is(x.lr, noam(1e-2, 2, x.step - 1)))
  const ev = evalRows(out)
  assert.is(ev.length, 3)
  ev.forEach((x) => assert.is(x.eval_ppl, Math.exp(x.eval_loss!)))
  assert.ok(ev[2].eval_loss! < ev[0].eval_loss!, `eval loss falls: ${ev.map((x) => x.eval_loss!.toFixed(3)).join(' ')}`)

  const g = refgpt(['generate', '--model', out, '--max-new-tokens', '3', '今天'])
  assert.is(g.code, 0, g.stderr)
  const model = await loadModel(out, { device: 'js' })
  assert.is(model.family, 'gpt3')
  await model.dispose()
})

const hasTorch = spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0
if (!hasTorch) console.log(`  SKIP train-cli vs torch.load: python3-torch is not installed (apt-get install python3-torch; ${PYTHON})`)
;(hasTorch ? test : test.skip)('Python: torch.load reads the trained pytorch_model.bin: the input\'s key set, shapes, float32, the values refgpt reads', () => {
  const src = path.join(modelDir('gpt3-ms-tiny'), 'pytorch_model.bin'), out = path.join(at('ms'), 'pytorch_model.bin')
  const py = `
import json, sys, torch
a = torch.load(sys.argv[1], map_location='cpu', weights_only=True)
b = torch.load(sys.argv[2], map_location='cpu', weights_only=True)
print(json.dumps({"same_keys": sorted(a) == sorted(b), "keys": list(b),
  "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype), "src_shape": list(a[k].shape) if k in a else None,
                  "sum": float(v.double().sum()), "contiguous": v.is_contiguous()} for k, v in b.items()}}))
`
  const r = spawnSync(PYTHON, ['-c', py, src, out], { encoding: 'utf8' })
  assert.is(r.status, 0, r.stderr)
  const got = JSON.parse(r.stdout)
  assert.ok(got.same_keys, 'torch.load: the key set equals the input checkpoint\'s')
  const mine = weights(at('ms'))
  assert.equal(got.keys.sort(), [...mine.keys()].sort())
  for (const [k, t] of Object.entries(got.tensors) as [string, { shape: number[]; dtype: string; src_shape: number[]; sum: number; contiguous: boolean }][]) {
    assert.equal(t.shape, t.src_shape, `${k}: shape`)
    assert.is(t.dtype, 'torch.float32', k)
    assert.ok(t.contiguous, k)
    const sum = mine.get(k)!.data.reduce((s, x) => s + x, 0)
    assert.ok(Math.abs(sum - t.sum) <= 1e-6 * Math.max(1, Math.abs(t.sum)) * mine.get(k)!.data.length, `${k}: sum ${sum} vs torch ${t.sum}`)
  }
})

test('--resume from checkpoint-3 ends bit-identical to the uninterrupted run (shuffle, grad-accum 2 with a short last step, clipping)', () => {
  // 5 examples in batches of 2: 3 micro-batches per epoch -> steps of 2 + 1 micro-batches, 2 steps per epoch, 3 epochs
  write('five.jsonl', jsonl('src_txt', EN.slice(0, 5)))
  const common = ['--model', neo, '--data', at('five.jsonl'), '--eval-data', at('en.jsonl'), '--batch-size', '2', '--grad-accum', '2',
    '--epochs', '3', '--lr', '2e-2', '--warmup-steps', '2', '--max-grad-norm', '0.5', '--seed', '7', '--save-steps', '3']
  const A = at('resume-A'), B = at('resume-B'), C = at('resume-C')
  trainOk([...common, '--out', A])
  const ck = path.join(A, 'checkpoint-3')
  assert.equal(fs.readdirSync(A).filter((f) => f.startsWith('checkpoint-')), ['checkpoint-3'], 'a checkpoint at step 3, none at the last step')
  assert.not.ok(fs.readdirSync(A).some((f) => f.includes('.tmp')), 'no temp files left')
  for (const f of ['model.safetensors', 'optimizer.safetensors', 'trainer_state.json', 'config.json', 'vocab.json', 'merges.txt', 'train_log.jsonl'])
    assert.ok(fs.existsSync(path.join(ck, f)), `checkpoint-3/${f}`)
  const st = JSON.parse(fs.readFileSync(path.join(ck, 'trainer_state.json'), 'utf8'))
  assert.is(st.step, 3)
  assert.is(st.totalSteps, 6)
  assert.equal([st.batcher.epoch, st.batcher.position], [1, 4], 'after step 3: epoch 1, 2 batches in')
  const rowsA = stepRows(A)
  assert.equal(rowsA.map((r) => [r.step, r.epoch]), [[1, 0], [2, 0], [3, 1], [4, 1], [5, 2], [6, 2]])
  assert.ok(rowsA.some((r) => r.grad_norm! > 0.5), 'clipping is active')
  assert.equal(evalRows(A).map((r) => r.step), [2, 4, 6])

  trainOk([...common, '--resume', ck, '--out', B])
  // the checkpoint's own arguments when left out: only --resume and --out
  const c = trainOk(['--resume', ck, '--out', C, ...DEVICE])
  assert.match(c.stderr, /resumed at step 3/)
  const final = tensors(path.join(A, 'model.safetensors'))
  for (const dir of [B, C]) {
    const t = tensors(path.join(dir, 'model.safetensors'))
    assert.equal([...t.keys()], [...final.keys()])
    for (const [name, x] of final) assert.ok(t.get(name)!.bytes.equals(x.bytes), `${path.basename(dir)}: ${name} bitwise equal to the uninterrupted run`)
    const oa = tensors(path.join(A, 'optimizer.safetensors')), ob = tensors(path.join(dir, 'optimizer.safetensors'))
    for (const [name, x] of oa) assert.ok(ob.get(name)!.bytes.equals(x.bytes), `AdamW ${name}`)
    const pick = (r: Row) => [r.step, r.epoch, r.loss, r.lr, r.grad_norm, r.eval_loss, r.eval_ppl]
    assert.equal(readLog(dir).map(pick), readLog(A).map(pick), 'the whole log: rows 1-3 from the checkpoint, 4-6 recomputed equal')
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'trainer_state.json'), 'utf8')).batcher, JSON.parse(fs.readFileSync(path.join(A, 'trainer_state.json'), 'utf8')).batcher)
  }

  // changing what the run computes is refused before anything is written
  const bad = train([...common.filter((x, i) => common[i - 1] !== '--lr' && x !== '--lr'), '--lr', '1e-3', '--resume', ck, '--out', at('resume-bad')])
  assert.is(bad.code, 2)
  assert.match(bad.stderr, /^refgpt: error: refgpt train --resume: --lr differs from the run being resumed \(expected 0\.02, found 0\.001\)/)
  assert.not.ok(fs.existsSync(at('resume-bad')))
})

test('the saved folder trains further (--model A), --max-steps caps the run and sets the linear schedule\'s length', () => {
  const A = at('resume-A'), out = at('further')
  const r = trainOk(['--model', A, '--data', at('en.jsonl'), '--out', out, '--epochs', '5', '--batch-size', '2', '--max-steps', '2',
    '--scheduler', 'linear', '--warmup-steps', '0', '--lr', '1e-3'])
  assert.match(r.stderr, /^training resume-A: 6 examples, 2 steps /)
  assert.equal(stepRows(out).map((x) => [x.step, x.lr]), [[1, 1e-3], [2, 5e-4]])
  assertTrainedCopy(A, out)
})

test('grad-accum larger than an epoch: one short step per epoch, eval after each epoch, the data order of 2 epochs', () => {
  write('three.jsonl', jsonl('src_txt', ZH.slice(0, 3)))
  const out = at('accum')
  const r = trainOk(['--model', modelDir('gpt3-ms-tiny'), '--data', at('three.jsonl'), '--eval-data', at('three.jsonl'), '--out', out,
    '--batch-size', '2', '--grad-accum', '4', '--epochs', '2'])
  assert.match(r.stderr, /^training gpt3-ms-tiny: 3 examples, 2 steps of 8 examples/)
  assert.equal(stepRows(out).map((x) => [x.step, x.epoch]), [[1, 0], [2, 1]])
  assert.equal(evalRows(out).map((x) => [x.step, x.epoch]), [[1, 0], [2, 1]])
  const st = JSON.parse(fs.readFileSync(path.join(out, 'trainer_state.json'), 'utf8')).batcher
  assert.equal([st.epoch, st.position], [1, 3], 'exactly 2 epochs of data consumed')
  assert.match(r.stderr, /\nepoch 1: eval loss [\d.]+, perplexity [\d.]+\n.*\nepoch 2: eval loss /s)
})

test('one-token examples (nothing to predict) are skipped, not a crash mid-run; a file of only those is refused up front', () => {
  write('short.txt', 'Hi\nThe quick brown fox.\nA\n')
  const r = trainOk(['--model', modelDir('gpt2-tiny'), '--data', at('short.txt'), '--out', at('short'), '--batch-size', '1', '--no-shuffle'])
  assert.match(r.stderr, /short\.txt: skipped 2 example\(s\) of one token/)
  assert.equal(stepRows(at('short')).map((x) => x.step), [1])
  write('tiny.txt', 'Hi\nA\n')
  const t = train(['--model', modelDir('gpt2-tiny'), '--data', at('tiny.txt'), '--out', at('tiny')])
  assert.is(t.code, 2)
  assert.match(t.stderr, /tiny\.txt: no example has a token to predict/)
  assert.not.ok(fs.existsSync(at('tiny')))
})

test('bad options: exit 2, one line on stderr, nothing on stdout, no output folder', async () => {
  const out = at('never')
  const base = ['--model', modelDir('gpt2-tiny'), '--data', at('en.jsonl'), '--out', out]
  const cases: [string[], RegExp][] = [
    [[...base, '--bogus'], /unknown option --bogus/],
    [[...base, 'extra'], /unexpected argument \(found "extra"\)/],
    [['--model', modelDir('gpt2-tiny'), '--out', out], /no --data/],
    [['--model', modelDir('gpt2-tiny'), '--data', at('en.jsonl')], /no --out/],
    [['--data', at('en.jsonl'), '--out', out], /no --model/],
    [[...base, '--lr', '0'], /bad --lr \(expected a number >= 5e-324, found "0"\)/],
    [[...base, '--lr', 'fast'], /bad --lr/],
    [[...base, '--epochs', '0'], /bad --epochs \(expected an integer >= 1, found "0"\)/],
    [[...base, '--batch-size', 'x'], /bad --batch-size/],
    [[...base, '--grad-accum', '1.5'], /bad --grad-accum/],
    [[...base, '--weight-decay=-1'], /bad --weight-decay \(expected a number >= 0, found "-1"\)/],
    [[...base, '--weight-decay', '-1'], /bad --weight-decay \(expected a number >= 0, found "-1"\)/],
    [[...base, '--max-length', '1'], /bad --max-length/],
    [[...base, '--max-length', '4096'], /--max-length exceeds the model context \(expected at most 128/],
    [[...base, '--scheduler', 'step'], /unknown --scheduler \(expected one of constant, constant_with_warmup, linear, cosine, noam, found "step"\)/],
    [[...base, '--warmup-steps', '0'], /the noam schedule needs --warmup-steps >= 1/],
    [[...base, '--dtype', 'q8'], /--dtype q8 cannot be trained/],
    [[...base, '--dtype', 'f16'], /--dtype f16 cannot be trained/],
    [[...base, '--device', 'gpu'], /the webgpu device cannot train \(it has no backward kernels\)/], [[...base, '--device', 'webgpu'], /cannot train/], [[...base, '--device', 'tpu'], /unknown --device/],
    [[...base, '--data', at('missing.jsonl')], /--data file not found/],
    [[...base, '--eval-data', at('missing.jsonl')], /--eval-data file not found/],
    [['--model', at('no-model'), '--data', at('en.jsonl'), '--out', out], /--model folder not found/],
    [['--model', modelDir('gpt3-ms-tiny'), '--data', at('zh.jsonl'), '--out', out, '--pack'], /--pack is for Hugging Face folders/],
    [[...base.slice(0, 4), '--out', at('en.txt')], /--out exists and is not a folder/],
  ]
  const results = await trainAll(cases.map((c) => c[0]))
  for (const [i, [args, want]] of cases.entries()) {
    const r = results[i]
    const what = `refgpt train ${args.join(' ')}`
    assert.is(r.code, 2, `${what}: exit code (stderr ${r.stderr})`)
    assert.is(r.stdout, '', what)
    assert.match(r.stderr, /^refgpt: error: [^\n]+\n$/, `${what}: one line: ${JSON.stringify(r.stderr)}`)
    assert.match(r.stderr, want, what)
    assert.not.ok(fs.existsSync(out), `${what}: no output folder`)
  }
})

test('a bad data line stops the run before the output folder exists, with FILE:LINE', () => {
  const out = at('never-data')
  for (const data of ['bad.jsonl']) {
    const r = train(['--model', modelDir('gpt2-tiny'), '--data', at(data), '--out', out])
    assert.is(r.code, 2, r.stderr)
    assert.match(r.stderr, new RegExp(`^refgpt: error: ${at(data).replace(/[.\\/]/g, '\\$&')}:3: invalid JSON \\(expected one JSON object per line`))
    assert.is(r.stderr.trim().split('\n').length, 1)
    assert.not.ok(fs.existsSync(out))
  }
  // and in the eval file too, and a row without the text field
  write('nofield.jsonl', jsonl('src_txt', EN.slice(0, 2)) + '{"text": "x"}\n')
  const e = train(['--model', modelDir('gpt2-tiny'), '--data', at('en.jsonl'), '--eval-data', at('nofield.jsonl'), '--out', out])
  assert.is(e.code, 2)
  assert.match(e.stderr, /nofield\.jsonl:3: missing field "src_txt".*--text-field/)
  assert.not.ok(fs.existsSync(out))
  // an empty eval set: no rows at all, or only examples with nothing to predict
  for (const [name, text, want] of [['empty.jsonl', '\n\n', /empty\.jsonl: no examples/], ['ones.txt', 'Hi\nA\n', /ones\.txt: no example has a token to predict/]] as const) {
    write(name, text)
    const r = train(['--model', modelDir('gpt2-tiny'), '--data', at('en.jsonl'), '--eval-data', at(name), '--out', out])
    assert.is(r.code, 2, r.stderr)
    assert.match(r.stderr, want)
    assert.not.ok(fs.existsSync(out))
  }
})

test('--resume of a folder that is not a training checkpoint: a clear error, nothing written', () => {
  const out = at('never-resume')
  const r = train(['--resume', modelDir('gpt2-tiny'), '--data', at('en.jsonl'), '--out', out])
  assert.is(r.code, 2)
  assert.match(r.stderr, /^refgpt: error: .*gpt2-tiny\/trainer_state\.json: not a refgpt training checkpoint \(expected trainer_state\.json and optimizer\.safetensors beside the weights\); hint: pass a folder written by refgpt train/)
  const m = train(['--resume', at('nowhere'), '--data', at('en.jsonl'), '--out', out])
  assert.is(m.code, 2)
  assert.match(m.stderr, /--resume folder not found/)
  assert.not.ok(fs.existsSync(out))
})

test('memory check: checkMemory refuses 6 B parameters with the GiB needed and accepts 1 M', () => {
  const gptj6b = { nLayer: 28, nEmbd: 4096, nInner: 16384, nHead: 16, nVocab: 50400 }
  const tiny = { nLayer: 2, nEmbd: 32, nInner: 128, nHead: 4, nVocab: 1000 }
  const GiB = 2 ** 30
  const fits = checkMemory(1e6, tiny, 128, 'js', 16 * GiB)
  assert.is(fits.hostBytes, 16e6)
  assert.ok(fits.deviceBytes > 8e6 && fits.deviceBytes < 16e6, String(fits.deviceBytes))
  checkMemory(1e6, tiny, 128, 'wasm', 16 * GiB)
  assert.throws(() => checkMemory(6e9, gptj6b, 128, 'js', 64 * GiB), (e: Error) =>
    /not enough memory for this training run \(expected 13\d\.\d\d GiB .* found 64\.00 GiB available\)/.test(e.message))
  assert.throws(() => checkMemory(6e9, gptj6b, 128, 'wasm', 1024 * GiB), (e: Error) => /does not fit one 4 GiB wasm memory .*found 4\d\.\d\d GiB \(6000\.0 M parameters\)/.test(e.message))
  // 125 M parameters fit a 4 GiB wasm memory at 128 tokens, not at 2048 with a 50k vocab... only by the formula's numbers
  const neo125 = { nLayer: 12, nEmbd: 768, nInner: 3072, nHead: 12, nVocab: 50257 }
  checkMemory(125e6, neo125, 128, 'wasm', 64 * GiB)
  assert.throws(() => checkMemory(125e6, neo125, 128, 'js', 2 * GiB), /GiB/)
})

test('memory check from the CLI: a 9.9 B-parameter GPT-2 (sparse checkpoint, header only) is refused before loading', () => {
  const dir = at('gpt2-huge')
  fs.mkdirSync(dir)
  for (const f of ['vocab.json', 'merges.txt']) fs.copyFileSync(path.join(modelDir('gpt2-tiny'), f), path.join(dir, f))
  const C = 4096, L = 48, V = 50257, P = 1024
  const cfg = JSON.parse(fs.readFileSync(path.join(modelDir('gpt2-tiny'), 'config.json'), 'utf8'))
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, n_embd: C, n_layer: L, n_head: 32, n_positions: P }))
  const list: [string, number[]][] = [['wte.weight', [V, C]], ['wpe.weight', [P, C]], ['ln_f.weight', [C]], ['ln_f.bias', [C]]]
  for (let l = 0; l < L; l++)
    for (const [n, s] of [['ln_1.weight', [C]], ['ln_1.bias', [C]], ['attn.c_attn.weight', [C, 3 * C]], ['attn.c_attn.bias', [3 * C]],
      ['attn.c_proj.weight', [C, C]], ['attn.c_proj.bias', [C]], ['ln_2.weight', [C]], ['ln_2.bias', [C]], ['mlp.c_fc.weight', [C, 4 * C]],
      ['mlp.c_fc.bias', [4 * C]], ['mlp.c_proj.weight', [4 * C, C]], ['mlp.c_proj.bias', [C]]] as [string, number[]][]) list.push([`h.${l}.${n}`, s])
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } }
  let off = 0
  for (const [n, s] of list) {
    const bytes = 4 * s.reduce((a, b) => a * b, 1)
    header[n] = { dtype: 'F32', shape: s, data_offsets: [off, off + bytes] }
    off += bytes
  }
  let json = JSON.stringify(header)
  while (json.length % 8) json += ' '
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(json.length))
  const file = path.join(dir, 'model.safetensors')
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json)]))
  try {
    fs.truncateSync(file, 8 + json.length + off) // a sparse 39.5 GB file: no data is ever read
  } catch (e) {
    console.log(`  SKIP memory check from the CLI: cannot make a sparse file here (${(e as Error).message})`)
    return
  }
  const out = at('never-huge')
  const r = refgpt(['train', '--model', dir, '--data', at('en.jsonl'), '--out', out, '--device', 'wasm'])
  assert.is(r.code, 2, r.stderr)
  assert.match(r.stderr, /^refgpt: error: refgpt train: the model does not fit one 4 GiB wasm memory for training \(expected weights \+ gradients \+ activations under 4 GiB, found 7\d\.\d\d GiB \(9876\.\d M parameters\)\)/)
  assert.not.ok(fs.existsSync(out))
  fs.rmSync(dir, { recursive: true, force: true })
})

test.run()
