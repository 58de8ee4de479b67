// The WASM core: the kernel module instantiated on one or more shared memories, on the main thread
// and on `threads - 1` worker threads.
//
// run(m, name, nArgs, rows) cuts [0, rows) into chunks of `grain` rows (core.ts splitGrain: about 8 chunks a
// thread, whole row groups for the forward matmuls) that the main thread and the `threads - 1` workers
// claim in order from a shared counter (Atomics.add) until none is left; run returns when all are done. So a
// thread that runs slower (a busier or slower core, one that woke late) takes fewer chunks instead of holding
// the call up: on the 2-vCPU reference VM one vCPU streams 10-25 % slower than the other at times, and equal
// halves waited for it (decode mat-vecs x1.05-1.2 with chunks; BENCHMARKS.md "Session 11"). Dispatch goes
// through a control block in a SharedArrayBuffer (kernel id, memory index, f64 args, a generation
// counter, a chunk counter and a done counter) with Atomics.notify / Atomics.wait after a short spin on both
// sides: no message, no allocation, no promise per call. Split kernels compute each output element the
// same way whatever the chunk, so results depend neither on the thread count nor on who took which chunk.
//
// The workers are the host's (platform.ts: Node worker threads; platform.browser.ts: Web Workers, only
// where the page is cross-origin isolated); every worker runs worker-loop.ts.
import {
  CTL, SPLIT_KERNELS, WasmMemory, instantiateKernels, kernelHeapBase, loadKernelModule, selectSimdBuild, splitGrain,
  type KernelExports, type SimdBuild, type SimdChoice, type SplitKernelName,
} from './core.js'
import { hardwareThreads, startWorker } from './platform.js'
import type { PoolWorker, WorkerStart } from './worker-loop.js'

export interface WasmCoreOptions {
  /**
   * Threads including the main thread (default: os.availableParallelism(); in a page,
   * navigator.hardwareConcurrency when cross-origin isolated, else 1). 1 starts no worker.
   */
  threads?: number
  /**
   * Spin iterations before Atomics.wait, on both sides (default 20000, some tens of microseconds;
   * 0 when threads > os.availableParallelism(): spinning threads would starve the ones that work).
   */
  spin?: number
  /** Initial size of memory 0 in bytes (it grows on alloc; default 1 MiB). */
  initialBytes?: number
  /**
   * Which build of the kernels (core.ts): 'plain', 'relaxed' (an error where the runtime lacks Relaxed
   * SIMD) or 'auto' (relaxed where the runtime has it). Default: the REFGPT_SIMD environment variable, else auto.
   */
  simd?: SimdChoice
}

export interface WasmCore {
  readonly threads: number
  /** The build of the kernels this core runs, on the main thread and in every worker (they get the same compiled module). */
  readonly simd: SimdBuild
  /** Memory 0 exists at creation; addMemory() appends. */
  readonly memories: WasmMemory[]
  /** A new shared memory (4 GiB max), instantiated on the main thread and in every worker; returns its index. */
  addMemory(): number
  /** The main-thread instance for memory m (every export, including the _naive kernels). */
  kernels(m: number): KernelExports
  /** Kernel arguments for run(), after the split range: the caller fills args[0 .. nArgs) (up to 14). */
  readonly args: Float64Array
  /** Runs kernel `name` on memory m with args[0 .. nArgs) split over [0, rows) across all threads. */
  run(m: number, name: SplitKernelName, nArgs: number, rows: number): void
  /** Terminates the workers (the core is unusable afterwards). */
  close(): Promise<void>
}

type SplitFn = (r0: number, r1: number, ...args: number[]) => unknown

const KERNEL_ID: Record<SplitKernelName, number> = Object.fromEntries(SPLIT_KERNELS.map((n, i) => [n, i])) as Record<SplitKernelName, number>

export async function createWasmCore(opts: WasmCoreOptions = {}): Promise<WasmCore> {
  const threads = opts.threads ?? hardwareThreads()
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new Error(`refgpt wasm: threads must be an integer in [1, 256], got ${threads}`)
  }
  if (threads > 1 && typeof SharedArrayBuffer === 'undefined') {
    throw new Error(`refgpt wasm: ${threads} threads need SharedArrayBuffer, which this page lacks; hint: serve the page cross-origin isolated (headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp), or use 1 thread`)
  }
  const spin = opts.spin ?? (threads <= hardwareThreads() ? 20000 : 0)
  const simd = selectSimdBuild(opts.simd)
  const module = loadKernelModule(simd)
  const reserved = kernelHeapBase(module)

  const memories: WasmMemory[] = []
  const instances: KernelExports[] = []
  const fns: SplitFn[][] = []
  const newMemory = (initialBytes?: number) => {
    const mem = new WasmMemory({ reserved, initialBytes })
    const k = instantiateKernels(module, mem.memory)
    memories.push(mem)
    instances.push(k)
    fns.push(SPLIT_KERNELS.map((name) => (k as unknown as Record<string, SplitFn>)[name]))
    return mem
  }
  newMemory(opts.initialBytes ?? 1 << 20)

  // a plain buffer when no worker shares it (a page that is not cross-origin isolated has no SharedArrayBuffer)
  const control = (threads > 1 ? new SharedArrayBuffer(CTL.BYTES) : new ArrayBuffer(CTL.BYTES)) as SharedArrayBuffer
  const ctl = new Int32Array(control, 0, CTL.I32_LEN)
  const args = new Float64Array(control, CTL.ARGS_BYTE, CTL.ARGS_LEN)
  const workers: PoolWorker[] = []
  let closed = false

  const started = await Promise.allSettled(
    Array.from({ length: threads - 1 }, (_, i) => {
      const start: WorkerStart = { module, memories: [memories[0].memory], control, index: i + 1, threads, spin }
      return startWorker(start)
    }),
  )
  for (const s of started) if (s.status === 'fulfilled') workers.push(s.value)
  const failed = started.find((s) => s.status === 'rejected')
  if (failed) {
    await Promise.all(workers.map((w) => w.terminate()))
    throw (failed as PromiseRejectedResult).reason
  }

  /**
   * Bumps the generation with op set, takes chunks of the call here too (when main is given), and waits
   * until every worker has acknowledged it.
   */
  const dispatch = (op: number, m: number, rows: number, main: SplitFn | null) => {
    const grain = op >= 0 ? splitGrain(SPLIT_KERNELS[op], rows, threads) : 1
    ctl[CTL.OP] = op
    ctl[CTL.MEM] = m
    ctl[CTL.ROWS] = rows
    ctl[CTL.GRAIN] = grain
    ctl[CTL.NEXT] = 0
    Atomics.store(ctl, CTL.DONE, 0)
    Atomics.add(ctl, CTL.GEN, 1)
    Atomics.notify(ctl, CTL.GEN)
    let error: unknown
    if (main) {
      const a = args
      try {
        for (let r0 = Atomics.add(ctl, CTL.NEXT, 1) * grain; r0 < rows; r0 = Atomics.add(ctl, CTL.NEXT, 1) * grain) {
          main(r0, Math.min(rows, r0 + grain), a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13])
        }
      } catch (e) {
        error = e
      }
    }
    const want = threads - 1
    for (let spins = 0, d = Atomics.load(ctl, CTL.DONE); d !== want; d = Atomics.load(ctl, CTL.DONE)) {
      if (++spins > spin) {
        Atomics.wait(ctl, CTL.DONE, d)
        spins = 0
      }
    }
    if (ctl[CTL.ERR] !== 0) {
      const who = ctl[CTL.ERR] - 1
      const text = new TextDecoder().decode(new Uint8Array(control, CTL.ERR_BYTE, ctl[CTL.ERR_LEN]).slice())
      ctl[CTL.ERR] = 0
      throw new Error(`refgpt wasm: ${op >= 0 ? SPLIT_KERNELS[op] : 'sync'} failed in worker ${who}: ${text}`)
    }
    if (error !== undefined) throw error
  }

  const core: WasmCore = {
    threads,
    simd,
    memories,
    args,
    addMemory() {
      if (closed) throw new Error('refgpt wasm: the core is closed')
      const mem = newMemory()
      if (workers.length > 0) {
        for (const w of workers) w.post({ memory: mem.memory })
        dispatch(CTL.OP_SYNC, 0, 0, null)
      }
      return memories.length - 1
    },
    kernels(m) {
      const k = instances[m]
      if (!k) throw new Error(`refgpt wasm: no memory ${m} (this core has ${instances.length})`)
      return k
    },
    run(m, name, nArgs, rows) {
      const f = fns[m]?.[KERNEL_ID[name]]
      if (!f || closed) throw new Error(closed ? 'refgpt wasm: the core is closed' : `refgpt wasm: run(${m}, ${name}): unknown memory or kernel`)
      if (nArgs > CTL.ARGS_LEN - 2) throw new Error(`refgpt wasm: run(${name}): at most ${CTL.ARGS_LEN - 2} arguments after the split range`)
      if (workers.length === 0 || rows < 2) {
        const a = args
        if (rows > 0) f(0, rows, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13])
        return
      }
      dispatch(KERNEL_ID[name], m, rows, f)
    },
    async close() {
      if (closed) return
      closed = true
      if (workers.length > 0) {
        ctl[CTL.OP] = CTL.OP_EXIT
        Atomics.add(ctl, CTL.GEN, 1)
        Atomics.notify(ctl, CTL.GEN)
        await Promise.all(workers.map((w) => w.terminate()))
      }
    },
  }
  return core
}
