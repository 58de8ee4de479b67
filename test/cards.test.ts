// The model cards' snippets, translated line by line into JS (each Python line in the comment above its
// translation), run against the fixtures placed in temp Hugging Face / ModelScope caches under the real ids:
//   EleutherAI/gpt-neo-1.3B                    gpt-neo-tiny, Hugging Face hub cache (refs/main -> snapshots/<commit>)
//   AI-ModelScope/gpt-j-6b                     gpt-j-tiny + ModelScope's configuration.json, ModelScope 1.23-1.37 layout
//   damo/nlp_gpt3_kuakua-robot_chinese-large   gpt3-ms-tiny, ModelScope 1.38+ layout (models/org--name/snapshots/master)
// Each result is checked against the same generation through the lower-level API on the fixture folder, and
// the kuakua texts against ModelScope's own pipeline output (golden.json pipeline_cases).
import { createHash } from 'node:crypto'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import {
  UsageError,
  WordPieceTokenizer,
  folderKind,
  generate,
  isNpuAvailable,
  loadModel,
  loadTokenizer,
  modelscope,
  modelscopeGenerate,
  modelscopePostprocess,
  pipeline,
  type Model,
  type Tokenizer,
} from '@refgpt/core'
import { loadGolden, modelDir } from './helpers.js'

const test = suite('model cards')
const root = mkdtempSync(join(tmpdir(), 'refgpt-cards-'))
const HF = join(root, 'hf'), MS = join(root, 'ms')
const COMMIT = createHash('sha1').update('gpt-neo card').digest('hex')
const ENV = ['HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'XDG_CACHE_HOME', 'TRANSFORMERS_CACHE', 'MODELSCOPE_CACHE', 'HOME'] as const
const saved = ENV.map((k) => [k, process.env[k]] as const)

function copyModel(src: string, dir: string, extra: Record<string, string> = {}): string {
  mkdirSync(dir, { recursive: true })
  const files = readdirSync(src).filter((f) => statSync(join(src, f)).isFile())
  for (const f of files)
    if (!f.startsWith('golden') && !/^model\..+\.safetensors$/.test(f) && !(f === 'pytorch_model.bin' && files.includes('model.safetensors'))) copyFileSync(join(src, f), join(dir, f))
  for (const [f, text] of Object.entries(extra)) writeFileSync(join(dir, f), text)
  return dir
}

test.before(() => {
  // the caches (hub snapshots as plain files, as huggingface_hub makes them where symlinks are not allowed;
  // test/hub.test.ts covers the symlinked form)
  const repo = join(HF, 'models--EleutherAI--gpt-neo-1.3B')
  copyModel(modelDir('gpt-neo-tiny'), join(repo, 'snapshots', COMMIT))
  mkdirSync(join(repo, 'refs'))
  writeFileSync(join(repo, 'refs', 'main'), COMMIT)
  copyModel(modelDir('gpt-j-tiny'), join(MS, 'models', 'AI-ModelScope', 'gpt-j-6b'), {
    'configuration.json': JSON.stringify({ framework: 'pytorch', task: 'text-generation', allow_remote: true }),
  })
  copyModel(modelDir('gpt3-ms-tiny'), join(MS, 'models', 'damo--nlp_gpt3_kuakua-robot_chinese-large', 'snapshots', 'master'))
  for (const k of ENV) delete process.env[k]
  process.env.HOME = join(root, 'home')
  process.env.HF_HUB_CACHE = HF
  process.env.MODELSCOPE_CACHE = MS
})

test.after(() => {
  for (const [k, v] of saved) if (v === undefined) delete process.env[k]
  else process.env[k] = v
  rmSync(root, { recursive: true, force: true })
})

/** A fixture folder through the lower-level API. */
async function lowLevel<T>(name: string, fn: (m: Model, tok: Tokenizer) => Promise<T>): Promise<T> {
  const m = await loadModel(modelDir(name))
  try {
    return await fn(m, loadTokenizer(modelDir(name)))
  } finally {
    await m.dispose()
  }
}

/** transformers' generated_text for a prompt and its generated ids: the prompt + the decoded new text. */
function generatedText(tok: Tokenizer, text: string, ids: number[]): string {
  const opts = { skipSpecialTokens: true, cleanUpTokenizationSpaces: true }
  return text + tok.decode(ids, opts).slice(tok.decode(tok.encode(text), opts).length)
}

test('GPT-Neo card (EleutherAI/gpt-neo-1.3B), transformers convention, by id from the hub cache', async () => {
  // from transformers import pipeline
  // device = "npu:0" if is_torch_npu_available() else "cpu"
  const device = isNpuAvailable() ? 'npu:0' : 'cpu'
  // generator = pipeline('text-generation', model='EleutherAI/gpt-neo-1.3B', device=device)
  const generator = await pipeline('text-generation', 'EleutherAI/gpt-neo-1.3B', { device })
  try {
    // generator("EleutherAI has", do_sample=True, min_length=50)
    const out = await generator('EleutherAI has', { do_sample: true, min_length: 50 })

    assert.is(out.length, 1)
    assert.ok(out[0].generated_text!.startsWith('EleutherAI has'), out[0].generated_text)
    assert.is(generator.model.family, 'gpt_neo')
    assert.is(generator.model.device.name, 'wasm')
    assert.is(generator.model.info.dir, join(HF, 'models--EleutherAI--gpt-neo-1.3B', 'snapshots', COMMIT))
    // the same call with a seed (set_seed(42) in the card's older version) is the lower-level generation, exactly
    const seeded = await generator('EleutherAI has', { do_sample: true, min_length: 50, seed: 42 })
    const ids = await generator('EleutherAI has', { do_sample: true, min_length: 50, seed: 42, return_tensors: true })
    const want = await lowLevel('gpt-neo-tiny', async (m, tok) => {
      const r = await generate(m, tok.encode('EleutherAI has'), { do_sample: true, min_length: 50, seed: 42 })
      return { ids: r.sequences[0].ids, text: generatedText(tok, 'EleutherAI has', r.sequences[0].ids), eos: r.sequences[0].ids.includes(50256) }
    })
    assert.equal(ids[0].generated_token_ids, want.ids)
    assert.is(seeded[0].generated_text, want.text)
    assert.not.ok(want.eos, 'min_length keeps the eos id out')
  } finally {
    await generator.dispose()
  }
})

test('GPT-J through ModelScope (AI-ModelScope/gpt-j-6b): the ModelScope call, result.text, the HF family with HF generation', async () => {
  assert.is(folderKind('AI-ModelScope/gpt-j-6b'), 'hf', "configuration.json beside a config.json with model_type: the family is config.json's")
  // from modelscope.pipelines import pipeline
  // from modelscope.utils.constant import Tasks
  const { pipeline: msPipeline, Tasks } = modelscope
  // text_generation = pipeline(Tasks.text_generation, model='AI-ModelScope/gpt-j-6b')
  const text_generation = await msPipeline(Tasks.text_generation, 'AI-ModelScope/gpt-j-6b')
  try {
    // result = text_generation('The capital of France is')
    const result = await text_generation('The capital of France is')
    // print(result['text'])
    const text = result.text

    assert.is(text_generation.mode, 'hf')
    assert.is(text_generation.model.family, 'gptj')
    assert.is(text_generation.model.modelscopeConfig, null)
    const want = await lowLevel('gpt-j-tiny', async (m, tok) => {
      const greedy = await generate(m, tok.encode('The capital of France is'), {})
      const sampled = await generate(m, tok.encode('The capital of France is'), { do_sample: true, top_k: 5, temperature: 0.7, max_length: 12, seed: 3 })
      return { greedy: modelscopePostprocess(tok, greedy.sequences[0].ids).text, sampled: modelscopePostprocess(tok, sampled.sequences[0].ids).text }
    })
    assert.is(text, want.greedy)
    assert.ok(text.startsWith('The capital of France is'), text)
    const kw = await text_generation('The capital of France is', { do_sample: true, top_k: 5, temperature: 0.7, max_length: 12, seed: 3 })
    assert.is(kw.text, want.sampled)
    const many = await text_generation(['The capital of France is', 'The capital of France is'])
    assert.equal(many, [{ text: want.greedy }, { text: want.greedy }])
  } finally {
    await text_generation.dispose()
  }
})

test('kuakua card (damo/nlp_gpt3_kuakua-robot_chinese-large): result.text is ModelScope GPT-3 generation, exactly', async () => {
  const g = loadGolden('gpt3-ms-tiny').json
  const { pipeline: msPipeline, Tasks } = modelscope
  // text_generation_zh = pipeline(Tasks.text_generation, model='damo/nlp_gpt3_kuakua-robot_chinese-large')
  const text_generation_zh = await msPipeline(Tasks.text_generation, 'damo/nlp_gpt3_kuakua-robot_chinese-large')
  try {
    // input = '今天终于拿到驾照了,求夸 | '
    const input = '今天终于拿到驾照了,求夸 | '
    // result_zh = text_generation_zh(input)
    const result_zh = await text_generation_zh(input)
    // print(result_zh['text'])
    assert.type(result_zh.text, 'string')
    assert.ok(result_zh.text.startsWith('今天终于拿到驾照了,求夸'), result_zh.text)

    assert.is(text_generation_zh.mode, 'modelscope-gpt3')
    assert.is(text_generation_zh.model.family, 'gpt3')
    // ModelScope's own outputs (greedy): golden.json pipeline_cases, run with their call kwargs
    for (const c of g.pipeline_cases)
      assert.is((await text_generation_zh(c.text, c.call_kwargs)).text, c.text_out, `${c.text} ${JSON.stringify(c.call_kwargs)}`)
    // sampling with a seed: what modelscopeGenerate gives on the fixture folder
    const want = await lowLevel('gpt3-ms-tiny', async (m, tok) => (await modelscopeGenerate(m, tok as WordPieceTokenizer, input, { seed: 11, temperature: 0.8 })).text)
    assert.is((await text_generation_zh(input, { seed: 11, temperature: 0.8 })).text, want)
    try {
      await text_generation_zh(input, { do_sample: true })
      assert.unreachable('do_sample is not a GPT-3 option')
    } catch (e) {
      assert.instance(e, UsageError)
      assert.match((e as Error).message, /unknown option "do_sample".*top_k, top_p, temperature, max_length/)
    }
  } finally {
    await text_generation_zh.dispose()
  }
})

test("pipeline(..., { convention: 'modelscope' }) is modelscope.pipeline; the transformers convention on the ModelScope ids", async () => {
  const a = await pipeline('text-generation', 'damo/nlp_gpt3_kuakua-robot_chinese-large', { convention: 'modelscope', device: 'js' })
  const b = await modelscope.pipeline('text-generation', 'damo/nlp_gpt3_kuakua-robot_chinese-large', { device: 'js', model_revision: 'master' })
  try {
    const kw = { top_k: 1, top_p: 0 }
    assert.equal(await a('今天', kw), await b('今天', kw))
  } finally {
    await a.dispose()
    await b.dispose()
  }
  // the default convention on the GPT-J id: transformers' [{generated_text}]
  const hf = await pipeline('text-generation', 'AI-ModelScope/gpt-j-6b')
  try {
    const out = await hf('The capital of France is', { max_new_tokens: 3 })
    assert.ok(out[0].generated_text!.startsWith('The capital of France is'))
    const want = await lowLevel('gpt-j-tiny', async (m, tok) => generatedText(tok, 'The capital of France is', (await generate(m, tok.encode('The capital of France is'), { max_new_tokens: 3 })).sequences[0].ids))
    assert.is(out[0].generated_text, want)
  } finally {
    await hf.dispose()
  }
  try {
    await pipeline('text-generation', 'gpt2-tiny', { convention: 'pytorch' as never })
    assert.unreachable('bad convention')
  } catch (e) {
    assert.instance(e, UsageError)
  }
  assert.ok(readFileSync(join(MS, 'models', 'AI-ModelScope', 'gpt-j-6b', 'configuration.json'), 'utf8').includes('allow_remote'))
})

test.run()
