// The WGSL sources of the webgpu device: one compute shader per op, each the GPU port of the js
// device's loop of the same name (device/js.ts). Every shader starts with PRELUDE and its buffer
// bindings (see bindings() in webgpu.ts):
//   binding 0      args: this op's slot of the argument ring — sizes and flags in args[0..7], then the
//                  per-row integers (token ids, positions, targets) from args[8]
//   binding 1..    the op's f32 buffers, read through ld_<name>(i) and written through st_<name>(i, v);
//                  two names for the same GPUBuffer share one binding (an op's out may be its input)
//   binding 10     w: a weight in its storage type, read through w_at(row, col, cols) (WEIGHT below)
//   binding 11     xq: the quantized activations of a Q8 / Q4 matmul
// Arithmetic is f32 throughout; there is no f16 arithmetic and no `shader-f16` requirement: f16 and
// bf16 weights are 16-bit halves of u32 words, widened with bit operations.

import type { Activation, Storage } from '../types.js'

/** Workgroup size of every kernel (reductions are written for exactly this many invocations). */
export const WG = 64
/** Token rows one matmul workgroup computes: each weight element it loads serves TT rows. */
export const TT = 4
/** Where the per-row integers of an op start in its args slot. */
export const ARG_ROWS = 8
/** args[ARG_SCALES]: word offset of a Q8 / Q4 weight's scales in its buffer. */
export const ARG_SCALES = 7

export const PRELUDE = /* wgsl */ `
@group(0) @binding(0) var<storage, read> args: array<u32>;
const WG: u32 = ${WG}u;
const TT: u32 = ${TT}u;
fn arg_f(i: u32) -> f32 { return bitcast<f32>(args[i]); }
fn arg_i(i: u32) -> i32 { return bitcast<i32>(args[i]); }
fn neg_inf() -> f32 { let b = 0xff800000u; return bitcast<f32>(b); }
fn nan() -> f32 { let b = 0x7fc00000u; return bitcast<f32>(b); }
// NaN tests on the bits: a shader compiler may assume floats are never NaN
fn is_nan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
// the index of this workgroup in a grid laid out by grid() (x up to 65535, then rows of y)
fn group_index(wid: vec3u, nwg: vec3u) -> u32 { return wid.y * nwg.x + wid.x; }
`

/** f16 bits -> f32, exactly (subnormals by ldexp, which is exact; inf and NaN kept). */
const F16 = /* wgsl */ `
fn f16_to_f32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) { // zero or subnormal: m * 2^-24
    let v = ldexp(f32(m), -24);
    return select(v, -v, sign != 0u);
  }
  if (e == 31u) { return bitcast<f32>(sign | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}
`

/**
 * w_at(r, c, cols): element (r, c) of a [rows, cols] weight, as the f32 its storage type represents
 * (Q8 / Q4: f32(q) * scale, as an embedding gather reads it).
 */
export function weightSource(storage: Storage): string {
  switch (storage) {
    case 'F32':
      return `@group(0) @binding(10) var<storage, read> w: array<f32>;
fn w_at(r: u32, c: u32, cols: u32) -> f32 { return w[r * cols + c]; }`
    case 'F16':
      return `@group(0) @binding(10) var<storage, read> w: array<u32>;
${F16}
fn w_at(r: u32, c: u32, cols: u32) -> f32 {
  let e = r * cols + c; // element e is half e & 1 of word e >> 1 (little-endian)
  return f16_to_f32((w[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu);
}`
    case 'BF16':
      return `@group(0) @binding(10) var<storage, read> w: array<u32>;
fn w_at(r: u32, c: u32, cols: u32) -> f32 {
  let e = r * cols + c; // bf16 is the top half of an f32
  return bitcast<f32>(((w[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu) << 16u);
}`
    case 'Q8':
      return `@group(0) @binding(10) var<storage, read> w: array<u32>;
fn w_at(r: u32, c: u32, cols: u32) -> f32 {
  let nb = (cols + 31u) / 32u;
  let e = r * nb * 32u + c; // int8 e of the padded rows, 4 a word
  let q = extractBits(bitcast<i32>(w[e >> 2u]), (e & 3u) * 8u, 8u);
  return f32(q) * bitcast<f32>(w[args[${ARG_SCALES}] + r * nb + c / 32u]);
}`
    case 'Q4':
      return `@group(0) @binding(10) var<storage, read> w: array<u32>;
fn w_at(r: u32, c: u32, cols: u32) -> f32 {
  let nb = (cols + 31u) / 32u;
  let e = r * nb * 32u + c; // 4-bit level e of the padded rows, 8 a word
  let level = (w[e >> 3u] >> ((e & 7u) * 4u)) & 0xfu;
  return f32(i32(level) - 8) * bitcast<f32>(w[args[${ARG_SCALES}] + r * nb + c / 32u]);
}`
  }
}

/** out[i] = x[i] ... elementwise kernels: one invocation per element. */
const elementwise = (body: string) => /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = group_index(wid, nwg) * WG + lid;
${body}
}`

// --- copy, add, activation -------------------------------------------------------------------------

/** args: n, dstOff, srcOff. */
export const COPY = elementwise(`  if (i >= args[0]) { return; }
  st_dst(args[1] + i, ld_src(args[2] + i));`)

/** args: n. out may be a or b (one binding then). */
export const ADD = elementwise(`  if (i >= args[0]) { return; }
  st_out(i, ld_a(i) + ld_b(i));`)

const ACTIVATIONS: Record<Activation, string> = {
  // HF "gelu_new": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  gelu_tanh: '0.5 * x * (1.0 + tanh_(0.7978845608028654 * (x + 0.044715 * x * x * x)))',
  // HF "gelu": 0.5 x (1 + erf(x / sqrt 2))
  gelu_erf: '0.5 * x * (1.0 + erf_(x * 0.7071067811865476))',
  relu: 'select(0.0, x, x > 0.0)',
  silu: 'x / (1.0 + exp(-x))',
  quick_gelu: 'x / (1.0 + exp(-1.702 * x))',
}

/** args: n. The activation is chosen per pipeline; out may be x. */
export function activationSource(act: Activation): string {
  return /* wgsl */ `
// tanh from exp(-2|x|), which cannot overflow (a sinh / cosh quotient would be NaN beyond |x| ~ 44)
fn tanh_(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}
// erf with |error| < 1.2e-7 (Numerical Recipes' erfc, as js.ts)
fn erf_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}
fn act(x: f32) -> f32 { return ${ACTIVATIONS[act]}; }
${elementwise(`  if (i >= args[0]) { return; }
  st_out(i, act(ld_x(i)));`)}`
}

// --- embed, rotary -------------------------------------------------------------------------------

/** args: T, C, accumulate, -, ..., scales; ids from ARG_ROWS. out[t, :] (+)= w[ids[t], :]; a negative id is a zero row. */
export const EMBED = elementwise(`  let T = args[0]; let C = args[1];
  if (i >= T * C) { return; }
  let t = i / C; let c = i % C;
  let id = arg_i(${ARG_ROWS}u + t);
  let accumulate = args[2] != 0u;
  if (id < 0) { // a zero row: stored as zeros, nothing added
    if (!accumulate) { st_out(i, 0.0); }
    return;
  }
  let v = w_at(u32(id), c, C);
  if (accumulate) { st_out(i, ld_out(i) + v); } else { st_out(i, v); }`)

/**
 * args: T, nHead, headDim, rotaryDim; positions from ARG_ROWS. GPT-J's rotate_every_two in place on x:
 * one invocation per (t, head, pair i).
 */
export const ROTARY = elementwise(`  let T = args[0]; let H = args[1]; let D = args[2]; let half = args[3] / 2u;
  if (i >= T * H * half) { return; }
  let t = i / (H * half); let h = (i / half) % H; let pair = i % half;
  let pos = args[${ARG_ROWS}u + t];
  let cs = ld_table((pos * half + pair) * 2u); let sn = ld_table((pos * half + pair) * 2u + 1u);
  let p = t * H * D + h * D + 2u * pair;
  let x0 = ld_x(p); let x1 = ld_x(p + 1u);
  st_x(p, x0 * cs - x1 * sn);
  st_x(p + 1u, x1 * cs + x0 * sn);`)

// --- layerNorm, logProbs: one invocation per row ------------------------------------------------

/** args: T, C, eps. out[t] = (x[t] - mean) / sqrt(var + eps) * g + b (biased variance); out may be x. */
export const LAYER_NORM = elementwise(`  let T = args[0]; let C = args[1]; let eps = arg_f(2u);
  let t = i;
  if (t >= T) { return; }
  let row = t * C;
  var mean = 0.0;
  for (var c = 0u; c < C; c++) { mean += ld_x(row + c); }
  mean /= f32(C);
  var variance = 0.0;
  for (var c = 0u; c < C; c++) { let d = ld_x(row + c) - mean; variance += d * d; }
  variance /= f32(C);
  let inv = 1.0 / sqrt(variance + eps);
  for (var c = 0u; c < C; c++) { st_out(row + c, (ld_x(row + c) - mean) * inv * ld_g(c) + ld_b(c)); }`)

/**
 * args: T, V; targets from ARG_ROWS. out[t] = logits[t, target] - logsumexp(logits[t, :]) (a negative
 * target: 0); with greedy, greedy[t] = 1 when the target is the row's first argmax (every earlier
 * logit smaller, no later one larger, no NaN), else 0.
 */
export function logProbsSource(greedy: boolean): string {
  return elementwise(`  let T = args[0]; let V = args[1];
  let t = i;
  if (t >= T) { return; }
  let tgt = arg_i(${ARG_ROWS}u + t);
  let row = t * V;
  var m = neg_inf();
  for (var j = 0u; j < V; j++) { m = max(m, ld_logits(row + j)); }
  // the sum of V exponentials, compensated (Kahan): a plain f32 sum over 50k terms is ~1e-5 off in the log
  var s = 0.0; var lost = 0.0;
  for (var j = 0u; j < V; j++) {
    let y = exp(ld_logits(row + j) - m) - lost;
    let next = s + y;
    lost = (next - s) - y;
    s = next;
  }
  let valid = tgt >= 0 && u32(tgt) < V;
  var lp = 0.0;
  if (valid) { lp = ld_logits(row + u32(tgt)) - m - log(s); } else if (tgt >= 0) { lp = nan(); }
  st_out(t, lp);
${greedy ? `  var first = valid;
  if (first) {
    let tg = u32(tgt);
    let xt = ld_logits(row + tg);
    first = !is_nan(xt);
    for (var j = 0u; j < V; j++) {
      let v = ld_logits(row + j);
      if (is_nan(v) || (j < tg && v >= xt) || (j > tg && v > xt)) { first = false; break; }
    }
  }
  st_greedy(t, select(0.0, 1.0, first));` : ''}`)
}

// --- attention -----------------------------------------------------------------------------------

/**
 * args: T, pos0, nHead, headDim, scale, window. One invocation per (head, query row): the js device's
 * three passes over the keys j in (i - window, i] — the max score, the sum of exp, then out += p_j v_j
 * (out is this invocation's own row of one head). With probs, the probabilities are written too
 * (0 where masked).
 */
export function attentionSource(probs: boolean): string {
  return /* wgsl */ `
// scale * (q · k) for one head: q from element qo of q, k from element ko of the key cache
fn score(qo: u32, ko: u32, D: u32, scale: f32) -> f32 {
  var dot = 0.0;
  for (var d = 0u; d < D; d++) { dot += ld_q(qo + d) * ld_k(ko + d); }
  return dot * scale;
}
${elementwise(`  let T = args[0]; let pos0 = args[1]; let H = args[2]; let D = args[3]; let scale = arg_f(4u); let window = args[5];
  if (i >= H * T) { return; }
  let h = i / T; let t = i % T;
  let C = H * D; let q = pos0 + t; let nKeys = pos0 + T;
  var first = 0u;
  if (window > 0u && q + 1u > window) { first = q + 1u - window; }
  let qo = t * C + h * D;
  var m = neg_inf();
  for (var j = first; j <= q; j++) { m = max(m, score(qo, j * C + h * D, D, scale)); }
  var sum = 0.0;
  for (var j = first; j <= q; j++) { sum += exp(score(qo, j * C + h * D, D, scale) - m); }
  for (var d = 0u; d < D; d++) { st_out(qo + d, 0.0); }
${probs ? `  let row = (h * T + t) * nKeys;
  for (var j = 0u; j < nKeys; j++) { st_probs(row + j, 0.0); }` : ''}
  for (var j = first; j <= q; j++) {
    let p = exp(score(qo, j * C + h * D, D, scale) - m) / sum;
    for (var d = 0u; d < D; d++) { st_out(qo + d, ld_out(qo + d) + p * ld_v(j * C + h * D + d)); }
${probs ? '    st_probs(row + j, p);' : ''}
  }`)}`
}

// --- matmul --------------------------------------------------------------------------------------

/**
 * args: T, K, N. out[T, N] = x[T, K] · W[N, K]^T (+ b) for F32 / F16 / BF16 weights (w_at widens them).
 * One invocation per output column n and TT token rows: a plain loop over k, each weight element
 * loaded once for the TT rows; no workgroup memory, no barriers.
 */
export function matmulSource(bias: boolean): string {
  return elementwise(`  let T = args[0]; let K = args[1]; let N = args[2];
  if (i >= N * ((T + TT - 1u) / TT)) { return; }
  let n = i % N; // a row of W, a column of out
  let t0 = (i / N) * TT;
  let rows = min(TT, T - t0);
  var acc: array<f32, ${TT}>;
  for (var k = 0u; k < K; k++) {
    let wv = w_at(n, k, K);
    for (var r = 0u; r < rows; r++) { acc[r] += ld_x((t0 + r) * K + k) * wv; }
  }
  for (var r = 0u; r < rows; r++) { st_out((t0 + r) * N + n, acc[r]${bias ? ' + ld_b(n)' : ''}); }`)
}

/**
 * div_rn(a, b): the bits of the f32 nearest to a / b (ties to even), for the bits of a finite a >= 0
 * and a finite b > 0, computed in integers. WGSL's f32 division may be 2.5 ulp off (and may flush
 * subnormals), and the Q8 rule divides with the exactly rounded f32 quotient, as JS's Math.fround(a / b).
 */
const DIV_RN = /* wgsl */ `
fn div_rn(a: u32, b: u32) -> u32 {
  if (a == 0u) { return 0u; }
  // significands as integers in [2^23, 2^24) with value m * 2^(e - 150); subnormals normalized
  var ma = a & 0x7fffffu; var ea = i32(a >> 23u);
  var mb = b & 0x7fffffu; var eb = i32(b >> 23u);
  if (ea == 0) { let s = countLeadingZeros(ma) - 8u; ma <<= s; ea = 1 - i32(s); } else { ma |= 0x800000u; }
  if (eb == 0) { let s = countLeadingZeros(mb) - 8u; mb <<= s; eb = 1 - i32(s); } else { mb |= 0x800000u; }
  var e = ea - eb; // a / b = (ma / mb) * 2^e
  if (ma < mb) { ma <<= 1u; e -= 1; } // ma / mb in [1, 2)
  // 26 bits of the quotient (1 integer, 25 fraction) by long division; r != 0 when more bits follow
  var q = 0u; var r = ma;
  for (var k = 0u; k < 26u; k++) {
    q <<= 1u;
    if (r >= mb) { r -= mb; q |= 1u; }
    r <<= 1u;
  }
  // round q * 2^(e - 25) to 24 significant bits, or to the subnormal grid (multiples of 2^-149)
  let biased = e + 127;
  var drop = 2u;
  if (biased < 1) { drop = min(2u + u32(1 - biased), 27u); }
  let half = 1u << (drop - 1u);
  let rest = q & ((1u << drop) - 1u);
  var m = q >> drop;
  if (rest > half || (rest == half && (r != 0u || (m & 1u) == 1u))) { m += 1u; }
  if (biased < 1) { return m; } // subnormal (m = 2^23 is the smallest normal: the encoding agrees)
  var be = u32(biased);
  if (m == 0x1000000u) { m = 0x800000u; be += 1u; } // rounded up to the next power of two
  if (be >= 255u) { return 0x7f800000u; }
  return (be << 23u) | (m & 0x7fffffu);
}
`

/**
 * args: T, K, nb. The activations of a quantized matmul, by quantizeQ8's rule (device/storage.ts): per
 * block of 32 of each row (zero-padded), d = max|x| / 127, q = clamp(round-half-away(x / d), -127, 127),
 * q = 0 where d is 0 or not finite. One invocation per (row, block); xq gets the int8s, 4 a word
 * ([T, nb, 8] words), then the f32 scales [T, nb].
 */
export const QUANTIZE = /* wgsl */ `
@group(0) @binding(11) var<storage, read_write> xq: array<u32>;
${DIV_RN}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let T = args[0]; let K = args[1]; let nb = args[2];
  let idx = group_index(wid, nwg) * WG + lid;
  if (idx >= T * nb) { return; }
  let t = idx / nb; let c0 = (idx % nb) * 32u; let c1 = min(c0 + 32u, K);
  // max |x| on the bits: for floats >= 0 the integer order is the float order, and a NaN (bits above
  // +inf) wins, as Math.max propagates it
  var amax = 0u;
  for (var c = c0; c < c1; c++) { amax = max(amax, bitcast<u32>(ld_x(t * K + c)) & 0x7fffffffu); }
  var d = amax; // inf and NaN stay (inf / 127 = inf)
  if (amax < 0x7f800000u) { d = div_rn(amax, 0x42fe0000u); } // / 127
  xq[T * nb * 8u + idx] = d;
  let ok = d != 0u && d < 0x7f800000u;
  for (var j = 0u; j < 8u; j++) {
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
      let c = c0 + j * 4u + k;
      var q = 0i;
      if (ok && c < K) {
        let xb = bitcast<u32>(ld_x(t * K + c));
        let v = bitcast<f32>(div_rn(xb & 0x7fffffffu, d)); // |x| / d rounded once to f32
        let fl = floor(v);
        q = min(i32(fl) + select(0i, 1i, v - fl >= 0.5), 127i); // half away from zero (v - fl is exact)
        if ((xb >> 31u) != 0u) { q = -q; }
      }
      word |= (bitcast<u32>(q) & 0xffu) << (k * 8u);
    }
    xq[idx * 8u + j] = word;
  }
}`

/** dot4(a, b): the dot product of two words of four int8s (WGSL's dot4I8Packed where the language has it). */
export function dot4Source(builtin: boolean): string {
  return builtin
    ? 'fn dot4(a: u32, b: u32) -> i32 { return dot4I8Packed(a, b); }'
    : `fn dot4(a: u32, b: u32) -> i32 {
  let x = bitcast<i32>(a); let y = bitcast<i32>(b);
  return extractBits(x, 0u, 8u) * extractBits(y, 0u, 8u) + extractBits(x, 8u, 8u) * extractBits(y, 8u, 8u)
    + extractBits(x, 16u, 8u) * extractBits(y, 16u, 8u) + extractBits(x, 24u, 8u) * extractBits(y, 24u, 8u);
}`
}

const BLOCK_DOT: Record<'Q8' | 'Q4', string> = {
  // 8 words of 4 int8s a block
  Q8: `fn block_dot(n: u32, b: u32, nb: u32, x0: u32) -> i32 {
  let w0 = (n * nb + b) * 8u;
  var s = 0i;
  for (var j = 0u; j < 8u; j++) { s += dot4(w[w0 + j], xq[x0 + j]); }
  return s;
}`,
  // 4 words of 8 levels (4 bits each, element 8j + k in bits 4k .. 4k+3 of word j); the weight is
  // level - 8, so the block's dot is levels · xq - 8 Σ xq (levels 0..15 are valid int8s)
  Q4: `fn spread(v: u32) -> u32 { // four 4-bit levels (bits 0..15) -> four bytes
  return (v & 0xfu) | ((v & 0xf0u) << 4u) | ((v & 0xf00u) << 8u) | ((v & 0xf000u) << 12u);
}
fn block_dot(n: u32, b: u32, nb: u32, x0: u32) -> i32 {
  let w0 = (n * nb + b) * 4u;
  var s = 0i; var xsum = 0i;
  for (var j = 0u; j < 4u; j++) {
    let lv = w[w0 + j];
    let xa = xq[x0 + 2u * j]; let xb = xq[x0 + 2u * j + 1u];
    s += dot4(spread(lv), xa) + dot4(spread(lv >> 16u), xb);
    xsum += dot4(0x01010101u, xa) + dot4(0x01010101u, xb);
  }
  return s - 8i * xsum;
}`,
}

/**
 * args: T, K, N, nb, -, -, 0, scales. The integer matmul of the numerics contract (matmulQuantized in
 * js.ts), one invocation per output column n and TT token rows: isum_b exact in i32, then
 * s = s + f32(isum_b) * (dw[n, b] * dx[t, b]) over the blocks in order, each one f32 operation. The
 * product passes through opaque() (a select on args[6], which is 0) so that no compiler can fuse the
 * multiply and the add into an FMA.
 */
export function matmulQuantSource(storage: 'Q8' | 'Q4', bias: boolean, builtinDot4: boolean): string {
  return /* wgsl */ `
@group(0) @binding(10) var<storage, read> w: array<u32>;
@group(0) @binding(11) var<storage, read> xq: array<u32>;
${dot4Source(builtinDot4)}
${BLOCK_DOT[storage]}
fn opaque(v: f32) -> f32 { return select(v, 0.0, args[6] != 0u); }
${elementwise(`  let T = args[0]; let N = args[2]; let nb = args[3]; let ws0 = args[${ARG_SCALES}];
  if (i >= N * ((T + TT - 1u) / TT)) { return; }
  let n = i % N;
  let t0 = (i / N) * TT;
  let rows = min(TT, T - t0);
  let xs0 = T * nb * 8u; // the activations' scales in xq
  var s: array<f32, ${TT}>;
  for (var b = 0u; b < nb; b++) {
    let dw = bitcast<f32>(w[ws0 + n * nb + b]);
    for (var r = 0u; r < rows; r++) {
      let t = t0 + r;
      let isum = block_dot(n, b, nb, (t * nb + b) * 8u);
      s[r] = s[r] + opaque(f32(isum) * (dw * bitcast<f32>(xq[xs0 + t * nb + b])));
    }
  }
  for (var r = 0u; r < rows; r++) { st_out((t0 + r) * N + n, s[r]${bias ? ' + ld_b(n)' : ''}); }`)}`
}
