// Opening checkpoints on disk: a model folder, one weights file, a JSON file. The format detection, the
// sharded indexes and the Checkpoint object are checkpoint.ts's, shared with the other sources of a model
// folder (a page's files or URL: browser.ts).
//
//   openCheckpoint(dir, { variant, followSymlinks })   model folder -> Checkpoint
//   openSafetensors(file)                              one .safetensors file
//   openTorchBin(file)                                 one torch.save zip (pytorch_model.bin)
//   readJsonFile(file, what)                           JSON with one-line errors naming the file
//
// Every file openCheckpoint opens (weights, index, shards) is resolved with insideFolder: one whose real
// location is outside the model folder (a symlink out, `..` in an index) is refused unless followSymlinks.

import * as path from 'node:path'
import { CheckpointError, UsageError, show } from '../errors.js'
import { openCheckpointIn, parseJson, single, type LoadedCheckpoint, type OpenCheckpointOptions } from './checkpoint.js'
import { FILE_CAPS, readTextCapped, type ErrorClass } from './files.js'
import { NodeFolder } from './platform.js'
import { loadSafetensorsFile } from './safetensors.js'
import { loadTorchFile } from './torch.js'

export {
  MAX_JSON_VALUES, MAX_SHARDS, addVariant, countJsonValues, openCheckpointIn, readFolderJson,
  type LoadedCheckpoint, type OpenCheckpointOptions, type UnsupportedTensor,
} from './checkpoint.js'
// model folders that are not paths (loadModel / loadTokenizer take them too; settle() runs a synchronous
// step over a folder that fetches)
export { NeedData, settle, type RandomAccess } from './access.js'
export { FilesFolder, UrlFolder, filesFolder, urlFolder, type NamedBlob } from './browser.js'
export { isModelFolder, type ModelFolder } from './folder.js'
export { NodeFolder, nodeFolder } from './platform.js'

function checkPathArgument(file: unknown, what: string): asserts file is string {
  if (typeof file !== 'string' || file === '') {
    throw new UsageError({ what: `${what} is not a path`, expected: 'a non-empty string', found: show(file) })
  }
}

// ---------------------------------------------------------------------------------------------------
// Single files

/** Opens one .safetensors file. */
export function openSafetensors(file: string): LoadedCheckpoint {
  checkPathArgument(file, 'safetensors file')
  const f = loadSafetensorsFile(file)
  return single('safetensors', f, path.dirname(f.file))
}

/** Opens one torch.save zip checkpoint (pytorch_model.bin). */
export function openTorchBin(file: string): LoadedCheckpoint {
  checkPathArgument(file, 'torch checkpoint file')
  const f = loadTorchFile(file)
  return single('pytorch-bin', f, path.dirname(f.file))
}

// ---------------------------------------------------------------------------------------------------
// Model folders

/**
 * Opens the weights of a Hugging Face model folder, looking (like from_pretrained) for model.safetensors,
 * then model.safetensors.index.json, then pytorch_model.bin, then pytorch_model.bin.index.json, with the
 * variant inserted before the extension when given.
 */
export function openCheckpoint(dir: string, opts: OpenCheckpointOptions = {}): LoadedCheckpoint {
  checkPathArgument(dir, 'model folder')
  return openCheckpointIn(new NodeFolder(dir, { followSymlinks: opts?.followSymlinks === true }), { variant: opts?.variant })
}

// ---------------------------------------------------------------------------------------------------
// JSON

/**
 * Reads and parses a JSON file. A missing, unreadable, oversized (FILE_CAPS.json), non-UTF-8 or malformed
 * file is a one-line error of class `ErrorClass` (CheckpointError unless told, e.g. ConfigError for
 * config.json) naming the file; `what` says what the file is ("config", "sharded checkpoint index").
 * A UTF-8 byte order mark is dropped.
 */
export function readJsonFile(file: string, what: string, ErrorClass: ErrorClass = CheckpointError): unknown {
  if (typeof file !== 'string' || file === '') throw new ErrorClass({ what: `${what} path is not a string`, found: show(file) })
  return parseJson(readTextCapped(file, what, FILE_CAPS.json, ErrorClass, true), path.resolve(file), what, ErrorClass)
}
