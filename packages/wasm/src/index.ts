// @refgpt/wasm — refgpt's AssemblyScript WASM-SIMD kernels and the TypeScript side that runs them:
// the compiled module and its memories (core.ts), and the worker pool (pool.ts, worker.ts).
export {
  CHUNKS_PER_THREAD, CTL, MAX_MEMORY_BYTES, actBytes, groupRows16, groupRowsF32, MAX_PAGES, PAGE_BYTES, SPLIT_KERNELS, WasmMemory,
  WasmOutOfMemoryError, splitGrain,
  instantiateKernels, kernelBuildOf, kernelHeapBase, kernelWasmPath, loadKernelModule, relaxedSimdSupported, selectSimdBuild,
  setKernelModule, type KernelExports, type SimdBuild, type SimdChoice, type SplitKernelName, type WasmMemoryObject, type WasmModule,
} from './core.js'
export { createWasmCore, type WasmCore, type WasmCoreOptions } from './pool.js'
export { GEMM_SLOT_BYTES, MAX_STAGED_ROWS, allocGemmScratch, gemmScratchBytes } from './scratch.js'
export { maddPeak, measureProbes, probesInChild, type ProbeFigures } from './probes.js'
