// The page's engine: a module Web Worker that holds the model (so the page stays responsive, and the wasm
// thread pool may block in Atomics.wait). Messages in: init, load, generate, step, stop; out: ready,
// progress, loaded, token, done, error. Every message out carries the `req` number of the request it
// answers. The model runs on the wasm device or, where the browser has WebGPU, on the webgpu device; or as
// an ONNX graph in onnxruntime-web (dist/ort/, imported only then): 'onnx' on its wasm provider, 'webnn'
// on WebNN (navigator.ml: the browser's NPU, GPU or CPU backend) — both with static graphs (batch 1, a
// prefill graph and a decode graph, fixed sizes: what WebNN needs), the same ones an NPU runs in Node.
import {
  HOST, RefgptError, StreamDecoder, filesFolder, generateStream, loadModel, loadTokenizerAsync, ortModel, stepHtml, stepThrough, urlFolder,
  type Model, type ModelFolder, type OrtLike, type Tokenizer,
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
  | { type: 'load'; req: number; source: Source; threads?: number; device?: PageDevice }
  | { type: 'generate'; req: number; prompt: string; maxNewTokens: number; doSample: boolean; temperature?: number; topK?: number; topP?: number; seed?: number | null }
  | { type: 'step'; req: number; prompt: string }
  | { type: 'stop'; req: number }

/** The page's devices: refgpt's own (wasm, webgpu), and ONNX graphs in onnxruntime-web (onnx: its wasm provider; webnn). */
type PageDevice = 'wasm' | 'webgpu' | 'onnx' | 'webnn'

/** Static graph sizes for the ONNX devices: prefill rows per call, and the KV capacity at most (the model's context if smaller). */
const STATIC_TOKENS = 32, STATIC_CAPACITY = 512

/** WebNN's device types, most wanted first; init() finds which of them give a context. */
const WEBNN_TYPES = ['npu', 'gpu', 'cpu'] as const
let webnnTypes: string[] = []

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
  // WebNN: navigator.ml may be there with no backend behind it (Linux Chromium with the flag: "not
  // supported on this platform"), so each device type is asked for a context
  const ml = (globalThis as { navigator?: { ml?: { createContext(o: { deviceType: string }): Promise<unknown> } } }).navigator?.ml
  const webnn = typeof ml === 'object' && ml !== null
  const errors: string[] = []
  webnnTypes = []
  if (webnn)
    for (const deviceType of WEBNN_TYPES) {
      try {
        await ml.createContext({ deviceType })
        webnnTypes.push(deviceType)
      } catch (e) {
        errors.push(`${deviceType}: ${errorText(e)}`)
      }
    }
  return { host: HOST, crossOriginIsolated: scope.crossOriginIsolated === true, threads: hardwareThreads(), simd, webgpu, webnn, webnnTypes, webnnError: webnnTypes.length ? null : errors[0] ?? null }
}

let ortModule: OrtLike | undefined
/** onnxruntime-web, from dist/ort/ (not bundled: it finds its glue and wasm beside its own module). */
async function onnxRuntime(threads: number): Promise<OrtLike> {
  const url = new URL('./ort/ort.min.mjs', import.meta.url).href
  const ort = (ortModule ??= (await import(/* webpackIgnore: true */ url)) as OrtLike) as OrtLike & { env: { wasm: { numThreads: number } } }
  ort.env.wasm.numThreads = threads
  return ort
}

/** A model as static ONNX graphs in onnxruntime-web: on its wasm provider ('onnx') or WebNN; and the graphs' sizes. */
async function ortOn(folder: ModelFolder, device: 'onnx' | 'webnn', threads: number, onProgress: (done: number, total: number) => void): Promise<{ model: Model; tokens: number; capacity: number }> {
  if (device === 'webnn' && webnnTypes.length === 0)
    throw new Error('WebNN has no backend in this browser: navigator.ml gave no context for npu, gpu or cpu')
  const ort = await onnxRuntime(threads)
  const js = await loadModel(folder, { device: 'js', onProgress })
  try {
    const capacity = Math.min(js.info.maxContext, STATIC_CAPACITY), tokens = Math.min(STATIC_TOKENS, capacity)
    const model = await ortModel(js, device === 'webnn' ? 'webnn' : 'wasm', {
      ort,
      static: { tokens, capacity },
      ...(device === 'webnn' ? { providerOptions: { deviceType: webnnTypes[0] } } : {}),
    })
    return { model, tokens, capacity }
  } catch (e) {
    await js.dispose()
    throw e
  }
}

async function load(req: number, source: Source, threads?: number, device: PageDevice = 'wasm'): Promise<Record<string, unknown>> {
  await model?.dispose()
  model = undefined
  tokenizer = undefined
  const folder: ModelFolder = source.kind === 'url' ? urlFolder(source.url) : filesFolder(source.files, source.label)
  const t0 = performance.now()
  tokenizer = await loadTokenizerAsync(folder)
  let last = 0
  const onProgress = (done: number, total: number) => {
    const now = performance.now()
    if (done === total || now - last > 100) {
      last = now
      post({ type: 'progress', req, done, total })
    }
  }
  const onnx = device === 'onnx' || device === 'webnn'
  const ortThreads = scope.crossOriginIsolated === true ? threads ?? hardwareThreads() : 1
  const graphs = onnx ? await ortOn(folder, device, ortThreads, onProgress) : null
  const m = graphs ? graphs.model : await loadModel(folder, { device, ...(device === 'wasm' ? { threads } : {}), onProgress })
  model = m
  const dev = m.device as { threads?: number; adapter?: { vendor: string; architecture: string; description: string; cpu: boolean } }
  const ad = dev.adapter
  return {
    device,
    engine: m.device.name,
    ...(graphs ? { staticTokens: graphs.tokens, capacity: graphs.capacity, webnnType: device === 'webnn' ? webnnTypes[0] : null } : {}),
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
    threads: device === 'wasm' ? dev.threads ?? threads ?? hardwareThreads() : device === 'onnx' ? ortThreads : null,
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
