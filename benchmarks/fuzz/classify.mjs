// How outcomes are named and grouped. A crash's signature is target | error class: message with paths,
// quoted text and numbers blanked | top stack frame (in packages/core, packages/cli or a dependency), so that one bug
// met by a thousand inputs is one line of the summary. Hangs, aborts and memory blow-ups have no stack:
// they are grouped by target and mutation tags (expensiveSignature).

import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))

/** One line of an error's message, a short stack and a signature that groups equal bugs. */
export function describeError(e, target) {
  const isErr = e instanceof Error
  const name = isErr ? e.name || e.constructor?.name || 'Error' : typeof e
  const message = isErr ? String(e.message) : safeString(e)
  const stack = isErr && typeof e.stack === 'string' ? e.stack : ''
  const frames = stack.split('\n').filter((l) => /^\s+at /.test(l)).map((l) => l.trim().replace(ROOT + '/', '').replace('file://', ''))
  // the first frame in the library (or a dependency); a stack overflow in native code (String() of a
  // deep array) has thousands of native frames above it, hence the child's Error.stackTraceLimit
  const at = frames.findIndex((f) => f.includes('packages/core') || f.includes('packages/cli') || f.includes('node_modules'))
  const top = frames[at] ?? frames[0] ?? ''
  const shown = at > 6 ? [...frames.slice(0, 3), `... ${at - 4} frames ...`, ...frames.slice(at - 1, at + 8)] : frames.slice(0, 12)
  const topShort = top.replace(/^at /, '').replace(/:(\d+):\d+(\)?)$/, ':$1$2')
  const norm = message
    .split('\n')[0]
    .replace(/(\/[^\s:'"(),]+)+/g, '<path>')
    .replace(/"[^"]*"|'[^']*'/g, '…')
    .replace(/\d+/g, 'N')
    .slice(0, 120)
  return { name, message: message.slice(0, 2000), stack: shown.join('\n'), top: topShort, signature: `${target}|${name}: ${norm}|${topShort}` }
}

export function safeString(v) {
  try {
    return String(v).slice(0, 500)
  } catch {
    return '(unprintable)'
  }
}

/** How hangs/aborts/memory blow-ups are grouped (and skipped once seen often): target + mutation tags without numbers. */
export function expensiveSignature(spec, tags) {
  return `${spec}|${tags.filter((t) => !t.startsWith('seed.')).map((t) => t.replace(/\d+/g, 'N')).join(',')}`
}

