// The relaxed-SIMD build of the kernels (packages/wasm/build/refgpt-relaxed.wasm, chosen by
// REFGPT_SIMD=auto|plain|relaxed or the wasm device's `simd` option) against the plain build:
//   - matmul_q8 / matmul_q4 (and their _naive twins): relaxed == plain == the js definition, bit for bit,
//     at random shapes with partial blocks and K past one chunk, 1 and 2 threads, and at the extremes
//   - whole models (fixtures): q8, q4 and f32 logits bitwise equal on the two builds
//   - each of V8's tiers alone (--liftoff-only, --no-liftoff) gives the same bits: Node 20's Liftoff got
//     i32x4.relaxed_dot_i8x16_i7x16_add_s wrong on AVX-VNNI machines, so a kernel must be right in both
//   - without the V8 flag: detection says unsupported, auto runs plain, REFGPT_SIMD=relaxed (the option,
//     the CLI) fails with a one-line error naming the flag
// Node 20 has Relaxed SIMD only behind --experimental-wasm-relaxed-simd, so the comparisons run in a child
// process started with that flag: this file, with REFGPT_RELAXED_CHILD set, is the child (it prints one
// JSON object and registers no test).
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import {
  actBytes, createWasmCore, relaxedSimdSupported, selectSimdBuild, type SimdBuild, type SplitKernelName, type WasmCore,
} from '@refgpt/wasm'
import { createWasmDevice, loadModel } from '@refgpt/core'
import { QuantizedWeight, matmulQuantized } from '../packages/core/src/device/js.js'
import { dequantizeQ4, quantizeQ4 } from '../packages/core/src/device/storage.js'
import { loadGolden, modelDir, nodeChild, refgptWith, rng } from './helpers.js'

const RELAXED_FLAG = '--experimental-wasm-relaxed-simd'

// --- the child: every comparison, as one JSON report ------------------------------------------------

interface Mismatch { what: string; at: number; a: number; b: number }
interface Report {
  supported: boolean
  auto: SimdBuild
  envCore: SimdBuild
  kernel: { cases: number; refs: number; values: number; nonzero: number; mismatches: Mismatch[]; extremes: { q8: number; q4: number; q8Exact: number; q4Exact: number } }
  models: { what: string; n: number; maxAbs: number; simd: [string, string]; mismatches: number }[]
}

/** Pushes a mismatch for every element that differs in bits (NaN == NaN); returns the count compared. */
function compare(what: string, a: Float32Array, b: Float32Array, out: Mismatch[]): number {
  if (a.length !== b.length) out.push({ what: `${what}: length`, at: -1, a: a.length, b: b.length })
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length)
  for (let i = 0; i < a.length; i++) {
    const same = ua[i] === ub[i] || (Number.isNaN(a[i]) && Number.isNaN(b[i]))
    if (!same && out.length < 20) out.push({ what, at: i, a: a[i], b: b[i] })
  }
  return a.length
}

/** out = x · W^T (+ b) on a core: quantize_act on the main thread, then the kernel split over its threads (run). */
function coreMatmul(core: WasmCore, storage: 'Q8' | 'Q4', w: Float32Array, x: Float32Array, bias: Float32Array | null, T: number, K: number, N: number, naive: boolean): Float32Array {
  const mem = core.memories[0], k = core.kernels(0), mark = mem.mark(), Kp = Math.ceil(K / 32) * 32
  try {
    const src = mem.alloc(4 * N * K); mem.f32(src, N * K).set(w)
    const wq = mem.alloc(storage === 'Q8' ? N * Kp : (N * Kp) / 2), sc = mem.alloc((N * Kp) / 8)
    ;(storage === 'Q8' ? k.quantize_q8 : k.quantize_q4)(wq, sc, src, N, K, 0, N)
    const xp = mem.alloc(4 * T * K); mem.f32(xp, T * K).set(x)
    const bp = bias ? mem.alloc(4 * N) : 0
    if (bias) mem.f32(bp, N).set(bias)
    const xa = mem.alloc(actBytes(T, K)), out = mem.alloc(4 * T * N)
    mem.f32(out, T * N).fill(NaN)
    ;(naive ? k.quantize_act_naive : k.quantize_act)(xa, xp, T, K, storage === 'Q4' ? 1 : 0)
    const a = core.args
    a[0] = out; a[1] = xa; a[2] = wq; a[3] = sc; a[4] = bp; a[5] = T; a[6] = K; a[7] = N
    core.run(0, `matmul_${storage === 'Q8' ? 'q8' : 'q4'}${naive ? '_naive' : ''}` as SplitKernelName, 8, N)
    return mem.f32(out, T * N).slice()
  } finally {
    mem.release(mark)
  }
}

async function child(): Promise<Report> {
  const mismatches: Mismatch[] = []
  const supported = relaxedSimdSupported(), auto = selectSimdBuild('auto')
  const envProbe = await createWasmCore({ threads: 1 }) // REFGPT_SIMD from the parent (relaxed)
  const envCore = envProbe.simd
  await envProbe.close()
  const cores: Record<string, WasmCore> = {}
  for (const simd of ['plain', 'relaxed'] as const) for (const threads of [1, 2]) cores[`${simd}/${threads}`] = await createWasmCore({ threads, simd })
  let cases = 0, refs = 0, values = 0, nonzero = 0
  const r = rng(15_4)
  const randn = (n: number, scale: number) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale)
  // random shapes: partial blocks (K mod 32 != 0), rows outside whole groups of 4, K past one chunk (2048)
  const shapes: [number, number, number][] = [[1, 1, 1], [31, 5, 2], [33, 13, 3], [100, 7, 7], [768, 36, 1], [2100, 9, 4], [4128, 6, 2]]
  for (let i = 0; i < 4; i++) shapes.push([1 + Math.floor(r() * 700), 1 + Math.floor(r() * 40), 1 + Math.floor(r() * 9)])
  for (const storage of ['Q8', 'Q4'] as const) for (const [K, N, T] of shapes) {
    const w = randn(N * K, 0.5), x = randn(T * K, 3), bias = cases % 2 ? randn(N, 1) : null
    const ref = new Float32Array(T * N)
    matmulQuantized(ref, x, QuantizedWeight.quantize(w, N, K, storage), bias, T, K, N)
    refs += ref.length
    for (const v of ref) if (v !== 0 && Number.isFinite(v)) nonzero++
    for (const [name, core] of Object.entries(cores)) for (const naive of [false, true]) {
      values += compare(`${storage} K=${K} N=${N} T=${T} ${name}${naive ? ' naive' : ''} vs js`, coreMatmul(core, storage, w, x, bias, T, K, N, naive), ref, mismatches)
    }
    cases++
  }
  // the extremes: q8 weights and activations at +-127 (levels 0 / 15 for q4), every block full
  const extremes = { q8: 0, q4: 0, q8Exact: 0, q4Exact: 0 }
  for (const storage of ['Q8', 'Q4'] as const) {
    const K = 256, N = 8, T = 2
    const w = Float32Array.from({ length: N * K }, (_, i) => ((i >> 3) % 2 ? 1 : -1) * (storage === 'Q4' && i % 2 ? 0.875 : 1))
    // token 0: x = 5 sign(w[0, k]) (every product of row 0 at +127 * +-127, or the level's extreme); token 1: mixed signs
    const x = Float32Array.from({ length: T * K }, (_, i) => (i < K ? Math.sign(w[i]) : i % 3 ? 1 : -1) * 5)
    const ref = new Float32Array(T * N)
    matmulQuantized(ref, x, QuantizedWeight.quantize(w, N, K, storage), null, T, K, N)
    for (const [name, core] of Object.entries(cores)) values += compare(`${storage} extremes ${name}`, coreMatmul(core, storage, w, x, null, T, K, N, false), ref, mismatches)
    // the exact value of out[0, 0] from the dequantized weights (activations +-5 quantize exactly: +-127 at 5 / 127)
    const q4 = storage === 'Q4' ? quantizeQ4(w, N, K) : null
    const wd = q4 ? dequantizeQ4(q4.levels, q4.scales, N, K) : w
    let exact = 0
    for (let k = 0; k < K; k++) exact += wd[k] * x[k]
    extremes[storage === 'Q8' ? 'q8' : 'q4'] = ref[0]
    extremes[storage === 'Q8' ? 'q8Exact' : 'q4Exact'] = exact
  }
  for (const c of Object.values(cores)) await c.close()

  // whole models: logits of a prompt, plain vs relaxed
  const models: Report['models'] = []
  for (const name of ['gpt2-tiny', 'gpt-neo-odd'] as const) for (const dtype of ['Q8', 'Q4', 'F32'] as const) for (const threads of [1, 2]) {
    const ids: number[] = loadGolden(name).json.prompts.p2.ids
    const logits: Float32Array[] = [], simd: string[] = []
    for (const build of ['plain', 'relaxed'] as const) {
      const device = await createWasmDevice({ threads, simd: build })
      const m = await loadModel(modelDir(name), { device, dtype })
      const s = m.createSession()
      logits.push((await s.logits(ids, 0)).slice())
      simd.push(device.simd)
      s.dispose()
      await m.dispose()
      await device.dispose()
    }
    const before = mismatches.length
    const n = compare(`${name} ${dtype} ${threads} threads logits`, logits[0], logits[1], mismatches)
    let maxAbs = 0
    for (const v of logits[0]) maxAbs = Math.max(maxAbs, Math.abs(v))
    models.push({ what: `${name} ${dtype} ${threads}t`, n, maxAbs, simd: simd as [string, string], mismatches: mismatches.length - before })
  }
  return { supported, auto, envCore, kernel: { cases, refs, values, nonzero, mismatches, extremes }, models }
}

/** Where the runtime lacks Relaxed SIMD: what detection says and the errors asking for it give. */
async function childUnsupported() {
  const errorOf = async (f: () => Promise<unknown>) => {
    try {
      await f()
      return null
    } catch (e) {
      return (e as Error).message
    }
  }
  const auto = await createWasmCore({ threads: 1, simd: 'auto' })
  const autoSimd = auto.simd
  await auto.close()
  return {
    supported: relaxedSimdSupported(),
    auto: selectSimdBuild('auto'),
    autoCore: autoSimd,
    optionError: await errorOf(() => createWasmCore({ threads: 1, simd: 'relaxed' })),
    deviceError: await errorOf(() => createWasmDevice({ threads: 2, simd: 'relaxed' })),
    envError: await errorOf(async () => { process.env.REFGPT_SIMD = 'relaxed'; try { return await createWasmCore({ threads: 1 }) } finally { delete process.env.REFGPT_SIMD } }),
    badEnvError: await errorOf(async () => { process.env.REFGPT_SIMD = 'fast'; try { return await createWasmCore({ threads: 1 }) } finally { delete process.env.REFGPT_SIMD } }),
  }
}

if (process.env.REFGPT_RELAXED_CHILD) {
  const report = process.env.REFGPT_RELAXED_CHILD === 'unsupported' ? await childUnsupported() : await child()
  process.stdout.write(`${JSON.stringify(report)}\n`)
  process.exit(0)
}

// --- the tests (the parent) ---------------------------------------------------------------------------

const SELF = new URL(import.meta.url).pathname

function runChild(flags: string[], mode: 'compare' | 'unsupported') {
  const r = nodeChild(flags, SELF, [], { REFGPT_RELAXED_CHILD: mode, REFGPT_SIMD: mode === 'compare' ? 'relaxed' : undefined })
  assert.is(r.code, 0, `child ${flags.join(' ')} exited ${r.code}: ${r.stderr.slice(-2000)}`)
  const line = r.stdout.trim().split('\n').pop() ?? ''
  return JSON.parse(line)
}

function checkReport(rep: Report, label: string) {
  assert.is(rep.supported, true, `${label}: relaxed SIMD detected with ${RELAXED_FLAG}`)
  assert.is(rep.auto, 'relaxed', `${label}: auto picks relaxed where supported`)
  assert.is(rep.envCore, 'relaxed', `${label}: REFGPT_SIMD=relaxed gives a relaxed core`)
  const k = rep.kernel
  assert.equal(k.mismatches, [], `${label}: kernel outputs differ`)
  assert.is(k.cases, 22, `${label}: kernel cases`)
  // every output of 22 random cases on 4 cores x (SIMD, naive), and 2 x 4 extreme ones (16 outputs each)
  assert.is(k.values, 8 * k.refs + 2 * 4 * 16, `${label}: values compared`)
  assert.ok(k.refs > 500 && k.nonzero > 0.9 * k.refs, `${label}: the products are not trivial (${k.nonzero} of ${k.refs} nonzero)`)
  // the extremes, out[0, 0]: q8 256 products of 127 x 127 (1280 exactly: |w| = 1, |x| = 5); q4 the levels 0 and 15 x 127;
  // the f32 value is the exact product up to the scales' rounding
  assert.ok(Math.abs(k.extremes.q8Exact - 1280) < 1e-9 && Math.abs(k.extremes.q8 - 1280) <= 1e-3, `${label}: q8 extreme ${k.extremes.q8} vs 1280`)
  assert.ok(k.extremes.q4Exact > 1000 && Math.abs(k.extremes.q4 - k.extremes.q4Exact) <= 1e-5 * k.extremes.q4Exact, `${label}: q4 extreme ${k.extremes.q4} vs ${k.extremes.q4Exact}`)
  assert.is(rep.models.length, 12, `${label}: model runs`)
  for (const m of rep.models) {
    assert.equal(m.simd, ['plain', 'relaxed'], `${label} ${m.what}: the devices report their builds`)
    assert.is(m.mismatches, 0, `${label} ${m.what}: logits plain vs relaxed differ`)
    assert.ok(m.n > 1000 && m.maxAbs > 0.1 && Number.isFinite(m.maxAbs), `${label} ${m.what}: ${m.n} logits, max |logit| ${m.maxAbs}`)
  }
}

const t = suite('relaxed SIMD build: the same bits as the plain build')

t('with --experimental-wasm-relaxed-simd: q8 / q4 kernels (1 and 2 threads, naive too) and q8 / q4 / f32 model logits equal the plain build bit for bit', () => {
  checkReport(runChild([RELAXED_FLAG], 'compare'), 'default tiers')
})

t('each V8 tier alone (--liftoff-only, --no-liftoff) gives the same bits', () => {
  checkReport(runChild([RELAXED_FLAG, '--liftoff-only'], 'compare'), '--liftoff-only')
  checkReport(runChild([RELAXED_FLAG, '--no-liftoff'], 'compare'), '--no-liftoff')
})

t('without the flag: unsupported, auto runs plain, asking for relaxed is a one-line error naming the flag', () => {
  const rep = runChild(['--no-experimental-wasm-relaxed-simd'], 'unsupported')
  assert.is(rep.supported, false)
  assert.is(rep.auto, 'plain')
  assert.is(rep.autoCore, 'plain')
  for (const key of ['optionError', 'deviceError', 'envError']) {
    const msg = rep[key] as string | null
    assert.ok(msg !== null, `${key}: no error`)
    assert.ok(!msg!.includes('\n'), `${key}: one line: ${msg}`)
    assert.match(msg!, /does not support Relaxed SIMD/)
    assert.match(msg!, /--experimental-wasm-relaxed-simd/)
  }
  assert.match(rep.badEnvError as string, /REFGPT_SIMD=fast: expected auto, plain or relaxed/)
})

t('the CLI: `refgpt bench --json` reports the build; REFGPT_SIMD=relaxed without the flag exits non-zero with one line', () => {
  const args = ['bench', '--shape', 'gpt2', '--layers', '1', '--dtype', 'q4', '--prompt-tokens', '4', '--new-tokens', '2', '--no-rows', '--no-probe', '--json']
  const plain = refgptWith(['--no-experimental-wasm-relaxed-simd'], args, { REFGPT_SIMD: undefined })
  assert.is(plain.code, 0, plain.stderr)
  assert.is(JSON.parse(plain.stdout).simd, 'plain')
  const relaxed = refgptWith([RELAXED_FLAG], args, { REFGPT_SIMD: undefined })
  assert.is(relaxed.code, 0, relaxed.stderr)
  assert.is(JSON.parse(relaxed.stdout).simd, 'relaxed')
  const forced = refgptWith([RELAXED_FLAG], args, { REFGPT_SIMD: 'plain' })
  assert.is(JSON.parse(forced.stdout).simd, 'plain')
  const bad = refgptWith(['--no-experimental-wasm-relaxed-simd'], args, { REFGPT_SIMD: 'relaxed' })
  assert.is.not(bad.code, 0)
  assert.is(bad.stdout, '')
  const lines = bad.stderr.trim().split('\n')
  assert.is(lines.length, 1, `one line: ${bad.stderr}`)
  assert.match(lines[0], /Relaxed SIMD.*--experimental-wasm-relaxed-simd/)
})

t.run()
