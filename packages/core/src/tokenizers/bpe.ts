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
import { LiteralMatcher } from './matcher.js'
import { checkTokenId, checkTokenIds, type DecodeOptions, type Tokenizer } from './types.js'

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
/**
 * A word character right before / right after a position, for `single_word`: Rust regex's Unicode `\w`
 * (Alphabetic, marks, decimal digits, connector punctuation, Join_Control), as HF tokenizers tests it.
 */
const WORD_BEFORE_RE = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]$/u
const WORD_AFTER_RE = /^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u

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
/** Longer words are not cached (the cache would keep whole pasted documents alive). */
const CACHE_MAX_WORD = 256
/** Words of more bytes than this are merged with a heap (O(n log n)) instead of the O(n^2) rescan loop. */
const LONG_WORD = 64

/** Most added tokens one tokenizer may have: 8x the largest real added vocabularies (~130k). */
export const MAX_ADDED_TOKENS = 1 << 20
/**
 * Most UTF-16 code units in all added tokens together (one token may be as long as this): the matcher
 * takes up to ~40 bytes per code unit while it is built (~100 MB and < 1 s at this cap, measured).
 */
export const MAX_ADDED_TOKEN_CHARS = 1 << 22

/** A lone surrogate (with the u flag a well-formed pair is one code point, outside this range). */
const LONE_SURROGATE_RE = /[\ud800-\udfff]/u

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
  private readonly addedMatcher: LiteralMatcher | undefined
  private readonly addedList: ReadonlyArray<AddedToken> // matcher pattern index -> token
  private readonly cache = new Map<string, number[]>()
  private readonly utf8 = new TextEncoder()

  // --- decode side (Maps: ids may be sparse, up to MAX_TOKEN_ID) ---
  private readonly vocabText = new Map<number, string>() // id -> vocab string
  private readonly addedText = new Map<number, string>() // id -> added-token content (wins over vocabText)
  private readonly idBytes = new Map<number, Uint8Array>() // lazily filled
  private readonly specialIds: ReadonlySet<number>

  constructor(spec: BpeSpec) {
    this.source = spec.source
    this.vocab = spec.vocab
    this.addPrefixSpace = spec.addPrefixSpace ?? false
    this.ignoreMerges = spec.ignoreMerges ?? false
    this.normalizers = spec.normalizers ?? []
    const added = spec.addedTokens ?? []
    if (spec.vocab.size > MAX_VOCAB_ENTRIES) {
      throw new TokenizerError({ what: 'the vocabulary is too large', where: spec.source, expected: `at most ${MAX_VOCAB_ENTRIES} tokens`, found: `${spec.vocab.size}` })
    }
    if (spec.merges.length > MAX_MERGES) {
      throw new TokenizerError({ what: 'too many merges', where: spec.source, expected: `at most ${MAX_MERGES}`, found: `${spec.merges.length}` })
    }
    if (added.length > MAX_ADDED_TOKENS) {
      throw new TokenizerError({ what: 'too many added tokens', where: spec.source, expected: `at most ${MAX_ADDED_TOKENS}`, found: `${added.length}` })
    }

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
    const nm = spec.merges.length
    this.rankLeft = new Int32Array(nm)
    this.rankRight = new Int32Array(nm)
    this.rankResult = new Int32Array(nm)
    for (let rank = 0; rank < nm; rank++) {
      const [a, b] = spec.merges[rank]!
      this.rankLeft[rank] = intern(a)
      this.rankRight[rank] = intern(b)
      this.rankResult[rank] = intern(a + b)
    }
    this.symText = symText
    this.byteSym = new Int32Array(256)
    for (let b = 0; b < 256; b++) this.byteSym[b] = symIndex.get(BYTE_TO_CHAR[b]!)!
    this.symVocabId = new Int32Array(symText.length)
    for (let k = 0; k < symText.length; k++) this.symVocabId[k] = spec.vocab.get(symText[k]!) ?? -1

    // ---- merges: integer pair keys. With the caps above there are < 2^25 symbols, so keys stay < 2^50.
    let stride = 1
    while (stride < symText.length) stride *= 2
    this.symStride = stride
    for (let rank = 0; rank < nm; rank++) {
      // A repeated merge keeps its last rank, as Python's dict(zip(merges, range(n))) does.
      this.pairRank.set(this.rankLeft[rank]! * stride + this.rankRight[rank]!, rank)
    }

    // ---- id tables (decode side). Duplicate ids in the vocab: the last entry wins, like HF's decoder dict.
    let maxId = -1
    for (const [tok, id] of spec.vocab) {
      if (id > maxId) maxId = id
      this.vocabText.set(id, tok)
    }
    for (const t of added) if (t.id > maxId) maxId = t.id
    this.vocabSize = maxId + 1

    // ---- added tokens. Their text decodes as itself (UTF-8 of the content), as in HF's fast decoder.
    // For the GPT-2 files this is the same thing: '<|endoftext|>' is ASCII and byte-level maps ASCII to itself.
    const special = new Map<string, number>()
    let chars = 0
    for (const t of added) {
      if (typeof t.content !== 'string' || t.content.length === 0) {
        throw new TokenizerError({ what: `added token ${t.id} is empty`, where: spec.source, expected: 'non-empty content' })
      }
      // HF tokenizers (Rust strings) cannot hold a lone surrogate; a token with one could match half a character.
      if (LONE_SURROGATE_RE.test(t.content)) {
        throw new TokenizerError({ what: `added token ${t.id} is not valid Unicode`, where: spec.source, expected: 'no lone surrogate (\\ud800-\\udfff)', found: show(t.content, 40) })
      }
      chars += t.content.length
      if (chars > MAX_ADDED_TOKEN_CHARS) {
        throw new TokenizerError({ what: 'the added tokens are too long in total', where: spec.source, expected: `at most ${MAX_ADDED_TOKEN_CHARS} characters`, hint: `added token ${t.id} goes past it` })
      }
      this.addedText.set(t.id, t.content)
      if (t.special) special.set(t.content, t.id)
    }
    this.specialTokens = special
    this.specialIds = new Set(special.values())
    this.addedList = added
    // Leftmost-longest matching, like HF's aho-corasick (MatchKind::LeftmostLongest): see matcher.ts. For a
    // content listed twice the last token wins.
    const contents: string[] = new Array(added.length)
    for (let k = 0; k < added.length; k++) contents[k] = added[k]!.content
    if (added.length > 0) this.addedMatcher = new LiteralMatcher(contents)

    const unk = spec.unkToken ?? undefined
    let unkId: number | undefined
    if (unk !== undefined) {
      for (const t of added) if (t.content === unk) unkId = t.id
      unkId ??= spec.vocab.get(unk)
    }
    this.unkId = unkId
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

  /**
   * Splits `text` on added tokens: strings (text segments, never empty) and numbers (added-token ids).
   * HF tokenizers' AddedVocabulary::find_matches: leftmost-longest matches, each search resuming at the end
   * of the previous match (before any rstrip); a `single_word` token next to a word character is skipped;
   * lstrip / rstrip take the whitespace around the token (lstrip never past the previous split).
   */
  private splitAdded(text: string): (string | number)[] {
    const matcher = this.addedMatcher
    if (matcher === undefined) return text.length ? [text] : []
    const out: (string | number)[] = []
    const best = matcher.longestAt(text)
    let start = 0 // start of the pending text segment (HF's start_offset)
    for (let i = 0; i < text.length; ) {
      const k = best[i]!
      if (k < 0) {
        i++
        continue
      }
      const tok = this.addedList[k]!
      let from = i
      let to = i + tok.content.length
      i = to
      // Two code units either side are enough to see the neighbouring code point (surrogate pairs included).
      if (tok.singleWord && (WORD_BEFORE_RE.test(text.slice(Math.max(0, from - 2), from)) || WORD_AFTER_RE.test(text.slice(to, to + 2)))) continue
      if (tok.lstrip) while (from > start && WS_CHAR_RE.test(text[from - 1]!)) from--
      if (tok.rstrip) while (to < text.length && WS_CHAR_RE.test(text[to]!)) to++
      if (from > start) out.push(text.slice(start, from))
      out.push(tok.id)
      start = to
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
        if (word.length <= CACHE_MAX_WORD) {
          if (this.cache.size >= CACHE_LIMIT) this.cache.clear()
          this.cache.set(word, ids)
        }
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
    const syms = bytes.length > LONG_WORD ? this.mergeLong(bytes) : this.mergeShort(bytes)
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

  /**
   * GPT2Tokenizer.bpe: repeatedly take the lowest-ranked adjacent pair and merge every (non-overlapping,
   * left to right) occurrence of it, until no adjacent pair is a merge. O(n^2): for short words only.
   */
  private mergeShort(bytes: Uint8Array): number[] {
    let syms: number[] = Array.from(bytes, (b) => this.byteSym[b]!)
    const stride = this.symStride
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
    return syms
  }

  /**
   * The same result as mergeShort in O(n log n): a heap of (rank, position) pairs, taken one rank at a
   * time. All the occurrences of the lowest rank are merged left to right (a stale entry, whose pair has
   * changed since it was pushed, is skipped) before the pairs they create are pushed: a created pair holds
   * the merged symbol, so it is never the pair being merged, and it may rank lower, which GPT2Tokenizer
   * only looks at in its next round.
   */
  private mergeLong(bytes: Uint8Array): number[] {
    const n = bytes.length
    const sym = new Int32Array(n)
    const next = new Int32Array(n)
    const prev = new Int32Array(n)
    const alive = new Uint8Array(n).fill(1)
    for (let i = 0; i < n; i++) {
      sym[i] = this.byteSym[bytes[i]!]!
      next[i] = i + 1 < n ? i + 1 : -1
      prev[i] = i - 1
    }
    const stride = this.symStride
    const rankAt = (i: number): number => {
      const j = next[i]!
      return j < 0 ? -1 : (this.pairRank.get(sym[i]! * stride + sym[j]!) ?? -1)
    }
    const heap = new PairHeap()
    for (let i = 0; i + 1 < n; i++) {
      const r = rankAt(i)
      if (r >= 0) heap.push(r, i)
    }
    const touched: number[] = []
    while (heap.size > 0) {
      const r = heap.topRank()
      const a = this.rankLeft[r]!
      const b = this.rankRight[r]!
      const ab = this.rankResult[r]!
      while (heap.size > 0 && heap.topRank() === r) {
        const i = heap.pop()
        if (!alive[i]) continue
        const j = next[i]!
        if (j < 0 || sym[i] !== a || sym[j] !== b) continue
        sym[i] = ab
        alive[j] = 0
        const k = next[j]!
        next[i] = k
        if (k >= 0) prev[k] = i
        touched.push(i)
        if (prev[i]! >= 0) touched.push(prev[i]!)
      }
      for (const p of touched) {
        if (!alive[p]) continue
        const rp = rankAt(p)
        if (rp >= 0) heap.push(rp, p)
      }
      touched.length = 0
    }
    const out: number[] = []
    for (let i = 0; i >= 0; i = next[i]!) out.push(sym[i]!)
    return out
  }

  // ------------------------------------------------------------------------------------------------ decode

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? (this.addedText.get(id) ?? this.vocabText.get(id)) : undefined
  }

  tokenBytes(id: number): Uint8Array | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return undefined
    let bytes = this.idBytes.get(id)
    if (bytes === undefined) {
      const added = this.addedText.get(id)
      const text = added ?? this.vocabText.get(id)
      if (text === undefined) return undefined
      bytes = added !== undefined ? this.utf8.encode(added) : byteLevelToBytes(text)
      this.idBytes.set(id, bytes)
    }
    return bytes
  }

  /**
   * Ids -> text. An id the tokenizer does not know (e.g. GPT-J's ids 50257-50399, which the model can emit)
   * decodes as the empty string: HF's slow GPT2Tokenizer raises a TypeError there, which is no help to a
   * caller printing generated text. Negative or non-integer ids throw a TokenizerError.
   */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    checkTokenIds(ids, `${this.source}: decode`)
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

/** A binary min-heap of (rank, position) pairs ordered by rank, then position. */
class PairHeap {
  private rank: number[] = []
  private pos: number[] = []
  get size(): number {
    return this.rank.length
  }
  topRank(): number {
    return this.rank[0]!
  }
  private less(i: number, j: number): boolean {
    const ri = this.rank[i]!, rj = this.rank[j]!
    return ri < rj || (ri === rj && this.pos[i]! < this.pos[j]!)
  }
  private swap(i: number, j: number): void {
    const r = this.rank[i]!, p = this.pos[i]!
    this.rank[i] = this.rank[j]!
    this.pos[i] = this.pos[j]!
    this.rank[j] = r
    this.pos[j] = p
  }
  push(rank: number, pos: number): void {
    this.rank.push(rank)
    this.pos.push(pos)
    for (let i = this.rank.length - 1; i > 0; ) {
      const up = (i - 1) >> 1
      if (!this.less(i, up)) break
      this.swap(i, up)
      i = up
    }
  }
  /** Removes the smallest pair and returns its position. */
  pop(): number {
    const top = this.pos[0]!
    const lastRank = this.rank.pop()!
    const lastPos = this.pos.pop()!
    const n = this.rank.length
    if (n > 0) {
      this.rank[0] = lastRank
      this.pos[0] = lastPos
      for (let i = 0; ; ) {
        const l = 2 * i + 1, r = l + 1
        let m = i
        if (l < n && this.less(l, m)) m = l
        if (r < n && this.less(r, m)) m = r
        if (m === i) break
        this.swap(i, m)
        i = m
      }
    }
    return top
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

/** Ids above this are rejected as malformed: 2^24 is 64x the largest real vocabularies (~256k). */
export const MAX_TOKEN_ID = 2 ** 24 - 1
/**
 * Most entries in a vocabulary (vocab.json, tokenizer.json model.vocab, vocab.txt): 16x the largest real
 * vocabularies; keeps the symbol table (vocab + 3 per merge) below V8's 2^24-entry Map limit.
 */
export const MAX_VOCAB_ENTRIES = 1 << 22
/** Most merge rules (GPT-2 has 50,000; the largest real BPE models ~500,000). */
export const MAX_MERGES = 1 << 21
/**
 * Deepest nesting of `Sequence` normalizers in tokenizer.json. Each level is two JSON levels, so this is
 * HF tokenizers' own limit (serde_json refuses JSON nested deeper than 128).
 */
export const MAX_NORMALIZER_DEPTH = 64
/** Most normalization steps after repeats are collapsed (NFC, NFC -> NFC); each one is a pass over the text. */
export const MAX_NORMALIZERS = 64

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
    // V8 quotes a piece of the text in its message: keep it short and printable
    const msg = (e instanceof Error ? e.message : String(e)).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?')
    throw new TokenizerError(
      {
        what: 'invalid JSON',
        where,
        found: msg.length > 200 ? msg.slice(0, 199) + '…' : msg,
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
  const keys = Object.keys(v)
  if (keys.length > MAX_VOCAB_ENTRIES) {
    throw new TokenizerError({ what: 'the vocabulary is too large', where, expected: `at most ${MAX_VOCAB_ENTRIES} tokens`, found: `${keys.length}` })
  }
  const vocab = new Map<string, number>()
  for (const tok of keys) {
    const id = v[tok]
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
  // line by line with indexOf: text.split('\n') of 64 MB of newlines would be an array of 64M strings
  for (let i = 0, pos = 0; pos <= text.length; i++) {
    let end = text.indexOf('\n', pos)
    if (end < 0) end = text.length
    let line = text.slice(pos, end)
    pos = end + 1
    if (line.endsWith('\r')) line = line.slice(0, -1)
    if (i === 0 && line.startsWith('#version')) continue
    if (line.trim() === '') continue
    // Fast path for the usual "a b" line; otherwise split on runs of spaces/tabs.
    const sp = line.indexOf(' ')
    const parts =
      sp > 0 && line.indexOf(' ', sp + 1) < 0 && line.indexOf('\t') < 0
        ? [line.slice(0, sp), line.slice(sp + 1)]
        : line.trim().split(/[ \t]+/, 3)
    if (parts.length !== 2 || parts[1] === '') {
      throw new TokenizerError({
        what: 'malformed merge rule',
        where: `${where}:${i + 1}`,
        expected: 'two space-separated tokens',
        found: show(line, 60),
        hint: 'merges.txt may be truncated or not the merges file of a byte-level BPE tokenizer',
      })
    }
    if (merges.length >= MAX_MERGES) {
      throw new TokenizerError({ what: 'too many merge rules', where: `${where}:${i + 1}`, expected: `at most ${MAX_MERGES}` })
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
    addedTokens: Array.from(added.values()),
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
  if (rawMerges.length > MAX_MERGES) {
    throw new TokenizerError({ what: 'too many merge rules', where: `${source}: model.merges`, expected: `at most ${MAX_MERGES}`, found: `${rawMerges.length}` })
  }
  const merges: [string, string][] = []
  for (let i = 0; i < rawMerges.length; i++) {
    const m: Json = rawMerges[i]
    let a: Json, b: Json
    if (typeof m === 'string') {
      const sp = m.indexOf(' ')
      // exactly one space: "a b" (split(' ') on a huge string would build a huge array)
      if (sp >= 0 && m.indexOf(' ', sp + 1) < 0) (a = m.slice(0, sp)), (b = m.slice(sp + 1))
    } else if (Array.isArray(m) && m.length === 2) (a = m[0]), (b = m[1])
    if (typeof a !== 'string' || typeof b !== 'string' || a === '' || b === '') {
      throw new TokenizerError({
        what: 'malformed merge rule',
        where: `${source}: model.merges[${i}]`,
        expected: '"a b" or ["a", "b"]',
        found: show(m, 60),
      })
    }
    merges.push([a, b])
  }

  const unk = model['unk_token']
  if (unk != null && typeof unk !== 'string') unsupported('model.unk_token', unk, 'a string or null')

  const normalizers = readNormalizers(root['normalizer'], source, unsupported)

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
  if (rawAdded.length > MAX_ADDED_TOKENS) {
    throw new TokenizerError({ what: 'too many added tokens', where: `${source}: added_tokens`, expected: `at most ${MAX_ADDED_TOKENS}`, found: `${rawAdded.length}` })
  }
  const addedTokens: AddedToken[] = new Array(rawAdded.length)
  for (let i = 0; i < rawAdded.length; i++) addedTokens[i] = parseAddedToken(rawAdded[i], () => `${source}: added_tokens[${i}]`)

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

/**
 * normalizer: none, or Unicode normalization forms (applied to the text between added tokens), alone or
 * in (nested) Sequences. Walked with an explicit stack, nesting capped at MAX_NORMALIZER_DEPTH; repeats
 * of one form in a row are collapsed (normalizing twice changes nothing).
 */
function readNormalizers(
  root: Json,
  source: string,
  unsupported: (field: string, found: Json, expected: string) => never,
): UnicodeNormalization[] {
  const out: UnicodeNormalization[] = []
  // what is left to visit, last first: a node, its field path (built only for errors) and its depth
  const todo: { n: Json; path: () => string; depth: number }[] = [{ n: root, path: () => 'normalizer', depth: 0 }]
  while (todo.length > 0) {
    const { n, path, depth } = todo.pop()!
    if (n == null) continue
    if (isObject(n) && n['type'] === 'Sequence' && Array.isArray(n['normalizers'])) {
      if (depth >= MAX_NORMALIZER_DEPTH) {
        throw new TokenizerError({
          what: 'normalizer Sequences are nested too deeply',
          where: `${source}: normalizer`,
          expected: `at most ${MAX_NORMALIZER_DEPTH} levels`,
          found: `more than ${MAX_NORMALIZER_DEPTH}`,
          hint: 'the file is malformed (Hugging Face tokenizers cannot read it either)',
        })
      }
      const list = n['normalizers']
      for (let i = list.length - 1; i >= 0; i--) todo.push({ n: list[i], path: () => `${path()}.normalizers[${i}]`, depth: depth + 1 })
    } else if (isObject(n) && (n['type'] === 'NFC' || n['type'] === 'NFD' || n['type'] === 'NFKC' || n['type'] === 'NFKD')) {
      const form = n['type']
      if (out[out.length - 1] === form) continue
      if (out.length >= MAX_NORMALIZERS) {
        throw new TokenizerError({ what: 'too many normalizers', where: `${source}: ${path()}`, expected: `at most ${MAX_NORMALIZERS} normalization steps` })
      }
      out.push(form)
    } else {
      unsupported(path(), isObject(n) ? n['type'] : n, 'null or a Unicode normalization (NFC, NFD, NFKC, NFKD)')
    }
  }
  return out
}

/** One added token in tokenizers' format {id, content, special, lstrip, rstrip, single_word, normalized}. */
export function parseAddedToken(t: Json, where: string | (() => string), id?: number): AddedToken {
  const tid = id ?? (isObject(t) ? t['id'] : undefined)
  if (!isObject(t) || typeof t['content'] !== 'string' || t['content'] === '' || typeof tid !== 'number' || !Number.isInteger(tid) || tid < 0 || tid > MAX_TOKEN_ID) {
    throw new TokenizerError({
      what: 'malformed added token',
      where: typeof where === 'function' ? where() : where,
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
