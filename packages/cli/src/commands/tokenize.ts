// refgpt tokenize: text -> token ids with a model folder's tokenizer.

import { readFileSync } from 'node:fs'
import { DEFAULT_MODEL_NAMES, UsageError } from '@refgpt/core'
import { parse } from '../args.js'
import { modelOptions, requireTokenizer } from './common.js'

export const summary = 'print the token ids of a text (the model folder\'s tokenizer)'

export const help = `Usage: refgpt tokenize [--model DIR | --lang en|zh] [--json] (TEXT | --stdin)

Encodes TEXT (or standard input) with the folder's tokenizer (tokenizer.json, vocab.json + merges.txt,
or a ModelScope vocab.txt) and prints the ids comma-separated, ready for \`refgpt generate --prompt-ids\`.

Options:
  -m, --model DIR    model or tokenizer folder (default: the tokenizer of the English default model
                     ${DEFAULT_MODEL_NAMES.en}: GPT-2's byte-level BPE)
      --lang en|zh   without --model: the English default model's tokenizer or the Chinese one's
                     (${DEFAULT_MODEL_NAMES.zh}, a character vocab.txt)
      --stdin        read the text from standard input (all of it, byte for byte)
      --json         print {"ids":[...],"tokens":[...]} (tokens: each id's piece, decoded)
      --follow-symlinks  follow links that lead out of the folder (default: refused)
      --verbose      show stack traces on errors
  -h, --help         this help
  -V, --version      print refgpt's version
`

export async function run(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse('tokenize', argv, {
    model: { type: 'string', short: 'm' },
    lang: { type: 'string' },
    stdin: { type: 'boolean' },
    json: { type: 'boolean' },
    'follow-symlinks': { type: 'boolean' },
  })
  const { dir } = modelOptions('tokenize', v) // --model, or the --lang default model (checked)
  if (v.stdin && positionals.length > 0)
    throw new UsageError({ where: 'refgpt tokenize', what: 'give the text either as an argument or with --stdin, not both', hint: 'see `refgpt tokenize --help`' })
  if (!v.stdin && positionals.length === 0)
    throw new UsageError({ where: 'refgpt tokenize', what: 'no text to tokenize', hint: 'pass TEXT or --stdin' })
  const text = v.stdin ? readFileSync(0, 'utf8') : positionals.join(' ')
  const tok = requireTokenizer(dir, 'tokenize', { followSymlinks: v['follow-symlinks'] === true })
  const ids = tok.encode(text)
  if (v.json) process.stdout.write(JSON.stringify({ ids, tokens: ids.map((id) => tok.decode([id])) }) + '\n')
  else process.stdout.write(ids.join(',') + '\n')
}
