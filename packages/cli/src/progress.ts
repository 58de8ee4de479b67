// Terminal feedback shared by the commands: colour (only on a terminal; NO_COLOR turns it off),
// the progress bar drawn in place on stderr (loading weights, eval items, training steps), byte sizes.

/** What a bar or a colour is written to: process.stderr / process.stdout, or a fake in tests. */
export interface Out {
  isTTY?: boolean
  columns?: number
  write(s: string): unknown
}

type Env = Record<string, string | undefined>

/**
 * Whether to colour what goes to `out`: only a terminal (not TERM=dumb), and never with NO_COLOR set to
 * any non-empty value (https://no-color.org) or FORCE_COLOR=0. FORCE_COLOR does not turn colour on where
 * it would be off: test runners and CI set it for their own output, and what refgpt writes into a pipe
 * or a log stays plain text.
 */
export function useColor(out: Out, env: Env = process.env): boolean {
  if (env.NO_COLOR || env.FORCE_COLOR === '0' || env.FORCE_COLOR === 'false') return false
  return out.isTTY === true && env.TERM !== 'dumb'
}

const SGR = { red: 31, green: 32, yellow: 33, bold: 1, dim: 2 } as const
export type Style = keyof typeof SGR

/** `text` in `style` when `out` takes colour (useColor), else `text` as it is. */
export function paint(out: Out, style: Style, text: string, env: Env = process.env): string {
  return useColor(out, env) ? `\x1b[${SGR[style]}m${text}\x1b[0m` : text
}

/** The one-line error refgpt prints on stderr: "refgpt: error: MESSAGE", the "error:" in red on a terminal. */
export function errorLine(message: string, out: Out = process.stderr, env: Env = process.env): string {
  return `refgpt: ${paint(out, 'red', 'error:', env)} ${message}\n`
}

/** A warning line: "refgpt: warning: MESSAGE", the "warning:" in yellow on a terminal. */
export function warningLine(message: string, out: Out = process.stderr, env: Env = process.env): string {
  return `refgpt: ${paint(out, 'yellow', 'warning:', env)} ${message}\n`
}

/** "[#########...........]": `fraction` (clamped to 0..1) of `width` cells filled. */
export function bar(fraction: number, width = 24): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0
  const n = Math.round(f * width)
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}]`
}

/** Bytes in decimal megabytes with one decimal ("12.3 MB"), as download and loading bars show them. */
export function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`
}

/** A line redrawn in place on a terminal ("\r" + text + clear to the end of the line), cut to the terminal width. */
export function redraw(out: Out, text: string): void {
  const cols = out.columns && out.columns > 1 ? out.columns - 1 : Infinity
  out.write(`\r${[...text].length > cols ? [...text].slice(0, cols).join('') : text}\x1b[K`)
}

/** Clears a line drawn with redraw. */
export function clearLine(out: Out): void {
  out.write('\r\x1b[K')
}

export interface LoadProgress {
  /** LoadOptions.onProgress: bytes of weights loaded so far and in all. */
  onProgress: (loadedBytes: number, totalBytes: number) => void
  /** Clears the bar (after loading, or when it failed). */
  done(): void
}

/**
 * A loading bar on `out` (stderr) while weights load, only when `out` is a terminal:
 *   "loading fortunes-neo-en [##########..............] 12.3 / 29.5 MB  42%"
 * redrawn at most every `intervalMs` (and when complete), cleared by done(). Elsewhere (a pipe, a log
 * file) it writes nothing.
 */
export function loadProgress(label: string, out: Out = process.stderr, opts: { intervalMs?: number; now?: () => number } = {}): LoadProgress {
  if (out.isTTY !== true) return { onProgress: () => {}, done: () => {} }
  const interval = opts.intervalMs ?? 100
  const now = opts.now ?? (() => performance.now())
  let last = -Infinity, drawn = false
  return {
    onProgress(loaded, total) {
      const t = now()
      const complete = total > 0 && loaded >= total
      if (t - last < interval && !complete) return
      last = t
      drawn = true
      const f = total > 0 ? loaded / total : 0
      redraw(out, `loading ${label} ${bar(f)} ${(loaded / 1e6).toFixed(1)} / ${megabytes(total)}  ${Math.floor(100 * f)}%`)
    },
    done() {
      if (drawn) clearLine(out)
      drawn = false
    },
  }
}
