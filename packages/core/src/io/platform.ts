// What the readers need from Node, in one module: files on disk (RandomAccessFile, and model folders as
// ModelFolder objects), zlib (deflated zip entries, CRC-32), and finding a folder from a path or model id.
// A bundle for a page gets platform.browser.ts instead (package.json's "browser" map), so the shared
// readers (safetensors.ts, zip.ts, torch.ts, checkpoint.ts), the tokenizer loader and loadModel reach no
// Node built-in there.

import * as fs from 'node:fs'
import * as path from 'node:path'
import * as zlib from 'node:zlib'
import { CheckpointError, ConfigError, RefgptError, TokenizerError, show } from '../errors.js'
import { RandomAccessBase } from './access.js'
import { insideFolder, readFileCapped, type FileAccessOptions } from './files.js'
import { FILE_CAPS, decodeText, type ErrorClass, type ModelFolder } from './folder.js'
import { isModelId, locateModel, resolveModelDir } from './hub.js'
import { crc32Table } from './crc32.js'

export { FILE_CAPS }

/** Which host this build runs on. */
export const HOST = 'node'

/** Largest single readSync (Node refuses lengths of 2 GiB and more). */
const MAX_READ_CHUNK = 1 << 30
/** Largest view one zlib.crc32 call is given. */
const MAX_CRC_CHUNK = 1 << 30

/** A read-only file descriptor; every read is checked against the size the file had when opened. */
export class RandomAccessFile extends RandomAccessBase {
  private fd: number | undefined

  private constructor(file: string, fd: number, size: number) {
    super(file, size)
    this.fd = fd
  }

  /**
   * Opens `file` (made absolute) for reading; a missing file, a folder, a pipe or device is a CheckpointError.
   * `openPath`, when given, is what is really opened (the resolved real path of `file`); errors still name `file`.
   */
  static open(file: string, openPath?: string): RandomAccessFile {
    if (typeof file !== 'string' || (openPath !== undefined && typeof openPath !== 'string')) {
      throw new CheckpointError({ what: 'weights file path is not a string', found: show(file) })
    }
    const abs = path.resolve(file)
    let fd: number
    try {
      // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer (it is refused below)
      fd = fs.openSync(path.resolve(openPath ?? abs), fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0))
    } catch (e) {
      throw fsError(abs, e)
    }
    try {
      const st = fs.fstatSync(fd)
      if (!st.isFile()) {
        throw new CheckpointError({
          what: 'is not a regular file',
          where: abs,
          found: st.isDirectory() ? 'a folder' : 'a device, pipe or socket',
          hint: 'pass the path of a weights file',
        })
      }
      return new RandomAccessFile(abs, fd, st.size)
    } catch (e) {
      closeQuietly(fd)
      throw e instanceof RefgptError ? e : fsError(abs, e)
    }
  }

  protected fill(dst: Uint8Array, position: number): void {
    const fd = this.fd as number
    let done = 0
    while (done < dst.length) {
      const want = Math.min(dst.length - done, MAX_READ_CHUNK)
      let got: number
      try {
        got = fs.readSync(fd, dst, done, want, position + done)
      } catch (e) {
        const code = (e as NodeJS.ErrnoException | undefined)?.code
        throw new CheckpointError({ what: `cannot read file (${code ?? String(e)})`, where: this.path, found: `at offset ${position + done}` }, { cause: e })
      }
      if (got === 0) {
        throw new CheckpointError({
          what: 'file ended early',
          where: this.path,
          expected: `${dst.length} bytes at offset ${position}`,
          found: `${done}`,
          hint: 'the file was truncated or changed while it was open',
        })
      }
      done += got
    }
  }

  protected release(): void {
    if (this.fd !== undefined) closeQuietly(this.fd)
    this.fd = undefined
  }
}

/** Closes a read-only descriptor; a failure (nothing was written) is not worth reporting. */
function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd)
  } catch {
    // ignored
  }
}

/** A CheckpointError for a failed open/stat of `file`. */
export function fsError(file: string, e: unknown): CheckpointError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOENT') return new CheckpointError({ what: 'file does not exist', where: file })
  if (code === 'EISDIR') {
    return new CheckpointError({ what: 'is a folder, not a file', where: file, hint: 'pass the path of a weights file' })
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new CheckpointError({ what: `no permission to read the file (${code})`, where: file }, { cause: e })
  }
  return new CheckpointError({ what: `cannot open file (${code ?? String(e)})`, where: file }, { cause: e })
}

/** CRC-32 of the bytes of `data` (any size; computed over views of at most 1 GiB). */
export function crc32(data: ArrayBufferView): number {
  const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32
  let crc = 0
  for (let done = 0; done < data.byteLength; done += MAX_CRC_CHUNK) {
    const chunk = new Uint8Array(data.buffer, data.byteOffset + done, Math.min(data.byteLength - done, MAX_CRC_CHUNK))
    crc = typeof native === 'function' ? native(chunk, crc) >>> 0 : crc32Table(chunk, crc)
  }
  return crc
}

/** A raw deflate stream inflated to at most `maxOutputLength` bytes (zlib; throws on corrupt data or more output). */
export function inflateRaw(compressed: Uint8Array, maxOutputLength: number): Uint8Array {
  return zlib.inflateRawSync(compressed, { maxOutputLength })
}

// ---------------------------------------------------------------------------------------------------
// Model folders on disk

/** A folder on disk; every file resolved with insideFolder (a link out of `dir` refused unless followed). */
export class NodeFolder implements ModelFolder {
  readonly dir: string
  readonly access: FileAccessOptions

  /** `dir` as given (made absolute by the readers that need it). */
  constructor(dir: string, opts: FileAccessOptions = {}) {
    this.dir = dir
    this.access = { followSymlinks: opts.followSymlinks === true }
  }

  where(name: string): string {
    return path.join(this.dir, name)
  }

  has(name: string): boolean {
    return fs.existsSync(path.join(this.dir, name))
  }

  isFile(name: string): boolean {
    try {
      return fs.statSync(path.join(this.dir, name)).isFile()
    } catch {
      return false
    }
  }

  names(limit = Infinity): string[] | null {
    const names: string[] = []
    try {
      const d = fs.opendirSync(this.dir)
      try {
        for (let e = d.readSync(); e !== null && names.length < limit; e = d.readSync()) names.push(e.name)
      } finally {
        d.closeSync()
      }
    } catch {
      return null
    }
    return names
  }

  child(name: string): string | null {
    const dir = path.resolve(this.dir)
    const file = path.resolve(dir, name)
    const rel = path.relative(dir, file)
    const escapes = rel === '' || rel === '..' || rel.startsWith('..' + path.sep) || path.isAbsolute(rel)
    if (name === '' || name.includes('\0') || path.isAbsolute(name) || escapes) return null
    return rel
  }

  locate(name: string, errorClass: ErrorClass): string {
    return insideFolder(this.dir, name, this.access, errorClass)
  }

  open(name: string, real: string): RandomAccessFile {
    return RandomAccessFile.open(path.join(this.dir, name), real)
  }

  readFile(name: string, what: string, max: number, errorClass: ErrorClass): { bytes: Uint8Array; where: string } {
    const real = this.locate(name, errorClass)
    return { bytes: readFileCapped(real, what, max, errorClass), where: path.resolve(real) }
  }

  readText(name: string, what: string, max: number, errorClass: ErrorClass, fatal = false): { text: string; where: string } {
    const { bytes, where } = this.readFile(name, what, max, errorClass)
    return { text: decodeText(bytes, what, where, errorClass, fatal), where }
  }
}

/** A folder on disk as a ModelFolder. */
export function nodeFolder(dir: string, opts: FileAccessOptions = {}): NodeFolder {
  return new NodeFolder(dir, opts)
}

/** The folder a path or a model id in the Hugging Face / ModelScope caches names (io/hub.ts); it may not exist. */
export function locateFolder(idOrDir: string, opts: { revision?: string; followSymlinks?: boolean }): NodeFolder {
  return nodeFolder(locateModel(idOrDir, { revision: opts.revision }).dir, opts)
}

/** loadModel's folder: locateFolder's, which must exist. */
export function modelFolder(idOrDir: string, opts: { revision?: string; followSymlinks?: boolean }): ModelFolder {
  const folder = locateFolder(idOrDir, opts)
  if (!fs.existsSync(folder.dir))
    throw new ConfigError({ where: folder.dir, what: 'model folder not found', hint: 'pass a folder with config.json and model weights' })
  return folder
}

/**
 * A model folder about to be searched for weights (`lookedFor`: the file names, for the message). On disk,
 * as openCheckpoint(dir) always did: the folder made absolute, and a missing folder or a file refused.
 */
export function checkModelFolder(folder: ModelFolder, lookedFor: string): ModelFolder {
  if (!(folder instanceof NodeFolder)) return folder
  const abs = path.resolve(folder.dir)
  checkFolder(abs, lookedFor)
  return abs === folder.dir ? folder : new NodeFolder(abs, folder.access)
}

function checkFolder(dir: string, lookedFor: string): void {
  let st: fs.Stats
  try {
    st = fs.statSync(dir)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException | undefined)?.code
    if (code !== undefined && code !== 'ENOENT' && code !== 'ENOTDIR') {
      throw new CheckpointError({ what: `cannot read the model folder (${code})`, where: dir }, { cause: e })
    }
    throw new CheckpointError({
      what: 'model folder not found',
      where: dir,
      expected: `a folder with one of ${lookedFor}`,
      hint: 'pass the folder that holds config.json and the weights (model.safetensors or pytorch_model.bin)',
    })
  }
  if (!st.isDirectory()) {
    throw new CheckpointError({
      what: 'is not a folder',
      where: dir,
      hint: 'pass the model folder; a single weights file can be opened with openSafetensors/openTorchBin',
    })
  }
}

/** loadTokenizer's folder: a path, or a model id (no such folder here) in the caches. */
export function tokenizerFolder(dir: string, opts: { revision?: string; followSymlinks?: boolean }): ModelFolder {
  if (isModelId(dir) && !fs.existsSync(dir)) dir = resolveModelDir(dir, { revision: opts.revision })
  let isDir = false
  try {
    isDir = fs.statSync(dir).isDirectory()
  } catch {
    throw new TokenizerError({ what: 'tokenizer folder not found', where: dir, hint: 'pass the model folder that holds tokenizer.json or vocab.json + merges.txt' })
  }
  if (!isDir) {
    throw new TokenizerError({ what: 'not a folder', where: dir, expected: 'a model folder', hint: 'pass the folder, not a file inside it' })
  }
  return nodeFolder(dir, opts)
}
