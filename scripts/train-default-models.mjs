#!/usr/bin/env node
// The default models (issue 12): two small language models trained from scratch by refgpt's own trainer
// on text Debian ships, so that `refgpt generate`, `refgpt chat`, `refgpt step` and
// `pipeline('text-generation')` show a real model at work with no download.
//
//   node scripts/train-default-models.mjs [--budget full|smoke] [--only en|zh] [--out DIR] [--threads N]
//                                         [--install] [--no-install] [--docs DIR]
//
//   en  fortunes-neo-en: GPT-Neo (global + local attention), the real GPT-2 BPE tokenizer files, trained on
//       the `fortunes` + `fortunes-min` cookie files (records kept with their line breaks).
//   zh  fortunes-gpt3-zh: ModelScope GPT-3 (configuration.json, config.json, pytorch_model.bin, vocab.txt),
//       a BERT-Chinese-layout vocab.txt built from the characters of the training split, trained on
//       `fortunes-zh` (Tang and Song poems, proverbs and quotations).
//
// Steps, per model:
// 1. apt-get installs the Debian packages when missing (apt-get update first; --no-install: exit 2 instead).
// 2. Records: terminal colour escapes removed, each line trimmed, empty lines dropped, records longer than a
//    cap skipped, duplicates dropped, in file order. Fixed held-out split: record i (0-based, after the
//    filtering) is held out when i % 20 == 19; the rest is training data. The per-epoch eval of the trainer
//    uses 300 evenly spaced held-out records.
// 3. A fresh model folder (OUT/init-<key>): the config below, weights drawn from a seeded normal(0, 0.02)
//    (biases 0, LayerNorm weight 1, bias 0: transformers' _init_weights), written F32.
// 4. `refgpt train` with fixed seeds and a fixed step count (the budget), cosine schedule with warm-up;
//    data packed into blocks of --max-length: en with `--pack` (a blank line between records, EOS after
//    each), zh as pre-tokenized `input_ids` rows ([CLS] text [SEP] of record after record, cut into blocks).
// 5. The trained weights rounded to BF16 and written as the shipped folder (OUT/<name>).
// 6. Measured on the shipped (BF16) weights: held-out perplexity per token over every held-out record framed
//    as in training (en: EOS text EOS, zh: [CLS] text [SEP]; the first token is the condition, every other
//    one is predicted), beside a unigram (add-one) and an interpolated Witten-Bell bigram baseline counted
//    on the training split with the same framing; 5 samples per model (`refgpt generate --do-sample`, seeds
//    1-5); and the greedy ids of a fixed prompt. Everything goes to OUT/summary.json and OUT/summary.md.
// With --install the shipped folders are copied to packages/core/assets/models/ (the defaults) and the
// held-out sample for the tests to test/fixtures/default-models/.
//
// Reproducible: the same command gives the same weights, bit for bit: the data order, the initial weights and
// the training are seeded, and the wasm training kernels sum every element in one fixed order whatever the
// thread split (checked on the smoke budget: two runs, and --threads 1 against 2, gave one sha256). Results
// of the recorded run: docs/default-models.md.

import { copyFileSync, cpSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  CLI, ROOT, collectRecords, dpkgVersion, ensurePackages, evenly, f2, fatal as fail, fortuneFiles, fppl, loadCore, ngramBaselines,
  readTrainLog, runTrain,
} from './lib/fortunes.mjs'

const NAME = 'train-default-models'
const USAGE = `Usage: node scripts/${NAME}.mjs [--budget full|smoke] [--only en|zh] [--out DIR] [--threads N] [--install] [--no-install] [--docs DIR]`
const fatal = (msg, code = 1) => fail(NAME, msg, code)
const log = (msg) => console.log(`[${NAME}] ${msg}`)

let opts
try {
  opts = parseArgs({
    options: {
      budget: { type: 'string', default: 'full' },
      only: { type: 'string' },
      out: { type: 'string', default: join(tmpdir(), 'refgpt-default-models') },
      threads: { type: 'string', default: '1' },
      install: { type: 'boolean', default: false },
      'no-install': { type: 'boolean', default: false },
      docs: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: false,
  }).values
} catch (e) {
  fatal(`${e.message}\n${USAGE}`, 2)
}
if (opts.help) {
  console.log(USAGE)
  process.exit(0)
}
if (opts.only !== undefined && opts.only !== 'en' && opts.only !== 'zh') fatal(`--only must be en or zh (found ${JSON.stringify(opts.only)})`, 2)
if (!/^[1-9][0-9]*$/.test(opts.threads)) fatal(`--threads must be a positive integer (found ${JSON.stringify(opts.threads)})`, 2)
if (opts.budget !== 'full' && opts.budget !== 'smoke') fatal(`--budget must be full or smoke (found ${JSON.stringify(opts.budget)})`, 2)
if (opts.install && opts.budget !== 'full') fatal('--install ships the models: only with --budget full', 2)
const OUT = resolve(opts.out)
const ASSETS = join(ROOT, 'packages/core/assets/models')
const SAMPLE_DIR = join(ROOT, 'test/fixtures/default-models')

/** Hyperparameters (the budget sets the step count; smoke: a few steps to check the script end to end). */
const TRAIN = {
  en: { steps: 1000, batchSize: 16, maxLength: 128, lr: 2e-3, warmup: 60, weightDecay: 0.01, seed: 1 },
  zh: { steps: 800, batchSize: 16, maxLength: 128, lr: 2e-3, warmup: 60, weightDecay: 0.01, seed: 1 },
}
if (opts.budget === 'smoke') for (const t of Object.values(TRAIN)) (t.steps = 4), (t.warmup = 2)

const RUNS = [
  {
    key: 'en',
    name: 'fortunes-neo-en',
    family: 'gpt_neo',
    packages: ['fortunes', 'fortunes-min'],
    skipFiles: ['ascii-art', 'art'], // pictures made of characters
    capChars: 400,
    lineBreaks: true,
    config: {
      activation_function: 'gelu_new', architectures: ['GPTNeoForCausalLM'], attention_dropout: 0, embed_dropout: 0, resid_dropout: 0,
      attention_types: [[['global', 'local'], 3]], attention_layers: ['global', 'local', 'global', 'local', 'global', 'local'],
      bos_token_id: 50256, eos_token_id: 50256, hidden_size: 128, initializer_range: 0.02, intermediate_size: null,
      layer_norm_epsilon: 1e-5, max_position_embeddings: 256, model_type: 'gpt_neo', num_heads: 4, num_layers: 6,
      torch_dtype: 'bfloat16', use_cache: true, vocab_size: 50257, window_size: 128,
    },
    prompt: 'A journey of a thousand miles',
  },
  {
    key: 'zh',
    name: 'fortunes-gpt3-zh',
    family: 'gpt3',
    packages: ['fortunes-zh'],
    skipFiles: [],
    capChars: 200,
    lineBreaks: false,
    config: {
      attention_probs_dropout_prob: 0.1, hidden_act: 'gelu', hidden_dropout_prob: 0.1, hidden_size: 256, initializer_range: 0.02,
      intermediate_size: 1024, max_position_embeddings: 128, num_attention_heads: 8, num_hidden_layers: 4, type_vocab_size: 2,
      vocab_size: 0 /* set from vocab.txt */, fp16: false, layernorm_epsilon: 1e-12, eod_id: 0 /* set: [SEP] */,
    },
    prompt: '春眠不觉晓',
  },
].filter((r) => opts.only === undefined || r.key === opts.only)

// ---------------------------------------------------------------------------------------------------
// data

/** A record cleaned: lines trimmed, empty lines dropped, joined with "\n" (en) or a space (zh). */
function clean(record, lineBreaks) {
  const lines = record.split('\n').map((l) => l.replace(/\t/g, ' ').replace(/ {2,}/g, ' ').trim()).filter(Boolean)
  return lines.join(lineBreaks ? '\n' : ' ')
}

function buildRecords(run) {
  const files = run.packages.flatMap((p) => fortuneFiles(NAME, p)).filter((f) => !run.skipFiles.includes(basename(f)))
  if (files.length === 0) fatal(`no fortune files found in ${run.packages.join(', ')}`)
  const { records, total, tooLong, dup } = collectRecords(files, { clean: (raw) => clean(raw, run.lineBreaks), capChars: run.capChars })
  const heldOut = records.filter((_, i) => i % 20 === 19)
  const train = records.filter((_, i) => i % 20 !== 19)
  return { files: files.map((f) => basename(f)), total, tooLong, dup, kept: records.length, train, heldOut, evalSubset: evenly(heldOut, 300) }
}

// ---------------------------------------------------------------------------------------------------
// a fresh model folder

/** mulberry32 (seeded uniform [0, 1)) and Box-Muller normals. */
function normals(seed) {
  let a = seed >>> 0
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return (n, std) => {
    const out = new Float32Array(n)
    for (let i = 0; i < n; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - u())), th = 2 * Math.PI * u()
      out[i] = r * Math.cos(th) * std
      if (i + 1 < n) out[i + 1] = r * Math.sin(th) * std
    }
    return out
  }
}

/** The tensors of a fresh model, in the checkpoint's key order: [name, shape, 'normal' | 'zeros' | 'ones']. */
function tensorPlan(run) {
  const c = run.config
  const t = []
  if (run.family === 'gpt_neo') {
    const C = c.hidden_size, F = 4 * C
    t.push(['transformer.wte.weight', [c.vocab_size, C], 'normal'], ['transformer.wpe.weight', [c.max_position_embeddings, C], 'normal'])
    for (let l = 0; l < c.num_layers; l++) {
      const p = `transformer.h.${l}.`
      t.push([p + 'ln_1.weight', [C], 'ones'], [p + 'ln_1.bias', [C], 'zeros'])
      for (const q of ['k_proj', 'v_proj', 'q_proj']) t.push([`${p}attn.attention.${q}.weight`, [C, C], 'normal'])
      t.push([p + 'attn.attention.out_proj.weight', [C, C], 'normal'], [p + 'attn.attention.out_proj.bias', [C], 'zeros'])
      t.push([p + 'ln_2.weight', [C], 'ones'], [p + 'ln_2.bias', [C], 'zeros'])
      t.push([p + 'mlp.c_fc.weight', [F, C], 'normal'], [p + 'mlp.c_fc.bias', [F], 'zeros'])
      t.push([p + 'mlp.c_proj.weight', [C, F], 'normal'], [p + 'mlp.c_proj.bias', [C], 'zeros'])
    }
    t.push(['transformer.ln_f.weight', [C], 'ones'], ['transformer.ln_f.bias', [C], 'zeros'])
  } else {
    const C = c.hidden_size, F = c.intermediate_size, p0 = 'language_model.'
    t.push([p0 + 'word_embeddings.weight', [c.vocab_size, C], 'normal'], [p0 + 'position_embeddings.weight', [c.max_position_embeddings, C], 'normal'])
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `${p0}transformer.layers.${l}.`
      t.push([p + 'input_layernorm.weight', [C], 'ones'], [p + 'input_layernorm.bias', [C], 'zeros'])
      t.push([p + 'attention.query_key_value.weight', [3 * C, C], 'normal'], [p + 'attention.query_key_value.bias', [3 * C], 'zeros'])
      t.push([p + 'attention.dense.weight', [C, C], 'normal'], [p + 'attention.dense.bias', [C], 'zeros'])
      t.push([p + 'post_attention_layernorm.weight', [C], 'ones'], [p + 'post_attention_layernorm.bias', [C], 'zeros'])
      t.push([p + 'mlp.dense_h_to_4h.weight', [F, C], 'normal'], [p + 'mlp.dense_h_to_4h.bias', [F], 'zeros'])
      t.push([p + 'mlp.dense_4h_to_h.weight', [C, F], 'normal'], [p + 'mlp.dense_4h_to_h.bias', [C], 'zeros'])
    }
    t.push([p0 + 'transformer.final_layernorm.weight', [C], 'ones'], [p0 + 'transformer.final_layernorm.bias', [C], 'zeros'])
  }
  return t
}

/** vocab.txt in BERT-Chinese's layout ([PAD] 0, [unused1..99], [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103),
 *  then every character seen at least twice in the training split (most frequent first, ties by code point),
 *  lower-cased as the tokenizer lower-cases, "##" + each ASCII letter and digit (WordPiece continuations),
 *  and "|" (refgpt chat's separator). */
function buildVocab(train) {
  const counts = new Map()
  for (const t of train) for (const ch of t.toLowerCase()) if (!/\s/u.test(ch)) counts.set(ch, (counts.get(ch) ?? 0) + 1)
  const chars = [...counts].filter(([, n]) => n >= 2).sort((a, b) => b[1] - a[1] || a[0].codePointAt(0) - b[0].codePointAt(0)).map(([c]) => c)
  const lines = ['[PAD]', ...Array.from({ length: 99 }, (_, i) => `[unused${i + 1}]`), '[UNK]', '[CLS]', '[SEP]', '[MASK]']
  const have = new Set(lines)
  for (const c of chars) if (!have.has(c)) lines.push(c), have.add(c)
  for (const c of 'abcdefghijklmnopqrstuvwxyz0123456789') for (const w of [c, `##${c}`]) if (!have.has(w)) lines.push(w), have.add(w)
  if (!have.has('|')) lines.push('|') // refgpt chat's separator
  return lines
}

function writeInit(core, run, dir, vocab) {
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  if (vocab) writeFileSync(join(dir, 'vocab.txt'), vocab.join('\n') + '\n')
  const randn = normals(run.key === 'en' ? 1001 : 1002)
  const tensors = tensorPlan(run).map(([name, shape, init]) => {
    const n = shape.reduce((a, b) => a * b, 1)
    const data = init === 'normal' ? randn(n, run.config.initializer_range) : new Float32Array(n).fill(init === 'ones' ? 1 : 0)
    return { name, shape, data }
  })
  writeFileSync(join(dir, 'config.json'), JSON.stringify(run.config, null, 2) + '\n')
  if (run.family === 'gpt_neo') {
    for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(ROOT, 'test/fixtures/tokenizer/gpt2', f), join(dir, f))
    core.writeSafetensors(join(dir, 'model.safetensors'), tensors)
  } else {
    writeFileSync(join(dir, 'configuration.json'), readFileSync(join(ROOT, 'test/fixtures/models/gpt3-ms-tiny/configuration.json')))
    core.writeTorchZip(join(dir, 'pytorch_model.bin'), tensors)
  }
  return tensors.reduce((s, t) => s + t.data.length, 0)
}

// ---------------------------------------------------------------------------------------------------
// framing (the same for the training blocks, the eval rows, the held-out perplexity and the baselines)

/** One record as token ids with its first token the condition: en EOS text EOS, zh [CLS] text [SEP]. */
function framer(core, run, dir) {
  const tok = core.loadTokenizer(dir)
  if (run.family === 'gpt_neo') {
    const eos = run.config.eos_token_id
    return { tok, frame: (t) => [eos, ...tok.encode(t), eos] }
  }
  const id = (s) => {
    const v = tok.encode(s)
    if (v.length !== 1) fatal(`vocab.txt: ${s} is not one token`)
    return v[0]
  }
  const cls = id('[CLS]'), sep = id('[SEP]')
  return { tok, frame: (t) => [cls, ...tok.encode(t), sep] }
}

/** zh training rows: framed records concatenated (the leading condition token included), cut into blocks. */
function packedRows(frame, texts, L) {
  const stream = []
  for (const t of texts) stream.push(...frame(t))
  const rows = []
  for (let i = 0; i + L <= stream.length; i += L) rows.push(JSON.stringify({ input_ids: stream.slice(i, i + L) }))
  return { rows, tokens: stream.length, dropped: stream.length % L }
}

// ---------------------------------------------------------------------------------------------------
// measuring the shipped model

async function heldOutLoss(core, dir, frame, texts, threads) {
  const model = await core.loadModel(dir, { device: 'wasm', threads })
  try {
    const L = model.arch.nPositions
    const session = model.createSession({ maxBatchTokens: L })
    try {
      let sum = 0, n = 0, cut = 0
      for (const t of texts) {
        let ids = frame(t)
        if (ids.length > L) (ids = ids.slice(0, L)), cut++
        const lp = await session.logProbs(ids.slice(0, -1), { targets: ids.slice(1) })
        for (let i = 0; i < lp.length; i++) sum -= lp[i]
        n += lp.length
      }
      return { loss: sum / n, targets: n, records: texts.length, truncated: cut }
    } finally {
      session.dispose()
    }
  } finally {
    await model.dispose()
  }
}

function cli(args) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' })
  if (r.status !== 0) fatal(`refgpt ${args.join(' ')} failed: ${r.stderr.trim()}`)
  return r.stdout
}

/** Copies the trained weights to a BF16 folder (the shipped one) with the config and tokenizer files. */
function shipBf16(core, run, initDir, trainedDir, outDir) {
  rmSync(outDir, { recursive: true, force: true })
  mkdirSync(outDir, { recursive: true })
  const ck = core.openCheckpoint(trainedDir)
  try {
    const tensors = tensorPlan(run).map(([name, shape]) => {
      if (!ck.tensors.has(name)) fatal(`${trainedDir}: no tensor ${name}`)
      return { name, shape, data: ck.readF32(name), dtype: 'BF16' }
    })
    if (run.family === 'gpt_neo') core.writeSafetensors(join(outDir, 'model.safetensors'), tensors)
    else core.writeTorchZip(join(outDir, 'pytorch_model.bin'), tensors)
  } finally {
    ck.close()
  }
  const files = run.family === 'gpt_neo' ? ['config.json', 'vocab.json', 'merges.txt'] : ['config.json', 'configuration.json', 'vocab.txt']
  for (const f of files) copyFileSync(join(initDir, f), join(outDir, f))
}

// ---------------------------------------------------------------------------------------------------

async function main() {
  const pkgs = [...new Set(RUNS.flatMap((r) => r.packages))]
  ensurePackages(NAME, pkgs, { install: !opts['no-install'], log })
  const versions = Object.fromEntries(pkgs.map((p) => [p, dpkgVersion(p)]))
  log(`packages: ${pkgs.map((p) => `${p} ${versions[p]}`).join(', ')}`)
  const core = await loadCore(log)
  mkdirSync(OUT, { recursive: true })
  const threads = Number(opts.threads)
  const results = []

  for (const run of RUNS) {
    const h = TRAIN[run.key]
    const data = buildRecords(run)
    log(`--- ${run.name}: ${data.total} records in ${data.files.length} files; ${data.tooLong} longer than ${run.capChars} characters and ${data.dup} duplicates skipped; ${data.train.length} train / ${data.heldOut.length} held out`)
    const initDir = join(OUT, `init-${run.key}`)
    const vocab = run.family === 'gpt3' ? buildVocab(data.train) : null
    if (vocab) {
      run.config.vocab_size = vocab.length
      run.config.eod_id = vocab.indexOf('[SEP]')
    }
    const params = writeInit(core, run, initDir, vocab)
    const { tok, frame } = framer(core, run, initDir)
    log(`fresh model: ${params.toLocaleString('en-US')} parameters, vocabulary ${run.config.vocab_size}`)

    // training and eval files
    const dataDir = join(OUT, 'data')
    mkdirSync(dataDir, { recursive: true })
    const files = {}
    let packInfo = null
    if (run.family === 'gpt_neo') {
      files.train = join(dataDir, `${run.key}.train.txt`)
      files.eval = join(dataDir, `${run.key}.eval.txt`)
      writeFileSync(files.train, data.train.join('\n\n') + '\n')
      writeFileSync(files.eval, data.evalSubset.join('\n\n') + '\n')
    } else {
      files.train = join(dataDir, `${run.key}.train.jsonl`)
      files.eval = join(dataDir, `${run.key}.eval.jsonl`)
      const tr = packedRows(frame, data.train, h.maxLength), ev = packedRows(frame, data.evalSubset, h.maxLength)
      writeFileSync(files.train, tr.rows.join('\n') + '\n')
      writeFileSync(files.eval, ev.rows.join('\n') + '\n')
      packInfo = { trainBlocks: tr.rows.length, trainTokens: tr.tokens, evalBlocks: ev.rows.length }
      let unk = 0, all = 0
      const unkId = tok.encode('[UNK]')[0]
      for (const t of data.train) for (const id of tok.encode(t)) (all++, id === unkId && unk++)
      packInfo.unkShare = unk / all
      log(`zh blocks: ${tr.rows.length} train (${tr.tokens} tokens), ${ev.rows.length} eval; [UNK] ${(100 * unk / all).toFixed(2)}% of training tokens`)
    }

    // baselines on the held-out records, counted on the training records
    const pairs = (texts) => (fn) => {
      for (const t of texts) {
        const ids = frame(t).slice(0, run.config.max_position_embeddings)
        for (let i = 1; i < ids.length; i++) fn(ids[i - 1], ids[i])
      }
    }
    const ngram = ngramBaselines(run.config.vocab_size, pairs(data.train), pairs(data.heldOut))
    log(`held-out baselines: unigram ${fppl(Math.exp(ngram.unigramLoss))}, bigram ${fppl(Math.exp(ngram.bigramLoss))} (${ngram.targets} targets)`)

    // train
    const runDir = join(OUT, `run-${run.key}`)
    rmSync(runDir, { recursive: true, force: true })
    const args = [
      CLI, 'train', '--model', initDir, '--data', files.train, '--eval-data', files.eval, '--out', runDir,
      '--epochs', '1000', '--max-steps', String(h.steps), '--batch-size', String(h.batchSize), '--max-length', String(h.maxLength),
      '--lr', String(h.lr), '--scheduler', 'cosine', '--warmup-steps', String(h.warmup), '--weight-decay', String(h.weightDecay),
      '--seed', String(h.seed), '--save-steps', '500', '--device', 'wasm', '--threads', String(threads),
      ...(run.family === 'gpt_neo' ? ['--pack'] : []),
    ]
    log(`refgpt ${args.slice(1).join(' ').replaceAll(OUT, '$OUT').replaceAll(ROOT + '/', '')}`)
    const t0 = performance.now()
    await runTrain(args, join(OUT, `${run.name}.train.log`), `  [${run.key}] `)
    const wall = (performance.now() - t0) / 1000
    const trainLog = readTrainLog(join(runDir, 'train_log.jsonl'))

    // ship (BF16) and measure the shipped folder
    const shipDir = join(OUT, run.name)
    shipBf16(core, run, initDir, runDir, shipDir)
    const heldOut = await heldOutLoss(core, shipDir, frame, data.heldOut, threads)
    log(`held-out perplexity of the shipped BF16 model: ${fppl(Math.exp(heldOut.loss))} (unigram ${fppl(Math.exp(ngram.unigramLoss))}, bigram ${fppl(Math.exp(ngram.bigramLoss))})`)
    // samples: en as transformers samples (top-k 40, temperature 0.8); zh as ModelScope's pipeline does
    // (its nucleus sampling, top-p 0.9 unless config.json says otherwise), seeds 1-5
    const sampleArgs = run.family === 'gpt_neo' ? ['--do-sample', '--top-k', '40', '--temperature', '0.8'] : []
    const samples = [1, 2, 3, 4, 5].map((seed) => {
      const j = JSON.parse(cli(['generate', '--model', shipDir, run.prompt, ...sampleArgs, '--max-new-tokens', '60', '--seed', String(seed), '--json']))
      return { seed, text: j.text ?? j.sequences[0].text }
    })
    const greedyArgs = run.family === 'gpt_neo' ? [] : ['--top-k', '1', '--top-p', '0']
    const g = JSON.parse(cli(['generate', '--model', shipDir, run.prompt, ...greedyArgs, '--max-new-tokens', '20', '--json']))
    const greedy = { args: greedyArgs, ids: g.ids ?? g.sequences[0].ids, text: g.text ?? g.sequences[0].text }
    const svg = join(OUT, `${run.name}.loss_curve.svg`)
    copyFileSync(join(runDir, 'loss_curve.svg'), svg)
    if (opts.docs) copyFileSync(svg, join(resolve(opts.docs), `training-${run.name}.svg`))
    const sampleRecords = evenly(data.heldOut, 40)
    results.push({
      name: run.name, key: run.key, family: run.family, config: run.config, parameters: params, hyperparameters: h,
      command: ['refgpt', ...args.slice(1)].join(' ').replaceAll(OUT, '$OUT').replaceAll(ROOT + '/', ''),
      data: { files: data.files, records: data.total, tooLong: data.tooLong, duplicates: data.dup, train: data.train.length, heldOut: data.heldOut.length, evalSubset: data.evalSubset.length, ...packInfo },
      ngram, heldOutLoss: heldOut, log: trainLog, wall_s: wall, prompt: run.prompt, sampleArgs, samples, greedy,
      bytes: statSync(join(shipDir, run.family === 'gpt_neo' ? 'model.safetensors' : 'pytorch_model.bin')).size,
      sampleRecords,
    })
    if (opts.install) {
      const dest = join(ASSETS, run.name)
      rmSync(dest, { recursive: true, force: true })
      mkdirSync(ASSETS, { recursive: true })
      cpSync(shipDir, dest, { recursive: true })
      mkdirSync(SAMPLE_DIR, { recursive: true })
      // the held-out sample the tests score, with the baselines' perplexities on exactly these records
      const sampleNgram = ngramBaselines(run.config.vocab_size, pairs(data.train), pairs(sampleRecords))
      writeFileSync(join(SAMPLE_DIR, `${run.name}.heldout.json`), JSON.stringify({
        model: run.name, framing: run.family === 'gpt_neo' ? 'EOS text EOS' : '[CLS] text [SEP]', records: sampleRecords,
        unigram_ppl: Math.exp(sampleNgram.unigramLoss), bigram_ppl: Math.exp(sampleNgram.bigramLoss), targets: sampleNgram.targets,
        greedy: { prompt: run.prompt, max_new_tokens: 20, ...greedy },
      }, null, 1) + '\n')
      log(`installed ${dest} and ${join(SAMPLE_DIR, `${run.name}.heldout.json`)}`)
    }
  }

  const summary = { budget: opts.budget, threads, packages: versions, node: process.version, date: new Date().toISOString(), runs: results }
  writeFileSync(join(OUT, 'summary.json'), JSON.stringify(summary, null, 1) + '\n')
  const md = []
  for (const r of results) {
    md.push(`### ${r.name}`, '')
    md.push(`- ${r.parameters.toLocaleString('en-US')} parameters, shipped as BF16 (${(r.bytes / 2 ** 20).toFixed(1)} MiB)`)
    md.push(`- data: ${r.data.train} training records, ${r.data.heldOut} held out`)
    md.push(`- ${r.log.steps} steps, ${r.log.tokens.toLocaleString('en-US')} training tokens, ${Math.round(r.log.trainTokensPerS)} tokens/s, wall ${(r.wall_s / 60).toFixed(1)} min`)
    md.push(`- held-out perplexity: **${fppl(Math.exp(r.heldOutLoss.loss))}**; unigram ${fppl(Math.exp(r.ngram.unigramLoss))}, bigram ${fppl(Math.exp(r.ngram.bigramLoss))} (${r.ngram.targets} targets)`)
    md.push('', '| epoch | step | eval loss | eval perplexity |', '|---|---|---|---|')
    for (const e of r.log.evals) md.push(`| ${e.epoch} | ${e.step} | ${f2(e.loss, 4)} | ${fppl(e.ppl)} |`)
    md.push('', `Samples (prompt ${JSON.stringify(r.prompt)}, \`${r.sampleArgs.join(' ')} --max-new-tokens 60 --seed S\`):`, '')
    for (const s of r.samples) md.push(`- seed ${s.seed}: ${JSON.stringify(s.text)}`)
    md.push('')
  }
  writeFileSync(join(OUT, 'summary.md'), md.join('\n') + '\n')
  console.log(md.join('\n'))
  log(`wrote ${join(OUT, 'summary.json')} and summary.md`)
}

main().catch((e) => {
  console.error(`${NAME}: ${e?.stack ?? e}`)
  process.exit(1)
})
