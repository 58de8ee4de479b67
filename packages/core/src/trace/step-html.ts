// The step-through as HTML (refgpt step --html, and the browser demo's step-through view): the stages of
// step.ts with attention heatmaps, token labels on both axes, legends and a logit-lens grid. No Node
// built-in: the PNG encoder takes its deflate from the caller (the CLI passes zlib's deflateSync; the
// default, used in a page, writes stored blocks: larger, and decoded the same). Every heatmap is a PNG in a
// data: URI, one pixel per cell, scaled up without smoothing, whose colours are computed here; both axes
// carry HTML labels (the prompt's tokens, layers, ranks or dimensions: whatever the map indexes) and each
// map has a legend. STEP_JS only adds hover titles (row, column, value) to the heatmaps; the page reads
// the same without it.
//
// Colour scales:
// - Probabilities (attention maps, the logit lens): one ABSOLUTE scale, probColor(p). A colour depends on
//   p alone, never on the other values of its map, so one colour is one probability everywhere on the
//   page: 0 is the lightest (white), 1 the darkest (dark blue).
// - Other values (the vector strips: embeddings, residual stream, MLP activations): diverging around 0
//   and scaled PER MAP to ±max |x| of that vector (valueRgb); their legends say so, with that bound.

import { crc32Table } from '../io/crc32.js'
import type { Model } from '../models/model.js'
import { showPiece, type Guess, type LensGrid, type Stage, type StepRun } from './step.js'

/** What the renderer reads of a model: its architecture and the folder it came from. */
export type StepModel = Pick<Model, 'arch'> & { info: Pick<Model['info'], 'dir'> }

/** zlib-format compression of a PNG's filtered rows (the CLI passes node:zlib's deflateSync). */
export type Deflate = (raw: Uint8Array) => Uint8Array

export interface StepHtmlOptions {
  /** Default: storedDeflate (no compression; no Node built-in). */
  deflate?: Deflate
}

export type Rgb = [number, number, number]

export const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)

// --- colours -------------------------------------------------------------------------------------

/** The probability scale's stops, at p = 0, 0.5 and 1 (ColorBrewer "Blues" ends and middle). */
export const PROB_STOPS: readonly Rgb[] = [[255, 255, 255], [107, 174, 214], [8, 48, 107]]

/**
 * The colour of probability p on the page's ABSOLUTE scale: p is clamped to [0, 1] (NaN counts as 0);
 * with x = 2p, i = min(floor(x), 1) and f = x - i, each channel is
 * round(PROB_STOPS[i][c] + (PROB_STOPS[i + 1][c] - PROB_STOPS[i][c]) · f): linear in RGB from white
 * (#ffffff, p = 0) through #6baed6 (p = 0.5) to #08306b (p = 1).
 */
export function probRgb(p: number): Rgb {
  const x = (p > 0 ? Math.min(p, 1) : 0) * (PROB_STOPS.length - 1)
  const i = Math.min(Math.floor(x), PROB_STOPS.length - 2), f = x - i
  const a = PROB_STOPS[i], b = PROB_STOPS[i + 1]
  return [0, 1, 2].map((c) => Math.round(a[c] + (b[c] - a[c]) * f)) as Rgb
}

export const hex = (c: Rgb) => '#' + c.map((v) => v.toString(16).padStart(2, '0')).join('')

/** probRgb as '#rrggbb'. */
export const probColor = (p: number) => hex(probRgb(p))

/** Attention cells a query cannot see (later keys; outside a local layer's window): grey, off the blue scale. */
export const MASKED_RGB: Rgb = [204, 204, 204]

/** Ends of the per-map diverging scale: negative values blue, positive red, 0 white. */
export const NEG_RGB: Rgb = [33, 102, 172]
export const POS_RGB: Rgb = [178, 24, 43]

/** A value on a PER-MAP diverging scale: t = clamp(x / m, -1, 1), white mixed linearly towards NEG_RGB or POS_RGB by |t|. */
export function valueRgb(x: number, m: number): Rgb {
  const t = m > 0 && Number.isFinite(x) ? Math.max(-1, Math.min(1, x / m)) : 0
  const e = t < 0 ? NEG_RGB : POS_RGB, f = Math.abs(t)
  return [0, 1, 2].map((c) => Math.round(255 + (e[c] - 255) * f)) as Rgb
}

/** Black or white text, whichever reads on background c. */
const ink = (c: Rgb) => (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] < 128 ? '#fff' : '#000')

const gradient = (stops: Rgb[]) => `linear-gradient(to right,${stops.map((c, i) => `${hex(c)} ${((i / (stops.length - 1)) * 100).toFixed(0)}%`).join(',')})`

// --- labels --------------------------------------------------------------------------------------

/**
 * A token as a label: whitespace and control characters made visible (space ␣, newline ↵, tab ⇥,
 * carriage return ␍, other C0 controls as their control pictures ␀..␟, DEL ␡, other spaces and
 * zero-width characters ⍽); the empty string is ∅.
 */
export function visibleToken(s: string): string {
  if (s === '') return '∅'
  return s.replace(/[\s\x00-\x1f\x7f\u200b-\u200d\u2060]/g, (ch) => {
    if (ch === ' ') return '␣'
    if (ch === '\n') return '↵'
    if (ch === '\t') return '⇥'
    if (ch === '\r') return '␍'
    const code = ch.charCodeAt(0)
    if (code < 0x20) return String.fromCharCode(0x2400 + code)
    if (code === 0x7f) return '␡'
    return '⍽'
  })
}

/** Labels longer than this many characters (code points) are cut to LABEL_MAX - 1 and '…'; their title keeps the whole token. */
export const LABEL_MAX = 12

export function shortLabel(s: string, max = LABEL_MAX): string {
  const cps = Array.from(s)
  return cps.length <= max ? s : cps.slice(0, max - 1).join('') + '…'
}

/** A token label: the visible, possibly shortened text; the title has the position and the whole token (JSON string). */
function tokSpan(piece: string, i: number, what = 'position'): string {
  return `<span class="tok" data-i="${i}" title="${esc(`${what} ${i}: ${showPiece(piece)}`)}">${esc(shortLabel(visibleToken(piece)))}</span>`
}

// --- images --------------------------------------------------------------------------------------

/** zlib format with stored (uncompressed) deflate blocks and the Adler-32 trailer: a deflate with no dependency. */
export function storedDeflate(raw: Uint8Array): Uint8Array {
  const blocks = Math.max(1, Math.ceil(raw.length / 65535))
  const out = new Uint8Array(2 + blocks * 5 + raw.length + 4)
  out[0] = 0x78
  out[1] = 0x01
  let o = 2
  for (let b = 0; b < blocks; b++) {
    const s = b * 65535, n = Math.min(65535, raw.length - s)
    out[o] = b === blocks - 1 ? 1 : 0
    out[o + 1] = n & 0xff
    out[o + 2] = n >>> 8
    out[o + 3] = ~n & 0xff
    out[o + 4] = (~n >>> 8) & 0xff
    out.set(raw.subarray(s, s + n), o + 5)
    o += 5 + n
  }
  let a = 1, d = 0
  for (let i = 0; i < raw.length; i++) {
    a = (a + raw[i]) % 65521
    d = (d + a) % 65521
  }
  new DataView(out.buffer).setUint32(o, ((d << 16) | a) >>> 0)
  return out
}

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length)
  const view = new DataView(out.buffer)
  view.setUint32(0, data.length)
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i)
  out.set(data, 8)
  view.setUint32(8 + data.length, crc32Table(out.subarray(4, 8 + data.length)))
  return out
}

function base64(bytes: Uint8Array): string {
  let s = ''
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(s)
}

/** An 8-bit RGB PNG (sRGB, no filtering) of w × h pixels, rgb row-major, as a data: URI. */
export function pngDataUri(w: number, h: number, rgb: Uint8Array, deflate: Deflate = storedDeflate): string {
  const stride = w * 3 + 1
  const raw = new Uint8Array(stride * h)
  for (let y = 0; y < h; y++) raw.set(rgb.subarray(y * w * 3, (y + 1) * w * 3), y * stride + 1)
  const ihdr = new Uint8Array(13)
  const v = new DataView(ihdr.buffer)
  v.setUint32(0, w)
  v.setUint32(4, h)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 2 // colour type: RGB
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('sRGB', new Uint8Array([0])),
    pngChunk('IDAT', deflate(raw)),
    pngChunk('IEND', new Uint8Array(0)),
  ]
  const png = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    png.set(p, o)
    o += p.length
  }
  return 'data:image/png;base64,' + base64(png)
}

/** Draws a w × h RGB image as a data: URI. */
type Png = (w: number, h: number, rgb: Uint8Array) => string

// --- legends -------------------------------------------------------------------------------------

const PROB_NOTE = 'absolute scale: one colour is one probability in every map on this page (0 = white, 1 = darkest), not scaled to this map'

/** The legend of a probability map: what the value is, 0, the gradient, 1. */
function probLegend(what: string, extra = ''): string {
  return `<div class="legend" data-scale="absolute" title="${esc(PROB_NOTE)}"><span class="what">${esc(what)}</span> <span class="lo">0</span><span class="bar" style="background:${gradient([...PROB_STOPS])}"></span><span class="hi">1</span> <span class="note">absolute scale</span>${extra}</div>`
}

const maskedKey = `<span class="masked"><span class="sw" style="background:${hex(MASKED_RGB)}"></span>masked</span>`

const num = (x: number) => (x === 0 ? '0' : Math.abs(x) >= 1e4 || Math.abs(x) < 1e-3 ? x.toExponential(2) : +x.toPrecision(3) + '')

/** The legend of a per-map value strip: −m, the gradient, +m, and that the scale is this map's own. */
function valueLegend(what: string, m: number): string {
  const note = `per-map scale: ±${num(m)} is max |x| of this vector; colours are not comparable between maps`
  return `<div class="legend" data-scale="per-map" title="${esc(note)}"><span class="what">${esc(what)}</span> <span class="lo">${esc(num(-m))}</span><span class="bar" style="background:${gradient([NEG_RGB, [255, 255, 255], POS_RGB])}"></span><span class="hi">${esc(num(m))}</span> <span class="note">${esc(note)}</span></div>`
}

// --- heatmaps ------------------------------------------------------------------------------------

/** Pixels per cell side, from the longer side of a map: small maps get large cells with readable labels. */
function cellPx(n: number): { cs: number; fs: number } {
  return n <= 24 ? { cs: 16, fs: 11 } : n <= 48 ? { cs: 12, fs: 9 } : { cs: 9, fs: 7 }
}

interface Heat {
  /** Attributes of the figure (data-kind first). */
  attrs: string
  caption: string
  rowTitle: string
  colTitle: string
  /** One label element per row / column. */
  rows: string[]
  cols: string[]
  /** Row-major colours, rows × cols × 3. */
  rgb: Uint8Array
  /** The value under each cell for the hover title (null: none, e.g. masked). */
  values: (number | null)[][]
  what: string
  legend: string
}

function heatmap(h: Heat, png: Png): string {
  const R = h.rows.length, K = h.cols.length
  const { cs, fs } = cellPx(Math.max(R, K))
  return `<figure class="hm" ${h.attrs} style="--cs:${cs}px;--fs:${fs}px"><figcaption>${esc(h.caption)}</figcaption>`
    + `<div class="hm-grid"><div class="corner"><span>${esc(h.colTitle)} →</span><span>↓ ${esc(h.rowTitle)}</span></div>`
    + `<div class="xl">${h.cols.join('')}</div><div class="yl">${h.rows.join('')}</div>`
    + `<img class="heatmap" alt="${esc(`${h.caption}: ${h.rowTitle} × ${h.colTitle}`)}" width="${K * cs}" height="${R * cs}" data-rows="${R}" data-cols="${K}" data-what="${esc(h.what)}" data-v="${esc(JSON.stringify(h.values))}" src="${png(K, R, h.rgb)}"></div>`
    + `${h.legend}</figure>`
}

/** Whether key k is hidden from query q: a later position, or outside a local layer's window. */
const masked = (q: number, k: number, window: number | null) => k > q || (window !== null && q - k >= window)

function attnMaps(m: number[][][], layer: number, window: number | null, pieces: string[], png: Png): string {
  return m
    .map((rows, h) => {
      const R = rows.length, K = rows[0].length, q0 = K - R
      const rgb = new Uint8Array(R * K * 3)
      const values: (number | null)[][] = []
      for (let r = 0; r < R; r++) {
        const vr: (number | null)[] = []
        for (let k = 0; k < K; k++) {
          const hide = masked(q0 + r, k, window)
          rgb.set(hide ? MASKED_RGB : probRgb(rows[r][k]), (r * K + k) * 3)
          vr.push(hide ? null : +rows[r][k].toFixed(4))
        }
        values.push(vr)
      }
      return heatmap({
        attrs: `data-kind="attention" data-layer="${layer}" data-head="${h}"`,
        caption: `head ${h}`,
        rowTitle: 'query',
        colTitle: 'key',
        rows: Array.from({ length: R }, (_, r) => tokSpan(pieces[q0 + r] ?? '', q0 + r)),
        cols: Array.from({ length: K }, (_, k) => tokSpan(pieces[k] ?? '', k)),
        rgb,
        values,
        what: 'p',
        legend: probLegend('attention probability', maskedKey),
      }, png)
    })
    .join('')
}

/** A vector as a one-row strip on its own diverging scale: the token it belongs to down the side, dimensions across. */
function strip(v: number[] | undefined, label: string, pieces: string[], png: Png): string {
  if (!v || v.length === 0) return ''
  let m = 0
  for (const x of v) if (Number.isFinite(x)) m = Math.max(m, Math.abs(x))
  const n = v.length, rgb = new Uint8Array(n * 3)
  v.forEach((x, i) => rgb.set(valueRgb(x, m), i * 3))
  const last = pieces.length - 1
  return `<figure class="hm strip" data-kind="vector" data-dims="${n}"><figcaption>${esc(label)}</figcaption>`
    + `<div class="strip-grid"><div class="yl">${tokSpan(pieces[last] ?? '', last)}</div>`
    + `<img class="heatmap" alt="${esc(label)}" height="16" data-rows="1" data-cols="${n}" data-what="x" data-v="${esc(JSON.stringify([v.map((x) => +x.toPrecision(4))]))}" src="${png(n, 1, rgb)}">`
    + `<span class="corner">↑ token</span><div class="xticks"><span>0</span><span>dimension →</span><span>${n - 1}</span></div></div>`
    + `${valueLegend('value', m)}</figure>`
}

// --- tables --------------------------------------------------------------------------------------

const pct = (p: number) => (p >= 0.1 ? (p * 100).toFixed(0) : (p * 100).toFixed(1)) + '%'

/** A table cell coloured by a probability on the absolute scale (text in black or white to read on it). */
function probCell(g: Guess, title: string, cls = ''): string {
  const c = probRgb(g.prob)
  return `<td class="p${cls ? ' ' + cls : ''}" style="background:${hex(c)};color:${ink(c)}" data-p="${g.prob}" data-id="${g.id}" title="${esc(title)}">`
    + `<span class="tok">${esc(shortLabel(visibleToken(g.text), 10))}</span><small>${pct(g.prob)}</small></td>`
}

const guessText = (top: Guess[]) => top.map((g, i) => `${i + 1}. ${showPiece(g.text)} ${(g.prob * 100).toFixed(2)}%`).join(' · ')

function probTable(top: Guess[], caption: string): string {
  const rows = top
    .map((g, i) => `<tr><td>${i + 1}</td><td class="tok">${esc(showPiece(g.text))}</td><td>${g.id}</td><td class="bar" title="bar length = probability (full width = 1)"><div class="track"><div style="width:${(Math.min(1, Math.max(0, g.prob)) * 100).toFixed(2)}%;background:${probColor(g.prob)}"></div></div></td><td>${(g.prob * 100).toFixed(2)}%</td></tr>`)
    .join('')
  return `<table class="top"><caption>${esc(caption)}</caption><tr><th>#</th><th>token</th><th>id</th><th>p (bar: 0 … 1)</th><th>p</th></tr>${rows}</table>`
}

/** Layers down, positions across: the top token of each layer's logit lens at each position, coloured by its probability. */
function lensGrid(g: LensGrid, pieces: string[], next: Guess | undefined, nLayer: number): string {
  const final = g.top[nLayer - 1], T = pieces.length
  const head = g.positions.map((p) => `<th scope="col" class="xl">${tokSpan(pieces[p] ?? '', p)}</th>`).join('')
  const body = g.top
    .map((row, l) => `<tr data-layer="${l}"><th scope="row" class="yl">layer ${l}${l === nLayer - 1 ? ' (output)' : ''}</th>${row.map((top, i) => {
      const p = g.positions[i], agree = l < nLayer - 1 && top[0].id === final[i][0].id
      return probCell(top[0], `after layer ${l}, position ${p} (${showPiece(pieces[p] ?? '')}): ${guessText(top)}${agree ? ' (already the final top token)' : ''}`, agree ? 'final' : '')
    }).join('')}</tr>`)
    .join('')
  const foot = g.positions
    .map((p) => (p + 1 < T ? `<td class="next">${tokSpan(pieces[p + 1], p + 1)}</td>` : `<td class="next" title="the model's greedy next token">${next ? `→ ${esc(shortLabel(visibleToken(next.text)))}` : ''}</td>`))
    .join('')
  const legend = probLegend('top-1 probability', ' <span class="final-key"><b>bold, outlined</b>: already the top token of the last layer (the output) there</span>')
  const which = g.positions[0] > 0 ? ` — the last ${g.positions.length} of ${T} positions (${g.positions[0]} … ${T - 1})` : ''
  return `<figure class="lens-grid" data-kind="lens-grid"><figcaption>Top token after each layer at each position (its prediction of the token that follows)${esc(which)}</figcaption>`
    + `<div class="scroll"><table class="lens-grid"><thead><tr><th class="corner">layer ↓ · input token at position →</th>${head}</tr></thead><tbody>${body}</tbody>`
    + `<tfoot><tr><th scope="row" class="yl">next in prompt</th>${foot}</tr></tfoot></table></div>${legend}</figure>`
}

/** Layers down, ranks across: the last token's top-5 after each layer. */
function lensTop5(lens: Stage[], pieces: string[]): string {
  const last = pieces.length - 1
  const rows = lens
    .map((s) => `<tr data-layer="${s.layer}"><th scope="row" class="yl">layer ${s.layer}</th>${s.top!.map((g, i) => probCell(g, `after layer ${s.layer}, last token, rank ${i + 1}: ${showPiece(g.text)} (id ${g.id}) ${(g.prob * 100).toFixed(2)}%`)).join('')}</tr>`)
    .join('')
  const ranks = (lens[0]?.top ?? []).map((_, i) => `<th scope="col">${i + 1}</th>`).join('')
  return `<figure class="lens-top" data-kind="lens-top5"><figcaption>Last token (${esc(showPiece(pieces[last] ?? ''))}, position ${last}): top-5 after each layer</figcaption>`
    + `<div class="scroll"><table class="lens"><thead><tr><th class="corner">layer ↓ · rank →</th>${ranks}</tr></thead><tbody>${rows}</tbody></table></div>${probLegend('probability')}</figure>`
}

// --- the page ------------------------------------------------------------------------------------

/** What a stage's vector is (model.ts puts the last token's row of this tensor into Stage.vector). */
function vectorName(key: string): string {
  if (key === 'embed') return 'embedding'
  if (key === 'ln_f') return 'final LayerNorm output'
  const part = key.replace(/^h\.\d+\./, '')
  return ({ ln_1: 'ln_1 output', attn: 'attention output', mlp: 'MLP hidden activation', out: 'residual stream' } as Record<string, string>)[part] ?? key
}

function stageHtml(s: Stage, pieces: string[], model: StepModel, png: Png): string {
  let body = `<h3>${esc(s.title)}</h3>` + s.text.map((t) => `<p>${esc(t)}</p>`).join('') + `<p class="shapes">${s.shapes.map(esc).join(' · ')}</p>`
  if (s.key === 'tokens') body += `<div class="pieces">${pieces.map((p, i) => tokSpan(p, i)).join('')}</div>`
  if (s.attn && s.layer !== null) {
    const kind = model.arch.layers[s.layer]
    const window = kind?.attention === 'local' ? kind.window ?? null : null
    body += `<p class="note">Each map: one row per query token (the token that attends), one column per key token (attended to); a row's probabilities sum to 1. Grey cells are masked${window !== null ? ` (later tokens, and those outside the window of ${window})` : ' (later tokens)'}.</p>`
    body += `<div class="heads">${attnMaps(s.attn, s.layer, window, pieces, png)}</div>`
  }
  if (s.vector) body += strip(s.vector, `${vectorName(s.key)} (last token)`, pieces, png)
  if (s.top && s.key === 'logits') body += probTable(s.top, 'next-token probabilities')
  else if (s.top) body += probTable(s.top, `logit lens after layer ${s.layer}`)
  body += `<pre>${esc(s.lines.join('\n'))}</pre>`
  return `<div class="stage" data-key="${esc(s.key)}">${body}</div>`
}

/**
 * The stages as HTML sections: the intro (tokenization, embeddings), one <section class="layer"> per layer
 * (ln_1, attention heatmaps per head, MLP, residual + logit lens), the logit lens (grid and top-5), and the
 * final norm with the next-token probabilities. Style it with STEP_CSS; STEP_JS adds the hover titles.
 */
export function stepSectionsHtml(run: StepRun, model: StepModel, pieces: string[], opts: StepHtmlOptions = {}): string {
  const deflate = opts.deflate ?? storedDeflate
  const png: Png = (w, h, rgb) => pngDataUri(w, h, rgb, deflate)
  const a = model.arch
  const parts: string[] = []
  const before = run.stages.filter((s) => s.layer === null && s.key !== 'ln_f' && s.key !== 'logits')
  parts.push(`<section class="intro">${before.map((s) => stageHtml(s, pieces, model, png)).join('')}</section>`)
  for (let l = 0; l < a.nLayer; l++)
    parts.push(`<section class="layer" data-layer="${l}"><h2>Layer ${l}${a.layers[l].attention === 'local' ? ` (local, window ${a.layers[l].window})` : ''}</h2>${run.stages.filter((s) => s.layer === l).map((s) => stageHtml(s, pieces, model, png)).join('')}</section>`)
  const lens = run.stages.filter((s) => s.layer !== null && s.top)
  const finalTop = run.stages.find((s) => s.key === 'logits')?.top?.[0]
  let lensHtml = `<section class="lens"><h2>Logit lens</h2><p>The model's final norm and LM head applied to the residual stream after each layer: what the model would predict if it stopped there. Read down a column to watch the prediction form layer by layer; the last layer's row is the model's output.</p>`
  if (run.lens) lensHtml += lensGrid(run.lens, pieces, finalTop, a.nLayer)
  if (lens.length) lensHtml += lensTop5(lens, pieces)
  parts.push(lensHtml + '</section>')
  const after = run.stages.filter((s) => s.key === 'ln_f' || s.key === 'logits')
  parts.push(`<section class="final">${after.map((s) => stageHtml(s, pieces, model, png)).join('')}</section>`)
  return parts.join('\n')
}

/** The page's style sheet (the CLI's page puts it in <style>; the demo page in the step view's shadow root). */
export const STEP_CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;max-width:1200px;color:#222}
section{border-top:2px solid #ccc;padding:.5em 0}.stage{margin:.8em 0}h3{margin:.3em 0}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:12px}.shapes,.note{color:#666}.shapes{font-family:monospace}
.tok{font-family:monospace;white-space:pre}
.pieces span{display:inline-block;border:1px solid #89a;background:#eef4ff;margin:2px;padding:1px 4px}
.heads{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start;overflow-x:auto}
figure{margin:.4em 0}figcaption{font-weight:600;font-size:12px;margin-bottom:2px}
.hm{display:inline-block;vertical-align:top}
.hm-grid{display:grid;grid-template-columns:auto auto;justify-content:start}
.hm .corner{display:flex;flex-direction:column;justify-content:flex-end;align-items:flex-end;font-size:10px;color:#777;padding:0 4px 2px 0;white-space:nowrap}
.hm .xl{display:flex;align-items:flex-end}.hm .yl{display:flex;flex-direction:column}
.hm .xl .tok{writing-mode:vertical-rl;transform:rotate(180deg);flex:0 0 var(--cs);width:var(--cs);line-height:var(--cs);padding-top:3px;text-align:left}
.hm .yl .tok{height:var(--cs);line-height:var(--cs);text-align:right;padding-right:3px}
.hm .tok{font-size:var(--fs);white-space:nowrap;overflow:hidden;color:#333}
img.heatmap{display:block;image-rendering:crisp-edges;image-rendering:pixelated;outline:1px solid #aaa}
.strip{display:block}.strip-grid{display:grid;grid-template-columns:auto 1fr;align-items:center;--cs:16px;--fs:11px}
.strip img.heatmap{width:100%;height:16px}.strip .corner{font-size:10px;color:#777;text-align:right;padding-right:3px}
.xticks{display:flex;justify-content:space-between;font-size:10px;color:#777}
.legend{display:flex;flex-wrap:wrap;align-items:center;gap:4px;font-size:11px;color:#444;margin-top:4px}
.legend .bar{display:inline-block;width:100px;height:10px;border:1px solid #999}
.legend .sw{display:inline-block;width:10px;height:10px;border:1px solid #999;margin:0 3px 0 6px;vertical-align:middle}
.legend .note{color:#777}.scroll{overflow-x:auto}
table{border-collapse:collapse}table.top td.bar{width:200px}table.top td.bar .track{background:#eee;height:10px}table.top td.bar .track div{height:10px;min-width:1px}
table.lens-grid th,table.lens-grid td,table.lens th,table.lens td{border:1px solid #ddd;padding:2px 5px;text-align:center;vertical-align:middle}
td.p .tok{display:block;white-space:pre}td.p small{display:block;font-size:10px;opacity:.85}
td.p.final{font-weight:700;outline:2px solid #f5a623;outline-offset:-2px}
th.yl{text-align:right;white-space:nowrap;font-weight:normal}th.corner{font-size:10px;color:#777;font-weight:normal}
table.lens-grid th.xl .tok{font-size:12px}td.next{font-size:12px;color:#555}`

/** The hover titles: a script over `document` (any root with querySelectorAll: the demo runs it on a shadow root). */
export const STEP_JS = `for(const img of document.querySelectorAll('img.heatmap')){const fig=img.closest('figure'),v=JSON.parse(img.dataset.v||'null'),R=+img.dataset.rows,K=+img.dataset.cols,
ys=fig.querySelectorAll('.yl .tok'),xs=fig.querySelectorAll('.xl .tok');img.addEventListener('mousemove',(e)=>{const b=img.getBoundingClientRect(),
c=Math.min(K-1,Math.max(0,Math.floor((e.clientX-b.left)/b.width*K))),r=Math.min(R-1,Math.max(0,Math.floor((e.clientY-b.top)/b.height*R))),x=v&&v[r]?v[r][c]:undefined;
img.title=(ys[r]?ys[r].title:'row '+r)+' → '+(xs.length===K?xs[c].title:'dimension '+c)+': '+(x===null?'masked':img.dataset.what+' = '+x)})}`

/** The model line and the colour note under the title. */
export function stepHeaderHtml(model: StepModel, prompt: string): string {
  const a = model.arch
  return `<p>${esc(model.info.dir)} · ${esc(a.family)} · ${a.nLayer} layers · ${a.nHead} heads · C ${a.nEmbd} · prompt ${esc(JSON.stringify(prompt))}</p>
<p class="note">Colours: probabilities (attention, logit lens) use one absolute scale on the whole page, white = 0 to dark blue = 1; vector strips are scaled per map (blue negative, red positive, ±max |x| of that vector). Hover a map for the exact value.</p>`
}

/** One self-contained page (inline CSS, JS and images; no network): what `refgpt step --html` writes. */
export function renderStepHtml(run: StepRun, model: StepModel, pieces: string[], prompt: string, opts: StepHtmlOptions = {}): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>refgpt step: ${esc(prompt)}</title><style>${STEP_CSS}</style></head><body>
<h1>refgpt step</h1>${stepHeaderHtml(model, prompt)}
${stepSectionsHtml(run, model, pieces, opts)}
<script>${STEP_JS.replace(/<\//g, '<\\/')}</script></body></html>\n`
}
