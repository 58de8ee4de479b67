// The packages as an npm user gets them (issue 14): `npm pack` every package (its prepack builds), `npm
// install` the three tarballs into an empty project outside the repository, and there run the README's
// examples, the `refgpt` bin and a strict type check, each compared with what the in-repo library gives.
// One pack and one install serve every test; the temp folder is removed at the end.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { isAbsolute, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { defaultModelDir, generate, loadModel, loadTokenizer, pipeline } from '@refgpt/core'
import { modelDir } from './helpers.js'

const ROOT = realpathSync(fileURLToPath(new URL('..', import.meta.url)))
const PACKAGES = ['wasm', 'core', 'cli'] as const
const FIXTURE = modelDir('gpt2-tiny')
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc')
const TMP = realpathSync(mkdtempSync(join(tmpdir(), 'refgpt-packaging-')))
const PACKS = join(TMP, 'packs')
const PROJECT = join(TMP, 'project')
const MINUTE = 60_000

// The children see a plain user's environment: no npm_* variables from a `pnpm test` around us (pnpm's own
// settings, which npm warns about or misreads), no NODE_OPTIONS (--conditions=source would pick src/*.ts)
const KEEP_NPM = /^npm_config_(registry|cache|userconfig|cafile|proxy|https_proxy|noproxy|strict_ssl|offline|prefer_offline)$/i
const ENV: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => (!/^npm_/i.test(k) || KEEP_NPM.test(k)) && k !== 'NODE_OPTIONS'),
)

const WIN = process.platform === 'win32'
interface Ran { code: number | null; stdout: string; stderr: string }
/** Runs a command (npm and npx through their .cmd shims on Windows), bounded by `timeout` ms. */
function run(cmd: 'npm' | 'npx' | 'node', args: string[], cwd: string, timeout: number): Ran {
  const shim = WIN && cmd !== 'node'
  const r = spawnSync(cmd === 'node' ? process.execPath : shim ? `${cmd}.cmd` : cmd, shim ? args.map((a) => (/[\s"&|<>^]/.test(a) ? `"${a}"` : a)) : args, {
    cwd, env: ENV, encoding: 'utf8', timeout, shell: shim, maxBuffer: 256 << 20,
  })
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}${r.signal ? ` (${r.signal} after ${timeout / 1000} s)` : ''}`)
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}
const ok = (r: Ran, what: string) => assert.is(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stderr.slice(-4000)}\n${r.stdout.slice(-2000)}`)

interface Packed { name: string; filename: string; size: number; files: { path: string }[] }
let packed: Packed[] | null = null
let installed = false
const needPacked = (): Packed[] => {
  if (!packed) assert.unreachable('npm pack failed (see the first test)')
  return packed as Packed[]
}
const needInstalled = () => installed || assert.unreachable('npm install failed (see the second test)')

test('npm pack: every package packs (prepack builds); no tsbuildinfo, tests or stale dist; the CLI tarball under 1 MB', () => {
  mkdirSync(PACKS)
  const r = run('npm', ['pack', ...PACKAGES.map((p) => `./packages/${p}`), '--pack-destination', PACKS, '--json'], ROOT, 5 * MINUTE)
  ok(r, 'npm pack')
  const list = JSON.parse(r.stdout.slice(r.stdout.search(/^\[/m))) as Packed[] // a prepack's output may come first
  assert.equal(list.map((p) => p.name), PACKAGES.map((p) => `@refgpt/${p}`))
  for (const p of list) {
    const paths = new Set(p.files.map((f) => f.path.replace(/\\/g, '/')))
    for (const f of ['package.json', 'README.md', 'LICENSE']) assert.ok(paths.has(f), `${p.name}: ${f} in the tarball`)
    const bad = [...paths].filter((f) => /\.tsbuildinfo$|(^|\/)(tests?|__tests__|fixtures)\/|\.(test|spec)\.[cm]?[jt]sx?$/.test(f))
    assert.equal(bad, [], `${p.name}: no build info or test files in the tarball`)
    // every dist/X.js comes from a src/X.ts of this tree (tsc -b never deletes the output of a removed source)
    const stale = [...paths].filter((f) => /^dist\/.*\.js$/.test(f) && !paths.has(f.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts')))
    assert.equal(stale, [], `${p.name}: stale files in dist/`)
    const manifest = JSON.parse(readFileSync(join(ROOT, 'packages', p.name.split('/')[1], 'package.json'), 'utf8'))
    for (const [dep, range] of Object.entries<string>(manifest.dependencies ?? {}))
      assert.not.match(range, /^(workspace|link|file):/, `${p.name}: ${dep}@${range} cannot be installed by npm`)
  }
  const [wasm, core, cli] = list.map((p) => new Set(p.files.map((f) => f.path.replace(/\\/g, '/'))))
  assert.ok(wasm.has('build/refgpt.wasm'), 'the compiled kernels ship')
  assert.ok(core.has('assets/models/fortunes-neo-en/model.safetensors') && core.has('assets/models/fortunes-gpt3-zh/pytorch_model.bin'), 'the default models ship')
  assert.ok(cli.has('bin/refgpt.js') && cli.has('dist/main.js'), 'the bin and what it runs ship')
  const cliSize = list[2].size
  assert.ok(cliSize < 1024 * 1024, `the CLI tarball is ${cliSize} bytes (under 1 MB)`)
  console.log(`  tarballs: ${list.map((p) => `${p.filename} ${(p.size / 1024).toFixed(0)} KiB`).join(', ')}`)
  packed = list
})

test('npm install of the three tarballs into an empty project outside the repository', () => {
  const list = needPacked()
  const rel = relative(ROOT, PROJECT)
  assert.ok(rel.startsWith('..') || isAbsolute(rel), `${PROJECT} is outside ${ROOT}`)
  mkdirSync(PROJECT)
  writeFileSync(join(PROJECT, 'package.json'), JSON.stringify({ name: 'refgpt-packaging-check', private: true, type: 'module' }, null, 2))
  const r = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...list.map((p) => join(PACKS, p.filename))], PROJECT, 10 * MINUTE)
  ok(r, 'npm install')
  for (const p of PACKAGES) {
    const pkg = JSON.parse(readFileSync(join(PROJECT, 'node_modules/@refgpt', p, 'package.json'), 'utf8'))
    assert.is(pkg.version, JSON.parse(readFileSync(join(ROOT, 'packages', p, 'package.json'), 'utf8')).version)
  }
  installed = true
})

/** The README's ```js blocks, in order. */
function readmeBlocks(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/^```js\r?\n([\s\S]*?)^```/gm)].map((m) => m[1])
}

test("the README's pipeline and loadModel/loadTokenizer/generate examples run from the installed package and give the in-repo results", async () => {
  needInstalled()
  // @refgpt/core's README as installed, its model folder pointed at the fixture
  const blocks = readmeBlocks(join(PROJECT, 'node_modules/@refgpt/core/README.md'))
  const pipe = blocks.find((b) => b.includes("pipeline('text-generation'"))
  const lib = blocks.find((b) => b.includes('loadModel(') && b.includes('generate('))
  assert.ok(pipe && lib, 'the README has a pipeline example and a loadModel/loadTokenizer/generate example')
  for (const [name, code] of [['readme-pipeline.mjs', pipe], ['readme-generate.mjs', lib]] as const) {
    assert.ok(code.includes("'path/to/gpt2'"), `${name}: the example names its folder 'path/to/gpt2'`)
    writeFileSync(join(PROJECT, name), code.replaceAll("'path/to/gpt2'", JSON.stringify(FIXTURE)))
  }
  // what the examples print (console.log's arguments, as values)
  writeFileSync(join(PROJECT, 'run-readme.mjs'), [
    "import { writeFileSync } from 'node:fs'",
    'const logged = []',
    'console.log = (...args) => logged.push(args)',
    "await import('./readme-pipeline.mjs')",
    "await import('./readme-generate.mjs')",
    "writeFileSync('logged.json', JSON.stringify(logged))",
  ].join('\n'))
  ok(run('node', ['run-readme.mjs'], PROJECT, 2 * MINUTE), 'the README examples')
  const logged = JSON.parse(readFileSync(join(PROJECT, 'logged.json'), 'utf8'))

  // the same calls, in this process, on the repository's source
  const generator = await pipeline('text-generation', FIXTURE)
  const piped = await generator("Hello, I'm a language model,", { max_new_tokens: 20, do_sample: false })
  await generator.dispose()
  const model = await loadModel(FIXTURE)
  const tok = loadTokenizer(FIXTURE)
  const out = await generate(model, tok.encode('Hello, I am'), { maxNewTokens: 20 })
  await model.dispose()
  assert.is(out.newTokens.length, 20)
  assert.equal(logged, [[piped[0].generated_text], [out.newTokens], [tok.decode(out.ids)]], 'the README examples print what the repository computes (the same calls)')
})

test('npx refgpt: --help, and generate (the default model; a fixture with --prompt-ids) as the in-repo library', async () => {
  needInstalled()
  const help = run('npx', ['--no', '--', 'refgpt', '--help'], PROJECT, 2 * MINUTE)
  ok(help, 'refgpt --help')
  assert.match(help.stdout, /Usage: refgpt <command>/)

  const fixture = run('npx', ['--no', '--', 'refgpt', 'generate', '--model', FIXTURE, '--prompt-ids', '1,2,3', '-n', '5', '--json'], PROJECT, 2 * MINUTE)
  ok(fixture, 'refgpt generate --model fixture --prompt-ids 1,2,3')
  const tiny = await loadModel(FIXTURE)
  const want = await generate(tiny, [1, 2, 3], { maxNewTokens: 5 })
  await tiny.dispose()
  const got = JSON.parse(fixture.stdout)
  assert.equal(got.sequences.map((s: { ids: number[] }) => s.ids), [want.ids])
  assert.is(got.sequences[0].text, loadTokenizer(FIXTURE).decode(want.ids))

  // the default model ships in @refgpt/core's assets
  const dflt = run('npx', ['--no', '--', 'refgpt', 'generate', 'Hello', '-n', '8', '--json'], PROJECT, 2 * MINUTE)
  ok(dflt, 'refgpt generate Hello (default model)')
  const dir = defaultModelDir('en')
  const model = await loadModel(dir)
  const tok = loadTokenizer(dir)
  const expected = await generate(model, tok.encode('Hello'), { maxNewTokens: 8 })
  await model.dispose()
  const text = JSON.parse(dflt.stdout).sequences[0]
  assert.equal(text.ids, expected.ids)
  assert.is(text.text, tok.decode(expected.ids))
})

test('types: a strict nodenext project type-checks against the installed @refgpt/core; a typo in a generate() option does not', () => {
  needInstalled()
  writeFileSync(join(PROJECT, 'good.ts'), `import { generate, loadModel, loadTokenizer, pipeline, type GenerateResult, type TextGenerationOutput } from '@refgpt/core'

export async function run(dir: string): Promise<string> {
  const generator = await pipeline('text-generation', dir)
  const outs: TextGenerationOutput[] = await generator('Hello', { max_new_tokens: 5, do_sample: false })
  await generator.dispose()
  const model = await loadModel(dir, { device: 'cpu' })
  const tok = loadTokenizer(dir)
  const out: GenerateResult = await generate(model, tok.encode('Hello'), { maxNewTokens: 5, onToken: (id: number) => void id })
  await model.dispose()
  const ids: number[] = out.newTokens
  return (outs[0].generated_text ?? '') + tok.decode(ids)
}
`)
  writeFileSync(join(PROJECT, 'typo.ts'), `import { generate, loadModel } from '@refgpt/core'

export async function run(dir: string): Promise<void> {
  const model = await loadModel(dir)
  await generate(model, [1, 2, 3], { maxNewTokenz: 5 })
}
`)
  writeFileSync(join(PROJECT, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', skipLibCheck: false,
      types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')],
    },
    files: ['good.ts', 'typo.ts'],
  }, null, 2))
  const r = run('node', [TSC, '-p', 'tsconfig.json', '--pretty', 'false'], PROJECT, 3 * MINUTE)
  const errors = r.stdout.split('\n').filter((l) => /error TS\d+/.test(l))
  assert.equal(errors.filter((l) => !l.startsWith('typo.ts')), [], 'good.ts (and the installed .d.ts files) type-check')
  assert.ok(errors.some((l) => l.startsWith('typo.ts') && l.includes('maxNewTokenz')), `generate(model, ids, { maxNewTokenz: 5 }) must not type-check (tsc exit ${r.code}: ${errors.join(' | ') || 'no errors'})`)
})

test('pnpm workspace: the semver ranges between the packages are linked to the workspace folders (pnpm-lock.yaml link:)', () => {
  const lock = readFileSync(join(ROOT, 'pnpm-lock.yaml'), 'utf8')
  for (const [from, to] of [['cli', 'core'], ['core', 'wasm']] as const) {
    const range = JSON.parse(readFileSync(join(ROOT, 'packages', from, 'package.json'), 'utf8')).dependencies[`@refgpt/${to}`]
    const entry = lock.match(new RegExp(`\\n  packages/${from}:\\n[\\s\\S]*?'@refgpt/${to}':\\n\\s+specifier: (\\S+)\\n\\s+version: (\\S+)`))
    assert.ok(entry, `pnpm-lock.yaml has packages/${from}'s @refgpt/${to}`)
    assert.is(entry[1], range, `pnpm-lock.yaml's specifier for packages/${from} -> @refgpt/${to} is package.json's (run pnpm install)`)
    assert.is(entry[2], `link:../${to}`, `packages/${from} -> @refgpt/${to} is linked to the workspace folder (does ${range} still match its version?)`)
    assert.is(realpathSync(join(ROOT, 'packages', from, 'node_modules/@refgpt', to)), join(ROOT, 'packages', to))
  }
})

test.after(() => rmSync(TMP, { recursive: true, force: true }))
test.run()
