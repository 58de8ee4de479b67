// Models by id (issue 14): the Hugging Face hub cache and ModelScope's cache layouts, built in temp folders
// from the fixtures; the family from config.json's model_type; the load progress callback.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import {
  ConfigError,
  UsageError,
  folderKind,
  huggingFaceCacheDirs,
  inspectModel,
  isModelId,
  isModelscopeGpt3Folder,
  loadModel,
  loadRandomModel,
  loadTokenizer,
  locateModel,
  resolveModelDir,
  type LoadOptions,
} from '@refgpt/core'
import { SYMLINK_ERROR, modelDir } from './helpers.js'

const root = mkdtempSync(join(tmpdir(), 'refgpt-hub-'))
let n = 0
const fresh = (name = 'd') => {
  const d = join(root, `${name}${n++}`)
  mkdirSync(d, { recursive: true })
  return d
}

// --- symlinks: the hub cache's snapshots are links into blobs/ (probed once in helpers.ts: SYMLINK_ERROR) ---
/** A test that needs symlinks: skipped (and said so) where they cannot be created. */
function linkTest(name: string, fn: () => Promise<void> | void) {
  if (SYMLINK_ERROR === null) test(name, fn)
  else {
    console.log(`  SKIP ${name}: ${SYMLINK_ERROR}`)
    test.skip(name, fn)
  }
}

// --- environment: every test runs with its own cache variables and an empty HOME (never the real caches) ---
const ENV = ['HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'XDG_CACHE_HOME', 'TRANSFORMERS_CACHE', 'MODELSCOPE_CACHE', 'HOME'] as const
type Env = Partial<Record<(typeof ENV)[number], string>>
async function withEnv<T>(env: Env, fn: () => Promise<T> | T): Promise<T> {
  const saved = ENV.map((k) => [k, process.env[k]] as const)
  for (const k of ENV) delete process.env[k]
  process.env.HOME = fresh('home')
  Object.assign(process.env, env)
  try {
    return await fn()
  } finally {
    for (const [k, v] of saved) if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
}

// --- cache builders ---------------------------------------------------------------------------------------
/** The files of a fixture a model folder needs (no goldens, no dtype variants; the .bin only without safetensors). */
function modelFiles(src: string): string[] {
  const all = readdirSync(src).filter((f) => statSync(join(src, f)).isFile())
  return all.filter((f) => !f.startsWith('golden') && !/^model\..+\.safetensors$/.test(f) && !(f === 'pytorch_model.bin' && all.includes('model.safetensors')))
}
const sha = (s: string) => createHash('sha1').update(s).digest('hex')
const COMMIT_A = sha('revision A')
const COMMIT_B = sha('revision B')

/**
 * A Hugging Face hub cache repository: blobs/<sha256> with the contents, snapshots/<commit>/<file> symlinks
 * into them (or copies, as huggingface_hub makes where symlinks are not allowed), refs/<name> = commit.
 */
function hfSnapshot(cache: string, id: string, commit: string, src: string, opts: { refs?: string[]; links?: boolean; extra?: Record<string, string> } = {}): string {
  const repo = join(cache, `models--${id.replace('/', '--')}`)
  const snap = join(repo, 'snapshots', commit)
  mkdirSync(snap, { recursive: true })
  mkdirSync(join(repo, 'blobs'), { recursive: true })
  const put = (name: string, data: Buffer) => {
    if (opts.links === false) return writeFileSync(join(snap, name), data)
    const blob = join(repo, 'blobs', createHash('sha256').update(data).digest('hex'))
    if (!existsSync(blob)) writeFileSync(blob, data)
    symlinkSync(relative(snap, blob), join(snap, name))
  }
  for (const f of modelFiles(src)) put(f, readFileSync(join(src, f)))
  for (const [f, text] of Object.entries(opts.extra ?? {})) put(f, Buffer.from(text))
  for (const r of opts.refs ?? []) {
    mkdirSync(dirname(join(repo, 'refs', r)), { recursive: true })
    writeFileSync(join(repo, 'refs', r), commit)
  }
  return snap
}

/** A plain copy of a fixture's model files into `dir` (ModelScope's layouts, local folders). */
function copyModel(src: string, dir: string, extra: Record<string, string> = {}): string {
  mkdirSync(dir, { recursive: true })
  for (const f of modelFiles(src)) copyFileSync(join(src, f), join(dir, f))
  for (const [f, text] of Object.entries(extra)) writeFileSync(join(dir, f), text)
  return dir
}

/** configuration.json as ModelScope puts beside every Hugging Face model it hosts (AI-ModelScope/gpt-j-6b). */
const MS_HF_CONFIGURATION = JSON.stringify({ framework: 'pytorch', task: 'text-generation', allow_remote: true })

// --- logits ------------------------------------------------------------------------------------------------
const IDS = [1, 2, 3, 4, 5]
async function logitsOf(idOrDir: string, opts: LoadOptions = {}): Promise<{ family: string; logits: Float32Array; dir: string }> {
  const m = await loadModel(idOrDir, { device: 'js', ...opts })
  try {
    const s = m.createSession()
    const l = Float32Array.from(await s.logits(IDS, 0))
    s.dispose()
    return { family: m.family, logits: l, dir: m.info.dir }
  } finally {
    await m.dispose()
  }
}
const direct = new Map<string, Float32Array>()
async function fixtureLogits(name: string): Promise<Float32Array> {
  if (!direct.has(name)) direct.set(name, (await logitsOf(modelDir(name))).logits)
  return direct.get(name)!
}

function throwsLike(fn: () => unknown, cls: Function, parts: (string | RegExp)[], label: string): string {
  try {
    fn()
  } catch (e) {
    assert.instance(e, cls, `${label}: ${(e as Error).message}`)
    const msg = (e as Error).message
    assert.not.ok(msg.includes('\n'), `${label}: one line`)
    for (const p of parts) assert.ok(typeof p === 'string' ? msg.includes(p) : p.test(msg), `${label}: ${msg} should have ${p}`)
    return msg
  }
  assert.unreachable(`${label}: should throw`)
  return ''
}

test.after(() => rmSync(root, { recursive: true, force: true }))

// --- the Hugging Face hub cache ------------------------------------------------------------------------------

linkTest('HF hub cache: refs/main -> snapshot of links into blobs/; the model, tokenizer and inspect by id equal the fixture folder', async () => {
  const cache = fresh('hf')
  const snap = hfSnapshot(cache, 'EleutherAI/gpt-neo-1.3B', COMMIT_A, modelDir('gpt-neo-tiny'), { refs: ['main'] })
  await withEnv({ HF_HUB_CACHE: cache }, async () => {
    assert.is(resolveModelDir('EleutherAI/gpt-neo-1.3B'), snap)
    assert.equal(locateModel('EleutherAI/gpt-neo-1.3B'), { dir: snap, kind: 'huggingface', id: 'EleutherAI/gpt-neo-1.3B' })
    const byId = await logitsOf('EleutherAI/gpt-neo-1.3B')
    assert.is(byId.family, 'gpt_neo')
    assert.is(byId.dir, snap)
    assert.equal(byId.logits, await fixtureLogits('gpt-neo-tiny'))
    const tok = loadTokenizer('EleutherAI/gpt-neo-1.3B')
    assert.equal(tok.encode('EleutherAI has a model'), loadTokenizer(modelDir('gpt-neo-tiny')).encode('EleutherAI has a model'))
    const info = inspectModel('EleutherAI/gpt-neo-1.3B')
    assert.is(info.family, 'gpt_neo')
    assert.is(info.dir, snap)
  })
})

linkTest('HF hub cache: a second branch, a commit hash given directly, a shortened hash refused with the full one named', async () => {
  const cache = fresh('hf')
  const id = 'EleutherAI/gpt-neo-1.3B'
  hfSnapshot(cache, id, COMMIT_A, modelDir('gpt-neo-tiny'), { refs: ['main'] })
  const snapB = hfSnapshot(cache, id, COMMIT_B, modelDir('gpt-neo-odd'), { refs: ['refs/pr/2'] })
  await withEnv({ HF_HUB_CACHE: cache }, async () => {
    const odd = await fixtureLogits('gpt-neo-odd')
    assert.equal((await logitsOf(id, { revision: 'refs/pr/2' })).logits, odd, 'a branch name with slashes: refs/refs/pr/2')
    assert.equal((await logitsOf(id, { revision: COMMIT_B })).logits, odd, 'a full commit hash: snapshots/<hash>')
    assert.equal((await logitsOf(id, { revision: 'main' })).logits, await fixtureLogits('gpt-neo-tiny'))
    assert.is(resolveModelDir(id, { revision: COMMIT_B }), snapB)
    throwsLike(() => resolveModelDir(id, { revision: COMMIT_B.slice(0, 7) }), ConfigError,
      ['model not found', `no ref ${COMMIT_B.slice(0, 7)}`, 'refs: "main", "refs"', `use the full one, "${COMMIT_B}"`, '--revision'], 'short hash')
    throwsLike(() => resolveModelDir(id, { revision: 'v9' }), ConfigError, ['(revision v9)', join(cache, 'models--EleutherAI--gpt-neo-1.3B', 'refs', 'v9')], 'unknown branch')
    throwsLike(() => resolveModelDir(id, { revision: sha('nowhere') }), ConfigError, [join('snapshots', sha('nowhere'))], 'unknown commit')
  })
})

linkTest("HF hub cache: a snapshot file linking outside the repository's blobs is still refused", async () => {
  const cache = fresh('hf')
  const snap = hfSnapshot(cache, 'org/evil', COMMIT_A, modelDir('gpt2-tiny'), { refs: ['main'] })
  const outside = fresh('outside')
  writeFileSync(join(outside, 'config.json'), readFileSync(join(modelDir('gpt2-tiny'), 'config.json')))
  unlinkSync(join(snap, 'config.json'))
  symlinkSync(join(outside, 'config.json'), join(snap, 'config.json'))
  await withEnv({ HF_HUB_CACHE: cache }, async () => {
    try {
      await loadModel('org/evil', { device: 'js' })
      assert.unreachable('a link out of the cache')
    } catch (e) {
      assert.instance(e, ConfigError)
      assert.match((e as Error).message, /link to a place outside the model folder/)
    }
  })
})

test('HF hub cache: a snapshot of plain files (no symlinks, as on Windows) loads the same', async () => {
  const cache = fresh('hf')
  hfSnapshot(cache, 'gpt2', COMMIT_A, modelDir('gpt2-tiny'), { refs: ['main'], links: false })
  await withEnv({ HF_HUB_CACHE: cache }, async () => {
    const r = await logitsOf('gpt2')
    assert.is(r.family, 'gpt2')
    assert.equal(r.logits, await fixtureLogits('gpt2-tiny'))
  })
})

test('HF hub cache: where it is — HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub, plus TRANSFORMERS_CACHE', async () => {
  const a = fresh('a'), b = fresh('b'), c = fresh('c'), x = fresh('x'), t = fresh('t')
  await withEnv({ HF_HUB_CACHE: a, HUGGINGFACE_HUB_CACHE: b, HF_HOME: c, XDG_CACHE_HOME: x }, () => assert.equal(huggingFaceCacheDirs(), [a]))
  await withEnv({ HUGGINGFACE_HUB_CACHE: b, HF_HOME: c, XDG_CACHE_HOME: x }, () => assert.equal(huggingFaceCacheDirs(), [b]))
  await withEnv({ HF_HOME: c, XDG_CACHE_HOME: x }, () => assert.equal(huggingFaceCacheDirs(), [join(c, 'hub')]))
  await withEnv({ XDG_CACHE_HOME: x }, () => assert.equal(huggingFaceCacheDirs(), [join(x, 'huggingface', 'hub')]))
  await withEnv({ TRANSFORMERS_CACHE: t }, () => assert.equal(huggingFaceCacheDirs(), [join(process.env.HOME!, '.cache', 'huggingface', 'hub'), t]))
  await withEnv({ HF_HOME: '$XDG_CACHE_HOME/hf', XDG_CACHE_HOME: x }, () => assert.equal(huggingFaceCacheDirs(), [join(x, 'hf', 'hub')], '$VAR expanded'))
  await withEnv({}, () => {
    process.env.HF_HUB_CACHE = '~/hubcache'
    assert.equal(huggingFaceCacheDirs(), [join(process.env.HOME!, 'hubcache')], '~ expanded')
  })
  // a real lookup through XDG_CACHE_HOME, read at call time
  hfSnapshot(join(x, 'huggingface', 'hub'), 'org/tiny-j', COMMIT_A, modelDir('gpt-j-tiny'), { refs: ['main'], links: false })
  await withEnv({ XDG_CACHE_HOME: x }, async () => {
    assert.is(resolveModelDir('org/tiny-j'), join(x, 'huggingface', 'hub', 'models--org--tiny-j', 'snapshots', COMMIT_A))
    assert.equal((await logitsOf('org/tiny-j')).logits, await fixtureLogits('gpt-j-tiny'))
  })
  // and the default under HOME
  await withEnv({}, async () => {
    hfSnapshot(join(process.env.HOME!, '.cache', 'huggingface', 'hub'), 'org/tiny-j', COMMIT_A, modelDir('gpt-j-tiny'), { refs: ['main'], links: false })
    assert.match(resolveModelDir('org/tiny-j'), /\.cache\/huggingface\/hub\/models--org--tiny-j\/snapshots\//)
  })
})

test('HF hub cache: a refs file that holds no commit hash is a ConfigError naming it', async () => {
  const cache = fresh('hf')
  hfSnapshot(cache, 'org/m', COMMIT_A, modelDir('gpt2-tiny'), { refs: ['main'], links: false })
  writeFileSync(join(cache, 'models--org--m', 'refs', 'main'), '../../etc\n')
  await withEnv({ HF_HUB_CACHE: cache }, () =>
    throwsLike(() => resolveModelDir('org/m'), ConfigError, [join('refs', 'main'), 'does not hold a commit hash', '"../../etc"'], 'bad ref'))
})

// --- ModelScope's cache -----------------------------------------------------------------------------------

test("ModelScope cache: every SDK's layout (<= 1.19, 1.20-1.22, 1.23-1.37, 1.38+), '.' written '___', at MODELSCOPE_CACHE or under HOME", async () => {
  const id = 'AI-ModelScope/gpt-neo-1.3B'
  const layouts: [string, (c: string, home: string) => string][] = [
    ['1.23-1.37 (MODELSCOPE_CACHE)', (c) => join(c, 'models', 'AI-ModelScope', 'gpt-neo-1___3B')],
    ['1.38 legacy probe (MODELSCOPE_CACHE)', (c) => join(c, 'hub', 'models', 'AI-ModelScope', 'gpt-neo-1___3B')],
    ['1.20-1.22 (MODELSCOPE_CACHE)', (c) => join(c, 'hub', 'AI-ModelScope', 'gpt-neo-1___3B')],
    ['<= 1.19 (MODELSCOPE_CACHE)', (c) => join(c, 'AI-ModelScope', 'gpt-neo-1___3B')],
    ['< 1.12 unmasked name (MODELSCOPE_CACHE)', (c) => join(c, 'AI-ModelScope', 'gpt-neo-1.3B')],
    ['1.38+ snapshots/master (MODELSCOPE_CACHE)', (c) => join(c, 'models', 'AI-ModelScope--gpt-neo-1.3B', 'snapshots', 'master')],
    ['1.23-1.37 (default)', (_, h) => join(h, '.cache', 'modelscope', 'hub', 'models', 'AI-ModelScope', 'gpt-neo-1___3B')],
    ['<= 1.22 (default)', (_, h) => join(h, '.cache', 'modelscope', 'hub', 'AI-ModelScope', 'gpt-neo-1___3B')],
    ['1.38+ (default)', (_, h) => join(h, '.cache', 'modelscope', 'models', 'AI-ModelScope--gpt-neo-1.3B', 'snapshots', 'master')],
  ]
  for (const [name, where] of layouts) {
    const cache = fresh('ms')
    const useEnv = name.includes('MODELSCOPE_CACHE')
    await withEnv(useEnv ? { MODELSCOPE_CACHE: cache, HF_HUB_CACHE: fresh('hf') } : { HF_HUB_CACHE: fresh('hf') }, async () => {
      const dir = copyModel(modelDir('gpt-neo-tiny'), where(cache, process.env.HOME!), { 'configuration.json': MS_HF_CONFIGURATION })
      assert.is(resolveModelDir(id), dir, name)
      assert.is(locateModel(id).kind, 'modelscope', name)
    })
  }
  // one load through the newest layout: the same logits
  const cache = fresh('ms')
  copyModel(modelDir('gpt-neo-tiny'), join(cache, 'models', 'AI-ModelScope--gpt-neo-1.3B', 'snapshots', 'master'))
  await withEnv({ MODELSCOPE_CACHE: cache }, async () => assert.equal((await logitsOf(id)).logits, await fixtureLogits('gpt-neo-tiny')))
})

test('ModelScope cache: the GPT-3 kuakua folder loads as gpt3 with its configuration.json; a revision must match .mv or name a 1.38 snapshot', async () => {
  const cache = fresh('ms')
  const id = 'damo/nlp_gpt3_kuakua-robot_chinese-large'
  const flat = copyModel(modelDir('gpt3-ms-tiny'), join(cache, 'models', 'damo', 'nlp_gpt3_kuakua-robot_chinese-large'), { '.mv': 'Revision:v1.0.1,CreatedAt:1700000000' })
  const snap = copyModel(modelDir('gpt3-ms-tiny'), join(cache, 'models', 'damo--nlp_gpt3_kuakua-robot_chinese-large', 'snapshots', 'v2.0.0'))
  await withEnv({ MODELSCOPE_CACHE: cache }, async () => {
    assert.is(resolveModelDir(id), flat, 'no revision: the flat folder, whatever it holds')
    assert.is(resolveModelDir(id, { revision: 'v1.0.1' }), flat, '.mv records v1.0.1')
    assert.is(resolveModelDir(id, { revision: 'v2.0.0' }), snap, '1.38+: snapshots/v2.0.0')
    throwsLike(() => resolveModelDir(id, { revision: 'v3' }), ConfigError, ['holds revision "v1.0.1"', join('snapshots', 'v3'), 'modelscope download --model damo/nlp_gpt3_kuakua-robot_chinese-large --revision v3'], 'v3')
    const m = await loadModel(id, { device: 'js' })
    try {
      assert.is(m.family, 'gpt3')
      assert.ok(m.modelscopeConfig, 'configuration.json read')
      const s = m.createSession()
      assert.equal(Float32Array.from(await s.logits(IDS, 0)), await fixtureLogits('gpt3-ms-tiny'))
      s.dispose()
    } finally {
      await m.dispose()
    }
    assert.is(folderKind(id), 'modelscope-gpt3')
    assert.equal(loadTokenizer(id).encode('今天天气'), loadTokenizer(modelDir('gpt3-ms-tiny')).encode('今天天气'))
  })
})

// --- absent, bad, and local ---------------------------------------------------------------------------------

test('absent id: one ConfigError listing every place looked at, with the download commands', async () => {
  const hf = fresh('hf'), ms = fresh('ms')
  await withEnv({ HF_HUB_CACHE: hf, MODELSCOPE_CACHE: ms }, async () => {
    const msg = throwsLike(() => resolveModelDir('EleutherAI/gpt-neo-2.7B'), ConfigError, [
      'EleutherAI/gpt-neo-2.7B: model not found in the Hugging Face or ModelScope caches',
      join(hf, 'models--EleutherAI--gpt-neo-2.7B'),
      join(ms, 'models', 'EleutherAI', 'gpt-neo-2___7B'),
      join(ms, 'models', 'EleutherAI', 'gpt-neo-2.7B'),
      join(ms, 'hub', 'EleutherAI', 'gpt-neo-2___7B'),
      join(ms, 'EleutherAI', 'gpt-neo-2___7B'),
      join(ms, 'models', 'EleutherAI--gpt-neo-2.7B', 'snapshots', 'master'),
      'hint: download it first (`huggingface-cli download EleutherAI/gpt-neo-2.7B`, `hf download` in huggingface_hub 1.x, or `modelscope download --model EleutherAI/gpt-neo-2.7B`), or pass the model folder',
    ], 'absent')
    assert.ok(msg.includes(`${join(process.cwd(), 'EleutherAI/gpt-neo-2.7B')} (no such folder)`), msg)
    // loadModel, inspectModel and loadTokenizer say the same
    for (const f of [() => inspectModel('EleutherAI/gpt-neo-2.7B'), () => loadTokenizer('EleutherAI/gpt-neo-2.7B')])
      throwsLike(f, ConfigError, ['model not found', join(hf, 'models--EleutherAI--gpt-neo-2.7B')], 'others')
    try {
      await loadModel('EleutherAI/gpt-neo-2.7B')
      assert.unreachable('loadModel')
    } catch (e) {
      assert.instance(e, ConfigError)
    }
  })
  // without MODELSCOPE_CACHE: the default ModelScope places under HOME
  await withEnv({ HF_HUB_CACHE: hf }, () =>
    throwsLike(() => resolveModelDir('org/x'), ConfigError, [join(process.env.HOME!, '.cache', 'modelscope', 'hub', 'models', 'org', 'x'), join(process.env.HOME!, '.cache', 'modelscope', 'hub', 'org', 'x'), join(process.env.HOME!, '.cache', 'modelscope', 'models', 'org--x', 'snapshots', 'master')], 'default ms'))
})

test('bad ids and revisions are UsageErrors; a missing path is "model folder not found"; a file is not a folder', async () => {
  await withEnv({ HF_HUB_CACHE: fresh('hf'), MODELSCOPE_CACHE: fresh('ms') }, () => {
    for (const bad of ['a--b', 'org/x.git', 'bad id', 'x'.repeat(97), '-a/b', 'org/.name', 'org/name-', 'a..b', 'org/名字'])
      throwsLike(() => resolveModelDir(bad), UsageError, ['not a model folder, nor a model id', 'at most 96 characters'], bad)
    for (const id of ['gpt2', 'EleutherAI/gpt-neo-1.3B', 'damo/nlp_gpt3_kuakua-robot_chinese-large', 'a', '_x', 'x'.repeat(96)]) assert.ok(isModelId(id), id)
    for (const p of ['../nope', '/abs/nope', 'a/b/c', './nope', '~/nope'])
      throwsLike(() => resolveModelDir(p), ConfigError, [`${p}: model folder not found`], p)
    throwsLike(() => resolveModelDir(''), UsageError, ['empty string'], 'empty')
    throwsLike(() => resolveModelDir(7 as never), UsageError, ['found 7'], 'number')
    const file = join(fresh('f'), 'config.json')
    writeFileSync(file, '{}')
    throwsLike(() => resolveModelDir(file), ConfigError, ['not a folder'], 'file')
    for (const rev of ['../x', '/x', 'a b', '', 'a//b', 'x'.repeat(257), 7])
      throwsLike(() => resolveModelDir('org/name', { revision: rev as never }), UsageError, ['bad revision'], `revision ${String(rev)}`)
  })
})

test('an existing folder wins over an id, relative paths too ("gpt2" in the working folder); a revision is ignored for a folder', async () => {
  const cache = fresh('hf')
  hfSnapshot(cache, 'gpt2', COMMIT_A, modelDir('gpt-neo-tiny'), { refs: ['main'], links: false }) // the cache's "gpt2" is a GPT-Neo here
  const cwd = fresh('cwd')
  copyModel(modelDir('gpt2-tiny'), join(cwd, 'gpt2'))
  const before = process.cwd()
  await withEnv({ HF_HUB_CACHE: cache }, async () => {
    assert.is((await logitsOf('gpt2')).family, 'gpt_neo', 'from the cache')
    process.chdir(cwd)
    try {
      assert.is(resolveModelDir('gpt2'), join(cwd, 'gpt2'))
      assert.is(resolveModelDir('./gpt2', { revision: 'v9' }), join(cwd, 'gpt2'))
      assert.equal(locateModel('gpt2'), { dir: 'gpt2', kind: 'folder' })
      const local = await logitsOf('gpt2')
      assert.is(local.family, 'gpt2')
      assert.equal(local.logits, await fixtureLogits('gpt2-tiny'))
    } finally {
      process.chdir(before)
    }
  })
})

// --- the family comes from config.json's model_type ----------------------------------------------------------

test("family from config.json's model_type: an HF folder with ModelScope's configuration.json is its HF family (same logits); gpt3-ms-tiny stays gpt3", async () => {
  for (const [name, family] of [['gpt2-tiny', 'gpt2'], ['gpt-neo-tiny', 'gpt_neo'], ['gpt-j-tiny', 'gptj']] as const) {
    const dir = copyModel(modelDir(name), fresh(name), { 'configuration.json': MS_HF_CONFIGURATION })
    assert.is(folderKind(dir), 'hf', name)
    assert.is(isModelscopeGpt3Folder(dir), false, name)
    const r = await logitsOf(dir)
    assert.is(r.family, family, name)
    assert.equal(r.logits, await fixtureLogits(name), name)
    // even a configuration.json that claims gpt3: model_type decides
    writeFileSync(join(dir, 'configuration.json'), JSON.stringify({ framework: 'pytorch', task: 'text-generation', model: { type: 'gpt3' } }))
    assert.is(folderKind(dir), 'hf', `${name} with model.type gpt3`)
    assert.is((await logitsOf(dir)).family, family)
  }
  assert.is(folderKind(modelDir('gpt3-ms-tiny')), 'modelscope-gpt3')
  assert.is(isModelscopeGpt3Folder(modelDir('gpt3-ms-tiny')), true)
  const g = await logitsOf(modelDir('gpt3-ms-tiny'))
  assert.is(g.family, 'gpt3')
  // config.json without model_type and a configuration.json that is not gpt3: 'hf' here, loadModel says why
  const odd = copyModel(modelDir('gpt3-ms-tiny'), fresh('odd'))
  writeFileSync(join(odd, 'configuration.json'), MS_HF_CONFIGURATION)
  assert.is(folderKind(odd), 'hf')
  try {
    await loadModel(odd, { device: 'js' })
    assert.unreachable('not gpt3')
  } catch (e) {
    assert.instance(e, ConfigError)
    assert.match((e as Error).message, /model\.type.*unsupported ModelScope model type/)
  }
  // unreadable: 'hf' (the load reports it)
  const broken = copyModel(modelDir('gpt2-tiny'), fresh('broken'))
  writeFileSync(join(broken, 'config.json'), '{')
  assert.is(folderKind(broken), 'hf')
})

// --- load progress ---------------------------------------------------------------------------------------------

function recorder() {
  const calls: [number, number][] = []
  return { calls, onProgress: (loaded: number, total: number) => void calls.push([loaded, total]) }
}
function checkCalls(calls: [number, number][], total: number, minCalls: number, label: string) {
  assert.ok(calls.length >= minCalls, `${label}: ${calls.length} calls, at least ${minCalls}`)
  assert.equal(calls[0], [0, total], `${label}: starts at 0`)
  assert.equal(calls[calls.length - 1], [total, total], `${label}: ends at total`)
  for (let i = 1; i < calls.length; i++) {
    assert.ok(calls[i][0] >= calls[i - 1][0], `${label}: monotonic at ${i}`)
    assert.is(calls[i][1], total, `${label}: one total`)
  }
}

test('onProgress: from 0 to the plan\'s weight bytes (= info.weightBytes), monotonic, at least once per tensor; loadRandomModel too', async () => {
  for (const name of ['gpt2-tiny', 'gpt-neo-tiny', 'gpt-j-tiny', 'gpt3-ms-tiny']) {
    for (const dtype of [undefined, 'F16'] as const) {
      const { calls, onProgress } = recorder()
      const m = await loadModel(modelDir(name), { device: 'js', dtype, onProgress })
      try {
        const total = m.info.weightBytes
        checkCalls(calls, total, m.weights.placements.length + 1, `${name} ${dtype ?? 'as stored'}`)
        const stored = Object.keys(m.info.checkpointDtypes)
        if (dtype === undefined && stored.length === 1 && stored[0] === 'F32') {
          // an f32 checkpoint placed as stored: the total is the bytes of the tensors the model uses
          const elements = m.info.checkpointDtypes.F32!
          assert.is(total, 4 * elements, `${name}: 4 bytes x ${elements} elements`)
        } else if (dtype === 'F16') assert.is(total, 2 * m.info.parameters, `${name}: f16 storage, 2 bytes a parameter`)
      } finally {
        await m.dispose()
      }
    }
  }
  const { calls, onProgress } = recorder()
  const shape = { model_type: 'gpt_neo', hidden_size: 64, num_layers: 2, num_heads: 4, max_position_embeddings: 64, vocab_size: 500, window_size: 8, attention_types: [[['global', 'local'], 1]] }
  const m = await loadRandomModel(shape, { device: 'js', onProgress })
  try {
    checkCalls(calls, m.info.weightBytes, m.weights.placements.length + 1, 'random')
  } finally {
    await m.dispose()
  }
})

test('onProgress: an error it throws rejects loadModel with that error; a non-function is a UsageError', async () => {
  const boom = new Error('stop loading')
  let seen = 0
  try {
    await loadModel(modelDir('gpt2-tiny'), { device: 'js', onProgress: (loaded) => { if (loaded > 0 && ++seen === 3) throw boom } })
    assert.unreachable('should reject')
  } catch (e) {
    assert.is(e, boom)
  }
  try {
    await loadModel(modelDir('gpt2-tiny'), { device: 'js', onProgress: 7 as never })
    assert.unreachable('non-function')
  } catch (e) {
    assert.instance(e, UsageError)
    assert.match((e as Error).message, /onProgress is not a function/)
  }
})

// --- the CLI: --model ID and --revision (the same resolution, through common.ts modelOptions) ----------------

const BIN = join(dirname(new URL(import.meta.url).pathname), '..', 'packages', 'cli', 'dist', 'main.js')
function cli(args: string[], env: Env) {
  const e: Record<string, string | undefined> = { ...process.env }
  for (const k of ENV) delete e[k]
  Object.assign(e, { HOME: fresh('home'), NO_COLOR: '1' }, env)
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: e as NodeJS.ProcessEnv, timeout: 120_000 })
  return { code: r.status, out: r.stdout, err: r.stderr }
}
const GEN = ['--prompt-ids', '1,2,3', '-n', '6', '--json', '--device', 'js']
const newIds = (out: string) => JSON.parse(out).sequences.map((s: { new_ids: number[] }) => s.new_ids)

linkTest('CLI: --model ID from the HF cache (and --revision), from the ModelScope cache (an HF GPT-J hosted there generates as GPT-J); absent id: exit 1, one line naming the places', async () => {
  const hf = fresh('hf')
  hfSnapshot(hf, 'EleutherAI/gpt-neo-1.3B', COMMIT_A, modelDir('gpt-neo-tiny'), { refs: ['main'] })
  hfSnapshot(hf, 'EleutherAI/gpt-neo-1.3B', COMMIT_B, modelDir('gpt2-tiny'), { refs: ['old'] })
  const direct = (name: string) => cli(['generate', '--model', modelDir(name), ...GEN], {})
  const neo = direct('gpt-neo-tiny'), gpt2 = direct('gpt2-tiny'), gptj = direct('gpt-j-tiny')
  for (const r of [neo, gpt2, gptj]) assert.is(r.code, 0, r.err)
  const main = cli(['generate', '--model', 'EleutherAI/gpt-neo-1.3B', ...GEN], { HF_HUB_CACHE: hf })
  assert.is(main.code, 0, main.err)
  assert.equal(newIds(main.out), newIds(neo.out))
  const old = cli(['generate', '--model', 'EleutherAI/gpt-neo-1.3B', '--revision', 'old', ...GEN], { HF_HUB_CACHE: hf })
  assert.is(old.code, 0, old.err)
  assert.equal(newIds(old.out), newIds(gpt2.out))
  const byHash = cli(['inspect', 'EleutherAI/gpt-neo-1.3B', '--revision', COMMIT_B, '--json'], { HF_HUB_CACHE: hf })
  assert.is(byHash.code, 0, byHash.err)
  assert.is(JSON.parse(byHash.out).family, 'gpt2')

  // ModelScope's cache (1.23-1.37 layout under HOME): an HF GPT-J with ModelScope's configuration.json
  const home = fresh('home')
  copyModel(modelDir('gpt-j-tiny'), join(home, '.cache', 'modelscope', 'hub', 'models', 'AI-ModelScope', 'gpt-j-6b'), { 'configuration.json': MS_HF_CONFIGURATION })
  const ms = cli(['generate', '--model', 'AI-ModelScope/gpt-j-6b', ...GEN], { HOME: home })
  assert.is(ms.code, 0, ms.err)
  assert.equal(newIds(ms.out), newIds(gptj.out))
  const text = cli(['generate', '--model', 'AI-ModelScope/gpt-j-6b', '-n', '4', '--json', '--device', 'js', 'Once upon a time,'], { HOME: home })
  assert.is(text.code, 0, `HF generation, not "ModelScope generation needs a ModelScope GPT-3 folder": ${text.err}`)

  const absent = cli(['generate', '--model', 'EleutherAI/gpt-neo-2.7B', ...GEN], { HF_HUB_CACHE: hf, HOME: home })
  assert.is(absent.code, 1)
  assert.is(absent.out, '')
  assert.is(absent.err.trim().split('\n').length, 1, absent.err)
  assert.match(absent.err, /EleutherAI\/gpt-neo-2\.7B.*not found/)
  assert.ok(absent.err.includes(join(hf, 'models--EleutherAI--gpt-neo-2.7B')), absent.err)
  assert.ok(absent.err.includes(join(home, '.cache', 'modelscope')), absent.err)
  const noId = cli(['generate', '--revision', 'main', ...GEN], {})
  assert.is(noId.code, 2)
  assert.match(noId.err, /--revision needs --model ID/)
})

test.run()
