// The page's engine: a module Web Worker that holds the model (so the page stays responsive, and the wasm
// thread pool may block in Atomics.wait). Messages in: init, load, generate, step, stop; out: ready,
// progress, loaded, token, done, error. Every message out carries the `req` number of the request it
// answers. The model runs on the wasm device or, where the browser has WebGPU, on the webgpu device.
import {
  HOST, RefgptError, StreamDecoder, filesFolder, generateStream, loadModel, loadTokenizerAsync, stepHtml, stepThrough, urlFolder,
  type Model, type ModelFolder, type Tokenizer,
} from '@refgpt/core/browser'
import { hardwareThreads, loadKernelModuleFrom, relaxedSimdSupported, setPoolWorkerUrl } from '@refgpt/wasm'

interface Scope {
  onmessage: ((ev: { data: Request }) => void) | null
  postMessage(msg: unknown): void
  crossOriginIsolated?: boolean
}
const scope = globalThis as unknown as Scope

type Source = { kind: 'url'; url: string } | { kind: 'files'; files: File[]; label?: string }
type Request =
  | { type: 'init'; req: number }
  | { type: 'load'; req: number; source: Source; threads?: number; device?: 'wasm' | 'webgpu' }
  | { type: 'generate'; req: number; prompt: string; maxNewTokens: number; doSample: boolean; temperature?: number; topK?: number; topP?: number; seed?: number | null }
  | { type: 'step'; req: number; prompt: string }
  | { type: 'stop'; req: number }

let model: Model | undefined
let tokenizer: Tokenizer | undefined
let stopped = false
let simd = 'plain'

const post = (msg: Record<string, unknown>) => scope.postMessage(msg)
const errorText = (e: unknown) => (e instanceof RefgptError ? e.message : e instanceof Error ? `${e.name}: ${e.message}` : String(e))

async function init(): Promise<Record<string, unknown>> {
  setPoolWorkerUrl(new URL('./refgpt-pool-worker.js', import.meta.url))
  await loadKernelModuleFrom(new URL('./refgpt.wasm', import.meta.url), 'plain')
  if (relaxedSimdSupported()) {
    await loadKernelModuleFrom(new URL('./refgpt-relaxed.wasm', import.meta.url), 'relaxed')
    simd = 'relaxed'
  }
  // navigator.gpu in this worker (an adapter is asked for only when the webgpu device is chosen)
  const webgpu = typeof (globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu === 'object'
  // WebNN (navigator.ml): detected and reported only — no device runs on it yet (docs/onnx.md)
  const webnn = typeof (globalThis as { navigator?: { ml?: unknown } }).navigator?.ml === 'object'
  return { host: HOST, crossOriginIsolated: scope.crossOriginIsolated === true, threads: hardwareThreads(), simd, webgpu, webnn }
}

async function load(req: number, source: Source, threads?: number, device: 'wasm' | 'webgpu' = 'wasm'): Promise<Record<string, unknown>> {
  await model?.dispose()
  model = undefined
  tokenizer = undefined
  const folder: ModelFolder = source.kind === 'url' ? urlFolder(source.url) : filesFolder(source.files, source.label)
  const t0 = performance.now()
  tokenizer = await loadTokenizerAsync(folder)
  let last = 0
  const m = await loadModel(folder, {
    device,
    ...(device === 'wasm' ? { threads } : {}),
    onProgress: (done, total) => {
      const now = performance.now()
      if (done === total || now - last > 100) {
        last = now
        post({ type: 'progress', req, done, total })
      }
    },
  })
  model = m
  const dev = m.device as { threads?: number; adapter?: { vendor: string; architecture: string; description: string; cpu: boolean } }
  const ad = dev.adapter
  return {
    device,
    adapter: ad ? `${[ad.vendor, ad.architecture, ad.description].filter(Boolean).join(' ')}${ad.cpu ? ' (a CPU driver)' : ''}` : null,
    loadMs: performance.now() - t0,
    dir: m.info.dir,
    family: m.family,
    modelType: m.info.modelType,
    format: m.info.format,
    files: m.info.files,
    parameters: m.info.parameters,
    weightBytes: m.info.weightBytes,
    nLayer: m.arch.nLayer,
    nVocab: m.arch.nVocab,
    maxContext: m.info.maxContext,
    threads: device === 'wasm' ? dev.threads ?? threads ?? hardwareThreads() : null,
    simd,
  }
}

async function run(req: number, r: Extract<Request, { type: 'generate' }>): Promise<Record<string, unknown>> {
  if (!model || !tokenizer) throw new Error('no model loaded')
  stopped = false
  const ids = tokenizer.encode(r.prompt)
  if (ids.length === 0) throw new Error('the prompt has no tokens')
  const decoder = new StreamDecoder(tokenizer, { skipSpecialTokens: true })
  const opts = {
    maxNewTokens: r.maxNewTokens,
    doSample: r.doSample,
    ...(r.doSample ? { temperature: r.temperature, topK: r.topK, topP: r.topP, seed: r.seed ?? null } : {}),
  }
  const t0 = performance.now()
  let first = 0
  const stream = generateStream(model, [ids], opts)
  const newIds: number[] = []
  let result
  for (;;) {
    const step = await stream.next()
    if (step.done) {
      result = step.value
      break
    }
    if (newIds.length === 0) first = performance.now()
    newIds.push(step.value.id)
    post({ type: 'token', req, id: step.value.id, text: decoder.push(step.value.id) })
    if (stopped) {
      await stream.return(undefined as never)
      break
    }
  }
  const tail = decoder.flush()
  if (tail) post({ type: 'token', req, id: -1, text: tail })
  const end = performance.now()
  const seq = result?.sequences?.[0]
  return {
    promptIds: ids,
    ids: [...ids, ...newIds],
    newIds,
    finishReason: stopped ? 'stopped' : seq?.finishReason,
    seed: result?.seed ?? null,
    text: tokenizer.decode(newIds, { skipSpecialTokens: true }),
    firstTokenMs: first ? first - t0 : 0,
    totalMs: end - t0,
    tokensPerS: newIds.length > 1 ? (newIds.length - 1) / ((end - first) / 1000) : 0,
  }
}

/**
 * One traced forward of the prompt (core's stepThrough.runStages: the stages of `refgpt step`), rendered
 * with the CLI's renderer (core's stepHtml): the sections, their style sheet and the hover script.
 */
async function step(r: Extract<Request, { type: 'step' }>): Promise<Record<string, unknown>> {
  if (!model || !tokenizer) throw new Error('no model loaded')
  const ids = tokenizer.encode(r.prompt)
  if (ids.length === 0) throw new Error('the prompt has no tokens')
  const t0 = performance.now()
  const run = await stepThrough.runStages(model, tokenizer, ids)
  const ms = performance.now() - t0
  const pieces = run.ids.map((id) => stepThrough.pieceText(tokenizer!, id))
  return {
    html: `${stepHtml.stepHeaderHtml(model, r.prompt)}\n${stepHtml.stepSectionsHtml(run, model, pieces)}`,
    css: stepHtml.STEP_CSS,
    js: stepHtml.STEP_JS,
    ids: run.ids,
    next: run.next,
    nLayer: model.arch.nLayer,
    nHead: model.arch.nHead,
    stages: run.stages.length,
    ms,
  }
}

const handlers: Record<Request['type'], (r: Request) => Promise<Record<string, unknown>>> = {
  init: () => init(),
  load: (r) => {
    const l = r as Extract<Request, { type: 'load' }>
    return load(l.req, l.source, l.threads, l.device)
  },
  step: (r) => step(r as Extract<Request, { type: 'step' }>),
  generate: (r) => run(r.req, r as Extract<Request, { type: 'generate' }>),
  stop: async () => {
    stopped = true
    return {}
  },
}

scope.onmessage = (ev) => {
  const r = ev.data
  const done = r.type === 'init' ? 'ready' : r.type === 'load' ? 'loaded' : 'done'
  handlers[r.type](r).then(
    (value) => post({ type: done, req: r.req, ...value }),
    (e) => post({ type: 'error', req: r.req, message: errorText(e) }),
  )
}
