// Q8 and Q4 storage: weights AND activations quantized per block of 32, integer block dot products
// (packages/wasm/assembly/gemm_q8.ts, quant.ts; the js device's matmulQuantized is the definition).
//   - the quantizers: wasm == the plain-JS definitions in device/storage.ts, bit for bit (edge cases too)
//   - matmul_q8 / matmul_q4: SIMD == _naive == js, bit for bit, at odd shapes, any row split / thread count
//   - the devices: js == wasm (SIMD and naive, 1 and 2 threads) through the Device interface
//   - accuracy against f32 on the fixture models (max |Δlogit|, argmax agreement, greedy prefix)
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { actBytes, createWasmCore, type KernelExports, type WasmCore, type WasmMemory } from '@refgpt/wasm'
import { createWasmDevice, generate, inspectModel, loadModel, openCheckpoint, type Device, type Model, type Session, type Storage } from '@refgpt/core'
import { QuantizedWeight, createJsDevice, matmulQuantized } from '../packages/core/src/device/js.js'
import { dequantizeQ4, quantizeQ4, quantizeQ8, q8Cols } from '../packages/core/src/device/storage.js'
import { MODELS, TOL, assertClose, loadGolden, maxDiff, modelDir, refgpt, rng, groupedBlock, withModel } from './helpers.js'

// --- helpers ---------------------------------------------------------------------------------------

const randn = (r: () => number, n: number, scale = 1) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale)

function assertBitwise(a: ArrayLike<number>, b: ArrayLike<number>, label: string) {
  assert.is(a.length, b.length, `${label}: length`)
  for (let i = 0; i < a.length; i++) if (!Object.is(Math.fround(a[i]), Math.fround(b[i]))) assert.unreachable(`${label}: [${i}] ${a[i]} !== ${b[i]}`)
}
function assertBytes(a: Uint8Array, b: Uint8Array, label: string) {
  assert.is(a.length, b.length, `${label}: length`)
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) assert.unreachable(`${label}: byte ${i}: ${a[i]} !== ${b[i]}`)
}
function putF32(mem: WasmMemory, a: Float32Array): number {
  const p = mem.alloc(a.byteLength, 16)
  mem.f32(p, a.length).set(a)
  return p
}

/**
 * The row-major order of a q8 / q4 weight as the wasm device keeps it (quant.ts): K chunks of 64 blocks
 * (chunk c at rows * 64c * bb bytes), in a chunk row groups of 4 (the last one smaller) at 4g * cb * bb,
 * the blocks of a group's R rows interleaved: the chunk's block b of the group's row r at (b R + r) * bb.
 */
function ungroup(bytes: Uint8Array, rows: number, blocks: number, bb: number): Uint8Array {
  const out = new Uint8Array(bytes.length)
  for (let n = 0; n < rows; n++) {
    for (let b = 0; b < blocks; b++) {
      const at = groupedBlock(n, b, rows, blocks) * bb
      out.set(bytes.subarray(at, at + bb), (n * blocks + b) * bb)
    }
  }
  return out
}
const ungroupF32 = (a: Float32Array, rows: number, blocks: number) => new Float32Array(ungroup(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), rows, blocks, 4).buffer)

/** Levels [rows, Kp] of a q4 weight as the wasm device keeps it: row groups, and in a block lane j = elements j, 8+j, 16+j, 24+j. */
function unpackQ4(grouped: Uint8Array, rows: number, K: number): Uint8Array {
  const Kp = q8Cols(K), levels = new Uint8Array(rows * Kp), bytes = ungroup(grouped, rows, Kp / 32, 16)
  for (let r = 0; r < rows; r++) for (let k = 0; k < Kp; k++) {
    const blk = Math.floor(k / 32), e = k % 32, j = e % 8, part = Math.floor(e / 8)
    const byte = bytes[r * (Kp / 2) + blk * 16 + 2 * j + (part >> 1)]
    levels[r * Kp + k] = part & 1 ? byte >> 4 : byte & 15
  }
  return levels
}

/** A weight [N, K] quantized in wasm memory, and the same weight as the js device keeps it. */
interface QW { storage: 'Q8' | 'Q4'; w: number; scales: number; js: QuantizedWeight }
function placeQuantized(mem: WasmMemory, k: KernelExports, storage: 'Q8' | 'Q4', data: Float32Array, N: number, K: number): QW {
  const Kp = q8Cols(K), src = putF32(mem, data)
  const w = mem.alloc(storage === 'Q8' ? N * Kp : (N * Kp) / 2), scales = mem.alloc((N * Kp) / 8)
  ;(storage === 'Q8' ? k.quantize_q8 : k.quantize_q4)(w, scales, src, N, K, 0, N)
  return { storage, w, scales, js: QuantizedWeight.quantize(data, N, K, storage) }
}
const kernel = (s: 'Q8' | 'Q4', naive: boolean) => `matmul_${s.toLowerCase()}${naive ? '_naive' : ''}` as 'matmul_q8' | 'matmul_q8_naive' | 'matmul_q4' | 'matmul_q4_naive'

/** The js device's result: the definition of a quantized matmul. */
function reference(q: QW, x: Float32Array, b: Float32Array | null, T: number, K: number, N: number): Float32Array {
  const out = new Float32Array(T * N)
  matmulQuantized(out, x, q.js, b, T, K, N)
  return out
}

/** Quantizes x into a fresh activation buffer (SIMD or naive quantizer) and runs the kernel on rows [n0, n1). */
function runKernel(mem: WasmMemory, k: KernelExports, q: QW, xp: number, bp: number, T: number, K: number, N: number, naive: boolean, splits: number[] = []) {
  const xa = mem.alloc(actBytes(T, K)), out = mem.alloc(4 * T * N)
  mem.f32(out, T * N).fill(NaN)
  ;(naive ? k.quantize_act_naive : k.quantize_act)(xa, xp, T, K, q.storage === 'Q4' ? 1 : 0)
  const edges = [0, ...splits.filter((c) => c > 0 && c < N), N]
  for (let i = 0; i + 1 < edges.length; i++) k[kernel(q.storage, naive)](edges[i], edges[i + 1], out, xa, q.w, q.scales, bp, T, K, N)
  return mem.f32(out, T * N).slice()
}

let core1: WasmCore, core2: WasmCore, core3: WasmCore

// --- quantizers --------------------------------------------------------------------------------------

const quant = suite('q8 / q4: quantizers (wasm == device/storage.ts)')
quant.before(async () => {
  core1 = await createWasmCore({ threads: 1 })
  core2 = await createWasmCore({ threads: 2 })
  core3 = await createWasmCore({ threads: 3 })
})

/** Rows of 96 values exercising the edge cases of a block (plus random rows). */
function edgeRows(K: number, seed: number): Float32Array[] {
  const r = rng(seed)
  const rows: Float32Array[] = []
  const row = (f: (k: number) => number) => rows.push(Float32Array.from({ length: K }, (_, k) => f(k)))
  row(() => (r() * 2 - 1) * 3)
  row(() => 0) // all-zero blocks
  row((k) => (k % 32 === 5 ? -2 : k % 32 === 9 ? 2 : r() - 0.5)) // a tie in magnitude: the first one (negative) is the max
  row((k) => (k % 32 === 5 ? 2 : k % 32 === 9 ? -2 : r() - 0.5)) // the same, positive first
  row((k) => (k % 32 === 3 ? NaN : r() - 0.5)) // a NaN in every block
  row((k) => (k % 32 === 7 ? -Infinity : r() - 0.5)) // an inf in every block
  row((k) => (k % 3 === 0 ? 1e-45 * (k % 5) : k % 3 === 1 ? -3e-44 : 1e-42)) // subnormals only
  row((k) => (k % 32 === 0 ? 127 : k % 2 ? (k % 32) + 0.5 : -((k % 32) + 0.5))) // exact halves
  row((k) => (k % 4 === 0 ? -0 : (r() - 0.5) * 1e-20)) // -0 and tiny normals
  row((k) => (k % 32 === 11 ? 3.4e38 : (r() - 0.5) * 1e38)) // large finite values
  return rows
}

quant('quantize_q4 == quantizeQ4 (levels in the nibble layout, scales) bit for bit, edge cases included', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const K of [1, 3, 31, 32, 33, 64, 96, 100, 2080]) {
    const rows = edgeRows(K, K)
    const data = new Float32Array(rows.length * K)
    rows.forEach((row, i) => data.set(row, i * K))
    const N = rows.length, Kp = q8Cols(K)
    const src = putF32(mem, data), w = mem.alloc((N * Kp) / 2), sc = mem.alloc((N * Kp) / 8)
    mem.u8(w, (N * Kp) / 2).fill(0x55)
    k.quantize_q4(w, sc, src, N, K, 0, N)
    const js = quantizeQ4(data, N, K)
    assertBytes(unpackQ4(mem.u8(w, (N * Kp) / 2).slice(), N, K), js.levels, `q4 levels K=${K}`)
    assertBitwise(ungroupF32(mem.f32(sc, (N * Kp) / 32).slice(), N, Kp / 32), js.scales, `q4 scales K=${K}`)
  }
  // the definition on one block: the first largest magnitude maps to level 0 (-8 * scale)
  const block = Float32Array.from({ length: 32 }, (_, i) => (i === 3 ? -4 : i === 7 ? 4 : i === 8 ? 1 : i === 9 ? 0.25 : i === 10 ? -0.75 : 0))
  const q = quantizeQ4(block, 1, 32)
  assert.is(q.scales[0], 0.5)
  // -4 / 0.5 = -8 -> level 0; 4 -> 8 -> 16, clamped to 15; 1 -> 2 -> 10; 0.25 -> 0.5 -> 1 (away from zero) -> 9; -0.75 -> -1.5 -> -2 -> 6
  assert.equal(Array.from(q.levels.subarray(0, 11)), [8, 8, 8, 0, 8, 8, 8, 15, 10, 9, 6])
  assert.equal(Array.from(dequantizeQ4(q.levels, q.scales, 1, 32).subarray(0, 11)), [0, 0, 0, -4, 0, 0, 0, 3.5, 1, 0.5, -1])
  mem.release(mark)
})

quant('quantize_q8 == quantizeQ8 bit for bit on the edge cases (NaN / inf blocks keep q = 0, subnormal blocks clamp)', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const K of [1, 31, 32, 33, 96, 2049, 4200]) {
    const rows = edgeRows(K, 100 + K)
    const data = new Float32Array(rows.length * K)
    rows.forEach((row, i) => data.set(row, i * K))
    const N = rows.length, Kp = q8Cols(K)
    const src = putF32(mem, data), w = mem.alloc(N * Kp), sc = mem.alloc((N * Kp) / 8)
    k.quantize_q8(w, sc, src, N, K, 0, N)
    const js = quantizeQ8(data, N, K)
    assert.equal(Array.from(new Int8Array(ungroup(mem.u8(w, N * Kp).slice(), N, Kp / 32, 32).buffer)), Array.from(js.q), `q8 values K=${K}`)
    assertBitwise(ungroupF32(mem.f32(sc, (N * Kp) / 32).slice(), N, Kp / 32), js.scales, `q8 scales K=${K}`)
  }
  mem.release(mark)
})

quant('quantize_q8 / quantize_q4 a few rows at a time (rows [r0, r1) of N) write the same bytes as one call', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  for (const storage of ['Q8', 'Q4'] as const) for (const [N, K] of [[11, 100], [13, 2100], [7, 4200]]) {
    const mark = mem.mark()
    const data = randn(rng(N * K), N * K, 2), Kp = q8Cols(K), wBytes = storage === 'Q8' ? N * Kp : (N * Kp) / 2
    const f = storage === 'Q8' ? k.quantize_q8 : k.quantize_q4
    const src = putF32(mem, data), w1 = mem.alloc(wBytes), s1 = mem.alloc((N * Kp) / 8), w2 = mem.alloc(wBytes), s2 = mem.alloc((N * Kp) / 8)
    f(w1, s1, src, N, K, 0, N)
    for (const [r0, r1] of [[0, 3], [3, 4], [4, 9], [9, N]]) f(w2, s2, src + 4 * r0 * K, N, K, r0, Math.min(r1, N))
    assertBytes(mem.u8(w2, wBytes).slice(), mem.u8(w1, wBytes).slice(), `${storage} N=${N} K=${K}: values`)
    assertBytes(mem.u8(s2, (N * Kp) / 8).slice(), mem.u8(s1, (N * Kp) / 8).slice(), `${storage} N=${N} K=${K}: scales`)
    mem.release(mark)
  }
})

quant('quantize_act == quantize_act_naive == quantizeQ8 (i16 values, pre-scaled for q4; scales, block sums), edge cases included', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  for (const q4 of [0, 1]) for (const K of [1, 3, 31, 32, 33, 64, 100, 768]) for (const T of [1, 2, 5]) {
    const mark = mem.mark()
    const rows = edgeRows(K, 7 * K + T)
    const data = new Float32Array(T * K)
    for (let t = 0; t < T; t++) data.set(rows[(t * 3) % rows.length], t * K)
    const xp = putF32(mem, data), bytes = actBytes(T, K)
    const a = mem.alloc(bytes), b = mem.alloc(bytes)
    mem.u8(a, bytes).fill(0x55)
    mem.u8(b, bytes).fill(0xaa)
    k.quantize_act(a, xp, T, K, q4)
    k.quantize_act_naive(b, xp, T, K, q4)
    assertBytes(mem.u8(a, bytes).slice(), mem.u8(b, bytes).slice(), `quantize_act vs _naive T=${T} K=${K} q4=${q4}`)
    const Kp = q8Cols(K), nb = Kp / 32, js = quantizeQ8(data, T, K)
    // q4: q * 256, * 16, * 1, * 256 for the elements 0..7, 8..15, 16..23, 24..31 of a block
    const scale = (k: number) => (!q4 ? 1 : k % 32 < 8 || k % 32 >= 24 ? 256 : k % 32 < 16 ? 16 : 1)
    // q4 = 0: each 16 values of a block hold its 8 even elements, then its 8 odd ones
    const pos = (i: number) => (q4 ? i : (i & ~15) + ((i & 1) << 3) + ((i & 15) >> 1))
    const expect = new Array<number>(T * Kp)
    js.q.forEach((v, i) => { expect[pos(i)] = v * scale(i % Kp) })
    assert.equal(Array.from(new Int16Array(mem.buffer, a, T * Kp)), expect, `activation values T=${T} K=${K} q4=${q4}`)
    assertBitwise(mem.f32(a + 2 * T * Kp, T * nb), js.scales, `activation scales T=${T} K=${K}`)
    const sums = Array.from({ length: T * nb }, (_, i) => js.q.subarray(i * 32, i * 32 + 32).reduce((s, v) => s + v, 0))
    assert.equal(Array.from(mem.i32(a + 2 * T * Kp + 4 * T * nb, T * nb)), sums, `activation block sums T=${T} K=${K}`)
    mem.release(mark)
  }
})

quant('embed_q8 / embed_q4 (and _naive) gather the dequantized values, store and accumulate; negative ids are zero rows', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  for (const storage of ['Q8', 'Q4'] as const) for (const C of [1, 5, 32, 37, 64, 100, 2100]) for (const V of [9, 12, 1]) {
    const mark = mem.mark()
    const T = 6
    const q = placeQuantized(mem, k, storage, randn(rng(C + V), V * C, 2), V, C)
    const ids = Int32Array.from([3, -1, 8, 0, -5, V - 1], (id) => (id >= V ? V - 1 : id))
    const base = randn(rng(C + 1), T * C)
    base[C] = -0
    const ip = mem.alloc(4 * T)
    mem.i32(ip, T).set(ids)
    for (const naive of [false, true]) for (const acc of [0, 1]) {
      const out = putF32(mem, base)
      const f = storage === 'Q8' ? (naive ? k.embed_q8_naive : k.embed_q8) : naive ? k.embed_q4_naive : k.embed_q4
      f(out, q.w, q.scales, ip, T, C, acc, V)
      const exp = new Float32Array(T * C)
      for (let t = 0; t < T; t++) for (let c = 0; c < C; c++) {
        const b = base[t * C + c]
        exp[t * C + c] = ids[t] < 0 ? (acc ? b : 0) : acc ? Math.fround(b + q.js.value(ids[t], c)) : q.js.value(ids[t], c)
      }
      assertBitwise(mem.f32(out, T * C), exp, `embed_${storage.toLowerCase()}${naive ? '_naive' : ''} C=${C} V=${V} accumulate=${acc}`)
    }
    mem.release(mark)
  }
})

quant.run()

// --- matmul kernels ----------------------------------------------------------------------------------

const mm = suite('matmul_q8 / matmul_q4: SIMD == naive == js, bit for bit')

mm('odd shapes (K not a multiple of 32 or 4, N not a multiple of 4, T = 1, 2, 5, 7), with and without bias', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  let seed = 1
  for (const storage of ['Q8', 'Q4'] as const) for (const K of [1, 3, 4, 31, 32, 33, 36, 37, 64, 100, 130]) for (const N of [1, 3, 4, 5, 7, 9, 33]) {
    const mark = mem.mark()
    const q = placeQuantized(mem, k, storage, randn(rng(seed++), N * K), N, K)
    for (const T of [1, 2, 5, 7]) {
      const r = rng(seed++)
      const x = randn(r, T * K, 4), b = T % 2 ? randn(r, N) : null
      const xp = putF32(mem, x), bp = b ? putF32(mem, b) : 0
      const ref = reference(q, x, b, T, K, N)
      for (const naive of [false, true]) assertBitwise(runKernel(mem, k, q, xp, bp, T, K, N, naive), ref, `${kernel(storage, naive)} K=${K} N=${N} T=${T}`)
      // what it means: the float64 product of the dequantized weights and the dequantized activations, up to f32 rounding
      const xq = quantizeQ8(x, T, K), Kp = q8Cols(K)
      for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
        let s = b ? b[n] : 0, mag = Math.abs(s)
        for (let kk = 0; kk < K; kk++) {
          const p = q.js.q[n * Kp + kk] * q.js.scales[n * (Kp / 32) + (kk >> 5)] * xq.q[t * Kp + kk] * xq.scales[t * (Kp / 32) + (kk >> 5)]
          s += p
          mag += Math.abs(p)
        }
        assert.ok(Math.abs(ref[t * N + n] - s) <= 1e-6 * (Kp / 32 + 2) * mag + 1e-30, `${storage} K=${K} N=${N} T=${T} [${t}, ${n}]: ${ref[t * N + n]} vs float64 ${s}`)
      }
    }
    mem.release(mark)
  }
})

mm('real-ish shapes: K = 768 / 2048, T = 1 and 64; K past one chunk of 2048 (2100, 4128, 8192)', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  for (const storage of ['Q8', 'Q4'] as const) for (const [K, N, T] of [[768, 36, 1], [768, 20, 64], [2048, 13, 1], [2048, 8, 7], [2100, 9, 1], [2100, 10, 3], [4128, 7, 2], [8192, 12, 1], [4128, 9, 5]]) {
    const mark = mem.mark()
    const q = placeQuantized(mem, k, storage, randn(rng(K + N), N * K, 0.1), N, K)
    const x = randn(rng(T), T * K, 2), b = randn(rng(7), N)
    const xp = putF32(mem, x), bp = putF32(mem, b)
    const ref = reference(q, x, b, T, K, N)
    for (const naive of [false, true]) assertBitwise(runKernel(mem, k, q, xp, bp, T, K, N, naive), ref, `${kernel(storage, naive)} K=${K} N=${N} T=${T}`)
    mem.release(mark)
  }
})

mm('any row split, thread count (1, 2, 3) and token grouping gives the same bits', () => {
  for (const storage of ['Q8', 'Q4'] as const) for (const [K, N, T] of [[144, 33, 7], [37, 19, 13], [256, 40, 1], [36, 9, 8], [64, 70, 64], [4200, 21, 3]]) {
    const data = randn(rng(K * N), N * K), x = randn(rng(T + 1), T * K, 3), b = randn(rng(3), N)
    const results: Float32Array[] = []
    for (const core of [core1, core2, core3]) {
      const mem = core.memories[0], k = core.kernels(0), mark = mem.mark()
      const q = placeQuantized(mem, k, storage, data, N, K)
      const xp = putF32(mem, x), bp = putF32(mem, b), xa = mem.alloc(actBytes(T, K)), out = mem.alloc(4 * T * N)
      k.quantize_act(xa, xp, T, K, storage === 'Q4' ? 1 : 0)
      const a = core.args
      a[0] = out; a[1] = xa; a[2] = q.w; a[3] = q.scales; a[4] = bp; a[5] = T; a[6] = K; a[7] = N
      core.run(0, kernel(storage, false), 8, N)
      results.push(mem.f32(out, T * N).slice())
      mem.release(mark)
    }
    const label = `${kernel(storage, false)} K=${K} N=${N} T=${T}`
    assertBitwise(results[1], results[0], `${label}: 2 threads vs 1`)
    assertBitwise(results[2], results[0], `${label}: 3 threads vs 1`)
    const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
    const q = placeQuantized(mem, k, storage, data, N, K)
    const xp = putF32(mem, x), bp = putF32(mem, b)
    assertBitwise(results[0], reference(q, x, b, T, K, N), `${label}: vs js`)
    for (const cuts of [[1, 6], [3], [2, 5, 11], [N - 1]]) for (const naive of [false, true])
      assertBitwise(runKernel(mem, k, q, xp, bp, T, K, N, naive, cuts), results[0], `${label}${naive ? ' naive' : ''} split at ${cuts}`)
    for (let t = 0; t < T; t++) {
      const one = runKernel(mem, k, q, putF32(mem, x.subarray(t * K, (t + 1) * K)), bp, 1, K, N, false)
      assertBitwise(one, results[0].subarray(t * N, (t + 1) * N), `${label}: token ${t} alone`)
    }
    mem.release(mark)
  }
})

mm('an inf or NaN activation makes its outputs NaN (every implementation alike); zero activations give the bias', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  for (const storage of ['Q8', 'Q4'] as const) {
    const mark = mem.mark()
    const K = 70, N = 6, T = 3
    const q = placeQuantized(mem, k, storage, randn(rng(5), N * K), N, K)
    const x = randn(rng(6), T * K)
    x[5] = Infinity // token 0
    x[K + 66] = NaN // token 1, the partial last block
    x.fill(0, 2 * K) // token 2: zeros
    const b = randn(rng(7), N)
    const xp = putF32(mem, x), bp = putF32(mem, b)
    const ref = reference(q, x, b, T, K, N)
    for (let i = 0; i < 2 * N; i++) assert.ok(Number.isNaN(ref[i]), `js: output ${i} is NaN`)
    assertBitwise(ref.subarray(2 * N), b, 'zero activations: the bias')
    for (const naive of [false, true]) assertBitwise(runKernel(mem, k, q, xp, bp, T, K, N, naive), ref, `${kernel(storage, naive)} with inf / NaN`)
    mem.release(mark)
  }
})

mm('the integer products are exact at the extremes (every weight and activation at +-127 / level 0 or 15)', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  for (const storage of ['Q8', 'Q4'] as const) {
    const mark = mem.mark()
    const K = 256, N = 8, T = 2
    const w = Float32Array.from({ length: N * K }, (_, i) => ((i >> 3) % 2 ? 1 : -1) * (storage === 'Q4' && i % 2 ? 0.875 : 1))
    const x = Float32Array.from({ length: T * K }, (_, i) => (i % 3 ? 1 : -1) * 5)
    const q = placeQuantized(mem, k, storage, w, N, K)
    const xp = putF32(mem, x)
    const ref = reference(q, x, null, T, K, N)
    for (const naive of [false, true]) assertBitwise(runKernel(mem, k, q, xp, 0, T, K, N, naive), ref, `${kernel(storage, naive)} extremes`)
    // the value itself: q8 weights +-127 at scale 1/127 times x = +-127 at scale 5/127, in f32
    if (storage === 'Q8') {
      let exact = 0
      for (let kk = 0; kk < K; kk++) exact += w[kk] * x[kk]
      assert.ok(Math.abs(ref[0] - exact) <= 1e-5 * K * 5, `q8 extreme dot ${ref[0]} vs ${exact}`)
    }
    mem.release(mark)
  }
})

mm.after(async () => {
  await Promise.all([core1.close(), core2.close(), core3.close()])
})
mm.run()

// --- devices -----------------------------------------------------------------------------------------

const dev = suite('q8 / q4 on the devices: js == wasm (SIMD, naive; 1 and 2 threads), bit for bit')

async function deviceMatmul(d: Device, storage: Storage, w: Float32Array, x: Float32Array, b: Float32Array, T: number, K: number, N: number): Promise<Float32Array> {
  const wb = d.weight(w.slice(), [N, K], storage), bb = d.weight(b.slice(), [N], storage)
  const xb = d.alloc(T * K), ob = d.alloc(T * N)
  d.write(xb, x)
  d.matmul(ob, xb, wb, bb, T, K, N)
  const out = new Float32Array(T * N)
  await d.read(ob, out)
  return out
}
async function deviceEmbed(d: Device, storage: Storage, table: Float32Array, V: number, C: number, ids: Int32Array): Promise<Float32Array> {
  const tb = d.weight(table.slice(), [V, C], storage), ob = d.alloc(ids.length * C)
  d.embed(ob, tb, ids, ids.length, C, false)
  const out = new Float32Array(ids.length * C)
  await d.read(ob, out)
  return out
}

dev('matmul and embed through the Device interface', async () => {
  const devices: [string, Device][] = [
    ['wasm 1 thread', await createWasmDevice({ threads: 1 })],
    ['wasm 2 threads', await createWasmDevice({ threads: 2 })],
    ['wasm naive', await createWasmDevice({ threads: 2, naive: true })],
  ]
  const js = createJsDevice()
  try {
    for (const storage of ['Q8', 'Q4'] as const) for (const [K, N, T] of [[37, 70, 1], [64, 33, 5], [768, 300, 2], [100, 1024, 64], [2100, 70, 3]]) {
      const w = randn(rng(K * T), N * K, 0.2), x = randn(rng(N), T * K, 2), b = randn(rng(1), N)
      const want = await deviceMatmul(js, storage, w, x, b, T, K, N)
      for (const [name, d] of devices) assertBitwise(await deviceMatmul(d, storage, w, x, b, T, K, N), want, `${name} ${storage} matmul K=${K} N=${N} T=${T}`)
      const ids = Int32Array.from({ length: 7 }, (_, i) => (i * 5) % N)
      const wantE = await deviceEmbed(js, storage, w, N, K, ids)
      for (const [name, d] of devices) assertBitwise(await deviceEmbed(d, storage, w, N, K, ids), wantE, `${name} ${storage} embed K=${K}`)
    }
    // a quantized weight cannot be trained or read as f32 on the js device
    const qw = js.weight(randn(rng(2), 64), [2, 32], 'Q8')
    assert.throws(() => js.train!.matmulBackward(null, js.alloc(64), null, js.alloc(2), js.alloc(32), qw, 1, 32, 2), /Q8 weight can only be used by embed and matmul/)
  } finally {
    for (const [, d] of devices) await d.dispose?.()
  }
})

dev('weights split into row parts (maxBufferBytes): the same logits, bit for bit (each part its own row groups)', async () => {
  for (const dtype of ['Q8', 'Q4'] as const) {
    const ids: number[] = loadGolden('gpt2-tiny').json.prompts.p2.ids
    const run = async (opts: { maxBufferBytes?: number; threads: number }) => {
      const m = await loadModel(modelDir('gpt2-tiny'), { device: 'wasm', dtype, ...opts })
      const s = m.createSession()
      try {
        return { buffers: m.info.weightBuffers, logits: (await s.logits(ids, 0)).slice() }
      } finally {
        s.dispose()
        await m.dispose()
      }
    }
    const whole = await run({ threads: 2 })
    const split = await run({ threads: 2, maxBufferBytes: 3000 })
    assert.ok(split.buffers > whole.buffers + 10, `${dtype}: ${split.buffers} buffers split vs ${whole.buffers}`)
    assertBitwise(split.logits, whole.logits, `${dtype}: weights in parts of <= 3000 bytes vs whole`)
  }
})

dev.run()

// --- accuracy on the fixtures ------------------------------------------------------------------------

const acc = suite('q8 / q4 accuracy against f32 on the fixture models')


// Bounds: the measured figures (printed by this test; see BENCHMARKS.md "q8 accuracy") with a margin. The
// fixtures are random models (weights N(0, 0.2), hidden sizes 32-64): every weight matters, nothing is
// redundant, so the errors are pessimistic — q4's especially (8.5 % rms error per weight).
//   measured q8: max |Δlogit| 0.13-0.44, argmax 123-126 / 130, correlation >= 0.9992
//   measured q4: max |Δlogit| 1.7-4.3, argmax 50-68 / 130, correlation 0.91-0.98
const BOUNDS = {
  Q8: { maxAbs: 0.6, argmax: 0.9, corr: 0.998 },
  Q4: { maxAbs: 6, argmax: 0.3, corr: 0.85 },
}

interface Measured { maxAbs: number; maxLogit: number; argmax: number; positions: number; greedy: number; greedyOf: number; corr: number }

/** Pearson correlation of two arrays of logits. */
function correlation(a: Float32Array[], b: Float32Array[]): number {
  let sx = 0, sy = 0, sxy = 0, sxx = 0, syy = 0, n = 0
  for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i].length; j++) {
    const x = a[i][j], y = b[i][j]
    sx += x; sy += y; sxy += x * y; sxx += x * x; syy += y * y; n++
  }
  return (sxy - (sx * sy) / n) / Math.sqrt((sxx - (sx * sx) / n) * (syy - (sy * sy) / n))
}

async function measure(name: string, dtype: 'Q8' | 'Q4'): Promise<Measured> {
  const g = loadGolden(name).json
  const V = g.vocab_size
  const prompts = ['p1', 'p2', 'p3'].map((p) => g.prompts[p].ids as number[])
  const logitsOf = (dt: Storage | undefined) => withModel(name, { device: 'wasm', dtype: dt }, async (_m, s) => {
    const all: Float32Array[] = []
    for (const ids of prompts) all.push((await s.logits(ids, 0)).slice())
    return all
  })
  const greedyOf = (dt: Storage | undefined) => withModel(name, { device: 'wasm', dtype: dt }, async (m) => {
    const out: number[][] = []
    for (const p of ['p0', 'p1', 'p2']) out.push((await generate(m, g.prompts[p].ids, { maxNewTokens: 20 })).ids as number[])
    return out
  })
  const f32 = await logitsOf(undefined), q = await logitsOf(dtype)
  let maxAbs = 0, maxLogit = 0, argmax = 0, positions = 0
  for (let i = 0; i < prompts.length; i++) {
    maxAbs = Math.max(maxAbs, maxDiff(q[i], f32[i]).abs)
    for (let t = 0; t < prompts[i].length; t++) {
      let a = 0, b = 0
      for (let v = 0; v < V; v++) {
        maxLogit = Math.max(maxLogit, Math.abs(f32[i][t * V + v]))
        if (f32[i][t * V + v] > f32[i][t * V + a]) a = v
        if (q[i][t * V + v] > q[i][t * V + b]) b = v
      }
      positions++
      if (a === b) argmax++
    }
  }
  const gf = await greedyOf(undefined), gq = await greedyOf(dtype)
  let greedy = 0, greedyTotal = 0
  for (let i = 0; i < gf.length; i++) {
    const start = g.prompts[['p0', 'p1', 'p2'][i]].ids.length
    let n = 0
    while (start + n < gf[i].length && gq[i][start + n] === gf[i][start + n]) n++
    greedy += n
    greedyTotal += gf[i].length - start
  }
  return { maxAbs, maxLogit, argmax, positions, greedy, greedyOf: greedyTotal, corr: correlation(f32, q) }
}

for (const dtype of ['Q8', 'Q4'] as const) {
  acc(`${dtype}: max |Δlogit| within the bound, argmax exact where the f32 margin exceeds twice the error, greedy prefixes`, async () => {
    const rows: string[] = [], bound = BOUNDS[dtype]
    for (const name of MODELS) {
      const m = await measure(name, dtype)
      rows.push(`  ${dtype} ${name.padEnd(13)} max |Δlogit| ${m.maxAbs.toFixed(3)} (max |logit| ${m.maxLogit.toFixed(2)}), argmax ${m.argmax}/${m.positions}, greedy prefix ${m.greedy}/${m.greedyOf}, correlation ${m.corr.toFixed(4)}`)
      console.log(rows[rows.length - 1])
      assert.ok(m.maxAbs < bound.maxAbs, `${name}: ${dtype} max |Δlogit| ${m.maxAbs}`)
      assert.ok(m.argmax >= bound.argmax * m.positions, `${name}: ${dtype} argmax agreement ${m.argmax}/${m.positions}`)
      assert.ok(m.corr > bound.corr, `${name}: ${dtype} correlation of the logits with f32 ${m.corr}`)
      // where the f32 top-1 / top-2 margin is larger than twice the error, the argmax cannot move
      const g = loadGolden(name).json, V = g.vocab_size
      const ids: number[] = g.prompts.p3.ids
      const q = await withModel(name, { device: 'wasm', dtype }, async (_m, s) => (await s.logits(ids, 0)).slice())
      for (let t = 0; t < ids.length; t++) {
        if (g.argmax_margin.p3[t] <= 2 * m.maxAbs) continue
        let best = 0
        for (let v = 1; v < V; v++) if (q[t * V + v] > q[t * V + best]) best = v
        assert.is(best, g.argmax.p3[t], `${name}: ${dtype} argmax at ${t} (margin ${g.argmax_margin.p3[t]})`)
      }
    }
  })
}

acc('Q4 storage: weightBytes from the format (4 bits a weight + an f32 scale per 32; the LM head q8; 1-D tensors f32), inspect = load; --dtype q4 in the CLI', async () => {
  for (const name of ['gpt-neo-odd', 'gpt-j-tiny']) {
    const q4 = inspectModel(modelDir(name), { dtype: 'q4' as never })
    assert.equal(Object.keys(q4.storageDtypes).sort(), ['Q4', 'Q8'])
    // GPT-Neo / GPT-J place their checkpoint tensors as they are (no Conv1D, no fused qkv), less HF's buffers;
    // the LM head (GPT-J's lm_head; the tied wte of GPT-Neo) is kept as q8 (1 byte a weight + a scale per 32)
    let want = 0, q8Elements = 0
    const ck = openCheckpoint(modelDir(name))
    try {
      for (const [n, t] of ck.tensors) {
        if (/(^|\.)attn\.(bias|masked_bias)$/.test(n) || (q4.arch.tiedLmHead && n === 'lm_head.weight')) continue
        const elements = t.shape.reduce((p, d) => p * d, 1)
        const Kp = Math.ceil(t.shape[1] / 32) * 32
        const perToken = q4.arch.tiedLmHead ? /(^|\.)wte\.weight$/.test(n) : /(^|\.)lm_head\.weight$/.test(n)
        if (perToken) q8Elements += elements
        want += t.shape.length === 2 ? t.shape[0] * ((perToken ? Kp : Kp / 2) + (4 * Kp) / 32) : 4 * elements
      }
    } finally {
      ck.close()
    }
    assert.is(q4.storageDtypes.Q8, q8Elements, `${name}: the LM head is q8`)
    assert.is(q4.weightBytes, want, `${name}: Q4 weightBytes`)
    const m = await loadModel(modelDir(name), { device: 'js', dtype: 'Q4' })
    assert.is(m.info.weightBytes, want, `${name}: loadModel(Q4).info.weightBytes`)
    await m.dispose()
  }
  const r = refgpt(['inspect', '--model', modelDir('gpt-neo-odd'), '--dtype', 'q4'])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stdout, /stored as Q8 [\d.]+ M, Q4 [\d.]+ M/)
})

acc('the js device computes the same model within the logits tolerance (its other ops sum in f64)', async () => {
  for (const dtype of ['Q8', 'Q4'] as const) for (const name of ['gpt-neo-odd', 'gpt-j-tiny']) {
    const ids: number[] = loadGolden(name).json.prompts.p2.ids
    const wasm = await withModel(name, { device: 'wasm', dtype }, async (_m, s) => (await s.logits(ids, 0)).slice())
    const js = await withModel(name, { device: 'js', dtype }, async (_m, s) => (await s.logits(ids, 0)).slice())
    assertClose(wasm, js, TOL.logits, `${name} ${dtype}: wasm vs js`)
  }
})

acc.run()
