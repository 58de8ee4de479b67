// Bad model folders through the CLI, as a user meets them: each gives ONE line on stderr naming the
// file and the problem, a non-zero exit, no stack trace, and no allocation sized by a header value.
// The broken folders are made in a temp dir from the fixtures; nothing broken is committed.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { modelDir, readSafetensors, refgpt, writeSafetensors, zipStored } from './helpers.js'

const test = suite('bad input (CLI)')
let root: string
let n = 0
test.before(() => {
  root = mkdtempSync(join(tmpdir(), 'refgpt-bad-'))
})
test.after(() => rmSync(root, { recursive: true, force: true }))

/** A copy of gpt2-tiny (config.json, model.safetensors, tokenizer), then `edit` breaks it. */
function brokenGpt2(edit: (dir: string) => void): string {
  const dir = join(root, `m${n++}`)
  mkdirSync(dir)
  for (const f of ['config.json', 'model.safetensors', 'vocab.json', 'merges.txt']) copyFileSync(join(modelDir('gpt2-tiny'), f), join(dir, f))
  edit(dir)
  return dir
}

function editConfig(dir: string, patch: Record<string, unknown>) {
  const file = join(dir, 'config.json')
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...patch }))
}

function editSafetensors(dir: string, edit: (header: Record<string, any>) => void, headerLength?: bigint) {
  const file = join(dir, 'model.safetensors')
  const { header, data } = readSafetensors(file)
  edit(header)
  writeSafetensors(file, header, data, headerLength)
}

/** Runs `refgpt generate` and `refgpt inspect` on the folder; both must fail the same clear way. */
function expectError(dir: string, pattern: RegExp, file: string) {
  for (const args of [['generate', '--model', dir, 'Hello', '-n', '2'], ['inspect', dir]]) {
    const r = refgpt(args)
    assert.is.not(r.code, 0, `${args[0]} should fail`)
    assert.is(r.stdout, args[0] === 'generate' ? '' : r.stdout, 'nothing written before the error')
    const lines = r.stderr.trimEnd().split('\n')
    assert.is(lines.length, 1, `one line, got: ${r.stderr}`)
    assert.match(lines[0], /^refgpt: error: /)
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace')
    assert.ok(lines[0].includes(file), `names ${file}: ${lines[0]}`)
    assert.match(lines[0], pattern)
  }
}

test('missing folder', () => {
  const dir = join(root, 'does-not-exist')
  expectError(dir, /not found/i, dir)
})

test('missing config.json', () => {
  const dir = brokenGpt2((d) => rmSync(join(d, 'config.json')))
  expectError(dir, /config/i, 'config.json')
})

test('missing weights file', () => {
  const dir = brokenGpt2((d) => rmSync(join(d, 'model.safetensors')))
  expectError(dir, /model\.safetensors/, dir)
})

test('truncated safetensors (inside the data)', () => {
  const dir = brokenGpt2((d) => truncateSync(join(d, 'model.safetensors'), 4_000_000))
  expectError(dir, /truncat|past the end|end of (the )?file|beyond|exceed/i, 'model.safetensors')
})

test('truncated safetensors (inside the header)', () => {
  const dir = brokenGpt2((d) => truncateSync(join(d, 'model.safetensors'), 100))
  expectError(dir, /truncat|header|exceed|larger/i, 'model.safetensors')
})

test('header length larger than the file (2^50) fails fast with no giant allocation', () => {
  const dir = brokenGpt2((d) => editSafetensors(d, () => {}, 2n ** 50n))
  const before = process.memoryUsage().rss
  expectError(dir, /header/i, 'model.safetensors')
  assert.ok(process.memoryUsage().rss - before < 200e6)
})

test('data offsets past the end of the file', () => {
  const dir = brokenGpt2((d) => editSafetensors(d, (h) => {
    const t = h['transformer.ln_f.bias']
    t.data_offsets = [t.data_offsets[0] + 1e9, t.data_offsets[1] + 1e9]
  }))
  expectError(dir, /transformer\.ln_f\.bias/, 'model.safetensors')
})

test('overlapping tensors', () => {
  const dir = brokenGpt2((d) => editSafetensors(d, (h) => {
    h['transformer.ln_f.bias'].data_offsets = [...h['transformer.ln_f.weight'].data_offsets]
  }))
  expectError(dir, /overlap/i, 'model.safetensors')
})

test('unknown dtype', () => {
  const dir = brokenGpt2((d) => editSafetensors(d, (h) => {
    h['transformer.ln_f.bias'].dtype = 'F8_E4M3'
  }))
  expectError(dir, /F8_E4M3/, 'model.safetensors')
})

test('a tensor whose shape disagrees with config.json', () => {
  const dir = brokenGpt2((d) => editConfig(d, { n_positions: 64 }))
  expectError(dir, /transformer\.wpe\.weight.*shape.*expected \[64,32\].*found \[128,32\]/, 'model.safetensors')
})

test('unknown model_type', () => {
  const dir = brokenGpt2((d) => editConfig(d, { model_type: 'llama' }))
  expectError(dir, /model_type.*gpt2, gpt_neo, gptj.*"llama"/, 'config.json')
})

test('a pytorch_model.bin whose pickle names os.system is refused, never run', () => {
  const dir = brokenGpt2((d) => rmSync(join(d, 'model.safetensors')))
  // PROTO 2, GLOBAL 'os system', BINUNICODE 'touch PWNED', TUPLE1, REDUCE, STOP
  const cmd = Buffer.from(`touch ${join(dir, 'PWNED')}`)
  const len = Buffer.alloc(4)
  len.writeUInt32LE(cmd.length)
  const pkl = Buffer.concat([Buffer.from([0x80, 2]), Buffer.from('cos\nsystem\n'), Buffer.from([0x58]), len, cmd, Buffer.from([0x85, 0x52, 0x2e])])
  writeFileSync(join(dir, 'pytorch_model.bin'), zipStored({ 'archive/data.pkl': pkl, 'archive/version': Buffer.from('3\n') }))
  expectError(dir, /os\.system/, 'pytorch_model.bin')
  assert.throws(() => readFileSync(join(dir, 'PWNED')))
})

test.run()
