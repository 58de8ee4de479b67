// Evaluation with lm-evaluation-harness's definitions: perplexity (rolling and sliding windows, word /
// byte perplexity, bits per byte), LAMBADA, multiple choice (acc, acc_norm), lm-eval's stderrs.
export { Scorer } from './scorer.js'
export type { ScoreResult, ScorerOptions, ScorerStats } from './scorer.js'
export { getRollingTokenWindows, makeDisjointWindow, rollingRequests, slidingWindows, slidingRequest } from './windows.js'
export type { SlidingWindow, TokenRequest } from './windows.js'
export { wikitextDetokenizer, hellaswagPreprocess, countWords, countBytes, pyCapitalize, pyStrip, pyLen } from './text.js'
export { CHOICE_FORMATS, lambadaSplit, parseChoiceRow, parseEvalData, taskMetrics } from './tasks.js'
export type { ChoiceDoc, ChoiceFormat, EvalDoc, EvalTask, TextDoc } from './tasks.js'
export { aggregate, choiceResult, defaultPrefixToken, encodeRequest, perplexityRequests, runTask, scoreItem } from './evaluate.js'
export type { AggregateOptions, ChoiceItemResult, ItemResult, LambadaItemResult, MetricValue, PerplexityItemResult, PerplexityWindowResult, RunOptions, TaskResult } from './evaluate.js'
export { BOOTSTRAP_ITERS, bitsPerByte, bootstrapStderrOfMean, mean, meanStderr, perplexity, sampleStddev, weightedMean, weightedPerplexity } from './metrics.js'
export { PyRandom } from './pyrandom.js'
