// The `webgpu` device: every op of the Device interface as a WGSL compute shader (device/webgpu/
// kernels.ts), the GPU port of the js device's loops. In Node it runs on Dawn (the `webgpu` npm
// package, an optional peer dependency); on a machine without a GPU, on SwiftShader's CPU Vulkan
// driver (device/webgpu/adapter.ts says how it is found).
//
// Ops only enqueue. They are recorded, in call order, as dispatches of one compute pass of one command
// encoder; read() and snapshot() record a copy into a mappable staging buffer, and the batch is
// submitted once, in a microtask (so a forward's ops, its logits copy and any reads issued in the same
// tick are one submit: one readback per token). The small per-op data — sizes, flags, token ids,
// positions — goes into an argument ring: a host array the ops fill, slot after slot (256-byte
// aligned), written to one GPU buffer with queue.writeBuffer just before the batch is submitted (a
// full ring submits early). write() submits what is pending first, so it lands between the ops
// before and after it.
//
// A Buf is a GBuf: a GPUBuffer, an offset in it, and the weight's storage type. Buffers an op reads
// and writes are bound once when they are the same GPUBuffer (WebGPU refuses two writable bindings of
// one buffer in a dispatch), so "out may be x" works as on the other devices.
//
// Numerics: f32 arithmetic and f32 accumulation everywhere (sums in tree order within a workgroup, so
// F32 / F16 / BF16 results differ from the js device's f64 sums by rounding; tests declare per-op
// tolerances). Q8 / Q4 matmuls follow the contract bit for bit: activations quantized with exactly
// rounded integer division, exact integer block dots, the scale products and the sum over blocks one
// f32 operation each in block order (see kernels.ts).

import { ResourceError } from '../errors.js'
import { f32ToBf16Array, f32ToF16Array } from '../io/dtype.js'
import { Q8_BLOCK, q8Cols, quantizeQ4, quantizeQ8, storedValues } from './storage.js'
import type { Activation, AttentionOptions, Buf, Device, DeviceLimits, Storage } from './types.js'
import { openAdapter, type AdapterInfo, type OpenOptions } from './webgpu/adapter.js'
import { BufferUsage, MapMode, type GpuBuffer, type GpuCommandEncoder, type GpuComputePass, type GpuComputePipeline, type GpuDevice } from './webgpu/gpu.js'
import * as K from './webgpu/kernels.js'

/** A device buffer: f32 elements, or a weight in its storage type. */
class GBuf {
  constructor(
    readonly buffer: GpuBuffer,
    /** Bytes the handle covers. */
    readonly bytes: number,
    readonly storage: Storage = 'F32',
    /** Q8 / Q4: word offset of the scales after the quantized rows. */
    readonly scalesWord = 0,
  ) {}
}
const gbuf = (b: Buf) => b as unknown as GBuf
const handle = (g: GBuf) => g as unknown as Buf

export interface WebGpuDeviceOptions extends OpenOptions {
  /** Bytes one weight buffer may hold (default: the adapter's storage-binding limit); tests set it small. */
  maxBufferBytes?: number
  /**
   * Refuse a software adapter (SwiftShader, llvmpipe): set when the caller spelled the device 'gpu' or
   * 'cuda' (transformers' names), which promise a GPU; 'webgpu' runs on whatever adapter there is.
   */
  gpuOnly?: boolean
}

export interface WebGpuDevice extends Device {
  /** The adapter the device runs on (vendor, architecture, description; cpu: a software driver such as SwiftShader). */
  readonly adapter: AdapterInfo
  /** One line for logs and benchmarks: "webgpu on google swiftshader (SwiftShader driver 5.0.0; a CPU driver)". */
  readonly description: string
  /** Waits for the queue, then releases every buffer and the GPU device. */
  dispose(): Promise<void>
}

/** Bytes of the argument ring: about 4000 ops with short id lists between two submits. */
const RING_BYTES = 1 << 20
/** Binding offsets must be multiples of this (minStorageBufferOffsetAlignment is at most 256). */
const ALIGN = 256
const align = (n: number, a: number) => Math.ceil(n / a) * a
const STORAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST

/** An f32 buffer an op binds, by the name its kernel uses (ld_<name> / st_<name>). */
type Operand = readonly [name: string, buf: GBuf, writes: boolean]

export async function createWebGpuDevice(opts: WebGpuDeviceOptions = {}): Promise<WebGpuDevice> {
  const { gpu, adapter, info } = await openAdapter(opts)
  if (opts.gpuOnly && info.cpu)
    throw new ResourceError({
      where: 'webgpu device',
      what: `a GPU was asked for, but the only WebGPU adapter here is ${info.description || info.vendor || 'a software driver'} (a CPU driver)`,
      hint: 'use device "cpu" (the wasm kernels: faster on a CPU), or "webgpu" to run the shaders on this driver anyway',
    })
  const want = (k: string) => adapter.limits[k]
  let dev: GpuDevice
  try {
    // the largest buffers the adapter allows (the WebGPU default binding is 128 MiB)
    dev = await adapter.requestDevice({
      requiredLimits: { maxStorageBufferBindingSize: want('maxStorageBufferBindingSize'), maxBufferSize: want('maxBufferSize'), maxStorageBuffersPerShaderStage: Math.min(8, want('maxStorageBuffersPerShaderStage')) },
    })
  } catch (e) {
    throw new ResourceError({ where: 'webgpu device', what: 'the adapter refused to create a device', found: e instanceof Error ? e.message.split('\n')[0] : String(e), hint: 'use --device wasm' }, { cause: e })
  }
  const builtinDot4 = gpu.wgslLanguageFeatures?.has('packed_4x8_integer_dot_product') ?? false
  return new WebGpu(dev, info, builtinDot4, opts.maxBufferBytes)
}

class WebGpu implements WebGpuDevice {
  readonly name = 'webgpu'
  readonly limits: DeviceLimits
  /** weight() uploads (a copy, rounded or quantized on the way) and keeps no reference to what it is given. */
  readonly weightCopies = true
  readonly description: string
  private readonly bindingLimit: number
  private readonly pipelines = new Map<string, GpuComputePipeline>()
  // the batch being recorded
  private encoder: GpuCommandEncoder | null = null
  private pass: GpuComputePass | null = null
  private submitQueued: Promise<void> | null = null
  /** The validation errors of the batches submitted since the last read looked (error scopes). */
  private errors: Promise<{ message: string } | null>[] = []
  private lostMessage: string | null = null
  // the argument ring: a host mirror, its GPU buffer, and the words used in this batch
  private readonly ring: GpuBuffer
  private readonly ringHost = new ArrayBuffer(RING_BYTES)
  private readonly ringU32 = new Uint32Array(this.ringHost)
  private readonly ringF32 = new Float32Array(this.ringHost)
  private ringUsed = 0
  /** Buffers freed while the batch may still use them: destroyed after it is submitted. */
  private freed: GpuBuffer[] = []
  /** Mappable buffers for reads, free for reuse. */
  private staging: GpuBuffer[] = []
  /** Quantized activations of Q8 / Q4 matmuls (grown when a call needs more). */
  private xq: GpuBuffer | null = null
  private readonly live = new Set<GpuBuffer>()

  constructor(private readonly dev: GpuDevice, readonly adapter: AdapterInfo, private readonly builtinDot4: boolean, maxBufferBytes?: number) {
    this.bindingLimit = Math.min(dev.limits.maxStorageBufferBindingSize, dev.limits.maxBufferSize)
    // a weight buffer holds whole rows up to this (models/weights.ts splits larger ones); F16 rows are padded to 4 bytes
    this.limits = { maxBufferBytes: Math.min(maxBufferBytes ?? Infinity, this.bindingLimit - ALIGN) }
    const a = adapter
    this.description = `webgpu on ${[a.vendor, a.architecture].filter(Boolean).join(' ') || 'an unnamed adapter'}${a.description ? ` (${a.description}${a.cpu ? '; a CPU driver' : ''})` : a.cpu ? ' (a CPU driver)' : ''}`
    this.ring = dev.createBuffer({ size: RING_BYTES, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST, label: 'args' })
    dev.lost.then((l) => {
      this.lostMessage ??= l.message || l.reason
    })
  }

  // --- buffers --------------------------------------------------------------------------------

  private createBuffer(bytes: number, what: string, mapped = false): GpuBuffer {
    if (bytes > this.bindingLimit)
      throw new ResourceError({ where: 'webgpu device', what: `${what} too large for one storage binding`, expected: `at most ${this.bindingLimit} bytes`, found: `${bytes} bytes`, hint: 'pass a smaller --max-context or fewer tokens per batch' })
    const b = this.dev.createBuffer({ size: Math.max(4, align(bytes, 4)), usage: STORAGE, mappedAtCreation: mapped })
    this.live.add(b)
    return b
  }

  alloc(n: number): Buf {
    return handle(new GBuf(this.createBuffer(4 * n, `a buffer of ${n} f32`), 4 * n)) // zero-filled by WebGPU
  }

  free(b: Buf): void {
    const g = gbuf(b)
    this.live.delete(g.buffer)
    if (this.encoder) this.freed.push(g.buffer) // the batch may use it: destroyed once submitted
    else g.buffer.destroy()
  }

  /** A weight buffer filled at creation (mappedAtCreation: no queue write to order). */
  private upload(bytes: Uint8Array, storage: Storage, scalesWord = 0): Buf {
    const b = this.createBuffer(bytes.byteLength, `a ${storage} weight`, true)
    new Uint8Array(b.getMappedRange()).set(bytes)
    b.unmap()
    return handle(new GBuf(b, bytes.byteLength, storage, scalesWord))
  }

  weight(data: Float32Array, shape: readonly number[], storage: Storage = 'F32'): Buf {
    if (shape.length !== 2 || storage === 'F32') {
      const v = storedValues(data, shape, storage) // 1-D tensors: f32, rounded under F16 / BF16
      return this.upload(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), 'F32')
    }
    const [rows, cols] = shape
    if (storage === 'F16' || storage === 'BF16') {
      const h = storage === 'F16' ? f32ToF16Array(data) : f32ToBf16Array(data) // two halves a word
      return this.upload(new Uint8Array(h.buffer, h.byteOffset, h.byteLength), storage)
    }
    // Q8: int8 rows padded to whole blocks, 4 a word, then the f32 scales; Q4: levels 2 a byte (8 a word)
    const cp = q8Cols(cols), scalesBytes = 4 * rows * (cp / Q8_BLOCK)
    const qBytes = storage === 'Q8' ? rows * cp : (rows * cp) / 2
    const out = new Uint8Array(qBytes + scalesBytes)
    let scales: Float32Array
    if (storage === 'Q8') {
      const q = quantizeQ8(data, rows, cols)
      out.set(new Uint8Array(q.q.buffer, q.q.byteOffset, q.q.byteLength))
      scales = q.scales
    } else {
      const q = quantizeQ4(data, rows, cols)
      for (let i = 0; i < qBytes; i++) out[i] = q.levels[2 * i] | (q.levels[2 * i + 1] << 4)
      scales = q.scales
    }
    out.set(new Uint8Array(scales.buffer, scales.byteOffset, scales.byteLength), qBytes)
    return this.upload(out, storage, qBytes / 4)
  }

  weightF32(shape: readonly number[], fill: (dst: Float32Array) => void): Buf {
    const n = shape.reduce((p, d) => p * d, 1)
    const b = this.createBuffer(4 * n, 'an F32 weight', true)
    fill(new Float32Array(b.getMappedRange(), 0, n))
    b.unmap()
    return handle(new GBuf(b, 4 * n))
  }

  write(b: Buf, src: Float32Array, offset = 0): void {
    this.submit() // the ops recorded so far run before the write, the ones after it after
    this.dev.queue.writeBuffer(gbuf(b).buffer, 4 * offset, src)
  }

  zero(b: Buf, n: number): void {
    if (n <= 0) return
    this.endPass()
    this.encoderNow().clearBuffer(gbuf(b).buffer, 0, align(4 * n, 4))
  }

  read(b: Buf, dst: Float32Array, offset = 0): Promise<void> {
    return this.readBack(b, offset, dst.length, dst).then(() => {})
  }

  snapshot(b: Buf, offset: number, n: number): Promise<Float32Array> {
    return this.readBack(b, offset, n, new Float32Array(n))
  }

  /** Records a copy into a staging buffer now (ordered with the ops), submits soon, maps it, copies out. */
  private async readBack(b: Buf, offset: number, n: number, dst: Float32Array): Promise<Float32Array> {
    if (n === 0) return dst
    const bytes = 4 * n
    const st = this.takeStaging(bytes)
    this.endPass()
    this.encoderNow().copyBufferToBuffer(gbuf(b).buffer, 4 * offset, st, 0, bytes)
    await this.submitSoon()
    try {
      await st.mapAsync(MapMode.READ, 0, bytes)
    } catch (e) {
      await this.check()
      throw e
    }
    dst.set(new Float32Array(st.getMappedRange(0, bytes)))
    st.unmap()
    this.staging.push(st)
    await this.check()
    return dst
  }

  private takeStaging(bytes: number): GpuBuffer {
    let best = -1
    for (let i = 0; i < this.staging.length; i++)
      if (this.staging[i].size >= bytes && (best < 0 || this.staging[i].size < this.staging[best].size)) best = i
    if (best >= 0) return this.staging.splice(best, 1)[0]
    const size = Math.max(ALIGN, 2 ** Math.ceil(Math.log2(bytes)))
    return this.dev.createBuffer({ size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST, label: 'staging' })
  }

  /** Throws the first validation error of the batches submitted so far, or the loss of the device. */
  private async check(): Promise<void> {
    const pending = this.errors
    this.errors = []
    for (const e of await Promise.all(pending))
      if (e) throw new ResourceError({ where: 'webgpu device', what: 'a GPU command failed', found: e.message.split('\n')[0], hint: 'report this with the adapter line of --verbose' })
    if (this.lostMessage !== null) throw new ResourceError({ where: 'webgpu device', what: 'the GPU device was lost', found: this.lostMessage })
  }

  // --- batching -------------------------------------------------------------------------------

  private encoderNow(): GpuCommandEncoder {
    if (!this.encoder) {
      this.dev.pushErrorScope('validation')
      this.encoder = this.dev.createCommandEncoder()
    }
    return this.encoder
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end()
      this.pass = null
    }
  }

  /** Submits the batch: the argument ring's used part first, then the commands. */
  private submit(): void {
    if (!this.encoder) return
    this.endPass()
    if (this.ringUsed > 0) this.dev.queue.writeBuffer(this.ring, 0, this.ringHost, 0, 4 * this.ringUsed)
    this.dev.queue.submit([this.encoder.finish()])
    this.encoder = null
    this.ringUsed = 0
    this.errors.push(this.dev.popErrorScope())
    for (const b of this.freed) b.destroy()
    this.freed = []
  }

  /** Submits in a microtask: every op and copy recorded in this tick goes in the same batch. */
  private submitSoon(): Promise<void> {
    this.submitQueued ??= Promise.resolve().then(() => {
      this.submitQueued = null
      this.submit()
    })
    return this.submitQueued
  }

  /** A slot of `words` words of the argument ring for the next op; its first word's index. */
  private args(words: number): number {
    const start = align(this.ringUsed, ALIGN / 4)
    if (4 * (start + words) > RING_BYTES) {
      if (4 * words > RING_BYTES) throw new ResourceError({ where: 'webgpu device', what: 'too many rows in one op', found: `${words} argument words`, expected: `at most ${RING_BYTES / 4}` })
      this.submit()
      return this.args(words)
    }
    this.ringUsed = start + words
    this.ringU32.fill(0, start, start + words)
    return start
  }

  private pipeline(key: string, code: () => string): GpuComputePipeline {
    let p = this.pipelines.get(key)
    if (!p) {
      const module = this.dev.createShaderModule({ code: code(), label: key })
      p = this.dev.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: key })
      this.pipelines.set(key, p)
    }
    return p
  }

  /**
   * Records one dispatch of `kernel` (WGSL from kernels.ts, less its bindings), with its f32 operands
   * bound by name, `fixed` bindings (10: the weight, 11: quantized activations), the args slot at `a`
   * of `words` words, and `groups` workgroups.
   */
  private dispatch(key: string, source: () => string, operands: readonly Operand[], fixed: readonly [binding: number, buffer: GpuBuffer][],
    a: number, words: number, groups: readonly [number, number?, number?]): void {
    // one binding per distinct GPUBuffer, read_write when any name bound to it is written
    const slots: GBuf[] = [], writes: boolean[] = [], slotOf: number[] = []
    for (const [, buf, w] of operands) {
      let s = slots.findIndex((x) => x.buffer === buf.buffer)
      if (s < 0) {
        s = slots.push(buf) - 1
        writes.push(false)
      }
      writes[s] ||= w
      slotOf.push(s)
    }
    const fullKey = `${key}|${slotOf.join('')}|${writes.map(Number).join('')}`
    const encoder = this.encoderNow() // first: shader and pipeline errors land in the batch's error scope
    const p = this.pipeline(fullKey, () => {
      const decl = slots.map((_, s) => `@group(0) @binding(${1 + s}) var<storage, ${writes[s] ? 'read_write' : 'read'}> b${1 + s}: array<f32>;`)
      const access = operands.map(([name, , w], i) =>
        `fn ld_${name}(i: u32) -> f32 { return b${1 + slotOf[i]}[i]; }` + (w ? `\nfn st_${name}(i: u32, v: f32) { b${1 + slotOf[i]}[i] = v; }` : ''))
      return [K.PRELUDE, ...decl, ...access, source()].join('\n')
    })
    const entries = [{ binding: 0, resource: { buffer: this.ring, offset: 4 * a, size: 4 * words } }]
    slots.forEach((g, s) => entries.push({ binding: 1 + s, resource: { buffer: g.buffer, offset: 0, size: g.buffer.size } }))
    for (const [binding, buffer] of fixed) entries.push({ binding, resource: { buffer, offset: 0, size: buffer.size } })
    const group = this.dev.createBindGroup({ layout: p.getBindGroupLayout(0), entries })
    if (!this.pass) this.pass = encoder.beginComputePass()
    this.pass.setPipeline(p)
    this.pass.setBindGroup(0, group)
    this.pass.dispatchWorkgroups(groups[0], groups[1] ?? 1, groups[2] ?? 1)
  }

  /** Workgroups for `count` items of `per` invocations: x up to 65535, then rows of y (group_index in WGSL). */
  private grid(count: number, per: number): [number, number] {
    const g = Math.max(1, Math.ceil(count / per))
    const x = Math.min(g, 65535)
    return [x, Math.ceil(g / x)]
  }

  // --- ops ------------------------------------------------------------------------------------

  copy(dst: Buf, dstOff: number, src: Buf, srcOff: number, n: number): void {
    if (n <= 0) return
    const d = gbuf(dst), s = gbuf(src)
    if (d.buffer === s.buffer && dstOff < srcOff + n && srcOff < dstOff + n && dstOff !== srcOff) {
      // overlapping ranges of one buffer: through a temporary, as a forward loop over separate arrays would
      const tmp = this.alloc(n)
      this.copy(tmp, 0, src, srcOff, n)
      this.copy(dst, dstOff, tmp, 0, n)
      this.free(tmp)
      return
    }
    const a = this.args(3)
    this.ringU32.set([n, dstOff, srcOff], a)
    this.dispatch('copy', () => K.COPY, [['dst', d, true], ['src', s, false]], [], a, 3, this.grid(n, K.WG))
  }

  embed(out: Buf, table: Buf, ids: Int32Array, T: number, C: number, accumulate: boolean): void {
    const w = gbuf(table)
    const a = this.args(K.ARG_ROWS + T)
    this.ringU32.set([T, C, accumulate ? 1 : 0], a)
    this.ringU32[a + K.ARG_SCALES] = w.scalesWord
    new Int32Array(this.ringHost, 4 * (a + K.ARG_ROWS), T).set(ids.subarray(0, T))
    this.dispatch(`embed.${w.storage}`, () => K.weightSource(w.storage) + K.EMBED, [['out', gbuf(out), true]], [[10, w.buffer]], a, K.ARG_ROWS + T, this.grid(T * C, K.WG))
  }

  matmul(out: Buf, x: Buf, w: Buf, b: Buf | null, T: number, K_: number, N: number): void {
    const W = gbuf(w)
    const ops: Operand[] = [['out', gbuf(out), true], ['x', gbuf(x), false]]
    if (b) ops.push(['b', gbuf(b), false])
    const groups = this.grid(N * Math.ceil(T / K.TT), K.WG)
    if (W.storage === 'Q8' || W.storage === 'Q4') {
      // quantize the activations (quantizeQ8's rule), then the integer product
      const nb = q8Cols(K_) / Q8_BLOCK
      const xq = this.quantScratch(4 * T * nb * 9)
      const qa = this.args(3)
      this.ringU32.set([T, K_, nb], qa)
      this.dispatch('quantize', () => K.QUANTIZE, [['x', gbuf(x), false]], [[11, xq]], qa, 3, this.grid(T * nb, K.WG))
      const a = this.args(8)
      this.ringU32.set([T, K_, N, nb], a)
      this.ringU32[a + K.ARG_SCALES] = W.scalesWord
      const storage = W.storage
      this.dispatch(`matmul.${storage}.${b ? 'bias' : ''}`, () => K.matmulQuantSource(storage, !!b, this.builtinDot4), ops.filter(([n]) => n !== 'x'),
        [[10, W.buffer], [11, xq]], a, 8, groups)
      return
    }
    const a = this.args(3)
    this.ringU32.set([T, K_, N], a)
    this.dispatch(`matmul.${W.storage}.${b ? 'bias' : ''}`, () => K.weightSource(W.storage) + K.matmulSource(!!b), ops, [[10, W.buffer]], a, 3, groups)
  }

  /** The quantized-activation buffer, at least `bytes` (the old one is destroyed after this batch). */
  private quantScratch(bytes: number): GpuBuffer {
    if (!this.xq || this.xq.size < bytes) {
      if (this.xq) {
        this.live.delete(this.xq)
        this.freed.push(this.xq)
      }
      this.xq = this.createBuffer(Math.max(bytes, 64 * 1024), 'the quantized activations')
    }
    return this.xq
  }

  layerNorm(out: Buf, x: Buf, g: Buf, b: Buf, T: number, C: number, eps: number): void {
    const a = this.args(3)
    this.ringU32.set([T, C], a)
    this.ringF32[a + 2] = eps
    this.dispatch('layerNorm', () => K.LAYER_NORM, [['out', gbuf(out), true], ['x', gbuf(x), false], ['g', gbuf(g), false], ['b', gbuf(b), false]], [], a, 3, this.grid(T, K.WG))
  }

  activation(out: Buf, x: Buf, n: number, act: Activation): void {
    const a = this.args(1)
    this.ringU32[a] = n
    this.dispatch(`act.${act}`, () => K.activationSource(act), [['out', gbuf(out), true], ['x', gbuf(x), false]], [], a, 1, this.grid(n, K.WG))
  }

  add(out: Buf, a_: Buf, b: Buf, n: number): void {
    const a = this.args(1)
    this.ringU32[a] = n
    this.dispatch('add', () => K.ADD, [['out', gbuf(out), true], ['a', gbuf(a_), false], ['b', gbuf(b), false]], [], a, 1, this.grid(n, K.WG))
  }

  rotary(x: Buf, table: Buf, positions: Int32Array, T: number, nHead: number, headDim: number, rotaryDim: number): void {
    const a = this.args(K.ARG_ROWS + T)
    this.ringU32.set([T, nHead, headDim, rotaryDim], a)
    new Int32Array(this.ringHost, 4 * (a + K.ARG_ROWS), T).set(positions.subarray(0, T))
    this.dispatch('rotary', () => K.ROTARY, [['x', gbuf(x), true], ['table', gbuf(table), false]], [], a, K.ARG_ROWS + T, this.grid(T * nHead * (rotaryDim / 2), K.WG))
  }

  attention(out: Buf, q: Buf, kCache: Buf, vCache: Buf, o: AttentionOptions): void {
    const a = this.args(6)
    this.ringU32.set([o.T, o.pos0, o.nHead, o.headDim, 0, o.window], a)
    this.ringF32[a + 4] = o.scale
    const ops: Operand[] = [['out', gbuf(out), true], ['q', gbuf(q), false], ['k', gbuf(kCache), false], ['v', gbuf(vCache), false]]
    if (o.probs) ops.push(['probs', gbuf(o.probs), true])
    const probs = !!o.probs
    this.dispatch(`attention.${probs}`, () => K.attentionSource(probs), ops, [], a, 6, this.grid(o.nHead * o.T, K.WG))
  }

  logProbs(out: Buf, logits: Buf, targets: Int32Array, T: number, V: number, greedy?: Buf | null): void {
    const a = this.args(K.ARG_ROWS + T)
    this.ringU32.set([T, V], a)
    new Int32Array(this.ringHost, 4 * (a + K.ARG_ROWS), T).set(targets.subarray(0, T))
    const ops: Operand[] = [['out', gbuf(out), true], ['logits', gbuf(logits), false]]
    if (greedy) ops.push(['greedy', gbuf(greedy), true])
    const g = !!greedy
    this.dispatch(`logProbs.${g}`, () => K.logProbsSource(g), ops, [], a, K.ARG_ROWS + T, this.grid(T, K.WG))
  }

  async dispose(): Promise<void> {
    this.submit()
    await this.dev.queue.onSubmittedWorkDone()
    for (const b of [...this.live, ...this.staging, this.ring]) b.destroy()
    this.live.clear()
    this.staging = []
    this.dev.destroy()
  }
}
