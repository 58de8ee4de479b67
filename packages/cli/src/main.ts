#!/usr/bin/env node
// refgpt: the command line. Each command is a module with `help` and `run(argv)`;
// errors a user can act on print as one line (no stack trace unless --verbose) and exit non-zero.

import { RefgptError, UsageError } from '@refgpt/core'
import * as bench from './commands/bench.js'
import * as chat from './commands/chat.js'
import * as evaluate from './commands/eval.js'
import * as generate from './commands/generate.js'
import * as golden from './commands/golden.js'
import * as inspect from './commands/inspect.js'
import * as step from './commands/step.js'
import * as tokenize from './commands/tokenize.js'
import * as train from './commands/train.js'
import * as worker from './commands/worker.js'

interface Command {
  summary: string
  help: string
  run(argv: string[]): Promise<void>
}

const COMMANDS: Record<string, Command> = { generate, chat, tokenize, inspect, step, golden, bench, train, eval: evaluate, worker }

const HELP = `refgpt — GPT-2, GPT-Neo and GPT-J from Hugging Face folders (and ModelScope's Chinese GPT-3), in TypeScript

Usage: refgpt <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join('\n')}

Run \`refgpt <command> --help\` for a command's options.
Without --model, generate and tokenize use the tiny GPT-2 that ships with refgpt (random weights).
`

export async function main(argv: string[]): Promise<number> {
  const verbose = argv.includes('--verbose')
  const [name, ...rest] = argv
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      process.stdout.write(HELP)
      return name === undefined ? 2 : 0
    }
    const command = COMMANDS[name]
    if (!command)
      throw new UsageError({ what: `unknown command ${JSON.stringify(name)}`, expected: `one of ${Object.keys(COMMANDS).join(', ')}`, hint: 'see `refgpt --help`' })
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(command.help)
      return 0
    }
    await command.run(rest)
    return 0
  } catch (e) {
    return report(e, verbose)
  }
}

/** One line on stderr; exit 2 for usage errors, 1 for everything else. */
function report(e: unknown, verbose: boolean): number {
  if (e instanceof RefgptError) {
    process.stderr.write(`refgpt: error: ${e.message}\n`)
    if (verbose && e.stack) process.stderr.write(e.stack + '\n')
    return e instanceof UsageError ? 2 : 1
  }
  const err = e as NodeJS.ErrnoException
  const msg = String(err?.message ?? e).split('\n')[0]
  process.stderr.write(`refgpt: error: ${msg}${verbose ? '' : ' (run with --verbose for details)'}\n`)
  if (verbose && err?.stack) process.stderr.write(err.stack + '\n')
  return 1
}

// stdout closed early (refgpt generate | head): stop quietly, as CLI tools do
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0)
  throw e
})

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
})
