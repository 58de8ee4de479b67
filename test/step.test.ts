// refgpt step: --all output against the model's own forward pass, the interactive TUI in a real
// pseudo-terminal (tmux), and the --html page rendered by headless Chromium.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { argmax, loadModel, loadTokenizer } from '@refgpt/core'
import { modelDir, refgpt } from './helpers.js'

const test = suite('step')
const PROMPT = "Hello, I'm a language model"
const BIN = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url))

const ids = (lines: string[]) => lines.map((l) => Number((l.match(/\(id (\d+)\)/) ?? [])[1]))

/** The 5 ids listed after the line starting with `head`. */
function topAfter(out: string, head: string): number[] {
  const lines = out.split('\n')
  const i = lines.findIndex((l) => l.startsWith(head))
  assert.ok(i >= 0, `no line starting with ${JSON.stringify(head)}`)
  return ids(lines.slice(i + 1, i + 6))
}

const CASES: [string, string | null, string[]][] = [
  ['gpt2-tiny', null, ['x = wte[id] + wpe[position]', 'Scores are q·k × ']],
  ['gpt-neo-tiny', 'gpt-neo-tiny', ['GPT-Neo does not divide q·k by √d', 'this is a local layer: the token sees only the last 8 positions'.replace(/^t/, 'T')]],
  ['gpt-j-tiny', 'gpt-j-tiny', ['GPT-J adds attention and MLP to the residual in parallel', 'rotary']],
]

for (const [name, fixture, lines] of CASES) {
  test(`step --all ${name}: every layer, the pieces, final top-5 = model argmax, last logit lens = final logits`, async () => {
    const dir = fixture ? modelDir(fixture) : modelDir('gpt2-tiny')
    const r = refgpt(['step', '--all', ...(fixture ? ['--model', dir] : []), PROMPT])
    assert.is(r.code, 0, r.stderr)
    const out = r.stdout
    const model = await loadModel(dir, { device: 'js' })
    const tok = loadTokenizer(dir)
    try {
      const n = model.arch.nLayer
      for (let l = 0; l < n; l++) {
        for (const part of ['ln_1', 'attention', 'MLP', 'residual + logit lens']) assert.ok(out.includes(`Layer ${l} · ${part}`), `layer ${l} ${part}`)
        assert.ok(out.includes(`logit lens after layer ${l}, top-5:`))
      }
      assert.ok(!out.includes(`Layer ${n} ·`))
      const promptIds = tok.encode(PROMPT)
      for (const id of promptIds) assert.ok(out.includes(`${JSON.stringify(tok.decode([id])).padEnd(18)} id ${id}`), `piece ${id}`)
      const session = model.createSession()
      const expected = argmax(await session.forward(promptIds, 0))
      session.dispose()
      const final = topAfter(out, 'top-5 next tokens:')
      assert.is(final[0], expected)
      assert.ok(out.includes(`1. ${JSON.stringify(tok.decode([expected]))}`))
      assert.equal(topAfter(out, `logit lens after layer ${n - 1}, top-5:`), final)
      for (const s of lines) assert.ok(out.includes(s), `explanation: ${s}`)
    } finally {
      await model.dispose()
    }
  })
}

// --- the TUI in tmux ---------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const hasTmux = spawnSync('tmux', ['-V']).status === 0

test('step TUI in a pseudo-terminal: n, n, b, l 1 enter, t, q', async () => {
  if (!hasTmux) {
    console.log('  SKIP step TUI: tmux is not installed (apt-get install tmux)')
    return
  }
  const sock = `refgpt-step-${process.pid}`
  const tmux = (...args: string[]) => spawnSync('tmux', ['-L', sock, '-f', '/dev/null', ...args], { encoding: 'utf8' })
  const screen = () => tmux('capture-pane', '-p', '-t', 's').stdout ?? ''
  const waitFor = async (want: (s: string) => boolean, what: string) => {
    let s = ''
    for (let i = 0; i < 200; i++) {
      s = screen()
      if (want(s)) return s
      await sleep(50)
    }
    assert.unreachable(`screen never showed ${what}:\n${s}`)
    return s
  }
  const title = (s: string) => (s.split('\n').find((l) => l.startsWith('== [')) ?? '')
  try {
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} step Hello; echo STEP-EXIT=$?; sleep 60`
    const r = tmux('new-session', '-d', '-s', 's', '-x', '160', '-y', '60', cmd)
    assert.is(r.status, 0, r.stderr)
    await waitFor((s) => title(s).includes('Tokenization'), 'the first stage')
    assert.ok(screen().includes('"Hello"'))
    tmux('send-keys', '-t', 's', 'n')
    await waitFor((s) => title(s).includes('Embeddings'), 'Embeddings after n')
    tmux('send-keys', '-t', 's', 'n')
    await waitFor((s) => title(s).includes('Layer 0 · ln_1'), 'layer 0 ln_1 after n')
    tmux('send-keys', '-t', 's', 'b')
    await waitFor((s) => title(s).includes('Embeddings'), 'Embeddings after b')
    tmux('send-keys', '-t', 's', 'l')
    await waitFor((s) => s.includes('layer (0-1):'), 'the layer prompt')
    tmux('send-keys', '-t', 's', '1', 'Enter')
    await waitFor((s) => title(s).includes('Layer 1 · ln_1'), 'layer 1 after l 1 enter')
    tmux('send-keys', '-t', 's', 't')
    await waitFor((s) => title(s).includes('Tokenization') && s.includes('into 2 pieces'), 'a restart with 2 tokens after t')
    tmux('send-keys', '-t', 's', 'q')
    await waitFor((s) => s.includes('STEP-EXIT=0'), 'the process exiting with 0 after q')
  } finally {
    tmux('kill-server')
  }
})

// --- --html in headless Chromium -----------------------------------------------------------------

const CHROMIUM = '/usr/bin/chromium'

test('step --html renders every layer in headless Chromium', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'refgpt-step-'))
  try {
    const file = join(tmp, 'step.html')
    const r = refgpt(['step', '--html', file, '--model', modelDir('gpt-neo-tiny'), PROMPT])
    assert.is(r.code, 0, r.stderr)
    const html = readFileSync(file, 'utf8')
    assert.not.match(html, /(src|href)=["']?https?:/)
    assert.is((html.match(/<section class="layer" data-layer="/g) ?? []).length, 4)
    if (!existsSync(CHROMIUM)) {
      console.log(`  SKIP step --html browser check: ${CHROMIUM} is not installed (apt-get install chromium)`)
      return
    }
    const { chromium } = await import('playwright-core')
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
    try {
      const page = await browser.newPage()
      const requests: string[] = []
      page.on('request', (q) => { if (!q.url().startsWith('file:')) requests.push(q.url()) })
      const errors: string[] = []
      page.on('pageerror', (e) => errors.push(String(e)))
      await page.goto('file://' + file)
      const info = await page.evaluate(() => {
        const sections = [...document.querySelectorAll('section.layer')]
        return {
          layers: sections.map((s) => Number((s as HTMLElement).dataset.layer)),
          heatmaps: sections.map((s) => [...s.querySelectorAll('canvas.heatmap')].map((c) => { const b = c.getBoundingClientRect(); return b.width * b.height })),
          painted: (() => {
            const c = document.querySelector('canvas.heatmap') as HTMLCanvasElement
            const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data
            let colored = 0
            for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 2]) colored++
            return colored
          })(),
          lensRows: document.querySelectorAll('table.lens tr').length,
        }
      })
      assert.equal(errors, [])
      assert.equal(requests, [])
      assert.equal(info.layers, [0, 1, 2, 3])
      for (const hs of info.heatmaps) {
        assert.is(hs.length, 4, 'one heatmap per head')
        for (const a of hs) assert.ok(a > 0, 'heatmap has a size')
      }
      assert.ok(info.painted > 0, 'heatmap drawn')
      assert.is(info.lensRows, 5, 'logit-lens table: header + one row per layer')
      const png = join(tmp, 'shot.png')
      await page.screenshot({ path: png, fullPage: true })
      const buf = readFileSync(png)
      assert.ok(statSync(png).size > 1000)
      assert.equal([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
    } finally {
      await browser.close()
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
})

test.run()
