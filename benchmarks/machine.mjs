// What the benchmark files share: how busy the machine is (other processes' CPU share), which
// kernel module is measured, and medians.
import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import os from 'node:os'
import { kernelWasmPath, selectSimdBuild } from '@refgpt/wasm'

/**
 * CPU accounting (Linux /proc/stat, USER_HZ = 100): the share of all cores used by OTHER processes
 * (and the hypervisor's steal) since a mark — the figures are only those of the machine when it is
 * close to 0. null where /proc/stat is unavailable.
 */
export function cpuMark() {
  let stat = null
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number)
    stat = { idle: f[3] + f[4], total: f.reduce((a, b) => a + b, 0) }
  } catch {}
  return { stat, self: process.cpuUsage() }
}
export function othersShare(m) {
  const n = cpuMark()
  if (!m.stat || !n.stat || n.stat.total <= m.stat.total) return null
  const total = n.stat.total - m.stat.total
  const busy = total - (n.stat.idle - m.stat.idle)
  const self = (n.self.user - m.self.user + n.self.system - m.self.system) / 1e4 // microseconds -> jiffies
  return Math.min(1, Math.max(0, (busy - self) / total))
}
export const fmtShare = (x) => (x == null ? '?' : `${(x * 100).toFixed(0)}`)
/** Which kernel module is measured: path, size, build time and a short sha256 (compare runs by it). */
export function moduleLine() {
  let build = 'plain'
  try {
    build = selectSimdBuild() // what a core made now loads (REFGPT_SIMD, the runtime's relaxed SIMD)
  } catch {}
  const path = kernelWasmPath(build)
  try {
    const bytes = readFileSync(path)
    const sha = createHash('sha256').update(bytes).digest('hex').slice(0, 12)
    return `kernel module: ${path} (${build} SIMD, ${(bytes.length / 1024).toFixed(1)} KiB, built ${statSync(path).mtime.toISOString()}, sha256 ${sha})`
  } catch (e) {
    return `kernel module: ${path}: ${e.message}`
  }
}
/** Other processes' CPU share over 0.5 s of idling, before / after the run. */
export function busyLine(when) {
  const m = cpuMark()
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500)
  const busy = othersShare(m)
  const load = os.loadavg().map((v) => v.toFixed(2)).join(' ')
  const warn = busy > 0.1 ? '  WARNING: the machine is not quiet, the figures are not its own' : ''
  return `${when}: other processes use ${fmtShare(busy)}% of the CPU, load average ${load}${warn}`
}

export const median = (xs) => {
  const a = [...xs].sort((p, q) => p - q)
  const m = a.length >> 1
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2
}
