// refgpt tokenize: text -> token ids with a model folder's tokenizer.

import { readFileSync } from 'node:fs'
import { UsageError } from '@refgpt/core'
import { parse } from '../args.js'
import { DEFAULT_MODEL, requireTokenizer } from './common.js'

export const summary = 'print the token ids of a text (the model folder\'s tokenizer)'

export const help = `Usage: refgpt tokenize [--model DIR] [--json] (TEXT | --stdin)

Encodes TEXT (or standard input) with the folder's tokenizer (tokenizer.json, or vocab.json + merges.txt)
and prints the ids comma-separated, ready for \`refgpt generate --prompt-ids\`.

Options:
  -m, --model DIR    model or tokenizer folder (default: the GPT-2 tokenizer shipped with refgpt)
      --stdin        read the text from standard input (all of it, byte for byte)
      --json         print {"ids":[...],"tokens":[...]} (tokens: each id's piece, decoded)
      --follow-symlinks  follow links that lead out of the folder (default: refused)
      --verbose      show stack traces on errors
  -h, --help         this help
`

export async function run(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse('tokenize', argv, {
    model: { type: 'string', short: 'm' },
    stdin: { type: 'boolean' },
    json: { type: 'boolean' },
    'follow-symlinks': { type: 'boolean' },
  })
  if (v.stdin && positionals.length > 0)
    throw new UsageError({ where: 'refgpt tokenize', what: 'give the text either as an argument or with --stdin, not both', hint: 'see `refgpt tokenize --help`' })
  if (!v.stdin && positionals.length === 0)
    throw new UsageError({ where: 'refgpt tokenize', what: 'no text to tokenize', hint: 'pass TEXT or --stdin' })
  const text = v.stdin ? readFileSync(0, 'utf8') : positionals.join(' ')
  const tok = requireTokenizer((v.model as string | undefined) ?? DEFAULT_MODEL, 'tokenize', { followSymlinks: v['follow-symlinks'] === true })
  const ids = tok.encode(text)
  if (v.json) process.stdout.write(JSON.stringify({ ids, tokens: ids.map((id) => tok.decode([id])) }) + '\n')
  else process.stdout.write(ids.join(',') + '\n')
}
