// @refgpt/core in a page (the package's "./browser" export): loading a model folder from picked files or a
// URL, the tokenizers, generation and the devices, with no Node built-in reached through the modules this
// package owns for loading (io/platform.browser.ts stands in for io/platform.ts; see packages/web).
// The Node entry (index.ts) exports everything else: paths and model ids, the hub caches, writers,
// training, evaluation, golden files, ONNX export.
export * from './errors.js'
export type { Checkpoint, CheckpointFormat, DType, TensorInfo } from './io/types.js'
export { settle, NeedData, type RandomAccess } from './io/access.js'
export { openCheckpointIn, readFolderJson, type LoadedCheckpoint } from './io/checkpoint.js'
export { FILE_CAPS, isModelFolder, type ModelFolder } from './io/folder.js'
export { filesFolder, urlFolder, FilesFolder, UrlFolder, FetchingFolder, type NamedBlob } from './io/browser.js'
export { HOST } from './io/platform.js'
export type { Tokenizer, DecodeOptions, LoadTokenizerOptions } from './tokenizers/index.js'
export { StreamDecoder, TextStream, loadTokenizer, loadTokenizerAsync, fromVocabMerges, fromTokenizerJson } from './tokenizers/index.js'
export type { Activation, AttentionOptions, Buf, Device, DeviceLimits, Storage } from './device/types.js'
export { createDevice, registerDevice, deviceNames, resolveDeviceName } from './device/registry.js'
export type { DeviceFactory, DeviceOptions } from './device/registry.js'
export { loadModel, inspectModel, folderKind, DEVICES } from './models/model.js'
export type { DeviceName, LoadOptions, Model, ModelInfo, FolderKind, StaticGraphOptions } from './models/model.js'
export { DecoderSession } from './models/decoder.js'
export type { Session } from './models/decoder.js'
export { generate, generateStream, Generation, defaultEos } from './generation/generate.js'
export type { GenerateOptions, GenerateResult, GeneratedSequence, FinishReason } from './generation/generate.js'
export { resolveGenerationConfig, HF_DEFAULTS } from './generation/config.js'
export type { GenerationConfig, GenerationOptions } from './generation/config.js'
export { modelscopeGenerate, isModelscopeModel } from './generation/modelscope.js'
export { collectTrace } from './trace/tracer.js'
export type { Tracer, TraceEvent, CollectedTrace } from './trace/tracer.js'
// the step-through view: stages of one traced forward (trace/step.ts) and their HTML (trace/step-html.ts)
export * as stepThrough from './trace/step.js'
export * as stepHtml from './trace/step-html.js'
// ONNX Runtime in a page: a model (loaded on the js device) exported to ONNX bytes and run by the
// onnxruntime-web module the page passes in — its wasm provider, or WebNN (NPUs, GPUs) with static graphs
export { ortModel, OrtSession } from './offload/ort.js'
export type { OrtLike, OrtModelOptions } from './offload/ort.js'
export { onnxBytes } from './export/onnx.js'
