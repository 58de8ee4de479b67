// What the WASM core needs from its host, Node's side: the kernel module's bytes (a file next to the
// package), the number of hardware threads, and the pool's worker threads (worker_threads). The browser's
// side is platform.browser.ts, swapped in by package.json's "browser" map: bundles for a page never
// reach a Node built-in through this package.
import { existsSync, readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { MessageChannel, Worker } from 'node:worker_threads'
import type { PoolWorker, WorkerStart } from './worker-loop.js'

/** Which host this build of the package runs on. */
export const HOST = 'node'

/** Threads the hardware runs at once (os.availableParallelism()). */
export function hardwareThreads(): number {
  return availableParallelism()
}

/** Where the build puts a kernel module: dist/../build/refgpt.wasm (plain) or refgpt-relaxed.wasm. */
export function kernelWasmPath(build: 'plain' | 'relaxed' = 'plain'): string {
  return fileURLToPath(new URL(build === 'relaxed' ? '../build/refgpt-relaxed.wasm' : '../build/refgpt.wasm', import.meta.url))
}

/** Whether the package holds the module of `build`. */
export function kernelFileExists(build: 'plain' | 'relaxed'): boolean {
  return existsSync(kernelWasmPath(build))
}

/** The bytes of the module of `build` (synchronously: the first core compiles it at once). */
export function readKernelBytes(build: 'plain' | 'relaxed'): Uint8Array {
  const path = kernelWasmPath(build)
  try {
    return readFileSync(path)
  } catch (e) {
    throw new Error(`refgpt wasm: cannot read the kernel module ${path}: ${(e as Error).message}; hint: run \`node scripts/build.mjs\` (it compiles packages/wasm/assembly)`)
  }
}

/** Starts one pool worker (worker.js on a worker thread); resolves once it has instantiated the kernels. */
export async function startWorker(start: WorkerStart): Promise<PoolWorker> {
  const { port1, port2 } = new MessageChannel()
  const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: { ...start, port: port2 }, transferList: [port2], execArgv: [] })
  try {
    await new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve())
      w.once('error', reject)
      w.once('exit', (code) => reject(new Error(`refgpt wasm: worker ${start.index} exited with code ${code} while starting`)))
    })
  } catch (e) {
    await w.terminate()
    throw e
  }
  w.removeAllListeners()
  w.on('error', () => {}) // a worker error after start is reported through the control block
  w.unref()
  port1.unref()
  return {
    post: (msg) => port1.postMessage(msg),
    terminate: async () => {
      await w.terminate()
      port1.close()
    },
  }
}
