// The browser demo (packages/web): the page in headless Chromium, driven with playwright-core, loads the
// tiny fixtures from the dev server (HTTP range requests) and from picked files (a directory picker and a
// file list), generates greedily on the wasm device with its thread pool (the server sends COOP/COEP, so
// the page is cross-origin isolated), and must give transformers' greedy ids (golden.json). A screenshot
// of the page is checked and written to test-artifacts/web-page.png (CI keeps it).
// Without Chromium the browser part is skipped (and CI, which has it, fails on that skip: scripts/test.mjs).
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
const root = fileURLToPath(new URL('..', import.meta.url))
const models = join(root, 'test/fixtures/models')
const golden = (name: string) => JSON.parse(readFileSync(join(models, name, 'golden.json'), 'utf8'))

// Debian's and Ubuntu's names, Chrome, or CHROMIUM_PATH (as test/step.test.ts)
const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => p && existsSync(p))

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
  for (const f of ['app.js', 'engine.js', 'refgpt-pool-worker.js', 'refgpt.wasm']) assert.ok(existsSync(join(root, 'packages/web/dist', f)), f)
  const engine = readFileSync(join(root, 'packages/web/dist/engine.js'), 'utf8')
  assert.not.match(engine, /from\s*["']node:/)
})

/** Width and height of a PNG (its IHDR chunk), after checking the signature. */
function pngSize(png: Buffer): { width: number; height: number } {
  assert.equal([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature')
  assert.is(png.toString('latin1', 12, 16), 'IHDR')
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) }
}

if (!CHROMIUM) console.log('  SKIP web page browser check: no Chromium (apt-get install chromium, or set CHROMIUM_PATH)')
;(CHROMIUM ? test : test.skip)('the page loads the fixtures from the dev server and from picked files and generates the golden greedy ids on wasm', async () => {
  const { serve } = await import('../packages/web/serve.mjs')
  const { server, url } = await serve({ port: 0, host: '127.0.0.1', models, build: false })
  const { chromium } = await import('playwright-core')
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  try {
    const page = await browser.newPage({ viewport: { width: 1024, height: 768 }, deviceScaleFactor: 1 })
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
    await browser.close()
    server.close()
  }
})

test.run()
