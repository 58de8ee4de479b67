#!/usr/bin/env node
// The `refgpt` command. A committed file (not the build output itself), so that package managers can link
// the bin before `dist/` is built; dist/main.js runs the CLI when it is imported.
import { existsSync } from 'node:fs'

const main = new URL('../dist/main.js', import.meta.url)
if (!existsSync(main)) {
  process.stderr.write('refgpt: error: the CLI is not built (no dist/main.js next to bin/); hint: run `pnpm build` in the refgpt repository\n')
  process.exit(1)
}
await import(main.href)
