// The page: model from a URL or picked files, a device (wasm; webgpu where the browser has it; onnx: static
// ONNX graphs in onnxruntime-web; webnn where navigator.ml gives a context), prompt,
// sampling controls, streamed output, and the step-through view (one traced forward of the prompt, drawn
// by the same renderer as `refgpt step --html`). The model runs in the engine worker (engine.ts); this file
// only talks to it and updates the page. State the tests read: #env[data-state] (ready; data-webgpu,
// data-webnn: navigator.ml is there, data-webnn-types: the WebNN device types that gave a context),
// #model-info[data-state] (loading / loaded / error; data-device), #timings[data-state] (running / done /
// error), #ids (JSON of the prompt and new ids), #step-state[data-state] (running / done / error; the view
// is in #step-view's open shadow root).

type Msg = { type: string; req: number; [k: string]: unknown }

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T
const env = $('env'), info = $('model-info'), timings = $('timings'), idsOut = $('ids')
const progress = $<HTMLProgressElement>('progress')
const runBtn = $<HTMLButtonElement>('run'), stopBtn = $<HTMLButtonElement>('stop'), stepBtn = $<HTMLButtonElement>('step')
const stepState = $('step-state'), stepView = $('step-view')
const deviceSel = $<HTMLSelectElement>('device')
const outPrompt = $('out-prompt'), outNew = $('out-new')
const num = (id: string) => {
  const v = $<HTMLInputElement>(id).value.trim()
  return v === '' ? undefined : Number(v)
}

const engine = new Worker(new URL('./engine.js', import.meta.url), { type: 'module', name: 'refgpt-engine' })
let nextReq = 1
const pending = new Map<number, { resolve: (m: Msg) => void; reject: (e: Error) => void; onEvent?: (m: Msg) => void }>()
engine.onmessage = (ev: MessageEvent<Msg>) => {
  const m = ev.data
  const p = pending.get(m.req)
  if (!p) return
  if (m.type === 'progress' || m.type === 'token') p.onEvent?.(m)
  else {
    pending.delete(m.req)
    if (m.type === 'error') p.reject(new Error(String(m.message)))
    else p.resolve(m)
  }
}
engine.onerror = (e) => setState(env, 'error', `the engine failed to start: ${e.message}`)

function ask(msg: Record<string, unknown>, onEvent?: (m: Msg) => void): Promise<Msg> {
  const req = nextReq++
  return new Promise((resolve, reject) => {
    pending.set(req, { resolve, reject, onEvent })
    engine.postMessage({ ...msg, req })
  })
}

function setState(el: HTMLElement, state: string, text: string) {
  el.dataset.state = state
  el.textContent = text
}

const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`

/** Buttons that need a loaded model and an idle engine. */
function busy(on: boolean) {
  runBtn.disabled = on
  stepBtn.disabled = on
}

async function load(source: Record<string, unknown>, what: string) {
  busy(true)
  progress.value = 0
  setState(info, 'loading', `loading ${what}…`)
  try {
    const device = deviceSel.value
    const m = await ask({ type: 'load', source, threads: num('threads'), device }, (e) => {
      if (e.type === 'progress') progress.value = Number(e.done) / Math.max(1, Number(e.total))
    })
    progress.value = 1
    setState(info, 'loaded', `${m.modelType} (${m.family}) · ${(Number(m.parameters) / 1e6).toFixed(2)}M parameters, ${mb(Number(m.weightBytes))} · ${m.nLayer} layers · ${m.format} · loaded in ${(Number(m.loadMs) / 1000).toFixed(2)} s · ${deviceText(m)} · ${m.dir}`)
    info.dataset.threads = String(m.threads)
    info.dataset.device = String(m.device)
    busy(false)
  } catch (e) {
    setState(info, 'error', (e as Error).message)
  }
}

/** What the model runs on, as the model line says it. */
function deviceText(m: Msg): string {
  if (m.device === 'webgpu') return `webgpu: ${m.adapter}`
  if (m.device === 'wasm') return `${m.threads} thread(s), ${m.simd} SIMD`
  const where = m.device === 'webnn' ? `WebNN (${m.webnnType})` : `onnxruntime-web wasm, ${m.threads} thread(s)`
  return `${m.engine}: ${where} · static graphs: ${m.staticTokens}-token prefill, 1-token decode, ${m.capacity} positions`
}

$('url-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  const url = $<HTMLInputElement>('url').value.trim()
  // relative to the page (the engine worker's own URL is dist/engine.js)
  if (url) void load({ kind: 'url', url: new URL(url, location.href).href }, url)
})
for (const id of ['pick-dir', 'pick-files']) {
  $<HTMLInputElement>(id).addEventListener('change', (ev) => {
    const files = [...((ev.target as HTMLInputElement).files ?? [])]
    if (files.length) void load({ kind: 'files', files }, `${files.length} file(s)`)
  })
}

$('gen-form').addEventListener('submit', async (ev) => {
  ev.preventDefault()
  const prompt = $<HTMLTextAreaElement>('prompt').value
  const doSample = $<HTMLInputElement>('sample').checked
  busy(true)
  stopBtn.disabled = false
  outPrompt.textContent = prompt
  outNew.textContent = ''
  idsOut.textContent = ''
  setState(timings, 'running', 'generating…')
  try {
    const m = await ask(
      { type: 'generate', prompt, maxNewTokens: num('max-new') ?? 20, doSample, temperature: num('temperature'), topK: num('top-k'), topP: num('top-p'), seed: num('seed') ?? null },
      (e) => {
        if (e.type === 'token') outNew.textContent += String(e.text)
      },
    )
    idsOut.textContent = JSON.stringify({ prompt: m.promptIds, ids: m.ids, new: m.newIds })
    const n = (m.newIds as number[]).length
    setState(timings, 'done', `${n} new tokens · first token ${Number(m.firstTokenMs).toFixed(0)} ms · ${Number(m.tokensPerS).toFixed(1)} tokens/s after it · ${(Number(m.totalMs) / 1000).toFixed(2)} s in all · ${m.finishReason}${m.seed !== null ? ` · seed ${m.seed}` : ''}`)
  } catch (e) {
    setState(timings, 'error', (e as Error).message)
  } finally {
    busy(false)
    stopBtn.disabled = true
  }
})
stopBtn.addEventListener('click', () => void ask({ type: 'stop' }))

// The step-through: the engine runs one traced forward of the prompt and renders it with refgpt step's
// renderer (core's stepHtml); the view goes into a shadow root so its style sheet stays its own.
const stepRoot = stepView.attachShadow({ mode: 'open' })
stepBtn.addEventListener('click', async () => {
  const prompt = $<HTMLTextAreaElement>('prompt').value
  busy(true)
  setState(stepState, 'running', 'tracing one forward pass…')
  try {
    const m = await ask({ type: 'step', prompt })
    // the CLI page's style sheet, minus what it sets on <body>: here the view is a block of the page
    stepRoot.innerHTML = `<style>:host{display:block;font:14px/1.4 system-ui,sans-serif;color:#222}${String(m.css).replace(/^body\{[^}]*\}/, '')}</style>${m.html}`
    // the hover titles: the CLI page's script, run over the shadow root in place of the document
    new Function('document', String(m.js))(stepRoot)
    stepView.hidden = false
    stepState.dataset.layers = String(m.nLayer)
    stepState.dataset.heads = String(m.nHead)
    setState(stepState, 'done', `${m.stages} stages · ${m.nLayer} layers · ${(m.ids as number[]).length} tokens · traced and rendered in ${(Number(m.ms) / 1000).toFixed(2)} s`)
  } catch (e) {
    setState(stepState, 'error', (e as Error).message)
  } finally {
    busy(false)
  }
})

// a URL in the page's address (?model=models/gpt2-tiny/) fills the field
const fromQuery = new URLSearchParams(location.search).get('model')
$<HTMLInputElement>('url').value = fromQuery ?? 'models/gpt2-tiny/'

ask({ type: 'init' }).then(
  (m) => {
    const types = (m.webnnTypes as string[] | undefined) ?? []
    const webnn = !m.webnn ? 'not in this browser' : types.length ? types.join(', ') : `navigator.ml without a backend (${m.webnnError})`
    setState(env, 'ready', `cross-origin isolated: ${m.crossOriginIsolated ? 'yes' : 'no (1 thread)'} · threads: ${m.threads} · kernels: ${m.simd} SIMD · WebNN: ${webnn}`)
    env.dataset.webnn = String(m.webnn === true)
    env.dataset.webnnTypes = types.join(',')
    const nn = deviceSel.querySelector('option[value=webnn]') as HTMLOptionElement
    nn.disabled = types.length === 0
    nn.title = `WebNN: ${webnn}`
    if (types.length) nn.textContent = `webnn (${types[0]})`
    env.dataset.threads = String(m.threads)
    env.dataset.isolated = String(m.crossOriginIsolated)
    // webgpu is offered where the browser has WebGPU (navigator.gpu in the engine's worker)
    env.dataset.webgpu = String(m.webgpu === true)
    const gpu = deviceSel.querySelector('option[value=webgpu]') as HTMLOptionElement
    gpu.hidden = gpu.disabled = m.webgpu !== true
    $<HTMLInputElement>('threads').placeholder = String(m.threads)
  },
  (e) => setState(env, 'error', `the engine failed to start: ${(e as Error).message}`),
)
