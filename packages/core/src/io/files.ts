// Reading the files of a model folder safely: every path is resolved (realpath) and must stay inside the
// folder, every read has a size cap, and every failure is a one-line refgpt error naming the file.
//
//   insideFolder(dir, file, opts)          the real path of `file`, refused when a symlink leads out of `dir`
//   readFileCapped(file, what, max, opts)  the bytes of a regular file no larger than `max`
//   readTextCapped(file, what, max, opts)  the same as UTF-8 text (a byte order mark dropped)
//
// A Hugging Face hub cache snapshot (…/models--org--name/snapshots/<rev>/) is a folder of symlinks into
// …/models--org--name/blobs/: links from a snapshot into its own repository's blobs are followed.

import * as fs from 'node:fs'
import * as path from 'node:path'
import { CheckpointError, RefgptError } from '../errors.js'
import { FILE_CAPS, decodeText, type ErrorClass } from './folder.js'

export type { ErrorClass }
export { FILE_CAPS }

export interface FileAccessOptions {
  /** Follow symlinks that lead outside the model folder (default false: refused). */
  followSymlinks?: boolean
}

/** The real path of a folder, or the resolved path when it does not exist (the caller reports that). */
function realFolder(dir: string): string {
  try {
    return fs.realpathSync(dir)
  } catch {
    return path.resolve(dir)
  }
}

function within(root: string, p: string): boolean {
  const rel = path.relative(root, p)
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))
}

/** The folders a model folder's files may really live in: itself, and a hub cache snapshot's blobs. */
function allowedRoots(dir: string): string[] {
  const real = realFolder(dir)
  const roots = [real]
  for (const d of [path.resolve(dir), real]) {
    const m = /^(.*[\\/]models--[^\\/]+)[\\/]snapshots[\\/][^\\/]+$/.exec(d)
    if (m) roots.push(path.join(realFolder(m[1]), 'blobs'))
  }
  return roots
}

/**
 * The real path of `file` (which names something in model folder `dir`). A path whose real location is
 * outside `dir` (a symlink, `..` in an index) is refused unless `followSymlinks`. A missing file resolves
 * to its plain path (the reader reports it as missing).
 */
export function insideFolder(dir: string, file: string, opts: FileAccessOptions = {}, ErrorClass: ErrorClass = CheckpointError): string {
  const abs = path.resolve(dir, file)
  let real: string
  try {
    real = fs.realpathSync(abs)
  } catch {
    return abs
  }
  if (opts.followSymlinks) return real
  const roots = allowedRoots(dir)
  if (roots.some((r) => within(r, real))) return real
  throw new ErrorClass({
    what: 'file is a link to a place outside the model folder',
    where: abs,
    expected: `a file inside ${roots[0]}`,
    found: real,
    hint: 'copy the file into the folder, or pass --follow-symlinks (followSymlinks: true) if you trust the link',
  })
}

/** The bytes of a regular file of at most `max` bytes; `what` names it in errors ("tokenizer.json"). */
export function readFileCapped(file: string, what: string, max: number, ErrorClass: ErrorClass = CheckpointError): Buffer {
  const abs = path.resolve(file)
  let fd: number | undefined
  try {
    // stat before open: opening a FIFO for reading would block until a writer comes
    const pre = fs.statSync(abs)
    if (!pre.isFile()) throw new ErrorClass({ what: `${what} is not a regular file`, where: abs, found: pre.isDirectory() ? 'a directory' : 'a device, pipe or socket' })
    fd = fs.openSync(abs, 'r')
    const st = fs.fstatSync(fd)
    if (!st.isFile()) throw new ErrorClass({ what: `${what} is not a regular file`, where: abs, found: st.isDirectory() ? 'a directory' : 'a device, pipe or socket' })
    if (st.size > max) throw new ErrorClass({ what: `${what} is too large`, where: abs, expected: `at most ${max} bytes`, found: `${st.size} bytes` })
    const buf = Buffer.allocUnsafe(st.size)
    let done = 0
    while (done < st.size) {
      const n = fs.readSync(fd, buf, done, st.size - done, done)
      if (n === 0) break
      done += n
    }
    if (done !== st.size) throw new ErrorClass({ what: `${what} changed while it was read`, where: abs, expected: `${st.size} bytes`, found: `${done}` })
    return buf
  } catch (e) {
    if (e instanceof RefgptError) throw e
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new ErrorClass({ what: `${what} does not exist`, where: abs }, { cause: e })
    if (code === 'EISDIR') throw new ErrorClass({ what: `${what} is not a regular file`, where: abs, found: 'a directory' }, { cause: e })
    throw new ErrorClass({ what: `cannot read ${what}`, where: abs, found: code ?? (e instanceof Error ? e.message : String(e)) }, { cause: e })
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/**
 * The text of a file of at most `max` bytes. `fatal`: invalid UTF-8 is an error (else replaced by U+FFFD,
 * as Python's open(..., errors='replace') would). A leading byte order mark is dropped.
 */
export function readTextCapped(file: string, what: string, max: number, ErrorClass: ErrorClass = CheckpointError, fatal = false): string {
  return decodeText(readFileCapped(file, what, max, ErrorClass), what, path.resolve(file), ErrorClass, fatal)
}
