// Argument parsing on node:util parseArgs, with refgpt's one-line usage errors.
//
// parseArgs runs non-strict (it then keeps every token) and the checks strict mode would make are made
// here, with messages of one line: an unknown option (with the closest known one), an option without its
// value, a value given to a flag. One difference: a negative number is an option's value (`-n -1`,
// `--temperature -0.5`), which strict parseArgs refuses as ambiguous; the option then validates it.

import { parseArgs, type ParseArgsConfig } from 'node:util'
import { UsageError } from '@refgpt/core'

export type Options = NonNullable<ParseArgsConfig['options']>

/** Options every command accepts (main.ts answers --help and --version before a command parses). */
export const COMMON: Options = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
  verbose: { type: 'boolean' },
}

/** A negative number: -1, -0.5, -.5, -1e-3. */
const NEGATIVE_NUMBER = /^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i
/** Something that starts like a negative number (-1, -.5, -1G): never an option (no option is a digit), so a value. */
const NUMBER_LIKE = /^-\.?\d/

interface Token {
  kind: 'option' | 'positional' | 'option-terminator'
  index: number
  name?: string
  rawName?: string
  value?: string
  inlineValue?: boolean
}

export function parse(command: string, argv: string[], options: Options) {
  const all: Options = { ...COMMON, ...options }
  const where = `refgpt ${command}`
  const hint = `see \`refgpt ${command} --help\``
  const longOf = (short: string) => Object.keys(all).find((k) => all[k].short === short)
  const shown = (raw: string, name: string) => (raw.startsWith('--') ? raw : `${raw} (--${name})`)

  // a string option followed by a negative number (or anything starting like one: -1G) takes it as its value: --name=-1 for parseArgs
  const args: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') {
      args.push(...argv.slice(i))
      break
    }
    const name = /^--[^=]+$/.test(a) ? a.slice(2) : /^-[^-]$/.test(a) ? longOf(a[1]) : undefined
    if (name !== undefined && all[name]?.type === 'string' && i + 1 < argv.length && NUMBER_LIKE.test(argv[i + 1])) {
      args.push(`--${name}=${argv[++i]}`)
      continue
    }
    args.push(a)
  }

  let parsed
  try {
    parsed = parseArgs({ args, options: all, allowPositionals: true, strict: false, tokens: true })
  } catch (e) {
    // non-strict parseArgs throws only on a bad option table (a bug here), never on what the user typed
    throw new UsageError({ where, what: String((e as Error).message).split('\n')[0].replace(/\.$/, ''), hint })
  }
  for (const t of parsed.tokens as Token[]) {
    if (t.kind !== 'option') continue
    const raw = t.rawName!, name = t.name!
    const spec = Object.hasOwn(all, name) ? all[name] : undefined
    if (!spec) {
      const arg = args[t.index] ?? raw
      const guess = raw.startsWith('--') ? closest(name, Object.keys(all)) : undefined
      const negative = NEGATIVE_NUMBER.test(arg)
      // a short option inside a group (-xvf) is named with its group
      const what = negative ? `unknown option ${arg}` : raw.startsWith('--') || arg === raw ? `unknown option ${raw}` : `unknown option ${raw} (in ${arg})`
      throw new UsageError({
        where,
        what: `${what}${guess ? ` (did you mean --${guess}?)` : ''}`,
        hint: negative ? `an argument that starts with "-" goes after \`--\` (refgpt ${command} -- ${arg}), an option's value as --OPTION=${arg}` : hint,
      })
    }
    if (spec.type === 'string') {
      if (t.value === undefined) throw new UsageError({ where, what: `option ${shown(raw, name)} needs a value`, hint })
      if (!t.inlineValue && t.value.length > 1 && t.value.startsWith('-'))
        throw new UsageError({
          where,
          what: `option ${shown(raw, name)} needs a value`,
          found: `the option ${JSON.stringify(t.value)}`,
          hint: `a value that starts with "-" is written --${name}=${t.value}`,
        })
    } else if (t.value !== undefined) {
      throw new UsageError({ where, what: `option ${shown(raw, name)} takes no value`, found: JSON.stringify(t.value), hint: `write ${raw} alone` })
    }
  }
  return { values: parsed.values, positionals: parsed.positionals }
}

/** The known option closest to an unknown one: one it begins, or one a few edits away; undefined when none is close. */
export function closest(name: string, known: string[]): string | undefined {
  const prefixed = known.filter((k) => k.startsWith(name))
  if (name.length >= 3 && prefixed.length === 1) return prefixed[0]
  let best: string | undefined, bestD = Infinity
  for (const k of known) {
    const d = distance(name, k)
    if (d < bestD) (best = k), (bestD = d)
  }
  const limit = name.length <= 3 ? 1 : name.length <= 6 ? 2 : 3
  return bestD <= limit ? best : undefined
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours. */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  }
  return d[a.length][b.length]
}

/** A non-negative integer option. */
export function intOption(command: string, name: string, value: string | undefined, def: number, min = 0): number {
  if (value === undefined) return def
  const n = Number(value)
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min)
    throw new UsageError({ where: `refgpt ${command}`, what: `bad --${name}`, expected: `an integer >= ${min}`, found: JSON.stringify(value) })
  return n
}

/** "1,2,3" or "1 2 3" -> [1, 2, 3]; an empty element ("1,,2", "1,") is refused, not dropped. */
export function idList(command: string, name: string, value: string): number[] {
  const bad = (why?: string) =>
    new UsageError({ where: `refgpt ${command}`, what: `bad --${name}${why ? `: ${why}` : ''}`, expected: 'comma-separated token ids such as 15496,11,314', found: JSON.stringify(value) })
  const trimmed = value.trim()
  if (trimmed === '') throw bad()
  // separators: a comma (with spaces around it or not) or spaces; two commas in a row leave an empty element
  const parts = trimmed.split(/\s*,\s*|\s+/)
  if (parts.some((p) => p === '')) throw bad('empty element')
  if (parts.some((p) => !/^\d+$/.test(p))) throw bad()
  return parts.map(Number)
}
