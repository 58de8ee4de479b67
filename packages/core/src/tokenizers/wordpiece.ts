// BERT WordPiece over vocab.txt, as transformers 4.40's slow BertTokenizer does it (the tokenizer of
// ModelScope's Chinese GPT-3 base/large/kuakua). docs/modelscope-gpt3.md §5.
//   tokenize: cut out literal special tokens; lower-case the rest; BasicTokenizer (clean, space around
//   CJK ideographs, NFC, whitespace split, accent strip, punctuation split); greedy longest-match
//   WordPiece ("##" continuations; a word with no match, or > 100 chars, is one [UNK]).
//   decode: drop special ids (optional), unknown ids -> "[UNK]", " ".join, " ##" -> "", clean-up.

import { TokenizerError } from '../errors.js'
import { checkTokenId, type DecodeOptions, type Tokenizer } from './types.js'
import { cleanUpTokenization } from './bpe.js'

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

  constructor(lines: string[], opts: WordPieceOptions = {}) {
    lines.forEach((t, i) => this.vocab.set(t, i))
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
    const out: string[] = []
    // 1. literal special tokens, case-sensitive, left to right
    const names = [...this.specialTokens.keys()]
    let rest = text
    for (;;) {
      let at = -1, which = ''
      for (const n of names) {
        const i = rest.indexOf(n)
        if (i >= 0 && (at < 0 || i < at || (i === at && n.length > which.length))) (at = i), (which = n)
      }
      if (at < 0) break
      out.push(...this.tokenizePlain(rest.slice(0, at)))
      out.push(which)
      rest = rest.slice(at + which.length)
    }
    out.push(...this.tokenizePlain(rest))
    return out
  }

  private tokenizePlain(text: string): string[] {
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
      split.push(...splitOnPunc(word))
    }
    const out: string[] = []
    for (const word of splitWhitespace(split.join(' '))) out.push(...this.wordpiece(word))
    return out
  }

  private wordpiece(word: string): string[] {
    const chars = Array.from(word)
    if (chars.length > MAX_CHARS_PER_WORD) return ['[UNK]']
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
      if (cur === null) return ['[UNK]']
      pieces.push(cur)
      start = end
    }
    return pieces
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

function splitOnPunc(word: string): string[] {
  const out: string[] = []
  let cur = ''
  for (const ch of word) {
    if (isPunctuation(ch)) {
      if (cur) out.push(cur)
      out.push(ch)
      cur = ''
    } else cur += ch
  }
  if (cur) out.push(cur)
  return out
}

/** transformers' clean_up_tokenization (the same rewrite the GPT-2 tokenizer uses). */
export const cleanUp = cleanUpTokenization

/** vocab.txt -> tokens: line k (the trailing "\n" removed) is id k. */
export function parseVocabTxt(text: string): string[] {
  if (text.length === 0) return []
  const lines = text.split('\n')
  if (text.endsWith('\n')) lines.pop()
  return lines
}

/** A WordPiece tokenizer from vocab.txt text and the options of tokenizer_config.json (if any). */
export function fromVocabTxt(text: string, file: string, config: Record<string, unknown> = {}): WordPieceTokenizer {
  const bool = (k: string): boolean | undefined => (typeof config[k] === 'boolean' ? (config[k] as boolean) : undefined)
  const sa = config.strip_accents
  return new WordPieceTokenizer(parseVocabTxt(text), {
    file,
    doLowerCase: bool('do_lower_case'),
    stripAccents: typeof sa === 'boolean' ? sa : null,
    tokenizeChineseChars: bool('tokenize_chinese_chars'),
  })
}
