// The one hook through which a forward pass shows its intermediate tensors (step-through, golden
// export, tests). The model calls `tracer?.(...)` at each stage; with no tracer attached the optional
// call does not even evaluate its arguments, so the token loop pays nothing.
//
// Stage names (L = layer index from 0):
//   embed                  token (+ position) embedding, = hidden_states[0]      [T, C]
//   h.L.ln_1               input LayerNorm of block L                             [T, C]
//   h.L.attn.q/k/v         projections (q and k after rotary for GPT-J)            [T, C]
//   h.L.attn.probs         softmax probabilities over keys 0 .. pos0+T-1          [nHead, T, pos0+T]
//   h.L.attn.out           attention output after the output projection           [T, C]
//   h.L.ln_2               second LayerNorm (sequential blocks only)             [T, C]
//   h.L.mlp.hidden         activation of the MLP's inner layer                   [T, F]
//   h.L.mlp.out            MLP output                                             [T, C]
//   h.L.out                residual stream after block L, = hidden_states[L+1]   [T, C]
//   ln_f                   final LayerNorm, = hidden_states[n_layer]             [T, C]
//   logits                 LM head output of the rows computed                   [R, nVocab]

export interface TraceEvent {
  name: string
  layer: number | null
  shape: readonly number[]
  /** Sequence position of the first row of the tensor (rows are positions pos0, pos0+1, ...). */
  pos0: number
  /** Copies the tensor out of the device. */
  read(): Float32Array
}

export type Tracer = (event: TraceEvent) => void

/** A tracer that keeps every event's data, keyed by name (rows of several forward calls are not merged). */
export function collectTrace(filter?: (name: string) => boolean): { tracer: Tracer; tensors: Map<string, TraceEvent & { data: Float32Array }> } {
  const tensors = new Map<string, TraceEvent & { data: Float32Array }>()
  const tracer: Tracer = (e) => {
    if (!filter || filter(e.name)) tensors.set(e.name, { ...e, data: e.read() })
  }
  return { tracer, tensors }
}
