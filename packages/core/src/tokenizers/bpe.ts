// GPT-2 byte-level BPE, matching transformers' slow `GPT2Tokenizer` (4.40) exactly:
//
//   encode: split out added/special tokens (`<|endoftext|>`) -> pre-tokenize every other segment with
//           GPT-2's regex (Python `regex` semantics) -> UTF-8 bytes of each pre-token -> one printable
//           character per byte (`bytesToUnicode`) -> merge adjacent symbols by merge rank -> vocab ids.
//   decode: ids -> token bytes -> UTF-8 with U+FFFD for invalid sequences (Python errors='replace').
//
// The two JavaScript pitfalls (see the golden README): JS `\s` is not Python's `\s` (U+0085 vs U+FEFF),
// and TextDecoder drops a leading BOM unless it is built with `ignoreBOM: true`.

import { TokenizerError, show } from '../errors.js'
import { checkTokenId, type DecodeOptions, type Tokenizer } from './types.js'

// ---------------------------------------------------------------------------------------------------
// Byte <-> unicode table

/**
 * GPT-2's `bytes_to_unicode()`: maps each byte 0..255 to a printable character. Bytes that are
 * printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') map to themselves; the other 68 map to
 * U+0100, U+0101, ... in byte order (so the space 0x20 becomes 'Ġ' U+0120).
 */
export function bytesToUnicode(): string[] {
  const table: string[] = new Array(256)
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
  let n = 0
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(printable(b) ? b : 256 + n++)
  }
  return table
}

const BYTE_TO_CHAR = bytesToUnicode()
const CHAR_TO_BYTE = new Map<string, number>(BYTE_TO_CHAR.map((c, b) => [c, b]))

// ---------------------------------------------------------------------------------------------------
// Pre-tokenizer

/**
 * Python `regex`'s `\s` (the Unicode White_Space property). JS `\s` differs: it includes U+FEFF and
 * excludes U+0085, which changes the ids of texts containing either.
 */
const WS = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000'

/**
 * GPT-2's pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` with `\s`
 * written out (and `\S` as its complement). `\p{L}`/`\p{N}` use the runtime's Unicode tables, which can
 * be newer than the Unicode 15.0 tables of Python's `regex` (see unicode_version_sensitive.jsonl).
 */
export const GPT2_PRETOKENIZE_PATTERN =
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`

const PRETOKENIZE_RE = new RegExp(GPT2_PRETOKENIZE_PATTERN, 'gu')
const WS_CHAR_RE = new RegExp(`[${WS}]`, 'u')
/** A word character (letter, number, '_') right before / right after a position, for `single_word`. */
const WORD_BEFORE_RE = /[\p{L}\p{N}_]$/u
const WORD_AFTER_RE = /^[\p{L}\p{N}_]/u

/** Splits one segment (no special tokens in it) into GPT-2 pre-tokens. */
export function pretokenize(text: string): string[] {
  const out: string[] = []
  // Every character is matched by one of the alternatives, so nothing is skipped.
  for (const m of text.matchAll(PRETOKENIZE_RE)) out.push(m[0])
  return out
}

// ---------------------------------------------------------------------------------------------------
// clean_up_tokenization

/** transformers' `clean_up_tokenization` (the `clean_up_tokenization_spaces=True` rewrite), in its order. */
export function cleanUpTokenization(s: string): string {
  return s
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re")
}

// ---------------------------------------------------------------------------------------------------
// The tokenizer

/** A token that is matched in the raw text before pre-tokenization (HF's "added tokens"). */
export interface AddedToken {
  id: number
  content: string
  /** Special tokens are listed in `specialTokens` and dropped by `skipSpecialTokens`. */
  special: boolean
  /** Also swallow the whitespace on the left / right of the token (HF `lstrip` / `rstrip`). */
  lstrip?: boolean
  rstrip?: boolean
  /** Only match when not inside a word (HF `single_word`). */
  singleWord?: boolean
}

export type UnicodeNormalization = 'NFC' | 'NFD' | 'NFKC' | 'NFKD'

export interface BpeSpec {
  /** token string (byte-level characters) -> id */
  vocab: ReadonlyMap<string, number>
  /** Merges in rank order (rank = index). For a repeated pair the last occurrence wins, like HF. */
  merges: ReadonlyArray<readonly [string, string]>
  addedTokens?: ReadonlyArray<AddedToken>
  /** Id used for a final symbol that is not in the vocab (GPT2Tokenizer: unk = '<|endoftext|>'). */
  unkToken?: string | null
  /** tokenizer.json ByteLevel `add_prefix_space`: prepend ' ' to a segment that does not start with one. */
  addPrefixSpace?: boolean
  /** tokenizer.json BPE `ignore_merges`: a pre-token that is itself in the vocab is not merged. */
  ignoreMerges?: boolean
  /** tokenizer.json normalizers (applied to each segment between added tokens). */
  normalizers?: ReadonlyArray<UnicodeNormalization>
  /** For error messages: the file(s) this came from. */
  source: string
}

/** Per-word cache limit: the cache is cleared when it grows past this many entries. */
const CACHE_LIMIT = 100_000

/**
 * GPT-2 byte-level BPE tokenizer (also GPT-Neo, GPT-J and anything else with GPT-2's vocab/merges).
 * Build it with `fromVocabMerges` / `fromTokenizerJson` / `loadTokenizer` (tokenizers/index.ts).
 */
export class Gpt2BpeTokenizer implements Tokenizer {
  readonly kind = 'gpt2-bpe'
  readonly vocabSize: number
  readonly specialTokens: ReadonlyMap<string, number>
  readonly source: string

  // --- encode side ---
  // Symbols (vocab strings, merge parts and merge results) are interned as small integers so that the
  // merge loop works on integer pairs: pair key = left * symStride + right.
  private readonly symStride: number
  private readonly byteSym: Int32Array // byte -> symbol of its single character
  private readonly pairRank = new Map<number, number>() // pair key -> rank
  private readonly rankResult: Int32Array // rank -> merged symbol
  private readonly rankLeft: Int32Array
  private readonly rankRight: Int32Array
  private readonly symVocabId: Int32Array // symbol -> vocab id, -1 if the symbol is not in the vocab
  private readonly symText: string[]
  private readonly vocab: ReadonlyMap<string, number>
  private readonly unkId: number | undefined
  private readonly addPrefixSpace: boolean
  private readonly ignoreMerges: boolean
  private readonly normalizers: ReadonlyArray<UnicodeNormalization>
  private readonly addedRe: RegExp | undefined
  private readonly addedByContent = new Map<string, AddedToken>()
  private readonly cache = new Map<string, number[]>()
  private readonly utf8 = new TextEncoder()

  // --- decode side ---
  private readonly idText: (string | undefined)[] // id -> vocab string or added-token content
  private readonly idIsAdded: Uint8Array // 1: bytes are the UTF-8 of the content, not byte-level chars
  private readonly idBytes: (Uint8Array | undefined)[] = [] // lazily filled
  private readonly specialIds: ReadonlySet<number>

  constructor(spec: BpeSpec) {
    this.source = spec.source
    this.vocab = spec.vocab
    this.addPrefixSpace = spec.addPrefixSpace ?? false
    this.ignoreMerges = spec.ignoreMerges ?? false
    this.normalizers = spec.normalizers ?? []
    const added = spec.addedTokens ?? []

    // ---- symbols
    const symIndex = new Map<string, number>()
    const symText: string[] = []
    const intern = (s: string): number => {
      let k = symIndex.get(s)
      if (k === undefined) {
        k = symText.length
        symIndex.set(s, k)
        symText.push(s)
      }
      return k
    }
    for (const c of BYTE_TO_CHAR) intern(c)
    for (const tok of spec.vocab.keys()) intern(tok)
    const mergeSyms = spec.merges.map(([a, b]) => [intern(a), intern(b), intern(a + b)] as const)
    this.symText = symText
    this.byteSym = new Int32Array(256)
    for (let b = 0; b < 256; b++) this.byteSym[b] = symIndex.get(BYTE_TO_CHAR[b]!)!
    this.symVocabId = new Int32Array(symText.length)
    for (let k = 0; k < symText.length; k++) this.symVocabId[k] = spec.vocab.get(symText[k]!) ?? -1

    // ---- merges: integer pair keys. symStride^2 stays far below 2^53 for any realistic vocabulary.
    let stride = 1
    while (stride < symText.length) stride *= 2
    this.symStride = stride
    const nm = mergeSyms.length
    this.rankLeft = new Int32Array(nm)
    this.rankRight = new Int32Array(nm)
    this.rankResult = new Int32Array(nm)
    mergeSyms.forEach(([a, b, ab], rank) => {
      this.rankLeft[rank] = a
      this.rankRight[rank] = b
      this.rankResult[rank] = ab
      // A repeated merge keeps its last rank, as Python's dict(zip(merges, range(n))) does.
      this.pairRank.set(a * stride + b, rank)
    })

    // ---- id tables (decode side). Duplicate ids in the vocab: the last entry wins, like HF's decoder dict.
    let maxId = -1
    for (const id of spec.vocab.values()) if (id > maxId) maxId = id
    for (const t of added) if (t.id > maxId) maxId = t.id
    this.vocabSize = maxId + 1
    this.idText = new Array(this.vocabSize)
    this.idIsAdded = new Uint8Array(this.vocabSize)
    for (const [tok, id] of spec.vocab) this.idText[id] = tok

    // ---- added tokens. Their text decodes as itself (UTF-8 of the content), as in HF's fast decoder.
    // For the GPT-2 files this is the same thing: '<|endoftext|>' is ASCII and byte-level maps ASCII to itself.
    const special = new Map<string, number>()
    for (const t of added) {
      if (t.content.length === 0) {
        throw new TokenizerError({ what: `added token ${t.id} is empty`, where: spec.source, expected: 'non-empty content' })
      }
      this.addedByContent.set(t.content, t)
      this.idText[t.id] = t.content
      this.idIsAdded[t.id] = 1
      if (t.special) special.set(t.content, t.id)
    }
    this.specialTokens = special
    this.specialIds = new Set(special.values())
    if (added.length > 0) {
      // Longest first, so that the regex alternation finds the leftmost-longest match (HF's trie / aho-corasick).
      const alts = [...this.addedByContent.keys()]
        .sort((a, b) => b.length - a.length)
        .map((s) => s.replace(/[.*+?^${}()|[\]\\\/]/g, '\\$&')) // escapes that are legal with the u flag
      this.addedRe = new RegExp(alts.join('|'), 'gu')
    }

    const unk = spec.unkToken ?? undefined
    this.unkId = unk === undefined ? undefined : (this.addedByContent.get(unk)?.id ?? spec.vocab.get(unk))
  }

  // ------------------------------------------------------------------------------------------------ encode

  encode(text: string): number[] {
    if (typeof text !== 'string') {
      throw new TokenizerError({ what: 'encode() needs a string', where: this.source, found: typeof text })
    }
    const ids: number[] = []
    for (const seg of this.splitAdded(text)) {
      if (typeof seg === 'number') ids.push(seg)
      else this.encodeSegment(seg, ids)
    }
    return ids
  }

  /** Splits `text` on added tokens: strings (text segments, never empty) and numbers (added-token ids). */
  private splitAdded(text: string): (string | number)[] {
    const re = this.addedRe
    if (re === undefined) return text.length ? [text] : []
    const out: (string | number)[] = []
    let start = 0 // start of the pending text segment
    re.lastIndex = 0
    let m: RegExpExecArray | null
    while ((m = re.exec(text)) !== null) {
      const tok = this.addedByContent.get(m[0])!
      let from = m.index
      let to = from + m[0].length
      if (tok.singleWord) {
        // Two code units either side are enough to see the neighbouring code point (surrogate pairs included).
        if (WORD_BEFORE_RE.test(text.slice(Math.max(0, from - 2), from)) || WORD_AFTER_RE.test(text.slice(to, to + 2))) {
          re.lastIndex = m.index + 1
          continue
        }
      }
      if (tok.lstrip) while (from > start && WS_CHAR_RE.test(text[from - 1]!)) from--
      if (tok.rstrip) while (to < text.length && WS_CHAR_RE.test(text[to]!)) to++
      if (from > start) out.push(text.slice(start, from))
      out.push(tok.id)
      start = to
      re.lastIndex = to
    }
    if (start < text.length) out.push(text.slice(start))
    return out
  }

  /** Encodes one segment that holds no added token, appending the ids to `out`. */
  private encodeSegment(seg: string, out: number[]): void {
    for (const form of this.normalizers) seg = seg.normalize(form)
    if (this.addPrefixSpace && !seg.startsWith(' ')) seg = ' ' + seg
    for (const word of pretokenize(seg)) {
      let ids = this.cache.get(word)
      if (ids === undefined) {
        ids = this.encodeWord(word)
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear()
        this.cache.set(word, ids)
      }
      for (const id of ids) out.push(id)
    }
  }

  /** BPE of one pre-token. */
  private encodeWord(word: string): number[] {
    // Lone surrogates (not valid Unicode, which Python would reject) become U+FFFD's bytes here.
    const bytes = this.utf8.encode(word)
    if (this.ignoreMerges) {
      let s = ''
      for (const b of bytes) s += BYTE_TO_CHAR[b]
      const id = this.vocab.get(s)
      if (id !== undefined) return [id]
    }
    let syms: number[] = Array.from(bytes, (b) => this.byteSym[b]!)
    const stride = this.symStride
    // Like GPT2Tokenizer.bpe: repeatedly take the lowest-ranked adjacent pair and merge every
    // (non-overlapping, left to right) occurrence of it, until no adjacent pair is a merge.
    while (syms.length > 1) {
      let best = -1
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = this.pairRank.get(syms[i]! * stride + syms[i + 1]!)
        if (r !== undefined && (best < 0 || r < best)) best = r
      }
      if (best < 0) break
      const a = this.rankLeft[best]!
      const b = this.rankRight[best]!
      const ab = this.rankResult[best]!
      const next: number[] = []
      for (let i = 0; i < syms.length; ) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          next.push(ab)
          i += 2
        } else {
          next.push(syms[i]!)
          i++
        }
      }
      syms = next
    }
    return syms.map((s) => {
      const id = this.symVocabId[s]!
      if (id >= 0) return id
      // GPT2Tokenizer maps a symbol missing from the vocab to unk ('<|endoftext|>').
      if (this.unkId !== undefined) return this.unkId
      throw new TokenizerError({
        what: `BPE produced a token that is not in the vocabulary`,
        where: this.source,
        found: show(this.symText[s]),
        hint: 'the vocab and merges files do not belong together (or the vocab lacks one of the 256 byte tokens)',
      })
    })
  }

  // ------------------------------------------------------------------------------------------------ decode

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.idText[id] : undefined
  }

  tokenBytes(id: number): Uint8Array | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return undefined
    let bytes = this.idBytes[id]
    if (bytes === undefined) {
      const text = this.idText[id]
      if (text === undefined) return undefined
      bytes = this.idIsAdded[id] ? this.utf8.encode(text) : byteLevelToBytes(text)
      this.idBytes[id] = bytes
    }
    return bytes
  }

  /**
   * Ids -> text. An id the tokenizer does not know (e.g. GPT-J's ids 50257-50399, which the model can emit)
   * decodes as the empty string: HF's slow GPT2Tokenizer raises a TypeError there, which is no help to a
   * caller printing generated text. Negative or non-integer ids throw a TokenizerError.
   */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const parts: Uint8Array[] = []
    let total = 0
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!
      checkTokenId(id, `${this.source}: decode`, i)
      if (opts.skipSpecialTokens && this.specialIds.has(id)) continue
      const b = this.tokenBytes(id)
      if (b === undefined) continue // unknown id: empty string (see above)
      parts.push(b)
      total += b.length
    }
    const all = new Uint8Array(total)
    let off = 0
    for (const p of parts) {
      all.set(p, off)
      off += p.length
    }
    // Not fatal: invalid sequences become U+FFFD (Python errors='replace'); ignoreBOM keeps a leading U+FEFF.
    const text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(all)
    return opts.cleanUpTokenizationSpaces ? cleanUpTokenization(text) : text
  }
}

/**
 * Byte-level token string -> bytes. A character outside the byte table (only in a malformed vocab; HF
 * raises a KeyError there) contributes its own UTF-8 bytes.
 */
function byteLevelToBytes(text: string): Uint8Array {
  const out: number[] = []
  for (const ch of text) {
    const b = CHAR_TO_BYTE.get(ch)
    if (b !== undefined) out.push(b)
    else for (const x of new TextEncoder().encode(ch)) out.push(x)
  }
  return Uint8Array.from(out)
}

// ---------------------------------------------------------------------------------------------------
// Reading the files: vocab.json + merges.txt (GPT2Tokenizer) or tokenizer.json (tokenizers' BPE model)

/** Ids above this are rejected as malformed (they would make the id tables absurdly large). */
const MAX_TOKEN_ID = 2 ** 24 - 1

type Json = unknown
type JsonObject = Record<string, Json>

function isObject(v: Json): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function describe(v: Json): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return `an array of ${v.length}`
  if (typeof v === 'object') return 'an object'
  return `${typeof v} ${show(v, 40)}`
}

/** JSON.parse with a TokenizerError naming the file. A leading BOM is tolerated. */
export function parseJsonFile(text: string, where: string): Json {
  try {
    return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text)
  } catch (e) {
    throw new TokenizerError(
      {
        what: 'invalid JSON',
        where,
        found: e instanceof Error ? e.message : String(e),
        hint: 'the file is truncated or is not a tokenizer file; download it again',
      },
      { cause: e },
    )
  }
}

/** A vocab object {token: id} -> Map, checking that every id is a non-negative integer. */
export function parseVocab(v: Json, where: string): Map<string, number> {
  if (!isObject(v)) {
    throw new TokenizerError({
      what: 'the vocabulary is not a JSON object of token -> id',
      where,
      expected: 'an object like {"!": 0, "\\"": 1, ...}',
      found: describe(v),
    })
  }
  const vocab = new Map<string, number>()
  for (const [tok, id] of Object.entries(v)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_TOKEN_ID) {
      throw new TokenizerError({
        what: `token ${show(tok, 40)} has an invalid id`,
        where,
        expected: `an integer id in 0..${MAX_TOKEN_ID}`,
        found: describe(id),
      })
    }
    vocab.set(tok, id)
  }
  if (vocab.size === 0) throw new TokenizerError({ what: 'the vocabulary is empty', where, expected: 'at least one token' })
  return vocab
}

/**
 * merges.txt: one merge "left right" per line, in rank order. An optional first line `#version: ...` and
 * blank lines are skipped; any other line must have exactly two space-separated parts.
 */
export function parseMergesTxt(text: string, where: string): [string, string][] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
  const merges: [string, string][] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.endsWith('\r') ? lines[i]!.slice(0, -1) : lines[i]!
    if (i === 0 && line.startsWith('#version')) continue
    if (line.trim() === '') continue
    // Fast path for the usual "a b" line; otherwise split on runs of spaces/tabs.
    const sp = line.indexOf(' ')
    const parts =
      sp > 0 && line.indexOf(' ', sp + 1) < 0 && line.indexOf('\t') < 0
        ? [line.slice(0, sp), line.slice(sp + 1)]
        : line.trim().split(/[ \t]+/)
    if (parts.length !== 2 || parts[1] === '') {
      throw new TokenizerError({
        what: 'malformed merge rule',
        where: `${where}:${i + 1}`,
        expected: 'two space-separated tokens',
        found: show(line, 60),
        hint: 'merges.txt may be truncated or not the merges file of a byte-level BPE tokenizer',
      })
    }
    merges.push([parts[0]!, parts[1]!])
  }
  return merges
}

export interface VocabMergesOptions {
  /** Extra added tokens with explicit ids (e.g. tokenizer_config.json's added_tokens_decoder). */
  addedTokens?: AddedToken[]
  /** Token strings to mark special (e.g. from special_tokens_map.json); ignored unless they have an id. */
  specialTokens?: string[]
  /** unk token; default '<|endoftext|>' (GPT2Tokenizer's default). */
  unkToken?: string
}

/**
 * A GPT2Tokenizer-style tokenizer from the texts of vocab.json and merges.txt. `source` names the files
 * in error messages: a folder (the file names are appended) or the two paths.
 * '<|endoftext|>' is a special token when the vocab has it (GPT2Tokenizer's bos/eos/unk).
 */
export function fromVocabMerges(
  vocabJsonText: string,
  mergesText: string,
  source: string | { vocab: string; merges: string },
  opts: VocabMergesOptions = {},
): Gpt2BpeTokenizer {
  const files =
    typeof source === 'string'
      ? { vocab: joinPath(source, 'vocab.json'), merges: joinPath(source, 'merges.txt') }
      : source
  const vocab = parseVocab(parseJsonFile(vocabJsonText, files.vocab), files.vocab)
  const merges = parseMergesTxt(mergesText, files.merges)

  const added = new Map<string, AddedToken>()
  const eot = vocab.get('<|endoftext|>')
  if (eot !== undefined) added.set('<|endoftext|>', { id: eot, content: '<|endoftext|>', special: true })
  for (const t of opts.addedTokens ?? []) added.set(t.content, { ...t })
  for (const s of opts.specialTokens ?? []) {
    const known = added.get(s)
    if (known) known.special = true
    else if (vocab.has(s)) added.set(s, { id: vocab.get(s)!, content: s, special: true })
    // A special token without an id would be appended to the vocab by HF; we leave it out.
  }
  return new Gpt2BpeTokenizer({
    vocab,
    merges,
    addedTokens: [...added.values()],
    unkToken: opts.unkToken ?? '<|endoftext|>',
    source: `${files.vocab} + ${files.merges}`,
  })
}

/**
 * A tokenizer from the text of a Hugging Face tokenizer.json whose model is a byte-level BPE
 * (model.type "BPE", pre_tokenizer ByteLevel). `source` (the file path) names the file in errors.
 * Features that would change the result and are not implemented are rejected, not ignored.
 */
export function fromTokenizerJson(text: string, source: string): Gpt2BpeTokenizer {
  const root = parseJsonFile(text, source)
  if (!isObject(root)) {
    throw new TokenizerError({ what: 'not a tokenizer.json', where: source, expected: 'a JSON object', found: describe(root) })
  }
  const model = root['model']
  if (!isObject(model)) {
    throw new TokenizerError({ what: 'missing "model"', where: source, expected: 'an object with type, vocab and merges', found: describe(model) })
  }
  const type = model['type'] ?? ('merges' in model ? 'BPE' : undefined)
  if (type !== 'BPE') {
    throw new TokenizerError({
      what: 'unsupported tokenizer model',
      where: `${source}: model.type`,
      expected: '"BPE"',
      found: show(type),
      hint: 'refgpt reads byte-level BPE tokenizer.json files (GPT-2, GPT-Neo, GPT-J)',
    })
  }
  const unsupported = (field: string, found: Json, expected: string): never => {
    throw new TokenizerError({
      what: `unsupported tokenizer.json setting ${field}`,
      where: source,
      expected,
      found: show(found),
      hint: 'refgpt implements GPT-2 style byte-level BPE only',
    })
  }
  const dropout = model['dropout']
  if (dropout != null && dropout !== 0) unsupported('model.dropout', dropout, 'null')
  for (const f of ['continuing_subword_prefix', 'end_of_word_suffix']) {
    if (model[f] != null && model[f] !== '') unsupported(`model.${f}`, model[f], 'null or ""')
  }
  if (model['byte_fallback'] === true) unsupported('model.byte_fallback', true, 'false')

  const vocab = parseVocab(model['vocab'], `${source}: model.vocab`)
  const rawMerges = model['merges'] ?? []
  if (!Array.isArray(rawMerges)) {
    throw new TokenizerError({ what: 'model.merges is not a list', where: source, expected: 'an array of "a b" strings or [a, b] pairs', found: describe(rawMerges) })
  }
  const merges = rawMerges.map((m: Json, i: number): [string, string] => {
    const parts = typeof m === 'string' ? m.split(' ') : m
    if (!Array.isArray(parts) || parts.length !== 2 || !parts.every((p) => typeof p === 'string' && p !== '')) {
      throw new TokenizerError({
        what: 'malformed merge rule',
        where: `${source}: model.merges[${i}]`,
        expected: '"a b" or ["a", "b"]',
        found: show(m, 60),
      })
    }
    return [parts[0] as string, parts[1] as string]
  })

  const unk = model['unk_token']
  if (unk != null && typeof unk !== 'string') unsupported('model.unk_token', unk, 'a string or null')

  // normalizer: none, or Unicode normalization forms (applied to the text between added tokens).
  const normalizers: UnicodeNormalization[] = []
  const addNormalizer = (n: Json, field: string): void => {
    if (n == null) return
    if (isObject(n) && n['type'] === 'Sequence' && Array.isArray(n['normalizers'])) {
      n['normalizers'].forEach((x, i) => addNormalizer(x, `${field}.normalizers[${i}]`))
    } else if (isObject(n) && ['NFC', 'NFD', 'NFKC', 'NFKD'].includes(n['type'] as string)) {
      normalizers.push(n['type'] as UnicodeNormalization)
    } else {
      unsupported(field, isObject(n) ? n['type'] : n, 'null or a Unicode normalization (NFC, NFD, NFKC, NFKD)')
    }
  }
  addNormalizer(root['normalizer'], 'normalizer')

  // pre_tokenizer: ByteLevel (with its regex), alone or as the only member of a Sequence.
  let pre = root['pre_tokenizer']
  if (isObject(pre) && pre['type'] === 'Sequence' && Array.isArray(pre['pretokenizers']) && pre['pretokenizers'].length === 1) {
    pre = pre['pretokenizers'][0]
  }
  if (!isObject(pre) || pre['type'] !== 'ByteLevel') {
    unsupported('pre_tokenizer', isObject(pre) ? pre['type'] : pre, '{"type": "ByteLevel"}')
  }
  const preObj = pre as JsonObject
  if (preObj['use_regex'] === false) unsupported('pre_tokenizer.use_regex', false, 'true')

  const decoder = root['decoder']
  if (decoder != null && !(isObject(decoder) && decoder['type'] === 'ByteLevel')) {
    unsupported('decoder', isObject(decoder) ? decoder['type'] : decoder, 'null or {"type": "ByteLevel"}')
  }

  const rawAdded = root['added_tokens'] ?? []
  if (!Array.isArray(rawAdded)) {
    throw new TokenizerError({ what: 'added_tokens is not a list', where: source, found: describe(rawAdded) })
  }
  const addedTokens = rawAdded.map((t: Json, i: number) => parseAddedToken(t, `${source}: added_tokens[${i}]`))

  return new Gpt2BpeTokenizer({
    vocab,
    merges,
    addedTokens,
    unkToken: (unk as string | null | undefined) ?? null,
    addPrefixSpace: preObj['add_prefix_space'] === true,
    ignoreMerges: model['ignore_merges'] === true,
    normalizers,
    source,
  })
}

/** One added token in tokenizers' format {id, content, special, lstrip, rstrip, single_word, normalized}. */
export function parseAddedToken(t: Json, where: string, id?: number): AddedToken {
  const tid = id ?? (isObject(t) ? t['id'] : undefined)
  if (!isObject(t) || typeof t['content'] !== 'string' || t['content'] === '' || typeof tid !== 'number' || !Number.isInteger(tid) || tid < 0 || tid > MAX_TOKEN_ID) {
    throw new TokenizerError({
      what: 'malformed added token',
      where,
      expected: '{"id": <integer>, "content": <non-empty string>, "special": <bool>, ...}',
      found: show(t, 60),
    })
  }
  return {
    id: tid,
    content: t['content'],
    special: t['special'] === true,
    lstrip: t['lstrip'] === true,
    rstrip: t['rstrip'] === true,
    singleWord: t['single_word'] === true,
  }
}

/** Token strings named in a special_tokens_map.json / tokenizer_config.json object (bos_token, ...). */
export function specialTokenStrings(obj: Json): string[] {
  if (!isObject(obj)) return []
  const out: string[] = []
  const take = (v: Json) => {
    if (typeof v === 'string') out.push(v)
    else if (isObject(v) && typeof v['content'] === 'string') out.push(v['content'])
  }
  for (const k of ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token']) take(obj[k])
  const extra = obj['additional_special_tokens']
  if (Array.isArray(extra)) extra.forEach(take)
  return out
}

/** path.join for display (errors only), without importing node:path into this file. */
function joinPath(dir: string, file: string): string {
  return dir === '' ? file : dir.endsWith('/') || dir.endsWith('\\') ? dir + file : `${dir}/${file}`
}
