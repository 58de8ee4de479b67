// The valid inputs every mutation starts from. They are small on purpose (a fuzzer's speed is in the
// size of its inputs) and come from real files: the library's own writers (writeSafetensors,
// writeTorchZip, exportGolden) on tiny random models shaped like the test fixtures' configs, the
// fixture files that are small (the ModelScope GPT-3 folder written by torch, a golden.safetensors
// written by Python's safetensors), and a tokenizer cut down from the GPT-2 fixture's merges.txt.
// Everything here is deterministic: the same code gives the same seed bytes.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseZip } from './zip.mjs'
import { decode } from './msgpack.mjs'

const fixture = (rel) => fileURLToPath(new URL(`../../test/fixtures/${rel}`, import.meta.url))
const enc = new TextEncoder()
const json = (v, indent = 2) => enc.encode(JSON.stringify(v, null, indent) + '\n')
const fixtureJson = (rel) => JSON.parse(readFileSync(fixture(rel), 'utf8'))

/** Tiny configs of the three Hugging Face families, from the fixtures' configs with smaller sizes. */
export function tinyConfigs() {
  const gpt2 = { ...fixtureJson('models/gpt2-tiny/config.json'), n_embd: 8, n_head: 2, n_layer: 2, n_positions: 16, vocab_size: 64 }
  const neo = {
    ...fixtureJson('models/gpt-neo-tiny/config.json'),
    hidden_size: 8, num_heads: 2, num_layers: 2, max_position_embeddings: 16, vocab_size: 64, window_size: 4,
    attention_layers: ['global', 'local'], attention_types: [[['global', 'local'], 1]],
  }
  const gptj = { ...fixtureJson('models/gpt-j-tiny/config.json'), n_embd: 16, n_head: 2, n_layer: 1, n_positions: 16, vocab_size: 72, rotary_dim: 4 }
  return { gpt2, gpt_neo: neo, gptj }
}

/** GPT-2's byte -> unicode table (printable bytes stand for themselves). */
function bytesToUnicode() {
  const bs = []
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b)
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b)
  for (let b = 0xae; b <= 0xff; b++) bs.push(b)
  const cs = bs.slice()
  let n = 0
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b)
      cs.push(256 + n++)
    }
  }
  return bs.map((b, i) => [b, String.fromCodePoint(cs[i])])
}

/** A byte-level BPE vocabulary of the 256 bytes, the first buildable merges of GPT-2 and <|endoftext|>. */
export function tinyBpe(maxMerges = 120) {
  const vocab = {}
  for (const [, ch] of bytesToUnicode()) vocab[ch] = Object.keys(vocab).length
  const merges = []
  const lines = readFileSync(fixture('models/gpt2-tiny/merges.txt'), 'utf8').split('\n').slice(1, 2000)
  for (const line of lines) {
    if (merges.length >= maxMerges) break
    const [a, b] = line.split(' ')
    if (!(a in vocab) || !(b in vocab) || a + b in vocab) continue
    merges.push(`${a} ${b}`)
    vocab[a + b] = Object.keys(vocab).length
  }
  const eot = Object.keys(vocab).length
  vocab['<|endoftext|>'] = eot
  return { vocab, merges, eot }
}

function tokenizerSeeds() {
  const { vocab, merges, eot } = tinyBpe()
  const special = { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false, special: true }
  const tokenizerConfig = {
    add_bos_token: false, add_prefix_space: false, added_tokens_decoder: { [eot]: special }, bos_token: '<|endoftext|>', clean_up_tokenization_spaces: true,
    eos_token: '<|endoftext|>', errors: 'replace', model_max_length: 1024, pad_token: null, tokenizer_class: 'GPT2Tokenizer', unk_token: '<|endoftext|>',
  }
  const specialMap = { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>' }
  const tokenizerJson = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: eot, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  }
  const wpConfig = { do_lower_case: true, tokenize_chinese_chars: true, unk_token: '[UNK]', sep_token: '[SEP]', pad_token: '[PAD]', cls_token: '[CLS]', mask_token: '[MASK]', model_max_length: 512 }
  return [
    {
      kind: 'vocab-merges',
      entries: {
        'vocab.json': enc.encode(JSON.stringify(vocab)),
        'merges.txt': enc.encode('#version: 0.2\n' + merges.join('\n') + '\n'),
        'tokenizer_config.json': json(tokenizerConfig),
        'special_tokens_map.json': json(specialMap),
      },
    },
    { kind: 'tokenizer-json', entries: { 'tokenizer.json': json(tokenizerJson), 'tokenizer_config.json': json(tokenizerConfig) } },
    { kind: 'wordpiece', entries: { 'vocab.txt': new Uint8Array(readFileSync(fixture('models/gpt3-ms-tiny/vocab.txt'))), 'tokenizer_config.json': json(wpConfig) } },
  ]
}

const readBytes = (f) => new Uint8Array(readFileSync(f))

/** The tensors of a config's model with seeded random weights, as TensorToWrite (in `dtype`). */
function modelTensors(core, config, dtype = 'F32') {
  const { checkpoint } = core.randomWeights(config, { seed: 1234 })
  const out = [...checkpoint.tensors.values()].map((t) => ({ name: t.name, shape: t.shape, data: checkpoint.readF32(t.name), dtype }))
  checkpoint.close()
  return out
}

/**
 * Request bodies of `refgpt serve` (the `serve` target): valid OpenAI legacy completions bodies (text, token
 * ids, a list of prompts, a stream with stream_options, lm-eval's echo + logprobs request, stop lists, the
 * sampling extensions), chat bodies (system/assistant/developer turns, content as text parts, logprobs +
 * top_logprobs, the spellings of "no tools"), and llama.cpp's /tokenize and /detokenize bodies. `endpoint`
 * picks the parser (packages/cli/src/serve/schema.ts); a few are refused on purpose (an unknown spelling).
 */
export function serveSeeds() {
  const completions = [
    ['plain', { prompt: 'Hello', max_tokens: 8, temperature: 0 }],
    ['stream', { model: 'gpt2', prompt: 'Once upon a time', max_tokens: 16, temperature: 0.7, top_p: 0.9, stream: true, stream_options: { include_usage: true } }],
    ['ids', { prompt: [[1, 2, 3]], max_tokens: 4 }],
    ['one-ids', { prompt: [50256, 15496, 995], max_tokens: 0, echo: true, logprobs: 5 }],
    ['list', { prompt: ['Hello', 'World', ''], max_tokens: 4, n: 2, temperature: 1, seed: 7 }],
    ['lm-eval', { prompt: [[3347, 1234, 262]], temperature: 0, max_tokens: 1, logprobs: 1, seed: 1234, echo: true }],
    ['stop', { prompt: 'Q: 2+2?\nA:', max_tokens: 32, temperature: 0, stop: ['\n\n', 'Question:', '<|endoftext|>'] }],
    ['extensions', {
      model: null, prompt: 'x', max_tokens: null, top_k: 40, min_p: 0.05, repetition_penalty: 1.1, best_of: 1, n: 1, presence_penalty: 0, frequency_penalty: 0,
      logit_bias: {}, user: 'u', suffix: null, stop: '\n', stream: false, seed: null, logprobs: null, echo: false,
    }],
  ]
  const chat = [
    ['user', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 }],
    ['turns', {
      model: 'gpt2', temperature: 0.5, max_completion_tokens: 20, stream: true, stream_options: { include_usage: false },
      messages: [
        { role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hello' },
        { role: 'assistant', content: 'Hi.', tool_calls: [], refusal: null, function_call: null }, { role: 'user', content: 'Again', name: 'bob' },
      ],
    }],
    ['parts', {
      messages: [{ role: 'developer', content: [{ type: 'text', text: 'Be brief.' }] }, { role: 'user', content: [{ type: 'text', text: 'Hi ' }, { type: 'text', text: 'there' }] }],
      max_tokens: 8,
    }],
    ['logprobs', { messages: [{ role: 'user', content: '2+2=' }], max_tokens: 1, logprobs: true, top_logprobs: 5, temperature: 0, seed: 1 }],
    ['no-tools', {
      messages: [{ role: 'user', content: 'x' }], tools: [], tool_choice: 'none', functions: [], function_call: 'none', response_format: { type: 'text' },
      n: 2, stop: ['\n'], top_k: -1, min_p: 0, repetition_penalty: 1, max_tokens: 3, max_completion_tokens: 3, presence_penalty: 0, user: 'u',
    }],
  ]
  const tokenize = [
    ['pieces', { content: 'x', with_pieces: true }],
    ['prompt', { prompt: 'x', add_special_tokens: false }], // vLLM's shape (lm-eval's remote tokenizer)
    ['special', { content: 'Hello world <|endoftext|>', add_special: true, model: 'gpt2' }],
  ]
  const detokenize = [
    ['ids', { tokens: [1, 2] }],
    ['empty', { tokens: [], model: 'gpt2' }],
    ['eot', { tokens: [50256, 0, 15496] }],
  ]
  const out = []
  for (const [endpoint, list] of Object.entries({ completions, chat, tokenize, detokenize }))
    for (const [name, value] of list) out.push({ endpoint, name: `${endpoint}-${name}`, value, bytes: enc.encode(JSON.stringify(value)) })
  return out
}

/**
 * Builds every seed. `core` is the imported @refgpt/core. Returns
 * { safetensors, torch, sharded, tokenizer, config, golden, serve, outside } (see targets.mjs for their use).
 */
export async function buildSeeds(core) {
  const tmp = mkdtempSync(join(tmpdir(), 'refgpt-fuzz-seeds-'))
  try {
    const cfg = tinyConfigs()
    const write = (name, tensors, kind = 'st', opts) => {
      const file = join(tmp, name)
      if (kind === 'st') core.writeSafetensors(file, tensors, opts)
      else core.writeTorchZip(file, tensors, opts)
      return readBytes(file)
    }
    const gpt2 = modelTensors(core, cfg.gpt2)
    // a file of every dtype and odd shapes: a scalar, an empty tensor, a 3-d tensor
    const mixed = [
      { name: 'a.f32', shape: [2, 3], data: new Float32Array([1, -2, 3.5, 0, -0, 1e-8]) },
      { name: 'b.f16', shape: [4], data: new Float32Array([1, 65504, -1e-5, 0.5]), dtype: 'F16' },
      { name: 'c.bf16', shape: [2, 1, 2], data: new Float32Array([3, -3, 1e30, -1e-30]), dtype: 'BF16' },
      { name: 'd.scalar', shape: [], data: new Float32Array([42]) },
      { name: 'e.empty', shape: [0, 3], data: new Float32Array(0) },
    ]
    const safetensors = [
      { name: 'gpt2-tiny', bytes: write('a.safetensors', gpt2) },
      { name: 'mixed', bytes: write('b.safetensors', mixed, 'st', { format: 'pt', note: 'fuzz seed' }) },
      { name: 'python-golden', bytes: readBytes(fixture('models/gpt3-ms-tiny/golden.safetensors')) },
    ]

    const torchFile = (name, bytes) => {
      const entries = parseZip(bytes)
      const pkl = entries.find((e) => e.name.endsWith('/data.pkl'))
      return { name, bytes, entries, prefix: pkl.name.slice(0, -'/data.pkl'.length) }
    }
    const torch = [
      torchFile('mixed', write('a.bin', mixed, 'torch')),
      torchFile('gpt2-zip64', write('b.bin', gpt2.slice(0, 6), 'torch', { forceZip64: true, archiveName: 'pytorch_model' })),
      torchFile('torch-gpt3', readBytes(fixture('models/gpt3-ms-tiny/pytorch_model.bin'))),
    ]

    // sharded: the gpt2 tensors over two shards, as safetensors and as .bin
    const half = Math.ceil(gpt2.length / 2)
    const parts = [gpt2.slice(0, half), gpt2.slice(half)]
    const shardedFolder = (ext, kind) => {
      const entries = {}
      const weightMap = {}
      let total = 0
      parts.forEach((ts, i) => {
        const shard = ext === 'safetensors' ? `model-0000${i + 1}-of-00002.safetensors` : `pytorch_model-0000${i + 1}-of-00002.bin`
        entries[shard] = write(`s${i}.${ext}`, ts, kind)
        for (const t of ts) {
          weightMap[t.name] = shard
          total += t.data.length * 4
        }
      })
      const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]))
      const index = ext === 'safetensors' ? 'model.safetensors.index.json' : 'pytorch_model.bin.index.json'
      entries[index] = json({ metadata: { total_size: total }, weight_map: sorted })
      return { kind: ext, index, entries }
    }
    const sharded = [shardedFolder('safetensors', 'st'), shardedFolder('bin', 'torch')]

    const tokenizer = tokenizerSeeds()

    // model folders for loadModel / inspectModel
    const genConfig = readBytes(fixture('models/gpt2-tiny/generation_config.json'))
    const config = [
      { family: 'gpt2', entries: { 'config.json': json(cfg.gpt2), 'generation_config.json': genConfig, 'model.safetensors': safetensors[0].bytes } },
      { family: 'gpt_neo', entries: { 'config.json': json(cfg.gpt_neo), 'model.safetensors': write('neo.safetensors', modelTensors(core, cfg.gpt_neo, 'F16')) } },
      { family: 'gptj', entries: { 'config.json': json(cfg.gptj), 'generation_config.json': genConfig, 'model.safetensors': write('j.safetensors', modelTensors(core, cfg.gptj, 'BF16')) } },
      {
        family: 'gpt3',
        entries: Object.fromEntries(['config.json', 'configuration.json', 'vocab.txt', 'pytorch_model.bin'].map((f) => [f, readBytes(fixture(`models/gpt3-ms-tiny/${f}`))])),
      },
    ]

    // golden files exported from the tiny GPT-2 with its tiny tokenizer
    const modelDir = join(tmp, 'gpt2')
    materializeFlat(modelDir, { ...config[0].entries, ...tokenizer[0].entries })
    const model = await core.loadModel(modelDir, { device: 'js' })
    const tok = core.loadTokenizer(modelDir)
    const goldenBytes = async (opts) => new Uint8Array(await core.exportGolden(model, [1, 2, 3], { tokenizer: tok, text: 'abc', modelDir: null, ...opts }))
    const golden = []
    for (const opts of [{}, { tensors: 'embed,logits' }]) {
      const bytes = await goldenBytes(opts)
      golden.push({ bytes, value: decode(bytes) })
    }
    await model.dispose()

    // files a symlink "to outside the folder" points at: valid copies, so following one would succeed
    const outside = {}
    for (const group of [sharded, tokenizer, config]) for (const s of group) for (const [f, b] of Object.entries(s.entries)) outside[f] ??= b
    return { safetensors, torch, sharded, tokenizer, config, golden, serve: serveSeeds(), outside }
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
}

function materializeFlat(dir, entries) {
  mkdirSync(dir, { recursive: true })
  for (const [f, b] of Object.entries(entries)) writeFileSync(join(dir, f), b)
}
