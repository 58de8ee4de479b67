// The browser demo (packages/web): the page in headless Chromium, driven with playwright-core, loads the
// tiny fixtures from the dev server (HTTP range requests) and from picked files (a directory picker and a
// file list), generates greedily on the wasm device with its thread pool (the server sends COOP/COEP, so
// the page is cross-origin isolated), and must give transformers' greedy ids (golden.json). A screenshot
// of the page is checked and written to test-artifacts/web-page.png (CI keeps it). The step-through view
// (one traced forward, drawn by refgpt step --html's renderer) must show every layer with its attention
// heatmaps and token labels, on wasm and on webgpu; its screenshot goes to test-artifacts/web-step.png.
// WebGPU in headless Chromium is SwiftShader (--enable-unsafe-webgpu; see WEBGPU_FLAGS): gpt2-tiny on the
// webgpu device must give the golden greedy ids too. Without an adapter that part is a SKIP line.
// Without Chromium the browser part is skipped (and CI, which has it, fails on that skip: scripts/test.mjs).
// The onnx device (static ONNX graphs in onnxruntime-web, exported in the page) gives the golden greedy ids
// too; WebNN is probed with Chromium's flag (navigator.ml there, no backend on Linux: reported, not offered).
// Two checks need no browser: the page's folder readers over HTTP in Node (a server without range
// support is a one-line error), and the bundle build (no Node built-in outside the listed shims).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { loadModel } from '@refgpt/core'
import { urlFolder } from '../packages/core/src/io/browser.js'

const test = suite('web')
/** Chromium's flag for WebNN (navigator.ml); whether a context comes with it depends on the build's backends. */
const WEBNN_FLAGS = ['--enable-features=WebMachineLearningNeuralNetwork']
const root = fileURLToPath(new URL('..', import.meta.url))
const models = join(root, 'test/fixtures/models')
const golden = (name: string) => JSON.parse(readFileSync(join(models, name, 'golden.json'), 'utf8'))

// Debian's and Ubuntu's names, Chrome, or CHROMIUM_PATH (as test/step.test.ts)
const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => p && existsSync(p))

/**
 * Chromium's flags for WebGPU on SwiftShader (a CPU Vulkan driver shipped with Chromium), headless and with
 * --disable-gpu: --enable-unsafe-webgpu alone gives the adapter with Debian's chromium 156; the other two
 * say which adapter and keep SwiftShader allowed where Chromium stops falling back to it by itself.
 */
const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--use-webgpu-adapter=swiftshader']
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', ...WEBGPU_FLAGS]

const listen = (s: Server) => new Promise<number>((ok) => s.listen(0, '127.0.0.1', () => ok((s.address() as { port: number }).port)))

test('urlFolder: a server that ignores Range is refused with a one-line error naming the file', async () => {
  const dir = join(models, 'gpt2-tiny')
  const server = createServer((req, res) => {
    const file = join(dir, decodeURIComponent(new URL(req.url!, 'http://x').pathname.slice(1)))
    if (!existsSync(file)) return res.writeHead(404).end()
    res.writeHead(200, { 'Content-Length': readFileSync(file).length }).end(readFileSync(file))
  })
  const port = await listen(server)
  try {
    const e = await loadModel(urlFolder(`http://127.0.0.1:${port}`), { device: 'js' }).then(() => null, (e: Error) => e)
    assert.ok(e, 'loadModel should refuse')
    assert.match(e!.message, /model\.safetensors: the server does not support HTTP range requests/)
    assert.not.match(e!.message, /\n/)
  } finally {
    server.close()
  }
})

test('the bundle builds with no Node built-in outside the listed shims', async () => {
  const { build } = await import('../packages/web/build.mjs')
  await build()
  for (const f of ['app.js', 'engine.js', 'refgpt-pool-worker.js', 'refgpt.wasm', 'ort/ort.min.mjs', 'ort/ort-wasm-simd-threaded.jsep.wasm']) assert.ok(existsSync(join(root, 'packages/web/dist', f)), f)
  const engine = readFileSync(join(root, 'packages/web/dist/engine.js'), 'utf8')
  assert.not.match(engine, /from\s*["']node:/)
})

/** Width and height of a PNG (its IHDR chunk), after checking the signature. */
function pngSize(png: Buffer): { width: number; height: number } {
  assert.equal([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature')
  assert.is(png.toString('latin1', 12, 16), 'IHDR')
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) }
}

// One browser and one dev server for the page tests; the WebGPU adapter is probed first (in a page of the
// dev server: WebGPU needs a secure context) so that the webgpu test is registered, or skipped, up front.
type Browser = import('playwright-core').Browser
type Page = import('playwright-core').Page
let shared: { browser: Browser; server: Server; url: string } | undefined
let webgpuSkip: string | null = 'no Chromium'
if (CHROMIUM) {
  const { serve } = await import('../packages/web/serve.mjs')
  const { chromium } = await import('playwright-core')
  const { server, url } = await serve({ port: 0, host: '127.0.0.1', models, build: !existsSync(join(root, 'packages/web/dist/engine.js')) })
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS })
  shared = { browser, server, url }
  const probe = await browser.newPage()
  try {
    await probe.goto(url + 'style.css')
    webgpuSkip = await probe.evaluate(async () => {
      const gpu = (navigator as { gpu?: { requestAdapter(): Promise<{ info?: { architecture?: string } } | null> } }).gpu
      if (!gpu) return 'no navigator.gpu in this Chromium'
      const a = await gpu.requestAdapter().catch((e: Error) => e)
      return a instanceof Error ? `requestAdapter() failed: ${a.message}` : a === null ? 'navigator.gpu.requestAdapter() gave null (no adapter, not even SwiftShader)' : null
    })
  } finally {
    await probe.close()
  }
}
test.after(async () => {
  await shared?.browser.close()
  shared?.server.close()
})

/** A fresh page on the dev server, its errors collected into `errors`, once the engine is ready. */
async function openPage(errors: string[]): Promise<Page> {
  const page = await shared!.browser.newPage({ viewport: { width: 1024, height: 768 }, deviceScaleFactor: 1 })
  page.on('pageerror', (e) => errors.push(String(e)))
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
  await page.goto(shared!.url)
  await page.waitForSelector('#env[data-state=ready], #env[data-state=error]')
  assert.is(await page.getAttribute('#env', 'data-state'), 'ready', (await page.textContent('#env')) ?? '')
  return page
}

/** Loads a fixture from the dev server on `device`. */
async function loadFrom(page: Page, name: string, device: 'wasm' | 'webgpu' | 'onnx' | 'webnn') {
  if (device !== 'wasm') assert.is(await page.$eval(`#device option[value=${device}]`, (o) => (o as HTMLOptionElement).disabled), false, `the device choice offers ${device}`)
  await page.selectOption('#device', device)
  await page.fill('#url', `models/${name}/`)
  await page.click('#load-url')
  await page.waitForSelector('#model-info[data-state=loaded], #model-info[data-state=error]')
  const info = await page.evaluate(() => ({ state: document.getElementById('model-info')!.dataset.state, device: document.getElementById('model-info')!.dataset.device, text: document.getElementById('model-info')!.textContent }))
  assert.is(info.state, 'loaded', `${name} on ${device}: ${info.text}`)
  assert.is(info.device, device, info.text ?? '')
  return info.text ?? ''
}

/** Greedy generation from the golden prompt p1 in a loaded page: the ids it shows. */
async function greedyIds(page: Page, name: string): Promise<number[]> {
  await page.fill('#prompt', golden(name).prompts.p1.decoded)
  await page.fill('#max-new', '20')
  await page.check('#greedy')
  await page.click('#run')
  await page.waitForSelector('#timings[data-state=done], #timings[data-state=error]')
  assert.is(await page.getAttribute('#timings', 'data-state'), 'done', (await page.textContent('#timings')) ?? '')
  return JSON.parse((await page.textContent('#ids'))!).ids
}

/**
 * Runs the step-through of the golden prompt in a loaded page and checks the view: one layer section per
 * layer, nHead attention heatmaps in each (decoded images, T × T cells), token labels on both axes equal
 * to the prompt's pieces, legends, the logit-lens grid with a row per layer, and the top next tokens.
 */
async function checkStep(page: Page, name: string, nLayer: number, nHead: number) {
  const g = golden(name)
  await page.fill('#prompt', g.prompts.p1.decoded)
  await page.click('#step')
  await page.waitForSelector('#step-state[data-state=done], #step-state[data-state=error]', { timeout: 30_000 })
  assert.is(await page.getAttribute('#step-state', 'data-state'), 'done', (await page.textContent('#step-state')) ?? '')
  const T = g.prompts.p1.ids.length
  // (no named functions inside: the test's transpiler would wrap them in a helper the page does not have)
  const view = await page.evaluate(() => {
    const root = document.getElementById('step-view')!.shadowRoot!
    const img = root.querySelector('figure[data-kind=attention] img.heatmap') as HTMLImageElement
    const box = img.getBoundingClientRect()
    img.dispatchEvent(new MouseEvent('mousemove', { clientX: box.left + 1, clientY: box.top + 1 }))
    return {
      layers: [...root.querySelectorAll('section.layer')].map((s) => ({
        layer: Number((s as HTMLElement).dataset.layer),
        heads: [...s.querySelectorAll('figure[data-kind=attention]')].map((f) => {
          const i = f.querySelector('img.heatmap') as HTMLImageElement
          return {
            rows: [...f.querySelectorAll('.yl .tok')].map((t) => t.getAttribute('title')),
            cols: [...f.querySelectorAll('.xl .tok')].map((t) => t.getAttribute('title')),
            img: { complete: i.complete, w: i.naturalWidth, h: i.naturalHeight },
            legend: f.querySelector('.legend[data-scale=absolute]') !== null,
          }
        }),
        stages: [...s.querySelectorAll('.stage')].map((d) => (d as HTMLElement).dataset.key),
      })),
      stages: [...root.querySelectorAll('.stage')].map((d) => (d as HTMLElement).dataset.key),
      lensRows: root.querySelectorAll('figure[data-kind=lens-grid] tbody tr').length,
      topRows: root.querySelectorAll('.stage[data-key=logits] table.top tr').length - 1,
      explanations: root.querySelectorAll('.stage p').length,
      hover: img.title,
    }
  })
  assert.equal(view.layers.map((l) => l.layer), Array.from({ length: nLayer }, (_, l) => l), `${name}: one section per layer`)
  const titles = g.prompts.p1.ids.map((_: number, i: number) => `position ${i}: `)
  for (const l of view.layers) {
    assert.equal(l.stages, [`h.${l.layer}.ln_1`, `h.${l.layer}.attn`, `h.${l.layer}.mlp`, `h.${l.layer}.out`], `layer ${l.layer}: the stages`)
    assert.is(l.heads.length, nHead, `layer ${l.layer}: a heatmap per head`)
    for (const h of l.heads) {
      assert.equal(h.img, { complete: true, w: T, h: T }, `layer ${l.layer}: the heatmap decoded, one pixel per cell`)
      assert.is(h.rows.length, T, 'a token label per row')
      assert.is(h.cols.length, T, 'a token label per column')
      h.rows.forEach((t, i) => assert.ok(t!.startsWith(titles[i]), `row label ${i}: ${t}`))
      h.cols.forEach((t, i) => assert.ok(t!.startsWith(titles[i]), `column label ${i}: ${t}`))
      assert.ok(h.legend, 'a legend on the absolute scale')
    }
  }
  assert.equal([view.stages[0], view.stages[1], ...view.stages.slice(-2)], ['tokens', 'embed', 'ln_f', 'logits'])
  assert.is(view.lensRows, nLayer, 'the logit-lens grid: a row per layer')
  assert.is(view.topRows, 5, 'the top-5 next tokens')
  assert.ok(view.explanations >= 4 * nLayer + 4, 'each stage explained')
  assert.match(view.hover, /^position 0: .* → position 0: .*: p = 1$/, `the hover title ${JSON.stringify(view.hover)} (the CLI page's script, on the shadow root)`)
}

if (!CHROMIUM) console.log('  SKIP web page browser check: no Chromium (apt-get install chromium, or set CHROMIUM_PATH)')
;(CHROMIUM ? test : test.skip)('the page loads the fixtures from the dev server and from picked files and generates the golden greedy ids on wasm', async () => {
  const { serve } = await import('../packages/web/serve.mjs')
  const { browser, url } = shared!
  const page = await browser.newPage({ viewport: { width: 1024, height: 768 }, deviceScaleFactor: 1 })
  try {
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(String(e)))
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
    await page.goto(url)
    await page.waitForSelector('#env[data-state=ready], #env[data-state=error]')
    const env = await page.evaluate(() => ({
      isolated: globalThis.crossOriginIsolated,
      cores: navigator.hardwareConcurrency,
      state: document.getElementById('env')!.dataset.state,
      text: document.getElementById('env')!.textContent,
      threads: Number(document.getElementById('env')!.dataset.threads),
    }))
    assert.is(env.state, 'ready', env.text ?? '')
    assert.is(env.isolated, true, 'the dev server sends COOP/COEP: the page is cross-origin isolated')
    assert.is(env.threads, env.cores, 'threads = navigator.hardwareConcurrency when isolated')

    /** Loads with `start`, generates greedily from the golden prompt p1, returns what the page shows. */
    const run = async (name: string, start: () => Promise<void>) => {
      const g = golden(name)
      await start()
      await page.waitForSelector('#model-info[data-state=loaded], #model-info[data-state=error]')
      const info = await page.evaluate(() => ({ state: document.getElementById('model-info')!.dataset.state, text: document.getElementById('model-info')!.textContent, threads: Number(document.getElementById('model-info')!.dataset.threads) }))
      assert.is(info.state, 'loaded', `${name}: ${info.text}`)
      assert.is(info.threads, env.threads, `${name}: the model runs on every thread`)
      await page.fill('#prompt', g.prompts.p1.decoded)
      await page.fill('#max-new', '20')
      await page.check('#greedy')
      await page.click('#run')
      await page.waitForSelector('#timings[data-state=done], #timings[data-state=error]')
      const out = await page.evaluate(() => ({ state: document.getElementById('timings')!.dataset.state, text: document.getElementById('timings')!.textContent, ids: document.getElementById('ids')!.textContent, shown: document.getElementById('out-new')!.textContent }))
      assert.is(out.state, 'done', `${name}: ${out.text}`)
      const ids = JSON.parse(out.ids!)
      assert.equal(ids.prompt, g.prompts.p1.ids, `${name}: the page's prompt ids`)
      assert.equal(ids.ids, g.greedy.p1.sequence, `${name}: greedy ids equal transformers' (golden.json)`)
      assert.ok(out.shown!.length > 0, `${name}: the new text streamed into the page`)
    }

    await run('gpt2-tiny', async () => {
      await page.fill('#url', 'models/gpt2-tiny/')
      await page.click('#load-url')
    })
    await run('gpt-neo-tiny', async () => {
      await page.fill('#url', 'models/gpt-neo-tiny/')
      await page.click('#load-url')
    })
    // several picked files: gpt-neo-tiny's torch.save checkpoint with its tokenizer
    const neo = join(models, 'gpt-neo-tiny')
    await run('gpt-neo-tiny', () => page.setInputFiles('#pick-files', ['config.json', 'generation_config.json', 'vocab.json', 'merges.txt', 'pytorch_model.bin'].map((f) => join(neo, f))))
    // a directory picker's folder (webkitRelativePath "gpt2-tiny/...")
    await run('gpt2-tiny', () => page.setInputFiles('#pick-dir', join(models, 'gpt2-tiny')))

    // without COOP/COEP: not isolated, one thread, the same ids
    const plain = await serve({ port: 0, host: '127.0.0.1', models, build: false, isolation: false })
    try {
      const p2 = await browser.newPage()
      p2.on('pageerror', (e) => errors.push(String(e)))
      await p2.goto(plain.url)
      await p2.waitForSelector('#env[data-state=ready], #env[data-state=error]')
      assert.equal(await p2.evaluate(() => [globalThis.crossOriginIsolated, document.getElementById('env')!.dataset.threads]), [false, '1'])
      const g = golden('gpt2-tiny')
      await p2.fill('#url', 'models/gpt2-tiny/')
      await p2.click('#load-url')
      await p2.waitForSelector('#model-info[data-state=loaded], #model-info[data-state=error]')
      assert.is(await p2.evaluate(() => document.getElementById('model-info')!.dataset.threads), '1', (await p2.textContent('#model-info'))!)
      await p2.fill('#prompt', g.prompts.p1.decoded)
      await p2.click('#run')
      await p2.waitForSelector('#timings[data-state=done], #timings[data-state=error]')
      assert.equal(JSON.parse((await p2.textContent('#ids'))!).ids, g.greedy.p1.sequence, 'gpt2-tiny on one thread, not isolated')
      await p2.close()
    } finally {
      plain.server.close()
    }

    const png = await page.screenshot()
    assert.equal(pngSize(png), { width: 1024, height: 768 })
    assert.ok(png.length > 10_000, `a page with content, not a blank image (${png.length} bytes)`)
    mkdirSync(join(root, 'test-artifacts'), { recursive: true })
    writeFileSync(join(root, 'test-artifacts/web-page.png'), png)
    assert.equal(errors, [], 'no page errors')
  } finally {
    await page.close()
  }
})

/** Checks a screenshot (PNG signature, size, not blank) and keeps it in test-artifacts/. */
function keepShot(png: Buffer, file: string, width: number) {
  const size = pngSize(png)
  assert.is(size.width, width)
  assert.ok(size.height >= 300, `the view's height (${size.height})`)
  assert.ok(png.length > 20_000, `a view with content, not a blank image (${png.length} bytes)`)
  mkdirSync(join(root, 'test-artifacts'), { recursive: true })
  writeFileSync(join(root, 'test-artifacts', file), png)
}

;(CHROMIUM ? test : test.skip)('the step-through renders every layer on wasm (gpt-neo-tiny): heatmaps with token labels and legends, the logit lens; screenshot kept', async () => {
  const errors: string[] = []
  const page = await openPage(errors)
  try {
    await loadFrom(page, 'gpt-neo-tiny', 'wasm')
    await checkStep(page, 'gpt-neo-tiny', 4, 4)
    const shot = await page.locator('#step-through').screenshot()
    keepShot(shot, 'web-step.png', await page.locator('#step-through').evaluate((e) => Math.round(e.getBoundingClientRect().width)))
    assert.equal(errors, [], 'no page errors')
  } finally {
    await page.close()
  }
})

if (CHROMIUM && webgpuSkip) console.log(`  SKIP web page webgpu: ${webgpuSkip}`)
;(CHROMIUM && !webgpuSkip ? test : test.skip)('on webgpu (SwiftShader): gpt2-tiny from the dev server gives the golden greedy ids, and the step-through renders every layer', async () => {
  const errors: string[] = []
  const page = await openPage(errors)
  try {
    assert.is(await page.getAttribute('#env', 'data-webgpu'), 'true')
    // Debian's Chromium on Linux has no WebNN (navigator.ml): the page says so
    assert.is(await page.getAttribute('#env', 'data-webnn'), 'false')
    const info = await loadFrom(page, 'gpt2-tiny', 'webgpu')
    assert.match(info, /webgpu: .*swiftshader/i)
    assert.equal(await greedyIds(page, 'gpt2-tiny'), golden('gpt2-tiny').greedy.p1.sequence, "gpt2-tiny on webgpu: greedy ids equal transformers' (golden.json)")
    await checkStep(page, 'gpt2-tiny', 2, 4)
    keepShot(await page.locator('#step-through').screenshot(), 'web-step-webgpu.png', await page.locator('#step-through').evaluate((e) => Math.round(e.getBoundingClientRect().width)))
    assert.equal(errors, [], 'no page errors')
  } finally {
    await page.close()
  }
})

// The ONNX devices: the model exported to static graphs (a 32-token prefill graph, a 1-token decode graph,
// a 128-position cache) in the page and run by onnxruntime-web, here on its wasm provider; WebNN takes the
// same graphs with its execution provider.
;(CHROMIUM ? test : test.skip)('onnx device: static ONNX graphs in onnxruntime-web give the golden greedy ids on gpt2-tiny, gpt-neo-tiny and gpt-j-tiny; the step-through says it needs refgpt\'s forward', async () => {
  const errors: string[] = []
  const page = await openPage(errors)
  try {
    // Debian's Chromium without flags has no navigator.ml: webnn is offered but disabled, saying why
    assert.is(await page.getAttribute('#env', 'data-webnn'), 'false')
    assert.equal(await page.$eval('#device option[value=webnn]', (o) => [(o as HTMLOptionElement).disabled, (o as HTMLOptionElement).title]), [true, 'WebNN: not in this browser'])
    for (const name of ['gpt2-tiny', 'gpt-neo-tiny', 'gpt-j-tiny']) {
      const info = await loadFrom(page, name, 'onnx')
      assert.match(info, /ort:wasm: onnxruntime-web wasm, \d+ thread\(s\) · static graphs: 32-token prefill, 1-token decode, 128 positions/)
      assert.equal(await greedyIds(page, name), golden(name).greedy.p1.sequence, `${name} on onnxruntime-web (static graphs): greedy ids equal transformers' (golden.json)`)
    }
    await page.fill('#prompt', 'Hello')
    await page.click('#step')
    await page.waitForSelector('#step-state[data-state=done], #step-state[data-state=error]')
    assert.is(await page.getAttribute('#step-state', 'data-state'), 'error')
    assert.match((await page.textContent('#step-state'))!, /tracing needs refgpt's own forward/)
    assert.equal(errors, [], 'no page errors')
  } finally {
    await page.close()
  }
})

// WebNN behind Chromium's flag: navigator.ml appears; the page asks each device type (npu, gpu, cpu) for a
// context. Debian's Chromium 156 on Linux has no WebNN backend ("WebNN is not supported on this platform"),
// so the page says so and keeps webnn disabled. Where a context comes (Chrome on Windows / macOS / ChromeOS),
// the same test runs the golden greedy check on WebNN.
;(CHROMIUM ? test : test.skip)('webnn: with --enable-features=WebMachineLearningNeuralNetwork the page finds navigator.ml, asks npu/gpu/cpu for a context, and offers webnn only when one comes', async () => {
  const { chromium } = await import('playwright-core')
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...LAUNCH_ARGS, ...WEBNN_FLAGS] })
  try {
    const page = await browser.newPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(String(e)))
    await page.goto(shared!.url)
    await page.waitForSelector('#env[data-state=ready], #env[data-state=error]')
    assert.is(await page.getAttribute('#env', 'data-state'), 'ready', (await page.textContent('#env')) ?? '')
    assert.is(await page.getAttribute('#env', 'data-webnn'), 'true', 'navigator.ml with the flag')
    const types = (await page.getAttribute('#env', 'data-webnn-types'))!
    const option = await page.$eval('#device option[value=webnn]', (o) => ({ disabled: (o as HTMLOptionElement).disabled, title: (o as HTMLOptionElement).title, text: o.textContent }))
    if (types === '') {
      assert.match((await page.textContent('#env'))!, /WebNN: navigator\.ml without a backend \(npu: NotSupportedError: .*not supported on this platform/)
      assert.is(option.disabled, true)
      assert.match(option.title, /^WebNN: navigator\.ml without a backend/)
      console.log(`  SKIP webnn generation: navigator.ml gives no context in this Chromium (${option.title})`)
    } else {
      assert.is(option.disabled, false)
      assert.is(option.text, `webnn (${types.split(',')[0]})`)
      const info = await loadFrom(page, 'gpt2-tiny', 'webnn')
      assert.match(info, /ort:webnn: WebNN/)
      assert.equal(await greedyIds(page, 'gpt2-tiny'), golden('gpt2-tiny').greedy.p1.sequence, 'gpt2-tiny on WebNN: the golden greedy ids')
    }
    assert.equal(errors, [], 'no page errors')
  } finally {
    await browser.close()
  }
})

test.run()
