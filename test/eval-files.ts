// The eval data files the shard and queue tests share: the golden LAMBADA and multiple-choice items and
// the paragraphs of the golden text (perplexity over several documents of different lengths), written as
// the jsonl files `refgpt eval --tasks` reads.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as assert from 'uvu/assert'
import { fixture, modelDir } from './helpers.js'

export const G = JSON.parse(readFileSync(fixture('eval/golden.json'), 'utf8'))
export const MODEL = modelDir('gpt-neo-tiny')

export function evalFiles(prefix: string) {
  const tmp = mkdtempSync(join(tmpdir(), prefix))
  const at = (f: string) => join(tmp, f)
  const lambadaFile = at('lambada.jsonl'), mcFile = at('mc.jsonl'), docsFile = at('docs.jsonl')
  writeFileSync(lambadaFile, G.lambada.items.map((it: any) => JSON.stringify({ text: it.context + it.target })).join('\n') + '\n')
  writeFileSync(mcFile, G.multiple_choice.items.map((it: any) => JSON.stringify({ context: it.context, choices: it.choices.map((c: any) => c.ending), gold: it.gold })).join('\n') + '\n')
  writeFileSync(docsFile, readFileSync(fixture('eval/text.txt'), 'utf8').split('\n\n').map((p) => JSON.stringify({ text: p })).join('\n') + '\n')
  const TASKS = ['eval', '--model', MODEL, '--tasks', `lambada=${lambadaFile},choice=${mcFile},text=${docsFile}`, '--no-progress']
  return { tmp, at, lambadaFile, mcFile, docsFile, TASKS }
}

/** The numbers of a --json run: per task n, every metric's value and stderr, the totals. */
export const numbers = (j: any) => Object.fromEntries(Object.entries(j.tasks).map(([name, t]: [string, any]) => [name, { n: t.n, metrics: t.metrics, totals: t.totals }]))

/** Every number equal with === (Object.is), not within a tolerance. */
export function bitwiseEqual(actual: any, expected: any, label: string) {
  assert.equal(Object.keys(actual), Object.keys(expected), `${label}: tasks`)
  for (const [task, e] of Object.entries<any>(expected)) {
    const a = actual[task]
    assert.is(a.n, e.n, `${label}: ${task} n`)
    assert.equal(Object.keys(a.metrics), Object.keys(e.metrics), `${label}: ${task} metrics`)
    for (const [m, v] of Object.entries<any>(e.metrics)) {
      assert.ok(Object.is(a.metrics[m].value, v.value), `${label}: ${task} ${m} ${a.metrics[m].value} !== ${v.value}`)
      assert.ok(Object.is(a.metrics[m].stderr, v.stderr), `${label}: ${task} ${m} stderr ${a.metrics[m].stderr} !== ${v.stderr}`)
    }
    assert.equal(a.totals, e.totals, `${label}: ${task} totals`)
  }
}
