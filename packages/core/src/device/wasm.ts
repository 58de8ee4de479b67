// The `wasm` device: every op is one call into refgpt's AssemblyScript WASM-SIMD kernels
// (packages/wasm), the big ones (matmul, attention) split by output rows / heads over worker threads
// that share the linear memory. Results do not depend on the thread count: each output element is
// computed by the same instruction sequence whichever thread owns its row.
//
// Memory: weights are copied into linear memory once, at load; activations and KV caches are
// allocated (and freed) by sessions, never per token. A wasm32 memory ends at 4 GiB, so a bigger
// model spreads its layers over several memories (placement groups); the residual stream is copied
// between them. Ops run at once on the calling thread (and the pool's workers), so read() has the
// data before it returns; it still answers with a Promise, as the Device interface asks.
//
// A Buf is a number: group * 2^32 + byte offset. Weights stored as F16/BF16/Q8/Q4 have a side entry
// (storage type, Q8/Q4 scales) looked up per matmul; everything else is f32.
//
// Weight layout: [rows, cols] weights with cols a multiple of 8 are kept in the kernels' row groups
// (assembly/quant.ts: 4 rows take turns every 8 values, so a 4-row decode tile reads one stream) — f16 / bf16
// always, and f32 too (side entry 'F32G'), until training asks for rows in order (train.trainable). read(),
// write() and snapshot() of a grouped f32 weight see rows in order, as everywhere else.
//
// A matmul with a Q8 / Q4 weight first quantizes its activations (quantize_act, on the calling thread,
// into a scratch area of the weight's memory that grows when a call needs more), then runs the integer
// kernel split over the threads: every thread reads the same quantized block.

import {
  WasmOutOfMemoryError, MAX_STAGED_ROWS, actBytes, allocGemmScratch, createWasmCore, gemmScratchBytes, type KernelExports, type SimdBuild, type SimdChoice,
  type SplitKernelName, type WasmCore, type WasmMemory,
} from '@refgpt/wasm'
import { ResourceError } from '../errors.js'
import { Q8_BLOCK, q8Cols, storedValues } from './storage.js'
import type { Activation, AttentionOptions, Buf, Device, Storage, TrainOps } from './types.js'

const GROUP = 2 ** 32
const group = (b: Buf) => Math.floor((b as unknown as number) / GROUP)
const ptr = (b: Buf) => (b as unknown as number) % GROUP
const handle = (g: number, p: number) => (g * GROUP + p) as unknown as Buf

/** Below this many multiply-adds a matmul runs on the calling thread (dispatch costs a few µs). */
const PARALLEL_MIN_MACS = 1 << 15
/** ids / positions of up to this many rows are staged in each memory for embed and rotary. */
const MAX_ROWS = MAX_STAGED_ROWS

/** How a weight is kept when not as a plain f32 buffer: its storage dtype, or F32G (f32 in row groups). */
type Kept = Exclude<Storage, 'F32'> | 'F32G'

interface Stored {
  storage: Kept
  /** Q8 / Q4: byte offset of the f32 scales [rows, colsPadded / 32]. */
  scales: number
  /** Rows of the weight (Q8 / Q4 keep them in groups of 4: the last group's size depends on it). */
  rows: number
  /** F16: no half is an inf or a NaN (checked once at load): matmul_f16's decode tile skips its watch. */
  finite?: boolean
  /** F32G: the row length (read / write translate indices with it). */
  cols?: number
}

/** Token rows the quantized-activation scratch of a memory holds from the start (sessions' default maxT). */
const ACT_ROWS = 64

/** Bytes of the staging area a weight given in f32 passes through on its way to Q8 / Q4 / F16 / BF16 storage. */
const STAGE_BYTES = 1 << 24

export interface WasmDeviceOptions {
  /** Threads including the calling one (default: the number of cores). */
  threads?: number
  /** Run the scalar `_naive` kernels instead of the SIMD ones (benchmarks, cross-checks). */
  naive?: boolean
  /**
   * Bytes one memory may hold before layers go to the next (default: 4 GiB less 64 MiB of slack).
   * Tests set it small to exercise multi-memory placement on tiny models.
   */
  memoryBytes?: number
  /** Bytes one buffer may hold (default: no limit); tests set it small to split weights into parts. */
  maxBufferBytes?: number
  /**
   * Build of the kernels: 'plain' (WASM SIMD), 'relaxed' (Relaxed SIMD for the q8 / q4 dot products; the
   * same results bit for bit; an error where the runtime lacks it) or 'auto'. Default: REFGPT_SIMD, else auto.
   */
  simd?: SimdChoice
}

export interface WasmDevice extends Device {
  readonly core: WasmCore
  readonly threads: number
  /** The build of the kernels running: 'plain' or 'relaxed' (see WasmDeviceOptions.simd). */
  readonly simd: SimdBuild
  /** Stops the worker threads. */
  dispose(): Promise<void>
}

export async function createWasmDevice(opts: WasmDeviceOptions = {}): Promise<WasmDevice> {
  const core = await createWasmCore({ threads: opts.threads, simd: opts.simd })
  const stored = new Map<number, Stored>()
  const limit = opts.memoryBytes ?? 2 ** 32 - (64 << 20)
  /**
   * Per memory: kernels, a staging area for i32 row data (ids, positions), and the scratch of quantized
   * activations for Q8 / Q4 matmuls (act: offset, 0 until the first quantized weight; actBytes: its size).
   */
  const mems: { k: KernelExports; mem: WasmMemory; rows: number; act: number; actBytes: number; gemm: number; fresh: number }[] = []
  let current = 0

  /**
   * `bytes` from group g's memory. A request the memory cannot hold (a wasm32 memory ends at 4 GiB) or
   * the host cannot back is a ResourceError naming the bytes, not the arena's plain Error.
   */
  const memAlloc = (g: number, bytes: number): number => {
    const mem = mems[g]?.mem ?? core.memories[g]
    try {
      return mem.alloc(bytes)
    } catch (e) {
      throw outOfMemory(e)
    }
  }
  const addGroup = (g: number) => {
    if (g > 0) {
      try {
        core.addMemory()
      } catch (e) {
        throw outOfMemory(e)
      }
    }
    const mem = core.memories[g]
    mems.push({ k: core.kernels(g), mem, rows: 0, act: 0, actBytes: 0, gemm: 0, fresh: 0 })
    mems[g].rows = memAlloc(g, 4 * MAX_ROWS)
    // the matmul scratch: one slot per thread, where prefill widens weight panels (gemm: its offset; 0:
    // none, when it would take more than 1/64 of the memory limit: matmuls then keep the in-register tiles)
    if (gemmScratchBytes(core.threads) <= limit / 64) {
      try {
        mems[g].gemm = allocGemmScratch(mem, core.threads)
      } catch (e) {
        throw outOfMemory(e)
      }
    }
    mems[g].fresh = mem.bytesUsed // what a memory holds before anything is placed in it
  }
  addGroup(0)

  // views over a memory, rebuilt only when the memory has grown (load time); none are made per op
  const f32v: Float32Array[] = [], i32v: Int32Array[] = []
  const f32 = (g: number) => {
    const buf = mems[g].mem.buffer
    if (f32v[g]?.buffer !== buf) {
      f32v[g] = new Float32Array(buf)
      i32v[g] = new Int32Array(buf)
    }
    return f32v[g]
  }
  const i32 = (g: number) => (f32(g), i32v[g])

  /**
   * The quantized-activation scratch of memory g, at least `bytes` long. Sized at load time for ACT_ROWS
   * rows of the widest quantized weight; a call with more rows (a longer prefill chunk) grows it once.
   */
  const actScratch = (g: number, bytes: number): number => {
    const m = mems[g]
    if (m.actBytes < bytes) {
      if (m.act) m.mem.free(m.act)
      m.act = 0
      m.act = memAlloc(g, bytes)
      m.actBytes = bytes
    }
    return m.act
  }

  const alloc = (bytes: number): Buf => handle(current, memAlloc(current, bytes))

  /** First touch of a big fresh region on every thread (load time: the page faults then run in parallel). */
  const prefault = (b: Buf, bytes: number) => {
    const pages = Math.floor(bytes / 4096)
    if (pages < 256 || core.threads < 2) return
    core.args[0] = ptr(b)
    core.run(group(b), 'touch_pages', 1, pages)
  }

  /** Copies row ids (or positions) into group g's staging area; returns its offset. */
  const stage = (g: number, src: Int32Array, T: number): number => {
    if (T > MAX_ROWS) throw new RangeError(`wasm device: ${T} rows in one op (at most ${MAX_ROWS})`)
    const view = i32(g), at = mems[g].rows / 4
    for (let t = 0; t < T; t++) view[at + t] = src[t]
    return mems[g].rows
  }

  // kernel names, chosen once (SIMD or naive)
  const MATMUL: Record<Storage | 'F32G', SplitKernelName> = opts.naive
    ? { F32: 'matmul_f32_naive', F32G: 'matmul_f32g_naive', F16: 'matmul_f16_naive', BF16: 'matmul_bf16_naive', Q8: 'matmul_q8_naive', Q4: 'matmul_q4_naive' }
    : { F32: 'matmul_f32', F32G: 'matmul_f32g', F16: 'matmul_f16', BF16: 'matmul_bf16', Q8: 'matmul_q8', Q4: 'matmul_q4' }

  /**
   * An f32 weight [rows, cols] at b (rows in order) into row groups in place (back: the other way), with a
   * scratch of 4 rows; cols % 8 != 0 stays as it is (and untagged).
   */
  const regroup = (b: Buf, rows: number, cols: number, back: boolean) => {
    if (cols % 8 !== 0) return
    const g = group(b), tmp = memAlloc(g, 16 * cols)
    mems[g].k.group_rows_f32(ptr(b), rows, cols, tmp, back ? 1 : 0)
    mems[g].mem.free(tmp)
    if (back) stored.delete(b as unknown as number)
    else stored.set(b as unknown as number, { storage: 'F32G', scales: 0, rows, cols })
  }
  /**
   * Element i (rows in order) of an F32G weight -> its index in the buffer: row n = i / cols, k = i % cols at
   * group (n & ~3), step k / 8, slot n & 3 of R = the group's rows.
   */
  const groupedAt = (st: Stored, i: number) => {
    const cols = st.cols!, n = Math.floor(i / cols), k = i - n * cols, g0 = n & ~3, R = Math.min(4, st.rows - g0)
    return g0 * cols + ((k >> 3) * R + (n & 3)) * 8 + (k & 7)
  }
  const grouped = (b: Buf) => {
    const st = stored.get(b as unknown as number)
    return st?.storage === 'F32G' ? st : null
  }

  const QUANTIZE_ACT = opts.naive ? 'quantize_act_naive' : 'quantize_act'
  const ATTENTION: SplitKernelName = opts.naive ? 'attention_naive' : 'attention'
  const LOGPROBS: SplitKernelName = opts.naive ? 'logprobs_naive' : 'logprobs'

  /** Runs a row-split kernel on args[0 .. nArgs): across the threads, or here when the work is small. */
  const split = (g: number, name: SplitKernelName, nArgs: number, rows: number, work: number) => {
    if (work >= PARALLEL_MIN_MACS) return core.run(g, name, nArgs, rows)
    const a = core.args
    const f = (mems[g].k as unknown as Record<string, (...args: number[]) => void>)[name]
    f(0, rows, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13])
  }

  const ACT = Object.fromEntries(
    (['gelu_tanh', 'gelu_erf', 'relu', 'silu', 'quick_gelu'] as const).map((a) => [a, opts.naive ? `${a}_naive` : a]),
  ) as Record<Activation, string>

  // --- training: the backward kernels (f32 weights only) ---
  const N = opts.naive ? '_naive' : ''
  const kf = (g: number) => mems[g].k as unknown as Record<string, (...args: number[]) => void>
  const f32Only = (w: Buf, what: string) => {
    if (stored.has(w as unknown as number)) throw new RangeError(`wasm device: ${what} needs an F32 weight (training is f32)`)
  }
  const train: TrainOps = {
    trainable(w) {
      // training reads and writes f32 weights with rows in order: an F32G weight goes back to that layout
      const st = grouped(w)
      if (st) regroup(w, st.rows, st.cols!, true)
    },
    layerNormForward(out, mean, rstd, x, gw, bw, T, C, eps) {
      kf(group(out))[`layernorm_forward${N}`](ptr(out), ptr(mean), ptr(rstd), ptr(x), ptr(gw), ptr(bw), T, C, eps)
    },
    layerNormBackward(dx, dg, db, dout, x, gw, mean, rstd, T, C) {
      kf(group(dx))[`layernorm_backward${N}`](ptr(dx), ptr(dg), ptr(db), ptr(dout), ptr(x), ptr(gw), ptr(mean), ptr(rstd), T, C)
    },
    matmulBackward(dx, dw, db, dout, x, w, T, K, Nn) {
      f32Only(w, 'matmulBackward')
      const g = group(dout), a = core.args
      if (dx) {
        a[0] = ptr(dx); a[1] = ptr(dout); a[2] = ptr(w); a[3] = T; a[4] = K; a[5] = Nn
        split(g, (opts.naive ? 'matmul_backward_dx_naive' : 'matmul_backward_dx'), 6, T, T * K * Nn)
      }
      if (dw || db) {
        if (!dw) throw new RangeError('wasm device: matmulBackward with db but no dw')
        a[0] = ptr(dw); a[1] = db ? ptr(db) : 0; a[2] = ptr(dout); a[3] = ptr(x); a[4] = T; a[5] = K; a[6] = Nn
        split(g, (opts.naive ? 'matmul_backward_dw_naive' : 'matmul_backward_dw'), 7, Nn, T * K * Nn)
      }
    },
    activationBackward(dx, x, dout, n, act) {
      kf(group(dx))[`${act}_backward${N}`](ptr(dx), ptr(x), ptr(dout), n)
    },
    embedBackward(dtable, dout, ids, T, C) {
      const g = group(dtable)
      kf(g)[`embed_backward${N}`](ptr(dtable), ptr(dout), stage(g, ids, T), T, C)
    },
    attentionBackward(dq, dk, dv, dout, q, k, v, probs, o) {
      const g = group(dq), a = core.args
      a[0] = ptr(dq); a[1] = ptr(dk); a[2] = ptr(dv); a[3] = ptr(dout); a[4] = ptr(q); a[5] = ptr(k); a[6] = ptr(v); a[7] = ptr(probs)
      a[8] = o.T; a[9] = o.nHead; a[10] = o.headDim; a[11] = o.scale; a[12] = o.window
      split(g, (opts.naive ? 'attention_backward_naive' : 'attention_backward'), 13, o.nHead, 2 * o.nHead * o.T * o.T * o.headDim)
    },
    rotaryBackward(dx, table, positions, T, H, D, R) {
      const g = group(dx)
      kf(g)[`rotary_backward${N}`](ptr(dx), ptr(table), stage(g, positions, T), T, H, D, R)
    },
    crossEntropy(dlogits, losses, logits, targets, T, V, scale) {
      const g = group(logits), a = core.args
      a[0] = ptr(dlogits); a[1] = ptr(losses); a[2] = ptr(logits); a[3] = stage(g, targets, T); a[4] = T; a[5] = V; a[6] = scale
      split(g, (opts.naive ? 'crossentropy_naive' : 'crossentropy'), 7, T, T * V * 8)
    },
  }

  const dev: WasmDevice = {
    name: 'wasm',
    train,
    limits: { maxBufferBytes: opts.maxBufferBytes ?? Infinity },
    weightCopies: true, // weight() copies (or rounds, or quantizes) what it is given into wasm memory
    core,
    threads: core.threads,
    simd: core.simd,
    dispose: () => core.close(),

    placement: {
      reserve(bytes) {
        // keep the current memory while the request fits
        const m = mems[current].mem
        if (m.bytesUsed + bytes <= limit) return current
        if (m.bytesUsed <= mems[current].fresh) return current // nothing placed here yet: a new memory would not hold it either
        addGroup(mems.length)
        current = mems.length - 1
        return current
      },
      use(g) {
        current = g
      },
    },

    alloc: (n) => {
      // sessions' activations and KV caches: a big one is first touched now, on every thread (load /
      // session time), not page by page as the token loop first writes it (a page fault per KV row)
      const b = alloc(4 * n)
      prefault(b, 4 * n)
      return b
    },
    free: (b) => {
      stored.delete(b as unknown as number) // a later buffer at this offset starts untagged
      mems[group(b)].mem.free(ptr(b))
    },

    weight(data, shape, storage = 'F32') {
      const g = current
      if (shape.length !== 2 || storage === 'F32') {
        const values = storedValues(data, shape, storage) // 1-D under F16/BF16: rounded, kept f32
        const b = alloc(4 * values.length)
        prefault(b, 4 * values.length)
        f32(g).set(values, ptr(b) / 4)
        if (shape.length === 2) regroup(b, shape[0], shape[1], false)
        return b
      }
      const [rows, cols] = shape
      // Q8 / Q4 / F16 / BF16: rounded or quantized in the kernels, a chunk of rows at a time through a staging
      // area (the kernels place rows [r0, r1) where the layout of the whole weight puts them). The staging area
      // is allocated before the weight, so that it lands where the last weight's was freed: its pages were
      // touched then (a first touch of fresh wasm pages ran at 0.35 GB/s on the reference VM, and all of the
      // copies landed on fresh pages when the weight came first: BENCHMARKS.md "Session 12").
      // (4 rows when the memory has no room for 16 MiB: the planner counts weights, KV cache and activations,
      // and the last two are not there yet while a model loads, so 4 rows always fit)
      let stageBytes = Math.max(STAGE_BYTES, 16 * cols), tmp: number
      try {
        tmp = memAlloc(g, stageBytes)
      } catch (e) {
        if (!(e instanceof ResourceError)) throw e
        tmp = memAlloc(g, (stageBytes = 16 * cols))
      }
      const chunk = Math.floor(stageBytes / 16 / cols) * 4 // rows a pass: a multiple of 4
      /** Stages each chunk of rows and hands it to `kernel`. */
      const pass = (kernel: (r0: number, r1: number) => void) => {
        for (let r0 = 0; r0 < rows; r0 += chunk) {
          const r1 = Math.min(rows, r0 + chunk)
          f32(g).set(data.subarray(r0 * cols, r1 * cols), tmp / 4)
          kernel(r0, r1)
        }
      }
      let b: Buf
      if (storage === 'Q8' || storage === 'Q4') {
        actScratch(g, actBytes(ACT_ROWS, cols))
        const cp = q8Cols(cols)
        const rowBytes = storage === 'Q8' ? cp : cp / 2
        b = alloc(rows * rowBytes)
        prefault(b, rows * rowBytes)
        const s = memAlloc(g, 4 * rows * (cp / Q8_BLOCK))
        const quantize = storage === 'Q8' ? mems[g].k.quantize_q8 : mems[g].k.quantize_q4
        pass((r0, r1) => quantize(ptr(b), s, tmp, rows, cols, r0, r1))
        stored.set(b as unknown as number, { storage, scales: s, rows })
      } else {
        // f16 / bf16: store_half rounds as io/dtype.ts's f32ToF16Array / f32ToBf16Array do, into the row groups
        const n = rows * cols
        b = alloc(2 * n)
        prefault(b, 2 * n)
        const f16 = storage === 'F16' ? 1 : 0
        pass((r0, r1) => mems[g].k.store_half(ptr(b), tmp, rows, cols, r0, r1, f16))
        const finite = storage === 'F16' && mems[g].k.f16_nonfinite(ptr(b), n) === 0
        stored.set(b as unknown as number, { storage, scales: 0, rows, finite })
      }
      mems[g].mem.free(tmp)
      return b
    },
    weightF32(shape, fill) {
      const n = shape.reduce((p, d) => p * d, 1)
      const b = alloc(4 * n)
      prefault(b, 4 * n)
      fill(new Float32Array(mems[current].mem.buffer, ptr(b), n))
      if (shape.length === 2) regroup(b, shape[0], shape[1], false)
      return b
    },
    zero(b, n) {
      const at = ptr(b) / 4
      f32(group(b)).fill(0, at, at + n)
    },
    write(b, src, offset = 0) {
      const st = grouped(b), v = f32(group(b)), at = ptr(b) / 4
      if (!st) v.set(src, at + offset)
      else for (let i = 0; i < src.length; i++) v[at + groupedAt(st, offset + i)] = src[i]
    },
    read(b, dst, offset = 0) {
      const st = grouped(b), v = f32(group(b)), at = ptr(b) / 4
      if (!st) for (let i = 0; i < dst.length; i++) dst[i] = v[at + offset + i]
      else for (let i = 0; i < dst.length; i++) dst[i] = v[at + groupedAt(st, offset + i)]
      return Promise.resolve()
    },
    snapshot(b, offset, n) {
      if (grouped(b)) {
        const out = new Float32Array(n)
        dev.read(b, out, offset)
        return Promise.resolve(out)
      }
      const at = ptr(b) / 4 + offset
      return Promise.resolve(f32(group(b)).slice(at, at + n))
    },

    copy(dst, dstOff, src, srcOff, n) {
      const gd = group(dst), gs = group(src)
      const d = ptr(dst) / 4 + dstOff, s = ptr(src) / 4 + srcOff
      if (gd === gs) f32(gd).copyWithin(d, s, s + n)
      else {
        const vd = f32(gd), vs = f32(gs)
        for (let i = 0; i < n; i++) vd[d + i] = vs[s + i]
      }
    },

    embed(out, table, ids, T, C, accumulate) {
      const g = group(out), k = mems[g].k
      const at = stage(g, ids, T), st = stored.get(table as unknown as number)
      const acc = accumulate ? 1 : 0
      if (!st) k.embed_f32(ptr(out), ptr(table), at, T, C, acc, 0)
      else if (st.storage === 'F32G') (opts.naive ? k.embed_f32g_naive : k.embed_f32g)(ptr(out), ptr(table), at, T, C, acc, st.rows)
      else if (st.storage === 'Q8') (opts.naive ? k.embed_q8_naive : k.embed_q8)(ptr(out), ptr(table), st.scales, at, T, C, acc, st.rows)
      else if (st.storage === 'Q4') (opts.naive ? k.embed_q4_naive : k.embed_q4)(ptr(out), ptr(table), st.scales, at, T, C, acc, st.rows)
      else if (st.storage === 'F16') k.embed_f16(ptr(out), ptr(table), at, T, C, acc, st.rows)
      else k.embed_bf16(ptr(out), ptr(table), at, T, C, acc, st.rows)
    },

    matmul(out, x, w, b, T, K, N) {
      const g = group(w), st = stored.get(w as unknown as number)
      const a = core.args
      const quantized = st?.storage === 'Q8' || st?.storage === 'Q4'
      let xa = ptr(x)
      if (quantized) {
        // the activations, quantized once for every thread (the scratch is sized at load; a longer chunk grows it)
        xa = actScratch(g, actBytes(T, K))
        mems[g].k[QUANTIZE_ACT](xa, ptr(x), T, K, st.storage === 'Q4' ? 1 : 0)
      }
      a[0] = ptr(out)
      a[1] = xa
      a[2] = ptr(w)
      let n = 3
      if (quantized) a[n++] = st.scales
      a[n++] = b ? ptr(b) : 0
      a[n++] = T
      a[n++] = K
      a[n++] = N
      a[n] = 0 // an optional trailing pointer argument (a kernel scratch) reads "none", not a stale value
      if (!quantized) a[n++] = mems[g].gemm // the matmul scratch: f16 / bf16 / grouped f32 prefill fills weight panels there (f32 in rows ignores it)
      if (st?.storage === 'F16') a[n++] = st.finite ? 1 : 0 // matmul_f16's `finite`: no inf / NaN half, no watch in the decode tile
      split(g, MATMUL[st ? st.storage : 'F32'], n, N, T * K * N)
    },

    layerNorm(out, x, gw, bw, T, C, eps) {
      const k = mems[group(out)].k
      ;(opts.naive ? k.layernorm_naive : k.layernorm)(ptr(out), ptr(x), ptr(gw), ptr(bw), T, C, eps)
    },

    activation(out, x, n, act) {
      const k = mems[group(out)].k as unknown as Record<string, (o: number, x: number, n: number) => void>
      k[ACT[act]](ptr(out), ptr(x), n)
    },

    add(out, a, b, n) {
      const k = mems[group(out)].k
      ;(opts.naive ? k.add_naive : k.add)(ptr(out), ptr(a), ptr(b), n)
    },

    rotary(x, table, positions, T, H, D, R) {
      const g = group(x), k = mems[g].k
      const at = stage(g, positions, T)
      ;(opts.naive ? k.rotary_naive : k.rotary)(ptr(x), ptr(table), at, T, H, D, R)
    },

    attention(out, q, kCache, vCache, o: AttentionOptions) {
      const g = group(out), a = core.args
      if (!o.scratch) throw new RangeError('wasm device: attention needs o.scratch ([nHead, nCtx] f32)')
      a[0] = ptr(out)
      a[1] = ptr(q)
      a[2] = ptr(kCache)
      a[3] = ptr(vCache)
      a[4] = o.probs ? ptr(o.probs) : 0
      a[5] = ptr(o.scratch)
      a[6] = o.T
      a[7] = o.pos0
      a[8] = o.nHead
      a[9] = o.headDim
      a[10] = o.scale
      a[11] = o.window
      split(g, ATTENTION, 12, o.nHead, o.nHead * o.T * (o.pos0 + o.T) * o.headDim)
    },

    logProbs(out, logits, targets, T, V, greedy) {
      const g = group(out), a = core.args
      a[0] = ptr(out)
      a[1] = greedy ? ptr(greedy) : 0
      a[2] = ptr(logits)
      a[3] = stage(g, targets, T)
      a[4] = T
      a[5] = V
      split(g, LOGPROBS, 6, T, T * V * 8)
    },
  }
  return dev
}

/**
 * The arena's WasmOutOfMemoryError (an allocation past 4 GiB, or a memory the host would not grow) and a
 * new memory the host would not back (RangeError) as a ResourceError; anything else is rethrown.
 */
function outOfMemory(e: unknown): unknown {
  if (!(e instanceof WasmOutOfMemoryError) && !(e instanceof RangeError)) return e
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`
  const alloc = e instanceof WasmOutOfMemoryError
  return new ResourceError(
    {
      where: 'wasm device',
      what: 'out of memory',
      expected: alloc ? `at most ${mib(e.left)} (${e.left} bytes) left in this 4 GiB wasm32 memory` : 'room for another 4 GiB wasm32 memory',
      found: alloc ? `${mib(e.requested)} (${e.requested} bytes) requested` : e.message,
      hint: 'pass a smaller --max-context (maxContext), fewer sequences, or --dtype bf16 / q8 for smaller weights',
    },
    { cause: e },
  )
}
