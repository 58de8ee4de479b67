// refgpt bench: load time, prefill and decode speed, memory — on a checkpoint or on random weights of a
// real model's shape (no file needed).

import { SHAPES, UsageError, argmax, loadModel, loadRandomModel, type Model } from '@refgpt/core'
import { intOption, parse } from '../args.js'
import { MODEL_HELP, MODEL_OPTIONS, modelOptions } from './common.js'

export const summary = 'measure load time, prefill and decode tokens/s, peak memory (random weights of a real shape, or --model)'

export const help = `Usage: refgpt bench (--shape NAME | --model DIR) [options]

Loads a model (a checkpoint, or seeded random weights of a real model's shape), prefills a prompt of
random token ids in one forward pass, then decodes token by token, and prints what it measured:
load time, prefill tokens/s and GFLOP/s, decode tokens/s, the weight bytes one decoded token reads
and the bandwidth that implies, and the process's peak RSS. Then it runs the same prompt through
session.logProbs (log-probabilities of given next tokens, computed on the device: the evaluation
and training path) and session.logits (every row's logits copied out), and prints their tokens/s.

Options:
      --shape NAME          ${Object.keys(SHAPES).join(' | ')}
      --layers N            keep only the first N layers of the shape (quick runs)
      --prompt-tokens N     prompt length for the prefill measurement (default 128)
      --new-tokens N        tokens to decode (default 64; 0 skips the decode measurement)
      --seed N              PRNG seed for the random weights and prompt (default 1234)
      --no-rows             skip the logProbs / every-row logits measurements
      --json                print one JSON object
${MODEL_HELP}`

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
  })
  if ((v.shape === undefined) === (v.model === undefined))
    throw new UsageError({ where: 'refgpt bench', what: 'give exactly one of --shape and --model', hint: `shapes: ${Object.keys(SHAPES).join(', ')}` })
  const o = modelOptions('bench', v)
  const promptTokens = intOption('bench', 'prompt-tokens', v['prompt-tokens'] as string | undefined, 128, 1)
  const newTokens = intOption('bench', 'new-tokens', v['new-tokens'] as string | undefined, 64, 0)
  const seed = intOption('bench', 'seed', v.seed as string | undefined, 1234)
  const layers = v.layers === undefined ? undefined : intOption('bench', 'layers', v.layers as string, 0, 1)
  const ctx = promptTokens + newTokens
  const load = { device: o.device, threads: o.threads, dtype: o.dtype, maxContext: ctx, maxBatchTokens: Math.min(promptTokens, 512) }

  const t0 = performance.now()
  const model: Model = v.shape !== undefined
    ? await loadRandomModel(v.shape as string, { ...load, seed, layers })
    : await loadModel(o.dir, { ...load, variant: o.variant })
  const loadMs = performance.now() - t0
  if (ctx > model.arch.nPositions)
    throw new UsageError({ where: 'refgpt bench', what: 'prompt + new tokens exceed the model context', expected: `at most ${model.arch.nPositions}`, found: String(ctx) })

  // prompt: seeded ids below the tokenizer's range
  let s = seed >>> 0
  const prompt = Int32Array.from({ length: promptTokens }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % 50000) % model.arch.nVocab)

  const session = model.createSession({ kvCapacity: ctx }) // the whole KV cache now: no growth inside the timings
  await session.forward(prompt.subarray(0, 1), 0) // warm-up: first calls compile and page in
  const t1 = performance.now()
  let logits = await session.forward(prompt, 0)
  const prefillMs = performance.now() - t1

  const step = new Int32Array(1)
  const t2 = performance.now()
  for (let i = 0; i < newTokens; i++) {
    step[0] = argmax(logits)
    logits = await session.forward(step, promptTokens + i)
  }
  const decodeMs = performance.now() - t2

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
    threads: (model.device as { threads?: number }).threads ?? 1,
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
  }
  await model.dispose()
  if (v.json) {
    process.stdout.write(JSON.stringify(result) + '\n')
    return
  }
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`
  process.stdout.write(
    [
      `model       ${result.model} on ${result.device} (${result.threads} threads), ${result.dtype}, ${(result.parameters / 1e6).toFixed(1)} M parameters, ${gib(result.weight_bytes)} of weights in ${result.memory_groups} memor${result.memory_groups === 1 ? 'y' : 'ies'}`,
      `load        ${result.load_s} s`,
      `prefill     ${promptTokens} tokens in ${result.prefill_s} s: ${result.prefill_tokens_per_s} tokens/s, ${result.prefill_gflops} GFLOP/s (matmuls)`,
      newTokens === 0 ? 'decode      skipped (--new-tokens 0)' : `decode      ${newTokens} tokens: ${result.decode_tokens_per_s} tokens/s, ${gib(result.decode_bytes_per_token)} of weights per token = ${result.decode_gb_per_s} GB/s`,
      ...(v['no-rows'] ? [] : [
        `logProbs    ${promptTokens} tokens: ${result.logprobs_tokens_per_s} tokens/s = ${result.logprobs_vs_prefill} x prefill (the [T, V] LM head on every row, log-softmax on the device)`,
        `all logits  ${promptTokens} tokens: ${result.all_logits_tokens_per_s} tokens/s ([T, V] logits copied to the host)`,
      ]),
      `peak RSS    ${gib(result.peak_rss_bytes)}`,
    ].join('\n') + '\n',
  )
}

const round = (x: number) => Math.round(x * 1000) / 1000
