// The machine limits a benchmark figure is read against, measured on the kernels' own thread pool:
//   stream   probe_stream_read over a buffer far larger than the caches: GB/s a mat-vec could stream
//            (the wall for decode, which reads every weight once per token); since session 11 it reads a
//            page ahead as the decode tiles do (quant.ts read_ahead), 4-7 % above the plain read
//   madd     probe_madd, 12 independent f32x4 mul + add chains: GFLOP/s of multiply-add (the wall for
//            prefill's matmuls)
// benchmarks/probes.bench.mjs measures the same with benchmark.js; `refgpt bench` and
// benchmarks/compare-ort.mjs call measureProbes (in a child process, so that the probe's buffer does
// not count in the benchmark's peak RSS: probesInChild) before and after what they time.
import { spawnSync } from 'node:child_process'
import { createWasmCore, type WasmCore } from './pool.js'

export interface ProbeFigures {
  threads: number
  /** Bytes the stream probe read per call. */
  streamBytes: number
  /** Median GB/s (1e9 bytes/s) of the stream read split over every thread. */
  streamGBps: number
  /** Median GFLOP/s of probe_madd split over every thread. */
  maddGflops: number
}

const MADD_UNITS = 64, MADD_ITERS = 100_000, MADD_FLOPS = MADD_UNITS * MADD_ITERS * 96

/** The median of xs (the mean of the two middle values for an even count). */
const median = (xs: number[]): number => {
  const a = [...xs].sort((p, q) => p - q), m = a.length >> 1
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2
}

/** Times `fn` `calls` times after 3 untimed calls; the median in ms. */
function timeMedian(fn: () => void, calls: number): number {
  for (let i = 0; i < 3; i++) fn()
  const ms: number[] = []
  for (let i = 0; i < calls; i++) {
    const t = performance.now()
    fn()
    ms.push(performance.now() - t)
  }
  return median(ms)
}

/**
 * The multiply-add peak of `core`'s pool, GFLOP/s: the median of `calls` timed calls of probe_madd (64
 * units of 100 000 iterations of 12 f32x4 mul + add chains) split over every thread, after 3 untimed ones.
 */
export function maddPeak(core: WasmCore, calls = 60): number {
  const ms = timeMedian(() => {
    core.args[0] = MADD_ITERS
    core.run(0, 'probe_madd', 1, MADD_UNITS)
  }, calls)
  return MADD_FLOPS / (ms * 1e6)
}

/**
 * Measures the stream-read bandwidth (a `streamBytes` buffer, written first so that reads hit real
 * pages) and the multiply-add peak on a fresh core of `threads` threads, then closes it.
 */
export async function measureProbes(opts: { threads?: number; streamBytes?: number; calls?: number } = {}): Promise<ProbeFigures> {
  const streamBytes = opts.streamBytes ?? 2 ** 30
  const calls = opts.calls ?? 15
  const core = await createWasmCore({ threads: opts.threads })
  try {
    const mem = core.memories[0]
    const buf = mem.alloc(streamBytes)
    new Uint32Array(mem.buffer, buf, streamBytes / 4).fill(0x3f800000) // 1.0f
    const streamMs = timeMedian(() => {
      core.args[0] = buf
      core.args[1] = streamBytes
      core.run(0, 'probe_stream_read', 2, streamBytes / 16)
    }, calls)
    mem.release(buf)
    return { threads: core.threads, streamBytes, streamGBps: streamBytes / (streamMs * 1e6), maddGflops: maddPeak(core, 4 * calls) }
  } finally {
    await core.close()
  }
}

/**
 * measureProbes in a child Node process (the same V8 flags and environment, so the same kernel build):
 * its buffer and threads never touch the caller's memory figures. null when the child fails.
 */
export function probesInChild(opts: { threads?: number; streamBytes?: number } = {}): ProbeFigures | null {
  const url = import.meta.url // this module (under tsx: the .ts file; process.execArgv carries the loader)
  const script = `import(${JSON.stringify(url)}).then(async (m) => process.stdout.write(JSON.stringify(await m.measureProbes(${JSON.stringify(opts)}))))`
  const r = spawnSync(process.execPath, [...process.execArgv, '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 120_000,
  })
  if (r.status !== 0) return null
  try {
    return JSON.parse(r.stdout) as ProbeFigures
  } catch {
    return null
  }
}
