// Model folders a page can read (they need no Node built-in; Node 20 has fetch and Blob too):
//
//   filesFolder(files)   File / Blob objects: a directory picker's files (webkitRelativePath "folder/x"
//                        is taken as "x") or several picked files, or [name, Blob] pairs
//   urlFolder(url)       a model folder on a server, read with HTTP range requests (fetch with Range):
//                        the config and tokenizer files whole, the weights by range, a layer at a time
//
// Reads are synchronous (access.ts): a fact or a range not fetched yet throws NeedData, and settle()
// fetches it and runs the step again. What is fetched is kept per file: the whole small files, and the
// ranges the checkpoint readers asked for (headers, zip directories, data.pkl); tensor data is fetched by
// Checkpoint.prefetch before each layer is placed and dropped after it.

import { CheckpointError, show } from '../errors.js'
import { NeedData, RandomAccessBase, type RandomAccess } from './access.js'
import { decodeText, type ErrorClass, type ModelFolder } from './folder.js'

/** Bytes fetched at least per miss while a reader parses (headers, zip directories): fewer round trips. */
const MIN_FETCH = 64 << 10
/** Ranges at most this far apart are fetched as one request when tensors are prefetched. */
const MERGE_GAP = 64 << 10
/** Prefetch requests in flight at once. */
const PARALLEL_FETCHES = 4

/** What a folder knows about one of its files once it has looked. */
interface FileFacts {
  size: number
  /** Whether byte ranges can be read (a server that ignores Range cannot serve weights). */
  ranges: boolean
}

/** A range of a file held in memory. */
interface Chunk {
  position: number
  bytes: Uint8Array
}

function findChunk(chunks: readonly Chunk[], position: number, length: number): Chunk | undefined {
  for (const c of chunks) if (c.position <= position && position + length <= c.position + c.bytes.length) return c
  return undefined
}

/** A folder whose files are fetched (from Blobs or a server); the common part of filesFolder and urlFolder. */
export abstract class FetchingFolder implements ModelFolder {
  private readonly facts = new Map<string, FileFacts | null>()
  private readonly wholes = new Map<string, Uint8Array>()
  private readonly parsed = new Map<string, Chunk[]>()

  constructor(readonly dir: string) {}

  abstract where(name: string): string
  /** Whether the file exists, its size and whether ranges can be read (null: no such file). */
  protected abstract probe(name: string): Promise<FileFacts | null>
  /** Exactly `length` bytes at `position` of file `name`. */
  protected abstract fetchRange(name: string, position: number, length: number): Promise<Uint8Array>
  /** The whole file `name`. */
  protected abstract fetchWhole(name: string): Promise<Uint8Array>

  /** Records facts (and maybe the first bytes) a subclass learned without a probe. */
  protected know(name: string, facts: FileFacts | null, head?: Uint8Array): void {
    this.facts.set(name, facts)
    if (facts && head) {
      if (head.length === facts.size) this.wholes.set(name, head)
      else this.chunksOf(name).push({ position: 0, bytes: head })
    }
  }

  private lookup(name: string): FileFacts | null {
    if (this.facts.has(name)) return this.facts.get(name)!
    throw new NeedData(`whether ${this.where(name)} exists`, async () => {
      if (!this.facts.has(name)) this.know(name, await this.probe(name))
    })
  }

  private chunksOf(name: string): Chunk[] {
    let c = this.parsed.get(name)
    if (!c) this.parsed.set(name, (c = []))
    return c
  }

  has(name: string): boolean {
    return this.lookup(name) !== null
  }

  isFile(name: string): boolean {
    return this.lookup(name) !== null
  }

  /** The names this folder knows to exist. */
  names(limit = Infinity): string[] | null {
    const out: string[] = []
    for (const [name, f] of this.facts) if (f && out.length < limit) out.push(name)
    return out
  }

  /** A POSIX-style relative name inside the folder ("./a/b" -> "a/b"); null when it leads out. */
  child(name: string): string | null {
    if (name === '' || name.includes('\0') || name.startsWith('/') || name.includes('\\') || /^[A-Za-z]:/.test(name)) return null
    const parts: string[] = []
    for (const p of name.split('/')) {
      if (p === '' || p === '.') continue
      if (p === '..') {
        if (parts.length === 0) return null
        parts.pop()
      } else parts.push(p)
    }
    return parts.length ? parts.join('/') : null
  }

  /** No links: a file is what its name says. */
  locate(name: string, _errorClass: ErrorClass): string {
    return name
  }

  open(name: string, _real: string): RandomAccess {
    const facts = this.lookup(name)
    if (!facts) throw new CheckpointError({ what: 'file does not exist', where: this.where(name) })
    if (!facts.ranges) {
      throw new CheckpointError({
        what: 'the server does not support HTTP range requests',
        where: this.where(name),
        expected: 'a 206 Partial Content answer to a request with a Range header',
        found: 'a 200 answer with the whole file',
        hint: 'serve the folder with a server that supports Range (node packages/web/serve.mjs does), or pick the files from disk',
      })
    }
    return new FetchedFile(this, name, facts.size)
  }

  readFile(name: string, what: string, max: number, errorClass: ErrorClass): { bytes: Uint8Array; where: string } {
    const where = this.where(name)
    const facts = this.lookup(name)
    if (!facts) throw new errorClass({ what: `${what} does not exist`, where })
    if (facts.size > max) throw new errorClass({ what: `${what} is too large`, where, expected: `at most ${max} bytes`, found: `${facts.size} bytes` })
    const whole = this.wholes.get(name)
    if (whole) return { bytes: whole, where }
    throw new NeedData(where, async () => {
      const bytes = await this.fetchWhole(name)
      if (bytes.length !== facts.size) throw new errorClass({ what: `${what} changed while it was read`, where, expected: `${facts.size} bytes`, found: `${bytes.length}` })
      this.wholes.set(name, bytes)
    })
  }

  readText(name: string, what: string, max: number, errorClass: ErrorClass, fatal = false): { text: string; where: string } {
    const { bytes, where } = this.readFile(name, what, max, errorClass)
    return { text: decodeText(bytes, what, where, errorClass, fatal), where }
  }

  /** Fills dst from what was fetched of `name` (whole, or a range a reader asked for before), else NeedData. */
  readKept(name: string, dst: Uint8Array, position: number): boolean {
    const whole = this.wholes.get(name)
    const c = whole ? { position: 0, bytes: whole } : findChunk(this.chunksOf(name), position, dst.length)
    if (!c) return false
    dst.set(c.bytes.subarray(position - c.position, position - c.position + dst.length))
    return true
  }

  /** NeedData for a range of `name` a reader asked for: fetched (at least MIN_FETCH bytes) and kept. */
  needRange(name: string, position: number, length: number, size: number): NeedData {
    return new NeedData(`${length} bytes at ${position} of ${this.where(name)}`, async () => {
      const len = Math.min(size - position, Math.max(length, MIN_FETCH))
      this.chunksOf(name).push({ position, bytes: await this.range(name, position, len) })
    })
  }

  /** fetchRange, checked to return what was asked for. */
  async range(name: string, position: number, length: number): Promise<Uint8Array> {
    const bytes = await this.fetchRange(name, position, length)
    if (bytes.length !== length) {
      throw new CheckpointError({ what: 'a range read returned the wrong length', where: this.where(name), expected: `${length} bytes at ${position}`, found: `${bytes.length}` })
    }
    return bytes
  }
}

/**
 * A weights file of a FetchingFolder: reads from what was fetched. prefetch() fetches a layer's tensors;
 * the ranges of the last two calls are kept, so that the loader can fetch the next layer while it places
 * this one.
 */
class FetchedFile extends RandomAccessBase {
  /** The chunks of the last two prefetch calls, oldest first (the newest may still be filling). */
  private kept: Chunk[][] = []

  constructor(
    private readonly folder: FetchingFolder,
    private readonly name: string,
    size: number,
  ) {
    super(folder.where(name), size)
  }

  protected fill(dst: Uint8Array, position: number): void {
    for (const chunks of this.kept) {
      const c = findChunk(chunks, position, dst.length)
      if (c) {
        dst.set(c.bytes.subarray(position - c.position, position - c.position + dst.length))
        return
      }
    }
    if (!this.folder.readKept(this.name, dst, position)) throw this.folder.needRange(this.name, position, dst.length, this.size)
  }

  protected release(): void {
    this.kept = []
  }

  async prefetch(ranges: readonly (readonly [number, number])[]): Promise<void> {
    // a new generation at once (synchronously): the one before it stays, the older ones go
    const out: Chunk[] = []
    this.kept = [...this.kept.slice(-1), out]
    const sorted = [...ranges].filter(([, n]) => n > 0).sort((a, b) => a[0] - b[0])
    const merged: [number, number][] = []
    for (const [p, n] of sorted) {
      const last = merged[merged.length - 1]
      if (last && p <= last[0] + last[1] + MERGE_GAP) last[1] = Math.max(last[1], p + n - last[0])
      else merged.push([p, n])
    }
    for (let i = 0; i < merged.length; i += PARALLEL_FETCHES) {
      const batch = merged.slice(i, i + PARALLEL_FETCHES)
      const got = await Promise.all(batch.map(([p, n]) => this.folder.range(this.name, p, n)))
      batch.forEach(([p], k) => out.push({ position: p, bytes: got[k] }))
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Picked files

/** A picked file: a File (name, webkitRelativePath) or a Blob with a name. */
export interface NamedBlob {
  readonly size: number
  slice(start?: number, end?: number): { arrayBuffer(): Promise<ArrayBuffer> }
  arrayBuffer(): Promise<ArrayBuffer>
  readonly name?: string
  readonly webkitRelativePath?: string
}

/** The File / Blob objects of a model folder. */
export class FilesFolder extends FetchingFolder {
  private readonly blobs = new Map<string, NamedBlob>()

  /**
   * `files`: File objects (a directory picker's "folder/config.json" is taken as "config.json"; files
   * in sub-folders keep their path below the folder) or [name, Blob] pairs. `label` names the folder in messages.
   */
  constructor(files: Iterable<NamedBlob | readonly [string, NamedBlob]>, label?: string) {
    const list: [string, NamedBlob][] = []
    let top: string | undefined
    for (const f of files) {
      if (Array.isArray(f)) list.push([f[0], f[1]])
      else {
        const b = f as NamedBlob
        const rel = b.webkitRelativePath || b.name || ''
        const cut = rel.indexOf('/')
        if (b.webkitRelativePath && cut > 0) top ??= rel.slice(0, cut)
        list.push([b.webkitRelativePath && cut > 0 ? rel.slice(cut + 1) : rel, b])
      }
    }
    super(label ?? (top !== undefined ? `${top} (picked folder)` : 'picked files'))
    for (const [name, blob] of list) {
      if (name === '' || this.blobs.has(name)) throw new CheckpointError({ what: name === '' ? 'a picked file has no name' : `two picked files are called ${show(name)}`, where: this.dir })
      this.blobs.set(name, blob)
      this.know(name, { size: blob.size, ranges: true })
    }
  }

  where(name: string): string {
    return `${this.dir}: ${name}`
  }

  /** Every picked file is known; any other name is missing (no fetch). */
  protected async probe(_name: string): Promise<FileFacts | null> {
    return null
  }

  override has(name: string): boolean {
    return this.blobs.has(name)
  }

  override isFile(name: string): boolean {
    return this.blobs.has(name)
  }

  protected async fetchRange(name: string, position: number, length: number): Promise<Uint8Array> {
    return new Uint8Array(await this.blobs.get(name)!.slice(position, position + length).arrayBuffer())
  }

  protected async fetchWhole(name: string): Promise<Uint8Array> {
    return new Uint8Array(await this.blobs.get(name)!.arrayBuffer())
  }
}

/** A model folder from picked files (a directory picker's, or several files). */
export function filesFolder(files: Iterable<NamedBlob | readonly [string, NamedBlob]>, label?: string): FilesFolder {
  return new FilesFolder(files, label)
}

// ---------------------------------------------------------------------------------------------------
// A URL

/** A model folder on a server: `base` is the folder's URL (a trailing slash is added). */
export class UrlFolder extends FetchingFolder {
  private readonly base: string

  constructor(base: string) {
    const b = base.endsWith('/') ? base : base + '/'
    super(b)
    this.base = b
  }

  where(name: string): string {
    return new URL(name.split('/').map(encodeURIComponent).join('/'), this.base).href
  }

  private async get(name: string, range?: [number, number]): Promise<Response> {
    const url = this.where(name)
    let res: Response
    try {
      res = await fetch(url, range ? { headers: { Range: `bytes=${range[0]}-${range[1] - 1}` } } : {})
    } catch (e) {
      throw new CheckpointError({ what: 'cannot fetch the file', where: url, found: e instanceof Error ? e.message : String(e), hint: 'check the URL and that the server allows this page to read it (CORS)' }, { cause: e })
    }
    return res
  }

  /** A GET of the first MIN_FETCH bytes: 206 (ranges; size from Content-Range), 200 (no ranges), 404 (missing). */
  protected async probe(name: string): Promise<FileFacts | null> {
    const res = await this.get(name, [0, MIN_FETCH])
    if (res.status === 404 || res.status === 410) {
      await res.body?.cancel()
      return null
    }
    if (res.status === 416) return { size: 0, ranges: true } // an empty file: no range to give
    if (res.status === 206) {
      const m = /^bytes\s+(\d+)-(\d+)\/(\d+)$/.exec(res.headers.get('content-range') ?? '')
      if (!m || Number(m[1]) !== 0) throw this.badAnswer(name, `Content-Range ${show(res.headers.get('content-range'))}`)
      const facts = { size: Number(m[3]), ranges: true }
      this.know(name, facts, new Uint8Array(await res.arrayBuffer()))
      return facts
    }
    if (res.status === 200) {
      // no range support: small files are still readable whole (this answer holds them)
      const length = Number(res.headers.get('content-length') ?? NaN)
      if (Number.isFinite(length) && length > 64 << 20) {
        await res.body?.cancel()
        return { size: length, ranges: false }
      }
      const bytes = new Uint8Array(await res.arrayBuffer())
      const facts = { size: bytes.length, ranges: false }
      this.know(name, facts, bytes)
      return facts
    }
    await res.body?.cancel()
    throw this.badAnswer(name, `HTTP ${res.status} ${res.statusText}`)
  }

  private badAnswer(name: string, found: string): CheckpointError {
    return new CheckpointError({ what: 'unexpected answer from the server', where: this.where(name), expected: '200, 206 or 404', found })
  }

  protected async fetchRange(name: string, position: number, length: number): Promise<Uint8Array> {
    const res = await this.get(name, [position, position + length])
    if (res.status !== 206) {
      await res.body?.cancel()
      if (res.status === 200) throw new CheckpointError({ what: 'the server does not support HTTP range requests', where: this.where(name), expected: '206 Partial Content', found: '200 with the whole file', hint: 'serve the folder with node packages/web/serve.mjs, or pick the files from disk' })
      throw this.badAnswer(name, `HTTP ${res.status} ${res.statusText}`)
    }
    return new Uint8Array(await res.arrayBuffer())
  }

  protected async fetchWhole(name: string): Promise<Uint8Array> {
    const res = await this.get(name)
    if (res.status !== 200) {
      await res.body?.cancel()
      throw this.badAnswer(name, `HTTP ${res.status} ${res.statusText}`)
    }
    return new Uint8Array(await res.arrayBuffer())
  }
}

/** A model folder on a server (HTTP range requests for the weights). */
export function urlFolder(base: string): UrlFolder {
  return new UrlFolder(base)
}
