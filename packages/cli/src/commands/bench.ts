// refgpt bench: load time, prefill and decode speed, memory — on a checkpoint or on random weights of a
// real model's shape (no file needed). With --train: the speed of a training step (forward + backward
// through the Trainer, then the host-side AdamW), against the multiply-add peak of the same process.

import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { AdamW, SHAPES, Trainer, UsageError, argmax, inspectModel, loadModel, loadRandomModel, maddPeak, probesInChild, shapeConfig, type Example, type Model, type ProbeFigures, type WasmDevice } from '@refgpt/core'
import { intOption, parse } from '../args.js'
import { attachProfiler, profileLines, summarize, type Profile } from './bench-profile.js'
import { MODEL_OPTIONS, modelHelp, modelLabel, modelOptions, noLang, withLoadProgress } from './common.js'

export const summary = 'measure load time, prefill and decode tokens/s, peak memory (random weights of a real shape, or --model)'

export const help = `Usage: refgpt bench (--shape NAME | --model DIR) [options]

Loads a model (a checkpoint, or seeded random weights of a real model's shape), prefills a prompt of
random token ids in one forward pass, then decodes token by token, and prints what it measured:
load time, prefill tokens/s and GFLOP/s, decode tokens/s, the weight bytes one decoded token reads
and the bandwidth that implies, and the process's peak RSS. Then it runs the same prompt through
session.logProbs (log-probabilities of given next tokens, computed on the device: the evaluation
and training path) and session.logits (every row's logits copied out), and prints their tokens/s.
On the wasm device it measures the machine's limits before loading and after the timings, in a child
process on the same number of threads (a 1 GiB stream read: the wall for decode; the multiply-add
peak: the wall for prefill), and prints each figure as a share of them (--no-probe skips that).

Options:
      --shape NAME          ${Object.keys(SHAPES).join(' | ')}
      --layers N            keep only the first N layers of the shape (quick runs)
      --prompt-tokens N     prompt length for the prefill measurement (default 128)
      --new-tokens N        tokens to decode (default 64; 0 skips the decode measurement)
      --seed N              PRNG seed for the random weights and prompt (default 1234)
      --no-rows             skip the logProbs / every-row logits measurements
      --no-probe            skip the bandwidth / multiply-add probes
      --profile             wasm device: decode --new-tokens more tokens timing every split-kernel call
                            (matmuls, attention) on the main thread, and print the time per token by kernel
                            and shape, each matmul's weight GB/s, and the rest (host work, 1-thread kernels);
                            the decode figure above is measured without it
      --json                print one JSON object

Training step (--train): F32 weights (random or --model, widened), a batch of --batch-size
examples of --max-length random ids (targets: the next id, -100 at the end), one warm-up step,
then --steps timed steps, each: zeroGrad, forwardBackward (the device's backward kernels, one
example at a time), then the optimizer on the host (readGradients + AdamW + writeParameters).
It prints per step and as medians: forward+backward seconds, optimizer seconds, training
tokens/s, GFLOP/s of forward+backward counted as 6 x parameters x tokens (and with the attention
score/value products added: 12 x layers x n_embd x visible keys per sequence), the multiply-add
peak of the wasm device measured in the same process before and after the steps (probe_madd on
its thread pool, as benchmarks/probes.bench.mjs), their ratio, and peak RSS.
      --train               measure a training step instead of inference
      --batch-size N        examples per step (default 8)
      --max-length N        tokens per example (default 128)
      --steps N             timed steps after the warm-up step (default 3)
${modelHelp('bench')}`

export async function run(argv: string[]): Promise<void> {
  const { values: v } = parse('bench', argv, {
    ...MODEL_OPTIONS,
    shape: { type: 'string' },
    layers: { type: 'string' },
    'prompt-tokens': { type: 'string' },
    'new-tokens': { type: 'string' },
    seed: { type: 'string' },
    json: { type: 'boolean' },
    'no-rows': { type: 'boolean' },
    'no-probe': { type: 'boolean' },
    profile: { type: 'boolean' },
    train: { type: 'boolean' },
    'batch-size': { type: 'string' },
    'max-length': { type: 'string' },
    steps: { type: 'string' },
  })
  if ((v.shape === undefined) === (v.model === undefined))
    throw new UsageError({ where: 'refgpt bench', what: 'give exactly one of --shape and --model', hint: `shapes: ${Object.keys(SHAPES).join(', ')}` })
  noLang('bench', v)
  const o = modelOptions('bench', v)
  const trainOnly = ['batch-size', 'max-length', 'steps'], inferOnly = ['prompt-tokens', 'new-tokens', 'no-rows', 'no-probe', 'profile']
  for (const name of v.train ? inferOnly : trainOnly) {
    if (v[name] !== undefined)
      throw new UsageError({ where: 'refgpt bench', what: `--${name} ${v.train ? 'does not apply to --train' : 'needs --train'}`, hint: 'see `refgpt bench --help`' })
  }
  if (v.train) return runTrain(v, o)
  const promptTokens = intOption('bench', 'prompt-tokens', v['prompt-tokens'] as string | undefined, 128, 1)
  const newTokens = intOption('bench', 'new-tokens', v['new-tokens'] as string | undefined, 64, 0)
  const seed = intOption('bench', 'seed', v.seed as string | undefined, 1234)
  const layers = v.layers === undefined ? undefined : intOption('bench', 'layers', v.layers as string, 0, 1)
  const profiling = v.profile === true
  if (profiling && o.device !== 'wasm')
    throw new UsageError({ where: 'refgpt bench', what: `--profile times the wasm device's kernel calls (found --device ${o.device})`, hint: 'leave --device out or pass --device wasm' })
  if (profiling && newTokens === 0)
    throw new UsageError({ where: 'refgpt bench', what: '--profile times decoded tokens (found --new-tokens 0)', hint: 'pass --new-tokens 1 or more' })
  const ctx = promptTokens + newTokens * (profiling ? 2 : 1) // the profile decodes as many tokens again
  const load = { device: o.device, threads: o.threads, dtype: o.dtype, maxContext: ctx, maxBatchTokens: Math.min(promptTokens, 512), maxMemory: o.maxMemory, followSymlinks: o.followSymlinks, ortStatic: o.ortStatic }

  // the machine's limits before anything is loaded (wasm only: the probes run the wasm kernels)
  const probing = !v['no-probe'] && o.device === 'wasm'
  const probeBefore = probing ? probesInChild({ threads: o.threads }) : null

  const t0 = performance.now()
  const model: Model = await withLoadProgress(v.shape !== undefined ? String(v.shape) : modelLabel(o.dir), (p) => v.shape !== undefined
    ? loadRandomModel(v.shape as string, { ...load, seed, layers, ...p })
    : loadModel(o.dir, { ...load, variant: o.variant, ...p }))
  const loadMs = performance.now() - t0
  if (ctx > model.arch.nPositions)
    throw new UsageError({ where: 'refgpt bench', what: `prompt + new tokens${profiling ? ' (twice with --profile)' : ''} exceed the model context`, expected: `at most ${model.arch.nPositions}`, found: String(ctx) })

  // prompt: seeded ids below the tokenizer's range
  let s = seed >>> 0
  const prompt = Int32Array.from({ length: promptTokens }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % 50000) % model.arch.nVocab)

  const session = model.createSession({ kvCapacity: ctx }) // the whole KV cache now: no growth inside the timings
  await session.forward(prompt.subarray(0, 1), 0) // warm-up: first calls compile and page in
  const t1 = performance.now()
  let logits = await session.forward(prompt, 0)
  const prefillMs = performance.now() - t1

  // greedy decode of newTokens tokens from position pos0; returns the milliseconds it took
  const step = new Int32Array(1)
  const decode = async (pos0: number) => {
    const t = performance.now()
    for (let i = 0; i < newTokens; i++) {
      step[0] = argmax(logits)
      logits = await session.forward(step, pos0 + i)
    }
    return performance.now() - t
  }
  const decodeMs = await decode(promptTokens)

  // --profile: as many tokens again, every split-kernel call timed (the figures above stay unhooked)
  let profile: Profile | null = null
  if (profiling) {
    const hook = attachProfiler((model.device as WasmDevice).core)
    let ms: number
    try {
      ms = await decode(promptTokens + newTokens)
    } finally {
      hook.detach()
    }
    profile = summarize(hook.entries, newTokens, ms)
  }

  // every row: log-probabilities of the next ids on the device (one per prompt row, as many rows as the prefill)
  let logprobsMs = NaN, logitsMs = NaN
  if (!v['no-rows']) {
    const targets = Int32Array.from(prompt, (_, t) => prompt[(t + 1) % promptTokens])
    const t3 = performance.now()
    await session.logProbs(prompt, { targets })
    logprobsMs = performance.now() - t3
    const t4 = performance.now()
    await session.logits(prompt, 0)
    logitsMs = performance.now() - t4
  }
  session.dispose()
  const a = model.arch
  // multiply-adds per prefilled token in the matmuls (attention adds a little on top)
  const macsPerToken = a.nLayer * (4 * a.nEmbd * a.nEmbd + 2 * a.nEmbd * a.nInner)
  const result = {
    model: v.shape !== undefined ? `${v.shape}${layers ? ` (${layers} layers)` : ''}` : o.dir,
    device: model.device.name,
    // ONNX Runtime's intra-op pool: --threads, else its default (the cores)
    threads: model.device.name.startsWith('ort:') ? (o.threads ?? availableParallelism()) : ((model.device as { threads?: number }).threads ?? 1),
    simd: (model.device as { simd?: string }).simd ?? null, // the wasm kernels' build: plain | relaxed (REFGPT_SIMD)
    adapter: adapterOf(model), // webgpu: the driver (a GPU, or SwiftShader on the CPU)
    dtype: Object.keys(model.info.storageDtypes).join('+'),
    parameters: model.info.parameters,
    weight_bytes: model.info.weightBytes,
    memory_groups: model.info.groups,
    load_s: round(loadMs / 1000),
    prompt_tokens: promptTokens,
    prefill_s: round(prefillMs / 1000),
    prefill_tokens_per_s: round((1000 * promptTokens) / prefillMs),
    prefill_gflops: round((2 * macsPerToken * promptTokens) / (prefillMs * 1e6)),
    new_tokens: newTokens,
    decode_tokens_per_s: newTokens > 0 ? round((1000 * newTokens) / decodeMs) : null,
    decode_bytes_per_token: model.info.decodeBytesPerToken,
    decode_gb_per_s: newTokens > 0 ? round((model.info.decodeBytesPerToken * newTokens) / (decodeMs * 1e6)) : null,
    ...(v['no-rows'] ? {} : {
      logprobs_tokens_per_s: round((1000 * promptTokens) / logprobsMs),
      logprobs_vs_prefill: round(prefillMs / logprobsMs),
      all_logits_tokens_per_s: round((1000 * promptTokens) / logitsMs),
    }),
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    probe: null as null | Record<string, number | null>,
    ...(profile ? { profile } : {}),
  }
  await model.dispose()
  if (probing) {
    const after = probesInChild({ threads: o.threads })
    const both = (f: (p: ProbeFigures) => number) => (probeBefore && after ? (f(probeBefore) + f(after)) / 2 : probeBefore ? f(probeBefore) : after ? f(after) : null)
    const stream = both((p) => p.streamGBps), madd = both((p) => p.maddGflops)
    result.probe = {
      stream_gb_per_s_before: probeBefore ? round(probeBefore.streamGBps) : null,
      stream_gb_per_s_after: after ? round(after.streamGBps) : null,
      madd_gflops_before: probeBefore ? round(probeBefore.maddGflops) : null,
      madd_gflops_after: after ? round(after.maddGflops) : null,
      // the figures as a share of the mean of the two probes
      decode_of_stream: stream && result.decode_gb_per_s !== null ? round(result.decode_gb_per_s / stream) : null,
      prefill_of_madd: madd ? round(result.prefill_gflops / madd) : null,
    }
  }
  if (v.json) {
    process.stdout.write(JSON.stringify(result) + '\n')
    return
  }
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`
  process.stdout.write(
    [
      `model       ${result.model} on ${result.device} (${result.adapter ?? `${result.threads} threads`}${result.simd ? `, ${result.simd} SIMD` : ''}), ${result.dtype}, ${(result.parameters / 1e6).toFixed(1)} M parameters, ${gib(result.weight_bytes)} of weights in ${result.memory_groups} memor${result.memory_groups === 1 ? 'y' : 'ies'}`,
      `load        ${result.load_s} s`,
      `prefill     ${promptTokens} tokens in ${result.prefill_s} s: ${result.prefill_tokens_per_s} tokens/s, ${result.prefill_gflops} GFLOP/s (matmuls)`,
      newTokens === 0 ? 'decode      skipped (--new-tokens 0)' : `decode      ${newTokens} tokens: ${result.decode_tokens_per_s} tokens/s, ${gib(result.decode_bytes_per_token)} of weights per token = ${result.decode_gb_per_s} GB/s`,
      ...(v['no-rows'] ? [] : [
        `logProbs    ${promptTokens} tokens: ${result.logprobs_tokens_per_s} tokens/s = ${result.logprobs_vs_prefill} x prefill (the [T, V] LM head on every row, log-softmax on the device)`,
        `all logits  ${promptTokens} tokens: ${result.all_logits_tokens_per_s} tokens/s ([T, V] logits copied to the host)`,
      ]),
      `peak RSS    ${gib(result.peak_rss_bytes)}`,
      ...(result.probe ? [probeLine(result.probe)] : probing ? ['probes      failed (the child process did not report)'] : []),
      ...(profile ? profileLines(profile) : []),
    ].join('\n') + '\n',
  )
}

const round = (x: number) => Math.round(x * 1000) / 1000

/** The webgpu device's adapter: "google swiftshader, a CPU driver"; null on other devices. */
function adapterOf(model: Model): string | null {
  const a = (model.device as { adapter?: { vendor: string; architecture: string; cpu: boolean } }).adapter
  return a ? `${[a.vendor, a.architecture].filter(Boolean).join(' ') || 'unknown adapter'}${a.cpu ? ', a CPU driver' : ''}` : null
}

/** "probes      before / after: stream read 30.1 / 29.8 GB/s (decode at 85 %), multiply-add 94 / 95 GFLOP/s (prefill at 77 %)" */
function probeLine(p: Record<string, number | null>): string {
  const pair = (a: number | null, b: number | null) => `${a ?? '-'} / ${b ?? '-'}`
  const share = (what: string, x: number | null) => (x === null ? '' : ` (${what} at ${Math.round(100 * x)} %)`)
  return `probes      before / after: stream read ${pair(p.stream_gb_per_s_before, p.stream_gb_per_s_after)} GB/s${share('decode', p.decode_of_stream)}, ` +
    `multiply-add ${pair(p.madd_gflops_before, p.madd_gflops_after)} GFLOP/s${share('prefill', p.prefill_of_madd)}`
}

// --- training step ----------------------------------------------------------------------------------

/** The multiply-add peak of the wasm device's own pool, GFLOP/s (null on devices without a wasm core). */
function poolMaddPeak(model: Model): number | null {
  const core = (model.device as Partial<WasmDevice>).core
  return core ? maddPeak(core) : null
}

const median = (xs: number[]) => {
  const a = [...xs].sort((p, q) => p - q), m = a.length >> 1
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2
}

/** Share of the CPU (all cores) other processes used since a mark (Linux /proc/stat; null elsewhere). */
function cpuMark() {
  let stat: { idle: number; total: number } | null = null
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number)
    stat = { idle: f[3] + f[4], total: f.reduce((x, y) => x + y, 0) }
  } catch {}
  return { stat, self: process.cpuUsage() }
}
function othersShare(m: ReturnType<typeof cpuMark>): number | null {
  const n = cpuMark()
  if (!m.stat || !n.stat || n.stat.total <= m.stat.total) return null
  const total = n.stat.total - m.stat.total
  const busy = total - (n.stat.idle - m.stat.idle)
  const self = (n.self.user - m.self.user + n.self.system - m.self.system) / 1e4 // µs -> jiffies (USER_HZ 100)
  return Math.min(1, Math.max(0, (busy - self) / total))
}

async function runTrain(v: Record<string, unknown>, o: ReturnType<typeof modelOptions>): Promise<void> {
  const where = 'refgpt bench --train'
  const batchSize = intOption('bench', 'batch-size', v['batch-size'] as string | undefined, 8, 1)
  const maxLength = intOption('bench', 'max-length', v['max-length'] as string | undefined, 128, 2)
  const steps = intOption('bench', 'steps', v.steps as string | undefined, 3, 1)
  const seed = intOption('bench', 'seed', v.seed as string | undefined, 1234)
  const layers = v.layers === undefined ? undefined : intOption('bench', 'layers', v.layers as string, 0, 1)
  if (o.dtype && o.dtype !== 'F32')
    throw new UsageError({ where, what: `--dtype ${String(v.dtype)} cannot be trained`, hint: 'training is f32: leave --dtype out (f16 / bf16 checkpoints are widened)' })
  const load = { device: o.device, threads: o.threads, dtype: 'F32' as const, maxContext: maxLength, maxBatchTokens: maxLength, maxMemory: o.maxMemory, followSymlinks: o.followSymlinks }
  // the context, before any weight is made or read
  const cfg = v.shape !== undefined ? shapeConfig(v.shape as string, layers) : null
  const positions = cfg ? Number(cfg.n_positions ?? cfg.max_position_embeddings) : inspectModel(o.dir, { variant: o.variant, followSymlinks: o.followSymlinks }).arch.nPositions
  if (maxLength > positions)
    throw new UsageError({ where, what: '--max-length exceeds the model context', expected: `at most ${positions}`, found: String(maxLength) })

  const t0 = performance.now()
  const model: Model = await withLoadProgress(v.shape !== undefined ? String(v.shape) : modelLabel(o.dir), (p) => v.shape !== undefined
    ? loadRandomModel(v.shape as string, { ...load, seed, layers, ...p })
    : loadModel(o.dir, { ...load, variant: o.variant, ...p }))
  const loadMs = performance.now() - t0
  try {
    const a = model.arch
    const trainer = new Trainer(model, { maxLength })
    const host = await trainer.hostParams()
    const opt = new AdamW(host, { lr: 1e-5 })

    // a batch of seeded random ids below the tokenizer's range; targets = the next id, -100 at the end
    let s = seed >>> 0
    const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % 50000) % a.nVocab
    const batch: Example[] = Array.from({ length: batchSize }, () => {
      const ids = Int32Array.from({ length: maxLength }, next)
      const targets = Int32Array.from(ids, (_, t) => (t + 1 < maxLength ? ids[t + 1] : -100))
      return { inputIds: ids, targets }
    })
    const tokens = batchSize * maxLength

    const peakBefore = poolMaddPeak(model)
    const rows: { zero_s: number; fwd_bwd_s: number; optimizer_s: number; loss: number; other_cpu: number | null }[] = []
    for (let i = 0; i <= steps; i++) {
      const mark = cpuMark()
      const ta = performance.now()
      trainer.zeroGrad()
      const tb = performance.now()
      const r = await trainer.forwardBackward(batch)
      const tc = performance.now()
      await trainer.readGradients(host)
      opt.step()
      trainer.writeParameters(host)
      const td = performance.now()
      if (i > 0) rows.push({ zero_s: (tb - ta) / 1000, fwd_bwd_s: (tc - tb) / 1000, optimizer_s: (td - tc) / 1000, loss: r.loss, other_cpu: othersShare(mark) })
    }
    const peakAfter = poolMaddPeak(model)
    const peaks = [peakBefore, peakAfter].filter((p): p is number => p !== null)
    const peak = peaks.length ? Math.max(...peaks) : null

    // FLOPs of forward + backward: 6 per parameter per token (2 forward, 4 backward: dx and dW), and the
    // attention products q·kᵀ and p·v (2 multiply-adds per visible key per channel forward, twice that backward)
    const params = model.info.parameters
    let keyPairs = 0 // Σ over layers of Σ_t visible keys of position t
    for (let l = 0; l < a.nLayer; l++) {
      const w = a.layers[l].window
      for (let t = 0; t < maxLength; t++) keyPairs += w > 0 ? Math.min(t + 1, w) : t + 1
    }
    const flopsDense = 6 * params * tokens
    const flopsAttn = 12 * a.nEmbd * keyPairs * batchSize
    const fb = median(rows.map((r) => r.fwd_bwd_s)), op = median(rows.map((r) => r.optimizer_s)), zs = median(rows.map((r) => r.zero_s))
    const gflops = flopsDense / (fb * 1e9), gflopsAttn = (flopsDense + flopsAttn) / (fb * 1e9)
    const result = {
      mode: 'train',
      model: v.shape !== undefined ? `${v.shape}${layers ? ` (${layers} layers)` : ''}` : o.dir,
      device: model.device.name,
      threads: (model.device as { threads?: number }).threads ?? 1,
      simd: (model.device as { simd?: string }).simd ?? null,
      dtype: 'F32',
      parameters: params,
      load_s: round(loadMs / 1000),
      batch_size: batchSize,
      max_length: maxLength,
      tokens_per_step: tokens,
      steps,
      loss: round(rows[rows.length - 1].loss),
      zero_grad_s: round(zs),
      fwd_bwd_s: round(fb),
      optimizer_s: round(op),
      step_s: round(zs + fb + op),
      train_tokens_per_s: round(tokens / (zs + fb + op)),
      fwd_bwd_tokens_per_s: round(tokens / fb),
      fwd_bwd_gflops: round(gflops),
      fwd_bwd_gflops_with_attention: round(gflopsAttn),
      flops_per_step: flopsDense,
      attention_flops_per_step: flopsAttn,
      madd_peak_gflops: peak === null ? null : round(peak),
      madd_peak_before_gflops: peakBefore === null ? null : round(peakBefore),
      madd_peak_after_gflops: peakAfter === null ? null : round(peakAfter),
      of_peak: peak === null ? null : round(gflops / peak),
      of_peak_with_attention: peak === null ? null : round(gflopsAttn / peak),
      per_step: rows.map((r) => ({
        zero_s: round(r.zero_s), fwd_bwd_s: round(r.fwd_bwd_s), optimizer_s: round(r.optimizer_s),
        tokens_per_s: round(tokens / (r.zero_s + r.fwd_bwd_s + r.optimizer_s)), fwd_bwd_gflops: round(flopsDense / (r.fwd_bwd_s * 1e9)),
        loss: round(r.loss), other_cpu: r.other_cpu === null ? null : round(r.other_cpu),
      })),
      peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    }
    if (v.json) {
      process.stdout.write(JSON.stringify(result) + '\n')
      return
    }
    const pct = (x: number | null) => (x === null ? '-' : `${(100 * x).toFixed(1)} %`)
    const cpu = (x: number | null) => (x === null ? '?' : `${Math.round(100 * x)} %`)
    process.stdout.write(
      [
        `model       ${result.model} on ${result.device} (${result.threads} threads${result.simd ? `, ${result.simd} SIMD` : ''}), F32, ${(params / 1e6).toFixed(1)} M parameters; load ${result.load_s} s`,
        `batch       ${batchSize} x ${maxLength} tokens = ${tokens} tokens per step; 1 warm-up step, ${steps} timed`,
        ...result.per_step.map((r, i) => `step ${String(i + 1).padEnd(6)} fwd+bwd ${r.fwd_bwd_s.toFixed(3)} s (${r.fwd_bwd_gflops.toFixed(1)} GFLOP/s), optimizer ${r.optimizer_s.toFixed(3)} s, zero_grad ${r.zero_s.toFixed(3)} s: ${r.tokens_per_s.toFixed(1)} tokens/s, loss ${r.loss.toFixed(4)} (other processes ${cpu(r.other_cpu)} of the CPU)`),
        `median      fwd+bwd ${result.fwd_bwd_s} s, optimizer ${result.optimizer_s} s (readGradients + AdamW + writeParameters), zero_grad ${result.zero_grad_s} s`,
        `tokens/s    ${result.train_tokens_per_s} (whole step), ${result.fwd_bwd_tokens_per_s} (forward+backward)`,
        `GFLOP/s     ${result.fwd_bwd_gflops} (6 x params x tokens / fwd+bwd), ${result.fwd_bwd_gflops_with_attention} with attention`,
        peak === null
          ? 'madd peak   - (no wasm core on this device)'
          : `madd peak   ${result.madd_peak_gflops} GFLOP/s (before ${result.madd_peak_before_gflops}, after ${result.madd_peak_after_gflops}); fwd+bwd at ${pct(result.of_peak)} of it (${pct(result.of_peak_with_attention)} with attention)`,
        `peak RSS    ${(result.peak_rss_bytes / 2 ** 30).toFixed(2)} GiB`,
      ].join('\n') + '\n',
    )
  } finally {
    await model.dispose()
  }
}
