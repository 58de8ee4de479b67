// Finding a WebGPU adapter. In a browser: navigator.gpu. In Node: the `webgpu` npm package (Dawn),
// an optional peer dependency imported only here, when a webgpu device is asked for.
//
// On a machine without a GPU (CI, these build machines) Dawn finds no Vulkan driver. Debian's
// `chromium` package (and Chrome, and playwright's Chromium builds) ship SwiftShader, a CPU Vulkan
// driver, as vk_swiftshader_icd.json beside the browser; pointing the Vulkan loader at it with
// VK_ICD_FILENAMES gives Dawn a working adapter ("google swiftshader"). refgpt does that by itself:
//   - a user's VK_ICD_FILENAMES is always respected;
//   - on Linux without GPU device nodes (/dev/dri, /dev/nvidia*, /dev/dxg) SwiftShader is chosen before
//     Dawn first looks (so Dawn does not print "Found no drivers" warnings);
//   - otherwise Dawn looks first, and only when it finds no adapter is SwiftShader tried: the Vulkan
//     loader reads VK_ICD_FILENAMES again on each new Dawn instance (checked with webgpu 0.6.2), so
//     a second create() in the same process finds it.
// The adapter's vendor / architecture / description are reported in the device's `adapter` field,
// so users and benchmarks see when they run on a CPU driver.

import { existsSync, readdirSync, realpathSync } from 'node:fs'
import { homedir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { ResourceError } from '../../errors.js'
import type { Gpu, GpuAdapter, GpuAdapterInfo } from './gpu.js'

/** What the device reports about the adapter it runs on. */
export interface AdapterInfo {
  vendor: string
  architecture: string
  device: string
  description: string
  /** A software (CPU) implementation: SwiftShader, or an adapter that says it is a fallback. */
  cpu: boolean
  /** The Vulkan ICD refgpt chose (SwiftShader), or null when the system's drivers were used. */
  icd: string | null
}

const ICD_NAME = 'vk_swiftshader_icd.json'

/** Directories that may hold SwiftShader's ICD (Debian/Ubuntu chromium, Chrome, CHROMIUM_PATH, PATH's chromium, playwright). */
export function swiftShaderCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs = ['/usr/lib/chromium', '/usr/lib64/chromium', '/usr/lib/chromium-browser', '/opt/google/chrome', '/snap/chromium/current/usr/lib/chromium-browser']
  const real = (p: string) => {
    try {
      return realpathSync(p)
    } catch {
      return p
    }
  }
  if (env.CHROMIUM_PATH) dirs.unshift(dirname(real(env.CHROMIUM_PATH)))
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    for (const exe of ['chromium', 'chromium-browser', 'google-chrome']) {
      const p = join(dir, exe)
      if (dir && existsSync(p)) dirs.push(dirname(real(p)))
    }
  }
  // playwright's downloaded browsers: <root>/chromium-<rev>/chrome-linux/
  const roots = [env.PLAYWRIGHT_BROWSERS_PATH, join(homedir(), '.cache', 'ms-playwright')].filter((r): r is string => !!r && r !== '0')
  for (const root of roots) {
    let names: string[] = []
    try {
      names = readdirSync(root).filter((n) => n.startsWith('chromium')).sort().reverse()
    } catch {}
    for (const n of names) dirs.push(join(root, n, 'chrome-linux'), join(root, n, 'chrome-linux64'))
  }
  return dirs.map((d) => join(d, ICD_NAME))
}

/** The first SwiftShader ICD found, or null. */
export function findSwiftShader(env: NodeJS.ProcessEnv = process.env): string | null {
  return swiftShaderCandidates(env).find((p) => existsSync(p)) ?? null
}

/** True on Linux when the kernel exposes a GPU (DRM render nodes, NVIDIA's nodes, WSL's dxg). */
function hasGpuNodes(): boolean {
  return ['/dev/dri', '/dev/nvidia0', '/dev/nvidiactl', '/dev/dxg'].some((p) => existsSync(p))
}

const unavailable = (what: string, found: string, hint: string, cause?: unknown) =>
  new ResourceError({ where: 'webgpu device', what, expected: 'a WebGPU adapter (a GPU driver, or SwiftShader)', found, hint }, cause === undefined ? undefined : { cause })

/** The `webgpu` package's module: create() and its globals. A test replaces it to simulate its absence. */
export interface DawnModule {
  create(options: string[]): Gpu
  globals: Record<string, unknown>
}

let dawn: Promise<DawnModule | null> | null = null
/** Imports `webgpu` once (null when it is not installed). A variable specifier keeps bundlers and tsc out of it. */
export function importDawn(): Promise<DawnModule | null> {
  const spec = 'webgpu'
  dawn ??= (import(spec) as Promise<DawnModule>).then((m) => m, () => null)
  return dawn
}

export interface OpenOptions {
  /** Replaces `import('webgpu')` (tests simulate a missing package or a machine without an adapter). */
  dawn?: () => Promise<DawnModule | null>
  /** Where to look for SwiftShader (tests); default: swiftShaderCandidates(). */
  findIcd?: () => string | null
}

export interface OpenedAdapter {
  gpu: Gpu
  adapter: GpuAdapter
  info: AdapterInfo
}

/** Dawn instances made in this process, per module, by the VK_ICD_FILENAMES they saw (one each is enough). */
const instances = new WeakMap<DawnModule, Map<string, Gpu>>()

/** Finds an adapter: navigator.gpu in a browser, else Dawn (with SwiftShader where no GPU exists). */
export async function openAdapter(opts: OpenOptions = {}): Promise<OpenedAdapter> {
  const nav = (globalThis as { navigator?: { gpu?: Gpu } }).navigator
  if (nav?.gpu && !opts.dawn) {
    const adapter = await nav.gpu.requestAdapter({ powerPreference: 'high-performance' })
    if (!adapter) throw unavailable('no WebGPU adapter', 'navigator.gpu.requestAdapter() gave null', 'enable WebGPU in the browser (chrome://gpu), or use --device wasm')
    return { gpu: nav.gpu, adapter, info: describe(adapter.info, null) }
  }
  const mod = await (opts.dawn ?? importDawn)()
  if (!mod)
    throw unavailable('the `webgpu` package (Dawn for Node) is not installed', "no module 'webgpu'", 'npm install webgpu (an optional peer dependency of @refgpt/core), or use --device wasm')
  const findIcd = opts.findIcd ?? (() => findSwiftShader())
  // GPUBufferUsage and friends, for code that expects the browser's globals
  for (const [k, v] of Object.entries(mod.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v
  const userIcd = process.env.VK_ICD_FILENAMES
  let icd: string | null = null
  if (userIcd === undefined && process.platform === 'linux' && !hasGpuNodes()) {
    icd = findIcd()
    if (icd) process.env.VK_ICD_FILENAMES = icd
  }
  const request = async () => {
    const key = process.env.VK_ICD_FILENAMES ?? ''
    const made = instances.get(mod) ?? new Map<string, Gpu>()
    instances.set(mod, made)
    let gpu = made.get(key)
    if (!gpu) made.set(key, (gpu = mod.create([])))
    return { gpu, adapter: await gpu.requestAdapter({ powerPreference: 'high-performance' }) }
  }
  let r: { gpu: Gpu; adapter: GpuAdapter | null }
  try {
    r = await request()
    if (!r.adapter && userIcd === undefined && icd === null && (icd = findIcd())) {
      process.env.VK_ICD_FILENAMES = icd // the loader reads it again on the next instance
      r = await request()
    }
  } catch (e) {
    throw unavailable('Dawn failed to start', e instanceof Error ? e.message.split('\n')[0] : String(e), 'check the `webgpu` package matches this platform, or use --device wasm', e)
  }
  if (!r.adapter)
    throw unavailable(
      'no WebGPU adapter',
      userIcd !== undefined ? `none with VK_ICD_FILENAMES=${userIcd}` : icd ? `none with SwiftShader (${icd})` : 'no GPU driver and no SwiftShader',
      "install a Vulkan GPU driver, or Debian's chromium and libvulkan1 (SwiftShader, a CPU driver), or use --device wasm",
    )
  return { gpu: r.gpu, adapter: r.adapter, info: describe(r.adapter.info, process.env.VK_ICD_FILENAMES === icd ? icd : null) }
}

function describe(i: GpuAdapterInfo, icd: string | null): AdapterInfo {
  const text = `${i.vendor} ${i.architecture} ${i.device} ${i.description}`.toLowerCase()
  return {
    vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description,
    cpu: i.isFallbackAdapter === true || /swiftshader|llvmpipe|lavapipe|warp|software/.test(text),
    icd,
  }
}
