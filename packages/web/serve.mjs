// The demo's dev server: node packages/web/serve.mjs [--port N] [--host H] [--models DIR] [--no-build] [--no-isolation]
//
// Builds the page (build.mjs) unless --no-build, then serves, with Node's http module:
//   /            index.html, style.css and dist/ (the bundles and the kernels)
//   /models/...  the model folders under DIR (default: test/fixtures/models), with HTTP range requests
// Every answer carries Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy:
// require-corp, so the page is cross-origin isolated and the wasm core runs its thread pool (Web Workers
// over SharedArrayBuffer); --no-isolation leaves them out (the page then runs on one thread). --port 0
// takes a free port; the first line printed is the page's URL.
import { createReadStream, existsSync, realpathSync, statSync } from 'node:fs'
import { createServer } from 'node:http'
import { extname, join, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = fileURLToPath(new URL('.', import.meta.url))
const root = join(here, '../..')

function parseArgs(argv) {
  const o = { port: 8080, host: '127.0.0.1', models: join(root, 'test/fixtures/models'), build: true, isolation: true }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--port') o.port = Number(value())
    else if (a === '--host') o.host = value()
    else if (a === '--models') o.models = resolve(value())
    else if (a === '--no-build') o.build = false
    else if (a === '--no-isolation') o.isolation = false
    else if (a === '--help' || a === '-h') {
      console.log('usage: node packages/web/serve.mjs [--port N] [--host H] [--models DIR] [--no-build] [--no-isolation]')
      process.exit(0)
    } else throw new Error(`unknown option ${a} (see --help)`)
  }
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw new Error(`--port ${o.port}: expected 0 .. 65535`)
  return o
}

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json', '.json': 'application/json', '.txt': 'text/plain; charset=utf-8', '.wasm': 'application/wasm',
  '.md': 'text/plain; charset=utf-8',
}

/** The file under `base` a URL path names, or null (outside it, or not a regular file). */
function fileUnder(base, urlPath) {
  let rel
  try {
    rel = decodeURIComponent(urlPath)
  } catch {
    return null
  }
  if (rel.includes('\0')) return null
  const file = resolve(base, '.' + (rel.startsWith('/') ? rel : '/' + rel))
  if (file !== base && !file.startsWith(base + sep)) return null
  if (!existsSync(file)) return null
  const real = realpathSync(file)
  const realBase = realpathSync(base)
  if (real !== realBase && !real.startsWith(realBase + sep)) return null
  return statSync(real).isFile() ? real : null
}

/** Sends a file, or the one byte range a Range header asks for (206; 416 when it lies outside). */
function sendFile(req, res, file, headers) {
  const size = statSync(file).size
  const type = TYPES[extname(file)] ?? 'application/octet-stream'
  const h = { ...headers, 'Content-Type': type, 'Accept-Ranges': 'bytes', 'Cache-Control': 'no-cache' }
  const range = req.headers.range
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim())
    let start, end
    if (m && (m[1] !== '' || m[2] !== '')) {
      if (m[1] === '') {
        start = Math.max(0, size - Number(m[2]))
        end = size - 1
      } else {
        start = Number(m[1])
        end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
      }
    }
    if (start === undefined || start > end || start >= size) {
      res.writeHead(416, { ...h, 'Content-Range': `bytes */${size}` })
      return res.end()
    }
    res.writeHead(206, { ...h, 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': end - start + 1 })
    if (req.method === 'HEAD') return res.end()
    return createReadStream(file, { start, end }).pipe(res)
  }
  res.writeHead(200, { ...h, 'Content-Length': size })
  if (req.method === 'HEAD') return res.end()
  createReadStream(file).pipe(res)
}

export async function serve(opts) {
  if (!existsSync(opts.models)) throw new Error(`--models ${opts.models}: no such folder`)
  if (opts.build) await (await import('./build.mjs')).build()
  const site = realpathSync(here)
  const models = realpathSync(opts.models)
  const isolation = opts.isolation === false ? {} : {
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'Cross-Origin-Resource-Policy': 'same-origin',
  }
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...isolation, Allow: 'GET, HEAD' })
      return res.end()
    }
    let file = null
    if (url.pathname === '/' || url.pathname === '/index.html') file = join(site, 'index.html')
    else if (url.pathname === '/style.css') file = join(site, 'style.css')
    else if (url.pathname.startsWith('/dist/')) file = fileUnder(join(site, 'dist'), url.pathname.slice('/dist'.length))
    else if (url.pathname.startsWith('/models/')) file = fileUnder(models, url.pathname.slice('/models'.length))
    if (!file) {
      res.writeHead(404, { ...isolation, 'Content-Type': 'text/plain; charset=utf-8' })
      return res.end('not found\n')
    }
    sendFile(req, res, file, isolation)
  })
  await new Promise((ok, fail) => {
    server.once('error', fail)
    server.listen(opts.port, opts.host, ok)
  })
  const { port } = server.address()
  return { server, url: `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}/` }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  let opts
  try {
    opts = parseArgs(process.argv.slice(2))
  } catch (e) {
    console.error(`serve.mjs: ${e.message}`)
    process.exit(2)
  }
  const { url } = await serve(opts)
  console.log(`refgpt web: ${url}`)
  console.log(`models from ${opts.models} at ${url}models/ (e.g. ${url}?model=models/gpt2-tiny/)`)
}
