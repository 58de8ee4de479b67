// What every checkpoint reader hands to the models: a table of tensors whose bytes stay on disk until
// a device places them (read once, at load time, straight from the file).

/** Storage dtypes refgpt reads from checkpoints. Arithmetic is always f32. */
export type DType = 'F32' | 'F16' | 'BF16'

export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 }

export interface TensorInfo {
  name: string
  dtype: DType
  shape: number[]
  /** Number of elements (product of shape; 1 for a scalar). */
  size: number
  /** Absolute path of the file that holds the data. */
  file: string
}

export type CheckpointFormat = 'safetensors' | 'safetensors-sharded' | 'pytorch-bin' | 'pytorch-bin-sharded' | 'random'

export interface Checkpoint {
  /** The model folder. */
  readonly dir: string
  readonly format: CheckpointFormat
  /** Absolute paths of the files that hold tensor data. */
  readonly files: string[]
  /** Every tensor, by its name in the file. Aliases (a tied lm_head.weight in a .bin) are listed too. */
  readonly tensors: ReadonlyMap<string, TensorInfo>
  /** Raw little-endian bytes of one tensor, read from disk now (not cached). */
  readBytes(name: string): Uint8Array
  /** One tensor widened to float32 (F16/BF16 are converted exactly), into `out` when given. */
  readF32(name: string, out?: Float32Array): Float32Array
  /** Closes the open file descriptors. */
  close(): void
}
