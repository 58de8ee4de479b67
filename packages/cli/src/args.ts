// Argument parsing on node:util parseArgs, with refgpt's one-line usage errors.

import { parseArgs, type ParseArgsConfig } from 'node:util'
import { UsageError } from '@refgpt/core'

export type Options = NonNullable<ParseArgsConfig['options']>

/** Options every command accepts. */
export const COMMON: Options = {
  help: { type: 'boolean', short: 'h' },
  verbose: { type: 'boolean' },
}

export function parse(command: string, argv: string[], options: Options) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON, ...options }, allowPositionals: true, strict: true })
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0]
    throw new UsageError({ where: `refgpt ${command}`, what: msg.replace(/\.$/, ''), hint: `see \`refgpt ${command} --help\`` })
  }
}

/** A non-negative integer option. */
export function intOption(command: string, name: string, value: string | undefined, def: number, min = 0): number {
  if (value === undefined) return def
  const n = Number(value)
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min)
    throw new UsageError({ where: `refgpt ${command}`, what: `bad --${name}`, expected: `an integer >= ${min}`, found: JSON.stringify(value) })
  return n
}

/** "1,2,3" or "1 2 3" -> [1, 2, 3]. */
export function idList(command: string, name: string, value: string): number[] {
  const parts = value.split(/[\s,]+/).filter((s) => s.length > 0)
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p)))
    throw new UsageError({ where: `refgpt ${command}`, what: `bad --${name}`, expected: 'comma-separated token ids such as 15496,11,314', found: JSON.stringify(value) })
  return parts.map(Number)
}
