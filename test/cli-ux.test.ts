// The rough edges a new user of `refgpt` hit (issue 14): argument parsing, --version, write errors, hints
// that lead somewhere, chat going on after a bad line, the loading bar and colour. The built CLI is run as
// a user runs it; the bar and colour helpers also directly, on fake streams.
import { spawnSync } from 'node:child_process'
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { CheckpointError, loadModel } from '@refgpt/core'
import { closest, idList, parse } from '../packages/cli/src/args.js'
import { userPathError, withLoadProgress } from '../packages/cli/src/commands/common.js'
import { Progress } from '../packages/cli/src/eval/report.js'
import { bar, errorLine, loadProgress, paint, useColor } from '../packages/cli/src/progress.js'
import { modelDir, refgpt } from './helpers.js'

const test = suite('cli-ux')
const BIN = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url))
const VERSION = JSON.parse(readFileSync(new URL('../packages/cli/package.json', import.meta.url), 'utf8')).version
const TINY = ['--model', modelDir('gpt2-tiny')]
const ESC = /\x1b/

/** The CLI with its own environment (colour variables) and stdout. */
function run(args: string[], opts: { env?: Record<string, string | undefined>; stdout?: number; input?: string } = {}) {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: undefined, FORCE_COLOR: undefined, ...opts.env }
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k]
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8', env: env as NodeJS.ProcessEnv, input: opts.input, timeout: 120_000,
    stdio: ['pipe', opts.stdout ?? 'pipe', 'pipe'],
  })
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr }
}

/** Exit 2, nothing on stdout, exactly one line on stderr: `refgpt: error: ` + `line` (a string: all of it; a RegExp: matched). */
function usage(args: string[], line: string | RegExp) {
  const r = refgpt(args)
  const what = `refgpt ${args.join(' ')}`
  assert.is(r.code, 2, `${what}: exit code (stderr ${r.stderr})`)
  assert.is(r.stdout, '', what)
  assert.match(r.stderr, /^refgpt: error: [^\n]*\n$/, `${what}: one line: ${JSON.stringify(r.stderr)}`)
  if (typeof line === 'string') assert.is(r.stderr, `refgpt: error: ${line}\n`, what)
  else assert.match(r.stderr, line, what)
  return r.stderr
}

// --- 1. argument parsing ----------------------------------------------------------------------------

test('a negative number is an option\'s value, which the option itself then checks', () => {
  usage(['generate', ...TINY, '-n', '-1', 'hi'], 'refgpt generate: bad --max-new-tokens (expected an integer >= 0, found "-1")')
  usage(['generate', ...TINY, '--max-new-tokens', '-1', 'hi'], 'refgpt generate: bad --max-new-tokens (expected an integer >= 0, found "-1")')
  usage(['generate', ...TINY, '--seed', '-5', 'hi'], 'refgpt generate: bad --seed (expected an integer >= 0, found "-5")')
  usage(['train', ...TINY, '--data', 'x', '--out', 'y', '--weight-decay', '-1'], 'refgpt train: bad --weight-decay (expected a number >= 0, found "-1")')
  // the generation config's own check (temperature applies when sampling; greedy search ignores it, as transformers)
  const t = refgpt(['generate', ...TINY, '--do-sample', '--temperature', '-1', '-n', '2', 'hi'])
  assert.is(t.code, 2, t.stderr)
  assert.is(t.stderr, 'refgpt: error: generation config: invalid temperature (expected a number > 0 (1.0: unchanged), found -1); hint: lower values sharpen the distribution, higher flatten it\n')
  // a valid negative value runs, and runs exactly as the --name=value spelling
  const args = ['generate', ...TINY, '--num-beams', '2', '-n', '6', '--json', 'Hello']
  const spaced = refgpt([...args, '--length-penalty', '-1.5'])
  const inline = refgpt([...args, '--length-penalty=-1.5'])
  const plain = refgpt(args)
  assert.is(spaced.code, 0, spaced.stderr)
  assert.equal(JSON.parse(spaced.stdout).sequences, JSON.parse(inline.stdout).sequences)
  assert.is.not(JSON.parse(spaced.stdout).sequences[0].score, JSON.parse(plain.stdout).sequences[0].score, 'the penalty was applied')
  // after `--`, "-5" is the prompt
  const dash = refgpt(['tokenize', '--', '-5'])
  assert.is(dash.code, 0, dash.stderr)
  assert.is(dash.stdout, refgpt(['tokenize', '--stdin'], '-5').stdout)
})

test('unknown options: one clean line, the closest option when one is close, the help hint', () => {
  usage(['generate', '--temprature', '1'], 'refgpt generate: unknown option --temprature (did you mean --temperature?); hint: see `refgpt generate --help`')
  usage(['generate', '--max-new', '3'], 'refgpt generate: unknown option --max-new (did you mean --max-new-tokens?); hint: see `refgpt generate --help`')
  usage(['chat', '--topk', '1'], 'refgpt chat: unknown option --topk (did you mean --top-k?); hint: see `refgpt chat --help`')
  const foo = usage(['generate', '--foo'], 'refgpt generate: unknown option --foo; hint: see `refgpt generate --help`')
  assert.not.match(foo, /'/, 'no stray quote of Node\'s message')
  usage(['tokenize', '--foo=3', 'x'], 'refgpt tokenize: unknown option --foo; hint: see `refgpt tokenize --help`')
  usage(['tokenize', '-xv'], 'refgpt tokenize: unknown option -x (in -xv); hint: see `refgpt tokenize --help`')
  usage(['generate', '-5'], /^refgpt: error: refgpt generate: unknown option -5; hint: an argument that starts with "-" goes after `--` \(refgpt generate -- -5\)/)
})

test('a missing value, a value given to a flag: one clean line each', () => {
  usage(['generate', '--model'], 'refgpt generate: option --model needs a value; hint: see `refgpt generate --help`')
  usage(['generate', '-m'], 'refgpt generate: option -m (--model) needs a value; hint: see `refgpt generate --help`')
  usage(['generate', '--model', '--json'], 'refgpt generate: option --model needs a value (found the option "--json"); hint: a value that starts with "-" is written --model=--json')
  usage(['generate', '--json=1'], 'refgpt generate: option --json takes no value (found "1"); hint: write --json alone')
  usage(['bench', '--no-rows=yes', '--shape', 'gpt2'], 'refgpt bench: option --no-rows takes no value (found "yes"); hint: write --no-rows alone')
})

test('--prompt-ids refuses an empty element instead of dropping it', () => {
  usage(['generate', ...TINY, '--prompt-ids', '1,,2'], 'refgpt generate: bad --prompt-ids: empty element (expected comma-separated token ids such as 15496,11,314, found "1,,2")')
  usage(['generate', ...TINY, '--prompt-ids', '1,2,'], /bad --prompt-ids: empty element .*found "1,2,"/)
  usage(['generate', ...TINY, '--eos-token-id', ',7'], /bad --eos-token-id: empty element/)
  assert.equal(idList('x', 'ids', '15496,11, 314'), [15496, 11, 314])
  assert.equal(idList('x', 'ids', ' 1 2\t3 '), [1, 2, 3])
  assert.equal(idList('x', 'ids', '1 , 2'), [1, 2])
  for (const bad of ['', ' ', ',', '1,,2', '1,', ',1', '1,-2', '1.5'])
    assert.throws(() => idList('x', 'ids', bad), /bad --ids/, JSON.stringify(bad))
})

test('parse: values as typed, repeated options, positionals after --', () => {
  const r = parse('t', ['-n', '-1', '--prompt', 'a', '--prompt=-b', '--flag', 'x', '--', '--flag', '-3'], {
    n: { type: 'string', short: 'n' }, prompt: { type: 'string', multiple: true }, flag: { type: 'boolean' },
  })
  assert.equal({ ...r.values }, { n: '-1', prompt: ['a', '-b'], flag: true })
  assert.equal(r.positionals, ['x', '--flag', '-3'])
  assert.is(closest('temprature', ['temperature', 'top-k']), 'temperature')
  assert.is(closest('foo', ['temperature', 'top-k', 'json']), undefined)
  assert.is(closest('seeed', ['seed', 'stop']), 'seed')
})

// --- 2. --version -----------------------------------------------------------------------------------

test('--version and -V, alone or after a command, print the package version', () => {
  assert.match(VERSION, /^\d+\.\d+\.\d+/)
  for (const args of [['--version'], ['-V'], ['generate', '--version'], ['chat', '-V'], ['golden', 'export', '--version'], ['eval', '--version'], ['tokenize', 'x', '--version']]) {
    const r = refgpt(args)
    assert.is(r.code, 0, args.join(' '))
    assert.is(r.stdout, `refgpt ${VERSION}\n`, args.join(' '))
    assert.is(r.stderr, '')
  }
  // after `--` it is a positional like any other
  const p = refgpt(['tokenize', '--', '--version'])
  assert.is(p.code, 0, p.stderr)
  assert.match(p.stdout, /^\d+(,\d+)*\n$/)
})

// --- 3. errors of one line ------------------------------------------------------------------------------

const devFull = existsSync('/dev/full')
;(devFull ? test : test.skip)('a failed write to stdout (/dev/full: ENOSPC) is one line and exit 1, no stack trace', () => {
  const fd = openSync('/dev/full', 'w')
  try {
    for (const args of [
      ['generate', ...TINY, '-n', '3', 'hi'],
      ['generate', ...TINY, '-n', '3', '--json', 'hi'],
      ['tokenize', 'hello world'],
      ['inspect', modelDir('gpt2-tiny')],
      ['--help'],
    ]) {
      const r = run(args, { stdout: fd })
      assert.is(r.code, 1, `${args.join(' ')}: ${r.stderr}`)
      assert.is(r.stderr, 'refgpt: error: cannot write the output: no space left on device (ENOSPC)\n', args.join(' '))
    }
  } finally {
    closeSync(fd)
  }
})

test('errors of a file the user names name that file, not the temp file beside it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'refgpt-ux-'))
  try {
    // step checks the page's folder before running the model
    const missing = join(dir, 'no-such-folder', 'x.html')
    const s = refgpt(['step', ...TINY, '--html', missing, 'hi'])
    assert.is(s.code, 2, s.stderr)
    assert.is(s.stderr, `refgpt: error: ${missing}: cannot write the --html file: no such folder (found ${JSON.stringify(join(dir, 'no-such-folder'))}); hint: create the folder first\n`)
    // golden export writes through core's atomic write: its error named FILE.tmp-PID-RANDOM
    const out = join(dir, 'no-such-folder', 'x.golden')
    const g = refgpt(['golden', 'export', ...TINY, 'hi', '--out', out])
    assert.is(g.code, 1, g.stderr)
    assert.is(g.stderr, `refgpt: error: ${out}: cannot create the file (ENOENT); hint: create the folder first\n`)
    assert.not.ok(existsSync(join(dir, 'no-such-folder')))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  // the mapping itself: only a where that is FILE or one of its temp files changes
  const file = 'out/x.html'
  const abs = join(process.cwd(), file)
  const e = userPathError(new CheckpointError({ where: `${abs}.tmp-123-abcdef`, what: 'cannot write the file (EIO)', hint: 'h' }), file) as CheckpointError
  assert.instance(e, CheckpointError)
  assert.is(e.message, 'out/x.html: cannot write the file (EIO); hint: h')
  const other = new CheckpointError({ where: '/elsewhere/y.tmp-1', what: 'w' })
  assert.is(userPathError(other, file), other)
  const plain = new Error('x')
  assert.is(userPathError(plain, file), plain)
})

// --- 4. hints that lead somewhere, help that says what happens --------------------------------------------

test('a folder without a tokenizer: --prompt-ids only for the commands that take it', () => {
  const odd = modelDir('gpt-neo-odd')
  const copy = "hint: copy the model's tokenizer files into the folder"
  for (const args of [['step', '--model', odd, 'hi'], ['tokenize', '--model', odd, 'hi']]) {
    const r = refgpt(args)
    assert.is(r.code, 1, r.stderr)
    assert.is(r.stderr, `refgpt: error: ${odd}: the model folder has no tokenizer (expected tokenizer.json, vocab.json + merges.txt, or a ModelScope vocab.txt); ${copy}\n`, args[0])
  }
  const g = refgpt(['golden', 'export', '--model', odd, 'hi', '--out', join(tmpdir(), 'never.golden')])
  assert.is(g.code, 1)
  assert.match(g.stderr, /hint: give the prompt as token ids with `refgpt golden export --prompt-ids 1,2,3`/)
})

test('chat on a Hugging Face folder says chat needs ModelScope GPT-3 and points to generate', () => {
  const r = refgpt(['chat', ...TINY], 'hello\n')
  assert.is(r.code, 2)
  assert.is(r.stdout, '')
  assert.is(r.stderr, `refgpt: error: ${modelDir('gpt2-tiny')}: refgpt chat needs a ModelScope GPT-3 folder (expected vocab.txt (BERT WordPiece) and configuration.json, found a gpt2-bpe tokenizer); hint: for Hugging Face models (GPT-2, GPT-Neo, GPT-J) use \`refgpt generate --model DIR\`\n`)
  assert.not.match(r.stderr, /--generation/)
})

test('help says what each command does without --model', () => {
  const top = refgpt(['--help']).stdout
  assert.not.match(top, /tiny GPT-2/)
  assert.match(top, /fortunes-neo-en/)
  assert.match(top, /chat the small Chinese GPT-3 fortunes-gpt3-zh/)
  assert.match(top, /bench needs --shape or --model/)
  const chat = refgpt(['chat', '--help']).stdout
  assert.match(chat, /-m, --model DIR {8}a ModelScope GPT-3 folder .*\(default: the Chinese\n\s+GPT-3 fortunes-gpt3-zh/)
  assert.not.match(chat, /default: the English/)
  const bench = refgpt(['bench', '--help']).stdout
  assert.match(bench, /there is no default model/)
  assert.not.match(bench, /--lang|default: the English/)
  usage(['bench', '--lang', 'en', '--shape', 'gpt2'], 'refgpt bench: --lang does not apply here (found --lang en); hint: refgpt bench has no default model: pass --model DIR')
  // and what help says is what happens: bench without either
  usage(['bench'], /give exactly one of --shape and --model/)
  for (const c of ['step', 'inspect', 'eval']) assert.match(refgpt([c, '--help']).stdout, /default: the English GPT-Neo\n\s+fortunes-neo-en/, c)
  assert.match(refgpt(['tokenize', '--help']).stdout, /default: the tokenizer of the English default model\n\s+fortunes-neo-en/)
  assert.match(refgpt(['train', '--help']).stdout, /to fine-tune \(required, unless --resume\)/)
  assert.match(refgpt(['golden', 'verify', '--help']).stdout, /the model folder to verify \(required\)/)
  // tokenize's --lang picks the Chinese default model's tokenizer (one id per character there)
  const zh = refgpt(['tokenize', '--lang', 'zh', '春眠不觉晓'])
  assert.is(zh.code, 0, zh.stderr)
  assert.is(zh.stdout.trim().split(',').length, 5)
})

// --- 5. chat goes on after a bad line -------------------------------------------------------------------

test('chat: a line longer than the context fails alone; the lines around it are answered as when alone', () => {
  const dir = modelDir('gpt3-ms-tiny')
  const args = ['chat', '--model', dir, '--seed', '7']
  const a = '今天终于拿到驾照了', c = '我今天考试通过了'
  const long = '今天'.repeat(60) // 120 characters: longer than the fixture's 64 positions
  const alone = (line: string) => {
    const r = refgpt(args, `${line}\n`)
    assert.is(r.code, 0, r.stderr)
    return r.stdout
  }
  const [ra, rc] = [alone(a), alone(c)]
  assert.is(ra.split('\n').length, 2, 'one reply line')
  const r = refgpt(args, `${a}\n${long}\n${c}\n`)
  assert.is(r.stdout, ra + rc, 'lines 1 and 3 answered exactly as alone')
  assert.is(r.code, 1, 'a failed line makes the exit code 1')
  const lines = r.stderr.split('\n')
  assert.is(lines.length, 3, r.stderr)
  // core's message for the line (its wording is core's), prefixed with the line's number
  assert.match(lines[0], /^refgpt: error: line 2: modelscope generation: context length too large \(expected a prompt shorter than 64 tokens .*found 122 tokens\)/)
  assert.is(lines[1], "refgpt: error: refgpt chat: 1 of 3 lines failed: line 2; hint: each line's error is shown above; the other lines were answered")
  assert.is(lines[2], '')
  assert.match(refgpt(['chat', '--help']).stdout, /prints one error line on stderr,\n"refgpt: error: line N: \.\.\."/)
})

// --- 6. progress bar and colour ----------------------------------------------------------------------

/** A fake stream that records what is written. */
const fake = (isTTY: boolean, columns?: number) => {
  const out: string[] = []
  return { isTTY, columns, out, write: (s: string) => out.push(s) }
}

test('loading bar: drawn in place on a terminal, throttled, cleared; nothing elsewhere', () => {
  let t = 0
  const tty = fake(true)
  const p = loadProgress('m', tty, { intervalMs: 100, now: () => t })
  p.onProgress(0, 4_000_000)
  t = 50
  p.onProgress(1_000_000, 4_000_000) // within 100 ms of the last draw: skipped
  t = 150
  p.onProgress(2_000_000, 4_000_000)
  t = 160
  p.onProgress(4_000_000, 4_000_000) // complete: always drawn
  p.done()
  assert.equal(tty.out, [
    '\rloading m [........................] 0.0 / 4.0 MB  0%\x1b[K',
    '\rloading m [############............] 2.0 / 4.0 MB  50%\x1b[K',
    '\rloading m [########################] 4.0 / 4.0 MB  100%\x1b[K',
    '\r\x1b[K',
  ])
  const pipe = fake(false)
  const q = loadProgress('m', pipe)
  q.onProgress(0, 10)
  q.onProgress(10, 10)
  q.done()
  assert.equal(pipe.out, [])
  // cut to the terminal's width, so that "\r" redraws one line
  const narrow = fake(true, 20)
  loadProgress('model', narrow).onProgress(1, 2)
  assert.is(narrow.out[0], '\rloading model [####\x1b[K')
  assert.is(bar(0.5, 4), '[##..]')
  assert.is(bar(NaN, 2), '[..]')
  assert.is(bar(7, 2), '[##]')
})

test('loading bar on a real load: loadModel reports bytes up to the total; the bar ends cleared', async () => {
  const tty = fake(true)
  const model = await withLoadProgress('gpt2-tiny', (p) => loadModel(modelDir('gpt2-tiny'), { device: 'js', ...p }), tty)
  try {
    const draws = tty.out.slice(0, -1)
    assert.ok(draws.length >= 2, `drawn at the start and the end: ${JSON.stringify(tty.out)}`)
    const total = (model.info.weightBytes / 1e6).toFixed(1)
    assert.is(draws[0], `\rloading gpt2-tiny [........................] 0.0 / ${total} MB  0%\x1b[K`)
    assert.is(draws.at(-1), `\rloading gpt2-tiny [########################] ${total} / ${total} MB  100%\x1b[K`)
    assert.is(tty.out.at(-1), '\r\x1b[K')
  } finally {
    await model.dispose()
  }
})

/** script(1) (util-linux) runs a command on a pseudo-terminal: the CLI's stdout and stderr are a TTY there. */
const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

;(hasScript ? test : test.skip)('the CLI draws the bar on a terminal (script(1) pty) and never into a pipe', () => {
  const cmd = [process.execPath, BIN, 'generate', '--model', modelDir('gpt2-tiny'), '-n', '2', 'hi'].map(q).join(' ')
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: '1' }
  delete env.FORCE_COLOR // uvu sets it; with NO_COLOR too, node warns on stderr
  const pty = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: env as NodeJS.ProcessEnv, timeout: 120_000 })
  assert.is(pty.status, 0, pty.stderr)
  assert.match(pty.stdout, /^\rloading gpt2-tiny \[\.{24}\] 0\.0 \/ [\d.]+ MB {2}0%\x1b\[K/)
  assert.match(pty.stdout, /\[#{24}\] ([\d.]+) \/ \1 MB {2}100%\x1b\[K\r\x1b\[Khi/)
  const pipe = refgpt(['generate', ...TINY, '-n', '2', 'hi'])
  assert.is(pipe.code, 0)
  assert.is(pipe.stderr, '')
})

test('eval progress shares the bar: redrawn in place on a terminal, lines in a log', () => {
  const tty = fake(true)
  const p = new Progress(true, tty)
  p.start('lambada', 4, 'items')
  p.update(4)
  p.end()
  assert.match(tty.out[0], /^\r\[\.{24}\] lambada: 0\/4 items, - items\/s, ETA -\x1b\[K$/)
  assert.match(tty.out[1], /^\r\[#{24}\] lambada: 4\/4 items, [\d.]+ items\/s, ETA 0:00\x1b\[K$/)
  assert.is(tty.out[2], '\r\x1b[K')
  const log = fake(false)
  const l = new Progress(false, log)
  l.start('lambada', 1, 'items')
  l.update(1)
  l.end()
  assert.equal(log.out.length, 1)
  assert.match(log.out[0], /^lambada: 1\/1 item, [\d.]+ items\/s, ETA 0:00\n$/)
})

test('colour: on a terminal only; NO_COLOR (non-empty) or FORCE_COLOR=0 turn it off', () => {
  const tty = { isTTY: true, write: () => true }, pipe = { isTTY: false, write: () => true }
  assert.ok(useColor(tty, {}))
  assert.not.ok(useColor(pipe, {}))
  assert.not.ok(useColor(tty, { NO_COLOR: '1' }))
  assert.ok(useColor(tty, { NO_COLOR: '' }), 'an empty NO_COLOR does not count')
  assert.not.ok(useColor(tty, { FORCE_COLOR: '0' }))
  assert.not.ok(useColor(pipe, { FORCE_COLOR: '1' }), 'FORCE_COLOR (set by test runners, CI) colours no pipe')
  assert.not.ok(useColor(tty, { TERM: 'dumb' }))
  assert.is(errorLine('x', tty, {}), 'refgpt: \x1b[31merror:\x1b[0m x\n')
  assert.is(errorLine('x', pipe, {}), 'refgpt: error: x\n')
  assert.is(paint(tty, 'green', 'PASS', {}), '\x1b[32mPASS\x1b[0m')
  // the CLI: no escape codes into pipes, even with FORCE_COLOR=1 (uvu sets it for this very process)
  const plain = run(['generate', '--foo'], { env: { FORCE_COLOR: '1' } })
  assert.is(plain.stderr, 'refgpt: error: refgpt generate: unknown option --foo; hint: see `refgpt generate --help`\n')
  const ok = run(['generate', ...TINY, '-n', '3', 'hi'], { env: { FORCE_COLOR: '1' } })
  assert.is(ok.code, 0, ok.stderr)
  assert.not.match(ok.stdout + ok.stderr, ESC)
})

;(hasScript ? test : test.skip)('colour on a terminal (script(1) pty): a red error: prefix, none with NO_COLOR', () => {
  const cmd = [process.execPath, BIN, 'generate', '--foo'].map(q).join(' ')
  const pty = (env: Record<string, string | undefined>) => {
    const e: Record<string, string | undefined> = { ...process.env, NO_COLOR: undefined, FORCE_COLOR: undefined, TERM: 'xterm', ...env }
    for (const k of Object.keys(e)) if (e[k] === undefined) delete e[k]
    return spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: e as NodeJS.ProcessEnv, timeout: 60_000 }).stdout
  }
  const msg = 'refgpt generate: unknown option --foo; hint: see `refgpt generate --help`\r\n'
  assert.is(pty({}), `refgpt: \x1b[31merror:\x1b[0m ${msg}`)
  assert.is(pty({ NO_COLOR: '1' }), `refgpt: error: ${msg}`)
})

test('bench --profile: every split-kernel call of the decode timed by kernel and shape; the parts add up; bad uses are one-line errors', () => {
  const r = run(['bench', '--shape', 'gpt2', '--layers', '1', '--prompt-tokens', '4', '--new-tokens', '3', '--no-rows', '--no-probe', '--profile', '--json'])
  assert.is(r.code, 0, r.stderr)
  const p = JSON.parse(r.stdout).profile
  assert.is(p.tokens, 3)
  // GPT-2 with one layer decodes through these matmuls (c_attn placed as q, k, v; f32 in row groups), each a
  // fixed number of times a token: what the model computes, not what the profiler echoes
  const mm = p.rows.filter((x: { kernel: string }) => x.kernel.startsWith('matmul_'))
  const shapes = mm.map((x: { k: number; rows: number; calls_per_token: number }) => `${x.k}x${x.rows}:${x.calls_per_token}`).sort()
  assert.equal(shapes, ['3072x768:1', '768x3072:1', '768x50257:1', '768x768:4'])
  assert.ok(mm.every((x: { kernel: string }) => x.kernel === 'matmul_f32g'))
  for (const x of mm) {
    // GB/s = the weight's bytes (f32) times calls, over the time
    const want = (x.k * x.rows * 4 * x.calls_per_token) / (x.ms_per_token * 1e6)
    assert.ok(Math.abs(x.gb_per_s - want) <= 0.01 * want + 0.002, `${x.k}x${x.rows}: ${x.gb_per_s} GB/s, computed ${want}`)
  }
  // the rows and "other" make up the profiled time, to rounding
  const sum = p.rows.reduce((s: number, x: { ms_per_token: number }) => s + x.ms_per_token, 0) + p.other_ms_per_token
  assert.ok(Math.abs(sum - p.ms_per_token) <= 0.002 * (p.rows.length + 2), `${sum} vs ${p.ms_per_token}`)
  assert.ok(p.other_ms_per_token >= 0 && p.rows.every((x: { ms_per_token: number }) => x.ms_per_token > 0))
  // the table: one line per row after its header
  const text = run(['bench', '--shape', 'gpt2', '--layers', '1', '--prompt-tokens', '4', '--new-tokens', '2', '--no-rows', '--no-probe', '--profile'])
  assert.is(text.code, 0, text.stderr)
  assert.match(text.stdout, /\nprofile {5}2 more decoded tokens, timed call by call: [\d.]+ ms a token\n/)
  assert.match(text.stdout, /matmul_f32g +K=768 N=50257 +x1 +[\d.]+ ms +[\d.]+ % +[\d.]+ GB\/s\n/)
  assert.match(text.stdout, /other +\(host, 1 thread\) +[\d.]+ ms/)
  usage(['bench', '--shape', 'gpt2', '--profile', '--device', 'js'], "refgpt bench: --profile times the wasm device's kernel calls (found --device js); hint: leave --device out or pass --device wasm")
  usage(['bench', '--shape', 'gpt2', '--profile', '--new-tokens', '0'], 'refgpt bench: --profile times decoded tokens (found --new-tokens 0); hint: pass --new-tokens 1 or more')
  usage(['bench', '--shape', 'gpt2', '--profile', '--train'], 'refgpt bench: --profile does not apply to --train; hint: see `refgpt bench --help`')
})

test.run()
