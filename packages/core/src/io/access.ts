// Byte access to one file of a model folder, whatever holds it: a file on disk (platform.ts, Node), a File
// or Blob a page was given, or a URL read with HTTP range requests (browser.ts). The checkpoint readers
// (safetensors.ts, zip.ts, torch.ts) parse through this interface only, so one copy of the parsing serves
// every source.
//
// Reads are synchronous. A source that must wait for its bytes (a Blob, a URL) keeps the ranges it has
// fetched and throws NeedData for a range it does not have yet; settle() runs a synchronous step (opening
// a checkpoint, reading a config), fetches what it asked for, and runs it again until it completes.
// Loading places each layer after fetching its tensors' ranges (Checkpoint.prefetch), so no placement
// ever has to be undone.

import { CheckpointError } from '../errors.js'

/** Random access to the bytes of one file. */
export interface RandomAccess {
  /** How messages name the file: an absolute path, a URL, or a picked file's name. */
  readonly path: string
  readonly size: number
  readonly closed: boolean
  /** Reads `length` bytes at `position` into a new array (bounds-checked before allocating). */
  read(position: number, length: number): Uint8Array
  /** Fills `dst` with the bytes at `position`; the range must lie inside the file. */
  readInto(dst: Uint8Array, position: number): void
  /** Runs `fn` when the file is closed (frees what was cached from it). */
  onClose(fn: () => void): void
  close(): void
  /**
   * Sources that fetch: makes [position, position + length) of each range readable without waiting (and
   * may drop what earlier calls kept). Absent on sources that read at once.
   */
  prefetch?(ranges: readonly (readonly [number, number])[]): Promise<void>
}

/** The checks and bookkeeping every RandomAccess shares; a source implements fill() and release(). */
export abstract class RandomAccessBase implements RandomAccess {
  private isClosed = false
  private readonly closeHooks: (() => void)[] = []

  constructor(
    readonly path: string,
    readonly size: number,
  ) {}

  /** Reads exactly dst.length bytes at `position` (already checked to lie inside the file). */
  protected abstract fill(dst: Uint8Array, position: number): void
  /** Frees what the source holds (a descriptor). */
  protected abstract release(): void

  onClose(fn: () => void): void {
    this.closeHooks.push(fn)
  }

  get closed(): boolean {
    return this.isClosed
  }

  read(position: number, length: number): Uint8Array {
    this.checkRange(position, length)
    const out = new Uint8Array(length)
    this.readInto(out, position)
    return out
  }

  readInto(dst: Uint8Array, position: number): void {
    this.checkRange(position, dst.length)
    if (this.isClosed) throw new CheckpointError({ what: 'read after the checkpoint was closed', where: this.path })
    this.fill(dst, position)
  }

  close(): void {
    if (this.isClosed) return
    this.isClosed = true
    this.release()
    for (const fn of this.closeHooks.splice(0)) fn()
  }

  private checkRange(position: number, length: number): void {
    if (!Number.isSafeInteger(position) || !Number.isSafeInteger(length) || position < 0 || length < 0 ||
        position + length > this.size) {
      throw new CheckpointError({
        what: 'read past the end of the file',
        where: this.path,
        expected: `a range inside ${this.size} bytes`,
        found: `${length} bytes at offset ${position}`,
      })
    }
  }
}

/**
 * Thrown by a source that does not hold the bytes (or the fact) asked for yet; `load()` fetches them.
 * Not a RefgptError: it is never a user's error, and nothing between a source and settle() may catch it.
 */
export class NeedData extends Error {
  constructor(
    readonly what: string,
    readonly load: () => Promise<void>,
  ) {
    super(`refgpt: ${what} is not fetched yet (run this step through settle())`)
    this.name = 'NeedData'
  }
}

/** Most fetches one settle() makes before it gives up (a step that keeps asking is a bug, not a slow server). */
export const MAX_SETTLE_ROUNDS = 100_000

/**
 * Runs a synchronous step over sources that may fetch: each NeedData it throws is loaded and the step run
 * again, until it returns or throws something else. Over the file system the step runs once.
 */
export async function settle<T>(step: () => T): Promise<T> {
  for (let round = 0; ; round++) {
    try {
      return step()
    } catch (e) {
      if (!(e instanceof NeedData) || round >= MAX_SETTLE_ROUNDS) throw e
      await e.load()
    }
  }
}
