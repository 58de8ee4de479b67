// Devices by name. Model code never imports a device: it receives a Device object, made here from a
// name ('wasm', 'js', 'webgpu', or one a program registers). The
// built-in devices are imported only when first asked for, so a program that never uses the wasm
// device never compiles its kernels.

import { UsageError, show } from '../errors.js'
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

/** True when an NPU device is registered (the counterpart of transformers' is_torch_npu_available()). */
export function isNpuAvailable(): boolean {
  return factories.has('npu')
}

/**
 * The registered device a name means. Besides the registered names it takes transformers' spellings, so
 * that a model card's `device="cpu"` or `"npu:0" if is_torch_npu_available() else "cpu"` runs as written:
 * 'cpu' (and 'cpu:N') is the default CPU device (wasm); 'gpu', 'cuda', 'cuda:N' and 'webgpu' mean the
 * 'webgpu' device; 'npu' and 'npu:N' the 'npu' device. A GPU or NPU spelling without that device
 * registered is a UsageError, never a silent fall back to the CPU.
 */
export function resolveDeviceName(device: string | undefined): string {
  const name = device ?? deviceNames()[0]
  if (typeof name === 'string' && factories.has(name)) return name
  const s = typeof name === 'string' ? name.trim().toLowerCase() : ''
  const kind = /^cpu(:\d+)?$/.test(s) ? 'cpu' : /^(gpu|cuda|webgpu)(:\d+)?$/.test(s) ? 'webgpu' : /^npu(:\d+)?$/.test(s) ? 'npu' : null
  if (kind === 'cpu' && factories.has('wasm')) return 'wasm'
  if (kind !== null && kind !== 'cpu' && factories.has(kind)) return kind
  throw new UsageError({
    what: kind === 'webgpu' ? 'no GPU device in this build' : kind === 'npu' ? 'no NPU device in this build' : 'unknown device',
    expected: `one of ${deviceNames().join(', ')} (or cpu)`,
    found: show(device),
    hint: kind === null ? undefined : `use device "cpu"; isNpuAvailable() says whether an NPU device is registered`,
  })
}

/** A device by name (default: the first registered, wasm; transformers' 'cpu' / 'cuda' / 'npu' spellings too), or the Device object given. */
export async function createDevice(device: string | Device | undefined, opts: DeviceOptions = {}): Promise<Device> {
  if (typeof device === 'object' && device !== null) return device
  const name = resolveDeviceName(device)
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
