// Conversions between float32 and the two 16-bit storage formats that checkpoints use.
//
//   f16  (IEEE 754 binary16): 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
//   bf16 (bfloat16):          1 sign bit, 8 exponent bits (bias 127), 7 mantissa bits,
//                             i.e. the upper half of a float32.
//
// Widening (16 -> 32 bits) is exact for every input, subnormals, infinities and NaNs included, and is
// done on bit patterns (Uint32Array views) so that NaN payloads survive unchanged. Narrowing
// (32 -> 16 bits) rounds to nearest, ties to even, like torch's `.half()` / `.bfloat16()` and numpy.

// Checkpoints are little-endian and refgpt reads their bytes straight into typed arrays, which use the
// machine's byte order: refuse to run on a big-endian machine instead of silently reading garbage.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('refgpt reads little-endian checkpoint bytes directly and needs a little-endian machine')
}

// Scratch views to move between a float32 value and its bit pattern.
const scratchF32 = new Float32Array(1)
const scratchU32 = new Uint32Array(scratchF32.buffer)

/** The bit pattern of `x` rounded to float32. */
export function f32ToBits(x: number): number {
  scratchF32[0] = x
  return scratchU32[0]
}

/** The float32 value whose bit pattern is `bits` (an unsigned 32-bit integer). */
export function bitsToF32(bits: number): number {
  scratchU32[0] = bits
  return scratchF32[0]
}

// ---------------------------------------------------------------------------------------------------
// f16

/** float32 bit pattern of the f16 value with bit pattern `h` (exact). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16
  const exp = (h >>> 10) & 0x1f
  let mant = h & 0x3ff
  if (exp === 0x1f) {
    // Infinity (mantissa 0) or NaN (payload kept in the top mantissa bits).
    return (sign | 0x7f800000 | (mant << 13)) >>> 0
  }
  if (exp !== 0) {
    // Normal number: re-bias the exponent from 15 to 127.
    return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0
  }
  if (mant === 0) return sign >>> 0 // ±0
  // Subnormal f16 (mant * 2^-24) is a normal float32: shift the mantissa until its leading 1 reaches
  // the implicit-bit position (bit 10), lowering the exponent once per shift.
  let e = 1
  while ((mant & 0x400) === 0) {
    mant <<= 1
    e--
  }
  return (sign | ((e + 112) << 23) | ((mant & 0x3ff) << 13)) >>> 0
}

/** The f16 value with bit pattern `h` as a number (exact). */
export function f16BitsToF32(h: number): number {
  return bitsToF32(f16BitsToF32Bits(h))
}

/**
 * f16 bit pattern of the float32 whose bit pattern is `bits`, rounded to nearest, ties to even.
 * Values beyond the f16 range become ±Infinity; NaN stays a (quiet) NaN with its sign and top payload bits.
 */
export function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000
  const exp = (bits >>> 23) & 0xff
  const mant = bits & 0x7fffff
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13)
  // The exponent field the value would have as an f16 (bias 15 instead of 127).
  const halfExp = exp - 112
  if (halfExp >= 0x1f) return sign | 0x7c00 // too large even before rounding
  if (halfExp <= 0) {
    // Subnormal f16 (or zero): the result's mantissa is value / 2^-24 = m * 2^(halfExp - 14),
    // with m the 24-bit float32 significand including its implicit leading 1.
    if (halfExp < -10) return sign // below half the smallest subnormal: rounds to ±0
    const m = mant | 0x800000
    const shift = 14 - halfExp // 14 ... 24
    return sign | roundShift(m, shift)
  }
  // Normal f16: keep the top 10 mantissa bits and round on the 13 dropped ones. A carry out of the
  // mantissa correctly bumps the exponent (and turns 65520 and above into Infinity).
  return sign | roundShift((halfExp << 23) | mant, 13)
}

/** `value >> shift` rounded to nearest, ties to even (value < 2^31, 1 <= shift <= 24). */
function roundShift(value: number, shift: number): number {
  const kept = value >>> shift
  const rest = value & ((1 << shift) - 1)
  const half = 1 << (shift - 1)
  return rest > half || (rest === half && (kept & 1) === 1) ? kept + 1 : kept
}

/** f16 bit pattern of `x` (first rounded to float32), round to nearest even. */
export function f32ToF16Bits(x: number): number {
  return f32BitsToF16Bits(f32ToBits(x))
}

// ---------------------------------------------------------------------------------------------------
// bf16

/** The bf16 value with bit pattern `b` as a number (exact: it is the upper half of a float32). */
export function bf16BitsToF32(b: number): number {
  return bitsToF32(((b & 0xffff) << 16) >>> 0)
}

/**
 * bf16 bit pattern of the float32 whose bit pattern is `bits`, rounded to nearest, ties to even.
 * Values that round beyond the bf16 range become ±Infinity; NaN stays a quiet NaN with its sign.
 */
export function f32BitsToBf16Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) {
    return ((bits >>> 16) | 0x0040) & 0xffff // NaN: keep sign and top payload, force quiet
  }
  const lsb = (bits >>> 16) & 1
  // bits + 0x7fff + lsb < 2^32 for every non-NaN input, so plain number arithmetic is exact here.
  return Math.floor((bits + 0x7fff + lsb) / 0x10000) & 0xffff
}

/** bf16 bit pattern of `x` (first rounded to float32), round to nearest even. */
export function f32ToBf16Bits(x: number): number {
  return f32BitsToBf16Bits(f32ToBits(x))
}

// ---------------------------------------------------------------------------------------------------
// Bulk conversions

/** float32 bit patterns of all 65536 f16 values, built on first use (256 KiB). */
let f16Table: Uint32Array | undefined

function getF16Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(0x10000)
    for (let h = 0; h < 0x10000; h++) f16Table[h] = f16BitsToF32Bits(h)
  }
  return f16Table
}

/** The float32 bits view of `dst`, checked to hold `count` elements. */
function u32View(dst: Float32Array, count: number): Uint32Array {
  if (dst.length < count) throw new RangeError(`output has ${dst.length} elements, needs ${count}`)
  return new Uint32Array(dst.buffer, dst.byteOffset, count)
}

/** Widens f16 bit patterns to float32 (exact), into `dst` at element `dstOffset`. */
export function f16ToF32Array(src: Uint16Array, dst: Float32Array, dstOffset = 0): void {
  const table = getF16Table()
  const out = u32View(dst.subarray(dstOffset), src.length)
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]]
}

/** Widens bf16 bit patterns to float32 (exact), into `dst` at element `dstOffset`. */
export function bf16ToF32Array(src: Uint16Array, dst: Float32Array, dstOffset = 0): void {
  const out = u32View(dst.subarray(dstOffset), src.length)
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16
}

/** Rounds float32 values to f16 bit patterns (nearest, ties to even). */
export function f32ToF16Array(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length)
  const out = new Uint16Array(src.length)
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToF16Bits(bits[i])
  return out
}

/** Rounds float32 values to bf16 bit patterns (nearest, ties to even). */
export function f32ToBf16Array(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length)
  const out = new Uint16Array(src.length)
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToBf16Bits(bits[i])
  return out
}
