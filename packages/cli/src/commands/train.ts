// refgpt train: fine-tune a model folder on a text dataset — the kuakua recipe (AdamW, noam warm-up,
// batch 16, ModelScope framing) or HF's causal-LM recipe — and save a folder that refgpt and the
// model's own tool load, with checkpoints that resume bit for bit.
//
// One optimizer step: zero_grad -> grad-accum micro-batches of forward + backward (loss / accum) ->
// clip_grad_norm_ -> AdamW.step(lr of the schedule at this step) -> next step, as PyTorch's loop.

import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { freemem, totalmem } from 'node:os'
import { basename, dirname, join } from 'node:path'
import {
  AdamW, Batcher, ConfigError, SCHEDULES, TokenizerError, insideFolder, readJsonFile, Trainer, UsageError, clipGradNorm, countTargets, createSchedule, inspectModel,
  loadExamples, openSafetensors, writeSafetensors, writeTorchZip,
  type BatcherState, type Dataset, type Model, type ScheduleName, type Tokenizer,
} from '@refgpt/core'
import { intOption, parse } from '../args.js'
import { isModelscopeDir, wordpieceTokenizer } from './chat.js'
import { bar, redraw } from '../progress.js'
import { MODEL_OPTIONS, loadWithProgress, maybeTokenizer, modelHelp, modelOptions, noLang, userPathError, writeUserFile } from './common.js'

export const summary = 'fine-tune a model (AdamW, noam/linear/cosine/constant schedules, clipping) and save a loadable folder'

export const help = `Usage: refgpt train --model DIR --data FILE --out DIR [options]
       refgpt train --resume OUT/checkpoint-STEP --out DIR [options]

Fine-tunes the model on FILE and saves the result in OUT as a folder refgpt loads and the model's
own tool loads too (Hugging Face: model.safetensors + config.json + tokenizer files; ModelScope GPT-3:
pytorch_model.bin + configuration.json + config.json + vocab.txt). Loss = mean token cross-entropy over
the predicted positions of a batch; AdamW with torch's arithmetic; f32 training on js or wasm.

Data: .jsonl with a text field (--text-field, default src_txt) or pre-tokenized "input_ids" rows, or
.txt (one example per line; --pack concatenates documents into blocks of --max-length). ModelScope
folders frame each text as [CLS] text [SEP] padded to --max-length, as ModelScope's trainer does
(padding targets count, as there); Hugging Face folders use the causal-LM recipe (labels = ids; EOS
after each packed document). A folder without tokenizer files trains on "input_ids" rows only.
Examples of one token (nothing to predict) are skipped.

Options:
      --data FILE               training data (.jsonl or .txt)
      --out DIR                 output folder (checkpoints in OUT/checkpoint-STEP)
      --eval-data FILE          evaluation data: loss and perplexity after every epoch
      --text-field NAME         jsonl text field (default src_txt)
      --epochs N                (default 1)
      --batch-size N            examples per micro-batch (default 16)
      --grad-accum N            micro-batches per optimizer step (default 1; a step never spans two epochs:
                                an epoch's last step averages the micro-batches left)
      --lr X                    peak learning rate (default 3e-4)
      --scheduler NAME          ${SCHEDULES.join(' | ')} (default noam)
      --warmup-steps N          (default 100)
      --weight-decay X          AdamW decoupled weight decay (default 0.01, on every parameter)
      --no-decay-bias-norm      no decay for biases and LayerNorm weights (HF Trainer's groups)
      --max-grad-norm X         clip_grad_norm_ (default 1.0; 0 disables)
      --max-length N            tokens per example (default: ModelScope sequence_length or 128)
      --pack                    .txt: pack the corpus into blocks of --max-length
      --seed N                  data order seed (default 42)
      --no-shuffle              file order every epoch
      --save-steps N            save a checkpoint every N steps (default 0: only at the end)
      --max-steps N             stop after N optimizer steps (the schedule's length)
      --resume DIR              continue from a checkpoint folder (weights, moments, step, data order, log);
                                options left out are the checkpoint's, options that change the run must match
${modelHelp('train')}`

interface TrainArgs {
  data: string
  out: string
  evalData: string | null
  textField: string
  epochs: number
  batchSize: number
  gradAccum: number
  lr: number
  scheduler: ScheduleName
  warmupSteps: number
  weightDecay: number
  noDecayBiasNorm: boolean
  maxGradNorm: number
  maxLength: number | null
  pack: boolean
  seed: number
  shuffle: boolean
  saveSteps: number
  maxSteps: number
  resume: string | null
}

/** What a checkpoint folder records beside the weights to continue exactly. */
interface TrainerState {
  format: 'refgpt-trainer-state'
  version: 1
  step: number
  totalSteps: number
  batcher: BatcherState
  args: Omit<TrainArgs, 'out' | 'resume'>
}

function num(name: string, s: string | undefined, def: number, min: number): number {
  if (s === undefined) return def
  const n = Number(s)
  if (s.trim() === '' || !Number.isFinite(n) || n < min)
    throw new UsageError({ where: 'refgpt train', what: `bad --${name}`, expected: `a number >= ${min}`, found: JSON.stringify(s) })
  return n
}

/** Options that change what a run computes: a resumed run takes them from its checkpoint and refuses different ones. */
const RESUMED: readonly (readonly [keyof TrainArgs, string])[] = [
  ['textField', 'text-field'], ['epochs', 'epochs'], ['batchSize', 'batch-size'], ['gradAccum', 'grad-accum'], ['lr', 'lr'],
  ['scheduler', 'scheduler'], ['warmupSteps', 'warmup-steps'], ['weightDecay', 'weight-decay'], ['noDecayBiasNorm', 'no-decay-bias-norm'],
  ['maxGradNorm', 'max-grad-norm'], ['maxLength', 'max-length'], ['pack', 'pack'], ['seed', 'seed'], ['shuffle', 'no-shuffle'],
  ['maxSteps', 'max-steps'],
]

export async function run(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse('train', argv, {
    ...MODEL_OPTIONS,
    data: { type: 'string' }, out: { type: 'string' }, 'eval-data': { type: 'string' }, 'text-field': { type: 'string' },
    epochs: { type: 'string' }, 'batch-size': { type: 'string' }, 'grad-accum': { type: 'string' }, lr: { type: 'string' },
    scheduler: { type: 'string' }, 'warmup-steps': { type: 'string' }, 'weight-decay': { type: 'string' },
    'no-decay-bias-norm': { type: 'boolean' }, 'max-grad-norm': { type: 'string' }, 'max-length': { type: 'string' },
    pack: { type: 'boolean' }, seed: { type: 'string' }, 'no-shuffle': { type: 'boolean' }, 'save-steps': { type: 'string' },
    'max-steps': { type: 'string' }, resume: { type: 'string' },
  })
  // --- every option checked before anything is printed, loaded or written ---
  const where = 'refgpt train'
  if (positionals.length) throw new UsageError({ where, what: 'unexpected argument', found: JSON.stringify(positionals[0]), hint: 'see `refgpt train --help`' })
  noLang('train', v)
  const o = modelOptions('train', v)
  if (o.ortStatic !== undefined) throw new UsageError({ where: 'refgpt train', what: '--ort-static is not taken by refgpt train', hint: 'refgpt generate, serve and bench take it' })
  if (o.dtype && o.dtype !== 'F32') throw new UsageError({ where, what: `--dtype ${String(v.dtype)} cannot be trained`, hint: 'training is f32: f16 / bf16 checkpoints are widened; q8 is refused' })
  if (o.device !== 'wasm' && o.device !== 'js')
    throw new UsageError({ where, what: `the ${o.device} device cannot train (it has no backward kernels)`, found: `--device ${String(v.device)}`, hint: 'use --device wasm (or js)' })
  if (v.model === undefined && v.resume === undefined) throw new UsageError({ where, what: 'no --model', expected: 'a model folder to fine-tune (or --resume DIR)' })
  if (v.resume === '') throw new UsageError({ where, what: 'empty --resume', expected: 'a checkpoint folder (OUT or OUT/checkpoint-STEP)' })
  // a resumed run may leave out --data: the checkpoint names its file
  for (const k of ['data', 'out'] as const)
    if (v[k] === '' || (v[k] === undefined && !(k === 'data' && v.resume !== undefined))) throw new UsageError({ where, what: `no --${k}`, hint: 'see `refgpt train --help`' })
  const scheduler = (v.scheduler as string | undefined) ?? 'noam'
  if (!(SCHEDULES as readonly string[]).includes(scheduler)) throw new UsageError({ where, what: 'unknown --scheduler', expected: `one of ${SCHEDULES.join(', ')}`, found: JSON.stringify(scheduler) })
  let args: TrainArgs = {
    data: (v.data as string | undefined) ?? '',
    out: v.out as string,
    evalData: (v['eval-data'] as string | undefined) ?? null,
    textField: (v['text-field'] as string | undefined) ?? 'src_txt',
    epochs: intOption('train', 'epochs', v.epochs as string | undefined, 1, 1),
    batchSize: intOption('train', 'batch-size', v['batch-size'] as string | undefined, 16, 1),
    gradAccum: intOption('train', 'grad-accum', v['grad-accum'] as string | undefined, 1, 1),
    lr: num('lr', v.lr as string | undefined, 3e-4, Number.MIN_VALUE),
    scheduler: scheduler as ScheduleName,
    warmupSteps: intOption('train', 'warmup-steps', v['warmup-steps'] as string | undefined, 100, 0),
    weightDecay: num('weight-decay', v['weight-decay'] as string | undefined, 0.01, 0),
    noDecayBiasNorm: v['no-decay-bias-norm'] === true,
    maxGradNorm: num('max-grad-norm', v['max-grad-norm'] as string | undefined, 1, 0),
    maxLength: v['max-length'] === undefined ? null : intOption('train', 'max-length', v['max-length'] as string, 0, 2),
    pack: v.pack === true,
    seed: intOption('train', 'seed', v.seed as string | undefined, 42, 0),
    shuffle: v['no-shuffle'] !== true,
    saveSteps: intOption('train', 'save-steps', v['save-steps'] as string | undefined, 0, 0),
    maxSteps: intOption('train', 'max-steps', v['max-steps'] as string | undefined, 0, 0),
    resume: (v.resume as string | undefined) ?? null,
  }
  if (args.textField === '') throw new UsageError({ where, what: 'empty --text-field', expected: 'a jsonl field name' })
  let resumed: TrainerState | null = null
  if (args.resume !== null) {
    if (!(existsSync(args.resume) && statSync(args.resume).isDirectory())) throw new UsageError({ where, what: '--resume folder not found', found: JSON.stringify(args.resume) })
    resumed = readTrainerState(args.resume)
    args = resumedArgs(args, resumed, v)
  }
  if (args.scheduler === 'noam' && args.warmupSteps < 1) throw new UsageError({ where, what: 'the noam schedule needs --warmup-steps >= 1' })
  for (const [flag, file] of [['data', args.data], ['eval-data', args.evalData]] as const)
    if (file !== null && !(existsSync(file) && statSync(file).isFile())) throw new UsageError({ where, what: `--${flag} file not found`, found: JSON.stringify(file) })
  if (existsSync(args.out) && !statSync(args.out).isDirectory()) throw new UsageError({ where, what: '--out exists and is not a folder', found: JSON.stringify(args.out) })
  const dir = args.resume ?? o.dir
  if (!(existsSync(dir) && statSync(dir).isDirectory())) throw new UsageError({ where, what: '--model folder not found', found: JSON.stringify(dir) })
  const modelscope = isModelscopeDir(dir)
  if (modelscope && args.pack) throw new UsageError({ where, what: '--pack is for Hugging Face folders', hint: 'ModelScope GPT-3 frames every text as [CLS] text [SEP] padded to --max-length' })

  // --- data, then a memory check, then the model ---
  // (a variant is read from the input folder only: a checkpoint holds model.safetensors)
  const access = { followSymlinks: o.followSymlinks }
  const info = inspectModel(dir, { variant: args.resume === null ? o.variant : undefined, ...access, maxMemory: o.maxMemory, device: o.device })
  const tok: Tokenizer = modelscope ? wordpieceTokenizer(dir, 'train', access) : maybeTokenizer(dir, access) ?? idsOnlyTokenizer(dir)
  const maxLength = args.maxLength ?? Math.min(info.arch.nPositions, modelscope ? sequenceLength(dir, access) : 128)
  if (maxLength > info.arch.nPositions) throw new UsageError({ where, what: '--max-length exceeds the model context', expected: `at most ${info.arch.nPositions}`, found: String(maxLength) })
  const framing = modelscope ? 'modelscope' : args.pack ? 'pack' : 'hf'
  const eos = info.arch.eosTokenId, eosId = Array.isArray(eos) ? eos[0] : eos
  const dataOpts = {
    tokenizer: tok, framing, maxLength, textField: args.textField, vocabSize: info.arch.nVocab, padTargets: modelscope ? 'count' : 'ignore',
    // config.json's end-of-text id (packing, padding) where it is a valid id; else the tokenizer's
    ...(!modelscope && Number.isInteger(eosId) && eosId! >= 0 && eosId! < info.arch.nVocab ? { eosId: eosId! } : {}),
  } as const
  const train = predicting(await loadExamples(args.data, dataOpts))
  const evalSet = args.evalData ? predicting(await loadExamples(args.evalData, dataOpts)) : null
  checkMemory(info.parameters, info.arch, maxLength, o.device)

  const model = await loadWithProgress(dir, { device: o.device, threads: o.threads, dtype: 'F32', variant: args.resume === null ? o.variant : undefined, ...access, maxMemory: o.maxMemory })
  try {
    await trainLoop(model, args, train, evalSet, maxLength, resumed, dir, modelscope)
  } finally {
    await model.dispose()
  }
}

/**
 * A resumed run's arguments: the options that change the computation come from the checkpoint when not
 * given, and must equal it when given (else the run would not continue the one it resumes); --data,
 * --eval-data and --save-steps come from the checkpoint when not given.
 */
function resumedArgs(args: TrainArgs, st: TrainerState, v: Record<string, unknown>): TrainArgs {
  const saved = st.args as Partial<TrainArgs>
  const out: TrainArgs = { ...args }
  const set = out as unknown as Record<string, unknown>
  for (const [key, flag] of RESUMED) {
    if (!(key in saved)) continue
    const given = v[flag] !== undefined
    const mine = args[key], theirs = saved[key]
    if (!given) set[key] = theirs
    else if (mine !== theirs)
      throw new UsageError({
        where: 'refgpt train --resume', what: `--${flag} differs from the run being resumed`,
        expected: typeof theirs === 'boolean' ? `${theirs === (flag !== 'no-shuffle') ? '' : 'no '}--${flag}` : theirs === null || theirs === 0 ? `no --${flag} (the default)` : JSON.stringify(theirs),
        found: typeof mine === 'boolean' ? `--${flag}` : JSON.stringify(mine), hint: 'leave the option out (the checkpoint has it) or start a new run with --model',
      })
  }
  // the data file (checked against the checkpoint's fingerprint), the eval file and the checkpoint interval may change
  if (v.data === undefined) {
    if (typeof saved.data !== 'string') throw new UsageError({ where: 'refgpt train --resume', what: 'no --data', hint: 'the checkpoint does not name its data file' })
    out.data = saved.data
  }
  if (v['eval-data'] === undefined && typeof saved.evalData === 'string') out.evalData = saved.evalData
  if (v['save-steps'] === undefined && Number.isInteger(saved.saveSteps)) out.saveSteps = saved.saveSteps!
  return out
}

/** For a folder without tokenizer files: pre-tokenized rows ({"input_ids": [...]}) still train; a text row is refused. */
function idsOnlyTokenizer(dir: string): Tokenizer {
  return {
    kind: 'none', vocabSize: 0, specialTokens: new Map(),
    encode: () => {
      throw new TokenizerError({
        where: dir, what: 'the model folder has no tokenizer, so text rows cannot be tokenized',
        expected: 'tokenizer.json or vocab.json + merges.txt in the folder',
        hint: 'train on pre-tokenized .jsonl rows {"input_ids": [...]} or copy the tokenizer files into the folder',
      })
    },
    decode: () => '', tokenBytes: () => undefined, idToToken: () => undefined,
  }
}

/** Drops examples with nothing to predict (a one-token text): a batch of only those would have no loss. */
function predicting(d: Dataset): Dataset {
  const examples = d.examples.filter((e) => countTargets(e.targets) > 0)
  if (examples.length === 0)
    throw new UsageError({ where: d.file, what: 'no example has a token to predict', expected: 'examples of at least 2 tokens', found: `${d.examples.length} examples of 1 token` })
  if (examples.length < d.examples.length) process.stderr.write(`${d.file}: skipped ${d.examples.length - examples.length} example(s) of one token (nothing to predict)\n`)
  return examples.length === d.examples.length ? d : { ...d, examples }
}

async function trainLoop(model: Model, args: TrainArgs, train: Dataset, evalSet: Dataset | null, maxLength: number,
  resumed: TrainerState | null, dir: string, modelscope: boolean): Promise<void> {
  const trainer = new Trainer(model, { maxLength })
  const host = await trainer.hostParams()
  const opt = new AdamW(host, { lr: args.lr, weightDecay: args.weightDecay, groups: args.noDecayBiasNorm ? 'no-decay-bias-norm' : 'all' })
  const batcher = new Batcher(train.examples, { batchSize: args.batchSize, seed: args.seed, shuffle: args.shuffle, padId: train.padId })
  // An optimizer step never spans two epochs: the last one of an epoch takes the batches left (fewer than --grad-accum).
  const stepsPerEpoch = Math.ceil(batcher.batchesPerEpoch / args.gradAccum)
  const totalSteps = args.maxSteps > 0 ? args.maxSteps : args.epochs * stepsPerEpoch
  const schedule = createSchedule({ name: args.scheduler, baseLr: args.lr, warmupSteps: args.warmupSteps, totalSteps })
  let step = 0
  let history: Record<string, unknown>[] = []
  if (resumed) {
    if (resumed.totalSteps !== totalSteps)
      throw new UsageError({ where: 'refgpt train --resume', what: 'the run has another length than the one being resumed', expected: `${resumed.totalSteps} steps`, found: `${totalSteps} steps`, hint: 'resume with the same data and options' })
    if (resumed.step > totalSteps) throw new UsageError({ where: 'refgpt train --resume', what: 'the checkpoint is past the end of the run', expected: `step <= ${totalSteps}`, found: String(resumed.step) })
    batcher.restore(resumed.batcher)
    const st = readOptimizerState(args.resume!, host.map((h) => h.name))
    opt.loadState({ ...opt.state(), step: resumed.step, m: st.m, v: st.v })
    step = resumed.step
    history = readLog(join(args.resume!, 'train_log.jsonl'), step)
  }
  // --- from here on the output folder is written ---
  mkdirSync(args.out, { recursive: true })
  const logFile = join(args.out, 'train_log.jsonl')
  writeFileSync(logFile, history.map((r) => JSON.stringify(r) + '\n').join(''))
  const log = (row: Record<string, unknown>) => writeFileSync(logFile, JSON.stringify(row) + '\n', { flag: 'a' })
  const curve: { step: number; loss: number }[] = [], evals: { step: number; loss: number }[] = []
  for (const r of history) {
    if (typeof r.loss === 'number') curve.push({ step: r.step as number, loss: r.loss })
    if (typeof r.eval_loss === 'number') evals.push({ step: r.step as number, loss: r.eval_loss })
  }
  const tty = process.stderr.isTTY === true
  const t0 = performance.now()
  let tokensSeen = 0
  process.stderr.write(`training ${basename(dir)}: ${train.examples.length} examples, ${totalSteps} steps of ${args.batchSize * args.gradAccum} examples, ${args.scheduler} lr ${args.lr}, on ${model.device.name}${resumed ? `, resumed at step ${step}` : ''}\n`)

  while (step < totalSteps) {
    trainer.zeroGrad()
    const k = Math.min(args.gradAccum, batchesLeftInEpoch(batcher))
    let loss = 0, tokens = 0, epochEnded = false, epoch = 0
    for (let i = 0; i < k; i++) {
      const b = batcher.next()
      const r = await trainer.forwardBackward(b.examples, { lossScale: 1 / k })
      loss += r.loss / k
      tokens += b.tokens
      epoch = b.epoch
      epochEnded = b.lastInEpoch
    }
    await trainer.readGradients(host)
    const norm = args.maxGradNorm > 0 ? clipGradNorm(host.map((h) => h.grad), args.maxGradNorm) : null
    const lr = schedule.lrAt(step)
    opt.step(lr)
    trainer.writeParameters(host)
    step++
    tokensSeen += tokens
    const elapsed = (performance.now() - t0) / 1000
    const row = { step, epoch, loss, lr, grad_norm: norm, tokens_per_s: tokensSeen / elapsed, elapsed_s: elapsed }
    log(row)
    curve.push({ step, loss })
    const eta = (elapsed / (step - (resumed?.step ?? 0))) * (totalSteps - step)
    const line = `step ${step}/${totalSteps}  loss ${loss.toFixed(4)}  lr ${lr.toExponential(3)}  ${Math.round(row.tokens_per_s)} tok/s  ETA ${fmtTime(eta)}`
    if (tty) redraw(process.stderr, `${bar(step / totalSteps, 20)} ${line}`)
    else process.stderr.write(line + '\n')
    if (epochEnded && evalSet) {
      const e = await evaluate(model, evalSet, maxLength)
      log({ step, epoch, eval_loss: e, eval_ppl: Math.exp(e) })
      evals.push({ step, loss: e })
      process.stderr.write(`${tty ? '\n' : ''}epoch ${epoch + 1}: eval loss ${e.toFixed(4)}, perplexity ${Math.exp(e).toFixed(3)}\n`)
    }
    if (args.saveSteps > 0 && step % args.saveSteps === 0 && step < totalSteps) {
      await save(join(args.out, `checkpoint-${step}`), trainer, dir, modelscope, { step, totalSteps, batcher: batcher.state(), args }, opt)
    }
  }
  if (tty) process.stderr.write('\n')
  if (evalSet && !evals.some((e) => e.step === step)) {
    const e = await evaluate(model, evalSet, maxLength)
    log({ step, eval_loss: e, eval_ppl: Math.exp(e) })
    evals.push({ step, loss: e })
    process.stderr.write(`eval loss ${e.toFixed(4)}, perplexity ${Math.exp(e).toFixed(3)}\n`)
  }
  await save(args.out, trainer, dir, modelscope, { step, totalSteps, batcher: batcher.state(), args }, opt)
  writeUserFile(join(args.out, 'loss_curve.svg'), lossCurveSvg(curve, evals))
  process.stdout.write(`saved ${args.out} (step ${step}); log ${logFile}\n`)
}

/** Micro-batches left in the current epoch (a whole epoch when the last one has ended). */
function batchesLeftInEpoch(b: Batcher): number {
  const n = b.examples.length
  return b.position >= n ? b.batchesPerEpoch : b.batchesPerEpoch - Math.ceil(b.position / b.batchSize)
}

/** The rows of a checkpoint's train_log.jsonl up to its step (a resumed run's log continues them). */
function readLog(file: string, upTo: number): Record<string, unknown>[] {
  if (!existsSync(file)) return []
  const rows: Record<string, unknown>[] = []
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue
    try {
      const r = JSON.parse(line)
      if (typeof r === 'object' && r !== null && Number.isInteger(r.step) && r.step <= upTo) rows.push(r)
    } catch {
      // a torn last line of a killed run: ignored
    }
  }
  return rows
}

/** Mean token loss of a dataset on the inference path (session.logProbs: log-softmax on the device, no backward). */
async function evaluate(model: Model, data: Dataset, maxLength: number): Promise<number> {
  const session = model.createSession({ maxBatchTokens: maxLength })
  try {
    let sum = 0, count = 0
    for (const e of data.examples) {
      const lp = await session.logProbs(e.inputIds, { targets: Array.from(e.targets, (t) => (t < 0 ? -1 : t)) })
      for (let t = 0; t < lp.length; t++) if (e.targets[t] >= 0) (sum -= lp[t]), count++
    }
    return sum / count
  } finally {
    session.dispose()
  }
}

/** Saves the model folder (+ trainer state and optimizer moments) atomically: a temp folder renamed into place for checkpoints. */
async function save(out: string, trainer: Trainer, src: string, modelscope: boolean, state: Omit<TrainerState, 'format' | 'version' | 'args'> & { args: TrainArgs }, opt: AdamW): Promise<void> {
  const isCheckpoint = basename(out).startsWith('checkpoint-')
  const target = isCheckpoint ? `${out}.tmp-${process.pid}` : out
  mkdirSync(target, { recursive: true })
  const params = await trainer.parameters()
  const shapes = new Map(trainer.placements.map((p) => [p.name, p.stored]))
  const tensors = [...params].map(([name, data]) => ({ name, shape: shapes.get(name)!, data }))
  if (modelscope) {
    named(join(target, 'pytorch_model.bin'), (f) => writeTorchZip(f, tensors))
    for (const f of ['configuration.json', 'config.json', 'vocab.txt']) copyIfExists(src, target, f)
  } else {
    named(join(target, 'model.safetensors'), (f) => writeSafetensors(f, tensors, { format: 'pt' }))
    for (const f of ['config.json', 'generation_config.json', 'vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'])
      copyIfExists(src, target, f)
  }
  const { out: _o, resume: _r, ...args } = state.args
  const ts: TrainerState = { format: 'refgpt-trainer-state', version: 1, step: state.step, totalSteps: state.totalSteps, batcher: state.batcher, args }
  writeUserFile(join(target, 'trainer_state.json'), JSON.stringify(ts, null, 1) + '\n')
  const os = opt.state()
  named(join(target, 'optimizer.safetensors'), (f) => writeSafetensors(f, os.names.flatMap((name, i) => [
    { name: `m.${i}`, shape: [os.m[i].length], data: os.m[i] },
    { name: `v.${i}`, shape: [os.v[i].length], data: os.v[i] },
  ]), { format: 'refgpt-adamw', step: String(os.step), names: JSON.stringify(os.names) }))
  if (isCheckpoint) {
    // the log so far, so that a run resumed from here (into any --out) has the whole history
    const log = join(dirname(out), 'train_log.jsonl')
    if (existsSync(log)) copyFileSync(log, join(target, 'train_log.jsonl'))
    rmSync(out, { recursive: true, force: true })
    renameSync(target, out)
  }
}

/** A core writer's atomic write of `file`: its error names `file`, not the temp file beside it. */
function named(file: string, write: (file: string) => unknown): void {
  try {
    write(file)
  } catch (e) {
    throw userPathError(e, file)
  }
}

function copyIfExists(src: string, dst: string, file: string): void {
  if (existsSync(join(src, file)) && src !== dst) copyFileSync(join(src, file), join(dst, file))
}

function readTrainerState(dir: string): TrainerState {
  const file = join(dir, 'trainer_state.json')
  if (!existsSync(file)) throw new UsageError({ where: file, what: 'not a refgpt training checkpoint', expected: 'trainer_state.json and optimizer.safetensors beside the weights', hint: 'pass a folder written by refgpt train (OUT or OUT/checkpoint-STEP)' })
  let s: TrainerState
  try {
    s = JSON.parse(readFileSync(file, 'utf8'))
  } catch (e) {
    throw new UsageError({ where: file, what: 'unreadable trainer state', found: String((e as Error).message).split('\n')[0] })
  }
  if (s?.format !== 'refgpt-trainer-state' || s.version !== 1 || !Number.isInteger(s.step)) throw new UsageError({ where: file, what: 'not a refgpt trainer state (format / version / step)' })
  return s
}

function readOptimizerState(dir: string, names: string[]): { m: Float32Array[]; v: Float32Array[] } {
  const ck = openSafetensors(join(dir, 'optimizer.safetensors'))
  try {
    const saved = JSON.parse(ck.metadata.names ?? '[]') as string[]
    if (saved.length !== names.length || saved.some((n, i) => n !== names[i]))
      throw new UsageError({ where: join(dir, 'optimizer.safetensors'), what: 'the optimizer state is for other parameters', expected: `${names.length} parameters of this model`, found: `${saved.length}` })
    return { m: names.map((_, i) => ck.readF32(`m.${i}`)), v: names.map((_, i) => ck.readF32(`v.${i}`)) }
  } finally {
    ck.close()
  }
}

function sequenceLength(dir: string, access: { followSymlinks?: boolean }): number {
  try {
    const c = readJsonFile(insideFolder(dir, 'configuration.json', access, ConfigError), 'ModelScope configuration', ConfigError) as any
    const S = c?.preprocessor?.sequence_length
    return Number.isInteger(S) && S >= 2 ? S : 128
  } catch {
    return 128
  }
}

/**
 * Refuses a run that cannot fit, before loading: weights + gradients on the device, host copies of
 * weights and gradients and AdamW's two moments, and the activations one example keeps per layer.
 * `available` (bytes of host memory) defaults to what the machine has.
 */
export function checkMemory(params: number, a: { nLayer: number; nEmbd: number; nInner: number; nHead: number; nVocab: number }, T: number, device: string,
  available = Math.max(freemem(), totalmem() * 0.8)): { deviceBytes: number; hostBytes: number } {
  const C = a.nEmbd, F = a.nInner
  const perLayer = 4 * (T * (10 * C + 2 * F) + a.nHead * T * T + 4 * T)
  const activations = a.nLayer * perLayer + 4 * T * (2 * a.nVocab + 8 * C + 2 * F)
  const deviceBytes = 8 * params + activations
  const hostBytes = 16 * params
  const need = deviceBytes + hostBytes
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`
  if (device === 'wasm' && deviceBytes > 4 * 2 ** 30 - (64 << 20))
    throw new UsageError({ where: 'refgpt train', what: 'the model does not fit one 4 GiB wasm memory for training', expected: 'weights + gradients + activations under 4 GiB', found: `${gib(deviceBytes)} (${(params / 1e6).toFixed(1)} M parameters)`, hint: 'lower --max-length or use a smaller model' })
  if (need > available)
    throw new UsageError({ where: 'refgpt train', what: 'not enough memory for this training run', expected: `${gib(need)} (weights, gradients, 2 AdamW moments, host copies, activations of one example of ${T} tokens)`, found: `${gib(available)} available`, hint: 'lower --max-length or use a smaller model' })
  return { deviceBytes, hostBytes }
}

const fmtTime = (s: number) => (!Number.isFinite(s) ? '?' : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`)

/** A self-contained SVG of the training loss per step (and eval loss points). */
export function lossCurveSvg(train: { step: number; loss: number }[], evals: { step: number; loss: number }[]): string {
  const W = 640, H = 360, P = 48
  const all = [...train, ...evals]
  let maxStep = 1, lo = Infinity, hi = -Infinity
  for (const p of all) {
    maxStep = Math.max(maxStep, p.step)
    lo = Math.min(lo, p.loss)
    hi = Math.max(hi, p.loss)
  }
  const span = hi > lo ? hi - lo : 1
  const x = (s: number) => P + ((W - 2 * P) * s) / maxStep
  const y = (l: number) => H - P - ((H - 2 * P) * (l - lo)) / span
  const path = train.map((p, i) => `${i ? 'L' : 'M'}${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ')
  const dots = evals.map((p) => `<circle cx="${x(p.step).toFixed(1)}" cy="${y(p.loss).toFixed(1)}" r="4" fill="#d33"/>`).join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="${W / 2}" y="20" text-anchor="middle">training loss (line) and eval loss (dots) per optimizer step</text>
<line x1="${P}" y1="${H - P}" x2="${W - P}" y2="${H - P}" stroke="#888"/><line x1="${P}" y1="${P}" x2="${P}" y2="${H - P}" stroke="#888"/>
<text x="${P}" y="${H - P + 16}">0</text><text x="${W - P}" y="${H - P + 16}" text-anchor="end">${maxStep}</text>
<text x="${P - 4}" y="${y(hi) + 4}" text-anchor="end">${hi.toFixed(2)}</text><text x="${P - 4}" y="${y(lo) + 4}" text-anchor="end">${lo.toFixed(2)}</text>
<path d="${path}" fill="none" stroke="#36c" stroke-width="1.5"/>${dots}
</svg>
`
}

