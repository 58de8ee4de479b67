// Continuous batching: many generations share one Session of one loaded model and advance together,
// one token per step. Each step the scheduler asks every running job which rows need a forward
// (Stepper.wants), runs them all as ONE Session.step() — the weights are read once per step, not once
// per sequence — and lets every job choose its next tokens (Stepper.choose). New jobs join between
// steps (their prompts run then: the prefill), finished and cancelled jobs leave between steps and
// free their KV-cache slots for the next ones in the queue.
//
// A job's tokens do not depend on what else runs: a row of Session.step() gets the same logits as a
// forward of that row alone, and each job keeps its own sampler, so a seeded request gives the same
// text batched or alone (test/serve-batching.test.ts holds that bit for bit).

import { RefgptError, UsageError, show } from '../errors.js'
import type { Session, SessionOptions } from '../models/decoder.js'
import type { Model } from '../models/model.js'
import type { Stepper } from './types.js'

/** submit() refused: the queue is full (a server answers 429). */
export class QueueFullError extends RefgptError {}
/** A job ended before finishing: cancelled by its signal, or the scheduler closed. */
export class CancelledError extends RefgptError {}

export interface SchedulerOptions {
  /** Sequences (KV-cache slots) decoded together, across all running jobs. Default 4. */
  parallel?: number
  /** Jobs that may wait for free rows; submit() refuses more (QueueFullError). Default 64. */
  maxQueue?: number
  /** The shared session's options (maxBatchTokens is raised to at least `parallel`). */
  session?: SessionOptions
}

/** One unit of work: a generation (or a scoring pass) over `rows` sequences. */
export interface Job<S extends Stepper> {
  /** KV-cache slots the job holds while it runs (prompts x choices). */
  rows: number
  /** Starts the job in the shared session: acquires its slots and runs its prompts (the prefill). */
  start(session: Session): Promise<S>
  /** After each of the job's steps (its new tokens are in the stepper). A throw cancels the job. */
  onStep?(stepper: S): void
  /** Cancels the job: waiting, it leaves the queue; running, its slots are freed before the next step. */
  signal?: AbortSignal
}

interface Entry {
  job: Job<Stepper>
  stepper: Stepper | null
  resolve(s: Stepper): void
  reject(e: unknown): void
}

/** What the scheduler is doing (a server's /metrics). */
export interface SchedulerStats {
  /** Jobs waiting for rows. */
  queued: number
  /** Jobs running. */
  running: number
  /** Slots held by running jobs (at most `parallel`). */
  busyRows: number
  parallel: number
  /** Batched steps run, and the rows they ran (rows / steps = the mean batch). */
  steps: number
  stepRows: number
  /** Jobs finished, and jobs ended otherwise (a start error, a cancellation, a failed step). */
  jobsDone: number
  jobsFailed: number
}

export class Scheduler {
  readonly session: Session
  readonly parallel: number
  readonly maxQueue: number
  private readonly queue: Entry[] = []
  private readonly running: Entry[] = []
  private loopRunning = false
  private closed = false
  /** Set by close(true) / cancelRunning(): the running jobs are cancelled before the next step. */
  private cancelAll = false
  private idle: Promise<void> = Promise.resolve()
  private steps = 0
  private stepRows = 0
  private jobsDone = 0
  private jobsFailed = 0
  // one step's rows, reused (the loop allocates nothing per step)
  private readonly slots: Int32Array
  private readonly ids: Int32Array
  private readonly positions: Int32Array
  private n = 0
  private readonly need = (slot: number, id: number, pos: number): void => {
    const i = this.n++
    this.slots[i] = slot
    this.ids[i] = id
    this.positions[i] = pos
  }

  constructor(
    readonly model: Model,
    opts: SchedulerOptions = {},
  ) {
    const parallel = opts.parallel ?? 4
    const maxQueue = opts.maxQueue ?? 64
    if (!Number.isInteger(parallel) || parallel < 1 || parallel > 256)
      throw new UsageError({ where: 'Scheduler', what: 'parallel out of range', expected: '1 .. 256 sequences', found: show(opts.parallel) })
    if (!Number.isInteger(maxQueue) || maxQueue < 0)
      throw new UsageError({ where: 'Scheduler', what: 'maxQueue out of range', expected: 'an integer >= 0', found: show(opts.maxQueue) })
    this.parallel = parallel
    this.maxQueue = maxQueue
    const maxBatchTokens = Math.max(parallel, opts.session?.maxBatchTokens ?? model.weights.maxT)
    this.session = model.createSession({ ...opts.session, maxBatchTokens })
    this.session.release(0) // every job acquires its own slots
    this.slots = new Int32Array(parallel)
    this.ids = new Int32Array(parallel)
    this.positions = new Int32Array(parallel)
  }

  /**
   * Queues a job; resolves with its stepper once it has finished (its slots released), rejects with its
   * start()'s error, a CancelledError, or at once with a QueueFullError when maxQueue jobs are waiting.
   */
  submit<S extends Stepper>(job: Job<S>): Promise<S> {
    if (this.closed) return Promise.reject(new CancelledError({ where: 'scheduler', what: 'the scheduler is closed' }))
    if (!Number.isInteger(job.rows) || job.rows < 1 || job.rows > this.parallel)
      return Promise.reject(new UsageError({ where: 'scheduler', what: 'a job needs more sequences than run in parallel', expected: `1 .. ${this.parallel}`, found: show(job.rows), hint: 'fewer prompts or choices per request, or a larger --parallel' }))
    if (!this.admits([job.rows]))
      return Promise.reject(new QueueFullError({ where: 'scheduler', what: 'the queue is full', found: `${this.queue.length} jobs waiting`, hint: 'retry later' }))
    if (job.signal?.aborted) return Promise.reject(cancelled(job.signal))
    return new Promise<S>((resolve, reject) => {
      // the signal's listener goes when the job leaves: left behind, it would keep the job (and its
      // generation) alive as long as the signal lives
      const onAbort = () => this.wake()
      const leave = () => job.signal?.removeEventListener('abort', onAbort)
      const e: Entry = {
        job: job as Job<Stepper>,
        stepper: null,
        resolve: (s) => (leave(), resolve(s as S)),
        reject: (err) => (leave(), reject(err)),
      }
      this.queue.push(e)
      job.signal?.addEventListener('abort', onAbort, { once: true })
      this.wake()
    })
  }

  /** Whether submit() would take jobs of these rows now (not refuse them with a QueueFullError), in order. */
  admits(rows: number[]): boolean {
    if (this.closed) return false
    let queued = this.queue.length, busy = this.busyRows
    for (const r of rows) {
      if (queued >= this.maxQueue && (queued > 0 || busy + r > this.parallel)) return false
      if (queued === 0 && busy + r <= this.parallel) busy += r
      else queued++
    }
    return true
  }

  /** Cancels the running jobs before the next step (after close(), when they may not finish: a shutdown's grace is over). */
  cancelRunning(): void {
    this.cancelAll = true
    this.wake()
  }

  get stats(): SchedulerStats {
    return {
      queued: this.queue.length,
      running: this.running.length,
      busyRows: this.busyRows,
      parallel: this.parallel,
      steps: this.steps,
      stepRows: this.stepRows,
      jobsDone: this.jobsDone,
      jobsFailed: this.jobsFailed,
    }
  }

  /** Slots held by running jobs. */
  get busyRows(): number {
    let n = 0
    for (const e of this.running) n += e.job.rows
    return n
  }

  /**
   * Stops taking jobs: the queued ones are cancelled; the running ones finish, unless `cancelRunning`
   * (then they are cancelled before the next step). Resolves when nothing runs; the session is disposed.
   */
  async close(cancelRunning = false): Promise<void> {
    this.closed = true
    for (const e of this.queue.splice(0)) e.reject(new CancelledError({ where: 'scheduler', what: 'the server is shutting down' }))
    if (cancelRunning) this.cancelAll = true
    this.wake()
    await this.idle
    this.session.dispose()
  }

  /** Starts the loop if it is not running (a job arrived, or a signal fired). */
  private wake(): void {
    if (this.loopRunning) return
    this.loopRunning = true
    this.idle = this.loop().finally(() => {
      this.loopRunning = false
    })
  }

  private async loop(): Promise<void> {
    while (this.running.length > 0 || this.queue.length > 0) {
      this.dropCancelled()
      await this.admit()
      await this.step()
      // let the event loop run between steps: new requests arrive, tokens go out, clients disconnect
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
  }

  /** Queued jobs whose signal fired leave the queue; running ones release their slots now. */
  private dropCancelled(): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const e = this.queue[i]
      if (e.job.signal?.aborted) {
        this.queue.splice(i, 1)
        e.reject(cancelled(e.job.signal))
      }
    }
    for (let i = this.running.length - 1; i >= 0; i--) {
      const e = this.running[i]
      if (this.cancelAll || e.job.signal?.aborted)
        this.fail(i, this.cancelAll ? new CancelledError({ where: 'scheduler', what: 'the server is shutting down' }) : cancelled(e.job.signal!))
    }
  }

  /** Starts queued jobs, in order, while their rows fit (a job that does not fit waits, and so do those after it). */
  private async admit(): Promise<void> {
    while (this.queue.length > 0 && this.queue[0].job.rows <= this.parallel - this.busyRows) {
      const e = this.queue.shift()!
      if (e.job.signal?.aborted) {
        e.reject(cancelled(e.job.signal))
        continue
      }
      try {
        e.stepper = await e.job.start(this.session)
      } catch (err) {
        this.jobsFailed++
        e.reject(err)
        continue
      }
      this.running.push(e)
    }
  }

  /** One batched forward of every running job's rows, then every job's choice. */
  private async step(): Promise<void> {
    this.n = 0
    for (const e of this.running) e.stepper!.wants(this.need)
    const n = this.n
    if (n > 0) {
      try {
        await this.session.step(this.slots, this.ids, this.positions, n)
      } catch (err) {
        // a device fault: every job in the step fails, the scheduler goes on with the next
        for (let i = this.running.length - 1; i >= 0; i--) this.fail(i, err)
        return
      }
      this.steps++
      this.stepRows += n
    }
    for (let i = 0; i < this.running.length; i++) {
      const e = this.running[i], s = e.stepper!
      try {
        if (!s.done) s.choose()
        e.job.onStep?.(s)
      } catch (err) {
        this.fail(i--, err)
        continue
      }
      if (s.done) {
        this.running.splice(i--, 1)
        s.close()
        this.jobsDone++
        e.resolve(s)
      }
    }
  }

  private fail(i: number, err: unknown): void {
    const e = this.running.splice(i, 1)[0]
    e.stepper?.close()
    this.jobsFailed++
    e.reject(err)
  }
}

function cancelled(signal: AbortSignal): unknown {
  const r: unknown = signal.reason
  if (r instanceof Error && r.name === 'TimeoutError') return r
  return new CancelledError({ where: 'scheduler', what: 'the request was cancelled' }, { cause: r })
}

/** Several steppers as one (a request with several prompts): done when all are, advanced together. */
export class StepperGroup<S extends Stepper = Stepper> implements Stepper {
  constructor(readonly members: S[]) {}
  get done(): boolean {
    return this.members.every((m) => m.done)
  }
  wants(need: (slot: number, id: number, pos: number) => void): void {
    for (const m of this.members) m.wants(need)
  }
  choose(): void {
    for (const m of this.members) if (!m.done) m.choose()
  }
  close(): void {
    for (const m of this.members) m.close()
  }
}
