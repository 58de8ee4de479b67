// @refgpt/core: everything a program needs to run a GPT-2 / GPT-Neo / GPT-J checkpoint or a ModelScope GPT-3 folder.
export * from './errors.js'
export type { Checkpoint, CheckpointFormat, DType, TensorInfo } from './io/types.js'
export { openCheckpoint, openSafetensors, openTorchBin, readJsonFile } from './io/index.js'
export { f16ToF32Array, bf16ToF32Array, f32ToF16Array, f32ToBf16Array } from './io/dtype.js'
export type { Tokenizer, DecodeOptions } from './tokenizers/index.js'
export { StreamDecoder, loadTokenizer, fromVocabMerges, fromTokenizerJson } from './tokenizers/index.js'
export { WordPieceTokenizer, fromVocabTxt, parseVocabTxt, cleanUp as cleanUpWordPiece } from './tokenizers/wordpiece.js'
export type { WordPieceOptions } from './tokenizers/wordpiece.js'
export type { Activation, AttentionOptions, Buf, Device, DeviceLimits, Storage } from './device/types.js'
export { quantizeQ8, dequantizeQ8, storedValues, storageBytes, rotaryTable, Q8_BLOCK } from './device/storage.js'
export { createDevice, registerDevice, deviceNames } from './device/registry.js'
export type { DeviceFactory, DeviceOptions } from './device/registry.js'
export { createJsDevice } from './device/js.js'
export type { JsDeviceOptions } from './device/js.js'
export { createWasmDevice } from './device/wasm.js'
export type { WasmDevice, WasmDeviceOptions } from './device/wasm.js'
export type { Arch, Family, LayerKind, Traits, Weight } from './models/arch.js'
export { FAMILIES } from './models/registry.js'
export type { FamilyModule } from './models/registry.js'
export { loadModel, loadRandomModel, randomWeights, inspectModel, DEVICES } from './models/model.js'
export { SHAPES, shapeConfig } from './models/random.js'
export type { DeviceName, LoadOptions, Model, ModelInfo } from './models/model.js'
export { Session } from './models/decoder.js'
export type { ForwardOptions, LogProbsOptions, SessionOptions } from './models/decoder.js'
export { generate, generateStream, Generation, defaultEos } from './generation/generate.js'
export type { GenerateOptions, GenerateResult, GeneratedSequence } from './generation/generate.js'
export { argmax, softmax, logSoftmax, logSumExp, topK, rankDescending } from './generation/logits.js'
export { resolveGenerationConfig, HF_DEFAULTS } from './generation/config.js'
export type { GenerationConfig } from './generation/config.js'
export { processLogits, buildLogitsProcessor, describeChain } from './generation/processors.js'
export type { LogitsChain, LogitsProcessorFn, ProcessorName } from './generation/processors.js'
export { createSampler, randomSeed } from './generation/sampler.js'
export {
  modelscopeGenerate,
  modelscopeGenerateIds,
  modelscopeEncode,
  modelscopeFilter,
  modelscopePostprocess,
  modelscopeSequenceLength,
  removeSpaceBetweenChineseChars,
  isModelscopeModel,
} from './generation/modelscope.js'
export type { ModelscopeGenerateOptions, ModelscopeResult } from './generation/modelscope.js'
export type { Sampler } from './generation/sampler.js'
export { collectTrace } from './trace/tracer.js'
export type { Tracer, TraceEvent, CollectedTrace } from './trace/tracer.js'
export { pipeline } from './pipeline.js'
export type { TextGenerationPipeline, TextGenerationOutput } from './pipeline.js'
export { exportGolden, readGolden, verifyGolden, packGolden, tensorFilter, goldenTensor, defaultTolerance, GOLDEN_FORMAT, GOLDEN_VERSION } from './trace/golden.js'
export type { Golden, GoldenTensor, ExportGoldenOptions, VerifyOptions, VerifyRow } from './trace/golden.js'
