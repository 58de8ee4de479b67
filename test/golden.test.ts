// Golden files (refgpt golden export / verify): export on js, verify on wasm through the built CLI;
// corrupted, truncated and random files; --tensors; the exported tensors against transformers' goldens.
// Needs the built CLI: `node scripts/build.mjs` first.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { CheckpointError, exportGolden, loadModel, loadTokenizer, readGolden, verifyGolden, type Golden } from '@refgpt/core'
import { goldenTensor, packGolden, tensorFilter } from '../packages/core/src/trace/golden.js'
import { assertClose, loadGolden, modelDir, refgpt, TOL } from './helpers.js'

const test = suite('golden files')
let dir: string
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'refgpt-golden-'))
})
test.after(() => rmSync(dir, { recursive: true, force: true }))

const repack = (g: Golden) => packGolden(g)

for (const name of ['gpt2-tiny', 'gpt-j-tiny']) {
  test(`${name}: export on js, verify on wasm through the CLI`, () => {
    const file = join(dir, `${name}.golden`)
    const ex = refgpt(['golden', 'export', '--model', modelDir(name), '--device', 'js', 'Hello, I am a golden test.', '--out', file])
    assert.is(ex.code, 0, ex.stderr)
    assert.match(ex.stdout, /wrote .* tensors/)
    const g = readGolden(readFileSync(file), file)
    assert.is(g.format, 'refgpt-golden')
    assert.is(g.version, 1)
    assert.is(g.device, 'js')
    assert.ok(g.tokenizer && g.tokenizer.pieces.length === g.prompt.ids.length)
    assert.is(g.prompt.text, 'Hello, I am a golden test.')
    const T = g.prompt.ids.length
    const C = (g.config.n_embd ?? g.config.hidden_size) as number
    assert.equal(g.tensors.embed.shape, [T, C])
    assert.ok('h.1.attn.probs' in g.tensors && 'logits' in g.tensors)
    assert.equal(g.tensors['h.0.attn.probs'].shape.slice(1), [T, T])

    const ve = refgpt(['golden', 'verify', file, '--model', modelDir(name), '--device', 'wasm'])
    assert.is(ve.code, 0, ve.stdout + ve.stderr)
    assert.match(ve.stdout, /on wasm/)
    assert.match(ve.stdout, /^logits\s+\[\d+, \d+\].*PASS$/m)
    assert.match(ve.stdout, /PASS: all \d+ tensors within tolerance/)
    assert.not.match(ve.stdout, /FAIL/)
  })

  test(`${name}: an altered tensor makes verify exit 1 and name it`, () => {
    const file = join(dir, `${name}.golden`)
    const g = readGolden(readFileSync(file), file)
    const t = g.tensors['h.1.mlp.out']
    const x = goldenTensor(t)
    x[3] += 0.01
    t.data = new Uint8Array(x.buffer)
    const bad = join(dir, `${name}.altered.golden`)
    writeFileSync(bad, repack(g))
    const r = refgpt(['golden', 'verify', bad, '--model', modelDir(name), '--device', 'wasm'])
    assert.is(r.code, 1, r.stdout + r.stderr)
    assert.match(r.stdout, /^h\.1\.mlp\.out\s.*FAIL$/m)
    assert.match(r.stdout, /^h\.1\.mlp\.out\s+\[\d+, \d+\]\s+1\.00e-2/m)
    assert.match(r.stdout, /^h\.1\.out\s.*PASS$/m)
    assert.match(r.stderr, /^refgpt: error: .*1 of \d+ tensors differ beyond tolerance: h\.1\.mlp\.out\n$/)
    // a looser tolerance accepts it
    assert.is(refgpt(['golden', 'verify', bad, '--model', modelDir(name), '--atol', '0.02', '--rtol', '0.02']).code, 0)
  })
}

test('truncated, random, empty and missing files: one-line errors, non-zero exit', () => {
  const good = readFileSync(join(dir, 'gpt2-tiny.golden'))
  const cases: [string, Uint8Array][] = [
    ['truncated', good.subarray(0, Math.floor(good.length / 2))],
    ['truncated-header', good.subarray(0, 40)],
    ['random', randomBytes(4096)],
    ['empty', new Uint8Array(0)],
    ['json', Buffer.from('{"format": "refgpt-golden"}')],
  ]
  for (const [label, bytes] of cases) {
    const file = join(dir, `${label}.golden`)
    writeFileSync(file, bytes)
    const r = refgpt(['golden', 'verify', file, '--model', modelDir('gpt2-tiny')])
    assert.ok(r.code !== 0 && r.code !== null, `${label}: exit ${r.code}`)
    assert.match(r.stderr, /^refgpt: error: .+\n$/, `${label}: ${r.stderr}`)
    assert.ok(r.stderr.includes(file), `${label} names the file: ${r.stderr}`)
    assert.not.match(r.stderr, /\n\s+at /, `${label}: no stack trace`)
  }
  const missing = refgpt(['golden', 'verify', join(dir, 'nope.golden')])
  assert.is(missing.code, 1)
  assert.match(missing.stderr, /golden file does not exist/)
  // the model folder a file names is never opened on its own: --model is required, the error shows it
  const named = refgpt(['golden', 'verify', join(dir, 'gpt2-tiny.golden')])
  assert.is(named.code, 2, named.stderr)
  assert.match(named.stderr, /^refgpt: error: refgpt golden verify: missing --model \(found the file was made from ".*gpt2-tiny"\); hint: pass --model /)
  const asDir = refgpt(['golden', 'verify', dir, '--model', modelDir('gpt2-tiny')])
  assert.is(asDir.code, 1)
  assert.match(asDir.stderr, /golden file is not a regular file \(found a directory\)/)
})

test('readGolden validates fields, dtype, shape and data length', () => {
  const file = join(dir, 'gpt2-tiny.golden')
  const fresh = () => readGolden(readFileSync(file), file)
  const expectError = (mutate: (g: any) => void, re: RegExp) => {
    const g: any = fresh()
    mutate(g)
    try {
      readGolden(repack(g), 'x.golden')
      assert.unreachable('no error')
    } catch (e) {
      assert.instance(e, CheckpointError)
      assert.match((e as Error).message, /^x\.golden: /)
      assert.match((e as Error).message, re)
      assert.not.match((e as Error).message, /\n/)
    }
  }
  expectError((g) => (g.format = 'other'), /format/)
  expectError((g) => (g.version = 2), /version/)
  expectError((g) => delete g.config, /config/)
  expectError((g) => delete g.prompt, /prompt/)
  expectError((g) => (g.prompt.ids = [1, -2]), /prompt\.ids/)
  expectError((g) => (g.tensors.embed.dtype = 'f16'), /tensor "embed": unsupported dtype/)
  expectError((g) => (g.tensors.embed.shape = [1e9, 1e9]), /tensor "embed": data length does not match/)
  expectError((g) => (g.tensors.ln_f.data = g.tensors.ln_f.data.subarray(4)), /tensor "ln_f": data length/)
  expectError((g) => (g.tensors.ln_f.shape = [-1]), /tensor "ln_f": bad shape/)
  expectError((g) => (g.tensors = {}), /tensors/)
  // from the fuzzer's reproducers: prompt.ids nested 3,500 (and 100,000) deep used to overflow the
  // error formatter; 200,000 empty tensors used to overflow the verify table's Math.max(...rows)
  // msgpackr's packer recurses too, so the nesting is spliced into the bytes by hand: 0x91 = a 1-element array
  const nested = (depth: number): Uint8Array => {
    const g: any = fresh()
    g.prompt.ids = 'IDS-PLACEHOLDER'
    const bytes = Buffer.from(repack(g))
    const mark = Buffer.from([0xaf, ...Buffer.from('IDS-PLACEHOLDER')]) // fixstr of 15 bytes
    const at = bytes.indexOf(mark)
    assert.ok(at > 0)
    return Buffer.concat([bytes.subarray(0, at), Buffer.alloc(depth, 0x91), Buffer.from([0x01]), bytes.subarray(at + mark.length)])
  }
  assert.throws(() => readGolden(nested(3500), 'x.golden'), (e: Error) => e instanceof CheckpointError && /^x\.golden: field "prompt\.ids" .*found \[\[\[/.test(e.message))
  assert.throws(() => readGolden(nested(100_000), 'x.golden'), (e: Error) => e instanceof CheckpointError && /^x\.golden: (field "prompt\.ids"|not a readable MessagePack)/.test(e.message))
  // 100,000 nested one-element arrays, written by hand (msgpackr's own packer recurses)
  const deep = Buffer.concat([Buffer.alloc(100_000, 0x91), Buffer.from([0x01])])
  assert.throws(() => readGolden(deep, 'deep.golden'), (e: Error) => e instanceof CheckpointError && /^deep\.golden: (not a readable MessagePack|not a refgpt golden file)/.test(e.message))
  expectError((g) => {
    const empty = { dtype: 'f32', shape: [0], data: new Uint8Array(0) }
    g.tensors = {}
    for (let i = 0; i < 200_000; i++) g.tensors[`t${i}`] = empty
  }, /too many tensors \(expected at most 65536, found 200000\)/)
})

test('--tensors keeps only the matching tensors; atomic write', () => {
  const file = join(dir, 'layer0.golden')
  const r = refgpt(['golden', 'export', '--model', modelDir('gpt2-tiny'), '--prompt-ids', '1,2,3,4', '--out', file, '--tensors', 'h.0.*'])
  assert.is(r.code, 0, r.stderr)
  const g = readGolden(readFileSync(file), file)
  const names = Object.keys(g.tensors)
  assert.ok(names.length === 10 && names.includes('h.0.ln_2') && names.includes('h.0.attn.probs'), names.join(' '))
  assert.ok(names.every((n) => n.startsWith('h.0.')), names.join(' '))
  assert.is(g.prompt.text, undefined)
  assert.equal(g.prompt.ids, [1, 2, 3, 4])
  // regexes and alternatives
  const f = tensorFilter('/^h\\.1\\.attn\\./')
  assert.ok(f('h.1.attn.q') && !f('h.11.attn.q') && !f('h.1.ln_1'))
  const alt = tensorFilter('embed,ln_f,*.probs')
  assert.ok(alt('embed') && alt('ln_f') && alt('h.3.attn.probs') && !alt('logits') && !alt('h.0.embed_x'))
  // a failing export (nothing matches) leaves no file behind, not even a temp file
  const none = join(dir, 'none.golden')
  const before = readdirSync(dir).length
  const bad = refgpt(['golden', 'export', '--model', modelDir('gpt2-tiny'), '--prompt-ids', '1,2', '--out', none, '--tensors', 'nothing.*'])
  assert.is(bad.code, 2, bad.stderr)
  assert.match(bad.stderr, /no tensor matches/)
  assert.not.ok(existsSync(none))
  assert.is(readdirSync(dir).length, before)
})

test('exported logits equal session.logits(); embed/ln_f equal transformers hidden states (gpt2-tiny, p2)', async () => {
  const golden = loadGolden('gpt2-tiny')
  const ids: number[] = golden.json.prompts.p2.ids
  const model = await loadModel(modelDir('gpt2-tiny'), { device: 'js', maxBatchTokens: ids.length, maxContext: ids.length })
  let whole: Golden
  try {
    const g = readGolden(await exportGolden(model, ids, { tokenizer: loadTokenizer(modelDir('gpt2-tiny')) }), 'mem')
    whole = g
    assert.is(g.tokenizer!.pieces[1], 'Ġquick')
    const session = model.createSession()
    const logits = await session.logits(ids, 0)
    session.dispose()
    assert.equal(g.tensors.logits.shape, [ids.length, model.arch.nVocab])
    assertClose(goldenTensor(g.tensors.logits), logits, { atol: 0, rtol: 0 }, 'logits vs forward')
    const L = model.arch.nLayer
    assertClose(goldenTensor(g.tensors.embed), golden.tensor('hidden.p2.0'), TOL.hidden, 'embed vs hidden.p2.0')
    assertClose(goldenTensor(g.tensors.ln_f), golden.tensor(`hidden.p2.${L}`), TOL.hidden, `ln_f vs hidden.p2.${L}`)
    for (let l = 0; l < L; l++) assertClose(goldenTensor(g.tensors[`h.${l}.attn.probs`]), golden.tensor(`attn.p2.${l}`), TOL.probs, `attn ${l}`)
    // the API verify on the same model passes with zero error
    const rows = await verifyGolden(g, model)
    assert.ok(rows.length > 0 && rows.every((r) => r.pass && r.maxAbs === 0), JSON.stringify(rows.filter((r) => !r.pass)))
  } finally {
    await model.dispose()
  }
  // A model whose sessions would run the prompt in chunks (maxBatchTokens 8 < 23 ids): exportGolden now
  // makes its own session whose step holds every row, so the prompt is never chunked and the export is
  // the same one-step forward as above (same shapes, same values), not rows of chunks silently merged.
  const small = await loadModel(modelDir('gpt2-tiny'), { device: 'js', maxBatchTokens: 8 })
  try {
    const ss = small.createSession()
    assert.is(ss.maxBatchTokens, 8)
    ss.dispose()
    const g = readGolden(await exportGolden(small, ids), 'mem')
    assert.equal(Object.keys(g.tensors).sort(), Object.keys(whole!.tensors).sort())
    for (const [name, t] of Object.entries(whole!.tensors)) {
      assert.equal(g.tensors[name].shape, t.shape, `${name} shape`)
      assertClose(goldenTensor(g.tensors[name]), goldenTensor(t), { atol: 0, rtol: 0 }, `${name}: maxBatchTokens 8 vs ${ids.length}`)
    }
  } finally {
    await small.dispose()
  }
})

test('golden --help documents both subcommands', () => {
  for (const sub of ['export', 'verify']) {
    const r = refgpt(['golden', sub, '--help'])
    assert.is(r.code, 0)
    assert.match(r.stdout, /refgpt golden export/)
    assert.match(r.stdout, /refgpt golden verify/)
    assert.match(r.stdout, /--tensors PATTERN/)
  }
  const r = refgpt(['golden'])
  assert.is(r.code, 2)
  assert.match(r.stderr, /missing subcommand/)
})

test.run()
