// Runs the uvu suite and checks its own totals: uvu exits 0 when a suite stops early without
// reporting a failure, so "Total" must equal "Passed" (uvu's Total leaves out test.skip tests, which it
// counts apart as "Skipped"). Ends with the plain "N passed, N failed[, N skipped]" line CI reads.
import { spawn } from 'node:child_process'

const args = process.argv.slice(2)
const pattern = args[0] ?? '\\.test\\.ts$'
const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', 'node_modules/uvu/bin.js', 'test', pattern], {
  stdio: ['ignore', 'pipe', 'inherit'],
})
let out = ''
child.stdout.on('data', (d) => {
  process.stdout.write(d)
  out += d.toString()
})
child.on('close', (code) => {
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '')
  const num = (label) => Number((plain.match(new RegExp(`${label}:\\s+(\\d+)`)) ?? [])[1] ?? NaN)
  const total = num('Total'), passed = num('Passed'), skipped = num('Skipped') || 0
  const failed = Number.isFinite(total) && Number.isFinite(passed) ? total - passed : 1
  console.log(`${Number.isFinite(passed) ? passed : 0} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`)
  if (code !== 0 || failed !== 0 || !(total > 0)) process.exit(code || 1)
  // CI installs Chromium (whose SwiftShader gives WebGPU an adapter), libvulkan1, tmux and haproxy (.ci/run):
  // there, a skipped browser, terminal, webgpu or load-balancer test is a failure
  const mustRun = plain.split('\n').filter((l) => /^\s*SKIP (step (TUI|--html browser check)|webgpu|serve behind haproxy)/.test(l) || /^\s*SKIP web page/.test(l))
  if (process.env.CI === 'true' && mustRun.length > 0) {
    console.log(`CI: ${mustRun.length} browser/terminal/webgpu test(s) skipped, which CI must run:\n${mustRun.join('\n')}`)
    process.exit(1)
  }
})
