// Training data: read a .jsonl / .txt file line by line, tokenize and frame every example the way the
// recipe of the model's family does, and hand out seeded, resumable batches.
//
// EXAMPLE FORMAT. An example is { inputIds, targets } of one length n:
//   inputIds[t] = the token at position t
//   targets[t]  = the id the model must predict from positions <= t (the label of position t+1), or
//                 IGNORE_INDEX (-100) where nothing is predicted; targets[n-1] is always -100.
// So the loss is a cross-entropy of logits[t] against targets[t] over the positions whose target is not
// -100 — the mean over those positions of the WHOLE batch (not a mean of per-row means). This is HF's
// convention (`labels = input_ids`, the model shifts: `logits[..., :-1]` vs `labels[..., 1:]`,
// CrossEntropyLoss(ignore_index=-100), mean over the batch) written out once, so the trainer needs no shift.
//
// FRAMINGS (which ids an example holds and which targets count):
//   hf          causal-LM fine-tuning of HF folders: ids = tokenize(text) (+ EOS when `appendEos`),
//               truncated to maxLength (from the right, like `tokenizer(text, truncation=True)`);
//               targets = the shifted ids; padding (added by `collate`) gets -100 — like
//               DataCollatorForLanguageModeling(mlm=False), except that we mark padding by position,
//               not by id (that collator sets EVERY pad_token_id label to -100, which for GPT-2 with
//               pad = eos would also hide real EOS tokens).
//   modelscope  ModelScope's TextGenerationTransformersPreprocessor in train mode (source: modelscope
//               commit 2905da12, modelscope/preprocessors/nlp/text_generation_preprocessor.py):
//               L129-L135  tokenizer kwargs truncation=True, padding='max_length',
//                          max_length = sequence_length or 128 (the `maxLength` here)
//               L177       the text is tokenized exactly as for inference: BertTokenizer adds
//                          [CLS] … [SEP] and truncates the wordpieces to max_length - 2 from the right
//               L184-L186  no tgt_txt: labels = input_ids[1:], input_ids = input_ids[:-1],
//                          attention_mask = attention_mask[:-1]
//               models/nlp/gpt3/backbone.py L330-L334: loss = nn.CrossEntropyLoss()(logits.view(-1, V),
//                          labels.view(-1)) — default ignore_index -100, mean over all positions;
//                          L319-L323: the attention_mask argument is replaced by a causal mask, so
//                          padding never influences the earlier (real) positions
//               trainers/trainer.py L322: the collate function is torch's default_collate (rows are
//                          already S long, so it only stacks them).
//               So in ModelScope the [PAD] targets (id 0 in BERT-Chinese vocabularies) are NOT
//               ignored: labels hold the [PAD] id, never -100, and every one of the S-1 positions
//               counts. DIFFERENCE: refgpt's default (`padTargets: 'ignore'`) gives padding the label
//               -100 and pads only to the longest row of a batch (padding after the text cannot change
//               earlier positions of a causal model, so the counted positions and their losses are
//               those of ModelScope's rows, the mean is over fewer positions). `padTargets: 'count'`
//               reproduces ModelScope exactly: every example is padded to maxLength with [PAD] and the
//               pad targets count (the loss then equals ModelScope's trainer loss for the same rows).
//               Note for generation: ModelScope's generate() does not stop at [SEP]; a model trained
//               with counted pads learns [SEP] -> [PAD] -> [PAD] …, which decode() drops, while with
//               ignored pads what follows [SEP] is untrained. A tgt_txt field (ModelScope's
//               "input & output" mode, L179-L182) is not supported: only the text field is read.
//   pack        HF run_clm's group_texts (transformers examples/pytorch/language-modeling/run_clm.py):
//               concatenate every document and cut the stream into blocks of exactly maxLength, the
//               remainder (< maxLength tokens) dropped; labels = input_ids per block (so the first
//               token of a block is never predicted and the last position has no target). Two
//               differences: (1) refgpt appends EOS after each TEXT document (run_clm's tokenizer call
//               adds nothing for GPT-2 and joins documents directly), pre-tokenized `input_ids` rows
//               are concatenated as they are (no EOS added); (2) run_clm groups per `datasets.map`
//               batch of 1000 rows and drops a remainder per batch; refgpt concatenates the whole file
//               and drops one remainder at the end.
//
// READERS. `.jsonl`: one JSON object per line with a string text field (default "src_txt", as in the
// ModelScope recipe), or with `input_ids` (an int array, used as it is: no special tokens added, never
// truncated; an error when longer than maxLength) and optionally `labels` (same length, ids or -100,
// HF's unshifted convention: labels[t] is the label of position t). `.txt`: one example per line, blank
// lines skipped; with framing 'pack' the file is a corpus: documents are paragraphs (runs of non-blank
// lines joined with "\n", `txtDocuments: 'paragraph'`, the default) or single lines ('line').
// Files are streamed in 64 KiB chunks (never read whole), capped by size, line length, example and token
// counts; every bad line is a one-line UsageError "FILE:LINE: what (expected …, found …)".
//
// BATCHER. Seeded shuffling per epoch with refgpt's documented PRNG (createSampler(seed), xoshiro128**
// seeded by SplitMix64, generation/sampler.ts) driving a Fisher–Yates shuffle:
//     perm = [0, 1, …, n-1]; for i = n-1 down to 1: j = floor(uniform() * (i + 1)); swap(perm[i], perm[j])
// One sampler per Batcher; epoch e's permutation is made from the identity with the uniforms
// e·(n-1) … (e+1)·(n-1)-1 of that stream (each epoch draws exactly n-1 uniforms). Batches are
// consecutive slices of the permutation (drop_last false by default: the last batch may be smaller).
// state() = { epoch, position, seed, rngDraws, … } is plain JSON; restore(state) replays the stream to
// the same point, so a resumed run sees exactly the batches the uninterrupted run would have seen.

import { open, type FileHandle } from 'node:fs/promises'
import { UsageError, show } from '../errors.js'
import { createSampler, type Sampler } from '../generation/sampler.js'
import type { Tokenizer } from '../tokenizers/types.js'

/** The label of a position that does not count in the loss (PyTorch's CrossEntropyLoss ignore_index). */
export const IGNORE_INDEX = -100

export type Framing = 'hf' | 'modelscope' | 'pack'

/** One training example: inputIds and the shifted targets (see the file header). Same length. */
export interface Example {
  inputIds: Int32Array
  targets: Int32Array
}

export interface FramingOptions {
  tokenizer: Tokenizer
  framing: Framing
  /** Longest example (hf, modelscope) or the exact block length (pack). */
  maxLength: number
  /**
   * End-of-text id for 'pack' (after each text document) and `appendEos`. Default: the tokenizer's
   * '<|endoftext|>', else '[SEP]' (WordPiece). Pass config.json's eos_token_id when the folder has one.
   */
  eosId?: number
  /**
   * Id written into padded positions by `collate` (their targets are -100 anyway, so any valid id works).
   * Default: '[PAD]' for 'modelscope', else eosId, else 0.
   */
  padId?: number
  /** Ids must be < vocabSize (pre-tokenized rows). Default: tokenizer.vocabSize. Pass the model's vocab_size. */
  vocabSize?: number
  /** 'hf' only: append EOS to every text before truncation. Default false (run_clm adds nothing). */
  appendEos?: boolean
  /**
   * 'modelscope' only: 'ignore' (default) — pads get target -100 and are added per batch;
   * 'count' — ModelScope's exact framing: pad every example to maxLength with [PAD], pad targets count.
   */
  padTargets?: 'ignore' | 'count'
}

export interface LoadOptions extends FramingOptions {
  /** Default: from the extension (.jsonl / .txt). */
  format?: 'jsonl' | 'txt'
  /** .jsonl text field. Default 'src_txt'. */
  textField?: string
  /** .txt with 'pack': a document is a paragraph (default) or a line. */
  txtDocuments?: 'paragraph' | 'line'
  /** Stop after this many examples (blocks for 'pack'); the rest of the file is not read. */
  limit?: number
  /** Refuse files larger than this. Default 1 GiB. */
  maxBytes?: number
  /** Refuse a line (or a .txt paragraph) longer than this many bytes. Default 16 MiB. */
  maxLineBytes?: number
  /** Refuse more examples than this. Default 10,000,000. */
  maxExamples?: number
  /** Refuse more tokens (sum of example lengths) than this. Default 2^27 (1 GiB of inputIds + targets). */
  maxTokens?: number
}

/** FramingOptions with every default resolved. */
export interface ResolvedFraming {
  tokenizer: Tokenizer
  framing: Framing
  maxLength: number
  eosId: number | undefined
  padId: number
  vocabSize: number
  appendEos: boolean
  padTargets: 'ignore' | 'count'
  /** [CLS] and [SEP] ids ('modelscope'). */
  clsId: number | undefined
  sepId: number | undefined
}

export interface DataStats {
  /** Non-blank lines read (rows / .txt lines). */
  rows: number
  examples: number
  /** Sum of example lengths (incl. padding that is part of an example, i.e. padTargets 'count'). */
  tokens: number
  /** Targets that count (not -100). */
  targets: number
  /** Examples whose text was cut to maxLength. */
  truncated: number
  /** 'pack': tokens of the final partial block (dropped). */
  droppedTokens: number
  /** Longest example. */
  maxExampleLength: number
}

export interface Dataset {
  file: string
  format: 'jsonl' | 'txt'
  framing: Framing
  maxLength: number
  /** What `collate` / `Batcher` should pad with. */
  padId: number
  eosId: number | undefined
  examples: Example[]
  stats: DataStats
}

const DEFAULTS = {
  maxBytes: 1024 * 1024 * 1024,
  maxLineBytes: 16 * 1024 * 1024,
  maxExamples: 10_000_000,
  maxTokens: 2 ** 27,
}

const CHUNK = 64 * 1024

// ---------------------------------------------------------------------------------------------------
// framing

function isIntIn(v: number, lo: number, hi: number): boolean {
  return Number.isInteger(v) && v >= lo && v < hi
}

function checkOptionId(v: number | undefined, name: string, vocabSize: number): void {
  if (v !== undefined && !isIntIn(v, 0, vocabSize)) {
    throw new UsageError({ where: 'training data', what: `bad ${name}`, expected: `an integer in [0, ${vocabSize})`, found: show(v) })
  }
}

/** Resolves the defaults of FramingOptions and checks them. */
export function resolveFraming(opts: FramingOptions): ResolvedFraming {
  const { tokenizer: tok, framing } = opts
  if (framing !== 'hf' && framing !== 'modelscope' && framing !== 'pack') {
    throw new UsageError({ where: 'training data', what: 'unknown framing', expected: "'hf', 'modelscope' or 'pack'", found: show(framing) })
  }
  const minLen = framing === 'modelscope' ? 3 : 2
  if (!Number.isInteger(opts.maxLength) || opts.maxLength < minLen) {
    throw new UsageError({
      where: 'training data',
      what: 'bad max length',
      expected: `an integer >= ${minLen}${framing === 'modelscope' ? ' ([CLS], one token, [SEP])' : ' (one predicted token)'}`,
      found: show(opts.maxLength),
    })
  }
  const vocabSize = opts.vocabSize ?? tok.vocabSize
  if (!Number.isInteger(vocabSize) || vocabSize < 1) {
    throw new UsageError({ where: 'training data', what: 'bad vocab size', expected: 'a positive integer', found: show(vocabSize) })
  }
  const special = (name: string) => tok.specialTokens.get(name)
  const eosId = opts.eosId ?? special('<|endoftext|>') ?? special('[SEP]')
  checkOptionId(opts.eosId, 'eos id', vocabSize)
  checkOptionId(opts.padId, 'pad id', vocabSize)
  const padTargets = opts.padTargets ?? 'ignore'
  if (padTargets !== 'ignore' && padTargets !== 'count') {
    throw new UsageError({ where: 'training data', what: 'bad padTargets', expected: "'ignore' or 'count'", found: show(padTargets) })
  }
  let clsId: number | undefined, sepId: number | undefined
  let padId: number
  if (framing === 'modelscope') {
    const need = (name: string) => {
      const id = special(name)
      if (id === undefined) {
        throw new UsageError({
          where: 'training data',
          what: `the tokenizer has no ${name} token`,
          expected: 'a WordPiece vocab.txt with [CLS], [SEP] and [PAD] (ModelScope GPT-3 folder)',
          found: tok.kind,
          hint: "use framing 'hf' for Hugging Face folders",
        })
      }
      return id
    }
    clsId = need('[CLS]')
    sepId = need('[SEP]')
    padId = opts.padId ?? need('[PAD]')
  } else {
    padId = opts.padId ?? eosId ?? 0
  }
  if ((framing === 'pack' || opts.appendEos) && eosId === undefined) {
    throw new UsageError({
      where: 'training data',
      what: 'no end-of-text id',
      expected: "a tokenizer with '<|endoftext|>' or '[SEP]', or an explicit eosId",
      found: tok.kind,
      hint: "pass eosId (config.json's eos_token_id)",
    })
  }
  return { tokenizer: tok, framing, maxLength: opts.maxLength, eosId, padId, vocabSize, appendEos: !!opts.appendEos, padTargets, clsId, sepId }
}

/**
 * An example from ids and optional unshifted labels (HF convention: labels[t] is the label of position
 * t; default labels = ids): targets[t] = labels[t+1], targets[n-1] = -100.
 */
export function makeExample(ids: ArrayLike<number>, labels?: ArrayLike<number>): Example {
  const n = ids.length
  const inputIds = Int32Array.from(ids)
  const lab = labels ?? ids
  const targets = new Int32Array(n)
  for (let t = 0; t + 1 < n; t++) targets[t] = lab[t + 1]
  if (n > 0) targets[n - 1] = IGNORE_INDEX
  return { inputIds, targets }
}

/** Where a framing error happened, for the message ("data.jsonl:7"). */
type Where = string

/** Tokenizes a text document: refuses an empty text, no tokens, and ids beyond the model's vocabulary. */
function encodeText(text: string, f: ResolvedFraming, where: Where): number[] {
  if (text.length === 0) fail(where, 'empty text', 'a non-empty string')
  const ids = f.tokenizer.encode(text)
  if (ids.length === 0) fail(where, 'the text has no tokens', 'a text that tokenizes to at least one token', show(text))
  for (const id of ids) {
    if (id >= f.vocabSize) fail(where, "a token of the text is outside the model's vocabulary", `ids < ${f.vocabSize}`, String(id), 'the tokenizer does not match the model')
  }
  return ids
}

function fail(where: Where, what: string, expected?: string, found?: string, hint?: string): never {
  throw new UsageError({ where, what, ...(expected !== undefined ? { expected } : {}), ...(found !== undefined ? { found } : {}), ...(hint ? { hint } : {}) })
}

/**
 * Frames one text as an example ('hf' or 'modelscope'; for 'pack' use `Packer`).
 * `truncated` tells whether tokens were cut to fit maxLength.
 */
export function frameText(text: string, f: ResolvedFraming, where: Where = 'text'): { example: Example; truncated: boolean } {
  if (f.framing === 'pack') fail(where, "frameText does not pack", "framing 'hf' or 'modelscope'", "'pack'", 'use Packer')
  const body = encodeText(text, f, where)
  const L = f.maxLength
  if (f.framing === 'hf') {
    if (f.appendEos) body.push(f.eosId!)
    const truncated = body.length > L
    return { example: makeExample(truncated ? body.slice(0, L) : body), truncated }
  }
  // modelscope: [CLS] + wordpieces[:L-2] + [SEP] (+ [PAD] to L with padTargets 'count')
  const truncated = body.length > L - 2
  const ids = [f.clsId!, ...(truncated ? body.slice(0, L - 2) : body), f.sepId!]
  if (f.padTargets === 'count') while (ids.length < L) ids.push(f.padId)
  return { example: makeExample(ids), truncated }
}

/**
 * Frames pre-tokenized ids ('hf' or 'modelscope'): used as they are (no special tokens, no truncation);
 * with padTargets 'count' (modelscope) padded to maxLength with pad labels that count.
 */
export function frameIds(ids: ArrayLike<number>, labels: ArrayLike<number> | undefined, f: ResolvedFraming, where: Where = 'input_ids'): Example {
  if (f.framing === 'pack') fail(where, "frameIds does not pack", "framing 'hf' or 'modelscope'", "'pack'", 'use Packer')
  checkIdArray(ids, 'input_ids', where, f.vocabSize, false)
  if (labels !== undefined) {
    checkIdArray(labels, 'labels', where, f.vocabSize, true)
    if (labels.length !== ids.length) fail(where, 'labels and input_ids differ in length', `${ids.length} labels`, `${labels.length}`)
  }
  if (ids.length > f.maxLength) {
    fail(where, 'input_ids longer than the max length', `at most ${f.maxLength} ids`, `${ids.length}`, 'pre-tokenized rows are never truncated: raise the max length or shorten the row')
  }
  if (f.framing === 'modelscope' && f.padTargets === 'count' && ids.length < f.maxLength) {
    const p = Array.from(ids)
    const q = labels !== undefined ? Array.from(labels) : undefined
    while (p.length < f.maxLength) {
      p.push(f.padId)
      q?.push(f.padId)
    }
    return makeExample(p, q)
  }
  return makeExample(ids, labels)
}

/** Checks a JSON id array: integers in [0, vocabSize) (or -100 in labels), at least one. */
function checkIdArray(a: unknown, field: string, where: Where, vocabSize: number, allowIgnore: boolean): asserts a is ArrayLike<number> {
  if (!Array.isArray(a) && !(a instanceof Int32Array)) {
    fail(where, `"${field}" is not an array`, 'an array of token ids', show(a, 40))
  }
  const arr = a as ArrayLike<unknown>
  if (arr.length === 0) fail(where, `empty "${field}"`, 'at least one token id')
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i]
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      fail(where, `"${field}"[${i}] is not an integer`, 'integer token ids', show(v, 40))
    }
    if (!(v >= 0 && v < vocabSize) && !(allowIgnore && v === IGNORE_INDEX)) {
      fail(where, `"${field}"[${i}] out of the vocabulary range`, `an id in [0, ${vocabSize})${allowIgnore ? ' or -100' : ''}`, String(v))
    }
  }
}

/**
 * HF group_texts, streaming: documents go in, blocks of exactly maxLength come out; the remainder is
 * dropped by `finish()`. Memory: the blocks plus less than one block (and one document) of pending ids.
 */
export class Packer {
  private readonly f: ResolvedFraming
  private ids: Int32Array
  private labels: Int32Array
  private len = 0
  /** Any document with its own labels so far (else labels = ids). */
  private customLabels = false

  constructor(f: ResolvedFraming) {
    if (f.framing !== 'pack') fail('training data', 'Packer needs the pack framing', "'pack'", show(f.framing))
    this.f = f
    this.ids = new Int32Array(Math.max(1024, 2 * f.maxLength))
    this.labels = new Int32Array(this.ids.length)
  }

  /** Tokens waiting for the next block. */
  get pending(): number {
    return this.len
  }

  /** Adds a text document (tokens + EOS). Returns the blocks it completed. */
  pushText(text: string, where: Where = 'text'): Example[] {
    const ids = encodeText(text, this.f, where)
    ids.push(this.f.eosId!)
    return this.append(ids, undefined)
  }

  /** Adds pre-tokenized ids as they are (no EOS), with optional unshifted labels. */
  pushIds(ids: ArrayLike<number>, labels?: ArrayLike<number>, where: Where = 'input_ids'): Example[] {
    checkIdArray(ids, 'input_ids', where, this.f.vocabSize, false)
    if (labels !== undefined) {
      checkIdArray(labels, 'labels', where, this.f.vocabSize, true)
      if (labels.length !== ids.length) fail(where, 'labels and input_ids differ in length', `${ids.length} labels`, `${labels.length}`)
    }
    return this.append(ids, labels)
  }

  /** Ends the stream: the pending tokens (< maxLength) are dropped; returns how many. */
  finish(): number {
    const dropped = this.len
    this.len = 0
    return dropped
  }

  private append(ids: ArrayLike<number>, labels: ArrayLike<number> | undefined): Example[] {
    const need = this.len + ids.length
    if (need > this.ids.length) {
      let cap = this.ids.length
      while (cap < need) cap *= 2
      const a = new Int32Array(cap), b = new Int32Array(cap)
      a.set(this.ids.subarray(0, this.len))
      b.set(this.labels.subarray(0, this.len))
      this.ids = a
      this.labels = b
    }
    for (let i = 0; i < ids.length; i++) {
      this.ids[this.len + i] = ids[i]
      this.labels[this.len + i] = labels ? labels[i] : ids[i]
    }
    if (labels) this.customLabels = true
    this.len = need
    const L = this.f.maxLength
    const out: Example[] = []
    let start = 0
    while (this.len - start >= L) {
      const block = this.ids.subarray(start, start + L)
      out.push(makeExample(block, this.customLabels ? this.labels.subarray(start, start + L) : undefined))
      start += L
    }
    if (start > 0) {
      this.ids.copyWithin(0, start, this.len)
      this.labels.copyWithin(0, start, this.len)
      this.len -= start
    }
    return out
  }
}

// ---------------------------------------------------------------------------------------------------
// readers

/**
 * The lines of a text file, streamed in 64 KiB chunks: { text, line } with the line number 1-based, the
 * '\n' (and a '\r' before it) removed, a UTF-8 BOM at the start of the file dropped. Refuses a file over
 * maxBytes (checked before reading and while reading), a line over maxLineBytes and invalid UTF-8.
 */
export async function* readLines(
  file: string,
  opts: { maxBytes?: number; maxLineBytes?: number } = {},
): AsyncGenerator<{ text: string; line: number }> {
  const maxBytes = opts.maxBytes ?? DEFAULTS.maxBytes
  const maxLineBytes = opts.maxLineBytes ?? DEFAULTS.maxLineBytes
  let fh: FileHandle
  try {
    fh = await open(file, 'r')
  } catch (e) {
    throw new UsageError({ where: file, what: 'cannot open the data file', found: e instanceof Error ? e.message : String(e) }, { cause: e })
  }
  try {
    const st = await fh.stat()
    if (!st.isFile()) fail(file, 'not a file', 'a .jsonl or .txt file', st.isDirectory() ? 'a folder' : 'not a regular file')
    const tooBig = (size: number) =>
      fail(file, 'data file too large', `at most ${maxBytes} bytes`, `${size} bytes`, 'raise the size limit (maxBytes) or split the file')
    if (st.size > maxBytes) tooBig(st.size)
    const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
    const buf = Buffer.allocUnsafe(CHUNK)
    let parts: Buffer[] = []
    let partLen = 0
    let line = 0
    let total = 0
    const decode = (bytes: Uint8Array, lineNo: number): string => {
      let s: string
      try {
        s = decoder.decode(bytes)
      } catch {
        return fail(`${file}:${lineNo}`, 'invalid UTF-8', 'UTF-8 text')
      }
      if (s.endsWith('\r')) s = s.slice(0, -1)
      if (lineNo === 1 && s.charCodeAt(0) === 0xfeff) s = s.slice(1)
      return s
    }
    const tooLong = (lineNo: number, n: number) =>
      fail(`${file}:${lineNo}`, 'line too long', `at most ${maxLineBytes} bytes`, `${n}+ bytes`, 'raise the line limit (maxLineBytes)')
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null)
      if (bytesRead === 0) break
      total += bytesRead
      if (total > maxBytes) tooBig(total)
      const view = buf.subarray(0, bytesRead)
      let start = 0
      for (;;) {
        const nl = view.indexOf(10, start)
        if (nl < 0) break
        line++
        const seg = view.subarray(start, nl)
        if (partLen + seg.length > maxLineBytes) tooLong(line, partLen + seg.length)
        const bytes = partLen === 0 ? seg : Buffer.concat([...parts, seg])
        parts = []
        partLen = 0
        yield { text: decode(bytes, line), line }
        start = nl + 1
      }
      if (start < bytesRead) {
        const rest = Buffer.from(view.subarray(start)) // copy: buf is reused
        partLen += rest.length
        if (partLen > maxLineBytes) tooLong(line + 1, partLen)
        parts.push(rest)
      }
    }
    if (partLen > 0) {
      line++
      yield { text: decode(Buffer.concat(parts), line), line }
    }
  } finally {
    await fh.close()
  }
}

/** One row of a data file, before framing. */
export type DataRow =
  | { kind: 'text'; text: string; line: number }
  | { kind: 'ids'; ids: number[]; labels?: number[]; line: number }

function formatOf(file: string, format: LoadOptions['format']): 'jsonl' | 'txt' {
  if (format !== undefined) {
    if (format !== 'jsonl' && format !== 'txt') fail(file, 'unknown data format', "'jsonl' or 'txt'", show(format))
    return format
  }
  const lower = file.toLowerCase()
  if (lower.endsWith('.jsonl')) return 'jsonl'
  if (lower.endsWith('.txt')) return 'txt'
  return fail(file, 'unknown data file type', 'a .jsonl file (one JSON object per line) or a .txt file (one example per line)', show(file.slice(file.lastIndexOf('/') + 1)), 'rename the file or pass the format')
}

/** Parses one .jsonl line into a row (the text field, or input_ids [+ labels]). */
export function parseJsonlRow(text: string, file: string, line: number, textField: string, vocabSize: number): DataRow {
  const where = `${file}:${line}`
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (e) {
    fail(where, 'invalid JSON', 'one JSON object per line', show((e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' '), 100))
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    fail(where, 'the row is not a JSON object', `an object such as {"${textField}": "..."}`, v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`)
  }
  const row = v as Record<string, unknown>
  if ('input_ids' in row) {
    const ids = row['input_ids']
    checkIdArray(ids, 'input_ids', where, vocabSize, false)
    if ('labels' in row) {
      const labels = row['labels']
      checkIdArray(labels, 'labels', where, vocabSize, true)
      if (labels.length !== ids.length) fail(where, 'labels and input_ids differ in length', `${ids.length} labels`, `${labels.length}`)
      return { kind: 'ids', ids: ids as number[], labels: labels as number[], line }
    }
    return { kind: 'ids', ids: ids as number[], line }
  }
  if ('labels' in row) fail(where, '"labels" without "input_ids"', 'labels only beside pre-tokenized input_ids', 'labels')
  if (!(textField in row)) {
    const keys = Object.keys(row)
    fail(
      where,
      `missing field "${textField}"`,
      `a string field "${textField}" or an "input_ids" array`,
      keys.length ? `fields ${show(keys.slice(0, 8).join(', '), 60)}` : 'an empty object',
      'choose the text field (--text-field)',
    )
  }
  const t = row[textField]
  if (typeof t !== 'string') fail(where, `field "${textField}" is not a string`, 'a string', t === null ? 'null' : Array.isArray(t) ? 'an array' : `a ${typeof t}`)
  if (t.length === 0) fail(where, `empty text in field "${textField}"`, 'a non-empty string')
  return { kind: 'text', text: t, line }
}

/**
 * The rows of a data file, streamed. .jsonl: one row per non-blank line. .txt: one row per non-blank
 * line, or with `paragraphs` one row per paragraph (lines joined with "\n", reported at its first line).
 */
export async function* readDataRows(
  file: string,
  opts: { format?: 'jsonl' | 'txt'; textField?: string; vocabSize: number; paragraphs?: boolean; maxBytes?: number; maxLineBytes?: number },
): AsyncGenerator<DataRow> {
  const format = formatOf(file, opts.format)
  const textField = opts.textField ?? 'src_txt'
  if (typeof textField !== 'string' || textField === '') fail('training data', 'bad text field', 'a field name', show(textField))
  const maxLineBytes = opts.maxLineBytes ?? DEFAULTS.maxLineBytes
  const lines = readLines(file, opts)
  if (format === 'jsonl') {
    for await (const { text, line } of lines) {
      if (text.trim() === '') continue
      yield parseJsonlRow(text, file, line, textField, opts.vocabSize)
    }
    return
  }
  if (!opts.paragraphs) {
    for await (const { text, line } of lines) {
      if (text.trim() === '') continue
      yield { kind: 'text', text, line }
    }
    return
  }
  let para: string[] = []
  let paraLine = 0
  let paraBytes = 0
  for await (const { text, line } of lines) {
    if (text.trim() === '') {
      if (para.length) yield { kind: 'text', text: para.join('\n'), line: paraLine }
      para = []
      paraBytes = 0
      continue
    }
    if (para.length === 0) paraLine = line
    paraBytes += Buffer.byteLength(text) + 1
    if (paraBytes > maxLineBytes) {
      fail(`${file}:${paraLine}`, 'paragraph too long', `at most ${maxLineBytes} bytes`, `${paraBytes}+ bytes (to line ${line})`, 'separate documents with blank lines or raise maxLineBytes')
    }
    para.push(text)
  }
  if (para.length) yield { kind: 'text', text: para.join('\n'), line: paraLine }
}

/**
 * Reads, tokenizes and frames a data file (see the file header). Streams the file; stops early at
 * `limit` examples; refuses files or datasets beyond the caps with a UsageError.
 */
export async function loadExamples(file: string, opts: LoadOptions): Promise<Dataset> {
  const f = resolveFraming(opts)
  const format = formatOf(file, opts.format)
  const txtDocuments = opts.txtDocuments ?? 'paragraph'
  if (txtDocuments !== 'paragraph' && txtDocuments !== 'line') fail('training data', 'bad txtDocuments', "'paragraph' or 'line'", show(txtDocuments))
  const positive = (v: number | undefined, name: string, def: number) => {
    if (v === undefined) return def
    if (!Number.isSafeInteger(v) || v < 1) fail('training data', `bad ${name}`, 'a positive integer', show(v))
    return v
  }
  const limit = positive(opts.limit, 'limit', Number.MAX_SAFE_INTEGER)
  const maxExamples = positive(opts.maxExamples, 'maxExamples', DEFAULTS.maxExamples)
  const maxTokens = positive(opts.maxTokens, 'maxTokens', DEFAULTS.maxTokens)
  const maxBytes = positive(opts.maxBytes, 'maxBytes', DEFAULTS.maxBytes)
  const maxLineBytes = positive(opts.maxLineBytes, 'maxLineBytes', DEFAULTS.maxLineBytes)

  const examples: Example[] = []
  const stats: DataStats = { rows: 0, examples: 0, tokens: 0, targets: 0, truncated: 0, droppedTokens: 0, maxExampleLength: 0 }
  const add = (ex: Example, where: Where): boolean => {
    if (examples.length >= maxExamples) {
      fail(where, 'too many examples', `at most ${maxExamples}`, `more`, 'read fewer (limit) or raise maxExamples')
    }
    if (stats.tokens + ex.inputIds.length > maxTokens) {
      fail(where, 'too many tokens', `at most ${maxTokens}`, `more`, 'read fewer examples (limit) or raise maxTokens')
    }
    examples.push(ex)
    stats.examples++
    stats.tokens += ex.inputIds.length
    stats.targets += countTargets(ex.targets)
    if (ex.inputIds.length > stats.maxExampleLength) stats.maxExampleLength = ex.inputIds.length
    return examples.length >= limit
  }

  const rows = readDataRows(file, {
    format,
    ...(opts.textField !== undefined ? { textField: opts.textField } : {}),
    vocabSize: f.vocabSize,
    paragraphs: f.framing === 'pack' && format === 'txt' && txtDocuments === 'paragraph',
    maxBytes,
    maxLineBytes,
  })
  const packer = f.framing === 'pack' ? new Packer(f) : undefined
  let done = false
  for await (const row of rows) {
    stats.rows++
    const where = `${file}:${row.line}`
    if (packer) {
      const blocks = row.kind === 'text' ? packer.pushText(row.text, where) : packer.pushIds(row.ids, row.labels, where)
      for (const b of blocks) if ((done = add(b, where))) break
    } else if (row.kind === 'text') {
      const { example, truncated } = frameText(row.text, f, where)
      if (truncated) stats.truncated++
      done = add(example, where)
    } else {
      done = add(frameIds(row.ids, row.labels, f, where), where)
    }
    if (done) break // leaving the loop closes the file
  }
  if (packer) stats.droppedTokens = done ? 0 : packer.finish()
  if (examples.length === 0) {
    if (packer && stats.droppedTokens > 0) {
      fail(file, 'the corpus is shorter than one block', `at least ${f.maxLength} tokens`, `${stats.droppedTokens} tokens`, 'lower the max length or add text')
    }
    fail(file, 'no examples', format === 'jsonl' ? 'at least one JSON row' : 'at least one non-blank line', 'none')
  }
  return { file, format, framing: f.framing, maxLength: f.maxLength, padId: f.padId, eosId: f.eosId, examples, stats }
}

// ---------------------------------------------------------------------------------------------------
// batches

/** A padded batch, row-major [rows, seqLen]. */
export interface Batch {
  inputIds: Int32Array
  targets: Int32Array
  rows: number
  seqLen: number
  /** Length of each row before padding. */
  lengths: Int32Array
  /** Which examples (indices into the Batcher's array). */
  indices: Int32Array
  /** Those examples, unpadded (for a trainer that runs examples one at a time: Trainer.forwardBackward). */
  examples: Example[]
  /** Epoch (0-based) and batch index within it; lastInEpoch on the epoch's final batch. */
  epoch: number
  step: number
  lastInEpoch: boolean
  /** Real (non-padding) tokens = sum of lengths. */
  tokens: number
  /** Targets that count (!= -100): the denominator of the batch's mean loss. */
  targetCount: number
}

/** Number of targets that count (not IGNORE_INDEX). */
export function countTargets(targets: ArrayLike<number>): number {
  let c = 0
  for (let i = 0; i < targets.length; i++) if (targets[i] !== IGNORE_INDEX) c++
  return c
}

/**
 * Stacks examples into a batch padded to the longest (or to `padTo`): padded inputIds = padId,
 * padded targets = -100.
 */
export function collate(examples: readonly Example[], padId: number, padTo?: number): Omit<Batch, 'indices' | 'examples' | 'epoch' | 'step' | 'lastInEpoch'> {
  if (examples.length === 0) fail('collate', 'empty batch', 'at least one example', 'none')
  let T = 0
  for (const e of examples) T = Math.max(T, e.inputIds.length)
  if (padTo !== undefined) {
    if (!Number.isInteger(padTo) || padTo < T) fail('collate', 'padTo shorter than an example', `an integer >= ${T}`, show(padTo))
    T = padTo
  }
  const B = examples.length
  const inputIds = new Int32Array(B * T).fill(padId)
  const targets = new Int32Array(B * T).fill(IGNORE_INDEX)
  const lengths = new Int32Array(B)
  let tokens = 0, targetCount = 0
  for (let b = 0; b < B; b++) {
    const e = examples[b]
    inputIds.set(e.inputIds, b * T)
    targets.set(e.targets, b * T)
    lengths[b] = e.inputIds.length
    tokens += e.inputIds.length
    targetCount += countTargets(e.targets)
  }
  return { inputIds, targets, rows: B, seqLen: T, lengths, tokens, targetCount }
}

export interface BatcherOptions {
  batchSize: number
  /** Shuffle seed (default 42, HF TrainingArguments' default). */
  seed?: number
  /** Default true; false = file order every epoch (--no-shuffle). */
  shuffle?: boolean
  /** Drop the last incomplete batch of an epoch. Default false. */
  dropLast?: boolean
  /** Pad id (Dataset.padId). */
  padId: number
  /** Pad every batch to this length instead of its longest row. */
  padTo?: number
}

/** Everything needed to continue the exact batch order (plain JSON). */
export interface BatcherState {
  version: 1
  seed: number
  shuffle: boolean
  dropLast: boolean
  batchSize: number
  numExamples: number
  /** FNV-1a over every example's ids and targets: refuses to resume on different data. */
  fingerprint: string
  /** Current epoch (0-based) and the number of its examples already handed out. */
  epoch: number
  position: number
  /** PRNG state: uniform() draws taken from createSampler(seed) before this epoch's shuffle. */
  rngDraws: number
}

/** A Fisher–Yates permutation of 0..n-1 from `sampler` (n-1 uniforms; see the file header). */
export function shuffledIndices(n: number, sampler: Pick<Sampler, 'uniform'>): Int32Array {
  const p = new Int32Array(n)
  for (let i = 0; i < n; i++) p[i] = i
  for (let i = n - 1; i >= 1; i--) {
    const j = Math.floor(sampler.uniform() * (i + 1))
    const t = p[i]
    p[i] = p[j]
    p[j] = t
  }
  return p
}

/** FNV-1a (32-bit) over lengths, ids and targets of every example, as 8 hex digits. */
export function datasetFingerprint(examples: readonly Example[]): string {
  let h = 0x811c9dc5
  const mix = (v: number) => {
    for (let k = 0; k < 4; k++) {
      h ^= (v >>> (8 * k)) & 0xff
      h = Math.imul(h, 0x01000193)
    }
  }
  mix(examples.length)
  for (const e of examples) {
    mix(e.inputIds.length)
    for (let i = 0; i < e.inputIds.length; i++) mix(e.inputIds[i])
    for (let i = 0; i < e.targets.length; i++) mix(e.targets[i])
  }
  return (h >>> 0).toString(16).padStart(8, '0')
}

/**
 * Hands out batches epoch after epoch: `next()` never ends (epochs follow each other; `batch.epoch`,
 * `batch.lastInEpoch` tell where it is). `state()` after any batch + `restore()` in a fresh Batcher on the
 * same examples continue with identical batches.
 */
export class Batcher {
  readonly examples: readonly Example[]
  readonly batchSize: number
  readonly seed: number
  readonly shuffle: boolean
  readonly dropLast: boolean
  readonly padId: number
  readonly padTo: number | undefined
  readonly fingerprint: string
  private sampler: Sampler
  private rngDraws = 0
  private perm: Int32Array
  private _epoch = 0
  private _position = 0

  constructor(examples: readonly Example[], opts: BatcherOptions) {
    const n = examples.length
    if (n === 0) fail('batcher', 'no examples', 'at least one example', 'none')
    if (!Number.isSafeInteger(opts.batchSize) || opts.batchSize < 1) fail('batcher', 'bad batch size', 'a positive integer', show(opts.batchSize))
    if (opts.dropLast && opts.batchSize > n) fail('batcher', 'batch size larger than the data set with dropLast', `at most ${n}`, show(opts.batchSize))
    if (!Number.isInteger(opts.padId)) fail('batcher', 'bad pad id', 'an integer token id', show(opts.padId))
    this.examples = examples
    this.batchSize = opts.batchSize
    this.seed = opts.seed ?? 42
    this.shuffle = opts.shuffle ?? true
    this.dropLast = !!opts.dropLast
    this.padId = opts.padId
    this.padTo = opts.padTo
    this.sampler = createSampler(this.seed) // validates the seed
    this.fingerprint = datasetFingerprint(examples)
    this.perm = this.makePerm()
  }

  get epoch(): number {
    return this._epoch
  }
  /** Examples of the current epoch already handed out. */
  get position(): number {
    return this._position
  }
  get batchesPerEpoch(): number {
    const n = this.examples.length
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize)
  }
  /** The example order of the current epoch (a copy). */
  order(): Int32Array {
    return this.perm.slice()
  }

  private epochEnd(): number {
    const n = this.examples.length
    return this.dropLast ? n - (n % this.batchSize) : n
  }

  private makePerm(): Int32Array {
    const n = this.examples.length
    if (!this.shuffle) {
      const p = new Int32Array(n)
      for (let i = 0; i < n; i++) p[i] = i
      return p
    }
    let draws = 0
    const counting = { uniform: () => (draws++, this.sampler.uniform()) }
    const p = shuffledIndices(n, counting)
    this.rngDraws += draws
    return p
  }

  next(): Batch {
    if (this._position >= this.epochEnd()) {
      this._epoch++
      this._position = 0
      this.perm = this.makePerm()
    }
    const start = this._position
    const end = Math.min(start + this.batchSize, this.epochEnd())
    const indices = this.perm.slice(start, end)
    const examples = Array.from(indices, (i) => this.examples[i])
    const b = collate(examples, this.padId, this.padTo)
    this._position = end
    const step = Math.floor(start / this.batchSize)
    return { ...b, indices, examples, epoch: this._epoch, step, lastInEpoch: end >= this.epochEnd() }
  }

  state(): BatcherState {
    const n = this.examples.length
    const drawsPerEpoch = this.shuffle ? Math.max(0, n - 1) : 0
    return {
      version: 1,
      seed: this.seed,
      shuffle: this.shuffle,
      dropLast: this.dropLast,
      batchSize: this.batchSize,
      numExamples: n,
      fingerprint: this.fingerprint,
      epoch: this._epoch,
      position: this._position,
      rngDraws: this.rngDraws - drawsPerEpoch, // draws before the current epoch's shuffle
    }
  }

  restore(state: BatcherState): void {
    const where = 'batcher state'
    if (typeof state !== 'object' || state === null || state.version !== 1) {
      fail(where, 'unknown batcher state', 'version 1', show((state as { version?: unknown } | null)?.version))
    }
    const same = (name: keyof BatcherState, mine: unknown) => {
      if (state[name] !== mine) fail(where, `${name} differs from the saved run`, `${show(state[name])} (saved)`, show(mine), 'resume with the same data and training arguments')
    }
    same('numExamples', this.examples.length)
    same('fingerprint', this.fingerprint)
    same('seed', this.seed)
    same('shuffle', this.shuffle)
    same('dropLast', this.dropLast)
    same('batchSize', this.batchSize)
    const n = this.examples.length
    const drawsPerEpoch = this.shuffle ? Math.max(0, n - 1) : 0
    const ok =
      Number.isSafeInteger(state.epoch) && state.epoch >= 0 &&
      Number.isSafeInteger(state.position) && state.position >= 0 && state.position <= this.epochEnd() &&
      state.rngDraws === state.epoch * drawsPerEpoch
    if (!ok) fail(where, 'inconsistent batcher state', `epoch >= 0, 0 <= position <= ${this.epochEnd()}, rngDraws = epoch * ${drawsPerEpoch}`, show({ epoch: state.epoch, position: state.position, rngDraws: state.rngDraws }))
    this.sampler = createSampler(this.seed)
    for (let i = 0; i < state.rngDraws; i++) this.sampler.uniform()
    this.rngDraws = state.rngDraws
    this._epoch = state.epoch
    this.perm = this.makePerm()
    this._position = state.position
  }
}

// ---------------------------------------------------------------------------------------------------
// token counting

export interface TokenCounts {
  /** Real tokens (what tokens/s counts). */
  tokens: number
  /** Positions fed to the model incl. padding (rows x seqLen for a batch). */
  positions: number
  /** Targets that count in the loss. */
  targets: number
}

/** Token counts of one batch. */
export function batchTokenCounts(b: Pick<Batch, 'rows' | 'seqLen' | 'tokens' | 'targetCount'>): TokenCounts {
  return { tokens: b.tokens, positions: b.rows * b.seqLen, targets: b.targetCount }
}

/** Token counts of a set of examples (positions = tokens: examples are unpadded). */
export function exampleTokenCounts(examples: readonly Example[]): TokenCounts {
  let tokens = 0, targets = 0
  for (const e of examples) {
    tokens += e.inputIds.length
    targets += countTargets(e.targets)
  }
  return { tokens, positions: tokens, targets }
}

/** Tokens per second over `ms` milliseconds (0 when no time passed). */
export function tokensPerSecond(tokens: number, ms: number): number {
  return ms > 0 ? (tokens * 1000) / ms : 0
}
