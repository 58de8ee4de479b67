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

/** Quote a value for an error message, shortened so that a message stays one readable line. */
export function show(v: unknown, max = 80): string {
  let s: string
  try {
    s = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v)
  } catch {
    s = String(v)
  }
  return s.length > max ? s.slice(0, max - 1) + '…' : s
}
