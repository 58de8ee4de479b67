// refgpt export onnx: the model as an ONNX decoder graph with a KV cache (core's export/onnx.ts), the
// inputs and outputs named as transformers.js and Optimum name them.

import { existsSync } from 'node:fs'
import { CheckpointError, UsageError, checkOnnxOutput, exportOnnx, isModelId, resolveModelDir, type OnnxDType } from '@refgpt/core'
import { intOption, parse } from '../args.js'
import { loadWithProgress, sizeOption } from './common.js'

export const summary = 'write a model as an ONNX graph (decoder with KV cache) for ONNX Runtime / transformers.js'

export const help = `Usage: refgpt export onnx --model DIR|ID --out FILE [options]

Writes the model as an ONNX graph (opset 17) of the decoder with a KV cache, built from refgpt's own
model description and weights:
  inputs   input_ids [batch, seq] int64, attention_mask [batch, past + seq] int64,
           position_ids [batch, seq] int64, past_key_values.{i}.key / .value [batch, heads, past, head_dim]
  outputs  logits [batch, seq, vocab], present.{i}.key / .value [batch, heads, past + seq, head_dim]
(the names transformers.js and Optimum use; the first step passes past tensors with past = 0).
With --static, every shape is fixed (what NPU execution providers and WebNN need): batch 1, N new tokens
per call, a KV cache of C positions:
  inputs   input_ids, position_ids [1, N]; attention_mask [1, C + N] (1: the cached positions before the
           first new token and the real new rows); past_key_values.{i}.key / .value [1, heads, C, head_dim]
  outputs  logits [1, N, vocab]; present.{i}.key / .value [1, heads, N, head_dim]: the new rows only,
           which the caller writes into its cache at their positions (cache index = position)
Export it twice: --static-tokens 1 (the decode step) and e.g. --static-tokens 64 (the prefill, the prompt
padded at the end with attention_mask 0).
GPT-2, GPT-Neo (global and local layers), GPT-J (rotary) and ModelScope GPT-3 folders are exported.
Weights bigger than ONNX's 2 GiB protobuf limit go to FILE.data (external data) beside FILE. The files
appear only when complete; an error leaves nothing behind.

Options:
  -m, --model DIR|ID     Hugging Face or ModelScope model folder, or a model id in the caches (required)
  -o, --out FILE         the .onnx file to write (required; its folder must exist)
      --dtype TYPE       f32 (default) | f16: weights stored as f16 in the file and widened to f32 by
                         the graph (arithmetic f32, like refgpt's --dtype f16)
      --max-context N    positions the graph serves (the rows of the position / rotary table written;
                         default: the model's n_positions)
      --external-data    keep the weights in FILE.data even when the model is small
      --static           a static graph (batch 1, fixed sizes: see above)
      --static-tokens N  with --static: new tokens per call (default 1: the decode step)
      --static-capacity C  with --static: KV-cache positions (default: --max-context, else n_positions)
      --variant NAME     read model.<NAME>.safetensors (Hugging Face variants, e.g. bf16)
      --revision REV     with a model id: the branch, tag or full commit hash to take from the cache
      --max-memory SIZE  memory the model may use while it is read (default: the free memory)
      --follow-symlinks  follow links that lead out of the model folder (default: refused)
      --verbose          show stack traces on errors
  -h, --help             this help
`

const DTYPES: readonly OnnxDType[] = ['f32', 'f16']

export async function run(argv: string[]): Promise<void> {
  const [format, ...rest] = argv
  if (format !== 'onnx')
    throw new UsageError({
      where: 'refgpt export',
      what: format === undefined || format.startsWith('-') ? 'missing format' : `unknown format ${JSON.stringify(format)}`,
      expected: 'onnx',
      hint: 'refgpt export onnx --model DIR --out model.onnx',
    })
  const cmd = 'export onnx'
  const { values: v, positionals } = parse(cmd, rest, {
    model: { type: 'string', short: 'm' },
    out: { type: 'string', short: 'o' },
    dtype: { type: 'string' },
    'max-context': { type: 'string' },
    'external-data': { type: 'boolean' },
    static: { type: 'boolean' },
    'static-tokens': { type: 'string' },
    'static-capacity': { type: 'string' },
    variant: { type: 'string' },
    revision: { type: 'string' },
    'max-memory': { type: 'string' },
    'follow-symlinks': { type: 'boolean' },
  })
  if (positionals.length > 0) throw new UsageError({ where: `refgpt ${cmd}`, what: `unexpected argument ${JSON.stringify(positionals[0])}`, hint: 'see `refgpt export onnx --help`' })
  // every option is checked before the model is read and before anything is written
  const model = v.model as string | undefined
  if (model === undefined) throw new UsageError({ where: `refgpt ${cmd}`, what: 'missing --model DIR', hint: 'the model folder (or id) to export' })
  const out = v.out as string | undefined
  if (!out) throw new UsageError({ where: `refgpt ${cmd}`, what: 'missing --out FILE', hint: 'e.g. --out model.onnx' })
  const dtype = (v.dtype as string | undefined) ?? 'f32'
  if (!DTYPES.includes(dtype as OnnxDType))
    throw new UsageError({ where: `refgpt ${cmd}`, what: 'unknown --dtype', expected: `one of ${DTYPES.join(', ')}`, found: JSON.stringify(dtype) })
  const maxContext = v['max-context'] === undefined ? undefined : intOption(cmd, 'max-context', v['max-context'] as string, 1, 1)
  const maxMemory = v['max-memory'] === undefined ? undefined : sizeOption(cmd, 'max-memory', v['max-memory'] as string)
  if (!v.static && (v['static-tokens'] !== undefined || v['static-capacity'] !== undefined))
    throw new UsageError({ where: `refgpt ${cmd}`, what: `--${v['static-tokens'] !== undefined ? 'static-tokens' : 'static-capacity'} needs --static` })
  const fixed = v.static
    ? {
        tokens: intOption(cmd, 'static-tokens', v['static-tokens'] as string | undefined, 1, 1),
        capacity: v['static-capacity'] === undefined ? undefined : intOption(cmd, 'static-capacity', v['static-capacity'] as string, 1, 1),
      }
    : undefined
  if (fixed && maxContext !== undefined && (fixed.tokens > maxContext || (fixed.capacity ?? 0) > maxContext))
    throw new UsageError({ where: `refgpt ${cmd}`, what: '--static-tokens and --static-capacity must fit --max-context', expected: `at most ${maxContext}`, found: `${fixed.tokens} / ${fixed.capacity ?? '-'}` })
  checkOnnxOutput(out)
  const revision = v.revision as string | undefined
  const dir = !existsSync(model) && isModelId(model) ? resolveModelDir(model, { revision }) : model
  if (!existsSync(dir)) throw new CheckpointError({ where: dir, what: 'model folder not found', hint: 'pass a folder with config.json and model weights' })

  // the js device keeps f32 arrays: the weights are read back exactly as the checkpoint has them (f16 / bf16 widened)
  const m = await loadWithProgress(dir, {
    device: 'js', dtype: 'F32', variant: v.variant as string | undefined, maxMemory, maxContext,
    followSymlinks: v['follow-symlinks'] === true, maxBatchTokens: 1,
  })
  try {
    const r = await exportOnnx(m, out, { dtype: dtype as OnnxDType, maxContext, externalData: v['external-data'] === true ? true : undefined, static: fixed })
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`
    const data = r.dataFile ? ` + ${r.dataFile} ${mib(r.dataBytes)}` : ''
    process.stdout.write(
      `wrote ${out}: ${mib(r.bytes)}${data}; ${m.family} "${m.info.modelType}", ${m.arch.nLayer} layers, opset 17, ${dtype} weights, ` +
        (r.static ? `static (batch 1, ${r.static.tokens} tokens per call, KV capacity ${r.static.capacity}), ` : '') +
        `${r.nodes} nodes, ${r.initializers} initializers; inputs ${r.inputs.length} (input_ids, attention_mask, position_ids, past_key_values.*), ` +
        `outputs ${r.outputs.length} (logits, present.*)\n`,
    )
  } finally {
    await m.dispose()
  }
}
