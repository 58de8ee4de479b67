// refgpt golden: export every traced tensor of one forward pass to a file, or verify a model against one.

import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { CheckpointError, MAX_GOLDEN_BYTES, RefgptError, UsageError, exportGolden, readFileCapped, readGolden, show, verifyGolden, type Golden, type VerifyRow } from '@refgpt/core'
import { idList, parse } from '../args.js'
import { paint } from '../progress.js'
import { MODEL_OPTIONS, loadOptions, loadWithProgress, maybeTokenizer, modelHelp, modelOptions, noLang, requireTokenizer, writeUserFile } from './common.js'

export const summary = 'export a golden file (every tensor of one forward pass) or verify a model against one'

const EXPORT_HELP = `Usage: refgpt golden export [--model DIR] (PROMPT | --prompt-ids IDS) --out FILE [options]

Runs the prompt through the model in ONE forward call with every stage traced and writes the tensors
(embed, h.L.ln_1, h.L.attn.q/k/v/probs/out, h.L.ln_2, h.L.mlp.hidden/out, h.L.out, ln_f, logits; each
[T, ...] over the T prompt tokens) with the config, prompt, token pieces and device to FILE
(MessagePack, format "refgpt-golden" v1: see docs/golden-format.md). The file is written atomically.

Options:
      --prompt-ids IDS   the prompt as comma-separated token ids (instead of PROMPT text)
  -o, --out FILE         the golden file to write (required)
      --tensors PATTERN  keep only the tensors whose name matches: a glob over the whole name
                         (* any characters, dots included; ? one character; a,b alternatives),
                         e.g. 'h.0.*', '*.attn.probs', 'embed,ln_f,logits'; or /REGEX/ (searched)
${modelHelp('golden export')}`

const VERIFY_HELP = `Usage: refgpt golden verify FILE --model DIR [options]

Recomputes the golden file's prompt on the model given by --model (required: the folder recorded in the
file is shown in the error, never opened on its own) and compares every tensor: max |Δ| and max |Δ|/max(|ref|,1). Prints one row per tensor with
PASS/FAIL and exits 1 when any tensor is off. Default tolerances (the golden README's): atol 1e-4 and
rtol 1e-4 for activations and logits; atol 1e-5 (no relative bound) for attention probabilities.
With --device ort:EP (ort:cpu, ort:cuda, ort:qnn, ... or npu) the model runs as an exported ONNX graph on
that ONNX Runtime execution provider: the report for an NPU. A graph shows only its logits; the other
stages are listed as SKIP and do not fail the run.

Options:
      --atol A           absolute tolerance for every tensor
      --rtol R           relative tolerance for every tensor
${modelHelp('golden verify')}`

// main.ts answers \`refgpt golden <anything> --help\` with this text, so it holds both subcommands' help.
export const help = `refgpt golden: golden files (format: docs/golden-format.md)
  export  one forward pass over the prompt, every traced tensor, to a MessagePack file
  verify  recompute a golden file's tensors on a model (e.g. on another device) and compare them

${EXPORT_HELP}
${VERIFY_HELP}`

export async function run(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv
  const wantsHelp = rest.includes('--help') || rest.includes('-h')
  if (sub === 'export') {
    if (wantsHelp) return void process.stdout.write(EXPORT_HELP)
    return runExport(rest)
  }
  if (sub === 'verify') {
    if (wantsHelp) return void process.stdout.write(VERIFY_HELP)
    return runVerify(rest)
  }
  throw new UsageError({ where: 'refgpt golden', what: sub === undefined ? 'missing subcommand' : `unknown subcommand ${JSON.stringify(sub)}`, expected: 'export or verify', hint: 'see `refgpt golden --help`' })
}

/** Loads with room for the whole prompt in one forward call. */
function loadFor(command: string, v: Record<string, unknown>, T: number) {
  const o = modelOptions(command, v)
  return loadWithProgress(o.dir, { ...loadOptions(o), maxContext: T, maxBatchTokens: Math.min(Math.max(T, 1), 4096) })
}

async function runExport(argv: string[]): Promise<void> {
  const cmd = 'golden export'
  const { values: v, positionals } = parse(cmd, argv, {
    ...MODEL_OPTIONS,
    'prompt-ids': { type: 'string' },
    out: { type: 'string', short: 'o' },
    tensors: { type: 'string' },
  })
  const out = v.out as string | undefined
  if (!out) throw new UsageError({ where: `refgpt ${cmd}`, what: 'missing --out FILE', hint: 'see `refgpt golden export --help`' })
  const o = modelOptions(cmd, v)
  if (!existsSync(o.dir)) throw new CheckpointError({ where: o.dir, what: 'model folder not found', hint: 'pass a folder with config.json and model weights' })
  if (positionals.length > 1) throw new UsageError({ where: `refgpt ${cmd}`, what: 'more than one PROMPT', hint: 'quote the prompt' })
  const text = positionals[0]
  const idsArg = v['prompt-ids'] as string | undefined
  if ((text === undefined) === (idsArg === undefined))
    throw new UsageError({ where: `refgpt ${cmd}`, what: text === undefined ? 'missing prompt' : 'both PROMPT and --prompt-ids given', expected: 'a PROMPT or --prompt-ids 1,2,3' })
  const tok = text === undefined ? maybeTokenizer(o.dir, o) : requireTokenizer(o.dir, cmd, o)
  const ids = text === undefined ? idList(cmd, 'prompt-ids', idsArg!) : tok!.encode(text)
  if (ids.length === 0) throw new UsageError({ where: `refgpt ${cmd}`, what: 'the prompt encodes to no tokens', found: JSON.stringify(text) })
  const model = await loadFor(cmd, v, ids.length)
  let bytes: Uint8Array
  try {
    bytes = await exportGolden(model, ids, { tokenizer: tok, text, tensors: v.tensors as string | undefined, modelDir: resolve(o.dir) })
  } finally {
    await model.dispose()
  }
  writeUserFile(out, bytes) // a failure never leaves a partial FILE (and its error names FILE)
  const golden = readGolden(bytes, out)
  const n = Object.keys(golden.tensors).length
  process.stdout.write(`wrote ${out}: ${n} tensors, ${ids.length} tokens, ${(bytes.length / 1024 / 1024).toFixed(2)} MiB (${golden.family} "${golden.model_type}" on ${golden.device})\n`)
}

function tolOption(cmd: string, name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (typeof value !== 'string' || value.trim() === '' || !(n >= 0))
    throw new UsageError({ where: `refgpt ${cmd}`, what: `bad --${name}`, expected: 'a number >= 0 such as 1e-4', found: JSON.stringify(value) })
  return n
}

async function runVerify(argv: string[]): Promise<void> {
  const cmd = 'golden verify'
  const { values: v, positionals } = parse(cmd, argv, { ...MODEL_OPTIONS, atol: { type: 'string' }, rtol: { type: 'string' } })
  if (positionals.length !== 1)
    throw new UsageError({ where: `refgpt ${cmd}`, what: positionals.length ? 'more than one FILE' : 'missing FILE', expected: 'one golden file', hint: 'see `refgpt golden verify --help`' })
  noLang(cmd, v)
  const file = positionals[0]
  const atol = tolOption(cmd, 'atol', v.atol), rtol = tolOption(cmd, 'rtol', v.rtol)
  const golden = readGolden(readFileCapped(file, 'golden file', MAX_GOLDEN_BYTES, CheckpointError), file)
  // a golden file may come from anyone: the folder it names is a suggestion, never opened on its own
  const dir = v.model as string | undefined
  if (dir === undefined)
    throw new UsageError({
      where: `refgpt ${cmd}`,
      what: 'missing --model',
      found: golden.model_dir ? `the file was made from ${show(golden.model_dir, 200)}` : 'no model folder recorded in the file',
      hint: golden.model_dir ? `pass --model ${show(golden.model_dir, 200)} to verify that folder (refgpt does not open a folder a file names on its own)` : 'pass --model DIR',
    })
  const model = await loadFor(cmd, { ...v, model: dir }, golden.prompt.ids.length)
  let rows: VerifyRow[]
  try {
    rows = await verifyGolden(golden, model, { atol, rtol })
  } finally {
    await model.dispose()
  }
  process.stdout.write(table(golden, file, dir, model.device.name, rows, (ok, s) => paint(process.stdout, ok ? 'green' : 'red', s)))
  const failed = rows.filter((r) => !r.pass && !r.skipped)
  if (failed.length)
    throw new RefgptError({
      where: file,
      what: `${failed.length} of ${rows.length} tensors differ beyond tolerance: ${failed.slice(0, 6).map((r) => r.name).join(', ')}${failed.length > 6 ? ', …' : ''}`,
    })
}

const e = (x: number) => (Number.isNaN(x) ? 'NaN' : x === Infinity ? '-' : x === 0 ? '0' : x.toExponential(2))

function table(g: Golden, file: string, dir: string, device: string, rows: VerifyRow[], mark: (pass: boolean, s: string) => string = (_, s) => s): string {
  const head = [
    `golden  ${file}: ${g.family} "${g.model_type}", ${g.prompt.ids.length} tokens, made on ${g.device} by ${g.created_by}`,
    `model   ${dir} on ${device}`,
    '',
  ]
  let w = 6, sw = 5
  for (const r of rows) {
    w = Math.max(w, r.name.length)
    sw = Math.max(sw, `[${r.shape.join(', ')}]`.length)
  }
  const lines = [`${'tensor'.padEnd(w)}  ${'shape'.padEnd(sw)}  ${'max abs'.padStart(9)}  ${'max rel'.padStart(9)}  ${'atol/rtol'.padEnd(13)}  result`]
  for (const r of rows) {
    const tol = `${r.atol}/${r.rtol === Infinity ? '-' : r.rtol}`
    const result = r.skipped ? 'SKIP' : mark(r.pass, r.pass ? 'PASS' : 'FAIL')
    lines.push(`${r.name.padEnd(w)}  ${`[${r.shape.join(', ')}]`.padEnd(sw)}  ${e(r.maxAbs).padStart(9)}  ${e(r.maxRel).padStart(9)}  ${tol.padEnd(13)}  ${result}${r.note ? ` (${r.note})` : ''}`)
  }
  const failed = rows.filter((r) => !r.pass && !r.skipped).length, skipped = rows.filter((r) => r.skipped).length
  const compared = rows.length - skipped
  const skipNote = skipped ? `; ${skipped} skipped (the model shows only its graph's outputs)` : ''
  lines.push('', failed ? `${mark(false, 'FAIL')}: ${failed} of ${compared} tensors beyond tolerance${skipNote}` : `${mark(true, 'PASS')}: all ${compared}${skipped ? ' compared' : ''} tensors within tolerance${skipNote}`)
  return [...head, ...lines].join('\n') + '\n'
}
