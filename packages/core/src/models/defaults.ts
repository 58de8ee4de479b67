// The default models: two small language models refgpt trained itself on text Debian ships
// (scripts/train-default-models.mjs; docs/default-models.md has the run, the curves and the measurements).
//   en  fortunes-neo-en    GPT-Neo, 6 layers, hidden 128, the GPT-2 BPE tokenizer, on the English fortunes
//   zh  fortunes-gpt3-zh   ModelScope GPT-3, 4 layers, hidden 256, a character vocab.txt, on fortunes-zh
// They ship in packages/core/assets/models as BF16 weights.

import { fileURLToPath } from 'node:url'
import { UsageError, show } from '../errors.js'

export const DEFAULT_MODEL_NAMES = { en: 'fortunes-neo-en', zh: 'fortunes-gpt3-zh' } as const
export type DefaultModelLang = keyof typeof DEFAULT_MODEL_NAMES

/** The folder of a default model: `en` (English, the default) or `zh` (Chinese). */
export function defaultModelDir(lang: string = 'en'): string {
  if (!Object.hasOwn(DEFAULT_MODEL_NAMES, lang))
    throw new UsageError({ what: 'unknown default model language', expected: `one of ${Object.keys(DEFAULT_MODEL_NAMES).join(', ')}`, found: show(lang) })
  return fileURLToPath(new URL(`../../assets/models/${DEFAULT_MODEL_NAMES[lang as DefaultModelLang]}`, import.meta.url))
}
