// The prefill path of matmul_f32 / f16 / bf16 (packages/wasm/assembly/panel.ts): with a matmul scratch and
// T >= 2 the weights are widened once into a per-thread panel and every token runs over it. The gemm
// contract says the result of an element does not depend on the path, the split, the thread count or T,
// so everything here is checked BITWISE against the in-register tiles (the same call without a scratch)
// and against the decode tile (T = 1), plus once against a float64 reference.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { allocGemmScratch, createWasmCore, gemmScratchBytes, groupRows16, groupRowsF32, type KernelExports, type WasmCore, type WasmMemory } from '@refgpt/wasm'
import { loadModel, type WasmDevice } from '@refgpt/core'
import { modelDir, rng } from './helpers.js'

/** f32g: f32 in row groups (matmul_f32g: what the wasm device keeps for inference; its prefill takes the panel from T = 24). */
type DType = 'f32' | 'f32g' | 'f16' | 'bf16'
const DTYPES: DType[] = ['f32', 'f32g', 'f16', 'bf16']

const randn = (r: () => number, n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1)
/** IEEE half bits -> number. */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023
  if (e === 0) return s * m * 2 ** -24
  if (e === 31) return m ? NaN : s * Infinity
  return s * 2 ** (e - 15) * (1 + m / 1024)
}
const bf16ToFloat = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]

/** A weight [N, K]: its stored bytes and its widened f32 values. f16: ~5% subnormal halves and some zeros. */
function makeWeight(dtype: DType, N: number, K: number, seed: number) {
  const r = rng(seed)
  if (dtype === 'f32' || dtype === 'f32g') {
    const w = randn(r, N * K)
    return { data: new Uint8Array(w.buffer), widened: w }
  }
  const h = Uint16Array.from({ length: N * K }, () => {
    const sign = r() < 0.5 ? 0x8000 : 0
    if (dtype === 'bf16') return sign | ((118 + Math.floor(r() * 10)) << 7) | Math.floor(r() * 128)
    const e = r() < 0.05 ? 0 : 8 + Math.floor(r() * 10)
    return sign | (e << 10) | Math.floor(r() * 1024)
  })
  return { data: new Uint8Array(h.buffer), widened: Float32Array.from(h, dtype === 'bf16' ? bf16ToFloat : halfToFloat) }
}

function put(mem: WasmMemory, bytes: Uint8Array): number {
  const p = mem.alloc(bytes.length, 16)
  mem.u8(p, bytes.length).set(bytes)
  return p
}
const putF32 = (mem: WasmMemory, a: Float32Array) => put(mem, new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
const getF32 = (mem: WasmMemory, p: number, n: number) => mem.f32(p, n).slice()

interface MM { dtype: DType; out: number; x: number; w: number; b: number; T: number; K: number; N: number }
function place(mem: WasmMemory, dtype: DType, data: Uint8Array, x: Float32Array, b: Float32Array | null, T: number, K: number, N: number): MM {
  // 16-bit weights in the kernels' row groups (quant.ts; K a multiple of 8), as the device stores them
  // and f32g in the same groups (f32 keeps rows in order)
  const stored = dtype === 'f32' ? data
    : dtype === 'f32g' ? new Uint8Array(groupRowsF32(new Float32Array(data.slice().buffer), N, K).buffer)
    : new Uint8Array(groupRows16(new Uint16Array(data.slice().buffer), N, K).buffer)
  return { dtype, out: mem.alloc(T * N * 4), x: putF32(mem, x), w: put(mem, stored), b: b ? putF32(mem, b) : 0, T, K, N }
}
/** One call on rows [n0, n1) of the main-thread instance; scratch 0: the in-register tiles. */
function call(k: KernelExports, p: MM, n0: number, n1: number, scratch: number) {
  k[`matmul_${p.dtype}`](n0, n1, p.out, p.x, p.w, p.b, p.T, p.K, p.N, scratch)
}
/** A call split across the core's threads. */
function run(core: WasmCore, p: MM, scratch: number) {
  const a = core.args
  a[0] = p.out; a[1] = p.x; a[2] = p.w; a[3] = p.b; a[4] = p.T; a[5] = p.K; a[6] = p.N; a[7] = scratch
  core.run(0, `matmul_${p.dtype}`, 8, p.N)
}

/** Bitwise equality; where `nanAsEqual`, two NaNs of any payload count as equal (NaN payloads are not part of the contract). */
function assertBitwise(got: Float32Array, want: Float32Array, label: string, nanAsEqual = false) {
  assert.is(got.length, want.length, `${label}: length`)
  const ug = new Uint32Array(got.buffer, got.byteOffset, got.length), uw = new Uint32Array(want.buffer, want.byteOffset, want.length)
  for (let i = 0; i < ug.length; i++) {
    if (ug[i] === uw[i]) continue
    if (nanAsEqual && Number.isNaN(got[i]) && Number.isNaN(want[i])) continue
    assert.unreachable(`${label}: [${i}] ${got[i]} (0x${ug[i].toString(16)}) !== ${want[i]} (0x${uw[i].toString(16)})`)
  }
}

/** A scratch with a chosen panel shape (header +8: k per chunk, +12: rows per panel; 0 = the kernel's default). */
function scratchWith(mem: WasmMemory, slots: number, opts: { slotBytes?: number; kc?: number; rp?: number } = {}): number {
  const p = allocGemmScratch(mem, slots, opts.slotBytes)
  const h = mem.i32(p, 4)
  h[2] = opts.kc ?? 0
  h[3] = opts.rp ?? 0
  return p
}
/** The slot flags of a scratch (every one must be 0 = free between calls). */
const flags = (mem: WasmMemory, scratch: number) => Array.from(mem.i32(scratch + 64, mem.i32(scratch, 1)[0]))

let core1: WasmCore, core2: WasmCore, core3: WasmCore

const prefill = suite('prefill path (panel.ts)')
prefill.before(async () => {
  core1 = await createWasmCore({ threads: 1 })
  core2 = await createWasmCore({ threads: 2 })
  core3 = await createWasmCore({ threads: 3 })
})
prefill.after(async () => {
  await Promise.all([core1.close(), core2.close(), core3.close()])
})

prefill('odd shapes: the panel path equals the in-register tiles bit for bit (and float64 within 1e-5)', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  const scratch = scratchWith(mem, 1)
  let seed = 11
  for (const dtype of DTYPES) for (const K of [4, 5, 7, 31, 36, 37, 40, 130]) for (const N of [1, 3, 4, 5, 7, 9, 33]) {
    const w = makeWeight(dtype, N, K, seed++)
    for (const T of [2, 3, 7, 64, 129]) {
      const mark = mem.mark()
      const r = rng(seed++)
      const x = randn(r, T * K), b = T % 2 ? randn(r, N) : null
      const p = place(mem, dtype, w.data, x, b, T, K, N)
      call(k, p, 0, N, 0)
      const tiles = getF32(mem, p.out, T * N)
      mem.f32(p.out, T * N).fill(NaN)
      call(k, p, 0, N, scratch)
      const panel = getF32(mem, p.out, T * N)
      const label = `matmul_${dtype} K=${K} N=${N} T=${T}`
      assertBitwise(panel, tiles, label)
      for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
        let s = b ? b[n] : 0, m = b ? Math.abs(b[n]) : 0
        for (let kk = 0; kk < K; kk++) { const v = x[t * K + kk] * w.widened[n * K + kk]; s += v; m += Math.abs(v) }
        const got = panel[t * N + n]
        if (!(Math.abs(got - s) <= 1e-5 * m + 1e-30)) assert.unreachable(`${label}: [${t}, ${n}] ${got} vs float64 ${s}`)
      }
      mem.release(mark)
    }
  }
  assert.equal(flags(mem, scratch), [0], 'the slot is free again')
})

prefill('small panels: several K chunks, row panels and token blocks (and a slot too small: the tiles)', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  // kc 8 / 12 / 20: K = 37 and 130 run in 5..17 chunks with a short last one; rp 4 / 8 / 12: N = 33 in 3..9
  // row panels; a slot of 2 panels + 6 tokens of partial sums: T = 7, 64, 129 in blocks of 6 tokens
  const shapes = [{ kc: 8, rp: 4 }, { kc: 12, rp: 8 }, { kc: 20, rp: 12 }]
  let seed = 500
  for (const { kc, rp } of shapes) {
    const blocks = scratchWith(mem, 1, { kc, rp, slotBytes: 2 * rp * kc * 4 + 6 * rp * 16 })
    const roomy = scratchWith(mem, 1, { kc, rp })
    const tiny = scratchWith(mem, 1, { kc, rp, slotBytes: 2 * rp * kc * 4 }) // no room for partial sums: falls back
    for (const dtype of DTYPES) for (const [K, N] of [[37, 33], [130, 9], [12, 5], [48, 11]]) {
      const w = makeWeight(dtype, N, K, seed++)
      for (const T of [2, 7, 64, 129]) {
        const mark = mem.mark()
        const r = rng(seed++)
        const p = place(mem, dtype, w.data, randn(r, T * K), randn(r, N), T, K, N)
        call(k, p, 0, N, 0)
        const tiles = getF32(mem, p.out, T * N)
        for (const [name, s] of [['blocks', blocks], ['roomy', roomy], ['tiny', tiny]] as const) {
          mem.f32(p.out, T * N).fill(NaN)
          call(k, p, 0, N, s)
          assertBitwise(getF32(mem, p.out, T * N), tiles, `matmul_${dtype} K=${K} N=${N} T=${T} kc=${kc} rp=${rp} ${name}`)
          assert.equal(flags(mem, s), [0])
        }
        mem.release(mark)
      }
    }
  }
})

prefill('prefill row t equals the decode (T = 1) result for token t, bit for bit', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  const scratch = scratchWith(mem, 1), small = scratchWith(mem, 1, { kc: 16, rp: 8 })
  let seed = 900
  for (const dtype of DTYPES) for (const [K, N, T] of [[2048, 12, 3], [768, 37, 64], [131, 21, 7], [40, 9, 129]]) {
    const mark = mem.mark()
    const w = makeWeight(dtype, N, K, seed++), r = rng(seed++)
    const x = randn(r, T * K), b = randn(r, N)
    const p = place(mem, dtype, w.data, x, b, T, K, N)
    for (const s of [scratch, small]) {
      call(k, p, 0, N, s)
      const all = getF32(mem, p.out, T * N)
      for (const t of [0, 1, T >> 1, T - 1]) {
        const p1 = place(mem, dtype, w.data, x.subarray(t * K, (t + 1) * K), b, 1, K, N)
        call(k, p1, 0, N, s) // T = 1: the decode tile (a scratch does not change it)
        assertBitwise(getF32(mem, p1.out, N), all.subarray(t * N, (t + 1) * N), `matmul_${dtype} K=${K} N=${N} T=${T}: token ${t} alone`)
      }
    }
    mem.release(mark)
  }
})

prefill('1, 2 and 3 threads, any row split, fewer slots than threads: bitwise equal', () => {
  let seed = 1300
  for (const dtype of DTYPES) for (const [K, N, T] of [[256, 67, 64], [37, 19, 13], [300, 40, 2], [1030, 9, 7]]) {
    const w = makeWeight(dtype, N, K, seed++), r = rng(seed++)
    const x = randn(r, T * K), b = randn(r, N)
    const label = `matmul_${dtype} K=${K} N=${N} T=${T}`
    let ref: Float32Array | undefined
    for (const core of [core1, core2, core3]) {
      const mem = core.memories[0], mark = mem.mark()
      const p = place(mem, dtype, w.data, x, b, T, K, N)
      run(core, p, 0)
      const tiles = getF32(mem, p.out, T * N)
      ref ??= tiles
      assertBitwise(tiles, ref, `${label}: tiles on ${core.threads} threads`)
      for (const slots of [core.threads, 1]) {
        const scratch = scratchWith(mem, slots, { kc: 64, rp: 8 })
        mem.f32(p.out, T * N).fill(NaN)
        run(core, p, scratch)
        assertBitwise(getF32(mem, p.out, T * N), ref, `${label}: panel on ${core.threads} threads, ${slots} slot(s)`)
        assert.equal(flags(mem, scratch), new Array(slots).fill(0))
      }
      mem.release(mark)
    }
    // odd splits on one thread
    const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
    const p = place(mem, dtype, w.data, x, b, T, K, N)
    const scratch = scratchWith(mem, 1, { kc: 32, rp: 4 })
    for (const cuts of [[1, 6], [3], [2, 5, 11], [N - 1]]) {
      mem.f32(p.out, T * N).fill(NaN)
      const edges = [0, ...cuts.filter((c) => c > 0 && c < N), N]
      for (let i = 0; i + 1 < edges.length; i++) call(k, p, edges[i], edges[i + 1], scratch)
      assertBitwise(getF32(mem, p.out, T * N), ref!, `${label}: split ${edges}`)
    }
    mem.release(mark)
  }
})

prefill('f16 inf and NaN halves: widened exactly, as the in-register tiles do', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  const scratch = scratchWith(mem, 1), small = scratchWith(mem, 1, { kc: 8, rp: 4 })
  const N = 9, K = 40
  for (const T of [2, 3, 7, 64]) {
    const r = rng(3 + T)
    const w = makeWeight('f16', N, K, 7)
    const h = new Uint16Array(w.data.buffer)
    h[2 * K + 5] = 0x7c00 // +inf in row 2
    h[6 * K + 17] = 0xfc00 // -inf in row 6
    h[7 * K + 38] = 0x7e00 // NaN in row 7 (the scalar K tail)
    h[4 * K + 9] = 0x7d01 // a NaN with payload in row 4 (the vector part)
    h[8 * K + 3] = 0x7bff // 65504, the largest finite half
    h[1 * K + 1] = 0x0001 // the smallest subnormal
    const widened = Float32Array.from(h, halfToFloat)
    const x = Float32Array.from(randn(r, T * K), (v) => v || 0.5)
    const p = place(mem, 'f16', w.data, x, null, T, K, N)
    call(k, p, 0, N, 0)
    const tiles = getF32(mem, p.out, T * N)
    for (const s of [scratch, small]) {
      mem.f32(p.out, T * N).fill(0)
      call(k, p, 0, N, s)
      const panel = getF32(mem, p.out, T * N)
      assertBitwise(panel, tiles, `f16 inf/NaN T=${T}`, true)
      for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
        let ref = 0
        for (let kk = 0; kk < K; kk++) ref += x[t * K + kk] * widened[n * K + kk]
        const got = panel[t * N + n]
        if (Number.isNaN(ref)) assert.ok(Number.isNaN(got), `[${t}, ${n}]: NaN expected, got ${got}`)
        else if (!Number.isFinite(ref)) assert.is(got, ref, `[${t}, ${n}]: ${ref} expected`)
      }
      // decode agrees too (rows with inf / NaN take the exact redo path there)
      for (const t of [0, T - 1]) {
        const p1 = place(mem, 'f16', w.data, x.subarray(t * K, (t + 1) * K), null, 1, K, N)
        call(k, p1, 0, N, s)
        assertBitwise(getF32(mem, p1.out, N), panel.subarray(t * N, (t + 1) * N), `f16 inf/NaN T=${T} token ${t} alone`, true)
      }
    }
  }
  mem.release(mark)
})

prefill('the scratch layout: header, 64-byte aligned slots, sizes', () => {
  const mem = core1.memories[0], mark = mem.mark()
  for (const slots of [1, 2, 3, 17]) {
    const p = allocGemmScratch(mem, slots, 1000)
    assert.is(p % 64, 0)
    const h = mem.i32(p, 4)
    assert.equal([h[0], h[1], h[2], h[3]], [slots, 1024, 0, 0])
    assert.is(gemmScratchBytes(slots, 1024), 64 + Math.ceil((4 * slots) / 64) * 64 + slots * 1024)
    assert.equal(flags(mem, p), new Array(slots).fill(0))
  }
  assert.throws(() => allocGemmScratch(mem, 0), /slots/)
  mem.release(mark)
})

prefill('the wasm device passes its scratch to f32 / f16 / bf16 matmuls (one slot per thread), and f16 its finite flag', async () => {
  for (const dtype of ['F32', 'BF16', 'F16'] as const) {
    const m = await loadModel(modelDir('gpt-neo-tiny'), { device: 'wasm', threads: 2, dtype })
    try {
      const core = (m.device as WasmDevice).core
      const seen: number[] = []
      const orig = core.run
      core.run = (mm, name, nArgs, rows) => {
        // f32 / bf16: (out, x, w, b, T, K, N, scratch); f16 adds `finite` (1: the tiny model's halves are all finite)
        if (name.startsWith('matmul_') && core.args[4] > 1) seen.push(nArgs === (dtype === 'F16' ? 9 : 8) && (dtype !== 'F16' || core.args[8] === 1) ? core.args[7] : -1)
        return orig.call(core, mm, name, nArgs, rows)
      }
      const s = m.createSession()
      await s.forward(Array.from({ length: 16 }, (_, i) => 5 + i), 0)
      s.dispose()
      core.run = orig
      assert.ok(seen.length > 0, `${dtype}: prefill matmuls ran on the pool`)
      const mem = core.memories[0]
      for (const p of seen) {
        assert.ok(p > 0, `${dtype}: a scratch pointer (${p})`)
        assert.is(mem.i32(p, 1)[0], 2, `${dtype}: two slots`)
        assert.equal(flags(mem, p), [0, 0], `${dtype}: slots free after the call`)
      }
    } finally {
      await m.dispose()
    }
  }
})

prefill('a whole model: prefill logits equal token-by-token decode bit for bit (f32, bf16, f16; panel path on)', async () => {
  const ids = Array.from({ length: 20 }, (_, i) => (i * 37 + 5) % 100) // T = 20: bf16 and f16 prefill take the panel path
  for (const dtype of ['F32', 'BF16', 'F16'] as const) {
    const m = await loadModel(modelDir('gpt-neo-tiny'), { device: 'wasm', threads: 2, dtype })
    try {
      const s = m.createSession(), s1 = m.createSession()
      const all = (await s.logits(ids, 0)).slice()
      const V = all.length / ids.length
      for (let t = 0; t < ids.length; t++) {
        const row = (await s1.forward([ids[t]], t)).slice()
        assertBitwise(all.subarray(t * V, (t + 1) * V), row, `${dtype}: prefill row ${t} vs decode`)
      }
      s.dispose()
      s1.dispose()
    } finally {
      await m.dispose()
    }
  }
})

prefill.run()
