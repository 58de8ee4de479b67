// BERT WordPiece over vocab.txt, as transformers 4.40's slow BertTokenizer does it (the tokenizer of
// ModelScope's Chinese GPT-3 base/large/kuakua). docs/modelscope-gpt3.md §5.
//   tokenize: cut out literal special tokens; lower-case the rest; BasicTokenizer (clean, space around
//   CJK ideographs, NFC, whitespace split, accent strip, punctuation split); greedy longest-match
//   WordPiece ("##" continuations; a word with no match, or > 100 chars, is one [UNK]).
//   decode: drop special ids (optional), unknown ids -> "[UNK]", " ".join, " ##" -> "", clean-up.

import { TokenizerError } from '../errors.js'
import { checkTokenId, checkTokenIds, type DecodeOptions, type Tokenizer } from './types.js'
import { MAX_VOCAB_ENTRIES, cleanUpTokenization } from './bpe.js'
import { LiteralMatcher } from './matcher.js'

export interface WordPieceOptions {
  /** tokenizer_config.json do_lower_case (default true). */
  doLowerCase?: boolean
  /** tokenizer_config.json strip_accents (default null: follows do_lower_case). */
  stripAccents?: boolean | null
  /** tokenizer_config.json tokenize_chinese_chars (default true). */
  tokenizeChineseChars?: boolean
  /** Where the vocabulary came from, for error messages. */
  file?: string
}

const SPECIAL_NAMES = ['[UNK]', '[SEP]', '[PAD]', '[CLS]', '[MASK]'] as const
const MAX_CHARS_PER_WORD = 100

/** CJK ideograph ranges of BasicTokenizer._is_chinese_char. */
export function isChineseChar(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  )
}

const CONTROL = /^\p{C}$/u
const ZS = /^\p{Zs}$/u
const PUNCT = /^\p{P}$/u
const MN = /\p{Mn}/gu

const isWhitespace = (ch: string) => ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || ZS.test(ch)
const isControl = (ch: string) => !(ch === '\t' || ch === '\n' || ch === '\r') && CONTROL.test(ch)
function isPunctuation(ch: string): boolean {
  const cp = ch.codePointAt(0)!
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) return true
  return PUNCT.test(ch)
}
const splitWhitespace = (s: string) => s.split(/\s+/u).filter((w) => w.length > 0)

export class WordPieceTokenizer implements Tokenizer {
  readonly kind = 'bert-wordpiece'
  readonly vocabSize: number
  readonly specialTokens: ReadonlyMap<string, number>
  /** token -> id (a repeated line: the last one wins, as load_vocab's dict). */
  private readonly vocab = new Map<string, number>()
  /** id -> token (undefined for an id whose line was repeated later, as ids_to_tokens). */
  private readonly tokens: (string | undefined)[]
  readonly unkId: number
  private readonly specialIds: Set<number>
  private readonly doLowerCase: boolean
  private readonly stripAccents: boolean | null
  private readonly chinese: boolean
  /** Finds the special tokens in a text (leftmost, then longest). */
  private readonly specialMatcher: LiteralMatcher

  constructor(lines: string[], opts: WordPieceOptions = {}) {
    if (lines.length > MAX_VOCAB_ENTRIES) {
      throw new TokenizerError({ where: opts.file ?? 'vocab.txt', what: 'the vocabulary is too large', expected: `at most ${MAX_VOCAB_ENTRIES} lines`, found: `${lines.length}` })
    }
    for (let i = 0; i < lines.length; i++) {
      if (typeof lines[i] !== 'string') throw new TokenizerError({ where: opts.file ?? 'vocab.txt', what: `vocabulary entry ${i} is not a string` })
      this.vocab.set(lines[i]!, i)
    }
    this.tokens = lines.map((t, i) => (this.vocab.get(t) === i ? t : undefined))
    this.vocabSize = lines.length
    const specials = new Map<string, number>()
    for (const name of SPECIAL_NAMES) {
      const id = this.vocab.get(name)
      if (id !== undefined) specials.set(name, id)
    }
    const unk = specials.get('[UNK]')
    if (unk === undefined)
      throw new TokenizerError({ where: opts.file ?? 'vocab.txt', what: 'the vocabulary has no [UNK] token', expected: 'a BERT vocab.txt with [PAD] [UNK] [CLS] [SEP] [MASK]' })
    this.unkId = unk
    this.specialTokens = specials
    this.specialIds = new Set(specials.values())
    this.specialMatcher = new LiteralMatcher(Array.from(specials.keys()))
    this.doLowerCase = opts.doLowerCase ?? true
    this.stripAccents = opts.stripAccents ?? null
    this.chinese = opts.tokenizeChineseChars ?? true
  }

  /** The id of a special token by its string ([CLS], [SEP], ...), or undefined when the vocab lacks it. */
  special(name: (typeof SPECIAL_NAMES)[number]): number | undefined {
    return this.specialTokens.get(name)
  }

  /** BertTokenizer.tokenize(text): the token strings. */
  tokenize(text: string): string[] {
    if (typeof text !== 'string') {
      throw new TokenizerError({ what: 'encode() needs a string', where: 'WordPieceTokenizer', found: text === null ? 'null' : typeof text })
    }
    const out: string[] = []
    // 1. literal special tokens, case-sensitive, left to right (at one position the longest)
    let start = 0
    for (const [at, k] of this.specialMatcher.matches(text)) {
      this.tokenizePlain(text.slice(start, at), out)
      const name = this.specialMatcher.patterns[k]!
      out.push(name)
      start = at + name.length
    }
    this.tokenizePlain(text.slice(start), out)
    return out
  }

  /** BasicTokenizer + WordPiece of a text without special tokens, appended to `out`. */
  private tokenizePlain(text: string, out: string[]): void {
    if (this.doLowerCase) text = text.toLowerCase()
    // _clean_text
    let clean = ''
    for (const ch of text) {
      const cp = ch.codePointAt(0)!
      if (cp === 0 || cp === 0xfffd || isControl(ch)) continue
      clean += isWhitespace(ch) ? ' ' : ch
    }
    // _tokenize_chinese_chars
    if (this.chinese) {
      let s = ''
      for (const ch of clean) s += isChineseChar(ch.codePointAt(0)!) ? ` ${ch} ` : ch
      clean = s
    }
    const split: string[] = []
    for (let word of splitWhitespace(clean.normalize('NFC'))) {
      if (this.doLowerCase) {
        word = word.toLowerCase()
        if (this.stripAccents !== false) word = stripAccents(word)
      } else if (this.stripAccents) word = stripAccents(word)
      splitOnPunc(word, split)
    }
    for (const word of splitWhitespace(split.join(' '))) this.wordpiece(word, out)
  }

  /** Greedy longest-match-first WordPiece of one word, appended to `out`. */
  private wordpiece(word: string, out: string[]): void {
    // more than MAX_CHARS_PER_WORD code points: one [UNK] (counted without building an array of the word)
    let n = 0
    for (let i = 0; i < word.length && n <= MAX_CHARS_PER_WORD; i++) {
      const c = word.charCodeAt(i)
      if (!(c >= 0xdc00 && c <= 0xdfff && i > 0 && word.charCodeAt(i - 1) >= 0xd800 && word.charCodeAt(i - 1) <= 0xdbff)) n++
    }
    if (n > MAX_CHARS_PER_WORD) {
      out.push('[UNK]')
      return
    }
    const chars = Array.from(word)
    const pieces: string[] = []
    let start = 0
    while (start < chars.length) {
      let end = chars.length
      let cur: string | null = null
      while (start < end) {
        let sub = chars.slice(start, end).join('')
        if (start > 0) sub = '##' + sub
        if (this.vocab.has(sub)) {
          cur = sub
          break
        }
        end--
      }
      if (cur === null) {
        out.push('[UNK]')
        return
      }
      pieces.push(cur)
      start = end
    }
    for (const p of pieces) out.push(p)
  }

  /** A token string -> id ([UNK]'s id for unknown strings). */
  tokenToId(token: string): number {
    return this.vocab.get(token) ?? this.unkId
  }

  /** Text -> ids, without [CLS]/[SEP] (like the other tokenizers' encode). */
  encode(text: string): number[] {
    return this.tokenize(text).map((t) => this.tokenToId(t))
  }

  idToToken(id: number): string | undefined {
    return this.tokens[id]
  }

  tokenBytes(id: number): Uint8Array | undefined {
    const t = this.tokens[id]
    return t === undefined ? undefined : new TextEncoder().encode(t)
  }

  /**
   * BertTokenizer.decode: special ids dropped with skipSpecialTokens, an id outside the vocabulary is
   * the literal "[UNK]" (kept), " ".join, " ##" removed, strip, then clean_up_tokenization when asked.
   */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    checkTokenIds(ids, 'WordPieceTokenizer.decode')
    const toks: string[] = []
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]
      checkTokenId(id, 'WordPieceTokenizer.decode', i)
      if (opts.skipSpecialTokens && this.specialIds.has(id)) continue
      toks.push(this.tokens[id] ?? '[UNK]')
    }
    const s = toks.join(' ').replace(/ ##/g, '').trim()
    return opts.cleanUpTokenizationSpaces ? cleanUp(s) : s
  }
}

function stripAccents(s: string): string {
  return s.normalize('NFD').replace(MN, '')
}

/** BasicTokenizer._run_split_on_punc, the pieces appended to `out`. */
function splitOnPunc(word: string, out: string[]): void {
  let cur = ''
  for (const ch of word) {
    if (isPunctuation(ch)) {
      if (cur) out.push(cur)
      out.push(ch)
      cur = ''
    } else cur += ch
  }
  if (cur) out.push(cur)
}

/** transformers' clean_up_tokenization (the same rewrite the GPT-2 tokenizer uses). */
export const cleanUp = cleanUpTokenization

/** vocab.txt -> tokens: line k (the trailing "\n" removed) is id k. At most MAX_VOCAB_ENTRIES lines. */
export function parseVocabTxt(text: string, file = 'vocab.txt'): string[] {
  // BertTokenizer opens vocab.txt in text mode: universal newlines, so \r\n and a lone \r end a line too
  // (a CRLF file from a Windows checkout gives the same tokens)
  if (text.includes('\r')) text = text.replace(/\r\n?/g, '\n')
  if (text.length === 0) return []
  // count first: splitting 64 MB of newlines would build an array of 64 million strings
  let count = 1
  for (let i = text.indexOf('\n'); i >= 0 && i < text.length - 1; i = text.indexOf('\n', i + 1)) {
    if (++count > MAX_VOCAB_ENTRIES) {
      throw new TokenizerError({ where: file, what: 'the vocabulary is too large', expected: `at most ${MAX_VOCAB_ENTRIES} lines` })
    }
  }
  const lines = text.split('\n')
  if (text.endsWith('\n')) lines.pop()
  return lines
}

/** A WordPiece tokenizer from vocab.txt text and the options of tokenizer_config.json (if any). */
export function fromVocabTxt(text: string, file: string, config: Record<string, unknown> = {}): WordPieceTokenizer {
  const bool = (k: string): boolean | undefined => (typeof config[k] === 'boolean' ? (config[k] as boolean) : undefined)
  const sa = config.strip_accents
  return new WordPieceTokenizer(parseVocabTxt(text, file), {
    file,
    doLowerCase: bool('do_lower_case'),
    stripAccents: typeof sa === 'boolean' ? sa : null,
    tokenizeChineseChars: bool('tokenize_chinese_chars'),
  })
}
