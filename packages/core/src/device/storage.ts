// What each weight storage type represents, in plain JS: the values a device must compute with, and
// the quantizers (Q8, Q4, and the activations of a quantized matmul) every device must reproduce exactly.

import { bf16ToF32Array, f16ToF32Array, f32ToBf16Array, f32ToF16Array } from '../io/dtype.js'
import type { Storage } from './types.js'

/** Q8 / Q4 block: 32 consecutive values of a row share one f32 scale (ggml's q8_0 / q4_0 block size). */
export const Q8_BLOCK = 32

/** Row length padded to whole Q8 / Q4 blocks. */
export const q8Cols = (cols: number) => Math.ceil(cols / Q8_BLOCK) * Q8_BLOCK

/** Round half away from zero (v is an f32 value, so |v| + 0.5 is exact in f64). */
const roundHalfAway = (v: number) => Math.sign(v) * Math.floor(Math.abs(v) + 0.5)

/**
 * Quantizes [rows, cols] f32 to int8 with one scale per block of 32 along each row (rows padded with
 * zeros to q8Cols(cols)): scale = max|w| / 127 (f32; a NaN in the block makes it NaN),
 * q = clamp(round-half-away-from-zero(w / scale), -127, 127) with the f32 quotient; a block whose
 * scale is 0 or not finite keeps q = 0. The same rule quantizes a quantized matmul's activations.
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
      if (!(scale > 0 && scale < Infinity)) continue
      for (let c = c0; c < c1; c++) {
        const v = Math.fround(src[r * cols + c] / scale)
        q[r * cp + c] = Math.max(-127, Math.min(127, roundHalfAway(v)))
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

/**
 * Quantizes [rows, cols] f32 to 4-bit levels with one scale per block of 32 along each row (ggml's
 * q4_0 rule, with an f32 scale): mx = the first value of the block (in column order) with the largest
 * magnitude (NaN never counts as larger), scale = mx / -8 (f32; 0 when mx is 0),
 * level = clamp(round-half-away(w / scale) + 8, 0, 15) with the f32 quotient (a NaN quotient gives 0;
 * scale 0 and the padding give 8). The weight is (level - 8) * scale: the block's largest magnitude is
 * exactly -8 * scale. Levels are returned one per byte ([rows, q8Cols(cols)]); the wasm device packs two
 * per byte (packages/wasm/assembly/quant.ts).
 */
export function quantizeQ4(src: Float32Array, rows: number, cols: number): { levels: Uint8Array; scales: Float32Array; colsPadded: number } {
  const cp = q8Cols(cols), nb = cp / Q8_BLOCK
  const levels = new Uint8Array(rows * cp).fill(8), scales = new Float32Array(rows * nb)
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const c0 = b * Q8_BLOCK, c1 = Math.min(c0 + Q8_BLOCK, cols)
      let amax = 0, mx = 0
      for (let c = c0; c < c1; c++) {
        const v = src[r * cols + c]
        if (amax < Math.abs(v)) {
          amax = Math.abs(v)
          mx = v
        }
      }
      const scale = mx === 0 ? 0 : Math.fround(mx / -8)
      scales[r * nb + b] = scale
      if (scale === 0) continue
      for (let c = c0; c < c1; c++) {
        const level = roundHalfAway(Math.fround(src[r * cols + c] / scale)) + 8
        levels[r * cp + c] = level >= 15 ? 15 : level > 0 ? level : 0
      }
    }
  }
  return { levels, scales, colsPadded: cp }
}

/** The f32 values of a Q4 weight ((level - 8) * scale), [rows, cols] without the padding. */
export function dequantizeQ4(levels: Uint8Array, scales: Float32Array, rows: number, cols: number): Float32Array {
  const cp = q8Cols(cols), nb = cp / Q8_BLOCK
  const out = new Float32Array(rows * cols)
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) out[r * cols + c] = Math.fround((levels[r * cp + c] - 8) * scales[r * nb + Math.floor(c / Q8_BLOCK)])
  return out
}

/**
 * `data` rounded to what `storage` can represent, as f32 (a new array unless storage is F32): the values
 * an embedding gather reads. (A matmul with a Q8 / Q4 weight is an integer product: see types.ts.)
 */
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
    case 'Q4': {
      if (shape.length !== 2) return data
      const { levels, scales } = quantizeQ4(data, shape[0], shape[1])
      return dequantizeQ4(levels, scales, shape[0], shape[1])
    }
  }
}

/** Bytes of a weight kept as `storage` by a device that stores it natively. */
export function storageBytes(shape: readonly number[], storage: Storage = 'F32'): number {
  const n = shape.reduce((p, d) => p * d, 1)
  if (storage === 'F32' || ((storage === 'Q8' || storage === 'Q4') && shape.length !== 2)) return 4 * n
  if (storage === 'F16' || storage === 'BF16') return 2 * n
  const cp = q8Cols(shape[1])
  return shape[0] * (storage === 'Q4' ? cp / 2 : cp) + 4 * shape[0] * (cp / Q8_BLOCK)
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
