// The interface every refgpt tokenizer implements (GPT-2 byte-level BPE now, a WordPiece tokenizer for
// the Chinese GPT-3 later), plus a streaming decoder that works with any of them.

import { TokenizerError, show } from '../errors.js'

export interface DecodeOptions {
  /** Drop the ids of special tokens (e.g. `<|endoftext|>`) from the output. Default false. */
  skipSpecialTokens?: boolean
  /**
   * Apply transformers' `clean_up_tokenization` (" ." -> ".", " n't" -> "n't", ...). Default false,
   * i.e. the exact inverse of encode. Note: transformers 4.40 defaults to true for GPT-2; we do not,
   * because the rewrite is lossy.
   */
  cleanUpTokenizationSpaces?: boolean
}

export interface Tokenizer {
  /** Which algorithm, e.g. 'gpt2-bpe'. */
  readonly kind: string
  /** Number of ids the tokenizer knows (incl. special tokens): the largest known id + 1. */
  readonly vocabSize: number
  /** Special tokens by their text, e.g. '<|endoftext|>' -> 50256. */
  readonly specialTokens: ReadonlyMap<string, number>
  /** Text -> ids. No BOS/EOS is added (like `GPT2Tokenizer.encode`). */
  encode(text: string): number[]
  /**
   * Ids -> text. An id the tokenizer does not know (e.g. GPT-J's ids 50257-50399, which the model can
   * emit) decodes as the empty string; negative or non-integer ids throw a TokenizerError.
   */
  decode(ids: ArrayLike<number>, opts?: DecodeOptions): string
  /** The raw bytes of one token (undefined for an id the tokenizer does not know). */
  tokenBytes(id: number): Uint8Array | undefined
  /** The vocabulary string of one token (e.g. 'Ġworld'); undefined for an unknown id. */
  idToToken(id: number): string | undefined
}

/** Throws a TokenizerError unless `id` is a non-negative integer (the only ids that can be decoded). */
export function checkTokenId(id: number, where: string, index?: number): void {
  if (!Number.isInteger(id) || id < 0) {
    throw new TokenizerError({
      what: index === undefined ? 'invalid token id' : `invalid token id at position ${index}`,
      where,
      expected: 'a non-negative integer',
      found: show(typeof id === 'number' ? String(id) : id),
      hint: 'token ids come from encode() or from a model; check the caller',
    })
  }
}

/** Throws a TokenizerError unless `ids` is an array or typed array (what decode() takes). */
export function checkTokenIds(ids: unknown, where: string): asserts ids is ArrayLike<number> {
  const len = typeof ids === 'object' && ids !== null ? (ids as { length?: unknown }).length : undefined
  if (typeof len !== 'number' || !Number.isSafeInteger(len) || len < 0) {
    throw new TokenizerError({
      what: 'decode() needs a list of token ids',
      where,
      expected: 'an array or typed array of non-negative integers',
      found: ids === null ? 'null' : typeof ids,
    })
  }
}

/**
 * Decodes ids one at a time, for printing generated text as it is produced. `push(id)` returns the
 * text completed so far; a UTF-8 character whose bytes are spread over several tokens is held back
 * until it is complete, so no result ends in half a character (or half a surrogate pair).
 * `flush()` returns what is left (U+FFFD for an incomplete sequence at the end).
 * The concatenation of every `push()` result and `flush()` equals `tok.decode(allIds, opts)`.
 * `cleanUpTokenizationSpaces` is not offered: it rewrites across token boundaries.
 */
export class StreamDecoder {
  private readonly tok: Tokenizer
  private readonly skipIds: ReadonlySet<number> | undefined
  // ignoreBOM: keep a leading U+FEFF, like Python's bytes.decode('utf-8') (TextDecoder drops it otherwise).
  private decoder = new TextDecoder('utf-8', { ignoreBOM: true })
  private count = 0

  constructor(tok: Tokenizer, opts: { skipSpecialTokens?: boolean } = {}) {
    this.tok = tok
    this.skipIds = opts.skipSpecialTokens ? new Set(tok.specialTokens.values()) : undefined
  }

  push(id: number): string {
    checkTokenId(id, `StreamDecoder(${this.tok.kind})`, this.count)
    this.count++
    if (this.skipIds?.has(id)) return ''
    // An unknown id contributes no bytes, like Tokenizer.decode.
    const bytes = this.tok.tokenBytes(id)
    if (bytes === undefined || bytes.length === 0) return ''
    return this.decoder.decode(bytes, { stream: true })
  }

  /** Ends the stream and resets the decoder, so the object can be reused for a new sequence. */
  flush(): string {
    const rest = this.decoder.decode()
    this.decoder = new TextDecoder('utf-8', { ignoreBOM: true })
    this.count = 0
    return rest
  }
}

/**
 * Continuations a later token can add to a decoded text (before post-processing): a wordpiece glued to
 * the last word ("##x": a letter, a Chinese character, an apostrophe piece, punctuation) or a new word
 * (a letter, a Chinese character, punctuation that clean-up glues to the word before, an apostrophe and
 * the contractions clean-up joins). What every one of them leaves unchanged is printed; the rest waits.
 */
const CONTINUATIONS = ['a', '中', 's', "'t", '.', ' a', ' 中', ' .', ' ,', ' ?', ' !', " '", " ' a", ' t', ' s', " 's", " 'm", " 've", " 're", " n't", ' n', ' ##']

/**
 * Streams a text that is re-rendered from the whole sequence after each token: `raw(ids)` decodes, and
 * `post` post-processes the decoded text (ModelScope: clean-up, then no spaces between Chinese chars).
 * push(ids) returns the new stable part: the longest prefix of the current text that the text with any
 * of CONTINUATIONS appended shares (a trailing partial wordpiece, a space that may vanish, the last
 * Chinese/non-Chinese junction are held back). end(final) returns the rest of the final text.
 */
export class TextStream {
  private shown = ''
  constructor(
    private readonly raw: (ids: number[]) => string,
    private readonly post: (decoded: string) => string = (s) => s,
  ) {}

  push(ids: number[]): string {
    const r = this.raw(ids)
    const text = this.post(r)
    if (!text.startsWith(this.shown)) return '' // cannot happen by the continuations; hold everything until end()
    let n = text.length
    for (const c of CONTINUATIONS) {
      const other = this.post(r + c)
      let i = this.shown.length
      const m = Math.min(n, other.length)
      while (i < m && text.charCodeAt(i) === other.charCodeAt(i)) i++
      n = i
      if (n <= this.shown.length) return ''
    }
    const code = text.charCodeAt(n - 1)
    if (code >= 0xd800 && code <= 0xdbff) n-- // never half a surrogate pair
    if (n <= this.shown.length) return ''
    const out = text.slice(this.shown.length, n)
    this.shown = text.slice(0, n)
    return out
  }

  /** The rest of `final` after what was shown (which is a prefix of it). */
  end(final: string): string {
    const rest = final.startsWith(this.shown) ? final.slice(this.shown.length) : final.slice(Math.min(this.shown.length, final.length))
    this.shown = ''
    return rest
  }
}
