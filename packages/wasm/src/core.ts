// The kernel module (build/refgpt.wasm, or build/refgpt-relaxed.wasm) and the linear memories it runs on.
//
// Two builds of the same kernels (scripts/build.mjs): `plain` (WASM SIMD) and `relaxed` (with Relaxed
// SIMD where it gives the same results: the q8 / q4 integer dot products). Which one a core runs is chosen
// once, by selectSimdBuild: REFGPT_SIMD=auto (default: relaxed when the runtime validates a relaxed-SIMD
// instruction, else plain) | plain | relaxed (an error where the runtime lacks it; Node 20 needs
// `--experimental-wasm-relaxed-simd`). Every result is the same bit for bit in both builds.
//
// One compiled WebAssembly.Module serves every instance: one instance per (thread, memory).
// Each memory is a shared WebAssembly.Memory of up to 65536 pages (4 GiB, the wasm32 limit) with an
// arena (WasmMemory): a bump pointer plus a free list, so blocks can be freed one by one as well as
// released in bulk with mark() / release(). Allocation happens at load time (weights, activations)
// and at session / KV-growth time (a session's KV cache is allocated when it starts, reallocated
// when it grows, freed when it ends), never per token: the token loop neither allocates nor grows
// memory. Pointers are byte offsets (numbers up to 2^32), passed to the kernels as they are.
// Host access (the module's bytes, its path) is in platform.ts (Node) / platform.browser.ts (a page).
import { kernelFileExists, kernelWasmPath, readKernelBytes } from './platform.js'

export { kernelWasmPath }

// The slice of the WebAssembly JS API used here. This project compiles without lib.dom (where the
// WebAssembly namespace is declared), so it is typed locally instead of declaring globals.
/** A compiled WebAssembly.Module (opaque). */
export interface WasmModule {
  readonly [Symbol.toStringTag]: string
}
/** A WebAssembly.Memory. */
export interface WasmMemoryObject {
  readonly buffer: ArrayBuffer | SharedArrayBuffer
  grow(deltaPages: number): number
}
interface WebAssemblyApi {
  validate(bytes: Uint8Array): boolean
  Module: new (bytes: Uint8Array) => WasmModule
  Instance: new (module: WasmModule, imports: object) => { readonly exports: object }
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => WasmMemoryObject
}
const WA = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly

/** Bytes per wasm page. */
export const PAGE_BYTES = 65536
/** Pages per memory: the wasm32 maximum, 4 GiB. */
export const MAX_PAGES = 65536
/** Bytes one memory can hold (4 GiB). */
export const MAX_MEMORY_BYTES = MAX_PAGES * PAGE_BYTES

/** Every export of the kernel module (see packages/wasm/assembly/*.ts for shapes). Pointers are byte offsets. */
export interface KernelExports {
  // gemm.ts — out[T, N] = x[T, K] · W[N, K]^T (+ b[N]), rows n in [n0, n1); b = 0: no bias. scratch: a matmul
  // scratch (scratch.ts; 0 or left out: none): f16 (T >= 6) / bf16 (T >= 12) prefill widens weight panels once
  // there (panel.ts), with the same results bit for bit; f32 ignores it
  matmul_f32(n0: number, n1: number, out: number, x: number, w: number, b: number, T: number, K: number, N: number, scratch?: number): void
  /** w: f32 [N, K] in row groups (quant.ts; group_rows_f32 / groupRowsF32 put it there): the same results as matmul_f32 bit for bit. */
  matmul_f32g(n0: number, n1: number, out: number, x: number, w: number, b: number, T: number, K: number, N: number, scratch?: number): void
  /** finite (default 0): 1 when w holds no inf / NaN half (f16_nonfinite) — the decode tile then skips its watch; same results. */
  matmul_f16(n0: number, n1: number, out: number, x: number, w: number, b: number, T: number, K: number, N: number, scratch?: number, finite?: number): void
  matmul_bf16(n0: number, n1: number, out: number, x: number, w: number, b: number, T: number, K: number, N: number, scratch?: number): void
  matmul_f32_naive(n0: number, n1: number, out: number, x: number, w: number, b: number, T: number, K: number, N: number): void
  matmul_f32g_naive(n0: number, n1: number, out: number, x: number, w: number, b: number, T: number, K: number, N: number): void
  matmul_f16_naive(n0: number, n1: number, out: number, x: number, w: number, b: number, T: number, K: number, N: number): void
  matmul_bf16_naive(n0: number, n1: number, out: number, x: number, w: number, b: number, T: number, K: number, N: number): void
  // gemm_q8.ts — the same product for q8 / q4 weights, in integers: xa is NOT x but x quantized by
  // quantize_act (once per call, before the split). Per output: isum_b = the exact integer dot product of
  // block b (32 weights, 32 activations), s = sum over b in order of f32(isum_b) * (dw[n, b] * xd[t, b]),
  // then + b[n]; bitwise equal in the SIMD and _naive kernels and the js device.
  /**
   * w: i8 [N, Kp] (Kp = ceil(K/32)*32, zero padded), scales: f32 [N, Kp/32], both in quant.ts's q8 / q4
   * layout (K chunks of 64 blocks; in a chunk, row groups of 4 with their blocks interleaved).
   */
  matmul_q8(n0: number, n1: number, out: number, xa: number, w: number, scales: number, b: number, T: number, K: number, N: number): void
  matmul_q8_naive(n0: number, n1: number, out: number, xa: number, w: number, scales: number, b: number, T: number, K: number, N: number): void
  /** w: u8 [N, Kp/2] (4-bit levels, 16 bytes a block, quant.ts's nibble layout; value level - 8), scales: f32 [N, Kp/32]; layout as q8. */
  matmul_q4(n0: number, n1: number, out: number, xa: number, w: number, scales: number, b: number, T: number, K: number, N: number): void
  matmul_q4_naive(n0: number, n1: number, out: number, xa: number, w: number, scales: number, b: number, T: number, K: number, N: number): void
  /**
   * x f32 [T, K] -> xa (actBytes(T, K) bytes): xq i16 [T, Kp], then xd f32 [T, Kp/32], then xs i32 [T, Kp/32]
   * (block sums); per block of 32: d = max|x| / 127, q = round-half-away(x / d) (the quantize_q8 rule).
   * q4: 0 for matmul_q8, 1 for matmul_q4 (xq pre-scaled by 256, 16, 1, 256 for the four parts of 8 of a
   * block). Not split (one thread): the matmul that follows is.
   */
  quantize_act(xa: number, x: number, T: number, K: number, q4: number): void
  quantize_act_naive(xa: number, x: number, T: number, K: number, q4: number): void
  /**
   * Rows [r0, r1) of an f32 [N, K] weight (src: those rows) -> i8 [N, Kp] + f32 scales [N, Kp/32], Kp =
   * ceil(K/32)*32, in quant.ts's q8 / q4 layout (K chunks of 64 blocks, row groups of 4).
   */
  /**
   * An f32 weight [N, K] at w, rows in order, into row groups in place (back = 0; matmul_f32g / embed_f32g read
   * that), or back into rows in order (back = 1). tmp: 4 * K f32 of scratch. K % 8 != 0: nothing changes.
   */
  group_rows_f32(w: number, N: number, K: number, tmp: number, back: number): void
  /** 1 when one of the n f16 halves at p is an inf or a NaN, else 0 (what matmul_f16's `finite` needs). */
  f16_nonfinite(p: number, n: number): number
  /** The XOR of what the decode tiles' reads ahead loaded (quant.ts read_ahead): exported only so that those loads stay in the code. */
  read_ahead_sink(): number
  quantize_q8(wq: number, scales: number, src: number, N: number, K: number, r0: number, r1: number): void
  /**
   * Rows [r0, r1) of an f32 [N, K] weight (src: those rows) -> their f16 (f16 = 1) or bf16 (0) bits in the weight
   * at dst, in the kernels' row groups (groupRows16's order); the bits of io/dtype.ts's f32ToF16Array / f32ToBf16Array.
   */
  store_half(dst: number, src: number, N: number, K: number, r0: number, r1: number, f16: number): void
  store_half_naive(dst: number, src: number, N: number, K: number, r0: number, r1: number, f16: number): void
  /** Rows [r0, r1) of an f32 [N, K] weight -> u8 [N, Kp/2] (levels) + f32 scales [N, Kp/32], same layout: ggml's q4_0 rule with an f32 scale (quant.ts). */
  quantize_q4(w4: number, scales: number, src: number, N: number, K: number, r0: number, r1: number): void
  // embed.ts — out[t, :] (+)= table[ids[t], :]; ids: i32 [T]; accumulate: 0 | 1. A negative id is a
  // zero row: out[t, :] = 0 when storing, unchanged when accumulating (gathers from a table split in row ranges)
  embed_f32(out: number, table: number, ids: number, T: number, C: number, accumulate: number, V: number): void
  embed_f32g(out: number, table: number, ids: number, T: number, C: number, accumulate: number, V: number): void
  embed_f16(out: number, table: number, ids: number, T: number, C: number, accumulate: number, V: number): void
  embed_bf16(out: number, table: number, ids: number, T: number, C: number, accumulate: number, V: number): void
  /** table: q8 i8 [rows, Cp] + scales f32 [rows, Cp/32] in quant.ts's q8 / q4 layout (which depends on `rows`). */
  embed_q8(out: number, table: number, scales: number, ids: number, T: number, C: number, accumulate: number, rows: number): void
  embed_f32_naive(out: number, table: number, ids: number, T: number, C: number, accumulate: number, V: number): void
  embed_f32g_naive(out: number, table: number, ids: number, T: number, C: number, accumulate: number, V: number): void
  embed_f16_naive(out: number, table: number, ids: number, T: number, C: number, accumulate: number, V: number): void
  embed_bf16_naive(out: number, table: number, ids: number, T: number, C: number, accumulate: number, V: number): void
  embed_q8_naive(out: number, table: number, scales: number, ids: number, T: number, C: number, accumulate: number, rows: number): void
  /** table: q4 u8 [rows, Cp/2] + scales f32 [rows, Cp/32], the q8 / q4 layout; value f32(level - 8) * scale (quant.ts). */
  embed_q4(out: number, table: number, scales: number, ids: number, T: number, C: number, accumulate: number, rows: number): void
  embed_q4_naive(out: number, table: number, scales: number, ids: number, T: number, C: number, accumulate: number, rows: number): void
  // norm.ts
  layernorm(out: number, x: number, g: number, b: number, T: number, C: number, eps: number): void
  layernorm_naive(out: number, x: number, g: number, b: number, T: number, C: number, eps: number): void
  // act.ts — out may alias x (or a / b)
  gelu_tanh(out: number, x: number, n: number): void
  gelu_erf(out: number, x: number, n: number): void
  relu(out: number, x: number, n: number): void
  silu(out: number, x: number, n: number): void
  quick_gelu(out: number, x: number, n: number): void
  add(out: number, a: number, b: number, n: number): void
  gelu_tanh_naive(out: number, x: number, n: number): void
  gelu_erf_naive(out: number, x: number, n: number): void
  relu_naive(out: number, x: number, n: number): void
  silu_naive(out: number, x: number, n: number): void
  quick_gelu_naive(out: number, x: number, n: number): void
  add_naive(out: number, a: number, b: number, n: number): void
  // softmax.ts — in place
  softmax(x: number, n: number): void
  softmax_naive(x: number, n: number): void
  // logprobs.ts — out[t] = logits[t, targets[t]] - logsumexp(logits[t, :]) for rows t in [r0, r1); logits f32 [T, V]
  // (not modified), targets i32 [T], out f32 [T]; targets[t] < 0: no target, out[t] = 0; targets[t] >= V: NaN.
  // greedy f32 [T] (0: not written): 1 where targets[t] is the row's first argmax, else 0 (lm-eval's is_greedy)
  logprobs(r0: number, r1: number, out: number, greedy: number, logits: number, targets: number, T: number, V: number): void
  logprobs_naive(r0: number, r1: number, out: number, greedy: number, logits: number, targets: number, T: number, V: number): void
  // attention.ts — heads h in [h0, h1); probs = 0: not written; scratch: f32 [H, pos0+T]
  attention(h0: number, h1: number, out: number, q: number, kc: number, vc: number, probs: number, scratch: number,
    T: number, pos0: number, H: number, D: number, scale: number, window: number): void
  attention_naive(h0: number, h1: number, out: number, q: number, kc: number, vc: number, probs: number, scratch: number,
    T: number, pos0: number, H: number, D: number, scale: number, window: number): void
  // rope.ts — table: f32 [nPos, R/2, 2] (cos, sin); positions: i32 [T]
  rotary(x: number, table: number, positions: number, T: number, H: number, D: number, R: number): void
  rotary_naive(x: number, table: number, positions: number, T: number, H: number, D: number, R: number): void
  // --- training (f32 storage only; gradients ACCUMULATE unless marked "stores") -----------------
  // norm.ts / backward.ts — layernorm (bitwise: the layernorm / layernorm_naive arithmetic) that also stores
  // mean[t] and rstd[t] = 1 / sqrt(var + eps) (f32 [T])
  layernorm_forward(out: number, mean: number, rstd: number, x: number, g: number, b: number, T: number, C: number, eps: number): void
  layernorm_forward_naive(out: number, mean: number, rstd: number, x: number, g: number, b: number, T: number, C: number, eps: number): void
  /** dx[T, C], dg[C], db[C] += the LayerNorm backward of dout (llm.c); serial over rows (dg, db are shared). */
  layernorm_backward(dx: number, dg: number, db: number, dout: number, x: number, g: number, mean: number, rstd: number, T: number, C: number): void
  layernorm_backward_naive(dx: number, dg: number, db: number, dout: number, x: number, g: number, mean: number, rstd: number, T: number, C: number): void
  /** Rows t in [r0, r1) of dx[T, K] += dout[T, N] · W[N, K]. Bitwise independent of the split; _naive equal bitwise. */
  matmul_backward_dx(r0: number, r1: number, dx: number, dout: number, w: number, T: number, K: number, N: number): void
  matmul_backward_dx_naive(r0: number, r1: number, dx: number, dout: number, w: number, T: number, K: number, N: number): void
  /** Rows n in [n0, n1) of dw[N, K] += dout^T · x[T, K] and db[n] += Σ_t dout[t, n] (db = 0: none). Bitwise independent of the split; _naive equal bitwise. */
  matmul_backward_dw(n0: number, n1: number, dw: number, db: number, dout: number, x: number, T: number, K: number, N: number): void
  matmul_backward_dw_naive(n0: number, n1: number, dw: number, db: number, dout: number, x: number, T: number, K: number, N: number): void
  // act_backward.ts — dx[i] = dout[i] * act'(x[i]), x the activation's input (stores; dx may alias dout)
  gelu_tanh_backward(dx: number, x: number, dout: number, n: number): void
  gelu_erf_backward(dx: number, x: number, dout: number, n: number): void
  relu_backward(dx: number, x: number, dout: number, n: number): void
  silu_backward(dx: number, x: number, dout: number, n: number): void
  quick_gelu_backward(dx: number, x: number, dout: number, n: number): void
  gelu_tanh_backward_naive(dx: number, x: number, dout: number, n: number): void
  gelu_erf_backward_naive(dx: number, x: number, dout: number, n: number): void
  relu_backward_naive(dx: number, x: number, dout: number, n: number): void
  silu_backward_naive(dx: number, x: number, dout: number, n: number): void
  quick_gelu_backward_naive(dx: number, x: number, dout: number, n: number): void
  /** dtable[ids[t], :] += dout[t, :] for t < T (serial; negative ids skipped). ids: i32 [T]. */
  embed_backward(dtable: number, dout: number, ids: number, T: number, C: number): void
  embed_backward_naive(dtable: number, dout: number, ids: number, T: number, C: number): void
  /**
   * Heads h in [h0, h1) of the attention backward over one sequence (pos0 = 0, keys = the T rows):
   * dq, dk, dv [T, H*D] += ...; probs [H, T, T] as attention wrote them. 13 arguments after the split
   * range: core.run passes up to 14.
   */
  attention_backward(h0: number, h1: number, dq: number, dk: number, dv: number, dout: number, q: number, k: number, v: number, probs: number,
    T: number, H: number, D: number, scale: number, window: number): void
  attention_backward_naive(h0: number, h1: number, dq: number, dk: number, dv: number, dout: number, q: number, k: number, v: number, probs: number,
    T: number, H: number, D: number, scale: number, window: number): void
  /** rotary's inverse rotation in place (x0' = x0 cos + x1 sin, x1' = x1 cos - x0 sin); SIMD and _naive equal bitwise. */
  rotary_backward(x: number, table: number, positions: number, T: number, H: number, D: number, R: number): void
  rotary_backward_naive(x: number, table: number, positions: number, T: number, H: number, D: number, R: number): void
  // crossentropy.ts — rows t in [r0, r1): losses[t] = logsumexp - logits[t, target]; dlogits[t] = (softmax - onehot) * scale
  // (stores; dlogits may alias logits); target < 0: loss 0 and a zero row; target >= V: NaN loss and row
  crossentropy(r0: number, r1: number, dlogits: number, losses: number, logits: number, targets: number, T: number, V: number, scale: number): void
  crossentropy_naive(r0: number, r1: number, dlogits: number, losses: number, logits: number, targets: number, T: number, V: number, scale: number): void
  // probe.ts
  /** Sums 16-byte chunks [r0, r1) of the buffer (bytes / 16 chunks). */
  probe_stream_read(r0: number, r1: number, ptr: number, bytes: number): number
  /** flops = (r1 - r0) * iters * 96. */
  probe_madd(r0: number, r1: number, iters: number): number
  /** Writes a zero byte at the start of each 4 KiB page p in [r0, r1) from ptr (fresh memory only): parallel first touch. */
  touch_pages(r0: number, r1: number, ptr: number): void
  /** First byte after the module's static data (the arena starts above it). */
  heap_base(): number
}

/** Kernels that take a split range (r0, r1) first and can run across threads; the index is the kernel id. */
export const SPLIT_KERNELS = [
  'matmul_f32', 'matmul_f16', 'matmul_bf16', 'matmul_q8',
  'matmul_f32_naive', 'matmul_f16_naive', 'matmul_bf16_naive', 'matmul_q8_naive',
  'attention', 'attention_naive',
  'probe_stream_read', 'probe_madd', 'touch_pages',
  'logprobs', 'logprobs_naive',
  'matmul_backward_dx', 'matmul_backward_dx_naive', 'matmul_backward_dw', 'matmul_backward_dw_naive',
  'attention_backward', 'attention_backward_naive', 'crossentropy', 'crossentropy_naive',
  'matmul_q4', 'matmul_q4_naive', 'matmul_f32g', 'matmul_f32g_naive',
] as const satisfies readonly (keyof KernelExports)[]
export type SplitKernelName = (typeof SPLIT_KERNELS)[number]

/**
 * Rows per chunk of a split call on `threads` threads (pool.ts): about CHUNKS_PER_THREAD chunks a thread, so
 * that a faster thread takes more of them, and whole row groups (4 rows, quant.ts) for the forward matmuls,
 * whose 4-row tiles would otherwise run a group cut at a chunk's edge row by row.
 */
export function splitGrain(name: SplitKernelName, rows: number, threads: number): number {
  const align = name.startsWith('matmul_') && !name.startsWith('matmul_backward') ? 4 : 1
  return Math.max(align, Math.ceil(rows / (threads * CHUNKS_PER_THREAD) / align) * align)
}
/** Chunks a thread takes, on average, in one split call (see splitGrain). */
export const CHUNKS_PER_THREAD = 8

/**
 * Moves a weight [rows, cols] (rows in order) into the kernels' row groups (assembly/quant.ts): with cols a
 * multiple of 8, rows 4g .. 4g+R-1 (R = min(4, rows - 4g)) take turns every 8 values — values k .. k+7 of the
 * group's row r at 4g cols + ((k / 8) R + r) 8; other cols: rows in order. src and dst are views of the same
 * values in units of u elements per 8 values (u = 8, or 4 when two halves share a 32-bit word).
 */
function groupTurns(src: ArrayLike<number>, dst: { [i: number]: number }, rows: number, cols: number, u: number): void {
  const rowLen = (cols / 8) * u
  for (let g = 0; g < rows; g += 4) {
    const R = Math.min(4, rows - g), base = g * rowLen
    for (let r = 0; r < R; r++) {
      const s0 = (g + r) * rowLen
      for (let si = s0, di = base + r * u; si < s0 + rowLen; si += u, di += R * u) {
        for (let j = 0; j < u; j++) dst[di + j] = src[si + j]
      }
    }
  }
}

/**
 * A 16-bit weight's bits [rows, cols] (f16 / bf16, row-major) written to `out` (same length; a new array by
 * default, or a view of a wasm memory) in the order the kernels read them (groupTurns).
 */
export function groupRows16(bits: Uint16Array<ArrayBufferLike>, rows: number, cols: number, out: Uint16Array<ArrayBufferLike> = new Uint16Array(bits.length)): Uint16Array<ArrayBufferLike> {
  if (out.length !== bits.length || bits.length !== rows * cols) throw new RangeError(`groupRows16: ${bits.length} and ${out.length} values for [${rows}, ${cols}]`)
  if (cols % 8 !== 0) { out.set(bits); return out }
  // 8 halves = 4 words; 32-bit views where both arrays are 4-byte aligned (they are, from alloc), else 16-bit
  if (bits.byteOffset % 4 === 0 && out.byteOffset % 4 === 0) {
    groupTurns(new Uint32Array(bits.buffer, bits.byteOffset, bits.length / 2), new Uint32Array(out.buffer, out.byteOffset, out.length / 2), rows, cols, 4)
  } else groupTurns(bits, out, rows, cols, 8)
  return out
}

/**
 * An f32 weight [rows, cols] (rows in order) written to `out` in the kernels' row groups (groupTurns; what
 * the kernel group_rows_f32 does in place). For tests and hosts that place weights.
 */
export function groupRowsF32(src: Float32Array<ArrayBufferLike>, rows: number, cols: number, out: Float32Array<ArrayBufferLike> = new Float32Array(src.length)): Float32Array<ArrayBufferLike> {
  if (out.length !== src.length || src.length !== rows * cols) throw new RangeError(`groupRowsF32: ${src.length} and ${out.length} values for [${rows}, ${cols}]`)
  if (cols % 8 !== 0) out.set(src)
  else groupTurns(src, out, rows, cols, 8)
  return out
}

/** Bytes of quantize_act's output for x [T, K]: i16 [T, Kp] + f32 [T, Kp/32] + i32 [T, Kp/32]. */
export function actBytes(T: number, K: number): number {
  const Kp = Math.ceil(K / 32) * 32
  return T * (2 * Kp + 8 * (Kp / 32))
}

/** The two builds of the kernels: plain WASM SIMD, or with Relaxed SIMD where the results are the same. */
export type SimdBuild = 'plain' | 'relaxed'
/** What to run: a build, or `auto` (relaxed where the runtime has Relaxed SIMD, else plain). */
export type SimdChoice = SimdBuild | 'auto'

/**
 * A module of one function `() -> v128` that runs i16x8.relaxed_dot_i8x16_i7x16_s (0xfd 0x112) on two
 * zero vectors: the instruction the relaxed build relies on.
 */
function relaxedProbeModule(): Uint8Array {
  const zero = [0xfd, 0x0c, ...new Array<number>(16).fill(0)] // v128.const 0
  const body = [0x00, ...zero, ...zero, 0xfd, 0x92, 0x02, 0x0b] // no locals; 2 x v128.const; relaxed dot; end
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // \0asm, version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: one type, () -> v128
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x0a, body.length + 2, 0x01, body.length, ...body, // code section
  ])
}

/** The compiled modules, by build; and the build of each module handed out. */
const compiled: Partial<Record<SimdBuild, WasmModule>> = {}
const buildOf = new WeakMap<WasmModule, SimdBuild>()

let relaxedSupport: boolean | undefined

/** Whether this runtime has Relaxed SIMD (validates a relaxed-SIMD instruction). Node 20: only with --experimental-wasm-relaxed-simd. */
export function relaxedSimdSupported(): boolean {
  if (relaxedSupport === undefined) {
    try {
      relaxedSupport = WA.validate(relaxedProbeModule())
    } catch {
      relaxedSupport = false
    }
  }
  return relaxedSupport
}

/** Reads REFGPT_SIMD (unset or empty: auto). */
function simdFromEnv(): SimdChoice {
  const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.REFGPT_SIMD ?? ''
  if (v === '' || v === 'auto' || v === 'plain' || v === 'relaxed') return v === '' ? 'auto' : v
  throw new Error(`refgpt wasm: REFGPT_SIMD=${v}: expected auto, plain or relaxed`)
}

/**
 * The build a choice means on this runtime (choice: default REFGPT_SIMD, else auto). auto: relaxed when
 * the runtime has Relaxed SIMD and build/refgpt-relaxed.wasm is there, else plain. relaxed where the
 * runtime lacks it: an error.
 */
export function selectSimdBuild(choice: SimdChoice = simdFromEnv()): SimdBuild {
  if (choice === 'plain') return 'plain'
  if (choice === 'relaxed') {
    if (!relaxedSimdSupported()) {
      throw new Error(`refgpt wasm: the relaxed-SIMD kernels were asked for (REFGPT_SIMD=relaxed or simd: 'relaxed') but this runtime does not support Relaxed SIMD; expected a runtime that validates i16x8.relaxed_dot_i8x16_i7x16_s; hint: Node 20 needs \`node --experimental-wasm-relaxed-simd\` (newer Node has it on), or use REFGPT_SIMD=auto / plain`)
    }
    return 'relaxed'
  }
  if (choice !== 'auto') throw new Error(`refgpt wasm: simd ${String(choice)}: expected auto, plain or relaxed`)
  if (!relaxedSimdSupported()) return 'plain'
  // a package without the relaxed module (or a host that set only a plain one): the plain build
  return compiled.relaxed || kernelFileExists('relaxed') ? 'relaxed' : 'plain'
}

/**
 * Compiles a kernel module once (synchronously) and returns the cached module: build (default:
 * selectSimdBuild(), i.e. REFGPT_SIMD or auto) — 'plain' build/refgpt.wasm, 'relaxed' build/refgpt-relaxed.wasm.
 */
export function loadKernelModule(build: SimdBuild = selectSimdBuild()): WasmModule {
  const cached = compiled[build]
  if (cached) return cached
  const path = kernelWasmPath(build)
  const bytes = readKernelBytes(build)
  if (build === 'relaxed' && !WA.validate(bytes)) {
    throw new Error(`refgpt wasm: the relaxed-SIMD kernel module ${path} does not validate on this runtime; expected a runtime with Relaxed SIMD; hint: Node 20 needs \`node --experimental-wasm-relaxed-simd\`, or set REFGPT_SIMD=plain`)
  }
  const module = new WA.Module(bytes)
  compiled[build] = module
  buildOf.set(module, build)
  return module
}

/** Uses an already compiled kernel module (e.g. one compiled from fetched bytes in a browser) for `build` (default plain). */
export function setKernelModule(module: WasmModule, build: SimdBuild = 'plain'): void {
  compiled[build] = module
  buildOf.set(module, build)
}

/** Which build a module loadKernelModule / setKernelModule handed out is ('plain' for any other). */
export function kernelBuildOf(module: WasmModule): SimdBuild {
  return buildOf.get(module) ?? 'plain'
}

let heapBase: { module: WasmModule; bytes: number } | undefined

/** The module's static-data end (its `heap_base()`): memories reserve the bytes below it. */
export function kernelHeapBase(module: WasmModule = loadKernelModule()): number {
  if (heapBase === undefined || heapBase.module !== module) {
    const probe = new WA.Memory({ initial: 1, maximum: 1, shared: true })
    heapBase = { module, bytes: instantiateKernels(module, probe).heap_base() >>> 0 }
  }
  return heapBase.bytes
}

/** Instantiates the kernel module on a memory. */
export function instantiateKernels(module: WasmModule, memory: WasmMemoryObject): KernelExports {
  return new WA.Instance(module, { env: { memory } }).exports as unknown as KernelExports
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a

/** A live block: [ptr, ptr + bytes) handed out; it also owns [from, ptr), the alignment gap before it. */
interface Block {
  bytes: number
  from: number
}

/**
 * A shared linear memory (up to 4 GiB) with an arena. The bytes below `base` are reserved (the
 * module's static data, and offset 0, which the kernels read as "no pointer").
 *
 * The arena is a bump pointer (`top`) plus a free list. alloc() takes the first free range that
 * holds the block at its alignment (first fit, lowest address first; what is left of the range
 * stays on the list), else bumps `top`. free() returns a block (and the alignment gap a bump left
 * before it) to the free list, which is kept sorted and coalesced; a free range that reaches `top`
 * lowers `top` instead. So every byte in [base, top) belongs to a live block, to its alignment gap,
 * or to a free range, and no free range ends at `top`. alloc() always returns zero-filled bytes.
 * mark() / release() release in bulk by position (see release()). With no free() call the arena is
 * the plain bump arena: the free list stays empty.
 */
/** A memory cannot hold an allocation: past 4 GiB, or the host would not let it grow. */
export class WasmOutOfMemoryError extends Error {
  constructor(
    /** Bytes asked for. */
    readonly requested: number,
    /** Bytes this memory still had below 4 GiB. */
    readonly left: number,
    message: string,
  ) {
    super(message)
    this.name = 'WasmOutOfMemoryError'
  }
}

export class WasmMemory {
  readonly memory: WasmMemoryObject
  /** First byte the arena hands out. */
  readonly base: number
  /** End of the bump region: every block lies below it. */
  private top: number
  /** Bytes [0, highWater) have been handed out at some time (may hold old data after free / release). */
  private highWater: number
  /** Live blocks by pointer. */
  private readonly live = new Map<number, Block>()
  /** Sum of the live blocks' bytes. */
  private liveBytes = 0
  /** Free ranges below `top`, sorted, disjoint and coalesced (no two touch): starts[i] < ends[i] < starts[i + 1]. */
  private starts: number[] = []
  private ends: number[] = []

  /** reserved: bytes kept at the start (default: the kernel module's heap_base, at least 64). */
  constructor(opts: { reserved?: number; initialBytes?: number } = {}) {
    const initialPages = Math.max(1, Math.ceil((opts.initialBytes ?? PAGE_BYTES) / PAGE_BYTES))
    this.memory = new WA.Memory({ initial: initialPages, maximum: MAX_PAGES, shared: true })
    this.base = alignUp(Math.max(64, opts.reserved ?? kernelHeapBase()), 64)
    this.top = this.base
    this.highWater = this.base
  }

  /** The current buffer: create views from it on demand, never keep one across an alloc (it may grow). */
  get buffer(): SharedArrayBuffer {
    return this.memory.buffer as unknown as SharedArrayBuffer
  }
  /** Current size of the memory in bytes. */
  get byteLength(): number {
    return this.memory.buffer.byteLength
  }
  /** The arena's top: bytes [0, bytesUsed) hold the reserved start, the live blocks and the free ranges between them. */
  get bytesUsed(): number {
    return this.top
  }
  /** Bytes held by live blocks (their sizes; alignment gaps not counted; a 0-byte block holds 1). */
  get bytesLive(): number {
    return this.liveBytes
  }
  /** Bytes above the top the arena can still hand out before the 4 GiB limit (growing as needed); free ranges below the top not counted. */
  bytesFree(): number {
    return MAX_MEMORY_BYTES - this.top
  }

  /**
   * Reserves `bytes` zero-filled bytes aligned to `align` and returns their offset (never 0): from the
   * free list when a range holds them, else above the top. A 0-byte request holds 1 byte, so every
   * live block has its own pointer. Grows the memory when needed (load and session / KV-growth time
   * only, never per token): views made before this call may be stale.
   */
  alloc(bytes: number, align = 64): number {
    if (!(bytes >= 0) || !Number.isInteger(bytes)) throw new Error(`refgpt wasm: alloc of ${bytes} bytes: expected a non-negative integer`)
    if (!(align >= 1) || !Number.isInteger(align)) throw new Error(`refgpt wasm: alloc aligned to ${align}: expected a positive integer`)
    const size = Math.max(1, bytes)
    // first fit on the free list
    const { starts, ends } = this
    for (let i = 0; i < starts.length; i++) {
      const s = starts[i], e = ends[i], start = alignUp(s, align), end = start + size
      if (end > e) continue
      // the range splits into [s, start) and [end, e): keep the non-empty pieces in place
      if (start > s && end < e) {
        ends[i] = start
        starts.splice(i + 1, 0, end)
        ends.splice(i + 1, 0, e)
      } else if (start > s) ends[i] = start
      else if (end < e) starts[i] = end
      else {
        starts.splice(i, 1)
        ends.splice(i, 1)
      }
      new Uint8Array(this.buffer, start, size).fill(0) // freed bytes may hold old data
      this.live.set(start, { bytes: size, from: start })
      this.liveBytes += size
      return start
    }
    // bump
    const from = this.top
    const start = alignUp(from, align)
    const end = start + size
    if (end > MAX_MEMORY_BYTES) {
      throw new WasmOutOfMemoryError(bytes, this.bytesFree(), `refgpt wasm: out of memory: ${fmtBytes(bytes)} requested with ${fmtBytes(this.bytesFree())} left in a 4 GiB wasm memory; hint: place the rest of the model in another memory (addMemory) or use a smaller storage dtype`)
    }
    const length = this.memory.buffer.byteLength
    if (end > length) {
      const pages = Math.ceil((end - length) / PAGE_BYTES)
      try {
        this.memory.grow(pages)
      } catch (e) {
        throw new WasmOutOfMemoryError(bytes, this.bytesFree(), `refgpt wasm: cannot grow memory from ${fmtBytes(length)} to ${fmtBytes(length + pages * PAGE_BYTES)}: ${(e as Error).message}`)
      }
    }
    if (start < this.highWater) new Uint8Array(this.buffer, start, Math.min(end, this.highWater) - start).fill(0)
    this.top = end
    this.highWater = Math.max(this.highWater, end)
    this.live.set(start, { bytes: size, from })
    this.liveBytes += size
    return start
  }

  /**
   * Returns the block at `ptr` (a pointer alloc() returned and not yet freed or released) to the
   * arena: its bytes, and the alignment gap before it, join the free list; a range that reaches the
   * top lowers the top (bytesUsed shrinks). The memory itself does not shrink.
   */
  free(ptr: number): void {
    const b = this.live.get(ptr)
    if (b === undefined) throw new Error(`refgpt wasm: free(${ptr}): not an allocation of this memory (never allocated here, already freed, or released)`)
    this.live.delete(ptr)
    this.liveBytes -= b.bytes
    this.addFree(b.from, ptr + b.bytes)
    this.lowerTop()
  }

  /** The arena position, for release(). */
  mark(): number {
    return this.top
  }

  /**
   * Frees every block that reaches above `mark` (a value mark() returned): those are exactly the
   * blocks allocated after mark() that lie, at least partly, above it. A block allocated after
   * mark() wholly below the mark (in a range freed since: a free-list range, or below a top that
   * free() lowered) is NOT released: free() it. Free ranges above the mark are dropped and the top
   * goes down to the mark (or lower, when a free range reaches it). The memory itself does not
   * shrink. A mark at or above the current top (the top went down through free()) frees nothing.
   */
  release(mark: number): void {
    if (!Number.isInteger(mark) || mark < this.base || mark > this.highWater) throw new Error(`refgpt wasm: release(${mark}): not a mark of this arena`)
    const gone: Block[] = []
    for (const [ptr, b] of this.live) {
      if (ptr + b.bytes > mark) {
        this.live.delete(ptr)
        this.liveBytes -= b.bytes
        if (b.from < mark) gone.push(b) // its part below the mark becomes free
      }
    }
    if (mark < this.top) {
      // drop the free ranges above the mark (cut the one that straddles it)
      let n = this.starts.length
      while (n > 0 && this.starts[n - 1] >= mark) n--
      this.starts.length = n
      this.ends.length = n
      if (n > 0 && this.ends[n - 1] > mark) this.ends[n - 1] = mark
      this.top = mark
    }
    for (const b of gone) this.addFree(b.from, mark) // (gone is empty unless mark < the old top)
    this.lowerTop()
  }

  /** Adds [s, e) (disjoint from every free range and live block) to the free list, merging it with the ranges it touches. */
  private addFree(s: number, e: number): void {
    if (e <= s) return
    const { starts, ends } = this
    // i: the first range that starts after s
    let lo = 0, hi = starts.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (starts[mid] <= s) lo = mid + 1
      else hi = mid
    }
    const i = lo
    const joinPrev = i > 0 && ends[i - 1] === s
    const joinNext = i < starts.length && starts[i] === e
    if (joinPrev && joinNext) {
      ends[i - 1] = ends[i]
      starts.splice(i, 1)
      ends.splice(i, 1)
    } else if (joinPrev) ends[i - 1] = e
    else if (joinNext) starts[i] = s
    else {
      starts.splice(i, 0, s)
      ends.splice(i, 0, e)
    }
  }

  /** A free range that reaches the top is no longer free: the top goes down to its start. */
  private lowerTop(): void {
    const n = this.starts.length
    if (n > 0 && this.ends[n - 1] >= this.top) {
      this.top = this.starts[n - 1]
      this.starts.length = n - 1
      this.ends.length = n - 1
    }
  }

  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.buffer, ptr, n)
  }
  i32(ptr: number, n: number): Int32Array {
    return new Int32Array(this.buffer, ptr, n)
  }
  u16(ptr: number, n: number): Uint16Array {
    return new Uint16Array(this.buffer, ptr, n)
  }
  i8(ptr: number, n: number): Int8Array {
    return new Int8Array(this.buffer, ptr, n)
  }
  u8(ptr: number, n: number): Uint8Array {
    return new Uint8Array(this.buffer, ptr, n)
  }
}

function fmtBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${n} bytes`
}

/**
 * Layout of the pool's control block (a SharedArrayBuffer shared by the main thread and the workers).
 * Int32 slots: generation counter (bumped once per dispatch), done counter (workers finished),
 * op (a SPLIT_KERNELS index, or OP_SYNC / OP_EXIT), memory index, rows, error flag (worker index + 1)
 * and error text length, the next chunk to claim and the rows per chunk (pool.ts); then 16 f64 kernel
 * arguments; then the error text (UTF-8).
 */
export const CTL = {
  GEN: 0, DONE: 1, OP: 2, MEM: 3, ROWS: 4, ERR: 5, ERR_LEN: 6, NEXT: 7, GRAIN: 8,
  I32_LEN: 16,
  ARGS_BYTE: 64, ARGS_LEN: 16,
  ERR_BYTE: 256, ERR_MAX: 1024,
  BYTES: 256 + 1024,
  /** Workers read a message (a new memory) with receiveMessageOnPort. */
  OP_SYNC: -1,
  OP_EXIT: -2,
} as const
