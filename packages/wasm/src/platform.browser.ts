// What the WASM core needs from its host, a browser's side (package.json's "browser" map puts this file
// in place of platform.ts in a bundle for a page). The kernel module comes from fetch (loadKernelModuleFrom
// in browser.ts, before the first core); threads are Web Workers over SharedArrayBuffer, which a page only
// has when it is cross-origin isolated (COOP + COEP headers): elsewhere the core runs on one thread.
import type { PoolWorker, WorkerStart } from './worker-loop.js'

/** Which host this build of the package runs on. */
export const HOST = 'browser'

/** The slice of the Web Worker API used here (the package compiles without lib.dom). */
interface WebWorker {
  postMessage(msg: unknown): void
  terminate(): void
  onmessage: ((ev: { data: unknown }) => void) | null
  onerror: ((ev: { message?: string }) => void) | null
}
interface BrowserGlobals {
  Worker: new (url: string | URL, opts?: { type?: 'module' | 'classic'; name?: string }) => WebWorker
  navigator?: { hardwareConcurrency?: number }
  crossOriginIsolated?: boolean
}
const G = globalThis as unknown as BrowserGlobals

/** Threads the page may run: navigator.hardwareConcurrency when cross-origin isolated (shared memory), else 1. */
export function hardwareThreads(): number {
  if (G.crossOriginIsolated !== true) return 1
  return Math.max(1, G.navigator?.hardwareConcurrency ?? 1)
}

let workerUrl: string | URL | undefined

/**
 * Where the pool's worker script is (a bundle of worker.browser.ts). Default: refgpt-pool-worker.js next
 * to the script that holds this code.
 */
export function setPoolWorkerUrl(url: string | URL): void {
  workerUrl = url
}

/** A page has no package folder: the kernels are fetched (loadKernelModuleFrom) before the first core. */
export function kernelWasmPath(build: 'plain' | 'relaxed' = 'plain'): string {
  return build === 'relaxed' ? 'refgpt-relaxed.wasm' : 'refgpt.wasm'
}

/** Never true: a page gives the module it fetched with setKernelModule / loadKernelModuleFrom. */
export function kernelFileExists(_build: 'plain' | 'relaxed'): boolean {
  return false
}

export function readKernelBytes(build: 'plain' | 'relaxed'): Uint8Array {
  throw new Error(`refgpt wasm: no ${build} kernel module was set in this page; hint: await loadKernelModuleFrom(url) (or setKernelModule) before creating a core`)
}

/** Starts one pool worker (a module Web Worker); resolves once it has instantiated the kernels. */
export async function startWorker(start: WorkerStart): Promise<PoolWorker> {
  const url = workerUrl ?? new URL('./refgpt-pool-worker.js', import.meta.url)
  const w = new G.Worker(url, { type: 'module', name: `refgpt-pool-${start.index}` })
  await new Promise<void>((resolve, reject) => {
    w.onmessage = (ev) => (ev.data === 'ready' ? resolve() : reject(new Error(`refgpt wasm: worker ${start.index}: ${String((ev.data as { error?: string })?.error ?? ev.data)}`)))
    w.onerror = (ev) => reject(new Error(`refgpt wasm: worker ${start.index} failed to start (${ev.message ?? 'no message'}) from ${String(url)}`))
    w.postMessage(start)
  })
  w.onmessage = null
  w.onerror = null
  return {
    post: (msg) => w.postMessage(msg),
    terminate: async () => w.terminate(),
  }
}
