// The WASM-SIMD kernels of @refgpt/wasm, SIMD and _naive, against plain float64 references
// computed here; bitwise independence of the thread count / row split; the pool; memories > 2 GiB.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import {
  CHUNKS_PER_THREAD, actBytes, createWasmCore, groupRows16, groupRowsF32, instantiateKernels, loadKernelModule, splitGrain,
  type KernelExports, type SplitKernelName, type WasmCore, type WasmMemory,
} from '@refgpt/wasm'
import { groupedBlock, rng } from './helpers.js'
import { f32ToBf16Array, f32ToF16Array } from '@refgpt/core'

// --- helpers -------------------------------------------------------------------------------------

const randn = (r: () => number, n: number, scale = 1) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale)

/** IEEE half bits -> number (independent of the kernels' bit tricks). */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023
  if (e === 0) return s * m * 2 ** -24
  if (e === 31) return m ? NaN : s * Infinity
  return s * 2 ** (e - 15) * (1 + m / 1024)
}
/** Random finite halves: +-, exponents 2^-7 .. 2^2, about 5% subnormal (and some zeros). */
function randHalfs(r: () => number, n: number): Uint16Array {
  return Uint16Array.from({ length: n }, () => {
    const e = r() < 0.05 ? 0 : 8 + Math.floor(r() * 10)
    return (r() < 0.5 ? 0x8000 : 0) | (e << 10) | Math.floor(r() * 1024)
  })
}
const bf16ToFloat = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]
function randBf16(r: () => number, n: number): Uint16Array {
  return Uint16Array.from({ length: n }, () => (r() < 0.5 ? 0x8000 : 0) | ((118 + Math.floor(r() * 10)) << 7) | Math.floor(r() * 128))
}

/** The q8 format's quantizer in plain JS (f32 arithmetic via Math.fround). */
function quantizeJS(w: Float32Array, N: number, K: number) {
  const Kp = Math.ceil(K / 32) * 32, nb = Kp / 32
  const q = new Int8Array(N * Kp), scales = new Float32Array(N * nb)
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nb; b++) {
      const k0 = b * 32, k1 = Math.min(k0 + 32, K)
      let amax = 0
      for (let k = k0; k < k1; k++) amax = Math.max(amax, Math.abs(w[n * K + k]))
      const scale = Math.fround(amax / 127)
      scales[n * nb + b] = scale
      if (scale === 0) continue
      for (let k = k0; k < k1; k++) {
        const v = Math.fround(w[n * K + k] / scale)
        const t = Math.trunc(v), d = v - t
        const r = d >= 0.5 ? t + 1 : d <= -0.5 ? t - 1 : t
        q[n * Kp + k] = Math.max(-127, Math.min(127, r))
      }
    }
  }
  return { q, scales, Kp }
}

/** f32g: f32 weights in row groups (matmul_f32g / embed_f32g: what the wasm device keeps for inference). */
type DType = 'f32' | 'f32g' | 'f16' | 'bf16' | 'q8'
const DTYPES: DType[] = ['f32', 'f32g', 'f16', 'bf16', 'q8']
/**
 * The matmuls compared with a float64 product of x and the widened weights. q8 (and q4) matmuls quantize x
 * too and follow their own bitwise contract (gemm_q8.ts): test/q8.test.ts checks them against the js device.
 */
const MATMUL_DTYPES: DType[] = ['f32', 'f32g', 'f16', 'bf16']

/** A weight [N, K] in a storage dtype: its bytes and its widened f32 values (what the kernels must use). */
interface Weight { dtype: DType; N: number; K: number; data: Uint8Array; scales?: Float32Array; widened: Float32Array }
function makeWeight(dtype: DType, N: number, K: number, seed: number): Weight {
  const r = rng(seed)
  if (dtype === 'f32' || dtype === 'f32g') { const w = randn(r, N * K); return { dtype, N, K, data: new Uint8Array(w.buffer), widened: w } }
  if (dtype === 'f16') { const h = randHalfs(r, N * K); return { dtype, N, K, data: new Uint8Array(h.buffer), widened: Float32Array.from(h, halfToFloat) } }
  if (dtype === 'bf16') { const h = randBf16(r, N * K); return { dtype, N, K, data: new Uint8Array(h.buffer), widened: Float32Array.from(h, bf16ToFloat) } }
  const w = randn(r, N * K)
  const { q, scales, Kp } = quantizeJS(w, N, K)
  const widened = new Float32Array(N * K)
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) widened[n * K + k] = Math.fround(q[n * Kp + k] * scales[n * (Kp / 32) + (k >> 5)])
  return { dtype, N, K, data: new Uint8Array(q.buffer), scales, widened }
}

/**
 * q8 weights as the kernels keep them (quant.ts, "q8 / q4 layout"): K chunks of 64 blocks (chunk c at
 * rows * 64c * bb bytes); in a chunk, rows in groups of 4 (the last one smaller) at 4g * cb * bb, the
 * blocks of a group's R rows interleaved: the chunk's block b of the group's row r at (b R + r) * bb.
 * grouped() makes that order from row-major bytes (bb = 32 for the int8 values, 4 for the scales).
 */
function grouped(rowMajor: Uint8Array, rows: number, blocks: number, bb: number): Uint8Array {
  const out = new Uint8Array(rowMajor.length)
  for (let n = 0; n < rows; n++) {
    for (let b = 0; b < blocks; b++)
      out.set(rowMajor.subarray((n * blocks + b) * bb, (n * blocks + b + 1) * bb), groupedBlock(n, b, rows, blocks) * bb)
  }
  return out
}
const bytesOf = (a: Float32Array | Int8Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
/** A q8 table's values and scales placed in the row-group layout (other dtypes: as they are). */
function putTable(mem: WasmMemory, w: Weight, r0 = 0, r1 = w.N): { tp: number; sp: number } {
  const nb = Math.ceil(w.K / 32), rowBytes = w.dtype === 'q8' ? nb * 32 : (w.dtype === 'f32' || w.dtype === 'f32g' ? 4 : 2) * w.K
  const data = w.data.subarray(r0 * rowBytes, r1 * rowBytes)
  if (w.dtype === 'f32g') { // f32 in row groups (K a multiple of 8), placed by the host-side groupRowsF32
    const values = new Float32Array(data.slice().buffer)
    return { tp: putF32(mem, groupRowsF32(values, r1 - r0, w.K) as Float32Array), sp: 0 }
  }
  if (w.dtype === 'f16' || w.dtype === 'bf16') { // 16-bit weights: quant.ts's row groups (K a multiple of 8)
    const bits = new Uint16Array(data.slice().buffer)
    return { tp: putBytes(mem, new Uint8Array(groupRows16(bits, r1 - r0, w.K).buffer)), sp: 0 }
  }
  if (w.dtype !== 'q8') return { tp: putBytes(mem, data), sp: 0 }
  return {
    tp: putBytes(mem, grouped(data, r1 - r0, nb, 32)),
    sp: putBytes(mem, grouped(bytesOf(w.scales!.subarray(r0 * nb, r1 * nb)), r1 - r0, nb, 4)),
  }
}

function putBytes(mem: WasmMemory, bytes: Uint8Array): number {
  const p = mem.alloc(bytes.length, 16)
  mem.u8(p, bytes.length).set(bytes)
  return p
}
const putF32 = (mem: WasmMemory, a: Float32Array) => putBytes(mem, new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
const putI32 = (mem: WasmMemory, a: Int32Array) => putBytes(mem, new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
const getF32 = (mem: WasmMemory, p: number, n: number) => mem.f32(p, n).slice()

/** Pointers of one matmul problem placed in a memory. */
interface MM { out: number; x: number; w: number; scales: number; b: number; T: number; K: number; N: number; dtype: DType }
function placeMatmul(mem: WasmMemory, w: Weight, x: Float32Array, b: Float32Array | null, T: number): MM {
  const { tp, sp } = putTable(mem, w)
  return {
    out: mem.alloc(T * w.N * 4), x: putF32(mem, x), w: tp,
    scales: sp, b: b ? putF32(mem, b) : 0, T, K: w.K, N: w.N, dtype: w.dtype,
  }
}
/** Calls a matmul kernel directly on rows [n0, n1) (q8: the activations quantized first, into a new buffer). */
function callMatmul(k: KernelExports, p: MM, n0: number, n1: number, naive = false, mem?: WasmMemory) {
  const sfx = naive ? '_naive' : ''
  if (p.dtype === 'q8') {
    const xa = mem!.alloc(actBytes(p.T, p.K))
    k.quantize_act(xa, p.x, p.T, p.K, 0)
    ;(naive ? k.matmul_q8_naive : k.matmul_q8)(n0, n1, p.out, xa, p.w, p.scales, p.b, p.T, p.K, p.N)
  } else k[`matmul_${p.dtype}${sfx}` as 'matmul_f32'](n0, n1, p.out, p.x, p.w, p.b, p.T, p.K, p.N)
}
/** Runs a matmul split across the core's threads (q8: the activations quantized first, on this thread). */
function runMatmul(core: WasmCore, m: number, p: MM) {
  const a = core.args
  if (p.dtype === 'q8') {
    const xa = core.memories[m].alloc(actBytes(p.T, p.K))
    core.kernels(m).quantize_act(xa, p.x, p.T, p.K, 0)
    a[0] = p.out; a[1] = xa; a[2] = p.w; a[3] = p.scales; a[4] = p.b; a[5] = p.T; a[6] = p.K; a[7] = p.N; core.run(m, 'matmul_q8', 8, p.N)
  } else { a[0] = p.out; a[1] = p.x; a[2] = p.w; a[3] = p.b; a[4] = p.T; a[5] = p.K; a[6] = p.N; a[7] = 0; core.run(m, `matmul_${p.dtype}` as SplitKernelName, 7, p.N) }
}

/** float64 reference out[T, N] and the error scale sum |x w| + |b| per element. */
function matmulRef(x: Float32Array, w: Float32Array, b: Float32Array | null, T: number, K: number, N: number) {
  const out = new Float64Array(T * N), mag = new Float64Array(T * N)
  for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
    let s = b ? b[n] : 0, m = b ? Math.abs(b[n]) : 0
    for (let k = 0; k < K; k++) { const p = x[t * K + k] * w[n * K + k]; s += p; m += Math.abs(p) }
    out[t * N + n] = s; mag[t * N + n] = m
  }
  return { out, mag }
}
function assertNear(got: ArrayLike<number>, ref: ArrayLike<number>, tol: (i: number) => number, label: string) {
  assert.is(got.length, ref.length, `${label}: length`)
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i])
    if (!(d <= tol(i))) assert.unreachable(`${label}: [${i}] got ${got[i]}, expected ${ref[i]} (|diff| ${d.toExponential(2)} > ${tol(i).toExponential(2)})`)
  }
}
function assertBitwise(a: Float32Array, b: Float32Array, label: string) {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length)
  assert.is(ua.length, ub.length, `${label}: length`)
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.unreachable(`${label}: [${i}] ${a[i]} !== ${b[i]}`)
}

let core1: WasmCore, core2: WasmCore, core3: WasmCore

// --- matmul ----------------------------------------------------------------------------------------

const gemm = suite('wasm kernels: matmul')
gemm.before(async () => {
  core1 = await createWasmCore({ threads: 1 })
  core2 = await createWasmCore({ threads: 2 })
  core3 = await createWasmCore({ threads: 3 })
})

gemm('every dtype, SIMD and naive, at small odd shapes against float64 (every tile path)', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  let seed = 1
  for (const dtype of MATMUL_DTYPES) for (const K of [1, 3, 36, 37, 128, 144]) for (const N of [1, 7, 33]) {
    const w = makeWeight(dtype, N, K, seed++)
    for (const T of [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]) {
      const mark = mem.mark()
      const r = rng(seed++)
      const x = randn(r, T * K), b = T % 2 ? randn(r, N) : null
      const ref = matmulRef(x, w.widened, b, T, K, N)
      const p = placeMatmul(mem, w, x, b, T)
      for (const naive of [false, true]) {
        mem.f32(p.out, T * N).fill(NaN)
        callMatmul(k, p, 0, N, naive)
        assertNear(getF32(mem, p.out, T * N), ref.out, (i) => 1e-5 * ref.mag[i] + 1e-30, `matmul_${dtype}${naive ? '_naive' : ''} K=${K} N=${N} T=${T}`)
      }
      mem.release(mark)
    }
  }
})

gemm('every dtype at a real-ish shape (K=768, N=64, T=4 and T=1)', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  for (const dtype of MATMUL_DTYPES) for (const T of [4, 1]) {
    const mark = mem.mark()
    const w = makeWeight(dtype, 64, 768, 99), r = rng(7)
    const x = randn(r, T * 768), b = randn(r, 64)
    const ref = matmulRef(x, w.widened, b, T, 768, 64)
    const p = placeMatmul(mem, w, x, b, T)
    for (const naive of [false, true]) {
      callMatmul(k, p, 0, 64, naive)
      assertNear(getF32(mem, p.out, T * 64), ref.out, (i) => 1e-5 * ref.mag[i], `matmul_${dtype}${naive ? '_naive' : ''} 768x64 T=${T}`)
    }
    mem.release(mark)
  }
})

gemm('results are bitwise identical for any row split, thread count (1, 2, 3) and T', () => {
  for (const dtype of MATMUL_DTYPES) for (const [K, N, T] of [[144, 33, 7], [37, 19, 13], [256, 40, 1], [36, 9, 8]]) {
    const w = makeWeight(dtype, N, K, 5), r = rng(6)
    const x = randn(r, T * K), b = randn(r, N)
    const results: Float32Array[] = []
    for (const core of [core1, core2, core3]) {
      const mem = core.memories[0], mark = mem.mark()
      const p = placeMatmul(mem, w, x, b, T)
      runMatmul(core, 0, p)
      results.push(getF32(mem, p.out, T * N))
      mem.release(mark)
    }
    const label = `matmul_${dtype} K=${K} N=${N} T=${T}`
    assertBitwise(results[1], results[0], `${label} threads 2 vs 1`)
    assertBitwise(results[2], results[0], `${label} threads 3 vs 1`)
    // odd splits on one thread
    const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
    const p = placeMatmul(mem, w, x, b, T)
    for (const cuts of [[1, 6], [3], [2, 5, 11], [N - 1]]) {
      mem.f32(p.out, T * N).fill(NaN)
      const edges = [0, ...cuts.filter((c) => c > 0 && c < N), N]
      for (let i = 0; i + 1 < edges.length; i++) callMatmul(k, p, edges[i], edges[i + 1])
      assertBitwise(getF32(mem, p.out, T * N), results[0], `${label} split ${edges}`)
    }
    // token by token (T = 1 calls) gives the same rows as the batched call
    for (let t = 0; t < T; t++) {
      const p1 = placeMatmul(mem, w, x.subarray(t * K, (t + 1) * K), b, 1)
      callMatmul(k, p1, 0, N)
      assertBitwise(getF32(mem, p1.out, N), results[0].subarray(t * N, (t + 1) * N), `${label} token ${t} alone`)
    }
    mem.release(mark)
  }
})

gemm('store_half rounds f32 to f16 / bf16 bits as io/dtype.ts does, into the row groups, a chunk of rows at a time', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  // hand-checked cases (bits in, [bf16, f16] out): ties to even, carries, overflow, subnormals, NaN payloads
  const cases: [number, number, number][] = [
    [0x3f808000, 0x3f80, 0x3c04], // 1 + 2^-8: bf16 tie, to even (down); f16 1 + 2^-8 is exact (0x3c04)
    [0x3f818000, 0x3f82, 0x3c0c], // 1 + 3 * 2^-8: bf16 tie, to even (up)
    [0x477fefff, 0x4780, 0x7bff], // just below 65520: f16 65504 (max), bf16 rounds up a binade
    [0x477ff000, 0x4780, 0x7c00], // 65520: f16 overflows to inf
    [0x7f7fffff, 0x7f80, 0x7c00], // f32 max: bf16 rounds to inf
    [0x33000000, 0x3300, 0x0000], // 2^-25: half the smallest f16 subnormal, a tie: to even (0)
    [0x33400000, 0x3340, 0x0001], // 1.5 * 2^-25: up to the smallest subnormal
    [0x387fc000, 0x3880, 0x03ff], // 1023 * 2^-24: f16's largest subnormal, exact (bf16 rounds up)
    [0x387fe000, 0x3880, 0x0400], // 1023.5 * 2^-24: a tie, to even: f16's smallest normal
    [0x80000001, 0x8000, 0x8000], // -(smallest f32 subnormal)
    [0x7fc00001, 0x7fc0, 0x7e00], // quiet NaN
    [0xff800001, 0xffc0, 0xfe00], // signalling NaN, negative: quiet, sign kept
    [0x7fa00000, 0x7fe0, 0x7f00], // NaN payload bits kept (top ones)
    [0xff800000, 0xff80, 0xfc00], // -inf
  ]
  for (const [f16, col] of [[0, 1], [1, 2]] as const) {
    const src = putBytes(mem, new Uint8Array(new Uint32Array(cases.map((c) => c[0])).buffer))
    const dst = mem.alloc(2 * cases.length)
    k.store_half(dst, src, cases.length, 1, 0, cases.length, f16) // K = 1: rows in order
    assert.equal([...new Uint16Array(mem.buffer, dst, cases.length)], cases.map((c) => c[col]), f16 ? 'f16' : 'bf16')
  }
  // random bit patterns (every exponent, NaN / inf / subnormal included) and values near the ties, against
  // f32ToF16Array / f32ToBf16Array + groupRows16, for the SIMD and the naive kernel, converted in two chunks
  for (const [N, K] of [[4, 8], [7, 24], [5, 13], [9, 2048], [1, 5]]) {
    const r = rng(N * K), u = new Uint32Array(N * K)
    for (let i = 0; i < u.length; i++) {
      const x = (r() * 2 ** 32) >>> 0
      u[i] = r() < 0.5 ? x : (x & ~0xffff) | (r() < 0.5 ? 0x8000 : 0x1000 | (x & 0x1fff)) // ties and near-ties
    }
    for (let i = 0; i < cases.length && i < u.length; i++) u[i * 3 % u.length] = cases[i][0]
    const data = new Float32Array(u.buffer)
    for (const f16 of [0, 1]) {
      const want = groupRows16(f16 ? f32ToF16Array(data) : f32ToBf16Array(data), N, K)
      for (const fn of [k.store_half, k.store_half_naive]) {
        const dst = mem.alloc(2 * N * K)
        const cut = N >> 1
        for (const [r0, r1] of [[0, cut], [cut, N]]) fn(dst, putBytes(mem, new Uint8Array(u.buffer, 4 * r0 * K, 4 * (r1 - r0) * K)), N, K, r0, r1, f16)
        const got = new Uint16Array(mem.buffer, dst, N * K)
        for (let i = 0; i < N * K; i++) {
          if (got[i] !== want[i]) assert.unreachable(`${fn === k.store_half ? 'store_half' : 'store_half_naive'} ${f16 ? 'f16' : 'bf16'} N=${N} K=${K} at ${i}: 0x${got[i].toString(16)}, want 0x${want[i].toString(16)} (from f32 bits 0x${u[i].toString(16)})`)
        }
      }
    }
  }
  mem.release(mark)
})

gemm('f16_nonfinite finds inf / NaN halves anywhere; matmul_f16 with finite = 1 equals the watched tiles bit for bit', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const n of [1, 7, 8, 9, 64, 67]) {
    const h = randHalfs(rng(n), n).map((v) => v & 0xbbff) // exponents <= 30: finite
    const p = putBytes(mem, new Uint8Array(h.buffer))
    assert.is(k.f16_nonfinite(p, n), 0, `n=${n}: finite`)
    for (const [at, v] of [[0, 0x7c00], [n - 1, 0xfc00], [n >> 1, 0x7e01], [n - 1, 0x7bff]] as const) {
      const hv = h.slice(); hv[at] = v
      const q = putBytes(mem, new Uint8Array(hv.buffer))
      assert.is(k.f16_nonfinite(q, n), v === 0x7bff ? 0 : 1, `n=${n}: 0x${v.toString(16)} at ${at}`)
    }
  }
  // finite weights: the unwatched decode tile gives the watched one's bits (T = 1 and T = 7: the decode tile takes the last token)
  for (const [K, N] of [[40, 9], [768, 12], [36, 5], [37, 7]]) {
    const w = makeWeight('f16', N, K, K + N)
    assert.is(k.f16_nonfinite(putBytes(mem, w.data), N * K), 0)
    for (const T of [1, 7]) {
      const r = rng(T * K), x = randn(r, T * K), b = randn(r, N)
      const p = placeMatmul(mem, w, x, b, T)
      k.matmul_f16(0, N, p.out, p.x, p.w, p.b, T, K, N, 0, 0)
      const watched = getF32(mem, p.out, T * N)
      mem.f32(p.out, T * N).fill(NaN)
      k.matmul_f16(0, N, p.out, p.x, p.w, p.b, T, K, N, 0, 1)
      assertBitwise(getF32(mem, p.out, T * N), watched, `matmul_f16 finite K=${K} N=${N} T=${T}`)
    }
  }
  mem.release(mark)
})

gemm('matmul_f16 widens inf and NaN weights exactly (and still splits bitwise)', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  const N = 9, K = 40
  for (const T of [1, 2, 7]) {
    const r = rng(3)
    const h = randHalfs(r, N * K)
    h[2 * K + 5] = 0x7c00 // +inf in row 2
    h[6 * K + 17] = 0xfc00 // -inf in row 6
    h[7 * K + 38] = 0x7e00 // NaN in row 7 (the scalar tail)
    h[8 * K + 3] = 0x7bff // 65504, the largest finite half
    const widened = Float32Array.from(h, halfToFloat)
    const x = Float32Array.from(randn(r, T * K), (v) => v || 0.5)
    const ref = matmulRef(x, widened, null, T, K, N)
    const p = placeMatmul(mem, { dtype: 'f16', N, K, data: new Uint8Array(h.buffer), widened }, x, null, T)
    for (const naive of [false, true]) {
      callMatmul(k, p, 0, N, naive)
      const got = getF32(mem, p.out, T * N)
      for (let i = 0; i < T * N; i++) {
        if (Number.isNaN(ref.out[i])) assert.ok(Number.isNaN(got[i]), `f16 NaN [${i}]: ${got[i]}`)
        else if (!Number.isFinite(ref.out[i])) assert.is(got[i], ref.out[i], `f16 non-finite [${i}]`)
        else assert.ok(Math.abs(got[i] - ref.out[i]) <= 1e-5 * ref.mag[i], `f16 [${i}] ${got[i]} vs ${ref.out[i]}`)
      }
    }
    callMatmul(k, p, 0, N)
    const whole = getF32(mem, p.out, T * N)
    callMatmul(k, p, 0, 3); callMatmul(k, p, 3, 4); callMatmul(k, p, 4, N)
    assertBitwise(getF32(mem, p.out, T * N), whole, `f16 inf/NaN T=${T} split`)
  }
  mem.release(mark)
})

gemm('f32 in row groups: matmul_f32g equals matmul_f32 bit for bit; group_rows_f32 places and restores rows in place', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  for (const [K, N] of [[8, 1], [16, 4], [40, 5], [144, 33], [768, 10], [36, 7], [37, 6]]) {
    const mark = mem.mark()
    const w = makeWeight('f32', N, K, K + N), wg = { ...w, dtype: 'f32g' as const }, r = rng(K * N)
    // the kernel's in-place grouping gives the host-side order, and back gives the rows again
    const wp = putF32(mem, w.widened), tmp = mem.alloc(16 * K)
    k.group_rows_f32(wp, N, K, tmp, 0)
    assertBitwise(getF32(mem, wp, N * K), groupRowsF32(w.widened, N, K) as Float32Array, `group_rows_f32 K=${K} N=${N}`)
    if (K % 8 === 0 && N > 1) assert.ok(getF32(mem, wp, N * K).some((v, i) => v !== w.widened[i]), `K=${K} N=${N}: the order changed`)
    k.group_rows_f32(wp, N, K, tmp, 1)
    assertBitwise(getF32(mem, wp, N * K), w.widened, `group_rows_f32 back K=${K} N=${N}`)
    for (const T of [1, 2, 3, 8, 13]) {
      const x = randn(r, T * K), b = T % 2 ? randn(r, N) : null
      const p = placeMatmul(mem, w, x, b, T), pg = placeMatmul(mem, wg, x, b, T)
      for (const naive of [false, true]) {
        callMatmul(k, p, 0, N, naive)
        mem.f32(pg.out, T * N).fill(NaN)
        callMatmul(k, pg, 0, N, naive)
        assertBitwise(getF32(mem, pg.out, T * N), getF32(mem, p.out, T * N), `matmul_f32g${naive ? '_naive' : ''} vs matmul_f32 K=${K} N=${N} T=${T}`)
      }
    }
    mem.release(mark)
  }
})

gemm('decode tiles read ahead only inside the weight: weights that end where the memory ends give the same bits', () => {
  // The decode tiles load one i32 two pages ahead of their weight stream every 4 KiB (quant.ts read_ahead),
  // never past the weight's end: here every weight ends at the last byte of a 4 MiB memory, where one byte
  // more is a trap. The results must equal the same call on the weight placed elsewhere (core1), bit for bit.
  const W = globalThis.WebAssembly
  const memory = new W.Memory({ initial: 64, maximum: 64, shared: true })
  const k = instantiateKernels(loadKernelModule(), memory)
  const end = memory.buffer.byteLength, low = Math.ceil(k.heap_base() / 64) * 64 + 64
  const mem = core1.memories[0], k1 = core1.kernels(0)
  const u8 = new Uint8Array(memory.buffer)
  let seed = 900
  for (const dtype of DTYPES) for (const [N, K] of [[8, 1024], [12, 2048], [5, 520], [4, 24]]) for (const T of [1, 3]) {
    const mark = mem.mark()
    const w = makeWeight(dtype, N, K, seed++)
    const x = randn(rng(seed++), T * K)
    const p = placeMatmul(mem, w, x, null, T)
    callMatmul(k1, p, 0, N, false, mem)
    const want = getF32(mem, p.out, T * N)
    const wBytes = dtype === 'q8' ? N * Math.ceil(K / 32) * 32 : N * K * (dtype === 'f32' || dtype === 'f32g' ? 4 : 2)
    const wp = end - wBytes
    u8.set(mem.u8(p.w, wBytes), wp)
    const xp = low, out = xp + T * K * 4, xa = out + T * N * 4, sp = xa + actBytes(T, K)
    new Float32Array(memory.buffer, xp, T * K).set(x)
    if (dtype === 'q8') {
      const sBytes = N * Math.ceil(K / 32) * 4
      u8.set(mem.u8(p.scales, sBytes), sp)
      k.quantize_act(xa, xp, T, K, 0)
      k.matmul_q8(0, N, out, xa, wp, sp, 0, T, K, N)
    } else k[`matmul_${dtype}` as 'matmul_f32'](0, N, out, xp, wp, 0, T, K, N)
    assertBitwise(new Float32Array(memory.buffer, out, T * N).slice(), want, `matmul_${dtype} N=${N} K=${K} T=${T} at the memory's end`)
    mem.release(mark)
  }
})

gemm('quantize_q8 matches the JS quantizer bit for bit (padding zeros, all-zero blocks)', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const [N, K] of [[1, 1], [3, 31], [5, 32], [4, 33], [7, 100], [2, 768], [6, 2100]]) {
    const w = randn(rng(N * K), N * K, 3)
    if (K >= 64) w.fill(0, 32, 64) // an all-zero block in row 0 (scale 0)
    w[0] = 0.5 * (Math.abs(w[1]) || 1) // some ties are likely at small K; the JS quantizer handles them the same way
    const js = quantizeJS(w, N, K)
    const src = putF32(mem, w)
    const wq = mem.alloc(N * js.Kp), sc = mem.alloc((N * js.Kp) / 8)
    mem.u8(wq, N * js.Kp).fill(0x55)
    k.quantize_q8(wq, sc, src, N, K, 0, N)
    assert.equal(Array.from(mem.i8(wq, N * js.Kp)), Array.from(new Int8Array(grouped(bytesOf(js.q), N, js.Kp / 32, 32).buffer)), `q8 values N=${N} K=${K}`)
    assertBitwise(getF32(mem, sc, (N * js.Kp) / 32), new Float32Array(grouped(bytesOf(js.scales), N, js.Kp / 32, 4).buffer), `q8 scales N=${N} K=${K}`)
  }
  // exact halves round away from zero
  const w = Float32Array.from({ length: 32 }, (_, i) => (i === 0 ? 127 : i % 2 ? i + 0.5 : -(i + 0.5)))
  const src = putF32(mem, w), wq = mem.alloc(32), sc = mem.alloc(4)
  k.quantize_q8(wq, sc, src, 1, 32, 0, 1)
  assert.is(mem.f32(sc, 1)[0], 1)
  assert.equal(Array.from(mem.i8(wq, 4)), [127, 2, -3, 4])
  mem.release(mark)
})

gemm.run()

// --- element-wise and row kernels ---------------------------------------------------------------------

const rows = suite('wasm kernels: embed, layernorm, activations, softmax, logprobs, rotary')

rows('embed_{f32,f16,bf16,q8} (and _naive): exact row gathers, store and accumulate', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const dtype of DTYPES) for (const C of [1, 5, 36, 37, 64]) {
    const V = 11, T = 6
    const tab = makeWeight(dtype, V, C, C)
    const ids = Int32Array.from({ length: T }, (_, i) => (i * 7 + 3) % V)
    const base = randn(rng(C + 1), T * C)
    const { tp, sp } = putTable(mem, tab), ip = putI32(mem, ids)
    for (const [acc, sfx] of [[0, ''], [1, ''], [0, '_naive'], [1, '_naive']] as const) {
      const out = putF32(mem, base)
      if (dtype === 'q8') (sfx ? k.embed_q8_naive : k.embed_q8)(out, tp, sp, ip, T, C, acc, V)
      else k[`embed_${dtype}${sfx}` as 'embed_f32'](out, tp, ip, T, C, acc, V)
      const exp = new Float32Array(T * C)
      for (let t = 0; t < T; t++) for (let c = 0; c < C; c++) {
        const v = tab.widened[ids[t] * C + c]
        exp[t * C + c] = acc ? Math.fround(base[t * C + c] + v) : v
      }
      assertBitwise(getF32(mem, out, T * C), exp, `embed_${dtype}${sfx} C=${C} accumulate=${acc}`)
    }
  }
  mem.release(mark)
})

/** Calls an embed kernel (any dtype, SIMD or _naive); rows: the table's (q8 row groups need it). */
function callEmbed(k: KernelExports, dtype: DType, naive: boolean, out: number, tp: number, sp: number, ip: number, T: number, C: number, acc: number, rows: number) {
  if (dtype === 'q8') (naive ? k.embed_q8_naive : k.embed_q8)(out, tp, sp, ip, T, C, acc, rows)
  else k[`embed_${dtype}${naive ? '_naive' : ''}` as 'embed_f32'](out, tp, ip, T, C, acc, rows)
}

rows('embed_{f32,f16,bf16,q8} (and _naive): a negative id is a zero row (stores 0, adds nothing); split tables gather range by range', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const dtype of DTYPES) for (const C of [1, 5, 36, 37, 64]) {
    const V = 11, T = 7
    const tab = makeWeight(dtype, V, C, 50 + C)
    const ids = Int32Array.from([3, -1, 10, -7, 0, -2147483648, 5])
    const base = randn(rng(C + 2), T * C)
    base[1 * C] = -0 // a -0 in a zero-row position stays -0 when accumulating
    base[3 * C + C - 1] = NaN
    const { tp, sp } = putTable(mem, tab), ip = putI32(mem, ids)
    for (const naive of [false, true]) for (const acc of [0, 1]) {
      const label = `embed_${dtype}${naive ? '_naive' : ''} C=${C} accumulate=${acc}`
      const out = putF32(mem, base)
      callEmbed(k, dtype, naive, out, tp, sp, ip, T, C, acc, V)
      const exp = new Float32Array(T * C)
      for (let t = 0; t < T; t++) for (let c = 0; c < C; c++) {
        const v = ids[t] < 0 ? 0 : tab.widened[ids[t] * C + c], b = base[t * C + c]
        exp[t * C + c] = ids[t] < 0 ? (acc ? b : 0) : acc ? Math.fround(b + v) : v
      }
      assertBitwise(getF32(mem, out, T * C), exp, label)
    }
    // the table split in row ranges [0, 4), [4, 9), [9, 11), each in its own buffer: a storing call
    // for the first range, accumulating calls for the others, ids outside a range set to -1
    const whole = putF32(mem, base)
    callEmbed(k, dtype, false, whole, tp, sp, ip, T, C, 0, V)
    for (const naive of [false, true]) {
      const out = putF32(mem, base)
      for (const [i, [r0, r1]] of [[0, 4], [4, 9], [9, 11]].entries()) {
        const { tp: part, sp: partScales } = putTable(mem, tab, r0, r1) // each part its own buffer (q8: its own row groups)
        const local = putI32(mem, Int32Array.from(ids, (id) => (id >= r0 && id < r1 ? id - r0 : -1)))
        callEmbed(k, dtype, naive, out, part, partScales, local, T, C, i === 0 ? 0 : 1, r1 - r0)
      }
      assertBitwise(getF32(mem, out, T * C), getF32(mem, whole, T * C), `embed_${dtype}${naive ? '_naive' : ''} C=${C} split table vs whole (negative ids: zero rows)`)
    }
  }
  mem.release(mark)
})

rows('layernorm (and _naive) against float64, in place too', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const C of [1, 3, 36, 37, 768]) {
    const T = 3, r = rng(C)
    const x = Float32Array.from(randn(r, T * C, 2), (v, i) => v + (i % 5)), g = randn(r, C), b = randn(r, C)
    const eps = 1e-5
    const ref = new Float64Array(T * C)
    for (let t = 0; t < T; t++) {
      let mean = 0
      for (let c = 0; c < C; c++) mean += x[t * C + c]
      mean /= C
      let v = 0
      for (let c = 0; c < C; c++) v += (x[t * C + c] - mean) ** 2
      const inv = 1 / Math.sqrt(v / C + eps)
      for (let c = 0; c < C; c++) ref[t * C + c] = (x[t * C + c] - mean) * inv * g[c] + b[c]
    }
    const gp = putF32(mem, g), bp = putF32(mem, b)
    for (const fn of ['layernorm', 'layernorm_naive'] as const) {
      const xp = putF32(mem, x), op = mem.alloc(T * C * 4)
      k[fn](op, xp, gp, bp, T, C, eps)
      assertNear(getF32(mem, op, T * C), ref, (i) => 2e-5 * Math.max(1, Math.abs(ref[i])), `${fn} C=${C}`)
      k[fn](xp, xp, gp, bp, T, C, eps)
      assertBitwise(getF32(mem, xp, T * C), getF32(mem, op, T * C), `${fn} C=${C} in place`)
    }
  }
  mem.release(mark)
})

/** HF's gelu_new with Math.tanh, and gelu with the js device's erf. */
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI)
function erf(x: number): number {
  const z = Math.abs(x), t = 1 / (1 + 0.5 * z)
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
  return x >= 0 ? 1 - r : r - 1
}
const ACTS = {
  gelu_tanh: (x: number) => 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))),
  gelu_erf: (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  relu: (x: number) => (x > 0 ? x : 0),
  silu: (x: number) => x / (1 + Math.exp(-x)),
  quick_gelu: (x: number) => x / (1 + Math.exp(-1.702 * x)),
}

rows('activations (and _naive) against float64; gelu_tanh within 2e-7 of Math.tanh gelu_new for |x| < 10', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  const r = rng(11)
  const xs = Float32Array.from({ length: 4001 }, (_, i) => (i < 2001 ? -10 + i / 100 : (r() * 2 - 1) * 10))
  const specials = Float32Array.from([0, -0, 1e-30, -1e-30, 1e-8, -1e-8, 20, -20, 50, -50, 100, -100, 1e6, -1e6, Infinity, -Infinity, NaN])
  const all = new Float32Array(xs.length + specials.length)
  all.set(xs); all.set(specials, xs.length)
  const n = all.length
  const xp = putF32(mem, all), op = mem.alloc(n * 4)
  for (const [name, f] of Object.entries(ACTS)) {
    for (const fn of [name, `${name}_naive`] as const) {
      k[fn as 'relu'](op, xp, n)
      const got = getF32(mem, op, n)
      for (let i = 0; i < n; i++) {
        const x = all[i], ref = f(x)
        if (Number.isNaN(ref)) { assert.ok(Number.isNaN(got[i]), `${fn}(${x}) = ${got[i]}, expected NaN`); continue }
        if (!Number.isFinite(ref)) { assert.is(got[i], ref, `${fn}(${x})`); continue }
        // the f32 result is at best the rounded reference; 2e-7 on top of that rounding (relative above 1)
        const tol = Math.abs(Math.fround(ref) - ref) + 2e-7 * Math.max(1, Math.abs(ref))
        if (!(Math.abs(got[i] - ref) <= tol)) assert.unreachable(`${fn}(${x}) = ${got[i]}, expected ${ref} (diff ${Math.abs(got[i] - ref)})`)
      }
    }
  }
  // the documented gelu_tanh bound, stated plainly: |x| < 10, |got - gelu_new| <= 2e-7 + half an f32 ulp of the result
  k.gelu_tanh(op, xp, xs.length)
  let worst = 0
  const got = getF32(mem, op, xs.length)
  for (let i = 0; i < xs.length; i++) if (Math.abs(xs[i]) < 10) worst = Math.max(worst, Math.abs(got[i] - ACTS.gelu_tanh(xs[i])) - Math.abs(Math.fround(ACTS.gelu_tanh(xs[i])) - ACTS.gelu_tanh(xs[i])))
  assert.ok(worst <= 2e-7, `gelu_tanh worst excess error ${worst}`)
  // in place and add
  const a = randn(r, 37), b = randn(r, 37)
  const ap = putF32(mem, a), bp = putF32(mem, b)
  for (const fn of ['add', 'add_naive'] as const) {
    const o = mem.alloc(37 * 4)
    k[fn](o, ap, bp, 37)
    assertBitwise(getF32(mem, o, 37), Float32Array.from(a, (v, i) => v + b[i]), fn)
  }
  const cp = putF32(mem, a)
  k.gelu_tanh(cp, cp, 37)
  const o2 = mem.alloc(37 * 4)
  k.gelu_tanh(o2, ap, 37)
  assertBitwise(getF32(mem, cp, 37), getF32(mem, o2, 37), 'gelu_tanh in place')
  mem.release(mark)
})

rows('softmax (and _naive) against float64; -inf entries get exactly 0', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const n of [1, 3, 4, 37, 1000]) {
    const x = randn(rng(n), n, 8)
    if (n > 3) { x[1] = -Infinity; x[n - 1] = -Infinity }
    const m = Math.max(...x)
    const e = Array.from(x, (v) => Math.exp(v - m)), s = e.reduce((p, q) => p + q, 0)
    for (const fn of ['softmax', 'softmax_naive'] as const) {
      const p = putF32(mem, x)
      k[fn](p, n)
      const got = getF32(mem, p, n)
      assertNear(got, e.map((v) => v / s), (i) => 1e-6 * Math.max(1e-3, e[i] / s) + 1e-9, `${fn} n=${n}`)
      if (n > 3) { assert.is(got[1], 0); assert.is(got[n - 1], 0) }
    }
  }
  mem.release(mark)
})

/** float64 reference of logprobs: out[t] = x[t, target] - logsumexp(x[t, :]) (0 where target < 0). */
function logprobsRef(x: Float32Array, targets: Int32Array, T: number, V: number): Float64Array {
  const out = new Float64Array(T)
  for (let t = 0; t < T; t++) {
    if (targets[t] < 0) continue
    let m = -Infinity
    for (let j = 0; j < V; j++) m = Math.max(m, x[t * V + j])
    let s = 0
    for (let j = 0; j < V; j++) s += Math.exp(x[t * V + j] - m)
    out[t] = x[t * V + targets[t]] - m - Math.log(s)
  }
  return out
}
/** Logits [5, V] in +-20 with special rows: row 1 masked (-inf entries, never its max), row 3 with huge values. */
function logprobsCase(V: number, seed: number) {
  const T = 5, r = rng(seed)
  const x = randn(r, T * V, 20)
  const targets = Int32Array.from({ length: T }, () => Math.floor(r() * V))
  if (V >= 3) {
    for (let j = 0; j < V; j += 2) x[1 * V + j] = -Infinity // masked: every even entry
    x[1 * V + 1] = 5
    targets[1] = V > 3 ? 3 : 1
    x[3 * V + 0] = 1e30; x[3 * V + 2] = -3e38 // very large values
    targets[3] = 2
    targets[4] = -1 // no target
  }
  return { T, V, x, targets }
}
const LOGPROB_TOL = (ref: number) => 2e-5 * Math.max(1, Math.abs(ref))

rows('logprobs (and _naive) against float64: masked -inf entries, huge values, no-target rows; logits unchanged', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const V of [1, 3, 7, 50257]) {
    const { T, x, targets } = logprobsCase(V, V)
    const ref = logprobsRef(x, targets, T, V)
    const xp = putF32(mem, x), tp = putI32(mem, targets), op = mem.alloc(4 * T)
    const outs: Float32Array[] = []
    for (const fn of ['logprobs', 'logprobs_naive'] as const) {
      mem.f32(op, T).fill(NaN)
      k[fn](0, T, op, 0, xp, tp, T, V)
      const got = getF32(mem, op, T)
      outs.push(got)
      for (let t = 0; t < T; t++) {
        const d = Math.abs(got[t] - ref[t])
        if (!(d <= LOGPROB_TOL(ref[t]))) assert.unreachable(`${fn} V=${V} t=${t}: got ${got[t]}, expected ${ref[t]} (|diff| ${d.toExponential(2)})`)
      }
      if (V >= 3) assert.is(got[4], 0, `${fn} V=${V}: target -1 gives 0`)
      assertBitwise(getF32(mem, xp, T * V), x, `${fn} V=${V}: logits unchanged`)
      // one row at a time (any split) gives the same values
      mem.f32(op, T).fill(NaN)
      for (let t = T - 1; t >= 0; t--) k[fn](t, t + 1, op, 0, xp, tp, T, V)
      assertBitwise(getF32(mem, op, T), got, `${fn} V=${V}: row by row`)
    }
    // the SIMD and scalar versions differ at most in the order of an f64 sum
    for (let t = 0; t < T; t++) assert.ok(Math.abs(outs[0][t] - outs[1][t]) <= 1e-6 * Math.max(1, Math.abs(ref[t])), `logprobs vs _naive V=${V} t=${t}: ${outs[0][t]} vs ${outs[1][t]}`)
  }
  // a masked target gives -inf, an out-of-range target NaN, r1 is clamped to T
  const V = 9, x = randn(rng(4), 2 * V, 20)
  x[3] = -Infinity
  const xp = putF32(mem, x), tp = putI32(mem, Int32Array.from([3, V])), op = mem.alloc(4 * 3)
  for (const fn of ['logprobs', 'logprobs_naive'] as const) {
    mem.f32(op, 3).fill(7)
    k[fn](0, 3, op, 0, xp, tp, 2, V)
    const got = getF32(mem, op, 3)
    assert.is(got[0], -Infinity, `${fn}: masked target`)
    assert.ok(Number.isNaN(got[1]), `${fn}: target >= V gives NaN`)
    assert.is(got[2], 7, `${fn}: rows past T are not written`)
  }
  mem.release(mark)
})

/** float64 reference of the greedy flag: 1 when targets[t] is the first index of the row's maximum (torch.argmax). */
function greedyRef(x: Float32Array, targets: Int32Array, T: number, V: number): number[] {
  const out: number[] = []
  for (let t = 0; t < T; t++) {
    const tg = targets[t]
    if (tg < 0 || tg >= V) { out.push(0); continue }
    let best = 0, nan = false
    for (let j = 0; j < V; j++) {
      const v = x[t * V + j]
      if (Number.isNaN(v)) nan = true
      if (v > x[t * V + best]) best = j
    }
    out.push(!nan && best === tg ? 1 : 0)
  }
  return out
}

rows('logprobs (and _naive) greedy output: 1 exactly where the target is the first argmax (ties, NaN, no target); same log-probs; 0 = not written', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const V of [1, 3, 5, 8, 9, 50257]) {
    const r = rng(77 + V), T = 12
    const x = randn(r, T * V, 5)
    const targets = new Int32Array(T)
    for (let t = 0; t < T; t++) {
      let best = 0
      for (let j = 1; j < V; j++) if (x[t * V + j] > x[t * V + best]) best = j
      targets[t] = best // the argmax by default: greedy
    }
    if (V >= 3) {
      targets[1] = (targets[1] + 1) % V // not the argmax
      x[2 * V + V - 1] = x[2 * V + targets[2]]; if (targets[2] === V - 1) targets[2] = 0 // a later tie: still greedy iff target comes first
      const a = 0, b = V - 1; x[3 * V + a] = 100; x[3 * V + b] = 100; targets[3] = b // a tie, target second: not greedy
      x[4 * V + a] = 100; x[4 * V + b] = 100; targets[4] = a // a tie, target first: greedy
      x[5 * V + 1] = NaN // a NaN in the row: not greedy
      targets[6] = -1 // no target
      targets[7] = V // out of range
      for (let j = 0; j < V; j++) x[8 * V + j] = 2.5 // a constant row: only index 0 is greedy
      targets[8] = 0
      for (let j = 0; j < V; j++) x[9 * V + j] = 2.5
      targets[9] = V - 1
      x[10 * V + targets[10]] = Infinity // +inf target (the log-prob is NaN, the argmax is still the target)
    }
    const want = greedyRef(x, targets, T, V)
    if (V >= 3) assert.equal(want.slice(3, 10), [0, 1, 0, 0, 0, 1, 0], `V=${V}: the reference agrees with the cases`)
    const xp = putF32(mem, x), tp = putI32(mem, targets), op = mem.alloc(4 * T), gp = mem.alloc(4 * T), op0 = mem.alloc(4 * T)
    for (const fn of ['logprobs', 'logprobs_naive'] as const) {
      mem.f32(gp, T).fill(7)
      k[fn](0, T, op, gp, xp, tp, T, V)
      assert.equal(Array.from(getF32(mem, gp, T)), want, `${fn} V=${V}: greedy flags`)
      k[fn](0, T, op0, 0, xp, tp, T, V)
      assertBitwise(getF32(mem, op, T), getF32(mem, op0, T), `${fn} V=${V}: log-probs do not depend on the greedy output`)
      mem.f32(gp, T).fill(7)
      for (let t = T - 1; t >= 0; t--) k[fn](t, t + 1, op, gp, xp, tp, T, V)
      assert.equal(Array.from(getF32(mem, gp, T)), want, `${fn} V=${V}: greedy row by row`)
    }
    // through the pool: every thread count writes the same flags
    for (const core of [core1, core2, core3]) for (const fn of ['logprobs', 'logprobs_naive'] as const) {
      const m2 = core.memories[0], mk = m2.mark()
      const xq = putF32(m2, x), tq = putI32(m2, targets), oq = m2.alloc(4 * T), gq = m2.alloc(4 * T)
      m2.f32(gq, T).fill(7)
      const a = core.args
      a[0] = oq; a[1] = gq; a[2] = xq; a[3] = tq; a[4] = T; a[5] = V
      core.run(0, fn, 6, T)
      assert.equal(Array.from(getF32(m2, gq, T)), want, `${fn} V=${V} threads=${core.threads}: greedy through the pool`)
      m2.release(mk)
    }
  }
  mem.release(mark)
})

rows('rotary (and _naive): GPT-J interleaved pairs against the formula', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const [H, D, R] of [[3, 8, 8], [2, 16, 6], [4, 64, 32], [1, 10, 2]]) {
    const T = 5, nPos = 40, r = rng(D + R)
    const table = new Float32Array(nPos * R)
    for (let p = 0; p < nPos; p++) for (let i = 0; i < R / 2; i++) {
      const inv = Math.fround(1 / Math.fround(10000 ** Math.fround((2 * i) / R)))
      const ang = Math.fround(p * inv)
      table[p * R + 2 * i] = Math.cos(ang); table[p * R + 2 * i + 1] = Math.sin(ang)
    }
    const pos = Int32Array.from({ length: T }, () => Math.floor(r() * nPos))
    const x = randn(r, T * H * D)
    const ref = Float64Array.from(x)
    for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let i = 0; i < R / 2; i++) {
      const c = table[pos[t] * R + 2 * i], s = table[pos[t] * R + 2 * i + 1], o = t * H * D + h * D + 2 * i
      ref[o] = x[o] * c - x[o + 1] * s
      ref[o + 1] = x[o + 1] * c + x[o] * s
    }
    const tp = putF32(mem, table), pp = putI32(mem, pos)
    const outs: Float32Array[] = []
    for (const fn of ['rotary', 'rotary_naive'] as const) {
      const xp = putF32(mem, x)
      k[fn](xp, tp, pp, T, H, D, R)
      outs.push(getF32(mem, xp, x.length))
      assertNear(outs[outs.length - 1], ref, () => 3e-7, `${fn} H=${H} D=${D} R=${R}`)
    }
    assertBitwise(outs[0], outs[1], `rotary SIMD vs naive H=${H} D=${D} R=${R}`)
  }
  mem.release(mark)
})

rows.run()

// --- attention ---------------------------------------------------------------------------------------

const attn = suite('wasm kernels: attention')

interface AttnCase { T: number; pos0: number; H: number; D: number; window: number; scale: number }
function attentionRef(q: Float32Array, kc: Float32Array, vc: Float32Array, c: AttnCase) {
  const { T, pos0, H, D, window, scale } = c
  const C = H * D, nKeys = pos0 + T
  const out = new Float64Array(T * C), probs = new Float64Array(H * T * nKeys)
  for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) {
    const i = pos0 + t, first = window > 0 ? Math.max(0, i - window + 1) : 0
    const s: number[] = []
    for (let j = first; j <= i; j++) {
      let d = 0
      for (let e = 0; e < D; e++) d += q[t * C + h * D + e] * kc[j * C + h * D + e]
      s.push(d * scale)
    }
    const m = Math.max(...s), ex = s.map((v) => Math.exp(v - m)), sum = ex.reduce((a, b) => a + b, 0)
    for (let j = first; j <= i; j++) {
      const p = ex[j - first] / sum
      probs[(h * T + t) * nKeys + j] = p
      for (let e = 0; e < D; e++) out[t * C + h * D + e] += p * vc[j * C + h * D + e]
    }
  }
  return { out, probs }
}
function placeAttention(mem: WasmMemory, q: Float32Array, kc: Float32Array, vc: Float32Array, c: AttnCase, withProbs: boolean) {
  const nKeys = c.pos0 + c.T
  const probs = withProbs ? mem.alloc(c.H * c.T * nKeys * 4) : 0
  if (probs) mem.f32(probs, c.H * c.T * nKeys).fill(NaN)
  return { out: mem.alloc(c.T * c.H * c.D * 4), q: putF32(mem, q), kc: putF32(mem, kc), vc: putF32(mem, vc), probs, scratch: mem.alloc(c.H * nKeys * 4) }
}
const attnArgs = (p: ReturnType<typeof placeAttention>, c: AttnCase) =>
  [p.out, p.q, p.kc, p.vc, p.probs, p.scratch, c.T, c.pos0, c.H, c.D, c.scale, c.window] as const

attn('attention (and _naive) against float64: windows, pos0 > 0, probabilities, every d path', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  let seed = 100
  for (const D of [8, 37, 64]) for (const [T, pos0] of [[1, 0], [5, 0], [1, 9], [4, 6]]) for (const window of [0, 3]) {
    const c: AttnCase = { T, pos0, H: 3, D, window, scale: seed % 2 ? 1 / Math.sqrt(D) : 1 }
    const r = rng(seed++), C = c.H * D, nCtx = pos0 + T + 2
    const q = randn(r, T * C, 1.5), kc = randn(r, nCtx * C, 1.5), vc = randn(r, nCtx * C)
    const ref = attentionRef(q, kc, vc, c)
    for (const fn of ['attention', 'attention_naive'] as const) for (const withProbs of [true, false]) {
      const mark = mem.mark()
      const p = placeAttention(mem, q, kc, vc, c, withProbs)
      k[fn](0, c.H, ...attnArgs(p, c))
      const label = `${fn} D=${D} T=${T} pos0=${pos0} window=${window}`
      assertNear(getF32(mem, p.out, T * C), ref.out, (i) => 2e-6 * Math.max(1, Math.abs(ref.out[i])), label)
      if (withProbs) {
        const got = getF32(mem, p.probs, c.H * T * (pos0 + T))
        assertNear(got, ref.probs, (i) => 1e-5 * Math.max(1e-3, ref.probs[i]), `${label} probs`)
        for (let i = 0; i < got.length; i++) if (ref.probs[i] === 0) assert.is(got[i], 0, `${label} masked prob [${i}]`)
      }
      mem.release(mark)
    }
  }
})

attn('attention is bitwise identical for any head split and thread count (1, 2, 3)', () => {
  for (const c of [{ T: 7, pos0: 3, H: 5, D: 37, window: 0, scale: 0.2 }, { T: 1, pos0: 40, H: 4, D: 64, window: 16, scale: 0.125 }] as AttnCase[]) {
    const r = rng(c.D), C = c.H * c.D, nCtx = c.pos0 + c.T
    const q = randn(r, c.T * C), kc = randn(r, nCtx * C), vc = randn(r, nCtx * C)
    const outs: Float32Array[] = [], probs: Float32Array[] = []
    for (const core of [core1, core2, core3]) {
      const mem = core.memories[0], mark = mem.mark()
      const p = placeAttention(mem, q, kc, vc, c, true)
      attnArgs(p, c).forEach((v, i) => (core.args[i] = v))
      core.run(0, 'attention', 12, c.H)
      outs.push(getF32(mem, p.out, c.T * C)); probs.push(getF32(mem, p.probs, c.H * c.T * nCtx))
      mem.release(mark)
    }
    const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
    const p = placeAttention(mem, q, kc, vc, c, true)
    for (let h = 0; h < c.H; h++) k.attention(h, h + 1, ...attnArgs(p, c))
    outs.push(getF32(mem, p.out, c.T * C)); probs.push(getF32(mem, p.probs, c.H * c.T * nCtx))
    mem.release(mark)
    for (let i = 1; i < outs.length; i++) {
      assertBitwise(outs[i], outs[0], `attention out, variant ${i} vs threads=1`)
      assertBitwise(probs[i], probs[0], `attention probs, variant ${i} vs threads=1`)
    }
  }
})

attn.run()

// --- logprobs through the pool ----------------------------------------------------------------------

const lpPool = suite('wasm kernels: logprobs split across threads')

lpPool('logprobs (and _naive) through the pool (threads 1, 2, 3) equal the single-thread call bitwise', () => {
  for (const V of [7, 50257]) {
    const { T, x, targets } = logprobsCase(V, 1000 + V)
    for (const fn of ['logprobs', 'logprobs_naive'] as const) {
      const mem1 = core1.memories[0], mark1 = mem1.mark()
      const xp1 = putF32(mem1, x), tp1 = putI32(mem1, targets), op1 = mem1.alloc(4 * T)
      core1.kernels(0)[fn](0, T, op1, 0, xp1, tp1, T, V)
      const single = getF32(mem1, op1, T)
      mem1.release(mark1)
      for (const core of [core1, core2, core3]) {
        const mem = core.memories[0], mark = mem.mark()
        const xp = putF32(mem, x), tp = putI32(mem, targets), op = mem.alloc(4 * T)
        mem.f32(op, T).fill(NaN)
        const a = core.args
        a[0] = op; a[1] = 0; a[2] = xp; a[3] = tp; a[4] = T; a[5] = V
        core.run(0, fn, 6, T)
        assertBitwise(getF32(mem, op, T), single, `${fn} V=${V} threads=${core.threads}`)
        assertBitwise(getF32(mem, xp, T * V), x, `${fn} V=${V} threads=${core.threads}: logits unchanged`)
        mem.release(mark)
      }
    }
  }
})

lpPool.run()

// --- the core: pool, memories, probes -----------------------------------------------------------------

const pool = suite('wasm core: pool, memories, probes')

pool('the module exports exactly the kernels of the ABI (typed in KernelExports)', () => {
  const names = Object.keys(core1.kernels(0)).sort()
  const expected = [
    ...['f32', 'f32g', 'f16', 'bf16', 'q8', 'q4'].flatMap((d) => [`matmul_${d}`, `matmul_${d}_naive`, `embed_${d}`, `embed_${d}_naive`]),
    'group_rows_f32', 'f16_nonfinite', 'read_ahead_sink', 'store_half', 'store_half_naive', 'quantize_q8', 'quantize_q4', 'quantize_act', 'quantize_act_naive', 'layernorm', 'layernorm_naive', 'softmax', 'softmax_naive', 'logprobs', 'logprobs_naive',
    'attention', 'attention_naive', 'rotary', 'rotary_naive',
    ...['gelu_tanh', 'gelu_erf', 'relu', 'silu', 'quick_gelu', 'add'].flatMap((f) => [f, `${f}_naive`]),
    'probe_stream_read', 'probe_madd', 'touch_pages', 'heap_base',
    // training (kernels-train.test.ts)
    ...['layernorm_forward', 'layernorm_backward', 'matmul_backward_dx', 'matmul_backward_dw', 'embed_backward', 'attention_backward',
      'rotary_backward', 'crossentropy', ...['gelu_tanh', 'gelu_erf', 'relu', 'silu', 'quick_gelu'].map((f) => `${f}_backward`)].flatMap((f) => [f, `${f}_naive`]),
  ].sort()
  assert.equal(names, expected)
  assert.ok(core1.kernels(0).heap_base() <= core1.memories[0].base)
})

pool('probes: stream read sums the buffer, madd runs (split across threads)', () => {
  for (const core of [core1, core2]) {
    const mem = core.memories[0], mark = mem.mark()
    const n = 4096 + 12, data = Float32Array.from({ length: n }, (_, i) => (i % 7) - 3)
    const p = putF32(mem, data)
    const k = core.kernels(0)
    assert.is(k.probe_stream_read(0, n / 4, p, n * 4), data.reduce((a, b) => a + b, 0))
    assert.is(k.probe_stream_read(0, 1 << 30, p, 64), data.subarray(0, 16).reduce((a, b) => a + b, 0), 'clamped to bytes / 16')
    core.args[0] = p; core.args[1] = n * 4
    core.run(0, 'probe_stream_read', 2, n / 4)
    assert.ok(Number.isFinite(k.probe_madd(0, 2, 100)))
    core.args[0] = 100
    core.run(0, 'probe_madd', 1, 8)
    mem.release(mark)
  }
})

pool('split calls run in chunks that threads claim: whole row groups for matmuls, every row exactly once', () => {
  // the grain: about CHUNKS_PER_THREAD chunks a thread; a multiple of 4 rows for the forward matmuls
  assert.is(splitGrain('matmul_q8', 8192, 2), 8192 / (2 * CHUNKS_PER_THREAD))
  assert.is(splitGrain('matmul_bf16', 50257, 2) % 4, 0)
  assert.is(splitGrain('matmul_f32g', 6, 3), 4)
  assert.is(splitGrain('attention', 16, 2), 1)
  assert.is(splitGrain('matmul_backward_dw', 5, 2), 1)
  // every row of a split call is computed, at any thread count, as one thread computes it: out starts as NaN
  // (a row no chunk took stays NaN) and equals the single call over [0, N) bit for bit
  for (const core of [core2, core3]) for (const N of [1, 3, 4, 37, 130, 1029]) {
    const mem = core.memories[0], mark = mem.mark()
    const K = 24, w = makeWeight('f32g', N, K, N), x = randn(rng(N + 1), K), b = randn(rng(N + 2), N)
    const p = placeMatmul(mem, w, x, b, 1)
    mem.f32(p.out, N).fill(NaN)
    runMatmul(core, 0, p)
    const got = getF32(mem, p.out, N)
    mem.f32(p.out, N).fill(NaN)
    callMatmul(core.kernels(0), p, 0, N)
    assertBitwise(got, getF32(mem, p.out, N), `matmul_f32g N=${N} on ${core.threads} threads`)
    mem.release(mark)
  }
})

pool('addMemory: a second memory is usable on the main thread and in the workers', () => {
  const m = core2.addMemory()
  assert.is(m, 1)
  assert.is(core2.memories.length, 2)
  const mem = core2.memories[1]
  const w = makeWeight('f32', 21, 40, 8), x = randn(rng(9), 3 * 40)
  const p = placeMatmul(mem, w, x, null, 3)
  runMatmul(core2, 1, p)
  const ref = matmulRef(x, w.widened, null, 3, 40, 21)
  assertNear(getF32(mem, p.out, 63), ref.out, (i) => 1e-5 * ref.mag[i], 'matmul on memory 1')
})

pool('a kernel that traps in a worker makes run() throw, and the core keeps working', () => {
  const mem = core2.memories[0]
  const a = core2.args
  // rows 0..1 read the last 32 bytes of the memory, rows 2..63 lie past its end: every chunk traps. The main
  // thread traps on the first chunk it takes and stops taking chunks, so the worker takes the next one and
  // traps too, and run() reports the worker's error
  a[0] = mem.alloc(256); a[1] = mem.alloc(64); a[2] = mem.byteLength - 32; a[3] = 0; a[4] = 1; a[5] = 4; a[6] = 64
  assert.throws(() => core2.run(0, 'matmul_f32', 7, 64), /matmul_f32 failed in worker 1/)
  const w = makeWeight('f32', 8, 8, 1), x = randn(rng(2), 8)
  const p = placeMatmul(mem, w, x, null, 1)
  runMatmul(core2, 0, p)
  const ref = matmulRef(x, w.widened, null, 1, 8, 8)
  assertNear(getF32(mem, p.out, 8), ref.out, (i) => 1e-5 * ref.mag[i], 'matmul after a trap')
})

pool('pointers above 2 GiB: a memory grown past 2^31 runs a split matmul there', async () => {
  const core = await createWasmCore({ threads: 2 })
  try {
    const mem = core.memories[0]
    mem.alloc(2 ** 31 + 3 * 2 ** 20) // untouched filler: only the pages used below are committed
    const w = makeWeight('q8', 12, 70, 4), wf = makeWeight('f32', 12, 70, 4), x = randn(rng(5), 2 * 70), b = randn(rng(6), 12)
    for (const weight of [w, wf]) {
      const p = placeMatmul(mem, weight, x, b, 2)
      assert.ok(p.out > 2 ** 31 && p.x > 2 ** 31 && p.w > 2 ** 31 && p.b > 2 ** 31, 'pointers above 2^31')
      runMatmul(core, 0, p)
      if (weight.dtype === 'q8') {
        // the same call below 2 GiB (core1), bit for bit: test/q8.test.ts checks that result against the js device
        const low = core1.memories[0], mark = low.mark()
        const pl = placeMatmul(low, weight, x, b, 2)
        runMatmul(core1, 0, pl)
        assertBitwise(getF32(mem, p.out, 24), getF32(low, pl.out, 24), 'matmul_q8 above 2 GiB vs below')
        low.release(mark)
        continue
      }
      const ref = matmulRef(x, weight.widened, b, 2, 70, 12)
      assertNear(getF32(mem, p.out, 24), ref.out, (i) => 1e-5 * ref.mag[i], `matmul_${weight.dtype} above 2 GiB`)
    }
    assert.ok(mem.byteLength > 2 ** 31 && mem.byteLength < 2.5 * 2 ** 30, `memory size ${mem.byteLength}`)
  } finally {
    await core.close()
  }
})

pool('threads: 1 runs split kernels on the main thread; bad arguments are refused', async () => {
  assert.is(core1.threads, 1)
  assert.is(core3.threads, 3)
  assert.not.throws(() => core1.kernels(0))
  assert.throws(() => core1.kernels(5), /no memory 5/)
  let err: unknown
  try { await createWasmCore({ threads: 0 }) } catch (e) { err = e }
  assert.match(String(err), /threads must be an integer/)
})

pool.after(async () => {
  await Promise.all([core1.close(), core2.close(), core3.close()])
})

pool.run()
