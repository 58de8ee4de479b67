// What each weight storage type represents, in plain JS: the values a device must compute with.
// (Devices keep fewer bits; the js device keeps these values as f32.)

import { bf16ToF32Array, f16ToF32Array, f32ToBf16Array, f32ToF16Array } from '../io/dtype.js'
import type { Storage } from './types.js'

/** Q8 block: 32 consecutive values of a row share one f32 scale (ggml's q8_0 block size). */
export const Q8_BLOCK = 32

/** Row length padded to whole Q8 blocks. */
export const q8Cols = (cols: number) => Math.ceil(cols / Q8_BLOCK) * Q8_BLOCK

/**
 * Quantizes [rows, cols] f32 to int8 with one scale per block of 32 along each row (rows padded with
 * zeros to q8Cols(cols)): scale = max|w| / 127 (f32), q = round-half-away-from-zero(w / scale).
 */
export function quantizeQ8(src: Float32Array, rows: number, cols: number): { q: Int8Array; scales: Float32Array; colsPadded: number } {
  const cp = q8Cols(cols), nb = cp / Q8_BLOCK
  const q = new Int8Array(rows * cp), scales = new Float32Array(rows * nb)
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const c0 = b * Q8_BLOCK, c1 = Math.min(c0 + Q8_BLOCK, cols)
      let amax = 0
      for (let c = c0; c < c1; c++) amax = Math.max(amax, Math.abs(src[r * cols + c]))
      const scale = Math.fround(amax / 127)
      scales[r * nb + b] = scale
      if (scale === 0) continue
      for (let c = c0; c < c1; c++) {
        const v = Math.fround(src[r * cols + c] / scale)
        q[r * cp + c] = Math.sign(v) * Math.floor(Math.abs(v) + 0.5)
      }
    }
  }
  return { q, scales, colsPadded: cp }
}

/** The f32 values of a Q8 weight (q * scale), [rows, cols] without the padding. */
export function dequantizeQ8(q: Int8Array, scales: Float32Array, rows: number, cols: number): Float32Array {
  const cp = q8Cols(cols), nb = cp / Q8_BLOCK
  const out = new Float32Array(rows * cols)
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) out[r * cols + c] = Math.fround(q[r * cp + c] * scales[r * nb + Math.floor(c / Q8_BLOCK)])
  return out
}

/** `data` rounded to what `storage` can represent, as f32 (a new array unless storage is F32). */
export function storedValues(data: Float32Array, shape: readonly number[], storage: Storage = 'F32'): Float32Array {
  switch (storage) {
    case 'F32':
      return data
    case 'F16': {
      const out = new Float32Array(data.length)
      f16ToF32Array(f32ToF16Array(data), out)
      return out
    }
    case 'BF16': {
      const out = new Float32Array(data.length)
      bf16ToF32Array(f32ToBf16Array(data), out)
      return out
    }
    case 'Q8': {
      if (shape.length !== 2) return data // 1-D tensors (biases, norms) stay f32
      const { q, scales } = quantizeQ8(data, shape[0], shape[1])
      return dequantizeQ8(q, scales, shape[0], shape[1])
    }
  }
}

/** Bytes of a weight kept as `storage` by a device that stores it natively. */
export function storageBytes(shape: readonly number[], storage: Storage = 'F32'): number {
  const n = shape.reduce((p, d) => p * d, 1)
  if (storage === 'F32' || (storage === 'Q8' && shape.length !== 2)) return 4 * n
  if (storage === 'F16' || storage === 'BF16') return 2 * n
  const cp = q8Cols(shape[1])
  return shape[0] * cp + 4 * shape[0] * (cp / Q8_BLOCK)
}

/**
 * GPT-J's sin/cos table (HF create_sinusoidal_positions), in float32 as HF computes it:
 * inv_freq[i] = 1 / 10000^(2i / R); angle = pos * inv_freq[i]; table[pos, i] = (cos, sin).
 */
export function rotaryTable(nPositions: number, rotaryDim: number): Float32Array {
  const half = rotaryDim / 2
  const table = new Float32Array(nPositions * half * 2)
  for (let i = 0; i < half; i++) {
    const invFreq = Math.fround(1 / Math.fround(10000 ** Math.fround((2 * i) / rotaryDim)))
    for (let p = 0; p < nPositions; p++) {
      const angle = Math.fround(p * invFreq)
      table[(p * half + i) * 2] = Math.cos(angle)
      table[(p * half + i) * 2 + 1] = Math.sin(angle)
    }
  }
  return table
}
