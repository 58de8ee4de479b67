// Tokenizer loading: find the tokenizer files in a model folder and build the tokenizer. Every file is
// read through the folder (io/folder.ts); on disk through io/files.ts: it must be a regular file no larger
// than its cap, and a symlink that leads out of the model folder is refused unless `followSymlinks`.

import { TokenizerError, show } from '../errors.js'
import { settle } from '../io/access.js'
import { FILE_CAPS, isModelFolder, type ModelFolder } from '../io/folder.js'
import { tokenizerFolder } from '../io/platform.js'
import {
  fromTokenizerJson,
  fromVocabMerges,
  parseAddedToken,
  parseJsonFile,
  specialTokenStrings,
  type AddedToken,
  type VocabMergesOptions,
} from './bpe.js'
import type { Tokenizer } from './types.js'
import { fromVocabTxt } from './wordpiece.js'

export type { Tokenizer, DecodeOptions } from './types.js'
export { StreamDecoder, TextStream, checkTokenId } from './types.js'
export { WordPieceTokenizer, fromVocabTxt, parseVocabTxt, isChineseChar, type WordPieceOptions } from './wordpiece.js'
export { LiteralMatcher } from './matcher.js'
export {
  Gpt2BpeTokenizer,
  bytesToUnicode,
  cleanUpTokenization,
  pretokenize,
  GPT2_PRETOKENIZE_PATTERN,
  fromTokenizerJson,
  fromVocabMerges,
  parseMergesTxt,
  parseVocab,
  MAX_TOKEN_ID,
  MAX_VOCAB_ENTRIES,
  MAX_MERGES,
  MAX_ADDED_TOKENS,
  MAX_ADDED_TOKEN_CHARS,
  MAX_NORMALIZER_DEPTH,
  MAX_NORMALIZERS,
  type AddedToken,
  type BpeSpec,
  type VocabMergesOptions,
} from './bpe.js'

export interface LoadTokenizerOptions {
  /** Follow symlinks that lead outside the model folder (default false: refused). */
  followSymlinks?: boolean
  /** For a model id: the revision in the Hugging Face / ModelScope cache (see resolveModelDir). */
  revision?: string
}

/** Text of a file, invalid UTF-8 replaced by U+FFFD (as readFileSync(.., 'utf8') did), a BOM dropped. */
function readText(folder: ModelFolder, name: string, max: number): string {
  return folder.readText(name, name, max, TokenizerError).text
}

/**
 * Loads the tokenizer of a model folder, or of a model id in the Hugging Face / ModelScope caches
 * (resolveModelDir). Like transformers' AutoTokenizer (which prefers the fast tokenizer),
 * `tokenizer.json` is used when present; otherwise `vocab.json` + `merges.txt`, with the added/special
 * tokens of `tokenizer_config.json` (added_tokens_decoder, bos/eos/unk/...) and
 * `special_tokens_map.json` when those exist. '<|endoftext|>' is special whenever the vocab has it.
 */
export function loadTokenizer(dir: string | ModelFolder, opts: LoadTokenizerOptions = {}): Tokenizer {
  if (isModelFolder(dir)) return tokenizerIn(dir)
  if (typeof dir !== 'string' || dir === '') {
    throw new TokenizerError({ what: 'loadTokenizer() needs the path of a model folder', found: dir === '' ? 'an empty string' : dir === null ? 'null' : typeof dir })
  }
  opts ??= {}
  // a model id (no such folder here): the folder in the Hugging Face / ModelScope cache
  return tokenizerIn(tokenizerFolder(dir, opts))
}

/** loadTokenizer for a folder whose files may have to be fetched first (a page's files or URL: io/browser.ts). */
export function loadTokenizerAsync(folder: string | ModelFolder, opts: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  return settle(() => loadTokenizer(folder, opts))
}

function tokenizerIn(folder: ModelFolder): Tokenizer {
  const dir = folder.dir
  const has = (name: string) => folder.has(name)
  if (has('tokenizer.json')) {
    return fromTokenizerJson(readText(folder, 'tokenizer.json', FILE_CAPS.tokenizerJson), folder.where('tokenizer.json'))
  }

  const hasVocab = has('vocab.json')
  if (has('vocab.txt') && !hasVocab) {
    // BERT WordPiece (ModelScope's Chinese GPT-3): vocab.txt + optional tokenizer_config.json.
    // transformers reads vocab.txt with open(.., encoding='utf-8'): a BOM stays part of the first token,
    // and (as before) invalid UTF-8 becomes U+FFFD instead of an error.
    const configPath = folder.where('tokenizer_config.json')
    const config = has('tokenizer_config.json') ? parseJsonFile(readText(folder, 'tokenizer_config.json', FILE_CAPS.json), configPath) : {}
    const obj = typeof config === 'object' && config !== null && !Array.isArray(config) ? (config as Record<string, unknown>) : {}
    const { bytes } = folder.readFile('vocab.txt', 'vocab.txt', FILE_CAPS.vocab, TokenizerError)
    return fromVocabTxt(new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes), folder.where('vocab.txt'), obj)
  }

  const hasMerges = has('merges.txt')
  if (hasVocab && hasMerges) {
    const vocabPath = folder.where('vocab.json')
    const mergesPath = folder.where('merges.txt')
    return fromVocabMerges(
      readText(folder, 'vocab.json', FILE_CAPS.vocab),
      readText(folder, 'merges.txt', FILE_CAPS.vocab),
      { vocab: vocabPath, merges: mergesPath },
      readSideFiles(folder),
    )
  }
  if (hasVocab || hasMerges) {
    throw new TokenizerError({
      what: `found ${hasVocab ? 'vocab.json' : 'merges.txt'} but not ${hasVocab ? 'merges.txt' : 'vocab.json'}`,
      where: dir,
      expected: 'both vocab.json and merges.txt (or a tokenizer.json)',
      hint: 'copy the missing file from the model repository',
    })
  }
  throw new TokenizerError({
    what: 'no tokenizer files',
    where: dir,
    expected: 'tokenizer.json, vocab.json + merges.txt, or vocab.txt (WordPiece)',
    found: someNames(folder),
    hint: "download the model's tokenizer files (e.g. from its Hugging Face repository) into this folder",
  })
}

/** The first few names in a folder, quoted, for an error message (reads at most 9 entries). */
function someNames(folder: ModelFolder): string {
  const names = folder.names(9)
  if (names === null) return 'an unreadable folder'
  if (names.length === 0) return 'an empty folder'
  return names.slice(0, 8).map((n) => show(n, 40)).join(', ') + (names.length > 8 ? ', ...' : '')
}

/** Added and special tokens from tokenizer_config.json and special_tokens_map.json (both optional). */
function readSideFiles(folder: ModelFolder): VocabMergesOptions {
  const addedTokens: AddedToken[] = []
  const specialTokens: string[] = []
  let unkToken: string | undefined

  const configPath = folder.where('tokenizer_config.json')
  if (folder.has('tokenizer_config.json')) {
    const config = parseJsonFile(readText(folder, 'tokenizer_config.json', FILE_CAPS.json), configPath)
    if (typeof config === 'object' && config !== null && !Array.isArray(config)) {
      const decoder = (config as Record<string, unknown>)['added_tokens_decoder']
      if (typeof decoder === 'object' && decoder !== null && !Array.isArray(decoder)) {
        for (const id of Object.keys(decoder)) {
          const where = () => `${configPath}: added_tokens_decoder[${show(id, 40)}]`
          addedTokens.push(parseAddedToken((decoder as Record<string, unknown>)[id], where, /^\d+$/.test(id) ? Number(id) : NaN))
        }
      }
      for (const s of specialTokenStrings(config)) specialTokens.push(s)
      const unk = specialTokenStrings({ unk_token: (config as Record<string, unknown>)['unk_token'] })
      if (unk.length) unkToken = unk[0]
    }
  }
  if (folder.has('special_tokens_map.json')) {
    const mapPath = folder.where('special_tokens_map.json')
    for (const s of specialTokenStrings(parseJsonFile(readText(folder, 'special_tokens_map.json', FILE_CAPS.json), mapPath))) specialTokens.push(s)
  }
  return { addedTokens, specialTokens, ...(unkToken !== undefined ? { unkToken } : {}) }
}
