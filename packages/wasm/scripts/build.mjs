// Compiles the AssemblyScript kernels (packages/wasm/assembly/*.ts) into two modules:
//   build/refgpt.wasm          plain WASM SIMD (the default; every runtime with SIMD runs it)
//   build/refgpt-relaxed.wasm  the same sources with `--enable relaxed-simd`: the kernels test the
//                              compile-time constant ASC_FEATURE_RELAXED_SIMD and use relaxed
//                              instructions where they give the SAME results (gemm_q8.ts, quant.ts);
//                              chosen at run time by feature detection (src/core.ts, REFGPT_SIMD)
//
//   node packages/wasm/scripts/build.mjs [--force] [--wat]
//
// Release flags: -O3, SIMD, `--runtime stub` (no GC: the kernels allocate nothing), `--noAssert`,
// an imported SHARED memory (threads feature; up to 65536 pages = 4 GiB) and no `abort` import.
// A module is skipped when it is newer than every source (and this script); --force rebuilds
// anyway, --wat also writes build/refgpt.wat / refgpt-relaxed.wat for reading the generated code.
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..')
const assemblyDir = join(pkg, 'assembly')
const buildDir = join(pkg, 'build')
const argv = process.argv.slice(2)
const force = argv.includes('--force')
const wat = argv.includes('--wat')

const sources = [
  fileURLToPath(import.meta.url),
  ...readdirSync(assemblyDir).filter((f) => f.endsWith('.ts')).map((f) => join(assemblyDir, f)),
]
const builds = [
  { name: 'refgpt', features: [] },
  { name: 'refgpt-relaxed', features: ['--enable', 'relaxed-simd'] },
]
const fresh = (outFile) => {
  if (force || wat || !existsSync(outFile)) return false
  const built = statSync(outFile).mtimeMs
  return sources.every((f) => statSync(f).mtimeMs <= built)
}
const todo = builds.filter((b) => !fresh(join(buildDir, `${b.name}.wasm`)))
if (todo.length === 0) process.exit(0)
mkdirSync(buildDir, { recursive: true })

const { default: asc } = await import('assemblyscript/asc')
for (const b of todo) await build(b)

async function build({ name, features }) {
  const outFile = join(buildDir, `${name}.wasm`)
  const args = [
    join(assemblyDir, 'index.ts'),
    '--outFile', outFile,
    ...(wat ? ['--textFile', join(buildDir, `${name}.wat`)] : []),
    '--optimizeLevel', '3',
    '--shrinkLevel', '0',
    '--noAssert',
    '--runtime', 'stub',
    '--enable', 'simd',
    '--enable', 'threads',
    ...features,
    '--importMemory',
    '--noExportMemory',
    '--sharedMemory',
    '--initialMemory', '1',
    '--maximumMemory', '65536',
    '--use', 'abort=',
    '--noColors',
  ]
  const t0 = Date.now()
  const { error, stderr } = await asc.main(args, {})
  if (error) {
    process.stderr.write(stderr.toString())
    process.stderr.write(`refgpt wasm build failed: ${error.message}\n`)
    process.exit(1)
  }
  const warnings = stderr.toString()
  if (warnings.trim()) process.stderr.write(warnings)
  const size = statSync(outFile).size
  console.log(`built ${relative(process.cwd(), outFile)} (${(size / 1024).toFixed(1)} KiB) in ${Date.now() - t0} ms`)
}
