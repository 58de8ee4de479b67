// The loop every pool worker runs, whatever the host (worker.ts: a Node worker thread; worker.browser.ts:
// a Web Worker): it instantiates the kernel module on every memory of the core, then waits on the control
// block for split-kernel calls (see pool.ts) and takes chunks of each (GRAIN rows, claimed from the NEXT
// counter) until none is left.
import { CTL, SPLIT_KERNELS, instantiateKernels, type WasmMemoryObject, type WasmModule } from './core.js'

/** What a worker is started with. */
export interface WorkerStart {
  module: WasmModule
  memories: WasmMemoryObject[]
  control: SharedArrayBuffer
  index: number
  threads: number
  spin: number
}

/** The main thread's handle on a started worker. */
export interface PoolWorker {
  /** Sends a message the worker takes when it sees OP_SYNC (a new memory). */
  post(msg: { memory: WasmMemoryObject }): void
  terminate(): Promise<void>
}

type SplitFn = (r0: number, r1: number, ...args: number[]) => unknown

/** A worker's state: its kernels per memory, and the control block it serves. */
export class WorkerLoop {
  private readonly ctl: Int32Array
  private readonly a: Float64Array
  private readonly fns: SplitFn[][] = []
  private seen: number

  constructor(private readonly init: WorkerStart) {
    this.ctl = new Int32Array(init.control, 0, CTL.I32_LEN)
    this.a = new Float64Array(init.control, CTL.ARGS_BYTE, CTL.ARGS_LEN)
    for (const m of init.memories) this.addMemory(m)
    // the generation is read BEFORE the worker says it is ready: the first dispatch can follow at once
    this.seen = Atomics.load(this.ctl, CTL.GEN)
  }

  /** Instantiates the kernels on one more memory (in the order the core added them). */
  addMemory(memory: WasmMemoryObject): void {
    const k = instantiateKernels(this.init.module, memory) as unknown as Record<string, SplitFn>
    this.fns.push(SPLIT_KERNELS.map((name) => k[name]))
  }

  /**
   * Serves calls until the core asks for something only the host can do: returns 'exit' (OP_EXIT), or
   * 'sync' (OP_SYNC: the host takes the posted memory, calls addMemory, then acknowledge(), then serve()).
   */
  serve(): 'exit' | 'sync' {
    const { ctl, a, init } = this
    const { spin } = init
    for (;;) {
      let g = Atomics.load(ctl, CTL.GEN)
      for (let spins = 0; g === this.seen; g = Atomics.load(ctl, CTL.GEN)) {
        if (++spins > spin) {
          Atomics.wait(ctl, CTL.GEN, this.seen)
          spins = 0
        }
      }
      this.seen = g
      const op = ctl[CTL.OP]
      if (op === CTL.OP_EXIT) return 'exit'
      if (op === CTL.OP_SYNC) return 'sync'
      try {
        const rows = ctl[CTL.ROWS], grain = ctl[CTL.GRAIN], f = this.fns[ctl[CTL.MEM]][op]
        for (let r0 = Atomics.add(ctl, CTL.NEXT, 1) * grain; r0 < rows; r0 = Atomics.add(ctl, CTL.NEXT, 1) * grain) {
          f(r0, Math.min(rows, r0 + grain), a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13])
        }
      } catch (e) {
        this.fail(e)
      }
      this.acknowledge()
    }
  }

  /** Records an error for the core to throw (the first worker's wins). */
  fail(e: unknown): void {
    const { ctl, init } = this
    if (Atomics.compareExchange(ctl, CTL.ERR, 0, init.index + 1) === 0) {
      const text = new TextEncoder().encode(String((e as Error)?.message ?? e)).subarray(0, CTL.ERR_MAX)
      new Uint8Array(init.control, CTL.ERR_BYTE, CTL.ERR_MAX).set(text)
      ctl[CTL.ERR_LEN] = text.length
    }
  }

  /** Counts this worker done with the current call; the last one wakes the core. */
  acknowledge(): void {
    if (Atomics.add(this.ctl, CTL.DONE, 1) + 1 === this.init.threads - 1) Atomics.notify(this.ctl, CTL.DONE)
  }
}
