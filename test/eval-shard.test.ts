// Evaluation beyond one process (issue 11, item 7): `refgpt eval --shard I/N --out FILE` and
// `refgpt eval merge FILE...` give bit for bit the numbers of one run (rolling and sliding perplexity,
// lambada, multiple choice on gpt-neo-tiny); the split of items over shards; the shard file's results
// survive JSON (NaN, ±Infinity); merge refuses missing, repeated, foreign and corrupt shards.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { decodeItems, encodeItems, itemWeight, parseShardSpec, readShardFile, shardItems, type ChoiceDoc, type ItemResult, type TextDoc } from '@refgpt/core'
import { bitwiseEqual, evalFiles, MODEL, numbers } from './eval-files.js'
import { refgpt } from './helpers.js'

const { tmp, at, lambadaFile, mcFile, docsFile, TASKS } = evalFiles('refgpt-eval-shard-')

function ok(args: string[]) {
  const r = refgpt(args)
  assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r
}

/** A usage error: exit 2, nothing on stdout, one line on stderr matching `re`. */
function refused(args: string[], re: RegExp) {
  const r = refgpt(args)
  const label = args.join(' ')
  assert.is(r.code, 2, `${label}: exit code ${r.code}, stderr ${r.stderr}`)
  assert.is(r.stdout, '', `${label}: nothing on stdout`)
  const lines = r.stderr.trim().split('\n')
  assert.is(lines.length, 1, `${label}: one line, got ${JSON.stringify(r.stderr)}`)
  assert.match(lines[0], /^refgpt: error: /)
  assert.match(lines[0], re, label)
}

// --- 1. the split ------------------------------------------------------------------------------------------

const split = suite('eval shards: the split of items, --shard I/N, per-item results through JSON')

const textDocs = (lengths: number[]): TextDoc[] => lengths.map((n, index) => ({ index, text: 'x'.repeat(n) }))

split('every item in exactly one shard, in index order; the same split every time; longest first to the least-loaded shard', () => {
  const docs = textDocs([5, 100, 3, 3, 50, 48, 1, 2, 7, 90, 10, 4])
  for (let n = 1; n <= 5; n++) {
    const shards = Array.from({ length: n }, (_, i) => shardItems(docs, i, n).map((d) => d.index))
    assert.equal(shards.flat().sort((a, b) => a - b), docs.map((d) => d.index), `n=${n}: a partition`)
    shards.forEach((s) => assert.equal(s, [...s].sort((a, b) => a - b), `n=${n}: index order`))
    assert.equal(Array.from({ length: n }, (_, i) => shardItems(docs, i, n).map((d) => d.index)), shards, `n=${n}: deterministic`)
  }
  // by hand, n = 2 (ties to shard 0): 100 -> 0, 90 -> 1, 50 -> 1, 48 -> 0, 10 -> 1, 7 -> 0, 5 -> 1, 4 -> 0,
  // 3 -> 1, 3 -> 1, 2 -> 0, 1 -> 0: loads 162 / 161
  const two = [0, 1].map((i) => shardItems(docs, i, 2))
  assert.equal(two.map((s) => s.reduce((a, d) => a + d.text.length, 0)), [162, 161])
  assert.equal(two[0].map((d) => d.index), [1, 5, 6, 7, 8, 11])
  // more shards than items: the last ones are empty
  assert.equal(shardItems(textDocs([1, 2]), 2, 3), [])
  // the weight: a document's characters; a question's context once (the scorer runs it once) and its continuations
  assert.is(itemWeight(docs[1]), 100)
  const q: ChoiceDoc = { index: 0, requests: [{ context: 'abcd', continuation: ' x' }, { context: 'abcd', continuation: ' yy' }], choices: ['x', 'yy'], gold: 0 }
  assert.is(itemWeight(q), 4 + 2 + 3)
})

split('--shard I/N: 0-based, N >= 1, 0 <= I < N', () => {
  assert.equal(parseShardSpec('0/3', 'x'), { index: 0, count: 3 })
  assert.equal(parseShardSpec(' 2 / 3 ', 'x'), { index: 2, count: 3 })
  assert.equal(parseShardSpec('0/1', 'x'), { index: 0, count: 1 })
  for (const bad of ['3/3', '1/0', '0/0', '-1/3', '1', 'a/b', '1/3/4', '1.5/3', ''])
    assert.throws(() => parseShardSpec(bad, 'refgpt eval'), /bad --shard \(expected I\/N with N >= 1 and 0 <= I < N/, bad)
})

split('per-item results through JSON: NaN and ±Infinity survive, fields are checked', () => {
  const items: ItemResult[] = [
    { kind: 'lambada', index: 3, loglikelihood: -Infinity, isGreedy: false, contextTokens: 4, targetIds: [7], tokenLogprobs: [-Infinity], greedy: [false], truncated: 0 },
    { kind: 'lambada', index: 1, loglikelihood: NaN, isGreedy: true, contextTokens: 2, targetIds: [8, 9], tokenLogprobs: [NaN, -0.5], greedy: [true, true], truncated: 1 },
  ]
  const json = JSON.parse(JSON.stringify(encodeItems(items)))
  assert.equal(decodeItems(json, { kind: 'lambada', name: 'lambada' }, 4, 'f.json'), items)
  const task = { kind: 'lambada', name: 'lambada' } as const
  assert.throws(() => decodeItems(json, task, 3, 'f.json'), /f\.json: task lambada, result 0: bad item index \(expected an integer 0 \.\. 2, found 3\)/)
  assert.throws(() => decodeItems([{ ...json[0], targetIds: ['7'] }], task, 4, 'f.json'), /result 0: bad field "targetIds"/)
  assert.throws(() => decodeItems([{ ...json[0], isGreedy: undefined }], task, 4, 'f.json'), /result 0: missing field "isGreedy"/)
  assert.throws(() => decodeItems(json, { kind: 'choice', name: 'piqa', format: 'piqa' }, 4, 'f.json'), /a result of another task kind \(expected choice, found "lambada"\)/)
})

split.run()

// --- 2. shards + merge through the CLI -----------------------------------------------------------------

const cli = suite('eval shards: refgpt eval --shard I/N --out FILE, refgpt eval merge: the numbers of one run, bit for bit')

const single = JSON.parse(ok([...TASKS, '--json', '--log-samples', at('single.jsonl')]).stdout)
const shardFiles = [0, 1, 2].map((i) => at(`shard${i}.json`))

cli('3 shards of perplexity (rolling, 7 documents), lambada and choice, merged: every metric, stderr and total === one run\'s', () => {
  shardFiles.forEach((f, i) => {
    const r = ok([...TASKS, '--shard', `${i}/3`, '--out', f, '--log-samples', at(`shard${i}.jsonl`)])
    assert.match(r.stdout, new RegExp(`^shard ${i}/3: lambada \\d+ of 20 items, choice \\d+ of 15 items, text \\d+ of 7 items in [\\d.]+ s -> .*shard${i}\\.json\\n$`))
  })
  // each file holds its shard's items, together every item once
  const files = shardFiles.map(readShardFile)
  for (const [ti, name, n] of [[0, 'lambada', 20], [1, 'choice', 15], [2, 'text', 7]] as const) {
    const idx = files.map((f) => f.results[ti].items.map((x) => x.index))
    assert.equal(idx.flat().sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i), `${name}: a partition`)
    assert.ok(idx.every((s) => s.length > 0), `${name}: every shard has items: ${JSON.stringify(idx)}`)
    assert.is(files[0].config.tasks[ti].items, n)
  }
  assert.equal(files.map((f) => f.shard), [{ index: 0, count: 3 }, { index: 1, count: 3 }, { index: 2, count: 3 }])
  assert.is(files[0].config.model.device, 'wasm')
  assert.equal([files[0].config.maxLength, files[0].config.prefixToken, files[0].config.bootstrapIters], [128, 50256, 100000])

  const merged = JSON.parse(ok(['eval', 'merge', ...shardFiles, '--json']).stdout)
  bitwiseEqual(numbers(merged), numbers(single), 'merged')
  assert.is(merged.shards, 3)
  assert.equal([merged.max_length, merged.prefix_token, merged.bootstrap_iters, merged.limit, merged.device], [128, 50256, 100000, null, 'wasm'])
  assert.is(merged.speed.input_tokens, single.speed.input_tokens, 'every token counted once')
  // in any order
  bitwiseEqual(numbers(JSON.parse(ok(['eval', 'merge', shardFiles[2], shardFiles[0], shardFiles[1], '--json']).stdout)), numbers(single), 'merged 2, 0, 1')
  // the shards' --log-samples together are the single run's
  const rows = (f: string) => readFileSync(f, 'utf8').trim().split('\n')
  const key = (l: string) => { const j = JSON.parse(l); return ['lambada', 'choice', 'text'].indexOf(j.task) * 1000 + j.index }
  const sharded = [0, 1, 2].flatMap((i) => rows(at(`shard${i}.jsonl`))).sort((a, b) => key(a) - key(b))
  assert.equal(sharded, rows(at('single.jsonl')))
  // the table: the same rows as one run's
  const table = (s: string) => s.split('\n').filter((l) => l.startsWith('|'))
  const t = ok(['eval', 'merge', ...shardFiles])
  assert.equal(table(t.stdout), table(ok(TASKS).stdout))
  assert.match(t.stdout, /\nwasm, 3 shards, max length 128: 42 items in [\d.]+ s/)
})

cli('one shard (--shard 0/1) and sliding perplexity over 2 shards: the numbers of one run', () => {
  ok([...TASKS, '--shard', '0/1', '--out', at('one.json')])
  bitwiseEqual(numbers(JSON.parse(ok(['eval', 'merge', at('one.json'), '--json']).stdout)), numbers(single), 'one shard')
  const sliding = ['eval', 'perplexity', '--model', MODEL, '--data', docsFile, '--stride', '32', '--max-length', '64', '--no-progress']
  const one = JSON.parse(ok([...sliding, '--json']).stdout)
  ok([...sliding, '--shard', '0/2', '--out', at('sl0.json')])
  ok([...sliding, '--shard', '1/2', '--out', at('sl1.json')])
  const merged = JSON.parse(ok(['eval', 'merge', at('sl0.json'), at('sl1.json'), '--json']).stdout)
  bitwiseEqual(numbers(merged), numbers(one), 'sliding')
  assert.equal([merged.tasks.perplexity.mode, merged.tasks.perplexity.stride, merged.max_length], ['sliding', 32, 64])
})

cli('merge refuses a missing shard, a shard twice, other options / data / model / split, corrupt files; errors name the file', () => {
  const [s0, s1, s2] = shardFiles
  refused(['eval', 'merge', s0, s2], /refgpt eval merge: shard 1\/3 missing \(expected all 3 shards, found 0\/3 .*shard0\.json, 2\/3 .*shard2\.json\)/)
  refused(['eval', 'merge', s0, s1, s2, s1], /shard1\.json: given twice/)
  const copy = at('copy-of-1.json')
  writeFileSync(copy, readFileSync(s1))
  refused(['eval', 'merge', s0, s1, copy, s2], /copy-of-1\.json: shard 1\/3 given twice \(also .*shard1\.json\)/)
  // other options: --max-length 64
  ok([...TASKS, '--max-length', '64', '--shard', '1/3', '--out', at('len64.json')])
  refused(['eval', 'merge', s0, at('len64.json'), s2], /len64\.json: not a shard of the same run as .*shard0\.json: config\.maxLength differs \(expected 128, found 64\)/)
  // other data: one lambada line changed
  const lines = readFileSync(lambadaFile, 'utf8').split('\n')
  const other = at('lambada2.jsonl')
  writeFileSync(other, [JSON.stringify({ text: 'A different passage ends here' }), ...lines.slice(1)].join('\n'))
  ok(['eval', '--model', MODEL, '--tasks', `lambada=${other},choice=${mcFile},text=${docsFile}`, '--no-progress', '--shard', '1/3', '--out', at('data2.json')])
  refused(['eval', 'merge', s0, at('data2.json'), s2], /data2\.json: not a shard of the same run as .*: config\.tasks\[0\]\.dataSha256 differs/)
  // another split, another model (its fingerprint), another device
  ok([...TASKS, '--shard', '1/2', '--out', at('half.json')])
  refused(['eval', 'merge', s0, at('half.json')], /half\.json: shard 1\/2 is not of the same split as .*shard0\.json \(expected a shard I\/3, found 1\/2\)/)
  const f1 = JSON.parse(readFileSync(s1, 'utf8'))
  const variant = (name: string, edit: (j: any) => void) => {
    const j = structuredClone(f1)
    edit(j)
    writeFileSync(at(name), JSON.stringify(j))
    return at(name)
  }
  refused(['eval', 'merge', s0, variant('model.json', (j) => (j.config.model.fingerprint = '0'.repeat(32))), s2], /model\.json: .*config\.model\.fingerprint differs/)
  refused(['eval', 'merge', s0, variant('device.json', (j) => (j.config.model.device = 'js')), s2], /device\.json: .*config\.model\.device differs \(expected "wasm", found "js"\)/)
  // the paths may differ (other machines): the same model and data elsewhere merge
  bitwiseEqual(numbers(JSON.parse(ok(['eval', 'merge', s0, variant('moved.json', (j) => { j.config.model.path = '/elsewhere/model'; j.config.tasks[0].file = '/elsewhere/l.jsonl' }), s2, '--json']).stdout)), numbers(single), 'moved paths')
  // an item in two shards, an item in none, corrupt results, not a shard file
  const i0 = JSON.parse(readFileSync(s0, 'utf8')).results[0].items[0]
  refused(['eval', 'merge', s0, variant('dup.json', (j) => j.results[0].items.push(i0)), s2], /dup\.json: item \d+ of task lambada is also in .*shard0\.json/)
  refused(['eval', 'merge', s0, variant('lost.json', (j) => j.results[0].items.pop()), s2], /refgpt eval merge: task lambada: 1 item\(s\) in no shard \(expected all 20 items, found none for item \d+\)/)
  refused(['eval', 'merge', s0, variant('bad.json', (j) => delete j.results[1].items[0].loglikelihoods), s2], /bad\.json: task choice, result 0: missing field "loglikelihoods"/)
  refused(['eval', 'merge', s0, variant('v2.json', (j) => (j.version = 2)), s2], /v2\.json: unsupported shard file version \(expected 1, found 2\)/)
  writeFileSync(at('half-written.json'), readFileSync(s1, 'utf8').slice(0, 100))
  refused(['eval', 'merge', s0, at('half-written.json'), s2], /half-written\.json: not a shard file: invalid JSON/)
  refused(['eval', 'merge', s0, at('single.jsonl')], /single\.jsonl: not a shard file: invalid JSON/)
  refused(['eval', 'merge', at('nothing.json')], /nothing\.json: shard file not found/)
  refused(['eval', 'merge'], /refgpt eval merge: no shard files/)
})

cli('--shard / --out options are checked before anything runs; a refused run writes no file', () => {
  const out = at('never.json')
  const lambada = ['eval', 'lambada', '--model', MODEL, '--data', lambadaFile]
  refused([...lambada, '--shard', '3/3', '--out', out], /refgpt eval: bad --shard \(expected I\/N with N >= 1 and 0 <= I < N \(0-based: 0\/3, 1\/3, 2\/3\), found "3\/3"\)/)
  refused([...lambada, '--shard', '0/0', '--out', out], /bad --shard/)
  refused([...lambada, '--shard', '1/3'], /--shard without --out/)
  refused([...lambada, '--out', out], /--out goes with --shard I\/N/)
  refused([...lambada, '--shard', '1/3', '--out', out, '--json'], /--json with --shard; hint: .*refgpt eval merge/)
  refused([...lambada, '--shard', '1/3', '--out', join(tmp, 'no', 'dir', 'x.json')], /--out: no such folder/)
  const badData = at('bad.jsonl')
  writeFileSync(badData, '{"text": "a b"}\n{"text": 3}\n')
  refused(['eval', 'lambada', '--model', MODEL, '--data', badData, '--shard', '0/2', '--out', out], /bad\.jsonl:2: field "text" is not a string/)
  assert.not.ok(existsSync(out), 'no shard file from a refused run')
  assert.equal(readdirSync(tmp).filter((f) => f.endsWith('.tmp')), [], 'no temporary files left')
})

cli.run()
