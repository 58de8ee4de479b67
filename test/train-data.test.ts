// Training data (packages/core/src/training/data.ts): the .jsonl / .txt readers, the hf / modelscope /
// pack framings, error lines, collate, the seeded resumable Batcher and the token counters. Expected ids
// are built here by hand from the fixture tokenizers' encode() (gpt2-tiny BPE, gpt3-ms-tiny WordPiece)
// and, for ModelScope, from the training golden rows (shared/golden/training/gpt3-ms-tiny/golden.json).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createSampler, loadTokenizer, modelscopeEncode, UsageError, type WordPieceTokenizer } from '@refgpt/core'
import {
  Batcher,
  IGNORE_INDEX,
  Packer,
  batchTokenCounts,
  collate,
  countTargets,
  exampleTokenCounts,
  frameIds,
  frameText,
  loadExamples,
  makeExample,
  readLines,
  resolveFraming,
  tokensPerSecond,
  type Batch,
  type Example,
  type LoadOptions,
} from '../packages/core/src/training/data.js'
import { modelDir, rejects } from './helpers.js'

const gpt2 = loadTokenizer(modelDir('gpt2-tiny'))
const ms = loadTokenizer(modelDir('gpt3-ms-tiny')) as WordPieceTokenizer
const EOS = 50256 // GPT-2 '<|endoftext|>'
const CLS = 101, SEP = 102, PAD = 0 // BERT-Chinese layout of the gpt3-ms-tiny vocab.txt
const X = IGNORE_INDEX

const test = suite('training data')
let root: string
let fileNo = 0
test.before(() => {
  root = mkdtempSync(join(tmpdir(), 'refgpt-train-data-'))
})
test.after(() => rmSync(root, { recursive: true, force: true }))

function file(ext: string, content: string | Buffer): string {
  const p = join(root, `data${++fileNo}.${ext}`)
  writeFileSync(p, content)
  return p
}
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n'

/** The expected example for ids (labels = ids): targets = ids[1:] then -100. */
function expected(ids: number[]): { inputIds: number[]; targets: number[] } {
  return { inputIds: ids, targets: [...ids.slice(1), X] }
}
const plain = (e: Example) => ({ inputIds: Array.from(e.inputIds), targets: Array.from(e.targets) })

const hf = (maxLength: number, extra: Partial<LoadOptions> = {}): LoadOptions => ({ tokenizer: gpt2, framing: 'hf', maxLength, ...extra })
const msOpts = (maxLength: number, extra: Partial<LoadOptions> = {}): LoadOptions => ({ tokenizer: ms, framing: 'modelscope', maxLength, ...extra })

// ------------------------------------------------------------------------------------------ readers

test('hand-checked GPT-2 ids (the fixture tokenizer is the real GPT-2 vocabulary)', () => {
  assert.equal(gpt2.encode('Hello world'), [15496, 995])
  assert.equal(gpt2.encode('The cat sat.'), [464, 3797, 3332, 13])
  assert.is(gpt2.specialTokens.get('<|endoftext|>'), EOS)
  assert.is(ms.special('[CLS]'), CLS)
  assert.is(ms.special('[SEP]'), SEP)
  assert.is(ms.special('[PAD]'), PAD)
})

test('.txt, hf: one example per line; blank / whitespace-only lines skipped; CRLF and BOM removed', async () => {
  const p = file('txt', '\uFEFFHello world\r\n\n   \nThe cat sat.\n\t\n Hi\n')
  const d = await loadExamples(p, hf(64))
  assert.equal(d.examples.map(plain), [expected([15496, 995]), expected([464, 3797, 3332, 13]), expected(gpt2.encode(' Hi'))])
  assert.is(d.stats.rows, 3)
  assert.is(d.stats.examples, 3)
  assert.is(d.stats.tokens, 2 + 4 + gpt2.encode(' Hi').length)
  assert.is(d.stats.targets, 1 + 3 + gpt2.encode(' Hi').length - 1)
  assert.is(d.padId, EOS) // hf pads with EOS (the positions are ignored anyway)
  assert.is(d.format, 'txt')
})

test('hf: truncation to maxLength from the right (no EOS by default; appendEos adds it before truncating)', async () => {
  const text = 'a b c d e f g h'
  const ids = gpt2.encode(text)
  assert.is(ids.length, 8)
  const p = file('txt', `${text}\nHello world\n`)
  const d = await loadExamples(p, hf(5))
  assert.equal(plain(d.examples[0]), expected(ids.slice(0, 5)))
  assert.equal(plain(d.examples[1]), expected([15496, 995]))
  assert.is(d.stats.truncated, 1)
  const e = await loadExamples(p, hf(5, { appendEos: true }))
  assert.equal(plain(e.examples[0]), expected(ids.slice(0, 5)), 'a truncated text loses its EOS (like tokenizer(text + eos, truncation=True))')
  assert.equal(plain(e.examples[1]), expected([15496, 995, EOS]))
})

test('.jsonl, hf: text field src_txt by default, another with textField; other fields ignored', async () => {
  const p = file('jsonl', jsonl([{ src_txt: 'Hello world', other: 1 }, { src_txt: 'The cat sat.' }]))
  const d = await loadExamples(p, hf(64))
  assert.equal(d.examples.map(plain), [expected([15496, 995]), expected([464, 3797, 3332, 13])])
  const q = file('jsonl', jsonl([{ text: 'Hello world' }]) + '\n\n')
  const e = await loadExamples(q, hf(64, { textField: 'text' }))
  assert.equal(e.examples.map(plain), [expected([15496, 995])])
})

test('.jsonl input_ids rows are used as they are; labels (HF unshifted, -100 allowed) become shifted targets', async () => {
  const p = file('jsonl', jsonl([{ input_ids: [5, 6, 7, 8] }, { input_ids: [1, 2, 3], labels: [X, 2, X] }, { src_txt: 'Hello world' }]))
  const d = await loadExamples(p, hf(4))
  assert.equal(plain(d.examples[0]), { inputIds: [5, 6, 7, 8], targets: [6, 7, 8, X] })
  assert.equal(plain(d.examples[1]), { inputIds: [1, 2, 3], targets: [2, X, X] })
  assert.equal(plain(d.examples[2]), expected([15496, 995]))
  assert.is(d.stats.targets, 3 + 1 + 1)
  // modelscope framing: no [CLS]/[SEP] added to pre-tokenized rows
  const m = await loadExamples(file('jsonl', jsonl([{ input_ids: [CLS, 240, SEP] }])), msOpts(8))
  assert.equal(plain(m.examples[0]), { inputIds: [CLS, 240, SEP], targets: [240, SEP, X] })
})

test('.jsonl, modelscope: [CLS] wordpieces [SEP], unpadded (pads come from collate with label -100)', async () => {
  const texts = ['今天终于拿到驾照了,求夸|', '你好', 'hello']
  const p = file('jsonl', jsonl(texts.map((t) => ({ src_txt: t }))))
  const d = await loadExamples(p, msOpts(128))
  assert.equal(ms.encode('你好'), [243, 240])
  assert.equal(plain(d.examples[1]), expected([CLS, 243, 240, SEP]))
  for (let i = 0; i < texts.length; i++) {
    const ids = [CLS, ...ms.encode(texts[i]), SEP]
    assert.equal(plain(d.examples[i]), expected(ids), texts[i])
    // the same row as the pipeline's preprocessor (modelscopeEncode), before its padding
    assert.equal(modelscopeEncode(ms, texts[i], 128).ids.slice(0, ids.length), ids)
  }
  assert.is(d.padId, PAD)
  const b = collate(d.examples, d.padId)
  const T = ms.encode(texts[0]).length + 2
  assert.is(b.seqLen, T)
  assert.equal(Array.from(b.inputIds.subarray(T, 2 * T)), [CLS, 243, 240, SEP, ...Array(T - 4).fill(PAD)])
  assert.equal(Array.from(b.targets.subarray(T, 2 * T)), [243, 240, SEP, ...Array(T - 3).fill(X)], '[SEP] counts, padding does not')
})

test('modelscope: truncation keeps [CLS] + the first maxLength-2 wordpieces + [SEP]', async () => {
  const text = '今天终于拿到驾照了,求夸|'
  const body = ms.encode(text)
  const d = await loadExamples(file('txt', text + '\n'), msOpts(6))
  assert.equal(plain(d.examples[0]), expected([CLS, ...body.slice(0, 4), SEP]))
  assert.equal(Array.from(d.examples[0].inputIds), modelscopeEncode(ms, text, 6).ids)
  assert.is(d.stats.truncated, 1)
})

test("modelscope padTargets 'count' reproduces ModelScope's rows exactly (golden training batch)", async () => {
  // shared/golden/training/gpt3-ms-tiny/golden.json input_ids (rows made like the ModelScope recipe)
  const row0 = [101, 351, 155, 303, 230, 329, 323, 284, 228, 102, 0, 0]
  const row1 = [101, 308, 236, 110, 165, 139, 142, 340, 112, 350, 143, 102]
  const t0 = ms.decode(row0.slice(1, 9)), t1 = ms.decode(row1.slice(1, 11))
  const p = file('jsonl', jsonl([{ src_txt: t0 }, { src_txt: t1 }]))
  const d = await loadExamples(p, msOpts(12, { padTargets: 'count' }))
  // ModelScope: input_ids = ids[:-1], labels = ids[1:] (pads included, nothing is -100): refgpt keeps the
  // full row and puts labels[t] at targets[t]; the last position predicts nothing.
  assert.equal(plain(d.examples[0]), { inputIds: row0, targets: [...row0.slice(1), X] })
  assert.equal(plain(d.examples[1]), { inputIds: row1, targets: [...row1.slice(1), X] })
  assert.is(d.stats.targets, 22, 'all 2 x 11 positions count, as in the golden README')
  // the default ignores the padding: row 0 has 9 targets (the two [PAD] targets are -100)
  const e = await loadExamples(p, msOpts(12))
  assert.equal(plain(e.examples[0]), expected(row0.slice(0, 10)))
  const b = collate(e.examples, e.padId)
  assert.equal(Array.from(b.inputIds), [...row0, ...row1])
  assert.equal(Array.from(b.targets.subarray(0, 12)), [...row0.slice(1, 10), X, X, X])
  assert.is(b.targetCount, 9 + 11)
  // pre-tokenized rows in 'count' mode are padded the same way
  const f = resolveFraming(msOpts(5, { padTargets: 'count' }))
  assert.equal(plain(frameIds([CLS, 240, SEP], undefined, f)), { inputIds: [CLS, 240, SEP, PAD, PAD], targets: [240, SEP, PAD, PAD, X] })
})

// ------------------------------------------------------------------------------------------ packing

test('pack (.txt paragraphs): documents + EOS concatenated, blocks of exactly maxLength, remainder dropped', async () => {
  const docs = ['Hello world', 'The cat sat.\nHi there', 'a b c d e f g h']
  const p = file('txt', `${docs[0]}\n\n\n${docs[1]}\n\n${docs[2]}\n`)
  const stream: number[] = []
  for (const doc of docs) stream.push(...gpt2.encode(doc), EOS)
  const L = 6
  const d = await loadExamples(p, { tokenizer: gpt2, framing: 'pack', maxLength: L })
  const nBlocks = Math.floor(stream.length / L)
  assert.ok(stream.length % L !== 0, 'the test needs a remainder')
  assert.is(d.examples.length, nBlocks)
  for (let k = 0; k < nBlocks; k++) {
    const block = stream.slice(k * L, (k + 1) * L)
    assert.equal(plain(d.examples[k]), expected(block), `block ${k}`)
  }
  assert.is(d.stats.droppedTokens, stream.length % L)
  assert.is(d.stats.rows, 3, 'three paragraphs')
  // the first block boundary: [Hello, world, EOS, The, cat, sat] then [., ...]
  assert.equal(Array.from(d.examples[0].inputIds), [15496, 995, EOS, 464, 3797, 3332])
  assert.equal(Array.from(d.examples[0].targets), [995, EOS, 464, 3797, 3332, X], 'the last position of a block predicts nothing')
  assert.is(d.examples[1].inputIds[0], 13)
})

test("pack (.txt, txtDocuments 'line') and .jsonl: EOS after each text; input_ids rows as they are", async () => {
  const p = file('txt', 'Hello world\nThe cat sat.\n')
  const d = await loadExamples(p, { tokenizer: gpt2, framing: 'pack', maxLength: 3, txtDocuments: 'line' })
  const stream = [15496, 995, EOS, 464, 3797, 3332, 13, EOS]
  assert.equal(d.examples.map(plain), [expected(stream.slice(0, 3)), expected(stream.slice(3, 6))])
  assert.is(d.stats.droppedTokens, 2)
  const q = file('jsonl', jsonl([{ src_txt: 'Hello world' }, { input_ids: [7, 8, 9] }, { src_txt: 'The cat sat.' }]))
  const e = await loadExamples(q, { tokenizer: gpt2, framing: 'pack', maxLength: 5 })
  const s2 = [15496, 995, EOS, 7, 8, 9, 464, 3797, 3332, 13, EOS]
  assert.equal(e.examples.map(plain), [expected(s2.slice(0, 5)), expected(s2.slice(5, 10))])
  assert.is(e.stats.droppedTokens, 1)
})

test('Packer: labels of pre-tokenized rows travel with their ids; blocks across many documents', () => {
  const f = resolveFraming({ tokenizer: gpt2, framing: 'pack', maxLength: 4 })
  const pk = new Packer(f)
  assert.equal(pk.pushIds([1, 2], [X, 2]), [])
  const out = pk.pushIds([3, 4, 5], [3, X, 5])
  assert.equal(out.map(plain), [{ inputIds: [1, 2, 3, 4], targets: [2, 3, X, X] }])
  assert.is(pk.pending, 1)
  const many: Example[] = []
  for (let i = 0; i < 10; i++) many.push(...pk.pushIds([10 + i]))
  assert.equal(many.map((e) => Array.from(e.inputIds)), [[5, 10, 11, 12], [13, 14, 15, 16]])
  assert.is(pk.finish(), 3)
})

test('pack: a corpus shorter than one block is an error (like run_clm)', async () => {
  await rejects(() => loadExamples(file('txt', 'Hello world\n'), { tokenizer: gpt2, framing: 'pack', maxLength: 8 }), /shorter than one block \(expected at least 8 tokens, found 3 tokens\)/)
})

// ------------------------------------------------------------------------------------------ errors

/** Loads a one-row-per-line file whose line `line` is bad; the message must be one line naming FILE:LINE. */
async function badLine(ext: string, content: string, opts: LoadOptions, line: number, re: RegExp) {
  const p = file(ext, content)
  let err: unknown
  try {
    await loadExamples(p, opts)
  } catch (e) {
    err = e
  }
  assert.ok(err instanceof UsageError, `expected a UsageError for ${JSON.stringify(content.slice(0, 60))}, got ${String(err)}`)
  const msg = (err as Error).message
  assert.ok(!msg.includes('\n'), 'one line')
  assert.ok(msg.startsWith(`${p}:${line}: `), `${msg} should start with ${p}:${line}`)
  assert.match(msg, re)
}

test('every bad .jsonl line is a one-line UsageError naming FILE:LINE, expected and found', async () => {
  const good = '{"src_txt": "Hello world"}\n'
  const o = hf(16)
  await badLine('jsonl', good + '{"src_txt": "x"\n', o, 2, /invalid JSON \(expected one JSON object per line, found /)
  await badLine('jsonl', good + '\n[1, 2]\n', o, 3, /the row is not a JSON object .*found an array/)
  await badLine('jsonl', '"text"\n', o, 1, /not a JSON object .*found a string/)
  await badLine('jsonl', good + '{"text": "x", "id": 3}\n', o, 2, /missing field "src_txt" \(expected a string field "src_txt" or an "input_ids" array, found fields "text, id"\); hint: choose the text field/)
  await badLine('jsonl', '{"src_txt": 5}\n', o, 1, /field "src_txt" is not a string \(expected a string, found a number\)/)
  await badLine('jsonl', '{"src_txt": null}\n', o, 1, /found null/)
  await badLine('jsonl', good + good + '{"src_txt": ""}\n', o, 3, /empty text in field "src_txt"/)
  await badLine('jsonl', '{"input_ids": [1, 50257]}\n', o, 1, /"input_ids"\[1\] out of the vocabulary range \(expected an id in \[0, 50257\), found 50257\)/)
  await badLine('jsonl', '{"input_ids": [1, 2]}\n', { ...o, vocabSize: 2 }, 1, /"input_ids"\[1\] out of the vocabulary range \(expected an id in \[0, 2\)/)
  await badLine('jsonl', '{"input_ids": [1, -100]}\n', o, 1, /"input_ids"\[1\] out of the vocabulary range/)
  await badLine('jsonl', '{"input_ids": [1, 2.5]}\n', o, 1, /"input_ids"\[1\] is not an integer \(expected integer token ids, found 2\.5\)/)
  await badLine('jsonl', '{"input_ids": []}\n', o, 1, /empty "input_ids"/)
  await badLine('jsonl', '{"input_ids": "1 2"}\n', o, 1, /"input_ids" is not an array/)
  await badLine('jsonl', '{"input_ids": [1, 2], "labels": [2]}\n', o, 1, /labels and input_ids differ in length/)
  await badLine('jsonl', '{"input_ids": [1, 2], "labels": [2, -5]}\n', o, 1, /"labels"\[1\] out of the vocabulary range \(expected an id in \[0, 50257\) or -100, found -5\)/)
  await badLine('jsonl', '{"src_txt": "a", "labels": [1]}\n', o, 1, /"labels" without "input_ids"/)
  await badLine('jsonl', good + `{"input_ids": [${Array(17).fill(1).join(',')}]}\n`, o, 2, /input_ids longer than the max length \(expected at most 16 ids, found 17\); hint: pre-tokenized rows are never truncated/)
  await badLine('jsonl', '{"src_txt": "\\u0000"}\n', msOpts(8), 1, /the text has no tokens/)
  await badLine('jsonl', '{"src_txt": "a b"}\n{"src_txt": "The cat"}\n', { ...o, vocabSize: 1000 }, 2, /a token of the text is outside the model's vocabulary \(expected ids < 1000, found 3797\)/)
})

test('.txt and file-level errors', async () => {
  await badLine('txt', 'ok\n\u0001\u0002\n', msOpts(8), 2, /the text has no tokens/)
  await badLine('txt', Buffer.concat([Buffer.from('ok\nab'), Buffer.from([0xff, 0xfe]), Buffer.from('\n')]) as unknown as string, hf(8), 2, /invalid UTF-8/)
  await badLine('txt', 'ok\n' + 'x'.repeat(300) + '\n', hf(8, { maxLineBytes: 100 }), 2, /line too long \(expected at most 100 bytes/)
  await badLine('txt', 'a\nb\nc\nd\n', hf(8, { maxExamples: 3 }), 4, /too many examples \(expected at most 3/)
  await badLine('txt', 'a b c\nd e f\n', hf(8, { maxTokens: 4 }), 2, /too many tokens \(expected at most 4/)
  await badLine('txt', 'ab\ncd\n\nabcd\nefgh\nijkl\n', { tokenizer: gpt2, framing: 'pack', maxLength: 2, maxLineBytes: 10 }, 4, /paragraph too long \(expected at most 10 bytes, found 15\+ bytes \(to line 6\)\)/)

  const big = file('txt', 'x'.repeat(2000) + '\n')
  await rejects(() => loadExamples(big, hf(8, { maxBytes: 1000 })), new RegExp(`^${big}: data file too large \\(expected at most 1000 bytes, found 2001 bytes\\)`))
  await rejects(() => loadExamples(file('txt', '\n \n'), hf(8)), /: no examples \(expected at least one non-blank line, found none\)/)
  await rejects(() => loadExamples(file('jsonl', ''), hf(8)), /: no examples \(expected at least one JSON row/)
  await rejects(() => loadExamples(file('csv', 'a\n'), hf(8)), /unknown data file type \(expected a \.jsonl file/)
  await rejects(() => loadExamples(join(root, 'missing.jsonl'), hf(8)), /missing\.jsonl: cannot open the data file/)
  await rejects(() => loadExamples(root, { ...hf(8), format: 'txt' }), /not a file/)
  await rejects(() => loadExamples(file('txt', 'a\n'), { tokenizer: gpt2, framing: 'modelscope', maxLength: 8 }), /the tokenizer has no \[CLS\] token .*hint: use framing 'hf'/)
  await rejects(() => loadExamples(file('txt', 'a\n'), hf(1)), /bad max length \(expected an integer >= 2/)
  await rejects(() => loadExamples(file('txt', 'a\n'), msOpts(2)), /bad max length \(expected an integer >= 3/)
  await rejects(() => loadExamples(file('txt', 'a\n'), hf(8, { eosId: 60000 })), /bad eos id/)
})

test('limit stops reading: lines after the limit are never parsed', async () => {
  const p = file('jsonl', jsonl([{ src_txt: 'Hello world' }, { src_txt: 'The cat sat.' }]) + '{not json\n')
  const d = await loadExamples(p, hf(8, { limit: 2 }))
  assert.is(d.examples.length, 2)
  const q = file('txt', 'Hello world\n\nThe cat sat.\n\n' + '\u0000 broken {\n'.repeat(3))
  const e = await loadExamples(q, { tokenizer: gpt2, framing: 'pack', maxLength: 3, limit: 1 })
  assert.equal(e.examples.map(plain), [expected([15496, 995, EOS])])
})

test('readLines: chunk boundaries (long lines, a multi-byte character split across chunks, no final newline)', async () => {
  const long = 'é'.repeat(40000) // 80,000 bytes: crosses the 64 KiB chunk with a 2-byte character
  const odd = 'a' + '字'.repeat(30000) // 90,001 bytes
  const p = file('txt', `${long}\r\n\n${odd}\nlast`)
  const got: { text: string; line: number }[] = []
  for await (const l of readLines(p)) got.push(l)
  assert.equal(got.map((l) => l.line), [1, 2, 3, 4])
  assert.ok(got[0].text === long && got[1].text === '' && got[2].text === odd && got[3].text === 'last')
})

// ------------------------------------------------------------------------------------------ collate, counts

test('collate pads to the longest row (or padTo) with padId and -100; counts tokens and targets', () => {
  const a = makeExample([1, 2, 3]), b = makeExample([4, 5]), c = makeExample([6, 7, 8], [X, 7, X])
  const batch = collate([a, b, c], 99)
  assert.is(batch.rows, 3)
  assert.is(batch.seqLen, 3)
  assert.equal(Array.from(batch.inputIds), [1, 2, 3, 4, 5, 99, 6, 7, 8])
  assert.equal(Array.from(batch.targets), [2, 3, X, 5, X, X, 7, X, X])
  assert.equal(Array.from(batch.lengths), [3, 2, 3])
  assert.is(batch.tokens, 8)
  assert.is(batch.targetCount, 2 + 1 + 1)
  assert.equal(batchTokenCounts(batch), { tokens: 8, positions: 9, targets: 4 })
  const wide = collate([b], 0, 5)
  assert.equal(Array.from(wide.inputIds), [4, 5, 0, 0, 0])
  assert.equal(Array.from(wide.targets), [5, X, X, X, X])
  assert.throws(() => collate([a], 0, 2), /padTo shorter than an example/)
  assert.equal(exampleTokenCounts([a, b, c]), { tokens: 8, positions: 8, targets: 4 })
  assert.is(countTargets([X, 1, X, 0]), 2)
  assert.is(tokensPerSecond(500, 250), 2000)
  assert.is(tokensPerSecond(500, 0), 0)
})

// ------------------------------------------------------------------------------------------ Batcher

const toyExamples = (n: number) => Array.from({ length: n }, (_, i) => makeExample([i, i + 1, (i * 7) % 11]))
const firstIds = (b: Batch) => Array.from(b.indices)

/** An independent Fisher-Yates with createSampler's uniforms, epoch after epoch on one stream. */
function referenceOrders(n: number, seed: number, epochs: number): number[][] {
  const s = createSampler(seed)
  const out: number[][] = []
  for (let e = 0; e < epochs; e++) {
    const p = Array.from({ length: n }, (_, i) => i)
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(s.uniform() * (i + 1))
      ;[p[i], p[j]] = [p[j], p[i]]
    }
    out.push(p)
  }
  return out
}

test('Batcher without shuffle: file order, batch size, last batch smaller (drop_last false), epochs roll over', () => {
  const ex = toyExamples(7)
  const bt = new Batcher(ex, { batchSize: 3, shuffle: false, padId: 0 })
  assert.is(bt.batchesPerEpoch, 3)
  const seen: [number, number, number[], boolean][] = []
  for (let k = 0; k < 7; k++) {
    const b = bt.next()
    seen.push([b.epoch, b.step, firstIds(b), b.lastInEpoch])
  }
  assert.equal(seen, [
    [0, 0, [0, 1, 2], false],
    [0, 1, [3, 4, 5], false],
    [0, 2, [6], true],
    [1, 0, [0, 1, 2], false],
    [1, 1, [3, 4, 5], false],
    [1, 2, [6], true],
    [2, 0, [0, 1, 2], false],
  ])
  const dl = new Batcher(ex, { batchSize: 3, shuffle: false, dropLast: true, padId: 0 })
  assert.is(dl.batchesPerEpoch, 2)
  assert.equal([dl.next(), dl.next(), dl.next()].map((b) => [b.epoch, firstIds(b)]), [[0, [0, 1, 2]], [0, [3, 4, 5]], [1, [0, 1, 2]]])
})

test('Batcher shuffle: Fisher-Yates on createSampler(seed) uniforms, a new order each epoch, the same order on every run', () => {
  const n = 10
  const ex = toyExamples(n)
  const bt = new Batcher(ex, { batchSize: 4, seed: 1234, padId: 0 })
  const orders: number[][] = []
  for (let e = 0; e < 3; e++) {
    const o: number[] = []
    for (let k = 0; k < bt.batchesPerEpoch; k++) o.push(...firstIds(bt.next()))
    orders.push(o)
  }
  assert.equal(orders, referenceOrders(n, 1234, 3))
  for (const o of orders) assert.equal([...o].sort((a, b) => a - b), [...Array(n).keys()], 'a permutation')
  assert.not.equal(orders[0], orders[1])
  // recorded once: the order for seed 1234 must never change (other runs, other machines, resumes)
  assert.equal(orders[0], [8, 4, 5, 2, 7, 3, 9, 1, 0, 6])
  // same seed, fresh Batcher: same order; another seed: another order
  const again = new Batcher(ex, { batchSize: 4, seed: 1234, padId: 0 })
  assert.equal(Array.from(again.order()), orders[0])
  assert.not.equal(Array.from(new Batcher(ex, { batchSize: 4, seed: 1235, padId: 0 }).order()), orders[0])
  // the default seed is 42
  assert.equal(Array.from(new Batcher(ex, { batchSize: 4, padId: 0 }).order()), referenceOrders(n, 42, 1)[0])
  // the batch holds those examples, collated
  const b = new Batcher(ex, { batchSize: 4, seed: 1234, padId: 0 }).next()
  assert.equal(Array.from(b.inputIds.subarray(0, 3)), Array.from(ex[8].inputIds))
  assert.equal(Array.from(b.inputIds.subarray(3, 6)), Array.from(ex[4].inputIds))
  assert.ok(b.examples.length === 4 && b.examples[0] === ex[8] && b.examples[3] === ex[2], 'the unpadded examples too')
})

test('Batcher resume: state() after k batches -> restore() in a fresh Batcher -> identical remaining batches', () => {
  const ex = toyExamples(11)
  for (const opts of [
    { batchSize: 4, seed: 7, padId: 0 },
    { batchSize: 3, seed: 99, padId: 5, dropLast: true },
    { batchSize: 4, shuffle: false, padId: 0 },
    { batchSize: 20, seed: 3, padId: 0 },
  ]) {
    const full = new Batcher(ex, opts)
    const all: Batch[] = []
    for (let k = 0; k < 14; k++) all.push(full.next())
    for (const k of [0, 1, 2, 3, 5, 6, 9]) {
      const a = new Batcher(ex, opts)
      for (let i = 0; i < k; i++) a.next()
      const saved = JSON.parse(JSON.stringify(a.state()))
      const b = new Batcher(ex, opts)
      b.next() // a fresh Batcher that already moved: restore must still land exactly
      b.restore(saved)
      assert.equal(b.state(), saved)
      for (let i = k; i < all.length; i++) {
        const got = b.next()
        assert.equal([got.epoch, got.step, firstIds(got)], [all[i].epoch, all[i].step, firstIds(all[i])], `${JSON.stringify(opts)} k=${k} batch ${i}`)
        assert.equal(got.inputIds, all[i].inputIds)
        assert.equal(got.targets, all[i].targets)
      }
    }
  }
})

test('Batcher restore refuses other data or arguments with a clear error', () => {
  const ex = toyExamples(6)
  const a = new Batcher(ex, { batchSize: 2, seed: 1, padId: 0 })
  a.next()
  const st = a.state()
  assert.throws(() => new Batcher(toyExamples(7), { batchSize: 2, seed: 1, padId: 0 }).restore(st), /numExamples differs from the saved run \(expected 6 \(saved\), found 7\)/)
  const other = toyExamples(6)
  other[3] = makeExample([1, 2])
  assert.throws(() => new Batcher(other, { batchSize: 2, seed: 1, padId: 0 }).restore(st), /fingerprint differs/)
  assert.throws(() => new Batcher(ex, { batchSize: 2, seed: 2, padId: 0 }).restore(st), /seed differs/)
  assert.throws(() => new Batcher(ex, { batchSize: 3, seed: 1, padId: 0 }).restore(st), /batchSize differs/)
  assert.throws(() => new Batcher(ex, { batchSize: 2, seed: 1, padId: 0 }).restore({ ...st, rngDraws: 3 }), /inconsistent batcher state/)
  assert.throws(() => new Batcher(ex, { batchSize: 2, seed: 1, padId: 0 }).restore({ ...st, position: 9 }), /inconsistent batcher state/)
  assert.throws(() => new Batcher([], { batchSize: 2, padId: 0 }), /no examples/)
  assert.throws(() => new Batcher(ex, { batchSize: 0, padId: 0 }), /bad batch size/)
  assert.throws(() => new Batcher(ex, { batchSize: 2, seed: 0.5, padId: 0 }), /invalid seed/)
})

test('end to end: a .jsonl file -> Batcher -> padded batches whose counted targets are the framed ones', async () => {
  const texts = ['今天终于拿到驾照了,求夸|', '你好', 'hello', '好好学习天天向上', '你好你好']
  const d = await loadExamples(file('jsonl', jsonl(texts.map((t) => ({ src_txt: t })))), msOpts(10))
  const bt = new Batcher(d.examples, { batchSize: 2, seed: 5, padId: d.padId })
  let targets = 0, tokens = 0
  for (let k = 0; k < bt.batchesPerEpoch; k++) {
    const b = bt.next()
    targets += b.targetCount
    tokens += b.tokens
    for (let r = 0; r < b.rows; r++) {
      const ids = Array.from(b.inputIds.subarray(r * b.seqLen, r * b.seqLen + b.lengths[r]))
      const body = ms.encode(texts[b.indices[r]]).slice(0, 8)
      assert.equal(ids, [CLS, ...body, SEP])
    }
  }
  assert.is(targets, d.stats.targets)
  assert.is(tokens, d.stats.tokens)
  assert.equal(frameText('你好', resolveFraming(msOpts(10))).example.inputIds, Int32Array.from([CLS, 243, 240, SEP]))
})

test.run()
