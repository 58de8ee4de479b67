// A pool worker in a Web Worker (platform.browser.ts starts it; a page serves a bundle of this file). The
// first message is the WorkerStart; the loop (worker-loop.ts) then blocks in Atomics.wait between calls.
// A Web Worker cannot take a message while it blocks, so on OP_SYNC the loop returns to the event loop,
// the posted memory arrives as a message, and the worker acknowledges it and serves again.
import type { WasmMemoryObject } from './core.js'
import { WorkerLoop, type WorkerStart } from './worker-loop.js'

interface WorkerScope {
  onmessage: ((ev: { data: unknown }) => void) | null
  postMessage(msg: unknown): void
  close(): void
}
const scope = globalThis as unknown as WorkerScope

let loop: WorkerLoop | undefined

function serve(l: WorkerLoop): void {
  if (l.serve() === 'exit') scope.close()
  // 'sync': back to the event loop; the next message is the new memory
}

scope.onmessage = (ev) => {
  if (!loop) {
    try {
      loop = new WorkerLoop(ev.data as WorkerStart)
    } catch (e) {
      scope.postMessage({ error: String((e as Error)?.message ?? e) })
      return
    }
    scope.postMessage('ready')
    // leave this task first, so that 'ready' is delivered before the loop blocks
    setTimeout(() => serve(loop!), 0)
    return
  }
  try {
    loop.addMemory((ev.data as { memory: WasmMemoryObject }).memory)
  } catch (e) {
    loop.fail(e)
  }
  loop.acknowledge()
  serve(loop)
}
