// Bundles the page (node packages/web/build.mjs; serve.mjs runs it first):
//   dist/app.js                 the page's UI (main thread; no model code)
//   dist/engine.js              a module worker: @refgpt/core's browser entry, loading and generation
//   dist/refgpt-pool-worker.js  the wasm thread pool's Web Worker (@refgpt/wasm's worker.browser.js)
//   dist/refgpt.wasm, dist/refgpt-relaxed.wasm   the kernels
//   dist/ort/                   onnxruntime-web (its ES module, the JSEP glue and wasm: the wasm and WebNN
//                               execution providers), loaded by the engine only when an ONNX device is chosen
// from the packages' dist/ (node scripts/build.mjs first). esbuild bundles for the browser: the "browser"
// condition and package.json "browser" maps put platform.browser.js in place of the Node platform files.
// A Node built-in left in the bundle is a build error, except the few uses in modules outside the loading
// path listed in NODE_SHIMS (each answered by ./src/node-shims.js, with what a page can give).
import { copyFileSync, mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const here = dirname(fileURLToPath(import.meta.url))
/** onnxruntime-web's files the page needs: the ES module (wasm + WebNN + WebGPU-JSEP providers) and its JSEP build. */
export const ORT_FILES = ['ort.min.mjs', 'ort-wasm-simd-threaded.jsep.mjs', 'ort-wasm-simd-threaded.jsep.wasm']
const root = join(here, '../..')
const out = join(here, 'dist')

/**
 * Node built-ins that modules on the page's path still import, and who imports them: they get
 * src/node-shims.js. Anything else is an error. (models/memory.ts: free memory and cores for the memory
 * estimate; generation/sampler.ts: webcrypto for a random seed; models/defaults.ts: a file URL;
 * device/webgpu/adapter.ts: finding Dawn in Node, behind the webgpu device's dynamic import.)
 */
const NODE_SHIMS = new Set(['node:fs', 'node:os', 'node:crypto', 'node:url', 'node:path', 'node:module', 'node:child_process'])

/** Which module imported each shimmed built-in (reported by --verbose). */
const shimmed = new Map()

const nodeBuiltins = {
  name: 'node-builtins',
  setup(b) {
    b.onResolve({ filter: /^(node:)?[a-z_/]+$/ }, (args) => {
      const name = args.path.startsWith('node:') ? args.path : `node:${args.path}`
      if (!isBuiltin(name)) return undefined
      if (!NODE_SHIMS.has(name)) {
        return { errors: [{ text: `${relative(root, args.importer)} imports ${args.path}: a Node built-in on the page's path` }] }
      }
      const who = shimmed.get(name) ?? new Set()
      who.add(relative(root, args.importer))
      shimmed.set(name, who)
      return { path: join(here, 'src/node-shims.js') }
    })
  },
}

const BUILTINS = new Set(['fs', 'fs/promises', 'os', 'path', 'url', 'crypto', 'child_process', 'worker_threads', 'zlib', 'module', 'util', 'stream', 'events', 'buffer', 'http', 'https', 'net', 'tty', 'process', 'assert'])
function isBuiltin(name) {
  return BUILTINS.has(name.slice(5))
}

export async function build({ verbose = false } = {}) {
  mkdirSync(out, { recursive: true })
  const common = {
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: true,
    logLevel: 'warning',
    plugins: [nodeBuiltins],
    // modules outside the loading path read process.env / process.platform behind checks
    define: { 'process.platform': '"browser"' },
    inject: [join(here, 'src/process-shim.js')],
  }
  const t0 = Date.now()
  await Promise.all([
    esbuild.build({ ...common, entryPoints: { app: join(here, 'src/app.ts') }, outdir: out }),
    esbuild.build({ ...common, entryPoints: { engine: join(here, 'src/engine.ts') }, outdir: out }),
    esbuild.build({ ...common, entryPoints: { 'refgpt-pool-worker': join(root, 'packages/wasm/dist/worker.browser.js') }, outdir: out }),
  ])
  for (const f of ['refgpt.wasm', 'refgpt-relaxed.wasm']) copyFileSync(join(root, 'packages/wasm/build', f), join(out, f))
  // onnxruntime-web as it ships (not bundled: its module finds the glue and the wasm beside itself)
  const ortDist = dirname(createRequire(import.meta.url).resolve('onnxruntime-web'))
  mkdirSync(join(out, 'ort'), { recursive: true })
  for (const f of ORT_FILES) copyFileSync(join(ortDist, f), join(out, 'ort', f))
  if (verbose) for (const [name, who] of shimmed) console.log(`shimmed ${name}: ${[...who].join(', ')}`)
  return { ms: Date.now() - t0 }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { ms } = await build({ verbose: process.argv.includes('--verbose') })
  console.log(`built ${relative(process.cwd(), out)} in ${ms} ms`)
}
