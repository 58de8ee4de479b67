// The training kernels of @refgpt/wasm (assembly/backward.ts, act_backward.ts, crossentropy.ts), SIMD
// and _naive: against float64 references computed here, against central finite differences of float64
// forwards (L = Σ dout ⊙ forward(...), perturbed input by input), and bitwise independence of the
// split / thread count (core.run with 1, 2, 3 threads). TRAIN_ERRORS=1 prints the worst error of each check.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { SPLIT_KERNELS, createWasmCore, type KernelExports, type SplitKernelName, type WasmCore, type WasmMemory } from '@refgpt/wasm'
import { rng } from './helpers.js'

// --- helpers -------------------------------------------------------------------------------------

const randn = (r: () => number, n: number, scale = 1) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale)
const put = (mem: WasmMemory, a: Float32Array) => {
  const p = mem.alloc(a.length * 4, 16)
  mem.f32(p, a.length).set(a)
  return p
}
const putI = (mem: WasmMemory, a: Int32Array) => {
  const p = mem.alloc(a.length * 4, 16)
  mem.i32(p, a.length).set(a)
  return p
}
const get = (mem: WasmMemory, p: number, n: number) => mem.f32(p, n).slice()
const f64 = (a: ArrayLike<number>) => Float64Array.from(a)
const absMax = (a: ArrayLike<number>) => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]))
  return m
}

/** Worst measured error per check (printed with TRAIN_ERRORS=1). */
const worst = new Map<string, number>()
/**
 * Asserts |got[i] - ref[i]| <= tol * scale(i) for every i (NaN fails) and records the worst
 * |got - ref| / scale under `key`.
 */
function check(key: string, label: string, got: ArrayLike<number>, ref: ArrayLike<number>, scale: (i: number) => number, tol: number) {
  assert.is(got.length, ref.length, `${label}: length`)
  let m = worst.get(key) ?? 0
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]), s = scale(i)
    const e = d === 0 ? 0 : d / s
    if (!(e <= tol)) assert.unreachable(`${label}: [${i}] got ${got[i]}, expected ${ref[i]} (|diff| ${d.toExponential(2)}, ${e.toExponential(2)} of the scale ${s.toExponential(2)} > ${tol})`)
    m = Math.max(m, e)
  }
  worst.set(key, m)
}
/** check() against finite differences: errors relative to the largest |ref| of the array. */
function checkFD(key: string, label: string, got: ArrayLike<number>, fd: ArrayLike<number>, tol: number) {
  const s = Math.max(absMax(fd), 1e-30)
  check(key, label, got, fd, () => s, tol)
}
function assertBitwise(a: Float32Array, b: Float32Array, label: string) {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length)
  assert.is(ua.length, ub.length, `${label}: length`)
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.unreachable(`${label}: [${i}] ${a[i]} !== ${b[i]}`)
}

/** Central differences of L at every element of p (perturbed in place, restored). */
function fdGrad(L: () => number, p: Float64Array, h = 1e-5): Float64Array {
  const g = new Float64Array(p.length)
  for (let i = 0; i < p.length; i++) {
    const v = p[i]
    p[i] = v + h
    const lp = L()
    p[i] = v - h
    const lm = L()
    p[i] = v
    g[i] = (lp - lm) / (2 * h)
  }
  return g
}
const dotL = (dout: ArrayLike<number>, out: ArrayLike<number>) => {
  let s = 0
  for (let i = 0; i < out.length; i++) s += dout[i] * out[i]
  return s
}

/** Gradient tolerances: f32 kernels vs float64 (relative to each element's magnitude: the sum of |terms|). */
const TOL_REF = 2e-6
/** f32 kernels vs finite differences of the float64 forward (relative to the array's largest gradient). */
const TOL_FD = 1e-5

let core1: WasmCore, core2: WasmCore, core3: WasmCore

// --- exports ---------------------------------------------------------------------------------------

const NEW_SPLIT = [
  'matmul_backward_dx', 'matmul_backward_dx_naive', 'matmul_backward_dw', 'matmul_backward_dw_naive',
  'attention_backward', 'attention_backward_naive', 'crossentropy', 'crossentropy_naive',
]
const NEW_EXPORTS = [
  'layernorm_forward', 'layernorm_backward', 'matmul_backward_dx', 'matmul_backward_dw', 'embed_backward',
  'rotary_backward', 'attention_backward', 'crossentropy',
  ...['gelu_tanh', 'gelu_erf', 'relu', 'silu', 'quick_gelu'].map((a) => `${a}_backward`),
].flatMap((n) => [n, `${n}_naive`])

const abi = suite('wasm training kernels: exports')
abi.before(async () => {
  core1 = await createWasmCore({ threads: 1 })
  core2 = await createWasmCore({ threads: 2 })
  core3 = await createWasmCore({ threads: 3 })
})
abi('every training kernel is exported; the split ones are appended to SPLIT_KERNELS (old ids unchanged)', () => {
  const k = core1.kernels(0) as unknown as Record<string, unknown>
  for (const n of NEW_EXPORTS) assert.type(k[n], 'function', n)
  assert.is(NEW_EXPORTS.length, 26)
  assert.equal(SPLIT_KERNELS.slice(0, 15), [
    'matmul_f32', 'matmul_f16', 'matmul_bf16', 'matmul_q8',
    'matmul_f32_naive', 'matmul_f16_naive', 'matmul_bf16_naive', 'matmul_q8_naive',
    'attention', 'attention_naive', 'probe_stream_read', 'probe_madd', 'touch_pages', 'logprobs', 'logprobs_naive',
  ])
  assert.equal(SPLIT_KERNELS.slice(15, 15 + NEW_SPLIT.length), NEW_SPLIT)
  assert.equal(SPLIT_KERNELS.slice(15 + NEW_SPLIT.length), ['matmul_q4', 'matmul_q4_naive', 'matmul_f32g', 'matmul_f32g_naive']) // issue 15
})
abi.run()

// --- layernorm -------------------------------------------------------------------------------------

const ln = suite('wasm training kernels: layernorm_forward, layernorm_backward')

function lnForward64(x: Float64Array, g: Float64Array, b: Float64Array, T: number, C: number, eps: number) {
  const out = new Float64Array(T * C), mean = new Float64Array(T), rstd = new Float64Array(T)
  for (let t = 0; t < T; t++) {
    let m = 0
    for (let c = 0; c < C; c++) m += x[t * C + c]
    m /= C
    let v = 0
    for (let c = 0; c < C; c++) v += (x[t * C + c] - m) ** 2
    const r = 1 / Math.sqrt(v / C + eps)
    for (let c = 0; c < C; c++) out[t * C + c] = (x[t * C + c] - m) * r * g[c] + b[c]
    mean[t] = m
    rstd[t] = r
  }
  return { out, mean, rstd }
}
/** float64 backward from given mean / rstd, added to the bases; with the magnitudes of the terms. */
function lnBackward64(base: { dx: Float32Array; dg: Float32Array; db: Float32Array }, dout: Float32Array, x: Float32Array, g: Float32Array,
  mean: ArrayLike<number>, rstd: ArrayLike<number>, T: number, C: number) {
  const dx = f64(base.dx), dg = f64(base.dg), db = f64(base.db)
  const mdx = dx.map(Math.abs), mdg = dg.map(Math.abs), mdb = db.map(Math.abs)
  for (let t = 0; t < T; t++) {
    const m = mean[t], r = rstd[t]
    let sd = 0, sdn = 0, ad = 0, adn = 0
    for (let c = 0; c < C; c++) {
      const norm = (x[t * C + c] - m) * r, dn = g[c] * dout[t * C + c]
      sd += dn; sdn += dn * norm; ad += Math.abs(dn); adn += Math.abs(dn * norm)
    }
    for (let c = 0; c < C; c++) {
      const i = t * C + c, norm = (x[i] - m) * r, dn = g[c] * dout[i]
      db[c] += dout[i]; mdb[c] += Math.abs(dout[i])
      dg[c] += norm * dout[i]; mdg[c] += Math.abs(norm * dout[i])
      dx[i] += (dn - sd / C - norm * (sdn / C)) * r
      mdx[i] += (Math.abs(dn) + ad / C + Math.abs(norm) * (adn / C)) * r
    }
  }
  return { dx, dg, db, mdx, mdg, mdb }
}

ln('layernorm_forward (and _naive) is bitwise layernorm (and _naive), plus mean and rstd; in place too', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const [T, C] of [[5, 7], [3, 1], [4, 16], [2, 37], [3, 64], [2, 768]]) {
    const r = rng(T * 100 + C)
    const x = Float32Array.from(randn(r, T * C, 2), (v, i) => v + (i % 5)), g = randn(r, C), b = randn(r, C)
    const eps = 1e-5
    const ref = lnForward64(f64(x), f64(g), f64(b), T, C, eps)
    const xp = put(mem, x), gp = put(mem, g), bp = put(mem, b)
    for (const [fwd, plain] of [['layernorm_forward', 'layernorm'], ['layernorm_forward_naive', 'layernorm_naive']] as const) {
      const o1 = mem.alloc(T * C * 4), o2 = mem.alloc(T * C * 4), mp = mem.alloc(T * 4), rp = mem.alloc(T * 4)
      k[plain](o1, xp, gp, bp, T, C, eps)
      k[fwd](o2, mp, rp, xp, gp, bp, T, C, eps)
      assertBitwise(get(mem, o2, T * C), get(mem, o1, T * C), `${fwd} T=${T} C=${C} vs ${plain}`)
      check(`${fwd} mean/rstd vs f64`, `${fwd} mean T=${T} C=${C}`, get(mem, mp, T), ref.mean, (i) => Math.max(1, Math.abs(ref.mean[i])), TOL_REF)
      check(`${fwd} mean/rstd vs f64`, `${fwd} rstd T=${T} C=${C}`, get(mem, rp, T), ref.rstd, (i) => ref.rstd[i], TOL_REF)
      const xin = put(mem, x)
      k[fwd](xin, mp, rp, xin, gp, bp, T, C, eps)
      assertBitwise(get(mem, xin, T * C), get(mem, o1, T * C), `${fwd} T=${T} C=${C} in place`)
    }
  }
  mem.release(mark)
})

ln('layernorm_backward (and _naive) accumulates: against float64 and finite differences', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  for (const [T, C] of [[5, 7], [3, 1], [4, 16], [2, 37], [3, 64], [6, 20], [2, 768]]) {
    const mark = mem.mark()
    const r = rng(T * 1000 + C)
    const x = Float32Array.from(randn(r, T * C, 2), (v, i) => v + (i % 3)), g = randn(r, C, 1.5), b = randn(r, C), dout = randn(r, T * C)
    const eps = 1e-5
    const xp = put(mem, x), gp = put(mem, g), bp = put(mem, b), dyp = put(mem, dout)
    const op = mem.alloc(T * C * 4), mp = mem.alloc(T * 4), rp = mem.alloc(T * 4)
    k.layernorm_forward(op, mp, rp, xp, gp, bp, T, C, eps)
    const mean = get(mem, mp, T), rstd = get(mem, rp, T)
    const base = { dx: randn(r, T * C), dg: randn(r, C), db: randn(r, C) }
    const zero = { dx: new Float32Array(T * C), dg: new Float32Array(C), db: new Float32Array(C) }
    // finite differences of L = Σ dout ⊙ LN(x, g, b)
    const x64 = f64(x), g64 = f64(g), b64 = f64(b)
    const L = () => dotL(dout, lnForward64(x64, g64, b64, T, C, eps).out)
    const fd = C > 1 && C < 100 ? { dx: fdGrad(L, x64), dg: fdGrad(L, g64), db: fdGrad(L, b64) } : null
    for (const fn of ['layernorm_backward', 'layernorm_backward_naive'] as const) {
      for (const start of [base, zero]) {
        const dxp = put(mem, start.dx), dgp = put(mem, start.dg), dbp = put(mem, start.db)
        k[fn](dxp, dgp, dbp, dyp, xp, gp, mp, rp, T, C)
        const got = { dx: get(mem, dxp, T * C), dg: get(mem, dgp, C), db: get(mem, dbp, C) }
        const ref = lnBackward64(start, dout, x, g, mean, rstd, T, C)
        const label = `${fn} T=${T} C=${C}${start === base ? ' (accumulating)' : ''}`
        check(`${fn} vs f64`, `${label} dx`, got.dx, ref.dx, (i) => ref.mdx[i] + 1e-30, TOL_REF)
        check(`${fn} vs f64`, `${label} dg`, got.dg, ref.dg, (i) => ref.mdg[i] + 1e-30, TOL_REF)
        check(`${fn} vs f64`, `${label} db`, got.db, ref.db, (i) => ref.mdb[i] + 1e-30, TOL_REF)
        if (start === zero && fd) {
          checkFD(`${fn} vs FD`, `${label} dx vs FD`, got.dx, fd.dx, TOL_FD)
          checkFD(`${fn} vs FD`, `${label} dg vs FD`, got.dg, fd.dg, TOL_FD)
          checkFD(`${fn} vs FD`, `${label} db vs FD`, got.db, fd.db, TOL_FD)
        }
      }
    }
    // dx may alias dout: dx ends as dout + the gradient
    const alias = put(mem, dout), dg2 = put(mem, zero.dg), db2 = put(mem, zero.db)
    const sep = put(mem, dout), dg3 = put(mem, zero.dg), db3 = put(mem, zero.db)
    k.layernorm_backward(alias, dg2, db2, alias, xp, gp, mp, rp, T, C)
    k.layernorm_backward(sep, dg3, db3, dyp, xp, gp, mp, rp, T, C)
    assertBitwise(get(mem, alias, T * C), get(mem, sep, T * C), `layernorm_backward T=${T} C=${C}: dx aliasing dout`)
    mem.release(mark)
  }
})

ln.run()

// --- matmul backward ---------------------------------------------------------------------------------

const mm = suite('wasm training kernels: matmul_backward_dx, matmul_backward_dw')

interface MMCase { T: number; K: number; N: number }
const MM_CASES: MMCase[] = [
  { T: 5, K: 13, N: 9 }, { T: 1, K: 1, N: 1 }, { T: 7, K: 16, N: 3 }, { T: 3, K: 37, N: 33 }, { T: 33, K: 20, N: 5 },
  { T: 4, K: 20, N: 70 }, { T: 2, K: 64, N: 2 }, { T: 6, K: 3, N: 4 }, { T: 9, K: 35, N: 34 },
]

function mmData(c: MMCase, seed: number) {
  const r = rng(seed)
  const { T, K, N } = c
  return {
    x: randn(r, T * K), w: randn(r, N * K), b: randn(r, N), dout: randn(r, T * N),
    dx0: randn(r, T * K), dw0: randn(r, N * K), db0: randn(r, N),
  }
}
/** float64 gradients added to the bases, with the magnitudes (|base| + Σ |terms|). */
function mmBackward64(d: ReturnType<typeof mmData>, c: MMCase, zero: boolean) {
  const { T, K, N } = c
  const dx = zero ? new Float64Array(T * K) : f64(d.dx0), dw = zero ? new Float64Array(N * K) : f64(d.dw0), db = zero ? new Float64Array(N) : f64(d.db0)
  const mdx = dx.map(Math.abs), mdw = dw.map(Math.abs), mdb = db.map(Math.abs)
  for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
    const g = d.dout[t * N + n]
    db[n] += g; mdb[n] += Math.abs(g)
    for (let kk = 0; kk < K; kk++) {
      dx[t * K + kk] += g * d.w[n * K + kk]; mdx[t * K + kk] += Math.abs(g * d.w[n * K + kk])
      dw[n * K + kk] += g * d.x[t * K + kk]; mdw[n * K + kk] += Math.abs(g * d.x[t * K + kk])
    }
  }
  return { dx, dw, db, mdx, mdw, mdb }
}
function mmForward64(x: Float64Array, w: Float64Array, b: Float64Array, c: MMCase) {
  const { T, K, N } = c
  const out = new Float64Array(T * N)
  for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
    let s = b[n]
    for (let kk = 0; kk < K; kk++) s += x[t * K + kk] * w[n * K + kk]
    out[t * N + n] = s
  }
  return out
}

mm('matmul_backward_dx / _dw (and _naive) accumulate: against float64 and finite differences; SIMD == naive bitwise', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  let seed = 1
  for (const c of MM_CASES) {
    const mark = mem.mark()
    const { T, K, N } = c
    const d = mmData(c, seed++)
    const x64 = f64(d.x), w64 = f64(d.w), b64 = f64(d.b)
    const L = () => dotL(d.dout, mmForward64(x64, w64, b64, c))
    const fd = { dx: fdGrad(L, x64, 1e-3), dw: fdGrad(L, w64, 1e-3), db: fdGrad(L, b64, 1e-3) }
    const xp = put(mem, d.x), wp = put(mem, d.w), dyp = put(mem, d.dout)
    const outs: Record<string, Float32Array[]> = {}
    for (const zero of [false, true]) {
      const ref = mmBackward64(d, c, zero)
      for (const naive of [false, true]) {
        const sfx = naive ? '_naive' : ''
        const dxp = put(mem, zero ? new Float32Array(T * K) : d.dx0)
        const dwp = put(mem, zero ? new Float32Array(N * K) : d.dw0)
        const dbp = put(mem, zero ? new Float32Array(N) : d.db0)
        k[`matmul_backward_dx${sfx}` as 'matmul_backward_dx'](0, T, dxp, dyp, wp, T, K, N)
        k[`matmul_backward_dw${sfx}` as 'matmul_backward_dw'](0, N, dwp, dbp, dyp, xp, T, K, N)
        const got = { dx: get(mem, dxp, T * K), dw: get(mem, dwp, N * K), db: get(mem, dbp, N) }
        ;(outs[String(zero)] ??= []).push(got.dx, got.dw, got.db)
        const label = `matmul_backward${sfx} T=${T} K=${K} N=${N}${zero ? '' : ' (accumulating)'}`
        check(`matmul_backward_dx${sfx} vs f64`, `${label} dx`, got.dx, ref.dx, (i) => ref.mdx[i] + 1e-30, TOL_REF)
        check(`matmul_backward_dw${sfx} vs f64`, `${label} dw`, got.dw, ref.dw, (i) => ref.mdw[i] + 1e-30, TOL_REF)
        check(`matmul_backward_dw${sfx} vs f64`, `${label} db`, got.db, ref.db, (i) => ref.mdb[i] + 1e-30, TOL_REF)
        if (zero) {
          checkFD(`matmul_backward_dx${sfx} vs FD`, `${label} dx vs FD`, got.dx, fd.dx, TOL_FD)
          checkFD(`matmul_backward_dw${sfx} vs FD`, `${label} dw vs FD`, got.dw, fd.dw, TOL_FD)
          checkFD(`matmul_backward_dw${sfx} vs FD`, `${label} db vs FD`, got.db, fd.db, TOL_FD)
        }
      }
    }
    // the SIMD tiles and the scalar loop run the same per-element sequence
    for (const o of Object.values(outs)) for (let i = 0; i < 3; i++) assertBitwise(o[i], o[i + 3], `matmul_backward T=${T} K=${K} N=${N}: SIMD vs naive [${i}]`)
    // db = 0: no bias, dw the same
    const dwp = put(mem, d.dw0)
    k.matmul_backward_dw(0, N, dwp, 0, dyp, xp, T, K, N)
    assertBitwise(get(mem, dwp, N * K), outs.false[1], `matmul_backward_dw T=${T} K=${K} N=${N}: db = 0`)
    mem.release(mark)
  }
})

mm('matmul_backward_dx / _dw on shapes past the kernels\' blocks (N > 128 rows of W, T > 64 tokens): vs float64; SIMD == naive bitwise', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  // dx sums n in blocks of 128 (each block's partial sum added to dx) and tokens in blocks of 64; dW rows in blocks of 32
  for (const c of [{ T: 130, K: 37, N: 300 }, { T: 66, K: 16, N: 257 }, { T: 3, K: 5, N: 129 }]) {
    const mark = mem.mark()
    const { T, K, N } = c
    const d = mmData(c, 5)
    const ref = mmBackward64(d, c, false)
    const xp = put(mem, d.x), wp = put(mem, d.w), dyp = put(mem, d.dout)
    const got: Float32Array[][] = []
    for (const sfx of ['', '_naive']) {
      const dxp = put(mem, d.dx0), dwp = put(mem, d.dw0), dbp = put(mem, d.db0)
      k[`matmul_backward_dx${sfx}` as 'matmul_backward_dx'](0, T, dxp, dyp, wp, T, K, N)
      k[`matmul_backward_dw${sfx}` as 'matmul_backward_dw'](0, N, dwp, dbp, dyp, xp, T, K, N)
      const g = [get(mem, dxp, T * K), get(mem, dwp, N * K), get(mem, dbp, N)]
      const label = `matmul_backward${sfx} T=${T} K=${K} N=${N}`
      check(`matmul_backward_dx${sfx} vs f64`, `${label} dx`, g[0], ref.dx, (i) => ref.mdx[i] + 1e-30, TOL_REF)
      check(`matmul_backward_dw${sfx} vs f64`, `${label} dw`, g[1], ref.dw, (i) => ref.mdw[i] + 1e-30, TOL_REF)
      check(`matmul_backward_dw${sfx} vs f64`, `${label} db`, g[2], ref.db, (i) => ref.mdb[i] + 1e-30, TOL_REF)
      got.push(g)
    }
    for (let i = 0; i < 3; i++) assertBitwise(got[0][i], got[1][i], `matmul_backward T=${T} K=${K} N=${N}: SIMD vs naive [${i}]`)
    mem.release(mark)
  }
})

mm('matmul_backward_dx / _dw: any row split on one thread gives the same bits; r1 / n1 are clamped', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  for (const c of [{ T: 37, K: 45, N: 23 }, { T: 70, K: 21, N: 66 }, { T: 3, K: 16, N: 5 }, { T: 131, K: 20, N: 140 }]) {
    const mark = mem.mark()
    const { T, K, N } = c
    const d = mmData(c, 77)
    const xp = put(mem, d.x), wp = put(mem, d.w), dyp = put(mem, d.dout)
    const wholeX = put(mem, d.dx0), wholeW = put(mem, d.dw0), wholeB = put(mem, d.db0)
    k.matmul_backward_dx(0, T + 5, wholeX, dyp, wp, T, K, N)
    k.matmul_backward_dw(0, N + 5, wholeW, wholeB, dyp, xp, T, K, N)
    for (const cuts of [[1], [2, 5, 11], [33], [T - 1, N - 1]]) {
      const edges = (n: number) => [0, ...cuts.filter((v) => v > 0 && v < n).sort((a, b) => a - b), n]
      const ex = edges(T), en = edges(N)
      const dxp = put(mem, d.dx0), dwp = put(mem, d.dw0), dbp = put(mem, d.db0)
      for (let i = ex.length - 2; i >= 0; i--) k.matmul_backward_dx(ex[i], ex[i + 1], dxp, dyp, wp, T, K, N)
      for (let i = 0; i + 1 < en.length; i++) k.matmul_backward_dw(en[i], en[i + 1], dwp, dbp, dyp, xp, T, K, N)
      assertBitwise(get(mem, dxp, T * K), get(mem, wholeX, T * K), `matmul_backward_dx ${JSON.stringify(c)} split ${ex}`)
      assertBitwise(get(mem, dwp, N * K), get(mem, wholeW, N * K), `matmul_backward_dw ${JSON.stringify(c)} split ${en}`)
      assertBitwise(get(mem, dbp, N), get(mem, wholeB, N), `matmul_backward_dw db ${JSON.stringify(c)} split ${en}`)
    }
    mem.release(mark)
  }
})

mm.run()

// --- activations ------------------------------------------------------------------------------------

const act = suite('wasm training kernels: activation backward')

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI)
/** Numerical Recipes' erfc of z >= 0 (the forward kernels' and the js device's approximation). */
function erfcNR(z: number): number {
  const t = 1 / (1 + 0.5 * z)
  return t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
}
/** The js device's erf. */
const erf = (x: number) => (x >= 0 ? 1 - erfcNR(x) : erfcNR(-x) - 1)
/** 0.5 (1 + erf(x / sqrt 2)) without the cancellation for x < 0. */
const Phi = (x: number) => (x >= 0 ? 1 - 0.5 * erfcNR(x / Math.SQRT2) : 0.5 * erfcNR(-x / Math.SQRT2))
const ACTS = {
  gelu_tanh: (x: number) => 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))),
  gelu_erf: (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  relu: (x: number) => (x > 0 ? x : 0),
  silu: (x: number) => x / (1 + Math.exp(-x)),
  quick_gelu: (x: number) => x / (1 + Math.exp(-1.702 * x)),
}
type ActName = keyof typeof ACTS
/** sigmoid in float64 without cancellation on either side. */
const sig = (a: number) => (a >= 0 ? 1 / (1 + Math.exp(-a)) : Math.exp(a) / (1 + Math.exp(a)))
/**
 * f'(x) in float64 as [first term, second term, |exp argument|]: their sum is f', and
 * (|first| + |second|) max(1, |exp argument|) the error scale (an f32 exp argument a rounds by up to
 * 2^-24 |a|, which exp turns into a relative error). x sigmoid(a(x)) forms: f' = sigmoid(a) + x a' sigmoid(a) sigmoid(-a) (for gelu_tanh the
 * same function as 0.5 (1 + tanh u) + ..., which underflows to 0 in float64 for x < -9).
 */
function actGrad(x: number, a: ActName): [number, number, number] {
  const xsig = (av: number, da: number): [number, number, number] => [sig(av), x * da * sig(av) * sig(-av), Math.abs(av)]
  switch (a) {
    case 'gelu_tanh': return xsig(2 * SQRT_2_OVER_PI * (x + 0.044715 * x ** 3), 2 * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x))
    case 'gelu_erf': return [Phi(x), (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI), 0.5 * x * x]
    case 'relu': return [x > 0 ? 1 : 0, 0, 0]
    case 'silu': return xsig(x, 1)
    case 'quick_gelu': return xsig(1.702 * x, 1.702)
  }
}

act('activation backward (and _naive) stores dout * act\'(x): against float64 and finite differences; SIMD == naive bitwise', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  const r = rng(21)
  // a grid over [-12, 12] (also the ranges where gelu_tanh' and gelu_erf' cross zero) and random points
  const xs = Float32Array.from({ length: 2403 }, (_, i) => (i < 2401 ? -12 + i / 100 : (r() * 2 - 1) * 30))
  const n = xs.length
  const dout = Float32Array.from(randn(r, n), (v) => v + Math.sign(v) * 0.1)
  const xp = put(mem, xs), dyp = put(mem, dout)
  for (const a of Object.keys(ACTS) as ActName[]) {
    const outs: Float32Array[] = []
    for (const sfx of ['', '_naive']) {
      const fn = `${a}_backward${sfx}` as 'relu_backward'
      const dxp = mem.alloc(n * 4)
      mem.f32(dxp, n).fill(NaN)
      k[fn](dxp, xp, dyp, n)
      const got = get(mem, dxp, n)
      outs.push(got)
      const ref = new Float64Array(n), mag = new Float64Array(n)
      for (let i = 0; i < n; i++) {
        const [p, q, amp] = actGrad(xs[i], a)
        ref[i] = dout[i] * (p + q)
        mag[i] = Math.abs(dout[i]) * (Math.abs(p) + Math.abs(q)) * Math.max(1, amp) + 1e-30 // (the float64 reference cancels below that)
      }
      check(`${fn} vs f64`, fn, got, ref, (i) => mag[i], TOL_REF)
      // where the exp arguments are small (|x| <= 4): plainly relative to |dout| (|first| + |second|)
      const small = Array.from(xs.keys()).filter((i) => Math.abs(xs[i]) <= 4)
      check(`${fn} vs f64 (|x| <= 4)`, `${fn} |x| <= 4`, small.map((i) => got[i]), small.map((i) => ref[i]),
        (j) => mag[small[j]] / Math.max(1, actGrad(xs[small[j]], a)[2]), TOL_REF)
      // finite differences of the float64 forward, per element, where the forward is smooth (|x| > 1e-3 for relu)
      const fd = new Float64Array(n), sc = new Float64Array(n)
      const h = 1e-5, f = ACTS[a]
      for (let i = 0; i < n; i++) {
        const x = xs[i]
        if (a === 'relu' && Math.abs(x) < 1e-3) { fd[i] = got[i]; continue }
        fd[i] = dout[i] * ((f(x + h) - f(x - h)) / (2 * h))
        const [p, q] = actGrad(x, a)
        sc[i] = Math.abs(dout[i]) * Math.max(1e-3, Math.abs(p) + Math.abs(q))
      }
      // relative to each element's scale (floored at 1e-3: FD's absolute error is about 1e-10)
      check(`${fn} vs FD`, `${fn} vs FD`, got, fd, (i) => sc[i] || 1, TOL_FD)
      // dx may alias dout
      const alias = put(mem, dout)
      k[fn](alias, xp, alias, n)
      assertBitwise(get(mem, alias, n), got, `${fn} dx aliasing dout`)
    }
    assertBitwise(outs[0], outs[1], `${a}_backward SIMD vs naive`)
  }
  mem.release(mark)
})

act('activation backward at special inputs: +-inf, huge, 0, NaN', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  const xs = Float32Array.from([Infinity, -Infinity, 1e30, -1e30, 3e38, -3e38, 0, -0, NaN, 200, -200])
  const n = xs.length, ones = new Float32Array(n).fill(2)
  const xp = put(mem, xs), dyp = put(mem, ones), dxp = mem.alloc(n * 4)
  for (const a of Object.keys(ACTS) as ActName[]) for (const sfx of ['', '_naive']) {
    const fn = `${a}_backward${sfx}` as 'relu_backward'
    k[fn](dxp, xp, dyp, n)
    const got = get(mem, dxp, n)
    const exp = [2, 0, 2, 0, 2, 0, a === 'relu' ? 0 : 1, a === 'relu' ? 0 : 1, a === 'relu' ? 0 : NaN, 2, 0]
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(exp[i])) assert.ok(Number.isNaN(got[i]), `${fn}(${xs[i]}) = ${got[i]}, expected NaN`)
      else assert.ok(Math.abs(got[i] - exp[i]) <= 1e-30, `${fn}(${xs[i]}) = ${got[i]}, expected ${exp[i]}`)
    }
  }
  mem.release(mark)
})

act.run()

// --- embed, rotary -------------------------------------------------------------------------------------

const er = suite('wasm training kernels: embed_backward, rotary_backward')

er('embed_backward (and _naive): dtable[ids[t]] += dout[t] in t order (repeated ids, negative ids skipped); finite differences', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const C of [1, 5, 7, 16, 37]) {
    const V = 6, T = 9, r = rng(C)
    const ids = Int32Array.from([3, -1, 5, 3, 0, -7, 3, 5, 2])
    const dout = randn(r, T * C), base = randn(r, V * C)
    // the f32 sums in t order
    const exp = base.slice()
    for (let t = 0; t < T; t++) if (ids[t] >= 0) for (let c = 0; c < C; c++) exp[ids[t] * C + c] = Math.fround(exp[ids[t] * C + c] + dout[t * C + c])
    // FD of L = Σ dout ⊙ table[ids] (a zero row for negative ids)
    const tab = f64(randn(r, V * C))
    const L = () => {
      let s = 0
      for (let t = 0; t < T; t++) if (ids[t] >= 0) for (let c = 0; c < C; c++) s += dout[t * C + c] * tab[ids[t] * C + c]
      return s
    }
    const fd = fdGrad(L, tab, 1e-3)
    const ip = putI(mem, ids), dyp = put(mem, dout)
    for (const fn of ['embed_backward', 'embed_backward_naive'] as const) {
      const dp = put(mem, base)
      k[fn](dp, dyp, ip, T, C)
      assertBitwise(get(mem, dp, V * C), exp, `${fn} C=${C}`)
      const zp = mem.alloc(V * C * 4)
      k[fn](zp, dyp, ip, T, C)
      checkFD(`${fn} vs FD`, `${fn} C=${C} vs FD`, get(mem, zp, V * C), fd, TOL_FD)
      check(`${fn} vs f64`, `${fn} C=${C}`, get(mem, dp, V * C), exp, () => 1, 0)
    }
  }
  mem.release(mark)
})

function rotaryTable(nPos: number, R: number) {
  const table = new Float32Array(nPos * R)
  for (let p = 0; p < nPos; p++) for (let i = 0; i < R / 2; i++) {
    const inv = Math.fround(1 / Math.fround(10000 ** Math.fround((2 * i) / R)))
    const ang = Math.fround(p * inv)
    table[p * R + 2 * i] = Math.cos(ang); table[p * R + 2 * i + 1] = Math.sin(ang)
  }
  return table
}
function rotary64(x: Float64Array, table: Float32Array, pos: Int32Array, T: number, H: number, D: number, R: number, inverse: boolean) {
  const out = Float64Array.from(x)
  for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let i = 0; i < R / 2; i++) {
    const c = table[pos[t] * R + 2 * i], s = (inverse ? -1 : 1) * table[pos[t] * R + 2 * i + 1], o = t * H * D + h * D + 2 * i
    out[o] = x[o] * c - x[o + 1] * s
    out[o + 1] = x[o + 1] * c + x[o] * s
  }
  return out
}

er('rotary_backward (and _naive): the inverse rotation in place; against float64, finite differences, rotary round trip; SIMD == naive bitwise', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  for (const [T, H, D, R] of [[5, 3, 5, 4], [5, 3, 8, 8], [4, 2, 16, 6], [3, 4, 64, 32], [2, 1, 10, 2], [3, 2, 7, 0]]) {
    const nPos = 40, r = rng(D * 10 + R)
    const table = rotaryTable(nPos, R)
    const pos = Int32Array.from({ length: T }, () => Math.floor(r() * nPos))
    const dout = randn(r, T * H * D)
    const ref = rotary64(f64(dout), table, pos, T, H, D, R, true)
    const x64 = f64(randn(r, T * H * D))
    const fd = fdGrad(() => dotL(dout, rotary64(x64, table, pos, T, H, D, R, false)), x64, 1e-3)
    const tp = put(mem, table), pp = putI(mem, pos)
    const outs: Float32Array[] = []
    for (const fn of ['rotary_backward', 'rotary_backward_naive'] as const) {
      const p = put(mem, dout)
      k[fn](p, tp, pp, T, H, D, R)
      const got = get(mem, p, dout.length)
      outs.push(got)
      const label = `${fn} T=${T} H=${H} D=${D} R=${R}`
      check(`${fn} vs f64`, label, got, ref, (i) => Math.max(Math.abs(dout[i]), Math.abs(ref[i]), 1e-30), TOL_REF)
      checkFD(`${fn} vs FD`, `${label} vs FD`, got, fd, TOL_FD)
      // rotary then rotary_backward gives x back (cos^2 + sin^2 = 1 up to rounding)
      const q = put(mem, dout)
      k.rotary(q, tp, pp, T, H, D, R)
      k[fn](q, tp, pp, T, H, D, R)
      check(`${fn} round trip`, `${label} round trip`, get(mem, q, dout.length), dout, () => 1, 5e-7)
    }
    assertBitwise(outs[0], outs[1], `rotary_backward SIMD vs naive T=${T} H=${H} D=${D} R=${R}`)
  }
  mem.release(mark)
})

er.run()

// --- attention -------------------------------------------------------------------------------------

const at = suite('wasm training kernels: attention_backward')

interface AttnCase { T: number; H: number; D: number; window: number; scale: number }
const ATTN_CASES: AttnCase[] = [
  { T: 5, H: 3, D: 5, window: 0, scale: 1 / Math.sqrt(5) }, { T: 5, H: 3, D: 5, window: 3, scale: 1 },
  { T: 7, H: 2, D: 8, window: 0, scale: 0.35 }, { T: 6, H: 2, D: 16, window: 4, scale: 0.25 },
  { T: 1, H: 1, D: 3, window: 0, scale: 0.5 }, { T: 9, H: 3, D: 37, window: 3, scale: 1 / Math.sqrt(37) },
  { T: 4, H: 1, D: 1, window: 1, scale: 1 },
]

function attnForward64(q: Float64Array, k: Float64Array, v: Float64Array, c: AttnCase) {
  const { T, H, D, window, scale } = c
  const C = H * D, out = new Float64Array(T * C)
  for (let h = 0; h < H; h++) for (let i = 0; i < T; i++) {
    const first = window > 0 ? Math.max(0, i - window + 1) : 0
    const s: number[] = []
    for (let j = first; j <= i; j++) {
      let d = 0
      for (let e = 0; e < D; e++) d += q[i * C + h * D + e] * k[j * C + h * D + e]
      s.push(d * scale)
    }
    const m = Math.max(...s), ex = s.map((x) => Math.exp(x - m)), sum = ex.reduce((a, b) => a + b, 0)
    for (let j = first; j <= i; j++) for (let e = 0; e < D; e++) out[i * C + h * D + e] += (ex[j - first] / sum) * v[j * C + h * D + e]
  }
  return out
}
/** float64 backward from the given probs (added to the bases), with magnitudes from |terms|. */
function attnBackward64(base: { dq: Float32Array; dk: Float32Array; dv: Float32Array }, dout: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, probs: Float32Array, c: AttnCase) {
  const { T, H, D, window, scale } = c
  const C = H * D
  const dq = f64(base.dq), dk = f64(base.dk), dv = f64(base.dv)
  const mq = dq.map(Math.abs), mk = dk.map(Math.abs), mv = dv.map(Math.abs)
  for (let h = 0; h < H; h++) for (let i = 0; i < T; i++) {
    const first = window > 0 ? Math.max(0, i - window + 1) : 0
    const row = (h * T + i) * T, io = i * C + h * D
    const dp: number[] = [], adp: number[] = []
    let sum = 0, asum = 0
    for (let j = first; j <= i; j++) {
      let d = 0, ad = 0
      for (let e = 0; e < D; e++) { d += dout[io + e] * v[j * C + h * D + e]; ad += Math.abs(dout[io + e] * v[j * C + h * D + e]) }
      dp[j] = d; adp[j] = ad
      sum += probs[row + j] * d; asum += probs[row + j] * ad
    }
    for (let j = first; j <= i; j++) {
      const p = probs[row + j], g = p * (dp[j] - sum) * scale, ag = p * (adp[j] + asum) * Math.abs(scale), jo = j * C + h * D
      for (let e = 0; e < D; e++) {
        dv[jo + e] += p * dout[io + e]; mv[jo + e] += Math.abs(p * dout[io + e])
        dq[io + e] += g * k[jo + e]; mq[io + e] += ag * Math.abs(k[jo + e])
        dk[jo + e] += g * q[io + e]; mk[jo + e] += ag * Math.abs(q[io + e])
      }
    }
  }
  return { dq, dk, dv, mq, mk, mv }
}
/** Random q, k, v, dout and the probabilities the wasm forward (attention, pos0 = 0) writes for them. */
function attnData(mem: WasmMemory, kern: KernelExports, c: AttnCase, seed: number) {
  const r = rng(seed), n = c.T * c.H * c.D
  const q = randn(r, n, 1.5), k = randn(r, n, 1.5), v = randn(r, n), dout = randn(r, n)
  const base = { dq: randn(r, n), dk: randn(r, n), dv: randn(r, n) }
  const qp = put(mem, q), kp = put(mem, k), vp = put(mem, v), dyp = put(mem, dout)
  const pp = mem.alloc(c.H * c.T * c.T * 4), out = mem.alloc(n * 4), scratch = mem.alloc(c.H * c.T * 4)
  kern.attention(0, c.H, out, qp, kp, vp, pp, scratch, c.T, 0, c.H, c.D, c.scale, c.window)
  return { q, k, v, dout, base, qp, kp, vp, dyp, pp, probs: get(mem, pp, c.H * c.T * c.T) }
}

at('attention_backward (and _naive) accumulates: against float64 (given probs) and finite differences of the float64 forward', () => {
  const mem = core1.memories[0], kern = core1.kernels(0)
  let seed = 300
  for (const c of ATTN_CASES) {
    const mark = mem.mark()
    const { T, H, D } = c, n = T * H * D
    const d = attnData(mem, kern, c, seed++)
    const q64 = f64(d.q), k64 = f64(d.k), v64 = f64(d.v)
    const L = () => dotL(d.dout, attnForward64(q64, k64, v64, c))
    const fd = { dq: fdGrad(L, q64), dk: fdGrad(L, k64), dv: fdGrad(L, v64) }
    const zero = { dq: new Float32Array(n), dk: new Float32Array(n), dv: new Float32Array(n) }
    for (const fn of ['attention_backward', 'attention_backward_naive'] as const) for (const start of [d.base, zero]) {
      const dqp = put(mem, start.dq), dkp = put(mem, start.dk), dvp = put(mem, start.dv)
      kern[fn](0, H, dqp, dkp, dvp, d.dyp, d.qp, d.kp, d.vp, d.pp, T, H, D, c.scale, c.window)
      const got = { dq: get(mem, dqp, n), dk: get(mem, dkp, n), dv: get(mem, dvp, n) }
      const ref = attnBackward64(start, d.dout, d.q, d.k, d.v, d.probs, c)
      const label = `${fn} T=${T} H=${H} D=${D} window=${c.window}${start === zero ? '' : ' (accumulating)'}`
      check(`${fn} vs f64`, `${label} dq`, got.dq, ref.dq, (i) => ref.mq[i] + 1e-30, TOL_REF)
      check(`${fn} vs f64`, `${label} dk`, got.dk, ref.dk, (i) => ref.mk[i] + 1e-30, TOL_REF)
      check(`${fn} vs f64`, `${label} dv`, got.dv, ref.dv, (i) => ref.mv[i] + 1e-30, TOL_REF)
      if (start === zero) {
        checkFD(`${fn} vs FD`, `${label} dq vs FD`, got.dq, fd.dq, TOL_FD)
        checkFD(`${fn} vs FD`, `${label} dk vs FD`, got.dk, fd.dk, TOL_FD)
        checkFD(`${fn} vs FD`, `${label} dv vs FD`, got.dv, fd.dv, TOL_FD)
      }
    }
    mem.release(mark)
  }
})

at('attention_backward: a head split on one thread gives the same bits as one call', () => {
  const mem = core1.memories[0], kern = core1.kernels(0), mark = mem.mark()
  const c: AttnCase = { T: 9, H: 5, D: 13, window: 0, scale: 0.3 }, n = c.T * c.H * c.D
  const d = attnData(mem, kern, c, 5)
  const run = (splits: number[]) => {
    const dqp = put(mem, d.base.dq), dkp = put(mem, d.base.dk), dvp = put(mem, d.base.dv)
    for (let i = 0; i + 1 < splits.length; i++) kern.attention_backward(splits[i], splits[i + 1], dqp, dkp, dvp, d.dyp, d.qp, d.kp, d.vp, d.pp, c.T, c.H, c.D, c.scale, c.window)
    return [get(mem, dqp, n), get(mem, dkp, n), get(mem, dvp, n)]
  }
  const whole = run([0, 5])
  for (const s of [[0, 1, 2, 3, 4, 5], [0, 3, 5], [0, 4, 5]]) {
    const got = run(s)
    for (let i = 0; i < 3; i++) assertBitwise(got[i], whole[i], `attention_backward split ${s} [${i}]`)
  }
  mem.release(mark)
})

at.run()

// --- cross-entropy -------------------------------------------------------------------------------------

const ce = suite('wasm training kernels: crossentropy')

function ceRef(x: Float32Array, targets: Int32Array, T: number, V: number, scale: number) {
  const loss = new Float64Array(T), dl = new Float64Array(T * V), mag = new Float64Array(T * V)
  for (let t = 0; t < T; t++) {
    if (targets[t] < 0) continue
    let m = -Infinity
    for (let j = 0; j < V; j++) m = Math.max(m, x[t * V + j])
    let s = 0
    for (let j = 0; j < V; j++) s += Math.exp(x[t * V + j] - m)
    const lse = m + Math.log(s)
    loss[t] = lse - x[t * V + targets[t]]
    for (let j = 0; j < V; j++) {
      const p = Math.exp(x[t * V + j] - lse)
      dl[t * V + j] = (p - (j === targets[t] ? 1 : 0)) * scale
      // the f32 x - max rounds by up to 2^-24 |x - max|, which exp turns into a relative error of p
      mag[t * V + j] = Math.abs(dl[t * V + j]) + p * Math.abs(scale) * Math.max(1, x[t * V + j] - m === -Infinity ? 1 : m - x[t * V + j]) + 1e-38
    }
  }
  return { loss, dl, mag }
}
function ceCase(T: number, V: number, seed: number, spread = 4) {
  const r = rng(seed)
  const x = randn(r, T * V, spread)
  const targets = Int32Array.from({ length: T }, () => Math.floor(r() * V))
  return { x, targets }
}

ce('crossentropy (and _naive) stores losses and (softmax - onehot) * scale: against float64 and finite differences; aliasing', () => {
  const mem = core1.memories[0], k = core1.kernels(0)
  let seed = 500
  for (const [T, V] of [[5, 7], [4, 13], [3, 1], [2, 4], [6, 33], [3, 50257]]) {
    const mark = mem.mark()
    const { x, targets } = ceCase(T, V, seed++)
    if (T >= 4) targets[2] = -1 // ignore_index: loss 0, zero row
    if (V > 4) { x[1 * V + targets[1]] = 30 } // p_target close to 1: the target gradient without cancellation
    const scale = 1 / T
    const ref = ceRef(x, targets, T, V, scale)
    const x64 = f64(x)
    const fd = V <= 64 ? fdGrad(() => {
      let s = 0
      for (let t = 0; t < T; t++) {
        if (targets[t] < 0) continue
        let m = -Infinity
        for (let j = 0; j < V; j++) m = Math.max(m, x64[t * V + j])
        let e = 0
        for (let j = 0; j < V; j++) e += Math.exp(x64[t * V + j] - m)
        s += scale * (m + Math.log(e) - x64[t * V + targets[t]])
      }
      return s
    }, x64) : null
    const xp = put(mem, x), tp = putI(mem, targets), lp = mem.alloc(T * 4)
    for (const fn of ['crossentropy', 'crossentropy_naive'] as const) {
      const dp = mem.alloc(T * V * 4)
      mem.f32(dp, T * V).fill(NaN)
      mem.f32(lp, T).fill(NaN)
      k[fn](0, T, dp, lp, xp, tp, T, V, scale)
      const got = get(mem, dp, T * V), loss = get(mem, lp, T)
      const label = `${fn} T=${T} V=${V}`
      check(`${fn} loss vs f64`, `${label} loss`, loss, ref.loss, (i) => Math.max(1, Math.abs(ref.loss[i])), TOL_REF)
      check(`${fn} dlogits vs f64`, `${label} dlogits`, got, ref.dl, (i) => ref.mag[i], TOL_REF)
      if (fd) checkFD(`${fn} vs FD`, `${label} vs FD`, got, fd, TOL_FD)
      if (T >= 4) {
        assert.is(loss[2], 0, `${label}: ignored row loss`)
        for (let j = 0; j < V; j++) assert.is(got[2 * V + j], 0, `${label}: ignored row [${j}]`)
      }
      assertBitwise(get(mem, xp, T * V), x, `${label}: logits unchanged`)
      // dlogits may alias logits
      const ap = put(mem, x), lp2 = mem.alloc(T * 4)
      k[fn](0, T, ap, lp2, ap, tp, T, V, scale)
      assertBitwise(get(mem, ap, T * V), got, `${label}: dlogits aliasing logits`)
      assertBitwise(get(mem, lp2, T), loss, `${label}: losses with aliasing`)
      // row by row (any split) gives the same bits
      const rp = mem.alloc(T * V * 4), lp3 = mem.alloc(T * 4)
      for (let t = T - 1; t >= 0; t--) k[fn](t, t + 1, rp, lp3, xp, tp, T, V, scale)
      assertBitwise(get(mem, rp, T * V), got, `${label}: row by row`)
      assertBitwise(get(mem, lp3, T), loss, `${label}: losses row by row`)
    }
    mem.release(mark)
  }
})

ce('crossentropy: out-of-range target gives NaN, r1 is clamped to T, -inf logits get exactly 0', () => {
  const mem = core1.memories[0], k = core1.kernels(0), mark = mem.mark()
  const V = 9, x = randn(rng(4), 2 * V, 5)
  x[3] = -Infinity
  const xp = put(mem, x), tp = putI(mem, Int32Array.from([1, V])), lp = mem.alloc(3 * 4), dp = mem.alloc(3 * V * 4)
  for (const fn of ['crossentropy', 'crossentropy_naive'] as const) {
    mem.f32(lp, 3).fill(7)
    mem.f32(dp, 3 * V).fill(7)
    k[fn](0, 3, dp, lp, xp, tp, 2, V, 1)
    const loss = get(mem, lp, 3), d = get(mem, dp, 3 * V)
    assert.ok(Number.isFinite(loss[0]), `${fn}: row 0 loss ${loss[0]}`)
    assert.is(d[3], 0, `${fn}: a -inf logit has a zero gradient`)
    assert.ok(Number.isNaN(loss[1]), `${fn}: target >= V gives a NaN loss`)
    for (let j = 0; j < V; j++) assert.ok(Number.isNaN(d[V + j]), `${fn}: target >= V gives a NaN row`)
    assert.is(loss[2], 7, `${fn}: rows past T are not written`)
    assert.is(d[2 * V], 7, `${fn}: rows past T are not written`)
  }
  mem.release(mark)
})

ce.run()

// --- through the pool -------------------------------------------------------------------------------------

const pool = suite('wasm training kernels: split across threads (core.run) equals one thread bitwise')

/** Runs `name` through core.run on fresh copies of `inputs` (f32 / i32 arrays), returns the arrays at `outputs`. */
function viaPool(core: WasmCore | null, name: SplitKernelName, rows: number, args: (p: number[]) => number[], inputs: (Float32Array | Int32Array)[], outputs: number[]) {
  const c = core ?? core1
  const mem = c.memories[0], mark = mem.mark()
  const p = inputs.map((a) => (a instanceof Int32Array ? putI(mem, a) : put(mem, a)))
  const a = args(p)
  if (core) {
    a.forEach((v, i) => (core.args[i] = v))
    core.run(0, name, a.length, rows)
  } else {
    ;(core1.kernels(0) as unknown as Record<string, (...x: number[]) => void>)[name](0, rows, ...a)
  }
  const res = outputs.map((i) => get(mem, p[i], inputs[i].length))
  mem.release(mark)
  return res
}
function samePool(label: string, name: SplitKernelName, rows: number, args: (p: number[]) => number[], inputs: (Float32Array | Int32Array)[], outputs: number[]) {
  const single = viaPool(null, name, rows, args, inputs, outputs)
  for (const core of [core1, core2, core3]) {
    const got = viaPool(core, name, rows, args, inputs, outputs)
    got.forEach((g, i) => assertBitwise(g, single[i], `${label} threads=${core.threads} output ${i}`))
  }
}

pool('matmul_backward_dx / _dw (and _naive) through core.run', () => {
  for (const c of [{ T: 37, K: 45, N: 23 }, { T: 70, K: 21, N: 66 }, { T: 5, K: 13, N: 9 }]) {
    const d = mmData(c, 900 + c.T)
    const { T, K, N } = c
    for (const sfx of ['', '_naive']) {
      // inputs: dx0, dout, w
      samePool(`matmul_backward_dx${sfx} ${JSON.stringify(c)}`, `matmul_backward_dx${sfx}` as SplitKernelName, T,
        (p) => [p[0], p[1], p[2], T, K, N], [d.dx0, d.dout, d.w], [0])
      // inputs: dw0, db0, dout, x
      samePool(`matmul_backward_dw${sfx} ${JSON.stringify(c)}`, `matmul_backward_dw${sfx}` as SplitKernelName, N,
        (p) => [p[0], p[1], p[2], p[3], T, K, N], [d.dw0, d.db0, d.dout, d.x], [0, 1])
    }
  }
})

pool('attention_backward (and _naive) through core.run (13 arguments after the split range)', () => {
  for (const c of [{ T: 9, H: 5, D: 13, window: 0, scale: 0.3 }, { T: 6, H: 3, D: 5, window: 3, scale: 1 }, { T: 4, H: 2, D: 64, window: 0, scale: 0.125 }]) {
    const mem = core1.memories[0], mark = mem.mark()
    const d = attnData(mem, core1.kernels(0), c, 40 + c.D)
    mem.release(mark)
    for (const sfx of ['', '_naive']) {
      // inputs: dq, dk, dv, dout, q, k, v, probs
      samePool(`attention_backward${sfx} ${JSON.stringify(c)}`, `attention_backward${sfx}` as SplitKernelName, c.H,
        (p) => [...p, c.T, c.H, c.D, c.scale, c.window], [d.base.dq, d.base.dk, d.base.dv, d.dout, d.q, d.k, d.v, d.probs], [0, 1, 2])
    }
  }
})

pool('crossentropy (and _naive) through core.run', () => {
  for (const [T, V] of [[7, 1001], [5, 7], [3, 50257]]) {
    const { x, targets } = ceCase(T, V, 70 + T)
    targets[1] = -1
    for (const sfx of ['', '_naive']) {
      // inputs: dlogits, losses, logits, targets
      samePool(`crossentropy${sfx} T=${T} V=${V}`, `crossentropy${sfx}` as SplitKernelName, T,
        (p) => [p[0], p[1], p[2], p[3], T, V, 0.5], [new Float32Array(T * V), new Float32Array(T), x, targets], [0, 1])
    }
  }
})

pool('run() takes up to 14 arguments after the split range', () => {
  assert.throws(() => core1.run(0, 'crossentropy', 15, 1), /at most 14 arguments/)
})

pool.after(async () => {
  await Promise.all([core1.close(), core2.close(), core3.close()])
  if (process.env.TRAIN_ERRORS) {
    const rows = [...worst.entries()].sort(([a], [b]) => a.localeCompare(b))
    process.stderr.write(`\nworst errors (vs f64: relative to |base| + Σ|terms|; vs FD: relative to the largest |gradient|):\n${rows.map(([k, v]) => `  ${k.padEnd(44)} ${v.toExponential(2)}`).join('\n')}\n`)
  }
})

pool.run()
