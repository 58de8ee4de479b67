// The fuzz targets: one per input format. Each target has
//   mutators   the names `generate` can be forced to use ('family:op'), for tests and --repro-case
//   generate(r, S, force) -> { entries, main, tags }   a mutated input from the seeds S (seeds.mjs)
//   run(path, core, ctx, case)   the library call and a little work on its result (read every tensor,
//                          encode/decode strings, one tiny forward)
// An input is CLEAN when run() returns or throws a RefgptError; anything else is a finding.

import { readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { mutateBytes, BYTE_MUTATORS } from './bytes.mjs'
import { FS_OP_NAMES, mutateFs } from './case.mjs'
import { BOUNDARY_NUMBERS, BOUNDARY_STRINGS, RAW_NUMBERS, Raw, TEXT_OP_NAMES, TREE_OP_NAMES, boundaryValue, cached, mutateJsonFile, stringify } from './json.mjs'
import { GOLDEN_OP_NAMES, mutateGolden } from './msgpack.mjs'
import { PICKLE_OP_NAMES, mutatePickle } from './pickle.mjs'
import { ST_OP_NAMES, mutateSafetensors } from './safetensors.mjs'
import { LAYOUT_OP_NAMES, ZIP_OP_NAMES, buildZip, mutateZip } from './zip.mjs'
import { inputRng } from './rng.mjs'

const enc = new TextEncoder()
const dec = new TextDecoder()
const VALID_SHARE = 0.03 // inputs left valid, so the success path stays covered

const parseJson = (b) => JSON.parse(dec.decode(b))
const prefixed = (p, names) => names.map((n) => `${p}:${n}`)
/** Splits a forced mutator name 'family:op' (op may be undefined). */
const forced = (force) => (force ? force.split(':') : [undefined, undefined])
const cloneEntries = (e) => Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v instanceof Uint8Array ? v.slice() : v]))

// ---------------------------------------------------------------------------------------------------
// Line-level mutations of merges.txt and vocab.txt

const WEIRD_LINES = ['', ' ', 'a', 'a b c', 'a  b', 'a\tb', '\u0120 \u0120', '#version: 0.2', '<|endoftext|> a', 'a\u0000 b', '\ud800 x', ' a', 'a ', '\r', '[UNK]', '##', '##a', '\u4e16\u754c']
export const LINE_OPS = {
  deleteLine: (r, ls) => (ls.length ? ls.splice(r.int(ls.length), 1) : 0, ls),
  duplicateLine: (r, ls) => (ls.length ? ls.splice(r.int(ls.length), 0, r.pick(ls)) : 0, ls),
  swapLines: (r, ls) => {
    const i = r.int(ls.length), j = r.int(ls.length)
    ;[ls[i], ls[j]] = [ls[j], ls[i]]
    return ls
  },
  weirdLine: (r, ls) => (ls.splice(r.int(ls.length + 1), 0, r.pick(WEIRD_LINES)), ls),
  longLine: (r, ls) => (ls.splice(r.int(ls.length + 1), 0, r.pick(['a', '\u0120', '\u4e16', 'ab ']).repeat(r.pick([10000, 1 << 20]))), ls),
  manyLines: (r, ls) => {
    const n = r.pick([20000, 100000])
    const make = r.pick([(i) => `x${i} y${i}`, () => 'a b', (i) => `t${i}`, () => ''])
    for (let i = 0; i < n; i++) ls.push(make(i))
    return ls
  },
  crlf: (r, ls) => ls.map((l) => l + '\r'),
  boundaryLine: (r, ls) => (ls.length ? (ls[r.int(ls.length)] = r.pick(BOUNDARY_STRINGS)) : 0, ls),
}
export const LINE_OP_NAMES = Object.keys(LINE_OPS)

function mutateLines(r, data, force) {
  let text = dec.decode(data)
  let ls = text.split('\n')
  const op = force ?? r.pick(LINE_OP_NAMES)
  ls = LINE_OPS[op](r, ls)
  text = ls.join('\n')
  return { data: enc.encode(text), tags: [`lines.${op}`] }
}

/** A mutation of one file of a folder, chosen by the file's kind; `force` is 'family:op'. */
function mutateFile(r, name, data, force, other) {
  const [fam, op] = forced(force)
  const isJson = name.endsWith('.json')
  const isLines = name.endsWith('.txt')
  if (fam === 'bytes' || (!fam && r.chance(0.12))) return mutateBytes(r, data, other)
  if (isJson && (fam === 'json' || fam === 'text' || !fam)) {
    let seed
    try {
      seed = parseJson(data)
    } catch {
      return mutateBytes(r, data, other)
    }
    return mutateJsonFile(r, seed, { indent: r.chance(0.5) ? 2 : 0, force: fam === 'json' ? op : undefined, forceText: fam === 'text' ? op : undefined })
  }
  if (isLines && (fam === 'lines' || !fam)) return mutateLines(r, data, op)
  return mutateBytes(r, data, other)
}

// ---------------------------------------------------------------------------------------------------
// Targets

/** A single .safetensors file -> openSafetensors, then every tensor read (readF32 and readBytes). */
const safetensors = {
  name: 'safetensors',
  mutators: [...prefixed('st', ST_OP_NAMES)],
  generate(r, S, force) {
    const seed = r.pick(S.safetensors)
    if (!force && r.chance(VALID_SHARE)) return { entries: { 'model.safetensors': seed.bytes }, main: 'model.safetensors', tags: ['valid'] }
    const [, op] = forced(force)
    const m = mutateSafetensors(r, seed.bytes, { other: r.pick(S.safetensors).bytes, force: op })
    return { entries: { 'model.safetensors': m.data }, main: 'model.safetensors', tags: [`seed.${seed.name}`, ...m.tags] }
  },
  async run(path, core) {
    readAll(core.openSafetensors(path))
  },
}

function readAll(ck) {
  try {
    for (const name of ck.tensors.keys()) {
      ck.readF32(name)
      ck.readBytes(name)
    }
    void ck.metadata
  } finally {
    ck.close()
  }
}

/** A torch.save zip (data.pkl + storages) -> openTorchBin, then every tensor read. */
const torch = {
  name: 'torch',
  mutators: [...prefixed('pickle', PICKLE_OP_NAMES), ...prefixed('zip', ZIP_OP_NAMES), ...prefixed('layout', LAYOUT_OP_NAMES), 'bytes'],
  generate(r, S, force) {
    const seed = r.pick(S.torch)
    const main = 'pytorch_model.bin'
    if (!force && r.chance(VALID_SHARE)) return { entries: { [main]: seed.bytes }, main, tags: ['valid'] }
    const [fam, op] = forced(force)
    const family = fam ?? r.weighted([[45, 'pickle'], [30, 'zip'], [10, 'layout'], [15, 'bytes']])
    const tags = [`seed.${seed.name}`]
    let data
    if (family === 'pickle') {
      const entries = seed.entries.map((e) => ({ ...e }))
      const pkl = entries.find((e) => e.name.endsWith('/data.pkl'))
      const other = r.pick(S.torch).entries.find((e) => e.name.endsWith('/data.pkl'))
      const m = mutatePickle(r, pkl.data, { other: other?.data, force: op })
      pkl.data = m.data
      tags.push(...m.tags)
      if (r.chance(0.5)) pkl.method = 8
      data = buildZip(entries, { align: true, zip64: r.chance(0.2) }).data
    } else if (family === 'zip' || family === 'layout') {
      const m = mutateZip(r, seed.entries, { prefix: seed.prefix, force: family === 'zip' ? op : undefined, forceLayout: family === 'layout' ? op ?? 'field' : undefined })
      data = m.data
      tags.push(...m.tags)
    } else {
      const m = mutateBytes(r, seed.bytes, r.pick(S.torch).bytes)
      data = m.data
      tags.push(...m.tags)
    }
    return { entries: { [main]: data }, main, tags }
  },
  async run(path, core) {
    readAll(core.openTorchBin(path))
  },
}

const EVIL_SHARDS = ['../outside/model-00001-of-00002.safetensors', '../outside/pytorch_model-00001-of-00002.bin', '/etc/passwd', '/dev/zero', '', '.', '..', 'model.safetensors.index.json',
  'pytorch_model.bin.index.json', 'sub/x.safetensors', 'missing.safetensors', 'a\u0000b', 'x'.repeat(5000), 'model-00001-of-00002.safetensors/..', './model-00002-of-00002.safetensors',
  'model-00002-of-00002.safetensors', 'pytorch_model-00002-of-00002.bin', '\\evil', 'C:\\x']

/** A sharded checkpoint folder (index + shards) -> openCheckpoint, then every tensor read. */
const sharded = {
  name: 'sharded',
  mutators: ['index:evilShard', ...prefixed('json', TREE_OP_NAMES), ...prefixed('text', TEXT_OP_NAMES), 'shard', 'moveTensor', ...prefixed('fs', FS_OP_NAMES)],
  generate(r, S, force) {
    const seed = r.pick(S.sharded)
    const entries = cloneEntries(seed.entries)
    const tags = [`seed.${seed.kind}`]
    const shards = Object.keys(entries).filter((f) => f !== seed.index)
    if (!force && r.chance(VALID_SHARE)) return { entries, main: '', tags: ['valid'] }
    const [fam, op] = forced(force)
    const family = fam ?? r.weighted([[3, 'index'], [6, 'json'], [1, 'text'], [5, 'shard'], [1, 'moveTensor'], [2, 'fs']])
    if (family === 'index') {
      const idx = parseJson(entries[seed.index])
      const names = Object.keys(idx.weight_map)
      idx.weight_map[r.pick(names)] = r.pick(EVIL_SHARDS)
      entries[seed.index] = enc.encode(JSON.stringify(idx))
      tags.push('index.evilShard')
    } else if (family === 'json' || family === 'text') {
      const m = mutateJsonFile(r, parseJson(entries[seed.index]), { force: family === 'json' ? op : undefined, forceText: family === 'text' ? op : undefined })
      entries[seed.index] = m.data
      tags.push(...m.tags)
    } else if (family === 'shard') {
      const f = r.pick(shards)
      const m = seed.kind === 'safetensors' ? mutateSafetensors(r, entries[f]) : mutateBytes(r, entries[f], null)
      entries[f] = m.data
      tags.push(...m.tags.map((t) => `shard.${t}`))
    } else if (family === 'moveTensor') {
      // the index says shard A, the tensor is in shard B (or in both): rewrite one index entry
      const idx = parseJson(entries[seed.index])
      const names = Object.keys(idx.weight_map)
      const n = r.pick(names)
      idx.weight_map[n] = shards.find((s) => s !== idx.weight_map[n]) ?? shards[0]
      if (r.chance(0.5)) delete idx.weight_map[r.pick(names)]
      entries[seed.index] = enc.encode(JSON.stringify(idx))
      tags.push('index.moveTensor')
    } else {
      tags.push(mutateFs(r, entries, [seed.index, ...shards], op))
    }
    return { entries, main: '', tags }
  },
  async run(path, core) {
    readAll(core.openCheckpoint(path))
  },
}

/** Many added / special tokens (a real tokenizer has up to ~130k): contents that share prefixes and overlap. */
function manyAdded(r, entries) {
  const n = r.weighted([[6, 1000], [3, 10000], [1, 50000]])
  const variant = r.int(4)
  const content = (i) => [`tok${i}`, 'a'.repeat((i % 64) + 1) + (i >> 6), `<|extra_${i}|>`, String.fromCodePoint(0x4e00 + (i % 20000)) + (i >> 10 || '')][variant]
  const base = 400
  const json = (v) => enc.encode(JSON.stringify(v))
  if (entries['tokenizer.json']) {
    const tj = parseJson(entries['tokenizer.json'])
    tj.added_tokens = cached(`added list ${n} ${variant}`, () =>
      Array.from({ length: n }, (_, i) => ({ id: base + i, content: content(i), single_word: false, lstrip: i % 3 === 0, rstrip: i % 5 === 0, normalized: i % 2 === 0, special: i % 2 === 1 })),
    )
    entries['tokenizer.json'] = json(tj)
  } else if (entries['vocab.json']) {
    const tc = entries['tokenizer_config.json'] ? parseJson(entries['tokenizer_config.json']) : {}
    tc.added_tokens_decoder = cached(`added map ${n} ${variant}`, () =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [String(base + i), { content: content(i), lstrip: false, normalized: false, rstrip: false, single_word: false, special: i % 2 === 0 }])),
    )
    entries['tokenizer_config.json'] = json(tc)
  } else {
    const tc = entries['tokenizer_config.json'] ? parseJson(entries['tokenizer_config.json']) : {}
    tc.additional_special_tokens = Array.from({ length: n }, (_, i) => content(i))
    tc.never_split = tc.additional_special_tokens
    entries['tokenizer_config.json'] = json(tc)
  }
  return `added.many${n}`
}

const TEXTS = ['Hello world', 'ab '.repeat(100) + '<|endoftext|>'.repeat(10) + 'tok12 aaaa<|extra_7|>\u4e01', 'h\u00e9llo w\u00f6rld \u4e16\u754c \ud83d\ude42', ' <|endoftext|> x<|endoftext|>y', '  \n\t  end  ', "it's 123 4567.89 don't", 'a'.repeat(300), 'lone \ud800 surrogate', '', '[CLS] \u4e2d\u6587 [SEP]']

/** A tokenizer folder (tokenizer.json, or vocab.json + merges.txt + side files, or vocab.txt) -> loadTokenizer, encode/decode. */
const tokenizer = {
  name: 'tokenizer',
  mutators: [...prefixed('json', TREE_OP_NAMES), ...prefixed('text', TEXT_OP_NAMES), ...prefixed('lines', LINE_OP_NAMES), 'bytes', 'mix', 'added', ...prefixed('fs', FS_OP_NAMES)],
  generate(r, S, force) {
    const seed = r.pick(S.tokenizer)
    const entries = cloneEntries(seed.entries)
    const tags = [`seed.${seed.kind}`]
    if (!force && r.chance(VALID_SHARE)) return { entries, main: '', tags: ['valid'] }
    const [fam, op] = forced(force)
    const family = fam ?? r.weighted([[12, 'file'], [1, 'mix'], [0.2, 'added'], [1.5, 'fs']])
    const files = Object.keys(entries)
    if (family === 'added') {
      tags.push(manyAdded(r, entries))
    } else if (family === 'mix') {
      // files of two kinds in one folder, or one missing
      const other = r.pick(S.tokenizer)
      const f = r.pick(Object.keys(other.entries))
      if (r.chance(0.5)) entries[f] = other.entries[f]
      else delete entries[r.pick(files)]
      tags.push(`mix:${f}`)
    } else if (family === 'fs') {
      tags.push(mutateFs(r, entries, files, op))
    } else {
      const eligible = fam === 'lines' ? files.filter((f) => f.endsWith('.txt')) : fam === 'json' || fam === 'text' ? files.filter((f) => f.endsWith('.json')) : files
      const f = eligible.length ? r.pick(eligible) : r.pick(files)
      const m = mutateFile(r, f, entries[f], fam === 'file' ? undefined : force, null)
      entries[f] = m.data
      tags.push(...m.tags.map((t) => `${f}:${t}`))
    }
    return { entries, main: '', tags }
  },
  async run(path, core) {
    const tok = core.loadTokenizer(path)
    const V = tok.vocabSize
    for (const t of TEXTS) {
      const ids = tok.encode(t)
      tok.decode(ids)
      tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: true })
    }
    for (const id of [0, 1, V - 1, V, 2 ** 31 - 1]) {
      if (id < 0) continue
      tok.idToToken(id)
      tok.tokenBytes(id)
    }
    tok.decode([0, V, V + 1000].filter((x) => x >= 0))
    const sd = new core.StreamDecoder(tok)
    for (const id of tok.encode(TEXTS[1])) sd.push(id)
    sd.flush()
  },
}

const CONFIG_KEYS = ['n_embd', 'n_head', 'n_layer', 'n_positions', 'vocab_size', 'rotary_dim', 'n_inner', 'n_ctx', 'hidden_size', 'num_layers', 'num_heads', 'max_position_embeddings',
  'window_size', 'attention_types', 'attention_layers', 'intermediate_size', 'layer_norm_epsilon', 'activation_function', 'model_type', 'tie_word_embeddings',
  'num_attention_heads', 'num_hidden_layers', 'layernorm_epsilon', 'hidden_act', 'type_vocab_size', 'scale_attn_weights', 'bos_token_id', 'eos_token_id', 'torch_dtype']

/** Steers config edits into the fields the families read (present or not). */
function configPlace(r, root) {
  if (!root || typeof root !== 'object' || Array.isArray(root)) return null
  const present = CONFIG_KEYS.filter((k) => k in root)
  const key = present.length && r.chance(0.8) ? r.pick(present) : r.pick(CONFIG_KEYS)
  const v = root[key]
  if (Array.isArray(v) && v.length && r.chance(0.5)) {
    // into attention_types [[["global","local"], n]] and the like
    let parent = v, k = r.int(v.length)
    while (Array.isArray(parent[k]) && parent[k].length && r.chance(0.6)) (parent = parent[k]), (k = r.int(parent.length))
    return { parent, key: k }
  }
  return { parent: root, key }
}

/** The loads' memory budget (LoadOptions.maxMemory). */
export const FUZZ_MAX_MEMORY = 512 * 2 ** 20

/** A tiny model folder (config.json + weights) -> inspectModel, loadModel (js device, 512 MiB budget), one 2-token forward. */
const config = {
  name: 'config',
  mutators: [...prefixed('json', TREE_OP_NAMES), ...prefixed('text', TEXT_OP_NAMES), 'side', 'weights', ...prefixed('fs', FS_OP_NAMES)],
  generate(r, S, force) {
    const seed = r.pick(S.config)
    const entries = cloneEntries(seed.entries)
    const tags = [`seed.${seed.family}`]
    if (!force && r.chance(VALID_SHARE)) return { entries, main: '', tags: ['valid'] }
    const [fam, op] = forced(force)
    const family = fam ?? r.weighted([[14, 'json'], [1, 'text'], [2, 'side'], [1.5, 'weights'], [1.5, 'fs']])
    if (family === 'json' || family === 'text') {
      const m = mutateJsonFile(r, parseJson(entries['config.json']), {
        indent: 2, place: configPlace, force: family === 'json' ? op : undefined, forceText: family === 'text' ? op : undefined,
      })
      entries['config.json'] = m.data
      tags.push(...m.tags)
    } else if (family === 'side') {
      const side = Object.keys(entries).filter((f) => f !== 'config.json' && (f.endsWith('.json') || f.endsWith('.txt')))
      const f = side.length ? r.pick(side) : 'generation_config.json'
      const m = mutateFile(r, f, entries[f] ?? enc.encode('{}'), undefined, null)
      entries[f] = m.data
      tags.push(...m.tags.map((t) => `${f}:${t}`))
    } else if (family === 'weights') {
      const f = Object.keys(entries).find((x) => x.endsWith('.safetensors') || x.endsWith('.bin'))
      const m = f.endsWith('.safetensors') ? mutateSafetensors(r, entries[f]) : mutateBytes(r, entries[f], null)
      entries[f] = m.data
      tags.push(...m.tags.map((t) => `weights.${t}`))
    } else {
      tags.push(mutateFs(r, entries, Object.keys(entries), op))
    }
    // the weights' storage on the device: as in the file, or converted (Q8 quantizes every matrix)
    const dtype = r.weighted([[6, undefined], [1, 'F32'], [1, 'F16'], [1, 'BF16'], [2, 'Q8']])
    if (dtype) tags.push(`load.${dtype}`)
    return { entries, main: '', tags, ...(dtype ? { options: { dtype } } : {}) }
  },
  async run(path, core, ctx, c) {
    // the memory budget is the gate for sizes no tensor bounds (a rotary model's n_positions): the fuzzer
    // loads under `--max-memory 512M`, a quarter of its RSS watchdog, as a user with little memory would
    const opts = { device: 'js', maxMemory: FUZZ_MAX_MEMORY, ...(c?.options ?? {}) }
    core.inspectModel(path, opts)
    const model = await core.loadModel(path, opts)
    try {
      const s = model.createSession()
      try {
        const V = model.arch.nVocab
        await s.logits([0, Math.min(1, V - 1)], 0)
      } finally {
        s.dispose()
      }
    } finally {
      await model.dispose()
    }
  },
}

/** A golden MessagePack file -> readGolden, every tensor's values, and verifyGolden on the tiny GPT-2 when it is its family. */
const golden = {
  name: 'golden',
  mutators: prefixed('golden', GOLDEN_OP_NAMES),
  generate(r, S, force) {
    const seed = r.pick(S.golden)
    const main = 'golden.msgpack'
    if (!force && r.chance(VALID_SHARE)) return { entries: { [main]: seed.bytes }, main, tags: ['valid'] }
    const [, op] = forced(force)
    const m = mutateGolden(r, seed.value, seed.bytes, { force: op })
    return { entries: { [main]: m.data }, main, tags: m.tags }
  },
  async run(path, core, ctx) {
    const g = core.readGolden(new Uint8Array(readFileSync(path)), path)
    for (const t of Object.values(g.tensors)) core.goldenTensor(t)
    const model = await ctx.goldenModel?.()
    if (model && g.family === model.family) await core.verifyGolden(g, model)
  },
}

// ---------------------------------------------------------------------------------------------------
// `refgpt serve`'s request parsing (packages/cli/src/serve/schema.ts)

/** The parsers' limits in this target (as `refgpt serve` with --max-n 4 and a 2048-token context). */
export const SERVE_LIMITS = Object.freeze({ maxN: 4, maxPrompts: 256, maxTokens: 2048 })
export const SERVE_ENDPOINTS = ['completions', 'chat', 'tokenize', 'detokenize']

let serveMod // { parseCompletion, parseChat, parseTokenize, parseDetokenize, HttpError } once imported
/**
 * Imports the CLI's request parsers and HttpError: from the TypeScript source when the worker runs with
 * `--core source` (tsx and the `source` condition, as @refgpt/core), else from the built packages/cli/dist.
 * http is imported by the same URL schema imports it by, so `instanceof HttpError` holds for its errors.
 */
async function loadServe() {
  if (serveMod) return serveMod
  const source = process.execArgv.includes('--conditions=source')
  const at = (f) => new URL(`../../packages/cli/${source ? 'src' : 'dist'}/serve/${f}.${source ? 'ts' : 'js'}`, import.meta.url).href
  const [schema, http] = await Promise.all([import(at('schema')), import(at('http'))])
  serveMod = { ...schema, HttpError: http.HttpError }
  return serveMod
}

/** Known fields by endpoint (schema.ts's key lists), where the `field` mutator steers its edits. */
const SERVE_SAMPLING_KEYS = ['model', 'max_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'repetition_penalty', 'n', 'best_of', 'stop', 'seed', 'stream',
  'stream_options', 'user', 'presence_penalty', 'frequency_penalty', 'logit_bias']
const SERVE_KEYS = {
  completions: [...SERVE_SAMPLING_KEYS, 'prompt', 'logprobs', 'echo', 'suffix'],
  chat: [...SERVE_SAMPLING_KEYS, 'max_completion_tokens', 'messages', 'logprobs', 'top_logprobs', 'tools', 'tool_choice', 'functions', 'function_call', 'response_format'],
  tokenize: ['content', 'add_special', 'with_pieces', 'model', 'prompt', 'add_special_tokens'],
  detokenize: ['tokens', 'model'],
}
const SERVE_MESSAGE_KEYS = ['role', 'content', 'name', 'tool_calls', 'function_call', 'refusal']
/** Values that sit at the edges of what the fields accept. */
const SERVE_VALUES = () => [
  0, -1, 1, 2, 4, 5, 6, 16, 17, 20, 21, 256, 257, 2048, 2049, -0.0001, 1e-300, 2.0000001, 1.9999999, 0.5, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 1e308,
  new Raw('1e400'), new Raw('-1e400'), new Raw('-0'), new Raw('4.0'), new Raw('1e0'), new Raw('9007199254740993'),
  '', 'x', 'none', 'auto', 'text', 'system', 'user', 'assistant', 'developer', 'tool', 'function', '__proto__', 'constructor', '\ud800',
  [], [''], ['', 'a'], ['a', 1], Array.from({ length: 16 }, (_, i) => `s${i}`), Array.from({ length: 17 }, (_, i) => `s${i}`), [[]], [[1, -1]], [[1, 2], 'a'], [1.5],
  [2 ** 53], [0, 2 ** 53 - 1], [-0], ['a', ['b']], Array.from({ length: 257 }, () => [1]), Array.from({ length: 257 }, () => 'a'), [null], [{ type: 'text', text: 'a' }],
  [{ type: 'image_url', image_url: { url: 'x' } }], [{ type: 'text' }], [{ type: 'text', text: 1 }], [{ text: 'a' }], [{ type: 'text', text: 'a', extra: 1 }], [{ role: 'user', content: 'x' }],
  {}, { type: 'text' }, { type: 'json_object' }, { type: 'text', x: 1 }, { include_usage: true }, { include_usage: 1 }, { include_usage: true, x: 1 }, { 1: 5 }, { 50256: -100 },
  JSON.parse('{"__proto__":{"include_usage":true}}'), { role: 'user', content: 'x' }, null, true, false,
]

/** Edits of `field`: a known field of the endpoint (or of a message) set to an edge value, of the right type or not. */
function serveField(r, value, endpoint) {
  const tags = []
  const n = r.small(3)
  for (let i = 0; i < n; i++) {
    let obj = value, keys = SERVE_KEYS[endpoint], where = ''
    if (Array.isArray(value?.messages) && value.messages.length && r.chance(0.3)) {
      const j = r.int(value.messages.length)
      if (value.messages[j] && typeof value.messages[j] === 'object' && !Array.isArray(value.messages[j])) (obj = value.messages[j]), (keys = SERVE_MESSAGE_KEYS), (where = 'message.')
    }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) break
    const k = r.pick(keys)
    const v = r.weighted([[6, () => r.pick(SERVE_VALUES())], [3, () => boundaryValue(r)], [1, () => r.pick(BOUNDARY_NUMBERS)], [1, () => new Raw(r.pick(RAW_NUMBERS))], [1, () => r.pick(BOUNDARY_STRINGS)]])()
    Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true })
    tags.push(`field.${where}${k}`)
  }
  return tags
}

/** A parsed request's invariants (what the server relies on); a violation throws a plain Error: a finding. */
function serveCheck(endpoint, q, L) {
  const fail = (what) => {
    throw new Error(`serve ${endpoint}: parsed request breaks an invariant: ${what}`)
  }
  const isInt = (x, lo, hi) => Number.isSafeInteger(x) && x >= lo && x <= hi
  const isId = (x) => Number.isSafeInteger(x) && x >= 0
  const show = (v) => {
    try {
      return (JSON.stringify(v) ?? String(v)).slice(0, 120)
    } catch {
      return String(v).slice(0, 120)
    }
  }
  if (q === null || typeof q !== 'object') fail(`not an object: ${show(q)}`)
  if (endpoint === 'tokenize') {
    if (typeof q.content !== 'string') fail(`content ${show(q.content)}`)
    if (typeof q.addSpecial !== 'boolean' || typeof q.withPieces !== 'boolean') fail(`addSpecial/withPieces ${show([q.addSpecial, q.withPieces])}`)
    if (q.vllm !== undefined && (q.vllm !== true || q.withPieces)) fail(`vllm ${show(q.vllm)}`)
    return
  }
  if (endpoint === 'detokenize') {
    if (!Array.isArray(q.tokens) || !q.tokens.every(isId)) fail(`tokens ${show(q.tokens)}`)
    return
  }
  // completions and chat: the sampling fields
  if (!isInt(q.n, 1, L.maxN)) fail(`n ${show(q.n)}`)
  if (!(q.maxTokens === null || isInt(q.maxTokens, 0, L.maxTokens))) fail(`maxTokens ${show(q.maxTokens)}`)
  if (typeof q.temperature !== 'number' || !(q.temperature >= 0 && q.temperature <= 2)) fail(`temperature ${show(q.temperature)}`)
  if (typeof q.topP !== 'number' || !(q.topP > 0 && q.topP <= 1)) fail(`topP ${show(q.topP)}`)
  if (!isInt(q.topK, 0, Number.MAX_SAFE_INTEGER)) fail(`topK ${show(q.topK)}`)
  if (typeof q.minP !== 'number' || !(q.minP >= 0 && q.minP <= 1)) fail(`minP ${show(q.minP)}`)
  if (typeof q.repetitionPenalty !== 'number' || !(q.repetitionPenalty > 0 && Number.isFinite(q.repetitionPenalty))) fail(`repetitionPenalty ${show(q.repetitionPenalty)}`)
  if (!Array.isArray(q.stop) || q.stop.length > 16 || !q.stop.every((s) => typeof s === 'string' && s !== '')) fail(`stop ${show(q.stop)}`)
  if (!(q.seed === null || isId(q.seed))) fail(`seed ${show(q.seed)}`)
  if (typeof q.stream !== 'boolean' || typeof q.includeUsage !== 'boolean' || (q.includeUsage && !q.stream)) fail(`stream/includeUsage ${show([q.stream, q.includeUsage])}`)
  if (!(q.model === null || typeof q.model === 'string')) fail(`model ${show(q.model)}`)
  if (endpoint === 'completions') {
    if (!Array.isArray(q.prompts) || q.prompts.length < 1) fail(`prompts ${show(q.prompts)}`)
    if (q.prompts.length > L.maxPrompts && !(q.prompts.length === 1)) fail(`${q.prompts.length} prompts (max ${L.maxPrompts})`)
    for (const p of q.prompts) {
      const keys = p && typeof p === 'object' ? Object.keys(p) : []
      const ok = keys.length === 1 && (keys[0] === 'text' ? typeof p.text === 'string' : keys[0] === 'ids' && Array.isArray(p.ids) && p.ids.length > 0 && p.ids.every(isId))
      if (!ok) fail(`prompt ${show(p)}`)
    }
    if (!(q.logprobs === null || isInt(q.logprobs, 0, 5))) fail(`logprobs ${show(q.logprobs)}`)
    if (typeof q.echo !== 'boolean') fail(`echo ${show(q.echo)}`)
  } else {
    if (!Array.isArray(q.messages) || q.messages.length < 1) fail(`messages ${show(q.messages)}`)
    for (const m of q.messages)
      if (!m || !['system', 'user', 'assistant'].includes(m.role) || typeof m.content !== 'string') fail(`message ${show(m)}`)
    if (typeof q.logprobs !== 'boolean') fail(`logprobs ${show(q.logprobs)}`)
    if (!(q.topLogprobs === null || (isInt(q.topLogprobs, 0, 20) && q.logprobs))) fail(`topLogprobs ${show(q.topLogprobs)} with logprobs ${q.logprobs}`)
  }
}

const utf8Fatal = new TextDecoder('utf-8', { fatal: true })

/**
 * `refgpt serve`'s request handling: a request body (the file's name is its endpoint) -> what the server does
 * before the model runs: UTF-8 decoding, JSON.parse and the object check (as http.ts's readJson: a failure is
 * a 400), then the endpoint's parser with SERVE_LIMITS, then the parsed request's invariants. Clean: the
 * request parsed (ok), or an HttpError with a 4xx status (counted as refgpt_error). A RefgptError, an
 * HttpError of another status, any other error or a broken invariant is a crash.
 */
const serve = {
  name: 'serve',
  mutators: ['field', ...prefixed('json', TREE_OP_NAMES), ...prefixed('text', TEXT_OP_NAMES), 'bytes', 'mix'],
  generate(r, S, force) {
    const seed = r.pick(S.serve)
    const main = `${seed.endpoint}.json`
    const tags = [`endpoint.${seed.endpoint}`, `seed.${seed.name}`]
    if (!force && r.chance(VALID_SHARE)) return { entries: { [main]: seed.bytes }, main, tags: [...tags, 'valid'] }
    const [fam, op] = forced(force)
    const family = fam ?? r.weighted([[4, 'field'], [10, 'json'], [1.5, 'text'], [2, 'bytes'], [1, 'mix']])
    let data
    if (family === 'field') {
      const value = structuredClone(seed.value)
      tags.push(...serveField(r, value, seed.endpoint))
      data = enc.encode(stringify(value, r.chance(0.3) ? 2 : 0))
    } else if (family === 'json' || family === 'text') {
      const m = mutateJsonFile(r, seed.value, { indent: r.chance(0.3) ? 2 : 0, force: family === 'json' ? op : undefined, forceText: family === 'text' ? op : undefined })
      data = m.data
      tags.push(...m.tags)
    } else if (family === 'mix') {
      // another endpoint's body (or a mutation of it) sent here
      const other = r.pick(S.serve.filter((s) => s.endpoint !== seed.endpoint))
      data = r.chance(0.5) ? other.bytes : mutateJsonFile(r, other.value).data
      tags.push(`mix.${other.name}`)
    } else {
      const m = mutateBytes(r, seed.bytes, r.pick(S.serve).bytes)
      data = m.data
      tags.push(...m.tags)
    }
    return { entries: { [main]: data }, main, tags }
  },
  async prepare() {
    await loadServe()
  },
  /** The parsers' refusal: an HttpError with a 4xx status (not a RefgptError, so child.mjs asks). */
  isClean(e) {
    return serveMod !== undefined && e instanceof serveMod.HttpError && e.status >= 400 && e.status < 500
  },
  async run(path, core) {
    const m = await loadServe()
    const endpoint = basename(path, '.json')
    const parse = {
      completions: (b) => m.parseCompletion(b, SERVE_LIMITS),
      chat: (b) => m.parseChat(b, SERVE_LIMITS),
      tokenize: (b) => m.parseTokenize(b),
      detokenize: (b) => m.parseDetokenize(b),
    }[endpoint]
    if (!parse) throw new Error(`serve: no endpoint ${JSON.stringify(endpoint)} (the input file is named <endpoint>.json)`)
    const bytes = readFileSync(path)
    // as readJson/parseBody: an empty body, bad UTF-8, bad JSON or a non-object is a 400 before any parser
    if (bytes.length === 0) throw new m.HttpError(400, 'empty request body')
    let body
    try {
      body = JSON.parse(utf8Fatal.decode(bytes))
    } catch (e) {
      throw new m.HttpError(400, `request body is not valid UTF-8 JSON: ${e?.name}`)
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new m.HttpError(400, 'request body must be a JSON object')
    let q
    try {
      q = parse(body)
    } catch (e) {
      // a RefgptError is clean for the other targets; from a request parser it is a bug (the server answers 500)
      if (e instanceof core.RefgptError) throw new Error(`serve ${endpoint}: the parser threw ${e.name} (not an HttpError): ${e.message}`, { cause: e })
      throw e
    }
    serveCheck(endpoint, q, SERVE_LIMITS)
  },
}

/**
 * Test-only target (never in the default list): 'planted:MODE' misbehaves on purpose, to check the
 * classifier and the watchdogs. MODE: ok, refgpt, typeerror, reject, hang, alloc, abort, exit.
 */
export const PLANTED_MODES = ['ok', 'refgpt', 'typeerror', 'reject', 'hang', 'alloc', 'abort', 'exit']
const planted = {
  name: 'planted',
  mutators: PLANTED_MODES,
  generate(r, S, force, opt) {
    return { entries: { 'input.txt': enc.encode(`${opt ?? force ?? 'ok'} ${r.u32()}\n`) }, main: 'input.txt', tags: [`planted.${opt ?? force ?? 'ok'}`] }
  },
  async run(path, core) {
    const mode = readFileSync(path, 'utf8').split(' ')[0]
    if (mode === 'refgpt') throw new core.UsageError({ what: 'planted refgpt error' })
    if (mode === 'typeerror') return null.planted
    if (mode === 'reject') {
      Promise.reject(new TypeError('planted unhandled rejection'))
      return
    }
    if (mode === 'hang') for (;;);
    if (mode === 'alloc') {
      const keep = []
      for (;;) keep.push(Buffer.alloc(64 << 20, 1))
    }
    if (mode === 'abort') process.abort()
    if (mode === 'exit') process.exit(7)
  },
}

export const TARGETS = { safetensors, sharded, torch, tokenizer, config, golden, serve, planted }
/**
 * The targets a run uses unless told (planted is for tests; serve is asked for by name: --targets serve, so the
 * default run's inputs, and test/fuzz.test.ts's 50 per default target of 300, stay as they were).
 */
export const DEFAULT_TARGETS = ['safetensors', 'sharded', 'torch', 'tokenizer', 'config', 'golden']

/** 'planted:hang' -> { target, option }. */
export function parseTargetSpec(spec) {
  const [name, option] = spec.split(':')
  if (!TARGETS[name]) throw new Error(`unknown target ${JSON.stringify(name)} (known: ${Object.keys(TARGETS).join(', ')})`)
  return { target: TARGETS[name], option }
}

/**
 * Input k of target `spec` in the run with `seed`: a case (case.mjs). `force` picks a mutator; `sweep`
 * forces mutator k mod (number of mutators), so that a short run tries every one of them.
 */
export function makeCase(spec, seed, k, S, force, sweep = false) {
  const { target, option } = parseTargetSpec(spec)
  if (sweep && force === undefined && !option) force = target.mutators[k % target.mutators.length]
  const r = inputRng(seed, spec, k)
  const g = target.generate(r, S, force, option)
  return { target: spec, seed, k, ...(sweep ? { sweep: true } : {}), tags: g.tags, main: g.main, ...(g.options ? { options: g.options } : {}), entries: g.entries }
}

export { BYTE_MUTATORS }
