// GPT-2 byte-level BPE tokenizer vs transformers 4.40's slow GPT2Tokenizer (fixtures/tokenizer/gpt2, see the
// golden README, section "Tokenizer").
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TokenizerError } from '../packages/core/src/errors.js'
import {
  StreamDecoder,
  cleanUpTokenization,
  fromTokenizerJson,
  fromVocabMerges,
  loadTokenizer,
  type Tokenizer,
} from '../packages/core/src/tokenizers/index.js'

const FIXTURES = fileURLToPath(new URL('./fixtures/tokenizer/gpt2/', import.meta.url))
const VOCAB_TEXT = readFileSync(join(FIXTURES, 'vocab.json'), 'utf8')
const MERGES_TEXT = readFileSync(join(FIXTURES, 'merges.txt'), 'utf8')

interface Case {
  line: number
  text: string
  ids: number[]
  decoded: string
  decoded_cleanup: string
  category: string
}
interface SensitiveCase extends Case {
  tiktoken_ids: number[]
  differs: boolean
}

/** A .jsonl fixture; splitting on '\n' only is safe because U+0085/U+2028/U+2029 are escaped (README). */
function readJsonl<T>(name: string): (T & { line: number })[] {
  return readFileSync(join(FIXTURES, name), 'utf8')
    .split('\n')
    .map((l, i) => [l, i + 1] as const)
    .filter(([l]) => l.trim() !== '')
    .map(([l, line]) => ({ ...(JSON.parse(l) as T), line }))
}

const CASES = readJsonl<Case>('cases.jsonl')
const SENSITIVE = readJsonl<SensitiveCase>('unicode_version_sensitive.jsonl')

// The fixture folder has vocab.json + merges.txt and no tokenizer.json.
const tok = loadTokenizer(FIXTURES)

const tmpDirs: string[] = []
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'refgpt-tok-'))
  tmpDirs.push(d)
  return d
}

/** A tokenizer.json like the one of the `gpt2` repository, built from the fixture files. */
function tokenizerJson(mergesAsPairs: boolean): string {
  const merges = MERGES_TEXT.split('\n')
    .filter((l, i) => !(i === 0 && l.startsWith('#version')) && l.trim() !== '')
    .map((l) => (mergesAsPairs ? l.split(' ') : l))
  return JSON.stringify({
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab: JSON.parse(VOCAB_TEXT),
      merges,
    },
  })
}

function checkCase(t: Tokenizer, c: Case, label: string): void {
  const where = `${label}, cases.jsonl line ${c.line} (${c.category}) ${JSON.stringify(c.text.slice(0, 40))}`
  assert.equal(t.encode(c.text), c.ids, `encode, ${where}`)
  assert.is(t.decode(c.ids), c.decoded, `decode, ${where}`)
  assert.is(t.decode(c.ids, { cleanUpTokenizationSpaces: true }), c.decoded_cleanup, `decode cleanup, ${where}`)
}

function throwsTokenizerError(fn: () => unknown, mustContain: string[], label: string): void {
  try {
    fn()
  } catch (e) {
    assert.instance(e, TokenizerError, `${label}: error class`)
    const msg = (e as Error).message
    assert.not.match(msg, '\n', `${label}: one-line message`)
    for (const s of mustContain) assert.ok(msg.includes(s), `${label}: message ${JSON.stringify(msg)} should name ${JSON.stringify(s)}`)
    return
  }
  assert.unreachable(`${label}: should have thrown`)
}

// ------------------------------------------------------------------------------------------ 1. golden cases

test('fixtures: 173 cases', () => {
  assert.is(CASES.length, 173)
})

for (const c of CASES) {
  test(`cases.jsonl line ${c.line} (${c.category})`, () => checkCase(tok, c, 'vocab.json+merges.txt'))
}

// ------------------------------------------------------------------------------------------ 2. tokenizer.json

test('tokenizer.json with "a b" merges via loadTokenizer (preferred over vocab.json + merges.txt)', () => {
  const dir = tmp()
  writeFileSync(join(dir, 'tokenizer.json'), tokenizerJson(false))
  // Broken companions prove that tokenizer.json is the file that is read.
  writeFileSync(join(dir, 'vocab.json'), '{ not json')
  writeFileSync(join(dir, 'merges.txt'), 'a b c\n')
  const t = loadTokenizer(dir)
  assert.is(t.kind, 'gpt2-bpe')
  assert.is(t.vocabSize, 50257)
  assert.equal([...t.specialTokens], [['<|endoftext|>', 50256]])
  for (const c of CASES) checkCase(t, c, 'tokenizer.json "a b"')
})

test('tokenizer.json with [a, b] merges via fromTokenizerJson', () => {
  const t = fromTokenizerJson(tokenizerJson(true), 'mem/tokenizer.json')
  for (const c of CASES) checkCase(t, c, 'tokenizer.json [a,b]')
})

test('tokenizer.json added tokens: lstrip/rstrip, non-special tokens, ids past the vocab', () => {
  const j = JSON.parse(tokenizerJson(false))
  j.added_tokens.push(
    { id: 50257, content: '<|pad|>', single_word: false, lstrip: true, rstrip: true, normalized: false, special: true },
    { id: 50258, content: '[[x]]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: false },
  )
  const t = fromTokenizerJson(JSON.stringify(j), 'mem/tokenizer.json')
  assert.is(t.vocabSize, 50259)
  assert.is(t.specialTokens.get('<|pad|>'), 50257)
  assert.not.ok(t.specialTokens.has('[[x]]'))
  const a = tok.encode('a')
  const b = tok.encode('b')
  // lstrip/rstrip swallow the spaces around <|pad|>
  assert.equal(t.encode('a  <|pad|> b'), [...a, 50257, ...b])
  assert.equal(t.encode('a[[x]]b'), [...a, 50258, ...b])
  assert.is(t.decode([...a, 50257, 50258, ...b]), 'a<|pad|>[[x]]b')
  assert.is(t.decode([...a, 50257, 50258, ...b], { skipSpecialTokens: true }), 'a[[x]]b')
})

// ------------------------------------------------------------------------------- 3. Unicode-version-sensitive

// These texts contain letters assigned in Unicode 15.1/16.0. Python's `regex` (Unicode 15.0) does not treat
// them as \p{L}, so HF's ids (`ids`) split "'s" off differently; Node 20+ (V8/ICU with Unicode >= 16 tables)
// treats them as letters and therefore produces `tiktoken_ids` where the two differ. We assert exactly that,
// and fall back to HF's ids on a runtime whose tables predate these letters.
test('unicode_version_sensitive.jsonl', () => {
  assert.is(SENSITIVE.length, 4)
  for (const c of SENSITIVE) {
    const where = `unicode_version_sensitive.jsonl line ${c.line} ${JSON.stringify(c.text)}`
    const astral = [...c.text].filter((ch) => ch.codePointAt(0)! > 0xffff)
    const runtimeKnowsLetters = astral.every((ch) => /\p{L}/u.test(ch))
    const expected = !c.differs || runtimeKnowsLetters ? c.tiktoken_ids : c.ids
    if (!c.differs) assert.equal(c.ids, c.tiktoken_ids, `fixture consistency, ${where}`)
    assert.equal(tok.encode(c.text), expected, `encode, ${where}`)
    assert.is(tok.decode(c.ids), c.decoded, `decode HF ids, ${where}`)
    assert.is(tok.decode(c.tiktoken_ids), c.decoded, `decode tiktoken ids, ${where}`)
    assert.is(tok.decode(c.ids, { cleanUpTokenizationSpaces: true }), c.decoded_cleanup, `decode cleanup, ${where}`)
  }
  // On Node 20 the letters are known, so the `differs` lines give tiktoken's ids.
  if (Number(process.versions.node.split('.')[0]) >= 20) {
    assert.ok(/\p{L}/u.test('\u{2EBF0}') && /\p{L}/u.test('\u{10D4A}') && /\p{L}/u.test('\u{1E5D0}'))
  }
})

// ------------------------------------------------------------------------------------------- 4. StreamDecoder

test('StreamDecoder: one id at a time reproduces `decoded` for every case', () => {
  const sd = new StreamDecoder(tok)
  for (const c of CASES) {
    const where = `cases.jsonl line ${c.line} (${c.category})`
    let out = ''
    c.ids.forEach((id, k) => {
      const piece = sd.push(id)
      if (piece.length > 0) {
        const last = piece.charCodeAt(piece.length - 1)
        assert.not.ok(last >= 0xd800 && last <= 0xdbff, `push ${k} ends with a lone high surrogate, ${where}`)
      }
      if (!c.decoded.includes('\uFFFD')) assert.not.ok(piece.includes('\uFFFD'), `push ${k} has U+FFFD, ${where}`)
      out += piece
    })
    out += sd.flush() // also resets the decoder for the next case
    assert.is(out, c.decoded, `stream, ${where}`)
    assert.is(out, tok.decode(c.ids), `stream vs decode, ${where}`)
  }
})

test('StreamDecoder: holds back split characters, flushes incomplete ones, skips special tokens', () => {
  // '😀' (F0 9F 98 80) is two tokens: [F0 9F 98] and [80].
  const ids = tok.encode('a😀b')
  assert.equal(ids, [64, 47249, 222, 65])
  const sd = new StreamDecoder(tok)
  assert.equal(ids.map((id) => sd.push(id)), ['a', '', '😀', 'b'])
  assert.is(sd.flush(), '')
  // An incomplete character at the end becomes U+FFFD on flush, as in decode().
  assert.is(sd.push(47249), '')
  assert.is(sd.flush(), '\uFFFD')
  assert.is(tok.decode([47249]), '\uFFFD')
  const sk = new StreamDecoder(tok, { skipSpecialTokens: true })
  const withEot = tok.encode('a<|endoftext|>b')
  assert.is(withEot.map((id) => sk.push(id)).join('') + sk.flush(), 'ab')
  // Unknown ids (GPT-J can emit 50257..50399) contribute nothing, as in decode().
  assert.is(sk.push(50300), '')
  throwsTokenizerError(() => sk.push(-1), ['invalid token id', 'non-negative integer'], 'push(-1)')
})

// -------------------------------------------------------------------------------------- 5. ids and errors

test('token metadata: kind, vocabSize, specialTokens, idToToken, tokenBytes', () => {
  assert.is(tok.kind, 'gpt2-bpe')
  assert.is(tok.vocabSize, 50257)
  assert.equal([...tok.specialTokens], [['<|endoftext|>', 50256]])
  assert.equal(tok.encode('Hello world'), [15496, 995])
  assert.is(tok.idToToken(995), 'Ġworld')
  assert.equal([...tok.tokenBytes(995)!], [...new TextEncoder().encode(' world')])
  assert.is(tok.idToToken(50256), '<|endoftext|>')
  assert.is(tok.idToToken(50300), undefined)
  assert.is(tok.tokenBytes(50300), undefined)
  assert.is(tok.tokenBytes(-1), undefined)
  assert.equal(tok.encode(''), [])
  assert.is(tok.decode([]), '')
  assert.is(tok.decode(new Int32Array([15496, 995])), 'Hello world')
})

test('decode: unknown id is empty, skipSpecialTokens, invalid ids throw', () => {
  assert.is(tok.decode([50300]), '')
  assert.is(tok.decode([15496, 50300, 995]), 'Hello world')
  const ids = tok.encode('a<|endoftext|>b')
  assert.is(tok.decode(ids), 'a<|endoftext|>b')
  assert.is(tok.decode(ids, { skipSpecialTokens: true }), 'ab')
  throwsTokenizerError(() => tok.decode([-1]), ['position 0', 'non-negative integer', '-1'], 'decode([-1])')
  throwsTokenizerError(() => tok.decode([15496, 1.5]), ['position 1', '1.5'], 'decode([.., 1.5])')
  throwsTokenizerError(() => tok.decode([NaN]), ['NaN'], 'decode([NaN])')
})

test('cleanUpTokenization matches transformers (order of the rewrites included)', () => {
  assert.is(cleanUpTokenization("Hello , world ! Is it ? I 'm sure it 's fine . They 're , we 've , do n't"),
    "Hello, world! Is it? I'm sure it's fine. They're, we've, don't")
  assert.is(cleanUpTokenization("a ' b"), "a'b")
  assert.is(cleanUpTokenization('a  .'), 'a .') // one space removed per occurrence, like str.replace
})

test('encoding the 5,000-character "long" case with a cold cache is fast', () => {
  const long = CASES.find((c) => c.category === 'long')!
  assert.is(long.text.length, 5000)
  const fresh = fromVocabMerges(VOCAB_TEXT, MERGES_TEXT, FIXTURES)
  const t0 = performance.now()
  const ids = fresh.encode(long.text)
  const ms = performance.now() - t0
  assert.equal(ids, long.ids)
  assert.ok(ms < 100, `took ${ms.toFixed(1)} ms`)
})

test('loadTokenizer: missing files and folders', () => {
  const empty = tmp()
  throwsTokenizerError(() => loadTokenizer(empty), [empty, 'tokenizer.json', 'vocab.json + merges.txt', 'hint:'], 'empty folder')
  const missing = join(empty, 'nope')
  throwsTokenizerError(() => loadTokenizer(missing), [missing, 'not found'], 'missing folder')
  const half = tmp()
  writeFileSync(join(half, 'vocab.json'), VOCAB_TEXT)
  throwsTokenizerError(() => loadTokenizer(half), [half, 'merges.txt'], 'vocab.json without merges.txt')
})

test('malformed vocab.json / merges.txt / tokenizer.json name the file', () => {
  const dir = tmp()
  const vocabPath = join(dir, 'vocab.json')
  writeFileSync(join(dir, 'merges.txt'), MERGES_TEXT)
  writeFileSync(vocabPath, '{"a": 0, "b": ')
  throwsTokenizerError(() => loadTokenizer(dir), [vocabPath, 'invalid JSON'], 'truncated vocab.json')
  writeFileSync(vocabPath, '{"a": 0, "b": "1"}')
  throwsTokenizerError(() => loadTokenizer(dir), [vocabPath, '"b"', 'integer'], 'string id')
  writeFileSync(vocabPath, '{"a": 0, "b": 1.5}')
  throwsTokenizerError(() => loadTokenizer(dir), [vocabPath, '1.5'], 'fractional id')
  writeFileSync(vocabPath, '["a", "b"]')
  throwsTokenizerError(() => loadTokenizer(dir), [vocabPath, 'object'], 'array vocab')
  throwsTokenizerError(() => fromVocabMerges(VOCAB_TEXT, '#version: 0.2\nĠ t\nĠ a x\n', 'm'), ['m/merges.txt:3', 'malformed merge'], 'three-part merge')

  throwsTokenizerError(() => fromTokenizerJson('{', 'x/tokenizer.json'), ['x/tokenizer.json', 'invalid JSON'], 'bad tokenizer.json')
  const j = JSON.parse(tokenizerJson(false))
  j.model.type = 'WordPiece'
  throwsTokenizerError(() => fromTokenizerJson(JSON.stringify(j), 'x/tokenizer.json'), ['model.type', 'WordPiece', '"BPE"'], 'WordPiece')
  j.model.type = 'BPE'
  j.model.merges[1] = 'Ġ a x'
  throwsTokenizerError(() => fromTokenizerJson(JSON.stringify(j), 'x/tokenizer.json'), ['model.merges[1]'], 'bad merge string')
  j.model.merges[1] = ['Ġ']
  throwsTokenizerError(() => fromTokenizerJson(JSON.stringify(j), 'x/tokenizer.json'), ['model.merges[1]'], 'bad merge pair')
})

test('merges.txt: optional #version line, CRLF and blank lines; merge results need not be in the vocab', () => {
  const crlf = MERGES_TEXT.split('\n').slice(1).join('\r\n') + '\r\n\r\n'
  const t = fromVocabMerges(VOCAB_TEXT, crlf, 'crlf')
  assert.equal(t.encode('Hello, world'), tok.encode('Hello, world'))
  // A merge whose result is missing from the vocab is accepted (GPT2Tokenizer does not check); the
  // missing symbol then maps to unk ('<|endoftext|>'), as GPT2Tokenizer does.
  const tiny = fromVocabMerges(JSON.stringify({ a: 0, b: 1, '<|endoftext|>': 2 }), 'a b\n', 'tiny')
  assert.equal(tiny.encode('ab'), [2])
  assert.equal(tiny.encode('ba'), [1, 0])
})

test('vocab.json folders: tokenizer_config.json added_tokens_decoder and special_tokens_map.json', () => {
  const dir = tmp()
  copyFileSync(join(FIXTURES, 'vocab.json'), join(dir, 'vocab.json'))
  copyFileSync(join(FIXTURES, 'merges.txt'), join(dir, 'merges.txt'))
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
    added_tokens_decoder: {
      '50256': { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false, special: true },
      '50257': { content: '<|sep|>', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
    },
  }))
  writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify({ additional_special_tokens: ['Hello'] }))
  const t = loadTokenizer(dir)
  assert.is(t.vocabSize, 50258)
  assert.equal([...t.specialTokens.entries()].sort((x, y) => x[1] - y[1]), [['Hello', 15496], ['<|endoftext|>', 50256], ['<|sep|>', 50257]])
  assert.equal(t.encode('x<|sep|>y'), [...tok.encode('x'), 50257, ...tok.encode('y')])
})

test.after(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true })
})

test.run()
