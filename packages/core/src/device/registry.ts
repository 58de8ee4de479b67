// Devices by name. Model code never imports a device: it receives a Device object, made here from a
// name ('wasm', 'js', 'webgpu', or one a program registers). The
// built-in devices are imported only when first asked for, so a program that never uses the wasm
// device never compiles its kernels.

import { UsageError, show } from '../errors.js'
import type { Model, StaticGraphOptions } from '../models/model.js'
import type { Device } from './types.js'

export interface DeviceOptions {
  /** Set by createDevice when the name was transformers' 'gpu' / 'cuda': a device then refuses a software (CPU) driver. */
  gpuOnly?: boolean
  /** wasm: threads including the calling one (default: the number of cores). */
  threads?: number
  /** wasm: bytes per linear memory before layers spill into the next one (default ~4 GiB; tests set it small). */
  memoryBytes?: number
  /** Bytes one buffer may hold (default: the device's own limit); tests set it small to split weights. */
  maxBufferBytes?: number
}

export type DeviceFactory = (opts: DeviceOptions) => Promise<Device>

const factories = new Map<string, DeviceFactory>()

/** Makes `name` available to loadModel({ device: name }) and the CLI's --device. The first registered is the default. */
export function registerDevice(name: string, factory: DeviceFactory): void {
  if (!/^[a-z][a-z0-9_-]*$/.test(name)) throw new UsageError({ where: 'registerDevice', what: 'bad device name', expected: 'lower-case letters, digits, - or _', found: show(name) })
  factories.set(name, factory)
}

/** Registered device names, the default first. */
export function deviceNames(): string[] {
  return [...factories.keys()]
}

/**
 * Graph offload (offload/ort.ts, registered by the Node entry point): models exported to ONNX and run by
 * ONNX Runtime's execution providers, named 'ort' / 'ort:EP' ('ort:cpu', 'ort:cuda', 'ort:webgpu', 'ort:qnn' ...),
 * and 'npu' where the onnxruntime build has an NPU provider.
 */
export interface Offload {
  /** The execution providers this onnxruntime build lists ([] when onnxruntime-node is not installed). */
  providers(): string[]
  /** The NPU execution provider 'npu' would use, or null. */
  npuProvider(): string | null
  /** A Model running `js`'s weights as an ONNX graph on `provider` ('npu': the NPU provider). */
  load(js: Model, provider: string, opts: { threads?: number; static?: boolean | StaticGraphOptions }): Promise<Model>
}

let offload: Offload | null = null

export function registerOffload(o: Offload): void {
  offload = o
}

/** The registered offload (null in the browser build). */
export function getOffload(): Offload | null {
  return offload
}

/**
 * True when an NPU is there to run on: an 'npu' device is registered, or onnxruntime-node has an NPU
 * execution provider (QNN, CANN, OpenVINO, CoreML, DirectML ...) — the counterpart of transformers'
 * is_torch_npu_available(), for a model card's `device: isNpuAvailable() ? 'npu:0' : 'cpu'`.
 */
export function isNpuAvailable(): boolean {
  return factories.has('npu') || (offload?.npuProvider() ?? null) !== null
}

/**
 * The device a name means. Besides the registered names it takes transformers' spellings, so that a model
 * card's `device="cpu"` or `"npu:0" if is_torch_npu_available() else "cpu"` runs as written: 'cpu' (and
 * 'cpu:N') is the default CPU device (wasm); 'gpu', 'cuda', 'cuda:N' and 'webgpu' mean the 'webgpu'
 * device; 'npu' and 'npu:N' the 'npu' device, else ONNX Runtime's NPU provider ('npu'); 'ort' / 'ort:EP'
 * an ONNX Runtime execution provider ('ort:cpu' for 'ort'). A GPU or NPU spelling without such a device is
 * a UsageError, never a silent fall back to the CPU.
 */
export function resolveDeviceName(device: string | undefined): string {
  const name = device ?? deviceNames()[0]
  if (typeof name === 'string' && factories.has(name)) return name
  const s = typeof name === 'string' ? name.trim().toLowerCase() : ''
  const ort = /^ort(?::([a-z0-9_-]+))?$/.exec(s)
  if (ort && offload) return `ort:${ort[1] ?? 'cpu'}`
  const kind = /^cpu(:\d+)?$/.test(s) ? 'cpu' : /^(gpu|cuda|webgpu)(:\d+)?$/.test(s) ? 'webgpu' : /^npu(:\d+)?$/.test(s) ? 'npu' : null
  if (kind === 'cpu' && factories.has('wasm')) return 'wasm'
  if (kind !== null && kind !== 'cpu' && factories.has(kind)) return kind
  if (kind === 'npu' && offload?.npuProvider()) return 'npu'
  throw new UsageError({
    what: ort ? 'ONNX Runtime devices need Node (onnxruntime-node)' : kind === 'webgpu' ? 'no GPU device in this build' : kind === 'npu' ? 'no NPU here' : 'unknown device',
    expected: `one of ${deviceNames().join(', ')}${offload ? ', ort:EP' : ''} (or cpu)`,
    found: show(device),
    hint: kind === 'npu'
      ? `no NPU device is registered and ${offload ? `this onnxruntime build has no NPU execution provider (it has ${offload.providers().join(', ') || 'none'})` : 'ONNX Runtime is not available'}; use device "cpu" (isNpuAvailable() says whether an NPU is there)`
      : kind === null ? undefined : 'use device "cpu"',
  })
}

/** Whether a resolved device name runs on ONNX Runtime (loadModel exports the graph), not on a Device. */
export function isOffloadDevice(name: string): boolean {
  return name.startsWith('ort:') || (name === 'npu' && !factories.has('npu'))
}

/** A device by name (default: the first registered, wasm; transformers' 'cpu' / 'cuda' / 'npu' spellings too), or the Device object given. */
export async function createDevice(device: string | Device | undefined, opts: DeviceOptions = {}): Promise<Device> {
  if (typeof device === 'object' && device !== null) return device
  const name = resolveDeviceName(device)
  if (isOffloadDevice(name))
    throw new UsageError({ what: `${name} runs a whole model graph, not device ops`, found: show(device), hint: `load the model with loadModel(dir, { device: '${name}' })` })
  const factory = factories.get(name)!
  if (opts.maxBufferBytes !== undefined && !(opts.maxBufferBytes >= 1024))
    throw new UsageError({ what: 'bad maxBufferBytes', expected: 'a number of bytes >= 1024', found: show(opts.maxBufferBytes) })
  if (opts.memoryBytes !== undefined && !(typeof opts.memoryBytes === 'number' && Number.isInteger(opts.memoryBytes) && opts.memoryBytes >= 1 << 16 && opts.memoryBytes <= 2 ** 32))
    throw new UsageError({ what: 'bad memoryBytes', expected: 'a whole number of bytes in 64 KiB .. 4 GiB (one wasm32 memory)', found: show(opts.memoryBytes) })
  // transformers' 'gpu' / 'cuda' promise a GPU: the webgpu device then refuses a CPU driver (SwiftShader)
  const gpuSpelling = name === 'webgpu' && typeof device === 'string' && !/^\s*webgpu/i.test(device)
  return factory(gpuSpelling ? { ...opts, gpuOnly: true } : opts)
}

registerDevice('wasm', async (opts) => {
  const threads = opts.threads
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 1 || threads > 256))
    throw new UsageError({ what: 'bad thread count', expected: 'an integer in 1 .. 256', found: show(threads) })
  const { createWasmDevice } = await import('./wasm.js')
  return createWasmDevice({ threads, memoryBytes: opts.memoryBytes, maxBufferBytes: opts.maxBufferBytes })
})
registerDevice('js', async (opts) => {
  const { createJsDevice } = await import('./js.js')
  return createJsDevice({ maxBufferBytes: opts.maxBufferBytes })
})
// WGSL compute shaders on a WebGPU adapter: navigator.gpu in a browser, the optional `webgpu` package
// (Dawn) in Node, SwiftShader's CPU driver where there is no GPU (device/webgpu/adapter.ts). Creating it
// without an adapter is one ResourceError line saying what is missing.
registerDevice('webgpu', async (opts) => {
  const { createWebGpuDevice } = await import('./webgpu.js')
  return createWebGpuDevice({ maxBufferBytes: opts.maxBufferBytes, gpuOnly: opts.gpuOnly })
})
