// Evaluation tasks and their data: what each line of a data file becomes, following lm-eval's task
// definitions (EleutherAI/lm-evaluation-harness @ 4e7e0d4, files named below).
//
//   perplexity  a .txt file (one document) or .jsonl ({"text": ...} or {"page": ...} per line); with
//               detokenize 'wikitext' the model scores wikitext_detokenizer(text) while words and bytes
//               are counted on the original text (tasks/wikitext/preprocess_wikitext.py process_results)
//   lambada     {"text": ...}: context = text up to its last space, target = " " + the last word
//               (tasks/lambada/lambada_openai.yaml: text.split(' ')[:-1]|join(' '), ' '+text.split(' ')[-1])
//   choice      one JSON object per line in one of these formats (tasks/*/…yaml, utils.py):
//     hellaswag   {"activity_label","ctx_a","ctx_b","endings":[4],"label"}: query = preprocess(activity_label
//                 + ": " + ctx_a + " " + ctx_b.capitalize()), choices = preprocess(ending)
//     piqa        {"goal","sol1","sol2","label"}: "Question: {goal}\nAnswer:", choices [sol1, sol2]
//     winogrande  {"sentence","option1","option2","answer":"1"|"2"}: partial scoring: the contexts differ
//                 (sentence up to "_" + option), the continuation is the same (" " + the rest, stripped)
//     arc         {"question","choices":{"text":[...],"label":[...]},"answerKey"}: "Question: {question}\nAnswer:"
//     generic     {"context","choices":[...],"gold"}
//   Every continuation is the target delimiter " " + the choice (winogrande: + the sentence's end).

import { UsageError, show } from '../errors.js'
import { hellaswagPreprocess, pyCapitalize, pyStrip } from './text.js'

export type ChoiceFormat = 'hellaswag' | 'piqa' | 'winogrande' | 'arc' | 'generic'
export const CHOICE_FORMATS: readonly ChoiceFormat[] = ['hellaswag', 'piqa', 'winogrande', 'arc', 'generic']

export type EvalTask =
  | {
      kind: 'perplexity'
      name: string
      /** 'rolling': lm-eval loglikelihood_rolling; 'sliding': the HF docs' window with `stride`. */
      mode: 'rolling' | 'sliding'
      stride?: number
      detokenize?: 'wikitext' | null
    }
  | { kind: 'lambada'; name: string }
  | { kind: 'choice'; name: string; format: ChoiceFormat }

/** A document or passage: perplexity and lambada. `index` is its place among the file's items (0-based). */
export interface TextDoc {
  index: number
  /** 1-based line of a .jsonl file (absent for a .txt document). */
  line?: number
  text: string
}

/** A multiple-choice question as loglikelihood requests (text), one per choice. */
export interface ChoiceDoc {
  index: number
  line?: number
  requests: { context: string; continuation: string }[]
  /** lm-eval's doc_to_choice: what acc_norm divides by (len() in code points). Winogrande: the contexts. */
  choices: string[]
  gold: number
}

export type EvalDoc = TextDoc | ChoiceDoc

/** Metrics each task reports (lm-eval's metric_list; token_perplexity is refgpt's addition). */
export function taskMetrics(task: EvalTask): string[] {
  if (task.kind === 'perplexity') return ['word_perplexity', 'byte_perplexity', 'bits_per_byte', 'token_perplexity']
  if (task.kind === 'lambada') return ['perplexity', 'acc']
  return task.format === 'winogrande' ? ['acc'] : ['acc', 'acc_norm']
}

/** lambada_openai's split: context = text.split(' ')[:-1] joined by ' ', target = ' ' + text.split(' ')[-1]. */
export function lambadaSplit(text: string): { context: string; target: string } {
  const parts = text.split(' ')
  return { context: parts.slice(0, -1).join(' '), target: ' ' + parts[parts.length - 1] }
}

function fail(where: string, what: string, expected?: string, found?: string): never {
  throw new UsageError({ where, what, ...(expected !== undefined ? { expected } : {}), ...(found !== undefined ? { found } : {}) })
}

const EXAMPLES: Record<ChoiceFormat, string> = {
  hellaswag: '{"activity_label":"...","ctx_a":"...","ctx_b":"...","endings":["...","..."],"label":"0"}',
  piqa: '{"goal":"...","sol1":"...","sol2":"...","label":0}',
  winogrande: '{"sentence":"... _ ...","option1":"...","option2":"...","answer":"1"}',
  arc: '{"question":"...","choices":{"text":["..."],"label":["A"]},"answerKey":"A"}',
  generic: '{"context":"...","choices":["...","..."],"gold":0}',
}

function str(row: Record<string, unknown>, key: string, where: string, format: string): string {
  const v = row[key]
  if (typeof v !== 'string') fail(where, v === undefined ? `missing field "${key}"` : `field "${key}" is not a string`, `a ${format} row such as ${EXAMPLES[format as ChoiceFormat] ?? '{"text": "..."}'}`, v === undefined ? `fields ${show(Object.keys(row).join(', '), 60)}` : show(v, 40))
  return v
}

function strArray(row: Record<string, unknown>, key: string, where: string, format: ChoiceFormat, v: unknown = row[key]): string[] {
  if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'string'))
    fail(where, v === undefined ? `missing field "${key}"` : `field "${key}" is not a non-empty array of strings`, `a ${format} row such as ${EXAMPLES[format]}`, v === undefined ? `fields ${show(Object.keys(row).join(', '), 60)}` : show(v, 40))
  return v as string[]
}

/** An integer label given as a number or a string of digits (HF datasets store both). */
function label(v: unknown, key: string, n: number, where: string, format: ChoiceFormat): number {
  const k = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN
  if (!Number.isInteger(k) || k < 0 || k >= n) fail(where, `bad "${key}"`, `an index 0 .. ${n - 1} (a ${format} row such as ${EXAMPLES[format]})`, show(v, 40))
  return k
}

/** One JSON object (already parsed) of a multiple-choice file -> its requests, choices and gold index. */
export function parseChoiceRow(row: Record<string, unknown>, format: ChoiceFormat, where: string, index = 0, line?: number): ChoiceDoc {
  const doc = (requests: ChoiceDoc['requests'], choices: string[], gold: number): ChoiceDoc => ({ index, ...(line !== undefined ? { line } : {}), requests, choices, gold })
  const each = (context: string, choices: string[]) => choices.map((c) => ({ context, continuation: ' ' + c }))
  switch (format) {
    case 'hellaswag': {
      const ctx = str(row, 'ctx_a', where, format) + ' ' + pyCapitalize(str(row, 'ctx_b', where, format))
      const query = hellaswagPreprocess(str(row, 'activity_label', where, format) + ': ' + ctx)
      const choices = strArray(row, 'endings', where, format).map(hellaswagPreprocess)
      return doc(each(query, choices), choices, label(row.label, 'label', choices.length, where, format))
    }
    case 'piqa': {
      const choices = [str(row, 'sol1', where, format), str(row, 'sol2', where, format)]
      return doc(each(`Question: ${str(row, 'goal', where, format)}\nAnswer:`, choices), choices, label(row.label, 'label', 2, where, format))
    }
    case 'winogrande': {
      const sentence = str(row, 'sentence', where, format)
      const idx = sentence.indexOf('_')
      if (idx < 0) fail(where, 'the winogrande sentence has no "_"', 'a blank "_" where the option goes', show(sentence, 40))
      const contexts = [str(row, 'option1', where, format), str(row, 'option2', where, format)].map((o) => sentence.slice(0, idx) + o)
      const cont = ' ' + pyStrip(sentence.slice(idx + 1))
      const answer = row.answer
      if (answer !== '1' && answer !== '2' && answer !== 1 && answer !== 2) fail(where, 'bad "answer"', '"1" or "2"', show(answer, 40))
      return doc(contexts.map((context) => ({ context, continuation: cont })), contexts, Number(answer) - 1)
    }
    case 'arc': {
      const q = str(row, 'question', where, format)
      const c = row.choices
      if (typeof c !== 'object' || c === null || Array.isArray(c)) fail(where, 'field "choices" is not an object', `{"text": [...], "label": [...]} (${EXAMPLES.arc})`, show(c, 40))
      const cc = c as Record<string, unknown>
      const texts = strArray(row, 'choices.text', where, format, cc.text)
      const labels = strArray(row, 'choices.label', where, format, cc.label)
      if (labels.length !== texts.length) fail(where, 'choices.text and choices.label differ in length', String(texts.length), String(labels.length))
      const key = str(row, 'answerKey', where, format)
      const gold = labels.indexOf(key)
      if (gold < 0) fail(where, '"answerKey" is not one of choices.label', show(labels.join(', '), 40), show(key))
      return doc(each(`Question: ${q}\nAnswer:`, texts), texts, gold)
    }
    case 'generic': {
      const choices = strArray(row, 'choices', where, format)
      return doc(each(str(row, 'context', where, format), choices), choices, label(row.gold, 'gold', choices.length, where, format))
    }
  }
}

/** The text of a perplexity / lambada row: "text", or "page" (wikitext_document_level). */
function textField(row: Record<string, unknown>, where: string, kind: string): string {
  const v = 'text' in row ? row.text : row.page
  if (typeof v !== 'string')
    fail(where, v === undefined ? 'missing field "text"' : 'field "text" is not a string', `a ${kind} row such as {"text": "..."}${kind === 'perplexity' ? ' (or {"page": "..."})' : ''}`, v === undefined ? `fields ${show(Object.keys(row).join(', '), 60)}` : show(v, 40))
  return v
}

/**
 * A task's data file (its contents) -> items. Perplexity: a file whose name ends in .jsonl is JSON lines,
 * anything else is one plain-text document. Lambada and choice: JSON lines. Blank lines are skipped;
 * `index` counts items. Errors name FILE:LINE.
 */
export function parseEvalData(content: string, file: string, task: EvalTask): EvalDoc[] {
  if (task.kind === 'perplexity' && !/\.jsonl$/i.test(file)) {
    if (content.length === 0) fail(file, 'empty document', 'some text to score', 'an empty file')
    return [{ index: 0, text: content }]
  }
  const docs: EvalDoc[] = []
  const lines = content.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i].replace(/\r$/, '')
    if (text.trim() === '') continue
    const where = `${file}:${i + 1}`
    let v: unknown
    try {
      v = JSON.parse(text)
    } catch (e) {
      fail(where, 'invalid JSON', 'one JSON object per line', show(String((e as Error).message).replace(/\s+/g, ' '), 80))
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, 'the line is not a JSON object', 'one JSON object per line', v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`)
    const row = v as Record<string, unknown>
    const index = docs.length, line = i + 1
    if (task.kind === 'choice') docs.push(parseChoiceRow(row, task.format, where, index, line))
    else {
      const t = textField(row, where, task.kind)
      if (task.kind === 'lambada' && t.length === 0) fail(where, 'empty "text"', 'a passage whose last word is the target', '""')
      if (task.kind === 'perplexity' && t.length === 0) fail(where, 'empty "text"', 'a document to score', '""')
      docs.push({ index, line, text: t })
    }
  }
  if (docs.length === 0) fail(file, 'no items', 'one JSON object per line', 'no non-blank line')
  return docs
}
