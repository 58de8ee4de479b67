// Builds the workspace: TypeScript project references (wasm -> core -> cli).
// The AssemblyScript kernels are compiled here too once packages/wasm has them.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
function run(cmd, args) {
  const r = spawnSync(process.execPath, [cmd, ...args], { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
const wasmBuild = join(root, 'packages/wasm/scripts/build.mjs')
if (existsSync(wasmBuild)) run(wasmBuild, [])
run(join(root, 'node_modules/typescript/bin/tsc'), ['-b', 'tsconfig.json'])
