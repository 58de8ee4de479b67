// A pool worker: instantiates the kernel module on every memory of the core, then waits on the
// control block for split-kernel calls (see pool.ts). It computes slice `index` of each call:
// rows [floor(rows * index / threads), floor(rows * (index + 1) / threads)).
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads'
import { CTL, SPLIT_KERNELS, instantiateKernels, type WasmMemoryObject, type WasmModule } from './core.js'

export interface WorkerInit {
  module: WasmModule
  memories: WasmMemoryObject[]
  control: SharedArrayBuffer
  port: MessagePort
  index: number
  threads: number
  spin: number
}

type SplitFn = (r0: number, r1: number, ...args: number[]) => unknown

function main(init: WorkerInit): void {
  const { module, control, port, index, threads, spin } = init
  const ctl = new Int32Array(control, 0, CTL.I32_LEN)
  const a = new Float64Array(control, CTL.ARGS_BYTE, CTL.ARGS_LEN)
  const fns: SplitFn[][] = []
  const addMemory = (memory: WasmMemoryObject) => {
    const k = instantiateKernels(module, memory) as unknown as Record<string, SplitFn>
    fns.push(SPLIT_KERNELS.map((name) => k[name]))
  }
  for (const m of init.memories) addMemory(m)
  // read the generation BEFORE saying ready: the first dispatch can follow 'ready' at once
  let seen = Atomics.load(ctl, CTL.GEN)
  parentPort!.postMessage('ready')

  for (;;) {
    let g = Atomics.load(ctl, CTL.GEN)
    for (let spins = 0; g === seen; g = Atomics.load(ctl, CTL.GEN)) {
      if (++spins > spin) {
        Atomics.wait(ctl, CTL.GEN, seen)
        spins = 0
      }
    }
    seen = g
    const op = ctl[CTL.OP]
    if (op === CTL.OP_EXIT) break
    try {
      if (op === CTL.OP_SYNC) {
        let msg = receiveMessageOnPort(port)
        while (!msg) msg = receiveMessageOnPort(port)
        addMemory((msg.message as { memory: WasmMemoryObject }).memory)
      } else {
        const rows = ctl[CTL.ROWS]
        const r0 = Math.floor((rows * index) / threads), r1 = Math.floor((rows * (index + 1)) / threads)
        if (r1 > r0) fns[ctl[CTL.MEM]][op](r0, r1, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13])
      }
    } catch (e) {
      if (Atomics.compareExchange(ctl, CTL.ERR, 0, index + 1) === 0) {
        const text = new TextEncoder().encode(String((e as Error)?.message ?? e)).subarray(0, CTL.ERR_MAX)
        new Uint8Array(control, CTL.ERR_BYTE, CTL.ERR_MAX).set(text)
        ctl[CTL.ERR_LEN] = text.length
      }
    }
    if (Atomics.add(ctl, CTL.DONE, 1) + 1 === threads - 1) Atomics.notify(ctl, CTL.DONE)
  }
  port.close()
}

if (parentPort && (workerData as WorkerInit | undefined)?.control) main(workerData as WorkerInit)
