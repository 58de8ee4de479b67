// Hostile tokenizer files and inputs (issue 13, "Hardened inputs"): each test is a reproducer from an
// attacker-style fuzz run. Every failure must be a one-line TokenizerError, never a RangeError, a stack
// overflow, a hang or a giant allocation; every accepted input must give the same ids as before.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { TokenizerError } from '../packages/core/src/errors.js'
import { FILE_CAPS } from '../packages/core/src/io/files.js'
import {
  Gpt2BpeTokenizer,
  LiteralMatcher,
  MAX_ADDED_TOKEN_CHARS,
  MAX_ADDED_TOKENS,
  MAX_MERGES,
  MAX_NORMALIZER_DEPTH,
  MAX_NORMALIZERS,
  MAX_TOKEN_ID,
  MAX_VOCAB_ENTRIES,
  bytesToUnicode,
  fromTokenizerJson,
  fromVocabMerges,
  fromVocabTxt,
  loadTokenizer,
  parseVocabTxt,
  type AddedToken,
} from '../packages/core/src/tokenizers/index.js'
import { fixture, rng, linkTest } from './helpers.js'

const test = suite('hardening: tokenizer')
const GPT2 = fixture('tokenizer/gpt2/')
const VOCAB_TEXT = readFileSync(join(GPT2, 'vocab.json'), 'utf8')
const MERGES_TEXT = readFileSync(join(GPT2, 'merges.txt'), 'utf8')
const gpt2 = loadTokenizer(GPT2)
const BYTE_CHARS = bytesToUnicode()

let root: string
let n = 0
test.before(() => {
  root = mkdtempSync(join(tmpdir(), 'refgpt-hard-tok-'))
})
test.after(() => rmSync(root, { recursive: true, force: true }))
const folder = () => {
  const d = join(root, `t${n++}`)
  mkdirSync(d)
  return d
}

function throwsTokenizerError(fn: () => unknown, mustContain: string[], label: string): void {
  try {
    fn()
  } catch (e) {
    assert.instance(e, TokenizerError, `${label}: error class, got ${e instanceof Error ? `${e.name}: ${e.message.slice(0, 200)}` : String(e)}`)
    const msg = (e as Error).message
    assert.not.match(msg, '\n', `${label}: one-line message`)
    assert.ok(msg.length < 600, `${label}: short message (${msg.length} characters)`)
    for (const s of mustContain) assert.ok(msg.includes(s), `${label}: message ${JSON.stringify(msg)} should name ${JSON.stringify(s)}`)
    return
  }
  assert.unreachable(`${label}: should have thrown`)
}

/** A vocab with the 256 byte tokens (ids 0..255) and `extra` after them. */
function byteVocab(extra: string[] = []): Record<string, number> {
  const v: Record<string, number> = {}
  BYTE_CHARS.forEach((c, i) => (v[c] = i))
  extra.forEach((t, i) => (v[t] = 256 + i))
  return v
}

/** A minimal byte-level BPE tokenizer.json. */
function tokJson(patch: Record<string, unknown> = {}, model: Record<string, unknown> = {}): string {
  return JSON.stringify({
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false },
    decoder: { type: 'ByteLevel' },
    ...patch,
    model: { type: 'BPE', vocab: byteVocab(), merges: [], ...model },
  })
}

/** A tokenizer.json whose normalizer is `depth` Sequences, each holding the next, with an NFC at the bottom. */
function nestedNormalizer(depth: number): string {
  // built as text: JSON.stringify of a deep value would overflow the stack itself
  const open = '{"type":"Sequence","normalizers":['.repeat(depth)
  return tokJson({ normalizer: '@' }).replace('"normalizer":"@"', `"normalizer":${open}{"type":"NFC"}${']}'.repeat(depth)}`)
}

const cpuMs = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

// ------------------------------------------------------------------------------- 1. nesting in tokenizer.json

test('20,000 nested Sequence normalizers: a TokenizerError naming the cap, no stack overflow', () => {
  throwsTokenizerError(() => fromTokenizerJson(nestedNormalizer(20_000), 'x/tokenizer.json'), ['x/tokenizer.json', 'nested too deeply', `${MAX_NORMALIZER_DEPTH}`], 'nested normalizers')
  // up to the cap they load, and still normalize
  const ok = fromTokenizerJson(nestedNormalizer(MAX_NORMALIZER_DEPTH), 'x/tokenizer.json')
  assert.equal(ok.encode('e\u0301'), fromTokenizerJson(tokJson(), 'x').encode('\u00e9'))
})

test('normalizer lists: 100,000 repeats of one form collapse; too many distinct steps are refused', () => {
  const many = { type: 'Sequence', normalizers: Array.from({ length: 100_000 }, () => ({ type: 'NFKC' })) }
  const t = fromTokenizerJson(tokJson({ normalizer: many }), 'x')
  const t0 = performance.now()
  assert.equal(t.encode('\ufb01'), t.encode('fi'))
  assert.ok(performance.now() - t0 < 100)
  const alternating = { type: 'Sequence', normalizers: Array.from({ length: 1000 }, (_, i) => ({ type: i % 2 ? 'NFC' : 'NFD' })) }
  throwsTokenizerError(() => fromTokenizerJson(tokJson({ normalizer: alternating }), 'x'), ['too many normalizers', `${MAX_NORMALIZERS}`], 'alternating')
})

test('100,000-deep JSON anywhere in tokenizer.json: a TokenizerError with a short message', () => {
  let deep = '1'
  for (let i = 0; i < 100_000; i++) deep = `[${deep}]`
  // (JSON.stringify of such a value would itself overflow the stack: the deep part is put in as text)
  for (const field of ['normalizer', 'decoder', 'pre_tokenizer']) {
    const text = tokJson({ [field]: '@' }).replace(`"${field}":"@"`, `"${field}":${deep}`)
    throwsTokenizerError(() => fromTokenizerJson(text, 'x'), [field], field)
  }
  throwsTokenizerError(() => fromTokenizerJson(tokJson({}, { vocab: '@' }).replace('"vocab":"@"', `"vocab":${deep}`), 'x'), ['model.vocab'], 'vocab')
  throwsTokenizerError(() => fromTokenizerJson(tokJson({}, { merges: '@' }).replace('"merges":"@"', `"merges":[${deep}]`), 'x'), ['model.merges[0]'], 'merge')
  throwsTokenizerError(() => fromTokenizerJson(tokJson({ added_tokens: '@' }).replace('"added_tokens":"@"', `"added_tokens":[${deep}]`), 'x'), ['added_tokens[0]'], 'added token')
})

// -------------------------------------------------------------------------- 2. no spread of untrusted length

test('200,000 additional_special_tokens in tokenizer_config.json and special_tokens_map.json load', () => {
  const dir = folder()
  writeFileSync(join(dir, 'vocab.json'), VOCAB_TEXT)
  writeFileSync(join(dir, 'merges.txt'), MERGES_TEXT)
  const extra = Array.from({ length: 200_000 }, (_, i) => (i === 7 ? 'Hello' : `<x${i}>`))
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ additional_special_tokens: extra }))
  writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify({ additional_special_tokens: extra.map((content) => ({ content })) }))
  const t = loadTokenizer(dir)
  // only the strings with an id become special (as before): 'Hello' and '<|endoftext|>'
  assert.equal([...t.specialTokens.keys()].sort(), ['<|endoftext|>', 'Hello'])
  assert.equal(t.encode('x Hello'), [...gpt2.encode('x '), 15496])
})

test('WordPiece: 200,000 CJK characters and 100,000 special tokens in one text', () => {
  const tok = fromVocabTxt(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '你', '好', 'x'].join('\n') + '\n', 'mem/vocab.txt')
  const ids = tok.encode('你'.repeat(200_000))
  assert.is(ids.length, 200_000)
  assert.ok(ids.every((id) => id === 5))
  const t0 = performance.now()
  const sep = tok.encode('[SEP]'.repeat(100_000) + 'x')
  assert.ok(performance.now() - t0 < 1500, 'linear special-token split')
  assert.is(sep.length, 100_001)
  assert.is(sep[99_999], 3)
  assert.is(sep[100_000], 7)
  // leftmost, then longest, as before
  assert.equal(tok.tokenize('a[SEP][CLS]b [MASK]x[UNK]'), ['[UNK]', '[SEP]', '[CLS]', '[UNK]', '[MASK]', 'x', '[UNK]'])
  // a 300,000-character word is one [UNK] without building an array of its characters
  assert.equal(tok.encode('x'.repeat(300_000)), [1])
})

// ----------------------------------------------------------------------------------------- 3. added tokens

test('a 70,000-character added token matches (no "Regular expression too large")', () => {
  const big = 'ab'.repeat(35_000)
  const t = fromTokenizerJson(tokJson({ added_tokens: [{ id: 256, content: big, special: true }] }), 'x')
  const t0 = performance.now()
  assert.equal(t.encode(`x${big}y`), [BYTE_CHARS.indexOf('x'), 256, BYTE_CHARS.indexOf('y')])
  // almost the token: no match, and still linear (a regex or a naive trie walk is quadratic here)
  assert.is(t.encode(big.slice(0, -1)).length, big.length - 1)
  assert.ok(performance.now() - t0 < 1000, `took ${performance.now() - t0} ms`)
  assert.is(t.decode([256]), big)
})

test('100,000 added tokens: load + first encode well under a second, right ids', () => {
  const added = Array.from({ length: 100_000 }, (_, i) => ({ id: 256 + i, content: `<tok_${i}>`, special: i % 2 === 0 }))
  const text = tokJson({ added_tokens: added })
  const c0 = cpuMs()
  const t = fromTokenizerJson(text, 'x')
  const hi = t.encode('hi')
  const ms = cpuMs() - c0
  assert.equal(hi, [BYTE_CHARS.indexOf('h'), BYTE_CHARS.indexOf('i')])
  assert.ok(ms < 1500, `load + first encode took ${ms.toFixed(0)} ms of CPU`)
  assert.equal(t.encode('a<tok_12345>b<tok_99999><tok_1>'), [97, 256 + 12345, 98, 256 + 99999, 257])
  assert.is(t.specialTokens.size, 50_000)
})

/** The splitting the previous implementation did: a regex alternation of the contents, longest first. */
function regexSplit(tokens: AddedToken[], text: string): (string | number)[] {
  const byContent = new Map(tokens.map((t) => [t.content, t]))
  const alts = [...byContent.keys()].sort((a, b) => b.length - a.length).map((s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'))
  const re = new RegExp(alts.join('|'), 'gu')
  const out: (string | number)[] = []
  let start = 0
  for (const m of text.matchAll(re)) {
    if (m.index! > start) out.push(text.slice(start, m.index))
    out.push(byContent.get(m[0])!.id)
    start = m.index! + m[0].length
  }
  if (start < text.length) out.push(text.slice(start))
  return out
}

test('added-token matching: leftmost-longest, the same as the former regex on 3,000 random cases', () => {
  const rand = rng(13)
  const vocab = new Map(Object.entries(byteVocab()))
  const plain = new Gpt2BpeTokenizer({ vocab, merges: [], source: 'plain' })
  const alphabet = Array.from('ab<>😀 ')
  const pick = (s: string[]) => s[Math.floor(rand() * s.length)]!
  for (let c = 0; c < 3000; c++) {
    const count = 1 + Math.floor(rand() * 6)
    const tokens: AddedToken[] = []
    for (let k = 0; k < count; k++) {
      let s = ''
      const len = 1 + Math.floor(rand() * 4)
      for (let i = 0; i < len; i++) s += pick(alphabet)
      tokens.push({ id: 300 + k, content: s, special: false })
    }
    let text = ''
    const len = Math.floor(rand() * 24)
    for (let i = 0; i < len; i++) text += rand() < 0.3 ? tokens[Math.floor(rand() * count)]!.content : pick(alphabet)
    const t = new Gpt2BpeTokenizer({ vocab, merges: [], addedTokens: tokens, source: 'x' })
    const expected: number[] = []
    for (const seg of regexSplit(tokens, text)) {
      if (typeof seg === 'number') expected.push(seg)
      else for (const id of plain.encode(seg)) expected.push(id)
    }
    const got = t.encode(text)
    assert.equal(got, expected, `case ${c}: tokens ${JSON.stringify(tokens.map((x) => x.content))} text ${JSON.stringify(text)}`)
  }
})

test('LiteralMatcher: longest pattern at every position, as a brute force finds it', () => {
  const rand = rng(7)
  for (let c = 0; c < 500; c++) {
    const pats = Array.from({ length: 1 + Math.floor(rand() * 8) }, () => Array.from({ length: 1 + Math.floor(rand() * 5) }, () => 'abc'[Math.floor(rand() * 3)]).join(''))
    const text = Array.from({ length: Math.floor(rand() * 40) }, () => 'abc'[Math.floor(rand() * 3)]).join('')
    const best = new LiteralMatcher(pats).longestAt(text)
    for (let i = 0; i < text.length; i++) {
      let want = -1
      pats.forEach((p, k) => {
        if (text.startsWith(p, i) && (want < 0 || p.length > pats[want]!.length || p === pats[want])) want = k
      })
      assert.is(best[i], want, `${JSON.stringify(pats)} in ${JSON.stringify(text)} at ${i}`)
    }
  }
})

test('added tokens: single_word (HF: a skipped match is not retried inside), lstrip/rstrip, caps, lone surrogates', () => {
  const vocab = new Map(Object.entries(byteVocab()))
  const mk = (added: AddedToken[]) => new Gpt2BpeTokenizer({ vocab, merges: [], addedTokens: added, source: 'x' })
  const t = mk([
    { id: 300, content: 'ab', special: false, singleWord: true },
    { id: 301, content: 'b', special: false },
  ])
  const plain = (s: string) => Array.from(new TextEncoder().encode(s), (b) => b)
  assert.equal(t.encode('x ab y'), [...plain('x '), 300, ...plain(' y')])
  // "ab" is inside a word: skipped, and the search goes on after it, so its "b" is not matched either
  assert.equal(t.encode('xab'), plain('xab'))
  assert.equal(t.encode('xa b'), [...plain('xa '), 301])
  assert.equal(t.encode('ab'), [300])
  const s = mk([{ id: 300, content: '<s>', special: true, lstrip: true, rstrip: true }])
  assert.equal(s.encode('a  <s>\t b'), [...plain('a'), 300, ...plain('b')])
  throwsTokenizerError(() => mk([{ id: 300, content: 'a\ud800', special: true }]), ['added token 300', 'lone surrogate'], 'lone surrogate')
  const one: AddedToken = { id: 300, content: 'z', special: false }
  throwsTokenizerError(() => mk(new Array(MAX_ADDED_TOKENS + 1).fill(one)), ['too many added tokens', `${MAX_ADDED_TOKENS}`], 'count cap')
  throwsTokenizerError(() => mk([{ id: 300, content: 'z'.repeat(MAX_ADDED_TOKEN_CHARS + 1), special: false }]), ['too long', `${MAX_ADDED_TOKEN_CHARS}`], 'length cap')
})

// ------------------------------------------------------------------------------------------ 4. file reading

test('loadTokenizer: vocab.txt that is a directory, a FIFO, files over the caps', () => {
  const d1 = folder()
  mkdirSync(join(d1, 'vocab.txt'))
  throwsTokenizerError(() => loadTokenizer(d1), ['vocab.txt', 'not a regular file', 'directory'], 'vocab.txt directory')

  const d2 = folder()
  writeFileSync(join(d2, 'merges.txt'), MERGES_TEXT)
  const fifo = spawnSync('mkfifo', [join(d2, 'vocab.json')])
  if (fifo.status === 0) {
    const t0 = performance.now()
    throwsTokenizerError(() => loadTokenizer(d2), ['vocab.json', 'not a regular file'], 'FIFO')
    assert.ok(performance.now() - t0 < 1000)
  }

  // sparse files: the size is checked before anything is read
  const d3 = folder()
  writeFileSync(join(d3, 'tokenizer.json'), '')
  truncateSync(join(d3, 'tokenizer.json'), FILE_CAPS.tokenizerJson + 1)
  throwsTokenizerError(() => loadTokenizer(d3), ['tokenizer.json', 'too large', `${FILE_CAPS.tokenizerJson}`], 'tokenizer.json cap')
  const d4 = folder()
  writeFileSync(join(d4, 'vocab.txt'), '')
  truncateSync(join(d4, 'vocab.txt'), FILE_CAPS.vocab + 1)
  throwsTokenizerError(() => loadTokenizer(d4), ['vocab.txt', 'too large'], 'vocab.txt cap')
  const d5 = folder()
  writeFileSync(join(d5, 'vocab.json'), VOCAB_TEXT)
  writeFileSync(join(d5, 'merges.txt'), MERGES_TEXT)
  writeFileSync(join(d5, 'special_tokens_map.json'), '')
  truncateSync(join(d5, 'special_tokens_map.json'), FILE_CAPS.json + 1)
  throwsTokenizerError(() => loadTokenizer(d5), ['special_tokens_map.json', 'too large'], 'json cap')
})


linkTest(test, 'loadTokenizer symlinks')('loadTokenizer: a symlink out of the model folder is refused unless followSymlinks', () => {
  const outside = folder()
  writeFileSync(join(outside, 'tokenizer.json'), tokJson())
  const dir = folder()
  symlinkSync(join(outside, 'tokenizer.json'), join(dir, 'tokenizer.json'))
  throwsTokenizerError(() => loadTokenizer(dir), ['tokenizer.json', 'outside the model folder'], 'symlink out')
  assert.is(loadTokenizer(dir, { followSymlinks: true }).kind, 'gpt2-bpe')
  // a link inside the folder is fine
  const inside = folder()
  writeFileSync(join(inside, 'real.json'), tokJson())
  symlinkSync('real.json', join(inside, 'tokenizer.json'))
  assert.is(loadTokenizer(inside).kind, 'gpt2-bpe')
  // a side file (tokenizer_config.json) is checked too
  const side = folder()
  writeFileSync(join(side, 'vocab.json'), VOCAB_TEXT)
  writeFileSync(join(side, 'merges.txt'), MERGES_TEXT)
  writeFileSync(join(outside, 'cfg.json'), '{}')
  symlinkSync(join(outside, 'cfg.json'), join(side, 'tokenizer_config.json'))
  throwsTokenizerError(() => loadTokenizer(side), ['tokenizer_config.json', 'outside the model folder'], 'side file')
})

test('invalid UTF-8 is replaced by U+FFFD as before; vocab.txt keeps a BOM in its first token', () => {
  const dir = folder()
  const lines = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'ok']
  writeFileSync(join(dir, 'vocab.txt'), Buffer.concat([Buffer.from('\ufeffbom\n' + lines.join('\n') + '\n'), Buffer.from([0x62, 0xff, 0x0a])]))
  const t = loadTokenizer(dir)
  assert.is(t.vocabSize, 8)
  assert.is(t.idToToken(0), '\ufeffbom') // Python: open(vocab, encoding='utf-8') keeps it
  assert.is(t.idToToken(7), 'b\ufffd')
  const d2 = folder()
  writeFileSync(join(d2, 'vocab.json'), Buffer.concat([Buffer.from(VOCAB_TEXT.trimEnd().slice(0, -1) + ', "'), Buffer.from([0xc3]), Buffer.from('x": 50257}')]))
  writeFileSync(join(d2, 'merges.txt'), MERGES_TEXT)
  const t2 = loadTokenizer(d2)
  assert.is(t2.idToToken(50257), '\ufffdx')
})

// ------------------------------------------------------------------------------------ 5. malformed content

test('vocab ids: 2^31 refused, a sparse id near the cap costs no big allocation, duplicate ids decode', () => {
  throwsTokenizerError(() => fromTokenizerJson(tokJson({}, { vocab: { ...byteVocab(), big: 2 ** 31 } }), 'x'), ['"big"', 'invalid id', `${MAX_TOKEN_ID}`], '2^31')
  throwsTokenizerError(() => fromTokenizerJson(tokJson({}, { vocab: { ...byteVocab(), neg: -1 } }), 'x'), ['"neg"'], 'negative')
  const before = process.memoryUsage().rss
  const c0 = cpuMs()
  const t = fromTokenizerJson(tokJson({ added_tokens: [{ id: MAX_TOKEN_ID, content: '<far>', special: true }] }, { vocab: { ...byteVocab(), far: MAX_TOKEN_ID - 1 } }), 'x')
  assert.ok(cpuMs() - c0 < 300, 'fast')
  assert.ok(process.memoryUsage().rss - before < 50e6, 'no id table of 2^24 entries')
  assert.is(t.vocabSize, MAX_TOKEN_ID + 1)
  assert.is(t.decode([MAX_TOKEN_ID - 1, MAX_TOKEN_ID, 5000]), 'far<far>')
  const dup = fromTokenizerJson(tokJson({}, { vocab: { ...byteVocab(), first: 300, second: 300 } }), 'x')
  assert.is(dup.idToToken(300), 'second')
})

test('merges: non-string and malformed entries are TokenizerErrors; the count is capped', () => {
  for (const bad of [[1, 2], { a: 'b' }, 'a b c', 'a', ' b', ['a'], ['a', 'b', 'c'], ['', 'b'], null, 'a  b']) {
    throwsTokenizerError(() => fromTokenizerJson(tokJson({}, { merges: ['Ġ t', bad] }), 'x'), ['model.merges[1]', 'malformed merge'], JSON.stringify(bad))
  }
  throwsTokenizerError(() => fromTokenizerJson(tokJson({}, { merges: {} }), 'x'), ['model.merges is not a list'], 'object merges')
  const vocab = new Map(Object.entries(byteVocab()))
  const many = new Array(MAX_MERGES + 1).fill(['a', 'b'])
  throwsTokenizerError(() => new Gpt2BpeTokenizer({ vocab, merges: many, source: 'x' }), ['too many merges', `${MAX_MERGES}`], 'merge cap')
  throwsTokenizerError(() => fromVocabMerges(VOCAB_TEXT, '#version: 0.2\n\ta\tb\t\nx y z\n', 'm'), ['m/merges.txt:3', 'malformed merge'], 'three parts')
})

test('vocab.txt: line count capped before the file is split; vocab objects are checked', () => {
  throwsTokenizerError(() => parseVocabTxt('\n'.repeat(MAX_VOCAB_ENTRIES + 1), 'v/vocab.txt'), ['v/vocab.txt', 'too large', `${MAX_VOCAB_ENTRIES}`], 'lines')
  assert.is(parseVocabTxt('a\nb\n').length, 2)
  throwsTokenizerError(() => fromVocabTxt('a\nb\n', 'v/vocab.txt'), ['[UNK]'], 'no [UNK]')
  throwsTokenizerError(() => fromVocabMerges('[1, 2]', '', 'm'), ['vocab.json', 'object'], 'array vocab')
})

test('API misuse: encode() of a non-string and decode() of a non-list are TokenizerErrors', () => {
  const wp = fromVocabTxt(['[PAD]', '[UNK]', 'a'].join('\n'), 'mem')
  for (const tok of [gpt2, wp]) {
    throwsTokenizerError(() => tok.encode(42 as unknown as string), ['encode() needs a string'], `${tok.kind} encode(42)`)
    throwsTokenizerError(() => tok.encode(null as unknown as string), ['encode() needs a string'], `${tok.kind} encode(null)`)
    throwsTokenizerError(() => tok.decode(null as unknown as number[]), ['decode() needs a list'], `${tok.kind} decode(null)`)
    throwsTokenizerError(() => tok.decode(7 as unknown as number[]), ['decode() needs a list'], `${tok.kind} decode(7)`)
    throwsTokenizerError(() => tok.decode([1, 'x' as unknown as number]), ['position 1'], `${tok.kind} decode([1, 'x'])`)
  }
})

// ------------------------------------------------------------------------------------------ BPE of long words

/** GPT2Tokenizer.bpe on strings, straight from transformers (the reference for the heap merge). */
function referenceBpe(word: string[], ranks: Map<string, number>): string[] {
  let w = word
  for (;;) {
    let best: [string, string] | undefined, bestRank = Infinity
    for (let i = 0; i + 1 < w.length; i++) {
      const r = ranks.get(`${w[i]} ${w[i + 1]}`)
      if (r !== undefined && r < bestRank) (bestRank = r), (best = [w[i]!, w[i + 1]!])
    }
    if (!best) return w
    const next: string[] = []
    for (let i = 0; i < w.length; ) {
      if (i + 1 < w.length && w[i] === best[0] && w[i + 1] === best[1]) next.push(best[0] + best[1]), (i += 2)
      else next.push(w[i]!), i++
    }
    w = next
  }
}

test('BPE of long words: O(n log n), the same ids as the O(n^2) GPT2Tokenizer loop', () => {
  const vocab = JSON.parse(VOCAB_TEXT) as Record<string, number>
  const ranks = new Map<string, number>()
  MERGES_TEXT.split('\n').slice(1).filter((l) => l.trim()).forEach((l, i) => ranks.set(l, i))
  const rand = rng(42)
  for (const len of [65, 100, 300, 1000]) {
    for (let rep = 0; rep < 2; rep++) {
      let word = ''
      for (let i = 0; i < len; i++) word += 'etaoinshrdlucmfwy'[Math.floor(rand() * 17)]
      const ref = referenceBpe([...word], ranks).map((s) => vocab[s] ?? 50256)
      assert.equal(gpt2.encode(word), ref, `word of ${len}`)
    }
  }
  // 50,000 random letters: was ~2 s at 40,000 (quadratic), now milliseconds
  let long = ''
  for (let i = 0; i < 50_000; i++) long += String.fromCharCode(97 + Math.floor(rand() * 26))
  const t0 = performance.now()
  const ids = gpt2.encode(long)
  assert.ok(performance.now() - t0 < 1000, `took ${performance.now() - t0} ms`)
  assert.is(gpt2.decode(ids), long)

  // a merge list where a merge creates a pair of lower rank: GPT2Tokenizer still finishes the current
  // rank first ("ab a" is rank 0, "a b" rank 1): "abab..." -> "ab" "ab" ..., never "aba" "b"
  const tiny = fromVocabMerges(JSON.stringify({ a: 0, b: 1, ab: 2, aba: 3, '<|endoftext|>': 4 }), 'ab a\na b\n', 'tiny')
  const w = 'ab'.repeat(50)
  assert.equal(tiny.encode(w), new Array(50).fill(2))
  assert.equal(tiny.encode(w), referenceBpe([...w], new Map([['ab a', 0], ['a b', 1]])).map((s) => ({ a: 0, b: 1, ab: 2, aba: 3 })[s]!))
})

test.run()
