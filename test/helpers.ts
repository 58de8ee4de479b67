// Shared test helpers: fixture paths, golden files, tolerance checks, one test body per device.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { crc32 } from 'node:zlib'
import type { Test } from 'uvu'
import * as assert from 'uvu/assert'
import { DEVICES, createDevice, loadModel, openSafetensors, type DeviceName, type LoadOptions, type Model, type Session } from '@refgpt/core'

export const fixture = (rel: string) => fileURLToPath(new URL(`./fixtures/${rel}`, import.meta.url))
export const modelDir = (name: string) => fixture(`models/${name}`)

// Symlinks cannot be made everywhere (Windows without developer mode: EPERM). Probed once; a test that
// needs one is registered as skipped there, and says so (a skip is reported as a skip, never a pass).
export const SYMLINK_ERROR: string | null = (() => {
  const dir = mkdtempSync(join(tmpdir(), 'refgpt-link-'))
  try {
    writeFileSync(join(dir, 'target'), 'x')
    symlinkSync('target', join(dir, 'link'))
    return readFileSync(join(dir, 'link'), 'utf8') === 'x' ? null : 'a symlink does not read its target'
  } catch (e) {
    return `cannot create symlinks here (${(e as NodeJS.ErrnoException).code ?? String(e)})`
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})()

/** `s` for a test that needs symlinks, or `s.skip` (printing "SKIP name: reason") where they cannot be made. */
export function linkTest<T>(s: Test<T>, name: string): Test<T> | Test<T>['skip'] {
  if (SYMLINK_ERROR === null) return s
  console.log(`  SKIP ${name}: ${SYMLINK_ERROR}`)
  return s.skip
}

/** mulberry32: a small seeded PRNG in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export const MODELS = ['gpt2-tiny', 'gpt-neo-tiny', 'gpt-j-tiny', 'gpt-neo-odd'] as const

/**
 * Why the webgpu device cannot run here (no `webgpu` package, no adapter: no GPU and no SwiftShader), or
 * null when it can. Probed once per test process; where it cannot, the webgpu variants are reported as
 * "SKIP webgpu ..." lines, which CI counts as failures (scripts/test.mjs).
 */
export const WEBGPU_ERROR: string | null = await (async () => {
  try {
    const dev = await createDevice('webgpu')
    await dev.dispose?.()
    return null
  } catch (e) {
    return e instanceof Error ? e.message : String(e)
  }
})()

/** Every device this build has that can run here: model tests run one body on each (candle's test_device!). */
export const TEST_DEVICES: readonly DeviceName[] = DEVICES.filter((d) => d !== 'webgpu' || WEBGPU_ERROR === null)
if (WEBGPU_ERROR !== null) console.log(`  SKIP webgpu device tests: ${WEBGPU_ERROR}`)

/**
 * The fixture models a device's engine tests run on: all of them on js and wasm; on webgpu two (GPT-2's
 * shapes and GPT-Neo's odd ones with local attention), because SwiftShader, the CPU driver CI runs it on,
 * takes ~60 ms a token with a 50k vocabulary. The golden model tests (models / gpt3) run every fixture on it.
 */
export function modelsOn(device: DeviceName, names: readonly string[] = MODELS): string[] {
  return device === 'webgpu' ? names.filter((n) => n === 'gpt2-tiny' || n === 'gpt-neo-odd') : [...names]
}

export interface Golden {
  json: any
  tensor(name: string): Float32Array
  shape(name: string): number[]
}

export function loadGolden(model: string): Golden {
  const dir = modelDir(model)
  const json = JSON.parse(readFileSync(`${dir}/golden.json`, 'utf8'))
  const st = openSafetensors(`${dir}/golden.safetensors`)
  return {
    json,
    tensor: (name) => st.readF32(name),
    shape: (name) => st.tensors.get(name)!.shape,
  }
}

/** Golden README tolerances. */
export const TOL = { logits: { atol: 1e-4, rtol: 1e-4 }, hidden: { atol: 1e-4, rtol: 1e-4 }, probs: { atol: 1e-5, rtol: Infinity } }

/** Max |a - b| and max |a - b| / max(|b|, 1) — llm.c's check_tensor, with the golden README's relative error. */
export function maxDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): { abs: number; rel: number } {
  assert.is(actual.length, expected.length, 'length')
  let abs = 0, rel = 0
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i])
    if (!(d <= abs)) abs = d // NaN-safe: NaN makes abs NaN
    const r = d / Math.max(Math.abs(expected[i]), 1)
    if (!(r <= rel)) rel = r
  }
  return { abs, rel }
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: { atol: number; rtol: number }, label: string) {
  const { abs, rel } = maxDiff(actual, expected)
  assert.ok(abs <= tol.atol && rel <= tol.rtol, `${label}: max abs ${abs.toExponential(2)} (tol ${tol.atol}), max rel ${rel.toExponential(2)} (tol ${tol.rtol})`)
  return { abs, rel }
}

/**
 * assert.throws for async calls: `fn` must reject (or throw) with an error whose message matches `expected`
 * (generate(), modelscopeGenerate(), exportGolden() ... are async, so their errors arrive as rejections).
 */
export async function rejects(fn: () => unknown, expected: RegExp, msg?: string): Promise<void> {
  let err: unknown, threw = false
  try {
    await fn()
  } catch (e) {
    threw = true
    err = e
  }
  assert.ok(threw, msg ?? `expected a rejection matching ${expected}`)
  const message = err instanceof Error ? err.message : String(err)
  assert.ok(expected.test(message), msg ?? `error ${JSON.stringify(message)} does not match ${expected}`)
}

/** Rows `rows` of a [T, width] array. */
export function pickRows(a: Float32Array, width: number, rows: number[]): Float32Array {
  const out = new Float32Array(rows.length * width)
  rows.forEach((r, i) => out.set(a.subarray(r * width, (r + 1) * width), i * width))
  return out
}

/** A minimal zip writer (stored entries, no compression) for hand-made torch checkpoints in tests. */
export function zipStored(entries: Record<string, Uint8Array>): Buffer {
  const locals: Buffer[] = [], centrals: Buffer[] = []
  let offset = 0
  for (const [name, data] of Object.entries(entries)) {
    const n = Buffer.from(name, 'utf8'), crc = crc32(data)
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(20, 4); local.writeUInt32LE(crc, 14)
    local.writeUInt32LE(data.length, 18); local.writeUInt32LE(data.length, 22); local.writeUInt16LE(n.length, 26)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0); central.writeUInt16LE(20, 4); central.writeUInt16LE(20, 6)
    central.writeUInt32LE(crc, 16); central.writeUInt32LE(data.length, 20); central.writeUInt32LE(data.length, 24)
    central.writeUInt16LE(n.length, 28); central.writeUInt32LE(offset, 42)
    locals.push(local, n, Buffer.from(data)); centrals.push(central, n)
    offset += 30 + n.length + data.length
  }
  const cd = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(centrals.length / 2, 8); end.writeUInt16LE(centrals.length / 2, 10)
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, cd, end])
}

/** Reads a safetensors file into its parsed header and data region (tests only: whole file in memory). */
export function readSafetensors(file: string): { header: Record<string, any>; data: Buffer } {
  const buf = readFileSync(file)
  const n = Number(buf.readBigUInt64LE(0))
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), data: buf.subarray(8 + n) }
}

/** Writes a safetensors file from a header object and a data region (no validation: tests make broken ones). */
export function writeSafetensors(file: string, header: Record<string, any>, data: Uint8Array, headerLength?: bigint) {
  const json = Buffer.from(JSON.stringify(header), 'utf8')
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(headerLength ?? BigInt(json.length))
  writeFileSync(file, Buffer.concat([len, json, data]))
}

const BIN = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url))

/** Runs the built `refgpt` binary as a user would. */
export function refgpt(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', input, timeout: 120_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

// A hung test (a thread waiting forever) must fail CI, not stall it: every test file imports this module.
// uvu runs every file in one process, so this bounds the whole suite (about 9 minutes on 2 quiet cores;
// a loaded machine takes twice that), well inside CI's 90 minutes.
const WATCHDOG_MS = 40 * 60_000
setTimeout(() => {
  console.error(`test watchdog: still running after ${WATCHDOG_MS / 60_000} minutes; exiting`)
  process.exit(1)
}, WATCHDOG_MS).unref()

/** Loads a model, runs fn with it and a fresh session on it, then disposes both. */
export async function withModel<T>(name: string, opts: LoadOptions, fn: (m: Model, s: Session) => T | Promise<T>): Promise<T> {
  const m = await loadModel(modelDir(name), opts)
  const s = m.createSession()
  try {
    return await fn(m, s)
  } finally {
    s.dispose()
    await m.dispose()
  }
}

/**
 * Where the wasm device keeps block b of row n of a q8 / q4 weight with `rows` rows of `blocks` blocks
 * (quant.ts), in blocks: K chunks of 64 blocks (chunk c at rows * 64c), in a chunk rows in groups of 4
 * (the last one smaller) at 4g * cb, the blocks of a group's R rows interleaved (block b of row r at b R + r).
 */
export function groupedBlock(n: number, b: number, rows: number, blocks: number): number {
  const g0 = n & ~3, R = Math.min(4, rows - g0)
  const c0 = b - (b % 64), cb = Math.min(64, blocks - c0)
  return rows * c0 + g0 * cb + (b - c0) * R + (n & 3)
}

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/**
 * Runs `node <flags> script <args>` in the repository root the way the tests run (tsx, the `source`
 * export condition), with env added to this process's environment (an undefined value removes the
 * variable): for checks that need V8 flags, such as --experimental-wasm-relaxed-simd on Node 20.
 */
export function nodeChild(flags: string[], script: string, args: string[] = [], env: Record<string, string | undefined> = {}) {
  const r = spawnSync(process.execPath, [...flags, '--conditions=source', '--import', 'tsx', script, ...args], { cwd: ROOT, encoding: 'utf8', env: childEnv(env), timeout: 600_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** refgpt() with node flags before the binary and env added (an undefined value removes the variable). */
export function refgptWith(flags: string[], args: string[], env: Record<string, string | undefined> = {}, input?: string) {
  const r = spawnSync(process.execPath, [...flags, BIN, ...args], { encoding: 'utf8', input, env: childEnv(env), timeout: 120_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

function childEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env }
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete out[k]
    else out[k] = v
  }
  return out
}
