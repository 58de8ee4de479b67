#!/usr/bin/env node
// refgpt: the command line. Each command is a module with `help` and `run(argv)`;
// errors a user can act on print as one line (no stack trace unless --verbose) and exit non-zero.

import { readFileSync } from 'node:fs'
import { DEFAULT_MODEL_NAMES, RefgptError, UsageError } from '@refgpt/core'
import * as bench from './commands/bench.js'
import * as chat from './commands/chat.js'
import * as evaluate from './commands/eval.js'
import * as exportCmd from './commands/export.js'
import * as generate from './commands/generate.js'
import * as golden from './commands/golden.js'
import * as inspect from './commands/inspect.js'
import * as serve from './commands/serve.js'
import * as step from './commands/step.js'
import * as tokenize from './commands/tokenize.js'
import * as train from './commands/train.js'
import * as worker from './commands/worker.js'
import { errorLine } from './progress.js'

interface Command {
  summary: string
  help: string
  run(argv: string[]): Promise<void>
}

const COMMANDS: Record<string, Command> = { generate, chat, serve, tokenize, inspect, step, golden, bench, train, eval: evaluate, export: exportCmd, worker }

const HELP = `refgpt — GPT-2, GPT-Neo and GPT-J from Hugging Face folders (and ModelScope's Chinese GPT-3), in TypeScript

Usage: refgpt <command> [options]
       refgpt --version

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join('\n')}

Run \`refgpt <command> --help\` for a command's options.
Without --model, generate, step, inspect, golden export, eval and tokenize use the small English GPT-Neo
${DEFAULT_MODEL_NAMES.en} and chat the small Chinese GPT-3 ${DEFAULT_MODEL_NAMES.zh}: models refgpt trained on
Debian's fortunes, which ship with it (--lang en|zh picks one); bench needs --shape or --model, train --model.
While a model loads, a progress bar shows on stderr when it is a terminal. Colour (the error: prefix)
only on a terminal; NO_COLOR=1 turns it off.
`

/** The CLI's version: packages/cli/package.json, which ships beside dist/ and src/. */
export function version(): string {
  try {
    return String(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version)
  } catch {
    return 'unknown'
  }
}

/** Whether one of `flags` is among the arguments (before a `--`, after which everything is a positional). */
const has = (args: string[], ...flags: string[]) => {
  const end = args.indexOf('--')
  return (end < 0 ? args : args.slice(0, end)).some((a) => flags.includes(a))
}

export async function main(argv: string[]): Promise<number> {
  const verbose = has(argv, '--verbose')
  const [name, ...rest] = argv
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      process.stdout.write(HELP)
      return name === undefined ? 2 : 0
    }
    if (name === '--version' || name === '-V') {
      process.stdout.write(`refgpt ${version()}\n`)
      return 0
    }
    const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined
    if (!command)
      throw new UsageError({ what: `unknown command ${JSON.stringify(name)}`, expected: `one of ${Object.keys(COMMANDS).join(', ')}`, hint: 'see `refgpt --help`' })
    if (has(rest, '--help', '-h')) {
      process.stdout.write(command.help)
      return 0
    }
    if (has(rest, '--version', '-V')) {
      process.stdout.write(`refgpt ${version()}\n`)
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
    process.stderr.write(errorLine(e.message))
    if (verbose && e.stack) process.stderr.write(e.stack + '\n')
    return e instanceof UsageError ? 2 : 1
  }
  const err = e as NodeJS.ErrnoException
  if (stdoutErrors.has(err)) {
    if (err.code === 'EPIPE') return 0 // as the 'error' event below
    process.stderr.write(errorLine(outputError(err)))
    return 1
  }
  const msg = String(err?.message ?? e).split('\n')[0]
  process.stderr.write(errorLine(`${msg}${verbose ? '' : ' (run with --verbose for details)'}`))
  if (verbose && err?.stack) process.stderr.write(err.stack + '\n')
  return 1
}

/** "cannot write the output: no space left on device (ENOSPC)" from a failed write to stdout. */
function outputError(e: NodeJS.ErrnoException): string {
  // libuv's "ENOSPC: no space left on device, write" -> "no space left on device"
  const text = String(e?.message ?? e).split('\n')[0].replace(/^[A-Z0-9_]+: /, '').replace(/, (write|writev)\b.*$/, '')
  return `cannot write the output: ${text}${e?.code && !text.includes(e.code) ? ` (${e.code})` : ''}`
}

// Errors of writing to stdout, whether the write throws or its stream reports them later ('error' event).
const stdoutErrors = new WeakSet<object>()
const writeStdout = process.stdout.write
process.stdout.write = function (this: NodeJS.WriteStream, ...args: unknown[]) {
  try {
    return (writeStdout as (...a: unknown[]) => boolean).apply(this, args)
  } catch (e) {
    if (typeof e === 'object' && e !== null) stdoutErrors.add(e)
    throw e
  }
} as typeof process.stdout.write
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  // stdout closed early (refgpt generate | head): stop quietly, as CLI tools do
  if (e.code === 'EPIPE') process.exit(0)
  // a full disk, a device error (refgpt generate > /dev/full): one line, exit 1
  process.stderr.write(errorLine(outputError(e)))
  process.exit(1)
})

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
})
