// Tokenizer loading: find the tokenizer files in a model folder and build the tokenizer.

import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { TokenizerError } from '../errors.js'
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
export { StreamDecoder, checkTokenId } from './types.js'
export { WordPieceTokenizer, fromVocabTxt, parseVocabTxt, isChineseChar, type WordPieceOptions } from './wordpiece.js'
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
  type AddedToken,
  type BpeSpec,
  type VocabMergesOptions,
} from './bpe.js'

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (e) {
    throw new TokenizerError(
      { what: 'cannot read file', where: path, found: e instanceof Error ? e.message : String(e) },
      { cause: e },
    )
  }
}

/**
 * Loads the tokenizer of a model folder. Like transformers' AutoTokenizer (which prefers the fast
 * tokenizer), `tokenizer.json` is used when present; otherwise `vocab.json` + `merges.txt`, with the
 * added/special tokens of `tokenizer_config.json` (added_tokens_decoder, bos/eos/unk/...) and
 * `special_tokens_map.json` when those exist. '<|endoftext|>' is special whenever the vocab has it.
 */
export function loadTokenizer(dir: string): Tokenizer {
  let isDir = false
  try {
    isDir = statSync(dir).isDirectory()
  } catch {
    throw new TokenizerError({ what: 'tokenizer folder not found', where: dir, hint: 'pass the model folder that holds tokenizer.json or vocab.json + merges.txt' })
  }
  if (!isDir) {
    throw new TokenizerError({ what: 'not a folder', where: dir, expected: 'a model folder', hint: 'pass the folder, not a file inside it' })
  }

  const tokenizerJson = join(dir, 'tokenizer.json')
  if (existsSync(tokenizerJson)) return fromTokenizerJson(readText(tokenizerJson), tokenizerJson)

  const vocabTxt = join(dir, 'vocab.txt')
  if (existsSync(vocabTxt) && !existsSync(join(dir, 'vocab.json'))) {
    // BERT WordPiece (ModelScope's Chinese GPT-3): vocab.txt + optional tokenizer_config.json
    const configPath = join(dir, 'tokenizer_config.json')
    const config = existsSync(configPath) ? parseJsonFile(readText(configPath), configPath) : {}
    const obj = typeof config === 'object' && config !== null && !Array.isArray(config) ? (config as Record<string, unknown>) : {}
    return fromVocabTxt(readText(vocabTxt), vocabTxt, obj)
  }

  const vocabPath = join(dir, 'vocab.json')
  const mergesPath = join(dir, 'merges.txt')
  const hasVocab = existsSync(vocabPath)
  const hasMerges = existsSync(mergesPath)
  if (hasVocab && hasMerges) {
    return fromVocabMerges(readText(vocabPath), readText(mergesPath), { vocab: vocabPath, merges: mergesPath }, readSideFiles(dir))
  }
  if (hasVocab || hasMerges) {
    throw new TokenizerError({
      what: `found ${hasVocab ? 'vocab.json' : 'merges.txt'} but not ${hasVocab ? 'merges.txt' : 'vocab.json'}`,
      where: dir,
      expected: 'both vocab.json and merges.txt (or a tokenizer.json)',
      hint: 'copy the missing file from the model repository',
    })
  }
  let found: string
  try {
    const names = readdirSync(dir)
    found = names.length === 0 ? 'an empty folder' : names.slice(0, 8).join(', ') + (names.length > 8 ? ', ...' : '')
  } catch {
    found = 'an unreadable folder'
  }
  throw new TokenizerError({
    what: 'no tokenizer files',
    where: dir,
    expected: 'tokenizer.json, vocab.json + merges.txt, or vocab.txt (WordPiece)',
    found,
    hint: "download the model's tokenizer files (e.g. from its Hugging Face repository) into this folder",
  })
}

/** Added and special tokens from tokenizer_config.json and special_tokens_map.json (both optional). */
function readSideFiles(dir: string): VocabMergesOptions {
  const addedTokens: AddedToken[] = []
  const specialTokens: string[] = []
  let unkToken: string | undefined

  const configPath = join(dir, 'tokenizer_config.json')
  if (existsSync(configPath)) {
    const config = parseJsonFile(readText(configPath), configPath)
    if (typeof config === 'object' && config !== null && !Array.isArray(config)) {
      const decoder = (config as Record<string, unknown>)['added_tokens_decoder']
      if (typeof decoder === 'object' && decoder !== null && !Array.isArray(decoder)) {
        for (const [id, t] of Object.entries(decoder)) {
          const where = `${configPath}: added_tokens_decoder[${JSON.stringify(id)}]`
          addedTokens.push(parseAddedToken(t, where, /^\d+$/.test(id) ? Number(id) : NaN))
        }
      }
      specialTokens.push(...specialTokenStrings(config))
      const unk = specialTokenStrings({ unk_token: (config as Record<string, unknown>)['unk_token'] })
      if (unk.length) unkToken = unk[0]
    }
  }
  const mapPath = join(dir, 'special_tokens_map.json')
  if (existsSync(mapPath)) specialTokens.push(...specialTokenStrings(parseJsonFile(readText(mapPath), mapPath)))
  return { addedTokens, specialTokens, ...(unkToken !== undefined ? { unkToken } : {}) }
}
