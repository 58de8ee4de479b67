// AdamW and gradient clipping with torch 1.13's float32 arithmetic (CPU, one thread), checked against
// ../shared/golden/training (test/optim.test.ts: parameters after one AdamW step are bit-identical there).
//
// Every element goes through the same float32 operations, in the same order, as torch's kernels:
// `Math.fround` at each torch op boundary, scalars rounded to float32 where torch converts them
// (a Python float passed to a float32 tensor op becomes a float32 operand), Python-side scalar arithmetic
// (1 - lr·wd, bias corrections, step size) in float64 as Python does it.
//
// torch.optim.AdamW, `_single_tensor_adamw` (torch/optim/adamw.py, 1.13; foreach is off by default on CPU):
//
//     step_t += 1
//     param.mul_(1 - lr * weight_decay)                         # decoupled decay, first
//     exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
//     exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//     step = step_t.item()
//     bias_correction1 = 1 - beta1 ** step
//     bias_correction2 = 1 - beta2 ** step
//     step_size = lr / bias_correction1
//     bias_correction2_sqrt = math.sqrt(bias_correction2)
//     denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
//     param.addcdiv_(exp_avg, denom, value=-step_size)
//
// The ATen CPU kernels behind those ops (AVX2 build): `add_` with alpha is `vec::fmadd(b, alpha, a)`, a fused
// multiply-add; `addcmul_` is `self + value * t1 * t2` (GCC contracts the last multiply-add into an FMA too —
// step 1 cannot tell the two apart since v starts at 0; they differ by at most 1 ulp of v); `addcdiv_` is
// `self + value * t1 / t2`; sqrt and division are correctly rounded. `fmaF32` below is an exact float32 FMA.
//
// Gradient accumulation: the trainer sums the gradients of `accum` micro-batches into the same `grad` arrays
// (backward kernels add into them) with each micro-batch's loss scaled by 1/accum, as HF Trainer does
// (`loss = loss / gradient_accumulation_steps`), then clips and steps once and calls `zeroGrad()`. Nothing here
// needs to know about it.

import { UsageError, show } from '../errors.js'

/** One trainable parameter: its float32 values (updated in place) and its gradient (same length). */
export interface NamedParam {
  name: string
  data: Float32Array
  grad: Float32Array
}

export type ParamGroups = 'all' | 'no-decay-bias-norm'

export interface AdamWOptions {
  /** Default learning rate for `step()` without an argument (torch's `lr`; a schedule passes its own). */
  lr: number
  betas?: [number, number]
  eps?: number
  weightDecay?: number
  /**
   * 'all' (default): one group, weight decay on every parameter, as `torch.optim.AdamW(model.parameters())` in
   * the seed's recipe. 'no-decay-bias-norm': HF Trainer's two groups (no decay for biases and LayerNorm weights).
   */
  groups?: ParamGroups
  /** Overrides the no-decay rule (whatever `groups` says): parameters for which it returns true get no decay. */
  isNoDecay?: (name: string) => boolean
}

/** Serializable optimizer state: the step count and both moments, in parameter order. */
export interface AdamWState {
  step: number
  names: string[]
  m: Float32Array[]
  v: Float32Array[]
}

/**
 * HF Trainer's no-decay rule (`Trainer.get_decay_parameter_names`, transformers 4.40): parameters of LayerNorm
 * modules and every parameter whose name contains "bias". Trainer finds LayerNorm modules by type; from names alone
 * they are those with `ln_` (GPT-2 / GPT-Neo / GPT-J: ln_1, ln_2, ln_f) or `norm` in any case (ModelScope GPT-3:
 * input_layernorm, post_attention_layernorm, final_layernorm; BERT-style LayerNorm).
 */
export function isNoDecayBiasNorm(name: string): boolean {
  return name.includes('bias') || /(^|\.)ln_|norm/i.test(name)
}

const buf32 = new Float32Array(1)
const bits32 = new Int32Array(buf32.buffer)

/**
 * fmaf(a, b, c) for float32 a, b, c: a·b + c rounded once to float32. a·b is exact in float64; the float64 sum
 * rounds, and rounding that again to float32 is wrong only when the float64 sum lands exactly halfway between two
 * floats32 while the exact sum does not — detected and resolved with the sum's exact error (TwoSum).
 */
export function fmaF32(a: number, b: number, c: number): number {
  const p = a * b
  const s = p + c
  const r = Math.fround(s)
  if (r === s) return r
  const o = r + 2 * (s - r) // the other float32 neighbour when s is a midpoint
  if (Math.fround(o) !== o) return r
  const bv = s - p
  const e = p - (s - bv) + (c - bv) // p + c = s + e exactly
  if (e === 0) return r // a true tie: fround already rounded it to even
  return e > 0 === o > r ? o : r
}

/** Euclidean norm of a float32 array as torch 1.13's CPU kernel computes it (see `clipGradNorm`). */
export function normF32(x: Float32Array): number {
  // 8 float32 lanes (AVX2 Vectorized<float>), each accumulating x·x with FMA over x[j], x[j+8], ...
  let a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0
  const n = x.length, end = n - (n % 8)
  let d = 0
  for (; d < end; d += 8) {
    a0 = fmaF32(x[d], x[d], a0)
    a1 = fmaF32(x[d + 1], x[d + 1], a1)
    a2 = fmaF32(x[d + 2], x[d + 2], a2)
    a3 = fmaF32(x[d + 3], x[d + 3], a3)
    a4 = fmaF32(x[d + 4], x[d + 4], a4)
    a5 = fmaF32(x[d + 5], x[d + 5], a5)
    a6 = fmaF32(x[d + 6], x[d + 6], a6)
    a7 = fmaF32(x[d + 7], x[d + 7], a7)
  }
  const f = Math.fround
  // lanes summed in order, then the tail one by one
  let s = f(f(f(f(f(f(f(a0 + a1) + a2) + a3) + a4) + a5) + a6) + a7)
  for (; d < n; d++) s = fmaF32(x[d], x[d], s)
  return f(Math.sqrt(s))
}

/**
 * torch.nn.utils.clip_grad_norm_(parameters, max_norm) (norm_type 2, torch 1.13): scales every gradient in place
 * by min(1, max_norm / (total_norm + 1e-6)) and returns total_norm, the norm before clipping.
 *
 *     total_norm = torch.norm(torch.stack([torch.norm(g, 2) for g in grads]), 2)
 *     clip_coef = max_norm / (total_norm + 1e-6)          # Tensor.__rtruediv__: total.reciprocal() * max_norm
 *     clip_coef_clamped = torch.clamp(clip_coef, max=1.0)
 *     for g in grads: g.mul_(clip_coef_clamped)
 *
 * The norm is float32 as torch computes it: per tensor, 8 FMA lanes + a sequential lane sum + the tail
 * (`normF32`), then the same over the vector of per-tensor norms. This reproduces the golden
 * `total_grad_norm_before_clip` bit for bit for both fixtures (a float64 sum of squares differs from it by
 * rel 6.6e-7 on gpt-neo-odd; 16 lanes, AVX-512's width, by 4e-7). The order of `grads` (torch: model.parameters()
 * order) changes only the norm-of-norms rounding. A tied embedding is one parameter: pass its gradient once.
 * Like torch (error_if_nonfinite=False), a NaN/inf norm is returned and propagates into the gradients.
 */
export function clipGradNorm(grads: Float32Array[], maxNorm: number): number {
  if (typeof maxNorm !== 'number' || !(maxNorm > 0)) {
    throw new UsageError({ where: 'clipGradNorm', what: 'invalid max norm', expected: 'a number > 0', found: show(maxNorm) })
  }
  if (grads.length === 0) return 0
  const f = Math.fround
  const norms = new Float32Array(grads.length)
  for (let i = 0; i < grads.length; i++) norms[i] = normF32(grads[i])
  const total = normF32(norms)
  const coef = f(f(1 / f(total + f(1e-6))) * f(maxNorm))
  if (!(coef >= 1)) {
    // clamp(max=1) then mul_: coef < 1 scales; NaN scales (to NaN) as in torch; coef ≥ 1 multiplies by 1.
    for (const g of grads) for (let j = 0; j < g.length; j++) g[j] = g[j] * coef // the Float32Array store rounds
  }
  return total
}

/**
 * torch.optim.AdamW over named float32 parameters (torch 1.13, amsgrad off, maximize off). Parameters and their
 * gradients are updated in place; moments are float32 like torch's state. One step count for all parameters (all
 * are stepped every time). Tied weights must appear once (one parameter, one state).
 */
export class AdamW {
  readonly params: readonly NamedParam[]
  lr: number
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
  /** Per parameter: the weight decay its group uses (0 for HF's no-decay group). */
  readonly decay: readonly number[]
  /** Steps taken (torch's state['step']). */
  stepCount = 0
  private readonly m: Float32Array[]
  private readonly v: Float32Array[]

  constructor(params: NamedParam[], opts: AdamWOptions) {
    const where = 'AdamW'
    const { lr, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0.01, groups = 'all', isNoDecay } = opts
    const num = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x)
    // torch's checks (0.0 <= lr, 0.0 <= eps, 0.0 <= beta < 1.0, 0.0 <= weight_decay)
    if (!num(lr) || lr < 0) throw new UsageError({ where, what: 'invalid learning rate', expected: 'a finite number ≥ 0', found: show(lr) })
    if (!num(eps) || eps < 0) throw new UsageError({ where, what: 'invalid eps', expected: 'a finite number ≥ 0', found: show(eps) })
    if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => num(b) && b >= 0 && b < 1)) {
      throw new UsageError({ where, what: 'invalid betas', expected: 'two numbers in [0, 1)', found: show(betas) })
    }
    if (!num(weightDecay) || weightDecay < 0) throw new UsageError({ where, what: 'invalid weight decay', expected: 'a finite number ≥ 0', found: show(weightDecay) })
    if (groups !== 'all' && groups !== 'no-decay-bias-norm') {
      throw new UsageError({ where, what: 'invalid parameter groups', expected: '"all" or "no-decay-bias-norm"', found: show(groups) })
    }
    const seen = new Set<string>()
    for (const p of params) {
      if (seen.has(p.name)) throw new UsageError({ where, what: 'parameter listed twice', found: show(p.name), hint: 'a tied weight is one parameter: list it once' })
      seen.add(p.name)
      if (!(p.data instanceof Float32Array) || !(p.grad instanceof Float32Array) || p.data.length !== p.grad.length) {
        throw new UsageError({ where: `${where}: parameter ${p.name}`, what: 'data and grad must be Float32Arrays of one length', found: `${p.data?.length} and ${p.grad?.length}` })
      }
    }
    const noDecay = isNoDecay ?? (groups === 'no-decay-bias-norm' ? isNoDecayBiasNorm : () => false)
    this.params = params.slice()
    this.lr = lr
    this.beta1 = betas[0]
    this.beta2 = betas[1]
    this.eps = eps
    this.weightDecay = weightDecay
    this.decay = params.map((p) => (noDecay(p.name) ? 0 : weightDecay))
    this.m = params.map((p) => new Float32Array(p.data.length))
    this.v = params.map((p) => new Float32Array(p.data.length))
  }

  /** One AdamW step with learning rate `lr` (a schedule's `lrAt(stepCount)`; default: the constructor's lr). */
  step(lr: number = this.lr): void {
    if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) {
      throw new UsageError({ where: 'AdamW.step', what: 'invalid learning rate', expected: 'a finite number ≥ 0', found: show(lr) })
    }
    const f = Math.fround
    const { beta1, beta2 } = this
    const step = ++this.stepCount
    // Python float64 scalars, then float32 where they meet a float32 tensor
    const bc1 = 1 - beta1 ** step
    const bc2 = 1 - beta2 ** step
    const negStepSize = f(-(lr / bc1))
    const bc2Sqrt = f(Math.sqrt(bc2))
    const b1 = f(beta1), b2 = f(beta2), a1 = f(1 - beta1), a2 = f(1 - beta2), eps = f(this.eps)
    for (let i = 0; i < this.params.length; i++) {
      const { data: p, grad: g } = this.params[i]
      const m = this.m[i], v = this.v[i]
      const wd = this.decay[i]
      // torch multiplies by exactly 1.0 when the group's weight_decay is 0: a no-op
      const keep = f(1 - lr * wd)
      for (let j = 0; j < p.length; j++) {
        const gj = g[j]
        const pj = wd !== 0 ? f(p[j] * keep) : p[j]
        const mj = fmaF32(gj, a1, f(m[j] * b1)) // exp_avg.mul_(beta1).add_(grad, alpha=1-beta1)
        const vj = fmaF32(f(a2 * gj), gj, f(v[j] * b2)) // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1-beta2)
        m[j] = mj
        v[j] = vj
        const denom = f(f(f(Math.sqrt(vj)) / bc2Sqrt) + eps) // (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
        p[j] = pj + f(f(negStepSize * mj) / denom) // param.addcdiv_(exp_avg, denom, value=-step_size); store rounds
      }
    }
  }

  /** Sets every gradient to 0 (torch 1.13's zero_grad default, set_to_none=False). */
  zeroGrad(): void {
    for (const p of this.params) p.grad.fill(0)
  }

  /** A copy of the optimizer state (step count and moments), for checkpoints. */
  state(): AdamWState {
    return { step: this.stepCount, names: this.params.map((p) => p.name), m: this.m.map((a) => a.slice()), v: this.v.map((a) => a.slice()) }
  }

  /** Restores `state()` (copied in); parameter names and sizes must match this optimizer's. */
  loadState(s: AdamWState): void {
    const where = 'AdamW.loadState'
    if (!Number.isInteger(s?.step) || s.step < 0) throw new UsageError({ where, what: 'invalid step', expected: 'an integer ≥ 0', found: show(s?.step) })
    const n = this.params.length
    if (!Array.isArray(s.m) || !Array.isArray(s.v) || s.m.length !== n || s.v.length !== n) {
      throw new UsageError({ where, what: 'state has a different number of parameters', expected: String(n), found: `${s.m?.length} / ${s.v?.length}` })
    }
    for (let i = 0; i < n; i++) {
      const p = this.params[i]
      if (s.names && s.names[i] !== p.name) throw new UsageError({ where, what: `parameter ${i} differs`, expected: show(p.name), found: show(s.names[i]) })
      for (const [k, a] of [['m', s.m[i]], ['v', s.v[i]]] as const) {
        if (!(a instanceof Float32Array) || a.length !== p.data.length) {
          throw new UsageError({ where: `${where}: parameter ${p.name}`, what: `${k} has the wrong size`, expected: `Float32Array(${p.data.length})`, found: String(a?.length) })
        }
      }
    }
    for (let i = 0; i < n; i++) {
      this.m[i].set(s.m[i])
      this.v[i].set(s.v[i])
    }
    this.stepCount = s.step
  }
}
