// Learning-rate schedules as Hugging Face transformers' `get_scheduler` builds them: a `LambdaLR` whose
// multiplier `lambda(step)` scales the base learning rate, stepped once per optimizer step.
//
// torch's LambdaLR (torch/optim/lr_scheduler.py, 1.13): constructing it sets lr = base_lr * lambda(0);
// the training loop is `optimizer.step(); scheduler.step()`, so optimizer step k (0-based) runs with
//     lr_k = base_lr * lambda(k)
// — `lrAt(k)` below. Arithmetic is float64 and in the same order as the Python code, so the values equal
// Python's up to the last bit of `**` / `math.cos` (V8's fdlibm vs glibc; ≤ 1 ulp).
//
// The lambdas (transformers 4.40, src/transformers/optimization.py):
//
//   _get_constant_schedule_with_warmup_lr_lambda(current_step, *, num_warmup_steps):
//       if current_step < num_warmup_steps:
//           return float(current_step) / float(max(1.0, num_warmup_steps))
//       return 1.0
//   _get_linear_schedule_with_warmup_lr_lambda(current_step, *, num_warmup_steps, num_training_steps):
//       if current_step < num_warmup_steps:
//           return float(current_step) / float(max(1, num_warmup_steps))
//       return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))
//   _get_cosine_schedule_with_warmup_lr_lambda(current_step, *, num_warmup_steps, num_training_steps, num_cycles):
//       if current_step < num_warmup_steps:
//           return float(current_step) / float(max(1, num_warmup_steps))
//       progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
//       return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))
//
// (`get_scheduler('constant')` is `get_constant_schedule`, lambda 1, and `'constant_with_warmup'` the first one;
// with 0 warm-up steps they are the same function, so `constant` here takes the warm-up too.)
//
// noam (the ModelScope kuakua recipe the seed follows; ../shared/golden/training/README.md):
//   lr_lambda(step) = min((step + 1) ** -0.5, (step + 1) * num_warmup_steps ** -1.5)
// It rises linearly for `warmup` steps and decays as 1/sqrt(step + 1) after; its peak is warmup^-0.5 (not 1),
// so lr = base_lr * lambda never reaches base_lr for warmup > 1, as in the recipe.

import { UsageError, show } from '../errors.js'

export type ScheduleName = 'constant' | 'constant_with_warmup' | 'linear' | 'cosine' | 'noam'
export const SCHEDULES: readonly ScheduleName[] = ['constant', 'constant_with_warmup', 'linear', 'cosine', 'noam']

export interface ScheduleOptions {
  name: ScheduleName
  /** The optimizer's lr (`base_lr` of LambdaLR). */
  baseLr: number
  /** `num_warmup_steps` (default 0; noam needs ≥ 1, as `0 ** -1.5` fails in Python). */
  warmupSteps?: number
  /** `num_training_steps`: total optimizer steps (linear and cosine only). */
  totalSteps?: number
  /** Cosine waves over the decay (HF default 0.5: one half-cosine from 1 down to 0). */
  numCycles?: number
}

export interface Schedule {
  readonly name: ScheduleName
  readonly baseLr: number
  readonly warmupSteps: number
  readonly totalSteps: number | undefined
  /** LambdaLR's multiplier for scheduler step `step` (= the 0-based optimizer step it applies to). */
  lambda(step: number): number
  /** Learning rate of optimizer step `step` (0-based): baseLr * lambda(step). */
  lrAt(step: number): number
}

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0

function lambdaFor(name: ScheduleName, warmup: number, total: number, cycles: number): (step: number) => number {
  switch (name) {
    case 'constant':
    case 'constant_with_warmup':
      return (s) => (s < warmup ? s / Math.max(1, warmup) : 1.0)
    case 'linear':
      return (s) => (s < warmup ? s / Math.max(1, warmup) : Math.max(0.0, (total - s) / Math.max(1, total - warmup)))
    case 'cosine':
      return (s) => {
        if (s < warmup) return s / Math.max(1, warmup)
        const progress = (s - warmup) / Math.max(1, total - warmup)
        return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * cycles * 2.0 * progress)))
      }
    case 'noam':
      return (s) => Math.min((s + 1) ** -0.5, (s + 1) * warmup ** -1.5)
  }
}

/** A schedule by its `get_scheduler` name (plus `noam`); pure: `lrAt(k)` for any optimizer step k. */
export function createSchedule(opts: ScheduleOptions): Schedule {
  const { name, baseLr } = opts
  const warmupSteps = opts.warmupSteps ?? 0
  const numCycles = opts.numCycles ?? 0.5
  const where = 'learning-rate schedule'
  if (!SCHEDULES.includes(name)) {
    throw new UsageError({ where, what: 'unknown schedule', expected: SCHEDULES.join(', '), found: show(name) })
  }
  if (typeof baseLr !== 'number' || !Number.isFinite(baseLr) || baseLr < 0) {
    throw new UsageError({ where, what: 'invalid learning rate', expected: 'a finite number ≥ 0', found: show(baseLr) })
  }
  if (!isCount(warmupSteps)) {
    throw new UsageError({ where, what: 'invalid warm-up steps', expected: 'an integer ≥ 0', found: show(warmupSteps) })
  }
  if (name === 'noam' && warmupSteps < 1) {
    throw new UsageError({ where, what: 'noam needs warm-up steps', expected: 'warmupSteps ≥ 1', found: show(warmupSteps), hint: 'lambda = min((step+1)^-0.5, (step+1)·warmup^-1.5)' })
  }
  const needsTotal = name === 'linear' || name === 'cosine'
  if (needsTotal && !isCount(opts.totalSteps)) {
    throw new UsageError({ where, what: `${name} needs the total number of optimizer steps`, expected: 'totalSteps: an integer ≥ 0', found: show(opts.totalSteps) })
  }
  if (typeof numCycles !== 'number' || !Number.isFinite(numCycles)) {
    throw new UsageError({ where, what: 'invalid numCycles', expected: 'a finite number', found: show(numCycles) })
  }
  const totalSteps = opts.totalSteps
  const lambda = lambdaFor(name, warmupSteps, totalSteps ?? 0, numCycles)
  const checkStep = (step: number) => {
    if (!isCount(step)) throw new UsageError({ where, what: 'invalid step', expected: 'an integer ≥ 0', found: show(step) })
  }
  return {
    name,
    baseLr,
    warmupSteps,
    totalSteps,
    lambda: (step) => (checkStep(step), lambda(step)),
    // LambdaLR.get_lr: base_lr * lmbda(self.last_epoch)
    lrAt: (step) => (checkStep(step), baseLr * lambda(step)),
  }
}

/**
 * LambdaLR's bookkeeping for a training loop: `lr` is the rate of the next optimizer step; call `step()` after
 * each `optimizer.step(lr)`. `state()` / `loadState()` carry `lastStep` (LambdaLR's last_epoch) across a resume.
 */
export class LRScheduler {
  readonly schedule: Schedule
  /** Optimizer steps taken so far (LambdaLR's `last_epoch` after construction is 0 and counts `step()` calls). */
  lastStep = 0

  constructor(schedule: Schedule | ScheduleOptions) {
    this.schedule = 'lrAt' in schedule ? schedule : createSchedule(schedule)
  }

  /** The learning rate the next optimizer step uses. */
  get lr(): number {
    return this.schedule.lrAt(this.lastStep)
  }

  step(): void {
    this.lastStep++
  }

  state(): { lastStep: number } {
    return { lastStep: this.lastStep }
  }

  loadState(s: { lastStep: number }): void {
    if (!isCount(s?.lastStep)) {
      throw new UsageError({ where: 'scheduler state', what: 'invalid lastStep', expected: 'an integer ≥ 0', found: show(s?.lastStep) })
    }
    this.lastStep = s.lastStep
  }
}
