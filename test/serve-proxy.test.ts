// Beyond one machine (issue 17 item 5): several `refgpt serve` processes behind a standard load balancer,
// HAProxy (Debian's haproxy package; docs/serve.md has this config and nginx's), which checks GET /health.
// Two instances on loopback: requests through the proxy reach both and give the text either gives alone;
// SIGTERM to one makes its /health answer 503, the proxy takes it out, and every request still succeeds.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { modelDir } from './helpers.js'

const HAPROXY: string | null = (() => {
  const r = spawnSync('haproxy', ['-v'], { encoding: 'utf8' })
  return r.status === 0 ? null : 'haproxy is not installed (apt-get install haproxy; .ci/run does)'
})()

const CLI = fileURLToPath(new URL('../packages/cli/src/main.ts', import.meta.url))

/** `refgpt serve` on a free port; resolves with the child and its URL once it listens. */
function serve(args: string[]): Promise<{ child: ChildProcess; url: string; exit: Promise<number | null>; err: () => string }> {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', CLI, 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = '', err = ''
  child.stderr!.on('data', (d) => (err += d))
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d
      const m = /on (http:\/\/\S+) \(/.exec(out)
      if (m) resolve({ child, url: m[1], exit, err: () => err })
    })
    exit.then((code) => reject(new Error(`refgpt serve exited (${code}) before listening: ${err}`)))
  })
}

/** A port nothing listens on now (for the proxy's frontend). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

async function completion(url: string, prompt: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt, max_tokens: 8, temperature: 0 }) })
  const json = await res.json()
  return { status: res.status, text: res.status === 200 ? json.choices[0].text : JSON.stringify(json) }
}

async function served(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const m = /refgpt_requests_total\{endpoint="\/v1\/completions",status="200"\} (\d+)/.exec(text)
  return m ? Number(m[1]) : 0
}

const test = suite('serve: two instances behind HAProxy with /health checks')
const name = 'round robin over both; SIGTERM to one: its /health turns 503, the proxy drops it, no request fails'
;(HAPROXY === null ? test : (console.log(`  SKIP serve behind haproxy: ${HAPROXY}`), test.skip))(name, async () => {
  const a = await serve(['--model', modelDir('gpt2-tiny'), '--shutdown-grace', '10'])
  const b = await serve(['--model', modelDir('gpt2-tiny')])
  const dir = mkdtempSync(join(tmpdir(), 'refgpt-haproxy-'))
  const port = await freePort()
  const cfg = join(dir, 'haproxy.cfg')
  const hostPort = (u: string) => u.replace(/^http:\/\//, '')
  writeFileSync(
    cfg,
    [
      'global',
      '  maxconn 256',
      'defaults',
      '  mode http',
      '  timeout connect 2s',
      '  timeout client 60s',
      '  timeout server 60s',
      '  retries 3',
      '  option redispatch',
      'frontend refgpt_in',
      `  bind 127.0.0.1:${port}`,
      '  default_backend refgpt',
      'backend refgpt',
      '  balance roundrobin',
      '  option httpchk GET /health',
      '  http-check expect status 200',
      '  default-server inter 100ms fall 2 rise 1',
      `  server a ${hostPort(a.url)} check`,
      `  server b ${hostPort(b.url)} check`,
      '',
    ].join('\n'),
  )
  const proxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] })
  let proxyErr = ''
  proxy.stderr!.on('data', (d) => (proxyErr += d))
  const front = `http://127.0.0.1:${port}`
  try {
    // wait until the proxy answers and has seen both servers healthy
    for (let i = 0; i < 100; i++) {
      const ok = await fetch(`${front}/health`).then((r) => r.status === 200, () => false)
      if (ok) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await new Promise((resolve) => setTimeout(resolve, 300))
    const want = (await completion(a.url, 'Through the proxy')).text
    assert.is((await completion(b.url, 'Through the proxy')).text, want, 'the two instances are the same model')
    const a0 = await served(a.url), b0 = await served(b.url)
    const first = await Promise.all(Array.from({ length: 12 }, () => completion(front, 'Through the proxy')))
    assert.equal(first.map((r) => r.status), new Array(12).fill(200))
    assert.equal(first.map((r) => r.text), new Array(12).fill(want))
    const a1 = await served(a.url), b1 = await served(b.url)
    assert.ok(a1 - a0 >= 3 && b1 - b0 >= 3, `both instances served: a ${a1 - a0}, b ${b1 - b0}`)

    // instance a stops: its /health says 503 at once, the proxy's checks take it out, b answers everything
    a.child.kill('SIGTERM')
    const during = await Promise.all(Array.from({ length: 8 }, (_, i) => new Promise((resolve) => setTimeout(resolve, i * 40)).then(() => completion(front, 'Through the proxy'))))
    assert.equal(during.map((r) => r.status), new Array(8).fill(200), `during the stop: ${JSON.stringify(during)}`)
    assert.is(await a.exit, 0, a.err())
    const b2 = await served(b.url)
    const after = await Promise.all(Array.from({ length: 6 }, () => completion(front, 'Through the proxy')))
    assert.equal(after.map((r) => r.status), new Array(6).fill(200), JSON.stringify(after))
    assert.equal(after.map((r) => r.text), new Array(6).fill(want))
    assert.is((await served(b.url)) - b2, 6, 'b alone served the requests after a left')
  } catch (e) {
    throw new Error(`${e instanceof Error ? e.message : String(e)}\nhaproxy: ${proxyErr.slice(-2000)}`)
  } finally {
    proxy.kill('SIGTERM')
    a.child.kill('SIGTERM')
    b.child.kill('SIGTERM')
    await b.exit
    rmSync(dir, { recursive: true, force: true })
  }
})
test.run()
