// norm.ts — LayerNorm over rows.
//
// layernorm(out, x, g, b, T, C, eps): out, x: f32 [T, C]; g, b: f32 [C]; out may alias x.
//   mean = sum(x) / C;  var = sum((x - mean)^2) / C  (biased);  out = (x - mean) * (1 / sqrt(var + eps)) * g + b
// The SIMD version sums with 4 f32x4 accumulators (16 lanes) for accuracy and speed.
// layernorm_stats / layernorm_stats_naive are the same arithmetic that also store mean[t] and
// rstd[t] = 1 / sqrt(var + eps) when the pointers are not 0 (training: backward.ts's layernorm_forward),
// so the training forward is bitwise the inference forward.

// @ts-ignore: decorator
@inline function hsum4(a: v128, b: v128, c: v128, d: v128): f32 {
  const s = f32x4.add(f32x4.add(a, b), f32x4.add(c, d))
  return (f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1)) + (f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3))
}

export function layernorm(out: usize, x: usize, g: usize, b: usize, T: i32, C: i32, eps: f32): void {
  layernorm_stats(out, 0, 0, x, g, b, T, C, eps)
}

/** layernorm, also storing mean[t] and rstd[t] where mean / rstd are not 0. */
// @ts-ignore: decorator
@inline export function layernorm_stats(out: usize, meanp: usize, rstdp: usize, x: usize, g: usize, b: usize, T: i32, C: i32, eps: f32): void {
  const C16 = C & ~15, C4 = C & ~3
  const fc = <f32>C
  for (let t = 0; t < T; t++) {
    const xp = x + ((<usize>t * <usize>C) << 2)
    const op = out + ((<usize>t * <usize>C) << 2)
    // mean
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0
    let c = 0
    for (; c < C16; c += 16) {
      const p = xp + (<usize>c << 2)
      a0 = f32x4.add(a0, v128.load(p)); a1 = f32x4.add(a1, v128.load(p, 16))
      a2 = f32x4.add(a2, v128.load(p, 32)); a3 = f32x4.add(a3, v128.load(p, 48))
    }
    for (; c < C4; c += 4) a0 = f32x4.add(a0, v128.load(xp + (<usize>c << 2)))
    let sum = hsum4(a0, a1, a2, a3)
    for (; c < C; c++) sum += load<f32>(xp + (<usize>c << 2))
    const mean = sum / fc
    // variance
    const mv = f32x4.splat(mean)
    a0 = f32x4.splat(0); a1 = a0; a2 = a0; a3 = a0
    for (c = 0; c < C16; c += 16) {
      const p = xp + (<usize>c << 2)
      const d0 = f32x4.sub(v128.load(p), mv), d1 = f32x4.sub(v128.load(p, 16), mv)
      const d2 = f32x4.sub(v128.load(p, 32), mv), d3 = f32x4.sub(v128.load(p, 48), mv)
      a0 = f32x4.add(a0, f32x4.mul(d0, d0)); a1 = f32x4.add(a1, f32x4.mul(d1, d1))
      a2 = f32x4.add(a2, f32x4.mul(d2, d2)); a3 = f32x4.add(a3, f32x4.mul(d3, d3))
    }
    for (; c < C4; c += 4) {
      const d0 = f32x4.sub(v128.load(xp + (<usize>c << 2)), mv)
      a0 = f32x4.add(a0, f32x4.mul(d0, d0))
    }
    let ss = hsum4(a0, a1, a2, a3)
    for (; c < C; c++) {
      const d = load<f32>(xp + (<usize>c << 2)) - mean
      ss += d * d
    }
    const inv: f32 = 1 / sqrt<f32>(ss / fc + eps)
    if (meanp) store<f32>(meanp + (<usize>t << 2), mean)
    if (rstdp) store<f32>(rstdp + (<usize>t << 2), inv)
    // normalize
    const iv = f32x4.splat(inv)
    for (c = 0; c < C4; c += 4) {
      const o = <usize>c << 2
      const y = f32x4.mul(f32x4.mul(f32x4.sub(v128.load(xp + o), mv), iv), v128.load(g + o))
      v128.store(op + o, f32x4.add(y, v128.load(b + o)))
    }
    for (; c < C; c++) {
      const o = <usize>c << 2
      store<f32>(op + o, (load<f32>(xp + o) - mean) * inv * load<f32>(g + o) + load<f32>(b + o))
    }
  }
}

/** layernorm with scalar loops (sequential f32 sums). */
export function layernorm_naive(out: usize, x: usize, g: usize, b: usize, T: i32, C: i32, eps: f32): void {
  layernorm_stats_naive(out, 0, 0, x, g, b, T, C, eps)
}

/** layernorm_naive, also storing mean[t] and rstd[t] where mean / rstd are not 0. */
// @ts-ignore: decorator
@inline export function layernorm_stats_naive(out: usize, meanp: usize, rstdp: usize, x: usize, g: usize, b: usize, T: i32, C: i32, eps: f32): void {
  for (let t = 0; t < T; t++) {
    const xp = x + ((<usize>t * <usize>C) << 2)
    const op = out + ((<usize>t * <usize>C) << 2)
    let sum: f32 = 0
    for (let c = 0; c < C; c++) sum += load<f32>(xp + (<usize>c << 2))
    const mean = sum / <f32>C
    let ss: f32 = 0
    for (let c = 0; c < C; c++) {
      const d = load<f32>(xp + (<usize>c << 2)) - mean
      ss += d * d
    }
    const inv: f32 = 1 / sqrt<f32>(ss / <f32>C + eps)
    if (meanp) store<f32>(meanp + (<usize>t << 2), mean)
    if (rstdp) store<f32>(rstdp + (<usize>t << 2), inv)
    for (let c = 0; c < C; c++) {
      const o = <usize>c << 2
      store<f32>(op + o, (load<f32>(xp + o) - mean) * inv * load<f32>(g + o) + load<f32>(b + o))
    }
  }
}
