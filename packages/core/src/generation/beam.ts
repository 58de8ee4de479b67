// Beam search exactly as transformers 4.40 (_beam_search + BeamSearchScorer + BeamHypotheses):
//   each step: scores = log_softmax(logits) -> logits processors -> + running beam score;
//   the top 2 x num_beams (beam, token) candidates are scanned best first: an eos candidate ranked
//   below num_beams is skipped, otherwise it closes a hypothesis scored sum_logprobs / gen_len^length_penalty
//   (gen_len counts the eos); other candidates fill the next num_beams beams.
//   Initially beam 0 has score 0 and the others -1e9, so the first step expands one beam.
//   A prompt is done when num_beams hypotheses are closed and (early_stopping true) or the best open
//   score cannot beat the worst closed one (early_stopping false). At max_length the open beams are closed.
//   The search also stops at the context (model.info.maxContext positions): a hypothesis closed there
//   before the requested length ends with finishReason 'context' (generate() has refused a prompt that
//   leaves no room for a new token).
// Each beam owns a KV-cache slot of a session; reordering copies the chosen beams' caches into a
// second set of slots. The session is the caller's (opts.session: slots acquired, then released) or
// one made for the call.

import type { Session } from '../models/decoder.js'
import type { Model } from '../models/model.js'
import { eosList, maxLength, type GenerationConfig } from './config.js'
import { logSoftmax, topK } from './logits.js'
import { buildLogitsProcessor } from './processors.js'
import type { GenerateResult, GeneratedSequence } from './types.js'

interface Hypothesis {
  score: number
  ids: number[]
}

/** HF BeamHypotheses: the best num_beams finished sequences of one prompt. */
class Hypotheses {
  readonly beams: Hypothesis[] = []
  worst = 1e9
  constructor(
    readonly numBeams: number,
    readonly lengthPenalty: number,
    readonly earlyStopping: boolean | 'never',
  ) {}

  add(ids: number[], sumLogprobs: number, generatedLen: number): void {
    const score = sumLogprobs / generatedLen ** this.lengthPenalty
    if (this.beams.length < this.numBeams || score > this.worst) {
      this.beams.push({ score, ids })
      if (this.beams.length > this.numBeams) {
        const sorted = this.beams.map((b, i) => [b.score, i] as const).sort((a, b) => a[0] - b[0])
        this.beams.splice(sorted[0][1], 1)
        this.worst = sorted[1][0]
      } else this.worst = Math.min(score, this.worst)
    }
  }

  isDone(bestSumLogprobs: number, generatedLen: number): boolean {
    if (this.beams.length < this.numBeams) return false
    if (this.earlyStopping === true) return true
    if (this.earlyStopping === false) return this.worst >= bestSumLogprobs / generatedLen ** this.lengthPenalty
    // "never": the best attainable score given the maximum length is not known here; HF uses max_length
    return false
  }
}

export interface BeamOptions {
  onToken?: (id: number, row: number) => void
  session?: Session
}

export async function beamSearch(model: Model, prompts: ArrayLike<number>[], c: GenerationConfig, opts: BeamOptions = {}): Promise<GenerateResult> {
  const session = opts.session ?? model.createSession()
  const acquired: number[] = []
  try {
    return await search(model, session, acquired, prompts, c, opts.onToken)
  } finally {
    if (opts.session) for (const s of acquired) session.release(s)
    else session.dispose()
  }
}

async function search(model: Model, session: Session, acquired: number[], prompts: ArrayLike<number>[], c: GenerationConfig,
  onToken?: (id: number, row: number) => void): Promise<GenerateResult> {
  const nb = c.num_beams
  const V = model.arch.nVocab
  const eos = eosList(c)
  const pad = c.pad_token_id ?? eos[0] ?? 0
  const padded = prompts.reduce((m, p) => Math.max(m, p.length), 0)
  const requested = maxLength(c, padded)
  const limit = Math.min(requested, model.info.maxContext)
  const atLimit: GeneratedSequence['finishReason'] = limit < requested ? 'context' : 'length'
  const chain = buildLogitsProcessor({ ...c, do_sample: false }, { promptLength: padded, eosTokenId: eos.length ? eos : null, vocabSize: V })
  // 2 x num_beams slots per prompt: the current beams' caches and the next step's
  const take = () => {
    const s = session.acquire()
    acquired.push(s)
    return s
  }
  const keep = Math.max(2, 1 + eos.length) * nb
  const logp = new Float64Array(nb * V)
  const scores = new Float32Array(V)
  const step = new Int32Array(1)
  const t0 = performance.now()
  let prefillMs = 0
  const out: GeneratedSequence[] = []

  for (let pi = 0; pi < prompts.length; pi++) {
    const prompt = prompts[pi]
    const start = padded - prompt.length
    if (pi === 0) {
      for (let i = 0; i < 2 * nb; i++) take()
    }
    let slots = acquired.slice(0, nb)
    let spare = acquired.slice(nb, 2 * nb)
    const first = (await session.forward(prompt, 0, { slot: slots[0] })).slice()
    for (let i = 1; i < nb; i++) session.copySlot(slots[0], slots[i], prompt.length)
    prefillMs += performance.now() - t0
    let beams = Array.from({ length: nb }, () => [...new Array<number>(start).fill(pad), ...Array.from(prompt)])
    let beamScores: number[] = Array.from({ length: nb }, (_, i) => (i === 0 ? 0 : -1e9))
    const hyps = new Hypotheses(nb, c.length_penalty, c.early_stopping)
    let done = false
    let curLen = padded

    while (!done && curLen < limit) {
      // log-probabilities of every (beam, token), plus the beam's running score
      for (let i = 0; i < nb; i++) {
        let logits: Float32Array
        if (curLen === padded) logits = first
        else {
          step[0] = beams[i][curLen - 1]
          logits = await session.forward(step, curLen - 1 - start, { slot: slots[i] })
        }
        logSoftmax(logits, scores)
        chain.apply(scores, beams[i])
        for (let v = 0; v < V; v++) logp[i * V + v] = scores[v] + beamScores[i]
      }
      const cand = topK(logp, keep)
      // scan the candidates best first (BeamSearchScorer.process)
      const nextBeams: number[][] = [], nextScores: number[] = [], nextFrom: number[] = []
      for (let rank = 0; rank < cand.length && nextBeams.length < nb; rank++) {
        const idx = cand[rank], beam = Math.floor(idx / V), token = idx % V, score = logp[idx]
        if (eos.includes(token)) {
          if (rank >= nb) continue
          hyps.add(beams[beam].slice(), score, curLen + 1 - padded)
        } else {
          nextBeams.push([...beams[beam], token])
          nextScores.push(score)
          nextFrom.push(beam)
        }
      }
      done = hyps.isDone(logp[cand[0]], curLen + 1 - padded)
      // reorder the caches: next beam j continues old beam nextFrom[j]
      for (let j = 0; j < nextBeams.length; j++) session.copySlot(slots[nextFrom[j]], spare[j], curLen - start)
      ;[slots, spare] = [spare, slots]
      beams = nextBeams
      beamScores = nextScores
      curLen++
      onToken?.(beams[0][curLen - 1], pi)
    }
    // close the open beams (BeamSearchScorer.finalize)
    if (!done) for (let i = 0; i < beams.length; i++) hyps.add(beams[i], beamScores[i], beams[i].length - padded)
    const best = hyps.beams.slice().sort((a, b) => b.score - a.score).slice(0, c.num_return_sequences)
    for (const h of best) {
      const ids = h.ids.length < limit ? [...h.ids, eos[0] ?? pad] : h.ids // HF appends eos to a hypothesis that ended early
      out.push({ ids, newTokens: ids.slice(padded), start, finishReason: ids.length < limit || eos.includes(ids[ids.length - 1]) ? 'eos' : atLimit, score: h.score, prompt: pi })
    }
  }
  // HF pads every returned sequence to the longest one
  const longest = out.reduce((m, s) => Math.max(m, s.ids.length), 0)
  for (const s of out) while (s.ids.length < longest) s.ids.push(pad)
  const decodeMs = performance.now() - t0 - prefillMs
  const newTokens = out.reduce((n, s) => n + s.newTokens.length, 0)
  return {
    sequences: out,
    config: c,
    seed: null,
    timings: { prefillMs, decodeMs, promptTokens: prompts.reduce((n, p) => n + p.length, 0), newTokens },
    ids: out[0].ids,
    newTokens: out[0].newTokens,
    finishReason: out[0].finishReason,
  }
}
