// rope.ts — GPT-J rotary position embedding (interleaved "rotate_every_two"), in place.
//
// rotary(x, table, positions, T, H, D, R):
//   x: f32 [T, H*D] (q or k rows); positions: i32 [T];
//   table: f32 [nPos, R/2, 2] = (cos, sin) of position p times inv_freq[i], precomputed by the host.
// On the first R dims of every head, pair i (dims 2i, 2i+1) at position p = positions[t]:
//   out[2i]   = x[2i] * cos - x[2i+1] * sin
//   out[2i+1] = x[2i+1] * cos + x[2i] * sin
// The SIMD body does two pairs per f32x4 with exactly those f32 operations (bitwise equal to _naive).
// rotary_backward (training) is the same loop with sin negated: the rotation by -angle.

/**
 * Two pairs rotated by +angle (dir 1) or -angle (dir -1, the backward): x = (x0, x1, x2, x3),
 * cs = (c0, s0, c1, s1). Lane 0: x0*c0 + x1*(-dir*s0); lane 1: x1*c0 + x0*(dir*s0) (negation is exact).
 */
// @ts-ignore: decorator
@inline function rot2(x: v128, cs: v128, dir: f32): v128 {
  const c = v128.shuffle<f32>(cs, cs, 0, 0, 2, 2)
  const s = f32x4.mul(v128.shuffle<f32>(cs, cs, 1, 1, 3, 3), f32x4(-dir, dir, -dir, dir))
  const xsw = v128.shuffle<f32>(x, x, 1, 0, 3, 2)
  return f32x4.add(f32x4.mul(x, c), f32x4.mul(xsw, s))
}

/** Every row, head and pair of x rotated by dir * angle (SIMD: two pairs per f32x4). */
// @ts-ignore: decorator
@inline function rotate(x: usize, table: usize, positions: usize, T: i32, H: i32, D: i32, R: i32, dir: f32): void {
  const half = R >> 1
  const cs = (<usize>H * <usize>D) << 2
  for (let t = 0; t < T; t++) {
    const tab = table + ((<usize>load<i32>(positions + (<usize>t << 2)) * <usize>R) << 2)
    const row = x + <usize>t * cs
    for (let h = 0; h < H; h++) {
      const p = row + ((<usize>h * <usize>D) << 2)
      let i = 0
      for (; i + 2 <= half; i += 2) {
        const o = <usize>i << 3
        v128.store(p + o, rot2(v128.load(p + o), v128.load(tab + o), dir))
      }
      for (; i < half; i++) {
        const o = <usize>i << 3
        const c = load<f32>(tab + o), s = dir * load<f32>(tab + o, 4)
        const x0 = load<f32>(p + o), x1 = load<f32>(p + o, 4)
        store<f32>(p + o, x0 * c - x1 * s)
        store<f32>(p + o, x1 * c + x0 * s, 4)
      }
    }
  }
}

/** rotate, scalar loops. */
// @ts-ignore: decorator
@inline function rotate_naive(x: usize, table: usize, positions: usize, T: i32, H: i32, D: i32, R: i32, dir: f32): void {
  const half = R >> 1
  for (let t = 0; t < T; t++) {
    const pos = load<i32>(positions + (<usize>t << 2))
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < half; i++) {
        const c = load<f32>(table + ((<usize>(pos * half + i) * 2) << 2))
        const s = dir * load<f32>(table + ((<usize>(pos * half + i) * 2 + 1) << 2))
        const p = x + ((<usize>t * <usize>(H * D) + <usize>(h * D + 2 * i)) << 2)
        const x0 = load<f32>(p), x1 = load<f32>(p + 4)
        store<f32>(p, x0 * c - x1 * s)
        store<f32>(p + 4, x1 * c + x0 * s)
      }
    }
  }
}

export function rotary(x: usize, table: usize, positions: usize, T: i32, H: i32, D: i32, R: i32): void {
  rotate(x, table, positions, T, H, D, R, 1)
}
export function rotary_naive(x: usize, table: usize, positions: usize, T: i32, H: i32, D: i32, R: i32): void {
  rotate_naive(x, table, positions, T, H, D, R, 1)
}

/** The backward of rotary (training): the rotation by -angle, its transpose. In place. */
export function rotary_backward(x: usize, table: usize, positions: usize, T: i32, H: i32, D: i32, R: i32): void {
  rotate(x, table, positions, T, H, D, R, -1)
}
export function rotary_backward_naive(x: usize, table: usize, positions: usize, T: i32, H: i32, D: i32, R: i32): void {
  rotate_naive(x, table, positions, T, H, D, R, -1)
}
