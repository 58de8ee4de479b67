// The `refgpt` binary, run as a user runs it (the built dist), against the golden outputs.
import { readFileSync } from 'node:fs'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { loadGolden, modelDir, refgpt } from './helpers.js'


const test = suite('cli')
const gpt2 = loadGolden('gpt2-tiny').json
/** The golden tiny GPT-2 (the default model is a trained one now: test/default-models.test.ts). */
const TINY = ['--model', modelDir('gpt2-tiny')]

test('generate --json equals transformers greedy ids', () => {
  const r = refgpt(['generate', ...TINY, "Hello, I'm a language model", '--max-new-tokens', '20', '--json'])
  assert.is(r.code, 0, r.stderr)
  const lines = r.stdout.trim().split('\n')
  assert.is(lines.length, 1, 'one JSON object and nothing else on stdout')
  const out = JSON.parse(lines[0])
  assert.equal(out.sequences[0].ids, gpt2.greedy.p1.sequence)
  assert.type(out.sequences[0].text, 'string')
  assert.ok(out.timings.decode_ms >= 0 && out.timings.new_tokens === 20)
})

test('generate streams the same text it reports in --json', () => {
  const args = ['generate', ...TINY, "Hello, I'm a language model", '-n', '20']
  const plain = refgpt(args)
  const json = JSON.parse(refgpt([...args, '--json']).stdout)
  assert.is(plain.code, 0, plain.stderr)
  assert.is(plain.stdout, json.sequences[0].text + '\n')
  assert.ok(plain.stdout.startsWith("Hello, I'm a language model"))
})

test('generate --prompt-ids on a model without a tokenizer prints ids', () => {
  const g = loadGolden('gpt-neo-odd').json
  const r = refgpt(['generate', '--model', modelDir('gpt-neo-odd'), '--prompt-ids', g.prompts.p1.ids.join(','), '-n', '20'])
  assert.is(r.code, 0, r.stderr)
  assert.equal(r.stdout.trim().split(' ').map(Number), g.greedy.p1.sequence)
})

test('generate stops at eos like generate(): gpt-neo-odd p0', () => {
  const g = loadGolden('gpt-neo-odd').json
  const r = refgpt(['generate', '--model', modelDir('gpt-neo-odd'), '--prompt-ids', g.prompts.p0.ids.join(','), '-n', '20', '--json'])
  assert.is(r.code, 0, r.stderr)
  assert.equal(JSON.parse(r.stdout).sequences[0].ids, g.greedy.p0.sequence)
})

test('tokenize prints the ids of transformers GPT2Tokenizer', () => {
  const r = refgpt(['tokenize', "Hello, I'm a language model"])
  assert.is(r.code, 0, r.stderr)
  assert.is(r.stdout, gpt2.prompts.p1.ids.join(',') + '\n')
  const s = refgpt(['tokenize', '--stdin', '--json', '--model', modelDir('gpt-j-tiny')], gpt2.prompts.p2.decoded)
  assert.equal(JSON.parse(s.stdout).ids, gpt2.prompts.p2.ids)
})

test('inspect reports family, format, dtypes and a parameter count equal to the file', () => {
  for (const [name, family, format] of [
    ['gpt2-tiny', 'gpt2', 'safetensors'],
    ['gpt-neo-tiny', 'gpt_neo', 'safetensors'],
    ['gpt-j-tiny', 'gptj', 'safetensors'],
    ['gpt-neo-tiny/sharded', 'gpt_neo', 'safetensors-sharded'],
  ]) {
    const r = refgpt(['inspect', modelDir(name), '--json'])
    assert.is(r.code, 0, r.stderr)
    const info = JSON.parse(r.stdout)
    assert.is(info.family, family)
    assert.is(info.format, format)
    // independent count: the element counts in the safetensors header(s) (tied lm_head is not stored)
    const files: string[] = info.files
    let elements = 0
    for (const f of files) {
      const buf = readFileSync(f)
      const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString('utf8'))
      for (const [k, t] of Object.entries<any>(header)) if (k !== '__metadata__') elements += t.shape.reduce((a: number, b: number) => a * b, 1)
    }
    assert.is(info.parameters, elements, `${name} parameters`)
    assert.equal(Object.keys(info.checkpointDtypes), ['F32'])
    assert.ok(info.memory.total > info.weightBytes)
  }
  const text = refgpt(['inspect', modelDir('gpt-neo-tiny')]).stdout
  assert.match(text, /family\s+gpt_neo/)
  assert.match(text, /global, local\(8\), global, local\(8\); unscaled/)
})

test('--help for every command', () => {
  for (const cmd of ['generate', 'tokenize', 'inspect']) {
    const r = refgpt([cmd, '--help'])
    assert.is(r.code, 0)
    assert.match(r.stdout, new RegExp(`^Usage: refgpt ${cmd}`))
  }
  const top = refgpt(['--help'])
  assert.is(top.code, 0)
  assert.match(top.stdout, /generate/)
})

test('usage errors: one line, exit 2', () => {
  for (const args of [['frobnicate'], ['generate', '--max-new-tokens', 'x'], ['generate', '--nope'], ['generate', '--device', 'tpu'], ['tokenize']]) {
    const r = refgpt(args)
    assert.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.match(r.stderr, /^refgpt: error: /)
  }
})

test.run()

const gen = suite('cli generate options')
gen('--num-beams with --json gives transformers beam sequences and scores', () => {
  const want = gpt2.beam['p1.num_beams3.return3']
  const r = refgpt(['generate', ...TINY, '--prompt-ids', gpt2.prompts.p1.ids.join(','), '--num-beams', '3', '--num-return-sequences', '3', '-n', '12', '--early-stopping', 'true', '--json'])
  assert.is(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout)
  assert.equal(out.sequences.map((s: any) => s.ids), want.sequences)
  out.sequences.forEach((s: any, i: number) => assert.ok(Math.abs(s.score - want.sequences_scores[i]) < 1e-4))
})
gen('repeated --prompt-ids run as one left-padded batch equal to transformers', () => {
  const b = gpt2.batched
  const args = ['generate', ...TINY, '-n', '10', '--json', ...b.rows.flatMap((p: string) => ['--prompt-ids', gpt2.prompts[p].ids.join(',')])]
  const r = refgpt(args)
  assert.is(r.code, 0, r.stderr)
  // --json ids are prompt + new ids: transformers' rows without their left padding
  const lengths: number[] = b.rows.map((p: string) => gpt2.prompts[p].ids.length)
  const padded = Math.max(...lengths)
  assert.equal(JSON.parse(r.stdout).sequences.map((s: any) => s.ids), b.greedy.sequences.map((row: number[], i: number) => row.slice(padded - lengths[i])))
})
gen('--do-sample with --seed is reproducible and reports the seed; without --seed a seed is reported', () => {
  const args = ['generate', ...TINY, 'Hello', '--do-sample', '--top-k', '20', '--temperature', '0.8', '-n', '12', '--json']
  const a = JSON.parse(refgpt([...args, '--seed', '5']).stdout), b = JSON.parse(refgpt([...args, '--seed', '5']).stdout)
  assert.equal(a.sequences, b.sequences)
  assert.is(a.seed, 5)
  assert.type(JSON.parse(refgpt(args).stdout).seed, 'number')
})
gen.run()
