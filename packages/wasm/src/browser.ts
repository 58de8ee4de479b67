// @refgpt/wasm in a page (package.json's "browser" condition): everything index.ts exports except the
// machine probes (they run in a child process), plus fetching the kernel module and placing the pool's
// worker script. platform.browser.ts stands in for platform.ts.
// every module index.ts draws from, whole, except probes.ts (so a new export there is here too)
export * from './core.js'
export * from './pool.js'
export * from './scratch.js'
export { HOST, hardwareThreads, setPoolWorkerUrl } from './platform.browser.js'
import { setKernelModule, type SimdBuild, type WasmModule } from './core.js'

interface FetchedModule {
  compile(bytes: ArrayBuffer): Promise<WasmModule>
}

/**
 * Fetches and compiles a kernel module (build/refgpt.wasm, or refgpt-relaxed.wasm for build 'relaxed') and
 * makes it the one cores of that build run. Call before the first createWasmCore / wasm device.
 */
export async function loadKernelModuleFrom(url: string | URL, build: SimdBuild = 'plain'): Promise<WasmModule> {
  const res = await fetch(url)
  if (!res.ok) throw new Error(`refgpt wasm: cannot fetch the kernel module ${String(url)}: HTTP ${res.status}`)
  const WA = (globalThis as unknown as { WebAssembly: FetchedModule }).WebAssembly
  const module = await WA.compile(await res.arrayBuffer())
  setKernelModule(module, build)
  return module
}
