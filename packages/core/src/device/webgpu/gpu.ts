// The part of the WebGPU API the webgpu device uses, typed here so that @refgpt/core needs neither
// @webgpu/types nor the `webgpu` package to type-check (the package is an optional peer dependency,
// imported only when a webgpu device is asked for).

export interface GpuBuffer {
  readonly size: number
  readonly mapState: string
  mapAsync(mode: number, offset?: number, size?: number): Promise<void>
  getMappedRange(offset?: number, size?: number): ArrayBuffer
  unmap(): void
  destroy(): void
}

export interface GpuBindGroupLayout { readonly __brand?: 'GPUBindGroupLayout' }
export interface GpuBindGroup { readonly __brand?: 'GPUBindGroup' }

export interface GpuComputePipeline {
  getBindGroupLayout(index: number): GpuBindGroupLayout
}

export interface GpuComputePass {
  setPipeline(p: GpuComputePipeline): void
  setBindGroup(index: number, g: GpuBindGroup): void
  dispatchWorkgroups(x: number, y?: number, z?: number): void
  end(): void
}

export interface GpuCommandEncoder {
  beginComputePass(): GpuComputePass
  copyBufferToBuffer(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void
  clearBuffer(buf: GpuBuffer, offset?: number, size?: number): void
  finish(): unknown
}

export interface GpuBufferBinding { buffer: GpuBuffer; offset?: number; size?: number }

export interface GpuDevice {
  readonly limits: Record<string, number>
  readonly queue: {
    submit(buffers: unknown[]): void
    writeBuffer(buf: GpuBuffer, offset: number, data: ArrayBufferView | ArrayBuffer, dataOffset?: number, size?: number): void
    onSubmittedWorkDone(): Promise<void>
  }
  readonly lost: Promise<{ reason: string; message: string }>
  createBuffer(d: { size: number; usage: number; mappedAtCreation?: boolean; label?: string }): GpuBuffer
  createShaderModule(d: { code: string; label?: string }): unknown
  createComputePipeline(d: { layout: 'auto'; compute: { module: unknown; entryPoint: string }; label?: string }): GpuComputePipeline
  createBindGroup(d: { layout: GpuBindGroupLayout; entries: { binding: number; resource: GpuBufferBinding }[] }): GpuBindGroup
  createCommandEncoder(): GpuCommandEncoder
  pushErrorScope(filter: 'validation' | 'out-of-memory' | 'internal'): void
  popErrorScope(): Promise<{ message: string } | null>
  addEventListener(type: 'uncapturederror', fn: (e: { error: { message: string } }) => void): void
  destroy(): void
}

export interface GpuAdapterInfo {
  readonly vendor: string
  readonly architecture: string
  readonly device: string
  readonly description: string
  readonly isFallbackAdapter?: boolean
}

export interface GpuAdapter {
  readonly limits: Record<string, number>
  readonly info: GpuAdapterInfo
  readonly features: ReadonlySet<string>
  requestDevice(d?: { requiredLimits?: Record<string, number>; requiredFeatures?: string[] }): Promise<GpuDevice>
}

export interface Gpu {
  requestAdapter(o?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<GpuAdapter | null>
  readonly wgslLanguageFeatures?: ReadonlySet<string>
}

/** GPUBufferUsage and GPUMapMode bits (fixed by the WebGPU specification). */
export const BufferUsage = { MAP_READ: 0x1, MAP_WRITE: 0x2, COPY_SRC: 0x4, COPY_DST: 0x8, INDEX: 0x10, VERTEX: 0x20, UNIFORM: 0x40, STORAGE: 0x80 } as const
export const MapMode = { READ: 0x1, WRITE: 0x2 } as const
