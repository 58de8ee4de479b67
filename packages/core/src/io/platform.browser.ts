// platform.ts for a page (package.json's "browser" map puts this file in its place in a bundle): no file
// system, no zlib. A model folder is a ModelFolder from browser.ts (picked files, a URL); what needs a path
// says so in one line.

import { CheckpointError, UsageError, type ErrorDetails } from '../errors.js'
import { RandomAccessBase } from './access.js'
import { crc32Table } from './crc32.js'
import { FILE_CAPS, type ModelFolder } from './folder.js'

export { FILE_CAPS }

/** Which host this build runs on. */
export const HOST = 'browser'

const NO_PATHS: ErrorDetails = {
  what: 'a page has no file system',
  expected: 'a ModelFolder: filesFolder(files) for picked files, urlFolder(url) for a model folder on a server',
  hint: 'pass the folder object to loadModel / loadTokenizer instead of a path or model id',
}

/** Files on disk cannot be opened in a page. */
export class RandomAccessFile extends RandomAccessBase {
  static open(file: string, _openPath?: string): RandomAccessFile {
    throw new CheckpointError({ ...NO_PATHS, where: file })
  }
  protected fill(): void {}
  protected release(): void {}
}

export function fsError(file: string, _e: unknown): CheckpointError {
  return new CheckpointError({ ...NO_PATHS, where: file })
}

/** CRC-32 (the table; a page has no zlib). */
export function crc32(data: ArrayBufferView): number {
  return crc32Table(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
}

/** torch.save never compresses storages; a re-packed (deflated) .bin needs Node. */
export function inflateRaw(_compressed: Uint8Array, _maxOutputLength: number): Uint8Array {
  throw new Error('deflate-compressed zip entries are not read in a page (torch.save stores them uncompressed); convert the checkpoint to safetensors')
}

export function locateFolder(idOrDir: string, _opts?: unknown): ModelFolder {
  throw new UsageError({ ...NO_PATHS, found: idOrDir })
}

export function modelFolder(idOrDir: string, _opts?: unknown): ModelFolder {
  throw new UsageError({ ...NO_PATHS, found: idOrDir })
}

export function tokenizerFolder(dir: string, _opts?: unknown): ModelFolder {
  throw new UsageError({ ...NO_PATHS, found: dir })
}

/** Picked files and URLs need no check before the weights are looked for. */
export function checkModelFolder(folder: ModelFolder, _lookedFor: string): ModelFolder {
  return folder
}
