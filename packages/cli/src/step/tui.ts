// The terminal view of refgpt step: one stage per screen, keys to move. Raw mode on stdin; the
// terminal is restored on every exit path (q, Ctrl-C, end of input, an error).

import { renderStage, type StepRun } from './model.js'

export interface TuiSource {
  /** The current run. */
  current(): StepRun
  /** Appends the greedy next token and re-runs the forward pass. */
  nextToken(): Promise<StepRun>
}

const KEYS = 'enter/n next · b back · l layer · t next token · q quit'

/** Prints every stage (no TTY, or --all). */
export function printAll(run: StepRun, write: (s: string) => void): void {
  const n = run.stages.length
  run.stages.forEach((s, i) => write(renderStage(s, i, n).join('\n') + '\n\n'))
}

export function runTui(src: TuiSource): Promise<void> {
  const stdin = process.stdin, stdout = process.stdout
  let run = src.current()
  let i = 0
  let input: string | null = null // the layer number being typed after 'l'
  let message = ''

  const draw = () => {
    const cols = stdout.columns || 100, rows = stdout.rows || 40
    const lines = renderStage(run.stages[i], i, run.stages.length)
    const body = lines.slice(0, Math.max(1, rows - 3)).map((l) => (l.length > cols ? l.slice(0, cols - 1) + '…' : l))
    const footer = input !== null ? `layer (0-${run.stages.filter((s) => s.key.endsWith('.ln_1')).length - 1}): ${input}` : message || KEYS
    stdout.write('\x1b[H\x1b[2J' + body.join('\n') + '\n\n' + footer.slice(0, cols - 1))
  }

  return new Promise<void>((resolve, reject) => {
    let done = false
    const restore = () => {
      if (done) return
      done = true
      stdin.off('data', onData)
      stdin.off('end', onEnd)
      process.off('SIGINT', onSig)
      process.off('SIGTERM', onSig)
      process.off('exit', restoreTerminal)
      restoreTerminal()
      stdin.pause()
    }
    const restoreTerminal = () => {
      try {
        if (stdin.isTTY) stdin.setRawMode(false)
      } catch {}
      stdout.write('\x1b[?25h\x1b[?1049l')
    }
    const finish = () => {
      restore()
      resolve()
    }
    const onSig = () => finish()
    const onEnd = () => finish()
    // keys are handled one chunk at a time, in order (a 't' awaits the new forward pass)
    let queue: Promise<void> = Promise.resolve()
    const onData = (buf: Buffer) => {
      queue = queue.then(() => handle(buf))
    }
    const handle = async (buf: Buffer) => {
      try {
        for (const ch of buf.toString('utf8')) {
          if (done) return
          if (ch === '\x03' || ch === '\x04') return finish() // Ctrl-C, Ctrl-D
          if (input !== null) {
            if (/[0-9]/.test(ch)) input += ch
            else if (ch === '\x7f' || ch === '\b') input = input.slice(0, -1)
            else if (ch === '\x1b') input = null
            else if (ch === '\r' || ch === '\n') {
              const L = Number(input)
              const at = input === '' ? -1 : run.stages.findIndex((s) => s.layer === L)
              message = at < 0 ? `no layer ${JSON.stringify(input)}` : ''
              if (at >= 0) i = at
              input = null
            }
            continue
          }
          message = ''
          if (ch === 'q') return finish()
          else if (ch === 'n' || ch === '\r' || ch === '\n' || ch === ' ') i = Math.min(run.stages.length - 1, i + 1)
          else if (ch === 'b') i = Math.max(0, i - 1)
          else if (ch === 'l') input = ''
          else if (ch === 't') {
            try {
              run = await src.nextToken()
              i = 0
            } catch (e) {
              message = (e as Error).message.split('\n')[0]
            }
          }
        }
        draw()
      } catch (e) {
        restore()
        reject(e)
      }
    }
    process.on('SIGINT', onSig)
    process.on('SIGTERM', onSig)
    process.on('exit', restoreTerminal)
    if (stdin.isTTY) stdin.setRawMode(true)
    stdout.write('\x1b[?1049h\x1b[?25l')
    stdin.on('data', onData)
    stdin.on('end', onEnd)
    stdin.resume()
    draw()
  })
}
