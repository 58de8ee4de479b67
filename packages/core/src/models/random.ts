// Random-weight models of real shapes, for benchmarks where no checkpoint is at hand
// (`refgpt bench --shape gpt-neo-1.3B`). The weights come from a seeded PRNG through the same
// Checkpoint interface a file offers, so they load through exactly the path real checkpoints take.

import { UsageError } from '../errors.js'
import { MAX_LAYERS } from './arch.js'
import type { LoadedCheckpoint } from '../io/index.js'
import type { TensorInfo } from '../io/types.js'

/** config.json of the real models (the fields that matter; HF defaults fill the rest). */
export const SHAPES: Record<string, Record<string, unknown>> = {
  gpt2: { model_type: 'gpt2', n_embd: 768, n_layer: 12, n_head: 12, n_positions: 1024, vocab_size: 50257 },
  'gpt2-xl': { model_type: 'gpt2', n_embd: 1600, n_layer: 48, n_head: 25, n_positions: 1024, vocab_size: 50257 },
  'gpt-neo-125M': neo(768, 12, 12),
  'gpt-neo-1.3B': neo(2048, 24, 16),
  'gpt-neo-2.7B': neo(2560, 32, 20),
  'gptj-6b': { model_type: 'gptj', n_embd: 4096, n_layer: 28, n_head: 16, rotary_dim: 64, n_positions: 2048, vocab_size: 50400 },
}

function neo(hidden: number, layers: number, heads: number): Record<string, unknown> {
  return {
    model_type: 'gpt_neo', hidden_size: hidden, num_layers: layers, num_heads: heads, max_position_embeddings: 2048,
    vocab_size: 50257, window_size: 256, attention_types: [[['global', 'local'], layers / 2]],
  }
}

/** The config of a named shape, optionally cut to `layers` layers. */
export function shapeConfig(name: string, layers?: number): Record<string, unknown> {
  const base = SHAPES[name]
  if (!base) throw new UsageError({ what: `unknown shape ${JSON.stringify(name)}`, expected: `one of ${Object.keys(SHAPES).join(', ')}` })
  if (layers === undefined) return { ...base }
  if (!Number.isInteger(layers) || layers < 1 || layers > MAX_LAYERS)
    throw new UsageError({ what: 'bad layer count', expected: `an integer in 1 .. ${MAX_LAYERS}`, found: String(layers) })
  const key = base.model_type === 'gpt_neo' ? 'num_layers' : 'n_layer'
  const cfg: Record<string, unknown> = { ...base, [key]: layers }
  if (base.model_type === 'gpt_neo') cfg.attention_types = [[Array.from({ length: layers }, (_, i) => (i % 2 ? 'local' : 'global')), 1]]
  return cfg
}

/** mulberry32: a 32-bit seeded PRNG (uniform in [0, 1)). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function hash(s: string): number {
  let h = 2166136261
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619)
  return h >>> 0
}

/** 2^20 + 7 seeded uniforms in ±0.05: big tensors are filled by tiling this block (memcpy speed). */
const BLOCK = 1048583
let block: { seed: number; data: Float32Array } | undefined
function randomBlock(seed: number): Float32Array {
  if (block?.seed !== seed) {
    const rand = mulberry32(seed), data = new Float32Array(BLOCK)
    for (let i = 0; i < BLOCK; i++) data[i] = (rand() - 0.5) * 0.1
    block = { seed, data }
  }
  return block.data
}

/**
 * A checkpoint with the given tensor table whose data is made on each read: uniform in ±0.05
 * (LayerNorm weights 1 ± 0.05), a seeded block tiled from an offset given by the tensor name, so
 * every read gives the same values. (Realistic magnitudes for speed measurements, not a distribution.)
 */
export function randomCheckpoint(shapes: Map<string, number[]>, seed: number): LoadedCheckpoint {
  const tensors = new Map<string, TensorInfo>()
  for (const [name, shape] of shapes)
    tensors.set(name, { name, dtype: 'F32', shape, size: shape.reduce((p, d) => p * d, 1), file: '(random)' })
  return {
    dir: '(random weights)',
    format: 'random',
    files: [],
    tensors,
    unsupported: new Map(),
    metadata: {},
    readBytes(name) {
      const f = this.readF32(name)
      return new Uint8Array(f.buffer, f.byteOffset, f.byteLength)
    },
    readF32(name, out) {
      const t = tensors.get(name)!
      const data = out ?? new Float32Array(t.size)
      const src = randomBlock(seed)
      let from = hash(name) % BLOCK
      for (let i = 0; i < data.length; ) {
        const n = Math.min(BLOCK - from, data.length - i)
        data.set(src.subarray(from, from + n), i)
        i += n
        from = 0
      }
      if (/(ln_\d|ln_f|layernorm|norm)\.weight$/.test(name)) for (let i = 0; i < data.length; i++) data[i] += 1
      return data
    },
    close() {},
  }
}
