// What a page can give for the Node built-ins that modules outside refgpt's loading path import (see
// NODE_SHIMS in build.mjs). Functions that need a file system throw; the rest answer from the browser.
const nav = globalThis.navigator ?? {}
const noFs = (name) => () => {
  const e = new Error(`${name}: a page has no file system`)
  e.code = 'ENOENT'
  throw e
}
// node:os
export const availableParallelism = () => (globalThis.crossOriginIsolated ? nav.hardwareConcurrency ?? 1 : 1)
export const cpus = () => Array.from({ length: availableParallelism() }, () => ({ model: 'browser' }))
/** navigator.deviceMemory (GiB, rounded down and capped by the browser) or 4 GiB: the wasm32 limit is what binds. */
export const freemem = () => (nav.deviceMemory ?? 4) * 2 ** 30
export const totalmem = freemem
export const endianness = () => 'LE'
export const homedir = () => '/'
export const tmpdir = () => '/tmp'
export const platform = () => 'browser'
// node:crypto
export const webcrypto = globalThis.crypto
export const randomBytes = (n) => globalThis.crypto.getRandomValues(new Uint8Array(n))
export const createHash = () => {
  throw new Error('createHash: not available in a page')
}
// node:fs
export const existsSync = () => false
export const readFileSync = noFs('readFileSync')
export const readdirSync = noFs('readdirSync')
export const realpathSync = noFs('realpathSync')
export const statSync = noFs('statSync')
export const writeFileSync = noFs('writeFileSync')
export const renameSync = noFs('renameSync')
export const unlinkSync = noFs('unlinkSync')
export const mkdtempSync = noFs('mkdtempSync')
export const rmSync = noFs('rmSync')
export const openSync = noFs('openSync')
export const writeSync = noFs('writeSync')
export const fsyncSync = noFs('fsyncSync')
export const closeSync = noFs('closeSync')
// node:module (offload/ort.ts loads onnxruntime-node with it; a page hands ortModel onnxruntime-web instead)
export const createRequire = () => () => {
  throw new Error('require: not available in a page')
}
// node:url
export const fileURLToPath = (u) => String(u)
// node:path
export const join = (...parts) => parts.filter(Boolean).join('/').replace(/\/+/g, '/')
export const dirname = (p) => p.replace(/\/[^/]*$/, '') || '/'
export const basename = (p) => p.replace(/^.*\//, '')
export const resolve = (...parts) => join(...parts)
export const delimiter = ':'
export const sep = '/'
// node:child_process
export const spawnSync = () => {
  throw new Error('spawnSync: not available in a page')
}
export default { availableParallelism, cpus, freemem, totalmem, endianness, homedir, tmpdir, platform, webcrypto, randomBytes, existsSync, readFileSync, readdirSync, realpathSync, statSync, fileURLToPath, join, dirname, basename, resolve, sep, delimiter, spawnSync }
