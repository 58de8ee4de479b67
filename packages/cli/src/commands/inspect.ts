// refgpt inspect: what a model folder holds and what it needs, without reading the weights.

import { UsageError, inspectModel } from '@refgpt/core'
import { parse } from '../args.js'
import { CONTEXT_HELP, CONTEXT_OPTIONS, MODEL_OPTIONS, loadOptions, modelHelp, modelOptions } from './common.js'

export const summary = 'describe a model folder: family, config, parameters, dtypes, format, memory'

export const help = `Usage: refgpt inspect [DIR | --model DIR] [options]

Reads config.json and the checkpoint headers (no tensor data), checks every tensor name and shape the
family needs, and prints the family, the key config values, the parameter count, the dtypes, the file
format and the memory the model needs on the device (weights, KV cache at the context, activations),
with the memory available (--max-memory, or the free memory): the same estimate loading checks.

Options:
      --json             print one JSON object
${CONTEXT_HELP}${modelHelp('inspect')}`

const MiB = 1024 * 1024
const fmtBytes = (b: number) => (b >= 1024 * MiB ? `${(b / 1024 / MiB).toFixed(2)} GiB` : b >= MiB ? `${(b / MiB).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`)

export async function run(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse('inspect', argv, { ...MODEL_OPTIONS, ...CONTEXT_OPTIONS, json: { type: 'boolean' } })
  if (positionals.length > 1) throw new UsageError({ where: 'refgpt inspect', what: 'more than one folder', found: JSON.stringify(positionals.join(' ')), hint: 'see `refgpt inspect --help`' })
  const o = modelOptions('inspect', { ...v, model: positionals[0] ?? v.model })
  const info = inspectModel(o.dir, loadOptions(o))
  const a = info.arch, traits = info.traits
  const m = info.memory
  if (v.json) {
    const { arch, config, ...rest } = info
    process.stdout.write(JSON.stringify({ ...rest, arch }) + '\n')
    return
  }
  const lines = [
    `folder        ${info.dir}`,
    `family        ${a.family} (model_type "${info.modelType}")`,
    `format        ${info.format}: ${info.files.map((f) => f.split(/[\\/]/).pop()).join(', ')}`,
    `layers        ${a.nLayer} × (${traits.residual} residual, ${traits.block}), hidden ${a.nEmbd}, heads ${a.nHead} × ${a.headDim}, MLP ${a.nInner} (${a.act})`,
    `attention     ${summarizeLayers(a.layers)}`,
    `positions     ${traits.positions === 'rotary' ? `rotary (interleaved) on ${a.rotaryDim} of ${a.headDim} dims per head` : 'learned'}, ${a.nPositions} max`,
    `vocabulary    ${a.nVocab} logits per token; lm_head ${a.tiedLmHead ? 'tied to wte' : 'separate' + (traits.lmHeadBias ? ', with bias' : '')}`,
    `tokens        bos ${a.bosTokenId}, eos ${JSON.stringify(a.eosTokenId)}`,
    `parameters    ${info.parameters.toLocaleString('en-US')} (${(info.parameters / 1e6).toFixed(2)} M)`,
    `dtypes        checkpoint ${dtypes(info.checkpointDtypes)}; stored as ${dtypes(info.storageDtypes)}`,
    `memory        weights ${fmtBytes(m.weights)} + KV cache ${fmtBytes(m.kvCache)} (${m.maxContext} positions) + activations ${fmtBytes(m.activations)} = ${fmtBytes(m.total)} on ${m.device}`,
    `available     ${fmtBytes(m.available)} (${m.availableFrom === 'maxMemory' ? '--max-memory' : 'free memory'})${m.fits ? '' : m.tooBigForGroup ? `: does not fit: ${m.tooBigForGroup.part} needs ${fmtBytes(m.tooBigForGroup.bytes)} of a 4 GiB wasm32 memory` : ': does not fit'}`,
  ]
  if (info.unusedTensors.length) lines.push(`unused        ${info.unusedTensors.length} tensors: ${info.unusedTensors.slice(0, 5).join(', ')}${info.unusedTensors.length > 5 ? ', …' : ''}`)
  process.stdout.write(lines.join('\n') + '\n')
}

function dtypes(d: Partial<Record<string, number>>): string {
  return Object.entries(d).map(([k, n]) => `${k} ${(n! / 1e6).toFixed(2)} M`).join(', ') || 'none'
}

function summarizeLayers(layers: { attention: string; window: number; scale: number }[]): string {
  const kinds = layers.map((l) => (l.attention === 'local' ? `local(${l.window})` : 'global'))
  const scale = layers[0]?.scale === 1 ? 'unscaled q·k' : 'q·k / sqrt(head_dim)'
  const distinct = [...new Set(kinds)]
  return `${distinct.length === 1 ? `${distinct[0]} in all layers` : kinds.join(', ')}; ${scale}`
}
