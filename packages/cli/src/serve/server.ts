// refgpt serve: an OpenAI-compatible HTTP server over one loaded model (node:http, no framework).
//
//   POST /v1/completions        prompt (text, texts, token ids), max_tokens, temperature, top_p, n, stop, seed,
//                               stream (SSE), logprobs + echo (the prompt's token log-probabilities: lm-eval)
//   POST /v1/chat/completions   ModelScope GPT-3 (the kuakua robot): the last user message + "|"; HF models: 400
//   GET  /v1/models, POST /tokenize, POST /detokenize, GET /tokenizer_info, GET /health, GET /metrics
//
// Every request becomes one scheduler job per prompt (core's Scheduler): the jobs of all requests share one
// Session and decode together, one batched step per token (continuous batching). Generation semantics are
// the library's, so a request gives the text `refgpt generate` gives with the same options and seed.

import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  CancelledError,
  Generation,
  ModelscopeGeneration,
  QueueFullError,
  RefgptError,
  Scheduler,
  StepperGroup,
  StreamDecoder,
  WordPieceTokenizer,
  defaultEos,
  isModelscopeModel,
  logSumExp,
  modelscopeEodId,
  modelscopeEncode,
  modelscopePostprocess,
  modelscopeSequenceLength,
  topK,
  type Model,
  type Session,
  type Stepper,
  type Tokenizer,
} from '@refgpt/core'
import { replyOf } from '../commands/chat.js'
import { HttpError, readJson, sendError, sendJson, sseDone, sseSend, sseStart } from './http.js'
import { Metrics, PROMETHEUS_CONTENT_TYPE } from './metrics.js'
import { parseChat, parseCompletion, parseDetokenize, parseTokenize, type ChatRequest, type CompletionRequest, type Limits, type PromptInput, type SamplingFields } from './schema.js'

export interface ServeOptions {
  model: Model
  tokenizer: Tokenizer
  /** The id /v1/models reports (and requests may name). */
  modelId: string
  /** Sequences decoded together (KV-cache slots). */
  parallel: number
  /** Jobs that may wait for a slot; beyond them a request gets 429. */
  maxQueue: number
  /** Required as `Authorization: Bearer KEY` on every endpoint but /health and /metrics; null: none. */
  apiKey: string | null
  /** A request running longer is cancelled (504). */
  timeoutMs: number
  /** Request bodies larger than this are refused (413). Default 1 MiB. */
  maxBodyBytes?: number
  /** One line per event (listening, shutdown); default: nothing. */
  log?: (line: string) => void
}

export interface RefgptServer {
  readonly server: Server
  readonly scheduler: Scheduler
  listen(port: number, host: string): Promise<AddressInfo>
  /**
   * Graceful stop: no new connections or requests (503, /health too), queued jobs cancelled (503), running
   * ones finish within graceMs and are then cancelled; resolves when every response has ended.
   */
  shutdown(graceMs: number): Promise<void>
}

const MIB = 1024 * 1024

/** A finished choice of one prompt: the ids it added and why it ended, as the library reports them. */
interface ChoiceState {
  index: number
  /** New token ids (the eos id included when it ended on one). */
  ids: number[]
  /** Per new token: its log-probability and the top alternatives (when asked). */
  lps: TokenLogprob[]
  finish: 'stop' | 'length' | null
  /** Hugging Face models: the completion's text so far, decoded token by token (dec; an ending eos left out). */
  text: string
  dec: StreamDecoder | null
  /** Characters of the completion text already streamed. */
  sent: number
  /** For a choice that copies another's (greedy n > 1): the choice it copies. */
  copyOf: ChoiceState | null
}

interface TokenLogprob {
  id: number
  logprob: number
  top: [number, number][] // [id, logprob], best first
}

/** One prompt of a request, tokenized: what runs (ids), and for ModelScope the padded row. */
interface PromptRun {
  ids: number[]
  text: string
  /** ModelScope: the padded row ([CLS] + pieces + [SEP] + [PAD]...) whose first ids.length ids run. */
  padded: number[] | null
}

export function createServe(o: ServeOptions): RefgptServer {
  const { model, tokenizer: tok, modelId } = o
  const ms = isModelscopeModel(model)
  const wordpiece = tok instanceof WordPieceTokenizer ? tok : null
  if (ms && !wordpiece) throw new HttpError(500, 'a ModelScope model needs its vocab.txt (WordPiece) tokenizer')
  const scheduler = new Scheduler(model, { parallel: o.parallel, maxQueue: o.maxQueue })
  const context = model.info.maxContext
  const maxBody = o.maxBodyBytes ?? MIB
  // a request's prompts are queue entries: more than the slots and the queue hold could never be admitted (400, not a 429 forever)
  const limits: Limits = { maxN: o.parallel, maxPrompts: Math.max(1, Math.min(256, o.parallel + o.maxQueue)), maxTokens: context }
  const eos = new Set<number>(ms ? [modelscopeEodId(model)] : defaultEos(model))
  const created = Math.floor(Date.now() / 1000)
  let shuttingDown = false
  const open = new Set<ServerResponse>()

  // --- metrics ---------------------------------------------------------------------------------------
  const m = new Metrics()
  const requests = m.counter('refgpt_requests_total', 'HTTP requests answered, by endpoint and status')
  const promptTokens = m.counter('refgpt_prompt_tokens_total', 'Prompt tokens run (prefill and scoring)')
  const genTokens = m.counter('refgpt_generated_tokens_total', 'Tokens generated')
  const tps = m.gauge('refgpt_tokens_per_second', 'Tokens generated per second over the last 10 seconds')
  const queueDepth = m.gauge('refgpt_queue_depth', 'Jobs (one per prompt) waiting for a slot')
  const busy = m.gauge('refgpt_slots_busy', 'KV-cache slots held by running jobs')
  const slotsTotal = m.gauge('refgpt_slots_total', 'KV-cache slots (--parallel)')
  const steps = m.counter('refgpt_batch_steps_total', 'Batched decode steps run')
  const stepRows = m.counter('refgpt_batch_rows_total', 'Rows run by batched decode steps (rows / steps = the mean batch)')
  const duration = m.histogram('refgpt_request_duration_seconds', 'Time from request to the last byte of the answer', [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120])
  const ttft = m.histogram('refgpt_time_to_first_token_seconds', 'Time from request to its first generated token', [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
  const recent: number[] = [] // tokens generated per 100 ms bucket, the last 10 s (bucket recentStart first)
  let recentStart = 0
  const countTokens = (n: number) => {
    genTokens.inc(undefined, n)
    const now = Date.now(), b = Math.floor(now / 100)
    if (recent.length === 0) recentStart = b
    while (recentStart + recent.length <= b) recent.push(0)
    recent[b - recentStart] += n
    while (recent.length > 100) recent.shift(), recentStart++
  }
  function renderMetrics(): string {
    const st = scheduler.stats
    queueDepth.set(st.queued)
    busy.set(st.busyRows)
    slotsTotal.set(st.parallel)
    steps.inc(undefined, st.steps - steps.get())
    stepRows.inc(undefined, st.stepRows - stepRows.get())
    const b = Math.floor(Date.now() / 100)
    let sum = 0
    for (let i = 0; i < recent.length; i++) if (recentStart + i > b - 100) sum += recent[i]
    tps.set(sum / 10)
    return m.render()
  }

  // --- HTTP ------------------------------------------------------------------------------------------
  const server = createServer((req, res) => {
    open.add(res)
    const t0 = performance.now()
    const path = (req.url ?? '/').split('?')[0]
    res.on('close', () => {
      open.delete(res)
      // a response the client did not wait for counts as 499 (nginx's "client closed request")
      requests.inc({ endpoint: ENDPOINTS.has(path) ? path : 'other', status: res.writableFinished ? String(res.statusCode) : '499' })
      duration.observe(undefined, (performance.now() - t0) / 1000)
    })
    route(req, res, path, t0).catch((e: unknown) => {
      if (res.writableEnded) return
      const he = asHttpError(e)
      sendError(res, he, he.status === 429 ? { 'retry-after': '1' } : {})
    })
  })
  server.keepAliveTimeout = 5000
  server.headersTimeout = 30_000
  server.requestTimeout = 60_000 // receiving a request (headers and body) takes at most a minute; generation is not counted

  async function route(req: IncomingMessage, res: ServerResponse, path: string, t0: number): Promise<void> {
    const method = req.method ?? 'GET'
    const allow = ROUTES[path]
    if (!allow) throw new HttpError(404, `no endpoint ${JSON.stringify(path.slice(0, 100))}`, { code: 'not_found', type: 'invalid_request_error' })
    if (method !== allow) throw new HttpError(405, `${path} takes ${allow}, not ${method.slice(0, 16)}`, { code: 'method_not_allowed' })
    if (path === '/health') {
      if (shuttingDown) return sendJson(res, 503, { status: 'shutting down' })
      return sendJson(res, 200, { status: 'ok', slots_idle: o.parallel - scheduler.busyRows, slots_busy: scheduler.busyRows, queued: scheduler.stats.queued })
    }
    if (path === '/metrics') {
      const text = renderMetrics()
      res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE, 'content-length': String(Buffer.byteLength(text)) })
      return void res.end(text)
    }
    checkKey(req)
    if (shuttingDown) throw new HttpError(503, 'the server is shutting down', { code: 'shutting_down' })
    switch (path) {
      case '/v1/models':
        return sendJson(res, 200, { object: 'list', data: [modelCard()] })
      case '/tokenizer_info':
        return sendJson(res, 200, tokenizerInfo())
      case '/tokenize':
        return tokenize(await readJson(req, maxBody), res)
      case '/detokenize':
        return detokenize(await readJson(req, maxBody), res)
      case '/v1/completions': {
        const body = await readJson(req, maxBody)
        return completions(parseCompletion(body, limits), body as Record<string, unknown>, req, res, t0)
      }
      case '/v1/chat/completions': {
        const body = await readJson(req, maxBody)
        return chat(parseChat(body, limits), body as Record<string, unknown>, req, res, t0)
      }
    }
  }

  function checkKey(req: IncomingMessage): void {
    if (o.apiKey === null) return
    const h = req.headers.authorization ?? ''
    const given = Buffer.from(h.startsWith('Bearer ') ? h.slice(7) : '')
    const want = Buffer.from(o.apiKey)
    if (given.length !== want.length || !timingSafeEqual(given, want))
      throw new HttpError(401, h ? 'Incorrect API key provided' : 'no API key: send the header Authorization: Bearer KEY', { type: 'authentication_error', code: 'invalid_api_key' })
  }

  function modelCard() {
    return { id: modelId, object: 'model', created, owned_by: 'refgpt', meta: { family: model.family, n_ctx: context, n_vocab: model.arch.nVocab, parallel: o.parallel } }
  }

  function tokenizerInfo() {
    const eosId = [...eos][0]
    const name = (id: number | undefined) => (id === undefined ? null : (tok.idToToken(id) ?? null))
    const bos = model.arch.bosTokenId ?? undefined
    return { eos_token: name(eosId), eos_token_id: eosId ?? null, bos_token: name(bos), bos_token_id: bos ?? null, model_max_length: context, tokenizer_class: tok.kind }
  }

  // /tokenize: llama.cpp's {content, add_special?, with_pieces?} -> {tokens}, or vLLM's {prompt, add_special_tokens?} -> {tokens, count, max_model_len}
  function tokenize(body: unknown, res: ServerResponse): void {
    const t = parseTokenize(body)
    const tokens = tok.encode(t.content)
    if (t.vllm) return sendJson(res, 200, { tokens, count: tokens.length, max_model_len: context })
    sendJson(res, 200, { tokens: t.withPieces ? tokens.map((id) => ({ id, piece: tokenString(id) })) : tokens })
  }

  function detokenize(body: unknown, res: ServerResponse): void {
    const { tokens } = parseDetokenize(body)
    checkIds(tokens, 'tokens')
    const text = tok.decode(tokens)
    sendJson(res, 200, { content: text, prompt: text })
  }

  function checkIds(ids: ArrayLike<number>, param: string): void {
    const V = model.arch.nVocab
    for (let i = 0; i < ids.length; i++)
      if (ids[i] >= V) throw new HttpError(400, `${param}: token id ${ids[i]} at index ${i} is out of range (the vocabulary has ${V} ids)`, { param })
  }

  // --- prompts and context -----------------------------------------------------------------------------

  /** A prompt as it runs: HF models run its tokens; ModelScope models [CLS] + its wordpieces (padded row beside). */
  function preparePrompt(p: PromptInput, param: string): PromptRun {
    if ('ids' in p) {
      if (p.ids.length === 0) throw new HttpError(400, `${param} is empty`, { param })
      checkIds(p.ids, param)
      if (!ms) return { ids: p.ids, text: tok.decode(p.ids), padded: null }
      const sep = wordpiece!.special('[SEP]') ?? 0, pad = wordpiece!.special('[PAD]') ?? 0
      const padded = [...p.ids, sep]
      while (padded.length < modelscopeSequenceLength(model)) padded.push(pad)
      return { ids: p.ids, text: modelscopePostprocess(tok, p.ids).text, padded }
    }
    if (ms) {
      const e = modelscopeEncode(wordpiece!, p.text, modelscopeSequenceLength(model))
      return { ids: e.ids.slice(0, e.promptLength), text: p.text, padded: e.ids }
    }
    const ids = tok.encode(p.text)
    if (ids.length === 0) throw new HttpError(400, `${param} is empty: it encodes to no tokens`, { param, code: 'empty_prompt' })
    return { ids, text: p.text, padded: null }
  }

  /** OpenAI's context error: the prompt and the completion must fit the context (a scoring-only request: the prompt). */
  function checkContext(p: PromptRun, maxTokens: number, param: string): void {
    const limit = ms ? Math.min(context, model.arch.nPositions) : context
    const need = p.ids.length + maxTokens
    if (need > limit || (maxTokens > 0 && p.ids.length >= limit))
      throw new HttpError(
        400,
        `This model's maximum context length is ${limit} tokens, however you requested ${need} tokens (${p.ids.length} in your prompt; ${maxTokens} for the completion). Please reduce your prompt or completion length.`,
        { param, code: 'context_length_exceeded' },
      )
  }

  // --- jobs --------------------------------------------------------------------------------------------

  interface PromptJob {
    run: PromptRun
    choices: ChoiceState[]
    /** The prompt's scores (echo with logprobs): entry i is ids[i]'s log-probability given ids[< i] (null for i = 0). */
    promptLps: (TokenLogprob | null)[] | null
    /** Whether a new token was chosen yet (the time to first token is observed then). */
    started: boolean
    promise: Promise<Stepper>
  }

  /**
   * Submits one job per prompt. Sampling: temperature 0 is greedy; otherwise the request's knobs, and those it
   * leaves out take the model's generation_config.json / transformers' defaults, as `refgpt generate --do-sample`.
   */
  function submitAll(
    runs: PromptRun[], r: SamplingFields, maxTokens: number, logprobs: number | null, scorePrompt: boolean, given: Record<string, unknown>,
    signal: AbortSignal, t0: number, onStep: (j: PromptJob) => void,
  ): PromptJob[] {
    const greedy = r.temperature === 0
    const copies = greedy ? 1 : r.n // greedy choices are all the same: one row runs, the others copy it
    if (!scheduler.admits(runs.map(() => copies))) throw new QueueFullError({ where: 'serve', what: 'the queue is full' })
    if (!ms && maxTokens > 0) Generation.check(model, runs.map((x) => x.ids), hfOptions(r, greedy, copies, maxTokens, given)) // bad option combinations: 400 before anything runs
    const jobs: PromptJob[] = []
    for (let p = 0; p < runs.length; p++) {
      const run = runs[p]
      const choices: ChoiceState[] = []
      for (let c = 0; c < r.n; c++)
        choices.push({ index: p * r.n + c, ids: [], lps: [], finish: null, text: '', dec: ms ? null : new StreamDecoder(tok), sent: 0, copyOf: c >= copies ? choices[0] : null })
      const j: PromptJob = { run, choices, promptLps: null, started: false, promise: null as unknown as Promise<Stepper> }
      const record = (row: number, id: number, logits?: Float32Array) => {
        const ch = choices[row]
        ch.ids.push(id)
        if (ch.dec && !eos.has(id)) ch.text += ch.dec.push(id)
        if (logprobs !== null && logits) ch.lps.push(scoreRow(logits, id, logprobs))
        if (!j.started) {
          j.started = true
          ttft.observe(undefined, (performance.now() - t0) / 1000)
        }
      }
      const start = async (session: Session): Promise<Stepper> => {
        if (scorePrompt) {
          j.promptLps = await scorePromptIds(session, run.ids, logprobs ?? 0)
          promptTokens.inc(undefined, run.ids.length)
        }
        if (maxTokens === 0) return DONE
        promptTokens.inc(undefined, run.ids.length)
        if (!ms) {
          const opts = { ...hfOptions(r, greedy, copies, maxTokens, given), session, onToken: (id: number, row: number, logits?: Float32Array) => record(row, id, logits) }
          return Generation.start(model, [run.ids], opts)
        }
        // ModelScope's mode: one generation per choice (seed, seed + 1, ...)
        const gens: ModelscopeGeneration[] = []
        try {
          for (let c = 0; c < copies; c++) {
            const mo: Record<string, unknown> = { session, maxLength: maxTokens === Infinity ? undefined : run.ids.length + maxTokens, onToken: (id: number, logits: Float32Array) => record(c, id, logits) }
            if (greedy) (mo.topK = 1), (mo.topP = 0)
            else {
              mo.temperature = r.temperature
              if (given.top_k !== undefined && given.top_k !== null) mo.topK = r.topK
              if (given.top_p !== undefined && given.top_p !== null) mo.topP = r.topP
              else if (r.topK > 1 && mo.topK !== undefined) mo.topP = 0 // MS refuses top-k with top-p: a top_k alone means top-k
            }
            if (r.seed !== null) mo.seed = r.seed + c
            gens.push(await ModelscopeGeneration.start(model, run.padded!, run.ids.length, mo))
          }
        } catch (e) {
          for (const g of gens) g.close()
          throw e
        }
        return new StepperGroup(gens)
      }
      j.promise = scheduler.submit({ rows: copies, start, signal, onStep: () => onStep(j) })
      jobs.push(j)
    }
    return jobs
  }

  /** generate()'s options for a request (the fields it gave; the rest are the model's and transformers' defaults). */
  function hfOptions(r: SamplingFields, greedy: boolean, copies: number, maxTokens: number, given: Record<string, unknown>): Record<string, unknown> {
    const has = (k: string) => given[k] !== undefined && given[k] !== null
    const opts: Record<string, unknown> = { max_new_tokens: maxTokens, do_sample: !greedy, tokenizer: tok }
    if (!greedy) {
      opts.temperature = r.temperature
      opts.num_return_sequences = copies
      if (has('top_p')) opts.top_p = r.topP
      if (has('top_k')) opts.top_k = r.topK
      if (has('min_p')) opts.min_p = r.minP
    }
    if (has('repetition_penalty')) opts.repetition_penalty = r.repetitionPenalty
    if (r.seed !== null) opts.seed = r.seed
    if (r.stop.length) opts.stop_strings = r.stop
    return opts
  }

  /** log-softmax of one row (f64), the target's entry and the top k: the same subtraction for both, so is_greedy compares equal floats. */
  function scoreRow(logits: Float32Array, target: number, k: number): TokenLogprob {
    const lse = logSumExp(logits)
    return { id: target, logprob: logits[target] - lse, top: topK(logits, k).map((i) => [i, logits[i] - lse]) }
  }

  /** The prompt's token log-probabilities, in chunks of the session's rows (each chunk's [T, V] logits only). */
  async function scorePromptIds(session: Session, ids: number[], k: number): Promise<(TokenLogprob | null)[]> {
    const slot = session.acquire()
    try {
      const out: (TokenLogprob | null)[] = [null]
      const V = model.arch.nVocab, step = session.maxBatchTokens
      for (let pos = 0; pos < ids.length - 1; pos += step) {
        const chunk = ids.slice(pos, Math.min(pos + step, ids.length - 1))
        const logits = await session.logits(chunk, pos, { slot })
        for (let t = 0; t < chunk.length; t++) out.push(scoreRow(logits.subarray(t * V, (t + 1) * V), ids[pos + t + 1], k))
      }
      return out
    } finally {
      session.release(slot)
    }
  }

  /** Waits for every job; the first failure cancels the others at once and is thrown. */
  function settle(jobs: PromptJob[], ac: AbortController): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let left = jobs.length
      for (const j of jobs)
        j.promise.then(
          () => void (--left === 0 && resolve()),
          (e: unknown) => {
            ac.abort(e)
            reject(e)
          },
        )
    })
  }

  /** The stepper's finish reasons onto the choices (after a job ends). */
  function finishChoices(j: PromptJob, s: Stepper, stop: string[]): void {
    if (s instanceof Generation) {
      const res = s.result()
      res.sequences.forEach((q, i) => (j.choices[i].finish = q.finishReason === 'eos' || q.finishReason === 'stop_string' ? 'stop' : 'length'))
    } else if (s instanceof StepperGroup) {
      ;(s.members as ModelscopeGeneration[]).forEach((g, i) => (j.choices[i].finish = g.result().finishReason === 'eod' ? 'stop' : 'length'))
    } else for (const c of j.choices) c.finish = 'length'
    for (const c of j.choices) {
      if (c.copyOf) {
        c.ids = c.copyOf.ids
        c.lps = c.copyOf.lps
        c.finish = c.copyOf.finish
        c.text = c.copyOf.text
      } else if (c.dec) c.text += c.dec.flush()
      if (stop.length && stopAt(completionText(j.run, c), stop) >= 0) c.finish = 'stop'
    }
  }

  // --- text ---------------------------------------------------------------------------------------------

  /**
   * The text of a choice's new tokens, an ending eos left out: Hugging Face models decode token by token as
   * they come (c.text); ModelScope's post-processing works on the whole sequence, so it is rendered again
   * and the prompt's text taken off.
   */
  function completionText(run: PromptRun, c: ChoiceState): string {
    if (!ms) return c.text
    const ids = c.ids
    const body = ids.length && eos.has(ids[ids.length - 1]) ? ids.slice(0, -1) : ids
    const full = modelscopePostprocess(tok, [...run.ids, ...body]).text
    const prompt = modelscopePostprocess(tok, run.ids).text
    return full.startsWith(prompt) ? full.slice(prompt.length) : full
  }

  /** The completion cut before its first stop string (OpenAI leaves the stop string out). */
  function cutAtStop(text: string, stop: string[]): string {
    const at = stopAt(text, stop)
    return at >= 0 ? text.slice(0, at) : text
  }

  /** A token as text: its UTF-8 when it is whole characters, else OpenAI's "bytes:\xNN" form. */
  function tokenString(id: number): string {
    const bytes = tok.tokenBytes(id)
    if (!bytes) return ''
    try {
      return STRICT_UTF8.decode(bytes)
    } catch {
      return 'bytes:' + Array.from(bytes, (b) => '\\x' + b.toString(16).padStart(2, '0')).join('')
    }
  }

  /** OpenAI's legacy logprobs object for tokens (with text offsets from `offset`). */
  function legacyLogprobs(ids: number[], lps: (TokenLogprob | null)[], offset: number) {
    const tokens: string[] = [], tokenLogprobs: (number | null)[] = [], top: (Record<string, number> | null)[] = [], textOffset: number[] = []
    const dec = new StreamDecoder(tok)
    let at = offset
    for (let i = 0; i < ids.length; i++) {
      tokens.push(tokenString(ids[i]))
      textOffset.push(at)
      at += dec.push(ids[i]).length
      const lp = lps[i]
      tokenLogprobs.push(lp ? lp.logprob : null)
      top.push(lp ? Object.fromEntries(lp.top.map(([t, v]) => [tokenString(t), v])) : null)
    }
    return { tokens, token_logprobs: tokenLogprobs, top_logprobs: top, text_offset: textOffset }
  }

  // --- /v1/completions --------------------------------------------------------------------------------

  async function completions(r: CompletionRequest, given: Record<string, unknown>, req: IncomingMessage, res: ServerResponse, t0: number): Promise<void> {
    // r.model is not checked: one model is served, under any name a client sends (lm-eval sends what the user typed)
    const runs = r.prompts.map((p, i) => preparePrompt(p, r.prompts.length > 1 ? `prompt[${i}]` : 'prompt'))
    const maxTokens = r.maxTokens ?? Math.max(0, context - Math.max(...runs.map((x) => x.ids.length)))
    runs.forEach((x, i) => checkContext(x, maxTokens, r.prompts.length > 1 ? `prompt[${i}]` : 'prompt'))
    const scorePrompt = r.echo && r.logprobs !== null
    const id = 'cmpl-' + randomBytes(12).toString('hex')
    const { ac, signal } = requestSignal(res)
    const base = { id, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: modelId }

    const choiceText = (j: PromptJob, c: ChoiceState) => (r.echo ? j.run.text : '') + cutAtStop(completionText(j.run, c), r.stop)
    const choiceLogprobs = (j: PromptJob, c: ChoiceState) => {
      if (r.logprobs === null) return null
      const promptPart = r.echo ? legacyLogprobs(j.run.ids, j.promptLps ?? j.run.ids.map(() => null), 0) : null
      // text_offset counts characters of prompt + completion (OpenAI's), with echo or not
      const gen = legacyLogprobs(c.ids, c.lps, j.run.text.length)
      if (!promptPart) return gen
      return {
        tokens: [...promptPart.tokens, ...gen.tokens],
        token_logprobs: [...promptPart.token_logprobs, ...gen.token_logprobs],
        top_logprobs: [...promptPart.top_logprobs, ...gen.top_logprobs],
        text_offset: [...promptPart.text_offset, ...gen.text_offset],
      }
    }
    const usage = (jobs: PromptJob[]) => {
      const prompt = jobs.reduce((s, j) => s + j.run.ids.length, 0)
      const completion = jobs.reduce((s, j) => s + j.choices.reduce((t, c) => t + c.ids.length, 0), 0)
      return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
    }

    if (!r.stream) {
      const jobs = submitAll(runs, r, maxTokens, r.logprobs, scorePrompt, given, signal, t0, () => {})
      await settle(jobs, ac)
      const choices = []
      for (const j of jobs) {
        finishChoices(j, await j.promise, r.stop)
        for (const c of j.choices) {
          countTokens(c.copyOf ? 0 : c.ids.length)
          choices.push({ index: c.index, text: choiceText(j, c), logprobs: choiceLogprobs(j, c), finish_reason: c.finish ?? 'length' })
        }
      }
      return sendJson(res, 200, { ...base, choices, usage: usage(jobs), system_fingerprint: FINGERPRINT })
    }

    // streaming: the echoed prompt first (with its scores once they are known), then text deltas per step
    let started = false
    const start = () => {
      if (!started) sseStart(res)
      started = true
    }
    const send = (choices: unknown[]) => sseSend(res, { ...base, choices, ...(r.includeUsage ? { usage: null } : {}) })
    const jobs = submitAll(runs, r, maxTokens, r.logprobs, scorePrompt, given, signal, t0, (j) => {
      start()
      streamStep(j, (c) => streamDelta(j, c, r.stop, false), (c, text) => ({ index: c.index, text, logprobs: null, finish_reason: null }), send)
    })
    start()
    if (r.echo) send(runs.flatMap((run, p) => Array.from({ length: r.n }, (_, c) => ({ index: p * r.n + c, text: run.text, logprobs: null, finish_reason: null }))))
    try {
      await settle(jobs, ac)
    } catch (e) {
      sendError(res, asHttpError(e))
      return
    }
    for (const j of jobs) {
      finishChoices(j, await j.promise, r.stop)
      for (const c of j.choices) {
        const rest = c.copyOf ? cutAtStop(completionText(j.run, c), r.stop) : streamDelta(j, c, r.stop, true)
        send([{ index: c.index, text: rest, logprobs: choiceLogprobs(j, c), finish_reason: c.finish ?? 'length' }])
      }
    }
    if (r.includeUsage) sseSend(res, { ...base, choices: [], usage: usage(jobs) })
    sseDone(res)
  }

  /**
   * One step of a streamed request: a chunk with each choice's new text (`delta`, made into a choice
   * object by `chunk`), sent when there is any; copies of another choice wait for the end. Counts the
   * tokens the step chose.
   */
  function streamStep(j: PromptJob, delta: (c: ChoiceState) => string, chunk: (c: ChoiceState, text: string) => unknown, send: (choices: unknown[]) => void): void {
    const out: unknown[] = []
    let chosen = 0
    for (const c of j.choices) {
      if (c.copyOf) continue
      chosen++
      const text = delta(c)
      if (text) out.push(chunk(c, text))
    }
    countTokens(chosen)
    if (out.length) send(out)
  }

  /**
   * The next piece of a choice's completion text: what is new since the last call, less what a later token
   * could still change (the start of a stop string; ModelScope: the last character). A Hugging Face choice's
   * text holds no incomplete UTF-8 character (its StreamDecoder keeps those back). `final`: everything left.
   */
  function streamDelta(j: PromptJob, c: ChoiceState, stop: string[], final: boolean): string {
    const full = completionText(j.run, c)
    let end = full.length
    const at = stopAt(full, stop)
    if (at >= 0) end = at
    else if (!final) {
      for (const s of stop)
        for (let k = Math.min(s.length - 1, full.length); k > 0; k--)
          if (full.endsWith(s.slice(0, k))) {
            end = Math.min(end, full.length - k)
            break
          }
      if (ms) end = Math.max(c.sent, end - 1) // ModelScope's post-processing may still join the last character
    }
    if (end <= c.sent) return ''
    const out = full.slice(c.sent, end)
    c.sent = end
    return out
  }

  // --- /v1/chat/completions ---------------------------------------------------------------------------

  async function chat(r: ChatRequest, given: Record<string, unknown>, req: IncomingMessage, res: ServerResponse, t0: number): Promise<void> {
    if (!ms)
      throw new HttpError(
        400,
        `model ${JSON.stringify(modelId)} has no chat template: Hugging Face GPT-2 / GPT-Neo / GPT-J checkpoints are plain language models; use /v1/completions with your own prompt format`,
        { param: 'messages', code: 'no_chat_template' },
      )
    // the kuakua robot's template: the last user message + "|" (earlier turns and system messages are not part of it)
    const last = [...r.messages].reverse().find((x) => x.role === 'user')
    if (!last) throw new HttpError(400, 'messages has no user message (the template is the last user message + "|")', { param: 'messages' })
    const text = last.content.endsWith('|') ? last.content : last.content + '|'
    const run = preparePrompt({ text }, 'messages')
    const limit = Math.min(context, model.arch.nPositions)
    // max_tokens null: ModelScope's own length cap (the padded prompt + 100), as `refgpt chat`
    const maxTokens = r.maxTokens ?? Math.max(1, Math.min(limit, run.padded!.length + 100) - run.ids.length)
    checkContext(run, maxTokens, 'messages')
    const id = 'chatcmpl-' + randomBytes(12).toString('hex')
    const { ac, signal } = requestSignal(res)
    const base = { id, object: r.stream ? 'chat.completion.chunk' : 'chat.completion', created: Math.floor(Date.now() / 1000), model: modelId, system_fingerprint: FINGERPRINT }
    const k = r.logprobs ? (r.topLogprobs ?? 0) : null
    const reply = (c: ChoiceState) => {
      const finishReason = eos.has(c.ids[c.ids.length - 1]) ? 'eod' : 'length'
      return cutAtStop(replyOf(wordpiece!, { ids: [...run.ids, ...c.ids], promptLength: run.ids.length, finishReason }), r.stop)
    }
    const chatLogprobs = (c: ChoiceState) =>
      k === null
        ? null
        : {
            content: c.ids.map((t, i) => ({
              token: tokenString(t),
              logprob: c.lps[i]?.logprob ?? 0,
              bytes: Array.from(tok.tokenBytes(t) ?? []),
              top_logprobs: (c.lps[i]?.top ?? []).map(([u, v]) => ({ token: tokenString(u), logprob: v, bytes: Array.from(tok.tokenBytes(u) ?? []) })),
            })),
          }
    const usage = (j: PromptJob) => {
      const completion = j.choices.reduce((t, c) => t + c.ids.length, 0)
      return { prompt_tokens: run.ids.length, completion_tokens: completion, total_tokens: run.ids.length + completion }
    }
    if (!r.stream) {
      const [j] = submitAll([run], r, maxTokens, k, false, given, signal, t0, () => {})
      await settle([j], ac)
      finishChoices(j, await j.promise, r.stop)
      for (const c of j.choices) countTokens(c.copyOf ? 0 : c.ids.length)
      return sendJson(res, 200, {
        ...base,
        choices: j.choices.map((c) => ({ index: c.index, message: { role: 'assistant', content: reply(c) }, logprobs: chatLogprobs(c), finish_reason: c.finish ?? 'length' })),
        usage: usage(j),
      })
    }
    sseStart(res)
    const send = (choices: unknown[]) => sseSend(res, { ...base, choices, ...(r.includeUsage ? { usage: null } : {}) })
    send(Array.from({ length: r.n }, (_, i) => ({ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null })))
    const sent = new Map<ChoiceState, string>()
    const delta = (c: ChoiceState, final: boolean) => {
      const text = reply(c), before = sent.get(c) ?? ''
      // the reply is re-rendered from all ids each step (ModelScope's post-processing may join or drop a space
      // at the end): hold back its last character until the end, and anything that no longer extends what went out
      if (!text.startsWith(before)) return ''
      const end = final ? text.length : text.length - 1
      if (end <= before.length) return ''
      sent.set(c, text.slice(0, end))
      return text.slice(before.length, end)
    }
    const [j] = submitAll([run], r, maxTokens, k, false, given, signal, t0, (jj) =>
      streamStep(jj, (c) => delta(c, false), (c, content) => ({ index: c.index, delta: { content }, logprobs: null, finish_reason: null }), send),
    )
    try {
      await settle([j], ac)
    } catch (e) {
      sendError(res, asHttpError(e))
      return
    }
    finishChoices(j, await j.promise, r.stop)
    for (const c of j.choices) {
      const rest = c.copyOf ? reply(c) : delta(c, true)
      if (rest) send([{ index: c.index, delta: { content: rest }, logprobs: null, finish_reason: null }])
      send([{ index: c.index, delta: {}, logprobs: chatLogprobs(c), finish_reason: c.finish ?? 'length' }])
    }
    if (r.includeUsage) sseSend(res, { ...base, choices: [], usage: usage(j) })
    sseDone(res)
  }

  /** A request's cancel signal: the client going away, or the per-request timeout (both end with the response). */
  function requestSignal(res: ServerResponse): { ac: AbortController; signal: AbortSignal } {
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(new TimeoutError(o.timeoutMs)), o.timeoutMs)
    res.on('close', () => {
      clearTimeout(timer)
      if (!res.writableFinished) ac.abort(new CancelledError({ where: 'serve', what: 'the client disconnected' }))
    })
    return { ac, signal: ac.signal }
  }

  // --- lifecycle --------------------------------------------------------------------------------------

  return {
    server,
    scheduler,
    listen(port, host) {
      return new Promise<AddressInfo>((resolve, reject) => {
        const onError = (e: NodeJS.ErrnoException) => reject(e)
        server.once('error', onError)
        server.listen(port, host, () => {
          server.off('error', onError)
          resolve(server.address() as AddressInfo)
        })
      })
    },
    async shutdown(graceMs) {
      if (shuttingDown) return
      shuttingDown = true
      server.close()
      server.closeIdleConnections()
      const drained = scheduler.close()
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), graceMs)))
      if ((await Promise.race([drained.then(() => 'ok' as const), late])) === 'late') {
        o.log?.(`refgpt serve: cancelling the requests still running after ${graceMs / 1000} s`)
        scheduler.cancelRunning()
        await drained
      }
      clearTimeout(timer)
      // let the answers of the last jobs go out, then close what is left
      const deadline = Date.now() + 2000
      while (open.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
      server.closeAllConnections()
    },
  }
}

const ROUTES: Record<string, string> = {
  '/health': 'GET',
  '/metrics': 'GET',
  '/v1/models': 'GET',
  '/tokenizer_info': 'GET',
  '/tokenize': 'POST',
  '/detokenize': 'POST',
  '/v1/completions': 'POST',
  '/v1/chat/completions': 'POST',
}
Object.setPrototypeOf(ROUTES, null)
const ENDPOINTS = new Set(Object.keys(ROUTES))
const FINGERPRINT = 'refgpt'
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const DONE: Stepper = { done: true, wants() {}, choose() {}, close() {} }

/** The per-request --timeout ran out (answered 504). */
class TimeoutError extends Error {
  constructor(ms: number) {
    super(`the request ran past the server's --timeout (${ms / 1000} s)`)
    this.name = 'TimeoutError'
  }
}

/** The index of the first stop string in text, or -1. */
function stopAt(text: string, stop: string[]): number {
  let best = -1
  for (const s of stop) {
    const i = text.indexOf(s)
    if (i >= 0 && (best < 0 || i < best)) best = i
  }
  return best
}


/** Any failure as the answer it gets: 429 queue full, 503 shutting down, 504 timeout, 400 a refused input, 500 else. */
export function asHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e
  if (e instanceof QueueFullError) return new HttpError(429, 'the server is busy: every slot is in use and the queue is full; retry later', { type: 'rate_limit_error', code: 'queue_full' })
  if (e instanceof Error && e.name === 'TimeoutError') return new HttpError(504, 'the request took longer than the server\'s --timeout and was cancelled', { type: 'timeout_error', code: 'timeout' })
  if (e instanceof CancelledError) return new HttpError(503, e.message, { type: 'server_error', code: 'cancelled' })
  if (e instanceof RefgptError) return new HttpError(400, e.message)
  return new HttpError(500, `internal error: ${e instanceof Error ? e.message : String(e)}`)
}
