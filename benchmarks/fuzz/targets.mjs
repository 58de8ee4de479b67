// The fuzz targets: one per input format. Each target has
//   mutators   the names `generate` can be forced to use ('family:op'), for tests and --repro-case
//   generate(r, S, force) -> { entries, main, tags }   a mutated input from the seeds S (seeds.mjs)
//   run(path, core, ctx, case)   the library call and a little work on its result (read every tensor,
//                          encode/decode strings, one tiny forward)
// An input is CLEAN when run() returns or throws a RefgptError; anything else is a finding.

import { readFileSync } from 'node:fs'
import { mutateBytes, BYTE_MUTATORS } from './bytes.mjs'
import { FS_OP_NAMES, mutateFs } from './case.mjs'
import { BOUNDARY_STRINGS, TEXT_OP_NAMES, TREE_OP_NAMES, cached, mutateJsonFile } from './json.mjs'
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

export const TARGETS = { safetensors, sharded, torch, tokenizer, config, golden, planted }
/** The targets a run uses unless told (planted is for tests). */
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
