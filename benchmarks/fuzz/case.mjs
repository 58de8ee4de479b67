// A fuzz case: the files of one input, and how to lay them out on disk.
//
//   { target, seed, k, tags: [...], main: 'model.safetensors' | '' (the folder), options?: { ... } (for the
//     call, e.g. config's loadModel dtype), entries: { path: entry } }
//   entry: Uint8Array (a regular file) | { symlink: to } | { dir: true } | { fifo: true }
//
// A symlink target '@outside/NAME' points into the worker's `outside` folder, a sibling of the case
// folder that holds valid copies of the seed files (so a reader that follows such a link succeeds and
// a reader that refuses it says why). Filesystem mutations (FS_OPS) turn a file of a folder into such
// a link, a link to a device (/dev/zero), a dangling or looping link, a directory or a FIFO.

import { execFileSync } from 'node:child_process'
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

export const FS_OPS = {
  symlinkOutside: (r, e, f) => (e[f] = { symlink: `@outside/${f.split('/').pop()}` }),
  symlinkDevice: (r, e, f) => (e[f] = { symlink: r.pick(['/dev/zero', '/dev/urandom', '/dev/null', '/etc/passwd', '/', '/proc/self/status']) }),
  symlinkDangling: (r, e, f) => (e[f] = { symlink: `missing-${f.split('/').pop()}` }),
  symlinkLoop: (r, e, f) => (e[f] = { symlink: f.split('/').pop() }),
  symlinkInside: (r, e, f) => {
    // a link to another file of the folder: allowed, and the reader then reads the wrong format
    const others = Object.keys(e).filter((x) => x !== f && e[x] instanceof Uint8Array)
    e[f] = { symlink: others.length ? r.pick(others) : '.' }
  },
  directory: (r, e, f) => (e[f] = { dir: true }),
  fifo: (r, e, f) => (e[f] = { fifo: true }),
  remove: (r, e, f) => delete e[f],
  empty: (r, e, f) => (e[f] = new Uint8Array(0)),
}
export const FS_OP_NAMES = Object.keys(FS_OPS)
const FS_WEIGHTS = [[3, 'symlinkOutside'], [1.5, 'symlinkDevice'], [1, 'symlinkDangling'], [1, 'symlinkLoop'], [1, 'symlinkInside'], [1.5, 'directory'], [0.5, 'fifo'], [3, 'remove'], [2, 'empty']]

/** One filesystem mutation of one of `files` (the files the API reads first). Returns a tag. */
export function mutateFs(r, entries, files, force) {
  const op = force ?? r.weighted(FS_WEIGHTS)
  const f = r.pick(files.length ? files : Object.keys(entries))
  FS_OPS[op](r, entries, f)
  return `fs.${op}:${f}`
}

/**
 * Lays out a case in `dir` (emptied first). env: { outside: folder of @outside links, fifo: a FIFO to
 * hard-link (made once per worker; a hard link costs far less than a mkfifo process) }.
 */
export function materialize(c, dir, env) {
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  for (const [rel, e] of Object.entries(c.entries)) {
    const p = join(dir, rel)
    mkdirSync(dirname(p), { recursive: true })
    if (e instanceof Uint8Array) writeFileSync(p, e)
    else if (e.symlink !== undefined) symlinkSync(e.symlink.startsWith('@outside/') ? join(env.outside, e.symlink.slice(9)) : e.symlink, p)
    else if (e.dir) mkdirSync(p, { recursive: true })
    else if (e.fifo) {
      if (env.fifo) linkSync(env.fifo, p)
      else execFileSync('mkfifo', [p])
    }
  }
  return join(dir, c.main)
}

/** Makes the worker's FIFO and the outside folder. */
export function prepareEnv(root, outsideFiles) {
  const outside = join(root, 'outside')
  mkdirSync(outside, { recursive: true })
  for (const [f, b] of Object.entries(outsideFiles)) writeFileSync(join(outside, f), b)
  const fifo = join(root, 'fifo')
  if (!existsSync(fifo)) {
    try {
      execFileSync('mkfifo', [fifo])
    } catch {
      return { outside, fifo: undefined }
    }
  }
  return { outside, fifo }
}

/** The case as JSON (files inline, base64) for case.json. */
export function caseToJson(c) {
  const files = Object.entries(c.entries).map(([path, e]) =>
    e instanceof Uint8Array ? { path, kind: 'file', bytes: e.length, base64: Buffer.from(e).toString('base64') } : e.symlink !== undefined ? { path, kind: 'symlink', to: e.symlink } : { path, kind: e.dir ? 'dir' : 'fifo' },
  )
  return { target: c.target, seed: c.seed, k: c.k, tags: c.tags, main: c.main, ...(c.options ? { options: c.options } : {}), files }
}

export function caseFromJson(j) {
  const entries = {}
  for (const f of j.files) {
    if (f.kind === 'file') entries[f.path] = new Uint8Array(Buffer.from(f.base64, 'base64'))
    else if (f.kind === 'symlink') entries[f.path] = { symlink: f.to }
    else if (f.kind === 'dir') entries[f.path] = { dir: true }
    else entries[f.path] = { fifo: true }
  }
  return { target: j.target, seed: j.seed, k: j.k, tags: j.tags ?? [], main: j.main ?? '', ...(j.options ? { options: j.options } : {}), entries }
}

/**
 * Saves a case under `outDir/name/`: case.json (what happened, how to reproduce, the files inline) and
 * input/ (the regular files, to look at; links, FIFOs and folders are listed in case.json).
 */
export function saveCase(outDir, name, c, info) {
  const dir = join(outDir, name)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(join(dir, 'input'), { recursive: true })
  for (const [rel, e] of Object.entries(c.entries)) {
    if (!(e instanceof Uint8Array)) continue
    const p = join(dir, 'input', rel)
    mkdirSync(dirname(p), { recursive: true })
    writeFileSync(p, e)
  }
  const json = {
    fuzzer: 'refgpt benchmarks/fuzz',
    ...info,
    repro: `node benchmarks/fuzz/run.mjs --repro ${dir}`,
    regenerate: `node benchmarks/fuzz/run.mjs --repro-case ${c.target}:${c.k} --seed ${c.seed}${c.sweep ? ' --sweep' : ''}`,
    ...caseToJson(c),
  }
  writeFileSync(join(dir, 'case.json'), JSON.stringify(json, null, 1) + '\n')
  return dir
}

export function loadSavedCase(path) {
  const file = existsSync(join(path, 'case.json')) ? join(path, 'case.json') : path
  const j = JSON.parse(readFileSync(file, 'utf8'))
  return { info: j, c: caseFromJson(j) }
}
