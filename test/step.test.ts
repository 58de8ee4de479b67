// refgpt step: --all output against the model's own forward pass, the interactive TUI in a real
// pseudo-terminal (tmux), and the --html page rendered by headless Chromium.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { crc32, inflateSync } from 'node:zlib'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { argmax, collectTrace, loadModel, loadTokenizer, softmax, type Model } from '@refgpt/core'
import { MASKED_RGB, PROB_STOPS, probColor, probRgb, renderHtml } from '../packages/cli/src/step/html.js'
import { LENS_POSITIONS, defaultLensPositions, runStages, type Guess, type StepRun } from '../packages/cli/src/step/model.js'
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

// Every case names its fixture: the default model (packages/core/assets/models/...) is trained by
// scripts/train-default-models.mjs and need not be there.
const CASES: [string, string, string[]][] = [
  ['gpt2-tiny', 'gpt2-tiny', ['x = wte[id] + wpe[position]', 'Scores are q·k × ']],
  ['gpt-neo-tiny', 'gpt-neo-tiny', ['GPT-Neo does not divide q·k by √d', 'this is a local layer: the token sees only the last 8 positions'.replace(/^t/, 'T')]],
  ['gpt-j-tiny', 'gpt-j-tiny', ['GPT-J adds attention and MLP to the residual in parallel', 'rotary']],
]

for (const [name, fixture, lines] of CASES) {
  test(`step --all ${name}: every layer, the pieces, final top-5 = model argmax, last logit lens = final logits`, async () => {
    const dir = modelDir(fixture)
    const r = refgpt(['step', '--all', '--model', dir, PROMPT])
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

test('runStages: a logit lens at each of the last lensPositions positions, the same whether the prefix is one chunk or not', async () => {
  const dir = modelDir('gpt2-tiny')
  const model = await loadModel(dir, { device: 'js' })
  const tok = loadTokenizer(dir)
  try {
    const ids = tok.encode(PROMPT), T = ids.length, n = model.arch.nLayer
    const all = await runStages(model, tok, ids)
    assert.equal(all.lens!.positions, [...Array(T).keys()], 'the tiny model: every position')
    const part = await runStages(model, tok, ids, { lensPositions: 3 })
    assert.equal(part.lens!.positions, [T - 3, T - 2, T - 1])
    assert.equal((await runStages(model, tok, ids, { lensPositions: 1 })).lens!.positions, [T - 1])
    for (let l = 0; l < n; l++) {
      assert.is(all.lens!.top[l].length, T)
      for (let i = 0; i < 3; i++) {
        const x = part.lens!.top[l][i], y = all.lens!.top[l][T - 3 + i]
        assert.equal(x.map((g) => g.id), y.map((g) => g.id), `layer ${l} position ${T - 3 + i}`)
        for (let j = 0; j < x.length; j++) assert.ok(Math.abs(x[j].prob - y[j].prob) <= 1e-6)
      }
      // the last position's lens is the stages' own (the main pass)
      const stage = all.stages.find((s) => s.key === `h.${l}.out`)!
      assert.equal(all.lens!.top[l][T - 1], stage.top!.slice(0, 3))
    }
  } finally {
    await model.dispose()
  }
  assert.is(defaultLensPositions({ nLayer: 2, nEmbd: 32, nVocab: 50257 }), LENS_POSITIONS)
  assert.is(defaultLensPositions({ nLayer: 12, nEmbd: 768, nVocab: 50257 }), 9)
  assert.is(defaultLensPositions({ nLayer: 28, nEmbd: 4096, nVocab: 50400 }), 1)
})

// --- the TUI in tmux ---------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const hasTmux = spawnSync('tmux', ['-V']).status === 0

if (!hasTmux) console.log('  SKIP step TUI: tmux is not installed (apt-get install tmux)')
;(hasTmux ? test : test.skip)('step TUI in a pseudo-terminal: n, n, b, l 1 enter, t, q', async () => {
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
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} step --model ${JSON.stringify(modelDir('gpt2-tiny'))} Hello; echo STEP-EXIT=$?; sleep 60`
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

// --- --html: the page's content, read back without a browser -----------------------------------

/**
 * The absolute probability scale as documented in html.ts, written out again here: p clamped to [0, 1],
 * linear in RGB from #ffffff (p = 0) through #6baed6 (p = 0.5) to #08306b (p = 1), each channel rounded.
 */
function expectedRgb(p: number): number[] {
  const q = Math.min(1, Math.max(0, p))
  const [from, to, t] = q <= 0.5 ? [[255, 255, 255], [107, 174, 214], q / 0.5] : [[107, 174, 214], [8, 48, 107], (q - 0.5) / 0.5]
  return from.map((x, c) => Math.round(x * (1 - t) + to[c] * t))
}
const LIGHTEST = [255, 255, 255], DARKEST = [8, 48, 107], GREY = [204, 204, 204]
const hexOf = (c: ArrayLike<number>) => '#' + Array.from(c, (v) => v.toString(16).padStart(2, '0')).join('')
/** Colours equal up to one step of rounding per channel (the two formulas round independently). */
const near = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1) => a.length === b.length && Array.from(a).every((x, i) => Math.abs(x - b[i]) <= tol)
const rgbOf = (hex: string) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16))

/** A token as the page should label it: ␣ space, ↵ newline, ⇥ tab; longer than max characters: max - 1 of them and '…'. */
function expectedLabel(piece: string, max = 12): string {
  const v = piece === '' ? ['∅'] : [...piece].map((c) => (c === ' ' ? '␣' : c === '\n' ? '↵' : c === '\t' ? '⇥' : c))
  return v.length > max ? v.slice(0, max - 1).join('') + '…' : v.join('')
}

const unesc = (s: string) => s.replace(/&(amp|lt|gt|quot|#39);/g, (_, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e]!)

function attrs(tag: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of tag.matchAll(/([a-zA-Z][\w-]*)="([^"]*)"/g)) out[m[1]] = unesc(m[2])
  return out
}

/** The page's figures of one data-kind: attributes and inner HTML (figures do not nest). */
function figures(html: string, kind: string) {
  return [...html.matchAll(/<figure ([^>]*)>([\s\S]*?)<\/figure>/g)].map((m) => ({ a: attrs(m[1]), body: m[2] })).filter((f) => f.a['data-kind'] === kind)
}

const TOK_SPAN = /<span class="tok" data-i="(\d+)" title="([^"]*)">([^<]*)<\/span>/g
const tokSpans = (html: string) => [...html.matchAll(TOK_SPAN)].map((x) => ({ i: Number(x[1]), title: unesc(x[2]), text: unesc(x[3]) }))

/** The token labels of one axis of a heatmap figure: `<div class="xl">` (columns) or `<div class="yl">` (rows). */
function axisLabels(body: string, cls: 'xl' | 'yl') {
  const m = body.match(new RegExp(`<div class="${cls}">([\\s\\S]*?)</div>`))
  assert.ok(m, `no ${cls} axis`)
  return tokSpans(m![1])
}

function legendOf(body: string) {
  const m = body.match(/<div class="legend" data-scale="([^"]+)"[^>]*>([\s\S]*?)<\/div>/)
  assert.ok(m, 'no legend')
  const part = (c: string) => unesc((m![2].match(new RegExp(`<span class="${c}">([^<]*)</span>`)) ?? [])[1] ?? '')
  return { scale: m![1], what: part('what'), lo: part('lo'), hi: part('hi'), note: part('note'), bar: (m![2].match(/<span class="bar" style="background:([^"]+)">/) ?? [])[1] ?? '' }
}

/** Decodes the PNG of a data: URI as html.ts writes it (8-bit RGB, filter 0), checking signature and CRCs. */
function decodePng(uri: string) {
  assert.ok(uri.startsWith('data:image/png;base64,'), 'a PNG data: URI')
  const buf = Buffer.from(uri.slice('data:image/png;base64,'.length), 'base64')
  assert.equal([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
  let w = 0, h = 0
  const idat: Buffer[] = []
  for (let o = 8; o < buf.length; o += 12 + buf.readUInt32BE(o)) {
    const len = buf.readUInt32BE(o), type = buf.toString('latin1', o + 4, o + 8), data = buf.subarray(o + 8, o + 8 + len)
    assert.is(buf.readUInt32BE(o + 8 + len), crc32(buf.subarray(o + 4, o + 8 + len)), `${type} CRC`)
    if (type === 'IHDR') {
      w = data.readUInt32BE(0)
      h = data.readUInt32BE(4)
      assert.equal([...data.subarray(8, 13)], [8, 2, 0, 0, 0], '8-bit RGB, not interlaced')
    } else if (type === 'IDAT') idat.push(data)
  }
  const raw = inflateSync(Buffer.concat(idat)), stride = w * 3 + 1
  assert.is(raw.length, h * stride)
  for (let y = 0; y < h; y++) assert.is(raw[y * stride], 0, 'filter type 0')
  return { w, h, at: (x: number, y: number) => [...raw.subarray(y * stride + 1 + x * 3, y * stride + 4 + x * 3)] }
}

/** The heatmap image of a figure, decoded. */
const imageOf = (body: string) => decodePng(attrs(body.match(/<img class="heatmap"[^>]*>/)![0]).src)

/**
 * Well-formed HTML: every non-void element closed in order, attribute values quoted, no raw '<' or '>'
 * in text, every '&' an entity, no '</' inside script or style.
 */
function checkWellFormed(html: string) {
  assert.ok(html.startsWith('<!doctype html>'), 'doctype')
  const VOID = new Set(['area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr'])
  const bareAmp = /&(?!(amp|lt|gt|quot|#39|#\d+);)/
  const s = html.slice('<!doctype html>'.length).replace(/<(script|style)>([\s\S]*?)<\/\1>/g, (_, t: string, body: string) => {
    assert.not.ok(body.includes('</'), `${t} contains '</'`)
    return ''
  })
  const stack: string[] = []
  const re = /<(\/?)([a-z][a-z0-9]*)((?:\s+[a-zA-Z][\w-]*(?:="[^"<>]*")?)*)\s*>|([^<]+)/gy
  let m: RegExpExecArray | null
  let at = 0
  while ((m = re.exec(s))) {
    at = re.lastIndex
    if (m[4] !== undefined) {
      assert.not.ok(m[4].includes('>') || bareAmp.test(m[4]), `unescaped text ${JSON.stringify(m[4].slice(0, 80))}`)
      continue
    }
    for (const v of m[3].matchAll(/="([^"]*)"/g)) assert.not.ok(bareAmp.test(v[1]), `bare '&' in an attribute of <${m[2]}>`)
    if (m[1]) assert.is(stack.pop(), m[2], `</${m[2]}> closes the innermost open element`)
    else if (!VOID.has(m[2])) stack.push(m[2])
  }
  assert.is(at, s.length, `unparsable markup at ${JSON.stringify(s.slice(at, at + 80))}`)
  assert.equal(stack, [], 'every element closed')
}

test('probColor: the documented absolute scale (white at 0, darkest at 1, monotone), the same as written out in this test', () => {
  assert.equal(probRgb(0), LIGHTEST)
  assert.equal(probRgb(1), DARKEST)
  assert.equal(probRgb(0.5), [107, 174, 214])
  assert.equal(probRgb(-1), LIGHTEST)
  assert.equal(probRgb(2), DARKEST)
  assert.equal(probRgb(NaN), LIGHTEST)
  assert.equal(PROB_STOPS.map((c) => [...c]), [LIGHTEST, [107, 174, 214], DARKEST])
  let prev = Infinity
  for (let i = 0; i <= 1000; i++) {
    const p = i / 1000, c = probRgb(p)
    assert.ok(near(c, expectedRgb(p)), `p ${p}: ${c} vs ${expectedRgb(p)}`)
    assert.is(probColor(p), hexOf(c))
    const sum = c[0] + c[1] + c[2]
    assert.ok(sum <= prev, `darker as p grows (p ${p})`)
    prev = sum
  }
  assert.equal(MASKED_RGB, GREY)
  assert.not.ok(Array.from({ length: 1001 }, (_, i) => hexOf(probRgb(i / 1000))).includes(hexOf(GREY)), 'masked grey is off the scale')
})

test('renderHtml: one probability is one colour in every map (not scaled per map); labels escaped, whitespace shown, long ones cut with the whole token in the title', () => {
  const g = (id: number, text: string, prob: number): Guess => ({ id, text, prob, logit: 0 })
  const pieces = ['<b>', ' &x', '\n', ' characteristically']
  const empty = { text: [], shapes: [], lines: [] }
  const run: StepRun = {
    ids: [1, 2, 3, 4],
    next: 9,
    stages: [
      { key: 'tokens', title: 'Tokenization', layer: null, ...empty },
      // layer 0: two full maps (each with max 1); layer 1: one row only (a map whose max is 0.4)
      { key: 'h.0.attn', title: 'Layer 0 · attention', layer: 0, ...empty, attn: [
        [[1, 0, 0, 0], [0.7, 0.3, 0, 0], [0.3, 0.3, 0.4, 0], [0.25, 0.25, 0.25, 0.25]],
        [[1, 0, 0, 0], [0.3, 0.7, 0, 0], [0.1, 0.6, 0.3, 0], [0.3, 0.2, 0.2, 0.3]],
      ] },
      { key: 'h.0.out', title: 'Layer 0 · residual + logit lens', layer: 0, ...empty, vector: [-2, 0, 1, 2], top: [g(7, ' y', 0.3), g(8, 'z', 0.2)] },
      { key: 'h.1.attn', title: 'Layer 1 · attention', layer: 1, ...empty, attn: [[[0.3, 0.3, 0.4, 0]], [[0.3, 0.1, 0.1, 0.5]]] },
      { key: 'h.1.out', title: 'Layer 1 · residual + logit lens', layer: 1, ...empty, vector: [0.1, -0.1, 0, 0.05], top: [g(9, '<i>', 0.9), g(7, ' y', 0.05)] },
      { key: 'logits', title: 'Logits → next token', layer: null, ...empty, top: [g(9, '<i>', 0.9), g(7, ' y', 0.05)] },
    ],
    lens: {
      positions: [0, 1, 2, 3],
      top: [
        [[g(7, ' y', 0.3)], [g(8, 'z', 0.02)], [g(9, '<i>', 0.5)], [g(7, ' y', 0.3)]],
        [[g(9, '<i>', 1)], [g(8, 'z', 0.3)], [g(9, '<i>', 0.7)], [g(9, '<i>', 0.9)]],
      ],
    },
  }
  const layer = { attention: 'global', window: 0, scale: 1 }
  const model = { arch: { family: 'gpt2', nLayer: 2, nHead: 2, nEmbd: 4, layers: [layer, layer] }, info: { dir: 'fake <dir>' } } as unknown as Model
  const html = renderHtml(run, model, pieces, 'a <b>prompt</b> & "more"')
  checkWellFormed(html)
  assert.ok(html.includes('<title>refgpt step: a &lt;b&gt;prompt&lt;/b&gt; &amp; &quot;more&quot;</title>'))

  const maps = figures(html, 'attention')
  assert.equal(maps.map((f) => [f.a['data-layer'], f.a['data-head']]), [['0', '0'], ['0', '1'], ['1', '0'], ['1', '1']])
  const want = pieces.map((p) => expectedLabel(p))
  assert.equal(want, ['<b>', '␣&x', '↵', '␣characteri…'])
  for (const f of maps) {
    assert.equal(axisLabels(f.body, 'xl').map((l) => l.text), want, 'key labels')
    assert.equal(axisLabels(f.body, 'xl').map((l) => l.title), pieces.map((p, i) => `position ${i}: ${JSON.stringify(p)}`))
    const rows = axisLabels(f.body, 'yl')
    assert.equal(rows.map((l) => l.text), f.a['data-layer'] === '0' ? want : [want[3]], 'query labels')
    assert.ok(f.body.includes('<span class="tok" data-i="0" title="position 0: &quot;&lt;b&gt;&quot;">&lt;b&gt;</span>'), 'escaped label')
    const lg = legendOf(f.body)
    assert.equal([lg.scale, lg.what, lg.lo, lg.hi, lg.note], ['absolute', 'attention probability', '0', '1', 'absolute scale'])
  }
  // p = 0.3 in four different maps (row maxima 0.4, 0.7, 0.6, 0.5; map maxima 1, 1, 0.4, 0.5): one colour
  const png = maps.map((f) => imageOf(f.body))
  const c03 = expectedRgb(0.3)
  for (const [m, x, y] of [[0, 1, 1], [0, 0, 2], [0, 1, 2], [1, 0, 1], [1, 2, 2], [1, 0, 3], [1, 3, 3], [2, 0, 0], [2, 1, 0], [3, 0, 0]])
    assert.equal(png[m].at(x, y), probRgb(0.3), `map ${m} [${y}, ${x}]`)
  assert.ok(near(probRgb(0.3), c03))
  assert.equal(png[2].at(2, 0), probRgb(0.4), 'the maximum of a map is not drawn as the darkest colour')
  assert.not.equal(png[2].at(2, 0), DARKEST)
  assert.equal(png[0].at(0, 0), DARKEST, 'p = 1')
  assert.equal(png[0].at(3, 0), GREY, 'masked: a later key')
  assert.equal(png[2].at(3, 0), LIGHTEST, 'p = 0 on a visible key: white, not grey')

  // the logit lens by position: layers down, the prompt's tokens across; cells coloured on the same scale
  const [grid] = figures(html, 'lens-grid')
  const head = grid.body.match(/<thead>([\s\S]*?)<\/thead>/)![1]
  assert.equal(tokSpans(head).map((l) => l.text), want)
  const cells = [...grid.body.matchAll(/<td class="p( final)?" style="background:(#[0-9a-f]{6});color:#(?:fff|000)" data-p="([^"]+)" data-id="(\d+)" title="([^"]*)"><span class="tok">([^<]*)<\/span>/g)]
  assert.is(cells.length, 8)
  for (const c of cells) assert.is(c[2], hexOf(probRgb(Number(c[3]))))
  assert.is(cells[0][2], hexOf(png[0].at(1, 1)), 'lens cell with p 0.3 = attention cell with p 0.3')
  assert.equal(cells.map((c) => unesc(c[6])), ['␣y', 'z', '<i>', '␣y', '<i>', 'z', '<i>', '<i>'])
  assert.equal(cells.map((c) => !!c[1]), [false, true, true, false, false, false, false, false], 'bold where a layer already has the final top token')
  const gl = legendOf(grid.body)
  assert.equal([gl.scale, gl.what, gl.lo, gl.hi], ['absolute', 'top-1 probability', '0', '1'])
  // vector strips: per-map scale, said in the legend
  const strips = figures(html, 'vector')
  assert.is(strips.length, 2)
  const sl = strips.map((f) => legendOf(f.body))
  assert.equal(sl.map((l) => [l.scale, l.lo, l.hi]), [['per-map', '-2', '2'], ['per-map', '-0.1', '0.1']])
  for (const l of sl) assert.match(l.note, /per-map scale/)
  // each strip's own ±max |x| is the full red / blue, though the two maxima differ (2 and 0.1)
  const s0 = imageOf(strips[0].body), s1 = imageOf(strips[1].body)
  assert.equal([s0.at(3, 0), s1.at(0, 0)], [[178, 24, 43], [178, 24, 43]])
  assert.equal([s0.at(0, 0), s1.at(1, 0), s0.at(1, 0)], [[33, 102, 172], [33, 102, 172], LIGHTEST])
})

const HTML_PROMPT = 'x <b>&amp; "y"\n\tcharacteristically  responsibility'

test('step --html gpt-neo-tiny: labels = the prompt tokens, legends, colours = the traced probabilities on the absolute scale, logit lens per position', async () => {
  const dir = modelDir('gpt-neo-tiny')
  const tmp = mkdtempSync(join(tmpdir(), 'refgpt-step-'))
  const model = await loadModel(dir, { device: 'js' })
  try {
    const file = join(tmp, 'step.html')
    const r = refgpt(['step', '--html', file, '--model', dir, HTML_PROMPT])
    assert.is(r.code, 0, r.stderr)
    const html = readFileSync(file, 'utf8')
    checkWellFormed(html)
    assert.not.match(html, /(src|href)=["']?(https?:|\/\/)/)
    const tok = loadTokenizer(dir)
    const ids = tok.encode(HTML_PROMPT), T = ids.length, a = model.arch
    const pieces = ids.map((id) => tok.decode([id]))
    assert.ok(T > 8 && pieces.includes('\n') && pieces.includes('\t') && pieces.some((p) => [...p].length > 12), 'the prompt exercises the window, whitespace and truncation')
    const want = pieces.map((p) => expectedLabel(p))

    // the model's own attention probabilities, traced here on the js device
    const { tracer, settle } = collectTrace((n) => n.endsWith('.attn.probs'))
    const session = model.createSession({ maxBatchTokens: T })
    await session.forward(ids, 0, { tracer })
    session.dispose()
    const traced = await settle()

    const maps = figures(html, 'attention')
    assert.is(maps.length, a.nLayer * a.nHead)
    let windowed = 0
    for (const f of maps) {
      const l = Number(f.a['data-layer']), h = Number(f.a['data-head'])
      for (const axis of ['xl', 'yl'] as const) {
        const ls = axisLabels(f.body, axis)
        assert.equal(ls.map((x) => x.i), [...Array(T).keys()], `${axis} positions`)
        assert.equal(ls.map((x) => x.text), want, `${axis} labels = the prompt's tokens`)
        assert.equal(ls.map((x) => x.title), pieces.map((p, i) => `position ${i}: ${JSON.stringify(p)}`))
      }
      assert.ok(f.body.includes('key →') && f.body.includes('↓ query'), 'axis titles')
      const lg = legendOf(f.body)
      assert.equal([lg.scale, lg.what, lg.lo, lg.hi], ['absolute', 'attention probability', '0', '1'])
      for (const c of PROB_STOPS) assert.ok(lg.bar.includes(hexOf(c)), 'gradient through the scale stops')
      const png = imageOf(f.body)
      assert.equal([png.w, png.h], [T, T])
      const probs = traced.get(`h.${l}.attn.probs`)!
      const win = a.layers[l].attention === 'local' ? a.layers[l].window : Infinity
      for (let q = 0; q < T; q++) {
        for (let k = 0; k < T; k++) {
          const p = probs.data[(h * T + q) * T + k], px = png.at(k, q)
          if (k > q || q - k >= win) {
            assert.equal(px, GREY, `layer ${l} head ${h} [${q}, ${k}] masked`)
            assert.is(p, 0)
            if (k <= q) windowed++
          } else {
            assert.ok(p > 0, `layer ${l} head ${h} [${q}, ${k}]: a key the model masks is drawn as visible`)
            assert.ok(near(px, expectedRgb(p)), `layer ${l} head ${h} [${q}, ${k}]: p ${p} drawn ${px}, expected ${expectedRgb(p)}`)
          }
        }
      }
    }
    assert.ok(windowed > 0, 'the local layers mask keys outside the window')

    // the logit lens per position, against lenses computed here: position t is the last row of a forward over ids[0..t]
    const [grid] = figures(html, 'lens-grid')
    assert.ok(grid, 'a logit-lens grid')
    assert.equal(tokSpans(grid.body.match(/<thead>([\s\S]*?)<\/thead>/)![1]).map((x) => x.text), want, 'columns: the prompt tokens')
    const rows = [...grid.body.match(/<tbody>([\s\S]*?)<\/tbody>/)![1].matchAll(/<tr data-layer="(\d+)"><th scope="row" class="yl">([^<]*)<\/th>([\s\S]*?)<\/tr>/g)]
    assert.equal(rows.map((x) => x[2]), Array.from({ length: a.nLayer }, (_, l) => `layer ${l}${l === a.nLayer - 1 ? ' (output)' : ''}`), 'rows: the layers')
    const cells = rows.map((x) => [...x[3].matchAll(/<td class="p( final)?" style="background:(#[0-9a-f]{6});color:#(?:fff|000)" data-p="([^"]+)" data-id="(\d+)" title="([^"]*)"><span class="tok">([^<]*)<\/span><small>([^<]*)<\/small><\/td>/g)])
    for (const row of cells) assert.is(row.length, T)
    const probsOut = new Float64Array(a.nVocab)
    for (let t = 0; t < T; t++) {
      const c = collectTrace((n) => n.endsWith('.lens'))
      const s = model.createSession({ maxBatchTokens: t + 1 })
      await s.forward(ids.slice(0, t + 1), 0, { tracer: c.tracer, logitLens: true })
      s.dispose()
      const lens = await c.settle()
      for (let l = 0; l < a.nLayer; l++) {
        softmax(lens.get(`h.${l}.lens`)!.data, probsOut)
        const best = argmax(probsOut), cell = cells[l][t]
        const id = Number(cell[4]), p = Number(cell[3])
        assert.ok(probsOut[id] >= probsOut[best] - 1e-6, `layer ${l} position ${t}: top token ${id} (p ${probsOut[id]}) vs ${best} (p ${probsOut[best]})`)
        assert.ok(Math.abs(p - probsOut[best]) <= 1e-6, `layer ${l} position ${t}: p ${p} vs ${probsOut[best]}`)
        assert.ok(near(rgbOf(cell[2]), expectedRgb(p)), `layer ${l} position ${t}: cell colour ${cell[2]} for p ${p}`)
        assert.is(unesc(cell[6]), expectedLabel(tok.decode([id]), 10), 'the top token as the cell text')
        assert.match(unesc(cell[5]), `1. ${JSON.stringify(tok.decode([id]))}`)
        assert.is(!!cell[1], l < a.nLayer - 1 && id === Number(cells[a.nLayer - 1][t][4]), 'bold: already the final top token')
      }
    }
    const gl = legendOf(grid.body)
    assert.equal([gl.scale, gl.what, gl.lo, gl.hi], ['absolute', 'top-1 probability', '0', '1'])

    // the last token's top-5 per layer: coloured on the same scale, with a legend
    const [top5] = figures(html, 'lens-top5')
    for (const m of top5.body.matchAll(/style="background:(#[0-9a-f]{6});color:#(?:fff|000)" data-p="([^"]+)"/g)) assert.is(m[1], hexOf(probRgb(Number(m[2]))))
    assert.equal(legendOf(top5.body).scale, 'absolute')
    // vector strips: the last token down the side, dimensions across, a per-map legend
    const strips = figures(html, 'vector')
    assert.ok(strips.length >= 1 + 3 * a.nLayer)
    for (const f of strips) {
      assert.equal(tokSpans(f.body).map((x) => x.text), [want[T - 1]])
      const lg = legendOf(f.body)
      assert.is(lg.scale, 'per-map')
      assert.is(lg.lo, '-' + lg.hi)
      assert.match(lg.note, /per-map scale/)
      assert.ok(f.body.includes(`<span>${Number(f.a['data-dims']) - 1}</span>`), 'last dimension labelled')
    }
  } finally {
    await model.dispose()
    rmSync(tmp, { recursive: true, force: true })
  }
})

// --- --html in headless Chromium -----------------------------------------------------------------

// Debian's and Ubuntu's names, Chrome, or CHROMIUM_PATH
const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => p && existsSync(p))

/** `refgpt step --html` on the tiny GPT-Neo: the page, self-contained, one section per layer. */
function writeStepHtml(tmp: string): string {
  const file = join(tmp, 'step.html')
  const r = refgpt(['step', '--html', file, '--model', modelDir('gpt-neo-tiny'), PROMPT])
  assert.is(r.code, 0, r.stderr)
  const html = readFileSync(file, 'utf8')
  assert.not.match(html, /(src|href)=["']?https?:/)
  assert.is((html.match(/<section class="layer" data-layer="/g) ?? []).length, 4)
  return file
}

test('step --html writes one self-contained page with a section per layer', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'refgpt-step-'))
  try {
    writeStepHtml(tmp)
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
})

if (!CHROMIUM) console.log('  SKIP step --html browser check: no Chromium (apt-get install chromium, or set CHROMIUM_PATH)')
;(CHROMIUM ? test : test.skip)('step --html renders every layer in headless Chromium: images decoded, labels aligned with the cells, hover titles', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'refgpt-step-'))
  try {
    const file = writeStepHtml(tmp)
    const { chromium } = await import('playwright-core')
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
    try {
      const page = await browser.newPage()
      const requests: string[] = []
      page.on('request', (q) => { if (!q.url().startsWith('file:') && !q.url().startsWith('data:')) requests.push(q.url()) })
      const errors: string[] = []
      page.on('pageerror', (e) => errors.push(String(e)))
      await page.goto('file://' + file)
      const info = await page.evaluate(() => {
        const sections = [...document.querySelectorAll('section.layer')]
        const imgs = [...document.querySelectorAll('img.heatmap')] as HTMLImageElement[]
        const fig = document.querySelector('figure[data-kind="attention"]')!
        const img = fig.querySelector('img.heatmap') as HTMLImageElement
        const b = img.getBoundingClientRect()
        const K = Number(img.dataset.cols), R = Number(img.dataset.rows)
        const c = document.createElement('canvas')
        c.width = K
        c.height = R
        const g = c.getContext('2d')!
        g.drawImage(img, 0, 0)
        // (no named helper functions in here: the test's transpiler would wrap them in a __name() the page lacks)
        const tips = [[1, 0], [0, 0]].map(([col, row]) => {
          img.dispatchEvent(new MouseEvent('mousemove', { clientX: b.left + (col + 0.5) * (b.width / K), clientY: b.top + (row + 0.5) * (b.height / R), bubbles: true }))
          return img.title
        })
        return {
          layers: sections.map((s) => Number((s as HTMLElement).dataset.layer)),
          heatmaps: sections.map((s) => [...s.querySelectorAll('figure[data-kind="attention"] img.heatmap')].map((e) => { const r = e.getBoundingClientRect(); return r.width * r.height })),
          decoded: imgs.every((i) => i.complete && i.naturalWidth === Number(i.dataset.cols) && i.naturalHeight === Number(i.dataset.rows)),
          // column label i centred over column i, row label r beside row r
          cols: [...fig.querySelectorAll('.xl .tok')].map((e, i) => { const r = e.getBoundingClientRect(), x = r.left + r.width / 2; return x >= b.left + (i * b.width) / K && x <= b.left + ((i + 1) * b.width) / K && r.bottom <= b.top + 1 }),
          rows: [...fig.querySelectorAll('.yl .tok')].map((e, i) => { const r = e.getBoundingClientRect(), y = r.top + r.height / 2; return y >= b.top + (i * b.height) / R && y <= b.top + ((i + 1) * b.height) / R && r.right <= b.left + 1 }),
          first: [...g.getImageData(0, 0, 1, 1).data.slice(0, 3)],
          masked: [...g.getImageData(1, 0, 1, 1).data.slice(0, 3)],
          tipMasked: tips[0],
          tipFirst: tips[1],
          lensRows: document.querySelectorAll('table.lens tr').length,
          gridRows: document.querySelectorAll('table.lens-grid tbody tr').length,
          gridCols: document.querySelectorAll('table.lens-grid thead th.xl').length,
          legends: document.querySelectorAll('figure[data-kind="attention"] .legend[data-scale="absolute"]').length,
        }
      })
      assert.equal(errors, [])
      assert.equal(requests, [])
      assert.equal(info.layers, [0, 1, 2, 3])
      for (const hs of info.heatmaps) {
        assert.is(hs.length, 4, 'one heatmap per head')
        for (const a of hs) assert.ok(a > 0, 'heatmap has a size')
      }
      assert.ok(info.decoded, 'every heatmap image decoded at one pixel per cell')
      assert.is(info.cols.length, 7)
      assert.ok(info.cols.every(Boolean), `column labels over their columns: ${info.cols}`)
      assert.ok(info.rows.every(Boolean) && info.rows.length === 7, `row labels beside their rows: ${info.rows}`)
      assert.ok(near(info.first, DARKEST, 2), `query 0 attends to itself with p = 1: ${info.first}`)
      assert.ok(near(info.masked, GREY, 2), `a later key is masked: ${info.masked}`)
      assert.match(info.tipMasked, /^position 0: "Hello" → position 1: ",": masked$/)
      assert.match(info.tipFirst, /^position 0: "Hello" → position 0: "Hello": p = 1$/)
      assert.is(info.lensRows, 5, 'last-token logit-lens table: header + one row per layer')
      assert.is(info.gridRows, 4, 'logit lens by position: one row per layer')
      assert.is(info.gridCols, 7, 'logit lens by position: one column per token')
      assert.is(info.legends, 16, 'a legend under every attention map')
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
