#!/usr/bin/env node
// refgpt (`refgpt bench`, wasm device) against ggml's native GPT-J example (examples/gpt-j of
// github.com/ggml-org/ggml: the `gpt-j` and `gpt-j-quantize` binaries, built from source) on the SAME
// machine, thread count, shape, prompt length and number of decoded tokens: decode and prefill tokens/s,
// medians of --rounds, and the ratio refgpt / ggml.
//
//   node benchmarks/ggml-compare.mjs --ggml /work/ggml-build/bin [--layers 4] [--rounds 3]
//        [--new-tokens 64] [--prompt-tokens 128] [--threads 2] [--types q8_0,q4_0,f16]
//        [--work DIR] [--keep] [--seed 1234] [--no-probe] [--ggml-env NAME=VALUE] [--json]
//
// Building ggml (Release, native CPU flags; only the two targets are needed):
//   git clone https://github.com/ggml-org/ggml ggml-src     (or: git archive of a snapshot)
//   cmake -S ggml-src -B ggml-build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON
//   cmake --build ggml-build -j2 --target gpt-j gpt-j-quantize       -> ggml-build/bin/
// refgpt needs its build (node scripts/build.mjs): the script runs packages/cli/dist/main.js.
//
// What it does:
// 1. Writes a GPT-J 6B shape (n_vocab 50400, n_ctx 2048, n_embd 4096, n_head 16, n_rot 64, the first
//    --layers layers) with seeded random weights in ggml's legacy GPT-J f16 file (the layout of
//    examples/gpt-j/convert-h5-to-ggml.py: magic "ggml", 7 int32 hparams ending in ftype 1, the vocab,
//    then per tensor: int32 n_dims, name length, type (0 f32, 1 f16), the dims innermost first, the
//    name, the data; 2-D ".weight" tensors f16, the rest f32). Weights uniform in +-0.02, layer norms
//    1 / 0, biases 0, except lm_head.bias[50256] = -1e4 so that sampling never picks the end-of-text
//    id (main.cpp stops at 50256). The vocab is 50400 made-up words " aaaa", " aaab", ... (50256 is
//    "<|endoftext|>"): gpt_tokenize splits text into words " ?[[:alpha:]]+" and looks each one up
//    whole, so a prompt of --prompt-tokens such words is exactly --prompt-tokens tokens (checked
//    against the count gpt-j prints). Memory stays bounded: the data is written in 16 MiB chunks.
// 2. Quantizes it with `gpt-j-quantize IN OUT q8_0|q4_0` (ggml's ftypes 7 and 2: every 2-D ".*weight"
//    tensor, the token embedding and the LM head included; 1-D tensors stay f32).
// 3. Per round, per type, interleaved (ggml q8_0, refgpt q8, ggml q4_0, refgpt q4, ...):
//    ggml: `gpt-j -m FILE -t T -p PROMPT --seed 1 -b P -n 1` and the same with `-n NEW+1`. gpt-j times
//    its evaluations only ("predict time", sampling and loading apart) and prints that total divided by
//    n_past = prompt tokens + evaluated generated tokens, prefill and decode mixed; `-b P` makes the
//    prompt one batch (its default is 32 tokens), as refgpt's prefill is. With -n 1 it evaluates the
//    prompt only (one token is sampled, none evaluated): that is the prefill time. With -n NEW+1 it
//    evaluates the prompt and NEW generated tokens, so decode = (predict(NEW+1) - predict(1)) / NEW,
//    NEW counted from its output (the tokens it printed minus one), so an early stop would still give
//    the right per-token time. Both runs warm up on 4 tokens first (untimed), as refgpt warms up on 1.
//    A second decode figure, decode_stream, comes from the times at which gpt-j's printed tokens reach
//    this process (it flushes after each one): from the first generated token to the last, less its
//    own sampling time; it should agree with the first and is not spoiled by the prefill's noise.
//    refgpt: `node packages/cli/dist/main.js bench --shape gptj-6b --layers N --dtype q8|q4|f16
//    --threads T --prompt-tokens P --new-tokens NEW --no-rows --json` (its own random weights and
//    prompt: speed does not depend on the values), its decode_tokens_per_s, prefill_tokens_per_s,
//    load_s and probe figures (the stream-read and multiply-add limits of the machine, measured in a
//    child before and after; --no-probe passes through and skips them).
// 4. Prints one line per run, then medians per (engine, type) and the ratios refgpt / ggml; with
//    --json one JSON object on stdout (the run lines go to stderr), else a table and that JSON object
//    on the last line.
//
// Caveats: the two engines' quantized formats differ a little (ggml q8_0 / q4_0: one f16 scale per 32
// weights, 34 / 18 bytes per block; refgpt q8 / q4: one f32 scale per 32; under q4 refgpt keeps the LM
// head in Q8, gpt-j-quantize makes it q4_0), and ggml's KV cache is f16. gpt-j's prefill computes the
// LM head for every prompt row and keeps the last (main.cpp), refgpt's for the last row only: at 4
// layers that is about 25% more multiply-adds per prompt token on ggml's side (4% at all 28 layers).
// The weight bytes a decoded token reads (all the weights but the embedding table, plus one row of it)
// are given for both, with the bandwidth they imply. Each run line says which share of the CPU other
// processes took meanwhile (/proc/stat, less this process and its children): figures taken while it is
// well above 0 are not the machine's own. ggml suffers most: built with OpenMP (the default where it is
// found), its threads meet at a spinning barrier after every op, so with --threads = the cores and one
// core taken by something else, gpt-j -t 2 ran 8-12x slower than -t 1 on a 2-core machine. There
// `--ggml-env OMP_WAIT_POLICY=passive` (libgomp's threads sleep instead of spinning) brought -t 2 back
// to the speed of -t 1; it is off by default, as gpt-j's users get it.
import { spawn } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const HELP = `Usage: node benchmarks/ggml-compare.mjs --ggml DIR [options]

  --ggml DIR           folder holding ggml's gpt-j and gpt-j-quantize binaries (or env GGML_BIN)
  --layers N           layers of the GPT-J 6B shape (default 4)
  --rounds N           rounds; each runs every type on both engines, interleaved (default 3)
  --new-tokens N       tokens decoded per run (default 64)
  --prompt-tokens N    prompt length (default 128)
  --threads N          threads of both engines (default 2)
  --types LIST         ggml types, comma-separated: q8_0, q4_0, f16 (refgpt --dtype q8, q4, f16;
                       default q8_0,q4_0,f16)
  --work DIR           where the model files go (kept, and reused by a later run with the same
                       --layers and --seed); default: a temp folder, removed at the end
  --keep               keep the temp folder
  --seed N             seed of the ggml model's weights and prompt (default 1234)
  --no-probe           passed to refgpt bench: skip its machine probes
  --ggml-env N=V       set an environment variable for gpt-j (repeatable), e.g. OMP_WAIT_POLICY=passive
                       (on a machine that is not quiet: see the header of this file)
  --json               one JSON object on stdout (run lines on stderr)
  -h, --help           this help`

const TYPES = { q8_0: { refgpt: 'q8', ftype: 7 }, q4_0: { refgpt: 'q4', ftype: 2 }, f16: { refgpt: 'f16', ftype: 1 } }
const HP = { nVocab: 50400, nCtx: 2048, nEmbd: 4096, nHead: 16, nRot: 64 }
const EOT = 50256 // main.cpp stops generating at this id
const FORMAT = 1 // bump when the written file changes (the stamp of --work reuse)

const fail = (msg) => {
  process.stderr.write(`ggml-compare: error: ${msg} (see --help)\n`)
  process.exit(2)
}

function parseOptions(argv) {
  const o = { layers: '4', rounds: '3', 'new-tokens': '64', 'prompt-tokens': '128', threads: '2', types: 'q8_0,q4_0,f16', seed: '1234' }
  const ggmlEnv = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '-h' || a === '--help') {
      process.stdout.write(HELP + '\n')
      process.exit(0)
    }
    if (a === '--json' || a === '--keep' || a === '--no-probe') o[a.slice(2)] = true
    else if (a === '--ggml-env') {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(argv[++i] ?? '')
      if (!m) fail('--ggml-env needs NAME=VALUE')
      ggmlEnv[m[1]] = m[2]
    }
    else if (['--ggml', '--layers', '--rounds', '--new-tokens', '--prompt-tokens', '--threads', '--types', '--work', '--seed'].includes(a)) {
      if (argv[i + 1] === undefined) fail(`${a} needs a value`)
      o[a.slice(2)] = argv[++i]
    } else fail(`unknown option ${JSON.stringify(a)}`)
  }
  const int = (name, min, max = Infinity) => {
    const n = Number(o[name])
    if (!Number.isInteger(n) || n < min || n > max) fail(`bad --${name}: expected an integer in [${min}, ${max}], found ${JSON.stringify(o[name])}`)
    return n
  }
  const ggml = o.ggml ?? process.env.GGML_BIN
  if (!ggml) fail('where are the ggml binaries? --ggml DIR or GGML_BIN')
  for (const b of ['gpt-j', 'gpt-j-quantize']) if (!existsSync(join(ggml, b))) fail(`no ${b} in ${ggml}`)
  const types = o.types.split(',').map((t) => t.trim()).filter(Boolean)
  for (const t of types) if (!Object.hasOwn(TYPES, t)) fail(`unknown type ${JSON.stringify(t)} in --types: ${Object.keys(TYPES).join(', ')}`)
  if (types.length === 0) fail('--types is empty')
  const r = {
    ggml: resolve(ggml), layers: int('layers', 1, 28), rounds: int('rounds', 1), newTokens: int('new-tokens', 2), promptTokens: int('prompt-tokens', 1),
    threads: int('threads', 1), types, work: o.work ? resolve(o.work) : null, keep: o.keep === true, seed: int('seed', 0, 2 ** 32 - 1),
    noProbe: o['no-probe'] === true, json: o.json === true, ggmlEnv,
  }
  if (r.promptTokens + r.newTokens + 1 > HP.nCtx) fail(`--prompt-tokens + --new-tokens must stay below the context of ${HP.nCtx}`)
  return r
}

// ---------------------------------------------------------------------------------------------
// the ggml file

/** Token i of the made-up vocab: " " + 4 letters (base 26, "aaaa" = 0); 50256 is GPT-2's end of text. */
const word = (i) => (i === EOT ? '<|endoftext|>' : ' ' + Array.from({ length: 4 }, (_, k) => String.fromCharCode(97 + (Math.floor(i / 26 ** (3 - k)) % 26))).join(''))

/** xorshift32, seeded (never 0). */
function rng(seed) {
  let x = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ 0x2545f491) >>> 0 || 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return x >>> 0
  }
}

/** The prompt: promptTokens words of the vocab (seeded, never the end-of-text id). */
function makePrompt(n, seed) {
  const next = rng(seed + 1)
  let s = ''
  for (let i = 0; i < n; i++) {
    let id
    do id = next() % HP.nVocab
    while (id === EOT)
    s += word(id)
  }
  return s
}

/** IEEE half bits of a number (round to nearest; subnormals; no overflow at these magnitudes). */
function f16bits(v) {
  const s = v < 0 || Object.is(v, -0) ? 0x8000 : 0
  const a = Math.abs(v)
  if (a < 2 ** -14) return s | Math.round(a / 2 ** -24)
  let e = Math.floor(Math.log2(a))
  if (a / 2 ** e >= 2) e++
  if (a / 2 ** e < 1) e--
  let m = Math.round((a / 2 ** e - 1) * 1024)
  if (m === 1024) (m = 0), e++
  return s | ((e + 15) << 10) | m
}

/** The tensors of GPT-J in the order of its Hugging Face state dict, torch shapes ([out, in]). */
function tensorList(layers) {
  const { nVocab: V, nEmbd: C } = HP
  const t = [['transformer.wte.weight', [V, C]]]
  for (let l = 0; l < layers; l++) {
    const p = `transformer.h.${l}.`
    t.push([p + 'ln_1.weight', [C]], [p + 'ln_1.bias', [C]])
    for (const m of ['k_proj', 'v_proj', 'q_proj', 'out_proj']) t.push([p + `attn.${m}.weight`, [C, C]])
    t.push([p + 'mlp.fc_in.weight', [4 * C, C]], [p + 'mlp.fc_in.bias', [4 * C]], [p + 'mlp.fc_out.weight', [C, 4 * C]], [p + 'mlp.fc_out.bias', [C]])
  }
  t.push(['transformer.ln_f.weight', [C]], ['transformer.ln_f.bias', [C]], ['lm_head.weight', [V, C]], ['lm_head.bias', [V]])
  // convert-h5-to-ggml.py: ftype 1 -> 2-D ".weight" tensors f16, everything else f32
  return t.map(([name, shape]) => ({ name, shape, f16: name.endsWith('.weight') && shape.length === 2 }))
}

/** Writes the f16 model file; returns its size in bytes. */
function writeModel(path, layers, seed) {
  const fd = openSync(path, 'w')
  let size = 0
  const put = (buf) => {
    const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
    for (let off = 0; off < b.length; ) off += writeSync(fd, b, off, b.length - off)
    size += b.length
  }
  try {
    // magic + hparams (n_vocab, n_ctx, n_embd, n_head, n_layer, n_rot, ftype)
    put(Int32Array.from([0x67676d6c, HP.nVocab, HP.nCtx, HP.nEmbd, HP.nHead, layers, HP.nRot, 1]))
    // vocab: int32 count, then per token uint32 length + bytes
    const parts = [Buffer.from(Int32Array.from([HP.nVocab]).buffer)]
    for (let i = 0; i < HP.nVocab; i++) {
      const w = Buffer.from(word(i), 'utf8')
      parts.push(Buffer.from(Uint32Array.from([w.length]).buffer), w)
    }
    put(Buffer.concat(parts))
    // the random f16 values come from a table: 65536 evenly spaced values in (-0.02, 0.02)
    const lut = new Uint16Array(65536)
    for (let u = 0; u < 65536; u++) lut[u] = f16bits(((u + 0.5) / 65536) * 2 * 0.02 - 0.02)
    const next = rng(seed)
    const CHUNK = 1 << 22 // 4 Mi uint32 = 8 Mi halves = 16 MiB
    const w32 = new Uint32Array(CHUNK)
    const f32 = new Float32Array(CHUNK)
    for (const t of tensorList(layers)) {
      const name = Buffer.from(t.name, 'utf8')
      put(Int32Array.from([t.shape.length, name.length, t.f16 ? 1 : 0, ...[...t.shape].reverse()]))
      put(name)
      const n = t.shape.reduce((a, b) => a * b, 1)
      if (t.f16) {
        for (let done = 0; done < n; ) {
          const pairs = Math.min(CHUNK, (n - done) >> 1)
          for (let j = 0; j < pairs; j++) {
            const x = next()
            w32[j] = lut[x & 0xffff] | (lut[x >>> 16] << 16)
          }
          put(w32.subarray(0, pairs))
          done += 2 * pairs
        }
      } else {
        // layer norm weights 1, biases 0; lm_head.bias[50256] very negative: end of text never sampled
        const fill = t.name.endsWith('ln_1.weight') || t.name.endsWith('ln_f.weight') ? 1 : 0
        for (let done = 0; done < n; ) {
          const m = Math.min(CHUNK, n - done)
          f32.fill(fill, 0, m)
          if (t.name === 'lm_head.bias' && EOT >= done && EOT < done + m) f32[EOT - done] = -1e4
          put(f32.subarray(0, m))
          done += m
        }
      }
    }
  } finally {
    closeSync(fd)
  }
  return size
}

/** Reads a ggml GPT-J file's tensor table: name, type, dims (innermost first), bytes. */
function readTensorTable(path) {
  const fd = openSync(path, 'r')
  try {
    let pos = 0
    const read = (n) => {
      const b = Buffer.alloc(n)
      let got = 0
      while (got < n) {
        const k = readSync(fd, b, got, n - got, pos + got)
        if (k === 0) break
        got += k
      }
      pos += got
      return got === n ? b : null
    }
    const h = read(32)
    if (h.readUInt32LE(0) !== 0x67676d6c) throw new Error(`${path}: not a ggml file`)
    const hp = Array.from({ length: 7 }, (_, i) => h.readInt32LE(4 + 4 * i))
    const nVocab = read(4).readInt32LE(0)
    for (let i = 0; i < nVocab; i++) {
      const len = read(4).readUInt32LE(0) // (read moves pos: not `pos += read(4)...`)
      pos += len
    }
    // bytes per block and block size of the types these files hold
    const TYPE = { 0: ['f32', 4, 1], 1: ['f16', 2, 1], 2: ['q4_0', 18, 32], 8: ['q8_0', 34, 32] }
    const tensors = []
    for (;;) {
      const th = read(12)
      if (!th) break
      const [nDims, len, type] = [0, 4, 8].map((o) => th.readInt32LE(o))
      const dims = Array.from({ length: nDims }, () => read(4).readInt32LE(0))
      const name = read(len).toString('utf8')
      const tt = TYPE[type]
      if (!tt) throw new Error(`${path}: tensor ${name} has type ${type}, not one this script knows`)
      const n = dims.reduce((a, b) => a * b, 1)
      const bytes = (n / tt[2]) * tt[1]
      tensors.push({ name, type: tt[0], dims, bytes })
      pos += bytes
    }
    return { hparams: hp, tensors }
  } finally {
    closeSync(fd)
  }
}

/** Weight bytes one decoded token reads: every tensor but the embedding table, plus one row of it. */
function decodeBytes(table) {
  let b = 0
  for (const t of table.tensors) b += t.name === 'transformer.wte.weight' ? t.bytes / t.dims[1] : t.bytes
  return b
}

// ---------------------------------------------------------------------------------------------
// running things

/** CPU accounting (/proc/stat and /proc/self/stat, clock ticks): others = busy - this process - its reaped children. */
function cpuMark() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number)
    const s = readFileSync('/proc/self/stat', 'utf8')
    const g = s.slice(s.lastIndexOf(')') + 2).split(' ').map(Number) // fields from 3 (state) on
    return { idle: f[3] + f[4], total: f.reduce((a, b) => a + b, 0), mine: g[11] + g[12] + g[13] + g[14] } // utime stime cutime cstime
  } catch {
    return null
  }
}
function othersShare(m) {
  const n = cpuMark()
  if (!m || !n || n.total <= m.total) return null
  const total = n.total - m.total
  const busy = total - (n.idle - m.idle)
  return Math.min(1, Math.max(0, (busy - (n.mine - m.mine)) / total))
}

/** Runs a command; stdout chunks are time-stamped (performance.now() at arrival). */
function run(cmd, args, { env } = {}) {
  return new Promise((resolvePromise, reject) => {
    const chunks = [], err = []
    const t0 = performance.now()
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env })
    p.stdout.on('data', (b) => chunks.push({ t: performance.now(), s: b.toString('utf8') }))
    p.stderr.on('data', (b) => err.push(b.toString('utf8')))
    p.on('error', reject)
    p.on('close', (code, signal) => {
      const out = chunks.map((c) => c.s).join('')
      if (code !== 0) reject(new Error(`${cmd} ${args.map((a) => (a.length > 60 ? a.slice(0, 57) + '...' : a)).join(' ')} exited with ${code ?? signal}\n${err.join('').slice(-2000)}${out.slice(-2000)}`))
      else resolvePromise({ out, err: err.join(''), chunks, wallMs: performance.now() - t0 })
    })
  })
}

const num = (re, s, what) => {
  const m = re.exec(s)
  if (!m) throw new Error(`gpt-j's output has no ${what}:\n${s.slice(-1500)}`)
  return Number(m[1])
}
const TOKEN = / [a-z]{4}|<\|endoftext\|>/g

/** One gpt-j run: its timings, the tokens it printed, and when they reached us. */
async function runGgml(o, file, prompt, nPredict) {
  const bin = join(o.ggml, 'gpt-j')
  const r = await run(bin, ['-m', file, '-t', String(o.threads), '-n', String(nPredict), '-p', prompt, '--seed', '1', '-b', String(o.promptTokens)],
    { env: { ...process.env, ...o.ggmlEnv } })
  const s = r.out
  const promptCount = num(/number of tokens in prompt = (\d+)/, s, 'prompt token count')
  if (promptCount !== o.promptTokens) throw new Error(`gpt-j tokenized the prompt to ${promptCount} tokens, not ${o.promptTokens}`)
  const loadMs = num(/load time =\s*([\d.]+) ms/, s, 'load time')
  const sampleMs = num(/sample time =\s*([\d.]+) ms/, s, 'sample time')
  const predictMs = num(/predict time =\s*([\d.]+) ms/, s, 'predict time')
  const perTokenMs = num(/predict time =\s*[\d.]+ ms \/ ([\d.]+) ms per token/, s, 'per-token time')
  const memPerToken = num(/mem per token =\s*(\d+) bytes/, s, 'mem per token')
  // the text gpt-j printed: after "number of tokens in prompt = P\n\n", before "\n\nmain: mem per token"
  const marker = s.indexOf('\n', s.indexOf('number of tokens in prompt')) + 2
  const text = s.slice(marker, s.indexOf('\n\nmain: mem per token'))
  const printed = text.match(TOKEN)?.length ?? 0
  const generated = printed - o.promptTokens
  const eot = text.includes('<|endoftext|>')
  // arrival time of each printed token: times[k] = when the (k+1)-th token had arrived
  const times = []
  let acc = ''
  for (const c of r.chunks) {
    acc += c.s
    if (acc.length <= marker) continue
    const end = acc.indexOf('\n\nmain: mem per token')
    const seen = acc.slice(marker, end >= 0 ? end : acc.length).match(TOKEN)?.length ?? 0
    while (times.length < seen) times.push(c.t)
  }
  return { loadMs, sampleMs, predictMs, perTokenMs, memPerToken, printed, generated, eot, times, wallMs: r.wallMs }
}

/** One refgpt bench run: its JSON. */
async function runRefgpt(o, type) {
  const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'packages', 'cli', 'dist', 'main.js')
  const args = [cli, 'bench', '--shape', 'gptj-6b', '--layers', String(o.layers), '--dtype', TYPES[type].refgpt, '--threads', String(o.threads),
    '--prompt-tokens', String(o.promptTokens), '--new-tokens', String(o.newTokens), '--no-rows', '--json', ...(o.noProbe ? ['--no-probe'] : [])]
  const r = await run(process.execPath, args)
  const line = r.out.trim().split('\n').reverse().find((l) => l.startsWith('{'))
  if (!line) throw new Error(`refgpt bench printed no JSON:\n${r.out.slice(-1500)}${r.err.slice(-1500)}`)
  return JSON.parse(line)
}

// ---------------------------------------------------------------------------------------------

const median = (xs) => {
  const a = xs.filter((x) => x !== null && Number.isFinite(x)).sort((p, q) => p - q), m = a.length >> 1
  return a.length === 0 ? null : a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2
}
const round = (x, d = 3) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d)
const pct = (x) => (x === null ? '?' : `${Math.round(x * 100)}%`)

async function main() {
  const o = parseOptions(process.argv.slice(2))
  const say = (line) => (o.json ? process.stderr : process.stdout).write(line + '\n')
  const tempWork = o.work === null
  const work = o.work ?? mkdtempSync(join(os.tmpdir(), 'ggml-compare-'))
  mkdirSync(work, { recursive: true })
  const cleanup = () => {
    if (tempWork && !o.keep) rmSync(work, { recursive: true, force: true })
  }
  process.on('SIGINT', () => {
    cleanup()
    process.exit(130)
  })
  try {
    say(`ggml-compare: GPT-J 6B shape, ${o.layers} layer(s), prompt ${o.promptTokens} tokens, ${o.newTokens} new tokens, ${o.threads} thread(s), types ${o.types.join(', ')}, ${o.rounds} round(s)`)
    say(`ggml binaries: ${o.ggml}${Object.keys(o.ggmlEnv).length ? ` (environment: ${Object.entries(o.ggmlEnv).map(([k, v]) => `${k}=${v}`).join(' ')})` : ''}; model files: ${work}${tempWork ? (o.keep ? ' (kept)' : ' (removed at the end)') : ''}`)
    say(`machine: ${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`)

    // 1. the f16 file (reused from --work when its stamp matches), 2. the quantized ones
    const stampOf = { format: FORMAT, layers: o.layers, seed: o.seed }
    const f16Path = join(work, `gptj-${o.layers}L-f16.bin`)
    const stampPath = f16Path + '.json'
    const stampOk = (p) => existsSync(p) && existsSync(stampPath) && readFileSync(stampPath, 'utf8') === JSON.stringify(stampOf)
    const files = {}
    const prep = {}
    if (stampOk(f16Path)) say(`reusing ${f16Path}`)
    else {
      rmSync(stampPath, { force: true })
      const t = performance.now()
      const size = writeModel(f16Path + '.part', o.layers, o.seed)
      renameSync(f16Path + '.part', f16Path)
      prep.write_s = round((performance.now() - t) / 1000)
      say(`wrote ${f16Path}: ${(size / 2 ** 30).toFixed(2)} GiB in ${prep.write_s} s`)
    }
    files.f16 = f16Path
    for (const type of o.types.filter((t) => t !== 'f16')) {
      const q = join(work, `gptj-${o.layers}L-${type}.bin`)
      if (existsSync(q) && existsSync(stampPath) && statSync(q).mtimeMs >= statSync(f16Path).mtimeMs) say(`reusing ${q}`)
      else {
        const t = performance.now()
        await run(join(o.ggml, 'gpt-j-quantize'), [f16Path, q + '.part', type])
        renameSync(q + '.part', q)
        prep[`quantize_${type}_s`] = round((performance.now() - t) / 1000)
        say(`quantized to ${type}: ${q}, ${(statSync(q).size / 2 ** 30).toFixed(2)} GiB in ${prep[`quantize_${type}_s`]} s`)
      }
      files[type] = q
    }
    writeFileSync(stampPath, JSON.stringify(stampOf))
    const ggmlBytes = {}
    for (const type of o.types) {
      const table = readTensorTable(files[type])
      if (table.hparams[4] !== o.layers) throw new Error(`${files[type]} has ${table.hparams[4]} layers`)
      ggmlBytes[type] = decodeBytes(table)
    }
    if (!o.types.includes('f16') && !o.keep && tempWork) rmSync(f16Path) // not measured: free the disk now

    const prompt = makePrompt(o.promptTokens, o.seed)
    const runs = []
    for (let round_ = 1; round_ <= o.rounds; round_++) {
      for (const type of o.types) {
        // ggml: prompt only (-n 1), then prompt + NEW evaluated tokens (-n NEW+1)
        let m = cpuMark()
        const a = await runGgml(o, files[type], prompt, 1)
        const b = await runGgml(o, files[type], prompt, o.newTokens + 1)
        const busyG = othersShare(m)
        const decodeSteps = b.generated - 1 // tokens evaluated after the prompt
        if (b.eot) say(`  note: gpt-j stopped at the end-of-text id after ${b.generated} tokens`)
        const decodeMs = decodeSteps > 0 ? (b.predictMs - a.predictMs) / decodeSteps : null
        // from arrival times: first generated token .. last = decodeSteps evaluations + samplings
        const P = o.promptTokens
        const streamMs = decodeSteps > 0 && b.times.length >= P + b.generated
          ? (b.times[P + b.generated - 1] - b.times[P]) / decodeSteps - b.sampleMs / b.generated : null
        const g = {
          round: round_, engine: 'ggml', type,
          decode_tokens_per_s: decodeMs > 0 ? round(1000 / decodeMs) : null,
          decode_stream_tokens_per_s: streamMs > 0 ? round(1000 / streamMs) : null,
          prefill_tokens_per_s: round((1000 * P) / a.predictMs),
          decode_tokens: decodeSteps,
          decode_gb_per_s: decodeMs > 0 ? round(ggmlBytes[type] / (decodeMs * 1e6)) : null,
          decode_bytes_per_token: ggmlBytes[type],
          load_s: round(b.loadMs / 1000),
          predict_ms_prefill_run: a.predictMs, predict_ms_decode_run: b.predictMs, ms_per_token_reported: b.perTokenMs,
          mem_per_token_bytes: b.memPerToken,
          others_cpu: round(busyG, 2),
        }
        runs.push(g)
        say(`round ${round_}  ggml   ${type.padEnd(5)} decode ${g.decode_tokens_per_s} tok/s (stream ${g.decode_stream_tokens_per_s}, ${decodeSteps} tokens), prefill ${g.prefill_tokens_per_s} tok/s, ` +
          `${g.decode_gb_per_s} GB/s, load ${g.load_s} s, gpt-j's "ms per token" ${b.perTokenMs}, others ${pct(busyG)}`)

        m = cpuMark()
        const j = await runRefgpt(o, type)
        const busyR = othersShare(m)
        const r = {
          round: round_, engine: 'refgpt', type, dtype: j.dtype,
          decode_tokens_per_s: j.decode_tokens_per_s, prefill_tokens_per_s: j.prefill_tokens_per_s, decode_tokens: j.new_tokens,
          decode_gb_per_s: j.decode_gb_per_s, decode_bytes_per_token: j.decode_bytes_per_token, load_s: j.load_s, simd: j.simd,
          peak_rss_bytes: j.peak_rss_bytes, probe: j.probe, others_cpu: round(busyR, 2),
        }
        runs.push(r)
        const pr = j.probe
        say(`round ${round_}  refgpt ${type.padEnd(5)} decode ${r.decode_tokens_per_s} tok/s, prefill ${r.prefill_tokens_per_s} tok/s, ${r.decode_gb_per_s} GB/s, load ${r.load_s} s` +
          (pr ? `, probes: stream ${pr.stream_gb_per_s_before}/${pr.stream_gb_per_s_after} GB/s, madd ${pr.madd_gflops_before}/${pr.madd_gflops_after} GFLOP/s` : '') + `, others ${pct(busyR)}`)
      }
    }

    // medians per (engine, type), ratios refgpt / ggml
    const med = (engine, type, f) => round(median(runs.filter((x) => x.engine === engine && x.type === type).map(f)))
    const summary = {}
    for (const type of o.types) {
      const gg = {
        decode_tokens_per_s: med('ggml', type, (x) => x.decode_tokens_per_s),
        decode_stream_tokens_per_s: med('ggml', type, (x) => x.decode_stream_tokens_per_s),
        prefill_tokens_per_s: med('ggml', type, (x) => x.prefill_tokens_per_s),
        decode_gb_per_s: med('ggml', type, (x) => x.decode_gb_per_s),
        decode_bytes_per_token: ggmlBytes[type],
        load_s: med('ggml', type, (x) => x.load_s),
      }
      const rf = {
        decode_tokens_per_s: med('refgpt', type, (x) => x.decode_tokens_per_s),
        prefill_tokens_per_s: med('refgpt', type, (x) => x.prefill_tokens_per_s),
        decode_gb_per_s: med('refgpt', type, (x) => x.decode_gb_per_s),
        decode_bytes_per_token: med('refgpt', type, (x) => x.decode_bytes_per_token),
        load_s: med('refgpt', type, (x) => x.load_s),
      }
      const probes = runs.filter((x) => x.engine === 'refgpt' && x.type === type && x.probe)
      if (probes.length) {
        const streamOf = (p) => median([p.stream_gb_per_s_before, p.stream_gb_per_s_after])
        rf.stream_gb_per_s = round(median(probes.map((x) => streamOf(x.probe))))
        rf.madd_gflops = round(median(probes.map((x) => median([x.probe.madd_gflops_before, x.probe.madd_gflops_after]))))
        rf.decode_of_stream = round(median(probes.map((x) => x.probe.decode_of_stream)))
        rf.prefill_of_madd = round(median(probes.map((x) => x.probe.prefill_of_madd)))
        gg.decode_of_stream = gg.decode_gb_per_s !== null && rf.stream_gb_per_s ? round(gg.decode_gb_per_s / rf.stream_gb_per_s) : null // against refgpt's probe
      }
      summary[type] = {
        ggml: gg, refgpt: rf,
        ratio_decode: gg.decode_tokens_per_s && rf.decode_tokens_per_s !== null ? round(rf.decode_tokens_per_s / gg.decode_tokens_per_s) : null,
        ratio_decode_vs_stream: gg.decode_stream_tokens_per_s && rf.decode_tokens_per_s !== null ? round(rf.decode_tokens_per_s / gg.decode_stream_tokens_per_s) : null,
        ratio_prefill: gg.prefill_tokens_per_s && rf.prefill_tokens_per_s !== null ? round(rf.prefill_tokens_per_s / gg.prefill_tokens_per_s) : null,
      }
    }
    const busiest = Math.max(...runs.map((x) => x.others_cpu ?? 0))
    const result = {
      benchmark: 'ggml-compare', shape: 'gptj-6b', layers: o.layers, prompt_tokens: o.promptTokens, new_tokens: o.newTokens, threads: o.threads,
      rounds: o.rounds, types: o.types, ggml_bin: o.ggml, ggml_env: o.ggmlEnv, cpu: os.cpus()[0]?.model ?? null, cores: os.cpus().length, prep,
      others_cpu_max: round(busiest, 2), summary, runs,
    }
    if (o.json) {
      process.stdout.write(JSON.stringify(result) + '\n')
      return
    }
    const fmt = (x) => (x === null || x === undefined ? '-' : String(x))
    const rows = [['type', 'engine', 'decode tok/s', 'prefill tok/s', 'decode GB/s', 'load s', 'decode/stream', 'prefill/madd']]
    for (const type of o.types) {
      const s = summary[type]
      rows.push([type, 'ggml', `${fmt(s.ggml.decode_tokens_per_s)} (stream ${fmt(s.ggml.decode_stream_tokens_per_s)})`, fmt(s.ggml.prefill_tokens_per_s), fmt(s.ggml.decode_gb_per_s), fmt(s.ggml.load_s), fmt(s.ggml.decode_of_stream), '-'])
      rows.push([type, 'refgpt', fmt(s.refgpt.decode_tokens_per_s), fmt(s.refgpt.prefill_tokens_per_s), fmt(s.refgpt.decode_gb_per_s), fmt(s.refgpt.load_s), fmt(s.refgpt.decode_of_stream), fmt(s.refgpt.prefill_of_madd)])
      rows.push([type, 'refgpt/ggml', fmt(s.ratio_decode), fmt(s.ratio_prefill), '', '', '', ''])
    }
    const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)))
    say('')
    say(`medians of ${o.rounds} round(s):`)
    for (const r of rows) say(r.map((x, c) => x.padEnd(w[c])).join('  ').trimEnd())
    if (busiest > 0.1) {
      say(`WARNING: other processes took up to ${pct(busiest)} of the CPU during a run: the figures are not the machine's own`)
      if (o.threads >= os.cpus().length && !o.ggmlEnv.OMP_WAIT_POLICY)
        say('  (gpt-j with OpenMP and as many threads as cores slows down far more than refgpt when a core is taken: see --ggml-env OMP_WAIT_POLICY=passive)')
    }
    process.stdout.write(JSON.stringify(result) + '\n')
  } finally {
    cleanup()
  }
}

main().catch((e) => {
  process.stderr.write(`ggml-compare: ${e?.stack ?? e}\n`)
  process.exitCode = 1
})
