// Models by id: finding a model that Hugging Face's or ModelScope's own tools already downloaded.
// Nothing here downloads anything; a model that is in no cache is one ConfigError listing every place looked at.
//
//   resolveModelDir('EleutherAI/gpt-neo-1.3B')            -> ~/.cache/huggingface/hub/models--EleutherAI--gpt-neo-1.3B/snapshots/<commit>
//   resolveModelDir('damo/nlp_gpt3_kuakua-robot_chinese-large') -> ~/.cache/modelscope/hub/models/damo/nlp_gpt3_kuakua-robot_chinese-large
//   resolveModelDir('./gpt2')                             -> the folder itself (an existing folder always wins over an id)
//
// Order: an existing folder; else the string must be a model id ("name" or "org/name": letters, digits, '-',
// '_', '.'; starting and ending with a letter, digit or '_'; no "--" or ".."; at most 96 characters a part,
// huggingface_hub's validate_repo_id) looked up in the Hugging Face hub cache, then in ModelScope's cache.
// Environment variables and the home folder are read at each call.
//
// Hugging Face hub cache (huggingface_hub constants.py and snapshot_download with local_files_only):
//   root   $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
//          else ~/.cache/huggingface/hub ('~' and $VAR in these values expanded, as huggingface_hub does);
//          then $TRANSFORMERS_CACHE when it is set (transformers before v5 downloaded there)
//   <root>/models--{org}--{name}/refs/{revision}         a text file: the commit a branch or tag named when it was downloaded
//   <root>/models--{org}--{name}/snapshots/{commit}/...  the files, symlinks into ../../blobs/ (io/files.ts allows
//                                                        exactly those links out of the folder)
//   revision (default "main"): a full 40-hex commit hash names snapshots/{hash} directly; anything else is a
//   branch or tag read through refs/. A shortened hash is not accepted, as huggingface_hub does not accept one
//   offline (it could name another commit tomorrow); the error names the full hashes it matches.
//
// ModelScope (modelscope hub/snapshot_download.py, hub/file_download.py, utils/file_utils.py, hub/utils/caching.py;
// modelscope_hub _download.py for 1.38+). A '.' in a model name is written '___' on disk since 1.12
// ('gpt-neo-1.3B' -> 'gpt-neo-1___3B'); both spellings are tried. The layouts by version:
//   <= 1.19      base $MODELSCOPE_CACHE, else ~/.cache/modelscope/hub   {base}/{org}/{name}
//   1.20 - 1.22  base $MODELSCOPE_CACHE, else ~/.cache/modelscope       {base}/hub/{org}/{name}
//   1.23 - 1.37  base $MODELSCOPE_CACHE, else ~/.cache/modelscope/hub   {base}/models/{org}/{name}
//   >= 1.38      base $MODELSCOPE_CACHE, else ~/.cache/modelscope       {base}/models/{org}--{name}/snapshots/{revision}
//                (plain files; {revision} as asked, default "master"; 1.38 reuses an older {base}/models/{org}/{name}
//                or {base}/hub/models/{org}/{name} first, and so does refgpt)
//   The flat folders (all but 1.38+) hold one revision, recorded in .mv ("Revision:v1.0.2,CreatedAt:..."): an
//   explicit revision must match it; without one the folder is used whatever it holds, as ModelScope does offline.
//   ModelScope ids need their org here (old SDKs read a bare name as damo/{name}; refgpt does not guess).

import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { ConfigError, UsageError, show } from '../errors.js'
import { insideFolder, readTextCapped } from './files.js'

export interface ResolveOptions {
  /**
   * A branch, tag or full commit hash (Hugging Face; default "main"), or a ModelScope revision (default
   * "master"). Ignored for a folder given by its path, as transformers ignores it for a local folder.
   */
  revision?: string
}

/** Where a model was found: a folder given by its path, or a cache. */
export interface ResolvedModel {
  /** The folder as given (kind 'folder') or the absolute cache folder. */
  dir: string
  kind: 'folder' | 'huggingface' | 'modelscope'
  /** The model id, for the caches. */
  id?: string
}

/** huggingface_hub's repo name limit, per part. */
export const MAX_MODEL_ID_PART = 96
const ID_PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/
const COMMIT = /^[0-9a-f]{40}$/
/** refs/ files and ModelScope's .mv hold one short line. */
const SMALL_FILE = 4096
const MAX_REVISION = 256

/** Whether `s` is a model id: "name" or "org/name" by huggingface_hub's rules. */
export function isModelId(s: unknown): s is string {
  if (typeof s !== 'string') return false
  const parts = s.split('/')
  if (parts.length > 2) return false
  if (s.includes('--') || s.includes('..') || s.endsWith('.git')) return false
  return parts.every((p) => p.length >= 1 && p.length <= MAX_MODEL_ID_PART && ID_PART.test(p))
}

/** The absolute folder of a model given as a folder path or an id (see the top of this file). */
export function resolveModelDir(idOrDir: string, opts: ResolveOptions = {}): string {
  return path.resolve(locateModel(idOrDir, opts).dir)
}

/** resolveModelDir, saying where the folder came from (a folder path is returned as given). */
export function locateModel(idOrDir: string, opts: ResolveOptions = {}): ResolvedModel {
  if (typeof idOrDir !== 'string' || idOrDir === '')
    throw new UsageError({ what: 'a model folder or model id is needed', found: idOrDir === '' ? 'an empty string' : show(idOrDir) })
  const revision = checkRevision(opts?.revision)
  const st = statOrNull(idOrDir)
  if (st?.isDirectory()) return { dir: idOrDir, kind: 'folder' }
  if (st) throw new ConfigError({ where: idOrDir, what: 'not a folder', expected: 'a model folder or a model id', hint: 'pass the folder, not a file inside it' })
  if (!isModelId(idOrDir)) {
    if (looksLikePath(idOrDir)) throw new ConfigError({ where: idOrDir, what: 'model folder not found', hint: 'pass a folder with config.json and model weights, or a model id (org/name)' })
    throw new UsageError({
      what: 'not a model folder, nor a model id',
      expected: `an existing folder, or "name" / "org/name" of letters, digits, "-", "_" and "." (no "--" or "..", at most ${MAX_MODEL_ID_PART} characters a part)`,
      found: show(idOrDir),
    })
  }
  const looked: string[] = [`${path.resolve(idOrDir)} (no such folder)`]
  const hf = findHuggingFace(idOrDir, revision, looked)
  if (hf) return { dir: hf, kind: 'huggingface', id: idOrDir }
  const ms = findModelscope(idOrDir, revision, looked)
  if (ms) return { dir: ms, kind: 'modelscope', id: idOrDir }
  const rev = revision === undefined ? '' : ` --revision ${revision}`
  throw new ConfigError({
    where: idOrDir + (revision === undefined ? '' : ` (revision ${revision})`),
    what: 'model not found in the Hugging Face or ModelScope caches',
    found: `nothing at ${looked.join('; ')}`,
    hint: `download it first (\`huggingface-cli download ${idOrDir}${rev}\`, \`hf download\` in huggingface_hub 1.x, or \`modelscope download --model ${idOrDir}${rev}\`), or pass the model folder`,
  })
}

/** The Hugging Face hub cache folders, in the order huggingface_hub and transformers use them. */
export function huggingFaceCacheDirs(): string[] {
  const env = (k: string) => (process.env[k] ? expand(process.env[k]!) : undefined)
  const home = env('HF_HOME') ?? path.join(env('XDG_CACHE_HOME') ?? path.join(os.homedir(), '.cache'), 'huggingface')
  const dirs = [env('HF_HUB_CACHE') ?? env('HUGGINGFACE_HUB_CACHE') ?? path.join(home, 'hub')]
  const legacy = env('TRANSFORMERS_CACHE')
  if (legacy) dirs.push(legacy)
  return unique(dirs)
}

/** The folders a ModelScope model may be in, newest SDK's preference first (see the top of this file). */
export function modelscopeCandidates(id: string, revision?: string): { dir: string; flat: boolean }[] {
  const [org, name] = id.split('/')
  if (name === undefined) return []
  const names = unique([name.replace(/\./g, '___'), name])
  const env = process.env.MODELSCOPE_CACHE ? expand(process.env.MODELSCOPE_CACHE) : undefined
  const root = path.join(os.homedir(), '.cache', 'modelscope')
  // flat folders: [base, sub-path] per SDK version
  const flat: string[][] = env
    ? [[env, 'models'], [env, 'hub', 'models'], [env, 'hub'], [env]] // 1.23-1.37, 1.38's probe, 1.20-1.22, <= 1.19
    : [[root, 'hub', 'models'], [root, 'hub']] // 1.23-1.37 (and 1.38's probe); <= 1.22
  const out: { dir: string; flat: boolean }[] = []
  for (const f of flat) for (const n of names) out.push({ dir: path.join(...f, org, n), flat: true })
  out.push({ dir: path.join(env ?? root, 'models', `${org}--${name}`, 'snapshots', revision ?? 'master'), flat: false })
  return out
}

function findHuggingFace(id: string, revision: string | undefined, looked: string[]): string | null {
  const rev = revision ?? 'main'
  for (const cache of huggingFaceCacheDirs()) {
    const repo = path.join(cache, `models--${id.replace('/', '--')}`)
    if (!statOrNull(repo)?.isDirectory()) {
      looked.push(repo)
      continue
    }
    let commit = rev
    if (!COMMIT.test(rev)) {
      const ref = path.join(repo, 'refs', ...rev.split('/'))
      if (!statOrNull(ref)?.isFile()) {
        looked.push(`${ref} (${describeRepo(repo, rev)})`)
        continue
      }
      const text = readTextCapped(insideFolder(repo, path.relative(repo, ref), {}, ConfigError), `refs/${rev}`, SMALL_FILE, ConfigError).trim()
      if (!COMMIT.test(text))
        throw new ConfigError({ where: ref, what: 'a hub cache ref does not hold a commit hash', expected: '40 hexadecimal digits', found: show(text) })
      commit = text
    }
    const snap = path.join(repo, 'snapshots', commit)
    if (statOrNull(snap)?.isDirectory()) return snap
    looked.push(snap)
  }
  return null
}

/** The refs and snapshots a hub cache repository has, for the not-found message. */
function describeRepo(repo: string, rev: string): string {
  const refs = listNames(path.join(repo, 'refs'))
  const snaps = listNames(path.join(repo, 'snapshots'))
  const quote = (names: string[]) => names.slice(0, 8).map((x) => show(x, 48)).join(', ') + (names.length > 8 ? ', ...' : '')
  const parts = [`no ref ${rev}`, `refs: ${refs.length ? quote(refs) : 'none'}`]
  if (/^[0-9a-f]{4,39}$/.test(rev)) {
    const full = snaps.filter((s) => s.startsWith(rev))
    if (full.length) parts.push(`a shortened commit hash: use the full one, ${quote(full)}`)
  }
  return parts.join('; ')
}

function findModelscope(id: string, revision: string | undefined, looked: string[]): string | null {
  for (const c of modelscopeCandidates(id, revision)) {
    if (!nonEmptyFolder(c.dir)) {
      looked.push(c.dir)
      continue
    }
    if (!c.flat || revision === undefined) return c.dir
    const held = flatRevision(c.dir)
    if (held === revision) return c.dir
    looked.push(`${c.dir} (${held === null ? 'no .mv file records its revision' : `holds revision ${show(held, 40)}`})`)
  }
  return null
}

/** The revision ModelScope recorded in a flat folder's .mv file, or null. */
function flatRevision(dir: string): string | null {
  const file = path.join(dir, '.mv')
  if (!statOrNull(file)?.isFile()) return null
  const text = readTextCapped(insideFolder(dir, '.mv', {}, ConfigError), '.mv', SMALL_FILE, ConfigError).trim()
  const m = /^Revision:([^,]*)(,|$)/.exec(text)
  return m ? m[1] : text
}

function checkRevision(rev: unknown): string | undefined {
  if (rev === undefined || rev === null) return undefined
  const bad = typeof rev !== 'string' || rev.length === 0 || rev.length > MAX_REVISION || !/^[A-Za-z0-9_.\-/]+$/.test(rev) ||
    rev.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')
  if (bad)
    throw new UsageError({
      what: 'bad revision',
      expected: `a branch, tag or commit hash: letters, digits, "-", "_", "." and "/" between names, at most ${MAX_REVISION} characters`,
      found: show(rev),
    })
  return rev as string
}

/** Python's os.path.expanduser + expandvars on an environment value. */
function expand(v: string): string {
  const vars = v.replace(/\$(\w+)|\$\{(\w+)\}/g, (m, a: string | undefined, b: string | undefined) => process.env[(a ?? b)!] ?? m)
  return vars === '~' || vars.startsWith('~/') ? path.join(os.homedir(), vars.slice(1)) : vars
}

function looksLikePath(s: string): boolean {
  return path.isAbsolute(s) || s.startsWith('.') || s.startsWith('~') || s.includes('\\') || s.split('/').length > 2
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p)
  } catch {
    return null
  }
}

function nonEmptyFolder(dir: string): boolean {
  if (!statOrNull(dir)?.isDirectory()) return false
  try {
    const d = fs.opendirSync(dir)
    try {
      return d.readSync() !== null
    } finally {
      d.closeSync()
    }
  } catch {
    return false
  }
}

/** Up to 64 entry names of a folder (sorted), for messages. */
function listNames(dir: string): string[] {
  const names: string[] = []
  try {
    const d = fs.opendirSync(dir)
    try {
      for (let e = d.readSync(); e !== null && names.length < 64; e = d.readSync()) names.push(e.name)
    } finally {
      d.closeSync()
    }
  } catch {
    return []
  }
  return names.sort()
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)]
}
