// The matmul scratch: per-thread slots in which the prefill path (assembly/panel.ts) widens a panel of
// weight rows to f32 once and keeps its partial sums. One scratch per memory, allocated once (load
// time), passed as the last argument of matmul_f32 / f16 / bf16 (f32 does not use it); a call claims a
// free slot with an atomic compare-exchange and frees it before it returns, so one slot per thread is
// enough (a call that finds none free runs the in-register tiles: the same results, bit for bit).
//
// Layout (read by the kernels): +0 i32 slots, +4 u32 bytes per slot, +8 i32 k per panel chunk and +12 i32
// rows per panel (0: the kernel's defaults, 4096 and 4; benchmarks and tests set them), +64 i32
// flags[slots] (0 = free), then the slots, 64-byte aligned.
import type { WasmMemory } from './core.js'

/**
 * Bytes of one slot: two panels of 4 weight rows x 4096 k widened to f32 (64 KiB each: the kernel widens
 * the next panel while it computes on the other) and the partial sums of those 4 rows for a block of 128
 * tokens (16 bytes per row and token: 8 KiB). Longer calls run in blocks of 128 tokens (the panels are
 * widened again for each block), K > 4096 in chunks of 4096; a slot this size serves any K and T.
 */
export const GEMM_SLOT_BYTES = 2 * 4 * 4096 * 4 + 128 * 4 * 16

const align64 = (n: number) => Math.ceil(n / 64) * 64

/** Rows whose i32 ids / positions the wasm device stages in each memory (embed, rotary): 4 bytes each. */
export const MAX_STAGED_ROWS = 4096

/** Bytes of a scratch with `slots` slots of `slotBytes` each. */
export function gemmScratchBytes(slots: number, slotBytes = GEMM_SLOT_BYTES): number {
  return 64 + align64(4 * slots) + slots * align64(slotBytes)
}

/** Allocates a matmul scratch with `slots` slots (one per thread) in `mem` and writes its header; returns its offset. */
export function allocGemmScratch(mem: WasmMemory, slots: number, slotBytes = GEMM_SLOT_BYTES): number {
  if (!Number.isInteger(slots) || slots < 1 || slots > 1024) throw new Error(`refgpt wasm: gemm scratch of ${slots} slots: expected 1 .. 1024`)
  const bytes = align64(slotBytes)
  const p = mem.alloc(gemmScratchBytes(slots, bytes), 64)
  const head = mem.i32(p, 2)
  head[0] = slots
  head[1] = bytes
  return p
}
