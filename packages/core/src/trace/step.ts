// The step-through: one real forward pass, traced, turned into a list of stages a person can read one at
// a time (the CLI's `refgpt step` TUI), all at once (--all) or as HTML (step-html.ts: `refgpt step --html`
// and the browser demo's step-through). Nothing here computes the network: every number shown comes from
// the model's own tracer on its device — the logit lens too (the forward's logitLens option runs the
// model's final norm and LM head after every layer). No Node built-in: a page runs it in its worker.

import { UsageError } from '../errors.js'
import { softmax, topK as topIndices } from '../generation/logits.js'
import type { Model } from '../models/model.js'
import type { Tokenizer } from '../tokenizers/index.js'
import { collectTrace, type TraceEvent, type Tracer } from './tracer.js'

export const MAX_TOKENS = 256
/**
 * The most positions (the last ones of the prompt) that get a logit lens of their own, for the HTML
 * page's layer × position view. Each but the last costs one more one-token forward with the final norm
 * and LM head after every layer: nLayer × nEmbd × nVocab multiply-adds in the heads alone.
 */
export const LENS_POSITIONS = 64
/** Multiply-adds the default spends on those extra lens heads (about a second or two on the wasm device). */
export const LENS_BUDGET = 4e9

/**
 * The default number of positions with a logit lens: the last one (free: the main pass has it) and as many
 * earlier ones as LENS_BUDGET pays for, at most LENS_POSITIONS. The tiny and default models get 64;
 * GPT-2 small (12 × 768 × 50257 per position) 9; GPT-J 6B 1.
 */
export function defaultLensPositions(a: { nLayer: number; nEmbd: number; nVocab: number }): number {
  return Math.max(1, Math.min(LENS_POSITIONS, 1 + Math.floor(LENS_BUDGET / (a.nLayer * a.nEmbd * a.nVocab))))
}
/** Tokens kept per cell of that view (the first is shown, the rest go into the cell's title). */
export const LENS_TOP = 3

export interface Guess {
  id: number
  text: string
  prob: number
  logit: number
}

export interface Stage {
  /** Stable key, e.g. 'tokens', 'embed', 'h.0.attn', 'h.0.out', 'ln_f', 'logits'. */
  key: string
  title: string
  layer: number | null
  /** Plain-language explanation (two or three lines). */
  text: string[]
  /** Tensor shapes, e.g. 'h.0.ln_1 [5, 32]'. */
  shapes: string[]
  /** Compact numbers: norms, sparklines, attention rows, top-k. */
  lines: string[]
  /** For the HTML view. */
  vector?: number[]
  /** Attention probabilities per head, [nHead][T][nKeys] (attention stages). */
  attn?: number[][][]
  /** Top-5 (logit-lens and logits stages). */
  top?: Guess[]
}

type Traced = TraceEvent & { data: Float32Array }

/** The k most likely tokens of one row of logits, with their softmax probabilities. */
export function topK(logits: ArrayLike<number>, k: number, tok: Tokenizer): Guess[] {
  const probs = new Float64Array(logits.length)
  softmax(logits, probs)
  return topIndices(logits, k).map((id) => ({ id, text: pieceText(tok, id), prob: probs[id], logit: logits[id] }))
}

export function pieceText(tok: Tokenizer, id: number): string {
  try {
    return tok.decode([id])
  } catch {
    return ''
  }
}

const BARS = '▁▂▃▄▅▆▇█'

/** A sparkline of a vector, averaged into at most `width` columns, scaled min..max. */
export function sparkline(v: ArrayLike<number>, width = 64): string {
  const n = v.length
  const cols = Math.min(width, n)
  const vals: number[] = []
  for (let c = 0; c < cols; c++) {
    const a = Math.floor((c * n) / cols), b = Math.max(a + 1, Math.floor(((c + 1) * n) / cols))
    let s = 0
    for (let i = a; i < b; i++) s += v[i]
    vals.push(s / (b - a))
  }
  const lo = Math.min(...vals), hi = Math.max(...vals)
  return vals.map((x) => BARS[hi > lo ? Math.min(7, Math.floor(((x - lo) / (hi - lo)) * 8)) : 3]).join('')
}

/** Attention probabilities as bars on an absolute 0..1 scale ('·' = exactly 0, a masked key). */
export function attnBar(p: ArrayLike<number>): string {
  let s = ''
  for (let i = 0; i < p.length; i++) s += p[i] === 0 ? '·' : BARS[Math.min(7, Math.floor(p[i] * 8))]
  return s
}

function norm(v: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < v.length; i++) s += v[i] * v[i]
  return Math.sqrt(s)
}

function stats(v: ArrayLike<number>): string {
  let lo = Infinity, hi = -Infinity, s = 0
  for (let i = 0; i < v.length; i++) {
    lo = Math.min(lo, v[i])
    hi = Math.max(hi, v[i])
    s += v[i]
  }
  return `‖x‖ ${norm(v).toFixed(3)}  mean ${(s / v.length).toFixed(4)}  min ${lo.toFixed(3)}  max ${hi.toFixed(3)}`
}

const fmtShape = (name: string, e: Traced | undefined) => (e ? `${name} [${e.shape.join(', ')}]` : `${name} (not traced)`)
const pct = (p: number) => `${(p * 100).toFixed(2)}%`
export const showPiece = (s: string) => JSON.stringify(s)

export function fmtTop(top: Guess[]): string[] {
  return top.map((g, i) => `  ${i + 1}. ${showPiece(g.text).padEnd(16)} (id ${g.id})  p ${pct(g.prob).padStart(7)}  logit ${g.logit.toFixed(3)}`)
}

/** The last row of a [T, X] tensor. */
function lastRow(e: Traced): Float32Array {
  const w = e.shape[e.shape.length - 1]
  const T = e.shape[0]
  return e.data.subarray((T - 1) * w, T * w)
}

/** The logit lens at several positions: what each layer's residual stream predicts at each position. */
export interface LensGrid {
  /** Prompt positions with a lens, ascending: the last min(T, lensPositions) of the prompt. */
  positions: number[]
  /**
   * top[l][i]: the LENS_TOP most likely next tokens after layer l at positions[i], softmax
   * probabilities over the whole vocabulary. The last position's come from the main pass (the same
   * numbers as the stages' top-5), the others from a second pass that feeds the prompt one token at a
   * time so that every position is the last row of a forward, where the model's logit lens reads.
   */
  top: Guess[][][]
}

export interface StepRun {
  ids: number[]
  stages: Stage[]
  /** Greedy next token (argmax of the final logits). */
  next: number
  /** The per-position logit lens (absent when the model emitted none). */
  lens?: LensGrid
}

export interface StepOptions {
  /** How many of the last positions get a logit lens of their own (default defaultLensPositions(arch); 1 = the last only). */
  lensPositions?: number
}

/**
 * The logit lens at positions start .. end-1, [nLayer][end - start]: a fresh session runs ids[0 .. start)
 * as one chunk, then one token per forward with the logit lens on (the model's lens reads the last row of
 * a forward). Only the h.L.lens events are read; the tracer reads nothing else.
 */
async function lensAt(model: Model, tok: Tokenizer, ids: number[], start: number, end: number): Promise<Guess[][][]> {
  const n = model.arch.nLayer
  const out: Guess[][][] = Array.from({ length: n }, () => new Array<Guess[]>(end - start))
  if (end <= start) return out
  const session = model.createSession({ maxBatchTokens: Math.max(1, start) })
  const reads: Promise<void>[] = []
  try {
    if (start > 0) await session.forward(ids.slice(0, start), 0)
    const tracer: Tracer = (e) => {
      if (e.layer === null || e.name !== `h.${e.layer}.lens`) return
      const l = e.layer, i = e.pos0 - start
      const r = e.read().then((d) => void (out[l][i] = topK(d, LENS_TOP, tok)))
      r.catch(() => {})
      reads.push(r)
    }
    for (let t = start; t < end; t++) await session.forward([ids[t]], t, { tracer, logitLens: true })
    await Promise.all(reads)
  } finally {
    session.dispose()
  }
  return out
}

const FAMILY_NAMES: Record<string, string> = { gpt2: 'GPT-2', gpt_neo: 'GPT-Neo', gptj: 'GPT-J', gpt3: 'ModelScope GPT-3' }

/** Runs the model on ids (from position 0) with a tracer (and the logit lens) and builds the stages. */
export async function runStages(model: Model, tok: Tokenizer, ids: number[], opts: StepOptions = {}): Promise<StepRun> {
  if (ids.length === 0) throw new UsageError({ where: 'refgpt step', what: 'the prompt has no tokens', expected: 'a non-empty PROMPT' })
  if (ids.length > Math.min(MAX_TOKENS, model.arch.nPositions))
    throw new UsageError({ where: 'refgpt step', what: 'too many tokens to step through', expected: `at most ${Math.min(MAX_TOKENS, model.arch.nPositions)}`, found: String(ids.length) })
  const { tracer, settle } = collectTrace()
  const session = model.createSession({ maxBatchTokens: ids.length })
  let logits: Float32Array
  try {
    logits = (await session.forward(ids, 0, { tracer, logitLens: true })).slice()
  } finally {
    session.dispose()
  }
  const tensors = await settle()
  const a = model.arch, traits = model.traits
  const lensSource = `${a.family === 'gpt3' ? 'final_layernorm' : 'ln_f'}, ${a.tiedLmHead ? (a.family === 'gpt3' ? 'word_embeddings^T' : 'wte^T') : 'lm_head'}${traits.lmHeadBias ? ' + bias' : ''}`
  const T = ids.length, C = a.nEmbd
  const fam = FAMILY_NAMES[a.family] ?? a.family
  const get = (n: string) => tensors.get(n) as Traced | undefined
  const stages: Stage[] = []
  const pieces = ids.map((id) => pieceText(tok, id))
  const lastPiece = showPiece(pieces[T - 1])

  stages.push({
    key: 'tokens',
    title: 'Tokenization',
    layer: null,
    text: [
      `The ${tok.kind} tokenizer cuts the prompt into ${T} pieces; each piece is a row id of the embedding table.`,
      `Every later stage works on one vector per piece; the view follows the last piece, ${lastPiece}, whose output predicts the next token.`,
    ],
    shapes: [`ids [${T}]`],
    lines: ids.map((id, i) => `  [${i}] ${showPiece(pieces[i]).padEnd(18)} id ${id}${tok.idToToken(id) !== undefined ? `  (${tok.idToToken(id)})` : ''}`),
  })

  const emb = get('embed')
  if (emb) {
    const row = lastRow(emb)
    stages.push({
      key: 'embed',
      title: 'Embeddings',
      layer: null,
      text:
        traits.positions === 'learned'
          ? [
              `x = wte[id] + wpe[position]: each token's row of the token table plus a learned row for its position (${fam}).`,
              `This sum is the start of the residual stream that every layer reads and adds to.`,
            ]
          : [
              `x = wte[id]: ${fam} has no position table; positions enter later through rotary embeddings,`,
              `which rotate the first ${a.rotaryDim} dims of each head's q and k by an angle that grows with the position.`,
            ],
      shapes: [fmtShape('embed', emb), `wte [${a.nVocab}, ${C}]`, ...(traits.positions === 'learned' ? [`wpe [${a.nPositions}, ${C}]`] : [])],
      lines: [`last token ${lastPiece}: ${stats(row)}`, `  ${sparkline(row)}`],
      vector: Array.from(row),
    })
  }

  for (let l = 0; l < a.nLayer; l++) {
    const kind = a.layers[l]
    const ln1 = get(`h.${l}.ln_1`)
    if (ln1) {
      const row = lastRow(ln1)
      stages.push({
        key: `h.${l}.ln_1`,
        title: `Layer ${l} · ln_1`,
        layer: l,
        text: [
          `LayerNorm rescales each token's vector to mean 0 and variance 1, then applies a learned gain and bias.`,
          traits.residual === 'parallel'
            ? `${fam} has only this one norm per block: attention and the MLP both read its output.`
            : `The attention sub-layer reads this normalised copy; the residual stream itself is left unchanged.`,
        ],
        shapes: [fmtShape(`h.${l}.ln_1`, ln1)],
        lines: [`last token: ${stats(row)}`, `  ${sparkline(row)}`],
        vector: Array.from(row),
      })
    }

    const probs = get(`h.${l}.attn.probs`)
    const out = get(`h.${l}.attn.out`)
    const text: string[] = [`Each of the ${a.nHead} heads compares the last token's query with the keys of the tokens so far and takes a weighted mix of their values.`]
    if (a.family === 'gpt_neo') text.push(`GPT-Neo does not divide q·k by √d (scale ${kind.scale}).`)
    else text.push(`Scores are q·k × ${kind.scale.toPrecision(4)} (1/√${a.headDim}${kind.scale * Math.sqrt(a.headDim) < 0.999 ? `, and ÷ (layer+1)` : ''}), then a causal softmax.`)
    if (kind.attention === 'local') text.push(`This is a local layer: the token sees only the last ${kind.window} positions.`)
    else if (a.family === 'gpt_neo') text.push(`This is a global layer: the token sees every earlier position.`)
    if (traits.positions === 'rotary') text.push(`q and k were rotated (rotary, ${a.rotaryDim} dims per head) so q·k depends on the distance between tokens.`)
    const lines: string[] = []
    let attn: number[][][] | undefined
    if (probs) {
      const [H, Tq, nK] = probs.shape
      attn = []
      lines.push(`attention of the last token ${lastPiece} over positions 0..${nK - 1} (█ = 1, · = masked):`)
      for (let h = 0; h < H; h++) {
        const rows: number[][] = []
        for (let t = 0; t < Tq; t++) rows.push(Array.from(probs.data.subarray((h * Tq + t) * nK, (h * Tq + t + 1) * nK)))
        attn.push(rows)
        const last = rows[Tq - 1]
        let best = 0
        for (let k = 1; k < nK; k++) if (last[k] > last[best]) best = k
        lines.push(`  head ${String(h).padStart(2)} ${attnBar(last)}  max ${last[best].toFixed(2)} on [${best}] ${showPiece(pieces[best])}`)
      }
    }
    if (out) {
      const row = lastRow(out)
      lines.push(`output (after the projection), last token: ${stats(row)}`, `  ${sparkline(row)}`)
    }
    stages.push({
      key: `h.${l}.attn`,
      title: `Layer ${l} · attention`,
      layer: l,
      text,
      shapes: [fmtShape(`h.${l}.attn.q`, get(`h.${l}.attn.q`)), fmtShape(`h.${l}.attn.k`, get(`h.${l}.attn.k`)), fmtShape(`h.${l}.attn.v`, get(`h.${l}.attn.v`)),
        fmtShape(`h.${l}.attn.probs`, probs), fmtShape(`h.${l}.attn.out`, out)],
      lines,
      attn,
      vector: out ? Array.from(lastRow(out)) : undefined,
    })

    const hid = get(`h.${l}.mlp.hidden`)
    const mo = get(`h.${l}.mlp.out`)
    const ln2 = get(`h.${l}.ln_2`)
    const mlpLines: string[] = []
    if (ln2) mlpLines.push(`ln_2, last token: ${stats(lastRow(ln2))}`)
    if (hid) {
      const r = lastRow(hid)
      let active = 0
      for (let i = 0; i < r.length; i++) if (r[i] > 0) active++
      mlpLines.push(`hidden (${a.act}), last token: ${active}/${r.length} units positive  ${stats(r)}`, `  ${sparkline(r)}`)
    }
    if (mo) mlpLines.push(`MLP output, last token: ${stats(lastRow(mo))}`, `  ${sparkline(lastRow(mo))}`)
    stages.push({
      key: `h.${l}.mlp`,
      title: `Layer ${l} · MLP`,
      layer: l,
      text: [
        `The MLP works on each token alone: a ${C}→${a.nInner} projection, the ${a.act} activation, and a ${a.nInner}→${C} projection back.`,
        traits.residual === 'parallel'
          ? `GPT-J adds attention and MLP to the residual in parallel: the MLP reads ln_1's output, not the stream after attention.`
          : `It reads ln_2 of the residual stream after attention was added (sequential block).`,
      ],
      shapes: [...(ln2 ? [fmtShape(`h.${l}.ln_2`, ln2)] : []), fmtShape(`h.${l}.mlp.hidden`, hid), fmtShape(`h.${l}.mlp.out`, mo)],
      lines: mlpLines,
      vector: hid ? Array.from(lastRow(hid)) : undefined,
    })

    const res = get(`h.${l}.out`)
    const lens = get(`h.${l}.lens`)
    if (res && lens) {
      const row = lastRow(res)
      const top = topK(lens.data, 5, tok)
      stages.push({
        key: `h.${l}.out`,
        title: `Layer ${l} · residual + logit lens`,
        layer: l,
        text: [
          traits.residual === 'parallel'
            ? `x = x + attn(ln_1 x) + mlp(ln_1 x): both branches are added to the residual stream at once.`
            : `x = x + attn(ln_1 x), then x = x + mlp(ln_2 x): each sub-layer adds its output to the residual stream.`,
          `Logit lens: applying the final norm and LM head (${lensSource}) to the stream now shows what the model would predict if it stopped after layer ${l}.`,
        ],
        shapes: [fmtShape(`h.${l}.out`, res)],
        lines: [`last token: ${stats(row)}`, `  ${sparkline(row)}`, `logit lens after layer ${l}, top-5:`, ...fmtTop(top)],
        vector: Array.from(row),
        top,
      })
    }
  }

  const lnf = get('ln_f')
  if (lnf) {
    const row = lastRow(lnf)
    stages.push({
      key: 'ln_f',
      title: 'Final LayerNorm (ln_f)',
      layer: null,
      text: [`One last LayerNorm on the residual stream after layer ${a.nLayer - 1}; only the last token's row is needed for the next-token prediction.`],
      shapes: [fmtShape('ln_f', lnf)],
      lines: [`last token: ${stats(row)}`, `  ${sparkline(row)}`],
      vector: Array.from(row),
    })
  }

  const top = topK(logits, 5, tok)
  stages.push({
    key: 'logits',
    title: 'Logits → next token',
    layer: null,
    text: [
      a.tiedLmHead ? `logits = ln_f(x) · wte^T: the LM head reuses the token-embedding table (tied weights).` : `logits = ln_f(x) · lm_head^T${traits.lmHeadBias ? ' + bias' : ''}: ${fam} has its own LM head (${a.nVocab} rows).`,
      `Softmax turns the ${a.nVocab} logits into probabilities; greedy decoding picks the first entry (press t to append it).`,
    ],
    shapes: [`logits [${a.nVocab}] (last token)`],
    lines: ['top-5 next tokens:', ...fmtTop(top)],
    top,
  })

  // The logit lens at every position of the last lensPositions: this pass's lens for the last one,
  // a second pass for the earlier ones.
  let lens: LensGrid | undefined
  const lastLens = Array.from({ length: a.nLayer }, (_, l) => get(`h.${l}.lens`))
  if (lastLens.every((e) => e !== undefined)) {
    const asked = opts.lensPositions ?? defaultLensPositions(a)
    const want = Math.max(1, Math.min(T, Number.isFinite(asked) ? Math.floor(asked) : defaultLensPositions(a)))
    const start = T - want
    const grid = await lensAt(model, tok, ids, start, T - 1)
    lastLens.forEach((e, l) => (grid[l][T - 1 - start] = topK(e!.data, LENS_TOP, tok)))
    lens = { positions: Array.from({ length: want }, (_, i) => start + i), top: grid }
  }
  return { ids, stages, next: top[0].id, lens }
}

/** One text block for a stage (the TUI and --all print the same). */
export function renderStage(s: Stage, i: number, n: number): string[] {
  return [`== [${i + 1}/${n}] ${s.title} ==`, ...s.text, '', 'shapes: ' + s.shapes.join('  '), '', ...s.lines]
}
