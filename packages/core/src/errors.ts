// Errors that a user can act on. Every refgpt error renders as ONE line:
//   <where>: <what> (expected <expected>, found <found>); hint: <hint>
// so the CLI can print `error.message` without a stack trace and still say everything needed.

export interface ErrorDetails {
  /** What went wrong, e.g. "safetensors header length exceeds the file". */
  what: string
  /** Where: a file path, optionally with a tensor or field name ("model.safetensors: tensor transformer.wte.weight"). */
  where?: string
  expected?: string
  found?: string
  hint?: string
}

export function formatError(d: ErrorDetails): string {
  let s = d.where ? `${d.where}: ${d.what}` : d.what
  const ef: string[] = []
  if (d.expected !== undefined) ef.push(`expected ${d.expected}`)
  if (d.found !== undefined) ef.push(`found ${d.found}`)
  if (ef.length) s += ` (${ef.join(', ')})`
  if (d.hint) s += `; hint: ${d.hint}`
  return s.replace(/\s*\n\s*/g, ' ')
}

export class RefgptError extends Error {
  readonly details: ErrorDetails
  constructor(details: ErrorDetails, options?: { cause?: unknown }) {
    super(formatError(details), options)
    this.details = details
    this.name = new.target.name
  }
}

/** A checkpoint file (safetensors, torch zip, index) is missing, malformed or unsafe. */
export class CheckpointError extends RefgptError {}
/** config.json / generation_config.json has a missing, wrong or unsupported field. */
export class ConfigError extends RefgptError {}
/** A tokenizer file is missing or malformed, or an id cannot be decoded. */
export class TokenizerError extends RefgptError {}
/** A caller (CLI user or API user) passed an invalid argument. */
export class UsageError extends RefgptError {}

/** Not enough memory for what was asked: the estimate and what is available are in the message. */
export class ResourceError extends RefgptError {}

/**
 * Quote a value for an error message, shortened so that a message stays one readable line. Bounded and
 * iterative: it writes at most `max` characters whatever the value (nested 100,000 deep, a million keys,
 * cycles), never recursing and never calling JSON.stringify or toString on untrusted input.
 */
export function show(v: unknown, max = 80): string {
  let out = ''
  // a stack of what is left to write: values, or literal text (closing brackets, separators)
  const todo: { v?: unknown; text?: string }[] = [{ v }]
  const seen = new Set<object>()
  while (todo.length > 0 && out.length <= max) {
    const t = todo.pop()!
    if (t.text !== undefined) {
      out += t.text
      continue
    }
    const x = t.v
    if (typeof x === 'string') out += quote(x.length > max ? x.slice(0, max + 1) : x)
    else if (x === null || typeof x === 'number' || typeof x === 'boolean') out += String(x)
    else if (x === undefined) out += 'undefined'
    else if (typeof x === 'bigint') out += `${x}n`
    else if (typeof x === 'function' || typeof x === 'symbol') out += `[${typeof x}]`
    else if (seen.has(x)) out += '[circular]'
    else if (ArrayBuffer.isView(x)) out += `[${x.constructor.name} of ${(x as unknown as { length?: number }).length ?? x.byteLength}]`
    else {
      seen.add(x)
      const arr = Array.isArray(x)
      // at most as many members as could still be written (each takes at least one character)
      const keys: string[] = []
      if (arr) for (let i = 0; i < x.length && i <= max; i++) keys.push(String(i))
      else for (const k in x as object) if (Object.hasOwn(x as object, k) && keys.push(k) > max) break
      out += arr ? '[' : '{'
      todo.push({ text: arr ? ']' : '}' })
      for (let i = keys.length - 1; i >= 0; i--) {
        const val = (x as Record<string, unknown>)[keys[i]]
        todo.push({ v: val })
        if (!arr) todo.push({ text: quote(keys[i].length > max ? keys[i].slice(0, max) : keys[i]) + ':' })
        if (i > 0) todo.push({ text: ',' })
      }
    }
  }
  return out.length > max ? out.slice(0, max - 1) + '…' : out
}

/** JSON quoting, plus escapes for what JSON leaves raw but a terminal would act on: C1 controls, bidi overrides, line separators. */
function quote(s: string): string {
  return JSON.stringify(s).replace(/[\u0080-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
}
