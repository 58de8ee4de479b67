// A model folder as the loaders see it: named files, read whole (configs, tokenizer files: capped) or by
// range (weights). platform.ts gives one over a folder on disk (every read through files.ts: real paths
// inside the folder, size caps); browser.ts gives one over picked files and one over a base URL.

import type { ErrorDetails, RefgptError } from '../errors.js'
import type { RandomAccess } from './access.js'

/** A refgpt error class (CheckpointError, ConfigError, TokenizerError, ...): readers report in their caller's. */
export type ErrorClass = new (details: ErrorDetails, options?: { cause?: unknown }) => RefgptError

/** Caps on the files refgpt reads whole (checkpoint data is read by range and bounded by its headers). */
export const FILE_CAPS = {
  /** config.json, generation_config.json, configuration.json, indexes, tokenizer_config.json, ... */
  json: 256 << 20,
  /** tokenizer.json (GPT-2's is 1.4 MB; the largest public ones are tens of MB) */
  tokenizerJson: 256 << 20,
  /** vocab.json, merges.txt, vocab.txt */
  vocab: 64 << 20,
} as const

export interface ModelFolder {
  /** How messages name the folder (a path, a URL, "picked files"); ModelInfo.dir. */
  readonly dir: string
  /** How messages name file `name` of the folder (path.join(dir, name) on disk). */
  where(name: string): string
  /** Whether the folder has something called `name` (on disk: existsSync; a dangling link counts as missing). */
  has(name: string): boolean
  /** Whether `name` is a regular file of the folder. */
  isFile(name: string): boolean
  /** Up to `limit` names in the folder, in the order the source lists them (for hints in messages); null when it cannot be listed. */
  names(limit?: number): string[] | null
  /**
   * The folder-relative name of a file that an index names (a shard in weight_map), or null when the name
   * leads outside the folder (absolute, `..`, a NUL).
   */
  child(name: string): string | null
  /** The identity of the file really read (on disk: its real path; a link out of the folder is refused unless followed). */
  locate(name: string, errorClass: ErrorClass): string
  /** Opens a weights file for range reads; `real` is what locate() returned. */
  open(name: string, real: string): RandomAccess
  /** The bytes of a file of at most `max` bytes (`what` names it in errors); `where` is how errors about its content name it. */
  readFile(name: string, what: string, max: number, errorClass: ErrorClass): { bytes: Uint8Array; where: string }
  /** readFile as UTF-8 text, a byte order mark dropped; `fatal`: invalid UTF-8 is an error, else U+FFFD. */
  readText(name: string, what: string, max: number, errorClass: ErrorClass, fatal?: boolean): { text: string; where: string }
}

/** Whether `v` is a ModelFolder (rather than a path or a model id). */
export function isModelFolder(v: unknown): v is ModelFolder {
  return typeof v === 'object' && v !== null && typeof (v as ModelFolder).open === 'function' && typeof (v as ModelFolder).readText === 'function'
}

/**
 * UTF-8 text of bytes read from `where`: a leading byte order mark dropped; `fatal`: invalid UTF-8 is an
 * error (else replaced by U+FFFD, as Python's open(..., errors='replace') would).
 */
export function decodeText(bytes: Uint8Array, what: string, where: string, errorClass: ErrorClass, fatal = false): string {
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal }).decode(bytes)
  } catch {
    throw new errorClass({ what: `${what} is not valid UTF-8`, where })
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
}
