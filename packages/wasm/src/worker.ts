// A pool worker on a Node worker thread (platform.ts starts it): the shared loop (worker-loop.ts), with a
// new memory taken synchronously from the message port when the core asks (OP_SYNC).
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads'
import type { WasmMemoryObject } from './core.js'
import { WorkerLoop, type WorkerStart } from './worker-loop.js'

/** What platform.ts passes as workerData. */
export type WorkerInit = WorkerStart & { port: MessagePort }

function main(init: WorkerInit): void {
  const loop = new WorkerLoop(init)
  parentPort!.postMessage('ready')
  while (loop.serve() === 'sync') {
    try {
      let msg = receiveMessageOnPort(init.port)
      while (!msg) msg = receiveMessageOnPort(init.port)
      loop.addMemory((msg.message as { memory: WasmMemoryObject }).memory)
    } catch (e) {
      loop.fail(e)
    }
    loop.acknowledge()
  }
  init.port.close()
}

if (parentPort && (workerData as WorkerInit | undefined)?.control) main(workerData as WorkerInit)
